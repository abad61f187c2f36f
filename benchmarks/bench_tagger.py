"""How well do the offline MeSH taggers agree with an LLM, and with human labels?

1. `--labels FILE`: rows an LLM tagged (a .parquet/.jsonl with `prompt` or `question` and
   `domain_code`, e.g. the output of `m1data.stages.mesh.run_tag_file`). Reports accuracy, Cohen's kappa,
   macro-F1 and class coverage of the zero-shot tagger and the two supervised variants (TF-IDF
   and MiniLM features, trained on the other rows) on a seeded held-out split, against a
   majority-class baseline.

2. Human labels from ../shared/data (no LLM needed), a proxy for the first:
   * PubMedQA `MESHES`: where the terms carry qualifiers ("Mitochondria/physiology"), the
     abstract's qualifiers are its acceptable codes. The copy in shared/data has descriptors
     only, so this part reports that and is skipped unless another copy is given.
   * HeadQA exam categories: the Spanish residency exams are set per discipline, and four of
     them name a qualifier: pharmacology, chemistry, psychology, nursing ("nursery"). A question
     from such an exam counts as hit when the tagger answers that qualifier or one below it in
     NLM's hierarchy (pharmacology -> pharmacokinetics, adverse effects, ...). Biology and
     medicine exams name no qualifier and are left out. Reported: hit@1 and hit@3 against a
     uniform random tagger (exact expectation) and a most-frequent-qualifier tagger (fitted on
     the HeadQA dev file, scored on train), plus a 4-way category accuracy (the category whose
     qualifiers score highest; chance 25%).

    python benchmarks/bench_tagger.py [--shared ../shared/data] [--labels tagged.parquet]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

import datasets
import numpy as np

from m1data.stages.mesh import qualifier_by_code, qualifier_by_name, qualifier_subtree
from m1data.stages.mesh_eval import frequent_baseline, held_out_agreement, hit_rate, random_hit_rate
from m1data.stages.mesh_offline import ZeroShotTagger, labelled_texts
from m1data.reading.readers import read_rows
from m1data.reading.sources import load_source

ROOT = Path(__file__).resolve().parents[1]
HEADQA_QUALIFIERS = {"pharmacology": "Pharmacology", "chemistry": "Chemistry",
                     "psychology": "Psychology", "nursery": "Nursing"}


def _pct(x: float) -> str:
    return f"{100 * x:5.1f}%"


# ---------------------------------------------------------------------------------------------
# 1. Agreement with LLM labels


def bench_labels(path: Path, test_fraction: float) -> None:
    texts, codes = labelled_texts(read_rows(path))
    print(f"\n## Agreement with the tags in {path} ({len(texts)} rows, "
          f"{len(set(codes))} qualifiers, {int(test_fraction * 100)}% held out)\n")
    began = time.perf_counter()
    results = held_out_agreement(texts, codes, test_fraction=test_fraction)
    print("| tagger | accuracy | kappa | macro-F1 | classes predicted (reference) | class coverage |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {_pct(r['accuracy'])} | {r['kappa']:.3f} | {r['macro_f1']:.3f} | "
              f"{r['classes_predicted']} ({r['classes_in_reference']}) | {_pct(r['class_coverage'])} |")
    print(f"\n({time.perf_counter() - began:.0f}s)")


# ---------------------------------------------------------------------------------------------
# 2a. PubMedQA MeSH qualifiers


def pubmedqa_qualifiers(path: Path) -> tuple[list[str], list[frozenset[str]], int, int]:
    """(question, acceptable codes) per abstract with at least one known qualifier, the number of
    MeSH terms seen and how many had a "/qualifier" part. A term is "Descriptor[/qualifier...]";
    a leading "*" marks a major topic."""
    data = json.loads(path.read_text())
    texts, targets, n_terms, n_qualified = [], [], 0, 0
    for item in data.values():
        codes = set()
        for term in item.get("MESHES", []):
            n_terms += 1
            parts = term.split("/")[1:]
            n_qualified += bool(parts)
            for part in parts:
                qualifier = qualifier_by_name(part.strip().lstrip("*"))
                if qualifier is not None:
                    codes.add(qualifier.code)
        if codes:
            texts.append(item["QUESTION"])
            targets.append(frozenset(codes))
    return texts, targets, n_terms, n_qualified


def bench_pubmedqa(path: Path, tagger: ZeroShotTagger) -> None:
    print(f"\n## Zero-shot vs human MeSH indexing, PubMedQA ({path})\n")
    texts, targets, n_terms, n_qualified = pubmedqa_qualifiers(path)
    if not texts:
        print(f"No abstract has a known qualifier: {n_qualified} of {n_terms} MeSH terms have a "
              "'/qualifier' part (e.g. 'Mitochondria' rather than 'Mitochondria/physiology'). Skipped.")
        return
    half = len(texts) // 2
    ranked = tagger.top_k(texts[half:], 3)
    _print_hits("zero-shot", ranked, targets[half:], targets[:half])


# ---------------------------------------------------------------------------------------------
# 2b. HeadQA exam categories


def headqa_items(path: Path) -> tuple[list[str], list[str]]:
    rows = load_source("headqa", path).rows
    texts, categories = [], []
    for prompt, metadata in zip(rows["prompt"], rows["metadata"]):
        category = json.loads(metadata).get("category")
        if category in HEADQA_QUALIFIERS:
            texts.append(prompt)
            categories.append(category)
    return texts, categories


def category_targets() -> dict[str, frozenset[str]]:
    return {cat: qualifier_subtree(qualifier_by_name(name).code) for cat, name in HEADQA_QUALIFIERS.items()}


def _print_hits(name: str, ranked: list[list[str]], targets: list[frozenset[str]],
                baseline_targets: list[frozenset[str]]) -> None:
    print(f"{len(targets)} items scored; baseline fitted on {len(baseline_targets)} others\n")
    print("| tagger | hit@1 | hit@3 |")
    print("|---|---|---|")
    print(f"| {name} | {_pct(hit_rate(ranked, targets, 1))} | {_pct(hit_rate(ranked, targets, 3))} |")
    frequent = frequent_baseline(baseline_targets, 3)
    names = ", ".join(qualifier_by_code()[c].name for c in frequent)
    fixed = [frequent] * len(targets)
    print(f"| most frequent ({names}) | {_pct(hit_rate(fixed, targets, 1))} | {_pct(hit_rate(fixed, targets, 3))} |")
    print(f"| uniform random | {_pct(random_hit_rate(targets, 1))} | {_pct(random_hit_rate(targets, 3))} |")


def category_accuracy(scores: np.ndarray, codes: list[str], categories: list[str]) -> tuple[float, dict]:
    """The category whose best qualifier scores highest, vs the true category."""
    targets = category_targets()
    names = sorted(targets)
    column = {c: j for j, c in enumerate(codes)}
    per_category = np.stack([scores[:, [column[c] for c in sorted(targets[n])]].max(axis=1) for n in names], axis=1)
    chosen = [names[j] for j in per_category.argmax(axis=1)]
    confusion = Counter(zip(categories, chosen))
    accuracy = sum(1 for c, p in zip(categories, chosen) if c == p) / len(categories)
    return accuracy, confusion


def bench_headqa(shared: Path, tagger: ZeroShotTagger) -> None:
    train, dev = shared / "raw/headqa/train_HEAD_EN.json", shared / "raw/headqa/dev_HEAD_EN.json"
    print(f"\n## Zero-shot vs HeadQA exam categories ({train.name}; baseline from {dev.name})\n")
    targets_by_category = category_targets()
    for cat, codes in targets_by_category.items():
        print(f"- {cat}: {', '.join(sorted(qualifier_by_code()[c].name for c in codes))}")
    texts, categories = headqa_items(train)
    _, dev_categories = headqa_items(dev)
    began = time.perf_counter()
    scores = tagger.scores(texts)
    elapsed = time.perf_counter() - began
    order = np.argsort(-scores, axis=1, kind="stable")[:, :3]
    ranked = [[tagger.codes[j] for j in row] for row in order]
    targets = [targets_by_category[c] for c in categories]
    print(f"\nper category: {dict(Counter(categories))}")
    _print_hits("zero-shot", ranked, targets, [targets_by_category[c] for c in dev_categories])
    for cat in sorted(targets_by_category):
        idx = [i for i, c in enumerate(categories) if c == cat]
        sub_r, sub_t = [ranked[i] for i in idx], [targets[i] for i in idx]
        print(f"| zero-shot, {cat} only | {_pct(hit_rate(sub_r, sub_t, 1))} | {_pct(hit_rate(sub_r, sub_t, 3))} |")
    accuracy, confusion = category_accuracy(scores, tagger.codes, categories)
    print(f"\n4-way category accuracy: {_pct(accuracy)} (chance 25.0%, majority "
          f"{_pct(Counter(categories).most_common(1)[0][1] / len(categories))})")
    print("confusion (true -> chosen):", {f"{t}->{p}": n for (t, p), n in sorted(confusion.items())})
    top1 = Counter(qualifier_by_code()[r[0]].name for r in ranked).most_common(8)
    print("most frequent zero-shot tags:", top1)
    print(f"embedding + scoring time: {elapsed:.1f}s for {len(texts)} questions "
          f"({len(texts) / elapsed:.0f}/s, CPU)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--labels", type=Path, help="LLM-tagged rows (.parquet/.jsonl) with domain_code")
    parser.add_argument("--pubmedqa", type=Path, help="ori_pqal.json (default: the one in --shared)")
    parser.add_argument("--test-fraction", type=float, default=0.2)
    args = parser.parse_args()
    datasets.disable_progress_bars()

    if args.labels:
        bench_labels(args.labels, args.test_fraction)
    pubmedqa = args.pubmedqa or args.shared / "raw/pubmedqa/ori_pqal.json"
    if not pubmedqa.exists() and not args.shared.is_dir():
        print(f"{args.shared} not found: human-label proxies skipped")
        return
    tagger = ZeroShotTagger()
    if pubmedqa.exists():
        bench_pubmedqa(pubmedqa, tagger)
    if (args.shared / "raw/headqa/train_HEAD_EN.json").exists():
        bench_headqa(args.shared, tagger)


if __name__ == "__main__":
    main()
