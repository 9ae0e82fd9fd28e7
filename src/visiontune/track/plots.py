"""Curves as PNG (matplotlib, Agg): one run's metrics, or several runs overlaid."""

from __future__ import annotations

import math
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

from visiontune._atomic import save_figure


def series_from_rows(rows: list[dict[str, Any]]) -> dict[str, tuple[list[int], list[float]]]:
    """metric -> (steps, values), in file order; rows without a step use their row index."""
    out: dict[str, tuple[list[int], list[float]]] = defaultdict(lambda: ([], []))
    for i, r in enumerate(rows):
        xs, ys = out[r["metric"]]
        xs.append(r["step"] if r.get("step") is not None else i)
        ys.append(r["value"])
    return dict(out)


def _group(metric: str) -> str:
    """Panel a metric goes to: losses together, lrs together, each other metric by its name
    after the split prefix (val/acc and train/acc share a panel)."""
    if metric.startswith("lr/") or metric == "lr":
        return "learning rate"
    tail = metric.split("/")[-1]
    return "loss" if "loss" in tail else tail


def _order(metric: str) -> tuple:
    g = _group(metric)
    return (0 if g == "loss" else 2 if g == "learning rate" else 1, g, metric)


def _figure(panels: dict[str, list[tuple[str, list[int], list[float]]]], title: str | None):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    n = len(panels)
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.6 * rows), squeeze=False)
    for ax, (panel, lines) in zip(axes.flat, panels.items()):
        for label, xs, ys in lines:
            marker = "o" if len(xs) <= 30 else None
            ax.plot(xs, ys, label=label, marker=marker, markersize=3, linewidth=1.4)
        ax.set_title(panel)
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.3)
        if panel == "learning rate":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        ax.legend(fontsize=7, loc="best")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _save(fig, out: Path) -> Path:
    return save_figure(fig, out, format="png", dpi=110)


def plot_run_curves(rows: list[dict[str, Any]], out: str | Path, title: str | None = None) -> Path:
    """One run: a panel per metric family (loss, accuracy, learning rate, ...)."""
    panels: dict[str, list] = defaultdict(list)
    series = series_from_rows(rows)
    for metric in sorted(series, key=_order):
        if metric == "epoch":
            continue  # the x axis already says it
        panels[_group(metric)].append((metric, *series[metric]))
    return _save(_figure(dict(panels), title), Path(out))


def plot_compare_curves(
    runs: dict[str, list[dict[str, Any]]], out: str | os.PathLike, metrics: list[str] | None = None
) -> Path:
    """Several runs overlaid: a panel per metric shared by the runs (or the given ``metrics``),
    one line per run."""
    series = {name: series_from_rows(rows) for name, rows in runs.items()}
    if metrics is None:
        common = set.intersection(*(set(s) for s in series.values())) if series else set()
        metrics = sorted(common - {"epoch"}, key=_order)
    if not metrics:
        from visiontune.errors import ConfigError

        raise ConfigError("compare: the runs share no metric to plot; pass metrics=[...] explicitly")
    panels: dict[str, list] = {}
    for m in metrics:
        panels[m] = [(name, *s[m]) for name, s in series.items() if m in s]
    return _save(_figure(panels, "  vs  ".join(series)), Path(out))
