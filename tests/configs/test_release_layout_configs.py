"""Every backbone's stage configs switch to the release's data layout with one import line (a copy of the configs with
the line added parses to the release's one dataset, with the settings the recipe's sources share); the file can be
changed on the command line; the shipped tiny config on the release's layout builds its dataset from a replica."""
import os.path as osp
import shutil
from glob import glob

import pytest
from mmengine.config import Config

import mg_llava.compat  # noqa: F401  (--cfg-options on a setting derives the parts again)
from mg_llava.config_settings import SOURCE_FIELDS, derive_settings

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
BACKBONES = ("phi3_mini_4k_instruct", "vicuna_7b_v15", "vicuna_13b_v15", "llama3_8b_instruct", "yi_1_5_34b")
RELEASED = {
    "pretrain": ("./data/train_json/pretrain_blip_allava_1266k.json",
                 "./data/bbox_json/train/pretrain_blip_allava_1266k_only_box.json"),
    "finetune": ("./data/train_json/instruct_llava_allava_doc_dvqa_share_ai2d_1383k.json",
                 "./data/bbox_json/train/instruct_llava_allava_doc_dvqa_share_ai2d_1383k_only_box.json"),
}


@pytest.fixture(scope="module")
def configs(tmp_path_factory):
    """A copy of xtuner_configs/ (the line is added to the copies)."""
    copy = tmp_path_factory.mktemp("configs") / "xtuner_configs"
    shutil.copytree(osp.join(ROOT, "xtuner_configs"), copy)
    return copy


def with_released_layout(path, stage):
    """Add the one line after the recipe's import; returns the changed file's path."""
    with open(path) as f:
        text = f.read()
    recipe = f"    from .._base_.mg_llava_{stage} import *\n"
    assert text.count(recipe) == 1, path
    text = text.replace(recipe, recipe + f"    from .._base_.datasets.released_{stage} import *\n")
    changed = path.replace(".py", "_release_layout.py")
    with open(changed, "w") as f:
        f.write(text)
    return changed


@pytest.mark.parametrize("stage", ["pretrain", "finetune"])
@pytest.mark.parametrize("backbone", BACKBONES)
def test_one_line_switches_a_backbone_config_to_the_release_layout(configs, backbone, stage):
    path = str(configs / backbone / f"mg_llava_{backbone}_{stage}.py")
    mixture = Config.fromfile(path)
    released = Config.fromfile(with_released_layout(path, stage))
    dataset = released.train_dataloader.dataset
    assert dataset.type.__name__ == "LLaVABoxDataset" and "datasets" not in dataset
    assert (dataset.data_path, dataset.box_file, dataset.image_folder) == (*RELEASED[stage], "./data/")
    shared = {k: v for k, v in mixture.train_dataloader.dataset.items() if k not in SOURCE_FIELDS}
    assert {k: v for k, v in dataset.items() if k not in SOURCE_FIELDS} == shared  # tokenizer, template, limits, ...
    assert shared["on_bad_sample"] == "raise" and shared["box_cache_dir"] == "./data/boxes/cache"
    assert released.train_dataloader.sampler == mixture.train_dataloader.sampler
    assert released.to_dict()["model"] == mixture.to_dict()["model"]


def test_the_release_layout_follows_settings_and_command_line_options(configs):
    path = with_released_layout(str(configs / "llama3_8b_instruct" / "mg_llava_llama3_8b_instruct_finetune.py"),
                                "finetune")
    cfg = Config.fromfile(path)
    raw = cfg.to_dict()
    assert derive_settings(dict(raw))["train_dataloader"] == raw["train_dataloader"]  # deriving again: no change
    cfg.merge_from_dict({"released_dataset.offline_processed_text_folder": "data/text/stage2", "max_boxes": 20})
    dataset = cfg.train_dataloader.dataset
    assert dataset.offline_processed_text_folder == "data/text/stage2" and dataset.max_boxes == 20
    assert dataset.tokenizer.pretrained_model_name_or_path == "meta-llama/Meta-Llama-3-8B-Instruct"


def test_an_option_on_the_release_layout_of_a_config_without_it_is_refused():
    cfg = Config.fromfile(osp.join(ROOT, "xtuner_configs", "vicuna_7b_v15", "mg_llava_vicuna_7b_v15_pretrain.py"))
    with pytest.raises(ValueError, match="reads its recipe's sources, not the release's layout"):
        cfg.merge_from_dict({"released_dataset.data_path": "data/mine.json"})


def test_the_tiny_release_layout_config_reads_a_replica(tiny_models, tmp_path, monkeypatch):
    """The shipped tiny config builds its dataset from ./data laid out as the release (image paths relative to it)."""
    import os

    from mmengine.registry import DATASETS

    from mg_llava.testing.released_layout import build_released_layout

    os.makedirs(tmp_path / "work_dirs" / "tiny_assets")
    os.symlink(osp.dirname(tiny_models["clip"]), tmp_path / "work_dirs" / "tiny_assets" / "models")
    replica = build_released_layout(str(tmp_path / "data"), "pretrain")
    monkeypatch.chdir(tmp_path)
    cfg = Config.fromfile(osp.join(ROOT, "xtuner_configs", "tiny", "mg_llava_tiny_cpu_release_layout_pretrain.py"))
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    assert [row["id"] for row in dataset.text_data] == [s["id"] for s in replica["samples"]]
    boxed = [len(dataset[i]["boxes"][0]) > 0 for i in range(len(dataset))]
    assert boxed == [s["id"] != "allava_vflan_cap_100512" for s in replica["samples"]]  # the moon has no boxes
    assert glob(str(tmp_path / "data" / "LLaVA-Pretrain" / "images" / "*" / "*.jpg"))
