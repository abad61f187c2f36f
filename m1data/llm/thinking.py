"""Split a reasoning model's output into thinking and answer.

Servers return a reasoning model's thinking in one of two shapes: separately
(`message.reasoning_content`, as DeepSeek's API and vLLM with a reasoning parser do), or inline
in the text as `<think> ... </think>` followed by the answer. Engines normalise the inline shape
with `split_thinking` so every caller sees `Reply.reasoning` and `Reply.text` the same way.

An opening tag without a closing one means the model was still thinking when it stopped (cut off
by the token limit): all of it is thinking and there is no answer. A closing tag without an
opening one happens when the chat template already put `<think>` into the prompt.
"""

from __future__ import annotations

OPEN = "<think>"
CLOSE = "</think>"


def split_thinking(text: str) -> tuple[str | None, str]:
    """(reasoning, answer). Without thinking tags the text comes back untouched (a plain
    completion may be continued verbatim); around tags both parts are stripped."""
    start = text.find(OPEN)
    end = text.find(CLOSE, start + len(OPEN) if start >= 0 else 0)
    if start < 0 and end < 0:
        return None, text
    if end < 0:  # opened, never closed: still thinking when it stopped
        return text[start + len(OPEN) :].strip(), ""
    if start < 0:  # the template opened the thinking inside the prompt
        return text[:end].strip(), text[end + len(CLOSE) :].strip()
    return text[start + len(OPEN) : end].strip(), text[end + len(CLOSE) :].strip()


__all__ = [
    "CLOSE",
    "OPEN",
    "split_thinking",
]
