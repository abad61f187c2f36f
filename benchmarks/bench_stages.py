"""What each stage and command of a build spends beside its real work, at the paper's sizes (issue 21).

    python benchmarks/bench_stages.py [--pool 196000] [--llm-rows 10000] [--students 2] [--seed 0]
    python benchmarks/bench_stages.py --profile STAGE [...]   # cProfile of one stage, top 25 by cumulative time

Rows: ``--pool`` questions from benchmarks/perturb.py (source-mix weighted recombinations of the
real questions of ../shared/data, 5% near copies, 0.5% edited eval items) written as native
MedMCQA (four options) and MedQA (other option counts) JSONL files, and ~15,000 eval items
(perturb.eval_rows) as one MedQA-shaped eval file. Everything runs through the library's doors
(``m1data.jobs.build``, ``export_run``, ``funnel_markdown``, ``lineage``, ``compare_runs``), so
the times are what a user of the command line or the library waits for:

1. the pool: ``build("m1k", until="decontaminate")`` on ``--pool`` rows: load (native JSONL to
   validated rows), dedup, decontamination; each stage's ``wall_time_s`` from its manifest
   (the stage, its accounting and writing its parquet);
2. the LLM stages and after: a full m1K build on the first ``--llm-rows`` rows against the
   scripted OpenAI-compatible server of tests/llm_server.py on 127.0.0.1, which answers at once
   (students right on a quarter of the questions, the teacher on 95%, the tagger names a
   qualifier code), so what is left is m1data's own time: difficulty (``--students`` students),
   traces, the final decontamination and dedup, MeSH tagging (the LLM tagger), SFT formatting,
   the stratified 1K sample; then the card render, the export of the Hub-layout folder
   (``export_run``, what ``publish`` uploads), the funnel, a lineage of a dropped and a kept row,
   and ``compare_runs`` of the run with itself. The server runs in a thread of this process and
   shares its two cores, so the LLM stages' times include the server's (small) share.

Per stage: seconds, rows in, and seconds per 100K rows in (the LLM stages': per 100K requests
too). ``uptime`` is printed before and after: the machine is shared.

Before/after, ``--pool 196000 --llm-rows 10000`` (2 students), this 2-core machine shared with
other jobs, the two runs back to back; before = 15eac9d, after = the fixes of the stagescale branch
(selections flattened by one Arrow take before they are written; format and the prompt/completion
view by whole columns; lineage by the id column). Seconds (load averages 1-min, before -> after):

    stage / command              before    after
    pool, 196K rows (load 0.6-0.9 / 1.0-1.2)
      load                        14.91    14.04
      dedup                        4.14     3.68
      decontaminate               16.00    14.56
      build total                 75.21    41.17
        outside the stages        40.16     8.90   (writing each stage's selection, reading it back)
      lineage                      1.41     0.96
    m1K build, 10K rows (load 0.9-1.1 / 1.0-1.1)
      difficulty (18,938 req.)    68.03    63.72   (3.4-3.6 ms a request: the openai SDK, httpx)
      traces (7,142 req.)         29.64    22.44
      decontaminate               4.31     4.81   (eval loading ~3 s, n-gram check; per stage)
      tag (6,787 req.)            36.42    28.56
      format (6,787 rows)          2.27     0.07
      sample                       0.35     0.09
      build total                144.41   121.36
      card (m23K, 6,787 rows)      5.01     2.11
      export m1K                   1.21     0.80
      lineage                      0.67     0.35
      compare                      0.56     0.38
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import json
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "tests"))

import perturb  # noqa: E402
from llm_server import ScriptedServer, chat  # noqa: E402

PREFIX = "Return your final response within \\boxed{}.\n"
LETTERS = "ABCDEFGHIJ"


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip().split("load average:")[-1].strip()


def bucket(text: str, n: int) -> int:
    return int(hashlib.sha1(text.encode()).hexdigest()[:8], 16) % n


def split_rendered(text: str) -> tuple[str, list[str]]:
    """A perturb prompt back into its question and options ("A. ..." lines at the end)."""
    lines = text.split("\n")
    k = len(lines)
    while k > 0 and len(lines[k - 1]) > 2 and lines[k - 1][0] in LETTERS and lines[k - 1][1:3] == ". ":
        k -= 1
    return "\n".join(lines[:k]).strip(), [line[3:] for line in lines[k:]]


def write_sources(texts: list[str], folder: Path, seed: int) -> dict[str, dict[str, Any]]:
    """Native MedMCQA JSONL for four-option rows, native MedQA JSONL for the others."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    mcqa, medqa = folder / "medmcqa.jsonl", folder / "medqa.jsonl"
    with mcqa.open("w") as fm, medqa.open("w") as fq:
        for i, text in enumerate(texts):
            question, options = split_rendered(text)
            right = int(rng.integers(max(len(options), 1)))
            if len(options) == 4:
                row = {"id": str(uuid.UUID(int=int(rng.integers(2**62)) << 64 | i)), "question": question,
                       "opa": options[0], "opb": options[1], "opc": options[2], "opd": options[3], "cop": right,
                       "choice_type": "single", "exp": "", "subject_name": "bench", "topic_name": "bench"}
                fm.write(json.dumps(row) + "\n")
            else:
                opts = {LETTERS[j]: o for j, o in enumerate(options)}
                row = {"question": question, "options": opts, "answer_idx": LETTERS[right] if options else "A",
                       "answer": options[right] if options else "", "meta_info": "bench"}
                fq.write(json.dumps(row) + "\n")
    return {"medmcqa": {"path": str(mcqa), "cop_base": 0}, "medqa": {"path": str(medqa)}}


def write_evals(items: list[perturb.Item], path: Path) -> None:
    with path.open("w") as fh:
        for item in items:
            if len(item.options) < 2:
                continue
            opts = {LETTERS[j]: o for j, o in enumerate(item.options[:10])}
            fh.write(json.dumps({"question": item.question, "options": opts, "answer_idx": "A",
                                 "answer": item.options[0]}) + "\n")


def config(sources: dict[str, Any], eval_file: Path, url: str, students: int) -> dict[str, Any]:
    endpoint = {"base_url": url, "api_key_env": None, "runtime": {"progress": False, "concurrency": 32}}
    return {
        "m23k": {
            "load": {"sources": sources},
            "evals": [{"name": "bench_eval", "path": str(eval_file)}],
            "difficulty": {"students": [{"model": f"Qwen/student-{k}", "base_url": url, "short": f"s{k}"}
                                        for k in range(students)],
                           "runtime": {"progress": False, "concurrency": 32}},
            "traces": endpoint,
            "mesh": endpoint,
            "tagger": "llm",
        },
        "sample": {"n": 1000, "levels": ["domain", "source"], "seed": 42},
    }


def handler_for(truth: dict[str, tuple[str, int]]) -> Callable[[Any], Any]:
    """Students right on a quarter of the questions, the teacher on 95%, the tagger names a code."""

    def handler(req: Any) -> Any:
        text = req.text
        if "## Classification rubrics" in text:
            return chat(f"About drug effects.\n**{bucket(text, 20) + 10:02d}**")
        prompt = text.removeprefix(PREFIX)
        right, n = truth.get(prompt, ("A", 4))
        wrong = LETTERS[(LETTERS.index(right) + 1) % n]
        if "student" in req.model:
            return chat(f"It is \\boxed{{{right if bucket(prompt, 4) == 0 else wrong}}}.")
        answer = wrong if bucket(prompt + "t", 20) == 0 else right
        return chat(f"The answer is \\boxed{{{answer}}}.", reasoning=f"Weighing the options... {answer}.")

    return handler


def stage_lines(run: Path) -> list[tuple[str, float, int]]:
    from m1data.running.pipeline import read_manifests

    out = []
    for m in read_manifests(run):
        out.append((m["stage"], m["wall_time_s"], m["rows_in"]))
    return out


def show(name: str, seconds: float, rows: int, requests: int | None = None) -> None:
    per = f"{100_000 * seconds / rows:7.2f}s/100K rows" if rows else ""
    req = f", {100_000 * seconds / requests:6.1f}s/100K requests ({requests:,})" if requests else ""
    print(f"  {name:<22} {seconds:8.2f}s  {rows:>8,} rows in  {per}{req}", flush=True)


def timed(what: str, fn: Callable[[], Any], profile: str | None) -> tuple[float, Any]:
    if profile == what:
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        result = prof.runcall(fn)
        seconds = time.perf_counter() - t0
        pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
        return seconds, result
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def profiled_stage(name: str, profile: str | None) -> Any:
    """With --profile NAME naming a pipeline stage: cProfile around that stage's `run`."""
    if profile is None:
        return None
    from m1data.running import pipeline

    stage_classes = {cls for cls in _all_subclasses(pipeline.Stage)}
    for cls in stage_classes:
        if "run" in cls.__dict__:
            run = cls.__dict__["run"]

            def wrapped(self, rows, ctx, _run=run):  # type: ignore[no-untyped-def]
                if self.name != profile:
                    return _run(self, rows, ctx)
                prof = cProfile.Profile()
                try:
                    return prof.runcall(_run, self, rows, ctx)
                finally:
                    print(f"--- cProfile of stage {self.name} (its run) ---")
                    pstats.Stats(prof).sort_stats(os.environ.get("BENCH_SORT", "cumulative")).print_stats(30)

            cls.run = wrapped
    return None


def _all_subclasses(cls: type) -> list[type]:
    out = []
    for sub in cls.__subclasses__():
        out += [sub, *_all_subclasses(sub)]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pool", type=int, default=196_000, help="rows of the pool build (load, dedup, decontaminate)")
    ap.add_argument("--llm-rows", type=int, default=10_000, help="rows of the full m1K build (0: skip it)")
    ap.add_argument("--students", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profile", help="a stage name (load, dedup, ..., sample) or card, export, funnel, lineage, compare")
    ap.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    args = ap.parse_args()
    if not perturb.DATA.is_dir():
        sys.exit(f"{perturb.DATA} not found: the benchmark needs ../shared/data")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

    from m1data import jobs
    from m1data.cards import render_card
    from m1data.publishing.export import IMAGES_DIR, export_run, public_rows
    from m1data.running.compare import compare_runs
    from m1data.running.funnel import funnel_markdown, lineage
    from m1data.running.pipeline import load_stage_dropped, load_stage_rows, read_manifests, stage_dirname
    from m1data.schema import column_values
    from m1data.stages.formatting import hub_configs

    import m1data

    print(f"m1data from {Path(m1data.__file__).parent}")
    profiled_stage("", args.profile)
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench_stages_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        eval_items, _ = perturb.eval_rows(seed=args.seed + 1)
        texts = perturb.training_rows(max(args.pool, args.llm_rows), seed=args.seed, eval_items=eval_items)
        eval_file = work / "evals.jsonl"
        write_evals(eval_items, eval_file)
        pool_sources = write_sources(texts[: args.pool], work / "pool", args.seed)
        llm_sources = write_sources(texts[: args.llm_rows], work / "llm", args.seed)
        print(f"rows generated and written in {time.perf_counter() - t0:.1f}s: pool {args.pool:,}, "
              f"LLM build {args.llm_rows:,}, eval items {len(eval_items):,}; load: {uptime()}", flush=True)

        print(f"pool build (until decontaminate), {args.pool:,} rows:", flush=True)
        run_a = work / "run_pool"
        cfg = config(pool_sources, eval_file, "http://127.0.0.1:9/v1", args.students)
        total, _ = timed("build", lambda: jobs.build("m1k", run_a, config=cfg, until="decontaminate"), args.profile)
        lines = stage_lines(run_a)
        for name, seconds, rows in lines:
            show(name, seconds, rows)
        print(f"  {'build total':<22} {total:8.2f}s ({total - sum(x[1] for x in lines):.2f}s outside the stages' "
              f"wall_time_s: writing and reading back their files, fingerprints); load: {uptime()}", flush=True)
        for what, fn in (("funnel", lambda: funnel_markdown(run_a)),
                         ("lineage", lambda: _lineages(run_a, lineage, load_stage_rows, load_stage_dropped,
                                                        read_manifests, stage_dirname, column_values))):
            seconds, _ = timed(what, fn, args.profile)
            show(f"{what} (pool run)", seconds, args.pool)

        if args.llm_rows:
            print(f"m1K build on {args.llm_rows:,} rows against the scripted server "
                  f"({args.students} students):", flush=True)
            run_b = work / "run_m1k"
            with ScriptedServer(handler_for({}), record=False) as server:
                cfg = config(llm_sources, eval_file, server.base_url, args.students)
                jobs.build("m1k", run_b, config=cfg, until="decontaminate")
                rows = load_stage_rows(run_b / stage_dirname(2, "decontaminate"))
                truth = {p: (letter, len(opts)) for p, letter, opts in zip(
                    column_values(rows, "prompt"), column_values(rows, "answer_letter"), column_values(rows, "options"))}
                server.handler = handler_for(truth)
                t0 = time.perf_counter()
                result = jobs.build("m1k", run_b, config=cfg)
                total = time.perf_counter() - t0
            assert result.complete, result.reason
            manifests = {m["stage"]: m for m in read_manifests(run_b)}
            for name, seconds, rows_in in stage_lines(run_b):
                stats = manifests[name].get("stats", {})
                sent = stats.get("requests") if isinstance(stats.get("requests"), int) else None
                show(name, seconds, rows_in, sent)
            print(f"  {'build total':<22} {total:8.2f}s (the LLM stages and after; export included); "
                  f"load: {uptime()}", flush=True)
            last = read_manifests(run_b)[-1]
            final = load_stage_rows(run_b / stage_dirname(last["index"], last["stage"]))
            tag = manifests["tag"]
            m23k_dir = run_b / stage_dirname(tag["index"] + 1, "format")
            m23k = load_stage_rows(m23k_dir)
            for what, fn, n in (
                ("card (m23K)", lambda: render_card("m23k", run_b, {c: {"train": public_rows(v)} for c, v in
                                                                      hub_configs(m23k, "m23k").items()},
                                                    images_dir=IMAGES_DIR, with_data_metadata=False), len(m23k)),
                ("export m1K", lambda: export_run("m1k", run_b, work / "hub-m1k"), len(final)),
                ("funnel", lambda: funnel_markdown(run_b), args.llm_rows),
                ("lineage", lambda: _lineages(run_b, lineage, load_stage_rows, load_stage_dropped, read_manifests,
                                              stage_dirname, column_values), args.llm_rows),
                ("compare", lambda: compare_runs(run_b, run_b, out_dir=work / "compare"), manifests["traces"]["rows_out"]),
            ):
                seconds, _ = timed(what.split(" ")[0], fn, args.profile)
                show(what, seconds, n)
        print(f"load: {uptime()}")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


def _lineages(run: Path, lineage: Any, load_stage_rows: Any, load_stage_dropped: Any, read_manifests: Any,
              stage_dirname: Any, column_values: Any) -> int:
    """The lineage of the last stage's first kept row and of the first row dropped by the stage
    that dropped the most (outside the timing of nothing: finding the ids is part of the cost, small)."""
    manifests = read_manifests(run)
    last = manifests[-1]
    kept = column_values(load_stage_rows(run / stage_dirname(last["index"], last["stage"]), columns=["id"]), "id")
    most = max(manifests, key=lambda m: m["rows_in"] - m["rows_out"])
    dropped = load_stage_dropped(run / stage_dirname(most["index"], most["stage"]))
    ids = kept[:1] + (column_values(dropped, "id")[-1:] if dropped is not None and len(dropped) else [])
    return sum(len(lineage(run, i)) for i in ids)


if __name__ == "__main__":
    main()
