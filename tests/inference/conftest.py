"""Fixtures for the inference tests: the tiny dataset, a briefly trained tiny MG-LLaVA saved as a checkpoint, and a
released-format checkpoint of the same shapes."""
import hashlib
import json
import os
import os.path as osp

import datasets
import pytest
import torch

datasets.disable_progress_bars()

TRAIN_STEPS = 120
ROI_OUTPUT_SIZE = 14
MEMORISED = ("chelsea", "What is the main object in the image?", "a cat")  # training samples the model learns
MEMORISED_TEXT = ("What is two plus two?", "four")


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    from mg_llava.testing.tiny_dataset import build_tiny_dataset

    return build_tiny_dataset(str(tmp_path_factory.mktemp("tiny_data")))


@pytest.fixture(scope="session")
def spec(tiny_models):
    from mg_llava.inference.loading import spec_from_paths
    from mg_llava.testing.tiny_models import HIGH_RES

    # RoI output 14 instead of the released 56: the same code path, 16x less RoIAlign work on the shared CPUs
    return spec_from_paths(tiny_models["llm_vicuna"], tiny_models["clip"], "local-dir:" + tiny_models["convnext"],
                           "vicuna", high_res=HIGH_RES, roi_output_size=ROI_OUTPUT_SIZE)


@pytest.fixture(scope="session")
def model_paths(tiny_models):
    """The model options of the tools for the tiny vicuna model."""
    from mg_llava.testing.tiny_models import HIGH_RES

    return ["--llm", tiny_models["llm_vicuna"], "--visual-encoder", tiny_models["clip"], "--visual-encoder-aux",
            "local-dir:" + tiny_models["convnext"], "--template", "vicuna", "--high-res", str(HIGH_RES),
            "--roi-output-size", str(ROI_OUTPUT_SIZE), "--device", "cpu"]


def tiny_dataset(tiny_data, views, tokenizer, template="vicuna", data_path=None):
    from xtuner.dataset.map_fns import template_map_fn_factory

    from mg_llava.dataset import PROMPT_TEMPLATE, LLaVABoxDataset

    return LLaVABoxDataset(image_folder=tiny_data["image_folder"], image_views=views,
                           data_path=data_path or tiny_data["finetune"], tokenizer=tokenizer,
                           box_file=tiny_data["boxes"], max_length=512, num_proc=1,
                           template_map_fn=dict(type=template_map_fn_factory, template=PROMPT_TEMPLATE[template]))


def _key(tensor):
    return hashlib.sha1(tensor.detach().contiguous().numpy().tobytes()).hexdigest()


def memoize_frozen_parts(model):
    """Compute the frozen, parameter-free parts (both encoders, RoI features) once per image during the test
    training: they have no gradient and the same input always gives the same output."""
    def rows(original):
        cache = {}

        def forward(pixel_values):
            keys = [_key(p) for p in pixel_values]
            todo = [i for i, k in enumerate(keys) if k not in cache]
            if todo:
                out = original(pixel_values[todo])
                for j, i in enumerate(todo):
                    cache[keys[i]] = [m[j] for m in out] if isinstance(out, list) else out[j]
            first = cache[keys[0]]
            if isinstance(first, list):
                return [torch.stack([cache[k][s] for k in keys]) for s in range(len(first))]
            return torch.stack([cache[k] for k in keys])
        return forward

    model.visual_encoder.forward = rows(model.visual_encoder.forward)
    model.visual_encoder_aux.forward = rows(model.visual_encoder_aux.forward)
    original, cache = model.object_features.forward, {}

    def object_features(stage_maps, boxes, image_size):
        out = []
        for i, b in enumerate(boxes):
            key = _key(stage_maps[-1][i]) + _key(b)
            if key not in cache:
                cache[key] = original([m[i:i + 1] for m in stage_maps], [b], image_size)[0]
            out.append(cache[key])
        return out

    model.object_features.forward = object_features


@pytest.fixture(scope="session")
def trained_checkpoint(spec, tiny_data, tmp_path_factory):
    """A tiny MG-LLaVA trained for a few dozen steps on the tiny stage-2 data (LLM included), saved the way the
    training saves trainable weights (``model.state_dict()``, SPEC 4 keys). Returns the .pth path."""
    from transformers import AutoTokenizer

    from mg_llava.dataset import llava_box_collate_fn
    from mg_llava.inference.loading import build_from_spec, views_from_spec

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
        batch = llava_box_collate_fn([samples[i] for i in focus + others])
        loss = model(batch["data"])["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        focus_loss = model(llava_box_collate_fn([samples[i] for i in focus])["data"])["loss"].item()
    assert focus_loss < 0.3, f"the tiny model did not learn its samples to memorise (loss {focus_loss:.3f})"
    path = osp.join(str(tmp_path_factory.mktemp("trained")), "trained.pth")
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="session")
def loaded(spec, trained_checkpoint):
    from mg_llava.inference.loading import load_from_spec

    return load_from_spec(spec, trained_checkpoint, device="cpu")


# Released-format checkpoint (SPEC 4 key names) with the tiny model's shapes: LLM 32, CLIP 32, ConvNeXt-atto stages
# 40/80/160/320, gate 16.
H, C, C_S, C_B, G = 32, 32, 320, 40 + 80 + 160 + 320, 16
RELEASED_SHAPES = {
    "projector.model.0.weight": (H, C), "projector.model.0.bias": (H,),
    "projector.model.2.weight": (H, H), "projector.model.2.bias": (H,),
    "bbox_projector.model.0.weight": (H, C_B), "bbox_projector.model.0.bias": (H,),
    "bbox_projector.model.2.weight": (H, H), "bbox_projector.model.2.bias": (H,),
    "fuse_module.slow_conv.weight": (C_S, C_S, 1, 1), "fuse_module.slow_conv.bias": (C_S,),
    "fuse_module.slow_proj.weight": (C, C_S, 1, 1), "fuse_module.slow_proj.bias": (C,),
    "fuse_module.fast_conv.weight": (C, 1, 7, 7), "fuse_module.fast_conv.bias": (C,),
    "fuse_module.fast_proj.weight": (C, C, 1, 1), "fuse_module.fast_proj.bias": (C,),
    "fuse_module.gate.0.weight": (G, 2 * C), "fuse_module.gate.0.bias": (G,),
    "fuse_module.gate.2.weight": (1, G), "fuse_module.gate.2.bias": (1,),
}


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
