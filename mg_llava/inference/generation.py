"""Batched generation from samples of the training dataset's format.

Shape shorthand: B samples, L' tokens after the image and box tokens are placed, H the LLM width.

The batch goes through the training collate (``llava_box_collate_fn``) and the model's own token placement
(``MGLLaVAModel.prepare_llm_inputs``), which pads on the right; generation needs the padding on the left (every
sequence must end where the next token goes), so the placed embeddings are shifted right before ``generate``.
"""
from typing import List, Sequence, Tuple

import torch
from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList

from mg_llava.dataset import llava_box_collate_fn

from .placement import llm_input_device

STOP_CHECK_TOKENS = 16  # generated tokens decoded per step to look for a stop word


class StopWordsCriteria(StoppingCriteria):
    """Stops each sequence (separately) once its generated text contains one of ``stop_words``."""

    def __init__(self, tokenizer, stop_words: Sequence[str]):
        self.tokenizer = tokenizer
        self.stop_words = [w for w in stop_words if w]

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        tails = self.tokenizer.batch_decode(input_ids[:, -STOP_CHECK_TOKENS:], skip_special_tokens=False)
        return torch.tensor([any(w in t for w in self.stop_words) for t in tails], device=input_ids.device)


def to_left_padding(inputs_embeds: torch.Tensor, attention_mask: torch.Tensor):
    """Right-padded (B, L', H) embeddings and (B, L') mask -> the same sequences padded on the left."""
    lengths = attention_mask.bool().sum(dim=1).tolist()
    length = inputs_embeds.shape[1]
    embeds = torch.zeros_like(inputs_embeds)
    mask = torch.zeros_like(attention_mask)
    for b, n in enumerate(lengths):
        embeds[b, length - n:] = inputs_embeds[b, :n]
        mask[b, length - n:] = 1
    return embeds, mask


def pad_token_id(tokenizer) -> int:
    """The id used to pad prompts (the collate's) and finished sequences: pad, else eos, else 0."""
    for token_id in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return token_id
    return 0


def clean_answer(text: str, stop_words: Sequence[str], special_tokens: Sequence[str]) -> str:
    """Cut a decoded answer at its first stop word and drop special tokens."""
    cut = min([text.find(w) for w in stop_words if w and w in text], default=len(text))
    text = text[:cut]
    for token in special_tokens:
        text = text.replace(token, "")
    return text.strip()


@torch.no_grad()
def llm_inputs_for_generation(model, samples: Sequence[dict], pad_id: int, device) -> dict:
    """Samples -> left-padded ``inputs_embeds`` (B, L', H) and ``attention_mask`` (B, L')."""
    batch = llava_box_collate_fn(list(samples), pad_index=pad_id, return_hf_format=True)
    batch.pop("labels")
    batch = {k: ([b.to(device) for b in v] if isinstance(v, list) else v.to(device)) for k, v in batch.items()}
    llm_inputs = model.prepare_llm_inputs(batch)
    embeds, mask = to_left_padding(llm_inputs["inputs_embeds"], llm_inputs["attention_mask"])
    return dict(inputs_embeds=embeds, attention_mask=mask)


@torch.no_grad()
def generate_ids(model, tokenizer, samples: Sequence[dict], max_new_tokens: int = 512, stop_words: Sequence[str] = (),
                 temperature: float = 0.0, top_p: float = 1.0, streamer=None, device=None,
                 stopping_criteria: Sequence[StoppingCriteria] = ()) -> Tuple[torch.Tensor, List[int]]:
    """The new tokens (B, T) of ``samples`` (finished sequences padded with :func:`pad_token_id`) and each prompt's
    length in LLM positions (text and visual tokens). ``streamer`` receives each step's (B,) tokens (transformers'
    own streamers take B = 1); ``stopping_criteria`` are added to the stop words'."""
    device = device if device is not None else llm_input_device(model.llm)
    pad_id = pad_token_id(tokenizer)
    inputs = llm_inputs_for_generation(model, samples, pad_id, device)
    sampling = dict(do_sample=True, temperature=temperature, top_p=top_p) if temperature > 0 else dict(do_sample=False)
    config = GenerationConfig(max_new_tokens=max_new_tokens, num_beams=1, pad_token_id=pad_id,
                              eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id, **sampling)
    criteria = StoppingCriteriaList([StopWordsCriteria(tokenizer, stop_words)] if stop_words else [])
    criteria.extend(stopping_criteria)
    # With only inputs_embeds, generate returns just the new tokens.
    output = model.llm.generate(**inputs, generation_config=config, stopping_criteria=criteria, streamer=streamer)
    return output, inputs["attention_mask"].sum(dim=1).tolist()


def decode_answers(tokenizer, output: torch.Tensor, stop_words: Sequence[str] = ()) -> List[str]:
    """(B, T) new tokens -> the answers: cut at the first stop word, special tokens dropped, stripped."""
    texts = tokenizer.batch_decode(output, skip_special_tokens=False)
    special = [t for t in tokenizer.all_special_tokens if t]
    return [clean_answer(t, stop_words, special) for t in texts]


def generate(model, tokenizer, samples: Sequence[dict], max_new_tokens: int = 512, stop_words: Sequence[str] = (),
             temperature: float = 0.0, top_p: float = 1.0, streamer=None, device=None) -> List[str]:
    """Answers to ``samples`` (``Preprocessor.sample`` dicts); greedy unless ``temperature > 0``.

    A streamer (``transformers.TextStreamer``) needs a batch of one.
    """
    if streamer is not None and len(samples) != 1:
        raise ValueError(f"streaming needs one sample at a time, got {len(samples)}")
    output, _ = generate_ids(model, tokenizer, samples, max_new_tokens=max_new_tokens, stop_words=stop_words,
                             temperature=temperature, top_p=top_p, streamer=streamer, device=device)
    return decode_answers(tokenizer, output, stop_words)


def first_token_logits(model, tokenizer, samples: Sequence[dict], device=None) -> torch.Tensor:
    """(B, V) logits of the first answer token, with the same left-padded inputs ``generate`` uses."""
    device = device if device is not None else llm_input_device(model.llm)
    inputs = llm_inputs_for_generation(model, samples, pad_token_id(tokenizer), device)
    mask = inputs["attention_mask"]
    position_ids = (mask.long().cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        logits = model.llm(**inputs, position_ids=position_ids).logits
    return logits[:, -1]


__all__ = ["StopWordsCriteria", "clean_answer", "decode_answers", "first_token_logits", "generate", "generate_ids",
           "llm_inputs_for_generation", "pad_token_id", "to_left_padding"]
