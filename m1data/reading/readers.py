"""Files -> records -> rows: the reading every loader shares, with errors that name the file and the line.

Three layers, each used by the training sources (`m1data.reading.sources`) and the eval sets
(`m1data.reading.evalsets`) alike:

- files -> records: `read_records` and the per-format readers (.jsonl, .json, .csv/.tsv, .parquet),
  and `load_hub` for a Hub copy. A malformed file is an error, never a silently shorter
  dataset: every reader raises `MalformedFile` pointing at the exact place, so the user can
  open the file and fix it.
- records -> rows: a loader's `parse` turns one raw record into `Parsed` fields, using the
  typed field helpers here (`text`, `lettered_options`, ...); `collect` does the rest (ids,
  validation, shuffling, dropped records, progress) and returns a `LoadResult`.
- rows <-> files: `write_rows` and `read_rows`, the format every stage reads and writes;
  `write_together` writes a file command's OUT and OUT.dropped atomically, as a pair.
"""

from __future__ import annotations

import ast
import bz2
import codecs
import contextlib
import csv
import glob
import gzip
import functools
import importlib
import io
import itertools
import json
import logging
import lzma
import math
import os
import re
import tempfile
import unicodedata
import tokenize
from collections import Counter
import dataclasses
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa

from m1data.durable import folder_lock, fsync_folder, other_process_alive
from m1data.errors import M1DataError, UserError, storage_errors
from m1data.output import datasets_bars_off, track
from m1data.schema import (
    DEFAULT_SEED,
    DROPPED_FEATURES,
    LETTERS,
    RowError,
    column_values,
    content_id,
    dropped_record,
    flattened,
    integer_key,
    make_row,
    option_label,
    render_prompt,
    rows_to_dataset,
    rows_to_table,
    tables_to_dataset,
    with_table,
)

PROGRESS_MIN_ROWS = 20_000
PARQUET_BATCH_ROWS = 10_000  # rows converted to Python at a time (`read_parquet`)
# rows `collect` holds as Python dicts before it turns them into Arrow: loading 1M rows of a
# user's pool peaked at 3.7 GB with every row a dict at once, 2.3 GB this way
ARROW_BATCH_ROWS = 50_000

# ---------------------------------------------------------------------------------------------
# Files (or the Hub) -> records


class MalformedFile(M1DataError, ValueError):
    def __init__(self, path: str | Path, line: int | None, problem: str):
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}")
        self.path, self.line, self.problem = str(path), line, problem


def check_file(path: str | Path) -> Path:
    """`path` as a Path (`~` expanded, as a shell would: a build config has no shell), after
    checking it names a readable file (a folder is a clear error)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise MalformedFile(path, None, "is a directory; expected a file")
    return path


RECORD_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet")  # what `read_records` reads


def _open_zstd(path: Path, mode: str = "rb", encoding: str | None = None) -> Any:
    """zstd through pyarrow, which ships the codec (the standard library has none before 3.14)."""
    stream = pa.input_stream(str(path), compression="zstd")
    return io.TextIOWrapper(stream, encoding=encoding) if "t" in mode else stream


# a JSON Lines, JSON or CSV file may come compressed (train.jsonl.gz), as many Hub datasets ship them
COMPRESSED = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open, ".zst": _open_zstd}
# a Hub export's shard: train-00000-of-00004.parquet, or with the hash older `push_to_hub`s add
SHARD_NAME = re.compile(r"(?P<split>.+?)-\d+-of-\d+(-[0-9a-f]+)?\.")
# a file named for its split: MedQA's dev.jsonl, HEAD-QA's test_HEAD_EN.json (as `datasets` reads names)
SPLIT_NAME = re.compile(r"(?P<split>train|test|validation|valid|val|dev)(?=$|[-._ 0-9])", re.IGNORECASE)


def record_format(path: str | Path) -> str:
    """A file of records' format, whatever it is compressed with: `train.jsonl.gz` is ".jsonl"."""
    suffixes = [suffix.lower() for suffix in Path(path).suffixes]
    if suffixes and suffixes[-1] in COMPRESSED:
        suffixes.pop()
    return suffixes[-1] if suffixes else ""


def record_stem(path: str | Path) -> str:
    """A file's name without its format and compression suffixes: `test.jsonl.gz` is "test"."""
    path = Path(path)
    return (path.with_suffix("") if path.suffix.lower() in COMPRESSED else path).stem


def _opener(path: Path) -> Callable[..., Any]:
    return COMPRESSED.get(path.suffix.lower(), open)


def open_text(path: Path) -> io.TextIOBase:
    """`path` as UTF-8 text (a leading byte order mark dropped), decompressed by its suffix; as
    UTF-16 where it starts with UTF-16's byte order mark (`_encoding`)."""
    return _opener(path)(path, "rt", encoding=_encoding(_head(path, 2)))


def _head(path: Path, size: int) -> bytes:
    """The first `size` bytes of a file's content, decompressed by its suffix."""
    with _decompressing(path), _opener(path)(path, "rb") as handle:
        return handle.read(size)


def _encoding(head: bytes) -> str:
    """UTF-16 for text that starts with its byte order mark (Windows PowerShell's `>` and
    `Out-File` write it: `python export.py > train.jsonl`), else UTF-8 with or without one. The
    mark makes UTF-16 certain; no other encoding is guessed (cp1252 is refused, `decode`)."""
    return "utf-16" if head[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE) else "utf-8-sig"


def read_bytes(path: Path) -> bytes:
    with _decompressing(path), _opener(path)(path, "rb") as handle:
        return handle.read()


@contextlib.contextmanager
def _decompressing(path: Path) -> Iterator[None]:
    """A damaged or truncated compressed file is one line naming it, not gzip's or lzma's traceback."""
    try:
        yield
    except (OSError, EOFError, lzma.LZMAError) as err:
        if path.suffix.lower() not in COMPRESSED or isinstance(err, FileNotFoundError):
            raise
        raise MalformedFile(path, None, f"not a readable {path.suffix.lower()[1:]} file ({err})") from None


def source_files(path: str | Path, split: str | None = None, *,
                 choose: str = "say which (--split, or split: under the source in the build config)") -> list[Path]:
    """The files of a source given as one file, or as a folder of its files, read in name order
    as one file: the pools users regenerate from come as a Hub snapshot's shards
    (`data/train-00000-of-00004.parquet ...`), and joining them by hand first cost a copy of the
    pool. A folder of several splits' files (`train-*` and `test-*` shards, or MedQA's
    `train.jsonl`, `dev.jsonl`, `test.jsonl`) is narrowed to `split`, and without one is an
    error (`choose` says how to pick one): read together, a test split became training questions.
    So are other files beside a split's (a run's output written next to the shards was read as a
    million more questions). A `save_to_disk` folder is one file (`saved_dataset`), a
    DatasetDict's the folder of the split chosen so (`_saved_split`). `~` is expanded (`check_file`)."""
    path = Path(path).expanduser()
    if not path.is_dir():
        return [check_file(path)]
    if (path / "dataset_dict.json").is_file():  # a DatasetDict's `save_to_disk`: a folder per split
        return source_files(_saved_split(path, split, choose), split)
    if saved_dataset(path):
        return [path]
    arrows = sorted(p.name for p in path.iterdir() if p.suffix.lower() == ".arrow" and p.is_file())
    if arrows:  # its dataset_info.json was read as the rows, and refused as no list of objects
        raise MalformedFile(path, None, f"holds .arrow files ({', '.join(arrows[:3])}{', ...' if len(arrows) > 3 else ''})"
                                        ", as a `datasets` cache folder does, a split's each: give the one to read")
    files = sorted(p for p in path.iterdir()
                   if p.is_file() and not p.name.startswith(".") and record_format(p) in RECORD_SUFFIXES)
    if not files:
        inside = sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
        hint = f" (its folders: {', '.join(inside)}; give the one that holds the files)" if inside else ""
        raise MalformedFile(path, None, f"a folder with no .jsonl, .json, .csv, .tsv or .parquet file in it{hint}")
    split_of = {p: _file_split(p) for p in files}
    splits = {s for s in split_of.values() if s is not None}
    others = [p.name for p, s in split_of.items() if s is None]
    if splits and others:
        raise MalformedFile(path, None, f"holds a split's files ({', '.join(sorted(splits))}) and other files "
                                        f"({', '.join(others[:3])}{', ...' if len(others) > 3 else ''}); "
                                        "give a folder of one split's files alone")
    chosen = _pick_split(path, splits, split, choose)
    return files if chosen is None else [p for p in files if split_of[p] == chosen]


def _pick_split(path: Path, splits: set[str], split: str | None, choose: str) -> str | None:
    """`split` among a folder's several `splits`, or None where it holds one at most (read whole);
    several without `split` among them is an error (`choose` says how to name one)."""
    if len(splits) <= 1:
        return None
    if split in splits:
        return split
    which = f"none is {split!r}" if split else choose
    raise MalformedFile(path, None, f"holds the files of several splits ({', '.join(sorted(splits))}); {which}")


def saved_dataset(path: Path) -> bool:
    """Whether `path` is a folder `datasets` wrote with `Dataset.save_to_disk` (its .arrow files
    beside `state.json` and `dataset_info.json`): read as one file of records (`read_saved`). A
    pool prepared with `datasets` is often kept so; its JSON files were read as questions."""
    return path.is_dir() and (path / "state.json").is_file() and (path / "dataset_info.json").is_file()


def _saved_split(path: Path, split: str | None, choose: str) -> Path:
    """The folder of `split` in a `DatasetDict.save_to_disk` folder, chosen as among a folder's
    split shards (`source_files`): the one split it holds, or `split` among several."""
    try:
        splits = [str(name) for name in json.loads((path / "dataset_dict.json").read_text(encoding="utf-8"))["splits"]]
    except (ValueError, KeyError, TypeError) as err:
        raise MalformedFile(path / "dataset_dict.json", None, f"not a DatasetDict's split list ({err})") from None
    if not splits:
        raise MalformedFile(path / "dataset_dict.json", None, "names no split")
    return path / (_pick_split(path, set(splits), split, choose) or splits[0])


def _file_split(path: Path) -> str | None:
    """The split a file's name gives: a Hub shard's prefix, or a split's name at its start."""
    match = SHARD_NAME.match(path.name) or SPLIT_NAME.match(record_stem(path))
    return match["split"].lower() if match else None


def decode(path: str | Path, data: bytes, first_line: int = 1) -> str:
    """UTF-8 text of `data`, without a leading byte order mark (Excel writes one into CSVs and
    it would otherwise stick to the first question or column name); UTF-16 where its mark
    says so (`_encoding`). Bytes that are not UTF-8 are an error naming the line, so the user
    can find and re-save them."""
    encoding = _encoding(data)
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as err:
        if encoding == "utf-16":  # an odd byte or a broken pair: lines are not bytes apart to count
            raise MalformedFile(path, None, f"not UTF-16 text ({err.reason} at byte {err.start}); "
                                            "re-save it as UTF-8") from None
        line = first_line + data.count(b"\n", 0, err.start)
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise MalformedFile(
            path, line, f"not UTF-8 text (byte 0x{data[err.start]:02x} at byte {column} of the line); re-save it as UTF-8"
        ) from None


class DuplicateKey(ValueError):
    """A JSON object that names one key twice (`unique_keys`)."""

    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refused when it names a key twice. Why: `json` keeps the last value and
    drops the other without a word: a PubMedQA file with one PMID twice lost a question, and a
    record with two `answer_idx` was read by one of them."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        raise DuplicateKey(next(key for key, _ in pairs if key in seen or seen.add(key)))
    return obj


def _duplicate_key_problem(err: DuplicateKey) -> str:
    return f"key {err.key!r} appears twice in one object (JSON would keep only the last); keep one"


def read_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object); blank lines are allowed, anything else must be an object."""
    path = check_file(path)
    try:
        with _decompressing(path), open_text(path) as handle:  # text mode is the fast path
            for number, line in enumerate(handle, start=1):
                line = line.rstrip("\r\n")
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line, object_pairs_hook=unique_keys)
                except json.JSONDecodeError as err:  # pos, not colno: colno restarts after a newline
                    raise MalformedFile(path, number, f"invalid JSON ({err.msg} at column {err.pos + 1})") from None
                except DuplicateKey as err:
                    raise MalformedFile(path, number, _duplicate_key_problem(err)) from None
                if not isinstance(obj, dict):
                    raise MalformedFile(path, number, f"expected a JSON object, got {type(obj).__name__}")
                yield number, obj
    except UnicodeDecodeError:  # text mode decodes in blocks: find the line in the bytes
        decode(path, read_bytes(path))
        raise


class JsonLinesFile(MalformedFile):
    """A file read as one JSON value holds one value per line. Readers of records read it as
    JSON Lines (`read_records`); readers of one document (PubMedQA's) stop with the hint."""


def read_json(path: str | Path) -> Any:
    """One JSON value. A .json that holds one value per line (what `Dataset.to_json` writes by
    default) raises JsonLinesFile, which says so: read as JSON it is "Extra data" on line 2,
    which does not tell the user the file is fine under the name .jsonl."""
    path = check_file(path)
    content = decode(path, read_bytes(path))
    try:
        return json.loads(content, object_pairs_hook=unique_keys)
    except json.JSONDecodeError as err:
        problem = f"invalid JSON ({err.msg} at column {err.colno})"
        if _json_lines(content, err):
            raise JsonLinesFile(path, err.lineno, f"{problem}; this looks like JSON Lines (one value per line): "
                                                  "name it .jsonl") from None
        raise MalformedFile(path, err.lineno, problem) from None
    except DuplicateKey as err:
        raise MalformedFile(path, None, _duplicate_key_problem(err)) from None


def _json_lines(content: str, err: json.JSONDecodeError) -> bool:
    """Whether a failed JSON parse stopped at the end of a first line that is a JSON value of its own."""
    first = content[: err.pos].strip()
    if err.msg != "Extra data" or "\n" in first:
        return False
    try:
        json.loads(first)
    except json.JSONDecodeError:
        return False
    return True


def read_csv(path: str | Path, *, header: bool = True, width: int | None = None) -> Iterator[tuple[int, Any]]:
    """Yield (line number, row): a dict when the file has a header, else a list of `width` cells.
    A .tsv is read the same way, its cells separated by tabs; a .csv's may be too, or by
    semicolons (`_delimiter`).

    A cell may be as long as the file: the csv module's default limit (128 KiB) refused a whole
    file for one long context or explanation. A header that names a column twice is an error: the
    row's dict kept the last of the two cells and lost the other, silently."""
    path = check_file(path)
    columns: list[str] | None = None
    for line, cells in _csv_lines(path):
        if header and columns is None:
            twice = [name for name in dict.fromkeys(cells) if name.strip() and cells.count(name) > 1]
            if twice:
                raise MalformedFile(path, line, f"the header names column {twice[0]!r} "
                                                f"{cells.count(twice[0])} times; name each column once")
            columns = cells
            continue
        expected = len(columns) if columns is not None else width
        if expected is not None and len(cells) != expected:
            raise MalformedFile(path, line, f"expected {expected} fields, found {len(cells)}")
        yield line, (dict(zip(columns, cells)) if columns is not None else cells)


def _csv_lines(path: Path) -> list[tuple[int, list[str]]]:
    """(first line number, cells) of every row that is not blank (`_blank`), read at once under a cell size limit raised to
    the file's size (the limit is the csv module's, for the whole process: it is put back before
    any other reader can run)."""
    content = decode(path, read_bytes(path))
    limit = csv.field_size_limit()
    csv.field_size_limit(max(limit, len(content)))
    reader = csv.reader(io.StringIO(content, newline=""), delimiter=_delimiter(path, content))
    lines, first = [], 1  # a record's first line: a quoted cell may hold line breaks, and line_num is its last
    try:
        for cells in reader:
            if not _blank(cells):
                lines.append((first, cells))
            first = reader.line_num + 1
        return lines
    except csv.Error as err:
        raise MalformedFile(path, reader.line_num, f"invalid CSV ({err})") from None
    finally:
        csv.field_size_limit(limit)


CSV_DELIMITERS = (",", ";", "\t")  # in the order tried: the first that cuts the file evenly


def _delimiter(path: Path, content: str, rows: int = 20) -> str:
    """A .tsv's tab; for a .csv the first of CSV_DELIMITERS that cuts its first `rows` rows into the
    same number of cells, more than one (else the comma, whose errors then say what is wrong).
    Why: a spreadsheet saved as CSV where the decimal mark is the comma (Spanish, German, French
    Excel) cuts cells by semicolons; read by commas, every row was one cell and the file said "no
    question column" under a header that names one. A row's own commas (a question's) give rows
    of different lengths, so they do not pass for the delimiter."""
    if record_format(path) == ".tsv":
        return "\t"
    for delimiter in CSV_DELIMITERS:
        try:
            lines = csv.reader(io.StringIO(content, newline=""), delimiter=delimiter)
            first = list(itertools.islice((cells for cells in lines if not _blank(cells)), rows))
        except csv.Error:
            continue
        if first and len(first[0]) > 1 and all(len(cells) == len(first[0]) for cells in first):
            return delimiter
    return ","


def _blank(cells: list[str]) -> bool:
    """A line with nothing on it but spaces (a last line an editor left): a blank line, like one
    with nothing at all, not a row of one field ("expected 6 fields, found 1" refused the file)."""
    return not cells or (len(cells) == 1 and not cells[0].strip())


def read_parquet(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Rows of a parquet file (a Hub export, say); the 'line' is the 1-based row number. A file of
    no rows (a schema only) has no records: `Dataset.from_parquet` refuses it with an error that
    called it unreadable.

    Rows come from pyarrow, a batch at a time: the values `datasets` gives, without its copy of
    the file in its cache and its row-by-row formatting (1M rows of a user's pool: 28 s of a
    95 s `m1data load`). A file whose features `datasets` decodes (a Hub export's Image column:
    HEAD-QA's) is still read through `datasets`, so such a value is what it makes of it."""
    import pyarrow.parquet as pq
    from datasets.features.features import require_decoding

    path = check_file(path)
    try:
        file = pq.ParquetFile(str(path))
        if file.metadata.num_rows == 0:
            return
        features = datasets.Features.from_arrow_schema(file.schema_arrow)
        if any(require_decoding(feature) for feature in features.values()):
            yield from enumerate(datasets.Dataset.from_parquet(str(path)), start=1)
            return
        line = 0
        for batch in file.iter_batches(batch_size=PARQUET_BATCH_ROWS):
            for record in batch.to_pylist():
                line += 1
                yield line, record
    except Exception as err:  # noqa: BLE001 - pyarrow raises several unrelated types for a bad file
        raise MalformedFile(path, None, f"unreadable parquet ({err})") from None


def read_saved(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Rows of a `Dataset.save_to_disk` folder (`saved_dataset`), numbered from 1 and a batch at a
    time as `read_parquet` gives a parquet file's (decoded features, an Image, through `datasets`)."""
    try:
        saved = datasets.load_from_disk(str(path))
    except Exception as err:  # noqa: BLE001 - datasets raises several unrelated types for a bad folder
        raise MalformedFile(path, None, f"unreadable datasets folder ({err})") from None
    yield from _dataset_records(saved)


def read_arrow(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Rows of one `.arrow` file as `datasets` writes them (its cache's `medmcqa-train.arrow`, a
    `save_to_disk` shard), numbered from 1. Only a file named alone: a folder's .arrow files are
    not gathered (`source_files`), since a cache folder holds every split's side by side."""
    try:
        table = datasets.Dataset.from_file(str(path))
    except Exception as err:  # noqa: BLE001 - pyarrow raises several unrelated types for a bad file
        raise MalformedFile(path, None, f"unreadable arrow file ({err})") from None
    yield from _dataset_records(table)


def _dataset_records(dataset: datasets.Dataset) -> Iterator[tuple[int, dict[str, Any]]]:
    """A Dataset's rows numbered from 1, a batch at a time (decoded through `datasets` where a
    feature needs it, an Image)."""
    from datasets.features.features import require_decoding

    if any(require_decoding(feature) for feature in dataset.features.values()):
        yield from enumerate(dataset, start=1)
        return
    line = 0
    for batch in dataset.with_format("arrow").iter(batch_size=PARQUET_BATCH_ROWS):
        for record in batch.to_pylist():
            line += 1
            yield line, record


def _held_records(data: dict[str, Any]) -> Any:
    """The records a JSON object holds: a pandas DataFrame's (`pandas_records`), or the one list
    of objects it holds beside other fields (`{"version": "1.0", "data": [...]}`, as many dataset
    releases wrap their rows), else the object itself. The eval reader read such a file with one
    list as a set of that name while a source given the same file was refused; an object holding
    several lists is m1's multi-set eval file, not a source."""
    frame = pandas_records(data)
    if frame is not None:
        return frame
    lists = [value for value in data.values()
             if isinstance(value, list) and value and all(isinstance(item, dict) for item in value)]
    return lists[0] if len(lists) == 1 else data


def pandas_records(data: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The rows of a DataFrame that pandas wrote as a JSON object, or None for any other object.
    `df.to_json(path)` writes columns of {index: cell} (orient "columns", its default), and
    orient "index" rows under their index, "split" {"columns": [...], "index": [...], "data":
    [[...], ...]}: each such file was refused ("expected a JSON list of objects").

    Which of "columns" and "index" an object of objects is, is told by the index: pandas' default
    one writes "0", "1", ... An object whose inner and outer keys are both, or neither, such
    numbers is not read as a frame (it is refused as before); so is one whose inner objects do
    not all have the same keys.

    A table written as lists, a column each (`json.dump(dataset.to_dict())`, pandas'
    `to_dict("list")`), is read too: the same number of cells in every column, and two columns or
    more that hold no object (m1's file of several eval sets holds lists of objects, nulls
    perhaps among them, `load_eval_file`; `{"data": [rows], "ids": [...]}` its rows in one). It was
    refused as "expected a JSON list of objects", which it holds."""
    if set(data) in ({"columns", "data"}, {"columns", "index", "data"}):
        columns, rows = data["columns"], data["data"]
        if (isinstance(columns, list) and all(isinstance(c, str) for c in columns) and isinstance(rows, list)
                and all(isinstance(r, list) and len(r) == len(columns) for r in rows)):
            return [dict(zip(columns, row)) for row in rows]
        return None
    inner = list(data.values())
    if not inner or not all(isinstance(d, dict) for d in inner) or any(list(d) != list(inner[0]) for d in inner):
        return _list_columns(data)
    outer_index, inner_index = (all(key.isdigit() for key in keys) for keys in (data, inner[0]))
    if inner_index and not outer_index:  # orient "columns"
        return [{column: cells[label] for column, cells in data.items()} for label in inner[0]]
    if outer_index and not inner_index:  # orient "index"
        return inner
    return None


def _list_columns(data: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The rows of an object of equal-length column lists, or None (`pandas_records`)."""
    cells = list(data.values())
    if not all(isinstance(column, list) for column in cells) or len({len(c) for c in cells}) != 1:
        return None
    if sum(not any(isinstance(cell, dict) for cell in column) for column in cells) < 2:
        return None
    return [dict(zip(data, row)) for row in zip(*cells)]


def read_records(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Rows of a .jsonl, .json (a list of objects), .csv, .tsv or .parquet file, all but parquet
    maybe compressed (`COMPRESSED`); or of a `Dataset.save_to_disk` folder (`read_saved`)."""
    folder = Path(path).expanduser()
    if saved_dataset(folder):
        yield from read_saved(folder)
        return
    path = check_file(path)
    suffix = record_format(path)
    if suffix == ".parquet" and path.suffix.lower() in COMPRESSED:
        raise MalformedFile(path, None, "a parquet file compresses its own columns; give it uncompressed")
    if suffix == ".jsonl" and not _opens_a_list(path):
        yield from read_jsonl(path)
    elif suffix == ".parquet":
        yield from read_parquet(path)
    elif suffix in (".csv", ".tsv"):
        yield from read_csv(path)
    elif suffix in (".json", ".jsonl"):
        yield from _json_records(path)
    elif suffix == ".arrow" and path.suffix.lower() == ".arrow":
        yield from read_arrow(path)
    else:
        raise MalformedFile(path, None, f"unsupported file type {suffix or path.suffix!r} (use .jsonl, .json, .csv, "
                                        ".tsv or .parquet, all but parquet also as .gz, .bz2, .xz or .zst; "
                                        "or a .arrow file `datasets` wrote)")


def read_json_or_lines(path: Path) -> Any:
    """The one JSON value a .json file holds, or None when it holds one value a line (JSON Lines,
    `read_jsonl` reads it): what a reader that also takes records needs to know."""
    try:
        return read_json(path)
    except JsonLinesFile:
        return None


def _json_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """The records of a JSON file, whichever of the two forms its content has: one value (a list
    of objects, or an object holding them, `_held_records`), or one object a line. Why not by
    name: `Dataset.to_json("x.json")` writes JSON Lines, and `json.dump(rows, open("x.jsonl"))` a
    list; `datasets` reads both as rows, and m1data stopped on each ("name it .jsonl", "invalid
    JSON at column 2")."""
    data = read_json_or_lines(path)
    if data is None:
        yield from read_jsonl(path)
        return
    if isinstance(data, dict):
        data = _held_records(data)
    if not isinstance(data, list):  # one object alone may be a row or hold them: not guessed
        raise MalformedFile(path, None, "expected a JSON list of objects, or an object holding one (a file of "
                                        "one row: write it in a list, or name it .jsonl)")
    for number, obj in enumerate(data, start=1):
        if not isinstance(obj, dict):
            raise MalformedFile(path, None, f"item {number} is not an object")
        yield number, obj


def _opens_a_list(path: Path) -> bool:
    """Whether a file's first character that is not white space is "[", which opens a JSON list
    and no JSON Lines record. Decoded leniently: a file that is no UTF-8 must reach the reader
    that says so, line and byte."""
    head = _head(path, 1 << 16)
    return head.decode(_encoding(head), errors="ignore").lstrip().startswith("[")


class HubUnreachable(M1DataError, ValueError):
    """The Hub copy of a source or eval set cannot be fetched (offline mode, no network, DNS).

    A ValueError so the command line shows it as one line, like any other input the user must
    change: the fix is to pass the local file, which the message says how to do."""


def _network_errors() -> tuple[type[BaseException], ...]:
    """What a failed Hub request raises: huggingface_hub's HTTP client is httpx (1.x) or httpx2
    (2.x), whichever is installed (imported here to keep module import light)."""
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for client in ("httpx2", "httpx"):
        try:
            errors.append(importlib.import_module(client).TransportError)
        except ImportError:
            continue
    return tuple(errors)


def load_hub(hub_id: str, config: str | None, split: str, *, local_hint: str) -> datasets.Dataset:
    """`datasets.load_dataset`, with an unreachable Hub turned into one clear `HubUnreachable`.

    Why a probe first: the Hub client retries a refused connection for 23 s (5 tries, back-off to
    8 s) before giving up. When the endpoint cannot be reached at all, the load runs as if
    HF_HUB_OFFLINE were set: from the local cache, or a quick error."""
    why = "HF_HUB_OFFLINE is set" if datasets.config.HF_HUB_OFFLINE else _hub_down()
    try:
        with _offline(why is not None):
            return datasets.load_dataset(hub_id, config, split=split)
    except _network_errors() as err:
        raise HubUnreachable(
            f"the Hugging Face Hub is unreachable ({why or type(err).__name__}) and {hub_id} is not in the local "
            f"cache; pass a local file instead: {local_hint}"
        ) from None


@contextlib.contextmanager
def _offline(offline: bool) -> Iterator[None]:
    """datasets and huggingface_hub in offline mode for the block (both read the flag per call)."""
    from huggingface_hub import constants

    saved = datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE
    if offline:
        datasets.config.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE = saved


def _hub_down(timeout: float = 5.0) -> str | None:
    """Why the Hub endpoint cannot be reached at all (refused, no route, DNS), None if it answers."""
    import urllib.error
    import urllib.request

    from huggingface_hub import constants

    try:
        urllib.request.urlopen(constants.ENDPOINT, timeout=timeout).close()  # noqa: S310 - the configured Hub
    except urllib.error.HTTPError:
        return None  # it answered
    except (OSError, ValueError) as err:
        return type(getattr(err, "reason", err)).__name__
    return None


# ---------------------------------------------------------------------------------------------
# Records -> rows


@dataclass(frozen=True)
class Parsed:
    """The fields a source record contributes to a row; `native_id=None` asks for a content id."""

    native_id: str | None
    question: str
    options: list[str]
    answer_idx: int
    context: str = ""
    error: RowError | None = None
    """Set when the text was read but the row cannot be used (its answer key, say): the row is
    dropped, yet its question is still a decontamination target (see `LoadResult.unscored`)."""


def unread_question(native_id: str | None, err: RowError) -> Parsed:
    """A row whose question cannot be read (not text, null, missing), dropped with `err` under its own
    id: dropped under its locator ("mine:ev.jsonl:2"), a row the user knows as "q2" could not be
    found by its id, though a row dropped for its answer is. A row without an id of its own keeps
    its locator (`err` is raised): a content id of no question named no row ("medmcqa:e3b0c442...",
    then "#2" on the next)."""
    if native_id is None:
        raise err
    return Parsed(native_id, "", [], -1, error=err)


@dataclass
class LoadResult:
    """Usable rows, dropped records (with their reasons), and `unscored`: the dropped questions whose text
    could still be read. Unscored rows cannot be trained on or scored (answer fields empty,
    `answer_idx` -1), but an eval question must be matched by decontamination whatever the
    state of its answer key."""

    rows: datasets.Dataset
    dropped: datasets.Dataset
    unscored: datasets.Dataset | None = None
    origin: str = ""  # the file or Hub id, for messages
    expected: str = ""  # what the file should have held, for messages
    problem: str = ""  # a fault of the whole file that leaves every row unscored (an undecidable answer kind)
    out_of_scope: dict[str, int] = dataclasses.field(default_factory=dict)
    """Records a split or scope filter left out, by why (PubMedQA's other split, another MMLU
    subject): well-formed records that are not this set's, counted so every record is accounted for."""

    def reasons(self) -> dict[str, int]:
        return dict(Counter(column_values(self.dropped, "reason"))) if len(self.dropped) else {}

    def targets(self) -> datasets.Dataset:
        """Every question with text: the rows, then the unscored ones."""
        if self.unscored is None or len(self.unscored) == 0:
            return self.rows
        return datasets.concatenate_datasets([self.rows, self.unscored])


def field(raw: dict[str, Any], *names: str) -> Any:
    """The first of `names` present in `raw`; a missing field is a bad row, not a crash."""
    for name in names:
        if name in raw and raw[name] is not None:
            return raw[name]
    raise RowError("missing_field", f"none of {', '.join(names)}")


def text(raw: dict[str, Any], *names: str) -> str:
    """`field`, which must be text: a number or a list where a question belongs is a bad row, and
    must be caught before it reaches ids and validation (it would crash them or be str()-ed)."""
    for name in names:
        value = raw.get(name)
        if value is not None:
            if not isinstance(value, str):
                raise RowError("not_text", f"{name} is {type(value).__name__}, not text")
            return value
    raise RowError("missing_field", f"none of {', '.join(names)}")


def option_texts(options: list[Any]) -> list[str]:
    """The options as text. A number is an option's text too (doses, counts: 5, 10, 15, 20), read as
    a CSV gives it, a whole float as its integer (pandas writes an integer column with a hole in
    it as floats). Why: one table of numeric options loaded from CSV and was refused whole
    (not_text) from JSON Lines or Parquet. A bool, NaN or anything else is a bad row."""
    texts = []
    for i, option in enumerate(options):
        written = option if isinstance(option, str) else _number_text(option)
        if written is None:
            label = LETTERS[i] if i < len(LETTERS) else str(i + 1)
            raise RowError("not_text", f"option {label} is {type(option).__name__}, not text")
        texts.append(written)
    return texts


def _number_text(value: Any) -> str | None:
    """A number as a CSV writes it; None for anything else (a bool, NaN, infinity)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


def context_text(value: Any, column: str = "context") -> str:
    """A question's passage as text: text, a list of paragraphs (joined by newlines), or the Hub
    PubMedQA's {"contexts": [...], "labels", "meshes"}; None is no passage. The one reading of a
    context, for the eval and mapped readers and for rows handed to dedup and decontamination."""
    if isinstance(value, dict) and "contexts" in value:
        value = value["contexts"]
    if isinstance(value, list) and all(isinstance(p, str) for p in value):
        return "\n".join(value)
    if value is not None and not isinstance(value, str):
        raise RowError("bad_context", f"{column!r} is {type(value).__name__}, not text, a list of texts or "
                                      "PubMedQA's {'contexts': [...]}")
    return value or ""


# "B", "(B)", "B.", "B)", after an optional "Answer:", "Ans.", "Option", "The correct answer is" ...
LETTER_KEY = re.compile(r"(?:(?:the\s+)?(?:correct\s+)?(?:answer|ans|option|choice)(?:\s+is)?\s*[:.-]?\s*)?"
                        r"\(?([A-Za-z])[.)]?", re.IGNORECASE)


def key_letter(value: Any) -> str | None:
    """The option letter an answer key writes ("B", "b", "(B)", "B.", "B)", also after the word
    that names it: "Answer: B", "Option B", "The correct answer is (B)"), upper case; None for
    anything else. The one reading of a letter key, for the source loaders (MedQA's
    `answer_idx`, HEAD-QA's `Correct Option`) and the eval/mapped reader alike: read apart, a
    "(B)" was option B in an eval file and a dropped row in a MedQA file. Exports that keep a
    model's or a grader's answer column write "Answer: B", and such a file had no row."""
    if not isinstance(value, str):
        return None
    match = LETTER_KEY.fullmatch(value.strip())
    return match.group(1).upper() if match else None


def same_text(key: str, option: str) -> bool:
    """Whether an answer written as text names `option`: spacing is ignored, and so is case,
    except for one-character keys (a key "A" is a letter, not the text of an option "a"). The one
    comparison of an answer text with an option, for every loader. Case is folded (`casefold`),
    not lowered: "STRASSE" is "Straße" in capitals, and `lower` leaves the two apart. Both are in
    one Unicode form (NFC): "Sjögren" written with a combining diaeresis is the same text, and its
    row was dropped as `answer_mismatch`. Not NFKC: it makes "10⁶" the text "106"."""
    key, option = (unicodedata.normalize("NFC", " ".join(text.split())) for text in (key, option))
    return key == option or (len(key) > 1 and key.casefold() == option.casefold())


def letter_index(letter: Any, n_options: int) -> int:
    if not isinstance(letter, str):
        raise RowError("not_text", f"answer letter {letter!r} is {type(letter).__name__}, not a letter")
    value = key_letter(letter)
    if value is None or value not in LETTERS[:n_options]:
        raise RowError("answer_out_of_range", f"answer letter {letter!r} for {n_options} options")
    return LETTERS.index(value)


def options_cell(cell: str) -> Any:
    """The list or {letter: text} a file wrote as text into one cell (a CSV's, or a text column's):
    JSON (`["x", "y"]`, `{"A": "x"}`), or pandas' way of writing a list or dict column (`df.to_csv`:
    `['x', "y's"]`, `{'A': 'x', 'B': "y's"}`, Python's text of them). Every row of such a CSV was
    dropped as bad_options.

    Only a list of string literals, or a dict of string keys to string literals (or None, an
    absent option as JSON's null is), is read the Python way (`ast`, nothing is evaluated); a
    dict naming a key twice is refused as in JSON (Python would keep the last). Not when two
    strings stand side by side: `['x' 'y']` is numpy's print of an array, which Python would read
    as the one option "xy"."""
    try:
        return json.loads(cell, object_pairs_hook=unique_keys)
    except (json.JSONDecodeError, RecursionError):  # nested too deep for json: nor is it options
        pass
    except DuplicateKey as err:
        raise RowError("bad_options", f"options cell names {err.key!r} twice") from None
    options = _python_options(cell)
    if options is None:
        options = listed_options(cell)
    if options is None:
        raise RowError("bad_options", "options cell is neither JSON, a list or dict of quoted texts, nor options "
                                      "after their letters (a line each: 'A. x', 'B. y'; or '(A) x (B) y')")
    return options


def _is_text(node: ast.expr | None, *, or_none: bool = False) -> bool:
    """Whether `node` is a string literal (or, with `or_none`, the literal None)."""
    return isinstance(node, ast.Constant) and (isinstance(node.value, str) or (or_none and node.value is None))


def _python_options(cell: str) -> list[str] | dict[str, str | None] | None:
    """A cell holding a Python list of string literals, or a dict of string literals to string
    literals or None, as that list or dict; else None."""
    try:
        node = ast.parse(cell.strip(), mode="eval").body
        tokens = list(tokenize.generate_tokens(io.StringIO(cell.strip()).readline))
    except (SyntaxError, ValueError, RecursionError, MemoryError, tokenize.TokenError):
        return None
    if isinstance(node, ast.List) and all(map(_is_text, node.elts)):
        literals = list(node.elts)
    elif isinstance(node, ast.Dict) and all(map(_is_text, node.keys)) and all(_is_text(v, or_none=True) for v in node.values):
        literals = [*node.keys, *node.values]
    else:
        return None
    if sum(token.type == tokenize.STRING for token in tokens) != sum(map(_is_text, literals)):
        raise RowError("bad_options", "options cell writes texts side by side with no comma (numpy's print of an "
                                      "array?); write the column as JSON or as a list")
    if isinstance(node, ast.List):
        return ast.literal_eval(node)
    try:
        return unique_keys([(ast.literal_eval(k), ast.literal_eval(v)) for k, v in zip(node.keys, node.values)])
    except DuplicateKey as err:
        raise RowError("bad_options", f"options cell names {err.key!r} twice") from None


def lettered_options(options: Any) -> list[str]:
    """Options given as {"A": ..., "B": ...} (in letter order) or as a list; each must be text.
    Text is a cell holding one of them (`options_cell`): a CSV writes a list or dict so.

    The keys may also be lower-case letters or numbers from 0 or 1 ({"1": ..., "2": ...}), and the
    labels may stand beside the texts, as the Hub's usual layouts write them: ARC's and
    CommonsenseQA's {"label": ["A", ...], "text": [...]}, BigBio's [{"key": "A", "value": ...}]
    (`_LABEL_FIELDS`); each such file was refused whole ("option keys ['label', 'text']").

    Trailing letters whose value is None or "" are absent, not bad options: Parquet stores a column of
    option dicts as one struct with every letter any row has, so a 4-option row in a file of
    4- to 10-option rows comes back as {"A": .., "D": .., "E": None, ..., "J": None}, and a file
    of 4- and 5-option questions written by hand or by a spreadsheet writes `"E": ""`, as option
    columns leave the fifth one empty (`column_options`, which reads it the same way). A None or
    "" before the last real option is still an error (option_texts, or validation's empty_option)."""
    if isinstance(options, dict):
        for label, text in _LABEL_FIELDS:
            if set(options) == {label, text} and isinstance(options[label], list) and isinstance(options[text], list):
                return _by_label(options[label], options[text])
        return _by_label(list(options), list(options.values()))
    if isinstance(options, list):
        for label, text in _LABEL_FIELDS:
            if options and all(isinstance(o, dict) and set(o) == {label, text} for o in options):
                return _by_label([o[label] for o in options], [o[text] for o in options])
        return option_texts(list(options))
    if isinstance(options, str):
        cell = options_cell(options)
        if isinstance(cell, (dict, list)):
            return lettered_options(cell)
        raise RowError("bad_options", f"options cell holds a {type(cell).__name__}, not a list or an object")
    raise RowError("bad_options", f"options of type {type(options).__name__}")


# the labels and texts of options written side by side: ARC's {"label": [...], "text": [...]}, BigBio's
# [{"key": "A", "value": ...}, ...]
_LABEL_FIELDS = (("label", "text"), ("key", "value"))


def _by_label(labels: list[Any], texts: list[Any]) -> list[str]:
    """The texts in their labels' order: letters from A (either case), or whole numbers from 0 or
    1; trailing None or "" texts are absent options (see `lettered_options`)."""
    if len(labels) != len(texts):
        raise RowError("bad_options", f"{len(labels)} option labels for {len(texts)} options")
    if all(isinstance(k, str) and len(k) == 1 and k.upper() in LETTERS for k in labels):
        places = [LETTERS.index(k.upper()) for k in labels]
    else:
        numbers = [whole_number(k) for k in labels]
        if None in numbers or min(numbers) not in (0, 1):
            raise RowError("bad_options", f"option keys {sorted(map(str, labels))}")
        places = [n - min(numbers) for n in numbers]
    by_place = sorted(zip(places, texts), key=lambda pair: pair[0])
    while by_place and by_place[-1][1] in (None, ""):
        by_place.pop()
    if [place for place, _ in by_place] != list(range(len(by_place))):
        raise RowError("bad_options", f"option keys {sorted(map(str, labels))}")
    return option_texts([text for _, text in by_place])


def column_options(raw: dict[str, Any], columns: Sequence[str]) -> list[str]:
    """The options a record writes one per column (`opa..ope`, `A..E`, `Option 1..5`), in column order.

    Trailing columns that are empty (None, "" or absent) are absent options: a file of 4- and
    5-option questions leaves the fifth column empty on 4-option rows. An empty column before the
    last filled one is an empty option, kept in its place as "" (validation drops the row with
    reason empty_option). Why not skip it: every later option would move up one place, and a key
    counted by position (an index, a letter) would silently name the next option."""
    values = [raw.get(column) for column in columns]
    while values and values[-1] in (None, ""):
        values.pop()
    return option_texts(["" if value is None else value for value in values])


# "A. x", "(A) x", "A) x", "A: x": the labels eval files write into their option texts.
OPTION_LABEL_STYLES = (
    re.compile(r"([A-Za-z])\.\s+(?=\S)"),
    re.compile(r"\(([A-Za-z])\)\s*(?=\S)"),
    re.compile(r"([A-Za-z])\)\s*(?=\S)"),
    re.compile(r"([A-Za-z]):\s*(?=\S)"),
)


# one letter's label in each of those styles, as `listed_options` looks for it
_LABEL_OF = tuple(style.pattern.replace("([A-Za-z])", "{}") for style in OPTION_LABEL_STYLES)


def listed_options(cell: str) -> list[str] | None:
    """The options a cell writes out after their letters, from A on in one label style: a line
    each ("A. x\\nB. y", as `OPTION_LABEL_STYLES` reads labels), or on one line after
    parenthesized letters ("(A) x (B) y"); None for any other text. Exports and instruction
    copies of MedQA and MedMCQA keep a question's options so, and every row of such a file was
    dropped as bad_options.

    Why so strict: a label must start its line (on one line: follow a space, so "V(D)J" holds
    none), and each letter's label must occur once, so a text is cut only one way. On one line
    "A. x B. y" is not read: an option like "Infection by E. coli" or "S. aureus" holds a label of
    that style, and a cut there would silently give the row other options (one more, or two
    glued together). A text with a second label of some letter is not read either; the row is
    dropped with the reason above."""
    text = cell.strip()
    for before, labels in (("(?m)^", _LABEL_OF), (r"(?:^|(?<=\s))", _LABEL_OF[1:2])):  # a line each; one line
        for label, letters in itertools.product(labels, (LETTERS, LETTERS.lower())):
            if not _pattern(label.format(letters[0])).match(text):
                continue
            spans = _label_spans(text, before + label, letters)
            if spans is None:
                return None
            if len(spans) >= 2:
                ends = [start for start, _ in spans[1:]] + [len(text)]
                return [text[start:end].strip() for (_, start), end in zip(spans, ends)]
    return None


def _label_spans(text: str, before_label: str, letters: str) -> list[tuple[int, int]] | None:
    """Where each letter's label (`before_label`, formatted with the letter) stands in `text`, from
    the first letter on until one has none; None when a letter's label stands twice, or before the
    previous one's."""
    spans: list[tuple[int, int]] = []
    for letter in letters:
        found = [m.span() for m in _pattern(before_label.format(letter)).finditer(text)]
        if not found:
            break
        if len(found) > 1 or (spans and found[0][0] < spans[-1][1]):
            return None
        spans.append(found[0])
    return spans


# where a question's own list of options may begin: an "A" label at the start of a line, else
# "(A)" after a space (the one-line "Answer Choices: (A) x (B) y", "...? (A) x (B) y", a fill-in-the-blank
# "... is ____ (A) x (B) y": after a question mark or colon only, 60 of 135 such MMLU copies stayed; audit);
# not "(a)" inside a sentence ("has (a) fever and (b) a rash"). A list must end the question (below).
_LINE_LIST_START = re.compile(r"(?m)^[ \t]*(?=" + option_label("[Aa]") + ")")
_INLINE_LIST_START = re.compile(r"(?<=\S)[ \t]+(?=\(A\))")
# an "Answer:" line after the options (prompt-formatted copies end so), which is no option's text
_ANSWER_CUE = re.compile(r"\s*\n\s*(?:#{1,4}\s*)?(?:\*\*)?(?:the\s+)?(?:correct\s+)?answer(?:\s+is)?(?:\*\*)?\s*:?(?:\*\*)?\s*\Z",
                         re.IGNORECASE)
# the heading a list of options may stand under: "Options:" (or Markdown's "### Options", "**Options:**") on its
# own line, or (before a one-line list) "Answer Choices:" at the end of the stem's line
_LINE_HEADING = re.compile(r"(?:\A|\n)[ \t]*(?:#{1,4}[ \t]*)?(?:\*\*)?(?:answer\s+)?(?:choices|options)(?:\*\*)?[ \t]*:?"
                           r"(?:\*\*)?[ \t]*\Z", re.IGNORECASE)
_INLINE_HEADING = re.compile(r"\s*(?:(?<!\S)#{1,4}[ \t]*)?(?:\*\*)?\b(?:answer\s+)?(?:choices|options)(?:\*\*)?\s*:(?:\*\*)?\Z",
                             re.IGNORECASE)


@functools.cache
def _pattern(pattern: str) -> re.Pattern[str]:
    """`pattern` compiled once: the label patterns of every letter in every style outnumber the
    `re` module's own cache (512), and compiling them again took most of the time of reading 15K
    eval questions that write their options (2.5 s)."""
    return re.compile(pattern)


def options_in_question(question: str) -> tuple[str, list[str]] | None:
    """(stem, options) of a question that writes its options at its end after their letters
    (`listed_options`: "A. x" a line each, or "(A) x (B) y"), for a file with no options of its
    own; None when it writes none. Eval sets copied from prompts keep their options so: read as a
    bare stem, such a question was compared, options and all, with a training copy's stem alone,
    and 3 of 6 verbatim copies stayed. The list must end the question: lines after its last
    option ("Answer: A", an instruction) are cut off, but an option that holds a line break
    before the last, or a question after the list ("(a) X\n(b) Y\nWhich of the above are
    correct?", a list of statements), is the question going on, not its options."""
    for starts in (_LINE_LIST_START, _INLINE_LIST_START):  # a list a line each first
        for start in starts.finditer(question):
            stem = question[: start.start()].rstrip()
            stem = _LINE_HEADING.sub("", stem).rstrip()
            if stem.endswith(":"):  # what _INLINE_HEADING needs, looked at first: its search took 66 us a question
                stem = _INLINE_HEADING.sub("", stem).rstrip()
            options = listed_options(_ANSWER_CUE.sub("", question[start.end():]))
            if not stem or not options or any("\n" in option for option in options[:-1]):
                continue
            last, _, after = options[-1].partition("\n")
            if _goes_on(after) or any(text.rstrip().endswith("?") for text in (*options[:-1], last)):
                continue
            return stem, [*options[:-1], last.strip()]
    return None


def _goes_on(after: str) -> bool:
    """Whether the text after a list's last option's first line is more of the question, not an
    "Answer: B" line or an instruction: a question ("Which of the above are correct?"), another
    list (statements (a), (b) before options A-D), or the last option wrapped onto an indented line."""
    return "?" in after or after[:1] in (" ", "\t") or _LINE_LIST_START.search(after) is not None


def labelled_key(key: str) -> tuple[str, str] | None:
    """(letter, text) of an answer written as an option's label and its text ("C. Vitamin C",
    "(C) Vitamin C", "C) Vitamin C", "C: Vitamin C", the labels ``OPTION_LABEL_STYLES`` reads in
    option texts), the letter in upper case; None for any other key. Exports of eval sets and
    instruction-tuning copies of MedQA ("E: Nitrofurantoin") write keys so."""
    for style in OPTION_LABEL_STYLES:
        match = style.match(key)
        if match:
            return match.group(1).upper(), key[match.end():]
    return None


def labelled_index(key: str, options: list[str]) -> int | None:
    """The option a key names by its letter and its text together ("C. Vitamin C", `labelled_key`),
    when both name that option; None otherwise. Readers try it only where the key is no option's
    text as it stands (an option may itself be written "B. burgdorferi")."""
    labelled = labelled_key(key)
    if labelled is None:
        return None
    index = LETTERS.find(labelled[0])
    return index if 0 <= index < len(options) and same_text(labelled[1], options[index]) else None


# other labels exports write into option texts: "Option A: x", "Choice B. y"; "1. x", "(2) y", "3) z"
_WORD_LABEL = re.compile(r"(?:option|choice)\s+([A-Za-z])\s*[.:)]\s*(?=\S)", re.IGNORECASE)
_NUMBER_LABELS = (re.compile(r"(\d{1,2})\.\s+(?=\S)"), re.compile(r"\((\d{1,2})\)\s*(?=\S)"),
                  re.compile(r"(\d{1,2})\)\s*(?=\S)"))
# letter labels that count only in order: "[A] x", "A - x", "A.x" (no space: "E.coli" alone is no label)
_ORDERED_LETTER_LABELS = (re.compile(r"\[([A-Za-z])\]\s*(?=\S)"), re.compile(r"([A-Za-z])[ \t]+[-\u2013][ \t]+(?=\S)"),
                          re.compile(r"([A-Za-z])\.(?=\S)"))


# what follows "A." in "A.V. block", "B.P. drop": the abbreviation goes on, so "A." was no label
_ABBREVIATION_GOES_ON = re.compile(r"[A-Za-z]\.")


# what every label above starts with: a letter or number and its mark, or the word
_MAY_BE_LABELLED = re.compile(r"\(?[A-Za-z0-9]{1,2}[.):]|(?:option|choice)\s|\[[A-Za-z]\]|[A-Za-z][ \t]+[-\u2013]",
                              re.IGNORECASE)


def _other_labels(options: list[str]) -> list[str] | None:
    """The texts without an "Option A:", "[A]", "A -" or "A.x" label or a number label that every
    option carries, in order ("Option A", "Option B", ...; 1, 2, ... or 0, 1, ...); None where they
    carry none (the first three styles missed 97% of copies so labelled: library audit). Why: a verbatim copy of
    an eval question whose options were numbered kept its labels, its sorted option set differed,
    and 285 of 300 MedMCQA validation copies stayed in the training data (audit)."""
    for style in (_WORD_LABEL, *_ORDERED_LETTER_LABELS):
        matches = [style.match(option) for option in options]
        if all(matches) and "".join(m.group(1) for m in matches).upper() == LETTERS[: len(options)]:
            texts = [option[m.end():] for option, m in zip(options, matches)]
            if not _names_statements(texts) and not any(_ABBREVIATION_GOES_ON.match(t) for t in texts):
                return texts
    for style in _NUMBER_LABELS:
        matches = [style.match(option) for option in options]
        numbers = [m.group(1) for m in matches] if all(matches) else []
        if numbers in ([str(i) for i in range(1, len(options) + 1)], [str(i) for i in range(len(options))]):
            texts = [option[m.end():] for option, m in zip(options, matches)]
            return None if _names_statements(texts) else texts
    return None


# a statement's number inside an option: "(2)", "2)", "2." standing alone
_STATEMENT_NUMBER = re.compile(r"\(\d{1,2}\)|(?:^|\s)\d{1,2}[.)](?:\s|$)")


def _names_statements(texts: list[str]) -> bool:
    """Whether numbered options, their numbers taken off, are about numbered statements, so the
    numbers were their text: "(1) only" ... "(4) only" would all be "only", "(1) and (2)" would
    be "and (2)". Such options keep their numbers."""
    keys = {" ".join(t.split()).casefold() for t in texts}
    return len(keys) < len(texts) or any(_STATEMENT_NUMBER.search(t) for t in texts)


# a species named by its genus initial and its epithet alone: "A. baumannii", "C. albicans", "M. tuberculosis."
# The epithet's Latin ending is the evidence: a label stands before any text, and options that are one lower-case
# word each with such an ending, all of them, were 7 of 22,868 real option lists ("duodenum", "cecum", "rectum",
# "ileum"), each of which would keep its labels; epithets ending otherwise ("histolytica", "niger") still lose them.
_SPECIES = re.compile(r"[A-Z]\. [a-z]{3,}(?:i|ae|ii|us|is|um|es|ans|ens|ax|ix|ex|ile|ale)\.?")


def strip_option_letters(options: list[str], strict: bool = True) -> list[str]:
    """The option texts without the letters a file wrote into them ("A. x" -> "x"; also
    "Option A: x" and numbers, "1. x", `_other_labels`).

    Why: options are shuffled per row and the compared key sorts them, so a copied "A. " would
    stay glued to the wrong position and make an exact copy of the question look different
    (issue 24: 4 of 49 verbatim copies caught). Stripped only when every option carries its own
    letter, in order (A, B, C, ...), in one style: a list like ["A: left", "B: right"] is
    labelled; ["A. fumigatus", "Candida"] is not, and is left alone, nor is a list of species each
    written with its genus initial (`_SPECIES`), in order or not: ["A. baumannii", "B. dermatitidis",
    "C. albicans", "D. immitis"] lost its initials. Every letter, out of order
    (["B. Heparin", "A. Warfarin"]), is a bad row: a key "B" was read as the second place, and
    named Warfarin, silently. (Species whose epithet `_SPECIES` does not know, "A. niger",
    "B. lamblia", are refused too: nothing tells them from "B. heparin", "A. warfarin".) Not
    `strict` (the matcher, which sorts options and reads no key), they lose their letters too: a
    loaded row's shuffled labels stopped dedup, and left as they were, a labelled copy was missed."""
    if len(options) < 2 or not _MAY_BE_LABELLED.match(options[0]):  # most options: one cheap look
        return options
    for style in OPTION_LABEL_STYLES:
        if style is OPTION_LABEL_STYLES[0] and all(_SPECIES.fullmatch(option) for option in options):
            continue  # "A. baumannii", "B. dermatitidis", ...: genus initials, not labels
        matches = [style.match(option) for option in options]
        if not all(matches):
            continue
        letters = "".join(m.group(1) for m in matches).upper()
        if letters == LETTERS[: len(options)]:
            return [option[m.end():] for option, m in zip(options, matches)]
        if sorted(letters) == list(LETTERS[: len(options)]):
            if not strict:
                return [option[m.end():] for option, m in zip(options, matches)]
            raise RowError("bad_options", f"the options are labelled {', '.join(letters)}, out of order: a key "
                                          "could name a label or a place; write them in order, or as {letter: text}")
    return _other_labels(options) or options


_WHOLE_TEXT = re.compile(r"(\d+)(?:\.0+)?")


def whole_number(value: Any) -> int | None:
    """The whole number an answer key holds, or None: an int, a whole float (2.0), or its text
    ("2", "2.0"); not a bool, "2.5", "²" (which int() refuses) or a letter.

    Why floats: pandas writes an integer column that has a null in it as floats, so a parquet,
    JSON or CSV file made from a DataFrame keys its answers 2.0 (or "2.0"), 0.0, ...; read as
    anything but the numbers they are, every key of such a file was "not a whole number" and the
    file had no row. Every reader of an index-like key (MedMCQA's `cop`, a mapped or eval file's
    answer column) reads it through here; a number as every door reads one (`integer_key`)."""
    if isinstance(value, str):
        match = _WHOLE_TEXT.fullmatch(value.strip())
        return int(match.group(1)) if match else None
    return integer_key(value)


def key_text(raw: dict[str, Any], name: str) -> str:
    """An id field as text: ids are strings or integers; anything else is a bad row.

    A whole float (1.0) is read as the integer it holds: pandas writes an integer id column that
    has a null in it as floats, and "1.0" would not be the id "1" the other copies of the row have."""
    value = field(raw, name)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise RowError("not_text", f"{name} is {type(value).__name__}, not an id")
    return str(value)



Record = tuple[str, Any, str]
"""(locator, raw record, where): the locator is the fallback id of a row that cannot be read;
`where` says where the record sits ("train.jsonl:12") for the dropped record's detail."""


@dataclass
class Scope:
    """A split or scope filter (PubMedQA's test PMIDs, one MMLU subject, MMLU-Pro's health
    category) that accounts for every record it does not pass on.

    `keep(raw)` says whether a record is in scope; one it leaves out is counted under `why`
    (`LoadResult.out_of_scope`: fine to leave out, but counted). A record whose scope cannot be
    read (not an object, no PMID, a subject that is not text) raises RowError in `keep`: it is
    malformed, and `collect` drops it with that reason. Why: a filter that returned False for
    those made them vanish, counted nowhere (a non-object record in a PubMedQA test split)."""

    keep: Callable[[Any], bool]
    why: str
    left_out: int = 0
    unreadable: list[tuple[Record, RowError]] = dataclasses.field(default_factory=list)

    def filter(self, records: Iterable[Record]) -> Iterator[Record]:
        for record in records:
            try:
                inside = self.keep(record[1])
            except RowError as err:
                self.unreadable.append((record, err))
                continue
            if inside:
                yield record
            else:
                self.left_out += 1


def _unique_id(row_id: str, taken: dict[str, int]) -> str:
    """`row_id`, or, when a row of this file already has it (the same question twice, an id written
    twice), the first `row_id#n` from n = 2 that no row has. `taken` holds every id given, each
    with the last n its base was given. Why "no row has": a file whose own ids were a, a, a#2
    gave two rows the id a#2 (and the same option shuffle), refused later by the build and
    written as it was by `m1data load`."""
    if row_id not in taken:
        taken[row_id] = 1
        return row_id
    n = taken[row_id] + 1
    while f"{row_id}#{n}" in taken:
        n += 1
    taken[row_id] = n
    taken[f"{row_id}#{n}"] = 1
    return f"{row_id}#{n}"


def collect(
    source: str,
    records: Iterable[Record],
    parse,
    *,
    seed: int | None = DEFAULT_SEED,
    unique_options: bool = True,
    description: str = "",
    scope: Scope | None = None,
    fallback: Callable[[Any], Parsed] | None = None,
) -> LoadResult:
    """Turn (locator, raw record, where) records into validated rows and dropped records.

    `parse` validates the types of what it reads (raising RowError), so ids are only derived
    from fields known to be text and a malformed row is dropped with its reason, not a crash.
    `scope`: the filter `records` went through (already read, so it has counted them); what it
    left out is counted in the result, and the records whose scope it could not read are
    dropped with their reasons. `fallback`: another reading of a record `parse` could not read
    at all, for its question and options only (an eval set's decontamination target,
    `LoadResult.unscored`): a named set's row in another layout (`Question`, `Options`) was no target."""
    rows: list[dict[str, Any]] = []  # the latest ARROW_BATCH_ROWS at most; the others are in `tables`
    tables: list[pa.Table] = []
    bad: list[dict[str, str]] = []
    unscored: list[dict[str, Any]] = []
    taken: dict[str, int] = {}  # `_unique_id`
    records = list(records)
    for (locator, raw, where), err in scope.unreadable if scope is not None else []:
        located = RowError(err.reason, f"{where}: {err.detail}" if err.detail else where)
        bad.append(dropped_record(source, f"{source}:{locator}", located, raw))
    if len(records) >= PROGRESS_MIN_ROWS:
        records = track(records, description or f"loading {source}")
    for locator, raw, where in records:
        row_id = f"{source}:{locator}"
        parsed: Parsed | None = None
        try:
            parsed = parse(raw)
            row_id = (
                f"{source}:{parsed.native_id}"
                if parsed.native_id is not None
                else content_id(source, parsed.question, parsed.options)
            )
            row_id = _unique_id(row_id, taken)
            if parsed.error is not None:
                raise parsed.error
            if len(rows) == ARROW_BATCH_ROWS:
                tables.append(rows_to_table(rows))
                rows = []
            rows.append(
                make_row(
                    source=source,
                    row_id=row_id,
                    question=parsed.question,
                    options=parsed.options,
                    answer_idx=parsed.answer_idx,
                    context=parsed.context,
                    raw=raw,
                    seed=seed,
                    unique_options=unique_options,
                )
            )
        except RowError as err:
            located = RowError(err.reason, f"{where}: {err.detail}" if err.detail else where)
            bad.append(dropped_record(source, row_id, located, raw))
            # no question read (`unread_question`): another layout's reading may still be a target
            if (parsed is None or not parsed.question) and fallback is not None:
                parsed = _read_otherwise(fallback, raw)
            if parsed is not None and parsed.question.strip():
                unscored.append(unscored_row(source, row_id, parsed, raw))
    return LoadResult(rows=tables_to_dataset([*tables, rows_to_table(rows)]),
                      dropped=rows_to_dataset(bad, DROPPED_FEATURES), unscored=rows_to_dataset(unscored),
                      out_of_scope={scope.why: scope.left_out} if scope is not None and scope.left_out else {})


def _read_otherwise(fallback: Callable[[Any], Parsed], raw: Any) -> Parsed | None:
    """`fallback`'s reading of `raw` when it read options too: a bare stem ("Which of the following
    is correct?") is matched on the stem alone, and removed every training row that shared it."""
    try:
        parsed = fallback(raw)
    except RowError:
        return None
    return parsed if parsed.options else None


def unscored_row(source: str, row_id: str, parsed: Parsed, raw: Any) -> dict[str, Any]:
    """A dropped question in the row schema, for matching only: no answer, options as read."""
    question, context = parsed.question.strip(), parsed.context.strip()
    options = [o.strip() for o in parsed.options]
    return {
        "id": row_id, "source": source, "question": question, "context": context, "options": options,
        "answer_idx": -1, "answer_letter": "", "answer_text": "",
        "prompt": render_prompt(question, options, context),
        "metadata": json.dumps(raw, ensure_ascii=False, default=str),
    }


def check_some_rows_read(result: LoadResult, path: Path | str, source: str, *, expected: str = "") -> LoadResult:
    """A file from which not one record could be read as `source` is the wrong file, not a file
    of bad rows: say so, and what was expected, rather than return an empty dataset."""
    hint = f"; expected {expected}" if expected else ""
    if len(result.rows) == 0 and len(result.dropped) == 0:
        left = "".join(f" ({n:,} left out: {why})" for why, n in result.out_of_scope.items())
        raise MalformedFile(path, None, f"no {source} records in it{left}{hint}")
    if len(result.rows) == 0:
        first = result.dropped[0]
        raise MalformedFile(
            path, None,
            f"none of its {len(result.dropped)} records reads as a {source} file "
            f"(first: {first['reason']} {first['detail']}){hint}",
        )
    return result


# ---------------------------------------------------------------------------------------------
# Rows <-> files


ROW_SUFFIXES = (".parquet", ".jsonl")


def write_rows(ds: datasets.Dataset, out: str | Path) -> Path:
    """Write a Dataset as .parquet or .jsonl, chosen by the file's suffix, atomically: a kill
    mid-write leaves the previous file (or none), never a truncated one (see `write_together`)."""
    return write_together([(ds, out)])[0]


@datasets_bars_off()  # a library call prints nothing: datasets' own write bars are on by default
def write_together(outputs: Sequence[tuple[datasets.Dataset, str | Path]]) -> list[Path]:
    """Write several row files as one: all of them, or (after a crash, a kill, a full disk) none.

    Each is written to a temporary name in its own folder (so the rename stays on one file
    system) and flushed to disk; only then are they renamed into place. The first path is the
    commit mark: any old file there is removed before the others are renamed and it is renamed
    last, so whenever it exists, the files beside it are the ones written with it. (A kill in the
    instant between two renames can leave the others without the first, never the first without
    them.) Why: a file command's OUT without its OUT.dropped, or a half-written OUT, reads as a
    finished result."""
    targets = [Path(out) for _, out in outputs]
    for target in targets:
        if target.suffix not in ROW_SUFFIXES:
            raise UserError(f"{target}: output must end in .parquet or .jsonl")
        if target.is_dir():  # else an IsADirectoryError traceback at the rename, after the work
            raise UserError(f"{target} is a folder; the output is a file: choose another OUT")
    staged: list[Path] = []
    try:
        for (ds, _), target in zip(outputs, targets, strict=True):
            with storage_errors(target):  # a full disk: one line naming OUT, the previous pair kept
                staged.append(_stage_file(ds, target))
    except BaseException:
        for tmp in staged:
            tmp.unlink(missing_ok=True)
        raise
    first, *rest = targets
    with folder_lock(first.parent):
        first.unlink(missing_ok=True)
        for tmp, target in reversed(list(zip(staged, targets, strict=True))):
            tmp.replace(target)
    for folder in {t.parent.resolve() for t in targets}:
        fsync_folder(folder)  # the renames, durable (a power cut after the command returned keeps them)
    return targets


def _temporary_name(out: Path) -> Path:
    """Hidden, and not ending in a rows suffix: a leftover is never read as rows (`read_rows`)."""
    return out.with_name(f".{out.name}.{os.getpid()}.tmp")


def _stage_file(ds: datasets.Dataset, out: Path) -> Path:
    """`ds` written in `out`'s format to a temporary name beside `out`, on disk (fsync)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob(f".{glob.escape(out.name)}.*.tmp"):  # what a killed write left
        pid = stale.name[len(f".{out.name}."):-len(".tmp")]
        if not (pid.isdigit() and other_process_alive(int(pid))):  # not another command's, still writing
            stale.unlink(missing_ok=True)
    tmp = _temporary_name(out)
    try:
        if out.suffix == ".parquet":
            flattened(ds).to_parquet(str(tmp))  # a selection written as it is is slow (`flattened`)
        else:
            flattened(ds).to_json(str(tmp), lines=True, force_ascii=False)
        with tmp.open("rb") as handle:
            os.fsync(handle.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)  # a half-written file would keep a full disk full
        raise
    return tmp


def read_dataset(path: str | Path, name: str | None = None, split: str = "train",
                 what: str = "a dataset") -> datasets.Dataset:
    """The rows of an existing dataset: a .parquet/.jsonl file of rows, a Hub-layout folder or a
    Hub repo id (the three forms `build --from-m23k` and `m1data train --dataset` take). Why one
    function: each door had its own part of the checks. Every problem the user can fix is one
    line: a run folder given for its Hub folder (`datasets` read its stage files as one dataset and
    failed on their differing columns), a config or split the dataset lacks (a ValueError, shown
    as an internal error), a name that is neither a file nor a repo the Hub can give."""
    local = Path(path).expanduser()  # a Hub repo id never starts with "~"
    if local.is_file():
        return read_rows(local)
    if local.is_dir() and ((local / "builds.json").is_file() or any(local.glob("*/manifest.json"))):
        raise UserError(f"{local} is a run folder, not {what} (a Hub-layout folder, a .parquet/.jsonl file "
                        f"or a Hub repo id){_hub_folders_of(local)}")
    try:
        return datasets.load_dataset(str(local) if local.exists() else str(path), name, split=split)
    except ValueError as err:  # an unknown config or split: the message lists the ones there are
        raise UserError(f"{path}: {' '.join(str(err).split())}") from None
    except (ConnectionError, FileNotFoundError) as err:  # DatasetNotFoundError is a FileNotFoundError
        if local.exists():
            raise
        raise UserError(f"{path}: no such file or folder, and the Hub could not give it as a repo id "
                        f"({type(err).__name__}: {' '.join(str(err).split())})") from None


def _hub_folders_of(run: Path) -> str:
    """The Hub-layout folders a run folder holds, each with the dataset its card says it is: a
    run that built m23K and m1K holds two (`hub`, `hub-m23k`), and naming `hub` alone sent a user
    who wanted the m23K to the m1K."""
    from m1data.publishing.cardmeta import hub_folder_dataset

    found = [f"{folder} ({hub_folder_dataset(folder) or 'unknown'})" for folder in sorted(run.glob("hub*"))
             if (folder / "README.md").is_file()]
    return f"; its Hub-layout folders: {', '.join(found)}" if found else ""


def _default_config(folder: Path) -> str | None:
    """The config a Hub folder's card marks `default: true` (None without one)."""
    from m1data.publishing.cardmeta import split_card

    card = folder / "README.md"
    metadata = split_card(card.read_text(encoding="utf-8"))[0] if card.is_file() else {}
    configs = metadata.get("configs") if isinstance(metadata.get("configs"), list) else []
    defaults = [c.get("config_name") for c in configs if isinstance(c, dict) and c.get("default")]
    return defaults[0] if len(defaults) == 1 and isinstance(defaults[0], str) else None


def parquet_dataset(path: str | Path, columns: list[str] | None = None) -> datasets.Dataset:
    """A parquet file as a Dataset, zero rows included: `Dataset.from_parquet` refuses a file
    without rows ("corresponds to no data"), so that case is read through pyarrow (the schema,
    and with it every column's type, is kept)."""
    import pyarrow.parquet as pq

    with _reading(path):
        if pq.ParquetFile(str(path)).metadata.num_rows == 0:
            return datasets.Dataset(pq.read_table(str(path), columns=columns))
        return datasets.Dataset.from_parquet(str(path), columns=columns)


@contextlib.contextmanager
def _reading(path: str | Path) -> Iterator[None]:
    """Errors of reading a row file through pyarrow and `datasets`, said in one line each. A file
    cut short (a copy or a write that was stopped) or not rows at all fails in pyarrow with no file
    named. And `datasets` writes an Arrow copy into its cache folder, so a full disk there fails
    a read with an error that names neither that folder nor the file: both are named."""
    from datasets import config

    json_log = logging.getLogger("datasets.packaged_modules.json.json")  # says it too, on a line of its own
    was = json_log.disabled
    json_log.disabled = True
    try:
        with storage_errors(f"{config.HF_DATASETS_CACHE} (datasets' cache, HF_DATASETS_CACHE; reading {path})"):
            yield
    except M1DataError:
        raise
    except Exception as err:
        problem = _arrow_problem(err)
        if problem is None:
            raise
        why = ("a column holds values of more than one type" if "changed from" in problem else
               "the file is cut short (a copy or a write that was stopped) or is not rows")
        raise UserError(f"{path} cannot be read as rows ({problem}): {why}; write it again") from None
    finally:
        json_log.disabled = was


def _arrow_problem(err: BaseException) -> str | None:
    """The first line of the pyarrow error behind `err` (`datasets` wraps it), if there is one."""
    current: BaseException | None = err
    for _ in range(8):
        if current is None:
            return None
        if isinstance(current, pa.ArrowException):
            return str(current).strip().splitlines()[0]
        current = current.__cause__ or current.__context__
    return None


@datasets_bars_off()  # as write_together: no "Generating train split" bar
def read_rows(path: str | Path | Sequence[str | Path]) -> datasets.Dataset:
    """Read a Dataset written by `write_rows` (or any .parquet / .jsonl / .json of rows); an empty
    file is a Dataset of zero rows (an empty .jsonl has no columns either).

    Several paths, or a folder (its .parquet/.jsonl files in name order, or a Hub folder's
    data/<config>/ files), are read as one Dataset
    in that order: a pool split over shards, or the outputs of several runs, goes through a stage
    in one call, so one cache and one plan cover all of it."""
    if not isinstance(path, (str, Path)):
        return _concatenate([read_rows(p) for p in path], [str(p) for p in path])
    path = Path(path).expanduser()
    if path.is_dir():
        return read_rows(_folder_files(path))
    check_file(path)  # pyarrow's and json's own errors name the path inside an errno line
    if path.suffix == ".parquet":
        return parquet_dataset(path)
    if path.suffix == ".jsonl":
        return _jsonl_rows(path)
    if path.suffix == ".json":
        return _json_rows(path)
    raise UserError(f"{path}: input must end in .parquet, .jsonl or .json")


def _jsonl_rows(path: Path, shown: Path | None = None) -> datasets.Dataset:
    """The rows of a JSON Lines file. `shown`: the file a copy was made of (a .json's rows are read
    from a JSON Lines copy, `_json_rows`), which errors name. A copy is read into memory, its
    Arrow file built beside it: in datasets' cache, every read left one (a path of its own)."""
    if not path.read_bytes().strip():
        return datasets.Dataset.from_dict({})
    copy = {"keep_in_memory": True, "cache_dir": str(path.parent / "cache")} if shown is not None else {}
    try:
        with _reading(shown or path):
            rows = datasets.Dataset.from_json(str(path), **copy)
        rows.data.table.validate(full=True)
    except (UnicodeDecodeError, pa.ArrowInvalid):
        _raise_if_not_utf8(path)
        raise
    return _exact_mixed_columns(rows, path, shown or path)


def _exact_mixed_columns(rows: datasets.Dataset, path: Path, shown: Path) -> datasets.Dataset:
    """`rows` with each column of mixed types (datasets' Json: an answer 3 on one line, "null" on
    another) holding the file's own values. Why: `datasets` stores such a column's text as it is
    when it parses as JSON, and decodes it on reading, so the answer "null" came back None, the
    option text "[1, 2]" a list and the question "123" a number, in every row m1data wrote. A column
    whose mixed types are nested inside (a list of objects with a field of two types) cannot be
    rebuilt so: where its values differ from the file's, the file is refused, naming the column."""
    mixed = [name for name, feature in rows.features.items() if isinstance(feature, datasets.Json)]
    nested = [name for name in rows.column_names if name not in mixed and _holds_json(rows.data.column(name).type)]
    if not mixed and not nested:
        return rows
    # each record's values of these columns only: the whole records (question and reasoning texts) took more memory
    # than the Dataset, to rebuild a column of answers
    records = [{name: record[name] for name in mixed + nested if name in record} for _, record in read_jsonl(path)]
    for name in nested:
        number = next((n for n, (value, record) in enumerate(zip(rows[name], records), 1) if value != record.get(name)),
                      None)
        if number is not None:
            raise MalformedFile(shown, number, f"column {name!r} holds values of several types inside it, and "
                                               f"`datasets` reads some of its text as JSON (a value changed); write "
                                               "each of its fields with one type")
    table = rows.data.table
    for name in mixed:
        exact = [None if name not in record or record[name] is None else json.dumps(record[name], ensure_ascii=False)
                 for record in records]
        column = pa.ExtensionArray.from_storage(table.schema.field(name).type, pa.array(exact, pa.string()))
        table = table.set_column(table.schema.get_field_index(name), table.schema.field(name), column)
    return with_table(rows, table)


def _holds_json(kind: pa.DataType) -> bool:
    """Whether a column's type has datasets' Json (arrow.json) anywhere inside it."""
    if isinstance(kind, pa.BaseExtensionType):
        return kind.extension_name == "arrow.json" or _holds_json(kind.storage_type)
    return any(_holds_json(kind.field(i).type) for i in range(kind.num_fields))


def _json_rows(path: Path) -> datasets.Dataset:
    """The rows of a .json file: a list of row objects (`json.dump(rows, f)`), an object holding
    one (pandas' `to_json` orients, `{"data": [...]}`), or a row a line (`Dataset.to_json`).

    Why through a JSON Lines copy: read so, a .json gives what the .jsonl of the same rows gives
    (columns, types, nested values). `datasets.Dataset.from_list` took a list's columns from its
    first row alone (a row `{}` first made the file 0 rows), merged nested objects' keys, and
    refused columns of mixed types that the JSON Lines reader reads; `from_json` read an object
    as one row."""
    if not path.read_bytes().strip():
        return datasets.Dataset.from_dict({})
    data = read_json_or_lines(path)
    if data is None:  # a row a line
        return _jsonl_rows(path)
    records = _held_records(data) if isinstance(data, dict) else data
    if not isinstance(records, list):
        raise MalformedFile(path, None, "expected a list of row objects, or an object holding one (as pandas' to_json "
                                        "writes a frame); a file of one row: write it in a list")
    for number, row in enumerate(records, start=1):
        if not isinstance(row, dict):
            raise MalformedFile(path, None, f"item {number} is {type(row).__name__}, not a row object")
    with tempfile.TemporaryDirectory(prefix="m1data-json-") as folder:
        copy = Path(folder) / "rows.jsonl"
        with storage_errors(f"{copy} (a JSON Lines copy of {path}; TMPDIR names the folder)"):
            with open(copy, "w", encoding="utf-8") as lines:
                for row in records:
                    lines.write(json.dumps(row, ensure_ascii=False) + "\n")
        return _jsonl_rows(copy, shown=path)


def _raise_if_not_utf8(path: Path) -> None:
    """Stop, naming the line, on text that is not UTF-8. pyarrow's JSON reader keeps such bytes in
    its string values without a word (the first stage to read the column then failed with an
    internal error), and in a key `datasets` fails with a bare UnicodeDecodeError."""
    with open(path, "rb") as lines:
        for number, line in enumerate(lines, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as err:
                raise MalformedFile(path, number, f"is not UTF-8 text (byte {line[err.start]:#04x}, the line's byte "
                                                  f"{err.start + 1}); write the file as UTF-8") from None


def _folder_files(path: Path) -> list[Path]:
    """The row files of a folder: its own .parquet/.jsonl files, or, in a Hub folder
    (`m1data publish`'s layout, README.md + data/<config>/<split>-*.parquet), its one config's
    files. Every build's Hub folder has two configs (its rows and their prompt/completion copy), so
    one whose card names a default config gives that one's, as `load_dataset(folder)` does; any
    other folder of several configs must be named down to one (FOLDER/data/<config>)."""
    files = sorted(p for p in path.iterdir() if p.suffix in ROW_SUFFIXES and p.is_file())
    if files:
        return files
    data = path / "data"
    configs = sorted(p for p in data.iterdir() if p.is_dir()) if data.is_dir() else []
    default = _default_config(path)
    if len(configs) > 1 and data / str(default) in configs:
        configs = [data / str(default)]
    if len(configs) > 1:
        raise UserError(f"{path} is a Hub folder of {len(configs)} configs and its card names no default; give "
                        "one: " + ", ".join(str(c) for c in configs))
    files = sorted(p for p in configs[0].iterdir() if p.suffix in ROW_SUFFIXES and p.is_file()) if configs else []
    if not files:
        raise UserError(f"{path}: a folder given as input holds no .parquet or .jsonl file (nor data/<config>/ of one)")
    return files


def _concatenate(parts: list[datasets.Dataset], names: list[str]) -> datasets.Dataset:
    """One Dataset of several inputs, which must have the same columns (empty ones are skipped)."""
    parts_with_rows = [(name, part) for name, part in zip(names, parts, strict=True) if len(part)]
    if not parts_with_rows:
        return parts[0] if parts else datasets.Dataset.from_dict({})
    first_name, first = parts_with_rows[0]
    for name, part in parts_with_rows[1:]:
        if part.features != first.features:
            raise UserError(
                f"{name} does not have the columns of {first_name} "
                f"({sorted(part.column_names)} vs {sorted(first.column_names)}); inputs read together must match"
            )
    return datasets.concatenate_datasets([part for _, part in parts_with_rows])


__all__ = [
    "read_dataset",
    "PROGRESS_MIN_ROWS",
    "ROW_SUFFIXES",
    "HubUnreachable",
    "LoadResult",
    "MalformedFile",
    "Parsed",
    "check_file",
    "check_some_rows_read",
    "collect",
    "column_options",
    "context_text",
    "decode",
    "DuplicateKey",
    "field",
    "key_letter",
    "key_text",
    "letter_index",
    "lettered_options",
    "load_hub",
    "option_texts",
    "options_cell",
    "listed_options",
    "options_in_question",
    "other_process_alive",
    "parquet_dataset",
    "read_csv",
    "JsonLinesFile",
    "pandas_records",
    "read_json",
    "read_json_or_lines",
    "read_jsonl",
    "read_parquet",
    "read_records",
    "read_rows",
    "same_text",
    "Scope",
    "strip_option_letters",
    "text",
    "unique_keys",
    "unread_question",
    "unscored_row",
    "write_rows",
    "whole_number",
    "write_together",
]
