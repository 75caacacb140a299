"""MMFuser (MultiLayerDeformableFusion): mmcv's deformable attention as used here against a direct computation,
identity at init (the module and the whole model, against XTuner's plain LLaVA-1.5), gradients per stage, dtypes."""
import copy
import math

import pytest
import torch
from mmcv.ops import MultiScaleDeformableAttention
from mmengine.config import ConfigDict
from transformers import AutoModelForCausalLM, CLIPVisionModel
from xtuner.model import LLaVAModel
from xtuner.utils import IMAGE_TOKEN_INDEX as IMG

from mg_llava.model import (
    CLIPVisionEncoder,
    ConvGateFusion,
    MGLLaVAModel,
    MultiLayerDeformableFusion,
    MultiScaleRoIFeatures,
    NoFusion,
    OpenCLIPConvNeXtEncoder,
)
from mg_llava.model.multi_layer_deformable_fusion import deformable_attention, grid_reference_points
from mg_llava.registry import MODELS

CLIP_LAYERS = (-6, -5, -4, -3, -2)  # the 6-layer tiny CLIP: four levels and the query, as the tiny configs
VISION_SIDE = ("fuse_module.", "projector.", "bbox_projector.")


def direct_deformable_attention(attn, query, value, shapes, reference_points):
    """Deformable attention from its definition, in float64 with explicit loops: project the values; per image,
    query, head, level and point, offset the reference point (in cells of that level), bilinearly interpolate the
    level's map there (pixel centres at integer coordinates, zero outside the map), weight by the softmax over all
    levels and points of the head; then the output projection."""
    w = {name: p.detach().double() for name, p in attn.named_parameters()}
    heads, levels, points = attn.num_heads, attn.num_levels, attn.num_points
    query, value, reference_points = query.double(), value.double(), reference_points.double()
    images, queries, channels = query.shape
    d = channels // heads
    value = value @ w["value_proj.weight"].T + w["value_proj.bias"]
    offsets = (query @ w["sampling_offsets.weight"].T + w["sampling_offsets.bias"]).view(
        images, queries, heads, levels, points, 2)
    logits = (query @ w["attention_weights.weight"].T + w["attention_weights.bias"]).view(
        images, queries, heads, levels * points)
    attention = torch.softmax(logits, -1).view(images, queries, heads, levels, points)
    starts = [sum(h * w_ for h, w_ in shapes[:k]) for k in range(len(shapes))]
    out = torch.zeros(images, queries, channels, dtype=torch.float64)
    for i in range(images):
        for t in range(queries):
            for m in range(heads):
                for k, (height, width) in enumerate(shapes):
                    for p in range(points):
                        x = float(reference_points[i, t, k, 0]) * width + float(offsets[i, t, m, k, p, 0]) - 0.5
                        y = float(reference_points[i, t, k, 1]) * height + float(offsets[i, t, m, k, p, 1]) - 0.5
                        x0, y0 = math.floor(x), math.floor(y)
                        fx, fy = x - x0, y - y0
                        sample = torch.zeros(d, dtype=torch.float64)
                        for xx, yy, weight in ((x0, y0, (1 - fx) * (1 - fy)), (x0 + 1, y0, fx * (1 - fy)),
                                               (x0, y0 + 1, (1 - fx) * fy), (x0 + 1, y0 + 1, fx * fy)):
                            if 0 <= xx < width and 0 <= yy < height:
                                sample += weight * value[i, starts[k] + yy * width + xx, m * d:(m + 1) * d]
                        out[i, t, m * d:(m + 1) * d] += attention[i, t, m, k, p] * sample
    return out @ w["output_proj.weight"].T + w["output_proj.bias"]


def test_deformable_attention_equals_mmcv_and_a_direct_computation():
    torch.manual_seed(0)
    attn = MultiScaleDeformableAttention(embed_dims=16, num_heads=2, num_levels=2, num_points=3, dropout=0.0,
                                         batch_first=True)
    with torch.no_grad():  # offsets of a few cells, many outside the maps; uneven attention
        attn.sampling_offsets.weight.normal_(0, 0.5)
        attn.sampling_offsets.bias.normal_(0, 1.5)
        attn.attention_weights.weight.normal_(0, 1.0)
    shapes = [(3, 4), (2, 2)]  # levels of different sizes, not square
    query, value = torch.randn(2, 5, 16), torch.randn(2, 3 * 4 + 2 * 2, 16)
    reference_points = torch.rand(2, 5, 2, 2)
    spatial_shapes = torch.tensor(shapes)

    ours = deformable_attention(attn, query, value, spatial_shapes, reference_points)
    direct = direct_deformable_attention(attn, query, value, shapes, reference_points)
    torch.testing.assert_close(ours.double(), direct, rtol=1e-5, atol=1e-5)
    mmcv = attn(query, value=value, identity=torch.zeros_like(query), reference_points=reference_points,
                spatial_shapes=spatial_shapes, level_start_index=torch.tensor([0, 12]))
    torch.testing.assert_close(ours, mmcv, rtol=1e-6, atol=1e-6)
    assert (ours - direct.float()).abs().max() < 1e-4 < direct.abs().mean()  # not trivially small outputs

    with pytest.raises(ValueError, match="15 value tokens"):
        deformable_attention(attn, query, value[:, :15], spatial_shapes, reference_points)


def test_grid_reference_points_are_the_token_centres():
    points = grid_reference_points(2, 3)
    # row-major: token 4 is row 1, column 1 -> x = 1.5 / 3, y = 1.5 / 2
    assert points.shape == (6, 2)
    torch.testing.assert_close(points[[0, 4]], torch.tensor([[0.5 / 3, 0.25], [1.5 / 3, 0.75]]), rtol=0, atol=1e-7)


def fusion_input(images=2, channels=32, side=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(images, 5, side * side, channels, generator=generator)


def test_identity_at_init_and_not_after():
    fusion = MODELS.build(dict(type="MultiLayerDeformableFusion", low_channels=32, num_heads=4))
    low = fusion_input()
    assert fusion.in_layers == 5 and fusion.out_channels == 32 and not fusion.uses_high_res
    assert torch.equal(fusion(low), low[:, -1])
    with torch.no_grad():
        fusion.cross_scale.fill_(0.5)
    cross_only = fusion(low)
    assert not torch.allclose(cross_only, low[:, -1], atol=1e-3)
    with torch.no_grad():
        fusion.self_scale.fill_(0.5)
    assert not torch.allclose(fusion(low), cross_only, atol=1e-3)


def test_with_conv_gate_identity_at_init_and_errors():
    fusion = MultiLayerDeformableFusion(32, high_channels=320, num_heads=4, high_res_fusion=dict(type=ConvGateFusion))
    assert fusion.uses_high_res and isinstance(fusion.high_res_fusion, ConvGateFusion)
    low, high = fusion_input(), torch.randn(2, 320, 4, 4)
    assert torch.equal(fusion(low, high), low[:, -1])  # both modules start as the identity on the query
    with pytest.raises(ValueError, match=r"5 CLIP layers .* shape \(2, 4, 16, 32\)"):
        fusion(low[:, 1:], high)
    with pytest.raises(ValueError, match="15 tokens per layer"):
        fusion(low[:, :, :15], high)


def test_bfloat16_module_samples_in_float32():
    torch.manual_seed(0)
    fusion = MultiLayerDeformableFusion(32, num_heads=4)
    with torch.no_grad():
        fusion.cross_scale.fill_(1.0)
        fusion.self_scale.fill_(1.0)
    low = fusion_input()
    reference = fusion(low)
    out = copy.deepcopy(fusion).to(torch.bfloat16)(low)  # float32 tokens into a bf16 module, as in bf16 training
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), reference, rtol=0.05, atol=0.05)


# ---------------------------------------------------------------------------------------------------- the model


def llm_config(path):
    return ConfigDict(type=AutoModelForCausalLM.from_pretrained, pretrained_model_name_or_path=path)


@pytest.fixture(scope="module")
def make_mmfuser(tiny_models):
    """``make_mmfuser(variant, freeze_llm)`` -> a fresh tiny model: 'llava' (LLaVA-1.5 + MMFuser), 'mg' (MG-LLaVA +
    MMFuser) or 'plain' (LLaVA-1.5: NoFusion on layer -2 of the same CLIP)."""
    clip = tiny_models["clip_deep"]
    encoders = dict(mmfuser=CLIPVisionEncoder(clip, select_layer=CLIP_LAYERS), plain=CLIPVisionEncoder(clip),
                    aux=OpenCLIPConvNeXtEncoder("local-dir:" + tiny_models["convnext"]))

    def make(variant, freeze_llm=False):
        mmfuser = dict(type=MultiLayerDeformableFusion, num_heads=4)
        kwargs = dict(llm=llm_config(tiny_models["llm_vicuna"]), freeze_llm=freeze_llm,
                      use_activation_checkpointing=False, visual_encoder=copy.deepcopy(encoders["mmfuser"]),
                      visual_encoder_aux=None, fusion=mmfuser, object_features=None)
        if variant == "mg":
            kwargs.update(visual_encoder_aux=copy.deepcopy(encoders["aux"]),
                          fusion=dict(mmfuser, high_res_fusion=dict(type=ConvGateFusion)),
                          object_features=dict(type=MultiScaleRoIFeatures, output_size=4))
        elif variant == "plain":
            kwargs.update(visual_encoder=copy.deepcopy(encoders["plain"]), fusion=dict(type=NoFusion))
        torch.manual_seed(0)
        return MGLLaVAModel(**kwargs)

    return make


def test_model_loss_equals_plain_llava_at_init(tiny_models, make_mmfuser, make_batch):
    model = make_mmfuser("llava")
    llava = LLaVAModel(llm=llm_config(tiny_models["llm_vicuna"]),
                       visual_encoder=ConfigDict(type=CLIPVisionModel.from_pretrained,
                                                 pretrained_model_name_or_path=tiny_models["clip_deep"]),
                       freeze_visual_encoder=True, use_activation_checkpointing=False)
    llava.projector.load_state_dict(model.projector.state_dict())
    data = make_batch([[1, 5, IMG, 6, 7], [1, IMG, 8, 9, 10, 11, 12]], box_counts=[0, 0])
    ours = model(dict(data))["loss"]
    theirs = llava({k: data[k] for k in ("input_ids", "attention_mask", "labels", "pixel_values")})["loss"]
    assert torch.equal(ours, theirs), (ours, theirs)
    with torch.no_grad():
        model.fuse_module.cross_scale.fill_(0.5)
    assert not torch.allclose(model(dict(data))["loss"], theirs)  # ... and the fusion does act once it trains


@pytest.mark.parametrize("variant", ["llava", "mg"])
@pytest.mark.parametrize("freeze_llm", [True, False], ids=["stage1", "stage2"])
def test_gradients_reach_exactly_the_trained_modules(make_mmfuser, make_batch, variant, freeze_llm):
    model = make_mmfuser(variant, freeze_llm)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # away from the identity init (zero scales and projections pass no gradient on)
        for p in model.fuse_module.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.1)
    model.train()
    model(make_batch([[1, IMG, 5, 6], [7, 8, 9], [IMG, 10, 11]], box_counts=[3, 1]))["loss"].backward()
    expected = {n for n, _ in model.named_parameters() if n.startswith(VISION_SIDE)}
    if not freeze_llm:
        expected |= {n for n, _ in model.llm.named_parameters(prefix="llm")}
    assert {n for n in expected if n.startswith("fuse_module.cross_attn.")} and (
        variant == "llava" or {n for n in expected if n.startswith("fuse_module.high_res_fusion.")})
    assert {n for n, p in model.named_parameters() if p.requires_grad} == expected
    assert {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0} == expected
    assert set(model.state_dict()) == {k for k in torch.nn.Module.state_dict(model) if k.startswith(
        VISION_SIDE + (() if freeze_llm else ("llm.",)))}


def test_layer_count_mismatch_is_an_error(tiny_models):
    with pytest.raises(ValueError, match=r"MultiLayerDeformableFusion reads 5 CLIP layer\(s\) but the visual "
                                         r"encoder returns 1"):
        MGLLaVAModel(llm=llm_config(tiny_models["llm_vicuna"]), visual_encoder=CLIPVisionEncoder(
            tiny_models["clip_deep"]), visual_encoder_aux=None, fusion=dict(type=MultiLayerDeformableFusion,
                                                                             num_heads=4),
            object_features=None, use_activation_checkpointing=False)


def test_loaded_weights_survive_mmengine_init_weights(make_mmfuser, tmp_path):
    """The runner calls ``model.init_weights()`` after the model (and its ``pretrained_pth``) is built; mmcv's
    attention has an ``init_weights`` of its own, which must not reset loaded weights."""
    model = make_mmfuser("mg", freeze_llm=True)
    with torch.no_grad():
        for p in model.fuse_module.parameters():
            p.add_(1.0)
    path = str(tmp_path / "stage1.pth")
    torch.save(model.state_dict(), path)
    fresh = make_mmfuser("mg", freeze_llm=True)
    fresh.load_trainable(path)
    fresh.init_weights()
    for key, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key
