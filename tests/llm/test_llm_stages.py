"""The one shape of the LLM stages (m1data.llm.stages.LLMStage): the difficulty filter, the teacher
and the LLM tagger call, cache, count and take their runtime flags the same way."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml
from m1data.builders import M1KConfig
from typer.testing import CliRunner

from m1data.cli import app
from m1data.config import ConfigError, load_config
from m1data.llm.stages import LLMRuntime, LLMStage
from m1data.reading.readers import write_rows
from m1data.running.pipeline import RunContext
from m1data.schema import make_row, rows_to_dataset
from m1data.stages.difficulty import DifficultyConfig, DifficultyFilter, StudentConfig
from m1data.stages.mesh import MeshConfig, MeshTagger
from m1data.stages.traces import TeacherTraces, TracesConfig

sys.path.insert(0, str(Path(__file__).parents[1]))
from llm_server import Received, Response, chat, llm_server  # noqa: E402,F401

VOCABULARY = {"requests", "sent", "cached", "failed", "retries", "prompt_tokens", "completion_tokens", "cost_sent"}
RUNTIME_FLAGS = ["--cache", "--concurrency", "--rpm", "--tpm", "--timeout", "--retry-failed", "--batch", "--prices",
                 "--dry-run"]


def answer(req: Received) -> Response:
    """Readable by every stage: a boxed letter for students and teacher, a code at the end for the tagger."""
    return chat("The answer is \\boxed{A}.\nSubject code: 07", reasoning="Option A fits.")


def rows():
    return rows_to_dataset([
        make_row(source="medqa", row_id=f"r{i}", question=f"Question {i}?", options=["w", "x", "y", "z"],
                 answer_idx=0, raw={"i": i})
        for i in range(5)
    ])


def stage(name: str, url: str) -> LLMStage:
    runtime = LLMRuntime(progress=False, concurrency=2)
    if name == "difficulty":
        return DifficultyFilter(DifficultyConfig(students=[StudentConfig("m", url, short="s")], drop_rule="none",
                                                 runtime=runtime))
    if name == "traces":
        return TeacherTraces(TracesConfig(model="m", base_url=url, api_key_env=None, runtime=runtime))
    return MeshTagger(MeshConfig(model="m", base_url=url, api_key_env=None, runtime=runtime))


@pytest.mark.parametrize("name", ["difficulty", "traces", "tag"])
def test_every_llm_stage_counts_its_calls_in_one_vocabulary(llm_server, tmp_path, name):
    llm_server.handler = answer
    ctx = RunContext(run_dir=tmp_path, stage_dir=tmp_path)
    first = stage(name, llm_server.base_url).run(rows(), ctx)
    assert VOCABULARY <= set(first.stats), sorted(VOCABULARY - set(first.stats))
    assert first.stats["requests"] == 5 and first.stats["sent"] == 5 == llm_server.count()
    assert (first.stats["cached"], first.stats["failed"]) == (0, 0)
    assert first.stats["prompt_tokens"] == 5 * 11 and first.stats["completion_tokens"] == 5 * 7
    assert len(first.rows) + len(first.dropped) == 5 and set(first.dropped["reason"]) <= {"wrong_answer"}

    again = stage(name, llm_server.base_url).run(rows(), ctx)  # a new stage object: only the cache remembers
    assert (again.stats["sent"], again.stats["cached"]) == (0, 5) and llm_server.count() == 5
    assert again.rows["id"] == first.rows["id"]


@pytest.mark.parametrize("command", ["difficulty", "traces", "tag"])
def test_run_commands_take_the_same_runtime_flags(command):
    result = CliRunner().invoke(app, ["run", command, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    missing = [flag for flag in RUNTIME_FLAGS if flag not in result.output]
    assert not missing, missing


def test_run_tag_dry_run_plans_and_sends_nothing(llm_server, tmp_path):
    """The tagger used to have no --dry-run, --rpm, --tpm or --retry-failed."""
    llm_server.handler = answer
    src = write_rows(rows(), tmp_path / "in.jsonl")
    result = CliRunner().invoke(app, ["run", "tag", str(src), str(tmp_path / "out.jsonl"), "--base-url",
                                      llm_server.base_url, "--model", "m", "--api-key-env", "", "--rpm", "60",
                                      "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "5 to send" in " ".join(result.output.split())
    assert llm_server.count() == 0 and not (tmp_path / "out.jsonl").exists()


def test_run_tag_sends_no_openai_key_to_another_server(llm_server, tmp_path, monkeypatch):
    """`run tag --base-url` elsewhere with no --api-key-env sent OPENAI_API_KEY there (audit)."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-must-stay-home")
    llm_server.handler = answer
    src = write_rows(rows(), tmp_path / "in.jsonl")
    result = CliRunner().invoke(app, ["run", "tag", str(src), str(tmp_path / "out.jsonl"), "--base-url",
                                      llm_server.base_url, "--model", "m"])
    assert result.exit_code == 0, result.output
    assert llm_server.count() == 5 and {r.headers.get("authorization") for r in llm_server.requests} == {None}


@pytest.mark.parametrize("command, section", [("difficulty", "difficulty"), ("traces", "traces"), ("tag", "mesh")])
def test_a_run_command_sends_what_its_config_sets_with_the_flags_given_over_it(llm_server, tmp_path, command, section):
    """A one-stage command could not send a config's other settings (a grammar, top_p, a chat
    template's switches: `extra_params`), so the same job through `build` and `run` differed
    (audit). `--config` starts from what the build's config sets; a flag given replaces it."""
    llm_server.handler = answer
    endpoint = {"base_url": llm_server.base_url, "model": "m", "api_key_env": None}
    stage = {"difficulty": {"students": [{**endpoint, "short": "s"}], "max_tokens": 77},
             "traces": {**endpoint, "max_tokens": 77, "top_p": 0.5, "require_reasoning": False},
             "tag": {**endpoint, "max_tokens": 77}}[command]
    stage["extra_params"] = {"grammar": "root ::= [A-D]"}
    config = tmp_path / "mine.yaml"
    config.write_text(yaml.safe_dump({"m23k": {section: stage}}), encoding="utf-8")
    src = write_rows(rows(), tmp_path / "in.jsonl")
    for out, flags in (("a.jsonl", []), ("b.jsonl", ["--max-tokens", "9"] if command != "tag" else ["--max-attempts", "1"])):
        result = CliRunner().invoke(app, ["run", command, str(src), str(tmp_path / out), "--config", str(config), *flags])
        assert result.exit_code == 0, result.output
    sent = [r.body for r in llm_server.requests]
    assert sent and all(body["grammar"] == "root ::= [A-D]" for body in sent)
    assert {body["max_tokens"] for body in sent} == ({77} if command == "tag" else {77, 9})
    if command == "traces":
        assert {body.get("top_p") for body in sent} == {0.5}


@pytest.mark.parametrize("command, section", [("traces", "traces"), ("tag", "mesh")])
def test_a_config_s_key_does_not_follow_the_run_to_another_server(llm_server, tmp_path, monkeypatch, command, section):
    """`--config paper --base-url ELSEWHERE` kept paper.yaml's key variable, and sent DeepSeek's
    (OpenAI's) key to the other server (review). Another server gets only a key named for it."""
    monkeypatch.setenv("M1DATA_PROVIDER_KEY", "sk-provider-must-stay-home")
    llm_server.handler = answer
    config = tmp_path / "mine.yaml"
    config.write_text(yaml.safe_dump({"m23k": {section: {"base_url": "https://api.deepseek.com", "model": "m",
                                                          "api_key_env": "M1DATA_PROVIDER_KEY"}}}), encoding="utf-8")
    src = write_rows(rows(), tmp_path / "in.jsonl")
    flags = ["--no-require-reasoning"] if command == "traces" else []
    result = CliRunner().invoke(app, ["run", command, str(src), str(tmp_path / "out.jsonl"), "--config", str(config),
                                      "--base-url", llm_server.base_url, *flags])
    assert result.exit_code == 0, result.output
    assert llm_server.count() and {r.headers.get("authorization") for r in llm_server.requests} == {None}


def test_a_runtime_key_left_at_the_stage_level_says_where_it_moved(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump({"m23k": {"traces": {"model": "m", "concurrency": 4}}}))
    with pytest.raises(ConfigError, match=r"concurrency -> runtime\.concurrency"):
        load_config(M1KConfig, path)


def test_an_llm_stage_travels_without_its_engines(llm_server):
    """What a distributed worker receives: the config, not the live engine (it builds its own)."""
    import pickle

    original = stage("traces", llm_server.base_url)
    built = original.engine(original.endpoints()[0])
    copy = pickle.loads(pickle.dumps(original))
    assert copy._built == {} and copy.config == original.config
    assert copy.engine(copy.endpoints()[0]) is not built and original.engine(original.endpoints()[0]) is built


def test_rows_dropped_before_sending_join_the_stage_s_dropped_rows():
    """Their columns: the stage's own types win (a researcher's stale text column in the added
    rows is null there), and a dropped table that is a selection adds its rows, not its table."""
    import datasets

    from m1data.llm.stages import _with_dropped
    from m1data.running.pipeline import StageResult

    ours = datasets.Dataset.from_dict({"id": ["r0", "r1", "r2", "r3"], "source": ["s"] * 4, "reason": ["x"] * 4,
                                       "student_s_correct": [True, False, True, False], "note": [None] * 4})
    added = datasets.Dataset.from_dict({"id": ["bad"], "source": ["s"], "reason": ["prompt_mismatch"], "detail": ["d"],
                                        "student_s_correct": ["True"], "note": ["kept"]})
    merged = _with_dropped(StageResult(rows=ours, dropped=ours.select([3, 1])), added).dropped
    assert merged["id"] == ["r3", "r1", "bad"] and merged["student_s_correct"] == [False, False, None]
    assert merged["detail"] == [None, None, "d"] and merged["note"] == [None, None, "kept"]  # no type yet: takes the value


SHARED_CACHE_RUN = """
import sys
from m1data.llm.stages import LLMRuntime, run_llm_on_file
from m1data.stages.traces import TeacherTraces, TracesConfig

rows, out, url, cache = sys.argv[1:]
runtime = LLMRuntime(progress=False, concurrency=8, cache_path=cache)
stage = TeacherTraces(TracesConfig(model="m", base_url=url, api_key_env=None, runtime=runtime))
print("rows_out", run_llm_on_file(stage, rows, out, dry_run=False)["rows_out"], flush=True)
"""


def test_a_second_file_run_on_a_cache_in_use_is_refused_and_nothing_is_paid_twice(llm_server, tmp_path):
    """Two file runs into different OUTs sharing one --cache: each looked up the cache before the
    other's replies were in it, so both sent the same requests and each was paid twice. The cache
    is held for the run now: the second run stops at once, in one line naming the holder's pid,
    and a run after the holder's end answers from the cache and sends nothing."""
    import subprocess
    import time

    from m1data.errors import UserError
    from m1data.llm.stages import run_llm_on_file
    from m1data.running.pipeline import RunLocked

    llm_server.handler = lambda req: chat("The answer is \\boxed{A}.", reasoning="Option A fits.", delay=3.0)
    src = write_rows(rows(), tmp_path / "in.jsonl")
    cache = tmp_path / "shared" / "replies.sqlite"
    holder = subprocess.Popen([sys.executable, "-c", SHARED_CACHE_RUN, str(src), str(tmp_path / "a.jsonl"),
                               llm_server.base_url, str(cache)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        while llm_server.count() < 5 and holder.poll() is None:  # all five requests on the wire
            time.sleep(0.01)
        second = stage("traces", llm_server.base_url)
        second.runtime.cache_path = str(cache)
        with pytest.raises(RunLocked, match=f"pid {holder.pid}") as err:
            run_llm_on_file(second, src, tmp_path / "b.jsonl", dry_run=False)
        said = str(err.value)
        assert isinstance(err.value, UserError) and str(cache) in said and "\n" not in said
        assert said.endswith("wait for it to finish or give --cache another file")
        out, errors = holder.communicate(timeout=60)
    finally:
        holder.kill()
        holder.wait()
    assert holder.returncode == 0, errors
    assert out.split()[0] == "rows_out" and not (tmp_path / "b.jsonl").exists()
    assert sorted(llm_server.sends_per_body().values()) == [1] * 5  # every request paid once
    assert run_llm_on_file(second, src, tmp_path / "b.jsonl", dry_run=False)["rows_out"] == int(out.split()[1])
    assert llm_server.count() == 5  # the later run read the holder's replies
    assert sorted(p.name for p in cache.parent.iterdir()) == ["replies.sqlite"]  # no lock file left
