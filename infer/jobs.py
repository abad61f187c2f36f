"""The infer jobs, one function each, that every door calls: `m1data infer run` is `infer_run`
and `m1data infer sweep` is `infer_sweep` (the command only parses its options, calls one and
prints what it returns), so a Python session given the same eval sets, endpoint and budget gets
the same records and metrics.

```python
from m1data.infer.jobs import infer_run, infer_sweep

metrics = infer_run("org/m1-7B-1K", ["medqa_test", "pubmedqa_test", "path/to/m1_eval.json"],
                    "runs/infer/m1-7B-1K", base_url="http://127.0.0.1:8000/v1", budget=4096)
points = infer_sweep("org/m1-7B-1K", ["medqa_test"], "runs/sweep/m1-7B-1K",
                     base_url="http://127.0.0.1:8000/v1", budgets=[512, 1024, 2048, 4096, 8192])
```

Both take what the command line takes: eval sets as `--eval-sets` writes them (`NAME`, `FILE`,
`NAME=FILE`; or a mapping of name to a file or a Dataset, as `run_infer` takes them), read by
`m1data.infer.score.read_eval_sets`; the engine (``http``: the server at `base_url`; ``hf``,
``vllm``: `model` loaded here) and its key variable; the tokenizer whose chat template gives the
stop ids; the budget settings; and the runtime (`infer_runtime`: the command's defaults). What
they do before the first call is `prepare`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable
from typing import Any

import datasets
from m1data.infer.budget import BudgetConfig, load_tokenizer, template_stop_ids
from m1data.infer.score import EvalSets, load_eval_sets, run_infer
from m1data.infer.sweep import run_sweep, short_label, sweep_settings

from m1data.errors import UserError
from m1data.llm.embedded import is_embedded
from m1data.llm.params import VLLM_EXTRA_PARAMS
from m1data.llm.preflight import owners
from m1data.llm.stages import HF, VLLM, Endpoint, LLMRuntime, build_engine, endpoint_preflight
from m1data.llm.types import Engine
from m1data.redact import shown_variable

log = logging.getLogger(__name__)

__all__ = ["ENGINES", "InferSetup", "infer_endpoint", "infer_run", "infer_runtime", "infer_sweep", "prepare"]

ENGINES = ("http", "hf", "vllm")
Render = Callable[[list[dict[str, str]]], str]
BUDGETS = (512, 1024, 2048, 4096, 8192)  # Figure 1's


def infer_runtime(*, cache: str | Path | None = None, concurrency: int = 16, rpm: float | None = None,
                  tpm: float | None = None, timeout: float = 600.0, progress: bool = True) -> LLMRuntime:
    """The runtime of an infer job: the LLM stages' `LLMRuntime` (the same settings mean the same
    things), with the command line's defaults; `cache` None puts the reply cache in the output
    folder (`m1data.infer.score.open_infer_cache`)."""
    return LLMRuntime(concurrency=concurrency, rpm=rpm, tpm=tpm, timeout=timeout,
                      cache_path=str(cache) if cache is not None else None, progress=progress)


def infer_endpoint(model: str, engine: str = "http", base_url: str | None = None,
                   api_key_env: str | None = None) -> Endpoint:
    """The `Endpoint` an infer job calls (``http``: the server at `base_url`; ``hf``, ``vllm``:
    the model loaded in-process), after the checks that need nothing started."""
    if engine not in ENGINES:
        raise UserError(f"engine {engine!r}: choose {', '.join(ENGINES)} (--engine)")
    if api_key_env is not None and engine != "http":
        raise UserError("an API key variable (--api-key-env) goes with engine http")
    if engine == "http" and not base_url:
        raise UserError("engine http needs the server's URL (--base-url)")
    if engine == "http" and is_embedded(base_url):  # it said "not being served (the build starts it ...)"
        raise UserError("infer does not start the embedded model (a build does): serve the model you want to score, "
                        "e.g. `python -m m1data.llm.serve --model FILE.gguf`, and pass its URL (--base-url)")
    if api_key_env is not None and not os.environ.get(api_key_env):
        raise UserError(f"environment variable {shown_variable(api_key_env)} is not set (--api-key-env)")
    where = {"http": base_url, "hf": HF, "vllm": VLLM}[engine]
    return Endpoint(key="*", role="model", model=model, base_url=where, api_key_env=api_key_env)


@dataclass
class InferSetup:
    """What an infer job runs with, once read and checked: the engine (the job owns it), the eval
    sets, the budget setting (its stop ids from the model's tokenizer), the runtime and the label."""

    engine: Engine
    sets: dict[str, datasets.Dataset]
    config: BudgetConfig
    runtime: LLMRuntime
    label: str
    render: Render | None = None  # the model's own chat template; None: the Qwen2.5 one m1 was trained with


def prepare(
    model: str,
    eval_sets: EvalSets,
    *,
    engine: str = "http",
    base_url: str | None = None,
    api_key_env: str | None = None,
    tokenizer: str | None = None,
    label: str | None = None,
    eval_path: str | Path | None = None,
    eval_mappings: Mapping[str, dict[str, Any]] | None = None,
    forcing_string: str = BudgetConfig.forcing_string,
    answer_max_tokens: int = BudgetConfig.answer_max_tokens,
    runtime: LLMRuntime | None = None,
    limit: int | None = None,
) -> InferSetup:
    """The reading, checks and set-up of both jobs, cheapest first, so that a mistake costs
    nothing: the endpoint's settings, then whether it answers (a dead server is one line before
    anything is loaded), then the eval sets (read and checked: `load_eval_sets`), and only then
    the engine (which for ``hf`` and ``vllm`` loads the model) and its stop ids."""
    endpoint = infer_endpoint(model, engine, base_url, api_key_env)
    problem = endpoint_preflight(endpoint)
    if problem:
        raise UserError(problem)
    if engine == "http" and "llamacpp" in owners(endpoint.base_url):
        log.warning("the server is llama.cpp's: it ignores stop_token_ids and writes special tokens such as the "
                    "end of thinking (<|im_start|>) into its text only when started with --special (llama-server "
                    "--special, python -m m1data.llm.serve --special); without it, thinking cannot stop there and "
                    "runs on to the budget")
    sets = load_eval_sets(eval_sets, limit, eval_path=eval_path, mappings=eval_mappings)
    runtime = runtime if runtime is not None else infer_runtime()
    built, tokenizer_read = _engine_and_tokenizer(endpoint, runtime, tokenizer)
    stops = template_stop_ids(tokenizer_read) if tokenizer_read is not None else None
    if stops is None:  # stop strings only: they can match only if the server keeps special tokens in the text
        config = BudgetConfig(model=model, forcing_string=forcing_string, answer_max_tokens=answer_max_tokens,
                              extra_params={"skip_special_tokens": False})
    else:
        config = BudgetConfig(model=model, forcing_string=forcing_string, answer_max_tokens=answer_max_tokens,
                              thinking_stop_token_ids=tuple(stops[0]), answer_stop_token_ids=tuple(stops[1]))
    return InferSetup(built, sets, config, runtime, label or short_label(model), chat_render(tokenizer_read))


def _engine_and_tokenizer(endpoint: Endpoint, runtime: LLMRuntime, tokenizer: str | None) -> tuple[Engine, Any]:
    """The engine (from the LLM stages' factory), and the model's tokenizer, whose chat template
    gives the prompt and the (thinking, answer) stop ids budget forcing needs (reference s.10);
    None when it cannot be read (only stop strings can be used, and the Qwen2.5 template)."""
    if endpoint.base_url == HF:  # the loaded model's own tokenizer
        built = build_engine(endpoint, runtime)
        return built, built.tokenizer
    read = _model_tokenizer(tokenizer or endpoint.model, explicit=tokenizer is not None)
    # the thinking budget is the model's own tokens: a server that reports none stops the run (HTTPConfig)
    return build_engine(endpoint, runtime, VLLM_EXTRA_PARAMS, require_usage=True), read


def _model_tokenizer(tokenizer_name: str, explicit: bool) -> Any:
    """The model's own tokenizer. A tokenizer named with `tokenizer` must load (else one line); the
    default (the model, often a served name) may not, and then a one-line warning says the run
    stops on marker strings and asks in the Qwen2.5 template instead. Either way within a second,
    offline too (`load_tokenizer`)."""
    try:
        return load_tokenizer(tokenizer_name)
    except (ImportError, UserError) as err:
        if explicit:
            raise
        log.warning(f"{err}; stopping on marker strings only (the server must keep special tokens in its text: "
                    "skip_special_tokens false on vLLM, --special on llama.cpp), and asking in "
                    "the Qwen2.5 chat template. Pass a tokenizer (--tokenizer) to stop on the model's own "
                    "end-of-turn tokens and ask in its own template.")
        return None


def chat_render(tokenizer: Any) -> Render | None:
    """The prompt's user turn in the model's own chat template, as `m1data train` renders its
    training rows (a tokenizer with no template gets the Qwen2.5 one there, and here None: the
    same). Why: infer asked every model in the Qwen2.5 template, so a model trained from another
    base (`m1data train --model_name_or_path`) was scored on a prompt it had never seen."""
    if tokenizer is None or getattr(tokenizer, "chat_template", None) is None:
        return None
    return lambda messages: tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def infer_run(
    model: str,
    eval_sets: EvalSets,
    out: str | Path,
    *,
    engine: str = "http",
    base_url: str | None = None,
    api_key_env: str | None = None,
    tokenizer: str | None = None,
    label: str | None = None,
    eval_path: str | Path | None = None,
    eval_mappings: Mapping[str, dict[str, Any]] | None = None,
    budget: int = BudgetConfig.thinking_budget,
    forcing_rounds: int = 0,
    forcing_string: str = BudgetConfig.forcing_string,
    answer_max_tokens: int = BudgetConfig.answer_max_tokens,
    runtime: LLMRuntime | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """`m1data infer run`: generate with a thinking budget (and `forcing_rounds` of budget
    forcing) over every eval set, score it, and write records.jsonl and metrics.json to `out`;
    returns the metrics. Raises `m1data.infer.score.InferIncomplete` when transient failures
    left questions unanswered (the same call again sends only those)."""
    BudgetConfig(model=model, thinking_budget=budget, forcing_rounds=forcing_rounds,
                 answer_max_tokens=answer_max_tokens)  # the setting checked before anything starts
    setup = prepare(model, eval_sets, engine=engine, base_url=base_url, api_key_env=api_key_env, tokenizer=tokenizer,
                    label=label, eval_path=eval_path, eval_mappings=eval_mappings, forcing_string=forcing_string,
                    answer_max_tokens=answer_max_tokens, runtime=runtime, limit=limit)
    config = dataclasses.replace(setup.config, thinking_budget=budget, forcing_rounds=forcing_rounds)
    return run_infer(setup.engine, setup.sets, Path(out).expanduser(), config, runtime=setup.runtime, limit=limit,
                     render=setup.render, label=setup.label)


def infer_sweep(
    model: str,
    eval_sets: EvalSets,
    out: str | Path,
    *,
    engine: str = "http",
    base_url: str | None = None,
    api_key_env: str | None = None,
    tokenizer: str | None = None,
    label: str | None = None,
    eval_path: str | Path | None = None,
    eval_mappings: Mapping[str, dict[str, Any]] | None = None,
    budgets: Sequence[int] = BUDGETS,
    forcing_rounds: Sequence[int] = (0,),
    forcing_string: str = BudgetConfig.forcing_string,
    answer_max_tokens: int = BudgetConfig.answer_max_tokens,
    runtime: LLMRuntime | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """`m1data infer sweep`: one `infer_run`-like point per (budget, forcing rounds) in its own
    folder under `out`, then sweep.json and the plots (paper Figures 1 and 3); returns the points.
    A finished point is read back, not run again (`m1data.infer.sweep`)."""
    sweep_settings(BudgetConfig(model=model, answer_max_tokens=answer_max_tokens), budgets, forcing_rounds)  # checked first
    setup = prepare(model, eval_sets, engine=engine, base_url=base_url, api_key_env=api_key_env, tokenizer=tokenizer,
                    label=label, eval_path=eval_path, eval_mappings=eval_mappings, forcing_string=forcing_string,
                    answer_max_tokens=answer_max_tokens, runtime=runtime, limit=limit)
    return run_sweep(setup.engine, setup.sets, Path(out).expanduser(), setup.config, budgets, forcing_rounds,
                     runtime=setup.runtime, limit=limit, render=setup.render, label=setup.label)
