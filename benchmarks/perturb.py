"""Seeded generator of benchmark rows for the dedup / decontamination benchmark.

Why synthetic rows: the real training pool (196K rows, 93% MedMCQA) is not in shared/data, so
the benchmark builds rows of the same shape from the real questions that are there. Timings of a
similarity join depend on how the rows look (length, shared phrasing, how many near copies), so
the generator tries to keep those realistic and prints how the lengths compare:

* Source mix follows the paper's initial collection (Table 3): MedMCQA 93.2%, MedQA 5.2%,
  HeadQA 1.35%, PubMedQA 0.25%. MedMCQA-style rows are built from the MedMCQA validation
  questions shipped in medagentsbench (the only MedMCQA rows in shared/data).
* A "distinct" row recombines two real questions of its source (head of one, tail of another),
  replaces ~15% of its words by words of the same source, rewrites numbers, and draws its options
  from random rows of the source. Such rows share phrasing and topic words like real questions
  do, but are not near copies of one another.
* A "near copy" row (5% by default) re-renders an earlier row with light edits of various
  strength: character edits, case changes, whitespace changes, a swapped option, a changed
  number. Some land above the 95 threshold and some below, on purpose.
* A small share of training rows (0.5%) are lightly edited eval items, so decontamination has
  something to find.

Rows are rendered like training prompts: ``question`` + ``"\\n"`` + ``"A. option"`` lines
(PubMedQA: contexts, question, yes/no/maybe). Everything is driven by one numpy Generator seed.
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

# M1DATA_SHARED_DATA points elsewhere (a git worktree sits one level deeper than the checkout)
DATA = Path(os.environ.get("M1DATA_SHARED_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data")

SOURCE_MIX = {"medmcqa": 182_822, "medqa": 10_178, "headqa": 2_657, "pubmedqa": 500}

_WORD = re.compile(r"\S+")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


@dataclass
class Item:
    """A real question with its options, as read from shared/data."""

    source: str
    question: str
    options: list[str]
    context: str = ""


def render(item: Item) -> str:
    """Render like an m1 training prompt so lengths and layout match what dedup sees."""
    lines = [f"{chr(65 + i)}. {opt}" for i, opt in enumerate(item.options)]
    head = f"{item.context}\n{item.question}" if item.context else item.question
    return head + "\n" + "\n".join(lines)


def _jsonl(path: Path) -> Iterable[dict]:
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def _options(raw: object) -> list[str]:
    """medagentsbench stores options as a dict, a list, or a dict printed as a string."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw.replace("'", '"'))
        except json.JSONDecodeError:
            return [raw]
    if isinstance(raw, dict):
        return [str(v) for v in raw.values()]
    return [str(v) for v in raw]  # type: ignore[union-attr]


def load_training_sources(data: Path = DATA) -> dict[str, list[Item]]:
    """Real questions per training source, used as material for synthetic training rows."""
    out: dict[str, list[Item]] = {"medmcqa": [], "medqa": [], "headqa": [], "pubmedqa": []}
    for row in _jsonl(data / "eval/medagentsbench/medmcqa/test.jsonl"):
        out["medmcqa"].append(Item("medmcqa", row["question"], _options(row["options"])))
    for row in _jsonl(data / "raw/medqa/4_options_phrases_no_exclude_test.jsonl"):
        out["medqa"].append(Item("medqa", row["question"], list(row["options"].values())))
    for split in ("train", "dev", "test"):
        doc = json.loads((data / f"raw/headqa/{split}_HEAD_EN.json").read_text(encoding="utf-8"))
        for exam in doc["exams"].values():
            for row in exam["data"]:
                opts = [a["atext"] for a in row["answers"]]
                out["headqa"].append(Item("headqa", row["qtext"], opts))
    doc = json.loads((data / "raw/pubmedqa/ori_pqal.json").read_text(encoding="utf-8"))
    for row in doc.values():
        ctx = "\n".join(row["CONTEXTS"])
        out["pubmedqa"].append(Item("pubmedqa", row["QUESTION"], ["yes", "no", "maybe"], ctx))
    return out


def load_eval_items(data: Path = DATA) -> list[Item]:
    """Real eval questions (MMLU CSVs, medagentsbench, MedBullets, MMLU-Pro)."""
    items: list[Item] = []
    for path in sorted((data / "eval/mmlu").glob("*_test.csv")):
        with path.open(encoding="utf-8", newline="") as fh:
            for row in csv.reader(fh):
                items.append(Item("mmlu", row[0], row[1:5]))
    for path in sorted((data / "eval/medagentsbench").glob("*/test.jsonl")):
        for row in _jsonl(path):
            items.append(Item(path.parent.name, row["question"], _options(row["options"])))
    for path in sorted((data / "eval/medbullets").glob("medbullets_op*.csv")):
        with path.open(encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh):
                opts = [row[k] for k in ("opa", "opb", "opc", "opd", "ope") if row.get(k)]
                items.append(Item(path.stem, row["question"], opts))
    rows = json.loads((data / "eval/mmlu_pro/health_result_gpt4o.json").read_text(encoding="utf-8"))
    for row in rows:
        items.append(Item("mmlu_pro", row["question"], [str(o) for o in row["options"]]))
    return items


class Perturber:
    """All random edits, drawn from one seeded numpy Generator."""

    def __init__(self, seed: int, vocabulary: Sequence[str]):
        self.rng = np.random.default_rng(seed)
        self.vocab = list(vocabulary)

    def pick(self, seq: Sequence):  # type: ignore[no-untyped-def]
        return seq[int(self.rng.integers(len(seq)))]

    def substitute_words(self, text: str, rate: float) -> str:
        """Swap words for vocabulary words: keeps length and style, changes content."""
        words = text.split(" ")
        hits = self.rng.random(len(words)) < rate
        return " ".join(self.pick(self.vocab) if h else w for w, h in zip(words, hits))

    def change_numbers(self, text: str) -> str:
        """Rewrite every number: ages and lab values are what real variants differ in."""
        return _NUMBER.sub(lambda m: str(int(self.rng.integers(1, 200))), text)

    def char_edits(self, text: str, rate: float) -> str:
        """Random insert/delete/substitute of characters at the given per-character rate."""
        chars = list(text)
        n_edits = int(self.rng.binomial(max(len(chars), 1), rate))
        alphabet = "abcdefghijklmnopqrstuvwxyz ,.-"
        for _ in range(n_edits):
            pos = int(self.rng.integers(len(chars) + 1))
            op = int(self.rng.integers(3))
            if op == 0 or not chars:
                chars.insert(pos, self.pick(alphabet))
            elif op == 1:
                del chars[min(pos, len(chars) - 1)]
            else:
                chars[min(pos, len(chars) - 1)] = self.pick(alphabet)
        return "".join(chars)

    def case_change(self, text: str) -> str:
        words = text.split(" ")
        for _ in range(int(self.rng.integers(1, 4))):
            i = int(self.rng.integers(len(words)))
            words[i] = words[i].upper() if self.rng.random() < 0.5 else words[i].lower()
        return " ".join(words)

    def whitespace_change(self, text: str) -> str:
        out = text.replace(" ", "  ", int(self.rng.integers(1, 4)))
        return out + " " if self.rng.random() < 0.5 else out.replace("\n", " \n", 1)

    def recombine(self, a: Item, b: Item, pool: Sequence[Item]) -> Item:
        """Head of one question + tail of another, then word/number edits and fresh options."""
        wa, wb = a.question.split(" "), b.question.split(" ")
        cut_a = int(len(wa) * self.rng.uniform(0.3, 0.7))
        cut_b = int(len(wb) * self.rng.uniform(0.3, 0.7))
        stem = " ".join(wa[:cut_a] + wb[cut_b:])
        stem = self.change_numbers(self.substitute_words(stem, 0.15))
        n_opts = len(a.options)
        opts = [self.substitute_words(self.pick(self.pick(pool).options), 0.15) for _ in range(n_opts)]
        if a.source == "pubmedqa":
            opts = list(a.options)
        ctx = self.substitute_words(a.context, 0.15) if a.context else ""
        return Item(a.source, stem, opts, ctx)

    def near_copy(self, text: str) -> str:
        """A light edit of an existing row; the strength varies so scores straddle 95."""
        mode = int(self.rng.integers(6))
        if mode == 0:
            return self.char_edits(text, float(self.rng.choice([0.002, 0.01, 0.02, 0.03, 0.05])))
        if mode == 1:
            return self.case_change(text)
        if mode == 2:
            return self.whitespace_change(text)
        if mode == 3:
            lines = text.split("\n")
            if len(lines) >= 3:
                i, j = self.rng.choice(np.arange(1, len(lines)), 2, replace=False)
                lines[i], lines[j] = lines[j], lines[i]
            return "\n".join(lines)
        if mode == 4:
            return self.change_numbers(text)
        return text


def vocabulary(items: Iterable[Item]) -> list[str]:
    """Every word occurrence (with repeats), so substitutions follow the real word frequencies."""
    words: list[str] = []
    for item in items:
        words.extend(w for w in item.question.split(" ") if w)
    return words


def training_rows(n: int, seed: int = 0, dup_rate: float = 0.05,
                  eval_items: Sequence[Item] = (), contam_rate: float = 0.005,
                  data: Path = DATA) -> list[str]:
    """n synthetic training prompts: distinct rows, near copies of earlier rows, eval leaks."""
    sources = load_training_sources(data)
    total = sum(SOURCE_MIX.values())
    names = list(SOURCE_MIX)
    probs = np.array([SOURCE_MIX[s] / total for s in names])
    vocab = {s: vocabulary(items) for s, items in sources.items()}
    pert = {s: Perturber(seed + i, vocab[s]) for i, s in enumerate(names)}
    rng = np.random.default_rng(seed)
    rows: list[str] = []
    eval_texts = [render(it) for it in eval_items]
    for _ in range(n):
        u = rng.random()
        if rows and u < dup_rate:
            base = rows[int(rng.integers(len(rows)))]
            rows.append(pert["medmcqa"].near_copy(base))
        elif eval_texts and u < dup_rate + contam_rate:
            rows.append(pert["medmcqa"].near_copy(eval_texts[int(rng.integers(len(eval_texts)))]))
        else:
            src = names[int(rng.choice(len(names), p=probs))]
            pool, p = sources[src], pert[src]
            rows.append(render(p.recombine(p.pick(pool), p.pick(pool), pool)))
    return rows


def eval_rows(target: int = 15_000, seed: int = 1, data: Path = DATA) -> tuple[list[Item], list[str]]:
    """All real eval items rendered as prompts, plus edited copies until `target` rows."""
    items = load_eval_items(data)
    texts = [render(it) for it in items]
    pert = Perturber(seed, vocabulary(items))
    while len(texts) < target:
        base = pert.pick(items)
        texts.append(render(Item(base.source, pert.substitute_words(base.question, 0.3),
                                 base.options, base.context)))
    return items, texts[:target] if len(texts) > target else texts


def length_summary(texts: Sequence[str]) -> str:
    lens = np.array([len(t) for t in texts])
    p50, p90 = np.percentile(lens, [50, 90])
    return f"n={len(lens):,} mean={lens.mean():.0f} p50={p50:.0f} p90={p90:.0f} max={lens.max()}"


def real_training_prompts(data: Path = DATA) -> list[str]:
    """Real source questions rendered as prompts, weighted by nothing: the reference sample."""
    return [render(it) for items in load_training_sources(data).values() for it in items]


def rows_from(source: str, n: int) -> list[str]:
    """The matcher benchmarks' ``--source``: ``synthetic`` rows (training_rows, seed 0) or up to n
    ``real`` source prompts (every one in shared/data once)."""
    return real_training_prompts()[:n] if source == "real" else training_rows(n, seed=0)


def mix_weighted_real_prompts(seed: int = 0, n: int = 50_000, data: Path = DATA) -> list[str]:
    """Real prompts resampled with the source mix, to compare like with like with the rows."""
    sources = load_training_sources(data)
    total = sum(SOURCE_MIX.values())
    rng = np.random.default_rng(seed)
    out = []
    for src, count in SOURCE_MIX.items():
        pool = sources[src]
        idx = rng.integers(len(pool), size=int(round(n * count / total)))
        out.extend(render(pool[i]) for i in idx)
    return out
