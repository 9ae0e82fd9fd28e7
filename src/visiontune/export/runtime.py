"""Run an exported artifact on its own: ONNX Runtime for ``.onnx``, ``torch.jit`` for TorchScript,
with the sidecar's preprocessing (PIL + NumPy) and class names."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from visiontune.errors import ConfigError, ImageDecodeError
from visiontune.export.sidecar import preprocess_array, read_sidecar, sidecar_path


def expand_images(images: Any) -> list:
    """Paths (files or folders, folders scanned recursively in sorted order) and PIL images → a list."""
    from visiontune.data.decode import is_image_file

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
    if isinstance(item, Image.Image):
        return item.convert("RGB") if item.mode != "RGB" else item
    from visiontune.data.decode import read_image

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

    def __init__(self, artifact: Path, sidecar: dict, backend: str, runner: Any):
        self.artifact = artifact
        self.sidecar = sidecar
        self.backend = backend
        self._runner = runner

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def load(
        cls, artifact: str | os.PathLike, *, providers: Sequence[str] | None = None, threads: int | None = None
    ) -> ExportedModel:
        artifact = Path(artifact)
        if not artifact.is_file():
            raise ConfigError(f"{artifact}: no such exported model file")
        doc = read_sidecar(artifact)
        fmt = doc.get("artifact_format")
        if fmt == "onnx":
            ort = _onnxruntime()
            opts = ort.SessionOptions()
            if threads:
                opts.intra_op_num_threads = int(threads)
            opts.log_severity_level = 3
            try:
                session = ort.InferenceSession(
                    str(artifact), sess_options=opts, providers=list(providers or ["CPUExecutionProvider"])
                )
            except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
                raise ConfigError(
                    f"{artifact}: ONNX Runtime cannot load it ({type(e).__name__}: {e}). "
                    f"If it has a .onnx.data file, keep that file beside it"
                ) from e
            return cls(artifact, doc, "onnxruntime", session)
        if fmt == "torchscript":
            import torch

            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated, still supported
                    module = torch.jit.load(str(artifact), map_location="cpu")
            except Exception as e:
                raise ConfigError(f"{artifact}: torch.jit.load failed ({type(e).__name__}: {e})") from e
            return cls(artifact, doc, "torchscript", module.eval())
        raise ConfigError(
            f"{sidecar_path(artifact)}: key 'artifact_format' is {fmt!r}; expected 'onnx' or 'torchscript'"
        )

    # -- properties ----------------------------------------------------------------------------
    @property
    def task(self) -> str:
        return self.sidecar["task"]

    @property
    def class_names(self) -> list[str]:
        names = self.sidecar.get("class_names")
        if names:
            return list(names)
        n = self.sidecar.get("num_classes") or 0
        return [f"class_{i}" for i in range(n)]

    @property
    def input_name(self) -> str:
        return self.sidecar["input"].get("name", "input")

    def preprocess(self, image: Any) -> np.ndarray:
        return preprocess_array(open_image(image), self.sidecar["preprocessing"])

    # -- execution -----------------------------------------------------------------------------
    def run(self, x: np.ndarray):
        """Preprocessed input → raw outputs (logits array, or a detections dict for one image)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.backend == "onnxruntime":
            outs = self._runner.run(None, {self.input_name: x})
        else:
            import torch

            with torch.inference_mode(), warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "RCNN always returns a (Losses, Detections) tuple"
                t = torch.from_numpy(x)
                out = self._runner([t]) if self.task == "detection" else self._runner(t)
            if self.task == "detection":
                # a scripted torchvision detector returns (losses, detections)
                if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], list):
                    out = out[1]
                det = out[0]
                names = self.sidecar["output"]["names"]
                outs = [det[k].numpy() for k in names]
            else:
                outs = [out.float().numpy()]
        if self.task == "detection":
            return dict(zip(self.sidecar["output"]["names"], outs))
        return outs[0]

    def logits(self, images: Any, batch_size: int = 16) -> np.ndarray:
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
        from visiontune.results import Prediction

        if self.sidecar["output"].get("batch") == 1 and batch_size != 1:
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
        cuts = self.sidecar["output"].get("thresholds") or [0.5] * len(names)
        if self.sidecar["output"].get("batch") == 1:
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
        from visiontune.results import Detections

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
    """Load an exported ``.onnx`` / TorchScript file with its sidecar."""
    return ExportedModel.load(artifact, **kwargs)


def _onnxruntime():
    from visiontune.errors import require

    return require("onnxruntime", "onnx", "Running an ONNX model")
