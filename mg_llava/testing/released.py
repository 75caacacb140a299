"""Shapes of a released MG-LLaVA checkpoint (SPEC 4 key names) at the tiny models' sizes, for synthesised files."""


def released_shapes(llm: int = 32, clip: int = 32, stages=(40, 80, 160, 320), gate: int = 16) -> dict:
    """{key: shape} of the trainable weights: projectors, box projector and Conv-Gate fusion.

    Defaults are the tiny models of :mod:`mg_llava.testing.tiny_models` (LLM and CLIP width 32, ConvNeXt-atto
    stages); the released Vicuna-7B file is ``released_shapes(4096, 1024, (192, 384, 768, 1536), 512)``.
    """
    h, c, c_s, c_b, g = llm, clip, stages[-1], sum(stages), gate
    return {
        "projector.model.0.weight": (h, c), "projector.model.0.bias": (h,),
        "projector.model.2.weight": (h, h), "projector.model.2.bias": (h,),
        "bbox_projector.model.0.weight": (h, c_b), "bbox_projector.model.0.bias": (h,),
        "bbox_projector.model.2.weight": (h, h), "bbox_projector.model.2.bias": (h,),
        "fuse_module.slow_conv.weight": (c_s, c_s, 1, 1), "fuse_module.slow_conv.bias": (c_s,),
        "fuse_module.slow_proj.weight": (c, c_s, 1, 1), "fuse_module.slow_proj.bias": (c,),
        "fuse_module.fast_conv.weight": (c, 1, 7, 7), "fuse_module.fast_conv.bias": (c,),
        "fuse_module.fast_proj.weight": (c, c, 1, 1), "fuse_module.fast_proj.bias": (c,),
        "fuse_module.gate.0.weight": (g, 2 * c), "fuse_module.gate.0.bias": (g,),
        "fuse_module.gate.2.weight": (1, g), "fuse_module.gate.2.bias": (1,),
    }
