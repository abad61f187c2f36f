"""The MeSH qualifiers, the rubric, code extraction, and the LLM tagger end to end against the
scripted OpenAI-compatible server on 127.0.0.1 (tests/llm_server.py)."""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from pathlib import Path

import datasets
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stage_doubles import Given

from m1data.errors import UserError
from m1data.llm.stages import LLMRuntime
from m1data.reading.readers import read_rows, write_rows
from m1data.running.pipeline import (
    RunContext,
    StageResult,
    load_stage_dropped,
    read_manifest,
    run_pipeline,
)
from m1data.schema import make_row, rows_to_dataset
from m1data.stages.mesh import (
    FOLLOW_UP,
    MeshConfig,
    MeshTagger,
    add_domain_columns,
    build_messages,
    build_request,
    extract_code,
    load_qualifiers,
    qualifier_by_code,
    qualifier_by_name,
    qualifier_subtree,
    rubric,
    run_tag_file,
)

RUNTIME_KEYS = {f.name for f in dataclasses.fields(LLMRuntime)}

sys.path.insert(0, str(Path(__file__).parents[1]))
from llm_server import Received, Response, chat, error, llm_server  # noqa: E402,F401

# ---------------------------------------------------------------------------------------------
# Qualifiers and rubric


def test_76_qualifiers_coded_in_file_order():
    qualifiers = load_qualifiers()
    assert len(qualifiers) == 76
    assert [q.code for q in qualifiers] == [f"{i:02d}" for i in range(76)]
    assert (qualifiers[0].name, qualifiers[0].abbreviation) == ("Abnormalities", "AB")
    assert qualifiers[0].scope_note.startswith("Used with organs for congenital defects")
    assert qualifier_by_code()["24"].name == "Drug Therapy"
    assert qualifier_by_code()["75"].name == "Virology"
    assert all(q.scope_note for q in qualifiers)


def test_names_match_the_papers_table4_domains():
    table4 = Path(__file__).parents[1] / "data" / "table4_counts.csv"
    names = {line.split(",")[0] for line in table4.read_text(encoding="utf-8").splitlines()[1:]}
    assert names == {q.name for q in load_qualifiers()}


def test_lookup_by_pubmed_spelling():
    assert qualifier_by_name("drug effects").code == "23"
    assert qualifier_by_name("Administration  &  dosage").code == "01"
    assert qualifier_by_name("not a qualifier") is None


@pytest.mark.parametrize("name", ["/diagnosis", "diagnosis/", "diagnosis.", "**Diagnosis**", " DIAGNOSIS ", "DI"])
def test_qualifier_by_name_reads_the_forms_pubmed_and_models_write(name):
    assert qualifier_by_name(name).code == "20"
    assert qualifier_by_name("Administration and Dosage").code == qualifier_by_name("adminstration & dosage").code
    assert qualifier_by_name("Drug-Effects").code == "23"
    with pytest.raises(TypeError, match="must be a str"):
        qualifier_by_name(None)
    assert [qualifier_by_name(word) for word in ("in", "an", "me", "di")] == [None] * 4  # words, not abbreviations


def test_hierarchy_subtrees():
    pharmacology = {qualifier_by_code()[c].name for c in qualifier_subtree(qualifier_by_name("pharmacology").code)}
    # "adminstration & dosage" is misspelt in NLM's file and must still be found.
    assert {"Pharmacology", "Administration & Dosage", "Adverse Effects", "Poisoning", "Toxicity",
            "Pharmacokinetics"} <= pharmacology
    assert qualifier_subtree(qualifier_by_name("psychology").code) == {qualifier_by_name("psychology").code}
    therapy = {qualifier_by_code()[c].name for c in qualifier_subtree(qualifier_by_name("therapy").code)}
    assert "Transplantation" in therapy  # two levels down, under surgery


def test_rubric_entries():
    text = rubric()
    entries = text.split("\n\n")
    assert len(entries) == 76
    assert entries[0] == (
        "### Abnormalities\n* Code: 00\n* Description: Used with organs for congenital defects producing "
        "changes in the morphology of the organ. It is used also for abnormalities in animals."
    )
    assert entries[75].startswith("### Virology\n* Code: 75\n* Description: Used with organs, animals")


def test_messages_and_reasks():
    first = build_messages("Which nerve?\nA. x\nB. y")
    assert [m["role"] for m in first] == ["system", "user"]
    assert "two-digit code" in first[0]["content"]
    assert first[1]["content"] == f"## Question\nWhich nerve?\nA. x\nB. y\n\n## Classification rubrics\n{rubric()}"
    again = build_messages("Q", ["I think it is anatomy.", None])
    assert [m["role"] for m in again] == ["system", "user", "assistant", "user", "user"]
    assert again[2]["content"] == "I think it is anatomy."
    assert again[3]["content"] == again[4]["content"] == FOLLOW_UP


def test_system_instruction_asks_what_reference_s7_says():
    """Pick the single most relevant subject from the rubric, explain, end on a new line with
    its two-digit code: each part of the instruction is there."""
    system = build_messages("Q")[0]["content"]
    assert "single most relevant subject from the classification rubrics" in system
    assert "Explain your choice" in system
    assert "two-digit code alone on the last line" in system
    assert extract_code(system) == "07"  # its own example ends the way a reply must


def test_every_attempt_is_a_distinct_request():
    config = MeshConfig()
    first = build_request(config, "Q")
    assert first.params == {"temperature": 0.0, "max_tokens": 1024} and first.model == "gpt-4o"
    second = build_request(config, "Q", [None])
    third = build_request(config, "Q", [None, None])
    assert len({repr(r) for r in (first, second, third)}) == 3
    assert (second.params["seed"], third.params["seed"]) == (2, 3)


# ---------------------------------------------------------------------------------------------
# Code extraction: real-world-shaped replies

CODES = [
    ("The question is about drug treatment.\n24", "24"),
    ("Explanation...\n**Code: 12**", "12"),
    ("Explanation...\n**12**", "12"),
    ("Explanation...\n`07`.", "07"),
    ("Explanation...\n__07__", "07"),
    ("The most relevant subject is Pharmacology.\n\n52.", "52"),
    ("75", "75"),
    ("00", "00"),
    ("Answer:\n33   \n\n", "33"),          # trailing whitespace
    ("Answer:\n33.\n", "33"),              # period, then a newline
    ("**Code:** `50`", "50"),
    ("Code: 5", None),                     # one digit: " 5" is not two digits
    ("Code: 05", "05"),
    ("Code: 76", None),                    # not a known code
    ("Code: 99", None),
    ("100", None),                         # a third digit: malformed, re-asked (not "00")
    ("In 2024", None),                     # a year ends in digits too: "024" -> rejected
    ("Code: 12 (Chemical Synthesis)", None),  # reference rule: the code must come last
    ("The answer is Virology.", None),
    ("", None),
    (None, None),
    ("7", None),
    ("Code: ١٢", None),                    # non-ASCII digits
    ("\\boxed{24}", None),
    ("p < 0.05", None),                    # the digits end a number, date, time, range or list: no one code
    ("The mortality is about 0.05", None),
    ("2024-05-07", None),
    ("at 10:30", None),
    ("Codes: 20, 21", None),
    ("20 or 21", None),
    ("20-21", None),
    ("Step 1 reads the question, step 2 the rubric.\n20", "20"),  # other numbers are fine
    ("COVID-19 diagnosis: 20", "20"),
    ("Type 2 diabetes: 62", "62"),
    ("Answer (1 of 76): 20", "20"),
    ("20/20", None),
    ("Codes 20 and 21", None),
]


@pytest.mark.parametrize("reply,expected", CODES)
def test_extract_code(reply, expected):
    assert extract_code(reply) == expected


_WRAPS = ["", "**", "__", "*", "_", "`", "``", "**`", "`**"]


@settings(max_examples=300, deadline=None)
@given(
    explanation=st.text(max_size=60),
    separator=st.sampled_from(["\n", "\n\n", " ", "\nCode: ", "\n**Code:** ", ""]),
    number=st.integers(0, 99),
    wrap=st.sampled_from(_WRAPS),
    period=st.sampled_from(["", "."]),
    trailing=st.sampled_from(["", " ", "\n", " \n\n"]),
)
def test_extract_code_reads_the_last_two_characters_after_stripping(
    explanation, separator, number, wrap, period, trailing
):
    """Reference s.7: with markdown emphasis, backticks and a trailing period stripped, the last
    two characters are the code when they are digits naming one of the 76 codes; otherwise the
    reply has no code (and is re-asked). Two documented tightenings: a third digit before them,
    or digits that end a number, date, range or list, make the reply malformed (m1data.stages.mesh)."""
    code = f"{number:02d}"
    reply = f"{explanation}{separator}{wrap}{code}{wrap[::-1]}{period}{trailing}"
    before = (explanation + separator).translate(str.maketrans("", "", "*_`"))
    third_digit = before[-1:].isascii() and before[-1:].isdigit()
    ends_a_number = re.search(r"[0-9]\s*[-.:,/\u2013]\s*$|[0-9]\s+(or|and|to|vs\.?)\s+$", before, re.IGNORECASE)
    expected = code if number < 76 and not third_digit and not ends_a_number else None
    assert extract_code(reply) == expected


@settings(max_examples=300, deadline=None)
@given(reply=st.text(max_size=80))
def test_extract_code_only_ever_returns_a_known_code_that_ends_the_reply(reply):
    code = extract_code(reply)
    if code is not None:
        assert code in qualifier_by_code()
        assert reply.translate(str.maketrans("", "", "*_`")).rstrip().rstrip(".").rstrip().endswith(code)


@pytest.mark.parametrize("reply", [22, 0, b"Code: 22", ["22"]])
def test_extract_code_refuses_what_is_not_a_str(reply):
    # 22 raised "'int' object has no attribute 'translate'"; 0 and [] were read as "no code"
    with pytest.raises(TypeError, match=f"reply must be a str or None, not {type(reply).__name__}"):
        extract_code(reply)


# ---------------------------------------------------------------------------------------------
# The stage against the scripted server

# Questions and the code the scripted "model" gives each.
SCRIPT = {
    "Which drug is first-line for absence seizures in children?": "24",   # Drug Therapy
    "Which nerve supplies the deltoid muscle?": "38",                     # Innervation
    "Which virus causes infectious mononucleosis?": "75",                # Virology
    "What is the incidence of tuberculosis in India?": "29",             # Epidemiology
}


def _rows() -> datasets.Dataset:
    rows = [make_row(source="medmcqa", row_id=f"q{i}", question=q, options=["alpha", "beta", "gamma", "delta"],
                     answer_idx=0, raw={"n": i}) for i, q in enumerate(SCRIPT)]
    return rows_to_dataset(rows)


def _question(req: Received) -> str:
    user = req.body["messages"][1]["content"]
    match = re.match(r"## Question\n(.*?)\n", user)
    assert match, user[:200]
    return match.group(1)


def _is_reask(req: Received) -> bool:
    return req.body["messages"][-1]["content"] == FOLLOW_UP


def right(req: Received) -> Response:
    return chat(f"Explanation of the choice.\n**{SCRIPT[_question(req)]}**")


def garbage_first(req: Received) -> Response:
    if _is_reask(req):
        return chat(SCRIPT[_question(req)])
    return chat("I would say this is about pharmacology.")


def always_garbage(req: Received) -> Response:
    return chat("It depends.")


def error_first(req: Received) -> Response:
    if _is_reask(req):
        return chat(f"`{SCRIPT[_question(req)]}`.")
    return error(400, "bad request, scripted")  # not retryable by the runner, not fatal


def _config(server, **kwargs) -> MeshConfig:
    runtime = LLMRuntime(progress=False, **{k: kwargs.pop(k) for k in RUNTIME_KEYS & set(kwargs)})
    return MeshConfig(base_url=server.base_url, model="scripted", api_key_env=None, runtime=runtime, **kwargs)


def _run(server, tmp_path: Path, **kwargs) -> StageResult:
    stage = MeshTagger(_config(server, **kwargs))
    return stage.run(_rows(), RunContext(run_dir=tmp_path, stage_dir=tmp_path))


def test_tags_rows_with_the_models_codes(llm_server, tmp_path):
    llm_server.handler = right
    result = _run(llm_server, tmp_path)
    assert result.rows["domain_code"] == list(SCRIPT.values())
    assert result.rows["domain"] == ["Drug Therapy", "Innervation", "Virology", "Epidemiology"]
    assert len(result.dropped) == 0
    assert llm_server.count() == 4
    assert result.stats["tagged"] == 4 and result.stats["untagged"] == 0
    assert result.stats["domains"] == {"Drug Therapy": 1, "Epidemiology": 1, "Innervation": 1, "Virology": 1}
    assert result.stats["requests"] == 4 and result.stats["sent"] == 4
    assert result.stats["prompt_tokens"] == 4 * 11 and result.stats["completion_tokens"] == 4 * 7
    assert (tmp_path / "llm_cache.sqlite").exists()
    # The request m1 sends: system + user, temperature 0, the whole rubric.
    body = llm_server.requests[0].body
    assert body["model"] == "scripted" and body["temperature"] == 0.0
    assert "seed" not in body
    assert body["messages"][1]["content"].endswith(rubric())


def test_garbage_is_reasked_then_resolved(llm_server, tmp_path):
    llm_server.handler = garbage_first
    result = _run(llm_server, tmp_path)
    assert result.rows["domain_code"] == list(SCRIPT.values())
    assert llm_server.count() == 8
    reasks = [r for r in llm_server.requests if _is_reask(r)]
    assert len(reasks) == 4
    assert all(r.body["seed"] == 2 for r in reasks)
    assert all(r.body["messages"][2] == {"role": "assistant", "content": "I would say this is about pharmacology."}
               for r in reasks)
    assert result.stats["attempts_to_tag"] == {"2": 4}


def test_error_replies_are_reasked(llm_server, tmp_path):
    llm_server.handler = error_first
    result = _run(llm_server, tmp_path)
    assert result.rows["domain_code"] == list(SCRIPT.values())
    assert llm_server.count() == 8
    reask = [r for r in llm_server.requests if _is_reask(r)][0]
    assert [m["role"] for m in reask.body["messages"]] == ["system", "user", "user"]


def test_always_garbage_is_dropped_as_untagged_after_max_attempts(llm_server, tmp_path):
    llm_server.handler = always_garbage
    result = _run(llm_server, tmp_path, max_attempts=3)
    assert len(result.rows) == 0
    assert "domain" in result.rows.column_names
    assert llm_server.count() == 4 * 3
    assert max(llm_server.sends_per_body().values()) == 1  # every attempt was a new request
    assert result.dropped["reason"] == ["untagged"] * 4
    assert result.dropped["attempts"] == [3] * 4
    assert result.dropped["detail"][0] == "ok: It depends."
    assert result.stats["untagged"] == 4


@pytest.mark.parametrize("thinking", [
    chat("<think>I think the code is 33"),  # inline, never closed
    chat(None, reasoning="I think the code is 33"),  # a reasoning parser's shape of the same reply
])
def test_an_untagged_reply_that_was_all_thinking_shows_the_thinking(llm_server, tmp_path, thinking):
    # the detail was "ok: ": the words went to Reply.reasoning and only Reply.text was shown
    llm_server.handler = lambda req: thinking
    result = _run(llm_server, tmp_path, max_attempts=1)
    assert result.dropped["detail"] == ["ok: no answer after the thinking: I think the code is 33"] * 4


def test_the_thinking_shown_for_an_untagged_row_is_its_end_and_short(llm_server, tmp_path):
    llm_server.handler = lambda req: chat("<think>" + "hmm " * 500 + "so the code is 33")
    detail = _run(llm_server, tmp_path, max_attempts=1).dropped["detail"][0]
    assert detail.startswith("ok: no answer after the thinking: ...")
    assert detail.endswith("so the code is 33") and len(detail) <= 4 + 300


def test_max_attempts_one_never_reasks(llm_server, tmp_path):
    llm_server.handler = always_garbage
    result = _run(llm_server, tmp_path, max_attempts=1)
    assert llm_server.count() == 4 and len(result.dropped) == 4


def test_rerun_is_served_from_the_cache(llm_server, tmp_path):
    llm_server.handler = garbage_first
    first = _run(llm_server, tmp_path)
    sent = llm_server.count()
    llm_server.handler = always_garbage  # would change the answers if anything were sent
    second = _run(llm_server, tmp_path)
    assert llm_server.count() == sent
    assert second.rows["domain_code"] == first.rows["domain_code"]
    assert second.stats["sent"] == 0 and second.stats["cached"] == 8


def test_untagged_rerun_sends_nothing_either(llm_server, tmp_path):
    llm_server.handler = always_garbage
    _run(llm_server, tmp_path)
    sent = llm_server.count()
    _run(llm_server, tmp_path)
    assert llm_server.count() == sent



def test_in_a_pipeline_the_manifest_counts_untagged(llm_server, tmp_path):
    def half(req: Received) -> Response:
        question = _question(req)
        return chat(SCRIPT[question]) if SCRIPT[question] in ("24", "75") else chat("no idea")

    llm_server.handler = half
    rows = run_pipeline([Given(_rows()), MeshTagger(_config(llm_server))], tmp_path / "run")
    assert rows["domain"] == ["Drug Therapy", "Virology"]
    stage_dir = tmp_path / "run" / "01_tag"
    manifest = read_manifest(stage_dir)
    assert manifest["drops"] == {"untagged": {"medmcqa": 2}}
    assert manifest["stats"]["untagged"] == 2
    assert (tmp_path / "run" / "cache" / "01_tag" / "llm_cache.sqlite").exists()
    assert sorted(load_stage_dropped(stage_dir)["id"]) == ["q1", "q3"]
    assert manifest["config"]["api_key_env"] is None and "Bearer" not in json.dumps(manifest)


def test_a_row_without_text_is_refused_before_anything_is_sent(llm_server, tmp_path):
    # a null prompt was sent to the model as the question "None" (and paid for, and tagged)
    llm_server.handler = right
    rows = _rows().to_list()
    rows[2]["prompt"] = None
    with pytest.raises(UserError, match=r"tag stage: row 'q2': its 'prompt' is NoneType, not str"):
        MeshTagger(_config(llm_server)).run(datasets.Dataset.from_list(rows, features=_rows().features),
                                            RunContext(run_dir=tmp_path, stage_dir=tmp_path))
    assert llm_server.count() == 0


def test_tag_file(llm_server, tmp_path):
    llm_server.handler = right
    source = tmp_path / "rows.jsonl"
    write_rows(_rows(), source)
    out = tmp_path / "tagged.parquet"
    result = run_tag_file(source, out, base_url=llm_server.base_url, model="scripted", api_key_env=None,
                      max_attempts=2, runtime=LLMRuntime(concurrency=2))
    assert read_rows(out)["domain_code"] == list(SCRIPT.values())
    assert (tmp_path / "tagged.llm_cache.sqlite").exists()
    assert result["tagged"] == 4


def test_missing_api_key_fails_before_sending(llm_server, tmp_path, monkeypatch):
    from m1data.llm.http import MissingAPIKey

    monkeypatch.delenv("M1DATA_TEST_NO_SUCH_KEY", raising=False)
    stage = MeshTagger(MeshConfig(base_url=llm_server.base_url, api_key_env="M1DATA_TEST_NO_SUCH_KEY",
                                  runtime=LLMRuntime(progress=False)))
    with pytest.raises(MissingAPIKey):
        stage.run(_rows(), RunContext(run_dir=tmp_path, stage_dir=tmp_path))
    assert llm_server.count() == 0


def test_chunks_tag_every_row_in_order(llm_server, tmp_path):
    llm_server.handler = garbage_first
    result = _run(llm_server, tmp_path, chunk_size=3)
    assert result.rows["domain_code"] == list(SCRIPT.values())
    assert llm_server.count() == 8


class _InProcessEngine:
    """Any Engine can stand in for HTTP (a transformers or vLLM engine, say)."""

    name = "in-process:scripted"

    def __init__(self):
        self.calls = 0

    async def complete(self, request):
        from m1data.llm.types import Reply

        self.calls += 1
        question = request.messages[1]["content"].split("\n")[1]
        return Reply(text=f"Because.\n{SCRIPT[question]}", prompt_tokens=5, completion_tokens=2)

    async def aclose(self):
        pass


def test_any_engine_can_be_plugged_in(tmp_path):
    engine = _InProcessEngine()
    stage = MeshTagger(MeshConfig(model="local", runtime=LLMRuntime(progress=False)), engine=engine)
    result = stage.run(_rows(), RunContext(run_dir=tmp_path, stage_dir=tmp_path))
    assert result.rows["domain_code"] == list(SCRIPT.values())
    assert engine.calls == 4 and result.stats["prompt_tokens"] == 20


def test_preflight(llm_server, monkeypatch):
    assert MeshTagger(_config(llm_server)).preflight() is None
    monkeypatch.delenv("M1DATA_TEST_NO_SUCH_KEY", raising=False)
    missing_key = MeshTagger(MeshConfig(base_url=llm_server.base_url, api_key_env="M1DATA_TEST_NO_SUCH_KEY"))
    assert "M1DATA_TEST_NO_SUCH_KEY" in missing_key.preflight()
    assert MeshTagger(engine=_InProcessEngine()).preflight() is None


def test_preflight_unreachable():
    import socket

    with socket.socket() as sock:  # a port nothing listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    stage = MeshTagger(MeshConfig(base_url=f"http://127.0.0.1:{port}/v1", api_key_env=None))
    assert "cannot reach" in stage.preflight()


def test_in_a_pipeline_a_row_lost_to_transient_failures_is_retried_not_dropped(llm_server, tmp_path):
    from m1data.running.pipeline import StageIncomplete

    down = {"Which nerve supplies the deltoid muscle?"}
    outage = {"on": True}

    def handler(req: Received) -> Response:
        if outage["on"] and _question(req) in down:
            return error(503, "overloaded", retry_after=0)
        return right(req)

    llm_server.handler = handler
    stage = MeshTagger(_config(llm_server, max_attempts=2))
    with pytest.raises(StageIncomplete, match="stage 'tag' is incomplete: 1 request"):  # one row, all its asks
        run_pipeline([Given(_rows()), stage], tmp_path / "run")
    assert read_manifest(tmp_path / "run" / "01_tag")["complete"] is False
    outage["on"] = False
    rows = run_pipeline([Given(_rows()), stage], tmp_path / "run")
    assert rows["domain_code"] == list(SCRIPT.values())


def test_a_transient_failure_ends_its_rows_tries_for_the_run(llm_server, tmp_path):
    """A 5xx that outlived its retries in round 1 was followed by a re-ask in round 2 (a
    follow-up to a reply the model never gave): the run ended tagged, and the next one sent the
    first request again, got another code and threw the paid re-ask away. The row now waits for
    the next run, which sends exactly the failed request and tags it as a clean run would."""
    from m1data.running.pipeline import StageIncomplete

    down = "Which nerve supplies the deltoid muscle?"
    outage = {"on": True}

    def handler(req: Received) -> Response:
        if _is_reask(req):
            return chat("12")
        if outage["on"] and _question(req) == down:
            return error(500, "scripted outage", retry_after=0)
        return right(req)

    llm_server.handler = handler
    stage = MeshTagger(_config(llm_server, max_attempts=2))
    with pytest.raises(StageIncomplete, match="stage 'tag' is incomplete: 1 request"):
        run_pipeline([Given(_rows()), stage], tmp_path / "run")
    assert not any(_is_reask(r) for r in llm_server.requests)
    sent = llm_server.count()
    outage["on"] = False
    rows = run_pipeline([Given(_rows()), stage], tmp_path / "run")
    assert rows["domain_code"] == list(SCRIPT.values())
    assert llm_server.count() == sent + 1 and _question(llm_server.requests[-1]) == down
    assert not any(_is_reask(r) for r in llm_server.requests)


def test_cached_qualifier_tables_cannot_be_changed_by_a_caller() -> None:
    # the mapping is cached for every caller: one caller's clear() made every later tagging fail
    from datasets import Dataset

    from m1data.stages.qualifiers import qualifier_children

    with pytest.raises((TypeError, AttributeError)):
        qualifier_by_code().clear()
    with pytest.raises((TypeError, AttributeError)):
        qualifier_children()["22"] = frozenset()
    assert add_domain_columns(Dataset.from_dict({"x": [1]}), ["22"])["domain"] == ["Diet Therapy"]


@pytest.mark.parametrize("codes", [[22], ["99"], ["22", "22"]])
def test_add_domain_columns_names_a_bad_code_or_count(codes) -> None:
    from datasets import Dataset

    with pytest.raises(UserError, match="not a qualifier code|codes for 1 rows"):
        add_domain_columns(Dataset.from_dict({"x": [1]}), codes)
