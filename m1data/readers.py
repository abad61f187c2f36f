"""Reading raw files with errors that name the file and the line.

A malformed file is an error, never a silently shorter dataset: every reader here raises
`MalformedFile` pointing at the exact place, so the user can open the file and fix it.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import datasets

from m1data.errors import M1DataError, UserError


class MalformedFile(M1DataError, ValueError):
    def __init__(self, path: str | Path, line: int | None, problem: str):
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {problem}")
        self.path, self.line, self.problem = str(path), line, problem


def check_file(path: str | Path) -> Path:
    """`path` as a Path, after checking it names a readable file (a folder is a clear error)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise MalformedFile(path, None, "is a directory; expected a file")
    return path


def decode(path: str | Path, data: bytes, first_line: int = 1) -> str:
    """UTF-8 text of `data`, without a leading byte order mark (Excel writes one into CSVs and
    it would otherwise stick to the first question or column name). Bytes that are not UTF-8
    are an error naming the line, so the user can find and re-save them."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = first_line + data.count(b"\n", 0, err.start)
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise MalformedFile(
            path, line, f"not UTF-8 text (byte 0x{data[err.start]:02x} at byte {column} of the line); re-save it as UTF-8"
        ) from None


def read_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object); blank lines are allowed, anything else must be an object."""
    path = check_file(path)
    try:
        with open(path, encoding="utf-8-sig") as handle:  # text mode is the fast path
            for number, line in enumerate(handle, start=1):
                line = line.rstrip("\r\n")
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as err:  # pos, not colno: colno restarts after a newline
                    raise MalformedFile(path, number, f"invalid JSON ({err.msg} at column {err.pos + 1})") from None
                if not isinstance(obj, dict):
                    raise MalformedFile(path, number, f"expected a JSON object, got {type(obj).__name__}")
                yield number, obj
    except UnicodeDecodeError:  # text mode decodes in blocks: find the line in the bytes
        decode(path, path.read_bytes())
        raise


def read_json(path: str | Path) -> Any:
    path = check_file(path)
    text = decode(path, path.read_bytes())
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise MalformedFile(path, err.lineno, f"invalid JSON ({err.msg} at column {err.colno})") from None


def read_csv(path: str | Path, *, header: bool = True, width: int | None = None) -> Iterator[tuple[int, Any]]:
    """Yield (line number, row): a dict when the file has a header, else a list of `width` cells."""
    path = check_file(path)
    reader = csv.reader(io.StringIO(decode(path, path.read_bytes()), newline=""))
    columns: list[str] | None = None
    try:
        for cells in reader:
            line = reader.line_num
            if not cells:
                continue
            if header and columns is None:
                columns = cells
                continue
            expected = len(columns) if columns is not None else width
            if expected is not None and len(cells) != expected:
                raise MalformedFile(path, line, f"expected {expected} fields, found {len(cells)}")
            yield line, (dict(zip(columns, cells)) if columns is not None else cells)
    except csv.Error as err:
        raise MalformedFile(path, reader.line_num, f"invalid CSV ({err})") from None


def read_parquet(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Rows of a parquet file (a Hub export, say); the 'line' is the 1-based row number."""
    path = check_file(path)
    try:
        ds = datasets.Dataset.from_parquet(str(path))
    except Exception as err:  # noqa: BLE001 - pyarrow raises several unrelated types for a bad file
        raise MalformedFile(path, None, f"unreadable parquet ({err})") from None
    yield from enumerate(ds, start=1)


def read_records(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Rows of a .jsonl, .json (a list of objects), .csv or .parquet file."""
    path = check_file(path)
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        yield from read_jsonl(path)
    elif suffix == ".parquet":
        yield from read_parquet(path)
    elif suffix == ".csv":
        yield from read_csv(path)
    elif suffix == ".json":
        data = read_json(path)
        if not isinstance(data, list):
            raise MalformedFile(path, None, "expected a JSON list of objects")
        for number, obj in enumerate(data, start=1):
            if not isinstance(obj, dict):
                raise MalformedFile(path, None, f"item {number} is not an object")
            yield number, obj
    else:
        raise MalformedFile(path, None, f"unsupported file type {suffix!r} (use .jsonl, .json, .csv or .parquet)")


def write_rows(ds: datasets.Dataset, out: str | Path) -> Path:
    """Write a Dataset as .parquet or .jsonl, chosen by the file's suffix."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".parquet":
        ds.to_parquet(str(out))
    elif out.suffix == ".jsonl":
        ds.to_json(str(out), lines=True, force_ascii=False)
    else:
        raise UserError(f"{out}: output must end in .parquet or .jsonl")
    return out


def parquet_dataset(path: str | Path, columns: list[str] | None = None) -> datasets.Dataset:
    """A parquet file as a Dataset, zero rows included: `Dataset.from_parquet` refuses a file
    without rows ("corresponds to no data"), so that case is read through pyarrow (the schema,
    and with it every column's type, is kept)."""
    import pyarrow.parquet as pq

    if pq.ParquetFile(str(path)).metadata.num_rows == 0:
        return datasets.Dataset(pq.read_table(str(path), columns=columns))
    return datasets.Dataset.from_parquet(str(path), columns=columns)


ROW_SUFFIXES = (".parquet", ".jsonl")


def read_rows(path: str | Path | Sequence[str | Path]) -> datasets.Dataset:
    """Read a Dataset written by `write_rows` (or any .parquet / .jsonl of rows); an empty file
    is a Dataset of zero rows (an empty .jsonl has no columns either).

    Several paths, or a folder (its .parquet/.jsonl files in name order), are read as one Dataset
    in that order: a pool split over shards, or the outputs of several runs, goes through a stage
    in one call, so one cache and one plan cover all of it."""
    if not isinstance(path, (str, Path)):
        return _concatenate([read_rows(p) for p in path], [str(p) for p in path])
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in ROW_SUFFIXES and p.is_file())
        if not files:
            raise UserError(f"{path}: a folder given as input holds no .parquet or .jsonl file")
        return read_rows(files)
    if path.suffix == ".parquet":
        return parquet_dataset(path)
    if path.suffix == ".jsonl":
        if not path.read_bytes().strip():
            return datasets.Dataset.from_dict({})
        return datasets.Dataset.from_json(str(path))
    raise UserError(f"{path}: input must end in .parquet or .jsonl")


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

