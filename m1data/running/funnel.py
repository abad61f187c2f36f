"""The funnel of a run (paper Table 3) and the lineage of a row, read from stage manifests."""

from __future__ import annotations

from collections import Counter

from pathlib import Path
from typing import Any

from m1data.errors import UserError
from m1data.running.pipeline import SUPERSEDED, load_stage_dropped, load_stage_rows, read_manifests, stage_dirname
from m1data.schema import SOURCES, column_values


def _columns(manifests: list[dict[str, Any]]) -> list[str]:
    seen = {s for m in manifests for s in (*m["counts_in"], *m["counts_out"])}
    for m in manifests:
        for per_source in (*m["drops"].values(), *_out_of_scope(m).values()):  # a source all left out counts too
            seen.update(per_source)
    known = [s for s in SOURCES if s in seen]
    return known + sorted(seen - set(known))


def _row(label: str, counts: dict[str, int], columns: list[str]) -> str:
    cells = [f"{counts.get(c, 0):,}" for c in columns]
    return f"| {label} | " + " | ".join(cells) + f" | {sum(counts.get(c, 0) for c in columns):,} |"


def _header(first: str, columns: list[str]) -> list[str]:
    return [f"| {first} | " + " | ".join(columns) + " | total |", "|---" * (len(columns) + 2) + "|"]


def _raw_counts(manifest: dict[str, Any]) -> dict[str, int]:
    """Rows read by the load stage: kept plus dropped."""
    counts = dict(manifest["counts_out"])
    for per_source in manifest["drops"].values():
        for source, n in per_source.items():
            counts[source] = counts.get(source, 0) + n
    return counts


def _out_of_scope(manifest: dict[str, Any]) -> dict[str, dict[str, int]]:
    """{why: {source: count}} of the records a load stage's split or scope filter left out
    (`out_of_scope` per source in its stats: PubMedQA's other split, another MMLU subject). Not
    rows, so neither kept nor dropped, but counted: the funnel shows them so that every record of
    the files is in it."""
    table: dict[str, dict[str, int]] = {}
    for source, stats in ((manifest.get("stats") or {}).get("sources") or {}).items():
        for why, n in ((stats if isinstance(stats, dict) else {}).get("out_of_scope") or {}).items():
            table.setdefault(why, {})[source] = n
    return table


def run_folder(run_dir: str | Path, command: str) -> Path:
    """A run folder that exists, else one line: the check of every job that reads one (funnel,
    lineage, compare), at every door. It lived in the command line, so `funnel_markdown(FILE)`
    from Python was a bare NotADirectoryError and `compare FILE` said "no such run directory"."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"{run_dir} is a file; `m1data {command}` reads a run folder (`m1data build --out`)")
    if not run_dir.exists():
        raise UserError(f"{run_dir}: no such run folder (`m1data build --out` writes one)")
    return run_dir


def funnel_markdown(run_dir: str | Path) -> str:
    """Per-source, per-stage counts in Table 3's shape, then every drop reason and eval-set hit."""
    manifests = read_manifests(run_folder(run_dir, "funnel"))
    if not manifests:
        raise FileNotFoundError(f"{run_dir}: no completed stages (no */manifest.json)")
    columns = _columns(manifests)
    if not columns:
        return f"## Funnel\n\n{_no_rows(manifests)}\n"
    lines = ["## Funnel", "", *_header("stage", columns)]
    left_out = [(m["stage"], why, per_source) for m in manifests for why, per_source in _out_of_scope(m).items()]
    raw = _raw_counts(manifests[0]) if not manifests[0]["counts_in"] else None
    if raw is not None and left_out:  # read top down: records, those left out, the rows they leave
        records = Counter(raw)
        for _, _, per_source in left_out:
            records.update(per_source)
        lines.append(_row("records in the files", dict(records), columns))
    for stage, why, per_source in left_out:
        lines.append(_row(f"{stage}: left out of scope ({why})", per_source, columns))
    if raw is not None:
        lines.append(_row("raw rows read", raw, columns))
    for m in manifests:
        label = f"after {m['stage']}"
        if not m.get("complete", True):
            label += f" (incomplete: {m.get('transient_failures', 0):,} transient failures to retry)"
        lines.append(_row(label, m["counts_out"], columns))

    lines += ["", "## Dropped rows by stage and reason", "", *_header("stage: reason", columns)]
    for m in manifests:
        for reason, per_source in m["drops"].items():
            lines.append(_row(f"{m['stage']}: {reason}", per_source, columns))

    lines += _tries_section(manifests)
    lines += _eval_sets_table(manifests)
    ngram = [(m["stage"], m["stats"]["ngram_check"]) for m in manifests if m.get("stats", {}).get("ngram_check")]
    if ngram:
        lines += ["", "## Word n-gram cross-check (flagged rows, beside the fuzzy verdict)", "",
                  "A row is flagged when it holds at least `share` of one eval question's word n-grams, and at least",
                  "3 of them (`any`: one n-gram). N-grams found in more than `ignored above` training rows are exam",
                  "boilerplate (\"which of the following is the most likely\") and never count as held. The fuzzy",
                  "verdict alone removes rows; this column is a second opinion.", "",
                  "| stage | n | ignored above | share | flagged | both | n-gram only | fuzzy only |",
                  "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {stage} | {c['n']} | {c.get('common_ngram_rows', 'none')} | {_share(c)} | {c['flagged']:,} "
                  f"| {c['both']:,} | {c['ngram_only']:,} | {c['fuzzy_only']:,} |" for stage, c in ngram]
        lines += _ngram_only_rows(ngram)
    return "\n".join(lines) + "\n"


def _no_rows(manifests: list[dict[str, Any]]) -> str:
    """The funnel of a run that never had a row (a 0-row m23K resampled, an empty source file),
    in words: its tables had a source column for no source and not one count (nor a stage's
    tries, eval-set hits or n-gram checks: a stage given no rows skips)."""
    first, later = manifests[0]["stage"], [m["stage"] for m in manifests[1:]]
    return f"No rows: {first} read none" + (f", so {', '.join(later)} had none to keep or drop." if later else ".")


NGRAM_ROWS_SHOWN = 20


def _ngram_only_rows(checks: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """The rows the n-gram check flags and the fuzzy match kept, the candidates to inspect, with
    the eval question each holds so much of: the first NGRAM_ROWS_SHOWN of a stage, and where the
    rest are."""
    listed = [(stage, c["ngram_only_rows"]) for stage, c in checks if c.get("ngram_only_rows")]
    if not listed:
        return []
    lines = ["", "N-gram only rows (kept by the fuzzy match; candidates to inspect):", "",
             "| stage | row | eval set | eval question |", "|---|---|---|---|"]
    for stage, rows in listed:
        lines += [f"| {stage} | {r['id']} | {r['eval_set']} | {r['eval_id']} |" for r in rows[:NGRAM_ROWS_SHOWN]]
        if len(rows) > NGRAM_ROWS_SHOWN:
            lines.append(f"| {stage} | and {len(rows) - NGRAM_ROWS_SHOWN:,} more: stats.ngram_check.ngram_only_rows "
                         f"in its manifest.json | | |")
    return lines


def _share(check: dict[str, Any]) -> str:
    """The n-gram check's `min_share` as a percentage; `any` for runs made before it existed."""
    share = check.get("min_share")
    return "any" if share is None else f"{share:.0%}"


def _tries_section(manifests: list[dict[str, Any]]) -> list[str]:
    """What the extra tries bought (traces' `attempts` > 1): per stage and try, questions asked,
    replies verified, questions first verified at that try, rows kept from it, tokens and cost."""
    tables = [(m["stage"], m["stats"]["by_attempt"]) for m in manifests
              if (m.get("stats") or {}).get("attempts", 1) > 1 and m["stats"].get("by_attempt")]
    if not tables:
        return []
    lines = ["", "## Teacher yield by try", "",
             "A question whose reply failed verification was asked again. `new`: questions first verified at",
             "that try (what it bought); `kept`: rows kept from it; tokens and cost: every reply of that try,",
             "sent in this run or read from the cache.", "",
             "| stage | try | asked | verified | new | kept | completion tokens | cost |",
             "|---|---|---|---|---|---|---|---|"]
    for stage, table in tables:
        for attempt, t in table.items():
            cost = "n/a" if t.get("cost") is None else f"${t['cost']:,.4f}"
            lines.append(f"| {stage} | {attempt} | {t['asked']:,} | {t['verified']:,} | {t['first_verified']:,} "
                         f"| {t['kept']:,} | {t['completion_tokens']:,} | {cost} |")
    return lines


def _eval_sets_table(manifests: list[dict[str, Any]]) -> list[str]:
    """Per decontamination stage and eval set: the questions matched against (every question with
    text), those of them whose answer key is broken (matched all the same, never scored), and the
    training rows dropped. Older manifests without `eval_items` show their hits only."""
    stages = [(m["stage"], m.get("stats") or {}) for m in manifests]
    stages = [(stage, st) for stage, st in stages if st.get("eval_items") or st.get("by_eval_set")]
    if not stages:
        return []
    lines = ["", "## Decontamination by eval set", "",
             "| stage | eval set | questions compared against | of them unscored (broken answer key) | rows dropped |",
             "|---|---|---|---|---|"]
    for stage, st in stages:
        items, unscored, hits = st.get("eval_items") or {}, st.get("eval_items_unscored") or {}, st.get("by_eval_set") or {}
        for name in sorted({*items, *hits}):
            total = f"{items[name]:,}" if name in items else ""
            lines.append(f"| {stage} | {name} | {total} | {unscored.get(name, 0):,} | {hits.get(name, 0):,} |")
    return lines


def lineage(run_dir: str | Path, row_id: str) -> list[dict[str, Any]]:
    """Where one row went: for each stage, kept, or dropped with its reason and detail."""
    history = []
    for m in read_manifests(run_folder(run_dir, "lineage")):
        stage_dir = Path(run_dir) / stage_dirname(m["index"], m["stage"])
        rows = load_stage_rows(stage_dir, columns=["id"])  # checks dropped.parquet too
        if row_id in set(column_values(rows, "id")):
            history.append({"stage": m["stage"], "status": "kept"})
            continue
        dropped = load_stage_dropped(stage_dir, checked=True)
        # the id column read whole, then only its rows (iterating the Dataset formatted every row)
        hits = [] if dropped is None else [dropped[i] for i, x in enumerate(column_values(dropped, "id")) if x == row_id]
        hit = next((r for r in hits if not r.get(SUPERSEDED)), hits[-1] if hits else None)  # its last word
        if hit is not None:
            detail = {k: v for k, v in hit.items() if k not in ("id", "source", "reason", "metadata")}
            history.append({"stage": m["stage"], "status": "dropped", "reason": hit["reason"], **detail})
        break
    return history


__all__ = ["funnel_markdown", "lineage", "run_folder"]
