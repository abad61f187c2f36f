import json
import subprocess
import sys

import datasets
import pytest
from typer.testing import CliRunner

from m1data.cli import app

runner = CliRunner()


def write_medmcqa(path, n=5):
    rows = [
        {"id": f"u{i}", "question": f"Question {i}?", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": i % 4}
        for i in range(n)
    ]
    rows.append({"id": "bad", "question": "Q?", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": 9})
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")


def test_load_writes_rows_and_quarantine(tmp_path):
    src = tmp_path / "train.jsonl"
    write_medmcqa(src)
    out = tmp_path / "out.parquet"
    result = runner.invoke(app, ["load", "medmcqa", "--path", str(src), "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = datasets.Dataset.from_parquet(str(out))
    assert len(rows) == 5 and set(rows["source"]) == {"medmcqa"}
    quarantine = datasets.Dataset.from_parquet(str(tmp_path / "out.quarantine.parquet"))
    assert quarantine["reason"] == ["answer_out_of_range"]


def test_load_eval_jsonl(tmp_path):
    src = tmp_path / "anatomy_test.csv"
    src.write_text("Q1?,a,b,c,d,B\nQ2?,a,b,c,d,D\n")
    out = tmp_path / "mmlu.jsonl"
    result = runner.invoke(app, ["load-eval", "mmlu_anatomy", "--path", str(src), "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["answer_letter"] for r in rows] == ["B", "D"]


def test_bad_file_is_one_line_and_exit_2(tmp_path):
    src = tmp_path / "train.jsonl"
    src.write_text('{"id": "u1"\n')
    proc = subprocess.run(
        [sys.executable, "-c", "from m1data.cli import main; main()", "load", "medmcqa", "--path", str(src),
         "--out", str(tmp_path / "x.parquet")],
        capture_output=True, text=True,
    )
    assert proc.returncode == 2
    assert f"{src}:1" in proc.stderr.replace("\n", "") and "Traceback" not in proc.stderr


def test_infer_run_on_a_tiny_model(tmp_path):
    """The CLI wiring end to end: engine, stop ids, eval loading, budget, scoring files."""
    import pytest

    pytest.importorskip("transformers")
    from tiny_model import save_tiny

    model = save_tiny(tmp_path / "tiny")
    evals = tmp_path / "anatomy_test.csv"
    evals.write_text("Q1?,a,b,c,d,B\nQ2?,a,b,c,d,D\nQ3?,a,b,c,d,A\n")
    out = tmp_path / "out"
    result = runner.invoke(app, ["infer", "run", "--engine", "hf", "--model", model, "--eval-sets", "mmlu_anatomy",
                                 "--eval-path", str(evals), "--budget", "8", "--forcing-rounds", "1",
                                 "--answer-max-tokens", "4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["sets"]["mmlu_anatomy"]["n"] == 3
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert len(records) == 3 and all(r["thinking_tokens"] <= 8 for r in records)


def test_dedup_and_decontaminate_commands(tmp_path):
    src = tmp_path / "train.jsonl"
    base = {"question": "Which nerve supplies the deltoid muscle?", "opa": "Axillary", "opb": "Radial",
            "opc": "Ulnar", "opd": "Median", "cop": 0}
    rows = [dict(base, id="a"), dict(base, id="b", question=base["question"].upper().lower()),
            dict(base, id="c", question="What is the most common cause of community acquired pneumonia?",
                 opa="Streptococcus pneumoniae", opb="Klebsiella", opc="Legionella", opd="Mycoplasma")]
    src.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    loaded = tmp_path / "rows.parquet"
    assert runner.invoke(app, ["load", "medmcqa", "--path", str(src), "--out", str(loaded)]).exit_code == 0

    deduped = tmp_path / "deduped.parquet"
    result = runner.invoke(app, ["dedup", str(loaded), str(deduped)])
    assert result.exit_code == 0, result.output
    assert datasets.Dataset.from_parquet(str(deduped))["id"] == ["medmcqa:a", "medmcqa:c"]
    removed = datasets.Dataset.from_parquet(str(tmp_path / "deduped.removed.parquet"))
    assert removed["id"] == ["medmcqa:b"] and removed["match_id"] == ["medmcqa:a"]

    evals = tmp_path / "anatomy_test.csv"
    evals.write_text("What is the most common cause of community-acquired pneumonia?,Mycoplasma,Legionella,"
                     "Klebsiella,Streptococcus pneumoniae,D\n")
    clean = tmp_path / "clean.jsonl"
    result = runner.invoke(app, ["decontaminate", str(deduped), str(clean), "--eval", f"mmlu_anatomy={evals}"])
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["id"] for line in clean.read_text().splitlines()] == ["medmcqa:a"]
    assert '"mmlu_anatomy": 1' in result.output


def test_version():
    from m1data import __version__

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"m1data {__version__}"


@pytest.mark.parametrize("command", [["build"], ["publish"], ["run", "traces"], ["infer", "run"]])
def test_boolean_flags_render_as_switches(command):
    """A flag takes no value, so --help must not print a `<bool>` value after it."""
    result = CliRunner().invoke(app, [*command, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output and "BOOLEAN" not in result.output
    if command == ["build"]:
        assert "--force / --no-force" in result.output
    if command == ["publish"]:
        assert "--dry-run " in result.output
