"""Measured alternative to m1data.stages.fuzzy's bag filter: positional chunk signatures (PassJoin family).

    M1DATA_SHARED_DATA=/path/to/shared/data python benchmarks/bench_signatures.py [--rows 20000]

Exact like the bag filter (pigeonhole: with at most k Indel edits, one of a row's k+1 disjoint
chunks is intact in the partner at a shift s with |s| + |(|b| - |a|) - s| <= k; each row keeps
its k+1 rarest chunks, every gram of every partner is probed by (content, position bucket)),
and the survivors go through the same integer bag check and rapidfuzz. The script runs both
filters on the same rows, checks that they keep the same pairs, and prints their times and
candidate counts next to ``uptime``.

Why it is not used: at t=95 a row may have an Indel edit every ~10 characters, so chunks are
at most ~9 characters and a row must keep ~80% of its chunks; on the benchmark rows (synthetic
rows recombine the halves of a few thousand real questions, so many rows share half their text)
positional signature collisions grow quadratically and cost more per pair than the bag filter's
matrix products. Measured (2 cores, shared): 20K rows, load 19: bag filter 4.3 s, signatures
22.7 s, both 736 candidates after the bag check and 550 matches. Counted on 20K/50K rows (q=6):
2.7e5/1.7e6 candidate pairs against 3.1e7/1.96e8 pairs in length windows: 100x fewer pairs, but
the same quadratic growth.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import perturb

from m1data.stages.fuzzy import (BandJob, _char_chunks, _check_threshold, _codes, _coarse, _distinct,
                          _exact_bag_check, _histograms, _max_partner_len, _side, _Side)


SIG_BUCKET = 32  # signature positions are keyed by position // SIG_BUCKET
PROBE_CHARS = 1 << 21  # characters of one probe block (bounds its temporary arrays)
FREQ_SAMPLE_CHARS = 1 << 23
BITMAP_BITS = 28
_MUL = np.uint64(0x9E3779B97F4A7C15)
_MIX = np.uint64(0xBF58476D1CE4E5B9)


def _chunk_len(f: float) -> int:
    """Chunk length q for the signature filter; below 3 the filter is not used.

    A row needs ``k + 1`` disjoint chunks, with k about ``rho = 2f/(1-f)`` of its length, so q
    must stay below ``1/rho``; shorter chunks leave room to pick the rarest ones, longer chunks
    are rarer themselves. On the benchmark rows (t=95: rho=0.105) q=6 gave the fewest
    positional collisions and candidates of q in {5, 6, 8}, hence ``0.65 / rho``.
    """
    rho = 2.0 * f / max(1.0 - f, 1e-12)
    return min(int(0.65 / rho), 16) if rho > 0 else 16


def _max_edits(lens: np.ndarray, f: float) -> np.ndarray:
    """Most Indel edits any length-compatible partner allows: floor(f (|a| + longest partner))."""
    return np.floor(f * (lens + _max_partner_len(lens, f))).astype(np.int64)


def _gram_hashes(texts: Sequence[str], q: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(hash, text, position) of every q-gram that lies inside one text.

    The hash is a polynomial in the code points (the units rapidfuzz compares): equal grams
    hash equal, so a hash collision can only add a candidate, never lose one.
    """
    lens = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    codes = _codes(texts).astype(np.uint64)
    m = len(codes) - q + 1
    if m <= 0:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    h = codes[:m].copy()
    for j in range(1, q):
        h *= _MUL
        h += codes[j:j + m]
    owner = np.repeat(np.arange(len(texts), dtype=np.int64), lens)[:m]
    pos = np.arange(m, dtype=np.int64) - (np.cumsum(lens) - lens)[owner]
    valid = pos <= lens[owner] - q
    return h[valid], owner[valid], pos[valid]


def _key(h: np.ndarray, bucket: np.ndarray) -> np.ndarray:
    return (h + bucket.astype(np.uint64) * _MIX) * _MUL


@dataclass
class _Signatures:
    """Each signed row's k+1 rarest chunks, keyed by (content, position bucket), sorted by key."""

    q: int
    key: np.ndarray
    h: np.ndarray
    row: np.ndarray
    pos: np.ndarray
    bits: np.ndarray  # bitmap of the keys' top bits: a cheap first membership test


def _signable(lens: np.ndarray, f: float, q: int) -> np.ndarray:
    """Rows long enough to hold k+1 disjoint chunks of length q."""
    return lens // q >= _max_edits(lens, f) + 1


def _signatures(rows: _Side, cols: _Side, start: int, f: float, q: int) -> _Signatures:
    """Signatures of rows[start:]. Which k+1 chunks a row keeps is free (the pigeonhole holds
    for any k+1 disjoint chunks); keeping the rarest makes few partners share them. Rarity is
    estimated from a sample of the columns' grams in hashed counters: any estimate is safe."""
    step = max(1, int(cols.lens.sum() // FREQ_SAMPLE_CHARS))
    sample_h, _, _ = _gram_hashes(cols.texts[::step], q)
    counts = np.bincount((sample_h >> np.uint64(42)).astype(np.int64), minlength=1 << 22)
    keys, hs, owners, poss = [], [], [], []
    for lo, hi in _char_chunks(rows.lens[start:], PROBE_CHARS):
        h, owner, pos = _gram_hashes(rows.texts[start + lo:start + hi], q)
        chunk = pos % q == 0
        h, owner, pos = h[chunk], owner[chunk] + start + lo, pos[chunk]
        order = np.lexsort((counts[(h >> np.uint64(42)).astype(np.int64)], owner))
        h, owner, pos = h[order], owner[order], pos[order]
        rank = np.arange(len(owner)) - np.searchsorted(owner, owner, side="left")
        keep = rank <= _max_edits(rows.lens[owner], f)
        h, owner, pos = h[keep], owner[keep], pos[keep]
        keys.append(_key(h, pos // SIG_BUCKET))
        hs.append(h)
        owners.append(owner)
        poss.append(pos)
    key = np.concatenate(keys) if keys else np.zeros(0, np.uint64)
    order = np.argsort(key, kind="stable")
    key = key[order]
    cat = (lambda xs, dt: np.concatenate(xs)[order] if xs else np.zeros(0, dt))
    return _Signatures(q, key, cat(hs, np.uint64), cat(owners, np.int64), cat(poss, np.int64),
                       _bitmap(key))


def _bitmap(sorted_keys: np.ndarray) -> np.ndarray:
    """One bit per value of the keys' top BITMAP_BITS bits (the keys are sorted, so are these)."""
    top = (sorted_keys >> np.uint64(64 - BITMAP_BITS)).astype(np.int64)
    bits = np.zeros(1 << (BITMAP_BITS - 6), dtype=np.uint64)
    if len(top):
        word = top >> 6
        starts = np.flatnonzero(np.r_[True, word[1:] != word[:-1]])
        masks = np.left_shift(np.uint64(1), (top & 63).astype(np.uint64))
        bits[word[starts]] = np.bitwise_or.reduceat(masks, starts)
    return bits


def _in_bitmap(bits: np.ndarray, keys: np.ndarray) -> np.ndarray:
    top = (keys >> np.uint64(64 - BITMAP_BITS)).astype(np.int64)
    return ((bits[top >> 6] >> (top & 63).astype(np.uint64)) & np.uint64(1)).astype(bool)


def _probe(sig: _Signatures, rows: _Side, cols: _Side, c0: int, c1: int, f: float,
           triangle: bool) -> tuple[np.ndarray, np.ndarray]:
    """(row, col) pairs, col in [c0, c1), where some signature chunk of the row occurs in the
    col at a shift the Indel bound allows (see the module docstring)."""
    h, col, pos = _gram_hashes(cols.texts[c0:c1], sig.q)
    col += c0
    reach = _max_edits(cols.lens, f)[col]
    lo_b = np.maximum(pos - reach, 0) // SIG_BUCKET
    n_b = (pos + reach) // SIG_BUCKET - lo_b + 1
    src = np.repeat(np.arange(len(h)), n_b)
    bucket = np.repeat(lo_b - np.cumsum(n_b) + n_b, n_b) + np.arange(len(src))
    key = _key(h[src], bucket)
    hit = _in_bitmap(sig.bits, key)
    src, key = src[hit], key[hit]
    first = np.searchsorted(sig.key, key, side="left")
    count = np.searchsorted(sig.key, key, side="right") - first
    probe = np.repeat(src, count)
    at = np.repeat(first - np.cumsum(count) + count, count) + np.arange(len(probe))
    r, c = sig.row[at], col[probe]
    la, lb = rows.lens[r], cols.lens[c]
    shift = pos[probe] - sig.pos[at]
    ok = (sig.h[at] == h[probe]) & (
        np.abs(shift) + np.abs(lb - la - shift) <= np.floor(f * (la + lb)))
    if triangle:
        ok &= c > r
    pair = np.unique(r[ok] * len(cols.lens) + c[ok])
    return pair // len(cols.lens), pair % len(cols.lens)


@dataclass
class MatchJob:
    """One matching problem cut into units that can be run anywhere, in any grouping.

    Rows shorter than ``split`` positions (too short to hold k+1 chunks) go through the bag
    filter's bands (``BandJob``); the other rows through their signatures, probed one block
    of columns at a time. A unit is ``("bag", r0, r1)`` or ``("sig", c0, c1)``; the units'
    pairs are disjoint (a pair belongs to its row's side of ``split``, and to one column
    block) and their union is every matching pair. Picklable, so m1data.running.distributed runs the
    same ``match`` as Ray tasks.
    """

    bag: BandJob
    split: int
    sig: _Signatures | None

    def bands(self) -> list[tuple[str, int, int]]:
        units = [("bag", r0, min(r1, self.split)) for r0, r1 in self.bag.bands() if r0 < self.split]
        if self.sig is not None:
            units += [("sig", c0, c1) for c0, c1 in _char_chunks(self.bag.cols.lens, PROBE_CHARS)]
        return units

    def band_cost(self, unit: tuple[str, int, int]) -> int:
        kind, a, b = unit
        if kind == "bag":
            return self.bag.band_cost((a, b))
        return int(self.bag.cols.lens[a:b].sum()) * 16  # about a band's cost per probe character

    def candidates(self, unit: tuple[str, int, int]) -> tuple[np.ndarray, np.ndarray]:
        kind, a, b = unit
        if kind == "bag":
            return self.bag.candidates(a, b)
        assert self.sig is not None
        rows, cols = self.bag.rows, self.bag.cols
        rr, cc = _probe(self.sig, rows, cols, a, b, self.bag.f, self.bag.triangle)
        return _exact_bag_check(rows, cols, rr, cc, self.bag.f)

    def match(self, units: Sequence[tuple[str, int, int]], workers: int = 1,
              advance=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
        """(row, col, score) of every matching pair found by ``units``, as positions in the
        callers' lists; the filters' survivors are scored by rapidfuzz here."""
        found_r: list[np.ndarray] = [np.zeros(0, np.int64)]
        found_c: list[np.ndarray] = [np.zeros(0, np.int64)]
        for unit in units:
            rr, cc = self.candidates(unit)
            found_r.append(rr)
            found_c.append(cc)
            if advance is not None:
                advance()
        return np.concatenate(found_r), np.concatenate(found_c), np.zeros(0)



def match_job(rows: _Side, cols: _Side, threshold: float, triangle: bool, signatures: bool) -> MatchJob:
    f = _check_threshold(threshold)
    coarse_rows = _coarse(rows, f)
    coarse_cols = coarse_rows if cols is rows else _coarse(cols, f)
    bag = BandJob(rows, cols, coarse_rows, coarse_cols, f, threshold, triangle)
    q = _chunk_len(f)
    n = len(rows.lens)
    if not signatures or q < 3 or n == 0:
        return MatchJob(bag, n, None)
    unsigned = np.flatnonzero(~_signable(rows.lens, f, q))
    split = int(unsigned[-1]) + 1 if len(unsigned) else 0
    if split == n:
        return MatchJob(bag, n, None)
    return MatchJob(bag, split, _signatures(rows, cols, split, f, q))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--threshold", type=float, default=95.0)
    args = ap.parse_args()
    _, eval_texts = perturb.eval_rows(seed=1)
    rows = perturb.training_rows(args.rows, seed=0)
    distinct, _, _ = _distinct(rows)
    hist, lens = _histograms(distinct)
    side = _side(distinct, hist, lens, _check_threshold(args.threshold))
    print(f"{len(distinct):,} distinct rows; {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    kept = {}
    for use in (False, True):
        t0 = time.perf_counter()
        job = match_job(side, side, args.threshold, True, signatures=use)
        found = [job.candidates(u) for u in job.bands()]
        elapsed = time.perf_counter() - t0
        pairs = set(zip(np.concatenate([r for r, _ in found]).tolist(), np.concatenate([c for _, c in found]).tolist()))
        kept[use] = pairs
        print(f"{'signatures' if use else 'bag filter'}: {elapsed:.1f}s, {len(pairs):,} candidates after the bag check "
              f"(rows by signature: {len(lens) - job.split:,})", flush=True)
    print(f"same candidates: {kept[False] == kept[True]}; load now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
