import json
from dataclasses import dataclass

import datasets
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_cli import main  # noqa: F401 (the fixture: the installed entry point, in this process)

from m1data.errors import UserError
from m1data.running.funnel import funnel_markdown, lineage
from m1data.running.pipeline import (
    CorruptRunFile,
    Stage,
    StageFailed,
    StageResult,
    check_rows,
    read_manifests,
    run_pipeline,
)

CALLS: list[str] = []


@dataclass
class MakeConfig:
    n: int = 6


class Make(Stage):
    name = "make"
    reads_rows = True

    def __init__(self, config=None):
        self.config = config or MakeConfig()

    def run(self, rows, ctx):
        CALLS.append(self.name)
        ids = [f"medqa:{i}" if i % 2 else f"headqa:{i}" for i in range(self.config.n)]
        rows = datasets.Dataset.from_dict({"id": ids, "source": [i.split(":")[0] for i in ids]})
        dropped = datasets.Dataset.from_dict({"id": ["headqa:x"], "source": ["headqa"], "reason": ["needs_image"]})
        return StageResult(rows=rows, dropped=dropped)


@dataclass
class DropConfig:
    every: int = 3


class DropSome(Stage):
    name = "drop"

    def __init__(self, config=None, fail=False):
        self.config = config or DropConfig()
        self.fail = fail

    def run(self, rows, ctx):
        CALLS.append(self.name)
        if self.fail:
            raise RuntimeError("provider down")
        keep = [i % self.config.every != 0 for i in range(len(rows))]
        kept = rows.select([i for i, k in enumerate(keep) if k])
        gone = rows.select([i for i, k in enumerate(keep) if not k])
        gone = gone.add_column("reason", ["too_easy"] * len(gone)).add_column("detail", ["x"] * len(gone))
        return StageResult(rows=kept, dropped=gone, stats={"by_eval_set": {"mmlu": 2},
                                                          "eval_items": {"mmlu": 9, "gpqa": 4},
                                                          "eval_items_unscored": {"mmlu": 3},
                                                          # as runs made before `min_share` wrote it
                                                          "ngram_check": {"n": 8, "common_ngram_rows": 3, "flagged": 25,
                                                                          "both": 2, "ngram_only": 23, "fuzzy_only": 0,
                                                                          "ngram_only_rows": NGRAM_ONLY}})


NGRAM_ONLY = [{"id": f"medqa:{i}", "eval_set": "mmlu", "eval_id": f"mmlu:{i}"} for i in range(23)]


@pytest.fixture(autouse=True)
def clear_calls():
    CALLS.clear()


def test_run_writes_outputs_and_skips_on_rerun(tmp_path):
    out = run_pipeline([Make(), DropSome()], tmp_path)
    assert len(out) == 4 and CALLS == ["make", "drop"]
    manifests = read_manifests(tmp_path)
    assert [m["stage"] for m in manifests] == ["make", "drop"]
    assert manifests[1]["counts_in"] == {"headqa": 3, "medqa": 3}
    assert manifests[1]["drops"] == {"too_easy": {"headqa": 1, "medqa": 1}}
    assert manifests[1]["input_fingerprint"] != manifests[0]["input_fingerprint"]
    CALLS.clear()
    again = run_pipeline([Make(), DropSome()], tmp_path)
    assert CALLS == [] and again["id"] == out["id"]


def test_config_change_reruns_that_stage_and_later(tmp_path):
    run_pipeline([Make(), DropSome()], tmp_path)
    CALLS.clear()
    run_pipeline([Make(MakeConfig(n=9)), DropSome()], tmp_path)
    assert CALLS == ["make", "drop"]
    CALLS.clear()
    out = run_pipeline([Make(MakeConfig(n=9)), DropSome(DropConfig(every=2))], tmp_path)
    assert CALLS == ["drop"] and len(out) == 4


def test_failure_leaves_earlier_stages_intact(tmp_path):
    with pytest.raises(RuntimeError, match="provider down"):
        run_pipeline([Make(), DropSome(fail=True)], tmp_path)
    assert [m["stage"] for m in read_manifests(tmp_path)] == ["make"]
    assert not (tmp_path / "01_drop" / "manifest.json").exists()
    CALLS.clear()
    run_pipeline([Make(), DropSome()], tmp_path)
    assert CALLS == ["drop"]


def test_from_and_until(tmp_path):
    run_pipeline([Make(), DropSome()], tmp_path, until="make")
    assert CALLS == ["make"]
    with pytest.raises(StageFailed):
        run_pipeline([Make(), DropSome()], tmp_path / "other", start="drop")
    CALLS.clear()
    run_pipeline([Make(), DropSome()], tmp_path)
    CALLS.clear()
    run_pipeline([Make(), DropSome()], tmp_path, start="drop")
    assert CALLS == ["drop"]
    with pytest.raises(ValueError, match="no stage named"):
        run_pipeline([Make()], tmp_path, until="nope")


def test_funnel_and_lineage(tmp_path):
    run_pipeline([Make(), DropSome()], tmp_path)
    table = funnel_markdown(tmp_path)
    assert "| stage | medqa | headqa | total |" in table
    assert "| raw rows read | 3 | 4 | 7 |" in table
    assert "| after drop | 2 | 2 | 4 |" in table
    assert "| drop: too_easy | 1 | 1 | 2 |" in table
    # every set matched against, with its questions whose answer key is broken (issue 24)
    assert "| drop | mmlu | 9 | 3 | 2 |" in table and "| drop | gpqa | 4 | 0 | 0 |" in table
    assert "| drop | 8 | 3 | any | 25 | 2 | 23 | 0 |" in table  # an old run's n-gram check: any shared n-gram
    # the rows to inspect: the first 20, and where the other 3 are
    assert "| drop | medqa:0 | mmlu | mmlu:0 |" in table and "| drop | medqa:19 | mmlu | mmlu:19 |" in table
    assert "medqa:20 |" not in table and "| drop | and 3 more: stats.ngram_check.ngram_only_rows in its manifest.json" in table
    assert lineage(tmp_path, "medqa:1") == [{"stage": "make", "status": "kept"}, {"stage": "drop", "status": "kept"}]
    assert lineage(tmp_path, "headqa:0") == [
        {"stage": "make", "status": "kept"},
        {"stage": "drop", "status": "dropped", "reason": "too_easy", "detail": "x"},
    ]
    assert lineage(tmp_path, "headqa:x") == [{"stage": "make", "status": "dropped", "reason": "needs_image"}]


class AllOutOfScope(Make):
    """A load whose every record a split filter left out: no row, kept or dropped."""

    name = "scoped"

    def run(self, rows, ctx):
        empty = datasets.Dataset.from_dict({"id": [], "source": []})
        return StageResult(rows=empty, stats={"sources": {"pubmedqa": {"out_of_scope": {"another split": 5}}}})


def test_a_funnel_without_rows_still_counts_the_records_left_out(tmp_path):
    """Their source is a column (it had none: a header of three cells over a rule of two), and
    the funnel is a table, not the line of a run that read nothing at all."""
    run_pipeline([AllOutOfScope(), DropSome()], tmp_path)
    table = funnel_markdown(tmp_path)
    assert "| stage | pubmedqa | total |\n|---|---|---|" in table
    assert "| scoped: left out of scope (another split) | 5 | 5 |" in table and "No rows" not in table


def test_dropped_rows_need_reason_columns(tmp_path):
    class Bad(Make):
        name = "bad"

        def run(self, rows, ctx):
            result = super().run(rows, ctx)
            result.dropped = result.dropped.remove_columns("reason")
            return result

    with pytest.raises(StageFailed, match="reason"):
        run_pipeline([Bad()], tmp_path)


def test_preflight_stops_before_a_stage_that_cannot_run(tmp_path):
    from m1data.running.pipeline import StageNotReady

    class NeedsModel(DropSome):
        name = "needs_model"

        def preflight(self):
            return "cannot reach http://127.0.0.1:9/v1"

    with pytest.raises(StageNotReady, match="needs_model") as err:
        run_pipeline([Make(), NeedsModel()], tmp_path)
    assert "127.0.0.1:9" in err.value.problem
    assert CALLS == ["make"] and [m["stage"] for m in read_manifests(tmp_path)] == ["make"]


# ---------------------------------------------------------------------------------------------
# Zero rows is a valid outcome


class DropAll(DropSome):
    name = "drop_all"

    def run(self, rows, ctx):
        CALLS.append(self.name)
        gone = rows.add_column("reason", ["too_easy"] * len(rows))
        return StageResult(rows=rows.select([]), dropped=gone)


class NeedsEndpoint(DropSome):
    name = "llm"

    def preflight(self):
        return "cannot reach http://127.0.0.1:9/v1"


def test_a_stage_with_zero_rows_out_is_written_and_later_stages_have_nothing_to_do(tmp_path, capsys, shown_output):
    out = run_pipeline([Make(), DropAll(), NeedsEndpoint(), DropSome()], tmp_path)
    assert len(out) == 0 and CALLS == ["make", "drop_all"]  # no endpoint needed for nothing
    manifests = read_manifests(tmp_path)
    assert [m["rows_out"] for m in manifests] == [6, 0, 0, 0]
    assert manifests[2]["stats"] == {"nothing_to_do": "no input rows"}
    assert "nothing to do" in capsys.readouterr().err
    CALLS.clear()
    again = run_pipeline([Make(), DropAll(), NeedsEndpoint(), DropSome()], tmp_path)  # re-runs are not wedged
    assert len(again) == 0 and CALLS == []
    assert "| after drop_all | 0 | 0 | 0 |" in funnel_markdown(tmp_path)
    assert lineage(tmp_path, "medqa:1") == [
        {"stage": "make", "status": "kept"},
        {"stage": "drop_all", "status": "dropped", "reason": "too_easy"},
    ]


def empty_rows_file(tmp_path):
    from m1data.reading.readers import write_rows
    from m1data.schema import make_row, rows_to_dataset

    row = make_row(source="medqa", row_id="medqa:0", question="Q?", options=["a", "b"], answer_idx=0, raw={})
    return write_rows(rows_to_dataset([row]).select([]), tmp_path / "empty.parquet")


@pytest.mark.parametrize(
    "command",
    [
        ["run", "traces", "{in}", "{out}", "--base-url", "http://127.0.0.1:9/v1", "--model", "teacher"],
        ["dedup", "{in}", "{out}"],
    ],
)
def test_file_commands_on_zero_rows_say_there_is_nothing_to_do(tmp_path, command):
    from typer.testing import CliRunner

    from m1data.cli import app
    from m1data.reading.readers import read_rows

    source, target = empty_rows_file(tmp_path), tmp_path / "out.parquet"
    args = [a.format(**{"in": source, "out": target}) for a in command]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.exception is None
    assert len(read_rows(target)) == 0


def test_build_that_ends_with_zero_rows_says_so(tmp_path, monkeypatch):
    from dataclasses import replace

    from m1data.builders import BUILDERS
    from typer.testing import CliRunner

    from m1data.cli import app

    fake = replace(BUILDERS["m1k"], config=MakeConfig, stages=lambda cfg: [Make(), DropAll()])
    monkeypatch.setitem(BUILDERS, "m1k", fake)
    for _ in range(2):  # the second run finds the run folder as the first left it
        result = CliRunner().invoke(app, ["build", "m1k", "--out", str(tmp_path / "run")])
        assert result.exit_code == 0, result.output
        assert "0 rows" in result.output and "no Hub folder" in result.output
    assert not (tmp_path / "run" / "hub").exists()


def test_a_corrupt_manifest_is_an_error_naming_the_file(tmp_path):
    run_pipeline([Make(), DropSome()], tmp_path)
    broken = tmp_path / "01_drop" / "manifest.json"
    broken.write_text('{"stage": "drop", "index"')
    for action in (lambda: run_pipeline([Make(), DropSome()], tmp_path), lambda: funnel_markdown(tmp_path)):
        with pytest.raises(ValueError, match=str(broken)) as err:
            action()
        assert "not valid JSON" in str(err.value)


@pytest.mark.parametrize("content, missing", [
    ("{}", "'stage'"),
    ("[]", "a JSON object"),
    ('{"stage": "drop"}', "'index'"),
    ("manifest without its output_fingerprint", "'output_fingerprint'"),
])
def test_a_manifest_without_its_keys_is_the_same_one_line_error_through_the_cli(tmp_path, monkeypatch, main,
                                                                                content, missing):
    """A manifest that was valid JSON but lacked keys (`{}`, `{"stage": "drop"}`) made `m1data
    funnel` and `m1data build --from` die with a KeyError traceback, reported as an internal
    error; it is a damaged run file, like a manifest cut short: one line naming the file, the
    missing key and what to do."""
    from dataclasses import replace

    from m1data.builders import BUILDERS

    monkeypatch.setitem(BUILDERS, "m1k", replace(BUILDERS["m1k"], config=MakeConfig,
                                                 stages=lambda cfg: [Make(), DropSome()]))
    run = tmp_path / "run"
    build = ["build", "m1k", "--out", run, "--hub-out", tmp_path / "hub"]
    assert main(*build).returncode == 0
    broken = run / "00_make" / "manifest.json"
    if content.startswith("manifest"):
        manifest = json.loads(broken.read_text())
        del manifest["output_fingerprint"]
        content = json.dumps(manifest)
    broken.write_text(content)
    for command in (["funnel", run], [*build, "--from", "drop"]):
        result = main(*command)
        said = result.stdout + result.stderr
        assert result.returncode == 2, said
        assert "internal error" not in said and "Traceback" not in said
        message = " ".join(said.split())  # the terminal may wrap the line
        assert str(broken) in message and missing in message and f"delete {run / '00_make'}" in message


# ---------------------------------------------------------------------------------------------
# One build at a time; outputs changed by hand are noticed


def test_a_second_build_into_the_same_run_folder_is_refused(tmp_path):
    import subprocess
    import sys

    from m1data.running.pipeline import RunLocked

    holder = subprocess.Popen(
        [sys.executable, "-c",
         ("import sys, time\nfrom m1data.running.pipeline import run_lock\n"
          "with run_lock(sys.argv[1]):\n    print('locked', flush=True)\n    time.sleep(60)\n"),
         str(tmp_path)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLocked, match=f"pid {holder.pid}") as err:
            run_pipeline([Make(), DropSome()], tmp_path)
        assert str(tmp_path) in str(err.value) and "another build" in str(err.value)
        assert CALLS == [] and read_manifests(tmp_path) == []
    finally:
        holder.kill()
        holder.wait()
    run_pipeline([Make(), DropSome()], tmp_path)  # the holder is gone: the lock went with it
    assert CALLS == ["make", "drop"]


def test_the_lock_is_reentrant_within_one_process(tmp_path):
    from m1data.running.pipeline import run_lock

    with run_lock(tmp_path):
        run_pipeline([Make()], tmp_path)  # a build holds the lock around run_pipeline and export
    assert CALLS == ["make"]


def test_a_file_run_in_another_thread_is_refused_the_out_this_thread_holds(tmp_path):
    """The OUT lock was re-entrant per process: two threads' file runs into one OUT both went
    ahead and raced (one lost OUT to the other's clean-up, FileNotFoundError). Only the holding
    thread may enter again; another thread is refused, as another process is."""
    import threading

    from m1data.running.pipeline import RunLocked, output_lock

    out = tmp_path / "out.parquet"
    held, done, said = threading.Event(), threading.Event(), []

    def hold():
        with output_lock(out):
            with output_lock(out):  # the holding thread enters again (an LLM run: server, then run_on_file)
                held.set()
                done.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(10)
        with pytest.raises(RunLocked, match="being written by another file run") as err:
            with output_lock(out):
                said.append("entered")
        assert said == [] and str(out) in str(err.value)
    finally:
        done.set()
        holder.join()
    with output_lock(out):  # released with its holder
        said.append("entered")
    assert said == ["entered"] and list(tmp_path.iterdir()) == []


def test_a_file_run_that_wrote_nothing_leaves_none_of_the_folders_it_made(tmp_path):
    """OUT n1/n2/out.parquet, neither folder there yet, and an input that is not there: the run
    stopped in one line but left n1 behind (only OUT's own folder was taken away again)."""
    from m1data.jobs import run_dedup_file

    with pytest.raises(FileNotFoundError, match="no such file"):  # the CLI's one line
        run_dedup_file(tmp_path / "missing.parquet", tmp_path / "n1" / "n2" / "out.parquet")
    assert list(tmp_path.iterdir()) == []


class WaitingMake(Make):
    """Make, held open until told to go on: a build still running while another starts."""

    def __init__(self, started, go):
        super().__init__()
        self.started, self.go = started, go

    def run(self, rows, ctx):
        self.started.set()
        assert self.go.wait(30)
        return super().run(rows, ctx)


def test_a_second_build_from_another_thread_into_the_same_run_folder_is_refused(tmp_path):
    """The run lock was re-entrant per process: a build started from a second thread into the
    folder a first thread's build held went ahead, and both wrote the same stage folders. Only
    the holding thread enters again now; another thread is refused, as another process is."""
    import os
    import threading

    from m1data.running.pipeline import RunLocked

    started, go, failed = threading.Event(), threading.Event(), []

    def first():
        try:
            run_pipeline([WaitingMake(started, go), DropSome()], tmp_path)
        except BaseException as err:  # noqa: BLE001 (reported below, in the test's thread)
            failed.append(err)

    holder = threading.Thread(target=first)
    holder.start()
    try:
        assert started.wait(30)
        with pytest.raises(RunLocked, match=f"pid {os.getpid()}") as err:
            run_pipeline([Make(), DropSome()], tmp_path)
        assert str(tmp_path) in str(err.value) and "another build" in str(err.value)
        assert CALLS == []  # the refused build ran nothing (the holder's stage is still waiting)
    finally:
        go.set()
        holder.join(60)
    assert failed == [] and CALLS == ["make", "drop"]
    run_pipeline([Make(), DropSome()], tmp_path)  # released with its holder: the finished build is kept
    assert CALLS == ["make", "drop"] and len(read_manifests(tmp_path)) == 2


class RemovesTheRunFolder(DropSome):
    """A stage during which the run folder is deleted (by hand, a clean-up job, a lost mount)."""

    name = "vanish"

    def run(self, rows, ctx):
        import shutil

        shutil.rmtree(ctx.run_dir)
        return super().run(rows, ctx)


def test_a_run_folder_removed_during_a_build_stops_it(tmp_path):
    """The build used to write on into a folder it made anew: it ended with no error, holding the
    later stages only, no build record and no lock file (a second build could start beside it),
    and its funnel began mid-pipeline. Now it stops, naming the folder, and writes nothing there."""
    from m1data.running.pipeline import RunFolderGone

    run_dir = tmp_path / "run"
    with pytest.raises(RunFolderGone, match=f"{run_dir} was removed or replaced"):
        run_pipeline([Make(), RemovesTheRunFolder(), DropSome()], run_dir)
    assert not run_dir.exists()
    run_pipeline([Make(), DropSome()], run_dir)  # a folder made again is a run folder like any other
    assert [m["stage"] for m in read_manifests(run_dir)] == ["make", "drop"]


def test_a_full_disk_while_a_stage_is_written_is_one_error_naming_it(tmp_path, monkeypatch):
    """A full disk (ENOSPC) mid-write came out as pyarrow's bare "[Errno 28] No space left on
    device", which names no file, and the CLI called it a bug; its half-written parquet stayed in
    NN_name.tmp, holding the space. Now: a StorageError naming the stage folder and what to do, no
    partial file, the earlier stages untouched, and the same build again finishes."""
    import errno

    from m1data.errors import StorageError

    run_pipeline([Make()], tmp_path)
    before = (tmp_path / "00_make" / "rows.parquet").read_bytes()
    real = datasets.Dataset.to_parquet

    def disk_full(self, path, *args, **kwargs):
        with open(path, "wb") as handle:
            handle.write(b"PAR1 half a file")
        raise OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space left on device")

    monkeypatch.setattr(datasets.Dataset, "to_parquet", disk_full)
    with pytest.raises(StorageError, match=f"cannot write {tmp_path / '01_drop'}: No space left on device") as err:
        run_pipeline([Make(), DropSome()], tmp_path)
    assert "free some space" in str(err.value) and "run the same command again" in str(err.value)
    assert not (tmp_path / "01_drop.tmp").exists() and not (tmp_path / "01_drop" / "manifest.json").exists()
    assert (tmp_path / "00_make" / "rows.parquet").read_bytes() == before
    monkeypatch.setattr(datasets.Dataset, "to_parquet", real)
    CALLS.clear()
    run_pipeline([Make(), DropSome()], tmp_path)
    assert CALLS == ["drop"] and [m["stage"] for m in read_manifests(tmp_path)] == ["make", "drop"]


def test_a_stage_output_changed_by_hand_is_named_when_a_later_stage_reads_it(tmp_path):
    from m1data.publishing.export import export_run
    from m1data.running.pipeline import CorruptRunFile

    run_pipeline([Make(), DropSome()], tmp_path)
    edited = tmp_path / "00_make" / "rows.parquet"
    rows = datasets.Dataset.from_parquet(str(edited))
    rows.map(lambda r: {"source": "medmcqa"}).to_parquet(str(edited))
    with pytest.raises(CorruptRunFile, match=str(edited)) as err:
        run_pipeline([Make(), DropSome()], tmp_path)
    assert "changed since" in str(err.value)

    run_pipeline([Make(), DropSome()], tmp_path, force=True)
    last = tmp_path / "01_drop" / "rows.parquet"
    datasets.Dataset.from_parquet(str(last)).select([0]).to_parquet(str(last))
    with pytest.raises(CorruptRunFile, match=str(last)):
        export_run("m23k", tmp_path, tmp_path / "hub")


def test_a_damaged_dropped_file_is_named_not_read(tmp_path):
    """dropped.parquet had no fingerprint: a truncated one went unnoticed by every re-run (the
    stage was skipped), and the lineage of a dropped row then died in pyarrow with a traceback
    ("Parquet magic bytes not found") naming no file. Now it is checked as rows.parquet is."""
    run_pipeline([Make(), DropSome()], tmp_path)
    damaged = tmp_path / "01_drop" / "dropped.parquet"
    damaged.write_bytes(damaged.read_bytes()[:100])
    with pytest.raises(CorruptRunFile, match=str(damaged)) as err:
        run_pipeline([Make(), DropSome()], tmp_path)
    assert "changed since" in str(err.value) and "delete" in str(err.value)
    with pytest.raises(CorruptRunFile, match=str(damaged)):
        lineage(tmp_path, "headqa:0")
    damaged.unlink()
    with pytest.raises(CorruptRunFile, match=f"{damaged} is missing"):
        lineage(tmp_path, "headqa:0")
    run_pipeline([Make(), DropSome()], tmp_path, start="drop")  # what the message says: written again
    assert lineage(tmp_path, "headqa:0")[-1]["reason"] == "too_easy"


def test_each_output_file_is_hashed_once_per_build_and_per_lineage(tmp_path, monkeypatch):
    """A stage's files were hashed twice: after a stage was written, load_stage_rows hashed the
    rows.parquet and dropped.parquet whose digests had just been taken for its manifest; and the
    lineage hashed dropped.parquet in load_stage_rows and again in load_stage_dropped. Each is
    still checked (test_a_damaged_dropped_file_is_named_not_read), once."""
    import m1data.running.pipeline as pipeline

    hashed = []
    real = pipeline.file_digest
    monkeypatch.setattr(pipeline, "file_digest", lambda path: hashed.append(f"{path.parent.name}/{path.name}")
                        or real(path))
    run_pipeline([Make(), DropSome()], tmp_path)
    assert sorted(hashed) == ["00_make.tmp/dropped.parquet", "00_make.tmp/rows.parquet",
                              "01_drop.tmp/dropped.parquet", "01_drop.tmp/rows.parquet"]
    hashed.clear()
    run_pipeline([Make(), DropSome()], tmp_path)  # both skipped: each file checked once
    assert sorted(hashed) == ["00_make/dropped.parquet", "00_make/rows.parquet",
                              "01_drop/dropped.parquet", "01_drop/rows.parquet"]
    hashed.clear()
    assert lineage(tmp_path, "headqa:0")[-1]["reason"] == "too_easy"
    assert sorted(hashed) == ["00_make/dropped.parquet", "00_make/rows.parquet",
                              "01_drop/dropped.parquet", "01_drop/rows.parquet"]


# ---------------------------------------------------------------------------------------------
# A build that stops early is not a success; two builds never share a Hub folder silently


@pytest.mark.parametrize("flags, code", [([], 1), (["--allow-partial"], 0)])
def test_a_build_stopped_before_an_llm_stage_exits_non_zero_unless_allowed(tmp_path, monkeypatch, flags, code):
    from dataclasses import replace

    from m1data.builders import BUILDERS
    from typer.testing import CliRunner

    from m1data.cli import app

    fake = replace(BUILDERS["m1k"], config=MakeConfig, stages=lambda cfg: [Make(), NeedsEndpoint()])
    monkeypatch.setitem(BUILDERS, "m1k", fake)
    result = CliRunner().invoke(app, ["build", "m1k", "--out", str(tmp_path / "run"), *flags])
    assert result.exit_code == code, result.output
    assert "127.0.0.1:9" in result.output and "run the same command again" in result.output
    assert [m["stage"] for m in read_manifests(tmp_path / "run")] == ["make"]
    assert not (tmp_path / "run" / "hub").exists()


def test_a_build_refuses_a_hub_folder_holding_another_datasets_export(tmp_path, monkeypatch):
    from dataclasses import replace

    from m1data.builders import BUILDERS
    from typer.testing import CliRunner

    from m1data.cli import app
    from m1data.publishing.export import hub_folder_dataset

    hub = tmp_path / "run" / "hub"
    hub.mkdir(parents=True)
    card = "---\npretty_name: m23K\nm1data_build: m23k\n---\n# m23K\n"
    (hub / "README.md").write_text(card)
    assert hub_folder_dataset(hub) == "m23k" and hub_folder_dataset(tmp_path) is None
    fake = replace(BUILDERS["m1k"], config=MakeConfig, stages=lambda cfg: [Make()])
    monkeypatch.setitem(BUILDERS, "m1k", fake)
    result = CliRunner().invoke(app, ["build", "m1k", "--out", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert "holds the m23k build" in result.output and "--hub-out" in result.output
    assert CALLS == [] and (hub / "README.md").read_text(encoding="utf-8") == card  # refused before any stage ran


class Other(Make):
    name = "other"


def test_manifests_are_the_last_builds_stages(tmp_path):
    """Two builds in one folder (m23K and m1K may share one): the manifests read back, and so the
    funnel and the export, are those of the build that ran last; `upto` reads another build's
    stages up to one of them (the m23K stage a re-sampled m1K was drawn from)."""
    run_pipeline([Make(), DropSome()], tmp_path)
    run_pipeline([Other()], tmp_path)
    assert [m["stage"] for m in read_manifests(tmp_path)] == ["other"]
    assert "too_easy" not in funnel_markdown(tmp_path)
    assert [m["stage"] for m in read_manifests(tmp_path, upto="01_drop")] == ["make", "drop"]
    run_pipeline([Make(), DropSome()], tmp_path)  # skipped: both stages are still there
    assert [m["stage"] for m in read_manifests(tmp_path)] == ["make", "drop"]
    assert [m["stage"] for m in read_manifests(tmp_path, upto="00_make")] == ["make"]
    (tmp_path / "builds.json").write_text("{", encoding="utf-8")
    with pytest.raises(CorruptRunFile, match="builds.json is not a build record"):
        read_manifests(tmp_path)


def test_a_build_record_cut_short_is_set_aside_by_the_next_build(tmp_path, caplog):
    """The error for an unreadable builds.json says "run the build again to rewrite it", but the
    build read the record before rewriting it and stopped with the same error, every time. Now
    the build moves the bad record aside (kept, named in a warning) and starts a new one."""
    run_pipeline([Make(), DropSome()], tmp_path)
    CALLS.clear()
    record = tmp_path / "builds.json"
    cut = record.read_text(encoding="utf-8")[:20]
    record.write_text(cut, encoding="utf-8")
    with pytest.raises(CorruptRunFile, match="run the build again"):
        funnel_markdown(tmp_path)
    with caplog.at_level("WARNING", logger="m1data"):
        run_pipeline([Make(), DropSome()], tmp_path)
    assert CALLS == [] and [m["stage"] for m in read_manifests(tmp_path)] == ["make", "drop"]  # stages kept
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("builds.json.unreadable-")]
    assert len(aside) == 1 and aside[0].read_text(encoding="utf-8") == cut
    assert aside[0].name in caplog.text


def test_manifests_end_where_the_build_stopped(tmp_path):
    """A build that stops earlier than the last one (`until`, a stage not ready) leaves the later
    stages of the last one in the folder, written from rows that are gone: the manifests read
    back, and so the funnel and lineage, end at the last stage this build wrote."""
    run_pipeline([Make(), DropSome()], tmp_path)
    run_pipeline([Make(MakeConfig(n=9)), DropSome()], tmp_path, until="make")
    assert [m["stage"] for m in read_manifests(tmp_path)] == ["make"]
    assert "after drop" not in funnel_markdown(tmp_path)
    assert [step["stage"] for step in lineage(tmp_path, "medqa:1")] == ["make"]
    run_pipeline([Make(MakeConfig(n=9)), DropSome()], tmp_path)  # drop runs again on the new rows
    assert [m["stage"] for m in read_manifests(tmp_path)] == ["make", "drop"]


def test_until_before_from_is_refused(tmp_path):
    """`--from drop --until make` would run nothing and report a build stopped "as asked"."""
    run_pipeline([Make(), DropSome()], tmp_path)
    CALLS.clear()
    with pytest.raises(UserError, match="comes before --from"):
        run_pipeline([Make(), DropSome()], tmp_path, start="drop", until="make")
    run_pipeline([Make(), DropSome()], tmp_path, start="drop", until="drop")
    assert CALLS == ["drop"]


@pytest.mark.parametrize(("fault", "says"), [("lose", "6 in, 5 kept + 0 dropped; 1 neither kept nor dropped"),
                                             ("repeat", "6 in, 7 kept + 0 dropped; 1 not in its input or there twice"),
                                             ("both", "both kept and dropped 1 row id(s) (6 in, 6 kept + 1 dropped)")])
def test_a_stage_that_loses_track_of_a_row_is_refused_and_not_recorded(tmp_path, fault, says):
    """Rows in = rows kept + rows dropped, id by id, checked where a stage's result is recorded:
    a stage that loses a row, keeps one twice, or keeps and drops one is one line naming it and
    its counts, and the run folder has no record of it (a re-run runs it again)."""
    from stage_doubles import LosesTrack

    with pytest.raises(StageFailed) as err:
        run_pipeline([Make(), LosesTrack(fault)], tmp_path)
    assert str(err.value).startswith("stage 'faulty' ") and says in str(err.value) and "\n" not in str(err.value)
    assert [m["stage"] for m in read_manifests(tmp_path)] == ["make"]
    assert not (tmp_path / "01_faulty" / "manifest.json").exists() and not (tmp_path / "01_faulty.tmp").exists()


def test_rows_from_no_input_or_a_reader_given_rows_are_refused(tmp_path):
    """A stage that makes rows out of nothing must say it reads them (`reads_rows`); a reader
    handed the previous stage's rows would lose them."""

    class Undeclared(Make):
        reads_rows = False

    with pytest.raises(StageFailed, match=r"stage 'make' made rows out of no input \(0 in, 6 kept \+ 1 dropped\)"):
        run_pipeline([Undeclared()], tmp_path / "a")

    class Reader(DropSome):
        reads_rows = True

    with pytest.raises(StageFailed, match=r"stage 'drop' reads its rows from elsewhere.*the 6 rows handed to it"):
        run_pipeline([Make(), Reader()], tmp_path / "b")
    assert [m["stage"] for m in read_manifests(tmp_path / "b")] == ["make"]


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 12), data=st.data())
def test_any_partition_into_kept_and_dropped_passes_and_any_slip_is_refused(n, data):
    """Every way of keeping some rows and dropping the rest (in any order, superseded tries
    beside them) accounts for the input; losing, repeating or both keeping and dropping any one
    row does not."""
    from m1data.running.pipeline import SUPERSEDED, account_kept_or_dropped, dropped_rows

    rows = datasets.Dataset.from_dict({"id": [f"medqa:{i}" for i in range(n)], "source": ["medqa"] * n})
    keep = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
    order = data.draw(st.permutations(range(n)))
    kept = rows.select([i for i in order if keep[i]])
    gone = rows.select([i for i in order if not keep[i]])
    tries = data.draw(st.lists(st.integers(0, n - 1), max_size=3)) if n else []
    past = rows.select(tries)
    dropped = dropped_rows(datasets.concatenate_datasets([gone, past]), "no_match",
                           {SUPERSEDED: ([False] * len(gone) + [True] * len(past), datasets.Value("bool"))})
    account_kept_or_dropped("s", rows, StageResult(rows=kept, dropped=dropped))
    if n == 0:
        return
    slip = data.draw(st.sampled_from(["lose", "repeat", "both"]))
    row = data.draw(st.integers(0, n - 1))
    one = rows.select([row])
    if slip == "lose":
        kept, dropped = kept.filter(lambda r: r["id"] != one[0]["id"]), dropped.filter(
            lambda r: r["id"] != one[0]["id"] or r[SUPERSEDED])
    elif slip == "repeat":
        kept = datasets.concatenate_datasets([kept, one])
    else:
        both = dropped_rows(one, "no_match", {SUPERSEDED: ([False], datasets.Value("bool"))})
        kept = datasets.concatenate_datasets([kept, one]) if not keep[row] else kept
        dropped = datasets.concatenate_datasets([dropped, both]) if keep[row] else dropped
    with pytest.raises(StageFailed, match=r"^stage 's' (both kept and dropped|does not account for its rows)"):
        account_kept_or_dropped("s", rows, StageResult(rows=kept, dropped=dropped))


# ---------------------------------------------------------------------------------------------
# check_texts: a stage's text column holds a str in every row


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.one_of(st.text(max_size=8), st.none()), min_size=1, max_size=12),
       reverse=st.booleans())
def test_check_rows_names_the_first_row_whose_text_is_not_a_str(values, reverse):
    # a None (a pandas NaN, a null in a file) reached the offline tagger's encoder ("Unsupported
    # input type: NoneType") or was sent to an LLM as the question "None"
    ds = datasets.Dataset.from_dict({"id": [f"r{i}" for i in range(len(values))], "prompt": values})
    if reverse:  # a Dataset with an indices mapping (a select, a shuffle), as a stage gets it
        ds = ds.select(range(len(values) - 1, -1, -1))
        values = values[::-1]
    bad = [i for i, v in enumerate(values) if not isinstance(v, str)]
    if not bad:
        assert check_rows(ds, "tag", ("prompt",), texts=("prompt",)) is ds
        return
    with pytest.raises(UserError, match=rf"the tag stage: row 'r\d+': its 'prompt' is NoneType, not str") as err:
        check_rows(ds, "tag", ("prompt",), texts=("prompt",))
    assert f"row {ds[bad[0]]['id']!r}" in str(err.value)


def test_check_rows_refuses_a_text_column_that_holds_no_text():
    ds = datasets.Dataset.from_dict({"prompt": [3, 4]})
    with pytest.raises(UserError, match=r"row 0 \(the rows have no 'id'\): its 'prompt' is int, not str"):
        check_rows(ds, "tag", texts=("prompt",))
    assert check_rows(ds.select([]), "tag", texts=("prompt",)) is not None  # no rows: nothing to refuse



def test_a_stage_whose_extra_is_missing_stops_the_run_before_anything_runs(tmp_path, monkeypatch):
    """A pip install without the tagger extra ran the build's seven stages before the tag stage
    said its package was missing; now nothing runs. A stage that completed is not asked again,
    unless it is to run again."""
    import importlib.util

    from m1data.stages.mesh_offline import EMBEDDING_PACKAGE, OfflineTagger

    class Rows(Stage):
        name = "rows"
        config = None
        reads_rows = True

        def run(self, rows, ctx):
            return StageResult(rows=datasets.Dataset.from_dict({"id": ["a"], "source": ["s"], "prompt": ["Q?"]}))

    class Needs(Stage):
        name = "needs"
        config = None
        absent = True

        def missing(self):
            return "x is not installed (pip install x)" if Needs.absent else None

        def run(self, rows, ctx):
            return StageResult(rows=rows)

    run = tmp_path / "run"
    with pytest.raises(UserError, match=r"stage 'needs' cannot run here: x is not installed \(pip install x\); nothing"):
        run_pipeline([Rows(), Needs()], run)
    assert not list(run.glob("*/manifest.json"))  # not even the first stage ran
    Needs.absent = False
    run_pipeline([Rows(), Needs()], run)
    Needs.absent = True
    assert run_pipeline([Rows(), Needs()], run)["id"] == ["a"]  # completed: not asked
    with pytest.raises(UserError, match="stage 'needs' cannot run here"):
        run_pipeline([Rows(), Needs()], run, force=True)
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == EMBEDDING_PACKAGE else find_spec(name, *a))
    assert "pip install 'm1data[tagger]'" in OfflineTagger().missing()


def test_a_supervised_offline_tagger_is_not_asked_for_embeddings(monkeypatch):
    """TF-IDF features need scikit-learn alone: the supervised tagger was stopped for want of the
    zero-shot tagger's embeddings."""
    import importlib.util

    from m1data.stages.mesh_offline import EMBEDDING_PACKAGE, OfflineConfig, OfflineTagger

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == EMBEDDING_PACKAGE else find_spec(name, *a))
    assert OfflineTagger(OfflineConfig(method="supervised", model_path="m.joblib")).missing() is None
    assert OfflineTagger().missing() is not None


def test_the_column_check_trusts_only_what_a_stage_class_says_itself():
    """`check_columns` stops a build whose sampler names a column no stage gives; a stage that
    does not say its columns ends the check, and so does a subclass written elsewhere that
    inherits `columns_after` (it may add a column its base does not)."""
    from m1data.running.pipeline import check_columns
    from m1data.stages.dedup import DedupConfig, Deduplicate
    from m1data.stages.loading import LoadConfig, LoadSources
    from m1data.stages.sampling import Sample, SampleConfig

    class AddsCluster(Deduplicate):  # a researcher's stage: dedup that also writes a cluster column
        pass

    class SaysSo(Deduplicate):
        def columns_after(self, before):
            return None if before is None else before | {"cluster"}

    load, sample = LoadSources(LoadConfig(sources={})), Sample(SampleConfig(levels=("cluster", "source")))
    with pytest.raises(UserError, match="needs the column 'cluster', which no stage before it gives"):
        check_columns([load, Deduplicate(DedupConfig()), sample])
    check_columns([load, AddsCluster(DedupConfig()), sample])
    check_columns([load, SaysSo(DedupConfig()), sample])
    check_columns([sample])  # rows from elsewhere: nothing known, nothing refused


def test_a_column_of_mixed_types_names_the_row_that_is_not_text(tmp_path):
    """`"prompt": 5` on the last row of a JSONL: datasets reads the column as JSON text, and the
    error named the first row, which was fine."""
    from m1data.reading.readers import read_rows
    from m1data.running.pipeline import check_texts

    path = tmp_path / "in.jsonl"
    path.write_text('{"id": "a", "prompt": "hello"}\n{"id": "b", "prompt": "there"}\n{"id": "c", "prompt": 5}\n',
                    encoding="utf-8")
    with pytest.raises(UserError, match=r"row 'c': its 'prompt' is int, not str"):
        check_texts(read_rows(path), "prompt", "rows")


@pytest.mark.parametrize("given, kept, dropped, said", [
    (["a", "a", "b", "c"], ["a", "c"], ["a", "b"], None),
    ([None, None, "b", "c"], [None, "c"], [None, "b"], None),
    (["a", "a", "b", "c"], ["a", "b", "c"], ["a", "b"], "4 in, 3 kept \\+ 2 dropped = 5"),
    (["a", "a", "b", "c"], ["a", "b"], ["a", "b"], "both kept and dropped 1 row id"),
    (["a", "a", "b", "c"], ["a", "z"], ["a", "b"], "1 neither kept nor dropped \\(e.g. 'c'\\)"),
])
def test_ids_a_file_repeats_are_counted_and_the_others_checked_one_by_one(given, kept, dropped, said):
    """A user's file that repeats ids (or has none on some rows) stopped dedup as "both kept and
    dropped"; the ids it does not repeat are still checked one by one (review)."""
    from m1data.running.pipeline import account_kept_or_dropped

    def rows(ids):
        return datasets.Dataset.from_dict({"id": ids})

    result = StageResult(rows=rows(kept), dropped=rows(dropped).add_column("reason", ["x"] * len(dropped)))
    if said is None:
        account_kept_or_dropped("s", rows(given), result)
    else:
        with pytest.raises(StageFailed, match=said):
            account_kept_or_dropped("s", rows(given), result)


class CachedMake(Make):
    """Make whose config names a reply cache outside the run folder, as an LLM stage's `cache_path` does."""

    def __init__(self, cache):
        super().__init__()
        self.cache = cache

    def shared_caches(self):
        return (str(self.cache),)


def test_a_build_refused_for_a_cache_in_use_names_what_a_build_can_change(tmp_path):
    """A build refused because another run holds its stages' reply cache was told to "give --cache
    another file": `m1data build` has no --cache; the file is its config's `cache_path`."""
    from m1data.running.pipeline import RunLocked, cache_lock

    cache = tmp_path / "replies.sqlite"
    with cache_lock(cache), pytest.raises(RunLocked) as err:
        run_pipeline([CachedMake(cache), DropSome()], tmp_path / "run")
    assert "cache_path" in str(err.value) and "--cache" not in str(err.value) and "\n" not in str(err.value)
    assert CALLS == []  # refused before any stage ran
