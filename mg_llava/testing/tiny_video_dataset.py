"""Short synthetic videos of real photographs, with questions whose answers depend on the frames.

``build_tiny_video_dataset(out_dir)`` writes, in the released formats:

- ``videos/<first>_<second>_<k>.mp4``: the camera pans and zooms over one scikit-image photograph, then cuts to
  another (PyAV, mpeg4, 96x64 px, ``VIDEO_FRAMES`` frames);
- ``video_pretrain.json``: one caption per training video ("First a cat, then a cup of coffee.");
- ``video_finetune.json``: "What is shown at the start/end of the video?" for each training video (LLaVA format,
  ``"video"`` + ``<video>``), answered with the photograph shown first/last;
- ``video_boxes.json``: the released video box format, ``{"id", "video", "frames": [{boxes, scores, labels}]}`` for
  the frames the dataset samples (``linspace`` over the video), each photograph's object boxes moved into the frame;
- ``video_qa.jsonl``: held-out videos (new pans and zooms, not trained on) in the MSVD-QA / MSRVTT-QA layout
  ``{question_id, video_name, question, answer}``, with their box file ``video_qa_boxes.json``.
"""
import json
import os
import os.path as osp
from itertools import permutations

import numpy as np

from mg_llava.dataset.video import sample_frame_indices

from .images import load_skimage
from .tiny_dataset import IMAGES
from .videos import FRAME_SIZE, boxes_in_window, pan_zoom, write_video

PHOTOS = ("chelsea", "coffee")
VIDEO_FRAMES = 8  # frames written per video; the first half shows one photograph, the second half another
NUM_FRAMES = 2  # frames the tiny video configs sample: the first and the last (the released models: 8)
QUESTIONS = {"start": "What is shown at the start of the video?", "end": "What is shown at the end of the video?"}


def _motion(rng: np.random.Generator) -> dict:
    """A random pan (start and end positions) and zoom."""
    return dict(start=tuple(rng.uniform(0, 1, 2)), end=tuple(rng.uniform(0, 1, 2)),
                zoom=(1.0, float(rng.uniform(1.0, 1.6))))


def make_video(path: str, first: str, second: str, rng: np.random.Generator, num_frames: int = NUM_FRAMES) -> dict:
    """Write one two-shot video; returns its box entry (for the ``num_frames`` frames the dataset samples)."""
    half = VIDEO_FRAMES // 2
    frames, windows, shown = [], [], []
    for name in (first, second):
        shot, shot_windows = pan_zoom(load_skimage(name), half, FRAME_SIZE, **_motion(rng))
        frames += shot
        windows += shot_windows
        shown += [name] * half
    write_video(path, frames)
    entry_frames = []
    for index in sample_frame_indices(len(frames), num_frames):
        objects = IMAGES[shown[index]][2]
        labels = [label for label, items in objects.items() for _ in items]
        moved = boxes_in_window([box for items in objects.values() for box in items], windows[index])
        kept = [(box, label) for box, label in zip(moved, labels) if box is not None]
        entry_frames.append(dict(boxes=[b for b, _ in kept], scores=[0.9] * len(kept), labels=[l for _, l in kept]))
    return dict(frames=entry_frames)


def build_tiny_video_dataset(out_dir: str, videos_per_pair: int = 2, seed: int = 0,
                             num_frames: int = NUM_FRAMES) -> dict:
    """Write the dataset under ``out_dir`` (see the module docstring); returns the paths of its parts."""
    video_dir = osp.join(out_dir, "videos")
    os.makedirs(video_dir, exist_ok=True)
    rng = np.random.default_rng(seed)
    pretrain, train, boxes, qa, qa_boxes = [], [], [], [], []
    for first, second in permutations(PHOTOS, 2):
        answers = {"start": IMAGES[first][1], "end": IMAGES[second][1]}
        for k in range(videos_per_pair + 1):  # the last one of each pair is held out
            name = f"{first}_{second}_{k}.mp4"
            entry = make_video(osp.join(video_dir, name), first, second, rng, num_frames)
            held_out = k == videos_per_pair
            for when, question in QUESTIONS.items():
                sample_id = f"{name[:-4]}_{when}"
                if held_out:
                    qa.append(dict(question_id=sample_id, video_name=name, question=question, answer=answers[when]))
                    qa_boxes.append(dict(id=sample_id, video=name, **entry))
                else:
                    if when == "start":
                        pretrain.append(dict(id=sample_id, video=name, conversations=[
                            {"from": "human", "value": "<video>\nDescribe the video briefly."},
                            {"from": "gpt", "value": f"First {answers['start']}, then {answers['end']}."},
                        ]))
                    train.append(dict(id=sample_id, video=name, conversations=[
                        {"from": "human", "value": f"<video>\n{question}"},
                        {"from": "gpt", "value": answers[when]},
                    ]))
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
