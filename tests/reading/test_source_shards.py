"""A source given as a folder of shards (a Hub snapshot's data/train-00000-of-00004.parquet ...)
reads as the one file the shards were cut from, at every door; a folder of several splits is
narrowed to one or refused, never read together."""

import json
import warnings

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from m1data.cli import app
from m1data.errors import UserError
from m1data.reading.native import CopBaseWarning
from m1data.reading.readers import MalformedFile, read_rows
from m1data.reading.sources import load_source
from m1data.stages.loading import LoadConfig, LoadSources

MEDQA_MAPPING = {"question": "question", "options": "options", "answer": "answer_idx"}


def _shards(folder, records, n, split="train", kind="parquet"):
    """`records` cut into `n` shards named as a Hub export names them."""
    folder.mkdir(exist_ok=True)
    bounds = [round(i * len(records) / n) for i in range(n + 1)]
    for i, (start, end) in enumerate(zip(bounds, bounds[1:])):
        path = folder / f"{split}-{i:05d}-of-{n:05d}.{kind}"
        if kind == "parquet":
            pq.write_table(pa.Table.from_pylist(records[start:end]), path)
        else:
            path.write_text("".join(json.dumps(r) + "\n" for r in records[start:end]))
    return folder


def _medqa(n, prefix="Q"):
    return [{"question": f"{prefix}{i}: which nerve?", "options": {"A": "ulnar", "B": "radial", "C": "median"},
             "answer_idx": "ABC"[i % 3], "answer": ["ulnar", "radial", "median"][i % 3]} for i in range(n)]


def test_real_medqa_shards_read_as_their_file_through_every_door(shared_data, tmp_path):
    path = shared_data / "raw/medqa/US_test_5_options.jsonl"
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    folder = _shards(tmp_path / "data", records, 4)
    whole = load_source("medqa", path)
    assert len(whole.rows) == len(records) > 1000
    assert load_source("medqa", folder).rows.to_list() == whole.rows.to_list()
    mapped = load_source("mine", folder, mapping=MEDQA_MAPPING).rows
    assert mapped["question"] == whole.rows["question"] and mapped["answer_text"] == whole.rows["answer_text"]
    out = tmp_path / "cli.parquet"
    result = CliRunner().invoke(app, ["load", "medqa", "--path", str(folder), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert read_rows(out)["id"] == whole.rows["id"]
    config = LoadConfig(sources={"mine": {"path": str(folder), "mapping": MEDQA_MAPPING, "licence": "MIT"}})
    from m1data.running.pipeline import RunContext

    assert LoadSources(config).run(None, RunContext(tmp_path, tmp_path)).rows["id"] == mapped["id"]


def test_a_folder_of_several_splits_reads_one_of_them(tmp_path):
    folder = _shards(tmp_path / "data", _medqa(6), 2)
    _shards(folder, _medqa(3, prefix="T"), 1, split="test", kind="jsonl")
    assert len(load_source("medqa", folder).rows) == 6  # the default split, train
    assert load_source("medqa", folder, split="test").rows["question"][0].startswith("T")
    with pytest.raises(MalformedFile, match=r"several splits \(test, train\); say which \(--split"):
        load_source("mine", folder, mapping=MEDQA_MAPPING)
    assert len(load_source("mine", folder, mapping=MEDQA_MAPPING, split="test").rows) == 3
    with pytest.raises(MalformedFile, match="none is 'validation'"):
        load_source("medqa", folder, split="validation")
    with pytest.raises(UserError, match="read whole"):  # a split cannot narrow one file
        load_source("mine", folder / "test-00000-of-00001.jsonl", mapping=MEDQA_MAPPING, split="test")
    cli = CliRunner().invoke(app, ["load", "mine", "--path", str(folder), "--out", str(tmp_path / "o.parquet"),
                                   "--mapping", "question=question,options=options,answer=answer_idx"])
    assert cli.exit_code == 2 and "several splits" in cli.output and not (tmp_path / "o.parquet").exists()


def test_a_folder_of_files_named_for_their_splits_reads_one_of_them(shared_data, tmp_path):
    """HEAD-QA's release folder: train_HEAD_EN.json, dev_HEAD_EN.json, test_HEAD_EN.json. Given
    the folder, the test questions were read as training ones beside the train file's."""
    folder = tmp_path / "HEAD_EN"
    folder.mkdir()
    for split in ("train", "dev", "test"):
        (folder / f"{split}_HEAD_EN.json").write_bytes((shared_data / f"raw/headqa/{split}_HEAD_EN.json").read_bytes())
    train = load_source("headqa", folder)
    assert train.rows.to_list() == load_source("headqa", shared_data / "raw/headqa/train_HEAD_EN.json").rows.to_list()
    assert load_source("headqa", folder, split="dev").rows["id"] == load_source(
        "headqa", shared_data / "raw/headqa/dev_HEAD_EN.json").rows["id"]


def test_shards_named_with_a_hash_are_split_apart_too(tmp_path):
    """Older `push_to_hub`s name shards train-00000-of-00001-7a8ad6e8a7bd1b98.parquet: read as
    files of no split, a folder of train and test shards was read whole."""
    folder = _shards(tmp_path / "data", _medqa(4), 1)
    (folder / "train-00000-of-00001.parquet").rename(folder / "train-00000-of-00001-7a8ad6e8a7bd1b98.parquet")
    _shards(folder, _medqa(3, prefix="T"), 1, split="test")
    (folder / "test-00000-of-00001.parquet").rename(folder / "test-00000-of-00001-0c1d2e3f4a5b6c7d.parquet")
    assert len(load_source("medqa", folder).rows) == 4
    with pytest.raises(MalformedFile, match="several splits"):
        load_source("mine", folder, mapping=MEDQA_MAPPING)


def _medmcqa(cops, prefix):
    return [{"id": f"{prefix}{i}", "question": f"{prefix} question {i}?", "opa": "a", "opb": "b", "opc": "c",
             "opd": "d", "cop": cop} for i, cop in enumerate(cops)]


def test_medmcqa_counts_options_one_way_across_all_its_shards(tmp_path):
    """A 1-based release cut into shards: one shard shows its base (a cop of 4), the other does
    not. Decided per shard, the second was read 0-based, every answer one option off."""
    folder = _shards(tmp_path / "data", _medmcqa([1, 2, 3, 4], "a") + _medmcqa([1, 2, 3], "b"), 2, kind="jsonl")
    assert json.loads((folder / "train-00001-of-00002.jsonl").read_text().splitlines()[0])["id"] == "b0"
    with warnings.catch_warnings():
        warnings.simplefilter("error", CopBaseWarning)
        rows = load_source("medmcqa", folder).rows
    assert rows["answer_text"] == ["a", "b", "c", "d", "a", "b", "c"]
    with pytest.warns(CopBaseWarning):  # the second shard alone cannot tell
        load_source("medmcqa", folder / "train-00001-of-00002.jsonl")
    (folder / "train-00001-of-00002.jsonl").write_text(json.dumps(_medmcqa([0], "c")[0]) + "\n")
    with pytest.raises(MalformedFile, match="cop_base") as err:  # a 0 in one shard, a 4 in the other
        load_source("medmcqa", folder)
    assert str(err.value).startswith(str(folder))


def test_a_folder_without_source_files_says_where_they_may_be(tmp_path):
    (tmp_path / "snapshot" / "data").mkdir(parents=True)
    (tmp_path / "snapshot" / "README.md").write_text("# a card\n")
    with pytest.raises(MalformedFile, match=r"no \.jsonl, \.json, \.csv, \.tsv or \.parquet file in it \(its folders: data"):
        load_source("mine", tmp_path / "snapshot", mapping=MEDQA_MAPPING)


def test_a_changed_shard_makes_the_load_stage_run_again(tmp_path):
    folder = _shards(tmp_path / "data", _medqa(6), 3)
    stage = LoadSources(LoadConfig(sources={"medqa": {"path": str(folder)}}))
    before = stage.external_fingerprint()
    _shards(tmp_path / "other", _medqa(2, prefix="R"), 1)
    (tmp_path / "other" / "train-00000-of-00001.parquet").replace(folder / "train-00001-of-00003.parquet")
    assert stage.external_fingerprint() != before


def test_a_file_beside_the_shards_is_not_read_as_more_questions(tmp_path):
    """A previous load's output written next to the shards (rows of m1data's schema, and its
    dropped file) was read as a million more questions, each dropped as missing_field."""
    folder = _shards(tmp_path / "data", _medqa(4), 2)
    (folder / "loaded.parquet").write_bytes((folder / "train-00000-of-00002.parquet").read_bytes())
    with pytest.raises(MalformedFile, match=r"holds a split's files \(train\) and other files \(loaded.parquet\)"):
        load_source("medqa", folder)
    (folder / "loaded.parquet").unlink()
    assert len(load_source("medqa", folder).rows) == 4


# ------------------------------------------------------------------ an eval set given as a folder


def _eval_rows(loaded):
    return sorted(zip(loaded.rows["question"], loaded.rows["answer_text"]))


def test_an_eval_set_snapshot_reads_its_own_split_at_every_eval_door(shared_data, tmp_path):
    """A Hub snapshot of an eval set keeps every split's shards in one `data/` folder; given to an
    eval door it was "is a directory". A named set now reads its own split's shards (MedQA's
    test, never the train shards beside it), as the file they were cut from, through the Python
    loaders, `load-eval`, a build's eval entry and `decontaminate --eval NAME=FOLDER`; a folder
    given alone must hold one split."""
    from m1data.reading.evalsets import EvalInput, load_eval, load_eval_file, load_eval_input

    path = shared_data / "eval/medagentsbench/medqa/test.jsonl"
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    folder = _shards(tmp_path / "data", records, 3, split="test", kind="jsonl")
    _shards(folder, [dict(r, question="TRAIN " + r["question"]) for r in records[:40]], 1)  # train beside it
    whole = load_eval("medqa_test", path)
    assert len(whole.rows) == len(records) > 1000
    assert _eval_rows(load_eval("medqa_test", folder)) == _eval_rows(whole)
    assert _eval_rows(load_eval_input(EvalInput.parse(f"medqa_test={folder}"))["medqa_test"]) == _eval_rows(whole)
    with pytest.raises(MalformedFile, match="several splits .*give one split's files"):
        load_eval_file(folder)
    for train in folder.glob("train-*"):
        train.unlink()
    assert _eval_rows(load_eval_file(folder)[f"{tmp_path.name}/data"]) == _eval_rows(whole)

    out = tmp_path / "cli.parquet"
    result = CliRunner().invoke(app, ["load-eval", "medqa_test", "--path", str(folder), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(read_rows(out)["id"]) == sorted(whole.rows["id"])
    rows = tmp_path / "rows.jsonl"  # training rows: three of the eval questions and one of our own
    rows.write_text("".join(json.dumps({"question": r["question"], "options": r["options"],
                                        "answer_idx": r["answer_idx"]}) + "\n"
                            for r in [*records[:3], {**records[0], "question": "An unrelated question of ours?"}]))
    loaded = tmp_path / "loaded.parquet"
    assert CliRunner().invoke(app, ["load", "mine", "--path", str(rows), "--mapping", "answer=answer_idx",
                                    "--out", str(loaded)]).exit_code == 0
    kept = tmp_path / "kept.parquet"
    result = CliRunner().invoke(app, ["decontaminate", str(loaded), str(kept), "--eval", f"medqa_test={folder}"])
    assert result.exit_code == 0, result.output
    assert read_rows(kept)["question"] == ["An unrelated question of ours?"]


def test_an_mmlu_snapshot_reads_each_subjects_test_shards(shared_data, tmp_path):
    """cais/mmlu's snapshot keeps each subject's splits in its own folder; hendrycks/test's folder
    of `<subject>_test.csv` files is read as before, and a subject missing from either is named."""
    import csv as csv_module

    from m1data.reading.evalsets import load_eval, load_eval_any

    cells = list(csv_module.reader((shared_data / "eval/mmlu/anatomy_test.csv").open(encoding="utf-8")))
    subject = tmp_path / "mmlu" / "anatomy"
    subject.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([{"question": c[0], "choices": c[1:5], "answer": "ABCD".index(c[5])}
                                         for c in cells]), subject / "test-00000-of-00001.parquet")
    pq.write_table(pa.Table.from_pylist([{"question": "A dev question?", "choices": ["a", "b", "c", "d"],
                                          "answer": 0}]), subject / "dev-00000-of-00001.parquet")
    whole = load_eval("mmlu_anatomy", shared_data / "eval/mmlu/anatomy_test.csv")
    assert len(whole.rows) == len(cells)
    for given in (subject.parent, subject):
        assert _eval_rows(load_eval("mmlu_anatomy", given)) == _eval_rows(whole)
    with pytest.raises(MalformedFile, match="no clinical_knowledge_test.csv and no clinical_knowledge folder"):
        load_eval_any("mmlu_medical", subject.parent)
    assert len(load_eval_any("mmlu_medical", shared_data / "eval/mmlu")) == 6


# ------------------------------------------------------------------ a folder `datasets` saved


def test_a_save_to_disk_folder_reads_as_its_rows_at_every_door(shared_data, tmp_path):
    """A pool or eval set prepared with `datasets` is often kept as `save_to_disk` wrote it (.arrow
    files beside state.json and dataset_info.json; a DatasetDict a folder per split). Given as a
    path it was read as JSON files ("dataset_info.json: expected a JSON list of objects"). Now a
    Dataset's folder reads as the file it was made from, and a DatasetDict's is narrowed to a split
    as a folder of split shards is."""
    import datasets

    from m1data.reading.evalsets import load_eval

    path = shared_data / "raw/medqa/US_test_5_options.jsonl"
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    pool = datasets.Dataset.from_list(records)
    pool.save_to_disk(str(tmp_path / "pool"))
    datasets.DatasetDict({"train": pool.select(range(1000)), "test": pool.select(range(1000, len(pool)))}).save_to_disk(
        str(tmp_path / "splits"))
    whole = load_source("medqa", path)
    assert load_source("medqa", tmp_path / "pool").rows.to_list() == whole.rows.to_list()
    mapped = load_source("mine", tmp_path / "pool", mapping=MEDQA_MAPPING).rows
    assert mapped["answer_text"] == whole.rows["answer_text"]
    assert load_source("medqa", tmp_path / "splits").rows["question"] == whole.rows["question"][:1000]  # train
    test = load_source("mine", tmp_path / "splits", split="test", mapping=MEDQA_MAPPING).rows
    assert test["question"] == whole.rows["question"][1000:]
    with pytest.raises(MalformedFile, match=r"several splits \(test, train\); say which"):
        load_source("mine", tmp_path / "splits", mapping=MEDQA_MAPPING)
    assert sorted(load_eval("medqa_test", tmp_path / "splits").rows["question"]) == sorted(test["question"])
    out = tmp_path / "cli.parquet"
    result = CliRunner().invoke(app, ["load", "medqa", "--path", str(tmp_path / "pool"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert read_rows(out)["id"] == whole.rows["id"]
    # one of its .arrow files alone (as a `datasets` cache keeps `medqa-test.arrow`) reads as the rows too
    (shard,) = (tmp_path / "pool").glob("*.arrow")
    assert load_source("medqa", shard).rows.to_list() == whole.rows.to_list()
    assert load_source("mine", shard, mapping=MEDQA_MAPPING).rows["answer_text"] == whole.rows["answer_text"]
    assert sorted(load_eval("medqa_test", shard).rows["question"]) == sorted(whole.rows["question"])
    cache = tmp_path / "cache"  # a `datasets` cache folder: every split's .arrow beside dataset_info.json
    cache.mkdir()
    for name in ("medqa-train.arrow", "medqa-test.arrow", "dataset_info.json"):
        (cache / name).write_bytes(shard.read_bytes() if name.endswith(".arrow") else b"{}")
    with pytest.raises(MalformedFile, match=r"holds .arrow files \(medqa-test.arrow, medqa-train.arrow\).*give the one"):
        load_source("medqa", cache)
    with pytest.raises(MalformedFile, match="give the one to read"):
        load_eval("medqa_test", cache)
