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

from mg_llava.config_settings import SETTINGS, derive_settings
from mg_llava.dataset import PROMPT_TEMPLATE

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG_ROOT = osp.join(ROOT, "xtuner_configs")
ALL = sorted(p for p in glob(osp.join(CONFIG_ROOT, "**", "*.py"), recursive=True) if "/_base_/" not in p)


def _id(path):
    return osp.relpath(path, CONFIG_ROOT)


def _perturbed(name, value):
    """Another value of the setting ``name`` (of the same kind), or None to skip it."""
    if name == "prompt_template":  # parsed as its import path, mg_llava.dataset.PROMPT_TEMPLATE.<name>
        return str(value) + "_changed"
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
        "vicuna_7b_v15/avg_llava_vicuna_7b_v15_anyres_multi_granularity.py")}
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
