"""Staying inside a provider's limits: failures that may be retried, backoff, and rate limits.

Why a `Failed` reply instead of exceptions: the engine contract says a call always returns a
Reply. A failed call returns `Failed`, a Reply that also tells the runner what to do next:
retry it (429, 5xx, timeouts, dropped connections, unreadable bodies), stop the whole run
(a wrong key, URL or model name would fail every request the same way, and must not be recorded
as an answer), or record it as the request's outcome (any other 4xx, e.g. a prompt longer than
the context window). `Failed.error` reads `"<kind>: <detail>"`.

Why token buckets: providers state limits per minute but enforce them over shorter windows, so a
bucket refilled continuously (at limit/60 per second) and allowed to hold `burst_seconds` worth
of budget spreads the load instead of firing a minute's worth at once. Tokens are booked up front
(prompt estimate + max_tokens, the way providers count them) and the unused part is given back
when the reply reports its real usage.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from m1data.errors import UserError
from m1data.llm.types import Reply

# Kinds of failure. Retryable ones are worth another attempt later; fatal ones are the
# endpoint's configuration and stop the run.
RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529})
FATAL_STATUS = frozenset({401, 403, 404})


@dataclass
class Failed(Reply):
    """A call that produced no answer. `kind` is short and machine-readable ("timeout",
    "connection", "http_429", "bad_response", "http_400", ...)."""

    kind: str = "error"
    retryable: bool = False
    fatal: bool = False
    retry_after: float | None = None


def failure(
    kind: str, detail: str, *, retryable: bool = False, fatal: bool = False, retry_after: float | None = None
) -> Failed:
    return Failed(
        status="error", error=f"{kind}: {detail}", kind=kind, retryable=retryable, fatal=fatal, retry_after=retry_after
    )


def http_failure(status: int, detail: str, headers: Mapping[str, str]) -> Failed:
    """Classify a non-200 HTTP answer."""
    return failure(
        f"http_{status}",
        detail,
        retryable=status in RETRYABLE_STATUS or status >= 500,
        fatal=status in FATAL_STATUS,
        retry_after=parse_retry_after(headers),
    )


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from `retry-after-ms` (OpenAI) or `Retry-After` (seconds or HTTP date)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    value = lowered.get("retry-after-ms")
    if value is not None:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter; a server's `Retry-After` replaces the computed delay
    (capped at `max_retry_after`) because the server knows when it will take requests again."""

    max_attempts: int = 6
    base_delay: float = 1.0
    max_delay: float = 60.0
    max_retry_after: float = 600.0

    def delay(self, attempt: int, retry_after: float | None = None, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return (rng or random).uniform(0, ceiling)


class TokenBucket:
    """A budget refilled at `rate` per second, holding at most `capacity`. A take larger than the
    capacity waits for a full bucket and leaves it in debt, so huge requests still pass, at the
    long-run rate."""

    def __init__(self, rate: float, capacity: float, clock: Callable[[], float] = time.monotonic):
        if rate <= 0 or capacity <= 0:
            raise UserError("rate and capacity must be positive")
        self.rate = rate
        self.capacity = capacity
        self.clock = clock
        self.level = capacity
        self.updated = clock()

    def _refill(self) -> None:
        now = self.clock()
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now

    def wait_time(self, amount: float) -> float:
        """Seconds until `amount` can be taken (0 if now)."""
        self._refill()
        needed = min(amount, self.capacity)
        return 0.0 if self.level >= needed else (needed - self.level) / self.rate

    def take(self, amount: float) -> None:
        self._refill()
        self.level -= amount

    def give_back(self, amount: float) -> None:
        self._refill()
        self.level = min(self.capacity, self.level + amount)


class RateLimiter:
    """Requests-per-minute and tokens-per-minute limits shared by all workers of one run, plus a
    shared pause: when the server says `Retry-After`, nobody else should hit it before then."""

    def __init__(
        self,
        rpm: float | None = None,
        tpm: float | None = None,
        *,
        burst_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.clock = clock
        self.requests = TokenBucket(rpm / 60, max(1.0, rpm * burst_seconds / 60), clock) if rpm else None
        self.tokens = TokenBucket(tpm / 60, max(1.0, tpm * burst_seconds / 60), clock) if tpm else None
        self.paused_until = 0.0
        self._lock = asyncio.Lock()

    @property
    def counts_tokens(self) -> bool:
        return self.tokens is not None

    def pause(self, seconds: float) -> None:
        self.paused_until = max(self.paused_until, self.clock() + seconds)

    def _wait_time(self, tokens: float) -> float:
        waits = [self.paused_until - self.clock()]
        if self.requests:
            waits.append(self.requests.wait_time(1))
        if self.tokens:
            waits.append(self.tokens.wait_time(tokens))
        return max(waits)

    async def acquire(self, tokens: float = 0) -> None:
        """Wait until one request of `tokens` estimated tokens fits, then book it. Callers queue
        on a lock, so the budget goes out in arrival order and nobody starves."""
        if not self.requests and not self.tokens and self.paused_until <= self.clock():
            return
        async with self._lock:
            while (wait := self._wait_time(tokens)) > 0:
                await asyncio.sleep(wait)
            if self.requests:
                self.requests.take(1)
            if self.tokens:
                self.tokens.take(tokens)

    def settle(self, booked: float, used: float) -> None:
        """Give back what a finished request booked but did not use."""
        if self.tokens and booked > used:
            self.tokens.give_back(booked - used)


__all__ = [
    "FATAL_STATUS",
    "RETRYABLE_STATUS",
    "Failed",
    "RateLimiter",
    "RetryPolicy",
    "TokenBucket",
    "failure",
    "http_failure",
    "parse_retry_after",
]
