"""Benchmark m1data.stages.dedup against a plain all-pairs rapidfuzz baseline.

    python benchmarks/bench_dedup.py --table [--sizes 50000,196000,1000000] [--ray-cpus 2] [--baseline-src DIR]
    python benchmarks/bench_dedup.py [--rows 20000] [--full] [--seed 0]
    python benchmarks/bench_dedup.py --executor ray [--sizes 196000,1000000] [--ray-cpus 2]
    python benchmarks/bench_dedup.py --steps [--sizes 196000,1000000]
    python benchmarks/bench_dedup.py --kernels [--sizes 196000] [--every 1]
    python benchmarks/bench_dedup.py --ab DIR [--sizes 196000,1000000] [--rounds 3]

``--table`` (issue 21: the one command): rows from benchmarks/perturb.py, dedup of the rows plus
decontamination against ~15,000 eval items. First, at ``--check-rows`` (20K), both are compared
with the all-pairs rapidfuzz loop (``cdist``); then, at each of ``--sizes``, one child process per
executor (local, and Ray with ``--ray-cpus`` CPUs) runs both and reports its wall times and its own
peak RSS (ru_maxrss of the child: it includes the rows it loads; the Ray line adds the largest Ray
workers' peak RSS, sampled with psutil). The local child also counts the filter's pairs: pairs in
the length windows (what the group pass visits), pairs through the group pass (candidates before
the exact bag check on the full histograms) and pairs through that check (what reaches rapidfuzz), and the
Ray result is compared with the local one. ``uptime`` is printed before and after each line: the
machine is shared, so the load says how much the times are contended. Last, from each size to the
next: how much the local total time, the pairs in length windows and the pairs scored by
rapidfuzz grew (the target of issue 21: at most 6x in time from 196K to 1M rows).
``--baseline-src DIR`` (a ``git worktree add`` of an earlier commit) runs that checkout's matcher
too, locally, on the same rows: its times and whether its removals are identical to this one's.

Default run: the same ``--rows`` synthetic training prompts are deduplicated by
1. the baseline: ``rapidfuzz.process.cdist`` over all pairs (each row chunk against the rows
   after it, ``score_cutoff``, ``workers=2``), and
2. ``m1data.stages.fuzzy.find_duplicates``;
both times, their ratio and whether the outputs are identical are printed.

``--full``: 196,000 rows deduplicated and decontaminated against ~15,000 eval items, timed at
50K, 100K and the full size, with peak memory (ru_maxrss). Rows come from benchmarks/perturb.py;
their length distribution is printed next to the real source prompts'.

``--steps``: at each of ``--sizes``, dedup and decontamination timed locally and split into the band
work (``BandJob.match``) and the rest, with their growth from each size to the next and the
speed-up of the band work that a growth of at most 6x would need.

``--kernels``: at each of ``--sizes``, on one core, the two byte loops of the group pass on every
band (every ``--every``-th) of the dedup self-join that ``_min_pass`` takes (texts up to 254
characters): ``_narrow_pass`` (sums of absolute differences) and ``_min_pass`` (sums of group
minima), nanoseconds a pair in the length windows, and whether both kept the same pairs.

``--ab DIR`` (a ``git worktree add`` of an earlier commit): dedup and decontamination in fresh
processes, this checkout's matcher and DIR's alternating, ``--rounds`` times each (one ``--table``
run is one sample of a noisy machine); each round runs every one of ``--sizes``, back to back,
because this VM's speed drifts by a quarter over minutes (the same 1M-row band work took 8.6 s
and 10.8 s an hour apart, with no CPU stolen) and a growth whose two sizes ran minutes apart
measured the drift. Each run with the load, then the medians and their growth from each size to
the next, and each round's own growth. Removals are compared with the first round's.

``--stages``: at each of ``--sizes``, the dedup and decontamination *stages*
(``m1data.stages.dedup.deduplicate`` and ``decontaminate``, what a build and the library run) on a
Dataset of the rows (id, source, question, four options), beside the matcher alone on the same
texts, so what the stage adds around the matcher shows; once as built and once shuffled (a Dataset
with an indices mapping, as ``select``, ``filter`` and ``shuffle`` leave one). Then decontamination
against the eval questions given options, as named eval sets have them: the key and the stem
pass, and the stem pass's own time. With ``--src DIR`` (a
``git worktree add`` of an earlier commit) the stages are that checkout's.

``--executor ray``: at each of ``--sizes``, dedup and decontamination (against ~15,000 eval
items) by the local matcher and by the same matcher with its bands run as Ray tasks on a local
Ray instance of ``--ray-cpus`` CPUs: wall times, the ratio, whether the removals are identical,
the driver's peak RSS and each Ray worker's peak RSS (sampled every 0.2 s with psutil), and the
filter's cost model (length-compatible pairs visited, summed over bands) for a projection to N
workers: ``T(N) = serial + parallel / N``, with ``serial`` what the driver does alone (texts to
histograms, measured) and ``parallel`` the band work in CPU-seconds (``cpus`` times the rest of
the Ray wall time: an upper bound, Ray's own overhead counted as work).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
from rapidfuzz import fuzz, process

sys.path.insert(0, str(Path(__file__).resolve().parent))
if "--src" in sys.argv:  # a table child measuring another checkout's matcher (see --baseline-src)
    sys.path.insert(0, sys.argv[sys.argv.index("--src") + 1])
else:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import perturb

try:
    from m1data.stages.dedup import DupMatch, EvalText, find_contamination, find_duplicates
except ImportError:  # a checkout from before m1data/stages/ (--baseline-src)
    from m1data.dedup import DupMatch, EvalText, find_contamination, find_duplicates  # type: ignore[no-redef]


def baseline_duplicates(texts: list[str], threshold: float, chunk: int = 256,
                        workers: int = 2) -> list[DupMatch]:
    """All pairs with cdist; for each row the earliest earlier row scoring >= threshold.

    Scores are float64 and compared with ``>=`` here (cdist's own cutoff is lowered by 0.1,
    see m1data.stages.fuzzy._verify), so the baseline's boundary is that of ``fuzz.ratio``.
    """
    n = len(texts)
    earliest = np.full(n, -1, dtype=np.int64)
    score = np.zeros(n)
    for r0 in range(0, n, chunk):
        r1 = min(n, r0 + chunk)
        block = process.cdist(texts[r0:r1], texts[r0:], scorer=fuzz.ratio,
                              score_cutoff=max(0.0, threshold - 0.1), dtype=np.float64,
                              workers=workers)
        rows, cols = np.nonzero(block >= threshold)
        i = rows + r0
        j = cols + r0
        keep = j > i
        for a, b in zip(i[keep], j[keep]):
            if earliest[b] < 0 or a < earliest[b]:
                earliest[b] = a
                score[b] = block[a - r0, b - r0]
    return [DupMatch(j, int(earliest[j]), float(score[j])) for j in range(n) if earliest[j] >= 0]


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def compare(rows: list[str], threshold: float) -> None:
    print(f"rows: {perturb.length_summary(rows)}", flush=True)
    times = []
    for _ in range(3):  # the first call also pays one-off costs (BLAS thread start-up)
        t0 = time.perf_counter()
        ours = find_duplicates(rows, threshold=threshold)
        times.append(time.perf_counter() - t0)
    t_first, t_ours = times[0], min(times)
    print(f"m1data.find_duplicates: first call {t_first:.2f}s, best of 3 {t_ours:.2f}s, "
          f"{len(ours)} removed", flush=True)
    t0 = time.perf_counter()
    base = baseline_duplicates(rows, threshold)
    t_base = time.perf_counter() - t0
    print(f"baseline all-pairs cdist (workers=2): {t_base:.2f}s, {len(base)} removed")
    print(f"speed-up: {t_base / t_ours:.1f}x (best of 3), {t_base / t_first:.1f}x (first call); "
          f"identical output: {ours == base}")


def full(rows: list[str], evals: list[EvalText], threshold: float) -> None:
    print(f"eval items: {perturb.length_summary([e.text for e in evals])}", flush=True)
    for n in (50_000, 100_000, len(rows)):
        part = rows[:n]
        t0 = time.perf_counter()
        dups = find_duplicates(part, threshold=threshold)
        t_dup = time.perf_counter() - t0
        t0 = time.perf_counter()
        cont = find_contamination(part, evals, threshold=threshold)
        t_con = time.perf_counter() - t0
        print(f"{n:>7,} rows: dedup {t_dup:6.1f}s ({len(dups):,} removed), "
              f"decontam {t_con:6.1f}s ({len(cont):,} removed), total {t_dup + t_con:6.1f}s, "
              f"peak RSS so far {peak_rss_gb():.2f} GB", flush=True)


def steps(rows: list[str], evals: list[EvalText], sizes: list[int], threshold: float) -> None:
    """Where the local time goes at each size: the band work (``BandJob.match``: group pass,
    full-histogram check, rapidfuzz) and everything else (distinct texts, histograms, sorting,
    group counts, earliest partner), which grows with the rows alone. Why: the growth target of
    issue 21 depends on both, and no speed-up of the band work takes the growth below the rest's."""
    import m1data.stages.fuzzy as fz

    match = fz.BandJob.match
    band_s = [0.0]

    def timed_match(job, *args, **kwargs):  # type: ignore[no-untyped-def]
        t0 = time.perf_counter()
        try:
            return match(job, *args, **kwargs)
        finally:
            band_s[0] += time.perf_counter() - t0

    fz.BandJob.match = timed_match
    find_duplicates(rows[:2000], threshold=threshold)  # compiles, or loads the compiled loops
    totals: dict[int, tuple[float, float]] = {}
    try:
        for n in sizes:
            part = rows[:n]
            line = []
            all_s = all_band = 0.0
            for what, run in (("dedup", lambda: find_duplicates(part, threshold=threshold)),
                              ("decontam", lambda: find_contamination(part, evals, threshold=threshold))):
                band_s[0] = 0.0
                t0 = time.perf_counter()
                run()
                total = time.perf_counter() - t0
                line.append(f"{what} {total:.2f}s (band work {band_s[0]:.2f}s, rest {total - band_s[0]:.2f}s)")
                all_s, all_band = all_s + total, all_band + band_s[0]
            totals[n] = (all_s, all_s - all_band)
            print(f"{n:>9,} rows: {'; '.join(line)}; load: {uptime()}", flush=True)
    finally:
        fz.BandJob.match = match
    done = sorted(totals)
    for small, large in zip(done, done[1:]):
        (t0, r0), (t1, r1) = totals[small], totals[large]
        b0, b1 = t0 - r0, t1 - r1
        print(f"growth {small:,} -> {large:,} rows: total {t1 / t0:.1f}x, band work {b1 / b0:.1f}x, "
              f"rest {r1 / r0:.1f}x; with a band pass k times faster the growth is "
              f"(rest1 + band1/k) / (rest0 + band0/k): {_speedup_for(6.0, r0, b0, r1, b1)}", flush=True)


def kernels(rows: list[str], sizes: list[int], threshold: float, every: int) -> None:
    """Both byte loops on the same bands, one core (see ``--kernels``): what the sums of minima
    save per pair, apart from everything else the matcher does."""
    import m1data.stages.fuzzy as fz

    narrow, minima = fz._compiled(fz._narrow_pass), fz._compiled(fz._min_pass)
    find_duplicates(rows[:2000], threshold=threshold)  # compiles, or loads the compiled loops
    for n in sizes:
        distinct, _, _ = fz._distinct(rows[:n])
        f = fz._check_threshold(threshold)
        side = fz._self_side(distinct, f)
        job = fz.BandJob(side, side, f, threshold, True)
        seconds = {narrow: 0.0, minima: 0.0}
        pairs = all_pairs = 0
        same = True
        for r0, r1 in job.bands()[::every]:
            window = job._window(r0, r1)
            lo, hi = np.ascontiguousarray(window[:, 0]), np.ascontiguousarray(window[:, 1])
            all_pairs += job.band_cost((r0, r1))
            chosen, row_need, col_halves = job.group_pass(r1, hi)
            if chosen is not minima:
                continue
            pairs += job.band_cost((r0, r1))
            kept = []
            for kernel, row_bound, col_bound in ((narrow, side.byte_share, side.byte_share),
                                                 (minima, row_need, col_halves)):
                out_r, out_c = np.empty(1 << 16, np.int64), np.empty(1 << 16, np.int64)
                t0 = time.perf_counter()
                found = kernel(side.groups, side.groups, row_bound, col_bound, r0, r1, lo, hi, out_r, out_c)
                seconds[kernel] += time.perf_counter() - t0
                kept.append(sorted(zip(out_r[:found].tolist(), out_c[:found].tolist())))
            same &= kept[0] == kept[1]
        per_pair = {kernel: s / pairs * 1e9 for kernel, s in seconds.items()}
        print(f"{n:>9,} rows: _min_pass takes {pairs / all_pairs:.1%} of {all_pairs:.3g} pairs visited; one core: "
              f"_narrow_pass {per_pair[narrow]:.3f} ns a pair, _min_pass {per_pair[minima]:.3f} "
              f"({seconds[narrow] / seconds[minima]:.2f}x); same pairs kept: {same}; load: {uptime()}", flush=True)


def ab(rows: list[str], eval_texts: list[str], sizes: list[int], src: str, rounds: int, threshold: float) -> None:
    """This checkout's matcher against ``src``'s, alternating in fresh processes (see ``--ab``)."""
    import json
    import pickle
    import statistics
    import subprocess
    import tempfile

    medians: dict[str, dict[int, float]] = {"after": {}, "before": {}}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "rows.pkl"
        with data.open("wb") as fh:
            pickle.dump((rows, eval_texts), fh)

        def run(who: str, n: int) -> dict:
            cmd = [sys.executable, __file__, "--child", str(data), "--child-n", str(n), "--child-executor",
                   "none", "--threshold", str(threshold)] + (["--src", src] if who == "before" else [])
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            return json.loads(next(x for x in out.splitlines() if x.startswith("RESULT "))[7:])

        for who in medians:  # a checkout's first run compiles its loops (cached for the next ones)
            run(who, 2000)
        totals: dict[str, dict[int, list[float]]] = {who: {n: [] for n in sizes} for who in medians}
        removals: dict[tuple[str, int], object] = {}
        for round_ in range(1, rounds + 1):  # every size in every round: the machine's speed drifts
            for who in ("after", "before"):
                for n in sizes:
                    r = run(who, n)
                    totals[who][n].append(r["dedup_s"] + r["decontam_s"])
                    removals.setdefault((who, n), (r["dups"], r["cont"]))
                    print(f"{n:>9,} rows {who:>6} round {round_}: dedup {r['dedup_s']:6.2f}s decontam "
                          f"{r['decontam_s']:5.2f}s total {totals[who][n][-1]:6.2f}s peak RSS {r['rss_gb']:.2f} GB; "
                          f"load: {uptime()}", flush=True)
    for n in sizes:
        for who in medians:
            medians[who][n] = statistics.median(totals[who][n])
        print(f"{n:>9,} rows: median total after {medians['after'][n]:.2f}s, before {medians['before'][n]:.2f}s; "
              f"identical removals: {removals[('after', n)] == removals[('before', n)]}", flush=True)
    for small, large in zip(sizes, sizes[1:]):
        growth = {who: medians[who][large] / medians[who][small] for who in medians}
        per_round = {who: [b / a for a, b in zip(totals[who][small], totals[who][large])] for who in medians}
        print(f"growth {small:,} -> {large:,} rows: of the medians after {growth['after']:.1f}x, before "
              f"{growth['before']:.1f}x; each round's, after " + " ".join(f"{g:.1f}" for g in per_round["after"])
              + ", before " + " ".join(f"{g:.1f}" for g in per_round["before"]), flush=True)


def stages(rows: list[str], eval_texts: list[str], sizes: list[int], threshold: float) -> None:
    """The stages against the matcher alone (see ``--stages``): the stage's own time is reading the
    Dataset's columns, building the keys and splitting kept from dropped rows."""
    import datasets

    from m1data.stages.dedup import decontaminate, deduplicate, stem_key

    find_duplicates(rows[:2000], threshold=threshold)  # compiles, or loads the compiled loops
    for n in sizes:
        ds = datasets.Dataset.from_dict({"id": [f"r{i}" for i in range(n)], "source": ["medmcqa"] * n,
                                         "question": rows[:n], "options": [["A", "B", "C", "D"]] * n})
        keys = [stem_key(question, ["A", "B", "C", "D"]) for question in rows[:n]]  # what the stage compares
        t0 = time.perf_counter()
        removed = {m.index for m in find_duplicates(keys, threshold=threshold)}
        kept_stems = [t for i, t in enumerate(rows[:n]) if i not in removed]  # bare eval questions meet stems
        contaminated = find_contamination(kept_stems, eval_texts, threshold=threshold)
        matcher = time.perf_counter() - t0
        print(f"{n:>9,} rows: matcher alone {matcher:.2f}s ({len(removed):,} + {len(contaminated):,} removed)", flush=True)
        for view, rows_in in (("as built", ds), ("shuffled", ds.shuffle(seed=0))):
            t0 = time.perf_counter()
            kept, dropped = deduplicate(rows_in, threshold=threshold)
            t1 = time.perf_counter()
            _, contam = decontaminate(kept, {"eval": eval_texts}, threshold=threshold)
            t2 = time.perf_counter()
            print(f"{'':>15} stages, {view}: dedup {t1 - t0:.2f}s + decontamination {t2 - t1:.2f}s = {t2 - t0:.2f}s "
                  f"({len(dropped):,} + {len(contam):,} removed); load: {uptime()}", flush=True)
        keyed_decontamination(ds, eval_texts, threshold)


def keyed_decontamination(ds, eval_texts: list[str], threshold: float) -> None:
    """The decontamination stage against eval questions with options (as every named eval set
    has them): the stem + option-set key, then the stems alone (``_same_question``), a second run
    of the matcher. The eval questions get the rows' four options."""
    import datasets

    from m1data.stages import dedup

    evals = datasets.Dataset.from_dict({"id": [f"e{i}" for i in range(len(eval_texts))], "question": eval_texts,
                                        "options": [["A", "B", "C", "D"]] * len(eval_texts)})
    t0 = time.perf_counter()
    _, contam = dedup.decontaminate(ds, {"eval": evals}, threshold=threshold)
    t1 = time.perf_counter()
    keyed = dedup.eval_items({"eval": evals})
    stems, options = dedup._stems(ds), dedup._options(ds)
    t2 = time.perf_counter()
    dedup._same_question(stems, options, keyed, threshold, None)
    t3 = time.perf_counter()
    print(f"{'':>15} decontamination against eval questions with options: {t1 - t0:.2f}s, of which the stem "
          f"pass {t3 - t2:.2f}s ({len(contam):,} removed); load: {uptime()}", flush=True)


def _speedup_for(target: float, r0: float, b0: float, r1: float, b1: float) -> str:
    """The smallest k with (r1 + b1/k) / (r0 + b0/k) <= target, in words."""
    if r1 >= target * r0:
        return f"no k gives at most {target:g}x (the rest alone grows {r1 / r0:.1f}x)"
    k = max(1.0, (b1 - target * b0) / (target * r0 - r1))
    return f"at most {target:g}x needs k >= {k:.1f}"


class WorkerMemory:
    """Peak RSS of every Ray worker process, sampled in a thread (ru_maxrss only sees us)."""

    def __init__(self, interval: float = 0.2):
        import threading

        self.peak: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)

    def _run(self, interval: float) -> None:
        import psutil

        while not self._stop.is_set():
            for proc in psutil.process_iter(["pid", "name", "cmdline", "memory_info"]):
                cmd = " ".join(proc.info["cmdline"] or [])
                if "ray::" in (proc.info["name"] or "") or "default_worker.py" in cmd:
                    rss = proc.info["memory_info"].rss if proc.info["memory_info"] else 0
                    self.peak[proc.info["pid"]] = max(self.peak.get(proc.info["pid"], 0), rss)
            self._stop.wait(interval)

    def __enter__(self):  # type: ignore[no-untyped-def]
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> str:
        top = sorted(self.peak.values(), reverse=True)[:4]
        return ", ".join(f"{v / 1024**3:.2f}" for v in top) + " GB (largest workers)"


def on_ray(rows: list[str], evals: list[EvalText], sizes: list[int], threshold: float, cpus: int,
           with_local: bool = True) -> None:
    import ray

    from m1data.running.distributed import ExecutorConfig, RayExecutor
    from m1data.stages.fuzzy import BandJob, _check_threshold, _distinct, _self_side

    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    executor = RayExecutor(ExecutorConfig(kind="ray"))
    print(f"local Ray instance: {cpus} CPUs; this machine: {len(__import__('os').sched_getaffinity(0))} cores, "
          "shared with other jobs (numbers are contended)", flush=True)
    for n in sizes:
        part = rows[:n]
        t_local = t_local_con = float("nan")
        local_dup = local_con = None  # type: ignore[assignment]
        if with_local:
            t0 = time.perf_counter()
            local_dup = find_duplicates(part, threshold=threshold)
            t_local = time.perf_counter() - t0
            t0 = time.perf_counter()
            local_con = find_contamination(part, evals, threshold=threshold)
            t_local_con = time.perf_counter() - t0
        rss_local = peak_rss_gb()
        with WorkerMemory() as mem:
            t0 = time.perf_counter()
            ray_dup = find_duplicates(part, threshold=threshold, runner=executor.band_runner)
            t_ray = time.perf_counter() - t0
            t0 = time.perf_counter()
            ray_con = find_contamination(part, evals, threshold=threshold, runner=executor.band_runner)
            t_ray_con = time.perf_counter() - t0
        # the serial share: what the driver does before the bands (histograms, sides)
        t0 = time.perf_counter()
        distinct, _, _ = _distinct(part)
        f = _check_threshold(threshold)
        side = _self_side(distinct, f)
        t_serial = time.perf_counter() - t0
        job = BandJob(side, side, f, threshold, True)
        visited = sum(job.band_cost(b) for b in job.bands())
        print(f"{n:>9,} rows: dedup local {t_local:7.1f}s  ray {t_ray:7.1f}s  ratio {t_local / t_ray:4.2f}  "
              f"identical {ray_dup == local_dup if with_local else 'not checked'} ({len(ray_dup):,} removed); "
              f"decontam local {t_local_con:6.1f}s  ray {t_ray_con:6.1f}s  "
              f"identical {ray_con == local_con if with_local else 'not checked'} ({len(ray_con):,} removed)",
              flush=True)
        print(f"           pairs in length windows {visited:.3e}; driver serial part {t_serial:.1f}s; "
              f"driver peak RSS {rss_local:.2f} GB; Ray workers' peak RSS {mem.summary()}", flush=True)
        # band work in CPU-seconds: the Ray run kept its `cpus` workers busy for what the driver
        # did not do itself (an upper bound: Ray's own overhead is counted as work)
        parallel = cpus * max(t_ray - t_serial, 0.0)
        projection = ", ".join(f"N={w}: {t_serial + parallel / w:.0f}s" for w in (2, 8, 32, 128))
        print(f"           dedup projection T(N) = {t_serial:.1f} + {parallel:.1f}/N: {projection}", flush=True)
    ray.shutdown()


def uptime() -> str:
    import subprocess

    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def counting_filter():  # type: ignore[no-untyped-def]
    """Wrap the filter's stages to count pairs; returns the counters (local runs only). The
    bands run in threads, so the counters take a lock (without it, updates were lost)."""
    import threading

    import m1data.stages.fuzzy as fz

    counts = {"windows": 0, "group_pass": 0, "to_rapidfuzz": 0}
    lock = threading.Lock()
    candidates, exact = fz.BandJob.candidates, fz._exact_bag_check

    def counted_candidates(job, r0, r1):  # type: ignore[no-untyped-def]
        cost = job.band_cost((r0, r1))
        with lock:
            counts["windows"] += cost
        return candidates(job, r0, r1)

    def counted_exact(rows, cols, rr, cc, f):  # type: ignore[no-untyped-def]
        out = exact(rows, cols, rr, cc, f)
        with lock:
            counts["group_pass"] += len(rr)
            counts["to_rapidfuzz"] += len(out[0])
        return out

    fz.BandJob.candidates, fz._exact_bag_check = counted_candidates, counted_exact
    return counts


def table_child(data: Path, n: int, executor: str, cpus: int, threshold: float) -> None:
    """One size on one executor, in its own process so that ru_maxrss is this run's peak."""
    import json
    import pickle

    with data.open("rb") as fh:
        rows, eval_texts = pickle.load(fh)
    rows = rows[:n]
    evals = [EvalText("eval", str(i), t) for i, t in enumerate(eval_texts)]
    out: dict = {}
    runner = None
    mem = None
    if executor == "ray":
        import ray

        from m1data.running.distributed import ExecutorConfig, RayExecutor

        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
        runner = RayExecutor(ExecutorConfig(kind="ray")).band_runner
        mem = WorkerMemory().__enter__()
    elif executor == "local":
        counts = counting_filter()
    t0 = time.perf_counter()
    dups = find_duplicates(rows, threshold=threshold, runner=runner)
    out["dedup_s"] = time.perf_counter() - t0
    if executor == "local":
        out["dedup_counts"] = dict(counts)
        counts.update({k: 0 for k in counts})
    t0 = time.perf_counter()
    cont = find_contamination(rows, evals, threshold=threshold, runner=runner)
    out["decontam_s"] = time.perf_counter() - t0
    if executor == "local":
        out["decontam_counts"] = dict(counts)
    if mem is not None:
        mem.__exit__()
        out["workers"] = mem.summary()
    out["rss_gb"] = peak_rss_gb()
    out["dups"] = [(m.index, m.match_index, m.score) for m in dups]
    out["cont"] = [(m.index, m.item_id, m.score) for m in cont]
    print("RESULT " + json.dumps(out))


def table(rows: list[str], eval_texts: list[str], sizes: list[int], check_rows: int, cpus: int,
          threshold: float, seed: int, baseline_src: str | None = None) -> None:
    import json
    import subprocess
    import tempfile

    evals = [EvalText("eval", str(i), t) for i, t in enumerate(eval_texts)]
    print(f"rows: {perturb.length_summary(rows)}; eval items: {perturb.length_summary(eval_texts)}")
    print(f"load: {uptime()}", flush=True)
    part = rows[:check_rows]
    t0 = time.perf_counter()
    ours_d = find_duplicates(part, threshold=threshold)
    ours_c = find_contamination(part, evals, threshold=threshold)
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    base_d = baseline_duplicates(part, threshold)
    base_c = baseline_contamination(part, evals, threshold)
    t_base = time.perf_counter() - t0
    print(f"{check_rows:>9,} rows vs all pairs (cdist, workers=2): m1data {t_ours:.1f}s, all pairs {t_base:.1f}s; "
          f"dedup identical {ours_d == base_d} ({len(ours_d):,} removed), "
          f"decontam identical {ours_c == base_c} ({len(ours_c):,} removed); load: {uptime()}", flush=True)
    import pickle

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "rows.pkl"
        with data.open("wb") as fh:
            pickle.dump((rows, eval_texts), fh)
        totals: dict[int, tuple[float, int, int]] = {}  # local: seconds, pairs in windows, pairs scored
        before_totals: dict[int, float] = {}
        for n in sizes:
            res = {}
            for ex in ("local", "ray") + (("before",) if baseline_src else ()):
                cmd = [sys.executable, __file__, "--child", str(data), "--child-n", str(n), "--child-executor", ex,
                       "--ray-cpus", str(cpus), "--threshold", str(threshold), "--seed", str(seed)]
                if ex == "before":
                    cmd += ["--src", str(baseline_src)]
                load_before = uptime()
                proc = subprocess.run(cmd, capture_output=True, text=True)
                line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
                if proc.returncode or not line:
                    print(f"{n:>9,} rows {ex}: failed (rc {proc.returncode})\n{proc.stderr[-3000:]}", flush=True)
                    continue
                r = res[ex] = json.loads(line[0][7:])
                total = r["dedup_s"] + r["decontam_s"]
                print(f"{n:>9,} rows {ex:>6}: dedup {r['dedup_s']:7.1f}s ({len(r['dups']):,} removed)  "
                      f"decontam {r['decontam_s']:6.1f}s ({len(r['cont']):,} removed)  total {total:7.1f}s  "
                      f"peak RSS {r['rss_gb']:.2f} GB" + (f"; Ray workers {r['workers']}" if ex == "ray" else ""),
                      flush=True)
                if ex == "before":
                    before_totals[n] = total
                if ex == "local":
                    counts = {what: r[f"{what}_counts"] for what in ("dedup", "decontam")}
                    totals[n] = (total, sum(c["windows"] for c in counts.values()),
                                 sum(c["to_rapidfuzz"] for c in counts.values()))
                    for what, c in counts.items():
                        print(f"           {what:>8} pairs: in length windows {c['windows']:.3e}, "
                              f"through the group pass {c['group_pass']:,}, "
                              f"to rapidfuzz (after the exact bag check) {c['to_rapidfuzz']:,}", flush=True)
                print(f"           load before: {load_before}\n           load after:  {uptime()}", flush=True)
            for other in ("ray", "before"):
                if "local" in res and other in res:
                    same = res["local"]["dups"] == res[other]["dups"] and res["local"]["cont"] == res[other]["cont"]
                    print(f"           {other} identical to local: {same}", flush=True)
    done = sorted(totals)
    for small, large in zip(done, done[1:]):
        (t0, w0, s0), (t1, w1, s1) = totals[small], totals[large]
        print(f"growth {small:,} -> {large:,} rows ({large / small:.1f}x): local total {t1 / t0:.1f}x, "
              f"pairs in length windows {w1 / w0:.1f}x, pairs scored by rapidfuzz {s1 / max(s0, 1):.1f}x"
              + (f"; before {before_totals[large] / before_totals[small]:.1f}x"
                 if small in before_totals and large in before_totals else ""), flush=True)


def baseline_contamination(texts: list[str], evals: list[EvalText], threshold: float, chunk: int = 256,
                           workers: int = 2) -> list:
    """All pairs with cdist: for each row the best-scoring eval item (ties: lowest eval index)."""
    from m1data.stages.fuzzy import ContamMatch

    ev = [e.text for e in evals]
    out = []
    for r0 in range(0, len(texts), chunk):
        block = process.cdist(texts[r0:r0 + chunk], ev, scorer=fuzz.ratio,
                              score_cutoff=max(0.0, threshold - 0.1), dtype=np.float64, workers=workers)
        block[block < threshold] = 0.0
        for i in np.flatnonzero(block.max(axis=1) >= threshold):
            e = int(np.argmax(block[i]))  # first maximum: the lowest eval index
            item = evals[e]
            out.append(ContamMatch(r0 + int(i), item.set_name, item.item_id, item.text, float(block[i, e])))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--full-rows", type=int, default=196_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threshold", type=float, default=95.0)
    ap.add_argument("--executor", choices=["local", "ray"], default="local")
    ap.add_argument("--sizes", default="196000,1000000", help="row counts for --executor ray")
    ap.add_argument("--ray-cpus", type=int, default=2)
    ap.add_argument("--no-local", action="store_true", help="with --executor ray: skip the local runs")
    ap.add_argument("--table", action="store_true", help="the issue-21 table (see above)")
    ap.add_argument("--steps", action="store_true", help="band work and the rest at each of --sizes (see above)")
    ap.add_argument("--ab", metavar="DIR", help="this matcher against DIR's, fresh processes (see above)")
    ap.add_argument("--rounds", type=int, default=3, help="--ab: runs of each matcher at each size")
    ap.add_argument("--kernels", action="store_true", help="the group pass's byte loops, one core (see above)")
    ap.add_argument("--every", type=int, default=1, help="--kernels: time every k-th band")
    ap.add_argument("--stages", action="store_true", help="the dedup stages beside the matcher alone (see above)")
    ap.add_argument("--check-rows", type=int, default=20_000, help="--table: rows compared with all pairs")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--child-n", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--child-executor", help=argparse.SUPPRESS)
    ap.add_argument("--baseline-src", help="--table: also run the matcher of this checkout (a git worktree)")
    ap.add_argument("--src", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        table_child(args.child, args.child_n, args.child_executor, args.ray_cpus, args.threshold)
        return
    if args.table and args.sizes == "196000,1000000":
        args.sizes = "50000,196000,1000000"
    if not perturb.DATA.is_dir():
        sys.exit(f"{perturb.DATA} not found: the benchmark needs ../shared/data")

    t0 = time.perf_counter()
    eval_items, eval_texts = perturb.eval_rows(seed=args.seed + 1)
    sizes = [int(s) for s in args.sizes.split(",")]
    every_size = args.executor == "ray" or args.table or args.steps or args.stages or args.kernels or args.ab
    n_rows = max(sizes) if every_size else args.full_rows if args.full else args.rows
    rows = perturb.training_rows(n_rows, seed=args.seed, eval_items=eval_items)
    print(f"generated in {time.perf_counter() - t0:.1f}s (seed {args.seed})")
    print(f"real prompts, source-mix weighted: {perturb.length_summary(perturb.mix_weighted_real_prompts())}")
    print(f"real prompts, every source row once: {perturb.length_summary(perturb.real_training_prompts())}")
    if args.ab:
        ab(rows, eval_texts, sizes, args.ab, args.rounds, args.threshold)
    elif args.kernels:
        kernels(rows, sizes, args.threshold, args.every)
    elif args.stages:
        stages(rows, eval_texts, sizes, args.threshold)
    elif args.steps:
        steps(rows, [EvalText("eval", str(i), t) for i, t in enumerate(eval_texts)], sizes, args.threshold)
    elif args.table:
        table(rows, eval_texts, sizes, args.check_rows, args.ray_cpus, args.threshold, args.seed, args.baseline_src)
    elif args.executor == "ray":
        evals = [EvalText("eval", str(i), t) for i, t in enumerate(eval_texts)]
        on_ray(rows, evals, sizes, args.threshold, args.ray_cpus, with_local=not args.no_local)
    elif args.full:
        evals = [EvalText("eval", str(i), t) for i, t in enumerate(eval_texts)]
        print(f"rows: {perturb.length_summary(rows)}")
        full(rows, evals, args.threshold)
    else:
        compare(rows, args.threshold)


if __name__ == "__main__":
    main()
