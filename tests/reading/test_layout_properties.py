"""Generated files, every door: the layouts and values users bring, read the same way everywhere.

Hypothesis writes a file of questions in one of the layouts users bring (JSON Lines, a JSON list or
an object holding it or a pandas frame's `to_json` in any orient, each under either name, CSV (cut by commas, semicolons or tabs) or TSV with or without a byte order
mark, parquet, a `save_to_disk` folder or one `.arrow` file of `datasets`; options as a list, a dict or a struct keyed by letters
(either case) or numbers from 0 or 1, the labels beside the texts (ARC's {"label": [...], "text":
[...]}, BigBio's [{"key": "A", "value": ...}]), one text of them after their labels ("A. x" a line
each, "(A) x (B) y"), or one column each under any of the usual names; answer keys as letters "B", "b", "(B)", "B.", "Answer: B", "Option b", 0- or
1-based indices as ints, whole floats or text, or the option's text in another case or spacing,
alone or after its letter ("C. text", "(C) text"); word, numeric, right-to-left and very long option
texts; rows whose key is missing, out of range, names one option by its letter and another by its
text, or whose options have an empty one in the middle; shorter rows in a file of wider option
columns; the file whole or cut into a Hub export's shards, plain or compressed), and every door must
read each row right or account for it:

- a row with a readable key and options is a row, its answer the option the key names and its
  options exactly the ones written (none lost, none shifted);
- any other row is a dropped record with a reason (an eval question stays a decontamination target);
- or the whole file stops with one line (no row readable; an answer kind the file cannot tell
  and the mapping does not say), never another exception;
- and the doors agree row for row: for a mapped source the Python API (`load_source`), the
  command line (`m1data load --mapping`) and a build config (`LoadSources` from `sources:`); for
  an eval file `load_eval_input`, `m1data load-eval`, `infer --eval-sets`' reader (with
  `--eval-mapping`) and `load_evals` (every question a target). The Ray door runs one generated case in
  tests/running/test_distributed.py.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import lzma
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from m1data.cli import _eval_mappings, app
from m1data.config import from_dict
from m1data.errors import M1DataError
from m1data.infer.score import read_eval_sets
from m1data.reading.evalsets import EvalInput, load_eval_any, load_eval_input, load_evals, with_mappings
from m1data.reading.readers import read_rows
from m1data.reading.sources import load_source
from m1data.running.pipeline import RunContext
from m1data.stages.loading import LoadConfig, LoadSources

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

LETTERS = "ABCDEFGHIJ"
WORDS = "artery vein nerve kidney liver insulin cortisol sodium fever rash biopsy tumour enzyme valve".split()
OPTION_COLUMNS = {  # the names users give one column per option (a mapping names them)
    "op": ["opa", "opb", "opc", "opd", "ope", "opf"],
    "letter": list("ABCDEF"),
    "option_x": [f"option_{c}" for c in "abcdef"],
    "Option n": [f"Option {i}" for i in range(1, 7)],
}
GUESSED_COLUMNS = ("op", "letter")  # the ones an eval file may use with no mapping
COMPRESS = {".gz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress,
            ".zst": lambda data: pa.compress(data, codec="zstd", asbytes=True)}


def _norm(text: str) -> str:
    return " ".join(text.casefold().split())


def option_text(style: str) -> st.SearchStrategy[str]:
    return {
        "words": st.lists(st.sampled_from(WORDS), min_size=1, max_size=3).map(" ".join),
        "numbers": st.one_of(st.integers(0, 500).map(str), st.sampled_from(["0.5", "1.5", "10", "2.25"])),
        "unicode": st.text(st.sampled_from("אבגדהابتثج éñßЖж"), min_size=1, max_size=8),
        "long": st.lists(st.sampled_from(WORDS), min_size=60, max_size=120).map(" ".join),
    }[style].filter(lambda t: t.strip() != "")


@dataclass
class Row:
    question: str
    options: list[Any]  # as written: "" or None at a hole
    right: int
    key: Any  # what the file writes; None: no key
    good: bool  # a row every door must read

    @property
    def answer(self) -> str:
        return self.options[self.right].strip()


def key_forms(kind: str, options: list[str], index: int, container: str) -> st.SearchStrategy[Any]:
    """Every way a file writes the key of `options[index]` as `kind`."""
    letter = LETTERS[index]
    if kind == "letter":
        return st.sampled_from([letter, letter.lower(), f"({letter})", f"{letter}.", f"{letter})", f" {letter.lower()} ",
                                f"Answer: {letter}", f"Option {letter.lower()}", f"The correct answer is ({letter})"])
    if kind in ("index0", "index1"):
        number = index + (kind == "index1")
        forms = [number, str(number)] + ([float(number)] if container in ("jsonl", "json", "parquet", "saved", "arrow") else [])
        return st.sampled_from(forms)
    text = options[index].strip()
    forms = [text, f"  {text} ", text.replace(" ", "  "),  # and with the option's letter, as exports write them
             f"{letter}. {text}", f"({letter}) {text}", f"{letter.lower()}) {text}", f"{letter}: {text}"]
    if len(text) > 1 and text.swapcase().lower() == text.lower():  # "ß".upper() is "SS": another text
        forms.append(text.swapcase())
    return st.sampled_from(forms)


@st.composite
def files(draw):
    """(rows, layout): a file's questions and how it writes them."""
    style = draw(st.sampled_from(["words", "numbers", "unicode", "long"]))
    kind = draw(st.sampled_from(["letter", "index0", "index1", "text"]))
    container = draw(st.sampled_from(["jsonl", "json", "csv", "tsv", "parquet", "saved", "arrow"]))
    shape = draw(st.sampled_from(["list", "dict", "columns", "listed", "labels", "keyed"]))
    names = draw(st.sampled_from(sorted(OPTION_COLUMNS)))
    tell = draw(st.booleans())
    rows = []
    for i in range(draw(st.integers(1, 6))):
        k = draw(st.integers(2, 5))
        options = draw(st.lists(option_text(style), min_size=k, max_size=k, unique_by=_norm))
        right = draw(st.integers(0, k - 1))
        fault = draw(st.sampled_from([None, None, None, None, "hole", "no_key", "out_of_range", "mismatch"]))
        if fault == "out_of_range" and (not tell or kind == "text"):
            fault = None  # an index past the end is another kind's key: only a told kind can call it broken
        if fault == "mismatch" and kind != "text":
            fault = None  # a text key with another option's letter ("A. <option B's text>"): a broken key
        if fault == "hole" and k < 3:
            fault = None
        key = draw(key_forms(kind, options, right, container))
        if fault == "hole":
            hole = draw(st.integers(0, k - 2))
            options[hole] = draw(st.sampled_from(["", None])) if container not in ("csv", "tsv") else ""
        elif fault == "no_key":
            key = None
        elif fault == "out_of_range":
            key = {"letter": LETTERS[k], "index0": k, "index1": k + 1}[kind]
        elif fault == "mismatch":
            key = f"{LETTERS[(right + 1) % k]}. {options[right].strip()}"
        rows.append(Row(f"Q{i}: " + draw(st.sampled_from(["plain", "a, comma", 'a "quote"', "two\nlines", "עברית"])),
                        options, right, key, fault is None))
    layout = {"style": style, "kind": kind, "container": container, "shape": shape, "names": names, "tell": tell,
              "bom": draw(st.booleans()), "question": draw(st.sampled_from(["question", "Question", "stem"])),
              "answer": draw(st.sampled_from(["answer", "answer_idx", "label", "Correct"])),
              # a .json's rows: a list, in {"version": ..., "data": [...]}, as pandas' to_json writes a frame, or
              # a line each (`Dataset.to_json`; of two rows or more: one object alone in a .json is refused,
              # a row or a holder of rows); a .jsonl's a line each or a list (`json.dump`)
              "json": draw(st.sampled_from(["list", "wrapped", "columns", "index", "split", "lists"] + ["lines"] * (len(rows) > 1)
                                           if container == "json" else ["lines", "lines", "list"])),
              # shape "listed": the options in one text after their labels, a line each or "(A) x (B) y"
              "label": draw(st.sampled_from(["A. ", "(A) ", "A) ", "A: ", "a) ", "(A) one line"])),
              # shape "dict": the keys; "labels" and "keyed": the labels beside the texts
              "keys": draw(st.sampled_from(["A", "A", "a", "1", "0"])),
              "delimiter": draw(st.sampled_from([",", ",", ";", "\t"])),  # a .csv's; Excel's is ";" in some locales
              "shards": 1 if container in ("saved", "arrow") else draw(st.integers(1, min(3, len(rows)))),
              "compress": "" if container in ("parquet", "saved", "arrow") else draw(st.sampled_from(["", "", ".gz", ".bz2", ".xz", ".zst"]))}
    if container == "json" and layout["json"] == "lines":
        layout["shards"] = 1  # a shard of one row would be one object alone
    return rows, layout


def records(rows: list[Row], layout: dict) -> list[dict]:
    width = max(len(r.options) for r in rows)
    out = []
    for i, row in enumerate(rows):
        record: dict[str, Any] = {"id": f"r{i}", layout["question"]: row.question}
        if layout["shape"] == "list":
            record["options"] = list(row.options)
        elif layout["shape"] == "dict":
            record["options"] = dict(zip(option_keys(layout["keys"]), row.options))
        elif layout["shape"] == "labels":  # ARC's and CommonsenseQA's choices
            record["options"] = {"label": option_keys(layout["keys"])[:len(row.options)], "text": list(row.options)}
        elif layout["shape"] == "keyed":  # BigBio's med_qa
            record["options"] = [{"key": k, "value": t} for k, t in zip(option_keys(layout["keys"]), row.options)]
        elif layout["shape"] == "listed":
            record["options"] = listed(row.options, layout["label"])
        else:
            columns = OPTION_COLUMNS[layout["names"]][:width]
            record.update({c: (row.options[j] if j < len(row.options) else None) for j, c in enumerate(columns)})
        record[layout["answer"]] = row.key
        out.append(record)
    return out


def option_keys(first: str) -> list[str]:
    """The keys of a file's options, from `first` on: letters in either case, or numbers from 0 or 1."""
    return [str(i + int(first)) for i in range(len(LETTERS))] if first.isdigit() else list(
        LETTERS.lower() if first.islower() else LETTERS)


def listed(options: list[Any], label: str) -> str:
    """Options written out in one text after their labels ("A. x\\nB. y", "(A) x (B) y")."""
    one_line = label.endswith("one line")
    label = label.removesuffix("one line").strip()  # "A.", "(A)", "a)"
    letters = LETTERS.lower() if label.islower() else LETTERS
    return (" " if one_line else "\n").join(f"{label.replace(letters[0], letter)} {option or ''}"
                                             for letter, option in zip(letters, options))


def json_held(recs: list[dict], form: str) -> Any:
    """The records as a .json file holds them: a list, wrapped as releases wrap rows, or a pandas
    frame's `to_json` in orient "columns" (its default), "index" or "split", or a list a column
    (`json.dump(dataset.to_dict())`)."""
    columns = list(dict.fromkeys(c for r in recs for c in r))
    return {"list": recs,
            "wrapped": {"version": "1.0", "data": recs},
            "columns": {c: {str(i): r.get(c) for i, r in enumerate(recs)} for c in columns},
            "index": {str(i): {c: r.get(c) for c in columns} for i, r in enumerate(recs)},
            "split": {"columns": columns, "index": list(range(len(recs))), "data": [[r.get(c) for c in columns] for r in recs]},
            "lists": {c: [r.get(c) for r in recs] for c in columns},
            }[form]


def write(rows: list[Row], layout: dict, folder: Path, recs: list[dict] | None = None, name: str = "qs") -> Path:
    recs = records(rows, layout) if recs is None else recs
    path = folder / f"{name}.{layout['container']}"
    container = layout["container"]
    if container in ("json", "jsonl"):
        form = layout.get("json", "lines" if container == "jsonl" else "list")
        text = ("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs) if form == "lines"
                else json.dumps(json_held(recs, form), ensure_ascii=False, indent=1))
        path.write_text(text, encoding="utf-8")
    elif container in ("csv", "tsv"):
        columns = list(dict.fromkeys(c for r in recs for c in r))
        out = io.StringIO()
        writer = csv.writer(out, delimiter="\t" if container == "tsv" else layout.get("delimiter", ","))
        writer.writerow(columns)
        for r in recs:
            writer.writerow([_cell(r.get(c)) for c in columns])
        path.write_bytes((("\ufeff" if layout["bom"] else "") + out.getvalue()).encode("utf-8"))
    elif container == "saved":  # a folder `Dataset.save_to_disk` writes
        import datasets

        datasets.Dataset(pa.Table.from_pylist(_one_key_type(recs, layout))).save_to_disk(str(path))
    elif container == "arrow":  # one file as `datasets` writes its cache: an Arrow stream
        table = pa.Table.from_pylist(_one_key_type(recs, layout))
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
    else:
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(_one_key_type(recs, layout)), path)
    if layout.get("compress"):
        packed = path.with_name(path.name + layout["compress"])
        packed.write_bytes(COMPRESS[layout["compress"]](path.read_bytes()))
        path.unlink()
        return packed
    return path


def _one_key_type(recs: list[dict], layout: dict) -> list[dict]:
    """A parquet column has one type: keys of several (ints and texts) are all written as text."""
    keys = [r[layout["answer"]] for r in recs]
    if len({type(k) for k in keys if k is not None}) > 1:
        for r in recs:
            r[layout["answer"]] = None if r[layout["answer"]] is None else str(r[layout["answer"]])
    return recs


def write_source(rows: list[Row], layout: dict, folder: Path) -> Path:
    """The file, or with layout["shards"] > 1 a folder of that many shards of it, named as a Hub
    export names them (each with its own CSV header; parquet keys of one type across all)."""
    shards = layout.get("shards", 1)
    if shards == 1:
        return write(rows, layout, folder)
    recs = records(rows, layout)
    if layout["container"] == "parquet":
        _one_key_type(recs, layout)
    out = folder / "shards"
    out.mkdir()
    bounds = [round(i * len(rows) / shards) for i in range(shards + 1)]
    for i, (start, end) in enumerate(zip(bounds, bounds[1:])):
        write(rows[start:end], layout, out, recs[start:end], name=f"train-{i:05d}-of-{shards:05d}")
    return out


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def mapping_of(rows: list[Row], layout: dict) -> dict[str, Any]:
    width = max(len(r.options) for r in rows)
    options = OPTION_COLUMNS[layout["names"]][:width] if layout["shape"] == "columns" else "options"
    mapping = {"question": layout["question"], "options": options, "answer": layout["answer"], "id": "id"}
    if layout["tell"]:
        mapping["answer_kind"] = layout["kind"]
    return mapping


# ------------------------------------------------------------------ what every door must give


def check_rows(rows: list[Row], result_rows: list[dict], dropped: int) -> None:
    """Good rows read right, every other row dropped, none lost."""
    by_id = {r["id"].rsplit(":", 1)[1]: r for r in result_rows}
    for i, row in enumerate(rows):
        got = by_id.get(f"r{i}")
        if row.good:
            assert got is not None, (i, row)
            assert got["answer_text"] == row.answer, (i, row, got["options"])
            assert sorted(got["options"]) == sorted(o.strip() for o in row.options), (i, row, got["options"])
        else:
            assert got is None, (i, row, got)
    assert len(result_rows) + dropped == len(rows)


def outcome(load) -> tuple[str, Any]:
    """("rows", (rows, n dropped)) or ("stop", message); any other exception fails the test."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return "rows", load()
    except M1DataError as err:
        return "stop", str(err)


def check_stop(message: str, rows: list[Row], layout: dict) -> None:
    """A file may stop only when no row can be read, or when it cannot tell its answer kind."""
    assert "\n" not in message.strip(), message
    if "say which with answer_kind" in message:
        assert not layout["tell"], message
    else:
        assert not any(r.good for r in rows), message


# ------------------------------------------------------------------ a mapped source through its doors


def door_python(path: Path, mapping: dict, tmp: Path):
    result = load_source("mine", path, mapping=mapping)
    return result.rows.to_list(), len(result.dropped)


def door_cli(path: Path, mapping: dict, tmp: Path):
    spec = ",".join(f"{k}={'+'.join(v) if isinstance(v, list) else v}" for k, v in mapping.items())
    out = tmp / "cli.jsonl"
    result = CliRunner().invoke(app, ["load", "mine", "--path", str(path), "--out", str(out), "--mapping", spec])
    if result.exit_code != 0:
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        raise M1DataError(result.output.strip())
    dropped = tmp / "cli.dropped.jsonl"
    return read_rows(out).to_list(), len(read_rows(dropped)) if dropped.exists() else 0


def joined(mapping: dict | None) -> dict | None:
    """The mapping with its option columns written as the command line writes them (`o1+o2`), as a
    YAML config that copies the README's `--mapping` does: every door reads both forms alike (the
    Python door takes the list, the config doors this)."""
    return None if mapping is None else {k: "+".join(v) if isinstance(v, list) else v for k, v in mapping.items()}


def door_config(path: Path, mapping: dict, tmp: Path):
    config = from_dict(LoadConfig, {"sources": {"mine": {"path": str(path), "mapping": joined(mapping),
                                                         "licence": "MIT"}}})
    result = LoadSources(config).run(None, RunContext(tmp, tmp))
    return result.rows.to_list(), len(result.dropped) if result.dropped is not None else 0


SOURCE_DOORS = (door_python, door_cli, door_config)


def source_doors_agree(rows: list[Row], layout: dict, folder: Path, doors=SOURCE_DOORS) -> None:
    path = write_source(rows, layout, folder)
    mapping = mapping_of(rows, layout)
    outcomes = []
    for door in doors:
        kind, value = outcome(lambda door=door: door(path, mapping, folder))
        event(f"{kind}: {'told' if layout['tell'] else 'guessed'} {layout['kind']}")
        if kind == "stop":
            check_stop(value.removeprefix("error: "), rows, layout)
        else:
            check_rows(rows, *value)
        outcomes.append((kind, value if kind == "rows" else None))
    kinds = {kind for kind, _ in outcomes}
    assert len(kinds) == 1, [(d.__name__, k) for d, (k, _) in zip(doors, outcomes)]
    if kinds == {"rows"}:
        reference = [(r["id"], r["options"], r["answer_idx"]) for r in outcomes[0][1][0]]
        for door, (_, (got, _)) in zip(doors, outcomes):
            assert [(r["id"], r["options"], r["answer_idx"]) for r in got] == reference, door.__name__
    if layout["shards"] > 1 or layout["compress"]:  # shards, compressed or not, read as the one plain file
        whole = folder / "whole"
        whole.mkdir()
        plain = {**layout, "compress": ""}
        kind, value = outcome(lambda: door_python(write(rows, plain, whole), mapping, whole))
        assert kind == outcomes[0][0]
        if kind == "rows":
            assert [(r["id"], r["options"], r["answer_idx"]) for r in value[0]] == reference
            assert value[1] == outcomes[0][1][1]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(generated=files())
def test_a_mapped_source_reads_every_layout_right_through_every_door(generated, tmp_path_factory):
    rows, layout = generated
    source_doors_agree(rows, layout, tmp_path_factory.mktemp("src"))


# ------------------------------------------------------------------ an eval file through its doors


def eval_python(path: Path, tmp: Path, mapping: dict | None):
    (result,) = load_eval_input(EvalInput(str(path), mapping=mapping)).values()
    return result.rows.to_list(), len(result.dropped)


def eval_cli(path: Path, tmp: Path, mapping: dict | None):
    """`m1data load-eval`: OUT's scored rows. OUT holds the questions whose key could not be read
    too (answer_idx -1: still decontamination targets where OUT is an eval entry); those must be
    its dropped records as well."""
    out = tmp / "eval.jsonl"
    args = ["load-eval", str(path), "--out", str(out)]
    if mapping:
        args += ["--mapping", ",".join(f"{k}={'+'.join(v) if isinstance(v, list) else v}" for k, v in mapping.items())]
    result = CliRunner().invoke(app, args)
    if result.exit_code != 0:
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        raise M1DataError(result.output.strip())
    dropped = tmp / "eval.dropped.jsonl"
    rows, dropped_count = read_rows(out).to_list(), len(read_rows(dropped)) if dropped.exists() else 0
    scored = [r for r in rows if r["answer_idx"] >= 0]
    assert len(rows) - len(scored) <= dropped_count
    return scored, dropped_count


def eval_infer(path: Path, tmp: Path, mapping: dict | None):
    """`infer --eval-sets FILE`'s reader, the mapping given as `--eval-mapping STEM:...`: its scored
    rows. It keeps the questions whose key could not be read too (answer_idx -1), so that infer
    counts them as unscored; those must be dropped records of the loader as well."""
    given = [f"{path.name.split('.')[0]}:{_mapping_spec(mapping)}"] if mapping else None  # qs.jsonl.gz: qs
    (rows,) = read_eval_sets([str(path)], mappings=_eval_mappings(given)).values()
    (result,) = load_eval_input(EvalInput(str(path), mapping=mapping)).values()
    scored = [r for r in rows.to_list() if r["answer_idx"] >= 0]
    assert len(rows) - len(scored) <= len(result.dropped)
    return scored, len(result.dropped)


def _mapping_spec(mapping: dict) -> str:
    """A mapping as the command line writes it (`question=q,options=o1+o2,...`)."""
    return ",".join(f"{k}={'+'.join(v) if isinstance(v, list) else v}" for k, v in mapping.items())


def eval_config(path: Path, tmp: Path, mapping: dict | None):
    """A build config's eval entry, as YAML gives it: its targets' scored rows (decontamination
    reads every question; the scored ones must be the other doors' rows)."""
    from m1data.builders.m23k import M23KConfig

    config = from_dict(M23KConfig, {"evals": [{"name": "mine", "path": str(path), "mapping": joined(mapping)}]})
    (targets,) = load_evals(config.evals).values()
    rows = [r for r in targets.to_list() if r["answer_idx"] >= 0]
    return rows, len(targets) - len(rows)


EVAL_DOORS = (eval_python, eval_cli, eval_infer, eval_config)  # each takes a mapping (`infer --eval-mapping` too)



def guessable(layout: dict) -> bool:
    """Whether m1data's guesses read this layout with no mapping (question, options, answer
    columns under their usual names, and no answer kind to say)."""
    return (layout["question"] in ("question", "Question") and layout["answer"] in ("answer", "answer_idx", "label")
            and not layout["tell"]
            and (layout["shape"] != "columns" or layout["names"] in GUESSED_COLUMNS))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(generated=files(), guess=st.booleans())
# found by CI: infer's reader keeps a question without a key (answer_idx -1) to count it as unscored
@example(generated=([Row("Q0: plain", ["0", "1"], 0, "A", True), Row("Q1: plain", ["0", "1"], 0, None, False)],
                    {"style": "numbers", "kind": "letter", "container": "jsonl", "shape": "list", "names": "Option n",
                     "tell": False, "bom": False, "question": "question", "answer": "answer"}), guess=False)
def test_an_eval_file_reads_every_layout_right_through_every_door(generated, guess, tmp_path_factory):
    rows, layout = generated
    if guess:  # the usual spellings, so the guesses can read it if no answer kind needs saying
        names = layout["names"] if layout["names"] in GUESSED_COLUMNS else "op"
        layout = {**layout, "question": "question", "answer": layout["answer"].replace("Correct", "answer"),
                  "names": names}
    guess = guess and guessable(layout)
    mapping = None if guess else mapping_of(rows, layout)
    doors = EVAL_DOORS
    folder = tmp_path_factory.mktemp("eval")
    path = write_source(rows, layout, folder)  # the file, or a folder of its shards
    outcomes = []
    for door in doors:
        kind, value = outcome(lambda door=door: door(path, folder, mapping))
        event(f"{kind}: {'guessed' if guess else 'mapped'} {layout['kind']} {layout['shape']}")
        if kind == "stop":
            if door is eval_config:  # decontamination reads every question: it stops only on an unreadable file
                raise AssertionError(value)
            check_stop(value.removeprefix("error: "), rows, layout)
            outcomes.append("stop")
        elif door is eval_config:  # every question a target; the scored ones checked against the others below
            assert len(value[0]) + value[1] == len(rows)
            outcomes.append([(r["id"], r["options"], r["answer_idx"]) for r in value[0]])
        else:
            check_rows(rows, *value)
            outcomes.append([(r["id"], r["options"], r["answer_idx"]) for r in value[0]])
    scored = [o for door, o in zip(doors, outcomes) if door is not eval_config]
    assert all(o == scored[0] for o in scored), list(zip(doors, scored))
    assert outcomes[-1] == ([] if scored[0] == "stop" else scored[0])  # a file that stops scores nothing


# ------------------------------------------------------------------ index keys that fit two kinds


@st.composite
def index_files(draw):
    """(rows, layout, evidence): word options (no key is an option's text) keyed by whole numbers
    1..n-1 in the forms files write them, so 0-based and 1-based both fit every row; `evidence`
    None leaves it so, "zero" adds a row keyed 0 (only 0-based fits it) and "top" a row keyed its
    option count (only 1-based fits it), each read right under the kind it shows; "beside" keys
    `answer_idx` and writes the answer again beside it (MedQA's `answer`, the row schema's
    `answer_text`, the option's text or its letter), which tells the kind on every row."""
    container = draw(st.sampled_from(["jsonl", "json", "csv", "parquet"]))
    evidence = draw(st.sampled_from([None, "zero", "top", "beside"]))
    # what the rows must read as when decided
    kind = draw(st.sampled_from(["index0", "index1"])) if evidence == "beside" else "index1" if evidence == "top" else "index0"
    numbers_and_options = []
    for _ in range(draw(st.integers(1, 6))):
        k = draw(st.integers(2, 6))
        numbers_and_options.append((draw(st.integers(1, k - 1)),
                                    draw(st.lists(option_text("words"), min_size=k, max_size=k, unique_by=_norm))))
    if evidence in ("zero", "top"):
        k = draw(st.integers(2, 6))
        options = draw(st.lists(option_text("words"), min_size=k, max_size=k, unique_by=_norm))
        numbers_and_options.insert(draw(st.integers(0, len(numbers_and_options))),
                                   (0 if evidence == "zero" else k, options))
    rows = []
    for i, (number, options) in enumerate(numbers_and_options):
        forms = [number, str(number), f" {number} "] + ([float(number)] if container != "csv" else [])
        rows.append(Row(f"Q{i}: which one?", options, number - (kind == "index1"), draw(st.sampled_from(forms)), True))
    layout = {"kind": kind, "container": container, "shape": "list", "names": "op", "tell": False,
              "bom": draw(st.booleans()), "question": "question", "answer": "answer"}
    if evidence == "beside":
        layout.update(answer="answer_idx", beside=draw(st.sampled_from(["answer", "answer_text"])),
                      beside_form=draw(st.sampled_from(["text", "letter"])))
    return rows, layout, evidence


def beside_key(rows: list[Row], layout: dict) -> list[dict]:
    """The records, with the answer written again beside the key where the layout says so."""
    recs = records(rows, layout)
    if "beside" in layout:
        for row, rec in zip(rows, recs):
            rec[layout["beside"]] = row.answer if layout["beside_form"] == "text" else LETTERS[row.right]
    return recs


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(generated=index_files())
def test_index_keys_that_fit_both_bases_stop_every_door_unless_a_key_decides(generated, tmp_path_factory):
    """All keys in 1..n-1 (say {1, 2, 3} over 4 options) read as 0- and as 1-based alike: a guess
    is wrong on every row half the time. Every scoring door (`m1data load` and a config's source
    with a mapping, `load-eval`, `infer --eval-sets`, Python) stops with one line that names both
    kinds and says how to state one; decontamination keeps every question as an unscored target. A
    0 among the keys decides 0-based and a key equal to its option count 1-based, and so does the
    answer written again beside the key on every row (a MedQA test file whose `answer_idx` counts
    options, a file of rows m1data wrote): then every door reads every row right (the rule in
    `decide_answer_kind`, with the readings each row's own answer rules out taken away)."""
    rows, layout, evidence = generated
    folder = tmp_path_factory.mktemp("kinds")
    path = write(rows, layout, folder, beside_key(rows, layout))
    mapping = {"question": "question", "options": "options", "answer": layout["answer"]}
    loads = [lambda door=door: door(path, mapping, folder) for door in SOURCE_DOORS]
    loads += [lambda door=door: door(path, folder, None) for door in EVAL_DOORS if door is not eval_config]
    for load in loads:
        kind, value = outcome(load)
        if evidence is not None:
            assert kind == "rows", value
            check_rows(rows, *value)
            continue
        assert kind == "stop", value
        said = " ".join(value.removeprefix("error: ").split())
        assert "\n" not in value.strip() and "can be read as index0 or index1 on every row" in said, value
        assert "answer_kind=" in said and "--mapping" in said and "mapping:" in said, value
    targets, unscored = outcome(lambda: eval_config(path, folder, None))[1]
    assert (len(targets), unscored) == ((0, len(rows)) if evidence is None else (len(rows), 0))


# ------------------------------------------------------------------ the defects the properties found


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_an_empty_option_between_filled_ones_drops_the_row_not_shifts_the_key(tmp_path):
    """An empty `o2` was skipped, so o3 and o4 moved up and the key 3 (o3, "gamma") read as "delta"."""
    path = _jsonl(tmp_path / "hole.jsonl", [
        {"id": "h", "q": "Q1?", "o1": "alpha", "o2": "", "o3": "gamma", "o4": "delta", "k": 3},
        {"id": "ok", "q": "Q2?", "o1": "a2", "o2": "b2", "o3": "c2", "o4": "d2", "k": 4},
        {"id": "short", "q": "Q3?", "o1": "a3", "o2": "b3", "o3": "c3", "o4": None, "k": 3},
    ])
    mapping = {"question": "q", "options": ["o1", "o2", "o3", "o4"], "answer": "k", "id": "id"}
    result = load_source("holes", path, mapping=mapping)
    assert dict(zip(result.rows["id"], result.rows["answer_text"])) == {"holes:ok": "d2", "holes:short": "c3"}
    assert result.dropped["reason"] == ["empty_option"]
    csv_path = tmp_path / "hole.csv"
    csv_path.write_text("question,A,B,C,D,answer\nQ1?,alpha,beta,,delta,D\nQ2?,a2,b2,c2,d2,D\n")
    (loaded,) = load_eval_input(EvalInput.parse(str(csv_path))).values()
    assert loaded.rows["answer_text"] == ["d2"] and loaded.dropped["reason"] == ["empty_option"]
    assert len(loaded.targets()) == 2  # the holed question is still a decontamination target


def test_pandas_float_answer_keys_are_whole_numbers(tmp_path):
    """pandas writes an integer column with a null in it as floats: the keys 2.0, 0.0 made every row
    "not a whole number" and the whole file unreadable, through the eval and the source loaders alike."""
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"id": ["x1", "x2", "x3"], "question": ["Q1?", "Q2?", "Q3?"], "opa": ["a1", "a2", "a3"],
                          "opb": ["b1", "b2", "b3"], "opc": ["c1", "c2", "c3"], "opd": ["d1", "d2", "d3"],
                          "cop": [2, None, 0]})
    frame.to_parquet(tmp_path / "medmcqa.parquet")
    frame.to_csv(tmp_path / "medmcqa.csv", index=False)  # cop written 2.0, "", 0.0
    for result in (load_source("medmcqa", tmp_path / "medmcqa.parquet"),
                   load_source("medmcqa", tmp_path / "medmcqa.csv"),
                   *load_eval_input(EvalInput.parse(str(tmp_path / "medmcqa.csv"))).values(),
                   load_eval_input(EvalInput("medmcqa_validation", str(tmp_path / "medmcqa.parquet")))
                   ["medmcqa_validation"],
                   load_source("mine", tmp_path / "medmcqa.parquet", mapping={"answer_kind": "index0"})):
        assert sorted(zip(result.rows["question"], result.rows["answer_text"])) == [("Q1?", "c1"), ("Q3?", "a3")]
        assert result.dropped["reason"] == ["missing_field"]


@pytest.mark.parametrize("key", ["B", "b", "(B)", "B.", "B)", " b. "])
@pytest.mark.parametrize("answer", ["Heparin sodium", "heparin SODIUM", " Heparin  sodium ", None])
def test_a_medqa_file_reads_alike_as_a_source_an_eval_set_and_a_file(key, answer, tmp_path):
    """MedQA's source loader read its letter and its answer text more strictly than the eval reader:
    "(B)" or "B." was a dropped row there and option B as medqa_test; an answer text in another case
    or spacing was answer_mismatch there and agreed as medqa_test. One reading for every loader."""
    row = {"question": "Which drug?", "options": {"A": "Warfarin", "B": "Heparin sodium", "C": "Aspirin",
                                                  "D": "Clopidogrel"}, "answer_idx": key, "meta_info": "step1"}
    if answer is not None:
        row["answer"] = answer
    path = _jsonl(tmp_path / "test.jsonl", [row, {**row, "question": "Which other drug?", "answer_idx": "A",
                                                  "answer": "Warfarin"}])
    results = [load_source("medqa", path), load_eval_input(EvalInput("medqa_test", str(path)))["medqa_test"],
               *load_eval_input(EvalInput.parse(str(path))).values()]
    for result in results:
        assert sorted(result.rows["answer_text"]) == ["Heparin sodium", "Warfarin"], result.reasons()


def test_a_medqa_file_that_counts_its_options_is_read_by_the_mapping_its_source_door_names(tmp_path):
    """A converted MedQA file whose `answer_idx` is 1 for option B (no 0 and no 4 on its rows):
    `load-eval medqa_test` read it (its `answer` text tells the base), while `m1data load medqa`
    said only "answer letter 1 is int, not a letter". The source door now names the mapping that
    reads it, and that mapping reads it as the letter file is read: the same ids, the same keys."""
    rows = [{"question": f"Which drug {i}?", "options": {"A": f"Warfarin {i}", "B": "Heparin", "C": "Aspirin",
                                                        "D": "Clopidogrel"}, "answer_idx": "B", "answer": "Heparin"}
            for i in range(3)]
    letters = _jsonl(tmp_path / "letters.jsonl", rows)
    numbers = _jsonl(tmp_path / "numbers.jsonl", [{**row, "answer_idx": 1} for row in rows])
    stop = CliRunner().invoke(app, ["load", "medqa", "--path", str(numbers), "--out", str(tmp_path / "x.jsonl")])
    said = " ".join(stop.output.split())
    assert stop.exit_code == 2 and "is a number, not MedQA's letter" in said, stop.output
    assert "--mapping answer=answer_idx" in said and "mapping: {answer: answer_idx}" in said, stop.output
    expected = load_source("medqa", letters).rows
    for result in (load_source("medqa", numbers, mapping={"answer": "answer_idx"}),
                   load_eval_input(EvalInput("medqa_test", str(numbers)))["medqa_test"]):
        assert sorted(result.rows["answer_text"]) == ["Heparin"] * 3, result.reasons()
    mapped = load_source("medqa", numbers, mapping={"answer": "answer_idx"}).rows
    assert mapped["id"] == expected["id"] and mapped["answer_idx"] == expected["answer_idx"]


def test_pubmedqa_decisions_in_any_case_are_read(tmp_path):
    path = _jsonl(tmp_path / "pqa.jsonl", [
        {"pubid": 1, "question": "Does it?", "context": {"contexts": ["c"]}, "final_decision": "Yes"},
        {"pubid": 2, "question": "Does it not?", "context": {"contexts": ["c"]}, "final_decision": " maybe "},
        {"pubid": 3, "question": "Will it?", "context": {"contexts": ["c"]}, "final_decision": "perhaps"}])
    result = load_source("pubmedqa", path, split="all")
    assert sorted(result.rows["answer_text"]) == ["maybe", "yes"] and result.dropped["reason"] == ["answer_out_of_range"]


def test_the_answer_kind_advice_works_on_every_door_it_names(tmp_path):
    """An eval file with numeric option texts cannot tell its answer kind; the error said to add
    `--mapping ...,answer_kind=text`, but `m1data load-eval` had no --mapping and a config's eval
    entry no mapping: only Python could read the file for scoring. Each door the advice names now reads it."""
    path = tmp_path / "num.csv"
    path.write_text("question,A,B,C,D,answer\nHow many kidneys?,3,1,4,2,2\nHow many lungs?,1,2,3,5,2\n")
    stop = CliRunner().invoke(app, ["load-eval", str(path), "--out", str(tmp_path / "x.jsonl")])
    said = " ".join(stop.output.split())  # rich wraps the one line to the terminal
    assert stop.exit_code == 2 and "`m1data load-eval`" in said and "mapping: {answer_kind: text}" in said
    out = tmp_path / "num.jsonl"
    done = CliRunner().invoke(app, ["load-eval", str(path), "--out", str(out), "--mapping", "answer_kind=text"])
    assert done.exit_code == 0, done.output
    assert read_rows(out)["answer_text"] == ["2", "2"]
    from m1data.builders.m23k import M23KConfig

    config = from_dict(M23KConfig, {"evals": [{"name": "num", "path": str(path), "mapping": {"answer_kind": "text"}}]})
    (targets,) = load_evals(config.evals).values()
    assert sorted(targets["answer_text"]) == ["2", "2"]
    (result,) = load_eval_input(config.evals[0]).values()
    assert result.rows["answer_text"] == ["2", "2"]
    with pytest.raises(M1DataError, match="own layouts; its mapping may say only answer_kind"):
        load_eval_input(EvalInput("medqa_test", str(path), mapping={"answer": "answer", "answer_kind": "text"}))


def test_a_named_set_takes_the_answer_kind_its_advice_names(tmp_path):
    """A medqa_test file keyed 1..3 over four options (no 0, no 4, no answer text) cannot tell its
    base, and the advice said to add `--mapping answer_kind=...`, which a named set refused ("read
    in its own layouts"): the file could not be scored under its name. Every door now takes the
    kind for a named set, and MedMCQA's cop base with it; a column mapping is still refused, and
    so is a kind for a set whose key has one by definition."""
    from m1data.builders.m23k import M23KConfig

    medqa = _jsonl(tmp_path / "medqa.jsonl", [
        {"question": f"Which drug {i}?", "options": {"A": f"Warfarin {i}", "B": "Heparin", "C": "Aspirin",
                                                      "D": "Clopidogrel"}, "answer_idx": 1 + i % 2} for i in range(3)])
    medmcqa = _jsonl(tmp_path / "medmcqa.jsonl", [
        {"id": f"m{i}", "question": f"Which nerve {i}?", "opa": f"Radial {i}", "opb": "Ulnar", "opc": "Median",
         "opd": "Axillary", "cop": 2} for i in range(3)])
    stop = CliRunner().invoke(app, ["load-eval", "medqa_test", "--path", str(medqa), "--out", str(tmp_path / "x.jsonl")])
    said = " ".join(stop.output.split())
    assert stop.exit_code == 2 and "--mapping answer_kind=text" in said, stop.output
    want = {"medqa_test": ["Warfarin 0", "Heparin", "Warfarin 2"], "medmcqa_validation": ["Ulnar"] * 3}
    for name, path in (("medqa_test", medqa), ("medmcqa_validation", medmcqa)):
        out = tmp_path / f"{name}.jsonl"
        done = CliRunner().invoke(app, ["load-eval", name, "--path", str(path), "--out", str(out),
                                        "--mapping", "answer_kind=index1"])
        assert done.exit_code == 0, done.output
        config = from_dict(M23KConfig, {"evals": [{"name": name, "path": str(path),
                                                   "mapping": {"answer_kind": "index1"}}]})
        flag = _eval_mappings([f"{name}:answer_kind=index1"])
        for rows in (read_rows(out), *(r.rows for r in load_eval_input(config.evals[0]).values()),
                     *(r.rows for r in load_eval_any(name, path, mapping={"answer_kind": "index1"}).values()),
                     *(r.rows for r in load_eval_input(with_mappings([EvalInput(name, str(path))], flag)[0]).values())):
            assert sorted(rows["answer_text"]) == sorted(want[name]), name
    for name, path, kind, said in (
            ("gpqa_diamond", medqa, "index1", "gpqa_diamond takes no answer_kind.*read as a file"),
            ("mmlu_pro_health", medqa, "index1", "takes no answer_kind: its key is its 0-based"),
            ("medmcqa_validation", medmcqa, "text", "cop is an index"),
            ("mmlu_anatomy", None, "index1", "goes with a local file")):  # review: applied to the Hub's rows
        with pytest.raises(M1DataError, match=said):
            load_eval_any(name, path, mapping={"answer_kind": kind})
    with pytest.raises(M1DataError, match="its mapping may say only answer_kind"):
        load_eval_any("medqa_test", medqa, mapping={"question": "question", "answer_kind": "index1"})
    from m1data.stages.dedup import Decontaminate, DecontaminateConfig

    for mapping in ({"answer_kind": "index2"}, {"answer_kind": "index1", "question": "q"}):  # when a build is put together
        with pytest.raises(M1DataError, match="answer_kind|only answer_kind"):
            Decontaminate(DecontaminateConfig(), [EvalInput("medqa_test", str(medqa), mapping=mapping)])


def test_mmlu_pro_answer_index_is_zero_based_whatever_its_option_texts(tmp_path):
    """MMLU-Pro questions whose options are numbers made the named set undecidable ("index0 or
    index1 or text"), and a named set takes no mapping to say so: its answer_index is 0-based."""
    path = _jsonl(tmp_path / "health.jsonl", [
        {"question_id": i, "question": f"How many, case {i}?", "options": ["1", "2", "3", "4", "5"],
         "answer": "ABCDE"[key], "answer_index": key, "category": "health", "src": "x"} for i, key in enumerate([2, 3])])
    (result,) = load_eval_input(EvalInput("mmlu_pro_health", str(path))).values()
    assert sorted(result.rows["answer_text"]) == ["3", "4"]


# ------------------------------------------------------------------ MedMCQA's own layout through its doors


@st.composite
def medmcqa_files(draw):
    """MedMCQA rows with `cop` counted from `base`, written as ints, text or whole floats; some rows
    broken (no cop, a cop past the options, an empty option). Evidence of the base (a 0 or a 4) is
    planted unless `hide` (then the doors must be told)."""
    base = draw(st.sampled_from([0, 1]))
    container = draw(st.sampled_from(["jsonl", "csv", "parquet"]))
    rows = []
    for i in range(draw(st.integers(1, 6))):
        options = draw(st.lists(option_text(draw(st.sampled_from(["words", "numbers"]))), min_size=4, max_size=4,
                                unique_by=_norm))
        right = draw(st.integers(0, 3))
        fault = draw(st.sampled_from([None, None, None, "no_key", "out_of_range", "hole"]))
        forms = [right + base, str(right + base)] + ([float(right + base)] if container != "csv" else [])
        key = draw(st.sampled_from(forms))
        if fault == "no_key":
            key = None
        elif fault == "out_of_range":
            key = 5 + base + draw(st.integers(0, 3))  # past the options whatever the base (a 4 is evidence)
        elif fault == "hole":
            options[draw(st.integers(0, 3))] = ""
        rows.append(Row(f"Q{i}: " + draw(st.sampled_from(["plain", "two\nlines", "a, comma"])), options, right, key,
                        fault is None))
    evidence = Row("Evidence?", ["e1", "e2", "e3", "e4"], 0 if base == 0 else 3, base * 4, True)
    if draw(st.booleans()):
        rows.append(evidence)
        told = draw(st.booleans())
    else:
        told = True
    return rows, {"base": base, "container": container, "told": told}


def write_medmcqa(rows: list[Row], layout: dict, folder: Path) -> Path:
    recs = [{"id": f"r{i}", "question": r.question, **dict(zip(("opa", "opb", "opc", "opd"), r.options)), "cop": r.key}
            for i, r in enumerate(rows)]
    return write(rows, {"container": layout["container"], "answer": "cop", "bom": False}, folder, recs)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(generated=medmcqa_files())
def test_medmcqa_reads_every_cop_form_right_through_every_door(generated, tmp_path_factory):
    rows, layout = generated
    folder = tmp_path_factory.mktemp("medmcqa")
    path = write_medmcqa(rows, layout, folder)
    base = layout["base"] if layout["told"] else None

    def python(tmp):
        result = load_source("medmcqa", path, cop_base=base)
        return result.rows.to_list(), len(result.dropped)

    def cli(tmp):
        out = tmp / "m.jsonl"
        args = ["load", "medmcqa", "--path", str(path), "--out", str(out)] + (["--cop-base", str(base)] if told else [])
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        dropped = tmp / "m.dropped.jsonl"
        return read_rows(out).to_list(), len(read_rows(dropped)) if dropped.exists() else 0

    def config(tmp):
        spec = {"path": str(path), **({"cop_base": base} if told else {})}
        result = LoadSources(from_dict(LoadConfig, {"sources": {"medmcqa": spec}})).run(None, RunContext(tmp, tmp))
        return result.rows.to_list(), len(result.dropped) if result.dropped is not None else 0

    told = layout["told"]
    doors = [python, cli, config]
    if not told:  # the eval door decides the base from the file, as the source loader does
        doors.append(lambda tmp: _medmcqa_eval(path))
    if not any(r.good for r in rows):
        return
    results = []
    for door in doors:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got, dropped = door(folder)
        check_rows(rows, got, dropped)
        results.append(sorted((r["id"].split(":", 1)[1], sorted(r["options"]), r["answer_text"]) for r in got))
    assert all(r == results[0] for r in results)


def _medmcqa_eval(path: Path):
    (result,) = load_eval_input(EvalInput("medmcqa_validation", str(path))).values()
    return result.rows.to_list(), len(result.dropped)


# ------------------------------------------------------------------ review: answers written beside the key

_DRUGS = ["Heparin", "Warfarin", "Aspirin", "Clopidogrel"]


def _both_doors(path: Path) -> list:
    (eval_result,) = load_eval_input(EvalInput(str(path))).values()
    return [eval_result, load_source("mine", path)]


def test_an_answer_that_could_name_two_options_decides_nothing(tmp_path):
    """Review: "B" beside answer_index 1 where option A's text is "B" read as the text of option A
    and so as 1-based, and every row of the file was read 1-based, silently wrong (the letter says
    0-based). An answer that names two options is no evidence: the file stays undecided."""
    path = _jsonl(tmp_path / "vitc.jsonl", [
        {"question_id": 1, "question": "Deficiency of which vitamin causes scurvy?", "options": ["B", "C", "D", "E"],
         "answer": "B", "answer_index": 1},
        {"question_id": 2, "question": "Which drug first?", "options": _DRUGS, "answer_index": 2}])
    for load in (lambda: load_eval_input(EvalInput(str(path))), lambda: load_source("mine", path)):
        with pytest.raises(M1DataError, match="index0 or index1"):
            load()


def test_one_broken_answer_beside_its_key_drops_its_row_not_the_file(tmp_path):
    """Review: a row whose written answer names another option voted for the other base alone, and
    the whole file was refused as mixed; the keys (a 0 among them) decide, and the row is dropped."""
    keys = [0, 1, 2, 1, 2, 3, 0, 2]
    records = [{"question": f"Which drug {i}?", "options": _DRUGS, "answer_idx": k, "answer": _DRUGS[k]}
               for i, k in enumerate(keys)]
    records[3]["answer"] = "Heparin"
    path = _jsonl(tmp_path / "one_broken.jsonl", records)
    for result in _both_doors(path):
        assert len(result.rows) == 7 and result.reasons() == {"answer_mismatch": 1}


@pytest.mark.parametrize("beside", [
    {"answer_text": "Because it is a vitamin K antagonist"},  # an explanation
    {"answer_text": 10},  # not text
    {"answer_text": "Warfarin."},  # names no option as written
    {"Correct Answer": "2"},  # a number, another column's idea of the key
])
def test_a_column_named_like_an_answer_that_names_no_option_is_no_check(tmp_path, beside):
    """Review: `answer_text` and `Correct Answer` beside a key were checked like MedAgentsBench's
    `answer`, and files using those names for other things lost every row; they now count only
    where they name one option (then the key must name it too)."""
    path = _jsonl(tmp_path / "beside.jsonl", [
        {"question": f"Which drug {i}?", "options": _DRUGS, "answer_idx": k, **beside} for i, k in enumerate([0, 1, 2])])
    for result in _both_doors(path):
        assert sorted(result.rows["answer_text"]) == ["Aspirin", "Heparin", "Warfarin"], result.reasons()


def test_an_answer_text_beside_a_text_key_is_checked_too(tmp_path):
    """Review: `answer_text` naming another option dropped a letter-keyed row but not a text-keyed one."""
    path = _jsonl(tmp_path / "texts.jsonl", [{"question": f"Which drug {i}?", "options": _DRUGS, "answer": _DRUGS[0],
                                              "answer_text": _DRUGS[i % 2]} for i in range(4)])
    for result in _both_doors(path):
        assert len(result.rows) == 2 and result.reasons() == {"answer_mismatch": 2}


def test_json_tables_read_whatever_their_shape(tmp_path):
    """Review: pandas' orient "split" with as many rows as columns was read as three columns
    (columns, index, data); `{"data": [rows], "ids": [...]}` as two; GPQA rows with a null
    `options` lost their GPQA reading."""
    import pandas as pd

    frame = pd.DataFrame([{"question": f"Which drug {i}?", "options": _DRUGS, "answer": _DRUGS[i], "id": f"q{i}"}
                          for i in range(4)])
    split = tmp_path / "split.json"
    frame.to_json(split, orient="split")
    held = tmp_path / "held.json"
    held.write_text(json.dumps({"data": frame.to_dict("records"), "ids": ["q0", "q1", "q2", "q3"]}))
    gpqa = _jsonl(tmp_path / "gpqa.jsonl", [
        {"Question": f"Which {i}?", "Correct Answer": f"right {i}", "Incorrect Answer 1": "w1",
         "Incorrect Answer 2": "w2", "Incorrect Answer 3": "w3", "options": None} for i in range(3)])
    for path in (split, held):
        assert sorted(load_source("mine", path).rows["answer_text"]) == sorted(_DRUGS)
    for result in _both_doors(gpqa):
        assert sorted(result.rows["answer_text"]) == ["right 0", "right 1", "right 2"]
    row = {"question": "Which drug?", "options": _DRUGS, "answer": "Heparin"}
    sets = tmp_path / "sets.json"  # m1's eval sets, a null among each set's rows (review)
    sets.write_text(json.dumps({"setA": [row, None], "setB": [row, None]}))
    assert {name: len(r.rows) for name, r in load_eval_input(EvalInput(str(sets))).items()} == {"setA": 1, "setB": 1}


def test_a_hash_in_a_word_is_no_markdown_heading():
    from m1data.reading.evalsets import question_stem
    from m1data.reading.readers import options_in_question

    question = "Which of these C# options:\nA. int\nB. bool"
    assert options_in_question(question)[0] == question_stem(question, ["int", "bool"]) == "Which of these C#"


# --- integral float keys: a pandas column of keys with a hole in it -----------------------------

_MEDMCQA_EVAL = Path("eval/medagentsbench/medmcqa/test.jsonl")


def _real_questions(shared_data: Path, n: int) -> list[dict[str, Any]]:
    """The first `n` real MedMCQA questions with four distinct options (question and option texts only)."""
    rows = []
    for line in (shared_data / _MEDMCQA_EVAL).read_text(encoding="utf-8").splitlines():
        raw = json.loads(line)
        options = list(raw["options"].values())
        if len(options) == 4 and len(set(options)) == 4:
            rows.append({"id": raw["realidx"], "question": raw["question"], "options": options})
        if len(rows) == n:
            return rows
    raise AssertionError(f"fewer than {n} usable questions in {_MEDMCQA_EVAL}")


def _write_frame(frame: Any, path: Path) -> Path:
    """`frame` as pandas writes it in the format `path`'s suffix names."""
    if path.suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    elif path.suffix == ".json":
        frame.to_json(path, orient="records")
    elif path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path)
    return path


def _read_keys(rows: Any) -> list[tuple[str, Any, str]]:
    """(id, answer_idx, answer_text) of each row, in order; the id without its set's prefix."""
    return [(row["id"].split(":", 1)[1], row["answer_idx"], row["answer_text"]) for row in rows]


def _file_doors(path: Path) -> dict[str, Any]:
    """What each door that reads a user's file of questions reads from `path`: its rows and dropped reasons."""
    mapping = {"question": "question", "options": "options", "answer": "answer", "id": "id"}
    (generic,) = load_eval_input(EvalInput.parse(str(path))).values()
    read = {"load --mapping": load_source("mine", path, mapping=mapping), "load-eval": generic}
    seen = {door: (_read_keys(result.rows), result.reasons()) for door, result in read.items()}
    (targets,) = read_eval_sets([str(path)]).values()  # infer --eval-sets
    seen["infer --eval-sets"] = _read_keys(targets)
    (evals,) = load_evals([str(path)]).values()  # dedup / decontaminate --eval
    seen["decontaminate --eval"] = _read_keys(evals)
    return seen


def _row_doors(rows: Any, path: Path) -> dict[str, Any]:
    """What each door that takes rows in the row schema reads from the frame `rows`: written to
    `path` and read back as `load-eval` reads rows it wrote, and given to `infer` as a Dataset."""
    import datasets

    (loaded,) = load_eval_input(EvalInput.parse(str(_write_frame(rows, path)))).values()
    (given,) = read_eval_sets({"given": datasets.Dataset.from_pandas(rows, preserve_index=False)}).values()
    return {"load-eval rows": (_read_keys(loaded.targets()), loaded.reasons()), "infer Dataset": _read_keys(given)}


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(answers=st.lists(st.integers(0, 3), min_size=2, max_size=5), base=st.sampled_from([0, 1]),
       hole=st.one_of(st.none(), st.integers(0, 4)), suffix=st.sampled_from([".jsonl", ".json", ".csv", ".parquet"]))
def test_whole_float_keys_read_as_their_integers_at_every_door(shared_data, answers, base, hole, suffix):
    """pandas writes an integer key column with a hole in it as floats (1.0, 2.0 and null; a double
    column in parquet): every door reads such a file as it reads the same keys written as integers,
    the 0- or 1-based count included, and a row without a key is dropped or unscored there as here.
    Why: a row file `m1data load-eval` wrote and pandas rewrote, and such rows given to `run_infer`
    as a Dataset, were refused whole (not_an_index: "answer_idx 2.0 is not an option's index")."""
    import pandas as pd

    answers = [*answers, 0 if base == 0 else 3]  # a 0, or a key 4: the file tells its count
    hole = hole if hole is not None and hole < len(answers) - 1 else None  # that key stays
    questions = _real_questions(shared_data, len(answers))
    keys = [None if i == hole else answer + base for i, answer in enumerate(answers)]
    frames = {kind: pd.DataFrame([{**q, "answer": key} for q, key in zip(questions, keys)]).astype({"answer": kind})
              for kind in ("Int64", "float64")}
    with tempfile.TemporaryDirectory() as folder:
        paths = {kind: Path(folder) / kind / "evals" / f"keys{suffix}" for kind in frames}  # one set name: one shuffle
        for kind, path in paths.items():
            path.parent.mkdir(parents=True)
        seen = {kind: _file_doors(_write_frame(frames[kind], path)) for kind, path in paths.items()}
        assert seen["float64"] == seen["Int64"]
        rows = load_eval_input(EvalInput.parse(str(paths["Int64"])))
        written = next(iter(rows.values())).targets().to_pandas()
        if hole is not None and hole < len(answers):  # the unscored row's -1 a hole again, as pandas leaves it
            written.loc[written["answer_idx"] == -1, "answer_idx"] = None
        row_suffix = ".parquet" if suffix == ".parquet" else ".jsonl"  # the formats m1data writes rows in
        by_rows = {kind: _row_doors(written.astype({"answer_idx": kind}), path.parent / f"rows{row_suffix}")
                   for kind, path in paths.items()}
    assert by_rows["float64"] == by_rows["Int64"]
    assert all(type(key) is int for _, key, _ in by_rows["float64"]["infer Dataset"] if key is not None)
    scored = [(i, text) for i, key, text in seen["Int64"]["load-eval"][0]]
    assert sorted(scored) == sorted((q["id"], q["options"][a]) for i, (q, a) in enumerate(zip(questions, answers))
                                    if i != hole)
