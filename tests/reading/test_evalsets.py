import csv
import itertools
import json
import re
import tempfile
import warnings
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from m1data.reading.evalsets import (
    EVAL_SETS,
    AnswerSkewWarning,
    ColumnMapping,
    UnmatchedEvalWarning,
    ANSWER_KINDS,
    answer_kinds,
    answer_skew,
    load_eval,
    load_eval_any,
    load_eval_file,
    load_evals,
    make_parser,
    question_stem,
    question_stems,
    read_answer,
)
from m1data.reading import evalsets
from m1data.errors import UserError
from m1data.reading.readers import MalformedFile
from m1data.reading.sources import load_source
from m1data.reading.readers import key_letter, same_text, whole_number
from m1data.schema import LETTERS, RowError

NATIVE = {
    "medqa_test": ("raw/medqa/4_options_phrases_no_exclude_test.jsonl", 1273),
    "pubmedqa_test": ("raw/pubmedqa/ori_pqal.json", 500),
    "mmlu_pro_health": ("eval/mmlu_pro/health_result_gpt4o.json", 818),
    "medbullets_op4": ("eval/medbullets/medbullets_op4.csv", 308),
    "medbullets_op5": ("eval/medbullets/medbullets_op5.csv", 308),
    "medmcqa_validation": ("eval/medagentsbench/medmcqa/test.jsonl", 2816),
    "mmlu_anatomy": ("eval/mmlu/anatomy_test.csv", 135),
    "mmlu_professional_medicine": ("eval/mmlu/professional_medicine_test.csv", 282),
}


@pytest.mark.parametrize("name", sorted(NATIVE))
def test_named_eval_sets_load_real_files(shared_data, name):
    rel, expected = NATIVE[name]
    result = load_eval(name, shared_data / rel)
    ambiguous = 1 if name == "medmcqa_validation" else 0  # four options of one text: not scored (test_accounting)
    assert len(result.rows) == expected - ambiguous and len(result.dropped) == len(result.unscored) == ambiguous
    assert set(result.rows["source"]) == {name}


def test_every_eval_file_loads(shared_data):
    files = sorted((shared_data / "eval").rglob("*.jsonl")) + sorted((shared_data / "eval").rglob("*.csv"))
    files += sorted((shared_data / "eval").rglob("*.json"))
    assert len(files) >= 18
    for path in files:
        folder = path.parent.relative_to(shared_data / "eval").as_posix()
        if folder == "mmlu":
            sets = load_eval_any("mmlu_" + path.stem.removesuffix("_test"), path)
        elif folder == "medbullets":
            sets = load_eval_any(path.stem, path)
        elif folder == "mmlu_pro":
            sets = load_eval_any("mmlu_pro_health", path)
        else:
            sets = load_eval_file(path)
        for result in sets.values():
            native_rows = len(path.read_text(encoding="utf-8").splitlines()) if path.suffix == ".jsonl" else None
            assert len(result.rows) > 0, path
            if native_rows is not None:
                assert len(result.rows) + len(result.dropped) == native_rows, path


def test_eval_answers_match_native(shared_data):
    # Issue 9: eval options are shuffled per row, so the native letter no longer carries over;
    # the right answer's text, and where it went, must.
    path = shared_data / "eval/medagentsbench/medxpertqa-r/test.jsonl"
    native = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    rows = load_eval_file(path)["medxpertqa-r/test"].rows
    assert len(rows) == len(native)
    for raw, row in zip(native, rows):
        assert row["answer_text"] == raw["answer"].strip() == raw["options"][raw["answer_idx"]].strip()
        assert row["options"][row["answer_idx"]] == row["answer_text"]
        assert sorted(row["options"]) == sorted(o.strip() for o in raw["options"].values())


def test_m1_eval_file_shape(tmp_path):
    data = {
        "setA": [{"question": "Q1?", "options": {"A": "x", "B": "y"}, "answer_idx": "B", "answer": "y"}],
        "setB": [{"question": "Q2?", "options": {"A": "x", "B": "y", "C": "z"}, "answer_idx": "C", "answer": "z"}],
    }
    path = tmp_path / "eval.json"
    path.write_text(json.dumps(data))
    sets = load_eval_file(path)
    assert sorted(sets) == ["setA", "setB"]
    assert sets["setB"].rows[0]["answer_text"] == "z"


def test_headqa_own_layout_is_an_eval_file(tmp_path):
    """HEAD-QA's test split, in its own file, is an eval set to one who trains on its train split:
    it was refused as "expected a JSON list of objects"."""
    question = {"qid": 7, "qtext": "Which vitamin deficiency causes scurvy?", "ra": 3, "image": "",
                "answers": [{"aid": 1, "atext": "A"}, {"aid": 2, "atext": "D"}, {"aid": 3, "atext": "C"}]}
    pictured = {**question, "qid": 8, "image": "img/8.png"}
    path = tmp_path / "test_HEAD_EN.json"
    path.write_text(json.dumps({"version": "1", "exams": {"Cuaderno_1": {"name": "C1", "data": [question, pictured]}}}))
    result = load_eval_file(path, name="headqa_test")["headqa_test"]
    assert list(result.rows["id"]) == ["headqa_test:Cuaderno_1:7"] and result.rows[0]["answer_text"] == "C"
    assert [row["reason"] for row in result.dropped] == ["needs_image"]


@pytest.mark.parametrize("data", [
    {"question": {"0": "Which vitamin deficiency causes scurvy?"}, "options": {"0": ["C", "A", "D"]},
     "answer_idx": {"0": 0}, "exams": {"0": "MIR"}},  # pandas' default orient, a frame with an exams column
    {"version": "1", "exams": [{"question": "Which vitamin deficiency causes scurvy?", "options": ["C", "A", "D"],
                                "answer_idx": 0}]},  # rows under "exams"
])
def test_an_exams_key_alone_is_no_headqa_file(tmp_path, data):
    path = tmp_path / "evals.json"
    path.write_text(json.dumps(data))
    (result,) = load_eval_file(path).values()
    assert result.rows[0]["question"] == "Which vitamin deficiency causes scurvy?"


def test_headqa_test_file_decontaminates_its_own_rows(shared_data, tmp_path):
    from m1data import decontaminate

    path = shared_data / "raw" / "headqa" / "test_HEAD_EN.json"
    rows = load_source("headqa", path, split="test").rows
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kept, dropped = decontaminate(rows.select(range(300)), [Path(path)])
    assert len(kept) == 0 and set(dropped["eval_set"]) == {"headqa/test_HEAD_EN"}


def test_column_mapping_csv(tmp_path):
    path = tmp_path / "custom.csv"
    path.write_text("qq,o1,o2,o3,key\nWhat?,red,green,blue,2\n")
    mapping = ColumnMapping(question="qq", options=("o1", "o2", "o3"), answer="key", answer_kind="index0")
    rows = load_eval_file(path, mapping, name="custom")["custom"].rows
    assert rows[0]["answer_text"] == "blue" and rows[0]["question"] == "What?"
    # without answer_kind, one key of 2 cannot say whether it counts from 0 or from 1
    with pytest.raises(MalformedFile, match="index0 or index1.*answer_kind="):
        load_eval_file(path, ColumnMapping(question="qq", options=("o1", "o2", "o3"), answer="key"), name="custom")


def test_gpqa_csv_is_shuffled(tmp_path):
    header = "Record ID,Question,Correct Answer,Incorrect Answer 1,Incorrect Answer 2,Incorrect Answer 3\n"
    body = "".join(f"r{i},Question {i}?,right,w1,w2,w3\n" for i in range(40))
    path = tmp_path / "gpqa_diamond.csv"
    path.write_text(header + body)
    rows = load_eval("gpqa_diamond", path).rows
    assert all(r["answer_text"] == "right" for r in rows)
    assert len(set(rows["answer_letter"])) > 1


def test_csv_with_wrong_field_count_names_the_line(tmp_path):
    path = tmp_path / "anatomy_test.csv"
    path.write_text("Q1?,a,b,c,d,A\nQ2?,a,b,c,B\n")
    with pytest.raises(MalformedFile) as err:
        load_eval("mmlu_anatomy", path)
    assert err.value.line == 2


def test_unknown_eval_name():
    with pytest.raises(ValueError, match="unknown eval set"):
        load_eval("nope")
    assert "gpqa_diamond" in EVAL_SETS


def test_malformed_eval_rows_are_dropped_with_file_and_line(tmp_path):
    good = {"question": "Which nerve?", "options": {"A": "a", "B": "b", "C": "c", "D": "d"}, "answer_idx": "A"}
    rows = [good, dict(good, question={"text": "Q2?"}),
            dict(good, question="Q3?", options={"A": "a", "B": True, "C": "c", "D": "d"}),  # a number is text
            dict(good, question="Q4?")]
    path = tmp_path / "test.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    result = load_eval("medqa_test", path)
    assert sorted(result.rows["question"]) == ["Q4?", "Which nerve?"]
    assert result.reasons() == {"not_text": 2}
    assert [d.split(": ")[0] for d in result.dropped["detail"]] == ["test.jsonl:2", "test.jsonl:3"]


def test_eval_row_whose_question_is_not_text_is_dropped_under_its_own_id(tmp_path):
    """Dropped under its line ("mine:test.jsonl:2"), such a row could not be found by the id the
    file gives it, though a row dropped for its answer (q5) could. One whose mapped question column
    is missing is still read in the guessed layout as a decontamination target, under its id."""
    good = {"id": "q1", "Q": "Which nerve?", "options": ["a", "b", "c", "d"], "answer": "A"}
    rows = [good, dict(good, id="q2", Q=123), dict(good, id="q3", Q=None), dict(good, id="q5", Q="Q5?", answer="Z"),
            {"id": "q6", "question": "Which artery?", "options": ["a", "b", "c", "d"], "answer": "B"}]
    path = tmp_path / "test.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    mapping = ColumnMapping(question="Q", options="options", answer="answer", id="id")
    result = load_eval_file(path, mapping, name="mine")["mine"]
    assert result.dropped["id"] == ["mine:q2", "mine:q3", "mine:q5", "mine:q6"]
    assert result.dropped["detail"][0] == "test.jsonl:2: Q is int, not text"
    assert result.unscored["id"] == ["mine:q5", "mine:q6"]
    assert result.unscored["question"] == ["Q5?", "Which artery?"]


def test_m1_eval_file_item_that_is_not_an_object_is_dropped(tmp_path):
    data = {"setA": [{"question": "Q1?", "options": {"A": "x", "B": "y"}, "answer_idx": "B"}, "Q2? x y"]}
    path = tmp_path / "eval.json"
    path.write_text(json.dumps(data))
    result = load_eval_file(path)["setA"]
    assert len(result.rows) == 1 and result.reasons() == {"not_an_object": 1}
    assert result.dropped[0]["detail"].startswith("eval.json setA item 2: ")


GPQA_HEADER = "Record ID,Question,Correct Answer,Incorrect Answer 1,Incorrect Answer 2,Incorrect Answer 3\n"


def write_gpqa_layout(path, n=200):
    """GPQA's layout: the right answer always in the first option column."""
    path.write_text(GPQA_HEADER + "".join(f"rec{i},Question {i}?,right {i},wrong {i}a,wrong {i}b,wrong {i}c\n"
                                          for i in range(n)))
    return path


def spread_evenly(rows) -> bool:
    """Every answer letter's share of the set within [0.5, 1.5] x its share under a fair shuffle."""
    expected: Counter[str] = Counter()
    for options in rows["options"]:
        for i in range(len(options)):
            expected["ABCDEFGHIJKLMNOPQRSTUVWXYZ"[i]] += 1 / len(options)
    observed = Counter(rows["answer_letter"])
    return all(0.5 * e <= observed[letter] <= 1.5 * e for letter, e in expected.items())


def test_generic_gpqa_layout_file_is_shuffled(tmp_path):
    path = write_gpqa_layout(tmp_path / "gpqa_main.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("error", AnswerSkewWarning)
        rows = load_eval_file(path)[f"{tmp_path.name}/gpqa_main"].rows
    assert len(rows) == 200 and spread_evenly(rows)
    assert all(r["answer_text"] == f"right {i}" for i, r in enumerate(rows))
    assert rows["options"] == load_eval_file(path)[f"{tmp_path.name}/gpqa_main"].rows["options"]  # reproducible


@pytest.mark.parametrize("options_column", ["options", "choices"])
def test_a_gpqa_file_that_keys_its_own_options_is_read_by_them(tmp_path, options_column):
    """A GPQA file converted for a harness: the four GPQA columns kept beside the options it
    shuffled, and an `answer` letter keying those. Read by the GPQA columns and checked against
    that letter, most right rows were dropped as answer_mismatch; now its own options and key
    are read, at every door, and `Correct Answer` must be the option the key names (the one row
    whose key was broken is dropped)."""
    import random

    rng = random.Random(3)
    records = []
    for i in range(12):
        texts = [f"right {i}", f"wrong {i}a", f"wrong {i}b", f"wrong {i}c"]
        shuffled = rng.sample(texts, 4)
        records.append({"Record ID": f"rec{i}", "Question": f"Question {i}?",
                        **dict(zip(("Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3"),
                                   texts)),
                        options_column: shuffled, "answer": "ABCD"[shuffled.index(texts[0])]})
    records[5]["answer"] = "ABCD"[(records[5][options_column].index("right 5") + 1) % 4]
    path = tmp_path / "gpqa_diamond.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    for result in (load_eval("gpqa_diamond", path), *load_eval_file(path).values(), load_source("mine", path)):
        assert sorted(result.rows["answer_text"]) == sorted(f"right {i}" for i in range(12) if i != 5)
        assert result.dropped["reason"] == ["answer_mismatch"] and "right 5" in result.dropped["detail"][0]


def test_every_eval_file_loads_with_answer_letters_spread_evenly(shared_data, tmp_path):
    sets = {}
    for path in sorted((shared_data / "eval/medagentsbench").rglob("*.jsonl")):
        sets.update(load_eval_file(path))
    sets.update(load_eval_any("mmlu_medical", shared_data / "eval/mmlu"))
    for name in ("medbullets_op4", "medbullets_op5"):
        sets.update(load_eval_any(name, shared_data / f"eval/medbullets/{name}.csv"))
    sets.update(load_eval_any("mmlu_pro_health", shared_data / "eval/mmlu_pro/health_result_gpt4o.json"))
    sets.update(load_eval_any("medqa_test", shared_data / "raw/medqa/4_options_phrases_no_exclude_test.jsonl"))
    sets.update(load_eval_any("pubmedqa_test", shared_data / "raw/pubmedqa/ori_pqal.json"))
    sets.update(load_eval_any("gpqa_diamond", write_gpqa_layout(tmp_path / "gpqa_diamond.csv")))
    assert len(sets) == 9 + 6 + 2 + 1 + 1 + 1 + 1
    uneven = {name: Counter(r.rows["answer_letter"]) for name, r in sets.items() if not spread_evenly(r.rows)}
    assert uneven == {}
    assert {name: answer_skew(r.rows) for name, r in sets.items() if answer_skew(r.rows)} == {}


def test_skewed_answer_letters_are_flagged():
    import datasets

    def rows(letters, n_options=4):
        return datasets.Dataset.from_dict({"answer_letter": letters, "options": [["w"] * n_options] * len(letters)})

    assert "A" in answer_skew(rows(["A"] * 40))
    assert answer_skew(rows(["A", "B", "C", "D"] * 10)) is None
    assert answer_skew(rows(["A"] * 3)) is None  # too few rows to tell
    assert "J" in answer_skew(rows(list("ABCDEFGHIJ") * 20 + ["J"] * 60, n_options=10))


def test_medxpertqa_stem_loses_its_own_lettered_choices(shared_data):
    path = shared_data / "eval/medagentsbench/medxpertqa-u/test.jsonl"
    rows = load_eval_file(path)["medxpertqa-u/test"].rows
    assert not any("Answer Choices:" in q for q in rows["question"])
    first = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    assert rows[0]["question"] == first["question"].split("\nAnswer Choices:")[0].strip()


@pytest.mark.parametrize("name", ["medqa_test", "medmcqa_validation", "pubmedqa_test", "medbullets_op4",
                                  "mmlu_pro_health", "mmlu_anatomy", "medbullets_op5"])
def test_wrong_file_for_a_named_set_is_an_error(tmp_path, name):
    path = write_gpqa_layout(tmp_path / "gpqa.csv", n=20)
    with pytest.raises(MalformedFile) as err:
        load_eval(name, path)
    assert str(path) in str(err.value) and name in str(err.value)


def test_a_named_sets_own_layouts_still_load(tmp_path):
    medmcqa = {"id": "u1", "question": "Q?", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": 2}
    mab = {"realidx": "x1", "question": "Q?", "options": {"A": "a", "B": "b", "C": "c", "D": "d"}, "answer_idx": "C"}
    for i, raw in enumerate([medmcqa, mab]):
        path = tmp_path / f"v{i}.jsonl"
        path.write_text(json.dumps(raw) + "\n")
        kind = "index0" if raw is medmcqa else None  # (one cop of 2 cannot tell its base: a score needs it said)
        assert load_eval("medmcqa_validation", path, answer_kind=kind).rows[0]["answer_text"] == "c"


def test_pubmedqa_test_file_without_test_pmids_is_an_error(shared_data, tmp_path):
    native = json.loads((shared_data / "raw/pubmedqa/ori_pqal.json").read_text(encoding="utf-8"))
    from m1data.reading.sources import pubmedqa_test_pmids

    pool = {pmid: row for pmid, row in native.items() if pmid not in pubmedqa_test_pmids()}
    path = tmp_path / "pool.json"
    path.write_text(json.dumps(pool))
    with pytest.raises(MalformedFile, match="test split"):
        load_eval("pubmedqa_test", path)


def test_a_file_given_as_the_name_does_not_ignore_path(tmp_path):
    first = write_gpqa_layout(tmp_path / "a.csv", n=5)
    second = write_gpqa_layout(tmp_path / "b.csv", n=5)
    with pytest.raises(ValueError, match="--path"):
        load_eval_any(str(first), second)


def test_eval_set_name_of_a_file_in_the_current_folder(tmp_path, monkeypatch):
    write_gpqa_layout(tmp_path / "gpqa_main.csv", n=5)
    monkeypatch.chdir(tmp_path)
    names = list(load_eval_file("gpqa_main.csv")) + list(load_eval_any("gpqa_main.csv"))
    # the same name whichever way the file is named: its folder and stem, never "/gpqa_main"
    assert names == [f"{tmp_path.name}/gpqa_main"] * 2
    assert list(load_eval_file(tmp_path / "gpqa_main.csv")) == [f"{tmp_path.name}/gpqa_main"]


# ---------------------------------------------------------------------------------------------
# Issue 24: one reading of eval items


@pytest.mark.parametrize("options, expected", [
    (["A. x", "B. y", "C. z"], ["x", "y", "z"]),
    (["(A) x", "(B) y"], ["x", "y"]),
    (["A) x", "B) y"], ["x", "y"]),
    (["A: x", "B: y"], ["x", "y"]),
    (["[A] x", "[B] y"], ["x", "y"]),
    (["A - x", "B \u2013 y"], ["x", "y"]),
    (["A.x", "B.y"], ["x", "y"]),
    (["0. x", "1. y"], ["x", "y"]),
    (["B.x", "A.y"], ["B.x", "A.y"]),  # a style that counts in order only: "E.coli", "B.anthracis" are names
    (["A.V. block", "B.P. drop"], ["A.V. block", "B.P. drop"]),  # abbreviations, no labels
    (["A - deficiency", "B - deficiency"], ["A - deficiency", "B - deficiency"]),  # the letters tell them apart
    (["A. fumigatus", "Candida"], ["A. fumigatus", "Candida"]),  # not every option labelled
    # species by their genus initials, A to D by chance: the epithets say so
    (["A. baumannii", "B. dermatitidis", "C. albicans", "D. immitis"],
     ["A. baumannii", "B. dermatitidis", "C. albicans", "D. immitis"]),
    (["A. fumigatus.", "B. cereus.", "C. tropicalis."], ["A. fumigatus.", "B. cereus.", "C. tropicalis."]),
    (["B. anthracis", "A. baumannii"], ["B. anthracis", "A. baumannii"]),  # out of order: no bad row
    (["A. baumannii", "B. Heparin"], ["baumannii", "Heparin"]),  # one option is no species: labels
    (["A. aspirin", "B. heparin", "C. warfarin", "D. insulin"], ["aspirin", "heparin", "warfarin", "insulin"]),
    (["A. x", "B) y"], ["A. x", "B) y"]),  # two styles: not labels
    (["A. x"], ["A. x"]),
])
def test_option_letters_are_stripped_only_when_every_option_carries_its_own(options, expected):
    from m1data.reading.readers import strip_option_letters

    assert strip_option_letters(options) == expected


def test_species_options_keep_their_genus_initials_through_the_loader(tmp_path):
    """The options of a row, its answer text and its prompt are the species the file names."""
    species = ["A. baumannii", "B. dermatitidis", "C. albicans", "D. immitis"]
    path = tmp_path / "micro.jsonl"
    path.write_text(json.dumps({"id": "m1", "question": "Which fungus causes thrush?", "options": species,
                                "answer": "C"}) + "\n")
    row = load_eval_file(path, name="micro")["micro"].rows[0]
    assert sorted(row["options"]) == species and row["answer_text"] == "C. albicans"


def test_option_letters_out_of_order_are_a_bad_row():
    """Every letter, out of order: read as places, a key "B" named the option labelled A."""
    from m1data.reading.readers import strip_option_letters

    with pytest.raises(RowError, match="labelled B, A, out of order"):
        strip_option_letters(["B. Heparin", "A. Warfarin"])
    assert strip_option_letters(["B. x", "C. y"]) == ["B. x", "C. y"]  # not every letter: not labels


def test_csv_with_a_letter_header_reads_its_options(tmp_path):
    path = tmp_path / "hand.csv"
    path.write_text("question,A,B,C,D,answer\nWhich organ filters blood?,Heart,Kidney,Lung,Skin,B\n"
                    "Which vitamin clots blood?,A,B12,K,D,C\n")
    rows = load_eval_file(path, name="hand")["hand"].rows
    assert rows["answer_text"] == ["Kidney", "K"] and [len(o) for o in rows["options"]] == [4, 4]


def test_named_set_rows_without_an_answer_key_stay_targets(tmp_path):
    """Issue 24 item 2: MedQA-layout rows that lack answer_idx are unscored targets, counted."""
    from m1data.reading.evalsets import EvalInput, load_evals, unscored_counts

    rows = [{"question": f"Question {i} about the kidney?", "options": {"A": "a", "B": "b", "C": "c", "D": "d"},
             "meta_info": "step1", **({"answer_idx": "B"} if i % 4 else {})} for i in range(20)]
    path = tmp_path / "test.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    targets = load_evals([EvalInput("medqa_test", str(path))])["medqa_test"]
    assert len(targets) == 20 and unscored_counts({"medqa_test": targets}) == {"medqa_test": 5}
    assert len(load_eval("medqa_test", path).rows) == 15  # for scoring, only the 15 with a key


def test_a_named_set_refuses_another_number_of_options(tmp_path):
    rows = [{"question": f"Q{i}?", "options": dict(zip("ABCDE", "vwxyz")), "answer_idx": "A"} for i in range(6)]
    path = tmp_path / "five.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(MalformedFile, match="not a medmcqa_validation file: 6 of 6 questions .*4 options"):
        load_eval("medmcqa_validation", path)
    assert len(load_eval("medqa_test", path).rows) == 6  # MedQA has a 5-option test file


def test_an_mmlu_file_of_several_subjects_gives_each_its_own(tmp_path):
    rows = [{"question": f"Q{i}?", "options": dict(zip("ABCD", "wxyz")), "answer_idx": "A",
             "subject": "anatomy" if i < 3 else "virology"} for i in range(5)]
    path = tmp_path / "mmlu.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert len(load_eval("mmlu_anatomy", path).rows) == 3
    with pytest.raises(MalformedFile, match="no mmlu_clinical_knowledge questions.*anatomy, virology"):
        load_eval("mmlu_clinical_knowledge", path)


def test_eval_entry_text_forms():
    from m1data.reading.evalsets import EvalInput

    assert EvalInput.parse("medqa_test") == EvalInput("medqa_test")
    assert EvalInput.parse("mine=x/y.jsonl") == EvalInput("mine", "x/y.jsonl")
    with pytest.raises(ValueError, match="NAME=FILE"):
        EvalInput.parse("=x.jsonl")


def test_a_build_config_takes_eval_entries_in_text_form(tmp_path):
    """The README says a config's `evals` list takes what `decontaminate --eval` takes; a mapping
    `{name, path}` is the same entry."""
    from builders.m23k import M23KConfig
    from m1data.config import from_dict
    from m1data.reading.evalsets import EvalInput

    mine = tmp_path / "mine.jsonl"
    mine.write_text("")
    texts = from_dict(M23KConfig, {"evals": ["medqa_test", f"mine={mine}", str(mine)]}).evals
    mappings = from_dict(M23KConfig, {"evals": [{"name": "medqa_test"}, {"name": "mine", "path": str(mine)},
                                                {"name": str(mine)}]}).evals
    assert texts == mappings == [EvalInput("medqa_test"), EvalInput("mine", str(mine)), EvalInput(str(mine))]


@pytest.mark.parametrize("entry, message", [
    ("medqa_tset", r"eval set 'medqa_tset': not a known set \(medmcqa_validation, .*\) and no such file"),
    ("mine=gone.jsonl", r"eval set 'mine': gone\.jsonl: no such file"),
    ("medqa_test=gone.jsonl", r"eval set 'medqa_test': gone\.jsonl: no such file"),
])
def test_a_misspelt_eval_entry_stops_the_build_before_it_loads(tmp_path, monkeypatch, entry, message):
    """Checked when the build is put together: it used to fail only when decontamination ran,
    after the sources were loaded and deduplicated (minutes at full scale)."""
    import yaml
    from typer.testing import CliRunner

    from m1data.cli import app

    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"m23k": {"evals": [entry]}}))
    result = CliRunner().invoke(app, ["build", "m1k", "--out", "run", "--config", "c.yaml"])
    assert result.exit_code == 2, result.output
    assert re.search(message, " ".join(result.output.split()))
    assert not (tmp_path / "run").exists()


@given(key=st.text(st.characters(categories=["Nd", "No"]), min_size=1, max_size=3))
def test_numeral_answer_key_is_a_row_or_a_bad_row(key):
    """isdigit() passes "²" and int() refuses it: an answer key like it is a bad row, not a crash."""
    options = ["a1", "b1", "c1", "d1"]
    kinds = answer_kinds(key, options)
    assert kinds <= {"index0", "index1"} and (not kinds or key.strip().isdecimal())
    parsed = make_parser()({"id": "x", "question": "Q?", "options": options, "answer": key})
    assert parsed.error is None or parsed.error.reason in ("answer_out_of_range", "ambiguous_answer_kind")


OPTION_WORDS = st.sampled_from(["a", "B", "c", "1", "2", "0", "3", "Beta", "beta", "Ulnar  nerve", "ulnar nerve",
                                 "(B)", "B. x", "x", "Straße", "STRASSE", "4", " 2 "])
KEYS = st.one_of(st.none(), st.booleans(), st.integers(-2, 7), st.sampled_from([0.0, 1.0, 2.0, 2.5, 4.0]),
                 st.sampled_from(["B", "b", "(B)", "B.", "B)", "E", "1", " 2 ", "2.0", "", " ", "beta", "ULNAR NERVE",
                                  "x", "B. x", "strasse", "①", "b: Beta", "(A) x", "C) ulnar  NERVE", "B. 2"]),
                 OPTION_WORDS)


@settings(max_examples=400, deadline=None)
@given(value=KEYS, options=st.lists(OPTION_WORDS, min_size=2, max_size=5), kind=st.sampled_from(ANSWER_KINDS),
       written=st.one_of(st.none(), st.lists(OPTION_WORDS, min_size=2, max_size=5)))
def test_read_answer_reads_a_key_as_the_kinds_answer_kinds_finds(value, options, kind, written):
    """read_answer takes the one kind decided for the file: it reads a key exactly when
    answer_kinds says the key is of that kind, and then as that kind names an option."""
    if written is not None:
        written = (written + options)[: len(options)]  # as many as there are options
    kinds = answer_kinds(value, options, written)
    try:
        index = read_answer(value, options, kind, written)
    except RowError:
        assert kind not in kinds
        return
    assert kind in kinds
    key = str(int(value)) if isinstance(value, float) and value.is_integer() else str(value).strip()  # 2.0 is "2"
    if kind == "text":
        matches = [i for texts in (options, written or []) for i, text in enumerate(texts) if same_text(key, text)]
        label = re.fullmatch(r"\(?([A-Za-z])[.:)]\s*(.+)", key)  # no option's text: its letter and its option's text
        assert index == (matches[0] if matches else LETTERS.index(label.group(1).upper()))
        assert matches or same_text(label.group(2), options[index])
    elif kind == "letter":
        assert LETTERS[index] == key_letter(key)
    else:
        assert index == whole_number(value) - (kind == "index1")


@pytest.mark.parametrize("key", [1, 1.0, "1", "1.0", "np.int64", "np.float64"])
def test_a_numpy_or_float_key_reads_as_the_int_it_holds(key):
    """A key numpy gives (a frame's value read in Python) was no key at all (`answer_kinds` empty),
    where the int 1 is option B 0-based and option A 1-based."""
    import numpy as np

    key = {"np.int64": np.int64(1), "np.float64": np.float64(1.0)}.get(key, key)
    options = ["Femur", "Tibia", "Ulna", "Radius"]
    assert answer_kinds(key, options) == {"index0", "index1"}
    assert (read_answer(key, options, "index0"), read_answer(key, options, "index1")) == (1, 0)


# --- a `Correct Answer` column that is not GPQA's ---------------------------------------------

QUIZ_OPTIONS = ("Alpha", "Beta", "Gamma", "Delta")


def _write_quiz(folder, letters):
    """A hand-made CSV `Question,A,B,C,D,Correct Answer` with answer letters."""
    path = folder / "quiz.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Question", "A", "B", "C", "D", "Correct Answer"])
        writer.writerows([f"Which drug number {i} treats angina?", *QUIZ_OPTIONS, letter]
                         for i, letter in enumerate(letters))
    return path


@settings(max_examples=25, deadline=None)
@given(letters=st.lists(st.sampled_from("ABCD"), min_size=1, max_size=8),
       door=st.sampled_from(["eval, no mapping", "eval, options mapped", "source, options mapped"]))
def test_correct_answer_letters_key_their_own_option(letters, door):
    """Issue: `Correct Answer` was read as GPQA's (the right answer is option A) whenever no
    answer column was mapped, so every row of such a quiz was keyed to Alpha."""
    with tempfile.TemporaryDirectory() as folder:
        path = _write_quiz(Path(folder), letters)
        if door == "eval, no mapping":
            result = load_eval_file(path, name="quiz")["quiz"]
        elif door == "eval, options mapped":
            result = load_eval_file(path, ColumnMapping(options=("A", "B", "C", "D")), name="quiz")["quiz"]
        else:
            result = load_source("myquiz", path, mapping={"question": "Question", "options": ["A", "B", "C", "D"]})
    assert result.reasons() == {}
    expected = {f"Which drug number {i} treats angina?": QUIZ_OPTIONS["ABCD".index(x)] for i, x in enumerate(letters)}
    assert dict(zip(result.rows["question"], result.rows["answer_text"])) == expected


def test_gpqa_layout_is_still_read_as_gpqa_through_any_file_door(tmp_path):
    path = write_gpqa_layout(tmp_path / "diamond.csv", n=8)
    rows = load_eval_file(path, name="gpqa")["gpqa"].rows
    assert len(rows) == 8 and all(r["answer_text"].startswith("right") for r in rows)


# --- the answer column is chosen once per file ------------------------------------------------

def _medagentsbench_rows(n=12):
    letters = "ABCD"
    return [{"realidx": f"r{i}", "question": f"Which nerve number {i}?", "answer_idx": letters[i % 4],
             "options": {"A": f"a{i}", "B": f"b{i}", "C": f"c{i}", "D": f"d{i}"}, "answer": f"{'abcd'[i % 4]}{i}"}
            for i in range(n)]


def test_a_row_without_its_answer_idx_is_unscored_not_the_file(tmp_path):
    """Chosen per row, the answer column of a row with a null answer_idx was `answer` (text),
    and the file failed as 'read one way on some rows and another way on others'."""
    rows = _medagentsbench_rows()
    rows[3]["answer_idx"] = None
    path = tmp_path / "test.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = load_eval_file(path, name="medqa")["medqa"]
    assert len(result.rows) == 11 and result.reasons() == {"missing_field": 1}
    assert "answer_idx" in result.dropped[0]["detail"] and result.unscored["question"] == ["Which nerve number 3?"]
    assert all(r["answer_text"] == f"{'abcd'[int(r['id'].split(':r')[1]) % 4]}{r['id'].split(':r')[1]}"
               for r in result.rows)


def test_an_undecidable_answer_column_is_named(tmp_path):
    rows = _medagentsbench_rows()
    for row in rows[:6]:
        row["answer_idx"] = "ABCD".index(row["answer_idx"])  # half the keys written as indexes
        del row["answer"]
    path = tmp_path / "test.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(MalformedFile, match="answer column 'answer_idx' is read one way"):
        load_eval_file(path, name="medqa")


# --- an answer key and an answer text that disagree -------------------------------------------

@settings(max_examples=40, deadline=None)
@given(texts=st.lists(st.text("abcdefgh ", min_size=2, max_size=6).map(str.strip).filter(lambda t: len(t) > 1),
                      min_size=2, max_size=6, unique_by=str.lower),
       data=st.data())
def test_a_key_and_a_text_that_disagree_leave_the_row_unscored(texts, data):
    key, said = (data.draw(st.integers(0, len(texts) - 1)) for _ in range(2))
    raw = {"id": "q1", "question": "Which one?", "options": {LETTERS[i]: t for i, t in enumerate(texts)},
           "answer_idx": LETTERS[key], "answer": texts[said]}
    parsed = make_parser().for_records([raw])(raw)
    if key == said:
        assert parsed.error is None and parsed.answer_idx == key
    else:
        assert parsed.error.reason == "answer_mismatch" and parsed.answer_idx == -1
        assert parsed.question == "Which one?" and parsed.options == texts  # still a decontamination target
        # the detail names both options: a text "B" of option C is not read as "is not option B"
        assert f"is the text of option {LETTERS[said]}, not of option {LETTERS[key]}" in parsed.error.detail


def test_answer_mismatch_through_every_reader_of_the_file(tmp_path):
    rows = _medagentsbench_rows(8)
    rows[1]["answer"] = rows[1]["options"]["D"]  # its key says B
    path = tmp_path / "test.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    for result in (load_eval_file(path, name="x")["x"], load_eval("medqa_test", path)):
        assert len(result.rows) == 7 and result.reasons() == {"answer_mismatch": 1}
        assert result.unscored["question"] == ["Which nerve number 1?"]
    assert next(iter(load_evals([str(path)]).values())).num_rows == 8  # all eight stay targets
    trained = load_source("mine", path)
    assert len(trained.rows) == 7 and trained.reasons() == {"answer_mismatch": 1}


def test_a_letter_beside_answer_index_is_not_an_answer_text(tmp_path):
    """MMLU-Pro writes `answer` as a letter beside `answer_index`: nothing to compare."""
    raw = {"question_id": 1, "question": "Which?", "options": ["w", "x", "y", "z"], "answer": "C",
           "answer_index": 2, "category": "health"}
    first = dict(raw, question_id=0, question="Which first?", answer="A", answer_index=0)  # 0: counts from 0
    path = tmp_path / "mmlu_pro.jsonl"
    path.write_text(json.dumps(first) + "\n" + json.dumps(raw) + "\n")
    result = load_eval("mmlu_pro_health", path)
    assert result.reasons() == {} and sorted(result.rows["answer_text"]) == ["w", "y"]


# --- eval questions with an unusable id or context stay decontamination targets --------------

def test_pandas_float_ids_are_ids(tmp_path):
    """pandas writes an integer id column with a null in it as 1.0, NaN -> null, 3.0."""
    import pandas as pd

    frame = pd.DataFrame([{"id": 1, "question": "Which drug treats angina?", "options": ["a", "b", "c"], "answer": 2},
                          {"id": None, "question": "Which nerve for the deltoid?", "options": ["x", "y"], "answer": 0},
                          {"id": 3, "question": "Which enzyme in PKU?", "options": ["p", "q"], "answer": 0}])
    path = tmp_path / "evals" / "pandas.jsonl"
    path.parent.mkdir()
    frame.to_json(path, orient="records", lines=True)
    assert '"id":1.0' in path.read_text(encoding="utf-8")
    result = load_eval_file(path)["evals/pandas"]
    assert result.reasons() == {} and len(result.rows) == 3
    assert {"evals/pandas:1", "evals/pandas:3"} <= set(result.rows["id"])
    assert load_evals([str(path)])["evals/pandas"].num_rows == 3


def test_an_unusable_id_or_context_leaves_the_question_a_target(tmp_path):
    rows = [{"id": 1.5, "question": "Which drug treats angina?", "options": ["a", "b"], "answer": 0, "ctx": "c"},
            {"id": "q2", "question": "Which nerve for the deltoid?", "options": ["x", "y"], "answer": 1, "ctx": 7},
            {"id": "q3", "question": "Which enzyme in PKU?", "options": ["p", "q"], "answer": 0, "ctx": "c"}]
    path = tmp_path / "test.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = load_eval_file(path, ColumnMapping(context="ctx"), name="x", scoring=False)["x"]
    assert result.reasons() == {"not_text": 1, "bad_context": 1}
    assert sorted(result.targets()["question"]) == sorted(r["question"] for r in rows)
    assert result.rows["question"] == ["Which enzyme in PKU?"]


def test_eval_records_without_a_question_are_reported_by_load_evals(tmp_path):
    rows = [{"id": "q1", "question": "Which drug treats angina?", "options": ["a", "b"], "answer": 0},
            {"id": "q2", "question": 7, "options": ["x", "y"], "answer": 1},
            {"id": "q3", "prompt": "Which enzyme in PKU?", "options": ["p", "q"], "answer": 0}]
    path = tmp_path / "test.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.warns(UnmatchedEvalWarning, match=r"2 of 3 records .* not decontamination targets .*not_text"):
        targets = load_evals([str(path)])
    assert next(iter(targets.values()))["question"] == ["Which drug treats angina?"]


def test_mmlu_medical_refuses_one_subjects_file_and_splits_a_file_of_several(shared_data):
    # the anatomy CSV given as mmlu_medical loaded as six sets of the same 135 questions, five of
    # them under another subject's name
    anatomy = shared_data / "eval/mmlu/anatomy_test.csv"
    with pytest.raises(UserError, match=r"mmlu_medical: .*anatomy_test.csv holds one subject's questions"):
        load_eval_any("mmlu_medical", anatomy)
    assert len(load_eval_any("mmlu_anatomy", anatomy)["mmlu_anatomy"].rows) == 135  # as its own subject: fine
    folder = load_eval_any("mmlu_medical", shared_data / "eval/mmlu")
    several = load_eval_any("mmlu_medical", shared_data / "eval/medagentsbench/mmlu/test.jsonl")
    for sets in (folder, several):
        questions = {name: set(result.rows["question"]) for name, result in sets.items()}
        assert len(questions) == 6 and all(questions.values())
        # each subject its own questions (a few recur across subjects: no subject's are another's)
        assert all(not a <= b for a, b in itertools.permutations(questions.values(), 2))


# --- a key written as the option's letter and its text ------------------------------------------

def test_keys_written_as_letter_and_text_read_like_the_letters(shared_data, tmp_path):
    """Instruction-tuning copies of MedQA write the key as the option's letter and text ("E:
    Nitrofurantoin"); such a file was refused whole ("none of its records reads"). Real MedQA
    rows keyed so read exactly as keyed by their letters, at the source and the eval doors; a key
    whose letter is not its text's option is a broken key (answer_mismatch), and its question is
    still a decontamination target."""
    raws = [json.loads(line) for line in (shared_data / "raw/medqa/US_test_5_options.jsonl").open()][:120]
    styles = ["{l}: {t}", "{l}. {t}", "({l}) {t}", "{l}) {t}", "{l}:  {u}"]
    labelled, broken = [], set()
    for i, raw in enumerate(raws):
        letter = raw["answer_idx"]
        text = raw["options"][letter]
        if i % 40 == 7:  # the next option's letter with this option's text
            letter = LETTERS[(LETTERS.index(letter) + 1) % len(raw["options"])]
            broken.add(raw["question"])
        key = styles[i % len(styles)].format(l=letter, t=text, u=text.upper())
        labelled.append({"question": raw["question"], "options": raw["options"], "output": key})
    plain = [{"question": r["question"], "options": r["options"], "answer_idx": r["answer_idx"]} for r in raws]
    paths = {}
    for name, rows in (("labelled", labelled), ("plain", plain)):
        paths[name] = tmp_path / f"{name}.jsonl"
        paths[name].write_text("".join(json.dumps(r) + "\n" for r in rows))

    expected = load_source("mine", paths["plain"])
    keyed = {q: t for q, t in zip(expected.rows["question"], expected.rows["answer_text"]) if q not in broken}
    source = load_source("mine", paths["labelled"], mapping={"answer": "output"})
    evals = load_eval_file(paths["labelled"], ColumnMapping(answer="output"), name="mine")["mine"]
    assert len(broken) == 3 and len(keyed) == len(raws) - 3
    for result in (source, evals):
        assert dict(zip(result.rows["question"], result.rows["answer_text"])) == keyed
        assert result.reasons() == {"answer_mismatch": 3}
        assert "by its letter and option" in result.dropped["detail"][0]
    assert set(evals.unscored["question"]) == broken and len(evals.targets()) == len(raws)


def _read_as(result) -> list[tuple]:
    """What a load read, whatever order the file's rows and options came in: (question, answer, options)."""
    return sorted(zip(result.rows["question"], result.rows["answer_text"], map(sorted, result.rows["options"])))


def test_options_written_as_one_text_and_keys_after_an_answer_word_read_as_the_file(shared_data, tmp_path):
    """Exports of MedQA keep a question's options as one text after their labels ("A. x" a line
    each, or "(A) x (B) y") and a grader's key as "Answer: C"; every row of such a file was dropped
    (bad_options), or the file refused ("answer 'Answer: C' for 5 options"). Real MedQA rows written
    so read exactly as the file itself, at the source and the eval doors; among them options
    holding "C. trachomatis", "V(D)J" and "Rh(D)", which a cut at any label would have split. A
    row whose options are on one line after "A." labels is refused (bad_options), not guessed:
    "E. coli" would be cut there too."""
    raws = [json.loads(line) for line in (shared_data / "raw/medqa/US_test_5_options.jsonl").open()]
    raws = raws[:100] + [raws[355], raws[467], raws[610]]
    labels = ["{l}. {t}", "({l}) {t}", "{l}) {t}", "{l}: {t}", "({l}) {t}"]
    keys = ["Answer: {l}", "Option {l}", "The correct answer is ({l})", "ans. {l}"]
    written = []
    for i, raw in enumerate(raws):
        joiner = " " if i % len(labels) == 4 else "\n"  # "(A) x (B) y" on one line; the others a line each
        cell = joiner.join(labels[i % len(labels)].format(l=l, t=t) for l, t in raw["options"].items())
        written.append({"question": raw["question"], "options": cell,
                        "answer": keys[i % len(keys)].format(l=raw["answer_idx"])})
    cut = {**written[0], "question": "one line after 'A.' labels",
           "options": " ".join(f"{l}. {t}" for l, t in raws[0]["options"].items())}
    plain = tmp_path / "plain.jsonl"
    plain.write_text("".join(json.dumps(r) + "\n" for r in raws))
    mine = tmp_path / "mine.jsonl"
    mine.write_text("".join(json.dumps(r) + "\n" for r in [*written, cut]))

    expected = load_source("mine", plain)
    wanted = _read_as(expected)
    source = load_source("mine", mine, mapping={"options": "options", "answer": "answer"})
    evals = load_eval_file(mine, None, name="mine")["mine"]
    for result in (source, evals):
        assert _read_as(result) == wanted
        assert result.reasons() == {"bad_options": 1}


@pytest.mark.parametrize("layout", ["arc", "bigbio", "numbered", "lower"])
def test_options_labelled_as_the_hubs_usual_layouts_write_them_read_as_the_file(shared_data, tmp_path, layout):
    """ARC's and CommonsenseQA's `choices` ({"label": [...], "text": [...]}, key `answerKey`),
    BigBio's med_qa options ([{"key": "A", "value": ...}]), and option dicts keyed by numbers or
    lower-case letters: each such file was refused whole ("option keys ['label', 'text']"). Real
    MedQA rows written so read as the file itself at the source and the eval doors (the eval door
    with no mapping: `choices` and `answerKey` are guessed)."""
    raws = [json.loads(line) for line in (shared_data / "raw/medqa/US_test_5_options.jsonl").open()][:150]
    written = []
    for raw in raws:
        letters, texts = list(raw["options"]), list(raw["options"].values())
        options = {"arc": {"label": letters, "text": texts},
                   "bigbio": [{"key": k, "value": t} for k, t in zip(letters, texts)],
                   "numbered": {str(i + 1): t for i, t in enumerate(texts)},
                   "lower": {k.lower(): t for k, t in zip(letters, texts)}}[layout]
        written.append({"question": raw["question"], "choices": options, "answerKey": raw["answer_idx"]})
    plain = tmp_path / "plain.jsonl"
    plain.write_text("".join(json.dumps(r) + "\n" for r in raws))
    mine = tmp_path / "mine.jsonl"
    mine.write_text("".join(json.dumps(r) + "\n" for r in written))

    expected = load_source("mine", plain)
    wanted = _read_as(expected)
    source = load_source("mine", mine, mapping={"options": "choices", "answer": "answerKey"})
    evals = load_eval_file(mine, name="mine")["mine"]
    for result in (source, evals):
        assert _read_as(result) == wanted and not result.reasons()


# --- options written into the question as lines ---------------------------------------------------

LINE_STYLES = ["{l}. {t}", "({l}) {t}", "{l}) {t}", "{l}: {t}"]


@pytest.mark.parametrize("joiner", ["\n", " "])  # a line each, or all on the question's line
@pytest.mark.parametrize("style", LINE_STYLES)
def test_an_eval_question_that_lists_its_options_still_catches_its_copies(shared_data, tmp_path, style, joiner):
    """LLM evaluation prompts and prompt-formatted copies of eval sets write the options into the
    question, one a line, often with an "Answer:" line after them. Compared so, 9 of 10 verbatim
    training copies of real MedQA test questions were kept; the lines are now taken off the stem
    (they are the row's own options), at the eval and the source doors alike."""
    from m1data.stages.dedup import decontaminate

    raws = [json.loads(line) for line in (shared_data / "eval/medagentsbench/medqa/test.jsonl").open()][:30]
    listed = []
    for i, raw in enumerate(raws):
        lines = [style.format(l=letter, t=text) for letter, text in raw["options"].items()]
        heading, answer = (["Options:"] if i % 3 == 0 else []), (["Answer:"] if i % 2 else [])
        listed.append({**raw, "question": joiner.join([raw["question"], *heading, *lines, *answer])})
    path = tmp_path / "test.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in listed))
    evals = load_eval_file(path, name="listed")
    assert evals["listed"].rows["question"] == [r["question"].strip() for r in raws]
    training = tmp_path / "train.jsonl"
    training.write_text("".join(json.dumps({k: r[k] for k in ("question", "options", "answer_idx")}) + "\n"
                                for r in raws[:10]))
    rows = load_source("mine", training).rows
    kept, dropped = decontaminate(rows, load_evals([str(path)]), threshold=95)
    assert len(kept) == 0 and len(dropped) == 10
    assert load_source("mine", path).rows["question"] == evals["listed"].rows["question"]  # a source alike


@settings(max_examples=200, deadline=None)
@given(stem=st.text(st.characters(categories=["L", "N", "Zs"]), min_size=1, max_size=30).filter(str.strip),
       options=st.lists(st.text("abcxyz 12", min_size=1, max_size=8).filter(str.strip), min_size=2, max_size=5,
                        unique_by=lambda t: " ".join(t.casefold().split())),
       style=st.sampled_from(LINE_STYLES), heading=st.booleans(), answer=st.booleans(),
       label=st.sampled_from(["", "Question: ", "question:", "Q: "]), joiner=st.sampled_from(["\n", " "]),
       data=st.data())
def test_option_lines_come_off_only_when_they_are_the_rows_options(stem, options, style, heading, answer, label, joiner,
                                                                   data):
    """A line each or all on one line, after an optional heading and before an optional "Answer:"."""
    lines = [style.format(l=LETTERS[i], t=t.strip()) for i, t in enumerate(options)]
    question = joiner.join([label + stem, *(["Choices:"] if heading else []), *lines, *(["Answer:"] if answer else [])])
    raw = {"question": question, "options": options, "answer": 0}
    assert make_parser()(raw).question.strip() == stem.strip()  # (rows strip their questions)
    wrong = data.draw(st.integers(0, len(options) - 1))
    lines[wrong] = style.format(l=LETTERS[wrong], t="other option text")  # another text: not this row's list
    altered = joiner.join([stem, *lines])
    assert make_parser()({**raw, "question": altered}).question == altered


@pytest.mark.parametrize("stem", ["Which are the best treatment options", "0 CHOICES", "List the answer choices"])
def test_a_stems_own_last_word_is_no_options_heading(stem):
    """Found by a deep run of the property test above: a question's own last word "options" (or
    "choices") before its list was taken for an "Options" heading and cut off the stem. A heading
    ends with a colon or stands alone on its line."""
    for joiner in ("\n", " "):
        question = joiner.join([stem, "A. x", "B. y"])
        assert question_stem(question, ["x", "y"]) == stem
    assert question_stem(f"{stem}?\nOptions\nA. x\nB. y", ["x", "y"]) == f"{stem}?"
    assert question_stem(f"{stem}? Answer choices: A. x B. y", ["x", "y"]) == f"{stem}?"


def test_an_lm_eval_style_mmlu_file_catches_every_copy(shared_data, tmp_path):
    """The real MMLU anatomy questions as LLM evaluation harnesses write them ("Question: ...",
    the options a line each, "Answer:"): before, 6 of the 135 verbatim training copies were
    kept, short questions whose stem the label alone took under the threshold."""
    import csv as csv_module

    from m1data.stages.dedup import decontaminate

    cells = list(csv_module.reader((shared_data / "eval/mmlu/anatomy_test.csv").open(encoding="utf-8")))
    prompts = tmp_path / "anatomy.jsonl"
    prompts.write_text("".join(json.dumps({
        "question": "Question: " + c[0] + "\n" + "\n".join(f"{l}. {t}" for l, t in zip("ABCD", c[1:5])) + "\nAnswer:",
        "choices": c[1:5], "answer": "ABCD".index(c[5])}) + "\n" for c in cells))
    training = tmp_path / "train.jsonl"
    training.write_text("".join(json.dumps({"question": c[0], "options": c[1:5], "answer": c[5]}) + "\n" for c in cells))
    kept, dropped = decontaminate(load_source("mine", training).rows, load_evals([str(prompts)]), threshold=95)
    assert len(kept) == 0 and len(dropped) == len(cells) == 135


_INSTRUCTIONS_AFTER = ["Choose the best answer.", "Select the correct option from the choices below.", "Select one:",
                       "Please choose the single best answer", "Pick one.", "Identify the most appropriate response.",
                       "Answer with the option's letter from the given choices directly.",
                       "Respond with only the letter (A, B, C or D).", "Respond only with the letter of the correct answer.",
                       "Choose the correct answer from the following options:", "Answer: Let's think step by step.",
                       "Please reason step by step, and put your final answer within \\boxed{}.",
                       "Return your final response within \\boxed{}.", "Final answer:", "Answer (A, B, C or D):",
                       "### Answer:", "Choose one answer from the following:\nPlease answer with the letter of the correct option.",
                       "Select all that apply.", "Choose the correct option(s).", "Answer with A, B, C, or D.", "A:",
                       "Answer the following question.", "Please select the correct answer directly without any analysis."]
# harness templates (simple-evals, MMLU-Pro's chain of thought, Med-PaLM's, a translated licensing exam's)
_INSTRUCTIONS_BEFORE = ["The following are multiple choice questions (with answers) about anatomy.",
                        "Answer the following multiple choice question.", "Answer the following question:",
                        "Choose the correct answer:", "## Question:",
                        "Answer the following multiple choice question. The last line of your response should be of the "
                        "following format: 'Answer: $LETTER' (without quotes) where LETTER is one of ABCD. Think step "
                        "by step before answering.\n\nQuestion:",
                        'The following are multiple choice questions (with answers) about health. Think step by step and '
                        'then finish your answer with "the answer is (X)" where X is the correct letter choice.',
                        "The following are multiple choice questions about medical knowledge. Solve them in a "
                        "step-by-step fashion, starting by summarizing the available information. Output a single "
                        "option from the four options as the final answer.",
                        "The following is a single-choice question from a Chinese medical licensing exam. Please "
                        "select the correct answer.",
                        "Given the following medical question and candidate answers, choose the best answer.",
                        "Answer the question below.", "Read the following question and choose the correct answer."]


@settings(max_examples=200, deadline=None)
@given(stem=st.text(st.characters(categories=["L", "N", "Zs"]), min_size=1, max_size=40).filter(str.strip),
       after=st.sampled_from([None, *_INSTRUCTIONS_AFTER]), before=st.sampled_from([None, *_INSTRUCTIONS_BEFORE]),
       joiner=st.sampled_from(["\n", " ", "\n\n"]), lines=st.booleans(), case=st.sampled_from([str, str.upper, str.lower]))
def test_an_instruction_on_how_to_answer_is_no_part_of_the_stem(stem, after, before, joiner, lines, case):
    """85 of 135 verbatim MMLU copies and 255 of 300 MedMCQA ones whose question ended "Choose the
    best answer." stayed: the line cost a short question its match."""
    stem = stem.strip() + "?"
    parts = [*([case(before)] if before else []), stem, *([case(after)] if after else []),
             *(["A. x", "B. y"] if lines else [])]
    assert question_stem(joiner.join(parts), ["x", "y"]) == stem


@pytest.mark.parametrize("question", ["Patient with fever. Choose the drug of choice.", "Choose the correct answer.",
                                      "\nChoose the best answer.", "A man of 30. Think step by step about it. Which nerve?",
                                      "Which is true? Choose the correct statement about the kidney.",
                                      "What is the answer to 2 + 2? Give the answer in words:",
                                      "Choose the best option for a diabetic patient with sepsis."])
def test_a_question_that_asks_to_choose_keeps_its_words(question):
    """Only words about answering come off ("the drug of choice" is the question's own), a
    question that is nothing but an instruction stays as it is, and an instruction's sentence
    ends where it ends (no question after it is taken with it)."""
    assert question_stem(question, ["x", "y"]) == question


_PROMPTED = st.sampled_from(["", "Question: ", "Q: ", "The following are multiple choice questions about x.\n",
                             "Please answer the following question:\n", "Choose the best answer:\n", "İdentify the correct option.\n",
                             "Answer the following multiple choice question. Think step by step.\n\n## Question: ",
                             "Given the following question, choose the best answer. ", "Output a single option: ",
                             "Read the following question and choose the best answer.\n", "Answer the question below: "])
_ENDED = st.sampled_from(["", "\nAnswer:", "\nThe correct answer is", " Select one:", "\nPlease choose the best option.",
                          "\nRespond with only the letter.", "\nChoose one answer from the following:", " PİCK ONE.",
                          "\nAnswer Choices: (A) x (B) y", "\nAnswer is (A):", " Think step-by-step.", "\n## Answer",
                          " put it in \\boxed{}.", "\nOutput a single option.", " Answer (A or B):",
                          " Select all that apply.", "\nA:", " Pick the option(s).", "\nAnswer with A or B.",
                          "\nOnly give the letter.", " Choose one directly without any comment.", "\nRespond with A or B.",
                          "\nReply only with a or b!", " Answer the above x2y z3w question."])


@settings(max_examples=300, deadline=None)
@given(stem=st.text(st.characters(codec="utf-8"), max_size=30), before=_PROMPTED, after=_ENDED,
       options=st.lists(st.text("xyzXYZ 1ıİſK\u00a0", max_size=6), max_size=4),
       style=st.sampled_from(["{l}. {t}", "({l}) {t}", "{l}){t}", "{l}: {t}"]), listed=st.booleans(),
       joiner=st.sampled_from(["\n", " ", "\u2003"]), case=st.sampled_from([str, str.upper, str.lower]))
def test_question_stems_reads_a_column_as_question_stem_reads_each_question(stem, before, after, options, style,
                                                                           listed, joiner, case):
    """The column's look for prompt words (RE2) may only let through what the full reading would
    not change."""
    lines = [style.format(l=LETTERS[i], t=t) for i, t in enumerate(options)] if listed else []
    question = case(joiner.join([before + stem, *lines]) + after)
    assert question_stems([question, None], [options, None]) == [question_stem(question, options), None]


def test_the_column_look_folds_case_as_python_does():
    """Every character Python's IGNORECASE takes for an ASCII letter is taken so by RE2 too, or
    sends its question to the full reading (`_MAY_HAVE_PROMPT_WORDS`)."""
    import sys

    import pyarrow as pa
    import pyarrow.compute as pc

    folds = [chr(c) for c in range(128, sys.maxunicode + 1) if re.fullmatch("(?i)[a-z]", chr(c))]
    assert folds  # K (Kelvin), ſ, ı, İ
    for ch in folds:
        letter = next(a for a in "abcdefghijklmnopqrstuvwxyz" if re.fullmatch(a, ch, re.IGNORECASE))
        in_re2 = pc.match_substring_regex(pa.array([ch]), f"(?i:{letter})")[0].as_py()
        flagged = any(pc.match_substring_regex(pa.array([ch]), p)[0].as_py() for p in evalsets._MAY_HAVE_PROMPT_WORDS)
        assert in_re2 or flagged, (hex(ord(ch)), letter)
    options = [f"option {n}" for n in range(9)]  # the ninth is I, which Python's IGNORECASE reads in "İ." and "ı."
    for label in ("İ.", "ı)", "I."):
        question = "Which?\n" + "\n".join(f"{l}. {t}" for l, t in zip("ABCDEFGH", options)) + f"\n{label} option 8"
        assert question_stems([question], [options]) == [question_stem(question, options)] == ["Which?"]


@pytest.mark.parametrize("question", [
    "Given the following symptoms of fever and rash in a child, the most likely diagnosis is:",
    "The following is a question about a 45-year-old man with crushing chest pain: what is the diagnosis?",
    "A boy has fever. Think step by step about the patient's fever. Which is the child's diagnosis?",
    "A man fell on his outstretched hand and cannot extend his wrist.\nThink step by step about which nerve is injured.",
    "A man fell on his outstretched hand. Answer with the letter of the nerve that is injured."])
def test_an_instruction_never_takes_the_question_with_it(question):
    """Review: each of these lost its question (a vignette shared by other questions stayed), so
    two different questions on one vignette compared equal."""
    assert question_stem(question, []) == question


def test_a_rows_file_eval_set_does_not_score_an_ambiguous_answer():
    assert evalsets._loaded_key_problem({"answer_idx": 0, "options": ["Aspirin", "aspirin", "Heparin"],
                                         "answer_letter": "A", "answer_text": "Aspirin"}).reason == "ambiguous_answer"
    assert evalsets._loaded_key_problem({"answer_idx": 2, "options": ["Aspirin", "aspirin", "Heparin"]}) is None


@pytest.mark.parametrize("heading", ["### Options:", "### Options", "## Options:", "#### Answer Choices:",
                                     "**Options:**", "**Options**:", "**Options**"])
@pytest.mark.parametrize("inline", [False, True])
@pytest.mark.parametrize("marks", ["### {}", "**{}**"])
def test_a_markdown_options_heading_comes_off_with_its_list(heading, inline, marks):
    """A harness writing `### Question: ... ### Options: ... ### Answer:` left its `###` in the
    stem (4 of 500 short MMLU copies so wrapped escaped), and one writing them in bold
    (`**Question:**`) kept every word of its prompt: the Markdown marks come off with the label,
    the heading and the cue, whether the row has its options (`question_stem`) or only the
    question writes them (`options_in_question`)."""
    from m1data.reading.readers import options_in_question

    options = ["Heparin", "Warfarin", "Aspirin", "Clopidogrel"]
    one_line = inline and ":" in heading
    listed = (" " if one_line else "\n") + (" ".join if one_line else "\n".join)(
        f"({'ABCD'[i]}) {o}" if inline else f"{'ABCD'[i]}. {o}" for i, o in enumerate(options))
    label, cue = (marks.format(word) for word in ("Question:", "Answer:"))
    question = f"{label} Which drug first?\n{heading}{listed}\n\n{cue}"
    assert question_stem(question, options) == question_stems([question], [options])[0] == "Which drug first?"
    stem, written = options_in_question(question)
    assert written == options and question_stem(stem, options) == "Which drug first?"
