"""Sweeps over thinking budgets and forcing rounds, and the paper's plots (Figures 1 and 3).

```python
from m1data.infer.budget import BudgetConfig
from m1data.infer.sweep import run_sweep
# Figure 1: accuracy vs thinking budget
run_sweep(engine, eval_sets, "runs/sweep/m1-7B-1K", BudgetConfig(model="m1-7B-1K"),
          budgets=[512, 1024, 2048, 4096, 8192], forcing_rounds=[0])
# Figure 3: accuracy vs forcing rounds, within a 2,048-token budget
run_sweep(engine, eval_sets, "runs/sweep/m1-7B-1K-forcing", BudgetConfig(model="m1-7B-1K"),
          budgets=[2048], forcing_rounds=[0, 1, 2, 3, 4, 5])
```

Every (budget, rounds) point of the grid is one `m1data.infer.score.infer` run in its own folder
``b{budget}-r{rounds}/`` (records.jsonl, metrics.json), all through the LLM stages' runtime with
one reply cache, ``llm_cache.sqlite`` in the sweep folder unless the runtime names one. A point
whose metrics.json already holds the same setting on the same rows (the eval sets'
fingerprints) is read back instead of re-run (it sends
nothing), and the cache makes a half-done point pay only for what it had not received: an
interrupted sweep resumes where it stopped. A point left incomplete by transient failures is
skipped over, the others still run, and `InferIncomplete` is raised at the end (no sweep.json,
no plots) so that the same command runs again. The grid's table goes to ``sweep.json``; the plots to ``accuracy_vs_budget.png`` (when more than one budget) and
``accuracy_vs_forcing_rounds.png`` (when more than one rounds value), listed in ``figures.json``
so that a later plot into the folder removes those it does not draw again, drawn like the paper's
Figures 1 and 3: one panel per eval set plus the average, each titled with its number of
questions; one colour per model (a short label: the last part of its name or path), markers and a
small sideways offset so that overlapping series stay visible; accuracy on 0-100; whole numbers
for forcing rounds; on the budget plot, a least-squares line of accuracy on log2(budget) per model
with its 95% confidence band; the legend below the panels, where it covers nothing.
`plot_sweep` also takes the points of several sweeps (e.g. 7B-1K, 7B-23K, 32B-1K) to draw them
together, as the paper does (``m1data infer plot RUN_DIR...``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from m1data.infer.budget import BudgetConfig
from m1data.infer.score import (
    EvalSets,
    EvalSource,
    InferIncomplete,
    engine_name,
    eval_fingerprint,
    infer,
    load_eval_sets,
    open_infer_cache,
    prompts_fingerprint,
    scored_prompts,
    write_json,
)

from m1data.durable import folder_lock, replacing, write_atomic
from m1data.errors import UserError
from m1data.llm.cache import Cache
from m1data.llm.runner import run_sync
from m1data.llm.stages import LLMRuntime
from m1data.llm.types import Engine
from m1data.running.pipeline import run_lock

log = logging.getLogger(__name__)

__all__ = ["load_points", "plot_sweep", "run_sweep", "short_label", "sweep", "sweep_settings"]

AVERAGE = "average"


def _point(metrics: dict[str, Any], label: str) -> dict[str, Any]:
    config = metrics["config"]
    return {
        "label": label,
        "budget": config["thinking_budget"],
        "forcing_rounds": config["forcing_rounds"],
        "accuracy": {name: s["accuracy"] for name, s in metrics["sets"].items()}
        | {AVERAGE: metrics["average_accuracy"]},
        "mean_thinking_tokens": {name: s["mean_thinking_tokens"] for name, s in metrics["sets"].items()},
        "n_per_set": {name: s["n"] for name, s in metrics["sets"].items()},
        "unscored_per_set": {name: s.get("unscored", 0) for name, s in metrics["sets"].items()},
        "errors": sum(s["errors"] for s in metrics["sets"].values()),
        "n": metrics["n"],
    }


def _done(path: Path, config: BudgetConfig, fingerprints: dict[str, str], limit: int | None,
          asked: dict[str, str]) -> dict[str, Any] | None:
    """The metrics of a finished point with the same setting on the same rows (the eval sets'
    fingerprints: a set changed under the same name is run again, which the cache keeps cheap),
    asked of the same engine in the same prompts (`asked`: `engine` and `prompts_fingerprint`)."""
    if not path.is_file():
        return None
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:  # damaged: the point runs again, its replies come from the cache
        log.warning(f"{path} is not readable ({err}); that point runs again (the cache answers what it was sent)")
        return None
    if not isinstance(metrics, dict):
        return None
    same = (
        metrics.get("config") == json.loads(json.dumps(asdict(config)))
        and list(metrics.get("sets", {})) == list(fingerprints)  # the sets' order too
        and metrics.get("eval_fingerprints") == fingerprints
        and metrics.get("limit") == limit
        and all(metrics.get(key) == value for key, value in asked.items())
    )
    return metrics if same else None


def sweep_settings(base: BudgetConfig, budgets: Sequence[int], forcing_rounds: Sequence[int]) -> list[BudgetConfig]:
    """The settings of the grid, each checked by `BudgetConfig`. Why before any point: a negative
    budget late in the list stopped the sweep after the points before it had run, and a value
    given twice wrote the same point twice into sweep.json and the plots."""
    for what, values in (("budgets", budgets), ("forcing rounds", forcing_rounds)):
        if not values:
            raise UserError(f"no {what} to sweep")
        if len(set(values)) != len(values):
            raise UserError(f"{what} {list(values)} name a value twice")
    return [replace(base, thinking_budget=b, forcing_rounds=r) for b in budgets for r in forcing_rounds]


async def sweep(
    engine: Engine,
    eval_sets: EvalSets,
    out_dir: str | Path,
    base: BudgetConfig,
    budgets: Sequence[int],
    forcing_rounds: Sequence[int] = (0,),
    *,
    cache: Cache | None = None,
    runtime: LLMRuntime | None = None,
    limit: int | None = None,
    render: Callable[[list[dict[str, str]]], str] | None = None,
    label: str | None = None,
) -> list[dict[str, Any]]:
    """Run (or resume) the budgets x forcing_rounds grid; returns one point per setting (`render`:
    as `m1data.infer.score.infer` takes it). Raises
    `InferIncomplete` when any point is left incomplete (module docstring). The sweep folder is
    held (`run_lock`) throughout: a second sweep into it is refused, not mixed with this one."""
    with run_lock(out_dir, "m1data command (infer sweep)"):
        return await _sweep(engine, eval_sets, Path(out_dir), base, budgets, forcing_rounds, cache, runtime, limit,
                            render, label)


async def _sweep(engine: Engine, eval_sets: Mapping[str, EvalSource], out: Path, base: BudgetConfig,
                 budgets: Sequence[int], forcing_rounds: Sequence[int], cache: Cache | None,
                 runtime: LLMRuntime | None, limit: int | None, render: Callable[[list[dict[str, str]]], str] | None,
                 label: str | None) -> list[dict[str, Any]]:
    label = label or base.model
    points = []
    missing = total = 0
    incomplete = []
    grid = sweep_settings(base, budgets, forcing_rounds)  # every setting checked before any point runs
    sets = load_eval_sets(eval_sets, limit)  # read once for every point
    fingerprints = {name: eval_fingerprint(rows) for name, rows in sets.items()}
    asked = {"engine": engine_name(engine), "prompts_fingerprint": prompts_fingerprint(scored_prompts(sets, render)[1])}
    for config in grid:
        point_dir = out / f"b{config.thinking_budget}-r{config.forcing_rounds}"
        metrics = _done(point_dir / "metrics.json", config, fingerprints, limit, asked)
        if metrics is not None and metrics.get("label") != label:
            # read back under another --label: the point's own metrics.json said the old name
            # while sweep.json and the plots said the new one
            metrics = {**metrics, "label": label}
            write_json(point_dir / "metrics.json", metrics)
        if metrics is None:
            try:
                metrics = await infer(engine, sets, point_dir, config, cache=cache, runtime=runtime,
                                      limit=limit, render=render, label=label)
            except InferIncomplete as stop:
                incomplete.append(point_dir.name)
                missing, total = missing + stop.missing, total + stop.total
                continue
        points.append(_point(metrics, label))
    if incomplete:
        raise InferIncomplete(f"{out} (points {', '.join(incomplete)})", missing, total)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "sweep.json", points)
    plot_sweep(points, out)
    return points


def run_sweep(
    engine: Engine,
    eval_sets: EvalSets,
    out_dir: str | Path,
    base: BudgetConfig,
    budgets: Sequence[int],
    forcing_rounds: Sequence[int] = (0,),
    *,
    runtime: LLMRuntime | None = None,
    limit: int | None = None,
    render: Callable[[list[dict[str, str]]], str] | None = None,
    label: str | None = None,
) -> list[dict[str, Any]]:
    """`sweep` from synchronous code, with the reply cache `open_infer_cache` names for the sweep
    folder; takes ownership of `engine` and closes it at the end."""

    with open_infer_cache(runtime, out_dir) as cache:
        return run_sync(engine, lambda: sweep(engine, eval_sets, out_dir, base, budgets, forcing_rounds, cache=cache,
                                              runtime=runtime, limit=limit, render=render, label=label))


def short_label(label: str) -> str:
    """What a legend shows for a model: the last part of a Hub id or path (``Qwen/Qwen2.5-7B-Instruct``
    -> ``Qwen2.5-7B-Instruct``, ``runs/m1-7B-1K/checkpoint-50`` -> ``m1-7B-1K/checkpoint-50``)."""
    parts = [p for p in str(label).replace("\\", "/").split("/") if p]
    if not parts:
        return str(label)
    if len(parts) > 1 and parts[-1].startswith("checkpoint"):
        return "/".join(parts[-2:])
    return parts[-1]


def load_points(run_dir: str | Path, label: str | None = None) -> list[dict[str, Any]]:
    """The points of a sweep folder (``sweep.json``) or of one `infer` run (``metrics.json``),
    relabelled with `label` when given."""
    run = Path(run_dir)
    if (run / "sweep.json").is_file():
        points = json.loads((run / "sweep.json").read_text(encoding="utf-8"))
    elif (run / "metrics.json").is_file():
        metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
        points = [_point(metrics, metrics.get("label") or metrics["config"]["model"])]
    else:
        raise FileNotFoundError(f"{run}: neither sweep.json (m1data infer sweep) nor metrics.json (m1data infer run)")
    return [{**p, "label": label} for p in points] if label else points


def _panel_n(points: list[dict[str, Any]], panel: str) -> str:
    if panel == AVERAGE:
        sets = {name for p in points for name in p.get("n_per_set", {})}
        return f"mean of {len(sets)} sets" if sets else "mean of sets"
    counts = {p.get("n_per_set", {}).get(panel) for p in points} - {None}
    if not counts:
        return "n unknown"
    shown = f"n = {max(counts):,}" if len(counts) == 1 else f"n = {min(counts):,}-{max(counts):,}"
    unscored = max((p.get("unscored_per_set", {}).get(panel, 0) for p in points), default=0)
    return f"{shown}, {unscored:,} unscored" if unscored else shown  # a set with broken keys says so


def _fit_with_band(xs: list[float], ys: list[float], grid: Any) -> tuple[Any, Any, Any] | None:
    """Least-squares line of ys on xs over `grid`, with the 95% confidence band of the mean."""
    import numpy as np

    x, y = np.asarray(xs, float), np.asarray(ys, float)
    if len(x) < 3 or np.ptp(x) == 0:
        return None
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (slope * x + intercept)
    dof = len(x) - 2
    s_err = math.sqrt(float(residual @ residual) / dof)
    try:
        from scipy.stats import t

        t_crit = float(t.ppf(0.975, dof))
    except ImportError:  # the normal value; a little narrow for few points
        t_crit = 1.96
    sxx = float(((x - x.mean()) ** 2).sum())
    half = t_crit * s_err * np.sqrt(1 / len(x) + (grid - x.mean()) ** 2 / sxx)
    fit = slope * grid + intercept
    return fit, fit - half, fit + half


def _plot_axis(points: list[dict[str, Any]], x: str, series: str, title: str, path: Path,
               renames: contextlib.ExitStack) -> None:
    """The figure drawn to a temporary name beside `path`, renamed onto it when `renames` closes."""
    import matplotlib.pyplot as plt

    fig = sweep_figure(points, x, series, title)
    try:  # a kill mid-write left a PNG cut short, the previous one gone
        fig.savefig(renames.enter_context(replacing(path)), dpi=120)
    finally:
        plt.close(fig)


def sweep_figure(points: list[dict[str, Any]], x: str, series: str, title: str) -> Any:
    """The matplotlib Figure of one sweep axis (`x` = "budget" or "forcing_rounds"; `series` the other)."""
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on servers and CI
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.ticker import FixedLocator, MaxNLocator

    panels = sorted({name for p in points for name in p["accuracy"]} - {AVERAGE}) + [AVERAGE]
    cols = min(4, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.8 * cols, 3.2 * rows + 0.9), squeeze=False)
    models = list(dict.fromkeys(p["label"] for p in points))
    colours = plt.get_cmap("tab10").colors
    markers = "osD^vP*X"
    styles = ["-", "--", ":", "-."]
    values = sorted({p[series] for p in points})
    xs_all = sorted({p[x] for p in points})
    for ax, panel in zip(axes.flat, panels):
        for m, model in enumerate(models):
            # apart by a little, and earlier series drawn wider, so that equal points stay visible
            offset = (m - (len(models) - 1) / 2) * (0.05 if x == "budget" else 0.1)
            width, size = max(0.8, 2.6 - 0.6 * m), max(3.5, 8.5 - 1.6 * m)
            for v, value in enumerate(values):
                pts = sorted((p[x], 100 * p["accuracy"][panel]) for p in points
                             if p["label"] == model and p[series] == value and panel in p["accuracy"])
                if not pts:
                    continue
                px = [a * 2 ** offset if x == "budget" else a + offset for a, _ in pts]
                name = short_label(model)
                if len(values) > 1:
                    name += f", {value} rounds" if series == "forcing_rounds" else f", budget {value:,}"
                ax.plot(px, [b for _, b in pts], marker=markers[m % len(markers)], linestyle=styles[v % len(styles)],
                        color=colours[m % len(colours)], label=name, alpha=0.9, markeredgecolor="white",
                        markersize=size, linewidth=width, zorder=3 + m)
                if x == "budget":  # one trend per series: pooled over forcing rounds, it matched no series (audit)
                    grid = np.linspace(math.log2(xs_all[0]), math.log2(xs_all[-1]), 50)
                    band = _fit_with_band([math.log2(a) for a, _ in pts], [b for _, b in pts], grid)
                    if band is not None:
                        fit, low, high = band
                        ax.plot(2 ** grid, fit, color=colours[m % len(colours)], linewidth=0.8, alpha=0.6,
                                linestyle=styles[v % len(styles)])
                        ax.fill_between(2 ** grid, low, high, color=colours[m % len(colours)], alpha=0.12, linewidth=0)
        ax.set_title(f"{panel} ({_panel_n(points, panel)})", fontsize="medium")
        ax.set_ylim(0, 100)
        ax.set_ylabel("accuracy (%)")
        if x == "budget":
            ax.set_xscale("log", base=2)
            ax.xaxis.set_major_locator(FixedLocator(xs_all))
            ax.set_xticklabels([f"{b:,}" for b in xs_all], rotation=45, fontsize="small")
            ax.set_xlabel("thinking budget (tokens)")
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("forcing rounds")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    handles, names = axes.flat[0].get_legend_handles_labels()
    for ax in list(axes.flat)[1 : len(panels)]:  # a series missing from the first panel still gets its entry
        for handle, name in zip(*ax.get_legend_handles_labels()):
            if name not in names:
                handles.append(handle)
                names.append(name)
    ncol = min(4, max(1, len(names)))
    legend_rows = math.ceil(len(names) / ncol)
    bottom = (0.35 + 0.28 * legend_rows) / fig.get_figheight()
    fig.legend(handles, names, loc="lower center", ncol=ncol, fontsize="small", frameon=False,
               bbox_to_anchor=(0.5, 0.0))
    fig.suptitle(title)
    fig.tight_layout(rect=(0, bottom, 1, 0.96))
    return fig


FIGURES_MANIFEST = "figures.json"  # the figures m1data wrote in a plot folder: the only ones it removes


def plot_sweep(points: list[dict[str, Any]], out_dir: str | Path) -> list[Path]:
    """Figure 1 (accuracy vs budget) and Figure 3 (accuracy vs forcing rounds) from sweep points.

    A figure is drawn only for an axis with more than one value; returns the files written.
    Both are drawn first, then renamed into place holding the folder (`folder_lock`). Why: two
    plots into one --out at once interleaved their renames, one's figure beside the other's.
    The folder's figures are then exactly these: an earlier plot's figure that this one does not
    draw (an axis with one value now, a figure named otherwise) is removed (`_replace_figures`).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with contextlib.ExitStack() as held:  # released after the renames
        with contextlib.ExitStack() as renames:
            if len({p["budget"] for p in points}) > 1:
                path = out / "accuracy_vs_budget.png"
                _plot_axis(points, "budget", "forcing_rounds", "Accuracy vs thinking budget", path, renames)
                written.append(path)
            if len({p["forcing_rounds"] for p in points}) > 1:
                path = out / "accuracy_vs_forcing_rounds.png"
                _plot_axis(points, "forcing_rounds", "budget", "Accuracy vs budget-forcing rounds", path, renames)
                written.append(path)
            held.enter_context(folder_lock(out))
            before = _figures_written(out)
            names = [p.name for p in written]
            if names or before:  # claimed before the renames: a kill after one leaves no figure unlisted
                _write_figures_manifest(out, sorted(set(before) | set(names)))
        _replace_figures(out, before, names)
    return written


def _figures_written(out: Path) -> list[str]:
    """The figures an earlier plot wrote in `out` (its `FIGURES_MANIFEST`): plain names of files
    in `out`, never a path elsewhere (a manifest edited to name one is not followed)."""
    manifest = out / FIGURES_MANIFEST
    if not manifest.is_file():
        return []
    try:
        names = json.loads(manifest.read_text(encoding="utf-8"))["figures"]
    except (ValueError, UnicodeDecodeError, KeyError, TypeError) as err:
        log.warning(f"{manifest} is not readable ({err}); the figures it listed are left where they are")
        return []
    return [n for n in names if isinstance(n, str) and n == Path(n).name and n not in ("", ".", "..")]


def _write_figures_manifest(out: Path, names: list[str]) -> None:
    write_atomic(out / FIGURES_MANIFEST, json.dumps({"written_by": "m1data infer plot", "figures": names},
                                                    indent=2) + "\n")


def _replace_figures(out: Path, before: list[str], names: list[str]) -> None:
    """Remove the figures an earlier plot wrote that this one did not, then list only this one's.
    Why: a folder showed an older run's figure (an axis this sweep does not vary, a figure named
    otherwise by another version) beside the new ones, as if it belonged to this run. Only files
    m1data listed are removed; a user's own files in the folder are never touched."""
    stale = [n for n in before if n not in names]
    for name in stale:
        (out / name).unlink(missing_ok=True)
        log.info(f"removed {out / name}: an earlier plot's figure that this one does not draw")
    if names:
        _write_figures_manifest(out, names)
    elif before:
        (out / FIGURES_MANIFEST).unlink(missing_ok=True)
