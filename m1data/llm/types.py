"""The engine contract every model backend implements (HTTP, vLLM, transformers).

Kept tiny on purpose, in the spirit of curator's `prompt(row)` / `parse(row, response)`: stages
build `Request`s, an engine turns each into a `Reply`, and nothing else crosses the boundary.
A `Reply` is always returned, never raised: a refused, truncated or failed call is a recorded
outcome (see `Reply.status`), which is what lets the cache and the funnel account for every row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from m1data.errors import UserError

if TYPE_CHECKING:
    from m1data.llm.limits import StatedLimits

Status = Literal["ok", "length", "filtered", "error"]


@dataclass(frozen=True)
class Request:
    """One call. Exactly one of `messages` (chat) or `prompt` (plain completion) is set.

    `params` are generation parameters (max_tokens, temperature, stop, seed, ...); engines
    validate them against what they support and reject unknown keys.
    """

    model: str
    messages: tuple[dict[str, str], ...] | None = None
    prompt: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    attempt: int = 1
    """Which try at the same question this is (m1data.llm.attempts): part of the cache key from 2
    on, never sent, so a second try is a new request and not the first one's cached reply, while
    a first try keeps the key it always had."""

    def __post_init__(self) -> None:
        if (self.messages is None) == (self.prompt is None):
            raise UserError("a Request needs exactly one of `messages` or `prompt`")
        if not (isinstance(self.attempt, int) and self.attempt >= 1):
            raise UserError(f"a Request's attempt is a positive integer, not {self.attempt!r}")

    @property
    def kind(self) -> Literal["chat", "completion"]:
        return "chat" if self.messages is not None else "completion"


@dataclass
class Reply:
    """What came back. `text` is the answer part; `reasoning` is the thinking when the server
    returned it separately (`reasoning_content`) or inline (`<think>...</think>`)."""

    text: str = ""
    reasoning: str | None = None
    finish_reason: str | None = None
    status: Status = "ok"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None
    cached: bool = False
    model: str | None = None
    """The model the server says answered (the reply's `model` field), which may differ from the
    alias asked for (`deepseek-reasoner` -> a dated release); None when the server did not say."""
    stated_limits: StatedLimits | None = field(default=None, compare=False, repr=False)
    """The rate-limit budgets the server stated with this reply (its rate-limit headers, in any of
    limits.RATE_HEADER_STYLES), for the runner's pacing (m1data.llm.limits); never cached or
    recorded."""


class Engine(Protocol):
    """Anything that answers Requests. Engines are async so one interface serves HTTP and local."""

    name: str

    async def complete(self, request: Request) -> Reply: ...

    async def aclose(self) -> None: ...


def is_transient(reply: Reply) -> bool:
    """A failure that may pass (timeout, 5xx, dropped connection) after every retry: the runner
    marks these `transient` in the cache and sends them again on the next run."""
    return reply.status == "error" and bool(getattr(reply, "retryable", False))


__all__ = [
    "Engine",
    "Reply",
    "Request",
    "is_transient",
]
