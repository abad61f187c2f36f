"""The optional vLLM engine: a clear error without vllm, and its micro-batching (run with a
stand-in for `LLM.generate`, since vLLM needs a GPU)."""

from __future__ import annotations

import asyncio
import importlib.util
import threading

import pytest

from m1data.llm.vllm import MicroBatcher, VLLMConfig, VLLMEngine


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed")
def test_missing_vllm_says_what_to_install():
    with pytest.raises(ImportError, match=r"m1data\[vllm\]"):
        VLLMEngine(VLLMConfig(model="Qwen/Qwen2.5-7B-Instruct"))


def test_concurrent_submissions_are_batched_in_order():
    calls: list[list[int]] = []
    threads: set[str] = set()

    def run_batch(items: list[int]) -> list[int]:
        calls.append(items)
        threads.add(threading.current_thread().name)
        return [i * i for i in items]

    async def main():
        batcher = MicroBatcher(run_batch, max_batch=16, max_wait=0.01)
        return await asyncio.gather(*(batcher.submit(i) for i in range(40)))

    results = asyncio.run(main())
    assert results == [i * i for i in range(40)]
    assert [len(c) for c in calls] == [16, 16, 8]
    assert threading.main_thread().name not in threads  # generate never blocks the event loop


def test_a_failed_batch_fails_its_callers_only():
    def run_batch(items: list[int]) -> list[int]:
        if 3 in items:
            raise RuntimeError("CUDA out of memory")
        return items

    async def main():
        batcher = MicroBatcher(run_batch, max_batch=4, max_wait=0.01)
        return await asyncio.gather(*(batcher.submit(i) for i in range(8)), return_exceptions=True)

    results = asyncio.run(main())
    assert all(isinstance(r, RuntimeError) for r in results[:4])
    assert results[4:] == [4, 5, 6, 7]
