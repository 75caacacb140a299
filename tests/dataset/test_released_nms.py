"""The released rule's NMS, limiter and near-max-length rule at the edges where they differ from mmcv's NMS (SPEC 2,
issue 26 item 5): tied scores, an IoU exactly at the threshold, float coordinates, large label ids, negative
coordinates. Each case is built from what the released code did: torchvision's ``batched_nms`` on float32 boxes (pad
offset added to the box file's Python numbers first), its kernel's stable score sort and ``float IoU > double
threshold``, and ``torch.topk`` over each label's scores in the limiter."""
import numpy as np
import torch

from mg_llava.dataset import ViewGeometry, prepare_boxes_released


def released(boxes, size, scores, labels=None, **kwargs):
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)  # the box file's Python numbers
    labels = np.zeros(len(boxes), np.int64) if labels is None else np.asarray(labels, np.int64)
    return prepare_boxes_released(boxes, np.asarray(scores, np.float32), labels,
                                  ViewGeometry.for_image(*size, high_res=768), **kwargs)


def test_tied_scores_keep_the_first_box_in_the_file():
    # 40 overlapping boxes (box 0 and box 39 still overlap at IoU 0.44), one score: the stable sort processes box 0
    # first, so it suppresses all others (mmcv's unstable sort starts elsewhere)
    boxes = [[i, 0, i + 100, 100] for i in range(40)]
    out = released(boxes, (768, 768), [0.5] * 40)
    assert out.index.tolist() == [0]


def test_tied_scores_order_the_survivors_by_file_order():
    boxes = [[0, 0, 10, 10], [100, 0, 110, 10], [200, 0, 210, 10], [300, 0, 310, 10]]
    out = released(boxes, (768, 768), [0.5, 0.7, 0.5, 0.7], labels=[0, 1, 0, 1])
    assert out.index.tolist() == [1, 3, 0, 2]


def test_iou_exactly_at_the_threshold_is_suppressed():
    # IoU 20 / 100: float32 0.2f = 0.20000000298 > 0.2 as a double, so the released kernel suppressed the box
    out = released([[0, 0, 10, 10], [0, 0, 2, 10]], (768, 768), [0.9, 0.8])
    assert out.index.tolist() == [0]
    # just below (IoU 19 / 100 < 0.2) both stay
    assert released([[0, 0, 10, 10], [0, 0, 1.9, 10]], (768, 768), [0.9, 0.8]).index.tolist() == [0, 1]


def test_float_coordinates_round_once_after_the_pad_offset():
    # 200 x 400: pad_x = 100. B's x2 = 100 + 2.8571434020987 rounds once to float32 102.857140 (IoU 0.19999976: kept);
    # rounding to float32 first and adding 100 in float32 gives 102.857147 (IoU 0.20000030: suppressed)
    x2 = 2.8571434020987
    assert np.float32(x2 + 100) != np.float32(np.float32(x2) + np.float32(100))
    out = released([[0, 0, 10, 10], [0, 0, x2, 7]], (200, 400), [0.9, 0.8])
    assert out.index.tolist() == [0, 1]


def test_large_label_ids_do_not_lose_precision():
    # label 4599 on a 3,700 px image: a float32 label offset of 4599 * 3701 > 2^24 rounds every coordinate to an
    # even number; the released NMS saw the boxes themselves (IoU 0.216: B suppressed)
    boxes = [[3602, 3603, 3612, 3611], [3604, 3601, 3615, 3606], [100, 100, 3700, 3700]]
    out = released(boxes, (3700, 3700), [0.9, 0.8, 0.5], labels=[4599, 4599, 0])
    assert out.index.tolist() == [0, 2]


def test_negative_coordinates_do_not_move_the_other_boxes():
    # the IoU of A and B is computed on their own coordinates (0.19999976: kept), not after shifting every box by
    # the most negative coordinate (-40.7), which rounds B's x2 to give 0.20000030 (suppressed). C has another label.
    x2 = float(np.float32(52.857139587402344))
    boxes = [[50, 0, 60, 10], [50, 0, x2, 7], [-40.7, 300, 30, 320]]
    out = released(boxes, (768, 768), [0.9, 0.8, 0.7], labels=[0, 0, 1])
    assert out.index.tolist() == [0, 1, 2]
    # labels never suppress each other, whatever the coordinates (the released label offsets could, by hash order)
    overlapping = [[-50, -50, 10, 10], [-50, -50, 10, 10]]
    assert released(overlapping, (768, 768), [0.9, 0.8], labels=[0, 1]).index.tolist() == [0, 1]


def _topk_rows(rows, scores, k):
    """The released limiter's pick for one label: torch.topk over its scores (rows in NMS order)."""
    return [rows[i] for i in torch.from_numpy(np.float32(scores)[rows]).topk(k, largest=True).indices.tolist()]


def test_limiter_breaks_ties_as_torch_topk():
    # 130 non-overlapping boxes: label 0 has 30 at one score (the limiter keeps 20 of them), label 1 has 100
    boxes = [[(i % 30) * 50, (i // 30) * 50, (i % 30) * 50 + 40, (i // 30) * 50 + 40] for i in range(130)]
    scores = [0.9] * 30 + list(np.linspace(0.8, 0.3, 100))
    labels = [0] * 30 + [1] * 100
    out = released(boxes, (1536, 1536), scores, labels=labels)
    expected = _topk_rows(list(range(30)), scores, 20)
    assert expected != list(range(20)), "torch.topk kept tied scores in order: this case no longer tests ties"
    assert out.index.tolist()[:20] == expected
    assert out.index.tolist()[20:] == list(range(30, 50))


def test_near_max_length_breaks_ties_as_torch_topk():
    boxes = [[i * 50, 0, i * 50 + 40, 40] for i in range(5)]
    out = released(boxes, (768, 768), [0.5] * 5, text_length=1422, max_length=1472)
    expected = _topk_rows(list(range(5)), [0.5] * 5, 1)
    assert expected != [0], "torch.topk kept tied scores in order: this case no longer tests ties"
    assert out.index.tolist() == expected


def test_scores_compare_as_float32():
    # distinct as float64, one float32 value: a tie in the released code, so the survivors keep file order
    scores = np.array([0.30000000001, 0.30000000002])
    out = prepare_boxes_released(np.float64([[0, 0, 10, 10], [100, 0, 110, 10]]), scores, np.int64([0, 0]),
                                 ViewGeometry.for_image(768, 768, 768))
    assert out.index.tolist() == [0, 1]


def test_one_call_with_integer_label_offsets_equals_nms_label_by_label():
    # the fast path for whole coordinates (the released box files) against torchvision's NMS run per label
    from mg_llava.dataset.released_boxes import (exact_integer_label_offsets, nms_label_by_label,
                                                 nms_with_integer_label_offsets)

    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(2, 80))
        corner = rng.integers(-60, 700, (n, 2))
        boxes = torch.from_numpy(np.concatenate([corner, corner + rng.integers(0, 200, (n, 2))], 1).astype(np.float32))
        scores = torch.from_numpy(rng.choice([0.3, 0.5, 0.7], n).astype(np.float32))  # many ties
        labels = rng.choice([0, 7, 4599], n)
        assert exact_integer_label_offsets(boxes, labels)
        loop = nms_label_by_label(boxes, scores, labels, 0.2)
        loop = loop[torch.sort(scores[loop], descending=True, stable=True).indices]
        assert nms_with_integer_label_offsets(boxes, scores, labels, 0.2).tolist() == loop.tolist()
    assert not exact_integer_label_offsets(torch.tensor([[0.5, 0, 10, 10]]), np.zeros(1))
    # labels take consecutive bands whatever their ids; 2,000 bands of 9,001 px pass 2**24
    assert exact_integer_label_offsets(torch.tensor([[0.0, 0, 9000, 10]] * 2), np.array([0, 4599]))
    assert not exact_integer_label_offsets(torch.tensor([[0.0, 0, 9000, 10]] * 2000), np.arange(2000))
