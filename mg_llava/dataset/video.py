"""Video input (SPEC 1.8): decode a video file or a folder of frames and pick T frames uniformly.

Shape shorthand: n = frames in the video, T = frames sampled (8 for the released models).

Frame choice, as the released code: ``np.linspace(0, n - 1, T)`` truncated to integers. A video with fewer than T
frames therefore repeats frames (n = 3, T = 8 -> 0 0 0 0 1 1 1 2), and a one-frame video is that frame T times.

Sources:

- a video file, decoded with PyAV (FFmpeg bundled in its wheels): the frames are counted from the demuxed packets
  (no decode), then decoded once, keeping only the chosen ones. When fewer frames decode than packets were counted
  (a damaged tail), the choice is made again over the frames that did decode;
- a folder of images (``frames/000.jpg`` ...), taken in natural name order ("2.jpg" before "10.jpg").

Anything that yields no frame (missing, empty, not a video, no video stream, undecodable) raises
:class:`VideoReadError` naming the file and the reason.
"""
import os
import os.path as osp
import re
from dataclasses import dataclass
from typing import List, Sequence

import numpy as np
from PIL import Image

from .image_views import load_image

NUM_FRAMES = 8  # SPEC 1.8
VIDEO_TOKEN_INDEX = -201  # the <video> placeholder in input_ids (XTuner's <image> is -200)
DEFAULT_VIDEO_TOKEN = "<video>"
FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class VideoReadError(ValueError):
    """A video (file or frames folder) that yields no usable frame; the message names it and the cause."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"cannot read video {path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class VideoFrames:
    """The sampled frames of one video."""

    frames: List[Image.Image]  # T RGB frames, in time order (repeated for short videos)
    indices: List[int]  # T frame indices into the video, non-decreasing
    num_video_frames: int  # n, the frames the video has


def sample_frame_indices(num_video_frames: int, num_frames: int = NUM_FRAMES) -> List[int]:
    """``linspace(0, n - 1, T)`` truncated: T non-decreasing indices in [0, n); repeats when n < T."""
    if num_video_frames < 1:
        raise ValueError(f"a video needs at least one frame, got {num_video_frames}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    return np.linspace(0, num_video_frames - 1, num_frames).astype(np.int64).tolist()


def _natural_key(name: str):
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def list_frame_files(folder: str) -> List[str]:
    """The image files of a frames folder, in natural name order."""
    names = [n for n in os.listdir(folder) if n.lower().endswith(FRAME_EXTENSIONS) and not n.startswith(".")]
    return [osp.join(folder, n) for n in sorted(names, key=_natural_key)]


def read_video(path: str, num_frames: int = NUM_FRAMES) -> VideoFrames:
    """T frames of the video file or frames folder ``path`` (see the module docstring); raises VideoReadError."""
    if osp.isdir(path):
        return _read_frames_folder(path, num_frames)
    if not osp.isfile(path):
        raise VideoReadError(path, "no such file or folder")
    if osp.getsize(path) == 0:
        raise VideoReadError(path, "empty file")
    return _read_video_file(path, num_frames)


def _read_frames_folder(folder: str, num_frames: int) -> VideoFrames:
    files = list_frame_files(folder)
    if not files:
        raise VideoReadError(folder, f"the frames folder holds no images ({', '.join(FRAME_EXTENSIONS)})")
    indices = sample_frame_indices(len(files), num_frames)
    decoded = {}
    for index in dict.fromkeys(indices):
        try:
            image, _ = load_image(files[index])
        except (OSError, ValueError, Image.DecompressionBombError) as err:
            raise VideoReadError(folder, f"frame {files[index]}: {err}") from err
        decoded[index] = image
    return VideoFrames([decoded[i] for i in indices], indices, len(files))


def _read_video_file(path: str, num_frames: int) -> VideoFrames:
    import av

    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise VideoReadError(path, "no video stream")
            stream = container.streams.video[0]
            counted = sum(1 for packet in container.demux(stream) if packet.size)
        if counted == 0:
            raise VideoReadError(path, "the video stream has no frames")
        total = counted
        indices = sample_frame_indices(total, num_frames)
        chosen, decoded = _decode_chosen(path, indices)
        if decoded == 0:
            raise VideoReadError(path, f"none of its {counted} frames decodes")
        if any(i not in chosen for i in indices):  # fewer frames decoded than counted: choose among those
            total = decoded
            indices = sample_frame_indices(total, num_frames)
            chosen, _ = _decode_chosen(path, indices)
            if any(i not in chosen for i in indices):
                raise VideoReadError(path, "decoding it twice gave different frames")
    except VideoReadError:
        raise
    except (av.FFmpegError, OSError, ValueError) as err:
        raise VideoReadError(path, f"{type(err).__name__}: {err}") from err
    return VideoFrames([chosen[i] for i in indices], indices, total)


def _decode_chosen(path: str, indices: Sequence[int]):
    """Decode ``path`` once: ({index: RGB image} for the wanted indices, frames decoded before the end or the
    first decoding error)."""
    import av

    wanted = set(indices)
    chosen, count = {}, 0
    with av.open(path) as container:
        frames = container.decode(container.streams.video[0])
        while True:
            try:
                frame = next(frames)
            except StopIteration:
                break
            except av.FFmpegError:  # a damaged tail: keep what decoded before it
                break
            if count in wanted:
                chosen[count] = frame.to_image().convert("RGB")
            count += 1
    return chosen, count
