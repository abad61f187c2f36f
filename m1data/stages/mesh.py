"""MeSH qualifier domains: the LLM tagger stage (the 76 qualifiers and their rubric are in
m1data.stages.qualifiers).

m1 groups questions by a MeSH qualifier ("domain") so that the m1K sampler can draw domains, not
rows, uniformly (reference s.7-8). A model reads the question and the 76 qualifiers with their
scope notes, picks one, and ends its reply with the qualifier's two-digit code (00-75, the order
of the NLM file shipped in m1data/data/mesh/).

Decisions on what the reference leaves open (each has a test in tests/stages/test_mesh.py):

* Code extraction follows the reference rule (strip emphasis, backticks and a trailing period,
  take the last two characters) with two tightenings: the two digits must not be preceded by a
  third digit, nor end a number, date, time, range or list ("0.05", "2024-05-07", "10:30", "20-21",
  "20, 21", "20 or 21": the rule read 05, 07, 30 and 21). "...100" is a malformed reply, not a
  vote for code 00. Such replies are re-asked rather than silently filed under a domain; a line
  that holds other numbers before its code ("Type 2 diabetes: 62") is read.
* Only replies with status "ok" are read. A truncated ("length") reply ends wherever the token
  limit cut it, so two digits at its end are an accident, not an answer.
* Re-asks are new requests, so the cache cannot hand back the same bad reply: attempt k >= 2
  appends the previous reply (when there was one) as an assistant turn and a user turn asking
  for the code only, and sets `seed` to k. A re-run of the stage rebuilds the same chain of
  requests from the cached replies, so it sends nothing (except failures the runtime marked
  transient, a 5xx or timeout that outlived its retries, which it sends again by design). A
  transient failure ends its row's tries for this run: re-asked at once, the row went on to the
  next attempt, the run ended tagged, and the next run sent the failed request again, got a
  code and threw the paid re-ask away, changing the row's tag.
* A row still without a code after `max_attempts` is dropped with reason "untagged" (counted in
  the manifest), not kept under a made-up "unresolved" domain: the m1K sampler draws domains
  uniformly, and a catch-all bucket would be drawn as often as a real qualifier. Its record shows
  the end of the last reply, or of its thinking when the reply was all thinking.

Cost: every request carries the whole rubric, about 3.8K prompt tokens (o200k) for a short
question, so tagging m23K once is roughly 90M prompt tokens.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets

from m1data.errors import UserError
from m1data.llm.cache import Cache
from m1data.llm.params import check_settings
from m1data.llm.runner import RunStats
from m1data.llm.stages import (
    Endpoint,
    LLMRuntime,
    LLMStage,
    file_settings,
    is_transient,
    llm_stats,
    run_llm_on_file,
    split_rows,
)
from m1data.llm.types import Engine, Reply, Request
from m1data.running.pipeline import RunContext, StageResult, with_columns
from m1data.schema import column_values

# The qualifier data lives in qualifiers; re-exported for `from m1data.stages.mesh import ...`.
from m1data.stages.qualifiers import (
    DOMAIN_COLUMNS,
    Qualifier,
    add_domain_columns,
    domain_counts,
    load_qualifiers,
    qualifier_by_code,
    qualifier_by_name,
    qualifier_subtree,
    rubric,
)

__all__ = [
    "FOLLOW_UP",
    "SYSTEM_PROMPT",
    "MeshConfig",
    "MeshTagger",
    "Qualifier",
    "add_domain_columns",
    "build_messages",
    "build_request",
    "domain_counts",
    "extract_code",
    "load_qualifiers",
    "qualifier_by_code",
    "qualifier_by_name",
    "qualifier_subtree",
    "reply_code",
    "rubric",
    "run_tag_file",
]

UNTAGGED = "untagged"

SYSTEM_PROMPT = (
    "You classify medical exam questions by subject. Read the question, then choose the single "
    "most relevant subject from the classification rubrics (MeSH qualifiers, each with a code and "
    "a description). Explain your choice in one or two sentences. End your reply with the chosen "
    "subject's two-digit code alone on the last line, for example:\n07"
)
FOLLOW_UP = "Reply with the two-digit code only."


# ---------------------------------------------------------------------------------------------
# The messages


def user_message(prompt: str) -> str:
    return f"## Question\n{prompt}\n\n## Classification rubrics\n{rubric()}"


def build_messages(prompt: str, previous: Sequence[str | None] = ()) -> tuple[dict[str, str], ...]:
    """The chat for one attempt. `previous` holds the texts of the earlier, failed replies (None
    for an error reply with no text); each adds a follow-up exchange, so every attempt is a
    request the cache has not seen."""
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user_message(prompt)}]
    for text in previous:
        if text:
            messages.append({"role": "assistant", "content": text})
        messages.append({"role": "user", "content": FOLLOW_UP})
    return tuple(messages)


# ---------------------------------------------------------------------------------------------
# Reading the code out of a reply

_EMPHASIS = str.maketrans("", "", "*_`")
_DIGITS = frozenset("0123456789")
# what comes before two digits that end a decimal, date, time, range or list ("0.", "10:", "20, ", "20 or ")
_ENDS_A_NUMBER = re.compile(r"[0-9]\s*[.:,/\-\u2013]\s*\Z|[0-9]\s+(?:or|and|to|vs\.?)\s+\Z", re.IGNORECASE)


def extract_code(reply: str | None) -> str | None:
    """The two-digit qualifier code a reply ends with, or None.

    Reference rule: drop markdown emphasis (`*`, `_`) and backticks, then whitespace and
    trailing periods, and read the last two characters. They count only when both are ASCII
    digits, not preceded by a third digit, do not end a number, date, time, range or list, and
    name one of the 76 codes. Anything but a str or
    None is refused (a number failed with "no attribute 'translate'", and a 0 read as no code).
    """
    if reply is not None and not isinstance(reply, str):
        raise TypeError(f"reply must be a str or None, not {type(reply).__name__}: {reply!r:.80}")
    if not reply:
        return None
    text = reply.translate(_EMPHASIS).rstrip().rstrip(".").rstrip()
    tail = text[-2:]
    if len(tail) != 2 or not set(tail) <= _DIGITS:
        return None
    if len(text) > 2 and text[-3] in _DIGITS:
        return None
    if _ENDS_A_NUMBER.search(text[:-2]):
        return None
    return tail if tail in qualifier_by_code() else None


def reply_code(reply: Reply) -> str | None:
    """The code of a reply that completed normally; error, refused and truncated replies have none."""
    return extract_code(reply.text) if reply.status == "ok" else None


# ---------------------------------------------------------------------------------------------
# The stage


@dataclass
class MeshConfig:
    """Settings of the LLM tagger. The API key is read from the environment variable named by
    `api_key_env` (None: OpenAI's own variable on api.openai.com, no key on any other server:
    `m1data.llm.http.key_variable`), so it never lands in a manifest. Rows
    go through `chunk_size` at a time because every request carries the whole rubric (about
    18 KB): 23K requests built at once would hold some 400 MB of message text."""

    base_url: str = "https://api.openai.com/v1"
    model: str = "gpt-4o"
    api_key_env: str | None = None
    temperature: float = 0.0
    max_tokens: int = 1024
    max_attempts: int = 3
    chunk_size: int = 2000
    text_field: str = "prompt"
    # Server-specific fields added to every request body (the embedded config's grammar): part of
    # the cache key, admitted by the HTTP engine for this endpoint.
    extra_params: dict[str, Any] = field(default_factory=dict)
    cache_namespace: str | None = None  # see m1data.llm.cache; None: the API's host, or the model on a local server
    runtime: LLMRuntime = field(default_factory=LLMRuntime)

    def __post_init__(self) -> None:
        check_settings("mesh", {"max_tokens": self.max_tokens, "temperature": self.temperature})
        check_settings("mesh.extra_params", self.extra_params)
        if self.max_attempts < 1:
            raise UserError("max_attempts must be at least 1")
        if self.chunk_size < 1:
            raise UserError("chunk_size must be at least 1")


def build_request(config: MeshConfig, prompt: str, previous: Sequence[str | None] = ()) -> Request:
    """The request for one attempt; a re-ask (non-empty `previous`) also sets `seed` to the
    attempt number so that even two re-asks after two error replies differ."""
    params: dict[str, Any] = {"temperature": config.temperature, "max_tokens": config.max_tokens}
    params.update(config.extra_params)
    if previous:
        params["seed"] = len(previous) + 1
    return Request(model=config.model, messages=build_messages(prompt, previous), params=params)


@dataclass
class Outcome:
    """Everything learnt about one row: its code (None if every attempt failed) and the replies."""

    code: str | None = None
    replies: list[Reply] = field(default_factory=list)


def _previous_text(reply: Reply) -> str | None:
    return reply.text if reply.status != "error" and reply.text else None


_DETAIL_CHARS = 300  # what a dropped record shows of a reply: enough to see why, short enough to skim
_THOUGHT_ONLY = "no answer after the thinking: "


def _why_untagged(outcome: Outcome) -> str:
    """The last reply of a row left untagged, so a reader can see why the model failed. A reply
    that was all thinking (an unclosed `<think>`) has its words in `reasoning` and none in `text`:
    the end of the thinking is shown, marked as such, where the record read "ok: " and hid them."""
    last = outcome.replies[-1]
    if last.status == "error":
        detail = last.error
    elif not (last.text or "").strip() and (last.reasoning or "").strip():
        detail = _THOUGHT_ONLY + _tail(last.reasoning.strip(), _DETAIL_CHARS - len(_THOUGHT_ONLY))
    else:
        detail = (last.text or "")[-_DETAIL_CHARS:]
    return f"{last.status}: {detail}"


def _tail(text: str, size: int) -> str:
    """The last `size` characters of `text`, with "..." in front when it was cut."""
    return text if len(text) <= size else "..." + text[-(size - 3):]


def _stats(outcomes: list[Outcome], codes: list[str], run: RunStats) -> dict[str, Any]:
    attempts = Counter(len(o.replies) for o in outcomes if o.code is not None)
    return {
        "domains": domain_counts(codes),
        "tagged": len(codes),
        UNTAGGED: sum(1 for o in outcomes if o.code is None),
        "attempts_to_tag": {str(k): v for k, v in sorted(attempts.items())},
        **llm_stats(run),
    }


class MeshTagger(LLMStage):
    """Adds `domain_code` and `domain` by asking an LLM; drops rows it cannot tag ("untagged").

    `engine` replaces the engine built from the config (a local transformers or vLLM engine,
    say); the config's base_url is then unused."""

    name = "tag"
    grades = False

    def __init__(self, config: MeshConfig | None = None, engine: Engine | None = None):
        super().__init__(config or MeshConfig(), {"*": engine} if engine is not None else None)

    def endpoints(self) -> list[Endpoint]:
        cfg = self.config
        return [Endpoint("*", f"tagger {cfg.model}", cfg.model, cfg.base_url, cfg.api_key_env, cfg.cache_namespace)]

    def required_columns(self) -> tuple[str, ...]:
        return ("id", "source", self.config.text_field)

    def text_column(self) -> str:
        return self.config.text_field

    def columns_after(self, before: frozenset[str] | None) -> frozenset[str] | None:
        return with_columns(before, DOMAIN_COLUMNS)

    def requests(self, endpoint: Endpoint, rows: datasets.Dataset) -> list[Request]:
        return [build_request(self.config, prompt) for prompt in column_values(rows, self.config.text_field)]

    def process(self, rows: datasets.Dataset, cache: Cache, ctx: RunContext | None) -> StageResult:
        prompts = column_values(rows, self.config.text_field)
        size, run = self.config.chunk_size, RunStats()
        outcomes: list[Outcome] = []
        for start in range(0, len(prompts), size):
            label = "tag" if len(prompts) <= size else f"tag rows {start:,}-{min(start + size, len(prompts)):,}"
            outcomes += self._tag_chunk(prompts[start:start + size], cache, ctx, run, label)
        codes = [o.code for o in outcomes if o.code is not None]
        untagged = [o for o in outcomes if o.code is None]
        kept, dropped = split_rows(
            rows,
            [None if o.code is not None else UNTAGGED for o in outcomes],
            ["" if o.code is not None else _why_untagged(o) for o in outcomes],
            extra={"attempts": ([len(o.replies) for o in untagged], datasets.Value("int64"))},
        )
        # an untagged row whose attempts failed transiently may still be tagged: not a result yet
        transient = sum(any(is_transient(r) for r in o.replies) for o in untagged)
        return StageResult(rows=add_domain_columns(kept, codes), dropped=dropped, stats=_stats(outcomes, codes, run),
                           transient_failures=transient)

    def _tag_chunk(self, prompts: Sequence[str], cache: Cache, ctx: RunContext | None, run: RunStats,
                   label: str) -> list[Outcome]:
        """Up to `max_attempts` rounds over `prompts`; each round is one call (one batch, under
        the runtime's limits) holding only the rows still without a code."""
        endpoint = self.endpoints()[0]
        outcomes = [Outcome() for _ in prompts]
        pending = list(range(len(prompts)))
        for attempt in range(1, self.config.max_attempts + 1):
            if not pending:
                break
            requests = [build_request(self.config, prompts[i], [_previous_text(r) for r in outcomes[i].replies])
                        for i in pending]
            replies = self.call(endpoint, requests, cache, ctx, run, label=f"{label}, attempt {attempt}")
            for i, reply in zip(pending, replies, strict=True):
                outcomes[i].replies.append(reply)
                outcomes[i].code = reply_code(reply)
            # a transient failure ends its row's tries for this run (as in m1data.llm.attempts)
            pending = [i for i in pending if outcomes[i].code is None and not is_transient(outcomes[i].replies[-1])]
        return outcomes


def run_tag_file(
    in_path: str | Path | Sequence[str | Path],
    out_path: str | Path,
    base_url: str | None = None,
    model: str | None = None,
    api_key_env: str | None = None,
    *,
    max_attempts: int | None = None,
    runtime: LLMRuntime | None = None,
    dry_run: bool = False,
    settings: MeshConfig | None = None,
) -> dict[str, Any]:
    """Tag a .parquet/.jsonl of rows into `out_path`; untagged rows go beside it as
    `OUT.dropped.<ext>`. The settings are `settings` (a build config's tagger:
    `m1data.jobs.stage_settings("tag", config)`; None: MeshConfig's defaults, GPT-4o) with each
    argument given over them. The cache defaults to `OUT.llm_cache.sqlite` beside the output, so
    re-running the same command after a crash only sends what is missing. Returns the stage
    statistics (a dry run prints the plan and returns {})."""
    config = file_settings(settings or MeshConfig(), out_path, runtime, base_url=base_url, model=model,
                           api_key_env=api_key_env, max_attempts=max_attempts)
    return run_llm_on_file(MeshTagger(config), in_path, out_path, dry_run)
