"""Word n-gram overlap check (s1 style), an independent second opinion on decontamination.

A training text is flagged when it shares any word n-gram (default n=8) with an eval text (s1's
rule), or, as the decontaminate stage asks, when it holds a share of one eval text's n-grams
(``min_share``, below). Words are lowercased runs of letters/digits (``\\w+``), so punctuation
and spacing never matter.

Texts shorter than n words have no n-gram. We give such a text one key, its whole token
sequence, and flag only exact equality of two such short sequences. Containment of a short
text inside a longer one is deliberately not flagged: short eval items ("yes", "Which of the
following?") occur inside countless unrelated training rows and would flag them all.

Exam boilerplate is ignored the same way. Stock phrases ("which of the following is the most
likely cause of", "best describes the mechanism of action of this drug") are 8-grams too; on the
embedded sample they flagged 47 of 130 training rows against unrelated eval questions, which made
the count meaningless. The rule: an n-gram that occurs in more than ``max_train_rows`` *training*
rows (the decontaminate stage's `ngram_max_train_rows`, default 3) is a phrase of the exam genre,
not a copied question, and does not count as a match. A question copied from an eval set leaves
n-grams that only its copies carry, and after deduplication there are at most a few of those.

That rule leans on a large training set: in a small one, a clinical vignette's stock phrases
("her blood pressure is 110 70 mm hg", "a 35 year old man comes to the") are in few rows, and
each is a shared n-gram. Real rows showed it: the 1,273 MedQA-USMLE test questions against
MedBullets op5 and MMLU professional medicine (590 items) had 713 rows flagged, where the rows
that are edited copies of an eval question (fuzzy ratio 77-94, under the 95 that removes) are
11. So a row can also be asked to hold a share of one eval question's n-grams
(``min_share``; the decontaminate stage's `ngram_min_share`, default 0.3): those 11 rows hold
0.36-0.71 of their eval question's n-grams, the highest share among the other 702 is 0.22 (the
same kind of case, another patient). Why 0.3: with a fraction p of the words edited, about
(1 - p)^8 of the 8-grams survive, so 0.3 still finds copies with about one word in eight changed.
A share of a short question is little evidence, so the row must also hold `MIN_HELD` = 3 of its
n-grams (a question shorter than n words: its one key, that is, be equal to it). Without that,
HEAD-QA's 2,585 training questions against the 18 eval files here had 12 rows flagged, each for
the frame of a generic question ("which of the following statements is not true" held whole,
"which of the following is not a component of" in a 9-word question about the Gamma Knife);
with it, none, and the 11 MedQA rows above stay.

How it scales: the texts are tokenized by polars in chunks of rows, n-grams become 64-bit
keys in numpy (a polynomial hash of the words' 64-bit hashes), and only training keys found
among the eval keys are kept, with the training rows per key counted as chunks arrive. The
per-n-gram blake2b and the list of Python int sets per row this replaced took over a minute
and several GB at 1M rows (benchmarks/bench_ngram.py).

Words are exactly Python's: the text is lowercased by ``str.lower`` and cut by a character
class listing every code point that Python's ``re`` calls ``\\w`` (built by asking ``re``).
Rust's ``\\w``, which polars would use, differs on combining marks ("e\\u0301" is one word
there, two here), on other numbers ("x²") and on connector punctuation, and the verdicts had
to stay those of `tokens`, the public definition.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import polars as pl

from m1data.errors import UserError

_WORD = re.compile(r"\w+")

# How many of one eval text's n-grams a training row must hold at least (see the module docstring).
MIN_HELD = 3

# Rows are tokenized this many characters at a time (and at most 1 << 16 rows), so the word
# arrays of a chunk stay a few tens of MB whatever the corpus size.
CHUNK_CHARS = 1 << 22

_HASH_SEED = 0x6E6772616D  # polars' word hash; fixed, so keys compare between processes
_BASE = np.uint64(0x9E3779B97F4A7C15)  # odd: multiplying by it loses no bits (mod 2**64)
_SHORT_TAG = np.uint64(0xD6E8FEB86659FD93)  # times the word count, in a short text's key


def tokens(text: str) -> list[str]:
    """Lowercased word tokens; punctuation is dropped. The definition of a word: `ngram_keys`
    and `ngram_overlap` cut words exactly like this (see the module docstring)."""
    return _WORD.findall(text.lower())


def ngram_keys(text: str, n: int = 8) -> set[int]:
    """Hashed word n-grams of a text; a short text gets one key for its whole sequence.

    These are the keys `ngram_overlap` compares. Why hash: 64-bit ints are smaller and faster
    than tuples of strings. A hash collision can only add a false flag, never hide a shared
    n-gram. Keys are the same in every process: Python's salted ``hash()`` is not used, words
    are hashed by polars with a fixed seed. They can change with the polars version (polars
    keeps its hash stable only within a version), so compare keys made by one installation,
    not keys stored across upgrades. A short text's key includes its word count, so it equals
    an n-gram's key only by hash chance.
    """
    if n < 1:
        raise UserError("n must be >= 1")
    return set(_text_keys([text], n)[1].tolist())


def ngram_overlap(
    texts: Sequence[str], eval_texts: Sequence[str], n: int = 8, max_train_rows: int | None = None,
    workers: int = -1, min_share: float | None = None,
) -> list[int | None]:
    """Per training text, the lowest index of an eval text sharing an n-gram, else None.

    With `max_train_rows`, n-grams found in more training texts than that are ignored (see the
    module docstring); None compares every n-gram. With `min_share`, an eval text counts only
    when the training text holds at least that share of its distinct n-grams and at least
    MIN_HELD of them (the ignored ones count in the eval text's total, never as held; a text
    shorter than n words has one key, held by equal texts only). It needs `max_train_rows`:
    without it, every row would be paired with every eval text that has a stock phrase.
    ``workers`` threads (-1: every usable core) key chunks of the eval and training texts
    (polars releases the GIL); the result does not depend on it.

    Only training keys that some eval text has can flag a row, so each chunk keeps just those
    (row, key) pairs, and the rows per key are counted over them. With `max_train_rows`, a
    key's pairs are dropped as soon as its count passes the limit: counts only grow, so it can
    never count again, and what is kept stays under ``max_train_rows`` pairs per eval key.
    """
    if n < 1:
        raise UserError("n must be >= 1")
    if min_share is not None:
        if not 0.0 < min_share <= 1.0:
            raise UserError(f"min_share must be in (0, 1], got {min_share}")
        if max_train_rows is None:
            raise UserError("min_share needs max_train_rows: without it, every stock phrase pairs "
                            "each row with each eval text that has it")
    from m1data.stages.fuzzy import _text_list, _threads  # the matcher's checks

    texts, eval_texts = _text_list(texts, "texts"), _text_list(eval_texts, "eval_texts")
    first = np.full(len(texts), np.iinfo(np.int64).max, dtype=np.int64)
    with ThreadPoolExecutor(_threads(workers)) as pool:
        table = _EvalKeys.of(eval_texts, n, pool)
        counts = np.zeros(len(table.keys), dtype=np.int64)
        kept_rows, kept_keys = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        for rows, index in pool.map(lambda chunk: table.pairs(texts, chunk, n), _chunks(texts)):
            if max_train_rows is None:
                np.minimum.at(first, rows, table.first_eval[index])
                continue
            counts += np.bincount(index, minlength=len(counts))
            kept_rows, kept_keys = np.concatenate([kept_rows, rows]), np.concatenate([kept_keys, index])
            below = counts[kept_keys] <= max_train_rows
            kept_rows, kept_keys = kept_rows[below], kept_keys[below]
    if min_share is None:
        np.minimum.at(first, kept_rows, table.first_eval[kept_keys])
    else:
        np.minimum.at(first, *table.held(kept_rows, kept_keys, min_share))
    none = first == np.iinfo(np.int64).max
    return [None if miss else hit for miss, hit in zip(none.tolist(), first.tolist())]


def _chunks(texts: list[str]) -> Iterator[tuple[int, int]]:
    """Row ranges of about CHUNK_CHARS characters (see m1data.stages.fuzzy._char_chunks)."""
    from m1data.stages.fuzzy import _char_chunks

    lens = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    return _char_chunks(lens, CHUNK_CHARS)


class _EvalKeys:
    """The eval texts' distinct keys, sorted, each with the lowest eval index that has it; and
    which eval texts have each key (``members``), with each text's number of distinct keys and
    whether it is shorter than n words (``short``: its one key is its whole word sequence)."""

    def __init__(self, keys: np.ndarray, first_eval: np.ndarray, members: pl.DataFrame,
                 keys_per_eval: np.ndarray, short: np.ndarray) -> None:
        self.keys, self.first_eval = keys, first_eval
        self.members, self.keys_per_eval, self.short = members, keys_per_eval, short
        self.frame = pl.DataFrame({"key": pl.Series(keys, dtype=pl.UInt64),
                                   "index": np.arange(len(keys), dtype=np.int64)})
        # A bitmap of the keys' low bits rules out most training keys with one lookup each
        # (keys are mixed: their low bits are random); only the few that pass are joined.
        size = 1 << max(10, min(26, int(len(keys) * 8).bit_length()))
        self.mask = np.uint64(size - 1)
        self.bits = np.zeros(size, dtype=bool)
        self.bits[keys & self.mask] = True

    @classmethod
    def of(cls, eval_texts: list[str], n: int, pool: ThreadPoolExecutor) -> _EvalKeys:
        def chunk_keys(chunk: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            rows, keys, lens = _text_keys(eval_texts[chunk[0]:chunk[1]], n)
            return rows + chunk[0], keys, lens

        parts = list(pool.map(chunk_keys, _chunks(eval_texts)))
        rows = np.concatenate([np.zeros(0, dtype=np.int64)] + [r for r, _, _ in parts])
        keys = np.concatenate([np.zeros(0, dtype=np.uint64)] + [k for _, k, _ in parts])
        words = np.concatenate([np.zeros(0, dtype=np.int64)] + [w for _, _, w in parts])
        order = np.lexsort((rows, keys))
        keys, rows = keys[order], rows[order]
        first = np.ones(len(keys), dtype=bool)
        first[1:] = keys[1:] != keys[:-1]
        pair = first.copy()  # the first of each distinct (key, eval text)
        pair[1:] |= rows[1:] != rows[:-1]
        index = np.cumsum(first) - 1  # each pair's position among the distinct keys
        members = pl.DataFrame({"index": index[pair], "eval": rows[pair]})
        keys_per_eval = np.bincount(rows[pair], minlength=len(eval_texts))
        return cls(keys[first], rows[first], members, keys_per_eval, (words > 0) & (words < n))

    def held(self, rows: np.ndarray, index: np.ndarray, min_share: float) -> tuple[np.ndarray, np.ndarray]:
        """(row, eval text) for each training row and eval text of which the row holds at least
        ``min_share`` of the distinct keys and at least MIN_HELD of them (or the one key of a
        short eval text), given the distinct (row, key) pairs found."""
        held = (pl.DataFrame({"row": rows, "index": index}).join(self.members, on="index")
                .group_by("row", "eval").len())
        evals, count = held["eval"].to_numpy(), held["len"].to_numpy()
        enough = (count >= min_share * self.keys_per_eval[evals]) & ((count >= MIN_HELD) | self.short[evals])
        return held["row"].to_numpy()[enough], evals[enough]

    def pairs(self, texts: list[str], chunk: tuple[int, int], n: int) -> tuple[np.ndarray, np.ndarray]:
        """The distinct (row, eval key) pairs of the chunk's texts, as rows and indexes into
        `keys`: a training key that no eval text has cannot flag its row."""
        rows, keys, _ = _text_keys(texts[chunk[0]:chunk[1]], n)
        maybe = self.bits[keys & self.mask]
        found = (pl.DataFrame({"row": rows[maybe] + chunk[0], "key": pl.Series(keys[maybe], dtype=pl.UInt64)})
                 .join(self.frame, on="key", how="inner").select("row", "index").unique())
        return found["row"].to_numpy(), found["index"].to_numpy()


def _text_keys(texts: list[str], n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, key) for every n-gram of every text (a short text: one key), as int64 and uint64
    arrays, and each text's number of words. A text's keys can repeat (a repeated n-gram)."""
    lens, hashes = _word_hashes(texts)
    ends = np.cumsum(lens)
    row_of_word = np.repeat(np.arange(len(texts), dtype=np.int64), lens)
    words_left = np.repeat(ends, lens) - np.arange(len(hashes), dtype=np.int64)  # this word on
    windows = max(len(hashes) - n + 1, 0)
    gram = hashes[:windows].copy()
    for j in range(1, n):  # Horner: sum of hash[i + j] * BASE**(n - 1 - j)
        gram *= _BASE
        gram += hashes[j:j + windows]
    starts = words_left[:windows] >= n  # windows that end inside their text
    short_rows, short_keys = _short_keys(lens, hashes, words_left, n)
    rows = np.concatenate([row_of_word[:windows][starts], short_rows])
    return rows, _mix(np.concatenate([gram[starts], short_keys])), lens


def _short_keys(lens: np.ndarray, hashes: np.ndarray, words_left: np.ndarray,
                n: int) -> tuple[np.ndarray, np.ndarray]:
    """One key per text of 1 to n-1 words: the same polynomial over all its words, plus its
    word count times a tag."""
    short = (lens > 0) & (lens < n)
    in_short = np.repeat(short, lens)
    powers = np.cumprod(np.r_[np.uint64(1), np.full(n - 1, _BASE, dtype=np.uint64)])  # BASE**k
    terms = hashes[in_short] * powers[words_left[in_short] - 1]
    segment = np.cumsum(lens[short]) - lens[short]
    sums = np.add.reduceat(terms, segment) if len(terms) else np.zeros(0, dtype=np.uint64)
    return np.flatnonzero(short).astype(np.int64), sums + lens[short].astype(np.uint64) * _SHORT_TAG


def _word_hashes(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Words per text (int64) and every word's 64-bit hash (uint64), text after text."""
    words = _lowered(texts).str.extract_all(_word_class() + "+")
    lens = words.list.len().cast(pl.Int64).to_numpy()
    # Texts without words are left out before exploding: polars turns an empty list into a null
    # there, and only versions from 1.3x on can be told not to (`empty_as_null=False`).
    flat = words.filter(pl.Series(lens > 0)).explode()
    if len(flat) != lens.sum():  # pragma: no cover - polars' explode changed its contract
        raise AssertionError("exploded words do not add up to the words per text")
    return lens, flat.hash(_HASH_SEED).to_numpy().astype(np.uint64, copy=False)


def _lowered(texts: list[str]) -> pl.Series:
    """The texts lowercased by Python, as polars strings. A lone surrogate (from a bad
    ``\\ud800`` escape) cannot be UTF-8: it becomes "?", which, like a surrogate, is no word
    character, so the words stay the same."""
    lowered = [text.lower() for text in texts]
    try:
        return pl.Series(lowered, dtype=pl.String)
    except UnicodeEncodeError:
        return pl.Series([text.encode("utf-8", "replace").decode() for text in lowered], dtype=pl.String)


@functools.cache
def _word_class() -> str:
    """Python's ``\\w`` as a regex character class that polars (Rust's regex) reads the same
    way: the runs of code points that ``re`` itself matches (surrogates excluded, polars
    strings cannot hold them). About 0.2 s, once per process."""
    ranges = []
    for lo, hi in ((0, 0xD800), (0xE000, 0x110000)):
        for match in _WORD.finditer("".join(map(chr, range(lo, hi)))):
            ranges.append((lo + match.start(), lo + match.end() - 1))
    return "[" + "".join(f"\\x{{{a:X}}}-\\x{{{b:X}}}" for a, b in ranges) + "]"


def _mix(keys: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer, in place: every key bit depends on every input bit."""
    keys ^= keys >> np.uint64(30)
    keys *= np.uint64(0xBF58476D1CE4E5B9)
    keys ^= keys >> np.uint64(27)
    keys *= np.uint64(0x94D049BB133111EB)
    keys ^= keys >> np.uint64(31)
    return keys


__all__ = [
    "MIN_HELD",
    "ngram_keys",
    "ngram_overlap",
    "tokens",
]
