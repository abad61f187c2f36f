"""Scoring a tagger (m1data.stages.mesh_eval): agreement metrics, hit rates against sets of acceptable
codes, the seeded split, and the held-out comparison on the synthetic labelled set of
test_mesh_offline."""

from __future__ import annotations

from importlib.util import find_spec

import pytest
from test_mesh_offline import synthetic

from m1data.errors import UserError
from m1data.stages.mesh_eval import (
    agreement,
    frequent_baseline,
    held_out_agreement,
    hit_rate,
    random_hit_rate,
    split_indices,
)

pytestmark = pytest.mark.skipif(find_spec("sklearn") is None,
                                reason="scikit-learn is not installed (pip install 'm1data[tagger]')")

# ---------------------------------------------------------------------------------------------
# Metrics


def test_agreement_perfect_and_chance_corrected():
    perfect = agreement(["24", "38", "24"], ["24", "38", "24"])
    assert perfect["accuracy"] == 1.0 and perfect["kappa"] == pytest.approx(1.0)
    assert perfect["class_coverage"] == 1.0
    # Always answering the majority class: decent accuracy, zero kappa.
    lazy = agreement(["24"] * 4, ["24", "24", "24", "38"])
    assert lazy["accuracy"] == 0.75 and lazy["kappa"] == pytest.approx(0.0)
    assert lazy["class_coverage"] == 0.5
    assert lazy["per_class"]["38"] == {"support": 1, "predicted": 0, "recall": 0.0}
    assert lazy["per_class"]["24"] == {"support": 3, "predicted": 4, "recall": 1.0}
    assert (lazy["classes_in_reference"], lazy["classes_predicted"]) == (2, 1)


def test_agreement_rejects_mismatched_lengths():
    with pytest.raises(ValueError):
        agreement(["01"], ["01", "02"])
    with pytest.raises(ValueError):
        agreement([], [])


def test_hit_rates_and_baselines():
    ranked = [["01", "02", "03"], ["05", "06", "07"], ["09", "10", "11"]]
    targets = [frozenset({"01"}), frozenset({"07"}), frozenset({"44"})]
    assert hit_rate(ranked, targets, 1) == pytest.approx(1 / 3)
    assert hit_rate(ranked, targets, 3) == pytest.approx(2 / 3)
    assert random_hit_rate([frozenset({"01"})], 1) == pytest.approx(1 / 76)
    assert random_hit_rate([frozenset({"01"})], 3) == pytest.approx(3 / 76)
    assert random_hit_rate([frozenset({"01", "02"})], 1) == pytest.approx(2 / 76)
    assert frequent_baseline([{"05", "07"}, {"07"}, {"09", "05"}, {"07"}], 2) == ["07", "05"]


def test_split_is_seeded_disjoint_and_complete():
    train, test = split_indices(50, 0.2, seed=1)
    assert len(test) == 10 and not set(train) & set(test) and sorted(train + test) == list(range(50))
    assert split_indices(50, 0.2, seed=1) == (train, test)
    assert split_indices(50, 0.2, seed=2) != (train, test)


@pytest.mark.parametrize("call, message", [
    (lambda: split_indices(10, 1.5), "test_fraction must be between 0 and 1"),
    (lambda: split_indices(10, -0.2), "test_fraction must be between 0 and 1"),
    (lambda: split_indices(1), "needs at least 2 rows"),
    (lambda: held_out_agreement(["a", "b"], ["01"], methods=()), "2 texts for 1 codes"),
    (lambda: random_hit_rate([], 1), "at least one target set"),
])
def test_scoring_refuses_what_it_cannot_score_in_one_line(call, message):
    """These were accepted (a test fraction of 1.5 or -0.2), or failed with an IndexError or a
    ZeroDivisionError."""
    with pytest.raises(UserError, match=message):
        call()
    train, test = split_indices(2, 0.9)
    assert len(train) == len(test) == 1  # a split always leaves a row on each side


def test_held_out_agreement_beats_the_majority_baseline():
    texts, codes = synthetic(200, seed=3)
    results = held_out_agreement(texts, codes, methods=("tfidf",))
    assert set(results) == {"majority", "tfidf"}
    assert results["majority"]["kappa"] == pytest.approx(0.0)
    assert results["tfidf"]["accuracy"] > results["majority"]["accuracy"] + 0.4
