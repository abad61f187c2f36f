"""What decontamination and the n-gram cross-check find on real rows that contain real copies.

Training rows: the real source files in ../shared/data (MedQA-USMLE's test questions in their
5-option form stand in for a source that holds eval questions; HEAD-QA's training questions for
one that should hold none). Eval sets: the real eval files there. For each pairing it prints

- the rows the fuzzy decontamination removes (``m1data.stages.dedup.decontaminate``), and of
  them those only the stem pass finds (the same stem, most of the options: ``_same_question``);
- the rows the word 8-gram check flags with any shared 8-gram (s1's rule) and with the stage's
  rule (its ``ngram_min_share`` of one eval question's 8-grams, at least ``MIN_HELD`` of them),
  n-grams in more than 3 training rows ignored either way.

    python benchmarks/bench_decontam_real.py [--shared ../shared/data]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from m1data.reading.evalsets import EvalInput, load_evals
from m1data.reading.sources import load_source
from m1data.stages import dedup
from m1data.stages.dedup import DecontaminateConfig
from m1data.stages.ngram import ngram_overlap


def pairings(shared: Path) -> list[tuple[str, str, Path, list[EvalInput]]]:
    """(label, source, file, eval sets) of each run."""
    ev = shared / "eval"
    bench = ev / "medagentsbench"
    every = [EvalInput(str(p)) for p in sorted(ev.rglob("*")) if p.is_file()]
    return [
        ("MedQA 5-option test vs MedQA 4-option test", "medqa", shared / "raw/medqa/US_test_5_options.jsonl",
         [EvalInput("medqa_test", str(bench / "medqa/test.jsonl"))]),
        ("MedQA 5-option test vs MedBullets op5 + MMLU professional medicine", "medqa",
         shared / "raw/medqa/US_test_5_options.jsonl",
         [EvalInput("medbullets_op5", str(ev / "medbullets/medbullets_op5.csv")),
          EvalInput("mmlu_professional_medicine", str(ev / "mmlu/professional_medicine_test.csv"))]),
        ("HEAD-QA train vs every eval file", "headqa", shared / "raw/headqa/train_HEAD_EN.json", every),
    ]


def run(label: str, source: str, path: Path, specs: list[EvalInput]) -> None:
    rows = load_source(source, path).rows
    evals = load_evals(specs)
    t0 = time.perf_counter()
    _, dropped = dedup.decontaminate(rows, evals)
    seconds = time.perf_counter() - t0
    keyed = [item for item in dedup.eval_items(evals) if item.keyed]
    stems = dedup._stems(rows)
    by_stem_only = {m.index for m in dedup._same_question(stems, dedup._options(rows), keyed, 95.0, None)} - {
        m.index for m in dedup.find_contamination(dedup.match_keys(rows), keyed)}
    eval_stems = [s for ds in evals.values() for s in dedup._stems(ds)]
    anything = sum(h is not None for h in ngram_overlap(stems, eval_stems, max_train_rows=3))
    share = DecontaminateConfig().ngram_min_share
    shared = sum(h is not None for h in ngram_overlap(stems, eval_stems, max_train_rows=3, min_share=share))
    print(f"{label}: {len(rows):,} rows against {sum(len(ds) for ds in evals.values()):,} eval questions")
    print(f"  fuzzy decontamination removes {len(dropped):,} ({len(by_stem_only):,} found by the stem pass only) "
          f"in {seconds:.2f} s")
    print(f"  8-gram check flags {anything:,} with any shared 8-gram, {shared:,} with the stage's rule", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data")
    args = parser.parse_args()
    for pairing in pairings(args.shared):
        run(*pairing)


if __name__ == "__main__":
    main()
