import json

import pytest

from m1data.evalsets import EVAL_SETS, ColumnMapping, load_eval, load_eval_any, load_eval_file
from m1data.readers import MalformedFile

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
    assert len(result.rows) == expected and len(result.quarantine) == 0
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
            native_rows = len(path.read_text().splitlines()) if path.suffix == ".jsonl" else None
            assert len(result.rows) > 0, path
            if native_rows is not None:
                assert len(result.rows) + len(result.quarantine) == native_rows, path


def test_eval_answers_match_native(shared_data):
    path = shared_data / "eval/medagentsbench/medxpertqa-r/test.jsonl"
    native = [json.loads(line) for line in path.read_text().splitlines()]
    rows = load_eval_file(path)["medxpertqa-r/test"].rows
    for raw, row in zip(native, rows):
        assert row["answer_letter"] == raw["answer_idx"] and row["answer_text"] == raw["answer"].strip()


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


def test_column_mapping_csv(tmp_path):
    path = tmp_path / "custom.csv"
    path.write_text("qq,o1,o2,o3,key\nWhat?,red,green,blue,2\n")
    mapping = ColumnMapping(question="qq", options=("o1", "o2", "o3"), answer="key")
    rows = load_eval_file(path, mapping, name="custom")["custom"].rows
    assert rows[0]["answer_text"] == "blue" and rows[0]["question"] == "What?"


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


def test_malformed_eval_rows_are_quarantined_with_file_and_line(tmp_path):
    good = {"question": "Which nerve?", "options": {"A": "a", "B": "b"}, "answer_idx": "A"}
    rows = [good, dict(good, question={"text": "Q2?"}), dict(good, question="Q3?", options={"A": "a", "B": 2}),
            dict(good, question="Q4?")]
    path = tmp_path / "test.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    result = load_eval("medqa_test", path)
    assert sorted(result.rows["question"]) == ["Q4?", "Which nerve?"]
    assert result.reasons() == {"not_text": 2}
    assert [d.split(": ")[0] for d in result.quarantine["detail"]] == ["test.jsonl:2", "test.jsonl:3"]


def test_m1_eval_file_item_that_is_not_an_object_is_quarantined(tmp_path):
    data = {"setA": [{"question": "Q1?", "options": {"A": "x", "B": "y"}, "answer_idx": "B"}, "Q2? x y"]}
    path = tmp_path / "eval.json"
    path.write_text(json.dumps(data))
    result = load_eval_file(path)["setA"]
    assert len(result.rows) == 1 and result.reasons() == {"not_an_object": 1}
    assert result.quarantine[0]["detail"].startswith("eval.json setA item 2: ")
