"""Scoring a MeSH tagger against reference codes: an LLM's tags or human labels.

Why apart from the taggers (m1data.stages.mesh_offline): choosing a tagger, or checking that a retrained
one still agrees with the LLM it imitates, is a question about labelled rows, asked by the
benchmark and by a researcher comparing taggers, never by a build. The metrics:

* `agreement`: accuracy, Cohen's kappa, macro-F1 and class coverage of one code per row;
* `split_indices` and `held_out_agreement`: every offline tagger on a seeded held-out split,
  against the majority-class floor;
* `hit_rate`, `random_hit_rate`, `frequent_baseline`: top-k predictions against *sets* of
  acceptable codes (human indexing gives several qualifiers per item; the benchmark widens a
  qualifier to the ones below it in NLM's hierarchy with `m1data.stages.mesh.qualifier_subtree`).

scikit-learn is imported only by `agreement`, when it is called.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from math import comb
from typing import Any

import numpy as np

from m1data.errors import UserError
from m1data.stages.mesh_offline import SupervisedConfig, SupervisedTagger, ZeroShotTagger, require_sklearn

__all__ = [
    "agreement",
    "frequent_baseline",
    "held_out_agreement",
    "hit_rate",
    "random_hit_rate",
    "split_indices",
]


# ---------------------------------------------------------------------------------------------
# One code per row


def agreement(pred_codes: Sequence[str], ref_codes: Sequence[str]) -> dict[str, Any]:
    """How far predicted codes match reference codes (an LLM's tags, or human labels).

    Cohen's kappa corrects accuracy for chance, which matters here: the domains of m23K are
    very unequal, so a tagger that guesses the big ones scores a fair accuracy by luck.
    `per_class` gives, for each reference code, its support and the share of its rows the tagger
    got (recall); `class_coverage` is the share of reference classes recalled at least once, the
    number that matters to the m1K sampler (a domain the tagger never finds is never drawn).
    """
    require_sklearn()
    from sklearn.metrics import cohen_kappa_score, f1_score

    pred, ref = [str(c) for c in pred_codes], [str(c) for c in ref_codes]
    if len(pred) != len(ref):
        raise UserError(f"{len(pred)} predictions for {len(ref)} references")
    if not ref:
        raise UserError("agreement of nothing is undefined")
    hits = Counter(r for p, r in zip(pred, ref) if p == r)
    support = Counter(ref)
    predicted = Counter(pred)
    per_class = {
        code: {"support": support[code], "predicted": predicted[code],
               "recall": round(hits[code] / support[code], 4)}
        for code in sorted(support)
    }
    return {
        "n": len(ref),
        "accuracy": sum(hits.values()) / len(ref),
        "kappa": float(cohen_kappa_score(ref, pred)) if len(set(ref) | set(pred)) > 1 else 1.0,
        "macro_f1": float(f1_score(ref, pred, average="macro", zero_division=0)),
        "classes_in_reference": len(support),
        "classes_predicted": len(predicted),
        "class_coverage": sum(1 for code in support if hits[code]) / len(support),
        "per_class": per_class,
    }


def split_indices(n: int, test_fraction: float = 0.2, seed: int = 42) -> tuple[list[int], list[int]]:
    """A seeded random train/test split of range(n). Not stratified: rare qualifiers (one or two
    rows) would make a stratified split fail, and they are rare in the test set by design."""
    if not 0.0 < test_fraction < 1.0:
        raise UserError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    if n < 2:
        raise UserError(f"a train/test split needs at least 2 rows, got {n}")
    order = np.random.Generator(np.random.PCG64(seed)).permutation(n)
    n_test = min(n - 1, max(1, round(n * test_fraction)))
    return sorted(order[n_test:].tolist()), sorted(order[:n_test].tolist())


def held_out_agreement(
    texts: Sequence[str],
    codes: Sequence[str],
    *,
    test_fraction: float = 0.2,
    seed: int = 42,
    methods: Sequence[str] = ("zero-shot", "tfidf", "minilm"),
) -> dict[str, dict[str, Any]]:
    """Agreement of each offline tagger with `codes` on a held-out split (the supervised ones
    are trained on the rest). Also the majority-class baseline, the floor any tagger must beat."""
    if len(texts) != len(codes):
        raise UserError(f"{len(texts)} texts for {len(codes)} codes")
    train, test = split_indices(len(texts), test_fraction, seed)
    train_texts, test_texts = [texts[i] for i in train], [texts[i] for i in test]
    train_codes, test_codes = [codes[i] for i in train], [codes[i] for i in test]
    majority = Counter(train_codes).most_common(1)[0][0]
    results = {"majority": agreement([majority] * len(test), test_codes)}
    for method in methods:
        if method == "zero-shot":
            tagger: Any = ZeroShotTagger()
        else:
            tagger = SupervisedTagger(SupervisedConfig(features=method)).fit(train_texts, train_codes)
        results[method] = agreement(tagger.predict(test_texts), test_codes)
    return results


# ---------------------------------------------------------------------------------------------
# Hit rates against sets of acceptable codes (human indexing gives several qualifiers per item)


def hit_rate(ranked: Sequence[Sequence[str]], targets: Sequence[frozenset[str] | set[str]], k: int) -> float:
    """Share of items whose top-k predictions include at least one acceptable code."""
    if len(ranked) != len(targets) or not targets:
        raise UserError("need one ranking per target set, and at least one")
    return sum(1 for r, t in zip(ranked, targets) if set(r[:k]) & set(t)) / len(targets)


def random_hit_rate(targets: Sequence[frozenset[str] | set[str]], k: int, n_classes: int = 76) -> float:
    """Expected hit rate of k distinct codes drawn uniformly: exact, not simulated."""
    if not targets:
        raise UserError("need at least one target set")
    misses = [comb(n_classes - len(t), k) / comb(n_classes, k) for t in targets]
    return 1.0 - sum(misses) / len(targets)


def frequent_baseline(train_targets: Sequence[frozenset[str] | set[str]], k: int) -> list[str]:
    """The k codes acceptable for the most training items: what a tagger that ignores the
    question would answer. Fit it on other items than it is scored on."""
    counts = Counter(code for t in train_targets for code in t)
    return [code for code, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:k]]
