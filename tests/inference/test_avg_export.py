"""Export of an AVG-LLaVA model: the router's weights and the scaler/router settings travel with the export; the
export gives the same logits and the same router choice as the training config and checkpoint, and chat and
evaluation from it report the visual tokens of each sample."""
import json
import os
import os.path as osp

import pytest
import torch

from tool_helpers import ROOT, load_tool

RGLF = "xtuner_configs/tiny/avg_llava_tiny_cpu_untiled_rglf.py"
SIZES = [16, 8, 4, 2, 1]  # the tiny 4x4 grid's granularities


@pytest.fixture(scope="module")
def avg(tiny_models, tiny_data, tmp_path_factory):
    """The tiny RGLF config (flat, assets at the tiny models), a checkpoint of it with a perturbed router (so that
    the images do not all get one granularity), the model loaded from both, and the export tools/export.py wrote."""
    from mg_llava.inference import load_from_config

    tmp = tmp_path_factory.mktemp("avg_export")
    assets = tmp / "assets"
    (assets / "data").mkdir(parents=True)
    os.symlink(osp.dirname(tiny_models["clip"]), assets / "models")
    text = load_tool("list_configs").dump_config(str(ROOT / RGLF))
    config = tmp / "rglf.py"
    config.write_text(text.replace("work_dirs/tiny_assets/", f"{assets}/"))

    torch.manual_seed(0)
    model = load_from_config(str(config), None, device="cpu").model
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.startswith(("router.", "projector.", "fuse_module.")):
                param.add_(0.5 * torch.randn(param.shape, generator=generator))
    checkpoint = str(tmp / "iter_4.pth")
    torch.save(dict(meta=dict(iter=4), state_dict=model.state_dict()), checkpoint)
    folder = load_tool("export").main(["--config", str(config), "--checkpoint", checkpoint,
                                       "--out-dir", str(tmp / "export")])
    return dict(config=str(config), checkpoint=checkpoint, export=folder, trained=model.state_dict(),
                loaded=load_from_config(str(config), checkpoint, device="cpu"))


def samples(loaded, tiny_data):
    from mg_llava.dataset import load_box_file

    table = load_box_file(tiny_data["boxes"])
    out = []
    for name, question in (("chelsea", "What is the main object in the image?"),
                           ("coffee", "Describe the image briefly."),
                           ("astronaut", "Is there a cat in the image? Please answer the question with yes or no.")):
        image = loaded.preprocessor.prepare_image(osp.join(tiny_data["image_folder"], f"{name}.jpg"), (table, name))
        out.append(loaded.preprocessor.sample(question, (), image, sample_id=name))
    return out + [loaded.preprocessor.sample("What is two plus two?", sample_id="text")]


def logits_and_choice(loaded, batch):
    from mg_llava.inference.generation import llm_inputs_for_generation, pad_token_id

    inputs = llm_inputs_for_generation(loaded.model, batch, pad_token_id(loaded.tokenizer), loaded.device)
    position_ids = (inputs["attention_mask"].long().cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        logits = loaded.model.llm(**inputs, position_ids=position_ids).logits
    return logits, list(loaded.model.last_granularities)


def test_export_holds_the_router_and_gives_identical_logits_and_choices(avg, tiny_data):
    from safetensors.torch import load_file

    from mg_llava.inference import load_exported
    from mg_llava.model import AVGLLaVAModel

    modules = load_file(osp.join(avg["export"], "mg_llava_modules.safetensors"))
    expected = {k: v for k, v in avg["trained"].items() if not k.startswith("llm.")}
    assert any(k.startswith("router.") for k in expected)
    assert set(modules) == set(expected)
    for key, value in expected.items():
        assert torch.equal(modules[key], value), key
    with open(osp.join(avg["export"], "mg_llava.json")) as f:
        spec = json.load(f)
    assert spec["avg_llava"]["scaler"] == dict(type="VisualGranularityScaler",
                                               pools=[[1, 1], [1, 2], [2, 2], [2, 4], [4, 4]])
    assert spec["avg_llava"]["router"] == dict(type="VisualGranularityRouter", num_instruction_tokens=32,
                                               num_heads=8, views="all")

    back = load_exported(avg["export"], device="cpu")
    assert isinstance(back.model, AVGLLaVAModel) and back.model.granularity_tokens == SIZES
    batch = samples(avg["loaded"], tiny_data)
    logits, choice = logits_and_choice(avg["loaded"], batch)
    logits_back, choice_back = logits_and_choice(back, batch)
    assert choice_back == choice and len(set(choice)) > 1, choice  # the router does choose per image
    assert torch.equal(logits_back, logits)


def test_an_export_without_the_router_views_setting_reads_the_global_view(avg, tmp_path):
    """Exports written before the router's views were a setting came from models that read the global view only."""
    import shutil

    from mg_llava.inference import load_exported

    old = tmp_path / "old_export"
    shutil.copytree(avg["export"], old)
    spec = json.loads((old / "mg_llava.json").read_text())
    del spec["avg_llava"]["router"]["views"]
    (old / "mg_llava.json").write_text(json.dumps(spec))
    assert load_exported(str(old), device="cpu").model.router.views == "global"
    assert load_exported(avg["export"], device="cpu").model.router.views == "all"


def test_chat_and_evaluation_from_the_export_report_tokens_per_sample(avg, tiny_data, capsys):
    from mg_llava.inference import load_exported
    from mg_llava.inference.evaluate import ModelAnswerer

    back = load_exported(avg["export"], device="cpu")
    batch = samples(back, tiny_data)
    results = ModelAnswerer(back, max_new_tokens=3).answer(batch)
    reference = ModelAnswerer(avg["loaded"], max_new_tokens=3).answer(batch)
    assert results == reference
    boxes = [len(sample["boxes"][0]) for sample in batch[:3]]
    chosen = [SIZES[k] for k in back.model.last_granularities]
    assert [r["granularity"] for r in results] == [[g] for g in chosen] + [[]]
    assert [r["visual_tokens"] for r in results] == [g + n for g, n in zip(chosen, boxes)] + [0]

    capsys.readouterr()
    image = osp.join(tiny_data["image_folder"], "chelsea.jpg")
    load_tool("chat").main(["--checkpoint", avg["export"], "--device", "cpu", "--image", image, "--boxes",
                            tiny_data["boxes"], "--box-id", "chelsea", "--prompt",
                            "What is the main object in the image?", "--max-new-tokens", "3"])
    printed = capsys.readouterr().out
    grid, objects = results[0]["granularity"][0], boxes[0]
    assert f"[visual tokens: {grid + objects} (grid {grid} + {objects} object)]" in printed, printed
    load_tool("chat").main(["--checkpoint", avg["export"], "--device", "cpu", "--image", image, "--boxes",
                            tiny_data["boxes"], "--box-id", "chelsea", "--prompt", "What is the main object in the "
                            "image?", "--max-new-tokens", "3", "--granularity", "2"])
    assert f"[visual tokens: {2 + objects} (grid 2 + {objects} object)]" in capsys.readouterr().out
