"""The OpenAI-compatible HTTP server (FastAPI): ``POST /v1/chat/completions``, ``GET /v1/models``, ``GET /health``.

A request goes: API key (401) -> body size (413) -> JSON and fields (400/404, :mod:`.protocol`) -> a place in the
bounded queue (429) -> its image decoded and its boxes found, in a small thread pool (400/403 for a bad image,
:mod:`.images` and the project's decoder) -> the :class:`~.batcher.Batcher` -> the answer, whole or streamed as
server-sent events in OpenAI's chunk format, or 504 after ``request_timeout_s``. Errors use OpenAI's error body, so
the official client raises its usual exceptions (``AuthenticationError``, ``BadRequestError``, ``RateLimitError``,
...). Answers equal ``tools/chat.py``'s for the same image, boxes and question: the same loading, prompt building,
image decoding and generation.
"""
import asyncio
import contextlib
import copy
import hmac
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Optional, Sequence

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from mmengine.logging import print_log

from mg_llava.dataset import MissingBoxEntryError, entry_for_file, load_box_file
from mg_llava.inference.preprocess import ImageLoadError, MissingBoxesError

from .batcher import Batcher, Job, QueueFull
from .images import resolve_image_url
from .protocol import APIError, ChatRequest, Limits, bad_request, chunk_body, completion_body, parse_chat_request

MiB = 1 << 20


@dataclass(frozen=True)
class ServerSettings:
    """The server's limits and defaults (``tools/serve.py`` options)."""

    model_name: str
    api_key: Optional[str] = None
    max_batch_size: int = 8
    max_pending: int = 64
    batch_wait_ms: float = 5.0
    max_body_bytes: int = 20 * MiB
    request_timeout_s: float = 300.0
    default_max_tokens: int = 512
    max_tokens_limit: int = 4096
    temperature: float = 0.0
    box_file: Optional[str] = None
    local_image_folders: Sequence[str] = ()
    prepare_workers: int = 2


class ModelServer:
    """A loaded model behind the API. ``box_generator``: boxes found on the fly (``boxes: "auto"``, the default
    when given); ``settings.box_file``: boxes from a file (``"file"``, the default otherwise when given)."""

    def __init__(self, loaded, settings: ServerSettings, box_generator=None):
        self.loaded = loaded
        self.settings = settings
        self.box_generator = box_generator
        self.box_table = load_box_file(settings.box_file) if settings.box_file else None
        default_boxes = "auto" if box_generator is not None else ("file" if self.box_table is not None else "none")
        self.limits = Limits(settings.model_name, default_boxes, settings.default_max_tokens,
                             settings.max_tokens_limit, settings.temperature)
        self.batcher = Batcher(loaded, settings.max_batch_size, settings.max_pending, settings.batch_wait_ms / 1000)
        self._box_lock = threading.Lock()  # one detector, called from the preparing threads
        self._pool = None
        self.created = int(time.time())

    # ------------------------------------------------------------------------------------------ preparing
    def box_source(self, request: ChatRequest, name: str):
        """What ``Preprocessor.prepare_image`` takes as boxes under the request's box mode."""
        if request.boxes == "none":
            return None
        if request.boxes == "auto":
            if self.box_generator is None:
                raise bad_request("boxes 'auto' needs a detector, and this server has none (tools/serve.py "
                                  "--detector); send boxes 'file' or 'none'", "boxes", "no_detector")

            def generate(image):
                with self._box_lock:
                    return self.box_generator(image)
            return generate
        if self.box_table is None:
            raise bad_request("boxes 'file' needs a box file, and this server has none (tools/serve.py --boxes); "
                              "send boxes 'auto' or 'none'", "boxes", "no_box_file")
        try:
            return self.box_table, entry_for_file(self.box_table, name, request.box_id)
        except MissingBoxEntryError as err:
            raise bad_request(f"the box file has no entry {err.wanted!r} for {name}; send box_id", "box_id",
                              "missing_box_entry") from None

    def prepare(self, request: ChatRequest) -> dict:
        """The model input of a request (``Preprocessor.sample``), or :class:`APIError`."""
        preprocessor = self.loaded.preprocessor
        if request.system is not None:
            preprocessor = copy.copy(preprocessor)
            preprocessor.system = request.system
        image = None
        if request.image_url is not None:
            source, name = resolve_image_url(request.image_url, self.settings.local_image_folders)
            boxes = self.box_source(request, name)
            try:
                image = preprocessor.prepare_image(source, boxes, where=f"request {request.id}")
            except ImageLoadError as err:
                code = "image_too_large" if err.reason == "too_large" else "invalid_image"
                raise bad_request(str(err), "messages", code) from err
            except (MissingBoxesError, ValueError) as err:
                raise bad_request(str(err), "boxes", "bad_boxes") from err
        try:
            return preprocessor.sample(request.question, request.history, image, sample_id=request.id)
        except ValueError as err:  # e.g. an <image> token typed into a question
            raise bad_request(f"messages: {err}", "messages") from err

    # ------------------------------------------------------------------------------------------ HTTP
    def check_key(self, request: Request) -> None:
        if self.settings.api_key is None:
            return
        header = request.headers.get("authorization", "")
        given = header[len("Bearer "):] if header.startswith("Bearer ") else ""
        if not hmac.compare_digest(given.encode(), self.settings.api_key.encode()):
            raise APIError(401, "a wrong or missing API key (send 'Authorization: Bearer KEY')",
                           code="invalid_api_key")

    async def read_body(self, request: Request) -> bytes:
        limit = self.settings.max_body_bytes
        too_large = APIError(413, f"the request body exceeds the limit of {limit} bytes", code="request_too_large")
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise too_large
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)

    async def chat_completions(self, request: Request):
        start = time.monotonic()
        self.check_key(request)
        body = await self.read_body(request)
        try:
            payload = json.loads(body)
        except (UnicodeDecodeError, ValueError) as err:
            raise bad_request(f"the body is not valid JSON ({err})") from err
        chat = parse_chat_request(payload, self.limits)
        try:
            self.batcher.reserve()
        except QueueFull as err:
            raise APIError(429, f"the server is busy: {err}; retry later", "rate_limit_error",
                           code="queue_full") from err
        loop = asyncio.get_running_loop()
        try:
            sample = await loop.run_in_executor(self._pool, self.prepare, chat)
        except BaseException:
            self.batcher.release()
            raise
        events = asyncio.Queue()

        def deliver(event):  # from the batcher's thread
            with contextlib.suppress(RuntimeError):  # the event loop is closed: the server is shutting down
                loop.call_soon_threadsafe(events.put_nowait, event)

        job = Job(sample, chat.decoding, deliver, stream=chat.stream)
        self.batcher.submit(job)
        deadline = start + self.settings.request_timeout_s
        if chat.stream:
            return StreamingResponse(self.stream_events(chat, job, events, deadline), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        try:
            while True:
                kind, value = await asyncio.wait_for(events.get(), max(0.0, deadline - time.monotonic()))
                if kind == "done":
                    return completion_body(chat, self.limits.model_name, value.text, value.finish_reason,
                                           value.prompt_tokens, value.completion_tokens)
                if kind == "error":
                    raise APIError(500, value, "server_error")
        except asyncio.TimeoutError:
            raise self.timed_out() from None
        finally:
            job.cancelled = True  # stops its generation if the answer was not delivered (timeout, disconnect)

    def timed_out(self) -> APIError:
        return APIError(504, f"no answer within the server's timeout of {self.settings.request_timeout_s:g} s",
                        "timeout", code="timeout")

    async def stream_events(self, chat: ChatRequest, job: Job, events: asyncio.Queue, deadline: float):
        """Server-sent events: a role chunk, content chunks, a finish chunk (and usage), then ``[DONE]``."""
        name = self.limits.model_name

        def event(body: dict) -> str:
            return f"data: {json.dumps(body)}\n\n"

        sent = ""
        try:
            yield event(chunk_body(chat, name, {"role": "assistant", "content": ""}))
            while True:
                try:
                    kind, value = await asyncio.wait_for(events.get(), max(0.0, deadline - time.monotonic()))
                except asyncio.TimeoutError:
                    yield event(self.timed_out().body)
                    return
                if kind == "text":
                    sent += value
                    yield event(chunk_body(chat, name, {"content": value}))
                elif kind == "error":
                    yield event(APIError(500, value, "server_error").body)
                    return
                else:
                    if value.text.startswith(sent):
                        if len(value.text) > len(sent):
                            yield event(chunk_body(chat, name, {"content": value.text[len(sent):]}))
                    else:
                        print_log(f"{chat.id}: the streamed text {sent!r} does not start the answer "
                                  f"{value.text!r}", "current", level="WARNING")
                    yield event(chunk_body(chat, name, {}, value.finish_reason))
                    if chat.include_usage:
                        usage = dict(prompt_tokens=value.prompt_tokens, completion_tokens=value.completion_tokens,
                                     total_tokens=value.prompt_tokens + value.completion_tokens)
                        yield event(chunk_body(chat, name, {}, usage_=usage))
                    yield "data: [DONE]\n\n"
                    return
        finally:
            job.cancelled = True

    def health(self) -> dict:
        return {"status": "ok", "model": self.limits.model_name, "pending": self.batcher.pending,
                "max_pending": self.batcher.max_pending, "max_batch_size": self.batcher.max_batch_size,
                "batch_sizes": dict(self.batcher.batch_sizes), "default_boxes": self.limits.default_boxes}

    def models(self, request: Request) -> dict:
        self.check_key(request)
        return {"object": "list", "data": [{"id": self.limits.model_name, "object": "model",
                                            "created": self.created, "owned_by": "mg-llava"}]}

    def app(self) -> FastAPI:
        @contextlib.asynccontextmanager
        async def lifespan(app):
            self._pool = ThreadPoolExecutor(self.settings.prepare_workers, thread_name_prefix="mg-llava-prepare")
            self.batcher.start()
            try:
                yield
            finally:
                self.batcher.stop()
                self._pool.shutdown(wait=False, cancel_futures=True)

        app = FastAPI(title="MG-LLaVA", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

        @app.exception_handler(APIError)
        async def api_error(request: Request, err: APIError):
            return JSONResponse(err.body, status_code=err.status)

        app.add_api_route("/health", self.health, methods=["GET"])
        app.add_api_route("/v1/models", self.models, methods=["GET"])
        app.add_api_route("/v1/chat/completions", self.chat_completions, methods=["POST"])
        return app


__all__ = ["ModelServer", "ServerSettings"]
