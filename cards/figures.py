"""The card's figures: a length histogram and a domain bar chart (the paper's Table 4 as a picture).

Each function returns PNG bytes, or None when matplotlib (the ``cards`` extra) is not installed;
the card then says there is no figure instead of failing. Figures are written without the
matplotlib version in their metadata, so rendering twice gives the same bytes.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from m1data.reading.registry import SOURCE_REGISTRY, pretty_name

__all__ = ["domain_bars_png", "length_histogram_png"]

# One colour per source (the source registry's), fixed so every card draws MedQA the same way.
SOURCE_COLOURS = {name: record.colour for name, record in SOURCE_REGISTRY.items()}
_OTHER_COLOURS = ["#66ccee", "#aa3377", "#bbbbbb", "#000000"]


def _pyplot() -> Any | None:
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only; no display on servers and CI
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _png(fig: Any, plt: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def length_histogram_png(lengths: Sequence[int], title: str, unit: str) -> bytes | None:
    """Rows per length bin, with the quartiles drawn and labelled with their values."""
    plt = _pyplot()
    if plt is None or not lengths:
        return None
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(7.5, 3.8), dpi=100)
    low, high = min(lengths), max(lengths)
    if high - low < 50:  # few distinct lengths: one bar per whole number, so no bar straddles two
        bins: Any = np.arange(low - 0.5, high + 1.5)
        ax.set_xlim(low - 2.5, high + 2.5)
    else:
        bins = 50
    ax.hist(lengths, bins=bins, color="#4477aa", edgecolor="white", linewidth=0.5)
    q1, median, q3 = (float(np.percentile(lengths, q)) for q in (25, 50, 75))
    for value, name, style in ((q1, "Q1", ":"), (median, "median", "--"), (q3, "Q3", ":")):
        ax.axvline(value, color="#222222", linestyle=style, linewidth=1.2, label=f"{name} = {value:,.0f}")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # lengths are whole tokens or words
    ax.set_title(title)
    ax.set_xlabel(unit)
    ax.set_ylabel("rows")
    ax.legend(loc="upper right", frameon=False, fontsize="small")
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return _png(fig, plt)


def domain_bars_png(
    labels: Sequence[str], sources: Sequence[str], counts: Sequence[Sequence[int]], title: str
) -> bytes | None:
    """Horizontal bars, one per domain (largest on top), stacked by source; `counts[i][j]` is the
    rows of domain `labels[i]` from `sources[j]`."""
    plt = _pyplot()
    if plt is None or not labels:
        return None
    from matplotlib.ticker import MaxNLocator

    height = max(2.5, 0.28 * len(labels) + 1.4)
    fig, ax = plt.subplots(figsize=(8.5, height), dpi=100)
    positions = list(range(len(labels)))[::-1]  # first label (largest) on top
    left = [0] * len(labels)
    others = iter(_OTHER_COLOURS)
    for j, source in enumerate(sources):
        widths = [row[j] for row in counts]
        colour = SOURCE_COLOURS.get(source) or next(others, "#888888")
        ax.barh(positions, widths, left=left, color=colour, label=pretty_name(source), height=0.75)
        left = [a + b for a, b in zip(left, widths)]
    for y, total in zip(positions, left):
        ax.text(total, y, f" {total:,}", va="center", fontsize="x-small")
    ax.set_yticks(positions, labels, fontsize="small")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(0, max(left) * 1.12 or 1)
    ax.set_xlabel("rows")
    ax.set_title(title)
    ax.legend(title="source", loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return _png(fig, plt)
