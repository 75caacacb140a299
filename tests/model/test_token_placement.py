import pytest
import torch
from xtuner.utils import IMAGE_TOKEN_INDEX as IMG

from mg_llava.model import place_visual_tokens

HIDDEN = 4


def embedding():
    embed = torch.nn.Embedding(100, HIDDEN)
    with torch.no_grad():  # embedding of id i is (i, i, i, i): easy to read back
        embed.weight.copy_(torch.arange(100.0)[:, None].expand(100, HIDDEN))
    return embed


def batch(rows):
    length = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), length, dtype=torch.long)
    mask = torch.zeros(len(rows), length, dtype=torch.bool)
    for b, row in enumerate(rows):
        ids[b, :len(row)] = torch.tensor(row)
        mask[b, :len(row)] = True
    return ids, mask, torch.where(mask & (ids != IMG), ids, -100)


def image(first, count):
    """``count`` tokens with values first, first+1, ... (negative, so they cannot be confused with text)."""
    return -(first + torch.arange(count, dtype=torch.float))[:, None].expand(count, HIDDEN)


def test_tokens_land_at_placeholders_in_order():
    ids, mask, labels = batch([[1, IMG, 2, IMG, 3], [4, 5], [6, IMG]])  # sample 1 is text only
    visual = [image(10, 3), image(20, 1), image(30, 2)]  # each image has its own token count
    out = place_visual_tokens(embedding(), ids, mask, labels, visual)
    expected = [[1, -10, -11, -12, 2, -20, 3], [4, 5], [6, -30, -31]]
    assert out["inputs_embeds"].shape == (3, 7, HIDDEN)
    for b, row in enumerate(expected):
        assert out["inputs_embeds"][b, :len(row), 0].tolist() == row
        assert not out["inputs_embeds"][b, len(row):].any()
        assert out["attention_mask"][b].tolist() == [True] * len(row) + [False] * (7 - len(row))
        assert out["position_ids"][b, :len(row)].tolist() == list(range(len(row)))
    assert out["labels"].tolist() == [[1, -100, -100, -100, 2, -100, 3], [4, 5] + [-100] * 5,
                                      [6, -100, -100] + [-100] * 4]
    assert out["attention_mask"].dtype == torch.bool


def test_text_only_batch():
    ids, mask, labels = batch([[1, 2], [3]])
    out = place_visual_tokens(embedding(), ids, mask, labels, [])
    assert out["inputs_embeds"][:, :, 0].tolist() == [[1, 2], [3, 0]]
    assert out["labels"].tolist() == [[1, 2], [3, -100]]


def test_count_mismatch_names_both_counts():
    ids, mask, labels = batch([[1, IMG, 2], [IMG, 3]])
    with pytest.raises(ValueError, match="2 image placeholders .* but 3 images"):
        place_visual_tokens(embedding(), ids, mask, labels, [image(0, 1)] * 3)
    with pytest.raises(ValueError, match="2 image placeholders .* but 1 images"):
        place_visual_tokens(embedding(), ids, mask, labels, [image(0, 1)])


def test_gradient_reaches_visual_tokens():
    ids, mask, labels = batch([[1, IMG, 2]])
    visual = image(10, 2).clone().requires_grad_(True)
    out = place_visual_tokens(embedding(), ids, mask, labels, [visual])
    (out["inputs_embeds"] * torch.arange(4.0)[None, :, None]).sum().backward()
    assert visual.grad[:, 0].tolist() == [1.0, 2.0]  # positions 1 and 2
