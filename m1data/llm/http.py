"""The default engine: any OpenAI-compatible server (vLLM, sglang, DeepSeek, OpenAI, ...), called
through the official `openai` SDK.

Why the SDK: it is the client users know (typed errors, `OPENAI_BASE_URL`, `extra_body`) and the
one providers test against. It is used with its own retries off (`max_retries=0`): retries, rate
limits and the cache are the runner's job, and the runner must see every 429 and its
`Retry-After`. The streaming-response API (`with_streaming_response`, with `stream` unset, so the
reply is one JSON document) hands over the status, the headers and the body bytes, which lets the
body be read under a size cap instead of held whole, however large.

The body on the wire is exactly `params.request_body(request)`, which is also what the cache key
hashes: the fields the SDK's `create()` names go as arguments, every other field (vLLM's
`min_tokens`, `skip_special_tokens`, ...) as `extra_body`, and nothing is added or renamed (a test
compares the bytes a server received with the hashed body).

Replies are read here, not through the SDK's pydantic models: those accept any shape silently,
while a reply without a message, with `content: null` or with unreadable `usage` must be told
apart from an answer. (`content: null` beside reasoning is the model's own output, a thinking
block it never closed, split off by the server's reasoning parser: a reply with no answer.)
`reasoning_content` (DeepSeek, vLLM's reasoning parser) is one of the message's fields beyond
OpenAI's schema; `<think>...</think>` or gpt-oss's harmony channels inline are split by
`split_thinking`.

One call, one attempt. A call that gives no usable answer returns a `limits.Failed` reply saying
whether a retry makes sense.
Every reply, a 429's too, carries the rate-limit budgets its headers state (`x-ratelimit-*`,
`anthropic-ratelimit-*`, `X-RateLimit-*`, `RateLimit-*`: limits.RATE_HEADER_STYLES;
`Reply.stated_limits`): the runner paces by them before the provider has to refuse anything.

Secrets: the API key is read from the environment variable named in the config (`api_key_env`),
or from `OPENAI_API_KEY` when the endpoint is OpenAI's own and no variable is named; never from
anywhere else, and no other endpoint ever gets `OPENAI_API_KEY`. It is kept in a private
attribute, sent only as the Authorization header, never shown by repr or the config, and masked
out of anything a server sends back (an error body that echoes the header) before it is returned,
so it cannot reach the cache, the dropped rows or the terminal. A base_url with `user:password@`
in it is refused (m1data.redact.refuse_userinfo; any '@' counts): the SDK would send it as Basic auth. So is
one with a query string (refuse_query: a key there would be recorded wherever the URL is), and a
base_url the SDK cannot call (check_base_url): a bad port, no host, no http(s) scheme.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import os
import sys
from dataclasses import dataclass
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from m1data.errors import M1DataError, UserError
from m1data.llm.cache import is_this_machine
from m1data.llm.limits import Failed, StatedLimits, failure, http_failure, parse_rate_headers
from m1data.llm.params import OPENAI_PARAMS, check_params, request_body
from m1data.llm.thinking import split_thinking
from m1data.llm.types import Reply, Request
from m1data.redact import mask_in_name, mask_secret, refuse_endpoint_secrets, shown_variable, strip_userinfo

OPENAI_BASE_URL = "https://api.openai.com/v1"
_FILTER_MARKERS = ("content_filter", "content_policy", "content management policy", "safety")
# A 403 that says the input was flagged is a moderation verdict on that one request (OpenRouter:
# "Your chosen model requires moderation and your input was flagged"), not a key without access.
_MODERATION_MARKERS = (*_FILTER_MARKERS, "flagged")


class MissingAPIKey(M1DataError, RuntimeError):
    pass


class BadAPIKey(UserError):
    """The key variable holds something no HTTP header can carry."""


def api_key_from(variable: str) -> str | None:
    """The key in the environment variable `variable`, without surrounding whitespace; None when
    it is unset or blank.

    Why strip rather than refuse: a key pasted with a newline (`export KEY="sk-...\n"`, a key file
    read with `$(cat key.txt)` and a trailing newline) is the common case, the intent is plain, and
    HTTP itself drops whitespace around a header's value (RFC 9110, 5.5), so no server could ever
    have been meant to get it; `huggingface_hub` strips HF_TOKEN alike. Left in, the HTTP library
    refused the header on every request, which was recorded as a transient connection failure and
    retried on every rerun without the user being told. Whitespace, a control or a non-ASCII
    character *inside* the key is refused (BadAPIKey, naming the variable, never the value): no
    key has one, so the value is something else (two things pasted together), and no header can
    carry it either."""
    value = (os.environ.get(variable) or "").strip()
    if any(not ("!" <= char <= "~") for char in value):
        raise BadAPIKey(
            f"environment variable {shown_variable(variable)} holds whitespace, a control character or a non-ASCII "
            "character inside its value (not shown), which no API key has and no HTTP header can carry: set it to "
            "the key alone"
        )
    return value or None


def sdk_client(asynchronous: bool, **settings: Any) -> Any:
    """An `openai.AsyncOpenAI` (or `openai.OpenAI`) whose HTTP client shares this process's TLS
    context (`_tls_context`); `settings` are the SDK client's own arguments.

    A server on this machine (`on_this_machine`) is reached directly, whatever HTTP(S)_PROXY or
    ALL_PROXY say: a proxy is another machine, whose loopback holds no server of ours. Where a
    machine sets a proxy for everything (as many company and university networks do) and no
    NO_PROXY for localhost, every request to the embedded model or a local vLLM went to the proxy,
    and the main job stopped at its first model call. Other hosts keep the environment's proxy."""
    import openai

    http = openai.DefaultAsyncHttpxClient if asynchronous else openai.DefaultHttpxClient
    client = openai.AsyncOpenAI if asynchronous else openai.OpenAI
    direct = on_this_machine(str(settings.get("base_url") or ""))
    return client(http_client=http(verify=_tls_context(), trust_env=not direct), **settings)


def on_this_machine(url: str) -> bool:
    """Whether `url`'s host is this machine (`is_this_machine`: localhost or a loopback address).
    Private-network addresses are not: a proxy may well be the way to them."""
    return is_this_machine(urlsplit(url).hostname or "")


@functools.cache
def _tls_context() -> Any:
    """One TLS context for every client of this process, made by the SDK's own HTTP library, so
    its rules for CA certificates (SSL_CERT_FILE, ...) hold as they would. Why: each client
    otherwise loads the CA bundle again, about 20 ms, and a run makes one per engine and event
    loop and one per endpoint check (the test suite made 450 of them: 9 s). True (the library
    builds its own, per client) where the library has no `create_ssl_context`."""
    import openai

    library = sys.modules[openai.DefaultHttpxClient.__mro__[1].__module__.partition(".")[0]]
    return library.create_ssl_context() if hasattr(library, "create_ssl_context") else True


@dataclass
class HTTPConfig:
    """One endpoint. `base_url` ends where `/chat/completions` would be appended (usually `.../v1`);
    None takes `OPENAI_BASE_URL` from the environment, else OpenAI's API. `api_key_env` names the
    environment variable holding the key; None sends no key, except to OpenAI's own API, which
    gets `OPENAI_API_KEY`. `extra_params` admits server-specific parameters (see
    params.VLLM_EXTRA_PARAMS). `timeout` bounds one attempt, in seconds: reasoning models may
    think for minutes. `max_reply_bytes` caps one reply's body: a larger one is an error outcome,
    not held in memory. `cache_namespace` keys the reply cache (m1data.llm.cache); None: the
    host of a remote API, the model name on a local server. `require_usage`: a reply that reports
    no token counts stops the run (`infer`'s thinking budget counts the model's own tokens, and
    counted here they are tiktoken's, not the model's)."""

    base_url: str | None = None
    api_key_env: str | None = None
    timeout: float = 600.0
    extra_params: tuple[str, ...] = ()
    max_reply_bytes: int = 16 * 2**20
    cache_namespace: str | None = None
    require_usage: bool = False


def resolve_base_url(base_url: str | None) -> str:
    """The configured URL, else `OPENAI_BASE_URL`, else OpenAI's API; without a trailing slash or
    surrounding white space (a URL pasted with a space passed the check, which reads past it, and
    every request then failed as "UnsupportedProtocol")."""
    return (base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_BASE_URL).strip().rstrip("/")


def check_base_url(url: str, what: str = "base_url") -> None:
    """Stop, in one line (UserError, exit code 2), when `url` is not one the SDK can call:
    credentials in it (m1data.redact.refuse_userinfo), a query string (refuse_query), a scheme
    other than http(s), no host, or a port that is not a number. Why before the client is built: the SDK's HTTP library refuses
    such a URL there with its own InvalidURL, which is no ValueError and reached the user as an
    internal error with a traceback, quoting the 'port' (part of the password, when the password
    holds a '/')."""
    refuse_endpoint_secrets(url, what)  # first: what follows may show the URL
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        problem = "does not start with http:// or https://"
    elif not parts.hostname:
        problem = "names no host"
    elif parts.path.rstrip("/").endswith("/completions"):  # the whole endpoint, pasted from a provider's docs
        problem = ("ends in the path each request adds (/chat/completions or /completions), so requests would go to "
                   ".../completions/chat/completions: give the URL up to there, as http://127.0.0.1:8000/v1")
    else:
        try:
            parts.port
            problem = None
        except ValueError:
            problem = "has a port that is not a number from 0 to 65535"
    if problem:
        raise UserError(f"{what} {url} {problem}")


def is_openai(base_url: str) -> bool:
    return (urlsplit(base_url).hostname or "").lower() == "api.openai.com"


# The key variable of a provider's own API when none is named: the one its SDK reads, and the one
# the stage configs default to (MeshConfig: OPENAI_API_KEY, TracesConfig: DEEPSEEK_API_KEY), so
# `m1data run traces --base-url https://api.deepseek.com` without --api-key-env sends the key a
# build's config would (it sent none: every request refused, or a raw connection error offline).
PROVIDER_KEYS = {"api.openai.com": "OPENAI_API_KEY", "api.deepseek.com": "DEEPSEEK_API_KEY"}


def key_variable(base_url: str, api_key_env: str | None) -> str | None:
    """The environment variable the key comes from: the named one, else the provider's own
    (`PROVIDER_KEYS`); None for any other server."""
    if api_key_env:
        return api_key_env
    return PROVIDER_KEYS.get((urlsplit(base_url).hostname or "").lower())


@functools.cache
def _create_arguments(kind: str) -> frozenset[str]:
    """The body fields the SDK's `create()` takes by name (the rest go as `extra_body`)."""
    from openai.resources.chat.completions import AsyncCompletions as Chat
    from openai.resources.completions import AsyncCompletions as Plain

    create = Chat.create if kind == "chat" else Plain.create
    return frozenset(name for name in inspect.signature(create).parameters if not name.startswith(("extra_", "self")))


class ReplyTooLarge(Exception):
    pass


class HTTPEngine:
    """Engine for one OpenAI-compatible endpoint; the model is named per request.

    SDK clients hold connections bound to one event loop: the engine keeps one client per loop
    (each `asyncio.run` gets a fresh one); `aclose()` releases it and leaves the engine usable."""

    def __init__(self, config: HTTPConfig, *, require_key: bool = True):
        self.config = config
        self._base_url = resolve_base_url(config.base_url)
        check_base_url(self._base_url)  # a password there would travel as Basic auth (m1data.redact)
        self.endpoint = strip_userinfo(self._base_url)  # what logs, errors, plans and the cache see
        self.name = f"http:{self.endpoint}"
        self.cache_namespace = config.cache_namespace
        self.allowed_params = OPENAI_PARAMS | frozenset(config.extra_params)
        self.key_env = key_variable(self.endpoint, config.api_key_env)
        self._openai = is_openai(self.endpoint)
        self._api_key = api_key_from(self.key_env) if self.key_env else None
        if self.key_env and not self._api_key and require_key:
            raise MissingAPIKey(
                f"environment variable {shown_variable(self.key_env)} is not set (the API key for {self.endpoint})"
            )
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Import the SDK's resources now, not inside the first call: that import takes a good
        # fraction of a second, which would otherwise land between a rate-limit booking and the send.
        try:
            _create_arguments("chat")
            _create_arguments("completion")
        except ModuleNotFoundError as err:  # a pip install without the llm extra: one line, not a traceback
            if (err.name or "").partition(".")[0] != "openai":
                raise
            raise UserError("asking a model server needs the openai package: pip install 'm1data[llm]'") from None

    def __getstate__(self) -> dict[str, Any]:
        """The engine without its key (and without the client, bound to this process's event
        loop): a pickled engine (one handed to a stage that Ray sends to its workers) must not
        carry the key into the object store or over the network; the copy reads it again from
        its own environment (`__setstate__`), as an engine built there would."""
        return {**self.__dict__, "_api_key": None, "_client": None, "_loop": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._api_key = api_key_from(self.key_env) if self.key_env else None

    def __repr__(self) -> str:
        shown = None if self.key_env is None else shown_variable(self.key_env)
        return f"HTTPEngine(base_url={self.endpoint!r}, api_key_env={shown!r})"

    def validate(self, request: Request) -> None:
        check_params(request.params, self.allowed_params, f"endpoint {self.endpoint}")

    def mask(self, text: str | None) -> str | None:
        return mask_secret(text, self._api_key)

    def mask_text(self, text: str) -> str:
        """`mask` for a text that is there: what `parse_reply` runs before it cuts a server's message."""
        return mask_secret(text, self._api_key) or ""

    # -- the SDK client -----------------------------------------------------------------------

    def client(self) -> Any:
        """The `openai.AsyncOpenAI` for the running event loop."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._client = self._new_client()
            self._loop = loop
        return self._client

    async def open(self) -> None:
        """Build the client before the first call (the runner calls this before any rate-limit
        booking): creating it, TLS context included, takes a noticeable fraction of a second."""
        self.client()

    def _client_settings(self) -> dict[str, Any]:
        return {
            "api_key": self._api_key or "no-key",  # placeholder; the header is omitted per request (sdk_headers)
            "organization": None if self._openai else "",  # OPENAI_ORG_ID / _PROJECT_ID go to OpenAI only
            "project": None if self._openai else "",
            "base_url": self._base_url,
            "max_retries": 0,
            "timeout": self.config.timeout,
        }

    def sync_client(self) -> Any:
        """A blocking `openai.OpenAI` with this engine's endpoint and key (the Batch API's files
        and batches calls); pass `sdk_headers()` with each call."""
        return sdk_client(asynchronous=False, **self._client_settings())

    def _new_client(self) -> Any:
        return sdk_client(asynchronous=True, **self._client_settings())

    def sdk_headers(self) -> dict[str, Any]:
        """Per-call headers: no Authorization without a key, no OpenAI org/project elsewhere."""
        from openai import Omit

        headers: dict[str, Any] = {} if self._openai else {"OpenAI-Organization": Omit(), "OpenAI-Project": Omit()}
        if not self._api_key:
            headers["Authorization"] = Omit()
        return headers

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._loop is asyncio.get_running_loop():
            await client.close()
        self._loop = None

    # -- one call -------------------------------------------------------------------------------

    async def complete(self, request: Request) -> Reply:
        if self.key_env and not self._api_key:
            return failure("missing_key", f"environment variable {shown_variable(self.key_env)} is not set", fatal=True)
        try:
            raw, stated = await asyncio.wait_for(self._post(request), self.config.timeout)
        except asyncio.TimeoutError:
            return failure("timeout", f"no complete reply within {self.config.timeout:g}s", retryable=True)
        except ReplyTooLarge as exc:
            return failure("too_large", str(exc))
        except Exception as exc:  # noqa: BLE001  (the SDK's errors, mapped below)
            return self._failure(exc)
        reply = self._masked(parse_reply(raw, request, mask=self.mask_text))
        if self.config.require_usage and not isinstance(reply, Failed) and not _reports_usage(raw):
            return failure("no_usage", "the server reports no token usage, and this run counts the model's own "
                           "tokens (a thinking budget): use a server that does (vLLM and llama.cpp do)", fatal=True)
        reply.stated_limits = stated
        return reply

    async def _post(self, request: Request) -> tuple[bytes, StatedLimits | None]:
        """The body of a 200, and the rate-limit budgets its headers state (the rest of the
        headers are not needed)."""
        client = self.client()
        body = request_body(request)
        kind = request.kind
        named = _create_arguments(kind)
        arguments = {k: v for k, v in body.items() if k in named}
        extra = {k: v for k, v in body.items() if k not in named}
        resource = client.chat.completions if kind == "chat" else client.completions
        create = resource.with_streaming_response.create
        async with create(**arguments, extra_body=extra or None, extra_headers=self.sdk_headers()) as response:
            return await _read_capped(response, self.config.max_reply_bytes), parse_rate_headers(response.headers)

    def _failure(self, exc: Exception) -> Failed:
        import openai

        if isinstance(exc, openai.APIStatusError):
            body = _error_body(exc)
            reply = self._masked(_error_reply(exc.status_code, body, dict(exc.response.headers), mask=self.mask_text))
            reply.stated_limits = parse_rate_headers(exc.response.headers)
            return reply
        if isinstance(exc, openai.APITimeoutError):
            return failure("timeout", f"no complete reply within {self.config.timeout:g}s", retryable=True)
        if isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__ or exc
            name = type(cause).__name__
            detail = self.mask(f"{name}: {cause}" if str(cause) else name) or name
            if name in ("InvalidURL", "UnsupportedProtocol", "LocalProtocolError") and "URL" in detail + name:
                return failure("invalid_url", detail, fatal=True)
            return failure("connection", detail, retryable=True)
        # anything else is unexpected: transient, never an answer
        return failure("exception", self.mask(f"{type(exc).__name__}: {exc}") or "", retryable=True)

    def _masked(self, reply: Reply) -> Reply:
        """`reply` with the key masked out of every string the server chose, whatever the key's
        length (`mask_secret`: a key of 4 to 7 characters only where it stands as a whole token).

        The served model name goes to the cache, the rows (`teacher_served_model`), the manifest's
        `served_models` and the card, and a name is an identifier, not prose: a key is masked
        anywhere inside it (`mask_in_name`; `served-k3Y9zQ` -> `served-***`). The answer and its
        reasoning are the rows' text: a short key is masked there only as a whole token, as in an
        error line, so no word the model wrote that merely contains the key is cut (a key `k3y9`
        leaves `k3y9Zeta`)."""
        reply.error = self.mask(reply.error)
        if self._api_key:
            reply.text = self.mask(reply.text) or ""
            reply.reasoning = self.mask(reply.reasoning)
            reply.model = self.mask(mask_in_name(reply.model, self._api_key))
        return reply


async def _read_capped(response: Any, cap: int) -> bytes:
    """The body, refusing (ReplyTooLarge) to hold more than `cap` bytes."""
    declared = response.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > cap:
        raise ReplyTooLarge(f"reply of {int(declared):,} bytes is over the {cap:,}-byte cap")
    chunks = []
    size = 0
    async for chunk in response.iter_bytes():
        size += len(chunk)
        if size > cap:
            raise ReplyTooLarge(f"reply is over the {cap:,}-byte cap")
        chunks.append(chunk)
    return b"".join(chunks)


def _error_body(exc: Any) -> bytes:
    try:
        return exc.response.content
    except Exception:  # noqa: BLE001  (a body not read: use what the SDK parsed)
        return json.dumps(exc.body, default=str).encode() if exc.body is not None else str(exc).encode()


def _as_is(text: str) -> str:
    return text


MAX_ERROR_CHARS = 500  # of a server's message kept in a reply's error (and so the cache and the dropped rows)


def _cut(text: str, mask: Callable[[str], str], limit: int = MAX_ERROR_CHARS) -> str:
    """`text` masked (`mask`: the engine's key out), then cut to `limit` characters. Why in that
    order: a cut through the middle of a key leaves its first characters, which no mask
    recognises as the key, in the error that the cache, the dropped rows and the terminal show."""
    return mask(text)[:limit]


def _error_message(body: bytes, mask: Callable[[str], str] = _as_is) -> str:
    try:
        data = json.loads(body)
        error = data.get("error", data) if isinstance(data, dict) else data
        message = error.get("message") if isinstance(error, dict) else error
        return _cut(str(message or data), mask)
    except ValueError:
        return _cut(body.decode("utf-8", "replace"), mask)


def _out_of_credit(body: bytes) -> bool:
    """OpenAI's answer to an account with no credit left: a 429 whose error code (or type) is
    "insufficient_quota", no rate limit to wait out."""
    try:
        data = json.loads(body)
    except ValueError:
        return False
    error = data.get("error") if isinstance(data, dict) else None
    return isinstance(error, dict) and "insufficient_quota" in (error.get("code"), error.get("type"))


def _error_reply(status: int, body: bytes, headers: dict[str, str], mask: Callable[[str], str] = _as_is) -> Failed:
    """A non-200 answer. A content filter's 400, and a 403 whose input was flagged by moderation,
    are that request's `filtered` outcome: recorded, never a reason to stop the run (every rerun
    would stop at the same row and pay again for the replies in flight). Any other 403 stays fatal.
    `mask` runs before the server's message is cut (`_cut`)."""
    message = _error_message(body, mask)
    markers = {400: _FILTER_MARKERS, 403: _MODERATION_MARKERS}.get(status, ())
    if any(marker in message.lower() for marker in markers):
        return Failed(
            status="filtered", finish_reason="content_filter", error=f"http_{status}: {message}", kind="filtered"
        )
    return http_failure(status, message, headers, out_of_credit=status == 429 and _out_of_credit(body))


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _usage(data: dict[str, Any], request: Request | None, text: str, reasoning: str | None) -> tuple[int, int]:
    """The server's token counts; when `usage` is absent or unreadable, counted here (tiktoken),
    so a good answer is kept and its cost still estimated."""
    usage = data.get("usage")
    if isinstance(usage, dict):
        prompt, completion = _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens"))
        if prompt is not None and completion is not None:
            return prompt, completion
    if request is None:
        return 0, 0
    from m1data.llm.cost import count_tokens, prompt_tokens

    return prompt_tokens(request), count_tokens((reasoning or "") + text, request.model)


# finish reasons that say the generation broke off (OpenRouter's "error" when the upstream
# provider failed mid-answer, vLLM's "abort"): the text is a fragment, not an answer
_BROKEN_FINISH = ("error", "abort")


def _reports_usage(raw: bytes) -> bool:
    """Whether a 200 body states both token counts (`usage`), which `_usage` otherwise estimates."""
    usage = json.loads(raw).get("usage")
    return isinstance(usage, dict) and None not in (_count(usage.get("prompt_tokens")),
                                                   _count(usage.get("completion_tokens")))


def _billed(data: dict[str, Any]) -> tuple[int, int]:
    """The token counts a 200 body reports, 0 when it reports none: what the provider bills for
    a reply that is still refused here (null content, a broken-off generation), so the run's
    cost, token counts and tpm budget count it (the retry is billed again)."""
    usage = data.get("usage")
    if not isinstance(usage, dict):
        return 0, 0
    return _count(usage.get("prompt_tokens")) or 0, _count(usage.get("completion_tokens")) or 0


def parse_reply(raw: bytes, request: Request | str, mask: Callable[[str], str] = _as_is) -> Reply:
    """Turn a 200 body into a Reply. Unreadable bodies, empty `choices`, a choice without a
    message, a `null` answer and a generation that broke off (finish_reason `error`/`abort`, or
    an `error` object in the body) are retryable failures (proxies, overloaded servers and
    routers produce them all); they are not answers, and keep the usage the body reports.
    `request` may be just the kind ("chat"/"completion"). `mask` runs on the part of a body or a
    message that an error quotes, before it is cut (`_cut`)."""
    kind = request if isinstance(request, str) else request.kind
    req = None if isinstance(request, str) else request
    try:
        data = json.loads(raw)
    except ValueError:
        shown = _cut(raw.decode("utf-8", "replace"), mask, 200)
        return failure("bad_response", f"body is not JSON: {shown!r}", retryable=True)
    if not isinstance(data, dict):
        shown = _cut(raw.decode("utf-8", "replace"), mask, 200)
        return failure("bad_response", f"body is not a JSON object: {shown!r}", retryable=True)

    def refused(kind: str, detail: str) -> Failed:
        reply = failure(kind, detail, retryable=True)
        reply.prompt_tokens, reply.completion_tokens = _billed(data)
        return reply

    choices = data.get("choices")
    if not choices or not isinstance(choices, list) or not isinstance(choices[0], dict):
        if data.get("error"):
            return refused("api_error", _error_message(raw, mask))
        return refused("bad_response", "reply has no choices")
    choice = choices[0]
    finish = choice.get("finish_reason")
    finish = finish if isinstance(finish, str) else None
    if data.get("error") or finish in _BROKEN_FINISH:
        detail = _error_message(raw, mask) if data.get("error") else "no error message"
        return refused("api_error", f"the generation broke off (finish_reason {finish!r}): {detail}")
    if kind == "chat":
        message = choice.get("message")
        if not isinstance(message, dict):
            return refused("bad_response", "reply has no message")
        content = message.get("content")
        reasoning = message.get("reasoning_content") or message.get("reasoning")  # beyond OpenAI's schema
        reasoning = reasoning if isinstance(reasoning, str) else None
        if message.get("refusal") and not content:
            prompt, completion = _billed(data)
            return Failed(
                status="filtered", finish_reason=finish, error=_cut(f"refusal: {message['refusal']}", mask), kind="filtered",
                prompt_tokens=prompt, completion_tokens=completion,
            )
    else:
        content = choice.get("text")
        reasoning = None
    if content is None and finish not in ("length", "content_filter"):
        if not (reasoning or "").strip():
            return refused("empty_reply", f"the reply's content is null (finish_reason {finish!r})")
        # The model thought and stopped without an answer (a reasoning parser's shape of a thinking
        # block never closed): the request's outcome, as the same reply inline is, not a glitch to
        # send again at full price; the stage judges it (no answer) and may try anew.
        content = ""
    if not isinstance(content, (str, type(None))):
        return refused("bad_response", f"the reply's content is not text: {type(content).__name__}")
    content = content or ""
    if reasoning is None and kind == "chat":  # plain completions come back verbatim
        reasoning, text = split_thinking(content)
    else:
        text = content
    status = {"length": "length", "content_filter": "filtered"}.get(finish or "", "ok")
    prompt_tokens, completion_tokens = _usage(data, req, text, reasoning)
    served = data.get("model")
    return Reply(
        text=text,
        reasoning=reasoning,
        finish_reason=finish,
        status=status,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        model=served if isinstance(served, str) and served else None,
    )


__all__ = [
    "OPENAI_BASE_URL",
    "BadAPIKey",
    "HTTPConfig",
    "HTTPEngine",
    "MissingAPIKey",
    "api_key_from",
    "check_base_url",
    "ReplyTooLarge",
    "is_openai",
    "key_variable",
    "mask_secret",
    "parse_reply",
    "resolve_base_url",
]
