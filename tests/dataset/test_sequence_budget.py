"""The longest sample a tiny config admits, built through the dataset, is what its budget says; the dataset refuses
a sample past ``max_positions`` by name."""
import os.path as osp

import pytest
from dataset_helpers import gpt, human, image_sample
from mmengine.config import Config

from mg_llava.dataset import VIDEO_TOKEN_INDEX, BadSampleError
from mg_llava.testing.tiny_video_dataset import NUM_FRAMES
from mg_llava.token_budget import config_budget, sequence_length

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TINY = osp.join(ROOT, "xtuner_configs", "tiny")
IMAGE_TOKEN_INDEX = -200


def tiny_budget(name, tiny_models):
    cfg = Config.fromfile(osp.join(TINY, name))
    cfg.model.llm.pretrained_model_name_or_path = tiny_models["llm_vicuna"]
    cfg.model.visual_encoder.pretrained_model_name_or_path = tiny_models["clip"]
    return config_budget(cfg)


def full_box_entry(sample_id, count=100):
    """``count`` boxes, 10 x 10 px on a grid over chelsea.png (451 x 300), each its own label (NMS keeps them all)."""
    boxes = [[20 + 40 * (i % 10), 20 + 25 * (i // 10), 30 + 40 * (i % 10), 30 + 25 * (i // 10)] for i in range(count)]
    return {"id": sample_id, "boxes": boxes, "scores": [0.9] * count, "labels": [f"thing{i}" for i in range(count)]}


def longest(sample_id):
    """An image sample whose text runs far past any tiny max_length (only the answer is cut)."""
    return image_sample(sample_id, "chelsea.png", answer=" ".join(["the cat sits on the mat"] * 400))


def loaded_length(item):
    ids = item["input_ids"]
    placeholders = int(((ids == IMAGE_TOKEN_INDEX) | (ids == VIDEO_TOKEN_INDEX)).sum())
    return sequence_length(len(ids), placeholders, len(item["boxes"]), 16, sum(len(b) for b in item["boxes"]))


def test_longest_image_sample_of_the_tiny_config_is_its_budget(make_dataset, tiny_models):
    budget = tiny_budget("mg_llava_tiny_cpu_finetune.py", tiny_models)
    assert budget.image_tokens == 16  # (56 / 14)^2
    dataset = make_dataset([longest("long")], [full_box_entry("long")], max_length=budget.text)
    item = dataset[0]
    assert len(item["input_ids"]) == budget.text and len(item["boxes"][0]) == budget.max_boxes == 100
    assert loaded_length(item) == budget.image_sample == budget.longest <= budget.positions


def test_dataset_refuses_a_sample_past_max_positions_by_name(make_dataset, tiny_models):
    budget = tiny_budget("mg_llava_tiny_cpu_finetune.py", tiny_models)
    fits = make_dataset([longest("long")], [full_box_entry("long")], max_length=budget.text,
                        max_positions=budget.image_sample, image_tokens=16)
    assert loaded_length(fits[0]) == budget.image_sample
    refused = make_dataset([longest("long")], [full_box_entry("long")], max_length=budget.text,
                           max_positions=budget.image_sample - 1, image_tokens=16)
    with pytest.raises(BadSampleError, match=rf"'long'.*{budget.image_sample} tokens.*max_positions="
                                             rf"{budget.image_sample - 1}"):
        refused[0]
    with pytest.raises(ValueError, match="go together"):
        make_dataset([longest("long")], [full_box_entry("long")], max_positions=100)


def test_video_sample_counts_every_frame(make_dataset, tiny_videos, tiny_models):
    import json

    with open(tiny_videos["video_finetune"]) as f:
        sample = dict(json.load(f)[0])
    with open(tiny_videos["video_boxes"]) as f:
        entry = next(e for e in json.load(f) if e["id"] == sample["id"])
    sample["conversations"] = [human("<video>\nWhat happens?"), gpt(" ".join(["a cat"] * 600))]
    budget = tiny_budget("mg_llava_tiny_cpu_video_finetune.py", tiny_models)
    assert budget.num_frames == NUM_FRAMES
    dataset = make_dataset([sample], [entry], video_folder=tiny_videos["video_folder"], num_frames=NUM_FRAMES,
                           max_length=budget.text)
    item = dataset[0]
    boxes = sum(len(b) for b in item["boxes"])
    assert len(item["boxes"]) == NUM_FRAMES and len(item["input_ids"]) == budget.text
    assert loaded_length(item) == budget.text - 1 + NUM_FRAMES * 16 + boxes <= budget.video_sample
    too_small = make_dataset([sample], [entry], video_folder=tiny_videos["video_folder"], num_frames=NUM_FRAMES,
                             max_length=budget.text, max_positions=loaded_length(item) - 1, image_tokens=16)
    with pytest.raises(BadSampleError, match=f"{NUM_FRAMES} image"):
        too_small[0]
