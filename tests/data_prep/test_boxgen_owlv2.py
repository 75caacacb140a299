"""OWLv2Detector against transformers' own OWLv2 path, batching, empty tags and NMS."""
import pytest
import torch

from mg_llava.boxgen.geometry import round_boxes
from mg_llava.boxgen.images import to_uint8_tensor
from mg_llava.boxgen.owlv2 import OWLv2Detector
from mg_llava.testing.images import load_skimage

TAGS = ["cup", "saucer", "spoon", "table"]


@pytest.fixture(scope="module")
def wide_image():
    return load_skimage("coffee").crop((0, 0, 400, 250))  # non-square: OWLv2 pads it at the bottom


def reference(owlv2_dir, image, tags, threshold):
    """transformers' documented OWLv2 usage, then clipping to the image and int rounding."""
    from transformers import Owlv2ForObjectDetection, Owlv2Processor

    processor = Owlv2Processor.from_pretrained(owlv2_dir)
    model = Owlv2ForObjectDetection.from_pretrained(owlv2_dir).eval()
    inputs = processor(text=[[f"a photo of {t}" for t in tags]], images=image, return_tensors="pt")
    with torch.no_grad():
        outputs = model(**inputs)
    result = processor.post_process_object_detection(outputs, threshold=threshold,
                                                     target_sizes=[(image.height, image.width)])[0]
    order = result["scores"].argsort(descending=True)
    limits = torch.tensor([image.width, image.height] * 2, dtype=torch.float32)
    boxes = torch.minimum(result["boxes"][order].clamp(min=0), limits)
    int_boxes, keep = round_boxes(boxes)
    return int_boxes, result["scores"][order][keep].tolist(), [tags[i] for i in result["labels"][order][keep]]


def test_matches_transformers_reference_on_a_non_square_image(tiny_models, wide_image):
    detector = OWLv2Detector(tiny_models["owlv2"], score_threshold=0.2, preprocess="transformers")
    ours = detector.detect([to_uint8_tensor(wide_image)], [TAGS])[0]
    boxes, scores, labels = reference(tiny_models["owlv2"], wide_image, TAGS, 0.2)
    assert len(boxes) > 3, "the tiny model should find something at 0.2"
    assert ours["boxes"] == boxes
    assert ours["scores"] == pytest.approx(scores, abs=1e-4)
    assert ours["labels"] == labels
    assert ours["num_degenerate"] > 0  # some boxes of the reference lie wholly in the grey padding


def test_torch_preprocessing_gives_nearly_the_same_boxes(tiny_models, wide_image):
    exact = OWLv2Detector(tiny_models["owlv2"], preprocess="transformers")
    fast = OWLv2Detector(tiny_models["owlv2"], preprocess="torch")
    a = exact.detect([to_uint8_tensor(wide_image)], [TAGS])[0]
    b = fast.detect([to_uint8_tensor(wide_image)], [TAGS])[0]
    assert abs(len(a["boxes"]) - len(b["boxes"])) <= 1
    assert b["scores"][:3] == pytest.approx(a["scores"][:3], abs=0.02)


def test_an_image_gets_the_same_boxes_alone_or_in_a_batch(tiny_models, wide_image):
    detector = OWLv2Detector(tiny_models["owlv2"])
    images = [to_uint8_tensor(img) for img in (load_skimage("rocket"), wide_image, load_skimage("coins"))]
    tags = [["rocket"], TAGS, ["coin", "table", "hand", "light", "coat", "tray"]]  # padded queries must not leak
    alone = detector.detect(images[1:2], tags[1:2])[0]
    batched = detector.detect(images, tags)[1]
    assert batched["boxes"] == alone["boxes"] and batched["labels"] == alone["labels"]
    assert batched["scores"] == pytest.approx(alone["scores"], abs=1e-4)
    assert set(batched["labels"]) <= set(TAGS)


def test_images_without_tags_get_no_boxes(tiny_models, wide_image):
    detector = OWLv2Detector(tiny_models["owlv2"])
    results = detector.detect([to_uint8_tensor(wide_image)] * 2, [[], TAGS])
    assert results[0] == dict(boxes=[], scores=[], labels=[], num_degenerate=0)
    assert results[1]["boxes"]
    assert detector.detect([to_uint8_tensor(wide_image)], [[]])[0]["boxes"] == []


def _iou(a, b):
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_class_aware_nms_removes_same_label_overlaps_only(tiny_models):
    image = to_uint8_tensor(load_skimage("astronaut"))
    raw = OWLv2Detector(tiny_models["owlv2"], score_threshold=0.05).detect([image], [TAGS])[0]
    nms = OWLv2Detector(tiny_models["owlv2"], score_threshold=0.05, nms_iou_threshold=0.01).detect([image], [TAGS])[0]
    assert 0 < len(nms["boxes"]) < len(raw["boxes"])
    kept = list(zip(nms["boxes"], nms["labels"]))
    raw_pairs = {(tuple(box), label) for box, label in zip(raw["boxes"], raw["labels"])}
    assert {(tuple(box), label) for box, label in kept} <= raw_pairs
    for i, (box_i, label_i) in enumerate(kept):
        for box_j, label_j in kept[i + 1:]:
            if label_i == label_j:
                assert _iou(box_i, box_j) <= 0.01 + 0.02  # int rounding after NMS moves IoU a little
    assert nms["scores"] == sorted(nms["scores"], reverse=True)


def test_class_aware_nms_on_known_boxes():
    from mg_llava.dataset.box_rules import class_aware_nms

    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60.]])
    scores = torch.tensor([0.6, 0.9, 0.7, 0.3])
    labels = torch.tensor([0, 0, 1, 0])
    # boxes 0 and 1 overlap (IoU 0.81) with the same label: the higher score (1) survives; 2 has another label.
    assert class_aware_nms(boxes, scores, labels, 0.5).tolist() == [1, 2, 3]
    assert class_aware_nms(boxes, scores, labels, 0.9).tolist() == [1, 2, 0, 3]
    assert class_aware_nms(boxes[:0], scores[:0], labels[:0], 0.5).tolist() == []


def test_bad_settings_fail_loudly(tiny_models):
    with pytest.raises(ValueError, match="preprocess"):
        OWLv2Detector(tiny_models["owlv2"], preprocess="pil")
    with pytest.raises(ValueError, match="{tag}"):
        OWLv2Detector(tiny_models["owlv2"], prompt="a photo of something")
    detector = OWLv2Detector(tiny_models["owlv2"])
    with pytest.raises(ValueError, match="2 images but 1 tag lists"):
        detector.detect([torch.zeros(3, 8, 8, dtype=torch.uint8)] * 2, [["cat"]])
