"""Run many requests through one engine: validate, look up the cache, send the rest, record all.

The order of work, and why:
1. Every request is validated by the engine first, so a bad parameter (`temp`) fails the run
   before a single call is paid for.
2. Requests are keyed (see cache.py); duplicates are sent once; cached outcomes are reused.
   Truncated, filtered and refused (4xx) outcomes count as answered unless `retry_failed`.
3. The rest go out with at most `concurrency` in flight (a bounded number of tasks pulling from
   one list, so memory does not grow with the number of requests; a request waiting to be
   retried gives its slot to another), under the rate limits (the configured rpm/tpm, the
   budgets the provider states in its rate-limit headers: limits.StatedPacing, and a rate
   learned from its 429s: limits.AdaptiveRate), with retries and backoff for
   transient failures; a 429 delays its own request by its Retry-After. The configured rpm/tpm
   hold over every call this process sends one endpoint (limits.shared_ceilings), not per call. Each outcome is committed to the cache as soon as
   it arrives, so a killed run loses only the requests in flight.
4. A fatal failure (wrong key, URL or model: 401/403/404; no credit left: 402, or OpenAI's 429
   "insufficient_quota") stops the run with EndpointError; what
   was answered before stays cached, and so do the replies to the calls already in flight: the
   run sends nothing new but lets those finish before it raises (`_gather_or_stop`), since the
   provider bills them. So does an endpoint that fails every request the same way:
   the first few attempts all refused before anything was answered (nothing listens there), or
   several requests in a row that failed the same way after all their retries (it went down).
   Sending the other thousands would only record the same failure for each.

`run_requests` returns one Reply per request, in order. `dry_run=True` logs the plan (how many
to send, how many cached, estimated tokens and cost) and returns cached replies and `not_sent`
placeholders without calling the engine. With `progress` (the default) a run that sends anything
logs its plan and summary and shows a bar; like all of m1data's output, those are seen only once
output is on (m1data.output.enable, which the CLI calls).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from m1data.errors import M1DataError, UserError, raise_terminated
from m1data.llm.cache import Cache, Entry, cache_namespace, request_key
from m1data.llm.cost import Estimate, PriceTable, estimate, prompt_tokens
from m1data.llm.limits import Failed, RateLimiter, RetryPolicy, failure, shared_ceilings
from m1data.llm.params import max_output_tokens
from m1data.llm.thinking import split_thinking
from m1data.llm.types import Engine, Reply, Request
from m1data.output import Bar, bar

T = TypeVar("T")

log = logging.getLogger(__name__)

DEFAULT_MAX_TOKENS = 4096  # assumed when a request sets no max_tokens (estimates, tpm booking)
SAME_FAILURES_TO_STOP = 5  # see _DeadEndpoint
WORKERS_PER_SLOT = 4  # requests a run holds per concurrency slot: in flight, or waiting to retry


class EndpointError(M1DataError, RuntimeError):
    """The endpoint refused in a way no retry fixes (bad key, URL or model name)."""


@dataclass
class RunStats:
    """What a run did, for logs and stage manifests. Token and cost figures are measured from
    the replies' usage: `*_sent` for calls made in this run (what was paid now), `*_cached` for
    outcomes reused from the cache. Costs are None when the model has no price."""

    requests: int = 0
    unique: int = 0
    cached: int = 0
    sent: int = 0
    attempts: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    prompt_tokens_sent: int = 0
    completion_tokens_sent: int = 0
    prompt_tokens_cached: int = 0
    completion_tokens_cached: int = 0
    cost_sent: float | None = 0.0
    cost_cached: float | None = 0.0
    seconds: float = 0.0

    def add(self, other: RunStats) -> None:
        """Count `other` in too (the runs of several models of one stage)."""
        for name in ("requests", "unique", "cached", "sent", "attempts", "prompt_tokens_sent",
                     "completion_tokens_sent", "prompt_tokens_cached", "completion_tokens_cached", "seconds"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for status, n in other.outcomes.items():
            self.outcomes[status] = self.outcomes.get(status, 0) + n
        self.cost_sent = _add_cost(self.cost_sent, other.cost_sent)
        self.cost_cached = _add_cost(self.cost_cached, other.cost_cached)


@dataclass
class Plan:
    endpoint: str
    requests: int
    unique: int
    cached: int
    to_send: int
    estimate: Estimate
    typical_source: str
    namespace: str = ""  # the cache namespace of the requests (cache.py), shown so a miss can be explained


COST_DIGITS = 10  # dollars


def _add_cost(total: float | None, cost: float | None) -> float | None:
    """Totals are rounded to 1e-10 dollars: float addition is not associative, and without the
    rounding the same replies summed in another grouping (a build run block by block on Ray)
    would report a cost differing in the last bits."""
    return None if total is None or cost is None else round(total + cost, COST_DIGITS)


def _usable(entry: Entry, retry_failed: bool) -> bool:
    """A cached outcome answers the request unless it was transient, or failed and we retry those."""
    if entry.transient:
        return False
    return entry.reply.status == "ok" or not retry_failed


def cached_reply(entry: Entry, request: Request) -> Reply:
    """A cached reply as the engines read one today. Every engine splits a chat reply's inline
    thinking (`split_thinking`) before it is cached, so a chat reply stored without reasoning is
    text in which the rules of its day found none; a later rule (gpt-oss channels, 2457a92) may
    find some, and read whole the text is graded by its drafts and looks reasoning-less. Verdicts
    are never stored (the stages grade the text anew), so splitting it again is all a rerun needs
    to read it as a fresh call would. Safe: a text the current rules find no thinking in comes
    back untouched, a reply whose server sent its reasoning apart is not split (as the engines do
    not), and plain completions stay verbatim."""
    reply = entry.reply
    if request.kind != "chat" or reply.reasoning is not None or not reply.text:
        return reply
    reasoning, text = split_thinking(reply.text)
    return reply if reasoning is None else dataclasses.replace(reply, reasoning=reasoning, text=text)


def _validate(engine: Engine, requests: Sequence[Request]) -> None:
    validate = getattr(engine, "validate", None)
    if validate is not None:
        for request in requests:
            validate(request)


def _endpoint(engine: Engine) -> str:
    return getattr(engine, "endpoint", None) or engine.name


def _keys(engine: Engine, requests: Sequence[Request]) -> list[str]:
    """Cache keys under the engine's configured namespace, if any (see cache.py)."""
    endpoint, configured = _endpoint(engine), getattr(engine, "cache_namespace", None)
    return [request_key(endpoint, r, configured) for r in requests]


def _cached_answers(
    engine: Engine,
    requests: Sequence[Request],
    cache: Cache | None,
    retry_failed: bool,
    stats: RunStats,
    prices: PriceTable,
) -> tuple[list[str], dict[str, Request], dict[str, Reply]]:
    """What online and batch runs both do first: each request's key, the distinct requests by key,
    and the answers the cache already holds for them (counted, with their tokens and cost, in
    `stats`)."""
    keys = _keys(engine, requests)
    unique: dict[str, Request] = {}
    for key, request in zip(keys, requests, strict=True):
        unique.setdefault(key, request)
    found = cache.get_many(unique) if cache is not None else {}
    answers: dict[str, Reply] = {k: cached_reply(e, unique[k]) for k, e in found.items() if _usable(e, retry_failed)}
    stats.requests += len(requests)
    stats.unique += len(unique)
    stats.cached += len(answers)
    endpoint = _endpoint(engine)
    for key, reply in answers.items():
        _record(stats, reply, prices, unique[key].model, endpoint, cached=True)
    return keys, unique, answers


# ---------------------------------------------------------------------------------------------
# Planning


def plan_requests(
    engine: Engine,
    requests: Sequence[Request],
    cache: Cache | None = None,
    *,
    retry_failed: bool = False,
    prices: PriceTable | None = None,
    typical_output_tokens: int | None = None,
    batch: bool = False,
) -> Plan:
    """What a run would do, without calling anything. The typical output length is, in order:
    the given value, the mean of answered replies already cached for this endpoint and model, or
    a quarter of max_tokens (see cost.estimate). `batch` prices it at the Batch API's discount."""
    _validate(engine, requests)
    endpoint = _endpoint(engine)
    unique: dict[str, Request] = {}
    for key, request in zip(_keys(engine, requests), requests, strict=True):
        unique.setdefault(key, request)
    found = cache.get_many(unique) if cache is not None else {}
    todo = [r for k, r in unique.items() if not (k in found and _usable(found[k], retry_failed))]
    plan = _plan(endpoint, len(requests), len(unique), todo, cache, prices, typical_output_tokens, batch=batch)
    return _with_namespace(plan, engine, requests)


def _plan(
    endpoint: str,
    requests: int,
    unique: int,
    todo: list[Request],
    cache: Cache | None,
    prices: PriceTable | None,
    typical_output_tokens: int | None,
    *,
    batch: bool = False,
) -> Plan:
    source = "given"
    if typical_output_tokens is None and cache is not None and todo:
        typical_output_tokens = cache.mean_completion_tokens(endpoint, todo[0].model)
        source = "mean of cached replies"
    if typical_output_tokens is None:
        source = "guess: 1/4 of max_tokens"
    est = estimate(
        todo,
        prices,
        typical_output_tokens=typical_output_tokens,
        default_max_tokens=DEFAULT_MAX_TOKENS,
        endpoint=endpoint,
        batch=batch,
    )
    return Plan(endpoint, requests, unique, unique - len(todo), len(todo), est, source)


def _with_namespace(plan: Plan, engine: Engine, requests: Sequence[Request]) -> Plan:
    configured = getattr(engine, "cache_namespace", None)
    names = sorted({cache_namespace(plan.endpoint, r.model, configured) for r in requests})
    return dataclasses.replace(plan, namespace=", ".join(names))


def _money(value: float | None) -> str:
    if value is None:
        return "n/a (no price for this model)"
    return f"${value:,.2f}" if value >= 1 else f"${value:.4f}"


def print_plan(plan: Plan, title: str = "plan") -> None:
    """Log the plan (INFO: shown when output is on; `plan_requests` returns it as data)."""
    est = plan.estimate
    log.info(
        f"{title} {plan.endpoint}: {plan.requests:,} requests, {plan.unique:,} distinct, "
        f"{plan.cached:,} cached, {plan.to_send:,} to send\n"
        + (f"  cache namespace: {plan.namespace}\n" if plan.namespace else "") +
        f"  prompt tokens ~{est.prompt_tokens:,}; output tokens <= {est.max_output_tokens:,} "
        f"(typical ~{est.typical_output_tokens:,}, {plan.typical_source})\n"
        f"  cost: typical ~{_money(est.typical_cost)}, at most {_money(est.max_cost)}"
    )


# ---------------------------------------------------------------------------------------------
# Running


BAR_FIELDS = ("rate", "tokens", "cost")


def _advance(progress: Bar, stats: RunStats, sent: int, started: float) -> None:
    """One more reply on the bar, with this run's rate, tokens and cost so far."""
    elapsed = max(time.perf_counter() - started, 1e-9)
    progress.advance(
        rate=f"{sent / elapsed:,.1f} req/s",
        tokens=f"{stats.prompt_tokens_sent:,} in / {stats.completion_tokens_sent:,} out",
        cost="cost n/a" if stats.cost_sent is None else f"${stats.cost_sent:,.4f}",
    )


class _DeadEndpoint:
    """Notices an endpoint that fails every request the same way, and stops the run (module
    docstring, point 4) with one line that says so."""

    def __init__(self, endpoint: str, limit: int = SAME_FAILURES_TO_STOP):
        self.endpoint = endpoint
        self.limit = limit
        self.answered = False
        self.refused = 0
        self.kind: str | None = None
        self.in_a_row = 0

    def attempt(self, reply: Reply) -> None:
        if not isinstance(reply, Failed):
            self.answered = True
            return
        if not self.answered and _never_connected(reply):
            self.refused += 1
            if self.refused >= self.limit:
                raise EndpointError(
                    f"{self.endpoint}: cannot connect ({reply.error}); the first {self.refused} attempts all failed "
                    "this way, so the run stopped. Answers so far are cached: run again once the endpoint is up."
                )

    def outcome(self, reply: Reply) -> None:
        if not (isinstance(reply, Failed) and reply.retryable):
            self.kind, self.in_a_row = None, 0
            return
        self.in_a_row = self.in_a_row + 1 if reply.kind == self.kind else 1
        self.kind = reply.kind
        if self.in_a_row >= self.limit:
            raise EndpointError(
                f"{self.endpoint}: {self.in_a_row} requests in a row failed the same way after every retry "
                f"({reply.error}), so the run stopped. Answers so far are cached: run again once it is fixed."
            )


def _never_connected(reply: Failed) -> bool:
    """A connection that was never made (refused, no such host, connect timed out): nothing
    listens there. A reset or a dropped connection reached a server (a proxy in front of a
    backend that is still starting), which may answer the next call: those are retried like
    any transient failure, and were wrongly reported as "cannot connect"."""
    detail = (reply.error or "").partition(": ")[2]
    return reply.kind == "connection" and detail.startswith(("ConnectError", "ConnectTimeout"))


class _RunStopped(Exception):
    """Raised in a call waiting for a slot after the run was stopped (the first error wins)."""


class _Slots:
    """The run's concurrency: how many calls are in flight. Closed when the run stops (a fatal
    reply, a dead endpoint), so that no call waiting for a slot goes out after that. `sending`
    holds the tasks whose call is on the wire: a stopping run lets those finish (_gather_or_stop)."""

    def __init__(self, concurrency: int):
        self._semaphore = asyncio.Semaphore(concurrency)
        self.closed = False
        self.sending: set[asyncio.Task[Any]] = set()

    async def __aenter__(self) -> None:
        await self._semaphore.acquire()
        if self.closed:
            self._semaphore.release()
            raise _RunStopped

    async def __aexit__(self, *exc: object) -> None:
        self._semaphore.release()


@dataclass
class _Sender:
    """What each request of a run goes through on its way out: this process's rate limits for the
    endpoint, the retries, the dead-endpoint watch, the concurrency slots and the cache. One for
    both send loops (`run_requests`, `attempts.run_tries`): each had built its own, and they drifted
    (the tries' loop kept a rate-limit bucket of its own after the preflight had spent the shared one)."""

    engine: Engine
    endpoint: str
    cache: Cache | None
    limiter: RateLimiter
    policy: RetryPolicy
    prices: PriceTable
    slots: _Slots
    watch: _DeadEndpoint

    @classmethod
    async def open(cls, engine: Engine, cache: Cache | None, *, concurrency: int, rpm: float | None,
                   tpm: float | None, policy: RetryPolicy, prices: PriceTable) -> _Sender:
        opener = getattr(engine, "open", None)
        if opener is not None:  # set-up cost must not land between a rate-limit booking and its send
            await opener()
        endpoint = _endpoint(engine)
        limiter = RateLimiter(rpm, tpm, ceilings=shared_ceilings(endpoint, rpm, tpm))
        return cls(engine, endpoint, cache, limiter, policy, prices, _Slots(concurrency), _DeadEndpoint(endpoint))

    async def send(self, key: str, request: Request, stats: RunStats) -> Reply:
        """The request's final reply, cached and counted; a fatal one stops the run."""
        reply, calls = await self._attempts(request, stats)
        if isinstance(reply, Failed) and reply.fatal:
            raise EndpointError(f"{self.endpoint}: {reply.error}")
        if self.cache is not None:
            transient = isinstance(reply, Failed) and reply.retryable
            self.cache.put(key, self.endpoint, request, reply, transient=transient, attempts=calls)
        stats.sent += 1
        _record(stats, reply, self.prices, request.model, self.endpoint, cached=False)
        self.watch.outcome(reply)
        return reply

    async def _attempts(self, request: Request, stats: RunStats) -> tuple[Reply, int]:
        """Call until the reply is not a retryable failure or the attempts run out. A call holds one
        of the ``slots`` (the run's concurrency) only while it is in flight, not while it waits to
        be retried, so one request's Retry-After does not idle a slot. A reply that is retried is
        counted in `stats`' tokens and cost as it comes (`_count_tokens`): a provider bills a
        refused 200 (null content, a broken-off generation) all the same. `send` records the last
        reply (`_record`)."""
        booked = 0
        if self.limiter.counts_tokens:
            booked = prompt_tokens(request) + (max_output_tokens(request) or DEFAULT_MAX_TOKENS)
        attempt = failures = paced = 0
        while True:
            attempt += 1
            async with self.slots:
                booking = await self.limiter.acquire(booked)
                stats.attempts += 1
                ticket = self.limiter.sent()
                task = asyncio.current_task()
                if task is not None:
                    self.slots.sending.add(task)
                try:
                    reply = await self.engine.complete(request)
                except Exception as exc:  # the engine broke its contract: transient, never cached as an answer
                    reply = failure("exception", f"{type(exc).__name__}: {exc}", retryable=True)
                finally:
                    self.slots.sending.discard(task)  # type: ignore[arg-type]
                self.limiter.received(reply, ticket)
                reply = self.policy.refuse_long_wait(reply)
                if isinstance(reply, Failed) and reply.fatal:
                    self.slots.closed = True  # before the slot is given to a waiting call
            self.limiter.settle(booked, reply.prompt_tokens + reply.completion_tokens, booking)
            self.watch.attempt(reply)
            if not (isinstance(reply, Failed) and reply.retryable) or self.slots.closed:
                return reply, attempt  # (stopped: a transient failure is recorded as one, sent again next run)
            if self.policy.paced(reply):
                paced += 1
            else:
                failures += 1
            if failures >= self.policy.max_attempts or paced >= self.policy.max_rate_limited:
                return reply, attempt
            _count_tokens(stats, reply, self.prices, request.model, self.endpoint, cached=False)
            await asyncio.sleep(self.policy.delay(max(failures, 1), reply.retry_after))


def _record(
    stats: RunStats, reply: Reply, prices: PriceTable, model: str, endpoint: str, *, cached: bool, batch: bool = False
) -> None:
    """Count one request's outcome, with its tokens and cost."""
    stats.outcomes[reply.status] = stats.outcomes.get(reply.status, 0) + 1
    _count_tokens(stats, reply, prices, model, endpoint, cached=cached, batch=batch)


def _count_tokens(
    stats: RunStats, reply: Reply, prices: PriceTable, model: str, endpoint: str, *, cached: bool, batch: bool = False
) -> None:
    """Count the tokens and cost one reply reports (a failure's too, when it reports usage)."""
    cost = prices.cost(model, reply.prompt_tokens, reply.completion_tokens, endpoint=endpoint, batch=batch)
    if cached:
        stats.prompt_tokens_cached += reply.prompt_tokens
        stats.completion_tokens_cached += reply.completion_tokens
        stats.cost_cached = _add_cost(stats.cost_cached, cost)
    else:
        stats.prompt_tokens_sent += reply.prompt_tokens
        stats.completion_tokens_sent += reply.completion_tokens
        stats.cost_sent = _add_cost(stats.cost_sent, cost)


async def _gather_or_stop(coroutines: list[Any], slots: _Slots) -> None:
    """Run the workers. When one raises (a fatal reply, a dead endpoint), the run stops: nothing
    new goes out (the slots close), the workers that wait (for a slot, the rate limits, a retry's
    delay, another worker's reply) are cancelled, and the calls already on the wire are let
    finish, each bounded by the engine's timeout, so their replies are cached before the error is
    raised. Why: the provider bills those replies; cancelled, they were paid again on every rerun
    (one row stopping a run made each rerun pay for all the replies in flight beside it).
    Cancelled from outside (Ctrl-C, SIGTERM, a caller's timeout), everything stops at once."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    if not tasks:
        return

    def errors() -> list[BaseException]:
        found = [t.exception() for t in tasks if t.done() and not t.cancelled()]
        return [e for e in found if e is not None and not isinstance(e, _RunStopped)]

    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        first = errors()
        if not first:
            return
        slots.closed = True
        for task in tasks:
            if task not in slots.sending:
                task.cancel()
        if slots.sending:  # they may take up to the engine's timeout: say why the run has not ended
            log.info(f"stopping: letting the {len(slots.sending)} calls in flight finish, so their replies are cached")
        await asyncio.wait(tasks)
        errors()  # (retrieved: asyncio would warn of errors raised while the run stopped)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    raise first[0]  # the error that stopped the run, not one that came while it stopped


async def run_requests(
    engine: Engine,
    requests: Sequence[Request],
    cache: Cache | None = None,
    *,
    concurrency: int = 16,
    rpm: float | None = None,
    tpm: float | None = None,
    progress: bool = True,
    retry_failed: bool = False,
    dry_run: bool = False,
    retry: RetryPolicy | None = None,
    prices: PriceTable | None = None,
    stats: RunStats | None = None,
    label: str = "requests",
    summary: bool = True,
) -> list[Reply]:
    """One Reply per request, in order (see the module docstring). Pass a RunStats to collect
    counts, tokens and cost. `summary` False: no line at the end, for a caller that adds counts
    of its own to `stats` first and prints the line from them (`log_summary`)."""
    if concurrency < 1:
        raise UserError("concurrency must be at least 1")
    started = time.perf_counter()
    stats = stats if stats is not None else RunStats()
    prices = prices or PriceTable()
    policy = retry or RetryPolicy()
    _validate(engine, requests)
    endpoint = _endpoint(engine)

    keys, unique, answers = _cached_answers(engine, requests, cache, retry_failed, stats, prices)
    todo = [k for k in unique if k not in answers]

    if dry_run or (progress and todo):
        plan = _plan(endpoint, len(requests), len(unique), [unique[k] for k in todo], cache, prices, None)
        plan = _with_namespace(plan, engine, requests)
        print_plan(plan, title=f"{label} (dry run)" if dry_run else label)
    if dry_run:
        stats.seconds += time.perf_counter() - started
        for key in todo:
            answers[key] = failure("not_sent", "dry run")
        return _in_order(keys, answers)

    sender = await _Sender.open(engine, cache, concurrency=concurrency, rpm=rpm, tpm=tpm, policy=policy,
                                prices=prices)
    pending = iter(todo)
    sent_here, sending_since = 0, time.perf_counter()

    async def worker(progress_bar: Bar) -> None:
        try:
            await work(progress_bar)
        except BaseException:
            sender.slots.closed = True
            raise

    async def work(progress_bar: Bar) -> None:
        nonlocal sent_here
        for key in pending:
            answers[key] = await sender.send(key, unique[key], stats)
            sent_here += 1
            _advance(progress_bar, stats, sent_here, sending_since)

    shown = progress and bool(todo)
    try:
        with bar(label, len(unique), completed=len(answers), fields=BAR_FIELDS, show=shown) as progress_bar:
            workers = min(WORKERS_PER_SLOT * concurrency, len(todo))  # the extra ones wait out retries
            await _gather_or_stop([worker(progress_bar) for _ in range(workers)], sender.slots)
    finally:
        stats.seconds += time.perf_counter() - started
    if progress and summary and todo:
        log_summary(label, stats)
    return _in_order(keys, answers)


def _in_order(keys: list[str], answers: dict[str, Reply]) -> list[Reply]:
    """One Reply per key; a request asked twice gets its own copy the second time."""
    seen: set[str] = set()
    replies = []
    for key in keys:
        reply = answers[key]
        replies.append(dataclasses.replace(reply) if key in seen else reply)
        seen.add(key)
    return replies


def log_summary(label: str, stats: RunStats) -> None:
    """The line a run prints as it ends: what it sent and read from the cache, and what that cost."""
    outcomes = ", ".join(f"{n:,} {status}" for status, n in sorted(stats.outcomes.items()))
    cost = "n/a" if stats.cost_sent is None else f"${stats.cost_sent:,.4f}"
    log.info(
        f"{label}: sent {stats.sent:,} ({stats.attempts - stats.sent:,} retries), "
        f"{stats.cached:,} from cache; outcomes: {outcomes}; tokens {stats.prompt_tokens_sent:,} in / "
        f"{stats.completion_tokens_sent:,} out; cost {cost} in {stats.seconds:.1f}s"
    )


def run_sync(engine: Engine, job: Callable[[], Awaitable[T]]) -> T:
    """Run an async job of `engine` from synchronous code and release the engine's connections
    at the end (the engine stays usable). Code already inside an event loop may await the job's
    async form instead (`run_requests`, `run_tries`), which does not block that loop."""

    async def main() -> T:
        with _terminated_by_the_loop():
            try:
                return await job()
            finally:
                await engine.aclose()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    return _in_a_loop_of_its_own(main)


def _in_a_loop_of_its_own(main: Callable[[], Awaitable[T]]) -> T:
    """`asyncio.run(main())` for a caller whose thread already runs an event loop, as a Jupyter
    cell's does: asyncio allows one loop a thread, so `m1data.build`, `infer_run` and every other
    job that calls a model stopped there with "cannot run inside an event loop". The job runs in a
    new loop on a thread of its own while the caller waits, as for any blocking call. An interrupt
    of the wait (Ctrl-C, a notebook's stop button) cancels the job as it would in the caller's
    thread, waits for it to stop (the replies already received are cached), and is raised."""
    started: list[tuple[asyncio.AbstractEventLoop, asyncio.Task[Any]]] = []

    async def tracked() -> T:
        started.append((asyncio.get_running_loop(), asyncio.current_task()))  # type: ignore[arg-type]
        return await main()

    with ThreadPoolExecutor(1, thread_name_prefix="m1data-job") as pool:
        done = pool.submit(asyncio.run, tracked())
        try:
            return done.result()
        except KeyboardInterrupt:
            for loop, task in started:
                with contextlib.suppress(RuntimeError):  # the loop has already closed: the job ended
                    loop.call_soon_threadsafe(task.cancel)
            with contextlib.suppress(BaseException):
                done.result()
            raise


@contextlib.contextmanager
def _terminated_by_the_loop() -> Iterator[None]:
    """While the loop runs, SIGTERM (when the CLI has made it raise `Terminated`) is taken by the
    loop, which cancels the job and raises `Terminated` from here. Raised by the plain handler, it
    lands in whatever task is running at that moment; asyncio keeps an exception raised inside a
    task on that task, so one landing in a task nobody awaits was lost and the run went on."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) is not raise_terminated:
        yield
        return
    loop, task = asyncio.get_running_loop(), asyncio.current_task()
    received: list[int] = []

    def cancel() -> None:
        received.append(signal.SIGTERM)
        if task is not None:
            task.cancel()

    loop.add_signal_handler(signal.SIGTERM, cancel)
    try:
        yield
    except asyncio.CancelledError:
        if not received:
            raise
    finally:
        loop.remove_signal_handler(signal.SIGTERM)  # which resets it to the default: put the CLI's back
        signal.signal(signal.SIGTERM, raise_terminated)
    if received:  # cancelled by it, or the job ended before the cancellation reached it
        raise_terminated(signal.SIGTERM, None)


def complete_all(engine: Engine, requests: Sequence[Request], cache: Cache | None = None, **kwargs: Any) -> list[Reply]:
    """Synchronous `run_requests` for scripts."""
    return run_sync(engine, lambda: run_requests(engine, requests, cache, **kwargs))


__all__ = [
    "BAR_FIELDS",
    "COST_DIGITS",
    "DEFAULT_MAX_TOKENS",
    "SAME_FAILURES_TO_STOP",
    "EndpointError",
    "Plan",
    "RunStats",
    "cached_reply",
    "complete_all",
    "log_summary",
    "plan_requests",
    "print_plan",
    "run_requests",
    "run_sync",
]
