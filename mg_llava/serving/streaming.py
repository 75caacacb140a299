"""Streaming a batch: each step's tokens -> each row's new answer text, so that the pieces add up to the answer.

The final answer is :func:`~mg_llava.inference.generation.clean_answer` of the decoded tokens (cut at the first stop
word, special tokens dropped, stripped). While generating, :func:`visible_text` shows only what that final answer
is sure to start with: the text before a stop word, holding back a tail that may become a stop word or a special
token, an incomplete character (``\\ufffd``) and trailing white space.
"""
from typing import Callable, List, Optional, Sequence

import torch
from transformers import StoppingCriteria


def visible_text(text: str, stop_words: Sequence[str], special_tokens: Sequence[str]) -> str:
    """The part of the decoded ``text`` so far that the final answer starts with."""
    cut = min([text.find(w) for w in stop_words if w in text], default=None)
    if cut is None:  # no stop word yet: hold back the longest tail that begins one (or a special token)
        cut = len(text)
        for word in list(stop_words) + list(special_tokens):
            for k in range(min(len(word) - 1, len(text)), 0, -1):
                if text.endswith(word[:k]):
                    cut = min(cut, len(text) - k)
                    break
    text = text[:cut]
    for token in special_tokens:
        text = text.replace(token, "")
    return text.rstrip("\ufffd").strip()


class BatchStreamer:
    """A ``generate`` streamer for a batch: after each step, ``on_text(row, piece)`` for every row in ``rows``
    whose visible answer grew. transformers calls ``put`` with the prompt first ((B, 0) ids for a prompt given as
    embeddings), then with each step's (B,) tokens."""

    def __init__(self, tokenizer, batch_size: int, stop_words: Sequence[str], on_text: Callable[[int, str], None],
                 rows: Optional[Sequence[int]] = None):
        self.tokenizer = tokenizer
        self.stop_words = [w for w in stop_words if w]
        self.special = [t for t in tokenizer.all_special_tokens if t]
        self.on_text = on_text
        self.rows = list(range(batch_size)) if rows is None else list(rows)
        self.ids: List[List[int]] = [[] for _ in range(batch_size)]
        self.sent = [""] * batch_size
        self.prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        for row, token in enumerate(value.reshape(len(self.ids)).tolist()):
            self.ids[row].append(token)
        for row in self.rows:
            text = visible_text(self.tokenizer.decode(self.ids[row], skip_special_tokens=False), self.stop_words,
                                self.special)
            if len(text) > len(self.sent[row]) and text.startswith(self.sent[row]):
                self.on_text(row, text[len(self.sent[row]):])
                self.sent[row] = text

    def end(self) -> None:
        pass


class StopFlagged(StoppingCriteria):
    """Stops the rows whose ``flagged()`` is true (requests given up by their clients); the others go on."""

    def __init__(self, flags: Sequence[Callable[[], bool]]):
        self.flags = flags

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        return torch.tensor([flag() for flag in self.flags], device=input_ids.device)


__all__ = ["BatchStreamer", "StopFlagged", "visible_text"]
