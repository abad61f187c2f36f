"""Teacher traces (reference section 5): ask a reasoning model, keep only verified answers.

The teacher (default: DeepSeek-R1 as `deepseek-reasoner` on DeepSeek's API) gets the same prompt
as the students, up to 8,000 output tokens, and the provider's default sampling: no temperature
is sent unless configured. Every reply shape is read (`reasoning_content` + `content`,
`<think>...</think>` inline, or gpt-oss's analysis and final channels inline); the engine splits
them (m1data.llm.thinking), so only the answer after the thinking is graded.

Kept rows gain:

    reasoning          the thinking
    teacher_reply      the final reply after the thinking
    teacher_answer     the option letter read from it (m1data.stages.answers)
    answer_rule        which rule of m1data.stages.answers read it (boxed, statement, answer_line,
                       similarity), so every kept row can be audited
    teacher_model      the model name sent
    teacher_served_model   the model the server says answered (the reply's `model` field; empty
                       when it did not say): an alias such as `deepseek-reasoner` moves to new
                       releases, and this is the release that wrote the trace (a path, as
                       llama-server reports it, is cut to its file name)
    finish_reason      as the server said
    prompt_tokens, completion_tokens   the server's usage

Every other row is in `dropped` with those columns too (for inspection) and a reason:
`truncated` (finish_reason "length": no answer; recorded in the cache and never paid again),
`filtered` (the provider's content filter), `error` (the call failed), `no_answer` (finished, but
the reply states no option), `multiple_answers` (it states several; detail says which), or
`wrong_answer` (it states one option and it is not the right one; detail says which), or
`no_reasoning` (right, but with no thinking at all while `require_reasoning` is on: such a row
would be a trace-less SFT example, which the format stage rejects, failing the whole build).

Two kinds of `error`. A refusal (a 4xx such as a prompt over the context window) is the request's
recorded outcome: cached, and sent again only with `retry_failed`. A transient failure (timeout,
5xx, dropped connection, after every retry) is no outcome at all: the cache keeps it only as
history, the stage counts it in `StageResult.transient_failures`, so a build marks the stage
incomplete, stops after it and exits non-zero, and the next run of the same command sends
exactly those requests again (the cache answers the rest).

Attempts. m1 asked once per question; `attempts: K` (`run traces --attempts K`) asks a question
again when its reply fails verification (`wrong_answer`, `no_answer`, `multiple_answers`,
`no_reasoning`, and `truncated` unless `retry_truncated: false` or at temperature 0), up to K tries in all
(m1data.llm.attempts: each try is its own cached request; online the next try goes out as soon as
the last is judged; with the Batch API in rounds). `keep` says which verified try becomes the row:
`first` (the default; no further tries once one is verified), `shortest` (every question gets all K
tries, and the one with the fewest completion tokens is kept) or `all` (one row per verified try,
its id suffixed `-try<k>`). Kept rows carry `attempt` (the try kept) and `attempts_used` (tries
made). The dropped table lists every try not kept, with its reason and `superseded` (true when it is
not its question's last word: the question was kept from another try, or asked again), so the funnel
counts lost questions, not rejected tries; a verified try that `shortest` passed over has reason
`verified_not_kept`. The manifest's `by_attempt` gives, per try, questions asked, replies verified,
questions first verified there, rows kept, rejections, requests sent and cached, tokens and cost.

A teacher that writes no reasoning (a chat model where a reasoning model was meant, a server
that drops `reasoning_content`) would be paid for the whole set and yield rows with empty
traces. So the stage first sends a preflight sample (`preflight_requests`, default 3) through
the same cache, so those are never paid twice, and stops with `TeacherWithoutReasoning` when
none of the sample's answers carries reasoning, before the rest is sent. `require_reasoning:
false` turns the check off for a teacher meant to answer without thinking.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import datasets

from m1data.errors import M1DataError, UserError
from m1data.llm.attempts import check_attempts, stats_by_attempt, total_stats
from m1data.llm.cache import Cache
from m1data.llm.params import check_settings
from m1data.llm.runner import RunStats, log_summary
from m1data.llm.stages import (
    Endpoint,
    LLMRuntime,
    LLMStage,
    boxed_request,
    file_settings,
    is_transient,
    llm_stats,
    run_llm_on_file,
    split_rows,
)
from m1data.llm.types import Engine, Reply, Request
from m1data.redact import public_model_name
from m1data.running.pipeline import (
    SUPERSEDED,
    RunContext,
    StageFailed,
    StageResult,
    account_kept_or_dropped,
    add_columns,
    sum_stats,
    with_columns,
)
from m1data.schema import LETTERS, column_values, fresh_fingerprint, question_id
from m1data.stages.answers import grade

Keep = Literal["first", "shortest", "all"]
KEEP = ("first", "shortest", "all")
RETRIED = frozenset({"wrong_answer", "no_answer", "multiple_answers", "no_reasoning"})  # and "truncated" unless told
NOT_KEPT = "verified_not_kept"  # keep: shortest: a verified try longer than the one kept
ATTEMPT_FEATURES = {"attempt": datasets.Value("int64"), "attempts_used": datasets.Value("int64")}

log = logging.getLogger(__name__)

TRACE_FEATURES = {
    "reasoning": datasets.Value("string"),
    "teacher_reply": datasets.Value("string"),
    "teacher_answer": datasets.Value("string"),
    "answer_rule": datasets.Value("string"),
    "teacher_model": datasets.Value("string"),
    "teacher_served_model": datasets.Value("string"),
    "finish_reason": datasets.Value("string"),
    "prompt_tokens": datasets.Value("int64"),
    "completion_tokens": datasets.Value("int64"),
}


@dataclass
class TracesConfig:
    """`temperature`/`top_p` None means the provider's default (nothing sent). The runtime's
    `timeout` is per attempt, and R1 can think for several minutes: 1,200 s by default here."""

    model: str = "deepseek-reasoner"
    base_url: str = "https://api.deepseek.com"
    # None: the provider's own variable on its own host (DEEPSEEK_API_KEY on api.deepseek.com,
    # `m1data.llm.http.key_variable`), no key elsewhere. A default of DEEPSEEK_API_KEY sent that
    # key to whatever base_url a config named without one (audit).
    api_key_env: str | None = None
    max_tokens: int = 8000
    temperature: float | None = None
    top_p: float | None = None
    # Server-specific fields added to every request body (the embedded config's grammar and
    # chat_template_kwargs): part of the cache key, admitted by the HTTP engine for this endpoint.
    extra_params: dict[str, Any] = field(default_factory=dict)
    cache_namespace: str | None = None  # see m1data.llm.cache; None: the API's host, or the model on a local server
    preflight_requests: int = 3  # sent first; the stage stops if none of their answers has reasoning
    require_reasoning: bool = True
    runtime: LLMRuntime = field(default_factory=lambda: LLMRuntime(timeout=1200.0))
    # Tries per question (module docstring, "Attempts"); 1 is the paper's single try.
    attempts: int = 1
    keep: Keep = "first"
    retry_truncated: bool = True

    def __post_init__(self) -> None:
        check_settings("traces", {"max_tokens": self.max_tokens, "temperature": self.temperature,
                                  "top_p": self.top_p})
        check_settings("traces.extra_params", self.extra_params)
        check_attempts(self.attempts, "traces.attempts")
        if self.keep not in KEEP:
            raise UserError(f"traces.keep must be one of {', '.join(KEEP)}, not {self.keep!r}")


class TeacherWithoutReasoning(M1DataError, ValueError):
    """The teacher's preflight answers carry no reasoning: sending the whole set would pay for
    rows without traces. One line on the command line (exit 2)."""


def verdict(reply: Reply, options: list[str], answer_idx: int,
            require_reasoning: bool = False) -> tuple[str | None, str, str | None, str]:
    """(reason or None to keep, detail, letter read, rule that read it) for one teacher reply.
    With `require_reasoning`, a right answer without any thinking is `no_reasoning`."""
    if reply.status == "length":
        return "truncated", f"stopped at {reply.completion_tokens} tokens", None, "none"
    if reply.status == "filtered":
        return "filtered", reply.error or f"finish_reason {reply.finish_reason}", None, "none"
    if reply.status == "error":
        return "error", reply.error or "", None, "none"
    if not reply.text.strip():
        return "no_answer", "the reply has no final answer after the thinking", None, "none"
    result = grade(reply.text, options, answer_idx)
    read = result.extraction
    if result.correct:
        if require_reasoning and not (reply.reasoning or "").strip():
            return "no_reasoning", "right, but the reply has no reasoning", read.letter, read.method
        return None, "", read.letter or LETTERS[answer_idx], read.method
    if read.verdict == "multiple_answers":
        return "multiple_answers", f"states {', '.join(read.letters)}", None, read.method
    if read.verdict == "no_answer":
        return "no_answer", "the reply states no option", None, read.method
    return "wrong_answer", f"answered {read.letter}, expected {LETTERS[answer_idx]}", read.letter, read.method


class TeacherTraces(LLMStage):
    """Pipeline stage; `engine` optionally replaces the engine the config names (e.g. an HFEngine)."""

    name = "traces"

    def __init__(self, config: TracesConfig | None = None, engine: Engine | None = None):
        super().__init__(config or TracesConfig(), {"*": engine} if engine is not None else None)

    def account(self, rows: datasets.Dataset | None, result: StageResult) -> None:
        """`keep: all` keeps each verified try of a question as its own row (`q17-try2`): checked as
        the questions they are, each kept (in one row or several, none twice) or dropped once.
        Row by row, every such build stopped after paying for all its tries (audit)."""
        if self.config.keep != "all" or "id" not in result.rows.column_names:
            return super().account(rows, result)
        ids = column_values(result.rows, "id")
        twice = [i for i, n in Counter(ids).items() if n > 1]
        if twice:
            raise StageFailed(f"stage {self.name!r} kept the row id {twice[0]!r} twice")
        first: dict[Any, int] = {}
        for at, row_id in enumerate(ids):
            first.setdefault(question_id(row_id), at)
        questions = result.rows.select(list(first.values())).remove_columns("id").add_column("id", list(first))
        account_kept_or_dropped(self.name, rows, dataclasses.replace(result, rows=questions))

    def columns_after(self, before: frozenset[str] | None) -> frozenset[str] | None:
        return with_columns(before, [*TRACE_FEATURES, *ATTEMPT_FEATURES])

    def endpoints(self) -> list[Endpoint]:
        cfg = self.config
        return [Endpoint("*", f"teacher {cfg.model}", cfg.model, cfg.base_url, cfg.api_key_env, cfg.cache_namespace)]

    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"max_tokens": self.config.max_tokens}
        if self.config.temperature is not None:
            params["temperature"] = self.config.temperature
        if self.config.top_p is not None:
            params["top_p"] = self.config.top_p
        params.update(self.config.extra_params)
        return params

    def requests(self, endpoint: Endpoint, rows: datasets.Dataset) -> list[Request]:
        params = self.params()
        return [boxed_request(endpoint.model, p, params) for p in column_values(rows, "prompt")]

    def plan(self, rows: datasets.Dataset, cache: Cache | None) -> None:
        """The first tries' plan; with `attempts` > 1, a line on what later tries may add."""
        super().plan(rows, cache)
        cfg = self.config
        if cfg.attempts > 1:
            always = cfg.keep != "first"
            log.info(f"  up to {cfg.attempts} tries per question: {'every' if always else 'each failed'} question is "
                     f"asked again, at most {(cfg.attempts - 1) * len(rows):,} more requests (not in this plan)")

    def preflight_sample(self, requests: list[Request], cache: Cache, stats: RunStats) -> dict[str, Any]:
        """Send the first few requests (online, through the cache) and stop the stage when none
        of their answers carries reasoning (module docstring); returns what the sample showed.
        `stats` collects what the sample cost (see `fold_preflight`)."""
        cfg = self.config
        sample = requests[: max(cfg.preflight_requests, 0)]
        if not cfg.require_reasoning or not sample:
            return {}
        replies = self.call(self.endpoints()[0], sample, cache, None, stats, online=True, progress=False,
                            label=f"teacher {cfg.model} preflight")
        answered = [r for r in replies if r.status == "ok"]
        with_reasoning = sum(bool((r.reasoning or "").strip()) for r in answered)
        served = sorted({public_model_name(r.model) for r in replies if r.model})
        if answered and not with_reasoning:
            said = f" (the server says it is {', '.join(served)})" if served else ""
            raise TeacherWithoutReasoning(
                f"teacher {cfg.model}{said} at {cfg.base_url}: none of the {len(answered)} preflight answers has "
                "reasoning (no reasoning_content, no <think> block), so the traces would be empty; stopped before "
                f"sending the other {len(requests) - len(sample):,} requests. Use a reasoning model, or set "
                "traces.require_reasoning: false (--no-require-reasoning) if answers without thinking are what "
                "you want."
            )
        reused = sum(1 for r in replies if not r.cached and not is_transient(r))
        return {"requests": len(sample), "sent": stats.sent, "reused": reused, "answered": len(answered),
                "with_reasoning": with_reasoning, "served_models": served}

    def merge_stats(self, parts: list[dict[str, Any]], rows: datasets.Dataset) -> dict[str, Any]:
        """Blocks' statistics as one (the Ray executor). Each block checks its own first answers
        for reasoning, and those answers are its own rows' (sent once, reused), so every count
        sums. The preflight record is that of the first blocks, in row order, until they hold
        `preflight_requests` requests: the rows a local run samples, whose record it then equals
        where those blocks add up to exactly that many (a first block that holds them, blocks of
        one row), else it counts the few more rows of the last block it takes (blocks of 2 rows:
        4 for a local 3). It was the first block's alone: 1 request where a local check had 3."""
        merged = sum_stats([{k: v for k, v in part.items() if k != "preflight"} for part in parts])
        checks: list[dict[str, Any]] = []
        for part in parts:
            if sum(c.get("requests", 0) for c in checks) >= self.config.preflight_requests:
                break
            if part.get("preflight"):
                checks.append(part["preflight"])
        merged["preflight"] = sum_stats([{k: v for k, v in c.items() if k != "served_models"} for c in checks])
        if checks:
            merged["preflight"]["served_models"] = sorted({m for c in checks for m in c.get("served_models", [])})
        merged["attempts"] = self.config.attempts  # a setting, not a count: the same in every block
        return merged

    def again(self, rows: datasets.Dataset) -> Callable[[int, Reply], bool]:
        """Whether a question's latest try sends it back for another: a reply that fails
        verification in a way a new sample may not (wrong, no answer, several answers, no
        reasoning; truncated unless `retry_truncated: false` or at temperature 0), or any reply when
        `keep` wants every try. Why not a truncated one at temperature 0: the next try is the same
        greedy reply, cut at the same place; reference s.5 says never to pay for it again."""
        cfg = self.config
        options, answers = column_values(rows, "options"), column_values(rows, "answer_idx")
        retry_truncated = cfg.retry_truncated and cfg.temperature != 0

        def again(i: int, reply: Reply) -> bool:
            reason = verdict(reply, options[i], answers[i], cfg.require_reasoning)[0]
            if reason is None:
                return cfg.keep != "first"
            return reason in RETRIED or (reason == "truncated" and retry_truncated)

        return again

    def ask(self, endpoint: Endpoint, requests: list[Request], rows: datasets.Dataset, cache: Cache,
            ctx: RunContext | None, by_attempt: dict[int, RunStats]) -> list[list[Reply]]:
        """Every question's tries: the paper's single call when `attempts` is 1, else
        LLMStage.call_tries. The run's closing line is left to `process`, which prints it once
        the preflight sample is counted in (`fold_preflight`)."""
        cfg = self.config
        if cfg.attempts == 1:
            return [[r] for r in self.call(endpoint, requests, cache, ctx, by_attempt[1], summary=False)]
        if cfg.temperature == 0:
            log.warning("traces: %s tries per question at temperature 0: a deterministic teacher repeats its answer, "
                        "so later tries rarely help", cfg.attempts)
        return self.call_tries(endpoint, requests, cache, ctx, by_attempt, self.again(rows), summary=False)

    def process(self, rows: datasets.Dataset, cache: Cache, ctx: RunContext | None) -> StageResult:
        cfg = self.config
        endpoint = self.endpoints()[0]
        requests = self.requests(endpoint, rows)
        by_attempt, sample_stats = stats_by_attempt(cfg.attempts), RunStats()
        preflight = self.preflight_sample(requests, cache, sample_stats)
        tries = self.ask(endpoint, requests, rows, cache, ctx, by_attempt)
        fold_preflight(by_attempt[1], sample_stats, preflight.get("reused", 0))
        run_stats = total_stats(by_attempt)  # what the manifest records, and the console line says
        if self.runtime.progress and run_stats.sent and not self.runtime.batch:  # as the runner's own line
            log_summary(endpoint.role, run_stats)
        judged = [
            [verdict(reply, options, answer_idx, cfg.require_reasoning) for reply in replies]
            for replies, options, answer_idx in zip(tries, column_values(rows, "options"), column_values(rows, "answer_idx"),
                                                    strict=True)
        ]
        picks = pick_tries(tries, judged, cfg.keep)
        replies = [tries[p.question][p.attempt - 1] for p in picks]
        verdicts = [judged[p.question][p.attempt - 1] for p in picks]
        picked = add_columns(
            rows.select([p.question for p in picks], new_fingerprint=fresh_fingerprint()),
            {
                "reasoning": ([r.reasoning or "" for r in replies], TRACE_FEATURES["reasoning"]),
                "teacher_reply": ([r.text for r in replies], TRACE_FEATURES["teacher_reply"]),
                "teacher_answer": ([v[2] for v in verdicts], TRACE_FEATURES["teacher_answer"]),
                "answer_rule": ([v[3] for v in verdicts], TRACE_FEATURES["answer_rule"]),
                "teacher_model": ([cfg.model] * len(replies), TRACE_FEATURES["teacher_model"]),
                "teacher_served_model": ([public_model_name(r.model) or "" for r in replies],
                                         TRACE_FEATURES["teacher_served_model"]),
                "finish_reason": ([r.finish_reason for r in replies], TRACE_FEATURES["finish_reason"]),
                "prompt_tokens": ([r.prompt_tokens for r in replies], TRACE_FEATURES["prompt_tokens"]),
                "completion_tokens": ([r.completion_tokens for r in replies], TRACE_FEATURES["completion_tokens"]),
                "attempt": ([p.attempt for p in picks], ATTEMPT_FEATURES["attempt"]),
                "attempts_used": ([len(tries[p.question]) for p in picks], ATTEMPT_FEATURES["attempts_used"]),
            },
        )
        superseded = [p.superseded for p in picks if p.reason is not None]
        kept, dropped = split_rows(picked, [p.reason for p in picks], [p.detail for p in picks],
                                   {SUPERSEDED: (superseded, datasets.Value("bool"))})
        if cfg.keep == "all":
            kept = with_try_ids(kept)
        served = Counter(public_model_name(r.model) for replies in tries for r in replies if r.model)
        stats = {
            "teacher_model": cfg.model,
            "served_models": dict(served.most_common()),
            "preflight": preflight,
            "base_url": cfg.base_url,
            "verified": sum(any(v[0] is None for v in verdicts) for verdicts in judged),
            "attempts": cfg.attempts,
            "keep": cfg.keep,
            "by_attempt": attempt_table(judged, picks, by_attempt),
            **llm_stats(run_stats),
        }
        transient = sum(is_transient(replies[-1]) for replies in tries if replies)
        return StageResult(rows=kept, dropped=dropped, stats=stats, transient_failures=transient)


@dataclass(frozen=True)
class Pick:
    """One try of one question as it lands in the output: kept (`reason` None) or in the dropped
    table. `superseded` marks a dropped try that is not its question's last word (its question
    was kept from another try, or tried again), which the funnel does not count as a lost row."""

    question: int
    attempt: int
    reason: str | None
    detail: str
    superseded: bool


def pick_tries(tries: list[list[Reply]], judged: list[list[tuple[Any, ...]]], keep: Keep) -> list[Pick]:
    """Which tries are kept (`keep`: the first verified, the shortest verified, or all verified)
    and, for every other try, why not; question order, then try order."""
    picks = []
    for question, (replies, verdicts) in enumerate(zip(tries, judged, strict=True)):
        verified = [k for k, v in enumerate(verdicts, 1) if v[0] is None]
        if keep == "all":
            chosen = set(verified)
        elif keep == "shortest" and verified:
            chosen = {min(verified, key=lambda k: (replies[k - 1].completion_tokens,
                                                   len(replies[k - 1].reasoning or ""), k))}
        else:
            chosen = set(verified[:1])
        for attempt, (reason, detail, _letter, _rule) in enumerate(verdicts, 1):
            if attempt in chosen:
                picks.append(Pick(question, attempt, None, "", False))
            elif reason is None:
                kept_try = next(iter(chosen))
                picks.append(Pick(question, attempt, NOT_KEPT, f"verified; try {kept_try} was shorter", True))
            else:
                picks.append(Pick(question, attempt, reason, detail, bool(chosen) or attempt < len(verdicts)))
    return picks


def attempt_table(judged: list[list[tuple[Any, ...]]], picks: list[Pick],
                  by_attempt: dict[int, RunStats]) -> dict[str, dict[str, Any]]:
    """Per try index: questions asked, replies verified, questions first verified there (what
    that try bought), rows kept from it, rejections by reason, requests sent and cached, tokens
    and cost (sent now plus read from the cache: what those tries cost in all; None without a
    price)."""
    first = [next((k for k, v in enumerate(vs, 1) if v[0] is None), None) for vs in judged]
    table = {}
    for attempt, stats in by_attempt.items():
        at = [v[attempt - 1] for v in judged if len(v) >= attempt]
        cost = None if None in (stats.cost_sent, stats.cost_cached) else round(stats.cost_sent + stats.cost_cached, 10)
        table[str(attempt)] = {
            "asked": len(at),
            "verified": sum(v[0] is None for v in at),
            "first_verified": sum(k == attempt for k in first),
            "kept": sum(p.attempt == attempt and p.reason is None for p in picks),
            "rejected": dict(sorted(Counter(v[0] for v in at if v[0] is not None).items())),
            "sent": stats.sent,
            "cached": stats.cached,
            "prompt_tokens": stats.prompt_tokens_sent + stats.prompt_tokens_cached,
            "completion_tokens": stats.completion_tokens_sent + stats.completion_tokens_cached,
            "cost": cost,
            "cost_sent": stats.cost_sent,
        }
    return table


def with_try_ids(rows: datasets.Dataset) -> datasets.Dataset:
    """`keep: all` keeps several rows per question: each id gets its try, `q17` -> `q17-try2`
    (`m1data.schema.question_id` reads the question back)."""
    ids = [f"{i}-try{a}" for i, a in zip(column_values(rows, "id"), column_values(rows, "attempt"), strict=True)]
    return rows.remove_columns("id").add_column("id", ids).select_columns(rows.column_names)


def fold_preflight(stats: RunStats, sample: RunStats, reused: int) -> None:
    """The preflight's `reused` answers were paid in the sample and read back from the cache by
    the main run: count them in `stats` as sent, which they were, not as cached. A request whose
    sample call failed transiently is sent again by the main run, which counts it: only its
    calls are added (`attempts`, so they show as retries), else it was counted as sent twice and
    a stage reported more requests sent than it had (the sample's `sent` holds both kinds)."""
    stats.sent += reused
    stats.cached -= min(reused, stats.cached)
    stats.attempts += sample.attempts
    stats.prompt_tokens_sent += sample.prompt_tokens_sent
    stats.prompt_tokens_cached = max(stats.prompt_tokens_cached - sample.prompt_tokens_sent, 0)
    stats.completion_tokens_sent += sample.completion_tokens_sent
    stats.completion_tokens_cached = max(stats.completion_tokens_cached - sample.completion_tokens_sent, 0)
    if None in (stats.cost_sent, stats.cost_cached, sample.cost_sent):
        stats.cost_sent = stats.cost_cached = None  # no price for the model: n/a, never a partial sum
    else:
        stats.cost_sent += sample.cost_sent
        stats.cost_cached = max(stats.cost_cached - sample.cost_sent, 0.0)


def run_traces_file(
    in_path: str | Path | Sequence[str | Path],
    out_path: str | Path,
    base_url: str | None = None,
    model: str | None = None,
    api_key_env: str | None = None,
    *,
    max_tokens: int | None = None,
    temperature: float | None = None,
    require_reasoning: bool | None = None,
    runtime: LLMRuntime | None = None,
    dry_run: bool = False,
    attempts: int | None = None,
    keep: Keep | None = None,
    retry_truncated: bool | None = None,
    seed: int | None = None,
    settings: TracesConfig | None = None,
) -> dict[str, Any]:
    """Teacher traces over a file: IN (.parquet/.jsonl rows) -> OUT (verified rows) and
    OUT.dropped.<ext> (every other row, with reason and the teacher's reply). The settings are
    `settings` (a build config's: `m1data.jobs.stage_settings("traces", config)`; None: TracesConfig's
    defaults) with each argument given over them; `seed` joins its `extra_params`. The cache
    defaults to OUT.llm_cache.sqlite. A dry run prints the plan (to send, cached, tokens, cost),
    calls nothing, writes nothing, needs no key, and returns {}."""
    base = settings or TracesConfig()
    config = file_settings(base, out_path, runtime, base_url=base_url, model=model, api_key_env=api_key_env,
                           max_tokens=max_tokens, temperature=temperature, require_reasoning=require_reasoning,
                           attempts=attempts, keep=keep, retry_truncated=retry_truncated,
                           extra_params=None if seed is None else {**base.extra_params, "seed": seed})
    return run_llm_on_file(TeacherTraces(config), in_path, out_path, dry_run)


__all__ = [
    "KEEP",
    "NOT_KEPT",
    "Pick",
    "TeacherTraces",
    "TeacherWithoutReasoning",
    "TracesConfig",
    "attempt_table",
    "pick_tries",
    "run_traces_file",
    "verdict",
    "with_try_ids",
]
