"""Measured alternative to m1data.stages.fuzzy's bag filter: positional chunk signatures (PassJoin family).

    M1DATA_SHARED_DATA=/path/to/shared/data python benchmarks/bench_signatures.py \\
        [--rows 196000] [--source synthetic|real] [--q 6] [--s 1] [--placement fixed|free] [--check]
    python benchmarks/bench_signatures.py --probe-cost [--rows 196000,1000000]

What it measures. Positional chunk signatures are an exact candidate generator for
``fuzz.ratio >= t`` (Indel distance, see "Why it is exact" below): each row registers the
``K + s`` rarest of its disjoint chunks of ``q`` characters (K: the most Indel edits any partner
allows), every q-gram of every longer partner probes them at the shifts the bound allows, and a
pair is a candidate when ``s`` distinct chunks hit. The script counts, for the self-join of
``--rows`` distinct rows at t=95: the registered chunks, the positional collisions the join must
enumerate (its cost), the candidate pairs with >= 1 and >= 2 hits, and the pairs in the length
windows that m1data.stages.fuzzy's bag filter visits. ``--check`` also runs m1data.stages.fuzzy and checks that
every matching pair is a candidate (rows too short for ``K + s`` chunks are left out of both).

Why it is exact: ``ratio >= t`` implies ``indel(a, b) <= K = floor(f (|a| + |b|))``. Take an
optimal alignment. A deletion removes one character of a, an insertion falls between two
characters of a, so each edit breaks at most one of a's disjoint chunks: of any ``K + s`` chunks
at least ``s`` are intact in b. An intact chunk at position p in a lies at u in b with
``|u - p| + |(|b| - |a|) - (u - p)| <= K`` (the edits before it move it by ``u - p``, the edits
after it make up the rest of the length difference). The chunks need only be disjoint, not a
partition of a: ``--placement free`` registers the ``K + s`` rarest disjoint q-grams at any
position instead of the rarest chunks at multiples of q.

Why it is not used (measured on this machine, 2 shared cores, t=95): the bound allows an edit
every ~10 characters (K is about 0.105 |a|), so with q=6 a row must register K+1 of its ~|a|/6
chunks, two thirds of them: most registered chunks are common phrases, and the join enumerates
their collisions.

- synthetic rows (benchmarks/perturb.py), 196K rows (193,193 distinct), q=6, s=1, load 1.7-3.2:
  4.47M chunks registered, 3.18e8 positional collisions enumerated, 1.73e7 candidate pairs
  (2.16e6 with >= 2 hits) against 3.01e9 pairs in length windows (0.58% kept); 165 s in numpy,
  where the bag filter takes 9-16 s for the same rows at that load. (A first prototype with
  q=8: 3.1e8 collisions, 1.93e7 candidates.)
- 11,845 real source prompts (``--source real``: every MedMCQA/MedQA/HeadQA/PubMedQA prompt in
  shared/data once) keep 3.12% of their length-window pairs (162K of 5.2M, 30K with >= 2 hits);
  11,854 synthetic rows keep 0.57% (63K of 11.1M): real rows share more text than the synthetic
  ones, so the benchmark generator is not what makes signatures weak. ``--check`` on the real
  rows: all 34 matching pairs are among the candidates.
- ``--placement free``, q=6, s=1 (load 0.2-1.0): 196K synthetic rows, 4.47M q-grams registered,
  1.85e8 collisions, 1.10e7 candidates (1.69e6 with >= 2 hits), 0.36% of the window pairs kept,
  157 s; 12K synthetic rows 0.33% kept (fixed: 0.57%), 12K real prompts 1.79% (fixed: 3.12%).
  Free placement avoids the commonest phrases, so it enumerates 1.7x fewer collisions and keeps
  1.6x fewer pairs than fixed chunks, but its kept share does not shrink with size either: a
  row must still register a q-gram in every ~9 characters, and on these rows even the rarest of
  them grow as common as the rows (at 1M rows this script's numpy join ran out of this machine's
  23 GB after 35 minutes). ``--check``: all 338 matching pairs of the 12K synthetic rows,
  and all 34 of the real ones, are among its candidates.

The candidates are a constant fraction of the pairs in length windows at both sizes (0.6% at 12K
and at 196K), so the method is as quadratic as the bag filter, with a costlier unit of work
(a hash probe and a gather per collision instead of a share of a BLAS product).

``--probe-cost``: what one probe of such an index costs, against the group pass's 0.23 ns a pair.
A compiled open-addressing table of int64 keys, half full at most, sized for the chunks ``--rows``
rows register (23 a row, as measured above), probed with random keys on one core. Measured
(2-core VM, load 0.3, three runs): 19 ns a probe at 196K rows (4.5M keys, 128 MiB), 27 ns at 1M
(23M keys, 512 MiB): the table outgrows the caches, so a probe is a memory access. An estimate
from these unit costs, per row (193K distinct rows at 196K; the counts above, scaled by the pairs
at 1M): every q-gram of a row probes once (~200 probes), then the join walks its collisions
(1,650 a row at 196K, ~8,400 at 1M, ~1 ns each if the walk is sequential) and checks its
candidates (90 and ~470, a random read each): about 3.8 + 1.7 + 1.8 = 7 us a row at 196K and
5.4 + 8.4 + 12.7 = 26 us at 1M, against the
group pass's 3.5 and 18 us (its 15,000 and 78,000 window pairs a row). So even compiled, the join
would be slower at both sizes (about 2x at 196K, 1.4x at 1M) and would grow nearly as fast (19x
from 196K to 1M rows, the pass 26x), since its collisions and candidates are a fixed share of
the pairs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import perturb

from m1data.stages.fuzzy import _check_threshold, _codes, _distinct, _matching_pairs, _max_partner_len, _self_side

_MUL = np.uint64(0x100000001B3)
_MIX = np.uint64(0x9E3779B97F4A7C15)
PROBE_GRAMS = 1 << 21


def gram_hashes(codes: np.ndarray, q: int) -> np.ndarray:
    """Polynomial hash of the q-gram starting at every position (equal grams hash equal, so a
    collision of the hash only adds candidates)."""
    m = len(codes) - q + 1
    h = codes[:m].astype(np.uint64)
    for j in range(1, q):
        h = h * _MUL + codes[j:j + m]
    return h


def _rarest_windows(freq: np.ndarray, starts: np.ndarray, lens: np.ndarray, need: np.ndarray, q: int,
                    sel: np.ndarray, signed: np.ndarray) -> None:
    """``--placement free``: keep in ``sel`` only each signed row's ``need`` rarest disjoint q-grams
    at any position (greedy, rarest first); a row where fewer fit is no longer signed."""
    import numba

    @numba.njit(cache=False)
    def pick(freq, starts, lens, need, q, sel, signed):  # type: ignore[no-untyped-def]
        for r in range(lens.shape[0]):
            if not signed[r]:
                continue
            m = lens[r] - q + 1
            at = starts[r]
            order = np.argsort(freq[at:at + m], kind="mergesort")
            taken = np.zeros(lens[r], np.bool_)
            got = 0
            for u in order:
                keep = got < need[r] and not taken[u:u + q].any()
                if keep:
                    taken[u:u + q] = True
                    got += 1
                sel[at + u] = keep
            signed[r] = got == need[r]

    pick(freq, starts, lens, need, q, sel, signed)


def measure(texts: list[str], q: int, s: int, threshold: float, free: bool = False) -> dict:
    f = _check_threshold(threshold)
    lens = np.array([len(t) for t in texts], dtype=np.int64)
    order = np.argsort(lens, kind="stable")
    texts = [texts[i] for i in order]
    lens = lens[order]
    n = len(texts)
    longest = _max_partner_len(lens, f)
    k = np.floor(f * (lens + longest)).astype(np.int64)
    signed = (lens - q + 1 if free else lens // q) >= k + s
    codes = _codes(texts).astype(np.uint64)
    starts = np.cumsum(lens) - lens
    h = gram_hashes(codes, q)
    owner = np.repeat(np.arange(n), lens)[: len(h)]
    pos = np.arange(len(h)) - starts[owner]
    valid = pos <= lens[owner] - q
    bucket = ((h * _MIX) >> np.uint64(40)).astype(np.int64)
    freq = np.bincount(bucket[valid], minlength=1 << 24)  # hashed counts: any estimate is safe
    # registration: the k + s rarest disjoint chunks of every signed row
    if free:
        sel = valid & signed[owner]
        _rarest_windows(freq[bucket], starts, lens, k + s, q, sel, signed)
        sel &= signed[owner]
    else:
        sel = valid & signed[owner] & (pos % q == 0)
    ch, co, cp, fr = h[sel], owner[sel], pos[sel], freq[bucket[sel]]
    o = np.lexsort((fr, co))
    ch, co, cp = ch[o], co[o], cp[o]
    rank = np.arange(len(co)) - np.searchsorted(co, co)
    keep = rank < k[co] + s
    ch, co, cp = ch[keep], co[keep], cp[keep]
    key = ((ch * _MIX) >> np.uint64(24) << np.uint64(24)) | cp.astype(np.uint64)  # (hash, position)
    o = np.argsort(key, kind="stable")
    key, co, cp = key[o], co[o], cp[o]
    collisions = 0
    found = []
    grams = np.flatnonzero(valid)
    for g0 in range(0, len(grams), PROBE_GRAMS):
        g = grams[g0:g0 + PROBE_GRAMS]
        b, u = owner[g], pos[g]
        reach = np.floor(f * (lens[b] + longest[b])).astype(np.int64)  # |u - p| <= K
        hk = (h[g] * _MIX) >> np.uint64(24) << np.uint64(24)
        lo = np.searchsorted(key, hk | np.maximum(u - reach, 0).astype(np.uint64), "left")
        hi = np.searchsorted(key, hk | (u + reach).astype(np.uint64), "right")
        c = hi - lo
        nz = np.flatnonzero(c)
        c = c[nz]
        collisions += int(c.sum())
        src = np.repeat(nz, c)
        at = np.repeat(lo[nz] - np.cumsum(c) + c, c) + np.arange(int(c.sum()))
        a, bb = co[at], b[src]
        d = u[src] - cp[at]
        delta = lens[bb] - lens[a]
        ok = (a < bb) & (np.abs(d) + np.abs(delta - d) <= np.floor(f * (lens[a] + lens[bb])))
        found.append(np.unique((a[ok] * n + bb[ok]) * (1 << 24) + cp[at][ok]))  # (pair, chunk)
    hits = np.unique(np.concatenate(found)) >> 24 if found else np.zeros(0, np.int64)
    pairs, counts = np.unique(hits, return_counts=True)
    lo_w = np.arange(1, n + 1)
    hi_w = np.searchsorted(lens, longest, side="right")
    return {"order": order, "signed": signed, "registered": len(key), "collisions": collisions,
            "pairs": pairs, "counts": counts, "windows": int(np.maximum(hi_w - lo_w, 0).sum()), "n": n}


def probe_cost(rows: int, chunks_per_row: int = 23, probes: int = 20_000_000) -> float:
    """Nanoseconds a probe of a hash table holding ``rows * chunks_per_row`` random keys (at most
    half full), with random keys of which 1% are present."""
    import numba

    @numba.njit
    def build(keys, table):  # type: ignore[no-untyped-def]
        mask = table.shape[0] - 1
        for k in keys:
            h = (k * 0x9E3779B97F4A7C15) & mask
            while table[h] != 0:
                h = (h + 1) & mask
            table[h] = k

    @numba.njit
    def probe(queries, table):  # type: ignore[no-untyped-def]
        mask = table.shape[0] - 1
        hits = 0
        for k in queries:
            h = (k * 0x9E3779B97F4A7C15) & mask
            while table[h] != 0:
                if table[h] == k:
                    hits += 1
                    break
                h = (h + 1) & mask
        return hits

    rng = np.random.default_rng(0)
    keys = rng.integers(1, 1 << 62, rows * chunks_per_row, dtype=np.int64)
    table = np.zeros(1 << int(np.ceil(np.log2(2 * len(keys)))), np.int64)
    build(keys, table)
    queries = rng.integers(1, 1 << 62, probes, dtype=np.int64)
    queries[::100] = keys[: len(queries[::100])]
    probe(queries[:1000], table)  # compile
    start = time.perf_counter()
    hits = probe(queries, table)
    elapsed = time.perf_counter() - start
    assert hits >= len(queries[::100])
    print(f"{rows:,} rows: {len(keys):,} keys in {table.nbytes / 2**20:.0f} MiB; "
          f"{elapsed / probes * 1e9:.1f} ns a probe; load {os.getloadavg()[0]:.1f}", flush=True)
    return elapsed / probes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default="196000", help="rows (--probe-cost: a comma-separated list)")
    ap.add_argument("--probe-cost", action="store_true", help="ns a probe of an index of --rows rows")
    ap.add_argument("--source", choices=["synthetic", "real"], default="synthetic")
    ap.add_argument("--q", type=int, default=6)
    ap.add_argument("--s", type=int, default=1)
    ap.add_argument("--placement", choices=["fixed", "free"], default="fixed",
                    help="chunks at multiples of q, or the rarest disjoint q-grams at any position")
    ap.add_argument("--threshold", type=float, default=95.0)
    ap.add_argument("--check", action="store_true", help="every matching pair must be a candidate")
    args = ap.parse_args()
    if args.probe_cost:
        for n in args.rows.split(","):
            probe_cost(int(n))
        return
    rows = perturb.rows_from(args.source, int(args.rows))
    distinct, _, _ = _distinct(rows)
    print(f"{len(distinct):,} distinct {args.source} rows; load {os.getloadavg()[0]:.1f}", flush=True)
    t0 = time.perf_counter()
    m = measure(distinct, args.q, args.s, args.threshold, free=args.placement == "free")
    elapsed = time.perf_counter() - t0
    counts = m["counts"]
    print(f"q={args.q} s={args.s} {args.placement}: {elapsed:.1f}s; {int(m['signed'].sum()):,} rows signed; "
          f"{m['registered']:,} chunks registered; {m['collisions']:.3e} positional collisions; "
          f"candidates: {len(m['pairs']):,} with >= 1 hit, {int((counts >= 2).sum()):,} with >= 2, "
          f"{int((counts >= args.s).sum()):,} with >= s; pairs in length windows {m['windows']:.3e} "
          f"({len(m['pairs']) / max(m['windows'], 1):.2%} kept); load {os.getloadavg()[0]:.1f}", flush=True)
    if args.check:
        side = _self_side(distinct, _check_threshold(args.threshold))
        u, v, _ = _matching_pairs(side, side, args.threshold, True, 2, False)
        rank = np.empty(m["n"], dtype=np.int64)
        rank[m["order"]] = np.arange(m["n"])  # the measurement's length order (same stable sort)
        a, b = np.minimum(rank[u], rank[v]), np.maximum(rank[u], rank[v])
        both = m["signed"][a]
        wanted = a[both] * m["n"] + b[both]
        cand = m["pairs"][counts >= args.s]
        print(f"matching pairs of signed rows: {int(both.sum()):,}; all among the candidates: "
              f"{bool(np.isin(wanted, cand).all())}")


if __name__ == "__main__":
    main()
