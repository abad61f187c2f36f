"""The SFT format of m1 (reference s.9): one user turn, one assistant turn that thinks then answers.

The assistant turn is ``<|im_start|>think\\n{reasoning}\\n<|im_start|>answer\\n{answer}``, the user
turn is the plain row ``prompt`` (question and ``A. ...`` option lines, no format instruction), and
the whole conversation is rendered with the Qwen2.5 chat template. The same markers are what
budget-controlled inference (``m1data.infer.budget``) writes and stops on, so the two must agree:
both read the constants below.

Three views of the same conversation, because different consumers want different shapes:

* ``messages`` (added by `to_sft`): the chat as a list of ``{role, content}``; what a reader of the
  published dataset expects and what most trainers accept.
* ``text`` (added by `to_sft`): the conversation rendered to one string, for trainers that take raw
  text and for counting tokens.
* `to_prompt_completion`: a *separate* Dataset with only TRL's conversational prompt/completion
  columns (``prompt`` = [user message], ``completion`` = [assistant message]). It cannot live on the
  row itself: rows already have a ``prompt`` *string* column, and TRL decides the dataset type from
  the column names. Current TRL computes the loss on the completion only for this shape, which is
  the loss m1 trains with (see ``m1data.train.sft``).

What is published (`hub_configs`): TRL (1.x) picks the dataset type from column names, and a
``prompt`` column makes it treat rows as prompt/completion data, whatever else they carry; so a
published row with ``messages`` *and* the string ``prompt`` fails in ``SFTTrainer`` with
``KeyError: 'completion'``. The default config therefore carries the row's ``prompt`` as
``user_prompt`` (a name TRL does not read) beside ``messages`` and ``text``: ``SFTTrainer(model,
train_dataset=ds)`` trains on it as conversational language-modelling data, and
``SFTConfig(assistant_only_loss=True)`` restricts the loss to the assistant turn. A second config,
``<name>-prompt-completion``, holds the `to_prompt_completion` view, on which TRL computes a
completion-only loss with no option at all.

This module needs no torch and no tokenizer: the chat template is rendered by a small Python twin of
`QWEN25_CHAT_TEMPLATE` (a test checks the two agree through a real tokenizer).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np
import pyarrow as pa

from m1data.errors import UserError
from m1data.running.pipeline import RunContext, Stage, StageResult, add_columns, with_columns
from m1data.schema import column_values, flattened, fresh_fingerprint

# A chat as the rows hold it: what ``Dataset.map`` inferred from the dicts `sft_messages` makes.
MESSAGES_FEATURE = datasets.List({"role": datasets.Value("string"), "content": datasets.Value("string")})
SFT_COLUMNS = ("messages", "text")  # what `to_sft` adds to every row

__all__ = [
    "ANSWER_START",
    "IM_END",
    "IM_START",
    "PROMPT_COMPLETION_SUFFIX",
    "PUBLISHED_PROMPT_COLUMN",
    "QWEN25_CHAT_TEMPLATE",
    "QWEN25_SYSTEM",
    "THINK_START",
    "FormatConfig",
    "FormatSFT",
    "assistant_turn",
    "final_answer",
    "hub_configs",
    "render_chat",
    "sft_messages",
    "to_prompt_completion",
    "to_sft",
    "token_length_stats",
]

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
THINK_START = f"{IM_START}think\n"
ANSWER_START = f"{IM_START}answer\n"
ANSWER_PREFIX = "Answer: "

# Qwen2.5-Instruct injects this system turn when the conversation has none; m1 trained without a
# system message of its own, so every rendered m1 example starts with it.
QWEN25_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."

# A Qwen2.5-style ChatML template without tool calling (m1 has no tools). Written for m1data; it
# renders plain-text conversations exactly like Qwen2.5-Instruct's own template does. The
# ``{% generation %}`` block (a transformers extension, ignored when rendering) marks the assistant
# turn, end-of-turn token included, so TRL's ``assistant_only_loss`` can mask everything else.
QWEN25_CHAT_TEMPLATE = (
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- set system = messages[0]['content'] -%}"
    "{%- set turns = messages[1:] -%}"
    "{%- else -%}"
    "{%- set system = '" + QWEN25_SYSTEM + "' -%}"
    "{%- set turns = messages -%}"
    "{%- endif -%}"
    "{{- '<|im_start|>system\\n' + system + '<|im_end|>\\n' -}}"
    "{%- for m in turns -%}"
    "{%- if m['role'] == 'assistant' -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- generation -%}"
    "{{- m['content'] + '<|im_end|>\\n' -}}"
    "{%- endgeneration -%}"
    "{%- else -%}"
    "{{- '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- endif -%}"
)


def final_answer(reply: str) -> str:
    """The teacher's final reply as the answer section, prefixed with ``Answer: `` when it lacks one.

    "Lacks one" means: after stripping surrounding whitespace, the reply does not start with
    ``answer:`` in any letter case. Only the start counts, because a reply that *ends* on "the
    answer is B" still opens with prose, and the model should learn one fixed opening. Markdown
    such as ``**Answer:**`` does not count as having it (kept literal, so the rule stays testable).
    """
    reply = reply.strip()
    if reply.lower().startswith(ANSWER_PREFIX.strip().lower()):
        return reply
    return ANSWER_PREFIX + reply


def assistant_turn(reasoning: str, answer: str) -> str:
    """``<|im_start|>think\\n{reasoning}\\n<|im_start|>answer\\n{answer}``.

    Both parts are stripped so that exactly one newline separates them from the markers: teacher
    traces arrive with stray leading/trailing blank lines, and the model should see one shape.
    """
    return f"{THINK_START}{reasoning.strip()}\n{ANSWER_START}{final_answer(answer)}"


def sft_messages(prompt: str, reasoning: str, reply: str) -> list[dict[str, str]]:
    """The two-turn chat of one example. No system message: the template supplies Qwen's default."""
    return [
        {"role": "user", "content": prompt},
        {"role": "assistant", "content": assistant_turn(reasoning, reply)},
    ]


def render_chat(messages: Sequence[dict[str, str]], add_generation_prompt: bool = False) -> str:
    """Render `messages` exactly as `QWEN25_CHAT_TEMPLATE` does, without jinja or a tokenizer."""
    system, turns = QWEN25_SYSTEM, list(messages)
    if turns and turns[0]["role"] == "system":
        system, turns = turns[0]["content"], turns[1:]
    parts = [f"{IM_START}system\n{system}{IM_END}\n"]
    parts += [f"{IM_START}{m['role']}\n{m['content']}{IM_END}\n" for m in turns]
    if add_generation_prompt:
        parts.append(f"{IM_START}assistant\n")
    return "".join(parts)


def _row_messages(row: dict[str, Any], reasoning_column: str, reply_column: str,
                  require_reasoning: bool = True) -> list[dict[str, str]]:
    """Why `require_reasoning`: a row without thinking is a defect of a reasoning teacher's traces,
    but the very rows a teacher meant to answer without thinking gives (the traces stage's
    `require_reasoning: false`): those get an empty think block rather than stopping the build."""
    reasoning, reply = row.get(reasoning_column), row.get(reply_column)
    if reasoning is None or reply is None or (require_reasoning and not reasoning.strip()):
        raise UserError(
            f"row {row.get('id')!r} has no {reasoning_column!r}/{reply_column!r}: SFT rows need teacher traces"
        )
    return sft_messages(row["prompt"], reasoning, reply)


def to_sft(
    ds: datasets.Dataset,
    tokenizer: Any | None = None,
    *,
    reasoning_column: str = "reasoning",
    reply_column: str = "teacher_reply",
    require_reasoning: bool = True,
) -> datasets.Dataset:
    """Add ``messages`` and ``text`` to rows that carry teacher traces; every other column is kept.

    ``text`` is rendered with `tokenizer`'s own chat template when one is given (so it matches what
    that model is trained on), otherwise with the Qwen2.5 template of this module. With
    ``require_reasoning=False`` a row whose reasoning is empty is formatted with an empty think block.
    """

    # Columns are read and written whole (Why: ``ds.map`` formats every row's columns, metadata
    # and options included, into a dict and back: 46 s per 100K rows, for three strings a row.)
    wanted = ["id", "prompt", reasoning_column, reply_column]
    columns = {name: column_values(ds, name) if name in ds.column_names or name == "prompt" else [None] * len(ds)
               for name in wanted}
    messages = [_row_messages(dict(zip(wanted, values)), reasoning_column, reply_column, require_reasoning)
                for values in zip(*columns.values())]
    if tokenizer is not None:
        texts = [tokenizer.apply_chat_template(m, tokenize=False) for m in messages]
    else:
        texts = [render_chat(m) for m in messages]
    order = ds.column_names + [name for name in SFT_COLUMNS if name not in ds.column_names]
    added = add_columns(flattened(ds), {"messages": (messages, MESSAGES_FEATURE), "text": (texts, datasets.Value("string"))})
    return added.select_columns(order)  # a column formatted before keeps its place, as with ``map``


def to_prompt_completion(
    ds: datasets.Dataset,
    *,
    reasoning_column: str = "reasoning",
    reply_column: str = "teacher_reply",
) -> datasets.Dataset:
    """The TRL training view: only ``prompt`` = [user turn] and ``completion`` = [assistant turn].

    Reads ``messages`` when the rows have them (a published m1 dataset), else builds them from the
    prompt and the teacher trace. All other columns are dropped, because TRL infers the dataset type
    from column names and a leftover ``messages`` or ``text`` column would only confuse a reader.
    """

    if "completion" in ds.column_names and not isinstance(ds.features.get("prompt"), datasets.Value):
        return ds.select_columns(["prompt", "completion"])  # already this view (a published config)

    def split(row: dict[str, Any]) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
        if row.get("messages"):
            messages = row["messages"]
        else:
            messages = _row_messages(row, reasoning_column, reply_column)
        if len(messages) < 2 or messages[-1]["role"] != "assistant":
            raise UserError(f"row {row.get('id')!r}: messages must end with the assistant turn")
        return list(messages[:-1]), [messages[-1]]

    # Columns read whole, not ``ds.map`` row by row (see `to_sft`).
    wanted = [name for name in ("id", "messages", "prompt", reasoning_column, reply_column) if name in ds.column_names]
    columns = [column_values(ds, name) for name in wanted]
    pairs = [split(dict(zip(wanted, values))) for values in zip(*columns)]
    features = datasets.Features({"prompt": MESSAGES_FEATURE, "completion": MESSAGES_FEATURE})
    table = pa.Table.from_pydict({"prompt": [p for p, _ in pairs], "completion": [c for _, c in pairs]},
                                 schema=features.arrow_schema)
    return datasets.Dataset(table, fingerprint=fresh_fingerprint())


PUBLISHED_PROMPT_COLUMN = "user_prompt"
PROMPT_COMPLETION_SUFFIX = "-prompt-completion"


def hub_configs(rows: datasets.Dataset, name: str) -> dict[str, datasets.Dataset]:
    """The configs a build publishes, {config name: rows}; `name` is the default one (first).

    * `name`: every column of the build, ``prompt`` renamed `PUBLISHED_PROMPT_COLUMN` so that TRL
      reads the rows as conversational ``messages`` (see the module docstring).
    * ``<name>-prompt-completion``: ``id`` plus `to_prompt_completion`'s two columns, for TRL's
      completion-only loss without options. Only for rows that have ``messages``.
    """
    default = rows
    if "prompt" in rows.column_names and isinstance(rows.features["prompt"], datasets.Value):
        if PUBLISHED_PROMPT_COLUMN in rows.column_names:
            raise UserError(f"rows have both 'prompt' and {PUBLISHED_PROMPT_COLUMN!r}; cannot publish both")
        default = rows.rename_column("prompt", PUBLISHED_PROMPT_COLUMN)
    configs = {name: default}
    if "messages" in rows.column_names:
        view = to_prompt_completion(rows)
        if "id" in rows.column_names:
            view = view.add_column("id", column_values(rows, "id"), new_fingerprint=fresh_fingerprint())
            view = view.select_columns(["id", "prompt", "completion"])
        configs[name + PROMPT_COMPLETION_SUFFIX] = view
    return configs


def token_length_stats(
    ds: datasets.Dataset, tokenizer: Any | None = None, column: str = "text"
) -> dict[str, Any]:
    """min/mean/p50/p90/max length of `column` (default: the rendered conversation).

    With a tokenizer the counts are exact (no special tokens added: the template already contains
    them as text). Without one, each text counts as ``ceil(chars / 4)``, a rough English-BPE rate,
    and ``method`` says so: use it to size ``max_length`` ballpark, never to report lengths.
    """
    texts = column_values(ds, column)
    if tokenizer is not None:
        lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
        method = f"tokenizer:{getattr(tokenizer, 'name_or_path', '') or type(tokenizer).__name__}"
    else:
        lengths = [math.ceil(len(t) / 4) for t in texts]
        method = "approx:ceil(chars/4)"
    if not lengths:
        return {"column": column, "method": method, "count": 0, "min": 0, "mean": 0.0, "p50": 0.0, "p90": 0.0, "max": 0}
    arr = np.asarray(lengths)
    return {
        "column": column,  # the card prints these stats as they are: say what they measure
        "method": method,
        "count": int(arr.size),
        "min": int(arr.min()),
        "mean": float(arr.mean()),
        "p50": float(np.percentile(arr, 50)),
        "p90": float(np.percentile(arr, 90)),
        "max": int(arr.max()),
    }


@dataclass
class FormatConfig:
    reasoning_column: str = "reasoning"
    reply_column: str = "teacher_reply"
    require_reasoning: bool = True  # the builders set the traces stage's own choice


class FormatSFT(Stage):
    """Adds `messages` and `text` to every row of a build; the token-length summary goes to the
    manifest (approximate without a tokenizer, and labelled so)."""

    name = "format"
    row_parallel = True

    def __init__(self, config: FormatConfig | None = None):
        self.config = config or FormatConfig()

    def columns_after(self, before: frozenset[str] | None) -> frozenset[str] | None:
        return with_columns(before, SFT_COLUMNS)

    def run(self, rows: datasets.Dataset | None, ctx: RunContext) -> StageResult:
        formatted = to_sft(rows, reasoning_column=self.config.reasoning_column, reply_column=self.config.reply_column,
                           require_reasoning=self.config.require_reasoning)
        return StageResult(rows=formatted, stats={"token_lengths": token_length_stats(formatted)})

    def merge_stats(self, parts: list[dict[str, Any]], rows: datasets.Dataset) -> dict[str, Any]:
        """Percentiles do not add up over blocks: a distributed run recomputes them on all rows."""
        return {"token_lengths": token_length_stats(rows)}
