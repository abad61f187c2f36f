"""Decontamination through every door: the eval files users bring, broken keys included, and the
training copies of their questions in any spacing, case or Unicode form.

Hypothesis writes an eval file in one of the layouts users bring (options as a list, a {letter:
text} dict, a dict keyed 0.. or 1.., one column each as `opa..opd` or `A..D`, in JSON Lines or a
CSV; option texts as words or numbers, plain or after their letters, "A. x" / "(B) x"; keys as
letters, 0- or 1-based indices or the option's text), where some items' keys are broken: out of
range, contradicted by the answer text written beside them, or missing. Such an item cannot be
scored, but it is still an eval question. Some items are copied into the training rows, options
shuffled, the question verbatim or written another way (upper case, other spacing, non-breaking
or full-width characters, decomposed accents, zero-width spaces, one character changed).

Every door must remove exactly the copies, broken-key items' included, and nothing else, which
is also what the all-pairs reference (`rapidfuzz.fuzz.ratio` >= 95 on `stem_key`) removes; and
every removal must say why ("contaminated") and which eval item it copies (eval_set, eval_id).
The doors: `decontaminate(rows, [EvalInput])`, `decontaminate(rows, {name: path})`, the rows in
memory, `decontaminate(rows, load_evals(...))`, `m1data decontaminate --eval`, the build's
`Decontaminate` stage from a config's eval list, and `m1data load-eval` then `decontaminate`
against its OUT. `m1data build` and `--executor ray` run fixed cases below and in
tests/running/test_distributed.py (each takes seconds to start).
"""

from __future__ import annotations

import csv
import io
import json
import random
import unicodedata
from pathlib import Path

import datasets
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rapidfuzz import fuzz
from typer.testing import CliRunner

from m1data.cli import app
from m1data.config import from_dict
from m1data.reading.evalsets import EvalInput, file_set_name, load_evals
from m1data.stages.dedup import Decontaminate, DecontaminateConfig, decontaminate, stem_key

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

LETTERS = "ABCDEFGHIJ"
WORDS = ("artery vein nerve kidney liver insulin cortisol sodium fever rash biopsy infant adult chronic acute "
         "Sjögren café naïve Ménière Crohn's β-blocker µg/dL 38°C").split()
NUMBERS = ["1", "2", "3", "4", "2.5", "0.5", "10", "100", "7.4", "12"]

LAYOUTS = ("list", "dict", "dict0", "dict1", "opa", "letter_columns", "choices")
KEY_KINDS = ("letter", "index0", "index1", "text")
BROKEN = ("out_of_range", "contradicted", "missing")


def _spaced(text: str) -> str:
    words = text.split(" ")
    return "  ".join(words[:3]) + "\n" + "\t".join(words[3:]) + " "


def _full_width(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def _one_edit(text: str) -> str:
    i = len(text) // 2
    return text[:i] + ("x" if text[i] != "x" else "y") + text[i + 1:]


COPY_FORMS = {  # how a training copy of an eval question may be written
    "verbatim": lambda text: text,
    "upper case": str.upper,
    "other spacing": _spaced,
    "non-breaking spaces": lambda text: text.replace(" ", "\u00a0"),
    "full width": _full_width,
    "decomposed accents": lambda text: unicodedata.normalize("NFD", text),
    "zero-width spaces": lambda text: text.replace(" ", " \u200b"),
    "one character changed": _one_edit,
}


@st.composite
def eval_files(draw):
    """Eval items (question, options, right index, what is broken), the file's layout, option
    style and key kind, and per item whether and how a training row copies it."""
    n = draw(st.integers(3, 8))
    rng = random.Random(draw(st.integers(0, 10_000)))
    numeric = draw(st.booleans())
    items = []
    for i in range(n):
        question = f"Q{i} " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(10, 20))) + "?"
        options = rng.sample(NUMBERS, 4) if numeric else [f"{rng.choice(WORDS)} {rng.choice(WORDS)} {i}{k}"
                                                          for k in range(4)]
        item = {"id": f"q{i}", "question": question, "options": options, "answer": rng.randrange(4),
                "broken": draw(st.sampled_from((None, None, *BROKEN))),
                "copy": draw(st.sampled_from((None, *COPY_FORMS)))}
        if item["broken"] == "contradicted" and _contradicting(item) is None:
            item["broken"] = "out_of_range"  # number texts that let every option be read from the key
        items.append(item)
    return {"items": items, "layout": draw(st.sampled_from(LAYOUTS)), "kind": draw(st.sampled_from(KEY_KINDS)),
            "label": draw(st.sampled_from(("", "A. ", "(A) "))), "csv": draw(st.booleans()), "seed": rng.random(),
            "row_label": draw(st.sampled_from(("", "A. "))), "named": draw(st.booleans())}


def fixed_case(layout: str = "dict", kind: str = "letter") -> dict:
    """One case with every breakage and every copy form, for the doors that take seconds to start."""
    rng = random.Random(7)
    forms, breakages = list(COPY_FORMS), [None, *BROKEN]
    items = [{"id": f"q{i}", "question": f"Q{i} " + " ".join(rng.choice(WORDS) for _ in range(14)) + "?",
              "options": [f"{rng.choice(WORDS)} {i}{k}" for k in range(4)], "answer": i % 4,
              "broken": breakages[i % len(breakages)], "copy": forms[i] if i < len(forms) else None}
             for i in range(len(forms) + 2)]
    return {"items": items, "layout": layout, "kind": kind, "label": "", "csv": False, "seed": 7,
            "row_label": "", "named": True}


def _key(kind: str, item: dict):
    """The item's key as `kind` writes it; a broken one as its breakage writes it."""
    index, options = item["answer"], item["options"]
    if item["broken"] == "out_of_range":
        index = len(options) + 2
    if item["broken"] == "missing":
        return ""
    if kind == "text":
        return options[index] if index < len(options) else "none of these options"
    return {"letter": LETTERS[index], "index0": index, "index1": index + 1}[kind]


def _contradicting(item: dict) -> int | None:
    """An option no reading of the item's key names: not the answer, not the one an index reads
    instead (two away: 0- for 1-based), nor one a number text read as an index names ("4" is
    option D read 1-based), nor one whose text an index key is ("2" read as text), so the answer
    written beside the key contradicts it whichever kind the file's keys are read as."""
    answer, options = item["answer"], item["options"]
    named = {int(options[answer]), int(options[answer]) - 1} if options[answer].isdigit() else set()
    named |= {k for k, option in enumerate(options) if option in (str(answer), str(answer + 1))}
    return next((k for k in ((answer + 2) % 4, (answer + 1) % 4, (answer + 3) % 4) if k not in named), None)


def _record(item: dict, case: dict) -> dict:
    """One eval record in the case's layout; the right option's text beside a key that is no text,
    another option's where the item's key is contradicted."""
    written = [f"{case['label'].replace('A', LETTERS[k])}{o}" for k, o in enumerate(item["options"])]
    layout, kind = case["layout"], case["kind"]
    record: dict = {"id": item["id"], "question": item["question"]}
    if layout == "list":
        record["options"] = written
    elif layout == "choices":
        record["choices"] = written
    elif layout == "dict":
        record["options"] = dict(zip(LETTERS, written))
    elif layout in ("dict0", "dict1"):
        record["options"] = {str(k + (layout == "dict1")): o for k, o in enumerate(written)}
    else:
        names = ("opa", "opb", "opc", "opd") if layout == "opa" else tuple(LETTERS[:4])
        record.update(zip(names, written))
    key_column = "answer" if kind == "text" else "answer_idx"
    record[key_column] = _key(kind, item)
    other = _contradicting(item)
    if kind != "text" and item["broken"] != "missing":  # a text beside a missing key would be its key
        record["answer"] = item["options"][other if item["broken"] == "contradicted" else item["answer"]]
    elif item["broken"] == "contradicted":
        record["answer_letter"] = LETTERS[other]
    return record


def write_eval_file(case: dict, folder: Path) -> Path:
    records = [_record(item, case) for item in case["items"]]
    flat = case["layout"] in ("opa", "letter_columns")
    if case["csv"] and flat:
        path = folder / "evalset.csv"
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(dict.fromkeys(k for r in records for k in r)))
        writer.writeheader()
        writer.writerows(records)
        path.write_text(out.getvalue(), encoding="utf-8")
        return path
    path = folder / "evalset.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def training_rows(case: dict) -> tuple[list[dict], dict[str, str]]:
    """The copies (options shuffled, the question in its copy form) among as many unrelated rows,
    their options clean; and each copy's id -> the id of the eval item it copies."""
    rng = random.Random(case["seed"])
    rows, copied = [], {}
    for item in case["items"]:
        if item["copy"] is None:
            continue
        question = COPY_FORMS[item["copy"]](item["question"])
        rows.append({"id": f"copy-{item['id']}", "source": "medqa", "question": question,
                     "options": rng.sample(item["options"], len(item["options"])), "context": ""})
        copied[f"copy-{item['id']}"] = item["id"]
    for j in range(len(case["items"])):
        question = f"R{j} " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(10, 20))) + "?"
        rows.append({"id": f"other{j}", "source": "medqa", "question": question,
                     "options": rng.sample(NUMBERS, 4), "context": ""})
    rng.shuffle(rows)
    return rows, copied


def labelled(rows: list[dict], label: str) -> datasets.Dataset:
    """The rows with their options written after their letters ("A. x") when `label` says so."""
    return datasets.Dataset.from_list([{**row, "options": [f"{label.replace('A', LETTERS[k])}{o}"
                                                           for k, o in enumerate(row["options"])]} for row in rows])


def reference_removed(rows: list[dict], items: list[dict]) -> set[str]:
    """All pairs: a row goes when some eval question scores >= 95 on stem + option set."""
    keys = [stem_key(it["question"], it["options"]) for it in items]
    return {row["id"] for row in rows
            if max(fuzz.ratio(stem_key(row["question"], row["options"]), key) for key in keys) >= 95}


# ------------------------------------------------------------------ the doors: each gives the dropped records


def _records(dropped: datasets.Dataset) -> list[tuple]:
    return sorted(zip(dropped["id"], dropped["reason"], dropped["eval_set"], dropped["eval_id"]))


def door_eval_inputs(train, spec, tmp):
    return _records(decontaminate(train, [EvalInput.parse(spec)])[1])


def door_mapping_of_paths(train, spec, tmp):
    entry = EvalInput.parse(spec)
    if entry.path is None:  # a file alone: its records carry the set name a file alone gets
        return _records(decontaminate(train, [Path(entry.name)])[1])
    return _records(decontaminate(train, {entry.name: entry.path})[1])


def door_rows_in_memory(train, spec, tmp):
    """The file's records as a list of dicts, as a notebook holds them: a missing key None, not ""
    (a column of ints and "" is refused in memory, in one line that says to write None)."""
    entry = EvalInput.parse(spec)
    path = Path(entry.path or entry.name)
    if path.suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as fh:
            records = list(csv.DictReader(fh))
    else:
        records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    rows = [{k: None if v == "" else v for k, v in record.items()} for record in records]
    return _records(decontaminate(train, {entry.name if entry.path else file_set_name(path): rows})[1])


def door_load_evals(train, spec, tmp):
    return _records(decontaminate(train, load_evals([spec]))[1])


def door_cli(train, spec, tmp):
    src, out = tmp / "train.jsonl", tmp / "kept.jsonl"
    train.to_json(str(src), lines=True, force_ascii=False)
    result = CliRunner().invoke(app, ["decontaminate", str(src), str(out), "--eval", spec, "--ngram", "0"])
    assert result.exit_code == 0, result.output
    dropped = [json.loads(line) for line in (tmp / "kept.dropped.jsonl").read_text(encoding="utf-8").splitlines()]
    return sorted((d["id"], d["reason"], d["eval_set"], d["eval_id"]) for d in dropped)


def door_build_config(train, spec, tmp):
    from m1data.builders.m23k import M23KConfig

    entry = EvalInput.parse(spec)
    config = from_dict(M23KConfig, {"evals": [{"name": entry.name, **({"path": entry.path} if entry.path else {})}],
                                    "decontaminate": {"ngram": 0}})
    return _records(Decontaminate(config.decontaminate, config.evals).run(train, None).dropped)


def door_loaded_file(train, spec, tmp):
    """`m1data load-eval SPEC --out LOADED`, then `decontaminate --eval NAME=LOADED`: LOADED is read as
    it is, and holds the questions whose key is broken too. None where load-eval, which loads a set
    to score, refuses a file whose answer kind it cannot tell (its one line names the fix) or whose
    every key is broken (nothing to score: its one line names the first row's problem)."""
    entry = EvalInput.parse(spec)
    loaded = tmp / "loaded.jsonl"
    result = CliRunner().invoke(app, ["load-eval", spec, "--out", str(loaded)])
    if result.exit_code != 0:
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        assert "answer_kind" in result.output or "none of its" in result.output, result.output
        return None
    name = entry.name if entry.path else file_set_name(entry.name)
    return door_cli(train, f"{name}={loaded}", tmp)


DOORS = (door_eval_inputs, door_mapping_of_paths, door_rows_in_memory, door_load_evals, door_cli, door_build_config,
         door_loaded_file)


def check_doors(case: dict, tmp: Path) -> None:
    """Every door drops exactly the copies, each recorded with its reason and the item it copies."""
    path = write_eval_file(case, tmp)
    rows, copied = training_rows(case)
    assert set(copied) == reference_removed(rows, case["items"])  # the copies are copies, the others are not
    train = labelled(rows, case["row_label"])
    spec, set_name = (f"mine={path}", "mine") if case["named"] else (str(path), file_set_name(path))
    (targets,) = load_evals([spec]).values()
    assert len(targets) == len(case["items"])  # every question a target
    unscored = {i.rpartition(":")[2] for i, key in zip(targets["id"], targets["answer_idx"]) if key < 0}
    assert unscored >= {item["id"] for item in case["items"] if item["broken"]}  # no broken key scored
    expected = sorted((row, "contaminated", set_name, f":{item}") for row, item in copied.items())
    for door in DOORS:
        records = door(train, spec, tmp)
        if records is None:
            continue  # a door that refused the file in one line, as its docstring says it may
        got = [(row, reason, eval_set, ":" + eval_id.rpartition(":")[2])  # a file's ids: its set, ":", the row's id
               for row, reason, eval_set, eval_id in records]
        assert got == expected, (door.__name__, case["layout"], case["kind"])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=eval_files())
def test_every_door_removes_each_copy_broken_keys_included_and_records_what_it_copies(case, tmp_path_factory):
    check_doors(case, tmp_path_factory.mktemp("doors"))


@pytest.mark.parametrize("kind", KEY_KINDS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_and_key_kind_with_every_breakage_and_copy_form(layout, kind, tmp_path):
    """The drawn cases above, made sure of: each layout and key kind once with every breakage and
    every copy form in it."""
    check_doors(fixed_case(layout, kind), tmp_path)


# ------------------------------------------------------------------ `m1data build`, on real rows


def _medqa(shared_data: Path, name: str) -> list[dict]:
    path = shared_data / "raw/medqa" / name
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _break(row: dict, how: int) -> dict:
    """A MedQA row with its key out of range (0), contradicted by the answer text beside it (1), or gone (2)."""
    if how == 0:
        return dict(row, answer_idx="F")
    if how == 1:
        return dict(row, answer=row["options"]["A" if row["answer_idx"] != "A" else "B"])
    return {k: v for k, v in row.items() if k != "answer_idx"}


def test_a_build_removes_what_the_python_api_removes_broken_keys_included(shared_data, tmp_path):
    """`m1data build m23k --until decontaminate` with a config naming an eval file: real MedQA-USMLE
    test questions (4 options) a third of them with a broken key (out of range, contradicted by
    the answer text beside it, missing); the training source is the same test set in its 5-option
    form (native file), its questions copied in upper case, with non-breaking or zero-width
    spaces. The build's decontamination must drop every copy of the 30 eval questions, and only
    those, with the records the Python API gives for the rows the build compared."""
    import yaml

    from m1data.stages.dedup import compared_text

    eval_rows = _medqa(shared_data, "4_options_phrases_no_exclude_test.jsonl")[:30]
    written = [_break(r, i % 3) if i < 10 else r for i, r in enumerate(eval_rows)]
    (tmp_path / "evalset.jsonl").write_text("".join(json.dumps(r) + "\n" for r in written), encoding="utf-8")
    forms = [COPY_FORMS[name] for name in ("verbatim", "upper case", "non-breaking spaces", "zero-width spaces")]
    train = [dict(r, question=forms[i % 4](r["question"]))
             for i, r in enumerate(_medqa(shared_data, "US_test_5_options.jsonl")[:60])]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train), encoding="utf-8")
    config = {"m23k": {"load": {"sources": {"medqa": {"path": str(tmp_path / "train.jsonl")}}},
                       "evals": [{"name": "mine", "path": str(tmp_path / "evalset.jsonl")}],
                       "decontaminate": {"ngram": 0}}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["build", "m23k", "--out", str(run), "--config", str(tmp_path / "config.yaml"),
                                      "--until", "decontaminate"])
    assert result.exit_code == 0, result.output
    compared = datasets.Dataset.from_parquet(str(run / "01_dedup/rows.parquet"))
    dropped = datasets.Dataset.from_parquet(str(run / "02_decontaminate/dropped.parquet"))
    assert len(compared) == 60
    copied = {compared_text(r["question"]) for r in eval_rows}
    assert sorted(compared_text(r["question"]) for r in compared if r["id"] in set(dropped["id"])) == sorted(copied)
    assert set(dropped["reason"]) == {"contaminated"} and set(dropped["eval_set"]) == {"mine"}
    expected = decontaminate(compared, [EvalInput("mine", str(tmp_path / "evalset.jsonl"))])[1]
    assert _records(dropped) == _records(expected)
