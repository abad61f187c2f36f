"""The stage runner with a real LLM stage (teacher traces over HTTP to the scripted server): what
a build has paid for survives any crash of the runner, and a transient failure is never written
as a finished stage."""

from __future__ import annotations

import time
from dataclasses import dataclass

import datasets
import pytest
from llm_server import Received, Response, chat, error, llm_server  # noqa: F401

from m1data.llm.limits import RetryPolicy
from m1data.llm.stages import LLMRuntime
from m1data.running.pipeline import Stage, StageFailed, StageIncomplete, StageResult, read_manifests, run_pipeline
from m1data.schema import LETTERS, make_row, rows_to_dataset
from m1data.stages.traces import TeacherTraces, TracesConfig

N_ROWS = 12


def question_rows(n: int = N_ROWS) -> datasets.Dataset:
    rows = [
        make_row(
            source="medqa",
            row_id=f"medqa:{i}",
            question=f"Which drug is first line for condition {i}?",
            options=[f"drug {i}", f"other {i}", f"third {i}", f"fourth {i}"],
            answer_idx=0,
            raw={"n": i},
        )
        for i in range(n)
    ]
    return rows_to_dataset(rows)


ROWS = question_rows()
ANSWER_BY_PROMPT = {p: LETTERS[a] for p, a in zip(ROWS["prompt"], ROWS["answer_idx"])}


@dataclass
class RowsConfig:
    n: int = N_ROWS


class Rows(Stage):
    """A first stage that hands out fixed schema rows."""

    name = "rows"
    reads_rows = True

    def __init__(self, config: RowsConfig | None = None):
        self.config = config or RowsConfig()

    def run(self, rows, ctx):
        return StageResult(rows=question_rows(self.config.n))


def right_answer(req: Received) -> Response:
    prompt = req.text.split("\n", 1)[1]
    return chat(f"The answer is \\boxed{{{ANSWER_BY_PROMPT[prompt]}}}.", reasoning="thinking")


def teacher(server, cache=None, **kwargs) -> TeacherTraces:
    """The teacher stage; `cache`: the reply cache its config names (None: the stage's state folder's)."""
    config = TracesConfig(
        model="teacher",
        base_url=server.base_url,
        api_key_env=None,
        runtime=LLMRuntime(progress=False, retries=RetryPolicy(max_attempts=2, base_delay=0.01),
                           cache_path=None if cache is None else str(cache)),
        **kwargs,
    )
    return TeacherTraces(config)


# ---------------------------------------------------------------------------------------------
# Item 1: the reply cache survives a crash while the stage writes its outputs


def test_a_crash_while_writing_outputs_keeps_the_reply_cache(llm_server, tmp_path, monkeypatch):
    """A full disk (or SIGKILL, or Ctrl-C) after the replies are in, while the stage's parquet
    files are written, must not lose a single paid reply."""
    llm_server.handler = right_answer
    run_pipeline([Rows(), teacher(llm_server)], tmp_path)
    assert llm_server.count() == N_ROWS

    real_to_parquet = datasets.Dataset.to_parquet

    def disk_full(self, path, *args, **kwargs):
        if "01_traces" in str(path):
            raise OSError(28, "No space left on device")
        return real_to_parquet(self, path, *args, **kwargs)

    monkeypatch.setattr(datasets.Dataset, "to_parquet", disk_full)
    with pytest.raises(OSError, match="No space left"):
        run_pipeline([Rows(), teacher(llm_server)], tmp_path, force=True)
    monkeypatch.setattr(datasets.Dataset, "to_parquet", real_to_parquet)

    out = run_pipeline([Rows(), teacher(llm_server)], tmp_path)
    assert llm_server.count() == N_ROWS  # nothing paid twice
    assert len(out) == N_ROWS
    assert not list(tmp_path.glob("*.tmp"))


def test_a_build_in_a_notebook_cell_enters_its_lock_again_while_its_calls_run_on_another_thread(llm_server, tmp_path):
    """A Jupyter cell is synchronous code while the kernel's loop runs: the build holds its folder
    on the cell's thread, around run_pipeline (which takes it again), while its requests run in a
    loop on a thread of their own (`run_sync`). The run lock, re-entrant per thread, lets it through."""
    import asyncio

    from m1data.running.pipeline import run_lock

    llm_server.handler = right_answer

    async def cell():
        with run_lock(tmp_path):  # as `m1data.jobs` holds it around run_pipeline and the export
            return run_pipeline([Rows(), teacher(llm_server)], tmp_path)

    out = asyncio.run(cell())
    assert len(out) == N_ROWS and llm_server.count() == N_ROWS
    assert [m["stage"] for m in read_manifests(tmp_path)] == ["rows", "traces"]


def test_a_cache_left_in_a_tmp_folder_by_a_crash_is_recovered(llm_server, tmp_path):
    """A run folder in the state an earlier version's crash left behind: the stage folder gone,
    the cache moved into NN_stage.tmp. The re-run takes the cache back before deleting .tmp."""
    llm_server.handler = right_answer
    run_pipeline([Rows(), teacher(llm_server)], tmp_path)
    caches = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.sqlite"))
    assert caches == ["cache/01_traces/llm_cache.sqlite"]  # beside the stage folders, not in them

    stranded = tmp_path / "01_traces.tmp"
    stranded.mkdir()
    for path in (tmp_path / "cache" / "01_traces").iterdir():
        path.rename(stranded / path.name)
    for path in (tmp_path / "01_traces").iterdir():
        path.unlink()
    (tmp_path / "01_traces").rmdir()

    run_pipeline([Rows(), teacher(llm_server)], tmp_path)
    assert llm_server.count() == N_ROWS
    assert not stranded.exists()


def test_a_cache_inside_an_old_stage_folder_is_moved_beside_it(llm_server, tmp_path):
    """Run folders made before the cache moved out keep their paid replies."""
    llm_server.handler = right_answer
    run_pipeline([Rows(), teacher(llm_server)], tmp_path)
    for path in (tmp_path / "cache" / "01_traces").iterdir():
        path.rename(tmp_path / "01_traces" / path.name)
    run_pipeline([Rows(), teacher(llm_server)], tmp_path, force=True)
    assert llm_server.count() == N_ROWS
    assert (tmp_path / "cache" / "01_traces" / "llm_cache.sqlite").is_file()
    assert not list((tmp_path / "01_traces").glob("*.sqlite*"))


# ---------------------------------------------------------------------------------------------
# Item 2: a stage with transient failures is not complete


def flaky_for(prompts: set[str], failures: int):
    """503 for the first `failures` sends of the given prompts, then the right answer."""

    def handler(req: Received) -> Response:
        prompt = req.text.split("\n", 1)[1]
        if prompt in prompts and req.attempt <= failures:
            return error(503, "overloaded")
        return right_answer(req)

    return handler


def test_transient_failures_leave_the_stage_incomplete_and_a_rerun_retries_exactly_them(llm_server, tmp_path):
    flaky = set(ROWS["prompt"][-3:])  # not the teacher's preflight sample (the first requests)
    llm_server.handler = flaky_for(flaky, failures=2)  # both attempts of the first run fail
    with pytest.raises(StageIncomplete) as stop:
        run_pipeline([Rows(), teacher(llm_server)], tmp_path)
    assert stop.value.stage == "traces" and stop.value.transient == 3
    assert "3 requests failed transiently" in str(stop.value)
    manifest = read_manifests(tmp_path)[-1]
    assert manifest["stage"] == "traces" and manifest["complete"] is False
    assert manifest["transient_failures"] == 3
    first = llm_server.count()
    assert first == N_ROWS - 3 + 3 * 2

    out = run_pipeline([Rows(), teacher(llm_server)], tmp_path)  # the same command again
    resent = [r.text.split("\n", 1)[1] for r in llm_server.requests[first:]]
    assert sorted(resent) == sorted(flaky)  # exactly the failed ones; the cache answers the rest
    assert len(out) == N_ROWS
    manifest = read_manifests(tmp_path)[-1]
    assert manifest["complete"] is True and manifest["transient_failures"] == 0

    run_pipeline([Rows(), teacher(llm_server)], tmp_path)
    assert llm_server.count() == first + 3  # complete now: skipped


def test_a_later_stage_cannot_start_from_an_incomplete_one(llm_server, tmp_path):
    llm_server.handler = flaky_for(set(ROWS["prompt"][:1]), failures=10)

    class After(Rows):
        name = "after"

        def run(self, rows, ctx):
            return StageResult(rows=rows)

    with pytest.raises(StageIncomplete):
        run_pipeline([Rows(), teacher(llm_server), After()], tmp_path)
    assert [m["stage"] for m in read_manifests(tmp_path)] == ["rows", "traces"]  # stopped there
    with pytest.raises(StageFailed, match="incomplete"):
        run_pipeline([Rows(), teacher(llm_server), After()], tmp_path, start="after")


def test_a_refusal_is_a_recorded_outcome_not_a_transient_failure(llm_server, tmp_path):
    """A 400 (prompt over the context window, say) is the request's answer: the stage is complete."""
    refused = ROWS["prompt"][0]

    def handler(req: Received) -> Response:
        if req.text.split("\n", 1)[1] == refused:
            return error(400, "maximum context length exceeded")
        return right_answer(req)

    llm_server.handler = handler
    out = run_pipeline([Rows(), teacher(llm_server)], tmp_path)
    assert len(out) == N_ROWS - 1 and read_manifests(tmp_path)[-1]["complete"] is True
    run_pipeline([Rows(), teacher(llm_server)], tmp_path)
    assert llm_server.count() == N_ROWS


def test_build_exits_non_zero_while_transient_failures_remain(llm_server, tmp_path, monkeypatch):
    from dataclasses import replace

    from m1data.builders import BUILDERS
    from typer.testing import CliRunner

    from m1data.cli import app

    @dataclass
    class TinyConfig:
        rows: RowsConfig = None  # type: ignore[assignment]

    monkeypatch.setitem(
        BUILDERS, "m23k", replace(BUILDERS["m23k"], config=TinyConfig, stages=lambda cfg: [Rows(), teacher(llm_server)])
    )
    llm_server.handler = flaky_for(set(ROWS["prompt"][-2:]), failures=2)  # outside the preflight sample
    result = CliRunner().invoke(app, ["build", "m23k", "--out", str(tmp_path / "run")])
    assert result.exit_code == 1, result.output
    assert "2 requests failed transiently" in result.output.replace("\n", " ")
    assert not (tmp_path / "run" / "hub").exists()  # nothing half-done is exported

    again = CliRunner().invoke(app, ["build", "m23k", "--out", str(tmp_path / "run"), "--hub-config", "m23k-tiny"])
    assert again.exit_code == 0, again.output
    assert (tmp_path / "run" / "hub" / "data" / "m23k-tiny").is_dir()  # the config name was settable


# ---------------------------------------------------------------------------------------------
# Item 7: credentials in a base_url are never recorded (issue 23 item 3: nor sent; refused)


def test_credentials_in_a_base_url_stop_the_build_before_anything_is_sent(llm_server, tmp_path, capfd, shown_output):
    """A config edited after the stage was built (or read from an older run) still cannot send
    them: the run stops before the stage with a line that names neither user nor password."""
    from m1data.errors import UserError

    llm_server.handler = right_answer
    stage = teacher(llm_server)
    stage.config.base_url = llm_server.base_url.replace("http://", "http://alice:pw-hunter2-xyz@")
    with pytest.raises(UserError, match="carries credentials") as err:
        run_pipeline([Rows(), stage], tmp_path / "run")
    assert "pw-hunter2-xyz" not in str(err.value) and "alice" not in str(err.value)
    assert len(llm_server.all_requests) == 0
    for path in (tmp_path / "run").rglob("*"):
        if path.is_file():
            assert b"pw-hunter2-xyz" not in path.read_bytes(), path
    out, err_text = capfd.readouterr()
    assert "pw-hunter2-xyz" not in out + err_text


# ---------------------------------------------------------------------------------------------
# Issue 23 item 2: a stage result that keeps no rows survives pickling (what a Ray block returns)


def test_added_columns_then_no_rows_selected_survive_pickling():
    """The three-line reproduction: `datasets` holds this selection as a concatenation of no
    blocks, which writes but does not unpickle (ArrowInvalid); `in_memory` gives a plain table."""
    import pickle

    from m1data.running.pipeline import in_memory

    empty = datasets.Dataset.from_dict({"a": [1, 2]}).add_column("b", ["x", "y"]).select([])
    back = pickle.loads(pickle.dumps(in_memory(empty)))
    assert len(back) == 0 and back.column_names == ["a", "b"]


def test_a_stage_that_keeps_no_rows_returns_a_result_that_pickles(llm_server, tmp_path):
    import pickle

    from m1data.running.pipeline import RunContext

    llm_server.handler = lambda req: chat("The answer is \\boxed{Z}.", reasoning="thinking")  # never right
    ctx = RunContext(run_dir=tmp_path, stage_dir=tmp_path)
    result = teacher(llm_server).run(question_rows(), ctx)
    assert len(result.rows) == 0 and len(result.dropped) == N_ROWS
    back = pickle.loads(pickle.dumps(result))
    assert len(back.rows) == 0 and back.rows.column_names == result.rows.column_names
    assert back.dropped.to_list() == result.dropped.to_list()


def test_a_second_build_on_a_configured_cache_in_use_is_refused_and_nothing_is_paid_twice(llm_server, tmp_path):
    """Two builds into different run folders whose configs name one `cache_path` each looked the
    cache up before the other's replies were in it, so both sent, and paid for, the same requests.
    A build holds the caches its stages name while it runs: the second is refused at once, and a
    build after the first's end reads every reply from the cache."""
    import os
    import threading

    from m1data.running.pipeline import RunLocked

    llm_server.handler = lambda req: Response(**{**vars(right_answer(req)), "delay": 3.0})
    cache = tmp_path / "shared" / "replies.sqlite"
    failed = []

    def first():
        try:
            run_pipeline([Rows(), teacher(llm_server, cache=cache)], tmp_path / "a")
        except BaseException as err:  # noqa: BLE001 (reported below, in the test's thread)
            failed.append(err)

    holder = threading.Thread(target=first)
    holder.start()
    try:
        deadline = time.monotonic() + 60
        while llm_server.count() < N_ROWS and holder.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)  # every request on the wire
        with pytest.raises(RunLocked, match=f"pid {os.getpid()}") as err:
            run_pipeline([Rows(), teacher(llm_server, cache=cache)], tmp_path / "b")
        assert str(cache) in str(err.value) and "\n" not in str(err.value)
    finally:
        holder.join(60)
    assert failed == [] and set(llm_server.sends_per_body().values()) == {1}  # every request paid once
    assert len(run_pipeline([Rows(), teacher(llm_server, cache=cache)], tmp_path / "b")) == N_ROWS
    assert llm_server.count() == N_ROWS  # the second build's replies all came from the cache
    assert sorted(p.name for p in cache.parent.iterdir()) == ["replies.sqlite"]  # no lock file left
