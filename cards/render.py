"""Dataset cards for m23K, m1K and friends, rendered from a run directory and the published rows.

Every number in a card is read from the stage manifests of the run (the funnel, drop reasons,
per-eval-set decontamination counts, stage configs) or counted on the rows being published (split
sizes, the domain table, the length histogram). Nothing is typed in by hand, so a card cannot
drift from the data it describes. The prose around the numbers lives in the Jinja templates next
to this file: `base.md.jinja` holds what every card says, `<template>.md.jinja` what one dataset
adds (the builder table, m1data.builders.BUILDERS, gives each dataset its template and pretty name).

What a card publishes about the build: settings in a compact table (operational ones such as
concurrency, timeouts and cache paths left out), with local paths cut to their file name and local
endpoints named "a local server", because a card is public and those only describe the machine
that built it. Secrets are filtered on what they look like, not on what their key is called
(`token_lengths` is a statistic, not a token): values shaped like API keys and tokens, values of
keys that *are* credential names, and any value of a secret-looking environment variable.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import datasets
from m1data.cards.figures import domain_bars_png, length_histogram_png

from m1data import __version__
from m1data.errors import UserError
from m1data.publishing.cardmeta import (
    IMAGES_DIR,
    Configs,
    data_metadata,
    join_card,
    repo_id_mark,
    size_category,
    split_card,
)
from m1data.reading.registry import SOURCE_REGISTRY
from m1data.redact import redact_config, redact_environment, strip_local_paths, strip_userinfo
from m1data.running.funnel import funnel_markdown
from m1data.running.pipeline import read_manifests
from m1data.schema import SOURCES, column_values

TEMPLATE_DIR = Path(__file__).resolve().parent

# Settings that change how fast or where a stage ran, not which rows it produced (for an LLM stage,
# its whole `runtime:` block).
OPERATIONAL = {"runtime", "progress", "concurrency", "timeout", "retry", "cache_path", "prices_file", "rpm", "tpm",
               "chunk_size", "retry_failed"}
# m1's base model: lengths are counted with its tokenizer when it is installed.
TARGET_TOKENIZER = "Qwen/Qwen2.5-7B-Instruct"
ARXIV_URL = "https://arxiv.org/abs/2504.00869"


@dataclass(frozen=True)
class SourceInfo:
    """What a card must say about one upstream source: who made it, under which terms."""

    key: str
    name: str
    licence: str
    terms: str
    citation: str
    hub_id: str = ""
    url: str = ""
    local_file: bool = False  # the build read a local file, not the Hub copy `hub_id` names


SOURCE_INFO = {  # from the source registry, the one home of these facts
    name: SourceInfo(name, s.title, s.licence, s.terms, s.citation, s.hub_id, s.url)
    for name, s in SOURCE_REGISTRY.items()
}

M1_BIBTEX = """@misc{huang2025m1,
  title         = {m1: Unleash the Potential of Test-Time Scaling for Medical Reasoning with Large Language Models},
  author        = {Huang, Xiaoke and Wu, Juncheng and Liu, Hui and Tang, Xianfeng and Zhou, Yuyin},
  year          = {2025},
  eprint        = {2504.00869},
  archivePrefix = {arXiv},
  primaryClass  = {cs.CL}
}"""

COLUMN_NOTES = {
    "id": "Stable row id, `<source>:<native id>` (MedQA has no native id: a hash of question and options).",
    "source": "Which source the question comes from: medqa, headqa, medmcqa or pubmedqa.",
    "question": "The question stem as the source gives it.",
    "context": "PubMedQA's abstract contexts joined by newlines; empty for the other sources.",
    "options": "Answer options, shuffled per row with a seeded generator when the questions were loaded; the rows kept "
    "after it can still favour a letter (see Answer letters).",
    "answer_idx": "Index of the right option in `options` (0-based).",
    "answer_letter": "Letter of the right option (A, B, ...).",
    "answer_text": "Text of the right option.",
    "prompt": "The question as written into the models' requests (after the instruction shown under Prompts): "
    "context (PubMedQA), question, then one `X. option` line per option.",
    "user_prompt": "The question as written into the models' requests (after the instruction shown under Prompts): "
    "context (PubMedQA), question, then one `X. option` line per option; the user turn of `messages` (named so that "
    "TRL does not read it as a prompt/completion column).",
    "metadata": "The source's raw record as JSON (HEAD-QA's with its exam's fields added), so every row can be "
    "traced back.",
    "reasoning": "The teacher model's thinking for this question.",
    "teacher_reply": "The teacher's final reply after thinking (the part the answer was extracted from).",
    "teacher_answer": "The option letter read from the teacher's reply; equal to `answer_letter` for every kept row.",
    "answer_rule": ("Which rule read the teacher's answer: boxed, statement, answer_line or similarity "
                    "(m1data.stages.answers)."),
    "teacher_model": "The teacher model that wrote `reasoning` and `teacher_reply`.",
    "teacher_served_model": "The model the teacher's server said answered (its reply's `model` field), when it said: "
                            "the release behind the alias in `teacher_model`.",
    "served_model": "The model name the teacher's server reported serving.",
    "finish_reason": "Why the teacher's reply ended (`stop`: it ended by itself, or where a grammar sent with the "
    "request ended it, see Prompts; cut-off replies were dropped).",
    "prompt_tokens": "Tokens of the teacher request's prompt, as the teacher's server counted them.",
    "completion_tokens": "Tokens the teacher generated (reasoning and reply), as its server counted them.",
    "reasoning_tokens": "Tokens of the teacher's reasoning, as its server counted them.",
    "attempt": "Which try at this question wrote the kept trace (1: the first; traces `attempts` allows more).",
    "attempts_used": "How many tries the teacher was given at this question.",
    "domain": "MeSH qualifier (medical subject) the question was classified into.",
    "domain_code": "Two-digit code of that qualifier in the classification rubric.",
    "messages": "The SFT conversation: the user turn (`user_prompt`) and the assistant turn (think, then answer). "
    "TRL trains on it as conversational data.",
    "text": "`messages` rendered with the Qwen2.5 chat template, for trainers that take plain text.",
    "completion": "The assistant turn (TRL's conversational prompt/completion shape).",
}
_STUDENT_NOTES = {
    "reply": "Student model `{name}`'s reply to the question (the difficulty filter).",
    "answer": "The option letter read from student `{name}`'s reply (null when none could be read).",
    "correct": "Whether student `{name}` answered right; kept rows were missed by the students.",
    "status": "How student `{name}`'s request ended: ok, length (cut off at the token limit), filtered (stopped by "
              "the server's content filter) or error.",
    "verdicts": "Whether each of student `{name}`'s samples was right (pass@n; null: that call failed).",
    "answers": "The option letter read from each of student `{name}`'s samples (pass@n).",
}


def _source_note(present: list[str]) -> str:
    """The `source` column's note for this build's rows: the sources they name, not m1's four."""
    named = f"{', '.join(present[:-1])} or {present[-1]}" if len(present) > 1 else present[0]
    return f"Which source the question comes from: {named}."


def column_note(name: str, features: Any = None) -> str:
    """What a published column means; every column a build writes has one."""
    if name == "prompt" and features is not None and not isinstance(features, datasets.Value):
        return "The user turn (TRL's conversational prompt/completion shape)."
    if name in COLUMN_NOTES:
        return COLUMN_NOTES[name]
    student = re.fullmatch(r"student_(.+)_(reply|answer|correct|status|verdicts|answers)", name)
    if student:
        return _STUDENT_NOTES[student.group(2)].format(name=student.group(1))
    return "Carried through the build from its input; not one of the columns m1data writes."


# ---------------------------------------------------------------------------------------------
# What may be published about the machine that built it


_LOCAL_HOSTS = re.compile(r"^(localhost|127\.|0\.0\.0\.0|10\.|192\.168\.|172\.(1[6-9]|2\d|3[01])\.|\[?::1\]?$)")


# Keys whose value is a file or folder the build read (a source's or eval set's `path`, a resampled
# m23K's `from`, a trained tagger's `model_path`), or a Hub repo id in its place.
_PATH_KEYS = re.compile(r"^(path|from|tagger_model|.*_path|.*_file)$")
# What a data or model file ends in: such a value is a file, even where no file of that name is here.
_FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet", ".arrow", ".txt", ".gguf", ".joblib", ".pkl")


def public_value(value: Any, key: str = "") -> Any:
    """A config value as a card may show it: local endpoints become "a local server", absolute
    paths their file name, and so does a relative path under a key naming a file (`_PATH_KEYS`):
    the card says local paths are cut to their file name, yet `path: data/myqs.jsonl` or
    `--from-m23k runs/m1k/08_format/rows.parquet` was shown as given (audit). A Hub repo id there
    (`my-org/m23K`) stays. Everything else unchanged (after `redact_config`)."""
    if isinstance(value, dict):
        return {k: public_value(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [public_value(v, key) for v in value]
    if not isinstance(value, str):
        return value
    if re.match(r"^[a-z][a-z0-9+.-]*://", value, re.IGNORECASE):
        host = urlsplit(value).hostname or ""
        local = _LOCAL_HOSTS.match(host) or "." not in host or host.endswith((".local", ".internal", ".lan"))
        return "a local server" if local else value
    if value.startswith(("/", "~")) or re.match(r"^[A-Za-z]:[\\/]", value):
        return Path(value).name
    if _PATH_KEYS.match(key) and _relative_local_path(value):
        return Path(value).name
    return value


def _relative_local_path(value: str) -> bool:
    """Whether a relative path-like value names a local file or folder rather than a Hub repo id:
    it exists here, ends like a data file, or cannot be a repo id (`a/b/c`, `./x`)."""
    if "/" not in value and "\\" not in value:
        return False  # a bare name is already a file name (or an alias)
    return Path(value).exists() or value.lower().endswith(_FILE_SUFFIXES) or not _is_repo_id(value)


def _number(value: float, key: str = "") -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if "cost" in key.lower() or key.lower().endswith("usd"):
        return f"${value:,.2f}" if abs(value) >= 1 else f"${value:.4f}"
    return f"{value:,.4g}" if abs(value) < 1e6 else f"{value:,.0f}"


def _scalar(value: Any, key: str = "") -> str:
    if isinstance(value, (int, float)):
        return _number(value, key)
    return str(value)


def _compact(value: Any, key: str = "", skip: frozenset[str] = frozenset()) -> str:
    """A config or stats value in one line: ``k=v, k=v``; nested values in parentheses."""
    if isinstance(value, dict):
        parts = []
        for k, v in value.items():
            if k in skip or v is None or v == {} or v == []:
                continue
            inner = _compact(v, str(k), skip)
            parts.append(f"{k}=({inner})" if isinstance(v, (dict, list)) and "=" in inner else f"{k}={inner}")
        return ", ".join(parts)
    if isinstance(value, list):
        items = [_compact(v, key, skip) for v in value]
        return "; ".join(items) if any("=" in i for i in items) else ", ".join(items)
    return _scalar(value, key)


def _prompts(stage: str, config: Any, path: str = "") -> list[tuple[str, str, str]]:
    """(stage, key, text) of the long texts in a config (prompt templates): shown in full apart."""
    found: list[tuple[str, str, str]] = []
    if isinstance(config, dict):
        for k, v in config.items():
            found += _prompts(stage, v, f"{path}.{k}" if path else str(k))
    elif isinstance(config, list):
        for i, v in enumerate(config):
            found += _prompts(stage, v, f"{path}[{i}]")
    elif isinstance(config, str) and (len(config) > 80 or "\n" in config):
        found.append((stage, path, config))
    return found


def build_prompts(manifests: list[dict[str, Any]], upstream: Provenance | None = None) -> list[tuple[str, str, str]]:
    """Every prompt the card shows: the build's rows were drawn from first (carried in its card's
    provenance: a resampled m1K lost them), then what this build's requests held and its configs'
    long texts."""
    own = _request_prompts(manifests) + [p for m in manifests for p in _prompts(m["stage"], _public_config(m))]
    return (upstream.prompts if upstream else []) + own


def _request_prompts(manifests: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(stage, what, text) of what every student and teacher request held besides the config's
    texts: the m1 instruction before `user_prompt` (m1data.llm.stages.boxed_prompt), and, when the
    embedded server answered, the system message its chat template adds. An audit found the card
    calling `user_prompt` "the question as the models saw it" with neither shown."""
    from m1data.llm.local_server import thinking_template
    from m1data.llm.stages import boxed_prompt

    found = []
    embedded = {m["stage"] for m in manifests if _embedded_models([m])}
    for m in manifests:
        if m["stage"] not in ("difficulty", "traces"):
            continue
        found.append((m["stage"], "each request: one user message", boxed_prompt("{user_prompt}")))
        if m["stage"] in embedded:
            thinking = bool(((m.get("config") or {}).get("extra_params") or {}).get("chat_template_kwargs", {})
                            .get("enable_thinking"))
            found.append((m["stage"], "system message the embedded server's chat template adds",
                          _template_system_message(thinking_template(), thinking)))
    return found


# Request parameters that make a server write only what they allow (llama.cpp's grammar, vLLM's guided decoding).
_CONSTRAINING_PARAMS = ("grammar", "json_schema", "guided_grammar", "guided_regex", "guided_choice", "guided_json",
                        "response_format", "structured_outputs")


def _constrained_teacher(manifests: list[dict[str, Any]], upstream: Provenance | None = None) -> list[str]:
    """The `extra_params` keys of a traces stage that constrained what its teacher could write, here
    or in the build these rows were drawn from: its reasoning and answer are then the constraint's
    shape (the embedded build's grammar caps the thinking at 80 characters and forces a boxed
    letter), which the limitations must say."""
    found = set(upstream.constrained if upstream else [])
    for m in manifests:
        if m["stage"] == "traces":
            params = (m.get("config") or {}).get("extra_params") or {}
            found.update(k for k, v in params.items() if k in _CONSTRAINING_PARAMS and v != {"type": "text"})
    return sorted(found)


def _students_cut_off(rows: datasets.Dataset, manifests: list[dict[str, Any]],
                      upstream: Provenance | None = None) -> dict[str, Any] | None:
    """How many published rows no student finished a reply to (each one's `status` is `length`,
    or an error): those rows are "hard" because of the token limit, not because a student answered
    them wrong. A row another student answered wrong is hard in its own right, and not counted.
    The limit is the difficulty stage's, here or in the build the rows were drawn from (`upstream`:
    a resampled m1K's card named none, as its own build has no difficulty stage)."""
    columns = [c for c in rows.column_names if re.fullmatch(r"student_.+_status", c)]
    if not columns:
        return None
    cut = sum("length" in statuses and "ok" not in statuses
              for statuses in zip(*(column_values(rows, c) for c in columns)))
    limits = _student_limits(manifests, upstream)
    return {"rows": cut, "of": len(rows), "max_tokens": ", ".join(f"{n:,}" for n in limits),
            "upstream": not _student_limits(manifests)} if cut else None


def _student_limits(manifests: list[dict[str, Any]], upstream: Provenance | None = None) -> list[int]:
    """The `max_tokens` each difficulty stage gave its students, as its manifest recorded it, and
    those of the build the rows were drawn from (`upstream`)."""
    limits = {(m.get("config") or {}).get("max_tokens") for m in manifests if m["stage"] == "difficulty"}
    return sorted({int(n) for n in limits if n is not None} | set(upstream.student_max_tokens if upstream else []))


def _shipped_model(models: list[dict[str, str]]) -> dict[str, str] | None:
    """Who made the teacher and under which licence, when the teacher (here or upstream) was the
    very model file m1data's model package ships: the card named it by its file name alone and its
    licence not at all. Not for students alone, nor for another file (M1DATA_EMBEDDED_GGUF)."""
    from m1data.llm.local_server import SHIPPED_MODEL

    return SHIPPED_MODEL if _role_models(models, "teacher") == {SHIPPED_MODEL["file"]} else None


def _template_system_message(template: Path, thinking: bool) -> str:
    """The system message m1data's embedded chat template writes (the first for a thinking
    request, the second otherwise), read from the template itself so the card cannot drift."""
    messages = re.findall(r"<\|im_start\|>system\\n(.*?)<\|im_end\|>", template.read_text(encoding="utf-8"))
    return messages[0 if thinking else -1] if messages else "(see the chat template)"


def _without_long_texts(config: Any) -> Any:
    if isinstance(config, dict):
        return {k: _without_long_texts(v) for k, v in config.items()}
    if isinstance(config, list):
        return [_without_long_texts(v) for v in config]
    if isinstance(config, str) and (len(config) > 80 or "\n" in config):
        return "(see Prompts)"
    return config


# ---------------------------------------------------------------------------------------------
# Facts from the manifests


@dataclass
class StageView:
    """One stage as the card shows it: a table row, and its statistics in one line. Not its wall
    time: it changes from one run to the next, so a rebuild of the same rows would publish a new
    README for nothing (the manifest keeps it)."""

    index: int
    name: str
    rows_in: int
    rows_out: int
    m1data_version: str
    settings: str
    stats: str


def _public_config(manifest: dict[str, Any]) -> Any:
    return public_value(redact_config(manifest.get("config") or {}))


def _stage_views(manifests: list[dict[str, Any]]) -> list[StageView]:
    views = []
    shown_elsewhere = frozenset({"by_eval_set", "ngram_check", "domains"})
    for m in manifests:
        config = _without_long_texts(_public_config(m))
        stats = public_value(redact_config(m.get("stats") or {}))
        views.append(
            StageView(
                index=m["index"],
                name=m["stage"],
                rows_in=m["rows_in"],
                rows_out=m["rows_out"],
                m1data_version=m.get("m1data_version", "unknown"),
                settings=_compact(config, skip=frozenset(OPERATIONAL)) or "(none)",
                stats=_compact(stats, skip=shown_elsewhere),
            )
        )
    return views


# Which part a model played, by the stage that names it.
ROLES = {"difficulty": "student", "traces": "teacher", "tag": "domain tagger"}


def _models(manifests: list[dict[str, Any]], origin: str = "") -> list[dict[str, str]]:
    """{role, model, stage, where} for every config value under a key naming a model."""
    found: list[dict[str, str]] = []

    def walk(stage: str, path: str, value: Any, where: str) -> None:
        if isinstance(value, dict):
            url = next((v for k, v in value.items() if k in ("base_url", "endpoint") and isinstance(v, str)), where)
            for k, v in value.items():
                walk(stage, f"{path}.{k}" if path else str(k), v, url)
        elif isinstance(value, list):
            for v in value:
                walk(stage, path, v, where)
        elif path.rsplit(".", 1)[-1].lower() in ("model", "teacher_model", "student_model") and value:
            role = ROLES.get(stage, stage)
            found.append({"role": role, "model": str(value), "stage": origin + stage, "where": str(where or "")})

    for m in manifests:
        walk(m["stage"], "", _public_config(m), "")
        tagger = (m.get("stats") or {}).get("tagger_model")  # an offline tagger names its model in its stats
        if tagger:
            found.append({"role": ROLES.get(m["stage"], m["stage"]), "model": str(public_value(tagger, "tagger_model")),
                          "stage": origin + m["stage"], "where": "in-process (no server)"})
        stats = m.get("stats") or {}
        students = stats.get("students") if isinstance(stats.get("students"), dict) else {}
        replies: dict[str, int] = {}  # two students whose servers report one name: one row, their sum
        for served_by in [stats, *(s for s in students.values() if isinstance(s, dict))]:
            for served, n in (served_by.get("served_models") or {}).items():  # what the server said answered
                replies[str(served)] = replies.get(str(served), 0) + n
        for served, n in replies.items():
            role = f"{ROLES.get(m['stage'], m['stage'])} (as the server reported it, {n:,} replies)"
            found.append({"role": role, "model": served, "stage": origin + m["stage"], "where": ""})
    return found


def _role_models(models: list[dict[str, str]], role: str) -> set[str]:
    """The models that played `role`, by the names their servers reported where they did, else by
    the configured names."""
    served = {m["model"] for m in models if m["role"].startswith(f"{role} (as the server reported it")}
    return served or {m["model"] for m in models if m["role"] == role}


def _teacher_students(models: list[dict[str, str]]) -> list[str]:
    """Models that were both the teacher and a student (the embedded build serves one model for
    both): the summary then cannot call the teacher stronger."""
    return sorted(_role_models(models, "teacher") & _role_models(models, "student"))


def _zero_shot_tagger(models: list[dict[str, str]]) -> str | None:
    """The embedding model of m1data's offline zero-shot tagger, when it chose the domains (here or
    upstream): the card said only "assigned by a model", as of the paper's LLM with a rubric,
    though this tagger is a nearest-scope-note match its own module calls weak."""
    from m1data.stages.mesh_offline import EMBEDDING_MODEL

    return EMBEDDING_MODEL if any(m["role"] == "domain tagger" and m["model"] == EMBEDDING_MODEL
                                  for m in models) else None


def _embedded_models(manifests: list[dict[str, Any]], upstream: Provenance | None = None) -> list[str]:
    """Models a stage called as `base_url: embedded` (the default demonstration build), here or
    in the build this one was drawn from: the card then says, at the top, that this is not the
    paper's data and which model wrote it."""
    found: list[str] = list(upstream.embedded_models) if upstream else []

    def walk(value: Any, key: str, into: list[str]) -> None:
        if isinstance(value, dict):
            if str(value.get("base_url", "")).strip().lower() == "embedded" and value.get(key):
                names = value[key]
                into.extend(str(n) for n in (names if isinstance(names, dict) else [names]))
            for v in value.values():
                walk(v, key, into)
        elif isinstance(value, list):
            for v in value:
                walk(v, key, into)

    for m in manifests:
        # what the embedded server said answered (its GGUF file, which M1DATA_EMBEDDED_GGUF may
        # have swapped) over the name the config asked for, which the server does not check
        served: list[str] = []
        walk(m.get("stats") or {}, "served_models", served)
        asked: list[str] = []
        walk(m.get("config") or {}, "model", asked)
        found.extend(served if served and asked else asked)
    return sorted(set(found))


@dataclass
class Pivot:
    """A count table: one row per label, one column per key, with totals."""

    columns: list[str]
    rows: list[tuple[str, list[int], int]]
    totals: list[int] = field(default_factory=list)
    grand_total: int = 0


def _pivot(counts: Mapping[str, Mapping[str, int]], columns: list[str], sort_by_total: bool) -> Pivot:
    rows = [(label, [per.get(c, 0) for c in columns], sum(per.get(c, 0) for c in columns)) for label, per in counts.items()]
    if sort_by_total:
        rows.sort(key=lambda r: (-r[2], r[0]))
    totals = [sum(r[1][i] for r in rows) for i in range(len(columns))]
    return Pivot(columns=columns, rows=rows, totals=totals, grand_total=sum(totals))


def _decontamination(manifests: list[dict[str, Any]]) -> Pivot | None:
    """Rows removed per eval set (rows) and stage (columns), from stats.by_eval_set."""
    per_set: dict[str, dict[str, int]] = {}
    stages: list[str] = []
    for m in manifests:
        hits = (m.get("stats") or {}).get("by_eval_set") or {}
        if hits:
            stages.append(m["stage"])
        for eval_set, n in hits.items():
            per_set.setdefault(eval_set, {})[m["stage"]] = int(n)
    if not per_set:
        return None
    return _pivot(per_set, stages, sort_by_total=False)


def _eval_sets_checked(manifests: list[dict[str, Any]]) -> list[str]:
    """Every eval set a decontamination stage compared against, hits or not."""
    names: dict[str, None] = {}
    for m in manifests:
        for name in (m.get("stats") or {}).get("eval_items") or {}:
            names[name] = None
    return list(names)


def _ngram_checks(manifests: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """Each stage's n-gram report with the fuzzy ratio that stage removed from (its config's
    `threshold`): the card's prose said "word 8-grams" and "a ratio of 95" of every build, whatever
    `ngram` and `threshold` it ran with (audit)."""
    checks = []
    for m in manifests:
        check = (m.get("stats") or {}).get("ngram_check")
        if check:
            threshold = (m.get("config") or {}).get("threshold")
            checks.append((m["stage"], {**check, **({"fuzzy_threshold": _number(threshold)} if threshold else {})}))
    return checks


def _fuzzy_thresholds(manifests: list[dict[str, Any]], upstream: Provenance | None) -> list[str]:
    """The fuzzy ratios the decontamination stages (here and upstream) removed from. Why: the
    card said "the threshold in the stage settings", and a resampled card's stage table has no
    decontamination stage to read it from."""
    here = [(m.get("config") or {}).get("threshold") for m in manifests if (m.get("stats") or {}).get("eval_items")]
    there = [check.get("fuzzy_threshold") for _, check in (upstream.ngram_checks if upstream else [])]
    there += upstream.fuzzy_thresholds if upstream else []  # carried on its own: a build with `ngram: 0` has no check
    return sorted({_number(t) if isinstance(t, (int, float)) else str(t) for t in here + there if t is not None})


# What the card's n-gram table shows of a check (`_ngram_checks`): all a card's provenance keeps of it.
NGRAM_SHOWN = ("n", "common_ngram_rows", "min_share", "fuzzy_threshold", "flagged", "both", "ngram_only", "fuzzy_only")


def _kept_ngram_checks(kept: Any) -> list[tuple[str, dict[str, Any]]]:
    """The n-gram checks a card's provenance holds, [stage, check] each; one without the table's
    counts (an edited card) is left out."""
    return [(str(entry[0]), entry[1]) for entry in kept if isinstance(entry, list) and len(entry) == 2
            and isinstance(entry[1], dict) and {"n", "flagged", "both", "ngram_only", "fuzzy_only"} <= set(entry[1])]


# ---------------------------------------------------------------------------------------------
# Provenance of a re-sampled build (m1K drawn from an m23K that already existed)


@dataclass
class Provenance:
    """What the card of a build drawn from an existing dataset carries over from it."""

    name: str
    models: list[dict[str, str]]
    decontamination: Pivot | None
    eval_sets: list[str]
    ngram_checks: list[tuple[str, dict[str, Any]]]
    found: bool
    sample: SampleView | None = None  # the upstream's rows came from the embedded sample
    embedded_models: list[str] = field(default_factory=list)  # models its demonstration build ran
    sources: dict[str, SourceInfo] = field(default_factory=dict)  # sources its build described otherwise than m1's table
    prompts: list[tuple[str, str, str]] = field(default_factory=list)  # what its requests held (`build_prompts`)
    constrained: list[str] = field(default_factory=list)  # what constrained its teacher (`_constrained_teacher`)
    student_max_tokens: list[int] = field(default_factory=list)  # its students' token limits (`_student_limits`)
    fuzzy_thresholds: list[str] = field(default_factory=list)  # the ratios it removed from (`_fuzzy_thresholds`)


PROVENANCE_KEY = "m1data_provenance"


def provenance_metadata(manifests: list[dict[str, Any]], upstream: Provenance | None = None) -> dict[str, Any]:
    """The machine-readable provenance a card keeps in its YAML, so a build drawn from it can
    carry the teacher, students and decontamination forward, what the build said of its sources
    where that differs from m1's table (a local file, a configured source's licence), and, for a
    demonstration build, that its rows are the embedded sample's and which embedded model wrote them."""
    models = (upstream.models if upstream else []) + _models(manifests)
    decon = _decontamination(manifests)
    hits = {label: total for label, _, total in decon.rows} if decon else {}
    if upstream and upstream.decontamination:
        for label, _, total in upstream.decontamination.rows:
            hits[label] = hits.get(label, 0) + total
    provenance = {
        "models": [{k: v for k, v in m.items() if k != "where"} for m in models],
        "decontamination": hits,
        "eval_sets": sorted({*(upstream.eval_sets if upstream else []), *_eval_sets_checked(manifests)}),
        "stages": [m["stage"] for m in manifests],
    }
    sample = sample_build(manifests, upstream)
    if sample:
        provenance["sample"] = {"sources": sample.sources, "eval_sets": sample.eval_sets}
    embedded = _embedded_models(manifests, upstream)
    if embedded:
        provenance["embedded_models"] = embedded
    synthetic = sample.sources if sample else []  # described again from `sample` by whoever reads this
    described = {key: info for key, info in source_infos(manifests, upstream).items()
                 if info != SOURCE_INFO.get(key) and key not in synthetic}
    if described:  # a local file, a mapped source's licence: what a build drawn from this one must say too
        provenance["sources"] = {key: _differences(info) for key, info in described.items()}
    if upstream and not upstream.found and not sample:  # a build drawn from this one must not call it known
        provenance["unknown_upstream"] = upstream.name
    prompts = build_prompts(manifests, upstream)
    if prompts:
        provenance["prompts"] = [list(p) for p in prompts]
    constrained = _constrained_teacher(manifests, upstream)
    if constrained:
        provenance["constrained_teacher"] = constrained
    ngram = (upstream.ngram_checks if upstream else []) + _ngram_checks(manifests)
    if ngram:  # a build drawn from this card's folder shows them as one drawn from its run folder does
        provenance["ngram_checks"] = [[stage, {k: check[k] for k in NGRAM_SHOWN if k in check}]
                                      for stage, check in ngram]
    limits = _student_limits(manifests, upstream)
    if limits:
        provenance["student_max_tokens"] = limits
    thresholds = _fuzzy_thresholds(manifests, upstream)
    if thresholds:  # the ratio the card names, for a build drawn from this card's folder
        provenance["fuzzy_thresholds"] = thresholds
    return provenance


def _upstream(manifests: list[dict[str, Any]]) -> Provenance | None:
    """The source dataset of a `load_dataset` first stage: its card's provenance (a local folder's,
    or a Hub repo's README.md), or the manifests of the run it was written by; `found=False`
    when none can be read here, and the card then says its provenance is unknown."""
    first = manifests[0] if manifests else None
    if not first or first["stage"] != "load_dataset":
        return None
    where = str((first.get("config") or {}).get("path") or (first.get("stats") or {}).get("from") or "")
    path = Path(where)
    hub = not path.exists() and _is_repo_id(where)  # datasets reads an existing folder before the Hub
    name = where if hub else _local_name(path)
    if hub:
        text = _hub_card(where)
    else:
        text = (path / "README.md").read_text(encoding="utf-8") if (path / "README.md").is_file() else None
    if text is not None:
        meta, _ = split_card(text)
        kept = meta.get(PROVENANCE_KEY) or {}
        if kept:
            hits = kept.get("decontamination") or {}
            pivot = _pivot({k: {"upstream": int(v)} for k, v in hits.items()}, ["upstream"], False) if hits else None
            models = [{**m, "stage": f"upstream: {m.get('stage', '')}", "where": ""} for m in kept.get("models") or []]
            used = kept.get("sample") or {}
            sample = SampleView(list(used.get("sources") or []), list(used.get("eval_sets") or [])) if used else None
            known = not kept.get("unknown_upstream")  # drawn in turn from a dataset of unknown provenance
            return Provenance(name, models, pivot, list(kept.get("eval_sets") or []),
                              _kept_ngram_checks(kept.get("ngram_checks") or []), known, sample,
                              list(kept.get("embedded_models") or []), _kept_sources(kept.get("sources")),
                              [_upstream_prompt(*p) for p in kept.get("prompts") or [] if len(p) == 3],
                              [str(k) for k in kept.get("constrained_teacher") or []],
                              [int(n) for n in kept.get("student_max_tokens") or []],
                              [str(t) for t in kept.get("fuzzy_thresholds") or []])
    if path.is_file() and (path.parent / "manifest.json").is_file():
        upto = read_manifests(path.parent.parent, upto=path.parent.name)
        if upto:
            return Provenance(
                name, _models(upto, origin="upstream: "), _decontamination(upto), _eval_sets_checked(upto),
                _ngram_checks(upto), True, sample_build(upto), _embedded_models(upto), source_infos(upto),
                [_upstream_prompt(*p) for p in build_prompts(upto)], _constrained_teacher(upto),
                _student_limits(upto), _fuzzy_thresholds(upto, None),
            )
    return Provenance(name, [], None, [], [], False)


def _upstream_prompt(stage: str, key: str, text: str) -> tuple[str, str, str]:
    """A prompt of the build these rows were drawn from, its stage named as the models table names it."""
    stage = str(stage)
    return (stage if stage.startswith("upstream: ") else f"upstream: {stage}", str(key), str(text))


def _differences(info: SourceInfo) -> dict[str, Any]:
    """The fields of `info` that m1's table says otherwise (all of them for a source it lacks), so
    a card's header does not repeat a known source's terms and citation."""
    known = SOURCE_INFO.get(info.key)
    return {k: v for k, v in asdict(info).items() if k != "key" and (known is None or getattr(known, k) != v)}


def _kept_sources(kept: Any) -> dict[str, SourceInfo]:
    """The source descriptions a card's provenance holds; a field a card of an older m1data lacks
    (or one edited by hand) falls back to the built-in table."""
    names = {f.name for f in fields(SourceInfo)} - {"key"}
    infos = {}
    for key, spec in (kept or {}).items() if isinstance(kept, dict) else ():
        if isinstance(spec, dict):
            known = SOURCE_INFO.get(key) or _unknown_source(key)
            infos[key] = replace(known, **{k: v for k, v in spec.items() if k in names})
    return infos


def _local_name(path: Path) -> str:
    """How the card names a local dataset: a folder by its name, a run's file by its stage
    folder and file name; never the path as given, which may be relative (meaningless
    elsewhere) or absolute (the builder's machine)."""
    path = path.resolve() if path.exists() else path
    if path.is_file():
        return f"{path.parent.name}/{path.name}" if path.parent.name else path.name
    return path.name or "a local folder"


def _is_repo_id(where: str) -> bool:
    """Whether `where` reads as a Hub repo id (``owner/name``) rather than a local path."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not where or where.startswith((".", "/", "~")) or "\\" in where or where.count("/") > 1:
        return False
    try:
        validate_repo_id(where)
    except HFValidationError:
        return False
    return True


def _hub_card(repo_id: str) -> str | None:
    """The README.md of a Hub dataset repo: downloaded, or from the local Hub cache when offline
    (loading the dataset fetched it there); None when neither has it."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        return Path(hf_hub_download(repo_id, "README.md", repo_type="dataset")).read_text(encoding="utf-8")
    # the Hub's errors (not found, offline and not cached) are OSErrors, but for EntryNotFoundError
    except (OSError, ValueError, EntryNotFoundError):
        return None


# ---------------------------------------------------------------------------------------------
# Facts from the rows


def _all_rows(splits: Mapping[str, datasets.Dataset]) -> datasets.Dataset:
    parts = list(splits.values())
    return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)


def _unknown_source(key: str) -> SourceInfo:
    """A source in the rows that no table or config describes (rows from an older or foreign
    build): said plainly rather than left out."""
    unknown = "not recorded by the build"
    return SourceInfo(key, key, unknown, unknown, unknown)


def _source_columns(seen: set[str]) -> list[str]:
    return [s for s in SOURCES if s in seen] + sorted(seen - set(SOURCES))


@dataclass
class DomainView:
    config: str
    table: Pivot
    image: str


def _domains(
    pretty_name: str, dataset_name: str, configs: Configs, images_dir: str
) -> tuple[list[DomainView], dict[str, bytes]]:
    """Per config with a `domain` column: domain x source counts (the paper's Table 4 shape) and
    the same as a bar chart."""
    views, images = [], {}
    for name, splits in configs.items():
        rows = _all_rows(splits)
        if "domain" not in rows.column_names or "source" not in rows.column_names:
            continue
        counts: dict[str, Counter[str]] = {}
        for domain, source in zip(column_values(rows, "domain"), column_values(rows, "source")):
            counts.setdefault(domain or "(unclassified)", Counter())[source] += 1
        columns = _source_columns({s for c in counts.values() for s in c})
        table = _pivot(counts, columns, sort_by_total=True)
        image_name = f"{_slug(dataset_name)}-{_slug(name)}-domains.png"
        png = domain_bars_png(
            [label for label, _, _ in table.rows], columns, [cells for _, cells, _ in table.rows],
            f"{pretty_name}: rows per domain and source (n = {table.grand_total:,})",
        )
        if png is not None:
            images[image_name] = png
        views.append(DomainView(name, table, f"{images_dir}/{image_name}" if png is not None else ""))
    return views, images


@dataclass
class LengthView:
    config: str
    column: str
    unit: str
    image: str
    count: int
    median: float
    p90: float
    max: int


def _tokenizer(tokenizer: Any | None) -> Any | None:
    """`tokenizer` itself, or m1's target tokenizer when it is installed locally (never downloaded).
    The local cache is looked up first: importing transformers costs seconds, which a card of a
    machine without the tokenizer should not pay."""
    if tokenizer is not None and not isinstance(tokenizer, str):
        return tokenizer
    name = tokenizer or TARGET_TOKENIZER
    try:
        if not Path(name).is_dir():
            from huggingface_hub import try_to_load_from_cache

            if not isinstance(try_to_load_from_cache(name, "tokenizer_config.json"), str):
                return None
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(name, local_files_only=True)
    except (ImportError, OSError, ValueError):  # not installed or not cached: count words instead
        return None


def _lengths(texts: list[str], tokenizer: Any | None, wanted: str) -> tuple[list[int], str]:
    if tokenizer is not None:
        ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
        name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
        return [len(x) for x in ids], f"tokens ({name} tokenizer)"
    unit = f"words (whitespace-split; the {wanted} tokenizer was not available where this card was written)"
    return [len(t.split()) for t in texts], unit


def _length_column(rows: datasets.Dataset) -> str | None:
    for column in ("reasoning", "text", "user_prompt", "prompt"):
        if isinstance(rows.features.get(column), datasets.Value):
            return column
    return None


def _length_views(
    pretty_name: str, dataset_name: str, configs: Configs, images_dir: str, tokenizer: Any | None
) -> tuple[list[LengthView], dict[str, bytes]]:
    import numpy as np

    views, images = [], {}
    counter = _tokenizer(tokenizer)
    wanted = tokenizer if isinstance(tokenizer, str) else TARGET_TOKENIZER
    for name, splits in configs.items():
        rows = _all_rows(splits)
        column = _length_column(rows)
        if column is None or len(rows) == 0:
            continue
        lengths, unit = _lengths([t or "" for t in column_values(rows, column)], counter, wanted)
        image_name = f"{_slug(dataset_name)}-{_slug(name)}-length.png"
        what = "reasoning" if column == "reasoning" else f"`{column}`"
        png = length_histogram_png(
            lengths, f"{pretty_name}: length of the {what.strip('`')} (n = {len(lengths):,})", unit.split(" (")[0]
        )
        if png is not None:
            images[image_name] = png
        views.append(
            LengthView(
                config=name,
                column=column,
                unit=unit,
                image=f"{images_dir}/{image_name}" if png is not None else "",
                count=len(lengths),
                median=float(np.median(lengths)),
                p90=float(np.percentile(lengths, 90)),
                max=int(max(lengths)),
            )
        )
    return views, images


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-").lower() or "dataset"


def _shorten(value: Any, limit: int = 240) -> Any:
    if isinstance(value, str) and len(value) > limit:
        return value[:limit] + f" ... [{len(value) - limit:,} more characters]"
    if isinstance(value, list):
        return [_shorten(v, limit) for v in value]
    if isinstance(value, dict):
        return {k: _shorten(v, limit) for k, v in value.items()}
    return value


def example_row(rows: datasets.Dataset) -> str:
    """The first row as indented JSON, long texts shortened (the card says so)."""
    if len(rows) == 0:
        return "{}"
    return json.dumps(_shorten(rows[0]), indent=2, ensure_ascii=False, default=str)


# ---------------------------------------------------------------------------------------------
# A build from m1data's embedded sample

# The sample ships inside m1data (m1data/data/sample, see its README) and is under m1data's licence.
SAMPLE_LICENCE = "Apache-2.0"
SAMPLE_LICENCE_ID = "apache-2.0"  # the Hub's identifier for it
SAMPLE_DIR_MARK = "m1data/data/sample/"


@dataclass
class SampleView:
    """Which parts of a build came from the embedded sample: the card says so at its top."""

    sources: list[str]
    eval_sets: list[str]
    licence: str = SAMPLE_LICENCE

    @property
    def formats(self) -> list[str]:
        """The datasets whose formats the sample's sources imitate (MedQA, HEAD-QA, ...)."""
        return [_short_name(key) for key in self.sources]


def _short_name(key: str) -> str:
    known = SOURCE_INFO.get(key)
    return known.name.split(" (")[0] if known else key


def _in_sample(path: Any) -> bool:
    """Whether a recorded path is a file of the embedded sample: under this installation's sample
    folder, or (a run made elsewhere) under a folder named like it."""
    if not isinstance(path, str) or not path:
        return False
    if SAMPLE_DIR_MARK in path.replace("\\", "/"):
        return True
    from m1data.stages.loading import sample_dir

    try:
        return Path(path).resolve().is_relative_to(sample_dir().resolve())
    except (OSError, ValueError):
        return False


def sample_build(manifests: list[dict[str, Any]], upstream: Provenance | None = None) -> SampleView | None:
    """The sources a load stage read, and the eval sets a decontamination stage compared against,
    from the embedded sample's files, here or in the build this one was drawn from (an m1K
    re-sampled from a demonstration m23K holds the sample's rows too); None when neither used any."""
    kept = upstream.sample if upstream and upstream.sample else None
    sources: dict[str, None] = dict.fromkeys(kept.sources if kept else [])
    evals: dict[str, None] = dict.fromkeys(kept.eval_sets if kept else [])
    for m in manifests:
        config = m.get("config") or {}
        for name, spec in (config.get("sources") or {}).items() if isinstance(config.get("sources"), dict) else ():
            if isinstance(spec, dict) and _in_sample(spec.get("path")):
                sources[str(name)] = None
        for entry in config.get("evals") or []:
            if isinstance(entry, dict) and _in_sample(entry.get("path")):
                evals[str(entry.get("name") or Path(str(entry["path"])).stem)] = None
    if not sources and not evals:
        return None
    return SampleView(list(sources), list(evals))


def _sample_info(key: str, known: SourceInfo | None) -> SourceInfo:
    """What the card says about a source whose rows came from the embedded sample: synthetic rows in
    that source's format, under m1data's licence; not the upstream dataset, its terms or citation."""
    like = _short_name(key)
    return SourceInfo(
        key,
        f"m1data sample ({like} format, synthetic)",
        SAMPLE_LICENCE,
        f"{SAMPLE_LICENCE}, m1data's own licence: questions written for m1data by scripts/make_sample.py (in the m1data repository, not the package) from small "
        f"fact tables and templates in {like}'s format; no row is copied from {like} or any other dataset. "
        "For demonstrations and tests only.",
        "not a published dataset: m1data's embedded sample (m1data/data/sample/README.md in the m1data package).",
    )


# ---------------------------------------------------------------------------------------------
# Answer letters


# A letter on fewer rows than this is not called over-represented, whatever its share: with a
# fair share of 2% (the fifth option, which only HEAD-QA has), one row of 20 would be "twice" it.
MIN_SKEWED_ROWS = 5


@dataclass
class LetterView:
    """How often each letter is the right answer, against its fair share under a uniform shuffle."""

    config: str
    total: int
    rows: list[tuple[str, int, float, float]]  # letter, rows, share, fair share
    skewed: list[tuple[str, int, float, float]]


def answer_letters(config: str, rows: datasets.Dataset) -> LetterView | None:
    """Per letter: the rows keyed with it, their share, and its fair share (the mean over rows of
    1/number of options where the row has that letter, else 0); `skewed` holds the letters above
    twice their fair share (and on at least `MIN_SKEWED_ROWS` rows). None when the rows have no
    `answer_letter` and `options`."""
    from m1data.schema import LETTERS

    if len(rows) == 0 or not {"answer_letter", "options"} <= set(rows.column_names):
        return None
    counts = Counter(column_values(rows, "answer_letter"))
    sizes = [len(options) for options in column_values(rows, "options")]
    total = len(rows)
    table = []
    for i, letter in enumerate(LETTERS[: max(max(sizes), 1)]):
        fair = sum(1 / n for n in sizes if i < n) / total
        table.append((letter, counts.get(letter, 0), counts.get(letter, 0) / total, fair))
    table += [(str(letter), n, n / total, 0.0) for letter, n in sorted(counts.items()) if letter not in LETTERS[: len(table)]]
    skewed = [entry for entry in table if entry[2] > 2 * entry[3] and entry[1] >= MIN_SKEWED_ROWS]
    return LetterView(config, total, table, skewed)


# ---------------------------------------------------------------------------------------------
# Metadata and rendering


def source_infos(manifests: list[dict[str, Any]], upstream: Provenance | None = None) -> dict[str, SourceInfo]:
    """What the card says about each source: the built-in table for the four m1 sources, and
    for a source added in the build config (or one whose licence the config states), what its
    `sources:` entry in the load stage's recorded config says; the embedded sample's sources
    (`sample_build`) are described as what they are. A source read from a local file names no
    Hub copy (`local_file`): the header's `source_datasets` lists what the build read."""
    infos = {**SOURCE_INFO, **(upstream.sources if upstream else {})}
    sample = sample_build(manifests, upstream)
    for key in sample.sources if sample else []:
        infos[key] = _sample_info(key, infos.get(key))
    for m in manifests:
        if m["stage"] != "load":
            continue
        for name, spec in ((m.get("config") or {}).get("sources") or {}).items():
            if sample and name in sample.sources:
                continue
            if not isinstance(spec, dict):
                continue
            if spec.get("licence") or name not in infos:
                infos[name] = _configured_source(name, spec, infos.get(name))
            if spec.get("path"):  # read from a local file: no Hub copy was used (unless the config names one)
                infos[name] = replace(infos[name], hub_id=spec.get("hub_id") or "", local_file=True)
    return infos


def _configured_source(name: str, spec: dict[str, Any], known: SourceInfo | None) -> SourceInfo:
    """A source as its `sources:` entry describes it, the built-in table filling what it leaves out."""
    licence = spec.get("licence") or "not stated"
    hub_id = spec.get("hub_id") or (known.hub_id if known else "")
    url = spec.get("url") or (f"https://huggingface.co/datasets/{hub_id}" if hub_id else "")
    return SourceInfo(
        key=name,
        name=spec.get("title") or (known.name if known else name),
        licence=licence,
        terms=spec.get("terms") or f"{licence}, as stated in the build configuration.",
        citation=spec.get("citation") or (known.citation if known else "not given in the build configuration."),
        hub_id=hub_id,
        url=url or (known.url if known else ""),
    )


def _sources_of_your_own(sources: Sequence[str]) -> list[str]:
    """The sources that are none of m1's four, all English: a user's own, whose language the card
    cannot state (it said English of every build)."""
    return [s for s in sources if s not in SOURCE_INFO]


def card_metadata(
    pretty_name: str,
    configs: Configs,
    sources: list[str] | None = None,
    provenance: dict[str, Any] | None = None,
    infos: Mapping[str, SourceInfo] | None = None,
    *,
    with_data: bool = True,
    sample: SampleView | None = None,
    provenance_unknown: bool = False,
) -> dict[str, Any]:
    """The card's YAML header. The licence is `other` because rows carry several sources' terms;
    its link points at the card's Licences section, which gives each source's terms. A build
    whose rows all come from the embedded `sample` is under the sample's licence alone, with no
    source dataset (the rows are synthetic, written for m1data). `with_data`
    adds ``configs:``/``dataset_info:`` (`cardmeta.data_metadata`); an export leaves them to the
    folder writer, which computes them once from the files it writes. `provenance_unknown` (rows
    drawn from a dataset whose card could not be read) makes the licence `unknown` and names no
    source dataset, since the rows may be the embedded sample's."""
    infos = SOURCE_INFO if infos is None else infos
    largest = max(sum(len(ds) for ds in splits.values()) for splits in configs.values())
    synthetic = bool(sample and sources and set(sources) <= set(sample.sources))
    hub_ids = [infos[s].hub_id for s in (sources or []) if s in infos and infos[s].hub_id]
    # the Hub copies read; none when every source was a local file ("original" would call the rows new)
    source_datasets = ["original"] if synthetic else [f"extended|{hub_id}" for hub_id in hub_ids]
    metadata: dict[str, Any] = {
        "pretty_name": pretty_name,
        "license": "other",
        "license_name": "m1-source-licences",
        "license_link": "README.md#licences",
        **({} if _sources_of_your_own(sources or []) else {"language": ["en"]}),
        "task_categories": ["question-answering", "text-generation"],
        "size_categories": [size_category(largest)],
        **({"source_datasets": source_datasets} if source_datasets else {}),
        "tags": ["medical", "reasoning", "arxiv:2504.00869"],
        **(data_metadata(configs) if with_data else {}),
    }
    if synthetic:
        metadata["license"] = SAMPLE_LICENCE_ID
        for key in ("license_name", "license_link"):
            metadata.pop(key)
        metadata["tags"] = [*metadata["tags"], "synthetic"]
    elif provenance_unknown:  # drawn from a dataset whose card could not be read: real or synthetic, unknown
        metadata["license"] = "unknown"
        for key in ("license_name", "license_link", "source_datasets"):
            metadata.pop(key, None)
    if provenance is not None:
        metadata[PROVENANCE_KEY] = provenance
    return metadata


def _environment() -> Any:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def available_cards() -> list[str]:
    return sorted(p.name.removesuffix(".md.jinja") for p in TEMPLATE_DIR.glob("*.md.jinja") if p.name != "base.md.jinja")


# funnel_markdown's sections that the card's decontamination section shows in its own words
_SHOWN_ELSEWHERE = ("## Decontamination by eval set", "## Word n-gram")


def _funnel_section(run_dir: str | Path) -> str:
    """`funnel_markdown` one heading level down, without its own "Funnel" title (the card has
    one) and without the sections the card shows elsewhere (`_SHOWN_ELSEWHERE`), each dropped by
    its title: cutting at the first of them also cut what follows it, and a renamed title left
    the eval-set table in the card twice."""
    sections = re.split(r"^(?=## )", funnel_markdown(run_dir), flags=re.M)
    text = "".join(s for s in sections if not s.startswith(_SHOWN_ELSEWHERE))
    text = re.sub(r"\A\s*## Funnel\n+", "", text)
    return re.sub(r"^(#+) ", lambda m: "#" + m.group(1) + " ", text, flags=re.M).strip()


def type_name(feature: Any) -> str:
    """A short type for the columns table: string, int32, list<string>, struct{role, content}."""
    if isinstance(feature, datasets.Value):
        return feature.dtype
    if isinstance(feature, dict):
        return "struct{" + ", ".join(f"{k}: {type_name(v)}" for k, v in feature.items()) + "}"
    inner = getattr(feature, "feature", None)
    if inner is not None:
        return f"list<{type_name(inner)}>"
    return type(feature).__name__


def _library_versions() -> dict[str, str]:
    import huggingface_hub

    return {"m1data": __version__, "datasets": datasets.__version__, "huggingface_hub": huggingface_hub.__version__}


def _sample_levels(manifests: list[dict[str, Any]]) -> list[str] | None:
    """The levels the last sampling stage balanced over (`[]`: a uniform draw), as it recorded
    them; None when no stage sampled. The m1K card says how its rows were drawn from this, not
    from the paper's recipe, which a config may change."""
    for m in reversed(manifests):
        if m["stage"] == "sample":
            return [str(level) for level in (m.get("config") or {}).get("levels") or []]
    return None


def _draw(manifests: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The last sampling stage's draw: rows asked for, the pool it drew from, rows drawn, and for a
    Random ablation's `cut` (n drawn from the verified rows of a larger traced draw) the rows traced.
    An ablation card said nothing of it, so a "Hard Random 1K" of 35 rows (a pool smaller than the
    draw, taken whole) read as a draw of 1,000."""
    draws = [m for m in manifests if m["stage"] in ("sample", "cut")
             and (m.get("stats") or {}).get("n_requested") is not None]
    if not draws:
        return None
    last, stats = draws[-1], draws[-1]["stats"]
    draw = {"stage": last["stage"], "requested": int(stats["n_requested"]), "pool": int(last["rows_in"]),
            "drawn": int(stats.get("n_drawn", last["rows_out"]))}
    draw["short"] = draw["drawn"] < draw["requested"]  # the pool was taken whole and balanced nothing
    if last["stage"] == "cut" and len(draws) > 1:
        traced = draws[-2]
        draw["traced"] = int(traced["stats"].get("n_drawn", traced["rows_out"]))
        # the traced draw took its whole pool: a larger `oversample` would trace no more rows
        draw["traced_whole_pool"] = draw["traced"] < int(traced["stats"]["n_requested"])
    return draw


def _pool_skew(manifests: list[dict[str, Any]]) -> str | None:
    """The source holding more than its even share of the pool the last sampling stage drew from,
    by the name the card gives it; None when no stage sampled or no source is over its share. The
    cards said every pool was skewed "towards MedMCQA", a build of MedQA or of a user's own
    questions too."""
    for m in reversed(manifests):
        if m["stage"] == "sample":
            counts = {k: int(v) for k, v in (m.get("counts_in") or {}).items() if v}
            if len(counts) < 2:
                return None
            largest = max(counts, key=lambda k: (counts[k], k))
            return _short_name(largest) if counts[largest] * len(counts) > sum(counts.values()) else None
    return None


def _requested_rows(manifests: list[dict[str, Any]]) -> int | None:
    for m in reversed(manifests):
        requested = (m.get("stats") or {}).get("n_requested")
        if requested is not None:
            return int(requested)
    return None


def render_card(
    dataset_name: str,
    run_dir: str | Path,
    configs: Configs,
    *,
    images_dir: str = IMAGES_DIR,
    repo_id: str | None = None,
    tokenizer: Any | None = None,
    with_data_metadata: bool = True,
) -> tuple[str, dict[str, bytes]]:
    """The card (YAML header and markdown) and its images {file name: PNG bytes}.

    `images_dir` is where, relative to the card, the caller puts the images (`write_hub_folder`
    writes them to ``images/``). Lengths are counted with `tokenizer` (an object, or a name looked
    up among locally installed tokenizers; default m1's target model) when there is one, else in
    whitespace-split words, and the card says which. `with_data_metadata=False` leaves the
    header's ``configs:``/``dataset_info:`` to `write_hub_folder` (m1data.publishing.export does).
    """
    from m1data.builders import BUILDERS  # the pretty name and template of each dataset

    key = dataset_name.lower()
    builder = BUILDERS.get(key)
    template = builder.card_template if builder else key
    if template not in available_cards():
        raise UserError(f"no card template for {dataset_name!r}; templates: {', '.join(available_cards())}")
    manifests = read_manifests(Path(run_dir))
    if not manifests:
        raise FileNotFoundError(f"{run_dir}: no completed stages (no */manifest.json)")

    pretty_name = builder.pretty_name if builder else dataset_name
    lengths, images = _length_views(pretty_name, dataset_name, configs, images_dir, tokenizer)
    domains, domain_images = _domains(pretty_name, dataset_name, configs, images_dir)
    images.update(domain_images)
    first_rows = _all_rows(next(iter(configs.values())))
    published_sources = Counter(column_values(first_rows, "source")) if "source" in first_rows.column_names else Counter()
    split_sizes = [(name, split, len(ds)) for name, splits in configs.items() for split, ds in splits.items()]
    config_totals = {name: sum(len(ds) for ds in splits.values()) for name, splits in configs.items()}
    last = manifests[-1]
    features = first_rows.features  # datasets copies the whole Features on each access
    upstream = _upstream(manifests)
    models = (upstream.models if upstream else []) + _models(manifests)
    prompts = build_prompts(manifests, upstream)
    infos = source_infos(manifests, upstream)
    sample = sample_build(manifests, upstream)
    order = _source_columns(set(SOURCES) | set(published_sources) | (set(infos) - set(SOURCE_INFO)))
    present = [s for s in order if published_sources.get(s)]
    columns = [(c, type_name(features[c]),
                _source_note(present) if c == "source" and present else column_note(c, features[c]))
               for c in first_rows.column_names]

    sample_only = bool(sample and present and set(present) <= set(sample.sources))
    # what the examples load before a repo id is known: the dataset's name ("Hard Random 1K" is no name to load)
    loads_as = repo_id or (pretty_name if " " not in pretty_name else dataset_name)
    context = {
        "pretty_name": pretty_name,
        "dataset_name": dataset_name,
        "repo_id": loads_as,  # `m1data publish` writes the repo id in (hub.fill_repo_id)
        "repo_id_mark": repo_id_mark(loads_as),
        "sample": sample,
        "sample_only": sample_only,
        # the embedded sample's rows only, or the embedded model's choices: shown, never trained on (Quick start, Uses)
        "demonstration": sample_only or bool(_embedded_models(manifests, upstream)),
        "letters": answer_letters(next(iter(configs)), first_rows),
        "first_config": next(iter(configs)),
        "other_configs": list(configs)[1:],
        "n_rows": config_totals[next(iter(configs))],
        "n_requested": _requested_rows(manifests),
        "draw": _draw(manifests),
        "pool_skew": _pool_skew(manifests),
        "sample_levels": _sample_levels(manifests),
        "split_sizes": split_sizes,
        "config_totals": config_totals,
        "last_stage": last,
        "run_matches_rows": last["rows_out"] in config_totals.values(),
        "columns": columns,
        "example_row": example_row(first_rows),
        "stages": _stage_views(manifests),
        "models": models,
        "prompts": prompts,
        "constrained_teacher": _constrained_teacher(manifests, upstream),
        "students_cut_off": _students_cut_off(first_rows, manifests, upstream),
        # students (here or upstream) chose the rows; a Random 1K had none, and its card said they had
        "chosen_by_students": any(str(m.get("role", "")).startswith("student") for m in models)
        or any(c.startswith("student_") for c in first_rows.column_names),  # (the rows' own, where provenance is not)
        "teacher_verified": bool(_role_models(models, "teacher")),
        "embedded_models": _embedded_models(manifests, upstream),
        "shipped_model": _shipped_model(models),
        "teacher_students": _teacher_students(models),
        "zero_shot_tagger": _zero_shot_tagger(models),
        "build_versions": sorted({m.get("m1data_version", "unknown") for m in manifests}),
        "render_versions": _library_versions(),
        "funnel": _funnel_section(run_dir),
        "decontamination": _decontamination(manifests),
        "eval_sets": _eval_sets_checked(manifests),
        "ngram_checks": _ngram_checks(manifests),
        "fuzzy_thresholds": _fuzzy_thresholds(manifests, upstream),
        "upstream": upstream,
        "provenance_unknown": bool(upstream and not upstream.found and not sample),
        "domains": domains,
        "lengths": lengths,
        # the sources these rows come from (every known one where the rows name none), not every source m1 read:
        # HEAD-QA and MedMCQA were listed, cited and described with 0 rows in builds without them (audit)
        "sources": [infos.get(s) or _unknown_source(s) for s in present or order],
        "present_sources": present,
        "real_sources": [s for s in present if not (sample and s in sample.sources)],  # not the synthetic sample's
        "other_language": _sources_of_your_own(present),
        "local_sources": [infos[s].name for s in present if s in infos and infos[s].local_file],
        "published_sources": published_sources,
        "m1_bibtex": M1_BIBTEX,
        "arxiv_url": ARXIV_URL,
    }
    body = _environment().get_template(f"{template}.md.jinja").render(**context)
    metadata = card_metadata(pretty_name, configs, present, provenance_metadata(manifests, upstream), infos,
                             with_data=with_data_metadata, sample=sample,
                             provenance_unknown=context["provenance_unknown"])
    card = join_card(redact_config(metadata), body)
    # manifests of older runs may hold URL credentials, and any run local paths (a served model's)
    return strip_local_paths(strip_userinfo(redact_environment(card))), images


__all__ = [
    "SAMPLE_LICENCE",
    "SOURCE_INFO",
    "LetterView",
    "SampleView",
    "answer_letters",
    "available_cards",
    "card_metadata",
    "column_note",
    "example_row",
    "public_value",
    "redact_config",
    "render_card",
    "sample_build",
    "size_category",
    "source_infos",
]
