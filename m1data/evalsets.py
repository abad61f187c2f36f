"""Eval-set loaders: the decontamination targets and the scoring sets of Table 1.

Eval rows use the training row schema with `source` set to the eval-set name. Their options are
shuffled per row from (seed, id) on every path, named set or any file, exactly like training
rows: many eval files list the options in an order that gives the answer away (GPQA puts the
right answer first; MedMCQA validation's key is 34% A), and a model that always says A must
not score above chance. Scoring compares the model's letter with the row's own (shuffled) key.
After loading, a set whose answer letters are still badly skewed raises `AnswerSkewWarning`
(see `answer_skew`). Duplicate option texts are allowed here: an eval question is a
decontamination target whatever its quality.

Most eval files share a shape (question, options, answer), spelled differently. One reader with
a `ColumnMapping` covers them; by default it guesses the columns from the common spellings, and
the named sets below only add where the rows come from.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets

from m1data.readers import read_csv, read_json, read_records
from m1data.schema import DEFAULT_SEED, LETTERS, RowError
from m1data.sources import (
    LoadResult,
    Parsed,
    PubMedQA,
    Record,
    check_some_rows_read,
    collect,
    key_text,
    lettered_options,
    option_texts,
    text,
)

MMLU_MEDICAL = (
    "anatomy",
    "clinical_knowledge",
    "college_biology",
    "college_medicine",
    "medical_genetics",
    "professional_medicine",
)
OPTION_COLUMNS = ("opa", "opb", "opc", "opd", "ope", "opf")
SKEW_Z = 4.0
EMBEDDED_CHOICES = re.compile(r"\n\s*Answer Choices:\s*(\([A-Z]\).*)\Z", re.DOTALL)


class AnswerSkewWarning(UserWarning):
    """A loaded eval set whose right answers sit on one letter far more often than chance."""


def answer_skew(rows: datasets.Dataset, z: float = SKEW_Z) -> str | None:
    """Why the set's answer letters look skewed, or None.

    Rule: under a fair per-row shuffle, a row with n options has its answer on each of its
    letters with probability 1/n, so letter L is expected E = sum(1/n) times with variance
    V = sum(1/n * (1 - 1/n)) over the rows that have an L. A letter seen more than E + z*sqrt(V)
    times (z = 4: a fair set trips it about once in 30,000 letters) is reported. Sets of a few
    rows cannot trip it, which is right: three A's in a row prove nothing.
    """
    expected: Counter[str] = Counter()
    variance: Counter[str] = Counter()
    for options in rows["options"]:
        p = 1 / len(options) if options else 0.0
        for letter in LETTERS[: len(options)]:
            expected[letter] += p
            variance[letter] += p * (1 - p)
    observed = Counter(rows["answer_letter"])
    for letter in sorted(expected):
        if variance[letter] and observed[letter] > expected[letter] + z * math.sqrt(variance[letter]):
            return (f"answer {letter} on {observed[letter]:,} of {len(rows):,} rows "
                    f"({observed[letter] / len(rows):.0%}; a fair shuffle gives about {expected[letter]:.0f})")
    return None


def strip_embedded_choices(question: str, n_options: int) -> str:
    """The stem without a trailing "Answer Choices: (A) ... (B) ..." list (MedXpertQA writes its
    choices into the question). The options are rendered from `options` in shuffled order, so a
    second, lettered copy in the stem would contradict them. Removed only when its letters are
    exactly A.. for this row's options; `metadata` keeps the original question."""
    match = EMBEDDED_CHOICES.search(question)
    if match and re.findall(r"\(([A-Z])\)", match.group(1)) == list(LETTERS[:n_options]):
        return question[: match.start()].rstrip()
    return question


@dataclass(frozen=True)
class ColumnMapping:
    """Which columns hold what; None means "guess from the usual spellings"."""

    question: str | None = None
    options: str | tuple[str, ...] | None = None
    answer: str | None = None
    id: str | None = None
    context: str | None = None


def _first(raw: dict[str, Any], names: tuple[str, ...]) -> str | None:
    return next((n for n in names if n in raw and raw[n] not in (None, "")), None)


def _options(raw: dict[str, Any], spec: str | tuple[str, ...] | None) -> list[str]:
    if isinstance(spec, tuple):
        return option_texts([raw[c] for c in spec if raw.get(c) not in (None, "")])
    if spec is None and "Correct Answer" in raw:  # GPQA: the right answer first, then the others
        return option_texts([raw["Correct Answer"], *(raw.get(f"Incorrect Answer {i}") for i in (1, 2, 3))])
    if spec is None and "options" not in raw and "choices" in raw:
        spec = "choices"
    if spec is None and "options" not in raw:
        return option_texts([raw[c] for c in OPTION_COLUMNS if raw.get(c) not in (None, "")])
    options = raw.get(spec or "options")
    if isinstance(options, str):  # a CSV cell holding a JSON list or dict
        try:
            options = json.loads(options)
        except json.JSONDecodeError:
            raise RowError("bad_options", "options cell is not JSON") from None
    return lettered_options(options)


def _answer_index(raw: dict[str, Any], spec: str | None, options: list[str]) -> int:
    if spec is None and "Correct Answer" in raw:
        return 0
    name = spec or _first(raw, ("answer_idx", "answer_index", "cop", "answer", "label"))
    if name is None:
        raise RowError("missing_field", "no answer column")
    value = raw[name]
    if isinstance(value, bool):
        raise RowError("answer_out_of_range", f"answer {value!r}")
    if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
        index = int(value)
    elif isinstance(value, str) and len(value.strip().strip("()")) == 1:
        index = LETTERS.find(value.strip().strip("()").upper())
    else:
        matches = [i for i, o in enumerate(options) if o.strip().lower() == str(value).strip().lower()]
        index = matches[0] if matches else -1
    if not 0 <= index < len(options):
        raise RowError("answer_out_of_range", f"answer {value!r} for {len(options)} options")
    return index


def make_parser(mapping: ColumnMapping = ColumnMapping()) -> Callable[[dict[str, Any]], Parsed]:
    def parse(raw: Any) -> Parsed:
        if not isinstance(raw, dict):
            raise RowError("not_an_object", f"a {type(raw).__name__}, not a question object")
        question_col = mapping.question or _first(raw, ("question", "Question", "QUESTION", "qtext"))
        if question_col is None:
            raise RowError("missing_field", "no question column")
        question = text(raw, question_col)
        options = _options(raw, mapping.options)
        id_col = mapping.id or _first(raw, ("realidx", "id", "question_id", "Record ID", "pubid"))
        context = raw.get(mapping.context) if mapping.context else None
        if isinstance(context, list) and all(isinstance(c, str) for c in context):
            context = "\n".join(context)
        if context is not None and not isinstance(context, str):
            raise RowError("bad_context", f"{mapping.context} is a {type(context).__name__}, not text")
        return Parsed(
            native_id=None if id_col is None else key_text(raw, id_col),
            question=strip_embedded_choices(question, len(options)),
            options=options,
            answer_idx=_answer_index(raw, mapping.answer, options),
            context=context or "",
        )

    return parse


def _collect(name: str, records, parse=None, *, where: str | Path = "") -> LoadResult:
    """Rows of one eval set, options shuffled per row from (seed, id) like every loader's."""
    result = collect(name, records, parse or make_parser(), seed=DEFAULT_SEED, unique_options=False)
    result = check_some_rows_read(result, where or name, name)
    skew = answer_skew(result.rows)
    if skew:
        warnings.warn(f"{name}: answer letters are skewed: {skew}", AnswerSkewWarning, stacklevel=2)
    return result


def _local(path: str | Path) -> Iterator[Record]:
    """Records of a local .jsonl / .json / .csv / .parquet file, located by line."""
    name = Path(path).name
    for line, raw in read_records(path):
        yield f"{line}", raw, f"{name}:{line}"


def _hub(hub_id: str, config: str | None, split: str, keep: Callable[[dict], bool] | None = None) -> Iterator[Record]:
    ds = datasets.load_dataset(hub_id, config, split=split)
    for index, raw in enumerate(ds):
        if keep is None or keep(raw):
            yield f"{index}", raw, f"{hub_id} {split} row {index}"


# ---------------------------------------------------------------------------------------------
# Named eval sets


def _mmlu_csv(path: Path) -> Iterator[Record]:
    """hendrycks/test CSVs: no header, `question,A,B,C,D,answer`."""
    for line, cells in read_csv(path, header=False, width=6):
        yield f"{line}", {"question": cells[0], "options": cells[1:5], "answer": cells[5]}, f"{path.name}:{line}"


def load_mmlu(subject: str, path: str | Path | None = None) -> LoadResult:
    name = f"mmlu_{subject}"
    if path is None:
        return _collect(name, _hub("cais/mmlu", subject, "test"))
    path = Path(path)
    if path.is_dir():
        path = path / f"{subject}_test.csv"
    records = _mmlu_csv(path) if path.suffix == ".csv" else _local(path)
    return _collect(name, records, where=path)


def load_mmlu_pro_health(path: str | Path | None = None) -> LoadResult:
    def is_health(raw: dict[str, Any]) -> bool:
        return raw.get("category") == "health"

    if path is None:
        return _collect("mmlu_pro_health", _hub("TIGER-Lab/MMLU-Pro", None, "test", is_health))
    records = (record for record in _local(path) if is_health(record[1]))
    return _collect("mmlu_pro_health", records, where=path)


def load_gpqa_diamond(path: str | Path | None = None) -> LoadResult:
    records = _hub("Idavidrein/gpqa", "gpqa_diamond", "train") if path is None else _local(path)
    return _collect("gpqa_diamond", records, where=path or "")


def load_pubmedqa_test(path: str | Path | None = None) -> LoadResult:
    source = PubMedQA()
    records = source.read_hub("test") if path is None else source.read_native(Path(path), "test")
    return _collect("pubmedqa_test", records, source.parse, where=path or "")


def _from_hub_or_file(name: str, hub_id: str, config: str | None, split: str):
    def load(path: str | Path | None = None) -> LoadResult:
        records = _hub(hub_id, config, split) if path is None else _local(path)
        return _collect(name, records, where=path or "")

    return load


def _local_only(name: str):
    def load(path: str | Path | None = None) -> LoadResult:
        if path is None:
            raise ValueError(f"{name} has no Hub copy m1data knows; pass --path to its CSV")
        return _collect(name, _local(path), where=path)

    return load


EVAL_SETS: dict[str, Callable[..., LoadResult]] = {
    "medmcqa_validation": _from_hub_or_file("medmcqa_validation", "openlifescienceai/medmcqa", None, "validation"),
    "medqa_test": _from_hub_or_file("medqa_test", "GBaker/MedQA-USMLE-4-options", None, "test"),
    "pubmedqa_test": load_pubmedqa_test,
    **{f"mmlu_{s}": (lambda path=None, s=s: load_mmlu(s, path)) for s in MMLU_MEDICAL},
    "mmlu_pro_health": load_mmlu_pro_health,
    "gpqa_diamond": load_gpqa_diamond,
    "medbullets_op4": _local_only("medbullets_op4"),
    "medbullets_op5": _local_only("medbullets_op5"),
}


def load_eval(name: str, path: str | Path | None = None) -> LoadResult:
    """Load a named eval set (from the Hub, or from `path` in its native format)."""
    if name not in EVAL_SETS:
        raise ValueError(f"unknown eval set {name!r}; choose from {', '.join(EVAL_SETS)} or pass a file")
    if path is not None and not Path(path).exists():
        raise FileNotFoundError(f"{path}: no such file")
    return EVAL_SETS[name](path)


def load_eval_file(
    path: str | Path,
    mapping: ColumnMapping = ColumnMapping(),
    *,
    name: str | None = None,
) -> dict[str, LoadResult]:
    """Any JSON / JSONL / CSV / parquet file of questions, keyed by eval-set name.

    m1's own eval file `{set_name: [{question, options, answer_idx, answer}, ...]}` holds several
    sets and gives one entry per set; any other file gives one entry named `name` (default: the
    file's parent folder and stem, e.g. `medxpertqa-r/test`).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    parse = make_parser(mapping)
    if path.suffix == ".json":
        data = read_json(path)
        if isinstance(data, dict) and data and all(isinstance(v, list) for v in data.values()):
            return {
                set_name: _collect(
                    set_name, ((f"{i}", r, f"{path.name} {set_name} item {i}") for i, r in enumerate(items, 1)),
                    parse, where=path,
                )
                for set_name, items in data.items()
            }
    set_name = name or f"{path.parent.name}/{path.stem}"
    return {set_name: _collect(set_name, _local(path), parse, where=path)}


def load_eval_any(name_or_path: str, path: str | Path | None = None) -> dict[str, LoadResult]:
    """A named set, "mmlu_medical" (all six MMLU subjects), or a file."""
    if name_or_path == "mmlu_medical":
        return {f"mmlu_{s}": load_mmlu(s, path) for s in MMLU_MEDICAL}
    if name_or_path in EVAL_SETS:
        return {name_or_path: load_eval(name_or_path, path)}
    if Path(name_or_path).exists():
        return load_eval_file(name_or_path)
    raise ValueError(f"{name_or_path!r} is neither a known eval set ({', '.join(EVAL_SETS)}, mmlu_medical) nor a file")


__all__ = [
    "EVAL_SETS",
    "MMLU_MEDICAL",
    "AnswerSkewWarning",
    "ColumnMapping",
    "answer_skew",
    "load_eval",
    "load_eval_any",
    "load_eval_file",
]
