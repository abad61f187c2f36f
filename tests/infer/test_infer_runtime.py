"""`m1data infer` on the LLM stages' runtime, against the same scripted server as the stage tests
(tests/llm_server.py): a dead endpoint stops before anything (one line, exit 2); transient
failures leave a run incomplete (exit 1, nothing scored from them) and the re-run sends only what
is missing; a budget-forcing sweep killed midway and resumed pays for nothing it had received."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from llm_server import Received, Response, ScriptedServer, completion, error
from m1data.infer.budget import ANSWER_AFTER_BUDGET, ANSWER_AFTER_STOP, BudgetConfig
from m1data.infer.score import run_infer
from typer.testing import CliRunner

from m1data.cli import app
from m1data.llm.http import HTTPConfig, HTTPEngine
from m1data.llm.limits import RetryPolicy
from m1data.llm.runner import EndpointError
from m1data.llm.stages import LLMRuntime
from m1data.running.pipeline import LOCK_FILE

runner = CliRunner()
CLI = [sys.executable, "-c", "from m1data.cli import main; main()"]
OFFLINE = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


OPTIONS = {"A": "alpha", "B": "beta", "C": "gamma", "D": "delta"}


def eval_file(path: Path, n: int) -> Path:
    """n questions in an eval layout `--eval-sets` reads (options are shuffled on loading), whose
    right answer the scripted model reads off the question ("pick gamma")."""
    with path.open("w") as f:
        for i in range(n):
            gold = "ABCD"[i % 4]
            row = {"id": f"q{i}", "question": f"Question {i}: pick {OPTIONS[gold]}", "options": OPTIONS, "answer": gold}
            f.write(json.dumps(row) + "\n")
    return path


def eval_rows(folder: Path, n: int):
    """The same questions as rows of the m1data schema, as `run_infer` takes them."""
    from m1data.reading.evalsets import load_eval_any

    return next(iter(load_eval_any(eval_file(folder / "rows.jsonl", n)).values())).rows


def thinker(fails=lambda body: False, delay: float = 0.0):
    """A completions 'model' with vLLM-style token counts: each thinking call writes three words
    and a stop token (4 tokens) when they fit, else runs out of budget; the answer call boxes the
    letter the question names. `fails(body)` true: a 503 with Retry-After 0 (retried at once)."""

    def handler(req: Received) -> Response:
        if fails(req.body):
            return error(503, "overloaded", retry_after=0)
        prompt, max_tokens = req.body["prompt"], req.body["max_tokens"]
        if prompt.endswith((ANSWER_AFTER_STOP, ANSWER_AFTER_BUDGET)):
            text = re.search(r"pick (\w+)", prompt).group(1)
            return completion(f" \\boxed{{{text}}}", completion_tokens=3, delay=delay)
        if max_tokens >= 4:
            return completion(" hmm" * 3, finish_reason="stop", completion_tokens=4, delay=delay)
        return completion(" hmm" * max_tokens, finish_reason="length", completion_tokens=max_tokens, delay=delay)

    return handler


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# A dead endpoint


@pytest.mark.parametrize("command", [["run", "--budget", "8"], ["sweep", "--budgets", "8,16"]])
def test_dead_endpoint_is_one_line_and_exit_2(tmp_path, command):
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    out = tmp_path / "out"
    proc = subprocess.run(
        [*CLI, "infer", *command, "--base-url", url, "--model", "m", "--eval-sets",
         f"mine={eval_file(tmp_path / 'e.jsonl', 3)}", "--out", str(out)],
        capture_output=True, text=True, env=OFFLINE, timeout=60, check=False,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach") and url in lines[0], proc.stderr
    assert not out.exists()  # nothing started, nothing written


def test_dead_endpoint_through_the_library_stops_the_run(tmp_path):
    """Without the CLI's check the runtime still stops (EndpointError), instead of scoring every
    question as a connection error."""
    engine = HTTPEngine(HTTPConfig(base_url=f"http://127.0.0.1:{free_port()}/v1"))
    runtime = LLMRuntime(progress=False, retries=RetryPolicy(max_attempts=2, base_delay=0.01))
    with pytest.raises(EndpointError, match="cannot connect"):
        run_infer(engine, {"mine": eval_rows(tmp_path, 8)}, tmp_path / "out", BudgetConfig(model="m"), runtime=runtime)
    assert not (tmp_path / "out" / "metrics.json").exists()


# ---------------------------------------------------------------------------------------------
# Transient failures


def test_503s_leave_the_run_incomplete_and_the_rerun_sends_only_what_is_missing(tmp_path):
    evals = eval_file(tmp_path / "e.jsonl", 6)
    out = tmp_path / "out"

    def failing(body: dict) -> bool:  # question 2's forced continuation, and question 4's answer
        prompt = body["prompt"]
        return ("Question 2:" in prompt and prompt.endswith("Wait")) or (
            "Question 4:" in prompt and prompt.endswith((ANSWER_AFTER_STOP, ANSWER_AFTER_BUDGET)))

    with ScriptedServer(thinker()) as server:
        args = ["infer", "run", "--base-url", server.base_url, "--model", "m", "--eval-sets", f"mine={evals}",
                "--budget", "64", "--forcing-rounds", "1", "--no-progress", "--out", str(out)]
        earlier = runner.invoke(app, [*args[:5], "earlier", *args[6:]])  # an earlier run, of another model
        assert earlier.exit_code == 0, earlier.output
        before = {name: (out / name).read_bytes() for name in ("records.jsonl", "metrics.json")}
        server.handler = thinker(failing)
        server.reset()
        first = runner.invoke(app, args)
        assert first.exit_code == 1, first.output
        assert "incomplete: 2 of 6 questions failed transiently" in first.output.replace("\n", " "), first.output
        # the earlier run's results stay, as they were (they were wiped: records of this run, no metrics)
        assert {name: (out / name).read_bytes() for name in before} == before
        answered = {body for body in server.sends_per_body() if not failing(json.loads(body))}

        server.handler = thinker()
        server.reset()
        second = runner.invoke(app, args)
        assert second.exit_code == 0, second.output
        resent = server.sends_per_body()
    # exactly what was missing: question 2's continuation and its answer, question 4's answer
    assert sum(resent.values()) == 3 and not set(resent) & answered, resent
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["sets"]["mine"]["n"] == 6 and metrics["sets"]["mine"]["accuracy"] == 1.0
    assert metrics["calls"]["sent"] == 3 and metrics["calls"]["cached"] > 0
    assert (out / "llm_cache.sqlite").is_file()


def test_metrics_are_written_once_with_the_label(tmp_path, monkeypatch):
    """The label goes into the one write of metrics.json (the command used to write it twice)."""
    import m1data.infer.score

    writes = []
    real = m1data.infer.score.write_json

    def counting(path, value):
        if path.name == "metrics.json":
            writes.append(value)
        return real(path, value)

    monkeypatch.setattr(m1data.infer.score, "write_json", counting)
    with ScriptedServer(thinker()) as server:
        result = runner.invoke(app, ["infer", "run", "--base-url", server.base_url, "--model", "org/m1-7B-1K",
                                     "--eval-sets", f"mine={eval_file(tmp_path / 'e.jsonl', 2)}", "--budget", "8",
                                     "--no-progress", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert len(writes) == 1 and writes[0]["label"] == "m1-7B-1K"


def test_a_sweep_resumes_past_a_metrics_file_cut_short(tmp_path, monkeypatch):
    """metrics.json, the mark of a finished point, was written in place: a kill during that write
    left it cut short, and every resume of the sweep then died reading it (JSONDecodeError,
    'internal error'). Now it is written whole or not at all, and one damaged otherwise makes its
    point run again from the cache, sending nothing twice."""
    real_fsync = os.fsync

    def killed(fd):  # the process stops while metrics.json is being written
        if "metrics" in os.readlink(f"/proc/self/fd/{fd}"):
            raise KeyboardInterrupt
        return real_fsync(fd)

    evals = eval_file(tmp_path / "e.jsonl", 4)
    with ScriptedServer(thinker()) as server:
        command = ["infer", "sweep", "--base-url", server.base_url, "--model", "m", "--eval-sets", f"mine={evals}",
                   "--budgets", "8,16", "--no-progress", "--out", str(tmp_path / "out")]
        with monkeypatch.context() as patch:
            patch.setattr(os, "fsync", killed)
            runner.invoke(app, command)
        point = tmp_path / "out" / "b8-r0"
        assert [p.name for p in point.iterdir() if p.name != LOCK_FILE] == ["records.jsonl"]  # no metrics.json

        (point / "metrics.json").write_text('{"label": "m", "con')  # damaged some other way
        result = runner.invoke(app, command)
        assert result.exit_code == 0, result.output
        assert set(server.sends_per_body().values()) == {1}  # b8 came from the cache
    assert len(json.loads((tmp_path / "out" / "sweep.json").read_text())) == 2
    assert json.loads((point / "metrics.json").read_text())["n"] == 4


# ---------------------------------------------------------------------------------------------
# Offline without a local tokenizer


def test_offline_tokenizer_never_goes_through_hub_retries(tmp_path, monkeypatch):
    """A tokenizer that is neither a folder nor in the local cache: with HF_HUB_OFFLINE the Hub is
    not asked at all; without it, one quick look-up decides. Either way no `from_pretrained`
    that would retry an unreachable Hub for ~45 s. Named with --tokenizer it is one line, exit 2;
    the default (--model) warns in one line and stops on marker strings."""
    pytest.importorskip("transformers")
    import huggingface_hub
    import transformers
    from huggingface_hub import constants as hub_constants

    from m1data.reading.readers import _network_errors

    calls = []
    real = transformers.AutoTokenizer.from_pretrained

    def recording(name, *args, **kwargs):
        calls.append(kwargs.get("local_files_only", False))
        return real(name, *args, **kwargs)

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", recording)
    common = ["--model", "org/not-cached", "--eval-sets", f"mine={eval_file(tmp_path / 'e.jsonl', 2)}",
              "--budget", "8", "--no-progress"]
    with ScriptedServer(thinker()) as server:
        monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
        named = runner.invoke(app, ["infer", "run", "--base-url", server.base_url, "--tokenizer", "org/not-cached",
                                    *common, "--out", str(tmp_path / "a")])
        assert named.exit_code == 2 and "HF_HUB_OFFLINE is set" in named.output, named.output

        monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
        looked_up = []

        def unreachable(name, **kwargs):
            looked_up.append(kwargs.get("timeout"))
            raise next(e for e in _network_errors() if e.__module__.startswith("httpx"))("Name or service not known")

        monkeypatch.setattr(huggingface_hub, "model_info", unreachable)
        default = runner.invoke(app, ["infer", "run", "--base-url", server.base_url, *common,
                                      "--out", str(tmp_path / "b")])
        bodies = [r.body for r in server.requests]
    assert default.exit_code == 0, default.output
    assert "the Hub cannot provide it" in default.output and "marker strings" in default.output
    assert all(calls), "from_pretrained was asked to reach the Hub"
    assert looked_up and all(t is not None and t <= 10 for t in looked_up)
    assert bodies and all(b.get("skip_special_tokens") is False for b in bodies)


def test_a_tokenizer_found_nowhere_is_said_without_importing_transformers(tmp_path, monkeypatch):
    """Importing transformers and torch takes seconds; a run whose tokenizer is neither a folder
    nor in the Hugging Face cache (an API model's name) must not pay them only to learn that.
    A model the cache does hold is still asked of transformers, offline."""
    script = textwrap.dedent("""
        import sys
        from infer.budget import load_tokenizer
        from m1data.errors import UserError
        for name in ("org/not-cached", "m", "/no/such/folder"):
            try:
                load_tokenizer(name)
            except UserError as err:
                print(err)
        print("transformers" in sys.modules)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                          env={**OFFLINE, "HF_HUB_CACHE": str(tmp_path / "hub")})
    *errors, imported = proc.stdout.splitlines()
    assert len(errors) == 3 and imported == "False", proc.stdout
    said = "neither a local folder nor in the local Hugging Face cache, and HF_HUB_OFFLINE is set"
    assert all(said in e for e in errors)

    transformers = pytest.importorskip("transformers")
    from huggingface_hub import constants

    from infer.budget import load_tokenizer
    from m1data.errors import UserError

    (tmp_path / "hub" / "models--org--cached").mkdir(parents=True)  # in the cache, with no tokenizer in it
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    asked = []

    def no_tokenizer_in_it(name, **kwargs):
        asked.append((name, kwargs))
        raise OSError("no tokenizer files")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", no_tokenizer_in_it)
    with pytest.raises(UserError, match="HF_HUB_OFFLINE is set"):
        load_tokenizer("org/cached")
    assert asked == [("org/cached", {"local_files_only": True})]


# ---------------------------------------------------------------------------------------------
# Kill and resume


def cached_ok(path: Path) -> set[str]:
    db = sqlite3.connect(path)
    try:
        return {body for (body,) in db.execute("SELECT request FROM replies WHERE status IN ('ok', 'length')")}
    finally:
        db.close()


BUDGETS, ROUNDS, QUESTIONS, CONCURRENCY = "8,16,32,64", "0,2", 12, 2


def test_sweep_killed_midway_and_resumed_pays_nothing_twice(tmp_path):
    """SIGKILL a budget-forcing sweep once some points are finished and another is under way, then
    run the same command again: the finished points are read back and send nothing; of the calls
    the cache had, none is sent again; at most the calls in flight at the kill are repeated."""
    out = tmp_path / "sweep"
    evals = eval_file(tmp_path / "e.jsonl", QUESTIONS)
    with ScriptedServer(thinker(delay=0.03)) as server:
        command = [*CLI, "infer", "sweep", "--base-url", server.base_url, "--model", "m", "--eval-sets",
                   f"mine={evals}", "--budgets", BUDGETS, "--forcing-rounds", ROUNDS, "--concurrency",
                   str(CONCURRENCY), "--no-progress", "--out", str(out)]
        first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=OFFLINE)
        deadline = time.monotonic() + 120
        while len(list(out.glob("*/metrics.json"))) < 3 and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.01)
        mark = server.count()
        while server.count() < mark + 6 and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.005)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        assert first.returncode == -signal.SIGKILL, first.stderr.read()
        server.wait_for_dead_clients()  # count what was written just before the kill, too
        finished = {p.parent.name: p.read_bytes() for p in out.glob("*/metrics.json")}
        done_before = cached_ok(out / "llm_cache.sqlite")
        sent_before = server.sends_per_body()
        assert 3 <= len(finished) < 8 and not (out / "sweep.json").exists()

        second = subprocess.run(command, capture_output=True, text=True, env=OFFLINE, timeout=180, check=False)
        assert second.returncode == 0, second.stderr
        sends = server.sends_per_body()
    resumed = {body: n - sent_before.get(body, 0) for body, n in sends.items() if n > sent_before.get(body, 0)}
    repaid = set(resumed) & done_before
    in_flight_again = set(resumed) & set(sent_before)
    print(f"\nkill/resume: {len(finished)} of 8 points finished at the kill, {len(done_before)} calls cached; "
          f"resume sent {sum(resumed.values())} calls, {len(repaid)} of them already cached, "
          f"{len(in_flight_again)} in flight at the kill; {len(sends)} distinct calls in all")
    assert not repaid  # nothing received before the kill is paid again, finished points included
    assert sum(resumed.values()) == len(sends) - len(done_before)  # each call it lacked, once
    assert len(in_flight_again) <= CONCURRENCY
    assert all(n <= 2 for n in sends.values())
    for name, content in finished.items():  # finished points were read back, not re-run
        assert (out / name / "metrics.json").read_bytes() == content
    points = json.loads((out / "sweep.json").read_text(encoding="utf-8"))
    assert len(points) == 8 and all(p["accuracy"]["mine"] == 1.0 for p in points)
    assert {(p["budget"], p["forcing_rounds"]) for p in points} == {(b, r) for b in (8, 16, 32, 64) for r in (0, 2)}


# ---------------------------------------------------------------------------------------------
# Eval sets as the command line reads them


def test_questions_with_broken_answer_keys_are_counted_as_unscored_in_metrics(tmp_path):
    """The loader leaves out a question whose answer key it cannot read, and `infer` scored what
    was left: a set with 2 of 4 keys broken was reported as n = 2, accuracy 1.0, with no word of
    the other two. Now they are in metrics.json as unscored (with their ids), and never asked."""
    evals = eval_file(tmp_path / "e.jsonl", 4)
    records = [json.loads(line) for line in evals.read_text().splitlines()]
    records[1]["answer"], records[2]["answer"] = "Z", None
    evals.write_text("".join(json.dumps(r) + "\n" for r in records))
    with ScriptedServer(thinker()) as server:
        result = runner.invoke(app, ["infer", "run", "--base-url", server.base_url, "--model", "m", "--eval-sets",
                                     f"mine={evals}", "--budget", "8", "--no-progress", "--out", str(tmp_path / "out")],
                               env={"HF_HUB_OFFLINE": "1"})
        asked = {re.search(r"Question (\d)", r.body["prompt"]).group(1) for r in server.requests}
    assert result.exit_code == 0, result.output
    mine = json.loads((tmp_path / "out" / "metrics.json").read_text())["sets"]["mine"]
    assert (mine["n"], mine["correct"], mine["unscored"]) == (2, 2, 2)
    assert [key.rsplit(":", 1)[1] for key in mine["unscored_ids"]] == ["q1", "q2"]
    assert asked == {"0", "3"}


@pytest.mark.parametrize("given", [["a={one}", "a={two}"], ["{one}", "{one}"]])
def test_an_eval_set_given_twice_is_one_line_before_anything_is_sent(tmp_path, given):
    """`--eval-sets a=one.jsonl,a=two.jsonl` scored only two.jsonl under the name a, silently."""
    files = {"one": eval_file(tmp_path / "one.jsonl", 2), "two": eval_file(tmp_path / "two.jsonl", 3)}
    with ScriptedServer(thinker()) as server:
        result = runner.invoke(app, ["infer", "run", "--base-url", server.base_url, "--model", "m", "--eval-sets",
                                     ",".join(g.format(**files) for g in given), "--no-progress",
                                     "--out", str(tmp_path / "out")], env={"HF_HUB_OFFLINE": "1"})
        assert server.count() == 0
    assert result.exit_code == 2 and "given twice" in result.output, result.output
    assert not (tmp_path / "out").exists()


def test_a_limit_below_one_is_refused_by_the_command_line(tmp_path):
    result = runner.invoke(app, ["infer", "sweep", "--base-url", "http://127.0.0.1:9/v1", "--model", "m",
                                 "--eval-sets", f"mine={eval_file(tmp_path / 'e.jsonl', 2)}", "--limit", "0",
                                 "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "--limit" in result.output, result.output


def test_a_rerun_killed_before_its_results_are_whole_keeps_the_previous_ones(tmp_path):
    """`infer run` again into a finished folder (another budget, say) deleted metrics.json as it
    started, then wrote records.jsonl in place: killed during the hour of calls, the finished run
    had lost its metrics; killed while writing, records.jsonl was cut short under its name. Now
    the previous pair stays, byte for byte, until the new records are whole, and the same command
    again finishes (from the cache) with the results a run into a new folder gives."""
    from kill_points import killed_writing

    evals = eval_file(tmp_path / "e.jsonl", 6)
    out = tmp_path / "out"
    with ScriptedServer(thinker()) as server:
        def command(budget: int, folder: Path) -> list[str]:
            return ["infer", "run", "--base-url", server.base_url, "--model", "m", "--eval-sets", f"mine={evals}",
                    "--budget", str(budget), "--no-progress", "--out", str(folder)]

        assert runner.invoke(app, command(8, out)).exit_code == 0
        before = {name: (out / name).read_bytes() for name in ("records.jsonl", "metrics.json")}

        killed = killed_writing("*records*", command(64, out))
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        assert {name: (out / name).read_bytes() for name in before} == before

        assert killed_writing("no-such-file", command(64, out)).returncode == 0
        assert runner.invoke(app, command(64, tmp_path / "fresh")).exit_code == 0
    assert (out / "records.jsonl").read_bytes() == (tmp_path / "fresh" / "records.jsonl").read_bytes()
    metrics = [json.loads((folder / "metrics.json").read_text()) for folder in (out, tmp_path / "fresh")]
    assert metrics[0] | {"calls": None} == metrics[1] | {"calls": None}  # what the calls cost differs, not the results
    assert sorted(p.name for p in out.iterdir() if p.name != LOCK_FILE) == ["llm_cache.sqlite", "metrics.json",
                                                                          "records.jsonl"]


def test_a_second_run_into_a_folder_in_use_is_refused_and_cannot_mix_their_files(tmp_path):
    """Two `infer run`s into one --out at once (another budget, say) both wrote records.jsonl and
    metrics.json there, unguarded: one's records ended beside the other's metrics, a pair that
    reads as one result (budget 2's accuracy over budget 64's answers). The second is refused
    with one line (exit 1) while the first holds the folder, as a second build is."""
    from kill_points import held_writing

    evals = eval_file(tmp_path / "e.jsonl", 4)
    out, release = tmp_path / "out", tmp_path / "release"
    with ScriptedServer(thinker()) as server:
        def command(budget: int) -> list[str]:
            return ["infer", "run", "--base-url", server.base_url, "--model", "m", "--eval-sets", f"mine={evals}",
                    "--budget", str(budget), "--no-progress", "--out", str(out)]

        first = held_writing("*metrics*", command(2), release)  # held as it writes its metrics
        deadline = time.monotonic() + 120
        while not Path(f"{release}.held").exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert Path(f"{release}.held").exists(), first.communicate()
        second = runner.invoke(app, command(64))
        release.touch()
        _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert second.exit_code == 1, second.output
    assert "in use by another m1data command" in " ".join(second.output.split())
    metrics = json.loads((out / "metrics.json").read_text())
    stops = {json.loads(line)["stop_reason"] for line in (out / "records.jsonl").read_text().splitlines()}
    assert metrics["config"]["thinking_budget"] == 2 and stops == {"budget"}  # 2 tokens cut every thought short


def test_a_second_run_on_a_cache_in_use_is_refused_and_nothing_is_paid_twice(tmp_path):
    """Two `infer run`s into different --outs sharing one --cache each looked the cache up before
    the other's replies were in it, so both sent, and paid for, the same calls. A named cache is
    held for the run now: the second is refused in one line (exit 1) naming the holder's pid, and
    a run after the holder's end reads its replies from the cache."""
    evals = eval_file(tmp_path / "e.jsonl", 4)
    cache = tmp_path / "shared" / "replies.sqlite"
    with ScriptedServer(thinker(delay=3.0)) as server:
        def command(out: str) -> list[str]:
            return ["infer", "run", "--base-url", server.base_url, "--model", "m", "--eval-sets", f"mine={evals}",
                    "--no-progress", "--cache", str(cache), "--out", str(tmp_path / out)]

        first = subprocess.Popen([*CLI, *command("a")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 env=OFFLINE)
        deadline = time.monotonic() + 120
        while server.count() < 4 and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)  # the four thinking calls on the wire
        second = runner.invoke(app, command("b"))
        _, err = first.communicate(timeout=120)
        assert first.returncode == 0, err
        said = " ".join(second.output.split())
        assert second.exit_code == 1 and f"pid {first.pid}" in said and str(cache) in said, second.output
        assert set(server.sends_per_body().values()) == {1}  # every call paid once
        sent = server.count()
        assert runner.invoke(app, command("b")).exit_code == 0 and server.count() == sent  # all from the cache
    assert sorted(p.name for p in cache.parent.iterdir()) == ["replies.sqlite"]  # no lock file left

def test_the_temporary_file_of_a_write_killed_before_its_rename_is_removed_by_the_next_write(tmp_path):
    """`write_atomic` (metrics.json here; builds.json, a batch log) killed by SIGKILL before its
    rename left its hidden `.metrics.json.PID.tmp` beside the file, and nothing ever removed it
    (only `replacing` cleaned its own). The next write of that file removes a leftover whose
    writer is gone, and leaves one whose writer is alive (this test process's pid stands in)."""
    from kill_points import killed_writing

    evals = eval_file(tmp_path / "e.jsonl", 3)
    out = tmp_path / "out"
    with ScriptedServer(thinker()) as server:
        command = ["infer", "run", "--base-url", server.base_url, "--model", "m", "--eval-sets", f"mine={evals}",
                   "--budget", "8", "--no-progress", "--out", str(out)]
        killed = killed_writing("*metrics.json*", command)
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        dead = [p.name for p in out.iterdir() if p.name.startswith(".metrics.json.")]
        assert len(dead) == 1 and dead[0].endswith(".tmp")
        alive = out / f".metrics.json.{os.getpid()}.tmp"  # a writer still at work: not ours to remove
        alive.write_text("half")
        assert killed_writing("no-such-file", command).returncode == 0
    assert sorted(p.name for p in out.iterdir() if p.name != LOCK_FILE) == [alive.name, "llm_cache.sqlite",
                                                                          "metrics.json", "records.jsonl"]
    assert json.loads((out / "metrics.json").read_text())["n"] == 3
