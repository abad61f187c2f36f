"""The exact fuzzy matcher behind dedup and decontamination (OpenThoughts semantics, reference s.3).

Plain strings in, matches out: no datasets dependency, so it can run anywhere (a worker, a
notebook, another pipeline). m1data.stages.dedup puts row keys, Datasets and pipeline stages on top.

Similarity is ``rapidfuzz.fuzz.ratio(a, b)`` and a pair matches when it is ``>= threshold``.
The result must equal the all-pairs computation, yet all pairs (1.9e10 at 196K rows) take
hours. So we only score pairs that pass two filters that provably keep every matching pair:

Why no pair is missed
---------------------
``ratio = 100 * (1 - indel(a, b) / (|a| + |b|))``, so ``ratio >= t`` implies
``indel(a, b) <= f * (|a| + |b|)`` with ``f = (100 - t) / 100`` (we use ``f + 1e-9`` so that
float rounding inside rapidfuzz can never put a pair on the other side of the bound).

1. Length: ``indel >= ||a| - |b||``, so partners of ``a`` have lengths within
   ``|a| * (1 -+ f) / (1 +- f)``. Rows are sorted by length and only that window is visited.
2. Bag distance: every character of the longest common subsequence occurs in both strings, so
   ``LCS <= sum_c min(h_a[c], h_b[c])`` for the character histograms ``h`` and hence
   ``indel = |a| + |b| - 2 LCS >= sum_c |h_a[c] - h_b[c]|`` (the L1 bag distance). Merging rare
   characters into one shared bucket can only lower the L1 distance, so the bound still holds.
   ``sum_c min(h_a[c], h_b[c])`` is a dot product of "thermometer" codes (feature ``(c, t)`` is
   1 when ``h[c] > t``), so a whole block of pairs is bounded by one float32 matrix product
   (BLAS, all cores). The test is rounded down to integers on each side (``_affine_need``) so
   the float32 product is exact (for texts up to a few million characters), and survivors are
   re-checked in integers. Counts above 65535 are clipped; the bound uses the clipped lengths.

Every surviving pair is then scored by rapidfuzz itself (``process.cpdist`` with
``fuzz.ratio``) and kept iff ``score >= threshold``: the same float comparison a plain
``fuzz.ratio`` loop makes, so the boundary is exactly rapidfuzz's (see ``_verify`` for why the
comparison is not left to cpdist's ``score_cutoff``).

Exact duplicates are collapsed first (each distinct text is joined once); the earliest
matching row is then recovered from first occurrences, so clusters of any size are handled and
nothing is capped (the reference's ``process.extract`` stopped at 5 matches).

Cost: the filter still visits every length-compatible pair (quadratic in rows), but at BLAS
speed with a thermometer only as wide as one band of ~384 similar-length texts needs; on the
benchmark rows it let through ~750 of ~35M pairs at 20K rows. ``workers`` (-1: every core this
process may use) is both the number of threads that run bands at once, each with a
single-threaded BLAS (threadpoolctl), and rapidfuzz's thread count. Bands in threads rather than
BLAS's own threads: the encoding, masking and scanning around each product run in parallel too,
and on a shared machine one descheduled BLAS thread no longer stalls the other (measured on 2
busy cores, load ~10, 100K rows: 22-27 s with BLAS threads, 5-14 s with band threads; at load
~1.5, 196K rows, dedup + decontamination: 12.9-18.8 s -> 11.4-11.7 s). The
bands are independent units of work (``BandJob.match`` runs any subset and returns them in
order), which is how m1data.running.distributed spreads them over a Ray cluster with the same answer.

Measured alternatives, not used (issue 21: can candidate generation follow the matches rather
than the pairs?). At t=95 the bound allows an Indel edit every ~10 characters (K is about
0.105 |a|), and every exact necessary condition we could index is correspondingly weak:

- q-gram prefix filtering (with location-based prefixes) kept about 1% of all pairs on real
  prompts, because prefixes must hold 20-40% of each string's q-grams.
- Positional chunk signatures (PassJoin family, adapted to Indel: each edit breaks at most one
  of a's disjoint chunks, so of any K+s chunks at least s are intact in b, at a shift u - p with
  |u - p| + ||b| - |a| - (u - p)| <= K; see benchmarks/bench_signatures.py). A row must register
  K+1 of its ~|a|/q chunks, two thirds of them with q=6, so most registered chunks are common
  phrases. Self-join of 196K benchmark rows: 3.2e8 positional collisions to enumerate, 1.7e7
  candidates (2.2e6 with >= 2 hits) against 3.0e9 pairs in length windows, 165 s in numpy against
  9-16 s for this filter. The kept fraction does not shrink with size (0.6% at 12K and 196K),
  and real source prompts keep more (3.1% at 12K) than the synthetic rows, so the benchmark
  generator is not the cause.
- Low-dimensional exact bounds: the L1 distance between the counts of G balanced character
  groups is also <= indel. On 400K random length-compatible pairs of the 196K rows it keeps
  31% / 4.9% / 0.27% / 0.01% of them at G = 4 / 8 / 16 / 32 (the full histogram: 0.003%), but an
  L1 ball of radius K ~ 22 cannot be cut out by sorting or grids: each group's count alone
  differs by ~5 between unrelated rows, so no coordinate prunes and the bound must still be
  evaluated pair by pair, which the thermometer product here does fastest.

So the filter stays quadratic (pairs in length windows grow 26x from 196K to 1M rows); the
measured cost per size is printed by ``benchmarks/bench_dedup.py --table``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from rapidfuzz import fuzz, process
from threadpoolctl import threadpool_limits

from m1data.cores import usable_cores
from m1data.errors import UserError
from m1data.output import bar

__all__ = ["BandJob", "BandRunner", "ContamMatch", "DupMatch", "EvalText", "find_contamination", "find_duplicates"]

SLACK = 1e-9
MAX_BUCKETS = 255
BAND_RATIO = 1.05
BAND_ROWS = 384  # features per band: small bands keep the thermometer narrow
ROW_TILE = 384
TILE_FLOATS = 1 << 24
CAP_QUANTILE = 0.9
VERIFY_CHUNK = 200_000
COARSE_BUCKETS = 32
LEVELS_PER_CHAR = 12
FLOOR_QUANTILE = 0.05


@dataclass(frozen=True)
class DupMatch:
    """A removed row: ``index`` matched the earlier row ``match_index`` with ``score``."""

    index: int
    match_index: int
    score: float


@dataclass(frozen=True)
class EvalText:
    """One eval item to decontaminate against. ``keyed``: ``text`` is a stem + option-set key
    (compared with the rows' keys), not a bare question (compared with the rows' stems)."""

    set_name: str
    item_id: str
    text: str
    keyed: bool = False


@dataclass(frozen=True)
class ContamMatch:
    """A removed training row and the eval item that matched it best."""

    index: int
    set_name: str
    item_id: str
    eval_text: str
    score: float


# ---------------------------------------------------------------------------------------------
# bounds


def _check_threshold(threshold: float) -> float:
    """Thresholds <= 0 match every pair; we refuse them rather than silently do n^2 work."""
    if not 0.0 < threshold <= 100.0:
        raise UserError(f"threshold must be in (0, 100], got {threshold}")
    return (100.0 - threshold) / 100.0 + SLACK


def _max_partner_len(lens: np.ndarray, f: float) -> np.ndarray:
    """Longest partner length that can still match (from ||a|-|b|| <= f (|a|+|b|))."""
    longest = np.floor(lens * (1.0 + f) / max(1.0 - f, 1e-12) + 1e-6)
    return np.minimum(longest, 2.0**62).astype(np.int64)


def _min_partner_len(lens: np.ndarray, f: float) -> np.ndarray:
    return np.ceil(lens * (1.0 - f) / (1.0 + f) - 1e-6).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# character histograms


def _histograms(texts: Sequence[str], chunk_chars: int = 1 << 23) -> tuple[np.ndarray, np.ndarray]:
    """Character counts, shape (buckets, texts): feature-major because encoding gathers rows.

    Why bucket: the thermometer width grows with the number of distinct characters; sharing
    one bucket among rare characters keeps the matrix small and only weakens the bound. Which
    characters get their own bucket is read from the first chunk only: any choice is safe.
    """
    lens = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    table: np.ndarray | None = None
    n_buckets = 1
    hist = np.zeros((1, len(texts)), dtype=np.uint16)
    for lo, hi in _char_chunks(lens, chunk_chars):
        codes = _codes(texts[lo:hi])
        if table is None:
            table, n_buckets = _bucket_table(codes)
            hist = np.zeros((n_buckets, len(texts)), dtype=np.uint16)
        row = np.repeat(np.arange(hi - lo, dtype=np.int32), lens[lo:hi])
        # row-major bins: one text's characters land close together (cache friendly)
        flat = np.bincount(row * n_buckets + table[codes], minlength=(hi - lo) * n_buckets)
        # counts above 65535 are clipped: |min(x,M)-min(y,M)| <= |x-y| keeps the bound valid
        hist[:, lo:hi] = np.minimum(flat, 65535).astype(np.uint16).reshape(hi - lo, n_buckets).T
    return hist, lens


def _bucket_table(codes: np.ndarray) -> tuple[np.ndarray, int]:
    """Code point -> bucket: the MAX_BUCKETS-1 most frequent own one, the rest share one."""
    freq = np.bincount(codes[: 1 << 20])  # a sample is enough: any choice is safe
    present = np.flatnonzero(freq)
    top = present[np.argsort(-freq[present], kind="stable")[: MAX_BUCKETS - 1]]
    table = np.full(0x110000, len(top), dtype=np.int32)
    table[top] = np.arange(len(top))
    return table, len(top) + 1


def _codes(texts: Sequence[str]) -> np.ndarray:
    """Unicode code points, the same units rapidfuzz compares for str.

    Latin-1 text (most prompts) is read one byte per character, four times less to move.
    """
    joined = "".join(texts)
    try:
        return np.frombuffer(joined.encode("latin-1"), dtype=np.uint8)
    except UnicodeEncodeError:
        data = joined.encode("utf-32-le", errors="surrogatepass")
        return np.frombuffer(data, dtype=np.uint32)


def _char_chunks(lens: np.ndarray, chunk_chars: int,
                 max_rows: int = 1 << 16) -> Iterator[tuple[int, int]]:
    """Row ranges of about chunk_chars characters (and at most max_rows rows), so temporary
    arrays stay small even for millions of empty strings."""
    ends = np.cumsum(lens)
    lo = 0
    while lo < len(lens):
        start = ends[lo] - lens[lo]
        hi = int(np.searchsorted(ends, start + chunk_chars, side="right"))
        hi = min(max(hi, lo + 1), lo + max_rows)
        yield lo, hi
        lo = hi


# ---------------------------------------------------------------------------------------------
# candidate generation: length window + bag distance through matrix products


@dataclass
class _Side:
    """Distinct texts sorted by length, with their histograms."""

    texts: list[str]
    lens: np.ndarray
    hist: np.ndarray  # (buckets, texts)
    order: np.ndarray  # position in the caller's distinct-text list
    need: np.ndarray  # see _affine_need


def _side(texts: Sequence[str], hist: np.ndarray, lens: np.ndarray, f: float) -> _Side:
    order = np.argsort(lens, kind="stable")
    sorted_hist = np.ascontiguousarray(hist[:, order])
    return _Side([texts[i] for i in order], lens[order], sorted_hist, order,
                 _affine_need(sorted_hist, lens[order], f))


def _affine_need(hist: np.ndarray, lens: np.ndarray, f: float) -> np.ndarray:
    """Each text's integer share of the overlap a match needs.

    With clipped counts h' (sum |a'|), L1(h'_a, h'_b) = |a'| + |b'| - 2 sum_min' <= indel
    <= f (|a| + |b|), so a match needs sum_min' >= g(a) + g(b) with g(a) = (|a'| - f |a|) / 2,
    hence sum_min' >= floor(g(a)) + floor(g(b)). Integer terms keep the float32 product exact.
    """
    clipped = hist.sum(axis=0, dtype=np.int64)
    return np.floor((clipped - f * lens) / 2.0).astype(np.int64)


def _bands(lens: np.ndarray) -> list[tuple[int, int]]:
    """Row blocks of similar length: a block's column window is set by its longest row."""
    out = []
    r0 = 0
    n = len(lens)
    while r0 < n:
        limit = max(int(lens[r0] * BAND_RATIO), int(lens[r0]))
        r1 = int(np.searchsorted(lens, limit, side="right"))
        r1 = min(max(r1, r0 + 1), r0 + BAND_ROWS)
        out.append((r0, r1))
        r0 = r1
    return out


@dataclass
class _Features:
    """The thermometer layout of one row band.

    Levels are ``floor + k * s`` below ``cap`` (``s`` per character, so that it has at most
    LEVELS_PER_CHAR levels); ``floor`` is implied (summed into ``base``) and the row side
    carries ``s`` as its weight. A row count above its cap is not spelled out level by level:
    one indicator feature on the row side times the column's excess ``max(0, y - cap)``
    stands in for it. Per character the product adds, with ``m = min(x, y, cap)``,
    ``floor + s * #{k: floor + k s < m} + [x > cap] * max(0, y - cap)``, and that is
    ``>= min(x, y)``: when ``m <= floor``, ``floor`` alone covers ``m``, else
    ``s * ceil((m - floor) / s) >= m - floor``; and ``min(x, y) <= m + [x > cap] * max(0,
    y - cap)`` (equal when x <= cap, y when x > cap). So the product stays an upper bound on
    sum_min for ANY floor <= cap (quantiles of the band: texts beyond them only get a looser
    bound) while wide counts, outliers and the rare long tails stop widening the matrix.
    """

    chars: np.ndarray
    levels: np.ndarray
    step: np.ndarray  # per feature: the level spacing, the row side's weight
    over: np.ndarray  # characters whose cap is below the band's largest count
    caps: np.ndarray  # their caps
    base: int  # sum of floors


def _features(row_hist: np.ndarray, floor: np.ndarray) -> _Features:
    # floor and cap only set how tight the bound is (any values are safe, see _Features), so
    # they are quantiles of every 4th row; top, which decides the ``over`` characters, is exact
    sample = row_hist[:, ::4]
    n = sample.shape[1]
    k_lo, k_hi = int(FLOOR_QUANTILE * (n - 1)), int(CAP_QUANTILE * (n - 1))
    part = np.partition(sample, [k_lo, k_hi], axis=1)
    top = row_hist.max(axis=1).astype(np.int64)
    floor = np.maximum(floor, part[:, k_lo])
    cap = np.minimum(np.maximum(part[:, k_hi].astype(np.int64), floor), top)
    span = np.maximum(cap - floor, 0)
    stride = np.maximum(span // LEVELS_PER_CHAR, 1)
    width = -(-span // stride)
    chars = np.repeat(np.arange(len(width)), width)
    rank = np.arange(int(width.sum())) - np.repeat(np.cumsum(width) - width, width)
    levels = floor[chars] + stride[chars] * rank
    over = np.flatnonzero(top > cap)
    return _Features(chars, levels.astype(np.uint16), stride[chars].astype(np.float32), over,
                     cap[over].astype(np.int32), int(floor.sum()))


def _encode(hist: np.ndarray, feats: _Features, extra: np.ndarray, is_row: bool) -> np.ndarray:
    """Integer codes (features x texts) plus two affine rows that fold in the threshold."""
    d, m = len(feats.chars), len(feats.over)
    out = np.empty((d + m + 2, hist.shape[1]), dtype=np.float32)
    np.greater(hist[feats.chars], feats.levels[:, None], out=out[:d], casting="unsafe")
    if is_row:
        out[:d] *= feats.step[:, None]
    if m and is_row:
        np.greater(hist[feats.over], feats.caps[:, None], out=out[d:d + m], casting="unsafe")
    elif m:
        out[d:d + m] = np.maximum(hist[feats.over].astype(np.int32) - feats.caps[:, None], 0)
    out[d + m + (0 if is_row else 1)] = extra
    out[d + m + (1 if is_row else 0)] = 1.0
    return out


def _band_pairs(rows: _Side, cols: _Side, r0: int, r1: int, window: np.ndarray,
                ) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of one row band against its column window that pass the float bag test.

    ``window[i - r0]`` is the column range [start, end) row i can match. Columns are encoded
    once per band (encoding costs about as much as the product) and each row tile is
    multiplied only with the columns its own rows can reach.
    """
    c0, c1 = int(window[:, 0].min()), int(window[:, 1].max())
    row_hist = rows.hist[:, r0:r1]
    floor = np.minimum(row_hist.min(1), cols.hist[:, c0:c1].min(1)).astype(np.int64)
    feats = _features(row_hist, floor)
    x_rows = _encode(row_hist, feats, feats.base - rows.need[r0:r1], True)
    width = x_rows.shape[0]
    step = max(256, min(TILE_FLOATS // width, TILE_FLOATS // ROW_TILE))
    out_r, out_c = [], []
    for s0 in range(c0, c1, step):
        s1 = min(c1, s0 + step)
        x_cols = _encode(cols.hist[:, s0:s1], feats, -cols.need[s0:s1], False)
        for t0 in range(0, r1 - r0, ROW_TILE):
            t1 = min(r1 - r0, t0 + ROW_TILE)
            a = max(s0, int(window[t0:t1, 0].min()))
            b = min(s1, int(window[t0:t1, 1].max()))
            if b <= a:
                continue
            margin = x_rows[:, t0:t1].T @ x_cols[:, a - s0:b - s0]
            _mask_below_window(margin, window[t0:t1, 0], a)
            # survivors are rare: one max-reduction finds the few rows worth scanning
            busy = np.flatnonzero(margin.max(axis=1) >= -0.5)
            if len(busy):
                ii, jj = np.nonzero(margin[busy] >= -0.5)
                out_r.append(busy[ii] + (r0 + t0))
                out_c.append(jj + a)
    if not out_r:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(out_r), np.concatenate(out_c)


def _mask_below_window(margin: np.ndarray, starts: np.ndarray, a: int) -> None:
    """Blank columns left of each row's window start (in a self-join: the diagonal and below),
    else every row's trivial self-pair would send it to the slow per-row scan."""
    span = min(margin.shape[1], int(starts.max()) - a)
    if span <= 0:
        return
    rel = starts - a
    if span <= 4096 and np.array_equal(rel, np.arange(int(rel[0]), int(rel[0]) + len(rel))):
        below = _staircase(len(rel), span, int(rel[0]))  # the self-join's usual case
    else:
        below = np.arange(span)[None, :] < rel[:, None]
    np.copyto(margin[:, :span], -1.0, where=below)


@functools.lru_cache(maxsize=16)
def _staircase(n: int, span: int, offset: int) -> np.ndarray:
    """Boolean (n, span) mask of column j < offset + row i."""
    return np.arange(span)[None, :] < (offset + np.arange(n))[:, None]


@dataclass
class BandJob:
    """One matching problem, cut into row bands that can be scored anywhere.

    Picklable and self-contained (texts, histograms, bounds), so a worker process or a Ray task
    can run ``match(bands)`` for any subset of ``bands()``: both the local matcher and
    m1data.running.distributed call exactly this, so their candidate sets, scores and therefore
    removals are the same. The bands' results are disjoint and their union is every matching
    pair; the earliest-partner rule is applied once, afterwards, by the caller.
    """

    rows: _Side
    cols: _Side
    coarse_rows: _Side
    coarse_cols: _Side
    f: float
    threshold: float
    triangle: bool

    def bands(self) -> list[tuple[int, int]]:
        return _bands(self.rows.lens)

    def band_cost(self, band: tuple[int, int]) -> int:
        """Pairs the length window lets the band visit: what its matrix products cost."""
        window = self._window(*band)
        return int(np.maximum(window[:, 1] - window[:, 0], 0).sum())

    def _window(self, r0: int, r1: int) -> np.ndarray:
        window = np.empty((r1 - r0, 2), dtype=np.int64)
        if self.triangle:
            window[:, 0] = np.arange(r0 + 1, r1 + 1)
        else:
            lo_len = _min_partner_len(self.rows.lens[r0:r1], self.f)
            window[:, 0] = np.searchsorted(self.cols.lens, lo_len, side="left")
        window[:, 1] = np.searchsorted(self.cols.lens, _max_partner_len(self.rows.lens[r0:r1], self.f),
                                       side="right")
        return window

    def candidates(self, r0: int, r1: int) -> tuple[np.ndarray, np.ndarray]:
        """(row, col) pairs of one band (sorted positions) whose bag distance allows a match.

        Necessary condition evaluated by the product: ``sum_min - need[a] - need[b] >= 0``
        (see ``_affine_need``); every term is an integer, so float32 computes it exactly. The
        product runs on coarse histograms (``_coarse``) and a strided thermometer
        (``_features``), both of which only loosen the bound; the band's survivors are then
        re-checked against the full histograms in integers (``_exact_bag_check``).
        """
        window = self._window(r0, r1)
        if not (window[:, 1] > window[:, 0]).any():
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        rr, cc = _band_pairs(self.coarse_rows, self.coarse_cols, r0, r1, window)
        keep = (cc >= window[rr - r0, 0]) & (cc < window[rr - r0, 1])
        return _exact_bag_check(self.rows, self.cols, rr[keep], cc[keep], self.f)

    def match(self, bands: Sequence[tuple[int, int]], workers: int = 1,
              advance=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
        """(row, col, score) of every matching pair whose row lies in ``bands``, as positions in
        the callers' lists; the survivors of the filter are scored by rapidfuzz here.

        ``workers`` threads run the bands (each product on a single-threaded BLAS); results are
        taken in band order, so the output does not depend on ``workers``."""
        found_r: list[np.ndarray] = [np.zeros(0, np.int64)]
        found_c: list[np.ndarray] = [np.zeros(0, np.int64)]
        threads = min(_threads(workers), max(len(bands), 1))
        with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(threads) as pool:
            for rr, cc in pool.map(lambda band: self.candidates(*band), bands):
                found_r.append(rr)
                found_c.append(cc)
                if advance is not None:
                    advance()
        rr, cc = np.concatenate(found_r), np.concatenate(found_c)
        scores = _verify([self.rows.texts[i] for i in rr], [self.cols.texts[j] for j in cc],
                         self.threshold, workers)
        hit = scores >= self.threshold
        return self.rows.order[rr[hit]], self.cols.order[cc[hit]], scores[hit]


def _threads(workers: int) -> int:
    """rapidfuzz's convention: -1 is every core this process may run on."""
    if workers < 0:
        return usable_cores()
    return max(1, workers)


# How a caller runs a job's bands: given the job and its bands, return ``job.match(group)`` for
# groups of bands covering each band once (m1data.running.distributed.ray_band_runner runs them as Ray
# tasks). None runs them here, in order.
BandRunner = Callable[[BandJob, list[tuple[int, int]]], list[tuple[np.ndarray, np.ndarray, np.ndarray]]]


def _coarse(side: _Side, f: float) -> _Side:
    """The same texts with only the COARSE_BUCKETS most frequent characters kept apart and
    all others merged into one bucket, for a narrower thermometer.

    Safe: merging buckets can only lower the L1 distance (triangle inequality), and clipping
    the merged count at 65535 too (min(., M) is 1-Lipschitz). ``need`` is recomputed from the
    coarse counts, whose sum plays the role of |a'| in ``_affine_need``.
    """
    k = COARSE_BUCKETS
    if side.hist.shape[0] <= k + 1:
        return side
    rest = np.minimum(side.hist[k:].sum(axis=0, dtype=np.int64), 65535).astype(np.uint16)
    hist = np.concatenate([side.hist[:k], rest[None]])
    return _Side(side.texts, side.lens, hist, side.order, _affine_need(hist, side.lens, f))


def _exact_bag_check(rows: _Side, cols: _Side, rr: np.ndarray, cc: np.ndarray,
                     f: float) -> tuple[np.ndarray, np.ndarray]:
    """Integer re-check of the bag bound: L1(h_a, h_b) <= floor(f (|a| + |b|))."""
    keep = np.zeros(len(rr), dtype=bool)
    for s in range(0, len(rr), VERIFY_CHUNK):
        r, k = rr[s:s + VERIFY_CHUNK], cc[s:s + VERIFY_CHUNK]
        l1 = np.abs(rows.hist[:, r].astype(np.int32) - cols.hist[:, k].astype(np.int32)).sum(0)
        keep[s:s + VERIFY_CHUNK] = l1 <= np.floor(f * (rows.lens[r] + cols.lens[k]))
    return rr[keep], cc[keep]


# ---------------------------------------------------------------------------------------------
# verification


def _verify(a: list[str], b: list[str], threshold: float, workers: int) -> np.ndarray:
    """fuzz.ratio of each pair, 0 where below threshold; the test is ``score >= threshold``.

    Why not ``score_cutoff=threshold``: rapidfuzz's cdist/cpdist apply the cutoff after a
    lossy conversion (rapidfuzz 3.14: a pair scoring exactly 97.43589743589743 came back as 0
    with that very cutoff, and even with cutoff - 1e-6), unlike ``fuzz.ratio`` itself. So the
    cutoff passed down is lowered by 0.1 (it only lets rapidfuzz skip hopeless pairs) and the
    verdict is the plain float comparison, the same one a ``fuzz.ratio`` loop makes.
    """
    out = np.zeros(len(a), dtype=np.float64)
    cutoff = max(0.0, threshold - 0.1)
    for s in range(0, len(a), VERIFY_CHUNK):
        out[s:s + VERIFY_CHUNK] = process.cpdist(
            a[s:s + VERIFY_CHUNK], b[s:s + VERIFY_CHUNK], scorer=fuzz.ratio,
            score_cutoff=cutoff, dtype=np.float64, workers=workers)
    out[out < threshold] = 0.0
    return out


def _matching_pairs(rows: _Side, cols: _Side, threshold: float, triangle: bool, workers: int,
                    progress: bool, runner: BandRunner | None = None,
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, col, score) for every matching pair, as positions in the callers' lists."""
    f = _check_threshold(threshold)
    coarse_rows = _coarse(rows, f)
    coarse_cols = coarse_rows if cols is rows else _coarse(cols, f)
    job = BandJob(rows, cols, coarse_rows, coarse_cols, f, threshold, triangle)
    bands = job.bands()
    if runner is None:
        with bar("bag filter", len(bands), show=progress) as band_bar:
            return job.match(bands, workers, band_bar.advance)
    parts = [(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)), *runner(job, bands)]
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
            np.concatenate([p[2] for p in parts]))


# ---------------------------------------------------------------------------------------------
# public API


def _distinct(texts: Sequence[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Distinct texts in first-seen order, each row's distinct id, each text's first row."""
    ids: dict[str, int] = {}
    row_ids = np.fromiter((ids.setdefault(t, len(ids)) for t in texts), dtype=np.int64,
                          count=len(texts))
    _, first = np.unique(row_ids, return_index=True)
    return list(ids), row_ids, first.astype(np.int64)


def find_duplicates(texts: Sequence[str], threshold: float = 95.0, workers: int = -1,
                    progress: bool = False, runner: BandRunner | None = None) -> list[DupMatch]:
    """One DupMatch per removed row; the match is the earliest earlier row that matches it.

    A row is removed iff some earlier row matches it, whether or not that earlier row is
    itself removed (the first occurrence stays). ``runner`` runs the band work elsewhere (a
    Ray cluster: m1data.running.distributed); the removals are the same whichever runs it.
    """
    _check_threshold(threshold)
    texts = list(texts)
    if not texts:
        return []
    distinct, row_ids, first = _distinct(texts)
    hist, lens = _histograms(distinct)
    side = _side(distinct, hist, lens, _check_threshold(threshold))
    u, v, scores = _matching_pairs(side, side, threshold, True, workers, progress, runner)
    best_row, best_score = _earliest_partner(len(distinct), first, u, v, scores)
    own_first = first[row_ids]
    partner = best_row[row_ids]
    # a row that is not its text's first occurrence has an identical earlier row (score 100),
    # unless an even earlier fuzzy match beats it; a first occurrence only has fuzzy matches
    fuzzy = partner < own_first
    removed = np.flatnonzero(fuzzy | (own_first != np.arange(len(texts))))
    match = np.where(fuzzy, partner, own_first)[removed]
    score = np.where(fuzzy, best_score[row_ids], 100.0)[removed]
    return [DupMatch(j, m, s) for j, m, s in zip(removed.tolist(), match.tolist(), score.tolist())]


def _earliest_partner(n: int, first: np.ndarray, u: np.ndarray, v: np.ndarray,
                      scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each distinct text, the first row of its earliest-appearing fuzzy partner."""
    a = np.concatenate([u, v])
    b = np.concatenate([v, u])
    s = np.concatenate([scores, scores])
    partner_row = first[b]
    order = np.lexsort((partner_row, a))
    a, partner_row, s = a[order], partner_row[order], s[order]
    lead = np.ones(len(a), dtype=bool)
    lead[1:] = a[1:] != a[:-1]
    best_row = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    best_score = np.zeros(n, dtype=np.float64)
    best_row[a[lead]] = partner_row[lead]
    best_score[a[lead]] = s[lead]
    return best_row, best_score


def find_contamination(texts: Sequence[str], evals: Sequence[EvalText], threshold: float = 95.0,
                       workers: int = -1, progress: bool = False,
                       runner: BandRunner | None = None) -> list[ContamMatch]:
    """One ContamMatch per training row that some eval text matches.

    The reported eval item is the best-scoring one; ties go to the lowest eval index.
    """
    _check_threshold(threshold)
    texts = list(texts)
    evals = list(evals)
    if not texts or not evals:
        return []
    train, train_ids, _ = _distinct(texts)
    ev_texts, _, ev_first = _distinct([e.text for e in evals])
    hist, lens = _histograms(train + ev_texts)  # one shared alphabet for both sides
    n_train = len(train)
    f = _check_threshold(threshold)
    rows = _side(train, hist[:, :n_train], lens[:n_train], f)
    cols = _side(ev_texts, hist[:, n_train:], lens[n_train:], f)
    t, e, scores = _matching_pairs(rows, cols, threshold, False, workers, progress, runner)
    eval_index = ev_first[e]  # identical eval texts score alike: the lowest index wins
    order = np.lexsort((eval_index, -scores, t))
    t, eval_index, scores = t[order], eval_index[order], scores[order]
    lead = np.ones(len(t), dtype=bool)
    lead[1:] = t[1:] != t[:-1]
    best: dict[int, tuple[int, float]] = {
        int(a): (int(b), float(s)) for a, b, s in zip(t[lead], eval_index[lead], scores[lead])}
    out = []
    for j, d in enumerate(train_ids):
        hit = best.get(int(d))
        if hit is not None:
            item = evals[hit[0]]
            out.append(ContamMatch(j, item.set_name, item.item_id, item.text, hit[1]))
    return out
