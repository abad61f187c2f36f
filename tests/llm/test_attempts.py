"""Several tries per question in the traces stage, against scripted teachers that answer right only
at try j: what is kept, what is sent (counted at the server), what the dropped table and the
manifest say, resuming (a stopped run, a killed one, a raised K) and the Batch API's rounds."""

from __future__ import annotations

import dataclasses
import json
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import datasets
import pytest
from batch_server import batch_server  # noqa: F401
from llm_server import Received, Response, ScriptedServer, error, llm_server, reply, slow, tries_teacher  # noqa: F401
from stage_doubles import Given

from m1data.errors import UserError
from m1data.llm import RetryPolicy
from m1data.llm.attempts import nth_try, run_rounds, stats_by_attempt
from m1data.llm.cache import request_key
from m1data.llm.runner import EndpointError
from m1data.llm.stages import LLMRuntime, boxed_request
from m1data.llm.types import Reply
from m1data.running.funnel import funnel_markdown
from m1data.running.pipeline import StageFailed, drop_counts, run_pipeline
from m1data.schema import LETTERS, make_row, question_id, rows_to_dataset
from m1data.stages.dedup import deduplicate
from m1data.stages.traces import TeacherTraces, TracesConfig

SEED = 100
N = 12


def right_at_of(q: int) -> int | None:
    """Question q: right at try q % 5 + 1 (1..5), except every sixth, which is never right."""
    return None if q % 6 == 5 else q % 5 + 1


def make_rows(n: int = N) -> datasets.Dataset:
    return rows_to_dataset([
        make_row(source="medqa", row_id=f"q{i}", question=f"Q{i}: which drug treats condition {i}?",
                 options=[f"drug {i}-{k}" for k in range(4)], answer_idx=(i * 3) % 4, raw={"n": i})
        for i in range(n)
    ])


ROWS = make_rows()
RIGHT = {f"{row['prompt']}": LETTERS[row["answer_idx"]] for row in ROWS}


def question(text: str) -> int:
    return int(re.search(r"Q(\d+):", text).group(1))


def right_letter(text: str) -> str:
    return RIGHT[text.split("\n", 1)[1]]


def teacher(failure: str = "wrong", right_at=right_at_of, **kwargs):
    return tries_teacher(right_letter, lambda text: right_at(question(text)), base_seed=SEED, failure=failure,
                         **kwargs)


def config(server, tmp_path: Path, **kwargs) -> TracesConfig:
    runtime = LLMRuntime(progress=False, retries=RetryPolicy(max_attempts=2, base_delay=0.01),
                         cache_path=str(tmp_path / "cache.sqlite"), concurrency=kwargs.pop("concurrency", 4),
                         batch=kwargs.pop("batch", False), batch_poll_seconds=0.01)
    return TracesConfig(model="teacher", base_url=server.base_url, api_key_env=None, runtime=runtime,
                        extra_params={"seed": SEED}, temperature=0.7, **kwargs)


def expected_tries(k: int, right_at=right_at_of, n: int = N) -> dict[int, int]:
    """Question -> tries a `keep: first` run with K = k makes."""
    return {q: min(right_at(q) or k, k) for q in range(n)}


def test_right_at_try_j_is_kept_from_try_j_and_every_try_is_sent_once(llm_server, tmp_path):
    llm_server.handler = teacher()
    result = TeacherTraces(config(llm_server, tmp_path, attempts=4)).run(ROWS, None)
    tries = expected_tries(4)
    assert llm_server.count() == sum(tries.values())
    assert max(llm_server.sends_per_body().values()) == 1  # each try its own body (seed + k - 1)
    kept = {r["id"]: r for r in result.rows}
    assert sorted(kept) == sorted(f"q{q}" for q in range(N) if (right_at_of(q) or 9) <= 4)
    for q, row in ((int(i[1:]), r) for i, r in kept.items()):
        assert (row["attempt"], row["attempts_used"]) == (right_at_of(q), right_at_of(q))
        assert row["reasoning"] == f"try {right_at_of(q)}: so {LETTERS[row['answer_idx']]}."
    # The dropped table: every rejected try, with its reason; only the questions lost count.
    assert len(result.dropped) == sum(tries.values()) - len(kept)
    assert set(result.dropped["reason"]) == {"wrong_answer"}
    lost = {f"q{q}" for q in range(N)} - set(kept)
    assert drop_counts(result.dropped) == {"wrong_answer": {"medqa": len(lost)}}
    final = [r["id"] for r in result.dropped if not r["superseded"]]
    assert sorted(final) == sorted(lost)
    by_attempt = result.stats["by_attempt"]
    assert [by_attempt[str(k)]["first_verified"] for k in range(1, 5)] == [
        sum(right_at_of(q) == k for q in range(N)) for k in range(1, 5)]
    assert [by_attempt[str(k)]["sent"] for k in range(1, 5)] == [
        sum(t >= k for t in tries.values()) for k in range(1, 5)]
    assert result.stats["sent"] == sum(tries.values()) and result.stats["verified"] == len(kept)


def test_one_attempt_is_the_papers_single_call_with_the_same_cache_key(llm_server, tmp_path):
    llm_server.handler = teacher()
    result = TeacherTraces(config(llm_server, tmp_path)).run(ROWS, None)
    assert llm_server.count() == N
    assert sorted(result.rows["id"]) == sorted(f"q{q}" for q in range(N) if right_at_of(q) == 1)
    assert set(result.rows["attempt"]) == {1} and set(result.dropped["superseded"]) == {False}
    first = boxed_request("teacher", "p", {"seed": SEED})
    assert nth_try(first, 1) is first
    assert request_key("http://x", first) == request_key("http://x", nth_try(first, 1))
    second = nth_try(first, 2)
    assert second.params["seed"] == SEED + 1 and request_key("http://x", second) != request_key("http://x", first)
    no_seed = boxed_request("teacher", "p", {})
    assert request_key("http://x", nth_try(no_seed, 2)) != request_key("http://x", no_seed)  # the index alone


def test_without_a_seed_each_try_is_still_a_new_request(llm_server, tmp_path):
    # Same body every try: the server sees it again (its `attempt` counter), the cache does not answer it.
    llm_server.handler = tries_teacher(right_letter, lambda text: 3)
    cfg = config(llm_server, tmp_path, attempts=3)
    cfg.extra_params = {}
    result = TeacherTraces(cfg).run(ROWS, None)
    assert llm_server.count() == 3 * N and set(result.rows["attempt"]) == {3}
    assert TeacherTraces(cfg).run(ROWS, None).stats["sent"] == 0  # all three tries cached


@pytest.mark.parametrize(("failure", "reason"), [("truncated", "truncated"), ("no_answer", "no_answer")])
def test_truncated_and_unanswered_replies_are_tried_again(llm_server, tmp_path, failure, reason):
    llm_server.handler = teacher(failure=failure)
    result = TeacherTraces(config(llm_server, tmp_path, attempts=3)).run(ROWS, None)
    assert llm_server.count() == sum(expected_tries(3).values())
    assert set(result.dropped["reason"]) == {reason}
    assert sorted(result.rows["attempt"]) == sorted(j for q in range(N) if (j := right_at_of(q)) and j <= 3)


def test_retry_truncated_false_asks_a_truncated_question_once(llm_server, tmp_path):
    llm_server.handler = teacher(failure="truncated")
    result = TeacherTraces(config(llm_server, tmp_path, attempts=4, retry_truncated=False)).run(ROWS, None)
    assert llm_server.count() == N
    assert sorted(result.rows["id"]) == sorted(f"q{q}" for q in range(N) if right_at_of(q) == 1)


def test_a_truncated_reply_at_temperature_0_is_not_paid_for_again(llm_server, tmp_path):
    """Reference s.5: a truncated reply has no answer; at temperature 0 the next try is the same
    greedy reply, cut at the same place, so it is recorded as failed and never bought again, even
    with `attempts` > 1. Other failures still get their tries (the user asked for them)."""
    llm_server.handler = teacher(failure="truncated")
    cfg = dataclasses.replace(config(llm_server, tmp_path, attempts=4), temperature=0.0)
    result = TeacherTraces(cfg).run(ROWS, None)
    assert llm_server.count() == N
    assert set(result.dropped["reason"]) == {"truncated"}
    assert sorted(result.rows["id"]) == sorted(f"q{q}" for q in range(N) if right_at_of(q) == 1)


def test_an_always_wrong_teacher_costs_k_tries_per_question_and_keeps_nothing(llm_server, tmp_path):
    llm_server.handler = teacher(right_at=lambda q: None)
    result = TeacherTraces(config(llm_server, tmp_path, attempts=3)).run(ROWS, None)
    assert llm_server.count() == 3 * N and len(result.rows) == 0
    assert len(result.dropped) == 3 * N and drop_counts(result.dropped) == {"wrong_answer": {"medqa": N}}
    assert result.stats["by_attempt"]["3"]["rejected"] == {"wrong_answer": N}


def test_refusals_are_not_tried_again(llm_server, tmp_path):
    llm_server.handler = lambda req: error(400, "context window exceeded")
    result = TeacherTraces(config(llm_server, tmp_path, attempts=4, require_reasoning=False)).run(ROWS, None)
    assert llm_server.count() == N and set(result.dropped["reason"]) == {"error"}


def shorter_later(text: str, attempt: int) -> int:
    return 1000 - 100 * attempt


def test_keep_shortest_asks_every_try_and_keeps_the_shortest_verified(llm_server, tmp_path):
    llm_server.handler = teacher(tokens=shorter_later)
    result = TeacherTraces(config(llm_server, tmp_path, attempts=3, keep="shortest")).run(ROWS, None)
    assert llm_server.count() == 3 * N
    kept = {r["id"]: r for r in result.rows}
    assert sorted(kept) == sorted(f"q{q}" for q in range(N) if (right_at_of(q) or 9) <= 3)
    assert {r["attempt"] for r in kept.values()} == {3} and {r["attempts_used"] for r in kept.values()} == {3}
    assert set(result.dropped["reason"]) == {"wrong_answer", "verified_not_kept"}
    assert sum(result.stats["by_attempt"][str(k)]["kept"] for k in (1, 2, 3)) == len(kept)


def test_keep_all_keeps_every_verified_try_with_its_try_in_the_id(llm_server, tmp_path):
    llm_server.handler = teacher()
    stage = TeacherTraces(config(llm_server, tmp_path, attempts=3, keep="all"))
    result = stage.run(ROWS, None)
    expected = sorted(f"q{q}-try{k}" for q in range(N) for k in (1, 2, 3) if (right_at_of(q) or 9) <= k)
    assert sorted(result.rows["id"]) == expected
    assert all(r["id"].endswith(f"-try{r['attempt']}") for r in result.rows)
    # what a build and a file run check before writing it: it stopped every keep-all run, after every try was paid
    stage.account(ROWS, result)
    # the tries of one question are one question to the dedup after it: they go or stay together
    kept, dropped = deduplicate(result.rows)
    questions = {question_id(i) for i in kept["id"]}
    assert questions and sorted(kept["id"]) == [i for i in expected if question_id(i) in questions]
    assert not questions & {question_id(i) for i in dropped["id"]}
    with pytest.raises(StageFailed, match="q0"):
        stage.account(ROWS, dataclasses.replace(result, rows=result.rows.filter(lambda r: not r["id"].startswith("q0-"))))


def test_raising_k_on_a_finished_run_sends_only_the_new_tries(llm_server, tmp_path):
    llm_server.handler = teacher()
    TeacherTraces(config(llm_server, tmp_path, attempts=2)).run(ROWS, None)
    first = llm_server.count()
    assert first == sum(expected_tries(2).values())
    result = TeacherTraces(config(llm_server, tmp_path, attempts=4)).run(ROWS, None)
    assert llm_server.count() - first == sum(expected_tries(4).values()) - first
    assert max(llm_server.sends_per_body().values()) == 1
    assert result.stats["by_attempt"]["1"]["sent"] == 0 and result.stats["by_attempt"]["3"]["cached"] == 0
    assert sorted(result.rows["attempt"]) == sorted(j for q in range(N) if (j := right_at_of(q)) and j <= 4)


def test_a_run_stopped_mid_try_resumes_without_paying_twice(llm_server, tmp_path):
    script = teacher()
    sent = []

    def stops_after_ten(req: Received) -> Response:
        sent.append(req)
        return error(401, "key revoked") if len(sent) > 10 else script(req)

    llm_server.handler = stops_after_ten
    with pytest.raises(EndpointError):
        TeacherTraces(config(llm_server, tmp_path, attempts=4, concurrency=2)).run(ROWS, None)
    llm_server.handler = script
    result = TeacherTraces(config(llm_server, tmp_path, attempts=4, concurrency=2)).run(ROWS, None)
    answered = [b for b, n in llm_server.sends_per_body().items() if n > 1]
    assert len(answered) <= 2  # only the requests the 401 refused (in flight: at most concurrency) go again
    assert result.stats["sent"] == sum(expected_tries(4).values()) - 10
    assert len(result.rows) == sum((right_at_of(q) or 9) <= 4 for q in range(N))


def test_a_fatal_stop_lets_the_tries_in_flight_finish_and_caches_them(llm_server, tmp_path):
    from m1data.llm import Cache, HTTPConfig, HTTPEngine, Request
    from m1data.llm.attempts import complete_tries

    def ask(i: int) -> Request:
        return Request(model="m", messages=({"role": "user", "content": f"q{i}"},), params={"max_tokens": 5})

    def handler(req: Received) -> Response:
        return error(401, "key revoked") if req.text == "q3" else slow(0.5, reply(req, "\\boxed{A}"))

    def tries(cache: Cache) -> None:
        complete_tries(HTTPEngine(HTTPConfig(base_url=llm_server.base_url)), [ask(i) for i in range(30)], cache,
                       attempts=1, again=lambda i, r: False, by_attempt=stats_by_attempt(1), concurrency=8,
                       progress=False, retry=RetryPolicy(max_attempts=2, base_delay=0.01))

    llm_server.handler = handler
    with Cache(tmp_path / "cache.sqlite") as cache:
        with pytest.raises(EndpointError, match="http_401"):
            tries(cache)
        answered = llm_server.count() - 1
        assert answered >= 3 and cache.status_counts() == {"ok": answered}  # in flight beside q3: kept
        llm_server.handler = lambda req: reply(req, "\\boxed{A}")
        tries(cache)
    assert sorted(llm_server.sends_per_body().values()) == [1] * 29 + [2]  # only q3 was sent twice


KILL_SCRIPT = textwrap.dedent(
    """
    import sys
    from m1data.llm.stages import LLMRuntime
    from m1data.stages.traces import run_traces_file, TracesConfig
    from m1data.reading.readers import read_rows
    base_url, rows, out, cache = sys.argv[1:5]
    from m1data.stages.traces import TeacherTraces
    from m1data.running.pipeline import run_on_file
    cfg = TracesConfig(model="teacher", base_url=base_url, api_key_env=None, attempts=4, temperature=0.7,
                       extra_params={"seed": 100}, runtime=LLMRuntime(progress=False, concurrency=4, cache_path=cache))
    stats = run_on_file(TeacherTraces(cfg), rows, out)
    print("DONE", stats["rows_out"], flush=True)
    """
)


def test_sigkill_mid_try_then_resume_never_pays_for_a_try_twice(tmp_path):
    rows = make_rows(60)
    rows.to_parquet(str(tmp_path / "rows.parquet"))
    right = {row["prompt"]: LETTERS[row["answer_idx"]] for row in rows}
    handler = tries_teacher(lambda text: right[text.split("\n", 1)[1]], lambda text: right_at_of(question(text)),
                            base_seed=SEED, delay=0.03)
    (tmp_path / "run.py").write_text(KILL_SCRIPT)
    args = [sys.executable, str(tmp_path / "run.py")]
    with ScriptedServer(handler) as server:
        files = [server.base_url, str(tmp_path / "rows.parquet"), str(tmp_path / "out.parquet"),
                 str(tmp_path / "cache.sqlite")]
        proc = subprocess.Popen([*args, *files], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 60
        while server.count() < 40 and time.time() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed_at = server.count()
        assert 40 <= killed_at < sum(expected_tries(4, n=60).values())
        done = subprocess.run([*args, *files], capture_output=True, text=True, timeout=120, check=True)
        repeats = sum(n - 1 for n in server.sends_per_body().values())
        assert repeats <= 4  # at most the tries in flight when it died
        assert server.count() - repeats == sum(expected_tries(4, n=60).values())
    assert done.stdout.split() == ["DONE", str(sum((right_at_of(q) or 9) <= 4 for q in range(60)))]


def test_batch_api_tries_go_in_rounds(batch_server, tmp_path):
    batch_server.handler = teacher()
    result = TeacherTraces(config(batch_server, tmp_path, attempts=3, batch=True, require_reasoning=False)).run(
        ROWS, None)
    tries = expected_tries(3)
    assert batch_server.created() == 3 and batch_server.count() == 0  # one batch per round, nothing online
    assert len(batch_server.uploaded_lines()) == sum(tries.values())
    assert sorted(result.rows["attempt"]) == sorted(j for q in range(N) if (j := right_at_of(q)) and j <= 3)


def test_rounds_ask_only_the_questions_still_open():
    asked = []

    def call(requests, stats, attempt):
        asked.append((attempt, len(requests)))
        return [Reply(text="ok" if attempt == 2 else "no") for _ in requests]

    firsts = [boxed_request("m", f"p{i}", {}) for i in range(5)]
    tries = run_rounds(call, firsts, 3, lambda i, reply: reply.text == "no" and i != 0, stats_by_attempt(3))
    assert asked == [(1, 5), (2, 4)] and [len(t) for t in tries] == [1, 2, 2, 2, 2]


def test_new_columns_have_card_notes():
    from m1data.cards.render import column_note

    for name in ("attempt", "attempts_used", "student_s_verdicts", "student_s_answers"):
        assert "not one of the columns m1data writes" not in column_note(name), name


def test_bad_settings_are_one_line_errors():
    with pytest.raises(UserError, match="attempts"):
        TracesConfig(attempts=0)
    with pytest.raises(UserError, match="keep"):
        TracesConfig(keep="longest")


def test_manifest_and_funnel_show_yield_and_cost_by_try(llm_server, tmp_path):
    llm_server.handler = teacher()
    stage = TeacherTraces(config(llm_server, tmp_path, attempts=3))
    run_pipeline([Given(ROWS), stage], tmp_path / "run")
    manifest = json.loads(next((tmp_path / "run").glob("*traces/manifest.json")).read_text(encoding="utf-8"))
    assert manifest["stats"]["by_attempt"]["2"]["first_verified"] == sum(right_at_of(q) == 2 for q in range(N))
    assert manifest["drops"] == {"wrong_answer": {"medqa": sum((right_at_of(q) or 9) > 3 for q in range(N))}}
    funnel = funnel_markdown(tmp_path / "run")
    assert "## Teacher yield by try" in funnel
    from m1data.cards.render import _funnel_section

    assert "### Teacher yield by try" in _funnel_section(tmp_path / "run")  # the card's funnel section
    assert re.search(r"\| traces \| 2 \| " + str(sum(right_at_of(q) != 1 for q in range(N))), funnel)


def test_run_traces_command_takes_attempts_keep_and_seed(llm_server, tmp_path):
    from typer.testing import CliRunner

    from m1data.cli import app
    from m1data.reading.readers import read_rows

    llm_server.handler = teacher()
    ROWS.to_parquet(str(tmp_path / "in.parquet"))
    out = tmp_path / "out.parquet"
    result = CliRunner().invoke(app, ["run", "traces", str(tmp_path / "in.parquet"), str(out), "--base-url",
                                      llm_server.base_url, "--model", "teacher", "--attempts", "3", "--keep", "first",
                                      "--seed", str(SEED), "--temperature", "0.7"])
    assert result.exit_code == 0, result.output
    assert llm_server.count() == sum(expected_tries(3).values())
    assert sorted(read_rows(out)["attempt"]) == sorted(j for q in range(N) if (j := right_at_of(q)) and j <= 3)
    assert len(read_rows(tmp_path / "out.dropped.parquet")) == sum(expected_tries(3).values()) - len(read_rows(out))


def test_the_tries_share_the_endpoint_rate_limits_with_the_calls_before_them(llm_server):
    """The traces' preflight and its tries go to one endpoint: the tries' loop built a rate-limit
    bucket of its own, so at rpm=R the two together could send R plus a second burst in a minute."""
    from m1data.llm import HTTPConfig, HTTPEngine, Request
    from m1data.llm.attempts import complete_tries
    from m1data.llm.limits import shared_ceilings
    from m1data.llm.runner import _endpoint, complete_all

    def ask(i: int) -> Request:
        return Request(model="m", messages=({"role": "user", "content": f"q{i}"},), params={"max_tokens": 5})

    llm_server.handler = lambda req: reply(req, "\\boxed{A}")
    engine = HTTPEngine(HTTPConfig(base_url=llm_server.base_url))
    rpm = 6000 + int(llm_server.base_url.split(":")[-1].split("/")[0])  # this test's own ceilings, empty
    complete_all(engine, [ask(i) for i in range(5)], None, rpm=rpm, progress=False)
    complete_tries(engine, [ask(i) for i in range(5, 12)], None, attempts=1, again=lambda i, r: False,
                   by_attempt=stats_by_attempt(1), rpm=rpm, progress=False)
    assert llm_server.count() == 12
    assert len(shared_ceilings(_endpoint(engine), rpm, None).recent) == 12  # every send booked in one window
