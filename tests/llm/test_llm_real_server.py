"""The runtime's promises (README, "How a build works": the reply cache, its namespace, `--dry-run`,
the `tpm` ceiling charged by reported usage, a server that dies mid-run) checked against the
embedded model's real server: llama.cpp (the xllamacpp wheel) serving SmolLM2-135M, as the build
runs it. (`rpm` is a client-side count that needs a 60 s window: test_llm_limits checks it on a
fake clock, test_llm_runner on a local server.)

What the server received is counted by a small pass-through proxy in front of it (`Recorder`),
not by m1data's own statistics: a cache hit must mean zero requests on the wire. Each test sends
a handful of requests of a few tokens (the model reads ~300 tokens/s on one shared core).
"""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from m1data.llm import HTTPConfig, HTTPEngine, complete_all
from m1data.llm.cache import Cache
from m1data.llm.local_server import LocalServer, ServerConfig, embedded_missing
from m1data.llm.runner import RunStats
from m1data.llm.types import Request

pytestmark = pytest.mark.skipif(embedded_missing() is not None, reason=str(embedded_missing()))

MODEL = "SmolLM2-135M-Instruct.Q4_1.gguf"


class Recorder:
    """A pass-through HTTP proxy to `upstream` that records, per chat request, when it arrived
    and the tokens the server's reply reported (prompt + completion)."""

    def __init__(self, upstream: str):
        self.upstream = upstream.rstrip("/")
        self.calls: list[tuple[float, int]] = []
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self._forward(None)

            def do_POST(self) -> None:
                self._forward(self.rfile.read(int(self.headers.get("Content-Length") or 0)))

            def _forward(self, body: bytes | None) -> None:
                arrived = time.monotonic()
                url = recorder.upstream + self.path.removeprefix("/v1")
                request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
                try:
                    with urllib.request.urlopen(request, timeout=120) as response:
                        status, data = response.status, response.read()
                except urllib.error.HTTPError as err:
                    status, data = err.code, err.read()
                if self.path.endswith("/chat/completions"):
                    usage = json.loads(data).get("usage") or {}
                    recorder.calls.append((arrived, usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0)))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with LocalServer(ServerConfig(parallel=1, ctx_size=2048), tmp_path_factory.mktemp("srv") / "s.log") as running:
        yield running


@pytest.fixture
def recorder(server):
    proxy = Recorder(server.base_url)
    yield proxy
    proxy.close()


def ask(content: str, *, model: str = MODEL, **params) -> Request:
    return Request(model=model, messages=({"role": "user", "content": content},),
                   params={"max_tokens": 4, "temperature": 0.0, **params})


def engine(base_url: str, **config) -> HTTPEngine:
    return HTTPEngine(HTTPConfig(base_url=base_url, timeout=120, **config))


def test_an_unchanged_rerun_sends_nothing_and_any_change_to_the_request_sends_it(tmp_path, recorder, server):
    first = [ask("Say yes."), ask("Say no.")]
    with Cache(tmp_path / "c.sqlite") as cache:
        plan = RunStats()
        complete_all(engine(recorder.base_url), first, cache, dry_run=True, progress=False, stats=plan)
        replies = complete_all(engine(recorder.base_url), first, cache, progress=False)
        assert len(recorder.calls) == 2 and all(r.status in ("ok", "length") for r in replies)
        assert plan.sent == 0 and plan.cached == 0  # the dry run sent nothing and planned both

        stats = RunStats()
        again = complete_all(engine(recorder.base_url), first, cache, progress=False, stats=stats)
        assert len(recorder.calls) == 2 and stats.sent == 0 and stats.cached == 2
        assert [r.text for r in again] == [r.text for r in replies] and all(r.cached for r in again)

        # the same local model on another port (the server itself, not the proxy): the same namespace
        direct = complete_all(engine(server.base_url), first, cache, progress=False)
        assert all(r.cached for r in direct)

        changed = [
            ask("Say yes.", model="another-model"),       # model
            ask("Say yes.", max_tokens=5),                 # max_tokens
            ask("Say yes.", temperature=0.5, seed=1),      # sampling parameters
            ask("Say yes!"),                               # the prompt
        ]
        for n, request in enumerate(changed, start=3):
            reply = complete_all(engine(recorder.base_url), [request], cache, progress=False)[0]
            assert not reply.cached and len(recorder.calls) == n, request

        own = complete_all(engine(recorder.base_url, cache_namespace="q8-finetune"), first[:1], cache, progress=False)
        assert not own[0].cached and len(recorder.calls) == 7  # a namespace of its own: a miss


def test_tpm_holds_over_the_run_charging_reported_usage(tmp_path, recorder):
    """tpm=600 (10 tokens/s, a burst of 10 s: 100 tokens). Before each request arrives, the tokens
    the server reported for the earlier ones fit in the burst plus what the minute refilled."""
    tpm, burst = 600, 100
    requests = [ask(f"Name a colour, {n}.", max_tokens=8) for n in range(5)]
    started = time.monotonic()
    complete_all(engine(recorder.base_url), requests, None, tpm=tpm, concurrency=1, progress=False)
    assert len(recorder.calls) == 5
    used = 0
    for arrived, tokens in recorder.calls:
        allowed = burst + tpm / 60 * (arrived - started)
        assert used <= allowed + 1, (used, allowed)
        used += tokens
    assert used > burst  # the limit was in play: the run needed more than its burst


def test_a_server_that_dies_mid_run_is_one_line_and_the_rerun_sends_only_the_rest(tmp_path):
    """`m1data run difficulty` against a real server that is killed (SIGKILL) after its first
    replies: the run stops with one line and exit 2, what was answered is cached, and the same
    command against the server brought back (another port, same model) sends only the rest."""
    from m1data.stages.loading import LoadConfig, LoadSources

    rows = LoadSources(LoadConfig()).run(None, None).rows.select(range(8))
    source = tmp_path / "in.parquet"
    rows.to_parquet(str(source))
    out, cache_file = tmp_path / "out.parquet", tmp_path / "c.sqlite"

    def command(base_url: str) -> list[str]:
        return [sys.executable, "-c", "from m1data.cli import main; main()", "run", "difficulty", str(source),
                str(out), "--student", f"{MODEL}={base_url}", "--max-tokens", "4", "--concurrency", "1",
                "--cache", str(cache_file), "--request-attempts", "2"]

    def answered() -> int:
        if not cache_file.exists():
            return 0
        with Cache(cache_file) as cache:
            return sum(n for status, n in cache.status_counts().items() if "transient" not in status)

    log = tmp_path / "s.log"
    with LocalServer(ServerConfig(parallel=1, ctx_size=2048), log) as server:
        run = subprocess.Popen(command(server.base_url), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        while answered() < 2 and run.poll() is None:
            time.sleep(0.05)
        server.process.kill()
        stdout, stderr = run.communicate(timeout=300)
    before = answered()
    assert run.returncode == 2, stderr
    problems = [line for line in stderr.splitlines() if line.startswith(("error", "Error", "m1data: error"))]
    assert len(problems) == 1 and "run again" in problems[0], stderr
    assert "Traceback" not in stderr
    assert 2 <= before < 8 and not out.exists()

    with LocalServer(ServerConfig(parallel=1, ctx_size=2048), log) as server:
        proxy = Recorder(server.base_url)
        try:
            rerun = subprocess.run(command(proxy.base_url), capture_output=True, text=True, timeout=300)
        finally:
            proxy.close()
    assert rerun.returncode == 0, rerun.stderr
    assert len(proxy.calls) == 8 - before
    assert out.exists() and (tmp_path / "out.dropped.parquet").exists()


def test_the_dry_run_plans_every_request_the_run_sends_pass_at_n_included(tmp_path, recorder, caplog):
    """`run difficulty --dry-run` must plan what the run then sends: with `samples: 2` a student
    is asked twice per question, and the plan said one (half the requests and cost); after
    `samples` was raised on a finished run it said "0 to send" while the run sent the new ones."""
    import logging

    from m1data.llm.stages import run_llm_on_file
    from m1data.stages.difficulty import DifficultyConfig, DifficultyFilter, StudentConfig
    from m1data.stages.loading import LoadConfig, LoadSources

    source = tmp_path / "in.parquet"
    LoadSources(LoadConfig()).run(None, None).rows.select(range(2)).to_parquet(str(source))
    out, cache_file = tmp_path / "out.parquet", tmp_path / "c.sqlite"

    def stage(samples: int) -> DifficultyFilter:
        student = StudentConfig(model=MODEL, base_url=recorder.base_url, short="s", samples=samples)
        config = DifficultyConfig(students=[student], max_tokens=2, temperature=0.7)
        config.runtime.cache_path, config.runtime.progress = str(cache_file), False
        return DifficultyFilter(config)

    def planned(samples: int) -> str:
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="m1data.llm.runner"):
            run_llm_on_file(stage(samples), source, out, dry_run=True)
        return caplog.text

    assert "4 to send" in planned(2)
    run_llm_on_file(stage(2), source, out, dry_run=False)
    assert len(recorder.calls) == 4
    assert "4 cached, 0 to send" in planned(2)
    assert "4 cached, 2 to send" in planned(3)
    run_llm_on_file(stage(3), source, out, dry_run=False)
    assert len(recorder.calls) == 6
