"""The Batch API: the same requests, sent as files and answered within a day, at the provider's
batch price (OpenAI: half).

Regenerating m23K's traces is the most expensive thing users do, and providers that speak the
OpenAI protocol answer batches for less. `run_batch` has the same contract as
`runner.run_requests` (one Reply per request, in order; outcomes in the same SQLite cache, under the
same keys), so a stage or a build can mix batch and online calls freely, and an online re-run finds
what a batch answered.

How a run goes:
1. Validate, key and look up the cache exactly as the online runner does.
2. Collect any batch this stage submitted before (a crash, Ctrl-C or a closed laptop while it
   waited) before sending anything new: its requests are not sent again.
3. Write the rest as the provider's JSONL (`{"custom_id": <cache key>, "method": "POST", "url":
   "/v1/chat/completions", "body": <the exact body the online engine sends>}`), in chunks under
   the per-batch limits (requests and bytes), upload each file and create its batch.
4. Poll with a progress display until every batch ends, then read the output and error files
   into the cache. Replies are read by the online engine's parser, so both paths classify
   answers, truncations, refusals and failures the same way. Requests a batch did not answer
   (expired, cancelled, failed) are transient failures: the next run sends them again.

Crash safety: the batch ids live in a small JSON file beside the stage's reply cache
(`RUN_DIR/cache/NN_stage/batches.json`, where no rewrite of the stage folder can remove them),
rewritten atomically after each step. The input file id is recorded before the batch is created,
and the batch carries that file id, so a crash between the two is resolved on the next run by
finding the batch by its input file instead of creating a second one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from m1data.durable import write_atomic
from m1data.errors import UserError
from m1data.llm.cache import Cache
from m1data.llm.cost import PriceTable
from m1data.llm.http import HTTPEngine, _error_reply, parse_reply
from m1data.llm.limits import Failed, failure
from m1data.llm.params import request_body
from m1data.llm.runner import (
    EndpointError,
    RunStats,
    _cached_answers,
    _endpoint,
    _in_order,
    _keys,
    _plan,
    _record,
    _validate,
    cached_reply,
    print_plan,
)
from m1data.llm.types import Reply, Request
from m1data.output import bar

log = logging.getLogger(__name__)

STATE_FILENAME = "batches.json"
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
URLS = {"chat": "/v1/chat/completions", "completion": "/v1/completions"}


@dataclass
class BatchLimits:
    """Per-batch limits (OpenAI's: 50,000 requests and a 200 MB input file) and how often to poll."""

    max_requests: int = 50_000
    max_bytes: int = 190 * 2**20
    poll_seconds: float = 30.0
    completion_window: str = "24h"


@dataclass
class BatchEntry:
    """One submitted chunk: its requests' cache keys, its input file and its batch."""

    chunk: str
    keys: list[str]
    kind: str
    input_file_id: str | None = None
    batch_id: str | None = None
    status: str = "new"
    collected: bool = False


@dataclass
class BatchState:
    """The stage folder's record of its batches (`batches.json`)."""

    path: Path
    entries: list[BatchEntry] = field(default_factory=list)

    @classmethod
    def load(cls, path: str | Path) -> BatchState:
        path = Path(path)
        if not path.exists():
            return cls(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            entries = [BatchEntry(**entry) for entry in raw["batches"]]
        except (ValueError, KeyError, TypeError) as err:
            raise UserError(f"{path}: not a readable batch record ({err}); it lists batches already paid for") from err
        return cls(path, entries)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, json.dumps({"batches": [vars(entry) for entry in self.entries]}, indent=1))

    def pending(self) -> list[BatchEntry]:
        return [entry for entry in self.entries if not entry.collected]


def state_path_for(cache: Cache, stage_dir: str | Path | None) -> Path:
    """`<stage_dir>/batches.json` in a build (pass the stage's state folder, which outlives its
    outputs); beside the cache file in a file run."""
    if stage_dir is not None:
        return Path(stage_dir) / STATE_FILENAME
    return cache.path.with_name(f"{cache.path.stem}.{STATE_FILENAME}")


def chunk_requests(items: Sequence[tuple[str, Request]], limits: BatchLimits) -> list[tuple[str, list[str], bytes]]:
    """[(kind, keys, jsonl bytes)]: one kind of request per file (a batch has one endpoint URL),
    each file under the request and byte limits."""
    chunks: list[tuple[str, list[str], bytes]] = []
    for kind in ("chat", "completion"):
        keys: list[str] = []
        lines: list[bytes] = []
        size = 0
        for key, request in items:
            if request.kind != kind:
                continue
            line = (
                json.dumps(
                    {"custom_id": key, "method": "POST", "url": URLS[kind], "body": request_body(request)},
                    ensure_ascii=False,
                ).encode()
                + b"\n"
            )
            if keys and (len(keys) >= limits.max_requests or size + len(line) > limits.max_bytes):
                chunks.append((kind, keys, b"".join(lines)))
                keys, lines, size = [], [], 0
            keys.append(key)
            lines.append(line)
            size += len(line)
        if keys:
            chunks.append((kind, keys, b"".join(lines)))
    return chunks


class _Batches:
    """The provider's files and batches endpoints, through the engine's SDK settings; every SDK
    error becomes one masked EndpointError line."""

    def __init__(self, engine: HTTPEngine):
        self.engine = engine
        self.client = engine.sync_client()

    def _call(self, what: str, call: Any) -> Any:
        import openai

        try:
            return call()
        except openai.APIStatusError as exc:
            message = self.engine.mask(f"http_{exc.status_code}: {exc.message}")
            raise EndpointError(f"{self.engine.endpoint}: batch API, {what}: {message}") from None
        except openai.APIConnectionError as exc:
            cause = exc.__cause__ or exc
            raise EndpointError(
                f"{self.engine.endpoint}: batch API, {what}: cannot connect ({type(cause).__name__})"
            ) from None

    def _unkeyed(self, what: str, found: Any) -> Any:
        """`found` (a file or batch object) when its id and status hold no trace of the API key,
        else one EndpointError line. Why: the id and the status are written as given into the
        record of batches (`batches.json`, next to the cache), the poll's failure reasons and the
        progress line, and an id cannot be masked there, since the next run polls by it; a server
        that names its objects after the key it was sent (echoing the Authorization header) is
        refused instead."""
        for field in ("id", "status"):
            value = getattr(found, field, None)
            if isinstance(value, str) and self.engine.mask(value) != value:
                raise EndpointError(f"{self.engine.endpoint}: batch API, {what}: the server's {field} holds the API "
                                    "key (not shown), which m1data does not record: check the endpoint")
        return found

    def upload(self, name: str, data: bytes) -> str:
        headers = self.engine.sdk_headers()
        return self._unkeyed("upload", self._call(
            "upload", lambda: self.client.files.create(file=(name, data), purpose="batch", extra_headers=headers)
        )).id

    def create(self, input_file_id: str, kind: str, chunk: str, window: str) -> Any:
        return self._unkeyed("create", self._call(
            "create",
            lambda: self.client.batches.create(
                input_file_id=input_file_id,
                endpoint=URLS[kind],
                completion_window=window,
                metadata={"m1data_chunk": chunk},
                extra_headers=self.engine.sdk_headers(),
            ),
        ))

    def find_by_input(self, input_file_id: str) -> Any | None:
        def search() -> Any | None:
            for batch in self.client.batches.list(limit=100, extra_headers=self.engine.sdk_headers()):
                if batch.input_file_id == input_file_id:
                    return batch
            return None

        return self._unkeyed("list", self._call("list", search))

    def retrieve(self, batch_id: str) -> Any:
        return self._unkeyed("poll", self._call(
            "poll", lambda: self.client.batches.retrieve(batch_id, extra_headers=self.engine.sdk_headers())
        ))

    def content(self, file_id: str) -> bytes:
        return self._call(
            "download", lambda: self.client.files.content(file_id, extra_headers=self.engine.sdk_headers()).content
        )

    def close(self) -> None:
        self.client.close()


def _result_reply(line: dict[str, Any], request: Request, engine: HTTPEngine) -> Reply:
    """One output-file line -> Reply, classified as the online engine would."""
    response = line.get("response")
    if isinstance(response, dict):
        status = response.get("status_code")
        body = json.dumps(response.get("body")).encode()
        reply: Reply = (parse_reply(body, request, mask=engine.mask_text) if status == 200
                        else _error_reply(int(status or 0), body, {}, mask=engine.mask_text))
    else:
        error = line.get("error") or {}
        message = error.get("message") if isinstance(error, dict) else str(error)
        code = error.get("code") if isinstance(error, dict) else None
        reply = failure(f"batch_{code or 'error'}", str(message or "no response"), retryable=True)
    return engine._masked(reply)


def _requests_in(api: _Batches, entry: BatchEntry) -> dict[str, Request]:
    """The requests of a batch read back from its input file: for answers to requests this run
    no longer asks (the rows changed since the batch went out), which were paid for all the same."""
    requests: dict[str, Request] = {}
    for raw in api.content(entry.input_file_id or "").splitlines():
        if raw.strip():
            line = json.loads(raw)
            body = dict(line["body"])
            model = body.pop("model")
            messages = body.pop("messages", None)
            prompt = body.pop("prompt", None)
            requests[line["custom_id"]] = Request(
                model=model, messages=tuple(messages) if messages is not None else None, prompt=prompt, params=body
            )
    return requests


def _collect(
    api: _Batches, entry: BatchEntry, batch: Any, unique: dict[str, Request], engine: HTTPEngine
) -> dict[str, tuple[Request, Reply]]:
    """Every answer of a finished batch, with its request; requests it did not answer are
    transient failures."""
    if any(key not in unique for key in entry.keys):
        unique = {**_requests_in(api, entry), **unique}
    replies: dict[str, Reply] = {}
    for file_id in (getattr(batch, "output_file_id", None), getattr(batch, "error_file_id", None)):
        if not file_id:
            continue
        for raw in api.content(file_id).splitlines():
            if not raw.strip():
                continue
            line = json.loads(raw)
            key = line.get("custom_id")
            if key in unique and key in entry.keys:
                replies[key] = _result_reply(line, unique[key], engine)
    for key in entry.keys:
        if key in unique and key not in replies:
            replies[key] = failure(
                f"batch_{batch.status}", f"batch {entry.batch_id} ended {batch.status}", retryable=True
            )
    return {key: (unique[key], reply) for key, reply in replies.items()}


def run_batch(
    engine: HTTPEngine,
    requests: Sequence[Request],
    cache: Cache,
    *,
    state_path: str | Path,
    retry_failed: bool = False,
    dry_run: bool = False,
    progress: bool = True,
    prices: PriceTable | None = None,
    stats: RunStats | None = None,
    limits: BatchLimits | None = None,
    label: str = "requests",
) -> list[Reply]:
    """One Reply per request, in order, through the provider's Batch API (module docstring)."""
    started = time.perf_counter()
    stats = stats if stats is not None else RunStats()
    prices = prices or PriceTable()
    limits = limits or BatchLimits()
    _validate(engine, requests)
    endpoint = _endpoint(engine)
    keys, unique, answers = _cached_answers(engine, requests, cache, retry_failed, stats, prices)

    state = BatchState.load(state_path)
    waiting = {key for entry in _mine(state, unique) for key in entry.keys}
    todo = [k for k in unique if k not in answers and k not in waiting]
    if dry_run or progress:
        plan = _plan(endpoint, len(requests), len(unique), [unique[k] for k in todo], cache, prices, None, batch=True)
        print_plan(plan, title=f"{label} (batch{', dry run' if dry_run else ''})")
        if waiting:
            log.info(f"  {len(waiting):,} requests already in submitted batches (collected, not sent again)")
    if dry_run:
        for key in unique:
            answers.setdefault(key, failure("not_sent", "dry run"))
        return _in_order(keys, answers)

    api = _Batches(engine)
    try:
        _submit(api, state, [(k, unique[k]) for k in todo], limits, unique)
        _wait_and_collect(api, state, unique, engine, cache, answers, stats, prices, limits, progress, label)
    finally:
        api.close()
        stats.seconds += time.perf_counter() - started
    for key in unique:  # a request in no batch and not cached: cannot happen, but never a KeyError
        answers.setdefault(key, failure("batch_missing", "not answered by any batch", retryable=True))
    return _in_order(keys, answers)


def _refuse_requests_in_batches(engine: Any, requests: Sequence[Request], cache: Cache, state_path: Path) -> None:
    """An online run stops before sending requests that wait, unanswered, in a batch an earlier
    run submitted (and the provider bills): it sent them all again, and collecting the batch later
    replaced the online replies, so the same command then kept other rows."""
    if not state_path.exists():
        return
    keys = set(_keys(engine, requests))
    pending = [entry for entry in BatchState.load(state_path).pending() if keys & set(entry.keys)]
    waiting = {key for entry in pending for key in entry.keys} & keys
    waiting -= {key for key, entry in cache.get_many(waiting).items() if not entry.transient}
    if waiting:
        ids = ", ".join(str(entry.batch_id or f"input file {entry.input_file_id}") for entry in pending)
        raise UserError(f"{len(waiting):,} of these requests wait in batch(es) submitted earlier ({ids}), which the "
                        "provider bills: run with batch: true (`--batch`) to collect them, or cancel the batch at the "
                        f"provider and delete {state_path} to send them online")


def _mine(state: BatchState, unique: dict[str, Request]) -> list[BatchEntry]:
    """Pending batches holding any of these requests (a stage folder may hold several students')."""
    return [entry for entry in state.pending() if any(key in unique for key in entry.keys)]


def _submit(
    api: _Batches,
    state: BatchState,
    items: list[tuple[str, Request]],
    limits: BatchLimits,
    unique: dict[str, Request] | None = None,
) -> None:
    """Finish half-submitted chunks from an earlier run, then upload and create the new ones."""
    unique = unique if unique is not None else dict(items)
    for entry in _mine(state, unique):
        if entry.batch_id is None and entry.input_file_id is not None:
            found = api.find_by_input(entry.input_file_id)
            batch = found or api.create(entry.input_file_id, entry.kind, entry.chunk, limits.completion_window)
            entry.batch_id, entry.status = batch.id, batch.status
            state.save()
    for kind, keys, data in chunk_requests(items, limits):
        chunk = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]
        entry = BatchEntry(chunk=chunk, keys=keys, kind=kind)
        entry.input_file_id = api.upload(f"m1data-{chunk}.jsonl", data)
        state.entries.append(entry)
        state.save()  # the file id first: a crash now is resolved by finding the batch by its input
        batch = api.create(entry.input_file_id, kind, chunk, limits.completion_window)
        entry.batch_id, entry.status = batch.id, batch.status
        state.save()


def _wait_and_collect(
    api: _Batches,
    state: BatchState,
    unique: dict[str, Request],
    engine: HTTPEngine,
    cache: Cache,
    answers: dict[str, Reply],
    stats: RunStats,
    prices: PriceTable,
    limits: BatchLimits,
    progress: bool,
    label: str,
) -> None:
    pending = [entry for entry in _mine(state, unique) if entry.batch_id]
    total = sum(len(entry.keys) for entry in pending)
    endpoint = _endpoint(engine)
    with bar(f"{label} (batch)", total, fields=("states",), show=progress and total > 0) as progress_bar:
        while pending:
            done, states = 0, {}
            for entry in list(pending):
                batch = api.retrieve(entry.batch_id)
                entry.status = batch.status
                states[batch.status] = states.get(batch.status, 0) + 1
                counts = getattr(batch, "request_counts", None)
                done += (counts.completed + counts.failed) if counts else 0
                if batch.status not in TERMINAL:
                    continue
                collected = _collect(api, entry, batch, unique, engine)
                held = cache.get_many(collected)
                for key, (request, reply) in collected.items():
                    # answered meanwhile (an online run): that reply stays, or a rerun kept other rows than the
                    # run that wrote them
                    if key in held and not held[key].transient:
                        reply = cached_reply(held[key], request)
                    else:
                        transient = isinstance(reply, Failed) and reply.retryable
                        cache.put(key, endpoint, request, reply, transient=transient)
                    stats.sent += 1
                    stats.attempts += 1
                    _record(stats, reply, prices, request.model, endpoint, cached=False, batch=True)
                    if key in unique:
                        answers[key] = reply
                entry.collected = True
                state.save()
                pending.remove(entry)
            text = ", ".join(f"{n} {status}" for status, n in sorted(states.items()))
            progress_bar.update(completed=done, states=f"batches: {text}")
            if pending:
                time.sleep(limits.poll_seconds)


def complete(
    engine: Any,
    requests: Sequence[Request],
    cache: Cache,
    *,
    batch: bool = False,
    stage_dir: str | Path | None = None,
    batch_limits: BatchLimits | None = None,
    **kwargs: Any,
) -> list[Reply]:
    """What an LLM stage calls: online (`complete_all`, with its concurrency and rate limits) or,
    with `batch`, through the Batch API; the same replies, the same cache."""
    if not batch:
        from m1data.llm.runner import complete_all

        if cache is not None and not kwargs.get("dry_run"):
            _refuse_requests_in_batches(engine, requests, cache, state_path_for(cache, stage_dir))
        return complete_all(engine, requests, cache, **kwargs)
    if not isinstance(engine, HTTPEngine):
        raise UserError(f"batch mode needs an OpenAI-compatible HTTP endpoint, not {engine.name}")  # noqa: TRY004
    for online_only in ("concurrency", "rpm", "tpm", "retry", "summary"):  # a batch run prints no summary line
        kwargs.pop(online_only, None)
    return run_batch(
        engine, requests, cache, state_path=state_path_for(cache, stage_dir), limits=batch_limits, **kwargs
    )


__all__ = [
    "STATE_FILENAME",
    "TERMINAL",
    "URLS",
    "BatchEntry",
    "BatchLimits",
    "BatchState",
    "chunk_requests",
    "complete",
    "run_batch",
    "state_path_for",
]
