"""The collate function produces exactly the batch of docs/interfaces.md."""
import pytest
import torch
from torch.utils.data import DataLoader

from mg_llava.dataset import llava_box_collate_fn

S_LOW, S_HIGH = 4, 8


def instance(sample_id, input_ids, labels, num_boxes=None):
    """A dataset item; ``num_boxes`` None means text-only."""
    images = 0 if num_boxes is None else 1
    fill = float(sample_id)
    return dict(
        id=str(sample_id),
        input_ids=torch.tensor(input_ids),
        labels=torch.tensor(labels),
        pixel_values=torch.full((images, 3, S_LOW, S_LOW), fill),
        pixel_values_aux=torch.full((images, 3, S_HIGH, S_HIGH), fill),
        boxes=[] if num_boxes is None else [torch.full((num_boxes, 4), fill)],
    )


BATCH = [
    instance(1, [1, 5, -200, 6, 7, 2], [-100, -100, -100, -100, 7, 2], num_boxes=3),
    instance(2, [1, 8, 9, 2], [-100, -100, 9, 2]),  # text-only
    instance(3, [1, -200, 4, 2, 2], [-100, -100, -100, 2, 2], num_boxes=0),  # eos == a real token: 2
]


def test_padding_mask_and_labels():
    data = llava_box_collate_fn(BATCH, pad_index=2)["data"]
    assert set(data) == {"input_ids", "attention_mask", "labels", "pixel_values", "pixel_values_aux", "boxes"}
    assert data["input_ids"].tolist() == [[1, 5, -200, 6, 7, 2], [1, 8, 9, 2, 2, 2], [1, -200, 4, 2, 2, 2]]
    assert data["attention_mask"].dtype == torch.bool
    # from the lengths, not from the ids: sample 3 ends with two real 2s, which equal the pad id here
    assert data["attention_mask"].int().tolist() == [[1] * 6, [1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 0]]
    assert data["labels"].tolist() == [
        [-100, -100, -100, -100, 7, 2],
        [-100, -100, 9, 2, -100, -100],
        [-100, -100, -100, 2, 2, -100],
    ]
    assert data["input_ids"].dtype == data["labels"].dtype == torch.long


def test_images_in_sample_order_without_phantom_rows():
    data = llava_box_collate_fn(BATCH)["data"]
    assert data["pixel_values"].shape == (2, 3, S_LOW, S_LOW)  # 3 samples, 2 images: no row for the text-only one
    assert data["pixel_values_aux"].shape == (2, 3, S_HIGH, S_HIGH)
    assert data["pixel_values"][:, 0, 0, 0].tolist() == [1.0, 3.0]
    assert data["pixel_values_aux"][:, 0, 0, 0].tolist() == [1.0, 3.0]
    assert [b.shape for b in data["boxes"]] == [(3, 4), (0, 4)]
    assert data["boxes"][0][0, 0] == 1.0


def test_text_only_batch_has_no_image_keys():
    out = llava_box_collate_fn([BATCH[1], instance(4, [1, 2], [-100, 2])])
    assert out["data_samples"] is None
    assert set(out["data"]) == {"input_ids", "attention_mask", "labels"}
    assert llava_box_collate_fn([BATCH[1]], return_hf_format=True).keys() == out["data"].keys()


def test_placeholder_count_must_match_images():
    broken = instance(5, [1, -200, -200, 2], [-100, -100, -100, 2], num_boxes=1)
    with pytest.raises(ValueError, match=r"2 image tokens \(-200\) but 1 images: \{'5': 1\}"):
        llava_box_collate_fn([broken])


def test_length_mismatch_names_the_sample():
    with pytest.raises(ValueError, match="sample '6': 3 input_ids but 2 labels"):
        llava_box_collate_fn([instance(6, [1, 2, 3], [-100, 2])])


class _Items(torch.utils.data.Dataset):
    def __len__(self):
        return len(BATCH)

    def __getitem__(self, index):
        return BATCH[index]


def test_worker_collate_matches_main_process():
    expected = llava_box_collate_fn(BATCH)["data"]
    loader = DataLoader(_Items(), batch_size=3, num_workers=1, collate_fn=llava_box_collate_fn)
    data = next(iter(loader))["data"]
    for key in ("input_ids", "attention_mask", "labels", "pixel_values", "pixel_values_aux"):
        assert torch.equal(data[key], expected[key]), key
    assert all(torch.equal(a, b) for a, b in zip(data["boxes"], expected["boxes"]))


def uint8_instance(sample_id, input_ids, num_boxes=None):
    """A training dataset item: the high-res view only, as uint8, a channels-last view as the dataset makes it."""
    item = instance(sample_id, input_ids, [-100] * len(input_ids), num_boxes)
    del item["pixel_values"]
    pixels = torch.arange(3 * S_HIGH * S_HIGH).view(S_HIGH, S_HIGH, 3).add(sample_id).to(torch.uint8)
    item["pixel_values_aux"] = pixels.permute(2, 0, 1)[None][:len(item["boxes"])]
    return item


def test_uint8_views_are_handed_over_without_a_low_res_view():
    batch = [uint8_instance(1, [1, -200, 2], 2), uint8_instance(2, [1, 2]), uint8_instance(3, [1, -200, 2], 0)]
    data = llava_box_collate_fn(batch)["data"]
    assert "pixel_values" not in data
    aux = data["pixel_values_aux"]
    assert aux.dtype == torch.uint8 and aux.shape == (2, 3, S_HIGH, S_HIGH)
    assert torch.equal(aux, torch.stack([batch[0]["pixel_values_aux"][0], batch[2]["pixel_values_aux"][0]]))
    assert aux.is_contiguous(memory_format=torch.channels_last)  # batched as it is: reordering is the device's work
    assert [len(b) for b in data["boxes"]] == [2, 0]
    worker = next(iter(DataLoader(batch, batch_size=3, num_workers=1, collate_fn=llava_box_collate_fn)))["data"]
    assert torch.equal(worker["pixel_values_aux"], aux)


def test_samples_with_views_in_different_forms_are_refused():
    with pytest.raises(ValueError, match=r"different forms.*'1': 'torch.uint8 high-res view'.*"
                                         r"'3': 'torch.float32 high-res view \+ pixel_values'"):
        llava_box_collate_fn([uint8_instance(1, [1, -200, 2], 1), BATCH[2]])
