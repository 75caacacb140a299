"""A bounded load test with the official ``openai`` client: ``num_requests`` chat requests from ``concurrency``
client threads, request ``i`` about item ``i % len(items)``. Every request ends as answered (200), refused (a 4xx/5xx
status the server documents) or lost (no status: a dropped connection, a client timeout). Answers are checked
against each item's own answer asked alone (:func:`reference_answers`), so a mix-up between requests shows.
"""
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np


@dataclass(frozen=True)
class LoadItem:
    name: str  # e.g. the photo's name; answers are compared per name
    image_url: Optional[str]  # a data URL, or None for text only
    question: str


def messages(item: LoadItem) -> list:
    if item.image_url is None:
        return [{"role": "user", "content": item.question}]
    return [{"role": "user", "content": [{"type": "text", "text": item.question},
                                         {"type": "image_url", "image_url": {"url": item.image_url}}]}]


def ask(client, model: str, item: LoadItem, max_tokens: int, boxes: str) -> str:
    response = client.chat.completions.create(model=model, messages=messages(item), max_tokens=max_tokens,
                                              temperature=0, extra_body=dict(boxes=boxes))
    return response.choices[0].message.content


def reference_answers(client, model: str, items: Sequence[LoadItem], max_tokens: int, boxes: str) -> Dict[str, str]:
    """Each item's answer asked alone (one request at a time: batches of one)."""
    return {item.name: ask(client, model, item, max_tokens, boxes) for item in items}


def run_load(client, model: str, items: Sequence[LoadItem], num_requests: int, concurrency: int, max_tokens: int,
             boxes: str = "none", backoff_s: float = 0.25) -> Tuple[List[dict], float]:
    """``(records, wall seconds)``; a record: ``{index, name, status, answer, latency_s, error}`` (status None: lost).
    A client refused with 429 waits ``backoff_s`` before its next request (as clients honouring 429 do)."""
    import openai

    def one(index: int) -> dict:
        item = items[index % len(items)]
        record = dict(index=index, name=item.name, status=None, answer=None, error=None)
        start = time.perf_counter()
        try:
            record.update(status=200, answer=ask(client, model, item, max_tokens, boxes))
        except openai.APIStatusError as err:
            record.update(status=err.status_code, error=str(err))
        except openai.APIError as err:  # no HTTP status: connection dropped, client timeout
            record.update(error=f"{type(err).__name__}: {err}")
        record["latency_s"] = time.perf_counter() - start
        if record["status"] == 429:
            time.sleep(backoff_s)
        return record

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        records = list(pool.map(one, range(num_requests)))
    return records, time.perf_counter() - start


def check_answers(records: Sequence[dict], references: Dict[str, str]) -> List[str]:
    """The answered requests whose answer is not their own item's reference answer (empty: none mixed up)."""
    return [f"request {r['index']} ({r['name']}): {r['answer']!r} != {references[r['name']]!r}"
            for r in records if r["status"] == 200 and r["answer"] != references[r["name"]]]


def summarize(records: Sequence[dict], wall_s: float) -> dict:
    """Counts by outcome and status, answered requests per second, latency percentiles of the answered ones."""
    answered = [r["latency_s"] for r in records if r["status"] == 200]
    statuses: Dict[str, int] = {}
    for r in records:
        statuses[str(r["status"])] = statuses.get(str(r["status"]), 0) + 1
    lost = sum(1 for r in records if r["status"] is None)
    return dict(requests=len(records), answered=len(answered), refused=len(records) - len(answered) - lost,
                lost=lost, statuses=statuses, wall_s=round(wall_s, 3),
                answered_per_s=round(len(answered) / wall_s, 3) if wall_s > 0 else None,
                p50_s=round(float(np.percentile(answered, 50)), 3) if answered else None,
                p95_s=round(float(np.percentile(answered, 95)), 3) if answered else None)


__all__ = ["LoadItem", "ask", "check_answers", "messages", "reference_answers", "run_load", "summarize"]
