"""Small benchmark files in every supported format (a uniquely named module: tests/ has no packages)."""
import base64
import io
import json
import os.path as osp

from mg_llava.testing.images import load_skimage

MC_HEADER = ["index", "question", "hint", "A", "B", "C", "D", "answer", "category", "image"]


def b64_image(name, size=96):
    buffer = io.BytesIO()
    load_skimage(name).resize((size, size)).save(buffer, format="JPEG")
    return base64.b64encode(buffer.getvalue()).decode()


def write_tsv(path, header, rows):
    with open(path, "w") as f:
        f.write("\t".join(header) + "\n")
        for row in rows:
            f.write((row if isinstance(row, str) else "\t".join(str(v) for v in row)) + "\n")
    return str(path)


def write_mc_tsv(path, extra_rows=()):
    """4 good questions: 10 (hint, 4 options), 11 (3 options), 12 (reuses row 10's image), 13 (2 options)."""
    rows = [
        ["10", "What animal is it?", "Look closely.", "a dog", "a cat", "a bird", "a fish", "B", "animals",
         b64_image("chelsea")],
        ["11", "What is in the cup?", "nan", "tea", "coffee", "milk", "", "B", "objects", b64_image("coffee")],
        ["12", "Is the animal sleeping?", "", "yes", "no", "", "", "B", "animals", "10"],
        ["13", "What flies here?", "", "a rocket", "a plane", "", "", "A", "objects", b64_image("rocket")],
    ]
    return write_tsv(path, MC_HEADER, rows + list(extra_rows))


def write_jsonl(path, records):
    with open(path, "w") as f:
        for record in records:
            f.write((record if isinstance(record, str) else json.dumps(record)) + "\n")
    return str(path)


def image_folder(root):
    folder = osp.join(str(root), "images")
    import os

    os.makedirs(folder, exist_ok=True)
    for name in ("chelsea", "coffee", "rocket", "astronaut"):
        load_skimage(name).resize((96, 96)).save(osp.join(folder, f"{name}.jpg"))
    return folder


def boxes_for(ids, root, name="boxes.json"):
    """A box file with one box per id (every image is 96x96)."""
    path = osp.join(str(root), name)
    with open(path, "w") as f:
        json.dump([{"id": str(i), "boxes": [[10, 10, 60, 70]], "scores": [0.9], "labels": ["thing"]} for i in ids], f)
    return path
