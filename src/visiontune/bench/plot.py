"""Accuracy vs latency and compute vs latency scatter plots (one PNG)."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

from visiontune._atomic import save_figure
from visiontune.bench._resolve import RANDOM_INIT

if TYPE_CHECKING:
    from visiontune.bench.run import BenchResult


def _label_offsets(xs: list[float], ys: list[float], xspan: float, yspan: float) -> list[tuple[int, int]]:
    """Text offsets (points) that stack the labels of nearby markers instead of overprinting them."""
    offsets: list[tuple[int, int]] = []
    for i, (x, y) in enumerate(zip(xs, ys)):
        near = sum(1 for j in range(i) if abs(xs[j] - x) < 0.2 * xspan and abs(ys[j] - y) < 0.12 * yspan)
        offsets.append((8, 6 - 26 * near))
    return offsets


def scatter(result: BenchResult, path: str | os.PathLike) -> Path:
    """Left: published top-1 against measured batch-1 median latency (bar to p95), marker area
    ∝ parameters. Right: GFLOPs against the same latency for every measured model, so models
    without a published top-1 are still placed. Hollow markers: architecture measured with random
    weights (weights not cached); its top-1 is the published figure of the weights."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in result.rows if not r.error and r.latency_median_ms is not None]
    colors = {r.model_id: plt.get_cmap("tab10")(i % 10) for i, r in enumerate(ok)}
    fig, (ax_acc, ax_flops) = plt.subplots(1, 2, figsize=(14, 6), dpi=110)

    def point(ax, r, y):
        color = colors[r.model_id]
        hollow = r.weights == RANDOM_INIT
        ax.scatter(
            [r.latency_median_ms],
            [y],
            s=40 + 10 * (r.params_m or 0),
            linewidths=2,
            zorder=3,
            facecolors="none" if hollow else color,
            edgecolors=color,
            label=r.model_id,
        )
        ax.errorbar(
            [r.latency_median_ms],
            [y],
            xerr=[[0], [max(0.0, r.latency_p95_ms - r.latency_median_ms)]],
            fmt="none",
            ecolor=color,
            alpha=0.6,
            capsize=3,
            zorder=2,
        )

    # the `is not None` filters restate what `ok` / `with_acc` / `flops` hold, for the type checker
    xmax = max([r.latency_p95_ms for r in ok if r.latency_p95_ms is not None] or [1.0]) * 1.5
    with_acc = [r for r in ok if r.top1 is not None]
    accs = [r.top1 for r in with_acc if r.top1 is not None]
    offs = _label_offsets(
        [r.latency_median_ms for r in with_acc if r.latency_median_ms is not None],
        accs,
        xmax,
        (max(accs + [1]) - min(accs + [0])) + 4,
    )
    for r, off in zip(with_acc, offs):
        point(ax_acc, r, r.top1)
        ax_acc.annotate(
            f"{r.model_id}\n{r.params_m:.1f}M params · {r.top1_per_mparam:.2f} top-1/M",
            (r.latency_median_ms, r.top1),
            textcoords="offset points",
            xytext=off,
            fontsize=8,
        )
    ax_acc.set_xlabel("latency, batch 1: median ms (bar to p95)")
    ax_acc.set_ylabel("published top-1 (%)")
    ax_acc.set_title("accuracy vs latency", fontsize=10)
    ax_acc.grid(True, alpha=0.3)
    if with_acc:
        ys = [r.top1 for r in with_acc if r.top1 is not None]
        ax_acc.set_ylim(min(ys) - 2.0, max(ys) + 2.0)
    if not with_acc:
        ax_acc.text(
            0.5, 0.5, "no model has a published top-1 offline", ha="center", va="center", transform=ax_acc.transAxes
        )
    without = [r for r in ok if r.top1 is None]
    if without and with_acc:
        ax_acc.text(
            0.01,
            0.01,
            "no published top-1: " + ", ".join(r.model_id for r in without),
            fontsize=7,
            transform=ax_acc.transAxes,
            va="bottom",
            wrap=True,
        )

    flops = [r for r in ok if r.gflops is not None]
    gf = [r.gflops for r in flops if r.gflops is not None]
    offs = _label_offsets(
        [r.latency_median_ms for r in flops if r.latency_median_ms is not None], gf, xmax, max(gf + [1e-9]) * 1.2
    )
    for r, off in zip(flops, offs):
        point(ax_flops, r, r.gflops)
        ax_flops.annotate(
            f"{r.model_id}\n{r.params_m:.1f}M params · {r.gflops:.2f} GFLOPs",
            (r.latency_median_ms, r.gflops),
            textcoords="offset points",
            xytext=off,
            fontsize=8,
        )
    ax_flops.set_xlabel("latency, batch 1: median ms (bar to p95)")
    ax_flops.set_ylabel("GFLOPs per image")
    ax_flops.set_title("compute vs latency (all measured models)", fontsize=10)
    ax_flops.grid(True, alpha=0.3)
    if flops:
        ax_flops.set_ylim(0, max(gf) * 1.2)

    for ax in (ax_acc, ax_flops):
        ax.set_xlim(0, xmax)
    fig.suptitle("visiontune bench — " + "\n".join(textwrap.wrap(result.header_note(), 140)), fontsize=9)
    footer = []
    if any(r.weights == RANDOM_INIT for r in ok):
        footer.append(
            "hollow marker: architecture measured with random weights (weights not cached); "
            "top-1 is the published figure of its default weights. Marker area ∝ parameters."
        )
    errors = [r.model_id for r in result.rows if r.error]
    if errors:
        footer.append("failed (see table): " + ", ".join(errors))
    fig.text(0.01, 0.01, "\n".join(footer), fontsize=7, va="bottom")
    fig.tight_layout(rect=(0, 0.04 + 0.02 * len(footer), 1, 0.93))
    return save_figure(fig, path)
