"""m1data.stages.dedup must equal the plain all-pairs computation with rapidfuzz.fuzz.ratio.

The reference implementations below are deliberately naive double loops; real rows are read
from ../shared/data at test time (skipped when absent), planted near copies are made here.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rapidfuzz import fuzz

from m1data.errors import UserError
from m1data.stages import fuzzy
from m1data.stages.dedup import (
    ContamMatch,
    Decontaminate,
    DecontaminateConfig,
    DupMatch,
    EvalText,
    compared_text,
    decontaminate,
    deduplicate,
    find_contamination,
    find_duplicates,
    stem_key,
)

# ------------------------------------------------------------------ brute-force references


def brute_duplicates(texts: list[str], threshold: float) -> list[DupMatch]:
    out = []
    for j in range(len(texts)):
        for i in range(j):
            score = fuzz.ratio(texts[i], texts[j])
            if score >= threshold:
                out.append(DupMatch(j, i, score))
                break
    return out


def brute_contamination(texts: list[str], evals: list[EvalText],
                        threshold: float) -> list[ContamMatch]:
    out = []
    for j, text in enumerate(texts):
        best = None
        for e, item in enumerate(evals):
            score = fuzz.ratio(text, item.text)
            if score >= threshold and (best is None or score > best[1]):
                best = (e, score)
        if best is not None:
            item = evals[best[0]]
            out.append(ContamMatch(j, item.set_name, item.item_id, item.text, best[1]))
    return out


# ------------------------------------------------------------------ planted edits


def char_edits(text: str, n: int, rng: random.Random) -> str:
    chars = list(text)
    for _ in range(n):
        pos = rng.randrange(len(chars) + 1)
        op = rng.randrange(3)
        if op == 0 or not chars:
            chars.insert(pos, rng.choice("abcxyz .,"))
        elif op == 1:
            del chars[min(pos, len(chars) - 1)]
        else:
            chars[min(pos, len(chars) - 1)] = rng.choice("abcxyz .,")
    return "".join(chars)


def planted(base: list[str], seed: int = 0) -> list[str]:
    """Real rows plus near copies of many kinds, shuffled so copies can come before originals."""
    rng = random.Random(seed)
    rows = list(base)
    for text in rng.sample(base, min(60, len(base))):
        kind = rng.randrange(5)
        if kind == 0:
            rows.append(char_edits(text, rng.choice([1, 2, 5, 10, 20, 40]), rng))
        elif kind == 1:
            rows.append(text.upper() if rng.random() < 0.5 else text.lower())
        elif kind == 2:
            rows.append(text.replace(" ", "  ", 3) + " ")
        elif kind == 3:
            rows.append(text)  # exact copy
        else:
            words = text.split(" ")
            rng.shuffle(words)
            rows.append(" ".join(words))
    cluster_base = max(base, key=len)
    rows.extend(char_edits(cluster_base, rng.randrange(1, 8), rng) for _ in range(12))
    rows.extend(["", "", "a", "ab", "b", "x" * 3, "é", "ß" * 2])
    rng.shuffle(rows)
    return rows


# ------------------------------------------------------------------ real rows


def medqa_questions(shared_data: Path, n: int) -> list[str]:
    path = shared_data / "raw/medqa/4_options_phrases_no_exclude_test.jsonl"
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line)["question"] for line, _ in zip(fh, range(n))]


def mmlu_questions(shared_data: Path, n: int) -> list[str]:
    out: list[str] = []
    for path in sorted((shared_data / "eval/mmlu").glob("*_test.csv")):
        with path.open(encoding="utf-8", newline="") as fh:
            out.extend(row[0] for row in csv.reader(fh))
    return out[:n]


# ------------------------------------------------------------------ tests on real rows


def test_dedup_equals_all_pairs_on_real_rows(shared_data: Path) -> None:
    texts = planted(medqa_questions(shared_data, 250) + mmlu_questions(shared_data, 250))
    expected = brute_duplicates(texts, 95.0)
    assert len(expected) >= 40  # the planted copies really are there
    assert find_duplicates(texts) == expected


@pytest.mark.parametrize("threshold", [80.0, 90.0, 99.0])
def test_dedup_other_thresholds_on_real_rows(shared_data: Path, threshold: float) -> None:
    texts = planted(mmlu_questions(shared_data, 300), seed=3)
    assert find_duplicates(texts, threshold=threshold) == brute_duplicates(texts, threshold)


def test_cluster_larger_than_five(shared_data: Path) -> None:
    base = medqa_questions(shared_data, 1)[0]
    rng = random.Random(7)
    copies = [base] + [char_edits(base, 3, rng) for _ in range(12)]
    found = find_duplicates(copies)
    assert [m.index for m in found] == list(range(1, 13))  # no cap at 5
    assert found == brute_duplicates(copies, 95.0)


def test_contamination_equals_all_pairs_on_real_rows(shared_data: Path) -> None:
    evq = mmlu_questions(shared_data, 300)
    evals = [EvalText("mmlu", str(i), q) for i, q in enumerate(evq)]
    evals += [EvalText("mmlu_dup", f"d{i}", evq[i]) for i in range(0, 300, 50)]  # ties
    rng = random.Random(11)
    train = medqa_questions(shared_data, 200)
    train += [char_edits(q, rng.choice([1, 3, 8, 30]), rng) for q in rng.sample(evq, 40)]
    rng.shuffle(train)
    expected = brute_contamination(train, evals, 95.0)
    assert len(expected) >= 20
    assert find_contamination(train, evals) == expected


# ------------------------------------------------------------------ boundary and edge cases


def test_exact_threshold_pairs() -> None:
    a = "abcdefghijklmnopqrst"  # 20 chars
    at = "abcdefghijklmnopqrsX"  # one substitution: indel 2 of 40 -> exactly 95.0
    below = "abcdefghijklmnopq123"  # indel 6 to all others -> 85.0
    just_below = "abcdefghijklmnopqrYZ"  # indel 4 to both -> 90.0
    assert fuzz.ratio(a, at) == 95.0
    texts = [a, at, below, just_below]
    assert find_duplicates(texts) == [DupMatch(1, 0, 95.0)] == brute_duplicates(texts, 95.0)
    assert find_duplicates(texts, threshold=90.0) == brute_duplicates(texts, 90.0)
    # 95.0 exactly at other lengths too: indel 5 of 100, indel 10 of 200
    long_a = "x" * 50 + "y" * 50
    long_b = "x" * 50 + "y" * 45  # indel 5, total 195 -> 97.43..
    long_c = "x" * 47 + "y" * 50 + "z" * 3  # indel 6 of 200 -> 97.0
    for t in (97.0, 97.0000001, 97.43589743589743):
        rows = [long_a, long_b, long_c]
        assert find_duplicates(rows, threshold=t) == brute_duplicates(rows, t)


def test_empty_and_short_strings() -> None:
    assert fuzz.ratio("", "") == 100.0
    texts = ["", "a", "", "b", "ab", "a", "ba", "", "abc"]
    for t in (50.0, 60.0, 95.0, 100.0):
        assert find_duplicates(texts, threshold=t) == brute_duplicates(texts, t)
    assert find_duplicates([]) == []
    assert find_duplicates([""]) == []


def test_unicode_rows() -> None:
    rows = ["Größe des Herzens", "Grosse des Herzens", "Größe des Herzens!", "心臓の大きさ",
            "心臓の大きさ。", "\U0001f600 emoji row", "\U0001f600 emoji row."]
    for t in (80.0, 90.0, 95.0):
        assert find_duplicates(rows, threshold=t) == brute_duplicates(rows, t)


def test_earliest_match_may_precede_identical_copy() -> None:
    base = "the quick brown fox jumps over the lazy dog again and again"
    near = base[:-1] + "x"
    rows = [near, "unrelated text entirely", base, base]
    found = find_duplicates(rows)
    assert found == brute_duplicates(rows, 95.0)
    assert found[-1] == DupMatch(3, 0, fuzz.ratio(near, base))  # not row 2


def test_bad_threshold() -> None:
    with pytest.raises(ValueError):
        find_duplicates(["a"], threshold=0.0)
    with pytest.raises(ValueError):
        find_duplicates(["a"], threshold=101.0)


# ------------------------------------------------------------------ property test


@settings(max_examples=300, deadline=None)
@given(
    texts=st.lists(st.text(alphabet="abc ", max_size=14), max_size=25),
    threshold=st.floats(min_value=60.0, max_value=95.0),
)
def test_property_matches_brute_force(texts: list[str], threshold: float) -> None:
    assert find_duplicates(texts, threshold=threshold) == brute_duplicates(texts, threshold)
    evals = [EvalText("s", str(i), t) for i, t in enumerate(texts[::3])]
    assert find_contamination(texts, evals, threshold=threshold) == \
        brute_contamination(texts, evals, threshold)


# ------------------------------------------------------------------ stem_key


def test_stem_key_is_order_free() -> None:
    a = stem_key("Which drug?", ["Aspirin", "Heparin", "Warfarin"])
    b = stem_key("Which drug?", ["Warfarin", "Aspirin", "Heparin"])
    assert a == b == "which drug?\naspirin\nheparin\nwarfarin"  # as compared: case folded (compared_text)
    assert stem_key("Bare  question?", None) == "bare question?"
    assert stem_key("Bare question?", []) == "bare question?"


# ------------------------------------------------------------------ Dataset level


def _train_ds():  # type: ignore[no-untyped-def]
    from datasets import Dataset

    base = "A 45-year-old man presents with chest pain radiating to the left arm since morning."
    rows = {
        "id": ["r0", "r1", "r2", "r3", "r4"],
        "source": ["medqa", "medmcqa", "medqa", "headqa", "medmcqa"],
        "prompt": [base, "What is the capital of France?", base.replace("45", "46"),
                   "Completely different question about the kidney.", base],
    }
    return Dataset.from_dict(rows)


def test_deduplicate_dataset() -> None:
    ds = _train_ds()
    kept, removed = deduplicate(ds, column="prompt")
    assert kept["id"] == ["r0", "r1", "r3"]
    assert removed.column_names == ["id", "source", "reason", "match_id", "score"]
    assert removed["id"] == ["r2", "r4"]
    assert removed["source"] == ["medqa", "medmcqa"]
    assert removed["reason"] == ["near_duplicate", "near_duplicate"]
    assert removed["match_id"] == ["r0", "r0"]
    assert removed["score"][1] == 100.0
    assert removed["score"][0] == fuzz.ratio(ds["prompt"][0], ds["prompt"][2])


def test_deduplicate_without_id_or_source_and_nothing_removed() -> None:
    from datasets import Dataset

    ds = Dataset.from_dict({"prompt": ["alpha beta", "gamma delta", "epsilon"]})
    kept, removed = deduplicate(ds, column="prompt")
    assert len(kept) == 3
    assert len(removed) == 0
    assert removed.column_names == ["id", "source", "reason", "match_id", "score"]  # the dropped-table contract


def test_decontaminate_dataset_with_mapping_and_sequences() -> None:
    from datasets import Dataset

    ds = _train_ds()
    medqa_eval = Dataset.from_dict({"id": ["q7", "q8"],
                                    "prompt": ["Unrelated eval item", ds["prompt"][0] + "."]})
    kept, removed = decontaminate(ds, {"medqa_test": medqa_eval,
                                       "plain": ["What is the capital of France?"]}, column="prompt")
    assert kept["id"] == ["r3"]
    assert removed.column_names == ["id", "source", "reason", "eval_set", "eval_id",
                                    "eval_text", "score"]
    assert removed["id"] == ["r0", "r1", "r2", "r4"]
    assert removed["reason"] == ["contaminated"] * 4
    assert removed["eval_set"] == ["medqa_test", "plain", "medqa_test", "medqa_test"]
    assert removed["eval_id"] == ["q8", "0", "q8", "q8"]
    assert removed["score"][1] == 100.0

    # a sequence of Datasets: set name from their source column, id from row index
    ev = Dataset.from_dict({"source": ["mmlu"], "prompt": ["What is the capital of France?"]})
    kept, removed = decontaminate(ds, [ev], column="prompt")
    assert removed["id"] == ["r1"]
    assert removed["eval_set"] == ["mmlu"]
    assert removed["eval_id"] == ["0"]
    assert removed["eval_text"] == ["What is the capital of France?"]


def test_contamination_tie_goes_to_lowest_eval_index() -> None:
    text = "Which nerve supplies the deltoid muscle in the shoulder region?"
    evals = [EvalText("a", "x", "zzz"), EvalText("b", "y", text), EvalText("c", "z", text)]
    assert find_contamination([text], evals) == [ContamMatch(0, "b", "y", text, 100.0)]


def test_threshold_equal_to_an_observed_score(shared_data: Path) -> None:
    """Thresholds that equal real scores exactly: the verdict must be the float comparison."""
    texts = planted(mmlu_questions(shared_data, 150), seed=9)
    scores = sorted({m.score for m in brute_duplicates(texts, 90.0) if m.score < 100.0})
    assert scores
    for t in scores[:: max(1, len(scores) // 6)]:
        assert find_duplicates(texts, threshold=t) == brute_duplicates(texts, t)


def test_progress_bar_does_not_change_results() -> None:
    rows = ["alpha beta gamma delta", "alpha beta gamma delta.", "unrelated", "alpha beta gamma"]
    assert find_duplicates(rows, progress=True) == find_duplicates(rows) == \
        brute_duplicates(rows, 95.0)
    evals = [EvalText("s", "0", "unrelated!")]
    assert find_contamination(rows, evals, threshold=90.0, progress=True) == \
        brute_contamination(rows, evals, 90.0)


def test_public_functions_default_to_the_stage_keys_on_the_embedded_sample() -> None:
    """A researcher calling deduplicate/decontaminate with defaults gets what the build removes:
    the 6 eval copies planted in the sample (options reshuffled) and its 5 near-duplicates."""
    from m1data.reading.evalsets import load_evals
    from m1data.stages.dedup import Decontaminate, DecontaminateConfig, DedupConfig, Deduplicate
    from m1data.stages.loading import LoadConfig, LoadSources, sample_evals

    rows = LoadSources(LoadConfig()).run(None, None).rows
    evals = load_evals(sample_evals())

    kept, removed = decontaminate(rows, evals)
    stage = Decontaminate(DecontaminateConfig(ngram=0), sample_evals()).run(rows, None)
    assert len(removed) == 6
    assert removed["id"] == stage.dropped["id"] and kept["id"] == stage.rows["id"]
    _, by_prompt = decontaminate(rows, evals, column="prompt")
    assert len(by_prompt) < len(removed)  # the shuffled prompt misses copies: why it is not the default

    kept, removed = deduplicate(rows)
    stage = Deduplicate(DedupConfig()).run(rows, None)
    assert len(removed) == 5 and removed["id"] == stage.dropped["id"]


def test_bare_eval_questions_are_compared_with_row_stems() -> None:
    from datasets import Dataset

    ds = Dataset.from_dict(
        {
            "id": ["r0", "r1"],
            "question": ["Which valve lesion gives a crescendo-decrescendo murmur at the base?", "Other?"],
            "options": [["Aortic stenosis", "Mitral stenosis"], ["a", "b"]],
        }
    )
    _, removed = decontaminate(ds, {"plain": ["Which valve lesion gives a crescendo-decrescendo murmur at the base?"]})
    assert removed["id"] == ["r0"] and removed["eval_set"] == ["plain"] and removed["score"] == [100.0]
    with pytest.raises(ValueError, match="pass column="):
        deduplicate(Dataset.from_dict({"prompt": ["x"]}))


# ------------------------------------------------------------------ the same question, another option set

STEM = ("A 45-year-old man comes to the physician because of fatigue and joint pain for two months. "
        "Which of the following is the most likely cause?")
OPTIONS = ["Deposition of monosodium urate crystals in the first metatarsophalangeal joint",
           "Autoantibodies against the Fc portion of IgG in the synovium",
           "Iron overload with deposition in the liver, pancreas and joints",
           "Infection with a Gram-negative diplococcus spread through the blood"]
EXTRA = "Deposition of calcium pyrophosphate dihydrate crystals in the menisci of the knee"


def one_question(options: list[str], stem: str = STEM):
    from datasets import Dataset

    return Dataset.from_dict({"id": ["r0"], "question": [stem], "options": [options]})


@pytest.mark.parametrize(("row_options", "removed"), [
    (OPTIONS + [EXTRA], True),  # one distractor added: the key is longer by a long option
    (OPTIONS[:3], True),  # one dropped
    (OPTIONS[:3] + [EXTRA], True),  # one rewritten: three of four shared
    ([o.upper() for o in OPTIONS[::-1]] + [EXTRA], True),  # case and order are no difference
    (OPTIONS[:2] + [EXTRA, EXTRA + " and the wrist"], False),  # two of four: another question
    ([EXTRA], False),
])
def test_a_copy_with_another_option_set_is_contamination(row_options, removed) -> None:
    """The stem matches and most options are shared: removed, though its stem + option-set key is
    far under 95 (as MedQA's 5-option test questions against the 4-option eval set)."""
    eval_set = one_question(OPTIONS)
    assert fuzz.ratio(stem_key(STEM, row_options), stem_key(STEM, OPTIONS)) < 95
    _, dropped = decontaminate(one_question(row_options), {"medqa_test": eval_set})
    assert (dropped["id"] == ["r0"]) is removed
    if removed:  # reported with the text that matched: the stem, at 100
        assert dropped["eval_set"] == ["medqa_test"] and dropped["score"] == [100.0]
        assert dropped["eval_text"] == [compared_text(STEM)]


def test_a_generic_stem_with_other_options_is_another_question() -> None:
    """"Which of the following is true?" asks many questions; the options tell them apart, so a
    matching stem alone removes nothing, and the match is taken from the eval item whose options
    agree even when an earlier one's stem scores as high."""
    generic = "Which of the following statements is true?"
    evals = one_question(["Insulin is secreted by alpha cells", "Glucagon lowers blood glucose",
                          "Somatostatin is made by delta cells", "Amylin is made in the liver"], generic)
    evals = evals.add_item({"id": "r1", "question": generic, "options": OPTIONS})
    _, dropped = decontaminate(one_question(OPTIONS[::-1] + [EXTRA], generic), {"mixed": evals})
    assert dropped["eval_id"] == ["r1"]
    _, dropped = decontaminate(one_question([EXTRA, "a", "b", "c"], generic), {"mixed": evals})
    assert len(dropped) == 0


WORDS = ["renal", "hepatic", "acute", "chronic", "deposition", "of", "crystals", "in", "the", "joint", "infection",
         "autoimmune", "deficiency", "vitamin", "with", "and", "left", "ventricular", "failure", "syndrome"]
option_texts = st.lists(st.sampled_from(WORDS), min_size=3, max_size=9).map(" ".join)


@settings(max_examples=60, deadline=None)
@given(stem=st.lists(st.sampled_from(WORDS), min_size=12, max_size=30).map(" ".join),
       options=st.lists(option_texts, min_size=4, max_size=5, unique=True),
       change=st.sampled_from(["shuffle", "add", "drop", "rewrite", "other"]),
       extra=option_texts, lettered=st.booleans(), seed=st.integers(0, 99))
def test_the_same_stem_with_most_of_its_options_is_the_same_question(stem, options, change, extra, lettered,
                                                                      seed) -> None:
    """Generated questions and the variants a copy comes in: options shuffled, one added, one
    dropped or one rewritten are the eval question (removed); the same stem with other options
    is another question (kept, unless its key matches anyway). The eval file may letter its
    options ("A. x"), as raw files do."""
    from datasets import Dataset

    rng = random.Random(seed)
    row = list(options)
    if change == "add":
        row.append(extra + " extra")
    elif change == "drop":
        row.pop(rng.randrange(len(row)))
    elif change == "rewrite":
        row[rng.randrange(len(row))] = extra + " rewritten"
    elif change == "other":
        row = [f"{extra} {i} other" for i in range(len(options))]
    rng.shuffle(row)
    shown = [f"{'ABCDE'[i]}. {o}" for i, o in enumerate(options)] if lettered else options
    evals = Dataset.from_dict({"id": ["e0"], "question": [stem], "options": [shown]})
    _, dropped = decontaminate(one_question(row, stem), {"eval": evals})
    key_match = fuzz.ratio(stem_key(stem, row), stem_key(stem, options)) >= 95
    assert (len(dropped) == 1) is (change != "other" or key_match)


def test_the_stage_lists_the_rows_only_the_ngram_check_flags() -> None:
    """An edited copy under the fuzzy threshold is kept, and the stage's statistics name it with the
    eval question it holds most of, so "candidates to inspect" can be found."""
    from datasets import Dataset

    words = (STEM + " The pain is worse in the morning and improves over the course of the day, and "
             "he has lost four kilograms since the spring without trying to.").split()
    edited = " ".join("hyperkalaemia" if i % 12 == 5 else w for i, w in enumerate(words))  # one word in twelve
    rows = Dataset.from_dict({"id": ["copy", "other"], "question": [edited, "An unrelated question about the kidney?"],
                              "options": [["x", "y"], ["x", "y"]]})
    evals = Dataset.from_dict({"id": ["q7"], "question": [" ".join(words)], "options": [["x", "y"]]})
    assert fuzz.ratio(edited, " ".join(words)) < 95
    result = Decontaminate(DecontaminateConfig(), [], name="decontaminate")._ngram_report(rows, {"bullets": evals}, set())
    assert result["ngram_only"] == 1
    assert result["ngram_only_rows"] == [{"id": "copy", "eval_set": "bullets", "eval_id": "q7"}]


def test_contamination_pairs_are_every_matching_pair(shared_data: Path) -> None:
    """Every (row, eval item) pair at or above the threshold, duplicates on both sides included,
    against the all-pairs loop."""
    from m1data.stages.fuzzy import contamination_pairs

    rng = random.Random(3)
    evq = mmlu_questions(shared_data, 120)
    evals = [EvalText("mmlu", str(i), q) for i, q in enumerate(evq)] + [EvalText("again", "x", evq[7])]
    train = medqa_questions(shared_data, 60) + [char_edits(q, rng.choice([0, 1, 4, 20]), rng) for q in evq[:40]]
    train += train[-5:]  # rows written twice
    rows, items, scores = contamination_pairs(train, evals, threshold=90.0)
    got = list(zip(rows.tolist(), items.tolist(), scores.tolist()))
    expected = [(r, e, fuzz.ratio(t, item.text)) for r, t in enumerate(train) for e, item in enumerate(evals)
                if fuzz.ratio(t, item.text) >= 90.0]
    assert got == expected and len(expected) > 30
    assert {item for _, item, _ in got} >= {7, len(evals) - 1}  # both copies of the eval text written twice
    assert len({row for row, _, _ in got} & set(range(len(train) - 5, len(train)))) == 5


def test_medqa_5_option_questions_against_the_4_option_test_set_all_go(shared_data: Path, tmp_path: Path) -> None:
    """The real sweep's case: every 5-option MedQA-USMLE test question is a 4-option test
    question with one more distractor; 21 of 1,273 used to stay in the training data."""
    from m1data.reading.evalsets import EvalInput
    from m1data.reading.sources import load_source

    rows = load_source("medqa", shared_data / "raw/medqa/US_test_5_options.jsonl").rows
    spec = EvalInput("medqa_test", str(shared_data / "eval/medagentsbench/medqa/test.jsonl"))
    kept, dropped = decontaminate(rows, [spec])
    assert len(kept) == 0 and len(dropped) == len(rows) == 1273


# ------------------------------------------------------------------ adversarial corpora (issue 21)
#
# Each corpus is built to sit on the filters' edges: pairs exactly at the Indel bound, pairs that
# share half their text (the case that made positional signatures quadratic), one long repeated
# character (histograms with a single huge count, clipped above 255), strings of length 0-5,
# non-Latin-1 text. The verdict is compared with the naive all-pairs loop at thresholds
# 80/90/95/99/100; test_adversarial_corpora_catch_a_tightened_bound shows the comparison can fail.

THRESHOLDS = [80.0, 90.0, 95.0, 99.0, 100.0]


def _edit_copies(base: str, rng: random.Random, n: int, alphabet: str) -> list[str]:
    out = []
    for _ in range(n):
        chars = list(base)
        for _ in range(rng.randrange(0, max(2, len(base) // 8))):
            pos = rng.randrange(len(chars) + 1)
            op = rng.randrange(3)
            if op == 0 or not chars:
                chars.insert(pos, rng.choice(alphabet))
            elif op == 1:
                del chars[min(pos, len(chars) - 1)]
            else:
                chars[min(pos, len(chars) - 1)] = rng.choice(alphabet)
        out.append("".join(chars))
    return out


def adversarial_corpus(seed: int) -> list[str]:
    rng = random.Random(seed)
    alphabet = "abcde fghij.,\nÄßé心臓\U0001f600"
    words = ["which", "of", "the", "following", "is", "not", "a", "feature", "patient", "presents",
             "with", "pain", "Größe", "心臓の", "müde"]
    bases = [" ".join(rng.choice(words) for _ in range(rng.randrange(4, 30))) for _ in range(6)]
    rows = list(bases)
    for b in bases:  # clusters of near copies, some within and some beyond each threshold
        rows += _edit_copies(b, rng, 5, alphabet)
    for a in bases:  # rows sharing half their text (head of one, tail of another)
        for b in rng.sample(bases, 3):
            rows.append(a[: len(a) // 2] + b[len(b) // 2:])
    run = rng.randrange(40, 200)  # one long repeated character and near copies of it
    rows += ["x" * run, "x" * (run + 1), "x" * (run - 3) + "y", "y" + "x" * run, "x" * (run // 2)]
    rows += ["".join(rng.choice("ab") for _ in range(rng.randrange(0, 6))) for _ in range(12)]
    rows += ["", "", "心", "心臓", "é", "e"]
    rng.shuffle(rows)
    return rows


@pytest.mark.parametrize("threshold", THRESHOLDS)
@pytest.mark.parametrize("seed", range(4))
def test_adversarial_corpora_equal_all_pairs(threshold: float, seed: int) -> None:
    rows = adversarial_corpus(seed)
    assert find_duplicates(rows, threshold=threshold) == brute_duplicates(rows, threshold)
    evals = [EvalText("e", str(i), t) for i, t in enumerate(adversarial_corpus(seed + 100)[:40])]
    assert find_contamination(rows, evals, threshold=threshold) == \
        brute_contamination(rows, evals, threshold)


def test_adversarial_corpora_catch_a_tightened_bound(monkeypatch) -> None:
    """The corpora hold pairs that match with the bag bound exactly tight: a filter one edit
    too strict (``<`` for ``<=``) loses some, so the all-pairs comparisons above can fail."""
    import m1data.stages.fuzzy as fz

    def strict(rows, cols, rr, cc, f):  # type: ignore[no-untyped-def]
        keep = fz._bag_distances(rows, cols, rr, cc) < np.floor(f * (rows.lens[rr] + cols.lens[cc]))
        return rr[keep], cc[keep]

    monkeypatch.setattr(fz, "_exact_bag_check", strict)
    differs = [seed for seed in range(4) for t in (90.0, 95.0)
               if find_duplicates(adversarial_corpus(seed), threshold=t)
               != brute_duplicates(adversarial_corpus(seed), t)]
    assert differs


def test_one_long_repeated_character_beyond_the_count_clip() -> None:
    """Counts above 255 are clipped in the histograms (and group counts too); the bound must
    still hold there, for huge counts and for counts on either side of the clip."""
    n = 70_000
    rows = ["a" * n, "a" * (n - 2000), "a" * (n - 4000) + "b" * 10, "b" * n, "a" * (n // 2)]
    rows += ["a" * k + "b" * (600 - k) for k in range(200, 400, 7)]  # counts around the clip
    rows += ["a b" * k for k in range(100, 160, 3)]
    evals = [EvalText("eval", str(i), text) for i, text in enumerate(rows[:5] + rows[20:])]
    for t in (90.0, 95.0, 99.0):
        assert find_duplicates(rows, threshold=t) == brute_duplicates(rows, t)
        assert find_contamination(rows[5:], evals, threshold=t) == brute_contamination(rows[5:], evals, t)
    assert find_duplicates(rows, threshold=95.0)  # some pair really matches


@pytest.mark.parametrize("threshold", THRESHOLDS)
def test_all_strings_of_length_up_to_four(threshold: float) -> None:
    import itertools

    rows = ["".join(p) for n in range(5) for p in itertools.product("ab", repeat=n)]
    rows += rows[::-1]
    assert find_duplicates(rows, threshold=threshold) == brute_duplicates(rows, threshold)


@st.composite
def _near_duplicate_corpus(draw):  # type: ignore[no-untyped-def]
    alphabet = st.sampled_from(list("aab c.é心") + ["\U0001f600"])
    bases = draw(st.lists(st.text(alphabet=alphabet, min_size=0, max_size=40), min_size=1, max_size=5))
    rows = list(bases)
    for _ in range(draw(st.integers(0, 12))):
        kind = draw(st.integers(0, 3))
        a, b = draw(st.sampled_from(bases)), draw(st.sampled_from(bases))
        if kind == 0:  # a copy with up to 4 edits
            text = list(a)
            for _ in range(draw(st.integers(0, 4))):
                pos = draw(st.integers(0, len(text)))
                if text and draw(st.booleans()):
                    del text[min(pos, len(text) - 1)]
                else:
                    text.insert(pos, draw(alphabet))
            rows.append("".join(text))
        elif kind == 1:  # shares half its text with each of two rows
            rows.append(a[: len(a) // 2] + b[len(b) // 2:])
        elif kind == 2:  # a long run of one character
            rows.append(draw(alphabet) * draw(st.integers(0, 60)))
        else:
            rows.append(a)
    return draw(st.permutations(rows))


@settings(max_examples=150, deadline=None)
@given(rows=_near_duplicate_corpus(), threshold=st.sampled_from(THRESHOLDS))
def test_property_adversarial_corpora(rows: list[str], threshold: float) -> None:
    assert find_duplicates(rows, threshold=threshold) == brute_duplicates(rows, threshold)
    evals = [EvalText("s", str(i), t) for i, t in enumerate(rows[1::2])]
    assert find_contamination(rows, evals, threshold=threshold) == \
        brute_contamination(rows, evals, threshold)


def test_band_threads_do_not_change_the_result() -> None:
    """``workers`` runs bands in that many threads (the group pass releases the GIL): same removals."""
    rows = [r for seed in range(3) for r in adversarial_corpus(seed)]
    expected = brute_duplicates(rows, 90.0)
    for workers in (1, 2, 3, -1):
        assert find_duplicates(rows, threshold=90.0, workers=workers) == expected


def test_long_texts_whose_group_counts_pass_the_clip() -> None:
    """Group counts are clipped at 255 (20 groups: texts beyond ~5,000 characters clip); the
    group bound must still let every matching pair of such texts through."""
    rng = random.Random(7)
    words = ["patient", "presents", "with", "acute", "pain", "in", "the", "left", "lower", "quadrant", "fever"]
    bases = [" ".join(rng.choice(words) for _ in range(rng.randrange(700, 1400))) for _ in range(4)]
    rows = bases + [c for b in bases for c in _edit_copies(b, rng, 3, "abcdefg ")]
    rows += [b[: len(b) // 2] for b in bases]
    for t in (95.0, 99.0):
        assert find_duplicates(rows, threshold=t) == brute_duplicates(rows, t)
    assert find_duplicates(rows, threshold=95.0)  # some pair really matches


def test_a_band_with_more_candidates_than_its_buffer_runs_again(monkeypatch) -> None:
    """The group pass writes into buffers the caller sizes; a band that finds more pairs than
    fit is run again with room for all of them, so nothing is cut off."""
    import m1data.stages.fuzzy as fz

    rows = [r for seed in range(3) for r in adversarial_corpus(seed)]
    monkeypatch.setattr(fz, "CANDIDATES_PER_BAND", 1)
    assert find_duplicates(rows, threshold=90.0) == brute_duplicates(rows, 90.0)


def test_adversarial_corpora_catch_a_tightened_group_bound(monkeypatch) -> None:
    """The group pass keeps pairs with sum_g |G_a - G_b| <= ceil(f|a|) + ceil(f|b|); one unit
    less on each side loses matching pairs of these corpora, so the comparisons above would fail."""
    import m1data.stages.fuzzy as fz

    real_side = fz._side

    def tight(*args):  # type: ignore[no-untyped-def]
        side = real_side(*args)
        side.share -= 1
        return side

    monkeypatch.setattr(fz, "_side", tight)
    differs = [(seed, t) for seed in range(4) for t in (90.0, 95.0)
               if find_duplicates(adversarial_corpus(seed), threshold=t)
               != brute_duplicates(adversarial_corpus(seed), t)]
    assert differs


def boundary_corpus(seed: int) -> list[str]:
    """Near copies of texts of 200-320 characters: bands on both sides of fuzzy.SHORT_TEXT (254),
    where the matcher switches from ``_min_pass`` to ``_narrow_pass``, and bands across it."""
    rng = random.Random(seed)
    alphabet = "abcdefghij klmnop.,\nÄé心"
    bases = ["".join(rng.choice(alphabet) for _ in range(rng.randrange(200, 320))) for _ in range(8)]
    rows = list(bases)
    for b in bases:
        rows += _edit_copies(b, rng, 6, alphabet)
        rows += [b[:250], b[:254], b[:255], b[:256]]
    rng.shuffle(rows)
    return rows


@pytest.mark.parametrize("threshold", THRESHOLDS)
@pytest.mark.parametrize("seed", range(3))
def test_texts_around_the_short_text_limit_equal_all_pairs(threshold: float, seed: int) -> None:
    rows = boundary_corpus(seed)
    assert find_duplicates(rows, threshold=threshold) == brute_duplicates(rows, threshold)
    evals = [EvalText("e", str(i), t) for i, t in enumerate(boundary_corpus(seed + 100)[:30])]
    assert find_contamination(rows, evals, threshold=threshold) == brute_contamination(rows, evals, threshold)


def _band_jobs(rows: list[str], evals: list[str], threshold: float):  # type: ignore[no-untyped-def]
    """A dedup job (rows against themselves) and a decontamination job (rows against evals)."""
    import m1data.stages.fuzzy as fz

    f = fz._check_threshold(threshold)
    distinct, _, _ = fz._distinct(rows)
    side = fz._self_side(distinct, f)
    hist, lens = fz._histograms(distinct + evals)
    grouping = fz._grouping(hist)
    n = len(distinct)
    train = fz._side(distinct, hist[:n], lens[:n], f, grouping)
    ev = fz._side(evals, hist[n:], lens[n:], f, grouping)
    return [fz.BandJob(side, side, f, threshold, True), fz.BandJob(train, ev, f, threshold, False)]


def _fast_loops_against_the_int16_loop(rows: list[str], evals: list[str], threshold: float) -> dict[str, int]:
    """Run ``_min_pass`` / ``_narrow_pass`` beside ``_group_pass`` on every band of a dedup and a
    decontamination job, assert they keep the same pairs, and count what was checked."""
    import m1data.stages.fuzzy as fz

    reference, narrow, minima = (fz._compiled(k) for k in (fz._group_pass, fz._narrow_pass, fz._min_pass))
    checked = {"narrow": 0, "minima": 0, "partial": 0, "wide": 0, "pairs": 0}
    for job in _band_jobs(rows, evals, threshold):
        for r0, r1 in job.bands():
            window = job._window(r0, r1)
            lo, hi = np.ascontiguousarray(window[:, 0]), np.ascontiguousarray(window[:, 1])
            capacity = (r1 - r0) * max(int(hi.max() - lo.min()), 1)
            chosen, row_bound, col_bound = job.group_pass(r1, hi)
            fast = [(chosen, row_bound, col_bound)]
            widest = job.rows.share[r1 - 1] + (job.cols.share[hi[-1] - 1] if hi[-1] > 0 else 0)
            if chosen is minima and widest <= 254:  # the byte loop can take this band too
                fast.append((narrow, job.rows.byte_share, job.cols.byte_share))
            kept = []
            for kernel, row_b, col_b in [(reference, job.rows.share, job.cols.share), *fast]:
                out_r, out_c = np.empty(capacity, np.int64), np.empty(capacity, np.int64)
                found = kernel(job.rows.groups, job.cols.groups, row_b, col_b, r0, r1, lo, hi, out_r, out_c)
                kept.append(sorted(zip(out_r[:found].tolist(), out_c[:found].tolist())))
            for (kernel, _, _), pairs in zip(fast, kept[1:]):
                assert pairs == kept[0], kernel
                checked["minima" if kernel is minima else "narrow"] += 1
            checked["partial"] += (r1 - r0) % 4 != 0 and chosen is minima
            checked["wide"] += int(hi.max() - lo.min() > fz.COLUMN_BLOCK)
            checked["pairs"] += len(kept[0])
    return checked


def test_the_fast_loops_keep_exactly_the_pairs_of_the_int16_loop() -> None:
    """``_min_pass`` (sums of group minima, short texts) and ``_narrow_pass`` (saturating bytes,
    four rows at a time) are ``_group_pass`` made faster: on every band each may take, both in
    a self-join and against another side, they keep the same pairs, rows past a multiple of four
    included."""
    for threshold in (90.0, 95.0):
        rows = [r for seed in range(3) for r in adversarial_corpus(seed) + boundary_corpus(seed)]
        evals = list(dict.fromkeys(boundary_corpus(7)[:40] + adversarial_corpus(7)[:40]))
        checked = _fast_loops_against_the_int16_loop(rows, evals, threshold)
        assert checked["narrow"] and checked["minima"] and checked["partial"]  # both loops ran, on partial blocks too


def wide_corpus(seed: int, n: int = 2500) -> list[str]:
    """Thousands of texts of nearly one length (short ones and ones over SHORT_TEXT), all near
    copies of a few: length windows more than a column block wide, so a band's rows start and end
    their windows in different blocks, and passing pairs in every block, at its edges too."""
    rng = random.Random(seed)
    alphabet = "abcdefgh ij.,é"
    rows = []
    for low, high in ((150, 170), (270, 290)):
        for _ in range(5):
            base = "".join(rng.choice(alphabet) for _ in range(rng.randrange(low, high)))
            rows += _edit_copies(base, rng, n // 5, alphabet)
    rng.shuffle(rows)
    return rows


@pytest.mark.parametrize(("seed", "threshold"), [(0, 95.0), (2, 90.0), (4, 97.0)])
def test_the_fast_loops_agree_across_column_blocks(seed: int, threshold: float) -> None:
    """The byte loops take a block of columns at a time for every row of the band (so the block
    stays in the L1 cache), and each row only the part of it in its own window: on windows more
    than a block wide they still keep exactly the int16 loop's pairs."""
    rows = wide_corpus(seed)
    evals = wide_corpus(seed + 1, n=1200)
    checked = _fast_loops_against_the_int16_loop(rows, evals, threshold)
    assert checked["narrow"] and checked["minima"] and checked["partial"] and checked["wide"] >= 4
    assert checked["pairs"] >= 100_000  # the near copies pass the filter, in every block


@pytest.mark.parametrize("spec", ["{file}", "mine={file}"])
def test_decontaminate_fingerprint_follows_an_eval_file_given_alone(tmp_path, spec):
    """An eval set given as FILE alone (name = the path, no path field) is read from that file, so
    editing it must change the stage's fingerprint, as it does for NAME=FILE: else a build reuses
    the decontaminated rows of the old eval set."""
    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps({"question": "What is x?", "options": ["a", "b", "c", "d"], "answer_idx": 0}) + "\n")
    stage = Decontaminate(DecontaminateConfig(), [spec.format(file=path)])
    before = stage.external_fingerprint()
    path.write_text(json.dumps({"question": "Another question?", "options": ["a", "b", "c", "d"], "answer_idx": 1}) + "\n")
    assert stage.external_fingerprint() != before


def test_matcher_refuses_a_single_str_and_non_text_items() -> None:
    # a str is a sequence of characters: matched one by one it gave duplicates that are not there
    with pytest.raises(TypeError, match="not a single str"):
        find_duplicates("Which valve lesion causes a murmur?")
    with pytest.raises(TypeError, match=r"texts\[1\] is NoneType"):
        find_duplicates(["a question", None])
    with pytest.raises(TypeError, match="not a single str"):
        find_contamination(["a question"], "a question")
    # a mapping is decontaminate's {set: questions}: iterated, its keys were matched
    for call in (lambda: find_contamination(["a question"], {"medqa_test": ["a question"]}),
                 lambda: fuzzy.contamination_pairs(["a question"], {"a question": "x"}),
                 lambda: find_duplicates({"a question": 1, "a questions": 2})):
        with pytest.raises(TypeError, match="not a mapping"):
            call()


def test_find_contamination_takes_plain_eval_strings() -> None:
    (match,) = find_contamination(["x", "Which valve lesion causes a murmur?"], ["Which valve lesion causes a murmur?"])
    assert (match.index, match.set_name, match.item_id, match.score) == (1, "eval", "0", 100.0)


def _frames():
    import pandas as pd
    import polars as pl

    data = {"id": ["t0", "t1"], "question": ["Which valve lesion causes a crescendo-decrescendo murmur?",
                                             "What does insulin do?"]}
    return data, pd.DataFrame(data), pl.DataFrame(data)


def test_decontaminate_reads_one_eval_set_and_dataframes_not_their_iteration() -> None:
    # iterated, a Dataset gives row dicts and a DataFrame its column names: both matched nothing
    from datasets import Dataset

    data, pandas_frame, polars_frame = _frames()
    train = Dataset.from_dict(data)
    for evals in (train, pandas_frame, {"mine": pandas_frame}, {"mine": polars_frame}):
        kept, removed = decontaminate(train, evals)
        assert sorted(removed["eval_id"]) == ["t0", "t1"] and len(kept) == 0, evals
    with pytest.raises(TypeError, match="not a single str"):
        decontaminate(train, data["question"][0])


def test_dedup_and_decontaminate_take_dataframes_and_row_lists() -> None:
    data, pandas_frame, polars_frame = _frames()
    rows = [dict(zip(data, values)) for values in zip(*data.values())]
    for held in (pandas_frame, polars_frame, rows):
        kept, removed = deduplicate(held)
        assert kept["id"] == ["t0", "t1"] and len(removed) == 0
        kept, removed = decontaminate(held, [data["question"][1]])
        assert kept["id"] == ["t0"] and removed["id"] == ["t1"]
    with pytest.raises(TypeError, match="must be a datasets.Dataset"):
        deduplicate({"question": data["question"]})


def test_rows_and_eval_sets_as_row_lists_mixed_ids_and_no_rows() -> None:
    # a list of row dicts as an eval set: "evals[0] must be an EvalText (with str text)"; mixed ids:
    # pyarrow's "Could not convert 'b' with type str"; [] : "must be ... a list of row dicts, got list"
    data, _, _ = _frames()
    rows = [dict(zip(data, values)) for values in zip(*data.values())]
    kept, removed = decontaminate([{"id": "x", "question": data["question"][0]}], {"mine": rows})
    assert len(kept) == 0 and (removed["eval_set"], removed["eval_id"]) == (["mine"], ["t0"])
    with pytest.raises(UserError, match=r"the rows: column 'id' mixes number and str values"):
        deduplicate([{"id": 1, "question": "a"}, {"id": "b", "question": "b"}])
    with pytest.raises(UserError, match=r"eval set mine: column 'id' mixes number and str values"):
        decontaminate(rows, {"mine": [{"id": 1, "question": "a"}, {"id": "b", "question": "b"}]})
    for kept, removed in (deduplicate([]), decontaminate([], {"mine": rows})):
        assert len(kept) == 0 and len(removed) == 0


def test_an_eval_question_that_is_not_a_str_is_named() -> None:
    # a None question in an eval set: "evals[0] must be an EvalText (with str text) or a str"
    from datasets import Dataset

    data, _, _ = _frames()
    with pytest.raises(UserError, match=r"eval set mine: question 1 is NoneType, not str"):
        decontaminate(Dataset.from_dict(data), {"mine": ["a", None]})
    with pytest.raises(UserError, match=r"eval set mine: row 'e1': its 'question' is NoneType, not str"):
        decontaminate(Dataset.from_dict(data), {"mine": Dataset.from_dict({"id": ["e0", "e1"], "question": ["a", None]})})


def test_dedup_and_decontaminate_show_no_datasets_bars(capfd: pytest.CaptureFixture[str]) -> None:
    # README: a library call prints nothing; datasets' "Flattening the indices" bar is on by default
    import datasets

    data, _, _ = _frames()
    datasets.enable_progress_bars()
    train = datasets.Dataset.from_dict({"id": ["a", "b"], "question": [data["question"][0]] * 2})
    capfd.readouterr()
    deduplicate(train)
    decontaminate(train, [data["question"][0]])
    assert capfd.readouterr().err == ""
    assert datasets.is_progress_bar_enabled()  # left as it was


def test_a_0_to_1_threshold_is_refused_with_the_scale_it_needs() -> None:
    # 0.95 (a MinHash/cosine habit) matched these two texts, ratio 90.9, and nearly every pair in a set
    with pytest.raises(UserError, match="0-1 scale.*did you mean 95"):
        find_duplicates(["abc def ghi", "abc def ghj"], threshold=0.95)
    with pytest.raises(TypeError, match="0-100 scale, got str"):
        find_duplicates(["a"], threshold="95")
    assert find_duplicates(["abc", "abc"], threshold=np.float32(95)) == [DupMatch(1, 0, 100.0)]


def test_an_eval_file_given_as_a_str_mapping_value_is_read(tmp_path) -> None:
    # {"mine": "evals.jsonl"} failed with "not a str" though the docstring names paths as mapping values
    from datasets import Dataset

    question = "Which valve lesion causes a crescendo-decrescendo murmur?"
    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps({"question": question, "options": ["A opt", "B opt"], "answer": "A opt"}) + "\n")
    train = Dataset.from_dict({"id": ["t0", "t1"], "question": [question, "What does insulin do?"],
                               "options": [["B opt", "A opt"], ["x", "y"]]})
    kept, removed = decontaminate(train, {"mine": str(path)})
    assert kept["id"] == ["t1"] and removed["eval_set"] == ["mine"]
    with pytest.raises(UserError, match="is no file"):
        decontaminate(train, {"mine": question})


@pytest.mark.parametrize("context", ["", "An abstract."])
@pytest.mark.parametrize("compare", [deduplicate, lambda rows: decontaminate(rows, ["Some eval question?"])])
def test_a_none_question_is_reported_by_the_rows_id(context, compare) -> None:
    """deduplicate said "texts[1] is NoneType" (a position the caller never saw), and with a
    context compared the text "ctx\\nNone"; other per-row errors name the row by its id."""
    rows = [{"id": "medqa:a", "question": "Which valve?", "context": context},
            {"id": "medqa:b", "question": None, "context": context}]
    with pytest.raises(UserError, match=r"row 'medqa:b': its 'question' is NoneType, not str"):
        compare(rows)
    without_ids = [{k: v for k, v in row.items() if k != "id"} for row in rows]
    with pytest.raises(UserError, match=r"row 1 \(the rows have no 'id'\): its 'question' is NoneType"):
        compare(without_ids)


def test_an_eval_set_name_or_file_given_as_a_question_is_refused(tmp_path) -> None:
    # decontaminate(rows, ["medqa_test"]) compared the rows with the text "medqa_test": nothing
    # removed, nothing said
    from datasets import Dataset

    from m1data.reading.evalsets import EvalInput

    data, _, _ = _frames()
    rows = Dataset.from_dict(data)
    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps({"question": data["question"][0], "options": ["a", "b"], "answer_idx": "A"}) + "\n")
    for text in ("medqa_test", "mmlu_medical", str(path)):
        with pytest.raises(UserError, match=r"in a list of evals is read as a question, yet it names an eval set"):
            decontaminate(rows, [text])
    kept, removed = decontaminate(rows, [EvalInput(str(path))])  # as it says
    assert removed["id"] == ["t0"]


def test_large_byte_arrays_come_zeroed_writable_and_picklable() -> None:
    """``_zeros`` maps arrays of 16 MB and more with MAP_POPULATE (Linux); they must behave as
    ``np.zeros`` does, pickled for a Ray task included."""
    import pickle

    import m1data.stages.fuzzy as fz

    for shape in ((3, 5), (4096, 4097)):
        array = fz._zeros(shape)
        assert array.shape == shape and array.dtype == np.uint8 and not array.any()
        array[-1, -1] = 7
        copy = pickle.loads(pickle.dumps(array))
        assert copy[-1, -1] == 7 and copy.sum() == 7


def test_a_job_without_texts_filters_the_same_pairs_and_pickles_small() -> None:
    """What a Ray task gets (``BandJob.without_texts``) filters as the whole job does; scoring
    its survivors with the whole job gives ``match``. Its pickle holds no text: a task unpickles
    it anew, and 985K texts took 1.6 s each time."""
    import pickle

    import m1data.stages.fuzzy as fz

    rows = [r for seed in range(3) for r in adversarial_corpus(seed) + boundary_corpus(seed)]
    evals = list(dict.fromkeys(boundary_corpus(0)[:40] + boundary_corpus(7)[:40]))  # some match
    for job in _band_jobs(rows, evals, 90.0):
        bands = job.bands()
        light = job.without_texts()
        assert (light.rows is light.cols) == (job.rows is job.cols)
        filtered = light.filtered(bands)
        assert all(np.array_equal(a, b) for a, b in zip(filtered, job.filtered(bands)))
        matched = job.match(bands)
        assert len(matched[0]) and all(np.array_equal(a, b) for a, b in zip(job.score(*filtered), matched))
        assert not any(text in pickle.dumps(light) for text in (t.encode() for t in rows if len(t) > 20))


_NO_CACHE_FOLDER = """
import json, logging, sys
from numba.core import caching
impl = getattr(caching, "CacheImpl", None) or caching._CacheImpl   # numba 0.68 made it public
impl._locator_classes = []   # numba finds no writable folder for its cache
logging.basicConfig(level=logging.WARNING)
from m1data.stages.fuzzy import find_duplicates
rows = json.loads(sys.stdin.read())
print(json.dumps([[m.index, m.match_index, m.score] for m in find_duplicates(rows, threshold=90.0)]))
"""


def test_the_matcher_runs_where_numba_has_no_cache_folder() -> None:
    """A read-only install run by a user without a writable home (a container's or a cluster
    worker's user) leaves numba no folder for its cache, and numba then refuses to compile with
    caching ("no locator available"): the main job stopped in dedup with that traceback. The loops
    compile uncached instead, with one warning. A fresh process, since compiled loops are kept
    per process; numba's own list of cache folders emptied is exactly the state it refuses in."""
    import subprocess
    import sys

    rows = [r for seed in range(2) for r in adversarial_corpus(seed)]
    done = subprocess.run([sys.executable, "-c", _NO_CACHE_FOLDER], input=json.dumps(rows), capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    expected = brute_duplicates(rows, 90.0)
    assert expected and json.loads(done.stdout) == [[m.index, m.match_index, m.score] for m in expected]
    assert done.stderr.count("no writable folder to cache") == 1 and "NUMBA_CACHE_DIR" in done.stderr


# ------------------------------------------------------------------ rows in the layouts researchers bring
#
# m1data's loaders read options and contexts in every layout the sources write; rows a researcher
# passes to `deduplicate`/`decontaminate` come in the same layouts. Each layout must compare as the
# loaded rows do: options as {letter: text} were compared as their letters, "A. x" letters were taken
# off the eval side only, a PubMedQA context dict was compared as its repr, and a row without options
# missed the eval items that have them.

LETTERS = "ABCDEFGHIJ"


def _options_in(layout: str, options: list[str]):
    if layout == "list":
        return list(options)
    if layout == "dict":  # MedQA's own
        return {LETTERS[i]: o for i, o in enumerate(options)}
    if layout == "lettered":  # "A. x", as raw files write them
        return [f"{LETTERS[i]}. {o}" for i, o in enumerate(options)]
    if layout == "labels":  # ARC's and CommonsenseQA's
        return {"label": list(LETTERS[: len(options)]), "text": list(options)}
    assert layout == "cell"  # a CSV's text of a list
    return json.dumps(options)


def _context_in(layout: str, paragraphs: list[str]):
    return {"str": "\n".join(paragraphs), "list": list(paragraphs),
            "pubmedqa": {"contexts": list(paragraphs), "labels": ["X"] * len(paragraphs), "meshes": ["m"]}}[layout]


# options written into the question, as prompt-formatted copies of eval sets write them
IN_QUESTION = {
    "question-lines": lambda stem, opts: stem + "\n" + "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(opts)),
    "question-parens": lambda stem, opts: stem + "\n" + "\n".join(f"({LETTERS[i]}) {o}" for i, o in enumerate(opts)),
    "question-one-line": lambda stem, opts: stem + " Answer Choices: " + " ".join(
        f"({LETTERS[i]}) {o}" for i, o in enumerate(opts)),
    "question-prompt": lambda stem, opts: "Question: " + stem + "\nOptions:\n" + "\n".join(
        f"{LETTERS[i].lower()}) {o}" for i, o in enumerate(opts)) + "\nAnswer:",
}


# options in columns of their own, as MedMCQA (opa..opd), MMLU's CSV (A..D) and its Hub rows (choices) write them
IN_COLUMNS = {
    "columns-op": lambda opts: {f"op{'abcdef'[i]}": o for i, o in enumerate(opts)},
    "columns-letters": lambda opts: {LETTERS[i]: o for i, o in enumerate(opts)},
    "choices": lambda opts: {"choices": list(opts)},
}


def _row(row_id: str, stem: str, options: list[str] | None, option_layout: str, paragraphs: list[str] | None,
         context_layout: str) -> dict:
    row = {"id": row_id, "question": stem}
    if options is not None and option_layout in IN_QUESTION:
        row["question"] = IN_QUESTION[option_layout](stem, options)
    elif options is not None and option_layout in IN_COLUMNS:
        row.update(IN_COLUMNS[option_layout](options))
    elif options is not None and option_layout == "question-and-column":  # the list and the column in other orders
        row["question"], row["options"] = IN_QUESTION["question-lines"](stem, options), options[::-1]
    elif options is not None:
        row["options"] = _options_in(option_layout, options)
    if paragraphs is not None:
        row["context"] = _context_in(context_layout, paragraphs)
    return row


def _container(rows: list[dict], kind: str):
    from datasets import Dataset

    if kind == "dataset":
        return Dataset.from_list(rows)
    if kind == "pandas":
        import pandas as pd

        return pd.DataFrame(rows)
    return rows


OPTION_LAYOUTS = ["list", "dict", "lettered", "labels", "cell", *IN_QUESTION, *IN_COLUMNS, "question-and-column", "none"]
CONTEXT_LAYOUTS = ["str", "list", "pubmedqa"]


@settings(max_examples=80, deadline=None)
@given(stem=st.lists(st.sampled_from(WORDS), min_size=6, max_size=25).map(" ".join),
       options=st.lists(option_texts, min_size=2, max_size=5, unique=True),
       paragraphs=st.none() | st.lists(st.lists(st.sampled_from(WORDS), min_size=3, max_size=12).map(" ".join),
                                       min_size=1, max_size=3),
       row_layout=st.sampled_from(OPTION_LAYOUTS), eval_layout=st.sampled_from(OPTION_LAYOUTS),
       row_context=st.sampled_from(CONTEXT_LAYOUTS), eval_context=st.sampled_from(CONTEXT_LAYOUTS),
       containers=st.tuples(*[st.sampled_from(["list", "dataset", "pandas"])] * 2), seed=st.integers(0, 99))
def test_a_copy_in_any_layout_is_contamination(stem, options, paragraphs, row_layout, eval_layout, row_context,
                                               eval_context, containers, seed) -> None:
    """The same question on both sides, each side in its own layout (options as a list, a
    {letter: text} dict, lettered texts, labels beside texts, a CSV cell, written into the question
    after their letters, or none at all; the context as text, paragraphs or PubMedQA's dict), the
    row's options shuffled: always removed."""
    shuffled_options = random.Random(seed).sample(options, len(options))
    row = _row("r0", stem, None if row_layout == "none" else shuffled_options, row_layout, paragraphs, row_context)
    item = _row("e0", stem, None if eval_layout == "none" else options, eval_layout, paragraphs, eval_context)
    other = _row("r1", "An unrelated question about the kidney and the urine?",
                 None if row_layout == "none" else ["x y", "z w"], row_layout,
                 paragraphs and ["another abstract entirely"], row_context)  # one column, one layout
    _, dropped = decontaminate(_container([row, other], containers[0]), {"eval": _container([item], containers[1])})
    assert list(dropped["id"]) == ["r0"]


@pytest.mark.parametrize("layout", [layout for layout in OPTION_LAYOUTS if layout != "none"])
def test_dedup_reads_options_in_every_layout(layout: str) -> None:
    """One generic stem with other options is another question; the same options shuffled is a copy."""
    generic = "Which of the following is true?"
    first = ["The heart has four chambers", "The liver sits in the skull", "Bone is a living tissue"]
    second = ["Kidneys filter the blood", "Lungs pump the blood", "The spleen makes insulin"]
    rows = [_row(f"r{i}", generic, options, layout, None, "str")
            for i, options in enumerate([first, second, first[::-1]])]
    kept, dropped = deduplicate(rows)
    assert list(kept["id"]) == ["r0", "r1"]
    assert list(dropped["id"]) == ["r2"] and list(dropped["match_id"]) == ["r0"] and list(dropped["score"]) == [100.0]


@pytest.mark.parametrize("side", ["rows", "eval"])
def test_a_none_option_or_an_unreadable_context_is_named_by_its_row(side: str) -> None:
    good = {"id": "ok", "question": STEM, "options": OPTIONS}
    for bad, problem in [({"id": "bad", "question": STEM, "options": ["x", None]}, "option B is NoneType"),
                         ({"id": "bad", "question": STEM, "options": OPTIONS, "context": 7}, "'context' is int")]:
        rows, evals = ([good, bad], [good]) if side == "rows" else ([good], [good, bad])
        with pytest.raises(UserError, match=rf"row 'bad'.*{problem}"):
            decontaminate(rows, {"mine": evals})


def test_evals_as_a_datasetdict_or_a_stream() -> None:
    """A DatasetDict given as the evals is its splits, each a set; one inside the evals, or a
    streamed IterableDataset, is refused in a line that says what to give."""
    from datasets import Dataset, DatasetDict

    row = {"id": "r0", "question": STEM, "options": OPTIONS}
    splits = DatasetDict({"test": Dataset.from_list([{"id": "e0", "question": STEM, "options": OPTIONS[::-1]}])})
    _, dropped = decontaminate([row], splits)
    assert list(dropped["eval_set"]) == ["test"] and list(dropped["eval_id"]) == ["e0"]
    with pytest.raises(UserError, match=r"eval set mine is a DatasetDict of splits \['test'\]: give one split"):
        decontaminate([row], {"mine": splits})
    with pytest.raises(UserError, match="streamed IterableDataset"):
        decontaminate([row], {"mine": splits["test"].to_iterable_dataset()})


def _jsonl_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_raw_medqa_rows_as_read_from_their_file_are_decontaminated_as_loaded_ones(shared_data: Path) -> None:
    """MedQA's own rows ({letter: text} options), handed over as the dicts its file holds, against
    the MedQA-USMLE test set: the same removals as the rows m1data's loader makes of the file
    (76 of 200 before: their options were compared as "A\\nB\\nC\\nD"); bare stems too."""
    from m1data.reading.evalsets import EvalInput
    from m1data.reading.sources import load_source

    path = shared_data / "raw/medqa/4_options_phrases_no_exclude_test.jsonl"
    raw = [{"id": str(i), "question": r["question"], "options": r["options"]}
           for i, r in enumerate(_jsonl_records(path)[:200])]
    evals = [EvalInput("medqa_test", str(shared_data / "eval/medagentsbench/medqa/test.jsonl"))]
    loaded = load_source("medqa", path).rows.select(range(200))
    _, dropped_loaded = decontaminate(loaded, evals)
    assert len(dropped_loaded) == 200
    _, dropped_raw = decontaminate(raw, evals)
    assert len(dropped_raw) == 200
    bare = [{"id": r["id"], "question": r["question"]} for r in raw]
    assert len(decontaminate(bare, evals)[1]) == 200


def test_hub_shaped_pubmedqa_rows_are_decontaminated_as_loaded_ones(shared_data: Path) -> None:
    """PubMedQA rows as the Hub lays them out (context = {"contexts": [...], "labels", "meshes"})
    against the PubMedQA test set: every test question goes (3 of 500 before: the context was
    compared as its Python repr)."""
    from m1data.reading.evalsets import EvalInput

    path = shared_data / "raw/pubmedqa/ori_pqal.json"
    test_ids = set(json.loads((shared_data / "raw/pubmedqa/test_ground_truth.json").read_text()))
    raw = json.loads(path.read_text())
    rows = [{"id": pmid, "question": r["QUESTION"], "options": ["yes", "no", "maybe"],
             "context": {"contexts": r["CONTEXTS"], "labels": r["LABELS"], "meshes": r["MESHES"]}}
            for pmid, r in raw.items() if pmid in test_ids]
    _, dropped = decontaminate(rows, [EvalInput("pubmedqa_test", str(path))])
    assert len(dropped) == len(rows) == 500


@pytest.mark.parametrize("layout", list(IN_QUESTION))
def test_plain_string_eval_questions_that_write_their_options_are_read_with_them(layout) -> None:
    """A plain-string eval question that ends with its options was compared, options and all,
    with the rows' stems: given as a Dataset row it was caught, given as a str it was not (review)."""
    stem = "A man of 45 has crushing chest pain that spreads to the left arm for two hours; best first drug?"
    options = ["Aspirin", "Warfarin", "Apixaban", "Heparin"]
    rows = [{"id": "r", "question": stem, "options": ["Heparin", "Aspirin", "Warfarin", "Apixaban"]}]
    question = IN_QUESTION[layout](stem, options)
    for evals in ({"e": [question]}, [question], {"e": [{"question": question}]}):
        assert list(decontaminate(rows, evals)[1]["id"]) == ["r"], evals


# --- copies written as other pipelines write them (audit: each kept every verbatim copy) --------

_URINE = "Which of the following best describes the structure that collects urine in the body?"
_ORGANS = ["Bladder", "Kidney", "Ureter", "Urethra"]
_AS_WRITTEN = {
    "numbered options": {"question": _URINE, "options": [f"{i + 1}. {o}" for i, o in enumerate(reversed(_ORGANS))]},
    "(1) options": {"question": _URINE, "options": [f"({i + 1}) {o}" for i, o in enumerate(_ORGANS)]},
    "Option A: options": {"question": _URINE, "options": [f"Option {'ABCD'[i]}: {o}" for i, o in enumerate(_ORGANS)]},
    "[A] options": {"question": _URINE, "options": [f"[{'ABCD'[i]}] {o}" for i, o in enumerate(_ORGANS[::-1])]},
    "A - options": {"question": _URINE, "options": [f"{'ABCD'[i]} - {o}" for i, o in enumerate(_ORGANS[::-1])]},
    "A.x options": {"question": _URINE, "options": [f"{'ABCD'[i]}.{o}" for i, o in enumerate(_ORGANS[::-1])]},
    "0-based numbers": {"question": _URINE, "options": [f"{i}. {o}" for i, o in enumerate(_ORGANS[::-1])]},
    "options in the question too": {"question": _URINE + "\nA. Urethra\nB. Ureter\nC. Kidney\nD. Bladder",
                                    "options": ["Urethra", "Ureter", "Kidney", "Bladder"]},
    "lettered options beside answer_letter": {"question": _URINE, "options": [f"{'ABCD'[i]}. {o}" for i, o in
                                                                              enumerate(_ORGANS)], "answer_letter": "A"},
    "a Question: label": {"question": "Question: " + _URINE, "options": _ORGANS[::-1]},
    "an Answer: line": {"question": _URINE + "\nAnswer:", "options": _ORGANS[::-1]},
    "an instruction after it": {"question": _URINE + "\nChoose the best answer.", "options": _ORGANS[::-1]},
    "an instruction on its line": {"question": _URINE + " Select the correct option.", "options": _ORGANS},
    "a harness prompt": {"question": "The following are multiple choice questions (with answers) about anatomy.\n\n"
                                     "Question: " + _URINE + "\nAnswer with the option's letter.\n"
                                     + "\n".join(f"{'ABCD'[i]}. {o}" for i, o in enumerate(_ORGANS)) + "\nAnswer:",
                         "options": _ORGANS},
    "a bold Markdown prompt": {"question": "**Question:** " + _URINE + "\n**Options:**\n"
                                           + "\n".join(f"{'ABCD'[i]}. {o}" for i, o in enumerate(_ORGANS)) + "\n**Answer:**",
                               "options": _ORGANS},
    # re-scraped text: each difference costs the ratio a character or more (compared_text)
    "non-breaking spaces": {"question": _URINE.replace(" ", "\u00a0"), "options": _ORGANS},
    "doubled spaces": {"question": _URINE.replace(" ", "  "), "options": _ORGANS},
    "upper case": {"question": _URINE.upper(), "options": [o.upper() for o in _ORGANS]},
    "full-width letters": {"question": "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in _URINE),
                           "options": _ORGANS},
}


@pytest.mark.parametrize("layout", sorted(_AS_WRITTEN))
def test_a_copy_is_caught_however_its_question_and_options_are_written(layout):
    """The same reading of a question and its options on both sides, in memory as from files:
    number and "Option A:" labels come off as letters do, a question that writes its options
    beside an options column loses them, and so does a "Question:" label or an instruction on how
    to answer; rows with an answer_letter column are read so too (they were once used as they were)."""
    written = {"id": "w", **_AS_WRITTEN[layout]}
    plain = {"id": "p", "question": _URINE, "options": _ORGANS}
    for rows, evals in (([written], {"mmlu_anatomy": [plain]}), ([plain], {"mmlu_anatomy": [written]})):
        kept, removed = decontaminate(rows, evals)
        assert removed.num_rows == 1 and kept.num_rows == 0, (layout, rows, evals)
    assert deduplicate([plain, written])[1]["id"] == ["w"]


def test_options_labelled_out_of_order_lose_their_labels_for_the_matcher():
    """A loaded row's shuffled species options ("C. difficile", "A. baumannii", ...) looked like
    labels out of order and stopped dedup (bad_options); left as they were, a copy whose options
    carry real labels out of order was missed. The matcher sorts options and reads no key, so
    the labels come off in any order, on both sides."""
    from m1data.schema import make_row

    row = make_row(source="medmcqa", row_id="m1", question="Which organism causes X?",
                   options=["A. baumannii", "B. anthracis", "C. difficile", "D. immitis"], answer_idx=1, raw={})
    assert deduplicate([row])[0].num_rows == 1 and decontaminate([row], ["Another question?"])[0].num_rows == 1
    copy = {"id": "c", "question": _URINE, "options": ["C. Kidney", "A. Bladder", "D. Urethra", "B. Ureter"],
            "answer_letter": "B"}
    assert decontaminate([copy], {"mmlu_anatomy": [{"id": "e", "question": _URINE, "options": _ORGANS}]})[1].num_rows == 1


def test_numbered_options_about_numbered_statements_keep_their_numbers():
    from m1data.reading.readers import strip_option_letters

    for options in (["(1) only", "(2) only", "(3) only", "(4) only"], ["(1) and (2)", "(2) and (3)", "(3) and (4)"],
                    ["1) Incision 2) Drainage", "2) Drainage 1) Incision", "3) none", "4) both"]):
        assert strip_option_letters(options) == options
    assert strip_option_letters(["1. Urethra", "2. Ureter"]) == ["Urethra", "Ureter"]


def test_the_stem_pass_reads_options_as_the_keys_do():
    """A full-width copy with an option added: its stem matched, then its options were compared
    lower-cased only, shared none, and the copy stayed."""
    wide = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in _URINE + " Bladder Kidney Ureter Urethra")
    words = wide.split()
    copy = {"id": "c", "question": " ".join(words[:-4]), "options": words[-4:] + ["Renal pelvis"]}
    evals = {"mmlu_anatomy": [{"id": "e", "question": _URINE, "options": _ORGANS}]}
    assert decontaminate([copy], evals)[1].num_rows == 1


def test_the_tries_of_one_question_go_or_stay_together():
    """traces' `keep: all` rows (`q-try1`, `q-try3`, beside an `attempt` column): one question's
    tries are not each other's duplicates (dedup_final removed every try but the first), and a
    question that copies an earlier one goes with all its tries. Without `attempt` such ids are
    any other ids."""
    rows = [{"id": i, "question": q, "options": _ORGANS, "attempt": int(i[-1])}
            for i, q in [("a-try1", _URINE), ("a-try2", _URINE), ("b-try1", "What filters the blood?"),
                         ("c-try2", _URINE + " "), ("c-try3", _URINE + " ")]]
    kept, dropped = deduplicate(rows)
    assert list(kept["id"]) == ["a-try1", "a-try2", "b-try1"]
    assert list(dropped["id"]) == ["c-try2", "c-try3"] and list(dropped["match_id"]) == ["a-try1", "a-try1"]
    kept, dropped = deduplicate([{k: v for k, v in row.items() if k != "attempt"} for row in rows])
    assert list(kept["id"]) == ["a-try1", "b-try1"]


def test_a_file_whose_context_column_mixes_shapes_compares_the_abstracts(tmp_path) -> None:
    """Hub PubMedQA rows ({"contexts": [...]}) beside rows with a text context: `datasets` reads such a
    column as JSON text, which was compared as it was ('{"contexts":[...'), so 0 of 3 copies of test
    questions went, and a question in both shapes was kept twice."""
    from m1data.reading.readers import read_rows

    paragraphs = ["Aspirin lowers the risk of stroke in adults over sixty.", "Bleeding rose by a tenth."]
    stem = "Does aspirin prevent stroke in older adults?"
    rows = [{"id": "hub", "question": stem, "options": ["yes", "no", "maybe"],
             "context": {"contexts": paragraphs, "labels": ["BACKGROUND", "RESULTS"]}},
            {"id": "text", "question": stem, "options": ["yes", "no", "maybe"], "context": "\n".join(paragraphs)},
            {"id": "other", "question": "Is heparin safe in pregnancy?", "options": ["yes", "no", "maybe"],
             "context": "Heparin does not cross the placenta."}]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    ds = read_rows(path)
    assert type(ds.features["context"]).__name__ == "Json"  # (what datasets makes of the column)
    kept, dropped = deduplicate(ds)
    assert list(kept["id"]) == ["hub", "other"] and list(dropped["id"]) == ["text"]
    item = {"id": "e", "question": stem, "options": ["yes", "no", "maybe"], "context": "\n".join(paragraphs)}
    _, dropped = decontaminate(ds, {"pubmedqa_test": [item]})
    assert sorted(dropped["id"]) == ["hub", "text"]


def _soft_hyphens(text: str) -> str:
    """Every word of eight or more letters hyphenated every three letters, as a web page's &shy; does."""
    return " ".join("\u00ad".join(word[i:i + 3] for i in range(0, len(word), 3)) if len(word) >= 8 else word
                    for word in text.split(" "))


INVISIBLE = {  # how a re-scraped copy of a question comes with characters no reader sees
    "zero-width spaces": lambda text: text.replace(" ", " \u200b"),
    "soft hyphens": _soft_hyphens,
    "word joiners and marks": lambda text: "\ufeff" + text.replace(" ", "\u2060 \u200e"),
}


@pytest.mark.parametrize("kind", sorted(INVISIBLE))
def test_a_copy_written_with_invisible_characters_is_a_copy(shared_data: Path, kind: str) -> None:
    """Real MedQA test questions and copies of them that differ only in characters nobody sees
    (Unicode format characters: zero-width spaces, soft hyphens, word joiners, a byte order
    mark, direction marks). They were compared as characters, each cost the ratio one, and a
    copy with one after every word, or in every long word, scored under 95 and stayed (as a
    training row, and as a duplicate). They are not text: they go, on both sides."""
    path = shared_data / "raw/medqa/4_options_phrases_no_exclude_test.jsonl"
    with path.open(encoding="utf-8") as fh:
        real = [json.loads(line) for line, _ in zip(fh, range(30))]
    evals = {"medqa_test": [{"id": f"e{i}", "question": r["question"], "options": list(r["options"].values())}
                            for i, r in enumerate(real[:20])]}
    copies = [{"id": f"c{i}", "question": INVISIBLE[kind](r["question"]),
               "options": [INVISIBLE[kind](o) for o in reversed(r["options"].values())]} for i, r in enumerate(real)]
    kept, removed = decontaminate(copies, evals)
    assert list(removed["id"]) == [f"c{i}" for i in range(20)]
    assert list(removed["eval_id"]) == [f"e{i}" for i in range(20)]  # each with the question it copies
    assert list(kept["id"]) == [f"c{i}" for i in range(20, 30)]  # the questions that are not in the eval set stay
    originals = [{"id": f"o{i}", "question": r["question"], "options": list(r["options"].values())}
                 for i, r in enumerate(real)]
    _, duplicates = deduplicate(originals + copies)
    assert list(duplicates["id"]) == [f"c{i}" for i in range(30)] and list(duplicates["score"]) == [100.0] * 30


def test_format_characters_that_are_drawn_stay_in_the_compared_text() -> None:
    """Only the format characters no reader sees go: the Arabic number sign (U+0600) and end of
    ayah (U+06DD) are drawn, so a text with one is another text than one without it."""
    assert compared_text("Dose \u0600\u0661\u0662 mg") != compared_text("Dose \u0661\u0662 mg")
    assert compared_text("a\u06ddb") == "a\u06ddb"
    assert compared_text("Dose\u200b \u00adone") == "dose one"  # the invisible ones still go
