"""The jobs of m1data.jobs from Python: the same call the CLI makes, with the same result, and a
partial build as a value to inspect rather than an exception.

Builds run against the scripted OpenAI-compatible server of test_build_e2e (real HTTP calls);
the default (embedded model) build is compared with the command once, slow-marked, where the
llama.cpp server is installed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import datasets
import pytest
import yaml
from llm_server import ScriptedServer
from test_build_e2e import make_handler, truth_by_prompt, write_config
from typer.testing import CliRunner

import m1data
from m1data.builders import BUILDERS, default_config_path
from m1data.cli import app
from m1data.config import read_mapping
from m1data.errors import M1DataError, UserError
from m1data.llm.local_server import embedded_missing
from m1data.publishing.cardmeta import split_card
from m1data.running.pipeline import read_manifests


def hub_rows(folder) -> list[dict]:
    return sorted(datasets.load_dataset(str(folder), split="train").to_list(), key=lambda r: r["id"])


# A fresh interpreter makes the library call and reports what it returned.
FRESH_BUILD = """import json, sys
import m1data
result = m1data.build("m1k", sys.argv[1], config=sys.argv[2])
print(json.dumps({"status": result.status, "complete": result.complete, "hub_folder": str(result.hub_folder),
                  "ids": sorted(result.rows["id"]), "funnel": result.funnel}))
"""


@pytest.fixture(scope="module")
def twin_builds(tmp_path_factory):
    """m1K built twice with one config: by the command and by `m1data.build` in a fresh
    interpreter (both against one scripted server, which runs in this process)."""
    tmp = tmp_path_factory.mktemp("jobs")
    with ScriptedServer(make_handler(truth_by_prompt())) as server:
        config = write_config(tmp / "config.yaml", server.base_url, n=20)
        command = CliRunner().invoke(app, ["build", "m1k", "--out", str(tmp / "cli"), "--config", str(config)])
        assert command.exit_code == 0, command.output
        fresh = subprocess.run([sys.executable, "-c", FRESH_BUILD, str(tmp / "py"), str(config)],
                               capture_output=True, text=True, check=False)
        assert fresh.returncode == 0, fresh.stderr[-3000:]
    return {"tmp": tmp, "config": config, "command": command, "fresh": fresh}


def test_python_build_writes_the_hub_rows_the_command_writes(twin_builds):
    tmp, fresh = twin_builds["tmp"], twin_builds["fresh"]
    result = json.loads(fresh.stdout)
    assert result["status"] == "complete" and result["complete"] and result["hub_folder"] == str(tmp / "py" / "hub")
    rows = hub_rows(tmp / "py" / "hub")
    assert len(rows) == 20 and rows == hub_rows(tmp / "cli" / "hub")
    assert result["ids"] == [r["id"] for r in rows]
    assert result["funnel"].startswith("## Funnel") and result["funnel"] in twin_builds["command"].output
    assert "Funnel" not in fresh.stderr  # the library call printed nothing of it


def test_a_library_build_prints_nothing(tmp_path, capfd):
    """The output rule: a library call is quiet; what it did is in its result. datasets' own bars
    are on, as in a fresh interpreter (the test session turns them off), and stay on after."""
    datasets.enable_progress_bars()
    try:
        with ScriptedServer(make_handler(truth_by_prompt())) as server:
            config = yaml.safe_load(write_config(tmp_path / "c.yaml", server.base_url, n=3).read_text(encoding="utf-8"))
            capfd.readouterr()
            result = m1data.build("m1k", tmp_path / "run", config=config)  # a mapping, not a file
        assert datasets.is_progress_bar_enabled()
    finally:
        datasets.disable_progress_bars()
    assert result.complete and len(result.rows) == 3
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_a_config_object_is_used_as_given(twin_builds, tmp_path):
    """build_config gives the object a build would use; its fields changed, it is the build's."""
    cfg = m1data.build_config("m1k", twin_builds["config"])
    cfg.sample.n, cfg.sample.seed = 4, 7
    # the run folder of the first build: every stage but the sampler is reused as it is
    result = m1data.build("m1k", twin_builds["tmp"] / "py", config=cfg, hub_out=tmp_path / "hub")
    assert len(result.rows) == 4 and len(hub_rows(tmp_path / "hub")) == 4
    assert read_manifests(twin_builds["tmp"] / "py")[-1]["config"]["seed"] == 7


def test_m23k_built_where_m1k_was_exports_m23k(twin_builds, tmp_path):
    """m23K and m1K may share a run folder. m23K built after m1K reuses its stages, and its Hub
    folder, card and funnel are m23K's: not the m1K sample the folder also holds."""
    run = tmp_path / "run"
    shutil.copytree(twin_builds["tmp"] / "cli", run)  # the fixture's folder stays as it is
    m23k_config = yaml.safe_load(twin_builds["config"].read_text(encoding="utf-8"))["m23k"]
    result = m1data.build("m23k", run, config=m23k_config, hub_out=tmp_path / "hub")
    formatted = sorted(datasets.Dataset.from_parquet(str(run / "08_format" / "rows.parquet"))["id"])
    assert len(formatted) > 20 and (run / "09_sample" / "manifest.json").is_file()  # the sample is 20 of them
    assert [r["id"] for r in hub_rows(tmp_path / "hub")] == formatted == sorted(result.rows["id"])
    assert [m["stage"] for m in read_manifests(run)][-1] == "format" and "sample" not in result.funnel
    metadata, body = split_card((tmp_path / "hub" / "README.md").read_text(encoding="utf-8"))
    assert metadata["m1data_provenance"]["stages"][-1] == "format" and "| sample |" not in body
    m1k = m1data.build("m1k", run, config=twin_builds["config"], hub_out=tmp_path / "hub-m1k")  # and back
    assert len(m1k.rows) == 20 and [m["stage"] for m in read_manifests(run)][-1] == "sample"


def test_a_build_stopped_before_an_llm_stage_is_a_result(tmp_path):
    config = {"m23k": {"difficulty": {"students": [{"model": "Qwen/Qwen2.5-7B-Instruct",
                                                     "base_url": "http://127.0.0.1:9/v1"}]}}}
    result = m1data.build("m1k", tmp_path / "run", config=config)
    assert result.status == "not_ready" and result.stopped_early and not result.complete
    assert result.stopped_at == "difficulty" and "127.0.0.1:9" in result.reason
    assert result.rows is None and result.hub_folder is None and not (tmp_path / "run" / "hub").exists()
    assert "after decontaminate" in result.funnel


def test_until_stops_where_asked_and_exports_nothing(tmp_path):
    result = m1data.build("m1k", tmp_path / "run", until="dedup")
    assert result.status == "until" and result.stopped_at == "dedup" and not result.stopped_early
    assert [m["stage"] for m in read_manifests(tmp_path / "run")] == ["load", "dedup"]
    assert result.hub_folder is None and len(result.rows) > 0


def test_resample_draws_again_with_another_seed(twin_builds, tmp_path):
    m23k = twin_builds["tmp"] / "cli" / "08_format" / "rows.parquet"
    first = m1data.resample(m23k, tmp_path / "a", n=5, seed=1)
    second = m1data.resample(m23k, tmp_path / "b", n=5, seed=2)
    pool = set(datasets.Dataset.from_parquet(str(m23k))["id"])
    drawn = [set(r["id"] for r in hub_rows(r.hub_folder)) for r in (first, second)]
    assert all(len(d) == 5 and d <= pool for d in drawn) and drawn[0] != drawn[1]
    assert m1data.resample(m23k, tmp_path / "c", n=5, seed=1).rows["id"] == first.rows["id"]
    # the command line draws the same (it had no --seed or --n: only a config could say them)
    done = CliRunner().invoke(app, ["build", "m1k", "--from-m23k", str(m23k), "--out", str(tmp_path / "d"),
                                    "--seed", "1", "--n", "5"])
    assert done.exit_code == 0, done.output
    assert [r["id"] for r in hub_rows(tmp_path / "d" / "hub")] == [r["id"] for r in hub_rows(first.hub_folder)]
    refused = CliRunner().invoke(app, ["build", "m1k", "--out", str(tmp_path / "e"), "--seed", "1"])
    assert refused.exit_code == 2 and "--seed and --n go with --from-m23k" in " ".join(refused.output.split())


def test_a_resample_from_an_m23k_without_rows_says_so_instead_of_an_empty_funnel(tmp_path):
    """A 0-row m23K printed the funnel's two tables with no row in them (and a header of three
    cells over a rule of two). Now the funnel says in words that there were no rows, at both
    doors; nothing is drawn and no Hub folder is written, as for any build that ends empty."""
    from m1data.reading.readers import write_rows
    from m1data.schema import rows_to_dataset

    m23k = tmp_path / "m23k.parquet"
    write_rows(rows_to_dataset([]), m23k)
    result = m1data.resample(m23k, tmp_path / "a", n=5)
    assert result.hub_folder is None and len(result.rows) == 0
    said = "No rows: load_dataset read none, so sample had none to keep or drop."
    assert result.funnel == f"## Funnel\n\n{said}\n"
    done = CliRunner().invoke(app, ["build", "m1k", "--from-m23k", str(m23k), "--out", str(tmp_path / "b"), "--n", "5"])
    assert done.exit_code == 0, done.output
    assert said in " ".join(done.output.split()) and "|" not in done.output


def test_bad_names_and_configs_are_one_line_errors(tmp_path):
    with pytest.raises(UserError, match="unknown dataset 'm2k'; choose from m23k, m1k"):
        m1data.build("m2k", tmp_path)
    with pytest.raises(UserError, match="expected a M1KConfig, a YAML path, a mapping or None, got int"):
        m1data.build("m1k", tmp_path, config=3)
    with pytest.raises(M1DataError, match="unknown key"):
        m1data.build("m1k", tmp_path, config={"sampel": {}})
    with pytest.raises(UserError, match="sample.n must be >= 0, got -5"):
        m1data.build("m1k", tmp_path / "run", config={"sample": {"n": -5}})
    with pytest.raises(UserError, match="config name 'bad name/'"):  # before the stages, not after them
        m1data.build("m1k", tmp_path / "run", hub_config="bad name/")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("dataset", sorted(BUILDERS))
def test_one_config_file_serves_every_build(dataset, caplog):
    """paper.yaml and the README's config examples are written for m1K (`m23k:` and `sample:`):
    `m1data build m23k --config builders/configs/paper.yaml` stopped with "unknown key(s) m23k,
    sample". Each build reads its part, and says which settings it leaves to another build."""
    paper = default_config_path().with_name("paper.yaml")
    cfg = m1data.build_config(dataset, paper)
    assert (cfg if dataset == "m23k" else cfg.m23k) == m1data.build_config("m1k", paper).m23k
    left_out = sorted(k for k in ("sample", "seed") if not hasattr(cfg, k) and k in read_mapping(paper))
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        f"{paper}: {key} is a setting of m1k, not used by this build" for key in left_out]


@pytest.mark.parametrize(("text", "error"), [
    ("m23k: {dedup: {threshold: high}}\n", "c.yaml:m23k.dedup.threshold: expected a number, got 'high'"),
    ("sampel: {}\nm23k: {}\n", "c.yaml: unknown key(s) sampel; known: m23k, oversample, sample, seed"),
    ("dedup: {}\nm23k: {}\n", "c.yaml: dedup beside m23k:"),
    ("m23k: [1]\n", "c.yaml:m23k: expected a mapping, got list"),
])
def test_an_m23k_config_section_is_checked_as_strictly_as_a_flat_file(tmp_path, text, error):
    (tmp_path / "c.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(UserError, match=re.escape(error)):
        m1data.build_config("m23k", tmp_path / "c.yaml")


def test_file_runners_share_one_name_pattern():
    from m1data import jobs
    from m1data.stages import mesh, mesh_offline

    runners = sorted(n for n in jobs.__all__ if n.startswith("run_"))
    assert runners == [f"run_{stage}_file" for stage in
                       ("decontaminate", "dedup", "difficulty", "tag", "tag_offline", "traces")]
    assert all(callable(getattr(jobs, n)) for n in runners)
    assert not hasattr(mesh, "tag_file") and not hasattr(mesh_offline, "tag_offline_file")  # the old names


@pytest.mark.main_job  # the whole default build, minutes: `pytest -m main_job` (README, "Tests")
@pytest.mark.timeout(3600)
@pytest.mark.skipif(embedded_missing() is not None, reason=str(embedded_missing()))
def test_default_build_from_a_fresh_interpreter_equals_the_command(tmp_path):
    """`m1data.build("m1k", out)` with the default config (the embedded model, its server started
    and stopped inside the call) writes the Hub rows `m1data build m1k --out` writes."""
    command = subprocess.run([sys.executable, "-m", "m1data.cli", "build", "m1k", "--out", str(tmp_path / "cli")],
                             capture_output=True, text=True, check=False)
    assert command.returncode == 0, command.stderr[-2000:]
    code = ("import sys, m1data\nresult = m1data.build('m1k', sys.argv[1])\n"
            "assert result.complete and result.hub_folder is not None, result\n")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "py")], check=True)
    assert hub_rows(tmp_path / "py" / "hub") == hub_rows(tmp_path / "cli" / "hub")


def test_the_command_says_when_another_build_holds_the_run_folder(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom m1data.running.pipeline import run_lock\n"
         "with run_lock(sys.argv[1]):\n    print('locked', flush=True)\n    time.sleep(60)\n", str(tmp_path / "run")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = CliRunner().invoke(app, ["build", "m1k", "--out", str(tmp_path / "run"), "--until", "load"])
    finally:
        holder.kill()
        holder.wait()
    assert result.exit_code == 1 and "in use by another build" in " ".join(result.output.split())
    assert isinstance(result.exception, SystemExit)  # an exit, not a traceback


@pytest.mark.parametrize("job", ["funnel", "lineage", "compare"])
@pytest.mark.parametrize("given", ["a file", "a missing folder"])
def test_jobs_reading_a_run_folder_refuse_a_file_or_a_missing_one_alike_at_every_door(tmp_path, job, given):
    """The check that RUN_DIR is a run folder lived in the command line: from Python,
    `funnel_markdown(FILE)` and `lineage(FILE, id)` were a bare NotADirectoryError, and
    `compare FILE RUN` said "no such run directory" of a file that exists. One function
    (`m1data.running.funnel.run_folder`) checks it for every door, with one line."""
    from m1data.running.compare import compare_runs
    from m1data.running.funnel import funnel_markdown, lineage

    bad = tmp_path / "rows.jsonl"
    if given == "a file":
        bad.write_text('{"id": "a"}\n', encoding="utf-8")
    run = tmp_path / "run"
    (run / "00_load").mkdir(parents=True)
    call, args = {
        "funnel": (lambda: funnel_markdown(bad), ["funnel", str(bad)]),
        "lineage": (lambda: lineage(bad, "a"), ["lineage", str(bad), "a"]),
        "compare": (lambda: compare_runs(bad, run, stage="load"), ["compare", str(bad), str(run), "--stage", "load"]),
    }[job]
    with pytest.raises(UserError) as raised:
        call()
    expected = (f"{bad} is a file; `m1data {job}` reads a run folder" if given == "a file"
                else f"{bad}: no such run folder")
    assert str(raised.value).startswith(expected)
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, UserError) and str(result.exception) == str(raised.value)


@pytest.mark.parametrize("block", [{"kind": "ray", "workers": 4}, {"kind": "local"}])
def test_resample_refuses_a_config_executor_block_at_every_door(tmp_path, block):
    """`m1data build m1k --from-m23k X --executor ray` is refused (only the sampler runs, here),
    but a config's `executor:` block was ignored in silence, from the command line (`--config`) and
    from Python (`m1data.resample(..., config=...)`). It is now one line at every door, before the
    m23K is read or anything written."""
    config = {"executor": block, "sample": {"seed": 7}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    m23k = tmp_path / "m23k.parquet"  # never read: the config is refused first
    lines = set()
    for given in (config, path):
        with pytest.raises(UserError, match="executor: block goes with a build") as raised:
            m1data.resample(m23k, tmp_path / "out", config=given)
        lines.add(str(raised.value))
    result = CliRunner().invoke(app, ["build", "m1k", "--from-m23k", str(m23k), "--config", str(path),
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and " ".join(result.output.split()) == f"error: {lines.pop()}" and not lines
    assert not (tmp_path / "out").exists()


def test_paths_under_a_tilde_are_read_from_home_at_every_door(tmp_path, monkeypatch):
    """A build config has no shell to expand `~`, nor does a quoted argument or zsh's `NAME=~/x`:
    `path: ~/data/train.jsonl` was "no such file", and `NAME=~/x.jsonl` "neither a known eval set
    nor a file". Sources, eval files, `cache_path` and `prices_file` expand it, in a config, the
    commands and Python."""
    from m1data.reading.evalsets import load_eval_any
    from m1data.reading.sources import load_source

    sample = default_config_path().parents[2] / "m1data" / "data" / "sample"
    home = tmp_path / "home"
    (home / "data").mkdir(parents=True)
    shutil.copy(sample / "medqa" / "train.jsonl", home / "data" / "train.jsonl")
    shutil.copy(sample / "eval" / "medqa" / "test.jsonl", home / "data" / "test.jsonl")
    (home / "prices.json").write_text('{"m": {"input": 1, "output": 2}}', encoding="utf-8")
    monkeypatch.setenv("HOME", str(home))

    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"m23k": {
        "load": {"sources": [{"name": "medqa", "path": "~/data/train.jsonl"}]},
        "evals": ["medqa_test=~/data/test.jsonl"],
        "difficulty": {"runtime": {"cache_path": "~/cache/c.sqlite", "prices_file": "~/prices.json"}}}}),
        encoding="utf-8")
    cfg = m1data.build_config("m23k", config)
    assert cfg.difficulty.runtime.prices().lookup("m") is not None
    result = m1data.build("m23k", tmp_path / "run", config=cfg, until="decontaminate")
    expected = load_source("medqa", str(home / "data" / "train.jsonl"))
    assert result.status == "until" and 0 < len(result.rows) <= len(expected.rows)
    [decontaminated] = [m for m in read_manifests(tmp_path / "run") if m["stage"] == "decontaminate"]
    assert "medqa_test" in json.dumps(decontaminated)
    assert len(load_eval_any("~/data/test.jsonl")) == 1
    from m1data.reading.evalsets import load_eval  # a named set from its own file
    assert len(load_eval("medqa_test", "~/data/test.jsonl").rows) > 0
    from m1data.reading.readers import read_dataset  # build --from-m23k and train --dataset
    assert len(read_dataset("~/data/test.jsonl")) == len(read_dataset(str(home / "data" / "test.jsonl"))) > 0
    cli = CliRunner().invoke(app, ["load-eval", "medqa_test", "--path", "~/data/test.jsonl",
                                   "--out", str(tmp_path / "e.jsonl")])
    assert cli.exit_code == 0, cli.output
    from m1data.llm.cache import Cache
    with Cache("~/cache/c.sqlite") as cache:
        assert cache.path == home / "cache" / "c.sqlite"

    # and where m1data writes: a run folder, a file command's OUT (a folder named "~" was made in
    # the working folder, and the readers, which expand it, looked for the stage files at home)
    from m1data.jobs import run_dedup_file
    monkeypatch.chdir(tmp_path)
    assert m1data.build("m23k", "~/runs/a", config=cfg, until="dedup").status == "until"
    assert [m["stage"] for m in read_manifests(home / "runs" / "a")] == ["load", "dedup"]
    assert run_dedup_file("~/data/test.jsonl", "~/deduplicated.jsonl")["rows_in"] > 0
    assert (home / "deduplicated.jsonl").is_file() and not (tmp_path / "~").exists()


@pytest.mark.parametrize("load", ["source", "eval"])
def test_a_load_into_an_out_another_run_holds_is_refused(tmp_path, load):
    """`m1data load` and `load-eval` took no lock: a second load into one OUT wrote over the
    first's pair of files. They are held as every file run's OUT is (`output_lock`)."""
    import threading

    from m1data.jobs import load_eval_to_file, load_source_to_file
    from m1data.running.pipeline import RunLocked, output_lock
    from m1data.stages.loading import sample_dir

    out, held, done = tmp_path / "medqa.jsonl", threading.Event(), threading.Event()

    def hold() -> None:
        with output_lock(out):
            held.set()
            done.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(30)
    try:
        with pytest.raises(RunLocked, match="being written by another file run"):
            if load == "source":
                load_source_to_file("medqa", out, sample_dir() / "medqa" / "train.jsonl")
            else:
                load_eval_to_file("medqa_test", out, sample_dir() / "eval" / "medqa" / "test.jsonl")
    finally:
        done.set()
        holder.join()
    assert not out.exists()
