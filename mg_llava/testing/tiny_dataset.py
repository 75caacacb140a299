"""A small dataset of real photographs (from scikit-image) with conversations and boxes, for the CPU demo and tests.

``build_tiny_dataset(out_dir)`` writes, in the released formats:

- ``images/<name>.jpg``: eight photographs shipped inside scikit-image;
- ``pretrain.json``: one caption per image (stage 1);
- ``finetune.json``: questions whose answers depend on the image, multi-turn ones, and a text-only sample (stage 2);
- ``boxes.json``: the released box-file format, in original-image pixels; ``moon`` has no boxes on purpose.

Box coordinates were read off the pictures by eye: good enough to teach a tiny model, not ground truth.
"""
import json
import os
import os.path as osp

from .images import load_skimage

# name -> (caption, short answer to "What is the main object?", {label: [boxes in original pixels]})
IMAGES = {
    "astronaut": (
        "An astronaut in an orange suit smiles in front of a flag and a space shuttle model.",
        "an astronaut",
        {
            "person": [[20, 20, 360, 512]],
            "face": [[150, 20, 300, 190]],
            "helmet": [[275, 340, 505, 512]],
            "flag": [[0, 0, 95, 512]],
            "space shuttle": [[355, 0, 470, 280]],
        },
    ),
    "chelsea": (
        "An orange tabby cat looks to the side.",
        "a cat",
        {"cat": [[40, 0, 451, 300]], "cat head": [[90, 10, 330, 250]]},
    ),
    "coffee": (
        "A cup of coffee on a red saucer with a spoon, on a wooden table.",
        "a cup of coffee",
        {"cup": [[170, 15, 410, 300]], "saucer": [[75, 70, 480, 390]], "spoon": [[325, 65, 425, 325]]},
    ),
    "rocket": (
        "A rocket stands on a launch pad between towers at dusk.",
        "a rocket",
        {
            "rocket": [[295, 125, 340, 410]],
            "tower": [[0, 0, 90, 427], [555, 0, 640, 427], [165, 120, 210, 427], [435, 120, 480, 427]],
        },
    ),
    "camera": (
        "A black and white photo of a man with a camera on a tripod.",
        "a cameraman",
        {"person": [[120, 40, 420, 512]], "camera": [[230, 70, 330, 160]], "tripod": [[280, 150, 420, 512]]},
    ),
    "coins": (
        "Many old coins lie on a dark background.",
        "coins",
        {"coin": [[18 + 60 * c, 20 + 70 * r, 72 + 60 * c, 80 + 70 * r] for r in range(4) for c in range(6)]},
    ),
    "clock": (
        "A black and white photo of a clock.",
        "a clock",
        {"clock": [[80, 20, 330, 290]]},
    ),
    "moon": (
        "A grey photo of the surface of the moon with craters.",
        "the moon",
        {},
    ),
}

YES_NO = {"cat": {"chelsea"}, "person": {"astronaut", "camera"}}


def _turn(question, answer):
    return [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]


def build_tiny_dataset(out_dir: str) -> dict:
    """Write the dataset under ``out_dir``; returns the paths of its parts."""
    image_dir = osp.join(out_dir, "images")
    os.makedirs(image_dir, exist_ok=True)
    pretrain, finetune, boxes = [], [], []
    for name, (caption, answer, objects) in IMAGES.items():
        load_skimage(name).save(osp.join(image_dir, f"{name}.jpg"), quality=90)
        image = f"{name}.jpg"
        pretrain.append({"id": name, "image": image, "conversations": _turn("<image>\nDescribe the image briefly.",
                                                                           caption)})
        finetune.append({"id": name, "image": image,
                         "conversations": _turn("<image>\nWhat is the main object in the image?", answer)})
        for thing, names in YES_NO.items():
            finetune.append({
                "id": name,
                "image": image,
                "conversations": _turn(
                    f"<image>\nIs there a {thing} in the image? Please answer the question with yes or no.",
                    "Yes" if name in names else "No",
                ),
            })
        finetune.append({
            "id": name,
            "image": image,
            "conversations": _turn("<image>\nDescribe the image briefly.", caption)
            + _turn("How many kinds of objects are marked?", str(len(objects))),
        })
        labels = [label for label, items in objects.items() for _ in items]
        flat = [box for items in objects.values() for box in items]
        boxes.append({"id": name, "boxes": flat, "scores": [0.9] * len(flat), "labels": labels})
    finetune.append({"id": "text_only", "conversations": _turn("What is two plus two?", "four")})

    paths = {"image_folder": image_dir}
    for part, content in (("pretrain", pretrain), ("finetune", finetune), ("boxes", boxes)):
        paths[part] = osp.join(out_dir, f"{part}.json")
        with open(paths[part], "w") as f:
            json.dump(content, f, indent=1)
    return paths
