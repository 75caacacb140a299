"""Offline tokenisation for the release's layout (data_prep/README.md): XTuner's tool, run as its command does
(`python -m xtuner.tools.process_untokenized_llava_data CONFIG --save-folder DIR`), saves the text of the config's
training dataset; the same config with `released_dataset.offline_processed_text_folder=DIR` then hands the training
loop the same batches as reading the JSON, sample for sample (ids, tokens, labels, pixels, boxes)."""
import os
import os.path as osp
import runpy
import sys

import torch
from mmengine.config import Config
from mmengine.registry import DATASETS
from torch.utils.data import DataLoader

import mg_llava.compat  # noqa: F401  (--cfg-options on a setting derives the parts again)
from mg_llava.testing.released_layout import build_released_layout

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(ROOT, "xtuner_configs", "tiny", "mg_llava_tiny_cpu_release_layout_pretrain.py")


def batches(cfg):
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    collate = cfg.train_dataloader.collate_fn.type
    return dataset, list(DataLoader(dataset, batch_size=3, shuffle=False, collate_fn=collate))


def test_training_from_the_offline_folder_reads_the_same_samples(tiny_models, tmp_path, monkeypatch):
    os.makedirs(tmp_path / "work_dirs" / "tiny_assets")
    os.symlink(osp.dirname(tiny_models["clip"]), tmp_path / "work_dirs" / "tiny_assets" / "models")
    replica = build_released_layout(str(tmp_path / "data"), "pretrain")
    monkeypatch.chdir(tmp_path)
    folder = "data/text_cache/stage1"
    monkeypatch.setattr(sys, "argv", ["process_untokenized_llava_data.py", CONFIG, "--save-folder", folder])
    runpy.run_module("xtuner.tools.process_untokenized_llava_data", run_name="__main__")
    assert osp.isfile(osp.join(folder, "dataset_info.json"))

    online_dataset, online = batches(Config.fromfile(CONFIG))
    cfg = Config.fromfile(CONFIG)
    cfg.merge_from_dict({"released_dataset.offline_processed_text_folder": folder})
    assert cfg.train_dataloader.dataset.offline_processed_text_folder == folder
    os.remove(replica["data_path"])  # nothing may read the JSON now
    offline_dataset, offline = batches(cfg)
    assert offline_dataset.source == folder
    assert online_dataset.source == "./data/train_json/pretrain_blip_allava_1266k.json"
    assert offline_dataset.modality_length == online_dataset.modality_length
    assert len(offline) == len(online) == 3  # 8 samples, batches of 3
    for a, b in zip(offline, online):
        a, b = a["data"], b["data"]
        assert a.keys() == b.keys()
        for key in a:
            if key == "boxes":
                assert len(a[key]) == len(b[key]) and all(map(torch.equal, a[key], b[key]))
            else:
                assert torch.equal(a[key], b[key]), key
    assert [row["id"] for row in offline_dataset.text_data] == [s["id"] for s in replica["samples"]]
