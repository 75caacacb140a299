"""Video samples in the dataset: per-frame views and boxes, the <video> token, mixtures, and bad video samples."""
import json
import os
import os.path as osp

import numpy as np
import pytest
import torch
from dataset_helpers import gpt, human, image_sample, text_sample

from mg_llava.dataset import (VIDEO_TOKEN_INDEX, BadSampleError, llava_box_collate_fn, load_box_file, prepare_boxes,
                              read_video)
from mg_llava.testing.tiny_video_dataset import NUM_FRAMES

IMAGE_TOKEN_INDEX = -200
T = NUM_FRAMES  # frames the tiny video dataset's box file was written for


def video_sample(sample_id, video, question="<video>\nWhat is shown at the end of the video?", answer="a cat"):
    return {"id": sample_id, "video": video, "conversations": [human(question), gpt(answer)]}


@pytest.fixture(scope="module")
def video_rows(tiny_videos):
    with open(tiny_videos["video_finetune"]) as f:
        samples = json.load(f)
    with open(tiny_videos["video_boxes"]) as f:
        entries = {e["id"]: e for e in json.load(f)}
    return samples, entries


def test_video_sample_has_per_frame_views_and_its_boxes_at_their_frames(make_dataset, views, tiny_videos,
                                                                        video_rows):
    samples, entries = video_rows
    sample = samples[0]
    dataset = make_dataset([sample], [entries[sample["id"]]], video_folder=tiny_videos["video_folder"], num_frames=T)
    item = dataset[0]
    assert (item["input_ids"] == VIDEO_TOKEN_INDEX).sum() == 1 and (item["input_ids"] == IMAGE_TOKEN_INDEX).sum() == 0
    assert item["labels"][item["input_ids"] == VIDEO_TOKEN_INDEX].eq(-100).all()
    assert item["frames_per_video"] == [T] and len(item["boxes"]) == T
    assert "pixel_values" not in item and item["pixel_values_aux"].shape == (T, 3, 128, 128)
    low, aux = views.finish(item["pixel_values_aux"])  # what the model's data preprocessor makes of them

    # each frame through the same ImageViews as an image, from the frames read_video chooses
    video = read_video(osp.join(tiny_videos["video_folder"], sample["video"]), T)
    for t, frame in enumerate(video.frames):
        expected = views(frame)
        assert torch.equal(low[t], expected.pixel_values) and torch.equal(aux[t], expected.pixel_values_aux)
        entry = entries[sample["id"]]["frames"][t]
        names = {name: i for i, name in enumerate(dict.fromkeys(entry["labels"]))}
        boxes = prepare_boxes(np.asarray(entry["boxes"], np.float32).reshape(-1, 4),
                              np.asarray(entry["scores"], np.float32), np.asarray([names[n] for n in entry["labels"]]),
                              expected.geometry)
        torch.testing.assert_close(item["boxes"][t], boxes.boxes, rtol=0, atol=0)
    # the video shows two photographs: the first and last frames' boxes differ
    assert len(item["boxes"][0]) > 0 and not torch.equal(item["boxes"][0], item["boxes"][-1])


def test_text_image_and_video_samples_mix_in_one_dataset_and_one_batch(make_dataset, tiny_videos, video_rows):
    samples, entries = video_rows
    mixed = [text_sample("t"), image_sample("i", "chelsea.png"), samples[0]]
    box_entries = [{"id": "i", "boxes": [[10, 10, 200, 200]], "scores": [0.9], "labels": ["cat"]},
                   entries[samples[0]["id"]]]
    dataset = make_dataset(mixed, box_entries, video_folder=tiny_videos["video_folder"], num_frames=T)
    assert dataset.modality == [0, 1, 2]
    assert [np.sign(length) for length in dataset.modality_length] == [-1, 1, 1]
    batch = llava_box_collate_fn([dataset[i] for i in range(3)])["data"]
    assert batch["pixel_values_aux"].shape[0] == 1 + T and len(batch["boxes"]) == 1 + T
    assert batch["frames_per_video"].tolist() == [T]
    assert (batch["input_ids"][1] == IMAGE_TOKEN_INDEX).sum() == 1
    assert (batch["input_ids"][2] == VIDEO_TOKEN_INDEX).sum() == 1
    assert torch.equal(batch["pixel_values_aux"][1:], dataset[2]["pixel_values_aux"])  # the video after the image
    # resized on the device: the decoded frames, in the same order, make the same views
    from mg_llava.model import ViewsDataPreprocessor

    dataset.resize_on_device = True
    decoded = llava_box_collate_fn([dataset[i] for i in range(3)])
    assert len(decoded["data"]["images"]) == 1 + T and "pixel_values_aux" not in decoded["data"]
    preprocessor = ViewsDataPreprocessor.from_image_views(dataset.image_views)
    dataset.resize_on_device = False
    reference = preprocessor(llava_box_collate_fn([dataset[i] for i in range(3)]))["data"]
    finished = preprocessor(decoded)["data"]
    assert torch.equal(finished["pixel_values_aux"], reference["pixel_values_aux"])
    assert torch.equal(finished["pixel_values"], reference["pixel_values"])
    # a mismatch between placeholders and frames is refused with the counts
    broken = dataset[2]
    broken["frames_per_video"] = [T - 1]
    with pytest.raises(ValueError, match="video tokens"):
        llava_box_collate_fn([broken])


def test_video_box_entries_are_found_by_id_or_by_video_path(make_dataset, tiny_videos, video_rows):
    samples, entries = video_rows
    by_path = dict(entries[samples[0]["id"]])
    del by_path["id"]  # the released form: {"video", "frames"}
    dataset = make_dataset([samples[0]], [by_path], video_folder=tiny_videos["video_folder"], num_frames=T)
    assert sum(len(b) for b in dataset[0]["boxes"]) > 0


def test_bad_video_samples_are_named_or_counted(make_dataset, tiny_videos, video_rows, tmp_path):
    samples, entries = video_rows
    folder = tiny_videos["video_folder"]
    good, other = samples[0], samples[2]
    # the box entry holds T frames, the dataset samples 8: the sample is bad (the boxes would land on other frames)
    with pytest.raises(BadSampleError, match=f"{good['id']}.*video box entry frames: .* {T} frames.*num_frames=8"):
        make_dataset([good], [entries[good["id"]]], video_folder=folder, num_frames=8)
    # no entry at all
    with pytest.raises(BadSampleError, match="missing box entry: no video entry"):
        make_dataset([good], [], video_folder=folder, num_frames=T)
    dataset = make_dataset([good], [], video_folder=folder, num_frames=T, allow_missing_boxes=True)
    assert [len(b) for b in dataset[0]["boxes"]] == [0] * T

    # an unreadable video: a named error, or under 'skip' the next sample serves and the event is counted
    broken = video_sample("broken", "broken.mp4")
    with open(osp.join(folder, good["video"]), "rb") as f:
        (tmp_path / "videos").mkdir()
        (tmp_path / "videos" / "broken.mp4").write_bytes(f.read()[:200])
    os.symlink(osp.join(folder, other["video"]), tmp_path / "videos" / other["video"])
    box_entries = [dict(entries[other["id"]]), dict(entries[other["id"]], id="broken", video="broken.mp4")]
    dataset = make_dataset([broken, other], box_entries, video_folder=str(tmp_path / "videos"), num_frames=T)
    with pytest.raises(BadSampleError, match=r"id 'broken'.*unreadable video \(\w+\): .*broken.mp4"):
        dataset[0]
    dataset = make_dataset([broken, other], box_entries, video_folder=str(tmp_path / "videos"), num_frames=T,
                           on_bad_sample="skip")
    assert dataset[0]["id"] == other["id"] and dataset.num_replaced == 1 and dataset.events["replaced"] == 1


def test_box_file_written_for_the_dataset_reads_back_at_the_same_frames(tiny_videos):
    table = load_box_file(tiny_videos["video_boxes"])
    assert len(table.video_keys) > 0
    assert all(len(table.frame_rows(key)) == T for key in table.video_keys)
