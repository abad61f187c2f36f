"""`m1data infer run/sweep` and Python give the same records and metrics for the same inputs: the
command is a thin caller of `m1data.infer.jobs`, whose eval sets are read as `run_infer` reads a
file (`m1data.infer.score.read_eval_sets`). Real eval rows (../shared/data), a real HTTP server
(tests/llm_server.py) answering a letter chosen from the prompt's text."""

from __future__ import annotations

import json
import re
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from llm_server import Received, Response, ScriptedServer, completion
from m1data.infer.budget import ANSWER_AFTER_BUDGET, ANSWER_AFTER_STOP
from typer.testing import CliRunner

from m1data.cli import app

MEDQA = Path("raw/medqa/4_options_phrases_no_exclude_test.jsonl")
MMLU = Path("eval/mmlu/anatomy_test.csv")


def letter_model(req: Received) -> Response:
    """Thinks 3 words (4 tokens) when they fit, then answers a letter picked from the question's
    text: some right, some wrong, the same on every door."""
    prompt, max_tokens = req.body["prompt"], req.body["max_tokens"]
    if prompt.endswith((ANSWER_AFTER_STOP, ANSWER_AFTER_BUDGET)):
        question = prompt.split("<|im_start|>user\n", 1)[1].split("<|im_end|>", 1)[0]
        return completion(f" \\boxed{{{'ABCD'[zlib.crc32(question.encode()) % 4]}}}", completion_tokens=3)
    if max_tokens >= 4:
        return completion(" hmm" * 3, finish_reason="stop", completion_tokens=4)
    return completion(" hmm" * max_tokens, finish_reason="length", completion_tokens=max_tokens)


def outputs(out: Path) -> tuple[list[dict], dict]:
    records = [json.loads(line) for line in (out / "records.jsonl").read_text(encoding="utf-8").splitlines()]
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    metrics.pop("calls")  # what was sent now and what came from the cache differ by run, by design
    return records, metrics


def test_a_real_eval_file_gives_the_same_records_through_the_command_line_and_python(shared_data, tmp_path):
    """`run_infer(engine, {"medqa_test": RAW_FILE}, ...)` stopped with "lacks column(s) ['prompt']"
    where `m1data infer run --eval-sets medqa_test=RAW_FILE` read the file; and the command did its
    own reading, endpoint checks and budget set-up. Now the command, `infer_run` and `run_infer`
    read the same rows and write the same records and metrics."""
    from m1data.infer.budget import BudgetConfig
    from m1data.infer.jobs import infer_endpoint, infer_run, infer_runtime
    from m1data.infer.score import run_infer
    from m1data.llm import VLLM_EXTRA_PARAMS
    from m1data.llm.stages import build_engine

    medqa, mmlu = shared_data / MEDQA, shared_data / MMLU
    with ScriptedServer(letter_model) as server:
        cli = runner_invoke(["infer", "run", "--base-url", server.base_url, "--model", "org/m1-7B-1K",
                             "--eval-sets", f"medqa_test={medqa},mmlu_anatomy={mmlu}", "--budget", "6",
                             "--forcing-rounds", "1", "--limit", "5", "--no-progress", "--out", str(tmp_path / "cli")])
        assert cli.exit_code == 0, cli.output
        given = {"medqa_test": medqa, "mmlu_anatomy": mmlu}
        job = infer_run("org/m1-7B-1K", given, tmp_path / "job", base_url=server.base_url, budget=6,
                        forcing_rounds=1, limit=5, runtime=infer_runtime(progress=False))
        runtime = infer_runtime(progress=False)
        engine = build_engine(infer_endpoint("org/m1-7B-1K", base_url=server.base_url), runtime, VLLM_EXTRA_PARAMS)
        config = BudgetConfig(model="org/m1-7B-1K", thinking_budget=6, forcing_rounds=1,
                              extra_params={"skip_special_tokens": False})  # no local tokenizer: stop strings
        direct = run_infer(engine, given, tmp_path / "direct", config, runtime=runtime, limit=5, label="m1-7B-1K")
    records, metrics = outputs(tmp_path / "cli")
    assert outputs(tmp_path / "job") == outputs(tmp_path / "direct") == (records, metrics)
    assert {k: v for k, v in job.items() if k != "calls"} == {k: v for k, v in direct.items() if k != "calls"}
    assert [m["n"] for m in metrics["sets"].values()] == [5, 5] and len(records) == 10
    assert 0 < sum(r["correct"] for r in records) < 10  # a real score, not all or nothing
    assert all(r["thinking"].count("Wait") == 1 for r in records)
    assert records[0]["id"].startswith("medqa_test:") and records[5]["id"].startswith("mmlu_anatomy:")


def test_a_sweep_through_the_command_line_and_python_writes_the_same_points(shared_data, tmp_path):
    from m1data.infer.jobs import infer_runtime, infer_sweep

    mmlu = shared_data / MMLU
    with ScriptedServer(letter_model) as server:
        cli = runner_invoke(["infer", "sweep", "--base-url", server.base_url, "--model", "m", "--eval-sets",
                             "mmlu_anatomy", "--eval-path", str(mmlu), "--budgets", "2,8", "--limit", "4",
                             "--no-progress", "--out", str(tmp_path / "cli")])
        assert cli.exit_code == 0, cli.output
        points = infer_sweep("m", ["mmlu_anatomy"], tmp_path / "job", eval_path=mmlu, base_url=server.base_url,
                             budgets=[2, 8], limit=4, runtime=infer_runtime(progress=False))
    assert json.loads((tmp_path / "cli" / "sweep.json").read_text(encoding="utf-8")) == points
    for point in ("b2-r0", "b8-r0"):
        assert outputs(tmp_path / "cli" / point) == outputs(tmp_path / "job" / point)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"engine": "tgi"}, "choose http, hf, vllm"),
    ({"base_url": None}, "needs the server's URL"),
    ({"base_url": "embedded"}, "infer does not start the embedded model"),  # it said the model was not installed
    ({"engine": "hf", "api_key_env": "K"}, "goes with engine http"),
    ({"api_key_env": "M1DATA_TEST_UNSET_KEY"}, "M1DATA_TEST_UNSET_KEY is not set"),
    ({"eval_sets": []}, "no eval set given"),
    ({"eval_sets": ["a=x.jsonl", "b=y.jsonl"], "eval_path": "z.jsonl"}, "exactly one eval set"),
    ({"budget": -1}, "thinking_budget"),
])
def test_the_job_checks_what_the_command_checked_before_anything_is_sent(tmp_path, kwargs, message):
    """The checks moved from the command into the job: from Python they are the same one line."""
    from m1data.errors import UserError
    from m1data.infer.jobs import infer_run

    with ScriptedServer(letter_model) as server:
        args = {"eval_sets": ["mine=nothing-read.jsonl"], "base_url": server.base_url, **kwargs}
        with pytest.raises(UserError, match=re.escape(message)):
            infer_run("m", args.pop("eval_sets"), tmp_path / "out", **args)
        assert not [r for r in server.requests if isinstance(r.body, dict) and "prompt" in r.body]
    assert not (tmp_path / "out").exists()


def runner_invoke(args: list[str]):
    return CliRunner().invoke(app, args, env={"HF_HUB_OFFLINE": "1"})


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(broken=st.lists(st.booleans(), min_size=4, max_size=4).filter(lambda b: not all(b)))
def test_unreadable_answer_keys_are_counted_unscored_alike_at_every_door(tmp_path_factory, broken):
    """The documented Python example (infer/budget.py) built its sets from `loaded.rows`, which
    leaves out a question whose answer key cannot be read, while the command kept it and counted
    it `unscored`: the same set was n = 4 from Python and n = 2 + 2 unscored from the command. Every
    door now reads the set with `read_eval_sets` and counts alike."""
    from m1data.infer.budget import BudgetConfig
    from m1data.infer.jobs import infer_endpoint, infer_run, infer_runtime
    from m1data.infer.score import run_infer
    from m1data.llm import VLLM_EXTRA_PARAMS
    from m1data.llm.stages import build_engine

    tmp = tmp_path_factory.mktemp("keys")
    evals = tmp / "mine.jsonl"
    rows = [{"id": f"q{i}", "question": f"Question {i} about the nerve of the forearm?",
             "options": {"A": "alpha", "B": "beta", "C": "gamma", "D": "delta"}, "answer": "Z" if bad else "ABCD"[i]}
            for i, bad in enumerate(broken)]
    evals.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with ScriptedServer(letter_model) as server:
        cli = runner_invoke(["infer", "run", "--base-url", server.base_url, "--model", "m", "--eval-sets",
                             f"mine={evals}", "--budget", "8", "--no-progress", "--out", str(tmp / "cli")])
        assert cli.exit_code == 0, cli.output
        job = infer_run("m", {"mine": evals}, tmp / "job", base_url=server.base_url, budget=8,
                        runtime=infer_runtime(progress=False))
        runtime = infer_runtime(progress=False)
        engine = build_engine(infer_endpoint("m", base_url=server.base_url), runtime, VLLM_EXTRA_PARAMS)
        direct = run_infer(engine, {"mine": evals}, tmp / "direct", BudgetConfig(model="m", thinking_budget=8),
                           runtime=runtime)
    expected = (len(broken) - sum(broken), sum(broken))
    for metrics in (outputs(tmp / "cli")[1], job, direct):
        mine = metrics["sets"]["mine"]
        assert (mine["n"], mine["unscored"]) == expected
        assert [key.rsplit(":", 1)[1] for key in mine["unscored_ids"]] == [f"q{i}" for i, b in enumerate(broken) if b]


def test_a_model_is_asked_in_its_own_chat_template(tmp_path):
    """infer asked every model in the Qwen2.5 template while `m1data train` trains in the base
    model's own, so a model trained from another base was scored on a prompt it had never seen. The
    template comes with the tokenizer the stop ids come from; a Qwen2.5 one asks as before."""
    from tiny_model import tiny_tokenizer

    from m1data.infer.jobs import infer_run, infer_runtime
    from m1data.stages.formatting import QWEN25_CHAT_TEMPLATE

    own = tiny_tokenizer()
    own.chat_template = ("<|im_start|>system\nYou are Tiny, a small model.<|im_end|>\n{% for m in messages %}"
                         "<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
                         "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    own.save_pretrained(tmp_path / "own")
    qwen = tiny_tokenizer()
    assert qwen.chat_template == QWEN25_CHAT_TEMPLATE
    qwen.save_pretrained(tmp_path / "qwen")
    evals = tmp_path / "evals.jsonl"
    evals.write_text(json.dumps({"question": "Which drug is best for a fever?", "options": ["aspirin", "insulin"],
                                 "answer_idx": 0}) + "\n", encoding="utf-8")
    firsts = {}
    for name in ("own", "qwen", None):
        with ScriptedServer(letter_model) as server:
            infer_run("tiny", [f"mine={evals}"], tmp_path / f"out-{name}", base_url=server.base_url, budget=6,
                      tokenizer=str(tmp_path / name) if name else None, runtime=infer_runtime(progress=False))
            firsts[name] = server.requests[0].body["prompt"]
    assert firsts["own"].startswith("<|im_start|>system\nYou are Tiny, a small model.<|im_end|>\n<|im_start|>user\n")
    assert firsts["qwen"] == firsts[None] and firsts[None].startswith("<|im_start|>system\nYou are Qwen")


@pytest.mark.parametrize("owner", ["llamacpp", "vllm"])
def test_a_llama_cpp_server_is_told_to_write_special_tokens(tmp_path, caplog, owner):
    """llama.cpp ignores stop_token_ids and, unless started with --special, writes no special token
    into its text: thinking never stopped at <|im_start|> and ran on to the budget, unsaid (audit)."""
    from m1data.infer.jobs import infer_run

    rows = tmp_path / "set.jsonl"
    rows.write_text(json.dumps({"id": "q0", "question": "Which?", "options": ["x", "y"], "answer_idx": 0}) + "\n",
                    encoding="utf-8")
    with ScriptedServer(letter_model) as server, caplog.at_level("WARNING", logger="m1data.infer.jobs"):
        server.owned_by = owner
        infer_run("m", [f"mine={rows}"], tmp_path / "out", base_url=server.base_url, budget=4)
    assert ("started with --special" in caplog.text) == (owner == "llamacpp")


def test_a_server_that_reports_no_usage_stops_the_run_in_one_line(tmp_path):
    """Without `usage`, token counts were estimated with tiktoken and the thinking budget counted
    in them, another model's tokens, without a word (audit). A run stops at the first such reply."""
    from m1data.infer.jobs import infer_run
    from m1data.llm.runner import EndpointError

    def no_usage(req: Received) -> Response:
        reply = letter_model(req)
        reply.body.pop("usage")
        return reply

    rows = tmp_path / "set.jsonl"
    rows.write_text(json.dumps({"id": "q0", "question": "Which?", "options": ["x", "y"], "answer_idx": 0}) + "\n",
                    encoding="utf-8")
    with ScriptedServer(no_usage) as server, pytest.raises(EndpointError, match="reports no token usage"):
        infer_run("m", [f"mine={rows}"], tmp_path / "out", base_url=server.base_url, budget=4)
    with ScriptedServer(letter_model) as server:  # the same with usage: runs
        infer_run("m", [f"mine={rows}"], tmp_path / "out", base_url=server.base_url, budget=4)


def test_the_commands_show_the_library_defaults():
    """The command line writes its defaults out (the import of m1data.infer costs a second it
    should not pay for `--help`); they must be the library's, which the Python door uses."""
    import click
    import typer

    from m1data.cli import app
    from m1data.infer.budget import BudgetConfig
    from m1data.infer.jobs import BUDGETS

    group = typer.main.get_command(app).commands["infer"]
    run, sweep = ({p.name: p.default for p in group.commands[name].get_params(click.Context(group))}
                  for name in ("run", "sweep"))
    for options in (run, sweep):
        assert options["forcing_string"] == BudgetConfig.forcing_string
        assert options["answer_max_tokens"] == BudgetConfig.answer_max_tokens
    assert run["budget"] == BudgetConfig.thinking_budget
    assert sweep["budgets"] == ",".join(map(str, BUDGETS))
