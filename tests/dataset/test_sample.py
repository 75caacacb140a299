"""The one sample assembly (mg_llava.dataset.sample) that the training dataset and the inference preprocessor share:
the video placeholder's round trip through XTuner's image token, and the sample layout."""
import torch
from xtuner.utils import DEFAULT_IMAGE_TOKEN, IMAGE_TOKEN_INDEX

from mg_llava.dataset import DEFAULT_VIDEO_TOKEN, VIDEO_TOKEN_INDEX
from mg_llava.dataset.sample import assemble_sample, mark_video_token, video_as_image


def test_video_placeholder_goes_through_the_image_token_and_is_marked_back():
    assert video_as_image(f"{DEFAULT_VIDEO_TOKEN}\nWhat happens?") == f"{DEFAULT_IMAGE_TOKEN}\nWhat happens?"
    assert mark_video_token([1, IMAGE_TOKEN_INDEX, 5, 2]) == [1, VIDEO_TOKEN_INDEX, 5, 2]
    assert mark_video_token([1, 5]) == [1, 5]


def test_sample_layout():
    ids = torch.tensor([1, VIDEO_TOKEN_INDEX, 7])
    views = dict(pixel_values=torch.zeros(2, 3, 4, 4), pixel_values_aux=torch.zeros(2, 3, 8, 8))
    boxes = [torch.zeros(1, 4), torch.zeros(0, 4)]
    sample = assemble_sample("v0", ids, torch.full_like(ids, -100), views, boxes, frames_per_video=[2])
    assert list(sample) == ["id", "input_ids", "labels", "frames_per_video", "pixel_values", "pixel_values_aux",
                            "boxes"]
    assert sample["frames_per_video"] == [2] and sample["boxes"] is boxes
    tiles = (torch.zeros(2, 3, 4, 4), (1, 2, 8, 4))
    tiled = assemble_sample("i0", ids, ids, dict(images=[torch.zeros(3, 5, 5)]), [torch.zeros(0, 4)], tiles=tiles)
    assert tiled["frames_per_video"] == [] and tiled["image_tiles"] == [(1, 2, 8, 4)]
    assert tiled["pixel_values_tiles"] is tiles[0] and "pixel_values" not in tiled
