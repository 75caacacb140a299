"""The dataset end to end: samples, boxes through the views' geometry, offline mode, the length-grouped sampler."""
import numpy as np
import pytest
import torch
from conftest import HIGH_RES
from dataset_helpers import gpt, human, image_sample, text_sample, write_boxes, write_jsonl
from mmengine.config import Config
from xtuner.dataset.samplers import LengthGroupedSampler

from mg_llava.dataset import LLaVABoxDataset, ViewGeometry, llava_box_collate_fn, prepare_boxes
from mg_llava.testing.images import load_skimage

# chelsea.png is 451 x 300: pad_y 75, scale 128 / 451
CHELSEA_BOXES = {"id": "c", "boxes": [[0, 0, 451, 300], [100, 50, 200, 150]], "scores": [0.9, 0.5],
                 "labels": ["cat", "ear"]}
SAMPLES = [
    image_sample("c", "chelsea.png"),
    text_sample("t"),
    image_sample("p", "coffee_portrait.png", answer="A cup of coffee."),
    image_sample("c", "chelsea.png", question="<image>\nWhat colour is the cat?", answer="Orange."),  # shared id
]
BOX_ENTRIES = [CHELSEA_BOXES, {"id": "p", "boxes": [], "scores": [], "labels": []}]


@pytest.fixture
def dataset(make_dataset):
    return make_dataset(SAMPLES, BOX_ENTRIES)


def test_samples(dataset, views):
    assert len(dataset) == 4 and dataset.skipped == []
    first = dataset[0]
    assert first["id"] == "c"
    # the high-res view only, as uint8: the model's data preprocessor makes both float views from it
    assert "pixel_values" not in first and first["pixel_values_aux"].dtype == torch.uint8
    assert first["pixel_values_aux"].shape == (1, 3, HIGH_RES, HIGH_RES)
    expected_views = views(load_skimage("chelsea"))
    low, aux = views.finish(first["pixel_values_aux"])
    assert torch.equal(aux[0], expected_views.pixel_values_aux) and torch.equal(low[0], expected_views.pixel_values)
    s = HIGH_RES / 451
    expected_boxes = torch.tensor([[0, 75 * s, 128, 375 * s], [100 * s, 125 * s, 200 * s, 225 * s]])
    torch.testing.assert_close(first["boxes"][0], expected_boxes)

    text = dataset[1]
    assert text["pixel_values_aux"].shape == (0, 3, HIGH_RES, HIGH_RES) and text["boxes"] == []
    assert dataset[2]["boxes"][0].shape == (0, 4)  # an image without boxes: zero box tokens, no dummy box
    torch.testing.assert_close(dataset[3]["boxes"][0], expected_boxes)  # the shared id's boxes


def test_boxes_follow_the_dataset_rules(make_dataset):
    # 120 boxes: 2 stacked copies (NMS removes one) + the max_boxes limit
    boxes = [[i * 3, 0, i * 3 + 2, 2] for i in range(118)] + [[0, 100, 50, 150], [0, 100, 50, 150]]
    entry = {"id": "c", "boxes": boxes, "scores": [0.5] * 118 + [0.9, 0.8], "labels": ["x"] * 120}
    dataset = make_dataset([image_sample("c", "chelsea.png")], [entry], max_boxes=7)
    out = dataset[0]["boxes"][0]
    expected = prepare_boxes(
        np.array(boxes, np.float32), np.array(entry["scores"], np.float32), np.zeros(120, np.int64),
        ViewGeometry.for_image(451, 300, HIGH_RES), max_boxes=7,
    )
    assert out.shape == (7, 4)
    torch.testing.assert_close(out, expected.boxes)
    assert expected.index.tolist() == [118, 0, 1, 2, 3, 4, 5]


def test_modality_length_and_sampler(dataset):
    lengths = dataset.modality_length
    assert [np.sign(x) for x in lengths] == [1, -1, 1, 1]
    assert [abs(x) for x in lengths] == [len(dataset[i]["input_ids"]) for i in range(4)]
    sampler = LengthGroupedSampler(dataset, per_device_batch_size=2, length_property="modality_length", seed=0)
    assert sorted(sampler) == [0, 1, 2, 3]


def test_batch_from_the_dataset(dataset):
    data = llava_box_collate_fn([dataset[i] for i in range(4)])["data"]
    assert data["pixel_values_aux"].shape[0] == 3 and len(data["boxes"]) == 3 and "pixel_values" not in data
    assert int((data["input_ids"] == -200).sum()) == 3
    assert data["attention_mask"].sum(1).tolist() == [len(dataset[i]["input_ids"]) for i in range(4)]


def test_json_list_file_gives_the_same_samples(dataset, make_dataset):
    from_json = make_dataset(SAMPLES, BOX_ENTRIES, name="data.json")
    assert from_json.text_data["where"] == ["item 0", "item 1", "item 2", "item 3"]
    assert dataset.text_data["where"] == ["line 1", "line 2", "line 3", "line 4"]
    for i in range(4):
        assert torch.equal(from_json[i]["input_ids"], dataset[i]["input_ids"])


def test_offline_mode_through_xtuners_tool(dataset, views, tokenizers, image_folder, tmp_path):
    """XTuner's ``process_untokenized_llava_data`` builds the dataset from a config and saves its text_data."""
    from xtuner.dataset.map_fns import template_map_fn_factory
    from xtuner.tools.process_untokenized_llava_data import build_llava_dataset

    from mg_llava.dataset import PROMPT_TEMPLATE

    box_file = str(tmp_path / "boxes.json")
    common = dict(type=LLaVABoxDataset, image_folder=image_folder, image_views=views, box_file=box_file)
    cfg = Config(
        dict(
            train_dataloader=dict(
                dataset=dict(
                    data_path=str(tmp_path / "data.jsonl"),
                    tokenizer=tokenizers["vicuna"],
                    template_map_fn=dict(type=template_map_fn_factory, template=PROMPT_TEMPLATE.vicuna),
                    max_length=256,
                    num_proc=1,
                    **common,
                )
            )
        )
    )
    folder = str(tmp_path / "tokenised")
    build_llava_dataset(cfg).text_data.save_to_disk(folder)

    offline = LLaVABoxDataset(offline_processed_text_folder=folder, **{k: v for k, v in common.items() if k != "type"})
    assert len(offline) == len(dataset)
    assert offline.modality_length == dataset.modality_length
    for i in range(len(dataset)):
        a, b = offline[i], dataset[i]
        assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["labels"], b["labels"])
        assert all(torch.equal(x, y) for x, y in zip(a["boxes"], b["boxes"]))


def test_offline_folder_must_come_from_this_dataset(views, image_folder, tmp_path):
    from datasets import Dataset

    folder = str(tmp_path / "plain")
    Dataset.from_list([{"input_ids": [1, 2], "labels": [-100, 2]}]).save_to_disk(folder)
    with pytest.raises(ValueError, match=r"lacks columns \['sample_index', 'where', 'id', 'image', 'length'\]"):
        LLaVABoxDataset(image_folder, views, offline_processed_text_folder=folder)


def test_multi_turn_with_image_in_a_later_turn(make_dataset):
    sample = {"id": "c", "image": "chelsea.png",
              "conversations": [human("Hi."), gpt("Hello."), human("<image> What is this?"), gpt("A cat.")]}
    dataset = make_dataset([sample], [CHELSEA_BOXES])
    ids = dataset[0]["input_ids"]
    assert (ids == -200).sum() == 1
    assert (ids == -200).nonzero().item() > 10  # in the second turn


def test_registered_and_buildable_by_name(views, image_folder, tmp_path):
    from xtuner.registry import BUILDER

    from mg_llava.dataset import ImageViews, llava_box_collate_fn, load_box_file
    from mg_llava.registry import MODELS

    assert MODELS.get("LLaVABoxDataset") is LLaVABoxDataset
    assert MODELS.get("ImageViews") is ImageViews
    assert MODELS.get("llava_box_collate_fn") is llava_box_collate_fn
    assert MODELS.get("load_box_file") is load_box_file
    built = BUILDER.build(dict(type="mg_llava.ImageViews", image_processor=dict(
        type="transformers.CLIPImageProcessor", image_mean=list(views.mean), image_std=list(views.std)),
        high_res=768, low_res=336))
    assert isinstance(built, ImageViews) and built.fill == views.fill


def test_concatenation_keeps_modality_length(dataset, make_dataset):
    from mg_llava.dataset import ConcatLLaVABoxDataset

    other = make_dataset([text_sample("t2"), image_sample("c", "chelsea.png")], BOX_ENTRIES, name="other.jsonl")
    mixture = ConcatLLaVABoxDataset([dataset, other])
    assert len(mixture) == 6 and mixture[4]["id"] == "t2" and mixture[5]["boxes"][0].shape == (2, 4)
    assert mixture.modality_length == dataset.modality_length + other.modality_length
    sampler = LengthGroupedSampler(mixture, per_device_batch_size=2, length_property="modality_length", seed=0)
    assert sorted(sampler) == list(range(6))
    with pytest.raises(ValueError, match="needs at least one dataset"):
        ConcatLLaVABoxDataset([])


def test_concatenation_gives_shared_settings_to_each_part_config(dataset, views, tokenizers, image_folder, tmp_path):
    """Settings given once to the mixture reach every part's config; a part's own setting wins."""
    from xtuner.dataset.map_fns import template_map_fn_factory

    from mg_llava.dataset import PROMPT_TEMPLATE, ConcatLLaVABoxDataset

    data_path = write_jsonl(tmp_path / "parts.jsonl", SAMPLES)
    box_file = write_boxes(tmp_path / "part_boxes.json", BOX_ENTRIES)
    part = dict(type=LLaVABoxDataset, data_path=data_path, box_file=box_file)
    shared = dict(image_folder=image_folder, image_views=views, tokenizer=tokenizers["vicuna"], num_proc=1,
                  template_map_fn=dict(type=template_map_fn_factory, template=PROMPT_TEMPLATE.vicuna), max_length=256)
    mixture = ConcatLLaVABoxDataset([part, dict(part, max_boxes=1)], **shared)
    assert len(mixture) == 8
    for i in range(4):  # the first part is built exactly like the fixture's dataset
        assert list(mixture[i]["input_ids"]) == list(dataset[i]["input_ids"])
    assert dataset[0]["boxes"][0].shape == (2, 4) and mixture[4]["boxes"][0].shape == (1, 4)  # the part's own limit
    with pytest.raises(TypeError, match="already built"):
        ConcatLLaVABoxDataset([dataset, part], **shared)
