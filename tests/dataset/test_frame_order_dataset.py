"""The frame-order clips (mg_llava/testing/frame_order_dataset.py): first and last questions mixed, every ordered pair
in training and held out, an order-blind answer right on exactly half the held-out questions, and reversed clips
that hold the same pictures in the other order."""
import collections
import json

import numpy as np

from mg_llava.dataset.video import read_video
from mg_llava.testing.frame_order_dataset import PHOTOS, QUESTIONS


def rows(path):
    with open(path) as f:
        return [json.loads(line) for line in f] if path.endswith(".jsonl") else json.load(f)


def pair(name):
    first, second = name.split("_")[:2]
    return first, second


def test_training_questions_are_mixed_over_every_ordered_pair(frame_order_clips):
    train = rows(frame_order_clips["order_finetune"])
    assert len(train) == 300 and len(rows(frame_order_clips["order_pretrain"])) == 300
    asked = collections.Counter((pair(s["id"]), s["conversations"][0]["value"].split("\n")[1]) for s in train)
    pairs = {(a, b) for a in PHOTOS for b in PHOTOS if a != b}
    assert {p for p, _ in asked} == pairs  # every ordered pair, each asked both ways, balanced to one clip
    assert all(abs(asked[p, QUESTIONS["first"]] - asked[p, QUESTIONS["last"]]) <= 1 for p in pairs)
    for sample in train:
        first, second = pair(sample["id"])
        expected = PHOTOS[first] if "first" in sample["conversations"][0]["value"] else PHOTOS[second]
        assert sample["conversations"][1]["value"] == expected


def test_an_order_blind_answer_gets_half_the_held_out_questions(frame_order_clips):
    """A model that knows the clip's two photographs but not their order can only answer as a function of the
    question and the (unordered) pair: for every such (question, pair) the held-out answers split evenly, so any
    such answering scores exactly 50 %."""
    held_out = rows(frame_order_clips["order_qa"])
    train_names = {s["id"] for s in rows(frame_order_clips["order_finetune"])}
    assert len(held_out) == 24 and not train_names & {r["question_id"] for r in held_out}
    answers = collections.defaultdict(list)
    for row in held_out:
        answers[row["question"], frozenset(pair(row["question_id"]))].append(row["answer"])
    assert all(len(a) == 2 and a[0] != a[1] for a in answers.values())


def test_reversed_clips_show_the_same_frames_in_the_other_order(frame_order_clips):
    folder = frame_order_clips["order_video_folder"]
    held_out, reversed_ = rows(frame_order_clips["order_qa"]), rows(frame_order_clips["order_qa_reversed"])
    boxes = {b["id"]: b["frames"] for b in rows(frame_order_clips["order_qa_boxes"])}
    reversed_boxes = {b["id"]: b["frames"] for b in rows(frame_order_clips["order_qa_reversed_boxes"])}
    for row, flipped in list(zip(held_out, reversed_))[:4]:
        assert flipped["question"] == row["question"]
        assert {flipped["answer"], row["answer"]} == {PHOTOS[p] for p in pair(row["question_id"])}
        frames = read_video(f"{folder}/{row['video_name']}", 2).frames
        back = read_video(f"{folder}/{flipped['video_name']}", 2).frames
        # each frame of the reversed clip is its mirror frame of the clip (the same picture up to the codec's
        # error, a few grey levels), far from the other photograph
        distance = [[np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).mean() for b in back] for a in frames]
        assert max(distance[0][1], distance[1][0]) < 15 < 40 < min(distance[0][0], distance[1][1]), distance
        assert reversed_boxes[flipped["question_id"]] == boxes[row["question_id"]][::-1]
