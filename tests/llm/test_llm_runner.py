"""run_requests against the scripted server: order, dedup, cache reuse, retries with backoff and
Retry-After, recorded outcomes, fatal errors, dry runs, concurrency and rate limits."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from llm_server import Received, Response, chat, drop, error, llm_server, malformed, reply, slow  # noqa: F401

from m1data.llm import (
    Cache,
    EndpointError,
    HTTPConfig,
    HTTPEngine,
    InvalidParams,
    Price,
    PriceTable,
    Reply,
    Request,
    RetryPolicy,
    RunStats,
    complete_all,
    plan_requests,
)

FAST = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05)


def ask(text: str, **params) -> Request:
    return Request(model="m", messages=({"role": "user", "content": text},), params={"max_tokens": 20, **params})


def echo(req: Received) -> Response:
    return reply(req, f"echo {req.text}", prompt_tokens=10, completion_tokens=4)


@pytest.fixture
def engine(llm_server):
    return HTTPEngine(HTTPConfig(base_url=llm_server.base_url, timeout=5))


@pytest.fixture
def cache(tmp_path):
    with Cache(tmp_path / "cache.sqlite") as c:
        yield c


def run(engine, requests, cache=None, **kwargs):
    kwargs.setdefault("progress", False)
    kwargs.setdefault("retry", FAST)
    return complete_all(engine, requests, cache, **kwargs)


def test_order_preserved_and_duplicates_sent_once(llm_server, engine):
    llm_server.handler = lambda req: slow(0.05 if req.text.endswith("0") else 0.0, echo(req))
    requests = [ask(f"q{i}") for i in range(30)] + [ask("q3"), ask("q3")]
    replies = run(engine, requests, concurrency=8)
    assert [r.text for r in replies] == [f"echo q{i}" for i in range(30)] + ["echo q3", "echo q3"]
    assert llm_server.count() == 30
    assert replies[30] is not replies[3]  # callers may mutate their copy


def test_rerun_sends_only_what_is_missing(llm_server, engine, cache):
    llm_server.handler = echo
    first = [ask(f"q{i}") for i in range(10)]
    run(engine, first, cache)
    assert llm_server.count() == 10
    stats = RunStats()
    replies = run(engine, first + [ask("new one")], cache, stats=stats)
    assert llm_server.count() == 11
    assert [r.cached for r in replies] == [True] * 10 + [False]
    assert (stats.cached, stats.sent, stats.unique) == (10, 1, 11)
    assert replies[0].text == "echo q0"


def test_namespace_model_and_params_are_part_of_the_key(llm_server, engine, cache):
    llm_server.handler = echo
    run(engine, [ask("q")], cache)
    run(engine, [ask("q", temperature=0.0)], cache)
    run(engine, [Request(model="other", messages=ask("q").messages, params={"max_tokens": 20})], cache)
    same_model_elsewhere = HTTPEngine(HTTPConfig(base_url=llm_server.base_url.replace("127.0.0.1", "localhost")))
    run(same_model_elsewhere, [ask("q")], cache)
    assert llm_server.count() == 3  # a local server's namespace is the model, wherever it listens
    own_namespace = HTTPEngine(HTTPConfig(base_url=llm_server.base_url, cache_namespace="finetune-v2"))
    run(own_namespace, [ask("q")], cache)
    assert llm_server.count() == 4
    run(engine, [ask("q")], cache)
    assert llm_server.count() == 4


def test_retries_429_honouring_retry_after(llm_server, engine, cache):
    def handler(req: Received) -> Response:
        return error(429, "slow down", retry_after=0.4) if req.attempt == 1 else echo(req)

    llm_server.handler = handler
    stats = RunStats()
    began = time.perf_counter()
    [got] = run(engine, [ask("q")], cache, stats=stats, retry=RetryPolicy(base_delay=0.001))
    times = [r.time for r in llm_server.requests]
    assert got.text == "echo q"
    assert times[1] - times[0] >= 0.35  # waited as told, not the 1 ms backoff
    assert time.perf_counter() - began < 3
    assert (stats.attempts, stats.sent) == (2, 1)


@pytest.mark.parametrize("failure", [error(500, "boom"), error(503, "busy"), drop(), malformed(), slow(3.0)])
def test_transient_failures_are_retried(llm_server, failure):
    engine = HTTPEngine(HTTPConfig(base_url=llm_server.base_url, timeout=0.5))
    llm_server.handler = lambda req: failure if req.attempt <= 2 else echo(req)
    [got] = run(engine, [ask("q")])
    assert (got.status, got.text) == ("ok", "echo q")
    assert llm_server.count() == 3


def test_exhausted_retries_are_recorded_and_resent_next_run(llm_server, engine, cache):
    llm_server.handler = lambda req: error(500, "down")
    [got] = run(engine, [ask("q")], cache)
    assert got.status == "error" and got.error.startswith("http_500")
    assert llm_server.count() == FAST.max_attempts
    assert cache.status_counts() == {"error (transient)": 1}
    llm_server.handler = echo
    [again] = run(engine, [ask("q")], cache)
    assert again.text == "echo q" and not again.cached
    assert cache.status_counts() == {"ok": 1}


@pytest.mark.parametrize(
    "response, status",
    [
        (chat("<think>long", finish_reason="length"), "length"),
        (chat("", finish_reason="content_filter"), "filtered"),
        (error(400, "context length exceeded"), "error"),
    ],
)
def test_recorded_outcomes_are_not_repaid_unless_asked(llm_server, engine, cache, response, status):
    llm_server.handler = lambda req: response
    [got] = run(engine, [ask("q")], cache)
    assert got.status == status
    assert llm_server.count() == 1  # no retry on a truncation, a refusal or a 4xx
    [again] = run(engine, [ask("q")], cache)
    assert again.cached and again.status == status
    assert llm_server.count() == 1
    llm_server.handler = echo
    [fixed] = run(engine, [ask("q")], cache, retry_failed=True)
    assert fixed.status == "ok" and llm_server.count() == 2


def test_fatal_error_stops_the_run_and_keeps_what_was_answered(llm_server, engine, cache):
    def handler(req: Received) -> Response:
        return error(401, "invalid key") if req.text == "q5" else echo(req)

    llm_server.handler = handler
    with pytest.raises(EndpointError, match="http_401"):
        run(engine, [ask(f"q{i}") for i in range(40)], cache, concurrency=1)
    assert llm_server.count() == 6
    assert len(cache) == 5  # the 401 itself is not an outcome: fix the key and re-run


def test_a_fatal_stop_caches_the_replies_in_flight_and_the_rerun_does_not_resend_them(llm_server, engine, cache):
    # q3 is refused at once while the requests beside it are still being answered: those replies are
    # billed, so the stop must wait for them and cache them, not cancel them (and pay again next run)
    def handler(req: Received) -> Response:
        return error(403, "this key has no access to model m") if req.text == "q3" else slow(0.5, echo(req))

    llm_server.handler = handler
    with pytest.raises(EndpointError, match="http_403"):
        run(engine, [ask(f"q{i}") for i in range(40)], cache, concurrency=8)
    answered = llm_server.count() - 1
    assert answered >= 3  # q0-q2 at least went out before q3
    assert len(cache) == answered and cache.status_counts() == {"ok": answered}
    llm_server.handler = echo
    run(engine, [ask(f"q{i}") for i in range(40)], cache, concurrency=8)
    assert llm_server.count() == 41  # the rerun sent what the first run had not answered, and q3 again
    sends = llm_server.sends_per_body()
    assert sorted(sends.values()) == [1] * 39 + [2]  # only q3 went twice



@pytest.mark.parametrize("tries", [1, 2])
def test_a_fatal_stop_waits_for_the_calls_in_flight_only_not_for_backoffs(llm_server, engine, cache, tries):
    """Measured: the requests told to come back in 30 s (Retry-After) are waiting, not on the
    wire, so the 401 stops the run without waiting them out; the one reply on the wire (q1, 1 s)
    is waited for and cached, as it is billed. Both runners: one call per question, and tries."""
    from m1data.llm.attempts import complete_tries, stats_by_attempt

    def handler(req: Received) -> Response:
        if req.text == "q1":
            return slow(1.0, echo(req))
        return slow(0.3, error(401, "invalid key")) if req.text == "q0" else error(503, "overloaded", retry_after=30)

    llm_server.handler = handler
    requests = [ask(f"q{i}") for i in range(12)]
    started = time.monotonic()
    with pytest.raises(EndpointError, match="http_401"):
        if tries == 1:
            run(engine, requests, cache, concurrency=4, retry=RetryPolicy(max_attempts=3, max_delay=60))
        else:
            complete_tries(engine, requests, cache, attempts=tries, again=lambda i, r: False,
                           by_attempt=stats_by_attempt(tries), concurrency=4, progress=False,
                           retry=RetryPolicy(max_attempts=3, max_delay=60))
    assert 1.0 <= time.monotonic() - started < 10
    assert cache.status_counts() == {"ok": 1}  # q1's reply, paid for: kept

def test_a_moderation_403_is_one_rows_outcome_not_a_stop(llm_server, engine, cache):
    def handler(req: Received) -> Response:
        if req.text == "q7":
            return error(403, 'qwen/qwq requires moderation on Azure. Your input was flagged for "self-harm"')
        return echo(req)

    llm_server.handler = handler
    replies = run(engine, [ask(f"q{i}") for i in range(20)], cache, concurrency=4)
    assert replies[7].status == "filtered" and all(r.status == "ok" for i, r in enumerate(replies) if i != 7)
    run(engine, [ask(f"q{i}") for i in range(20)], cache, concurrency=4)
    assert llm_server.count() == 20  # the rerun finds every outcome, the flagged one too, in the cache


def test_a_broken_off_generation_is_retried_and_never_cached_as_an_answer(llm_server, engine, cache):
    def handler(req: Received) -> Response:
        if req.attempt == 1:  # OpenRouter: a 200 whose upstream failed mid-answer
            response = chat("Let me think about the bra", finish_reason="error")
            response.body["error"] = {"code": 502, "message": "Upstream provider error mid-generation"}
            return response
        return echo(req)

    llm_server.handler = handler
    [got] = run(engine, [ask("q")], cache)
    assert (got.status, got.text) == ("ok", "echo q") and llm_server.count() == 2
    assert cache.status_counts() == {"ok": 1}  # the fragment was not recorded as an answer
    [again] = run(engine, [ask("q")], cache)
    assert again.cached and again.text == "echo q"


def test_billed_replies_that_are_retried_count_in_tokens_and_cost(llm_server, engine):
    def handler(req: Received) -> Response:
        if req.attempt <= 2:  # refused (content null, no reasoning: retryable), billed all the same
            return chat(None, prompt_tokens=1000, completion_tokens=5000)
        return reply(req, "\\boxed{A}", prompt_tokens=1000, completion_tokens=50)

    llm_server.handler = handler
    stats = RunStats()
    run(engine, [ask("q")], prices=PriceTable({"m": Price(input=1.0, output=10.0)}), stats=stats)
    assert (stats.attempts, stats.prompt_tokens_sent, stats.completion_tokens_sent) == (3, 3000, 10_050)
    assert stats.cost_sent == pytest.approx((3000 * 1.0 + 10_050 * 10.0) / 1e6)


def test_an_account_out_of_credit_stops_the_run_and_the_rerun_after_a_top_up_sends_every_row(llm_server, engine, cache):
    llm_server.handler = lambda req: error(402, "Insufficient Balance")
    with pytest.raises(EndpointError, match="402: Insufficient Balance.*add credits and run again"):
        run(engine, [ask(f"q{i}") for i in range(30)], cache, concurrency=4)
    assert len(cache) == 0  # no row recorded as failed
    llm_server.handler = echo
    replies = run(engine, [ask(f"q{i}") for i in range(30)], cache, concurrency=4)
    assert all(r.status == "ok" and not r.cached for r in replies)


def test_openais_429_insufficient_quota_is_an_account_out_of_credit(llm_server, engine, cache):
    """OpenAI says "out of credit" with a 429 (code insufficient_quota, no Retry-After): retried as a
    rate limit, 100 rows went on for ten minutes at 0 answered before the run gave up. It stops at
    once, as a 402 does; an ordinary 429 is still waited out."""
    quota = "You exceeded your current quota, please check your plan and billing details."
    llm_server.handler = lambda req: error(429, quota, code="insufficient_quota")
    started = time.monotonic()
    with pytest.raises(EndpointError, match="429: You exceeded your current quota.*add credits and run again"):
        run(engine, [ask(f"q{i}") for i in range(30)], cache, concurrency=4)
    assert time.monotonic() - started < 30 and llm_server.count() <= 4 * 4 and len(cache) == 0
    calls = iter(range(100))
    llm_server.handler = lambda req: error(429, "Rate limit reached", retry_after=0) if next(calls) < 2 else echo(req)
    assert run(engine, [ask("q0")], cache)[0].status == "ok"


def test_invalid_params_send_nothing(llm_server, engine):
    with pytest.raises(InvalidParams):
        run(engine, [ask("q0"), ask("q1", temp=0.0)])
    assert llm_server.count() == 0


def test_dry_run_sends_nothing(llm_server, engine, cache, capsys, shown_output):
    llm_server.handler = echo
    run(engine, [ask("q0")], cache)
    replies = run(engine, [ask("q0"), ask("q1")], cache, dry_run=True)
    assert llm_server.count() == 1
    assert replies[0].text == "echo q0" and replies[0].cached
    assert replies[1].status == "error" and replies[1].error.startswith("not_sent")
    err = capsys.readouterr().err
    assert "1 cached" in err and "1 to send" in err


def test_plan_estimates_tokens_and_cost(llm_server, engine, cache):
    llm_server.handler = echo
    run(engine, [ask("already here")], cache)
    prices = PriceTable({"m": Price(input=1.0, output=2.0)})
    plan = plan_requests(engine, [ask("already here"), ask("new"), ask("new")], cache, prices=prices)
    assert (plan.requests, plan.unique, plan.cached, plan.to_send) == (3, 2, 1, 1)
    est = plan.estimate
    assert est.max_output_tokens == 20 and est.typical_output_tokens == 5
    assert est.max_cost == pytest.approx((est.prompt_tokens * 1.0 + 20 * 2.0) / 1e6)
    assert llm_server.count() == 1


def test_measured_usage_and_cost(llm_server, engine, cache):
    llm_server.handler = echo
    prices = PriceTable({"m": Price(input=1.0, output=2.0)})
    stats = RunStats()
    run(engine, [ask(f"q{i}") for i in range(5)], cache, prices=prices, stats=stats)
    assert (stats.prompt_tokens_sent, stats.completion_tokens_sent) == (50, 20)
    assert stats.cost_sent == pytest.approx((50 * 1.0 + 20 * 2.0) / 1e6)
    stats = RunStats()
    run(engine, [ask(f"q{i}") for i in range(5)], cache, prices=prices, stats=stats)
    assert stats.cost_sent == 0 and stats.cost_cached == pytest.approx(90 / 1e6)


def test_unknown_price_is_not_zero(llm_server, engine):
    """At a provider that bills, a model without a price has no cost figure (n/a), never $0. A local
    endpoint (this one) costs nothing unless priced (issue 9, item 9)."""
    llm_server.handler = echo
    stats = RunStats()
    run(engine, [ask("q")], prices=PriceTable({}), stats=stats)
    assert stats.cost_sent == 0.0
    table = PriceTable()
    assert table.cost("m", 10, 10, endpoint="https://api.deepseek.com") is None
    assert table.cost("deepseek-reasoner", 10, 10, endpoint="https://api.deepseek.com") > 0
    assert table.cost("deepseek-reasoner", 10, 10, endpoint=llm_server.base_url) == 0.0


def test_concurrency_is_bounded(llm_server, engine):
    llm_server.handler = lambda req: slow(0.05, echo(req))
    run(engine, [ask(f"q{i}") for i in range(40)], concurrency=5)
    assert llm_server.max_in_flight == 5


def test_requests_per_minute_limit(llm_server, engine):
    llm_server.handler = echo
    began = time.perf_counter()
    # 600 rpm = 10/s with a 10 s burst of 100: the first 100 go at once, 15 more take 1.5 s
    run(engine, [ask(f"q{i}") for i in range(115)], rpm=600, concurrency=50)
    assert time.perf_counter() - began >= 1.3
    # The token-bucket invariant, whatever the machine's load: k consecutive arrivals span at
    # least (k - burst) / rate seconds, less up to 0.3 s of jitter between a request's booking
    # and its arrival (connection set-up, scheduling). Unlimited, all 115 land within ~0.2 s.
    times = sorted(r.time for r in llm_server.requests)
    assert len(times) == 115
    for i in range(len(times)):
        for j in range(i + 101, len(times)):
            assert j - i + 1 <= 100 + 10 * (times[j] - times[i] + 0.3) + 1


def test_tokens_per_minute_limit_books_max_tokens_and_refunds(llm_server, engine):
    # 60,000 tpm = 1,000 tokens/s with a 10,000 burst; each request books ~4,010 (prompt + max_tokens)
    full = lambda req: reply(req, "x", prompt_tokens=10, completion_tokens=4000)  # noqa: E731
    llm_server.handler = full
    began = time.perf_counter()
    run(engine, [ask(f"q{i}", max_tokens=4000) for i in range(3)], tpm=60_000, concurrency=3)
    assert 1.5 <= time.perf_counter() - began < 8  # the third waited for ~2,000 tokens of budget
    llm_server.handler = lambda req: reply(req, "x", prompt_tokens=10, completion_tokens=5)
    began = time.perf_counter()
    # (another tpm: the first call's tokens count against 60,000 for the rest of the minute, as they
    # should: test_rpm_holds_over_every_call_to_one_endpoint.) 120,000: a burst of 20,000, under the
    # six bookings' 24,060, so without refunds the sixth would wait 2 s
    run(engine, [ask(f"r{i}", max_tokens=4000) for i in range(6)], tpm=120_000, concurrency=1)
    assert time.perf_counter() - began < 1.5  # unused budget came back after each reply


def test_tokens_per_minute_limit_charges_usage_beyond_the_booking(llm_server, engine):
    # 60,000 tpm = 1,000 tokens/s with a 10,000 burst; each request books ~20 tokens but reports
    # 4,000 (reasoning not bounded by max_tokens): after three, the budget is ~2,000 in debt
    llm_server.handler = lambda req: reply(req, "x", prompt_tokens=10, completion_tokens=3990)
    began = time.perf_counter()
    run(engine, [ask(f"q{i}", max_tokens=10) for i in range(4)], tpm=60_000, concurrency=1)
    assert time.perf_counter() - began >= 1.5  # the fourth waited for the debt to be paid off (~2 s)


def test_async_api_inside_a_running_loop(llm_server, engine):
    import asyncio

    from m1data.llm import run_requests

    llm_server.handler = echo

    async def main():
        try:
            return await run_requests(engine, [ask("a"), ask("b")], progress=False)
        finally:
            await engine.aclose()

    assert [r.text for r in asyncio.run(main())] == ["echo a", "echo b"]

    async def blocking():  # a notebook cell's synchronous call: runs in a loop of its own, blocking this one
        return complete_all(engine, [ask("a")], progress=False)

    assert [r.text for r in asyncio.run(blocking())] == ["echo a"]


def test_429s_with_retry_after_do_not_use_up_the_attempts(llm_server, engine, cache):
    """A provider pacing a request (429 + Retry-After) more often than max_attempts still gets it
    answered; 429s without a Retry-After and other failures still count against max_attempts."""
    llm_server.handler = lambda req: error(429, "slow down", retry_after=0.01) if req.attempt <= 6 else echo(req)
    [got] = run(engine, [ask("q")], cache)
    assert got.text == "echo q" and llm_server.count() == 7  # FAST allows 4 attempts

    llm_server.reset()
    llm_server.handler = lambda req: error(429, "slow down")
    [got] = run(engine, [ask("r")])
    assert got.error.startswith("http_429") and llm_server.count() == FAST.max_attempts


def test_a_provider_that_paces_for_ever_still_ends_the_request(llm_server, engine):
    llm_server.handler = lambda req: error(429, "slow down", retry_after=0.01)
    policy = RetryPolicy(max_attempts=2, base_delay=0.01, max_rate_limited=5)
    [got] = run(engine, [ask("q")], retry=policy)
    assert got.status == "error" and got.error.startswith("http_429")
    assert llm_server.count() == 5


def test_a_retry_after_longer_than_a_run_waits_stops_the_run_and_says_how_long(llm_server, engine, cache):
    # a daily quota spent: waiting 600 s twenty times per request, silently, helped nobody
    llm_server.handler = lambda req: error(429, "You exceeded your daily quota", retry_after=86400)
    began = time.perf_counter()
    with pytest.raises(EndpointError, match=r"daily quota; the provider asks to wait 24 h \(Retry-After: 86400 s\)"):
        # (a short cap and allowance, so the old behaviour fails in a second instead of hanging)
        run(engine, [ask(f"q{i}") for i in range(20)], cache, concurrency=4,
            retry=RetryPolicy(max_attempts=4, base_delay=0.01, max_retry_after=0.1, max_rate_limited=3))
    assert time.perf_counter() - began < 10 and len(cache) == 0
    llm_server.handler = echo  # the quota is back: everything is sent
    assert all(r.status == "ok" for r in run(engine, [ask(f"q{i}") for i in range(20)], cache, concurrency=4))


def test_a_429_delays_only_its_own_request(llm_server, engine):
    """Retry-After applies to the refused request; the others go on (no global pause)."""

    def handler(req: Received) -> Response:
        if req.text == "q0" and req.attempt == 1:
            return error(429, "slow down", retry_after=1.5)
        return echo(req)

    llm_server.handler = handler
    began = time.time()
    replies = run(engine, [ask(f"q{i}") for i in range(30)], concurrency=2)
    assert all(r.text.startswith("echo") for r in replies)
    times = {r.text: r.time - began for r in llm_server.requests if r.text != "q0"}
    assert max(times.values()) < 1.2  # the 29 others did not wait out q0's 1.5 s
    q0 = [r.time for r in llm_server.requests if r.text == "q0"]
    assert len(q0) == 2 and q0[1] - q0[0] >= 1.4


THINKING_PIECES = ["<think>", "</think>", "<|channel|>analysis<|message|>", "<|channel|>final<|message|>", "<|end|>",
                   "<|start|>assistant", "<|return|>", "analysis", "assistantfinal", "\\boxed{B}", " C ", "\n"]


@settings(max_examples=300, deadline=None)
@given(content=st.lists(st.sampled_from(THINKING_PIECES), max_size=8).map("".join))
def test_a_cached_reply_reads_as_the_engines_split_it_today(content):
    """What an engine caches for a chat reply (split by `split_thinking`) reads back unchanged, and
    a reply cached whole before a splitting rule existed reads back split as a fresh call would be
    (`cached_reply`); a plain completion is never split, nor a reply whose server sent reasoning."""
    from m1data.llm.cache import Entry
    from m1data.llm.runner import cached_reply
    from m1data.llm.thinking import split_thinking

    chat_request = Request(model="m", messages=({"role": "user", "content": "q"},))
    reasoning, text = split_thinking(content)
    today = Reply(text=text, reasoning=reasoning, cached=True)
    assert cached_reply(Entry(today, False), chat_request) == today
    assert cached_reply(Entry(Reply(text=content, cached=True), False), chat_request) == today
    plain = Reply(text=content, cached=True)
    assert cached_reply(Entry(plain, False), Request(model="m", prompt="q")) == plain
    apart = Reply(text=content, reasoning="sent apart", cached=True)
    assert cached_reply(Entry(apart, False), chat_request) == apart


_INTERRUPTED_CELL = """
import asyncio, json, os, signal, sys, threading
sys.path.insert(0, sys.argv[1])
from llm_server import ScriptedServer, reply, slow
from m1data.llm import HTTPConfig, HTTPEngine, complete_all
from m1data.llm.cache import Cache
from m1data.llm.types import Request

with ScriptedServer(lambda req: slow(0.4, reply(req, "A"))) as server:
    requests = [Request(model="m", messages=({"role": "user", "content": f"q{i}"},)) for i in range(40)]
    engine = HTTPEngine(HTTPConfig(base_url=server.base_url, timeout=30))

    async def cell():  # a notebook cell: synchronous code while the kernel's loop runs
        with Cache(sys.argv[2]) as cache:
            complete_all(engine, requests, cache, concurrency=2, progress=False)

    threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT)).start()
    try:  # Python's own SIGINT handler, as in a notebook kernel (asyncio.run's defers it to the loop)
        asyncio.new_event_loop().run_until_complete(cell())
        outcome = "finished"
    except KeyboardInterrupt:
        outcome = "interrupted"
    sent = server.count()
    threading.Event().wait(1.5)  # a job left running would go on sending
    with Cache(sys.argv[2]) as cache:
        rows = cache._db.execute("SELECT COUNT(*) FROM replies").fetchone()[0]
    print(json.dumps({"outcome": outcome, "sent": sent, "sent_later": server.count(), "cached": rows,
                      "threads": [t.name for t in threading.enumerate() if t.name.startswith("m1data-job")]}))
"""


def test_an_interrupted_job_in_a_running_event_loop_stops_and_keeps_its_replies(tmp_path):
    """Ctrl-C (a notebook's stop button) while a job runs in a loop of its own, for a caller whose
    thread runs one: the job is cancelled as in the caller's own thread, and nothing goes on
    sending behind the caller's back; the replies received are cached. A process of its own,
    since the interrupt is a real SIGINT."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    tests = str(Path(__file__).resolve().parents[1])
    from llm_server import sigint_as_at_a_terminal

    done = subprocess.run([sys.executable, "-c", _INTERRUPTED_CELL, tests, str(tmp_path / "c.sqlite")],
                          capture_output=True, text=True, timeout=120, preexec_fn=sigint_as_at_a_terminal)
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["outcome"] == "interrupted" and seen["threads"] == []
    assert 0 < seen["sent"] < 40 and seen["sent_later"] == seen["sent"]
    assert seen["cached"] >= seen["sent"] - 2  # those in flight at the interrupt may be cut off
