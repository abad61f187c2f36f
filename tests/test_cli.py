import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
from typer.testing import CliRunner

from m1data.cli import app
from m1data.reading.readers import read_rows, write_rows
from m1data.schema import make_row, rows_to_dataset

runner = CliRunner()


def write_medmcqa(path, n=5):
    rows = [
        {"id": f"u{i}", "question": f"Question {i}?", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": i % 4}
        for i in range(n)
    ]
    rows.append({"id": "bad", "question": "Q?", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": 9})
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")


def test_load_writes_rows_and_dropped(tmp_path):
    src = tmp_path / "train.jsonl"
    write_medmcqa(src)
    out = tmp_path / "out.parquet"
    result = runner.invoke(app, ["load", "medmcqa", "--path", str(src), "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = datasets.Dataset.from_parquet(str(out))
    assert len(rows) == 5 and set(rows["source"]) == {"medmcqa"}
    dropped = datasets.Dataset.from_parquet(str(tmp_path / "out.dropped.parquet"))
    assert dropped["reason"] == ["answer_out_of_range"]


def test_load_eval_jsonl(tmp_path):
    src = tmp_path / "anatomy_test.csv"
    src.write_text("Q1?,a,b,c,d,B\nQ2?,a,b,c,d,D\n")
    out = tmp_path / "mmlu.jsonl"
    result = runner.invoke(app, ["load-eval", "mmlu_anatomy", "--path", str(src), "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    # Issue 9: eval options are shuffled per row like training rows; the key follows the text.
    assert [r["answer_text"] for r in rows] == ["b", "d"]
    assert all(r["options"][r["answer_idx"]] == r["answer_text"] == r["options"]["ABCD".index(r["answer_letter"])]
               for r in rows)


def test_bad_file_is_one_line_and_exit_2(tmp_path):
    src = tmp_path / "train.jsonl"
    src.write_text('{"id": "u1"\n')
    proc = subprocess.run(
        [sys.executable, "-c", "from m1data.cli import main; main()", "load", "medmcqa", "--path", str(src),
         "--out", str(tmp_path / "x.parquet")],
        capture_output=True, text=True, check=False,
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
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["sets"]["mmlu_anatomy"]["n"] == 3
    records = [json.loads(line) for line in (out / "records.jsonl").read_text(encoding="utf-8").splitlines()]
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
    dropped = datasets.Dataset.from_parquet(str(tmp_path / "deduped.dropped.parquet"))
    assert dropped["id"] == ["medmcqa:b"] and dropped["match_id"] == ["medmcqa:a"]

    evals = tmp_path / "anatomy_test.csv"
    evals.write_text("What is the most common cause of community-acquired pneumonia?,Mycoplasma,Legionella,"
                     "Klebsiella,Streptococcus pneumoniae,D\n")
    clean = tmp_path / "clean.jsonl"
    result = runner.invoke(app, ["decontaminate", str(deduped), str(clean), "--eval", f"mmlu_anatomy={evals}"])
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["id"] for line in clean.read_text(encoding="utf-8").splitlines()] == ["medmcqa:a"]
    assert '"mmlu_anatomy": 1' in result.output


def test_decontaminate_prints_the_head_of_a_long_list_and_writes_it_whole(tmp_path):
    """Decontaminating 1M benchmark rows printed all 1,880 rows only the n-gram check flags (200
    KB of JSON on the terminal), and nowhere else kept them. Now OUT.stats.json holds the
    statistics and the terminal shows a list's first PRINTED_ITEMS and where the rest are."""
    from m1data.cli import PRINTED_ITEMS

    rng = random.Random(0)
    syllables = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "xe", "zu", "pha", "dri"]
    vignettes = [[rng.choice(syllables) + rng.choice(syllables) + rng.choice(syllables) for _ in range(40)]
                 for _ in range(PRINTED_ITEMS + 5)]
    evals = tmp_path / "anatomy_test.csv"
    evals.write_text("".join(" ".join(words) + "?,w,x,y,z,A\n" for words in vignettes))
    # each row changes two of its eval question's 40 words: fuzzy ratio ~93, under 95, but it holds
    # half of the question's 8-grams, so the n-gram check flags it
    rows = [{"id": f"r{i}", "question": " ".join(w if k not in (10, 20) else "changedword" for k, w in enumerate(words)),
             "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": 0} for i, words in enumerate(vignettes)]
    src = tmp_path / "train.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    loaded = tmp_path / "rows.parquet"
    assert runner.invoke(app, ["load", "medmcqa", "--path", str(src), "--out", str(loaded)]).exit_code == 0

    out = tmp_path / "clean.parquet"
    result = runner.invoke(app, ["decontaminate", str(loaded), str(out), "--eval", f"mmlu_anatomy={evals}"])
    assert result.exit_code == 0, result.output
    written = json.loads((tmp_path / "clean.stats.json").read_text())
    listed = written["ngram_check"]["ngram_only_rows"]
    assert len(read_rows(out)) == len(rows) and len(listed) == len(rows)
    printed = json.loads(result.output[result.output.index("{"):])
    assert printed["ngram_check"]["ngram_only_rows"] == [*listed[:PRINTED_ITEMS],
                                                          f"... and 5 more in {tmp_path / 'clean.stats.json'}"]
    assert {k: v for k, v in printed.items() if k != "ngram_check"} == {
        k: v for k, v in written.items() if k != "ngram_check"}


@pytest.fixture
def main(monkeypatch, capsys):
    """The installed entry point (`m1data.cli.main`: its exit code and what it prints), called in
    this process: a fresh interpreter costs a second of imports per call, and
    `test_bad_file_is_one_line_and_exit_2` and the Hub test run it as a user's process does."""
    from m1data import cli

    def call(*args) -> subprocess.CompletedProcess:
        monkeypatch.setattr(sys, "argv", ["m1data", *map(str, args)])
        capsys.readouterr()
        handler = signal.getsignal(signal.SIGTERM)  # main() installs its own
        try:
            cli.main()
            code = 0
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else int(stop.code is not None)
        finally:
            signal.signal(signal.SIGTERM, handler)
        said = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, said.out, said.err)

    return call


def test_load_refuses_to_overwrite_its_input(tmp_path):
    src = tmp_path / "train.jsonl"
    write_medmcqa(src)
    before = src.read_bytes()
    result = runner.invoke(app, ["load", "medmcqa", "--path", str(src), "--out", str(src)])
    assert result.exit_code == 2 and "would overwrite" in result.output
    # the dropped file beside --out must not land on the input either
    dropped_named = tmp_path / "rows.dropped.jsonl"
    dropped_named.write_bytes(before)
    result = runner.invoke(app, ["load", "medmcqa", "--path", str(dropped_named), "--out", str(tmp_path / "rows.jsonl")])
    assert result.exit_code == 2 and "would overwrite" in result.output
    evals = tmp_path / "anatomy_test.csv"
    evals.write_text("Q1?,a,b,c,d,B\n")
    result = runner.invoke(app, ["load-eval", "mmlu_anatomy", "--path", str(evals), "--out", str(evals)])
    assert result.exit_code == 2
    assert src.read_bytes() == before and dropped_named.read_bytes() == before
    assert evals.read_text(encoding="utf-8") == "Q1?,a,b,c,d,B\n"


def test_a_folder_without_source_files_as_path_is_one_line(tmp_path, main):
    proc = main("load", "medqa", "--path", tmp_path, "--out", tmp_path / "x.parquet")
    said = proc.stderr.replace("\n", "")
    assert proc.returncode == 2 and "a folder with no .jsonl" in said and "Traceback" not in proc.stderr


def test_medmcqa_mixed_base_is_one_line_and_cop_base_settles_it(tmp_path, main):
    rows = [{"id": f"u{i}", "question": f"Q{i}?", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": c}
            for i, c in enumerate([1, 2, 3, 4, 0])]
    src = tmp_path / "train.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    proc = main("load", "medmcqa", "--path", src, "--out", tmp_path / "x.parquet")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "--cop-base" in proc.stderr.replace("\n", "")
    result = runner.invoke(app, ["load", "medmcqa", "--path", str(src), "--out", str(tmp_path / "x.parquet"),
                                 "--cop-base", "1"])
    assert result.exit_code == 0, result.output
    assert datasets.Dataset.from_parquet(str(tmp_path / "x.parquet"))["answer_text"] == ["a", "b", "c", "d"]


def test_load_eval_of_a_gpqa_layout_file_is_shuffled(tmp_path):
    src = tmp_path / "gpqa.csv"
    src.write_text("Record ID,Question,Correct Answer,Incorrect Answer 1,Incorrect Answer 2,Incorrect Answer 3\n"
                   + "".join(f"r{i},Question {i}?,right,w1,w2,w3\n" for i in range(100)))
    out = tmp_path / "gpqa.jsonl"
    result = runner.invoke(app, ["load-eval", str(src), "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    letters = [r["answer_letter"] for r in rows]
    assert all(r["answer_text"] == "right" for r in rows) and max(letters.count(x) for x in "ABCD") < 40


def test_load_eval_of_the_wrong_file_fails_and_writes_nothing(tmp_path, main):
    src = tmp_path / "gpqa.csv"
    src.write_text("Record ID,Question,Correct Answer,Incorrect Answer 1,Incorrect Answer 2,Incorrect Answer 3\n"
                   + "".join(f"r{i},Question {i}?,right,w1,w2,w3\n" for i in range(10)))
    for name in ("pubmedqa_test", "medqa_test"):
        out = tmp_path / f"{name}.jsonl"
        proc = main("load-eval", name, "--path", src, "--out", out)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr and not out.exists()
        assert str(src) in proc.stderr.replace("\n", "")


def _offline_env(tmp_path, **extra):
    """An empty HF cache and no Hub: what a new user without network sees."""
    import os

    env = {**os.environ, "HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env.update(extra)
    return env


def test_hub_name_without_network_is_one_line(tmp_path):
    offline = _offline_env(tmp_path)
    refused = _offline_env(tmp_path, HF_HUB_OFFLINE="0", HF_DATASETS_OFFLINE="0", HF_ENDPOINT="http://127.0.0.1:9")
    cases = [(offline, ["load-eval", "gpqa_diamond"]), (offline, ["load", "medqa"]),
             (offline, ["load-eval", "mmlu_medical"]), (offline, ["load-eval", "pubmedqa_test"]),
             (refused, ["load-eval", "medqa_test"])]  # online, but nothing answers (after the Hub client's retries)
    for env, args in cases:
        proc = subprocess.run([sys.executable, "-c", "from m1data.cli import main; main()", *args,
                               "--out", str(tmp_path / "x.parquet")],
                              capture_output=True, text=True, check=False, env=env, timeout=300)
        error = proc.stderr[proc.stderr.find("error:"):]
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert "Hub is unreachable" in error.replace("\n", " ") and "--path" in error, proc.stderr
        assert len(error.splitlines()) <= 3  # one message (wrapped by the terminal width), nothing after it
        if env is offline:
            assert proc.stderr.startswith("error:"), proc.stderr


def test_load_eval_prints_a_skew_warning(tmp_path, monkeypatch):
    """The rule itself is tested in test_evalsets; here, that the command shows it as a warning line."""
    import m1data.reading.evalsets

    monkeypatch.setattr(m1data.reading.evalsets, "answer_skew", lambda rows: "answer A on 2 of 2 rows (100%)")
    src = tmp_path / "anatomy_test.csv"
    src.write_text("Q1?,a,b,c,d,B\nQ2?,a,b,c,d,D\n")
    result = runner.invoke(app, ["load-eval", "mmlu_anatomy", "--path", str(src), "--out", str(tmp_path / "o.jsonl")])
    assert result.exit_code == 0, result.output
    assert "warning: mmlu_anatomy: answer letters are skewed: answer A on 2 of 2 rows" in result.output.replace("\n", " ")


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


SAMPLE_EVAL = Path(__file__).resolve().parents[1] / "m1data" / "data" / "sample" / "eval"


def _thinking_server():
    """A completions server that thinks a few words then answers A; vLLM-style token counts."""
    from llm_server import ScriptedServer, completion

    def handler(req):
        prompt, max_tokens = req.body["prompt"], req.body["max_tokens"]
        if prompt.rstrip().endswith(("<|im_start|>answer", "Final Answer:")):
            return completion(" \\boxed{A}", completion_tokens=3)
        n = min(3, max_tokens - 1)
        return completion(" hmm" * n, finish_reason="stop", completion_tokens=n + 1)

    return ScriptedServer(handler)


def test_infer_run_over_http_with_key_stops_label_and_named_files(tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    from m1data.infer.budget import template_stop_ids
    from tiny_model import save_tiny, tiny_tokenizer

    tiny = save_tiny(tmp_path / "tiny")
    monkeypatch.setenv("MY_SERVER_KEY", "secret-value-123")
    out = tmp_path / "out"
    with _thinking_server() as server:
        result = runner.invoke(app, [
            "infer", "run", "--base-url", server.base_url, "--model", "served-name", "--tokenizer", tiny,
            "--api-key-env", "MY_SERVER_KEY", "--label", "m1-7B-1K",
            "--eval-sets", f"medqa_test={SAMPLE_EVAL / 'medqa' / 'test.jsonl'},mine={SAMPLE_EVAL / 'medqa' / 'test.jsonl'}",
            "--budget", "16", "--limit", "2", "--no-progress", "--out", str(out)])
        requests = server.requests
    assert result.exit_code == 0, result.output
    assert requests and all(r.headers.get("authorization") == "Bearer secret-value-123" for r in requests)
    thinking, answer = template_stop_ids(tiny_tokenizer())
    stops = {tuple(r.body["stop_token_ids"]) for r in requests}
    assert stops == {thinking, answer}  # the model's own end-of-turn ids, not Qwen2.5's
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["label"] == "m1-7B-1K" and set(metrics["sets"]) == {"medqa_test", "mine"}
    assert metrics["sets"]["mine"]["n"] == 2
    assert "secret-value-123" not in (out / "metrics.json").read_text(encoding="utf-8") + (out / "records.jsonl").read_text(encoding="utf-8")


def test_infer_api_key_env_must_be_set(tmp_path, monkeypatch):
    monkeypatch.delenv("NOT_SET_KEY", raising=False)
    result = runner.invoke(app, ["infer", "run", "--base-url", "http://127.0.0.1:9/v1", "--model", "m",
                                 "--api-key-env", "NOT_SET_KEY", "--eval-sets", "medqa_test",
                                 "--eval-path", str(SAMPLE_EVAL / "medqa" / "test.jsonl"), "--out", str(tmp_path)])
    assert result.exit_code == 2 and "NOT_SET_KEY is not set" in result.output


def test_infer_sweep_then_plot_overlays_models(tmp_path):
    pytest.importorskip("transformers")
    from tiny_model import save_tiny

    tiny = save_tiny(tmp_path / "tiny")
    runs = []
    with _thinking_server() as server:
        for name in ("a", "b"):
            out = tmp_path / name
            result = runner.invoke(app, ["infer", "sweep", "--base-url", server.base_url, "--model", f"org/{name}",
                                         "--tokenizer", tiny, "--eval-sets", "medqa_test",
                                         "--eval-path", str(SAMPLE_EVAL / "medqa" / "test.jsonl"),
                                         "--budgets", "4,16", "--limit", "2", "--progress", "--out", str(out)])
            assert result.exit_code == 0, result.output
            runs.append(out)
    assert json.loads((runs[0] / "sweep.json").read_text(encoding="utf-8"))[0]["label"] == "a"  # short label by default
    result = runner.invoke(app, ["infer", "plot", *map(str, runs), "--label", "m1-7B-1K", "--label", "m1-7B-23K",
                                 "--out", str(tmp_path / "plots")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "plots" / "accuracy_vs_budget.png").read_bytes()[:4] == b"\x89PNG"
    bad = runner.invoke(app, ["infer", "plot", str(runs[0]), "--label", "x", "--label", "y", "--out", str(tmp_path)])
    assert bad.exit_code == 2


def test_main_prints_our_errors_in_one_line_and_shows_bugs(tmp_path, monkeypatch, capsys, main):
    """m1data's own errors (here a file that is not rows) are one line and exit 2; any other
    exception is a bug: its traceback is kept, with a request to report it."""
    import m1data.stages.dedup

    bad = tmp_path / "rows.csv"
    bad.write_text("not rows")
    proc = main("dedup", bad, tmp_path / "out.jsonl")
    assert proc.returncode == 2
    err = proc.stderr.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1 and ".parquet, .jsonl or .json" in err

    def broken(*args, **kwargs):
        raise KeyError("internal")

    monkeypatch.setattr(m1data.stages.dedup, "deduplicate", broken)
    rows = write_rows(rows_to_dataset([make_row(source="medqa", row_id="a", question="Q?", options=["x", "y"],
                                                answer_idx=0, raw={})]), tmp_path / "in.jsonl")
    with pytest.raises(KeyError):
        main("dedup", rows, tmp_path / "out.jsonl")
    assert "internal error" in capsys.readouterr().err


def test_load_a_file_m1data_has_no_loader_for_through_a_mapping(tmp_path, shared_data):
    import csv

    src = shared_data / "eval" / "medbullets" / "medbullets_op4.csv"
    with open(src, newline="", encoding="utf-8") as handle:
        raw = list(csv.DictReader(handle))
    out = tmp_path / "bullets.parquet"
    mapping = "question=question,options=opa+opb+opc+opd,answer=answer_idx,id=link"
    result = runner.invoke(app, ["load", "bullets", "--path", str(src), "--mapping", mapping, "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = datasets.Dataset.from_parquet(str(out))
    dropped = tmp_path / "bullets.dropped.parquet"
    n_bad = len(read_rows(dropped))  # written even when empty
    assert len(rows) + n_bad == len(raw) and len(rows) > 0.9 * len(raw)
    first = next(r for r in rows if r["id"] == f"bullets:{raw[0]['link']}")
    assert first["source"] == "bullets" and sorted(first["options"]) == sorted(raw[0][c].strip() for c in
                                                                               ("opa", "opb", "opc", "opd"))
    assert first["answer_text"] == raw[0]["op" + raw[0]["answer_idx"].strip().lower()].strip()


@pytest.mark.parametrize("args, message", [
    (["load", "bullets", "--mapping", "question=q"], "give its file"),
    (["load", "bullets", "--path", "PATH", "--mapping", "question"], "expected KEY=COLUMN"),
    (["load", "bullets", "--path", "PATH", "--mapping", "question=q,answers=a"], "unknown key(s) answers"),
    (["load", "Bad Name", "--path", "PATH", "--mapping", "question=q"], "lower-case letters"),
])
def test_load_mapping_mistakes_are_one_line(tmp_path, args, message, main):
    src = tmp_path / "x.csv"
    src.write_text("q,a\nWhat?,A\n")
    args = [str(src) if a == "PATH" else a for a in args]
    proc = main(*args, "--out", tmp_path / "o.parquet")
    assert proc.returncode == 2 and message in proc.stderr.replace("\n", " "), proc.stderr


def test_a_full_or_read_only_disk_is_one_line_not_a_bug(tmp_path, monkeypatch, main):
    """ENOSPC while a file command wrote OUT (and EROFS anywhere else) went to the 'internal error
    ... please report it' path with a traceback, and the half-written temporary file stayed beside
    OUT holding the space. Now: one line naming what could not be written and what to do, exit 2,
    nothing left beside OUT, the previous OUT kept."""
    import errno

    rows = _dedup_input(tmp_path)
    out = tmp_path / "out" / "deduped.parquet"
    assert main("dedup", rows, out).returncode == 0
    before = out.read_bytes()

    def disk_full(self, path, *args, **kwargs):
        with open(path, "wb") as handle:
            handle.write(b"PAR1 half a file")
        raise OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space left on device")

    monkeypatch.setattr(datasets.Dataset, "to_parquet", disk_full)
    proc = main("dedup", rows, out, "--threshold", "100")
    err = proc.stderr.strip()
    assert proc.returncode == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(f"error: cannot write {out}: No space left on device (ENOSPC)")
    # the previous pair stays; the previous statistics went before the write (see the rerun-kill test)
    assert sorted(p.name for p in out.parent.iterdir()) == ["deduped.dropped.parquet", "deduped.parquet"]
    assert out.read_bytes() == before

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "x"))

    monkeypatch.setattr("m1data.jobs.run_dedup_file", read_only)
    proc = main("dedup", rows, tmp_path / "elsewhere.parquet")
    err = proc.stderr.strip()
    assert proc.returncode == 2 and len(err.splitlines()) == 1 and "internal error" not in err, err
    assert f"{tmp_path / 'x'}: Read-only file system (EROFS)" in err


def test_a_full_datasets_cache_is_one_line_naming_it(tmp_path):
    """Reading rows through `datasets` writes an Arrow copy into its cache folder; with that disk
    full (here: a file size limit, EFBIG) the command died with 'internal error' and a
    DatasetGenerationError naming neither the cache nor the file read. Now one line names both."""
    import os
    import resource

    rows = [make_row(source="medqa", row_id=str(i), question=f"Question {i}: " + "which finding " * 40,
                     options=[f"a{i}", f"b{i}"], answer_idx=0, raw={}) for i in range(200)]
    src = write_rows(rows_to_dataset(rows), tmp_path / "in.parquet")
    cache = tmp_path / "hf-cache"
    limit = src.stat().st_size + 4096  # room for OUT (a parquet file), not for the Arrow copy

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.run([sys.executable, "-c", "from m1data.cli import main; main()", "dedup", str(src),
                           str(tmp_path / "out.parquet")], capture_output=True, text=True, preexec_fn=small_files,
                          env={**os.environ, "HF_DATASETS_CACHE": str(cache)}, check=False)
    err = proc.stderr.strip()
    assert proc.returncode == 2 and "internal error" not in err, err
    assert err.splitlines()[-1].startswith(f"error: cannot write {cache} (datasets' cache"), err
    assert f"reading {src}" in err and "File too large (EFBIG)" in err


# ---------------------------------------------------------------------------------------------
# Issue 23 item 4: file commands write OUT and OUT.dropped together or not at all, never over an input

KILLER = """
import os, signal, sys
import datasets

real, calls, kill_at = datasets.Dataset.to_parquet, [], int(os.environ["M1DATA_TEST_KILL_AT"])

def to_parquet(self, path, *args, **kwargs):  # the Nth parquet write is cut off by SIGKILL
    calls.append(path)
    if len(calls) == kill_at:
        with open(path, "wb") as handle:
            handle.write(b"PAR1 half a file")
        os.kill(os.getpid(), signal.SIGKILL)
    return real(self, path, *args, **kwargs)

datasets.Dataset.to_parquet = to_parquet
from m1data.cli import main
main()
"""


def _dedup_input(tmp_path) -> Path:
    base = {"question": "Which nerve supplies the deltoid muscle?", "opa": "Axillary", "opb": "Radial",
            "opc": "Ulnar", "opd": "Median", "cop": 0}
    questions = ["Which nerve supplies the deltoid muscle?", "What is the most common cause of pneumonia in adults?",
                 "Which enzyme is deficient in classic phenylketonuria?"]
    rows = [dict(base, id=str(i), question=questions[i % 3]) for i in range(6)]
    src = tmp_path / "train.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    loaded = tmp_path / "rows.parquet"
    assert runner.invoke(app, ["load", "medmcqa", "--path", str(src), "--out", str(loaded)]).exit_code == 0
    return loaded


@pytest.mark.parametrize("layout", ["json list", "to_json lines"])
def test_file_commands_read_a_json_file_of_rows(tmp_path, layout):
    """`json.dump(rows, f)` and `Dataset.to_json("x.json")` (a row a line): both were refused
    ("input must end in .parquet or .jsonl")."""
    rows = read_rows(_dedup_input(tmp_path))
    path = tmp_path / "rows.json"
    if layout == "json list":
        path.write_text(json.dumps(rows.to_list()))
    else:
        rows.to_json(path)
    done = runner.invoke(app, ["dedup", str(path), str(tmp_path / "kept.jsonl")])
    assert done.exit_code == 0, done.output
    assert read_rows(tmp_path / "kept.jsonl")["id"] == read_rows(tmp_path / "rows.parquet")["id"][:3]


@pytest.mark.parametrize("rows", [
    [{"id": "a", "question": "Q?"}, {"id": "b", "question": "R?", "context": "C", "metadata": {"k": 1}}],
    [{}, {"a": 1}],  # read as 0 rows: the columns were the first row's
    [{"m": {"x": 1}}, {"m": {"y": "z"}}],  # nested objects of other keys were merged into one struct
    [{"a": 1}, {"a": "x"}, {"a": [1]}],  # a column of mixed types was refused
    [{"n": 2**64}],  # an OverflowError traceback
])
def test_a_json_file_of_rows_reads_as_the_jsonl_of_the_same_rows(tmp_path, rows):
    listed, lines = tmp_path / "rows.json", tmp_path / "rows.jsonl"
    listed.write_text(json.dumps(rows))
    lines.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert read_rows(listed).features == read_rows(lines).features
    assert read_rows(listed).to_list() == read_rows(lines).to_list()
    frame = tmp_path / "frame.json"  # pandas' default orient: {column: {index: cell}}
    frame.write_text(json.dumps({"id": {"0": "a", "1": "b"}, "question": {"0": "Q?", "1": "R?"}}))
    assert read_rows(frame).to_list() == [{"id": "a", "question": "Q?"}, {"id": "b", "question": "R?"}]


@pytest.mark.parametrize("name, text, message", [
    ("rows.json", "[1, 2]", "item 1 is int, not a row object"),
    ("rows.json", '{"a": 1, "b": 2}', "expected a list of row objects, or an object holding one"),
    ("rows.jsonl", '{"id": "1"}\n{"id": 2 "q"}\n', "changed from string to number in row 1): a column holds values "
                                                   "of more than one type"),
    ("rows.jsonl", '{"a": "1"}\n{"a": "2" "b"}\n', "Missing a comma"),  # datasets said it on a line of its own too
])
def test_a_json_file_that_is_not_rows_is_one_line(tmp_path, name, text, message, main):
    path = tmp_path / name
    path.write_text(text)
    proc = main("dedup", path, tmp_path / "out.jsonl")
    said = " ".join(proc.stderr.split())
    assert proc.returncode == 2 and message in said and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("error:") and "Failed to load JSON" not in proc.stderr, proc.stderr


def _killed_dedup(rows: Path, out: Path, kill_at: int, *args: str) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-c", KILLER, "dedup", str(rows), str(out), *args], capture_output=True,
                          text=True, env={**os.environ, "M1DATA_TEST_KILL_AT": str(kill_at)}, check=False)


def _visible(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


@pytest.mark.parametrize("kill_at", [1, 2])  # while OUT is written; while OUT.dropped is written
def test_a_file_command_killed_mid_write_leaves_no_output(tmp_path, kill_at):
    rows = _dedup_input(tmp_path)
    out = tmp_path / "out" / "deduped.parquet"
    killed = _killed_dedup(rows, out, kill_at)
    assert killed.returncode == -9, killed.stderr
    assert _visible(out.parent) == []  # neither OUT nor OUT.dropped, not a byte of either

    done = runner.invoke(app, ["dedup", str(rows), str(out)])  # the same command again finishes
    assert done.exit_code == 0, done.output
    assert len(read_rows(out)) == 3 and len(read_rows(tmp_path / "out" / "deduped.dropped.parquet")) == 3
    assert sorted(p.name for p in out.parent.iterdir()) == ["deduped.dropped.parquet", "deduped.parquet",
                                                           "deduped.stats.json"]


def test_a_rerun_killed_mid_write_keeps_the_previous_pair(tmp_path):
    rows = _dedup_input(tmp_path)
    out = tmp_path / "deduped.parquet"
    assert runner.invoke(app, ["dedup", str(rows), str(out)]).exit_code == 0
    before = {name: (tmp_path / name).read_bytes() for name in ("deduped.parquet", "deduped.dropped.parquet")}
    assert (tmp_path / "deduped.stats.json").is_file()
    killed = _killed_dedup(rows, out, 2, "--threshold", "100")  # a different result, cut off
    assert killed.returncode == -9
    assert {name: (tmp_path / name).read_bytes() for name in before} == before
    # statistics are written after the rows: a kill in between leaves none, never another run's
    assert not (tmp_path / "deduped.stats.json").exists()


@pytest.mark.parametrize("command", [
    ["dedup", "{rows}", "{rows}"],
    ["dedup", "{rows}", "{folder}/./rows.parquet"],  # the same file by another name
    ["dedup", "{folder}/other.dropped.parquet", "{folder}/other.parquet"],  # OUT.dropped would land on the input
    ["decontaminate", "{rows}", "{folder}/evals.parquet", "--eval", "mmlu_anatomy={folder}/evals.dropped.parquet"],
    ["decontaminate", "{rows}", "{folder}/evals.parquet", "--eval", "mmlu_anatomy={folder}/evals.stats.json"],
    ["dedup", "{folder}/shards", "{folder}/shards/out.parquet"],  # all its files are read: a re-run would read OUT
    ["run", "tag-offline", "{rows}", "{rows}"],
])
def test_a_file_command_refuses_an_output_that_is_an_input(tmp_path, command, main):
    """`m1data dedup X X` turned 10 rows into 9; now every file command refuses, in one line and
    exit 2, an OUT (or its OUT.dropped) that is an input or lies in an input folder, before it
    reads, writes or starts anything."""
    rows = _dedup_input(tmp_path)
    (tmp_path / "other.dropped.parquet").write_bytes(rows.read_bytes())
    (tmp_path / "shards").mkdir()
    (tmp_path / "shards" / "part-0.parquet").write_bytes(rows.read_bytes())
    (tmp_path / "evals.dropped.parquet").write_bytes(rows.read_bytes())
    (tmp_path / "evals.stats.json").write_text("{}")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    proc = main(*[part.format(rows=rows, folder=tmp_path) for part in command])
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "input" in proc.stderr
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


# ---------------------------------------------------------------------------------------------
# Issue 23 item 5: wrong input to `build` is one line and exit 2, checked before anything starts


@pytest.mark.parametrize("case", ["wrong type", "yaml syntax", "out is a file", "no such stage"])
def test_build_refuses_wrong_input_in_one_line_before_starting_anything(tmp_path, case, main):
    run = tmp_path / "run"
    config = tmp_path / "config.yaml"
    args = ["build", "m1k", "--out", run]
    if case == "wrong type":
        config.write_text('m23k:\n  dedup:\n    threshold: "high"\n')
        args += ["--config", config]
        expected = "config.yaml:m23k.dedup.threshold: expected a number, got 'high'"
    elif case == "yaml syntax":
        config.write_text("m23k: [\n")
        args += ["--config", config]
        expected = "config.yaml: not valid YAML at line 2"
    elif case == "out is a file":
        run.write_text("not a folder")
        expected = "is a file"
    else:
        args += ["--from", "nosuchstage"]
        expected = "no stage named 'nosuchstage' (--from); the stages are load, dedup"
    proc = main(*args)
    assert proc.returncode == 2, proc.stderr
    err = " ".join(proc.stderr.split())
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert expected in err
    assert (run.is_file() if case == "out is a file" else not run.exists())  # no run folder, no server log


@pytest.mark.parametrize("case", ["funnel of a file", "publish to a malformed repo id", "dedup on a missing column"])
def test_more_input_mistakes_are_one_line(tmp_path, case, main):
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"id": "a", "question": "Which nerve?"}\n')
    args, message = {
        "funnel of a file": (["funnel", rows], "is a file; `m1data funnel` reads a run folder"),
        "publish to a malformed repo id": (["publish", tmp_path, "--repo-id", "bad id!!", "--dry-run"],
                                           "is not a Hub repo id"),
        "dedup on a missing column": (["dedup", rows, tmp_path / "out.jsonl", "--column", "nosuch"],
                                      "no column 'nosuch' to compare in the rows; its columns are id, question"),
    }[case]
    proc = main(*args)
    said = " ".join(proc.stderr.split())
    assert proc.returncode == 2 and message in said and "Traceback" not in proc.stderr, proc.stderr


# Older typer releases that pyproject allows (typer>=0.15) print every frame's local variables with an
# internal error's traceback unless told not to; the Hub client's frames hold the token in `headers`.
OLD_TYPER_DEFAULT = """
import typer
_init = typer.Typer.__init__
def _old_default(self, *args, pretty_exceptions_show_locals=True, **kwargs):
    _init(self, *args, pretty_exceptions_show_locals=pretty_exceptions_show_locals, **kwargs)
typer.Typer.__init__ = _old_default
from m1data.cli import main
main()
"""


QUOTES_THE_KEY = """
import os, sys
import m1data.stages.dedup as dedup
from m1data.errors import UserError
KIND = sys.argv.pop()
def quoting(*args, **kwargs):
    key = os.environ["M1DATA_TRACE_API_KEY"]
    raise (UserError if KIND == "user" else KeyError)(f"sent Authorization: Bearer {key} (key={key})")
dedup.deduplicate = quoting
from m1data.cli import main
main()
"""


@pytest.mark.parametrize("kind, standard", [("user", ""), ("internal", ""), ("internal", "1")])
def test_a_key_quoted_in_an_error_line_or_a_traceback_is_masked(tmp_path, kind, standard):
    """A last guard: an error's message that quotes a key from the environment (here: one no writer
    knew of) reached the terminal as it was, in the one error line and in a bug's traceback (typer's
    and, with _TYPER_STANDARD_TRACEBACK, Python's)."""
    import os

    key = "k3Y9zQ"  # short: no pattern for what keys look like would catch it, only the environment
    rows = write_rows(rows_to_dataset([make_row(source="medqa", row_id="a", question="Q?", options=["x", "y"],
                                                answer_idx=0, raw={})]), tmp_path / "in.jsonl")
    env = {**os.environ, "M1DATA_TRACE_API_KEY": key, "_TYPER_STANDARD_TRACEBACK": standard, "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-c", QUOTES_THE_KEY, "dedup", str(rows), str(tmp_path / "out.jsonl"), kind],
                          capture_output=True, text=True, env=env, timeout=120)
    said = proc.stdout + proc.stderr
    assert proc.returncode == (2 if kind == "user" else 1), said
    assert ("internal error" in said and "KeyError" in said) if kind == "internal" else said.startswith("error:"), said
    assert "[redacted]" in said and key not in said, said


def test_an_internal_error_traceback_shows_no_local_variables(tmp_path):
    import os
    import socket

    from m1data.publishing.hub import write_hub_folder

    token = "hf_LocalsNeverShown0123456789abcdef"
    folder = write_hub_folder(tmp_path / "hub", {"m1k": {"train": datasets.Dataset.from_dict({"x": [1]})}}, "# c\n")
    with socket.socket() as sock:  # a port nothing listens on: the Hub call fails with ConnectError
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": f"http://127.0.0.1:{port}", "HF_TOKEN": token,
           "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-c", OLD_TYPER_DEFAULT, "publish", str(folder), "--repo-id", "me/x"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1 and "ConnectError" in proc.stdout + proc.stderr, proc.stderr
    assert token not in proc.stdout + proc.stderr


# ---------------------------------------------------------------------------------------------
# A new user's mistakes (found by walking every command's help and the README): each was a
# traceback (exit 1, "internal error") or a bare errno; each is one line and exit 2.


def _run_folder(tmp_path) -> Path:
    """A run folder as `m1data build` leaves one, with a completed stage (a manifest)."""
    run = tmp_path / "run"
    (run / "00_load").mkdir(parents=True)
    (run / "00_load" / "manifest.json").write_text("{}")
    (run / "builds.json").write_text("[]")
    return run


@pytest.mark.parametrize("case", [
    "lineage of a file", "lineage of a missing folder", "funnel of a missing folder", "compare --out a file",
    "build --config a folder", "build --config missing", "from-m23k a run folder", "from-m23k neither file nor repo",
    "publish a run folder", "publish a missing folder",
])
def test_a_new_users_mistakes_are_one_line_and_exit_2(tmp_path, case, main, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a name that is no file is tried as a Hub repo id
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"id": "a", "question": "Which nerve?"}\n')
    run = _run_folder(tmp_path)
    (run / "hub").mkdir()
    (run / "hub" / "README.md").write_text("---\n---\n")
    args, message = {
        "lineage of a file": (["lineage", rows, "x"], "is a file; `m1data lineage` reads a run folder"),
        "lineage of a missing folder": (["lineage", tmp_path / "nosuch", "x"], "nosuch: no such run folder"),
        "funnel of a missing folder": (["funnel", tmp_path / "nosuch"], "nosuch: no such run folder"),
        "compare --out a file": (["compare", run, run, "--stage", "load", "--out", rows],
                                 "rows.jsonl is a file; the report goes to a folder"),
        "build --config a folder": (["build", "m1k", "--out", tmp_path / "r", "--config", tmp_path],
                                    "is a folder; a config is a YAML file"),
        "build --config missing": (["build", "m1k", "--out", tmp_path / "r", "--config", tmp_path / "c.yaml"],
                                   "c.yaml: no such config file"),
        "from-m23k a run folder": (["build", "m1k", "--from-m23k", run, "--out", tmp_path / "r"],
                                   f"is a run folder, not an m23K (a Hub-layout folder, a .parquet/.jsonl file or a "
                                   f"Hub repo id); its Hub-layout folders: {run / 'hub'} (unknown)"),
        "from-m23k neither file nor repo": (["build", "m1k", "--from-m23k", tmp_path / "nosuch", "--out", tmp_path / "r"],
                                            "nosuch: no such file or folder, and the Hub could not give it"),
        "publish a run folder": (["publish", tmp_path / "run", "--repo-id", "me/x", "--dry-run"],
                                 f"a run folder, not its Hub-layout folder; publish {run / 'hub'}"),
        "publish a missing folder": (["publish", tmp_path / "nosuch", "--repo-id", "me/x", "--dry-run"],
                                     "nosuch: no such folder; give the Hub-layout folder a build wrote"),
    }[case]
    proc = main(*args)
    said = " ".join(proc.stderr.split())
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) <= 2, proc.stderr
    assert message in said, proc.stderr


def test_tilde_in_a_path_option_is_the_home_folder(tmp_path, main, monkeypatch):
    """The shell does not expand `~` after `=` (`--out=~/x.parquet`): the readers expanded it and
    the writers did not, so `load` failed with a raw errno and `build --out=~/run` made a folder
    under HOME, then failed writing to the literal `~/run`."""
    monkeypatch.setenv("HOME", str(tmp_path))
    write_medmcqa(tmp_path / "train.jsonl")
    proc = main("load", "medmcqa", "--path=~/train.jsonl", "--out=~/rows.parquet")
    assert proc.returncode == 0, proc.stderr
    assert len(read_rows(tmp_path / "rows.parquet")) == 5 and (tmp_path / "rows.dropped.parquet").is_file()
    proc = main("dedup", "~/rows.parquet", "~/deduped.jsonl")
    assert proc.returncode == 0 and (tmp_path / "deduped.jsonl").is_file(), proc.stderr


@pytest.mark.parametrize("case", ["model path is the labels", "model path is a folder"])
def test_train_tagger_refuses_a_model_path_that_is_its_input_or_a_folder(tmp_path, case, main):
    """`m1data run train-tagger X X` replaced the labelled rows X with a pickle (exit 0); a folder
    for MODEL_PATH was a traceback after training. Both are refused first, in one line, exit 2."""
    labels = write_rows(rows_to_dataset([make_row(source="medqa", row_id="a", question="Q?", options=["x", "y"],
                                                  answer_idx=0, raw={})]).add_column("domain_code", ["01"]),
                        tmp_path / "labels.parquet")
    before = labels.read_bytes()
    target = labels if case == "model path is the labels" else tmp_path
    proc = main("run", "train-tagger", labels, target)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert ("overwrite" if target == labels else "is a folder") in proc.stderr
    assert labels.read_bytes() == before


def test_an_output_that_is_a_folder_is_one_line(tmp_path, main):
    """`--out rows.parquet` where rows.parquet is a folder (a Spark-style parquet dataset) was an
    IsADirectoryError traceback (exit 1) when the files were renamed into place."""
    src = tmp_path / "train.jsonl"
    write_medmcqa(src)
    (tmp_path / "rows.parquet").mkdir()
    proc = main("load", "medmcqa", "--path", src, "--out", tmp_path / "rows.parquet")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "rows.parquet is a folder; the output is a file" in " ".join(proc.stderr.split())
    assert list((tmp_path / "rows.parquet").iterdir()) == []


@pytest.mark.parametrize("repo_id", ["bad id!!", "https://me:hf_NeverShown0123456789abcdef@huggingface.co/datasets/me/x"])
def test_build_checks_its_repo_id_before_starting(tmp_path, repo_id, main):
    """`build --repo-id` was never checked: a malformed id (or a git remote's URL with the token in
    it) went into the card after every stage had run, and surfaced only at `publish`. Checked as
    `publish` checks it, before the run folder exists; the token is not shown."""
    run = tmp_path / "run"
    proc = main("build", "m1k", "--out", run, "--until", "load", "--repo-id", repo_id)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "--repo-id" in proc.stderr and "hf_NeverShown" not in proc.stdout + proc.stderr
    assert not run.exists()


@pytest.mark.parametrize("case", ["a folder", "a rows file", "missing"])
def test_tag_offline_model_path_that_is_no_tagger_is_one_line(tmp_path, case, main):
    """`run tag-offline --model-path` given a folder (IsADirectoryError) or a rows file
    (UnpicklingError) was a traceback, exit 1; a missing file a bare errno."""
    pytest.importorskip("sklearn")
    rows = write_rows(rows_to_dataset([make_row(source="medqa", row_id="a", question="Q?", options=["x", "y"],
                                                answer_idx=0, raw={})]), tmp_path / "rows.parquet")
    model = {"a folder": tmp_path, "a rows file": rows, "missing": tmp_path / "tagger.joblib"}[case]
    proc = main("run", "tag-offline", rows, tmp_path / "out" / "tagged.parquet", "--model-path", model)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    said = " ".join(proc.stderr.split())
    assert {"a folder": "is a folder", "a rows file": "not an m1data supervised tagger",
            "missing": "no such file"}[case] in said
    assert not (tmp_path / "out" / "tagged.parquet").exists()


def test_a_tagger_file_without_the_tagger_extra_says_what_to_install(tmp_path):
    """Without scikit-learn and joblib (the tagger extra), `run tag-offline --model-path` was a
    ModuleNotFoundError traceback for joblib, where training a tagger said what to install."""
    rows = write_rows(rows_to_dataset([make_row(source="medqa", row_id="a", question="Q?", options=["x", "y"],
                                                answer_idx=0, raw={})]), tmp_path / "rows.parquet")
    script = ("import sys\nsys.modules['sklearn'] = sys.modules['joblib'] = None  # what import finds without them\n"
              "from m1data.cli import main\nmain()\n")
    proc = subprocess.run([sys.executable, "-c", script, "run", "tag-offline", str(rows), str(tmp_path / "out.parquet"),
                           "--model-path", str(tmp_path / "tagger.joblib")], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "pip install scikit-learn" in proc.stderr, proc.stderr


def test_decontaminate_negative_ngram_is_refused_by_the_option(tmp_path, main):
    """`--ngram -1` ran the fuzzy match, then stopped with 'n must be >= 1', though the help says 0
    turns the check off: the option now says its own range, before anything is read."""
    rows = _dedup_input(tmp_path)
    proc = main("decontaminate", rows, tmp_path / "out.parquet", "--eval", "medqa_test=nosuch.jsonl", "--ngram", "-1")
    assert proc.returncode == 2 and "Invalid value for '--ngram'" in proc.stderr, proc.stderr


def test_decontaminate_takes_the_ngram_settings_a_build_config_has(tmp_path, main):
    """A build config's `ngram_max_train_rows` and `ngram_min_share` had no flag and no argument,
    so a build's decontamination could not be repeated through the file doors."""
    rows = _dedup_input(tmp_path)
    evals = tmp_path / "anatomy_test.csv"
    evals.write_text("Which nerve supplies the deltoid muscle?,Axillary,Radial,Ulnar,Median,A\n")
    proc = main("decontaminate", rows, tmp_path / "out.parquet", "--eval", f"mmlu_anatomy={evals}",
                "--ngram-max-train-rows", "5", "--ngram-min-share", "0.5")
    assert proc.returncode == 0, proc.stderr
    check = json.loads((tmp_path / "out.stats.json").read_text())["ngram_check"]
    assert (check["common_ngram_rows"], check["min_share"]) == (5, 0.5)
    proc = main("decontaminate", rows, tmp_path / "out.parquet", "--eval", "medqa_test", "--ngram-min-share", "1.5")
    assert proc.returncode == 2 and "ngram_min_share must be in (0, 1]" in proc.stderr, proc.stderr


@pytest.mark.parametrize("evals, ngram, message", [
    ([], 8, "needs at least one eval set"),
    ("nosuch_set", 8, "nosuch_set"),  # one entry, not its characters ("eval set 'n': not a known set")
    (["medqa_test"], 2.5, "ngram must be 0 (off) or a word n-gram size, got 2.5"),
])
def test_run_decontaminate_file_refuses_what_it_cannot_use(tmp_path, evals, ngram, message):
    from m1data.errors import UserError
    from m1data.jobs import run_decontaminate_file

    with pytest.raises(UserError) as refused:
        run_decontaminate_file(_dedup_input(tmp_path), tmp_path / "out.jsonl", evals, ngram=ngram)
    assert message in str(refused.value) and "'n'" not in str(refused.value)
    assert not (tmp_path / "out.jsonl").exists()


def test_a_full_disk_while_a_tagger_is_saved_is_one_line_naming_it(tmp_path, monkeypatch, main):
    """ENOSPC while `run train-tagger` saved the model said "cannot use a file: No space left on
    device": which file, it did not say (the error of a write names none). Now it names MODEL_PATH,
    the model saved before stays, and nothing is left beside it."""
    import builtins
    import errno
    import io

    pytest.importorskip("sklearn")
    from test_mesh_offline import _labelled_file

    labels, model = _labelled_file(tmp_path, n=90), tmp_path / "models" / "tagger.joblib"
    assert main("run", "train-tagger", labels, model).returncode == 0
    before = model.read_bytes()
    real_open = io.open

    class Full:
        def __init__(self, handle):
            self.handle = handle

        def write(self, data):
            self.handle.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.handle, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

    def opening(file, mode="r", *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        return Full(handle) if "w" in mode and "tagger" in str(file) else handle

    monkeypatch.setattr(builtins, "open", opening)
    proc = main("run", "train-tagger", labels, model)
    err = proc.stderr.strip()
    assert proc.returncode == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(f"error: cannot write {model}: No space left on device (ENOSPC)"), err
    assert model.read_bytes() == before
    assert [p.name for p in model.parent.iterdir()] == ["tagger.joblib"]


@pytest.mark.parametrize("url", ["http://alice:sk-ZZZZsecretZZZZ1234@127.0.0.1:9/v1",
                                 "https://alice:s3cr/etPW9x@host/v1"])  # a '/' in the password too
def test_a_student_url_without_its_model_is_refused_without_its_credentials(tmp_path, main, url):
    """`--student URL` (MODEL= forgotten) was refused as `expected MODEL=BASE_URL, got 'URL'`,
    credentials included; `--student m=URL` was refused without them."""
    rows = tmp_path / "in.jsonl"
    rows.write_text("", encoding="utf-8")
    said = main("run", "difficulty", rows, tmp_path / "out.jsonl", "--student", url)
    password = url.split(":")[2].rpartition("@")[0]
    assert said.returncode == 2 and "MODEL=BASE_URL" in said.stderr, said.stderr
    assert password not in said.stderr + said.stdout and "alice" not in said.stderr


@pytest.mark.parametrize("args", [
    ["load", "mine", "--path", "x.jsonl", "--out", "o.jsonl", "--mapping", "question=q,{key}"],  # m1data's BadParameter
    ["dedup", "a.jsonl", "b.jsonl", "--{key}"],  # Click's own: no such option
    ["{key}"],  # no such command
])
@pytest.mark.parametrize("key", ["k3Y9zQ", "sk-ZZZZsecretZZZZ1234"])
def test_a_key_pasted_into_an_option_is_not_in_clicks_usage_error(main, monkeypatch, tmp_path, args, key):
    """Click prints usage errors itself, quoting the value as given, never through `_error_line`:
    `--mapping question=q,KEY` printed `got 'KEY'` with KEY from the environment."""
    if "--{key}" in args and len(key) < 8:
        pytest.skip("a short key is masked only as a whole token, and `-` joins it to `--` (m1data.redact)")
    monkeypatch.setenv("M1DATA_X_API_KEY", key)
    monkeypatch.chdir(tmp_path)
    proc = main(*[a.format(key=key) for a in args])
    assert proc.returncode == 2 and "Error:" in proc.stderr, proc.stderr
    assert key not in proc.stderr + proc.stdout and "[redacted]" in proc.stderr, proc.stderr


@pytest.mark.parametrize("args, said", [(["--recipe", "nope"], "no recipe 'nope'"),
                                        (["--recipe"], "requires an argument")])
def test_the_training_module_is_the_train_command(args, said, tmp_path):
    """`python -m m1data.train.sft` (what `accelerate launch -m` runs) printed a traceback for a
    recipe that is not there, where `m1data train` says it in one line; it is that command now."""
    proc = subprocess.run([sys.executable, "-m", "m1data.train.sft", *args], capture_output=True, text=True,
                          check=False, cwd=tmp_path, env={**os.environ, "HOME": str(tmp_path)}, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and said in proc.stderr, proc.stderr[-2000:]
    help_text = subprocess.run([sys.executable, "-m", "m1data.train.sft", "--help"], capture_output=True, text=True,
                               check=True, cwd=tmp_path, timeout=300).stdout
    assert help_text.startswith("Usage: m1data train [OPTIONS]")


def test_a_stop_reason_with_brackets_is_printed_whole(tmp_path, monkeypatch):
    """The install hint of a missing embedded model says pip install 'm1data[llm,embedded]'; the
    build's stop line printed it through rich markup, which took '[llm,embedded]' for a tag and
    printed pip install 'm1data', a command that installs nothing the build needs."""
    import m1data.llm.stages as llm_stages

    monkeypatch.setattr(llm_stages, "endpoint_preflight", lambda endpoint: "not installed; pip install 'm1data[llm,embedded]'")
    config = tmp_path / "config.yaml"
    config.write_text("m23k:\n  difficulty:\n    students:\n      - {model: m, base_url: 'http://127.0.0.1:9/v1'}\n")
    result = runner.invoke(app, ["build", "m1k", "--out", str(tmp_path / "run"), "--config", str(config)])
    assert "pip install 'm1data[llm,embedded]'" in result.output, result.output


def test_data_warnings_are_one_line_each_as_they_come_and_others_pass(capsys):
    """A build or an inference run is wrapped whole, so a warning must show when it is raised,
    not at the end; a warning of another kind keeps Python's own form."""
    import warnings

    from m1data.cli import _data_warnings_as_lines
    from m1data.reading.native import CopBaseWarning

    with pytest.warns(RuntimeWarning, match="something else"), _data_warnings_as_lines():
        warnings.warn("medmcqa: cop [1-4] cannot tell its base", CopBaseWarning)
        assert capsys.readouterr().err == "warning: medmcqa: cop [1-4] cannot tell its base\n"
        warnings.warn("something else", RuntimeWarning)  # to the warnings machinery, here pytest's
    assert capsys.readouterr().err == ""


def test_an_out_path_under_a_file_is_one_line(tmp_path):
    """OUT whose folder is a file (`rows.jsonl/x/out.jsonl`) ended in NotADirectoryError's traceback."""
    rows = tmp_path / "rows.jsonl"
    write_rows(rows_to_dataset([make_row(source="medqa", row_id="medqa:1", question="Which drug is first line?",
                                         options=["a", "b"], answer_idx=0, raw={})]), rows)
    result = subprocess.run([sys.executable, "-m", "m1data.cli", "dedup", str(rows), str(rows / "x" / "out.jsonl")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "Not a directory (ENOTDIR); a part of the path is a file, not a folder" in result.stderr


@pytest.mark.parametrize("cache", ["out.jsonl", "out.dropped.jsonl", "in.jsonl"])
def test_a_reply_cache_on_a_file_of_the_run_is_refused_before_anything_is_sent(tmp_path, main, cache):
    """`run difficulty IN OUT --cache OUT` paid for every request, then wrote OUT's rows over the cache."""
    rows = tmp_path / "in.jsonl"
    write_rows(rows_to_dataset([make_row(source="medqa", row_id="medqa:1", question="Which drug is first line?",
                                         options=["a", "b"], answer_idx=0, raw={})]), rows)
    said = main("run", "difficulty", rows, tmp_path / "out.jsonl", "--student", "m=http://127.0.0.1:9/v1",
                "--cache", tmp_path / cache)
    assert said.returncode == 2 and f"the reply cache {tmp_path / cache} is also" in said.stderr, said.stderr


# A file run that stops while it reads its rows, until the test kills it.
STALLED_FILE_RUN = """import sys, time
import m1data.reading.readers as readers
from m1data.jobs import run_dedup_file

def stall(*args, **kwargs):
    print("reading", flush=True)
    time.sleep(60)

readers.read_rows = stall
run_dedup_file(sys.argv[1], sys.argv[2])
"""


def test_a_second_file_run_into_the_same_out_is_refused(tmp_path, main):
    """Two file runs writing one OUT ran side by side: each wrote OUT, its dropped file and its
    statistics in turn (OUT from one run beside the other's statistics), and two LLM runs paid
    for the same requests twice. Now the second refuses at once, in one line naming OUT; a run
    into another OUT of the same folder goes ahead, and the lock goes with its holder's process."""
    from m1data.errors import UserError
    from m1data.jobs import run_dedup_file
    from m1data.running.pipeline import RunLocked

    rows = _dedup_input(tmp_path)
    out = tmp_path / "out" / "deduped.parquet"
    holder = subprocess.Popen([sys.executable, "-c", STALLED_FILE_RUN, str(rows), str(out)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "reading"
        with pytest.raises(RunLocked, match=f"pid {holder.pid}") as err:
            run_dedup_file(rows, out)
        assert isinstance(err.value, UserError) and str(out) in str(err.value)
        proc = main("dedup", rows, out)
        said = " ".join(proc.stderr.split())  # the terminal may wrap the line
        assert proc.returncode == 2 and said.startswith("error: ") and str(out) in said, said
        assert not out.exists()
        assert run_dedup_file(rows, out.with_name("other.parquet"))["rows_out"] == 3  # another OUT: not held
    finally:
        holder.kill()
        holder.wait()
    assert run_dedup_file(rows, out)["rows_out"] == 3  # the killed holder's lock went with it
    assert sorted(p.name for p in out.parent.iterdir()) == [  # and no lock file is left behind
        "deduped.dropped.parquet", "deduped.parquet", "deduped.stats.json",
        "other.dropped.parquet", "other.parquet", "other.stats.json"]
