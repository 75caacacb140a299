"""The sample-answer hook prepares its samples with the training data's settings (DataSettings.from_config): the
tokenizer, template, views and box rules the model trains with, the released box rule included."""
import os.path as osp

import pytest
from mmengine.config import Config

from mg_llava.dataset import training_dataset
from mg_llava.engine import SampleAnswersHook
from mg_llava.engine.sample_answers_hook import find_sample_image

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = osp.join(ROOT, "xtuner_configs")
SAMPLES = [dict(image="chelsea.jpg", question="What is in the picture?", boxes=None)]


def tiny_config(tiny_models, box_rule=None):
    """The tiny stage-2 config pointed at the session's tiny models; ``box_rule`` set as the released-rule config
    sets it (the setting, which its training data takes)."""
    cfg = Config.fromfile(osp.join(CONFIGS, "tiny", "mg_llava_tiny_cpu_finetune.py"))
    options = dict(llm_name_or_path=tiny_models["llm_vicuna"], visual_encoder_name_or_path=tiny_models["clip"])
    if box_rule is not None:
        options["box_rule"] = box_rule
    cfg.merge_from_dict(options)
    assert training_dataset(cfg).box_rule == (box_rule or "clean")
    return cfg


@pytest.mark.parametrize("name, rule", [("mg_llava_vicuna_7b_v15_finetune_released.py", "released"),
                                        ("mg_llava_vicuna_7b_v15_finetune.py", "clean")])
def test_hook_takes_the_box_rule_the_config_trains_with(name, rule):
    cfg = Config.fromfile(osp.join(CONFIGS, "vicuna_7b_v15", name))
    settings = SampleAnswersHook(SAMPLES).data_settings(cfg)
    assert settings.box_rule == rule == training_dataset(cfg).box_rule
    assert settings.tokenizer == training_dataset(cfg).tokenizer
    assert settings.image_views == training_dataset(cfg).image_views


@pytest.mark.parametrize("rule, boxes", [("released", 1), ("clean", 0)])
def test_released_rule_config_answers_with_the_released_box_rule(tiny_models, rule, boxes):
    """An image without boxes gets the released rule's dummy box only under that rule: the training-time answers of
    a released-rule config see what its training samples see."""
    hook = SampleAnswersHook(SAMPLES)
    hook.build_preprocessor(tiny_config(tiny_models, box_rule=rule))
    assert hook.preprocessor.box_rule == rule
    prepared = hook.preprocessor.prepare_image(find_sample_image("chelsea.jpg"), None)
    assert len(prepared.boxes) == boxes


def test_hook_arguments_replace_the_config_settings(tiny_models):
    hook = SampleAnswersHook(SAMPLES, box_rule="released", max_boxes=3)
    hook.build_preprocessor(tiny_config(tiny_models))
    assert (hook.preprocessor.box_rule, hook.preprocessor.max_boxes) == ("released", 3)
    with pytest.raises(ValueError, match="tokenizer"):
        SampleAnswersHook(SAMPLES).build_preprocessor(None)
