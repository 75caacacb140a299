"""What the benchmark tools of ``tools/`` share: FLOP counting without weights and the published architectures.

- :func:`count`, :func:`forward_macs_by_module`: parameters and forward multiply-adds (MACs) from
  ``torch.utils.flop_counter``, on the meta device (or under ``FakeTensorMode``) so nothing is allocated;
  :func:`build_llm` and :func:`vision_components` count MG-LLaVA's parts at the real sizes (``tools/flops_report.py``,
  ``tools/benchmark_avg.py``).
- :func:`published_architectures`: a config's hub-named parts built from their published configs with random
  weights (``tools/benchmark_train_step.py``, ``tools/benchmark_video_memory.py``).
"""
import contextlib
import os.path as osp

import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils.flop_counter import FlopCounterMode

from mg_llava.model.reference_configs import CLIP_VIT_L_336, LLMS, llm_config

LOW_RES, HIGH_RES, PATCH, ROI_SIZE = 336, 768, 14, 56
MMFUSER = dict(num_levels=4, num_heads=16, num_points=4)  # CLIP layers -22, -17, -12, -7 into -2


def count(build, inputs, fake=False):
    """(parameters, forward MACs) of ``build()`` applied to ``inputs()``, without allocating anything."""
    with FakeTensorMode() if fake else torch.device("meta"):
        module = build()
        params = sum(p.numel() for p in module.parameters())
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            module(*inputs())
    return params, counter.get_total_flops() // 2


def forward_macs_by_module(fn):
    """MACs of ``fn()``, run without autograd, per module as FlopCounterMode names them: ``"Global"`` for all,
    ``"<root class>.<attribute>..."`` for each submodule (a module counts its children)."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fn()
    return {name: sum(ops.values()) // 2 for name, ops in counter.get_flop_counts().items()}


def build_llm(name):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_config(llm_config(name), attn_implementation="eager")


def vision_components(boxes):
    """{component: (params, MACs)} of everything before the LLM except the projectors (which depend on H)."""
    from transformers import CLIPVisionConfig, CLIPVisionModel
    import timm

    from mg_llava.model import ConvGateFusion, MultiLayerDeformableFusion

    tokens = (LOW_RES // PATCH) ** 2
    clip = count(lambda: CLIPVisionModel(CLIPVisionConfig(**CLIP_VIT_L_336)),
                 lambda: (torch.zeros(1, 3, LOW_RES, LOW_RES),))

    def convnext_trunk():  # open_clip's convnext_large_d_320 image trunk is timm's convnext_large
        trunk = timm.create_model("convnext_large", pretrained=False)
        return torch.nn.Sequential(trunk.stem, trunk.stages)

    convnext = count(convnext_trunk, lambda: (torch.zeros(1, 3, HIGH_RES, HIGH_RES),))
    stage_channels = [192, 384, 768, 1536]
    fusion = count(lambda: ConvGateFusion(1024, stage_channels[-1]),
                   lambda: (torch.zeros(1, tokens, 1024), torch.zeros(1, stage_channels[-1], 24, 24)))
    levels, points = MMFUSER["num_levels"], MMFUSER["num_points"]
    mmfuser = count(lambda: MultiLayerDeformableFusion(1024, **MMFUSER),
                    lambda: (torch.zeros(1, levels + 1, tokens, 1024),))
    sampling = tokens * (levels + 1) * points * 1024 * (4 + 1)  # cross-attention over 4 levels, self over 1
    side = HIGH_RES // 4
    upsample = sum(stage_channels[1:]) * side * side * 4
    roi = boxes * sum(stage_channels) * ROI_SIZE ** 2 * (4 + 1)  # one bilinear sample per bin, then the mean
    return dict(clip=clip, convnext=convnext, mmfuser=(mmfuser[0], mmfuser[1] + sampling), fusion=fusion,
                roi_align=(0, upsample + roi if boxes else 0)), tokens


@contextlib.contextmanager
def published_architectures(model_cfg, device, folder):
    """Parts of ``model_cfg`` named by a hub id are built from their published configs (written to ``folder`` as
    config-only checkpoints, which XTuner reads too) with random weights, on ``device``."""
    import open_clip
    from transformers import AutoConfig, AutoModelForCausalLM, CLIPVisionConfig, CLIPVisionModel

    hub_llms = {hub: name for name, (_, _, hub) in LLMS.items()}
    llm_path = model_cfg.llm.pretrained_model_name_or_path
    if not osp.isdir(llm_path):
        if llm_path not in hub_llms:
            raise ValueError(f"LLM {llm_path!r} is neither a local folder nor a published one ({sorted(hub_llms)})")
        llm_config(hub_llms[llm_path]).save_pretrained(osp.join(folder, "llm"))
        model_cfg.llm.pretrained_model_name_or_path = osp.join(folder, "llm")

        def random_llm(pretrained_model_name_or_path, *args, torch_dtype=None, **kwargs):
            config = AutoConfig.from_pretrained(pretrained_model_name_or_path)
            return AutoModelForCausalLM.from_config(config, torch_dtype=torch_dtype)

        model_cfg.llm.type = random_llm
    clip_path = model_cfg.visual_encoder.pretrained_model_name_or_path
    if not osp.isdir(clip_path):
        CLIPVisionConfig(**CLIP_VIT_L_336).save_pretrained(osp.join(folder, "clip"))
        model_cfg.visual_encoder.pretrained_model_name_or_path = osp.join(folder, "clip")
    clip_from_pretrained, create_model = CLIPVisionModel.from_pretrained, open_clip.create_model

    def clip(pretrained_model_name_or_path, *args, torch_dtype=None, **kwargs):
        if pretrained_model_name_or_path == osp.join(folder, "clip"):
            return CLIPVisionModel._from_config(CLIPVisionConfig.from_pretrained(pretrained_model_name_or_path),
                                                torch_dtype=torch_dtype)
        return clip_from_pretrained(pretrained_model_name_or_path, *args, torch_dtype=torch_dtype, **kwargs)

    def convnext(name, pretrained=None, **kwargs):
        if not name.startswith("local-dir:"):
            pretrained = None  # architecture only
        return create_model(name, pretrained=pretrained, **dict(kwargs, device=device))

    # Restored as found: CLIPVisionModel inherits from_pretrained, and assigning the saved bound method back would
    # leave a class attribute that hides later patches of PreTrainedModel.from_pretrained.
    own = CLIPVisionModel.__dict__.get("from_pretrained")
    try:
        CLIPVisionModel.from_pretrained, open_clip.create_model = clip, convnext
        with torch.device(device):
            yield
    finally:
        open_clip.create_model = create_model
        if own is None:
            del CLIPVisionModel.from_pretrained
        else:
            CLIPVisionModel.from_pretrained = own
