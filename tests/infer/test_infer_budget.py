"""Exact budget-forcing semantics, against a scripted engine whose tokens are countable.

The scripted "model" thinks in whitespace-separated words, one word = one token, and a stop
(``<|im_start|>``) costs one token, as on vLLM and `transformers.generate`. For each thinking call
it emits the next scripted segment: all of it plus the stop token if that fits in ``max_tokens``,
otherwise exactly ``max_tokens`` words and ``finish_reason="length"``.
"""

from __future__ import annotations

import asyncio

import pytest
from m1data.infer.budget import (
    ANSWER_AFTER_BUDGET,
    ANSWER_AFTER_STOP,
    THINK_OPEN,
    BudgetConfig,
    build_prompt,
    generate,
    generate_many,
)

from m1data.llm.stages import LLMRuntime
from m1data.llm.types import Reply, Request
from m1data.stages.formatting import render_chat


class ScriptedThinker:
    """An Engine double: scripted thinking segments per call, a fixed answer after the marker."""

    name = "scripted-thinker"

    def __init__(self, segments: list[str], answer: str = " The answer is \\boxed{B}.", fail_on: int | None = None):
        self.segments = segments
        self.answer = answer
        self.fail_on = fail_on
        self.requests: list[Request] = []

    async def complete(self, request: Request) -> Reply:
        assert request.kind == "completion"
        assert set(request.params) <= {"max_tokens", "temperature", "seed", "stop", "stop_token_ids"}
        assert request.params["temperature"] == 0.0 and request.params["seed"] == 42
        self.requests.append(request)
        max_tokens = request.params["max_tokens"]
        assert max_tokens >= 1
        if self.fail_on is not None and len(self.requests) == self.fail_on:
            return Reply(status="error", error="boom")
        if request.prompt.endswith((ANSWER_AFTER_STOP, ANSWER_AFTER_BUDGET)):
            words = self.answer.split()
            return Reply(text=self.answer, finish_reason="stop", completion_tokens=len(words) + 1)
        thinking_calls = sum(1 for r in self.requests if not r.prompt.endswith((ANSWER_AFTER_STOP, ANSWER_AFTER_BUDGET)))
        segment = self.segments[min(thinking_calls, len(self.segments)) - 1]
        words = segment.split()
        if len(words) + 1 <= max_tokens:
            return Reply(text="".join(f" {w}" for w in words), finish_reason="stop", completion_tokens=len(words) + 1)
        return Reply(text="".join(f" {w}" for w in words[:max_tokens]), finish_reason="length", completion_tokens=max_tokens)

    async def aclose(self) -> None:
        pass


def run(engine: ScriptedThinker, **kwargs):
    config = BudgetConfig(model="m", **kwargs)
    return asyncio.run(generate(engine, build_prompt("Q?\nA. x\nB. y"), config))


def words(n: int, tag: str = "w") -> str:
    return " ".join(f"{tag}{i}" for i in range(n))


def test_prompt_is_chat_template_with_generation_prompt_then_think():
    prompt = build_prompt("Q?")
    assert prompt == render_chat([{"role": "user", "content": "Q?"}], add_generation_prompt=True) + THINK_OPEN
    assert prompt.endswith("<|im_start|>assistant\n<|im_start|>think\n")


def test_model_stops_early_without_forcing():
    engine = ScriptedThinker([words(5)])
    rec = run(engine, thinking_budget=100, forcing_rounds=0)
    assert rec.stop_reason == "model"
    assert rec.thinking_tokens == 6 and rec.round_tokens == [6]  # 5 words + the stop token
    assert rec.forcing_rounds == 0 and "Wait" not in rec.thinking
    assert rec.answer_prefix == "<|im_start|>answer"
    assert engine.requests[-1].prompt.endswith(rec.thinking + "<|im_start|>answer")
    assert engine.requests[0].params["max_tokens"] == 100
    assert engine.requests[-1].params["max_tokens"] == 1024
    assert engine.requests[0].params["stop"] == ["<|im_start|>", "<|im_end|>"]
    assert engine.requests[-1].params["stop"] == ["<|im_end|>"]


def test_budget_runs_out():
    engine = ScriptedThinker([words(50)])
    rec = run(engine, thinking_budget=10, forcing_rounds=3)
    assert rec.stop_reason == "budget"
    assert rec.thinking_tokens == 10 and rec.forcing_rounds == 0
    assert rec.thinking == "".join(f" w{i}" for i in range(10))
    assert rec.answer_prefix == "<|im_start|>answer\nFinal Answer:"
    assert engine.requests[-1].prompt.endswith("w9<|im_start|>answer\nFinal Answer:")
    assert rec.reply == "<|im_start|>answer\nFinal Answer: The answer is \\boxed{B}."


def test_forcing_appends_wait_and_continues_with_remaining_budget():
    engine = ScriptedThinker([words(3, "a"), words(4, "b"), words(2, "c")])
    rec = run(engine, thinking_budget=100, forcing_rounds=2)
    # round 1: 3+1 tokens, Wait; round 2: 4+1, Wait; round 3: 2+1, no rounds left -> answer
    assert rec.round_tokens == [4, 5, 3] and rec.thinking_tokens == 12
    assert rec.forcing_rounds == 2 and rec.stop_reason == "model"
    assert rec.thinking == " a0 a1 a2Wait b0 b1 b2 b3Wait c0 c1"
    assert [r.params["max_tokens"] for r in engine.requests[:3]] == [100, 96, 91]
    assert engine.requests[1].prompt.endswith(" a2Wait") and engine.requests[2].prompt.endswith(" b3Wait")
    assert rec.answer_prefix == ANSWER_AFTER_STOP


def test_wait_does_not_count_and_forcing_stops_when_budget_runs_out():
    engine = ScriptedThinker([words(3), words(20)])
    rec = run(engine, thinking_budget=10, forcing_rounds=5)
    # 4 tokens, Wait (free), then the remaining 6 all spent on words -> length
    assert rec.round_tokens == [4, 6] and rec.thinking_tokens == 10
    assert rec.forcing_rounds == 1 and rec.stop_reason == "budget"
    assert rec.answer_prefix == ANSWER_AFTER_BUDGET


def test_no_forcing_when_model_stops_on_last_budget_token():
    engine = ScriptedThinker([words(9), words(5)])
    rec = run(engine, thinking_budget=10, forcing_rounds=3)
    assert rec.thinking_tokens == 10 and rec.forcing_rounds == 0
    assert rec.stop_reason == "model" and rec.answer_prefix == ANSWER_AFTER_STOP
    assert len(engine.requests) == 2  # one thinking call, one answer call


def test_zero_budget_goes_straight_to_final_answer():
    engine = ScriptedThinker([words(3)])
    rec = run(engine, thinking_budget=0, forcing_rounds=2)
    assert rec.thinking == "" and rec.thinking_tokens == 0 and rec.stop_reason == "budget"
    assert len(engine.requests) == 1 and engine.requests[0].prompt.endswith(THINK_OPEN + ANSWER_AFTER_BUDGET)


@pytest.mark.parametrize("budget", [1, 2, 5, 7, 13, 40])
@pytest.mark.parametrize("rounds", [0, 1, 3])
def test_budget_never_exceeded_and_accounting_exact(budget, rounds):
    segments = [words(n) for n in (4, 0, 6, 2, 9)]
    engine = ScriptedThinker(segments)
    rec = run(engine, thinking_budget=budget, forcing_rounds=rounds)
    thinking_calls = engine.requests[:-1]
    assert rec.thinking_tokens <= budget
    assert rec.thinking_tokens == sum(rec.round_tokens)
    assert len(thinking_calls) == len(rec.round_tokens) == rec.forcing_rounds + 1
    # each call asks for exactly what is left
    spent = 0
    for request, used in zip(thinking_calls, rec.round_tokens):
        assert request.params["max_tokens"] == budget - spent
        spent += used
    # generated words in the thinking text = counted tokens minus one stop token per stopped round
    stops = len(rec.round_tokens) - (1 if rec.stop_reason == "budget" else 0)
    generated_words = [w for w in rec.thinking.replace("Wait", " ").split()]
    assert len(generated_words) == rec.thinking_tokens - stops
    assert rec.thinking.count("Wait") == rec.forcing_rounds <= rounds
    expected_prefix = ANSWER_AFTER_BUDGET if rec.stop_reason == "budget" else ANSWER_AFTER_STOP
    assert rec.answer_prefix == expected_prefix


def test_custom_forcing_string_and_stop_ids():
    engine = ScriptedThinker([words(1), words(1)])
    rec = run(engine, forcing_rounds=1, forcing_string="\nHmm, wait", thinking_stop_token_ids=(151644, 151645))
    assert rec.thinking == " w0\nHmm, wait w0"
    assert engine.requests[0].params["stop_token_ids"] == [151644, 151645]
    assert "stop_token_ids" not in engine.requests[-1].params


def test_engine_error_is_recorded_not_raised():
    engine = ScriptedThinker([words(3)], fail_on=2)
    rec = run(engine, forcing_rounds=1)
    assert rec.stop_reason == "error" and "boom" in rec.error


def test_engine_overreporting_tokens_is_an_error():
    class Liar(ScriptedThinker):
        async def complete(self, request):
            return Reply(text="x", finish_reason="length", completion_tokens=request.params["max_tokens"] + 1)

    rec = run(Liar([]), thinking_budget=5)
    assert rec.stop_reason == "error" and "max_tokens=5" in rec.error


def test_length_before_max_tokens_is_an_error():
    # e.g. an engine that stopped on <|im_start|> but, decoding with special tokens skipped,
    # could not see its stop string and called it "length"
    class Blind(ScriptedThinker):
        async def complete(self, request):
            return Reply(text=" a", finish_reason="length", status="length", completion_tokens=2)

    rec = run(Blind([]), thinking_budget=50)
    assert rec.stop_reason == "error" and "template_stop_ids" in rec.error


def test_generate_many_keeps_order_and_bounds_concurrency():
    in_flight, peak = 0, 0

    class Slow(ScriptedThinker):
        async def complete(self, request):
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0.001)
            in_flight -= 1
            return Reply(text=request.prompt[-3:], finish_reason="stop", completion_tokens=1)

    prompts = [build_prompt(f"q{i}") for i in range(20)]
    config = BudgetConfig(model="m")
    done: list[int] = []
    runtime = LLMRuntime(concurrency=4, progress=False)
    records = asyncio.run(generate_many(Slow([]), prompts, config, runtime=runtime, on_done=lambda i, r: done.append(i)))
    assert len(records) == 20 and sorted(done) == list(range(20))
    assert peak <= 4


class TokenizedThinker(ScriptedThinker):
    """A thinking continuation as a real byte-level tokenizer splits it (tests/tiny_model.py: a
    CJK character is three byte tokens), cut at `max_tokens` and decoded as the transformers
    engine decodes a reply (`tokenizer.decode`): a cut inside a character decodes to U+FFFD."""

    def __init__(self, tokenizer, thinking: str):
        super().__init__([])
        self.tokenizer, self.ids = tokenizer, tokenizer.encode(thinking, add_special_tokens=False)

    async def complete(self, request: Request) -> Reply:
        if request.prompt.endswith((ANSWER_AFTER_STOP, ANSWER_AFTER_BUDGET)):
            return await super().complete(request)
        self.requests.append(request)
        max_tokens = request.params["max_tokens"]
        assert len(self.ids) + 1 > max_tokens  # every call here is cut at the budget
        return Reply(text=self.tokenizer.decode(self.ids[:max_tokens]), finish_reason="length",
                     completion_tokens=max_tokens)


@pytest.mark.parametrize(("budget", "kept"), [(1, ""), (2, ""), (3, "患"), (4, "患"), (5, "患"), (6, "患者")])
def test_a_budget_cut_inside_a_character_drops_its_incomplete_bytes(budget, kept):
    """The thinking cut at the budget inside a multi-byte character ended in U+FFFD, and that
    was fed back to the model with the answer marker. Now the cut lands on the last whole
    character; the tokens of the part dropped were generated, so they still count."""
    from tiny_model import tiny_tokenizer

    engine = TokenizedThinker(tiny_tokenizer(), "患者发热")
    rec = run(engine, thinking_budget=budget, forcing_rounds=1)
    assert rec.stop_reason == "budget" and rec.thinking_tokens == budget
    assert rec.thinking == kept
    assert engine.requests[-1].prompt == build_prompt("Q?\nA. x\nB. y") + kept + ANSWER_AFTER_BUDGET
