"""The OpenAI-compatible engine against a real scripted server: one attempt per call, every
failure classified (retryable, fatal, or an outcome), both reply shapes, through the openai SDK."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from llm_server import (
    Received,
    Response,
    chat,
    completion,
    drop,
    empty_choices,
    error,
    llm_server,  # noqa: F401  (fixture)
    malformed,
    reply,
    slow,
)

from m1data.llm import HTTPConfig, HTTPEngine, InvalidParams, MissingAPIKey, Request
from m1data.llm.limits import Failed
from m1data.llm.thinking import split_thinking

CHAT = Request(model="m", messages=({"role": "user", "content": "Which? A. x B. y"},), params={"max_tokens": 50})
PLAIN = Request(model="m", prompt="Once upon", params={"max_tokens": 5, "stop": ["\n"]})


def engine_for(server, **kwargs) -> HTTPEngine:
    return HTTPEngine(HTTPConfig(base_url=server.base_url, **kwargs))


def call(engine: HTTPEngine, request: Request):
    async def main():
        try:
            return await engine.complete(request)
        finally:
            await engine.aclose()

    return asyncio.run(main())


def test_chat_reply_and_exact_body(llm_server):
    llm_server.handler = lambda req: chat("The answer is \\boxed{B}", prompt_tokens=12, completion_tokens=5)
    got = call(engine_for(llm_server), CHAT)
    assert (got.status, got.text, got.reasoning, got.finish_reason) == ("ok", "The answer is \\boxed{B}", None, "stop")
    assert (got.prompt_tokens, got.completion_tokens) == (12, 5)
    [sent] = llm_server.requests
    assert sent.path == "/v1/chat/completions"
    assert sent.body == {"model": "m", "messages": [{"role": "user", "content": "Which? A. x B. y"}], "max_tokens": 50}
    assert "authorization" not in sent.headers  # no api_key_env: nothing sent


def test_plain_completion(llm_server):
    llm_server.handler = lambda req: completion(" a time", finish_reason="stop")
    got = call(engine_for(llm_server), PLAIN)
    assert got.text == " a time"  # untouched, so callers can continue the text verbatim
    [sent] = llm_server.requests
    assert sent.path == "/v1/completions"
    assert sent.body == {"model": "m", "prompt": "Once upon", "max_tokens": 5, "stop": ["\n"]}


def test_reasoning_content_shape(llm_server):
    llm_server.handler = lambda req: chat("\\boxed{A}", reasoning="Let me think. A fits.")
    got = call(engine_for(llm_server), CHAT)
    assert (got.reasoning, got.text) == ("Let me think. A fits.", "\\boxed{A}")


def test_inline_think_shape(llm_server):
    llm_server.handler = lambda req: chat("<think>\nHmm, A or B.\n</think>\n\nFinal: \\boxed{A}")
    got = call(engine_for(llm_server), CHAT)
    assert (got.reasoning, got.text) == ("Hmm, A or B.", "Final: \\boxed{A}")


def test_truncated_inline_think_has_no_answer(llm_server):
    llm_server.handler = lambda req: chat("<think>\nstill going and going", finish_reason="length")
    got = call(engine_for(llm_server), CHAT)
    assert (got.status, got.finish_reason, got.text, got.reasoning) == ("length", "length", "", "still going and going")
    assert not isinstance(got, Failed)


@pytest.mark.parametrize("content", [None, ""])
def test_truncated_separate_reasoning_has_no_answer(llm_server, content):
    """Reference s.5, DeepSeek's shape: cut off while thinking, `reasoning_content` holds the
    thinking and `content` is null or empty: a recorded outcome with no answer, not a failure
    (which would be sent again and billed again)."""
    llm_server.handler = lambda req: chat(content, reasoning="still going and going", finish_reason="length")
    got = call(engine_for(llm_server), CHAT)
    assert (got.status, got.finish_reason, got.text, got.reasoning) == ("length", "length", "", "still going and going")
    assert not isinstance(got, Failed)


def test_content_filter_finish_reason(llm_server):
    llm_server.handler = lambda req: chat("", finish_reason="content_filter")
    got = call(engine_for(llm_server), CHAT)
    assert got.status == "filtered"


def test_content_filter_as_400(llm_server):
    llm_server.handler = lambda req: error(400, "The response was filtered due to content_filter policy")
    got = call(engine_for(llm_server), CHAT)
    assert got.status == "filtered" and not got.retryable and not got.fatal


@pytest.mark.parametrize(
    "response, kind, retryable, fatal",
    [
        (error(429, "slow down", retry_after=3), "http_429", True, False),
        (error(500, "boom"), "http_500", True, False),
        (error(503, "overloaded"), "http_503", True, False),
        (error(400, "prompt too long"), "http_400", False, False),
        (error(422, "bad value"), "http_422", False, False),
        (error(401, "bad key"), "http_401", False, True),
        (error(404, "no such model"), "http_404", False, True),
        (malformed(), "bad_response", True, False),
        (empty_choices(), "bad_response", True, False),
        (Response(body={"error": {"message": "upstream failed"}}), "api_error", True, False),
        (drop(), "connection", True, False),
    ],
)
def test_failures_are_classified(llm_server, response, kind, retryable, fatal):
    llm_server.handler = lambda req: response
    got = call(engine_for(llm_server), CHAT)
    assert isinstance(got, Failed)
    assert (got.status, got.kind, got.retryable, got.fatal) == ("error", kind, retryable, fatal)
    assert got.error.startswith(kind + ": ")
    assert llm_server.count() == 1  # one call, one attempt: retrying is the runner's job


def test_retry_after_is_read(llm_server):
    llm_server.handler = lambda req: error(429, retry_after=2.5)
    assert call(engine_for(llm_server), CHAT).retry_after == 2.5


def test_timeout(llm_server):
    llm_server.handler = lambda req: slow(2.0)
    began = time.perf_counter()
    got = call(engine_for(llm_server, timeout=0.3), CHAT)
    assert time.perf_counter() - began < 1.5
    assert (got.kind, got.retryable) == ("timeout", True)


def test_connection_refused_is_retryable():
    engine = HTTPEngine(HTTPConfig(base_url="http://127.0.0.1:9/v1", timeout=5))
    got = call(engine, CHAT)
    assert (got.kind, got.retryable) == ("connection", True)


def test_unknown_param_is_rejected_before_sending(llm_server):
    engine = engine_for(llm_server)
    bad = Request(model="m", messages=CHAT.messages, params={"temp": 0.0})
    with pytest.raises(InvalidParams, match="did you mean 'temperature'"):
        engine.validate(bad)
    with pytest.raises(InvalidParams, match="temperature must be"):
        engine.validate(Request(model="m", prompt="x", params={"temperature": "0"}))
    assert llm_server.count() == 0


def test_vllm_extras_need_opting_in(llm_server):
    request = Request(model="m", prompt="x", params={"top_k": 20})
    with pytest.raises(InvalidParams):
        engine_for(llm_server).validate(request)
    engine_for(llm_server, extra_params=("top_k",)).validate(request)


def test_api_key_from_environment_sent_but_never_shown(llm_server, monkeypatch):
    monkeypatch.setenv("M1DATA_TEST_KEY", "sk-test-SECRET-123")
    seen = []

    def handler(req: Received) -> Response:
        seen.append(req.headers.get("authorization"))
        return reply(req, "ok")

    llm_server.handler = handler
    engine = engine_for(llm_server, api_key_env="M1DATA_TEST_KEY")
    assert call(engine, CHAT).status == "ok"
    assert seen == ["Bearer sk-test-SECRET-123"]
    for text in (repr(engine), str(engine), repr(engine.config), str(vars(engine.config))):
        assert "SECRET" not in text


@pytest.mark.parametrize("pasted", ["\n", "\r\n", " ", "\t \n"])
def test_a_key_pasted_with_surrounding_whitespace_is_sent_stripped(llm_server, monkeypatch, pasted):
    """`export KEY="sk-...\\n"`: the HTTP library refused the header on every request, recorded as
    a transient connection failure and retried on every rerun, the user never told."""
    from m1data.redact import redact_environment

    monkeypatch.setenv("M1DATA_PASTED_KEY", f"{pasted}Pasted-0123456789abcdef{pasted}")
    seen = []

    def echoing(req: Received) -> Response:
        seen.append(req.headers.get("authorization"))
        return reply(req, f"you sent {req.headers.get('authorization')}", model=req.headers["authorization"][7:])

    llm_server.handler = echoing
    got = call(engine_for(llm_server, api_key_env="M1DATA_PASTED_KEY"), CHAT)
    assert got.status == "ok" and seen == ["Bearer Pasted-0123456789abcdef"], (got.error, seen)
    assert "Pasted-0123" not in got.text + got.model
    assert redact_environment("sent Pasted-0123456789abcdef") == "sent [redacted]"


@pytest.mark.parametrize("value", ["sk-one-0123456789 sk-two-0123456789", "sk-line-0123\n456789abc", "sk-\u00e9t\u00e9-0123456789"])
def test_a_key_with_whitespace_or_a_non_ascii_character_inside_is_one_line_before_any_request(llm_server, monkeypatch, value):
    """No header carries it: refused where the engine is built, naming the variable, never the value."""
    from m1data.llm.http import BadAPIKey

    monkeypatch.setenv("M1DATA_BROKEN_KEY", value)
    with pytest.raises(BadAPIKey, match="M1DATA_BROKEN_KEY") as refused:
        engine_for(llm_server, api_key_env="M1DATA_BROKEN_KEY")
    assert "0123" not in str(refused.value) and "\n" not in str(refused.value)
    assert llm_server.count() == 0


def test_missing_key_fails_early(llm_server, monkeypatch):
    monkeypatch.delenv("M1DATA_ABSENT_KEY", raising=False)
    with pytest.raises(MissingAPIKey, match="M1DATA_ABSENT_KEY"):
        engine_for(llm_server, api_key_env="M1DATA_ABSENT_KEY")
    lenient = HTTPEngine(HTTPConfig(base_url=llm_server.base_url, api_key_env="M1DATA_ABSENT_KEY"), require_key=False)
    got = call(lenient, CHAT)
    assert got.fatal and llm_server.count() == 0


def test_engine_survives_several_event_loops(llm_server):
    engine = engine_for(llm_server)
    assert asyncio.run(engine.complete(CHAT)).status == "ok"
    assert asyncio.run(engine.complete(CHAT)).status == "ok"
    asyncio.run(engine.aclose())


@pytest.mark.parametrize(
    "text, expected",
    [
        ("plain answer", (None, "plain answer")),
        ("<think>a</think>b", ("a", "b")),
        ("<think>\n a \n</think>\n\n b ", ("a", "b")),
        ("<think>cut off", ("cut off", "")),
        ("opened in the prompt</think>answer", ("opened in the prompt", "answer")),
        ("", (None, "")),
        # gpt-oss harmony channels, with the special tokens and with them stripped
        ("<|channel|>analysis<|message|>Maybe \\boxed{B}.<|end|><|start|>assistant<|channel|>final"
         "<|message|>C<|return|>", ("Maybe \\boxed{B}.", "C")),
        ("<|start|>assistant<|channel|>analysis<|message|>a<|end|><|start|>assistant<|channel|>final<|message|>b",
         ("a", "b")),
        ("analysisWe need B? No.assistantfinalThe answer is C.", ("We need B? No.", "The answer is C.")),
        ("<|channel|>analysis<|message|>cut off", ("cut off", "")),
        ("analysis of the ECG: C", (None, "analysis of the ECG: C")),
    ],
)
def test_split_thinking(text, expected):
    assert split_thinking(text) == expected


def test_server_answers_model_list_without_counting_it(llm_server):
    import urllib.request

    with urllib.request.urlopen(llm_server.base_url + "/models") as response:
        listing = json.load(response)
    assert listing["data"][0]["id"] == "scripted"
    assert llm_server.count() == 0 and len(llm_server.all_requests) == 1


def test_wire_body_is_the_hashed_body(llm_server, tmp_path):
    """What the SDK puts on the wire is exactly the body the cache key hashes: standard fields as
    `create()` arguments, server extras through `extra_body`, nothing added or renamed."""
    from m1data.llm import Cache, complete_all, request_key
    from m1data.llm.params import VLLM_EXTRA_PARAMS, canonical_json, request_body

    chat_request = Request(
        model="m",
        messages=({"role": "system", "content": "Be brief."}, {"role": "user", "content": "Quelle réponse ? A. x"}),
        params={"max_tokens": 64, "temperature": 0.6, "top_p": 0.95, "seed": 7, "stop": ["</s>"],
                "min_tokens": 2, "skip_special_tokens": False, "top_k": 20,
                "chat_template_kwargs": {"enable_thinking": True}},
    )
    plain_request = Request(model="m", prompt="Once upon", params={"max_tokens": 5, "min_p": 0.1, "reasoning_effort": "low"})
    engine = engine_for(llm_server, extra_params=VLLM_EXTRA_PARAMS)
    with Cache(tmp_path / "c.sqlite") as cache:
        complete_all(engine, [chat_request, plain_request], cache, progress=False)
        stored = {key for key in cache.get_many([request_key(engine.endpoint, chat_request),
                                                 request_key(engine.endpoint, plain_request)])}
    received = {r.path: r for r in llm_server.requests}
    for path, request in (("/v1/chat/completions", chat_request), ("/v1/completions", plain_request)):
        sent = received[path]
        assert sent.body == request_body(request)
        assert canonical_json(sent.body) == canonical_json(request_body(request))
        assert request_key(engine.endpoint, request) in stored


def test_base_url_from_openai_base_url(llm_server, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", llm_server.base_url)
    engine = HTTPEngine(HTTPConfig())
    assert engine.endpoint == llm_server.base_url
    assert call(engine, CHAT).status == "ok"
    assert llm_server.count() == 1


def test_openai_api_key_goes_to_openai_only(llm_server, monkeypatch):
    """OPENAI_API_KEY is OpenAI's: a local or other endpoint without a named variable gets no key."""
    from m1data.llm.http import key_variable

    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-SECRET-456")
    monkeypatch.setenv("OPENAI_ORG_ID", "org-private")
    assert key_variable("https://api.openai.com/v1", None) == "OPENAI_API_KEY"
    assert key_variable("https://api.deepseek.com", None) == "DEEPSEEK_API_KEY"  # its own, never OpenAI's
    assert key_variable(llm_server.base_url, "MY_KEY") == "MY_KEY"
    assert call(engine_for(llm_server), CHAT).status == "ok"
    [sent] = llm_server.requests
    assert "authorization" not in sent.headers
    assert not any("org-private" in value or "SECRET" in value for value in sent.headers.values())


def test_every_client_shares_one_tls_context_that_still_verifies(monkeypatch, tmp_path):
    """Clients share the process's TLS context (each would load the CA bundle again, ~20 ms),
    and sharing it must not loosen it: certificates and host names are still checked, and the CA
    file named by SSL_CERT_FILE is the one loaded, as the SDK's HTTP library does by itself."""
    import ssl

    from m1data.llm.http import _tls_context

    _tls_context.cache_clear()
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "missing-ca.pem"))
    with pytest.raises((FileNotFoundError, ssl.SSLError, OSError)):
        _tls_context()  # the variable is honoured: the library tried to load that file
    monkeypatch.delenv("SSL_CERT_FILE")
    _tls_context.cache_clear()
    context = _tls_context()
    assert isinstance(context, ssl.SSLContext) and _tls_context() is context
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


def test_a_403_for_flagged_input_is_that_requests_filtered_outcome(llm_server):
    # OpenRouter's moderation refuses one request this way; the endpoint and key are fine
    llm_server.handler = lambda req: error(403, "Your chosen model requires moderation and your input was flagged")
    got = call(engine_for(llm_server), CHAT)
    assert (got.status, got.retryable, got.fatal) == ("filtered", False, False)
    assert got.error.startswith("http_403: ")
    llm_server.handler = lambda req: error(403, "This key has no access to model m")
    got = call(engine_for(llm_server), CHAT)
    assert (got.status, got.kind, got.fatal) == ("error", "http_403", True)  # a key without access stops the run


def broken_off(finish: str, error: dict | None) -> Response:
    response = chat("Let me think about the bra", finish_reason=finish, prompt_tokens=30, completion_tokens=400)
    if error is not None:
        response.body["error"] = error
    return response


@pytest.mark.parametrize(
    "finish, error_object",
    [("error", {"code": 502, "message": "Upstream provider error mid-generation"}), ("abort", None),
     ("stop", {"message": "upstream failed"})],
    ids=["finish_error", "finish_abort", "error_beside_choices"],
)
def test_a_generation_that_broke_off_is_a_retryable_failure_that_keeps_its_usage(llm_server, finish, error_object):
    llm_server.handler = lambda req: broken_off(finish, error_object)
    got = call(engine_for(llm_server), CHAT)
    assert isinstance(got, Failed) and (got.status, got.kind, got.retryable) == ("error", "api_error", True)
    assert (got.prompt_tokens, got.completion_tokens) == (30, 400)  # billed: counted in cost and the tpm budget


def test_a_refused_200_keeps_the_usage_it_reports(llm_server):
    llm_server.handler = lambda req: chat(None, prompt_tokens=1000, completion_tokens=5000)
    got = call(engine_for(llm_server), CHAT)
    assert (got.kind, got.retryable, got.prompt_tokens, got.completion_tokens) == ("empty_reply", True, 1000, 5000)


def test_thinking_that_stopped_without_an_answer_is_an_outcome_not_a_failure(llm_server):
    """vLLM's reasoning parser returns a thinking block the model never closed (it stopped, not cut
    off) as `reasoning_content` with `content: null`. Inline, the same output is a reply with no
    answer; here it was a retryable failure: the same request paid again on every retry and every
    run, and the stage never complete. It is the request's outcome: no text, the thinking kept."""
    llm_server.handler = lambda req: chat(None, reasoning="Thinking, then stopped.", completion_tokens=5000)
    got = call(engine_for(llm_server), CHAT)
    assert not isinstance(got, Failed)
    assert (got.status, got.text, got.reasoning, got.completion_tokens) == ("ok", "", "Thinking, then stopped.", 5000)
    assert llm_server.count() == 1


@pytest.mark.parametrize("status, shape", [(400, "json"), (401, "text"), (200, "text"), (200, "json error")])
def test_a_key_quoted_where_the_error_is_cut_leaves_none_of_its_characters(llm_server, monkeypatch, status, shape):
    """A server's message is cut (500 characters; 200 of a body that is not JSON). It was cut before
    the key was masked, so a key quoted across the cut kept its first characters (`sk-ZZZZse`) in
    the reply's error, the cache, the dropped rows and the terminal. Every position across the cut."""
    key = "sk-ZZZZsecretZZZZ1234"
    monkeypatch.setenv("M1DATA_TEST_KEY", key)
    engine = engine_for(llm_server, api_key_env="M1DATA_TEST_KEY")
    limit = 200 if shape == "text" and status == 200 else 500
    for offset in range(limit - len(key), limit + 1):
        message = "x" * offset + key

        def quoting(req: Received, message=message) -> Response:
            body = {"error": {"message": message}} if shape != "text" else f"<html>{message[6:]}"
            return Response(status, body)

        llm_server.handler = quoting
        answer = call(engine, CHAT)
        assert answer.status != "ok" and "xxxx" in answer.error
        assert "sk-Z" not in answer.error, (offset, answer.error[-40:])


def test_without_the_openai_package_the_engine_says_which_extra(monkeypatch):
    """A pip install without the llm extra: the default build's first request ended in a
    traceback ("No module named 'openai'") reported as an internal error."""
    import sys

    from m1data.errors import UserError
    from m1data.llm import http

    for name in [n for n in sys.modules if n == "openai" or n.startswith("openai.")] + ["openai"]:
        monkeypatch.setitem(sys.modules, name, None)  # importing it now fails, as where it is not installed
    http._create_arguments.cache_clear()
    try:
        with pytest.raises(UserError, match=r"pip install 'm1data\[llm\]'"):
            HTTPEngine(HTTPConfig(base_url="http://127.0.0.1:9/v1"), require_key=False)
        # and a build says so before its first stage runs (`Stage.missing`)
        from m1data.llm.stages import Endpoint, endpoint_missing

        endpoint = Endpoint("*", "student", "m", "http://127.0.0.1:9/v1", None, None)
        assert "pip install 'm1data[llm]'" in endpoint_missing(endpoint)
    finally:
        http._create_arguments.cache_clear()
