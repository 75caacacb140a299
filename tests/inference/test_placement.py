"""LLM placement at inference: --device-map with CPU and disk offload gives the plain load's answers (chat tool and
API); --load-4bit / --load-8bit build bitsandbytes' configs and are refused cleanly without a GPU; bad options get
one clear message; the lmms-eval model takes the same options."""
import os.path as osp

import pytest
import torch

from inference_helpers import MEMORISED
from tool_helpers import load_tool

QUESTIONS = (MEMORISED[1], "Describe the image briefly.")


@pytest.fixture(scope="module")
def exported(loaded, tmp_path_factory):
    from mg_llava.inference.export import export_model

    return export_model(loaded, str(tmp_path_factory.mktemp("placement") / "tiny_mg_llava"))


def cpu_budget(folder: str) -> int:
    """Bytes for the CPU that hold the embeddings and about half of the decoder layers, so accelerate puts the rest
    on disk (it keeps room for the largest layer on the device it fills)."""
    from transformers import AutoModelForCausalLM

    llm = AutoModelForCausalLM.from_pretrained(osp.join(folder, "llm"))
    nbytes = lambda m: sum(p.numel() * p.element_size() for p in m.parameters())  # noqa: E731
    layers = llm.model.layers
    return nbytes(llm.model.embed_tokens) + nbytes(layers[0]) * (len(layers) // 2 + 1)


def offloaded(exported, tmp_path):
    from mg_llava.inference import load_exported
    from mg_llava.inference.placement import LLMPlacement

    placement = LLMPlacement(device_map="auto", max_memory={"cpu": cpu_budget(exported)},
                             offload_folder=str(tmp_path / "offload"))
    return load_exported(exported, placement=placement)


def answers(loaded, tiny_data, image="chelsea"):
    from mg_llava.inference.generation import generate

    samples = []
    for question in QUESTIONS:
        picture = loaded.preprocessor.prepare_image(osp.join(tiny_data["image_folder"], f"{image}.jpg"), None)
        samples.append(loaded.preprocessor.sample(question, (), picture))
    return generate(loaded.model, loaded.tokenizer, samples, max_new_tokens=12,
                    stop_words=loaded.preprocessor.stop_words)


def test_cpu_and_disk_offload_gives_the_plain_answers_and_logits(exported, tiny_data, tmp_path):
    from mg_llava.inference import load_exported
    from mg_llava.inference.generation import first_token_logits

    plain = load_exported(exported, device="cpu")
    split = offloaded(exported, tmp_path)
    where = set(split.model.llm.hf_device_map.values())
    assert where == {"cpu", "disk"}, split.model.llm.hf_device_map
    assert split.device == torch.device("cpu")
    assert all(p.device.type == "cpu" for n, p in split.model.named_parameters() if not n.startswith("llm."))
    expected = answers(plain, tiny_data)
    assert expected[0] == MEMORISED[2]  # the memorised answer: the comparison is about a model that answers
    assert answers(split, tiny_data) == expected
    samples = [plain.preprocessor.sample(QUESTIONS[0], (), plain.preprocessor.prepare_image(
        osp.join(tiny_data["image_folder"], "chelsea.jpg"), None))]
    torch.testing.assert_close(first_token_logits(split.model, split.tokenizer, samples),
                               first_token_logits(plain.model, plain.tokenizer, samples), rtol=0, atol=1e-5)


def test_chat_tool_with_device_map_answers_as_without(exported, tiny_data, tmp_path, capsys):
    chat = load_tool("chat")
    image = osp.join(tiny_data["image_folder"], "chelsea.jpg")
    common = ["--checkpoint", exported, "--image", image, "--prompt", QUESTIONS[0], "--no-boxes",
              "--max-new-tokens", "12"]
    chat.main(common + ["--device", "cpu"])
    plain = capsys.readouterr().out
    chat.main(common + ["--device-map", "auto", "--max-memory", f"cpu={cpu_budget(exported)}",
                        "--offload-folder", str(tmp_path / "offload")])
    split = capsys.readouterr().out
    assert MEMORISED[2] in plain and split == plain


def test_quantised_loading_is_refused_without_a_gpu_and_configured_with_one(exported, monkeypatch):
    from transformers import BitsAndBytesConfig

    from mg_llava.inference.placement import LLMPlacement, PlacementError

    chat = load_tool("chat")
    for flag, bits in (("--load-4bit", 4), ("--load-8bit", 8)):
        with pytest.raises(SystemExit, match=f"--load-{bits}bit needs a CUDA GPU"):
            chat.main(["--checkpoint", exported, "--prompt", "hi", "--no-boxes", flag])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    four = LLMPlacement(load_in_4bit=True).llm_kwargs()
    config = four["quantization_config"]
    assert isinstance(config, BitsAndBytesConfig) and config.load_in_4bit and not config.load_in_8bit
    assert config.bnb_4bit_quant_type == "nf4" and config.bnb_4bit_use_double_quant
    assert config.bnb_4bit_compute_dtype == torch.bfloat16 and four["torch_dtype"] == torch.bfloat16
    assert four["device_map"] == {"": "cuda:0"}
    eight = LLMPlacement(load_in_8bit=True, device_map="auto", max_memory={0: 10, "cpu": 20}).llm_kwargs()
    assert eight["quantization_config"].load_in_8bit and eight["device_map"] == "auto"
    assert eight["max_memory"] == {0: 10, "cpu": 20}
    with pytest.raises(PlacementError, match="exclude each other"):
        LLMPlacement(load_in_4bit=True, load_in_8bit=True)


def test_max_memory_and_option_errors():
    from mg_llava.inference.placement import LLMPlacement, PlacementError, parse_max_memory

    assert parse_max_memory("0=20GiB, 1=1.5GB,cpu=60GiB") == {0: 20 * 2**30, 1: 1_500_000_000, "cpu": 60 * 2**30}
    assert parse_max_memory("0=1000;cpu=2MiB") == {0: 1000, "cpu": 2 * 2**20}  # lmms-eval's comma-free form
    for bad in ("20GiB", "gpu0=20GiB", "cpu=lots", "disk=1GB", ""):
        with pytest.raises(PlacementError, match="--max-memory"):
            parse_max_memory(bad)
    with pytest.raises(PlacementError, match="--device-map must be one of"):
        LLMPlacement(device_map="everywhere")
    with pytest.raises(PlacementError, match="take effect with --device-map"):
        LLMPlacement(max_memory={"cpu": 10})


def test_checkpoints_with_llm_weights_and_device_clashes_are_refused(spec, trained_checkpoint, exported, tmp_path):
    from mg_llava.inference import load_exported, load_from_spec
    from mg_llava.inference.placement import LLMPlacement, PlacementError

    placement = LLMPlacement(device_map="auto")
    with pytest.raises(PlacementError, match="holds .* LLM weights .* export the model first"):
        load_from_spec(spec, trained_checkpoint, placement=placement)
    with pytest.raises(PlacementError, match="--device meta differs"):
        load_exported(exported, device="meta", placement=placement)
    export = load_tool("export")
    with pytest.raises(SystemExit):
        export.main(["--checkpoint", exported, "--out-dir", str(tmp_path / "again"), "--device-map", "auto"])


def test_lmms_eval_model_takes_the_placement_options(exported, tmp_path):
    from mg_llava.lmms_plugin.model import MGLLaVALmms, ModelArgsError

    model_args = dict(pretrained=exported, no_boxes=True, device_map="auto",
                      max_memory=f"cpu={cpu_budget(exported)}", offload_folder=str(tmp_path / "off"))
    model = MGLLaVALmms(**model_args)
    assert set(model.loaded.model.llm.hf_device_map.values()) == {"cpu", "disk"}
    with pytest.raises(ModelArgsError, match="load_4bit needs a CUDA GPU"):
        MGLLaVALmms(pretrained=exported, no_boxes=True, load_4bit=True)
