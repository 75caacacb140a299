"""The chat/evaluation preprocessing gives exactly the training dataset's tensors for the same sample."""
import json
import os.path as osp

import pytest
import torch
from xtuner.utils import IGNORE_INDEX

from inference_helpers import tiny_dataset


def answer_start(labels):
    """Index of the first token of the last answer (the last run of trained labels)."""
    trained = (labels != IGNORE_INDEX).nonzero().flatten().tolist()
    start = trained[-1]
    while start - 1 in trained:
        start -= 1
    return start


@pytest.fixture(scope="module")
def setups(tiny_models, tiny_data, spec):
    """(dataset, preprocessor) per template, on the tiny data: vicuna (EOS after answers, BOS each turn) and
    llama3_chat (the suffix is the EOS, no BOS after the first turn)."""
    from transformers import AutoTokenizer

    from mg_llava.dataset import PROMPT_TEMPLATE
    from mg_llava.inference.spec import views_from_spec
    from mg_llava.inference.preprocess import Preprocessor

    out = {}
    for template, llm in (("vicuna", "llm_vicuna"), ("llama3_chat", "llm_llama3")):
        tokenizer = AutoTokenizer.from_pretrained(tiny_models[llm])
        views = views_from_spec(spec["image"])
        # float views, as chat makes them (the uint8 hand-over gives the same: tests/model/test_views_data_preprocessor)
        out[template] = (tiny_dataset(tiny_data, views, tokenizer, template, uint8_views=False),
                         Preprocessor(tokenizer, PROMPT_TEMPLATE[template], views))
    return out



@pytest.mark.parametrize("template", ["vicuna", "llama3_chat"])
@pytest.mark.parametrize("kind", ["one_turn", "multi_turn", "text_only"])
def test_chat_sample_equals_dataset_sample(setups, tiny_data, template, kind):
    from mg_llava.dataset import load_box_file

    dataset, preprocessor = setups[template]
    with open(tiny_data["finetune"]) as f:
        records = json.load(f)
    wanted = {"one_turn": lambda r: r["id"] == "coffee" and len(r["conversations"]) == 2,
              "multi_turn": lambda r: r["id"] == "rocket" and len(r["conversations"]) == 4,
              "text_only": lambda r: "image" not in r}[kind]
    position = next(i for i, r in enumerate(records) if wanted(r))
    record = records[position]
    index = list(dataset.text_data["sample_index"]).index(position)
    expected = dataset[index]

    turns = [t["value"] for t in record["conversations"]]
    history = list(zip(turns[0:-2:2], turns[1:-2:2]))
    image = None
    if "image" in record:
        image = preprocessor.prepare_image(osp.join(tiny_data["image_folder"], record["image"]),
                                           (load_box_file(tiny_data["boxes"]), record["id"]))
    sample = preprocessor.sample(turns[-2], history, image)

    start = answer_start(expected["labels"])
    assert sample["input_ids"].tolist() == expected["input_ids"][:start].tolist()
    assert int((sample["input_ids"] == -200).sum()) == int(kind != "text_only")
    for key in ("pixel_values", "pixel_values_aux"):
        assert sample[key].shape == expected[key].shape
        assert torch.equal(sample[key], expected[key]), key
    assert len(sample["boxes"]) == len(expected["boxes"])
    for ours, theirs in zip(sample["boxes"], expected["boxes"]):
        assert len(ours) > 0 and torch.equal(ours, theirs)


def test_box_entry_and_box_generator_give_the_box_file_result(setups, tiny_data):
    from mg_llava.dataset import load_box_file

    _, preprocessor = setups["vicuna"]
    path = osp.join(tiny_data["image_folder"], "coins.jpg")
    with open(tiny_data["boxes"]) as f:
        entry = next(e for e in json.load(f) if e["id"] == "coins")
    from_table = preprocessor.prepare_image(path, (load_box_file(tiny_data["boxes"]), "coins"))
    from_entry = preprocessor.prepare_image(path, entry)
    seen = []

    def generator(image):  # a stand-in BoxGenerator: it must get the full-resolution image
        seen.append(image.size)
        return entry

    from_generator = preprocessor.prepare_image(path, generator)
    assert from_table.num_raw_boxes == 24 and len(from_table.boxes) > 0
    assert torch.equal(from_entry.boxes, from_table.boxes)
    assert torch.equal(from_generator.boxes, from_table.boxes)
    assert seen == [(384, 303)]


def test_bad_inputs_are_named(setups, tiny_data, tmp_path):
    from mg_llava.dataset import load_box_file
    from mg_llava.inference.preprocess import ImageLoadError, MissingBoxesError

    _, preprocessor = setups["vicuna"]
    with pytest.raises(ImageLoadError, match="sample 7: .*nowhere.jpg: image file not found"):
        preprocessor.prepare_image(str(tmp_path / "nowhere.jpg"), where="sample 7")
    (tmp_path / "junk.jpg").write_bytes(b"not an image")
    with pytest.raises(ImageLoadError, match="junk.jpg"):
        preprocessor.prepare_image(str(tmp_path / "junk.jpg"))
    with pytest.raises(MissingBoxesError, match="no entry for id 'zebra'"):
        preprocessor.prepare_image(osp.join(tiny_data["image_folder"], "coins.jpg"),
                                   (load_box_file(tiny_data["boxes"]), "zebra"))
    with pytest.raises(ValueError, match="2 <image> tokens for 1 image"):
        preprocessor.encode_prompt("<image> and <image>", has_image=True)
