"""tools/memory_plan.py: its activation coefficients against the bytes autograd really saves in transformers layers,
its model states against DeepSpeed's estimators, the published LLaVA-1.5 fact, a real config's parts on the meta
device, and remedies that do fit."""
import os.path as osp
import sys

import pytest
import torch

import mg_llava  # noqa: F401  (its compatibility patches, before peft imports bitsandbytes)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, "tools"))
import memory_plan as mp  # noqa: E402

H, I, HEADS, BATCH, SEQ = 128, 344, 4, 2, 96


def saved_bytes(module, embeds):
    """Bytes of the distinct storages autograd saves in ``module``'s forward, weights excluded."""
    weights = {p.untyped_storage().data_ptr() for p in module.parameters()}
    storages = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in weights:
            storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        module(inputs_embeds=embeds)
    return sum(storages.values())


def decoder(family, layers, mode, rank=8):
    """A bf16 transformers base model (no LM head) with SDPA: trained, frozen, or frozen with LoRA on every linear."""
    from transformers import LlamaConfig, LlamaModel, Phi3Config, Phi3Model

    common = dict(hidden_size=H, intermediate_size=I, num_hidden_layers=layers, num_attention_heads=HEADS,
                  num_key_value_heads=HEADS, vocab_size=64, pad_token_id=0, attn_implementation="sdpa")
    torch.manual_seed(0)
    model = (Phi3Model(Phi3Config(**common)) if family == "phi3" else LlamaModel(LlamaConfig(**common)))
    model = model.to(torch.bfloat16).train()
    if mode != "trained":
        model.requires_grad_(False)
    if mode == "lora":
        from peft import LoraConfig, inject_adapter_in_model

        targets = ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"] if family == "phi3" else \
            ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
        model = inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=16, lora_dropout=0.05,
                                                   target_modules=targets), model).to(torch.bfloat16)
    return model


@pytest.mark.parametrize("family,mode", [("llama", "trained"), ("llama", "frozen"), ("llama", "lora"),
                                         ("phi3", "trained"), ("phi3", "frozen"), ("phi3", "lora")])
def test_layer_coefficients_match_what_autograd_saves(family, mode):
    embeds = torch.randn(BATCH, SEQ, H, dtype=torch.bfloat16, requires_grad=True)
    per_layer = saved_bytes(decoder(family, 2, mode), embeds) - saved_bytes(decoder(family, 1, mode), embeds)
    workload = mp.llava15_7b_stage2().changed(hidden=H, intermediate=I, llm_trains=mode == "trained",
                                              lora=mode == "lora", lora_rank=8, fused_qkv=family == "phi3")
    predicted = mp.layer_bytes_per_token(workload) * BATCH * SEQ
    assert per_layer == pytest.approx(predicted, rel=0.05), (per_layer / (BATCH * SEQ) / H, predicted)


def test_model_states_follow_deepspeeds_estimators():
    w = mp.llava15_7b_stage2()
    zero3 = mp.model_states(w, 8)
    assert zero3["trainable_states"] == pytest.approx(18 * w.trainable / 8 + 4 * w.largest_layer, rel=1e-6)
    assert zero3["frozen_weights"] == pytest.approx(2 * w.frozen / 8)
    zero2 = mp.model_states(w.changed(zero=2), 8)
    # DeepSpeed 0.16: bf16 weights unsharded; bf16 + fp32 grads, fp32 master weights and Adam's moments sharded
    assert zero2["trainable_states"] == pytest.approx(2 * w.trainable + 18 * w.trainable / 8, rel=1e-6)
    assert zero2["frozen_weights"] == 2 * w.frozen
    qlora = mp.model_states(w.changed(zero=2, frozen_4bit=1000, frozen=0), 8)
    assert qlora["frozen_weights"] == pytest.approx(1000 * mp.NF4_BYTES)
    with pytest.raises(ValueError, match="ZeRO stage 1"):
        mp.model_states(w.changed(zero=1), 8)


def test_published_llava15_stage2_fits_8x80_only_with_checkpointing():
    """LLaVA-1.5-7B stage 2 trains at per-device batch 16 on 8 x 80 GB with ZeRO-3 and checkpointing (its
    finetune.sh); without checkpointing the 16 x 2048 tokens' activations would not fit."""
    w = mp.llava15_7b_stage2()
    assert mp.peak(w, 8)["peak"] <= 80e9
    assert mp.peak(w.changed(checkpointing=False), 8)["peak"] > 80e9
    # one GPU holds the whole 16-byte-per-parameter state of 6.76B trainable parameters: ~120 GB
    assert mp.peak(w, 1)["peak"] > 80e9


def test_remedy_is_a_change_that_fits():
    w = mp.llava15_7b_stage2().changed(checkpointing=False, zero=2)
    assert mp.peak(w, 8)["peak"] > 40e9
    change = mp.remedy(w, 8, 40)
    assert change is not None and "gradient checkpointing" in change
    fixed = w.changed(checkpointing=True, zero=3 if "ZeRO-3" in change else 2)
    if "micro-batch" in change:
        fixed = fixed.changed(batch=int(change.split("micro-batch ")[1].split()[0]))
    assert mp.peak(fixed, 8)["peak"] <= 40e9
    # the largest micro-batch that fits: twice it does not (at either ZeRO stage)
    assert all(mp.peak(fixed.changed(batch=2 * fixed.batch, zero=z), 8)["peak"] > 40e9 for z in (2, 3))
    # a 4-bit LLM is not offered ZeRO-3
    qlora = w.changed(frozen_4bit=6_500_000_000, frozen=300_000_000, trainable=400_000_000, llm_trains=False,
                      lora=True, lora_rank=128, zero=2)
    assert "ZeRO-3" not in (mp.remedy(qlora, 8, 24) or "")
    assert mp.remedy(w.changed(batch=1, trainable=10 ** 12), 1, 80) is None


def test_real_config_parts_from_the_meta_build():
    """Phi-3 stage 1: only the fusion and both projectors train; the LLM, CLIP and ConvNeXt are frozen weights."""
    w = mp.workload_from_config(osp.join(ROOT, "xtuner_configs", "phi3_mini_4k_instruct",
                                         "mg_llava_phi3_mini_4k_instruct_pretrain.py"))
    h = 3072
    projectors = (1024 * h + h + h * h + h) + (2880 * h + h + h * h + h)
    fusion = 1536 * 1536 + 1536 + 1024 * 1536 + 1024 + 1024 * 49 + 1024 + 1024 * 1024 + 1024 + 2048 * 512 + 512 + 513
    assert w.trainable == projectors + fusion
    assert 4.2e9 < w.frozen < 4.4e9  # 3.82B LLM + 303.5M CLIP + 196.2M ConvNeXt (README's FLOP table: 4.14B + ...)
    assert (w.hidden, w.layers, w.vocab, w.fused_qkv) == (h, 32, 32064, True)
    assert not w.llm_trains and not w.lora and w.checkpointing and w.zero == 2
    assert w.batch == 32 and w.tokens == 1471 + 576 + 100 and w.images == 1
    rows = mp.fits_table(w)
    assert [(r["gpus"], r["gpu_gb"]) for r in rows] == mp.TARGETS  # the shipped 8 GPUs are among them


def test_host_build_peak_counts_peft_casting_a_bf16_llm_to_fp32_under_lora():
    """XTuner's LoRA path calls peft's prepare_model_for_kbit_training, which casts a non-quantised bf16 LLM to fp32
    on the host before DeepSpeed casts it back: 4 bytes per LLM parameter then, 2 without LoRA, ~0.5 in 4 bits."""
    parts = dict(llm=1000, lora=10, clip=100, convnext=50)
    w = mp.llava15_7b_stage2().changed(trainable=30 + 10, frozen=1000 + 150, parts=parts, lora=True, llm_trains=False)
    assert mp.host_build_peak(w) == 4 * 1000 + 4 * 150 + 4 * (10 + 30)
    assert mp.host_build_peak(w.changed(lora=False, trainable=30)) == 2 * 1000 + 4 * 150 + 4 * 30
    qlora = w.changed(frozen=150, frozen_4bit=1000)
    assert mp.host_build_peak(qlora) == 0.5 * 1000 + 4 * 150 + 4 * (10 + 30)
