"""The SFT format (reference s.9): assistant turn, chat rendering, TRL view, length stats."""

from __future__ import annotations

import datasets
import pytest
from conftest import SHARED_DATA
from hypothesis import given, settings
from hypothesis import strategies as st

from m1data.schema import column_values

from m1data.stages.formatting import (
    QWEN25_CHAT_TEMPLATE,
    QWEN25_SYSTEM,
    assistant_turn,
    final_answer,
    render_chat,
    to_prompt_completion,
    to_sft,
    token_length_stats,
)

PROMPT = "A 45-year-old man has chest pain. Diagnosis?\nA. Angina\nB. Pericarditis"


def traced_rows() -> datasets.Dataset:
    return datasets.Dataset.from_list(
        [
            {"id": "r1", "source": "medqa", "prompt": PROMPT, "options": ["Angina", "Pericarditis"],
             "answer_idx": 0, "reasoning": "\nST elevation on exertion...\n\n", "teacher_reply": "The answer is \\boxed{A}."},
            {"id": "r2", "source": "headqa", "prompt": "Q2?\nA. x\nB. y", "options": ["x", "y"],
             "answer_idx": 1, "reasoning": "Think.", "teacher_reply": "answer: B"},
        ]
    )


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("\\boxed{B}", "Answer: \\boxed{B}"),
        ("Answer: B", "Answer: B"),
        ("  answer:B\n", "answer:B"),
        ("ANSWER: the first", "ANSWER: the first"),
        ("The answer is B", "Answer: The answer is B"),
        ("**Answer:** B", "Answer: **Answer:** B"),  # markdown does not count as having one
        ("Final answer: B", "Answer: Final answer: B"),  # only the start counts
    ],
)
def test_final_answer_prefix(reply, expected):
    assert final_answer(reply) == expected


def test_assistant_turn_exact():
    assert assistant_turn("  step 1\nstep 2\n", "\\boxed{A}") == (
        "<|im_start|>think\nstep 1\nstep 2\n<|im_start|>answer\nAnswer: \\boxed{A}"
    )


def test_to_sft_adds_messages_and_text_and_keeps_columns():
    ds = to_sft(traced_rows())
    row = ds[0]
    assert set(traced_rows().column_names) < set(ds.column_names)
    assert row["messages"] == [
        {"role": "user", "content": PROMPT},
        {"role": "assistant", "content": "<|im_start|>think\nST elevation on exertion...\n<|im_start|>answer\n"
                                         "Answer: The answer is \\boxed{A}."},
    ]
    assert row["text"] == (
        f"<|im_start|>system\n{QWEN25_SYSTEM}<|im_end|>\n"
        f"<|im_start|>user\n{PROMPT}<|im_end|>\n"
        f"<|im_start|>assistant\n{row['messages'][1]['content']}<|im_end|>\n"
    )
    assert ds[1]["messages"][1]["content"].endswith("<|im_start|>answer\nanswer: B")


def test_to_sft_needs_traces():
    ds = traced_rows().map(lambda r: {"reasoning": "" if r["id"] == "r2" else r["reasoning"]})
    with pytest.raises(ValueError, match="r2"):
        to_sft(ds)


def test_a_teacher_meant_to_answer_without_thinking_gets_an_empty_think_block():
    """`traces.require_reasoning: false` keeps right answers without thinking; the format stage
    must then take them (it stopped every such build), and still refuses a row with no trace."""
    ds = traced_rows().map(lambda r: {"reasoning": "" if r["id"] == "r2" else r["reasoning"]})
    row = to_sft(ds, require_reasoning=False)[1]
    assert row["messages"][1]["content"] == "<|im_start|>think\n\n<|im_start|>answer\nanswer: B"
    missing = traced_rows().remove_columns("reasoning")
    with pytest.raises(ValueError, match="r1"):
        to_sft(missing, require_reasoning=False)


def test_prompt_completion_view():
    # TRL's conversational prompt/completion shape; tests/test_train.py checks TRL reads it so
    for source in (traced_rows(), to_sft(traced_rows())):
        view = to_prompt_completion(source)
        assert view.column_names == ["prompt", "completion"]
        assert view[0]["prompt"] == [{"role": "user", "content": PROMPT}]
        assert view[0]["completion"][0]["role"] == "assistant"
        assert view[0]["completion"][0]["content"].startswith("<|im_start|>think\n")


@pytest.mark.parametrize("generation_prompt", [False, True])
@pytest.mark.parametrize("system", [None, "Be brief."])
def test_python_renderer_matches_jinja_template(generation_prompt, system):
    from tiny_model import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    tokenizer.chat_template = QWEN25_CHAT_TEMPLATE
    messages = to_sft(traced_rows())[0]["messages"]
    if generation_prompt:
        messages = messages[:1]
    if system:
        messages = [{"role": "system", "content": system}, *messages]
    jinja = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    assert render_chat(messages, add_generation_prompt=generation_prompt) == jinja


def test_to_sft_with_tokenizer_uses_its_template():
    from tiny_model import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    tokenizer.chat_template = "{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}{% endfor %}"
    text = to_sft(traced_rows(), tokenizer)[1]["text"]
    assert text.startswith("[user]Q2?") and "[assistant]<|im_start|>think\nThink.\n" in text


def test_token_length_stats():
    ds = datasets.Dataset.from_dict({"text": ["a" * 4, "b" * 8, "c" * 9, "d" * 40]})
    stats = token_length_stats(ds)
    assert stats["method"].startswith("approx")
    assert (stats["count"], stats["min"], stats["max"]) == (4, 1, 10)
    assert stats["mean"] == pytest.approx((1 + 2 + 3 + 10) / 4)
    assert stats["p50"] == pytest.approx(2.5)

    from tiny_model import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    sft = to_sft(traced_rows())
    exact = token_length_stats(sft, tokenizer)
    lengths = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in sft["text"]]
    assert exact["method"].startswith("tokenizer")
    assert (exact["min"], exact["max"]) == (min(lengths), max(lengths))
    assert token_length_stats(sft.select([]))["count"] == 0


def test_hub_configs_default_is_trl_conversational_and_views_beside_it():
    from m1data.stages.formatting import PROMPT_COMPLETION_SUFFIX, PUBLISHED_PROMPT_COLUMN, hub_configs

    rows = to_sft(traced_rows())
    configs = hub_configs(rows, "m1k")
    assert list(configs) == ["m1k", "m1k" + PROMPT_COMPLETION_SUFFIX]
    default = configs["m1k"]
    # TRL reads a `prompt` column as prompt/completion data: the default config must not have one
    assert "prompt" not in default.column_names and "completion" not in default.column_names
    assert default[PUBLISHED_PROMPT_COLUMN] == rows["prompt"] and default["messages"] == rows["messages"]
    view = configs["m1k" + PROMPT_COMPLETION_SUFFIX]
    assert view.column_names == ["id", "prompt", "completion"] and view["id"] == rows["id"]
    # re-publishing published rows (an m1K drawn from a published m23K) gives the same configs
    again = hub_configs(default, "m1k")
    assert again["m1k"].column_names == default.column_names
    assert again["m1k" + PROMPT_COMPLETION_SUFFIX]["prompt"] == view["prompt"]
    # the prompt/completion view passes through the wrapper's converter unchanged
    assert to_prompt_completion(view).to_list() == view.select_columns(["prompt", "completion"]).to_list()


def test_hub_configs_of_rows_without_traces_has_only_the_default():
    from m1data.stages.formatting import hub_configs

    configs = hub_configs(traced_rows(), "raw")
    assert list(configs) == ["raw"] and "user_prompt" in configs["raw"].column_names


def _row_by_row_sft(ds, require_reasoning=True):
    """What `to_sft` did before it read columns whole: `Dataset.map` over the rows (the reference)."""
    from m1data.stages.formatting import _row_messages, render_chat

    def add(row):
        messages = _row_messages(row, "reasoning", "teacher_reply", require_reasoning)
        return {"messages": messages, "text": render_chat(messages)}

    return ds.map(add)


def _row_by_row_view(ds):
    def split(row):
        messages = row["messages"]
        return {"prompt": list(messages[:-1]), "completion": [messages[-1]]}

    return ds.map(split, remove_columns=ds.column_names)


@settings(max_examples=8, deadline=None)
@given(view=st.sampled_from(["as is", "shuffled", "selected"]), seed=st.integers(0, 20),
       require_reasoning=st.booleans())
def test_sft_columns_are_those_the_row_by_row_map_gave_on_real_rows(view, seed, require_reasoning):
    """`to_sft` and the prompt/completion view read and write columns whole: on real rows (MedQA's
    test questions with made-up traces, some reasoning empty) they give the table, features and
    column order `Dataset.map` gave row by row, for every view a stage hands on."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    from m1data.reading.sources import load_source
    from m1data.stages.formatting import hub_configs

    rows = load_source("medqa", SHARED_DATA / "raw/medqa/4_options_phrases_no_exclude_test.jsonl").rows
    n = len(rows)
    rows = rows.add_column("reasoning", [("" if (i + seed) % 7 == 0 and not require_reasoning else f"Think {i}\n")
                                         for i in range(n)])
    rows = rows.add_column("teacher_reply", [f"Answer: \\boxed{{{'ABCD'[i % 4]}}}" if i % 2 else f"It is {i}"
                                             for i in range(n)])
    if view == "shuffled":
        rows = rows.shuffle(seed=seed)
    if view == "selected":
        rows = rows.select([i for i in range(n) if (i + seed) % 3][::-1])
    ours, before = to_sft(rows, require_reasoning=require_reasoning), _row_by_row_sft(rows, require_reasoning)
    assert ours.column_names == before.column_names and ours.features == before.features
    # the values, row by row (an older datasets' map orders a struct's fields by name: the
    # features, compared above, are the same)
    assert ours.with_format("arrow")[:].to_pylist() == before.with_format("arrow")[:].to_pylist()
    view_ours = hub_configs(ours, "m23k")["m23k-prompt-completion"]
    view_before = _row_by_row_view(before)
    assert view_ours.column_names == ["id", "prompt", "completion"]
    assert view_ours.features["prompt"] == view_before.features["prompt"]
    assert (view_ours.select_columns(["prompt", "completion"]).with_format("arrow")[:].to_pylist()
            == view_before.with_format("arrow")[:].to_pylist())
    assert column_values(view_ours, "id") == column_values(ours, "id")
