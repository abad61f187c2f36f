"""Fuzzy deduplication and decontamination of rows (OpenThoughts semantics, reference s.3).

What is compared: the question stem (with PubMedQA's context) plus the option set in sorted
order (``match_keys``), on both sides, so a copy whose options were shuffled still matches, each
case folded with its spacing made even (``compared_text``);
decontamination also compares the stems alone and keeps those matches that share most options
(``_same_question``). The exact all-pairs matcher itself lives in m1data.stages.fuzzy.
``deduplicate`` and ``decontaminate`` work on Datasets; ``Deduplicate`` and ``Decontaminate`` are
the build's stages.
"""

from __future__ import annotations

import dataclasses
import functools
import numbers
import os
import sys
import unicodedata
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from m1data.errors import UserError
from m1data.output import datasets_bars_off
from m1data.running.distributed import band_runner
from m1data.running.pipeline import RunContext, Stage, StageResult, check_texts, dropped_rows, row_name
from m1data.schema import RowError, as_dataset, column_array, column_values, fresh_fingerprint, is_frame, question_id
from m1data.stages.fuzzy import (
    BandRunner,
    ContamMatch,
    DupMatch,
    EvalText,
    _check_threshold,
    contamination_pairs,
    find_contamination,
    find_duplicates,
)

if TYPE_CHECKING:
    from datasets import Dataset

__all__ = [
    "ContamMatch",
    "Decontaminate",
    "DecontaminateConfig",
    "DedupConfig",
    "Deduplicate",
    "DupMatch",
    "UnscoredEvalWarning",
    "EvalText",
    "compared_text",
    "contamination_pairs",
    "decontaminate",
    "deduplicate",
    "eval_items",
    "find_contamination",
    "find_duplicates",
    "match_keys",
    "stem_key",
]


def stem_key(question: str, options: Sequence[str] | None) -> str:
    """Comparison string: the question stem plus its option texts in sorted order, each as
    `compared_text` writes it.

    Why: m1 training prompts carry options shuffled with seed 42, while eval sets keep their
    own order (or give bare questions). Comparing full prompts then misses most real copies
    (reference section 3: an exact MedQA duplicate scored >= 95 only 24% of the time). Sorting
    the options makes the key order-free.
    """
    return _key(compared_text(question), options)


def _key(stem: str, options: Sequence[str] | None) -> str:
    """`stem_key` of a stem already written as `compared_text` writes it (what `_stems` returns)."""
    if not options:
        return stem
    return stem + "\n" + "\n".join(sorted(compared_text(o) for o in options))


def compared_text(text: str) -> str:
    """`text` as the matcher compares it: Unicode compatibility forms (NFKC: a non-breaking or
    full-width space is a space, full-width letters are letters), case folded, with no format
    characters (`_invisible`), every run of spaces and line breaks one space. Why: each such
    difference costs the ratio a character or more, and a verbatim copy re-scraped from a web
    page differs in all of them; copies with doubled spaces (188 of 200 MedQA test questions),
    non-breaking spaces (200 of 200), in upper case (all), or with a zero-width space after
    every word or soft hyphens in the long ones (20 of 20) stayed in the training data (audits).
    The fuzzy ratio absorbs the rest."""
    even = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    if even.isprintable():  # no format character (they are not printable): nearly every row, at no cost
        return even
    return " ".join(even.translate(_invisible()).split())  # split again: "a \u200b b" is "a b"


# Format characters that are drawn (Unicode's Prepended_Concatenation_Mark: the Arabic number and
# year signs, the end of ayah, Syriac and Kaithi marks): a text with one reads otherwise than without
_VISIBLE_FORMAT = frozenset((*range(0x0600, 0x0606), 0x06DD, 0x070F, 0x0890, 0x0891, 0x08E2, 0x110BD, 0x110CD))


@functools.cache
def _invisible() -> dict[int, None]:
    """Unicode's format characters (category Cf: zero-width spaces and joiners, soft hyphens,
    word joiners, byte order marks, direction marks), as a `str.translate` table that deletes
    them: they are not seen, so a text with them is the same text to a reader. Not the few that
    are drawn (`_VISIBLE_FORMAT`). Built on first use (every code point: a fraction of a second),
    not at import."""
    return {code: None for code in range(sys.maxunicode + 1)
            if unicodedata.category(chr(code)) == "Cf" and code not in _VISIBLE_FORMAT}


def match_keys(ds: Dataset) -> list[str]:
    """What rows are compared on by default: context (PubMedQA's abstract) and stem, plus the
    option set in sorted order, so a copy whose options were shuffled differently still matches."""
    return _keys(*_questions(ds))


def _keys(stems: list[str], options: list[Sequence[str] | None]) -> list[str]:
    """`match_keys` of stems and options already read."""
    return [_key(stem, opts) for stem, opts in zip(stems, options)]  # stems are compared texts already


def _questions(ds: Dataset, what: str = "the rows", id_column: str = "id") -> tuple[list[str], list[Sequence[str] | None]]:
    """Each row's stem (`_stems`) and options (`_options`), read as the eval files read them
    (`m1data.reading.evalsets.question_stem`): a leading "Question:" label and a trailing list of
    the row's own options are not its stem; a row with no options of its own whose question
    writes them at its end ("...\nA. x\nB. y") has those options (`options_in_question`). Why
    the same reading: rows and in-memory eval sets kept the label and the list that eval files
    lose, and 299 of 300 verbatim MedMCQA copies whose question wrote its options beside an
    options column stayed (audit); before that, such a question was compared, options and all,
    with a training copy's stem alone."""
    from m1data.reading.evalsets import question_stems

    options = _options(ds, what, id_column)
    if not len(ds) or "question" not in ds.column_names:
        return _stems(ds, what, id_column), options  # no rows, or the error that there is no question
    questions = column_values(ds, "question")  # what is no str, _stems names
    plain = []  # rows whose options are their own, not written in the question
    for i, question in enumerate(questions):
        written = None if options[i] or not isinstance(question, str) else _written_options(question)
        if written is None:
            plain.append(i)
        else:
            questions[i], options[i] = written
    for i, stem in zip(plain, question_stems([questions[i] for i in plain], [options[i] for i in plain])):
        questions[i] = stem
    return _stems(ds, what, id_column, questions), options


def _written_options(question: str) -> tuple[str, list[str]] | None:
    """(stem, options) of a question that writes its options at its end (`options_in_question`),
    the stem as the eval readers leave it (`question_stem`); None when it writes none. The one
    reading for rows and for plain-string eval questions."""
    from m1data.reading.evalsets import question_stem
    from m1data.reading.readers import options_in_question

    inline = options_in_question(question)
    return None if inline is None else (question_stem(*inline), inline[1])


def _stems(ds: Dataset, what: str = "the rows", id_column: str = "id", questions: list[str] | None = None) -> list[str]:
    if not len(ds):  # no rows (an empty list has no columns either): nothing to compare
        return []
    if "question" not in ds.column_names:
        raise UserError(
            f"{what}: rows are compared on question stem + option set by default, and these have no 'question' "
            f"column (columns: {ds.column_names}); pass column= to compare another one"
        )
    contexts = _contexts(ds, what, id_column) if "context" in ds.column_names else [""] * len(ds)
    questions = column_values(ds, "question") if questions is None else questions
    return [compared_text(f"{c}\n{q}" if c else q) if isinstance(q, str) else q for c, q in zip(contexts, questions)]


def _contexts(ds: Dataset, what: str, id_column: str) -> list[str]:
    """Each row's context as text. A Hub PubMedQA row holds {"contexts": [...], "labels": ...,
    "meshes": ...}, another layout a list of paragraphs: both are joined as the loaders join
    them. Why: such a context was compared as its Python repr, and 497 of 500 verbatim copies of
    the PubMedQA test set stayed in rows brought in that shape."""
    values, kind = column_values(ds, "context"), column_array(ds, "context").type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return [c or "" for c in values]
    from m1data.reading.readers import context_text

    out = []
    for i, value in enumerate(values):
        try:
            out.append(context_text(value))
        except RowError as err:
            raise UserError(f"{what}: row {row_name(ds, i, id_column)}: {err}; fix the context or remove the row") from None
    return out


def _options(ds: Dataset, what: str = "the rows", id_column: str = "id") -> list[Sequence[str] | None]:
    """Each row's option texts (None: the row has none), read as the loaders read options: a list,
    a {letter: text} dict (MedQA's own layout), label and text side by side, or a cell of text
    (``lettered_options``), with letters written into the texts ("A. x") taken off
    (``strip_option_letters``). The same reading for the rows and the eval sets, so a copy is
    compared like with like. Why: a dict's sorted keys were its options ("A\nB\nC\nD", so any
    two questions with one stem were duplicates), and letters were taken off the eval side only.
    Rows with an ``answer_letter`` column (m1data's schema, which other pipelines write too) are
    read so as well: they were once used as they were, and 97 of 100 copies whose options carried
    their letters stayed (audit)."""
    from m1data.reading.readers import lettered_options, strip_option_letters

    if "options" not in ds.column_names:
        return _options_elsewhere(ds, what, id_column)
    values = column_values(ds, "options")
    read = _as_is if _text_lists(column_array(ds, "options")) else lettered_options  # lists of texts need no reading
    out: list[Sequence[str] | None] = []
    for i, value in enumerate(values):
        try:  # labels out of order come off too: the key sorts the options and no answer is read
            out.append(None if value is None else strip_option_letters(read(value), strict=False))
        except RowError as err:
            raise UserError(f"{what}: row {row_name(ds, i, id_column)}: {err}; fix the options or remove the row") from None
    return out


def _options_elsewhere(ds: Dataset, what: str, id_column: str) -> list[Sequence[str] | None]:
    """`_options` of rows with no `options` column, which may write them as eval files do: in
    `choices` (MMLU), one column each (MedMCQA's `opa..opd`, `A..D`) or GPQA's columns
    (`written_options`). A row that fills none of them has no options (None)."""
    from m1data.reading.evalsets import OPTION_LAYOUT_COLUMNS, written_options
    from m1data.reading.readers import strip_option_letters

    present = [name for name in ds.column_names if name in OPTION_LAYOUT_COLUMNS]
    if not present:
        return [None] * len(ds)
    columns = [column_values(ds, name) for name in present]
    out: list[Sequence[str] | None] = []
    for i, values in enumerate(zip(*columns)):
        raw = {name: value for name, value in zip(present, values) if value is not None}
        try:
            out.append(strip_option_letters(written_options(raw), strict=False) or None)
        except RowError as err:
            raise UserError(f"{what}: row {row_name(ds, i, id_column)}: {err}; "
                            "fix the options or remove the row") from None
    return out


def _as_is(options: list[str]) -> list[str]:
    return options


def _text_lists(column: pa.ChunkedArray) -> bool:
    """Lists of texts with no null text in them."""
    kind = column.type
    return (pa.types.is_list(kind) or pa.types.is_large_list(kind)) and pa.types.is_string(kind.value_type) \
        and not any(chunk.flatten().null_count for chunk in column.chunks)


def _require_column(ds: Dataset, column: str | None, what: str) -> None:
    """`--column` names a column that is not there: the user's to fix, said in one line."""
    if column is not None and column not in ds.column_names:
        raise UserError(f"no column {column!r} to compare in {what}; its columns are {', '.join(ds.column_names)}")


def _require_texts(ds: Dataset, column: str | None, id_column: str) -> None:
    """Every compared value (`column`, else the question) is a str, or the row is named by its
    id, as other per-row errors name rows: the matcher can only give a position ("texts[1] is
    NoneType"), and a None question with a context was compared as the text "None"."""
    check_texts(ds, column or "question", "comparing rows", id_column)  # no question: _stems says what to do


@datasets_bars_off()
def deduplicate(ds: Dataset, column: str | None = None, threshold: float = 95.0,
                id_column: str = "id", runner: BandRunner | None = None) -> tuple[Dataset, Dataset]:
    """(kept, dropped). dropped: id, source (empty when ds has none), reason, match_id, score.

    Rows are compared on :func:`match_keys` (stem + sorted options, as the build's stages do), or
    on ``column`` when given. Ids come from ``id_column`` when present, else the row index.
    ``runner`` runs the matcher's bands elsewhere (m1data.running.distributed), same removals.
    ``ds`` may also be a pandas or polars DataFrame or a list of row dicts; both results are Datasets.
    """
    ds = as_dataset(ds, "the rows")
    _require_column(ds, column, "the rows")
    _require_texts(ds, column, id_column)
    texts = column_values(ds, column) if column else match_keys(ds)
    ids = _row_ids(ds, id_column)
    if "attempt" in ds.column_names:  # traces' output: a question's tries go or stay together
        removed = _tries_removed(texts, ids, threshold, runner)
    else:
        matches = find_duplicates(texts, threshold=threshold, runner=runner)
        removed = [(m.index, m.match_index, m.score) for m in matches]
    dropped_idx = [row for row, _, _ in removed]
    record = _removal_record(ds, ids, dropped_idx, "near_duplicate")
    record["match_id"] = [ids[match] for _, match, _ in removed]
    record["score"] = [score for _, _, score in removed]
    return _split(ds, dropped_idx, record, id_column, ["match_id"])


def _tries_removed(texts: list[str], ids: list[Any], threshold: float,
                   runner: BandRunner | None) -> list[tuple[int, int, float]]:
    """(row, matched row, score) of each row removed when the rows of one question's tries
    (`q17-try1`, `q17-try3`: traces' `keep: all`) are compared as that one question, by its first
    row: all of them go, or none. Why: compared row by row, a question's second try was an exact
    copy of its first and was removed, undoing `keep: all` (audit)."""
    first: dict[Any, int] = {}
    heads = [first.setdefault(question_id(i), at) for at, i in enumerate(ids)]  # each row's question's first row
    questions = sorted(set(heads))
    found = {questions[m.index]: (questions[m.match_index], m.score)
             for m in find_duplicates([texts[i] for i in questions], threshold=threshold, runner=runner)}
    return [(row, *found[head]) for row, head in enumerate(heads) if head in found]


@datasets_bars_off()
def decontaminate(ds: Dataset, evals: Mapping[str, Dataset | Sequence[str]] | Sequence[Dataset | str],
                  column: str | None = None, threshold: float = 95.0,
                  id_column: str = "id", runner: BandRunner | None = None) -> tuple[Dataset, Dataset]:
    """(kept, dropped). dropped: id, source (empty when ds has none), reason, eval_set, eval_id,
    eval_text, score: the eval text that matched (a stem + option-set key, or the stem alone when
    the stem pass found the row) and its score.

    By default both sides are compared as the build's stage compares them: eval rows that have
    options on :func:`match_keys`; bare eval questions (plain strings, or Datasets without an
    ``options`` column) against the rows' stems, unless they write their options at their end
    ("...\nA. x\nB. y"), which are then read as their options. With ``column`` every side uses that column.
    An eval Dataset's item id is its ``id`` column (else the row index) and its set name the
    mapping key (else its ``source`` column, else "eval"). Plain strings get set name "eval" (or
    the mapping key) and their position; a str list item that names an eval set or a file is
    refused, not compared as a question. Eval files are given as ``EvalInput``s (or paths: a
    mapping value, str or Path, or a Path list item) and read by
    ``m1data.reading.evalsets.load_evals``, as the command line and the build read them. The
    rows, and an eval set, may also be a pandas or polars DataFrame or a list of row dicts
    (``m1data.schema.as_dataset``); both results are Datasets.
    """
    ds = as_dataset(ds, "the rows")
    _require_column(ds, column, "the rows")
    _require_texts(ds, column, id_column)
    items = eval_items(evals, column)
    if column:
        matches = find_contamination(column_values(ds, column), items, threshold=threshold, runner=runner)
    else:
        keyed = [item for item in items if item.keyed]
        bare = [item for item in items if not item.keyed]
        stems, options = _questions(ds)  # read once: 2 s of the three passes at 1M rows
        keys = _keys(stems, options) if keyed else []
        matches = _best_per_row(
            find_contamination(keys, keyed, threshold=threshold, runner=runner) if keyed else [],
            _same_question(stems, options, keyed, threshold, runner) if keyed else [],
            find_contamination(stems, bare, threshold=threshold, runner=runner) if bare else [],
        )
    ids = _row_ids(ds, id_column)
    dropped_idx = [m.index for m in matches]
    record = _removal_record(ds, ids, dropped_idx, "contaminated")
    record["eval_set"] = [m.set_name for m in matches]
    record["eval_id"] = [m.item_id for m in matches]
    record["eval_text"] = [m.eval_text for m in matches]
    record["score"] = [m.score for m in matches]
    return _split(ds, dropped_idx, record, id_column, [])


def _same_question(stems: list[str], options: list[Sequence[str] | None], keyed: list[EvalText],
                   threshold: float, runner: BandRunner | None) -> list[ContamMatch]:
    """Rows whose stem matches a keyed eval item's stem and that share more than half of the
    smaller of the two option sets: the same question with an option added, dropped or
    rewritten, which the stem + option-set key can miss.

    Why: the key of a copy with one more option is longer by that option. Real rows: 21 of the
    1,273 MedQA-USMLE test questions in their 5-option form, each with a stem identical to its
    4-option copy in the eval set, kept the key under 95 because their options are long, and
    stayed in the training data. Why not stems alone: a stem like "Which of the following is
    true?" belongs to many different questions, told apart by their options."""
    items = [EvalText(k.set_name, k.item_id, k.stem if k.stem is not None else k.text) for k in keyed]
    rows, evals, scores = contamination_pairs(stems, items, threshold=threshold, runner=runner)
    best: dict[int, tuple[int, float]] = {}
    for row, item, score in zip(rows.tolist(), evals.tolist(), scores.tolist()):  # by row, then eval item
        if (row not in best or score > best[row][1]) and _same_options(options[row], keyed[item].options):
            best[row] = (item, score)
    # the eval text reported is the stem that scored, so a dropped row shows what it was compared with
    return [ContamMatch(row, items[item].set_name, items[item].item_id, items[item].text, score)
            for row, (item, score) in sorted(best.items())]


def _same_options(a: Sequence[str] | None, b: Sequence[str]) -> bool:
    """More than half of the smaller option set is in the other, each option as the keys compare
    it (``compared_text``; a set of one or two must be shared whole). A side
    with no options has only its stem to compare, and the stems matched: like with like
    (reference s.3), as bare eval questions are compared with the rows' stems. Why: a training
    row without options was compared with the eval items' stem + option keys only, and 128 of
    200 bare copies of MedQA-USMLE test questions stayed."""
    first, second = _option_set(a or ()), _option_set(b)
    if not first or not second:
        return True
    return 2 * len(first & second) > min(len(first), len(second))


def _option_set(options: Sequence[str]) -> set[str]:
    return {compared_text(str(o)) for o in options}  # as the keys compare them


def _best_per_row(*found: list[ContamMatch]) -> list[ContamMatch]:
    """One match per row, the higher score; the earlier list wins a tie."""
    best: dict[int, ContamMatch] = {}
    for match in (m for matches in found for m in matches):
        if match.index not in best or match.score > best[match.index].score:
            best[match.index] = match
    return [best[i] for i in sorted(best)]


def _removal_record(ds: Dataset, ids: list[Any], dropped_idx: list[int], reason: str) -> dict[str, list[Any]]:
    """The columns every dropped row carries: id, source (empty when ds has none) and reason."""
    sources = column_values(ds, "source") if "source" in ds.column_names else [""] * len(ds)
    return {"id": [ids[i] for i in dropped_idx], "source": [sources[i] for i in dropped_idx],
            "reason": [reason] * len(dropped_idx)}


def eval_items(evals: Mapping[str, Dataset | Sequence[str]] | Sequence[Dataset | str],
               column: str | None = None) -> list[EvalText]:
    """Flatten the accepted eval inputs into EvalText items (see ``decontaminate``). Files
    (`EvalInput`s, or paths as mapping values) are read by `m1data.reading.evalsets.load_evals`, the
    reading every other door uses."""
    out: list[EvalText] = []
    if isinstance(evals, (str, bytes)):
        raise TypeError("evals must be a mapping or a sequence of eval sets or questions, not a single str; "
                        "pass [question] for one question")
    if isinstance(evals, Mapping):  # a DatasetDict too: each split a set
        for name, value in evals.items():
            if isinstance(value, str) and not Path(value).exists():  # a str value can only be a file
                raise UserError(f"eval set {name}: {value!r} is no file; a set's questions go in a list or a Dataset")
            if isinstance(value, (str, os.PathLike)):
                out.extend(eval_items(_read_files([_eval_input(str(name), value)]), column))
            else:
                out.extend(_eval_from(value, column, str(name)))
        return out
    if hasattr(evals, "column_names") or is_frame(evals):  # one set: iterated, it gave rows, not questions
        return _eval_from(evals, column, None)
    for i, e in enumerate(evals):
        if isinstance(e, str):
            _refuse_a_set_given_as_a_question(e)
            out.append(_question_item("eval", str(i), e, column))
        elif isinstance(e, os.PathLike) or _is_eval_input(e):
            out.extend(eval_items(_read_files([e if _is_eval_input(e) else _eval_input(None, e)]), column))
        else:
            out.extend(_eval_from(e, column, None))
    return out


def _refuse_a_set_given_as_a_question(text: str) -> None:
    """A str in a list of evals is a question; one that names an eval set or a file is a set
    meant to be read. Why refused: `decontaminate(rows, ["medqa_test"])` compared the rows with
    the text "medqa_test", removed nothing, and said nothing."""
    from m1data.reading.evalsets import known_eval_set

    if known_eval_set(text) or (len(text) < 4096 and Path(text).is_file()):
        raise UserError(f"{text!r} in a list of evals is read as a question, yet it names an eval set or a file; "
                        f"to read it give EvalInput({text!r}) (m1data.reading.evalsets) or {{name: path}}")


def _is_eval_input(value: Any) -> bool:
    from m1data.reading.evalsets import EvalInput

    return isinstance(value, EvalInput)


def _eval_input(name: str | None, path: os.PathLike) -> Any:
    from m1data.reading.evalsets import EvalInput

    return EvalInput(str(path)) if name is None else EvalInput(name, str(path))


def _read_files(specs: list[Any]) -> dict[str, Dataset]:
    from m1data.reading.evalsets import load_evals

    return load_evals(specs)


def _eval_from(value: Dataset | Sequence[str], column: str | None, name: str | None) -> list[EvalText]:
    if isinstance(value, str):
        raise TypeError("an eval set must be a Dataset or a sequence of strings, not a str")
    what = f"eval set {name or 'eval'}"
    _refuse_other_containers(value, what)
    if is_frame(value) or (isinstance(value, list) and value and all(isinstance(row, dict) for row in value)):
        value = as_dataset(value, what)  # rows, as the training side may be given
    if hasattr(value, "column_names"):
        has_options = "options" in value.column_names
        _require_column(value, column, what)
        check_texts(value, column or "question", what)
        ids = column_values(value, "id") if "id" in value.column_names else list(range(len(value)))
        if name is not None:
            names = [name] * len(value)
        elif "source" in value.column_names:
            names = [str(s) for s in column_values(value, "source")]
        else:
            names = ["eval"] * len(value)
        if column:
            return [EvalText(n, str(i), t) for n, i, t in zip(names, ids, column_values(value, column))]
        return [EvalText(n, str(i), _key(stem, options), True, stem, tuple(options or ()))
                if has_options or options else EvalText(n, str(i), stem)  # bare: compared with the rows' stems
                for n, i, stem, options in zip(names, ids, *_questions(value, what))]
    questions = list(value)
    for i, question in enumerate(questions):
        if not isinstance(question, str):
            raise UserError(f"{what}: question {i} is {type(question).__name__}, not str; "
                            "fill it in or remove it")
    return [_question_item(name or "eval", str(i), t, column) for i, t in enumerate(questions)]


def _question_item(set_name: str, item_id: str, question: str, column: str | None) -> EvalText:
    """A plain-string eval question: compared on its stem and the options it writes at its end
    (`options_in_question`) when it writes them, as a Dataset row without options is; else a
    bare question, compared with the rows' stems (with ``column``: with that column)."""
    written = None if column else _written_options(question)
    if written is None:
        return EvalText(set_name, item_id, question if column else compared_text(question))
    stem, options = written
    return EvalText(set_name, item_id, stem_key(stem, options), True, compared_text(stem), tuple(options))


def _refuse_other_containers(value: Any, what: str) -> None:
    """A DatasetDict or a streamed IterableDataset inside the evals, said in one line: the first
    was read as one set whose columns were its splits, the second failed on ``len()``."""
    from datasets import DatasetDict, IterableDataset, IterableDatasetDict

    if isinstance(value, (DatasetDict, IterableDatasetDict)):
        raise UserError(f"{what} is a {type(value).__name__} of splits {list(value)}: give one split "
                        f"(evals={{name: dd[{next(iter(value), 'test')!r}]}}), or the DatasetDict itself as evals "
                        "(each split a set)")
    if isinstance(value, IterableDataset):
        raise UserError(f"{what} is a streamed IterableDataset; load it without streaming=True, or "
                        "Dataset.from_list(list(it))")


def _row_ids(ds: Dataset, id_column: str) -> list[Any]:
    if id_column in ds.column_names:
        return column_values(ds, id_column)
    return list(range(len(ds)))


def _split(ds: Dataset, dropped_idx: list[int], record: dict[str, list[Any]], id_column: str,
           id_like: list[str]) -> tuple[Dataset, Dataset]:
    """Kept rows and the dropped table (pipeline.dropped_rows), with explicit features so that an
    empty one keeps its columns."""
    from datasets import Dataset, Features, Value

    id_feature = ds.features[id_column] if id_column in ds.column_names else Value("int64")
    base = {"id": id_feature, "source": ds.features["source"] if "source" in ds.column_names else Value("string")}
    rows = Dataset.from_dict({name: record[name] for name in base}, features=Features(base))
    columns = {
        name: (values, id_feature if name in id_like else Value("float64") if name == "score" else Value("string"))
        for name, values in record.items() if name not in (*base, "reason")
    }
    dropped = dropped_rows(rows, record["reason"], columns)
    drop = set(dropped_idx)
    return ds.select([i for i in range(len(ds)) if i not in drop], new_fingerprint=fresh_fingerprint()), dropped


# ---------------------------------------------------------------------------------------------
# Pipeline stages


@dataclass
class DedupConfig:
    threshold: float = 95.0
    column: str | None = None  # None: the question stem + sorted options (match_keys)

    def __post_init__(self) -> None:
        """Checked when the config is read: a 0-1 threshold (0.95) was refused only when the stage
        ran, after the sources had been loaded."""
        _check_threshold(self.threshold)


@dataclass
class DecontaminateConfig:
    threshold: float = 95.0
    ngram: int = 8  # word n-gram size of the second, independent check (s1's); 0 turns it off
    # n-grams in more training rows than this are exam boilerplate and ignored (m1data.stages.ngram)
    ngram_max_train_rows: int = 3
    # a row is flagged when it holds this share of one eval question's n-grams (m1data.stages.ngram)
    ngram_min_share: float = 0.3

    def __post_init__(self) -> None:
        """Checked when the config is read: `ngram: -1` was refused only after the fuzzy match
        had run (the command line's `--ngram` already refused it)."""
        _check_threshold(self.threshold)
        if isinstance(self.ngram, bool) or not isinstance(self.ngram, numbers.Integral) or self.ngram < 0:
            raise UserError(f"ngram must be 0 (off) or a word n-gram size, got {self.ngram!r}")
        if self.ngram_max_train_rows < 1:
            raise UserError(f"ngram_max_train_rows must be at least 1, got {self.ngram_max_train_rows}")
        if not 0.0 < self.ngram_min_share <= 1.0:
            raise UserError(f"ngram_min_share must be in (0, 1], a share of an eval question's n-grams, "
                            f"got {self.ngram_min_share}")


class UnscoredEvalWarning(UserWarning):
    """Eval questions whose answer key is broken: they cannot be scored, yet they are matched."""


class Deduplicate(Stage):
    """Fuzzy dedup (OpenThoughts semantics, exact all-pairs answer) on `match_keys`."""

    name = "dedup"

    def __init__(self, config: DedupConfig, name: str = "dedup"):
        self.config = config
        self.name = name

    def columns_after(self, before: frozenset[str] | None) -> frozenset[str] | None:
        return before  # a selection of its rows

    def run(self, rows: Dataset | None, ctx: RunContext) -> StageResult:
        cfg = self.config
        kept, dropped = deduplicate(rows, column=cfg.column, threshold=cfg.threshold, runner=band_runner(ctx))
        return StageResult(rows=kept, dropped=dropped)


class Decontaminate(Stage):
    """Removes training rows that match any eval item; eval sets come from the loaders."""

    name = "decontaminate"

    def __init__(self, config: DecontaminateConfig, evals: Sequence[Any], name: str = "decontaminate"):
        from m1data.reading.evalsets import EvalInput, check_once

        self.config = config
        # `EvalInput`s, or their text form ("NAME", "FILE", "NAME=FILE") as a config may list them
        self.evals = [EvalInput.parse(e) if isinstance(e, str) else e for e in evals]
        for entry in self.evals:
            entry.check()
        check_once(self.evals)
        self.name = name

    def columns_after(self, before: frozenset[str] | None) -> frozenset[str] | None:
        return before  # a selection of its rows

    def config_dict(self) -> dict[str, Any]:
        return {**super().config_dict(), "evals": [dataclasses.asdict(e) for e in self.evals]}

    def external_fingerprint(self) -> str:
        from m1data.running.pipeline import input_digest

        files = [e.local_file for e in self.evals]  # (a file given alone is its entry's name)
        return ",".join(input_digest(f) for f in files if f and Path(f).exists())

    def run(self, rows: Dataset | None, ctx: RunContext) -> StageResult:
        from m1data.reading.evalsets import (
            load_evals,  # the eval loaders are needed only when the stage runs
            unscored_counts,
        )

        eval_sets = load_evals(self.evals)
        unscored = unscored_counts(eval_sets)
        for name, count in unscored.items():
            warnings.warn(f"{name}: {count:,} of {len(eval_sets[name]):,} questions have no usable answer key; "
                          "they cannot be scored but stay decontamination targets", UnscoredEvalWarning, stacklevel=2)
        kept, dropped = decontaminate(rows, eval_sets, threshold=self.config.threshold, runner=band_runner(ctx))
        stats: dict[str, Any] = {
            "eval_items": {name: len(ds) for name, ds in eval_sets.items()},
            # of eval_items, the questions whose answer key is broken: matched all the same
            "eval_items_unscored": unscored,
            "by_eval_set": dict(sorted(Counter(column_values(dropped, "eval_set")).items())),
        }
        if self.config.ngram:
            stats["ngram_check"] = self._ngram_report(rows, eval_sets, set(dropped["id"]))
        return StageResult(rows=kept, dropped=dropped, stats=stats)

    def _ngram_report(self, rows: Dataset, eval_sets: dict[str, Dataset], fuzzy_ids: set[str]) -> dict[str, Any]:
        """What the word n-gram check flags, beside the fuzzy verdict, so users see what each catches;
        the rows it flags and the fuzzy match kept are listed (``ngram_only_rows``), so "candidates
        to inspect" can be found (`m1data funnel` shows them).

        It reads question stems (with PubMedQA's context) only: option lists ("Vitamin A, Vitamin
        B12, ...") recur across unrelated questions and are no evidence of a copy.
        """
        from m1data.stages.ngram import ngram_overlap

        eval_texts = [stem for ds in eval_sets.values() for stem in _stems(ds)]
        eval_refs = [(name, str(i)) for name, ds in eval_sets.items() for i in _row_ids(ds, "id")]
        limit, share = self.config.ngram_max_train_rows, self.config.ngram_min_share
        hits = ngram_overlap(_stems(rows), eval_texts, n=self.config.ngram, max_train_rows=limit, min_share=share)
        flagged = {i: h for i, h in zip(_row_ids(rows, "id"), hits) if h is not None}
        only = sorted(set(flagged) - fuzzy_ids)
        return {
            "n": self.config.ngram,
            "common_ngram_rows": limit,  # n-grams in more training rows than this were ignored
            "min_share": share,  # a flagged row holds at least this share of one eval question's n-grams
            "flagged": len(flagged),
            "both": len(flagged.keys() & fuzzy_ids),
            "ngram_only": len(only),
            "fuzzy_only": len(fuzzy_ids - flagged.keys()),
            # the rows to inspect, each with the (first) eval question it holds so much of
            "ngram_only_rows": [{"id": i, "eval_set": eval_refs[flagged[i]][0], "eval_id": eval_refs[flagged[i]][1]}
                                for i in only],
        }
