import pytest
import torch
from mmengine.config import ConfigDict
from peft import LoraConfig
from transformers import AutoModelForCausalLM, CLIPVisionModel
from xtuner.model import LLaVAModel
from xtuner.utils import IMAGE_TOKEN_INDEX as IMG

from mg_llava.model import ChannelConcatFusion, CLIPVisionEncoder, NoFusion

T = 16  # low-res tokens per tiny image (4x4 grid)
VISION_SIDE = ("fuse_module.", "projector.", "bbox_projector.")


def randomize_fusion(model, seed=0):
    """Move the fusion away from its identity init, so every fusion weight gets a gradient."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.fuse_module.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.1)


def grads_reached(model):
    return {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}


def test_loss_equals_xtuner_llava_at_init_with_zero_boxes(tiny_models, make_model, make_batch):
    model = make_model(  # everything from config dicts, as in a config file
        visual_encoder=dict(type=CLIPVisionEncoder, pretrained_model_name_or_path=tiny_models["clip"]),
        visual_encoder_aux=dict(type="mg_llava.OpenCLIPConvNeXtEncoder",
                                model_name="local-dir:" + tiny_models["convnext"]),
        fusion=dict(type="mg_llava.ConvGateFusion"), object_features=dict(type="mg_llava.MultiScaleRoIFeatures"))
    llava = LLaVAModel(
        llm=ConfigDict(type=AutoModelForCausalLM.from_pretrained,
                       pretrained_model_name_or_path=tiny_models["llm_vicuna"]),
        visual_encoder=ConfigDict(type=CLIPVisionModel.from_pretrained,
                                  pretrained_model_name_or_path=tiny_models["clip"]),
        freeze_visual_encoder=True, use_activation_checkpointing=False)
    llava.projector.load_state_dict(model.projector.state_dict())
    # XTuner's placement needs exactly one image per sample; ours is checked on the same batch.
    data = make_batch([[1, 5, IMG, 6, 7], [1, IMG, 8, 9, 10, 11, 12]], box_counts=[0, 0])
    ours = model(dict(data))["loss"]
    theirs = llava({k: data[k] for k in ("input_ids", "attention_mask", "labels", "pixel_values")})["loss"]
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)
    # ... and the object tokens do change it once there are boxes.
    data = make_batch([[1, 5, IMG, 6, 7], [1, IMG, 8, 9, 10, 11, 12]], box_counts=[2, 1])
    assert not torch.allclose(model(data)["loss"], theirs)


@pytest.mark.parametrize("freeze_llm", [True, False], ids=["stage1", "stage2"])
def test_gradients_reach_exactly_the_trained_modules(make_model, make_batch, freeze_llm):
    model = make_model(freeze_llm=freeze_llm)
    randomize_fusion(model)
    model.train()
    model(make_batch([[1, IMG, 5, 6], [7, 8, 9], [IMG, 10, 11]], box_counts=[3, 1]))["loss"].backward()
    expected = {n for n, _ in model.named_parameters() if n.startswith(VISION_SIDE)}
    if not freeze_llm:
        expected |= {n for n, _ in model.llm.named_parameters(prefix="llm")}
    assert {n for n, p in model.named_parameters() if p.requires_grad} == expected
    assert grads_reached(model) == expected


@pytest.mark.parametrize("freeze_llm", [True, False], ids=["stage1", "stage2"])
def test_state_dict_holds_only_trainable_weights(make_model, freeze_llm):
    model = make_model(freeze_llm=freeze_llm)
    keys = set(model.state_dict())
    llm_keys = {"llm." + k for k in model.llm.state_dict()}
    vision_side = {k for k in keys if k.startswith(VISION_SIDE)}
    assert {k.split(".")[0] for k in vision_side} == {"fuse_module", "projector", "bbox_projector"}
    assert "bbox_projector.model.0.weight" in keys and "fuse_module.gate.2.bias" in keys
    assert keys == vision_side | (set() if freeze_llm else llm_keys)
    assert model.state_dict()["bbox_projector.model.0.weight"].shape == (32, 40 + 80 + 160 + 320)


def test_encoders_stay_eval_under_train(make_model):
    model = make_model().train()
    assert model.llm.training and model.fuse_module.training
    for encoder in (model.visual_encoder, model.visual_encoder_aux):
        assert not any(m.training for m in encoder.modules())
        assert not any(p.requires_grad for p in encoder.parameters())


def test_box_tokens_follow_their_image_in_order(make_model, make_batch):
    model = make_model()
    randomize_fusion(model)
    data = make_batch([[1, IMG, 5, IMG], [6, 7], [IMG, 8]], box_counts=[2, 0, 3])
    inputs = model.prepare_llm_inputs(data)
    embeds = inputs["inputs_embeds"]

    with torch.no_grad():
        low = model.visual_encoder(data["pixel_values"])
        maps = model.visual_encoder_aux(data["pixel_values_aux"])
        image_tokens = model.projector(model.fuse_module(low, maps[-1]))
        box_features = model.object_features(maps, data["boxes"], (128, 128))
        box_tokens = [model.bbox_projector(f) for f in box_features]
    text = model.llm.get_input_embeddings()
    expected = [
        [text(torch.tensor([1])), image_tokens[0], box_tokens[0], text(torch.tensor([5])), image_tokens[1]],
        [text(torch.tensor([6, 7]))],
        [image_tokens[2], box_tokens[2], text(torch.tensor([8]))],
    ]
    lengths = [1 + T + 2 + 1 + T, 2, T + 3 + 1]
    assert embeds.shape[:2] == (3, max(lengths))
    for b, pieces in enumerate(expected):
        row = torch.cat(pieces)
        assert row.shape[0] == lengths[b]
        torch.testing.assert_close(embeds[b, :lengths[b]], row, rtol=1e-5, atol=1e-6)
        assert inputs["attention_mask"][b].sum() == lengths[b]
        labels = inputs["labels"][b, :lengths[b]]
        assert (labels != -100).sum() == (data["labels"][b] != -100).sum()


def test_count_mismatch_raises_with_both_counts(make_model, make_batch):
    model = make_model()
    data = make_batch([[1, IMG, 5, IMG], [IMG, 8]], box_counts=[1, 1])
    with pytest.raises(ValueError, match="3 image placeholders .* but 2 images"):
        model(data)
    text_only = make_batch([[1, IMG, 5]], box_counts=[])
    with pytest.raises(ValueError, match="1 image placeholders .* but 0 images"):
        model(text_only)


def test_text_only_batch_and_missing_boxes(make_model, make_batch):
    model = make_model()
    loss = model(make_batch([[1, 5, 6], [7, 8]], box_counts=[]))["loss"]
    assert torch.isfinite(loss)
    data = make_batch([[1, IMG, 5]], box_counts=[1])
    data.pop("boxes")
    with pytest.raises(ValueError, match="1 images but no box tensors"):
        model(data)


def test_zero_boxes_keep_box_projector_in_the_graph(make_model, make_batch):
    model = make_model(freeze_llm=True)
    model(make_batch([[1, IMG, 5, 6]], box_counts=[0]))["loss"].backward()
    for name, p in model.bbox_projector.named_parameters():
        assert p.grad is not None and not p.grad.any(), name


def test_no_object_tokens_variant(make_model, make_batch):
    model = make_model(object_features=None)
    assert model.bbox_projector is None and not any("bbox" in k for k in model.state_dict())
    data = make_batch([[1, IMG, 5]], box_counts=[4])
    assert model.prepare_llm_inputs(data)["inputs_embeds"].shape[1] == 2 + T


def test_no_fusion_variant_needs_no_high_res_encoder(make_model, make_batch):
    model = make_model(fusion=dict(type=NoFusion), object_features=None, visual_encoder_aux=None)
    assert not any(k.startswith("fuse_module") for k in model.state_dict())
    data = make_batch([[1, IMG, 5]], box_counts=[0])
    data.pop("pixel_values_aux")
    assert torch.isfinite(model(data)["loss"])
    with pytest.raises(ValueError, match="does not use visual_encoder_aux"):
        make_model(fusion=dict(type=NoFusion), object_features=None)
    with pytest.raises(ValueError, match="visual_encoder_aux is required"):
        make_model(visual_encoder_aux=None, fusion=dict(type=NoFusion))


def test_channel_concat_variant_widens_the_projector(make_model, make_batch):
    model = make_model(fusion=dict(type=ChannelConcatFusion))
    assert model.state_dict()["projector.model.0.weight"].shape == (32, 32 + 320)
    assert torch.isfinite(model(make_batch([[1, IMG, 5]], box_counts=[2]))["loss"])


@pytest.mark.parametrize("family", ["llama3", "phi3", "yi"])
def test_other_llm_families(make_model, make_batch, family):
    model = make_model(llm="llm_" + family, freeze_llm=True)
    model(make_batch([[1, IMG, 5, 6], [7, 8]], box_counts=[2]))["loss"].backward()
    assert model.projector.model[0].weight.grad.abs().sum() > 0


def test_lora_trains_adapters_and_vision_side(make_model, make_batch):
    # peft imports bitsandbytes here; mg_llava.compat makes bitsandbytes 0.45.0 importable next to triton >= 3.2.
    model = make_model(freeze_llm=True, llm_lora=dict(type=LoraConfig, r=4, lora_alpha=8, lora_dropout=0.0,
                                                      bias="none", task_type="CAUSAL_LM"))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(VISION_SIDE) or "lora_" in n for n in trainable)
    assert any("lora_" in n for n in trainable)
    assert set(model.state_dict()) == trainable
    model(make_batch([[1, IMG, 5, 6]], box_counts=[1]))["loss"].backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if "lora_B" in n)


def test_activation_checkpointing_gives_the_same_gradients(make_model, make_batch):
    data = make_batch([[1, IMG, 5, 6], [7, 8, 9]], box_counts=[2])
    grads = []
    for checkpointing in (False, True):
        model = make_model(use_activation_checkpointing=checkpointing).train()
        assert model.llm.is_gradient_checkpointing == checkpointing
        model(dict(data))["loss"].backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], msg=name)


def test_bfloat16_model(make_model, make_batch):
    model = make_model().to(torch.bfloat16)
    data = make_batch([[1, IMG, 5, 6]], box_counts=[3])  # float32 pixels, as the loader gives them
    assert model.prepare_llm_inputs(dict(data))["inputs_embeds"].dtype == torch.bfloat16
    loss = model(data)["loss"]
    assert torch.isfinite(loss)
    loss.backward()
    assert model.bbox_projector.model[0].weight.grad.dtype == torch.bfloat16
