"""Budget-controlled generation (s1's budget forcing, as m1 uses it; reference s.10).

One implementation for every engine of `m1data.llm`: it only sends plain-completion `Request`s and
reads `Reply.text`, `Reply.finish_reason` and `Reply.completion_tokens`. Every call goes through
the runtime the LLM stages use (`m1data.llm.runner.run_requests` under an `LLMRuntime`): the SQLite
reply cache, concurrency, rate limits, retries with backoff, and the stop on a dead endpoint.

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

Token accounting (decided here, checked by tests/infer/test_infer_budget.py):

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
  skipped hides it from stop *strings*; pass stop ids, `template_stop_ids`), or a full context
  window; either way the budget accounting would be wrong.

Stop reasons: ``model`` (the model ended its thinking itself and no forcing was left to apply),
``budget`` (the budget ran out), ``error`` (a call was refused or its reply breaks the accounting;
a recorded outcome, the record keeps the message), ``incomplete`` (a call failed transiently after
every retry: a timeout, a 5xx, a dropped connection; the question is unfinished, never scored, and
sent again on the next run).

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
With vLLM, the Qwen2.5 stop *ids* must go on the wire too (the model's own, read from its
tokenizer, `template_stop_ids`; `QWEN25_THINKING_STOP_IDS` / `QWEN25_ANSWER_STOP_IDS` for Qwen2.5
models): vLLM skips special tokens when detokenising, so stop *strings* naming them never match and
the model would think on through its own ``<|im_start|>answer``. The commands do this, and so does
their Python equivalent, `m1data.infer.jobs`, which reads the eval sets as the commands do (a
question whose answer key cannot be read is counted ``unscored`` in metrics.json, not dropped):

```python
from m1data.infer.jobs import infer_runtime, infer_sweep

infer_sweep("<org>/m1-32B-1K", ["medmcqa_validation", "medqa_test", "pubmedqa_test"], "runs/sweep/m1-32B-1K",
            base_url="http://127.0.0.1:8000/v1", budgets=[512, 1024, 2048, 4096, 8192],
            runtime=infer_runtime(concurrency=256))
```
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from m1data.errors import UserError
from m1data.llm.cache import Cache
from m1data.llm.runner import RunStats, run_requests
from m1data.llm.stages import LLMRuntime, is_transient
from m1data.llm.types import Engine, Reply, Request
from m1data.stages.formatting import IM_END, IM_START, render_chat

__all__ = [
    "THINK_OPEN",
    "ANSWER_AFTER_STOP",
    "ANSWER_AFTER_BUDGET",
    "QWEN25_THINKING_STOP_IDS",
    "QWEN25_ANSWER_STOP_IDS",
    "HUB_LOOKUP_TIMEOUT",
    "BudgetConfig",
    "BudgetRecord",
    "build_prompt",
    "chatml_stop_ids",
    "template_stop_ids",
    "generate",
    "generate_many",
    "load_tokenizer",
]

THINK_OPEN = f"{IM_START}think\n"
ANSWER_AFTER_STOP = f"{IM_START}answer"
ANSWER_AFTER_BUDGET = f"{IM_START}answer\nFinal Answer:"

# Qwen2.5 vocabulary: <|endoftext|> 151643, <|im_start|> 151644, <|im_end|> 151645.
QWEN25_THINKING_STOP_IDS = (151644, 151645, 151643)
QWEN25_ANSWER_STOP_IDS = (151645, 151643)
HUB_LOOKUP_TIMEOUT = 10.0  # seconds for the one Hub look-up of `load_tokenizer`

StopReason = Literal["model", "budget", "error", "incomplete"]


@dataclass
class BudgetConfig:
    """One budget-forcing setting. Defaults are the paper's (greedy, seed 42, 1,024 answer tokens).
    How the calls are sent (concurrency, limits, retries, cache) is the runtime's: `LLMRuntime`."""

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
    answer_cut: bool = False  # the answer ran into answer_max_tokens: scored as far as it went, and counted
    error: str | None = None

    @property
    def reply(self) -> str:
        """The answer section as the model saw it: the prefix m1data wrote (with the answer
        marker) then the model's answer (`answer`, what is graded)."""
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


def load_tokenizer(name: str) -> Any:
    """The tokenizer `name` (a folder or a Hub id), found locally first and never through the
    Hub's retries: a folder, or a copy already in the local Hugging Face cache, is used as it is;
    otherwise, unless HF_HUB_OFFLINE is set, one quick look-up on the Hub decides whether to
    download it. Why: asked straight away, `from_pretrained` retries an unreachable Hub for about
    45 s before failing. Anything that cannot be had is a one-line `UserError` within a second."""
    import huggingface_hub
    from huggingface_hub import constants
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError

    from m1data.reading.readers import _network_errors

    is_path = Path(name).exists()
    if is_path or _in_hub_cache(name):
        from transformers import AutoTokenizer

        try:
            return AutoTokenizer.from_pretrained(name, local_files_only=True)
        except (OSError, ValueError) as err:
            if is_path:
                first_line = str(err).splitlines()[0] if str(err) else ""
                raise UserError(f"cannot load a tokenizer from {name} ({type(err).__name__}: {first_line})") from None
    where = f"tokenizer {name!r} is neither a local folder nor in the local Hugging Face cache"
    if constants.HF_HUB_OFFLINE:  # what is_offline_mode() returns; that name is not in every 1.x version
        raise UserError(f"{where}, and HF_HUB_OFFLINE is set")
    try:
        from transformers import AutoTokenizer

        huggingface_hub.model_info(name, timeout=HUB_LOOKUP_TIMEOUT)
        return AutoTokenizer.from_pretrained(name)
    except (HfHubHTTPError, HFValidationError, OSError, ValueError, *_network_errors()) as err:
        raise UserError(f"{where}, and the Hub cannot provide it ({type(err).__name__})") from None


def _in_hub_cache(name: str) -> bool:
    """Whether the local Hugging Face cache holds anything of the model `name`, read from the cache
    folder's name. Why not ask transformers: importing it (and torch) takes about 3 s, which an
    `infer` run against a model with no local tokenizer would pay only to be told so."""
    from huggingface_hub import constants
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.file_download import repo_folder_name

    try:
        return (Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=name, repo_type="model")).is_dir()
    except HFValidationError:  # not a Hub id (a path that does not exist, say)
        return False


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


def _whole_characters(text: str) -> str:
    """The text of a call cut at its `max_tokens`, up to its last whole character. A byte-level
    tokenizer splits a multi-byte UTF-8 character into several tokens, and an engine decodes a
    cut between them to U+FFFD (`transformers` does): fed back with the answer marker, the model
    read a replacement character it never wrote. The bytes dropped were generated, so their
    tokens still count in the budget."""
    return text.removesuffix("\ufffd")


def _hit_length(reply: Reply) -> bool:
    return reply.finish_reason == "length" or reply.status == "length"


class _Generation:
    """One prompt's budget forcing as a state machine: `request()` is its next call, `take(reply)`
    moves it on. Why not a loop per prompt: every call must go through the runtime
    (`m1data.llm.runner.run_requests`: cache, retries, rate limits, the dead-endpoint stop), which
    takes a list of requests; so all prompts advance together, one step per `run_requests`."""

    def __init__(self, prompt: str, config: BudgetConfig):
        self.prompt = prompt
        self.config = config
        self.record = BudgetRecord()
        self.answering = False
        self.done = False
        if config.thinking_budget <= 0:  # no thinking at all: straight to the final answer
            self._end_thinking(stopped_by_model=False)

    def request(self) -> Request:
        c, r = self.config, self.record
        if self.answering:
            params = c.params(c.answer_max_tokens, c.answer_stop, c.answer_stop_token_ids)
            return Request(model=c.model, prompt=self.prompt + r.thinking + r.answer_prefix, params=params)
        remaining = c.thinking_budget - r.thinking_tokens
        params = c.params(remaining, c.thinking_stop, c.thinking_stop_token_ids)
        return Request(model=c.model, prompt=self.prompt + r.thinking, params=params)

    def take(self, reply: Reply) -> None:
        if is_transient(reply):
            # No answer came back (timeouts, 5xx, dropped connections after every retry): the
            # question is unfinished, not wrong. The cache marks the call for sending again.
            self.record.stop_reason = "incomplete"
            self.record.error = reply.error
            self.done = True
            return
        try:
            self._answer(reply) if self.answering else self._think(reply)
        except EngineReplyError as exc:
            self.record.stop_reason = "error"
            self.record.error = str(exc)
            self.done = True

    def _think(self, reply: Reply) -> None:
        c, r = self.config, self.record
        remaining = c.thinking_budget - r.thinking_tokens
        _check(reply, remaining)
        r.thinking += _whole_characters(reply.text) if _hit_length(reply) else reply.text
        r.thinking_tokens += reply.completion_tokens
        r.round_tokens.append(reply.completion_tokens)
        if _hit_length(reply):
            if reply.completion_tokens < remaining:
                raise EngineReplyError(
                    f"engine reported finish 'length' after {reply.completion_tokens} of {remaining} tokens: "
                    "a stop on a special token was probably not recognised (pass stop ids, see "
                    "template_stop_ids) or the context window is full"
                )
            self._end_thinking(stopped_by_model=False)
            return
        if r.thinking_tokens < c.thinking_budget and r.forcing_rounds < c.forcing_rounds:
            r.thinking += c.forcing_string
            r.forcing_rounds += 1
            return
        self._end_thinking(stopped_by_model=True)

    def _end_thinking(self, stopped_by_model: bool) -> None:
        self.record.stop_reason = "model" if stopped_by_model else "budget"
        self.record.answer_prefix = ANSWER_AFTER_STOP if stopped_by_model else ANSWER_AFTER_BUDGET
        self.answering = True

    def _answer(self, reply: Reply) -> None:
        _check(reply, self.config.answer_max_tokens)
        self.record.answer = reply.text
        self.record.answer_tokens = reply.completion_tokens
        self.record.answer_cut = _hit_length(reply)
        self.done = True


async def generate(
    engine: Engine,
    prompt: str,
    config: BudgetConfig,
    cache: Cache | None = None,
    *,
    runtime: LLMRuntime | None = None,
) -> BudgetRecord:
    """Run budget forcing for one already-built prompt (see `build_prompt`)."""
    runtime = runtime if runtime is not None else LLMRuntime(progress=False)
    return (await generate_many(engine, [prompt], config, cache, runtime=runtime))[0]


async def generate_many(
    engine: Engine,
    prompts: Sequence[str],
    config: BudgetConfig,
    cache: Cache | None = None,
    *,
    runtime: LLMRuntime | None = None,
    stats: RunStats | None = None,
    label: str = "budget forcing",
    on_done: Callable[[int, BudgetRecord], None] | None = None,
) -> list[BudgetRecord]:
    """`generate` over many prompts, in input order, through the same runtime as the LLM stages.

    Each step sends the next call of every unfinished prompt with `run_requests`: the reply
    cache (a resumed run pays for nothing twice, forcing continuations included: each is a
    request like any other), `runtime.concurrency` calls in flight, rate limits, retries with
    backoff, and the stop on a dead endpoint (EndpointError). A prompt takes at most
    `forcing_rounds + 2` steps. A call that failed transiently after every retry leaves its
    record with stop reason ``incomplete`` (see `BudgetRecord`); other failures are recorded
    outcomes (``error``). `on_done(index, record)` is called as each finishes.
    """
    runtime = runtime if runtime is not None else LLMRuntime()
    prices = runtime.prices()
    stats = stats if stats is not None else RunStats()
    runs = [_Generation(p, config) for p in prompts]
    most = config.forcing_rounds + 2
    step = 0
    while pending := [i for i, run in enumerate(runs) if not run.done]:
        step += 1
        replies = await run_requests(
            engine,
            [runs[i].request() for i in pending],
            cache,
            **runtime.sending(),
            prices=prices,
            stats=stats,
            label=f"{label}, step {step} of at most {most}",
        )
        for i, reply in zip(pending, replies, strict=True):
            runs[i].take(reply)
            if runs[i].done and on_done is not None:
                on_done(i, runs[i].record)
    return [run.record for run in runs]
