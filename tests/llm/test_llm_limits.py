"""Backoff, Retry-After parsing and token buckets, on a fake clock where timing matters."""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
import unittest.mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from m1data.llm.limits import (
    Ceilings,
    RateLimiter,
    RetryPolicy,
    TokenBucket,
    http_failure,
    parse_retry_after,
    shared_ceilings,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    "headers, expected",
    [
        ({"Retry-After": "3"}, 3.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"retry-after-ms": "250", "Retry-After": "9"}, 0.25),
        ({"Retry-After": "-4"}, 0.0),
        ({"Retry-After": "soon"}, None),
        ({}, None),
    ],
)
def test_parse_retry_after(headers, expected):
    assert parse_retry_after(headers) == expected


def test_parse_retry_after_http_date():
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= parse_retry_after({"Retry-After": when}) <= 31


@given(attempt=st.integers(1, 30), seed=st.integers(0, 10**6))
def test_backoff_is_bounded_and_grows(attempt, seed):
    policy = RetryPolicy(base_delay=1.0, max_delay=60.0)
    delay = policy.delay(attempt, rng=random.Random(seed))
    assert 0 <= delay <= min(60.0, 2 ** (attempt - 1))


def test_retry_after_replaces_backoff_and_is_capped():
    policy = RetryPolicy(max_retry_after=100)
    assert policy.delay(1, retry_after=7.0) == 7.0
    assert policy.delay(5, retry_after=10_000) == 100


def test_a_retry_after_over_the_cap_is_made_fatal_with_how_long():
    policy = RetryPolicy(max_retry_after=600)
    short = http_failure(429, "slow down", {"Retry-After": "600"})
    assert policy.refuse_long_wait(short) is short
    long = policy.refuse_long_wait(http_failure(429, "daily quota", {"Retry-After": "7200"}))
    assert long.fatal and not long.retryable and long.kind == "http_429"
    assert long.error.startswith("http_429: daily quota; the provider asks to wait 2 h (Retry-After: 7200 s)")


def test_status_classification():
    assert http_failure(429, "x", {"Retry-After": "2"}).retry_after == 2.0
    assert http_failure(599, "x", {}).retryable
    assert http_failure(403, "x", {}).fatal
    assert not http_failure(413, "x", {}).retryable


def test_token_bucket_refills_at_rate():
    clock = FakeClock()
    bucket = TokenBucket(rate=10, capacity=20, clock=clock)
    bucket.take(20)
    assert bucket.wait_time(5) == pytest.approx(0.5)
    clock.now += 0.5
    assert bucket.wait_time(5) == 0
    clock.now += 100
    assert bucket.level <= 20 and bucket.wait_time(20) == 0  # never holds more than capacity


def test_token_bucket_oversized_take_goes_into_debt():
    clock = FakeClock()
    bucket = TokenBucket(rate=10, capacity=20, clock=clock)
    assert bucket.wait_time(500) == 0  # a full bucket admits anything once
    bucket.take(500)
    assert bucket.wait_time(1) == pytest.approx(48.1)  # and pays it back at the long-run rate


def test_unused_tokens_are_given_back():
    clock = FakeClock()
    limiter = RateLimiter(tpm=600, clock=clock)  # 10 tokens/s, burst 100
    asyncio.run(limiter.acquire(100))
    assert limiter.tokens.wait_time(50) > 0
    limiter.settle(booked=100, used=40)
    assert limiter.tokens.wait_time(50) == 0


def test_tokens_used_beyond_the_booking_are_charged():
    clock = FakeClock()
    limiter = RateLimiter(tpm=600, clock=clock)  # 10 tokens/s, burst 100
    asyncio.run(limiter.acquire(20))
    limiter.settle(booked=20, used=300)  # a reasoning model thought far past max_tokens
    assert limiter.tokens.wait_time(20) == pytest.approx(22.0)  # 200 in debt + 20 to book, at 10/s


def test_rpm_is_a_ceiling_over_every_60_seconds(monkeypatch):
    clock = FakeClock()
    limiter = RateLimiter(rpm=600, clock=clock)  # 10/s, a 10 s burst of 100
    limiter.adaptive.start_rate = None  # (the start's ramp is another matter)

    async def sleep(seconds: float) -> None:
        clock.now += max(seconds, 1e-6)  # (a real sleep always moves time on)

    monkeypatch.setattr(asyncio, "sleep", sleep)

    async def send(n: int) -> list[float]:
        times = []
        for _ in range(n):
            await limiter.acquire()
            times.append(clock.now)
        return times

    times = asyncio.run(send(1300))
    start = times[0]
    assert max(sum(1 for t in times[i:] if t < times[i] + 60) for i in range(len(times))) <= 600
    assert sum(1 for t in times if t < start + 60) == 600  # the bucket alone let 700 go in the first minute
    assert times[-1] - start == pytest.approx(120, abs=0.5)  # and the run is no slower: as with the bucket alone


def test_rpm_holds_over_every_call_to_one_endpoint(monkeypatch):
    """Each call made its own limiter, so a stage's next call (the tagger's re-asks, the next student
    on the same server) began with a full bucket and an empty window: 79-80 requests a minute at
    rpm=60. Calls to one endpoint share its ceilings (shared_ceilings); another endpoint has its own."""
    clock = FakeClock()
    ceilings = Ceilings(rpm=60, clock=clock)

    async def sleep(seconds: float) -> None:
        clock.now += max(seconds, 1e-6)

    monkeypatch.setattr(asyncio, "sleep", sleep)

    async def call(n: int) -> list[float]:  # one run_requests call: its own limiter, the endpoint's ceilings
        limiter = RateLimiter(rpm=60, clock=clock, ceilings=ceilings)
        limiter.adaptive.start_rate = None
        times = []
        for _ in range(n):
            await limiter.acquire()
            times.append(clock.now)
        return times

    times = asyncio.run(call(50)) + asyncio.run(call(50))
    assert max(sum(1 for t in times[i:] if t < times[i] + 60) for i in range(len(times))) <= 60
    assert shared_ceilings("http://a/v1", 60, None) is shared_ceilings("http://a/v1", 60, None)
    assert shared_ceilings("http://b/v1", 60, None) is not shared_ceilings("http://a/v1", 60, None)
    assert shared_ceilings("http://a/v1", None, None) is None


def _send_on_a_fake_clock(limiter, clock, bookings, used):
    """Acquire each booking in turn (asyncio.sleep moves `clock`), settle it at once with its
    `used` tokens; returns the send times."""

    async def sleep(seconds: float) -> None:
        clock.now += max(seconds, 1e-6)

    async def send() -> list[float]:
        times = []
        for booked, spent in zip(bookings, used, strict=True):
            booking = await limiter.acquire(booked)
            times.append(clock.now)
            limiter.settle(booked, spent, booking)
        return times

    with unittest.mock.patch.object(asyncio, "sleep", sleep):
        return asyncio.run(send())


def test_tpm_is_a_ceiling_over_every_60_seconds():
    clock = FakeClock()
    limiter = RateLimiter(tpm=6000, clock=clock)  # 100 tokens/s, a 10 s burst of 1,000
    limiter.adaptive.start_rate = None
    times = _send_on_a_fake_clock(limiter, clock, [100] * 130, [100] * 130)
    assert sum(100 for t in times if t < times[0] + 60) == 6000  # the bucket alone let 6,900 go
    assert times[-1] - times[0] == pytest.approx(120, abs=0.5)  # and the run is no slower


@settings(max_examples=40, deadline=None)
@given(
    bookings=st.lists(st.integers(50, 3000), min_size=1, max_size=120),
    shares=st.lists(st.floats(0.9, 1), min_size=120, max_size=120),  # (using less makes it easy)
)
def test_tokens_used_in_any_60_seconds_stay_under_tpm(bookings, shares):
    """Whatever the requests book and then use (no more than booked): in every 60 s from a send
    on, what those sends used stays within tpm."""
    clock = FakeClock()
    limiter = RateLimiter(tpm=6000, clock=clock)
    limiter.adaptive.start_rate = None
    used = [int(b * share) for b, share in zip(bookings, shares)]
    times = _send_on_a_fake_clock(limiter, clock, bookings, used)
    for i, start in enumerate(times):
        assert sum(u for t, u in zip(times[i:], used[i:]) if t < start + 60) <= 6000


def test_pause_delays_everyone():
    limiter = RateLimiter()
    limiter.pause(0.3)
    began = time.perf_counter()
    asyncio.run(limiter.acquire())
    assert time.perf_counter() - began >= 0.25


def test_no_limits_is_free():
    limiter = RateLimiter()
    began = time.perf_counter()

    async def many():
        for _ in range(1000):
            await limiter.acquire(10**6)

    asyncio.run(many())
    assert time.perf_counter() - began < 1


# ------------------------------------------------------------------ the adaptive rate (AIMD)


def simulate(adaptive, clock, seconds, *, limit=None, burst=20.0, p429=0.0, capacity=400.0, seed=0):
    """A client that could send `capacity` requests/s, steered by `adaptive`, against a provider
    with a token bucket of `limit`/s (429 when empty) and/or random 429s; replies come back at
    once. Returns (sent, answered 429) per simulated second."""
    rng = random.Random(seed)
    level, tick = burst, 1.0 / capacity
    per_second = []
    for _ in range(seconds):
        sent = refused = 0
        for _ in range(int(capacity)):
            clock.now += tick
            if limit:
                level = min(burst, level + tick * limit)
            if adaptive.wait_time() > 0:
                continue
            adaptive.take()
            sent += 1
            limited = False
            if limit and level < 1:
                limited = True
            elif limit:
                level -= 1
            if not limited and rng.random() < p429:
                limited = True
            refused += limited
            adaptive.observe(limited)
        per_second.append((sent, refused))
    return per_second


def test_adaptive_rate_settles_just_under_a_token_bucket():
    from m1data.llm.limits import AdaptiveRate

    clock = FakeClock()
    adaptive = AdaptiveRate(clock)
    seconds = simulate(adaptive, clock, 90, limit=100.0)
    sent = sum(s for s, _ in seconds[30:])
    refused = sum(r for _, r in seconds[30:])
    assert (sent - refused) / 60 >= 90  # accepted per second, once settled
    assert refused / sent < 0.05
    assert adaptive.cuts >= 1 and adaptive.rate is not None and adaptive.rate < 130


def test_adaptive_rate_is_not_fooled_by_random_429s():
    from m1data.llm.limits import AdaptiveRate

    clock = FakeClock()
    adaptive = AdaptiveRate(clock)
    seconds = simulate(adaptive, clock, 60, p429=0.1, capacity=300.0)
    assert sum(s for s, _ in seconds[20:]) / 40 >= 0.8 * 300  # random 429s do not throttle the client
    assert adaptive.background == pytest.approx(0.1, abs=0.04)


def test_adaptive_rate_never_slows_a_provider_without_429s():
    from m1data.llm.limits import AdaptiveRate

    clock = FakeClock()
    adaptive = AdaptiveRate(clock)
    simulate(adaptive, clock, 10)
    assert adaptive.rate is None and adaptive.wait_time() == 0


def test_pause_only_when_every_request_in_flight_is_refused():
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)
    too_many = http_failure(429, "slow down", {"Retry-After": "2"})
    for _ in range(4):
        limiter.sent()
    for _ in range(3):
        clock.now += 0.2
        limiter.received(too_many)  # others in flight may still get through: no pause
        assert limiter.paused_until <= clock.now
    clock.now += 0.2
    limiter.received(too_many)  # the fourth: every request that was in flight was refused
    assert limiter.paused_until == pytest.approx(clock.now + 2)


def test_no_pause_for_a_short_run_of_429s():
    """At a limit, a fast provider refuses a few requests in a row whenever our sends bunch up;
    with one request in flight that is 'every request in flight', but it is no reason to stop."""
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)
    too_many = http_failure(429, "slow down", {"Retry-After": "1"})
    for _ in range(10):
        limiter.sent()
        clock.now += 0.01
        limiter.received(too_many)
    assert limiter.paused_until <= clock.now


def run_against(adaptive, clock, n, *, limit=None, burst=20.0, p429=0.0, concurrency=64, latency=0.005,
                capacity=400.0, timer=0.004, retry_after=1.0, seed=0):
    """``n`` requests through ``adaptive`` the way the runner sends them, on a fake clock: at most
    ``concurrency`` in flight and ``capacity`` per second (the client's CPU), replies after
    ``latency``, a 429 retried after ``retry_after``, sends released in bunches every ``timer``
    seconds (an event loop's timers fire late). The
    provider has a token bucket of ``limit``/s holding ``burst`` (429 when empty) and/or refuses
    ``p429`` at random. Returns (seconds until all n were answered, 429s answered)."""
    rng = random.Random(seed)
    began = clock.now
    level, updated = burst, clock.now
    ready = list(range(n))  # requests that may go now
    retries: list[tuple[float, int]] = []  # (when, request)
    flying: list[tuple[float, int, bool, int]] = []  # (answer time, request, refused, ticket)
    done = refused_total = 0
    budget = 0.0  # sends the client's CPU allows now
    while done < n:
        clock.now += timer
        for entry in [f for f in flying if f[0] <= clock.now]:
            flying.remove(entry)
            _, request, refused, ticket = entry
            adaptive.observe(refused, ticket)
            if refused:
                refused_total += 1
                retries.append((clock.now + retry_after, request))
            else:
                done += 1
        ready += [r for when, r in retries if when <= clock.now]
        retries = [(when, r) for when, r in retries if when > clock.now]
        budget = min(budget + capacity * timer, capacity * timer + 1)
        while ready and len(flying) < concurrency and budget >= 1 and adaptive.wait_time() == 0:
            budget -= 1
            request = ready.pop()
            adaptive.take()
            if limit:
                level, updated = min(burst, level + (clock.now - updated) * limit), clock.now
            refused = bool(limit) and level < 1
            if limit and not refused:
                level -= 1
            refused = refused or rng.random() < p429
            flying.append((clock.now + latency, request, refused, adaptive.ticket()))
    return clock.now - began, refused_total


@pytest.mark.parametrize("latency", [0.005, 0.1, 0.3])
def test_adaptive_rate_reaches_90_percent_of_a_limit_with_few_429s(latency):
    """The issue's target, start included: >= 90% of a 100/s limit over a 3,000-request run, < 5%
    of the answers 429 (the first epoch, with no ceiling yet, refuses most of what goes out).
    Slow replies are a loaded 2-core machine: at 0.1 s, a cut that counted only the answers to
    requests sent after the previous cut measured too little and needed a third (5.96% 429);
    at 0.3 s, a first cut to what the first epoch accepted (the provider's burst over a
    latency with no answers) landed at 63/s and the run at 87.8 req/s."""
    from m1data.llm.limits import AdaptiveRate

    clock = FakeClock()
    adaptive = AdaptiveRate(clock)
    seconds, refused = run_against(adaptive, clock, 3000, limit=100.0, capacity=600.0, latency=latency)
    assert 3000 / seconds >= 90
    assert refused / (3000 + refused) < 0.05


@pytest.mark.parametrize("limit, concurrency, capacity", [(20.0, 16, 400.0), (300.0, 256, 1000.0)])
def test_adaptive_rate_follows_other_limits(limit, concurrency, capacity):
    from m1data.llm.limits import AdaptiveRate

    clock = FakeClock()
    adaptive = AdaptiveRate(clock)
    n = int(limit * 120)  # two minutes: the start's 429s are a fixed cost
    seconds, refused = run_against(adaptive, clock, n, limit=limit, concurrency=concurrency, capacity=capacity)
    assert n / seconds >= 0.9 * limit
    assert refused / (n + refused) < 0.05


def test_start_ramp_doubles_then_gets_out_of_the_way():
    """Before any 429, requests go out at 100/s doubling every 0.1 s, as fast as asked once the
    ramp passes 10,000/s (0.66 s); a cut ends it at once."""
    from m1data.llm.limits import AdaptiveRate

    def sends_until(adaptive, clock, end, step=0.001):
        sent = 0
        while clock.now < end:
            while adaptive.wait_time() == 0 and sent < 100_000:
                adaptive.take()
                sent += 1
            clock.now += step
        return sent

    clock = FakeClock()
    adaptive = AdaptiveRate(clock)
    start = clock.now
    early = sends_until(adaptive, clock, start + 0.1)  # 1 + 100 * 0.1 / ln 2 = 15.4
    assert 14 <= early <= 17
    by_half = early + sends_until(adaptive, clock, start + 0.5)  # 1 + 14.43 * 31 = 448
    assert 440 <= by_half <= 452
    clock.now = start + 0.7
    assert adaptive.wait_time() == 0
    clock.now = start + 3600.0  # an hour without a 429: 36,000 doublings, far past a float's range
    assert adaptive.wait_time() == 0

    clock = FakeClock()
    adaptive = AdaptiveRate(clock)
    for _ in range(200):
        adaptive.take()
    clock.now += 0.2
    assert adaptive.wait_time() > 0.1  # the ramp has let ~44 go by 0.2 s
    for _ in range(30):
        adaptive.observe(True, adaptive.ticket())  # an epoch of 429s: a cut
    assert adaptive.cuts == 1
    assert adaptive.wait_time() < 0.01  # only the new ceiling's spacing, no ramp


def test_start_ramp_spares_a_limit_most_of_the_starts_429s():
    """The same run against a 100/s bucket with and without the ramp (fake clock, 600 req/s
    client, 64 in flight): fewer 429s, the same rate; and a provider with no limit loses
    little (a fraction of the 0.66 s ramp)."""
    from m1data.llm.limits import AdaptiveRate

    def run(start_rate, **kwargs):
        clock = FakeClock()
        return run_against(AdaptiveRate(clock, start_rate=start_rate), clock, kwargs.pop("n", 3000),
                           capacity=600.0, **kwargs)

    (ramped, refused_ramped), (plain, refused_plain) = run(100.0, limit=100.0), run(None, limit=100.0)
    assert refused_ramped < 0.75 * refused_plain
    assert 3000 / ramped >= 0.99 * 3000 / plain
    (ramped, _), (plain, _) = run(100.0, n=5000), run(None, n=5000)
    assert ramped - plain < 0.3


def test_random_429s_do_not_collapse_the_rate():
    """10% refused at random (Retry-After 1 s): learned as background after two cuts that did not
    lower the share, and the ceiling lifted; throughput stays near the fault-free one."""
    from m1data.llm.limits import AdaptiveRate

    clock = FakeClock()
    free, _ = run_against(AdaptiveRate(clock), clock, 6000, latency=0.1)  # 640/s: 64 in flight
    adaptive = AdaptiveRate(clock)
    seconds, refused = run_against(adaptive, clock, 6000, latency=0.1, p429=0.1)
    assert free / seconds >= 0.7
    assert adaptive.background == pytest.approx(0.1, abs=0.04)
    assert adaptive.rate is None


def test_replies_to_requests_sent_before_a_cut_do_not_count():
    from m1data.llm.limits import AdaptiveRate

    clock = FakeClock()
    adaptive = AdaptiveRate(clock, min_replies=10)
    old = adaptive.ticket()
    for i in range(50):  # a second at 50/s, 40% refused: over a limit of 30/s
        clock.now += 0.02
        adaptive.take()
        adaptive.observe(i % 5 < 2, old)
    assert adaptive.cuts == 1 and adaptive.rate == pytest.approx(0.95 * 30, rel=0.05)
    for _ in range(100):  # late 429s of requests sent before the cut: not counted
        clock.now += 0.02
        adaptive.observe(True, old)
    assert adaptive.cuts == 1 and adaptive.replies == 0
