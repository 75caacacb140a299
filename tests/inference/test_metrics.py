"""Metric functions on hand-made predictions, against values worked out by hand."""
import pytest

from mg_llava.inference.metrics import (
    anls,
    extract_option,
    mme_metrics,
    multiple_choice_metrics,
    normalize_vqa_answer,
    parse_yes_no,
    pope_metrics,
    rotate_options,
    rotated_answer,
    vqa_accuracy,
    vqa_metrics,
)

OPTIONS = {"A": "a cat", "B": "a dog", "C": "a red bus", "D": "two birds"}


@pytest.mark.parametrize("text, expected", [
    ("B", "B"), ("B.", "B"), ("(C)", "C"), ("D) two birds", "D"), (" A\n", "A"),
    ("The answer is C", "C"), ("I think it is a dog.", "B"), ("E", None), ("A or B", None),
    ("Both a cat and a dog", None), ("", None),
])
def test_extract_option(text, expected):
    assert extract_option(text, OPTIONS) == expected


def test_rotation_keeps_track_of_the_answer():
    options = {"A": "x", "B": "y", "C": "z"}
    assert rotate_options(options, 1) == {"A": "y", "B": "z", "C": "x"}
    for shift in range(3):
        rotated = rotate_options(options, shift)
        assert rotated[rotated_answer("B", list(options), shift)] == "y"


def test_multiple_choice_plain_and_circular():
    plain = [dict(index="1", round=0, pred_option="A", answer="A", category="x"),
             dict(index="2", round=0, pred_option="B", answer="C", category="x"),
             dict(index="3", round=0, pred_option=None, answer="D", category="y"),
             dict(index="4", round=0, pred_option="D", answer="D", category="y")]
    metrics = multiple_choice_metrics(plain)
    assert metrics["accuracy"] == 50.0 and metrics["unparsed"] == 1 and not metrics["circular"]
    assert metrics["per_category"] == {"x": 50.0, "y": 50.0}
    # circular: question 1 right in both rounds, question 2 wrong in one of its three rounds -> 1 of 2
    circular = [dict(index="1", round=r, pred_option="A", answer="A") for r in range(2)]
    circular += [dict(index="2", round=r, pred_option=p, answer=a)
                 for r, (p, a) in enumerate([("B", "B"), ("A", "A"), ("A", "C")])]
    metrics = multiple_choice_metrics(circular)
    assert metrics["accuracy"] == 50.0 and metrics["circular"] and metrics["rounds"] == [2, 3]
    assert metrics["num_questions"] == 2 and metrics["num_predictions"] == 5


@pytest.mark.parametrize("raw, normalised", [
    ("Two dogs.", "2 dogs"), ("The  Cat!", "cat"), ("dont", "don't"), ("1,000", "1000"), ("3.5", "3.5"),
    ("yes\n", "yes"), ("an apple-pie", "apple pie"), ("it's ten o'clock", "it's 10 o'clock"),
])
def test_normalize_vqa_answer(raw, normalised):
    assert normalize_vqa_answer(raw) == normalised


def test_vqa_accuracy_by_hand():
    # 10 humans, "2" said 4 times: leaving out one of the four leaves 3 -> 1; leaving out another leaves 4 -> 1
    assert vqa_accuracy("two", ["2"] * 4 + ["3"] * 6) == 1.0
    # said twice: leaving out one of the two leaves 1 match (1/3), any other leaves 2 (2/3): (2*1/3 + 8*2/3) / 10
    assert vqa_accuracy("cat", ["cat", "Cat."] + ["dog"] * 8) == pytest.approx((2 / 3 + 16 / 3) / 10)
    # said once: (1 * 0 + 9 * 1/3) / 10
    assert vqa_accuracy("cat", ["cat"] + ["dog"] * 9) == pytest.approx(0.3)
    assert vqa_accuracy("cat", ["dog"] * 10) == 0.0
    assert vqa_accuracy("the cat", ["Cat"]) == 1.0  # one reference: exact match after normalisation
    with pytest.raises(ValueError):
        vqa_accuracy("cat", [])


def test_anls_and_vqa_metrics():
    assert anls("hello", ["hello"]) == 1.0
    assert anls("helo", ["hello"]) == pytest.approx(0.8)  # distance 1 over length 5
    assert anls("xyz", ["hello"]) == 0.0  # NL >= 0.5
    records = [dict(prediction="two", answers=["2"] * 10), dict(prediction="cat", answers=["dog"] * 10),
               dict(prediction="x", answers=None)]
    metrics = vqa_metrics(records)
    assert metrics["accuracy"] == 50.0 and metrics["num_scored"] == 2


@pytest.mark.parametrize("text, expected", [
    ("Yes", "yes"), ("no.", "no"), ("Yes, there is a cat.", "yes"), ("There is not a cat.", "no"),
    ("I see no cat. Yes.", "no"), ("A cat, yes", "yes"), ("Maybe", None),
])
def test_parse_yes_no(text, expected):
    assert parse_yes_no(text) == expected


def test_pope_by_hand():
    pairs = [("Yes", "yes"), ("Yes", "yes"), ("No", "yes"), ("Yes", "no"), ("No", "no"), ("No", "no"),
             ("Maybe", "no"), ("No", "no")]
    metrics = pope_metrics([dict(prediction=p, label=l) for p, l in pairs])
    # "Maybe" counts as yes (LLaVA's rule): TP 2, FN 1, FP 2, TN 3
    assert (metrics["tp"], metrics["fn"], metrics["fp"], metrics["tn"]) == (2, 1, 2, 3)
    assert metrics["accuracy"] == pytest.approx(100 * 5 / 8)
    assert metrics["precision"] == pytest.approx(50.0)
    assert metrics["recall"] == pytest.approx(100 * 2 / 3)
    assert metrics["f1"] == pytest.approx(100 * 2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert metrics["yes_ratio"] == pytest.approx(50.0) and metrics["unparsed"] == 1
    with pytest.raises(ValueError, match="ground truth must be yes or no"):
        pope_metrics([dict(prediction="yes", label="maybe")])


def test_mme_by_hand():
    records = [
        # existence: image a both right, image b one right -> acc 75, acc+ 50
        dict(category="existence", image="a", prediction="Yes", label="yes"),
        dict(category="existence", image="a", prediction="No", label="no"),
        dict(category="existence", image="b", prediction="Yes", label="yes"),
        dict(category="existence", image="b", prediction="Yes", label="no"),
        # code_reasoning (cognition): both right -> 100 + 100
        dict(category="code_reasoning", image="c", prediction="no", label="no"),
        dict(category="code_reasoning", image="c", prediction="yes", label="yes"),
    ]
    metrics = mme_metrics(records)
    assert metrics["categories"]["existence"] == dict(acc=75.0, acc_plus=50.0, score=125.0, num_questions=4,
                                                      num_images=2)
    assert metrics["perception"] == 125.0 and metrics["cognition"] == 200.0 and metrics["total"] == 325.0
