"""Source and eval files compressed as Hub datasets often ship them (.gz, .bz2, .xz, .zst) read as the
plain files, at every reader; a damaged one is one line naming it."""

import bz2
import gzip
import lzma

import pyarrow as pa
import pytest

from m1data.reading.evalsets import load_eval_any
from m1data.reading.readers import MalformedFile, read_records
from m1data.reading.sources import load_source

PACK = {".gz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress,
        ".zst": lambda data: pa.compress(data, codec="zstd", asbytes=True)}


def _packed(path, folder, suffix):
    target = folder / (path.name + suffix)
    target.write_bytes(PACK[suffix](path.read_bytes()))
    return target


@pytest.mark.parametrize(("source", "raw", "suffix"), [
    ("headqa", "headqa/train_HEAD_EN.json", ".gz"),  # HEAD-QA's nested exams
    ("pubmedqa", "pubmedqa/ori_pqal.json", ".xz"),  # PubMedQA's {PMID: ...}
    ("medqa", "medqa/US_test_5_options.jsonl", ".bz2"),
    ("medqa", "medqa/4_options_phrases_no_exclude_test.jsonl", ".zst"),
])
def test_a_compressed_real_source_reads_as_the_plain_file(source, raw, suffix, shared_data, tmp_path):
    plain = shared_data / "raw" / raw
    whole = load_source(source, plain)
    packed = load_source(source, _packed(plain, tmp_path, suffix))
    assert len(whole.rows) > 400
    assert packed.rows.to_list() == whole.rows.to_list() and packed.reasons() == whole.reasons()


def test_a_compressed_mmlu_csv_is_still_read_as_mmlu(shared_data, tmp_path):
    """The headerless MMLU layout is recognised under .csv.gz too: read with a header, the first
    question became the column names."""
    plain = shared_data / "eval/mmlu/anatomy_test.csv"
    [(name, whole)] = load_eval_any(str(plain)).items()
    [(_, packed)] = load_eval_any(str(_packed(plain, tmp_path, ".gz"))).items()
    assert len(whole.rows) == 135
    assert packed.rows["question"] == whole.rows["question"] and packed.rows["answer_text"] == whole.rows["answer_text"]


def test_a_damaged_compressed_file_is_one_line_naming_it(tmp_path):
    rows = b'{"question": "Which nerve?", "options": {"A": "ulnar", "B": "radial"}, "answer_idx": "A"}\n' * 2000
    truncated = tmp_path / "train.jsonl.gz"
    truncated.write_bytes(gzip.compress(rows)[:-40])
    with pytest.raises(MalformedFile, match=r"train.jsonl.gz: not a readable gz file \("):
        list(read_records(truncated))
    (tmp_path / "plain.json.xz").write_bytes(b"[]")  # named .xz, never compressed
    with pytest.raises(MalformedFile, match="not a readable xz file"):
        list(read_records(tmp_path / "plain.json.xz"))
    (tmp_path / "plain.json.zst").write_bytes(b"[]")
    with pytest.raises(MalformedFile, match="not a readable zst file"):
        list(read_records(tmp_path / "plain.json.zst"))
    (tmp_path / "rows.parquet.gz").write_bytes(gzip.compress(b"PAR1"))
    with pytest.raises(MalformedFile, match="compresses its own columns"):
        list(read_records(tmp_path / "rows.parquet.gz"))


def test_a_folder_of_compressed_shards_is_a_source(shared_data, tmp_path):
    lines = (shared_data / "raw/medqa/US_test_5_options.jsonl").read_bytes().splitlines(keepends=True)
    (tmp_path / "data").mkdir()
    for i, part in enumerate((lines[:700], lines[700:])):
        (tmp_path / "data" / f"train-{i:05d}-of-00002.jsonl.gz").write_bytes(gzip.compress(b"".join(part)))
    rows = load_source("medqa", tmp_path / "data").rows
    assert rows["id"] == load_source("medqa", shared_data / "raw/medqa/US_test_5_options.jsonl").rows["id"]


def test_a_compressed_eval_file_is_named_as_the_plain_one(shared_data, tmp_path):
    """A file given alone is named by its folder and stem: `medqa/test`, not `medqa/test.jsonl`,
    so `--eval-mapping test:...` finds it compressed or not."""
    from m1data.reading.evalsets import EvalInput, load_eval_input

    (tmp_path / "medqa").mkdir()
    packed = _packed(shared_data / "eval/medagentsbench/medqa/test.jsonl", tmp_path / "medqa", ".gz")
    spec = EvalInput.parse(str(packed))
    assert spec.entry_name == "test"
    [(name, result)] = load_eval_input(spec).items()
    assert name == "medqa/test" and len(result.rows) > 50
