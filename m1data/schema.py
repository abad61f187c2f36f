"""The one row schema every m1data stage reads and writes.

A row is a plain dict with the columns in `ROW_FEATURES`. Loaders build rows with `make_row`,
which validates them (raising `RowError` with a short machine-readable reason, so bad rows can
be dropped with a reason, never silently) and shuffles the options.

Why shuffle per row from (seed, id): the letter of the right answer must not be a learnable bias,
and a row's options must never depend on row order, sharding or which other rows were loaded.
Seeding a private generator from the row's own id gives exactly that.

Why `metadata` is a JSON string: the four sources have unrelated raw shapes, and one Arrow struct
cannot hold them all. The raw row is kept verbatim so every published row can be traced back.
"""

from __future__ import annotations

import hashlib
import json
import numbers
import re
import string
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from m1data.errors import M1DataError, UserError
from m1data.reading.registry import SOURCE_REGISTRY

LETTERS = string.ascii_uppercase
SOURCES = tuple(SOURCE_REGISTRY)  # the built-in sources, in the paper's column order
DEFAULT_SEED = 42

ROW_FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "source": datasets.Value("string"),
        "question": datasets.Value("string"),
        "context": datasets.Value("string"),
        "options": datasets.List(datasets.Value("string")),
        "answer_idx": datasets.Value("int32"),
        "answer_letter": datasets.Value("string"),
        "answer_text": datasets.Value("string"),
        "prompt": datasets.Value("string"),
        "metadata": datasets.Value("string"),
    }
)

DROPPED_FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "source": datasets.Value("string"),
        "reason": datasets.Value("string"),
        "detail": datasets.Value("string"),
        "metadata": datasets.Value("string"),
    }
)


class RowError(M1DataError, ValueError):
    """A row that cannot be used; `reason` is a short code counted in the funnel."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def integer_key(value: Any) -> int | None:
    """The integer a numeric answer key holds: an int (numpy's too) or a whole, finite float (1.0,
    numpy's 2.0); None for a bool, 1.7, NaN, infinity or anything that is no number. The one
    reading of a number as a key, for every door (the file readers' `whole_number`, rows in the row
    schema, a Dataset given to `infer`). Why floats: pandas writes an integer column with a hole in
    it as floats, so a file or a frame a user saved keys its rows 1.0, 2.0 and null; read apart, the
    file readers took such keys and the row doors refused every row ("answer_idx 2.0 is not an
    option's index")."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        return None
    if isinstance(value, numbers.Integral):
        return int(value)
    number = float(value)
    return int(number) if number.is_integer() else None  # is_integer is False for NaN and infinity


def integer_keys(rows: datasets.Dataset) -> datasets.Dataset:
    """`rows` with a float `answer_idx` column (pandas' 1.0, 2.0 and null, `integer_key`) cast to
    integers. The caller has taken out every key that is not whole. Why: the keys are indices
    (`LETTERS[key]`, `options[key]`, `grade`), and a float column no longer joins the integer one
    of other rows (an eval set's unscored rows, `LoadResult.targets`)."""
    feature = rows.features.get("answer_idx")
    if not isinstance(feature, datasets.Value) or not pa.types.is_floating(feature.pa_type):
        return rows
    return rows.cast_column("answer_idx", datasets.Value("int64"))


def option_label(letter: str) -> str:
    """The regex of an option's label as prompts and files write it: "(B)", "B.", "B)" or "B:"
    (before the option's text; compiled case-insensitive where "b." counts too). One pattern for
    every reader that finds a row's options in a text, so none accepts a label another misses."""
    return rf"(?:\({letter}\)|{letter}[.):])"


def content_id(source: str, question: str, options: Sequence[str]) -> str:
    """An id for sources without one (MedQA): stable under option order and whitespace."""
    key = "\n".join([" ".join(question.split()), *sorted(" ".join(o.split()) for o in options)])
    return f"{source}:{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def render_options(options: Sequence[str]) -> str:
    return "\n".join(f"{LETTERS[i]}. {text}" for i, text in enumerate(options))


def render_prompt(question: str, options: Sequence[str], context: str = "") -> str:
    """`{question}\\n{options}`, with PubMedQA's contexts on the lines before (reference s.2)."""
    parts = [context, question, render_options(options)] if context else [question, render_options(options)]
    return "\n".join(parts)


def key_problem(prompt: str, options: Sequence[str], answer_idx: Any, answer_letter: Any = None,
                answer_text: Any = None) -> RowError | None:
    """Why a row cannot be graded as it stands, or None: its `answer_letter` or `answer_text`
    names another option than `answer_idx`, or its prompt does not list `options`, and no more,
    in their order (a label of any style `OPTION_LABEL_STYLES` reads, each option's text after
    its letter, spacing aside). Why: the students and the teacher answer the prompt, and are
    graded by `options` and `answer_idx`; a row a researcher brings whose prompt shows other
    options in another order kept a wrong teacher answer as verified, and dropped the right one.
    Rows m1data loads always agree (`make_row`). A key that is no option's index, or options that
    are no list, are not this check's to judge: the stage stops on them, naming the row (a
    1-based column would otherwise be graded one option off, row by row)."""
    if (isinstance(answer_idx, bool) or not isinstance(answer_idx, int) or not isinstance(options, (list, tuple))
            or not 0 <= answer_idx < len(options) or len(options) > len(LETTERS)):
        return None
    letter = LETTERS[answer_idx]
    if isinstance(answer_letter, str) and answer_letter.strip() and answer_letter.strip().upper() != letter:
        return RowError("answer_mismatch", f"answer_letter {answer_letter!r} is not {letter}, which answer_idx "
                                           f"{answer_idx} names")
    named = options[answer_idx]
    if isinstance(answer_text, str) and answer_text.strip() and option_key(answer_text) != option_key(str(named)):
        return RowError("answer_mismatch", f"answer_text {answer_text!r} is not option {letter} "
                                           f"({options[answer_idx]!r}), which answer_idx {answer_idx} names")
    if prompt.endswith(render_options(options)):  # the prompt m1data writes
        return None
    return _unlisted_option(prompt, options)


def _unlisted_option(prompt: str, options: Sequence[str]) -> RowError | None:
    """The first option the prompt does not list after its letter, after the options before it
    (its text whole, then the end of its line, the next label or an "Answer"), or an option
    listed after the last."""
    at, end = 0, r"(?=\s*(?:$|\n|\(?[A-Z][.):)]|(?:the\s+)?(?:correct\s+)?answer\b))"
    for i, option in enumerate(options):
        body = r"\s+".join(re.escape(word) for word in str(option).split())
        pattern = rf"(?:^|(?<=\s)){option_label(LETTERS[i])}\s*{body}{end}"
        found = re.compile(pattern, re.IGNORECASE).search(prompt, at)
        if found is None:
            return RowError("prompt_mismatch", f"the prompt does not list option {LETTERS[i]} ({option!r}) after its "
                                               "letter, in the order of `options`; build it with "
                                               "m1data.schema.render_prompt")
        at = found.end()
    extra = LETTERS[len(options)] if len(options) < len(LETTERS) else None  # a label on the next line, or "(E)" on this one
    if extra and re.compile(rf"\s*(?:\n\s*{option_label(extra)}\s+\S|\({extra}\)\s*\S)").match(prompt, at):
        return RowError("prompt_mismatch", f"the prompt lists an option {extra} after the {len(options)} of `options`")
    return None


def shuffled(options: Sequence[str], answer_idx: int, seed: int, row_id: str) -> tuple[list[str], int]:
    """Options in a per-row random order, and where the right answer went.

    A Fisher-Yates shuffle driven by a 128-bit hash of (seed, id) read as mixed-radix digits:
    reproducible on any machine and Python version, and its bias (n!/2**128) is nil. An option
    that speaks of the others' places keeps its own (`_in_place`): "All of the above" moved to B
    covered one option, and a key "All of the above" became wrong (5 of 1,089 MMLU rows, 4 of 818
    MMLU-Pro rows moved so; audit). The others are shuffled among the remaining places, and a
    row without such an option is shuffled exactly as before.
    """
    state = int.from_bytes(hashlib.blake2b(f"{seed}:{row_id}".encode(), digest_size=16).digest(), "big")
    order = list(range(len(options)))
    kept = _in_place(options)
    free = [i for i in order if i not in kept]
    moved = free[:]
    for i in range(len(moved) - 1, 0, -1):
        state, j = divmod(state, i + 1)
        moved[i], moved[j] = moved[j], moved[i]
    for place, option in zip(free, moved):
        order[place] = option
    return [options[i] for i in order], order.index(answer_idx)


# "All of the above", "All the previous answers are correct", "None of these": an option about the
# options around it (not "all of these symptoms" or "either of them" inside a sentence)
_OF_THE_OTHERS = re.compile(r"\b(?:all|none|both|neither|either)\b(?:\s+of)?(?:\s+the)?\s+"
                            r"(?:above|previous|preceding)\b|\bof\s+the\s+above\b|^(?:all|none|both|neither)\s+of\s+the(?:se|m)\W*$",
                            re.IGNORECASE)
# "A and B", "Both A & C", "A, B and D", "A and B are correct": an option that is other options'
# letters, two or more of them (not "B." for B cells, "I only", "Vitamin A and D")
_NAMES_LETTERS = re.compile(r"(?:(?i:both|only|all|either|neither)\s+)?[A-J](?:\s*(?:,|&|(?i:and|or)\b)\s*[A-J])+"
                            r"(?:\s+(?i:only|both|are\s+(?:correct|true|right)))?\.?")


def _in_place(options: Sequence[str]) -> set[int]:
    """The options `shuffled` leaves where they are: each that speaks of the options above or
    around it; every option of a row where one names others by their letters (shuffled, "A and B"
    would name two other options)."""
    if any(isinstance(o, str) and _NAMES_LETTERS.fullmatch(o.strip()) for o in options):
        return set(range(len(options)))
    return {i for i, o in enumerate(options) if isinstance(o, str) and _OF_THE_OTHERS.search(o)}


def option_key(option: str) -> str:
    """An option's text as two options are told the same: without case and spacing. Why one
    definition: a row's duplicate options and an answer text that names its option must agree on
    what "the same option" is. (Dedup and decontamination compare `m1data.stages.dedup.compared_text`,
    which also folds Unicode compatibility forms: a question's copy, not a row's own options.)"""
    return " ".join(option.casefold().split())  # casefold: "STRASSE" is "Straße", the micro sign is mu


def validate(question: str, options: Sequence[str], answer_idx: int, *, unique_options: bool = True) -> None:
    if not question or not question.strip():
        raise RowError("empty_question")
    if len(options) < 2:
        raise RowError("too_few_options", f"{len(options)} option(s)")
    if len(options) > len(LETTERS):
        raise RowError("too_many_options", f"{len(options)} options")
    if any(not isinstance(o, str) or not o.strip() for o in options):
        raise RowError("empty_option")
    if not 0 <= answer_idx < len(options):
        raise RowError("answer_out_of_range", f"answer index {answer_idx} for {len(options)} options")
    if unique_options and len({option_key(o) for o in options}) != len(options):
        raise RowError("duplicate_options", " | ".join(options))
    problem = ambiguous_answer(options, answer_idx)  # eval sets keep other repeats: they grade as they should
    if problem:
        raise problem


def ambiguous_answer(options: Sequence[str], answer_idx: int) -> RowError | None:
    """Why a row cannot be scored when its answer's text is another option's too (`option_key`): a
    reply naming either grades correct (a real MedMCQA validation row has one text four times)."""
    keys = [option_key(o) for o in options]
    if keys.count(keys[answer_idx]) > 1:
        return RowError("ambiguous_answer", f"the answer {options[answer_idx]!r} is the text of another option too, so "
                                            f"a reply naming either grades correct: {' | '.join(options)}")
    return None


def make_row(
    *,
    source: str,
    row_id: str,
    question: str,
    options: Sequence[str],
    answer_idx: int,
    raw: Any,
    context: str = "",
    seed: int | None = DEFAULT_SEED,
    unique_options: bool = True,
) -> dict[str, Any]:
    """Validate and normalise one question. `seed=None` keeps the native option order (eval sets)."""
    question = question.strip() if isinstance(question, str) else ""
    options = [o.strip() if isinstance(o, str) else o for o in options]
    validate(question, options, answer_idx, unique_options=unique_options)
    if seed is not None:
        options, answer_idx = shuffled(options, answer_idx, seed, row_id)
    context = context.strip()
    return {
        "id": row_id,
        "source": source,
        "question": question,
        "context": context,
        "options": list(options),
        "answer_idx": answer_idx,
        "answer_letter": LETTERS[answer_idx],
        "answer_text": options[answer_idx],
        "prompt": render_prompt(question, options, context),
        "metadata": json.dumps(raw, ensure_ascii=False, default=str),
    }


def dropped_record(source: str, row_id: str, error: RowError, raw: Any) -> dict[str, str]:
    return {
        "id": row_id,
        "source": source,
        "reason": error.reason,
        "detail": error.detail,
        "metadata": json.dumps(raw, ensure_ascii=False, default=str),
    }


def rows_to_dataset(rows: list[dict[str, Any]], features: datasets.Features = ROW_FEATURES) -> datasets.Dataset:
    """Rows to a Dataset through one Arrow table: datasets' own per-value encoding is 10x slower."""
    return tables_to_dataset([rows_to_table(rows, features)])


def rows_to_table(rows: list[dict[str, Any]], features: datasets.Features = ROW_FEATURES) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=features.arrow_schema)


def tables_to_dataset(tables: list[pa.Table]) -> datasets.Dataset:
    """Arrow tables of one schema as one Dataset, without a copy. The fingerprint is fresh, not
    `datasets`' hash of the whole table, which serialises it: 1.4 GB more at 1M rows."""
    return datasets.Dataset(pa.concat_tables(tables), fingerprint=fresh_fingerprint())


def as_dataset(data: Any, what: str = "the rows") -> datasets.Dataset:
    """Rows as a Dataset, from what a researcher holds: a Dataset, a pandas or polars DataFrame
    (a pandas index is not a column), or a list of row dicts. The one conversion the library's
    doors share (the samplers, dedup, decontamination). Anything else is refused, not read as
    something it is not: a DataFrame iterated gave its column names as eval questions. A column
    whose values Arrow cannot hold in one type (ids 1 and "b") is one line that names it, not
    pyarrow's "Could not convert 'b' with type str: tried to convert to int64"."""
    if isinstance(data, datasets.Dataset):
        return data
    kind = type(data)
    frame = is_frame(data)
    if not frame and not (isinstance(data, list) and all(isinstance(row, dict) for row in data)):
        raise TypeError(f"{what} must be a datasets.Dataset, a pandas or polars DataFrame or a list of row dicts, "
                        f"got {kind.__name__}")
    try:
        if not frame:
            return datasets.Dataset.from_list(_every_key(data))
        if kind.__module__.startswith("pandas"):
            return datasets.Dataset.from_pandas(data, preserve_index=False)
        return datasets.Dataset.from_polars(data)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
        records = data if not frame else data.to_dicts() if hasattr(data, "to_dicts") else data.to_dict("records")
        raise UserError(f"{what}: {_mixed_column(records) or err}; give each column one type "
                          "(all str, say), with None for a missing value") from None


def _every_key(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each record with every key any record has (None where it has none). Why: `Dataset.from_list`
    takes its columns from the first record alone, so a `context` or `options` that only later
    rows had was dropped without a word, and those rows compared as if they had none."""
    keys = list(dict.fromkeys(key for record in records for key in record))
    if all(len(record) == len(keys) for record in records):
        return records
    return [{key: record.get(key) for key in keys} for record in records]


def is_frame(value: Any) -> bool:
    """A pandas or polars DataFrame, told by its type's name and module: neither package is
    imported to ask (a user who never loads them should not pay for it)."""
    kind = type(value)
    return kind.__name__ == "DataFrame" and kind.__module__.split(".")[0] in ("pandas", "polars")


def column_array(ds: datasets.Dataset, name: str) -> pa.ChunkedArray:
    """One column of `ds` in its rows' order, as Arrow holds it.

    Why not ``ds[name]``: since datasets 4 that is a lazy ``Column`` whose iteration formats the
    rows one by one (2.6 s for 200K short strings), and a Dataset that was shuffled, selected or
    filtered gathers its rows one slice at a time (0.6-0.9 s a column at 200K rows, where one
    Arrow ``take`` of the indices mapping takes 0.04 s). ``_indices`` is datasets' own name for
    that mapping; without one the table is the rows."""
    column = ds.data.column(name)
    indices = ds._indices  # noqa: SLF001 - the only handle on the mapping short of flattening every column
    return column if indices is None else column.take(indices.column(0))


def column_values(ds: datasets.Dataset | Mapping[str, Sequence[Any]], name: str) -> list[Any]:
    """One column of `ds` as a Python list (`column_array`): the values Python formatting gives
    (str, int, lists of str, None), 10-100x faster than ``list(ds[name])``. A batch already in
    Python (a dict of lists, as ``map(batched=True)`` and Ray Data hand over) is read as it is. A
    column whose values mix types (a context that is a dict in some rows of a JSONL and text in
    others) is decoded: `datasets` keeps it as JSON text, which was compared and checked as text."""
    if not isinstance(ds, datasets.Dataset):
        return list(ds[name])
    column = column_array(ds, name)
    if getattr(column.type, "extension_name", None) == "arrow.json":  # types mixed in one file (datasets' Json)
        return [None if v is None else json.loads(v) for v in column.to_pylist()]  # were read as their JSON text
    return column.to_pylist()


def flattened(ds: datasets.Dataset) -> datasets.Dataset:
    """`ds` as a Dataset whose table holds exactly its rows, in order, with no indices mapping:
    what ``ds.flatten_indices()`` gives (same rows, features, split and format), in memory.

    Why not ``flatten_indices``, nor writing a selection as it is: datasets gathers a shuffled,
    selected or filtered Dataset one slice per row there, and so does its ``to_parquet``: 5-7 s
    for 50K rows of m1data's schema, where one Arrow ``take`` of the mapping takes 0.05 s. Every
    stage that keeps some rows returns such a selection, and the pipeline writes each."""
    if ds._indices is None:  # noqa: SLF001 - see column_array
        return ds
    return with_table(ds, ds.data.table.take(ds._indices.column(0)))  # noqa: SLF001


def with_table(ds: datasets.Dataset, table: pa.Table) -> datasets.Dataset:
    """A Dataset like `ds` (info, split, format, a fresh fingerprint) that holds `table`, in
    memory: the rows of `ds` as a whole-column rewrite made them (same columns and types)."""
    from datasets.table import InMemoryTable

    flat = datasets.Dataset(InMemoryTable(table), info=ds.info.copy(), split=ds.split, fingerprint=fresh_fingerprint())
    # The format as datasets' own transforms pass it on: columns None (all, those added later too)
    # stays None, where ``ds.format["columns"]`` would pin today's list.
    flat.set_format(ds._format_type, columns=ds._format_columns, output_all_columns=ds._output_all_columns,  # noqa: SLF001
                    **ds._format_kwargs)  # noqa: SLF001
    return flat


def strings_by_row(array: pa.Array) -> Iterator[tuple[pa.Array, np.ndarray | None]]:
    """Every string array inside `array` (lists, maps and structs at any depth), each with the row
    of `array` each of its strings belongs to (None: its own rows). Other types hold no string
    (a union, the one that could, is no type a Dataset has: datasets has no feature for it)."""
    kind = array.type
    if isinstance(kind, pa.ExtensionType):
        yield from strings_by_row(array.storage)
    elif pa.types.is_dictionary(kind):
        yield from strings_by_row(array.dictionary_decode())
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        yield array, None
    elif pa.types.is_string_view(kind):
        yield array.cast(pa.large_string()), None
    elif any(test(kind) for test in (pa.types.is_list, pa.types.is_large_list, pa.types.is_fixed_size_list,
                                     pa.types.is_list_view, pa.types.is_large_list_view, pa.types.is_map)):
        parents = pc.list_parent_indices(array).to_numpy(zero_copy_only=False)
        for strings, row_of in strings_by_row(pc.list_flatten(array)):
            yield strings, parents if row_of is None else parents[row_of]
    elif pa.types.is_struct(kind):
        for field in array.flatten():
            yield from strings_by_row(field)


def rows_matching(array: pa.Array, pattern: str) -> np.ndarray:
    """The rows of `array`, ascending, that hold a string (at any depth: `strings_by_row`) the RE2
    `pattern` matches, found by Arrow (``match_substring_regex``) without a Python value per row."""
    rows = np.zeros(len(array), dtype=bool)
    for strings, row_of in strings_by_row(array):
        at = _matching(strings, pattern)
        rows[at if row_of is None else row_of[at]] = True
    return np.flatnonzero(rows)


def strings_matching(array: pa.Array, pattern: str) -> list[tuple[int, str]]:
    """(row, string) for each string of `array` (at any depth: `strings_by_row`) that the RE2
    `pattern` matches: only those become Python strings."""
    found: list[tuple[int, str]] = []
    for strings, row_of in strings_by_row(array):
        at = _matching(strings, pattern)
        rows = at if row_of is None else row_of[at]
        found += zip(rows.tolist(), strings.take(pa.array(at, type=pa.int64())).to_pylist())
    return found


def _matching(strings: pa.Array, pattern: str) -> np.ndarray:
    """Positions of the strings the RE2 `pattern` matches (nulls never do)."""
    return np.flatnonzero(pc.match_substring_regex(strings, pattern).fill_null(False).to_numpy(zero_copy_only=False))


def _mixed_column(records: list[dict[str, Any]]) -> str | None:
    """The first column whose values are of several kinds (None, and NaN, stand for no value;
    ints and floats are one kind, numbers), said as "column 'id' mixes int and str"."""
    kinds: dict[str, set[str]] = {}
    for record in records:
        for name, value in record.items():
            if value is None or (isinstance(value, float) and value != value):
                continue
            kind = "number" if isinstance(value, (int, float)) and not isinstance(value, bool) else type(value).__name__
            kinds.setdefault(name, set()).add(kind)
    for name, seen in kinds.items():
        if len(seen) > 1:
            return f"column {name!r} mixes {' and '.join(sorted(seen))} values"
    return None


def fresh_fingerprint() -> str:
    """A random name for a table m1data makes (new, a selection, with a column added).

    Why: without one, datasets names each table by pickling and hashing all of it and the call's
    arguments, for its own cache of `map` results, which m1data never reads (every stage writes
    its own parquet): about 10 ms a call on a small table, 0.26 s to make a 196K-row one, and
    the largest single cost of the test suite. datasets itself falls back to a random name."""
    from datasets.fingerprint import generate_random_fingerprint

    return generate_random_fingerprint()


_TRY_SUFFIX = re.compile(r"-try\d+$")


def question_id(row_id: Any) -> Any:
    """The question a row id names, without the try suffix that traces' `keep: all` gives each of
    a question's verified tries (`q17-try2` -> `q17`); any other id as it is."""
    return _TRY_SUFFIX.sub("", row_id) if isinstance(row_id, str) else row_id


__all__ = [
    "DEFAULT_SEED",
    "DROPPED_FEATURES",
    "LETTERS",
    "ROW_FEATURES",
    "SOURCES",
    "RowError",
    "ambiguous_answer",
    "as_dataset",
    "column_array",
    "column_values",
    "content_id",
    "dropped_record",
    "flattened",
    "fresh_fingerprint",
    "integer_key",
    "integer_keys",
    "is_frame",
    "make_row",
    "question_id",
    "option_key",
    "option_label",
    "render_options",
    "render_prompt",
    "rows_matching",
    "rows_to_dataset",
    "shuffled",
    "strings_by_row",
    "strings_matching",
    "validate",
    "with_table",
]
