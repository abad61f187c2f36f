"""Every door reads eval files the same way (issue 24): property tests over layouts and doors.

An eval set is generated in one of the layouts m1data accepts, some of its questions are planted
in training rows (verbatim, with options shuffled, or lightly perturbed), and every door must
remove exactly the rows the all-pairs reference (rapidfuzz ratio >= 95 on stem + sorted clean
options, against every eval question with text) would remove: every planted copy, nothing else.

The doors: `m1data decontaminate --eval SPEC` (CliRunner), `decontaminate(rows, load_evals(...))`,
`decontaminate(rows, [EvalInput])`, the `Decontaminate` stage built from a build config's eval
list (dicts, as YAML gives them, and the text form), and the Ray executor (one fixed case).
"""

from __future__ import annotations

import csv
import io
import json
import random
import re
from pathlib import Path

import datasets
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rapidfuzz import fuzz
from typer.testing import CliRunner

from m1data.cli import app
from m1data.config import from_dict
from m1data.errors import UserError
from m1data.reading.evalsets import EvalInput, load_eval_input, load_evals
from m1data.reading.readers import MalformedFile
from m1data.reading.sources import load_source
from m1data.stages.dedup import Decontaminate, DecontaminateConfig, decontaminate, stem_key

pytestmark = pytest.mark.filterwarnings("ignore::m1data.stages.dedup.UnscoredEvalWarning")

WORDS = ("artery vein nerve kidney liver insulin cortisol sodium potassium fever rash cough biopsy "
         "infant adult woman man chronic acute pain swelling lesion tumour enzyme receptor drug dose "
         "therapy surgery murmur valve pressure oxygen glucose thyroid marrow platelet antibody").split()
LETTERS = "ABCDEFGHIJ"


def question_text(rng: random.Random, n: int) -> str:
    return f"Q{n}: " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(12, 24))) + "?"


def option_set(rng: random.Random) -> list[str]:
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 3))) + f" {i}{rng.randint(0, 99)}"
            for i in range(4)]


def make_items(seed: int, n: int) -> list[dict]:
    """n eval questions: question, options (clean texts), right index; some with a broken key."""
    rng = random.Random(seed)
    return [{"question": question_text(rng, i), "options": option_set(rng), "answer": rng.randrange(4),
             "broken": rng.random() < 0.2} for i in range(n)]


# ------------------------------------------------------------------ layouts: items -> (file, door spec)


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _csv(path: Path, rows: list[list[str]], header: list[str] | None = None) -> None:
    out = io.StringIO()
    writer = csv.writer(out)
    if header:
        writer.writerow(header)
    writer.writerows(rows)
    path.write_text(out.getvalue())


def medmcqa_native(items, folder):
    path = folder / "validation.jsonl"
    _jsonl(path, [{"id": f"u{i}", "question": it["question"], **dict(zip(("opa", "opb", "opc", "opd"), it["options"])),
                   **({} if it["broken"] else {"cop": it["answer"]})} for i, it in enumerate(items)])
    return path, f"medmcqa_validation={path}"


def medqa_native(items, folder):
    path = folder / "test.jsonl"
    _jsonl(path, [{"question": it["question"], "options": dict(zip(LETTERS, it["options"])), "meta_info": "step1",
                   **({} if it["broken"] else {"answer_idx": LETTERS[it["answer"]]})} for it in items])
    return path, f"medqa_test={path}"


def mmlu_csv(items, folder):
    path = folder / "anatomy_test.csv"
    _csv(path, [[it["question"], *it["options"], "?" if it["broken"] else LETTERS[it["answer"]]] for it in items])
    return path, f"mmlu_anatomy={path}"


def mmlu_csv_as_a_file(items, folder):
    """The same MMLU CSV (no header) given alone under a name of its own: read as MMLU is, not with
    its first question taken for column names."""
    path = folder / "clinical_questions.csv"
    _csv(path, [[it["question"], *it["options"], "?" if it["broken"] else LETTERS[it["answer"]]] for it in items])
    return path, str(path)


def converted_lettered(items, folder):
    """The shape of many public copies: {"question", "choices": ["A. ...", ...], "answer": 0}."""
    path = folder / "medmcqa_val.jsonl"
    _jsonl(path, [{"question": it["question"], "choices": [f"{L}. {o}" for L, o in zip(LETTERS, it["options"])],
                   "answer": None if it["broken"] else it["answer"]} for it in items])
    return path, str(path)


def csv_with_header(items, folder):
    """The most common hand-made layout: `question,A,B,C,D,answer`."""
    path = folder / "hand.csv"
    _csv(path, [[it["question"], *it["options"], "" if it["broken"] else LETTERS[it["answer"]]] for it in items],
         header=["question", "A", "B", "C", "D", "answer"])
    return path, str(path)


def named_file(items, folder):
    """NAME=FILE with a name of the user's choosing; options labelled "(A) x", answer the text."""
    path = folder / "mine.jsonl"
    _jsonl(path, [{"question": it["question"], "options": [f"({L}) {o}" for L, o in zip(LETTERS, it["options"])],
                   "answer": "" if it["broken"] else it["options"][it["answer"]]} for it in items])
    return path, f"mine={path}"


def no_options(items, folder):
    """Questions with their answers' texts and no options at all: every row unscored, every
    question a target, compared with the rows' stems (0 of 6 copies went before)."""
    path = folder / "bare.jsonl"
    _jsonl(path, [{"question": it["question"], "answer": it["options"][it["answer"]]} for it in items])
    return path, str(path)


def unreadable_options(items, folder):
    """Options the loader cannot read (keys B-E, no A): unscored rows, still targets by their stems."""
    path = folder / "shifted.jsonl"
    _jsonl(path, [{"question": it["question"], "options": dict(zip("BCDE", it["options"])), "answer": "B"}
                  for it in items])
    return path, str(path)


def options_in_the_question(items, folder):
    """A prompt-formatted copy: the options written into the question a line each, then "Answer:";
    no options column (3 of 6 copies were caught when such questions were read as bare stems)."""
    path = folder / "prompted.jsonl"
    _jsonl(path, [{"question": it["question"] + "\n" + "\n".join(f"{L}. {o}" for L, o in zip(LETTERS, it["options"]))
                   + "\nAnswer:", "answer": "" if it["broken"] else LETTERS[it["answer"]]} for it in items])
    return path, str(path)


def choices_on_one_line(items, folder):
    """The options on the question's last line, "Answer Choices: (A) x (B) y ...", in a CSV."""
    path = folder / "oneline.csv"
    _csv(path, [[it["question"] + " Answer Choices: " + " ".join(f"({L}) {o}" for L, o in zip(LETTERS, it["options"])),
                 "" if it["broken"] else LETTERS[it["answer"]]] for it in items], header=["question", "answer"])
    return path, f"oneline={path}"


LAYOUTS = {f.__name__: f for f in (medmcqa_native, medqa_native, mmlu_csv, mmlu_csv_as_a_file, converted_lettered,
                                    csv_with_header, named_file, no_options, unreadable_options,
                                    options_in_the_question, choices_on_one_line)}
BARE_LAYOUTS = {"no_options", "unreadable_options"}  # no options read: the rows' stems are what they match


# ------------------------------------------------------------------ training rows and the reference


def perturb(rng: random.Random, question: str) -> str:
    """A light edit: one character changed, or doubled spacing, or a trailing space."""
    kind = rng.randrange(3)
    if kind == 0:
        i = rng.randrange(4, len(question) - 1)
        return question[:i] + ("x" if question[i] != "x" else "y") + question[i + 1:]
    if kind == 1:
        return question.replace(" ", "  ", 1)
    return question + " "


def training_rows(items, seed: int) -> tuple[datasets.Dataset, set[str]]:
    """Planted copies (verbatim or perturbed, options shuffled) of some items, among unrelated rows."""
    rng = random.Random(seed + 1)
    rows, planted = [], set()
    for i, it in enumerate(items):
        if rng.random() < 0.5:
            options = list(it["options"])
            rng.shuffle(options)
            question = it["question"] if rng.random() < 0.5 else perturb(rng, it["question"])
            rows.append({"id": f"copy{i}", "source": "medqa", "question": question, "options": options, "context": ""})
            planted.add(f"copy{i}")
    for j in range(len(items)):
        rows.append({"id": f"other{j}", "source": "medqa", "question": question_text(rng, 1000 + j),
                     "options": option_set(rng), "context": ""})
    rng.shuffle(rows)
    return datasets.Dataset.from_list(rows), planted


def reference_removed(train: datasets.Dataset, items, bare: bool = False) -> set[str]:
    """All pairs, no index, no shortcut: a row goes when any eval question scores >= 95 (stem +
    option set; stem against stem where the eval side has no options)."""
    if bare:
        return {row["id"] for row in train if max(fuzz.ratio(row["question"], it["question"]) for it in items) >= 95}
    keys = [stem_key(it["question"], it["options"]) for it in items]
    return {row["id"] for row in train
            if max(fuzz.ratio(stem_key(row["question"], row["options"]), key) for key in keys) >= 95}


# ------------------------------------------------------------------ the doors


def door_cli(train, spec, tmp):
    src, out = tmp / "train.jsonl", tmp / "kept.jsonl"
    train.to_json(str(src), lines=True)
    result = CliRunner().invoke(app, ["decontaminate", str(src), str(out), "--eval", spec, "--ngram", "0"])
    assert result.exit_code == 0, result.output
    return {json.loads(line)["id"] for line in out.read_text(encoding="utf-8").splitlines()}


def door_load_evals(train, spec, tmp):
    return set(decontaminate(train, load_evals([EvalInput.parse(spec)]))[0]["id"])


def door_python_inputs(train, spec, tmp):
    return set(decontaminate(train, [EvalInput.parse(spec)])[0]["id"])


def door_build_config(train, spec, tmp):
    from m1data.builders.m23k import M23KConfig

    entry = EvalInput.parse(spec)
    config = from_dict(M23KConfig, {"evals": [{"name": entry.name, "path": entry.path}]})
    stage = Decontaminate(DecontaminateConfig(ngram=0), config.evals)
    kept = set(stage.run(train, None).rows["id"])
    assert kept == set(Decontaminate(DecontaminateConfig(ngram=0), [spec]).run(train, None).rows["id"])
    return kept


DOORS = (door_cli, door_load_evals, door_python_inputs, door_build_config)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), n=st.integers(4, 12))
def test_every_door_removes_every_planted_copy_and_nothing_else(layout, seed, n, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(layout)
    items = make_items(seed, n)
    _, spec = LAYOUTS[layout](items, tmp)
    train, planted = training_rows(items, seed)
    expected_removed = reference_removed(train, items, layout in BARE_LAYOUTS)
    assert planted <= expected_removed  # the perturbations are light enough to be copies
    for door in DOORS:
        kept = door(train, spec, tmp)
        removed = set(train["id"]) - kept
        assert removed == expected_removed, (door.__name__, sorted(removed ^ expected_removed))


def test_a_named_set_reads_its_own_file_only(tmp_path):
    items = make_items(7, 6)
    path, _ = medqa_native(items, tmp_path)
    for name in ("medmcqa_validation", "mmlu_clinical_knowledge"):
        with pytest.raises(MalformedFile, match=f"not a {name} file.*meta_info"):
            load_evals([EvalInput(name, str(path))])


def test_an_mmlu_csv_under_a_name_of_its_own_is_read_as_mmlu(shared_data):
    """`--eval mmlu=FILE` with hendrycks/test's headerless CSV stopped with "no question column";
    it now gives the rows the named set gives for the same file."""
    path = shared_data / "eval/mmlu/professional_medicine_test.csv"
    (named,) = load_evals([EvalInput("mmlu_professional_medicine", str(path))]).values()
    (mine,) = load_evals([EvalInput("mmlu", str(path))]).values()
    assert len(mine) == len(named) > 200

    def read(rows) -> list[tuple]:  # options are shuffled per set name: compare them as sets, with the key's text
        return [(q, sorted(o), o[a]) for q, o, a in zip(rows["question"], rows["options"], rows["answer_idx"])]

    assert read(mine) == read(named)


def test_a_csv_with_a_header_is_not_taken_for_a_headerless_mmlu_file(tmp_path):
    """Six columns whose header's last cell names the answer column: read with its header."""
    items = make_items(3, 5)
    path, _ = csv_with_header(items, tmp_path)
    (rows,) = load_evals([EvalInput(str(path))]).values()
    assert sorted(rows["question"]) == sorted(it["question"] for it in items)  # no "question" row, no Q0 lost


# ------------------------------------------------------------------ answer keys


def key_of(kind: str, options: list[str], index: int):
    return {"text": options[index], "letter": LETTERS[index], "index0": index, "index1": index + 1}[kind]


OPTION_STYLES = {
    "words": lambda rng: [" ".join(rng.choice(WORDS) for _ in range(2)) + str(i) for i in range(4)],
    "numbers": lambda rng: [str(n) for n in rng.sample(range(0, 6), 4)],
    "big_numbers": lambda rng: [str(n) for n in rng.sample(range(10, 500), 4)],
    "letters": lambda rng: rng.sample(list("ABCDGT"), 4),
}


@settings(max_examples=40, deadline=None)
@given(kind=st.sampled_from(["text", "letter", "index0", "index1"]), style=st.sampled_from(sorted(OPTION_STYLES)),
       seed=st.integers(0, 10_000), n=st.integers(1, 8), as_csv=st.booleans(), tell=st.booleans())
def test_answer_keys_read_right_or_stop(kind, style, seed, n, as_csv, tell, tmp_path_factory):
    """Every kind of key, with numeric and single-letter option texts: the right answer on every
    row, or one error asking for answer_kind; never a silently wrong row."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        options = OPTION_STYLES[style](rng)
        right = rng.randrange(4)
        rows.append({"id": f"r{i}", "q": f"Question {i}?", "o1": options[0], "o2": options[1], "o3": options[2],
                     "o4": options[3], "key": key_of(kind, options, right), "right": options[right]})
    folder = tmp_path_factory.mktemp("keys")
    path = folder / ("keys.csv" if as_csv else "keys.jsonl")
    if as_csv:
        _csv(path, [[r[c] for c in ("id", "q", "o1", "o2", "o3", "o4", "key")] for r in rows],
             header=["id", "q", "o1", "o2", "o3", "o4", "key"])
    else:
        _jsonl(path, [{c: r[c] for c in ("id", "q", "o1", "o2", "o3", "o4", "key")} for r in rows])
    mapping = {"question": "q", "options": ["o1", "o2", "o3", "o4"], "answer": "key", "id": "id"}
    if tell:
        mapping["answer_kind"] = kind
    try:
        result = load_source("keys", path, mapping=mapping)
    except MalformedFile as err:
        assert not tell and "answer_kind=" in str(err) and "\n" not in str(err)
        return
    assert len(result.dropped) == 0
    assert result.rows["answer_text"] == [r["right"] for r in rows]


def test_numeric_key_reproduction(tmp_path):
    """Issue 24's reproduction: options 3,1,4,2 and key 2 cannot be read without answer_kind."""
    path = tmp_path / "n.csv"
    path.write_text("id,q,o1,o2,o3,o4,key\nn1,How many kidneys?,3,1,4,2,2\n")
    mapping = {"question": "q", "options": ["o1", "o2", "o3", "o4"], "answer": "key", "id": "id"}
    with pytest.raises(MalformedFile, match="answer_kind="):
        load_source("numq", path, mapping=mapping)
    assert load_source("numq", path, mapping={**mapping, "answer_kind": "text"}).rows[0]["answer_text"] == "2"


def test_keys_whose_every_reading_names_the_same_option_are_read(tmp_path):
    """Options written "Option A", "Option B" keyed by their text read as text and as a letter key
    ("Option B", as exports write letters), and single-letter options in letter order keyed "C"
    as text and as a letter: every reading names the same option on every row, so the file is read
    (it stopped asking for answer_kind). Where one row's readings differ, it still stops."""
    mapping = {"question": "q", "options": ["o1", "o2", "o3", "o4"], "answer": "key", "id": "id"}
    for options, keys in ((["Option A", "Option B", "Option C", "Option D"], ["Option B", "Option D"]),
                          (["A", "B", "C", "D"], ["C", "a"])):
        path = tmp_path / "same.csv"
        path.write_text("id,q,o1,o2,o3,o4,key\n" + "".join(
            f"r{i},Q{i}?,{','.join(options)},{key}\n" for i, key in enumerate(keys)))
        result = load_source("same", path, mapping=mapping)
        assert result.rows["answer_text"] == [options["ABCD".index(k[-1].upper())] for k in keys]
    path.write_text("id,q,o1,o2,o3,o4,key\nr0,Q?,B,A,C,D,B\n")  # as text option 1, as a letter option 2
    with pytest.raises(MalformedFile, match="answer_kind="):
        load_source("same", path, mapping=mapping)


def test_one_based_keys_are_read_one_based(tmp_path):
    """A 4 among four options shows the keys count from 1: every row read that way."""
    path = tmp_path / "one.csv"
    path.write_text("id,q,o1,o2,o3,o4,key\n" + "".join(
        f"r{i},Q{i}?,a{i},b{i},c{i},d{i},{k}\n" for i, k in enumerate([2, 4, 1, 3])))
    mapping = {"question": "q", "options": ["o1", "o2", "o3", "o4"], "answer": "key", "id": "id"}
    assert load_source("one", path, mapping=mapping).rows["answer_text"] == ["b0", "d1", "a2", "c3"]


def test_option_text_keys_that_look_like_numbers_or_letters(tmp_path):
    """HuatuoGPT-o1's MedQA-style rows: `answer` is the option text, sometimes `10`, `420` or `G`."""
    rows = [{"question": "How many?", "options": {"A": "5", "B": "10", "C": "15", "D": "20"}, "answer": "10"},
            {"question": "Dose?", "options": {"A": "120", "B": "240", "C": "420", "D": "840"}, "answer": "420"},
            {"question": "Base?", "options": {"A": "A", "B": "G", "C": "T", "D": "C"}, "answer": "G"},
            {"question": "Organ?", "options": {"A": "Liver", "B": "Kidney", "C": "Lung", "D": "Skin"},
             "answer": "Kidney"}]
    path = tmp_path / "huatuo.jsonl"
    _jsonl(path, rows)
    result = load_source("huatuo", path, mapping={"question": "question", "options": "options", "answer": "answer"})
    assert result.rows["answer_text"] == ["10", "420", "G", "Kidney"] and len(result.dropped) == 0


def test_49_verbatim_copies_of_a_converted_medmcqa_file_go_through_every_door(shared_data, tmp_path):
    """Issue 24's report: a converted MedMCQA validation file ({"question", "choices": ["A. ...",
    ...], "answer": 0}) and 49 training rows copied from it word for word; the command line removed
    4 of them, the Python API 49. Every door must remove all 49, and none of 51 MedQA rows."""
    native = [json.loads(line) for line in
              (shared_data / "eval/medagentsbench/medmcqa/test.jsonl").read_text(encoding="utf-8").splitlines()[:120]]
    items = [{"question": r["question"], "options": [r["options"][k] for k in "ABCD"],
              "answer": "ABCD".index(r["answer_idx"]), "broken": False} for r in native]
    path, spec = converted_lettered(items, tmp_path)
    rng = random.Random(0)
    rows = []
    for i, it in enumerate(items[:49]):
        options = list(it["options"])
        rng.shuffle(options)
        rows.append({"id": f"copy{i}", "source": "medmcqa", "question": it["question"], "options": options,
                     "context": ""})
    medqa = (shared_data / "raw/medqa/4_options_phrases_no_exclude_test.jsonl").read_text(encoding="utf-8").splitlines()[:51]
    rows += [{"id": f"other{i}", "source": "medqa", "question": r["question"], "options": list(r["options"].values()),
              "context": ""} for i, r in enumerate(map(json.loads, medqa))]
    train = datasets.Dataset.from_list(rows)
    planted = {f"copy{i}" for i in range(49)}
    for door in DOORS:
        for entry in (spec, f"medmcqa={path}", f"medmcqa_validation={path}"):
            assert set(train["id"]) - door(train, entry, tmp_path) == planted, (door.__name__, entry)


# ------------------------------------------------------------------ columns no guess reads, named on every door


ODD_MAPPING = "question=stem,options=choices,answer=gold,answer_kind=index1"


def odd_eval_file(path: Path, n: int) -> Path:
    """An eval file in columns no guess reads (`stem`, `choices`, `gold`, 1-based); its questions
    name their right answer ("pick gamma") for the scripted model of the infer tests."""
    names = ["alpha", "beta", "gamma", "delta"]
    _jsonl(path, [{"stem": f"Question {i}: pick {names[i % 4]} for the nerve of the forearm in adults",
                   "choices": names, "gold": i % 4 + 1} for i in range(n)])
    return path


def test_decontaminate_reads_an_eval_file_through_its_eval_mapping(tmp_path):
    """`m1data decontaminate --eval FILE` took no column mapping: a file in `stem`/`choices`/`gold`
    was refused ("no question column") there, while load-eval and a build config read it through
    their mapping. `--eval-mapping NAME:...` names it here too; NAME is the file's stem, or the
    NAME of NAME=FILE."""
    evals = odd_eval_file(tmp_path / "odd.jsonl", 4)
    train = tmp_path / "train.jsonl"
    copies = [{"id": f"copy{i}", "source": "medqa", "question": f"Question {i}: pick {o} for the nerve of the "
               "forearm in adults", "options": ["delta", "gamma", "beta", "alpha"], "context": ""}
              for i, o in enumerate(["alpha", "beta"])]
    other = {"id": "other", "source": "medqa", "question": "Which enzyme is raised in acute pancreatitis of the adult?",
             "options": ["lipase", "renin", "amylase inhibitor", "trypsinogen"], "context": ""}
    _jsonl(train, [*copies, other])
    runner = CliRunner()
    refused = runner.invoke(app, ["decontaminate", str(train), str(tmp_path / "no.jsonl"), "--eval", str(evals)])
    assert refused.exit_code != 0 and "no question column" in str(refused.exception), refused.output
    shown = f"{tmp_path.name}/odd"  # what the stats call a file given alone: a mapping may use it too
    for entry, name in ((str(evals), "odd"), (str(evals), shown), (f"mine={evals}", "mine")):
        out = tmp_path / f"kept-{name.replace('/', '-')}.jsonl"
        result = runner.invoke(app, ["decontaminate", str(train), str(out), "--eval", entry,
                                     "--eval-mapping", f"{name}:{ODD_MAPPING}", "--ngram", "0"])
        assert result.exit_code == 0, result.output
        assert [json.loads(line)["id"] for line in out.read_text(encoding="utf-8").splitlines()] == ["other"]
        stats = json.loads(result.stdout[result.stdout.index("{"):result.stdout.rindex("}") + 1])
        assert list(stats["eval_items"].values()) == [4] and stats["eval_items_unscored"] == {}
        assert list(stats["eval_items"]) == [shown if name != "mine" else "mine"]


def test_an_eval_mapping_for_no_entry_is_an_error_naming_the_entries(tmp_path):
    evals = odd_eval_file(tmp_path / "odd.jsonl", 2)
    train = tmp_path / "train.jsonl"
    _jsonl(train, [{"id": "t", "source": "medqa", "question": "Q?", "options": ["a", "b"], "context": ""}])
    runner = CliRunner()
    common = ["decontaminate", str(train), str(tmp_path / "out.jsonl"), "--eval", str(evals), "--eval", "medqa_test"]
    wrong = runner.invoke(app, [*common, "--eval-mapping", f"odder:{ODD_MAPPING}"])
    said = " ".join(wrong.output.split())
    listed = f"'odder' names no eval entry (the entries: odd or {tmp_path.name}/odd, medqa_test;"
    assert wrong.exit_code == 2 and listed in said, said
    unknown_key = runner.invoke(app, [*common, "--eval-mapping", "odd:qestion=stem"])
    assert unknown_key.exit_code == 2 and "unknown key(s) qestion" in unknown_key.output, unknown_key.output
    no_name = runner.invoke(app, [*common, "--eval-mapping", ODD_MAPPING])
    assert no_name.exit_code == 2 and "NAME:question=COL" in " ".join(no_name.output.split()), no_name.output
    twice = runner.invoke(app, [*common, "--eval-mapping", f"odd:{ODD_MAPPING}", "--eval-mapping", "odd:answer=gold"])
    assert twice.exit_code == 2 and "'odd' is given twice" in twice.output, twice.output
    assert not (tmp_path / "out.jsonl").exists()


def test_infer_reads_an_eval_file_through_its_eval_mapping(tmp_path):
    """`m1data infer --eval-sets FILE` took no column mapping either: the same file was refused
    there; with `--eval-mapping` every question is scored, read 1-based as the mapping says."""
    from llm_server import ScriptedServer
    from test_infer_runtime import thinker

    evals = odd_eval_file(tmp_path / "odd.jsonl", 6)
    with ScriptedServer(thinker()) as server:
        common = ["infer", "run", "--base-url", server.base_url, "--model", "m", "--budget", "8", "--no-progress"]
        refused = CliRunner().invoke(app, [*common, "--eval-sets", str(evals), "--out", str(tmp_path / "no")])
        assert refused.exit_code == 2 and "no question column" in refused.output, refused.output
        for entry, name in ((str(evals), "odd"), (f"mine={evals}", "mine")):
            out = tmp_path / name
            result = CliRunner().invoke(app, [*common, "--eval-sets", entry, "--eval-mapping", f"{name}:{ODD_MAPPING}",
                                              "--out", str(out)])
            assert result.exit_code == 0, result.output
            (scored,) = json.loads((out / "metrics.json").read_text(encoding="utf-8"))["sets"].values()
            assert scored["n"] == 6 and scored["accuracy"] == 1.0, scored


# ------------------------------------------------------------------ a file `m1data load-eval` wrote


def test_a_loaded_eval_file_is_read_as_it_is_at_every_door(tmp_path):
    """`m1data load-eval medqa_test --out LOADED` then `infer --eval-sets medqa_test=LOADED`: the
    CLI read LOADED as a raw file again, shuffling its options a second time and prefixing its
    ids twice (`medqa_test:medqa_test:...`), while `run_infer` given the same file read it as it
    is: two doors, two sets of prompts, neither the raw file's. Every door now reads loaded rows
    as they are, so LOADED is the set the raw file gives, through the CLI, Python and decontaminate."""
    from m1data.errors import UserError
    from m1data.infer.score import load_eval_sets, read_eval_sets
    from m1data.reading.readers import read_rows
    from m1data.stages.loading import sample_dir

    raw = sample_dir() / "eval" / "medqa" / "test.jsonl"
    loaded = tmp_path / "loaded.jsonl"
    result = CliRunner().invoke(app, ["load-eval", "medqa_test", "--path", str(raw), "--out", str(loaded)])
    assert result.exit_code == 0, result.output
    from_raw = read_eval_sets([f"medqa_test={raw}"])["medqa_test"].to_list()
    assert from_raw == read_rows(loaded).to_list()
    for entry, name in ((f"medqa_test={loaded}", "medqa_test"), (f"mine={loaded}", "mine")):
        assert read_eval_sets([entry])[name].to_list() == from_raw, entry
    assert load_eval_sets({"medqa_test": loaded})["medqa_test"].to_list() == from_raw
    with pytest.raises(UserError, match="holds loaded rows of medqa_test, not of medmcqa_validation"):
        read_eval_sets([f"medmcqa_validation={loaded}"])

    train = tmp_path / "train.jsonl"
    copies = [{**row, "id": f"copy{i}", "source": "medqa"} for i, row in enumerate(from_raw[:3])]
    datasets.Dataset.from_list(copies).to_json(str(train))
    hits = {}
    for label, entry in (("raw", f"medqa_test={raw}"), ("loaded", f"medqa_test={loaded}")):
        out = tmp_path / f"kept-{label}.jsonl"
        result = CliRunner().invoke(app, ["decontaminate", str(train), str(out), "--eval", entry])
        assert result.exit_code == 0, result.output
        hits[label] = sorted(zip(*(read_rows(tmp_path / f"kept-{label}.dropped.jsonl")[c] for c in ("id", "eval_id"))))
    assert hits["loaded"] == hits["raw"] == [(f"copy{i}", from_raw[i]["id"]) for i in range(3)]


# ------------------------------------------------------------------ a question's context, and mapped columns


def _pubmedqa_like(tmp_path: Path, layout: str) -> tuple[Path, list[dict]]:
    """Three questions asked on abstracts, the abstract in `context` as text, paragraphs or the
    Hub's PubMedQA {"contexts": [...], "labels", "meshes"}; and training copies with the abstract."""
    rng = random.Random(3)
    items = []
    for i in range(3):
        paragraphs = [" ".join(rng.choice(WORDS) for _ in range(30)) + "." for _ in range(2)]
        items.append({"pmid": str(100 + i), "question": f"Does {rng.choice(WORDS)} change the outcome?",
                      "paragraphs": paragraphs})
    context = {"text": lambda p: "\n".join(p), "paragraphs": list,
               "hub": lambda p: {"contexts": p, "labels": ["A"] * len(p), "meshes": ["m"]}}[layout]
    path = tmp_path / f"pq-{layout}.jsonl"
    _jsonl(path, [{"pmid": it["pmid"], "question": it["question"], "context": context(it["paragraphs"]),
                   "options": ["yes", "no", "maybe"], "answer": "yes"} for it in items])
    return path, items


@pytest.mark.parametrize("layout", ["text", "paragraphs", "hub"])
def test_a_context_column_is_read_without_a_mapping(layout, tmp_path):
    """An eval file's `context` was read only when mapped: copies of its questions, asked on the
    same abstracts, stayed (0 of 50 PubMedQA test copies). It is now guessed as the other columns
    are, at every door; so is a mapped source's, whose prompts had lost the abstract."""
    path, items = _pubmedqa_like(tmp_path, layout)
    train = datasets.Dataset.from_list(
        [{"id": f"copy{i}", "source": "pubmedqa", "question": it["question"], "options": ["maybe", "no", "yes"],
          "context": "\n".join(it["paragraphs"])} for i, it in enumerate(items)]
        + [{"id": "other", "source": "pubmedqa", "question": items[0]["question"], "options": ["yes", "no", "maybe"],
            "context": "An abstract about something else entirely, with other words in it."}])
    for door in DOORS:
        assert door(train, str(path), tmp_path) == {"other"}, door.__name__
    rows = load_source("mine", path).rows
    assert rows["context"] == ["\n".join(it["paragraphs"]) for it in items]
    assert all(row["prompt"].startswith(row["context"]) for row in rows)


def test_hub_pubmedqa_test_questions_in_a_file_of_their_own_all_go(shared_data, tmp_path):
    """The real PubMedQA test questions as the Hub's pqa_labeled lays them out, given as a plain
    eval file: every one of the 500 loaded test rows is removed (none before)."""
    raw = json.loads((shared_data / "raw/pubmedqa/ori_pqal.json").read_text())
    test_ids = set(json.loads((shared_data / "raw/pubmedqa/test_ground_truth.json").read_text()))
    path = tmp_path / "pqa_labeled.jsonl"
    _jsonl(path, [{"pubid": int(pmid), "question": r["QUESTION"], "final_decision": r["final_decision"],
                   "context": {"contexts": r["CONTEXTS"], "labels": r["LABELS"], "meshes": r["MESHES"]}}
                  for pmid, r in raw.items() if pmid in test_ids])
    rows = load_source("pubmedqa", shared_data / "raw/pubmedqa/ori_pqal.json", split="test").rows
    kept, dropped = decontaminate(rows, [EvalInput(str(path))])
    assert len(kept) == 0 and len(dropped) == 500


@pytest.mark.parametrize("mapping", ["context=contxt", "options=A+B+C+E", "question=stem"])
def test_a_mapped_column_no_record_has_is_named(mapping, tmp_path):
    """A misspelt context column left every abstract out, and an option column the file lacks cut
    that option from every row, without a word: the load stops, naming the column, at each door."""
    path = tmp_path / "semi.csv"
    _csv(path, [["What is given for the pain of acute gout?", "colchicine", "insulin", "heparin", "warfarin", "A",
                 "An abstract."]], header=["question", "A", "B", "C", "D", "answer", "context"])
    key, column = mapping.split("=")
    missing = f"the mapping names '{column.split('+')[-1]}' ({key}), which no record has"
    with pytest.raises(MalformedFile, match=re.escape(missing)):
        load_source("mine", path, mapping=dict([mapping.split("=")]))
    with pytest.raises(MalformedFile, match=re.escape(missing)):
        load_evals([EvalInput("mine", str(path), mapping=dict([mapping.split("=")]))])
    result = CliRunner().invoke(app, ["load", "mine", "--path", str(path), "--out", str(tmp_path / "o.jsonl"),
                                      "--mapping", mapping])
    assert result.exit_code != 0 and missing in " ".join(result.output.split()), result.output


def test_decontaminate_takes_a_file_whose_rows_have_no_id(tmp_path):
    """Raw MedQA rows have no id: decontamination crashed ("Field id does not exist"); dedup ran."""
    items = make_items(5, 4)
    path, spec = medqa_native(items, tmp_path)
    out = tmp_path / "kept.jsonl"
    result = CliRunner().invoke(app, ["decontaminate", str(path), str(out), "--eval", f"mine={path}"])
    assert result.exit_code == 0, result.output
    assert out.read_text() == "" and len((tmp_path / "kept.dropped.jsonl").read_text().splitlines()) == 4


@pytest.mark.parametrize("ids", [["x", "x", "y", "z"], [None, None, "y", "z"]])
def test_decontaminate_and_dedup_take_rows_whose_ids_repeat_or_are_missing(tmp_path, ids):
    """Only some rows of a repeated id removed: the file doors stopped with "stage 'decontaminate'
    both kept and dropped 1 row id(s)", an internal fault's words, where the Python door took them."""
    items = make_items(5, 4)
    path, _ = medqa_native(items[:1], tmp_path)
    rows = [{"id": i, "question": item["question"], "options": item["options"], "answer_idx": item["answer"]}
            for i, item in zip(ids, items, strict=True)]
    rows_path = tmp_path / "rows.jsonl"
    rows_path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    kept_path = tmp_path / "kept.jsonl"
    result = CliRunner().invoke(app, ["decontaminate", str(rows_path), str(kept_path), "--eval", str(path)])
    assert result.exit_code == 0, result.output
    kept = [json.loads(line)["question"] for line in (tmp_path / "kept.jsonl").read_text().splitlines()]
    assert kept == [item["question"] for item in items[1:]]
    rows_path.write_text("".join(json.dumps(row) + "\n" for row in [*rows, rows[0]]), encoding="utf-8")
    result = CliRunner().invoke(app, ["dedup", str(rows_path), str(tmp_path / "unique.jsonl")])
    assert result.exit_code == 0, result.output
    assert len((tmp_path / "unique.jsonl").read_text().splitlines()) == 4


def test_load_eval_takes_name_equals_file_as_every_other_door(tmp_path):
    """`m1data load-eval mine=FILE` was refused ("neither a known eval set nor a file") where
    `--eval mine=FILE` and a config read it; it and `load-eval mine --path FILE` now give the rows
    `load_eval_input` gives, and a file of loaded rows is taken as it is, not shuffled again."""
    from m1data.reading.evalsets import load_eval_input
    from m1data.reading.readers import read_rows

    path, _ = named_file(make_items(11, 5), tmp_path)
    (expected,) = load_eval_input(EvalInput("mine", str(path))).values()
    for n, args in enumerate([[f"mine={path}"], ["mine", "--path", str(path)]]):
        out = tmp_path / f"loaded{n}.jsonl"
        result = CliRunner().invoke(app, ["load-eval", *args, "--out", str(out)])
        assert result.exit_code == 0, result.output
        assert read_rows(out).to_list() == expected.rows.to_list()
    again = tmp_path / "again.jsonl"
    result = CliRunner().invoke(app, ["load-eval", f"mine={tmp_path / 'loaded0.jsonl'}", "--out", str(again)])
    assert result.exit_code == 0, result.output
    assert read_rows(again).to_list() == expected.rows.to_list()


def test_an_eval_set_named_twice_is_refused_at_every_door(tmp_path):
    """The second entry under one name replaced the first without a word: a build checked only one
    of the two files (3 contaminated rows stayed) and its card listed the other."""
    first, _ = named_file(make_items(1, 4), tmp_path)
    second, _ = mmlu_csv(make_items(2, 4), tmp_path)
    train = tmp_path / "train.jsonl"
    _jsonl(train, [{"id": "r0", "source": "medqa", "question": "Which nerve?", "options": ["a", "b"], "context": ""}])
    said = "eval set 'mine' is given twice; give each set once"
    result = CliRunner().invoke(app, ["decontaminate", str(train), str(tmp_path / "o.jsonl"),
                                      "--eval", f"mine={first}", "--eval", f"mine={second}"])
    assert result.exit_code != 0 and said in str(result.exception), result.output
    with pytest.raises(UserError, match=said):
        load_evals([f"mine={first}", f"mine={second}"])
    with pytest.raises(UserError, match="eval set 'medqa_test' is given twice"):
        Decontaminate(DecontaminateConfig(), ["medqa_test", f"medqa_test={first}"])
    with pytest.raises(UserError, match=said):  # a config's list, as YAML gives it
        from m1data.builders.m23k import M23KConfig

        config = from_dict(M23KConfig, {"evals": [{"name": "mine", "path": str(first)},
                                                  {"name": "mine", "path": str(second)}]})
        Decontaminate(DecontaminateConfig(), config.evals)
    assert len(load_evals([str(first), str(second)])) == 2  # two files alone keep their own names


@pytest.mark.parametrize("layout", [options_in_the_question, choices_on_one_line])
def test_options_written_into_the_question_are_read_as_its_options(layout, tmp_path):
    """Such a file is scored too: each row's options and key are the ones written, its stem the
    question without them, and a row with no key is left unscored, not keyed to an option."""
    items = make_items(7, 8)
    _, spec = layout(items, tmp_path)
    entry = EvalInput.parse(spec)
    result = next(iter(load_eval_input(entry).values()))
    assert len(result.rows) == sum(not it["broken"] for it in items)
    by_question = {row["question"]: row for row in result.rows}
    for it in items:
        if it["broken"]:
            assert it["question"] not in by_question
            continue
        row = by_question[it["question"]]  # the stem alone, as written before the options
        assert sorted(row["options"]) == sorted(it["options"])
        assert row["options"][row["answer_idx"]] == it["options"][it["answer"]]


def loaded_medqa_rows(tmp_path) -> list[dict]:
    """The embedded sample's MedQA test rows as `m1data load-eval` writes them."""
    from m1data.reading.readers import read_rows
    from m1data.stages.loading import sample_dir

    loaded = tmp_path / "loaded.jsonl"
    path = sample_dir() / "eval" / "medqa" / "test.jsonl"
    result = CliRunner().invoke(app, ["load-eval", "medqa_test", "--path", str(path), "--out", str(loaded)])
    assert result.exit_code == 0, result.output
    return read_rows(loaded).to_list()


def test_a_loaded_eval_file_with_a_contradicted_or_unreadable_key_leaves_that_row_unscored(tmp_path):
    """Rows in the row schema were taken as they were: a key its own answer_letter contradicts was
    scored against another option, silently, and a letter in answer_idx ended in a traceback.
    Such rows are unscored, each with its reason, and stay decontamination targets."""
    rows = loaded_medqa_rows(tmp_path)
    rows[0]["answer_idx"] = (rows[0]["answer_idx"] + 1) % len(rows[0]["options"])  # letter and text still say the old
    rows[1]["answer_idx"] = "B"
    rows[2]["answer_idx"] = 7
    broken = tmp_path / "broken.jsonl"
    broken.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    (name, got), = load_eval_input(EvalInput("mine", str(broken))).items()
    assert len(got.rows) == len(rows) - 3 and rows[0]["id"] not in set(got.rows["id"])
    assert sorted(got.dropped["reason"]) == ["answer_mismatch", "answer_out_of_range", "not_an_index"]
    assert len(got.unscored) == 3  # still questions a training row must not copy
    result = CliRunner().invoke(app, ["load-eval", f"mine={broken}", "--out", str(tmp_path / "again.jsonl")])
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output


def test_a_loaded_eval_file_with_a_letter_for_a_key_is_decontaminated_against_at_every_door(tmp_path):
    """A file in the row schema where one row's answer_idx is a letter ("B") and another's out of
    range: its scored and unscored rows came out typed apart (the key column text in the one, int
    in the other), and every decontamination door, which reads both, ended in a traceback ("The
    features can't be aligned"). Every question is a target, the broken ones' included."""
    rows = [row for row in loaded_medqa_rows(tmp_path) if row["answer_idx"] >= 0]
    rows[1]["answer_idx"] = "B"
    rows[2]["answer_idx"] = 7
    broken = tmp_path / "broken.jsonl"
    broken.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    train = datasets.Dataset.from_list([{"id": f"copy{i}", "source": "medqa", "question": row["question"],
                                         "options": row["options"][::-1], "context": ""}
                                        for i, row in enumerate(rows[:4])])
    for door in DOORS:
        assert door(train, f"mine={broken}", tmp_path) == set(), door.__name__  # all four are copies
    (targets,) = load_evals([EvalInput("mine", str(broken))]).values()
    assert len(targets) == len(rows) and sorted(targets["answer_idx"])[:2] == [-1, -1]


def test_a_loaded_row_whose_key_is_contradicted_is_not_scored_by_infer(tmp_path):
    """The rows left unscored for a contradicted key kept that key: `infer` reads a set's targets
    (rows and unscored questions) and scored every such row against the option its key named,
    which its own answer_letter or answer_text said was not the answer. Unscored rows carry no
    key (answer_idx -1, as the loaders' unscored rows do), so infer counts them as unscored."""
    from m1data.infer.score import _with_answer_key, read_eval_sets

    rows = loaded_medqa_rows(tmp_path)
    rows[0]["answer_letter"] = "ABCD"[(rows[0]["answer_idx"] + 1) % 4]
    rows[1]["answer_text"] = rows[1]["options"][(rows[1]["answer_idx"] + 1) % 4]
    broken = tmp_path / "broken.jsonl"
    broken.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    (name, asked), = read_eval_sets([f"mine={broken}"]).items()
    scored, unscored = _with_answer_key(asked)
    assert sorted(unscored) == sorted([rows[0]["id"], rows[1]["id"]])
    assert len(scored) == len(rows) - 2


def test_a_loaded_parquet_file_with_a_contradicted_key_is_read_at_every_eval_door(tmp_path):
    """`m1data load-eval --out X.parquet` writes answer_idx as int32; its rows left unscored were
    retyped from their values (int64), and joining them to the scored rows (`LoadResult.targets`)
    failed with a traceback ("features can't be aligned") at every door that reads the file."""
    from m1data.stages.loading import sample_dir

    loaded = tmp_path / "loaded.parquet"
    path = sample_dir() / "eval" / "medqa" / "test.jsonl"
    result = CliRunner().invoke(app, ["load-eval", "medqa_test", "--path", str(path), "--out", str(loaded)])
    assert result.exit_code == 0, result.output
    rows = datasets.Dataset.from_parquet(str(loaded))
    letters = ["ABCD"[(key + 1) % 4] if i == 0 else letter
               for i, (key, letter) in enumerate(zip(rows["answer_idx"], rows["answer_letter"]))]
    broken = tmp_path / "broken.parquet"
    rows.remove_columns("answer_letter").add_column("answer_letter", letters).select_columns(
        rows.column_names).to_parquet(str(broken))
    (name, got), = load_eval_input(EvalInput("mine", str(broken))).items()
    targets = got.targets()
    assert len(targets) == len(rows) and targets.features["answer_idx"] == rows.features["answer_idx"]
    assert got.unscored[0]["answer_idx"] == -1 and got.unscored[0]["answer_letter"] == ""
    assert len(load_evals([EvalInput("mine", str(broken))])["mine"]) == len(rows)


def test_rows_m1data_wrote_are_checked_against_their_answer_letter_at_the_source_door_too(tmp_path):
    """The same rows file, its answer_letter contradicting its answer_idx on one row: the eval door
    left that row unscored (answer_mismatch) while `m1data load mine --path FILE` trained on it
    with the key, silently. `answer_letter` is read beside the key as `answer_text` is."""
    rows = loaded_medqa_rows(tmp_path)
    rows[0]["answer_letter"] = "ABCD"[(rows[0]["answer_idx"] + 1) % 4]
    broken = tmp_path / "broken.jsonl"
    broken.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    (_, as_eval), = load_eval_input(EvalInput("mine", str(broken))).items()
    as_source = load_source("mine", broken)
    for got in (as_eval, as_source):
        assert got.reasons() == {"answer_mismatch": 1} and len(got.rows) == len(rows) - 1


@pytest.mark.parametrize("question, stem, options", [
    ("A woman has (a) fever and (b) a rash on her palms. What is the most likely diagnosis?", None, []),
    ("Consider the statements:\n(a) X causes Y\n(b) Z causes W\nWhich of the above are correct?", None, []),
    ("Regarding asthma:\n(a) X narrows\n(b) Y widens\nWhich of the above are correct?\nAnswer: B", None, []),
    ("Which of the blood group (A) and (B) antigens is absent in type O?\nA. Both\nB. Neither\nC. Only A\nD. Only B",
     "Which of the blood group (A) and (B) antigens is absent in type O?", ["Both", "Neither", "Only A", "Only B"]),
    ("Which are true?\n(a) X causes Y\n(b) Z causes W\nA. a only\nB. b only\nC. both\nD. neither",
     "Which are true?\n(a) X causes Y\n(b) Z causes W", ["a only", "b only", "both", "neither"]),
    ("Which is it? (A) the first (B) the second", "Which is it?", ["the first", "the second"]),
    ("Which drug?\nA. Warfarin\nB. Heparin\nAnswer:", "Which drug?", ["Warfarin", "Heparin"]),
    ("Which drug?\nA. Warfarin\nB. Heparin\nAnswer: A", "Which drug?", ["Warfarin", "Heparin"]),
    ("Which drug?\nOptions:\nA. Warfarin\nB. Heparin\nAnswer with the option's letter.", "Which drug?",
     ["Warfarin", "Heparin"]),
    ("Which drug in pregnancy? Answer Choices:\nA. Warfarin\nB. Heparin", "Which drug in pregnancy?",
     ["Warfarin", "Heparin"]),
    ("Which drug?\r\nA. Warfarin\r\n\r\nB. Heparin", "Which drug?", ["Warfarin", "Heparin"]),
    ("Which drug?\nA. Warfarin\nB. a long option that\n   wraps onto a second line", None, []),
    ("No options here.", None, []),
    ("A. a list\nB. with no stem", None, []),
])
def test_only_a_list_that_ends_the_question_is_read_as_its_options(question, stem, options):
    """Labels inside a sentence ("has (a) fever and (b) a rash"), a list of statements the
    question goes on about, or statements before the options A-D, are the question's own text:
    read as options, they cut it up, keyed the row to a statement, and a verbatim training copy
    was missed (reviews). A line after the list (an "Answer: A", an instruction) is cut off."""
    from m1data.reading.readers import options_in_question
    from m1data.stages.dedup import decontaminate

    assert options_in_question(question) == ((stem, options) if options else None)
    # a training copy, its options in a column of their own, goes whichever way the item was read
    copy = {"id": "r", "question": stem or question, "options": options or ["yes", "no"]}
    _, dropped = decontaminate([copy], {"e": [{"id": "e", "question": question}]})
    assert list(dropped["id"]) == ["r"]


def test_two_files_of_one_stem_each_take_their_own_mapping(tmp_path):
    """`--eval-mapping a/test:...` with a/test.jsonl and b/test.jsonl: the mapping was dropped,
    and b/test's went to both files, silently (review). Each entry takes its own; the stem alone
    names both and is refused."""
    from m1data.reading.evalsets import with_mappings

    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
    entries = [EvalInput.parse(str(tmp_path / folder / "test.jsonl")) for folder in ("a", "b")]
    for named, expected in (("a/test", [{"question": "Stem"}, None]), ("b/test", [None, {"question": "Stem"}])):
        assert [e.mapping for e in with_mappings(entries, {named: {"question": "Stem"}})] == expected
    with pytest.raises(UserError, match="names 2 eval entries"):
        with_mappings(entries, {"test": {"question": "Stem"}})
    with pytest.raises(UserError, match="mappings for 'test' and 'a/test' name one eval entry"):
        with_mappings(entries[:1], {"test": {"question": "Stem"}, "a/test": {"question": "Other"}})


def test_a_named_sets_record_in_another_layout_is_still_a_target(tmp_path):
    """Under `medqa_test=FILE`, a record with its question under `Question` was no decontamination
    target ("no readable question"), and its training copy stayed. A record without options stays
    none: a bare stem is matched on the stem alone, and removed rows that only shared it (review)."""
    import warnings

    items = make_items(3, 6)
    path, spec = medqa_native(items, tmp_path)
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    records[1]["Question"] = records[1].pop("question")
    del records[2]["options"]
    _jsonl(path, records)
    train = datasets.Dataset.from_list([{"id": f"t{i}", "question": it["question"], "options": it["options"]}
                                        for i, it in enumerate(items[:3])])
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        _, dropped = decontaminate(train, [EvalInput.parse(spec)])
    assert sorted(dropped["id"]) == ["t0", "t1"]
    assert any("1 of 6 records were not read as questions" in str(w.message) for w in said)


def test_pubmedqa_test_records_out_of_its_split_are_said_not_to_be_targets(shared_data, tmp_path):
    """`pubmedqa_test=FILE` keeps the official test PMIDs; a record out of them (a mistyped PMID)
    was no target without a word, and its training copy stayed."""
    raw = json.loads((shared_data / "raw/pubmedqa/ori_pqal.json").read_text())
    test_ids = sorted(json.loads((shared_data / "raw/pubmedqa/test_ground_truth.json").read_text()))[:4]
    mistyped = {test_ids[0]: "1" + test_ids[0]}
    path = tmp_path / "test.json"
    path.write_text(json.dumps({mistyped.get(pmid, pmid): raw[pmid] for pmid in test_ids}), encoding="utf-8")
    with pytest.warns(UserWarning, match=r"pubmedqa_test: 1 records are not decontamination targets, being out of "
                                         r"the set's scope: PMID not in PubMedQA's official test split"):
        (targets,) = load_evals([EvalInput("pubmedqa_test", str(path))]).values()
    assert len(targets) == 3


def test_a_medmcqa_file_without_ids_is_read_under_its_name(tmp_path):
    """MedMCQA's layout without its `id` column was refused whole under its name ("none of id"),
    where every other loader gives such a row a content id."""
    items = make_items(9, 5)
    path = tmp_path / "dev.jsonl"
    _jsonl(path, [{"question": it["question"], **dict(zip(("opa", "opb", "opc", "opd"), it["options"])),
                   "cop": it["answer"], "choice_type": "single", **({"id": ["", "  "][i % 2]} if i < 2 else {})}
                  for i, it in enumerate(items)])  # blank ids are none (they gave `medmcqa_validation:`, `:#2`)
    (rows,) = load_eval_input(EvalInput("medmcqa_validation", str(path), mapping={"answer_kind": "index0"})).values()
    assert [r["question"] for r in rows.rows] == [it["question"] for it in items]
    assert [r["options"][r["answer_idx"]] for r in rows.rows] == [it["options"][it["answer"]] for it in items]
    assert all(r["id"].startswith("medmcqa_validation:") and "#" not in r["id"] for r in rows.rows)
    assert len({r["id"] for r in rows.rows}) == len(items) and "medmcqa_validation:" not in rows.rows["id"]


def test_a_medmcqa_eval_file_whose_cop_cannot_tell_its_base_is_not_scored_on_a_guess(tmp_path):
    """cop 1-3 only: read as 0-based with a warning, so a 1-based file was scored with every key
    one option off; it may stay a decontamination target, but a score needs the base said."""
    items = [it for it in make_items(12, 20) if it["answer"] < 3][:6]
    path = tmp_path / "dev.jsonl"
    _jsonl(path, [{"id": f"d{i}", "question": it["question"], **dict(zip(("opa", "opb", "opc", "opd"), it["options"])),
                   "cop": it["answer"] + 1} for i, it in enumerate(items)])  # the original release's 1-based cop
    with pytest.raises(UserError, match=r"cannot be told, and every key of a wrong guess is wrong: say which"):
        load_eval_input(EvalInput("medmcqa_validation", str(path)))
    told = load_eval_input(EvalInput("medmcqa_validation", str(path), mapping={"answer_kind": "index1"}))
    assert [r["answer_text"] for r in told["medmcqa_validation"].rows] == [it["options"][it["answer"]] for it in items]
    with pytest.warns(UserWarning, match="read as 0-based"):
        (targets,) = load_evals([EvalInput("medmcqa_validation", str(path))]).values()  # matched all the same
    assert len(targets) == len(items)


def test_a_medmcqa_eval_file_with_one_out_of_range_cop_stays_a_target_at_every_door(shared_data, tmp_path):
    """Real MedMCQA validation questions in MedMCQA's own layout (0-based `cop`), one of them with
    a broken key: cop 4, out of range. Read as `medmcqa_validation=FILE`, the one 4 beside the 0s
    stopped the whole read ("cop is 0 on ... and 4 on ...; say which"), so no door could
    decontaminate against the set, where the same file given alone was read with every key unscored
    and every question a target. The keys of targets are never scored: every door removes the
    copies of all its questions, the broken one's included; a score still needs the base said."""
    native = [json.loads(line) for line in
              (shared_data / "eval/medagentsbench/medmcqa/test.jsonl").read_text(encoding="utf-8").splitlines()[:12]]
    items = [{"question": r["question"], "options": [r["options"][k] for k in "ABCD"],
              "answer": "ABCD".index(r["answer_idx"]), "broken": False} for r in native]
    train, planted = training_rows(items, 5)
    broken = min(int(name.removeprefix("copy")) for name in planted)  # a question copied into the rows
    path, columns = tmp_path / "validation.jsonl", ("opa", "opb", "opc", "opd")
    _jsonl(path, [{"id": r["realidx"], "question": it["question"], **dict(zip(columns, it["options"])),
                   "cop": 4 if i == broken else it["answer"], "choice_type": "single"}
                  for i, (r, it) in enumerate(zip(native, items))])
    assert 0 in [it["answer"] for i, it in enumerate(items) if i != broken]  # a 0 beside the 4: no base fits both
    spec = f"medmcqa_validation={path}"
    for door in DOORS:
        assert set(train["id"]) - door(train, spec, tmp_path) == planted, door.__name__
    (targets,) = load_evals([EvalInput.parse(spec)]).values()
    assert len(targets) == len(items) and all(key == -1 for key in targets["answer_idx"])  # no key read on a guess
    with pytest.raises(MalformedFile, match="cop is 0 on .* and 4 on"):
        load_eval_input(EvalInput.parse(spec))  # scoring: the base must be said


def test_a_loaded_eval_file_keeps_its_broken_key_questions_as_targets(shared_data, tmp_path):
    """`m1data load-eval medqa_test --path RAW --out LOADED`, RAW real MedQA-USMLE test questions of
    which a third have a broken key (out of range, or contradicted by the answer text): LOADED held
    the scorable rows only, the others went to LOADED.dropped, so `decontaminate --eval
    medqa_test=LOADED` (which reads loaded rows as they are) kept the training copies of every
    broken-key question (20 of 30 stayed), and infer read another set than from RAW. LOADED holds
    them as unscored rows (answer_idx -1), still targets; their reasons stay in LOADED.dropped."""
    from infer.score import read_eval_sets
    from m1data.reading.readers import read_rows

    path = shared_data / "raw/medqa/4_options_phrases_no_exclude_test.jsonl"
    real = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()[:30]]
    other = {r["answer_idx"]: next(k for k in r["options"] if k != r["answer_idx"]) for r in real}
    raw = [dict(r, answer_idx="F") if i % 3 == 0 else dict(r, answer=r["options"][other[r["answer_idx"]]])
           if i % 3 == 1 else r for i, r in enumerate(real)]
    raw_path, loaded = tmp_path / "raw.jsonl", tmp_path / "loaded.jsonl"
    _jsonl(raw_path, raw)
    result = CliRunner().invoke(app, ["load-eval", "medqa_test", "--path", str(raw_path), "--out", str(loaded)])
    assert result.exit_code == 0, result.output
    assert read_rows(loaded).to_list() == read_eval_sets([f"medqa_test={raw_path}"])["medqa_test"].to_list()
    assert sum(key == -1 for key in read_rows(loaded)["answer_idx"]) == 20
    assert len(read_rows(tmp_path / "loaded.dropped.jsonl")) == 20  # each with its reason
    train = tmp_path / "train.jsonl"
    _jsonl(train, [{"id": f"copy{i}", "source": "medqa", "question": r["question"],
                    "options": list(r["options"].values())[::-1], "context": ""} for i, r in enumerate(real)])
    hits = {}
    for label, entry in (("raw", f"medqa_test={raw_path}"), ("loaded", f"medqa_test={loaded}")):
        out = tmp_path / f"kept-{label}.jsonl"
        result = CliRunner().invoke(app, ["decontaminate", str(train), str(out), "--eval", entry, "--ngram", "0"])
        assert result.exit_code == 0, result.output
        hits[label] = sorted(zip(*(read_rows(tmp_path / f"kept-{label}.dropped.jsonl")[c] for c in ("id", "eval_id"))))
    assert hits["loaded"] == hits["raw"] and len(hits["raw"]) == 30
