"""What every LLM stage (difficulty filter, teacher traces, MeSH tagger) shares: one runtime block
in its config, one base class that owns calling, planning, preflight and statistics, the m1 prompt,
and splitting rows into kept and dropped with reasons.

Why one base class: the three stages differ only in the requests they build and in how they read
the replies. Everything else (which engine answers a model, the cache, rate limits, the Batch
API, the dry-run plan, what a manifest says about calls and cost) must behave the same in all of
them, and it does only when it is written once.

Why the prompt is one function: the paper sends the students and the teacher the same text, and
the cache key depends on every character of it; two spellings would pay twice.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from abc import abstractmethod
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
from datasets.table import InMemoryTable

from m1data.errors import UserError
from m1data.llm.attempts import complete_tries, run_rounds
from m1data.llm.cache import Cache
from m1data.llm.cost import PriceTable
from m1data.llm.limits import RetryPolicy
from m1data.llm.runner import RunStats, plan_requests, print_plan
from m1data.llm.types import Engine, Reply, Request, is_transient
from m1data.redact import refuse_endpoint_secrets, refuse_secret_params
from m1data.running import pipeline
from m1data.running.pipeline import (
    RunContext,
    Stage,
    StageResult,
    cache_lock,
    dropped_path,
    dropped_rows,
    in_memory,
    output_lock,
    refuse_overwrite,
    run_on_file,
    stats_path,
)
from m1data.schema import (RowError, column_values, fresh_fingerprint, integer_key, integer_keys, key_problem,
                           render_options)

BOXED_INSTRUCTION = "Return your final response within \\boxed{}."
CACHE_FILENAME = "llm_cache.sqlite"
REQUIRED_COLUMNS = ("id", "source", "prompt", "options", "answer_idx")
VLLM = "vllm"  # `base_url: vllm`: the model runs in-process through vLLM (m1data.llm.vllm)
HF = "hf"  # `base_url: hf`: the model runs in-process through transformers (m1data.llm.hf), CPU or one GPU

log = logging.getLogger(__name__)


@dataclass
class LLMRuntime:
    """How a stage sends its requests: the `runtime:` block of every LLM stage's config.

    `timeout` bounds one attempt, in seconds. `retry_failed` sends again requests whose recorded
    outcome was a failure (a refusal, a truncation). `cache_path` None puts the reply cache in the
    stage's state folder (`RUN_DIR/cache/NN_stage/`). `prices_file` prices models the built-in
    table does not know. `batch` goes through the provider's Batch API (m1data.llm.batch), polled
    every `batch_poll_seconds`. `vllm` holds m1data.llm.vllm.VLLMConfig settings for endpoints
    whose base_url is `vllm` (the model loaded in-process, once per worker)."""

    concurrency: int = 32
    rpm: float | None = None
    tpm: float | None = None
    timeout: float = 600.0
    retries: RetryPolicy = field(default_factory=RetryPolicy)
    retry_failed: bool = False
    cache_path: str | None = None
    prices_file: str | None = None
    batch: bool = False
    batch_poll_seconds: float = 30.0
    progress: bool = True
    vllm: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Checked when the config (or the command line) is read. Why 0 is refused: `rpm: 0` sent
        without any limit, where a ceiling was what was asked for, and `timeout: 0` timed out
        every request and stopped the run after paying for nothing."""
        if self.concurrency < 1:
            raise UserError(f"runtime.concurrency must be at least 1, got {self.concurrency}")
        for name in ("rpm", "tpm"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise UserError(f"runtime.{name} must be above 0, got {value} (leave it out for no limit)")
        for name in ("timeout", "batch_poll_seconds"):
            if not getattr(self, name) > 0:
                raise UserError(f"runtime.{name} must be above 0 seconds, got {getattr(self, name)}")

    def prices(self) -> PriceTable:
        return PriceTable.from_file(self.prices_file) if self.prices_file else PriceTable()

    def sending(self) -> dict[str, Any]:
        """The settings every runner call takes from this block (`run_requests`, `run_tries`,
        the batch `complete`), named as those functions name them."""
        return {"concurrency": self.concurrency, "rpm": self.rpm, "tpm": self.tpm, "progress": self.progress,
                "retry_failed": self.retry_failed, "retry": self.retries}


@dataclass(frozen=True)
class Endpoint:
    """One model a stage calls. `key` names it among the stage's engines ("*" for a stage with
    one model, the student's column for a student); `role` is how messages name it."""

    key: str
    role: str
    model: str
    base_url: str
    api_key_env: str | None = None
    cache_namespace: str | None = None

    @property
    def in_process(self) -> bool:
        """`base_url: vllm` or `hf`: the model is loaded here (m1data.llm.vllm, m1data.llm.hf), not
        reached over HTTP."""
        return self.base_url.strip().lower() in (VLLM, HF)


def build_engine(
    endpoint: Endpoint, runtime: LLMRuntime, extra_params: Sequence[str] = (), *, require_key: bool = True,
    require_usage: bool = False,
) -> Engine:
    """The engine that answers `endpoint`, built from its settings: in-process vLLM for `vllm`,
    transformers for `hf`, else the OpenAI-compatible HTTP engine. The one factory of m1data:
    the LLM stages and `m1data infer` both build their engines here, so an endpoint means the
    same thing (timeout, key, cache namespace, allowed extra parameters) in both."""
    kind = endpoint.base_url.strip().lower()
    if kind == VLLM:
        from m1data.llm.vllm import VLLMConfig, VLLMEngine

        return VLLMEngine(VLLMConfig(model=endpoint.model, **runtime.vllm))
    if kind == HF:
        from m1data.llm.hf import HFConfig, HFEngine

        return HFEngine(HFConfig(model=endpoint.model))
    from m1data.llm.http import HTTPConfig, HTTPEngine

    config = HTTPConfig(
        base_url=endpoint.base_url,
        api_key_env=endpoint.api_key_env,
        timeout=runtime.timeout,
        extra_params=tuple(extra_params),
        cache_namespace=endpoint.cache_namespace,
        require_usage=require_usage,
    )
    return HTTPEngine(config, require_key=require_key)


def endpoint_missing(endpoint: Endpoint) -> str | None:
    """What asking `endpoint` needs that is not installed, in one line; None when all is there:
    vLLM or torch and transformers in process, the embedded model and its server, the openai
    client for a server."""
    kind = endpoint.base_url.strip().lower()
    if kind == VLLM:
        installed = importlib.util.find_spec("vllm") is not None
        return None if installed else "vllm is not installed (pip install 'm1data[vllm]', needs CUDA)"
    if kind == HF:
        installed = all(importlib.util.find_spec(name) is not None for name in ("torch", "transformers"))
        return None if installed else "torch and transformers are not installed (pip install 'm1data[infer]')"
    if kind == "embedded":  # still unserved when a build checks: its server or model is missing
        from m1data.llm.local_server import embedded_missing

        missing = embedded_missing()
        if missing is not None:
            return f"the embedded model cannot be served: {missing}"
    installed = importlib.util.find_spec("openai") is not None
    return None if installed else "the openai client is not installed (pip install 'm1data[llm]')"


def endpoint_preflight(endpoint: Endpoint) -> str | None:
    """None when `endpoint` can be used now; else what is wrong, in one line: an HTTP endpoint
    that does not answer or whose key variable is unset, an in-process engine whose package is
    missing. Checked before any work, so a dead endpoint stops a run instead of recording an
    error reply for every row."""
    missing = endpoint_missing(endpoint)
    if missing is not None or endpoint.base_url.strip().lower() in (VLLM, HF):
        return missing
    from m1data.llm.preflight import endpoint_problem

    return endpoint_problem(endpoint.base_url, endpoint.api_key_env)


def llm_stats(run: RunStats) -> dict[str, Any]:
    """The statistics vocabulary of every LLM stage's manifest: requests (including repeats),
    sent now, answered from the cache, failed (outcome `error`), tokens in and out (sent plus
    cached), what was sent now, and its cost (None when a model has no price)."""
    return {
        "requests": run.requests,
        "sent": run.sent,
        "cached": run.cached,
        "failed": run.outcomes.get("error", 0),
        "retries": run.attempts - run.sent,
        "outcomes": dict(sorted(run.outcomes.items())),
        "prompt_tokens": run.prompt_tokens_sent + run.prompt_tokens_cached,
        "completion_tokens": run.completion_tokens_sent + run.completion_tokens_cached,
        "prompt_tokens_sent": run.prompt_tokens_sent,
        "completion_tokens_sent": run.completion_tokens_sent,
        "cost_sent": run.cost_sent,
    }


class LLMStage(Stage):
    """A pipeline stage that asks models. Subclasses say which models (`endpoints`), what the
    first round of requests is (`requests`, also what a dry run plans) and what to make of the
    replies (`process`, which calls `self.call`); this class does the rest.

    `engines` replaces, by endpoint key, the engine the config names (an HFEngine on CPU, a test
    double). Engines built from the config are built once per stage object and never pickled: a
    distributed worker receives the config and builds its own (an API key never travels)."""

    row_parallel = True
    grades = True  # its replies are graded by options and answer_idx (students, teacher); the tagger's are not
    config: Any  # a dataclass with a `runtime: LLMRuntime` and `extra_params`

    def __init__(self, config: Any, engines: dict[str, Engine] | None = None):
        self.config = config
        self.engines: dict[str, Engine] = dict(engines or {})
        self._built: dict[str, Engine] = {}
        self._prices: PriceTable | None = None
        for endpoint in self.endpoints():  # at construction: a build refuses before it starts anything
            refuse_endpoint_secrets(endpoint.base_url, f"{endpoint.role}: base_url")
        refuse_secret_params(getattr(config, "extra_params", None), f"{self.name}: extra_params")

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_built": {}}

    @property
    def runtime(self) -> LLMRuntime:
        return self.config.runtime

    def prices(self) -> PriceTable:
        """The runtime's price table, read once per stage object (a tagger calls once a round)."""
        if self._prices is None:
            self._prices = self.runtime.prices()
        return self._prices

    @abstractmethod
    def endpoints(self) -> list[Endpoint]: ...

    def shared_caches(self) -> tuple[str, ...]:
        """The configured reply cache, which a build holds while it runs (`Stage.shared_caches`);
        none when the cache is the stage's state folder's, which the run folder's lock holds."""
        return (self.runtime.cache_path,) if self.runtime.cache_path else ()

    def external_fingerprint(self) -> str:
        """The model file that serves this stage's `embedded` endpoints (its name and size). Why:
        the config says only `base_url: embedded`, so a build run again with M1DATA_EMBEDDED_GGUF
        naming another model skipped the stage, keeping the first model's rows (runtime audit)."""
        from m1data.llm.embedded import embedded_stages
        from m1data.llm.local_server import ServerUnavailable, find_embedded_model

        if not embedded_stages([self]):
            return ""
        try:
            model = find_embedded_model()
        except ServerUnavailable:  # (the build stops before this stage, saying what is missing)
            return "embedded:none"
        return f"embedded:{model.name}:{model.stat().st_size}"

    def holds_model(self) -> bool:
        return any(endpoint.in_process for endpoint in self.endpoints() if endpoint.key not in self.engines)

    @abstractmethod
    def requests(self, endpoint: Endpoint, rows: datasets.Dataset) -> list[Request]:
        """The requests of the first round for `endpoint`: what a run sends first, what a dry
        run plans."""

    @abstractmethod
    def process(self, rows: datasets.Dataset, cache: Cache, ctx: RunContext | None) -> StageResult: ...

    def required_columns(self) -> tuple[str, ...]:
        return REQUIRED_COLUMNS

    def columns_needed(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*self.required_columns(), self.text_column())))

    def text_column(self) -> str:
        """The column whose text the requests ask about: each value must be a str, or a None
        is sent to the model as the question "None" (`pipeline.check_texts`)."""
        return "prompt"

    def run(self, rows: datasets.Dataset | None, ctx: RunContext | None = None) -> StageResult:
        rows = check_rows(rows, self.name, self.required_columns(), texts=(self.text_column(),))
        rows, ungradable = self.ungradable(rows) if self.grades else (rows, None)
        with open_cache(self.runtime.cache_path, ctx) as cache:
            return _with_dropped(self.process(rows, cache, ctx), ungradable)

    def ungradable(self, rows: datasets.Dataset) -> tuple[datasets.Dataset, datasets.Dataset | None]:
        """(rows to ask about, rows dropped first): a row whose prompt or answer fields disagree
        with its options and answer_idx (`schema.key_problem`) is not sent, since its reply would
        be graded against options the model never saw, nor is one with an empty question; it is
        dropped with the reason, and a warning counts them. None when every row agrees (as every
        row m1data loads does). A key that is no option's index stops the stage (`_check_keys`); a whole
        float key (pandas' 2.0) is the index it holds, its column cast to integers before grading."""
        _check_keys(self.name, column_values(rows, "id"), column_values(rows, "options"),
                    column_values(rows, "answer_idx"))
        rows = integer_keys(rows)
        n = len(rows)
        fields = [column_values(rows, c) if c in rows.column_names else [None] * n
                  for c in ("prompt", "options", "answer_idx", "answer_letter", "answer_text")]
        problems = [key_problem(*row) or _empty_question(row[0], row[1]) for row in zip(*fields)]
        if not any(problems):
            return rows, None
        bad = [p for p in problems if p is not None]
        counts = Counter(p.reason for p in bad)
        log.warning("%s: %d row(s) not sent, an empty question or their prompt or answer fields disagreeing with "
                    "their options (%s); first: %s", self.name, len(bad),
                    ", ".join(f"{r}: {c}" for r, c in sorted(counts.items())), bad[0])
        return split_rows(rows, [p and p.reason for p in problems], [p.detail if p else "" for p in problems])

    def engine(self, endpoint: Endpoint, require_key: bool = True) -> Engine:
        """The engine that answers `endpoint`: a replacement given to the stage, else one built
        from the config (HTTP for a URL, in-process vLLM for `vllm`), kept for the next call."""
        if endpoint.key in self.engines:
            return self.engines[endpoint.key]
        if endpoint.key in self._built:
            return self._built[endpoint.key]
        engine = self._build_engine(endpoint, require_key)
        if require_key:
            self._built[endpoint.key] = engine
        return engine

    def _build_engine(self, endpoint: Endpoint, require_key: bool) -> Engine:
        return build_engine(endpoint, self.runtime, self.config.extra_params, require_key=require_key)

    def missing(self) -> str | None:
        """The first of this stage's endpoints whose engine is not installed (`endpoint_missing`)."""
        problems = (endpoint_missing(e) for e in self.endpoints() if e.key not in self.engines)
        return next((p for p in problems if p is not None), None)

    def preflight(self) -> str | None:
        """Stop a build before this stage when an endpoint is down or its key unset, rather than
        recording an error reply for every row."""
        for endpoint in self.endpoints():
            if endpoint.key in self.engines:
                continue
            problem = endpoint_preflight(endpoint)
            if problem:
                return f"{endpoint.role}: {problem}"
        return None

    def plan(self, rows: datasets.Dataset, cache: Cache | None) -> None:
        """Print what a run would send and cost per model, calling nothing (no key needed); rows
        a run would not send (`ungradable`) are not counted."""
        if self.grades:
            rows = self.ungradable(rows)[0]
        for endpoint in self.endpoints():
            plan = plan_requests(
                self.engine(endpoint, require_key=False),
                self.requests(endpoint, rows),
                cache,
                retry_failed=self.runtime.retry_failed,
                prices=self.prices(),
                batch=self.runtime.batch,
            )
            print_plan(plan, title=f"{endpoint.role}{' (batch)' if self.runtime.batch else ''} (dry run)")

    def call(
        self,
        endpoint: Endpoint,
        requests: Sequence[Request],
        cache: Cache,
        ctx: RunContext | None,
        stats: RunStats,
        *,
        label: str | None = None,
        online: bool = False,
        progress: bool | None = None,
        summary: bool = True,
    ) -> list[Reply]:
        """One reply per request, in order, through the cache, under the runtime's limits (or the
        Batch API unless `online`); `stats` collects what it cost. `summary`: see `run_requests`."""
        from m1data.llm.batch import BatchLimits, complete

        rt = self.runtime
        return complete(
            self.engine(endpoint),
            requests,
            cache,
            batch=rt.batch and not online,
            stage_dir=ctx.state_dir if ctx is not None else None,
            batch_limits=BatchLimits(poll_seconds=rt.batch_poll_seconds),
            **{**rt.sending(), **({} if progress is None else {"progress": progress})},
            prices=self.prices(),
            stats=stats,
            label=label or endpoint.role,
            summary=summary,
        )


    def call_tries(
        self,
        endpoint: Endpoint,
        first: Sequence[Request],
        cache: Cache,
        ctx: RunContext | None,
        by_attempt: dict[int, RunStats],
        again: Any,
        *,
        label: str | None = None,
        summary: bool = True,
    ) -> list[list[Reply]]:
        """Up to `len(by_attempt)` tries per question (m1data.llm.attempts): try k+1 goes out when
        `again(question, reply)` sends try k back; online as soon as it does, with the Batch API
        in rounds. One list of replies per question, first try first. `summary`: see `run_requests`."""
        rt, label = self.runtime, label or endpoint.role
        if rt.batch:
            def one_round(requests: list[Request], stats: RunStats, attempt: int) -> list[Reply]:
                return self.call(endpoint, requests, cache, ctx, stats, label=f"{label} try {attempt}")

            return run_rounds(one_round, first, len(by_attempt), again, by_attempt)
        return complete_tries(
            self.engine(endpoint),
            first,
            cache,
            attempts=len(by_attempt),
            again=again,
            by_attempt=by_attempt,
            **rt.sending(),
            prices=self.prices(),
            label=label,
            summary=summary,
        )


def _empty_question(prompt: Any, options: Any) -> RowError | None:
    """A prompt that holds nothing but its options (as m1data writes them): it asks about them
    alone, and a student missing it made it a "hard" question. m1data's own rows never have one."""
    if not isinstance(prompt, str) or not isinstance(options, (list, tuple)) or not options:
        return None
    listed = render_options([str(option) for option in options])
    if prompt.endswith(listed) and not prompt[: -len(listed)].strip():
        return RowError("empty_question", "the prompt holds its options and no question")
    return None


def _check_keys(stage: str, ids: Sequence[Any], options: Sequence[Any], keys: Sequence[Any]) -> None:
    """Stop, naming the row, before anything is sent, when a row's answer_idx is no index of its
    options (an empty list, a 1-based key one past the end): its replies could not be graded.
    The stop came when the replies were graded, after every request of the stage was paid for."""
    for row_id, opts, key in zip(ids, options, keys):
        count = len(opts) if isinstance(opts, (list, tuple)) else None
        index = integer_key(key)  # pandas' 2.0 is 2; 1.7, True or "2" is no index
        if count is None or index is None or not 0 <= index < count:
            has = f"{count} option(s)" if count is not None else f"options that are no list ({type(opts).__name__})"
            raise UserError(f"{stage}: row {row_id!r} has answer_idx {key!r} and {has}: its replies could not be "
                            "graded, so nothing was sent; fix or drop the row")


def boxed_prompt(prompt: str) -> str:
    """The m1 prompt for students and teacher: the instruction, a newline, the question prompt."""
    return f"{BOXED_INSTRUCTION}\n{prompt}"


def boxed_request(model: str, prompt: str, params: dict[str, Any]) -> Request:
    """A single user message, no system message, as m1 sent it."""
    return Request(model=model, messages=({"role": "user", "content": boxed_prompt(prompt)},), params=dict(params))


def count_transient(replies: Sequence[Reply]) -> int:
    return sum(is_transient(r) for r in replies)


def check_rows(rows: datasets.Dataset | None, stage: str,
               required: Sequence[str] = REQUIRED_COLUMNS, texts: Sequence[str] = ("prompt",)) -> datasets.Dataset:
    """`m1data.running.pipeline.check_rows`, with the LLM stages' columns by default."""
    return pipeline.check_rows(rows, stage, required, texts)


def open_cache(configured: str | None, ctx: RunContext | None) -> Cache:
    """The configured file, else `<state_dir>/llm_cache.sqlite`: in a build, the stage's state
    folder `RUN_DIR/cache/NN_stage/`, which no rewrite of the stage's outputs touches."""
    if configured:
        return Cache(configured)
    if ctx is None:
        raise UserError("no cache path configured and no run context to put one in")
    return Cache(Path(ctx.state_dir) / CACHE_FILENAME)


def _with_dropped(result: StageResult, dropped: datasets.Dataset | None) -> StageResult:
    """`result` with `dropped` added to its dropped rows: the columns of both, a column only one
    has null in the other's rows, and a column the two type differently (a researcher's rows may
    bring a stale `student_x_correct` as text) the stage's, null in the added rows."""
    if dropped is None:
        return result
    if result.dropped is None:
        return replace(result, dropped=dropped)
    ours, added = in_memory(result.dropped).data.table, in_memory(dropped).data.table

    def clash(name: str) -> bool:  # a null-typed column (no value yet) takes the other's type
        a, b = added.schema.field(name).type, ours.schema.field(name).type
        return a != b and not pa.types.is_null(a) and not pa.types.is_null(b)

    clashing = [name for name in added.column_names if name in ours.column_names and clash(name)]
    table = pa.concat_tables([ours, added.drop_columns(clashing)], promote_options="default")
    return replace(result, dropped=in_memory(datasets.Dataset(InMemoryTable(table))))


def split_rows(
    rows: datasets.Dataset,
    reasons: Sequence[str | None],
    details: Sequence[str],
    extra: dict[str, tuple[list[Any], Any]] | None = None,
) -> tuple[datasets.Dataset, datasets.Dataset]:
    """(kept, dropped): rows whose reason is None are kept; the others go to dropped with
    `reason` and `detail` columns added (every other column stays, for inspection), and the
    `extra` columns, given for the dropped rows only."""
    keep = [i for i, reason in enumerate(reasons) if reason is None]
    drop = [i for i, reason in enumerate(reasons) if reason is not None]
    dropped = dropped_rows(
        rows.select(drop, new_fingerprint=fresh_fingerprint()),
        [reasons[i] for i in drop],
        {"detail": ([details[i] for i in drop], datasets.Value("string")), **(extra or {})},
    )
    return in_memory(rows.select(keep, new_fingerprint=fresh_fingerprint())), dropped  # zero kept rows must still pickle (a Ray block's result)


def _refuse_cache_on_a_file_of_the_run(cache_path: str | None, in_path: Any, out_path: str | Path) -> None:
    """`--cache OUT` (or an input, or OUT's dropped or stats file): the paid replies were written
    over with rows at the end of the run, and the next run found no cache."""
    if cache_path is None:
        return
    cache = Path(cache_path).expanduser().resolve()
    out = Path(out_path).expanduser()
    inputs = [in_path] if isinstance(in_path, (str, Path)) else list(in_path)
    for other in (out, dropped_path(out), stats_path(out), *map(Path, inputs)):
        if Path(other).expanduser().resolve() == cache:
            raise UserError(f"the reply cache {cache_path} is also {other}, a file this run reads or writes: "
                            "give --cache another file")


def default_cache_path(out_path: str | Path) -> Path:
    """A file run's cache when none is given: `OUT.parquet` -> `OUT.llm_cache.sqlite`."""
    out_path = Path(out_path).expanduser()
    return out_path.with_name(f"{out_path.stem}.llm_cache.sqlite")


def file_runtime(runtime: LLMRuntime, out_path: str | Path) -> LLMRuntime:
    """`runtime` for a file run: its cache beside OUT unless one is given."""
    return replace(runtime, cache_path=runtime.cache_path or str(default_cache_path(out_path)))


def file_settings(base: Any, out_path: str | Path, runtime: LLMRuntime | None = None, **given: Any) -> Any:
    """The settings of a file run: `base` (a stage's defaults, or what a build config gives the
    stage: `m1data.jobs.stage_settings`) with each of `given` that is not None over it, and the
    runtime of a file run (`file_runtime`: `runtime`, else the base's). Why a base: a file run could
    not send what a config sets beyond its arguments (a grammar, `top_p`, a chat template's
    switches), so the embedded teacher's run stopped at its preflight (audit)."""
    chosen = {name: value for name, value in given.items() if value is not None}
    if "base_url" in chosen and chosen["base_url"] != getattr(base, "base_url", None):
        # another server: the base's key variable is its server's (paper.yaml's DEEPSEEK_API_KEY), and
        # it went to the one named here; a key for this one is named here (or its provider's is used)
        chosen.setdefault("api_key_env", given.get("api_key_env"))
    settings = replace(base, **chosen)
    settings.runtime = file_runtime(runtime or settings.runtime, out_path)
    return settings


@contextlib.contextmanager
def _planned_embedded(stage: LLMStage) -> Iterator[None]:
    """A dry run's engines for `embedded` endpoints, for the plan only: named as a run names them
    (the model file the server would load), so the plan reads the same cache entries, and never
    called: a plan sends nothing, so no server starts. Without them the plan refused `embedded`
    as a base_url; left on the stage, a later real run would have sent to their unused port."""
    from m1data.llm.embedded import attach, embedded_stages
    from m1data.llm.local_server import ServerUnavailable, find_embedded_model

    before = dict(stage.engines)
    if embedded_stages([stage]):
        try:
            attach([stage], "http://127.0.0.1:9/v1", find_embedded_model())  # the port is never used
        except ServerUnavailable as missing:
            raise UserError(f"{stage.name}: the embedded model is not installed ({missing})") from None
    try:
        yield
    finally:
        stage.engines.clear()
        stage.engines.update(before)


def run_llm_on_file(
    stage: LLMStage, in_path: str | Path | Sequence[str | Path], out_path: str | Path, dry_run: bool
) -> dict[str, Any]:
    """An LLM stage over files (`pipeline.run_on_file`: OUT, and OUT.dropped.<ext> with reasons);
    a dry run prints the plan instead, reading the cache if there is one, writing nothing, and
    returns {}. An endpoint whose base_url is `embedded` gets the embedded model's server for the
    length of the run (its log OUT's folder/llama-server.log), as a build serves it: the same
    config entry (a student `SmolLM2-135M-Instruct=embedded`) works at every door."""
    if not dry_run:
        from m1data.llm.embedded import serve_embedded  # it imports this module

        refuse_overwrite(in_path, out_path)  # before a server starts
        _refuse_cache_on_a_file_of_the_run(stage.runtime.cache_path, in_path, out_path)
        cache = stage.runtime.cache_path  # held too: a run into another OUT on this cache sent what this one sent
        with (output_lock(out_path), cache_lock(cache) if cache else contextlib.nullcontext(),
              serve_embedded([stage], Path(out_path).expanduser().parent)):
            stats = run_on_file(stage, in_path, out_path)  # the locks first: a second run starts no server
        if stats.get("transient_failures"):
            log.warning(
                "%s requests failed transiently (timeouts, 5xx, dropped connections); their rows are in the dropped "
                "file. Run the same command again to send exactly those (the cache answers the rest).",
                f"{stats['transient_failures']:,}"
            )
        return stats
    from m1data.reading.readers import read_rows

    rows = read_rows(in_path)
    if len(rows):
        rows = check_rows(rows, stage.name, stage.required_columns(), texts=(stage.text_column(),))
        cache_file = Path(stage.runtime.cache_path)
        with _planned_embedded(stage), Cache(cache_file) if cache_file.is_file() else contextlib.nullcontext() as store:
            stage.plan(rows, store)
    return {}


__all__ = [
    "BOXED_INSTRUCTION",
    "CACHE_FILENAME",
    "REQUIRED_COLUMNS",
    "HF",
    "VLLM",
    "Endpoint",
    "LLMRuntime",
    "LLMStage",
    "boxed_prompt",
    "boxed_request",
    "build_engine",
    "check_rows",
    "count_transient",
    "default_cache_path",
    "endpoint_preflight",
    "file_runtime",
    "file_settings",
    "is_transient",
    "llm_stats",
    "open_cache",
    "run_llm_on_file",
    "split_rows",
]
