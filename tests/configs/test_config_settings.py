"""Each config sets settings only; every dependent field is derived from them (mg_llava.config_settings, called as
``derive_settings(globals())`` at the end of each config). A hand-written copy of a derived field fails here, and
changing the LLM, the batch layout or the lr is one line."""
import ast
import copy
import os
import os.path as osp
from glob import glob

import pytest
from mmengine.config import Config

from mg_llava.config_settings import SEQUENCE_CHECK, SETTINGS, derive_settings
from mg_llava.dataset import PROMPT_TEMPLATE
from mg_llava.token_budget import config_budget, llm_positions

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG_ROOT = osp.join(ROOT, "xtuner_configs")
ALL = sorted(p for p in glob(osp.join(CONFIG_ROOT, "**", "*.py"), recursive=True) if "/_base_/" not in p)


def _id(path):
    return osp.relpath(path, CONFIG_ROOT)


def _perturbed(name, value):
    """Another value of the setting ``name`` (of the same kind), or None to skip it."""
    if name == "prompt_template":  # parsed as its import path, mg_llava.dataset.PROMPT_TEMPLATE.<name>
        return str(value) + "_changed"
    published = llm_positions()
    if name == "llm_name_or_path" and value in published:  # another published LLM, with other positions if any
        return max((hub for hub in published if hub != value), key=lambda hub: published[hub] != published[value])
    if isinstance(value, bool):
        return None if name == "object_tokens" else not value  # object_tokens removes a part (tested below)
    if isinstance(value, int):
        return value * 2 + 14  # a different low-res grid too
    if isinstance(value, float):
        return value * 3
    if isinstance(value, str) or value is None:
        return f"{value}_changed"
    if isinstance(value, (tuple, list)) and all(isinstance(v, float) for v in value):
        return type(value)(v / 2 for v in value)
    return None


def _paths(a, b, path=""):
    from mg_llava.config_settings import _differences

    return _differences(a, b, path)


def derived_fields(cfg_dict) -> dict:
    """{setting: dotted fields it reaches}, by changing each setting of a parsed config and deriving again."""
    fields = {}
    for name in SETTINGS:
        if name not in cfg_dict:
            continue
        value = _perturbed(name, cfg_dict[name])
        if value is None:
            continue
        changed = copy.deepcopy(cfg_dict)
        changed[name] = value
        fields[name] = [p for p in _paths(derive_settings(changed), cfg_dict) if p not in SETTINGS]
    return fields


@pytest.fixture(scope="module")
def parsed():
    cache = {}

    def get(path):
        if path not in cache:
            cache[path] = Config.fromfile(path).to_dict()
        return copy.deepcopy(cache[path])

    return get


@pytest.mark.parametrize("path", ALL, ids=_id)
def test_config_ends_by_deriving_its_parts(path):
    with open(path) as f:
        tree = ast.parse(f.read())
    last = tree.body[-1]
    assert isinstance(last, ast.Expr) and ast.unparse(last) == "derive_settings(globals())", \
        f"{_id(path)} must end with derive_settings(globals())"


@pytest.mark.parametrize("path", ALL, ids=_id)
def test_parts_follow_the_settings(path, parsed):
    """Deriving the parsed config again changes nothing: no part disagrees with a setting."""
    cfg = parsed(path)
    assert "derive_settings" not in cfg  # a helper, not a setting
    assert _paths(derive_settings(copy.deepcopy(cfg)), cfg) == []


def _written_fields(path):
    """Dotted fields a config file writes: ``a.b.c = ...``, ``a.b.update(c=...)`` and ``a[0].b = ...``."""

    def dotted(node):
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, ast.Attribute):
            return f"{dotted(node.value)}.{node.attr}"
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            return f"{dotted(node.value)}.{node.slice.value}"
        raise ValueError

    with open(path) as f:
        tree = ast.parse(f.read())
    written = []
    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else []
        for target in targets:
            try:
                written.append((dotted(target), node.lineno))
            except ValueError:
                pass
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "update":
            try:
                owner = dotted(node.func.value)
            except ValueError:
                continue
            written += [(f"{owner}.{k.arg}", node.lineno) for k in node.keywords if k.arg]
    return written


@pytest.mark.parametrize("path", ALL, ids=_id)
def test_no_config_writes_a_derived_field(path, parsed):
    """A hand-written copy of a derived field (``optim_wrapper.optimizer.lr = lr``) is refused: a config writes the
    setting and derive_settings does the rest."""
    derived = {field for fields in derived_fields(parsed(path)).values() for field in fields}
    assert derived, "no field follows a setting"
    copies = [f"line {line}: {field}" for field, line in _written_fields(path) if field in derived]
    assert not copies, f"{_id(path)} writes derived fields by hand: {copies}"


@pytest.mark.parametrize("path", ALL, ids=_id)
def test_each_setting_reaches_the_parts_that_use_it(path, parsed):
    """The fields each setting decides, derived (not checked as copies)."""
    fields = derived_fields(parsed(path))
    dataset = "llava_dataset" if "llava_dataset" in parsed(path) else "train_dataloader.dataset"
    expect = {
        "llm_name_or_path": {"tokenizer.pretrained_model_name_or_path", "model.llm.pretrained_model_name_or_path",
                             f"{dataset}.tokenizer.pretrained_model_name_or_path"},
        "prompt_template": {f"{dataset}.template_map_fn.template"},
        "lr": {"optim_wrapper.optimizer.lr"},
        "batch_size": {"train_dataloader.batch_size"},
        "max_epochs": {"train_cfg.max_epochs", "param_scheduler.1.end", "param_scheduler.0.end"},
        "warmup_ratio": {"param_scheduler.0.end", "param_scheduler.1.begin"},
        "save_steps": {"default_hooks.checkpoint.interval"},
        "image_mean": {"model.data_preprocessor.mean", "image_processor.image_mean",
                       f"{dataset}.image_views.image_processor.image_mean"},
        "low_res": {"model.data_preprocessor.low_res", "image_views.low_res", f"{dataset}.image_views.low_res",
                    "max_length", f"{dataset}.max_length"},
        "high_res": {"model.data_preprocessor.high_res", "image_views.high_res", f"{dataset}.image_views.high_res"},
        "context_length": {"max_length", f"{dataset}.max_length"},
    }
    for name, wanted in expect.items():
        missing = wanted - set(fields[name])
        assert not missing, f"{name} does not reach {sorted(missing)}"
    cfg = parsed(path)
    if "strategy" in cfg:
        assert {"strategy.train_micro_batch_size_per_gpu"} <= set(fields["batch_size"])
        assert {"strategy.gradient_accumulation_steps"} <= set(fields["accumulative_counts"])
    else:
        assert {"optim_wrapper.accumulative_counts"} <= set(fields["accumulative_counts"])
    if "per_device_batch_size" in cfg["train_dataloader"]["sampler"]:
        assert "train_dataloader.sampler.per_device_batch_size" in fields["accumulative_counts"]
    if "pretrained_pth" in cfg:
        assert fields["pretrained_pth"] == ["model.pretrained_pth"]
    # the text length is what the context leaves after the low-res grid
    assert cfg["max_length"] == cfg["context_length"] - (cfg["low_res"] // cfg["patch_size"]) ** 2


def test_shipped_text_lengths():
    lengths = {name: Config.fromfile(osp.join(CONFIG_ROOT, name)).max_length for name in (
        "vicuna_7b_v15/mg_llava_vicuna_7b_v15_pretrain.py", "tiny/mg_llava_tiny_cpu_pretrain.py",
        "vicuna_7b_v15/avg_llava_vicuna_7b_v15_multi_granularity.py")}
    assert list(lengths.values()) == [2048 - 576, 512, 1024]


def _leaf_config(tmp_path, base, body):
    """A config file that imports ``base`` (a config under xtuner_configs/) and sets ``body``, as a user writes one."""
    os.symlink(osp.join(CONFIG_ROOT, "_base_"), tmp_path / "_base_")
    folder, name = osp.split(base)
    os.symlink(osp.join(CONFIG_ROOT, folder), tmp_path / folder)
    (tmp_path / "mine").mkdir()
    path = tmp_path / "mine" / "config.py"
    module = f"..{folder}.{name[:-3]}"
    path.write_text("from mmengine.config import read_base\n\nwith read_base():\n"
                    f"    from {module} import *\n    from .._base_.derive import derive_settings\n\n"
                    f"{body}\nderive_settings(globals())\n")
    return str(path)


def test_llm_batch_and_lr_are_one_line_each(tmp_path):
    path = _leaf_config(tmp_path, "vicuna_7b_v15/mg_llava_vicuna_7b_v15_finetune.py", (
        "from mg_llava.dataset import PROMPT_TEMPLATE\n"
        "llm_name_or_path = 'my/llm'\nprompt_template = PROMPT_TEMPLATE.chatml\n"
        "batch_size = 2\naccumulative_counts = 3\nlr = 3e-5\nlow_res = 224\n"))
    cfg = Config.fromfile(path)
    assert cfg.tokenizer.pretrained_model_name_or_path == cfg.model.llm.pretrained_model_name_or_path == "my/llm"
    dataset = cfg.train_dataloader.dataset
    assert dataset.tokenizer.pretrained_model_name_or_path == "my/llm"
    assert dataset.template_map_fn.template == PROMPT_TEMPLATE.chatml
    assert cfg.train_dataloader.batch_size == cfg.strategy.train_micro_batch_size_per_gpu == 2
    assert cfg.strategy.gradient_accumulation_steps == 3 and cfg.train_dataloader.sampler.per_device_batch_size == 6
    assert cfg.optim_wrapper.optimizer.lr == 3e-5
    assert dataset.max_length == cfg.max_length == 2048 - 16 ** 2
    assert cfg.model.data_preprocessor.low_res == dataset.image_views.low_res == 224


def test_cfg_options_on_a_setting_reach_its_parts():
    cfg = Config.fromfile(osp.join(CONFIG_ROOT, "tiny", "mg_llava_tiny_cpu_finetune.py"))
    cfg.merge_from_dict({"lr": 0.5, "batch_size": 2, "max_epochs": 4})
    assert cfg.optim_wrapper.optimizer.lr == 0.5
    assert cfg.train_dataloader.batch_size == 2 and cfg.train_dataloader.sampler.per_device_batch_size == 2
    assert cfg.train_cfg.max_epochs == cfg.param_scheduler[1].end == 4
    # an explicit field wins over the derived one; dotted options merge as before
    cfg.merge_from_dict({"lr": 0.25, "optim_wrapper.optimizer.lr": 0.1, "default_hooks.checkpoint.interval": 3})
    assert cfg.lr == 0.25 and cfg.optim_wrapper.optimizer.lr == 0.1 and cfg.default_hooks.checkpoint.interval == 3
    # the runner writes the config out: the derived parts keep their lazy imports (a built class cannot be written)
    assert "type='mg_llava.model.ConvGateFusion'" in cfg.pretty_text


def test_cfg_options_on_a_setting_are_refused_when_the_parts_do_not_follow_it():
    cfg = Config.fromfile(osp.join(CONFIG_ROOT, "tiny", "mg_llava_tiny_cpu_finetune.py"))
    cfg.optim_wrapper.optimizer.lr = 0.125  # set by hand: the parts no longer follow the settings
    with pytest.raises(ValueError, match=r"optim_wrapper\.optimizer\.lr"):
        cfg.merge_from_dict({"lr": 0.5})


def test_cfg_options_on_a_copied_variable_are_refused_naming_the_fields_to_set():
    """``data_root`` was copied into every data path when the config was parsed: changing it would change nothing,
    so it is refused with the fields that hold its value."""
    cfg = Config.fromfile(osp.join(CONFIG_ROOT, "vicuna_7b_v15", "mg_llava_vicuna_7b_v15_finetune.py"))
    with pytest.raises(ValueError, match=r"data_root .*train_dataloader\.dataset\.datasets\.0\.data_path"):
        cfg.merge_from_dict({"data_root": "/elsewhere/"})
    video = Config.fromfile(osp.join(CONFIG_ROOT, "tiny", "mg_llava_tiny_cpu_video_finetune.py"))
    with pytest.raises(ValueError, match=r"num_frames .*video_dataset\.num_frames"):
        video.merge_from_dict({"num_frames": 4})
    # the runner's parts and dotted fields merge as before
    video.merge_from_dict({"custom_hooks": [], "video_dataset.num_frames": 4, "randomness.seed": 0})
    assert video.custom_hooks == [] and video.video_dataset.num_frames == 4


VIDEO = osp.join(CONFIG_ROOT, "vicuna_7b_v15", "mg_llava_vicuna_7b_v15_video_finetune_qlora.py")


def _sequence_checked(cfg):
    """{dotted path: dataset dict} of the datasets (a mixture's sources among them) that hold the sequence check."""
    dataset = cfg["train_dataloader"]["dataset"]
    found = {"train_dataloader.dataset": dataset}
    found.update({f"train_dataloader.dataset.datasets.{i}": s for i, s in enumerate(dataset.get("datasets") or [])})
    for name in ("llava_dataset", "video_dataset"):
        if cfg.get(name) is not None:
            found[name] = cfg[name]
    return {path: d for path, d in found.items() if any(key in d for key in SEQUENCE_CHECK)}


def _sequence_check_writes(path):
    """Lines where a config file gives the sequence check's fields a value: a variable or field of that name, or a
    keyword / dict key other than ``None`` (``max_positions=None`` asks for the derived check)."""
    with open(path) as f:
        tree = ast.parse(f.read())
    writes = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            for target in getattr(node, "targets", None) or [node.target]:
                name = target.id if isinstance(target, ast.Name) else getattr(target, "attr", None)
                if name in SEQUENCE_CHECK:
                    writes.append(f"line {node.lineno}: {ast.unparse(target)} = ...")
        pairs = []
        if isinstance(node, ast.Call):
            pairs = [(k.arg, k.value) for k in node.keywords]
        elif isinstance(node, ast.Dict):
            pairs = [(k.value, v) for k, v in zip(node.keys, node.values) if isinstance(k, ast.Constant)]
        writes += [f"line {value.lineno}: {key}={ast.unparse(value)}" for key, value in pairs
                   if key in SEQUENCE_CHECK and not (isinstance(value, ast.Constant) and value.value is None)]
    return writes


@pytest.mark.parametrize("path", ALL, ids=_id)
def test_no_config_writes_the_sequence_check(path, parsed):
    """The sequence check's positions and tokens a frame are facts of the LLM (its trained positions, the RoPE
    factor) and of the views (low_res, patch_size): a dataset asks for the check with ``max_positions=None`` and
    derive_settings fills both in; a hand-written copy (``max_positions=int(4096 * rope_factor)``) fails here."""
    writes = _sequence_check_writes(path)
    assert not writes, f"{_id(path)} writes the sequence check by hand: {writes}"
    cfg = parsed(path)
    for where, dataset in _sequence_checked(cfg).items():
        assert None not in (dataset.get("max_positions"), dataset.get("image_tokens")), f"{where} is not derived"


def test_the_sequence_check_is_derived_from_the_settings(parsed):
    """The video recipe's check follows the LLM, the RoPE factor and the views, and equals the config's budget."""
    cfg = parsed(VIDEO)
    (where, source), = _sequence_checked(cfg).items()
    assert where == "train_dataloader.dataset.datasets.1" and source["video_folder"]
    assert (source["max_positions"], source["image_tokens"]) == (8192, 576)  # Vicuna's 4096 x 2, (336 // 14) ** 2
    assert cfg["model"]["llm"]["rope_scaling"] == dict(type="linear", factor=cfg["rope_factor"])
    loaded = Config.fromfile(VIDEO)
    budget = config_budget(loaded)
    assert (source["max_positions"], source["image_tokens"]) == (budget.positions, budget.image_tokens)
    loaded.merge_from_dict({"rope_factor": 3.0})  # --cfg-options on the setting reaches the LLM and the check
    assert loaded.model.llm.rope_scaling.factor == 3.0
    assert loaded.train_dataloader.dataset.datasets[1].max_positions == config_budget(loaded).positions == 3 * 4096
    fields = derived_fields(cfg)
    for name, field in (("llm_name_or_path", "max_positions"), ("rope_factor", "max_positions"),
                        ("low_res", "image_tokens"), ("patch_size", "image_tokens")):
        assert f"{where}.{field}" in fields[name], f"{name} does not reach {field}"
    changed = copy.deepcopy(cfg)
    changed.update(llm_name_or_path="meta-llama/Meta-Llama-3-8B-Instruct", rope_factor=1.5, low_res=224)
    derived = derive_settings(changed)["train_dataloader"]["dataset"]["datasets"][1]
    assert (derived["max_positions"], derived["image_tokens"]) == (int(8192 * 1.5), 16 ** 2)
    # a dataset that does not ask for the check gets none, and an LLM whose positions are unknown is refused by name
    assert not any(key in cfg["train_dataloader"]["dataset"]["datasets"][0] for key in SEQUENCE_CHECK)
    changed["llm_name_or_path"] = "someone/unknown-llm"
    with pytest.raises(ValueError, match="someone/unknown-llm"):
        derive_settings(changed)


def test_a_hand_written_sequence_check_is_refused(tmp_path):
    """A leaf config that copies the check by hand fails the source test (the value is derived over it anyway)."""
    path = _leaf_config(tmp_path, "vicuna_7b_v15/mg_llava_vicuna_7b_v15_video_finetune_qlora.py",
                        "max_positions = int(4096 * rope_factor)\n"
                        "train_dataloader.dataset.datasets[1].update(image_tokens=(low_res // 14) ** 2)\n")
    writes = _sequence_check_writes(path)
    assert [w.split(":")[0] for w in writes] == ["line 7", "line 8"], writes
    assert Config.fromfile(path).train_dataloader.dataset.datasets[1].max_positions == 8192
