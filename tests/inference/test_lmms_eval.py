"""lmms-eval's ``--model mg_llava`` (found through our ``lmms_eval.models`` entry point) on a local task of real
photographs, run end to end as a user runs it (``python -m lmms_eval`` in a subprocess, offline), gives the same
answers and the same score as tools/evaluate.py on the same items."""
import glob
import json
import os
import os.path as osp
import shutil
import subprocess
import sys

import lmms_eval  # noqa: F401  make setup installs it (pip install --no-deps lmms-eval==0.7): missing is an error
import pytest
from PIL import Image

from inference_helpers import MEMORISED, MEMORISED_TEXT
from eval_helpers import boxes_for, check_answers_depend_on_the_image, image_folder, write_jsonl
from tool_helpers import load_tool


TASK_DIR = osp.join(osp.dirname(__file__), "lmms_eval_task")
TASK = "mg_llava_local_vqa"
MAX_NEW_TOKENS = "8"  # the task YAML's generation_kwargs


@pytest.fixture(scope="module")
def exported(loaded, tmp_path_factory):
    from mg_llava.inference.export import export_model

    return export_model(loaded, str(tmp_path_factory.mktemp("lmms_export") / "export"))


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    root = tmp_path_factory.mktemp("lmms_task")
    task_dir, benchmark, ids = write_task(root)
    return task_dir, benchmark, ids, boxes_for(ids, root)


def build_in_process(model_paths, checkpoint, boxes, **more):
    """The lmms-eval model built in this process from the checkpoint and model paths (the released-checkpoint
    route; the tools' options as model_args), 3 requests per batch."""
    from mg_llava.lmms_plugin.model import MGLLaVALmms

    options = {flag[2:].replace("-", "_"): value for flag, value in zip(model_paths[::2], model_paths[1::2])}
    return MGLLaVALmms(pretrained=checkpoint, boxes=boxes, batch_size=3, **options, **more)


@pytest.fixture(scope="module")
def in_process(model_paths, trained_checkpoint, task):
    return build_in_process(model_paths, trained_checkpoint, task[3])


def requests_for(model, docs, doc_to_visual, gen_kwargs=None):
    """generate_until requests as lmms-eval builds them (the documents under task "t", split "test")."""
    from lmms_eval.api.instance import Instance

    model.task_dict = {"t": {"test": docs}}
    gen_kwargs = gen_kwargs or dict(max_new_tokens=int(MAX_NEW_TOKENS), temperature=0, do_sample=False)
    return [Instance("generate_until", (doc["question"], dict(gen_kwargs), doc_to_visual, i, "t", "test"), i,
                     metadata=dict(task="t", doc_id=i, repeats=1)) for i, doc in enumerate(docs)]


def photo_in(task_dir, photos=None):
    """lmms-eval's doc_to_visual: the document's own photo, or ``photos[question_id]`` (a swapped one)."""
    def doc_to_visual(doc):
        name = doc["image"] if photos is None else photos[doc["question_id"]]
        with Image.open(osp.join(task_dir, name)) as image:
            return [image.convert("RGB")]
    return doc_to_visual


def check_items_depend_on_the_image(generate_until, task):
    """check_answers_depend_on_the_image on the task's documents, answered by ``generate_until`` (lmms-eval's model
    method, or a stand-in), right when the answer is one of the document's answers."""
    task_dir, benchmark, _, _ = task
    with open(benchmark) as f:
        docs = [json.loads(line) for line in f]

    def answer(photos):
        by_id = {doc["question_id"]: photo for doc, photo in zip(docs, photos)}
        return generate_until(docs, photo_in(task_dir, by_id))

    return check_answers_depend_on_the_image(answer, [doc["image"] for doc in docs],
                                             lambda i, text: text in docs[i]["answers"])


def write_task(root):
    """The task folder: the YAML and its functions, tiny_vqa.jsonl and the photographs in images/."""
    task_dir = osp.join(str(root), "task")
    shutil.copytree(TASK_DIR, task_dir, ignore=shutil.ignore_patterns("__pycache__"))
    image_folder(task_dir)
    name, question, answer = MEMORISED
    records = [
        {"question_id": "q1", "image": f"images/{name}.jpg", "question": question, "answers": [answer] * 10},
        {"question_id": "q2", "image": "images/coffee.jpg", "question": "What drink is this?",
         "answers": ["coffee"] * 7 + ["tea"] * 3},
        {"question_id": "q3", "image": "images/rocket.jpg", "question": question, "answers": ["a rocket"] * 10},
        {"question_id": "q4", "image": "images/astronaut.jpg", "question": "Who is this?",
         "answers": ["an astronaut"] * 10},
        {"question_id": "q5", "image": f"images/{name}.jpg", "question": "What animal is it?",
         "answers": ["a cat"] * 2 + ["cat"] * 8},
    ]
    return task_dir, write_jsonl(osp.join(task_dir, "tiny_vqa.jsonl"), records), [r["question_id"] for r in records]


def run_lmms_eval(task_dir, model_args, out_dir, ids):
    command = [sys.executable, "-m", "lmms_eval", "--model", "mg_llava", "--model_args", model_args,
               "--tasks", TASK, "--include_path", task_dir, "--batch_size", "2", "--output_path", out_dir,
               "--log_samples", "--verbosity", "DEBUG"]  # DEBUG: an error fails the run instead of being logged
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    run = subprocess.run(command, cwd=task_dir, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, f"lmms-eval failed:\n{run.stdout[-4000:]}\n{run.stderr[-6000:]}"
    results = glob.glob(osp.join(out_dir, "**", "*_results.json"), recursive=True)
    samples = glob.glob(osp.join(out_dir, "**", f"*_samples_{TASK}.jsonl"), recursive=True)
    assert len(results) == 1 and len(samples) == 1, (results, samples, run.stdout[-2000:])
    with open(results[0]) as f:
        score = json.load(f)["results"][TASK]["exact_match,none"]
    with open(samples[0]) as f:
        records = [json.loads(line) for line in f]
    answers = {}
    for record in records:  # doc_id: the position in tiny_vqa.jsonl
        response = record["filtered_resps"]
        answers[ids[record["doc_id"]]] = response if isinstance(response, str) else response[0]
    return score, answers


def test_lmms_eval_task_equals_our_evaluator(exported, task, in_process, tmp_path):
    task_dir, benchmark, ids, boxes = task
    score, answers = run_lmms_eval(task_dir, f"pretrained={exported},boxes={boxes},device=cpu",
                                   str(tmp_path / "lmms_out"), ids)

    result = load_tool("evaluate").main([
        "--checkpoint", exported, "--benchmark", benchmark, "--format", "vqa", "--image-folder", task_dir,
        "--boxes", boxes, "--max-new-tokens", MAX_NEW_TOKENS, "--prompt-suffix", "", "--batch-size", "2",
        "--num-workers", "0", "--no-progress", "--device", "cpu", "--out-dir", str(tmp_path / "ours")])
    with open(tmp_path / "ours" / "predictions.shard0of1.jsonl") as f:
        ours = {r["id"]: r["prediction"] for r in map(json.loads, f)}

    assert answers == ours
    assert answers["q1"] == MEMORISED[2]  # the answer the tiny model learned, through lmms-eval
    assert 100.0 * score == pytest.approx(result["metrics"]["accuracy"], abs=1e-9)
    assert 0 < result["metrics"]["accuracy"] < 100, answers  # some right, some wrong: the scores are compared
    # on these very items the answers depend on the photo (a constant-answer model fails here: the test below)
    first, _ = check_items_depend_on_the_image(
        lambda docs, visual: in_process.generate_until(requests_for(in_process, docs, visual)), task)
    assert first == [ours[i] for i in ids]

    # the same weights from the checkpoint and model paths, in batches of 3 instead of 2
    with open(benchmark) as f:
        docs = [json.loads(line) for line in f]
    requests = requests_for(in_process, docs, photo_in(task_dir))
    assert dict(zip(ids, in_process.generate_until(requests))) == ours


def test_a_constant_or_blind_model_fails_the_image_check(task):
    """The check the cross-path test makes fails for a model that always answers "a cat" (which still meets
    0 < accuracy < 100 here: right on q1, partly right on q5) and for one that answers each question without looking
    at the photo."""
    def constant(docs, visual):
        return [MEMORISED[2]] * len(docs)

    def blind(docs, visual):
        return [MEMORISED[2] if "main object" in d["question"] else "coffee" for d in docs]

    for model in (constant, blind):
        with pytest.raises(AssertionError):
            check_items_depend_on_the_image(model, task)


def test_text_only_and_bad_documents(in_process, task):
    from mg_llava.inference.preprocess import ImageLoadError, MissingBoxesError
    from mg_llava.lmms_plugin.model import ModelArgsError, parse_model_args

    task_dir, _, _, boxes = task
    with pytest.raises(ModelArgsError, match="exactly one of boxes="):
        parse_model_args(dict(pretrained="x"))
    with pytest.raises(ModelArgsError, match="unrecognized arguments: colour"):
        parse_model_args(dict(pretrained="x", no_boxes=True, colour="red"))
    with pytest.raises(ModelArgsError, match="batch_size must be a number"):
        parse_model_args(dict(pretrained="x", no_boxes=True, batch_size="auto"))

    question, answer = MEMORISED_TEXT
    [text_only] = requests_for(in_process, [dict(question=question)], lambda doc: [])
    assert in_process.generate_until([text_only]) == [answer]  # no image: asked as text, as in training

    photo = photo_in(task_dir)
    cases = [
        (dict(question_id="q1", image="images/chelsea.jpg", question="?"), lambda doc: photo(doc) * 2,
         ValueError, r"t \(test\) doc 0: 2 visuals"),
        (dict(image="images/chelsea.jpg", question="?"), photo, ModelArgsError, "no field 'question_id'"),
        (dict(question_id="q9", image="images/chelsea.jpg", question="?"), photo, MissingBoxesError,
         f"doc 0: no entry 'q9' in box file {boxes}"),
        (dict(question_id="q1", image="tiny_vqa.jsonl", question="?"), lambda doc: [osp.join(task_dir, doc["image"])],
         ImageLoadError, "tiny_vqa.jsonl"),
    ]
    for doc, doc_to_visual, error, message in cases:
        with pytest.raises(error, match=message):
            in_process.generate_until(requests_for(in_process, [doc], doc_to_visual))

    # on_bad_sample=skip: the unreadable image is answered with "" and counted, the others are answered
    in_process.on_bad_sample = "skip"
    try:
        docs = [dict(question_id="q1", image="tiny_vqa.jsonl", question="?"),
                dict(question_id="q1", image="images/chelsea.jpg", question=MEMORISED[1])]
        as_path = lambda doc: [osp.join(task_dir, doc["image"])]  # noqa: E731
        assert in_process.generate_until(requests_for(in_process, docs, as_path)) == ["", MEMORISED[2]]
        assert len(in_process.skipped) == 1 and "tiny_vqa.jsonl" in in_process.skipped[0]
    finally:
        in_process.on_bad_sample = "raise"


def test_video_documents_equal_our_video_qa(model_paths, trained_checkpoint, tiny_videos, tmp_path):
    """A video task's documents (lmms-eval passes the video's path) get the frames and per-frame boxes
    tools/evaluate.py --format msvd_qa gives them (per-frame boxes by question id)."""
    from mg_llava.testing.tiny_video_dataset import NUM_FRAMES

    docs, box_file = video_documents(tiny_videos, tmp_path)
    benchmark = write_jsonl(tmp_path / "video_qa.jsonl", docs)
    folder = tiny_videos["video_folder"]
    result = load_tool("evaluate").main([
        "--checkpoint", trained_checkpoint, *model_paths, "--benchmark", benchmark, "--format", "msvd_qa",
        "--image-folder", folder, "--boxes", box_file, "--max-new-tokens", MAX_NEW_TOKENS,
        "--prompt-suffix", "", "--batch-size", "3", "--num-workers", "0", "--no-progress",
        "--num-frames", str(NUM_FRAMES), "--out-dir", str(tmp_path / "ours")])
    assert result["num_items"] == len(docs)
    with open(tmp_path / "ours" / "predictions.shard0of1.jsonl") as f:
        ours = {r["id"]: r["prediction"] for r in map(json.loads, f)}

    model = build_in_process(model_paths, trained_checkpoint, box_file, num_frames=NUM_FRAMES)
    requests = requests_for(model, docs, lambda doc: [osp.join(folder, doc["video_name"])])
    answers = model.generate_until(requests)
    assert dict(zip([d["question_id"] for d in docs], answers)) == ours
    assert all(answers), answers

    # a box file keyed by video (entries without an id): found by the video's file name
    with open(box_file) as f:
        by_video = {e["video"]: {k: v for k, v in e.items() if k != "id"} for e in json.load(f)}
    (tmp_path / "by_video.json").write_text(json.dumps(list(by_video.values())))
    by_name = build_in_process(model_paths, trained_checkpoint, str(tmp_path / "by_video.json"),
                               num_frames=NUM_FRAMES)
    assert by_name.generate_until(requests_for(by_name, docs, lambda doc: [osp.join(folder, doc["video_name"])])) \
        == answers
    # on these very documents the answers depend on the video (a constant-answer model fails here: the test below);
    # the model that finds the boxes by the video's name, so that a swapped video brings its own boxes
    first, _ = check_answers_depend_on_the_video(
        lambda docs, visual: by_name.generate_until(requests_for(by_name, docs, visual)), docs, folder)
    assert first == answers


def video_documents(tiny_videos, tmp_path):
    """The video documents of the tests and their box file: four held-out videos asked what they end on (the tiny
    model, trained on photos only, answers none of them right: "An orange sp" after a clock, "No" after an
    astronaut), and the first asked a yes/no question (a score of 0 % would be met by a constant answer too)."""
    with open(tiny_videos["video_qa"]) as f:
        docs = [json.loads(line) for line in f][:4]
    docs.append(dict(docs[0], question_id=docs[0]["question_id"] + "_yes_no",
                     question="Is a clock shown at the end of the video?", answer="no"))
    with open(tiny_videos["video_qa_boxes"]) as f:
        boxes = json.load(f)
    boxes += [dict(entry, id=docs[-1]["question_id"]) for entry in boxes if entry["id"] == docs[0]["question_id"]]
    box_file = tmp_path / "video_qa_boxes.json"
    box_file.write_text(json.dumps(boxes))
    return docs, str(box_file)


def check_answers_depend_on_the_video(generate_until, docs, folder):
    """check_answers_depend_on_the_image on video documents: ``generate_until(docs, doc_to_visual)`` answers each
    document about its own video or another document's; right when the answer is the document's."""
    from mg_llava.inference.metrics import normalize_vqa_answer

    def answer(videos):
        by_id = {doc["question_id"]: video for doc, video in zip(docs, videos)}
        return generate_until(docs, lambda doc: [osp.join(folder, by_id[doc["question_id"]])])

    return check_answers_depend_on_the_image(
        answer, [doc["video_name"] for doc in docs],
        lambda i, text: normalize_vqa_answer(text) == normalize_vqa_answer(docs[i]["answer"]))  # tools/evaluate.py


def test_a_constant_or_blind_model_fails_the_video_check(tiny_videos, tmp_path):
    """The video check above fails for a model that always gives one answer (right on the four videos that end on
    the cat) and for one that answers from the question alone (right on all five)."""
    docs, _ = video_documents(tiny_videos, tmp_path)
    constant = lambda docs, visual: [docs[0]["answer"]] * len(docs)  # noqa: E731
    blind = lambda docs, visual: ["no" if d["question"].startswith("Is") else "a cat" for d in docs]  # noqa: E731
    for model in (constant, blind):
        with pytest.raises(AssertionError):
            check_answers_depend_on_the_video(model, docs, tiny_videos["video_folder"])


def test_loglikelihood_is_the_training_loss_of_the_continuation(in_process, task):
    """loglikelihood requests: the memorised answer is the greedy one and more likely than another; its
    log-probability is minus the training forward's loss on the same sample times its token count."""
    import torch
    from lmms_eval.api.instance import Instance

    from mg_llava.dataset import llava_box_collate_fn

    task_dir = task[0]
    name, question, answer = MEMORISED
    in_process.task_dict = {"t": {"test": [dict(question_id="q1", image=f"images/{name}.jpg")]}}
    requests = [Instance("loglikelihood", (question, continuation, photo_in(task_dir), 0, "t", "test"), i,
                         metadata=dict(task="t", doc_id=0, repeats=1))
                for i, continuation in enumerate([answer, "a rocket"])]
    (right, right_greedy), (other, other_greedy) = in_process.loglikelihood(requests)
    assert right_greedy and not other_greedy and right > other
    alone = in_process.loglikelihood(requests[:1])[0]  # the same without a longer neighbour padding the batch
    assert alone[0] == pytest.approx(right, abs=1e-4) and alone[1]

    sample = in_process.loglikelihood_sample(requests[0])
    continuation_tokens = int((sample["labels"] != -100).sum())
    with torch.no_grad():
        loss = in_process.model(llava_box_collate_fn([sample])["data"])["loss"]
    assert right == pytest.approx(-float(loss) * continuation_tokens, rel=1e-4, abs=1e-4)
