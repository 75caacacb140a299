"""The media side of the check: every image and video file decoded once, as training decodes it, in parallel.

Each unique file (several samples may share one) is one task: an image goes through
:func:`~mg_llava.dataset.load_image` with the dataset's views' ``min_side`` (the training decode: the header, the
whole pixel data, PNG checksums, so a truncated file is caught, not only a missing one), a video through
:func:`~mg_llava.dataset.read_video` with the dataset's frame count. The task also applies the dataset's box rules
(:func:`~mg_llava.dataset.apply_box_rule`) to each sample of the file at the decoded size, which gives the boxes
each image really hands the model. Workers are forked processes that inherit the built datasets.
"""
import os
import os.path as osp
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..dataset import load_image, read_video
from ..dataset.released_boxes import apply_box_rule
from ..dataset.video import VideoReadError
from ..image_io import ImageDecodeError
from .text import SourceText

_SOURCES: List[SourceText] = []  # set before the workers fork; they read the datasets from here


@dataclass
class MediaTask:
    path: str
    video: bool
    samples: Tuple[Tuple[int, int], ...]  # (source index, row) of every sample that reads the file


@dataclass
class MediaResult:
    path: str
    kind: Optional[str]  # a media problem kind, None when the file decodes
    detail: str
    sizes: List[Tuple[int, int]]  # (W, H) of the image, or of each sampled frame
    raw_boxes: List[List[int]]  # per sample of the task: box entries per image/frame in the box file
    kept_boxes: List[List[int]]  # per sample of the task: boxes per image/frame after the box rules


def media_tasks(sources: Sequence[SourceText]) -> List[MediaTask]:
    """One task per unique file, with the samples that read it."""
    tasks: Dict[Tuple[str, bool], list] = {}
    for source in sources:
        image_folder, video_folder = source.dataset.image_folder, source.dataset.video_folder
        for row, (image, video) in enumerate(zip(source.images, source.videos)):
            if video is not None:
                tasks.setdefault((osp.join(video_folder, video), True), []).append((source.index, row))
            elif image is not None:
                tasks.setdefault((osp.join(image_folder, image), False), []).append((source.index, row))
    return [MediaTask(path, video, tuple(samples)) for (path, video), samples in tasks.items()]


def check_media(sources: Sequence[SourceText], tasks: List[MediaTask], workers: int) -> List[MediaResult]:
    """Decode every task's file (``workers`` forked processes; 1: in this process) with a progress bar."""
    global _SOURCES
    _SOURCES = list(sources)
    bar = dict(total=len(tasks), desc="images/videos", unit="file", smoothing=0.05)
    try:
        if workers <= 1 or len(tasks) < 2:
            return [check_file(task) for task in tqdm(tasks, **bar)]
        chunk = max(1, min(256, len(tasks) // (workers * 16)))
        with get_context("fork").Pool(workers) as pool:
            return list(tqdm(pool.imap(check_file, tasks, chunksize=chunk), **bar))
    finally:
        _SOURCES = []


def check_file(task: MediaTask) -> MediaResult:
    """Decode one file as the dataset does and count the boxes each of its samples gets."""
    source = _SOURCES[task.samples[0][0]]
    views = source.dataset.image_views
    try:
        if task.video:
            sizes = [frame.size for frame in read_video(task.path, source.dataset.num_frames).frames]
        else:
            sizes = [load_image(task.path, min_side=views.reduced_decode_side)[1]]
    except ImageDecodeError as err:
        return MediaResult(task.path, _image_kind(err), str(err), [], [], [])
    except VideoReadError as err:
        kind = "corrupt_media" if osp.exists(task.path) else "missing_media"
        return MediaResult(task.path, kind, str(err), [], [], [])
    raw, kept = [], []
    for source_index, row in task.samples:
        counts = _box_counts(_SOURCES[source_index], row, sizes)
        raw.append(counts[0])
        kept.append(counts[1])
    return MediaResult(task.path, None, "", sizes, raw, kept)


def _image_kind(err: ImageDecodeError) -> str:
    if err.reason == "missing":
        return "missing_media"
    if err.reason == "too_large":
        return "too_large"
    try:  # the decoder failed: does the file at least identify as an image?
        with Image.open(err.path):
            return "corrupt_media"
    except Exception:  # noqa: BLE001 - PIL raises many types for what is not an image
        return "not_an_image"


def _box_counts(source: SourceText, row: int, sizes: List[Tuple[int, int]]) -> Tuple[List[int], List[int]]:
    """(box entries, boxes after the rules) per image/frame of sample ``row``; zeros without an entry."""
    dataset, first = source.dataset, int(source.dataset.box_rows[row])
    raw, kept = [], []
    for t, (width, height) in enumerate(sizes):
        if first < 0:
            raw.append(0)
            kept.append(0)
            continue
        boxes, scores, label_ids = dataset.box_table.arrays(first + t)
        prepared = apply_box_rule(dataset.box_rule, boxes, scores, label_ids, dataset.image_views.geometry(
            width, height), dataset.max_boxes, dataset.iou_threshold, int(source.kept_length[row]), source.max_length)
        raw.append(len(boxes))
        kept.append(len(prepared.boxes))
    return raw, kept


def find_by_name(folders: Sequence[str], names: Sequence[str]) -> Dict[str, List[str]]:
    """{name: paths of files (or frame folders) of that name under ``folders``} for the given base names; one walk
    of each folder, done only when something is missing."""
    wanted, found = set(names), {}
    for folder in dict.fromkeys(folders):
        for root, dirs, files in os.walk(folder):
            for name in wanted.intersection(files).union(wanted.intersection(dirs)):
                found.setdefault(name, []).append(osp.join(root, name))
    return found


def size_arrays(results: Sequence[MediaResult]) -> np.ndarray:
    """(M, 2) int64 (W, H) of every decoded image and sampled frame."""
    sizes = [size for result in results for size in result.sizes]
    return np.asarray(sizes, dtype=np.int64).reshape(-1, 2)
