"""The difficulty filter (reference section 4): drop the questions a student model already solves.

Each student (default: Qwen2.5-7B-Instruct and Qwen2.5-32B-Instruct, each behind an
OpenAI-compatible server such as `vllm serve`) gets `Return your final response within
\\boxed{}.\\n{prompt}` as a single user message, greedy (temperature 0), up to 4,000 new tokens.
Every row gets, per student `<short>`:

    student_<short>_reply    the reply text (after any thinking)
    student_<short>_answer   the option letter read from it (m1data.stages.answers), or null
    student_<short>_correct  whether that answer is right (False for a truncated or refused reply:
                             it gave no final answer)
    student_<short>_status   ok / length / filtered / error

so another drop rule can be applied later without a single new call.

pass@n: a student may answer each question `samples: n` times (at the config's temperature; each
sample its own cached request, m1data.llm.attempts), and `solved_if` (any | majority | all of the
samples right) says when it solved the question; `student_<short>_correct` is that verdict, and
`student_<short>_verdicts` / `student_<short>_answers` keep every sample's verdict and letter. One
sample (the default) is the paper's rule and adds no columns.

Drop rules: "any" (m1's: drop when any student is right), "all" (drop only when every student is
right), "none" (annotate only). Dropped rows carry reason `solved_by_student` and, in `detail`,
which students solved them. A student call that failed (after retries) leaves the row undecided:
if the answers that did come back already decide it (under "any", one right answer does), that
decision stands; otherwise the row is dropped with reason `student_error` and the errors in
`detail`. A refused call (a 4xx such as a prompt over the context window) is a recorded outcome,
sent again only with `retry_failed`. A transient failure (timeout, 5xx, dropped connection, after
every retry) is not: the stage counts it in `StageResult.transient_failures`, so a build marks the
stage incomplete, stops after it and exits non-zero, and re-running the same command sends
exactly those calls again (the cache answers the rest) and the rows come back.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import datasets

from m1data.errors import UserError
from m1data.llm.attempts import check_attempts, nth_try
from m1data.llm.cache import Cache
from m1data.llm.embedded import is_embedded
from m1data.llm.params import check_settings
from m1data.llm.runner import RunStats
from m1data.llm.stages import (
    Endpoint,
    LLMRuntime,
    LLMStage,
    boxed_request,
    count_transient,
    file_settings,
    llm_stats,
    run_llm_on_file,
    split_rows,
)
from m1data.llm.types import Engine, Reply, Request
from m1data.redact import public_model_name
from m1data.running.pipeline import RunContext, StageResult, add_columns, sum_stats, with_columns
from m1data.schema import column_values
from m1data.stages.answers import grade

log = logging.getLogger(__name__)

DropRule = Literal["any", "all", "none"]
SolvedIf = Literal["any", "majority", "all"]
SOLVED_IF = ("any", "majority", "all")
ANSWERED = ("ok", "length", "filtered")  # statuses that are a student's (possibly empty) answer


def short_name(model: str) -> str:
    """A column-safe name for a model: `Qwen/Qwen2.5-7B-Instruct` -> `qwen2_5_7b_instruct`."""
    return re.sub(r"[^a-z0-9]+", "_", model.rsplit("/", 1)[-1].lower()).strip("_")


@dataclass
class StudentConfig:
    """One student model behind an OpenAI-compatible endpoint. `short` names its columns."""

    model: str
    base_url: str
    api_key_env: str | None = None
    short: str | None = None
    cache_namespace: str | None = None  # see m1data.llm.cache; None: the model name on a local server
    samples: int = 1  # pass@n: answers drawn per question (at the config's temperature)
    solved_if: SolvedIf = "any"  # how many of them must be right for the question to count as solved

    def __post_init__(self) -> None:
        check_attempts(self.samples, f"students[{self.model}].samples")
        if self.solved_if not in SOLVED_IF:
            raise UserError(f"students[{self.model}].solved_if must be one of {', '.join(SOLVED_IF)}, "
                            f"not {self.solved_if!r}")

    @property
    def column(self) -> str:
        return self.short or short_name(self.model)


def student_from_spec(spec: str, api_key_env: str | None = None) -> StudentConfig:
    """The student a `--student [SHORT=]MODEL=BASE_URL` names, as a config's `{model, base_url,
    short}` does: both doors build a StudentConfig, whose `column` names the columns. Why SHORT:
    without it the CLI named columns after the model (`qwen2_5_7b_instruct`) and could not write a
    build's (`short: qwen2_5_7b`). Unambiguous because no model id holds '=' and a base URL is
    `embedded` or has a scheme (`://`): `m=http://h/v1` is MODEL=BASE_URL. ValueError when a part
    is missing (the caller says so without the spec's credentials)."""
    first, _, rest = spec.partition("=")
    second, sep, tail = rest.partition("=")
    if sep and not _names_endpoint(second):
        short, model, base_url = first, second, tail
    else:
        short, model, base_url = None, first, rest
    if not model or not base_url or short == "":
        raise ValueError("expected [SHORT=]MODEL=BASE_URL")
    return StudentConfig(model, base_url, api_key_env=api_key_env, short=short)


def _names_endpoint(text: str) -> bool:
    """Whether `text` is a base URL (`embedded`, or one with a scheme), not a model id."""
    return is_embedded(text) or "://" in text


def default_students() -> list[StudentConfig]:
    return [
        StudentConfig("Qwen/Qwen2.5-7B-Instruct", "http://127.0.0.1:8000/v1", short="qwen2_5_7b"),
        StudentConfig("Qwen/Qwen2.5-32B-Instruct", "http://127.0.0.1:8001/v1", short="qwen2_5_32b"),
    ]


@dataclass
class DifficultyConfig:
    students: list[StudentConfig] = field(default_factory=default_students)
    max_tokens: int = 4000
    temperature: float = 0.0
    drop_rule: DropRule = "any"
    # Server-specific fields added to every request body (a llama.cpp `grammar`, say): part of the
    # cache key, and admitted by the HTTP engine for this endpoint only.
    extra_params: dict[str, Any] = field(default_factory=dict)
    runtime: LLMRuntime = field(default_factory=LLMRuntime)

    def __post_init__(self) -> None:
        check_settings("difficulty", {"max_tokens": self.max_tokens, "temperature": self.temperature})
        check_settings("difficulty.extra_params", self.extra_params)
        if self.drop_rule not in ("any", "all", "none"):
            raise UserError(f"drop_rule must be 'any', 'all' or 'none', not {self.drop_rule!r}")
        columns = [s.column for s in self.students]
        if not columns or len(set(columns)) != len(columns):
            raise UserError(f"students need distinct short names, got {columns}")


def _student_columns(short: str) -> dict[str, Any]:
    return {
        f"student_{short}_reply": datasets.Value("string"),
        f"student_{short}_answer": datasets.Value("string"),
        f"student_{short}_correct": datasets.Value("bool"),
        f"student_{short}_status": datasets.Value("string"),
    }


def _grade(replies: list[Reply], options: list[list[str]], answer_idx: list[int]) -> dict[str, list[Any]]:
    texts, letters, correct, statuses, errors = [], [], [], [], []
    for reply, opts, idx in zip(replies, options, answer_idx, strict=True):
        answered = reply.status in ANSWERED
        texts.append(reply.text if answered else None)
        result = grade(reply.text, opts, idx) if answered and reply.text else None
        letters.append(result.extraction.letter if result else None)
        correct.append(reply.status == "ok" and result is not None and result.correct)
        statuses.append(reply.status)
        errors.append(reply.error or "")
    return {"reply": texts, "answer": letters, "correct": correct, "status": statuses, "error": errors}


def decide(rule: DropRule, correct: dict[str, bool | None]) -> str | None:
    """The drop reason for one row (None: keep it), from each student's correctness (None: the
    call failed). A failure only matters when the answers that came back do not decide."""
    if rule == "none":
        return None
    known = [ok for ok in correct.values() if ok is not None]
    undecided = len(known) < len(correct)
    if rule == "any":
        if any(known):
            return "solved_by_student"
        return "student_error" if undecided else None
    if not all(known):  # rule "all": one known miss keeps the row
        return None
    return "student_error" if undecided else "solved_by_student"


def solved(rule: SolvedIf, verdicts: Sequence[bool | None]) -> bool | None:
    """Whether a student solved a question from its samples' verdicts (None: that sample's call
    failed), under `rule`; None when the failed samples could tip it either way."""
    right = sum(v is True for v in verdicts)
    wrong = sum(v is False for v in verdicts)
    n = len(verdicts)
    need = {"any": 1, "majority": n // 2 + 1, "all": n}[rule]
    if right >= need:
        return True
    if n - wrong < need:  # even if every failed sample were right, too few
        return False
    return None


def _pass_at_n(samples: list[dict[str, list[Any]]], rule: SolvedIf) -> dict[str, list[Any]]:
    """One student's n graded samples as one verdict per question (`solved`); the reply and
    answer shown are the first sample's, `status` is "ok" when the samples decide and the first
    failed sample's status when they do not."""
    first = samples[0]
    combined: dict[str, list[Any]] = {"reply": first["reply"], "answer": first["answer"], "correct": [],
                                      "status": [], "error": []}
    for i in range(len(first["reply"])):
        verdicts = [g["correct"][i] if g["status"][i] in ANSWERED else None for g in samples]
        verdict = solved(rule, verdicts)
        failed = next((g for g in samples if g["status"][i] not in ANSWERED), None)
        combined["correct"].append(bool(verdict))
        combined["status"].append("ok" if verdict is not None else failed["status"][i])
        combined["error"].append("" if verdict is not None else failed["error"][i])
    return combined


def _sample_column_names(short: str) -> tuple[str, str]:
    return f"student_{short}_verdicts", f"student_{short}_answers"


def _sample_columns(short: str, samples: list[dict[str, list[Any]]]) -> dict[str, tuple[list[Any], Any]]:
    """Each sample's verdict (null: its call failed) and answer letter, so another rule can be
    applied later without a call."""
    n = len(samples[0]["reply"])
    verdicts = [[g["correct"][i] if g["status"][i] in ANSWERED else None for g in samples] for i in range(n)]
    answers = [[g["answer"][i] for g in samples] for i in range(n)]
    verdicts_name, answers_name = _sample_column_names(short)
    return {
        verdicts_name: (verdicts, datasets.Sequence(datasets.Value("bool"))),
        answers_name: (answers, datasets.Sequence(datasets.Value("string"))),
    }


class DifficultyFilter(LLMStage):
    """Pipeline stage; `engines` optionally replaces students' engines (by short name), e.g.
    with an HFEngine on CPU."""

    name = "difficulty"

    def __init__(self, config: DifficultyConfig | None = None, engines: dict[str, Engine] | None = None):
        super().__init__(config or DifficultyConfig(), engines)

    def endpoints(self) -> list[Endpoint]:
        return [
            Endpoint(s.column, f"student {s.column}", s.model, s.base_url, s.api_key_env, s.cache_namespace)
            for s in self.config.students
        ]

    def requests(self, endpoint: Endpoint, rows: datasets.Dataset) -> list[Request]:
        """Every sample of every question, sample k of all rows after sample k-1 (pass@n): they
        go out in one round, so this is also what a dry run plans (it planned one sample only)."""
        params = {"max_tokens": self.config.max_tokens, "temperature": self.config.temperature}
        params.update(self.config.extra_params)
        firsts = [boxed_request(endpoint.model, p, params) for p in column_values(rows, "prompt")]
        samples = self._student(endpoint).samples
        return [nth_try(r, k) for k in range(1, samples + 1) for r in firsts]

    def columns_after(self, before: frozenset[str] | None) -> frozenset[str] | None:
        return with_columns(before, [name for s in self.config.students for name in (
            *_student_columns(s.column), *(_sample_column_names(s.column) if s.samples > 1 else ()))])

    def _student(self, endpoint: Endpoint) -> StudentConfig:
        return next(s for s in self.config.students if s.column == endpoint.key)

    def process(self, rows: datasets.Dataset, cache: Cache, ctx: RunContext | None) -> StageResult:
        cfg = self.config
        per_student: dict[str, dict[str, list[Any]]] = {}
        stats: dict[str, Any] = {"drop_rule": cfg.drop_rule, "students": {}}
        total, transient = RunStats(), 0
        extra: dict[str, tuple[list[Any], Any]] = {}
        for student, endpoint in zip(cfg.students, self.endpoints(), strict=True):
            run = RunStats()
            if student.samples > 1 and cfg.temperature == 0:
                log.warning("student %s: %s samples at temperature 0 repeat one answer; set difficulty.temperature",
                            student.column, student.samples)
            asked = self.requests(endpoint, rows)
            replies = self.call(endpoint, asked, cache, ctx, run)
            transient += count_transient(replies)
            options, answer_idx = column_values(rows, "options"), column_values(rows, "answer_idx")
            samples = [_grade(replies[k * len(rows):(k + 1) * len(rows)], options, answer_idx)
                       for k in range(student.samples)]
            graded = samples[0] if student.samples == 1 else _pass_at_n(samples, student.solved_if)
            if student.samples > 1:
                extra.update(_sample_columns(student.column, samples))
            per_student[student.column] = graded
            stats["students"][student.column] = _student_stats(student, graded, run, replies)
            total.add(run)
        stats.update(llm_stats(total))

        columns: dict[str, tuple[list[Any], Any]] = {}
        for short, graded in per_student.items():
            for (name, feature), key in zip(
                _student_columns(short).items(), ("reply", "answer", "correct", "status"), strict=True
            ):
                columns[name] = (graded[key], feature)
        rows = add_columns(rows, {**columns, **extra})
        reasons, details = [], []
        for i in range(len(rows)):
            correct = {s: (g["correct"][i] if g["status"][i] in ANSWERED else None) for s, g in per_student.items()}
            reason = decide(cfg.drop_rule, correct)
            if reason == "solved_by_student":
                detail = ",".join(s for s, ok in correct.items() if ok)
            elif reason == "student_error":
                detail = "; ".join(f"{s}: {per_student[s]['error'][i]}" for s, ok in correct.items() if ok is None)
            else:
                detail = ""
            reasons.append(reason)
            details.append(detail)
        kept, dropped = split_rows(rows, reasons, details)
        return StageResult(rows=kept, dropped=dropped, stats=stats, transient_failures=transient)

    def merge_stats(self, parts: list[dict[str, Any]], rows: datasets.Dataset) -> dict[str, Any]:
        """Blocks' statistics as one (a distributed run): counts summed, accuracy recomputed from
        the sums rather than added."""
        merged = sum_stats(parts)
        for student in self.config.students:  # settings, not counts: the same in every block
            merged["students"][student.column]["samples"] = student.samples
        for s in merged["students"].values():
            s["accuracy"] = round(s["correct"] / s["answered"], 4) if s["answered"] else None
        return merged


def served_models(replies: Sequence[Reply]) -> dict[str, int]:
    """Replies per model name the server said answered (its `model` field), most first. The
    configured name is only what was asked for: an alias, or the embedded server with another
    GGUF (M1DATA_EMBEDDED_GGUF), answers with another model, and the card must name that one."""
    served = Counter(public_model_name(r.model) for r in replies if r.model)
    return dict(served.most_common())


def _student_stats(student: StudentConfig, graded: dict[str, list[Any]], run: RunStats,
                   replies: Sequence[Reply] = ()) -> dict[str, Any]:
    answered = [c for c, s in zip(graded["correct"], graded["status"], strict=True) if s in ANSWERED]
    return {
        "model": student.model,
        "served_models": served_models(replies),
        "base_url": student.base_url,
        "answered": len(answered),
        "errors": len(graded["status"]) - len(answered),
        "correct": sum(answered),
        "accuracy": round(sum(answered) / len(answered), 4) if answered else None,
        "samples": student.samples,
        "solved_if": student.solved_if,
        **llm_stats(run),
    }


def run_difficulty_file(
    in_path: str | Path | Sequence[str | Path],
    out_path: str | Path,
    students: list[tuple[str, str]] | list[StudentConfig] | None = None,
    *,
    max_tokens: int | None = None,
    drop_rule: DropRule | None = None,
    api_key_env: str | None = None,
    runtime: LLMRuntime | None = None,
    dry_run: bool = False,
    settings: DifficultyConfig | None = None,
) -> dict[str, Any]:
    """The difficulty filter over a file: IN (.parquet/.jsonl rows) -> OUT (kept rows) and
    OUT.dropped.<ext> (dropped rows with reasons). `students` are (model, base_url) pairs or
    StudentConfigs; `api_key_env` applies to pairs (to the settings' students when none are
    given). The settings are `settings` (a build config's: `m1data.jobs.stage_settings("difficulty",
    config)`; None: DifficultyConfig's defaults, the paper's students) with each argument given
    over them. Returns the stage statistics (or, for a dry run, prints the plan and returns {}).
    The cache defaults to OUT.llm_cache.sqlite."""
    base = settings or DifficultyConfig()
    if students is None and api_key_env is not None:  # the key of the students the settings name
        students = [dataclasses.replace(s, api_key_env=api_key_env) for s in base.students]
    configs = None if students is None else [
        s if isinstance(s, StudentConfig) else StudentConfig(s[0], s[1], api_key_env=api_key_env) for s in students
    ]
    config = file_settings(base, out_path, runtime, students=configs, max_tokens=max_tokens, drop_rule=drop_rule)
    return run_llm_on_file(DifficultyFilter(config), in_path, out_path, dry_run)


__all__ = [
    "DifficultyConfig",
    "DifficultyFilter",
    "StudentConfig",
    "decide",
    "default_students",
    "run_difficulty_file",
    "short_name",
    "solved",
    "student_from_spec",
]
