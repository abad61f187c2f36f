"""MeSH qualifier domains: the 76 qualifiers, the tagging rubric, and the LLM tagger stage.

m1 groups questions by a MeSH qualifier ("domain") so that the m1K sampler can draw domains, not
rows, uniformly (reference s.7-8). A model reads the question and the 76 qualifiers with their
scope notes, picks one, and ends its reply with the qualifier's two-digit code (00-75, the order
of the NLM file shipped in m1data/data/mesh/).

Decisions on what the reference leaves open (each has a test in tests/test_mesh.py):

* Code extraction follows the reference rule (strip emphasis, backticks and a trailing period,
  take the last two characters) with one tightening: the two digits must not be preceded by a
  third digit. "...100" is a malformed reply, not a vote for code 00, so it is re-asked rather
  than silently filed under "Abnormalities".
* Only replies with status "ok" are read. A truncated ("length") reply ends wherever the token
  limit cut it, so two digits at its end are an accident, not an answer.
* Re-asks are new requests, so the cache cannot hand back the same bad reply: attempt k >= 2
  appends the previous reply (when there was one) as an assistant turn and a user turn asking
  for the code only, and sets `seed` to k. A re-run of the stage rebuilds the same chain of
  requests from the cached replies, so it sends nothing (except failures the runtime marked
  transient, a 5xx or timeout that outlived its retries, which it sends again by design).
* A row still without a code after `max_attempts` is dropped with reason "untagged" (counted in
  the manifest), not kept under a made-up "unresolved" domain: the m1K sampler draws domains
  uniformly, and a catch-all bucket would be drawn as often as a real qualifier.

Cost: every request carries the whole rubric, about 3.8K prompt tokens (o200k) for a short
question, so tagging m23K once is roughly 90M prompt tokens.
"""

from __future__ import annotations

import asyncio
import csv
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import datasets

from m1data.errors import UserError
from m1data.llm.cache import Cache
from m1data.llm.http import HTTPConfig, HTTPEngine
from m1data.llm.runner import RunStats, run_requests
from m1data.llm.stages import is_transient
from m1data.llm.types import Engine, Reply, Request
from m1data.pipeline import RunContext, Stage, StageResult

__all__ = [
    "Qualifier",
    "load_qualifiers",
    "qualifier_by_code",
    "qualifier_by_name",
    "qualifier_subtree",
    "rubric",
    "SYSTEM_PROMPT",
    "FOLLOW_UP",
    "build_messages",
    "build_request",
    "extract_code",
    "reply_code",
    "MeshConfig",
    "Outcome",
    "tag_prompts",
    "run_tagging",
    "MeshTagger",
    "tag_file",
    "add_domain_columns",
    "domain_counts",
]

UNTAGGED = "untagged"
DOMAIN_COLUMNS = ("domain_code", "domain")

SYSTEM_PROMPT = (
    "You classify medical exam questions by subject. Read the question, then choose the single "
    "most relevant subject from the classification rubrics (MeSH qualifiers, each with a code and "
    "a description). Explain your choice in one or two sentences. End your reply with the chosen "
    "subject's two-digit code alone on the last line, for example:\n07"
)
FOLLOW_UP = "Reply with the two-digit code only."


# ---------------------------------------------------------------------------------------------
# Qualifiers and the rubric


@dataclass(frozen=True)
class Qualifier:
    """One MeSH qualifier. `code` is its two-digit position in the NLM file, which is what the
    model is asked to answer with (names have spaces and ampersands; codes parse cleanly)."""

    code: str
    name: str
    abbreviation: str
    scope_note: str


def _data_file(name: str) -> Path:
    return Path(str(resources.files("m1data") / "data" / "mesh" / name))


@cache
def _qualifiers() -> tuple[Qualifier, ...]:
    path = _data_file("qualifier_scope_note.tsv")
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        rows = [row for row in reader if row.get("Name")]
    return tuple(
        Qualifier(f"{i:02d}", row["Name"].strip(), row["Abbreviation"].strip(), row["Scope Notes"].strip())
        for i, row in enumerate(rows)
    )


def load_qualifiers() -> list[Qualifier]:
    """The 76 qualifiers, coded "00".."75" in file order (reference s.7)."""
    return list(_qualifiers())


@cache
def qualifier_by_code() -> dict[str, Qualifier]:
    return {q.code: q for q in _qualifiers()}


def qualifier_by_name(name: str) -> Qualifier | None:
    """Case-insensitive lookup: PubMed writes qualifiers in lower case ("drug effects")."""
    wanted = " ".join(name.lower().split())
    for q in _qualifiers():
        if q.name.lower() == wanted:
            return q
    return None


_HIERARCHY_TYPOS = {"adminstration & dosage": "administration & dosage"}


@cache
def qualifier_children() -> dict[str, frozenset[str]]:
    """Code -> codes of its direct children in NLM's qualifier hierarchy (a qualifier can sit
    under several parents, e.g. "adverse effects" under pharmacology and therapeutic use).

    Used to score a tagger against coarse human labels: a question filed under "pharmacology"
    is rightly tagged "pharmacokinetics" too."""
    children: dict[str, set[str]] = {q.code: set() for q in _qualifiers()}
    stack: list[tuple[int, str]] = []
    for line in _data_file("qualifier_hierarchy.txt").read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        depth = (len(line) - len(line.lstrip(" "))) // 2
        name = line.strip().removeprefix("- ").strip()
        qualifier = qualifier_by_name(_HIERARCHY_TYPOS.get(name, name))
        if qualifier is None:
            raise UserError(f"qualifier_hierarchy.txt names an unknown qualifier {name!r}")
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if stack:
            children[stack[-1][1]].add(qualifier.code)
        stack.append((depth, qualifier.code))
    return {code: frozenset(kids) for code, kids in children.items()}


def qualifier_subtree(code: str) -> frozenset[str]:
    """`code` and every qualifier below it in the hierarchy."""
    seen = {code}
    todo = [code]
    while todo:
        for child in qualifier_children()[todo.pop()]:
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return frozenset(seen)


@cache
def rubric() -> str:
    """The classification rubric, one `### name / * Code / * Description` entry per qualifier."""
    entries = [f"### {q.name}\n* Code: {q.code}\n* Description: {q.scope_note}" for q in _qualifiers()]
    return "\n\n".join(entries)


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


def extract_code(reply: str | None) -> str | None:
    """The two-digit qualifier code a reply ends with, or None.

    Reference rule: drop markdown emphasis (`*`, `_`) and backticks, then whitespace and
    trailing periods, and read the last two characters. They count only when both are ASCII
    digits, not preceded by a third digit, and name one of the 76 codes.
    """
    if not reply:
        return None
    text = reply.translate(_EMPHASIS).rstrip().rstrip(".").rstrip()
    tail = text[-2:]
    if len(tail) != 2 or not set(tail) <= _DIGITS:
        return None
    if len(text) > 2 and text[-3] in _DIGITS:
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
    `api_key_env` (None for a local server without one), so it never lands in a manifest."""

    base_url: str = "https://api.openai.com/v1"
    model: str = "gpt-4o"
    api_key_env: str | None = "OPENAI_API_KEY"
    temperature: float = 0.0
    max_tokens: int = 1024
    max_attempts: int = 3
    concurrency: int = 32
    chunk_size: int = 2000
    rpm: float | None = None
    tpm: float | None = None
    timeout: float = 600.0
    cache_path: str | None = None  # default: <state_dir>/llm_cache.sqlite (RUN_DIR/cache/NN_tag/)
    batch: bool = False  # through the Batch API (m1data.llm.batch): one batch per round of asks
    batch_poll_seconds: float = 30.0
    text_field: str = "prompt"
    progress: bool = True
    # Server-specific fields added to every request body (the embedded config's grammar): part of
    # the cache key, admitted by the HTTP engine for this endpoint.
    extra_params: dict[str, Any] = field(default_factory=dict)
    cache_namespace: str | None = None  # see m1data.llm.cache; None: the API's host, or the model on a local server


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


async def _tag_chunk(engine: Engine, prompts: Sequence[str], config: MeshConfig, cache: Cache | None,
                     stats: RunStats | None, label: str) -> list[Outcome]:
    """Up to `max_attempts` rounds over `prompts`; each round is one batch through the runtime
    (sharing its concurrency bound and rate limits) holding only the rows still without a code."""
    outcomes = [Outcome() for _ in prompts]
    pending = list(range(len(prompts)))
    for attempt in range(1, config.max_attempts + 1):
        if not pending:
            break
        requests = [build_request(config, prompts[i], [_previous_text(r) for r in outcomes[i].replies])
                    for i in pending]
        if config.batch and cache is not None:
            from m1data.llm.batch import BatchLimits, complete

            replies = await asyncio.to_thread(complete, engine, requests, cache, batch=True, progress=config.progress,
                                              stats=stats, label=f"{label}, attempt {attempt}",
                                              batch_limits=BatchLimits(poll_seconds=config.batch_poll_seconds))
        else:
            replies = await run_requests(engine, requests, cache, concurrency=config.concurrency, rpm=config.rpm,
                                         tpm=config.tpm, progress=config.progress, stats=stats,
                                         label=f"{label}, attempt {attempt}")
        for i, reply in zip(pending, replies):
            outcomes[i].replies.append(reply)
            outcomes[i].code = reply_code(reply)
        pending = [i for i in pending if outcomes[i].code is None]
    return outcomes


async def tag_prompts(
    engine: Engine,
    prompts: Sequence[str],
    config: MeshConfig,
    cache: Cache | None,
    stats: RunStats | None = None,
) -> list[Outcome]:
    """Ask for a code for every prompt, re-asking the failures, `max_attempts` rounds at most.

    Rows go through in chunks of `chunk_size` because every request carries the whole rubric
    (about 18 KB): 23K requests built at once would hold some 400 MB of message text."""
    if config.max_attempts < 1:
        raise UserError("max_attempts must be at least 1")
    if config.chunk_size < 1:
        raise UserError("chunk_size must be at least 1")
    outcomes: list[Outcome] = []
    for start in range(0, len(prompts), config.chunk_size):
        chunk = prompts[start:start + config.chunk_size]
        label = "tag" if len(prompts) <= config.chunk_size else f"tag rows {start:,}-{start + len(chunk):,}"
        outcomes += await _tag_chunk(engine, chunk, config, cache, stats, label)
    return outcomes


def http_engine(config: MeshConfig) -> HTTPEngine:
    return HTTPEngine(HTTPConfig(base_url=config.base_url, api_key_env=config.api_key_env, timeout=config.timeout,
                                 extra_params=tuple(config.extra_params), cache_namespace=config.cache_namespace))


def run_tagging(prompts: Sequence[str], config: MeshConfig, cache_path: str | Path,
                engine: Engine | None = None) -> tuple[list[Outcome], RunStats]:
    """`tag_prompts` from synchronous code: opens the cache, closes the engine's connections."""
    engine = engine or http_engine(config)
    stats = RunStats()

    async def main() -> list[Outcome]:
        try:
            with Cache(cache_path) as cache:
                return await tag_prompts(engine, prompts, config, cache, stats)
        finally:
            await engine.aclose()

    return asyncio.run(main()), stats


def add_domain_columns(ds: datasets.Dataset, codes: Sequence[str]) -> datasets.Dataset:
    """`domain_code` ("07") and `domain` (the qualifier's name, as in the paper's Table 4)."""
    names = qualifier_by_code()
    for column in DOMAIN_COLUMNS:
        if column in ds.column_names:
            ds = ds.remove_columns(column)
    ds = ds.add_column("domain_code", list(codes))
    return ds.add_column("domain", [names[c].name for c in codes])


def domain_counts(codes: Sequence[str]) -> dict[str, int]:
    names = qualifier_by_code()
    counts = Counter(names[c].name for c in codes)
    return dict(sorted(counts.items()))


def _dropped(ds: datasets.Dataset, indices: list[int], outcomes: list[Outcome]) -> datasets.Dataset | None:
    """The untagged rows with their last reply, so a reader can see why the model failed."""
    if not indices:
        return None
    records = []
    for i in indices:
        last = outcomes[i].replies[-1]
        detail = last.error if last.status == "error" else (last.text or "")[-300:]
        records.append({"id": ds[i]["id"], "source": ds[i]["source"], "reason": UNTAGGED,
                        "attempts": len(outcomes[i].replies), "detail": f"{last.status}: {detail}"})
    return datasets.Dataset.from_list(records)


def _stats(outcomes: list[Outcome], codes: list[str], run: RunStats) -> dict[str, Any]:
    attempts = Counter(len(o.replies) for o in outcomes if o.code is not None)
    return {
        "domains": domain_counts(codes),
        "tagged": len(codes),
        UNTAGGED: sum(1 for o in outcomes if o.code is None),
        "attempts_to_tag": {str(k): v for k, v in sorted(attempts.items())},
        "requests": run.requests,
        "sent": run.sent,
        "cached": run.cached,
        "outcomes": dict(run.outcomes),
        "prompt_tokens": run.prompt_tokens_sent + run.prompt_tokens_cached,
        "completion_tokens": run.completion_tokens_sent + run.completion_tokens_cached,
        "prompt_tokens_sent": run.prompt_tokens_sent,
        "completion_tokens_sent": run.completion_tokens_sent,
        "cost_sent": run.cost_sent,
    }


class MeshTagger(Stage):
    """Adds `domain_code` and `domain` by asking an LLM; drops rows it cannot tag ("untagged").

    `engine` replaces the HTTP engine built from the config (a local transformers or vLLM
    engine, say); the config's base_url is then unused."""

    name = "tag"
    row_parallel = True

    def __init__(self, config: MeshConfig | None = None, engine: Engine | None = None):
        self.config = config or MeshConfig()
        self.engine = engine

    def preflight(self) -> str | None:
        """Stop a build before this stage when the endpoint is down or its key unset, rather
        than recording an error reply for every row."""
        if self.engine is not None:
            return None
        from m1data.llm.preflight import endpoint_problem

        return endpoint_problem(self.config.base_url, self.config.api_key_env)

    def run(self, rows: datasets.Dataset | None, ctx: RunContext) -> StageResult:
        if rows is None:
            raise UserError("the tag stage needs input rows")
        cache_path = self.config.cache_path or ctx.state_dir / "llm_cache.sqlite"
        prompts = list(rows[self.config.text_field])
        outcomes, run = run_tagging(prompts, self.config, cache_path, self.engine)
        kept = [i for i, o in enumerate(outcomes) if o.code is not None]
        failed = [i for i, o in enumerate(outcomes) if o.code is None]
        codes = [outcomes[i].code for i in kept]
        tagged = add_domain_columns(rows.select(kept), codes)
        # an untagged row whose attempts failed transiently may still be tagged: not a result yet
        transient = sum(any(is_transient(r) for r in outcomes[i].replies) for i in failed)
        return StageResult(rows=tagged, dropped=_dropped(rows, failed, outcomes), stats=_stats(outcomes, codes, run),
                           transient_failures=transient)


def tag_file(
    in_path: str | Path | Sequence[str | Path],
    out_path: str | Path,
    base_url: str = MeshConfig.base_url,
    model: str = MeshConfig.model,
    api_key_env: str | None = MeshConfig.api_key_env,
    cache: str | Path | None = None,
    concurrency: int = MeshConfig.concurrency,
    max_attempts: int = MeshConfig.max_attempts,
    batch: bool = False,
) -> StageResult:
    """Tag a .parquet/.jsonl of rows into `out_path`; untagged rows go beside it as
    `<out stem>.untagged<suffix>`. The cache defaults to `<out stem>.llm_cache.sqlite` beside the
    output, so re-running the same command after a crash only sends what is missing."""
    from m1data.readers import read_rows, write_rows

    out_path = Path(out_path)
    cache_path = Path(cache) if cache else out_path.with_name(out_path.stem + ".llm_cache.sqlite")
    config = MeshConfig(base_url=base_url, model=model, api_key_env=api_key_env, concurrency=concurrency,
                        max_attempts=max_attempts, cache_path=str(cache_path), batch=batch)
    ctx = RunContext(run_dir=out_path.parent, stage_dir=out_path.parent)
    result = MeshTagger(config).run(read_rows(in_path), ctx)
    write_rows(result.rows, out_path)
    if result.dropped is not None:
        write_rows(result.dropped, out_path.with_name(f"{out_path.stem}.{UNTAGGED}{out_path.suffix}"))
    return result


