"""A generated LLaVA data set with planted faults, for the pre-flight check (``tools/check_data.py``).

``build_faulty_dataset(out_dir, num_samples)`` writes, in the released formats and a release-like tree:

- ``images/{coco/train2017,gqa/images}/<name>.jpg``: tiny solid-colour JPEGs (one per image sample);
- ``data.json``: captions (one image each) and a few text-only samples;
- ``boxes.json``: one entry per image sample.

and plants one of each fault the check must find (:data:`FAULTS`, ids ``fault_<kind>``), returned with the paths so a
test can compare the check's findings with exactly these. ``max_length`` is the text length of the config that will
read the set: the over-long samples are sized against it (the byte-level tiny tokenizer gives at least one token per
4 characters).
"""
import io
import json
import os
import os.path as osp

import numpy as np
from PIL import Image

# planted fault -> the check's problem kind (mg_llava.data_check.problems.KINDS)
FAULTS = {
    "missing": "missing_media",
    "truncated": "corrupt_media",
    "not_an_image": "not_an_image",
    "wrong_folder": "wrong_folder",
    "no_box": "no_box_entry",
    "over_long": "truncated",
    "empty_answer": "answer_lost",
}
ORPHAN_ID = "orphan_entry"  # the planted box entry that matches no sample
FOLDERS = ("coco/train2017", "gqa/images")
TEXT_ONLY_EVERY = 50  # every 50th sample is text-only


def _caption(index: int) -> list:
    return [{"from": "human", "value": "<image>\nDescribe the image briefly."},
            {"from": "gpt", "value": f"A small square of colour number {index}."}]


def _box_entry(sample_id: str, index: int) -> dict:
    count = 1 + index % 5  # 1 to 5 boxes
    boxes = [[0, 0, 4 + k % 4, 4 + (k + 1) % 4] for k in range(count)]
    return {"id": sample_id, "boxes": boxes, "scores": [0.9 - 0.1 * k for k in range(count)],
            "labels": [f"thing{k % 3}" for k in range(count)]}


def _write_image(path: str, index: int, side: int) -> None:
    os.makedirs(osp.dirname(path), exist_ok=True)
    colour = (index * 37 % 256, index * 91 % 256, index * 53 % 256)
    Image.new("RGB", (side + index % 7, side), colour).save(path, quality=80)


def build_faulty_dataset(out_dir: str, num_samples: int, max_length: int, side: int = 8) -> dict:
    """Write the set under ``out_dir``; returns ``{"data_path", "image_folder", "box_file", "faults": {fault: id},
    "orphan_id", "num_samples", "num_images", "num_text"}``."""
    image_folder = osp.join(out_dir, "images")
    samples, entries = [], []
    for index in range(num_samples):
        sample_id = f"s{index:07d}"
        if index % TEXT_ONLY_EVERY == TEXT_ONLY_EVERY - 1:
            samples.append({"id": sample_id, "conversations": [{"from": "human", "value": f"What is {index} + 1?"},
                                                               {"from": "gpt", "value": str(index + 1)}]})
            continue
        image = f"{FOLDERS[index % 2]}/{sample_id}.jpg"
        _write_image(osp.join(image_folder, image), index, side)
        samples.append({"id": sample_id, "image": image, "conversations": _caption(index)})
        entries.append(_box_entry(sample_id, index))

    faults = {fault: f"fault_{fault}" for fault in FAULTS}
    long_text = " ".join(f"word{k}" for k in range(max_length))  # > max_length tokens
    planted = {
        "missing": dict(image="coco/train2017/never_downloaded.jpg"),
        "truncated": dict(image="coco/train2017/truncated.jpg"),
        "not_an_image": dict(image="gqa/images/not_an_image.jpg"),
        "wrong_folder": dict(image="gqa/images/moved.jpg"),  # the file is in coco/train2017/
        "no_box": dict(image="coco/train2017/no_box.jpg"),
        "over_long": dict(image="coco/train2017/over_long.jpg", answer=long_text),  # the answer's start survives
        "empty_answer": dict(image="gqa/images/empty_answer.jpg", question=long_text),  # the answer is cut off
    }
    for number, (fault, spec) in enumerate(planted.items()):
        question = "<image>\n" + spec.get("question", "Describe the image briefly.")
        samples.append({"id": faults[fault], "image": spec["image"],
                        "conversations": [{"from": "human", "value": question},
                                          {"from": "gpt", "value": spec.get("answer", "A planted sample.")}]})
        if fault != "no_box":
            entries.append(_box_entry(faults[fault], number))
    for name in ("no_box", "over_long"):
        _write_image(osp.join(image_folder, "coco/train2017", f"{name}.jpg"), 3, side)
    _write_image(osp.join(image_folder, "gqa/images/empty_answer.jpg"), 4, side)
    _write_image(osp.join(image_folder, "coco/train2017/moved.jpg"), 5, side)
    # a download cut short: noise (so that the pixel data, not the header, is most of the file), cut at 2/3
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="JPEG", quality=90)
    with open(osp.join(image_folder, "coco/train2017/truncated.jpg"), "wb") as f:
        f.write(buffer.getvalue()[: 2 * len(buffer.getvalue()) // 3])
    with open(osp.join(image_folder, "gqa/images/not_an_image.jpg"), "w") as f:
        f.write("<html>404 Not Found</html>\n")
    entries.append(_box_entry(ORPHAN_ID, 0))

    paths = dict(data_path=osp.join(out_dir, "data.json"), image_folder=image_folder,
                 box_file=osp.join(out_dir, "boxes.json"))
    for key, content in (("data_path", samples), ("box_file", entries)):
        with open(paths[key], "w") as f:
            json.dump(content, f)
    num_text = sum("image" not in s for s in samples)
    return dict(paths, faults=faults, orphan_id=ORPHAN_ID, num_samples=len(samples),
                num_images=len(samples) - num_text, num_text=num_text)


def main(argv=None):
    """``python -m mg_llava.testing.faulty_dataset OUT_DIR [--samples N] [--max-length L]``: write the set."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("out_dir")
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--max-length", type=int, default=512, help="the reading config's max_length (tiny: 512)")
    args = parser.parse_args(argv)
    written = build_faulty_dataset(args.out_dir, args.samples, args.max_length)
    print(json.dumps(written, indent=1))


if __name__ == "__main__":
    main()
