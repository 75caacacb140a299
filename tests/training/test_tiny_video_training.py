"""The tiny video pair end to end, in the paper's recipe shape: `xtuner train` video stage 1 (image + clip captions;
the fusion and projectors train) and stage 2 from its weights (the LLM trains in full) on the frame-order clips, then
`tools/evaluate.py --format msvd_qa` and `tools/chat.py --video` on held-out clips.

The task (mg_llava/testing/frame_order_dataset.py): two-photograph clips over every ordered pair of four photographs,
each asked "Which photograph comes first in the video?" or "... last ...". Both photographs are in every clip and the
question names one of them, so a model blind to the frames' order answers exactly half of the held-out questions
(tests/dataset/test_frame_order_dataset.py); MIN_ACCURACY asks for far more (see there). The same held-out clips with
their frames reversed, asked the same questions, must get the other photograph: the order reaches the LLM.

The training log carries the visual tokens' mean norm next to the text embeddings' (mg_llava/model/token_norms.py) at
every iteration of both stages; the test holds them within MAX_NORM_RATIO of each other.
"""
import importlib.util
import json
import os
import os.path as osp

import pytest

from test_tiny_training import MAX_NORM_RATIO, ROOT, _check, load_weights, norm_ratios, scalars, xtuner_train

VIDEO_FINETUNE = osp.join(ROOT, "xtuner_configs", "tiny", "mg_llava_tiny_cpu_video_finetune.py")
VIDEO_PRETRAIN = osp.join(ROOT, "xtuner_configs", "tiny", "mg_llava_tiny_cpu_video_pretrain.py")
STAGE1_ITERS = 20  # the config's one epoch: 8 image + 300 clip captions, batches of 16
STAGE2_ITERS = 228  # the config's 6 epochs of 300 clips, batches of 8
SEED = ["randomness.seed=0"]
# Held-out questions answered right, percent; an order-blind model gets 50. 24 questions: an order-blind model
# reaches 85 % (21 of 24) with probability 1.4e-4 (binomial, p = 0.5).
MIN_ACCURACY = 85.0
# The reversed clips, answered with the other photograph ("mostly flips"): an order-blind model gets 50 % here too,
# and reaches 75 % (18 of 24) with probability 0.011.
MIN_FLIPPED = 75.0


def load_tool(name):
    spec = importlib.util.spec_from_file_location(f"tool_{name}", osp.join(ROOT, "tools", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_models, frame_order_clips):
    """The tiny assets laid out as tools/build_tiny_assets.py writes them (models and clips shared)."""
    from mg_llava.testing.tiny_dataset import build_tiny_dataset

    root = tmp_path_factory.mktemp("video_ws")
    assets = root / "work_dirs" / "tiny_assets"
    assets.mkdir(parents=True)
    os.symlink(osp.dirname(tiny_models["clip"]), assets / "models")
    build_tiny_dataset(str(assets / "data"))
    for path in frame_order_clips.values():
        os.symlink(path, assets / "data" / osp.basename(path))
    return root


@pytest.fixture(scope="module")
def stage1(workspace):
    work_dir = str(workspace / "work_dirs" / "video_pretrain")
    log = xtuner_train(workspace, VIDEO_PRETRAIN, work_dir, "custom_hooks=[]", *SEED)
    checkpoint = osp.join(work_dir, f"iter_{STAGE1_ITERS}.pth")
    _check(log, checkpoint)
    return work_dir, checkpoint


@pytest.fixture(scope="module")
def trained(workspace, stage1):
    work_dir = str(workspace / "work_dirs" / "video_finetune")
    log = xtuner_train(workspace, VIDEO_FINETUNE, work_dir, f"model.pretrained_pth={stage1[1]}", "custom_hooks=[]",
                       *SEED)
    _check(log, osp.join(work_dir, f"iter_{STAGE2_ITERS}.pth"))
    with open(log) as f:
        assert f"Loaded 20 trainable tensors from {stage1[1]}" in f.read()
    return work_dir, osp.join(work_dir, f"iter_{STAGE2_ITERS}.pth")


def rows(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def test_video_stage1_trains_the_fusion_and_projectors_on_images_and_videos(stage1):
    work_dir, checkpoint = stage1
    assert {key.split(".")[0] for key in load_weights(checkpoint)} == {"fuse_module", "projector", "bbox_projector"}
    losses = [row["loss"] for _, row in sorted(scalars(work_dir).items())]
    assert len(losses) == STAGE1_ITERS and all(loss == loss and loss < 20 for loss in losses)


def test_the_video_stage2_run_trains_the_llm_and_learns(trained):
    work_dir, checkpoint = trained
    assert any(key.startswith("llm.") for key in load_weights(checkpoint))  # full fine-tuning, as the paper
    losses = [row["loss"] for _, row in sorted(scalars(work_dir).items())]
    assert len(losses) == STAGE2_ITERS
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < first / 4, f"loss did not fall: first {losses[:5]}, last {losses[-5:]}"


def test_visual_tokens_stay_within_a_factor_of_the_text_embeddings(stage1, trained):
    for work_dir, iters in ((stage1[0], STAGE1_ITERS), (trained[0], STAGE2_ITERS)):
        ratios = norm_ratios(work_dir)
        assert len(ratios) == iters and max(ratios.values()) < MAX_NORM_RATIO, {i: round(r, 1) for i, r in
                                                                                ratios.items()}


@pytest.fixture(scope="module")
def answers(trained, workspace, frame_order_clips, tmp_path_factory):
    """tools/evaluate.py on the held-out clips and on the same clips reversed: {part: {id: answer row}}."""
    _, checkpoint = trained
    evaluate = load_tool("evaluate").main
    out = {}
    for part in ("order_qa", "order_qa_reversed"):
        out_dir = tmp_path_factory.mktemp(part)
        args = ["--config", VIDEO_FINETUNE, "--checkpoint", checkpoint, "--device", "cpu",
                "--benchmark", frame_order_clips[part], "--format", "msvd_qa",
                "--image-folder", frame_order_clips["order_video_folder"],
                "--boxes", frame_order_clips[part + "_boxes"], "--prompt-suffix", "", "--out-dir", str(out_dir),
                "--batch-size", "8", "--num-workers", "0", "--max-new-tokens", "12", "--no-progress"]
        cwd = os.getcwd()
        os.chdir(workspace)  # the config's asset paths are relative to the working directory
        try:
            if part == "order_qa":  # sharded and resumed, as a long benchmark would be
                assert evaluate(args + ["--num-shards", "2", "--shard", "1"]) is None  # shard 0 still missing
                evaluate(args + ["--num-shards", "2", "--shard", "0"])
            result = evaluate(args)  # finds every item predicted: recomputes the metrics
        finally:
            os.chdir(cwd)
        assert result["metrics"]["num_scored"] == len(rows(frame_order_clips[part]))
        with open(out_dir / "video_qa_answers.jsonl") as f:
            out[part] = {a["id"]: a for a in map(json.loads, f)}
    return out


def accuracy(answered):
    return 100.0 * sum(a["pred"] == a["answer"] for a in answered) / len(answered)


def test_frame_order_is_learnt_on_held_out_clips(answers, frame_order_clips):
    held_out = answers["order_qa"]
    assert accuracy(held_out.values()) >= MIN_ACCURACY, held_out
    for kind in ("first", "last"):  # both questions, not one of them
        asked = [a for a in held_out.values() if kind in a["question"]]
        assert len(asked) == 12 and accuracy(asked) >= 75.0, asked


def test_reversed_frames_flip_the_answer(answers):
    """The same frames in the other order, the same question: the answer is now the clip's other photograph."""
    held_out, flipped = answers["order_qa"], answers["order_qa_reversed"]
    assert accuracy(flipped.values()) >= MIN_FLIPPED, flipped
    changed = [i for i, a in held_out.items() if flipped[i + "_reversed"]["pred"] != a["pred"]]
    assert len(changed) >= MIN_FLIPPED / 100 * len(held_out), (held_out, flipped)


def test_chat_answers_a_held_out_clip(trained, workspace, frame_order_clips, capsys, monkeypatch):
    _, checkpoint = trained
    chat = load_tool("chat").main
    monkeypatch.chdir(workspace)
    row = rows(frame_order_clips["order_qa"])[0]
    video = osp.join(frame_order_clips["order_video_folder"], row["video_name"])
    answer = chat(["--config", VIDEO_FINETUNE, "--checkpoint", checkpoint, "--device", "cpu", "--video", video,
                   "--boxes", frame_order_clips["order_qa_boxes"], "--box-id", row["question_id"],
                   "--prompt", row["question"], "--max-new-tokens", "12"])
    out = capsys.readouterr().out
    assert f"[video {video}: frames [0, 3]" in out and f"ASSISTANT: {answer[0]}" in out
    assert answer == [row["answer"]], row
