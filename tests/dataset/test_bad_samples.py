"""Every kind of bad input: an error naming the sample and file, or the explicit, counted and logged skip policy."""
import math

import pytest
import torch
from dataset_helpers import gpt, human, image_sample, text_sample, write_jsonl

from mg_llava.dataset import BadSampleError, check_sample, read_llava_file
from mg_llava.dataset import conversations as conversations_module
from mg_llava.dataset import llava_box_dataset as dataset_module

NO_BOXES = {"boxes": [], "scores": [], "labels": []}


def boxes_for(*ids):
    return [{"id": i, **NO_BOXES} for i in ids]


@pytest.fixture
def logged(monkeypatch):
    """Messages the dataset logs (mmengine's logger writes to its own stream, so capture at the call)."""
    messages = []
    for module in (dataset_module, conversations_module):
        monkeypatch.setattr(module, "print_log", lambda msg, **kwargs: messages.append(msg))
    return messages


# ---------------------------------------------------------------------------------------------- text checks
@pytest.mark.parametrize(
    "sample, reason",
    [
        (text_sample("a", question="<image>\nWhat is this?"), "image token without image"),
        (image_sample("a", "x.png", question="What is this?"), "image token count"),
        (image_sample("a", "x.png", question="<image><image>\nTwo?"), "image token count"),
        ({"id": "a", "conversations": []}, "empty conversation"),
        ({"id": "a", "image": "x.png"}, "empty conversation"),
        ({"id": "a", "conversations": [human("Hi."), gpt("<image>")]}, "image token in answer"),
        ({"id": "a", "conversations": [human("Hi.")]}, "unanswered turn"),
        ({"id": "a", "conversations": [gpt("Hi."), human("Hello.")]}, "bad turn order"),
        ({"id": "a", "conversations": [human("Hi."), {"from": "gpt", "value": None}]}, "bad turn"),
        ({"conversations": [human("Hi."), gpt("Hello.")]}, "missing id"),
        ({"id": "a", "image": "", "conversations": [human("<image>"), gpt("A.")]}, "bad image field"),
        ({"id": "a", "video": "", "conversations": [human("<video>"), gpt("A.")]}, "bad video field"),
        ({"id": "a", "video": "v.mp4", "image": "x.png", "conversations": [human("<video>"), gpt("A.")]},
         "image and video"),
        ({"id": "a", "video": "v.mp4", "conversations": [human("What?"), gpt("A.")]}, "video token count"),
        ({"id": "a", "video": "v.mp4", "conversations": [human("<video><video>"), gpt("A.")]}, "video token count"),
        ({"id": "a", "video": "v.mp4", "conversations": [human("<image>\n<video>"), gpt("A.")]},
         "image token without image"),
        (text_sample("a", question="<video>\nWhat happens?"), "video token without video"),
        ({"id": "a", "video": "v.mp4", "conversations": [human("<video>"), gpt("<video>")]}, "video token in answer"),
        ([1, 2], "not a JSON object"),
    ],
)
def test_sample_checks(sample, reason):
    assert check_sample(sample).split(":")[0] == reason


def test_good_samples_pass_the_check():
    assert check_sample(image_sample("a", "x.png")) is None
    assert check_sample(text_sample("a")) is None
    assert check_sample({"id": "v", "video": "v.mp4", "conversations": [human("<video>\nWhat?"), gpt("A.")]}) is None


def test_malformed_json_line_is_located(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [text_sample("a"), '{"id": "b", "conversations": [', "", text_sample("c")])
    records, bad = read_llava_file(path)
    assert [r["id"] for r in records] == ["a", "c"] and [r["where"] for r in records] == ["line 1", "line 4"]
    assert len(bad) == 1 and bad[0].where == "line 2" and bad[0].file == path and bad[0].sample_id is None
    assert bad[0].reason.startswith("malformed JSON line")


def test_broken_json_list_raises(tmp_path):
    (tmp_path / "d.json").write_text('[{"id": "a"}')
    with pytest.raises(ValueError, match="d.json is not valid JSON"):
        read_llava_file(str(tmp_path / "d.json"))


BAD_TEXT = [
    text_sample("ok"),
    '{"id": "b", "conv',
    text_sample("img-no-image", question="<image> hi"),
    image_sample("image-no-token", "chelsea.png", question="hi"),
    {"id": "empty", "conversations": []},
]


def test_bad_text_raises_naming_every_sample(make_dataset):
    with pytest.raises(BadSampleError) as info:
        make_dataset(BAD_TEXT, boxes_for("image-no-token"))
    message = str(info.value)
    assert "4 bad sample(s) of 5" in message
    assert "data.jsonl line 2 (no id): malformed JSON line" in message
    assert "data.jsonl line 3 (id 'img-no-image'): image token without image" in message
    assert "data.jsonl line 4 (id 'image-no-token'): image token count" in message
    assert "data.jsonl line 5 (id 'empty'): empty conversation" in message
    assert [s.sample_id for s in info.value.samples] == [None, "img-no-image", "image-no-token", "empty"]


def test_bad_text_skipped_counted_and_logged(make_dataset, logged):
    dataset = make_dataset(BAD_TEXT, boxes_for("image-no-token"), on_bad_sample="skip")
    assert dataset.text_data["id"] == ["ok"]
    assert len(dataset.skipped) == 4
    assert len(logged) == 1 and "skipped 4 of 5 samples" in logged[0]
    assert "1 empty conversation, 1 image token count, 1 image token without image, 1 malformed JSON line" in logged[0]


def test_truncation_that_cuts_the_image_or_every_answer(make_dataset):
    late_image = {"id": "late", "image": "chelsea.png",
                  "conversations": [human("Hi."), gpt("Hello."), human("<image>\nAnd this?"), gpt("A cat.")]}
    ids = make_dataset([late_image], boxes_for("late"))[0]["input_ids"]
    cut = int((ids == -200).nonzero())  # keeps the first answer, cuts the image of the second turn
    long_question = text_sample("long", question="What is in the image? " * 20)
    assert len(make_dataset([long_question], [])[0]["input_ids"]) > 2 * cut
    samples = [late_image, long_question, text_sample("ok")]
    with pytest.raises(BadSampleError) as info:
        make_dataset(samples, boxes_for("late"), max_length=cut)
    reasons = {s.sample_id: s.reason for s in info.value.samples}
    assert reasons["late"] == f"image token truncated: max_length={cut} cut the image token (0 left)"
    assert reasons["long"] == f"no answer tokens within max_length={cut}"
    dataset = make_dataset(samples, boxes_for("late"), max_length=cut, on_bad_sample="skip")
    assert dataset.text_data["id"] == ["ok"] and len(dataset.skipped) == 2


# ---------------------------------------------------------------------------------------------- box entries
def test_missing_box_entry(make_dataset, logged):
    samples = [image_sample("c", "chelsea.png"), image_sample("nobox", "chelsea.png"), text_sample("t")]
    with pytest.raises(BadSampleError, match=r"line 2 \(id 'nobox'\): missing box entry: .*boxes.json"):
        make_dataset(samples, boxes_for("c"))

    skipped = make_dataset(samples, boxes_for("c"), on_bad_sample="skip")
    assert skipped.text_data["id"] == ["c", "t"]
    assert "skipped 1 of 3 samples" in logged[-1] and "1 missing box entry" in logged[-1]

    allowed = make_dataset(samples, boxes_for("c"), allow_missing_boxes=True)
    assert len(allowed) == 3 and allowed[1]["boxes"][0].shape == (0, 4)
    assert "1 image samples have no box entry" in logged[-1] and "nobox" in logged[-1]


def test_nan_box_entry(make_dataset, tmp_path):
    entries = boxes_for("c") + [{"id": "nan", "boxes": [[0, 0, math.nan, 5]], "scores": [0.5], "labels": ["x"]}]
    samples = [image_sample("c", "chelsea.png"), image_sample("nan", "chelsea.png")]
    with pytest.raises(ValueError, match=r"box file .*boxes.json, id 'nan': non-finite box"):
        make_dataset(samples, entries)
    dataset = make_dataset(samples, entries, on_bad_sample="skip")
    assert dataset.text_data["id"] == ["c"]
    assert dataset.skipped[0].sample_id == "nan" and dataset.skipped[0].reason.startswith("bad box entry")


def test_boxes_outside_negative_and_zero_area(make_dataset, logged):
    # chelsea.png is 451 x 300 (pad_y 75, scale 128 / 451)
    entry = {"id": "c", "boxes": [[-30, -20, 100, 100], [500, 10, 600, 50], [10, 10, 10, 60], [0, 320, 40, 400]],
             "scores": [0.9, 0.8, 0.7, 0.6], "labels": ["a", "b", "c", "d"]}
    dataset = make_dataset([image_sample("c", "chelsea.png")], [entry])
    boxes = dataset[0]["boxes"][0]
    s = 128 / 451
    torch.testing.assert_close(boxes, torch.tensor([[0.0, 75 * s, 100 * s, 175 * s]]))  # clipped, 3 dropped
    assert dataset.events["degenerate boxes"] == 1
    assert "id 'c': 3 kept box(es) lie outside the 451x300 image or have zero area; dropped" in logged[-1]


# ---------------------------------------------------------------------------------------------- images
@pytest.mark.parametrize("image", ["missing.png", "broken.jpg"])
def test_unreadable_image_raises_naming_sample_and_file(make_dataset, image):
    dataset = make_dataset([image_sample("bad", image), text_sample("t")], boxes_for("bad"))
    with pytest.raises(BadSampleError, match=rf"data.jsonl line 1 \(id 'bad'\): unreadable image \(\w+\): .*{image}"):
        dataset[0]


@pytest.mark.parametrize("image", ["missing.png", "broken.jpg"])
def test_unreadable_image_is_replaced_counted_and_logged(make_dataset, logged, image):
    samples = [image_sample("bad", image), image_sample("c", "chelsea.png")]
    dataset = make_dataset(samples, boxes_for("bad", "c"), on_bad_sample="skip")
    sample = dataset[0]
    assert sample["id"] == "c" and sample["pixel_values_aux"].shape[0] == 1  # the next index, a valid sample
    assert dataset.num_replaced == 1 and dataset.events["replaced"] == 1
    assert "(id 'bad'): unreadable image" in logged[-1] and "index 0 served by index 1" in logged[-1]
    assert len(dataset) == 2  # the sampler's view of the dataset does not change


def test_replacement_gives_up_when_nothing_is_readable(make_dataset):
    dataset = make_dataset([image_sample("a", "missing.png"), image_sample("b", "broken.jpg")],
                           boxes_for("a", "b"), on_bad_sample="skip")
    with pytest.raises(RuntimeError, match="17 consecutive samples from index 1 have unreadable images"):
        dataset[1]
    assert dataset.num_replaced == 17


def test_unknown_policy_is_rejected(make_dataset):
    with pytest.raises(ValueError, match="on_bad_sample must be one of"):
        make_dataset([text_sample("t")], [], on_bad_sample="ignore")


def test_decompression_bomb_is_an_unreadable_image(make_dataset, monkeypatch):
    from PIL import Image

    dataset = make_dataset([image_sample("c", "chelsea.png")], boxes_for("c"))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # chelsea has 135,300 pixels: over twice the limit
    with pytest.raises(BadSampleError, match=r"unreadable image \(too_large\): .*DecompressionBombError"):
        dataset[0]


def test_unreadable_image_in_a_dataloader_worker_arrives_as_our_error(make_dataset, image_folder, tmp_path):
    from torch.utils.data import DataLoader

    from mg_llava.dataset import llava_box_collate_fn

    dataset = make_dataset([image_sample("c", "chelsea.png"), image_sample("bad", "broken.jpg")], boxes_for("c", "bad"))
    loader = DataLoader(dataset, batch_size=1, num_workers=1, collate_fn=llava_box_collate_fn)
    with pytest.raises(BadSampleError, match=r"\(id 'bad'\): unreadable image \(unreadable\): .*broken.jpg"):
        list(loader)


def test_a_replaced_sample_travels_with_the_batch_from_a_dataloader_worker(make_dataset):
    """The worker's dataset copy counts the replacement where the main process never looks: the served sample names
    what it replaced (id, file, where, reason), and the collate hands that on in data_samples."""
    from torch.utils.data import DataLoader

    from mg_llava.dataset import llava_box_collate_fn

    samples = [image_sample("c", "chelsea.png"), image_sample("a", "astronaut.jpg"), image_sample("bad", "broken.jpg"),
               image_sample("gone", "missing.png"), image_sample("p", "coffee_portrait.png")]
    dataset = make_dataset(samples, boxes_for("c", "a", "bad", "gone", "p"), on_bad_sample="skip")
    loader = DataLoader(dataset, batch_size=2, num_workers=1, collate_fn=llava_box_collate_fn)
    batches = list(loader)
    assert dataset.num_replaced == 0  # the main process's copy saw nothing
    assert batches[0]["data_samples"] is None and batches[2]["data_samples"] is None
    # index 2 (bad) is served by index 4 past index 3 (gone); index 3 by index 4 again
    replaced = batches[1]["data_samples"]["replaced"]
    assert [(r["id"], r["where"], r["reason"].split(" (")[0]) for r in replaced] == [
        ("bad", "line 3", "unreadable image"), ("gone", "line 4", "unreadable image"),
        ("gone", "line 4", "unreadable image")]
    assert all(r["file"] == dataset.source for r in replaced)
    assert "broken.jpg" in replaced[0]["reason"] and "missing.png: image file not found" in replaced[1]["reason"]
    assert sum(len(b["data"]["input_ids"]) for b in batches) == 5  # every index served once
