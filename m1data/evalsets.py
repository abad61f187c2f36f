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

A build names its eval sets as `EvalInput`s; `load_evals` turns them into the decontamination
targets the `Decontaminate` stage matches against.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets

from m1data.errors import UserError
from m1data.readers import (
    LoadResult,
    MalformedFile,
    Parsed,
    Record,
    check_file,
    check_some_rows_read,
    collect,
    key_text,
    lettered_options,
    load_hub,
    option_texts,
    read_csv,
    read_json,
    read_records,
    text,
)
from m1data.schema import DEFAULT_SEED, LETTERS, RowError
from m1data.native import MedMCQA, PubMedQA
from m1data.registry import SOURCE_REGISTRY

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
            raise RowError("not_an_object", f"{type(raw).__name__}, not a question object")
        question_col = mapping.question or _first(raw, ("question", "Question", "QUESTION", "qtext"))
        if question_col is None:
            raise RowError("missing_field", "no question column")
        question = text(raw, question_col)
        id_col = mapping.id or _first(raw, ("realidx", "id", "question_id", "Record ID", "pubid"))
        native_id = None if id_col is None else key_text(raw, id_col)
        context = raw.get(mapping.context) if mapping.context else None
        if isinstance(context, list) and all(isinstance(c, str) for c in context):
            context = "\n".join(context)
        if context is not None and not isinstance(context, str):
            raise RowError("bad_context", f"{mapping.context} is {type(context).__name__}, not text")
        # From here on a fault leaves the question readable: the row is dropped but stays a
        # decontamination target (Parsed.error), with whatever options could be read.
        options: list[str] = []
        answer_idx, error = -1, None
        try:
            options = _options(raw, mapping.options)
            answer_idx = _answer_index(raw, mapping.answer, options)
        except RowError as err:
            error = err
        return Parsed(
            native_id=native_id,
            question=strip_embedded_choices(question, len(options)),
            options=options,
            answer_idx=answer_idx,
            context=context or "",
            error=error,
        )

    return parse


@dataclass(frozen=True)
class Layout:
    """One shape a named set's file may come in: the columns a record must have, and how to
    read it. Checking the columns first is what stops a wrong file (a GPQA CSV given as MedQA)
    from being read by the generic guesses."""

    columns: tuple[str, ...]
    parse: Callable[[Any], Parsed] = field(default_factory=make_parser)

    def fits(self, raw: Any) -> bool:
        return isinstance(raw, dict) and all(c in raw for c in self.columns)

    def __str__(self) -> str:
        return "{" + ", ".join(self.columns) + "}"


def layout_parser(name: str, layouts: tuple[Layout, ...]) -> Callable[[Any], Parsed]:
    """Parse with the first layout the record fits; a record that fits none is a bad row
    (reason wrong_layout), and a file where no record fits is the wrong file."""

    def parse(raw: Any) -> Parsed:
        for layout in layouts:
            if layout.fits(raw):
                return layout.parse(raw)
        if not isinstance(raw, dict):
            raise RowError("not_an_object", f"{type(raw).__name__}, not a question object")
        columns = ", ".join(list(raw)[:8]) + (", ..." if len(raw) > 8 else "")
        raise RowError("wrong_layout", f"columns {{{columns}}} fit no {name} layout")

    return parse


def expected_layouts(layouts: tuple[Layout, ...]) -> str:
    return "records with columns " + " or ".join(str(layout) for layout in layouts)


def _collect(name: str, records, parse=None, *, where: str | Path = "", expected: str = "") -> LoadResult:
    """Rows of one eval set, options shuffled per row from (seed, id) like every loader's.
    Whether the set has enough in it is checked by the public loaders (`require_items`)."""
    result = collect(name, records, parse or make_parser(), seed=DEFAULT_SEED, unique_options=False)
    result.origin, result.expected = str(where or name), expected
    skew = answer_skew(result.rows)
    if skew:
        warnings.warn(f"{name}: answer letters are skewed: {skew}", AnswerSkewWarning, stacklevel=2)
    return result


def require_items(result: LoadResult, name: str, *, scoring: bool = True) -> LoadResult:
    """An eval set that is empty is the wrong file (or a wrong filter), never a set to skip.

    For scoring, the set needs rows with a usable answer key. For decontamination
    (`scoring=False`) it needs questions with text, whatever their answers' state."""
    if scoring:
        return check_some_rows_read(result, result.origin or name, name, expected=result.expected)
    if len(result.targets()) == 0:
        hint = f"; expected {result.expected}" if result.expected else ""
        first = f" (first bad one: {result.dropped[0]['reason']} {result.dropped[0]['detail']})" \
            if len(result.dropped) else ""
        raise MalformedFile(result.origin or name, None, f"no {name} question with text in it{first}{hint}")
    return result


def _named(name: str, records, layouts: tuple[Layout, ...], where: str | Path) -> LoadResult:
    return _collect(name, records, layout_parser(name, layouts), where=where, expected=expected_layouts(layouts))


def _local(path: str | Path) -> Iterator[Record]:
    """Records of a local .jsonl / .json / .csv / .parquet file, located by line."""
    name = Path(path).name
    for line, raw in read_records(path):
        yield f"{line}", raw, f"{name}:{line}"


def _hub(name: str, hub_id: str, config: str | None, split: str,
         keep: Callable[[dict], bool] | None = None) -> Iterator[Record]:
    hint = f"`m1data load-eval {name} --path FILE` (or `--eval {name}=FILE`)"
    ds = load_hub(hub_id, config, split, local_hint=hint)
    for index, raw in enumerate(ds):
        if keep is None or keep(raw):
            yield f"{index}", raw, f"{hub_id} {split} row {index}"


# ---------------------------------------------------------------------------------------------
# Named eval sets


MEDAGENTSBENCH = Layout(("question", "options", "answer_idx"), make_parser(ColumnMapping(answer="answer_idx")))
MEDMCQA = Layout(("question", "opa", "opb", "opc", "opd", "cop"), MedMCQA().parse)
MMLU = (
    MEDAGENTSBENCH,
    Layout(("question", "choices", "answer"), make_parser(ColumnMapping(options="choices", answer="answer"))),
    Layout(("question", "options", "answer"), make_parser(ColumnMapping(options="options", answer="answer"))),
)
MMLU_PRO = (
    Layout(("question", "options", "answer_index"), make_parser(ColumnMapping(answer="answer_index"))),
    MEDAGENTSBENCH,
)
GPQA = (Layout(("Question", "Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3")),)
MEDBULLETS = (Layout(("question", "opa", "opb", "opc", "opd", "answer_idx")), MEDAGENTSBENCH)
PUBMEDQA = (
    Layout(("QUESTION", "CONTEXTS", "final_decision"), PubMedQA().parse),
    Layout(("pubid", "question", "context", "final_decision"), PubMedQA().parse),
)


def _mmlu_csv(path: Path) -> Iterator[Record]:
    """hendrycks/test CSVs: no header, `question,A,B,C,D,answer`."""
    for line, cells in read_csv(path, header=False, width=6):
        yield f"{line}", {"question": cells[0], "options": cells[1:5], "answer": cells[5]}, f"{path.name}:{line}"


def load_mmlu(subject: str, path: str | Path | None = None) -> LoadResult:
    name = f"mmlu_{subject}"
    if path is None:
        return _named(name, _hub(name, "cais/mmlu", subject, "test"), MMLU, "cais/mmlu")
    path = Path(path)
    if path.is_dir():
        path = path / f"{subject}_test.csv"
    records = _mmlu_csv(path) if path.suffix == ".csv" else _local(path)
    return _named(name, records, MMLU, path)


def load_mmlu_pro_health(path: str | Path | None = None) -> LoadResult:
    def is_health(raw: Any) -> bool:
        return isinstance(raw, dict) and raw.get("category") == "health"

    if path is None:
        records = _hub("mmlu_pro_health", "TIGER-Lab/MMLU-Pro", None, "test", is_health)
        return _named("mmlu_pro_health", records, MMLU_PRO, "TIGER-Lab/MMLU-Pro")
    records = (record for record in _local(path) if is_health(record[1]))
    return _named("mmlu_pro_health", records, MMLU_PRO, path)


def load_gpqa_diamond(path: str | Path | None = None) -> LoadResult:
    records = _hub("gpqa_diamond", "Idavidrein/gpqa", "gpqa_diamond", "train") if path is None else _local(path)
    return _named("gpqa_diamond", records, GPQA, path or "Idavidrein/gpqa")


def load_pubmedqa_test(path: str | Path | None = None) -> LoadResult:
    source = PubMedQA()
    hint = "`m1data load-eval pubmedqa_test --path FILE` (or `--eval pubmedqa_test=FILE`)"
    records = source.read_hub("test", hint) if path is None else source.read_native(Path(path), "test")
    return _collect("pubmedqa_test", records, layout_parser("pubmedqa_test", PUBMEDQA), where=path or source.hub_id,
                    expected="PubMedQA questions of the official 500-PMID test split, "
                             + expected_layouts(PUBMEDQA))


def load_medmcqa_validation(path: str | Path | None = None) -> LoadResult:
    """The Hub's 0-based `cop`, or a local file: the Hub layout (its `cop` base decided like the
    training loader's) or MedAgentsBench's converted rows."""
    if path is None:
        records = _hub("medmcqa_validation", SOURCE_REGISTRY["medmcqa"].hub_id, None, "validation")
    else:
        records = MedMCQA().read_native(check_file(path), "validation")
    return _named("medmcqa_validation", records, (MEDMCQA, MEDAGENTSBENCH), path or SOURCE_REGISTRY["medmcqa"].hub_id)


def load_medqa_test(path: str | Path | None = None) -> LoadResult:
    records = _hub("medqa_test", SOURCE_REGISTRY["medqa"].hub_id, None, "test") if path is None else _local(path)
    return _named("medqa_test", records, (MEDAGENTSBENCH,), path or SOURCE_REGISTRY["medqa"].hub_id)


def _local_only(name: str, layouts: tuple[Layout, ...]):
    def load(path: str | Path | None = None) -> LoadResult:
        if path is None:
            raise UserError(f"{name} has no Hub copy m1data knows; pass --path to its CSV")
        return _named(name, _local(path), layouts, path)

    return load


EVAL_SETS: dict[str, Callable[..., LoadResult]] = {
    "medmcqa_validation": load_medmcqa_validation,
    "medqa_test": load_medqa_test,
    "pubmedqa_test": load_pubmedqa_test,
    **{f"mmlu_{s}": (lambda path=None, s=s: load_mmlu(s, path)) for s in MMLU_MEDICAL},
    "mmlu_pro_health": load_mmlu_pro_health,
    "gpqa_diamond": load_gpqa_diamond,
    "medbullets_op4": _local_only("medbullets_op4", MEDBULLETS),
    "medbullets_op5": _local_only("medbullets_op5", MEDBULLETS),
}


def load_eval(name: str, path: str | Path | None = None, *, scoring: bool = True) -> LoadResult:
    """Load a named eval set (from the Hub, or from `path` in its native format). `scoring=False`
    loads it as decontamination targets: a set whose answer keys are all unreadable still counts."""
    if name not in EVAL_SETS:
        raise UserError(f"unknown eval set {name!r}; choose from {', '.join(EVAL_SETS)} or pass a file")
    if path is not None and not Path(path).exists():
        raise FileNotFoundError(f"{path}: no such file")
    return require_items(EVAL_SETS[name](path), name, scoring=scoring)


def load_eval_file(
    path: str | Path,
    mapping: ColumnMapping = ColumnMapping(),
    *,
    name: str | None = None,
    scoring: bool = True,
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
                set_name: require_items(_collect(
                    set_name, ((f"{i}", r, f"{path.name} {set_name} item {i}") for i, r in enumerate(items, 1)),
                    parse, where=path,
                ), set_name, scoring=scoring)
                for set_name, items in data.items()
            }
    folder = path.resolve().parent.name  # resolved: "x.csv" in the current folder is not "/x"
    set_name = name or (f"{folder}/{path.stem}" if folder else path.stem)
    return {set_name: require_items(_collect(set_name, _local(path), parse, where=path), set_name, scoring=scoring)}


def load_eval_any(name_or_path: str, path: str | Path | None = None, *, scoring: bool = True) -> dict[str, LoadResult]:
    """A named set, "mmlu_medical" (all six MMLU subjects), or a file (see `load_eval` for `scoring`)."""
    if name_or_path == "mmlu_medical":
        return {f"mmlu_{s}": load_eval(f"mmlu_{s}", path, scoring=scoring) for s in MMLU_MEDICAL}
    if name_or_path in EVAL_SETS:
        return {name_or_path: load_eval(name_or_path, path, scoring=scoring)}
    if Path(name_or_path).exists():
        if path is not None:
            raise UserError(f"{name_or_path} is a file and is loaded as it is; --path goes with an eval-set name "
                             f"(see `m1data eval-sets`), not with a file")
        return load_eval_file(name_or_path, scoring=scoring)
    raise UserError(f"{name_or_path!r} is neither a known eval set ({', '.join(EVAL_SETS)}, mmlu_medical) nor a file")


# ---------------------------------------------------------------------------------------------
# The eval sets of a build


@dataclass
class EvalInput:
    """An eval set: a known name (with an optional local path), or a file of any known shape."""

    name: str
    path: str | None = None


def load_evals(evals: list[EvalInput]) -> dict[str, datasets.Dataset]:
    """Eval-set name -> every question of the set that has text, for decontamination.

    A dropped eval row (an unreadable answer key, say) is still a question a training row
    must not copy, so it is matched too; a set with no question at all is an error (from the
    loader), never a set that silently matches nothing."""
    loaded: dict[str, datasets.Dataset] = {}
    for spec in evals:
        for set_name, result in load_eval_any(spec.name, spec.path, scoring=False).items():
            loaded[set_name] = result.targets()
    return loaded


__all__ = [
    "EVAL_SETS",
    "MMLU_MEDICAL",
    "AnswerSkewWarning",
    "ColumnMapping",
    "EvalInput",
    "answer_skew",
    "load_eval",
    "load_eval_any",
    "load_eval_file",
    "load_evals",
]
