"""Short synthetic videos of real photographs, with a question whose answer depends on one frame: the last.

Each video pans and zooms over one scikit-image photograph, then cuts to another. The question is always "What is
shown at the end of the video?"; the answer is the second photograph, a cat or a cup of coffee (two-way). The first
photograph is one of the other pictures or the other answer itself: a video may start on the cat and end on the
coffee, so "is there a cat in the video" is not enough, the model has to read the last frame.

``build_tiny_video_dataset(out_dir)`` writes, in the released formats:

- ``videos/<first>_<second>_<k>.mp4``: the videos (PyAV, mpeg4, 96x64 px, ``VIDEO_FRAMES`` frames);
- ``video_pretrain.json``: one caption per training video ("First an astronaut, then a cat.");
- ``video_finetune.json``: the question about each training video (LLaVA format, ``"video"`` + ``<video>``);
- ``video_boxes.json``: the released video box format, ``{"id", "video", "frames": [{boxes, scores, labels}]}`` for
  the frames the dataset samples (``linspace`` over the video), each photograph's object boxes moved into the frame;
- ``video_qa.jsonl``: held-out videos in the MSVD-QA / MSRVTT-QA layout ``{question_id, video_name, question,
  answer}``, with their box file ``video_qa_boxes.json``. They are new pans and zooms (other random motions than any
  training video); half of them start on the other answer, the case that needs the last frame.
"""
import json
import os
import os.path as osp

from typing import Optional

import numpy as np

from mg_llava.dataset.video import sample_frame_indices

from .images import load_skimage
from .tiny_dataset import IMAGES
from .videos import FRAME_SIZE, boxes_in_window, pan_zoom, write_video

ANSWER_PHOTOS = ("chelsea", "clock")  # what the videos end on: the two answers
OTHER_PHOTOS = ("astronaut", "rocket", "camera", "coins")  # what else they may start on
VIDEO_FRAMES = 8  # frames written per video; the first half shows one photograph, the second half another
NUM_FRAMES = 2  # frames the tiny video configs sample: the first and the last (the released models: 8)
QUESTION = "What is shown at the end of the video?"


def _motion(rng: np.random.Generator) -> dict:
    """A random pan (start and end positions) and zoom."""
    return dict(start=tuple(rng.uniform(0, 1, 2)), end=tuple(rng.uniform(0, 1, 2)),
                zoom=(1.0, float(rng.uniform(1.0, 1.6))))


def make_video(path: str, first: str, second: str, rng: np.random.Generator, num_frames: int = NUM_FRAMES,
               video_frames: int = VIDEO_FRAMES, reversed_path: Optional[str] = None) -> dict:
    """Write one two-shot video of ``video_frames`` frames (and the same frames in reverse order to
    ``reversed_path``, if given); returns its box entry (for the ``num_frames`` frames the dataset samples)."""
    half = video_frames // 2
    frames, windows, shown = [], [], []
    for name in (first, second):
        shot, shot_windows = pan_zoom(load_skimage(name), half, FRAME_SIZE, **_motion(rng))
        frames += shot
        windows += shot_windows
        shown += [name] * half
    write_video(path, frames)
    if reversed_path is not None:
        write_video(reversed_path, frames[::-1])
    entry_frames = []
    for index in sample_frame_indices(len(frames), num_frames):
        objects = IMAGES[shown[index]][2]
        labels = [label for label, items in objects.items() for _ in items]
        moved = boxes_in_window([box for items in objects.values() for box in items], windows[index])
        kept = [(box, label) for box, label in zip(moved, labels) if box is not None]
        entry_frames.append(dict(boxes=[b for b, _ in kept], scores=[0.9] * len(kept), labels=[l for _, l in kept]))
    return dict(frames=entry_frames)


def video_plan(videos_per_pair: int = 2, held_out_per_pair: int = 2):
    """``(first, second, k, held_out)`` for every video: each answer photograph is the second shot after each other
    photograph (``videos_per_pair`` training videos, k = 0..), and after the other answer and the first two other
    photographs in the held-out set (``held_out_per_pair`` each, k continuing after the training ones)."""
    plan = []
    for second in ANSWER_PHOTOS:
        other_answer = [p for p in ANSWER_PHOTOS if p != second]
        firsts = other_answer + list(OTHER_PHOTOS)
        for first in firsts:
            plan += [(first, second, k, False) for k in range(videos_per_pair)]
        for first in other_answer + list(OTHER_PHOTOS[:len(other_answer)]):
            plan += [(first, second, videos_per_pair + k, True) for k in range(held_out_per_pair)]
    return plan


def build_tiny_video_dataset(out_dir: str, videos_per_pair: int = 2, held_out_per_pair: int = 2, seed: int = 0,
                             num_frames: int = NUM_FRAMES) -> dict:
    """Write the dataset under ``out_dir`` (see the module docstring); returns the paths of its parts."""
    video_dir = osp.join(out_dir, "videos")
    os.makedirs(video_dir, exist_ok=True)
    rng = np.random.default_rng(seed)
    pretrain, train, boxes, qa, qa_boxes = [], [], [], [], []
    for first, second, k, held_out in video_plan(videos_per_pair, held_out_per_pair):
        name = f"{first}_{second}_{k}.mp4"
        entry = make_video(osp.join(video_dir, name), first, second, rng, num_frames)
        sample_id, answer = name[:-4], IMAGES[second][1]
        if held_out:
            qa.append(dict(question_id=sample_id, video_name=name, question=QUESTION, answer=answer))
            qa_boxes.append(dict(id=sample_id, video=name, **entry))
            continue
        caption = f"First {IMAGES[first][1]}, then {answer}."
        pretrain.append(dict(id=sample_id, video=name, conversations=[
            {"from": "human", "value": "<video>\nDescribe the video briefly."}, {"from": "gpt", "value": caption}]))
        train.append(dict(id=sample_id, video=name, conversations=[
            {"from": "human", "value": f"<video>\n{QUESTION}"}, {"from": "gpt", "value": answer}]))
        boxes.append(dict(id=sample_id, video=name, **entry))
    paths = {"video_folder": video_dir}
    parts = (("video_pretrain", pretrain), ("video_finetune", train), ("video_boxes", boxes),
             ("video_qa_boxes", qa_boxes))
    for part, content in parts:
        paths[part] = osp.join(out_dir, f"{part}.json")
        with open(paths[part], "w") as f:
            json.dump(content, f)
    paths["video_qa"] = osp.join(out_dir, "video_qa.jsonl")
    with open(paths["video_qa"], "w") as f:
        f.writelines(json.dumps(row) + "\n" for row in qa)
    return paths
