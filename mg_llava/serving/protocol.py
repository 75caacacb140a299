"""The OpenAI chat-completions wire format: a request body -> :class:`ChatRequest`, answers -> response bodies.

What is read from a request (everything else OpenAI defines is ignored, as other compatible servers do):

- ``messages``: ``system`` / ``user`` / ``assistant`` turns, ending with a ``user`` turn; content is a string or a
  list of parts, ``{"type": "text", "text": ...}`` and ``{"type": "image_url", "image_url": {"url": ...}}``. At most
  one image per conversation: the model was trained with one, placed before the first question (LLaVA's
  ``<image>\\n``), wherever in the conversation the part stands. No image: a text-only conversation.
- ``max_tokens`` (or ``max_completion_tokens``), ``temperature`` (0 = greedy), ``top_p``, ``stop`` (a string or up
  to 4), ``stream``, ``stream_options.include_usage``, ``n`` (only 1), ``model`` (the served name).
- Our extra body fields: ``boxes`` (``"auto"``: found on the fly by the server's detector; ``"file"``: the server's
  box file, entry ``box_id``, else the only entry, else the local image's file name; ``"none"``) and ``box_id``.

Errors are :class:`APIError` (status, OpenAI's ``{"error": {message, type, param, code}}`` body).
"""
import time
import uuid
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

BOX_MODES = ("auto", "file", "none")
MAX_STOP_WORDS = 4


class APIError(Exception):
    """A request the server refuses: HTTP ``status`` and OpenAI's error body."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error", param: Optional[str] = None,
                 code: Optional[str] = None):
        super().__init__(message)
        self.status = status
        self.body = {"error": {"message": message, "type": type, "param": param, "code": code}}


def bad_request(message: str, param: Optional[str] = None, code: Optional[str] = None) -> APIError:
    return APIError(400, message, param=param, code=code)


@dataclass(frozen=True)
class Decoding:
    """How to generate; requests with equal settings share a batch."""

    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    stop: Tuple[str, ...] = ()


@dataclass
class ChatRequest:
    """One parsed request: the last question, the turns before it, the image URL (or None) and the settings."""

    question: str
    history: List[Tuple[str, str]]
    image_url: Optional[str]
    decoding: Decoding
    boxes: str
    box_id: Optional[str] = None
    system: Optional[str] = None
    stream: bool = False
    include_usage: bool = False
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    created: int = field(default_factory=lambda: int(time.time()))


@dataclass(frozen=True)
class Limits:
    """What the server allows and its defaults."""

    model_name: str
    default_boxes: str
    default_max_tokens: int = 512
    max_tokens_limit: int = 4096
    default_temperature: float = 0.0


def _number(payload: dict, name: str, default, kind, low, high, low_open=False):
    value = payload.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        raise bad_request(f"{name} must be a{'n integer' if kind is int else ' number'}, got {value!r}", name)
    if value < low or value > high or (low_open and value == low):
        raise bad_request(f"{name} must be in {'(' if low_open else '['}{low}, {high}], got {value}", name)
    return kind(value)


def _parts(content, where: str) -> Tuple[str, List[str]]:
    """A message's content -> (its text, its image URLs)."""
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        raise bad_request(f"{where}: content must be a string or a list of parts", "messages")
    texts, images = [], []
    for k, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if not isinstance(url, str) or not url:
                raise bad_request(f"{where} part {k}: image_url needs a url", "messages")
            images.append(url)
        else:
            raise bad_request(f"{where} part {k}: unsupported content part {kind!r} (text and image_url are "
                              f"supported)", "messages")
    return "\n".join(texts), images


def parse_chat_request(payload, limits: Limits) -> ChatRequest:
    """A request body (parsed JSON) -> :class:`ChatRequest`; :class:`APIError` (400/404) for what is wrong."""
    if not isinstance(payload, dict):
        raise bad_request("the body must be a JSON object")
    model = payload.get("model")
    if model is not None and model != limits.model_name:
        raise APIError(404, f"model {model!r} is not served here; this server serves {limits.model_name!r}",
                       param="model", code="model_not_found")
    if payload.get("n", 1) != 1:
        raise bad_request(f"n must be 1, got {payload['n']!r}", "n")
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("messages must be a non-empty list", "messages")
    systems, turns, images = [], [], []
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ("system", "developer", "user", "assistant"):
            raise bad_request(f"messages[{i}]: unsupported role {role!r}", "messages")
        text, urls = _parts(message.get("content") or "", f"messages[{i}]")
        if urls and role != "user":
            raise bad_request(f"messages[{i}]: images are only read from user messages", "messages")
        images += urls
        if role in ("system", "developer"):
            systems.append(text)
        else:
            turns.append((role, text))
    if len(images) > 1:
        raise bad_request(f"one image per conversation (the model was trained with one), got {len(images)}",
                          "messages")
    expected = ["user" if k % 2 == 0 else "assistant" for k in range(len(turns))]
    if [role for role, _ in turns] != expected or len(turns) % 2 == 0:
        raise bad_request("messages must alternate user/assistant (after any system messages) and end with a "
                          f"user message; got {[role for role, _ in turns]}", "messages")
    texts = [text for _, text in turns]
    history = list(zip(texts[:-1:2], texts[1::2]))

    stop = payload.get("stop")
    stop = [stop] if isinstance(stop, str) else (stop or [])
    if not isinstance(stop, list) or len(stop) > MAX_STOP_WORDS or not all(isinstance(s, str) and s for s in stop):
        raise bad_request(f"stop must be a non-empty string or a list of up to {MAX_STOP_WORDS}", "stop")
    name = "max_completion_tokens" if payload.get("max_tokens") is None else "max_tokens"
    decoding = Decoding(
        max_new_tokens=_number(payload, name, limits.default_max_tokens, int, 1, limits.max_tokens_limit),
        temperature=_number(payload, "temperature", limits.default_temperature, float, 0.0, 2.0),
        top_p=_number(payload, "top_p", 1.0, float, 0.0, 1.0, low_open=True),
        stop=tuple(stop))
    boxes = payload.get("boxes", limits.default_boxes)
    if boxes not in BOX_MODES:
        raise bad_request(f"boxes must be one of {list(BOX_MODES)}, got {boxes!r}", "boxes")
    box_id = payload.get("box_id")
    if box_id is not None and not isinstance(box_id, str):
        raise bad_request(f"box_id must be a string, got {box_id!r}", "box_id")
    stream = payload.get("stream", False)
    if not isinstance(stream, bool):
        raise bad_request(f"stream must be true or false, got {stream!r}", "stream")
    options = payload.get("stream_options") or {}
    return ChatRequest(question=texts[-1], history=history, image_url=images[0] if images else None,
                       decoding=decoding, boxes=boxes, box_id=box_id, system="\n".join(systems) or None,
                       stream=stream, include_usage=bool(isinstance(options, dict) and options.get("include_usage")))


# ------------------------------------------------------------------------------------------------- responses
def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return dict(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                total_tokens=prompt_tokens + completion_tokens)


def completion_body(request: ChatRequest, model: str, text: str, finish_reason: str, prompt_tokens: int,
                    completion_tokens: int) -> dict:
    return {"id": request.id, "object": "chat.completion", "created": request.created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": finish_reason, "logprobs": None}],
            "usage": usage(prompt_tokens, completion_tokens)}


def chunk_body(request: ChatRequest, model: str, delta: dict, finish_reason: Optional[str] = None,
               usage_: Optional[dict] = None) -> dict:
    """One streamed chunk; the usage chunk (``stream_options.include_usage``) has no choices."""
    choices = [] if usage_ is not None else [{"index": 0, "delta": delta, "finish_reason": finish_reason,
                                              "logprobs": None}]
    body = {"id": request.id, "object": "chat.completion.chunk", "created": request.created, "model": model,
            "choices": choices}
    if usage_ is not None:
        body["usage"] = usage_
    return body


__all__ = ["APIError", "BOX_MODES", "ChatRequest", "Decoding", "Limits", "bad_request", "chunk_body",
           "completion_body", "parse_chat_request", "usage"]
