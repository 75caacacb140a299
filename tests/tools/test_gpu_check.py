"""tools/gpu_check.py without a GPU: the one-line refusal, and its CPU references (Pillow square view, object
branch, deformable sampling) checked against independent computations."""
import os.path as osp
import subprocess
import sys

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, "tools"))
import gpu_check as gc  # noqa: E402

SMALL_STAGES = [(8, 48), (8, 24), (8, 12), (8, 6)]  # (channels, side): ConvNeXt-L's strides at 192 px


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_without_a_gpu_one_line_and_exit_1():
    run = subprocess.run([sys.executable, osp.join(ROOT, "tools", "gpu_check.py")], capture_output=True, text=True,
                         cwd=ROOT)
    assert run.returncode == 1 and run.stdout == ""
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "no CUDA device" in lines[0] and torch.__version__ in lines[0]


@pytest.mark.parametrize("size", [(451, 300), (300, 400), (768, 768), (1024, 683)])
def test_pillow_reference_is_the_dataset_view_and_the_device_path_matches_it(size, clip_processor_views):
    from PIL import Image

    image = gc.photo(3, size)
    fill = clip_processor_views.fill
    reference = gc.pil_square_view(image, fill)
    pil = Image.fromarray(image.permute(1, 2, 0).numpy())
    assert torch.equal(reference, clip_processor_views.pixels(pil).pixels)  # the dataset's own high-res view
    check = gc.compare("resize", reference, gc.device_square_view(image, fill, "cpu"), 0, 0, 1.0, 1.0, exact=True)
    assert check["status"] == "pass"
    shifted = reference.clone()
    shifted[0, 0, 0] ^= 1
    assert gc.compare("resize", reference, shifted, 0, 0, 1.0, 1.0, exact=True)["status"] == "FAIL"


@pytest.fixture(scope="module")
def clip_processor_views(tiny_models):
    from transformers import CLIPImageProcessor

    from mg_llava.dataset import ImageViews

    return ImageViews(CLIPImageProcessor.from_pretrained(tiny_models["clip"]), high_res=gc.HIGH_RES)


def test_object_branch_reference_agrees_with_mmcv_roi_align_on_cpu():
    maps, boxes = gc.object_branch_inputs(boxes=12, channels=SMALL_STAGES)
    separable = gc.object_branch(maps, boxes, torch.device("cpu"))
    roi_align = gc.object_branch(maps, boxes, torch.device("cpu"), impl="roi_align")
    assert separable.shape == (12, 32)
    assert gc.compare("roi", roi_align, separable, 1e-4, 1e-5, 1.0, 1.0)["status"] == "pass"
    assert gc.compare("roi", roi_align, separable + 1e-2, 1e-4, 1e-5, 1.0, 1.0)["status"] == "FAIL"


def test_deformable_reference_samples_cell_centres_exactly():
    """All weight on one point at a cell centre of one level: the output is that cell's value."""
    value, shapes, locations, weights = gc.deformable_inputs(images=1, queries=3, heads=2, levels=2, points=2,
                                                             channels=4, side=6)
    cells = [(1, 2), (4, 0), (5, 5)]  # (row, col) on level 1
    weights = torch.zeros_like(weights)
    for q, (row, col) in enumerate(cells):
        locations[0, q, :, 1, 0] = torch.tensor([(col + 0.5) / 6, (row + 0.5) / 6])
        weights[0, q, :, 1, 0] = 1.0
    out = gc.deformable_reference(value, shapes, locations, weights).view(1, 3, 2, 4)
    for q, (row, col) in enumerate(cells):
        torch.testing.assert_close(out[0, q], value[0, 36 + row * 6 + col], rtol=1e-5, atol=1e-6)


def test_tiny_step_reference_and_its_tolerance(tmp_path):
    """The tiny step from one set of weights: fp32 twice gives the same losses; bf16 (on the CPU here, as the GPU
    check runs it on CUDA) stays within the check's tolerance; a loss off by 10 % fails it."""
    workdir = gc.tiny_workdir(str(tmp_path))
    reference = gc.tiny_step_losses(workdir, "cpu", torch.float32)
    again = gc.tiny_step_losses(workdir, "cpu", torch.float32)
    assert reference["losses"] == again["losses"] and len(reference["losses"]) == 2
    bf16 = gc.tiny_step_losses(workdir, "cpu", torch.bfloat16)
    assert gc.compare_tiny_steps(reference, bf16, "bf16")["status"] == "pass"
    off = dict(bf16, losses=[1.1 * reference["losses"][0]] + bf16["losses"][1:])
    assert gc.compare_tiny_steps(reference, off, "off")["status"] == "FAIL"
