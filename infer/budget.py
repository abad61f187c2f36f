"""Budget-controlled generation (s1's budget forcing, as m1 uses it; reference s.10).

One implementation for every engine of `m1data.llm`: it only sends plain-completion `Request`s and
reads `Reply.text`, `Reply.finish_reason` and `Reply.completion_tokens`.

The shape of one generation:

1. prompt = chat template with generation prompt (Qwen2.5) + ``<|im_start|>think\\n``;
2. thinking: generate with ``max_tokens`` = what is left of the budget, stopping at
   ``<|im_start|>`` or ``<|im_end|>``;
3. forcing: if the model stopped by itself, budget is left and forcing rounds remain, append the
   forcing string (``Wait``) to the thinking and go back to 2;
4. end of thinking: append ``<|im_start|>answer`` if the model stopped by itself, or
   ``<|im_start|>answer\\nFinal Answer:`` if the budget ran out;
5. answer: generate up to 1,024 tokens, stopping at ``<|im_end|>``.
Greedy (temperature 0), seed 42.

Token accounting (decided here, checked by tests/test_infer_budget.py):

* The budget counts the tokens the *model generated* while thinking: the sum of
  ``Reply.completion_tokens`` over the thinking calls, which includes the stop token that ended a
  call (it was a decoding step; it is also what ``max_tokens`` bounds on every engine). So
  ``thinking_tokens <= thinking_budget`` always, and each call asks for exactly what is left.
* The forcing string does NOT count: it is text we insert, like the prompt, not tokens the model
  spent. This is s1's accounting (it subtracts only generated tokens), so budgets are comparable
  with s1/m1 numbers. The thinking text in the final context is therefore at most
  ``thinking_budget - (stop tokens) + rounds x len(tokens of "Wait")`` tokens long.
* Forcing happens only when the model stopped by itself with budget left (``thinking_tokens <
  thinking_budget``): a model that stops on the very last token of its budget is done, and is
  treated as having stopped by itself (``<|im_start|>answer``).
* Engines must report ``completion_tokens`` that way (vLLM and `transformers.generate` count the
  stop token). A reply claiming more tokens than were allowed, or none for a non-empty text, is
  an engine bug and is recorded as an error rather than silently breaking the budget. So is a
  thinking call that ends with ``length`` before its ``max_tokens``: that is an engine that
  stopped on a special token without recognising it as a stop (decoding with special tokens
  skipped hides it from stop *strings*; pass stop ids, `chatml_stop_ids`), or a full context
  window; either way the budget accounting would be wrong.

Stop reasons: ``model`` (the model ended its thinking itself and no forcing was left to apply),
``budget`` (the budget ran out), ``error`` (an engine call failed; the record keeps the message).

# Table 1 on GPUs (vLLM serve + m1data)
```bash
# one server per model; tensor parallel 4 for 32B (1 is enough for 7B)
vllm serve <org>/m1-32B-1K --dtype bfloat16 --tensor-parallel-size 4 --seed 42 \\
    --max-model-len 12288 --port 8000
# in-distribution and out-of-distribution sets of Table 1, budget sweep (Figure 1) ...
m1data infer sweep --base-url http://127.0.0.1:8000/v1 --model <org>/m1-32B-1K \\
    --eval-sets medmcqa_validation,medqa_test,pubmedqa_test,mmlu_pro_health,gpqa_diamond,\\
medbullets_op4,medbullets_op5,path/to/m1_eval.json \\
    --budgets 512,1024,2048,4096,8192 --forcing-rounds 0 --out runs/sweep/m1-32B-1K
# ... and forcing rounds within a 2,048-token budget (Figure 3)
m1data infer sweep --base-url http://127.0.0.1:8000/v1 --model <org>/m1-32B-1K \\
    --eval-sets <same> --budgets 2048 --forcing-rounds 0,1,2,3,4,5 --out runs/sweep/m1-32B-1K-forcing
```
With vLLM, pass the Qwen2.5 stop *ids* too (`QWEN25_THINKING_STOP_IDS`, `QWEN25_ANSWER_STOP_IDS`
as `BudgetConfig.thinking_stop_token_ids` / `answer_stop_token_ids`, and
``HTTPConfig(extra_params=VLLM_EXTRA_PARAMS)``): vLLM skips special tokens when detokenising, so
stop *strings* naming them never match and the model would think on through its own
``<|im_start|>answer``. The Python equivalent of the sweep commands:

```python
from m1data.evalsets import load_eval_any
from m1data.infer.budget import BudgetConfig, QWEN25_ANSWER_STOP_IDS, QWEN25_THINKING_STOP_IDS
from m1data.infer.sweep import run_sweep
from m1data.llm import VLLM_EXTRA_PARAMS, HTTPConfig, HTTPEngine

engine = HTTPEngine(HTTPConfig(base_url="http://127.0.0.1:8000/v1", extra_params=VLLM_EXTRA_PARAMS))
sets = {name: loaded.rows for wanted in ("medmcqa_validation", "medqa_test", "pubmedqa_test")
        for name, loaded in load_eval_any(wanted).items()}
base = BudgetConfig(model="<org>/m1-32B-1K", concurrency=256,
                    thinking_stop_token_ids=QWEN25_THINKING_STOP_IDS,
                    answer_stop_token_ids=QWEN25_ANSWER_STOP_IDS)
run_sweep(engine, sets, "runs/sweep/m1-32B-1K", base, budgets=[512, 1024, 2048, 4096, 8192])
```
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from m1data.errors import UserError
from m1data.formatting import IM_END, IM_START, render_chat
from m1data.llm.types import Engine, Reply, Request

__all__ = [
    "THINK_OPEN",
    "ANSWER_AFTER_STOP",
    "ANSWER_AFTER_BUDGET",
    "QWEN25_THINKING_STOP_IDS",
    "QWEN25_ANSWER_STOP_IDS",
    "BudgetConfig",
    "BudgetRecord",
    "build_prompt",
    "chatml_stop_ids",
    "template_stop_ids",
    "generate",
    "generate_many",
]

THINK_OPEN = f"{IM_START}think\n"
ANSWER_AFTER_STOP = f"{IM_START}answer"
ANSWER_AFTER_BUDGET = f"{IM_START}answer\nFinal Answer:"

# Qwen2.5 vocabulary: <|endoftext|> 151643, <|im_start|> 151644, <|im_end|> 151645.
QWEN25_THINKING_STOP_IDS = (151644, 151645, 151643)
QWEN25_ANSWER_STOP_IDS = (151645, 151643)

StopReason = Literal["model", "budget", "error"]


@dataclass
class BudgetConfig:
    """One budget-forcing setting. Defaults are the paper's (greedy, seed 42, 1,024 answer tokens)."""

    model: str
    thinking_budget: int = 4096
    forcing_rounds: int = 0
    forcing_string: str = "Wait"
    answer_max_tokens: int = 1024
    thinking_stop: tuple[str, ...] = (IM_START, IM_END)
    answer_stop: tuple[str, ...] = (IM_END,)
    # Token-id stops for servers that need them (vLLM); sent as `stop_token_ids` when set.
    thinking_stop_token_ids: tuple[int, ...] | None = None
    answer_stop_token_ids: tuple[int, ...] | None = None
    temperature: float = 0.0
    seed: int = 42
    concurrency: int = 16
    # Anything else an engine understands (e.g. {"skip_special_tokens": False}); merged last.
    extra_params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.thinking_budget < 0 or self.forcing_rounds < 0 or self.answer_max_tokens < 1:
            raise UserError("thinking_budget and forcing_rounds must be >= 0, answer_max_tokens >= 1")

    def params(self, max_tokens: int, stop: Sequence[str], stop_ids: Sequence[int] | None) -> dict[str, Any]:
        params: dict[str, Any] = {
            "max_tokens": max_tokens,
            "temperature": self.temperature,
            "seed": self.seed,
            "stop": list(stop),
        }
        if stop_ids is not None:
            params["stop_token_ids"] = list(stop_ids)
        params.update(self.extra_params)
        return params


@dataclass
class BudgetRecord:
    """What one budget-controlled generation produced, with its exact token accounting."""

    thinking: str = ""
    thinking_tokens: int = 0
    round_tokens: list[int] = field(default_factory=list)
    forcing_rounds: int = 0
    stop_reason: StopReason = "model"
    answer_prefix: str = ""
    answer: str = ""
    answer_tokens: int = 0
    error: str | None = None

    @property
    def reply(self) -> str:
        """The answer section as scored: prefix (with the answer marker) then the answer."""
        return self.answer_prefix + self.answer

    @property
    def completion(self) -> str:
        """Everything after the prompt, as the model saw it at the end."""
        return THINK_OPEN + self.thinking + self.reply

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_prompt(question: str, render: Callable[[list[dict[str, str]]], str] | None = None) -> str:
    """The user turn rendered with a generation prompt, then the opening of the thinking section.

    `render` turns messages into text with the generation prompt (e.g. a tokenizer's
    ``apply_chat_template(..., tokenize=False, add_generation_prompt=True)``); by default the
    Qwen2.5 template m1 was trained with.
    """
    messages = [{"role": "user", "content": question}]
    head = render(messages) if render is not None else render_chat(messages, add_generation_prompt=True)
    return head + THINK_OPEN


def chatml_stop_ids(tokenizer: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(thinking, answer) stop ids of a ChatML tokenizer: ``<|im_start|>``, ``<|im_end|>`` and its
    EOS for thinking; ``<|im_end|>`` and EOS for the answer. Pass them to `BudgetConfig` for any
    engine that decodes with special tokens skipped (vLLM, `m1data.llm.hf`), where a stop *string*
    naming a special token cannot be seen in the text."""
    start, end = tokenizer.convert_tokens_to_ids(IM_START), tokenizer.convert_tokens_to_ids(IM_END)
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    return tuple(sorted({start, end, *eos})), tuple(sorted({end, *eos}))


def template_stop_ids(tokenizer: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(thinking, answer) stop ids read from the model's own tokenizer and chat template.

    The answer ends where the template ends an assistant turn: the special tokens it writes right
    after the assistant's content (``<|im_end|>`` for ChatML, ``<|eot_id|>`` for Llama 3), plus the
    EOS token. Thinking ends there too, or at the token that opens m1's answer section
    (``<|im_start|>``) when the vocabulary has it. Works for any model with a chat template, where
    `chatml_stop_ids` assumes ChatML.
    """
    sentinel = "m1data-end-of-content"
    messages = [{"role": "user", "content": "q"}, {"role": "assistant", "content": sentinel}]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False)
    after = rendered[rendered.rindex(sentinel) + len(sentinel):]
    special = set(tokenizer.all_special_ids) | {
        i for i, token in getattr(tokenizer, "added_tokens_decoder", {}).items() if getattr(token, "special", False)
    }
    end_of_turn = {i for i in tokenizer(after, add_special_tokens=False)["input_ids"] if i in special}
    eos = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    answer = end_of_turn | eos
    if not answer:
        raise UserError(f"cannot tell how {getattr(tokenizer, 'name_or_path', 'this model')}'s chat template ends a turn")
    start = tokenizer.convert_tokens_to_ids(IM_START)
    opens = {start} if isinstance(start, int) and start in special else set()
    return tuple(sorted(answer | opens)), tuple(sorted(answer))


class EngineReplyError(RuntimeError):
    """An engine reply that cannot be used (failed call, or usage that breaks the accounting)."""


def _check(reply: Reply, max_tokens: int) -> None:
    if reply.status in ("error", "filtered"):
        raise EngineReplyError(f"engine call {reply.status}: {reply.error or reply.finish_reason}")
    if reply.completion_tokens > max_tokens:
        raise EngineReplyError(f"engine reported {reply.completion_tokens} tokens for max_tokens={max_tokens}")
    if reply.completion_tokens < 1 and reply.text:
        raise EngineReplyError("engine reported no completion tokens for a non-empty text; cannot count the budget")
    if reply.reasoning is not None:
        # The engine split <think>...</think> out of a plain completion: the text is no longer
        # what the model generated, so it cannot be continued verbatim.
        raise EngineReplyError("engine split thinking tags out of a plain completion; the text is not verbatim")


def _hit_length(reply: Reply) -> bool:
    return reply.finish_reason == "length" or reply.status == "length"


async def generate(engine: Engine, prompt: str, config: BudgetConfig) -> BudgetRecord:
    """Run budget forcing for one already-built prompt (see `build_prompt`)."""
    record = BudgetRecord()
    try:
        stopped_by_model = False
        while True:
            remaining = config.thinking_budget - record.thinking_tokens
            if remaining <= 0:
                break
            params = config.params(remaining, config.thinking_stop, config.thinking_stop_token_ids)
            reply = await engine.complete(Request(model=config.model, prompt=prompt + record.thinking, params=params))
            _check(reply, remaining)
            record.thinking += reply.text
            record.thinking_tokens += reply.completion_tokens
            record.round_tokens.append(reply.completion_tokens)
            if _hit_length(reply):
                if reply.completion_tokens < remaining:
                    raise EngineReplyError(
                        f"engine reported finish 'length' after {reply.completion_tokens} of {remaining} tokens: "
                        "a stop on a special token was probably not recognised (pass stop ids, see "
                        "chatml_stop_ids) or the context window is full"
                    )
                break
            budget_left = record.thinking_tokens < config.thinking_budget
            if budget_left and record.forcing_rounds < config.forcing_rounds:
                record.thinking += config.forcing_string
                record.forcing_rounds += 1
                continue
            stopped_by_model = True
            break

        record.stop_reason = "model" if stopped_by_model else "budget"
        record.answer_prefix = ANSWER_AFTER_STOP if stopped_by_model else ANSWER_AFTER_BUDGET
        params = config.params(config.answer_max_tokens, config.answer_stop, config.answer_stop_token_ids)
        context = prompt + record.thinking + record.answer_prefix
        reply = await engine.complete(Request(model=config.model, prompt=context, params=params))
        _check(reply, config.answer_max_tokens)
        record.answer = reply.text
        record.answer_tokens = reply.completion_tokens
    except EngineReplyError as exc:
        record.stop_reason = "error"
        record.error = str(exc)
    return record


async def generate_many(
    engine: Engine,
    prompts: Sequence[str],
    config: BudgetConfig,
    on_done: Callable[[int, BudgetRecord], None] | None = None,
) -> list[BudgetRecord]:
    """`generate` over many prompts with at most `config.concurrency` in flight, in input order.

    Engines batch concurrent requests (vLLM continuous batching, HTTP servers), so concurrency
    is where the speed is; the forcing rounds of one prompt stay sequential by nature.
    `on_done(index, record)` is called as each finishes (progress bars, incremental writes).
    """
    gate = asyncio.Semaphore(max(1, config.concurrency))

    async def one(i: int, prompt: str) -> BudgetRecord:
        async with gate:
            record = await generate(engine, prompt, config)
        if on_done is not None:
            on_done(i, record)
        return record

    return list(await asyncio.gather(*(one(i, p) for i, p in enumerate(prompts))))
