"""Every record of an eval or source file is accounted for, whichever door reads it: a row, a
dropped record with its reason, or a record a split or scope filter left out, counted
(`LoadResult.out_of_scope`, printed by the load commands). And the same questions read from
different layouts of one set are the same rows."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from m1data.cli import app
from m1data.reading.evalsets import EvalInput, load_eval, load_eval_input
from m1data.reading.readers import MalformedFile
from m1data.reading.sources import load_source, pubmedqa_test_pmids

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
TEST_PMIDS = sorted(pubmedqa_test_pmids())[:10]
POOL_PMIDS = [str(90000001 + i) for i in range(10)]


def _jsonl(path, records):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def _accounted(result) -> int:
    return len(result.rows) + len(result.dropped) + sum(result.out_of_scope.values())


@FAST
@given(kinds=st.lists(st.sampled_from(["test", "pool", "bad"]), max_size=8), hub=st.booleans(),
       split=st.sampled_from(["train", "test", "all"]))
def test_every_pubmedqa_record_is_a_row_dropped_or_left_out_of_the_split(kinds, hub, split, tmp_path_factory):
    """A record of the other split is left out and counted; a record whose PMID cannot be read (not
    an object in the native file, no pubid in the Hub layout) is dropped with its reason in every
    split: with split test it vanished, counted nowhere."""
    kinds = ["test", "pool", *kinds]
    pmids = [TEST_PMIDS[i] if kind == "test" else POOL_PMIDS[i] for i, kind in enumerate(kinds)]
    folder = tmp_path_factory.mktemp("pqa")
    if hub:
        records = [{"pubid": None if kind == "bad" else pmid, "question": f"Does {pmid} work?",
                    "context": {"contexts": ["c"]}, "final_decision": "yes"} for pmid, kind in zip(pmids, kinds)]
        path = _jsonl(folder / "pqa.jsonl", records)
    else:
        records = {pmid: "not a question" if kind == "bad" else
                   {"QUESTION": f"Does {pmid} work?", "CONTEXTS": ["c"], "final_decision": "yes"}
                   for pmid, kind in zip(pmids, kinds)}
        path = folder / "ori_pqal.json"
        path.write_text(json.dumps(records), encoding="utf-8")
    wanted = {"test": ["test"], "train": ["pool"], "all": ["test", "pool"]}[split]
    results = [load_source("pubmedqa", path, split=split)]
    if split == "test":
        results.append(load_eval("pubmedqa_test", path))
    for result in results:
        assert _accounted(result) == len(kinds)
        assert sorted(result.rows["id"]) == sorted(f"{result.rows['source'][0]}:{p}"
                                                   for p, k in zip(pmids, kinds) if k in wanted)
        assert len(result.dropped) == kinds.count("bad")
        assert set(result.dropped["reason"]) <= {"not_an_object", "missing_field"}
        assert sum(result.out_of_scope.values()) == sum(k not in wanted + ["bad"] for k in kinds)


SUBJECTS = ["anatomy", "virology", None, 5]


@FAST
@given(subjects=st.lists(st.sampled_from(range(len(SUBJECTS))), max_size=8))
def test_every_record_of_a_file_of_several_mmlu_subjects_is_accounted_for(subjects, tmp_path_factory):
    """A file of several subjects (MedAgentsBench's mmlu) read as one: the other subjects' records
    are left out and counted, and a record whose subject is missing or not text is dropped with
    its reason (it was a question of every subject)."""
    subjects = [SUBJECTS[0], SUBJECTS[1], *(SUBJECTS[i] for i in subjects)]
    records = [{"question": f"Question {i}?", "options": ["a", "b", "c", "d"], "answer": "B",
                **({} if subject is None else {"subject": subject})} for i, subject in enumerate(subjects)]
    path = _jsonl(tmp_path_factory.mktemp("mmlu") / "test.jsonl", records)
    result = load_eval("mmlu_anatomy", path)
    assert _accounted(result) == len(records)
    assert sorted(result.rows["question"]) == sorted(r["question"] for r in records if r.get("subject") == "anatomy")
    assert len(result.dropped) == sum(s is None or s == 5 for s in subjects)
    assert sum(result.out_of_scope.values()) == subjects.count("virology")


@FAST
@given(categories=st.lists(st.sampled_from(["health", "law", None, "absent"]), max_size=8))
def test_every_record_of_mmlu_pro_is_health_left_out_or_dropped(categories, tmp_path_factory):
    """MMLU-Pro's other categories are left out and counted; a record without a category (or a
    null one) cannot be told apart and is dropped with its reason."""
    categories = ["health", "law", *categories]
    records = [{"question_id": i, "question": f"Question {i}?", "options": ["a", "b", "c", "d"], "answer_index": 1,
                **({} if category == "absent" else {"category": category})} for i, category in enumerate(categories)]
    path = _jsonl(tmp_path_factory.mktemp("pro") / "test.jsonl", records)
    result = load_eval("mmlu_pro_health", path)
    assert _accounted(result) == len(records)
    assert len(result.rows) == categories.count("health")
    assert result.dropped["reason"] == ["missing_field"] * sum(c in (None, "absent") for c in categories)
    assert result.out_of_scope == {"an MMLU-Pro category other than health": categories.count("law")}


def test_the_load_commands_print_what_a_split_left_out(tmp_path):
    records = {pmid: {"QUESTION": f"Does {pmid} work?", "CONTEXTS": ["c"], "final_decision": "no"}
               for pmid in TEST_PMIDS[:3] + POOL_PMIDS[:2]}
    path = tmp_path / "ori_pqal.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    runner = CliRunner()
    shown = runner.invoke(app, ["load", "pubmedqa", "--path", str(path), "--out", str(tmp_path / "train.jsonl")])
    assert shown.exit_code == 0 and "pubmedqa: 3 left out (PMID in PubMedQA's official test split)" in shown.output
    shown = runner.invoke(app, ["load-eval", "pubmedqa_test", "--path", str(path), "--out", str(tmp_path / "t.jsonl")])
    assert shown.exit_code == 0 and "pubmedqa_test: 2 left out (PMID not in PubMedQA's official test split)" in shown.output


def test_medagentsbench_pubmedqa_is_the_native_test_split(shared_data):
    """MedAgentsBench's PubMedQA (`realidx` the PMID, the contexts then the question in `question`,
    options {A: yes, B: no, C: maybe}) read as pubmedqa_test is the native PQA-L file's test split:
    the same ids, answers, questions, contexts and prompts, and decontamination against either
    file removes the same training rows (the test questions among them, and only those). It was
    refused: 'no pubmedqa_test records in it'."""
    from m1data.stages.dedup import decontaminate

    native = shared_data / "raw" / "pubmedqa" / "ori_pqal.json"
    medagents = shared_data / "eval" / "medagentsbench" / "pubmedqa" / "test.jsonl"
    read = {name: load_eval_input(EvalInput.parse(f"pubmedqa_test={path}"))["pubmedqa_test"].rows.sort("id")
            for name, path in (("native", native), ("medagents", medagents))}
    assert len(read["native"]) == len(read["medagents"]) == 500
    for column in ("id", "answer_text", "question", "context", "options", "answer_letter", "prompt"):
        assert read["native"][column] == read["medagents"][column], column
    assert set(read["native"]["id"]) == {f"pubmedqa_test:{pmid}" for pmid in pubmedqa_test_pmids()}

    pool = load_source("pubmedqa", native, split="all").rows.sort("id")
    test = [i for i, row_id in enumerate(pool["id"]) if row_id.split(":")[1] in pubmedqa_test_pmids()]
    train = [i for i in range(len(pool)) if i not in set(test)]
    pool = pool.select(test[:12] + train[:12])
    removed = {name: sorted(decontaminate(pool, [EvalInput("pubmedqa_test", str(path))])[1]["id"])
               for name, path in (("native", native), ("medagents", medagents))}
    assert removed["native"] == removed["medagents"] == sorted(pool.select(range(12))["id"])


# (folder, records, records whose answer is also another option's text: not scored)
MEDAGENTSBENCH = {"pubmedqa_test": ("pubmedqa", 500, 0), "medqa_test": ("medqa", 1273, 0),
                  "medmcqa_validation": ("medmcqa", 2816, 1), "mmlu_pro_health": ("mmlu-pro", 818, 0),
                  "medbullets_op5": ("medbullets", 308, 0), "mmlu_medical": ("mmlu", 1089, 0)}


@pytest.mark.parametrize("name", sorted(MEDAGENTSBENCH))
def test_medagentsbench_files_load_under_their_known_names(shared_data, name):
    """Each MedAgentsBench set given as the known set it copies reads every record as a row, but
    for MedMCQA's one whose four options are the same text (any reply would grade correct): it is
    not scored, and is still decontaminated against."""
    folder, records, ambiguous = MEDAGENTSBENCH[name]
    loaded = load_eval_input(EvalInput(name, str(shared_data / "eval" / "medagentsbench" / folder / "test.jsonl")))
    assert sum(len(result.rows) for result in loaded.values()) == records - ambiguous
    for result in loaded.values():  # each MMLU subject leaves the other five out, counted
        assert result.dropped["reason"] == ["ambiguous_answer"] * ambiguous and _accounted(result) == records
        assert len(result.targets()) == len(result.rows) + ambiguous


HEADQA_QUESTION = {"qid": 1, "qtext": "Which one?", "ra": "1", "image": "",
                   "answers": [{"aid": 1, "atext": "this"}, {"aid": 2, "atext": "that"}]}


@pytest.mark.parametrize("exam", [{"name": "B"}, {"name": "B", "questions": [HEADQA_QUESTION]}, {"data": None},
                                  {"data": {"1": HEADQA_QUESTION}}, ["not an exam"]])
def test_a_headqa_exam_without_a_data_list_is_an_error_naming_it(exam, tmp_path):
    """An exam with no `data` key (its questions under another name, say) was read as an exam of
    no questions, without a word; like a `data` that is not a list, it is an error naming the exam."""
    path = tmp_path / "train_HEAD_EN.json"
    path.write_text(json.dumps({"exams": {"a": {"name": "A", "data": [HEADQA_QUESTION]}, "b": exam}}), encoding="utf-8")
    with pytest.raises(MalformedFile, match="exam 'b' is not an object with a 'data' list"):
        load_source("headqa", path)


OPTION_PIECES = ["Warfarin", "y's", 'say "hi"', "a, b", "naïve", "back\\slash", "[1]", "it's \"x\"", "{A}", "tab\there"]


@FAST
@given(questions=st.lists(st.tuples(st.lists(st.sampled_from(OPTION_PIECES), min_size=2, max_size=5, unique=True),
                                    st.integers(0, 4)), min_size=1, max_size=4))
def test_a_csv_of_pandas_list_cells_is_read_at_every_door(questions, tmp_path_factory):
    """`df.to_csv` writes a list column as Python's list text (`['x', "y's"]`): every row of such a
    file was dropped as bad_options ("options cell is not JSON"). The eval reader, a mapped
    source and the MedQA loader read each cell as the list it was."""
    import pandas as pd

    records = [{"question": f"Question {i}?", "options": options, "answer": options[k % len(options)],
                "answer_idx": "ABCDE"[k % len(options)]} for i, (options, k) in enumerate(questions)]
    path = tmp_path_factory.mktemp("pandas") / "test.csv"
    pd.DataFrame(records).to_csv(path, index=False)
    results = [*load_eval_input(EvalInput(str(path))).values(), load_source("mine", path, mapping={}),
               load_source("medqa", path)]
    for result in results:
        assert len(result.dropped) == 0
        by_question = {row["question"]: row for row in result.rows}
        for record in records:
            row = by_question[record["question"]]
            assert sorted(row["options"]) == sorted(record["options"]) and row["answer_text"] == record["answer"]


def test_numpy_printed_cells_are_dropped_not_read_as_one_option(tmp_path):
    """numpy prints an array `['x' 'y']`, which Python reads as the one text "xy": such a row is
    dropped with its reason, and a list of anything but quoted texts is no list of options."""
    path = tmp_path / "mine.csv"
    path.write_text("question,options,answer\nQ1?,\"['x' 'y' 'z']\",x\nQ2?,\"['x', 1]\",x\nQ3?,\"['x', 'y']\",y\n",
                    encoding="utf-8")
    result = load_source("mine", path, mapping={})
    assert result.rows["question"] == ["Q3?"] and result.dropped["reason"] == ["bad_options", "bad_options"]
    assert "side by side" in result.dropped["detail"][0]


@FAST
@given(filled=st.lists(st.booleans(), min_size=2, max_size=6), empty=st.sampled_from(["", None]),
       as_columns=st.booleans())
def test_an_empty_trailing_option_is_absent_in_a_dict_as_in_columns(filled, empty, as_columns, tmp_path_factory):
    """An option dict's trailing `"E": ""` is an absent option, as an empty trailing option column
    is (the row was dropped as empty_option); an empty option before the last filled one still
    drops its row, in both layouts and through the eval reader and the MedQA loader alike."""
    last = max((i for i, full in enumerate(filled) if full), default=-1)
    if last < 1:
        return  # fewer than two options: no question, whatever the empties
    options = {letter: f"option {letter}" if full else empty for letter, full in zip("ABCDEF", filled)}
    record = {"question": "Which one?", "answer_idx": "ABCDEF"[last]}
    if as_columns:
        record |= {f"op{letter.lower()}": value for letter, value in options.items()}
    else:
        record["options"] = options
    good = {"question": "And this?", "answer_idx": "A", "options": {"A": "w", "B": "x", "C": "y", "D": "z"}}
    path = _jsonl(tmp_path_factory.mktemp("empty") / "test.jsonl", [record, good])
    results = [*load_eval_input(EvalInput(str(path))).values()]
    results += [] if as_columns else [load_source("medqa", path)]
    for result in results:
        assert _accounted(result) == 2
        if all(filled[: last + 1]):
            assert len(result.dropped) == 0 and sorted(len(o) for o in result.rows["options"]) == sorted([last + 1, 4])
        else:
            assert result.rows["question"] == ["And this?"]
            assert result.dropped["reason"][0] in ("empty_option", "not_text")


DRUGS = {"A": "Warfarin", "B": "Heparin sodium", "C": "Aspirin", "D": "Clopidogrel"}
# `answer` beside answer_idx "B": what it says (True: option B, or nothing), and the reason otherwise.
BESIDE_B = {"Heparin sodium": True, "heparin SODIUM": True, "(b)": True, "": True, None: True,
            "Aspirin": "answer_mismatch", "C": "answer_mismatch", "Insulin": "answer_mismatch",
            "2": "answer_mismatch", 2: "not_text", 1.0: "not_text", False: "not_text",
            "B. Heparin sodium": True, "(b) heparin  sodium": True, "B: Aspirin": "answer_mismatch",
            "C. Heparin sodium": "answer_mismatch"}


@FAST
@given(answers=st.lists(st.sampled_from(list(BESIDE_B)), min_size=1, max_size=8))
def test_an_answer_naming_no_option_is_dropped_by_every_door(answers, tmp_path_factory):
    """An `answer` beside the key that names no option ("Insulin"), or is not text, contradicts the
    key as another option's text does: the MedQA loader dropped it, the eval reader scored the row
    by its key, silently. Every door now drops it with the same reason; as an eval question it is
    still a decontamination target."""
    records = [{"question": f"Which drug {i}?", "options": DRUGS, "answer_idx": "B", "answer": answer,
                "meta_info": "step1"} for i, answer in enumerate(answers)]
    records.append({**records[0], "question": "Which drug?", "answer": "Heparin sodium"})
    path = _jsonl(tmp_path_factory.mktemp("beside") / "test.jsonl", records)
    eval_set = load_eval_input(EvalInput("medqa_test", str(path)), scoring=False)["medqa_test"]
    for result in (load_source("medqa", path), eval_set, load_source("mine", path, mapping={})):
        kept = {r["question"] for r in records if BESIDE_B[r["answer"]] is True}
        assert set(result.rows["question"]) == kept and set(result.rows["answer_text"]) == {"Heparin sodium"}
        reasons = sorted(BESIDE_B[r["answer"]] for r in records if BESIDE_B[r["answer"]] is not True)
        assert sorted(result.dropped["reason"]) == reasons
    assert len(eval_set.targets()) == len(records)


def test_the_funnel_shows_what_a_build_left_out_of_scope(tmp_path):
    """A build's load stage counts the records its scope filter left out (`out_of_scope` in its
    stats); the funnel shows them beside the raw rows read, per source, so every record of the
    files is in it."""
    import m1data
    from m1data.running.funnel import funnel_markdown
    from m1data.stages.loading import sample_sources

    records = {pmid: {"QUESTION": f"Does {pmid} work?", "CONTEXTS": ["c"], "final_decision": "no"}
               for pmid in TEST_PMIDS[:3] + POOL_PMIDS[:2]}
    path = tmp_path / "ori_pqal.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    sources = {name: {"path": spec.path} for name, spec in sample_sources().items()}
    sources["pubmedqa"] = {"path": str(path)}
    m1data.build("m23k", tmp_path / "run", config={"load": {"sources": sources}}, until="load")
    funnel = funnel_markdown(tmp_path / "run").splitlines()
    columns = [c.strip() for c in funnel[2].strip("|").split("|")]
    left = next(line for line in funnel if "left out of scope" in line)
    cells = [c.strip() for c in left.strip("|").split("|")]
    assert cells[0] == "load: left out of scope (PMID in PubMedQA's official test split)"
    assert cells[columns.index("pubmedqa")] == "3" and cells[-1] == "3"
    raw = next(line for line in funnel if line.startswith("| raw rows read"))
    assert [c.strip() for c in raw.strip("|").split("|")][columns.index("pubmedqa")] == "2"
    # read top down: the records of the files, those left out, the rows read (an audit read the
    # other order as "3 left out of 2 read")
    records = next(line for line in funnel if line.startswith("| records in the files"))
    assert [c.strip() for c in records.strip("|").split("|")][columns.index("pubmedqa")] == "5"
    assert funnel.index(records) < funnel.index(left) < funnel.index(raw)


@pytest.mark.parametrize("rel", ["raw/medqa/US_test_5_options.jsonl", "eval/medagentsbench/medqa/test.jsonl"])
def test_a_csv_of_pandas_dict_cells_reads_as_its_jsonl(shared_data, rel, tmp_path):
    """`df.to_csv` writes a dict column as Python's dict text (`{'A': 'x', 'B': "y's"}`), as it
    writes MedQA's `options` read with `pd.read_json`: every row was dropped as bad_options. Real
    rows written so read as the same questions, options and answers as their JSONL, at each door."""
    import pandas as pd

    lines = (shared_data / rel).read_text(encoding="utf-8").splitlines()[:40]
    jsonl = tmp_path / "test.jsonl"
    jsonl.write_text("\n".join(lines) + "\n", encoding="utf-8")
    frame = pd.read_json(jsonl, lines=True)
    assert isinstance(frame["options"][0], dict)  # a dict column, so to_csv writes Python's text of it
    csv = tmp_path / "csv" / "test.csv"
    csv.parent.mkdir()
    frame.to_csv(csv, index=False)
    assert csv.read_text(encoding="utf-8").count("{'A': ") == len(lines)

    def read(path):
        return [*load_eval_input(EvalInput(str(path))).values(), load_source("medqa", path),
                load_source("mine", path, mapping={})]

    def questions(result):  # options are shuffled per row id, and a row's id names its line
        return {row["question"]: (sorted(row["options"]), row["answer_text"]) for row in result.rows}

    for from_csv, from_jsonl in zip(read(csv), read(jsonl)):
        assert len(from_csv.dropped) == 0 and len(from_csv.rows) == len(lines)
        assert questions(from_csv) == questions(from_jsonl)


@pytest.mark.parametrize("cell, says", [
    ("{'A': 'x', 'A': 'y'}", "names 'A' twice"),
    ("{'A': 'x', 'B' 'y': 'z'}", "side by side"),
    ("{'A': 'x', 'B': 1}", "neither JSON, a list or dict"),
    ("{'A': 'x', 'B': __import__('os').getcwd()}", "neither JSON, a list or dict"),
    ("{'A': 'x', **extra}", "neither JSON, a list or dict"),
])
def test_a_python_dict_cell_is_read_only_as_literal_texts(cell, says, tmp_path):
    """Only string literals are read from a Python dict cell (nothing is evaluated); a key named
    twice is refused as in JSON, where Python would keep the last and drop an option unsaid."""
    path = tmp_path / "mine.csv"
    path.write_text(f'question,options,answer\nQ1?,"{cell}",x\nQ2?,"{{\'A\': \'x\', \'B\': \'y\'}}",y\n', encoding="utf-8")
    result = load_source("mine", path, mapping={})
    assert result.rows["question"] == ["Q2?"] and result.rows["options"] == [["x", "y"]]
    assert result.dropped["reason"] == ["bad_options"] and says in result.dropped["detail"][0]
