"""Video in the model: the token layout at <video>, one frame = one image, chunked encoders, count checks."""
import pytest
import torch
from xtuner.utils import IMAGE_TOKEN_INDEX as IMG

from mg_llava.dataset import VIDEO_TOKEN_INDEX as VID
from mg_llava.model.token_assembler import group_frames, image_sequences
from mg_llava.model.video_tokens import frames_per_placeholder, run_in_chunks

T_LOW = 16  # fused tokens per tiny image (4x4 grid)


@pytest.fixture(scope="module")
def model(make_model):
    model = make_model()
    with torch.no_grad():  # move the fusion away from its identity init, so it matters
        for p in model.fuse_module.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(0)) * 0.1)
    return model.eval()


def video_batch(make_batch, texts, frame_boxes, frames_per_video, seed=0):
    """make_batch's batch (frames count as images there), with the video placeholders and frame counts set."""
    placeholder_texts = [[IMG if tok == VID else tok for tok in text] for text in texts]
    data = make_batch(placeholder_texts, frame_boxes, seed=seed)
    for b, text in enumerate(texts):
        data["input_ids"][b, :len(text)] = torch.tensor(text)
    data["labels"] = torch.where(data["input_ids"] < 0, -100, data["labels"])
    if frames_per_video:
        data["frames_per_video"] = torch.tensor(frames_per_video)
    return data


def test_video_tokens_are_each_frames_fused_then_box_tokens_in_time_order(model, make_batch):
    # sample 0: text, an image (2 boxes), text; sample 1: a video of 3 frames with 1, 0 and 2 boxes, then text
    texts = [[1, 5, IMG, 6], [1, VID, 7, 8]]
    data = video_batch(make_batch, texts, [2, 1, 0, 2], [3])
    with torch.no_grad():
        parts = model.encode_images(data["pixel_values"], data["pixel_values_aux"], data["boxes"])
        per_frame = image_sequences(parts.grids, boxes=parts.boxes)
        inputs = model.prepare_llm_inputs(data)
    embed = model.llm.get_input_embeddings()
    assert [len(t) for t in per_frame] == [T_LOW + 2, T_LOW + 1, T_LOW + 0, T_LOW + 2]

    # sample 1, value by value: BOS, frame 0 [16 fused][1 box], frame 1 [16 fused], frame 2 [16 fused][2 boxes], text
    row = inputs["inputs_embeds"][1]
    expected = torch.cat([embed(torch.tensor([1])), per_frame[1], per_frame[2], per_frame[3],
                          embed(torch.tensor([7, 8]))])
    assert inputs["attention_mask"][1].sum() == len(expected)
    torch.testing.assert_close(row[:len(expected)], expected, rtol=0, atol=0)
    labels = inputs["labels"][1]
    assert labels[1:1 + 3 * T_LOW + 3].eq(-100).all() and labels[-2:].tolist() == [7, 8]
    # the fused tokens of frame t are its own: frames differ, so their blocks differ
    assert not torch.equal(per_frame[1][:T_LOW], per_frame[2][:T_LOW])
    # sample 0 is untouched by the video next to it
    expected0 = torch.cat([embed(torch.tensor([1, 5])), per_frame[0], embed(torch.tensor([6]))])
    torch.testing.assert_close(inputs["inputs_embeds"][0][:len(expected0)], expected0, rtol=0, atol=0)


def test_one_frame_video_equals_the_same_image_exactly(model, make_batch):
    image = video_batch(make_batch, [[1, 5, IMG, 6, 7]], [3], [], seed=3)
    video = video_batch(make_batch, [[1, 5, VID, 6, 7]], [3], [1], seed=3)
    with torch.no_grad():
        a, b = model.prepare_llm_inputs(image), model.prepare_llm_inputs(video)
        loss_a, loss_b = model(image)["loss"], model(video)["loss"]
    for key in ("inputs_embeds", "attention_mask", "position_ids", "labels"):
        assert torch.equal(a[key], b[key]), key
    assert torch.equal(loss_a, loss_b)


def test_chunked_encoders_give_the_unchunked_tokens(model, make_batch):
    data = video_batch(make_batch, [[1, VID, 5], [IMG, 6]], [1, 2, 0, 1, 3], [4], seed=1)
    with torch.no_grad():
        whole = model.prepare_llm_inputs(data)
        model.encoder_chunk_size = 2
        try:
            chunked = model.prepare_llm_inputs(data)
        finally:
            model.encoder_chunk_size = None
    torch.testing.assert_close(chunked["inputs_embeds"], whole["inputs_embeds"], rtol=1e-5, atol=1e-6)
    stages = run_in_chunks(model.visual_encoder_aux, data["pixel_values_aux"], 2)
    assert [s.shape[0] for s in stages] == [5] * len(stages)
    with pytest.raises(ValueError, match="chunk size"):
        run_in_chunks(model.visual_encoder, data["pixel_values"], 0)


def test_frame_counts_that_do_not_match_are_errors_naming_both():
    ids = torch.tensor([[1, VID, 2, IMG]])
    mask = torch.ones_like(ids, dtype=torch.bool)
    frames = [torch.zeros(3, 8) for _ in range(4)]
    grouped = group_frames(ids, mask, frames, torch.tensor([3]))
    assert [len(g) for g in grouped] == [9, 3]
    with pytest.raises(ValueError, match="1 video placeholders .* lists 0 videos"):
        group_frames(ids, mask, frames, None)
    with pytest.raises(ValueError, match=r"videos of \[2\] frames need 3 .* got 4"):
        group_frames(ids, mask, frames, torch.tensor([2]))
    # the video module only counts (the assembler joins): 3 frames for the video, 1 for the image; no video: None
    assert frames_per_placeholder(ids, mask, 4, torch.tensor([3])) == [3, 1]
    assert frames_per_placeholder(torch.tensor([[IMG, 1, IMG]]), torch.ones(1, 3, dtype=torch.bool), 2, None) is None
    with pytest.raises(ValueError, match="at least one frame"):
        frames_per_placeholder(torch.tensor([[VID, IMG]]), torch.ones(1, 2, dtype=torch.bool), 1, torch.tensor([0]))
