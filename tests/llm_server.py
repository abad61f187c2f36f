"""A scripted OpenAI-compatible server on 127.0.0.1, for tests and benchmarks.

Why a real server and not a mocked client: the parts that break in production are the ones a
mock skips (keep-alive connections dropped mid-reply, a 429 with `Retry-After`, a proxy that
returns half a JSON body, a server slower than the client's timeout). Here the client under test
goes through its real HTTP stack to a real socket.

Why asyncio streams in a background thread: many slow replies (sleeps longer than a client's
timeout) must not block each other, and a hand-rolled HTTP/1.1 loop is fast enough for the
throughput benchmark, which runs this same file as a separate process (`python
tests/llm_server.py`).

Scripting: a handler maps each `Received` request to a `Response`. The helpers below build the
usual ones (`chat`, `completion`, `reply`, `error`, `malformed`, `empty_choices`, `drop`,
`slow`). Every request is recorded, so a test can count what was actually sent (`requests`, `count()` and
`sends_per_body()` cover completion calls; `all_requests` also has e.g. `GET /v1/models`, which
is answered with a one-model list so endpoint checks pass):

    def handler(req: Received) -> Response:
        if req.attempt == 1:
            return error(429, retry_after=0.1)
        return reply(req, "The answer is \\boxed{A}")

    with ScriptedServer(handler) as server:
        ...  # point an engine at server.base_url
        assert server.count() == 2

Pytest: `from llm_server import llm_server` in a test module makes the `llm_server` fixture
available; set `llm_server.handler = ...` inside the test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


@dataclass
class Received:
    """One request as the server saw it. `attempt` counts how often this exact body has been
    received so far (1 for the first time), which makes 'fail, then succeed' scripts one line."""

    method: str
    path: str
    headers: dict[str, str]
    raw: bytes
    body: Any
    attempt: int
    time: float

    @property
    def key(self) -> str:
        """The request body in canonical form: two sends of the same request share it."""
        return canonical(self.body) if self.body is not None else self.raw.decode("utf-8", "replace")

    @property
    def is_chat(self) -> bool:
        return self.path.endswith("/chat/completions")

    @property
    def text(self) -> str:
        """The last user message (chat) or the prompt (completion): what scripts answer."""
        if not isinstance(self.body, dict):
            return ""
        if self.is_chat:
            messages = self.body.get("messages") or []
            users = [m.get("content", "") for m in messages if m.get("role") == "user"]
            return users[-1] if users else ""
        prompt = self.body.get("prompt", "")
        return prompt if isinstance(prompt, str) else ""

    @property
    def model(self) -> str:
        return self.body.get("model", "") if isinstance(self.body, dict) else ""


@dataclass
class Response:
    """What to send back. `body` is JSON-encoded when it is a dict or list, sent verbatim when it
    is str or bytes. `delay` sleeps before answering (to trip client timeouts); `drop` closes the
    connection without any response."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop: bool = False


Handler = Callable[[Received], Response]


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# ---------------------------------------------------------------------------------------------
# Response builders


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def chat(
    content: str | None,
    *,
    reasoning: str | None = None,
    finish_reason: str = "stop",
    prompt_tokens: int = 11,
    completion_tokens: int = 7,
    model: str = "scripted",
    delay: float = 0.0,
) -> Response:
    """A chat completion. `reasoning` goes to `message.reasoning_content`, as DeepSeek sends it."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if reasoning is not None:
        message["reasoning_content"] = reasoning
    body = {
        "id": "chatcmpl-scripted",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": _usage(prompt_tokens, completion_tokens),
    }
    return Response(body=body, delay=delay)


def completion(
    text: str,
    *,
    finish_reason: str = "stop",
    prompt_tokens: int = 11,
    completion_tokens: int = 7,
    model: str = "scripted",
    delay: float = 0.0,
) -> Response:
    """A plain (legacy) completion."""
    body = {
        "id": "cmpl-scripted",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "text": text, "finish_reason": finish_reason, "logprobs": None}],
        "usage": _usage(prompt_tokens, completion_tokens),
    }
    return Response(body=body, delay=delay)


def reply(req: Received, text: str, *, reasoning: str | None = None, **kwargs: Any) -> Response:
    """The right shape for whichever endpoint `req` hit."""
    if req.is_chat:
        return chat(text, reasoning=reasoning, **kwargs)
    return completion(text, **kwargs)


def error(
    status: int, message: str = "scripted error", *, retry_after: float | None = None, code: str | None = None
) -> Response:
    """An OpenAI-style error body; `retry_after` sets the `Retry-After` header (seconds)."""
    headers = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
    body = {"error": {"message": message, "type": "scripted", "code": code}}
    return Response(status=status, body=body, headers=headers)


def malformed() -> Response:
    """A 200 whose body is cut off mid-JSON, as from a misbehaving proxy."""
    return Response(body=b'{"id": "chatcmpl-x", "choices": [{"index": 0, "mess')


def empty_choices() -> Response:
    return Response(body={"id": "chatcmpl-x", "object": "chat.completion", "choices": [], "usage": _usage(3, 0)})


def drop() -> Response:
    """Close the connection without answering."""
    return Response(drop=True)


def slow(seconds: float, inner: Response | None = None) -> Response:
    """Answer `inner` (default: an 'OK' chat reply) only after `seconds`."""
    inner = inner or chat("OK")
    return Response(status=inner.status, body=inner.body, headers=inner.headers, delay=seconds)


def ok_handler(req: Received) -> Response:
    """The default script: a fixed boxed answer, in the shape of the endpoint hit."""
    return reply(req, "The answer is \\boxed{A}.")


def try_number(req: Received, base_seed: int | None = None) -> int:
    """Which try at its question `req` is. With a `base_seed`, from the body's seed (a stage's try
    k sends `base_seed + k - 1`), so the answer depends on the request alone and not on what this
    server happened to receive before (a resumed run, a second server); else how often this exact
    body has been received."""
    if base_seed is not None and isinstance(req.body, dict) and isinstance(req.body.get("seed"), int):
        return req.body["seed"] - base_seed + 1
    return req.attempt


def tries_teacher(
    right_letter: Callable[[str], str],
    right_at: Callable[[str], int | None],
    *,
    base_seed: int | None = None,
    failure: str = "wrong",
    tokens: Callable[[str, int], int] | None = None,
    delay: float = 0.0,
) -> Handler:
    """A teacher that answers a question right only at try `right_at(text)` (None: never) and,
    before that, fails the way `failure` says: "wrong" (another letter), "truncated"
    (finish_reason length, the thinking never closed) or "no_answer". `right_letter(text)` is the
    question's right letter (text: the user message); `tokens(text, try)` the completion tokens
    a reply reports (default 100)."""

    def handler(req: Received) -> Response:
        text = req.text
        attempt = try_number(req, base_seed)
        right = right_letter(text)
        used = tokens(text, attempt) if tokens else 100
        target = right_at(text)
        if target is not None and attempt >= target:
            return chat(f"\\boxed{{{right}}}", reasoning=f"try {attempt}: so {right}.", completion_tokens=used,
                        delay=delay)
        if failure == "truncated":
            return chat("<think>\nOn and on", finish_reason="length", completion_tokens=used, delay=delay)
        if failure == "no_answer":
            return chat("I cannot tell.", reasoning="Hmm.", completion_tokens=used, delay=delay)
        wrong = "B" if right == "A" else "A"
        return chat(f"\\boxed{{{wrong}}}", reasoning=f"try {attempt}: so {wrong}.", completion_tokens=used,
                    delay=delay)

    return handler


# ---------------------------------------------------------------------------------------------
# The server


class ScriptedServer:
    """A real HTTP/1.1 server on 127.0.0.1 in a background thread. Start/stop it as a context
    manager. `handler` may be replaced at any time (e.g. between the two halves of a test)."""

    def __init__(self, handler: Handler | None = None, *, port: int = 0, record: bool = True):
        self.handler: Handler = handler or ok_handler
        self.record = record
        self._port = port
        self._received: list[Received] = []
        self._seen: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._writers: set[asyncio.StreamWriter] = set()
        self.handler_errors: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.owned_by = "scripted"  # what GET /v1/models says owns its model ("llamacpp" plays llama.cpp's server)

    # -- lifecycle --------------------------------------------------------------------------

    def __enter__(self) -> ScriptedServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._serve_forever, name="scripted-llm-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("scripted server did not start")

    def stop(self) -> None:
        if self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop = None

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}/v1"

    # -- what was received ------------------------------------------------------------------

    @property
    def requests(self) -> list[Received]:
        """Completion calls received (POST .../completions), in arrival order."""
        with self._lock:
            return [r for r in self._received if _is_completion(r.method, r.path)]

    @property
    def all_requests(self) -> list[Received]:
        """Everything received, including e.g. `GET /v1/models` from an endpoint check."""
        with self._lock:
            return list(self._received)

    def count(self, path_suffix: str = "completions") -> int:
        """Completion calls received (by default); pass a path suffix to count something else."""
        with self._lock:
            return sum(1 for r in self._received if r.path.endswith(path_suffix) and r.method == "POST")

    def sends_per_body(self) -> Counter[str]:
        """How many times each distinct completion request body arrived."""
        with self._lock:
            return Counter(self._seen)

    def wait_for_dead_clients(self, timeout: float = 10) -> None:
        """Wait until the server holds no client connection. After its clients are killed, a
        request they wrote just before dying may still sit in a socket buffer: it was sent, but is
        counted only once read. Call this before counting what a killed client sent."""
        deadline = time.monotonic() + timeout
        while self._writers:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self._writers)} client connections still open after {timeout} s")
            time.sleep(0.005)

    def reset(self) -> None:
        """Forget what was received (and the attempt counts); keep the handler."""
        with self._lock:
            self._received.clear()
            self._seen.clear()
        self.max_in_flight = 0

    # -- internals --------------------------------------------------------------------------

    def _serve_forever(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        self._server = loop.run_until_complete(
            asyncio.start_server(self._connection, "127.0.0.1", self._port, backlog=1024)
        )
        self._port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

    def _admit(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> Received:
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        key = canonical(body) if body is not None else raw.decode("utf-8", "replace")
        with self._lock:
            if _is_completion(method, path):
                self._seen[key] += 1
            received = Received(method, path, headers, raw, body, self._seen[key], time.time())
            if self.record:
                self._received.append(received)
        return received

    def _respond(self, received: Received) -> Response:
        if received.method == "GET" and received.path.endswith("/models"):
            return Response(body={"object": "list", "data": [{"id": "scripted", "object": "model",
                                                              "owned_by": self.owned_by}]})
        if not _is_completion(received.method, received.path):
            return error(404, f"no route {received.method} {received.path}")
        if received.body is None:
            return error(400, "request body is not JSON")
        try:
            return self.handler(received)
        except Exception as exc:  # a broken script must be visible, not a hang
            self.handler_errors.append(repr(exc))
            return error(500, f"handler raised {exc!r}")

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, path, _version = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0"))
                raw = await reader.readexactly(length) if length else b""
                received = self._admit(method, path, headers, raw)
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
                try:
                    response = self._respond(received)
                    if response.delay:
                        await asyncio.sleep(response.delay)
                    if response.drop:
                        writer.transport.abort()
                        return
                    writer.write(_encode(response))
                    await writer.drain()
                finally:
                    self.in_flight -= 1
                if headers.get("connection", "").lower() == "close":
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        except asyncio.CancelledError:  # the server is stopping with this request held: end quietly
            return  # (re-raised, Python 3.11's stream callback prints it as an error for each one)
        finally:
            self._writers.discard(writer)
            writer.close()


def _is_completion(method: str, path: str) -> bool:
    return method == "POST" and path.endswith(("/chat/completions", "/completions"))


def _encode(response: Response) -> bytes:
    body = response.body
    if isinstance(body, (dict, list)):
        payload = json.dumps(body).encode()
    elif isinstance(body, str):
        payload = body.encode()
    elif body is None:
        payload = b""
    else:
        payload = bytes(body)
    head = [
        f"HTTP/1.1 {response.status} {REASONS.get(response.status, 'Status')}",
        "Content-Type: application/json",
        f"Content-Length: {len(payload)}",
    ]
    head += [f"{k}: {v}" for k, v in response.headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload


@pytest.fixture
def llm_server():
    """A running ScriptedServer with the default boxed-A script; set `.handler` to rescript."""
    with ScriptedServer() as server:
        yield server


def sigint_as_at_a_terminal() -> None:
    """``preexec_fn`` for a child a test interrupts with SIGINT: Ctrl-C handled as at a terminal.
    Why: a shell starts a background job (a CI run under nohup is one) with SIGINT ignored, and a
    child inherits an ignored or blocked signal; the suite with the oldest admitted versions, run
    so, failed both interrupt tests twice (the job ran to its end, the command never stopped),
    and passed run in the foreground."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def main() -> None:
    """Serve the default script until killed; prints `PORT <n>` once listening (benchmarks)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--record", action="store_true", help="keep every request in memory")
    args = parser.parse_args()
    server = ScriptedServer(port=args.port, record=args.record)
    server.start()
    print(f"PORT {server.port}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
