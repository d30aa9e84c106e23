"""The report's figures (matplotlib, Agg backend), each from a stage's metrics dict: PNG bytes.

Every plot has a title, labelled axes with units, and a legend where there is more than one series.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

PALETTE = ["#23395d", "#e07a1f", "#3a9d5d", "#b8336a", "#7a6fbf", "#8c8c8c", "#c9a227", "#2aa7b8"]


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def _figure(width: float = 7.0, height: float = 3.8) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


def grouped_bars(
    groups: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    title: str,
    ylabel: str,
    xlabel: str,
) -> bytes:
    """One cluster of bars per group, one bar per series (None = not measured, left empty)."""
    n = max(1, len(series))
    fig, ax = _figure(7.5, 4.4)
    width = 0.8 / n
    x = np.arange(len(groups))
    for i, (name, values) in enumerate(series.items()):
        v = np.array([np.nan if val is None else float(val) for val in values])
        bars = ax.bar(x + (i - (n - 1) / 2) * width, v, width, label=name, color=PALETTE[i % len(PALETTE)])
        ax.bar_label(bars, fmt="%.3f", fontsize=6.5, padding=1, rotation=90 if n > 4 else 0)
    ax.set_xticks(x, groups)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.set_xlabel(xlabel)
    ax.legend(fontsize=8, ncols=min(n, 4), loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False)
    top = np.nanmax([float(v) for vals in series.values() for v in vals if v is not None] or [1.0])
    ax.set_ylim(0, top * (1.25 if n > 4 else 1.15))
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def horizontal_bars(values: Mapping[str, float], title: str, xlabel: str) -> bytes:
    fig, ax = _figure(7.0, 0.35 * len(values) + 1.2)
    names = list(values)
    ax.barh(names, [values[n] for n in names], color=PALETTE[0])
    ax.invert_yaxis()
    for i, n in enumerate(names):
        ax.text(values[n], i, f" {values[n]:,.1f}", va="center", fontsize=8)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_xlim(0, max(values.values() or [1.0]) * 1.18)
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def curves(series: Mapping[str, Sequence[float]], title: str, xlabel: str, ylabel: str, x0: int = 1) -> bytes:
    """Lines over x = x0, x0 + 1, ... (e.g. positions 1..30)."""
    fig, ax = _figure()
    for i, (name, ys) in enumerate(series.items()):
        ax.plot(
            np.arange(x0, x0 + len(ys)), ys, marker="o", ms=3, label=name, color=PALETTE[i % len(PALETTE)]
        )
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)


def loglog(
    series: Mapping[str, Sequence[tuple[float, float]]], title: str, xlabel: str, ylabel: str
) -> bytes:
    """Lines through (x, y) points on log-log axes, one per series (a slope of 1 is linear growth)."""
    fig, ax = _figure(7.5, 4.6)
    for i, (name, pts) in enumerate(series.items()):
        good = sorted((x, y) for x, y in pts if x > 0 and y > 0)
        if not good:
            continue
        ax.plot(*zip(*good, strict=True), marker="o", ms=3, label=name, color=PALETTE[i % len(PALETTE)])
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7, ncols=2)
    ax.grid(alpha=0.3, which="both")
    return _png(fig)
