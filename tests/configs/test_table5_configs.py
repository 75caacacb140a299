"""The Table 5 ablation configs (xtuner_configs/vicuna_7b_v15/table5/): each row changes one switch of the reference
row, trains on LLaVA-1.5's data only, and builds on the meta device with the parameters its parts add up to (counted
here from the modules' definitions, not from the built model)."""
import os.path as osp
from glob import glob

import pytest
import torch
from mmengine.config import Config
from test_configs import weights_free_loading

from mg_llava.model import (
    BoxToFusedCrossAttention,
    ChannelConcatFusion,
    ConvGateFusion,
    FusedToBoxCrossAttention,
    MGLLaVAModel,
    PatchInfoMining,
    PerceiverResampler,
)
from mg_llava.model.reference_configs import CLIP_VIT_L_336, llm_config

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
FOLDER = osp.join(ROOT, "xtuner_configs", "vicuna_7b_v15", "table5")
ROWS = {  # row -> (fusion, object merge)
    "conv_gate": (ConvGateFusion, None),
    "channel_concat": (ChannelConcatFusion, None),
    "patch_info_mining": (PatchInfoMining, None),
    "resampler": (PerceiverResampler, None),
    "f_to_b": (ConvGateFusion, FusedToBoxCrossAttention),
    "b_to_f": (ConvGateFusion, BoxToFusedCrossAttention),
    "coco80": (ConvGateFusion, None),
}
C, STAGES, H, T = 1024, [192, 384, 768, 1536], 4096, 576  # CLIP width, ConvNeXt-L stages, Vicuna-7B width, grid
C_B = sum(STAGES)


def path(row, stage):
    return osp.join(FOLDER, f"mg_llava_vicuna_7b_v15_{row}_{stage}.py")


def linear(i, o, bias=True):
    return i * o + (o if bias else 0)


def norm(c):
    return 2 * c


def projector(i):  # XTuner's depth-2 projector
    return linear(i, H) + linear(H, H)


# The vision side each row adds to CLIP, ConvNeXt-L and the LLM, from the modules' definitions
def conv_gate():
    return linear(STAGES[-1], STAGES[-1]) + linear(STAGES[-1], C) + C * 49 + C + linear(C, C) + linear(2 * C, C // 2) \
        + linear(C // 2, 1)


def resampler(depth=6):
    layer = norm(C) + norm(C) + 4 * C * C + norm(C) + 2 * 4 * C * C  # norms, attention without bias, feed-forward
    return linear(STAGES[-1], C) + T * C + depth * layer + norm(C)


def cross_attention(q, kv):
    return norm(q) + norm(kv) + q * q + 2 * q * kv + 3 * q + linear(q, q)


VISION = {
    "channel_concat": projector(C + STAGES[-1]) + projector(C_B),
    "patch_info_mining": norm(C) + linear(C, C) + 2 * (norm(C_B) + linear(C_B, C)) + projector(C) + projector(C_B),
    "resampler": resampler() + projector(C) + projector(C_B),
    "f_to_b": conv_gate() + cross_attention(C, C_B) + projector(C),
    "b_to_f": conv_gate() + cross_attention(C_B, C) + projector(C) + projector(C_B),
}


def test_every_row_is_shipped_for_both_stages():
    shipped = {osp.basename(p) for p in glob(osp.join(FOLDER, "*.py"))}
    assert shipped == {osp.basename(path(row, stage)) for row in ROWS for stage in ("pretrain", "finetune")}


@pytest.mark.parametrize("stage", ["pretrain", "finetune"])
@pytest.mark.parametrize("row", list(ROWS))
def test_row_changes_one_switch_of_the_reference(row, stage):
    cfg, reference = Config.fromfile(path(row, stage)), Config.fromfile(path("conv_gate", stage))
    fusion, merge = ROWS[row]
    assert cfg.model.fusion.type is fusion and cfg.fusion_type is fusion
    assert (cfg.model.object_merge or {}).get("type") is merge
    sources, reference_sources = cfg.train_dataloader.dataset.datasets, reference.train_dataloader.dataset.datasets
    # LLaVA-1.5's data only: 558K captions (stage 1), the 665K mix (stage 2)
    assert [osp.basename(s.data_path) for s in sources] == [
        "blip_laion_cc_sbu_558k.json" if stage == "pretrain" else "llava_v1_5_mix665k.json"]
    assert (sources[0].box_file != reference_sources[0].box_file) == (row == "coco80")
    if row == "coco80":
        assert "boxes_coco80/" in sources[0].box_file
    assert cfg.randomness.seed == reference.randomness.seed
    if stage == "finetune":
        assert cfg.model.pretrained_pth == f"./work_dirs/mg_llava_vicuna_7b_v15_{row}_pretrain"
    if row in ("conv_gate", "coco80"):  # the model of MG-LLaVA's own recipe (built in test_configs.py)
        main = Config.fromfile(osp.join(ROOT, "xtuner_configs", "vicuna_7b_v15", f"mg_llava_vicuna_7b_v15_{stage}.py"))
        assert {k: v for k, v in cfg.model.items() if k != "pretrained_pth"} == \
            {k: v for k, v in main.model.items() if k != "pretrained_pth"}
    ignore = {"fusion_type", "object_merge", "model", "train_dataloader", "pretrained_pth", "filename", "text"}
    # nothing else differs: the settings, the schedule, the model's other parts
    assert {k: v for k, v in cfg.to_dict().items() if k not in ignore} == \
        {k: v for k, v in reference.to_dict().items() if k not in ignore}


@pytest.fixture(scope="module")
def architecture_folders(tmp_path_factory):
    from transformers import CLIPVisionConfig

    root = tmp_path_factory.mktemp("table5_architectures")
    CLIPVisionConfig(**CLIP_VIT_L_336).save_pretrained(root / "clip")
    llm_config("Vicuna-7B").save_pretrained(root / "llm")
    return root


@pytest.mark.parametrize("row", [row for row in ROWS if row not in ("conv_gate", "coco80")])
def test_row_builds_on_meta_with_the_parameters_of_its_parts(row, architecture_folders):
    from xtuner.registry import BUILDER

    cfg = Config.fromfile(path(row, "pretrain"))
    model_cfg = cfg.model
    model_cfg.llm.pretrained_model_name_or_path = str(architecture_folders / "llm")
    model_cfg.visual_encoder.pretrained_model_name_or_path = str(architecture_folders / "clip")
    model_cfg.visual_encoder_aux.pretrained = None
    with weights_free_loading(architecture_folders), torch.device("meta"):
        model = BUILDER.build(model_cfg)
    assert isinstance(model, MGLLaVAModel)
    vision = sum(p.numel() for name, p in model.named_parameters()
                 if name.startswith(("fuse_module.", "projector.", "bbox_projector.", "object_merge.")))
    assert vision == VISION[row]
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"fuse_module", "projector", "bbox_projector", "object_merge"} & (
        {n.split(".")[0] for n, _ in model.named_parameters()})
    assert model.fuse_module.out_channels == (C + STAGES[-1] if row == "channel_concat" else C)
    assert getattr(model.fuse_module, "num_tokens", T) == T
