"""Who sees m1data's output: a library call is quiet (warnings aside) until output is turned on,
and then its messages go through the "m1data" logger and its bars show; the CLI turns it on."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
from llm_server import Received, Response, llm_server, reply  # noqa: F401
from typer.testing import CliRunner

from m1data import output
from m1data.cli import app
from m1data.llm import Cache, HTTPConfig, HTTPEngine, Request, complete_all
from m1data.reading.readers import write_rows
from m1data.reading.sources import load_source
from m1data.running.pipeline import run_pipeline
from m1data.stages.dedup import DedupConfig, Deduplicate, deduplicate
from m1data.stages.fuzzy import find_duplicates
from m1data.stages.loading import LoadConfig, LoadSources, sample_dir
from m1data.stages.sampling import Sample, SampleConfig


def real_stages() -> list:
    """Load the packaged sample (real rows of the four sources), dedup it, ask for more rows than
    there are (the one warning of the run)."""
    return [LoadSources(LoadConfig()), Deduplicate(DedupConfig()), Sample(SampleConfig(n=10_000, levels=()))]


def sample_file(relative: str) -> Path:
    return sample_dir() / relative


def echo(req: Received) -> Response:
    return reply(req, f"echo {req.text}", prompt_tokens=10, completion_tokens=4)


def ask(text: str) -> Request:
    return Request(model="m", messages=({"role": "user", "content": text},), params={"max_tokens": 20})


def test_a_library_run_prints_nothing_but_its_warning(tmp_path) -> None:
    """In a fresh interpreter with logging left as Python sets it up (pytest installs handlers
    of its own, so this cannot be seen in-process): no progress, no INFO line, and the warning
    still reaches stderr the standard way."""
    code = (
        "import sys, datasets\n"
        "datasets.disable_progress_bars()  # datasets' own bars are datasets' to switch off\n"
        "from m1data.stages.dedup import DedupConfig, Deduplicate\n"
        "from m1data.stages.loading import LoadConfig, LoadSources\n"
        "from m1data.running.pipeline import run_pipeline\n"
        "from m1data.stages.sampling import Sample, SampleConfig\n"
        "stages = [LoadSources(LoadConfig()), Deduplicate(DedupConfig()), Sample(SampleConfig(n=10_000, levels=()))]\n"
        "assert len(run_pipeline(stages, sys.argv[1])) > 0\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "run")], capture_output=True, text=True,
                          check=True)
    assert done.stdout == ""
    logged = [line for line in done.stderr.splitlines() if not line.startswith((" ", "/"))]  # not warnings.warn's
    assert logged == ["sample: asked for 10,000 rows but only 130 reached this stage; took all 130"], done.stderr
    assert "run  load" not in done.stderr and "rows in" not in done.stderr  # INFO stays unseen


def test_library_calls_show_no_messages_and_no_bars_by_default(llm_server, tmp_path, capfd, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="m1data")  # records are made; nothing is shown
    medqa = load_source("medqa", str(sample_file("medqa/train.jsonl"))).rows
    doubled = medqa.select(list(range(len(medqa))) * 2)
    kept, removed = deduplicate(doubled)
    assert len(kept) + len(removed) == len(doubled) and len(removed) >= len(medqa)  # every second copy goes
    assert find_duplicates(doubled["question"], progress=True)  # asks for a bar: none, output is off
    llm_server.handler = echo
    with Cache(tmp_path / "cache.sqlite") as cache:
        replies = complete_all(HTTPEngine(HTTPConfig(base_url=llm_server.base_url)), [ask("a"), ask("b")], cache,
                               progress=True)
    assert [r.text for r in replies] == ["echo a", "echo b"]
    assert capfd.readouterr() == ("", "")
    assert any("to send" in r.getMessage() for r in caplog.records)  # the plan was logged, not printed


def test_enable_routes_messages_through_the_m1data_logger_and_shows_bars(llm_server, tmp_path, capfd, caplog) -> None:
    caplog.set_level(logging.INFO, logger="m1data")  # (root stays at WARNING: httpx's INFO lines stay out)
    output.enable()
    run_pipeline(real_stages(), tmp_path / "run")
    llm_server.handler = echo
    with Cache(tmp_path / "cache.sqlite") as cache:
        complete_all(HTTPEngine(HTTPConfig(base_url=llm_server.base_url)), [ask("a"), ask("b")], cache,
                     label="echoes", progress=True)
    err = capfd.readouterr().err

    said = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
    assert all(name.startswith("m1data.") for name, _, _ in said)
    assert ("m1data.running.pipeline", logging.INFO, "run  load") in said
    assert any(name == "m1data.stages.sampling" and level == logging.WARNING and "asked for 10,000 rows" in text
               for name, level, text in said)
    assert any(name == "m1data.llm.runner" and text.startswith("echoes: sent 2") for name, _, text in said)
    for _, _, text in said:  # every record shown on stderr (a multi-line plan line by line)
        assert all(line in err for line in text.splitlines()), text
    assert "warning: sample: asked for 10,000 rows" in err
    assert "echoes" in err and "2/2" in err  # the bar's last state


def test_enable_is_idempotent_and_disable_restores_the_library_default() -> None:
    logger = logging.getLogger("m1data")
    before = list(logger.handlers)
    output.enable()
    output.enable(verbose=False)
    assert len(logger.handlers) == len(before) + 1 and logger.level == logging.WARNING
    assert output.showing_progress()
    output.disable()
    assert logger.handlers == before and logger.level == logging.NOTSET and not output.showing_progress()


def test_a_bar_shows_only_when_asked_and_output_is_on(capfd) -> None:
    for enabled, show in ((False, True), (True, False), (True, True)):
        if enabled:
            output.enable()
        with output.bar("counting", 3, fields=("note",), show=show) as counter:
            for _ in range(3):
                counter.advance(note="fine")
        shown = capfd.readouterr().err
        assert ("counting" in shown and "3/3" in shown and "fine" in shown) == (enabled and show)
        output.disable()


def test_the_cli_turns_output_on(llm_server, tmp_path) -> None:
    """A command shows what the library logs: here the plan of a dry run."""
    medqa = load_source("medqa", str(sample_file("medqa/train.jsonl"))).rows.select(range(3))
    src = write_rows(medqa, tmp_path / "in.jsonl")
    result = CliRunner().invoke(app, ["run", "difficulty", str(src), str(tmp_path / "out.jsonl"),
                                      "--student", f"small/Model-7B={llm_server.base_url}", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "3 to send" in result.stderr and llm_server.count() == 0


@pytest.mark.parametrize("width", [60, 80, 100, 160])
def test_a_bar_shows_done_total_and_time_left_at_any_width(monkeypatch, width):
    """Issue 23 item 7: at 80 columns rich shrank every column alike and cut the count to `36…`.
    The LLM runner's bar (rate, tokens, cost fields) keeps its count and time left, within the width."""
    import io
    import re

    from rich.console import Console

    from m1data.llm.runner import BAR_FIELDS

    buffer = io.StringIO()
    monkeypatch.setattr(output, "console", Console(file=buffer, width=width, force_terminal=False, color_system=None))
    output.enable()
    try:
        with output.Bars(*BAR_FIELDS) as bars:
            task = bars.add("teacher deepseek-reasoner", total=196157, **{name: "" for name in BAR_FIELDS})
            task.advance(12345, rate="12.3 req/s", tokens="1,234,567 in / 2,345,678 out", cost="$12.3456")
            bars._progress.refresh()
    finally:
        output.disable()
    line = buffer.getvalue().splitlines()[-1]
    assert len(line) <= width, line
    assert " 12345/196157 " in line, line
    assert re.search(r" (-:--:--|\d+:\d\d:\d\d)$", line), line  # the time left, whole, at the end
    assert "12.3 req/s" in line and line.startswith("teacher")
