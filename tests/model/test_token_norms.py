"""The training loss dict carries the visual tokens' and the text embeddings' mean norms (mg_llava/model/
token_norms.py), measured on what the LLM receives: scaling the projector's output scales the visual norm and leaves
the text's alone."""
import torch
from xtuner.utils import IMAGE_TOKEN_INDEX as IMG

from mg_llava.model.token_norms import token_norms


def expected_norms(model, data):
    """The norms computed directly: every placed visual token (grid + boxes) and every real text token."""
    parts = model.encode_images(data["pixel_values"], data.get("pixel_values_aux"), data.get("boxes"))
    visual = torch.cat([torch.cat([g, b]) for g, b in zip(parts.grids, parts.boxes)])
    text = data["input_ids"][data["attention_mask"].bool() & (data["input_ids"] != IMG)]
    embeds = model.llm.get_input_embeddings()(text)
    return visual.norm(dim=-1).mean(), embeds.norm(dim=-1).mean()


def test_loss_dict_logs_the_visual_and_text_norms(make_model, make_batch):
    model = make_model(freeze_llm=True)
    data = make_batch([[1, IMG, 5, 6], [7, 8, 9], [IMG, 10, 11, 12, 13]], box_counts=[3, 1])
    with torch.no_grad():
        out = model(dict(data))
        visual, text = expected_norms(model, data)
    assert {"loss", "visual_norm", "text_norm"} <= set(out) and not any("loss" in k for k in out if k != "loss")
    torch.testing.assert_close(out["visual_norm"], visual, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out["text_norm"], text, rtol=1e-5, atol=1e-6)
    # a projector whose output grows 100 times shows in the visual norm only
    with torch.no_grad():
        for projector in (model.projector, model.bbox_projector):
            projector.model[-1].weight.mul_(100)
            projector.model[-1].bias.mul_(100)
        grown = model(dict(data))
    torch.testing.assert_close(grown["visual_norm"], visual * 100, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(grown["text_norm"], out["text_norm"])


def test_a_text_only_batch_logs_no_visual_norm(make_model, make_batch):
    model = make_model(freeze_llm=True)
    with torch.no_grad():
        out = model(make_batch([[1, 5, 6], [7, 8]], box_counts=[]))
    assert "visual_norm" not in out and torch.isfinite(out["text_norm"]) and out["text_norm"] > 0


def test_norms_of_placed_sequences_with_padding():
    """Right-padded placed sequences: padding counts for neither norm."""
    embed = torch.nn.Embedding(10, 4)
    input_ids = torch.tensor([[1, IMG, 2], [3, 0, 0]])
    attention_mask = torch.tensor([[True, True, True], [True, False, False]])
    visual = torch.full((2, 4), 3.0)  # two tokens of norm 6
    first = torch.cat([embed(torch.tensor([1])), visual, embed(torch.tensor([2]))])
    placed = torch.zeros(2, 4, 4)
    placed[0], placed[1, 0] = first, embed(torch.tensor(3))
    placed[1, 1:] = 50.0  # padding rows are never read
    placed_mask = torch.tensor([[True] * 4, [True, False, False, False]])
    out = token_norms(embed, input_ids, attention_mask, placed, placed_mask)
    torch.testing.assert_close(out["visual_norm"], torch.tensor(6.0))
    torch.testing.assert_close(out["text_norm"], embed(torch.tensor([1, 2, 3])).norm(dim=-1).mean())
