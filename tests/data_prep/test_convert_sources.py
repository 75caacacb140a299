"""The converters of data_prep/ on small replicas of each source's published format, built here; their output must
pass the training dataset's own reader (every sample accepted, none left out) and say what it changed and left out.

Source formats (what each replica reproduces):

- VideoInstruct-100K (Video-ChatGPT, ``VideoInstruct_Dataset.json``): a JSON list of ``{"video_id": "v_<id>",
  "q": question, "a": answer}``, several pairs per video; the videos are ActivityNet files ``<video_id>.<ext>``
  (mp4 mostly, also mkv / webm).
- Video-LLaVA's training JSONs (``valley_.json``: 703K Valley video captions; ``videochatgpt_tune_.json``; and their
  mixes with LLaVA images): LLaVA-like lists ``{"id", "video" | "image", "conversations"}`` where the media field may
  be a list, an item may carry both kinds, ``<video>`` may follow the question instead of leading it, and ids repeat
  or are numbers (Video-LLaVA's loader renumbers them).
- ALLaVA-4V (``allava_laion/ALLaVA-Caption-LAION-4V.json``, ``...-Instruct-LAION-4V.json``, and the VFLAN pair):
  JSON lists of ``{"id", "image", "conversations"}``, the image path relative to the dataset's root
  (``allava_laion/images/<n>.jpeg``, ``allava_vflan/images/images_191task_1k/<name>.jpg``), roles human/gpt or
  user/assistant, ``<image>`` not always leading the question; ids unique per file only.
"""
import importlib.util
import json
import os.path as osp

import pytest

from mg_llava.dataset import read_llava_file

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def tool(name):
    spec = importlib.util.spec_from_file_location(f"data_prep_{name}", osp.join(ROOT, "data_prep", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write(path, value):
    with open(path, "w") as f:
        json.dump(value, f)
    return str(path)


def read_back(path):
    """The converted file through the dataset's reader: (records, bad samples)."""
    return read_llava_file(str(path))


def test_videoinstruct_pairs_become_video_samples(tmp_path, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("v_abc.mp4", "v_def.mkv"):  # v_gone's file was never downloaded
        (videos / name).write_bytes(b"")
    pairs = [
        {"video_id": "v_abc", "q": "What is the man doing?", "a": "He is juggling."},
        {"video_id": "v_abc", "q": "How many balls are there?", "a": "Three."},
        {"video_id": "v_def", "q": "Where is this?", "a": "In a park."},
        {"video_id": "v_gone", "q": "What happens?", "a": "A dog runs."},
        {"video_id": "v_def", "q": "  ", "a": "Nothing."},
    ]
    out = tmp_path / "videochatgpt_llavaformat.json"
    tool("convert_videochatgpt").main([write(tmp_path / "VideoInstruct_Dataset.json", pairs), str(out),
                                       "--video-folder", str(videos)])
    records, bad = read_back(out)
    assert bad == []
    assert [(r["id"], r["video"]) for r in records] == [("v_abc_0", "v_abc.mp4"), ("v_abc_1", "v_abc.mp4"),
                                                        ("v_def_0", "v_def.mkv")]
    with open(out) as f:
        first = json.load(f)[0]
    assert first["conversations"] == [{"from": "human", "value": "<video>\nWhat is the man doing?"},
                                      {"from": "gpt", "value": "He is juggling."}]
    report = capsys.readouterr().out
    assert "read 5, wrote 3, left out 2" in report
    assert "1 x video not in" in report and "['v_gone_0']" in report and "1 x empty question or answer" in report


def test_video_llava_items_become_one_media_samples(tmp_path, capsys):
    caption = [{"from": "human", "value": "Describe the video briefly.\n<video>"}, {"from": "gpt", "value": "A cat."}]
    items = [
        {"id": 0, "video": "valley/000001_000050/1.mp4", "conversations": caption},
        {"id": 0, "video": ["valley/000001_000050/2.mp4"], "conversations": caption},
        {"id": "x", "video": ["valley/a.mp4", "valley/b.mp4"], "conversations": caption},
        {"id": "y", "video": "valley/c.mp4", "image": "llava_image/d.jpg", "conversations": caption},
        {"id": "GCC_1", "image": "llava_image/GCC_1.jpg",
         "conversations": [{"from": "human", "value": "<image>\nWhat is this?"}, {"from": "gpt", "value": "A dog."}]},
        {"id": "t", "conversations": [{"from": "human", "value": "Hi."}, {"from": "gpt", "value": "Hello."}]},
        {"id": "bad", "video": "valley/e.mp4", "conversations": [{"from": "human", "value": "<video>"}]},
    ]
    out = tmp_path / "valley.json"
    tool("convert_video_llava").main([write(tmp_path / "valley_.json", items), str(out),
                                      "--video-prefix", "Video-LLaVA/"])
    records, bad = read_back(out)
    assert bad == []
    assert [(r["id"], r["video"], r["image"]) for r in records] == [
        ("0", "Video-LLaVA/valley/000001_000050/1.mp4", None), ("0_1", "Video-LLaVA/valley/000001_000050/2.mp4", None),
        ("GCC_1", None, "llava_image/GCC_1.jpg"), ("t", None, None)]
    with open(out) as f:
        assert json.load(f)[0]["conversations"][0]["value"] == "<video>\nDescribe the video briefly."
    report = capsys.readouterr().out
    assert "read 7, wrote 4, left out 3" in report
    for line in ("2 x <video> moved to the start of the first question", "1 x repeated id made unique",
                 "1 x one-element media list -> its path", "1 x several (or no) media files in one item",
                 "1 x image and video in one item", "1 x unanswered turn"):
        assert line in report, line


def test_allava_files_become_samples_under_the_release_tree(tmp_path, capsys):
    laion = [
        {"id": "allava_laion_cap_100277305", "image": "allava_laion/images/100277305.jpeg",
         "conversations": [{"from": "human", "value": "<image>\nPlease depict the image in words."},
                           {"from": "gpt", "value": "A rocket at dusk."}]},
        {"id": "allava_laion_cap_100366118", "image": "images/100366118.jpeg",
         "conversations": [{"from": "user", "value": "Describe the picture. <image>"},
                           {"from": "assistant", "value": "A man with a camera."}]},
    ]
    vflan = [
        {"id": "allava_laion_cap_100277305", "image": "./allava_vflan/images/images_191task_1k/CLEVR_1.jpg",
         "conversations": [{"from": "human", "value": "How many cubes are there?"}, {"from": "gpt", "value": "Two."}]},
        {"id": "v_bad", "image": "allava_vflan/images/images_191task_1k/x.jpg",
         "conversations": [{"from": "gpt", "value": "An answer first."}, {"from": "human", "value": "?"}]},
    ]
    out = tmp_path / "allava_caption.json"
    tool("convert_allava").main([write(tmp_path / "ALLaVA-Caption-LAION-4V.json", laion),
                                 write(tmp_path / "ALLaVA-Caption-VFLAN-4V.json", vflan), str(out)])
    records, bad = read_back(out)
    assert bad == []
    assert [(r["id"], r["image"]) for r in records] == [
        ("allava_laion_cap_100277305", "allava_laion/images/100277305.jpeg"),
        ("allava_laion_cap_100366118", "allava_laion/images/100366118.jpeg"),
        ("allava_laion_cap_100277305_1", "allava_vflan/images/images_191task_1k/CLEVR_1.jpg")]
    with open(out) as f:
        second, third = json.load(f)[1:]
    assert second["conversations"] == [{"from": "human", "value": "<image>\nDescribe the picture."},
                                       {"from": "gpt", "value": "A man with a camera."}]
    assert third["conversations"][0]["value"] == "<image>\nHow many cubes are there?"
    report = capsys.readouterr().out
    assert "read 4, wrote 3, left out 1" in report and "1 x bad turn order" in report
    assert "1 x <image> added" in report and "1 x <image> moved to the start of the first question" in report


def test_allava_needs_to_know_the_source_folder():
    from mg_llava.data_sources.allava import source_of

    assert source_of("ALLaVA-Instruct-VFLAN-4V.json") == "allava_vflan"
    with pytest.raises(ValueError, match="cannot tell LAION from Vision-FLAN"):
        source_of("allava_mixed.json")
