"""Calling models: one engine contract, several engines, and the runtime around them.

    from m1data.llm import HTTPConfig, HTTPEngine, Cache, Request, complete_all

    engine = HTTPEngine(HTTPConfig(base_url="https://api.deepseek.com", api_key_env="DEEPSEEK_API_KEY"))
    with Cache("replies.sqlite") as cache:
        replies = complete_all(engine, requests, cache, concurrency=32, rpm=600)

`run_batch` sends the same requests through a provider's Batch API, into the same cache.

Engines: HTTPEngine (any OpenAI-compatible server through the openai SDK, the default), HFEngine (transformers, for CPU
and tests; `m1data.llm.hf`, needs torch), VLLMEngine (in-process vLLM, optional extra;
`m1data.llm.vllm`). The heavy ones are not imported here, so this package needs neither torch
nor vllm.
"""

from m1data.llm.batch import BatchLimits, run_batch
from m1data.llm.cache import Cache, request_key
from m1data.llm.cost import Estimate, Price, PriceTable, count_tokens, estimate, prompt_tokens
from m1data.llm.http import HTTPConfig, HTTPEngine, MissingAPIKey
from m1data.llm.limits import Failed, RateLimiter, RetryPolicy
from m1data.llm.params import OPENAI_PARAMS, VLLM_EXTRA_PARAMS, InvalidParams
from m1data.llm.runner import EndpointError, Plan, RunStats, complete_all, plan_requests, print_plan, run_requests
from m1data.llm.thinking import split_thinking
from m1data.llm.types import Engine, Reply, Request

__all__ = [
    "OPENAI_PARAMS",
    "VLLM_EXTRA_PARAMS",
    "BatchLimits",
    "Cache",
    "EndpointError",
    "Engine",
    "Estimate",
    "Failed",
    "HTTPConfig",
    "HTTPEngine",
    "InvalidParams",
    "MissingAPIKey",
    "Plan",
    "Price",
    "PriceTable",
    "RateLimiter",
    "Reply",
    "Request",
    "RetryPolicy",
    "RunStats",
    "complete_all",
    "count_tokens",
    "estimate",
    "plan_requests",
    "print_plan",
    "prompt_tokens",
    "request_key",
    "run_batch",
    "run_requests",
    "split_thinking",
]
