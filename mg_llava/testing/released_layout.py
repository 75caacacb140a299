"""A small replica of the MG-LLaVA release's data layout, from the tiny photo dataset (:mod:`.tiny_dataset`).

The release reads each stage from one LLaVA-format JSON and one box JSON, with ``image_folder`` the ``data/`` folder
its data guide lays out (data_prep/README.md). ``build_released_layout(data_root, stage)`` writes under ``data_root``:

- ``train_json/<stage file>``: one list mixing the stage's sources, each sample's ``image`` a path relative to
  ``data_root`` in its source's folder, ids as the sources write them (LLaVA-Pretrain's numbers, ALLaVA's
  ``allava_laion_cap_*``, COCO's 12-digit ids, ...);
- ``bbox_json/train/<stage file>_only_box.json``: the released box format, one entry per id;
- the image folders of the release's tree (``LLaVA-Pretrain/images/00453/...``, ``allava_laion/images``,
  ``coco/train2017``, ``vg/VG_100K_2``, ...), the eight photos placed in them under the sources' file names.

With ``faults=True`` it also plants one bad sample of each kind training meets (and returns them): an image missing
from the download, a truncated image, a sample without a box entry, and a question so long that ``max_length`` leaves
no answer token.
"""
import json
import os
import os.path as osp
import shutil
import tempfile

from .tiny_dataset import build_tiny_dataset

STAGE_FILES = {  # the release's file names (data_prep/README.md: the training JSONs' names are assumed)
    "pretrain": ("train_json/pretrain_blip_allava_1266k.json",
                 "bbox_json/train/pretrain_blip_allava_1266k_only_box.json"),
    "finetune": ("train_json/instruct_llava_allava_doc_dvqa_share_ai2d_1383k.json",
                 "bbox_json/train/instruct_llava_allava_doc_dvqa_share_ai2d_1383k_only_box.json"),
}

# photo -> (id, path under data/) as each source names its images; stage 1: LLaVA-Pretrain and ALLaVA captions
PRETRAIN = {
    "astronaut": ("004539375", "LLaVA-Pretrain/images/00453/004539375.jpg"),
    "chelsea": ("002239345", "LLaVA-Pretrain/images/00223/002239345.jpg"),
    "coffee": ("000116101", "LLaVA-Pretrain/images/00011/000116101.jpg"),
    "rocket": ("allava_laion_cap_100277305", "allava_laion/images/100277305.jpeg"),
    "camera": ("allava_laion_cap_100366118", "allava_laion/images/100366118.jpeg"),
    "coins": ("allava_vflan_cap_100015", "allava_vflan/images/images_191task_1k/CLEVR+question_answer_0_1.jpg"),
    "clock": ("allava_vflan_cap_100231", "allava_vflan/images/images_191task_1k/VQA-E+question_2_231.jpg"),
    "moon": ("allava_vflan_cap_100512", "allava_vflan/images/images_191task_1k/wikiart+art_genre_512.jpg"),
}
# stage 2: LLaVA-665K's folders, ALLaVA's instructions and the 25K (ShareGPT4V's web/art folders, AI2D, DocVQA, DVQA)
FINETUNE = {
    "astronaut": [("000000033471", "coco/train2017/000000033471.jpg"), ("2354786", "gqa/images/2354786.jpg"),
                  ("sharegpt4v_celebrity_1", "web-celebrity/images/Neil_Armstrong_1.jpg")],
    "chelsea": [("1580805", "vg/VG_100K/1580805.jpg"), ("allava_laion_inst_100277305",
                                                          "allava_laion/images/100277305.jpeg")],
    "coffee": [("2417901", "vg/VG_100K_2/2417901.jpg"), ("sharegpt4v_textvqa_3", "share_textvqa/images/3a1b.jpg")],
    "rocket": [("sharegpt4v_landmark_7", "web-landmark/images/Kennedy_Space_Center_7.jpg")],
    "camera": [("0001a2b3c4d5e6f7", "textvqa/train_images/0001a2b3c4d5e6f7.jpg"),
               ("sharegpt4v_wikiart_9", "wikiart/images/man-with-camera-9.jpg")],
    "coins": [("140031996", "ocr_vqa/images/140031996.jpg"), ("dvqa_bar_train_00000001",
                                                               "dvqa/images/bar_train_00000001.png")],
    "clock": [("allava_vflan_inst_100231", "allava_vflan/images/images_191task_1k/VQA-E+question_2_231.jpg"),
              ("docvqa_ffbf0023_4", "docvqa/images/ffbf0023_4.png")],
    "moon": [("ai2d_4567", "ai2d/images/4567.png")],
}


def _place(photo: str, rel: str, data_root: str) -> None:
    dest = osp.join(data_root, rel)
    os.makedirs(osp.dirname(dest), exist_ok=True)
    if rel.endswith(".png"):  # the PNG-only sources (DocVQA, DVQA, AI2D)
        from PIL import Image

        Image.open(photo).save(dest)
    else:
        shutil.copyfile(photo, dest)


def build_released_layout(data_root: str, stage: str = "pretrain", faults: bool = False) -> dict:
    """Write the replica of ``stage`` under ``data_root``; returns ``{"data_path", "box_file", "image_folder",
    "samples": the JSON's samples, "planted": {id: kind}}`` (``planted`` empty without ``faults``)."""
    json_name, box_name = STAGE_FILES[stage]
    with tempfile.TemporaryDirectory() as scratch:
        tiny = build_tiny_dataset(scratch)
        with open(tiny[stage]) as f:
            tiny_samples = json.load(f)
        with open(tiny["boxes"]) as f:
            tiny_boxes = {entry["id"]: entry for entry in json.load(f)}
        places = {name: [where] for name, where in PRETRAIN.items()} if stage == "pretrain" else FINETUNE
        samples, boxes = [], []
        for name, targets in places.items():
            photo = osp.join(tiny["image_folder"], f"{name}.jpg")
            conversations = [s["conversations"] for s in tiny_samples if s.get("id") == name]
            for k, (sample_id, rel) in enumerate(targets):
                _place(photo, rel, data_root)
                samples.append({"id": sample_id, "image": rel, "conversations": conversations[k % len(conversations)]})
                boxes.append(dict(tiny_boxes[name], id=sample_id))
        samples += [dict(s) for s in tiny_samples if "image" not in s]  # text-only (stage 2)

    planted = {}
    if faults:
        caption = samples[0]["conversations"]
        bad = [
            ("missing image", {"id": "009990001", "image": "LLaVA-Pretrain/images/00999/009990001.jpg"}),
            ("truncated image", {"id": "allava_laion_cap_100999999", "image": "allava_laion/images/100999999.jpeg"}),
            ("no box entry", {"id": "allava_vflan_cap_100999", "image": samples[1]["image"]}),
        ]
        with open(osp.join(data_root, samples[0]["image"]), "rb") as f:
            head = f.read()
        with open(osp.join(data_root, bad[1][1]["image"]), "wb") as f:
            f.write(head[: len(head) // 3])  # the first third of a JPEG: decodes to an error, not a picture
        for kind, sample in bad:
            samples.append(dict(sample, conversations=caption))
            planted[sample["id"]] = kind
            if kind != "no box entry":
                boxes.append(dict(boxes[0], id=sample["id"]))
        long_question = "<image>\n" + "Describe every detail of this picture again and again. " * 120
        samples.append({"id": "004999999", "image": samples[0]["image"],
                        "conversations": [dict(caption[0], value=long_question), caption[1]]})
        boxes.append(dict(boxes[0], id="004999999"))
        planted["004999999"] = "no answer within max_length"

    paths = {"data_path": osp.join(data_root, json_name), "box_file": osp.join(data_root, box_name),
             "image_folder": data_root}
    for key, content in (("data_path", samples), ("box_file", boxes)):
        os.makedirs(osp.dirname(paths[key]), exist_ok=True)
        with open(paths[key], "w") as f:
            json.dump(content, f)
    return dict(paths, samples=samples, planted=planted)
