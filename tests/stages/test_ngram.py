"""ngram_overlap against a plain reference on hand-made and real rows."""

from __future__ import annotations

import csv
import json
import random
import re
from collections import Counter
from pathlib import Path
from unittest import mock

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rapidfuzz import fuzz

from m1data.errors import UserError
from m1data.stages import ngram
from m1data.stages.dedup import DecontaminateConfig
from m1data.stages.ngram import ngram_keys, ngram_overlap, tokens

STAGE_SHARE = DecontaminateConfig().ngram_min_share  # what the decontaminate stage asks for


def reference(texts: list[str], evals: list[str], n: int, max_train_rows: int | None = None,
              min_share: float | None = None) -> list[int | None]:
    """Literal definition (the per-row implementation this module had, with tuples for its
    blake2b keys): lowest eval index sharing a run of n Python ``\\w+`` words, or an equal
    sequence if short, ignoring runs in more than max_train_rows training texts; with
    min_share, only an eval text of whose distinct runs the row holds at least that share."""
    def grams(text: str) -> set[tuple[str, ...]]:
        words = re.findall(r"\w+", text.lower())
        if len(words) < n:
            return {("<short>",) + tuple(words)} if words else set()
        return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}

    train = [grams(t) for t in texts]
    rows = Counter(g for gs in train for g in gs)
    ignored = {g for g, r in rows.items() if max_train_rows is not None and r > max_train_rows}
    totals = [len(grams(e)) for e in evals]
    short = [0 < len(re.findall(r"\w+", e.lower())) < n for e in evals]
    eval_grams = [grams(e) - ignored for e in evals]

    def counts(held: int, i: int) -> bool:
        if min_share is None:
            return held > 0
        return held > 0 and held >= min_share * totals[i] and (held >= ngram.MIN_HELD or short[i])

    return [next((i for i, eg in enumerate(eval_grams) if counts(len(g & eg), i)), None) for g in train]


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


VIGNETTE = ("A 51-year-old man presents to his primary care provider for intermittent shaking of his "
            "hands. For the last several years he has noticed this shaking when he brushes his teeth and "
            "prepares a cup of coffee in the morning. The shaking then gradually improves over the course "
            "of the day. He drinks two glasses of wine with dinner and says the tremor is better afterwards.")


def test_a_share_of_the_eval_question_finds_edited_copies_not_stock_phrases() -> None:
    """The rule that the stage uses (its default ngram_min_share): an edited copy holds much of the eval question, a
    different case that shares one stock phrase holds little of it."""
    words = VIGNETTE.split()
    edited = " ".join("patient" if i % 12 == 5 else w for i, w in enumerate(words))  # one word in twelve
    other = "A 51-year-old man presents to his primary care provider for a rash on both shins and a fever."
    train = [edited, other, "Nothing in common with the eval question at all, not one phrase."]
    held = [len(ngram_keys(t) & ngram_keys(VIGNETTE)) / len(ngram_keys(VIGNETTE)) for t in train]
    assert held[0] > STAGE_SHARE > held[1] > 0 == held[2]
    assert ngram_overlap(train, [VIGNETTE], max_train_rows=3) == [0, 0, None]  # any shared 8-gram
    assert ngram_overlap(train, [VIGNETTE], max_train_rows=3, min_share=STAGE_SHARE) == [0, None, None]
    assert ngram_overlap([VIGNETTE], [VIGNETTE], max_train_rows=3, min_share=1.0) == [0]


def test_a_share_is_in_zero_one_and_needs_the_boilerplate_rule() -> None:
    for share in (0.0, -0.1, 1.5, 30.0):
        with pytest.raises(UserError, match="min_share must be in"):
            ngram_overlap([VIGNETTE], [VIGNETTE], max_train_rows=3, min_share=share)
    with pytest.raises(UserError, match="needs max_train_rows"):
        ngram_overlap([VIGNETTE], [VIGNETTE], min_share=0.3)


def test_on_real_vignettes_the_share_flags_edited_copies_not_stock_phrases(shared_data: Path) -> None:
    """MedQA-USMLE test stems against MedBullets op5 and MMLU professional medicine: with any shared
    8-gram, hundreds of rows are flagged for phrases like "her blood pressure is 110 70 mm hg";
    holding the stage's share of one question's 8-grams flags a few rows, each an edited copy of its eval
    question (a fuzzy ratio of 75 or more, under the 95 that removes). The same stems against the
    4-option test file, their own copies, are all flagged."""
    def jsonl(path: Path) -> list[str]:
        with path.open(encoding="utf-8") as fh:
            return [json.loads(line)["question"] for line in fh]

    train = jsonl(shared_data / "raw/medqa/US_test_5_options.jsonl")
    with (shared_data / "eval/mmlu/professional_medicine_test.csv").open(encoding="utf-8", newline="") as fh:
        mmlu = [row[0] for row in csv.reader(fh)]  # no header row: question, options, answer
    bullets = pl.read_csv(shared_data / "eval/medbullets/medbullets_op5.csv")["question"].to_list()
    evals = bullets + mmlu
    anything = ngram_overlap(train, evals, max_train_rows=3)
    shared = ngram_overlap(train, evals, max_train_rows=3, min_share=STAGE_SHARE)
    assert sum(x is not None for x in anything) > 300
    flagged = [(t, evals[e]) for t, e in zip(train, shared) if e is not None]
    assert 3 <= len(flagged) <= 30
    assert all(fuzz.ratio(t, e) >= 75 for t, e in flagged), [round(fuzz.ratio(t, e)) for t, e in flagged]
    copies = jsonl(shared_data / "raw/medqa/4_options_phrases_no_exclude_test.jsonl")
    own = ngram_overlap(train, copies, max_train_rows=3, min_share=STAGE_SHARE)
    assert sum(x is not None for x in own) >= 0.99 * len(train)


def test_on_real_short_questions_the_frame_of_a_generic_question_is_no_copy(shared_data: Path) -> None:
    """HEAD-QA's training questions against MedExQA, MedMCQA and MMLU-Pro (MedAgentsBench's copies)
    and MMLU clinical knowledge: with any shared 8-gram, rows like "Which of the following statements
    is NOT true about glucagon?" are flagged for "Which of the following statements is not true?";
    holding MIN_HELD of a question's n-grams as well as the stage's share of them, none is."""
    exams = json.loads((shared_data / "raw/headqa/train_HEAD_EN.json").read_text(encoding="utf-8"))["exams"]
    train = [q["qtext"] for exam in exams.values() for q in exam["data"]]
    evals = []
    for name in ("medexqa", "medmcqa", "mmlu-pro"):
        with (shared_data / f"eval/medagentsbench/{name}/test.jsonl").open(encoding="utf-8") as fh:
            evals += [json.loads(line)["question"] for line in fh]
    with (shared_data / "eval/mmlu/clinical_knowledge_test.csv").open(encoding="utf-8", newline="") as fh:
        evals += [row[0] for row in csv.reader(fh)]
    anything = ngram_overlap(train, evals, max_train_rows=3)
    framed = [(train[i], evals[e]) for i, e in enumerate(anything) if e is not None]
    assert len(framed) >= 10 and all(fuzz.ratio(t, e) < 95 for t, e in framed)
    assert ngram_overlap(train, evals, max_train_rows=3, min_share=STAGE_SHARE) == [None] * len(train)


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


# Words where Python's \\w and Rust's (polars') differ, or where lowercasing is special: combining
# marks, other numbers, connector punctuation, circled letters, final sigma, a dotted capital I
# (lowercased to i + a combining dot), the Kelvin sign, a ligature, a lone surrogate.
WORDS = ["the", "a", "b", "c", "x²", "e\u0301te\u0301", "na\u00efve", "nai\u0308ve", "snake_case",
         "a\u203fb", "\u24b6\u24b7", "\u216b", "\u3007", "\u65e5\u672c", "\u0663", "\u01c5x",
         "\u039f\u0394\u039f\u03a3", "\u03c3", "\u0130stanbul", "\u212a", "\ufb01le", "STRASSE", "\u1e9e",
         "\ud800", "45-year-old"]
SEPARATORS = [" ", ", ", "-", "\n", "\u00a0", "\u2019", "! "]


@st.composite
def corpora(draw: st.DrawFn) -> tuple[list[str], list[str], int, int | None, int]:
    """Training and eval texts from a tiny vocabulary (chance n-grams at small n), with eval
    windows planted in training rows, a phrase repeated in about max_train_rows rows, short
    and empty texts; plus n, max_train_rows and a chunk size that splits the rows."""
    def text(min_words: int = 0) -> str:
        words = draw(st.lists(st.sampled_from(WORDS), min_size=min_words, max_size=14))
        seps = draw(st.lists(st.sampled_from(SEPARATORS), min_size=len(words), max_size=len(words)))
        return "".join(w + s for w, s in zip(words, seps))

    n = draw(st.sampled_from([1, 2, 3, 4, 8]))
    limit = draw(st.sampled_from([None, 0, 1, 2, 3]))
    evals = [text() for _ in range(draw(st.integers(0, 6)))]
    train = [text() for _ in range(draw(st.integers(0, 10)))]
    for e in draw(st.lists(st.sampled_from(evals), max_size=3)) if evals else []:
        words = e.split()
        start = draw(st.integers(0, max(len(words) - 1, 0)))
        train.append(text() + " " + " ".join(words[start:start + n + 1]) + " " + text())
    phrase = text(min_words=n)
    for i in range(draw(st.integers(0, 5))):
        train.insert(draw(st.integers(0, len(train))), text() + " " + phrase)
    if draw(st.booleans()):
        evals.append(phrase)
    chunk = draw(st.integers(1, 200))
    share = None if limit is None else draw(st.sampled_from([None, 0.1, 0.3, 0.5, 2 / 3, 1.0]))
    return train, evals, n, limit, chunk, share


@settings(max_examples=300, deadline=None)
@given(corpora())
def test_matches_the_per_row_definition_on_generated_corpora(corpus) -> None:
    train, evals, n, limit, chunk, share = corpus
    with mock.patch.object(ngram, "CHUNK_CHARS", chunk):  # many chunks: counts and drops across them
        got = ngram_overlap(train, evals, n=n, max_train_rows=limit, workers=2, min_share=share)
    assert got == reference(train, evals, n, limit, share)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=30), min_size=2, max_size=6), st.integers(1, 4))
def test_any_unicode_text_matches_the_definition(texts, n) -> None:
    """Arbitrary code points, not only the vocabulary above."""
    assert ngram_overlap(texts, texts[::-1], n=n, max_train_rows=1) == reference(texts, texts[::-1], n, 1)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(WORDS), max_size=12), st.lists(st.sampled_from(WORDS), max_size=12),
       st.integers(1, 5))
def test_ngram_keys_are_the_keys_ngram_overlap_compares(a, b, n) -> None:
    ta, tb = " ".join(a), " ".join(b)
    assert bool(ngram_keys(ta, n) & ngram_keys(tb, n)) == (ngram_overlap([ta], [tb], n=n) == [0])
    words = tokens(ta)
    grams = {tuple(words[i:i + n]) for i in range(len(words) - n + 1)} if len(words) >= n else {tuple(words)}
    assert len(ngram_keys(ta, n)) == (len(grams) if words else 0)


def test_the_word_class_is_pythons_word_for_every_code_point() -> None:
    """polars' regex reads the class as Python's re reads \\w, code point by code point (with
    polars' own \\w, "x²" and "e\u0301" would be cut differently)."""
    points = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    got = pl.Series(points).str.contains("^" + ngram._word_class() + "$").to_list()
    expected = [bool(re.fullmatch(r"\w", c)) for c in points]
    assert got == expected


def test_results_do_not_depend_on_threads_or_chunks() -> None:
    evals = [f"stem {i} of the case with findings {i % 7} and more words here" for i in range(50)]
    # stems 10-49 in two rows each: flagged; 0-9 in many: boilerplate; 50-59: in no eval text
    train = [f"row {i}: stem {i % 60 if i < 120 else i % 10} of the case with findings {i % 7} and more"
             for i in range(400)]
    expected = reference(train, evals, 4, 3)
    assert {x for x in expected if x is not None} == set(range(10, 50)) and None in expected
    for chunk, workers in ((1 << 22, 1), (50, 1), (50, 2), (1, 3)):
        with mock.patch.object(ngram, "CHUNK_CHARS", chunk):
            assert ngram_overlap(train, evals, n=4, max_train_rows=3, workers=workers) == expected
