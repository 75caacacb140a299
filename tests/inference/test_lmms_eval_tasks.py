"""Two of lmms-eval's real tasks, POPE and MME, score our model: their task YAMLs (tests/inference/
lmms_eval_real_tasks/, the repository's with local data) and their own functions from the installed lmms_eval package
(doc_to_visual, doc_to_text, process_results, aggregation) run through lmms-eval's evaluator in this process on local
replicas of lmms-lab/POPE and lmms-lab/MME (parquet files with their columns, the images as `datasets.Image`),
answered by ``--model mg_llava``. The answers must be our chat session's for the same image and prompt, and the
scores lmms-eval reports must be those the benchmarks define, computed here from the answers."""
import os.path as osp
import shutil

import pytest

TASK_DIR = osp.join(osp.dirname(__file__), "lmms_eval_real_tasks")
POST_PROMPT = "\nAnswer the question using a single word or phrase."  # both YAMLs' default lmms_eval_specific_kwargs
YES_NO = {"cat": {"chelsea"}, "person": {"astronaut", "camera"}}  # what the tiny photos show (tiny_dataset.YES_NO)
PHOTOS = ("chelsea", "astronaut", "rocket", "camera")


def write_parquet(path, rows, tiny_data):
    """``rows`` (dicts; ``image`` a tiny-data photo name) as a parquet file with the image bytes as datasets.Image."""
    from datasets import Dataset, Features, Image, Value

    def image(name):
        with open(osp.join(tiny_data["image_folder"], f"{name}.jpg"), "rb") as f:
            return {"bytes": f.read(), "path": f"{name}.jpg"}

    columns = {key: [image(r[key]) if key == "image" else r[key] for r in rows] for key in rows[0]}
    features = Features({key: Image() if key == "image" else Value("string") for key in rows[0]})
    Dataset.from_dict(columns, features=features).to_parquet(path)


def pope_rows():
    """POPE's format: one yes/no existence question per row, the ground truth in lower case."""
    rows = []
    for name in PHOTOS:
        for thing, shows in YES_NO.items():
            rows.append(dict(id=str(len(rows)), question_id=str(len(rows)),
                             question=f"Is there a {thing} in the image?", answer="yes" if name in shows else "no", image_source=name, image=name,
                             category="random"))
    return rows


def mme_rows():
    """MME's format: two questions per image (question_id = the image's file name), answers Yes/No, the question
    ending in MME's " Please answer yes or no." (mme_doc_to_text swaps it for the post_prompt); a Perception and a
    Cognition category."""
    rows = []
    for name, category in zip(PHOTOS, ("existence", "existence", "commonsense_reasoning", "commonsense_reasoning")):
        for thing, shows in YES_NO.items():
            rows.append(dict(question_id=f"{name}.jpg", image=name, category=category,
                             question=f"Is there a {thing} in this image? Please answer yes or no.",
                             answer="Yes" if name in shows else "No"))
    return rows


@pytest.fixture(scope="module")
def results(loaded, model_paths, trained_checkpoint, tiny_data, tmp_path_factory):
    """lmms-eval's simple_evaluate on both local tasks with --model mg_llava (no boxes), samples logged."""
    import os

    from lmms_eval.evaluator import simple_evaluate
    from lmms_eval.tasks import TaskManager

    from mg_llava.lmms_plugin.model import MGLLaVALmms

    task_dir = str(tmp_path_factory.mktemp("lmms_real_tasks") / "tasks")
    shutil.copytree(TASK_DIR, task_dir, ignore=shutil.ignore_patterns("__pycache__"))
    write_parquet(osp.join(task_dir, "pope.parquet"), pope_rows(), tiny_data)
    write_parquet(osp.join(task_dir, "mme.parquet"), mme_rows(), tiny_data)
    options = {flag[2:].replace("-", "_"): value for flag, value in zip(model_paths[::2], model_paths[1::2])}
    model = MGLLaVALmms(pretrained=trained_checkpoint, no_boxes=True, batch_size=4, **options)
    cwd = os.getcwd()
    os.chdir(task_dir)  # the YAMLs' data_files are relative, as the `datasets` builders read them
    try:
        return simple_evaluate(model=model, tasks=["mg_llava_pope", "mg_llava_mme"],
                               task_manager=TaskManager(include_path=task_dir), log_samples=True, batch_size=4)
    finally:
        os.chdir(cwd)


def answers_by_chat(loaded, tiny_data, rows, max_new_tokens, strip=""):
    """Our chat session's answers: each row's photo, no boxes, the question as the task's doc_to_text makes it."""
    from mg_llava.inference import ChatSession

    answers = []
    for row in rows:
        session = ChatSession(loaded, image=osp.join(tiny_data["image_folder"], f"{row['image']}.jpg"),
                              max_new_tokens=max_new_tokens)
        answers.append(session.ask(row["question"].replace(strip, "") + POST_PROMPT))
    return answers


def logged_answers(results, task):
    samples = sorted(results["samples"][task], key=lambda s: s["doc_id"])
    return [s["filtered_resps"][0] if isinstance(s["filtered_resps"], list) else s["filtered_resps"] for s in samples]


def test_pope_scores_our_answers(results, loaded, tiny_data):
    rows = pope_rows()
    answers = logged_answers(results, "mg_llava_pope")
    assert answers == answers_by_chat(loaded, tiny_data, rows, 128)
    predicted = [a.lower().strip() for a in answers]
    truth = [r["answer"] for r in rows]
    assert set(predicted) <= {"yes", "no"}, predicted  # the trained answers, so the counts below mean something
    pairs = list(zip(predicted, truth))
    tp = pairs.count(("yes", "yes"))
    precision = tp / max(1, tp + pairs.count(("yes", "no")))
    recall = tp / max(1, tp + pairs.count(("no", "yes")))
    expected = dict(pope_accuracy=sum(p == t for p, t in pairs) / len(pairs), pope_precision=precision,
                    pope_recall=recall, pope_f1_score=2 * precision * recall / (precision + recall or 1),
                    pope_yes_ratio=truth.count("yes") / len(truth))
    scores = results["results"]["mg_llava_pope"]
    for metric, value in expected.items():
        assert scores[f"{metric},none"] == pytest.approx(value), metric
    assert 0 < expected["pope_accuracy"] < 1, expected  # some right, some wrong: not a constant answer
    print("POPE:", {m: round(v, 3) for m, v in expected.items()})


def test_mme_scores_our_answers(results, loaded, tiny_data):
    """MME's score per category: accuracy (%) + accuracy+ (% of images with both questions right); Perception and
    Cognition each the sum over their categories."""
    rows = mme_rows()
    answers = logged_answers(results, "mg_llava_mme")
    assert answers == answers_by_chat(loaded, tiny_data, rows, 16, strip=" Please answer yes or no.")
    right = {}
    for row, answer in zip(rows, answers):
        said = answer.lower().strip().rstrip(".")
        right.setdefault(row["category"], {}).setdefault(row["question_id"], []).append(said == row["answer"].lower())
    per_category = {category: sum(100 * sum(r) / 2 + 100 * all(r) for r in by_image.values()) / len(by_image)
                    for category, by_image in right.items()}
    scores = results["results"]["mg_llava_mme"]
    assert scores["mme_perception_score,none"] == pytest.approx(per_category["existence"])
    assert scores["mme_cognition_score,none"] == pytest.approx(per_category["commonsense_reasoning"])
    assert {a.lower().strip() for a in answers} <= {"yes", "no"}, answers
    assert 0 < sum(per_category.values()) < 400, per_category
    print("MME:", per_category)

