"""File-level faults of the raw readers: each is one error naming the file and the line."""

import json
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from m1data.errors import UserError
from m1data.publishing.cardmeta import card_with_metadata
from m1data.reading.evalsets import load_eval
from m1data.reading.readers import MalformedFile, lettered_options, read_csv, read_json, read_jsonl
from m1data.reading.sources import load_source
from m1data.schema import LETTERS, RowError

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
    for load in (load_source, load_eval):  # a source or an eval set may be a folder of shards
        with pytest.raises(MalformedFile, match="a folder with no .jsonl"):
            load({load_source: "medqa", load_eval: "medqa_test"}[load], tmp_path)


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
    with pytest.raises(UserError, match="2 configs and its card names no default; give one: .*data/m1k"):
        read_rows(hub)


def test_a_hub_folder_of_several_configs_gives_its_default_one(tmp_path):
    """Every build's Hub folder has two configs (`m1k`, `m1k-prompt-completion`), so the README's
    `m1data dedup RUN/hub OUT` was always refused ("2 configs; give one"): the card's default
    config is read, the one `load_dataset(folder)` returns."""
    import datasets

    from m1data.reading.readers import read_rows

    hub = tmp_path / "hub"
    for config, ids in (("m1k", ["a", "b"]), ("m1k-prompt-completion", ["c"])):
        (hub / "data" / config).mkdir(parents=True)
        datasets.Dataset.from_dict({"id": ids}).to_parquet(str(hub / "data" / config / "train-00000-of-00001.parquet"))
    entries = [{"config_name": c, "data_files": [{"split": "train", "path": f"data/{c}/train-*.parquet"}]}
               for c in ("m1k", "m1k-prompt-completion")]
    for default in ("m1k-prompt-completion", "m1k"):
        card = [dict(e, default=True) if e["config_name"] == default else e for e in entries]
        (hub / "README.md").write_text(card_with_metadata("# card\n", {"configs": card}), encoding="utf-8")
        assert read_rows(hub)["id"] == datasets.load_dataset(str(hub), split="train")["id"]


# --- option dicts from Parquet: Arrow pads a struct with None for the letters a row lacks ------

option_lists = st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=10)


@given(texts=option_lists, padding=st.integers(min_value=0, max_value=10))
def test_none_trailing_letters_are_absent_options(texts, padding):
    """A 4-option row in a file of up-to-10-option rows comes back as {A..D, E: None, ...}."""
    letters = LETTERS[: min(len(texts) + padding, len(LETTERS))]
    options = {letter: (texts[i] if i < len(texts) else None) for i, letter in enumerate(letters)}
    assert lettered_options(options) == texts


@given(texts=option_lists.filter(lambda t: len(t) >= 2), data=st.data())
def test_a_none_before_the_last_option_is_still_a_bad_row(texts, data):
    hole = data.draw(st.integers(min_value=0, max_value=len(texts) - 2))
    options = {LETTERS[i]: (None if i == hole else t) for i, t in enumerate(texts)}
    with pytest.raises(RowError) as err:
        lettered_options(options)
    assert err.value.reason == "not_text" and f"option {LETTERS[hole]}" in err.value.detail


def test_parquet_of_mixed_option_counts_loses_no_row(tmp_path):
    """pyarrow writes MedQA's 4- and 5-option rows as one struct {A..E}: the 4-option row's E is None."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"question": "Which drug for angina?", "answer": "Aspirin", "answer_idx": "A", "meta_info": "step1",
             "options": {"A": "Aspirin", "B": "Heparin", "C": "Warfarin", "D": "Statin"}},
            {"question": "Which nerve for the deltoid?", "answer": "Axillary", "answer_idx": "E", "meta_info": "step1",
             "options": {"A": "Radial", "B": "Ulnar", "C": "Median", "D": "Musculocutaneous", "E": "Axillary"}}]
    path = tmp_path / "medqa.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    assert pq.read_table(path).column("options")[0].as_py()["E"] is None  # the padding this is about
    loaded = load_source("medqa", path)
    assert loaded.reasons() == {} and sorted(loaded.rows["answer_text"]) == ["Aspirin", "Axillary"]
    assert sorted(len(o) for o in loaded.rows["options"]) == [4, 5]


@pytest.mark.parametrize("rows", [3, 25_001])  # one batch, and several (PARQUET_BATCH_ROWS) with a short last one
def test_parquet_records_are_what_datasets_reads(tmp_path, rows):
    """`read_parquet` reads with pyarrow a batch at a time (not `datasets` row by row, 5x slower);
    the records must be the ones `datasets` gives, nested, missing and numeric values included,
    numbered from 1 across batches."""
    import datasets

    from m1data.reading.readers import read_parquet

    table = {"question": [f"Q{i}?" if i % 7 else None for i in range(rows)],
             "options": [{"A": "x", "B": None if i % 2 else "y"} for i in range(rows)],
             "choices": [["a", "b"][: i % 3] for i in range(rows)],
             "cop": [i % 4 for i in range(rows)], "score": [i / 3 for i in range(rows)]}
    path = tmp_path / "rows.parquet"
    datasets.Dataset.from_dict(table).to_parquet(str(path))
    expected = list(enumerate(datasets.Dataset.from_parquet(str(path)), start=1))
    assert list(read_parquet(path)) == expected


def test_a_parquet_file_with_images_reads_them_as_datasets_does(tmp_path):
    """A Hub export's Image column (HEAD-QA's) is decoded by `datasets`; such a file is still read
    through it, so a question's image is an image (and the row `needs_image`), not a dict of bytes."""
    import io

    import datasets
    from PIL import Image

    from m1data.reading.readers import read_parquet

    png = io.BytesIO()
    Image.new("RGB", (2, 2)).save(png, format="PNG")
    features = datasets.Features({"qtext": datasets.Value("string"), "image": datasets.Image()})
    path = tmp_path / "headqa.parquet"
    datasets.Dataset.from_dict({"qtext": ["With a picture?", "Without?"],
                                "image": [{"bytes": png.getvalue(), "path": None}, None]},
                               features=features).to_parquet(str(path))
    (_, first), (_, second) = read_parquet(path)
    assert isinstance(first["image"], Image.Image) and second["image"] is None


def test_mmlu_pro_as_parquet_reads_like_its_jsonl(shared_data, tmp_path):
    """MedAgentsBench's MMLU-Pro (3 to 10 options a row) re-saved by pandas as Parquet."""
    import pandas as pd

    source = shared_data / "eval/medagentsbench/mmlu-pro/test.jsonl"
    path = tmp_path / "test.parquet"
    pd.read_json(source, lines=True).to_parquet(path)
    from_jsonl, from_parquet = load_eval("mmlu_pro_health", source), load_eval("mmlu_pro_health", path)
    assert from_parquet.reasons() == {} and len(from_parquet.rows) == len(from_jsonl.rows) == 818
    assert sorted(from_parquet.rows["answer_text"]) == sorted(from_jsonl.rows["answer_text"])


def test_json_lines_in_a_json_file_is_named_as_such(tmp_path):
    path = tmp_path / "export.json"
    path.write_text(json.dumps(MEDMCQA_ROW) + "\n" + json.dumps(MEDMCQA_ROW) + "\n")
    with pytest.raises(MalformedFile, match="looks like JSON Lines") as err:
        read_json(path)
    assert err.value.line == 2
    path.write_text(json.dumps(MEDMCQA_ROW, indent=1) + "\n{}\n")  # a pretty value, then more: plain invalid JSON
    with pytest.raises(MalformedFile) as err:
        read_json(path)
    assert "Extra data" in str(err.value) and "JSON Lines" not in str(err.value)


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_a_row_file_cut_short_is_one_error_naming_it(tmp_path, suffix):
    """A row file cut short (a copy or a write that was stopped) came out of pyarrow as
    'internal error' with ArrowInvalid or DatasetGenerationError, naming no file. Now it is a
    UserError (one line in the CLI) naming the file and what pyarrow found."""
    from m1data.errors import UserError
    from m1data.reading.readers import read_rows, write_rows
    from m1data.schema import make_row, rows_to_dataset

    rows = [make_row(source="medqa", row_id=str(i), question=f"Question {i}?", options=["a", "b"], answer_idx=0,
                     raw={}) for i in range(50)]
    whole = write_rows(rows_to_dataset(rows), tmp_path / f"rows{suffix}")
    for cut_at in (len(whole.read_bytes()) // 2, 0 if suffix == ".parquet" else 5):
        cut = tmp_path / f"cut{cut_at}{suffix}"
        cut.write_bytes(whole.read_bytes()[:cut_at])
        with pytest.raises(UserError, match=f"{cut} cannot be read as rows") as err:
            read_rows(cut)
        assert "cut short" in str(err.value) and len(str(err.value).splitlines()) == 1


def test_a_row_file_with_bytes_that_are_not_utf8_is_one_error_naming_the_line(tmp_path):
    """pyarrow's JSON reader kept Latin-1 bytes in a string column without a word, and the first
    stage to read the column failed with an internal error (UnicodeDecodeError inside pyarrow)."""
    from m1data.reading.readers import read_rows

    good = json.dumps({"id": "a", "question": "Fine?", "answer_idx": 0}).encode()
    bad = b'{"id": "b", "question": "caf\xe9 au lait?", "answer_idx": 0}'
    path = tmp_path / "rows.jsonl"
    path.write_bytes(good + b"\n" + bad + b"\n")
    with pytest.raises(MalformedFile, match=r"rows\.jsonl:2: is not UTF-8 text \(byte 0xe9, the line.s byte 29\)"):
        read_rows(path)
    path.write_bytes(good + b"\n" + b'{"id": "b", "qu\xe9stion": "x"}\n')  # in a key: a bare UnicodeDecodeError
    with pytest.raises(MalformedFile, match=r"rows\.jsonl:2: is not UTF-8 text"):
        read_rows(path)
    path.write_bytes(good + b"\n" + "caf\u00e9".join([b'{"id": "c", "question": "'.decode(), '"}']).encode() + b"\n")
    assert read_rows(path)["question"] == ["Fine?", "caf\u00e9"]  # UTF-8 itself reads as before


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_a_missing_row_file_is_named_in_the_projects_words(tmp_path, suffix):
    """A missing input was pyarrow's "[Errno 2] Failed to open local file ... Detail: [errno 2]"
    for .parquet and json's bare errno for .jsonl; every other reader says "PATH: no such file"."""
    import subprocess

    from m1data.reading.readers import read_rows

    missing = tmp_path / f"nosuch{suffix}"
    with pytest.raises(FileNotFoundError, match=f"^{missing}: no such file$"):
        read_rows(missing)
    cli = subprocess.run([sys.executable, "-c", "from m1data.cli import main; main()", "dedup", str(missing),
                          str(tmp_path / "out.parquet")], capture_output=True, text=True)
    assert cli.returncode != 0 and cli.stderr.strip() == f"error: {missing}: no such file"


def test_a_file_command_leaves_another_live_writers_temporary_file_alone(tmp_path):
    """Every write removed all `.OUT.<pid>.tmp` beside OUT as leftovers of killed writes, also the
    one a second command writing the same OUT was still filling: that command then failed with
    FileNotFoundError. Now only a dead writer's file is removed."""
    import subprocess
    import sys

    from m1data.reading.readers import write_together
    from m1data.schema import make_row, rows_to_dataset

    rows = rows_to_dataset([make_row(source="medqa", row_id="1", question="Q?", options=["a", "b"], answer_idx=0,
                                     raw={})])
    out = tmp_path / "out.parquet"
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    try:
        writing = tmp_path / f".out.parquet.{live.pid}.tmp"
        left = tmp_path / f".out.parquet.{int(dead.stdout)}.tmp"
        writing.write_bytes(b"half")
        left.write_bytes(b"half")
        write_together([(rows, out)])
        assert writing.exists() and not left.exists()
    finally:
        live.kill()
        live.wait()


def test_renames_into_a_folder_wait_for_its_lock(tmp_path):
    """Two commands writing one OUT at once could interleave their renames (one's OUT beside the
    other's dropped file); the renames now happen under a lock on the folder."""
    import fcntl
    import os
    import threading
    import time

    from m1data.reading.readers import write_together
    from m1data.schema import make_row, rows_to_dataset

    rows = rows_to_dataset([make_row(source="medqa", row_id="1", question="Q?", options=["a", "b"], answer_idx=0,
                                     raw={})])
    out = tmp_path / "out.parquet"
    fd = os.open(tmp_path, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another command in its renames
    writer = threading.Thread(target=write_together, args=([(rows, out), (rows, tmp_path / "out.dropped.parquet")],))
    writer.start()
    time.sleep(0.5)
    assert not out.exists() and not (tmp_path / "out.dropped.parquet").exists()
    os.close(fd)
    writer.join(10)
    assert out.exists() and (tmp_path / "out.dropped.parquet").exists()


@pytest.mark.parametrize("key, option, same", [
    ("STRASSE", "Straße", True),  # lower() leaves "strasse" and "straße" apart
    ("  aortic   stenosis ", "Aortic stenosis", True),
    ("A", "a", False),  # a one-character key is a letter
    ("Aortic stenosis", "Mitral stenosis", False),
    ("Sjo\u0308gren syndrome", "Sj\u00f6gren syndrome", True),  # one text in two Unicode forms (NFD, NFC)
    ("10\u2076", "106", False),  # a compatibility form is another text: 10 to the 6th is not 106
])
def test_answer_text_is_compared_with_case_folded(key, option, same):
    from m1data.reading.readers import same_text

    assert same_text(key, option) is same


def test_reading_and_writing_rows_print_no_datasets_bars(tmp_path, capfd):
    # README: a library call prints nothing; datasets' write/read bars are on in a fresh interpreter
    import datasets

    from m1data.reading.readers import read_rows, write_rows

    datasets.enable_progress_bars()
    capfd.readouterr()
    for name in ("rows.parquet", "rows.jsonl"):
        write_rows(datasets.Dataset.from_dict({"a": [1, 2]}), tmp_path / name)
        assert read_rows(tmp_path / name)["a"] == [1, 2]
    assert capfd.readouterr().err == ""
    assert datasets.is_progress_bar_enabled()  # left as it was


def test_load_eval_given_a_file_points_to_the_file_reader(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps({"question": "Which drug?", "options": ["x", "y"], "answer": "x"}) + "\n")
    with pytest.raises(UserError, match="is a file, not an eval set name.*load_eval_file"):
        load_eval(str(path))


def test_rows_turned_into_arrow_in_batches_are_the_rows_of_one(tmp_path, monkeypatch):
    """`collect` turns rows into Arrow every ARROW_BATCH_ROWS (a peak of 2.3 GB, not 3.7, loading
    1M rows): the rows, their order and ids, and the dropped records are those of one batch."""
    from m1data.reading import readers

    path = tmp_path / "mine.jsonl"
    path.write_text("".join(json.dumps({"id": f"q{i}", "question": f"Question {i}?", "options": ["alpha", "beta", "gamma"],
                                        "answer": "ABCZ"[i % 4]}) + "\n" for i in range(11)))
    whole = load_source("mine", path)
    monkeypatch.setattr(readers, "ARROW_BATCH_ROWS", 3)
    batched = load_source("mine", path)
    assert batched.rows.to_list() == whole.rows.to_list() and len(whole.rows) == 9  # i % 4 == 3: no option Z
    assert batched.dropped.to_list() == whole.dropped.to_list() and whole.reasons() == {"answer_out_of_range": 2}


@pytest.mark.parametrize("name, rel", [("medbullets_op4", "eval/medbullets/medbullets_op4.csv"),
                                       ("mmlu_anatomy", "eval/mmlu/anatomy_test.csv")])
@pytest.mark.parametrize("delimiter", [";", "\t"])
def test_a_csv_cut_by_semicolons_or_tabs_reads_as_the_comma_file(shared_data, tmp_path, name, rel, delimiter):
    """Excel in a locale whose decimal mark is the comma saves a CSV cut by semicolons; read by
    commas each row was one cell ("no question column" under a header that names it). Real
    MedBullets (a header) and MMLU (none) files rewritten so read as the originals."""
    import csv as csv_module

    from m1data.reading.evalsets import load_eval

    original = shared_data / rel
    rows = list(csv_module.reader(original.open(encoding="utf-8", newline="")))
    cut = tmp_path / original.name
    with cut.open("w", encoding="utf-8", newline="") as handle:
        csv_module.writer(handle, delimiter=delimiter).writerows(rows)
    assert load_eval(name, cut).rows.to_list() == load_eval(name, original).rows.to_list()
    assert sum(1 for _ in read_csv(cut)) == sum(1 for _ in read_csv(original))


def test_a_json_object_holding_the_rows_reads_as_the_rows_at_both_doors(shared_data, tmp_path):
    """Releases often wrap their rows: `{"version": "1.0", "data": [...]}`. The eval reader read a
    one-list object as a set of that name while a source given the same file was refused
    ("expected a JSON list of objects"); now both read the list. Real MedQA rows."""
    import json

    from m1data.reading.evalsets import load_eval_file

    plain = shared_data / "raw/medqa/US_test_5_options.jsonl"
    records = [json.loads(line) for line in plain.read_text(encoding="utf-8").splitlines()][:200]
    wrapped = tmp_path / "medqa.json"
    wrapped.write_text(json.dumps({"version": "1.0", "data": records}), encoding="utf-8")
    lines = tmp_path / "medqa.jsonl"
    lines.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    assert load_source("mine", wrapped).rows.to_list() == load_source("mine", lines).rows.to_list()
    assert len(load_source("mine", wrapped).rows) == 200
    (got,), (want,) = load_eval_file(wrapped, name="x").values(), load_eval_file(lines, name="x").values()
    assert got.rows.to_list() == want.rows.to_list()
    wrapped.write_text(json.dumps({"train": records[:100], "test": records[100:], "version": "1.0"}), encoding="utf-8")
    with pytest.raises(MalformedFile, match="expected a JSON list of objects, or an object holding one"):
        list(load_source("mine", wrapped).rows)


@pytest.mark.parametrize("orient", ["columns", "index", "split", "table", "lists"])
def test_a_dataframe_pandas_wrote_as_json_reads_as_its_rows_at_both_doors(shared_data, tmp_path, orient):
    """`df.to_json(path)` writes a frame as columns of {index: cell} (orient "columns", its
    default; "index" and "split" are the other object forms): such a file was refused at both
    doors ("expected a JSON list of objects"), or read by the eval door as sets named "columns",
    "index" and "data". So was a list a column ("lists": `json.dump` of `Dataset.to_dict()`, here
    the same columns). Real MedQA rows, written by pandas itself, read as the JSON Lines file."""
    import json

    import pandas as pd

    from m1data.reading.evalsets import load_eval_file

    plain = shared_data / "raw/medqa/US_test_5_options.jsonl"
    records = [json.loads(line) for line in plain.read_text(encoding="utf-8").splitlines()][:120]
    lines = tmp_path / "medqa.jsonl"
    lines.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    frame = tmp_path / "medqa.json"
    if orient == "lists":
        import datasets

        frame.write_text(json.dumps(datasets.Dataset.from_list(records).to_dict()), encoding="utf-8")
    else:
        pd.DataFrame(records).to_json(frame, orient=orient)

    def read(rows):  # "table" adds each row's index to it, and so to the row's metadata
        return [(r["id"], r["question"], r["options"], r["answer_idx"]) for r in rows.to_list()]

    assert read(load_source("mine", frame).rows) == read(load_source("mine", lines).rows)
    (got,), (want,) = load_eval_file(frame, name="x").values(), load_eval_file(lines, name="x").values()
    assert read(got.rows) == read(want.rows) and len(got.rows) == 120


def test_an_object_of_objects_is_read_as_a_frame_only_when_its_index_tells_which_way(tmp_path):
    """pandas' default index ("0", "1", ...) tells orient "columns" from "index"; an object keyed
    by numbers at both levels, or at neither, or whose inner objects differ in keys, is refused
    as before rather than read one way by guess."""
    from m1data.reading.readers import pandas_records

    row = {"question": "q", "options": ["a", "b"], "answer": 0}
    assert pandas_records({"question": {"0": "q", "1": "r"}, "answer": {"0": 0, "1": 1}}) == [
        {"question": "q", "answer": 0}, {"question": "r", "answer": 1}]
    assert pandas_records({"7": row, "9": row}) == [row, row]
    assert pandas_records({"0": {"0": 1}, "1": {"0": 2}}) is None
    assert pandas_records({"a": row, "b": row}) is None
    assert pandas_records({"0": row, "1": {**row, "extra": 1}}) is None
    assert pandas_records({"columns": ["question"], "data": [["q"], ["r", "s"]]}) is None
    assert pandas_records({"question": ["q", "r"], "answer": [0, 1]}) == [
        {"question": "q", "answer": 0}, {"question": "r", "answer": 1}]
    assert pandas_records({"question": ["q", "r"], "answer": [0]}) is None  # not a table
    assert pandas_records({"medqa": [row], "mmlu": [row]}) is None  # m1's eval sets, a list each
    path = tmp_path / "odd.json"
    path.write_text(json.dumps({"a": row, "b": row}), encoding="utf-8")
    with pytest.raises(MalformedFile, match="expected a JSON list of objects"):
        list(load_source("mine", path).rows)


def test_what_datasets_and_json_dump_write_reads_whatever_the_name(shared_data, tmp_path):
    """`Dataset.to_json("x.json")` writes one object a line, and `json.dump(rows, f)` into an
    `x.jsonl` one list: `datasets` reads both as rows, m1data stopped on each ("name it .jsonl";
    "invalid JSON at column 2"). Real MedQA rows read as the plain JSON Lines file, at both doors."""
    import datasets

    from m1data.reading.evalsets import load_eval_file

    plain = shared_data / "raw/medqa/US_test_5_options.jsonl"
    records = [json.loads(line) for line in plain.read_text(encoding="utf-8").splitlines()][:150]
    lines = tmp_path / "medqa.jsonl"
    lines.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    exported = tmp_path / "exported.json"
    datasets.Dataset.from_list(records).to_json(str(exported))
    dumped = tmp_path / "dumped.jsonl"
    dumped.write_text(json.dumps(records, indent=2), encoding="utf-8")
    want = load_source("mine", lines).rows.to_list()
    (want_eval,) = load_eval_file(lines, name="x").values()
    for path in (exported, dumped):
        assert [r["question"] for r in load_source("mine", path).rows.to_list()] == [r["question"] for r in want]
        assert [(r["options"], r["answer_idx"]) for r in load_source("mine", path).rows.to_list()] == [
            (r["options"], r["answer_idx"]) for r in want]
        (got,) = load_eval_file(path, name="x").values()
        assert [(r["question"], r["answer_text"]) for r in got.rows.to_list()] == [
            (r["question"], r["answer_text"]) for r in want_eval.rows.to_list()]


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".jsonl.gz"])
@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "cp1252"])
def test_utf16_is_read_and_other_encodings_are_one_line_naming_the_file_at_every_door(shared_data, tmp_path,
                                                                                       suffix, encoding):
    """Windows PowerShell's `>` writes UTF-16 (with its byte order mark), Excel on Windows cp1252.
    Real MedBullets rows (their "°" and "–" are not ASCII) in UTF-16 read as in UTF-8, at the source
    and eval doors; in cp1252 they stop each door with the file, the place and what to do, never a
    traceback (a UTF-16 .jsonl gave one, from this session's look at its first character)."""
    import csv as csv_module
    import gzip

    from typer.testing import CliRunner

    from m1data.cli import app
    from m1data.reading.evalsets import load_eval_file

    with (shared_data / "eval/medbullets/medbullets_op4.csv").open(encoding="utf-8", newline="") as handle:
        records = list(csv_module.DictReader(handle))[:40]

    def written(encoding: str):
        folder = tmp_path / encoding
        folder.mkdir(exist_ok=True)
        path = folder / f"mine{suffix}"
        if suffix == ".csv":
            with path.open("w", encoding=encoding, errors="replace", newline="") as handle:
                writer = csv_module.DictWriter(handle, fieldnames=list(records[0]))
                writer.writeheader()
                writer.writerows(records)
        else:
            text = (json.dumps(records, ensure_ascii=False) if suffix == ".json"
                    else "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
            data = text.encode(encoding, errors="replace")
            path.write_bytes(gzip.compress(data) if suffix.endswith(".gz") else data)
        return path

    path, plain = written(encoding), written("utf-8")
    mapping = {"question": "question", "options": "opa+opb+opc+opd", "answer": "answer_idx"}
    doors = (lambda p: load_source("mine", p, mapping=mapping).rows.to_list(),
             lambda p: load_eval_file(p, name="x")["x"].rows.to_list())
    if encoding != "cp1252":
        for door in doors:
            assert door(path) == door(plain) and len(door(path)) == 40
        return
    for door in doors:
        with pytest.raises(MalformedFile, match="not UTF-8 text .*re-save it as UTF-8"):
            door(path)
    result = CliRunner().invoke(app, ["load-eval", str(path), "--out", str(tmp_path / "out.jsonl")])
    assert result.exit_code == 2 and "not UTF-8 text" in result.output and isinstance(result.exception, SystemExit)


def test_medmcqas_own_release_files_read_with_the_built_in_loader(shared_data, tmp_path):
    """MedMCQA's release (`train.json`, `dev.json`) writes one object a line under the name .json:
    `m1data load medmcqa --path dev.json` stopped ("name it .jsonl"). Real MedMCQA questions (the
    validation ones MedAgentsBench ships) in the release's form, `cop` counting from 1, read as
    the same rows as the .jsonl."""
    from m1data.reading.sources import load_source

    rows = [json.loads(line) for line in (shared_data / "eval/medagentsbench/medmcqa/test.jsonl").open()][:120]
    release = "".join(json.dumps({
        "id": f"m{i}", "question": r["question"], "opa": r["options"]["A"], "opb": r["options"]["B"],
        "opc": r["options"]["C"], "opd": r["options"]["D"], "cop": "ABCD".index(r["answer_idx"]) + 1,
        "choice_type": "single", "exp": None, "subject_name": "Medicine", "topic_name": None}) + "\n"
        for i, r in enumerate(rows))
    (tmp_path / "dev.json").write_text(release, encoding="utf-8")
    (tmp_path / "dev.jsonl").write_text(release, encoding="utf-8")
    got = load_source("medmcqa", tmp_path / "dev.json", cop_base=1)
    assert got.rows.to_list() == load_source("medmcqa", tmp_path / "dev.jsonl", cop_base=1).rows.to_list()
    distinct = [r for r in rows if len(set(r["options"].values())) == 4]  # one real row repeats an option
    assert got.rows["answer_text"] == [r["options"][r["answer_idx"]] for r in distinct]
    assert got.reasons() == {"duplicate_options": len(rows) - len(distinct)} == {"duplicate_options": 1}


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_a_column_of_mixed_types_keeps_the_files_own_values(tmp_path, suffix):
    """`datasets` keeps a mixed column's text as it is where it parses as JSON and decodes it on
    reading: the answer "null" came back None, the text "[1, 2]" a list, the question "123" a number,
    in the rows `m1data dedup` and the other file commands wrote."""
    from m1data.reading.readers import read_rows
    from m1data.schema import column_values

    rows = [{"id": "a", "answer": "null", "question": "123", "note": "[1, 2]"},
            {"id": "b", "answer": 3, "question": 123, "note": {"k": 1}},
            {"id": "c", "answer": None, "question": '"quoted"', "note": "{}"}]
    path = tmp_path / f"rows{suffix}"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) if suffix == ".jsonl" else json.dumps(rows))
    read = read_rows(path)
    assert read.to_list() == rows
    assert [column_values(read, name) for name in ("answer", "question", "note")] == [
        [r[name] for r in rows] for name in ("answer", "question", "note")]


def test_a_mixed_column_is_rebuilt_without_holding_the_files_other_columns(tmp_path):
    """The rebuild kept every record of the file in memory, question and reasoning texts included,
    to take one small column from it: a 76 MB file of 200K rows read with 170 MB more memory than
    before. Only the mixed columns' values are kept now."""
    import tracemalloc

    import datasets

    from m1data.reading.readers import _exact_mixed_columns

    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps({"id": f"r{i}", "reasoning": "x" * 5_000, "answer": i if i % 2 else "null"})
                            + "\n" for i in range(2_000)))
    rows = datasets.Dataset.from_json(str(path), cache_dir=str(tmp_path / "cache"))
    tracemalloc.start()
    try:
        rebuilt = _exact_mixed_columns(rows, path, path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rebuilt["answer"][:2] == ["null", 1]
    assert peak < path.stat().st_size / 4, f"{peak:,} bytes held for a file of {path.stat().st_size:,}"


def test_a_mixed_field_inside_a_column_whose_text_would_change_is_refused(tmp_path):
    from m1data.reading.readers import read_rows

    path = tmp_path / "rows.jsonl"
    path.write_text('{"m": [{"x": 1}]}\n{"m": [{"x": "two"}]}\n')
    assert read_rows(path)["m"] == [[{"x": 1}], [{"x": "two"}]]  # nothing to lose: read as it is
    path.write_text('{"m": [{"x": 1}]}\n{"m": [{"x": "null"}]}\n')
    with pytest.raises(MalformedFile, match=r"rows.jsonl:2: column 'm' holds values of several types inside it"):
        read_rows(path)
