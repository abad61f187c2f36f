"""Generation parameters: what each engine accepts, and the request body that goes on the wire.

Why validate at all: the reference stack passed `temp` instead of `temperature`; the server
ignored the unknown key and the run silently sampled at the default temperature. Here an unknown
key is an error raised before any call is made, with the nearest known name as a hint.

Why the body lives here: the cache key hashes exactly the body the HTTP engine sends, so both
build it with `request_body` and cannot drift apart.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Collection, Mapping
from numbers import Real
from typing import Any

from m1data.errors import M1DataError, UserError
from m1data.llm.types import Request

# What OpenAI's chat/completions API accepts and m1data can use (one choice, no tools, no stream).
OPENAI_PARAMS = frozenset(
    {
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "stop",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "response_format",
        "reasoning_effort",
    }
)

# Sampling extras that vLLM and sglang servers accept; opt in per endpoint
# (`HTTPConfig(extra_params=VLLM_EXTRA_PARAMS)`), since a hosted API would ignore them silently.
VLLM_EXTRA_PARAMS = (
    "top_k",
    "min_p",
    "repetition_penalty",
    "min_tokens",
    "stop_token_ids",
    "skip_special_tokens",
    "include_stop_str_in_output",
    "ignore_eos",
    "chat_template_kwargs",
)

# What a llama.cpp server (`llama-server`) accepts beyond OpenAI's set: its sampling extras, a
# GBNF `grammar` or `json_schema` that constrains the output, and `chat_template_kwargs` for a
# Jinja chat template. The embedded model's engine allows these (m1data.llm.embedded).
LLAMACPP_EXTRA_PARAMS = (
    "top_k",
    "min_p",
    "repeat_penalty",
    "repeat_last_n",
    "grammar",
    "json_schema",
    "chat_template_kwargs",
    "cache_prompt",
)


class InvalidParams(M1DataError, ValueError):
    """A request carries a parameter its engine does not accept, or a value of the wrong kind."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _check_value(key: str, value: Any) -> str | None:
    """Why `value` is not acceptable for `key`, or None. Only keys with an obvious type."""
    if key in ("max_tokens", "max_completion_tokens") and not (_is_int(value) and value > 0):
        return "a positive integer"
    if key == "min_tokens" and not (_is_int(value) and value >= 0):
        return "an integer >= 0"
    if key == "top_k" and not (_is_int(value) and (value > 0 or value == -1)):
        return "a positive integer (or -1 for no limit)"
    if key == "temperature" and not (_is_number(value) and value >= 0):
        return "a number >= 0"
    if key in ("top_p", "min_p") and not (_is_number(value) and 0 <= value <= 1):
        return "a number in [0, 1]"
    if key == "seed" and not _is_int(value):
        return "an integer"
    if key == "stop" and not (
        isinstance(value, str) or (isinstance(value, (list, tuple)) and all(isinstance(s, str) for s in value))
    ):
        return "a string or a list of strings"
    if key == "stop_token_ids" and not (isinstance(value, (list, tuple)) and all(_is_int(t) for t in value)):
        return "a list of integers"
    return None


def check_settings(where: str, settings: Mapping[Any, Any]) -> None:
    """A stage config's sampling settings (`max_tokens`, `temperature`, `top_p`, its
    `extra_params`; None: the provider's default) checked when the config is read, by the rules a
    request's are. Why: a `temperature: -1` was refused only when its stage sent the first
    request, after the stages before it had run."""
    for key, value in settings.items():
        if not isinstance(key, str):
            raise UserError(f"{where}: {key!r} is no parameter name (a name is text)")
        why = None if value is None else _check_value(key, value)
        if why is not None:
            raise UserError(f"{where}.{key} must be {why}, got {value!r}")


def check_params(params: Mapping[str, Any], allowed: Collection[str], engine: str) -> None:
    """Raise InvalidParams unless every key is in `allowed` and every value has the right type."""
    for key, value in params.items():
        if key not in allowed:
            hint = difflib.get_close_matches(key, sorted(allowed), n=1, cutoff=0.5)
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise InvalidParams(
                f"{engine} does not accept the parameter {key!r}{suggestion}; accepted: {', '.join(sorted(allowed))}"
            )
        problem = _check_value(key, value)
        if problem:
            raise InvalidParams(f"{engine}: {key} must be {problem}, got {value!r}")


def request_body(request: Request) -> dict[str, Any]:
    """The JSON body of an OpenAI-compatible call for `request` (also the cache key material)."""
    body: dict[str, Any] = {"model": request.model}
    if request.messages is not None:
        body["messages"] = [dict(m) for m in request.messages]
    else:
        body["prompt"] = request.prompt
    body.update(request.params)
    return body


def canonical_json(obj: Any) -> str:
    """One spelling per value: sorted keys, no spaces, unicode kept (hashing and storage)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def max_output_tokens(request: Request) -> int | None:
    """The most tokens a request may produce, when it says (None: up to the server's limit)."""
    for key in ("max_tokens", "max_completion_tokens"):
        value = request.params.get(key)
        if _is_int(value):
            return value
    return None


def prompt_token_ids(tokenizer: Any, request: Request) -> list[int]:
    """The exact token ids a local model sees for `request`: chat through the tokenizer's
    template with the generation prompt, a plain prompt as it is."""
    if request.messages is not None:
        text = tokenizer.apply_chat_template(list(request.messages), add_generation_prompt=True, tokenize=False)
    else:
        text = request.prompt or ""
    return tokenizer(text, add_special_tokens=False)["input_ids"]


__all__ = [
    "LLAMACPP_EXTRA_PARAMS",
    "OPENAI_PARAMS",
    "VLLM_EXTRA_PARAMS",
    "InvalidParams",
    "canonical_json",
    "check_params",
    "check_settings",
    "max_output_tokens",
    "prompt_token_ids",
    "request_body",
]
