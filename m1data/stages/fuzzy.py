"""The exact fuzzy matcher behind dedup and decontamination (OpenThoughts semantics, reference s.3).

Plain strings in, matches out: no datasets dependency, so it can run anywhere (a worker, a
notebook, another pipeline). m1data.stages.dedup puts row keys, Datasets and pipeline stages on top.

Similarity is ``rapidfuzz.fuzz.ratio(a, b)`` and a pair matches when it is ``>= threshold``.
The result must equal the all-pairs computation, yet all pairs (1.9e10 at 196K rows) take
hours. So we only score pairs that pass filters that provably keep every matching pair:

Why no pair is missed
---------------------
``ratio = 100 * (1 - indel(a, b) / (|a| + |b|))``, so ``ratio >= t`` implies
``indel(a, b) <= f * (|a| + |b|)`` with ``f = (100 - t) / 100`` (we use ``f + 1e-9`` so that
float rounding inside rapidfuzz can never put a pair on the other side of the bound).

1. Length: ``indel >= ||a| - |b||``, so partners of ``a`` have lengths within
   ``|a| * (1 -+ f) / (1 +- f)``. Rows are sorted by length and only that window is visited.
2. Bag distance: every character of the longest common subsequence occurs in both strings, so
   ``LCS <= sum_c min(h_a[c], h_b[c])`` for the character histograms ``h`` and hence
   ``indel = |a| + |b| - 2 LCS >= sum_c |h_a[c] - h_b[c]|`` (the L1 bag distance).
3. Groups: summing the counts of the characters of each of GROUPS groups can only lower the
   L1 distance (``|sum x - sum y| <= sum |x - y|``), and so can clipping each sum at 255
   (``min(., 255)`` is 1-Lipschitz). With ``G`` those clipped group sums, a match therefore has
   ``sum_g |G_a[g] - G_b[g]| <= f (|a| + |b|) <= ceil(f |a|) + ceil(f |b|)``: the group pass
   (``_group_pass``; ``_narrow_pass`` and ``_min_pass`` in bytes) keeps every pair that satisfies this,
   in integers. Rare characters share a histogram bucket and counts are clipped at 255,
   which only lowers the distances again.

Pairs through the group pass are checked against the full histograms in integers
(``_exact_bag_check``: ``L1 <= floor(f (|a| + |b|))``), and the survivors are scored by
rapidfuzz itself (``process.cpdist`` with ``fuzz.ratio``) and kept iff ``score >= threshold``:
the same float comparison a plain ``fuzz.ratio`` loop makes, so the boundary is exactly
rapidfuzz's (see ``_verify`` for why the comparison is not left to cpdist's ``score_cutoff``).

Exact duplicates are collapsed first (each distinct text is joined once); the earliest
matching row is then recovered from first occurrences, so clusters of any size are handled and
nothing is capped (the reference's ``process.extract`` stopped at 5 matches).

Cost: the filter still visits every length-compatible pair (3.0e9 at 196K benchmark rows,
7.8e10 at 1M), so it is quadratic, but a pair costs about a fifth of a nanosecond on one core:
the group counts are 20 bytes a text, and the loops over them (compiled by numba for the CPU
they run on, at first use, and cached beside this file, per CPU model) take 32 columns per AVX2
instruction and four rows per column load, and each block of columns is read for all the rows
of a band while it is in the L1 cache. ``_min_pass`` takes the bands of texts up to SHORT_TEXT
characters (95% of the pairs) and sums group minima, two operations a group; ``_narrow_pass``
sums absolute differences in saturating bytes, four operations, up to ~2,500 characters;
``_group_pass``, in int16, the rest. At 196K rows they let 188K of the 3.0e9 pairs through in
about 0.4 s on 2 cores; the full histograms leave ~7K for rapidfuzz. Dedup and decontamination
of 196K benchmark rows (against 15K eval items) take 2.2-3.1 s on 2 cores, and of 1M rows
16-21 s, of which the band pass is about 9-11 s (``benchmarks/bench_dedup.py --ab``, ``--steps``).
``workers`` (-1: every core this process may use) is the number of threads that run bands
(the compiled loop releases the GIL) and rapidfuzz's thread count. The bands are independent
units of work (``BandJob.match`` runs any subset and returns them in order), which is how
m1data.running.distributed spreads them over a Ray cluster with the same answer.

Measured alternatives, not used (issue 21: can candidate generation follow the matches rather
than the pairs?). At t=95 the bound allows an Indel edit every ~10 characters (K is about
0.105 |a|), and every exact necessary condition we could index is correspondingly weak. The
group counts show why (``benchmarks/bench_group_subsets.py --rows 196000``: 2M pairs sampled
from the length windows): the median pair is 3.1 times its limit apart (1% of them: 1.8x), but
texts of the median length (163-170 characters, limit about 18) spread only 1.3-3.2 (one standard
deviation) along each of the 20 groups. So a match is told from a non-match only by the sum over
all groups: any cut along one group, or a few, keeps nearly every pair, and such cuts are what
sorting, trees and cells make. The list:

- A bound computed by float32 matrix products (thermometer codes, BLAS), this module's first
  filter: the same removals, 3x slower at 196K rows and 4.4x at 1M.
- q-gram prefix filtering (with location-based prefixes) kept about 1% of all pairs on real
  prompts, because prefixes must hold 20-40% of each string's q-grams.
- Positional chunk signatures (PassJoin family, adapted to Indel: each edit breaks at most one
  of a's disjoint chunks, so of any K+s chunks at least s are intact in b, at a shift u - p with
  |u - p| + ||b| - |a| - (u - p)| <= K; see benchmarks/bench_signatures.py). A row must register
  K+1 of its ~|a|/q chunks, two thirds of them with q=6, so most registered chunks are common
  phrases. Self-join of 196K benchmark rows: 3.2e8 positional collisions to enumerate, 1.7e7
  candidates (2.2e6 with >= 2 hits) against 3.0e9 pairs in length windows, 165 s in numpy. The
  kept fraction does not shrink with size (0.6% at 12K and 196K), and real source prompts keep
  more (3.1% at 12K) than the synthetic rows, so the benchmark generator is not the cause.
  Compiled, it would still lose: a probe of its index costs 19-27 ns (``--probe-cost``: the
  table outgrows the caches), so a row's probes, collisions and candidates come to about 7 us at
  196K rows and 26 us at 1M, against the group pass's 3.5 and 18 us. Registering a row's K+1
  rarest disjoint q-grams at any position rather than its rarest chunks (``--placement free``;
  any disjoint substrings will do) enumerates 1.7x fewer collisions (1.8e8 at 196K rows) and
  keeps 0.36% of the pairs in length windows, but that share too stays put as the rows grow
  (0.33% at 12K): the rows' rarest q-grams grow as common as the rows.
- Indexing the group counts themselves: 16 groups keep 0.005% of length-compatible pairs, but
  an L1 ball of radius ~0.1 |a| cannot be cut out by sorting or trees. Any 1-Lipschitz
  projection (the top principal directions of the histograms included) keeps 97% of the pairs
  in a length window, and a k-d tree (scikit-learn, manhattan) took 37 s for 50K rows, where
  the group pass takes well under a second. Pigeonhole over the groups does not rescue an
  index (benchmarks/bench_group_subsets.py): of m disjoint parts one is within R / m, but two
  10-group halves are again 10-dim balls (0.4% of window pairs kept), and parts small enough to
  index (4-5 groups) keep 7-16%.
- Skipping blocks of texts by their bounding boxes (a one-level tree: blocks of similar group
  counts, split along principal directions; ``benchmarks/bench_group_subsets.py --boxes 64,8``).
  At 1M rows a row must still visit 98.5% of blocks of 64 texts, and 37.8% of blocks of 8, whose
  boxes cost two to three texts' work each: at best 0.7 of the pass, before losing its layout.
- Distances to pivot texts (Indel distance, so 1-Lipschitz in the very metric that decides, not
  in the bag one): on 20K sampled benchmark rows, each of 32 random pivots keeps 72-88% of the
  pairs in a length window, and all 32 together still keep 6.9%, where the group pass keeps
  0.006%. Texts of one length sit at nearly the same distance from any third text.
- Leaving a block of four rows early once all its pairs are over: a fifth of the pairs are
  still within the limit after 8 of the 20 groups, but 78% of 64-column blocks still hold one
  after 12 (196K rows, sampled). Dedup of 500K rows took 7.9 s with 64-column blocks (checked
  after 12 and 16 groups) and 5.0 s with 256 (after 14 and 17), against 4.9 s for the plain pass.
  A cheaper first pass on fewer, coarser counts fails for the same reason: sums of 4 or 5
  groups still let 46% or 26% of the sampled length-window pairs through.
- 512-bit vectors for the byte loop (``NUMBA_CPU_FEATURES`` with ``-prefer-256-bit``, which lets
  LLVM use them on an AVX-512 CPU): dedup of 500K rows 5.14 s against 5.16 s with 256-bit ones.
- AVX-512's sum of absolute differences (``vpsadbw``: eight counts of a pair a 64-bit lane, so
  a text's 24 group counts are three lanes), called from numba through an ``@intrinsic``: four
  rows against eight columns in 12 of them, which only one port executes. One core, 4,096 rows
  against 60,000 columns of random counts: 0.162-0.167 ns a pair, ``_min_pass`` 0.176-0.187
  (1.1x), and it would tie the matcher to one instruction set. Not kept.
- A cheaper pair. ``_min_pass``'s inner loop issues 16 vector operations (8 minima, 8 adds), 6
  loads and 4 stores for 128 pairs and two groups; at 0.21-0.23 ns a pair that is 6-8 cycles,
  near the 4-5 the CPU's vector units allow. Sums kept in registers over all 20 groups must
  read the rows' 80 counts from memory instead (no faster), and more or fewer groups (see
  GROUPS) trade the pass's cost against the full-histogram check's for a slower whole.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import mmap
import numbers
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from rapidfuzz import fuzz, process

from m1data.cores import usable_cores
from m1data.errors import UserError
from m1data.output import bar

log = logging.getLogger(__name__)

__all__ = ["BandJob", "BandRunner", "ContamMatch", "DupMatch", "EvalText", "contamination_pairs", "find_contamination",
           "find_duplicates"]

SLACK = 1e-9
MAX_BUCKETS = 255
BAND_RATIO = 1.05
BAND_ROWS = 384  # rows per band: the unit a thread or a Ray task takes
# character groups: at 196K benchmark rows, 16 / 20 / 24 groups let 863K / 192K / 58K of the 3.0e9
# pairs through; with the full-histogram check, dedup of 1M rows took 19.0 / 17.0 / 19.1 s (2 cores)
GROUPS = 20  # even: _min_pass takes them two at a time
SHARE_CAP = 8000  # above GROUPS * 255, so a capped share still lets every pair through
SHORT_TEXT = 254  # texts up to this length go through _min_pass: no sum of minima overflows a byte
COLUMN_BLOCK = 1024
CANDIDATES_PER_BAND = 4096
VERIFY_CHUNK = 200_000


@dataclass(frozen=True)
class DupMatch:
    """A removed row: ``index`` matched the earlier row ``match_index`` with ``score``."""

    index: int
    match_index: int
    score: float


@dataclass(frozen=True)
class EvalText:
    """One eval item to decontaminate against. ``keyed``: ``text`` is a stem + option-set key
    (compared with the rows' keys), not a bare question (compared with the rows' stems); ``stem``
    and ``options`` are then what the key was made of (m1data.stages.dedup compares the stems on
    their own as well). The matcher itself reads ``text`` only."""

    set_name: str
    item_id: str
    text: str
    keyed: bool = False
    stem: str | None = None
    options: tuple[str, ...] = ()


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
    """Thresholds <= 0 match every pair; we refuse them rather than silently do n^2 work. So do
    thresholds <= 1: that is a 0-1 similarity (MinHash, cosine) on rapidfuzz's 0-100 scale, and at
    0.95 nearly every pair of texts of similar length matched, removing rows that are no copies."""
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):  # numpy's scalars too
        raise TypeError(f"threshold must be a number on the 0-100 scale, got {type(threshold).__name__}: {threshold!r}")
    if not 0.0 < threshold <= 100.0:
        raise UserError(f"threshold must be in (0, 100], got {threshold}")
    if threshold <= 1.0:
        raise UserError(f"threshold {threshold} is on a 0-1 scale; it is a rapidfuzz ratio from 0 to 100 "
                        f"(the paper's is 95): did you mean {threshold * 100:g}?")
    return (100.0 - threshold) / 100.0 + SLACK


def _max_partner_len(lens: np.ndarray, f: float) -> np.ndarray:
    """Longest partner length that can still match (from ||a|-|b|| <= f (|a|+|b|))."""
    longest = np.floor(lens * (1.0 + f) / max(1.0 - f, 1e-12) + 1e-6)
    return np.minimum(longest, 2.0**62).astype(np.int64)


def _min_partner_len(lens: np.ndarray, f: float) -> np.ndarray:
    return np.ceil(lens * (1.0 - f) / (1.0 + f) - 1e-6).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# compiled loops


@functools.cache
def _compiled(function: Callable) -> Callable:
    """`function` compiled by numba for this machine's CPU, on first use. It releases the GIL, so
    bands run in threads; compiled code is cached beside this file (per CPU model), so only the
    first run on a machine compiles (about 2 s). numba is imported here: 0.2 s that a command
    which never matches texts should not pay.

    Where numba finds no writable folder for its cache (beside this file, or under the user's
    home: a read-only install run by a user without a home, as containers and cluster workers
    often are), it refuses to compile at all (RuntimeError "no locator available"); the loops are
    then compiled without a cache, in every process, and a warning says how to keep them."""
    import numba

    try:
        return numba.njit(nogil=True, cache=True)(function)
    except RuntimeError as err:
        if "no locator available" not in str(err):
            raise
        _warn_no_cache()
        return numba.njit(nogil=True)(function)


@functools.cache
def _warn_no_cache() -> None:
    """Once a process: why this process compiles the loops, and how to cache them."""
    log.warning("numba has no writable folder to cache the fuzzy matcher's compiled loops in (neither beside "
                "m1data nor in HOME), so every process compiles them (a few seconds); set NUMBA_CACHE_DIR to a "
                "folder of your own to keep them")


# ---------------------------------------------------------------------------------------------
# character histograms


def _histograms(texts: Sequence[str], workers: int = -1,
                chunk_chars: int = 1 << 23) -> tuple[np.ndarray, np.ndarray]:
    """Character counts, shape (texts, buckets), in bytes: a text's counts together, as the
    full-histogram check reads them one pair at a time.

    Why bucket: sharing one bucket among rare characters keeps the histograms small and only
    weakens the bound. Which characters get their own bucket is read from the first ~1M
    characters only: any choice is safe. Why bytes: a count clipped at 255 keeps the bound
    valid (``|min(x, M) - min(y, M)| <= |x - y|``) and halves what is written (127 MB at 1M
    rows, where the first touch of fresh memory was a third of the histograms' time).
    ASCII texts are counted apart from the others: one "μ" made its whole chunk four bytes a
    character (``_codes``), and at 1M benchmark rows, 9% of them not ASCII, encoding took 1.1 s
    of the 1.7 s; apart, 0.2 s. Chunks are counted in ``workers`` threads: the compiled count
    releases the GIL, so one chunk is counted while the next is encoded.
    """
    lens = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    sample = int(np.searchsorted(np.cumsum(lens), 1 << 20)) + 1
    table, n_buckets = _bucket_table(_codes(texts[:sample]))
    hist = _zeros((len(texts), n_buckets))
    count = _compiled(_count_chars)
    ascii_rows = np.fromiter(map(str.isascii, texts), dtype=bool, count=len(texts))
    batches = [rows[lo:hi] for rows in (np.flatnonzero(ascii_rows), np.flatnonzero(~ascii_rows))
               for lo, hi in _char_chunks(lens[rows], chunk_chars)]

    def count_batch(rows: np.ndarray) -> None:
        count(_codes(list(map(texts.__getitem__, rows.tolist()))), lens[rows], rows, table, hist)

    with ThreadPoolExecutor(_threads(workers)) as pool:
        list(pool.map(count_batch, batches))
    return hist, lens


def _zeros(shape: tuple[int, int]) -> np.ndarray:
    """``np.zeros(shape, np.uint8)`` whose pages are mapped in one call (``MAP_POPULATE``, Linux)
    rather than one fault at a time as the loops first write them. Why: on the 2-core benchmark
    machine (a Firecracker VM) a page's first touch cost ~40 us, so the 125 MB of histograms at
    1M rows took 1.4 s to fault in, and 0.06 s mapped at once; elsewhere it saves less (every
    page is written anyway, so mapping them first costs nothing). Small arrays, and systems
    without MAP_POPULATE, get plain ``np.zeros``."""
    size = shape[0] * shape[1]
    populate = getattr(mmap, "MAP_POPULATE", None)
    if populate is None or size < 1 << 24:
        return np.zeros(shape, np.uint8)
    pages = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | populate)
    return np.frombuffer(pages, dtype=np.uint8).reshape(shape)


def _count_chars(codes, lens, rows, table, counts):  # pragma: no cover - runs compiled (_compiled)
    """counts[rows[j], table[c]] += 1 for each character c of the j-th text, stopping at 255
    (see ``_histograms``). One pass over the characters; numpy needed four arrays as large as
    the text to do the same."""
    at = 0
    for j in range(lens.shape[0]):
        counts_r = counts[rows[j]]
        for k in range(at, at + lens[j]):
            b = table[codes[k]]
            if counts_r[b] < 255:
                counts_r[b] += 1
        at += lens[j]


def _bucket_table(codes: np.ndarray) -> tuple[np.ndarray, int]:
    """Code point -> bucket: the MAX_BUCKETS-1 most frequent own one, the rest share one."""
    freq = np.bincount(codes)
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
# candidate generation: length window + bag distance over character groups (a compiled loop)


@dataclass
class _Side:
    """Distinct texts sorted by length, with their histograms and group counts. Position ``i``
    is the caller's text ``order[i]``; ``hist`` stays in the caller's order (sorting it would
    copy 0.5 GB at 1M rows to save one lookup per candidate pair)."""

    texts: list[str]  # empty in a job sent to filter elsewhere (BandJob.without_texts)
    lens: np.ndarray
    hist: np.ndarray  # (texts, buckets), the caller's order: text i's counts are hist[order[i]]
    order: np.ndarray  # position in the caller's distinct-text list
    groups: np.ndarray  # (GROUPS, texts) uint8: clipped character-group counts
    share: np.ndarray  # (texts,) int16: the text's share of the allowed distance, ceil(f |a|), capped at SHARE_CAP

    @functools.cached_property
    def byte_share(self) -> np.ndarray:
        """``share`` capped at 255 in a byte, what ``_narrow_pass`` reads."""
        return np.minimum(self.share, 255).astype(np.uint8)

    @functools.cached_property
    def need(self) -> np.ndarray:
        """``sum_g G_g - share`` in a byte, what ``_min_pass`` reads for rows: a pair is within
        the limit iff its sum of group minima is at least half the two needs (see
        ``_min_pass``). In [0, 254] for the texts it is read for (at most SHORT_TEXT characters,
        so their group sums are their lengths); clipped elsewhere, where it is never read."""
        total = self.groups.sum(axis=0, dtype=np.int64)
        return np.clip(total - self.share, 0, 255).astype(np.uint8)

    @functools.cached_property
    def halves(self) -> np.ndarray:
        """(2, texts) bytes: ``ceil(need / 2)`` and ``floor(need / 2)``, what ``_min_pass``
        reads for columns (a row of even need pairs with the first, of odd need the second)."""
        need = self.need.astype(np.int64)
        return np.stack([(need + 1) >> 1, need >> 1]).astype(np.uint8)


def _grouping(hist: np.ndarray) -> np.ndarray:
    """Bucket -> group: greedily balanced by total count, so that each group moves with the text.
    Any grouping is safe (see the module docstring); balance only makes the bound tighter."""
    totals = hist.sum(axis=0, dtype=np.int64)
    group = np.zeros(len(totals), dtype=np.int64)
    load = np.zeros(GROUPS, dtype=np.int64)
    for bucket in np.argsort(-totals, kind="stable"):
        group[bucket] = int(np.argmin(load))
        load[group[bucket]] += totals[bucket]
    return group


def _self_side(texts: Sequence[str], f: float, workers: int = -1) -> _Side:
    """The one side of a self-join (dedup): the texts with their own histograms and grouping."""
    hist, lens = _histograms(texts, workers)
    return _side(texts, hist, lens, f, _grouping(hist))


def _side(texts: Sequence[str], hist: np.ndarray, lens: np.ndarray, f: float, grouping: np.ndarray) -> _Side:
    """Why the group counts are counted in the caller's order and then sorted by length: read in
    length order, the histograms' rows are scattered over 255 MB at 1M rows, and counting took
    2.4-4x the CPU time of a pass in order plus the sort of the 20 MB of counts (0.27-0.48 s
    against 0.115 s). The texts are put in length order by ``map`` rather than a list
    comprehension: at 1M rows, 0.21 s against 0.35 s, nearly all of it fetching the scattered
    string objects."""
    order = np.argsort(lens, kind="stable")
    counted = _zeros((GROUPS, len(order)))
    _compiled(_count_groups)(hist, grouping, counted)
    groups = np.take(counted, order, axis=1, out=_zeros(counted.shape))
    share = np.minimum(np.ceil(f * lens[order]), SHARE_CAP).astype(np.int16)
    return _Side(list(map(texts.__getitem__, order.tolist())), lens[order], hist, order, groups, share)


def _count_groups(hist, grouping, groups):  # pragma: no cover - runs compiled (_compiled)
    """groups[g, i] = min(text i's count of group g's characters, 255), group-major, as the group
    pass reads them."""
    sums = np.zeros(groups.shape[0], np.int64)
    for i in range(hist.shape[0]):
        sums[:] = 0
        counts = hist[i]
        for b in range(counts.shape[0]):
            sums[grouping[b]] += counts[b]
        for g in range(groups.shape[0]):
            groups[g, i] = min(sums[g], 255)


def _bands(lens: np.ndarray) -> list[tuple[int, int]]:
    """Row blocks of similar length, the unit of work a thread or a Ray task takes."""
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


def _group_pass(row_groups, col_groups, row_share, col_share, r0, r1, lo, hi, out_r, out_c):  # pragma: no cover
    """Write (i, j) for every row i in [r0, r1) and column j in [lo[i - r0], hi[i - r0]) with
    sum_g |G_g(i) - G_g(j)| <= share(i) + share(j) to out_r/out_c (up to their length); return
    how many there are, so a caller whose buffers were short can run the band again.

    Columns go in blocks of COLUMN_BLOCK so the int16 sums stay in the L1 cache; each group is
    one pass over the block that LLVM vectorises (16 columns per AVX2 instruction). Nothing in
    the function allocates: an allocation in the loop stopped the vectorisation (20x slower).
    """
    capacity = out_r.shape[0]
    found = 0
    acc = np.empty(COLUMN_BLOCK, np.int16)
    for i in range(r0, r1):
        row_limit = row_share[i]
        start, stop = lo[i - r0], hi[i - r0]
        for s in range(start, stop, COLUMN_BLOCK):
            e = min(stop, s + COLUMN_BLOCK)
            part = acc[: e - s]
            need = col_share[s:e]
            x = row_groups[0, i]
            column = col_groups[0, s:e]
            for k in range(e - s):
                v = column[k]
                part[k] = ((v - x) if v >= x else (x - v)) - need[k]
            for g in range(1, row_groups.shape[0]):
                x = row_groups[g, i]
                column = col_groups[g, s:e]
                for k in range(e - s):
                    v = column[k]
                    part[k] += (v - x) if v >= x else (x - v)
            lowest = part[0]
            for k in range(1, e - s):
                lowest = min(lowest, part[k])
            if lowest > row_limit:
                continue
            for k in range(e - s):
                if part[k] <= row_limit:
                    if found < capacity:
                        out_r[found] = i
                        out_c[found] = s + k
                    found += 1
    return found


def _narrow_pass(row_groups, col_groups, row_share, col_share, r0, r1, lo, hi, out_r, out_c):  # pragma: no cover
    """``_group_pass`` for a band whose limits fit a byte (share(i) + share(j) <= 254 for every
    pair, texts under ~2,500 characters: nearly all): the same pairs, about twice as fast.

    Each pair's byte starts at 254 - share(i) - share(j) and adds |G_g(i) - G_g(j)| saturating
    at 255, so it ends under 255 exactly when the sum is within the limit (the sums only grow,
    so a byte that reached 255 stays there and its pair is over). Bytes put 32 columns in an
    AVX2 instruction where int16 put 16, and four rows share each load of a column block (one
    core, 20 groups, blocks from L2: 0.77 ns a pair in int16 one row at a time, 0.56 in bytes,
    0.32 in bytes four rows at a time). Rows past the band's end repeat its last row and emit
    nothing; a row emits only columns in its own window, as the four rows' windows differ a
    little. The loop over the four rows is unrolled by LLVM (written out by hand: no faster).

    Every row of the band reads a block of columns before the next block is read: the block's
    20 KB stay in the L1 cache for the ~100 row quads of a band, where taking each quad's whole
    window in turn read them from L2 or L3 again (one core, ``_min_pass`` on the benchmark rows,
    196K and 1M: 0.25 ns a pair before, 0.21 after; ``bench_dedup.py --kernels --every 8``). A
    quad skips the blocks outside its window, and a block at a window's edge is cut to it.
    """
    capacity = out_r.shape[0]
    found = 0
    part = np.empty((4, COLUMN_BLOCK), np.uint8)
    rows = np.empty(4, np.int64)
    x = np.empty(4, np.uint8)
    for block in range(lo.min(), hi.max(), COLUMN_BLOCK):
        for i in range(r0, r1, 4):
            for r in range(4):
                rows[r] = min(i + r, r1 - 1)
            s = max(block, min(lo[rows[0] - r0], lo[rows[3] - r0]))
            e = min(block + COLUMN_BLOCK, max(hi[rows[0] - r0], hi[rows[3] - r0]))
            if s >= e:
                continue
            need = col_share[s:e]
            for r in range(4):
                base = np.uint8(254 - row_share[rows[r]])
                pr = part[r]
                for k in range(e - s):
                    pr[k] = base - need[k]
            for g in range(row_groups.shape[0]):
                column = col_groups[g, s:e]
                for r in range(4):
                    x[r] = row_groups[g, rows[r]]
                for k in range(e - s):
                    v = column[k]
                    for r in range(4):
                        a = part[r, k]
                        b = np.uint8(a + np.uint8(max(v, x[r]) - min(v, x[r])))
                        part[r, k] = b if b >= a else np.uint8(255)
            for r in range(min(4, r1 - i)):
                pr = part[r]
                lowest = np.uint8(255)
                for k in range(e - s):
                    lowest = min(lowest, pr[k])
                if lowest == 255:
                    continue
                row = rows[r]
                for k in range(max(s, lo[row - r0]) - s, min(e, hi[row - r0]) - s):
                    if pr[k] != 255:
                        if found < capacity:
                            out_r[found] = row
                            out_c[found] = s + k
                        found += 1
    return found


def _min_pass(row_groups, col_groups, row_need, col_halves, r0, r1, lo, hi, out_r, out_c):  # pragma: no cover
    """``_narrow_pass`` for a band of short texts (at most SHORT_TEXT characters, its windows'
    included: 95% of the pairs at 196K benchmark rows): the same pairs, about 1.5x faster (one
    core, those rows: 0.34 ns a pair there, 0.21-0.23 here; ``benchmarks/bench_dedup.py --kernels``).

    Why it is the same test: ``|x - y| = x + y - 2 min(x, y)``, so with ``S`` a text's group
    sum, ``sum_g |G_a - G_b| <= share(a) + share(b)`` iff ``2 M >= need(a) + need(b)`` where
    ``M = sum_g min(G_a, G_b)`` and ``need = S - share``. For short texts no count is clipped,
    so ``S`` is the length and ``need`` is in [0, 254]. ``2 M >= n_a + n_b`` is ``M >= t + h``
    with ``t = ceil(n_a / 2)`` and ``h`` the column's ``ceil(n_b / 2)`` (n_a even) or
    ``floor(n_b / 2)`` (n_a odd), and ``t + h <= 254``. Each pair's byte starts at
    ``255 - t - h`` and adds the minima saturating at 255, so it ends at 255 exactly when
    ``M >= t + h`` (the sums only grow: a byte that reached 255 had already passed). A group
    costs a minimum and a saturating add, where the absolute difference costs three operations.

    Two groups a pass, four rows a column load: each pass over the block reads and writes the
    sums once, so two groups a pass saved a fifth of the time of one; four ran out of vector
    registers and were slower. GROUPS is even.
    """
    capacity = out_r.shape[0]
    found = 0
    part = np.empty((4, COLUMN_BLOCK), np.uint8)
    rows = np.empty(4, np.int64)
    for block in range(lo.min(), hi.max(), COLUMN_BLOCK):
        for i in range(r0, r1, 4):
            for r in range(4):
                rows[r] = min(i + r, r1 - 1)
            s = max(block, min(lo[rows[0] - r0], lo[rows[3] - r0]))
            e = min(block + COLUMN_BLOCK, max(hi[rows[0] - r0], hi[rows[3] - r0]))
            if s >= e:
                continue
            for r in range(4):
                need = row_need[rows[r]]
                half = col_halves[need & 1, s:e]
                base = np.uint8(255 - ((need + 1) >> 1))
                pr = part[r]
                for k in range(e - s):
                    pr[k] = base - half[k]
            p0, p1, p2, p3 = part[0], part[1], part[2], part[3]
            for g in range(0, row_groups.shape[0], 2):
                c0, c1 = col_groups[g, s:e], col_groups[g + 1, s:e]
                a0, a1 = row_groups[g, rows[0]], row_groups[g + 1, rows[0]]
                b0, b1 = row_groups[g, rows[1]], row_groups[g + 1, rows[1]]
                d0, d1 = row_groups[g, rows[2]], row_groups[g + 1, rows[2]]
                e0, e1 = row_groups[g, rows[3]], row_groups[g + 1, rows[3]]
                for k in range(e - s):  # each byte += the pair's two minima, saturating at 255
                    v, w = c0[k], c1[k]
                    m0 = np.uint8(min(v, a0) + min(w, a1))  # <= the row's length: no overflow
                    m1 = np.uint8(min(v, b0) + min(w, b1))
                    m2 = np.uint8(min(v, d0) + min(w, d1))
                    m3 = np.uint8(min(v, e0) + min(w, e1))
                    q0, q1 = np.uint8(p0[k] + m0), np.uint8(p1[k] + m1)
                    q2, q3 = np.uint8(p2[k] + m2), np.uint8(p3[k] + m3)
                    p0[k] = q0 if q0 >= m0 else np.uint8(255)
                    p1[k] = q1 if q1 >= m1 else np.uint8(255)
                    p2[k] = q2 if q2 >= m2 else np.uint8(255)
                    p3[k] = q3 if q3 >= m3 else np.uint8(255)
            for r in range(min(4, r1 - i)):
                pr = part[r]
                highest = np.uint8(0)
                for k in range(e - s):
                    highest = max(highest, pr[k])
                if highest != 255:
                    continue
                row = rows[r]
                for k in range(max(s, lo[row - r0]) - s, min(e, hi[row - r0]) - s):
                    if pr[k] == 255:
                        if found < capacity:
                            out_r[found] = row
                            out_c[found] = s + k
                        found += 1
    return found


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
    f: float
    threshold: float
    triangle: bool

    def bands(self) -> list[tuple[int, int]]:
        return _bands(self.rows.lens)

    def band_cost(self, band: tuple[int, int]) -> int:
        """Pairs the length window lets the band visit: what its group pass costs."""
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
        window[:, 1] = np.maximum(window[:, 1], window[:, 0])
        return window

    def candidates(self, r0: int, r1: int) -> tuple[np.ndarray, np.ndarray]:
        """(row, col) pairs of one band (sorted positions) whose bag distance allows a match:
        the group pass over the length windows, then the full histograms in integers
        (``_exact_bag_check``)."""
        window = self._window(r0, r1)
        lo, hi = np.ascontiguousarray(window[:, 0]), np.ascontiguousarray(window[:, 1])
        group_pass, row_share, col_share = self.group_pass(r1, hi)
        capacity = CANDIDATES_PER_BAND
        while True:
            rr, cc = np.empty(capacity, np.int64), np.empty(capacity, np.int64)
            found = group_pass(self.rows.groups, self.cols.groups, row_share, col_share, r0, r1, lo, hi, rr, cc)
            if found <= capacity:
                return _exact_bag_check(self.rows, self.cols, rr[:found], cc[:found], self.f)
            capacity = found

    def group_pass(self, r1: int, hi: np.ndarray) -> tuple[Callable, np.ndarray, np.ndarray]:
        """The compiled group-pass loop for the band ending at row ``r1`` (with window ends
        ``hi``) and the row and column bounds it reads: ``_min_pass`` when every text of the
        band and its windows is short (SHORT_TEXT), else ``_narrow_pass`` when every pair's
        limit fits a byte, else ``_group_pass``. Lengths ascend, so the band's last row and
        the last column of its windows are the longest texts and have the largest shares."""
        if self.rows.lens[r1 - 1] <= SHORT_TEXT and (hi[-1] == 0 or self.cols.lens[hi[-1] - 1] <= SHORT_TEXT):
            return _compiled(_min_pass), self.rows.need, self.cols.halves
        widest = self.rows.share[r1 - 1] + (self.cols.share[hi[-1] - 1] if hi[-1] > 0 else 0)
        if widest <= 254:
            return _compiled(_narrow_pass), self.rows.byte_share, self.cols.byte_share
        return _compiled(_group_pass), self.rows.share, self.cols.share

    def match(self, bands: Sequence[tuple[int, int]], workers: int = 1,
              advance=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
        """(row, col, score) of every matching pair whose row lies in ``bands``, as positions in
        the callers' lists: the filter's survivors (``filtered``) scored by rapidfuzz (``score``)."""
        return self.score(*self.filtered(bands, workers, advance), workers)

    def filtered(self, bands: Sequence[tuple[int, int]], workers: int = 1,
                 advance=None) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
        """(row, col) sorted positions of the pairs of ``bands`` that pass the filter; it reads
        no text, so a job ``without_texts`` runs it too.

        ``workers`` threads run the bands (the group pass releases the GIL); results are taken
        in band order, so the output does not depend on ``workers``."""
        found_r: list[np.ndarray] = [np.zeros(0, np.int64)]
        found_c: list[np.ndarray] = [np.zeros(0, np.int64)]
        threads = min(_threads(workers), max(len(bands), 1))
        _compiled(_group_pass), _compiled(_narrow_pass), _compiled(_min_pass)  # once, before the threads ask
        with ThreadPoolExecutor(threads) as pool:
            for rr, cc in pool.map(lambda band: self.candidates(*band), bands):
                found_r.append(rr)
                found_c.append(cc)
                if advance is not None:
                    advance()
        return np.concatenate(found_r), np.concatenate(found_c)

    def score(self, rr: np.ndarray, cc: np.ndarray, workers: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row, col, score) of the pairs at sorted positions (rr, cc) that match, as positions
        in the callers' lists."""
        scores = _verify([self.rows.texts[i] for i in rr], [self.cols.texts[j] for j in cc],
                         self.threshold, workers)
        hit = scores >= self.threshold
        return self.rows.order[rr[hit]], self.cols.order[cc[hit]], scores[hit]

    def without_texts(self) -> BandJob:
        """This job without its texts, for ``filtered`` elsewhere. Why: what a Ray task
        receives is unpickled for every task, and the texts were nearly all of it (985K
        texts: 1.6 s a task, where the arrays come without a copy); the few survivors are then
        scored where the texts are (m1data.running.distributed)."""
        rows = dataclasses.replace(self.rows, texts=[])
        cols = rows if self.cols is self.rows else dataclasses.replace(self.cols, texts=[])
        return dataclasses.replace(self, rows=rows, cols=cols)


def _threads(workers: int) -> int:
    """rapidfuzz's convention: -1 is every core this process may run on."""
    if workers < 0:
        return usable_cores()
    return max(1, workers)


# How a caller runs a job's bands: given the job and its bands, return ``job.match(group)`` for
# groups of bands covering each band once (m1data.running.distributed.RayExecutor.band_runner runs them as
# Ray tasks). None runs them here, in order.
BandRunner = Callable[[BandJob, list[tuple[int, int]]], list[tuple[np.ndarray, np.ndarray, np.ndarray]]]


def _exact_bag_check(rows: _Side, cols: _Side, rr: np.ndarray, cc: np.ndarray,
                     f: float) -> tuple[np.ndarray, np.ndarray]:
    """Integer re-check of the bag bound: L1(h_a, h_b) <= floor(f (|a| + |b|))."""
    keep = _bag_distances(rows, cols, rr, cc) <= np.floor(f * (rows.lens[rr] + cols.lens[cc]))
    return rr[keep], cc[keep]


def _bag_distances(rows: _Side, cols: _Side, rr: np.ndarray, cc: np.ndarray) -> np.ndarray:
    """L1 distance of the full histograms of each pair (sorted positions)."""
    out = np.empty(len(rr), np.int64)
    _compiled(_l1_pairs)(rows.hist, cols.hist, rows.order[rr], cols.order[cc], out)
    return out


def _l1_pairs(a_hist, b_hist, a, b, out):  # pragma: no cover - runs compiled (_compiled)
    for p in range(a.shape[0]):
        x, y = a_hist[a[p]], b_hist[b[p]]
        total = 0
        for k in range(x.shape[0]):
            total += abs(np.int32(x[k]) - np.int32(y[k]))
        out[p] = total


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
    job = BandJob(rows, cols, _check_threshold(threshold), threshold, triangle)
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


def _text_list(texts: Sequence[str], what: str = "texts") -> list[str]:
    """The texts as a list of str. A single str would otherwise be matched character by
    character (a silent, wrong answer), and a None or a number fails deep in the histograms."""
    if isinstance(texts, (str, bytes)):
        raise TypeError(f"{what} must be a sequence of str, not a single {type(texts).__name__}")
    if isinstance(texts, Mapping):
        raise TypeError(f"{what} must be a sequence of str, not a mapping (its keys would be matched)")
    out = list(texts)
    for i, text in enumerate(out):
        if not isinstance(text, str):
            raise TypeError(f"{what}[{i}] is {type(text).__name__}, not str: {text!r}")
    return out


def _eval_list(evals: Sequence[EvalText | str]) -> list[EvalText]:
    """Eval items as EvalTexts; a plain str is a bare question of set "eval", id its position
    (as m1data.stages.dedup.eval_items names plain strings)."""
    if isinstance(evals, (str, bytes)):
        raise TypeError(f"evals must be a sequence of EvalText or str, not a single {type(evals).__name__}")
    if isinstance(evals, Mapping):  # the {set: questions} that m1data.stages.dedup.decontaminate takes
        raise TypeError("evals must be a sequence of EvalText or str, not a mapping (its keys would be matched); "
                        "for {set name: questions} use m1data.decontaminate, or give EvalText(set_name, item_id, text)")
    out = []
    for i, item in enumerate(evals):
        if isinstance(item, str):
            item = EvalText("eval", str(i), item)
        elif not isinstance(item, EvalText) or not isinstance(item.text, str):
            raise TypeError(f"evals[{i}] must be an EvalText (with str text) or a str, got {item!r:.80}")
        out.append(item)
    return out


def find_duplicates(texts: Sequence[str], threshold: float = 95.0, workers: int = -1,
                    progress: bool = False, runner: BandRunner | None = None) -> list[DupMatch]:
    """One DupMatch per removed row; the match is the earliest earlier row that matches it.

    A row is removed iff some earlier row matches it, whether or not that earlier row is
    itself removed (the first occurrence stays). ``runner`` runs the band work elsewhere (a
    Ray cluster: m1data.running.distributed); the removals are the same whichever runs it.
    """
    _check_threshold(threshold)
    texts = _text_list(texts)
    if not texts:
        return []
    distinct, row_ids, first = _distinct(texts)
    side = _self_side(distinct, _check_threshold(threshold), workers)
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


def find_contamination(texts: Sequence[str], evals: Sequence[EvalText | str], threshold: float = 95.0,
                       workers: int = -1, progress: bool = False,
                       runner: BandRunner | None = None) -> list[ContamMatch]:
    """One ContamMatch per training row that some eval text matches.

    The reported eval item is the best-scoring one; ties go to the lowest eval index. A plain
    str in ``evals`` is a bare question of set "eval" whose id is its position.
    """
    _check_threshold(threshold)
    texts = _text_list(texts)
    evals = _eval_list(evals)
    if not texts or not evals:
        return []
    train_ids, ev_ids, t, e, scores = _distinct_matches(texts, evals, threshold, workers, progress, runner)
    n_train = int(train_ids.max()) + 1
    _, ev_first = np.unique(ev_ids, return_index=True)
    eval_index = ev_first[e]  # identical eval texts score alike: the lowest index wins
    order = np.lexsort((eval_index, -scores, t))
    t, eval_index, scores = t[order], eval_index[order], scores[order]
    lead = np.ones(len(t), dtype=bool)
    lead[1:] = t[1:] != t[:-1]
    best_eval = np.full(n_train, -1, dtype=np.int64)  # per distinct text: its best eval item
    best_score = np.zeros(n_train, dtype=np.float64)
    best_eval[t[lead]], best_score[t[lead]] = eval_index[lead], scores[lead]
    row_eval = best_eval[train_ids]
    hits = np.flatnonzero(row_eval >= 0)
    out = []
    for j, e, s in zip(hits.tolist(), row_eval[hits].tolist(), best_score[train_ids[hits]].tolist()):
        item = evals[e]
        out.append(ContamMatch(j, item.set_name, item.item_id, item.text, s))
    return out


def contamination_pairs(texts: Sequence[str], evals: Sequence[EvalText | str], threshold: float = 95.0,
                        workers: int = -1, progress: bool = False,
                        runner: BandRunner | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every matching (training row, eval item) pair, where `find_contamination` keeps each row's
    best: row indexes, eval indexes and scores, sorted by row, then eval item. Why: a caller that
    accepts a match only on a further condition (m1data.stages.dedup: the same stem and most of
    the same options) must see every candidate, not the best-scoring one alone."""
    _check_threshold(threshold)
    texts = _text_list(texts)
    evals = _eval_list(evals)
    if not texts or not evals:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    train_ids, ev_ids, t, e, scores = _distinct_matches(texts, evals, threshold, workers, progress, runner)
    pair, rows = _members(t, train_ids)
    e, scores = e[pair], scores[pair]
    pair, items = _members(e, ev_ids)
    rows, scores = rows[pair], scores[pair]
    order = np.lexsort((items, rows))
    return rows[order], items[order], scores[order]


def _distinct_matches(texts: list[str], evals: list[EvalText], threshold: float, workers: int, progress: bool,
                      runner: BandRunner | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each row's distinct text, each eval item's distinct text, and the matching pairs (t, e,
    score) of distinct texts: each text is matched once however often it occurs."""
    train, train_ids, _ = _distinct(texts)
    ev_texts, ev_ids, _ = _distinct([e.text for e in evals])
    hist, lens = _histograms(train + ev_texts, workers)  # one shared alphabet for both sides
    n_train = len(train)
    f = _check_threshold(threshold)
    grouping = _grouping(hist)
    rows = _side(train, hist[:n_train], lens[:n_train], f, grouping)
    cols = _side(ev_texts, hist[n_train:], lens[n_train:], f, grouping)
    t, e, scores = _matching_pairs(rows, cols, threshold, False, workers, progress, runner)
    return train_ids, ev_ids, t, e, scores


def _members(groups: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each entry of ``groups`` (a distinct text) every position i with ``ids[i]`` equal to
    it, as (entry, position) arrays."""
    order = np.argsort(ids, kind="stable")
    counts = np.bincount(ids, minlength=int(groups.max(initial=-1)) + 1)
    starts = np.cumsum(counts) - counts
    reps = counts[groups]
    entry = np.repeat(np.arange(len(groups)), reps)
    offset = np.arange(int(reps.sum())) - np.repeat(np.cumsum(reps) - reps, reps)
    return entry, order[np.repeat(starts[groups], reps) + offset]
