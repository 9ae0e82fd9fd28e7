"""What an audit returns (:class:`AuditResult`) and how it is summed up on the console."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


@dataclass
class VersionComparison:
    """The same model on two versions of the data (e.g. before and after label fixes)."""

    split: str
    accuracy_a: float
    accuracy_b: float
    n_a: int
    n_b: int
    n_relabelled: int  # images (by content) whose label differs between the versions
    errors_a_fixed_by_relabel: int  # model errors on A that are correct under B's label
    errors_b_new_by_relabel: int  # images right on A that became errors on B
    version_a: str | None = None
    version_b: str | None = None

    @property
    def error_a(self) -> float:
        """Error rate on version a (``1 - accuracy_a``)."""
        return 1.0 - self.accuracy_a

    @property
    def error_b(self) -> float:
        """Error rate on version b (``1 - accuracy_b``)."""
        return 1.0 - self.accuracy_b

    @property
    def error_from_label_noise(self) -> float:
        """Error-rate points that disappear on the fixed version (A minus B)."""
        return self.error_a - self.error_b

    def to_dict(self) -> dict:
        """The comparison as JSON-ready values, error rates included."""
        d = dict(self.__dict__)
        d.update(error_a=self.error_a, error_b=self.error_b, error_from_label_noise=self.error_from_label_noise)
        return d


@dataclass
class AuditResult:
    """What an audit found; every table is also a file in `out_dir` (``.dir``)."""

    out_dir: Path
    split: str
    classes: list[str]
    predictions: pd.DataFrame
    mistakes: pd.DataFrame
    top_losses: pd.DataFrame
    confused_pairs: pd.DataFrame
    per_class: pd.DataFrame
    confusion: np.ndarray
    label_issues: pd.DataFrame | None
    duplicates: pd.DataFrame
    metrics: dict[str, float]
    files: dict[str, Path]
    data_version: str | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    comparison: VersionComparison | None = None
    cost: dict[str, dict[str, float]] = field(default_factory=dict)
    outliers: pd.DataFrame | None = None
    model: Any = field(default=None, repr=False)  # the audited Pretrained, for similar()
    cache_dir: Any = field(default=None, repr=False)

    @property
    def dir(self) -> Path:
        """The audit folder."""
        return self.out_dir

    @property
    def report_path(self) -> Path:
        """Path of ``report.html``."""
        return self.files["report"]

    @property
    def accuracy(self) -> float:
        """Top-1 accuracy of the model on the audited split."""
        return self.metrics["accuracy"]

    def similar(self, image: str | Path, k: int = 10) -> pd.DataFrame:
        """The ``k`` audited images (all splits) nearest to ``image`` by embedding cosine, from
        the audit's saved index: rank, split, path, label, similarity (1 = same embedding)."""
        from visiontune.audit.similar import SimilarIndex

        return SimilarIndex.load(self.out_dir, cache_dir=self.cache_dir).similar(image, k, model=self.model)

    def to_dict(self) -> dict:
        """Folder, split, metrics and files as JSON-ready values."""
        return {
            "dir": str(self.out_dir),
            "split": self.split,
            "metrics": dict(self.metrics),
            "files": {k: str(v) for k, v in self.files.items()},
            "cost": self.cost,
            "warnings": list(self.warnings),
        }

    def summary(self) -> str:
        """One line: accuracy, images, mistakes, label issues and duplicates found."""
        m = self.metrics
        return (
            f"audit {self.split}: accuracy {100 * m['accuracy']:.2f}% on {m['n_images']} images, "
            f"{m['n_mistakes']} mistakes, {m['n_label_issues']} label issues, "
            f"{m['n_duplicate_pairs']} duplicate pairs ({m['n_leaks']} across splits)"
        )


def print_summary(result: AuditResult, n: int = 10, console: Any = None) -> None:
    """The headline numbers, the top mistakes and the cost per step, as rich tables."""
    from rich.console import Console
    from rich.table import Table as RichTable

    console = console or Console()
    console.print("[bold]" + result.summary().replace("audit ", "audit[/] ", 1), highlight=False)
    if len(result.mistakes):
        t = RichTable(title=f"top {min(n, len(result.mistakes))} confident mistakes")
        for c in ("#", "path", "label", "prediction", "confidence", "loss"):
            t.add_column(c, overflow="fold")
        for i, r in enumerate(result.mistakes.head(n).itertuples(), 1):
            t.add_row(str(i), str(r.path), str(r.label), str(r.pred), f"{r.confidence:.3f}", f"{r.loss:.3f}")
        console.print(t)
    if result.cost:
        cost = RichTable(title="cost per step")
        for col in ("step", "seconds", "peak RSS (MB)"):
            cost.add_column(col, justify="left" if col == "step" else "right")
        for name, s in result.cost.items():
            cost.add_row(name, f"{s['seconds']:.2f}", f"{s['peak_rss_mb']:.0f}")
        console.print(cost)
    for w in result.warnings:
        console.print("warning: " + w, style="yellow", highlight=False, markup=False)
    console.print(f"report: {result.report_path}", highlight=False)
