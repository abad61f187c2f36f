"""File-level faults of the raw readers: each is one error naming the file and the line."""

import json

import pytest

from m1data.reading.evalsets import load_eval
from m1data.reading.readers import MalformedFile, read_csv, read_json, read_jsonl
from m1data.reading.sources import load_source

MEDMCQA_ROW = {"id": "u1", "question": "Which nerve?", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": 0}


def test_non_utf8_jsonl_names_file_and_line(tmp_path):
    path = tmp_path / "train.jsonl"
    good = json.dumps(MEDMCQA_ROW).encode()
    path.write_bytes(good + b"\n" + good.replace(b"Which", b"Wh\xefch\xff") + b"\n")
    with pytest.raises(MalformedFile) as err:
        list(read_jsonl(path))
    assert err.value.line == 2 and str(path) in str(err.value) and "UTF-8" in str(err.value)


def test_non_utf8_csv_names_file_and_line(tmp_path):
    path = tmp_path / "anatomy_test.csv"
    path.write_bytes(b"Q1?,a,b,c,d,A\nQ2?,a,b,c,d,B\nQ\xe93?,a,b,c,d,C\n")
    with pytest.raises(MalformedFile) as err:
        load_eval("mmlu_anatomy", path)
    assert err.value.line == 3 and str(path) in str(err.value)


def test_non_utf8_json_names_file_and_line(tmp_path):
    path = tmp_path / "ori_pqal.json"
    path.write_bytes(b'{\n "1": {"QUESTION": "ok"},\n "2": {"QUESTION": "caf\xe9"}\n}\n')
    with pytest.raises(MalformedFile) as err:
        read_json(path)
    assert err.value.line == 3 and str(path) in str(err.value)


def test_csv_byte_order_mark_is_not_part_of_the_first_question(tmp_path):
    path = tmp_path / "anatomy_test.csv"
    path.write_bytes("\ufeffQ1?,a,b,c,d,A\nQ2?,a,b,c,d,B\n".encode())
    rows = load_eval("mmlu_anatomy", path).rows
    assert rows["question"] == ["Q1?", "Q2?"]


def test_csv_byte_order_mark_does_not_hide_the_first_column(tmp_path):
    path = tmp_path / "medbullets_op4.csv"
    path.write_bytes("\ufeffquestion,opa,opb,opc,opd,answer_idx\nWhich nerve?,a,b,c,d,B\n".encode())
    (_, row), = read_csv(path)
    assert next(iter(row)) == "question"
    assert load_eval("medbullets_op4", path).rows[0]["question"] == "Which nerve?"


def test_jsonl_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_bytes("\ufeff".encode() + json.dumps(MEDMCQA_ROW).encode() + b"\n")
    assert load_source("medmcqa", path).rows[0]["question"] == "Which nerve?"


def test_truncated_line_reports_its_own_column(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps(MEDMCQA_ROW) + '\n{"id": "u1"\n')
    with pytest.raises(MalformedFile) as err:
        list(read_jsonl(path))
    assert err.value.line == 2
    assert "column 12" in str(err.value)  # just past the 11 characters of the line, not "column 1"


def test_directory_as_path_is_a_clear_error(tmp_path):
    with pytest.raises(MalformedFile, match="is a directory"):
        load_source("medqa", tmp_path)
    with pytest.raises(MalformedFile, match="is a directory"):
        load_eval("medqa_test", tmp_path)


def test_a_hub_folder_is_read_from_its_config(tmp_path):
    """Issue 24: `m1data decontaminate RUN/hub ...` finds the rows under data/<config>/."""
    import datasets

    from m1data.errors import UserError
    from m1data.reading.readers import read_rows

    hub = tmp_path / "hub"
    (hub / "data" / "m1k").mkdir(parents=True)
    (hub / "README.md").write_text("---\n---\n")
    datasets.Dataset.from_dict({"id": ["a", "b"]}).to_parquet(str(hub / "data/m1k/train-00000-of-00001.parquet"))
    assert read_rows(hub)["id"] == ["a", "b"]
    (hub / "data" / "m23k").mkdir()
    with pytest.raises(UserError, match="2 configs; give one: .*data/m1k"):
        read_rows(hub)
