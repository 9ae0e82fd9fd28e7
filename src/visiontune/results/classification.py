"""`Prediction`: the result type of a classifier (``Pretrained.predict`` of a classification model,
exported classifiers, the server)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Prediction:
    """Top-k classes of one image, best first."""

    indices: list[int]
    labels: list[str]
    probs: list[float]
    source: str | None = None

    @property
    def label(self) -> str:
        """The best class's name."""
        return self.labels[0]

    @property
    def prob(self) -> float:
        """The best class's probability."""
        return self.probs[0]

    def to_dict(self) -> dict:
        """JSON-ready: ``{"source": path, "top": [{"index", "label", "prob"}, ...]}``."""
        return {
            "source": self.source,
            "top": [{"index": i, "label": lab, "prob": p} for i, lab, p in zip(self.indices, self.labels, self.probs)],
        }
