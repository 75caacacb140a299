"""Video in chat and evaluation: the dataset's own frames, views, boxes and tokens; boxes found per frame on the fly;
the video QA layouts and their offline scores; the errors a user can run into."""
import json
import os.path as osp

import pytest
import torch

from tool_helpers import load_tool

from mg_llava.testing.tiny_video_dataset import NUM_FRAMES as T


@pytest.fixture(scope="module")
def video_row(tiny_videos):
    with open(tiny_videos["video_finetune"]) as f:
        return json.load(f)[1]


def test_chat_sample_is_the_training_samples_prompt_frames_and_boxes(loaded, spec, tiny_videos, video_row):
    from xtuner.dataset.map_fns import template_map_fn_factory

    from mg_llava.dataset import PROMPT_TEMPLATE, LLaVABoxDataset, load_box_file
    from mg_llava.inference.spec import views_from_spec

    dataset = LLaVABoxDataset(image_folder=tiny_videos["video_folder"], video_folder=tiny_videos["video_folder"],
                              num_frames=T, image_views=views_from_spec(spec["image"]),
                              data_path=tiny_videos["video_finetune"], tokenizer=loaded.tokenizer,
                              box_file=tiny_videos["video_boxes"], max_length=128, num_proc=1,
                              template_map_fn=dict(type=template_map_fn_factory, template=PROMPT_TEMPLATE.vicuna),
                              uint8_views=False)  # float views, as chat makes them
    expected = dataset[1]
    assert expected["id"] == video_row["id"]
    preprocessor = loaded.preprocessor
    default_frames, preprocessor.num_frames = preprocessor.num_frames, T
    try:
        video = preprocessor.prepare_video(osp.join(tiny_videos["video_folder"], video_row["video"]),
                                           (load_box_file(tiny_videos["video_boxes"]), video_row["id"]))
        question = video_row["conversations"][0]["value"].replace("<video>\n", "")
        sample = preprocessor.sample(question, video=video)
    finally:
        preprocessor.num_frames = default_frames
    prompt = sample["input_ids"]
    assert torch.equal(expected["input_ids"][:len(prompt)], prompt)  # the training text up to the answer
    assert int((prompt == -201).sum()) == 1 and int((prompt == -200).sum()) == 0
    for key in ("pixel_values", "pixel_values_aux"):
        assert torch.equal(sample[key], expected[key]), key
    assert all(torch.equal(a, b) for a, b in zip(sample["boxes"], expected["boxes"]))
    assert sample["frames_per_video"] == expected["frames_per_video"] == [T] and video.indices == [0, 7]


def test_chat_session_finds_boxes_per_frame_on_the_fly(loaded, tiny_models, tiny_videos, video_row):
    from mg_llava.dataset import prepare_boxes, read_video
    from mg_llava.inference import ChatSession
    from mg_llava.inference.preprocess import entry_arrays
    from mg_llava.registry import MODELS

    generator = MODELS.build(dict(
        type="BoxGenerator",
        tagger=dict(type="CLIPTagger", model=tiny_models["clip"], vocabulary="coco80", top_k=5, min_prob=0.0),
        detector=dict(type="OWLv2Detector", model=tiny_models["owlv2"], score_threshold=0.2)))
    path = osp.join(tiny_videos["video_folder"], video_row["video"])
    session = ChatSession(loaded, video=path, boxes=generator, max_new_tokens=4)
    frames = read_video(path, 8).frames  # the loaded model's spec keeps the default 8 frames
    assert len(session.video.boxes) == 8
    for frame, views, boxes in zip(frames, session.video.frames, session.video.boxes):
        raw, scores, labels = entry_arrays(generator(frame))
        assert torch.equal(boxes, prepare_boxes(raw, scores, labels, views.geometry).boxes)
    assert session.num_boxes == sum(len(b) for b in session.video.boxes) > 0
    answer = session.ask("What is shown at the end of the video?")
    assert isinstance(answer, str)
    assert int((session.sample("And at the start?")["input_ids"] == -201).sum()) == 1  # one video in the history


def test_chat_tool_refuses_bad_video_arguments(loaded, model_paths, trained_checkpoint, tiny_videos, tmp_path):
    chat = load_tool("chat").main
    video = osp.join(tiny_videos["video_folder"], "chelsea_clock_0.mp4")
    base = ["--checkpoint", trained_checkpoint, *model_paths, "--prompt", "Hi"]
    with pytest.raises(SystemExit, match="not both"):
        chat(base + ["--video", video, "--image", video, "--no-boxes"])
    with pytest.raises(SystemExit, match="video not found"):
        chat(base + ["--video", str(tmp_path / "none.mp4"), "--no-boxes"])
    with pytest.raises(SystemExit, match="exactly one of --boxes"):
        chat(base + ["--video", video])
    with pytest.raises(SystemExit, match="no video entry 'nope'"):
        chat(base + ["--video", video, "--boxes", tiny_videos["video_boxes"], "--box-id", "nope"])
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 100)
    from mg_llava.inference.preprocess import ImageLoadError

    with pytest.raises(ImageLoadError, match="chat video: cannot read video .*broken.mp4"):
        chat(base + ["--video", str(broken), "--no-boxes"])


def test_video_qa_files_in_both_layouts_and_their_bad_rows(tiny_videos, tmp_path):
    from mg_llava.dataset import BadSampleError
    from mg_llava.inference.benchmarks import read_benchmark

    folder = tiny_videos["video_folder"]
    questions = [dict(video_name="chelsea_clock_2", question_id=1, question="What is shown at the end?"),
                 dict(video_name="clock_chelsea_2.mp4", question_id=2, question="What is at the start?")]
    answers = [dict(question_id=1, answer="a clock", type="what"), dict(question_id=2, answer="clock")]
    (tmp_path / "test_q.json").write_text(json.dumps(questions))
    (tmp_path / "test_a.json").write_text(json.dumps(answers))
    benchmark = read_benchmark(str(tmp_path / "test_q.json"), "msvd_qa", image_folder=folder)
    assert [item.image for item in benchmark.items] == [osp.join(folder, "chelsea_clock_2.mp4"),
                                                         osp.join(folder, "clock_chelsea_2.mp4")]
    assert all(item.video for item in benchmark.items)
    assert benchmark.items[0].target["answer"] == "a clock" and benchmark.items[0].target["type"] == "what"
    assert benchmark.items[0].question.endswith("\nAnswer the question using a single word or phrase.")

    rows = [dict(question_id="a", video="missing", question="Q?", answer="x"),
            dict(question_id="b", video="chelsea_clock_2.mp4", answer="x"), "not an object"]
    (tmp_path / "bad.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(BadSampleError, match=r"id 'a'\): missing video: .*missing\[\.mp4"):
        read_benchmark(str(tmp_path / "bad.jsonl"), "video_qa", image_folder=folder)
    skipped = read_benchmark(str(tmp_path / "bad.jsonl"), "video_qa", image_folder=folder, on_bad_sample="skip")
    assert skipped.items == [] and len(skipped.bad) == 3


def test_video_qa_scores_exact_and_normalised_match_per_type(tmp_path):
    from mg_llava.inference.evaluate import compute_metrics, write_answer_files

    records = [dict(id="1", question_id=1, question="q1", answer="two dogs", type="what", prediction="Two dogs."),
               dict(id="2", question_id=2, question="q2", answer="cat", type="what", prediction="cat"),
               dict(id="3", question_id=3, question="q3", answer="run", type="how", prediction="walk"),
               dict(id="4", question_id=4, skipped="unreadable image: x")]
    metrics = compute_metrics("video_qa", records)
    assert metrics["exact_match"] == pytest.approx(100 / 3) and metrics["normalized_match"] == pytest.approx(200 / 3)
    assert metrics["per_type"]["what"]["normalized_match"] == 100 and metrics["per_type"]["how"]["num_scored"] == 1
    [path] = write_answer_files("video_qa", records, str(tmp_path))
    with open(path) as f:
        lines = [json.loads(line) for line in f]
    assert lines[0] == dict(id=1, question="q1", answer="two dogs", pred="Two dogs.") and len(lines) == 3
    assert metrics["num_scored"] == 3
