import pytest
import torch
import torch.nn.functional as F
import torchvision
from mmcv.ops import RoIAlign

from mg_llava.model import MultiScaleRoIFeatures
from mg_llava.registry import MODELS

CHANNELS = [12, 10, 9, 8]  # small, and not multiples of the chunk sizes used below


def stage_maps(images, side=32, seed=0):
    """Random stage maps at strides 4, 8, 16, 32 of a (4 * side) input."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(images, c, side >> k, side >> k, generator=generator) for k, c in enumerate(CHANNELS)]


def reference(maps, boxes, input_size, output_size=56):
    """The plain formula: upsample, concat, RoIAlign (mmcv, aligned=False), mean over the RoI grid."""
    size = maps[0].shape[-2:]
    multi_scale = torch.cat([maps[0]] + [F.interpolate(m, size=size, mode="bilinear", align_corners=False)
                                         for m in maps[1:]], dim=1)
    roi_align = RoIAlign(output_size, spatial_scale=size[0] / input_size, sampling_ratio=0, aligned=False)
    rois = torch.cat([torch.cat([torch.full((len(b), 1), float(i)), b], dim=1) for i, b in enumerate(boxes)])
    return roi_align(multi_scale, rois).mean(dim=(2, 3)), multi_scale, rois


def test_equals_plain_formula_with_chunks(make_boxes):
    generator = torch.Generator().manual_seed(1)
    boxes = [make_boxes(7, 128, generator), make_boxes(0, 128, generator), make_boxes(5, 128, generator)]
    boxes[0][0] = torch.tensor([0.0, 0.0, 128.0, 128.0])  # whole image
    boxes[2][0] = torch.tensor([100.5, 3.25, 127.9, 9.0])  # thin, at the border
    maps = stage_maps(3)
    module = MODELS.build(dict(type="MultiScaleRoIFeatures", in_channels=CHANNELS, channel_chunk=5, box_chunk=3))
    out = module(maps, boxes, (128, 128))
    assert [tuple(o.shape) for o in out] == [(7, 39), (0, 39), (5, 39)]
    expected, _, _ = reference(maps, boxes, 128)
    got = torch.cat(out)
    rel_err = ((got - expected).abs().max() / expected.abs().max()).item()
    assert rel_err <= 1e-5, f"chunked object features differ from the plain formula: rel. err {rel_err:.3g}"


def test_aligned_false_agrees_with_torchvision(make_boxes):
    """An independent RoIAlign (torchvision, aligned=False, adaptive sampling) gives the same numbers."""
    boxes = [make_boxes(6, 128, torch.Generator().manual_seed(2))]
    maps = stage_maps(1)
    out = MultiScaleRoIFeatures(CHANNELS, output_size=14)(maps, boxes, (128, 128))[0]
    _, multi_scale, rois = reference(maps, boxes, 128)
    expected = torchvision.ops.roi_align(multi_scale, rois, 14, spatial_scale=0.25, sampling_ratio=-1,
                                         aligned=False).mean(dim=(2, 3))
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)


def test_spatial_scale_comes_from_shapes(make_boxes):
    """Same boxes, input twice as large: the boxes cover half the map, so the result changes accordingly."""
    maps = stage_maps(1)
    box = torch.tensor([[8.0, 16.0, 40.0, 60.0]])
    module = MultiScaleRoIFeatures(CHANNELS, output_size=7)
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


def test_bfloat16_maps_give_float32_features(make_boxes):
    boxes = [make_boxes(3, 128, torch.Generator().manual_seed(3))]
    maps = [m.bfloat16() for m in stage_maps(1)]
    out = MultiScaleRoIFeatures(CHANNELS, output_size=7)(maps, boxes, (128, 128))[0]
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, reference([m.float() for m in maps], boxes, 128, 7)[0])
