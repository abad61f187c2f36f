"""The Batch API path against a local files-and-batches server: the JSONL is the provider's
format with the exact online bodies, chunks respect the limits, results land in the same cache
(an online re-run pays nothing), outcomes are classified as online, unanswered requests are sent
again, a crash never resubmits a batch, and the batch discount is applied."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from batch_server import BatchServer, batch_server  # noqa: F401
from llm_server import Received, Response, chat, error, reply

from m1data.llm import (
    Cache,
    HTTPConfig,
    HTTPEngine,
    Price,
    PriceTable,
    Request,
    RunStats,
    complete_all,
    request_key,
)
from m1data.llm.batch import BatchLimits, BatchState, run_batch
from m1data.llm.params import request_body

FAST = BatchLimits(poll_seconds=0.01)


def ask(text: str) -> Request:
    return Request(model="m", messages=({"role": "user", "content": text},), params={"max_tokens": 20, "seed": 1})


def echo(req: Received) -> Response:
    return reply(req, f"echo {req.text}", prompt_tokens=10, completion_tokens=4)


def batch(server, requests, tmp_path, **kwargs):
    engine = HTTPEngine(HTTPConfig(base_url=server.base_url))
    kwargs.setdefault("limits", FAST)
    kwargs.setdefault("progress", False)
    with Cache(tmp_path / "cache.sqlite") as cache:
        return run_batch(engine, requests, cache, state_path=tmp_path / "batches.json", **kwargs)


def test_round_trip_in_the_providers_format_and_into_the_same_cache(batch_server, tmp_path):
    batch_server.handler = echo
    requests = [ask(f"q{i}") for i in range(6)] + [ask("q2")]
    replies = batch(batch_server, requests, tmp_path)
    assert [r.text for r in replies] == [f"echo q{i}" for i in range(6)] + ["echo q2"]
    assert batch_server.created() == 1 and batch_server.count() == 0  # no online call
    engine = HTTPEngine(HTTPConfig(base_url=batch_server.base_url))
    lines = batch_server.uploaded_lines()
    assert len(lines) == 6  # the duplicate went once
    for line, request in zip(lines, requests, strict=False):
        assert line == {
            "custom_id": request_key(engine.endpoint, request),
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": request_body(request),
        }
    with Cache(tmp_path / "cache.sqlite") as cache:  # an online run finds every batch answer
        stats = RunStats()
        online = complete_all(engine, requests, cache, progress=False, stats=stats)
    assert [r.text for r in online] == [r.text for r in replies]
    assert stats.sent == 0 and batch_server.count() == 0
    assert json.loads((tmp_path / "batches.json").read_text(encoding="utf-8"))["batches"][0]["batch_id"] == "batch_1"


def test_chunks_stay_under_the_request_and_byte_limits(batch_server, tmp_path):
    batch_server.handler = echo
    requests = [ask(f"question number {i}") for i in range(7)]
    by_count = batch(batch_server, requests, tmp_path, limits=BatchLimits(max_requests=3, poll_seconds=0.01))
    assert batch_server.created() == 3 and all(r.status == "ok" for r in by_count)
    one_line = len(json.dumps(batch_server.uploaded_lines()[0]))
    more = [ask(f"another question {i}") for i in range(4)]
    batch(batch_server, more, tmp_path, limits=BatchLimits(max_bytes=2 * one_line + 10, poll_seconds=0.01))
    assert batch_server.created() == 5  # 4 requests, at most 2 lines per file


def test_outcomes_are_classified_and_only_transient_ones_resent(batch_server, tmp_path):
    def mixed(req: Received) -> Response:
        return {
            "ok": reply(req, "\\boxed{A}"),
            "cut": chat("<think>long", finish_reason="length"),
            "refused": error(400, "context length exceeded"),
            "down": error(503, "overloaded"),
        }[req.text]

    batch_server.handler = mixed
    requests = [ask("ok"), ask("cut"), ask("refused"), ask("down")]
    got = batch(batch_server, requests, tmp_path)
    assert [r.status for r in got] == ["ok", "length", "error", "error"]
    assert got[2].error.startswith("http_400") and got[3].error.startswith("http_503")
    batch_server.handler = lambda req: reply(req, "\\boxed{B}")
    again = batch(batch_server, requests, tmp_path)
    assert batch_server.created() == 2 and len(batch_server.uploaded_lines()) == 5  # only "down" went again
    assert [r.status for r in again] == ["ok", "length", "error", "ok"]


def test_an_expired_batch_is_sent_again(batch_server, tmp_path):
    batch_server.handler = echo
    batch_server.expire_next = True
    got = batch(batch_server, [ask("a"), ask("b")], tmp_path)
    assert [r.status for r in got] == ["error", "error"] and got[0].error.startswith("batch_expired")
    again = batch(batch_server, [ask("a"), ask("b")], tmp_path)
    assert [r.text for r in again] == ["echo a", "echo b"] and batch_server.created() == 2


def test_batch_discount_in_estimates_and_measured_cost(batch_server, tmp_path):
    batch_server.handler = echo
    prices = PriceTable({"m": Price(1.0, 2.0, batch_discount=0.5)})
    stats = RunStats()
    batch(batch_server, [ask(f"q{i}") for i in range(5)], tmp_path, prices=prices, stats=stats)
    assert stats.cost_sent == pytest.approx((50 * 1.0 + 20 * 2.0) / 1e6 / 2)


SCRIPT = textwrap.dedent(
    """
    import sys
    from m1data.llm import Cache, HTTPConfig, HTTPEngine, Request
    from m1data.llm.batch import BatchLimits, run_batch
    base_url, folder = sys.argv[1], sys.argv[2]
    requests = [Request(model="m", messages=({"role": "user", "content": f"q{i}"},), params={"max_tokens": 20, "seed": 1})
                for i in range(6)]
    with Cache(folder + "/cache.sqlite") as cache:
        replies = run_batch(HTTPEngine(HTTPConfig(base_url=base_url)), requests, cache,
                            state_path=folder + "/batches.json", limits=BatchLimits(max_requests=4, poll_seconds=0.05),
                            progress=False)
    print("DONE", sum(r.status == "ok" for r in replies))
    """
)


def test_sigkill_while_waiting_never_resubmits(tmp_path):
    (tmp_path / "run.py").write_text(SCRIPT)
    with BatchServer(echo) as server:
        server.hold = True
        proc = subprocess.Popen(
            [sys.executable, str(tmp_path / "run.py"), server.base_url, str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        while server.created() < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert server.created() == 2  # both chunks were submitted before the kill
        server.hold = False
        replies = batch(
            server, [ask(f"q{i}") for i in range(6)], tmp_path, limits=BatchLimits(max_requests=4, poll_seconds=0.01)
        )
        assert [r.text for r in replies] == [f"echo q{i}" for i in range(6)]
        assert server.created() == 2 and len(server.uploaded_lines()) == 6  # nothing resubmitted
        assert all(n == 1 for n in server.sends_per_body().values())


def test_crash_between_upload_and_create_adopts_the_batch(batch_server, tmp_path):
    """The record says a file was uploaded but not which batch was made from it (a crash right
    after create): the next run finds that batch by its input file instead of creating another."""
    batch_server.handler = echo
    batch_server.hold = True
    engine = HTTPEngine(HTTPConfig(base_url=batch_server.base_url))
    with Cache(tmp_path / "cache.sqlite") as cache:
        from m1data.llm.batch import _Batches, _submit

        state = BatchState.load(tmp_path / "batches.json")
        _submit(_Batches(engine), state, [(request_key(engine.endpoint, ask("q")), ask("q"))], FAST)
    state = BatchState.load(tmp_path / "batches.json")
    state.entries[0].batch_id, state.entries[0].status = None, "new"
    state.save()
    batch_server.hold = False
    [got] = batch(batch_server, [ask("q")], tmp_path)
    assert got.text == "echo q" and batch_server.created() == 1


# -- the stages ---------------------------------------------------------------------------------

from stage_doubles import Given

from m1data.llm.stages import LLMRuntime  # noqa: E402
from m1data.reading.readers import read_rows, write_rows  # noqa: E402
from m1data.running.pipeline import RunContext, run_pipeline  # noqa: E402
from m1data.schema import LETTERS, make_row, rows_to_dataset  # noqa: E402
from m1data.stages.difficulty import DifficultyConfig, DifficultyFilter, StudentConfig  # noqa: E402
from m1data.stages.traces import TeacherTraces, TracesConfig  # noqa: E402

ROWS = rows_to_dataset(
    [
        make_row(
            source="medmcqa",
            row_id=f"b{i}",
            question=f"Batch question {i}: which nerve supplies muscle {i}?",
            options=[f"nerve {i}-{k}" for k in range(4)],
            answer_idx=i % 4,
            raw={},
        )
        for i in range(5)
    ]
)
BY_PROMPT = {row["prompt"]: row for row in ROWS}


def teacher_and_students(req: Received) -> Response:
    """The teacher answers right; the student answers wrong except on b0 (so b0 is too easy)."""
    row = BY_PROMPT[req.text.split("\n", 1)[1]]
    right = LETTERS[row["answer_idx"]]
    if req.model == "student" and row["id"] != "b0":
        right = LETTERS[(row["answer_idx"] + 1) % 4]
    return chat(f"\\boxed{{{right}}}", reasoning=f"thinking about {row['id']}")



def test_a_build_mixes_online_students_and_a_batch_teacher(batch_server, tmp_path):
    batch_server.handler = teacher_and_students
    students = DifficultyConfig(
        students=[StudentConfig(model="student", base_url=batch_server.base_url, short="s")],
        runtime=LLMRuntime(progress=False),
    )
    teacher = TracesConfig(
        model="teacher",
        base_url=batch_server.base_url,
        api_key_env=None,
        runtime=LLMRuntime(batch=True, batch_poll_seconds=0.01, progress=False),
        preflight_requests=1,
    )
    stages = [Given(ROWS), DifficultyFilter(students), TeacherTraces(teacher)]
    out = run_pipeline(stages, tmp_path / "run")
    assert sorted(out["id"]) == ["b1", "b2", "b3", "b4"]
    assert batch_server.count() == 5 + 1  # the student and the teacher's one-request preflight, online
    assert batch_server.created() == 1 and len(batch_server.uploaded_lines()) == 3  # the rest of the teacher, one batch
    record = json.loads((tmp_path / "run" / "cache" / "02_traces" / "batches.json").read_text(encoding="utf-8"))  # beside the cache
    assert [b["batch_id"] for b in record["batches"]] == ["batch_1"]
    run_pipeline(stages, tmp_path / "run", force=True)  # a forced re-run: all from the cache
    assert batch_server.count() == 6 and batch_server.created() == 1


def test_run_traces_batch_from_the_command_line(batch_server, tmp_path):
    from typer.testing import CliRunner

    from m1data.cli import app

    batch_server.handler = teacher_and_students
    batch_server.polls_to_finish = 1  # the command polls every 30 s: finish at the first poll
    src = write_rows(ROWS, tmp_path / "in.jsonl")
    out = tmp_path / "traces.jsonl"
    args = ["run", "traces", str(src), str(out), "--base-url", batch_server.base_url, "--model", "teacher", "--batch"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert len(read_rows(out)) == 5 and batch_server.created() == 1
    assert batch_server.count() == 3 and len(batch_server.uploaded_lines()) == 2  # a 3-request preflight online
    assert (tmp_path / "traces.llm_cache.batches.json").exists()


def test_tagger_rounds_go_as_batches(batch_server, tmp_path):
    """The LLM tagger's re-asks are a second round: a second batch with only the unresolved rows."""
    from test_mesh import SCRIPT, _rows, garbage_first

    from m1data.stages.mesh import MeshConfig, MeshTagger

    batch_server.handler = garbage_first
    config = MeshConfig(
        base_url=batch_server.base_url,
        model="scripted",
        api_key_env=None,
        runtime=LLMRuntime(progress=False, batch=True, batch_poll_seconds=0.01),
    )
    result = MeshTagger(config).run(_rows(), RunContext(run_dir=tmp_path, stage_dir=tmp_path))
    assert result.rows["domain_code"] == list(SCRIPT.values())
    assert batch_server.count() == 0 and batch_server.created() == 2
    assert len(batch_server.uploaded_lines()) == 2 * len(SCRIPT)


def test_answers_to_requests_no_longer_asked_are_kept(batch_server, tmp_path):
    """A batch went out for a and b; the next run asks only for a (the rows changed). b was paid
    for: it goes into the cache too, read back from the batch's input file."""
    from m1data.llm.batch import _Batches, _submit

    batch_server.handler = echo
    engine = HTTPEngine(HTTPConfig(base_url=batch_server.base_url))
    state = BatchState.load(tmp_path / "batches.json")
    items = [(request_key(engine.endpoint, r), r) for r in (ask("a"), ask("b"))]
    _submit(_Batches(engine), state, items, FAST)
    [got] = batch(batch_server, [ask("a")], tmp_path)
    assert got.text == "echo a" and batch_server.created() == 1
    with Cache(tmp_path / "cache.sqlite") as cache:
        [b] = complete_all(engine, [ask("b")], cache, progress=False)
    assert b.cached and b.text == "echo b" and batch_server.count() == 0


class KeyNamingServer(BatchServer):
    """A Batch API that names its `kind` objects ("file-", "batch_") after the key it was sent, as
    a server that echoes its request's Authorization header would; the renamed ids still work."""

    def __init__(self, kind: str, **kwargs):
        super().__init__(**kwargs)
        self.kind = kind

    def _respond(self, received: Received) -> Response:
        response = super()._respond(received)
        key = received.headers.get("authorization", "").split(" ", 1)[-1]
        found = response.body.get("id") if isinstance(response.body, dict) else None
        if isinstance(found, str) and found.startswith(self.kind) and not found.endswith(key):
            for store in (self.batches, self.files):
                if found in store:
                    store[f"{found}-{key}"] = {**store.pop(found), "id": f"{found}-{key}"}
            response.body = {**response.body, "id": f"{found}-{key}"}
        return response


@pytest.mark.parametrize("kind", ["file-", "batch_"])
def test_a_server_naming_its_files_or_batches_after_the_key_is_refused_and_the_key_never_recorded(
        tmp_path, monkeypatch, kind):
    """The ids a server gives its files and batches were written as given into batches.json (next
    to the reply cache, in the run folder) and the progress line: a server echoing the
    Authorization header into them put the key there, where no mask may touch it (the next run
    polls by the id). Now such an id is one EndpointError line, the key in no file."""
    from m1data.llm import EndpointError

    key = "sk-BatchIdEchoKey9Zq7Wx3Vb5Nm1Lp8"
    monkeypatch.setenv("M1DATA_BATCH_KEY", key)
    with KeyNamingServer(kind, handler=echo, polls_to_finish=1) as server:
        engine = HTTPEngine(HTTPConfig(base_url=server.base_url, api_key_env="M1DATA_BATCH_KEY"))
        with Cache(tmp_path / "cache.sqlite") as cache, pytest.raises(EndpointError, match="holds the API key") as err:
            run_batch(engine, [ask("q1"), ask("q2")], cache, state_path=tmp_path / "batches.json", limits=FAST,
                      progress=False)
    assert key not in str(err.value)
    assert not [path for path in tmp_path.rglob("*") if path.is_file() and key.encode() in path.read_bytes()]


def test_an_online_run_stops_before_requests_waiting_in_a_batch(batch_server, tmp_path):
    """Killed while its batch waited, a stage run again online sent every request of the batch
    again (paid twice), and collecting the batch later replaced the online replies in the cache."""
    from m1data.errors import UserError
    from m1data.llm.batch import _submit, complete

    batch_server.handler = echo
    batch_server.hold = True
    requests = [ask(f"q{i}") for i in range(4)]
    engine = HTTPEngine(HTTPConfig(base_url=batch_server.base_url))
    keys = [request_key(engine.endpoint, r) for r in requests]
    with Cache(tmp_path / "cache.sqlite") as cache:
        from m1data.llm.batch import _Batches, state_path_for

        state = BatchState.load(state_path_for(cache, None))
        api = _Batches(engine)
        _submit(api, state, list(zip(keys, requests, strict=True)), FAST)  # submitted, then the run was killed
        api.close()
        with pytest.raises(UserError, match=r"4 of these requests wait in batch\(es\) submitted earlier .*`--batch`"):
            complete(engine, requests, cache, progress=False)
        assert batch_server.count() == 0  # nothing sent online
        complete(engine, [ask("other")], cache, progress=False)  # a request in no batch goes
        # an answer the cache holds already (from an older m1data's online rerun) stays when the batch comes in
        cache.put(keys[0], engine.endpoint, requests[0], reply_of("kept online"), transient=False)
        batch_server.hold = False
        replies = complete(engine, requests, cache, batch=True, batch_limits=FAST, progress=False)
        assert [r.text for r in replies] == ["kept online", "echo q1", "echo q2", "echo q3"]
        assert cache.get(keys[0]).reply.text == "kept online"


def reply_of(text: str):
    from m1data.llm.types import Reply

    return Reply(text=text, status="ok", prompt_tokens=1, completion_tokens=1, model="m")
