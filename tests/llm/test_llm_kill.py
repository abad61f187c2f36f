"""Crash safety: a run killed with SIGKILL mid-way and restarted pays for no completed request
twice, and ends with an outcome for every request."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from llm_server import Received, Response, ScriptedServer, reply

N_REQUESTS = 200
CONCURRENCY = 8

SCRIPT = textwrap.dedent(
    """
    import sys
    from m1data.llm import Cache, HTTPConfig, HTTPEngine, Request, complete_all

    base_url, cache_path, n, concurrency = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    engine = HTTPEngine(HTTPConfig(base_url=base_url))
    requests = [Request(model="m", messages=({"role": "user", "content": f"question {i}"},), params={"max_tokens": 5})
                for i in range(n)]
    with Cache(cache_path) as cache:
        replies = complete_all(engine, requests, cache, concurrency=concurrency, progress=False)
    print("DONE", sum(r.status == "ok" for r in replies), flush=True)
    """
)


def slow_echo(req: Received) -> Response:
    return reply(req, f"answer to {req.text}", delay=0.02)


def start(tmp_path: Path, server: ScriptedServer) -> subprocess.Popen:
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    return subprocess.Popen(
        [
            sys.executable,
            str(script),
            server.base_url,
            str(tmp_path / "cache.sqlite"),
            str(N_REQUESTS),
            str(CONCURRENCY),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def completed_bodies(cache_path: Path) -> set[str]:
    db = sqlite3.connect(cache_path)
    try:
        return {body for (body,) in db.execute("SELECT request FROM replies WHERE status = 'ok'")}
    finally:
        db.close()


def test_sigkill_then_resume_never_pays_twice(tmp_path):
    with ScriptedServer(slow_echo) as server:
        first = start(tmp_path, server)
        deadline = time.monotonic() + 60
        while server.count() < 80 and time.monotonic() < deadline:
            time.sleep(0.005)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        assert first.returncode == -signal.SIGKILL
        server.wait_for_dead_clients()  # count what was written just before the kill, too
        sent_before = server.sends_per_body()
        done_before = completed_bodies(tmp_path / "cache.sqlite")
        assert 50 <= len(done_before) < N_REQUESTS  # killed mid-way, with work recorded

        second = start(tmp_path, server)
        out, err = second.communicate(timeout=120)
        assert second.returncode == 0, err
        assert out.split() == ["DONE", str(N_REQUESTS)]

        sends = server.sends_per_body()
        assert len(sends) == N_REQUESTS
        # Nothing that had completed before the kill was sent again...
        assert all(sends[body] == 1 for body in done_before)
        # ...only what was in flight at the kill, at most one per worker.
        resent = {body for body, n in sends.items() if n > 1}
        assert resent <= set(sent_before) - done_before
        assert len(resent) <= CONCURRENCY
        assert all(n <= 2 for n in sends.values())
        # Every request ends with a recorded outcome.
        assert completed_bodies(tmp_path / "cache.sqlite") == set(sends)


# ---------------------------------------------------------------------------------------------
# SIGKILL of an LLM stage while it writes its outputs, many times over


STAGE_SCRIPT = textwrap.dedent(
    """
    import json, os, random, signal, sys, time
    from dataclasses import dataclass

    import datasets

    from m1data.llm.limits import RetryPolicy
    from m1data.llm.stages import LLMRuntime
    from m1data.running.pipeline import Stage, StageResult, run_pipeline
    from m1data.schema import make_row, rows_to_dataset
    from m1data.stages.traces import TeacherTraces, TracesConfig

    # what a run imports on first use (the OpenAI SDK, the endpoint check, the row writers), imported
    # once here rather than in each of the forked runs below: 0.4 s of CPU per run, none of it in
    # the write window
    import openai, m1data.llm.preflight, m1data.reading.readers

    base_url, run_dir, n, kills, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])

    @dataclass
    class RowsConfig:
        n: int

    class Rows(Stage):
        name = "rows"
        reads_rows = True

        def __init__(self, config):
            self.config = config

        def run(self, rows, ctx):
            return StageResult(rows=rows_to_dataset([
                make_row(source="medqa", row_id=f"medqa:{i}", question=f"Question {i}?",
                         options=[f"a{i}", f"b{i}", f"c{i}", f"d{i}"], answer_idx=0, raw={})
                for i in range(self.config.n)]))

    class Marked(TeacherTraces):
        \"\"\"Tells the parent, through a pipe, the moment every reply is in: the write window opens.\"\"\"

        def run(self, rows, ctx):
            result = super().run(rows, ctx)
            os.write(MARK, b"w")
            return result

    def stages():
        config = TracesConfig(model="teacher", base_url=base_url, api_key_env=None,
                              runtime=LLMRuntime(progress=False, concurrency=4,
                                                 retries=RetryPolicy(max_attempts=2, base_delay=0.01)))
        return [Rows(RowsConfig(n)), Marked(config)]

    def child(mark, start):
        global MARK
        MARK = mark
        run_pipeline(stages(), run_dir, start=start)
        os._exit(0)

    def one_run(start, kill_at):
        \"\"\"Fork a run; SIGKILL it `kill_at` seconds into its write window (None: let it finish).
        Returns (killed, seconds from the window opening to the end of the run).\"\"\"
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            child(write_end, start)
        os.close(write_end)
        if os.read(read_end, 1) != b"w":  # the stage was skipped (complete), or the run failed
            _, status = os.waitpid(pid, 0)
            if os.waitstatus_to_exitcode(status) != 0:
                raise SystemExit(f"run failed before writing: {status}")
            return False, 0.0
        opened = time.perf_counter()
        if kill_at is not None:
            time.sleep(kill_at)
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        os.close(read_end)
        killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        if not killed and os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"run failed: {status}")
        return killed, time.perf_counter() - opened

    datasets.disable_progress_bars()
    rng = random.Random(seed)
    _, window = one_run(None, None)           # pays for every reply, measures the write window
    window = max(window, 1e-3)
    delays, killed = [], 0
    for _ in range(kills):                    # re-runs of the stage, each killed at a random moment
        delay = rng.uniform(0, window)
        hit, window_now = one_run("traces", delay)
        killed += hit
        delays.append(round(delay, 5))
        if not hit:  # the window was shorter this time (a busy machine stretches the first one)
            window = window_now
    one_run(None, None)                       # and the run that finally completes
    print(json.dumps({"window": window, "killed": killed, "delays": delays}), flush=True)
    """
)

STAGE_ROWS = 16
KILLS = 24


def right_answer(req: Received) -> Response:
    return reply(req, "The answer is \\boxed{A}.", reasoning="thinking")


def test_sigkill_anywhere_in_the_stage_write_window_never_pays_twice(tmp_path):
    """The issue's fault injection: SIGKILL an LLM stage at random moments of its write window,
    many times, and check that no paid reply is ever sent again. In the write window every reply
    is already in (nothing is in flight), so the allowance for in-flight requests is zero."""
    import json
    import random

    script = tmp_path / "stage_kill.py"
    script.write_text(STAGE_SCRIPT)
    seed = random.randrange(1 << 30)
    with ScriptedServer(right_answer) as server:
        driver = subprocess.run(
            [sys.executable, str(script), server.base_url, str(tmp_path / "run"), str(STAGE_ROWS), str(KILLS),
             str(seed)],
            capture_output=True, text=True, timeout=240, check=False,
        )
        assert driver.returncode == 0, f"seed {seed}\n{driver.stdout}\n{driver.stderr[-3000:]}"
        report = json.loads(driver.stdout.strip().splitlines()[-1])
        sends = server.sends_per_body()
    assert len(sends) == STAGE_ROWS, f"seed {seed}"
    assert max(sends.values()) == 1, f"seed {seed}: a paid reply was sent again after a kill; {report}"
    assert report["killed"] >= KILLS // 3, f"seed {seed}: too few kills landed inside the window: {report}"
    run = tmp_path / "run"
    assert not list(run.glob("*.tmp")) and not list(run.glob("*.old"))
    assert (run / "01_traces" / "manifest.json").is_file()
