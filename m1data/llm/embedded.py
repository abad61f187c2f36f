"""The embedded model in a build: stages whose config says `base_url: embedded` talk to llama.cpp's
server, which the build starts for them (m1data.llm.local_server) and stops when it ends.

Why the config keeps the word `embedded` and the engine keeps a fixed endpoint name: the server
gets a new free port each run, and a port in a stage's config or in the cache key would make every
re-run look like a new configuration (stages re-run, cached replies missed). So the stage config,
its manifest and the cache all say `embedded:<model file>`; only the HTTP connection underneath
knows the port.

With the server or model not installed, nothing is attached: the stages' own preflight then
stops the build before the first LLM stage with a line saying what to install, as it does for an
endpoint that is down.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from m1data.llm.http import HTTPConfig, HTTPEngine
from m1data.llm.local_server import (
    EMBEDDED,
    LocalServer,
    ServerConfig,
    ServerUnavailable,
)
from m1data.llm.params import LLAMACPP_EXTRA_PARAMS
from m1data.llm.types import Reply, Request
from m1data.redact import public_model_name
from m1data.running.pipeline import Stage

LOG_NAME = "llama-server.log"
log = logging.getLogger(__name__)


def is_embedded(base_url: str | None) -> bool:
    return (base_url or "").strip().lower() == EMBEDDED


class EmbeddedEngine:
    """The HTTP engine pointed at the local server, under a stable endpoint name (for the cache)."""

    def __init__(self, base_url: str, model_file: Path, timeout: float = 600.0):
        self.endpoint = f"{EMBEDDED}:{model_file.name}"
        self.name = self.endpoint
        self._http = HTTPEngine(HTTPConfig(base_url=base_url, timeout=timeout, extra_params=LLAMACPP_EXTRA_PARAMS))

    def __repr__(self) -> str:
        return f"EmbeddedEngine({self.endpoint!r})"

    def validate(self, request: Request) -> None:
        self._http.validate(request)

    async def complete(self, request: Request) -> Reply:
        """The server's reply, its `model` field cut to the file name: llama-server reports the
        path it was started with, which names this machine and nothing a reader can look up."""
        reply = await self._http.complete(request)
        reply.model = public_model_name(reply.model)
        return reply

    async def aclose(self) -> None:
        await self._http.aclose()


def embedded_stages(stages: Sequence[Stage]) -> list[Stage]:
    """The stages whose config names the embedded model for at least one model they call."""
    return [stage for stage in stages if _embedded_endpoints(stage)]


def _embedded_endpoints(stage: Stage) -> list[Any]:
    """The `Endpoint`s of an LLM stage (m1data.llm.stages, which imports this module to serve a
    file run: hence `endpoints` looked up, not the class) whose base_url is `embedded`."""
    endpoints = stage.endpoints() if callable(getattr(stage, "endpoints", None)) else []
    return [endpoint for endpoint in endpoints if is_embedded(endpoint.base_url)]


def attach(stages: Sequence[Stage], base_url: str, model_file: Path) -> int:
    """Give each embedded model of each stage an EmbeddedEngine (through the stage's `engines`);
    returns how many were attached."""
    attached = 0
    for stage in stages:
        for endpoint in _embedded_endpoints(stage):
            stage.engines[endpoint.key] = EmbeddedEngine(base_url, model_file, stage.runtime.timeout)  # type: ignore[attr-defined]
            attached += 1
    return attached


@contextlib.contextmanager
def serve_embedded(stages: Sequence[Stage], run_dir: str | Path, config: ServerConfig | None = None) -> Iterator[None]:
    """Run the embedded model's server around a build of `stages` when any of them asks for it.

    The server's log goes to RUN_DIR/llama-server.log. A missing server or model is reported, and
    the build stops before its first stage (`LLMStage.missing` says why)."""
    wanted = embedded_stages(stages)
    if not wanted:
        yield
        return
    try:
        server = LocalServer(config, Path(run_dir) / LOG_NAME)
    except ServerUnavailable as missing:
        log.warning(f"embedded model unavailable: {missing}")
        yield
        return
    log.info(f"starting the {server.name} with {server.model.name}; log {server.log_path}")
    with server:
        attach(wanted, server.base_url, server.model)
        log.info(f"embedded model served at {server.base_url}")
        yield


__all__ = [
    "LOG_NAME",
    "EmbeddedEngine",
    "attach",
    "embedded_stages",
    "is_embedded",
    "serve_embedded",
]
