"""Several tries at one question: a try that fails the stage's check is asked again at once.

m1 asked its teacher once per question and lost every question the teacher missed once. With
`attempts: K`, a question whose reply fails verification is asked again, up to K tries in all.

Why each try is its own request: a second try must not be the first one's cached reply. A try's
`Request.attempt` enters its cache key (m1data.llm.cache; a first try keeps the key it always
had, so caches written before attempts existed stay valid), and a configured `seed` moves on by
one per try (`nth_try`), so a server that honours seeds samples anew. The sampling temperature is
the configured one: at temperature 0 every try gets the same answer, which the stage warns about.

Why one pass and not K: online (`run_tries`), each worker follows one question from try to try,
sending the next try the moment the previous one is judged, while the other workers keep other
questions in flight; a run costs the wall time of the requests it sends, not K rounds that each
wait for their slowest request. The Batch API cannot do that (a batch is answered as a whole), so
there the tries go in rounds (`run_rounds`): every first try, then the second tries of the
questions still open, and so on.

Resuming is free: every try's outcome is committed to the reply cache as it arrives, a question
walks its tries from the first, and each try found in the cache is read, not sent. So a killed
run sends only the tries it had not made, and raising K on a finished run sends only the new
tries of the questions still open.

A transient failure (timeout, 5xx after every retry) ends its question's tries for this run: it is
no outcome, and the next run sends that same try again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from m1data.errors import UserError
from m1data.llm.cache import Cache
from m1data.llm.cost import PriceTable
from m1data.llm.limits import RetryPolicy
from m1data.llm.runner import (
    WORKERS_PER_SLOT,
    RunStats,
    _endpoint,
    _gather_or_stop,
    _keys,
    _record,
    _Sender,
    _usable,
    _validate,
    cached_reply,
    log_summary,
    run_sync,
)
from m1data.llm.types import Engine, Reply, Request, is_transient
from m1data.output import bar

log = logging.getLogger(__name__)

Again = Callable[[int, Reply], bool]
"""(question index, reply of its latest try) -> ask that question once more?"""


def nth_try(request: Request, attempt: int) -> Request:
    """Try number `attempt` of `request`: the same body but for a configured `seed`, which moves
    on by `attempt - 1`, and the try's index in the cache key. Try 1 is `request` itself."""
    if attempt == 1:
        return request
    params = dict(request.params)
    seed = params.get("seed")
    if isinstance(seed, int) and not isinstance(seed, bool):
        params["seed"] = seed + attempt - 1
    return dataclasses.replace(request, params=params, attempt=attempt)


def check_attempts(attempts: int, what: str = "attempts") -> None:
    if not (isinstance(attempts, int) and not isinstance(attempts, bool) and attempts >= 1):
        raise UserError(f"{what} must be a whole number >= 1, not {attempts!r}")


def stats_by_attempt(attempts: int) -> dict[int, RunStats]:
    return {k: RunStats() for k in range(1, attempts + 1)}


def total_stats(by_attempt: dict[int, RunStats]) -> RunStats:
    total = RunStats()
    for stats in by_attempt.values():
        total.add(stats)
    return total


def run_rounds(
    call: Callable[[list[Request], RunStats, int], list[Reply]],
    first: Sequence[Request],
    attempts: int,
    again: Again,
    by_attempt: dict[int, RunStats],
) -> list[list[Reply]]:
    """The tries in rounds (the Batch API's way): `call(requests, stats, attempt)` answers one
    round; round k asks try k of every question whose try k-1 `again` sends back."""
    check_attempts(attempts)
    tries: list[list[Reply]] = [[] for _ in first]
    open_questions = list(range(len(first)))
    for attempt in range(1, attempts + 1):
        if not open_questions:
            break
        replies = call([nth_try(first[i], attempt) for i in open_questions], by_attempt[attempt], attempt)
        still_open = []
        for i, reply in zip(open_questions, replies, strict=True):
            tries[i].append(reply)
            if attempt < attempts and not is_transient(reply) and again(i, reply):
                still_open.append(i)
        open_questions = still_open
    return tries


async def run_tries(
    engine: Engine,
    first: Sequence[Request],
    cache: Cache | None,
    *,
    attempts: int,
    again: Again,
    by_attempt: dict[int, RunStats],
    concurrency: int = 16,
    rpm: float | None = None,
    tpm: float | None = None,
    progress: bool = True,
    retry_failed: bool = False,
    retry: RetryPolicy | None = None,
    prices: PriceTable | None = None,
    label: str = "requests",
    summary: bool = True,
) -> list[list[Reply]]:
    """Every question's tries, in order, online (module docstring): try k+1 of a question goes
    out as soon as `again` sends try k back. `by_attempt[k]` collects what the k-th tries cost.
    `summary` as in `run_requests`."""
    check_attempts(attempts)
    if concurrency < 1:
        raise UserError("concurrency must be at least 1")
    started = time.perf_counter()
    prices = prices or PriceTable()
    policy = retry or RetryPolicy()
    _validate(engine, first)
    endpoint = _endpoint(engine)
    grid = [[nth_try(r, k) for k in range(1, attempts + 1)] for r in first]
    keys = [_keys(engine, row) for row in grid]
    found = cache.get_many(k for row in keys for k in row) if cache is not None else {}
    by_key = {key: request for row, tries in zip(keys, grid, strict=True) for key, request in zip(row, tries, strict=True)}
    known = {k: cached_reply(e, by_key[k]) for k, e in found.items() if _usable(e, retry_failed)}
    if progress:
        cached_firsts = sum(row[0] in known for row in keys)
        log.info(f"{label}: {len(first):,} questions, up to {attempts} tries each; "
                 f"{cached_firsts:,} first tries and {len(known) - cached_firsts:,} later tries already cached")

    sender = await _Sender.open(engine, cache, concurrency=concurrency, rpm=rpm, tpm=tpm, policy=policy,
                                prices=prices)
    in_flight: dict[str, asyncio.Future[Reply]] = {}
    tries: list[list[Reply]] = [[] for _ in first]
    pending = iter(range(len(first)))

    async def answer(key: str, request: Request, stats: RunStats) -> Reply:
        """The cached outcome, the one another worker is fetching, or a new call."""
        stats.requests += 1
        if key in known:
            stats.cached += 1
            _record(stats, known[key], prices, request.model, endpoint, cached=True)
            return known[key]
        if key in in_flight:  # the same request for another question: sent once
            return await in_flight[key]
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        in_flight[key] = future
        stats.unique += 1
        try:
            reply = await sender.send(key, request, stats)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody waits on it
            raise
        finally:
            in_flight.pop(key, None)
        if not is_transient(reply):
            known[key] = reply
        future.set_result(reply)
        return reply

    async def worker(progress_bar: Any) -> None:
        for i in pending:
            for attempt in range(1, attempts + 1):
                reply = await answer(keys[i][attempt - 1], grid[i][attempt - 1], by_attempt[attempt])
                tries[i].append(reply)
                if attempt == attempts or is_transient(reply) or not again(i, reply):
                    break
            progress_bar.advance()

    total = RunStats()
    try:
        with bar(label, len(first), show=progress and bool(first)) as progress_bar:
            workers = min(WORKERS_PER_SLOT * concurrency, len(first))  # the extra ones wait out retries
            await _gather_or_stop([worker(progress_bar) for _ in range(workers)], sender.slots)
    finally:
        total = total_stats(by_attempt)
        by_attempt[1].seconds += time.perf_counter() - started
    if progress and summary and total.sent:
        log_summary(label, total)
    return tries


def complete_tries(engine: Engine, first: Sequence[Request], cache: Cache | None, **kwargs: Any) -> list[list[Reply]]:
    """Synchronous `run_tries` (what a stage calls)."""
    return run_sync(engine, lambda: run_tries(engine, first, cache, **kwargs))


__all__ = [
    "Again",
    "check_attempts",
    "complete_tries",
    "nth_try",
    "run_rounds",
    "run_tries",
    "stats_by_attempt",
    "total_stats",
]
