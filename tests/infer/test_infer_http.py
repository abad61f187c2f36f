"""Budget forcing through the real OpenAI-compatible HTTP engine against the scripted local server
(tests/llm_server.py): what goes on the wire, and the same token accounting as in-process."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("m1data.llm.http")

from llm_server import Received, Response, ScriptedServer, completion, error  # noqa: E402
from m1data.infer.budget import ANSWER_AFTER_BUDGET, ANSWER_AFTER_STOP, BudgetConfig, build_prompt, generate  # noqa: E402

from m1data.llm.http import HTTPConfig, HTTPEngine  # noqa: E402
from m1data.llm.limits import RetryPolicy  # noqa: E402
from m1data.llm.params import VLLM_EXTRA_PARAMS  # noqa: E402
from m1data.llm.stages import LLMRuntime  # noqa: E402


def word_model(segments: list[int]):
    """A server-side 'model': the k-th thinking call wants segments[k] words (1 token each) and
    then a stop token, which vLLM counts in usage.completion_tokens and leaves out of the text."""

    def handler(req: Received) -> Response:
        body = req.body
        if "prompt" not in body:
            return error(400, "completions only")
        prompt, max_tokens = body["prompt"], body["max_tokens"]
        if prompt.endswith((ANSWER_AFTER_STOP, ANSWER_AFTER_BUDGET)):
            return completion(" \\boxed{A}", completion_tokens=3)
        k = prompt.count("Wait")
        n = segments[min(k, len(segments) - 1)]
        if n + 1 <= max_tokens:
            return completion(" tok" * n, finish_reason="stop", completion_tokens=n + 1, prompt_tokens=7)
        return completion(" tok" * max_tokens, finish_reason="length", completion_tokens=max_tokens, prompt_tokens=7)

    return handler


FAST = LLMRuntime(progress=False, retries=RetryPolicy(max_attempts=2, base_delay=0.01))


def run(server: ScriptedServer, config: BudgetConfig, extra=()):
    async def go():
        engine = HTTPEngine(HTTPConfig(base_url=server.base_url, extra_params=tuple(extra)))
        try:
            return await generate(engine, build_prompt("Which? A. x B. y"), config, runtime=FAST)
        finally:
            await engine.aclose()

    return asyncio.run(go())


def test_forcing_over_http_wire_and_accounting():
    with ScriptedServer(word_model([3, 2, 50])) as server:
        config = BudgetConfig(model="m1-7B-1K", thinking_budget=20, forcing_rounds=2)
        rec = run(server, config)
        bodies = [r.body for r in server.requests]
    assert rec.round_tokens == [4, 3, 13] and rec.thinking_tokens == 20
    assert rec.forcing_rounds == 2 and rec.stop_reason == "budget"
    assert rec.thinking == " tok tok tokWait tok tokWait" + " tok" * 13
    assert rec.answer_prefix == ANSWER_AFTER_BUDGET and rec.answer == " \\boxed{A}"
    assert [b["max_tokens"] for b in bodies] == [20, 16, 13, 1024]
    assert all(b["model"] == "m1-7B-1K" and b["temperature"] == 0.0 and b["seed"] == 42 for b in bodies)
    assert bodies[0]["stop"] == ["<|im_start|>", "<|im_end|>"] and bodies[-1]["stop"] == ["<|im_end|>"]
    assert bodies[1]["prompt"] == bodies[0]["prompt"] + " tok tok tokWait"
    assert bodies[-1]["prompt"].endswith(rec.thinking + "<|im_start|>answer\nFinal Answer:")


def test_vllm_stop_token_ids_go_on_the_wire():
    with ScriptedServer(word_model([2])) as server:
        config = BudgetConfig(model="m", thinking_stop_token_ids=(151644, 151645, 151643),
                              answer_stop_token_ids=(151645, 151643))
        rec = run(server, config, extra=VLLM_EXTRA_PARAMS)
        bodies = [r.body for r in server.requests]
    assert rec.stop_reason == "model" and rec.answer_prefix == ANSWER_AFTER_STOP
    assert bodies[0]["stop_token_ids"] == [151644, 151645, 151643]
    assert bodies[1]["stop_token_ids"] == [151645, 151643]


def test_transient_server_error_leaves_the_generation_incomplete():
    """A 500 after every retry is no answer: the record says incomplete, never a wrong answer."""
    with ScriptedServer(lambda req: error(500, "overloaded")) as server:
        rec = run(server, BudgetConfig(model="m"))
        sent = server.count()
    assert rec.stop_reason == "incomplete" and "overloaded" in rec.error
    assert sent == FAST.retries.max_attempts  # retried by the runtime, then given up


def test_refused_request_is_a_recorded_outcome():
    """A 400 (say, a prompt over the context window) is the request's outcome: recorded as an
    error, which scoring counts wrong, and not retried."""
    with ScriptedServer(lambda req: error(400, "prompt too long")) as server:
        rec = run(server, BudgetConfig(model="m"))
        sent = server.count()
    assert rec.stop_reason == "error" and "prompt too long" in rec.error and sent == 1


def test_plain_completions_come_back_verbatim():
    """Think tags in a plain completion are model text, not a reply shape: nothing is split out."""
    with ScriptedServer(lambda req: completion("<think>x</think> y", completion_tokens=5)) as server:
        rec = run(server, BudgetConfig(model="m", thinking_budget=20))
    assert rec.error is None and rec.thinking.startswith("<think>x</think> y")
