"""A provider's stated budgets (`x-ratelimit-*` headers and the other styles of
limits.RATE_HEADER_STYLES, limits.StatedPacing): parsed robustly, carried from the HTTP engine to
the runner, and paced by, so a run against a stated limit draws (nearly) no 429s; without the
headers, nothing changes."""

from __future__ import annotations

import asyncio
import datetime
import email.utils
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
    RATE_HEADER_STYLES,
    http_failure,
    parse_duration,
    parse_rate_headers,
    parse_reset,
    reply_time,
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


# ------------------------------------------------------------------ other providers' styles


def _rfc3339(when: float, offset_hours: int = 0) -> str:
    zone = datetime.timezone(datetime.timedelta(hours=offset_hours))
    text = datetime.datetime.fromtimestamp(when, zone).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


# How each style writes a budget of `limit` with `remaining` left, whole again `reset` seconds
# after `now` (epoch seconds): (header names for requests, for tokens or None, the reset's text).
STYLES = {
    "openai": ("x-ratelimit-{part}-requests", "x-ratelimit-{part}-tokens", lambda reset, now: f"{reset:.3f}s"),
    "anthropic": ("anthropic-ratelimit-requests-{part}", "anthropic-ratelimit-tokens-{part}",
                  lambda reset, now: _rfc3339(now + reset)),
    "anthropic+02:00": ("anthropic-ratelimit-requests-{part}", "anthropic-ratelimit-tokens-{part}",
                        lambda reset, now: _rfc3339(now + reset, 2)),
    "openrouter": ("x-ratelimit-{part}", None, lambda reset, now: str(round((now + reset) * 1000))),  # epoch ms
    "epoch-seconds": ("x-ratelimit-{part}", None, lambda reset, now: str(round(now + reset))),
    "seconds": ("x-ratelimit-{part}", None, lambda reset, now: f"{reset:.3f}"),
    "ietf": ("ratelimit-{part}", None, lambda reset, now: f"{reset:.3f}"),
    "gitlab": ("ratelimit-{part}", None, lambda reset, now: str(round(now + reset))),  # IETF names, epoch s
    "ietf-07": ("", None, lambda reset, now: f"{reset:.3f}"),  # (STRUCTURED)
    "ietf-08": ("", None, lambda reset, now: f"{reset:.3f}"),
}

# The IETF drafts' single ``RateLimit`` header (draft-07: a Dictionary; draft-08 on: a List of
# named policies, their quotas in ``RateLimit-Policy``), from (limit, remaining, reset's text).
STRUCTURED = {
    "ietf-07": lambda limit, remaining, reset: {"RateLimit": f"limit={limit}, remaining={remaining}, reset={reset}"},
    "ietf-08": lambda limit, remaining, reset: {
        "RateLimit": f'"default";r={remaining};t={reset}', "RateLimit-Policy": f'"default";q={limit};w=60'},
}


def in_style(style: str, limit: int, remaining: int, reset: float, now: float, unit: str = "requests",
             ) -> tuple[dict[str, str], float]:
    """`style`'s headers for the budget, and the reset they say (their texts are rounded)."""
    requests, tokens, write = STYLES[style]
    name = (requests if unit == "requests" else tokens).format
    text = write(reset, now)
    said = {"openrouter": lambda: int(text) / 1000 - now, "epoch-seconds": lambda: int(text) - now,
            "gitlab": lambda: int(text) - now}.get(style, lambda: float(text.rstrip("s")))
    if style.startswith("anthropic"):
        said = lambda: datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() - now  # noqa: E731
    headers = {name(part="limit"): str(limit), name(part="remaining"): str(remaining), name(part="reset"): text}
    if style in STRUCTURED:
        headers = STRUCTURED[style](limit, remaining, text)
    return headers, max(0.0, said())


budgets = st.integers(1, 10**7).flatmap(lambda limit: st.tuples(st.just(limit), st.integers(0, limit)))
resets = st.integers(0, 86_400_000).map(lambda ms: ms / 1000)  # up to a day, in ms
nows = st.floats(1.6e9, 2.5e9)  # epoch seconds: 2020 to 2049


@given(style=st.sampled_from(sorted(STYLES)), budget=budgets, reset=resets, now=nows, tokens=st.booleans())
def test_every_style_gives_the_budget_the_openai_style_gives(style, budget, reset, now, tokens):
    """Whatever the style, the same budget: a reset as a duration, an RFC 3339 time, epoch seconds
    or epoch milliseconds (told from seconds-to-reset by size) all come out as seconds to go."""
    unit = "tokens" if tokens and STYLES[style][1] else "requests"
    headers, said = in_style(style, *budget, reset, now, unit)
    stated = parse_rate_headers(headers, now=now)
    got = stated.tokens if unit == "tokens" else stated.requests
    assert (stated.requests if unit == "tokens" else stated.tokens) is None
    assert (got.limit, got.remaining) == budget
    assert got.reset == pytest.approx(said, abs=1e-5)
    openai, _ = in_style("openai", *budget, said, now, unit)
    assert parse_rate_headers(openai, now=now) == StatedLimits(**{unit: Budget(*budget, pytest.approx(said, abs=1e-3))})


@pytest.mark.parametrize(
    "headers, budget",
    [  # as providers send them (their documentation's or their replies' own)
        ({"anthropic-ratelimit-requests-limit": "1000", "anthropic-ratelimit-requests-remaining": "999",
          "anthropic-ratelimit-requests-reset": "2025-08-21T12:40:59Z", "date": "Thu, 21 Aug 2025 12:40:30 GMT"},
         Budget(1000, 999, 28.5)),  # the reply's Date, the middle of its second (the local clock is off)
        ({"X-RateLimit-Limit": "20", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1743638400000",
          "Date": "Wed, 02 Apr 2025 23:59:00 GMT"}, Budget(20, 0, 59.5)),  # OpenRouter: epoch ms
        ({"ratelimit-policy": "600;w=300", "ratelimit-remaining": "580", "ratelimit-reset": "39"},
         Budget(600, 580, 39.0)),  # the IETF draft, its limit in the policy alone
        ({"RateLimit-Limit": "10, 10;w=1, 1000;w=3600", "RateLimit-Remaining": "9", "RateLimit-Reset": "1"},
         Budget(10, 9, 1.0)),  # an early draft's list: the first policy
        ({"ratelimit-policy": '"default";q=100;w=60', "ratelimit-remaining": "50", "ratelimit-reset": "30"},
         Budget(100, 50, 30.0)),  # a later draft's structured policy
        ({"X-RateLimit-Limit": "1, 15000", "X-RateLimit-Remaining": "1, 1000", "X-RateLimit-Reset": "1, 1419704"},
         Budget(1, 1, 1.0)),  # Brave: one member per window, the first the tightest
    ],
)
def test_providers_headers_as_sent(headers, budget):
    assert parse_rate_headers(headers, now=1e6).requests == budget  # (a local clock far off: the Date is used)


def test_the_first_style_that_reads_wins_and_a_bad_one_is_skipped():
    openai, _ = in_style("openai", 60, 59, 1.0, 0)
    anthropic, _ = in_style("anthropic", 100, 10, 5.0, 2e9)
    assert parse_rate_headers({**anthropic, **openai}, now=2e9).requests == Budget(60, 59, 1.0)
    anthropic["anthropic-ratelimit-requests-remaining"] = "plenty"
    ietf, _ = in_style("ietf", 30, 3, 2.0, 2e9)
    assert parse_rate_headers({**anthropic, **ietf}, now=2e9).requests == Budget(30, 3, 2.0)


@pytest.mark.parametrize(
    "headers, budget",
    [
        ({"RateLimit": "limit=100, remaining=50, reset=5"}, Budget(100, 50, 5.0)),  # draft-07
        ({"RateLimit": "reset=5,remaining=50 ,  limit=100;w=60"}, Budget(100, 50, 5.0)),  # any order, parameters
        ({"RateLimit": "limit=100, remaining=0"}, Budget(100, 0, None)),  # no reset: none said
        ({"RateLimit": '"default";r=50;t=5', "RateLimit-Policy": '"default";q=100;w=60'},
         Budget(100, 50, 5.0)),  # draft-08 on
        ({"RateLimit": '"burst";r=9;t=1, "day";r=3;t=3600',
          "RateLimit-Policy": '"day";q=1000;w=86400, "burst";q=10;w=1'},
         Budget(1000, 3, 3600.0)),  # several policies: the least remaining governs, matched by name
        ({"RateLimit": '"bytes";r=0;t=9, "default";r=7;t=2;pk=:dXNlcjE=:',
          "RateLimit-Policy": '"bytes";q=65536;qu="content-bytes";w=10, "default";q=10;qu="requests";w=1'},
         Budget(10, 7, 2.0)),  # a quota of bytes is not one of requests; a partition key is skipped
        ({"RateLimit": '"a";r=4;t=1, "b";r=0;t=1', "RateLimit-Policy": '"a";q=5;w=1'},
         Budget(5, 4, 1.0)),  # a policy whose quota is not stated gives no budget (its rate needs one)
        ({"RateLimit": '"default";r=5;t=2000000010', "RateLimit-Policy": '"default";q=10'},
         Budget(10, 5, 10.0)),  # a reset as an epoch time, told by size as in any style (parse_reset)
    ],
)
def test_the_ietf_drafts_single_header_is_read(headers, budget):
    assert parse_rate_headers(headers, now=2_000_000_000) == StatedLimits(requests=budget)


@pytest.mark.parametrize(
    "good, bad",
    [  # each pair: a header that reads, and the same made malformed, which must read as nothing
        ("limit=100, remaining=50, reset=5", "limit=100, remaining=50, reset=5,"),  # trailing comma
        ("limit=100, remaining=50", "limit=100 remaining=50"),
        ("limit=100, remaining=50", "limit=100, remaining=fifty"),
        ("limit=100, remaining=50", "limit=100, remaining=-50"),
        ("limit=100, remaining=50", "limit=0, remaining=0"),  # a limit of nothing states nothing
        ("limit=100, remaining=50", "limit=1000000000000000, remaining=50"),  # over 15 digits
        ("limit=100, remaining=50", "limit=100, remaining=5e1"),
        ("limit=100, remaining=50", "Limit=100, remaining=50"),  # keys are lower case
        ("limit=100, remaining=50", 'limit="100", remaining=50'),  # a string is not a number
        ('"default";r=50;t=5', '"default;r=50;t=5'),  # unterminated string
        ('"default";r=50;t=5', '"default" ;r=50;t=5'),  # no space before a parameter
        ('"default";r=50;t=5', '"default";r=-1;t=5'),
        ('"default";r=50;t=5', '"default";r=?1;t=5'),
        ('"default";r=50;t=5', '"default";r=50;t=5, '),
        ('"default";r=50;t=5', '"other";r=50;t=5'),  # no policy of that name
    ],
)
def test_a_malformed_ietf_header_is_ignored(good, bad):
    policy = {"RateLimit-Policy": '"default";q=100;w=60'}
    assert parse_rate_headers({"RateLimit": good, **policy}, now=2e9) is not None
    assert parse_rate_headers({"RateLimit": bad, **policy}, now=2e9) is None
    assert parse_rate_headers({"RateLimit": '"default";r=50;t=5', "RateLimit-Policy": bad.replace("r=", "q=")},
                              now=2e9) is None


structured_text = st.lists(st.sampled_from(['"default"', "default", "limit", "remaining", "reset", "=", ";", ",",
                                            " ", "r", "t", "q", "w", "qu", "pk", "50", "-1", "5.5", "?1", ":YQ==:",
                                            '"', "\\", "1" * 16, "\x00", "é"]), max_size=20).map("".join)


@given(rate=st.one_of(structured_text, st.text(max_size=40)), policy=st.one_of(structured_text, st.text(max_size=40)))
def test_the_ietf_single_header_never_raises_on_junk(rate, policy):
    limits = parse_rate_headers({"RateLimit": rate, "RateLimit-Policy": policy}, now=2e9)
    for budget in (limits.requests, limits.tokens) if limits else ():
        assert budget is None or (budget.limit > 0 and budget.remaining >= 0
                                  and (budget.reset is None or (math.isfinite(budget.reset) and budget.reset >= 0)))


def anthropic_headers(unit: str, limit: int, remaining: int, reset: float, now: float) -> dict[str, str]:
    name = f"anthropic-ratelimit-{unit}-{{}}".format
    return {name("limit"): str(limit), name("remaining"): str(remaining), name("reset"): _rfc3339(now + reset)}


def test_anthropics_input_and_output_token_budgets_are_read_as_what_they_are():
    headers = {**anthropic_headers("requests", 50, 49, 1.2, 2e9),
               **anthropic_headers("tokens", 90000, 89000, 1.0, 2e9),
               **anthropic_headers("input-tokens", 80000, 79000, 1.0, 2e9),
               **anthropic_headers("output-tokens", 16000, 15900, 1.0, 2e9)}
    assert parse_rate_headers(headers, now=2e9) == StatedLimits(
        requests=Budget(50, 49, pytest.approx(1.2)), tokens=Budget(90000, 89000, pytest.approx(1.0)),
        input_tokens=Budget(80000, 79000, pytest.approx(1.0)), output_tokens=Budget(16000, 15900, pytest.approx(1.0)))
    del headers["anthropic-ratelimit-tokens-limit"]
    assert parse_rate_headers(headers, now=2e9).tokens is None  # an input budget is not one of all tokens


def test_the_input_budget_paces_by_prompt_tokens_the_output_budget_by_completion_tokens():
    """1,000 input tokens/s against prompts of 150 allows 6.7 requests/s; 100 output tokens/s
    against completions of 50 allows 2: the output budget governs. (Read as one budget of all
    tokens, the input one allowed 1,000 / 200 = 5 requests/s, 2.5 times what the provider takes.)"""
    limiter = RateLimiter(clock=FakeClock())
    headers = {**anthropic_headers("input-tokens", 60000, 59000, 1.0, 2e9),
               **anthropic_headers("output-tokens", 6000, 5900, 1.0, 2e9)}
    limiter.received(Reply(prompt_tokens=150, completion_tokens=50,
                           stated_limits=parse_rate_headers(headers, now=2e9)), limiter.sent())
    assert limiter.adaptive.rate == pytest.approx(0.98 * 100 / 50)
    limiter = RateLimiter(clock=FakeClock())
    headers["anthropic-ratelimit-output-tokens-remaining"] = "4000"  # 2,000/s: ample for completions of 50
    limiter.received(Reply(prompt_tokens=150, completion_tokens=50,
                           stated_limits=parse_rate_headers(headers, now=2e9)), limiter.sent())
    assert limiter.adaptive.rate == pytest.approx(0.98 * 1000 / 150)


def test_a_spent_output_budget_holds_new_requests_though_input_is_left():
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)
    headers = {**anthropic_headers("input-tokens", 60000, 50000, 10.0, 2e9),  # 1,000 input tokens/s
               **anthropic_headers("output-tokens", 1000, 20, 9.8, 2e9)}  # 100/s, 20 left of a 50 reply
    limiter.received(Reply(prompt_tokens=150, completion_tokens=50,
                           stated_limits=parse_rate_headers(headers, now=2e9)), limiter.sent())
    assert limiter.stated.held_until - clock.now == pytest.approx(30 / 100, rel=0.02)


@pytest.mark.parametrize(
    "value, seconds",
    [("999999999", 999999999.0), ("1000000000", 0.0), ("2000000010", 10.0), ("2000000010.5", 10.5),
     ("1000000000000", 0.0), ("2000000010000", 10.0), ("1999999990", 0.0),  # a time already past: whole now
     ("2033-05-18T03:33:30Z", 10.0), ("2033-05-18T05:33:30.25+02:00", 10.25), ("2033-05-18 03:33:30z", 10.0)],
)
def test_parse_reset_tells_epochs_from_seconds_by_size(value, seconds):
    assert parse_reset(value, now=2_000_000_000) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "junk", ["", "soon", "-5", "2025-08-21T12:40:59", "2025-02-30T00:00:00Z", "2025-08-21T25:00:00Z",
             "2025-08-21", "12:40:59Z", "1e12", "nan", None, 17, "Thu, 21 Aug 2025 12:40:30 GMT"],
)
def test_parse_reset_refuses_junk(junk):
    assert parse_reset(junk, now=2e9) is None


@given(st.one_of(st.text(), st.binary().map(lambda b: b.decode("latin-1"))), nows)
def test_parse_reset_never_raises(text, now):
    seconds = parse_reset(text, now)
    assert seconds is None or (math.isfinite(seconds) and seconds >= 0)


@given(local=nows, skew=st.floats(-1e6, 1e6), reset=resets)
def test_times_are_read_against_the_replys_clock(local, skew, reset):
    """A server whose clock is off by `skew` stamps its Date and its reset times by it: read
    against its Date, the reset is right to within the Date's second; while the Date agrees with
    the local clock (to 2 s), the local clock's finer reading is used."""
    server = local + skew
    headers = {"Date": email.utils.formatdate(server, usegmt=True)}
    clock = reply_time(headers, local)
    if abs(skew) <= 1.0:
        assert clock == local
    elif abs(skew) > 2.5:
        assert abs(clock - server) <= 0.5 + 1e-6
    assert abs(clock - server) <= 2.5  # (in between, either)
    budget, said = in_style("anthropic", 100, 50, reset, server)
    headers.update(budget)
    off = abs(skew) if clock == local else 0.5
    assert parse_rate_headers(headers, now=local).requests.reset == pytest.approx(said, abs=off + 1e-5)


def test_a_bad_date_leaves_the_local_clock():
    for date in ("yesterday", "", "Thu, 99 Aug 2025 12:40:30 GMT", "Thu, 21 Aug 99999 12:40:30 GMT"):
        assert reply_time({"date": date}, 2e9) == 2e9
    assert reply_time({}, 2e9) == 2e9


@given(st.dictionaries(
    st.sampled_from(sorted({name for style in RATE_HEADER_STYLES
                            for name in (*style.limit, style.remaining, style.reset)} | {"date", "x-other"})),
    st.text(max_size=40)))
def test_every_style_never_raises_on_junk(headers):
    limits = parse_rate_headers(headers)
    for budget in (limits.requests, limits.tokens) if limits else ():
        assert budget is None or (budget.limit > 0 and budget.remaining >= 0
                                  and (budget.reset is None or (math.isfinite(budget.reset) and budget.reset >= 0)))


@given(style=st.sampled_from(sorted(STYLES)), budget=budgets.filter(lambda b: b[0] <= 10_000), reset=resets,
       now=st.integers(1_600_000_000_000, 2_500_000_000_000).map(lambda ms: ms / 1000), sent=st.integers(1, 20))
def test_pacing_reacts_to_every_style_as_to_the_openai_one(style, budget, reset, now, sent):
    """The rate bound and the hold that a reply sets do not depend on the style it came in. (Times
    in whole ms, which every style can write: a rate read off a 1 ms reset moves with its rounding.)"""
    outcomes = []
    headers, said = in_style(style, *budget, reset, now)
    for headers in (headers, in_style("openai", *budget, said, now)[0]):
        clock = FakeClock()
        limiter = RateLimiter(clock=clock)
        tickets = [limiter.sent() for _ in range(sent)]
        limiter.received(Reply(stated_limits=parse_rate_headers(headers, now=now)), tickets[0])
        outcomes.append((limiter.adaptive.rate, limiter.stated.held_until))
    (rate, held), (openai_rate, openai_held) = outcomes
    assert rate == pytest.approx(openai_rate, rel=1e-3, abs=1e-3) if openai_rate else rate == openai_rate
    assert held == pytest.approx(openai_held, abs=1e-2)


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


def test_a_bound_from_a_budget_found_to_refill_per_window_is_lifted():
    """One reply cannot tell a steady budget from a window's: 1 spent and 59 s to go reads as 1
    request a minute, and bounded the run to it. When the next replies show a window (Refill not
    steady), that bound must go, or the run crawls at 1 request a minute for good."""
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)
    tickets = [limiter.sent() for _ in range(3)]
    limiter.received(Reply(stated_limits=parse_rate_headers(stated("100", "99", "59s"))), tickets[0])
    assert limiter.adaptive.rate == pytest.approx(0.98 / 59)  # (what one reply says)
    limiter.received(Reply(stated_limits=parse_rate_headers(stated("100", "60", "30s"))), tickets[1])
    assert limiter.stated.rate() is None
    assert limiter.adaptive.stated is None and limiter.adaptive.rate is None  # as if never bound
    limiter.received(Reply(stated_limits=parse_rate_headers(stated("100", "59", "29s"))), tickets[2])
    assert limiter.adaptive.rate is None


def test_a_stated_rate_that_rises_raises_the_ceiling_to_it():
    """The token budget's rate over the tokens a reply uses rises when replies get shorter: the
    ceiling follows it up (never over what 429s taught), not only down."""
    limiter = RateLimiter(clock=FakeClock())
    tokens = stated("60000", "59000", "1s", "tokens")  # 1,000 tokens/s
    limiter.received(Reply(prompt_tokens=150, completion_tokens=50, stated_limits=parse_rate_headers(tokens)),
                     limiter.sent())
    assert limiter.adaptive.rate == pytest.approx(0.98 * 1000 / 200)
    for _ in range(50):  # replies of 100 tokens: the average falls towards it
        limiter.received(Reply(prompt_tokens=50, completion_tokens=50, stated_limits=parse_rate_headers(tokens)),
                         limiter.sent())
    assert limiter.adaptive.rate == pytest.approx(limiter.stated.rate(), rel=0.01)
    assert limiter.adaptive.rate > 0.98 * 1000 / 110


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
    with a `style` (of STYLES), every answer states it in that style, and a Date header as real
    servers send. Counts its answers."""

    def __init__(self, rate: float, capacity: float, *, style: str | None):
        self.rate, self.capacity, self.style = rate, capacity, style
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
            if self.style:
                reset, wall = (self.capacity - self.level) / self.rate, time.time()
                budget, _ = in_style(self.style, round(self.capacity), math.floor(self.level), reset, wall)
                response.headers.update({**budget, "Date": email.utils.formatdate(wall, usegmt=True)})
        return response


def test_a_reply_carries_the_budgets_its_headers_state_200_and_429(llm_server):
    bucket = StatedBucket(rate=1.0, capacity=1, style="openai")
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


def run_against(server, bucket: StatedBucket, tag: str, n: int) -> StatedBucket:
    """`n` requests at concurrency 16 through the real client to `server` answering as `bucket`."""
    server.handler = bucket
    asks = [Request(model="m", messages=({"role": "user", "content": f"{tag} {time.time()} {i}"},)) for i in range(n)]
    engine = HTTPEngine(HTTPConfig(base_url=server.base_url))
    replies = complete_all(engine, asks, concurrency=16, progress=False, retry=RetryPolicy(max_rate_limited=100))
    assert all(r.status == "ok" for r in replies)
    return bucket


def test_with_headers_a_run_under_a_limit_draws_no_429s_without_them_it_does(llm_server):
    """The same run of 150 requests at concurrency 16 against a 30 requests/s bucket: steered by
    429s alone the client must exceed the limit to find it; told the limit, it stays under. (A
    warm-up request first: the first call of a process can take most of a second on a loaded
    machine, and the start's ramp sends blind until a reply comes back, headers or not.)"""
    run_against(llm_server, StatedBucket(rate=30.0, capacity=10, style=None), "warm-up", 1)
    blind = run_against(llm_server, StatedBucket(rate=30.0, capacity=10, style=None), "blind", 150)
    told = run_against(llm_server, StatedBucket(rate=30.0, capacity=10, style="openai"), "told", 150)
    assert blind.answered == told.answered == 150
    assert blind.refused >= 10
    assert told.refused <= 3


@pytest.mark.parametrize("style", ["anthropic", "openrouter", "ietf", "ietf-08"])
def test_a_run_told_its_limit_in_another_style_draws_no_429s_either(llm_server, style):
    """The run above, told the limit in Anthropic's headers (RFC 3339 resets), OpenRouter's
    (epoch-ms resets) or the IETF draft's (seconds to reset): it stays under the limit as it does
    when told in OpenAI's (at most 3 refused, where a blind run draws 10 or more). The resets are
    written to the ms, as a 30 requests/s bucket needs (the RFC 3339 and IETF forms allow it)."""
    run_against(llm_server, StatedBucket(rate=30.0, capacity=10, style=None), "warm-up", 1)
    told = run_against(llm_server, StatedBucket(rate=30.0, capacity=10, style=style), style, 150)
    assert told.answered == 150
    assert told.refused <= 3
