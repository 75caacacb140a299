"""A frame-order task for the tiny video pair: two-photograph clips, asked which photograph comes first or last.

Each clip pans and zooms over one scikit-image photograph, then cuts to another (``tiny_video_dataset.make_video``);
every ordered pair of ``PHOTOS`` occurs. A clip is asked one of two questions, "Which photograph comes first in the
video?" or "... last ...", half the clips each way, and the answer is that photograph's name ("cat"). Both
photographs are in every clip and each question names one of them, so a model that sees the frames but not their
order answers half right at best (chance among the clip's two photographs); above that it must read the order.

``build_frame_order_dataset(out_dir)`` writes, in the released formats:

- ``order_videos/<first>_<second>_<k>.mp4``: the clips (``VIDEO_FRAMES`` frames, 96x64 px, half of them each
  photograph);
- ``order_pretrain.json``: one caption per training clip ("First cat, then rocket."), for the video stage 1;
- ``order_finetune.json``: one question per training clip, first or last (LLaVA format, ``"video"`` + ``<video>``);
- ``order_boxes.json``: the released video box format for the frames the tiny configs sample, one box a frame
  (its photograph's main object, or the whole frame where the pan left it out);
- ``order_qa.jsonl`` (+ ``order_qa_boxes.json``): held-out clips (new pans and zooms of every ordered pair), in the
  MSVD-QA layout ``{question_id, video_name, question, answer}``, first and last questions mixed;
- ``order_qa_reversed.jsonl`` (+ ``order_qa_reversed_boxes.json``): the same held-out clips with their frames in
  reverse order (``<name>_reversed.mp4``, the same pictures, boxes reversed with them) and the same questions, whose
  answers are now the clip's other photograph. Asked the same question over the same frames in the other order, a
  model whose answer flips has the order reaching the LLM.
"""
import json
import os
import os.path as osp
from itertools import permutations

import numpy as np

from mg_llava.dataset.video import sample_frame_indices

from .tiny_dataset import IMAGES
from .tiny_video_dataset import make_video
from .videos import FRAME_SIZE

# photograph -> its answer. Every ordered pair makes clips. The tokenizer of the tiny LLM reads characters, so the
# answers differ at their first character: the answer's first token alone carries the choice (answers that share a
# start, "a cat" / "a clock", spread it over later tokens, after characters the model learns to copy).
PHOTOS = {"chelsea": "cat", "astronaut": "astronaut", "rocket": "rocket", "coins": "money"}
VIDEO_FRAMES = 4  # frames written per clip, two per photograph (the tiny configs sample the first and the last)
QUESTIONS = {"first": "Which photograph comes first in the video?",
             "last": "Which photograph comes last in the video?"}


def _clip_name(first: str, second: str, k: int) -> str:
    return f"{first}_{second}_{k}"


def _one_box_per_frame(entry: dict, first: str, second: str, frame_size=FRAME_SIZE) -> dict:
    """``entry`` (make_video's) with one box per sampled frame: its photograph's main object (the first box of
    ``tiny_dataset.IMAGES``) where the pan left it in view, else the whole frame. Every frame is then the same number
    of tokens, so where a frame sits in the LLM's sequence does not depend on how many boxes the other one has."""
    names = {label: name for name in (first, second) for label in IMAGES[name][2]}
    frames = []
    for frame in entry["frames"]:
        name = names[frame["labels"][0]] if frame["labels"] else None
        main = next(iter(IMAGES[name][2])) if name else None
        kept = [(b, l) for b, l in zip(frame["boxes"], frame["labels"]) if l == main][:1]
        box, label = kept[0] if kept else ([0, 0, *frame_size], "photograph")
        frames.append(dict(boxes=[box], scores=[0.9], labels=[label]))
    return dict(frames=frames)


def build_frame_order_dataset(out_dir: str, train_clips: int = 300, held_out_per_pair: int = 2, seed: int = 0,
                              num_frames: int = 2) -> dict:
    """Write the dataset under ``out_dir`` (see the module docstring); returns the paths of its parts.

    ``train_clips`` are spread over the ordered pairs of :data:`PHOTOS` (as evenly as they go, the question
    alternating first / last); ``held_out_per_pair`` held-out clips per ordered pair, one per question kind when it
    is 2. ``num_frames``: the frames the configs sample per clip (their boxes are written)."""
    indices = sample_frame_indices(VIDEO_FRAMES, num_frames)
    if indices != [VIDEO_FRAMES - 1 - i for i in indices[::-1]]:  # the reversed clips reuse the boxes, reversed
        raise ValueError(f"{num_frames} frames of {VIDEO_FRAMES} sample {indices}, not the same frames of the reversed "
                         f"clip; use a num_frames whose choice is symmetric (2, {VIDEO_FRAMES})")
    video_dir = osp.join(out_dir, "order_videos")
    os.makedirs(video_dir, exist_ok=True)
    rng = np.random.default_rng(seed)
    pairs = list(permutations(PHOTOS, 2))
    parts = {name: [] for name in ("order_pretrain", "order_finetune", "order_boxes", "order_qa_boxes",
                                   "order_qa_reversed_boxes")}
    qa, qa_reversed = [], []
    for index in range(train_clips):
        first, second = pairs[index % len(pairs)]
        k = index // len(pairs)
        name = _clip_name(first, second, k)
        entry = make_video(osp.join(video_dir, name + ".mp4"), first, second, rng, num_frames, VIDEO_FRAMES)
        entry = _one_box_per_frame(entry, first, second)
        kind = ("first", "last")[(index // len(pairs) + index) % 2]  # each pair asked both ways
        answer = PHOTOS[first if kind == "first" else second]
        caption = f"First {PHOTOS[first]}, then {PHOTOS[second]}."
        video = dict(id=name, video=name + ".mp4")
        parts["order_pretrain"].append(dict(video, conversations=[
            {"from": "human", "value": "<video>\nDescribe the video briefly."}, {"from": "gpt", "value": caption}]))
        parts["order_finetune"].append(dict(video, conversations=[
            {"from": "human", "value": f"<video>\n{QUESTIONS[kind]}"}, {"from": "gpt", "value": answer}]))
        parts["order_boxes"].append(dict(video, **entry))
    first_k = -(-train_clips // len(pairs))  # held-out clips continue the numbering: new random motions
    for first, second in pairs:
        for j in range(held_out_per_pair):
            name = _clip_name(first, second, first_k + j)
            path = osp.join(video_dir, name + ".mp4")
            entry = make_video(path, first, second, rng, num_frames, VIDEO_FRAMES,
                               reversed_path=osp.join(video_dir, name + "_reversed.mp4"))
            entry = _one_box_per_frame(entry, first, second)
            kind = ("first", "last")[j % 2]
            shown, other = (first, second) if kind == "first" else (second, first)
            qa.append(dict(question_id=name, video_name=name + ".mp4", question=QUESTIONS[kind],
                           answer=PHOTOS[shown]))
            qa_reversed.append(dict(question_id=name + "_reversed", video_name=name + "_reversed.mp4",
                                    question=QUESTIONS[kind], answer=PHOTOS[other]))
            parts["order_qa_boxes"].append(dict(id=name, video=name + ".mp4", **entry))
            parts["order_qa_reversed_boxes"].append(dict(id=name + "_reversed", video=name + "_reversed.mp4",
                                                         frames=entry["frames"][::-1]))
    paths = {"order_video_folder": video_dir}
    for part, content in parts.items():
        paths[part] = osp.join(out_dir, f"{part}.json")
        with open(paths[part], "w") as f:
            json.dump(content, f)
    for part, rows in (("order_qa", qa), ("order_qa_reversed", qa_reversed)):
        paths[part] = osp.join(out_dir, f"{part}.jsonl")
        with open(paths[part], "w") as f:
            f.writelines(json.dumps(row) + "\n" for row in rows)
    return paths
