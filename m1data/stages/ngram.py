"""Word n-gram overlap check (s1 style), an independent second opinion on decontamination.

A training text is flagged when it shares any word n-gram (default n=8) with an eval text.
Words are lowercased runs of letters/digits (``\\w+``), so punctuation and spacing never matter.

Texts shorter than n words have no n-gram. We give such a text one key, its whole token
sequence, and flag only exact equality of two such short sequences. Containment of a short
text inside a longer one is deliberately not flagged: short eval items ("yes", "Which of the
following?") occur inside countless unrelated training rows and would flag them all.

Exam boilerplate is ignored the same way. Stock phrases ("which of the following is the most
likely cause of", "best describes the mechanism of action of this drug") are 8-grams too; on the
embedded sample they flagged 47 of 130 training rows against unrelated eval questions, which made
the count meaningless. The rule: an n-gram that occurs in more than ``max_train_rows`` *training*
rows (default `COMMON_NGRAM_ROWS` = 3) is a phrase of the exam genre, not a copied question, and
does not count as a match. A question copied from an eval set leaves n-grams that only its copies
carry, and after deduplication there are at most a few of those.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Sequence

from m1data.errors import UserError

_WORD = re.compile(r"\w+")

# An n-gram in more training rows than this is boilerplate (see the module docstring).
COMMON_NGRAM_ROWS = 3


def tokens(text: str) -> list[str]:
    """Lowercased word tokens; punctuation is dropped."""
    return _WORD.findall(text.lower())


def ngram_keys(text: str, n: int = 8) -> set[int]:
    """Hashed word n-grams of a text; a short text gets one key for its whole sequence.

    Why hash: sets of ints are smaller and faster than sets of tuples of strings. A hash
    collision can only add a false flag, never hide a shared n-gram. Why blake2b and not
    ``hash()``: Python salts str hashes per process (PYTHONHASHSEED), so keys made by two
    workers, or stored and read back, would not compare. A short text needs no tag of its own:
    it has fewer than n words, so its key never hashes the same words as an n-gram's.
    """
    words = tokens(text)
    if not words:
        return set()
    if len(words) < n:
        return {_stable_key(words)}
    return {_stable_key(words[i:i + n]) for i in range(len(words) - n + 1)}


def _stable_key(words: Sequence[str]) -> int:
    """A 64-bit key of the words, the same in every process (words are ``\\w+`` runs, so a
    space joins them unambiguously)."""
    digest = hashlib.blake2b(" ".join(words).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def common_ngrams(train_keys: Sequence[set[int]], max_train_rows: int) -> set[int]:
    """Keys found in more than `max_train_rows` of the training texts (their boilerplate)."""
    rows_per_key = Counter(key for keys in train_keys for key in keys)
    return {key for key, rows in rows_per_key.items() if rows > max_train_rows}


def ngram_overlap(
    texts: Sequence[str], eval_texts: Sequence[str], n: int = 8, max_train_rows: int | None = None
) -> list[int | None]:
    """Per training text, the lowest index of an eval text sharing an n-gram, else None.

    With `max_train_rows`, n-grams found in more training texts than that are ignored (see the
    module docstring); None compares every n-gram.
    """
    if n < 1:
        raise UserError("n must be >= 1")
    from m1data.stages.fuzzy import _text_list  # the matcher's check: a single str is not a list of texts

    texts, eval_texts = _text_list(texts, "texts"), _text_list(eval_texts, "eval_texts")
    train_keys = [ngram_keys(text, n) for text in texts]
    ignored = common_ngrams(train_keys, max_train_rows) if max_train_rows is not None else set()
    first_eval: dict[int, int] = {}
    for e, text in enumerate(eval_texts):
        for key in ngram_keys(text, n) - ignored:
            first_eval.setdefault(key, e)
    return [_first_hit(keys, first_eval) for keys in train_keys]


def _first_hit(keys: Iterable[int], first_eval: dict[int, int]) -> int | None:
    hits = [first_eval[k] for k in keys if k in first_eval]
    return min(hits) if hits else None


__all__ = [
    "COMMON_NGRAM_ROWS",
    "common_ngrams",
    "ngram_keys",
    "ngram_overlap",
    "tokens",
]
