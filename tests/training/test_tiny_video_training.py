"""The tiny video stage 2 end to end: `xtuner train` on short synthetic videos, then `tools/chat.py --video` and
`tools/evaluate.py --format msvd_qa` on held-out generated videos.

The videos pan and zoom over one photograph, then cut to another; "What is shown at the start/end of the video?"
can only be answered from the frames, in order. The held-out videos are new pans and zooms, never trained on.
This short run checks that training, chat and evaluation work on videos; it does not train long enough to answer
correctly (a 40-iteration run answered "a cat" to all four held-out questions: 50 %).
"""
import importlib.util
import json
import os
import os.path as osp

import pytest

from test_tiny_training import ROOT, _check, scalars, xtuner_train

VIDEO_FINETUNE = osp.join(ROOT, "xtuner_configs", "tiny", "mg_llava_tiny_cpu_video_finetune.py")
VIDEO_PRETRAIN = osp.join(ROOT, "xtuner_configs", "tiny", "mg_llava_tiny_cpu_video_pretrain.py")
EPOCHS = 5
ITERS_PER_EPOCH = 2  # 8 video samples, batches of 4


def load_tool(name):
    spec = importlib.util.spec_from_file_location(f"tool_{name}", osp.join(ROOT, "tools", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_models, tiny_videos):
    """The tiny assets laid out as tools/build_tiny_assets.py writes them (models and videos shared)."""
    from mg_llava.testing.tiny_dataset import build_tiny_dataset

    root = tmp_path_factory.mktemp("video_ws")
    assets = root / "work_dirs" / "tiny_assets"
    assets.mkdir(parents=True)
    os.symlink(osp.dirname(tiny_models["clip"]), assets / "models")
    build_tiny_dataset(str(assets / "data"))
    for name, path in tiny_videos.items():
        os.symlink(path, assets / "data" / osp.basename(path))
    return root


@pytest.fixture(scope="module")
def trained(workspace):
    work_dir = str(workspace / "work_dirs" / "video_finetune")
    last = EPOCHS * ITERS_PER_EPOCH
    log = xtuner_train(workspace, VIDEO_FINETUNE, work_dir, "model.pretrained_pth=None",
                       f"train_cfg.max_epochs={EPOCHS}", f"default_hooks.checkpoint.interval={last}",
                       "param_scheduler.0.end=1", "param_scheduler.1.begin=1", f"param_scheduler.1.end={EPOCHS}")
    _check(log, osp.join(work_dir, f"iter_{last}.pth"))
    return work_dir, osp.join(work_dir, f"iter_{last}.pth")


def test_the_video_pair_parses_and_the_stage2_run_learns(trained):
    work_dir, _ = trained
    losses = [row["loss"] for _, row in sorted(scalars(work_dir).items())]
    assert len(losses) == EPOCHS * ITERS_PER_EPOCH
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < first - 1.0, f"loss did not fall: first {losses[:5]}, last {losses[-5:]}"


def test_chat_answers_questions_about_held_out_videos(trained, workspace, tiny_videos, capsys, monkeypatch):
    _, checkpoint = trained
    chat = load_tool("chat").main
    with open(tiny_videos["video_qa"]) as f:
        rows = [json.loads(line) for line in f]
    monkeypatch.chdir(workspace)  # the config's asset paths are relative to the working directory
    for row in (rows[0], rows[-1]):  # a start and an end question, about two held-out videos
        answers = chat(["--config", VIDEO_FINETUNE, "--checkpoint", checkpoint, "--device", "cpu",
                        "--video", osp.join(tiny_videos["video_folder"], row["video_name"]),
                        "--boxes", tiny_videos["video_qa_boxes"], "--box-id", row["question_id"],
                        "--prompt", row["question"], "--max-new-tokens", "12"])
        assert len(answers) == 1 and answers[0].strip(), row
        out = capsys.readouterr().out
        assert f"[video {osp.join(tiny_videos['video_folder'], row['video_name'])}: frames [0, 7]" in out
        assert f"ASSISTANT: {answers[0]}" in out


def test_video_qa_evaluation_scores_the_held_out_set_and_resumes(trained, workspace, tiny_videos, tmp_path,
                                                                 monkeypatch):
    _, checkpoint = trained
    evaluate = load_tool("evaluate").main
    monkeypatch.chdir(workspace)
    args = ["--config", VIDEO_FINETUNE, "--checkpoint", checkpoint, "--device", "cpu",
            "--benchmark", tiny_videos["video_qa"], "--format", "msvd_qa", "--image-folder",
            tiny_videos["video_folder"], "--boxes", tiny_videos["video_qa_boxes"], "--prompt-suffix", "",
            "--out-dir", str(tmp_path), "--batch-size", "4", "--num-workers", "0", "--max-new-tokens", "12",
            "--no-progress"]
    result = evaluate(args + ["--num-shards", "2", "--shard", "1"])
    assert result is None  # shard 0 still missing
    result = evaluate(args + ["--num-shards", "2", "--shard", "0"])
    metrics = result["metrics"]
    with open(tiny_videos["video_qa"]) as f:
        assert metrics["num_scored"] == sum(1 for line in f if line.strip())
    assert set(metrics) == {"exact_match", "normalized_match", "num_scored"}
    with open(tmp_path / "video_qa_answers.jsonl") as f:
        answers = [json.loads(line) for line in f]
    assert len(answers) == metrics["num_scored"] and set(answers[0]) == {"id", "question", "answer", "pred"}
    # a rerun finds every item predicted and recomputes the same metrics
    assert evaluate(args)["metrics"] == metrics
