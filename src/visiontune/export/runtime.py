"""Run an exported artifact on its own: the backend its sidecar names (ONNX Runtime for ``.onnx``,
``torch.jit`` for TorchScript), with the sidecar's preprocessing (PIL + NumPy) and class names."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from visiontune.data.decode import is_image_file, read_image
from visiontune.errors import ConfigError, ImageDecodeError
from visiontune.export.backends import BACKENDS, Runner, artifact_suffixes
from visiontune.export.preprocess import preprocess_array
from visiontune.export.sidecar import Sidecar, sidecar_path
from visiontune.results import Detections, Prediction


def expand_images(images: Any) -> list:
    """Paths (files or folders, folders scanned recursively in sorted order) and PIL images → a list."""
    if isinstance(images, (str, os.PathLike, Image.Image)):
        images = [images]
    out: list = []
    for item in images:
        if isinstance(item, Image.Image):
            out.append(item)
            continue
        p = Path(item)
        if p.is_dir():
            found = sorted(str(f) for f in p.rglob("*") if f.is_file() and is_image_file(f))
            if not found:
                raise ImageDecodeError(f"{p}: no image files in this folder")
            out.extend(found)
        elif p.is_file():
            out.append(str(p))
        else:
            raise ImageDecodeError(f"{p}: no such file or folder")
    return out


def open_image(item: Any) -> Image.Image:
    """A PIL image as RGB, or a file decoded with `visiontune.data.read_image`."""
    if isinstance(item, Image.Image):
        return item.convert("RGB") if item.mode != "RGB" else item
    return read_image(item)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


class ExportedModel:
    """An exported artifact plus its sidecar.

    ``run(batch)`` maps a preprocessed float32 NCHW batch to logits (classification) or one CHW
    image to ``{"boxes", "scores", "labels"}`` arrays (detection); ``predict(images)`` does the
    whole path from files to labels / detections.
    """

    def __init__(self, artifact: Path, sidecar: Sidecar, backend: str, runner: Runner):
        self.artifact = artifact
        self.sidecar = sidecar
        self.backend = backend
        self._runner = runner

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def load(
        cls, artifact: str | os.PathLike, *, providers: Sequence[str] | None = None, threads: int | None = None
    ) -> ExportedModel:
        """Read the sidecar of ``artifact`` and open it with the backend the sidecar names."""
        artifact = Path(artifact)
        if not artifact.is_file():
            raise ConfigError(f"{artifact}: no such exported model file")
        sidecar = Sidecar.for_artifact(artifact)
        backend = BACKENDS.get(sidecar.artifact_format)
        if backend is None:
            raise ConfigError(
                f"{sidecar_path(artifact)}: key 'artifact_format' is {sidecar.artifact_format!r}; "
                f"expected one of {sorted(BACKENDS)}"
            )
        runner = backend.open(artifact, sidecar, providers=providers, threads=threads)
        return cls(artifact, sidecar, backend.runtime, runner)

    # -- properties ----------------------------------------------------------------------------
    @property
    def task(self) -> str:
        """``classification`` or ``detection``."""
        return self.sidecar.task

    @property
    def class_names(self) -> list[str]:
        """The sidecar's class names (``class_<i>`` when it has only a count)."""
        if self.sidecar.class_names:
            return list(self.sidecar.class_names)
        return [f"class_{i}" for i in range(self.sidecar.num_classes or 0)]

    @property
    def input_name(self) -> str:
        """The graph's input name."""
        return self.sidecar.input.name

    def preprocess(self, image: Any) -> np.ndarray:
        """One image (path or PIL) → the float32 CHW array the graph takes."""
        return preprocess_array(open_image(image), self.sidecar.preprocessing)

    # -- execution -----------------------------------------------------------------------------
    def run(self, x: np.ndarray):
        """Preprocessed input → raw outputs (logits array, or a detections dict for one image)."""
        outs = self._runner.run(np.ascontiguousarray(x, dtype=np.float32))
        if self.task == "detection":
            return dict(zip(self.sidecar.output.names, outs))
        return outs[0]

    def logits(self, images: Any, batch_size: int = 16) -> np.ndarray:
        """Classifier logits for ``images`` (paths, folders, PIL images), ``batch_size`` at a time."""
        items = expand_images(images)
        chunks = []
        for start in range(0, len(items), batch_size):
            batch = np.stack([self.preprocess(im) for im in items[start : start + batch_size]])
            chunks.append(self.run(batch))
        return np.concatenate(chunks) if chunks else np.zeros((0, len(self.class_names)), np.float32)

    def predict(self, images: Any, *, topk: int = 5, batch_size: int = 16, score_threshold: float = 0.25):
        """Classification: a ``visiontune.Prediction`` (top-k labels and probabilities) per image.
        Detection: a ``visiontune.detect.Detections`` per image, boxes in the image's pixels."""
        items = expand_images(images)
        if self.task == "detection":
            return [self._detect(im, score_threshold) for im in items]
        if self.task == "multilabel-classification":
            return self._multilabel(items, batch_size)
        if self.sidecar.output.batch == 1 and batch_size != 1:
            batch_size = 1
        names = self.class_names
        out = []
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            probs = _softmax(self.run(np.stack([self.preprocess(im) for im in chunk])).astype(np.float64))
            k = min(topk, probs.shape[-1])
            idx = np.argsort(-probs, axis=-1, kind="stable")[:, :k]
            for j, im in enumerate(chunk):
                ii = [int(i) for i in idx[j]]
                out.append(
                    Prediction(
                        ii,
                        [names[i] if i < len(names) else f"class_{i}" for i in ii],
                        [float(probs[j, i]) for i in ii],
                        im if isinstance(im, str) else None,
                    )
                )
        return out

    def _multilabel(self, items: list, batch_size: int) -> list:
        """Per-label sigmoid probabilities and the labels at or above the sidecar's thresholds."""
        from visiontune.hub.classification import MultiLabelPrediction

        names, out = self.class_names, []
        cuts = getattr(self.sidecar.output, "thresholds", None) or [0.5] * len(names)
        if self.sidecar.output.batch == 1:
            batch_size = 1
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            logits = self.run(np.stack([self.preprocess(im) for im in chunk])).astype(np.float64)
            probs = 1.0 / (1.0 + np.exp(-logits))
            for j, im in enumerate(chunk):
                on = sorted((k for k in range(len(names)) if probs[j, k] >= cuts[k]), key=lambda k: -probs[j, k])
                out.append(
                    MultiLabelPrediction(
                        [names[k] for k in on],
                        {n: float(v) for n, v in zip(names, probs[j])},
                        dict(zip(names, map(float, cuts))),
                        im if isinstance(im, str) else None,
                    )
                )
        return out

    def _detect(self, item: Any, score_threshold: float):
        img = open_image(item)
        x = self.preprocess(img)
        det = self.run(x)
        keep = det["scores"] >= score_threshold
        scale = np.array([img.width / x.shape[2], img.height / x.shape[1]] * 2, dtype=np.float32)
        boxes = det["boxes"][keep] * scale
        return Detections(
            boxes,
            det["scores"][keep],
            det["labels"][keep],
            self.class_names,
            image_size=(img.height, img.width),
            path=item if isinstance(item, str) else None,
        )

    def __repr__(self) -> str:
        return f"ExportedModel({str(self.artifact)!r}, {self.task}, {self.backend})"


def load_artifact(artifact: str | os.PathLike, **kwargs) -> ExportedModel:
    """Load an exported ``.onnx`` / TorchScript file with its sidecar (``providers=``, ``threads=``)."""
    return ExportedModel.load(artifact, **kwargs)


def is_exported_artifact(path: str | os.PathLike) -> bool:
    """True when ``path`` is an artifact file `export` writes (a backend's suffix) with its sidecar
    beside it: what `load_artifact` opens, as opposed to a model id or a saved model folder."""
    p = Path(path)
    return p.suffix.lower() in artifact_suffixes() and p.is_file() and sidecar_path(p).is_file()
