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
- `>=` turned into `>` on the similarity lead of m1data.stages.answers.
"""

from __future__ import annotations

import datasets
import pytest
from llm_server import chat, llm_server  # noqa: F401
from rapidfuzz import fuzz

from m1data.llm import Reply, Request, request_key
from m1data.llm.cache import key_from_body
from m1data.llm.stages import LLMRuntime
from m1data.schema import make_row, rows_to_dataset
from m1data.stages.answers import SIMILARITY_LEAD, SIMILARITY_MIN, extract_answer, grade
from m1data.stages.dedup import (
    ContamMatch,
    Decontaminate,
    DecontaminateConfig,
    DedupConfig,
    Deduplicate,
    EvalText,
    decontaminate,
    deduplicate,
    find_contamination,
)
from m1data.stages.difficulty import DifficultyConfig, DifficultyFilter, StudentConfig, _grade

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


# ---------------------------------------------------------------------------------------------
# Found by the mutation run (scripts/mutation.py dedup): contracts of dedup no test pinned

GENERIC = "Which of the following is true?"  # MedMCQA has thousands of rows with this stem


def options_rows(option_sets: list[list[str]]) -> datasets.Dataset:
    return rows_to_dataset([
        make_row(source="medmcqa", row_id=f"r{i}", question=GENERIC, options=options, answer_idx=0, raw={})
        for i, options in enumerate(option_sets)
    ])


def test_the_option_set_is_part_of_the_comparison_key():
    """Same generic stem, different options: different questions. Same options in another order:
    the same question."""
    heart = ["Mitral stenosis causes a diastolic murmur", "Aortic stenosis causes a diastolic murmur",
             "Tricuspid regurgitation is silent", "Ventricular septal defect is silent"]
    kidney = ["The loop of Henle concentrates urine", "The proximal tubule secretes renin",
              "The collecting duct ignores ADH", "The glomerulus reabsorbs glucose"]
    rows = options_rows([heart, kidney, list(reversed(heart))])
    kept, removed = deduplicate(rows)
    assert kept["id"] == ["r0", "r1"] and removed["id"] == ["r2"] and removed["match_id"] == ["r0"]
    evals = {"medmcqa_validation": datasets.Dataset.from_dict({"id": ["v0"], "question": [GENERIC],
                                                               "options": [kidney]})}
    _, removed = decontaminate(rows, evals)
    assert removed["id"] == ["r1"]


def _at_score(base: str, low: float, high: float) -> str:
    """`base` with characters replaced from its end until fuzz.ratio falls in [low, high)."""
    text = list(base)
    for position in range(len(text) - 1, 0, -1):
        text[position] = "#"
        if low <= fuzz.ratio(base, "".join(text)) < high:
            return "".join(text)
    raise AssertionError("no edit reaches the score range")


def test_the_default_threshold_is_95():
    stem = "A 45-year-old man presents with crushing chest pain radiating to the left arm since this morning."
    near = _at_score(stem, 95.0, 96.0)  # a pair scoring 95.x: a match at 95, not at 96
    bare = datasets.Dataset.from_dict({"id": ["a", "b"], "question": [stem, near]})
    assert deduplicate(bare)[1]["id"] == ["b"]
    assert decontaminate(bare.select([0]), [near])[1]["id"] == ["a"]
    assert Deduplicate(DedupConfig()).run(bare, None).dropped["id"] == ["b"]
    below = _at_score(stem, 94.0, 95.0)
    assert len(deduplicate(datasets.Dataset.from_dict({"id": ["a", "b"], "question": [stem, below]}))[1]) == 0


def test_a_sequence_of_plain_eval_strings_and_rows_without_a_source_column():
    rows = datasets.Dataset.from_dict({"id": [7, 8], "question": ["What is the capital of France?", "Other?"]})
    kept, removed = decontaminate(rows, ["Unrelated", "What is the capital of France?"])
    assert kept["id"] == [8]
    assert (removed["id"], removed["source"], removed["eval_set"], removed["eval_id"]) == ([7], [""], ["eval"], ["1"])
    assert removed.features["id"] == rows.features["id"] and removed.features["score"].dtype == "float64"
    _, dups = deduplicate(datasets.Dataset.from_dict({"id": [1, 2], "question": ["Same stem?", "Same stem?"]}))
    assert (dups["id"], dups["match_id"], dups["source"]) == ([2], [1], [""])
    assert dups.features["match_id"] == dups.features["id"] == datasets.Value("int64")
    _, none = deduplicate(datasets.Dataset.from_dict({"id": [1, 2], "question": ["One?", "Two, unrelated?"]}))
    assert len(none) == 0  # the dropped table is typed even when empty
    assert none.features["id"] == none.features["match_id"] == datasets.Value("int64")
    assert none.features["source"] == datasets.Value("string")


def test_the_stages_use_their_configuration_and_name():
    stem = "A 45-year-old man presents with crushing chest pain radiating to the left arm since this morning."
    near = _at_score(stem, 90.0, 95.0)
    rows = datasets.Dataset.from_dict({"id": ["a", "b"], "question": [stem, near], "note": ["x", "x"]})
    assert len(Deduplicate(DedupConfig()).run(rows, None).dropped) == 0
    assert Deduplicate(DedupConfig(threshold=90.0)).run(rows, None).dropped["id"] == ["b"]
    assert Deduplicate(DedupConfig(column="note")).run(rows, None).dropped["id"] == ["b"]
    assert Deduplicate(DedupConfig(), name="dedup_final").name == "dedup_final"
    assert Decontaminate(DecontaminateConfig(), [], name="decontaminate_final").name == "decontaminate_final"


def test_the_decontamination_stage_reports_per_eval_set_counts_and_the_ngram_check():
    from m1data.stages.loading import LoadConfig, LoadSources, sample_evals

    rows = LoadSources(LoadConfig()).run(None, None).rows
    result = Decontaminate(DecontaminateConfig(), sample_evals()).run(rows, None)
    assert len(result.rows) == len(rows) - 6
    assert result.stats["by_eval_set"] == {"medmcqa_validation": 2, "medqa_test": 2, "mmlu_clinical_knowledge": 2}
    assert result.stats["eval_items"] == {"medqa_test": 15, "medmcqa_validation": 15, "mmlu_clinical_knowledge": 15}
    check = result.stats["ngram_check"]
    assert check["n"] == 8 and check["both"] + check["fuzzy_only"] == 6
    assert check["common_ngram_rows"] == 3 and check["min_share"] == 0.3
    loose = Decontaminate(DecontaminateConfig(threshold=50.0, ngram=0), sample_evals()).run(rows, None)
    assert len(loose.dropped) > 6 and "ngram_check" not in loose.stats


# ---------------------------------------------------------------------------------------------
# Found by the mutation run (difficulty): the paper's students and the filter's bookkeeping


def test_the_default_students_are_the_papers():
    from m1data.stages.difficulty import short_name

    config = DifficultyConfig()
    assert [(s.model, s.short) for s in config.students] == [
        ("Qwen/Qwen2.5-7B-Instruct", "qwen2_5_7b"), ("Qwen/Qwen2.5-32B-Instruct", "qwen2_5_32b")]
    assert all(s.base_url.startswith("http://127.0.0.1:800") for s in config.students)
    assert (config.max_tokens, config.temperature, config.drop_rule) == (4000, 0.0, "any")
    # a column name from the model's last path part, lower case, runs of other characters as one "_"
    assert short_name("Qwen/Qwen2.5-7B-Instruct") == "qwen2_5_7b_instruct"
    assert short_name("org/sub/My--Model_") == "my_model" and short_name("-Weird.Name-") == "weird_name"


def test_failed_student_calls_are_counted_as_transient_and_the_rule_is_recorded(llm_server, tmp_path):  # noqa: F811
    from llm_server import error

    rows = rows_to_dataset([make_row(source="medqa", row_id=f"q{i}", question=f"Which drug treats condition {i}?",
                                     options=OPTIONS, answer_idx=0, raw={}) for i in range(2)])
    llm_server.handler = lambda req: error(500, "down", retry_after=0.01)
    from m1data.llm import RetryPolicy

    runtime = LLMRuntime(progress=False, cache_path=str(tmp_path / "c.sqlite"),
                         retries=RetryPolicy(max_attempts=1, base_delay=0.01))
    students = [StudentConfig("small/Model-7B", llm_server.base_url, short="small")]
    result = DifficultyFilter(DifficultyConfig(students=students, runtime=runtime, drop_rule="all")).run(rows, None)
    assert result.transient_failures == 2 and result.stats["drop_rule"] == "all"


def test_run_difficulty_file_passes_its_settings(llm_server, tmp_path, monkeypatch):  # noqa: F811
    from m1data.reading.readers import read_rows, write_rows
    from m1data.stages.difficulty import run_difficulty_file

    row = make_row(source="medqa", row_id="q0", question="Which drug is first line in type 2 diabetes?",
                   options=OPTIONS, answer_idx=0, raw={})
    llm_server.handler = lambda req: chat(f"\\boxed{{{row['answer_letter']}}}")  # every student is right
    monkeypatch.setenv("STUDENT_KEY", "secret-value-123")
    src = write_rows(rows_to_dataset([row]), tmp_path / "in.jsonl")
    summary = run_difficulty_file(src, tmp_path / "out.jsonl", [("small/Model-7B", llm_server.base_url)],
                                  max_tokens=123, drop_rule="none", api_key_env="STUDENT_KEY",
                                  runtime=LLMRuntime(progress=False))
    assert summary["rows_out"] == 1 and len(read_rows(tmp_path / "out.jsonl")) == 1  # rule "none" drops nothing
    [sent] = llm_server.requests
    assert sent.body["max_tokens"] == 123
    assert sent.headers.get("authorization") == "Bearer secret-value-123"


# ---------------------------------------------------------------------------------------------
# Found by the mutation run (llm/cache): what the cache keeps and how it waits


def test_a_cached_reply_comes_back_whole(tmp_path):
    from m1data.llm import Cache

    reply = Reply(text="t", reasoning="r", finish_reason="length", status="length", prompt_tokens=3,
                  completion_tokens=4, error="cut off", model="deepseek-r1-0528")
    with Cache(tmp_path / "deep" / "er" / "cache.sqlite") as cache:  # missing folders are made
        key = request_key("https://api.deepseek.com", CHAT)
        cache.put(key, "https://api.deepseek.com", CHAT, reply)
        got = cache.get(key).reply
    assert (got.text, got.reasoning, got.finish_reason, got.status, got.prompt_tokens, got.completion_tokens,
            got.error, got.model) == ("t", "r", "length", "length", 3, 4, "cut off", "deepseek-r1-0528")


def test_the_cache_is_usable_from_worker_threads_and_looks_up_in_chunks(tmp_path):
    import threading

    from m1data.llm import Cache
    from m1data.llm.cache import _LOOKUP_CHUNK

    with Cache(tmp_path / "cache.sqlite") as cache:
        keys = [f"{i:064x}" for i in range(2 * _LOOKUP_CHUNK + 7)]
        for key in keys[::3]:
            cache.put(key, "https://api.example.com", CHAT, Reply(text=key))
        found: list[int] = []
        worker = threading.Thread(target=lambda: found.append(len(cache.get_many(keys))))
        worker.start()
        worker.join()
    assert found == [len(keys[::3])]


def test_mean_completion_tokens_from_exactly_the_minimum_of_samples(tmp_path):
    from m1data.llm import Cache

    with Cache(tmp_path / "cache.sqlite") as cache:
        for i in range(20):
            request = Request(model="m", prompt=f"q{i}", params={"max_tokens": 9})
            cache.put(request_key("https://api.example.com", request), "https://api.example.com", request,
                      Reply(text="a", completion_tokens=10 + i))
        assert cache.mean_completion_tokens("https://api.example.com", "m", min_samples=20) == 19
        assert cache.mean_completion_tokens("https://api.example.com", "m", min_samples=21) is None


def test_opening_a_cache_waits_while_sqlite_says_locked(monkeypatch):
    import sqlite3

    from m1data.llm import cache as cache_module

    slept: list[float] = []
    monkeypatch.setattr(cache_module.time, "sleep", slept.append)
    calls = []

    def step():
        calls.append(1)
        if len(calls) < 8:
            raise sqlite3.OperationalError("database is locked" if len(calls) % 2 else "database is busy")

    cache_module._while_locked(step, timeout=60)
    assert len(calls) == 8 and slept == [0.02, 0.04, 0.08, 0.16, 0.32, 0.5, 0.5]  # doubling, at most 0.5 s
    other = []

    def broken():
        other.append(1)
        raise sqlite3.OperationalError("no such table: replies")

    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        cache_module._while_locked(broken, timeout=60)
    assert other == [1]  # not a lock: raised at once
    calls.clear()
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        cache_module._while_locked(step, timeout=-1)  # past its deadline: raised at once
    assert len(calls) == 1


def test_local_hosts_are_recognised():
    from m1data.llm.cache import is_local_host

    assert is_local_host("[::1]") and is_local_host("model.localhost") and is_local_host("LOCALHOST")
    assert not is_local_host("api.deepseek.com") and not is_local_host("localhost.example.com")


# ---------------------------------------------------------------------------------------------
# Found by the mutation run (answers): boundaries and rules of the matcher no test pinned


def test_a_box_naming_the_answer_is_right_even_when_another_option_repeats_its_text():
    options = ["aspirin", "aspirin", "heparin", "warfarin"]  # a source's duplicate option text
    assert grade("\\boxed{B. aspirin}", options, 1).correct  # letter and text: option B
    assert grade("\\boxed{(B) aspirin}", options, 1).correct
    assert not grade("\\boxed{B. aspirin}", options, 0).correct  # it says B, the key is A
    assert not grade("\\boxed{B. heparin}", options, 1).correct  # B's letter with C's text
    assert grade("\\boxed{aspirin}", options, 0).correct and grade("\\boxed{aspirin}", options, 1).correct
    assert extract_answer("\\boxed{B. aspirin}", options).verdict == "multiple_answers"  # the text alone names two


def test_an_option_text_counts_only_as_whole_words():
    for options in (["tension", "Asthma", "Diabetes", "Gout"], ["Hyper", "Asthma", "Diabetes", "Gout"]):
        assert extract_answer("The answer is hypertension.", options).verdict == "no_answer", options


def test_similarity_at_exactly_the_minimum_and_without_a_lead():
    said = "abcdefghijklmnopqrst"
    option = "abcdefghijklmnopqXYZ"  # three letters changed: a ratio of exactly 85
    assert fuzz.ratio(said, option) == SIMILARITY_MIN
    extraction = extract_answer(f"The answer is {said}.", [option, "zzzzzzzz", "yyyyyyyy"])
    assert (extraction.letter, extraction.method) == ("A", "similarity")
    for options in (["penicillin", "penicillam"], ["penicillin", "penicillam", "cefalexin", "vancomycin"]):
        assert extract_answer("The answer is penicillim.", options).verdict == "no_answer"  # 90 and 90: a tie


def test_several_answers_keep_the_boxed_text():
    extraction = extract_answer("\\boxed{A and C}", ["x", "y", "z"])
    assert (extraction.verdict, extraction.letters, extraction.text) == ("multiple_answers", ("A", "C"), "A and C")
