"""Generation details: left padding after the visual tokens are placed, stop words, answer cleaning."""
import os.path as osp

import torch

from mg_llava.inference.generation import StopWordsCriteria, clean_answer, first_token_logits, to_left_padding


def test_to_left_padding_moves_each_sequence_to_the_end():
    embeds = torch.arange(2 * 4 * 1, dtype=torch.float).view(2, 4, 1)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    left, left_mask = to_left_padding(embeds, mask)
    assert left_mask.tolist() == [[0, 0, 1, 1], [1, 1, 1, 1]]
    assert left[0, :, 0].tolist() == [0, 0, 0, 1] and torch.equal(left[1], embeds[1])


def test_batch_logits_equal_one_by_one(loaded, tiny_data):
    """Samples of different lengths (image with 2 boxes, image with 24 boxes, text only) batched together give
    each sample's own next-token logits."""
    from mg_llava.dataset import load_box_file

    table = load_box_file(tiny_data["boxes"])
    preprocessor = loaded.preprocessor
    samples = [
        preprocessor.sample("What is it?", (), preprocessor.prepare_image(
            osp.join(tiny_data["image_folder"], "chelsea.jpg"), (table, "chelsea"))),
        preprocessor.sample("How many coins are there in this picture?", (), preprocessor.prepare_image(
            osp.join(tiny_data["image_folder"], "coins.jpg"), (table, "coins"))),
        preprocessor.sample("What is two plus two?"),
    ]
    batched = first_token_logits(loaded.model, loaded.tokenizer, samples)
    for i, sample in enumerate(samples):
        single = first_token_logits(loaded.model, loaded.tokenizer, [sample])[0]
        torch.testing.assert_close(batched[i], single, rtol=1e-4, atol=1e-4)


def test_stop_words_end_each_sequence_and_are_cut(loaded):
    tokenizer = loaded.tokenizer
    ids = [tokenizer.encode(text, add_special_tokens=False) for text in ("a cat ###", "a dog is")]
    length = max(map(len, ids))
    batch = torch.tensor([[0] * (length - len(i)) + i for i in ids])
    assert StopWordsCriteria(tokenizer, ["###"])(batch, None).tolist() == [True, False]
    assert clean_answer("a cat ### more", ["###"], ["</s>"]) == "a cat"
    assert clean_answer("a cat</s>", [], ["</s>"]) == "a cat"
