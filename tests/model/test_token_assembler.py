"""The token assembler (mg_llava/model/token_assembler.py): the one place that orders visual tokens. Blocks carry
their own values (negative, unlike text ids) so every token order below is read back by hand."""
import ast
import glob
import os.path as osp
from collections import Counter

import pytest
import torch
from xtuner.utils import IMAGE_TOKEN_INDEX as IMG

from mg_llava.dataset import VIDEO_TOKEN_INDEX as VID
from mg_llava.model.token_assembler import assemble, image_sequences, place_visual_tokens

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


# ------------------------------------------------------------------------------------------- the assembler, per mode


def rows_of(out, lengths):
    """The first embedding channel of each sample's real tokens (text ids, or the blocks' negative values)."""
    assert out["attention_mask"].sum(1).tolist() == lengths
    return [out["inputs_embeds"][b, :n, 0].tolist() for b, n in enumerate(lengths)]


def test_mg_llava_image_is_its_grid_then_its_boxes():
    ids, mask, labels = batch([[1, IMG, 2], [3, 4], [IMG, 5]])  # sample 1 is text only
    grids = torch.stack([image(10, 2), image(20, 2)])  # (I, T, H), as encode_images gives them
    images = image_sequences(grids, boxes=[image(100, 3), image(200, 0)])  # 3 boxes, then none
    out = assemble(embedding(), ids, mask, labels, images)
    assert rows_of(out, [7, 2, 3]) == [[1, -10, -11, -100, -101, -102, 2], [3, 4], [-20, -21, 5]]
    assert out["labels"][0, :7].tolist() == [1] + [-100] * 5 + [2]
    # no object tokens (LLaVA, MMFuser): the grid alone; no labels (inference): labels stay None
    out = assemble(embedding(), ids, mask, None, image_sequences(grids))
    assert rows_of(out, [4, 2, 3]) == [[1, -10, -11, 2], [3, 4], [-20, -21, 5]] and out["labels"] is None


def test_tiled_image_puts_its_crop_grid_between_grid_and_boxes():
    ids, mask, labels = batch([[IMG, 1], [2, IMG]])
    images = image_sequences([image(10, 2), image(20, 2)], crops=[image(50, 4), image(60, 1)],
                             boxes=[image(100, 1), image(200, 2)])
    out = assemble(embedding(), ids, mask, labels, images)
    assert rows_of(out, [8, 6]) == [[-10, -11, -50, -51, -52, -53, -100, 1], [2, -20, -21, -60, -200, -201]]


def test_video_is_its_frames_in_time_order_each_grid_then_boxes():
    ids, mask, labels = batch([[1, VID, 2, IMG]])  # a 3-frame video, then an image
    grids = torch.stack([image(10, 1), image(20, 1), image(30, 1), image(40, 1)])
    boxes = [image(110, 1), image(120, 0), image(130, 2), image(140, 1)]
    out = assemble(embedding(), ids, mask, labels, image_sequences(grids, boxes=boxes), torch.tensor([3]))
    assert rows_of(out, [10]) == [[1, -10, -110, -20, -30, -130, -131, 2, -40, -140]]
    with pytest.raises(ValueError, match=r"videos of \[2\] frames need 3 .* got 4"):
        assemble(embedding(), ids, mask, labels, image_sequences(grids, boxes=boxes), torch.tensor([2]))


def test_avg_llava_images_at_their_own_granularities():
    # AVG-LLaVA hands over each image's grid at its chosen granularity (4 and 1 tokens here), crops pooled alike
    ids, mask, labels = batch([[IMG, 1], [2, IMG, 3]])
    images = image_sequences([image(10, 4), image(20, 1)], crops=[image(50, 2), image(60, 1)],
                             boxes=[image(100, 1), image(200, 0)])
    out = assemble(embedding(), ids, mask, labels, images)
    assert rows_of(out, [8, 4]) == [[-10, -11, -12, -13, -50, -51, -100, 1], [2, -20, -60, 3]]


def test_counts_that_do_not_match_name_both():
    ids, mask, labels = batch([[1, IMG, 2], [IMG, 3]])
    with pytest.raises(ValueError, match="2 image placeholders .* but 3 images"):
        assemble(embedding(), ids, mask, labels, image_sequences(torch.stack([image(0, 1)] * 3)))
    with pytest.raises(ValueError, match="2 images but 1 box token tensors"):
        image_sequences([image(0, 1)] * 2, boxes=[image(0, 1)])
    with pytest.raises(ValueError, match="2 images but 3 crop grids"):
        image_sequences([image(0, 1)] * 2, crops=[image(0, 1)] * 3)


# The concatenations in the token producers, per function, and why none orders visual tokens.
MAY_CONCATENATE = {
    "mg_llava_model.py": {"encode_images": 1},  # the batch's box features, for one projector call
    "video_tokens.py": {"run_in_chunks": 2},  # the encoder outputs of consecutive chunks (tensor or stage maps)
    "anyres_tokens.py": {"grid": 1},  # the row ends inside one crop grid: the block's own layout
    "avg/avg_llava_model.py": {},
}
ASSEMBLER_ONLY = {"place_visual_tokens", "group_frames"}  # called nowhere in the package but in the assembler


def calls(path):
    """(enclosing function, called name) of every call in a source file."""
    found = []

    class Visitor(ast.NodeVisitor):
        stack = ["<module>"]

        def visit_FunctionDef(self, node):
            self.stack.append(node.name)
            self.generic_visit(node)
            self.stack.pop()

        def visit_Call(self, node):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
            found.append((self.stack[-1], name))
            self.generic_visit(node)

    with open(path) as f:
        Visitor().visit(ast.parse(f.read()))
    return found


def test_the_assembler_is_the_only_place_that_orders_visual_tokens():
    import mg_llava

    package = osp.dirname(mg_llava.__file__)
    for name, allowed in MAY_CONCATENATE.items():
        found = Counter(f for f, called in calls(osp.join(package, "model", name)) if called in ("cat", "concat"))
        assert found == Counter(allowed), f"{name}: concatenations {dict(found)}, expected {allowed}; visual tokens " \
                                          f"are ordered in token_assembler.py only"
    for path in glob.glob(osp.join(package, "**", "*.py"), recursive=True):
        if osp.basename(path) != "token_assembler.py":
            used = {called for _, called in calls(path)} & ASSEMBLER_ONLY
            assert not used, f"{osp.relpath(path, package)} calls {sorted(used)}: use token_assembler.assemble"
