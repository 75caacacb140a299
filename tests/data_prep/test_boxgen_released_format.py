"""--released-format: boxes written as the released generation wrote them (transformers' OWLv2 processor and
post-processing with the square target size, then ``Tensor.int()``), and read back by the released box rule."""
import json

import numpy as np
import pytest
import torch

from boxgen_helpers import write_llava

from mg_llava.boxgen.cli import generate_main
from mg_llava.boxgen.images import to_uint8_tensor
from mg_llava.boxgen.owlv2 import OWLv2Detector
from mg_llava.dataset import ViewGeometry, apply_box_rule, load_box_file
from mg_llava.testing.images import load_skimage

TAGS = ["cup", "saucer", "spoon", "table"]


def released_generation(owlv2_dir, image, tags, threshold=0.2):
    """What the released generation script did with OWLv2's output for one image and its tags."""
    from transformers import Owlv2ForObjectDetection, Owlv2Processor

    processor = Owlv2Processor.from_pretrained(owlv2_dir)
    model = Owlv2ForObjectDetection.from_pretrained(owlv2_dir).eval()
    inputs = processor(text=[[f"a photo of {t}" for t in tags]], images=image, return_tensors="pt")
    with torch.no_grad():
        outputs = model(**inputs)
    side = max(image.size)
    result = processor.post_process_object_detection(outputs=outputs, threshold=threshold,
                                                     target_sizes=torch.Tensor([[side, side]]))[0]
    return (result["boxes"].int().tolist(), result["scores"].tolist(), [tags[k] for k in result["labels"].tolist()])


def test_released_format_is_what_the_released_generation_wrote(tiny_models):
    image = load_skimage("coffee").crop((0, 0, 400, 250))  # non-square: OWLv2 pads it at the bottom
    detector = OWLv2Detector(tiny_models["owlv2"], box_format="released")
    assert detector.preprocess == "transformers"  # the official processor is the default
    ours = detector.detect([to_uint8_tensor(image)], [TAGS])[0]
    boxes, scores, labels = released_generation(tiny_models["owlv2"], image, TAGS)
    assert len(boxes) > 3
    assert ours["boxes"] == boxes and ours["labels"] == labels  # patch order, truncated, unclipped
    assert ours["scores"] == pytest.approx(scores, abs=1e-5)
    assert ours["num_degenerate"] == 0
    assert any(box[3] > image.height for box in boxes), "no box reaches into the padding: clipping is not tested"
    clean = OWLv2Detector(tiny_models["owlv2"]).detect([to_uint8_tensor(image)], [TAGS])[0]
    assert len(clean["boxes"]) < len(ours["boxes"])  # the clean format drops the boxes wholly in the padding


def test_released_format_runs_no_nms(tiny_models):
    with pytest.raises(ValueError, match="released generation did, which ran no NMS"):
        OWLv2Detector(tiny_models["owlv2"], box_format="released", nms_iou_threshold=0.5)


def test_released_format_from_the_command_line_reads_back_under_the_released_rule(tiny_models, photo_dir, tmp_path):
    llava = write_llava(tmp_path / "llava.json", ["coffee.jpg", "wide.jpg"])
    out = tmp_path / "out"
    generate_main(["--data", str(llava), "--image-folder", photo_dir, "--out-dir", str(out), "--tagger", "fixed",
                   "--vocabulary", str(_vocabulary(tmp_path)), "--detector", tiny_models["owlv2"], "--device", "cpu",
                   "--released-format", "--num-workers", "0", "--no-progress"])
    with open(out / "run.json") as f:
        assert json.load(f)["generator"]["detector"]["box_format"] == "released"
    table = load_box_file(str(out / "boxes.json"))
    boxes, scores, label_ids = table.arrays(table.row("img1"))  # wide.jpg: 451 x 200
    assert len(boxes) and (boxes[:, 3] > 200).any()  # kept as generated: past the image's bottom edge
    prepared = apply_box_rule("released", boxes, scores, label_ids, ViewGeometry.for_image(451, 200, 768))
    assert len(prepared.boxes) > 0 and np.all(prepared.boxes.numpy() <= 768)


def _vocabulary(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(TAGS) + "\n")
    return path
