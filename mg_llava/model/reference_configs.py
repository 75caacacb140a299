"""Published architecture configs of the released backbones (each hub model's config.json), so tools and tests can
build them on the meta device without downloading anything."""

CLIP_VIT_L_336 = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                      image_size=336, patch_size=14, projection_dim=768)
CONVNEXT_L = "convnext_large_d_320"  # open_clip name; its image trunk is timm's convnext_large

# name -> (transformers family, config kwargs, hub id the configs name)
LLMS = {
    "Phi-3-mini-4k": ("phi3", dict(vocab_size=32064, hidden_size=3072, intermediate_size=8192, num_hidden_layers=32,
                                   num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096,
                                   original_max_position_embeddings=4096), "microsoft/Phi-3-mini-4k-instruct"),
    "Vicuna-7B": ("llama", dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                                num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096),
                  "lmsys/vicuna-7b-v1.5"),
    "Llama-3-8B": ("llama", dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                                 num_attention_heads=32, num_key_value_heads=8, rope_theta=500000.0,
                                 max_position_embeddings=8192),
                   "meta-llama/Meta-Llama-3-8B-Instruct"),
    "Vicuna-13B": ("llama", dict(vocab_size=32000, hidden_size=5120, intermediate_size=13824, num_hidden_layers=40,
                                 num_attention_heads=40, num_key_value_heads=40, max_position_embeddings=4096),
                   "lmsys/vicuna-13b-v1.5"),
    "Yi-1.5-34B": ("llama", dict(vocab_size=64000, hidden_size=7168, intermediate_size=20480, num_hidden_layers=60,
                                 num_attention_heads=56, num_key_value_heads=8, rope_theta=5000000.0,
                                 max_position_embeddings=4096),
                   "01-ai/Yi-1.5-34B"),
}


def llm_config(name: str):
    """The transformers config object of backbone ``name`` (a key of :data:`LLMS`)."""
    from transformers import LlamaConfig, Phi3Config

    family, kwargs, _ = LLMS[name]
    return (Phi3Config if family == "phi3" else LlamaConfig)(tie_word_embeddings=False, **kwargs)
