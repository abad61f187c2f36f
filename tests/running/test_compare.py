"""`m1data compare`: two builds of the same questions, one teacher trying once and one trying up to
three times, compared from their run folders alone."""

from __future__ import annotations

import re

import pytest
from llm_server import error, llm_server, tries_teacher  # noqa: F401
from stage_doubles import Given
from test_attempts import ROWS, config, question, right_at_of, right_letter
from typer.testing import CliRunner

from m1data.cli import app
from m1data.errors import UserError
from m1data.running.compare import compare_runs
from m1data.running.pipeline import run_pipeline
from m1data.schema import make_row, rows_to_dataset
from m1data.stages.traces import TeacherTraces

N = len(ROWS)


def mixed_rows():
    """ROWS (medqa) plus four headqa questions, so the table has two sources."""
    extra = [make_row(source="headqa", row_id=f"q{100 + i}", question=f"Q{100 + i}: which organ {i}?",
                      options=[f"organ {i}-{k}" for k in range(4)], answer_idx=i % 4, raw={"n": i}) for i in range(4)]
    return rows_to_dataset([*ROWS.to_list(), *[dict(r) for r in rows_to_dataset(extra)]])


@pytest.fixture
def two_runs(llm_server, tmp_path):
    from test_attempts import RIGHT

    rows = mixed_rows()
    RIGHT.update({r["prompt"]: "ABCD"[r["answer_idx"]] for r in rows})
    llm_server.handler = tries_teacher(
        right_letter, lambda text: right_at_of(question(text) % 100), base_seed=100,
        tokens=lambda text, attempt: 200 + 10 * question(text))
    run_pipeline([Given(rows), TeacherTraces(config(llm_server, tmp_path / "a"))], tmp_path / "run_a")
    run_pipeline([Given(rows), TeacherTraces(config(llm_server, tmp_path / "b", attempts=3))], tmp_path / "run_b")
    return tmp_path / "run_a", tmp_path / "run_b", rows


def kept(q: int, k: int) -> bool:
    return (right_at_of(q % 100) or 99) <= k


def test_compare_counts_yield_overlap_agreement_and_writes_report_and_figure(two_runs, tmp_path):
    run_a, run_b, rows = two_runs
    c = compare_runs(run_a, run_b, out_dir=tmp_path / "report")
    ids = [int(i[1:]) for i in rows["id"]]
    by_source = {r["source"]: r for r in c.per_source}
    medqa = [q for q in ids if q < 100]
    assert by_source["medqa"]["asked_a"] == by_source["medqa"]["asked_b"] == len(medqa)
    assert by_source["medqa"]["kept_a"] == sum(kept(q, 1) for q in medqa)
    assert by_source["medqa"]["kept_b"] == sum(kept(q, 3) for q in medqa)
    assert by_source["headqa"]["kept_b"] == sum(kept(q, 3) for q in ids if q >= 100)
    total = by_source["total"]
    assert total["both"] == sum(kept(q, 1) for q in ids)  # kept at try 1 in A: kept in B too
    assert total["agreement"] == 1.0  # both verified: both right
    assert total["yield_b"] == pytest.approx(sum(kept(q, 3) for q in ids) / len(ids))
    # Lengths: the scripted reasoning is "try K: so X." (4 words) in every row; words without the tokenizer.
    assert len(c.a.lengths) == total["kept_a"] and len(c.b.lengths) == total["kept_b"]
    assert c.b.cost["sent"] > c.a.cost["sent"] and c.b.by_attempt["3"]["asked"] > 0
    report = (tmp_path / "report" / "compare.md").read_text(encoding="utf-8")
    assert (tmp_path / "report" / "compare.png").read_bytes().startswith(b"\x89PNG")
    assert re.search(rf"\| medqa \| {len(medqa)} \| {by_source['medqa']['kept_a']} \|", report)
    assert "## Yield by try" in report and "compare.png" in report


def test_compare_command_prints_the_report_and_refuses_a_run_without_the_stage(two_runs, tmp_path):
    run_a, run_b, _ = two_runs
    result = CliRunner().invoke(app, ["compare", str(run_a), str(run_b)])
    assert result.exit_code == 0, result.output
    assert "## Yield per source" in result.output and "## Reasoning length" in result.output
    with pytest.raises(UserError, match="no completed 'mesh' stage"):
        compare_runs(run_a, run_b, stage="mesh")


def test_a_stage_without_reasoning_gives_a_whole_table_and_figure(two_runs, tmp_path):
    """Compared at a stage before the teacher's (decontaminate, on a 1M-row run), the length
    table's empty rows had a cell too few and matplotlib warned of a legend with nothing in it."""
    import warnings

    run_a, run_b, rows = two_runs
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        c = compare_runs(run_a, run_b, stage="given", out_dir=tmp_path / "report")
    assert c.a.lengths == [] and c.per_source[-1]["kept_a"] == len(rows)
    report = (tmp_path / "report" / "compare.md").read_text(encoding="utf-8")
    table = report.split("## Reasoning length")[1].split("\n\n")[1].splitlines()
    assert [line.count("|") for line in table] == [8] * 4, table
    assert (tmp_path / "report" / "compare.png").read_bytes().startswith(b"\x89PNG")


def test_compare_out_without_matplotlib_says_no_figure_was_written(two_runs, tmp_path, monkeypatch):
    """It said "wrote compare.md and compare.png" though no figure was made; and a compare.png
    left in the folder by an earlier comparison stayed beside the new report, showing other runs."""
    import m1data.cards.figures as figures

    run_a, run_b, _ = two_runs
    out = tmp_path / "report"
    compare_runs(run_b, run_a, out_dir=out)
    monkeypatch.setattr(figures, "_pyplot", lambda: None)
    result = CliRunner().invoke(app, ["compare", str(run_a), str(run_b), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert not (out / "compare.png").exists() and (out / "compare.md").is_file()
    assert "no figure: matplotlib is not installed" in result.output and "compare.png" not in result.output


@pytest.mark.parametrize("file", ["compare.md", "compare.png"])
def test_a_compare_killed_mid_write_keeps_the_previous_report_and_figure(two_runs, tmp_path, file):
    """`compare --out` wrote compare.md, then compare.png, each straight to its name: a kill
    during either left it cut short there, the previous one gone, or a new report beside the old
    figure. The previous pair stays whole; the same command again writes both."""
    from kill_points import killed_writing

    run_a, run_b, _ = two_runs
    out = tmp_path / "report"
    compare_runs(run_b, run_a, out_dir=out)  # another comparison: B against A
    before = {name: (out / name).read_bytes() for name in ("compare.md", "compare.png")}
    command = ["compare", run_a, run_b, "--out", out]

    killed = killed_writing(f"*{file.replace('.', '*')}*", command)
    assert killed.returncode == -9, killed.stderr
    assert {name: (out / name).read_bytes() for name in before} == before

    assert killed_writing("no-such-file", command).returncode == 0
    compare_runs(run_a, run_b, out_dir=tmp_path / "fresh")
    for name in before:
        assert (out / name).read_bytes() == (tmp_path / "fresh" / name).read_bytes() != before[name]
    assert sorted(p.name for p in out.iterdir()) == ["compare.md", "compare.png"]


def test_a_build_whose_stage_is_incomplete_is_said_so(llm_server, tmp_path):
    """A traces stage stopped by transient failures writes its manifest (`complete: false`) and its
    rows so far; compare read it like a finished build, so B's yield looked final and lower than it
    will be. The report says which build is incomplete and how many requests it has to send."""
    from test_attempts import RIGHT

    from m1data.running.pipeline import StageIncomplete

    rows = mixed_rows()
    RIGHT.update({r["prompt"]: "ABCD"[r["answer_idx"]] for r in rows})
    answer = tries_teacher(right_letter, lambda text: 1, base_seed=100)
    down = {rows["prompt"][i] for i in (1, 2)}
    llm_server.handler = lambda req: error(503, "overloaded") if req.text.split("\n", 1)[1] in down else answer(req)
    for side, attempts in (("a", 1), ("b", 3)):
        with pytest.raises(StageIncomplete):
            run_pipeline([Given(rows), TeacherTraces(config(llm_server, tmp_path / side, attempts=attempts))],
                         tmp_path / f"run_{side}")
    c = compare_runs(tmp_path / "run_a", tmp_path / "run_b")
    assert c.markdown.count("is incomplete") == 2
    assert re.search(r"B's `traces` stage is incomplete: 2 requests failed transiently", c.markdown)
    assert (c.a.transient_failures, c.b.transient_failures) == (2, 2)

    llm_server.handler = answer  # the server is back: the same build again finishes B
    run_pipeline([Given(rows), TeacherTraces(config(llm_server, tmp_path / "b", attempts=3))], tmp_path / "run_b")
    c = compare_runs(tmp_path / "run_a", tmp_path / "run_b")
    assert c.b.transient_failures == 0 and "B's `traces` stage is incomplete" not in c.markdown
    assert c.per_source[-1]["kept_b"] == len(rows)


def test_a_compare_renames_its_report_and_figure_only_holding_the_folder(two_runs, tmp_path):
    """Two `compare --out` into one folder at once interleaved their renames (each: the old report
    out, its figure in, its report in), so one's compare.md could end beside the other's
    compare.png. The renames are now made holding the folder: while another holds it, the
    command has written both files under temporary names and renamed neither; let go, it
    finishes with its own pair."""
    from kill_points import renaming_while_held

    run_a, run_b, _ = two_runs
    out = tmp_path / "report"
    compare_runs(run_b, run_a, out_dir=out)
    before = {name: (out / name).read_bytes() for name in ("compare.md", "compare.png")}
    names, command = renaming_while_held(["compare", run_a, run_b, "--out", out], out, partials=2)
    assert command.returncode == 0, command.stderr
    assert len(names) == 4 and {"compare.md", "compare.png"} < set(names)  # the old pair, and two partials
    compare_runs(run_a, run_b, out_dir=tmp_path / "fresh")
    for name, old in before.items():
        assert (out / name).read_bytes() == (tmp_path / "fresh" / name).read_bytes() != old
