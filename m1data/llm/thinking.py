"""Split a reasoning model's output into thinking and answer.

Servers return a reasoning model's thinking in one of two shapes: separately
(`message.reasoning_content`, as DeepSeek's API and vLLM with a reasoning parser do), or inline
in the text. Engines normalise the inline shape with `split_thinking` so every caller sees
`Reply.reasoning` and `Reply.text` the same way. Two inline shapes are read:

- `<think> ... </think>` followed by the answer (DeepSeek-R1, Qwen3, most open reasoning models).
  An opening tag without a closing one means the model was still thinking when it stopped (cut
  off by the token limit): all of it is thinking and there is no answer. A closing tag without an
  opening one happens when the chat template already put `<think>` into the prompt.
- gpt-oss's harmony channels, from a server without its reasoning parser:
  `<|channel|>analysis<|message|>THOUGHTS<|end|><|start|>assistant<|channel|>final<|message|>ANSWER`,
  or the same with the special tokens stripped (`analysisTHOUGHTS...assistantfinalANSWER`). Why it
  must be split: read whole, the analysis channel's drafts ("maybe \\boxed{B}") are the reply's
  last box or statement, so a right final answer is graded wrong, a wrong one can be graded right,
  and a teacher that thinks at length looks like one without reasoning. Analysis without a final
  channel is thinking cut off: no answer.
"""

from __future__ import annotations

import re

OPEN = "<think>"
CLOSE = "</think>"

HARMONY_FINAL = "<|channel|>final<|message|>"
HARMONY_STRIPPED_FINAL = "assistantfinal"  # the same marker once a server strips special tokens
_HARMONY_TOKEN = re.compile(r"<\|(?:start|end|return|call|channel|message|constrain)\|>")
_HARMONY_ANALYSIS = "<|channel|>analysis<|message|>"


def _split_harmony(text: str) -> tuple[str, str] | None:
    """(reasoning, answer) of a harmony-format reply; None when `text` is not one. The answer is
    the last final channel's message; the reasoning is everything before it, special tokens and
    channel headers dropped."""
    if HARMONY_FINAL in text or _HARMONY_ANALYSIS in text:
        cut = text.rfind(HARMONY_FINAL)
        if cut < 0:  # analysis, never a final channel: still thinking when it stopped
            return _harmony_text(text), ""
        return _harmony_text(text[:cut]), _harmony_text(text[cut + len(HARMONY_FINAL):])
    stripped = text.lstrip()
    if stripped.startswith("analysis") and HARMONY_STRIPPED_FINAL in stripped:
        cut = stripped.rfind(HARMONY_STRIPPED_FINAL)
        return stripped[len("analysis"):cut].strip(), stripped[cut + len(HARMONY_STRIPPED_FINAL):].strip()
    return None


def _harmony_text(part: str) -> str:
    """A harmony span's words: special tokens, and the role and channel names they frame, dropped."""
    part = re.sub(r"<\|start\|>\w+", " ", part)
    part = re.sub(r"<\|channel\|>\w+(?:\s+to=[\w.]+)?\s*(?:<\|constrain\|>\w+)?<\|message\|>", " ", part)
    return _HARMONY_TOKEN.sub(" ", part).strip()


def split_thinking(text: str) -> tuple[str | None, str]:
    """(reasoning, answer). Without thinking tags or harmony channels the text comes back untouched
    (a plain completion may be continued verbatim); around them both parts are stripped."""
    harmony = _split_harmony(text)
    if harmony is not None:
        return harmony
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
