"""Budget forcing end to end through the transformers engine (`m1data.llm.hf`) on a tiny random
Qwen2-shaped model, checked token for token against a direct `model.generate`."""

from __future__ import annotations

import asyncio
from importlib.util import find_spec

import pytest
from m1data.infer.budget import (
    ANSWER_AFTER_BUDGET,
    ANSWER_AFTER_STOP,
    BudgetConfig,
    build_prompt,
    chatml_stop_ids,
    generate,
)
from m1data.infer.score import run_infer

from m1data.llm.hf import HFConfig, HFEngine

# skipped without the infer extra; torch is imported by the tests that run, not at collection
pytestmark = pytest.mark.skipif(not (find_spec("torch") and find_spec("transformers")),
                                reason="torch and transformers are not installed (pip install 'm1data[infer]')")

PROMPT = build_prompt("The patient has a fever. Which drug is best?\nA. aspirin\nB. ibuprofen")


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from tiny_model import save_tiny

    return HFEngine(HFConfig(model=save_tiny(tmp_path_factory.mktemp("tiny"))))


@pytest.fixture(scope="module")
def stops(engine):
    return chatml_stop_ids(engine.tokenizer)


def config(stops, **kwargs) -> BudgetConfig:
    thinking, answer = stops
    return BudgetConfig(model="tiny", thinking_stop_token_ids=thinking, answer_stop_token_ids=answer, **kwargs)


def reference(engine, prompt: str, max_new: int, stop_ids) -> list[int]:
    """Greedy continuation straight from transformers, ending on `stop_ids`."""
    import torch
    from transformers import GenerationConfig

    ids = engine.tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    gen = GenerationConfig(max_new_tokens=max_new, do_sample=False, eos_token_id=list(stop_ids),
                           pad_token_id=engine.tokenizer.pad_token_id)
    with torch.no_grad():
        out = engine.model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=gen)
    return out[0, ids.shape[1]:].tolist()


def test_chatml_stop_ids(engine, stops):
    tok = engine.tokenizer
    start, end = tok.convert_tokens_to_ids("<|im_start|>"), tok.convert_tokens_to_ids("<|im_end|>")
    assert stops == (tuple(sorted({start, end, tok.eos_token_id})), tuple(sorted({end, tok.eos_token_id})))


@pytest.mark.parametrize("budget", [1, 8, 24])
def test_thinking_matches_direct_generate(engine, stops, budget):
    cfg = config(stops, thinking_budget=budget, answer_max_tokens=8)
    rec = asyncio.run(generate(engine, PROMPT, cfg))
    new = reference(engine, PROMPT, budget, stops[0])
    stopped = new[-1] in stops[0]
    assert rec.thinking_tokens == len(new) <= budget
    assert rec.thinking == engine.tokenizer.decode(new[:-1] if stopped else new, skip_special_tokens=True)
    assert rec.stop_reason == ("model" if stopped else "budget")
    assert rec.answer_prefix == (ANSWER_AFTER_STOP if stopped else ANSWER_AFTER_BUDGET)
    answer = reference(engine, PROMPT + rec.thinking + rec.answer_prefix, 8, stops[1])
    assert rec.answer_tokens == len(answer)
    # greedy and seeded: the same record twice
    assert asyncio.run(generate(engine, PROMPT, cfg)) == rec


def test_forcing_on_a_real_model(engine, stops):
    # Make a token the model emits early a thinking stop, so it "stops by itself" and is forced on.
    early = reference(engine, PROMPT, 6, [])[2]
    thinking_stops = tuple(sorted({*stops[0], early}))
    cfg = config((thinking_stops, stops[1]), thinking_budget=40, forcing_rounds=2, answer_max_tokens=4)
    rec = asyncio.run(generate(engine, PROMPT, cfg))
    assert 1 <= rec.forcing_rounds <= 2  # (the model may write "Wait" itself: it copies its context)
    assert rec.thinking_tokens == sum(rec.round_tokens) <= 40
    assert len(rec.round_tokens) == rec.forcing_rounds + 1
    first = reference(engine, PROMPT, 40, thinking_stops)
    assert first[-1] == early and rec.round_tokens[0] == len(first)
    assert rec.thinking.startswith(engine.tokenizer.decode(first[:-1]) + "Wait")


def test_run_infer_on_tiny_model(engine, stops, tmp_path):
    import datasets

    rows = datasets.Dataset.from_list([
        {"id": "a", "prompt": "Fever drug?\nA. aspirin\nB. ibuprofen", "options": ["aspirin", "ibuprofen"], "answer_idx": 0},
        {"id": "b", "prompt": "Pain drug?\nA. aspirin\nB. ibuprofen", "options": ["aspirin", "ibuprofen"], "answer_idx": 1},
    ])
    metrics = run_infer(engine, {"tiny": rows}, tmp_path,
                        config(stops, thinking_budget=16, forcing_rounds=1, answer_max_tokens=8))
    s = metrics["sets"]["tiny"]
    assert s["n"] == 2 and s["errors"] == 0 and s["mean_thinking_tokens"] <= 16
    assert (tmp_path / "records.jsonl").read_text(encoding="utf-8").count("\n") == 2
