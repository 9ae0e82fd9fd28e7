"""The sidecar ``<artifact>.visiontune.json``: what an exported model needs to be used on its own.

`Sidecar` (``visiontune.export-sidecar/2``) is the one reader and writer. It holds the
preprocessing (the same dict as ``visiontune.Preprocess.to_dict()``), class names, the input
name/shape, the output format, the source model id and licences, and the parity check made at
export time. Sidecars written before the record existed (``"format": "visiontune.export"`` with
``"format_version": 1``) are upgraded on read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from visiontune.errors import ConfigError
from visiontune.export.preprocess import PIL_RESAMPLE
from visiontune.records import Record

SEGMENT_FORMAT_PREFIX = "visiontune.segment-export/"  # segmentation exports have their own record

SIDECAR_SUFFIX = ".visiontune.json"
#: the convention of sidecars written before `Sidecar` (read, never written)
LEGACY_FORMAT = "visiontune.export"

Shape = list[int | str | None]


class _Part(BaseModel):
    model_config = ConfigDict(extra="allow")


class SidecarSource(_Part):
    """Where the exported model came from."""

    model_id: str | None = None
    base_id: str | None = None
    weights: str | None = None
    weights_sha256: str | None = None


class SidecarLicense(_Part):
    """Licences of the source model's code and weights."""

    code: str | None = None
    weights: str | None = None
    notes: list[str] = Field(default_factory=list)


class SidecarInput(_Part):
    """The graph's input: ``shape`` holds ints and symbolic names (``"batch"``, ``"height"``)."""

    name: str = "input"
    shape: Shape = Field(default_factory=list)
    dtype: str = "float32"
    layout: str = "NCHW"
    value: str = ""


class SidecarOutput(_Part):
    """The graph's outputs, in order: ``logits`` (classification) or ``boxes``/``labels``/``scores``
    in the model's own order (detection). ``batch``: 1 when the graph takes one input at a time."""

    type: Literal["logits", "detections"]
    names: list[str]
    shape: Shape | None = None
    batch: int | None = None


class Sidecar(Record):
    """``<artifact>.visiontune.json``, read and written only here."""

    KIND: ClassVar[str] = "export-sidecar"
    VERSION: ClassVar[int] = 2

    visiontune_version: str = ""
    created: str = ""
    artifact: str = ""
    artifact_files: list[str] = Field(default_factory=list)
    artifact_sha256: str | None = None
    artifact_format: str
    exporter: str = ""
    opset: int | None = None
    quantization: str | None = None
    task: Literal["classification", "multilabel-classification", "detection"]
    source: SidecarSource = Field(default_factory=SidecarSource)
    license: SidecarLicense = Field(default_factory=SidecarLicense)
    num_classes: int | None = None
    class_names: list[str] | None = None
    preprocessing: dict[str, Any]
    input: SidecarInput
    output: SidecarOutput
    versions: dict[str, str] = Field(default_factory=dict)
    parity: dict[str, Any] | None = None

    @classmethod
    def upgrade(cls, doc: dict[str, Any]) -> dict[str, Any]:
        """The pre-record convention (``visiontune.export`` + ``format_version``) becomes ``export-sidecar/<n>``."""
        if doc.get("format") == LEGACY_FORMAT:
            version = int(doc.get("format_version", 1))
            doc = {k: v for k, v in doc.items() if k != "format_version"}
            doc["format"] = f"visiontune.{cls.KIND}/{version}"
        return doc

    @field_validator("preprocessing")
    @classmethod
    def _check_preprocessing(cls, pre: dict[str, Any]) -> dict[str, Any]:
        interp = pre.get("interpolation", "bilinear")
        if interp not in PIL_RESAMPLE:
            raise ValueError(f"interpolation {interp!r} is not one of {sorted(PIL_RESAMPLE)}")
        for key in ("mean", "std"):
            v = pre.get(key)
            if v is not None and (not isinstance(v, list) or len(v) != 3):
                raise ValueError(f"{key} must be a list of 3 numbers or null, got {v!r}")
        return pre

    # -- files -------------------------------------------------------------------------------
    @classmethod
    def for_artifact(cls, artifact: str | os.PathLike) -> Sidecar:
        """Read and check the sidecar of ``artifact``; errors name the file and the key."""
        path = sidecar_path(artifact)
        if not path.is_file():
            raise ConfigError(
                f"{path} not found: an exported artifact is used with the sidecar JSON written beside it by "
                f"`visiontune export`; re-export the model or copy the sidecar next to {Path(artifact).name}"
            )
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConfigError(f"{path}: not valid JSON ({e}); re-export the model to rewrite it") from e
        if not isinstance(doc, dict):
            raise ConfigError(f"{path}: expected a JSON object, found {type(doc).__name__}; re-export the model")
        if not doc.get("format"):
            raise ConfigError(f"{path}: no key 'format' (expected {cls.format_id()!r}); is this a visiontune sidecar?")
        if str(doc["format"]).startswith(SEGMENT_FORMAT_PREFIX):
            raise ConfigError(
                f"{path}: format is {doc['format']!r}, a segmentation export: open it with "
                "visiontune.segment.SegmentationArtifact (CLI: `visiontune predict` or `visiontune segment`)"
            )
        try:
            return cls.model_validate(doc)
        except ValidationError as e:
            raise ConfigError(f"{path}: {_explain(e)}; re-export the model to rewrite the sidecar") from None

    def write_for(self, artifact: str | os.PathLike) -> Path:
        """Write this sidecar beside ``artifact`` (atomically); returns its path."""
        return self.write(sidecar_path(artifact))


def _explain(e: ValidationError) -> str:
    parts = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err.get("loc", ()))
        if err.get("type") == "missing":
            parts.append(f"missing key {loc!r}")
        else:
            msg = str(err.get("msg")).removeprefix("Value error, ")
            parts.append(f"key {loc!r}: {msg}" if loc else msg)
    return "; ".join(parts[:6])


def sidecar_format(artifact: str | os.PathLike) -> str | None:
    """The ``format`` string of ``artifact``'s sidecar (e.g. ``visiontune.segment-export/1``), or
    None when there is no readable sidecar: which reader opens the artifact."""
    try:
        doc = json.loads(sidecar_path(artifact).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return str(doc.get("format")) if isinstance(doc, dict) and doc.get("format") else None


def is_segmentation_sidecar(artifact: str | os.PathLike) -> bool:
    """True when ``artifact``'s sidecar is a segmentation export's (`visiontune.segment.export`)."""
    return (sidecar_format(artifact) or "").startswith(SEGMENT_FORMAT_PREFIX)


def sidecar_path(artifact: str | os.PathLike) -> Path:
    """``<artifact>.visiontune.json``."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + SIDECAR_SUFFIX)


def read_sidecar(artifact: str | os.PathLike) -> dict:
    """The sidecar of ``artifact`` as a plain dict (checked and upgraded: `Sidecar.for_artifact`)."""
    return Sidecar.for_artifact(artifact).to_dict()
