"""Measured alternative to m1data.stages.fuzzy's group pass: pigeonhole over subsets of the groups.

    M1DATA_SHARED_DATA=/path/to/shared/data python benchmarks/bench_group_subsets.py \\
        [--rows 200000] [--source synthetic|real] [--pairs 2000000] [--boxes 64,8]

What it measures. A pair the group pass keeps has ``sum_g |G_a[g] - G_b[g]| <= R`` over the
GROUPS group counts (R = share(a) + share(b)). Split the groups into m disjoint parts: if every
part's sum exceeded ``floor(R / m)``, the total would exceed R, so some part is within
``floor(R / m)``. Each part is then a lower-dimensional ball query with a smaller radius, the
kind an index (a grid, a tree, multi-index hashing) could answer without visiting every pair.
The script samples pairs uniformly from the length windows and prints how far apart they are
against their limit, how much texts of the median length spread along each group, and, for
m = 1..20, the share of them that some part keeps (what an index over the parts would still have to enumerate) and
each part's own share.

Why it is not used (measured on this machine, t=95, 200K synthetic rows, 2e6 sampled pairs):

- m=2 (two 10-group halves) keeps 0.41% of the window pairs, but each half is again a 10-dim
  L1 ball query, the problem a k-d tree already lost (see the fuzzy.py docstring);
- m=4 or 5 makes the parts 5- or 4-dimensional, but keeps 7.3% or 16%, and a ball of radius
  ``R / m`` (3-4 at the median length) holds 130-680 lattice points to probe per row and part;
- m=10 keeps 65%, m=20 (one group a part) 96%.

So each part only becomes indexable once it is too weak to prune: with counts that vary by about
sqrt(length) against a radius of a tenth of the length, selectivity needs many dimensions, and
many dimensions defeat every index that does not visit the pairs.

``--boxes`` measures the one-level index that skips blocks: the texts of the median text's length
window are split into blocks of similar group counts (a tree of median splits along each part's
top principal direction), and a row can skip a block when the L1 distance from its counts to the
block's bounding box exceeds its limit. Printed: the share of blocks a row must still visit, for
300 sampled rows. At 1M synthetic rows (a window of 231K texts): blocks of 64 texts 98.5%, blocks
of 8 texts 37.8%, where checking a box (two bounds a group) costs as much as two or three texts;
blocks in length order (what the group pass visits) 100% and 98.7%.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import perturb

from m1data.stages.fuzzy import GROUPS, _check_threshold, _distinct, _max_partner_len, _min_partner_len, _self_side


def sample_window_pairs(lens: np.ndarray, f: float, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` pairs drawn uniformly from the pairs in length windows (texts sorted by length)."""
    lo = np.searchsorted(lens, _min_partner_len(lens, f), "left")
    hi = np.searchsorted(lens, _max_partner_len(lens, f), "right")
    width = hi - lo
    rows = rng.choice(len(lens), n, p=width / width.sum())
    cols = lo[rows] + (rng.random(n) * width[rows]).astype(np.int64)
    return rows, cols


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--source", choices=["synthetic", "real"], default="synthetic")
    ap.add_argument("--pairs", type=int, default=2_000_000)
    ap.add_argument("--threshold", type=float, default=95.0)
    ap.add_argument("--boxes", default="", help="block sizes for the bounding-box measurement, e.g. 64,8")
    args = ap.parse_args()
    rows = perturb.rows_from(args.source, args.rows)
    distinct, _, _ = _distinct(rows)
    f = _check_threshold(args.threshold)
    side = _self_side(distinct, f)
    rr, cc = sample_window_pairs(side.lens, f, args.pairs, np.random.default_rng(0))
    rr, cc = rr[rr != cc], cc[rr != cc]
    diff = np.abs(side.groups[:, rr].astype(np.int32) - side.groups[:, cc]).T  # (pairs, GROUPS)
    radius = side.share[rr].astype(np.int32) + side.share[cc]
    print(f"{len(distinct):,} distinct {args.source} rows, median length {int(np.median(side.lens))}; "
          f"{len(rr):,} sampled window pairs; load {os.getloadavg()[0]:.1f}")
    ratio = diff.sum(axis=1) / radius
    print("distance / limit of the sampled pairs, quantiles 1/10/50/90%: "
          + " ".join(f"{q:.2f}" for q in np.quantile(ratio, [0.01, 0.1, 0.5, 0.9])))
    mid = slice(len(side.lens) // 2 - 5000, len(side.lens) // 2 + 5000)  # 10K texts of about the median length
    print(f"texts of length {side.lens[mid.start]}-{side.lens[mid.stop - 1]} (limit about "
          f"{2 * int(side.share[len(side.lens) // 2])}): standard deviation along each group "
          + " ".join(f"{x:.1f}" for x in side.groups[:, mid].std(axis=1)))
    for m in (1, 2, 3, 4, 5, 10, GROUPS):
        kept = np.zeros(len(rr), dtype=bool)
        shares = []
        for part in np.array_split(np.arange(GROUPS), m):
            hit = diff[:, part].sum(axis=1) <= radius // m
            shares.append(f"{hit.mean():.2%}")
            kept |= hit
        print(f"m={m:2d}: some part keeps {kept.mean():7.2%}; each part: {' '.join(shares)}")
    for size in (int(b) for b in args.boxes.split(",") if b):
        window = median_window(side.lens, f)
        groups = side.groups[:, window].T.astype(np.int32)
        share = side.share[window].astype(np.int32)
        rows = np.random.default_rng(1).choice(len(groups), 300, replace=False)
        similar = blocks_kept(groups, share, similar_blocks(groups, size), rows)
        in_order = blocks_kept(groups, share, np.array_split(np.arange(len(groups)), len(groups) // size), rows)
        print(f"blocks of {size} in the window of length {side.lens[len(side.lens) // 2]} ({len(groups):,} texts): "
              f"a row visits {similar:.1%} of blocks of similar counts, {in_order:.1%} of blocks in length order")


def median_window(lens: np.ndarray, f: float) -> slice:
    """The texts that the median-length text could match on length alone."""
    mid = lens[len(lens) // 2 : len(lens) // 2 + 1]
    lo = np.searchsorted(lens, _min_partner_len(mid, f)[0], "left")
    return slice(int(lo), int(np.searchsorted(lens, _max_partner_len(mid, f)[0], "right")))


def similar_blocks(groups: np.ndarray, size: int) -> list[np.ndarray]:
    """Blocks of at most ``size`` texts, split at the median along the top principal direction,
    recursively: the usual way to make a tree's leaves compact."""
    blocks, todo = [], [np.arange(len(groups))]
    while todo:
        idx = todo.pop()
        if len(idx) <= size:
            blocks.append(idx)
            continue
        centred = (groups[idx] - groups[idx].mean(axis=0)).astype(np.float64)
        direction = np.linalg.svd(centred[:: max(1, len(idx) // 4096)], full_matrices=False)[2][0]
        order = idx[np.argsort(centred @ direction, kind="stable")]
        todo += [order[: len(idx) // 2], order[len(idx) // 2 :]]
    return blocks


def blocks_kept(groups: np.ndarray, share: np.ndarray, blocks: list[np.ndarray], rows: np.ndarray) -> float:
    """Mean share of blocks whose bounding box is within a sampled row's limit (share + the block's
    largest share): the blocks a row could not skip."""
    low = np.stack([groups[b].min(axis=0) for b in blocks])
    high = np.stack([groups[b].max(axis=0) for b in blocks])
    most = np.array([share[b].max() for b in blocks])
    kept = [((np.maximum(low - groups[r], 0) + np.maximum(groups[r] - high, 0)).sum(axis=1) <= share[r] + most).mean()
            for r in rows]
    return float(np.mean(kept))


if __name__ == "__main__":
    main()
