"""`public_rows` by whole columns gives what the row-by-row version gave: same columns, values,
features, Arrow types and order, for selections (an indices mapping) and tables of many chunks
too, and only the rows that may change go through Python. The same for the local-path check a
publish runs on the folder (`local_paths_inside`)."""

from __future__ import annotations

import tempfile
from typing import Any
from unittest import mock

import datasets
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from m1data.publishing import export
from m1data.publishing.export import CONTENT_COLUMNS, public_rows
from m1data.redact import local_paths, public_scrub, scrub
from m1data.schema import rows_to_dataset

FEATURES = datasets.Features({
    "id": datasets.Value("string"),
    "n": datasets.Value("int32"),
    "ok": datasets.Value("bool"),
    "note": datasets.Value("string"),
    "options": datasets.List(datasets.Value("string")),
    "messages": datasets.List({"role": datasets.Value("string"), "content": datasets.Value("string")}),
    "meta": {"file": datasets.Value("string"), "tags": datasets.List(datasets.Value("string"))},
})


def reference_public_rows(rows: datasets.Dataset) -> datasets.Dataset:
    """The row-by-row version (m1data 0f40c91, which rewrote a column only when it held a local
    path; now also when it holds a URL's credentials): a column is rewritten when `public_scrub`
    changes any of its values in the table, every value of it through `public_scrub`, by `Dataset.map`;
    the dataset's own text (`CONTENT_COLUMNS`: "options", "messages" here) through `scrub`."""
    scrubs = {c: scrub if c in CONTENT_COLUMNS else public_scrub for c in rows.column_names}
    affected = [c for c in rows.column_names if any(scrubs[c](v) != v for v in rows.data.column(c).to_pylist())]
    if not affected:
        return rows
    return rows.map(lambda batch: {c: [scrubs[c](v) for v in batch[c]] for c in affected}, batched=True,
                    features=rows.features, keep_in_memory=True, load_from_cache_file=False)


# Pieces of text: local paths of every kind the filter knows, URLs with and without a user, what only
# looks like a path (mg/kg, a relative path, a URL's own path, `\boxed`), unicode, empty strings.
FRAGMENTS = st.sampled_from([
    "/home/alice/models/x.gguf", "/root/.cache/m.gguf", "~/notes/a.md", "C:\\Users\\bob\\f.txt", "file:///srv/a",
    "/opt/conda/lib/python3.11/site-packages/p/q.py", f"{tempfile.gettempdir()}/run/rows.jsonl", "/tmp",
    "https://user:s3cret@host.example/v1", "ftp://me@files.example/x", "https://hf.co/org/model", "mg/kg",
    "and/or", "data/train.jsonl", "\\boxed{C}", "a@b.c", "://@", "é/ü", "naïve", "日本語/テキスト", "🙂", "",
    " ", "\n", "\t", "/", "\\", "~", ":", "@", "(", '"', "x",
])
TEXT = st.lists(FRAGMENTS, max_size=6).map("".join)
MAYBE_TEXT = st.none() | TEXT
ROW = st.fixed_dictionaries({
    "n": st.integers(-(2**31), 2**31 - 1),
    "ok": st.none() | st.booleans(),
    "note": MAYBE_TEXT,
    "options": st.none() | st.lists(MAYBE_TEXT, max_size=4),
    "messages": st.none() | st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant"]),
                                                            "content": MAYBE_TEXT}), max_size=3),
    "meta": st.none() | st.fixed_dictionaries({"file": MAYBE_TEXT, "tags": st.lists(TEXT, max_size=3)}),
})


@st.composite
def datasets_(draw: Any) -> datasets.Dataset:
    """A Dataset of rows as a build holds them: one table or several chunks (a concatenation), maybe
    shuffled, selected or filtered (an indices mapping over the table)."""
    rows = [{"id": f"r{i}", **row} for i, row in enumerate(draw(st.lists(ROW, max_size=25)))]
    cut = draw(st.integers(0, len(rows)))
    parts = [rows_to_dataset(part, FEATURES) for part in (rows[:cut], rows[cut:]) if part] or [
        rows_to_dataset([], FEATURES)]
    ds = datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    how = draw(st.sampled_from(["table", "shuffle", "select", "filter"]))
    if how == "shuffle":
        ds = ds.shuffle(seed=draw(st.integers(0, 1000)), keep_in_memory=True)
    elif how == "select":
        ds = ds.select(draw(st.lists(st.integers(0, len(ds) - 1), max_size=len(ds))) if len(ds) else [])
    elif how == "filter":
        ds = ds.filter(lambda row: row["ok"] is not False, keep_in_memory=True)
    return ds


def same(ours: datasets.Dataset, theirs: datasets.Dataset) -> None:
    assert ours.column_names == theirs.column_names
    assert ours.features == theirs.features
    assert [f.type for f in ours.data.table.schema] == [f.type for f in theirs.data.table.schema]
    assert [list(row.items()) for row in ours.to_list()] == [list(row.items()) for row in theirs.to_list()]
    # datasets' `map` lists formatted columns sorted; the set is what formatting reads
    assert ({**ours.format, "columns": sorted(ours.format["columns"])}
            == {**theirs.format, "columns": sorted(theirs.format["columns"])})
    assert ours.split == theirs.split


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(datasets_(), st.sampled_from([1, 2, 3, 16_384]))
def test_public_rows_equals_the_row_by_row_version(ds, slice_rows):
    datasets.disable_progress_bars()
    with mock.patch.object(export, "REWRITE_SLICE", slice_rows):
        ours = public_rows(ds)
    theirs = reference_public_rows(ds)
    assert (ours is ds) == (theirs is ds)  # a Dataset without a local path is given back as it is
    same(ours, theirs)


def test_only_rows_that_may_change_go_through_python():
    """Why it matters: `public_scrub` on every value of a column with one path was most of 30 s per
    100K rows; the other rows' strings match neither a path's nor a URL user's literal start."""
    rows = [{"id": f"r{i}", "n": i, "ok": True, "note": f"rate {i} mg/kg, \\boxed{{A}} and/or https://hf.co/x",
             "options": ["a", "b"], "messages": [{"role": "user", "content": "q"}], "meta": None}
            for i in range(2_000)]
    rows[1_234]["note"] += " see /home/alice/notes.md"
    ds = rows_to_dataset(rows, FEATURES)
    with mock.patch("m1data.redact.public_scrub", wraps=public_scrub) as scrub:
        out = public_rows(ds)
    # the one row, once to find the column that changes and once to rewrite it
    assert scrub.call_count == 2 and all("/home/alice" in str(c.args[0]) for c in scrub.call_args_list)
    assert out[1_234]["note"].endswith(" see notes.md")
    same(out, reference_public_rows(ds))


def test_a_selection_from_a_table_of_chunks_keeps_its_order_and_types():
    table = pa.concat_tables([rows_to_dataset([{"id": f"c{k}-{i}", "n": i, "note": f"/home/u{k}/f{i}.txt",
                                                "options": [f"~/o{i}"]} for i in range(40)], FEATURES).data.table
                              for k in range(3)])
    ds = datasets.Dataset(table).select(list(range(119, -1, -3)))
    with mock.patch.object(export, "REWRITE_SLICE", 7):
        out = public_rows(ds)
    assert [out[0]["note"], out[1]["note"], out[0]["options"]] == ["f39.txt", "f36.txt", ["~/o39"]]  # content kept
    same(out, reference_public_rows(ds))


def test_the_datasets_own_text_is_published_as_built_and_a_path_in_it_is_warned_of(caplog):
    """A question that said "(/data)", an option "/run", a reasoning trace's "~/x" were published
    rewritten ("(data)", "run", "x") without a word: only what m1data records about a run (the raw
    `metadata`, a served model's path) has this machine's paths cut. A URL's credentials go everywhere."""
    rows = [{"id": "r1", "question": "Which folder (/data) holds it?", "options": ["/run", "/srv"],
             "reasoning": "Look in ~/x first, then https://me:s3cret@host.example/v1.", "answer_text": "/run",
             "metadata": '{"file": "/home/alice/raw/train.jsonl"}', "teacher_served_model": "/root/m/x.gguf"},
            {"id": "r2", "question": "Plain?", "options": ["a", "b"], "reasoning": "See ~/y.", "answer_text": "a",
             "metadata": "{}", "teacher_served_model": "deepseek-reasoner"}]
    ds = datasets.Dataset.from_list(rows)
    with caplog.at_level("WARNING", logger="m1data.publishing.export"):
        out = public_rows(ds).to_list()
    assert [row["question"] for row in out] == ["Which folder (/data) holds it?", "Plain?"]
    assert out[0]["options"] == ["/run", "/srv"] and out[0]["answer_text"] == "/run"
    assert out[0]["reasoning"] == "Look in ~/x first, then https://host.example/v1."
    assert out[0]["metadata"] == '{"file": "train.jsonl"}' and out[0]["teacher_served_model"] == "x.gguf"
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert [w.split(":")[0] for w in warned] == ["column 'question'", "column 'options'", "column 'reasoning'",
                                                 "column 'answer_text'"]
    assert "column 'reasoning': 2 row(s)" in warned[2] and "s3cret" not in " ".join(warned)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(st.lists(ROW, max_size=25), st.integers(1, 10))
def test_a_publish_lists_the_local_paths_the_string_by_string_scan_listed(tmp_path_factory, rows, row_group):
    """`local_paths_inside` reads a parquet file's columns by Arrow and runs `local_paths` on the rows
    that may hold one only: the same paths, in the same order (column by column, row by row), with
    the same row numbers across the file's row groups."""
    import pyarrow.parquet as pq

    from m1data.publishing.hub import _file_strings, _local_files, local_paths_inside

    folder = tmp_path_factory.mktemp("hub")
    (folder / "data").mkdir()
    table = rows_to_dataset([{"id": f"r{i}", **row} for i, row in enumerate(rows)], FEATURES).data.table
    pq.write_table(table, folder / "data" / "train.parquet", row_group_size=row_group)
    (folder / "README.md").write_text("card from /home/alice/m1data\n", encoding="utf-8")
    files = _local_files(folder)
    every_string = [f"{f.path_in_repo}{f' ({where})' if where else ''}: {p}"
                    for f in files for where, text in _file_strings(folder / f.path_in_repo) for p in local_paths(text)]
    assert local_paths_inside(folder) == every_string


def test_a_column_with_url_credentials_and_no_local_path_is_scrubbed() -> None:
    """A URL's `user:password@` is removed from a column even where no local path is: before, only
    columns with a local path went through `public_scrub`, so this one was published as it was."""
    rows = datasets.Dataset.from_list([{"id": "r0", "note": "served by https://alice:s3cretPW@llm.example/v1 today"},
                            {"id": "r1", "note": "nothing here"}])
    out = public_rows(rows)
    assert out["note"] == ["served by https://llm.example/v1 today", "nothing here"]
    assert "s3cretPW" not in str(out.to_list())


def test_the_rendered_conversation_is_published_as_built_like_the_messages_it_renders():
    """`text` (the format stage's rendering of `messages`, `m1data.stages.formatting.to_sft`) is the
    dataset's own text: left out of `CONTENT_COLUMNS`, a question's "~/notes/log.txt" was kept in
    its messages and prompts and cut to "log.txt" in its text, two versions of one row published."""
    from m1data.stages.formatting import hub_configs, to_sft

    question = "Which file did the patient keep at ~/notes/log.txt? A. x B. y"
    built = to_sft(datasets.Dataset.from_list([{"id": "r1", "prompt": question, "reasoning": "think",
                                                "teacher_reply": "Answer: A"}]))
    (name, view), *_ = hub_configs(built, "m1k").items()
    out = public_rows(view)
    assert out[0]["messages"][0]["content"] == question
    assert question in out[0]["text"] and out[0]["text"] == built[0]["text"]


def test_each_column_is_read_once_to_find_what_to_warn_of_and_what_to_rewrite(caplog):
    """The dataset's own text was read twice, once for the local-path warning and once for URL
    credentials; one pass now tells both, with the same warning and rewrite."""
    rows = [{"id": "r1", "question": "Which folder (/data) holds it?",
             "reasoning": "See https://me:s3cret@h.example/v1", "metadata": '{"file": "/home/alice/raw/train.jsonl"}'},
            {"id": "r2", "question": "Plain?", "reasoning": "See ~/y.", "metadata": "{}"}]
    ds = datasets.Dataset.from_list(rows)
    with mock.patch.object(export, "strings_matching", wraps=export.strings_matching) as read, \
            caplog.at_level("WARNING", logger="m1data.publishing.export"):
        out = public_rows(ds)
    assert read.call_count == len(ds.column_names) == 4  # one chunk per column
    assert out["reasoning"] == ["See https://h.example/v1", "See ~/y."] and out["question"] == ds["question"]
    assert out["metadata"] == ['{"file": "train.jsonl"}', "{}"]
    warned = [r.getMessage().split(":")[0] for r in caplog.records if r.levelname == "WARNING"]
    assert warned == ["column 'question'", "column 'reasoning'"]
