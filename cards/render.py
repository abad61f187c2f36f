"""Dataset cards for m23K, m1K and friends, rendered from a run directory and the published rows.

Every number in a card is read from the stage manifests of the run (the funnel, drop reasons,
per-eval-set decontamination counts, stage configs) or counted on the rows being published (split
sizes, the domain table, the length histogram). Nothing is typed in by hand, so a card cannot
drift from the data it describes. The prose around the numbers lives in the Jinja templates next
to this file: `base.md.jinja` holds what every card says, `<dataset>.md.jinja` what one dataset
adds.

Why a redaction pass: stage configs are printed verbatim, and an LLM stage's config may carry an
endpoint key or token. Config keys that name a secret are masked, and as a last guard any value
of a secret-looking environment variable found in the text is masked too.
"""

from __future__ import annotations

import io
import os
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import yaml

from m1data import __version__
from m1data.funnel import funnel_markdown
from m1data.hub import IMAGES_DIR, Configs, configs_metadata, dataset_info_metadata, join_card
from m1data.pipeline import read_manifests
from m1data.schema import SOURCES

TEMPLATE_DIR = Path(__file__).resolve().parent
REDACTED = "[redacted]"

# Keys whose values are credentials. `_env` keys hold the *name* of a variable, which is safe.
_SECRET_KEY = re.compile(r"(^|_)(api_?key|token|secret|password|passwd|authorization|auth|credentials?)($|_)", re.I)
_SECRET_ENV = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH)", re.I)


@dataclass(frozen=True)
class SourceInfo:
    """What a card must say about one upstream source: who made it, under which terms."""

    key: str
    name: str
    licence: str
    terms: str
    citation: str


SOURCE_INFO = {
    "medqa": SourceInfo(
        "medqa",
        "MedQA (USMLE, 4 options)",
        "MIT",
        "MIT licence of the MedQA release.",
        'Jin et al., "What Disease does this Patient Have? A Large-scale Open Domain Question '
        'Answering Dataset from Medical Exams", Applied Sciences, 2021.',
    ),
    "headqa": SourceInfo(
        "headqa",
        "HEAD-QA (English)",
        "HEAD-QA terms (research use)",
        "Questions written by the Spanish Ministerio de Sanidad, Consumo y Bienestar Social, "
        "redistributed by the HEAD-QA authors for research under the Ministry's reuse conditions: "
        "the content must not be distorted, the source must be cited, and the date of the last "
        "update of the documents must be stated (14 January 2019).",
        'Vilares and Gómez-Rodríguez, "HEAD-QA: A Healthcare Dataset for Complex Reasoning", ACL, 2019.',
    ),
    "medmcqa": SourceInfo(
        "medmcqa",
        "MedMCQA",
        "Apache-2.0",
        "Apache-2.0, as stated on the openlifescienceai/medmcqa dataset card.",
        'Pal, Umapathi and Sankarasubbu, "MedMCQA: A Large-scale Multi-Subject Multi-Choice Dataset '
        'for Medical domain Question Answering", CHIL (PMLR 174), 2022.',
    ),
    "pubmedqa": SourceInfo(
        "pubmedqa",
        "PubMedQA (PQA-L)",
        "MIT",
        "MIT licence of the PubMedQA release.",
        'Jin et al., "PubMedQA: A Dataset for Biomedical Research Question Answering", EMNLP-IJCNLP, 2019.',
    ),
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
    "options": "Answer options, shuffled per row with a seeded generator so the right letter is not a learnable bias.",
    "answer_idx": "Index of the right option in `options` (0-based).",
    "answer_letter": "Letter of the right option (A, B, ...).",
    "answer_text": "Text of the right option.",
    "prompt": "The question as the models saw it: context (PubMedQA), question, then one `X. option` line per option.",
    "metadata": "The raw source row as JSON, kept verbatim so every row can be traced back.",
    "reasoning": "The teacher model's thinking for this question.",
    "teacher_reply": "The teacher's final reply after thinking (the part the answer was extracted from).",
    "domain": "MeSH qualifier (medical subject) the question was classified into.",
    "domain_code": "Two-digit code of that qualifier in the classification rubric.",
    "messages": "The SFT conversation: the user turn (`prompt`) and the assistant turn (think, then answer).",
    "text": "`messages` rendered with the Qwen2.5 chat template, for trainers that take plain text.",
}


# ---------------------------------------------------------------------------------------------
# Secrets


def redact_config(value: Any) -> Any:
    """A copy of a config with the values of credential-named keys masked."""
    if isinstance(value, dict):
        return {
            k: (REDACTED if _is_secret_key(str(k)) and v not in (None, "") else redact_config(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact_config(v) for v in value]
    return value


def _is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key)) and not key.lower().endswith("_env")


def redact_environment(text: str) -> str:
    """Mask every value of a secret-looking environment variable (HF_TOKEN, OPENAI_API_KEY...)."""
    for name, value in os.environ.items():
        if _SECRET_ENV.search(name) and len(value) >= 8 and value in text:
            text = text.replace(value, REDACTED)
    return text


# ---------------------------------------------------------------------------------------------
# Facts from the manifests


@dataclass
class StageView:
    """One stage as the card shows it."""

    index: int
    name: str
    rows_in: int
    rows_out: int
    wall_time_s: float
    m1data_version: str
    config_yaml: str
    stats_yaml: str


def _yaml(value: Any) -> str:
    return yaml.safe_dump(value, sort_keys=False, allow_unicode=True, width=100).rstrip()


def _stage_views(manifests: list[dict[str, Any]]) -> list[StageView]:
    views = []
    for m in manifests:
        stats = {k: v for k, v in (m.get("stats") or {}).items() if k != "by_eval_set"}
        config = redact_config(m.get("config") or {})
        views.append(
            StageView(
                index=m["index"],
                name=m["stage"],
                rows_in=m["rows_in"],
                rows_out=m["rows_out"],
                wall_time_s=m.get("wall_time_s", 0.0),
                m1data_version=m.get("m1data_version", "unknown"),
                config_yaml=_yaml(config) if config else "{}",
                stats_yaml=_yaml(redact_config(stats)) if stats else "",
            )
        )
    return views


def _models(manifests: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(stage, config key, model) for every config value under a key naming a model."""
    found: list[tuple[str, str, str]] = []

    def walk(stage: str, path: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(stage, f"{path}.{k}" if path else str(k), v)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(stage, f"{path}[{i}]", v)
        elif "model" in path.rsplit(".", 1)[-1].lower() and isinstance(value, str) and value:
            found.append((stage, path, value))

    for m in manifests:
        walk(m["stage"], "", redact_config(m.get("config") or {}))
    return found


def _embedded_models(manifests: list[dict[str, Any]]) -> list[str]:
    """Models a stage called as `base_url: embedded` (the default demonstration build): the card
    then says, at the top, that this is not the paper's data and which model wrote it."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if str(value.get("base_url", "")).strip().lower() == "embedded" and value.get("model"):
                found.append(str(value["model"]))
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    for m in manifests:
        walk(m.get("config") or {})
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


# ---------------------------------------------------------------------------------------------
# Facts from the rows


def _all_rows(splits: Mapping[str, datasets.Dataset]) -> datasets.Dataset:
    parts = list(splits.values())
    return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)


def _source_columns(seen: set[str]) -> list[str]:
    return [s for s in SOURCES if s in seen] + sorted(seen - set(SOURCES))


def _domains(configs: Configs) -> list[tuple[str, Pivot]]:
    """Per config with a `domain` column: domain x source counts (the paper's Table 4 shape)."""
    tables = []
    for name, splits in configs.items():
        rows = _all_rows(splits)
        if "domain" not in rows.column_names or "source" not in rows.column_names:
            continue
        counts: dict[str, Counter[str]] = {}
        for domain, source in zip(rows["domain"], rows["source"]):
            counts.setdefault(domain or "(unclassified)", Counter())[source] += 1
        columns = _source_columns({s for c in counts.values() for s in c})
        tables.append((name, _pivot(counts, columns, sort_by_total=True)))
    return tables


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


def _lengths(texts: list[str], tokenizer: Any | None) -> tuple[list[int], str]:
    if tokenizer is not None:
        ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
        name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
        return [len(x) for x in ids], f"tokens ({name} tokenizer)"
    return [len(t.split()) for t in texts], "words (whitespace-split; no tokenizer was used)"


def _histogram_png(lengths: list[int], title: str, unit: str) -> bytes | None:
    """A PNG histogram, or None when matplotlib is not installed (the card then says so)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    import numpy as np

    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=100)
    ax.hist(lengths, bins=min(60, max(5, len(set(lengths)))), color="#4a7ab5")
    for q in (25, 50, 75):
        ax.axvline(float(np.percentile(lengths, q)), color="#333333", linestyle=":", linewidth=1)
    ax.set_title(title)
    ax.set_xlabel(unit.split(" (")[0])
    ax.set_ylabel("rows")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def _length_views(
    dataset_name: str, configs: Configs, images_dir: str, tokenizer: Any | None
) -> tuple[list[LengthView], dict[str, bytes]]:
    import numpy as np

    views, images = [], {}
    for name, splits in configs.items():
        rows = _all_rows(splits)
        column = "text" if "text" in rows.column_names else "prompt" if "prompt" in rows.column_names else None
        if column is None or len(rows) == 0:
            continue
        lengths, unit = _lengths([t or "" for t in rows[column]], tokenizer)
        image_name = f"{_slug(dataset_name)}-{_slug(name)}-length.png"
        png = _histogram_png(lengths, f"{dataset_name} ({name}): length of '{column}'", unit)
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


# ---------------------------------------------------------------------------------------------
# Metadata and rendering


def size_category(n: int) -> str:
    """The Hub's size bucket for `n` rows."""
    buckets = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")]
    for limit, label in buckets:
        if n < limit:
            return label
    return "n>10M"


def card_metadata(pretty_name: str, configs: Configs) -> dict[str, Any]:
    """The card's YAML header. The licence is `other` because rows carry four sources' terms."""
    largest = max(sum(len(ds) for ds in splits.values()) for splits in configs.values())
    return {
        "pretty_name": pretty_name,
        "license": "other",
        "license_name": "m1-source-licences",
        "license_link": "README.md",
        "language": ["en"],
        "task_categories": ["question-answering", "text-generation"],
        "size_categories": [size_category(largest)],
        "tags": ["medical", "reasoning"],
        "configs": configs_metadata(configs),
        "dataset_info": dataset_info_metadata(configs),
    }


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


def _funnel_section(run_dir: str | Path) -> str:
    """`funnel_markdown` one heading level down, without its own "Funnel" title (the card has
    one) and without its eval-set list, which the card's decontamination table shows with totals."""
    text = re.sub(r"^(#+) ", lambda m: "#" + m.group(1) + " ", funnel_markdown(run_dir), flags=re.M)
    text = re.sub(r"\A### Funnel\n+", "", text)
    return re.split(r"^### Decontamination hits by eval set$", text, flags=re.M)[0].strip()


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


PRETTY_NAMES = {
    "m23k": "m23K",
    "m1k": "m1K",
    "random-1k": "Random 1K",
    "random-23k": "Random 23K",
    "hard-random-1k": "Hard Random 1K",
    "hard-domain-balanced-1k": "Hard Domain Balanced 1K",
}
# The ablation subsets share one template; their names say which draw they are.
TEMPLATE_OF = {name: "ablation" for name in PRETTY_NAMES if name not in ("m23k", "m1k")}


def render_card(
    dataset_name: str,
    run_dir: str | Path,
    configs: Configs,
    *,
    images_dir: str = IMAGES_DIR,
    repo_id: str | None = None,
    tokenizer: Any | None = None,
) -> tuple[str, dict[str, bytes]]:
    """The card (YAML header and markdown) and its images {file name: PNG bytes}.

    `images_dir` is where, relative to the card, the caller puts the images (`write_hub_folder`
    writes them to ``images/``). Lengths are counted in `tokenizer` tokens when one is given,
    else in whitespace-split words, and the card says which.
    """
    key = dataset_name.lower()
    template = TEMPLATE_OF.get(key, key)
    if template not in available_cards():
        raise ValueError(f"no card template for {dataset_name!r}; templates: {', '.join(available_cards())}")
    manifests = read_manifests(Path(run_dir))
    if not manifests:
        raise FileNotFoundError(f"{run_dir}: no completed stages (no */manifest.json)")

    pretty_name = PRETTY_NAMES.get(key, dataset_name)
    lengths, images = _length_views(dataset_name, configs, images_dir, tokenizer)
    first_rows = _all_rows(next(iter(configs.values())))
    published_sources = Counter(first_rows["source"]) if "source" in first_rows.column_names else Counter()
    split_sizes = [(name, split, len(ds)) for name, splits in configs.items() for split, ds in splits.items()]
    config_totals = {name: sum(len(ds) for ds in splits.values()) for name, splits in configs.items()}
    last = manifests[-1]
    columns = [(c, type_name(first_rows.features[c]), COLUMN_NOTES.get(c, "Added by the build.")) for c in first_rows.column_names]

    context = {
        "pretty_name": pretty_name,
        "dataset_name": dataset_name,
        "repo_id": repo_id or f"<org>/{pretty_name}",
        "first_config": next(iter(configs)),
        "split_sizes": split_sizes,
        "config_totals": config_totals,
        "last_stage": last,
        "run_matches_rows": last["rows_out"] in config_totals.values(),
        "columns": columns,
        "stages": _stage_views(manifests),
        "models": _models(manifests),
        "embedded_models": _embedded_models(manifests),
        "build_versions": sorted({m.get("m1data_version", "unknown") for m in manifests}),
        "render_versions": _library_versions(),
        "funnel": _funnel_section(run_dir),
        "decontamination": _decontamination(manifests),
        "domains": _domains(configs),
        "lengths": lengths,
        "sources": [SOURCE_INFO[s] for s in SOURCES],
        "published_sources": published_sources,
        "m1_bibtex": M1_BIBTEX,
    }
    body = _environment().get_template(f"{template}.md.jinja").render(**context)
    card = join_card(card_metadata(pretty_name, configs), body)
    return redact_environment(card), images


__all__ = ["SOURCE_INFO", "available_cards", "card_metadata", "redact_config", "render_card", "size_category"]
