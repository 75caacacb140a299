"""Short synthetic videos made from real photographs (pans and zooms), written with PyAV, for tests and the demo."""
import os
import os.path as osp
from typing import List, Sequence, Tuple

import numpy as np
from PIL import Image

FRAME_SIZE = (96, 64)  # W, H of the generated frames (even sides: yuv420p needs them)


def pan_zoom(image: Image.Image, num_frames: int, size=FRAME_SIZE, start=(0.0, 0.0), end=(1.0, 1.0),
             zoom=(1.0, 1.0)) -> Tuple[List[Image.Image], List[Tuple[float, float, float, float]]]:
    """``num_frames`` crops of ``image`` moving from ``start`` to ``end`` (fractions of the free room on each axis),
    each crop covering ``1 / zoom`` of the largest window with the output's aspect ratio, resized to ``size``.

    Returns the frames and each frame's crop window (x0, y0, x1, y1) in the image's pixels.
    """
    width, height = image.size
    aspect = size[0] / size[1]
    base_w, base_h = (width, width / aspect) if width / height < aspect else (height * aspect, height)
    frames, windows = [], []
    for t in np.linspace(0.0, 1.0, num_frames):
        scale = 1.0 / (zoom[0] + (zoom[1] - zoom[0]) * t)
        crop_w, crop_h = base_w * scale, base_h * scale
        fx = start[0] + (end[0] - start[0]) * t
        fy = start[1] + (end[1] - start[1]) * t
        window = ((width - crop_w) * fx, (height - crop_h) * fy)
        window = (*window, window[0] + crop_w, window[1] + crop_h)
        frames.append(image.resize(size, Image.Resampling.BILINEAR, box=window))
        windows.append(window)
    return frames, windows


def boxes_in_window(boxes: Sequence[Sequence[float]], window, size=FRAME_SIZE) -> List[List[int]]:
    """Boxes (xyxy, image pixels) as they appear in a frame cropped at ``window`` and resized to ``size``: clipped
    to the frame, rounded to integer pixels (the released box format), empty ones left out (``None`` in their
    place, so labels stay aligned)."""
    x0, y0, x1, y1 = window
    sx, sy = size[0] / (x1 - x0), size[1] / (y1 - y0)
    out = []
    for bx0, by0, bx1, by1 in boxes:
        box = [min(max((bx0 - x0) * sx, 0), size[0]), min(max((by0 - y0) * sy, 0), size[1]),
               min(max((bx1 - x0) * sx, 0), size[0]), min(max((by1 - y0) * sy, 0), size[1])]
        box = [int(round(v)) for v in box]
        out.append(box if box[2] > box[0] and box[3] > box[1] else None)
    return out


def write_video(path: str, frames: Sequence[Image.Image], fps: int = 8, codec: str = "mpeg4") -> str:
    """Encode ``frames`` (equal-size RGB images) to ``path`` with PyAV; returns ``path``."""
    import av

    if not frames:
        raise ValueError("write_video needs at least one frame")
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    width, height = frames[0].size
    with av.open(path, mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"qscale": "2"} if codec == "mpeg4" else {}
        for image in frames:
            frame = av.VideoFrame.from_image(image.convert("RGB"))
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def write_frames_folder(folder: str, frames: Sequence[Image.Image], ext: str = "jpg") -> str:
    """Save ``frames`` as ``folder/1.jpg``, ``2.jpg``, ... (numbers without padding: natural order matters)."""
    os.makedirs(folder, exist_ok=True)
    for index, image in enumerate(frames, start=1):
        image.save(osp.join(folder, f"{index}.{ext}"))
    return folder
