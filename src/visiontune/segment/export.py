"""Exporting semantic segmenters to ONNX with their sidecar, and predicting from the artifact.

``export_segmenter`` writes ``<name>.onnx`` (input ``image`` N×3×H×W, output ``logits`` N×C×H×W,
dynamic batch) and ``<name>.onnx.visiontune.json``, a :class:`SegmentationSidecar` record with the
preprocessing, class names and label conventions (ignore index, background, reduce_labels), then
checks parity: onnxruntime against PyTorch on real images (max |Δlogit| and class-map agreement).
``SegmentationArtifact`` runs the artifact with onnxruntime and PIL / NumPy preprocessing and
returns the same `Segmentation` results as ``Pretrained.predict``.

This is the segmentation backend beside `visiontune.export` (classification / detection); it
keeps to that module's sidecar conventions and public helpers.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from visiontune import __version__
from visiontune.data.decode import list_images, read_image
from visiontune.errors import ConfigError, ExportError, require
from visiontune.export.preprocess import preprocess_array
from visiontune.export.sidecar import sidecar_path
from visiontune.hub import Pretrained
from visiontune.hub.segmentation import label_conventions
from visiontune.records import Record
from visiontune.results import Segmentation


class SegmentationSidecar(Record):
    """``<artifact>.visiontune.json`` of an exported segmenter."""

    KIND: ClassVar[str] = "segment-export"
    VERSION: ClassVar[int] = 1

    task: str = "segmentation"
    model_id: str
    visiontune_version: str = ""
    created: str = ""
    preprocessing: dict[str, Any]
    input: dict[str, Any]
    output: dict[str, Any]
    class_names: list[str]
    ignore_index: int | None = None
    background: bool = False
    reduce_labels: bool = False
    license: dict[str, Any] = Field(default_factory=dict)
    parity: dict[str, Any] = Field(default_factory=dict)


@dataclass
class SegmentationExport:
    """The artifact, its sidecar and the parity check."""

    path: Path
    sidecar: Path
    parity: dict[str, Any]

    @property
    def dir(self) -> Path:
        """The folder the exported model is in."""
        return self.path.parent

    @property
    def metrics(self) -> dict[str, Any]:
        """The parity check's numbers."""
        return self.parity

    def to_dict(self) -> dict:
        """Paths and parity as JSON-ready values."""
        return {"path": str(self.path), "sidecar": str(self.sidecar), "parity": self.parity}

    def summary(self) -> str:
        """One line: the export and how closely it matches the eager model."""
        p = self.parity
        return f"{self.path}: parity on {p.get('images')} images, max |Δlogit| {p.get('max_abs_diff'):.2e}, class maps agree {p.get('pixel_agreement'):.4%}"


class _Logits(torch.nn.Module):
    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        return out["out"] if isinstance(out, dict) else getattr(out, "logits", out)


def _input_hw(p: Pretrained, input_size: Any) -> tuple[int, int]:
    if input_size is not None:
        hw = (int(input_size), int(input_size)) if isinstance(input_size, int) else tuple(int(v) for v in input_size)
        return hw[0], hw[1]
    if isinstance(p.preprocess.resize, tuple):
        return p.preprocess.resize
    raise ConfigError(
        f"{p.card.model_id} resizes by its shorter edge ({p.preprocess.resize}); pass input_size=(H, W) for the artifact"
    )


def export_segmenter(
    model: Pretrained,
    out: str | os.PathLike | None = None,
    *,
    input_size: Any = None,
    opset: int = 17,
    parity_images: Any = None,
    parity_limit: int = 4,
) -> SegmentationExport:
    """Export a semantic segmenter (composed, torchvision FCN / DeepLabV3 / LRASPP, …) to ONNX."""
    if model.task != "segmentation" or (model.card.source == "hf" and model.native is not None):
        raise ExportError(
            f"{model.card.model_id}: ONNX export covers semantic segmenters that take a normalised image "
            f"tensor (composed, torchvision); this is a {model.card.source} {model.task} model"
        )
    onnx = require("onnx", "onnx", "ONNX export")
    h, w = _input_hw(model, input_size)
    path = (
        Path(out)
        if out is not None
        else Path("exports") / (model.card.name.replace(":", "_").replace("+", "_") + ".onnx")
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    net = _Logits(model.model.eval().cpu()).eval()
    example = torch.zeros(1, 3, h, w)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with torch.no_grad():
            torch.onnx.export(
                net, (example,), str(tmp), input_names=["image"], output_names=["logits"],
                dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, opset_version=opset, dynamo=False,
            )  # fmt: skip
        onnx.checker.check_model(str(tmp))
        os.replace(tmp, path)
    except Exception as e:
        tmp.unlink(missing_ok=True)
        raise ExportError(f"{model.card.model_id}: ONNX export failed at opset {opset}: {e}") from e
    pre = model.preprocess.to_dict()
    pre.update(resize=[h, w], crop=None)
    conv = label_conventions(model)
    side = SegmentationSidecar(
        model_id=model.card.model_id,
        visiontune_version=__version__,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        preprocessing=pre,
        input={"name": "image", "shape": ["batch", 3, h, w], "dtype": "float32"},
        output={"name": "logits", "format": "class logits N×C×H×W at the input size; upsample, then argmax"},
        class_names=list(model.class_names),
        ignore_index=conv["ignore_index"],
        background=bool(conv["background"]),
        reduce_labels=conv["reduce_labels"],
        license={"code": model.card.license_code, "weights": model.card.license_weights},
    )
    side_file = sidecar_path(path)
    side.write(side_file)
    art = SegmentationArtifact(path)
    images = list_images(parity_images)[:parity_limit] if parity_images not in (None, [], ()) else []
    side.parity = parity(model, art, images)
    side.write(side_file)
    return SegmentationExport(path, side_file, side.parity)


def parity(model: Pretrained, art: SegmentationArtifact, images: list) -> dict[str, Any]:
    """onnxruntime vs PyTorch on ``images`` (or one synthetic image): the same preprocessed input,
    max |Δlogit| and the share of pixels whose class agrees."""
    if not images:
        rng = np.random.default_rng(0)
        from PIL import Image

        ims = [Image.fromarray(rng.integers(0, 255, (art.hw[0], art.hw[1], 3), dtype=np.uint8))]
    else:
        ims = [read_image(i) for i in images]
    diffs, agree, total = [], 0, 0
    for im in ims:
        x = preprocess_array(im, art.sidecar.preprocessing)[None]
        ours = art.session.run(None, {"image": x})[0]
        with torch.no_grad():
            ref = _Logits(model.model)(torch.from_numpy(x)).numpy()
        diffs.append(float(np.abs(ours - ref).max()))
        agree += int((ours.argmax(1) == ref.argmax(1)).sum())
        total += ours.shape[0] * ours.shape[2] * ours.shape[3]
    return {
        "images": len(ims),
        "real_images": bool(images),
        "max_abs_diff": max(diffs),
        "pixel_agreement": agree / max(total, 1),
    }


class SegmentationArtifact:
    """An exported segmenter: ``predict(images)`` -> `Segmentation` per image, with onnxruntime
    and the sidecar's preprocessing (no PyTorch model needed)."""

    def __init__(self, path: str | os.PathLike, providers: list[str] | None = None):
        ort = require("onnxruntime", "onnx", "running exported models")
        self.path = Path(path)
        self.sidecar = SegmentationSidecar.read(sidecar_path(self.path))
        self.session = ort.InferenceSession(str(self.path), providers=providers or ["CPUExecutionProvider"])
        self.hw = tuple(int(v) for v in self.sidecar.preprocessing["resize"])

    @property
    def class_names(self) -> list[str]:
        """The class names, in output order."""
        return list(self.sidecar.class_names)

    def predict(self, images: Any, *, probabilities: bool = False, batch_size: int = 4) -> list[Segmentation]:
        """Segment images (paths, folders, PIL images) at their own size."""
        from PIL import Image

        items = (
            [images]
            if isinstance(images, Image.Image)
            else list_images(images)
            if not isinstance(images, list)
            else images
        )
        out = []
        for start in range(0, len(items), batch_size):
            chunk = [
                (read_image(i), str(i)) if not isinstance(i, Image.Image) else (i.convert("RGB"), None)
                for i in items[start : start + batch_size]
            ]
            x = np.stack([preprocess_array(im, self.sidecar.preprocessing) for im, _ in chunk])
            logits = torch.from_numpy(self.session.run(None, {"image": x})[0])
            for lg, (im, path) in zip(logits, chunk):
                lg = F.interpolate(lg[None], size=(im.height, im.width), mode="bilinear", align_corners=False)[0]
                out.append(
                    Segmentation(
                        torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), self.class_names, None, (im.height, im.width), path,
                        class_map=lg.argmax(0), probabilities=lg.softmax(0) if probabilities else None,
                        ignore_index=self.sidecar.ignore_index,
                    )
                )  # fmt: skip
        return out
