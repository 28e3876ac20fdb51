"""PNG plots for the report, drawn with matplotlib's Agg canvas (no pyplot: no global state, no display).

matplotlib is imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from rlhf_plug.files import atomic_path

SMOOTH_FROM = 30  # train curves with at least this many points also get a moving average
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


@dataclass
class Series:
    label: str
    steps: list[float]
    values: list[float]
    points: bool = False  # held-out evaluations: markers only
    smooth: bool = True  # add a moving average when there are many noisy points (not for e.g. a controller's β)


@dataclass
class Panel:
    title: str
    ylabel: str
    series: list[Series] = field(default_factory=list)
    xlabel: str = "training step"
    reference: tuple[float, str] | None = None  # a dashed horizontal line and its label, e.g. (0.5, "chance")
    nonnegative: bool = False  # start the y axis at 0 (fractions, accuracies)


# Line styles shared by every panel, explained once in a legend under the figure.
RAW = {"lw": 1, "alpha": 0.35}
AVERAGE = {"lw": 2}
PLAIN = {"lw": 1.6}
HELD_OUT = {"marker": "o", "ms": 6, "ls": "none", "color": "black", "zorder": 3}
STYLE_LABELS = {"raw": "per batch (raw)", "average": "moving average", "plain": "per batch", "held_out": "held-out evaluation"}


def curves_png(path: Path, title: str, panels: list[Panel]) -> None:
    """One figure with a grid of line plots (up to three per row) and one legend for the line styles."""
    panels = [p for p in panels if any(s.values for s in p.series)]
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = _figure(nrows, ncols, width=4.6, height=3.2)
    styles: set[str] = set()
    for ax, panel in zip(axes, panels):
        styles |= _draw_panel(ax, panel)
    for ax in axes[len(panels):]:
        ax.remove()
    fig.suptitle(title, fontsize=13)
    _style_legend(fig, styles)
    _save(fig, path)


def strips_png(path: Path, title: str, groups: list[tuple[str, dict[str, list[float]]]], xlabel: str = "score (higher is better)") -> None:
    """One strip plot per group: each named sample set as jittered dots with its mean marked.

    ``groups`` is ``[(subplot title, {row label: values})]``; rows are drawn bottom to top in order.
    """
    ncols = min(2, len(groups))
    nrows = math.ceil(len(groups) / ncols)
    fig, axes = _figure(nrows, ncols, width=5.2, height=1.2 + 0.6 * max(len(g[1]) for g in groups))
    for ax, (subtitle, rows) in zip(axes, groups):
        for i, (label, values) in enumerate(rows.items()):
            color = COLORS[i % len(COLORS)]
            ax.scatter(values, [i + _jitter(j) for j in range(len(values))], s=22, alpha=0.6, color=color, edgecolors="none")
            if values:
                mean = sum(values) / len(values)
                ax.plot([mean, mean], [i - 0.32, i + 0.32], color="black", lw=2)
                ax.annotate(f"mean {mean:.3g}", (mean, i + 0.34), ha="center", va="bottom", fontsize=8)
        ax.set_yticks(range(len(rows)), list(rows), fontsize=9)
        ax.set_ylim(-0.6, len(rows) - 0.2)
        ax.set_title(subtitle, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.grid(axis="x", alpha=0.3)
    for ax in axes[len(groups):]:
        ax.remove()
    fig.suptitle(title, fontsize=12)
    _save(fig, path)


def bars_png(path: Path, title: str, bars: dict[str, float], xlabel: str, reference: tuple[float, str] | None = None) -> None:
    """Horizontal bars on a 0..1 axis with their values written next to them."""
    fig, axes = _figure(1, 1, width=6.4, height=1.3 + 0.45 * len(bars))
    ax = axes[0]
    labels = list(bars)[::-1]
    values = [bars[k] for k in labels]
    ax.barh(labels, values, color=COLORS[0], height=0.55)
    for y, value in enumerate(values):
        ax.annotate(f"{value:.3f}", (value, y), xytext=(4, 0), textcoords="offset points", va="center", fontsize=9)
    if reference is not None:
        ax.axvline(reference[0], color="gray", ls="--", lw=1)
        xlabel = f"{xlabel}; dashed line: {reference[0]:g} = {reference[1]}"
    ax.set_xlim(0, 1.1)
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=11)
    ax.grid(axis="x", alpha=0.3)
    _save(fig, path)


def _draw_panel(ax, panel: Panel) -> set[str]:
    """Draw one subplot; returns the line styles it used."""
    from matplotlib.ticker import MaxNLocator

    styles = set()
    train = [s for s in panel.series if s.values and not s.points]
    for i, series in enumerate(train):
        color = COLORS[i % len(COLORS)]
        if series.smooth and len(series.values) >= SMOOTH_FROM and len(set(series.values)) > 1:
            ax.plot(series.steps, series.values, color=color, **RAW)
            ax.plot(series.steps, _moving_average(series.values, max(3, len(series.values) // 10)), color=color,
                    label=series.label, **AVERAGE)
            styles |= {"raw", "average"}
        else:
            marker = "." if len(series.values) < 12 else None  # a single point would not show as a line
            ax.plot(series.steps, series.values, color=color, label=series.label, marker=marker, **PLAIN)
            styles.add("plain")
        if len(set(series.values)) == 1 and len(train) == 1:
            ax.annotate(f"{series.values[0]:g} at every step", (0.5, 0.6), xycoords="axes fraction", ha="center", color="gray")
    for series in (s for s in panel.series if s.values and s.points):
        ax.plot(series.steps, series.values, **HELD_OUT)
        styles.add("held_out")
    if panel.reference is not None:
        value, label = panel.reference
        ax.axhline(value, color="gray", ls="--", lw=1)
        ax.annotate(label, (1, value), xycoords=("axes fraction", "data"), xytext=(-3, 3), textcoords="offset points",
                    ha="right", fontsize=8, color="gray")
    if panel.nonnegative:
        ax.set_ylim(bottom=0)
    ax.set_title(panel.title, fontsize=11)
    ax.set_xlabel(panel.xlabel)
    ax.set_ylabel(panel.ylabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if len(train) > 1:  # several components: say which colour is which
        ax.legend(fontsize=8, framealpha=0.8)
    return styles


def _style_legend(fig, styles: set[str]) -> None:
    from matplotlib.lines import Line2D

    handles = {
        "raw": Line2D([], [], color="gray", **RAW),
        "average": Line2D([], [], color="gray", **AVERAGE),
        "plain": Line2D([], [], color="gray", **PLAIN),
        "held_out": Line2D([], [], **HELD_OUT),
    }
    used = [k for k in handles if k in styles and not (k == "plain" and "raw" in styles)]  # plain lines read as such
    if used:
        fig.legend([handles[k] for k in used], [STYLE_LABELS[k] for k in used], loc="outside lower center",
                   ncols=len(used), fontsize=9, frameon=False)


def _moving_average(values: list[float], window: int) -> list[float]:
    """Trailing mean over up to ``window`` points (shorter at the start)."""
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def _jitter(i: int) -> float:
    """Deterministic vertical spread in [-0.22, 0.22] (a low-discrepancy sequence, so reruns draw the same plot)."""
    return ((i * 0.6180339887) % 1.0 - 0.5) * 0.44


def _figure(nrows: int, ncols: int, width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained", dpi=110)
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel().tolist()
    return fig, axes


def _save(fig, path: Path) -> None:
    """Write the PNG under a temporary name and rename it into place."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
