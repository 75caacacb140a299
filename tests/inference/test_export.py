"""Export: the whole model to safetensors and back with identical logits; the LLM part is a plain transformers
folder; loading from a training config; safe loading by default, full unpickling only on request."""
import json
import os
import os.path as osp

import pytest
import torch

from inference_helpers import MEMORISED
from tool_helpers import ROOT, load_tool

SPEC4_VISION_PREFIXES = ("projector.model.", "bbox_projector.model.", "fuse_module.")


def chat_sample(loaded, tiny_data):
    from mg_llava.dataset import load_box_file

    name, question, _ = MEMORISED
    image = loaded.preprocessor.prepare_image(osp.join(tiny_data["image_folder"], f"{name}.jpg"),
                                              (load_box_file(tiny_data["boxes"]), name))
    return [loaded.preprocessor.sample(question, (), image), loaded.preprocessor.sample("What is two plus two?")]


def full_logits(loaded, samples):
    from mg_llava.inference.generation import llm_inputs_for_generation, pad_token_id

    inputs = llm_inputs_for_generation(loaded.model, samples, pad_token_id(loaded.tokenizer), loaded.device)
    position_ids = (inputs["attention_mask"].long().cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        return loaded.model.llm(**inputs, position_ids=position_ids).logits


@pytest.fixture(scope="module")
def exported(loaded, tmp_path_factory):
    from mg_llava.inference.export import export_model

    return export_model(loaded, str(tmp_path_factory.mktemp("export") / "tiny_mg_llava"))


def test_export_round_trip_gives_identical_logits(loaded, exported, tiny_data):
    from safetensors.torch import load_file

    from mg_llava.inference import load_exported

    assert sorted(os.listdir(exported)) == ["llm", "mg_llava.json", "mg_llava_modules.safetensors"]
    modules = load_file(osp.join(exported, "mg_llava_modules.safetensors"))
    expected = {k: v for k, v in loaded.model.state_dict().items() if not k.startswith("llm.")}
    assert set(modules) == set(expected) and all(k.startswith(SPEC4_VISION_PREFIXES) for k in modules)
    for key, value in expected.items():
        assert torch.equal(modules[key], value), key
    with open(osp.join(exported, "mg_llava.json")) as f:
        spec = json.load(f)
    assert spec["llm"] == "llm" and spec["visual_encoder"] == loaded.spec["visual_encoder"]
    assert spec["visual_encoder_aux"]["model_name"].startswith("local-dir:/")
    assert spec["image"]["high_res"] == 128 and spec["image"]["low_res"] == 56

    back = load_exported(exported, device="cpu")
    samples = chat_sample(loaded, tiny_data)
    assert torch.equal(full_logits(back, samples), full_logits(loaded, samples))


def test_llm_folder_loads_with_plain_transformers(loaded, exported):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    llm = AutoModelForCausalLM.from_pretrained(osp.join(exported, "llm"))
    assert osp.isfile(osp.join(exported, "llm", "model.safetensors"))
    ours = loaded.model.llm.state_dict()
    theirs = llm.state_dict()
    assert set(theirs) == set(ours)
    assert all(torch.equal(theirs[k], ours[k]) for k in ours)
    assert AutoTokenizer.from_pretrained(osp.join(exported, "llm")).get_vocab() == loaded.tokenizer.get_vocab()


def test_export_tool_and_chat_from_the_export(exported, tiny_data, capsys):
    name, question, answer = MEMORISED
    answers = load_tool("chat").main(["--checkpoint", exported, "--device", "cpu", "--image",
                                      osp.join(tiny_data["image_folder"], f"{name}.jpg"), "--boxes",
                                      tiny_data["boxes"], "--box-id", name, "--prompt", question,
                                      "--max-new-tokens", "12"])
    assert answers == [answer]
    with pytest.raises(FileExistsError, match="not empty"):
        load_tool("export").main(["--checkpoint", exported, "--out-dir", exported])


def tiny_finetune_config_at(assets, tmp_path):
    """The tiny stage-2 config, flat (tools/list_configs.py --dump), with its assets at ``assets``."""
    text = load_tool("list_configs").dump_config(str(ROOT / "xtuner_configs/tiny/mg_llava_tiny_cpu_finetune.py"))
    assert "'work_dirs/tiny_assets/models/clip'" in text
    config = tmp_path / "finetune.py"
    config.write_text(text.replace("work_dirs/tiny_assets/", f"{assets}/"))
    return config


def test_training_config_and_unsafe_checkpoints(tiny_models, tiny_data, loaded, trained_checkpoint, tmp_path):
    """A training config (its assets pointed at the tiny models); an mmengine training checkpoint of this project
    (message-hub state included) loads safely; a file holding other Python objects is refused unless
    --allow-unsafe-pickle is given."""
    from fractions import Fraction

    from mmengine.logging import MessageHub

    from mg_llava.inference import UnsafeCheckpointError, load_exported

    assets = tmp_path / "assets"
    (assets / "data").mkdir(parents=True)
    os.symlink(osp.dirname(tiny_models["clip"]), assets / "models")
    config = tiny_finetune_config_at(assets, tmp_path)

    hub = MessageHub.get_instance("inference_test")
    hub.update_scalar("train/loss", 1.0)
    weights = torch.load(trained_checkpoint, weights_only=True)
    ours = str(tmp_path / "iter_40.pth")
    torch.save(dict(meta=dict(iter=40), state_dict=weights, message_hub=hub.state_dict()), ours)
    foreign = str(tmp_path / "foreign.pth")
    torch.save(dict(meta=dict(ratio=Fraction(1, 3)), state_dict=weights), foreign)

    export = load_tool("export").main
    folder = export(["--config", str(config), "--checkpoint", ours, "--out-dir", str(tmp_path / "ours")])
    with pytest.raises(UnsafeCheckpointError, match="--allow-unsafe-pickle"):
        export(["--config", str(config), "--checkpoint", foreign, "--out-dir", str(tmp_path / "no")])
    assert not osp.exists(tmp_path / "no")
    unsafe = export(["--config", str(config), "--checkpoint", foreign, "--allow-unsafe-pickle",
                     "--out-dir", str(tmp_path / "foreign")])

    from mmengine.config import Config

    roi_output_size = Config.fromfile(str(config)).model.object_features.output_size
    for path in (folder, unsafe):
        back = load_exported(path, device="cpu")
        assert back.spec["prompt_template"] == "vicuna"
        assert back.spec["object_features"] == dict(type="MultiScaleRoIFeatures", output_size=roi_output_size)
        for key, value in loaded.model.state_dict().items():
            assert torch.equal(back.model.state_dict()[key], value), key


def test_xtuner_pth_to_hf_exports_the_whole_model(tiny_models, loaded, trained_checkpoint, tmp_path):
    """`xtuner convert pth_to_hf <config> <pth> <dir>` writes the same whole-model export as tools/export.py."""
    import subprocess

    from mg_llava.inference import load_exported

    assets = tmp_path / "assets"
    (assets / "data").mkdir(parents=True)
    os.symlink(osp.dirname(tiny_models["clip"]), assets / "models")
    config = tiny_finetune_config_at(assets, tmp_path)
    checkpoint = tmp_path / "iter_40.pth"
    torch.save(dict(meta=dict(iter=40), state_dict=torch.load(trained_checkpoint, weights_only=True)), checkpoint)
    out = tmp_path / "hf"
    run = subprocess.run(["xtuner", "convert", "pth_to_hf", str(config), str(checkpoint), str(out), "--fp32"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert osp.isfile(out / "mg_llava.json"), run.stdout[-3000:] + run.stderr[-3000:]
    back = load_exported(str(out), device="cpu")
    for key, value in loaded.model.state_dict().items():
        assert torch.equal(back.model.state_dict()[key], value), key
