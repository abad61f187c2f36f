"""The transformers engine on a tiny random Qwen2-shaped model built at test time, checked token
for token against `model.generate` itself."""

from __future__ import annotations

import asyncio
from importlib.util import find_spec

import pytest

from m1data.llm import Cache, InvalidParams, Request, RunStats, complete_all
from m1data.llm.hf import HFConfig, HFEngine

# skipped without the infer extra; torch is imported by the tests that run, not at collection
pytestmark = pytest.mark.skipif(not (find_spec("torch") and find_spec("transformers")),
                                reason="torch and transformers are not installed (pip install 'm1data[infer]')")

CHAT = ({"role": "user", "content": "The patient has a fever. Which drug is best?\nA. aspirin\nB. ibuprofen"},)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from tiny_model import save_tiny

    folder = save_tiny(tmp_path_factory.mktemp("tiny-qwen2"))
    return HFEngine(HFConfig(model=folder))


def greedy(engine: HFEngine, ids: list[int], max_new: int) -> list[int]:
    """Reference continuation straight from transformers, with no stop at all."""
    import torch
    from transformers import GenerationConfig

    config = GenerationConfig(
        max_new_tokens=max_new, min_new_tokens=max_new, do_sample=False, pad_token_id=engine.tokenizer.pad_token_id
    )
    inputs = torch.tensor([ids])
    with torch.no_grad():
        out = engine.model.generate(inputs, attention_mask=torch.ones_like(inputs), generation_config=config)
    return out[0, len(ids) :].tolist()


def complete(engine: HFEngine, request: Request):
    return asyncio.run(engine.complete(request))


def test_chat_uses_the_chat_template_and_counts_exactly(engine):
    request = Request(model="tiny", messages=CHAT, params={"max_tokens": 12})
    reply = complete(engine, request)
    rendered = engine.tokenizer.apply_chat_template(list(CHAT), add_generation_prompt=True, tokenize=False)
    assert rendered.startswith("<|im_start|>system\n") and rendered.endswith("<|im_start|>assistant\n")
    ids = engine.tokenizer(rendered, add_special_tokens=False)["input_ids"]
    assert reply.prompt_tokens == len(ids)
    expected = greedy(engine, ids, 12)
    eos = engine.tokenizer.eos_token_id
    if eos in expected:
        expected = expected[: expected.index(eos) + 1]
    assert reply.completion_tokens == len(expected)
    assert reply.finish_reason == ("stop" if expected[-1] == eos else "length")


def test_greedy_is_deterministic_and_matches_generate(engine):
    prompt = "Return your final response within \\boxed{}.\nWhich drug"
    request = Request(model="tiny", prompt=prompt, params={"max_tokens": 8, "temperature": 0.0, "stop_token_ids": []})
    first, second = complete(engine, request), complete(engine, request)
    assert first == second
    ids = engine.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    assert first.prompt_tokens == len(ids)
    expected = greedy(engine, ids, 8)
    eos = engine.tokenizer.eos_token_id
    if eos in expected:  # the model may end its turn: counted, not shown
        expected = expected[: expected.index(eos) + 1]
        assert (first.status, first.completion_tokens) == ("ok", len(expected))
        assert first.text == engine.tokenizer.decode(expected[:-1], skip_special_tokens=True)
    else:
        assert (first.status, first.completion_tokens) == ("length", 8)
        assert first.text == engine.tokenizer.decode(expected, skip_special_tokens=True)


def test_stop_token_ends_the_text_and_is_counted(engine):
    prompt = "A 45-year-old man presents with"
    ids = engine.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    expected = greedy(engine, ids, 10)
    stop = expected[3]
    at = expected.index(stop)
    reply = complete(engine, Request(model="tiny", prompt=prompt, params={"max_tokens": 10, "stop_token_ids": [stop]}))
    assert (reply.finish_reason, reply.completion_tokens) == ("stop", at + 1)
    assert reply.text == engine.tokenizer.decode(expected[:at], skip_special_tokens=True)


def test_stop_string_cuts_before_it(engine):
    prompt = "Which of the following"
    free = complete(engine, Request(model="tiny", prompt=prompt, params={"max_tokens": 16}))
    assert len(free.text) >= 2
    stop = free.text[len(free.text) // 2 :][:1]
    reply = complete(engine, Request(model="tiny", prompt=prompt, params={"max_tokens": 16, "stop": [stop]}))
    assert reply.finish_reason == "stop"
    assert reply.text == free.text[: free.text.index(stop)]
    assert stop not in reply.text
    assert reply.completion_tokens <= free.completion_tokens


def test_sampling_is_reproducible_with_a_seed(engine):
    def sample(seed):
        return complete(
            engine,
            Request(model="tiny", prompt="The answer is", params={"max_tokens": 12, "temperature": 1.5, "seed": seed}),
        ).text

    assert sample(1) == sample(1)
    assert len({sample(s) for s in range(4)}) > 1


def test_unknown_params_are_rejected(engine):
    with pytest.raises(InvalidParams, match="did you mean 'temperature'"):
        engine.validate(Request(model="tiny", prompt="x", params={"temp": 0}))


def test_through_the_runner_and_cache(engine, tmp_path):
    requests = [
        Request(model="tiny", messages=({"role": "user", "content": f"question {i}"},), params={"max_tokens": 4})
        for i in range(3)
    ]
    with Cache(tmp_path / "c.sqlite") as cache:
        first = complete_all(engine, requests, cache, progress=False)
        stats = RunStats()
        again = complete_all(engine, requests, cache, progress=False, stats=stats)
    assert stats.cached == 3 and stats.sent == 0
    assert [r.text for r in again] == [r.text for r in first]
    assert all(r.completion_tokens == 4 or r.finish_reason == "stop" for r in first)


def test_a_model_that_cannot_be_loaded_is_one_line(tmp_path, monkeypatch):
    """A mistyped path or an id the Hub cannot give (offline) was a 330-line traceback."""
    from m1data.errors import UserError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for model in (str(tmp_path / "out11"), "my-org/m1-7B-1k-does-not-exist"):
        with pytest.raises(UserError, match=rf"^cannot load model '{model}': "):
            HFEngine(HFConfig(model=model))
