"""The sequence budget of every shipped config: its longest admissible sample fits the LLM's positions, the three
forms (image, video, tiled image) count as SPEC 1.7/1.8 and the any-res model say, and the video recipe's remedy is
what makes it fit."""
import os.path as osp
from glob import glob

import pytest
from mmengine.config import Config

from mg_llava.token_budget import config_budget, rope_factor

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = sorted(p for p in glob(osp.join(ROOT, "xtuner_configs", "**", "*.py"), recursive=True)
                 if "/_base_/" not in p)
VIDEO = osp.join(ROOT, "xtuner_configs", "vicuna_7b_v15", "mg_llava_vicuna_7b_v15_video_finetune_qlora.py")
TEXT = 2048 - 576  # the real recipes' max_length


def _id(path):
    return osp.relpath(path, osp.join(ROOT, "xtuner_configs"))


def load(path, tiny_models):
    """The config, the tiny ones pointed at the session's tiny checkpoints (their work_dirs assets may not exist)."""
    cfg = Config.fromfile(path)
    if "/tiny/" in path:
        family = "phi3" if "phi3" in cfg.model.llm.pretrained_model_name_or_path else "vicuna"
        cfg.model.llm.pretrained_model_name_or_path = tiny_models[f"llm_{family}"]
        cfg.model.visual_encoder.pretrained_model_name_or_path = tiny_models["clip"]
    return cfg


@pytest.mark.parametrize("path", CONFIGS, ids=_id)
def test_longest_admissible_sample_fits_the_llm_positions(path, tiny_models):
    budget = config_budget(load(path, tiny_models))
    assert budget.longest <= budget.positions, budget.as_dict()
    assert budget.image_sample >= budget.text  # the visual tokens come on top of the text


def test_the_three_forms_count_their_tokens():
    image = config_budget(Config.fromfile(osp.join(ROOT, "xtuner_configs", "vicuna_7b_v15",
                                                   "mg_llava_vicuna_7b_v15_finetune.py")))
    assert (image.image_tokens, image.max_boxes, image.num_frames, image.positions) == (576, 100, 0, 4096)
    assert image.longest == TEXT - 1 + 576 + 100
    video = config_budget(Config.fromfile(VIDEO))
    assert (video.num_frames, video.rope_factor, video.positions) == (8, 2.0, 8192)
    assert video.video_sample == video.longest == TEXT - 1 + 8 * (576 + 100)
    tiled = config_budget(Config.fromfile(osp.join(ROOT, "xtuner_configs", "vicuna_7b_v15",
                                                   "avg_llava_vicuna_7b_v15_multi_granularity.py")))
    # the largest canvas, 672 x 672: 2 x 2 crops of 24 x 24 tokens, 48 rows of 48 + 1 row end (the config's 2928
    # with the global view's 576)
    assert tiled.tiled_tokens == 48 * 49 and tiled.tiled_tokens + tiled.image_tokens == 2928
    assert tiled.longest == 1024 - 1 + 2928 + 100
    no_objects = config_budget(Config.fromfile(osp.join(ROOT, "xtuner_configs", "vicuna_7b_v15",
                                                        "llava_mmfuser_vicuna_7b_v15_finetune.py")))
    assert no_objects.max_boxes == 0 and no_objects.longest == TEXT - 1 + 576


def test_video_recipe_fits_only_with_its_rope_scaling():
    """Without the remedy, 8 frames x 576 tokens alone pass Vicuna v1.5's 4096 positions; with it the full-length
    sample fits, but a per-frame box cap could not have saved it."""
    cfg = Config.fromfile(VIDEO)
    assert rope_factor(cfg) == 2.0
    with_remedy = config_budget(cfg)
    assert with_remedy.fits
    cfg.model.llm.pop("rope_scaling")
    without = config_budget(cfg)
    assert without.positions == 4096 and not without.fits
    assert without.boxes_per_frame_that_fit() < 0
    # the dataset's refusal is set to the same numbers
    video_source = cfg.train_dataloader.dataset.datasets[1]
    assert video_source.max_positions == with_remedy.positions and video_source.image_tokens == 576


def test_only_linear_rope_scaling_is_budgeted():
    cfg = Config.fromfile(VIDEO)
    cfg.model.llm.rope_scaling = dict(type="dynamic", factor=2.0)
    with pytest.raises(ValueError, match="linear"):
        config_budget(cfg)
