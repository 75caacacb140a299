"""Dynamic batching: requests that wait while the model is busy are answered together, by the same batched
generation that evaluation uses (:func:`~mg_llava.inference.generation.generate_ids`: the training collate, left
padding, per-row stop words), so a batched answer is the answer the request gets alone.

One worker thread owns the model. It takes the oldest waiting job, waits ``batch_wait_s`` for company, and adds
the next waiting jobs with the same decoding settings (:class:`~.protocol.Decoding`) up to ``max_batch_size``.
Admission is bounded: :meth:`Batcher.reserve` refuses (:class:`QueueFull`) once ``max_pending`` requests are being
prepared, waiting or generating. A job flagged ``cancelled`` (its client gave up or timed out) is dropped if still
waiting, or stopped at the next step if generating; the other rows of its batch go on.
"""
import collections
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, List, Sequence

from mmengine.logging import print_log

from mg_llava.inference.generation import decode_answers, generate_ids, pad_token_id

from .protocol import Decoding
from .streaming import BatchStreamer, StopFlagged


class QueueFull(Exception):
    """No room for another request."""


@dataclass(frozen=True)
class Answer:
    text: str
    finish_reason: str  # "stop" (end of sequence or a stop word) or "length" (max_tokens reached)
    prompt_tokens: int  # LLM positions read: text and visual tokens
    completion_tokens: int


@dataclass(eq=False)
class Job:
    """A prepared request. ``deliver`` is called from the worker thread with ``("text", piece)`` (streaming jobs),
    then ``("done", Answer)`` or ``("error", message)``."""

    sample: dict
    decoding: Decoding
    deliver: Callable[[tuple], None]
    stream: bool = False
    cancelled: bool = False
    finished: bool = False  # its place released and its last event delivered
    batch_sizes: List[int] = field(default_factory=list)  # the size of the batch it ran in (for tests and logs)


def completion_length(row: Sequence[int], eos_id, pad_id) -> tuple:
    """``(tokens generated, ended by end-of-sequence)`` of one output row (finished rows are padded)."""
    for k, token in enumerate(row):
        if token == eos_id:
            return k + 1, True
        if token == pad_id:
            return k, False
    return len(row), False


class Batcher:
    """Args:
        loaded: a :class:`~mg_llava.inference.LoadedModel`.
        max_batch_size: requests generated together at most (1: one at a time).
        max_pending: requests admitted at once (preparing, waiting or generating); more get :class:`QueueFull`.
        batch_wait_s: how long the oldest waiting request waits for others before its batch starts.
    """

    def __init__(self, loaded, max_batch_size: int = 8, max_pending: int = 64, batch_wait_s: float = 0.005):
        if max_batch_size < 1 or max_pending < 1:
            raise ValueError(f"need max_batch_size >= 1 and max_pending >= 1, got {max_batch_size}, {max_pending}")
        self.loaded = loaded
        self.max_batch_size = max_batch_size
        self.max_pending = max_pending
        self.batch_wait_s = batch_wait_s
        self.pending = 0
        self.batch_sizes = collections.Counter()  # batch size -> batches run
        self._waiting = collections.deque()
        self._lock = threading.Condition()
        self._thread = None
        self._running = False

    # ------------------------------------------------------------------------------------------ admission
    def reserve(self) -> None:
        """Count one more request in, or raise :class:`QueueFull`."""
        with self._lock:
            if self.pending >= self.max_pending:
                raise QueueFull(f"{self.pending} requests are being prepared, waiting or generating (the limit)")
            self.pending += 1

    def release(self) -> None:
        """A reserved request that never became a job (it failed while being prepared)."""
        with self._lock:
            self.pending -= 1

    def submit(self, job: Job) -> None:
        """Queue a job for a reserved request; the batcher releases its place when it is done."""
        with self._lock:
            self._waiting.append(job)
            self._lock.notify()

    # ------------------------------------------------------------------------------------------ worker
    def start(self) -> None:
        self._running = True
        self._thread = threading.Thread(target=self._work, name="mg-llava-batcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._lock:
            self._running = False
            self._lock.notify_all()
        if self._thread is not None:
            self._thread.join()

    def _drop_cancelled(self) -> None:
        for job in [j for j in self._waiting if j.cancelled]:
            self._waiting.remove(job)
            self.pending -= 1

    def _next_batch(self) -> List[Job]:
        with self._lock:
            while self._running and not self._waiting:
                self._lock.wait()
            if not self._running:
                return []
        if 1 < self.max_batch_size and self.batch_wait_s > 0 and len(self._waiting) < self.max_batch_size:
            time.sleep(self.batch_wait_s)
        with self._lock:
            self._drop_cancelled()
            if not self._waiting:
                return []
            first = self._waiting.popleft()
            batch = [first] + [j for j in self._waiting if j.decoding == first.decoding][:self.max_batch_size - 1]
            for job in batch[1:]:
                self._waiting.remove(job)
            return batch

    def _work(self) -> None:
        while self._running:
            batch = self._next_batch()
            if batch:
                try:
                    self.run(batch)
                except Exception as err:  # noqa: BLE001 - e.g. a delivery to a closed event loop: keep serving
                    print_log(f"a batch of {len(batch)} failed after generation: {err!r}", "current", level="ERROR")
                finally:
                    with self._lock:
                        self.pending -= sum(not job.finished for job in batch)
                        for job in batch:
                            job.finished = True

    def finish(self, job: Job, event: tuple) -> None:
        """Release the job's place, then deliver its last event: a client that sends its next request as soon as
        it has an answer finds the place free."""
        with self._lock:
            self.pending -= 1
            job.finished = True
        job.deliver(event)

    def run(self, jobs: List[Job]) -> None:
        """Generate the answers of ``jobs`` (equal decoding settings) together and deliver them."""
        loaded, decoding = self.loaded, jobs[0].decoding
        tokenizer = loaded.preprocessor.tokenizer
        stop_words = loaded.preprocessor.stop_words + list(decoding.stop)
        for job in jobs:
            job.batch_sizes.append(len(jobs))
        streamer = None
        streaming = [i for i, job in enumerate(jobs) if job.stream]
        if streaming:
            streamer = BatchStreamer(tokenizer, len(jobs), stop_words, rows=streaming,
                                     on_text=lambda row, piece: jobs[row].deliver(("text", piece)))
        try:
            output, prompt_lengths = generate_ids(
                loaded.model, tokenizer, [job.sample for job in jobs], max_new_tokens=decoding.max_new_tokens,
                stop_words=stop_words, temperature=decoding.temperature, top_p=decoding.top_p, streamer=streamer,
                device=loaded.device, stopping_criteria=[StopFlagged([lambda j=job: j.cancelled for job in jobs])])
            texts = decode_answers(tokenizer, output, stop_words)
        except Exception as err:  # noqa: BLE001 - every request of the batch gets the error, the server goes on
            print_log(f"generation failed for a batch of {len(jobs)}: {err!r}", "current", level="ERROR")
            for job in jobs:
                self.finish(job, ("error", f"generation failed: {err!r}"))
            return
        self.batch_sizes[len(jobs)] += 1
        eos_id, pad_id = tokenizer.eos_token_id, pad_token_id(tokenizer)
        raw = tokenizer.batch_decode(output, skip_special_tokens=False)
        for job, text, row, decoded, prompt_tokens in zip(jobs, texts, output.tolist(), raw, prompt_lengths):
            count, ended = completion_length(row, eos_id, pad_id)
            stopped = ended or any(w in decoded for w in stop_words if w)
            reason = "length" if count >= decoding.max_new_tokens and not stopped else "stop"
            self.finish(job, ("done", Answer(text, reason, int(prompt_tokens), count)))


__all__ = ["Answer", "Batcher", "Job", "QueueFull", "completion_length"]
