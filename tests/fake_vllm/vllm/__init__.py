"""A test double for vLLM, which needs CUDA and cannot be installed here: the few names
m1data.llm.vllm uses (LLM, SamplingParams, vllm.inputs.TokensPrompt), answering deterministically
from the prompt's tokens. Each LLM() appends its process id to the file named by FAKE_VLLM_LOG, so a
test can count how many engines each worker built."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any


class SamplingParams:
    def __init__(self, **kwargs: Any):
        self.max_tokens = kwargs.get("max_tokens", 16)


class _Tokenizer:
    """Characters as tokens; the chat template joins the messages."""

    def apply_chat_template(self, messages, add_generation_prompt=True, tokenize=False):
        return "".join(f"<{m['role']}>{m['content']}" for m in messages) + ("<assistant>" if add_generation_prompt else "")

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [ord(c) for c in text]}


@dataclass
class _Choice:
    text: str
    finish_reason: str = "stop"
    token_ids: list[int] = field(default_factory=list)


@dataclass
class _Output:
    prompt_token_ids: list[int]
    outputs: list[_Choice]


class LLM:
    def __init__(self, model: str, **kwargs: Any):
        self.model = model
        log = os.environ.get("FAKE_VLLM_LOG")
        if log:
            with open(log, "a", encoding="utf-8") as handle:
                handle.write(f"{os.getpid()}\n")

    def get_tokenizer(self) -> _Tokenizer:
        return _Tokenizer()

    def generate(self, prompts, params, use_tqdm=False):
        outputs = []
        for prompt in prompts:
            ids = prompt["prompt_token_ids"]
            letter = "ABCD"[sum(ids) % 4]
            text = f"<think>Weighing the options.</think>The answer is \\boxed{{{letter}}}."
            outputs.append(_Output(ids, [_Choice(text, token_ids=[ord(c) for c in text])]))
        return outputs
