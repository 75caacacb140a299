"""The AVG-LLaVA stage configs: recipes, and the Vicuna-7B ones build on the meta device with MG-LLaVA's parameters
plus the router's."""
import os.path as osp
from glob import glob

import pytest
import torch
from mmengine.config import Config
from test_configs import weights_free_loading

from mg_llava.model import AVGLLaVAModel, MGLLaVAModel, VisualGranularityRouter
from mg_llava.model.reference_configs import CLIP_VIT_L_336, llm_config

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
AVG_CONFIGS = sorted(glob(osp.join(ROOT, "xtuner_configs", "**", "avg_llava_*.py"), recursive=True))
POOLS = ((1, 1), (1, 2), (2, 2), (2, 4), (4, 4))


def _id(path):
    return osp.relpath(path, osp.join(ROOT, "xtuner_configs"))


def test_both_stages_are_shipped_for_vicuna_7b_and_tiny():
    names = {_id(c) for c in AVG_CONFIGS}
    for stage in ("multi_granularity", "rglf"):
        assert {f"vicuna_7b_v15/avg_llava_vicuna_7b_v15_{stage}.py", f"tiny/avg_llava_tiny_cpu_{stage}.py"} <= names


@pytest.mark.parametrize("path", AVG_CONFIGS, ids=_id)
def test_avg_config_recipe(path):
    cfg = Config.fromfile(path)
    model = cfg.model
    assert model.type is AVGLLaVAModel and model.pretrained_pth
    rglf = model.stage == "rglf"
    assert model.stage == ("rglf" if path.endswith("_rglf.py") else "multi_granularity")
    assert model.freeze_llm == rglf
    assert tuple(map(tuple, model.scaler.pools)) == POOLS and model.router.num_instruction_tokens == 32
    assert model.router.num_heads == 8
    if "/tiny/" in path:
        return
    assert model.rglf_ce_weight == 0.1 and model.rglf_margin == 1.0 and model.rglf_rank_loss == "rank_distance"
    assert cfg.optim_wrapper.optimizer.lr == (1e-3 if rglf else 2e-5)
    assert cfg.batch_size * cfg.num_gpus * cfg.accumulative_counts == 128
    # a DeepSpeed checkpoint must keep what state_dict() returns, the frozen stage-3 weights included
    assert cfg.strategy.exclude_frozen_parameters == (not rglf)


def test_the_default_avg_configs_are_the_authors_setting():
    """AVG-LLaVA as its authors train it: tiled (any-resolution) input, the router over the global view and every
    crop, the rank-distance ranking loss; the untiled variants are named so."""
    from mg_llava.dataset import AnyResImageViews

    for path in AVG_CONFIGS:
        cfg = Config.fromfile(path)
        tiled = cfg.train_dataloader.dataset.image_views.type is AnyResImageViews
        assert tiled == ("_untiled_" not in path) and (cfg.model.get("anyres") is not None) == tiled, path
        assert cfg.model.router.views == "all" and cfg.model.rglf_rank_loss == "rank_distance", path


def _count(module):
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def architecture_folders(tmp_path_factory):
    from transformers import CLIPVisionConfig

    root = tmp_path_factory.mktemp("avg_architectures")
    CLIPVisionConfig(**CLIP_VIT_L_336).save_pretrained(root / "clip")
    llm_config("Vicuna-7B").save_pretrained(root / "llm")
    return root


def _build_on_meta(path, folders):
    from xtuner.registry import BUILDER

    model_cfg = Config.fromfile(path).model
    model_cfg.llm.pretrained_model_name_or_path = str(folders / "llm")
    model_cfg.visual_encoder.pretrained_model_name_or_path = str(folders / "clip")
    model_cfg.visual_encoder_aux.pretrained = None
    model_cfg.pretrained_pth = None
    with weights_free_loading(folders), torch.device("meta"):
        return BUILDER.build(model_cfg)


@pytest.mark.parametrize("stage", ["multi_granularity", "rglf"])
def test_vicuna_7b_builds_on_meta_with_mg_llava_plus_the_router(stage, architecture_folders):
    avg = _build_on_meta(osp.join(ROOT, "xtuner_configs", "vicuna_7b_v15",
                                  f"avg_llava_vicuna_7b_v15_untiled_{stage}.py"), architecture_folders)
    mg = _build_on_meta(osp.join(ROOT, "xtuner_configs", "vicuna_7b_v15", "mg_llava_vicuna_7b_v15_finetune.py"),
                        architecture_folders)
    assert isinstance(avg, MGLLaVAModel) and avg.granularity_tokens == [576, 288, 144, 72, 36]
    with torch.device("meta"):
        router = VisualGranularityRouter(4096, (576, 288, 144, 72, 36))
    assert router.voter.numel() == 1148
    assert _count(avg) == _count(mg) + _count(router)
    trainable = {n.split(".")[0] for n, p in avg.named_parameters() if p.requires_grad}
    assert trainable == ({"router"} if stage == "rglf" else {"llm", "fuse_module", "projector", "bbox_projector"})


def test_vicuna_7b_anyres_builds_on_meta_with_the_row_end_token(architecture_folders):
    """The any-res stage-3 config: AVG-LLaVA's parameters plus LLaVA-NeXT's image_newline (4096), tiled views with
    LLaVA-NeXT's pinpoints, and room in Vicuna's 4096-token context for a 672x672 image's 2928 grid tokens."""
    from mg_llava.dataset import AnyResImageViews

    path = osp.join(ROOT, "xtuner_configs", "vicuna_7b_v15", "avg_llava_vicuna_7b_v15_multi_granularity.py")
    cfg = Config.fromfile(path)
    for views in (cfg.image_views, cfg.train_dataloader.dataset.image_views):
        assert views.type is AnyResImageViews
        assert views.grid_pinpoints == [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]
    assert cfg.train_dataloader.dataset.max_length + 576 + 48 * 49 + 100 <= 4096
    anyres = _build_on_meta(path, architecture_folders)
    plain = _build_on_meta(osp.join(ROOT, "xtuner_configs", "vicuna_7b_v15",
                                    "avg_llava_vicuna_7b_v15_untiled_multi_granularity.py"), architecture_folders)
    assert _count(anyres) == _count(plain) + 4096 and anyres.anyres.image_newline.requires_grad
