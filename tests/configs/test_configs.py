"""Every shipped config parses; every real-backbone config builds its model on the meta device (no weights) with the
parameter count equal to the sum of its parts; the recipes carry SPEC 3's hyper-parameters, and a config's settings
reach every place its shared base parts hold them."""
import contextlib
import os.path as osp
from glob import glob

import pytest
import torch
from mmengine.config import Config

from mg_llava.dataset import PROMPT_TEMPLATE
from mg_llava.model import MGLLaVAModel
from mg_llava.model.reference_configs import CLIP_VIT_L_336, LLMS, llm_config

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
# MG-LLaVA's recipes (the AVG-LLaVA stages have their own checks in test_avg_configs.py)
CONFIGS = sorted(p for p in glob(osp.join(ROOT, "xtuner_configs", "**", "*.py"), recursive=True)
                 if "/_base_/" not in p and osp.basename(p).startswith("mg_llava_"))
# (the Table 5 ablations build with their own parts in test_table5_configs.py)
REAL = [c for c in CONFIGS if "/tiny/" not in c and "/table5/" not in c]
# Every config file but the tiny default, which writes out the tiny sizes: MG-LLaVA's and its variants' (AVG-LLaVA,
# LLaVA-1.5 + MMFuser)
VARIANTS = sorted(p for p in glob(osp.join(ROOT, "xtuner_configs", "**", "*.py"), recursive=True)
                  if "/_base_/" not in p and not p.endswith("/tiny/mg_llava_tiny_cpu_pretrain.py"))
HUB_TO_NAME = {hub: name for name, (_, _, hub) in LLMS.items()}
TEMPLATES = {"Phi-3-mini-4k": "phi3_chat", "Vicuna-7B": "vicuna", "Vicuna-13B": "vicuna",
             "Llama-3-8B": "llama3_chat", "Yi-1.5-34B": "chatml"}


def _id(path):
    return osp.relpath(path, osp.join(ROOT, "xtuner_configs"))


def test_configs_are_shipped_for_every_backbone_and_stage():
    names = {_id(c) for c in CONFIGS}
    for folder in ("phi3_mini_4k_instruct", "vicuna_7b_v15", "vicuna_13b_v15", "llama3_8b_instruct", "yi_1_5_34b"):
        for stage in ("pretrain", "finetune"):
            assert f"{folder}/mg_llava_{folder}_{stage}.py" in names
    assert any(n.endswith("_lora.py") for n in names) and any(n.endswith("_qlora.py") for n in names)
    assert {"tiny/mg_llava_tiny_cpu_pretrain.py", "tiny/mg_llava_tiny_cpu_finetune.py"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=_id)
def test_config_parses_with_its_recipe(path):
    cfg = Config.fromfile(path)
    assert cfg.model.type is MGLLaVAModel
    assert cfg.train_dataloader.collate_fn.type.__name__ == "llava_box_collate_fn"
    stage2 = "finetune" in osp.basename(path)
    lora = "lora" in osp.basename(path)
    assert cfg.model.freeze_llm == (not stage2 or lora)
    assert ("pretrained_pth" in cfg.model) == stage2
    if "/tiny/" in path:
        return
    name = HUB_TO_NAME[cfg.llm_name_or_path]
    assert cfg.prompt_template == PROMPT_TEMPLATE[TEMPLATES[name]]
    global_batch = cfg.batch_size * cfg.num_gpus * cfg.accumulative_counts
    assert global_batch == (128 if stage2 else 256)
    expected_lr = (1e-5 if name == "Llama-3-8B" else 2e-5) if stage2 else 1e-3
    video = "_video_" in osp.basename(path)
    if video:  # 8 frames a video (SPEC 1.8), positions for 8 x (576 + 100) visual tokens (RoPE x2)
        assert cfg.num_frames == 8 and cfg.model.llm.rope_scaling == dict(type="linear", factor=2.0)
    if video and lora:  # the low-memory variant (XTuner's LLaVA QLoRA fine-tune): LoRA r=512, alpha=256, lr 2e-4
        expected_lr = 2e-4
        assert cfg.model.llm_lora.r == 512 and cfg.model.llm_lora.lora_alpha == 256
        assert cfg.model.llm.quantization_config.bnb_4bit_quant_type == "nf4"
    assert cfg.optim_wrapper.optimizer.lr == expected_lr
    assert cfg.optim_wrapper.optimizer.weight_decay == 0 and cfg.strategy.gradient_clipping == 1
    llava_mmfuser = osp.basename(path).startswith("llava_mmfuser_")  # LLaVA-1.5's recipe: ZeRO-3 in stage 2
    # ZeRO-3: Yi-1.5-34B, LLaVA-1.5's stage 2, and the full video fine-tune (tools/memory_plan.py: 6879-token samples)
    zero_stage = 3 if name == "Yi-1.5-34B" or (llava_mmfuser and stage2) or (video and stage2 and not lora) else 2
    assert cfg.strategy.config.zero_optimization.stage == zero_stage
    assert cfg.strategy.config.bf16.enabled
    assert cfg.warmup_ratio == 0.03 and cfg.max_epochs == 1
    sampler = cfg.train_dataloader.sampler.type.__name__
    assert sampler == ("ModalityLengthGroupedSampler" if video else "LengthGroupedSampler" if stage2 else
                       "DefaultSampler")
    if "mmfuser" in osp.basename(path):  # MMFuser: CLIP layers -22/-17/-12/-7 into -2, 16 heads, 4 points
        assert list(cfg.clip_layers) == [-22, -17, -12, -7, -2]
        assert cfg.model.fusion.type.__name__ == "MultiLayerDeformableFusion"
        assert (cfg.model.fusion.num_levels, cfg.model.fusion.num_heads, cfg.model.fusion.num_points) == (4, 16, 4)
    if llava_mmfuser:
        assert cfg.high_res == cfg.low_res == 336
        assert cfg.model.visual_encoder_aux is None and cfg.model.object_features is None
    else:
        assert cfg.max_boxes == 100 and cfg.high_res == 768 and cfg.low_res == 336


def _strings(value):
    """Every string in a resolved config (lazy objects as their import paths)."""
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


@pytest.mark.parametrize("path", CONFIGS, ids=_id)
def test_settings_reach_every_part_that_holds_them(path):
    """mmengine copies a base part's dicts, so a config that changes a setting must point each copy at it: the
    tokenizer, LLM, datasets, batch and schedule all agree with the config's own variables, and nothing of the shared
    Vicuna-7B default is left behind in another LLM's config."""
    cfg = Config.fromfile(path)
    dataset = cfg.train_dataloader.dataset
    assert cfg.tokenizer.pretrained_model_name_or_path == cfg.llm_name_or_path
    assert cfg.model.llm.pretrained_model_name_or_path == cfg.llm_name_or_path
    assert dataset.tokenizer == cfg.tokenizer
    assert dataset.template_map_fn.template == cfg.prompt_template
    assert dataset.image_views == cfg.image_views and dataset.max_length == cfg.max_length
    # the model finishes the loader's uint8 views with the views' own normalisation and low-res side
    preprocessor, processor = cfg.model.data_preprocessor, cfg.image_views.image_processor
    assert preprocessor.type.__name__ == "ViewsDataPreprocessor"
    assert preprocessor.low_res == cfg.image_views.low_res == cfg.low_res
    assert preprocessor.high_res == cfg.image_views.high_res == cfg.high_res
    # the GPU recipes hand the decoded images to the preprocessor; the tiny CPU configs resize in the loader
    sources = dataset.get("datasets") or [dataset]
    assert {dict(dataset, **source).get("resize_on_device") for source in sources} == {"tiny_cpu" not in path}
    assert preprocessor.mean == processor.image_mean == cfg.image_mean
    assert preprocessor.std == processor.image_std == cfg.image_std
    assert cfg.model.get("pretrained_pth") == cfg.get("pretrained_pth")
    assert cfg.train_dataloader.batch_size == cfg.batch_size
    assert cfg.optim_wrapper.optimizer.lr == cfg.lr
    assert cfg.train_cfg.max_epochs == cfg.param_scheduler[1].end == cfg.max_epochs
    assert cfg.param_scheduler[0].end == cfg.param_scheduler[1].begin == cfg.warmup_ratio * cfg.max_epochs
    assert cfg.default_hooks.checkpoint.interval == cfg.save_steps
    with open(path) as f:
        on_shared_parts = "read_base()" in f.read()
    if on_shared_parts:  # the self-contained MMFuser / AVG-LLaVA / video configs do not have these yet
        sample_hooks = [h for h in cfg.custom_hooks if h.type.__name__ == "SampleAnswersHook"]
        if "tiny_cpu_zero3" not in path:  # the CPU ZeRO-3 pair keeps only its weights hook (generation untried)
            assert len(sample_hooks) == 1 and sample_hooks[0].every_n_iters == cfg.evaluation_freq
        assert cfg.model.fusion.type == cfg.fusion_type
        assert (cfg.model.get("object_features") is not None) == cfg.object_tokens
    if cfg.train_dataloader.sampler.type.__name__ == "LengthGroupedSampler":
        assert cfg.train_dataloader.sampler.per_device_batch_size == cfg.batch_size * cfg.accumulative_counts
    if "strategy" in cfg:
        assert cfg.strategy.train_micro_batch_size_per_gpu == cfg.batch_size
        assert cfg.strategy.gradient_accumulation_steps == cfg.accumulative_counts
    else:
        assert cfg.optim_wrapper.accumulative_counts == cfg.accumulative_counts
    strings = _strings(cfg.to_dict())
    if cfg.llm_name_or_path != "lmsys/vicuna-7b-v1.5":
        assert "lmsys/vicuna-7b-v1.5" not in strings
    if cfg.prompt_template != PROMPT_TEMPLATE.vicuna:
        assert "mg_llava.dataset.PROMPT_TEMPLATE.vicuna" not in strings


@pytest.mark.parametrize("path", VARIANTS, ids=_id)
def test_config_file_holds_only_what_is_specific_to_it(path):
    """A config is a short file on the shared parts of xtuner_configs/_base_/ or on the config it varies."""
    with open(path) as f:
        lines = f.read().splitlines()
    assert len(lines) < 90, f"{_id(path)}: {len(lines)} lines"
    assert any(line.startswith("    from .") for line in lines), f"{_id(path)} imports no base part or config"
    assert not any(line.startswith(("train_dataloader = ", "optim_wrapper = ", "default_hooks = ", "env_cfg = "))
                   for line in lines), f"{_id(path)} writes out a shared part"


@pytest.mark.parametrize("path", sorted(set(VARIANTS) - set(CONFIGS)), ids=_id)
def test_other_models_configs_make_their_views_on_the_device_as_the_loader_would(path):
    """The LLaVA-1.5 + MMFuser and AVG-LLaVA configs (the settings test covers MG-LLaVA's): the data preprocessor's
    views have the dataset's sides, and only the GPU recipes hand over decoded images."""
    cfg = Config.fromfile(path)
    dataset, preprocessor = cfg.train_dataloader.dataset, cfg.model.data_preprocessor
    views = dataset.get("image_views") or dataset.datasets[0].image_views
    assert (preprocessor.high_res, preprocessor.low_res) == (views.high_res, views.low_res)
    sources = dataset.get("datasets") or [dataset]
    assert {dict(dataset, **source).get("resize_on_device") for source in sources} == {"tiny_cpu" not in path}


@contextlib.contextmanager
def weights_free_loading(tmp_path):
    """``from_pretrained`` builds from the config alone and open_clip builds on the meta device (no weights)."""
    import functools

    import open_clip
    from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedModel

    def from_config_only(cls, pretrained_model_name_or_path, *args, torch_dtype=None, **kwargs):
        return cls._from_config(cls.config_class.from_pretrained(pretrained_model_name_or_path),
                                torch_dtype=torch_dtype)

    def auto_from_config_only(pretrained_model_name_or_path, *args, torch_dtype=None, **kwargs):
        config = AutoConfig.from_pretrained(pretrained_model_name_or_path)
        return AutoModelForCausalLM.from_config(config, torch_dtype=torch_dtype)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(PreTrainedModel, "from_pretrained", classmethod(from_config_only))
        mp.setattr(AutoModelForCausalLM, "from_pretrained", auto_from_config_only)
        mp.setattr(open_clip, "create_model", functools.partial(open_clip.create_model, device="meta"))
        yield


def _count(module):
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def architecture_folders(tmp_path_factory):
    """config.json folders (no weights) for CLIP ViT-L/14-336 and each LLM."""
    from transformers import CLIPVisionConfig

    root = tmp_path_factory.mktemp("architectures")
    CLIPVisionConfig(**CLIP_VIT_L_336).save_pretrained(root / "clip")
    for name in LLMS:
        llm_config(name).save_pretrained(root / name)
    return root


@pytest.fixture(scope="module")
def part_counts():
    """Parameters of the parts, each built on its own on the meta device."""
    import timm
    from transformers import AutoModelForCausalLM, CLIPVisionConfig, CLIPVisionModel

    from mg_llava.model import ConvGateFusion, MultiLayerDeformableFusion
    from mg_llava.model.mg_llava_model import mlp_projector

    with torch.device("meta"):
        trunk = timm.create_model("convnext_large", pretrained=False)
        counts = dict(
            clip=_count(CLIPVisionModel(CLIPVisionConfig(**CLIP_VIT_L_336))),
            convnext=_count(trunk.stem) + _count(trunk.stages),
            fusion=_count(ConvGateFusion(1024, 1536)),
            mmfuser=_count(MultiLayerDeformableFusion(1024, num_levels=4, num_heads=16, num_points=4)),
        )
        for name in LLMS:
            hidden = llm_config(name).hidden_size
            counts[name] = dict(
                llm=_count(AutoModelForCausalLM.from_config(llm_config(name))),
                projectors=_count(mlp_projector(1024, hidden, 2)) + _count(mlp_projector(2880, hidden, 2)),
                bbox_projector=_count(mlp_projector(2880, hidden, 2)),
            )
    return counts


# QLoRA builds too: without a GPU the 4-bit quantization itself is skipped (from_config ignores it), LoRA is applied.
@pytest.mark.parametrize("path", REAL, ids=_id)
def test_real_config_builds_on_meta_with_the_parameters_of_its_parts(path, architecture_folders, part_counts):
    from xtuner.registry import BUILDER

    cfg = Config.fromfile(path)
    name = HUB_TO_NAME[cfg.llm_name_or_path]
    model_cfg = cfg.model
    model_cfg.llm.pretrained_model_name_or_path = str(architecture_folders / name)
    model_cfg.visual_encoder.pretrained_model_name_or_path = str(architecture_folders / "clip")
    if model_cfg.visual_encoder_aux is not None:
        model_cfg.visual_encoder_aux.pretrained = None  # architecture only
    model_cfg.pretrained_pth = None
    with weights_free_loading(architecture_folders), torch.device("meta"):
        model = BUILDER.build(model_cfg)
    assert isinstance(model, MGLLaVAModel)
    parts = part_counts[name]
    expected = parts["llm"] + part_counts["clip"] + part_counts["convnext"] + part_counts["fusion"] + parts["projectors"]
    llava_mmfuser = osp.basename(path).startswith("llava_mmfuser_")  # no ConvNeXt, Conv-Gate or box projector
    if llava_mmfuser:
        expected -= part_counts["convnext"] + part_counts["fusion"] + parts["bbox_projector"]
    if "mmfuser" in osp.basename(path):
        expected += part_counts["mmfuser"]
    total = _count(model)
    if getattr(model, "use_llm_lora", False):
        lora = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
        assert lora > 0
        total -= lora
    assert total == expected, f"{name}: {total:,} parameters, parts add up to {expected:,}"
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable >= {"fuse_module", "projector"} | (set() if llava_mmfuser else {"bbox_projector"})
    assert "visual_encoder" not in trainable and "visual_encoder_aux" not in trainable
