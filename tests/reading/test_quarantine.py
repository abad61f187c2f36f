"""Every record of a file users bring is accounted for: read as a row, or dropped with a reason,
or (a whole-file fault) one clear error; and a row read is read in its file's meaning.

The files here are the native shapes of the four sources written the ways they reach users (as
JSONL, JSON, CSV or parquet, by hand or by pandas) with the faults real files have."""

import csv
import io
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


# MedMCQA records as users bring them: each with one fault, in any of the formats the loader
# reads. `keep` says whether the row must be read (and then as `answer`) or dropped with a reason.
QUESTION = "Which drug inhibits dihydrofolate reductase?"
OPTIONS = ["Amlodipine", "Lithium", "Methotrexate", "Propranolol"]
FAULTS = {  # name: (changes to the record, kept)
    "none": ({}, True),
    "non_ascii": ({"question": "¿Qué fármaco inhibe la DHFR (α/β) — 葉酸?", "opa": "Ämlodipin"}, True),
    "control": ({"question": "Which\tdrug\u2028inhibits\x85DHFR\x07?"}, True),
    "padded": ({"question": f"  {QUESTION} \n", "opb": " Lithium\t"}, True),
    "cop_text": ({"cop": "2"}, True),
    "cop_float": ({"cop": 2.0}, True),
    "cop_float_text": ({"cop": "2.0"}, True),
    "long": ({"question": "Which drug " + "really " * 20_000 + "works?"}, True),
    "null_question": ({"question": None}, False),
    "empty_question": ({"question": ""}, False),
    "blank_question": ({"question": " \t "}, False),
    "null_option": ({"opd": None}, False),
    "empty_option": ({"opc": ""}, False),
    "null_cop": ({"cop": None}, False),
    "cop_out_of_range": ({"cop": 7}, False),
    "cop_letter": ({"cop": "C"}, False),
    "cop_fraction": ({"cop": 2.5}, False),
    "duplicate_options": ({"opd": "methotrexate"}, False),
}


def _medmcqa(i: int, fault: str) -> dict:
    record = {"id": f"id-{i}", "question": f"{QUESTION} ({i})", "opa": OPTIONS[0], "opb": OPTIONS[1],
              "opc": OPTIONS[2], "opd": OPTIONS[3], "cop": 2, "subject_name": "Pharmacology"}
    record.update(FAULTS[fault][0])
    if record["question"] and record["question"].strip() and fault != "none":
        record["question"] = f"{record['question']} ({i})"
    return record


def _write(path, records, *, bom: bool, crlf: bool, blank_end: bool):
    """`records` in `path`'s format; text formats with a BOM, CRLF line ends or a blank last line."""
    end = "\r\n" if crlf else "\n"
    if path.suffix == ".parquet":  # one type per column: what pandas would write, text
        pq.write_table(pa.Table.from_pylist([{k: None if v is None else str(v) for k, v in r.items()}
                                             for r in records]), path)
        return
    if path.suffix == ".jsonl":
        body = "".join(json.dumps(r, ensure_ascii=False) + end for r in records)
    elif path.suffix == ".json":
        body = json.dumps(records, ensure_ascii=False, indent=1).replace("\n", end) + end
    else:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(records[0]), lineterminator=end)
        writer.writeheader()
        writer.writerows([{k: "" if v is None else v for k, v in r.items()} for r in records])
        body = out.getvalue()
    path.write_bytes(("\ufeff" if bom else "").encode() + (body + (end if blank_end else "")).encode("utf-8"))


@FAST
@given(faults=st.lists(st.sampled_from(sorted(FAULTS)), min_size=1, max_size=8),
       twice=st.lists(st.integers(0, 7), max_size=2), suffix=st.sampled_from([".jsonl", ".json", ".csv", ".parquet"]),
       bom=st.booleans(), crlf=st.booleans(), blank_end=st.booleans())
def test_every_medmcqa_record_is_read_or_dropped_with_its_reason(faults, twice, suffix, bom, crlf, blank_end,
                                                                 tmp_path_factory):
    """Rows in = rows kept + rows dropped, whatever the file's format, encoding marks and faults;
    each dropped row names its reason and its place in the file, and each kept row means what its
    record says (question, options and answer, spaces aside). The same record twice is kept twice
    (under two ids): removing copies is the dedup stage's job, with its own reason."""
    records = [_medmcqa(i, fault) for i, fault in enumerate(faults)]
    records += [dict(records[i]) for i in twice if i < len(records)]
    if not any(FAULTS[f][1] for f in faults):
        records.append(_medmcqa(len(faults), "none"))  # a file of bad rows only is one error, tested apart
    path = tmp_path_factory.mktemp("medmcqa") / f"train{suffix}"
    _write(path, records, bom=bom, crlf=crlf, blank_end=blank_end)

    result = load_source("medmcqa", path, cop_base=0)

    assert len(result.rows) + len(result.dropped) == len(records)
    assert all(reason and detail.startswith(path.name) for reason, detail
               in zip(result.dropped["reason"], result.dropped["detail"], strict=True))
    by_question = {}
    for record in records:
        good = isinstance(record["question"], str) and record["question"].strip() and record["id"] is not None
        by_question.setdefault(record["question"].strip() if good else None, []).append(record)
    kept = [r for r in records if FAULTS[_fault_of(r)][1]]
    assert sorted(result.rows["question"]) == sorted(r["question"].strip() for r in kept)
    for row in result.rows:
        record = by_question[row["question"]][0]
        options = [record[k].strip() for k in ("opa", "opb", "opc", "opd")]
        assert sorted(row["options"]) == sorted(options)
        assert row["answer_text"] == options[2]
        assert json.loads(row["metadata"])["id"] == record["id"]


def _fault_of(record: dict) -> str:
    i = int(record["id"].split("-")[1])
    return next(f for f in FAULTS if _medmcqa(i, f) == record)


def test_a_build_accounts_for_every_row_of_faulty_files_at_every_stage(tmp_path):
    """The load step and the non-LLM stages of a build, on files with faults of every kind beside
    the embedded sample's other sources: per stage and source, rows in = rows kept + rows dropped
    (the load stage's rows in being the records of the files), every row id is kept or dropped
    with a reason, never both and never neither, and the funnel's raw count is the records'."""
    import m1data
    from m1data.running.funnel import funnel_markdown
    from m1data.running.pipeline import load_stage_dropped, load_stage_rows, read_manifests, stage_dirname
    from m1data.stages.loading import sample_sources

    faults = sorted(FAULTS)
    medmcqa = [_medmcqa(i, fault) for i, fault in enumerate(faults)] + [_medmcqa(0, "none")]  # one twice
    _write(tmp_path / "medmcqa.jsonl", medmcqa, bom=True, crlf=True, blank_end=True)
    mine = [{**_medmcqa(i, fault), "id": f"m{i}", "question": f"Mine: {_medmcqa(i, fault)['question']}"}
            for i, fault in enumerate(faults) if _medmcqa(i, fault)["question"] and FAULTS[fault][1]]
    mine += [{**mine[0], "opa": None}]
    _write(tmp_path / "mine.csv", mine, bom=True, crlf=False, blank_end=True)
    sources = {name: {"path": spec.path} for name, spec in sample_sources().items()}
    sources["medmcqa"] = {"path": str(tmp_path / "medmcqa.jsonl"), "cop_base": 0}
    sources["mine"] = {"path": str(tmp_path / "mine.csv"), "licence": "CC0-1.0",
                       "mapping": {"options": ["opa", "opb", "opc", "opd"], "answer": "cop", "answer_kind": "index0"}}
    run = tmp_path / "run"
    m1data.build("m23k", run, config={"load": {"sources": sources}}, until="decontaminate")

    manifests = read_manifests(run)
    assert [m["stage"] for m in manifests] == ["load", "dedup", "decontaminate"]
    previous: set[str] | None = None
    for m in manifests:
        stage_dir = run / stage_dirname(m["index"], m["stage"])
        kept = set(load_stage_rows(stage_dir, columns=["id"])["id"])
        dropped = load_stage_dropped(stage_dir)
        lost = [] if dropped is None else dropped["id"]
        assert all(dropped["reason"]) if dropped is not None else True
        assert len(lost) == len(set(lost)) and not kept & set(lost)
        if previous is not None:
            assert kept | set(lost) == previous
        for source in {*m["counts_in"], *m["counts_out"]}:
            dropped_here = sum(per.get(source, 0) for per in m["drops"].values())
            if m["stage"] == "load":
                records = {"medmcqa": len(medmcqa), "mine": len(mine)}
                assert m["counts_out"].get(source, 0) + dropped_here == records.get(source, m["counts_out"][source]
                                                                                        + dropped_here)
            else:
                assert m["counts_in"].get(source, 0) == m["counts_out"].get(source, 0) + dropped_here
        previous = kept
    load = manifests[0]
    assert load["counts_out"]["medmcqa"] == sum(FAULTS[f][1] for f in faults) + 1
    assert load["counts_out"]["mine"] == len(mine) - 1
    raw = next(line for line in funnel_markdown(run).splitlines() if line.startswith("| raw rows read"))
    assert f"| {len(medmcqa)} |" in raw and f"| {len(mine)} |" in raw


@FAST
@given(blank=st.sampled_from(["", " ", "\t", "   \t "]), where=st.sampled_from(["middle", "end"]),
       crlf=st.booleans())
def test_a_csv_line_of_spaces_is_a_blank_line(blank, where, crlf, tmp_path_factory):
    """A line of nothing but spaces is blank, in the middle of a file or at its end: it was a row
    of one field, and "expected 8 fields, found 1" refused the whole file."""
    end = "\r\n" if crlf else "\n"
    lines = [",".join(MEDMCQA_HEADER)] + [f"id{i},Q{i}?,a,b,c,d,{i % 4},x" for i in range(3)]
    lines.insert(2 if where == "middle" else len(lines), blank)
    path = tmp_path_factory.mktemp("blank") / "train.csv"
    path.write_text(end.join(lines) + end, encoding="utf-8", newline="")
    result = load_source("medmcqa", path, cop_base=0)
    assert result.rows["question"] == ["Q0?", "Q1?", "Q2?"] and len(result.dropped) == 0


@pytest.mark.parametrize("fault", ["null_question", "null_option", "empty_option", "null_cop", "cop_letter"])
def test_a_dropped_medmcqa_row_keeps_its_id_and_its_question(fault, tmp_path):
    """A MedMCQA record whose option was missing was dropped under its line ("medmcqa:train.jsonl:2"),
    where every other fault keeps the record's id: `m1data lineage RUN medmcqa:<id>` did not find
    it. And as an eval question (medmcqa_validation) it was no decontamination target."""
    records = [{**_medmcqa(0, "none"), "cop": 0}, {**_medmcqa(1, fault), "id": "qx"}]  # a 0: the Hub base
    path = _jsonl(tmp_path / "validation.jsonl", records)
    result = load_source("medmcqa", path, cop_base=0)
    assert result.dropped["id"] == ["medmcqa:qx"] and result.dropped["reason"][0]
    targets = load_eval_input(EvalInput("medmcqa_validation", str(path)), scoring=False)["medmcqa_validation"]
    questions = set(targets.targets()["question"])
    assert (records[1]["question"] in questions) == (fault != "null_question")
