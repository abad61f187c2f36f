"""Faulty servers and wrong settings at the HTTP and runner level (issue 11, item 7; issue 9,
item 9): each outcome is recorded for what it is, nothing transient becomes permanent, a dead
endpoint stops the run quickly with one clear line, and no echoed key is stored or printed."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
from llm_server import Received, Response, chat, error, llm_server, reply, sigint_as_at_a_terminal  # noqa: F401

from m1data.llm import Cache, EndpointError, HTTPConfig, HTTPEngine, Request, RetryPolicy, RunStats, complete_all
from m1data.llm.stages import LLMRuntime
from m1data.reading.readers import read_rows, write_rows
from m1data.schema import make_row, rows_to_dataset

FAST = RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.02)
KEY = "sk-m1data-faults-0123456789abcdef"


def ask(text: str) -> Request:
    return Request(model="m", messages=({"role": "user", "content": text},), params={"max_tokens": 20})


def run(engine, requests, cache=None, **kwargs):
    kwargs.setdefault("progress", False)
    kwargs.setdefault("retry", FAST)
    return complete_all(engine, requests, cache, **kwargs)


def body_without_message(req: Received) -> Response:
    return Response(body={"id": "x", "choices": [{"index": 0, "finish_reason": "stop"}], "usage": {}})


@pytest.mark.parametrize("broken", [lambda req: chat(None), body_without_message], ids=["content_null", "no_message"])
def test_reply_without_an_answer_is_a_failure_not_an_ok(llm_server, tmp_path, broken):
    llm_server.handler = broken
    engine = HTTPEngine(HTTPConfig(base_url=llm_server.base_url))
    with Cache(tmp_path / "c.sqlite") as cache:
        [got] = run(engine, [ask("q")], cache)
        assert got.status == "error"
        assert "ok" not in cache.status_counts()
        llm_server.handler = lambda req: reply(req, "\\boxed{A}")
        [again] = run(engine, [ask("q")], cache)  # not a permanent outcome: sent again, answered
        assert (again.status, again.text, again.cached) == ("ok", "\\boxed{A}", False)


@pytest.mark.parametrize("usage", ["garbage", {"prompt_tokens": "many", "completion_tokens": None}, [1, 2]])
def test_malformed_usage_keeps_the_answer_and_counts_tokens_locally(llm_server, tmp_path, usage):
    def handler(req: Received) -> Response:
        response = chat("The answer is \\boxed{C}.", reasoning="Because of the third nerve.")
        response.body["usage"] = usage
        return response

    llm_server.handler = handler
    engine = HTTPEngine(HTTPConfig(base_url=llm_server.base_url))
    with Cache(tmp_path / "c.sqlite") as cache:
        [got] = run(engine, [ask("Which nerve?")], cache)
        assert (got.status, got.text) == ("ok", "The answer is \\boxed{C}.")
        assert got.prompt_tokens > 0 and got.completion_tokens > 0
        assert llm_server.count() == 1  # paid once
        [again] = run(engine, [ask("Which nerve?")], cache)
        assert again.cached and llm_server.count() == 1


def test_oversized_reply_is_an_error_outcome_not_held(llm_server, tmp_path):
    llm_server.handler = lambda req: chat("x" * 300_000)
    engine = HTTPEngine(HTTPConfig(base_url=llm_server.base_url, max_reply_bytes=100_000))
    with Cache(tmp_path / "c.sqlite") as cache:
        [got] = run(engine, [ask("q")], cache)
        assert got.status == "error" and got.error.startswith("too_large")
        assert llm_server.count() == 1  # an outcome, not retried
        assert cache.status_counts() == {"error": 1}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_refused_connection_stops_after_the_first_few(tmp_path):
    engine = HTTPEngine(HTTPConfig(base_url=f"http://127.0.0.1:{closed_port()}/v1", timeout=5))
    stats = RunStats()
    with (
        Cache(tmp_path / "c.sqlite") as cache,
        pytest.raises(EndpointError, match="cannot connect|failed the same way"),
    ):
        run(engine, [ask(f"q{i}") for i in range(200)], cache, concurrency=4, stats=stats)
    assert stats.sent <= 10  # not all 200 tried


def test_connections_reset_before_the_first_answer_are_retried_not_called_unreachable(llm_server, tmp_path):
    """A server that takes connections and drops the first ones (a proxy before a backend that
    is starting) is up: its resets are retried, not taken for "nothing listens there"."""
    from llm_server import drop

    seen = {"n": 0}

    def resets_then_answers(req: Received) -> Response:
        seen["n"] += 1
        return drop() if seen["n"] <= 6 else reply(req, "ok")

    llm_server.handler = resets_then_answers
    engine = HTTPEngine(HTTPConfig(base_url=llm_server.base_url))
    replies = run(engine, [ask(f"q{i}") for i in range(10)], concurrency=1,
                  retry=RetryPolicy(max_attempts=8, base_delay=0.01, max_delay=0.02))
    assert [r.status for r in replies] == ["ok"] * 10 and seen["n"] == 16


@pytest.mark.parametrize("key", [KEY, "k3Y9zQ"])
def test_a_key_echoed_as_the_served_model_name_is_masked(llm_server, tmp_path, monkeypatch, capfd, key):
    """The reply's `model` field is the server's to fill too: a proxy that puts the caller's
    credential there must not get it into the rows (`teacher_served_model`), the cache or the terminal.
    Nor into the answer or its reasoning. A short key (4 to 7 characters) was masked in none of
    them: `served-k3Y9zQ` reached the rows, the cache and the terminal."""
    monkeypatch.setenv("M1DATA_FAULT_KEY", key)

    def echoing(req: Received) -> Response:
        given = req.headers.get("authorization", "").removeprefix("Bearer ")
        return chat(f"You sent {given}. \\boxed{{A}}", reasoning=f"The key: {given}", model="served-" + given)

    llm_server.handler = echoing
    from m1data.stages.traces import run_traces_file

    run_traces_file(one_row_file(tmp_path), tmp_path / "out.jsonl", llm_server.base_url, "m", "M1DATA_FAULT_KEY",
                    require_reasoning=False)
    rows = read_rows(tmp_path / "out.jsonl")
    assert rows["teacher_served_model"] == ["served-***"]
    assert rows["teacher_reply"] == ["You sent ***. \\boxed{A}"] and rows["reasoning"] == ["The key: ***"], rows
    for path in tmp_path.iterdir():
        assert key.encode() not in path.read_bytes(), path
    out, err = capfd.readouterr()
    assert key not in out + err


def test_a_pickled_engine_carries_no_key_and_reads_it_again_where_it_lands(llm_server, monkeypatch):
    """An engine handed to a stage travels to Ray's workers pickled: the key stays behind, and the
    copy reads it from its own environment, as an engine built there would."""
    import asyncio
    import pickle

    monkeypatch.setenv("M1DATA_FAULT_KEY", KEY)
    engine = HTTPEngine(HTTPConfig(base_url=llm_server.base_url, api_key_env="M1DATA_FAULT_KEY"))
    data = pickle.dumps(engine)
    assert KEY.encode() not in data
    copy = pickle.loads(data)
    assert asyncio.run(copy.complete(ask("q"))).status == "ok"
    assert llm_server.requests[-1].headers["authorization"] == f"Bearer {KEY}"


def test_echoed_authorization_is_masked_everywhere(llm_server, tmp_path, monkeypatch, capfd, shown_output):
    """A server that echoes the request's Authorization header in its error body: the key must
    not reach the cache, the rejected rows or the terminal."""
    monkeypatch.setenv("M1DATA_FAULT_KEY", KEY)

    def echoing(req: Received) -> Response:
        return error(400, f"invalid request; headers were {{'authorization': '{req.headers.get('authorization')}'}}")

    llm_server.handler = echoing
    from m1data.stages.traces import run_traces_file

    run_traces_file(one_row_file(tmp_path), tmp_path / "out.jsonl", llm_server.base_url, "m", "M1DATA_FAULT_KEY",
                    runtime=LLMRuntime(progress=True))
    dropped = read_rows(tmp_path / "out.dropped.jsonl")
    assert dropped["reason"] == ["error"] and "***" in dropped["detail"][0]
    for path in tmp_path.iterdir():
        assert KEY.encode() not in path.read_bytes(), path
    out, err = capfd.readouterr()
    assert KEY not in out + err


def cli(*args: str, env_key: bool = True) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, "M1DATA_FAULT_KEY": KEY} if env_key else dict(os.environ)
    return subprocess.run(
        [sys.executable, "-c", "from m1data.cli import main; main()", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def one_row_file(tmp_path):
    rows = rows_to_dataset(
        [
            make_row(
                source="medmcqa",
                row_id="r1",
                question="Which nerve?",
                options=["a", "b", "c", "d"],
                answer_idx=0,
                raw={},
            )
        ]
    )
    return write_rows(rows, tmp_path / "in.jsonl")


def run_traces(tmp_path, base_url: str, *options: str):
    """`m1data run traces` over one row, into OUT = tmp_path/out.jsonl, asking model `m`."""
    return cli("run", "traces", str(one_row_file(tmp_path)), str(tmp_path / "out.jsonl"), "--base-url", base_url,
               "--model", "m", *options)


def test_wrong_key_is_one_line_and_exit_2(llm_server, tmp_path):
    llm_server.handler = lambda req: error(401, f"Incorrect API key provided: {req.headers.get('authorization')}")
    proc = run_traces(tmp_path, llm_server.base_url, "--api-key-env", "M1DATA_FAULT_KEY")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "http_401" in proc.stderr
    assert len([line for line in proc.stderr.splitlines() if "error" in line.lower()]) == 1
    assert KEY not in proc.stderr + proc.stdout


def test_run_traces_refused_connection_exits_non_zero(tmp_path):
    """Checked before anything is sent, as a build checks each stage: one line, no wait for retries."""
    port = closed_port()
    proc = run_traces(tmp_path, f"http://127.0.0.1:{port}/v1")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"error: teacher m: cannot reach http://127.0.0.1:{port}/v1 (ConnectError)"
    assert not (tmp_path / "out.jsonl").exists()


def test_run_traces_timeout_option(llm_server, tmp_path):
    llm_server.handler = lambda req: reply(req, "\\boxed{A}", delay=1.5)
    proc = run_traces(tmp_path, llm_server.base_url, "--timeout", "0.3", "--request-attempts", "2")
    assert "No such option" not in proc.stderr
    # one row timing out on every attempt is recorded as such, not a wait of 1.5 s per attempt
    assert "Traceback" not in proc.stderr
    assert proc.returncode == 1 and "failed transiently" in proc.stderr  # written, not finished: run again
    assert read_rows(tmp_path / "out.dropped.jsonl")["detail"][0].startswith("timeout")


def test_local_endpoint_costs_nothing_by_model_name(llm_server):
    """A local server that calls its model `deepseek-reasoner` is not charged DeepSeek's prices."""
    llm_server.handler = lambda req: reply(req, "ok", prompt_tokens=1000, completion_tokens=1000)
    engine = HTTPEngine(HTTPConfig(base_url=llm_server.base_url))
    stats = RunStats()
    run(engine, [Request(model="deepseek-reasoner", prompt="x", params={"max_tokens": 5})], stats=stats)
    assert stats.cost_sent == 0.0


# Issue 23 item 3: userinfo in a base_url is refused, never sent as Basic auth. The password
# below in each form it could be written down in: as typed in the URL (percent-encoded), decoded,
# and inside the base64 of a Basic Authorization header.
PASSWORD = "s3cret:pw/42"
URL_PASSWORD = "s3cret%3Apw%2F42"
BASIC = __import__("base64").b64encode(f"u:{PASSWORD}".encode()).decode()
ENCODINGS = (PASSWORD, URL_PASSWORD, BASIC, "s3cret")


def with_userinfo(base_url: str) -> str:
    return base_url.replace("http://", f"http://u:{URL_PASSWORD}@")


def assert_no_password(text: str | bytes, where: object = "") -> None:
    data = text.encode() if isinstance(text, str) else text
    for form in ENCODINGS:
        assert form.encode() not in data, (form, where)


def base_url_doors(url):
    """Every way a base_url enters: the engine, the endpoint check, an LLM stage's config."""
    from m1data.llm.preflight import endpoint_problem
    from m1data.stages.traces import TeacherTraces, TracesConfig

    return [
        lambda: HTTPEngine(HTTPConfig(base_url=url)),
        lambda: endpoint_problem(url),
        lambda: TeacherTraces(TracesConfig(model="m", base_url=url, api_key_env=None)),
    ]


def test_credentials_in_a_base_url_are_refused_in_one_line_naming_no_password(llm_server, tmp_path):
    """`run traces --base-url http://u:pw@host/v1` against a server that would echo the
    Authorization header in a 500: exit 2, one line, nothing sent, no file written, and no
    encoding of the password in stdout, stderr or any file."""
    llm_server.handler = lambda req: error(500, f"boom; you sent authorization={req.headers.get('authorization')}")
    rows = one_row_file(tmp_path)
    proc = cli("run", "traces", str(rows), str(tmp_path / "out.jsonl"), "--base-url",
               with_userinfo(llm_server.base_url), "--model", "m", env_key=False)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "carries credentials" in proc.stderr and "api_key_env" in proc.stderr
    assert_no_password(proc.stdout + proc.stderr, "terminal")
    assert "u:" not in proc.stderr
    assert llm_server.count() == 0 and len(llm_server.all_requests) == 0  # not even the preflight's GET
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]  # no OUT, no cache


def test_credentials_in_a_base_url_are_refused_by_every_way_in(llm_server, monkeypatch):
    """The engine, the endpoint check, OPENAI_BASE_URL and an LLM stage's config all refuse it."""
    from m1data.errors import UserError

    url = with_userinfo(llm_server.base_url)
    for attempt in base_url_doors(url):
        with pytest.raises(UserError, match="carries credentials") as err:
            attempt()
        assert_no_password(str(err.value))
    monkeypatch.setenv("OPENAI_BASE_URL", url)
    with pytest.raises(UserError, match="carries credentials") as err:
        HTTPEngine(HTTPConfig(base_url=None))
    assert_no_password(str(err.value))
    assert len(llm_server.all_requests) == 0


@pytest.mark.parametrize("mark", ["/", "?", "#"])
def test_a_password_with_a_raw_slash_query_or_fragment_mark_is_refused_showing_none_of_it(llm_server, mark):
    """Such a password ends the URL's authority early for every parser (`alice:s3cr` reads as
    host and port): the '@' alone says credentials are there, and the message shows none of them."""
    from m1data.errors import UserError

    url = llm_server.base_url.replace("http://", f"http://alice:s3cr{mark}etPW@")
    for attempt in base_url_doors(url):
        with pytest.raises(UserError, match="carries credentials") as err:
            attempt()
        assert "s3cr" not in str(err.value) and "etPW" not in str(err.value) and "alice" not in str(err.value)
        assert llm_server.base_url in str(err.value)  # the server it names, without them
    assert len(llm_server.all_requests) == 0


# A key in a base_url's query (`?api-key=...`, Azure and Gemini style) is refused like userinfo:
# accepted, it was printed in the plan line and written to the manifest, the reply cache's
# `endpoint` column and the card's model and settings tables (the SDK appends its route after the
# query, `/v1/?api-key=...chat/completions`, so it never worked as a query anyway).
QUERY_KEY = "0123456789abcdefQUERYKEY"


@pytest.mark.parametrize("tail", [f"?api-key={QUERY_KEY}", f"?key={QUERY_KEY}&v=1", f"#{QUERY_KEY}"])
def test_a_key_in_a_base_url_query_is_refused_showing_none_of_it(llm_server, tmp_path, monkeypatch, tail):
    from m1data.errors import UserError

    url = llm_server.base_url + tail
    for attempt in base_url_doors(url):
        with pytest.raises(UserError, match="query string") as err:
            attempt()
        assert QUERY_KEY not in str(err.value) and llm_server.base_url in str(err.value)
    monkeypatch.setenv("OPENAI_BASE_URL", url)
    with pytest.raises(UserError, match="query string") as err:
        HTTPEngine(HTTPConfig(base_url=None))
    assert QUERY_KEY not in str(err.value)
    monkeypatch.delenv("OPENAI_BASE_URL")

    proc = run_traces(tmp_path, url, "--no-require-reasoning")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert QUERY_KEY not in proc.stdout + proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]  # no OUT, no cache
    assert len(llm_server.all_requests) == 0


# The key itself pasted where its variable's name goes (`--api-key-env gsk_...`): the messages
# saying the variable is not set printed it on the terminal.
PASTED = ["gsk_PastedKey0123456789abcdefXYZ", "sk-pasted-0123456789abcdef", "0123456789abcdef0123456789abcdef"]


@pytest.mark.parametrize("pasted", PASTED)
def test_a_key_given_as_api_key_env_is_never_printed(llm_server, tmp_path, pasted):
    import asyncio

    from m1data.llm.http import MissingAPIKey
    from m1data.llm.preflight import endpoint_problem

    proc = run_traces(tmp_path, llm_server.base_url, "--api-key-env", pasted)
    assert proc.returncode == 2 and "is not set" in proc.stderr, proc.stderr
    assert pasted not in proc.stdout + proc.stderr
    with pytest.raises(MissingAPIKey) as err:
        HTTPEngine(HTTPConfig(base_url=llm_server.base_url, api_key_env=pasted))
    engine = HTTPEngine(HTTPConfig(base_url=llm_server.base_url, api_key_env=pasted), require_key=False)
    failed = asyncio.run(engine.complete(ask("q")))
    shown = [str(err.value), endpoint_problem(llm_server.base_url, pasted), failed.error, repr(engine)]
    assert all(pasted not in text and "api_key_env" in text for text in shown), shown


def test_a_variable_name_is_still_named_when_unset(llm_server):
    from m1data.llm.preflight import endpoint_problem

    assert "M1DATA_ABSENT_KEY" in endpoint_problem(llm_server.base_url, "M1DATA_ABSENT_KEY")


# A key given as a request field (`extra_params: {api_key: ...}`, as a LiteLLM proxy accepts it)
# went into the request body, which the reply cache stores, and into the manifest's config.
BODY_KEY = "lk-bodykey-0123456789abcdef"


@pytest.mark.parametrize("extra", [{"api_key": BODY_KEY}, {"metadata": {"user_token": BODY_KEY}},
                                   {"note": "sk-" + BODY_KEY}])
def test_a_key_in_extra_params_is_refused_before_anything_is_sent(llm_server, tmp_path, extra):
    from m1data.errors import UserError
    from m1data.running.pipeline import run_pipeline
    from m1data.stages.difficulty import DifficultyConfig, DifficultyFilter, StudentConfig
    from m1data.stages.mesh import MeshConfig, MeshTagger
    from m1data.stages.traces import TeacherTraces, TracesConfig

    url = llm_server.base_url
    stages = [
        lambda: TeacherTraces(TracesConfig(model="m", base_url=url, api_key_env=None, extra_params=extra)),
        lambda: DifficultyFilter(DifficultyConfig(students=[StudentConfig(model="m", base_url=url, short="s")],
                                                  extra_params=extra)),
        lambda: MeshTagger(MeshConfig(model="m", base_url=url, api_key_env=None, extra_params=extra)),
    ]
    for make in stages:
        with pytest.raises(UserError, match="extra_params: .* holds a credential") as err:
            run_pipeline([make()], tmp_path / "run")
        assert BODY_KEY not in str(err.value)
    assert len(llm_server.all_requests) == 0 and not (tmp_path / "run").exists()


def test_ordinary_extra_params_are_accepted():
    from m1data.stages.traces import TeacherTraces, TracesConfig

    extra = {"seed": 42, "chat_template_kwargs": {"enable_thinking": True}, "grammar": 'root ::= "x"',
             "skip_special_tokens": False, "min_tokens": 1}
    TeacherTraces(TracesConfig(model="m", base_url="http://127.0.0.1:9/v1", api_key_env=None, extra_params=extra))


@pytest.mark.parametrize("url, problem", [("http://localhost:80a/v1", "port that is not a number"),
                                          ("localhost:8000/v1", "does not start with http"),
                                          ("http:///v1", "names no host"),
                                          ("http://localhost:8000/v1/chat/completions", "ends in the path each request adds"),
                                          ("https://api.example.com/v1/completions/", "give the URL up to there")])
def test_a_malformed_base_url_is_one_line_and_exit_2(tmp_path, url, problem):
    proc = run_traces(tmp_path, url)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert len(lines) == 1 and problem in lines[0], proc.stderr


def test_an_echoed_basic_authorization_is_masked(llm_server, tmp_path):
    """Defence in depth: a Basic credential a server echoes (one a proxy added, say) is masked
    like a Bearer token before the reply reaches the cache."""
    llm_server.handler = lambda req: error(400, f"bad; authorization was 'Basic {BASIC}'")
    engine = HTTPEngine(HTTPConfig(base_url=llm_server.base_url))
    with Cache(tmp_path / "c.sqlite") as cache:
        replies = run(engine, [ask("q")], cache, stats=RunStats(), progress=False)
    assert "Basic ***" in replies[0].error
    assert_no_password((tmp_path / "c.sqlite").read_bytes(), "cache")

def _signalled_mid_request(llm_server, tmp_path, sig: int) -> subprocess.CompletedProcess:
    """`m1data run traces` sent `sig` while its one request is in flight (a teacher that never answers)."""
    import os
    import time

    llm_server.handler = lambda req: Response(status=200, body={}, delay=60)
    args = [sys.executable, "-c", "from m1data.cli import main; main()", "run", "traces", str(one_row_file(tmp_path)),
            str(tmp_path / "out.jsonl"), "--base-url", llm_server.base_url, "--model", "m", "--no-require-reasoning"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ),
                            preexec_fn=sigint_as_at_a_terminal)
    deadline = time.time() + 60
    while llm_server.count() == 0 and time.time() < deadline:  # the request is in flight
        time.sleep(0.1)
    assert llm_server.count() == 1
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def test_sigterm_unwinds_and_exits_143(llm_server, tmp_path):
    """Issue 23 item 7: a terminated command exits 143 (128 + SIGTERM), not 130 (Ctrl-C's), with
    one line, after unwinding: nothing half-written is left as OUT."""
    import signal

    proc = _signalled_mid_request(llm_server, tmp_path, signal.SIGTERM)
    err = proc.stderr
    assert proc.returncode == 143, err
    assert "Traceback" not in err and "terminated" in err
    assert not (tmp_path / "out.jsonl").exists()


def test_sigterm_landing_inside_a_task_still_ends_the_run():
    """With the CLI's handler, a SIGTERM that arrives while some task of the run is executing
    (one nobody awaits, here) must still stop the run: the event loop takes the signal, so it
    cannot be kept on that task as its exception and lost."""
    import asyncio
    import os
    import signal

    from m1data.errors import Terminated, raise_terminated
    from m1data.llm.runner import run_sync

    class Engine:
        async def aclose(self) -> None:
            pass

    async def job() -> str:
        async def background() -> None:
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs while this task runs
            await asyncio.sleep(0)

        keep = asyncio.ensure_future(background())  # never awaited
        await asyncio.sleep(3)
        return f"finished ({keep.done()})"

    previous = signal.signal(signal.SIGTERM, raise_terminated)  # as m1data.cli.main sets it
    try:
        with pytest.raises(Terminated):
            run_sync(Engine(), job)
        assert signal.getsignal(signal.SIGTERM) is raise_terminated  # the CLI's handler is back afterwards
    finally:
        signal.signal(signal.SIGTERM, previous)


INTERRUPTED = "interrupted (Ctrl-C); completed work is kept: run the same command again to continue"


def test_ctrl_c_unwinds_and_exits_130_with_one_line(llm_server, tmp_path):
    """Ctrl-C (SIGINT) in the middle of a command ended it with exit 130 and nothing said: not
    that the work finished so far is kept and that the same command continues it, which SIGTERM
    says. Now one line says so; nothing half-written is left as OUT."""
    import signal

    proc = _signalled_mid_request(llm_server, tmp_path, signal.SIGINT)
    err = proc.stderr
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == INTERRUPTED, err
    assert not (tmp_path / "out.jsonl").exists()


def test_a_base_url_pasted_with_white_space_around_it_is_called_without_it(llm_server):
    """A URL pasted with a space before or after it (a config, a shell variable) passed the check,
    which reads past it, and then every request failed ("UnsupportedProtocol")."""
    llm_server.handler = lambda req: chat("answered")
    for pasted in (f" {llm_server.base_url}", f"{llm_server.base_url}\n", f"\t{llm_server.base_url}/ "):
        [answer] = run(HTTPEngine(HTTPConfig(base_url=pasted)), [ask("q")])
        assert answer.status == "ok" and answer.text == "answered", answer
