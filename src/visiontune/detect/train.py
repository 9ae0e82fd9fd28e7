"""Fine-tuning torchvision and composed detectors on COCO / YOLO / VOC data, on Lightning, with a
`visiontune.track.Run` record and the saved-model format of classification
(``model.safetensors`` + ``visiontune.json``)."""

from __future__ import annotations

import copy
import logging
import math
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from visiontune._config import load as load_config
from visiontune.errors import ConfigError
from visiontune.hub import load, load_state_dict_file, parse_model_id
from visiontune.hub.saved import is_saved_model
from visiontune.results import Detections

from .datasets import DetectionDataset, TorchDetectionDataset, collate, load_detection
from .detector import Detector
from .evaluate import coco_map
from .models import (
    TransferReport,
    build_from_recipe,
    default_anchors,
    freeze_backbone,
    transfer_weights,
)

log = logging.getLogger("visiontune.detect")


class DetectTrainConfig(BaseModel):
    """Schema of ``visiontune detect-train`` (and its ``--config`` YAML)."""

    model_config = ConfigDict(extra="forbid")
    model: str = Field(description="torchvision:<arch>, a composed-detector YAML, or a saved detector dir")
    compose: dict | None = None  # an inline composed-detector config (instead of model=YAML)
    data: str
    val_data: str | None = None
    train_split: str | None = "train"
    val_split: str | None = "val"
    val_fraction: float = Field(0.2, ge=0, lt=1)
    classes: list[str] | None = None  # keep only these classes (default: all of the dataset)
    pretrained: bool = True
    weights: str | None = None
    trainable_backbone_layers: int | None = None
    anchor_sizes: list | Literal["auto"] | None = None
    aspect_ratios: list | None = None
    min_size: int | None = None
    max_size: int | None = None
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(4, ge=1)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.01, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    momentum: float = 0.9
    warmup_steps: int = Field(50, ge=0)
    grad_clip: float | None = 10.0
    hflip: float = Field(0.5, ge=0, le=1)
    max_train_batches: int | float | None = None
    accelerator: str = "auto"
    num_workers: int = 0
    seed: int = 0
    trackers: list[str] = Field(default_factory=lambda: ["tensorboard"])
    eval_backend: str = "pycocotools"

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")


@dataclass
class DetectTrainResult:
    run_dir: Path
    model_dir: Path
    metrics: dict
    detector: Detector
    transfer: TransferReport | None


# ----------------------------------------------------------------------------- model setup
def _recipe_and_state(
    cfg: DetectTrainConfig, classes: list[str], trust_pickle: bool = False
) -> tuple[dict, dict | None, str]:
    """(new recipe, pretrained state dict to transfer or None, base id). Every file is read
    through ``visiontune.load`` / the trust gate; ``trust_pickle`` comes from the caller."""
    nc = len(classes) + 1
    src = cfg.model
    if cfg.compose is not None or src.endswith((".yaml", ".yml")):
        from .compose import parse_config

        c = parse_config(cfg.compose if cfg.compose is not None else src)
        upd: dict[str, Any] = {"classes": classes, "num_classes": None}
        if cfg.trainable_backbone_layers is not None:
            upd["backbone"] = c.backbone.model_copy(update={"trainable_layers": cfg.trainable_backbone_layers})
        if cfg.anchor_sizes is not None:
            upd["anchors"] = c.anchors.model_copy(
                update={"sizes": cfg.anchor_sizes, "aspect_ratios": cfg.aspect_ratios or c.anchors.aspect_ratios}
            )
        if cfg.min_size or cfg.max_size:
            upd["image"] = c.image.model_copy(
                update={k: v for k, v in (("min_size", cfg.min_size), ("max_size", cfg.max_size)) if v}
            )
        c = c.model_copy(update=upd)
        return {"builder": "composed", "config": c.model_dump(mode="json"), "load_backbone_weights": True}, None, src
    mid = parse_model_id(src)
    local = Path(mid.name)
    if mid.source == "file" and is_saved_model(local):
        base = Detector.load(local, trust_pickle=trust_pickle)
        recipe = copy.deepcopy(base.config) if base.config else None
        if recipe is None and base.card.source == "torchvision":  # a saved torchvision hub detector
            recipe = {"builder": "torchvision", "arch": parse_model_id(base.card.model_id).name, "num_classes": nc}
        if recipe is None:
            raise ConfigError(f"model={src!r}: this saved {base.card.source} detector has no recipe to fine-tune from")
        state = base.pretrained.model.state_dict()
        if recipe["builder"] == "composed":
            recipe["config"]["classes"], recipe["config"]["num_classes"] = classes, None
            if cfg.trainable_backbone_layers is not None:
                recipe["config"]["backbone"]["trainable_layers"] = cfg.trainable_backbone_layers
            recipe["load_backbone_weights"] = False
        else:
            recipe["num_classes"] = nc
        return recipe, state, src
    if mid.source != "torchvision":
        raise ConfigError(
            f"model={src!r}: fine-tuning takes torchvision:<arch>, a composed-detector YAML or a "
            "saved detector directory (Ultralytics models train with visiontune.detect.yolo.train)"
        )
    recipe = {"builder": "torchvision", "arch": mid.name, "num_classes": nc}
    for k in ("min_size", "max_size"):
        if getattr(cfg, k):
            recipe[k] = getattr(cfg, k)
    state = None
    if cfg.weights:
        state = load_state_dict_file(cfg.weights, trust_pickle=trust_pickle)
    elif cfg.pretrained:
        state = load(src, trust_pickle=trust_pickle).model.state_dict()
    if state is not None:
        recipe["frozen_bn"] = True
    return recipe, state, src


def adapt_detector(
    base: str | Detector,
    classes: list[str],
    *,
    anchor_sizes=None,
    aspect_ratios=None,
    trainable_backbone_layers: int | None = None,
    min_size: int | None = None,
    max_size: int | None = None,
    pretrained: bool = True,
    weights: str | None = None,
    trust_pickle: bool = False,
) -> tuple[Detector, TransferReport | None]:
    """A detector for ``classes`` made from ``base`` (a torchvision id, composed-detector YAML, saved
    detector directory or `Detector`): new box predictor, optional custom anchors, backbone stages
    frozen but the last ``trainable_backbone_layers``; every pretrained tensor whose shape still
    fits is kept, and the report lists the rest."""
    if not isinstance(base, Detector):
        cfg = DetectTrainConfig(
            model=str(base),
            data="-",
            pretrained=pretrained,
            weights=weights,
            trainable_backbone_layers=trainable_backbone_layers,
            min_size=min_size,
            max_size=max_size,
        )
        return adapt_detector_from_cfg(cfg, list(classes), anchor_sizes, aspect_ratios, trust_pickle)
    if base.config is None:
        raise ConfigError("adapt_detector needs a torchvision / composed detector (with a recipe)")
    recipe = copy.deepcopy(base.config)
    if recipe["builder"] == "composed":
        c = recipe["config"]
        c["classes"], c["num_classes"] = list(classes), None
        if anchor_sizes is not None:
            c["anchors"] = {"sizes": anchor_sizes, "aspect_ratios": aspect_ratios}
        if trainable_backbone_layers is not None:
            c["backbone"]["trainable_layers"] = trainable_backbone_layers
        for k, v in (("min_size", min_size), ("max_size", max_size)):
            if v:
                c["image"][k] = v
    else:
        recipe["num_classes"] = len(classes) + 1
        recipe.update({k: v for k, v in (("min_size", min_size), ("max_size", max_size)) if v})
        if anchor_sizes is not None:
            recipe["anchor_sizes"], recipe["aspect_ratios"] = anchor_sizes, aspect_ratios
    state = base.pretrained.model.state_dict()
    return _build_and_transfer(recipe, state, base.model_id, list(classes), trainable_backbone_layers, trust_pickle)


def _build_and_transfer(
    recipe: dict,
    state: dict | None,
    model_id: str,
    classes: list[str],
    trainable_backbone_layers: int | None,
    trust_pickle: bool = False,
) -> tuple[Detector, TransferReport | None]:
    model = build_from_recipe(recipe, trust_pickle=trust_pickle)
    report = transfer_weights(model, state) if state is not None else None
    if recipe["builder"] == "torchvision":
        freeze_backbone(model, trainable_backbone_layers)
    recipe.pop("load_backbone_weights", None)
    return Detector.from_torchvision(model, ["__background__", *classes], model_id, config=recipe), report


# ----------------------------------------------------------------------------- Lightning module
def _lightning_module():
    import lightning as L

    class DetectionModule(L.LightningModule):
        def __init__(self, det: Detector, cfg: DetectTrainConfig, val_ds: DetectionDataset | None, steps_total: int):
            super().__init__()
            self.model = det.model
            self.det = det
            self.cfg = cfg
            self.val_ds = val_ds
            self.steps_total = steps_total
            self._preds: list[Detections] = []
            self.best_state: dict | None = None
            self.best_table: str | None = None
            self.best_map = -1.0
            self.history: list[dict] = []

        def on_train_batch_start(self, batch, batch_idx):
            if not self.model.training:  # prediction / validation left it in eval mode
                self.model.train()
            # the heads sample anchors / proposals with torch's global RNG: seeding it from
            # (seed, step) makes every step replay identically after a resume
            from visiontune.adapt.data import _mix

            torch.manual_seed(_mix(self.cfg.seed, self.global_step))

        def training_step(self, batch, batch_idx):
            images, targets = batch
            targets = [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets]
            losses = self.model(list(images), targets)
            loss = sum(losses.values())
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"detection loss is {loss.item()} at step {self.global_step} "
                    f"({ {k: float(v) for k, v in losses.items()} }); lower lr="
                )
            bs = len(images)
            self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=bs)
            for k, v in losses.items():
                self.log(f"train/{k}", v, on_step=False, on_epoch=True, batch_size=bs)
            return loss

        def validation_step(self, batch, batch_idx):
            images, _ = batch
            raw = self.det.adapter.run(list(images), 0.001, 0.5, 100, None)
            for im, (b, s, lab, _m) in zip(images, raw):
                self._preds.append(Detections(b, s, lab, self.det.class_names, None, tuple(im.shape[-2:])))

        def on_validation_epoch_end(self):
            if self.val_ds is None or len(self._preds) != len(self.val_ds):
                self._preds = []
                return
            mapping = {i + 1: i for i in range(len(self.val_ds.classes))}
            res = coco_map(self.val_ds, self._preds, mapping, backend=self.cfg.eval_backend)
            self._preds = []
            m = {"val/mAP": res.metrics["AP"], "val/mAP50": res.metrics["AP50"], "val/mAP75": res.metrics["AP75"]}
            for k, v in m.items():
                self.log(k, v if v == v else 0.0, prog_bar=k == "val/mAP50")
            self.history.append({"epoch": self.current_epoch, **m})
            if res.metrics["AP"] > self.best_map:
                self.best_map = res.metrics["AP"]
                self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
                self.best_table = res.table()

        def on_save_checkpoint(self, checkpoint):
            checkpoint["visiontune_detect"] = {
                "best_map": self.best_map,
                "best_state": self.best_state,
                "best_table": self.best_table,
                "history": self.history,
            }

        def on_load_checkpoint(self, checkpoint):
            state = checkpoint.get("visiontune_detect") or {}
            self.best_map = state.get("best_map", -1.0)
            self.best_state = state.get("best_state")
            self.best_table = state.get("best_table")
            self.history = list(state.get("history", []))

        def configure_optimizers(self):
            params = [p for p in self.model.parameters() if p.requires_grad]
            if self.cfg.optimizer == "sgd":
                opt = torch.optim.SGD(
                    params, lr=self.cfg.lr, momentum=self.cfg.momentum, weight_decay=self.cfg.weight_decay
                )
            else:
                opt = torch.optim.AdamW(params, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
            warm, total = self.cfg.warmup_steps, max(1, self.steps_total)

            def factor(step):
                if step < warm:
                    return 0.001 + (1 - 0.001) * step / warm
                t = (step - warm) / max(1, total - warm)
                return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

            sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    return DetectionModule


def _restrict(ds: DetectionDataset, classes: list[str]) -> DetectionDataset:
    """Keep only ``classes`` (re-indexed in that order); images without them stay as negatives."""
    import numpy as np

    unknown = [c for c in classes if c not in ds.classes]
    if unknown:
        raise ConfigError(f"classes: {unknown} are not in the dataset ({', '.join(ds.classes[:10])}…)")
    remap = np.full(len(ds.classes), -1)
    for i, c in enumerate(classes):
        remap[ds.classes.index(c)] = i
    recs = []
    for r in ds.images:
        keep = remap[r.labels] >= 0
        recs.append(copy.copy(r))
        recs[-1].boxes, recs[-1].labels, recs[-1].crowd = r.boxes[keep], remap[r.labels[keep]], r.crowd[keep]
        recs[-1].refs = [x for x, k in zip(r.refs, keep) if k] if r.refs else []
    return DetectionDataset(recs, list(classes), ds.root, ds.source, ds.issues)


def load_train_val(cfg: DetectTrainConfig) -> tuple[DetectionDataset, DetectionDataset | None]:
    train = load_detection(cfg.data, split=cfg.train_split)
    val = None
    if cfg.val_data:
        val = load_detection(cfg.val_data, split=cfg.val_split)
    else:
        try:
            if cfg.val_split and not str(cfg.data).endswith(".json"):
                val = load_detection(cfg.data, split=cfg.val_split)
        except Exception:  # no such split in this dataset: carve one out below
            val = None
        if val is None and cfg.val_fraction > 0:
            train, val = train.split(cfg.val_fraction, seed=cfg.seed)
    if cfg.classes:
        train = _restrict(train, cfg.classes)
        val = _restrict(val, cfg.classes) if val is not None else None
    elif val is not None and val.classes != train.classes:
        raise ConfigError(f"train and val datasets have different classes: {train.classes[:5]}… vs {val.classes[:5]}…")
    return train, val


def train_detector(
    cfg: DetectTrainConfig | dict | str,
    run_root="runs",
    run_name: str | None = None,
    progress: bool = True,
    resume: str | Path | bool | None = None,
    callbacks: tuple = (),
    *,
    trust_pickle: bool = False,
) -> DetectTrainResult:
    """Fine-tune a detector; writes ``<run_root>/<name>/`` (run record, metrics, TensorBoard,
    ``checkpoints/last.ckpt`` after every epoch, ``model/`` saved detector) and returns the
    trained `Detector`.

    ``resume``: a run directory, its ``last.ckpt``, or True (the run called ``run_name``). An
    interrupted run continues in a new run ``<old>-resumed`` from its last completed epoch; data
    order and augmentation are functions of (seed, epoch) and the heads' sampling of (seed, step),
    so on CPU the result equals an uninterrupted run's."""
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    from visiontune.adapt.callbacks import AtomicCheckpointIO
    from visiontune.adapt.data import EpochSampler, SeededDataset
    from visiontune.adapt.engine import _adopt_checkpoints, _resume_target, resumed_run_name
    from visiontune.track import Run

    cfg = _parse(cfg)
    resume_dir, ckpt_path = _resume_target(resume, run_root, run_name)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    train_ds, val_ds = load_train_val(cfg)
    if not len(train_ds) or not train_ds.num_boxes:
        raise ConfigError(f"no training boxes in {cfg.data} ({train_ds.summary()})")
    classes = list(train_ds.classes)
    anchor_sizes, ratios, anchor_note = cfg.anchor_sizes, cfg.aspect_ratios, None
    if anchor_sizes == "auto":
        anchor_sizes, ratios, anchor_note = _auto_anchors(cfg, train_ds)
    det, report = adapt_detector_from_cfg(cfg, classes, anchor_sizes, ratios, trust_pickle)
    if report is not None:
        log.info("pretrained weights: %s", report.summary())
    tds = TorchDetectionDataset(train_ds, train=True, hflip=cfg.hflip)
    loader = torch.utils.data.DataLoader(
        SeededDataset(tds, cfg.seed),
        batch_size=cfg.batch_size,
        sampler=EpochSampler(len(tds), seed=cfg.seed, shuffle=True),
        collate_fn=collate,
        num_workers=cfg.num_workers,
    )
    val_loader = None
    if val_ds is not None and len(val_ds):
        val_loader = torch.utils.data.DataLoader(
            TorchDetectionDataset(val_ds), batch_size=cfg.batch_size, collate_fn=collate, num_workers=cfg.num_workers
        )
    n_batches = (
        len(loader)
        if cfg.max_train_batches is None
        else (
            min(len(loader), int(cfg.max_train_batches))
            if cfg.max_train_batches >= 1
            else max(1, int(len(loader) * cfg.max_train_batches))
        )
    )
    module = _lightning_module()(det, cfg, val_ds, n_batches * cfg.epochs)
    tags = {
        "task": "detection",
        "classes": classes,
        "transfer": report.to_dict() if report else None,
        "anchors": anchor_note,
    }
    root, name = (run_root, run_name) if resume_dir is None else resumed_run_name(resume_dir)
    if resume_dir is not None:
        tags["resumed_from"] = str(resume_dir)
    run = Run.start(
        root=root,
        name=name,
        config=cfg.to_dict(),
        model_id=cfg.model,
        seed=cfg.seed,
        trackers=tuple(cfg.trackers),
        command=list(sys.argv),
        kind="detect-train",
        monitor="val/mAP",
        mode="max",
        tags=tags,
    )
    with run:  # finished as completed, interrupted (Ctrl-C, SIGTERM) or failed
        ckpt_dir = run.dir / "checkpoints"
        if ckpt_path is not None:
            ckpt_path = _adopt_checkpoints(ckpt_path, ckpt_dir, trust_pickle=trust_pickle)
        last = ModelCheckpoint(
            dirpath=str(ckpt_dir),
            filename="last",
            monitor=None,
            save_top_k=1,
            every_n_epochs=1,
            auto_insert_metric_name=False,
            enable_version_counter=False,
        )
        with _quiet():
            trainer = L.Trainer(
                max_epochs=cfg.epochs,
                accelerator=cfg.accelerator,
                devices=1,
                logger=False,
                callbacks=[last, *run.lightning_callbacks(), *callbacks],
                plugins=[AtomicCheckpointIO(trust_pickle=trust_pickle)],
                use_distributed_sampler=False,
                enable_progress_bar=progress,
                enable_model_summary=False,
                num_sanity_val_steps=0,
                gradient_clip_val=cfg.grad_clip,
                limit_train_batches=cfg.max_train_batches,
                default_root_dir=str(run.dir),
                log_every_n_steps=1,
                deterministic=False,
            )
            t0 = time.time()
            trainer.fit(module, loader, val_loader, ckpt_path=str(ckpt_path) if ckpt_path else None)
            train_s = time.time() - t0
        if module.best_state is not None:
            det.model.load_state_dict(module.best_state)
        det.model.eval().cpu()
        metrics = {"train_seconds": round(train_s, 1), "epochs": cfg.epochs}
        if module.history:
            best = max(module.history, key=lambda h: h["val/mAP"])
            metrics.update({k: float(v) for k, v in best.items()})
        model_dir = det.save(
            run.dir / "model",
            metrics=metrics,
            training={"run": str(run.dir), "config": cfg.to_dict(), "transfer": report.to_dict() if report else None},
        )
        run.log_artifact(model_dir)
        if val_ds is not None and len(val_ds):
            first = val_ds.images[0]
            shown = det([first.path], score_threshold=0.3)[0]
            run.log_image("val/predictions", shown.draw(first.path), step=trainer.global_step)
            if module.best_table is not None:
                from visiontune._atomic import write_text

                write_text(run.dir / "per_class_ap.txt", module.best_table + "\n")
        # the wall time is in run.json already; the summary holds what a reproduction must match
        run.finish("completed", summary={k: v for k, v in metrics.items() if k != "train_seconds"})
    return DetectTrainResult(run.dir, model_dir, metrics, det, report)


def reproduce_runner(config: dict, *, root: Path, name: str) -> Path:
    """``visiontune runs reproduce`` for runs of kind ``detect-train``: the same config, a new run."""
    return train_detector(dict(config), run_root=root, run_name=name, progress=False).run_dir


def adapt_detector_from_cfg(cfg: DetectTrainConfig, classes, anchor_sizes, ratios, trust_pickle: bool = False):
    """The detector (and transfer report) a training config asks for; see `adapt_detector`."""
    c = cfg.model_copy(update={"anchor_sizes": anchor_sizes, "aspect_ratios": ratios})
    recipe, state, model_id = _recipe_and_state(c, list(classes), trust_pickle)
    if recipe["builder"] == "torchvision" and anchor_sizes is not None:
        recipe["anchor_sizes"], recipe["aspect_ratios"] = anchor_sizes, ratios
    return _build_and_transfer(recipe, state, model_id, list(classes), cfg.trainable_backbone_layers, trust_pickle)


def _auto_anchors(cfg: DetectTrainConfig, ds: DetectionDataset):
    from .anchors import suggest_anchors

    mid = parse_model_id(cfg.model) if cfg.compose is None and not cfg.model.endswith((".yaml", ".yml")) else None
    if mid is not None and mid.source == "torchvision":
        sizes, ratios = default_anchors(mid.name) or (None, None)
        if sizes is None:
            raise ConfigError(f"{cfg.model} has no anchors to tune (anchor-free or SSD)")
        levels, nr = len(sizes), len(ratios[0])
        probe = build_from_recipe(
            {
                "builder": "torchvision",
                "arch": mid.name,
                "num_classes": 2,
                **{k: getattr(cfg, k) for k in ("min_size", "max_size") if getattr(cfg, k)},
            }
        )
        mn, mx = probe.transform.min_size[0], probe.transform.max_size
    else:
        from .compose import parse_config

        c = parse_config(cfg.compose if cfg.compose is not None else cfg.model)
        probe = build_from_recipe({"builder": "composed", "config": c.model_dump(mode="json")})
        sizes, ratios = default_anchors(probe)
        levels, nr = len(sizes), len(ratios[0])
        mn, mx = c.image.min_size, c.image.max_size
    s = suggest_anchors(
        ds,
        num_levels=levels,
        num_ratios=nr,
        min_size=cfg.min_size or mn,
        max_size=cfg.max_size or mx,
        default_sizes=[x for lvl in sizes for x in lvl],
        default_ratios=ratios[0],
    )
    return s.sizes, s.aspect_ratios, s.to_dict()


def _parse(cfg) -> DetectTrainConfig:
    return load_config(DetectTrainConfig, cfg, section="detect_train", what="detect-train config")


class _quiet:
    def __enter__(self):
        self._loggers = [
            logging.getLogger(n)
            for n in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")
        ]
        self._levels = [lg.level for lg in self._loggers]
        for lg in self._loggers:
            lg.setLevel(logging.WARNING)
        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")
        return self

    def __exit__(self, *exc):
        self._w.__exit__(*exc)
        for lg, lv in zip(self._loggers, self._levels):
            lg.setLevel(lv)
        return False
