"""Token layout of a multi-turn image conversation under the four chat templates of the five backbones.

The expected prompts are written out literally here (not read from the template table), so a changed template,
a lost special token or a shifted loss mask fails.
"""
import pytest
import torch
from dataset_helpers import gpt, human

from mg_llava.dataset import PROMPT_TEMPLATE

CONVERSATION = [human("What is in the image?\n<image>"), gpt("A cat."), human("Is it red?"), gpt("No.")]

# (full text with <image> where the placeholder is, the trained text = the answers with their end tokens)
EXPECTED = {
    # Vicuna v1.5 (7B and 13B): every turn opens with <s> and closes with </s> (trained), then "\n" (not trained)
    "vicuna": (
        "<s>USER: <image>\nWhat is in the image? ASSISTANT:A cat.</s>\n<s>USER: Is it red? ASSISTANT:No.</s>\n",
        "A cat.</s>No.</s>",
    ),
    "phi3_chat": (
        "<s><|user|>\n<image>\nWhat is in the image?<|end|>\n<|assistant|>\nA cat.<|end|>\n"
        "<|user|>\nIs it red?<|end|>\n<|assistant|>\nNo.<|end|>\n",
        "A cat.<|end|>No.<|end|>",
    ),
    "llama3_chat": (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n<image>\nWhat is in the image?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nA cat.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nIs it red?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nNo.<|eot_id|>",
        "A cat.<|eot_id|>No.<|eot_id|>",
    ),
    # Yi-1.5 (ChatML)
    "chatml": (
        "<|startoftext|><|im_start|>user\n<image>\nWhat is in the image?<|im_end|>\n<|im_start|>assistant\n"
        "A cat.<|im_end|>\n<|im_start|>user\nIs it red?<|im_end|>\n<|im_start|>assistant\nNo.<|im_end|>\n",
        "A cat.<|im_end|>No.<|im_end|>",
    ),
}


def decode(tokenizer, ids):
    """Text of ``ids`` with the image placeholder (-200) written as <image>."""
    text, run = "", []
    for token in ids:
        if token == -200:
            text += tokenizer.decode(run) + "<image>"
            run = []
        else:
            run.append(token)
    return text + tokenizer.decode(run)


@pytest.mark.parametrize("template", sorted(EXPECTED))
def test_multi_turn_layout(make_dataset, tokenizers, template):
    dataset = make_dataset(
        [{"id": "1", "image": "chelsea.png", "conversations": CONVERSATION}],
        [{"id": "1", "boxes": [], "scores": [], "labels": []}],
        template=template,
    )
    tokenizer = tokenizers[template]
    sample = dataset[0]
    ids, labels = sample["input_ids"], sample["labels"]
    full_text, trained_text = EXPECTED[template]

    assert decode(tokenizer, ids.tolist()) == full_text
    assert (ids == -200).sum() == 1 and ids[1] != -200  # one placeholder, after the template's opening tokens
    trained = labels != -100
    assert torch.equal(labels[trained], ids[trained])  # a label is the token itself or -100
    assert tokenizer.decode(ids[trained]) == trained_text
    # the answers' tokens are exactly the trained ones: everything from an answer's start to its end token
    assert trained[-1] == (template == "llama3_chat")  # the trailing "\n" separator is never trained
    assert labels[ids == -200].eq(-100).all()


def test_special_tokens_are_single_ids(tokenizers):
    for template, token in [("chatml", "<|im_end|>"), ("phi3_chat", "<|end|>"), ("llama3_chat", "<|eot_id|>")]:
        tokenizer = tokenizers[template]
        assert tokenizer.encode(token, add_special_tokens=False) == [tokenizer.convert_tokens_to_ids(token)]


def test_text_only_sample_has_no_placeholder(make_dataset, tokenizers):
    dataset = make_dataset([{"id": "t", "conversations": [human("Say yes."), gpt("Yes.")]}], [], template="chatml")
    sample = dataset[0]
    assert (sample["input_ids"] == -200).sum() == 0
    assert decode(tokenizers["chatml"], sample["input_ids"].tolist()) == (
        "<|startoftext|><|im_start|>user\nSay yes.<|im_end|>\n<|im_start|>assistant\nYes.<|im_end|>\n"
    )
    assert sample["pixel_values_aux"].shape[0] == 0 and sample["boxes"] == []


def test_chatml_template_shape():
    chatml = PROMPT_TEMPLATE.chatml
    assert chatml.SYSTEM.format(system="Be brief.") == "<|im_start|>system\nBe brief.<|im_end|>\n"
    assert chatml.STOP_WORDS == ["<|im_end|>"]
    assert PROMPT_TEMPLATE.vicuna is not None and "qwen_chat" in PROMPT_TEMPLATE  # XTuner's are all still there
