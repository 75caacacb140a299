"""Box generation on video samples: the dataset's frames, the released per-frame format, resume, and read-back."""
import json
import os.path as osp

import pytest
from boxgen_helpers import write_llava

from mg_llava.boxgen.images import to_uint8_tensor
from mg_llava.boxgen.pipeline import run_shard
from mg_llava.boxgen.shards import merge_shards
from mg_llava.dataset import load_box_file, read_video

T = 4


class Killed(Exception):
    pass


def kill_after_first_batch(batch_index):
    raise Killed


@pytest.fixture(scope="module")
def views(tiny_models):
    from transformers import CLIPImageProcessor

    from mg_llava.dataset import ImageViews

    return ImageViews(CLIPImageProcessor.from_pretrained(tiny_models["clip"]), high_res=128)


@pytest.fixture(scope="module")
def tokenizer_vicuna(tiny_models):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_models["llm_vicuna"])


@pytest.fixture(scope="module")
def video_annotation(tiny_videos, photo_dir, tmp_path_factory):
    with open(tiny_videos["video_finetune"]) as f:
        videos = json.load(f)[:6:2]  # three different videos
    broken = dict(videos[0], id="broken", video="missing.mp4")
    path = tmp_path_factory.mktemp("ann") / "mixed.json"
    return write_llava(path, ["chelsea.jpg"], extra_rows=videos + [broken]), videos


def test_video_samples_get_boxes_per_sampled_frame_and_the_dataset_reads_them(
        generator, video_annotation, tiny_videos, photo_dir, tmp_path, views, tokenizer_vicuna):
    annotation, videos = video_annotation
    options = dict(image_folder=photo_dir, video_folder=tiny_videos["video_folder"], num_frames=T, batch_size=2,
                   num_workers=0, progress=False)
    with pytest.raises(Killed):  # killed after the first batch: the image and the first video are on disk
        run_shard(generator, annotation, str(tmp_path), on_batch_end=kill_after_first_batch, **options)
    report = run_shard(generator, annotation, str(tmp_path), **options)
    assert report["resumed_done"] == 2 and report["processed"] == 3 and report["skipped"] == 1
    summary = merge_shards(str(tmp_path))
    assert summary["images"] == 1 + 3 * T and summary["skipped"] == {"missing": 1}

    with open(summary["box_file"]) as f:
        entries = json.load(f)
    assert set(entries[0]) == {"id", "boxes", "scores", "labels"}
    for entry, sample in zip(entries[1:], videos):
        assert set(entry) == {"id", "video", "frames"} and entry["video"] == sample["video"]
        assert len(entry["frames"]) == T and all(set(f) == {"boxes", "scores", "labels"} for f in entry["frames"])
        # the frames the dataset samples, each detected on its own
        frames = read_video(osp.join(tiny_videos["video_folder"], sample["video"]), T).frames
        expected = generator.generate([to_uint8_tensor(frame) for frame in frames])
        assert [f["boxes"] for f in entry["frames"]] == [e["boxes"] for e in expected]
        assert [f["labels"] for f in entry["frames"]] == [e["labels"] for e in expected]
    assert sum(len(f["boxes"]) for e in entries[1:] for f in e["frames"]) > 0

    # the dataset reads the file back: every video sample finds its T frames' boxes
    from xtuner.dataset.map_fns import template_map_fn_factory

    from mg_llava.dataset import PROMPT_TEMPLATE, LLaVABoxDataset

    table = load_box_file(summary["box_file"])
    assert all(len(table.frame_rows(sample["id"])) == T for sample in videos)
    with open(annotation) as f:
        rows = [row for row in json.load(f) if row.get("video") and row["id"] != "broken"]
    for row in rows:
        row["conversations"] = [{"from": "human", "value": "<video>\nWhat is shown?"},
                                {"from": "gpt", "value": "a cat"}]
    data = tmp_path / "videos.json"
    data.write_text(json.dumps(rows))
    dataset = LLaVABoxDataset(image_folder=photo_dir, video_folder=tiny_videos["video_folder"], num_frames=T,
                              image_views=views, data_path=str(data), tokenizer=tokenizer_vicuna,
                              box_file=summary["box_file"], max_length=128, num_proc=1,
                              template_map_fn=dict(type=template_map_fn_factory, template=PROMPT_TEMPLATE.vicuna))
    assert len(dataset) == 3
    for i, entry in enumerate(entries[1:]):
        assert [len(b) <= len(f["boxes"]) for b, f in zip(dataset[i]["boxes"], entry["frames"])] == [True] * T
