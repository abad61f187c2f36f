"""A provider's stated budgets (`x-ratelimit-*` headers, limits.StatedPacing): parsed robustly,
carried from the HTTP engine to the runner, and paced by, so a run against a stated limit draws
(nearly) no 429s; without the headers, nothing changes."""

from __future__ import annotations

import asyncio
import math
import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from llm_server import Received, Response, error, llm_server, reply  # noqa: F401

from m1data.llm import HTTPConfig, HTTPEngine, Request, RetryPolicy, complete_all
from m1data.llm.limits import (
    Budget,
    RateLimiter,
    Refill,
    StatedLimits,
    StatedPacing,
    http_failure,
    parse_duration,
    parse_rate_headers,
)
from m1data.llm.types import Reply


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ------------------------------------------------------------------ parsing


@pytest.mark.parametrize(
    "value, seconds",
    [("1s", 1.0), ("6m0s", 360.0), ("120ms", 0.12), ("1h2m3.5s", 3723.5), ("2m59.56s", 179.56), ("0s", 0.0),
     ("20", 20.0), (" 7.66s ", 7.66), ("1.5us", 1.5e-6), ("250µs", 250e-6)],
)
def test_parse_duration_reads_go_durations_and_plain_seconds(value, seconds):
    assert parse_duration(value) == pytest.approx(seconds)


@given(
    hours=st.integers(0, 1000), minutes=st.integers(0, 59), seconds=st.integers(0, 59_999).map(lambda n: n / 1000),
    millis=st.integers(0, 999), kept=st.lists(st.booleans(), min_size=4, max_size=4).filter(any),
)
def test_parse_duration_sums_every_part(hours, minutes, seconds, millis, kept):
    parts = [(hours, "h", 3600), (minutes, "m", 60), (seconds, "s", 1), (millis, "ms", 1e-3)]
    parts = [part for part, keep in zip(parts, kept) if keep]
    text = "".join(f"{n:g}{unit}" for n, unit, _ in parts)
    assert parse_duration(text) == pytest.approx(sum(n * scale for n, _, scale in parts), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize(
    "junk", ["", "s", "soon", "-1s", "+1s", "1e3s", "nan", "inf", "1m1", "1.2.3s", "1 s", "1d", "ms5",
             "9" * 400 + "h", None, 5, ["1s"]],
)
def test_parse_duration_refuses_junk(junk):
    assert parse_duration(junk) is None


@given(st.one_of(st.text(), st.binary().map(lambda b: b.decode("latin-1"))))
def test_parse_duration_never_raises(text):
    seconds = parse_duration(text)
    assert seconds is None or (math.isfinite(seconds) and seconds >= 0)


def stated(limit="60", remaining="59", reset="1s", unit="requests"):
    return {f"x-ratelimit-limit-{unit}": limit, f"x-ratelimit-remaining-{unit}": remaining,
            f"x-ratelimit-reset-{unit}": reset}


def test_parse_rate_headers_reads_both_budgets_in_any_case():
    headers = {"X-RateLimit-Limit-Requests": "60", "x-ratelimit-remaining-requests": "59",
               "x-ratelimit-reset-requests": "1s", **stated("150000", "149984", "6ms", "tokens")}
    assert parse_rate_headers(headers) == StatedLimits(Budget(60, 59, 1.0), Budget(150000, 149984, 0.006))


def test_parse_rate_headers_without_them_is_none():
    assert parse_rate_headers({"content-type": "application/json", "retry-after": "1"}) is None
    assert parse_rate_headers(stated(limit="0")) is None  # a limit of nothing states nothing
    assert parse_rate_headers(stated(reset="later")) == StatedLimits(Budget(60, 59, None))  # a bad reset: none


@given(st.dictionaries(
    st.sampled_from([f"x-ratelimit-{k}-{u}" for k in ("limit", "remaining", "reset") for u in ("requests", "tokens")]
                    + ["retry-after", "x-other"]),
    st.text(max_size=30)))
def test_parse_rate_headers_never_raises_on_junk(headers):
    limits = parse_rate_headers(headers)
    for budget in (limits.requests, limits.tokens) if limits else ():
        assert budget is None or (budget.limit > 0 and budget.remaining >= 0)


# ------------------------------------------------------------------ the rate they state


@given(rate=st.floats(0.5, 500), capacity=st.integers(2, 200), levels=st.lists(st.floats(0, 1), min_size=1))
def test_a_steady_budget_is_read_at_its_rate_or_just_over(rate, capacity, levels):
    """A bucket refilled at `rate`, seen at any levels: the rate read is never under the real
    one, and the closer the more replies it has seen."""
    refill = Refill()
    for share in levels:
        level = share * capacity
        refill.observe(Budget(capacity, math.floor(level), (capacity - level) / rate))
    assert refill.steady
    assert refill.rate is None or refill.rate >= rate * (1 - 1e-9)


def test_a_budget_refilled_per_window_is_not_read_as_a_rate():
    refill = Refill()
    refill.observe(Budget(100, 99, 59.0))  # a fixed minute: one spent, 59 s to go
    refill.observe(Budget(100, 60, 30.0))  # 40 spent, 30 s to go: no steady rate says both
    assert not refill.steady and refill.rate is None


def test_the_stated_rate_bounds_the_adaptive_rate_and_ends_the_ramp():
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)
    ticket = limiter.sent()
    limiter.received(Reply(stated_limits=parse_rate_headers(stated("50", "49", "20ms"))), ticket)
    assert limiter.adaptive.rate == pytest.approx(0.98 * 50)
    assert limiter.adaptive._start_wait() == 0
    limiter.adaptive._set_rate(1000.0)  # probing up stops at it
    assert limiter.adaptive.rate == pytest.approx(0.98 * 50)


def test_a_token_budget_bounds_the_rate_by_the_tokens_a_reply_uses():
    limiter = RateLimiter(clock=FakeClock())
    headers = stated("60000", "59000", "1s", "tokens")  # 1,000 tokens/s
    limiter.received(Reply(prompt_tokens=150, completion_tokens=50, stated_limits=parse_rate_headers(headers)),
                     limiter.sent())
    assert limiter.adaptive.rate == pytest.approx(0.98 * 1000 / 200)


def test_a_spent_budget_holds_new_requests_until_one_is_back():
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)
    tickets = [limiter.sent() for _ in range(5)]
    limiter.received(Reply(stated_limits=parse_rate_headers(stated("10", "3", "700ms"))), tickets[0])
    # 10/s; 3 left, and 4 sent after it that it did not count: room for none, so wait for 2
    assert limiter.stated.held_until - clock.now == pytest.approx(0.2)
    assert limiter._wait_time(0) == pytest.approx(0.2)


def test_a_hold_is_bounded():
    clock = FakeClock()
    pacing = StatedPacing(clock, max_hold=60.0)
    pacing.observe(StatedLimits(Budget(14400, 0, 86400.0)), None, 0, 0)  # a day's quota, spent
    assert pacing.held_until - clock.now == pytest.approx(6.0)  # steady: one back in 6 s
    pacing = StatedPacing(clock, max_hold=60.0)
    pacing.requests.steady = False  # a window that comes back whole in a day
    pacing.observe(StatedLimits(Budget(14400, 0, 86400.0)), None, 0, 0)
    assert pacing.held_until - clock.now == 60.0  # then the provider's 429 says how long


def test_without_headers_nothing_changes():
    limiter = RateLimiter(clock=FakeClock())
    for _ in range(100):
        limiter.received(Reply(prompt_tokens=10, completion_tokens=10), limiter.sent())
    limiter.received(http_failure(429, "slow down", {"Retry-After": "1"}), limiter.sent())
    assert limiter.adaptive.stated is None and limiter.stated.held_until == 0
    assert limiter.adaptive.rate is None and limiter.stated.rate() is None


# ------------------------------------------------------------------ against a real local server


class StatedBucket:
    """A token bucket of `rate` requests/s holding `capacity` (429 + Retry-After when empty);
    with `headers`, every answer states it as OpenAI does. Counts its answers."""

    def __init__(self, rate: float, capacity: float, *, headers: bool):
        self.rate, self.capacity, self.headers = rate, capacity, headers
        self.level, self.updated = capacity, time.monotonic()
        self.lock = threading.Lock()
        self.answered = self.refused = 0

    def __call__(self, req: Received) -> Response:
        with self.lock:
            now = time.monotonic()
            self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
            self.updated = now
            if self.level < 1:
                self.refused += 1
                response = error(429, "rate limit reached", retry_after=0.2)
            else:
                self.level -= 1
                self.answered += 1
                response = reply(req, "The answer is \\boxed{A}.")
            if self.headers:
                response.headers.update({
                    "x-ratelimit-limit-requests": f"{self.capacity:g}",
                    "x-ratelimit-remaining-requests": str(math.floor(self.level)),
                    "x-ratelimit-reset-requests": f"{(self.capacity - self.level) / self.rate:.6f}s",
                })
        return response


def test_a_reply_carries_the_budgets_its_headers_state_200_and_429(llm_server):
    bucket = StatedBucket(rate=1.0, capacity=1, headers=True)
    llm_server.handler = bucket
    engine = HTTPEngine(HTTPConfig(base_url=llm_server.base_url))
    ask = Request(model="m", messages=({"role": "user", "content": "q"},))

    async def twice() -> list[Reply]:
        try:
            return [await engine.complete(ask), await engine.complete(ask)]
        finally:
            await engine.aclose()

    answered, refused = asyncio.run(twice())
    assert answered.status == "ok" and answered.stated_limits.requests.limit == 1
    assert refused.kind == "http_429" and refused.stated_limits.requests.remaining == 0
    llm_server.handler = lambda req: reply(req, "x")
    assert asyncio.run(twice())[0].stated_limits is None  # a server that states nothing (vLLM)


def test_with_headers_a_run_under_a_limit_draws_no_429s_without_them_it_does(llm_server):
    """The same run of 150 requests at concurrency 16 against a 30 requests/s bucket: steered by
    429s alone the client must exceed the limit to find it; told the limit, it stays under. (A
    warm-up request first: the first call of a process can take most of a second on a loaded
    machine, and the start's ramp sends blind until a reply comes back, headers or not.)"""

    def run(asks: list[Request], bucket: StatedBucket) -> StatedBucket:
        llm_server.handler = bucket
        engine = HTTPEngine(HTTPConfig(base_url=llm_server.base_url))
        retry = RetryPolicy(max_rate_limited=100)
        replies = complete_all(engine, asks, concurrency=16, progress=False, retry=retry)
        assert all(r.status == "ok" for r in replies)
        return bucket

    def asks(tag: str, n: int) -> list[Request]:
        return [Request(model="m", messages=({"role": "user", "content": f"{tag} {time.time()} {i}"},)) for i in range(n)]

    run(asks("warm-up", 1), StatedBucket(rate=30.0, capacity=10, headers=False))
    blind = run(asks("blind", 150), StatedBucket(rate=30.0, capacity=10, headers=False))
    told = run(asks("told", 150), StatedBucket(rate=30.0, capacity=10, headers=True))
    assert blind.answered == told.answered == 150
    assert blind.refused >= 10
    assert told.refused <= 3
