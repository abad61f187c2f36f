"""A transformers engine: `model.generate` on CPU (or one GPU), for tests and small jobs.

Why it exists: the HTTP engine needs a server; this one runs a local checkpoint in-process with
the same contract, so the stages and the runner can be exercised end to end on a tiny model, and
a small model can be run without setting up vLLM.

Semantics follow the OpenAI API so a stage gives the same rows through either engine:
- chat requests are rendered with the tokenizer's chat template (generation prompt added);
  plain prompts are tokenized as they are, without special tokens added;
- `temperature` 0 (the default) is greedy; above 0 samples, reproducibly with `seed`;
- `stop` strings end the text before the first occurrence (the stop string is not returned);
  `stop_token_ids` and the model's end-of-sequence tokens end it too (not returned either);
- `prompt_tokens` and `completion_tokens` are exact: every generated token counts, the final
  stop token included, as vLLM counts them;
- `finish_reason` is "stop" when a stop ended the text and "length" when max_tokens did.

Calls run one at a time in a worker thread (generation holds the CPU anyway). torch and
transformers are imported when the engine is built, so importing this module costs nothing.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from m1data.errors import UserError
from m1data.llm.params import check_params, prompt_token_ids
from m1data.llm.thinking import split_thinking
from m1data.llm.types import Reply, Request

HF_PARAMS = frozenset(
    {"max_tokens", "temperature", "top_p", "top_k", "seed", "stop", "stop_token_ids", "skip_special_tokens"}
)


@dataclass
class HFConfig:
    """`model` is a local folder (or a Hub id when the Hub is reachable). `default_max_tokens`
    applies when a request sets none."""

    model: str
    device: str = "cpu"
    dtype: str = "auto"
    default_max_tokens: int = 256


def model_load_error(model: str, err: OSError) -> UserError:
    """transformers' refusal to load `model` in one line (its first), for every door that loads one."""
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return UserError(f"cannot load model {model!r}: {first}")


class HFEngine:
    def __init__(self, config: HFConfig):
        try:
            import torch  # noqa: F401
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as exc:
            raise ImportError("HFEngine needs torch and transformers: pip install 'm1data[infer]'") from exc
        self.config = config
        self.name = f"hf:{config.model}"
        local = Path(config.model)
        self.endpoint = f"hf:{local.resolve()}" if local.exists() else f"hf:{config.model}"
        self.allowed_params = HF_PARAMS
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(config.model)
            self.model = AutoModelForCausalLM.from_pretrained(config.model, dtype=config.dtype).to(config.device).eval()
        except OSError as err:  # not found, offline without it cached, a malformed id: a 300-line traceback
            raise model_load_error(config.model, err) from None
        self._lock = threading.Lock()
        self._eos_ids = self._model_eos_ids()

    def __repr__(self) -> str:
        return f"HFEngine(model={self.config.model!r}, device={self.config.device!r})"

    def _model_eos_ids(self) -> list[int]:
        eos = self.model.generation_config.eos_token_id
        ids = [eos] if isinstance(eos, int) else list(eos or [])
        if self.tokenizer.eos_token_id is not None:
            ids.append(self.tokenizer.eos_token_id)
        return sorted(set(ids))

    def validate(self, request: Request) -> None:
        check_params(request.params, self.allowed_params, self.name)

    def prompt_ids(self, request: Request) -> list[int]:
        """The exact token ids the model sees for `request`."""
        return prompt_token_ids(self.tokenizer, request)

    def _generation_config(self, params: dict[str, Any], stop_ids: list[int]) -> Any:
        from transformers import GenerationConfig

        temperature = float(params.get("temperature", 0.0))
        sampling = temperature > 0
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else stop_ids[0]
        return GenerationConfig(
            max_new_tokens=int(params.get("max_tokens", self.config.default_max_tokens)),
            do_sample=sampling,
            temperature=temperature if sampling else None,
            top_p=params.get("top_p") if sampling else None,
            top_k=params.get("top_k") if sampling else None,
            eos_token_id=stop_ids,
            pad_token_id=pad,
            stop_strings=_as_list(params.get("stop")) or None,
        )

    def generate(self, request: Request) -> Reply:
        """Synchronous single generation (what `complete` runs in a thread)."""
        import torch

        params = dict(request.params)
        stop_ids = sorted(set(self._eos_ids) | {int(i) for i in params.get("stop_token_ids") or []})
        ids = self.prompt_ids(request)
        config = self._generation_config(params, stop_ids)
        inputs = torch.tensor([ids], device=self.model.device)
        with self._lock, torch.no_grad():
            torch.manual_seed(int(params.get("seed", 0)))
            output = self.model.generate(
                inputs, attention_mask=torch.ones_like(inputs), generation_config=config, tokenizer=self.tokenizer
            )
        new = output[0, len(ids) :].tolist()
        ended_on_token = bool(new) and new[-1] in stop_ids
        body = new[:-1] if ended_on_token else new
        stops = _as_list(params.get("stop"))
        # Look for stop strings with special tokens kept: a stop like "<|im_start|>" is a special
        # token and vanishes from the skip-special decode, which would read as a cut-off reply.
        _, ended_on_string = _cut_at_stop(self.tokenizer.decode(body, skip_special_tokens=False), stops)
        text = self.tokenizer.decode(body, skip_special_tokens=bool(params.get("skip_special_tokens", True)))
        text, _ = _cut_at_stop(text, stops)
        finished = ended_on_token or ended_on_string
        # Plain completions come back verbatim (budget forcing needs the exact text).
        reasoning, answer = split_thinking(text) if request.kind == "chat" else (None, text)
        return Reply(
            text=answer,
            reasoning=reasoning,
            finish_reason="stop" if finished else "length",
            status="ok" if finished else "length",
            prompt_tokens=len(ids),
            completion_tokens=len(new),
        )

    async def complete(self, request: Request) -> Reply:
        try:
            return await asyncio.to_thread(self.generate, request)
        except Exception as exc:  # a bad prompt for the template, an out-of-memory: an outcome
            return Reply(status="error", error=f"generate_failed: {type(exc).__name__}: {exc}")

    async def aclose(self) -> None:
        pass


def _as_list(stop: Any) -> list[str]:
    if stop is None:
        return []
    return [stop] if isinstance(stop, str) else list(stop)


def _cut_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    """Text before the earliest stop string, and whether one was found."""
    cuts = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return (text[: min(cuts)], True) if cuts else (text, False)


__all__ = [
    "HF_PARAMS",
    "HFConfig",
    "HFEngine",
]
