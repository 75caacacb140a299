"""bf16 against fp32 for the modules that train: the fusion, the object features and both projectors.

DeepSpeed's bf16 mode casts the whole model to bf16 (as the GPU recipes train). Each module gets the same input in
both precisions (the fp32 one rounded to bf16), so the bound is the module's own rounding error: bf16 keeps 8
significant bits (unit roundoff u = 2^-8 = 3.9e-3), and a few roundings per output stay within 4u relative (L2).
"""
import copy

import pytest
import torch
from xtuner.utils import IMAGE_TOKEN_INDEX as IMG

UNIT_ROUNDOFF = 2.0 ** -8
BOUND = 4 * UNIT_ROUNDOFF


def relative_error(value, reference):
    return ((value.float() - reference.float()).norm() / reference.float().norm()).item()


@pytest.fixture(scope="module")
def models(make_model):
    model = make_model().eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # away from the identity init, so the high-res path and the gate take part
        for p in model.fuse_module.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.1)
    return model, copy.deepcopy(model).to(torch.bfloat16)


def vision_inputs(model, make_batch):
    data = make_batch([[1, IMG, 5, 6], [7, IMG, 8]], box_counts=[3, 6])
    with torch.no_grad():
        low = model.visual_encoder(data["pixel_values"])
        maps = model.visual_encoder_aux(data["pixel_values_aux"])
    return low, maps, data["boxes"], data["pixel_values_aux"].shape[-2:]


def test_fusion_object_features_and_projectors_agree_with_fp32(models, make_batch):
    fp32, bf16 = models
    low, maps, boxes, size = vision_inputs(fp32, make_batch)
    low16, maps16 = low.bfloat16(), [m.bfloat16() for m in maps]
    errors = {}
    with torch.no_grad():
        fused = fp32.fuse_module(low16.float(), maps16[-1].float())
        fused16 = bf16.fuse_module(low16, maps16[-1])
        assert fused16.dtype == torch.bfloat16
        errors["fusion"] = relative_error(fused16, fused)

        objects = torch.cat(fp32.object_features([m.float() for m in maps16], boxes, size))
        objects16 = torch.cat(bf16.object_features(maps16, boxes, size))
        errors["object features"] = relative_error(objects16, objects)  # accumulated in fp32 on both sides

        for name in ("projector", "bbox_projector"):
            inputs16 = (fused16 if name == "projector" else objects16.bfloat16())
            reference = getattr(fp32, name)(inputs16.float())
            errors[name] = relative_error(getattr(bf16, name)(inputs16), reference)
    for name, error in errors.items():
        assert error <= BOUND, f"{name}: bf16 differs from fp32 by {error:.2e} (relative L2), bound {BOUND:.2e}"
    assert errors["object features"] == 0.0, "RoIAlign and its mean run in fp32 whatever the model's dtype"
