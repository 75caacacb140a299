"""Tiny offline checkpoints in the layouts real checkpoints use, for the tests and the CPU demo.

Nothing here touches the network. Each builder writes a folder that the ordinary loading code reads back
(``AutoTokenizer``/``AutoModelForCausalLM.from_pretrained``, ``CLIPVisionModel.from_pretrained``, open_clip's
``local-dir:`` layout, ``Owlv2ForObjectDetection.from_pretrained``), so tests exercise the same paths a user's real
checkpoint takes. Sizes: hidden 32, 2-3 layers; low-res view 56 px (patch 14 -> 4x4 grid), high-res view 128 px
(ConvNeXt stride 32 -> 4x4 grid), i.e. the real 336/768 geometry scaled down with the same grid agreement.
"""
import json
import os
import os.path as osp

import torch

# Real LLM families and the special tokens their chat templates use.
TOKENIZER_FAMILIES = {
    # Vicuna v1.5 (Llama-2 vocabulary); like the real one it has no pad token.
    "vicuna": dict(bos="<s>", eos="</s>", unk="<unk>", pad=None, extra=[]),
    "llama3": dict(
        bos="<|begin_of_text|>",
        eos="<|eot_id|>",
        unk=None,
        pad="<|finetune_right_pad_id|>",
        extra=["<|start_header_id|>", "<|end_header_id|>", "<|end_of_text|>"],
    ),
    "phi3": dict(
        bos="<s>",
        eos="<|endoftext|>",
        unk="<unk>",
        pad="<|endoftext|>",
        extra=["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"],
    ),
    # Yi-1.5 chat uses ChatML.
    "yi": dict(bos="<|startoftext|>", eos="<|im_end|>", unk="<unk>", pad="<unk>", extra=["<|im_start|>"]),
}

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

LOW_RES = 56
HIGH_RES = 128
CLIP_PATCH = 14
CONVNEXT_TIMM_NAME = "convnext_atto"  # stages 40/80/160/320 channels, strides 4/8/16/32

_CORPUS = """
A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful,
detailed, and polite answers to the user's questions. What is in the image? Describe the picture in detail.
The image shows a cat, a dog, a person, a car, a bus, a bird, a tree, a cup, a chair, a clock and a boat.
There is a red ball on the left and a blue box on the right. The sky is bright; the grass is green.
Answer with the option's letter from the given choices directly. Answer the question using a single word or
phrase. Please answer the question with yes or no. Yes. No. A. B. C. D. one two three four five six seven.
system user assistant Human GPT ### USER: ASSISTANT: coins camera astronaut coffee rocket chelsea horse
0 1 2 3 4 5 6 7 8 9 , . ? ! : ; ' " ( ) [ ] { } - + = / \\ < > | _ # @ $ % & *
"""


def _byte_level_tokenizer(family: str, vocab_size: int = 512):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    spec = TOKENIZER_FAMILIES[family]
    specials = [t for t in (spec["unk"], spec["bos"], spec["eos"], spec["pad"]) if t] + spec["extra"]
    specials = list(dict.fromkeys(specials))
    tok = Tokenizer(models.BPE(unk_token=spec["unk"]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([_CORPUS] * 4, trainer=trainer)
    kwargs = {k: spec[k] for k in ("bos", "eos", "unk", "pad") if spec[k]}
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        **{f"{k}_token": v for k, v in kwargs.items()},
        additional_special_tokens=spec["extra"],
        model_max_length=4096,
        padding_side="right",
    )


def build_tokenizer(out_dir: str, family: str) -> str:
    tokenizer = _byte_level_tokenizer(family)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def build_llm(out_dir: str, family: str, hidden_size: int = 32, num_layers: int = 2, seed: int = 0) -> str:
    """A tiny causal LM of the family's architecture, saved with its tokenizer (like a hub snapshot)."""
    from transformers import LlamaConfig, LlamaForCausalLM, Phi3Config, Phi3ForCausalLM

    tokenizer = _byte_level_tokenizer(family)
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        torch_dtype="float32",
    )
    torch.manual_seed(seed)
    if family == "phi3":
        model = Phi3ForCausalLM(Phi3Config(num_key_value_heads=4, original_max_position_embeddings=2048, **common))
    elif family == "llama3":
        model = LlamaForCausalLM(LlamaConfig(num_key_value_heads=2, rope_theta=500000.0, **common))
    else:
        model = LlamaForCausalLM(LlamaConfig(num_key_value_heads=4, **common))
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def _clip_bpe_files(out_dir: str):
    """vocab.json/merges.txt for a character-level CLIP BPE (every byte, with and without ``</w>``)."""
    from transformers.models.clip.tokenization_clip import bytes_to_unicode

    chars = list(bytes_to_unicode().values())
    merges = [("t", "h"), ("th", "e</w>"), ("o", "f</w>"), ("p", "h"), ("ph", "o"), ("pho", "t"), ("phot", "o</w>")]
    vocab = chars + [c + "</w>" for c in chars] + ["".join(m) for m in merges]
    vocab += ["</w>", "<|startoftext|>", "<|endoftext|>"]
    assert len(set(vocab)) == len(vocab)
    with open(osp.join(out_dir, "vocab.json"), "w") as f:
        json.dump({tok: i for i, tok in enumerate(vocab)}, f)
    with open(osp.join(out_dir, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    return len(vocab)


def _clip_tokenizer(out_dir: str, max_length: int):
    from transformers import CLIPTokenizer

    os.makedirs(out_dir, exist_ok=True)
    _clip_bpe_files(out_dir)
    return CLIPTokenizer(
        osp.join(out_dir, "vocab.json"), osp.join(out_dir, "merges.txt"), model_max_length=max_length
    )


def _tiny_two_towers(tokenizer, max_positions: int, vision_layers: int, image_size: int, patch_size: int) -> dict:
    """The text and vision tower settings of a tiny CLIP-style model (CLIP, OWLv2): width 32, 4 heads, 2 text
    layers; ``text_config`` and ``vision_config`` keyword arguments of its config class."""
    return dict(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=max_positions,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=vision_layers,
                           num_attention_heads=4, image_size=image_size, patch_size=patch_size),
    )


def build_clip(out_dir: str, image_size: int = LOW_RES, seed: int = 0, num_layers: int = 3) -> str:
    """A tiny full CLIP (text + vision) with its processor; ``CLIPVisionModel`` loads the vision half.
    ``num_layers`` vision layers (``clip_deep``: 6, enough distinct hidden states for MMFuser's 4 levels + query)."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    tokenizer = _clip_tokenizer(out_dir, max_length=32)
    config = CLIPConfig(**_tiny_two_towers(tokenizer, 32, num_layers, image_size, CLIP_PATCH), projection_dim=16)
    torch.manual_seed(seed)
    CLIPModel(config).save_pretrained(out_dir, safe_serialization=True)
    processor = CLIPImageProcessor(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        image_mean=list(OPENAI_CLIP_MEAN),
        image_std=list(OPENAI_CLIP_STD),
    )
    CLIPProcessor(image_processor=processor, tokenizer=tokenizer).save_pretrained(out_dir)
    return out_dir


def build_open_clip_convnext(out_dir: str, image_size: int = HIGH_RES, seed: int = 0) -> str:
    """A small open_clip ConvNeXt CLIP in open_clip's hub layout (``open_clip_config.json`` + weights).

    Load it with ``open_clip.create_model('local-dir:' + out_dir)``. Its vision config mirrors
    ``convnext_large_d_320`` (timm trunk, no pooling, MLP head, drop_path 0.1) with ``convnext_atto`` widths.
    """
    import open_clip

    model_cfg = {
        "embed_dim": 16,
        "vision_cfg": {
            "timm_model_name": CONVNEXT_TIMM_NAME,
            "timm_model_pretrained": False,
            "timm_pool": "",
            "timm_proj": "mlp",
            "timm_drop": 0.0,
            "timm_drop_path": 0.1,
            "image_size": image_size,
        },
        "text_cfg": {"context_length": 16, "vocab_size": 1000, "width": 32, "heads": 2, "layers": 1},
    }
    config = {
        "model_cfg": model_cfg,
        "preprocess_cfg": {"mean": list(OPENAI_CLIP_MEAN), "std": list(OPENAI_CLIP_STD)},
    }
    os.makedirs(out_dir, exist_ok=True)
    with open(osp.join(out_dir, "open_clip_config.json"), "w") as f:
        json.dump(config, f, indent=2)
    torch.manual_seed(seed)
    model = open_clip.create_model("local-dir:" + out_dir, load_weights=False)
    torch.save(model.state_dict(), osp.join(out_dir, "open_clip_pytorch_model.bin"))
    return out_dir


def build_owlv2(out_dir: str, image_size: int = 64, seed: int = 0) -> str:
    """A tiny OWLv2 detector with its processor, in the transformers layout."""
    from transformers import Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessor, Owlv2Processor

    tokenizer = _clip_tokenizer(out_dir, max_length=16)  # like the real OWLv2 tokenizer
    config = Owlv2Config(**_tiny_two_towers(tokenizer, 16, 2, image_size, 16),
                         projection_dim=32)  # OWLv2 scores image embeddings against text embeddings of the text width
    torch.manual_seed(seed)
    Owlv2ForObjectDetection(config).save_pretrained(out_dir, safe_serialization=True)
    image_processor = Owlv2ImageProcessor(size={"height": image_size, "width": image_size})
    Owlv2Processor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(out_dir)
    return out_dir


def build_all(root: str) -> dict:
    """Build every tiny checkpoint under ``root``; returns ``{name: path}``. Skips folders that already exist."""
    builders = {
        "clip": build_clip,
        "clip_deep": lambda d: build_clip(d, num_layers=6),
        "convnext": build_open_clip_convnext,
        "owlv2": build_owlv2,
        **{f"llm_{family}": (lambda d, fam=family: build_llm(d, fam)) for family in TOKENIZER_FAMILIES},
    }
    paths = {}
    for name, builder in builders.items():
        path = osp.join(root, name)
        done = osp.join(path, ".complete")
        if not osp.exists(done):
            os.makedirs(path, exist_ok=True)
            builder(path)
            open(done, "w").close()
        paths[name] = path
    return paths
