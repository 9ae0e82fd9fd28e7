"""Numeric parity of an exported artifact against the PyTorch model it came from, on real images."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from visiontune.errors import ConfigError
from visiontune.export.runtime import ExportedModel, expand_images, open_image
from visiontune.hub.pretrained import logits_of


@dataclass
class ParityReport:
    """How closely the artifact reproduces PyTorch.

    Classification: ``max_abs_diff`` / ``mean_abs_diff`` of the logits on identical input
    arrays, ``top1_agreement`` on them, and ``end_to_end_top1_agreement``: PyTorch with its own
    (torchvision) preprocessing vs the artifact with the sidecar's PIL+NumPy preprocessing.
    Detection: detections matched one to one (same label, nearest box); the largest box
    coordinate and score differences among matches, and how many were left unmatched.
    """

    task: str
    n_images: int
    inputs: str
    max_abs_diff: float | None = None
    mean_abs_diff: float | None = None
    top1_agreement: float | None = None
    end_to_end_top1_agreement: float | None = None
    preprocess_max_abs_diff: float | None = None
    top1_accuracy_artifact: float | None = None
    top1_accuracy_pytorch: float | None = None
    box_max_abs_diff: float | None = None
    score_max_abs_diff: float | None = None
    matched: int | None = None
    unmatched_reference: int | None = None
    unmatched_artifact: int | None = None
    atol: float | None = None
    passed: bool | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """The report's set fields as JSON-ready values."""
        return {k: v for k, v in asdict(self).items() if v is not None and v != []}

    def summary(self) -> str:
        """One line: the verdict and the differences between the exported and the eager model."""
        verdict = {True: "PASS", False: "FAIL", None: "report only"}[self.passed]
        if self.task == "detection":
            return (
                f"{verdict}: {self.n_images} images ({self.inputs}); {self.matched} detections matched, "
                f"unmatched {self.unmatched_reference} (PyTorch) / {self.unmatched_artifact} (artifact); "
                f"max |box diff| {_fmt(self.box_max_abs_diff)} px, max |score diff| {_fmt(self.score_max_abs_diff)}"
            )
        s = (
            f"{verdict}: {self.n_images} images ({self.inputs}); max |diff| {_fmt(self.max_abs_diff)} "
            f"(mean {_fmt(self.mean_abs_diff)}), top-1 agreement {100 * (self.top1_agreement or 0):.1f}%"
        )
        if self.end_to_end_top1_agreement is not None:
            s += f", end-to-end (sidecar preprocessing) top-1 agreement {100 * self.end_to_end_top1_agreement:.1f}%"
        if self.top1_accuracy_artifact is not None:
            s += (
                f"; top-1 accuracy: artifact {100 * self.top1_accuracy_artifact:.1f}%, "
                f"PyTorch {100 * (self.top1_accuracy_pytorch or 0.0):.1f}%"
            )
        return s


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3g}"


def classification_parity(
    runtime: ExportedModel,
    module: nn.Module,
    images: Sequence[Any],
    *,
    inputs: str,
    torch_preprocess: Callable | None = None,
    atol: float | None = 1e-4,
    batch_size: int = 16,
    labels: Sequence[int] | None = None,
) -> ParityReport:
    """Compare logits of ``module`` (PyTorch) and ``runtime`` (the artifact) on ``images``
    (PIL images, paths or already-preprocessed CHW float arrays). With ``labels`` (class index
    per image) the report adds the top-1 accuracy of both: the artifact through its sidecar
    preprocessing, PyTorch through its own (or the sidecar's when none is given)."""
    module = module.eval()
    if labels is not None and len(labels) != len(images):
        raise ConfigError(f"labels: {len(labels)} given for {len(images)} images")
    diffs_max, diffs_sum, count, agree, agree_e2e, pre_diff = 0.0, 0.0, 0, 0, 0, 0.0
    art_top1: list[int] = []
    ref_top1: list[int] = []
    if runtime.sidecar.output.batch == 1:
        batch_size = 1
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        pils = [None if isinstance(im, np.ndarray) else open_image(im) for im in chunk]
        arrays = np.stack([im if p is None else runtime.preprocess(p) for im, p in zip(chunk, pils)])
        out = np.asarray(runtime.run(arrays), dtype=np.float64)
        with torch.inference_mode():
            ref = logits_of(module(torch.from_numpy(arrays))).double().numpy()
        d = np.abs(out - ref)
        diffs_max = max(diffs_max, float(d.max()))
        diffs_sum += float(d.sum())
        count += d.size
        agree += int((out.argmax(-1) == ref.argmax(-1)).sum())
        art_top1 += out.argmax(-1).tolist()
        ref_chunk = ref.argmax(-1).tolist()
        if torch_preprocess is not None and all(p is not None for p in pils):
            tens = torch.stack([torch_preprocess(p) for p in pils])
            chunk_diff = float((tens.double() - torch.from_numpy(arrays).double()).abs().max())
            pre_diff = max(pre_diff, chunk_diff)
            if chunk_diff == 0.0:  # identical inputs: the same logits, no second forward pass
                ref2 = ref
            else:
                with torch.inference_mode():
                    ref2 = logits_of(module(tens)).numpy()
            agree_e2e += int((out.argmax(-1) == ref2.argmax(-1)).sum())
            ref_chunk = ref2.argmax(-1).tolist()
        ref_top1 += ref_chunk
    n = len(images)
    report = ParityReport(
        task="classification",
        n_images=n,
        inputs=inputs,
        max_abs_diff=diffs_max,
        mean_abs_diff=diffs_sum / max(count, 1),
        top1_agreement=agree / max(n, 1),
        atol=atol,
    )
    if torch_preprocess is not None and not any(isinstance(im, np.ndarray) for im in images):
        report.end_to_end_top1_agreement = agree_e2e / max(n, 1)
        report.preprocess_max_abs_diff = pre_diff
    if labels is not None:
        report.top1_accuracy_artifact = sum(a == y for a, y in zip(art_top1, labels)) / max(n, 1)
        report.top1_accuracy_pytorch = sum(r == y for r, y in zip(ref_top1, labels)) / max(n, 1)
    if atol is not None:
        report.passed = diffs_max <= atol and report.top1_agreement == 1.0
    return report


def match_detections(ref: dict, art: dict) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """Greedy one-to-one matching, highest PyTorch score first: same label, smallest L∞ box distance."""
    order = np.argsort(-ref["scores"], kind="stable")
    free = set(range(len(art["boxes"])))
    pairs, unmatched_ref = [], []
    for i in order:
        cands = [j for j in free if art["labels"][j] == ref["labels"][i]]
        if not cands:
            unmatched_ref.append(int(i))
            continue
        dist = [float(np.abs(art["boxes"][j] - ref["boxes"][i]).max()) for j in cands]
        j = cands[int(np.argmin(dist))]
        pairs.append((int(i), j))
        free.remove(j)
    return pairs, unmatched_ref, sorted(free)


def detection_parity(
    runtime: ExportedModel,
    module: nn.Module,
    images: Sequence[Any],
    *,
    inputs: str,
    box_atol: float = 0.25,
    score_atol: float = 1e-3,
) -> ParityReport:
    """Run ``module`` (a torchvision detector) and the artifact on each image and match detections.

    Near-ties at the detection limit can drop different boxes in the two runtimes; such an
    unmatched detection is tolerated when its score is within ``score_atol`` of the lowest kept
    score, and reported in ``notes``.
    """
    module = module.eval()
    box_max, score_max, matched, un_ref, un_art = 0.0, 0.0, 0, 0, 0
    notes = []
    passed = True
    for item in images:
        img = open_image(item)
        x = runtime.preprocess(img)
        art = runtime.run(x)
        with torch.inference_mode():
            r = module([torch.from_numpy(x)])[0]
        ref = {k: r[k].numpy() for k in ("boxes", "scores", "labels")}
        pairs, ur, ua = match_detections(ref, art)
        for i, j in pairs:
            box_max = max(box_max, float(np.abs(ref["boxes"][i] - art["boxes"][j]).max()))
            score_max = max(score_max, float(abs(ref["scores"][i] - art["scores"][j])))
        matched += len(pairs)
        un_ref += len(ur)
        un_art += len(ua)
        floor = min(
            float(ref["scores"].min()) if len(ref["scores"]) else 0.0,
            float(art["scores"].min()) if len(art["scores"]) else 0.0,
        )
        for i in ur:
            if ref["scores"][i] > floor + score_atol:
                passed = False
                notes.append(
                    f"{item if isinstance(item, str) else 'image'}: PyTorch detection {i} "
                    f"(score {ref['scores'][i]:.4f}) has no counterpart in the artifact"
                )
        for j in ua:
            if art["scores"][j] > floor + score_atol:
                passed = False
                notes.append(
                    f"{item if isinstance(item, str) else 'image'}: artifact detection {j} "
                    f"(score {art['scores'][j]:.4f}) has no counterpart in PyTorch"
                )
    passed = passed and box_max <= box_atol and score_max <= score_atol
    return ParityReport(
        task="detection",
        n_images=len(images),
        inputs=inputs,
        box_max_abs_diff=box_max,
        score_max_abs_diff=score_max,
        matched=matched,
        unmatched_reference=un_ref,
        unmatched_artifact=un_art,
        atol=box_atol,
        passed=passed,
        notes=notes[:20],
    )


def parity_images(images: Any, limit: int) -> tuple[list, str]:
    """Real images for the parity check and a description of them: ``images`` (files/folders),
    else scikit-image's sample photos when installed, else seeded random pixels (said so)."""
    if images is not None:
        items = expand_images(images)[:limit]
        return (
            items,
            f"{len(items)} images from {images if isinstance(images, (str, os.PathLike)) else 'the given list'}",
        )
    try:
        from skimage import data as skdata  # optional (the demo extra)

        items = []
        for name in ("chelsea", "coffee", "astronaut", "rocket", "cat", "immunohistochemistry"):
            if hasattr(skdata, name):
                arr = getattr(skdata, name)()
                items.append(Image.fromarray(arr).convert("RGB"))
        if items:
            return items[:limit], "scikit-image sample photos"
    except Exception:  # noqa: BLE001 - any failure of the optional sample set falls back to random pixels
        pass
    rng = np.random.default_rng(0)
    return (
        [Image.fromarray(rng.integers(0, 256, (256, 320, 3), dtype=np.uint8)) for _ in range(min(limit, 4))],
        "random pixels (no --images given and scikit-image absent)",
    )
