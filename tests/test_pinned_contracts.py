"""Contracts of the core modules that no other test pinned (issue 24, item 7).

Each test below was checked against the small bug it names, planted by hand: with the bug the
test fails, without it the test passes. The bugs are the kind a refactor introduces silently,
because every other test still passes:

- the PubMedQA context dropped from the dedup/decontamination comparison key (dedup._stems);
- a truncated student reply counted as solved when its text carries the right answer
  (difficulty._grade's `status == "ok"`);
- the "ties go to the lowest eval index" rule flipped (fuzzy.find_contamination), seen only with
  distinct eval texts that score alike (identical texts are merged before the tie-break);
- `>` turned into `>=` in dedup._best_per_row (a keyed match must win a tie with a bare one);
- `kind` left out of the LLM cache key (every user's cache silently invalidated);
- `>=` turned into `>` on the similarity lead of m1data.answers.
"""

from __future__ import annotations

import datasets
from llm_server import chat, llm_server  # noqa: F401
from rapidfuzz import fuzz

from m1data.answers import SIMILARITY_LEAD, SIMILARITY_MIN, extract_answer, grade
from m1data.dedup import ContamMatch, EvalText, decontaminate, deduplicate, find_contamination
from m1data.difficulty import DifficultyConfig, DifficultyFilter, StudentConfig, _grade
from m1data.llm import Reply, Request, request_key
from m1data.llm.cache import key_from_body
from m1data.llm.stages import LLMRuntime
from m1data.schema import make_row, rows_to_dataset

# ---------------------------------------------------------------------------------------------
# PubMedQA: questions share templates and differ by their abstracts

TEMPLATE_QUESTION = "Does early mobilisation shorten hospital stay after surgery?"
ABSTRACTS = [
    "We randomised 212 adults after hip replacement at a regional hospital to walking on day one or "
    "day three; the primary outcome was length of stay, secondary outcomes were falls and readmissions.",
    "In a cohort of 1,480 children after appendectomy in three paediatric centres, we compared those "
    "who sat up within six hours with those who did not, adjusting for age, sex and perforation.",
]


def pubmedqa_rows(contexts: list[str], prefix: str = "r") -> datasets.Dataset:
    return rows_to_dataset([
        make_row(source="pubmedqa", row_id=f"{prefix}{i}", question=TEMPLATE_QUESTION,
                 options=["yes", "no", "maybe"], answer_idx=0, raw={}, context=context)
        for i, context in enumerate(contexts)
    ])


def test_pubmedqa_rows_with_the_same_question_and_different_abstracts_are_not_duplicates():
    rows = pubmedqa_rows(ABSTRACTS)
    assert rows["question"][0] == rows["question"][1] and rows["context"][0] != rows["context"][1]
    kept, removed = deduplicate(rows)
    assert kept["id"] == ["r0", "r1"] and len(removed) == 0
    kept, removed = deduplicate(pubmedqa_rows([ABSTRACTS[0], ABSTRACTS[0]]))  # the same abstract twice: a copy
    assert removed["id"] == ["r1"]


def test_a_pubmedqa_eval_question_removes_only_the_row_with_its_abstract():
    rows = pubmedqa_rows(ABSTRACTS)
    evals = {"pubmedqa_test": pubmedqa_rows([ABSTRACTS[1]], prefix="e")}
    kept, removed = decontaminate(rows, evals)
    assert removed["id"] == ["r1"] and removed["eval_id"] == ["e0"] and kept["id"] == ["r0"]


# ---------------------------------------------------------------------------------------------
# A truncated student reply gave no final answer, whatever its text says

OPTIONS = ["Metformin", "Insulin", "Acarbose", "Glipizide"]
CUT_WITH_ANSWER = "The first-line drug is \\boxed{A}. But wait, let me reconsider the renal function and"


def test_a_truncated_reply_that_names_the_right_answer_is_not_solved():
    assert grade(CUT_WITH_ANSWER, OPTIONS, 0).correct  # the text itself does name the answer
    cut = Reply(text=CUT_WITH_ANSWER, status="length", finish_reason="length")
    done = Reply(text=CUT_WITH_ANSWER, status="ok", finish_reason="stop")
    graded = _grade([cut, done], [OPTIONS, OPTIONS], [0, 0])
    assert graded["answer"] == ["A", "A"]  # read and recorded for later rules ...
    assert graded["correct"] == [False, True]  # ... but a cut-off reply never counts as solved
    assert graded["status"] == ["length", "ok"]


def test_the_filter_keeps_a_row_whose_students_were_cut_off_after_a_right_answer(llm_server, tmp_path):  # noqa: F811
    row = make_row(source="medqa", row_id="q0", question="Which drug is first line in type 2 diabetes?",
                   options=OPTIONS, answer_idx=0, raw={})
    rows = rows_to_dataset([row])
    right = row["answer_letter"]
    llm_server.handler = lambda req: chat(f"It is \\boxed{{{right}}}, unless the kidneys", finish_reason="length")
    students = [StudentConfig("small/Model-7B", llm_server.base_url, short="small")]
    runtime = LLMRuntime(progress=False, cache_path=str(tmp_path / "cache.sqlite"))
    result = DifficultyFilter(DifficultyConfig(students=students, runtime=runtime)).run(rows, None)
    assert result.rows["id"] == ["q0"] and len(result.dropped) == 0
    assert result.rows["student_small_answer"] == [right] and result.rows["student_small_correct"] == [False]


# ---------------------------------------------------------------------------------------------
# Ties between distinct eval texts go to the lowest eval index

TRAIN = "Which nerve supplies the deltoid muscle of the shoulder?"


def test_a_tie_between_distinct_eval_texts_goes_to_the_lowest_index():
    first, second = TRAIN + "x", TRAIN + "y"  # one insertion each: distinct texts, equal scores
    assert first != second and fuzz.ratio(TRAIN, first) == fuzz.ratio(TRAIN, second) >= 95
    score = fuzz.ratio(TRAIN, first)
    evals = [EvalText("a", "0", "unrelated"), EvalText("b", "1", first), EvalText("c", "2", second)]
    assert find_contamination([TRAIN], evals) == [ContamMatch(0, "b", "1", first, score)]
    swapped = [EvalText("a", "0", "unrelated"), EvalText("c", "2", second), EvalText("b", "1", first)]
    assert find_contamination([TRAIN], swapped) == [ContamMatch(0, "c", "2", second, score)]


# ---------------------------------------------------------------------------------------------
# One match per row: a keyed (stem + options) match wins a tie with a bare-question one


def test_a_keyed_match_wins_a_tie_with_a_bare_question_match():
    options = ["Axillary nerve", "Radial nerve", "Ulnar nerve", "Median nerve"]
    rows = rows_to_dataset([make_row(source="medmcqa", row_id="r0", question=TRAIN, options=options,
                                     answer_idx=0, raw={})])
    keyed = datasets.Dataset.from_dict({"id": ["k0"], "question": [TRAIN], "options": [list(reversed(options))]})
    bare = [TRAIN]  # a bare eval question, compared with the row's stem: also a score of 100
    _, removed = decontaminate(rows, {"keyed_set": keyed, "bare_set": bare})
    assert removed["score"] == [100.0]
    assert removed["eval_set"] == ["keyed_set"] and removed["eval_id"] == ["k0"]
    _, removed = decontaminate(rows, {"bare_set": bare, "keyed_set": keyed})  # whatever the order given
    assert removed["eval_set"] == ["keyed_set"]


# ---------------------------------------------------------------------------------------------
# The LLM cache key: a change to it re-sends (and re-bills) every request in every user's cache

CHAT = Request(
    model="deepseek-reasoner",
    messages=({"role": "user", "content": "Return your final response within \\boxed{}.\nWhich nerve?\nA. x\nB. y"},),
    params={"max_tokens": 8000, "temperature": 0.0},
)
COMPLETION = Request(model="Qwen/Qwen2.5-7B-Instruct", prompt="Q\nA. x", params={"max_tokens": 4000})


def test_cache_keys_are_pinned():
    """Values computed by m1data 0.1.0 (cache schema 2). If this fails, the change makes every cached
    reply unreachable: keep the old keys readable (a migration, as Cache._migrate does for schema 1)
    before updating these values."""
    assert request_key("https://api.deepseek.com", CHAT) == "4e72ca860250991d34b887d05cf043aa0a40df831a4a29c9047d7fded26b25aa"
    assert request_key("http://127.0.0.1:8000/v1", COMPLETION) == (
        "89e36a2c4fbf0d481b0f690f06167077dcd61b94b2550de1068312736720cc78")


def test_the_cache_key_depends_on_the_kind_of_call():
    body = {"model": "m", "max_tokens": 1}
    assert key_from_body("ns", "chat", body) != key_from_body("ns", "completion", body)


# ---------------------------------------------------------------------------------------------
# The similarity rule: a lead of exactly SIMILARITY_LEAD is enough


def test_a_similarity_lead_of_exactly_the_minimum_names_the_option():
    options = ["penicillin", "benicillam", "cefalexin", "vancomycin"]
    said = "penicillim"  # a misspelling: one letter from option A, two from option B
    assert fuzz.ratio(said, options[0]) - fuzz.ratio(said, options[1]) == SIMILARITY_LEAD
    assert fuzz.ratio(said, options[0]) >= SIMILARITY_MIN
    for reply in (f"The answer is {said}.", f"\\boxed{{{said}}}"):
        extraction = extract_answer(reply, options)
        assert (extraction.letter, extraction.method) == ("A", "similarity"), reply
