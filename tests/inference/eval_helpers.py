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


# The good questions of write_mc_tsv: index, question, hint, options A-D, answer, category, photo
MC_ROWS = [
    ["10", "What animal is it?", "Look closely.", "a dog", "a cat", "a bird", "a fish", "B", "animals", "chelsea"],
    ["11", "What is in the cup?", "nan", "tea", "coffee", "milk", "", "B", "objects", "coffee"],
    ["12", "Is the animal sleeping?", "", "yes", "no", "", "", "B", "animals", "chelsea"],
    ["13", "What flies here?", "", "a rocket", "a plane", "", "", "A", "objects", "rocket"],
]


def write_mc_tsv(path, extra_rows=()):
    """4 good questions: 10 (hint, 4 options), 11 (3 options), 12 (reuses row 10's image), 13 (2 options)."""
    rows = [row[:-1] + ["10" if row[0] == "12" else b64_image(row[-1])] for row in MC_ROWS]
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


def check_answers_depend_on_the_image(answer, photos, right, spare=()):
    """The precondition of a cross-path comparison: on its very items, the model's answers depend on the image, so
    two paths that agree agree on a model that looks (a constant-answer model would make any two paths agree).

    ``answer(photos)`` -> one answer per item, each item asked about ``photos[i]``; ``photos``: the items' own
    photos; ``right(i, answer)``: whether ``answer`` is right for item i. Fails (AssertionError) unless the answers
    hold at least two different texts, some right and some wrong, and at least one answer changes when every item
    is asked about another item's photo (each item gets the next item's photo that differs from its own, else the
    first of ``spare``, photos for items that share one). Returns (answers, answers about the swapped photos).
    """
    answers = list(answer(list(photos)))
    assert len(set(answers)) >= 2, f"the same answer for every item: {answers}"
    verdicts = [bool(right(i, a)) for i, a in enumerate(answers)]
    assert any(verdicts) and not all(verdicts), f"answers {answers}, right: {verdicts} (need some right, some wrong)"
    swapped_photos = []
    for i, photo in enumerate(photos):
        later = list(photos[i + 1:]) + list(photos[:i])
        others = [p for p in later + list(spare) if p != photo]
        assert others, "the items need at least two different photos, or a spare one"
        swapped_photos.append(others[0])
    swapped = list(answer(swapped_photos))
    assert any(a != b for a, b in zip(answers, swapped)), (
        f"no answer changed when the photos were swapped: {answers} (photos {list(photos)} -> {swapped_photos})")
    return answers, swapped
