"""A real config at full size, on the CPU: stage 1 -> stage 2 (LoRA) -> export -> chat -> evaluate, measured.

    python tools/rehearse.py CONFIG [--work-dir /tmp/rehearsal] [--samples 2] [--layers N] [--steps N] [--json out.json]
    make rehearsal      # Phi-3-mini-4k, full size

CONFIG is a shipped stage-1 config; its stage 2 is the config of the same name with ``finetune`` (with LoRA: the
shipped ``..._finetune_lora.py`` if there is one, else the full fine-tune config with the Vicuna-7B LoRA recipe's
adapters added by a two-line wrapper, because a full-LLM stage 2 does not fit this machine's memory: see
``tools/memory_plan.py``). Both run *unchanged* through ``xtuner train`` in a work directory that stands in for the
world they expect:

- **weights**: every hub id the config names resolves, offline, through a Hugging Face cache in the work directory
  (``HF_HOME``) holding the published architecture (``mg_llava/model/reference_configs.py``) with random weights
  (seeded); ConvNeXt-L's ``./pretrained/convnext_large_d_320/open_clip_pytorch_model.bin`` is a random state dict.
- **tokenizer**: a byte-level stand-in of the LLM family's special tokens (``mg_llava.testing.tiny_models``) padded
  with filler tokens to the LLM's vocabulary size; the chat template is the config's own.
- **data**: every source the config reads (``./data/...``, the config's own file names) is generated in its format:
  photo-sized JPEGs from ``skimage.data``, 0-100 boxes per image, conversations of random length; the first sample of
  each stage runs past ``max_length`` (truncated to it) with 100 boxes.
- **run-time settings** (``--cfg-options``): per-device batch 1, no loader workers, no sample-answer hook, a
  checkpoint at the end, the warm-up over half the (few) iterations instead of 3 %, stage 2's ``pretrained_pth`` =
  stage 1's checkpoint. DeepSpeed (ZeRO-2, bf16) runs on its CPU accelerator with gloo, one process.

``--layers N`` keeps every width but gives every tower at most N layers: the LLM and CLIP N layers, ConvNeXt-L N blocks
per stage (open_clip builds it by name with no depth to choose, so the rehearsal writes an open_clip ``local-dir:``
folder whose timm trunk is a ``local-dir:`` ``convnext_large`` with ``depths`` [N] * 4, and points both stages' configs
at it in a wrapper, which export, chat and evaluate rebuild the model from). ``--steps N`` trains N iterations per
stage instead of an epoch, the full sample first (stage 1's shuffle off; stage 2's length-grouped sampler yields the
longest first). The test runs ``--layers 2 --steps 1``. Records per phase: peak resident memory of the process tree
and of its largest process (the trainer; sampled every 0.2 s), wall time, seconds per training step (mmengine's
logged ``time``, the first step left out when there are more), the checkpoint and export sizes on disk, and the
longest LLM sequence of the generated data (text + 576 + boxes, counted by the config's own dataset in the prepare
phase) and, with ``--steps``, the longest of the samples the config's sampler yields first. Table + JSON.
"""
import argparse
import hashlib
import json
import os
import os.path as osp
import shutil
import signal
import subprocess
import sys
import threading
import time
from glob import glob

from mg_llava.launch import interpreter_env

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEFAULT_CONFIG = osp.join(ROOT, "xtuner_configs", "phi3_mini_4k_instruct", "mg_llava_phi3_mini_4k_instruct_pretrain.py")
FAMILIES = {"Phi-3-mini-4k": "phi3", "Vicuna-7B": "vicuna", "Vicuna-13B": "vicuna", "Llama-3-8B": "llama3",
            "Yi-1.5-34B": "yi"}
LORA_WRAPPER = '''# tools/rehearse.py: {finetune} with the LoRA adapters of the Vicuna-7B LoRA recipe
from mmengine.config import read_base
from peft import LoraConfig

with read_base():
    from ..{package}.{module} import *

model.update(
    freeze_llm=True,
    llm_lora=dict(type=LoraConfig, r=128, lora_alpha=256, lora_dropout=0.05, bias="none", task_type="CAUSAL_LM"),
)
'''
PHOTO_SIZES = [(640, 480), (480, 640), (640, 427), (500, 375), (612, 612), (1024, 768)]  # (W, H)
PHOTOS = ["astronaut", "chelsea", "coffee", "rocket", "camera", "hubble_deep_field"]
WORDS = ("a photo of the cat dog person car bus bird tree cup chair clock boat red blue green small large left right "
         "on in near with sky grass water street table window light shows there is and two three").split()
RUN_OPTIONS = ["train_dataloader.batch_size=1", "strategy.train_micro_batch_size_per_gpu=1",
               "train_dataloader.num_workers=0", "train_dataloader.persistent_workers=False",
               "train_dataloader.pin_memory=False", "custom_hooks=[]", "default_hooks.logger.interval=1",
               "log_processor.window_size=1", "default_hooks.checkpoint.interval=100000",
               # the warm-up is 3 % of an epoch, under one iteration of a few; half the epoch here
               "param_scheduler.0.end=0.5", "param_scheduler.1.begin=0.5"]


# ------------------------------------------------------------------------------------------- the stand-in world
def hub_folder(hf_home: str, repo_id: str) -> str:
    """The snapshot folder through which ``from_pretrained(repo_id)`` resolves offline with ``HF_HOME=hf_home``."""
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    repo = osp.join(hf_home, "hub", "models--" + repo_id.replace("/", "--"))
    os.makedirs(osp.join(repo, "refs"), exist_ok=True)
    with open(osp.join(repo, "refs", "main"), "w") as f:
        f.write(commit)
    folder = osp.join(repo, "snapshots", commit)
    os.makedirs(folder, exist_ok=True)
    return folder


def stand_in_tokenizer(family: str, vocab_size: int):
    """The family's byte-level stand-in, padded with filler tokens to ``vocab_size`` entries.

    The fillers are entries of the BPE model's vocabulary (no merge produces them), not added tokens: 32k added tokens
    cost every load of the tokenizer ~6 s (each one parsed into the added-token table), and the run loads it about
    a dozen times."""
    import tempfile

    from transformers import AutoTokenizer

    from mg_llava.testing.tiny_models import build_tokenizer

    with tempfile.TemporaryDirectory() as folder:
        base = AutoTokenizer.from_pretrained(build_tokenizer(folder, family))
        padded = osp.join(folder, "padded")
        base.save_pretrained(padded)
        with open(osp.join(padded, "tokenizer.json")) as f:
            backend = json.load(f)
        vocab, start = backend["model"]["vocab"], len(base)
        if max(vocab.values()) + 1 != start:
            raise RuntimeError(f"stand-in tokenizer of {family}: ids beyond its BPE vocabulary ({start} entries)")
        vocab.update((f"<|filler_{i}|>", start + i) for i in range(vocab_size - start))
        with open(osp.join(padded, "tokenizer.json"), "w") as f:
            json.dump(backend, f)
        tokenizer = AutoTokenizer.from_pretrained(padded)
    if len(tokenizer) != vocab_size:
        raise RuntimeError(f"stand-in tokenizer has {len(tokenizer)} entries, expected {vocab_size}")
    return tokenizer


def write_llm(hf_home: str, repo_id: str, name: str, layers, seed: int = 0) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    from mg_llava.model.reference_configs import llm_config

    config = llm_config(name)
    if layers:
        config.num_hidden_layers = layers
    tokenizer = stand_in_tokenizer(FAMILIES[name], config.vocab_size)
    config.bos_token_id, config.eos_token_id = tokenizer.bos_token_id, tokenizer.eos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    folder = hub_folder(hf_home, repo_id)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, torch_dtype=torch.bfloat16)
    model.save_pretrained(folder, safe_serialization=True, max_shard_size="5GB")
    tokenizer.save_pretrained(folder)
    parameters = sum(p.numel() for p in model.parameters())
    del model
    return dict(parameters=parameters, layers=config.num_hidden_layers, vocab=config.vocab_size)


def write_clip(hf_home: str, repo_id: str, layers, seed: int = 0) -> dict:
    import torch
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    from mg_llava.model.reference_configs import CLIP_VIT_L_336

    config = CLIPVisionConfig(**CLIP_VIT_L_336)
    if layers:
        config.num_hidden_layers = layers
    torch.manual_seed(seed)
    model = CLIPVisionModel(config)
    folder = hub_folder(hf_home, repo_id)
    model.save_pretrained(folder, safe_serialization=True)
    side = CLIP_VIT_L_336["image_size"]
    CLIPImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side},
                       image_mean=[0.48145466, 0.4578275, 0.40821073],
                       image_std=[0.26862954, 0.26130258, 0.27577711]).save_pretrained(folder)
    return dict(parameters=sum(p.numel() for p in model.parameters()), layers=config.num_hidden_layers)


def write_convnext(path: str, name: str, seed: int = 0) -> dict:
    import open_clip
    import torch

    torch.manual_seed(seed)
    model = open_clip.create_model(name, pretrained=None)
    os.makedirs(osp.dirname(path), exist_ok=True)
    torch.save(model.state_dict(), path)
    trunk = model.visual.trunk
    return dict(parameters=sum(p.numel() for p in model.visual.parameters()), model_name=name,
                trunk_parameters=sum(p.numel() for m in (trunk.stem, trunk.stages) for p in m.parameters()),
                blocks_per_stage=[len(stage.blocks) for stage in trunk.stages])


def write_shallow_convnext(folder: str, name: str, layers: int, seed: int = 0) -> dict:
    """open_clip's ``name`` with every width kept and at most ``layers`` blocks per trunk stage (and text layers),
    random weights, as an open_clip ``local-dir:`` folder (config + weights).

    Neither open_clip (a model by registry name) nor its timm trunk (``convnext_large`` by name) takes a depth, so the
    folder's open_clip config names the trunk as a timm ``local-dir:`` folder whose ``model_args`` set the depths."""
    import open_clip
    import torch

    model_cfg = open_clip.get_model_config(name)
    if model_cfg is None or not model_cfg.get("vision_cfg", {}).get("timm_model_name"):
        raise ValueError(f"open_clip model {name!r} has no timm trunk whose depth the rehearsal could cut")
    vision, text = model_cfg["vision_cfg"], model_cfg["text_cfg"]
    trunk = osp.join(folder, "timm_trunk")
    os.makedirs(trunk, exist_ok=True)
    import timm

    with torch.device("meta"):  # the published depths, cut to ``layers``
        published = timm.create_model(vision["timm_model_name"], pretrained=False).stages
    depths = [min(layers, len(stage.blocks)) for stage in published]
    with open(osp.join(trunk, "config.json"), "w") as f:
        json.dump(dict(architecture=vision["timm_model_name"], model_args=dict(depths=depths), pretrained_cfg={}), f)
    vision["timm_model_name"] = "local-dir:" + trunk
    text["layers"] = min(layers, text["layers"])  # built by open_clip, then dropped by the encoder
    with open(osp.join(folder, "open_clip_config.json"), "w") as f:
        json.dump(dict(model_cfg=model_cfg), f, indent=2)
    torch.manual_seed(seed)
    model = open_clip.create_model("local-dir:" + folder, load_weights=False)
    torch.save(model.state_dict(), osp.join(folder, "open_clip_pytorch_model.bin"))
    trunk_model = model.visual.trunk
    return dict(parameters=sum(p.numel() for p in model.visual.parameters()), model_name="local-dir:" + folder,
                trunk_parameters=sum(p.numel() for m in (trunk_model.stem, trunk_model.stages) for p in m.parameters()),
                blocks_per_stage=[len(stage.blocks) for stage in trunk_model.stages],
                widths=[info["num_chs"] for info in trunk_model.feature_info])


def sentence(rng, words: int) -> str:
    return " ".join(rng.choice(WORDS, words)).capitalize() + "."


def photo_files(folder: str, count: int, rng) -> list:
    """``count`` photo-sized JPEGs in ``folder`` (skimage.data photos resized to COCO-like sizes); [(name, W, H)]."""
    from mg_llava.testing.images import load_skimage

    os.makedirs(folder, exist_ok=True)
    files = []
    for i in range(count):
        width, height = PHOTO_SIZES[i % len(PHOTO_SIZES)]
        name = f"photo_{i:03d}.jpg"
        load_skimage(PHOTOS[i % len(PHOTOS)]).resize((width, height)).save(osp.join(folder, name), quality=90)
        files.append((name, width, height))
    return files


def box_entry(sample_id: str, width: int, height: int, count: int, rng) -> dict:
    """``count`` boxes in original pixels, each its own label (so NMS keeps them all when they overlap)."""
    corners = rng.uniform(0, [width - 16, height - 16], (count, 2))
    sides = rng.uniform(8, [width / 3, height / 3], (count, 2))
    ends = (corners + sides).clip(max=[width, height])
    boxes = [[int(a), int(b), int(c), int(d)] for (a, b), (c, d) in zip(corners, ends)]
    return dict(id=sample_id, boxes=boxes, scores=rng.uniform(0.2, 1, count).round(3).tolist(),
                labels=[f"thing {k}" for k in range(count)])


def write_source(source: dict, samples: int, max_length: int, stage: str, rng, longest: bool) -> list:
    """The data file, images and box file of one source of the config; the first sample is a full one (text past
    ``max_length``, 100 boxes) when ``longest``."""
    files = photo_files(source["image_folder"], samples, rng)
    records, entries = [], []
    for i, (image, width, height) in enumerate(files):
        sample_id = f"{osp.basename(source['data_path']).split('.')[0]}_{i}"
        full = longest and i == 0
        if stage == "pretrain":
            turns = [("<image>\n" + sentence(rng, 4), sentence(rng, 3 * max_length if full else rng.integers(8, 60)))]
        else:
            count = 3 if full else int(rng.integers(1, 4))
            turns = [(sentence(rng, int(rng.integers(5, 30))),
                      sentence(rng, max_length if full else int(rng.integers(5, 120)))) for _ in range(count)]
            turns[0] = ("<image>\n" + turns[0][0], turns[0][1])
        conversations = [m for q, a in turns for m in ({"from": "human", "value": q}, {"from": "gpt", "value": a})]
        records.append(dict(id=sample_id, image=image, conversations=conversations))
        entries.append(box_entry(sample_id, width, height, 100 if full else int(rng.integers(0, 101)), rng))
    os.makedirs(osp.dirname(source["data_path"]), exist_ok=True)
    with open(source["data_path"], "w") as f:
        json.dump(records, f)
    os.makedirs(osp.dirname(source["box_file"]), exist_ok=True)
    with open(source["box_file"], "w") as f:
        json.dump(entries, f)
    return entries


def sources(cfg) -> list:
    dataset = cfg.train_dataloader.dataset
    return [dict(dataset, **s) for s in (dataset.get("datasets") or [dataset])]


def sequences(cfg, steps=None) -> dict:
    """The LLM sequences (text + 576 + boxes, and their parts) of the config's samples, counted through its own
    dataset: ``longest`` among all; with ``steps``, ``trained`` = the longest among the first ``steps`` samples its
    sampler yields (batch 1; the run's ``stage_options`` applied to ``cfg``), i.e. what a ``--steps`` run trains."""
    from mmengine.registry import DATA_SAMPLERS
    from xtuner.registry import BUILDER
    from xtuner.utils import IMAGE_TOKEN_INDEX

    from mg_llava.dataset import VIDEO_TOKEN_INDEX
    from mg_llava.token_budget import config_budget, sequence_length

    tokens = config_budget(cfg).image_tokens
    dataset = BUILDER.build(cfg.train_dataloader.dataset)
    counted = []
    for i in range(len(dataset)):
        item = dataset[i]
        boxes = sum(len(b) for b in item["boxes"])
        images = len(item["boxes"])
        ids = item["input_ids"]
        placeholders = int(((ids == IMAGE_TOKEN_INDEX) | (ids == VIDEO_TOKEN_INDEX)).sum())
        counted.append(dict(length=sequence_length(len(ids), placeholders, images, tokens, boxes), text=len(ids),
                            images=images, boxes=boxes, id=item["id"]))
    result = dict(longest=max(counted, key=lambda c: c["length"]))
    if steps:
        sampler = dict(cfg.train_dataloader.sampler, dataset=dataset)
        if "per_device_batch_size" in sampler:
            sampler["per_device_batch_size"] = 1
        order = list(DATA_SAMPLERS.build(sampler))[:steps]
        result["trained"] = max((counted[i] for i in order), key=lambda c: c["length"])
    return result


def stage_options(cfg, steps) -> list:
    """``--cfg-options`` of a ``--steps`` run: ``steps`` iterations, each an optimizer step (no gradient
    accumulation: one iteration of an accumulation of 2 would update nothing), the first samples in the data's order
    (stage 1's shuffle off; XTuner's length-grouped sampler already yields the longest first), so the full sample is
    trained."""
    if not steps:
        return []
    options = [f"train_cfg.max_iters={steps}", "train_cfg.max_epochs=None"]
    if "gradient_accumulation_steps" in cfg.get("strategy", {}):
        options.append("strategy.gradient_accumulation_steps=1")
    if "shuffle" in cfg.train_dataloader.sampler:
        options.append("train_dataloader.sampler.shuffle=False")
    return options


# --------------------------------------------------------------------------------------------------- measuring
class PeakMemory:
    """The peak resident set of a process and its descendants, sampled every ``interval`` seconds."""

    def __init__(self, pid: int, interval: float = 0.2):
        self.pid, self.interval, self._stop = pid, interval, threading.Event()
        self.peak = self.largest = 0  # the tree's sum; the largest single process (the trainer, without the CLI)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        import psutil

        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self._stop.is_set():
            sizes = []
            try:
                for process in [root] + root.children(recursive=True):
                    try:
                        sizes.append(process.memory_info().rss)
                    except psutil.NoSuchProcess:
                        pass
            except psutil.NoSuchProcess:
                break
            self.peak = max(self.peak, sum(sizes))
            self.largest = max([self.largest] + sizes)
            self._stop.wait(self.interval)

    def stop(self):
        self._stop.set()
        self._thread.join()
        return self.peak, self.largest


def run_phase(name: str, command: list, cwd: str, env: dict, log_dir: str, timeout=None) -> dict:
    log = osp.join(log_dir, f"{name}.log")
    start = time.perf_counter()
    with open(log, "w") as out:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # its own group: a timeout stops the trainer too
        meter = PeakMemory(process.pid)
        try:
            returncode = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise RuntimeError(f"phase {name} ran past {timeout} s; see {log}")
        finally:
            peak, largest = meter.stop()
    result = dict(phase=name, seconds=time.perf_counter() - start, peak_rss_gb=peak / 1e9,
                  largest_process_rss_gb=largest / 1e9, log=log, command=" ".join(command))
    if returncode != 0:
        with open(log) as f:
            tail = f.read()[-3000:]
        raise RuntimeError(f"phase {name} failed (exit {returncode}); end of {log}:\n{tail}")
    return result


def size_on_disk(path: str) -> int:
    if osp.isfile(path):
        return osp.getsize(path)
    return sum(osp.getsize(p) for p in glob(osp.join(path, "**", "*"), recursive=True) if osp.isfile(p))


def training_figures(work_dir: str) -> dict:
    rows = []
    for path in sorted(glob(osp.join(work_dir, "*", "vis_data", "scalars.json"))):
        with open(path) as f:
            rows += [json.loads(line) for line in f if '"loss"' in line]
    times = [r["time"] for r in rows if "time" in r]
    timed = times[1:] if len(times) > 1 else times
    with open(osp.join(work_dir, "last_checkpoint")) as f:
        checkpoint = f.read().strip()
    steps = None
    states = osp.join(checkpoint, "mp_rank_00_model_states.pt")
    if osp.isfile(states):  # a DeepSpeed checkpoint counts the optimizer steps it took
        import torch

        steps = torch.load(states, map_location="cpu", weights_only=False).get("global_steps")
    return dict(iterations=len(rows), losses=[r["loss"] for r in rows], optimizer_steps=steps,
                seconds_per_step=sum(timed) / len(timed) if timed else None, checkpoint=checkpoint,
                checkpoint_gb=size_on_disk(checkpoint) / 1e9)


def stage2_config(stage1: str, configs_copy: str) -> str:
    """The LoRA stage 2 belonging to ``stage1`` (see the module docstring), as a path inside ``configs_copy``."""
    relative = osp.relpath(stage1, osp.join(ROOT, "xtuner_configs"))
    package, name = osp.split(relative)
    finetune = name.replace("_pretrain", "_finetune")
    lora = finetune.replace(".py", "_lora.py")
    if osp.isfile(osp.join(configs_copy, package, lora)):
        return osp.join(configs_copy, package, lora)
    if not osp.isfile(osp.join(configs_copy, package, finetune)):
        raise FileNotFoundError(f"no stage-2 config {finetune} beside {stage1}")
    wrapper = osp.join(configs_copy, "rehearsal", finetune.replace(".py", "_lora_rehearsal.py"))
    os.makedirs(osp.dirname(wrapper), exist_ok=True)
    with open(wrapper, "w") as f:
        f.write(LORA_WRAPPER.format(finetune=f"{package}/{finetune}", package=package, module=finetune[:-3]))
    return wrapper


def with_convnext(config: str, configs_copy: str, model_name: str) -> str:
    """``config`` with its ConvNeXt replaced by the open_clip ``local-dir:`` folder ``model_name`` (``--layers``),
    in the config file itself, since export, chat and evaluate rebuild the model from the file: lines added to the
    rehearsal's own wrapper, or a new wrapper beside it."""
    override = ("\n# tools/rehearse.py --layers: ConvNeXt-L at every width, fewer blocks per stage (the folder holds"
                f" its weights)\nmodel.visual_encoder_aux.update(model_name={model_name!r}, pretrained=None)\n")
    folder = osp.join(configs_copy, "rehearsal")
    if osp.dirname(config) == folder:
        with open(config, "a") as f:
            f.write(override)
        return config
    package, name = osp.split(osp.relpath(config, configs_copy))
    wrapper = osp.join(folder, name.replace(".py", "_rehearsal.py"))
    os.makedirs(folder, exist_ok=True)
    with open(wrapper, "w") as f:
        f.write(f"# tools/rehearse.py: {package}/{name}\nfrom mmengine.config import read_base\n\nwith read_base():\n"
                f"    from ..{package}.{name[:-3]} import *\n{override}")
    return wrapper


# ------------------------------------------------------------------------------------------------------ the run
def prepare(config: str, work: str, samples: int, layers, seed: int, steps=None) -> dict:
    """Weights, tokenizer and data for ``config`` and its stage 2 under ``work``, and the data's sequences counted
    (:func:`sequences`; ``HF_HOME`` must be ``work/hf_home`` when this process started: the hub's cache is read at
    import); returns what was written."""
    import numpy as np
    from mmengine.config import Config

    from mg_llava.model.reference_configs import LLMS

    rng = np.random.default_rng(seed)
    hf_home = osp.join(work, "hf_home")
    configs_copy = osp.join(work, "xtuner_configs")
    shutil.copytree(osp.join(ROOT, "xtuner_configs"), configs_copy, dirs_exist_ok=True)
    stage1 = osp.join(configs_copy, osp.relpath(config, osp.join(ROOT, "xtuner_configs")))
    stage2 = stage2_config(config, configs_copy)
    cfg1, cfg2 = Config.fromfile(stage1), Config.fromfile(stage2)
    hub_llms = {hub: name for name, (_, _, hub) in LLMS.items()}
    llm_id = cfg1.model.llm.pretrained_model_name_or_path
    if llm_id not in hub_llms:
        raise ValueError(f"{config}: LLM {llm_id!r} is not a published one ({sorted(hub_llms)})")
    written = dict(llm=write_llm(hf_home, llm_id, hub_llms[llm_id], layers, seed),
                   clip=write_clip(hf_home, cfg1.model.visual_encoder.pretrained_model_name_or_path, layers, seed))
    aux = cfg1.model.get("visual_encoder_aux")
    if aux is not None and layers:
        written["convnext"] = write_shallow_convnext(osp.join(work, "convnext_rehearsal"), aux.model_name, layers, seed)
        stage1, stage2 = (with_convnext(c, configs_copy, written["convnext"]["model_name"]) for c in (stage1, stage2))
    elif aux is not None:
        written["convnext"] = write_convnext(osp.join(work, aux.pretrained), aux.model_name, seed)
    for stage, cfg in (("pretrain", cfg1), ("finetune", cfg2)):
        for i, source in enumerate(sources(cfg)):
            source = {k: osp.join(work, source[k]) for k in ("data_path", "image_folder", "box_file")}
            write_source(source, samples, cfg.max_length, stage, rng, longest=i == 0)
    counted, options = {}, {}
    for phase, cfg in (("stage1", cfg1), ("stage2_lora", cfg2)):
        options[phase] = stage_options(cfg, steps)
        if "train_dataloader.sampler.shuffle=False" in options[phase]:
            cfg.train_dataloader.sampler.shuffle = False  # as the run will have it
        counted[phase] = sequences(cfg, steps)
    return dict(written, stage1_config=stage1, stage2_config=stage2, hf_home=hf_home, sequences=counted,
                stage_options=options)


def evaluation_files(work: str, rng) -> dict:
    """A two-item VQA benchmark (JSONL) with its images and a box file keyed by question_id."""
    folder = osp.join(work, "eval")
    files = photo_files(osp.join(folder, "images"), 2, rng)
    items = [dict(question_id=i, image=name, question="What is in the image?", answers=["cat"])
             for i, (name, _, _) in enumerate(files)]
    with open(osp.join(folder, "vqa.jsonl"), "w") as f:
        f.writelines(json.dumps(item) + "\n" for item in items)
    with open(osp.join(folder, "boxes.json"), "w") as f:
        json.dump([box_entry(str(i), w, h, 20, rng) for i, (_, w, h) in enumerate(files)], f)
    return dict(benchmark=osp.join(folder, "vqa.jsonl"), images=osp.join(folder, "images"),
                boxes=osp.join(folder, "boxes.json"), image=osp.join(folder, "images", files[0][0]))


def rehearse(config: str, work: str, samples: int = 2, layers=None, seed: int = 0, threads=None,
             timeout=None, record=None, steps=None) -> dict:
    """The whole chain (see the module docstring); ``timeout``: seconds each phase may take; ``record``: a JSON
    file rewritten after every phase (a run stopped early keeps the figures of the phases it finished); ``steps``:
    iterations per stage (default: one epoch of the generated data)."""
    import numpy as np

    work = osp.abspath(work)
    os.makedirs(work, exist_ok=True)
    logs = osp.join(work, "logs")
    os.makedirs(logs, exist_ok=True)
    start = time.perf_counter()
    env = dict(os.environ, HF_HOME=osp.join(work, "hf_home"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", PYTHONPATH=os.pathsep.join(
                   [ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    env.pop("NPROC_PER_NODE", None)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    python = sys.executable
    # the stand-in world is written by a process of its own, so the models it builds leave no memory behind here
    phases = [run_phase("prepare", [python, osp.abspath(__file__), config, "--work-dir", work, "--samples",
                                    str(samples), "--seed", str(seed), "--prepare-only"]
                        + (["--layers", str(layers)] if layers else [])
                        + (["--steps", str(steps)] if steps else []), work, env, logs, timeout)]
    with open(osp.join(work, "prepared.json")) as f:
        prepared = json.load(f)

    def finished(phase: dict):
        counted = prepared["sequences"].get(phase["phase"])
        if counted:  # counted by the prepare phase, through the config's own dataset and sampler
            phase["longest_sequence"] = counted["longest"]
            if "trained" in counted:
                phase["trained_sequence"] = counted["trained"]
        phases.append(phase)
        if record:
            with open(record, "w") as f:
                json.dump(dict(config=osp.relpath(config, ROOT), work_dir=work, layers=layers or "published",
                               samples=samples, steps=steps, prepared=prepared, phases=phases, finished=False), f,
                          indent=2)

    env = interpreter_env(env)  # `xtuner train` and what it re-launches: this interpreter's environment
    if shutil.which("xtuner", path=env.get("PATH")) is None:
        raise FileNotFoundError("no `xtuner` command on PATH (activate the environment that has XTuner)")
    xtuner = ["xtuner", "train"]

    run_options = list(RUN_OPTIONS)
    stage1_dir = osp.join(work, "work_dirs", "stage1")
    phase = run_phase("stage1", [*xtuner, prepared["stage1_config"], "--work-dir", stage1_dir, "--cfg-options",
                                 *run_options, *prepared["stage_options"]["stage1"]], work, env, logs, timeout)
    finished(dict(phase, **training_figures(stage1_dir)))

    stage2_dir = osp.join(work, "work_dirs", "stage2")
    stage2_options = run_options + [f"model.pretrained_pth={phases[-1]['checkpoint']}",
                                    "train_dataloader.sampler.per_device_batch_size=1",
                                    *prepared["stage_options"]["stage2_lora"]]
    phase = run_phase("stage2_lora", [*xtuner, prepared["stage2_config"], "--work-dir", stage2_dir, "--cfg-options",
                                      *stage2_options], work, env, logs, timeout)
    finished(dict(phase, **training_figures(stage2_dir)))

    export_dir = osp.join(work, "export")
    shutil.rmtree(export_dir, ignore_errors=True)
    phase = run_phase("export", [python, osp.join(ROOT, "tools", "export.py"), "--config", prepared["stage2_config"],
                                 "--checkpoint", phases[-1]["checkpoint"], "--out-dir", export_dir,
                                 "--save-dtype", "bfloat16"], work, env, logs, timeout)
    finished(dict(phase, export_gb=size_on_disk(export_dir) / 1e9))

    evaluation = evaluation_files(work, np.random.default_rng(seed + 1))
    phase = run_phase("chat", [python, osp.join(ROOT, "tools", "chat.py"), "--checkpoint", export_dir, "--device",
                               "cpu", "--image", evaluation["image"], "--boxes", evaluation["boxes"], "--box-id", "0",
                               "--prompt", "What is in the image?", "--max-new-tokens", "8"], work, env, logs,
                      timeout)
    with open(phase["log"]) as f:
        phase["answer_log_tail"] = f.read()[-400:]
    finished(phase)

    eval_dir = osp.join(work, "eval", "out")
    shutil.rmtree(eval_dir, ignore_errors=True)
    phase = run_phase("evaluate", [python, osp.join(ROOT, "tools", "evaluate.py"), "--checkpoint", export_dir,
                                   "--device", "cpu", "--benchmark", evaluation["benchmark"], "--format", "vqa",
                                   "--image-folder", evaluation["images"], "--boxes", evaluation["boxes"],
                                   "--out-dir", eval_dir, "--batch-size", "1", "--num-workers", "0",
                                   "--max-new-tokens", "8", "--no-progress"], work, env, logs, timeout)
    with open(osp.join(eval_dir, "metrics.json")) as f:
        phase["metrics"] = json.load(f)
    finished(phase)

    return dict(config=osp.relpath(config, ROOT), work_dir=work, layers=layers or "published", samples=samples,
                steps=steps, prepared={k: v for k, v in prepared.items() if k != "hf_home"}, phases=phases,
                total_seconds=time.perf_counter() - start, finished=True)


def print_table(result: dict):
    print(f"\n{result['config']} ({'full size' if result['layers'] == 'published' else str(result['layers']) + ' layers per tower'}), "
          f"LLM {result['prepared']['llm']['parameters'] / 1e9:.2f}B parameters")
    print(f"  {'phase':<13}{'peak RSS GB':>12}{'wall s':>9}{'s/step':>9}{'iters':>6}{'ckpt GB':>9}{'export GB':>10}"
          f"{'longest seq':>12}")
    for p in result["phases"]:
        step = p.get("seconds_per_step")
        seq = p.get("longest_sequence", {}).get("length")
        print(f"  {p['phase']:<13}{p.get('peak_rss_gb', float('nan')):>12.2f}{p['seconds']:>9.0f}"
              f"{step if step is not None else float('nan'):>9.1f}{p.get('iterations', ''):>6}"
              f"{p.get('checkpoint_gb', float('nan')):>9.3f}{p.get('export_gb', float('nan')):>10.2f}"
              f"{seq if seq is not None else '':>12}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", nargs="?", default=DEFAULT_CONFIG, help="a shipped stage-1 config")
    parser.add_argument("--work-dir", default=osp.join(ROOT, "work_dirs", "rehearsal"))
    parser.add_argument("--samples", type=int, default=2, help="samples per data source")
    parser.add_argument("--layers", type=int, help="LLM and CLIP layers (default: the published depth)")
    parser.add_argument("--steps", type=int, help="iterations per stage, the full-length sample first "
                                                    "(default: an epoch of the generated data)")
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS of the phases")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the record here")
    parser.add_argument("--timeout", type=int, help="seconds each phase may take")
    parser.add_argument("--prepare-only", action="store_true", help=argparse.SUPPRESS)  # used by the run itself
    args = parser.parse_args(argv)
    if args.prepare_only:
        prepared = prepare(osp.abspath(args.config), osp.abspath(args.work_dir), args.samples, args.layers, args.seed,
                           args.steps)
        with open(osp.join(args.work_dir, "prepared.json"), "w") as f:
            json.dump(prepared, f)
        return None
    result = rehearse(osp.abspath(args.config), args.work_dir, args.samples, args.layers, args.seed, args.threads,
                      args.timeout, args.json, args.steps)
    print_table(result)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
