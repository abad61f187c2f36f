"""ngram_overlap against a plain reference on hand-made and real rows."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from m1data.stages.ngram import ngram_overlap, tokens


def reference(texts: list[str], evals: list[str], n: int) -> list[int | None]:
    """Literal definition: lowest eval index sharing a run of n words (or equal if short)."""
    def grams(words: list[str]) -> set[tuple[str, ...]]:
        if len(words) < n:
            return {("<short>",) + tuple(words)} if words else set()
        return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}

    eval_grams = [grams(tokens(e)) for e in evals]
    out: list[int | None] = []
    for t in texts:
        g = grams(tokens(t))
        out.append(next((i for i, eg in enumerate(eval_grams) if g & eg), None))
    return out


def test_tokens_strip_punctuation_and_case() -> None:
    assert tokens("A 45-year-old MAN, (presents)!") == ["a", "45", "year", "old", "man", "presents"]


def test_shared_eight_gram_is_flagged() -> None:
    ev = ["The patient was treated with intravenous antibiotics for seven days and recovered."]
    train = [
        "Before that, THE patient was treated with intravenous antibiotics; for seven days!",
        "The patient was treated with oral antibiotics for seven days and recovered.",
        "Nothing in common here at all, truly nothing whatsoever.",
    ]
    assert ngram_overlap(train, ev) == [0, None, None]
    assert ngram_overlap(train, ev, n=4) == [0, 0, None]


def test_short_texts_match_only_when_equal() -> None:
    ev = ["Which of the following?", "long eval text " * 4]
    train = ["which of the following", "Which of the following is the best next step?", ""]
    assert ngram_overlap(train, ev) == [0, None, None]


def test_lowest_eval_index_wins() -> None:
    sentence = "one two three four five six seven eight nine"
    ev = ["unrelated words only here", sentence, sentence + " ten"]
    assert ngram_overlap([sentence], ev) == [1]


def test_bad_n() -> None:
    with pytest.raises(ValueError):
        ngram_overlap(["a"], ["a"], n=0)


def test_matches_reference_on_real_rows(shared_data: Path) -> None:
    path = shared_data / "raw/medqa/4_options_phrases_no_exclude_test.jsonl"
    with path.open(encoding="utf-8") as fh:
        questions = [json.loads(line)["question"] for line, _ in zip(fh, range(300))]
    rng = random.Random(5)
    evals = questions[:150]
    train = questions[150:]
    for q in rng.sample(evals, 30):  # planted: a 10-word window of an eval question
        words = q.split()
        start = rng.randrange(max(1, len(words) - 10))
        train.append("Context: " + " ".join(words[start:start + 10]) + " ... rest differs")
    for n in (5, 8, 13):
        got = ngram_overlap(train, evals, n=n)
        assert got == reference(train, evals, n)
    assert sum(x is not None for x in ngram_overlap(train, evals)) >= 30


BOILERPLATE = "Which of the following is the most likely diagnosis in this patient?"


def test_boilerplate_shared_by_many_training_rows_is_ignored() -> None:
    """A stock exam phrase in many training rows is the genre, not a copy; a copied stem still counts."""
    copied = "A 30-year-old woman has a painless thyroid nodule with psammoma bodies on biopsy. " + BOILERPLATE
    train = [f"Case {i}: a patient with finding number {i} and nothing else. {BOILERPLATE}" for i in range(8)]
    train.append(copied)
    evals = ["A child has a rash on the cheeks after a fever. " + BOILERPLATE, copied]
    assert ngram_overlap(train, evals) == [0] * 8 + [0]  # without the rule: every row "contaminated"
    assert ngram_overlap(train, evals, max_train_rows=5) == [None] * 8 + [1]
    assert ngram_overlap(train, evals, max_train_rows=9) == [0] * 8 + [0]  # 9 rows share it: not above 9


def test_a_single_str_or_a_none_is_refused_not_read_per_character() -> None:
    # "a b c ..." as texts was read as one text per character: 17 rows of None, silently
    words = "one two three four five six seven eight nine"
    with pytest.raises(TypeError, match="texts must be a sequence of str, not a single str"):
        ngram_overlap(words, [words])
    with pytest.raises(TypeError, match="eval_texts must be a sequence of str"):
        ngram_overlap([words], words)
    with pytest.raises(TypeError, match=r"texts\[0\] is NoneType"):
        ngram_overlap([None], [words])


def test_keys_are_the_same_in_processes_with_different_hash_seeds() -> None:
    """Keys made by two workers (or stored and read back) must compare: str hash() is salted
    per process, so the keys of one text differed between PYTHONHASHSEED=1 and =2."""
    import os
    import subprocess
    import sys

    code = ("import json; from m1data.stages.ngram import ngram_keys; "
            "print(json.dumps([sorted(ngram_keys(t)) for t in ['a b c', "
            "'the patient was treated with intravenous antibiotics for seven days and recovered']]))")
    keys = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        keys.append(json.loads(done.stdout))
    assert keys[0] == keys[1]
    assert len(keys[0][0]) == 1 and len(keys[0][1]) == 5  # one short key; 12 words give 5 eight-grams
