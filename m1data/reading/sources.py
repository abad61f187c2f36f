"""Loaders for the four training sources, from the Hub ids m1 used or from native files, and for
a file of any other source through a column mapping.

Each source is one small class (m1data.reading.native) in the shape of a HF packaged builder: where its
rows come from (`hub_id`, `read_native`) and one `parse` that turns a raw record into the fields
of a row. The generic machinery in `m1data.reading.readers` does the rest: `collect` gives ids, validation,
shuffling, dropped records and progress; the field helpers type-check what `parse` reads.

Ids come from the source's own id where it has one (MedMCQA uuid, PubMedQA PMID, HeadQA
exam + qid) and from a content hash where it does not (MedQA), so the same question gets the same
id whichever file or split it was read from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from m1data.errors import UserError
from m1data.reading.evalsets import answer_kind_problem, column_mapping, files_questions, for_records, make_parser
from m1data.reading.native import (
    PUBMEDQA_OPTIONS,
    HeadQA,
    MedMCQA,
    MedQA,
    PubMedQA,
    Source,
    headqa_answers,
    pubmedqa_test_pmids,
)
from m1data.reading.readers import LoadResult, MalformedFile, check_some_rows_read, collect, source_files
from m1data.schema import DEFAULT_SEED

SOURCES: dict[str, Source] = {s.name: s for s in (MedQA(), HeadQA(), MedMCQA(), PubMedQA())}


def get_source(name: str) -> Source:
    try:
        return SOURCES[name.lower()]
    except KeyError:
        raise UserError(f"unknown source {name!r}; choose from {', '.join(SOURCES)}") from None


SOURCE_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_-.")


def check_source_name(name: str) -> str:
    """A source name becomes the prefix of every row id (`name:id`) and a funnel column: lower
    case letters, digits, `_`, `-` and `.` only, so ids stay unambiguous. Not a str (a number
    from a script) is refused the same way; `set(3)` was "'int' object is not iterable"."""
    if not isinstance(name, str) or not name or not set(name) <= SOURCE_NAME_CHARS:
        raise UserError(f"source name {name!r}: use lower-case letters, digits, '_', '-' or '.' (it prefixes row ids)")
    return name


def load_mapped(name: str, path: str | Path, mapping: dict[str, Any] | None = None, *, seed: int = DEFAULT_SEED,
                split: str | None = None) -> LoadResult:
    """A source m1data has no loader for: any .jsonl/.json/.csv/.tsv/.parquet file of questions (all
    but parquet compressed too), or a folder of them (a pool's shards; `split` picks one split's,
    `source_files`), read through the eval loaders' column mapping
    (`m1data.reading.evalsets.ColumnMapping`: question, options (one column holding a list or
    {letter: text}, or several columns), answer (a letter, a 0- or 1-based index or the option's
    text, decided once for all the source's records; `answer_kind` says which when they cannot
    tell), id, context; None guesses from the usual spellings). Rows get ids `name:<id column>`
    or, without one, a content hash, like the built-in sources."""
    check_source_name(name)
    columns = column_mapping(mapping, name)
    mapping = dict(mapping or {})
    if split is not None and not Path(path).is_dir():
        raise UserError(f"{name}: a mapped source's split picks one split's shards from a folder; {path} is read whole")
    files = source_files(path, split)
    where = files[0] if len(files) == 1 else Path(path)
    records = list(files_questions(files, columns))
    columns.check_columns([raw for _, raw, _ in records], where)
    # the answer column's kind (text, letter, 0- or 1-based index) is decided once for all the shards
    parse = for_records(make_parser(columns), [raw for _, raw, _ in records])
    if answer_kind_problem(parse):
        raise MalformedFile(where, None, answer_kind_problem(parse))
    result = collect(name, records, parse, seed=seed, description=f"loading {name}")
    return check_some_rows_read(result, where, name, expected="the columns named by the mapping "
                                f"({', '.join(f'{k}={v}' for k, v in mapping.items()) or 'guessed'})")


def load_source(
    name: str,
    path: str | Path | None = None,
    *,
    split: str | None = None,
    seed: int = DEFAULT_SEED,
    cop_base: int | None = None,
    mapping: dict[str, Any] | None = None,
) -> LoadResult:
    """Load one source into the row schema, from `path` (native file or Hub-export parquet, or a
    folder of its shards, `split`'s where it holds several splits') or, without a path, from the
    Hub id m1 used. `cop_base` (MedMCQA only) says whether a local
    file's `cop` counts from 0 or 1 when its values cannot tell (see `MedMCQA`). A `mapping`,
    or a name that is not one of the four sources, reads `path` through a column mapping
    (`load_mapped`). The name follows `check_source_name` whichever source it is, as a build
    config's `sources:` keys do: `m1data load MedQA` was read as medqa while the same key in a
    config was refused."""
    check_source_name(name)
    if mapping is not None or name not in SOURCES:
        if path is None:
            raise UserError(f"source {name!r} is not one m1data knows ({', '.join(SOURCES)}); give its file "
                             "(--path FILE, or path: in the build config) and, if the columns are not the usual "
                             "question/options/answer, a mapping")
        if cop_base is not None:
            raise UserError(f"{name}: cop_base belongs to the MedMCQA loader, not to a mapped file")
        return load_mapped(name, path, mapping, seed=seed, split=split)
    source = get_source(name)
    if cop_base is not None:
        if source.name != "medmcqa":
            raise UserError(f"cop_base is a MedMCQA setting; {source.name} has no cop column")
        source = MedMCQA(cop_base)
    split = split or source.default_split
    scope = source.scope(split)
    if path is None:
        records = source.read_hub(split)
        where: Path | str = source.hub_id
    else:
        files = source_files(path, split)
        where = files[0] if len(files) == 1 else Path(path)
        records = source.read_files(files, split)
    result = collect(source.name, scope.filter(records) if scope else records, source.parse, seed=seed,
                     description=f"loading {source.name} {split}", scope=scope)
    return check_some_rows_read(result, where, source.name)


__all__ = [
    "PUBMEDQA_OPTIONS",
    "SOURCES",
    "SOURCE_NAME_CHARS",
    "HeadQA",
    "MedMCQA",
    "MedQA",
    "PubMedQA",
    "Source",
    "check_source_name",
    "get_source",
    "headqa_answers",
    "load_mapped",
    "load_source",
    "pubmedqa_test_pmids",
]
