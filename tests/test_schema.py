import functools
import hashlib
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import SHARED_DATA

from m1data.errors import UserError
from m1data.schema import LETTERS, RowError, as_dataset, content_id, make_row, render_prompt


def row(row_id="s:1", options=("alpha", "beta", "gamma", "delta"), answer_idx=0, **kw):
    return make_row(source="s", row_id=row_id, question="Which one?", options=list(options),
                    answer_idx=answer_idx, raw={"x": 1}, **kw)


def test_answer_follows_the_shuffle():
    for i in range(50):
        r = row(row_id=f"s:{i}")
        assert r["answer_text"] == "alpha"
        assert r["options"][r["answer_idx"]] == "alpha"
        assert r["answer_letter"] == LETTERS[r["answer_idx"]]
        assert sorted(r["options"]) == ["alpha", "beta", "delta", "gamma"]


def test_shuffle_depends_only_on_seed_and_id():
    assert row(row_id="s:7")["options"] == row(row_id="s:7")["options"]
    differ = sum(row(row_id=f"s:{i}", seed=1)["options"] != row(row_id=f"s:{i}", seed=2)["options"] for i in range(20))
    assert differ >= 10  # another seed reorders most rows (a fixed pair of permutations agrees 1 time in 24)


def test_the_default_shuffle_is_seed_42():
    """Reference s.2: options are shuffled with seed 42 unless a seed is given."""
    for i in range(20):
        assert row(row_id=f"s:{i}") == row(row_id=f"s:{i}", seed=42)
    assert sum(row(row_id=f"s:{i}")["options"] != row(row_id=f"s:{i}", seed=43)["options"] for i in range(20)) >= 10


def test_answer_letters_spread_evenly():
    counts = Counter(row(row_id=f"s:{i}")["answer_letter"] for i in range(4000))
    # Uniform over A-D: chi-square with 3 degrees of freedom; 16.27 is the 0.1% critical value.
    chi2 = sum((c - 1000) ** 2 / 1000 for c in counts.values())
    assert set(counts) == set("ABCD")
    assert chi2 < 16.27


# options that only look like the kinds below (found on real rows: B cells, Roman numerals, sentences)
WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "Vitamin A and D", "Hepatitis B", "Type A or B", "B.", "C.",
         "I only", "All of them inhibit the enzyme", "causing all of these different symptoms",
         "less mobility than either of them"]
ABOUT_OTHERS = ["All of the above", "None of the above", "Both of the above", "all of these", "None of them",
                "All the previous answers are correct.", "All the above is true.", "All of above",
                "None of the previous"]
NAMING_LETTERS = ["Both A and B", "A and C", "A, B and C", "B & D", "A and B are correct", "Only A and C"]


@settings(max_examples=300, deadline=None)
@given(options=st.lists(st.sampled_from(WORDS), min_size=3, max_size=6, unique=True), data=st.data())
def test_options_about_the_others_keep_their_place(options, data):
    """"All of the above" moved to B covered one option, and "Both A and B" named two others once
    shuffled (audit): the first kind keeps its place, the second keeps the whole row in its order.
    Without either, the shuffle is the plain Fisher-Yates of (seed, id) it always was."""
    from m1data.schema import shuffled

    row_id = data.draw(st.text(min_size=1, max_size=8))
    plain, answer = shuffled(options, 0, 42, row_id)
    state = int.from_bytes(hashlib.blake2b(f"42:{row_id}".encode(), digest_size=16).digest(), "big")
    order = list(range(len(options)))
    for i in range(len(order) - 1, 0, -1):
        state, j = divmod(state, i + 1)
        order[i], order[j] = order[j], order[i]
    assert plain == [options[i] for i in order] and plain[answer] == options[0]
    place = data.draw(st.integers(0, len(options)))
    kind = data.draw(st.sampled_from(["about", "naming"]))
    extra = data.draw(st.sampled_from(ABOUT_OTHERS if kind == "about" else NAMING_LETTERS))
    with_it = options[:place] + [extra] + options[place:]
    key = data.draw(st.integers(0, len(with_it) - 1))
    out, moved_key = shuffled(with_it, key, 42, row_id)
    assert out[moved_key] == with_it[key] and sorted(out) == sorted(with_it)
    if kind == "about":
        assert out[place] == extra
    else:
        assert out == with_it


def test_no_shuffle_keeps_native_order():
    r = row(seed=None, answer_idx=2)
    assert r["options"] == ["alpha", "beta", "gamma", "delta"]
    assert r["answer_letter"] == "C"


def test_prompt_format():
    assert render_prompt("Q?", ["a", "b"]) == "Q?\nA. a\nB. b"
    assert render_prompt("Q?", ["yes", "no"], context="C1\nC2") == "C1\nC2\nQ?\nA. yes\nB. no"


@pytest.mark.parametrize(
    "kwargs, reason",
    [
        ({"options": ["a", "b"], "answer_idx": 2}, "answer_out_of_range"),
        ({"options": ["a", "a "], "answer_idx": 0}, "duplicate_options"),
        ({"options": ["a", ""], "answer_idx": 0}, "empty_option"),
        ({"options": ["a"], "answer_idx": 0}, "too_few_options"),
    ],
)
def test_bad_rows_raise_with_reason(kwargs, reason):
    with pytest.raises(RowError) as err:
        row(**kwargs)
    assert err.value.reason == reason


def test_empty_question_is_a_bad_row():
    with pytest.raises(RowError) as err:
        make_row(source="s", row_id="s:1", question="  ", options=["a", "b"], answer_idx=0, raw={})
    assert err.value.reason == "empty_question"


def test_content_id_ignores_option_order_and_spacing():
    assert content_id("medqa", "Q  ?", ["a", "b"]) == content_id("medqa", "Q ?", ["b", "a"])
    assert content_id("medqa", "Q?", ["a", "b"]) != content_id("medqa", "Q?", ["a", "c"])


# ---------------------------------------------------------------------------------------------
# as_dataset: the rows a researcher holds, as one Dataset


@settings(max_examples=60, deadline=None)
@given(ids=st.lists(st.one_of(st.integers(0, 99), st.text("ab", min_size=1, max_size=3), st.none()),
                    min_size=1, max_size=8),
       kind=st.sampled_from(["list", "pandas"]))
def test_as_dataset_reads_each_column_in_one_type_or_names_the_mixed_one(ids, kind):
    # ids 1 and "b" failed in pyarrow: "Could not convert 'b' with type str: tried to convert to int64"
    import pandas as pd

    rows = [{"id": i, "question": f"q{n}"} for n, i in enumerate(ids)]
    data = rows if kind == "list" else pd.DataFrame(rows)
    if len({type(i) for i in ids if i is not None}) > 1:
        with pytest.raises(UserError, match=r"^the rows: column 'id' mixes number and str values; give each"):
            as_dataset(data)
        return
    ds = as_dataset(data)
    assert ds["question"] == [row["question"] for row in rows]
    assert [i is None or i != i for i in ds["id"]] == [i is None for i in ids]  # pandas: None in numbers is NaN


def test_as_dataset_keeps_the_keys_only_later_rows_have():
    # datasets' from_list takes its columns from the first row: a later row's context was dropped
    ds = as_dataset([{"id": "a", "question": "q"}, {"id": "b", "question": "r", "context": "An abstract."}])
    assert ds.column_names == ["id", "question", "context"] and ds["context"] == [None, "An abstract."]


def test_as_dataset_refuses_what_is_no_table():
    for data in ({"id": ["a"]}, (row for row in [{"id": "a"}]), ["a question"]):
        with pytest.raises(TypeError, match="the rows must be a datasets.Dataset, a pandas or polars DataFrame"):
            as_dataset(data)
    assert len(as_dataset([])) == 0


@settings(max_examples=40, deadline=None)
@given(
    rows=st.lists(st.fixed_dictionaries({
        "id": st.text(min_size=1, max_size=4),
        "question": st.one_of(st.none(), st.text(max_size=6)),
        "options": st.lists(st.text(max_size=3), max_size=4),
        "answer_idx": st.one_of(st.none(), st.integers(-1, 3)),
    }), max_size=30),
    view=st.sampled_from(["as is", "shuffled", "selected", "filtered", "sliced", "shuffled then selected"]),
    seed=st.integers(0, 3),
)
def test_column_values_are_the_rows_values_in_their_order(rows, view, seed):
    """`column_values` reads a column through Arrow (and the indices mapping of a shuffled,
    selected or filtered Dataset by one take): the same values, in the same order, as the rows
    themselves give, for every view a stage may hand on."""
    import datasets

    from m1data.schema import column_array, column_values

    ds = datasets.Dataset.from_list(rows) if rows else datasets.Dataset.from_dict(
        {"id": [], "question": [], "options": [], "answer_idx": []})
    if view in ("shuffled", "shuffled then selected"):
        ds = ds.shuffle(seed=seed)
    if view in ("selected", "shuffled then selected"):
        ds = ds.select([i for i in range(len(ds)) if (i + seed) % 3 != 0][::-1])
    if view == "filtered":
        ds = ds.filter(lambda row: len(row["id"]) % 2 == seed % 2)
    if view == "sliced" and seed < len(ds):  # (datasets refuses an empty slice that starts at the end)
        ds = ds.select(range(seed, len(ds)))
    for name in ds.column_names:
        expected = [ds[i][name] for i in range(len(ds))]
        assert column_values(ds, name) == expected, (view, name)
        assert len(column_array(ds, name)) == len(ds)


def test_column_values_reads_a_batch_as_it_is():
    """A stage's per-batch helpers are also handed plain dicts of lists (``map(batched=True)``,
    Ray Data batches, the tests' own rows): those are read as they are."""
    from m1data.schema import column_values

    assert column_values({"prompt": ["a", "b"], "id": [1, 2]}, "prompt") == ["a", "b"]


@functools.lru_cache(maxsize=1)
def _real_rows():
    """MedQA's real test questions from ../shared/data, loaded as a source (every column of a row)."""
    from m1data.reading.sources import load_source

    return load_source("medqa", SHARED_DATA / "raw/medqa/4_options_phrases_no_exclude_test.jsonl").rows


@settings(max_examples=15, deadline=None)
@given(view=st.sampled_from(["as is", "shuffled", "selected", "filtered", "shuffled then selected", "none"]),
       seed=st.integers(0, 50), arrow=st.booleans())
def test_flattened_is_flatten_indices_and_writes_the_same_file(view, seed, arrow, tmp_path_factory):
    """`flattened` (one Arrow take) gives what datasets' `flatten_indices` gives, for every view a
    stage hands on, on real rows: the same table, features and format; and a selection written
    after it is the file `to_parquet` wrote of the selection itself: the same rows, schema
    (datasets' features in its metadata) and row groups (the bytes differ: Arrow lays out the
    pages of a gathered table otherwise)."""
    import pyarrow.parquet as pq

    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    from m1data.schema import flattened

    ds = _real_rows()
    if view in ("shuffled", "shuffled then selected"):
        ds = ds.shuffle(seed=seed)
    if view in ("selected", "shuffled then selected"):
        ds = ds.select([i for i in range(len(ds)) if (i + seed) % 3 != 0][::-1])
    if view == "filtered":
        ds = ds.filter(lambda row: len(row["question"]) % 2 == seed % 2)
    if view == "none":
        ds = ds.select([])
    if arrow:
        ds = ds.with_format("arrow", columns=["id", "prompt"])
    flat, expected = flattened(ds), ds.flatten_indices(keep_in_memory=True)
    assert flat._indices is None
    assert flat.data.table.equals(expected.data.table)
    assert flat.features == expected.features and flat.format == expected.format and flat.split == expected.split
    folder = tmp_path_factory.mktemp("flat")
    ds.to_parquet(str(folder / "as_is.parquet"))
    flat.to_parquet(str(folder / "flattened.parquet"))
    before, after = pq.ParquetFile(folder / "as_is.parquet"), pq.ParquetFile(folder / "flattened.parquet")
    assert after.read().equals(before.read(), check_metadata=True)  # the rows, and datasets' features
    assert after.metadata.num_row_groups == before.metadata.num_row_groups


# --- key_problem: may a row be graded by its options and answer_idx? ---------------------------

_DRUGS = ["Heparin", "Warfarin", "Aspirin", "Clopidogrel"]
_LISTED = {  # prompts that list the options in order, as other templates write them
    "m1data's": render_prompt("Which drug?", _DRUGS),
    "CRLF lines": "Which drug?\r\nA. Heparin\r\nB. Warfarin\r\nC. Aspirin\r\nD. Clopidogrel\r\n",
    "one line, then Answer:": "Which drug? (A) Heparin (B) Warfarin (C) Aspirin (D) Clopidogrel Answer:",
    "colons, an instruction after": "Which drug?\nA: Heparin\nB: Warfarin\nC: Aspirin\nD: Clopidogrel\n\nReply with a letter.",
    "options reflowed": "Which drug?\nA.  Heparin\nB. Warfarin\nC. Aspirin\nD. Clopidogrel",
    "labels on their own lines": "Which drug?\nA.\nHeparin\nB.\nWarfarin\nC.\nAspirin\nD.\nClopidogrel",
    "a non-breaking space after each label": "Which drug?\nA.\u00a0Heparin\nB.\u00a0Warfarin\nC.\u00a0Aspirin\nD.\u00a0Clopidogrel",
    "an instruction starting E.g.": render_prompt("Which drug?", _DRUGS) + "\nE.g. reply with one letter",
}
_UNLISTED = {  # prompts that show other options, or more
    "swapped": "Which drug?\nA. Warfarin\nB. Heparin\nC. Aspirin\nD. Clopidogrel",
    "a fifth option": render_prompt("Which drug?", _DRUGS) + "\nE. Dabigatran",
    "a fifth option after a blank line": render_prompt("Which drug?", _DRUGS) + "\n\nE. Dabigatran",
    "a fifth option, CRLF lines": (render_prompt("Which drug?", _DRUGS) + "\nE. Dabigatran").replace("\n", "\r\n"),
    "a fifth option on the one line": "Which drug? (A) Heparin (B) Warfarin (C) Aspirin (D) Clopidogrel (E) Dabigatran",
    "a longer last option": "Which drug?\nA. Heparin\nB. Warfarin\nC. Aspirin\nD. Clopidogrel and aspirin",
    "no options": "Which drug?",
}


@pytest.mark.parametrize("name", sorted(_LISTED))
def test_a_prompt_that_lists_the_options_in_order_may_be_graded(name):
    from m1data.schema import key_problem

    assert key_problem(_LISTED[name], _DRUGS, 0, "a", " heparin ") is None  # letter and text in any case or spacing


@pytest.mark.parametrize("name", sorted(_UNLISTED))
def test_a_prompt_that_shows_other_options_may_not(name):
    from m1data.schema import key_problem

    assert key_problem(_UNLISTED[name], _DRUGS, 0).reason == "prompt_mismatch"


def test_a_key_that_disagrees_or_is_no_index():
    from m1data.schema import key_problem

    prompt = _LISTED["m1data's"]
    assert key_problem(prompt, _DRUGS, 0, answer_letter="B").reason == "answer_mismatch"
    assert key_problem(prompt, _DRUGS, 0, answer_text="Warfarin").reason == "answer_mismatch"
    # not this check's to judge: the stage stops on them, naming the row (a 1-based column would
    # otherwise have been graded one option off, row by row)
    assert key_problem(prompt, _DRUGS, 4) is None and key_problem(prompt, _DRUGS, "A") is None
    assert key_problem(prompt, None, 0) is None


def test_an_eval_row_whose_answer_is_another_options_text_is_not_scored():
    """Eval sets keep repeated options (they grade as they should when the answer is not one of
    them), but a real MedMCQA row had one text four times: any reply graded correct."""
    from m1data.schema import validate

    validate("Q?", ["Iron", "Iron", "Zinc"], 2, unique_options=False)  # a repeated wrong option: still scored
    for options, answer in ((["Iron", "iron ", "Zinc"], 0), (["x", "x", "x", "x"], 3)):
        with pytest.raises(RowError) as err:
            validate("Q?", options, answer, unique_options=False)
        assert err.value.reason == "ambiguous_answer"


def test_an_answer_text_is_told_from_its_option_with_case_folded():
    """Review: telling them apart with `lower` dropped rows whose answer text wrote the option in
    capitals with ß as SS, or with the micro sign where the option has the Greek mu."""
    from m1data.schema import key_problem

    for options, written in ((["Straße", "Ort"], "STRASSE"), (["5 µg", "10 mg"], "5 μg")):
        assert key_problem(render_prompt("Q?", options, ""), options, 0, "A", written) is None


@pytest.mark.parametrize(("value", "expected"), [
    (1, 1), (np.int64(2), 2), (np.int32(-1), -1), (1.0, 1), (np.float64(2.0), 2), (np.float32(3.0), 3), (-1.0, -1),
    (1.7, None), (float("nan"), None), (float("inf"), None), (np.float64("nan"), None), (True, None),
    (np.bool_(True), None), ("1", None), ("1.0", None), ("B", None), (None, None), ([1], None),
])
def test_integer_key_reads_whole_numbers_of_any_number_type(value, expected):
    """pandas writes an integer key column with a hole in it as floats, and numpy gives its own
    number types: a key 2.0 or numpy's 2 is the index 2 at every door; 1.7, NaN, a bool or text is no index."""
    from m1data.schema import integer_key

    assert integer_key(value) == expected
    assert expected is None or type(integer_key(value)) is int
