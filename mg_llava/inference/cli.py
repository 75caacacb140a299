"""Command-line options shared by tools/chat.py, tools/evaluate.py and tools/export.py."""
import argparse
import logging
from typing import Optional

from mmengine.config import DictAction
from mmengine.logging import print_log

from mg_llava.dataset import BOX_RULES, MAX_BOXES

from .loading import DTYPES, LoadedModel, load_exported, load_from_config, load_from_spec
from .placement import DEVICE_MAPS, LLMPlacement, PlacementError, parse_max_memory
from .spec import spec_from_paths
from .weights import is_export


def add_model_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "model", "one of: an exported folder (--checkpoint DIR with mg_llava.json); --config (a training config) "
                 "with --checkpoint; or --llm/--visual-encoder/--visual-encoder-aux/--template with --checkpoint")
    group.add_argument("--checkpoint", help="trainable weights: our .pth, a released MG-LLaVA .pth, a DeepSpeed "
                                            "checkpoint folder, or an exported folder")
    group.add_argument("--config", help="the training config the checkpoint comes from")
    group.add_argument("--cfg-options", nargs="+", action=DictAction, metavar="KEY=VALUE",
                       help="override settings of --config as `xtuner train` does, e.g. "
                            "model.llm.pretrained_model_name_or_path=/data/llm (a config's relative paths from "
                            "another directory)")
    group.add_argument("--llm", help="base LLM (hub id or folder), e.g. lmsys/vicuna-7b-v1.5")
    group.add_argument("--visual-encoder", help="CLIP ViT, e.g. openai/clip-vit-large-patch14-336")
    group.add_argument("--visual-encoder-aux", help="open_clip ConvNeXt name or 'local-dir:' folder, e.g. "
                                                    "convnext_large_d_320")
    group.add_argument("--visual-encoder-aux-pretrained", help="its open_clip tag or weights file, e.g. "
                                                               "laion2b_s29b_b131k_ft_soup")
    group.add_argument("--template", help="prompt template name (vicuna, llama3_chat, phi3_chat, chatml, ...)")
    group.add_argument("--high-res", type=int, default=768, help="high-res view side (paths only)")
    group.add_argument("--low-res", type=int, help="low-res view side (paths only; default: the CLIP processor's)")
    group.add_argument("--roi-output-size", type=int, default=56, help="RoIAlign output side (paths only)")
    group.add_argument("--max-boxes", type=int, default=MAX_BOXES, help="box limit per image (paths only)")
    group.add_argument("--box-rule", choices=BOX_RULES,
                       help="load-time box rule (default: the training config's or the export's; 'released' for a "
                            "checkpoint loaded from paths, i.e. a released one)")
    group.add_argument("--device", help="cuda / cpu (default: cuda when available)")
    group.add_argument("--dtype", choices=sorted(DTYPES), help="cast the model (default: as loaded)")
    group.add_argument("--system", help="system prompt (the training data had none)")
    group.add_argument("--allow-unsafe-pickle", action="store_true",
                       help="opt in to full unpickling of checkpoints the safe loader refuses (files that name "
                            "callables other than tensors, containers and training-framework records); only for "
                            "files you trust")
    group.add_argument("--trust-remote-code", action="store_true",
                       help="opt in to running the LLM's own modelling code from its folder or hub repo")
    place = parser.add_argument_group(
        "LLM placement", "quantise the LLM (needs a CUDA GPU) or split it across GPUs / offload it to CPU and disk "
                         "(accelerate); the vision side goes to the device the LLM reads its inputs on")
    bits = place.add_mutually_exclusive_group()
    bits.add_argument("--load-4bit", action="store_true", help="the LLM in 4 bits (bitsandbytes NF4, double "
                                                               "quantisation, bf16 compute); vision side in bf16")
    bits.add_argument("--load-8bit", action="store_true", help="the LLM in 8 bits (bitsandbytes LLM.int8); "
                                                               "vision side in bf16")
    place.add_argument("--device-map", choices=DEVICE_MAPS,
                       help="split the LLM's layers over the GPUs (and CPU/disk beyond --max-memory)")
    place.add_argument("--max-memory", metavar="DEV=SIZE,...",
                       help="memory per device for --device-map, e.g. 0=20GiB,1=20GiB,cpu=60GiB")
    place.add_argument("--offload-folder", metavar="DIR",
                       help="where --device-map puts the layers that fit nowhere else (disk offload)")
    group.add_argument("--granularity", type=int,
                       help="AVG-LLaVA models: give the LLM this many grid tokens per image (576, 288, 144, 72 or "
                            "36 on the real grid) instead of the router's choice")


def placement_from_args(args: argparse.Namespace) -> LLMPlacement:
    return LLMPlacement(load_in_4bit=getattr(args, "load_4bit", False), load_in_8bit=getattr(args, "load_8bit", False),
                        device_map=getattr(args, "device_map", None),
                        max_memory=parse_max_memory(getattr(args, "max_memory", None)),
                        offload_folder=getattr(args, "offload_folder", None))


def load_from_args(args: argparse.Namespace) -> LoadedModel:
    try:
        loaded = _load_from_args(args, placement_from_args(args))
    except PlacementError as err:
        raise SystemExit(str(err)) from err
    if getattr(args, "granularity", None) is not None:
        force_granularity(loaded.model, args.granularity)
    return loaded


def force_granularity(model, num_tokens: int) -> None:
    """Make an AVG-LLaVA model use the granularity with ``num_tokens`` grid tokens for every image."""
    if not hasattr(model, "granularity_index"):
        raise SystemExit(f"--granularity needs an AVG-LLaVA model; this one is a {type(model).__name__}")
    try:
        model.forced_granularity = model.granularity_index(num_tokens)
    except ValueError as err:
        raise SystemExit(f"--granularity {num_tokens}: {err}") from err


def _load_from_args(args: argparse.Namespace, placement: LLMPlacement) -> LoadedModel:
    placement.check()  # refuse what this machine cannot do before reading any weights
    common = dict(device=args.device, dtype=args.dtype, system=args.system, box_rule=args.box_rule,
                  placement=placement)
    cfg_options = getattr(args, "cfg_options", None)
    if cfg_options and args.config is None:
        raise SystemExit("--cfg-options changes a training config: give --config too")
    if is_export(args.checkpoint):
        return load_exported(args.checkpoint, trust_remote_code=args.trust_remote_code, **common)
    if args.checkpoint is None:
        raise SystemExit("--checkpoint is required (our .pth, a released .pth, a DeepSpeed folder or an export)")
    if args.config is not None:
        return load_from_config(args.config, args.checkpoint, allow_unsafe_pickle=args.allow_unsafe_pickle,
                                cfg_options=cfg_options, **common)
    missing = [flag for flag, value in (("--llm", args.llm), ("--visual-encoder", args.visual_encoder),
                                        ("--template", args.template)) if value is None]
    if missing:
        raise SystemExit(f"without --config, give {' '.join(missing)} (and --visual-encoder-aux)")
    spec = spec_from_paths(args.llm, args.visual_encoder, args.visual_encoder_aux, args.template,
                           high_res=args.high_res, low_res=args.low_res,
                           visual_encoder_aux_pretrained=args.visual_encoder_aux_pretrained,
                           roi_output_size=args.roi_output_size, max_boxes=args.max_boxes)
    return load_from_spec(spec, args.checkpoint, allow_unsafe_pickle=args.allow_unsafe_pickle,
                          trust_remote_code=args.trust_remote_code, **common)


TRAINING_TAGGER = "ram_plus"  # the tagger of the released boxes and of the boxes data_prep/ makes by default
TAGGER_DIFFERENCE = {
    "clip": "a CLIP model scoring the {vocabulary} vocabulary (top 10 tags per image)",
    "fixed": "every image tagged with all of {vocabulary}",
}


def add_box_generator_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("boxes found on the fly (tagger + OWLv2), when no box file is given")
    group.add_argument("--detector", help="OWLv2 checkpoint (hub id or folder), e.g. "
                                          "google/owlv2-large-patch14-ensemble")
    group.add_argument("--tagger", default=None, choices=["ram_plus", "clip", "fixed"],
                       help="what names the objects: RAM++ (the tagger training used; the default when its 'ram' "
                            "package is installed, else this option is required), a CLIP model scoring a "
                            "vocabulary, or a fixed vocabulary; the last two are logged with a WARNING")
    group.add_argument("--tagger-model", help="RAM++ checkpoint (ram_plus) or CLIP model folder/id (clip)")
    group.add_argument("--vocabulary", default=None, help="tag vocabulary: 'lvis', 'coco80', a file, or "
                                                          "comma-separated names (clip/fixed)")
    group.add_argument("--score-threshold", type=float, default=0.2, help="OWLv2 score threshold (released 0.2)")
    group.add_argument("--detector-preprocess", choices=["transformers", "torch"], default="transformers",
                       help="OWLv2 input: the official Owlv2Processor (as in training) or a fast approximate torch "
                            "resize")


def ram_is_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("ram") is not None


def choose_tagger(tagger: Optional[str], vocabulary=None) -> str:
    """The tagger to find boxes with on the fly: ``tagger``, else RAM++ when its package is installed.

    Raises SystemExit without a choice and without RAM++; logs a WARNING naming how the boxes differ from training
    for any tagger other than RAM++.
    """
    if tagger is None:
        if not ram_is_installed():
            raise SystemExit(
                "boxes found on the fly: the training boxes were tagged by RAM++ (--tagger ram_plus), whose 'ram' "
                "package is not installed (pip install git+https://github.com/xinyu1205/recognize-anything.git); "
                "install it, or choose --tagger clip (CLIP over the LVIS names) or --tagger fixed, knowing that the "
                "boxes then differ from the training boxes")
        tagger = TRAINING_TAGGER
    if tagger != TRAINING_TAGGER:
        names = ", ".join(vocabulary) if isinstance(vocabulary, list) else vocabulary
        what = TAGGER_DIFFERENCE[tagger].format(vocabulary=names or ("lvis" if tagger == "clip" else "coco80"))
        print_log(f"boxes found on the fly with --tagger {tagger} ({what}), not RAM++ as in training (its own ~4.6K "
                  "tags and per-tag thresholds): the tags, and so the boxes' labels, count and places, are "
                  "distributed unlike the boxes the model was trained on", logger="current", level=logging.WARNING)
    return tagger


def build_box_generator(args: argparse.Namespace, device: Optional[str] = None, box_rule: str = "clean"):
    """A :class:`~mg_llava.boxgen.BoxGenerator` from the options, or None without ``--detector``.

    ``box_rule`` is the model's (:func:`~mg_llava.dataset.apply_box_rule`): under ``'released'`` the detector writes
    its boxes as the released generation did (unclipped, truncated), the boxes that rule was trained on.
    """
    if args.detector is None:
        return None
    from mg_llava.boxgen import BoxGenerator

    vocabulary = args.vocabulary
    if vocabulary is not None and "," in vocabulary:
        vocabulary = [v.strip() for v in vocabulary.split(",") if v.strip()]
    device = str(device or "cpu")
    tagger_name = choose_tagger(args.tagger, vocabulary)
    if tagger_name == "fixed":
        tagger = dict(type="FixedTagger", vocabulary=vocabulary or "coco80")
    elif tagger_name == "clip":
        if args.tagger_model is None:
            raise SystemExit("--tagger clip needs --tagger-model (a full CLIP model, e.g. "
                             "openai/clip-vit-large-patch14)")
        tagger = dict(type="CLIPTagger", model=args.tagger_model, vocabulary=vocabulary or "lvis", device=device)
    else:
        if args.tagger_model is None:
            raise SystemExit("--tagger ram_plus (the training tagger) needs --tagger-model (the RAM++ checkpoint, "
                             "ram_plus_swin_large_14m.pth)")
        tagger = dict(type="RAMPlusTagger", checkpoint=args.tagger_model, device=device)
    detector = dict(type="OWLv2Detector", model=args.detector, score_threshold=args.score_threshold,
                    preprocess=args.detector_preprocess, box_format="released" if box_rule == "released" else "clean",
                    device=device)
    return BoxGenerator(tagger=tagger, detector=detector, precompute_tag_embeddings=False)
