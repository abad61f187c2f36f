"""A tiny random Qwen2-shaped model and a small tokenizer, built at test time (no downloads).

Why: the transformers engine, training and budget-forced inference must run through real
transformers code paths (chat template, special tokens, generate, save/load) in seconds on a CPU.
The weights are random, so the text is gibberish; tests compare against `model.generate` itself,
never against expected words.

- `tiny_tokenizer()`: byte-level BPE trained on a few medical and chat strings, with Qwen's
  special tokens (<|endoftext|> pad, <|im_start|>, <|im_end|> end of turn) and the Qwen2.5 chat
  template of m1data.stages.formatting. Byte-level, so every string round-trips exactly.
- `tiny_model(tokenizer)`: a 2-layer Qwen2ForCausalLM (hidden size 32, grouped-query attention),
  seeded, so two builds are identical.
- `save_tiny(folder)`: both, saved where `from_pretrained(folder)` finds them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

CORPUS = [
    "A 45-year-old man presents with fever, cough and shortness of breath.",
    "Which of the following is the most likely diagnosis?",
    "A. Pneumonia\nB. Asthma\nC. Heart failure\nD. Pulmonary embolism",
    "Return your final response within \\boxed{}.",
    "The answer is \\boxed{A}. Final Answer: B",
    "think\nLet me reason step by step about the patient.\nWait, reconsider.",
    "answer\nAnswer: C",
    "system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
    "user\nassistant\n",
    "<think> hmm </think> yes no maybe",
    "The patient has a fever. Which drug is best? aspirin ibuprofen paracetamol",
    "0123456789 () [] {} = + - * / % : ; , . ! ? ' \"",
]


def tiny_tokenizer(vocab_size: int = 512) -> Any:
    pytest.importorskip("transformers")  # the train/infer extras; the tests that need it skip without
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from m1data.stages.formatting import QWEN25_CHAT_TEMPLATE

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(CORPUS * 4, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
    )
    tokenizer.chat_template = QWEN25_CHAT_TEMPLATE
    return tokenizer


def tiny_model(tokenizer: Any, seed: int = 0) -> Any:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.eval()


def save_tiny(folder: str | Path, seed: int = 0) -> str:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = tiny_tokenizer()
    tiny_model(tokenizer, seed).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def trained_labels(trainer: Any, example: dict) -> list[int]:
    """The labels `trainer` trains on for one tokenized example (-100: no loss), as its data
    collator builds them. Why not ``example["labels"]``: where the mask lives depends on the TRL
    version (TRL 1.0 keeps a ``completion_mask`` or ``assistant_masks`` column and its collator
    turns it into labels; later versions store the labels themselves), and the collator's output
    is what the loss sees in both."""
    return trainer.data_collator([example])["labels"][0].tolist()
