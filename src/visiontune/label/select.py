"""Which images to label next: uncertainty, diversity and a hybrid, on the model's own outputs.

Strategies (``rank``, on arrays, so benchmarks and the API share one implementation):

* ``random`` — a seeded shuffle (the baseline every other strategy must beat);
* ``margin`` — smallest gap between the top two class probabilities first;
* ``entropy`` — highest predictive entropy first;
* ``kcenter`` — k-center greedy (core-set) on L2-normalised embeddings: repeatedly take the pool
  image farthest from everything labelled or already chosen;
* ``hybrid`` — the ``hybrid_factor * budget`` most margin-uncertain images, then k-center greedy
  among them (uncertain *and* spread out).

Pool images whose embedding has cosine similarity >= ``near_duplicate`` with an already-labelled
image are excluded up front, and no two chosen images are near duplicates of each other.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from visiontune._atomic import write_text
from visiontune.adapt.features import extract
from visiontune.data.dataset import ImageDataset
from visiontune.errors import ConfigError, DatasetError
from visiontune.hub import Pretrained
from visiontune.hub.heads import find_head
from visiontune.hub.loader import load
from visiontune.label.api import export_cvat, export_label_studio
from visiontune.label.core import LabelSet, Shape
from visiontune.label.predict import model_version_of
from visiontune.label.sources import from_images
from visiontune.label.sources import load as load_labels
from visiontune.progress import progress as progress_bar

STRATEGIES = ("random", "margin", "entropy", "kcenter", "hybrid")


# -- scores ---------------------------------------------------------------------------------------
def margin_uncertainty(probs: np.ndarray) -> np.ndarray:
    """``1 - (p_top1 - p_top2)``: 1 when the two best classes tie, 0 when one class has it all."""
    p = np.sort(np.asarray(probs, np.float64), axis=1)
    return 1.0 - (p[:, -1] - (p[:, -2] if p.shape[1] > 1 else 0.0))


def entropy(probs: np.ndarray) -> np.ndarray:
    """Entropy of each row of class probabilities."""
    p = np.clip(np.asarray(probs, np.float64), 1e-12, 1.0)
    return -(p * np.log(p)).sum(axis=1)


def normalise(x: np.ndarray) -> np.ndarray:
    """Rows flattened and scaled to unit L2 norm (float32)."""
    x = np.asarray(x, np.float32).reshape(len(x), -1)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _min_dist(points: np.ndarray, centres: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """Euclidean distance from each point to its nearest centre (both L2-normalised)."""
    out = np.full(len(points), np.inf, np.float32)
    for s in range(0, len(centres), chunk):
        sim = points @ centres[s : s + chunk].T
        out = np.minimum(out, np.sqrt(np.maximum(2.0 - 2.0 * sim.max(axis=1), 0.0)))
    return out


def kcenter_greedy(
    emb: np.ndarray,
    budget: int,
    labelled: np.ndarray | None = None,
    candidates: np.ndarray | None = None,
    seed: int = 0,
) -> list[int]:
    """Indices into ``emb`` chosen by k-center greedy, covering ``labelled`` first."""
    cand = np.arange(len(emb)) if candidates is None else np.asarray(candidates)
    pts = emb[cand]
    dist = _min_dist(pts, labelled) if labelled is not None and len(labelled) else np.full(len(pts), np.inf, np.float32)
    chosen: list[int] = []
    for _ in range(min(budget, len(cand))):
        if np.isinf(dist).all():
            k = int(np.random.default_rng(seed).integers(len(pts)))
        else:
            k = int(np.argmax(dist))
        if dist[k] <= 0 and chosen:
            break
        chosen.append(int(cand[k]))
        dist = np.minimum(dist, np.sqrt(np.maximum(2.0 - 2.0 * (pts @ pts[k]), 0.0)))
        dist[k] = -1.0
    return chosen


def near_duplicate_mask(pool: np.ndarray, labelled: np.ndarray | None, threshold: float) -> np.ndarray:
    """True for pool rows with cosine >= ``threshold`` to any labelled row (normalised inputs)."""
    out = np.zeros(len(pool), bool)
    if labelled is None or not len(labelled) or threshold > 1:
        return out
    for s in range(0, len(labelled), 2048):
        out |= (pool @ labelled[s : s + 2048].T).max(axis=1) >= threshold
    return out


def rank(
    strategy: str,
    budget: int,
    *,
    probs: np.ndarray | None = None,
    embeddings: np.ndarray | None = None,
    labelled: np.ndarray | None = None,
    near_duplicate: float = 0.95,
    hybrid_factor: int = 4,
    seed: int = 0,
    exclude: Sequence[int] = (),
) -> tuple[list[int], np.ndarray, int]:
    """(chosen pool indices, per-pool score, pool images excluded as near duplicates);
    ``exclude``: pool indices never to choose (e.g. unreadable images)."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown selection strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
    if budget < 1:
        raise ConfigError(f"budget must be >= 1, got {budget}")
    needs_probs = strategy in ("margin", "entropy", "hybrid")
    if needs_probs and probs is None:
        raise ConfigError(f"strategy {strategy} needs class probabilities")
    n = len(probs) if probs is not None else len(embeddings) if embeddings is not None else 0
    emb = normalise(embeddings) if embeddings is not None else None
    lab = normalise(labelled) if labelled is not None and len(labelled) else None
    if strategy in ("kcenter", "hybrid") and emb is None:
        raise ConfigError(f"strategy {strategy} needs embeddings")
    excluded = near_duplicate_mask(emb, lab, near_duplicate) if emb is not None else np.zeros(n, bool)
    blocked = excluded.copy()
    blocked[np.asarray(list(exclude), dtype=np.int64)] = True
    allowed = np.flatnonzero(~blocked)
    rng = np.random.default_rng(seed)
    if strategy == "random":
        score = rng.random(n)
    elif strategy == "entropy":
        assert probs is not None  # needs_probs raised above
        score = entropy(probs)
    else:
        score = margin_uncertainty(probs) if probs is not None else np.zeros(n)
    if strategy in ("random", "margin", "entropy"):
        order = allowed[np.argsort(-score[allowed], kind="stable")]
        chosen = _dedupe_in_order(order, emb, budget, near_duplicate)
    elif strategy == "kcenter":
        assert emb is not None  # "needs embeddings" raised above
        chosen = kcenter_greedy(emb, budget, lab, allowed, seed)
    else:
        assert emb is not None
        top = allowed[np.argsort(-score[allowed], kind="stable")][: max(budget, hybrid_factor * budget)]
        chosen = kcenter_greedy(emb, budget, lab, top, seed)
    return chosen, score, int(excluded.sum())


def _dedupe_in_order(order: np.ndarray, emb: np.ndarray | None, budget: int, threshold: float) -> list[int]:
    chosen: list[int] = []
    for i in order.tolist():
        if len(chosen) >= budget:
            break
        if emb is not None and chosen and threshold <= 1 and float((emb[chosen] @ emb[i]).max()) >= threshold:
            continue
        chosen.append(int(i))
    return chosen


# -- model outputs ------------------------------------------------------------------------------------
@torch.no_grad()
def embed(
    model: Pretrained, files: Sequence[str], batch_size: int = 32, progress: bool = True
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(embeddings = the head's input, class probabilities, unreadable files) for ``files``."""
    head_path, head = find_head(model.model)
    ds = ImageDataset([(f, 0) for f in files], ["_"], transform=model.preprocess)
    device = next(model.model.parameters()).device
    with progress_bar("embedding the pool", len(files), enabled=progress) as bar:
        feats, _ = extract(model.model, head_path, ds, batch_size=batch_size, device=device, progress=bar)
    x = feats.reshape(len(feats), -1)
    probs = head(x.to(device)).float().softmax(-1).cpu().numpy() if len(x) else np.zeros((0, 0))
    return x.numpy(), probs, [p for p, _ in ds.skipped]


@dataclass
class SelectionResult:
    """The images chosen to label next, best first, and the task files written for them."""

    strategy: str
    budget: int
    paths: list[str]
    scores: list[float]
    excluded_duplicates: int
    pool_size: int
    model_version: str
    dir: Path | None = None
    files: dict[str, Path] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    @property
    def metrics(self) -> dict[str, Any]:
        """Selected images, pool size and near duplicates excluded."""
        return {"selected": len(self.paths), "pool": self.pool_size, "excluded_duplicates": self.excluded_duplicates}

    def to_dict(self) -> dict[str, Any]:
        """Strategy, budget, selected paths and scores as JSON-ready values."""
        return {
            "strategy": self.strategy,
            "budget": self.budget,
            "model_version": self.model_version,
            "selected": [{"path": p, "score": s} for p, s in zip(self.paths, self.scores)],
            "metrics": self.metrics,
            "files": {k: str(v) for k, v in self.files.items()},
            "skipped": self.skipped,
        }

    def summary(self) -> str:
        """One line: how many images the strategy selected from the pool."""
        head = (
            f"{self.strategy}: {len(self.paths)} of {self.pool_size} pool images selected "
            f"({self.excluded_duplicates} excluded as near duplicates of labelled images)"
        )
        return head + (f"; tasks in {self.dir}" if self.dir else "")


def _pretrained(model: Any) -> Pretrained:
    if isinstance(model, Pretrained):
        return model
    p = Path(str(model))
    if (p / "run.json").is_file() and (p / "model").is_dir():
        return load(str(p / "model"))
    return load(str(model))


def _labelled(labelled: Any) -> tuple[list[str], str | None]:
    """(files already labelled, their dataset version: the base a labelled batch is added to)."""
    if labelled is None:
        return [], None
    if isinstance(labelled, (list, tuple)):
        return [str(p) for p in labelled], None
    ls = labelled if isinstance(labelled, LabelSet) else load_labels(labelled)
    return [it.file for it in ls.items if it.labels is not None], ls.base_version


def select(
    model: Any,
    pool: Any,
    budget: int,
    *,
    strategy: str = "hybrid",
    labelled: Any = None,
    near_duplicate: float = 0.95,
    out: str | os.PathLike | None = None,
    tool: str = "label-studio",
    classes: Sequence[str] | None = None,
    batch_size: int = 32,
    seed: int = 0,
    progress: bool = True,
) -> SelectionResult:
    """Rank the unlabelled ``pool`` (a folder, a list of files or a LabelSet) with a
    classification ``model`` and keep ``budget`` images; ``labelled`` (a dataset, version or file
    list) is what is labelled already (k-center covers it; its near duplicates are excluded).
    With ``out``, the batch is written as Label Studio tasks (``tool="label-studio"``) or CVAT XML
    (``tool="cvat"``) pre-annotated with the model's top class, plus ``selection.csv``."""
    p = _pretrained(model)
    if p.card.task != "classification":
        raise ConfigError(f"selection ranks classification models' outputs; {p.card.model_id} is a {p.card.task} model")
    names = list(classes) if classes is not None else p.class_names
    ls = pool if isinstance(pool, LabelSet) else from_images(pool, names)
    files = [it.file for it in ls.items]
    if not files:
        raise DatasetError("the pool is empty")
    emb, probs, skipped = embed(p, files, batch_size, progress)
    lab_files, base_version = _labelled(labelled)
    lab_emb = embed(p, lab_files, batch_size, progress)[0] if lab_files else None
    bad = set(skipped)  # unreadable: their rows hold a neighbour's outputs, so they are never chosen
    chosen, score, excluded = rank(
        strategy,
        budget,
        probs=probs,
        embeddings=emb,
        labelled=lab_emb,
        near_duplicate=near_duplicate,
        seed=seed,
        exclude=[i for i, f in enumerate(files) if f in bad],
    )
    version = model_version_of(model)
    res = SelectionResult(
        strategy,
        budget,
        [ls.items[i].path for i in chosen],
        [float(score[i]) for i in chosen],
        excluded,
        len(files),
        version,
    )
    res.skipped = sorted(bad)
    if out is not None:
        _write_batch(res, ls, chosen, probs, names, out, tool, base_version)
    return res


def _write_batch(res, ls: LabelSet, chosen: list[int], probs: np.ndarray, names, out, tool, base_version) -> None:
    batch = ls.subset([ls.items[i].path for i in chosen])
    batch.model_version = res.model_version
    if base_version is not None:  # annotated, the batch is added to the labelled dataset's version
        batch.base_version = base_version
        for it in batch.items:
            it.path = str(Path(it.file).resolve())
    for i, it in zip(chosen, batch.items):
        k = int(np.argmax(probs[i]))
        it.predictions = [Shape(names[k], "tag", score=float(probs[i][k]))] if k < len(names) else []
    out = Path(out)
    ex = export_cvat(batch, out) if tool == "cvat" else export_label_studio(batch, out)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["rank", "path", "score", "predicted", "prob"])
    for r, (i, path) in enumerate(zip(chosen, res.paths), 1):
        k = int(np.argmax(probs[i]))
        w.writerow([r, path, f"{res.scores[r - 1]:.6f}", names[k] if k < len(names) else k, f"{probs[i][k]:.6f}"])
    res.files = {**ex.files, "selection": write_text(out / "selection.csv", buf.getvalue())}
    res.dir = out
