"""The model card: everything a model's weights say about themselves, in one JSON-able object."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Card(BaseModel):
    """What the weights say about themselves. Nothing here is guessed: a field a source does not
    publish stays ``None`` and ``preprocess_source`` says where the preprocessing came from."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    source: str
    name: str
    model_id: str
    weights: str | None = None
    task: str = "classification"  # classification | detection | segmentation | features | ...
    num_classes: int | None = None
    class_names: list[str] | None = None
    input_size: tuple[int, int, int] | None = None  # C, H, W the model expects at eval
    resize_size: int | tuple[int, int] | None = None
    crop_size: int | tuple[int, int] | None = None
    crop_pct: float | None = None
    interpolation: str | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    preprocess_source: str | None = None
    license_code: str | None = None
    license_weights: str | None = None
    license_notes: list[str] = Field(default_factory=list)
    num_params: int | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    weights_file: str | None = None
    weights_sha256: str | None = None
    weights_url: str | None = None
    pretrained: bool = True
    head: dict[str, Any] | None = None
    base_id: str | None = None
    #: how to rebuild the architecture when it has no hub id of its own (composed / fine-tuned
    #: detectors): a dict whose ``builder`` names a registered architecture builder
    recipe: dict[str, Any] | None = None
    paper: str | None = None
    extra: dict[str, Any] = Field(default_factory=dict)

    def rows(self) -> list[tuple[str, str]]:
        """(field, value) pairs for a table."""

        def fmt(v: Any) -> str:
            if v is None:
                return "-"
            if isinstance(v, (list, tuple)) and v and isinstance(v[0], float):
                return "(" + ", ".join(f"{x:.4g}" for x in v) + ")"
            if isinstance(v, list) and len(v) > 8:
                return ", ".join(map(str, v[:5])) + f", … ({len(v)} in all)"
            if isinstance(v, int) and v > 10000:
                return f"{v:,}"
            if isinstance(v, dict):
                return ", ".join(f"{k}={val}" for k, val in v.items()) or "-"
            if isinstance(v, list):
                return "; ".join(map(str, v)) or "-"
            return str(v)

        order = [
            "model_id",
            "source",
            "name",
            "weights",
            "task",
            "num_classes",
            "class_names",
            "input_size",
            "resize_size",
            "crop_size",
            "crop_pct",
            "interpolation",
            "mean",
            "std",
            "preprocess_source",
            "num_params",
            "metrics",
            "license_code",
            "license_weights",
            "license_notes",
            "weights_file",
            "weights_sha256",
            "weights_url",
            "head",
            "base_id",
        ]
        data = self.model_dump()
        return [(k, fmt(data.get(k))) for k in order if k in data]
