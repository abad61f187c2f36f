"""Staying inside a provider's limits: failures that may be retried, backoff, and rate limits.

Why a `Failed` reply instead of exceptions: the engine contract says a call always returns a
Reply. A failed call returns `Failed`, a Reply that also tells the runner what to do next:
retry it (429, 5xx, timeouts, dropped connections, unreadable bodies), stop the whole run
(a wrong key, URL or model name would fail every request the same way, and must not be recorded
as an answer; so would an account out of credit, 402, whose rows must be sent again once it is
topped up), or record it as the request's outcome (any other 4xx, e.g. a prompt longer than
the context window; a 403 for input flagged by moderation is the request's `filtered` outcome,
m1data.llm.http). `Failed.error` reads `"<kind>: <detail>"`.

Why token buckets: providers state limits per minute but enforce them over shorter windows, so a
bucket refilled continuously (at limit/60 per second) and allowed to hold `burst_seconds` worth
of budget spreads the load instead of firing a minute's worth at once. Tokens are booked up front
(prompt estimate + max_tokens, the way providers count them) and settled when the reply reports
its real usage: the unused part is given back, an excess is charged.

Why an adaptive rate on top (AdaptiveRate): a provider's real limit is often lower than the
configured one, or not stated at all, and it answers 429 above it. Pausing every worker on each
429 (what this module did first) stalls the whole client on one refused request; instead a 429
delays only its own request (its Retry-After), and the run's request rate is steered by the
share of 429s: cut to just under the rate the provider accepted when the share rises, raised
a little while it stays low, so the client settles just under the limit; a run starts with a
half-second ramp, so its whole concurrency does not meet an unknown limit at once. Everyone
pauses only when the provider refuses every request in flight, for half a second at least
(RateLimiter).
Why read the rate-limit headers too (StatedPacing): 429s tell the limit only once it is
passed, so a run steered by them alone keeps spending a few percent of its requests finding it
again (1.6-2.5% against a 100/s bucket). Most providers state it on every reply: the budget,
what is left and when it is whole again, each in its own style (RATE_HEADER_STYLES, one table):
OpenAI's ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` (reset a duration, ``6m0s``),
Anthropic's ``anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,
reset}`` (reset an RFC 3339 time; the input and output budgets are of prompt and of completion
tokens, StatedLimits), OpenRouter's and many APIs' ``X-RateLimit-{Limit,Remaining,Reset}``
(requests; reset an epoch time in s or, OpenRouter's, ms, or seconds to go) and the IETF draft's,
in each of its forms: ``RateLimit-{Limit,Remaining,Reset}``/``RateLimit-Policy`` (reset seconds
to go), draft-07's single ``RateLimit: limit=100, remaining=50, reset=5`` and the named policies
of draft-08 on, ``RateLimit: "default";r=50;t=5`` with ``RateLimit-Policy: "default";q=100;w=60``
(ietf_budget; the last two are structured fields, read whole or not at all). All give the
same Budget: an epoch time is told from seconds to go by its size (parse_reset), and a time is
read against the reply's clock (its Date header, where the local clock disagrees: reply_time).
That bounds the adaptive rate from the first reply (no blind ramp, no probing past it), and a
budget nearly spent holds new requests until there is room, so the provider need not refuse
them. The headers are hints: a bad value is ignored, a budget that does not refill steadily
gives no rate (only holds; the rate its first reply seemed to give is dropped once the next show
it, AdaptiveRate.unbind), a hold is bounded, and without the headers a run is steered exactly as
before.

The configured rpm/tpm stay ceilings in every 60 s (RateLimiter: a provider counts them per
minute); within the minute their buckets spread the load, with a burst of `burst_seconds` worth.

Why 429s with a Retry-After have their own allowance (``RetryPolicy.max_rate_limited``): they
are the provider pacing the run, not a fault of the request, and counted as failures they gave
up requests that the provider would have answered a second later.
"""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import math
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from m1data.errors import UserError
from m1data.llm.types import Reply

# Kinds of failure. Retryable ones are worth another attempt later; fatal ones are the
# endpoint's configuration and stop the run.
RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529})
FATAL_STATUS = frozenset({401, 402, 403, 404})


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


def http_failure(status: int, detail: str, headers: Mapping[str, str], *, out_of_credit: bool = False) -> Failed:
    """Classify a non-200 HTTP answer. An account out of credit (a 402: DeepSeek's "Insufficient
    Balance", OpenRouter's "add credits"; or `out_of_credit`, OpenAI's 429 "insufficient_quota")
    stops the run and says what to do: recorded per row, every row was cached as failed and a
    rerun after the top-up sent nothing; retried as a rate limit, a run out of credit went on for
    ten minutes before it stopped, its bar at 0."""
    out_of_credit = out_of_credit or status == 402
    if out_of_credit:
        detail = f"{detail} (the account is out of credit: add credits and run again; answers so far are cached)"
    return failure(
        f"http_{status}",
        detail,
        retryable=not out_of_credit and (status in RETRYABLE_STATUS or status >= 500),
        fatal=out_of_credit or status in FATAL_STATUS,
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


_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_DURATION = re.compile(rf"(?:{_NUMBER}(?:ns|us|µs|μs|ms|s|m|h))+")
_DURATION_PART = re.compile(rf"({_NUMBER})(ns|us|µs|μs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: object) -> float | None:
    """Seconds in an ``x-ratelimit-reset-*`` value: Go's duration format (``1s``, ``6m0s``,
    ``120ms``, ``1h2m3.5s``) or a bare number of seconds. None for anything else (negative, not
    finite, junk): a header is a hint, and a bad one must not stop or slow a run."""
    text = value.strip() if isinstance(value, str) else ""
    if re.fullmatch(_NUMBER, text):
        seconds = float(text)
    elif _DURATION.fullmatch(text):
        seconds = sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(text))
    else:
        return None
    return seconds if math.isfinite(seconds) else None


def _first_member(value: object) -> str:
    """The first member of a header's list ("10, 10;w=1" -> "10;w=1"): the IETF drafts and a few
    APIs (Brave) list one value per policy, the first the tightest."""
    return value.split(",")[0].strip() if isinstance(value, str) else ""


def _count_header(value: object) -> float | None:
    """A count: a plain number, or the first member of a list whose item or ``q`` parameter is
    one (``10, 10;w=1``; a ``RateLimit-Policy`` of ``600;w=300`` or ``"default";q=600;w=300``)."""
    item, *params = (part.strip() for part in _first_member(value).split(";"))
    for text in [item] + [p[2:] for p in params if p.startswith("q=")]:
        if re.fullmatch(_NUMBER, text) and math.isfinite(number := float(text)):
            return number
    return None


_RFC3339 = re.compile(r"(\d{4}-\d\d-\d\d)[Tt ](\d\d:\d\d:\d\d)(?:\.(\d+))?([Zz]|[+-]\d\d:\d\d)")
EPOCH_SECONDS, EPOCH_MILLISECONDS = 1e9, 1e12  # 2001-09-09 in either: no delta is that long


def _rfc3339(text: str) -> float | None:
    """Epoch seconds of an RFC 3339 time (``2025-08-21T12:40:59Z``, Anthropic's resets); None
    for anything else, a time without its offset too."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        return None
    day, clock, fraction, offset = match.groups()
    offset = "+00:00" if offset in "Zz" else offset  # (fromisoformat takes "Z" only from 3.11)
    try:
        when = datetime.datetime.fromisoformat(f"{day}T{clock}{offset}")
    except ValueError:  # 2025-02-30, 25:00:00
        return None
    return when.timestamp() + float(f"0.{fraction or 0}")


def parse_reset(value: object, now: float) -> float | None:
    """Seconds until a budget is whole again, from any style's reset header (RATE_HEADER_STYLES):
    a duration (``parse_duration``: ``6m0s``, or plain seconds), an RFC 3339 time, or an epoch
    timestamp, told from seconds-to-reset by its size (from ``EPOCH_SECONDS`` epoch seconds, from
    ``EPOCH_MILLISECONDS`` epoch milliseconds, as OpenRouter's). A time is read against ``now``,
    the reply's clock (epoch seconds, ``reply_time``); one already past is 0. None for junk."""
    text = _first_member(value)
    when = _rfc3339(text)
    if when is None:
        seconds = parse_duration(text)
        if seconds is None or seconds < EPOCH_SECONDS or not re.fullmatch(_NUMBER, text):
            return seconds
        when = seconds / 1000 if seconds >= EPOCH_MILLISECONDS else seconds
    return max(0.0, when - now)


def reply_time(headers: Mapping[str, str], local: float | None = None) -> float:
    """The reply's clock, which its reset times are read against (epoch seconds): `local` (now)
    while the reply's ``Date`` header agrees with it, to within the header's 1 s resolution and
    the reply's transit (2 s), as it does on any synced machine; the ``Date`` (the middle of its
    second) when it does not, since a time the server stamped is the server's."""
    local = time.time() if local is None else local
    lowered = {str(k).lower(): v for k, v in headers.items()}
    try:
        stamped = email.utils.parsedate_to_datetime(lowered["date"]).timestamp() + 0.5
    except (KeyError, AttributeError, TypeError, ValueError, IndexError, OverflowError):
        return local
    return local if abs(local - stamped) <= 2.0 and math.isfinite(stamped) else stamped


@dataclass(frozen=True)
class Budget:
    """One of a provider's stated budgets as a reply saw it: ``limit`` in all, ``remaining`` now,
    ``reset`` seconds until it is whole again (None: not said)."""

    limit: float
    remaining: float
    reset: float | None = None


@dataclass(frozen=True)
class StatedLimits:
    """The budgets one reply's headers state (RATE_HEADER_STYLES). ``tokens`` counts all tokens;
    ``input_tokens`` and ``output_tokens`` (Anthropic's) are separate budgets of prompt and of
    completion tokens: the tightest of those that apply bounds the run (StatedPacing)."""

    requests: Budget | None = None
    tokens: Budget | None = None
    input_tokens: Budget | None = None
    output_tokens: Budget | None = None


@dataclass(frozen=True)
class HeaderStyle:
    """How one style of headers states one budget: its ``limit`` (the first of these headers that
    reads), ``remaining`` and ``reset`` headers, in lower case."""

    budget: str  # a field of StatedLimits: "requests", "tokens", "input_tokens" or "output_tokens"
    limit: tuple[str, ...]
    remaining: str
    reset: str


def _style(budget: str, pattern: str, *, limit_also: tuple[str, ...] = ()) -> HeaderStyle:
    name = pattern.format
    return HeaderStyle(budget, (name(part="limit"), *limit_also), name(part="remaining"), name(part="reset"))


# The header styles a provider may state its budgets in, the first that reads winning for each
# budget; every reset is read by parse_reset, whatever its form.
RATE_HEADER_STYLES: tuple[HeaderStyle, ...] = (
    # OpenAI, Azure, Groq, Together, Fireworks...: reset a duration ("6m0s", "120ms")
    _style("requests", "x-ratelimit-{part}-requests"),
    _style("tokens", "x-ratelimit-{part}-tokens"),
    # Anthropic: reset an RFC 3339 time. Its "tokens" is the tightest of its token limits, read as
    # one of all tokens; the input and output budgets are its limits on prompt and on completion
    # tokens, each met by its own kind (read as all tokens, a budget of 80,000 input tokens let
    # through requests whose completions overran a budget of 16,000 output tokens).
    _style("requests", "anthropic-ratelimit-requests-{part}"),
    _style("tokens", "anthropic-ratelimit-tokens-{part}"),
    _style("input_tokens", "anthropic-ratelimit-input-tokens-{part}"),
    _style("output_tokens", "anthropic-ratelimit-output-tokens-{part}"),
    # OpenRouter and many APIs: requests, reset an epoch time (s; OpenRouter's in ms) or seconds
    _style("requests", "x-ratelimit-{part}"),
    # the IETF draft (GitLab, ...): reset seconds (GitLab's an epoch time); the limit may come in
    # RateLimit-Policy alone ("600;w=300"). Its later drafts' single RateLimit header: ietf_budget.
    _style("requests", "ratelimit-{part}", limit_also=("ratelimit-policy",)),
)


# RFC 9651 structured fields, the part the IETF drafts' RateLimit and RateLimit-Policy use: a
# List or a Dictionary of Items with Parameters (no Inner Lists, Dates or Display Strings).
_SF_KEY = r"[a-z*][a-z0-9_.*-]*"
_SF_ITEM = (r"-?(?:[0-9]{1,12}\.[0-9]{1,3}|[0-9]{1,15})"  # Decimal or Integer (ASCII digits only)
            r'|"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*"'  # String
            r"|[A-Za-z*][A-Za-z0-9!#$%&'*+.^_`|~:/-]*"  # Token
            r"|:[A-Za-z0-9+/=]*:"  # Byte Sequence
            r"|\?[01]")  # Boolean
_SF_PARAMETERS = rf"(?:; *{_SF_KEY}(?:=(?:{_SF_ITEM}))?)*"
_SF_PARAMETER = re.compile(rf"; *({_SF_KEY})(?:=({_SF_ITEM}))?")
_SF_LIST_MEMBER = re.compile(rf"()({_SF_ITEM})({_SF_PARAMETERS})")
_SF_DICTIONARY_MEMBER = re.compile(rf"({_SF_KEY})(?:=({_SF_ITEM}))?({_SF_PARAMETERS})")
_SF_COMMA = re.compile(r"[ \t]*,[ \t]*")

SFMember = tuple[str, object, dict[str, object]]  # (key, or "" in a List; item; parameters)


def _sf_item(text: str) -> object:
    """A bare item's value: a number as a float, a String unescaped, a Token as its text, a
    Boolean as a bool, a Byte Sequence as written (no header read here needs its bytes)."""
    if text.startswith('"'):
        return re.sub(r'\\(["\\])', r"\1", text[1:-1])
    if text.startswith("?"):
        return text == "?1"
    if text[0] in "-0123456789":
        return float(text)
    return text


def _sf_members(value: object, *, dictionary: bool) -> list[SFMember] | None:
    """The members of a structured field, a Dictionary's (``limit=100, remaining=50``) or a List's
    (``"default";r=50;t=5``); None unless the whole text is one: a header read in part could be
    read wrong, and a hint read wrong is worse than none."""
    text = value.strip(" \t") if isinstance(value, str) else ""
    member = _SF_DICTIONARY_MEMBER if dictionary else _SF_LIST_MEMBER
    members: list[SFMember] = []
    at = 0
    while at < len(text):
        match = member.match(text, at)
        if match is None:
            return None
        key, item, parameters = match.groups()
        members.append((key, True if item is None else _sf_item(item),
                        {name: _sf_item(v) if v else True for name, v in _SF_PARAMETER.findall(parameters)}))
        at = match.end()
        if at < len(text):
            comma = _SF_COMMA.match(text, at)
            if comma is None or comma.end() == len(text):
                return None
            at = comma.end()
    return members


def _sf_count(value: object) -> float | None:
    """A structured field's count: a number >= 0 (a String, a Boolean or a negative is not)."""
    return value if isinstance(value, float) and value >= 0 else None


def _sf_reset(value: object, now: float) -> float | None:
    """A structured field's reset, read as parse_reset reads any (a float's repr is a plain
    number below 1e16, and a 15-digit Integer is below that)."""
    return parse_reset(repr(value), now) if _sf_count(value) is not None else None


def ietf_budget(headers: Mapping[str, str], now: float) -> Budget | None:
    """The request budget of the IETF drafts' single ``RateLimit`` header (``headers`` in lower
    case), in either of its forms: draft-07's Dictionary, ``limit=100, remaining=50, reset=5``; or,
    from draft-08 on, a List of named policies, what is left of each (``r``) and the seconds until
    it resets (``t``), their quotas (``q``, over a window of ``w`` s) in ``RateLimit-Policy``:
    ``RateLimit: "default";r=50;t=5`` with ``RateLimit-Policy: "default";q=100;w=60``.

    Of several policies the one with the least left governs, as it is the next to refuse. A
    policy counts only with its quota stated (the rate is read off limit minus remaining) and in
    requests (``qu``; one in bytes is no budget of requests). A reset is read by parse_reset, so
    an epoch time is told by its size as in any style. Values malformed as structured fields are
    ignored, whole (_sf_members); decimals are taken where the drafts say Integer, since a finer
    reset only reads closer. None when nothing reads."""
    draft_07 = {key: item for key, item, _ in _sf_members(headers.get("ratelimit"), dictionary=True) or ()}
    limit, remaining = _sf_count(draft_07.get("limit")), _sf_count(draft_07.get("remaining"))
    if limit and remaining is not None:
        return Budget(limit, remaining, _sf_reset(draft_07.get("reset"), now))
    quotas = {}
    for _, name, params in _sf_members(headers.get("ratelimit-policy"), dictionary=False) or ():
        quota = _sf_count(params.get("q"))
        if isinstance(name, str) and quota and params.get("qu", "requests") == "requests":
            quotas[name] = quota
    budgets = []
    for _, name, params in _sf_members(headers.get("ratelimit"), dictionary=False) or ():
        left = _sf_count(params.get("r"))
        if name in quotas and left is not None:
            budgets.append(Budget(quotas[name], left, _sf_reset(params.get("t"), now)))
    return min(budgets, key=lambda budget: budget.remaining, default=None)


def parse_rate_headers(headers: Mapping[str, str], now: float | None = None) -> StatedLimits | None:
    """The request and token budgets that ``headers`` state, in any of RATE_HEADER_STYLES; None
    when they state neither (vLLM, llama.cpp), so a run there behaves as if no header had been
    read. A budget needs a readable limit (> 0) and remaining; a bad reset only leaves it without
    one. ``now``: local time (epoch seconds; default: now), for ``reply_time``."""
    lowered = {str(k).lower(): v for k, v in headers.items()}
    clock = reply_time(lowered, now)
    found: dict[str, Budget] = {}
    for style in RATE_HEADER_STYLES:
        if style.budget in found:
            continue
        limit = next((n for name in style.limit if (n := _count_header(lowered.get(name))) is not None), None)
        remaining = _count_header(lowered.get(style.remaining))
        if limit and remaining is not None:
            found[style.budget] = Budget(limit, remaining, parse_reset(lowered.get(style.reset), clock))
    if "requests" not in found and (budget := ietf_budget(lowered, clock)) is not None:
        found["requests"] = budget
    return StatedLimits(**found) if found else None


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter; a server's `Retry-After` replaces the computed delay
    because the server knows when it will take requests again. A Retry-After longer than
    `max_retry_after` (a daily quota spent: 86,400 s) stops the run (`refuse_long_wait`): waiting
    it out left the run silent for hours with its progress bar at 0, and a rerun once the
    provider takes requests again costs nothing that was answered.

    A request gives up after `max_attempts` failures, but 429s that carry a Retry-After count
    against `max_rate_limited` instead (see the module docstring): against 10% random 429s and 5%
    500s, six attempts in all left one request of 5,000 unanswered in every run of
    bench_llm.py --limits with the server's seed 0. A provider that paces a request for ever
    still ends it."""

    max_attempts: int = 6
    base_delay: float = 1.0
    max_delay: float = 60.0
    max_retry_after: float = 600.0
    max_rate_limited: int = 20

    def delay(self, attempt: int, retry_after: float | None = None, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return (rng or random).uniform(0, ceiling)

    def refuse_long_wait(self, reply: Reply) -> Reply:
        """`reply`, or, when it asks to wait longer than `max_retry_after`, a fatal failure that
        says how long and what to do."""
        if not (isinstance(reply, Failed) and reply.retryable and reply.retry_after is not None
                and reply.retry_after > self.max_retry_after):
            return reply
        detail = (reply.error or "").partition(": ")[2]
        return failure(
            reply.kind,
            f"{detail}; the provider asks to wait {_duration(reply.retry_after)} (Retry-After: "
            f"{reply.retry_after:.0f} s) before the next request, longer than a run waits "
            f"({self.max_retry_after:.0f} s), so the run stopped. Answers so far are cached: run again then",
            fatal=True,
            retry_after=reply.retry_after,
        )

    def paced(self, reply: Reply) -> bool:
        """A 429 that says when to come back (counted against `max_rate_limited`)."""
        return isinstance(reply, Failed) and reply.kind == "http_429" and reply.retry_after is not None


def _duration(seconds: float) -> str:
    """`seconds` for a person: 45 s, 12 min, 24 h."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{round(seconds / 3600, 1):g} h"


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


class MinuteWindow:
    """What was booked in the last 60 s, held to ``limit``: a bucket's burst on top of a minute's
    refill lets ``limit`` + burst through in one minute (RateLimiter). Entries can be corrected
    after the fact (``adjust``): a reply reports what its request really used. An amount larger
    than ``limit`` goes once the window is empty, so huge requests still pass."""

    def __init__(self, limit: float, clock: Callable[[], float] = time.monotonic, seconds: float = 60.0):
        self.limit, self.clock, self.seconds = limit, clock, seconds
        self.entries: deque[list[float]] = deque()  # [time booked, amount], oldest first
        self.total = 0.0

    def _expire(self) -> float:
        now = self.clock()
        while self.entries and self.entries[0][0] <= now - self.seconds:
            self.total -= self.entries.popleft()[1]
        if not self.entries:
            self.total = 0.0  # (no float residue from the sums)
        return now

    def wait_time(self, amount: float) -> float:
        """Seconds until `amount` fits in the window (0 if now)."""
        now = self._expire()
        excess = self.total + min(amount, self.limit) - self.limit
        if excess <= 1e-9:
            return 0.0
        for when, booked in self.entries:  # the oldest leave first: when has enough left?
            excess -= booked
            if excess <= 1e-9:
                return when + self.seconds - now
        return self.entries[-1][0] + self.seconds - now  # (not reached: min(amount, limit) fits an empty window)

    def take(self, amount: float) -> list[float]:
        """Book `amount` now; give what this returns to ``adjust``."""
        self._expire()
        entry = [self.clock(), amount]
        self.entries.append(entry)
        self.total += amount
        return entry

    def adjust(self, entry: list[float] | None, delta: float) -> None:
        """Correct a booking by `delta`. A booking that has left the window takes no refund, and
        its excess is booked now: it is spent, and the provider counts it (why not dropped)."""
        now = self._expire()
        if entry is not None and entry[0] > now - self.seconds:
            delta = max(delta, -entry[1])
            entry[1] += delta
            self.total += delta
        elif delta > 0:
            self.take(delta)


class AdaptiveRate:
    """A request-rate ceiling learned from 429s, adjusted once per epoch (AIMD).

    **Epochs.** An epoch lasts ``epoch_seconds`` and at least ``min_replies`` replies, or ends
    early once it holds ``clear_excess`` 429s more than the background explains: that many are a
    clear signal, and each further one is a wasted request (ending at 30, not 15, left 3.6-4.7%
    of a run's answers 429 instead of 2.3-4.7%, before the start ramp below). At its end the 429s
    are compared with what the background share (429s that do not depend on our rate; 0 at first)
    explains; an excess beyond chance (``3 sqrt(expected) + 2``, at least ``tolerance`` of the
    replies) means we are over a limit.

    **Over a limit: cut to what the provider accepted.** The ceiling becomes ``beta`` times the
    answers other than 429 that arrived in the epoch, per second, whichever request they answer.
    Over a limit that is the limit itself, whatever we sent, so one cut lands just under it:
    replies lag sends by about the same time throughout, so their arrival rate is the provider's
    rate of accepting, shifted. (Counting only replies to requests sent since the last cut, a
    loaded machine measured 81/s at a 100/s limit, and a start took three cuts to get there.)
    ``beta`` is 0.95: the accepted rate is a measurement, not a guess, and at 0.9 the client spent
    most of its time 5-10% under a 100/s limit. The first epoch over a limit can overstate it (the
    provider's bucket spends its burst then); the next one, with that bucket empty, measures it
    exactly and cuts again. ``_decide`` has the two floors a cut keeps, and why.

    **Background.** A provider refusing a share at random keeps that share at any rate. So an
    epoch over the background after two cuts that did not halve the share means the share is
    background: it is learned, and the ceiling goes back to where it was before the cuts. Two
    cuts, because the first may stay over the limit (the overstated rate above); deciding after
    one took a limit's 429s for background and let the ceiling climb far over the limit.
    Otherwise the background follows the share down, never up (see ``_decide``).

    **Under a limit: probe upwards.** A binding ceiling (we sent at >= 80% of it) is raised by
    ``step``, growing ``growth`` times each clean epoch in a row (at most ``max_step``), so a cut
    from a bad epoch (replies lagging on a loaded machine) is recovered in a few epochs. The climb
    stops at the last measured limit and goes on past it in small steps again: a provider's bucket
    hides our excess until its burst is spent, and steps still growing there (+30% per clean
    epoch) reached 1.2-1.45 times the limit before the 429s showed.

    **The start.** Before the first cut there is no ceiling, only a ramp: ``start_rate``
    requests/s, doubling every ``start_doubling`` seconds, gone once it passes ``start_until``
    (0.66 s with the defaults). Without it all ``concurrency`` requests go out at once, and
    against a fast provider with a limit most of them are refused before the first 429 comes
    back: against a 100/s bucket on 2 cores, 3.5-5.1% of a 3,000-request run's answers were 429
    over six runs, and 1.4-2.1% with the ramp. A provider with no limit loses a little of the
    first half second (simulated, 5,000 requests at 600/s: 8.48 s against 8.34 s; measured,
    the run-to-run noise is larger), and one that answers tens per second never meets the ramp.
    ``start_rate=None`` turns it off.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, *, epoch_seconds: float = 1.0,
                 min_replies: int = 30, clear_excess: int = 15, beta: float = 0.95, step: float = 0.01,
                 growth: float = 1.5, max_step: float = 0.25,
                 tolerance: float = 0.02, min_rate: float = 0.5, max_background: float = 0.5,
                 start_rate: float | None = 100.0, start_doubling: float = 0.1, start_until: float = 10_000.0):
        self.clock = clock
        self.epoch_seconds, self.min_replies, self.clear_excess = epoch_seconds, min_replies, clear_excess
        self.beta, self.step, self.growth, self.max_step = beta, step, growth, max_step
        self.tolerance = tolerance
        self.min_rate, self.max_background = min_rate, max_background
        self.rate: float | None = None
        self.bucket: TokenBucket | None = None
        self.background = 0.0
        self.limit: float | None = None  # the accepted rate at the last cut: the provider's limit
        self.overs = 0  # cuts in a row to the accepted rate (epochs over the background)
        self.first_over: tuple[float, float | None] = (0.0, None)  # the first one's share, rate before
        self.clean = 0  # clean epochs in a row (at this side of the limit)
        self.cuts = 0
        self.start_rate, self.start_doubling, self.start_until = start_rate, start_doubling, start_until
        self.started: float | None = None  # the first request
        self.total = 0  # requests booked since
        self.stated: float | None = None  # the provider's stated rate (bound), a ceiling on ours
        self.learned: float | None = None  # the ceiling 429s set, before the stated rate caps it
        self._new_epoch()
        self.epoch_start: float | None = None  # the first epoch starts with the first request

    def _new_epoch(self) -> None:
        self.epoch_start = self.clock()
        self.sent = self.replies = self.limited = self.accepted = 0

    def _set_rate(self, rate: float | None, *, empty: bool = False) -> None:
        """``empty``: after a cut, start with no burst. The provider's bucket is empty then, and a
        full one here sent a burst into it that drew the few 429s that cut a second time. Never
        over the provider's stated rate."""
        self.learned = rate
        if self.stated is not None:
            rate = self.stated if rate is None else min(rate, self.stated)
        level = self.bucket.level if self.bucket else None
        self.rate = rate
        # a short burst only: the point is to stay under someone else's bucket
        self.bucket = None if rate is None else TokenBucket(rate, max(1.0, rate / 20), self.clock)
        if self.bucket and (empty or level is not None):
            self.bucket.level = 0.0 if empty else min(level, self.bucket.capacity)

    def bound(self, rate: float) -> None:
        """The provider stated its rate (rate-limit headers, StatedPacing): the ceiling is it,
        or what 429s taught where that is lower, and no ramp feels for it. Changes under 1% are
        let be (each reply states one; a new bucket for each would only churn). A stated rate
        that rises raises the ceiling too: it fell with the first replies' reading (a token
        budget over the tokens a reply uses), and a ceiling that only fell stayed at it."""
        if self.stated is not None and abs(rate - self.stated) < 0.01 * self.stated:
            return
        self.stated = rate
        self._set_rate(self.learned)

    def unbind(self) -> None:
        """The stated rate turned out to say nothing (StatedPacing.rate() is None: the budget
        refills per window, which one reply cannot tell): the ceiling is what 429s taught, as if
        no rate had been stated. Kept, 1 spent with 59 s to go held a run to 1 request a minute."""
        if self.stated is not None:
            self.stated = None
            self._set_rate(self.learned)

    def wait_time(self) -> float:
        return max(self.bucket.wait_time(1) if self.bucket else 0.0, self._start_wait())

    def _start_wait(self) -> float:
        """Seconds until the start's ramp lets the next request go. By ``t`` seconds it has let
        ``1 + r0 d / ln 2 (2^(t/d) - 1)`` go: the integral of a rate ``r0 2^(t/d)``, and one at once."""
        if self.start_rate is None or self.cuts or self.started is None or self.stated is not None:
            return 0.0
        r0, d = self.start_rate, self.start_doubling
        t = self.clock() - self.started
        # Over once the rate r0 2^(t/d) passes start_until, compared in t: 2 ** (t / d) itself
        # overflows a float after 1024 doublings (102 s with the defaults) and crashed every run
        # that lasted longer without a 429.
        if r0 >= self.start_until or t >= d * math.log2(self.start_until / r0):
            return 0.0
        if self.total < 1 + r0 * d / math.log(2) * (2 ** (t / d) - 1):
            return 0.0
        return d * math.log2(1 + self.total * math.log(2) / (r0 * d)) - t + 1e-6

    def take(self) -> None:
        """Book one request now (after ``wait_time`` said 0)."""
        if self.epoch_start is None:  # (set-up before it would count as a time nothing was accepted)
            self.epoch_start = self.clock()
        if self.started is None:
            self.started = self.clock()
        self.total += 1
        self.sent += 1
        if self.bucket:
            self.bucket.take(1)

    def _excess(self) -> float:
        """429s in this epoch beyond the background share, less what chance explains (> 0: over)."""
        expected = self.background * self.replies
        return self.limited - expected - max(3.0 * expected ** 0.5 + 2.0, self.tolerance * self.replies)

    def ticket(self) -> int:
        """What to give ``observe`` with the reply of a request going out now."""
        return self.cuts

    def observe(self, limited: bool, ticket: int | None = None) -> None:
        """Count one reply (``limited``: it was a 429) and close the epoch when it is over.

        A reply to a request sent before the last cut (its ``ticket`` is older) is not counted:
        it tells about the rate before the cut. Counted, the 429s of a start (64 requests in
        flight when the first limit is met, answered late on a loaded machine) landed in the
        epoch after the cut, which cut again, far under the limit. Its acceptance still counts
        in ``accepted``: it measures the provider, not our rate."""
        self.accepted += not limited
        if ticket is not None and ticket != self.cuts:
            return
        self.replies += 1
        self.limited += limited
        if self.epoch_start is None:
            self.epoch_start = self.clock()
        elapsed = self.clock() - self.epoch_start
        clear = limited and self.limited - self.background * self.replies >= self.clear_excess \
            and elapsed >= self.epoch_seconds / 10  # shorter, the accepted rate is mostly the provider's burst
        if self.replies >= self.min_replies and (elapsed >= self.epoch_seconds or clear):
            self._decide(elapsed)
            self._new_epoch()

    def _decide(self, elapsed: float) -> None:
        share = self.limited / self.replies
        accepted = self.accepted / elapsed
        if self._excess() > 0:
            self.clean = 0
            if self.overs >= 2 and share >= self.first_over[0] / 2:  # two cuts did not halve it
                self.background = min(share, self.max_background)
                self.overs, self.limit = 0, None
                self._set_rate(self.first_over[1])
                return
            if self.overs == 0:
                self.first_over = (share, self.rate)
            self.cuts += 1
            self.limit = accepted
            floor = 0.0
            if self.rate is None and self.replies < 0.9 * self.sent:
                # The first cut, with replies lagging: no answer arrived in the epoch's first
                # latency, and the provider's burst is most of what it accepted, so the epoch
                # says little about its rate (on a loaded machine, first reply 0.2 s late, it
                # measured 67/s against 100/s and runs ended at 87-89 req/s). Cut at most by
                # half; the next epoch, with answers flowing, measures.
                floor = 0.5 * self.sent / elapsed
            if self.rate is not None and self.sent < 0.8 * self.rate * elapsed and share < 0.5:
                # We sent under the ceiling, yet drew 429s: they came in a bunch (the wave of
                # retries one Retry-After after a refused burst, a late timer), and what the
                # provider accepted here says little about its limit (cut to it, a start once
                # fell to 60/s under a 100/s limit and climbed back for 10 s). Cut what we sent.
                # Not when most answers were 429: then we are far over its rate, whatever we sent
                # (after a first cut to 384/s, a client that could send 290/s was cut to 276).
                floor = self.beta * self.sent / elapsed
            # a cut held at the floor did not reach the accepted rate, so the share after it
            # says nothing about background: the two cuts are counted again from the next one
            self.overs = self.overs + 1 if self.beta * accepted >= floor else 0
            cut = max(self.beta * accepted, floor)
            self._set_rate(max(self.min_rate, cut if self.rate is None else min(self.rate, cut)), empty=True)
            return
        self.overs = 0
        # The background falls with the share, but rises only by the two-cut test above:
        # probing past a limit refuses a few requests per epoch, too few to cut on, and
        # learning those as background raised the bar for the next cut until the client ran
        # 20-40% over the limit.
        self.background = min(self.background, 0.9 * self.background + 0.1 * share)
        if self.rate is None or self.sent < 0.8 * self.rate * elapsed:
            return  # the ceiling did not hold us back: raising it would tell nothing
        # (the exponent capped: max_step binds long before, and a float power overflows past ~1e308)
        rate = self.rate * (1 + min(self.max_step, self.step * self.growth ** min(self.clean, 100)))
        self.clean += 1
        if self.limit is not None and self.rate < self.limit <= rate:
            rate, self.clean = self.limit, 0  # at the limit: probe past it in small steps again
        self._set_rate(rate)


@dataclass(frozen=True)
class Ticket:
    """One request sent (RateLimiter.sent): what its reply is read against."""

    cuts: int  # AdaptiveRate.ticket()
    number: int  # requests sent before it
    time: float


class Refill:
    """What the replies say of how fast one stated budget comes back.

    A budget refilled steadily (OpenAI's, Groq's: "reset" is the time until it is whole again)
    comes back at ``(limit - remaining) / reset`` per second, with ``remaining`` rounded down: so
    each reply puts the rate between ``(spent - 1) / reset`` and ``spent / reset``, and the
    lowest upper bound seen is the closest. A budget refilled all at once at the end of a window
    gives bounds that contradict each other (1 spent and 60 s to go at the start of a minute,
    40 spent and 30 s to go later): it is marked not ``steady``, and its rate is not used, since
    the lowest bound there (1 request a minute) would crawl. ``slack`` allows for ``reset``'s
    rounding."""

    def __init__(self, slack: float = 1.25):
        self.slack = slack
        self.low, self.high = 0.0, math.inf
        self.steady = True

    def observe(self, budget: Budget) -> None:
        if budget.reset is None or budget.reset <= 0 or not 0 <= budget.remaining < budget.limit:
            return
        spent = budget.limit - budget.remaining
        self.low = max(self.low, (spent - 1) / budget.reset)
        self.high = min(self.high, spent / budget.reset)
        self.steady = self.steady and self.low <= self.slack * self.high

    @property
    def rate(self) -> float | None:
        """Units per second (None: unknown, or the budget does not refill steadily)."""
        return self.high if self.steady and math.isfinite(self.high) else None


def _average(mean: float | None, value: float) -> float:
    """A running mean that follows the replies' recent sizes (a tenth per reply)."""
    return value if mean is None else 0.9 * mean + 0.1 * value


class StatedPacing:
    """Pacing by the budgets a provider states on every reply (RATE_HEADER_STYLES, StatedLimits),
    so that it need not refuse anything.

    **The rate.** ``margin`` under the stated refill rate (Refill; the lowest of the request rate
    and each token budget's rate over the tokens of its kind a reply uses: all of them, its
    prompt's for an input budget, its completion's for an output budget) bounds the adaptive
    rate from the first reply on: no ramp and no probing past it, so none of the 429s it takes
    to find a limit are drawn. Each budget is met by its own kind of tokens because the
    requests' mix decides which is tightest: long prompts with short answers spend an input
    budget first, short prompts with long answers an output one.

    **The hold.** The rate alone does not help when the budget is spent anyway (other clients on
    the key, a budget refilled per window, a burst sent before the first reply): a reply whose
    ``remaining``, less what we sent after its request and plus what came back since, leaves no
    room for one more request holds new requests until there is (a budget not refilled steadily:
    until its reset), instead of firing them into 429s. Counting the later sends matters: a
    reply is old when it arrives, and the requests in flight behind it take their share too. A
    hold lasts ``max_hold`` at most: a budget spent for hours is the provider's to say, with a
    429 whose Retry-After stops the run in one line (RetryPolicy.refuse_long_wait), not a run
    that sits silent.

    Nothing here without the headers (vLLM, llama.cpp): the run is steered by 429s alone."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, *, margin: float = 0.98, max_hold: float = 60.0):
        self.clock, self.margin, self.max_hold = clock, margin, max_hold
        self.requests, self.tokens = Refill(), Refill()
        self.input_tokens, self.output_tokens = Refill(), Refill()
        # tokens a reply used, on average: in all, in its prompt, in its completion
        self.per_request: float | None = None
        self.per_prompt: float | None = None
        self.per_completion: float | None = None
        self.held_until = 0.0

    def _token_budgets(self) -> tuple[tuple[Refill, float | None], ...]:
        """Each token budget's Refill with the tokens a request spends of it, on average."""
        return ((self.tokens, self.per_request), (self.input_tokens, self.per_prompt),
                (self.output_tokens, self.per_completion))

    def rate(self) -> float | None:
        """Requests per second to stay at (None: nothing stated that says)."""
        rates = [self.requests.rate] if self.requests.rate else []
        rates += [refill.rate / unit for refill, unit in self._token_budgets() if refill.rate and unit]
        return self.margin * min(rates) if rates else None

    def observe(self, stated: StatedLimits, ticket: Ticket | None, sent: int, prompt: int = 0,
                completion: int = 0) -> None:
        """One reply's budgets; `ticket` its request's, `sent` the requests sent so far, `prompt`
        and `completion` the tokens it reports."""
        if prompt + completion > 0:
            self.per_request = _average(self.per_request, prompt + completion)
            self.per_prompt = _average(self.per_prompt, prompt)
            self.per_completion = _average(self.per_completion, completion)
        now = self.clock()
        later = sent - ticket.number - 1 if ticket else 0
        since = now - ticket.time if ticket else 0.0
        stated_tokens = (stated.tokens, stated.input_tokens, stated.output_tokens)
        budgets = ((stated.requests, self.requests, 1.0),
                   *((budget, refill, unit) for budget, (refill, unit) in zip(stated_tokens, self._token_budgets())))
        for budget, refill, unit in budgets:
            if budget is None or not unit:
                continue
            refill.observe(budget)
            rate = refill.rate
            room = min(budget.limit, budget.remaining + (rate or 0.0) * since) - later * unit
            if room >= unit:
                continue
            wait = (unit - room) / rate if rate else budget.reset
            if wait is not None:
                self.held_until = max(self.held_until, now + min(wait, self.max_hold))


class Ceilings:
    """The configured rpm and tpm with their history: the buckets and the 60 s windows (see
    RateLimiter). One endpoint's are shared by every call this process sends it with the same
    settings (``shared_ceilings``): each call made its own, so a stage's second call (the
    tagger's re-asks, the next student on the same server, the traces' main call after its
    preflight) began with a full bucket and an empty window, and 79-80 requests reached a server
    in a minute at rpm=60. ``lock`` makes a check and its booking one step for calls in several
    threads."""

    def __init__(self, rpm: float | None = None, tpm: float | None = None, *, burst_seconds: float = 10.0,
                 clock: Callable[[], float] = time.monotonic):
        self.requests = TokenBucket(rpm / 60, max(1.0, rpm * burst_seconds / 60), clock) if rpm else None
        self.recent: deque[float] | None = deque(maxlen=max(1, int(rpm))) if rpm else None  # send times
        self.tokens = TokenBucket(tpm / 60, max(1.0, tpm * burst_seconds / 60), clock) if tpm else None
        self.token_window = MinuteWindow(tpm, clock) if tpm else None
        self.lock = threading.Lock()


_SHARED_CEILINGS: dict[tuple[str, float | None, float | None], Ceilings] = {}
_SHARED_LOCK = threading.Lock()


def shared_ceilings(endpoint: str, rpm: float | None, tpm: float | None) -> Ceilings | None:
    """This process's ceilings for `endpoint` at these settings (None when neither is set)."""
    if not rpm and not tpm:
        return None
    with _SHARED_LOCK:
        return _SHARED_CEILINGS.setdefault((endpoint, rpm, tpm), Ceilings(rpm, tpm))


class RateLimiter:
    """Requests-per-minute and tokens-per-minute limits shared by all workers of one run, the
    adaptive rate learned from 429s (AdaptiveRate), and a shared pause for when the provider
    refuses every request in flight: then nobody should hit it before its Retry-After.

    Why rpm and tpm have a sliding window beside their buckets: a bucket's burst
    (``burst_seconds`` worth) on top of a minute's refill let a run send rpm + burst in its first
    minute (700 at rpm=600; likewise tpm + 10 s of tokens), and both are ceilings a provider counts
    per minute. The windows (the send times of the last rpm requests; the tokens booked in the last
    60 s, MinuteWindow, corrected by each reply's usage) hold every 60 s to rpm and tpm; the
    buckets still spread the load within the minute. Over a run it costs nothing: the bucket's
    budget builds up while the window holds, and is spent when the first minute's burst leaves
    the window (simulated at rpm=600, the 1,300th request goes at 120 s either way;
    test_rpm_is_a_ceiling_over_every_60_seconds, test_tpm_is_a_ceiling_over_every_60_seconds).

    Why the pause also needs the refusals to go on for ``pause_after`` seconds: against a fast
    provider few requests are in flight (none to one at 100 requests/s and millisecond replies),
    so "every request in flight" is two or three replies, and a bucket at its limit refuses that
    many in a row whenever our sends bunch up (a late timer). Each such pause stopped the
    client for a whole Retry-After, let the provider's bucket fill, and left an epoch that
    measured a fraction of the real limit (the controller then cut to it). A provider that
    refuses everything keeps doing so for its Retry-After, usually seconds; at a limit the
    runs of 429s last milliseconds.
    """

    def __init__(
        self,
        rpm: float | None = None,
        tpm: float | None = None,
        *,
        burst_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        max_pause: float = 600.0,
        pause_after: float = 0.5,
        ceilings: Ceilings | None = None,
    ):
        self.clock = clock
        self.max_pause, self.pause_after = max_pause, pause_after
        self.ceilings = ceilings or Ceilings(rpm, tpm, burst_seconds=burst_seconds, clock=clock)
        self.requests, self.recent = self.ceilings.requests, self.ceilings.recent
        self.tokens, self.token_window = self.ceilings.tokens, self.ceilings.token_window
        self.adaptive = AdaptiveRate(clock)
        self.stated = StatedPacing(clock)
        self.sent_count = 0
        self.paused_until = 0.0
        self.in_flight = 0
        self._streak = 0  # 429s in a row
        self._streak_needed = 1  # requests in flight when the streak began
        self._streak_began = 0.0
        self._lock = asyncio.Lock()

    @property
    def counts_tokens(self) -> bool:
        return self.tokens is not None

    def pause(self, seconds: float) -> None:
        self.paused_until = max(self.paused_until, self.clock() + seconds)

    def sent(self) -> Ticket:
        """A request goes out now (after ``acquire``); give what this returns to ``received``."""
        self.in_flight += 1
        self.sent_count += 1
        return Ticket(self.adaptive.ticket(), self.sent_count - 1, self.clock())

    def received(self, reply: Reply, ticket: Ticket | None = None) -> None:
        """Its reply came back: pace by the budgets it states (StatedPacing); feed the adaptive
        rate; pause everyone when every request that was in flight when the 429s began was
        answered 429 (the provider asks for a pause)."""
        self.in_flight -= 1
        if reply.stated_limits is not None:
            self.stated.observe(reply.stated_limits, ticket, self.sent_count, reply.prompt_tokens,
                                reply.completion_tokens)
            if (rate := self.stated.rate()) is not None:
                self.adaptive.bound(rate)
            else:
                self.adaptive.unbind()
        limited = isinstance(reply, Failed) and reply.kind == "http_429"
        self.adaptive.observe(limited, ticket.cuts if ticket else None)
        if not limited:
            self._streak = 0
            return
        if self._streak == 0:  # at least 3: one or two requests in flight say little
            self._streak_needed = max(self.in_flight + 1, 3)
            self._streak_began = self.clock()
        self._streak += 1
        if self._streak >= self._streak_needed and reply.retry_after is not None \
                and self.clock() - self._streak_began >= self.pause_after:
            self.pause(min(reply.retry_after, self.max_pause))
            self._streak = 0

    def _wait_time(self, tokens: float) -> float:
        waits = [self.paused_until - self.clock(), self.stated.held_until - self.clock(), self.adaptive.wait_time()]
        if self.requests:
            waits.append(self.requests.wait_time(1))
        if self.recent is not None and len(self.recent) == self.recent.maxlen:
            waits.append(self.recent[0] + 60.0 - self.clock())  # the oldest of the last rpm must be a minute old
        if self.tokens:
            waits.append(self.tokens.wait_time(tokens))
        if self.token_window:
            waits.append(self.token_window.wait_time(tokens))
        return max(waits)

    async def acquire(self, tokens: float = 0) -> list[float] | None:
        """Wait until one request of `tokens` estimated tokens fits, then book it. Callers queue
        on a lock, so the budget goes out in arrival order and nobody starves. Returns the tpm
        booking, for ``settle``."""
        if not self.requests and not self.tokens and self.adaptive.bucket is None \
                and self.adaptive.wait_time() <= 0 and max(self.paused_until, self.stated.held_until) <= self.clock():
            self.adaptive.take()
            return None
        async with self._lock:
            while True:
                while (wait := self._wait_time(tokens)) > 0:
                    await asyncio.sleep(wait)
                with self.ceilings.lock:  # another thread's call may have booked since the check
                    if self._wait_time(tokens) > 0:
                        continue
                    self.adaptive.take()
                    if self.requests:
                        self.requests.take(1)
                    if self.recent is not None:
                        self.recent.append(self.clock())
                    if self.tokens:
                        self.tokens.take(tokens)
                    return self.token_window.take(tokens) if self.token_window else None

    def settle(self, booked: float, used: float, booking: list[float] | None = None) -> None:
        """Give back what a finished request booked but did not use, or charge what it used beyond
        its booking: a reasoning model's thinking is not always bounded by max_tokens
        (deepseek-reasoner reported 20,000 tokens against a booking of 1,010, and the run used
        1.4M tokens a minute against tpm=60,000). The charge may leave the budget in debt, so the
        next requests wait until the minute's tokens are paid off. `booking` (what ``acquire``
        returned) corrects the request's entry in the 60 s window; without it an excess is booked
        now, and nothing is given back there."""
        with self.ceilings.lock:
            if self.token_window:
                self.token_window.adjust(booking, used - booked)
            if self.tokens and booked > used:
                self.tokens.give_back(booked - used)
            elif self.tokens and used > booked:
                self.tokens.take(used - booked)


__all__ = [
    "FATAL_STATUS",
    "AdaptiveRate",
    "Budget",
    "Ceilings",
    "MinuteWindow",
    "RETRYABLE_STATUS",
    "Failed",
    "HeaderStyle",
    "RATE_HEADER_STYLES",
    "RateLimiter",
    "Refill",
    "RetryPolicy",
    "StatedLimits",
    "StatedPacing",
    "Ticket",
    "TokenBucket",
    "failure",
    "http_failure",
    "ietf_budget",
    "parse_duration",
    "parse_rate_headers",
    "parse_reset",
    "parse_retry_after",
    "reply_time",
    "shared_ceilings",
]
