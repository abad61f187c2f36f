"""vLLM in-process (optional extra, CUDA only): batch jobs on a GPU box without running a server.

vllm is imported only when an engine is built, so this module imports anywhere; building one
without vllm raises ImportError naming the extra to install. Not exercised here beyond that
(no GPU): the batching it relies on is tested with a stand-in function.

Why a micro-batcher: vLLM's throughput comes from scheduling many sequences together, but the
runner hands requests over one coroutine at a time. Requests arriving within `max_wait` seconds
are gathered into one `LLM.generate` call (up to `max_batch`), run in a worker thread.

Prompts are tokenized here (chat template for chat requests) and passed as token ids, so prompt
token counts are exact and the same template logic as the transformers engine applies.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from m1data.llm.params import check_params, prompt_token_ids
from m1data.llm.thinking import split_thinking
from m1data.llm.types import Reply, Request

T = TypeVar("T")
R = TypeVar("R")

VLLM_PARAMS = frozenset(
    {
        "max_tokens",
        "temperature",
        "top_p",
        "top_k",
        "min_p",
        "seed",
        "stop",
        "stop_token_ids",
        "min_tokens",
        "repetition_penalty",
        "presence_penalty",
        "frequency_penalty",
        "skip_special_tokens",
        "include_stop_str_in_output",
        "ignore_eos",
    }
)


class MicroBatcher(Generic[T, R]):
    """Gathers items submitted concurrently into batches for a synchronous `run_batch`, which
    must return one result per item, in order."""

    def __init__(self, run_batch: Callable[[list[T]], list[R]], *, max_batch: int = 256, max_wait: float = 0.01):
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.max_wait = max_wait
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._worker: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.ensure_future(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._pending:
            if len(self._pending) < self.max_batch:
                await asyncio.sleep(self.max_wait)  # let concurrent submitters join this batch
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            try:
                results = await asyncio.to_thread(self.run_batch, [item for item, _ in batch])
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)


@dataclass
class VLLMConfig:
    model: str
    tensor_parallel_size: int = 1
    dtype: str = "auto"
    max_model_len: int | None = None
    gpu_memory_utilization: float = 0.9
    seed: int = 0
    default_max_tokens: int = 4096
    max_batch: int = 512
    engine_kwargs: dict[str, Any] = field(default_factory=dict)


class VLLMEngine:
    def __init__(self, config: VLLMConfig):
        try:
            import vllm
        except ImportError as exc:
            raise ImportError(
                "VLLMEngine needs vllm, an optional extra that requires CUDA: pip install 'm1data[vllm]'. "
                "Without a GPU, serve the model elsewhere and use HTTPEngine, or use HFEngine on CPU."
            ) from exc
        self.config = config
        self.name = f"vllm:{config.model}"
        self.endpoint = self.name
        self.allowed_params = VLLM_PARAMS
        kwargs = {"max_model_len": config.max_model_len} if config.max_model_len else {}
        self.llm = vllm.LLM(
            model=config.model,
            tensor_parallel_size=config.tensor_parallel_size,
            dtype=config.dtype,
            gpu_memory_utilization=config.gpu_memory_utilization,
            seed=config.seed,
            **kwargs,
            **config.engine_kwargs,
        )
        self.tokenizer = self.llm.get_tokenizer()
        self._batcher: MicroBatcher[Request, Reply] = MicroBatcher(self._run_batch, max_batch=config.max_batch)

    def __repr__(self) -> str:
        return f"VLLMEngine(model={self.config.model!r})"

    def validate(self, request: Request) -> None:
        check_params(request.params, self.allowed_params, self.name)

    def _prompt_ids(self, request: Request) -> list[int]:
        return prompt_token_ids(self.tokenizer, request)

    def _run_batch(self, requests: list[Request]) -> list[Reply]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        prompts = [TokensPrompt(prompt_token_ids=self._prompt_ids(r)) for r in requests]
        params = [SamplingParams(**{"max_tokens": self.config.default_max_tokens, **r.params}) for r in requests]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        return [_to_reply(output, r.kind == "chat") for output, r in zip(outputs, requests)]

    async def complete(self, request: Request) -> Reply:
        try:
            return await self._batcher.submit(request)
        except Exception as exc:
            return Reply(status="error", error=f"generate_failed: {type(exc).__name__}: {exc}")

    async def aclose(self) -> None:
        pass


def _to_reply(output: Any, chat: bool) -> Reply:
    choice = output.outputs[0]
    finish = choice.finish_reason
    # Plain completions come back verbatim (budget forcing continues the exact text).
    reasoning, text = split_thinking(choice.text) if chat else (None, choice.text)
    return Reply(
        text=text,
        reasoning=reasoning,
        finish_reason=finish,
        status="length" if finish == "length" else "ok",
        prompt_tokens=len(output.prompt_token_ids or []),
        completion_tokens=len(choice.token_ids),
    )


__all__ = [
    "VLLM_PARAMS",
    "MicroBatcher",
    "VLLMConfig",
    "VLLMEngine",
]
