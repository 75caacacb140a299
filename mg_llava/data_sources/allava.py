"""ALLaVA-4V's caption and instruction files -> LLaVA format under the release's tree.

Source (FreedomIntelligence/ALLaVA-4V): ``allava_laion/ALLaVA-Caption-LAION-4V.json``,
``allava_laion/ALLaVA-Instruct-LAION-4V.json``, ``allava_vflan/ALLaVA-Caption-VFLAN-4V.json`` and
``allava_vflan/ALLaVA-Instruct-VFLAN-4V.json``: JSON lists of ``{"id", "image", "conversations": [{"from", "value"}]}``
with the image path relative to the dataset's root (``allava_laion/images/<n>.jpeg``,
``allava_vflan/images/images_191task_1k/<name>.jpg``; the images come as zip chunks that unpack to those folders).
Roles may be written ``human``/``gpt`` or ``user``/``assistant``, and the ``<image>`` placeholder is not guaranteed at
the start of the question (or at all). ids are unique within a file, not across the caption and instruction files.

Out: samples whose image paths are relative to ``data/`` of the release's tree (``allava_laion/images/...``: a path
already under the source's folder is kept, another is put under it), roles human/gpt, ``<image>`` once at the start
of the first question, string ids unique over all the files converted together (a file's repeated ids get ``_<n>``).
Items without an image stay text-only samples.
"""
from typing import Iterable, List, Tuple

from xtuner.utils import DEFAULT_IMAGE_TOKEN

from .llava_format import ConversionReport, UniqueIds, finish, normalise_placeholder

SOURCES = ("allava_laion", "allava_vflan")


def source_of(filename: str) -> str:
    """``allava_laion`` or ``allava_vflan`` from a file's name (``...-LAION-4V.json`` / ``...-VFLAN-4V.json``)."""
    upper = filename.upper()
    found = [s for s in SOURCES if s.split("_")[1].upper() in upper]
    if len(found) != 1:
        raise ValueError(f"{filename}: cannot tell LAION from Vision-FLAN by the name; give the source "
                         f"({' or '.join(SOURCES)})")
    return found[0]


def convert_allava(files: Iterable[Tuple[str, str, Iterable[dict]]]) -> Tuple[List[dict], ConversionReport]:
    """LLaVA samples from ``(name, source, items)`` per file (``source``: ``allava_laion`` or ``allava_vflan``, the
    folder under ``data/``), converted together (one report, ids unique over all of them)."""
    files = list(files)
    report, out = ConversionReport(", ".join(name for name, _, _ in files)), []
    unique = UniqueIds(report)
    for name, source, items in files:
        if source not in SOURCES:
            raise ValueError(f"{name}: source must be one of {SOURCES}, got {source!r}")
        for number, item in enumerate(items):
            report.read += 1
            if not isinstance(item, dict):
                report.drop(f"not a JSON object: {type(item).__name__}", f"{name} item {number}")
                continue
            sample = {"id": unique(item.get("id", f"{source}_{number}"))}
            image = item.get("image")
            if isinstance(image, str) and image:
                path = image[2:] if image.startswith("./") else image
                if not path.startswith(source + "/"):
                    path = f"{source}/{path}"
                    report.changed[f"image path put under {source}/"] += 1
                sample["image"] = path
            elif image is not None:
                sample["image"] = image  # the check below names it
            turns = item.get("conversations")
            token = DEFAULT_IMAGE_TOKEN if "image" in sample else None
            sample["conversations"] = normalise_placeholder(turns, token, report) if isinstance(turns, list) else turns
            finish(sample, report, out)
    return out, report
