"""How much contamination the reference comparison misses, on the real eval files.

Every eval question is planted into the training pool as an exact copy, rendered the way a
training row is (options shuffled per row, `prompt` = question + lettered options). Then:

- reference: training `prompt` against the eval set's bare `question` (what m1's code did);
- m1data: question stem + sorted option set on both sides (`m1data.stages.dedup.match_keys`).

Both use fuzz.ratio >= 95 through the same exact matcher. Prints detected / planted per set.

    python benchmarks/bench_decontam_defect.py [--shared ../shared/data]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from m1data.stages.dedup import EvalText, find_contamination, match_keys
from m1data.reading.evalsets import load_eval, load_eval_any
from m1data.schema import make_row


def as_training(rows):
    """The eval rows as training rows: same question, options shuffled per row (seed 42)."""
    import datasets

    planted = [make_row(source="planted", row_id=f"planted:{r['id']}", question=r["question"], options=r["options"],
                        answer_idx=r["answer_idx"], context=r["context"], raw={}, unique_options=False) for r in rows]
    return datasets.Dataset.from_list(planted)


def detected(train_texts, eval_texts, name) -> int:
    evals = [EvalText(name, str(i), t) for i, t in enumerate(eval_texts)]
    return len(find_contamination(train_texts, evals))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data")
    args = parser.parse_args()
    d = args.shared
    sets = {
        "medqa_test": load_eval("medqa_test", d / "raw/medqa/4_options_phrases_no_exclude_test.jsonl").rows,
        "medmcqa_validation": load_eval("medmcqa_validation", d / "eval/medagentsbench/medmcqa/test.jsonl").rows,
        "pubmedqa_test": load_eval("pubmedqa_test", d / "raw/pubmedqa/ori_pqal.json").rows,
        "mmlu_pro_health": load_eval("mmlu_pro_health", d / "eval/mmlu_pro/health_result_gpt4o.json").rows,
        "medbullets_op5": load_eval("medbullets_op5", d / "eval/medbullets/medbullets_op5.csv").rows,
        **{n: r.rows for n, r in load_eval_any("mmlu_medical", d / "eval/mmlu").items()},
    }
    print("| eval set | planted | reference (prompt vs bare question) | m1data (stem + option set) | missed by reference |")
    print("|---|---|---|---|---|")
    totals = [0, 0, 0]
    for name, rows in sets.items():
        train = as_training(rows)
        ref = detected(train["prompt"], rows["question"], name)
        ours = detected(match_keys(train), match_keys(rows), name)
        totals = [totals[0] + len(rows), totals[1] + ref, totals[2] + ours]
        print(f"| {name} | {len(rows):,} | {ref:,} ({ref / len(rows):.1%}) | {ours:,} ({ours / len(rows):.1%}) | {ours - ref:,} |")
    n, ref, ours = totals
    print(f"| all | {n:,} | {ref:,} ({ref / n:.1%}) | {ours:,} ({ours / n:.1%}) | {ours - ref:,} |")


if __name__ == "__main__":
    main()
