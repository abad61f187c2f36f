"""Every record of a file users bring is accounted for: read as a row, or dropped with a reason,
or (a whole-file fault) one clear error; and a row read is read in its file's meaning.

The files here are the native shapes of the four sources written the ways they reach users (as
JSONL, JSON, CSV or parquet, by hand or by pandas) with the faults real files have."""

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
