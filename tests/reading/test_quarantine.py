"""Every record of a file users bring is accounted for: read as a row, or dropped with a reason,
or (a whole-file fault) one clear error; and a row read is read in its file's meaning.

The files here are the native shapes of the four sources written the ways they reach users (as
JSONL, JSON, CSV or parquet, by hand or by pandas) with the faults real files have."""

import csv
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from m1data.reading.evalsets import EvalInput, load_eval_input
from m1data.reading.readers import MalformedFile
from m1data.reading.sources import load_source, pubmedqa_test_pmids

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _jsonl(path, records):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


TEST_PMIDS = sorted(pubmedqa_test_pmids())[:3]
POOL_PMIDS = ["90000001", "90000002"]
pmid_forms = st.sampled_from([str, int, float])


@FAST
@given(forms=st.lists(pmid_forms, min_size=5, max_size=5))
def test_pubmedqa_split_reads_a_pmid_as_its_row_id_does(forms, tmp_path_factory):
    """A PMID written as a number (pandas writes an id column with a null in it as floats) is the
    same PMID: the official test questions stay out of the training pool whatever the PMID's type."""
    records = [{"pubid": form(pmid), "question": f"Does {pmid} work?", "context": {"contexts": ["c"]},
                "final_decision": "yes"} for form, pmid in zip(forms, TEST_PMIDS + POOL_PMIDS, strict=True)]
    path = _jsonl(tmp_path_factory.mktemp("pqa") / "pqa.jsonl", records)
    train, test = load_source("pubmedqa", path), load_source("pubmedqa", path, split="test")
    assert sorted(train.rows["id"]) == [f"pubmedqa:{p}" for p in POOL_PMIDS]
    assert sorted(test.rows["id"]) == [f"pubmedqa:{p}" for p in TEST_PMIDS]


aid_forms = st.sampled_from([int, str])


@FAST
@given(aids=st.lists(st.integers(min_value=1, max_value=5), min_size=2, max_size=5), ra=st.integers(1, 5),
       form=aid_forms)
def test_headqa_key_names_one_answer_or_the_row_is_dropped(aids, ra, form, tmp_path_factory):
    """HEAD-QA's `ra` names an `aid`: a row is read only when exactly one answer has it, and then
    as that answer; a row whose aids repeat is dropped with its reason (it took the first answer)."""
    texts = [f"answer {i}" for i in range(len(aids))]
    question = {"qid": 1, "qtext": "Which one?", "ra": str(ra), "image": "",
                "answers": [{"aid": form(aid), "atext": t} for aid, t in zip(aids, texts, strict=True)]}
    path = tmp_path_factory.mktemp("hqa") / "h.json"
    path.write_text(json.dumps({"exams": {"e": {"name": "E", "data": [question, {**question, "qid": 2, "ra": "1",
                    "answers": [{"aid": 1, "atext": "yes"}, {"aid": 2, "atext": "no"}]}]}}}), encoding="utf-8")
    result = load_source("headqa", path)
    assert len(result.rows) + len(result.dropped) == 2
    read = dict(zip(result.rows["id"], result.rows["answer_text"], strict=True))
    assert read["headqa:e:2"] == "yes"
    if aids.count(ra) == 1 and len(set(aids)) == len(aids):
        assert read["headqa:e:1"] == texts[aids.index(ra)]
    else:
        assert "headqa:e:1" not in read
        assert result.dropped["id"] == ["headqa:e:1"] and result.dropped["reason"][0] in ("bad_options",
                                                                                          "answer_out_of_range")


def _medqa_record(n: int) -> dict:
    return {"question": f"Question {n}?", "options": {"A": f"a{n}", "B": f"b{n}", "C": f"c{n}", "D": f"d{n}"},
            "answer_idx": "B", "answer": f"b{n}", "meta_info": "step1"}


@FAST
@given(n=st.integers(min_value=1, max_value=6), data=st.data())
def test_a_key_written_twice_in_a_jsonl_record_is_an_error_naming_its_line(n, data, tmp_path_factory):
    """`json` keeps the last of two values of one key and drops the other without a word: a
    record with two `answer_idx` was read by the second. The file is refused, at the line."""
    lines = [json.dumps(_medqa_record(i)) for i in range(n)]
    bad = data.draw(st.integers(0, n - 1))
    key = data.draw(st.sampled_from(["answer_idx", "question", "A"]))
    if key == "A":
        lines[bad] = lines[bad].replace('"A": ', '"A": "again", "A": ', 1)
    else:
        lines[bad] = lines[bad][:-1] + f', "{key}": "C"}}'
    path = tmp_path_factory.mktemp("dup") / "train.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(MalformedFile, match=rf"train.jsonl:{bad + 1}: key '{key}' appears twice"):
        load_source("medqa", path)


def test_a_pmid_written_twice_in_a_pubmedqa_file_is_an_error_naming_it(tmp_path):
    """PubMedQA's native file is one object keyed by PMID: the same PMID twice kept one question
    and lost the other, silently."""
    record = {"QUESTION": "Does it?", "CONTEXTS": ["c"], "final_decision": "yes"}
    body = json.dumps(record)
    path = tmp_path / "ori_pqal.json"
    path.write_text(f'{{"90000001": {body}, "90000002": {body}, "90000001": {body}}}', encoding="utf-8")
    with pytest.raises(MalformedFile, match="key '90000001' appears twice"):
        load_source("pubmedqa", path)
    path.write_text(f'{{"90000001": {body}, "90000002": {body}}}', encoding="utf-8")
    assert len(load_source("pubmedqa", path).rows) == 2


def test_an_options_cell_naming_a_letter_twice_drops_its_row(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text('question,options,answer\n'
                    'Q1?,"{""A"": ""x"", ""B"": ""y"", ""A"": ""z""}",A\n'
                    'Q2?,"{""A"": ""x"", ""B"": ""y""}",B\n', encoding="utf-8")
    result = load_source("mine", path, mapping={})
    assert result.rows["question"] == ["Q2?"] and result.rows["answer_text"] == ["y"]
    assert result.dropped["reason"] == ["bad_options"] and "'A' twice" in result.dropped["detail"][0]


def _csv(path, header, rows):
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


MEDMCQA_HEADER = ["id", "question", "opa", "opb", "opc", "opd", "cop", "exp"]


@FAST
@given(size=st.sampled_from([10, 131_072, 300_000]), at=st.integers(0, 2))
def test_a_long_csv_cell_is_read_whole(size, at, tmp_path_factory):
    """A long explanation or context is a row like any other: the csv module's 128 KiB cell
    limit refused the whole file. The long cell is read whole, and the limit is put back."""
    limit = csv.field_size_limit()
    rows = [[f"id{i}", f"Q{i}?", "a", "b", "c", "d", "0", "x" * (size if i == at else 3)] for i in range(3)]
    path = _csv(tmp_path_factory.mktemp("long") / "train.csv", MEDMCQA_HEADER, rows)
    result = load_source("medmcqa", path, cop_base=0)
    assert len(result.rows) == 3 and len(result.dropped) == 0
    assert max(len(json.loads(m)["exp"]) for m in result.rows["metadata"]) == size
    assert csv.field_size_limit() == limit


def test_a_csv_header_naming_a_column_twice_is_an_error(tmp_path):
    """dict(zip(header, cells)) kept the last cell of a repeated column name: a CSV with two `opd`
    columns lost one option, silently."""
    path = _csv(tmp_path / "train.csv", ["id", "question", "opa", "opb", "opd", "opd", "cop"],
                [["1", "Q?", "a", "b", "c", "d", "0"]])
    with pytest.raises(MalformedFile, match=r"train.csv:1: the header names column 'opd' 2 times"):
        load_source("medmcqa", path)


def test_a_parquet_file_of_no_rows_is_said_to_have_none(tmp_path, capfd):
    """Like an empty .jsonl or a CSV of a header only: no records, not "unreadable parquet"."""
    table = pa.table({"question": pa.array([], pa.string()), "options": pa.array([], pa.list_(pa.string())),
                      "answer": pa.array([], pa.string())})
    pq.write_table(table, tmp_path / "mine.parquet")
    with pytest.raises(MalformedFile, match=r"mine.parquet: no mine records in it"):
        load_source("mine", tmp_path / "mine.parquet", mapping={})
    assert "Failed to read" not in capfd.readouterr().err


MEDQA_OPTIONS = {"A": "Warfarin", "B": "Heparin sodium", "C": "Aspirin", "D": "Clopidogrel"}
# What a file writes in `answer` beside answer_idx "B": whether it names option B (True), another
# option (False), or no answer at all (None, blank).
ANSWERS = {"Heparin sodium": True, " heparin  SODIUM ": True, "B": True, "(b)": True, "B.": True,
           "": None, "   ": None, "Warfarin": False, "A": False, "(C)": False}


@FAST
@given(answers=st.lists(st.sampled_from(sorted(ANSWERS)), min_size=1, max_size=6))
def test_medqa_answer_beside_its_key_is_read_alike_by_every_door(answers, tmp_path_factory):
    """MedQA's `answer` must agree with `answer_idx` when it says something: blank says nothing,
    the key's own letter agrees. The source loader dropped both as answer_mismatch, where the eval
    reader kept them; every door reads the file alike and every record is accounted for."""
    records = [{"question": f"Which drug {i}?", "options": MEDQA_OPTIONS, "answer_idx": "B", "answer": answer,
                "meta_info": "step1"} for i, answer in enumerate(answers)]
    path = _jsonl(tmp_path_factory.mktemp("medqa") / "test.jsonl", records)
    keep = [f"Which drug {i}?" for i, answer in enumerate(answers) if ANSWERS[answer] is not False]
    results = [load_source("medqa", path)] if keep else []
    results += [load_eval_input(EvalInput("medqa_test", str(path)), scoring=False)["medqa_test"]]
    for result in results:
        assert len(result.rows) + len(result.dropped) == len(answers)
        assert sorted(result.rows["question"]) == sorted(keep)
        assert set(result.rows["answer_text"]) <= {"Heparin sodium"}
        assert set(result.dropped["reason"]) <= {"answer_mismatch"}
