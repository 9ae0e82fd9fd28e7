"""Nearest neighbours of any image among the audited ones, from the index the audit saved.

``<audit>/index/`` holds ``index.json`` (visiontune.audit-index/1), the faiss index
(``near.faiss``), the PCA projection (``projection.npz``) and ``items.parquet`` (split, path,
label, sha256 and feature-store row of every indexed image). A query image is looked up in the
feature store by content; an image the audit never saw goes through the model once (the run's
saved model, or the ``model`` given). Candidates from the index are re-ranked by the exact cosine
of the full embeddings.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from visiontune._atomic import atomic_path
from visiontune.audit import ann
from visiontune.audit.duplicates import NearSearch
from visiontune.audit.features import compute_outputs
from visiontune.audit.store import FeatureStore
from visiontune.data.hashing import sha256_file
from visiontune.errors import ConfigError
from visiontune.records import Record


class AuditIndexInfo(Record):
    """``index.json``: what the saved neighbour index covers and where its embeddings live."""

    KIND: ClassVar[str] = "audit-index"
    VERSION: ClassVar[int] = 1

    store_key: str
    cache_dir: str | None = None  # feature-store root (None: $VISIONTUNE_CACHE)
    n: int
    exact: bool
    model_dir: str | None = None
    model_id: str | None = None


def save_index(
    out_dir: Path,
    search: NearSearch,
    items: list[Any],
    rows: list[np.ndarray],
    *,
    store_key: str,
    cache_dir: str | os.PathLike | None,
    model_dir: str | None,
    model_id: str | None,
) -> Path:
    """Write ``<out_dir>/index/`` (see the module doc); returns its ``index.json``."""
    d = Path(out_dir) / "index"
    d.mkdir(parents=True, exist_ok=True)
    with atomic_path(d / "near.faiss") as tmp:
        search.index.save(Path(tmp))
    with atomic_path(d / "projection.npz") as tmp:
        search.projection.save(Path(tmp))
    table = pd.DataFrame(
        {
            "split": [it.split for it in items for _ in it.paths],
            "path": [p for it in items for p in it.paths],
            "label": [str(lab) for it in items for lab in it.labels],
            "sha256": [s for it in items for s in it.sha256],
            "store_row": np.concatenate(rows) if rows else np.zeros(0, np.int64),
        }
    )
    with atomic_path(d / "items.parquet") as tmp:
        table.to_parquet(tmp, index=False)
    info = AuditIndexInfo(
        store_key=store_key,
        cache_dir=str(Path(cache_dir).resolve()) if cache_dir is not None else None,
        n=len(table),
        exact=search.index.exact,
        model_dir=model_dir,
        model_id=model_id,
    )
    return info.write(d / "index.json")


class SimilarIndex:
    """The saved neighbour index of one audit."""

    def __init__(self, info: AuditIndexInfo, index: ann.NearIndex, projection: ann.Projection, items: pd.DataFrame):
        self.info, self.index, self.projection, self.items = info, index, projection, items

    @classmethod
    def load(cls, audit_dir: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> SimilarIndex:
        """The index of the audit in ``audit_dir`` (an audit folder, or a run with ``audit/``)."""
        d = Path(audit_dir)
        if not (d / "index" / "index.json").is_file() and (d / "audit" / "index" / "index.json").is_file():
            d = d / "audit"
        meta = d / "index" / "index.json"
        if not meta.is_file():
            raise ConfigError(f"{d} has no neighbour index (index/index.json): run `visiontune audit` on it first")
        info = AuditIndexInfo.read(meta)
        if cache_dir is not None:
            info = info.model_copy(update={"cache_dir": str(cache_dir)})
        items = pd.read_parquet(d / "index" / "items.parquet")
        return cls(
            info,
            ann.NearIndex.load(d / "index" / "near.faiss"),
            ann.Projection.load(d / "index" / "projection.npz"),
            items,
        )

    def _store(self) -> FeatureStore:
        store = FeatureStore.open(self.info.store_key, root=self.info.cache_dir)
        if store is None:
            where = self.info.cache_dir or "$VISIONTUNE_CACHE"
            raise ConfigError(
                f"the audit's feature store {self.info.store_key} is gone from {where} (cleared?): run the audit again"
            )
        return store

    def embedding(self, image: str | os.PathLike, model: Any = None) -> tuple[np.ndarray, str]:
        """(embedding, sha256) of an image: from the store by content, else through the model."""
        path = str(image)
        if not Path(path).is_file():
            raise ConfigError(f"{path}: no such image file")
        sha = sha256_file(path)
        store = self._store()
        row = store.lookup([sha])[0]
        if row >= 0:
            return store.read([row])[0], sha
        if model is None:
            if not self.info.model_dir:
                raise ConfigError(
                    f"{path} is not in the audit's feature store and the audit has no saved model to embed it"
                )
            import visiontune

            model = visiontune.load(self.info.model_dir)
        o = compute_outputs(model, [path], cache_dir=self.info.cache_dir, sha256=[sha])
        if not o.ok[0]:
            raise ConfigError(f"{path}: cannot decode the image ({o.skipped[0][1] if o.skipped else 'unknown'})")
        return o.embeddings_of([0])[0], sha

    def similar(self, image: str | os.PathLike, k: int = 10, model: Any = None) -> pd.DataFrame:
        """The ``k`` indexed images nearest to ``image`` (the same content excluded), by cosine."""
        if k < 1:
            raise ConfigError(f"k must be at least 1, not {k}")
        emb, sha = self.embedding(image, model)
        q = self.projection(emb[None, :])
        _, idx = self.index.search(q, min(self.info.n, max(4 * k, 64)))
        cand = idx[0][idx[0] >= 0]
        cand = cand[self.items["sha256"].to_numpy()[cand] != sha]
        vec = self._store().read(self.items["store_row"].to_numpy()[cand])
        sim = ann.normalise(vec) @ ann.normalise(emb[None, :])[0] if len(cand) else np.zeros(0)
        order = np.argsort(-sim, kind="stable")[:k]
        out = self.items.iloc[cand[order]][["split", "path", "label"]].reset_index(drop=True)
        out.insert(0, "rank", np.arange(1, len(out) + 1))
        out["similarity"] = sim[order].astype(float)
        return out
