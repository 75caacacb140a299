"""Fixtures for the inference tests: the tiny dataset, a briefly trained tiny MG-LLaVA saved as a checkpoint, and a
released-format checkpoint of the same shapes."""
import json
import os
import os.path as osp

import datasets
import pytest
import torch

from inference_helpers import (MEMORISED, MEMORISED_TEXT, RELEASED_SHAPES, ROI_OUTPUT_SIZE, TRAIN_STEPS,
                               memoize_frozen_parts, tiny_dataset)

datasets.disable_progress_bars()


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    from mg_llava.testing.tiny_dataset import build_tiny_dataset

    return build_tiny_dataset(str(tmp_path_factory.mktemp("tiny_data")))


@pytest.fixture(scope="session")
def spec(tiny_models):
    from mg_llava.inference.spec import spec_from_paths
    from mg_llava.testing.tiny_models import HIGH_RES

    # RoI output 14 instead of the released 56: the same code path, 16x less RoIAlign work on the shared CPUs.
    # The tiny model is trained here with the clean box rule (the paths route defaults to the released one).
    return spec_from_paths(tiny_models["llm_vicuna"], tiny_models["clip"], "local-dir:" + tiny_models["convnext"],
                           "vicuna", high_res=HIGH_RES, roi_output_size=ROI_OUTPUT_SIZE, box_rule="clean")


@pytest.fixture(scope="session")
def model_paths(tiny_models):
    """The model options of the tools for the tiny vicuna model."""
    from mg_llava.testing.tiny_models import HIGH_RES

    return ["--llm", tiny_models["llm_vicuna"], "--visual-encoder", tiny_models["clip"], "--visual-encoder-aux",
            "local-dir:" + tiny_models["convnext"], "--template", "vicuna", "--high-res", str(HIGH_RES),
            "--roi-output-size", str(ROI_OUTPUT_SIZE), "--box-rule", "clean", "--device", "cpu"]


@pytest.fixture(scope="session")
def trained_checkpoint(spec, tiny_data, tmp_path_factory):
    """A tiny MG-LLaVA trained for ``TRAIN_STEPS`` steps on the tiny stage-2 data (LLM included), saved the way the
    training saves trainable weights (``model.state_dict()``, SPEC 4 keys). Returns the .pth path."""
    from transformers import AutoTokenizer

    from mg_llava.dataset import llava_box_collate_fn
    from mg_llava.inference.build import build_from_spec
    from mg_llava.inference.spec import views_from_spec

    torch.manual_seed(0)
    model = build_from_spec(spec)
    memoize_frozen_parts(model)
    tokenizer = AutoTokenizer.from_pretrained(spec["llm"])
    dataset = tiny_dataset(tiny_data, views_from_spec(spec["image"]), tokenizer)
    name, question, _ = MEMORISED
    with open(tiny_data["finetune"]) as f:
        records = json.load(f)
    positions = [i for i, r in enumerate(records) if r["conversations"][0]["value"].endswith(question)
                 and r.get("image") == f"{name}.jpg" or r["conversations"][0]["value"] == MEMORISED_TEXT[0]]
    assert len(positions) == 2
    focus = [list(dataset.text_data["sample_index"]).index(p) for p in positions]
    samples = [dataset[i] for i in range(len(dataset))]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    generator = torch.Generator().manual_seed(0)
    for step in range(TRAIN_STEPS):
        # every batch holds the samples to memorise plus three others
        others = torch.randperm(len(samples), generator=generator)[:3].tolist()
        batch = model.data_preprocessor(llava_box_collate_fn([samples[i] for i in focus + others]), True)
        loss = model(batch["data"])["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        focus_loss = model(model.data_preprocessor(llava_box_collate_fn([samples[i] for i in focus]))["data"])
        focus_loss = focus_loss["loss"].item()
    assert focus_loss < 0.3, f"the tiny model did not learn its samples to memorise (loss {focus_loss:.3f})"
    path = osp.join(str(tmp_path_factory.mktemp("trained")), "trained.pth")
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="session")
def loaded(spec, trained_checkpoint):
    from mg_llava.inference.loading import load_from_spec

    return load_from_spec(spec, trained_checkpoint, device="cpu")


@pytest.fixture(scope="session")
def released_checkpoint(tiny_models, tmp_path_factory):
    """A stage-2 released file as DeepSpeed writes it: ``{'module': {SPEC 4 keys + llm.*}}`` in bf16, in a
    checkpoint folder with ``latest``. Returns ``(folder, state_dict)``."""
    from transformers import AutoModelForCausalLM

    generator = torch.Generator().manual_seed(1)
    state_dict = {k: (0.05 * torch.randn(s, generator=generator)).to(torch.bfloat16)
                  for k, s in RELEASED_SHAPES.items()}
    llm = AutoModelForCausalLM.from_pretrained(tiny_models["llm_vicuna"])
    state_dict.update({"llm." + k: (v + 0.01 * torch.randn(v.shape, generator=generator)).to(torch.bfloat16)
                       for k, v in llm.state_dict().items()})
    folder = osp.join(str(tmp_path_factory.mktemp("released")), "mg_llava_tiny_released")
    os.makedirs(osp.join(folder, "global_step10"))
    with open(osp.join(folder, "latest"), "w") as f:
        f.write("global_step10")
    torch.save(dict(module=state_dict, ds_version="0.16.2"), osp.join(folder, "global_step10",
                                                                       "mp_rank_00_model_states.pt"))
    return folder, state_dict
