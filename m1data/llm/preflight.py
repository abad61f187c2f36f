"""Can a stage reach its model before it starts? A build checks this so that, with no endpoint
configured or running, it stops cleanly after the offline stages instead of failing every row."""

from __future__ import annotations

from typing import Any

from m1data.llm.http import api_key_from, check_base_url, key_variable, resolve_base_url, sdk_client
from m1data.redact import shown_variable


def endpoint_problem(base_url: str | None, api_key_env: str | None = None, timeout: float = 3.0) -> str | None:
    """None when `base_url` answers HTTP and its key variable (if any) is set; else what is wrong.

    Any HTTP status counts as reachable: some providers guard `/models` behind auth, and the
    stage itself reports a refused key precisely, per request. The check goes through the same
    SDK as the stage (GET `/models`, no retries), without sending a key."""
    import openai

    if base_url.strip().lower() == "embedded":
        return _embedded_problem()
    base_url = resolve_base_url(base_url)
    check_base_url(base_url)
    variable = key_variable(base_url, api_key_env)
    if variable and not api_key_from(variable):
        return f"the environment variable {shown_variable(variable)} (API key for {base_url}) is not set"
    try:
        _listed_models(base_url, timeout)
    except (openai.APIStatusError, openai.APIResponseValidationError, ValueError):
        return None  # it answered HTTP
    except openai.APIConnectionError as err:
        cause = err.__cause__ or err
        return f"cannot reach {base_url} ({type(cause).__name__})"
    return None


def _listed_models(base_url: str, timeout: float) -> list[Any]:
    """GET `/models` through the SDK the stages use, no retries, no key sent."""
    import openai

    client = sdk_client(asynchronous=False, api_key="no-key", organization="", project="", base_url=base_url,
                        max_retries=0, timeout=timeout)
    try:
        return client.models.list(extra_headers={"Authorization": openai.Omit()}).data
    finally:
        client.close()


def owners(base_url: str, timeout: float = 3.0) -> set[str]:
    """The `owned_by` of the models `base_url` lists ("llamacpp", "vllm", ...); empty when it lists
    none or cannot be asked (a key it needs is not sent). Why: some servers need settings a job
    cannot send per request (llama.cpp writes special tokens into its text only when started with
    `--special`), and a job can then say so before it spends anything."""
    import openai

    try:
        listed = _listed_models(resolve_base_url(base_url), timeout)
    except (openai.OpenAIError, ValueError):
        return set()
    return {str(model.owned_by) for model in listed if getattr(model, "owned_by", None)}


def _embedded_problem() -> str:
    """Why the embedded model is not served (the build starts it itself, so reaching here means
    it could not): what is missing (`embedded_missing`), else that it was not started."""
    from m1data.llm.local_server import INSTALL_HINT, embedded_missing

    missing = embedded_missing()
    if missing is not None:
        return f"the embedded model cannot be served: {missing}"
    return f"the embedded model is not being served (the build starts it when installed; {INSTALL_HINT})"


__all__ = [
    "endpoint_problem",
    "owners",
]
