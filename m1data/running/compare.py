"""Two builds side by side: what a user asks after regenerating the traces with a new teacher.

Per source: the questions each build asked its teacher and the rows it kept, the questions kept
by both, the verified yield (questions kept / questions asked), and, where both kept a question,
how often their answers agree. Then the reasoning length of the kept rows (target-tokenizer
tokens, counted as the dataset card counts them: m1's target tokenizer when it is installed
locally, else whitespace words, and the report says which), the tokens and cost of each build's
LLM stages, and the yield by try when a build made several (traces' `attempts`).

It reads only the two run folders: their stage manifests and the compared stage's rows (default
`traces`), so it needs no endpoint, no key and no cache. A stage stopped by transient failures
(its manifest says `complete: false`) is compared as it stands, and the report says so: its
counts are not final until the same build is run again. `compare_runs` returns the numbers and
the markdown; with `out_dir` it also writes `compare.md` and `compare.png` (yield per source and
the two length distributions, side by side).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from m1data.durable import folder_lock, replacing
from m1data.errors import UserError
from m1data.running.funnel import run_folder
from m1data.running.pipeline import load_stage_rows, read_manifests, stage_dirname
from m1data.schema import SOURCES, column_values, question_id

REPORT_FILE = "compare.md"
FIGURE_FILE = "compare.png"
LLM_COST_KEYS = ("prompt_tokens", "completion_tokens", "sent", "cached", "cost_sent")


@dataclass
class Build:
    """One run's side of the comparison."""

    run_dir: Path
    asked: dict[str, int]  # questions the compared stage received, per source
    kept: dict[str, int]  # distinct questions it kept, per source
    rows: int
    answers: dict[str, str | None]  # question id -> the kept row's answer letter
    sources: dict[str, str]  # question id -> source
    lengths: list[int]
    cost: dict[str, Any]
    by_attempt: dict[str, dict[str, Any]] = field(default_factory=dict)
    length_unit: str = ""
    transient_failures: int = 0  # the stage's requests still to send: its counts are not final

    @property
    def questions(self) -> set[str]:
        return set(self.answers)


@dataclass
class Comparison:
    a: Build
    b: Build
    stage: str
    per_source: list[dict[str, Any]]
    length_unit: str
    markdown: str = ""
    figure: bytes | None = None


def _stage_manifest(run_dir: Path, stage: str) -> dict[str, Any]:
    manifests = read_manifests(run_folder(run_dir, "compare"))
    found = [m for m in manifests if m["stage"] == stage]
    if not found:
        stages = ", ".join(m["stage"] for m in manifests) or "none"
        raise UserError(f"{run_dir}: no completed {stage!r} stage to compare (completed stages: {stages})")
    return found[-1]


def _cost(manifests: list[dict[str, Any]]) -> dict[str, Any]:
    """Tokens, requests and cost over every LLM stage of a run (None cost: a model had no price)."""
    total: dict[str, Any] = dict.fromkeys(LLM_COST_KEYS, 0)
    for m in manifests:
        stats = m.get("stats") or {}
        if "requests" not in stats:
            continue
        for key in LLM_COST_KEYS:
            value = stats.get(key)
            total[key] = None if value is None or total[key] is None else total[key] + value
    return total


def read_build(run_dir: str | Path, stage: str = "traces", tokenizer: Any | None = None) -> Build:
    """The numbers of one run that a comparison needs (module docstring)."""
    from m1data.cards.render import TARGET_TOKENIZER, _lengths, _tokenizer

    run_dir = Path(run_dir)
    manifest = _stage_manifest(run_dir, stage)
    rows = load_stage_rows(run_dir / stage_dirname(manifest["index"], stage))
    answers: dict[str, str | None] = {}
    sources: dict[str, str] = {}
    answer_column = "teacher_answer" if "teacher_answer" in rows.column_names else None
    given = column_values(rows, answer_column) if answer_column else [None] * len(rows)
    for row_id, answer, source in zip(column_values(rows, "id"), given, column_values(rows, "source"), strict=True):
        qid = question_id(row_id)
        if qid not in answers:
            answers[qid] = answer
            sources[qid] = source
    texts = [t or "" for t in column_values(rows, "reasoning")] if "reasoning" in rows.column_names else []
    counter = _tokenizer(tokenizer)
    lengths, unit = _lengths(texts, counter, tokenizer if isinstance(tokenizer, str) else TARGET_TOKENIZER)
    return Build(run_dir, dict(manifest["counts_in"]), dict(sorted(Counter(sources.values()).items())), len(rows),
                 answers, sources, lengths, _cost(read_manifests(run_dir)),
                 (manifest.get("stats") or {}).get("by_attempt") or {}, unit,
                 0 if manifest.get("complete", True) else int(manifest.get("transient_failures") or 0))


def _per_source(a: Build, b: Build) -> list[dict[str, Any]]:
    known = set(a.asked) | set(b.asked) | set(a.kept) | set(b.kept)
    order = [s for s in SOURCES if s in known] + sorted(known - set(SOURCES))
    both = a.questions & b.questions
    table = []
    for source in [*order, "total"]:
        def count(counts: dict[str, int], source: str = source) -> int:
            return sum(counts.values()) if source == "total" else counts.get(source, 0)

        shared = [q for q in both if source == "total" or a.sources[q] == source]
        agree = sum(a.answers[q] == b.answers[q] for q in shared)
        asked_a, asked_b, kept_a, kept_b = count(a.asked), count(b.asked), count(a.kept), count(b.kept)
        table.append({
            "source": source, "asked_a": asked_a, "asked_b": asked_b, "kept_a": kept_a, "kept_b": kept_b,
            "both": len(shared), "yield_a": kept_a / asked_a if asked_a else None,
            "yield_b": kept_b / asked_b if asked_b else None, "agree": agree,
            "agreement": agree / len(shared) if shared else None,
        })
    return table


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _money(value: float | None) -> str:
    return "n/a (no price)" if value is None else f"${value:,.4f}"


def _length_row(name: str, lengths: list[int]) -> str:
    import numpy as np

    if not lengths:
        return f"| {name} | 0 | | | | | |"
    p = [float(np.percentile(lengths, q)) for q in (25, 50, 75, 90)]
    return f"| {name} | {len(lengths):,} | {p[0]:,.0f} | {p[1]:,.0f} | {p[2]:,.0f} | {p[3]:,.0f} | {max(lengths):,} |"


def markdown(c: Comparison) -> str:
    a, b = c.a, c.b
    lines = [f"# {a.run_dir.name} (A) vs {b.run_dir.name} (B)", "",
             f"A: `{a.run_dir}`  ", f"B: `{b.run_dir}`  ", f"Rows compared: the `{c.stage}` stage's kept rows.", "",
             "## Yield per source", "",
             "Asked: questions the stage received. Kept: questions it kept a row for. Both: kept by both builds.",
             "Agreement: where both kept the question, the share whose answers are the same letter.", "",
             "| source | asked A | kept A | yield A | asked B | kept B | yield B | both | agreement |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in c.per_source:
        name = f"**{r['source']}**" if r["source"] == "total" else r["source"]
        lines.append(f"| {name} | {r['asked_a']:,} | {r['kept_a']:,} | {_pct(r['yield_a'])} | {r['asked_b']:,} "
                     f"| {r['kept_b']:,} | {_pct(r['yield_b'])} | {r['both']:,} | {_pct(r['agreement'])} |")
    for name, build in (("A", a), ("B", b)):
        if build.transient_failures:
            n = build.transient_failures
            lines += ["", f"**{name}'s `{c.stage}` stage is incomplete: {n:,} request{'s' if n != 1 else ''} failed "
                      "transiently**, so its counts are not final; the same build command again sends them."]
    lines += ["", f"## Reasoning length ({c.length_unit})", "",
              "| build | rows | p25 | median | p75 | p90 | max |", "|---|---|---|---|---|---|---|",
              _length_row("A", a.lengths), _length_row("B", b.lengths), "",
              "## Tokens and cost (every LLM stage of the run)", "",
              "Cost is what each run paid for the requests it sent; answers read from a cache cost it nothing.", "",
              "| build | requests sent | read from cache | prompt tokens | completion tokens | cost paid |",
              "|---|---|---|---|---|---|"]
    for name, build in (("A", a), ("B", b)):
        k = build.cost
        lines.append(f"| {name} | {k['sent']:,} | {k['cached']:,} | {k['prompt_tokens']:,} | "
                     f"{k['completion_tokens']:,} | {_money(k['cost_sent'])} |")
    if len(a.by_attempt) > 1 or len(b.by_attempt) > 1:
        lines += ["", "## Yield by try", "", "New: questions first verified at that try.", "",
                  "| build | try | asked | verified | new | completion tokens | cost |", "|---|---|---|---|---|---|---|"]
        for name, build in (("A", a), ("B", b)):
            for attempt, t in build.by_attempt.items():
                lines.append(f"| {name} | {attempt} | {t['asked']:,} | {t['verified']:,} | {t['first_verified']:,} "
                             f"| {t['completion_tokens']:,} | {_money(t.get('cost'))} |")
    if c.figure is not None:
        lines += ["", f"![yield and reasoning length]({FIGURE_FILE})"]
    return "\n".join(lines) + "\n"


def figure_png(c: Comparison) -> bytes | None:
    """Yield per source (grouped bars) beside the two reasoning-length distributions; None
    without matplotlib (the `cards` extra)."""
    from m1data.cards.figures import _png, _pyplot

    plt = _pyplot()
    if plt is None:
        return None
    import numpy as np

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), dpi=100)
    rows = c.per_source
    x = np.arange(len(rows))
    for offset, side, colour in ((-0.2, "a", "#4477aa"), (0.2, "b", "#ee6677")):
        values = [100 * (r[f"yield_{side}"] or 0) for r in rows]
        name = getattr(c, side).run_dir.name
        left.bar(x + offset, values, width=0.4, color=colour, label=f"{side.upper()}: {name}")
    left.set_xticks(x, [r["source"] for r in rows])
    left.set_ylabel("verified yield (%)")
    left.set_title("Verified yield per source")
    left.legend(fontsize=8)
    both = c.a.lengths + c.b.lengths
    bins: Any = np.histogram_bin_edges(both, bins=40) if both else 10
    for side, colour in (("a", "#4477aa"), ("b", "#ee6677")):
        lengths = getattr(c, side).lengths
        if lengths:
            label = f"{side.upper()} (median {np.median(lengths):,.0f})"
            right.hist(lengths, bins=bins, alpha=0.55, color=colour, label=label)
    right.set_xlabel(c.length_unit.split(" (")[0])
    right.set_ylabel("rows")
    right.set_title("Reasoning length of kept rows")
    if both:
        right.legend(fontsize=8)
    else:  # a stage before the teacher's (dedup, decontaminate): its rows have no reasoning yet
        right.text(0.5, 0.5, "no reasoning in these rows", ha="center", va="center", transform=right.transAxes)
    fig.tight_layout()
    return _png(fig, plt)


def compare_runs(
    run_a: str | Path,
    run_b: str | Path,
    *,
    stage: str = "traces",
    out_dir: str | Path | None = None,
    tokenizer: Any | None = None,
) -> Comparison:
    """Compare two run folders (module docstring); with `out_dir`, write compare.md and compare.png there."""
    if out_dir is not None and Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise UserError(f"{out_dir} is a file; the report goes to a folder (compare.md, compare.png)")
    a, b = read_build(run_a, stage, tokenizer), read_build(run_b, stage, tokenizer)
    units = {a.length_unit, b.length_unit}
    comparison = Comparison(a, b, stage, _per_source(a, b), " / ".join(sorted(units)))
    if out_dir is not None:
        comparison.figure = figure_png(comparison)
    comparison.markdown = markdown(comparison)
    if out_dir is not None:
        write_report(comparison, Path(out_dir))
    return comparison


def write_report(comparison: Comparison, out: Path) -> None:
    """compare.md and compare.png in `out`, as a pair: both written beside their names first; then
    the old report goes, the figure is renamed in, and the report last. Why: each was written
    straight to its name, so a kill mid-write left one cut short there (the previous one gone), or a
    new report beside another comparison's figure. Now a kill before the renames leaves the
    previous pair whole, and whenever compare.md is there the figure beside it is its own. Without
    a figure (no matplotlib) an old one goes: it showed other runs. The renames are made holding
    the folder (`folder_lock`): two comparisons into one --out at once interleaved them, and one's
    report ended beside the other's figure."""
    out.mkdir(parents=True, exist_ok=True)
    files = {REPORT_FILE: comparison.markdown.encode("utf-8")}
    if comparison.figure is not None:
        files[FIGURE_FILE] = comparison.figure
    with contextlib.ExitStack() as held:  # released after the renames
        with contextlib.ExitStack() as renames:  # undone in reverse: the figure renamed in first, the report last
            for name, data in files.items():
                renames.enter_context(replacing(out / name)).write_bytes(data)
            held.enter_context(folder_lock(out))
            (out / REPORT_FILE).unlink(missing_ok=True)
            if comparison.figure is None:
                (out / FIGURE_FILE).unlink(missing_ok=True)


__all__ = [
    "FIGURE_FILE",
    "REPORT_FILE",
    "Build",
    "Comparison",
    "compare_runs",
    "figure_png",
    "markdown",
    "read_build",
]
