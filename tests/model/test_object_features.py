import pytest
import torch
import torch.nn.functional as F
import torchvision
from mmcv.ops import RoIAlign

from mg_llava.model import MultiScaleRoIFeatures
from mg_llava.registry import MODELS

CHANNELS = [12, 10, 9, 8]  # small, and not multiples of the chunk sizes used below
IMPLS = ["separable", "roi_align"]


def stage_maps(images, side=32, seed=0, width=None):
    """Random stage maps at strides 4, 8, 16, 32 of a (4 * side) x (4 * width) input."""
    generator = torch.Generator().manual_seed(seed)
    width = width or side
    return [torch.randn(images, c, side >> k, width >> k, generator=generator) for k, c in enumerate(CHANNELS)]


def reference(maps, boxes, input_size, output_size=56, sampling_ratio=0):
    """The plain formula: upsample, concat, RoIAlign (mmcv, aligned=False), mean over the RoI grid."""
    size = maps[0].shape[-2:]
    multi_scale = torch.cat([maps[0]] + [F.interpolate(m, size=size, mode="bilinear", align_corners=False)
                                         for m in maps[1:]], dim=1)
    roi_align = RoIAlign(output_size, spatial_scale=size[0] / input_size, sampling_ratio=sampling_ratio,
                         aligned=False)
    rois = torch.cat([torch.cat([torch.full((len(b), 1), float(i)), b], dim=1) for i, b in enumerate(boxes)])
    return roi_align(multi_scale, rois).mean(dim=(2, 3)), multi_scale, rois


def relative_error(got, expected):
    return ((got - expected).abs().max() / expected.abs().max()).item()


# Boxes in input pixels of a 128 input (map cells = pixels / 4, stage 0 is 32x32), each an RoIAlign edge case.
EDGE_BOXES = torch.tensor([
    [0.0, 0.0, 128.0, 128.0],  # the whole image
    [-500.0, -300.0, 900.0, 700.0],  # much wider than the map: many samples per bin, most of them outside
    [100.5, 3.25, 127.9, 9.0],  # thin, at the border
    [120.0, 118.0, 140.0, 150.0],  # past the bottom-right border
    [-20.0, -12.0, 8.0, 6.0],  # past the top-left border
    [10.0, 10.0, 10.5, 10.2],  # under one cell (mmcv stretches it to one cell)
    [50.0, 60.0, 50.0, 60.0],  # zero area
    [124.0, 124.0, 128.0, 128.0],  # the last row and column (clamped to the last cell)
    [126.0, 126.0, 130.0, 130.0],  # P = 1: the one sample lands exactly on the map's end, 32.0 (still inside)
    [-6.0, -6.0, -2.0, -2.0],  # P = 1: the sample lands exactly on -1 (still inside, clamped to 0)
    [130.0, 4.0, 140.0, 20.0],  # right of the map, outside
    [-40.0, -40.0, -10.0, -10.0],  # above-left of the map, outside
    [0.0, 0.0, 1e4, 3.0],  # a very long thin strip
])


def test_default_is_separable_and_roi_align_is_selectable():
    assert MultiScaleRoIFeatures(CHANNELS).impl == "separable"
    module = MODELS.build(dict(type="MultiScaleRoIFeatures", in_channels=CHANNELS, impl="roi_align"))
    assert (module.impl, module.channel_chunk, module.box_chunk) == ("roi_align", 128, 32)
    with pytest.raises(ValueError, match="impl='fast': expected one of"):
        MultiScaleRoIFeatures(CHANNELS, impl="fast")


@pytest.mark.parametrize("impl", IMPLS)
def test_random_boxes_batched_equal_plain_formula(make_boxes, impl):
    generator = torch.Generator().manual_seed(1)
    boxes = [make_boxes(7, 128, generator), make_boxes(0, 128, generator), make_boxes(5, 128, generator)]
    maps = stage_maps(3)
    module = MODELS.build(dict(type="MultiScaleRoIFeatures", in_channels=CHANNELS, impl=impl, channel_chunk=5,
                               box_chunk=3))
    out = module(maps, boxes, (128, 128))
    assert [tuple(o.shape) for o in out] == [(7, 39), (0, 39), (5, 39)]
    assert all(o.dtype == torch.float32 for o in out)
    expected, _, _ = reference(maps, boxes, 128)
    rel_err = relative_error(torch.cat(out), expected)
    assert rel_err <= 1e-5, f"{impl} object features differ from the plain formula: rel. err {rel_err:.3g}"


@pytest.mark.parametrize("output_size,sampling_ratio", [(56, 0), (7, 0), (1, 0), (7, 2)])
def test_separable_equals_roi_align_on_edge_cases(output_size, sampling_ratio):
    maps = stage_maps(2, seed=4)
    boxes = [EDGE_BOXES, EDGE_BOXES.flip(0)[:5]]
    got = MultiScaleRoIFeatures(CHANNELS, output_size, sampling_ratio)(maps, boxes, (128, 128))
    expected, _, _ = reference(maps, boxes, 128, output_size, sampling_ratio)
    got = torch.cat(got)
    outside = expected.abs().amax(dim=1) == 0
    # the boxes wholly outside the map (and, with 2 samples per bin, the long strip) give zeros in mmcv too
    assert outside.sum() == (4 if sampling_ratio == 0 else 6)
    assert (got[outside] == 0).all()
    assert (got[~outside].abs().amax(dim=1) > 0).all()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_every_box_alone_equals_roi_align():
    """Each edge box on its own (no padding from a batch), P = 1, where a sample's in/out decision decides all."""
    maps = stage_maps(1, seed=5)
    module = MultiScaleRoIFeatures(CHANNELS, output_size=1)
    for box in EDGE_BOXES:
        expected, _, _ = reference(maps, [box[None]], 128, 1)
        torch.testing.assert_close(module(maps, [box[None]], (128, 128))[0], expected, rtol=1e-5, atol=1e-6,
                                   msg=lambda m: f"box {box.tolist()}: {m}")


def test_non_square_input(make_boxes):
    maps = stage_maps(2, side=32, width=24, seed=6)
    generator = torch.Generator().manual_seed(7)
    boxes = [make_boxes(4, 96, generator) * torch.tensor([1.0, 4 / 3, 1.0, 4 / 3]), EDGE_BOXES]
    got = MultiScaleRoIFeatures(CHANNELS, output_size=14)(maps, boxes, (128, 96))
    torch.testing.assert_close(torch.cat(got), reference(maps, boxes, 128, 14)[0], rtol=1e-5, atol=1e-6)


def test_aligned_false_agrees_with_torchvision(make_boxes):
    """An independent RoIAlign (torchvision, aligned=False, adaptive sampling) gives the same numbers."""
    boxes = [make_boxes(6, 128, torch.Generator().manual_seed(2))]
    maps = stage_maps(1)
    out = MultiScaleRoIFeatures(CHANNELS, output_size=14)(maps, boxes, (128, 128))[0]
    _, multi_scale, rois = reference(maps, boxes, 128)
    expected = torchvision.ops.roi_align(multi_scale, rois, 14, spatial_scale=0.25, sampling_ratio=-1,
                                         aligned=False).mean(dim=(2, 3))
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("impl", IMPLS)
def test_spatial_scale_comes_from_shapes(impl):
    """Same boxes, input twice as large: the boxes cover half the map, so the result changes accordingly."""
    maps = stage_maps(1)
    box = torch.tensor([[8.0, 16.0, 40.0, 60.0]])
    module = MultiScaleRoIFeatures(CHANNELS, output_size=7, impl=impl)
    at_256 = module(maps, [box], (256, 256))[0]
    torch.testing.assert_close(at_256, reference(maps, [box], 256, 7)[0])
    assert not torch.allclose(at_256, module(maps, [box], (128, 128))[0])
    with pytest.raises(ValueError, match="not one scale"):
        module(maps, [box], (128, 256))


def test_rejects_wrong_channels_and_box_lists():
    module = MultiScaleRoIFeatures(CHANNELS)
    with pytest.raises(ValueError, match=r"channels \[12, 10, 9, 7\], expected \[12, 10, 9, 8\]"):
        module(stage_maps(1)[:3] + [torch.randn(1, 7, 4, 4)], [torch.zeros(0, 4)], (128, 128))
    with pytest.raises(ValueError, match="1 box tensors for 2 images"):
        module(stage_maps(2), [torch.zeros(0, 4)], (128, 128))
    with pytest.raises(ValueError, match=r"boxes of image 1 must be \(N, 4\) xyxy, got \(3,\)"):
        module(stage_maps(2), [torch.zeros(0, 4), torch.zeros(3)], (128, 128))


def test_no_boxes_at_all():
    out = MultiScaleRoIFeatures(CHANNELS)(stage_maps(2), [torch.zeros(0, 4), torch.zeros(0, 4)], (128, 128))
    assert [tuple(o.shape) for o in out] == [(0, 39), (0, 39)]


@pytest.mark.parametrize("impl", IMPLS)
def test_bfloat16_maps_give_float32_features(make_boxes, impl):
    boxes = [make_boxes(3, 128, torch.Generator().manual_seed(3)), EDGE_BOXES]
    maps = [m.bfloat16() for m in stage_maps(2)]
    out = MultiScaleRoIFeatures(CHANNELS, output_size=7, impl=impl, channel_chunk=4)(maps, boxes, (128, 128))
    assert all(o.dtype == torch.float32 for o in out)
    # fp32 accumulation: the numbers of the float32 formula on the same (bf16-valued) maps
    torch.testing.assert_close(torch.cat(out), reference([m.float() for m in maps], boxes, 128, 7)[0],
                               rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (a GPU machine)")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_separable_on_cuda_equals_roi_align_on_cpu(make_boxes, dtype):
    boxes = [make_boxes(9, 128, torch.Generator().manual_seed(8)), EDGE_BOXES]
    maps = [m.to(dtype) for m in stage_maps(2)]
    out = MultiScaleRoIFeatures(CHANNELS)([m.cuda() for m in maps], [b.cuda() for b in boxes], (128, 128))
    assert all(o.device.type == "cuda" and o.dtype == torch.float32 for o in out)
    expected = reference([m.float() for m in maps], boxes, 128)[0]
    torch.testing.assert_close(torch.cat(out).cpu(), expected, rtol=1e-5, atol=1e-5)
