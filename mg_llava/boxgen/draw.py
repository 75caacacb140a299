"""Draw boxes and labels on images and tile them into one PNG, to check a detector on a new dataset."""
import colorsys
import hashlib
import math
from typing import List, Sequence, Tuple

from PIL import Image, ImageDraw, ImageFont


def label_color(label: str) -> Tuple[int, int, int]:
    """A stable, saturated colour per label."""
    hue = int(hashlib.md5(label.encode("utf-8")).hexdigest()[:8], 16) / 0xFFFFFFFF
    return tuple(int(255 * c) for c in colorsys.hsv_to_rgb(hue, 0.9, 1.0))


def draw_boxes(image: Image.Image, record: dict, max_boxes: int = 50, font_size: int = 14) -> Image.Image:
    """Copy of ``image`` with ``record``'s boxes (original pixels) drawn, each captioned ``label score``."""
    canvas = image.convert("RGB").copy()
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=font_size)
    width = max(2, round(max(canvas.size) / 300))
    scores = record.get("scores") or [None] * len(record["boxes"])
    for box, label, score in list(zip(record["boxes"], record["labels"], scores))[:max_boxes]:
        color = label_color(label)
        draw.rectangle(box, outline=color, width=width)
        caption = label if score is None else f"{label} {score:.2f}"
        left, top, right, bottom = draw.textbbox((box[0], box[1]), caption, font=font)
        draw.rectangle((left, top, right + 2, bottom + 2), fill=color)
        draw.text((box[0] + 1, box[1] + 1), caption, fill=(0, 0, 0), font=font)
    return canvas


def make_grid(panels: Sequence[Tuple[Image.Image, str]], cell: int = 384, cols: int = 4) -> Image.Image:
    """Tile ``(image, title)`` panels, each fitted into ``cell`` x ``cell`` with its title above."""
    if not panels:
        raise ValueError("no images to draw")
    cols = min(cols, len(panels))
    rows = math.ceil(len(panels) / cols)
    title_h = 20
    grid = Image.new("RGB", (cols * cell, rows * (cell + title_h)), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    font = ImageFont.load_default(size=13)
    for k, (image, title) in enumerate(panels):
        x, y = (k % cols) * cell, (k // cols) * (cell + title_h)
        thumb = image.copy()
        thumb.thumbnail((cell, cell))
        grid.paste(thumb, (x + (cell - thumb.width) // 2, y + title_h + (cell - thumb.height) // 2))
        draw.text((x + 4, y + 3), title[:60], fill=(0, 0, 0), font=font)
    return grid


def draw_samples(records: List[dict], images: List[Image.Image], out_png: str, cell: int = 384,
                 cols: int = 4) -> str:
    """Draw each record on its image and save the grid as ``out_png``."""
    panels = [(draw_boxes(img, rec), f"{rec['id']}: {len(rec['boxes'])} boxes") for rec, img in zip(records, images)]
    make_grid(panels, cell=cell, cols=cols).save(out_png)
    return out_png
