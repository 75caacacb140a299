"""The released box rule against hand-computed cases, one per behaviour of SPEC 2, and its use by the dataset."""
import numpy as np
import pytest
import torch

from dataset_helpers import image_sample
from mg_llava.dataset import ViewGeometry, apply_box_rule, prepare_boxes, prepare_boxes_released


def released(boxes, size, scores=None, labels=None, **kwargs):
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    scores = np.linspace(0.9, 0.5, len(boxes)).astype(np.float32) if scores is None else np.asarray(scores, np.float32)
    labels = np.zeros(len(boxes), np.int64) if labels is None else np.asarray(labels, np.int64)
    return prepare_boxes_released(boxes, scores, labels, ViewGeometry.for_image(*size, high_res=768), **kwargs)


def test_rounding_and_clamping_to_the_view_not_the_image():
    # 800 x 600: pasted 100 px down a 800 square, scale 768 / 800 = 0.96, int(800 * 0.96) = 768 (no shift)
    out = released([[13, 7, 400, 590],  # square (13, 107, 400, 690) * 0.96 = (12.48, 102.72, 384, 662.4)
                    [700, 500, 830, 640],  # past the right and bottom edges: (672, 576, 796.8, 710.4)
                    [805, 10, 900, 50]],  # starts right of the view: x1 = 772.8 > 768, dropped
                   (800, 600))
    assert out.boxes.tolist() == [[12, 103, 384, 662], [672, 576, 768, 710]]
    assert out.index.tolist() == [0, 1] and out.num_degenerate == 1
    # the clean rule clips to the image's rectangle (bottom edge at (100 + 600) * 0.96 = 672) and keeps floats
    clean = prepare_boxes(np.float32([[700, 500, 830, 640]]), np.float32([0.9]), np.int64([0]),
                          ViewGeometry.for_image(800, 600, 768))
    assert clean.boxes.tolist() == [[672, 576, 768, 672]]


def test_rounding_is_half_to_even():
    # 1024 square: scale 0.75 exactly; 1.5 -> 2, 4.5 -> 4, 7.5 -> 8, 10.5 -> 10
    assert released([[2, 6, 10, 14]], (1024, 1024)).boxes.tolist() == [[2, 4, 8, 10]]


def test_the_767_side_shifts_every_box_by_one_pixel():
    # 294 x 200: 768 / 294 * 294 = 767.99..., int() = 767, so the released crop start is (767 - 768) // 2 = -1.
    # square (10, 67, 100, 167) * 2.6122 = (26.12, 175.02, 261.22, 436.24) -> rounded, then +1
    geometry = ViewGeometry.for_image(294, 200, high_res=768)
    assert int(geometry.side * geometry.scale) == 767
    assert released([[10, 20, 100, 120]], (294, 200)).boxes.tolist() == [[27, 176, 262, 437]]


def test_zero_area_boxes_are_kept_and_no_box_gives_the_dummy():
    assert released([[100, 100, 100, 200]], (1024, 1024)).boxes.tolist() == [[75, 75, 75, 150]]
    for out in (released(np.zeros((0, 4)), (640, 480)), released([[-30, -20, -5, 40]], (800, 600))):
        assert out.boxes.tolist() == [[0, 0, 0, 0]] and out.index.tolist() == [-1]
        assert out.boxes.dtype == torch.float32


def _grid(counts, best_first):
    """Non-overlapping 40 px boxes on a 1536 square (scale 0.5), ``counts[label]`` boxes per label; the labels'
    best scores are ordered as ``best_first``; scores fall with the box's rank inside its label."""
    boxes, scores, labels = [], [], []
    for label, count in enumerate(counts):
        rank_of_label = best_first.index(label)
        for rank in range(count):
            i = len(boxes)
            boxes.append([(i % 30) * 50, (i // 30) * 50, (i % 30) * 50 + 40, (i // 30) * 50 + 40])
            scores.append(0.9 - 0.001 * rank_of_label - 0.004 * rank)
            labels.append(label)
    return np.float32(boxes), np.float32(scores), np.int64(labels)


def test_limiter_above_max_boxes_keeps_20_per_label_grouped_by_label():
    boxes, scores, labels = _grid([30, 60, 40], best_first=[1, 0, 2])  # 130 survivors: the limiter applies
    out = prepare_boxes_released(boxes, scores, labels, ViewGeometry.for_image(1536, 1536, 768))
    kept = labels[out.index.numpy()]
    assert kept.tolist() == [1] * 20 + [0] * 20 + [2] * 20  # grouped, in the order of each label's best box
    for label in range(3):  # each label's 20 best, best first
        rows = out.index.numpy()[kept == label]
        assert rows.tolist() == np.flatnonzero(labels == label)[:20].tolist()
    assert out.boxes[0].tolist() == (boxes[out.index[0]] / 2).tolist()


def test_limiter_has_no_overall_cap_and_leaves_100_alone():
    boxes, scores, labels = _grid([25] * 6, best_first=list(range(6)))
    geometry = ViewGeometry.for_image(1536, 1536, 768)
    assert len(prepare_boxes_released(boxes, scores, labels, geometry).boxes) == 120  # 6 labels x 20 > 100
    assert len(prepare_boxes(boxes, scores, labels, geometry).boxes) == 100  # the clean rule caps at 100
    hundred = [20] * 5
    boxes, scores, labels = _grid(hundred, best_first=list(range(5)))
    out = prepare_boxes_released(boxes, scores, labels, geometry)
    assert len(out.boxes) == 100 and out.index.tolist() == np.argsort(-scores, kind="stable").tolist()


def test_small_limits_and_the_limit_of_50():
    boxes, scores, labels = _grid([30, 30], best_first=[0, 1])
    geometry = ViewGeometry.for_image(1536, 1536, 768)
    out = prepare_boxes_released(boxes, scores, labels, geometry, max_boxes=40)
    assert labels[out.index.numpy()].tolist() == [0] * 5 + [1] * 5
    with pytest.raises(ValueError, match="max_boxes=50 .* crashed"):
        prepare_boxes_released(boxes, scores, labels, geometry, max_boxes=50)


def test_near_max_length_keeps_one_box_per_label():
    boxes, scores, labels = _grid([4, 3, 3], best_first=[2, 0, 1])
    geometry = ViewGeometry.for_image(1536, 1536, 768)
    near = prepare_boxes_released(boxes, scores, labels, geometry, text_length=1422, max_length=1472)
    assert near.index.tolist() == [7, 0, 4]  # the best box of labels 2, 0, 1
    far = prepare_boxes_released(boxes, scores, labels, geometry, text_length=1421, max_length=1472)
    assert len(far.index) == 10
    assert len(prepare_boxes_released(boxes, scores, labels, geometry, text_length=1460).index) == 10


def test_apply_box_rule_names_the_rules():
    geometry = ViewGeometry.for_image(640, 480, 768)
    empty = (np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))
    assert len(apply_box_rule("clean", *empty, geometry).boxes) == 0
    assert apply_box_rule("released", *empty, geometry).boxes.tolist() == [[0, 0, 0, 0]]
    with pytest.raises(ValueError, match="unknown box rule 'paper'"):
        apply_box_rule("paper", *empty, geometry)


def test_dataset_applies_the_selected_rule(make_dataset):
    entry = {"id": "cat", "boxes": [[10, 20, 200, 290], [5, 5, 6, 5]], "scores": [0.9, 0.4], "labels": ["cat", "ear"]}
    samples = [image_sample("cat", "chelsea.png"), image_sample("nobox", "chelsea.png")]
    clean = make_dataset(samples, [entry], allow_missing_boxes=True)
    ours = make_dataset(samples, [entry], allow_missing_boxes=True, box_rule="released")
    geometry = ViewGeometry.for_image(451, 300, 128)
    expected = prepare_boxes_released(np.float32(entry["boxes"]), np.float32(entry["scores"]), np.int64([0, 1]),
                                      geometry, text_length=len(ours[0]["input_ids"]), max_length=ours.max_length)
    assert torch.equal(ours[0]["boxes"][0], expected.boxes) and len(expected.boxes) == 2  # zero-area box kept
    assert len(clean[0]["boxes"][0]) == 1
    assert ours[1]["boxes"][0].tolist() == [[0, 0, 0, 0]] and len(clean[1]["boxes"][0]) == 0
    with pytest.raises(ValueError, match="box_rule must be one of"):
        make_dataset(samples, [entry], box_rule="paper")
