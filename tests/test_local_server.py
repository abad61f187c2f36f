"""The embedded model's server: a real llama-server with the packaged SmolLM2-135M GGUF.

These start the real binary (scripts/test.sh installs it); without it they skip, except the
checks that a missing or broken server is reported clearly, which need no binary.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import openai
import pytest

from m1data.llm.local_server import (
    LocalServer,
    ServerConfig,
    ServerFailed,
    ServerUnavailable,
    embedded_missing,
    find_server_binary,
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
    assert _gone(pid)
    assert "llama-server" in log.read_text() and "--model" in log.read_text()


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


def test_missing_server_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("M1DATA_LLAMA_SERVER", str(tmp_path / "nowhere" / "llama-server"))
    with pytest.raises(ServerUnavailable, match="M1DATA_LLAMA_SERVER"):
        find_server_binary()


@pytest.mark.skipif(embedded_missing(server=False) is not None, reason=str(embedded_missing(server=False)))
def test_a_server_that_dies_at_start_is_reported_with_its_log(tmp_path):
    fake = tmp_path / "llama-server"
    fake.write_text("#!/bin/sh\necho 'error: unknown argument' >&2\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(ServerFailed, match=r"exited with code 3(.|\n)*unknown argument"), \
            LocalServer(ServerConfig(binary=fake), tmp_path / "s.log"):
        pass
