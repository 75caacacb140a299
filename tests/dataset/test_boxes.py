"""The box rules of SPEC 2 (shift, class-aware NMS, the limit, rescale, clip, drop) against hand-computed cases."""
import numpy as np
import pytest
import torch

from mg_llava.dataset import ViewGeometry, prepare_boxes


def run(boxes, scores, labels, size, high_res=768, **kwargs):
    geometry = ViewGeometry.for_image(*size, high_res=high_res)
    return prepare_boxes(
        np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32), np.asarray(labels), geometry,
        **kwargs,
    )


def test_landscape_conversion_hand_computed():
    # 640 x 480 -> pad_y 80, scale 1.2: (x, y) -> (1.2 x, 1.2 (y + 80))
    out = run([[10, 20, 110, 220]], [0.9], [0], (640, 480))
    torch.testing.assert_close(out.boxes, torch.tensor([[12.0, 120.0, 132.0, 360.0]]))
    assert out.boxes.dtype == torch.float32


def test_portrait_conversion_hand_computed():
    # 300 x 500 -> pad_x 100, scale 1.536: the whole image is [153.6, 0, 614.4, 768]
    out = run([[0, 0, 300, 500], [30, 50, 60, 100]], [0.9, 0.8], [0, 1], (300, 500))
    expected = torch.tensor([[153.6, 0.0, 614.4, 768.0], [199.68, 76.8, 245.76, 153.6]])
    torch.testing.assert_close(out.boxes, expected)


def test_tiny_geometry_hand_computed():
    # 451 x 300 at 128: pad_y 75, scale 128 / 451
    out = run([[0, 0, 451, 300]], [1.0], [0], (451, 300), high_res=128)
    s = 128 / 451
    torch.testing.assert_close(out.boxes, torch.tensor([[0.0, 75 * s, 128.0, 375 * s]]))


def test_nms_threshold_and_class_awareness():
    # IoU([0,0,10,10], [0,0,10,y2]) = 10 y2 / 100 for y2 <= 10: y2 = 2.1 -> 0.21 (> 0.2), y2 = 1.9 -> 0.19
    out = run([[0, 0, 10, 10], [0, 0, 10, 2.1]], [0.9, 0.8], [0, 0], (100, 100))
    assert out.index.tolist() == [0]  # same label, IoU 0.21: suppressed
    out = run([[0, 0, 10, 10], [0, 0, 10, 1.9]], [0.9, 0.8], [0, 0], (100, 100))
    assert out.index.tolist() == [0, 1]  # IoU 0.19: kept
    out = run([[0, 0, 10, 10], [0, 0, 10, 10]], [0.9, 0.8], [0, 1], (100, 100))
    assert out.index.tolist() == [0, 1]  # identical boxes, different labels: both kept
    out = run([[0, 0, 10, 10], [0, 0, 10, 10]], [0.8, 0.9], [3, 3], (100, 100))
    assert out.index.tolist() == [1]  # the higher score survives


def test_nms_keeps_labels_apart_with_negative_coordinates():
    # mmcv offsets each label's boxes by label * (max coordinate + 1); with x < 0 in play that alone would push
    # label 1's [-40, -40, 10, 10] onto label 0's [60, 60, 100, 100] (IoU 0.59) and suppress it.
    out = run([[60, 60, 100, 100], [-40, -40, 10, 10]], [0.9, 0.8], [0, 1], (100, 100), high_res=100)
    assert out.index.tolist() == [0, 1]
    torch.testing.assert_close(out.boxes[1], torch.tensor([0.0, 0.0, 10.0, 10.0]))


def test_limit_keeps_highest_scores_in_descending_order():
    rng = np.random.default_rng(0)
    n = 150
    x = np.arange(n, dtype=np.float32) * 4  # disjoint 3-px boxes on a 600-px line
    boxes = np.stack([x, np.zeros(n), x + 3, np.full(n, 3)], axis=1).astype(np.float32)
    scores = rng.permutation(n).astype(np.float32) / n
    out = run(boxes, scores, np.zeros(n, int), (600, 600), high_res=600)
    assert len(out.boxes) == 100
    expected = np.argsort(-scores, kind="stable")[:100]
    assert out.index.tolist() == expected.tolist()
    torch.testing.assert_close(out.boxes, torch.from_numpy(boxes[expected]))


def test_limit_applies_after_nms_and_breaks_ties_by_file_order():
    # 3 boxes of one label stacked on each other (NMS keeps the best) + 4 disjoint boxes of equal score
    boxes = [[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]] + [[20 * i, 50, 20 * i + 10, 60] for i in range(1, 5)]
    scores = [0.5, 0.95, 0.6, 0.7, 0.7, 0.7, 0.7]
    out = run(boxes, scores, [0] * 7, (100, 100), max_boxes=3)
    assert out.index.tolist() == [1, 3, 4]


def test_limit_tie_break_among_many_equal_scores():
    # 60 disjoint boxes, three score levels in a shuffled layout: within a level the file order decides
    rng = np.random.default_rng(1)
    n = 60
    x = np.arange(n, dtype=np.float32) * 10
    boxes = np.stack([x, np.zeros(n), x + 5, np.full(n, 5)], axis=1).astype(np.float32)
    scores = rng.choice(np.array([0.3, 0.5, 0.7], np.float32), n)
    out = run(boxes, scores, np.zeros(n, int), (600, 600), high_res=600, max_boxes=25)
    expected = sorted(range(n), key=lambda i: (-scores[i], i))[:25]
    assert out.index.tolist() == expected


def test_clip_to_image_and_drop_degenerate():
    # 640 x 480 at 768: the image spans y 96..672 of the view (padding above and below)
    boxes = [
        [-20, -50, 100, 100],  # reaches above and left of the image: clipped to its edges
        [600, 400, 700, 700],  # reaches past the right and bottom edges
        [10, -70, 50, -10],  # entirely above the image (over the padding): nothing left
        [50, 50, 50, 80],  # zero width
        [700, 10, 800, 50],  # entirely right of the image
    ]
    out = run(boxes, [0.9, 0.8, 0.7, 0.6, 0.5], [0, 1, 2, 3, 4], (640, 480))
    torch.testing.assert_close(out.boxes, torch.tensor([[0.0, 96.0, 120.0, 216.0], [720.0, 576.0, 768.0, 672.0]]))
    assert out.index.tolist() == [0, 1]
    assert out.num_degenerate == 3


def test_zero_boxes():
    out = run(np.zeros((0, 4)), [], [], (640, 480))
    assert out.boxes.shape == (0, 4) and out.index.shape == (0,) and out.num_degenerate == 0


def test_input_arrays_are_not_modified():
    boxes = np.array([[10, 20, 110, 220]], np.float32)
    before = boxes.copy()
    prepare_boxes(boxes, np.array([0.5], np.float32), np.array([0]), ViewGeometry.for_image(640, 480, 768))
    np.testing.assert_array_equal(boxes, before)


@pytest.mark.parametrize("iou_threshold, kept", [(0.5, [0, 1]), (0.2, [0])])
def test_iou_threshold_is_configurable(iou_threshold, kept):
    # IoU([0,0,10,10], [0,0,10,3]) = 0.3
    out = run([[0, 0, 10, 10], [0, 0, 10, 3]], [0.9, 0.8], [0, 0], (100, 100), iou_threshold=iou_threshold)
    assert out.index.tolist() == kept
