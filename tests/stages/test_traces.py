"""Teacher traces end to end against a scripted teacher: both reply shapes, every rejection
reason, truncations never paid twice, dry runs, file I/O, and no secret anywhere on disk."""

from __future__ import annotations

import re

import dataclasses
import json
import pickle
from pathlib import Path

import datasets
import pytest
from llm_server import Received, Response, chat, error, llm_server  # noqa: F401
from stage_doubles import Given

from m1data.llm import RetryPolicy
from m1data.llm.stages import LLMRuntime
from m1data.reading.readers import read_rows, write_rows
from m1data.running.pipeline import (
    StageIncomplete,
    run_pipeline,
)
from m1data.schema import LETTERS, make_row, rows_to_dataset
from m1data.stages.traces import TeacherTraces, TracesConfig, run_traces_file

RUNTIME_KEYS = {f.name for f in dataclasses.fields(LLMRuntime)}

TEACHER = "deepseek-reasoner"
SECRET = "sk-m1data-test-0123456789abcdef-SECRET"

# question number -> how the teacher answers it
SCRIPT = {
    0: "right_separate",  # reasoning_content + content, right answer
    1: "right_inline",  # <think>...</think> then the right answer
    2: "wrong",
    3: "truncated",  # finish_reason length, thinking never closed
    4: "filtered",
    5: "refused_400",
    6: "down",  # 500 on every attempt
    7: "no_answer",  # thinking closed, nothing after it
    8: "right_separate",
}


def make_rows() -> datasets.Dataset:
    rows = [
        make_row(
            source="medmcqa",
            row_id=f"t{i}",
            question=f"Trace question {i}: which nerve supplies muscle {i}?",
            options=[f"nerve {i}-{k}" for k in range(4)],
            answer_idx=(i * 3) % 4,
            raw={"n": i},
        )
        for i in SCRIPT
    ]
    return rows_to_dataset(rows)


ROWS = make_rows()
BY_PROMPT = {row["prompt"]: row for row in ROWS}


def teacher(req: Received) -> Response:
    row = BY_PROMPT[req.text.split("\n", 1)[1]]
    right, wrong = LETTERS[row["answer_idx"]], LETTERS[(row["answer_idx"] + 1) % 4]
    kind = SCRIPT[int(row["id"][1:])]
    if kind == "right_separate":
        return chat(
            f"**Answer:** \\boxed{{{right}}}",
            reasoning=f"Thinking about {row['id']}... so {right}.",
            prompt_tokens=60,
            completion_tokens=700,
        )
    if kind == "right_inline":
        return chat(
            f"<think>\nInline thoughts on {row['id']}.\n</think>\n\nThe answer is \\boxed{{{right}}}.",
            prompt_tokens=60,
            completion_tokens=500,
        )
    if kind == "wrong":
        return chat(f"\\boxed{{{wrong}}}", reasoning="Confident but wrong.")
    if kind == "truncated":
        return chat("<think>\nOn and on " * 20, finish_reason="length", completion_tokens=8000)
    if kind == "filtered":
        return chat("", finish_reason="content_filter")
    if kind == "refused_400":
        return error(400, "This model's maximum context length is exceeded")
    if kind == "down":
        return error(503, "overloaded", retry_after=0.01)
    return chat("<think>\nThought it through.\n</think>\n", completion_tokens=300)


@pytest.fixture
def secret_env(monkeypatch):
    monkeypatch.setenv("M1DATA_TEACHER_KEY", SECRET)


def config(server, tmp_path, **kwargs) -> TracesConfig:
    runtime = {"cache_path": str(tmp_path / "cache.sqlite"), **{k: kwargs.pop(k) for k in RUNTIME_KEYS & set(kwargs)}}
    runtime = LLMRuntime(progress=False, retries=RetryPolicy(max_attempts=3, base_delay=0.01), **runtime)
    return TracesConfig(model=TEACHER, base_url=server.base_url, api_key_env="M1DATA_TEACHER_KEY", runtime=runtime,
                        **kwargs)


def test_verified_rows_and_every_rejection(llm_server, tmp_path, secret_env):
    llm_server.handler = teacher
    result = TeacherTraces(config(llm_server, tmp_path)).run(ROWS, None)
    kept = {r["id"]: r for r in result.rows}
    assert sorted(kept) == ["t0", "t1", "t8"]
    t0, t1 = kept["t0"], kept["t1"]
    assert t0["reasoning"] == "Thinking about t0... so " + LETTERS[t0["answer_idx"]] + "."
    assert t0["teacher_reply"] == "**Answer:** \\boxed{" + LETTERS[t0["answer_idx"]] + "}"
    assert t1["reasoning"] == "Inline thoughts on t1."
    assert t1["teacher_reply"] == "The answer is \\boxed{" + LETTERS[t1["answer_idx"]] + "}."
    assert (t0["teacher_model"], t0["finish_reason"], t0["prompt_tokens"], t0["completion_tokens"]) == (
        TEACHER,
        "stop",
        60,
        700,
    )
    assert t0["teacher_answer"] == t0["answer_letter"]

    dropped = {r["id"]: r for r in result.dropped}
    assert {i: r["reason"] for i, r in dropped.items()} == {
        "t2": "wrong_answer",
        "t3": "truncated",
        "t4": "filtered",
        "t5": "error",
        "t6": "error",
        "t7": "no_answer",
    }
    t2 = dropped["t2"]
    assert t2["detail"] == f"answered {LETTERS[(t2['answer_idx'] + 1) % 4]}, expected {t2['answer_letter']}"
    assert t2["teacher_reply"].startswith("\\boxed{") and t2["reasoning"] == "Confident but wrong."
    assert dropped["t3"]["finish_reason"] == "length" and dropped["t3"]["teacher_reply"] == ""
    assert dropped["t3"]["reasoning"].startswith("On and on")
    assert dropped["t5"]["detail"].startswith("http_400: This model's maximum context length")
    assert dropped["t6"]["detail"].startswith("http_503")
    assert result.stats["verified"] == 3 and result.stats["sent"] == 9


def test_body_has_no_temperature_unless_configured(llm_server, tmp_path, secret_env):
    llm_server.handler = teacher
    TeacherTraces(config(llm_server, tmp_path)).run(ROWS.select([0]), None)
    [sent] = llm_server.requests
    assert sent.body == {
        "model": TEACHER,
        "max_tokens": 8000,
        "messages": [{"role": "user", "content": "Return your final response within \\boxed{}.\n" + ROWS[0]["prompt"]}],
    }
    assert sent.headers["authorization"] == f"Bearer {SECRET}"
    llm_server.reset()
    TeacherTraces(config(llm_server, tmp_path, temperature=0.6)).run(ROWS.select([0]), None)
    assert llm_server.requests[0].body["temperature"] == 0.6


def test_rerun_never_repays_truncations_but_resends_errors(llm_server, tmp_path, secret_env):
    llm_server.handler = teacher
    stage = TeacherTraces(config(llm_server, tmp_path))
    stage.run(ROWS, None)
    sends = llm_server.sends_per_body()
    assert sorted(sends.values()) == [1] * 8 + [3]  # the 503 row tried 3 times; nothing else retried
    llm_server.reset()
    result = stage.run(ROWS, None)
    assert llm_server.count() == 3  # only the transient failure goes out again (3 attempts)
    assert {r["id"] for r in result.dropped if r["reason"] == "truncated"} == {"t3"}
    llm_server.reset()
    TeacherTraces(config(llm_server, tmp_path, retry_failed=True)).run(ROWS, None)
    resent = {BY_PROMPT[r.text.split("\n", 1)[1]]["id"] for r in llm_server.requests}
    # recorded failures are re-sent on request (and the transient one anyway); a wrong answer is an
    # 'ok' reply, never re-sent
    assert resent == {"t3", "t4", "t5", "t6"}


def test_dry_run_needs_no_key_sends_and_writes_nothing(llm_server, tmp_path, monkeypatch, capsys, shown_output):
    monkeypatch.delenv("M1DATA_TEACHER_KEY", raising=False)
    src = write_rows(ROWS, tmp_path / "in.parquet")
    out = tmp_path / "traces.parquet"
    summary = run_traces_file(src, out, llm_server.base_url, TEACHER, api_key_env="M1DATA_TEACHER_KEY", dry_run=True)
    assert summary == {} and llm_server.count() == 0
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [src]  # not even an empty cache file
    err = capsys.readouterr().err
    assert "9 to send" in err and "$" in err  # deepseek-reasoner has a default price


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_run_traces_file(llm_server, tmp_path, secret_env, suffix):
    llm_server.handler = teacher
    src = write_rows(ROWS, tmp_path / f"in{suffix}")
    out = tmp_path / f"traces{suffix}"
    summary = run_traces_file(
        src, out, llm_server.base_url, TEACHER, "M1DATA_TEACHER_KEY",
        runtime=LLMRuntime(concurrency=4, progress=False, rpm=6000),
    )
    assert (summary["rows_out"], summary["rows_dropped"]) == (3, 6)
    assert sorted(read_rows(out)["id"]) == ["t0", "t1", "t8"]
    again = run_traces_file(src, tmp_path / f"tries{suffix}", llm_server.base_url, TEACHER, "M1DATA_TEACHER_KEY",
                            runtime=LLMRuntime(concurrency=4, progress=False, rpm=6000), attempts=3)
    assert again["rows_in"] == again["rows_out"] + again["rows_dropped"]  # superseded tries are no dropped rows
    rejected = read_rows(tmp_path / f"traces.dropped{suffix}")
    assert sorted(rejected["reason"]) == ["error", "error", "filtered", "no_answer", "truncated", "wrong_answer"]
    assert "teacher_reply" in rejected.column_names



def test_secret_never_reaches_disk_or_logs(llm_server, tmp_path, secret_env, capfd, shown_output):
    seen = []

    def checking(req: Received) -> Response:
        seen.append(req.headers.get("authorization"))
        return teacher(req)

    llm_server.handler = checking
    run_dir = tmp_path / "run"
    cfg = config(llm_server, tmp_path, cache_path=None)
    cfg.runtime.progress = True
    stage = TeacherTraces(cfg)
    with pytest.raises(StageIncomplete):  # the "down" row failed transiently
        run_pipeline([Given(ROWS), stage], run_dir)
    run_traces_file(
        write_rows(ROWS, tmp_path / "in.jsonl"),
        tmp_path / "out.jsonl",
        llm_server.base_url,
        TEACHER,
        "M1DATA_TEACHER_KEY",
        runtime=LLMRuntime(progress=True),
    )
    assert set(seen) == {f"Bearer {SECRET}"}  # the key was used...
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {
        "manifest.json",
        "rows.parquet",
        "dropped.parquet",
        "llm_cache.sqlite",
        "out.jsonl",
        "out.dropped.jsonl",
        "out.llm_cache.sqlite",
    } <= names
    for path in files:  # ...and is nowhere on disk (sqlite WAL and shm files included)
        assert SECRET.encode() not in path.read_bytes(), path
    out, err = capfd.readouterr()
    assert SECRET not in out + err
    engine = stage.engine(stage.endpoints()[0])
    assert SECRET not in repr(stage.config) + repr(engine) + str(stage.config_dict())
    assert SECRET.encode() not in pickle.dumps(stage)  # what a Ray worker receives: the config, no live engine
    assert "M1DATA_TEACHER_KEY" in (run_dir / "01_traces" / "manifest.json").read_text(encoding="utf-8")  # the name, not the value


def test_in_a_pipeline(llm_server, tmp_path, secret_env):
    llm_server.handler = teacher
    run_dir = tmp_path / "run"
    with pytest.raises(StageIncomplete, match="1 request failed transiently"):  # the 503; the 400 is an outcome
        run_pipeline([Given(ROWS), TeacherTraces(config(llm_server, tmp_path, cache_path=None))], run_dir)
    manifest = json.loads((run_dir / "01_traces" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["complete"] is False and manifest["transient_failures"] == 1
    assert manifest["rows_out"] == 3
    assert manifest["drops"] == {
        "error": {"medmcqa": 2},
        "filtered": {"medmcqa": 1},
        "no_answer": {"medmcqa": 1},
        "truncated": {"medmcqa": 1},
        "wrong_answer": {"medmcqa": 1},
    }
    assert manifest["stats"]["completion_tokens_sent"] > 0
    assert Path(run_dir / "cache" / "01_traces" / "llm_cache.sqlite").exists()


def test_several_or_no_stated_options_are_never_verified(llm_server, tmp_path, secret_env):
    """A reply naming two options (one of them right) or none is rejected with its own reason,
    and every kept row says which rule read its answer."""
    replies = {
        0: lambda right, wrong: f"{right}\n\nOption {right} is right; {wrong} is not.",  # answer first
        1: lambda right, wrong: f"The answer is {right} and {wrong}.",
        2: lambda right, wrong: "I cannot decide between them.",
        3: lambda right, wrong: f"{wrong},{right}",
    }

    def several(req: Received) -> Response:
        row = BY_PROMPT[req.text.split("\n", 1)[1]]
        right, wrong = LETTERS[row["answer_idx"]], LETTERS[(row["answer_idx"] + 1) % 4]
        return chat(replies[int(row["id"][1:])](right, wrong), reasoning="Thinking.")

    llm_server.handler = several
    rows = ROWS.select(range(4))
    result = TeacherTraces(config(llm_server, tmp_path)).run(rows, None)
    assert [(r["id"], r["answer_rule"], r["teacher_answer"] == r["answer_letter"]) for r in result.rows] == [
        ("t0", "statement", True)
    ]
    dropped = {r["id"]: (r["reason"], r["detail"]) for r in result.dropped}
    right1, wrong1 = rows[1]["answer_letter"], LETTERS[(rows[1]["answer_idx"] + 1) % 4]
    assert dropped["t1"] == ("multiple_answers", f"states {', '.join(sorted([right1, wrong1]))}")
    assert dropped["t2"] == ("no_answer", "the reply states no option")
    assert dropped["t3"][0] == "multiple_answers"


def test_run_traces_reads_several_files_or_a_folder(llm_server, tmp_path, secret_env):
    """`m1data run traces A B OUT` and `m1data run traces FOLDER OUT` go through one stage call:
    one cache, so the folder run after the two-file run sends nothing."""
    from typer.testing import CliRunner

    from m1data.cli import app

    asked: list[str] = []

    def recording(req: Received) -> Response:
        asked.append(BY_PROMPT[req.text.split("\n", 1)[1]]["id"])
        return teacher(req)

    llm_server.handler = recording
    shards = tmp_path / "shards"
    shards.mkdir()
    first = write_rows(ROWS.select(range(5)), shards / "part-0.parquet")
    second = write_rows(ROWS.select(range(5, len(ROWS))), shards / "part-1.parquet")
    common = ["--base-url", llm_server.base_url, "--model", TEACHER, "--api-key-env", "M1DATA_TEACHER_KEY",
              "--cache", str(tmp_path / "cache.sqlite")]
    result = CliRunner().invoke(app, ["run", "traces", str(first), str(second), str(tmp_path / "a.jsonl"), *common])
    assert result.exit_code == 1, result.output  # t6 failed transiently: written, but not finished
    first_run = len(asked)
    result = CliRunner().invoke(app, ["run", "traces", str(shards), str(tmp_path / "b.jsonl"), *common])
    assert sorted(read_rows(tmp_path / "a.jsonl")["id"]) == sorted(read_rows(tmp_path / "b.jsonl")["id"]) == [
        "t0", "t1", "t8"
    ]
    assert len(read_rows(tmp_path / "b.dropped.jsonl")) == len(ROWS) - 3
    assert result.exit_code == 1, result.output
    assert set(asked[first_run:]) == {"t6"}  # only the transient failure (t6, always 503) is tried again

    other = write_rows(datasets.Dataset.from_dict({"id": ["x"]}), tmp_path / "other.parquet")
    result = CliRunner().invoke(app, ["run", "traces", str(first), str(other), str(tmp_path / "c.jsonl"), *common])
    assert result.exit_code != 0 and "inputs read together must match" in str(result.exception)


# ---------------------------------------------------------------------------------------------
# New teachers safely: a preflight sample, and the model the server says it served


def test_a_teacher_without_reasoning_stops_after_the_preflight_sample(llm_server, tmp_path, secret_env):
    from m1data.stages.traces import TeacherWithoutReasoning

    llm_server.handler = lambda req: chat("The answer is \\boxed{A}.", model="gpt-4o-mini-2024-07-18")
    with pytest.raises(TeacherWithoutReasoning, match="none of the 3 preflight answers has reasoning") as err:
        TeacherTraces(config(llm_server, tmp_path)).run(ROWS, None)
    assert llm_server.count() == 3  # the sample, not the 9 rows
    assert "gpt-4o-mini-2024-07-18" in str(err.value) and "other 6 requests" in str(err.value)

    # meant to answer without thinking: the sample's replies come from the cache, not paid again
    result = TeacherTraces(config(llm_server, tmp_path, require_reasoning=False)).run(ROWS, None)
    assert llm_server.count() == 9 and result.stats["cached"] == 3
    assert result.stats["preflight"] == {}


def test_the_served_model_is_recorded_beside_the_alias(llm_server, tmp_path, secret_env):
    def served_as_release(req: Received) -> Response:
        response = teacher(req)
        if isinstance(response.body, dict) and "choices" in response.body:
            response.body["model"] = "deepseek-r1-0528"
        return response

    llm_server.handler = served_as_release
    result = TeacherTraces(config(llm_server, tmp_path)).run(ROWS, None)
    assert llm_server.count() == 9 + 2  # every row once (the 503 row retried), the preflight sample never twice
    assert set(result.rows["teacher_model"]) == {TEACHER}
    assert set(result.rows["teacher_served_model"]) == {"deepseek-r1-0528"}
    assert result.stats["served_models"] == {"deepseek-r1-0528": 7}  # every reply with choices (not the 400, 503)
    preflight = result.stats["preflight"]
    assert preflight["requests"] == 3 and preflight["with_reasoning"] >= 2
    assert preflight["served_models"] == ["deepseek-r1-0528"]
    # a re-run reads the served model back from the cache
    again = TeacherTraces(config(llm_server, tmp_path)).run(ROWS, None)
    assert set(again.rows["teacher_served_model"]) == {"deepseek-r1-0528"}


def test_blocks_on_ray_record_the_preflight_a_local_run_makes(llm_server, tmp_path, secret_env):
    """Each block of a Ray run checks its own first rows; the merged record kept the first block's,
    1 request where a local run's check had 3 when blocks held one row each, so the manifest and
    card of a Ray build said another check than the local build's."""
    llm_server.handler = teacher
    local = TeacherTraces(config(llm_server, tmp_path)).run(ROWS.select(range(6)), None).stats["preflight"]
    stage = TeacherTraces(config(llm_server, tmp_path))
    parts = [stage.run(ROWS.select([i]), None).stats for i in range(6)]
    assert [p["preflight"]["requests"] for p in parts] == [1] * 6
    merged = stage.merge_stats(parts, ROWS.select(range(6)))["preflight"]
    assert {k: v for k, v in merged.items() if k not in ("sent", "reused")} == \
        {k: v for k, v in local.items() if k not in ("sent", "reused")} and merged["requests"] == 3


def test_run_traces_command_stops_a_teacher_without_reasoning_unless_told(llm_server, tmp_path):
    from typer.testing import CliRunner

    from m1data.cli import app
    from m1data.stages.traces import TeacherWithoutReasoning

    llm_server.handler = lambda req: chat("\\boxed{A}")
    src = write_rows(ROWS, tmp_path / "in.parquet")
    args = ["run", "traces", str(src), str(tmp_path / "out.parquet"), "--base-url", llm_server.base_url,
            "--model", "chat-model"]
    stopped = CliRunner().invoke(app, args)
    assert isinstance(stopped.exception, TeacherWithoutReasoning) and llm_server.count() == 3
    told = CliRunner().invoke(app, [*args, "--no-require-reasoning"])
    assert told.exit_code == 0, told.output
    assert llm_server.count() == 9 and read_rows(tmp_path / "out.parquet")["teacher_served_model"][0] == "scripted"


def test_a_right_answer_without_reasoning_is_dropped_not_handed_to_the_format_stage(llm_server, tmp_path, secret_env):
    # The preflight passes (the other rows reason), but one right answer comes with no thinking at
    # all: kept, it would make FormatSFT refuse the whole build after tagging was paid for.
    from m1data.stages.formatting import to_sft

    def one_without_thinking(req: Received) -> Response:
        row = BY_PROMPT[req.text.split("\n", 1)[1]]
        right = LETTERS[row["answer_idx"]]
        return chat(f"\\boxed{{{right}}}", reasoning="" if row["id"] == "t4" else f"Thinking on {row['id']}.")

    llm_server.handler = one_without_thinking
    result = TeacherTraces(config(llm_server, tmp_path)).run(ROWS, None)
    assert "t4" not in result.rows["id"] and len(result.rows) == len(ROWS) - 1
    assert result.dropped.filter(lambda r: r["id"] == "t4")["reason"] == ["no_reasoning"]
    to_sft(result.rows)  # every kept row can be formatted

    # a teacher meant to answer without thinking keeps it
    result = TeacherTraces(config(llm_server, tmp_path, require_reasoning=False)).run(ROWS, None)
    assert "t4" in result.rows["id"]


@pytest.mark.parametrize("stripped", [False, True], ids=["harmony_tokens", "tokens_stripped"])
def test_gpt_oss_channels_are_thinking_and_answer(llm_server, tmp_path, secret_env, stripped):
    # gpt-oss served without its reasoning parser puts both channels in `content`. Its analysis
    # drafts a box; only the final channel answers. Even rows: draft wrong, final right (kept,
    # with the analysis as its reasoning); odd rows: draft right, final wrong (never kept).
    def gpt_oss(req: Received) -> Response:
        row = BY_PROMPT[req.text.split("\n", 1)[1]]
        right, wrong = LETTERS[row["answer_idx"]], LETTERS[(row["answer_idx"] + 1) % 4]
        draft, final = (wrong, right) if int(row["id"][1:]) % 2 == 0 else (right, wrong)
        analysis = f"Weighing {row['id']}: maybe \\boxed{{{draft}}}? The answer is {draft}? Check again."
        if stripped:
            return chat(f"analysis{analysis}assistantfinal**Answer: {final}**")
        return chat(f"<|channel|>analysis<|message|>{analysis}<|end|><|start|>assistant<|channel|>final"
                    f"<|message|>**Answer: {final}**<|return|>")

    llm_server.handler = gpt_oss
    result = TeacherTraces(config(llm_server, tmp_path)).run(ROWS, None)
    assert sorted(result.rows["id"]) == sorted(i for i in ROWS["id"] if int(i[1:]) % 2 == 0)
    assert all(r.startswith("Weighing") and "<|" not in r for r in result.rows["reasoning"])
    assert set(result.rows["teacher_reply"]) == {f"**Answer: {x}**" for x in result.rows["answer_letter"]}
    assert set(result.dropped["reason"]) == {"wrong_answer"}


def test_deepseek_without_a_named_key_variable_reads_the_one_a_build_reads(tmp_path, monkeypatch):
    """The teacher at DeepSeek's API with no key variable named: a build's config read
    DEEPSEEK_API_KEY (TracesConfig's default), while `m1data run traces` and `run_traces_file`
    sent no key at all (offline: a raw connection error; online: every request refused). The
    key variable comes from one function now, and both doors stop on the same line."""
    from typer.testing import CliRunner

    from m1data.cli import app
    from m1data.jobs import build_config

    monkeypatch.delenv("DEEPSEEK_API_KEY", raising=False)
    rows = write_rows(ROWS.select(range(2)), tmp_path / "in.jsonl")
    teacher = {"model": "deepseek-reasoner", "base_url": "https://api.deepseek.com"}
    built = TeacherTraces(build_config("m23k", {"traces": teacher}).traces).preflight()
    assert built is not None and "DEEPSEEK_API_KEY" in built and "is not set" in built
    result = CliRunner().invoke(app, ["run", "traces", str(rows), str(tmp_path / "out.jsonl"),
                                      "--base-url", teacher["base_url"], "--model", teacher["model"]])
    assert str(result.exception) == built
    with pytest.raises(Exception) as raised:
        run_traces_file(rows, tmp_path / "out.jsonl", teacher["base_url"], teacher["model"])
    assert str(raised.value) == built


def test_a_thinking_that_stopped_without_an_answer_is_tried_anew_not_paid_again(llm_server, tmp_path, secret_env):
    # Try 1 of every question: a reasoning parser's reply for a thinking block never closed
    # (content null, finish "stop"); try 2 answers. It was a transient failure: the same request
    # resent on every retry, the stage incomplete, and the next run paying for it again.
    def stops_then_answers(req: Received) -> Response:
        row = BY_PROMPT[req.text.split("\n", 1)[1]]
        if req.body["seed"] == 7:
            return chat(None, reasoning=f"On {row['id']}, still thinking", completion_tokens=900)
        return chat(f"\\boxed{{{LETTERS[row['answer_idx']]}}}", reasoning="Done thinking.")

    llm_server.handler = stops_then_answers
    stage = TeacherTraces(config(llm_server, tmp_path, attempts=2, temperature=0.6, extra_params={"seed": 7}))
    result = stage.run(ROWS, None)
    assert sorted(result.rows["id"]) == sorted(ROWS["id"]) and set(result.rows["attempt"]) == {2}
    assert set(result.dropped["reason"]) == {"no_answer"} and all(result.dropped["superseded"])
    assert llm_server.count() == 2 * len(ROWS) and result.transient_failures == 0
    TeacherTraces(config(llm_server, tmp_path, attempts=2, temperature=0.6, extra_params={"seed": 7})).run(ROWS, None)
    assert llm_server.count() == 2 * len(ROWS)  # a second run pays for nothing


@pytest.mark.parametrize("attempts", [1, 2])
def test_gpt_oss_replies_cached_before_the_channel_split_are_read_as_today(llm_server, tmp_path, secret_env, attempts):
    """A cache written before gpt-oss channels were split (2457a92) holds each reply's whole
    content as its text, with no reasoning. Verdicts are not stored but graded anew from the text;
    that text, read whole, is graded by the analysis channel's drafts and looks reasoning-less. A
    rerun from the cache reads it as the engines split it today: the same rows as a fresh run,
    nothing sent again."""
    import sqlite3

    contents: dict[str, str] = {}

    def gpt_oss(req: Received) -> Response:
        row = BY_PROMPT[req.text.split("\n", 1)[1]]
        right, wrong = LETTERS[row["answer_idx"]], LETTERS[(row["answer_idx"] + 1) % 4]
        draft, final = (wrong, right) if int(row["id"][1:]) % 2 == 0 else (right, wrong)
        content = (f"<|channel|>analysis<|message|>Weighing {row['id']}: maybe \\boxed{{{draft}}}?<|end|>"
                   f"<|start|>assistant<|channel|>final<|message|>**Answer: {final}**<|return|>")
        contents[req.text] = content
        return chat(content)

    llm_server.handler = gpt_oss
    fresh = TeacherTraces(config(llm_server, tmp_path, attempts=attempts)).run(ROWS, None)
    assert sorted(fresh.rows["id"]) == sorted(i for i in ROWS["id"] if int(i[1:]) % 2 == 0)
    with sqlite3.connect(tmp_path / "cache.sqlite") as db:  # what the engine stored before the split
        for key, body in db.execute("SELECT key, request FROM replies").fetchall():
            text = json.loads(body)["messages"][0]["content"]
            db.execute("UPDATE replies SET text = ?, reasoning = NULL WHERE key = ?", (contents[text], key))
    sent = llm_server.count()

    again = TeacherTraces(config(llm_server, tmp_path, attempts=attempts)).run(ROWS, None)
    assert llm_server.count() == sent and again.stats["sent"] == 0
    for column in ("id", "reasoning", "teacher_reply", "answer_letter"):
        assert sorted(again.rows[column]) == sorted(fresh.rows[column]), column
    assert sorted(again.dropped["reason"]) == sorted(fresh.dropped["reason"])


@pytest.mark.parametrize("key", ["sk-echo-0123456789abcdef-KEY", "k3Y9zQ"])
def test_a_server_that_echoes_the_key_gets_it_into_no_file_and_no_output(llm_server, tmp_path, monkeypatch, capfd,
                                                                         key):
    """`m1data run traces` against a teacher that quotes the key back in every way it can (answers,
    reasoning, model names, refusals, 5xx bodies, bodies that are not JSON; as it is, URL-encoded,
    base64-encoded). A 6-character key quoted URL-encoded (`Bearer%20k3Y9zQ`) reached the reply
    cache and the dropped rows."""
    from key_echo import echoing, leaked
    from typer.testing import CliRunner

    from m1data.cli import app

    def right(req: Received) -> str:
        return f"\\boxed{{{LETTERS[BY_PROMPT[req.text.split(chr(10), 1)[1]]['answer_idx']]}}}"

    monkeypatch.setenv("M1DATA_ECHO_KEY", key)
    llm_server.handler = echoing(right)
    src = write_rows(ROWS, tmp_path / "in.jsonl")
    args = ["run", "traces", str(src), str(tmp_path / "out.jsonl"), "--base-url", llm_server.base_url, "--model",
            TEACHER, "--api-key-env", "M1DATA_ECHO_KEY", "--request-attempts", "2", "--no-require-reasoning"]
    shown = ""
    for again in ([], ["--retry-failed"]):
        result = CliRunner().invoke(app, args + again)
        assert result.exit_code == 0, result.output
        shown += result.output
    assert {r.headers.get("authorization") for r in llm_server.requests} == {f"Bearer {key}"}  # the key was sent...
    assert len(read_rows(tmp_path / "out.jsonl")) > 0 and len(read_rows(tmp_path / "out.dropped.jsonl")) > 0
    out, err = capfd.readouterr()
    assert leaked(key, tmp_path, shown + out + err) == []  # ...and came back into nothing written or shown


def test_a_preflight_call_that_failed_transiently_is_counted_as_sent_once(llm_server, tmp_path, secret_env):
    """t0, in the preflight sample, fails with a 503 on every one of its 3 tries there and is
    answered when the main run sends it again: one request sent (with 3 retries), not two."""
    failed = {"t0": 0}

    def first_tries_overloaded(req: Received) -> Response:
        row = BY_PROMPT[req.text.split("\n", 1)[1]]
        if row["id"] == "t0" and failed["t0"] < 3:
            failed["t0"] += 1
            return error(503, "overloaded", retry_after=0.01)
        return teacher(req)

    llm_server.handler = first_tries_overloaded
    result = TeacherTraces(config(llm_server, tmp_path)).run(ROWS, None)
    stats = result.stats
    assert "t0" in result.rows["id"] and stats["preflight"]["sent"] == 3 and stats["preflight"]["reused"] == 2
    assert llm_server.count() == 14  # t0 4 times, the "down" row 3 times, the other 7 once
    assert (stats["sent"], stats["cached"]) == (len(ROWS), 0)  # every request went out once; none was cached before
    assert stats["retries"] == 14 - len(ROWS)
    assert (stats["by_attempt"]["1"]["sent"], stats["by_attempt"]["1"]["cached"]) == (len(ROWS), 0)


@pytest.mark.parametrize("attempts", [1, 2])
def test_the_console_line_counts_the_preflight_sample_as_sent(llm_server, tmp_path, secret_env, caplog, attempts):
    """The preflight sample's replies are read back from the cache by the main run: the manifest
    counted them as sent, while the run's line on the console said they came from the cache."""
    import logging

    llm_server.handler = teacher
    cfg = config(llm_server, tmp_path, attempts=attempts)
    cfg = dataclasses.replace(cfg, runtime=dataclasses.replace(cfg.runtime, progress=True))
    with caplog.at_level(logging.INFO, logger="m1data.llm"):
        stats = TeacherTraces(cfg).run(ROWS, None).stats
    assert stats["cached"] == 0 and stats["preflight"]["reused"] == 3
    (line,) = [r.getMessage() for r in caplog.records if "; outcomes: " in r.getMessage()]
    sent, cached = re.search(r": sent ([\d,]+) \(.*?\), ([\d,]+) from cache", line).groups()
    assert (int(sent), int(cached)) == (stats["sent"], stats["cached"]), line


def test_rows_whose_prompt_shows_other_options_are_not_sent(llm_server, tmp_path, secret_env, caplog):
    """A row a researcher brings whose prompt lists its options in another order than `options`
    (or whose answer_letter names another option) is graded against options the teacher never
    saw: the audit's teacher, right as shown, was dropped as wrong, and one wrong as shown was
    kept as verified. Such rows are not sent, and are dropped with the reason."""
    options = ["Aortic stenosis", "Mitral regurgitation", "Mitral stenosis", "Tricuspid stenosis"]
    shown = "Which lesion?\nA. Mitral regurgitation\nB. Aortic stenosis\nC. Mitral stenosis\nD. Tricuspid stenosis"
    good = make_row(source="mine", row_id="good", question="Which lesion?", options=options, answer_idx=0,
                    raw={}, seed=None)
    rows = [good, {**good, "id": "swapped", "prompt": shown}, {**good, "id": "letter", "answer_letter": "B"},
            {**good, "id": "no_question", "question": " ", "prompt": good["prompt"].split("\n", 1)[1]},
            {**good, "id": "blank_column", "question": ""},  # its prompt still asks the question
            {**good, "id": "other_style", "prompt": "Which lesion?\n(A) Aortic stenosis (B) Mitral regurgitation\n"
                                                    "(C) Mitral stenosis (D) Tricuspid stenosis\nAnswer:"}]
    llm_server.handler = lambda req: chat("\\boxed{A}", reasoning="A, as shown.")
    result = TeacherTraces(config(llm_server, tmp_path)).run(rows_to_dataset(rows), None)
    assert sorted(result.rows["id"]) == ["blank_column", "good", "other_style"]  # another label style lists them too
    dropped = {r["id"]: r for r in result.dropped}
    assert {i: r["reason"] for i, r in dropped.items()} == {"swapped": "prompt_mismatch", "letter": "answer_mismatch",
                                                            "no_question": "empty_question"}
    assert "option A ('Aortic stenosis')" in dropped["swapped"]["detail"]
    assert llm_server.count() == 2  # none of them was sent (blank_column asks what good asks)
    assert "3 row(s) not sent" in caplog.text


def test_a_key_that_is_no_index_stops_the_stage_before_anything_is_sent(llm_server, tmp_path, secret_env):
    """A 1-based answer_idx column (4 of 4 options), or a row with no options, stops the stage
    naming the row: dropping only that row would grade the others one option off. It stopped
    when the replies were graded, after every request of the stage had been paid for."""
    from m1data.errors import UserError

    rows = [make_row(source="mine", row_id=f"r{i}", question="Which?", options=["a", "b", "c", "d"], answer_idx=i,
                     raw={}, seed=None) for i in range(4)]
    one_based = [{**r, "answer_idx": r["answer_idx"] + 1, "answer_letter": None, "answer_text": None} for r in rows]
    no_options = [*rows[:3], {**rows[3], "options": [], "answer_letter": None, "answer_text": None}]
    llm_server.handler = lambda req: chat("\\boxed{A}", reasoning="A.")
    for bad, named in ((one_based, "row 'r3' has answer_idx 4 and 4 option(s)"),
                       (no_options, "row 'r3' has answer_idx 3 and 0 option(s)")):
        with pytest.raises(UserError, match=re.escape(named) + ".*nothing was sent"):
            TeacherTraces(config(llm_server, tmp_path)).run(rows_to_dataset(bad), None)
    assert llm_server.count() == 0


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_whole_float_keys_pandas_wrote_are_graded_as_their_integers(shared_data, llm_server, tmp_path, secret_env,
                                                                     suffix):
    """Real MedQA rows that pandas rewrote after a hole in `answer_idx` (a frame keeps the float column
    once the row is gone: 2.0, 0.0) go through the teacher as the same rows with integer keys do.
    The stage stopped ("row ... has answer_idx 2.0 and 4 option(s)"), though 2.0 names option C."""
    from m1data.reading.sources import load_source

    medqa = shared_data / "raw/medqa/4_options_phrases_no_exclude_test.jsonl"
    loaded = load_source("medqa", medqa).rows.select(range(6))
    right = {row["prompt"]: row["answer_letter"] for row in loaded}
    wrong = {letter: LETTERS[(LETTERS.index(letter) + 1) % 4] for letter in "ABCD"}

    def teacher_of(req: Received) -> Response:  # right on the even rows, wrong on the odd ones
        prompt = req.body["messages"][0]["content"].split("\n", 1)[1]
        letter = right[prompt] if list(right).index(prompt) % 2 == 0 else wrong[right[prompt]]
        return chat(f"\\boxed{{{letter}}}", reasoning=f"{letter}, surely.")

    frame = loaded.to_pandas()
    frame["answer_idx"] = frame["answer_idx"].astype("float64")  # as a column that had a null keeps it
    written = tmp_path / f"rows{suffix}"
    if suffix == ".parquet":
        frame.to_parquet(written)
    else:
        frame.to_json(written, orient="records", lines=True)
    llm_server.handler = teacher_of
    results = [TeacherTraces(config(llm_server, tmp_path / name)).run(rows, None)
               for name, rows in (("ints", loaded), ("floats", read_rows(written)))]
    assert [r.rows["id"] for r in results] == [loaded["id"][0::2]] * 2
    assert [r.dropped["reason"] for r in results] == [["wrong_answer"] * 3] * 2
    assert results[1].rows["answer_idx"] == loaded["answer_idx"][0::2]
    assert results[1].rows.features["answer_idx"].dtype == "int64"


def test_a_teacher_or_tagger_on_another_server_gets_no_provider_key_unless_named(llm_server, tmp_path, monkeypatch):
    """A config's teacher (or tagger) at some base_url with no key variable: the default named
    DEEPSEEK_API_KEY (OPENAI_API_KEY for the tagger) whatever the host, and that key went out with
    every request to the other server (audit). Now a provider's variable is read on its own host only."""
    from m1data.stages.mesh import MeshConfig, MeshTagger

    monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-deepseek-must-stay-home")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-must-stay-home")
    llm_server.handler = teacher
    runtime = LLMRuntime(progress=False, retries=RetryPolicy(max_attempts=1, base_delay=0.01),
                         cache_path=str(tmp_path / "cache.sqlite"))
    TeacherTraces(TracesConfig(model=TEACHER, base_url=llm_server.base_url, runtime=runtime)).run(ROWS.select(range(2)), None)
    llm_server.handler = lambda req: chat("07")
    MeshTagger(MeshConfig(model="tagger", base_url=llm_server.base_url, runtime=runtime)).run(ROWS.select(range(2)), None)
    sent = {r.headers.get("authorization") for r in llm_server.requests}
    assert llm_server.count() == 4 and sent == {None}
