"""Can a stage reach its model before it starts? A build checks this so that, with no endpoint
configured or running, it stops cleanly after the offline stages instead of failing every row."""

from __future__ import annotations

import os

import httpx


def endpoint_problem(base_url: str, api_key_env: str | None = None, timeout: float = 3.0) -> str | None:
    """None when `base_url` answers HTTP and its key variable (if any) is set; else what is wrong.

    Any HTTP status counts as reachable: some providers guard `/models` behind auth, and the
    stage itself reports a refused key precisely, per request."""
    if base_url.strip().lower() == "embedded":
        # The build starts the embedded model's server itself; reaching here means it could not.
        from m1data.llm.local_server import INSTALL_HINT

        return f"the embedded model is not being served (the build starts it when installed; {INSTALL_HINT})"
    if api_key_env and not os.environ.get(api_key_env):
        return f"the environment variable {api_key_env} (API key for {base_url}) is not set"
    try:
        httpx.get(base_url.rstrip("/") + "/models", timeout=timeout)
    except httpx.HTTPError as err:
        return f"cannot reach {base_url} ({type(err).__name__})"
    return None
