"""tools/check_data.py on a generated set with one of each planted fault (mg_llava.testing.faulty_dataset): it finds
exactly the planted ones, writes its report and histograms, and its clean files load through the training dataset
with no bad sample and train through `xtuner train`."""
import json
import os
import os.path as osp
import subprocess
import sys
from contextlib import contextmanager

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, "tools"))
import check_data  # noqa: E402

from mg_llava.testing.faulty_dataset import FAULTS, build_faulty_dataset  # noqa: E402

PRETRAIN = osp.join(ROOT, "xtuner_configs", "tiny", "mg_llava_tiny_cpu_pretrain.py")
MAX_LENGTH = 512  # the tiny configs' text length
NUM_SAMPLES = 300


@contextmanager
def working_directory(path):
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_models):
    """A working directory with the tiny models where the tiny configs look for them, and the faulty set."""
    root = tmp_path_factory.mktemp("check_data")
    (root / "work_dirs" / "tiny_assets").mkdir(parents=True)
    os.symlink(osp.dirname(tiny_models["clip"]), root / "work_dirs" / "tiny_assets" / "models")
    faulty = build_faulty_dataset(str(root / "faulty"), NUM_SAMPLES, MAX_LENGTH)
    return root, faulty


def data_options(paths):
    return [f"data_path={paths['data_path']}", f"image_folder={paths['image_folder']}",
            f"box_file={paths['box_file']}"]


def run_check(root, paths, name, *extra):
    out = str(root / name)
    with working_directory(root):
        code = check_data.main([PRETRAIN, "--workers", "2", "--out", out, *extra, "--cfg-options",
                                *data_options(paths)])
    with open(osp.join(out, "report.json")) as f:
        return code, json.load(f)


@pytest.fixture(scope="module")
def checked(workspace):
    root, faulty = workspace
    clean = str(root / "clean")
    code, report = run_check(root, faulty, "report", "--write-clean", clean, "--accept", "truncated")
    return code, report, clean


def test_finds_exactly_the_planted_faults(workspace, checked):
    _, faulty = workspace
    code, report, _ = checked
    found = {}
    for problem in report["problem_list"]:
        found.setdefault(problem["kind"], set()).add(problem["sample_id"])
    expected = {kind: {faulty["faults"][fault]} for fault, kind in FAULTS.items()}
    expected["orphan_box_entry"] = {faulty["orphan_id"]}
    assert found == expected
    assert code == 1 and not report["ok"] and set(report["not_accepted"]) == set(expected) - {"truncated"}
    assert report["problems"]["truncated"]["accepted"]
    # the wrong-folder finding says where the file is
    wrong = next(p for p in report["problem_list"] if p["kind"] == "wrong_folder")
    assert wrong["detail"].endswith(osp.join("coco", "train2017", "moved.jpg"))
    assert report["problems"]["missing_media"]["first"][0].startswith(
        osp.join(faulty["image_folder"], "coco/train2017/never_downloaded.jpg"))


def test_report_counts_and_histograms(workspace, checked):
    _, faulty = workspace
    _, report, _ = checked
    lost = sum(kind != "truncated" for kind in FAULTS.values())  # every planted fault but the cut one drops a sample
    assert report["samples"] == faulty["num_samples"]
    assert report["samples_kept_by_training"] == faulty["num_samples"] - lost
    assert report["clean"]["samples_left_out"] == lost  # the truncated sample stays (accepted)
    assert report["modality"]["read"] == dict(text=faulty["num_text"], image=faulty["num_images"], video=0)
    assert report["modality"]["kept"]["image"] == faulty["num_images"] - lost
    cut = report["truncation"]
    assert cut["samples_over_max_length"] == 2 and cut["samples_losing_whole_answer"] == 1 and cut["tokens_cut"] > 0
    tokens = report["llm_tokens"]
    assert tokens["count"] == report["samples_kept_by_training"] and tokens["max"] <= MAX_LENGTH - 1 + 16 + 5
    assert report["image_sizes"]["files"] == faulty["num_images"]
    assert report["image_sizes"]["unreadable_files"] == 4  # missing, truncated, not an image, wrong folder
    boxes = report["boxes_per_image"]
    assert boxes["in_box_file"]["max"] == 5 and boxes["in_box_file"]["min"] == 0  # the no-box sample
    for path in report["figures"].values():
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n", path
    plan = report["estimate"]
    assert [row["gpus"] for row in plan["per_gpus"]] == [1, 8, 16, 32, 64]
    assert plan["per_gpus"][0]["iterations"] == 10 * -(-report["samples_kept_by_training"] // 4)  # 10 epochs, batch 4
    assert plan["per_gpus"][0]["hours"] is None and "no step-time figure" in plan["assumptions"][1]


def test_step_figure_gives_the_time(workspace, checked, tmp_path):
    from mmengine.config import Config

    from mg_llava.data_check.estimate import estimate

    step = tmp_path / "step.json"
    step.write_text(json.dumps(dict(step_seconds=2.0, batch_size=8, tokens_per_step=8 * 100, device_name="GPU")))
    cfg = Config(dict(train_dataloader=dict(batch_size=4), optim_wrapper=dict(accumulative_counts=2),
                      train_cfg=dict(max_epochs=1)))
    plan = estimate(cfg, 1000, 50.0, [1, 10], str(step))
    one, ten = plan["per_gpus"]
    assert plan["seconds_per_iteration"] == pytest.approx(2.0 * 4 / 8 * 50 / 100)  # half the samples, half the tokens
    assert one["iterations"] == 250 and one["optimizer_steps"] == 125 and one["global_batch"] == 8
    assert one["hours"] == pytest.approx(250 * 0.5 / 3600) and ten["iterations"] == 25


def test_clean_files_pass_the_check_and_load_through_the_training_dataset(workspace, checked):
    """The clean files keep the accepted truncated sample and nothing else the check found; the check passes them
    with the same --accept."""
    root, faulty = workspace
    _, report, clean = checked
    clean_paths = dict(faulty, data_path=report["clean"]["data"][0], box_file=report["clean"]["boxes"][0])
    code, again = run_check(root, clean_paths, "report_clean", "--accept", "truncated")
    assert code == 0 and again["ok"] and again["samples"] == report["samples_kept_by_training"]
    found = [(p["kind"], p["sample_id"]) for p in again["problem_list"]]
    assert found == [("truncated", faulty["faults"]["over_long"])]

    from mmengine.config import Config

    from mg_llava.registry import build

    with working_directory(root):
        cfg = Config.fromfile(PRETRAIN)
        cfg.merge_from_dict(dict(o.split("=", 1) for o in data_options(clean_paths)))
        dataset = build(dict(cfg.train_dataloader.dataset, on_bad_sample="raise"))  # raises on any bad sample
        assert len(dataset) == again["samples"]
        for index in range(len(dataset)):
            dataset[index]
        assert dataset.num_replaced == 0


def test_clean_files_train(workspace, checked):
    """Two iterations of `xtuner train` (the command XTuner's CLI starts) on the clean files."""
    import importlib.util

    root, faulty = workspace
    _, report, _ = checked
    train_py = osp.join(importlib.util.find_spec("xtuner").submodule_search_locations[0], "tools", "train.py")
    work_dir = str(root / "train")
    options = data_options(dict(faulty, data_path=report["clean"]["data"][0], box_file=report["clean"]["boxes"][0]))
    options += ["train_cfg.max_epochs=None", "train_cfg.max_iters=2", "custom_hooks=[]",
                "train_dataloader.dataset.on_bad_sample=raise"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    run = subprocess.run([sys.executable, train_py, PRETRAIN, "--work-dir", work_dir, "--cfg-options", *options],
                         cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert osp.exists(osp.join(work_dir, "iter_2.pth")), (run.stdout + run.stderr)[-4000:]


def test_videos_in_a_mixture(tmp_path, tiny_models, tiny_videos):
    """The tiny video config (a mixture: image captions + video captions) with one video missing and one that is not
    a video: exactly those two are found, and every other video's sampled frames are decoded."""
    from mg_llava.testing.tiny_dataset import build_tiny_dataset

    data = tmp_path / "work_dirs" / "tiny_assets" / "data"
    data.mkdir(parents=True)
    os.symlink(osp.dirname(tiny_models["clip"]), data.parent / "models")
    build_tiny_dataset(str(data))
    # under the names the tiny video config reads (its own data are the frame-order clips)
    (data / "order_videos").mkdir()
    for name in os.listdir(tiny_videos["video_folder"]):
        os.symlink(osp.join(tiny_videos["video_folder"], name), data / "order_videos" / name)
    (data / "order_videos" / "broken.mp4").write_text("not a video\n")
    with open(tiny_videos["video_pretrain"]) as f:
        samples = json.load(f)
    samples[0]["video"], samples[1]["video"] = "gone.mp4", "broken.mp4"
    (data / "order_pretrain.json").write_text(json.dumps(samples))
    os.symlink(tiny_videos["video_boxes"], data / "order_boxes.json")

    config = osp.join(ROOT, "xtuner_configs", "tiny", "mg_llava_tiny_cpu_video_pretrain.py")
    with working_directory(tmp_path):
        code = check_data.main([config, "--workers", "2", "--out", str(tmp_path / "report")])
    with open(tmp_path / "report" / "report.json") as f:
        report = json.load(f)
    found = {(p["kind"], p["sample_id"]) for p in report["problem_list"]}
    assert found == {("missing_media", samples[0]["id"]), ("corrupt_media", samples[1]["id"])} and code == 1
    assert len(report["datasets"]) == 2
    assert report["modality"]["read"] == dict(text=0, image=8, video=len(samples))
    frames = 2 * (len(samples) - 2)  # num_frames = 2 in the tiny video config
    assert report["image_sizes"]["width"]["count"] == 8 + frames
    assert report["boxes_per_image"]["in_box_file"]["count"] == 8 + frames
