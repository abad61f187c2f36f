"""The difficulty filter end to end against scripted students: the exact prompt and sampling sent,
per-student columns, every drop rule, failed calls, re-runs that pay nothing twice, file I/O,
and the pipeline manifest."""

from __future__ import annotations

import dataclasses
import json

import datasets
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from llm_server import Received, Response, chat, error, llm_server  # noqa: F401
from stage_doubles import Given

from m1data.llm import RetryPolicy
from m1data.llm.stages import LLMRuntime
from m1data.reading.readers import read_rows, write_rows
from m1data.running.pipeline import (
    StageIncomplete,
    load_stage_dropped,
    read_manifests,
    run_pipeline,
)
from m1data.schema import LETTERS, make_row, rows_to_dataset
from m1data.stages.difficulty import (
    DifficultyConfig,
    DifficultyFilter,
    StudentConfig,
    decide,
    run_difficulty_file,
    short_name,
    student_from_spec,
)

RUNTIME_KEYS = {f.name for f in dataclasses.fields(LLMRuntime)}

SMALL = "small/Model-7B"
LARGE = "large/Model-32B"

# question number -> what each student does: a letter offset from the right answer (0 = right),
# "fail" (500 forever), or "cut" (truncated reply)
SCRIPT = {
    0: {SMALL: 0, LARGE: 0},
    1: {SMALL: 0, LARGE: 1},
    2: {SMALL: 1, LARGE: 0},
    3: {SMALL: 1, LARGE: 1},
    4: {SMALL: "fail", LARGE: 1},
    5: {SMALL: "fail", LARGE: 0},
    6: {SMALL: "cut", LARGE: 2},
    7: {SMALL: 2, LARGE: 3},
}


def make_rows(n: int = len(SCRIPT)) -> datasets.Dataset:
    rows = [
        make_row(
            source="medqa",
            row_id=f"q{i}",
            question=f"Question number {i}: which drug treats condition {i}?",
            options=[f"drug {i}-{k}" for k in range(4)],
            answer_idx=i % 4,
            raw={"n": i},
        )
        for i in range(n)
    ]
    return rows_to_dataset(rows)


ROWS = make_rows()
BY_PROMPT = {row["prompt"]: row for row in ROWS}


def student_handler(req: Received) -> Response:
    prompt = req.text.split("\n", 1)[1]
    row = BY_PROMPT[prompt]
    action = SCRIPT[int(row["id"][1:])][req.model]
    if action == "fail":
        return error(500, "student server crashed", retry_after=0.01)
    if action == "cut":
        return chat("Let me think about " * 50, finish_reason="length", completion_tokens=4000)
    letter = LETTERS[(row["answer_idx"] + action) % 4]
    return chat(f"Thinking briefly.\nThe answer is \\boxed{{{letter}}}.", prompt_tokens=30, completion_tokens=12)


def config(server, tmp_path, **kwargs) -> DifficultyConfig:
    students = [
        StudentConfig(SMALL, server.base_url, short="small"),
        StudentConfig(LARGE, server.base_url, short="large"),
    ]
    runtime = {"cache_path": str(tmp_path / "cache.sqlite"), **{k: kwargs.pop(k) for k in RUNTIME_KEYS & set(kwargs)}}
    runtime = LLMRuntime(progress=False, retries=RetryPolicy(max_attempts=2, base_delay=0.01), **runtime)
    return DifficultyConfig(students=students, runtime=runtime, **kwargs)


def ids(ds: datasets.Dataset) -> list[str]:
    return sorted(ds["id"])


def test_prompt_and_sampling_sent_exactly(llm_server, tmp_path):
    llm_server.handler = student_handler
    DifficultyFilter(config(llm_server, tmp_path)).run(ROWS.select([0]), None)
    bodies = sorted((r.body for r in llm_server.requests), key=lambda b: b["model"])
    prompt = ROWS[0]["prompt"]
    assert bodies == [
        {
            "model": LARGE,
            "messages": [{"role": "user", "content": "Return your final response within \\boxed{}.\n" + prompt}],
            "max_tokens": 4000,
            "temperature": 0.0,
        },
        {
            "model": SMALL,
            "messages": [{"role": "user", "content": "Return your final response within \\boxed{}.\n" + prompt}],
            "max_tokens": 4000,
            "temperature": 0.0,
        },
    ]


def test_drop_any_with_columns_errors_and_stats(llm_server, tmp_path):
    llm_server.handler = student_handler
    result = DifficultyFilter(config(llm_server, tmp_path)).run(ROWS, None)
    kept, dropped = result.rows, result.dropped
    assert ids(kept) == ["q3", "q6", "q7"]
    by_id = {r["id"]: r for r in dropped}
    assert {i: (r["reason"], r["detail"]) for i, r in by_id.items()} == {
        "q0": ("solved_by_student", "small,large"),
        "q1": ("solved_by_student", "small"),
        "q2": ("solved_by_student", "large"),
        "q4": ("student_error", "small: http_500: student server crashed"),
        "q5": ("solved_by_student", "large"),  # the large student's right answer decides
    }
    row = {r["id"]: r for r in kept}["q6"]
    assert row["student_small_status"] == "length" and row["student_small_correct"] is False
    assert row["student_large_answer"] == LETTERS[(row["answer_idx"] + 2) % 4] and row["student_large_correct"] is False
    q3 = {r["id"]: r for r in kept}["q3"]
    assert q3["student_small_reply"].endswith("\\boxed{" + LETTERS[(q3["answer_idx"] + 1) % 4] + "}.")
    assert set(dropped.column_names) >= {"id", "source", "reason", "detail", "student_small_correct"}

    small, large = result.stats["students"]["small"], result.stats["students"]["large"]
    assert (small["answered"], small["errors"], small["correct"]) == (6, 2, 2)
    assert small["accuracy"] == round(2 / 6, 4)
    assert (large["answered"], large["correct"], large["accuracy"]) == (8, 3, round(3 / 8, 4))
    assert result.stats["sent"] == 16 and result.stats["cached"] == 0


def test_rerun_pays_only_for_failed_calls(llm_server, tmp_path):
    llm_server.handler = student_handler
    stage = DifficultyFilter(config(llm_server, tmp_path))
    stage.run(ROWS, None)
    first = llm_server.count()
    assert first == 14 + 2 * 2  # 14 answered once, 2 failing calls tried twice each
    SCRIPT_FIXED = {4: {SMALL: 0, LARGE: 1}, 5: {SMALL: 1, LARGE: 0}}

    def fixed(req: Received) -> Response:
        row = BY_PROMPT[req.text.split("\n", 1)[1]]
        n = int(row["id"][1:])
        if n in SCRIPT_FIXED and req.model == SMALL:
            return chat(f"\\boxed{{{LETTERS[(row['answer_idx'] + SCRIPT_FIXED[n][SMALL]) % 4]}}}")
        return student_handler(req)

    llm_server.handler = fixed
    result = stage.run(ROWS, None)
    assert llm_server.count() == first + 2  # only the two failed calls went out again
    assert "student_error" not in result.dropped["reason"]
    assert result.stats["cached"] == 14 and result.stats["sent"] == 2


@pytest.mark.parametrize(
    "rule, kept",
    [
        ("all", ["q1", "q2", "q3", "q4", "q6", "q7"]),  # q5: small failed, large right -> undecided
        ("none", [f"q{i}" for i in range(8)]),
    ],
)
def test_other_drop_rules(llm_server, tmp_path, rule, kept):
    llm_server.handler = student_handler
    result = DifficultyFilter(config(llm_server, tmp_path, drop_rule=rule)).run(ROWS, None)
    assert ids(result.rows) == kept
    if rule == "all":
        assert {r["id"]: r["reason"] for r in result.dropped} == {"q0": "solved_by_student", "q5": "student_error"}


@pytest.mark.parametrize(
    "rule, correct, reason",
    [
        ("any", {"a": True, "b": None}, "solved_by_student"),
        ("any", {"a": False, "b": None}, "student_error"),
        ("any", {"a": False, "b": False}, None),
        ("all", {"a": True, "b": True}, "solved_by_student"),
        ("all", {"a": True, "b": False}, None),
        ("all", {"a": False, "b": None}, None),
        ("all", {"a": True, "b": None}, "student_error"),
        ("none", {"a": True, "b": True}, None),
    ],
)
def test_decide(rule, correct, reason):
    assert decide(rule, correct) == reason


def test_config_checks():
    assert short_name("Qwen/Qwen2.5-7B-Instruct") == "qwen2_5_7b_instruct"
    with pytest.raises(ValueError, match="drop_rule"):
        DifficultyConfig(drop_rule="some")
    with pytest.raises(ValueError, match="distinct"):
        DifficultyConfig(students=[StudentConfig("a/x", "u"), StudentConfig("b/x", "v")])


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_run_difficulty_file(llm_server, tmp_path, suffix):
    llm_server.handler = student_handler
    src = write_rows(ROWS, tmp_path / f"in{suffix}")
    out = tmp_path / f"hard{suffix}"
    summary = run_difficulty_file(
        src, out, [(SMALL, llm_server.base_url), (LARGE, llm_server.base_url)],
        runtime=LLMRuntime(progress=False, concurrency=4),
    )
    assert (summary["rows_in"], summary["rows_out"], summary["rows_dropped"]) == (8, 3, 5)
    assert len(read_rows(out)) == 3
    rejected = read_rows(tmp_path / f"hard.dropped{suffix}")
    assert sorted(set(rejected["reason"])) == ["solved_by_student", "student_error"]
    assert (tmp_path / "hard.llm_cache.sqlite").exists()
    assert "student_model_7b_correct" in read_rows(out).column_names


def test_dry_run_file(llm_server, tmp_path, capsys, shown_output):
    src = write_rows(ROWS, tmp_path / "in.parquet")
    out = tmp_path / "hard.parquet"
    assert run_difficulty_file(src, out, [(SMALL, llm_server.base_url)], dry_run=True) == {}
    assert llm_server.count() == 0 and not out.exists()
    assert not (tmp_path / "hard.llm_cache.sqlite").exists()  # a dry run creates no cache file
    assert "8 to send" in capsys.readouterr().err



def test_in_a_pipeline_cache_lives_in_the_state_dir(llm_server, tmp_path):
    llm_server.handler = student_handler
    cfg = config(llm_server, tmp_path, cache_path=None)
    run_dir = tmp_path / "run"
    with pytest.raises(StageIncomplete, match="2 requests failed transiently"):
        run_pipeline([Given(ROWS), DifficultyFilter(cfg)], run_dir)
    stage_dir = run_dir / "01_difficulty"
    assert (run_dir / "cache" / "01_difficulty" / "llm_cache.sqlite").exists()
    manifest = read_manifests(run_dir)[-1]
    assert manifest["drops"] == {"solved_by_student": {"medqa": 4}, "student_error": {"medqa": 1}}
    assert manifest["stats"]["students"]["large"]["accuracy"] == round(3 / 8, 4)
    assert len(load_stage_dropped(stage_dir)) == 5
    sent = llm_server.count()
    with pytest.raises(StageIncomplete):
        run_pipeline([Given(ROWS), DifficultyFilter(cfg)], run_dir, force=True)
    assert llm_server.count() == sent + 2 * 2  # forced re-run: only the 2 failing calls go out (2 attempts each)
    assert json.loads((stage_dir / "manifest.json").read_text(encoding="utf-8"))["stats"]["cached"] == 14


# ---------------------------------------------------------------------------------------------
# pass@n: a student sampled n times, and the rule that says when it solved a question


def bits_student(req: Received) -> Response:
    """Question q, sample k (from the seed, 100 + k - 1): right when bit k-1 of q is set."""
    from llm_server import try_number

    row = PASS_BY_PROMPT[req.text.split("\n", 1)[1]]
    q, k = int(row["id"][1:]), try_number(req, 100)
    offset = 0 if (q >> (k - 1)) & 1 else 1
    return chat(f"\\boxed{{{LETTERS[(row['answer_idx'] + offset) % 4]}}}")


PASS_ROWS = rows_to_dataset([
    make_row(source="medqa", row_id=f"p{q}", question=f"Pass question {q}: which drug?",
             options=[f"d{q}-{k}" for k in range(4)], answer_idx=q % 4, raw={}) for q in range(8)
])
PASS_BY_PROMPT = {r["prompt"]: r for r in PASS_ROWS}


@pytest.mark.parametrize(("rule", "solved_by"), [
    ("any", lambda q: q != 0), ("majority", lambda q: bin(q).count("1") >= 2), ("all", lambda q: q == 7)])
def test_a_student_sampled_n_times_solves_by_its_rule(llm_server, tmp_path, rule, solved_by):
    llm_server.handler = bits_student
    student = StudentConfig(SMALL, llm_server.base_url, short="s", samples=3, solved_if=rule)
    runtime = LLMRuntime(progress=False, cache_path=str(tmp_path / "cache.sqlite"))
    cfg = DifficultyConfig(students=[student], temperature=0.8, extra_params={"seed": 100}, runtime=runtime)
    result = DifficultyFilter(cfg).run(PASS_ROWS, None)
    assert llm_server.count() == 3 * len(PASS_ROWS) and max(llm_server.sends_per_body().values()) == 1
    assert sorted(result.dropped["id"]) == sorted(f"p{q}" for q in range(8) if solved_by(q))
    everything = {r["id"]: r for r in [*result.rows, *result.dropped]}
    for q in range(8):
        row = everything[f"p{q}"]
        assert row["student_s_verdicts"] == [bool((q >> k) & 1) for k in range(3)]
        assert row["student_s_correct"] == solved_by(q) and len(row["student_s_answers"]) == 3
    assert result.stats["students"]["s"]["samples"] == 3
    # Another rule later: every sample is cached, nothing is sent again.
    before = llm_server.count()
    other = dataclasses.replace(student, solved_if="all" if rule != "all" else "any")
    DifficultyFilter(dataclasses.replace(cfg, students=[other])).run(PASS_ROWS, None)
    assert llm_server.count() == before


def test_one_sample_is_the_papers_rule_with_no_extra_columns(llm_server, tmp_path):
    llm_server.handler = bits_student
    runtime = LLMRuntime(progress=False, cache_path=str(tmp_path / "cache.sqlite"))
    cfg = DifficultyConfig(students=[StudentConfig(SMALL, llm_server.base_url, short="s")], temperature=0.8,
                           extra_params={"seed": 100}, runtime=runtime)
    result = DifficultyFilter(cfg).run(PASS_ROWS, None)
    assert llm_server.count() == len(PASS_ROWS)
    assert sorted(result.dropped["id"]) == sorted(f"p{q}" for q in range(8) if q & 1)
    assert "student_s_verdicts" not in result.rows.column_names


def test_solved_with_failed_samples_decides_only_when_they_cannot_tip_it():
    from m1data.stages.difficulty import solved

    assert solved("any", [None, True, False]) is True
    assert solved("any", [None, False, False]) is None
    assert solved("majority", [True, True, None]) is True
    assert solved("majority", [False, False, None]) is False
    assert solved("majority", [True, False, None]) is None
    assert solved("all", [True, False, None]) is False
    assert solved("all", [True, True, None]) is None


def test_bad_sample_settings_are_one_line_errors():
    from m1data.errors import UserError

    with pytest.raises(UserError, match="samples"):
        StudentConfig(SMALL, "http://x", samples=0)
    with pytest.raises(UserError, match="solved_if"):
        StudentConfig(SMALL, "http://x", solved_if="most")


def test_each_student_records_the_model_its_server_said_answered(llm_server, tmp_path):
    """The card names the model that answered, not only the name the config asked for: an alias
    or the embedded server with another GGUF answers as another model."""
    llm_server.handler = student_handler
    stats = DifficultyFilter(config(llm_server, tmp_path)).run(ROWS, None).stats
    for short in ("small", "large"):
        served = stats["students"][short]["served_models"]
        assert list(served) == ["scripted"] and 0 < served["scripted"] <= len(ROWS)


def test_the_cli_names_student_columns_as_a_builds_config_does(llm_server, tmp_path):
    """paper.yaml names its students' columns by `short` (`student_qwen2_5_7b_*`); `run difficulty`
    could only name them after the model (`student_qwen2_5_7b_instruct_*`), so a file run could not
    reproduce a build's columns. `--student SHORT=MODEL=BASE_URL` gives the config's short, and the
    file run's rows are the build stage's, column for column."""
    import m1data
    from typer.testing import CliRunner

    from m1data.builders import default_config_path
    from m1data.cli import app

    llm_server.handler = lambda req: chat("The answer is \\boxed{B}.", prompt_tokens=30, completion_tokens=8)
    paper = m1data.build_config("m23k", default_config_path().with_name("paper.yaml")).difficulty
    students = [dataclasses.replace(s, base_url=llm_server.base_url) for s in paper.students]
    assert [s.short for s in students] == ["qwen2_5_7b", "qwen2_5_32b"]
    src = write_rows(ROWS, tmp_path / "in.jsonl")
    specs = [arg for s in students for arg in ("--student", f"{s.short}={s.model}={s.base_url}")]
    result = CliRunner().invoke(app, ["run", "difficulty", str(src), str(tmp_path / "out.jsonl"), *specs,
                                      "--drop-rule", "none"])
    assert result.exit_code == 0, result.output

    config = DifficultyConfig(students=students, drop_rule="none",
                              runtime=LLMRuntime(progress=False, cache_path=str(tmp_path / "build.sqlite")))
    built = DifficultyFilter(config).run(ROWS, None)
    from_cli = read_rows(tmp_path / "out.jsonl")
    assert {"student_qwen2_5_7b_correct", "student_qwen2_5_32b_correct"} <= set(from_cli.column_names)
    assert from_cli.column_names == built.rows.column_names
    assert list(from_cli) == list(built.rows)


SHORTS = st.from_regex(r"[a-z0-9_]{1,12}", fullmatch=True)
MODELS = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,10}(/[A-Za-z0-9._:-]{1,12})?", fullmatch=True)
BASE_URLS = st.one_of(st.just("embedded"), st.from_regex(r"https?://[a-z0-9.]{1,10}(:[0-9]{1,5})?(/[a-z0-9]{1,6}){0,2}",
                                                            fullmatch=True))


@settings(max_examples=200, deadline=None)
@given(short=SHORTS, model=MODELS, base_url=BASE_URLS)
def test_a_student_spec_reads_its_short_model_and_base_url(short, model, base_url):
    """`SHORT=MODEL=BASE_URL` gives the column name SHORT; `MODEL=BASE_URL` names it after the model."""
    assume(model.casefold() != "embedded")  # a base URL, not a model
    named = student_from_spec(f"{short}={model}={base_url}", "KEY_ENV")
    assert (named.short, named.model, named.base_url, named.api_key_env) == (short, model, base_url, "KEY_ENV")
    assert named.column == short
    plain = student_from_spec(f"{model}={base_url}")
    assert (plain.short, plain.model, plain.base_url, plain.column) == (None, model, base_url, short_name(model))
    for bad in (model, f"{model}=", f"={model}={base_url}", f"={base_url}"):
        with pytest.raises(ValueError, match=r"\[SHORT=\]MODEL=BASE_URL"):
            student_from_spec(bad)


@pytest.mark.parametrize("setting, said", [
    ({"rpm": 0}, "runtime.rpm must be above 0, got 0 (leave it out for no limit)"),
    ({"tpm": 0}, "runtime.tpm must be above 0"),
    ({"rpm": -5}, "runtime.rpm must be above 0"),
    ({"timeout": 0}, "runtime.timeout must be above 0 seconds"),
    ({"concurrency": 0}, "runtime.concurrency must be at least 1"),
])
def test_a_runtime_of_zero_is_refused_at_every_door_before_anything_is_sent(llm_server, tmp_path, setting, said):
    """`rpm: 0` sent with no limit at all (a ceiling was asked for) and `timeout: 0` timed every
    request out and stopped the run; each is one line when the config, the command or the object
    is made. Doors: Python, a build config, the command line (nothing reaches the server)."""
    import re
    import subprocess
    import sys

    import m1data
    from m1data.errors import UserError

    with pytest.raises(UserError, match=re.escape(said)):
        LLMRuntime(**setting)
    [(key, value)] = setting.items()
    config = tmp_path / "c.yaml"
    config.write_text(f"m23k:\n  difficulty:\n    runtime: {{{key}: {value}}}\n", encoding="utf-8")
    with pytest.raises(UserError, match=re.escape(said)):
        m1data.build_config("m23k", config)
    src = write_rows(ROWS, tmp_path / "in.jsonl")
    flag = {"rpm": "--rpm", "tpm": "--tpm", "timeout": "--timeout", "concurrency": "--concurrency"}[key]
    command = ["run", "difficulty", str(src), str(tmp_path / "out.jsonl"), "--student", f"s=m={llm_server.base_url}",
               flag, str(value)]
    done = subprocess.run([sys.executable, "-c", "from m1data.cli import main; main()", *command],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and said.split(", got")[0] in done.stderr, done.stderr[-2000:]
    assert llm_server.count() == 0
