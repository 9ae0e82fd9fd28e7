"""Lightning integration: a callback that records a fit in a :class:`~visiontune.track.Run`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    out = {}
    for k, v in metrics.items():
        try:
            if hasattr(v, "numel") and v.numel() != 1:
                continue
            out[k] = float(v.item() if hasattr(v, "item") else v)
        except (TypeError, ValueError):
            continue
    return out


def _is_train(key: str) -> bool:
    head = key.split("/")[0].split("_")[0].lower()
    return head in ("train", "training") or key == "loss"


class RunCallback(Callback):
    """Logs to a Run from inside ``Trainer.fit``:

    * every ``log_every_n_steps`` optimizer steps: train metrics of ``trainer.callback_metrics``
      (``*_step`` values and ``train*`` keys; the ``_step`` suffix is dropped), ``train/loss``
      from the step output when the module logs no loss itself, and the LR of every param group
      of every optimizer (``lr/group0``, or ``lr/opt1/group0`` with several optimizers);
    * at the end of each validation (not the sanity check): the validation metrics;
    * at the end of each train epoch: the train epoch aggregates (``train*_epoch``, and
      ``train*`` keys logged per epoch only) and ``epoch``;
    * checkpoint files of every ModelCheckpoint into run.json (best / last / top-k);
    * an exception in fit marks the run ``failed`` (traceback saved), Ctrl+C ``interrupted``.

    The run is not finished on success: the caller finishes it with its summary.
    """

    def __init__(self, run, log_every_n_steps: int = 1):
        self.run = run
        self.log_every_n_steps = max(1, int(log_every_n_steps))
        # metrics logged once per epoch: Lightning keeps them in callback_metrics, but they are not
        # step values and must not be written again at every step (one curve, one meaning)
        self._epoch_keys: set[str] = set()

    # -- steps
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        step = trainer.global_step
        if step % self.log_every_n_steps and not trainer.is_last_batch:
            return
        cm = _scalars(dict(trainer.callback_metrics))
        metrics = {}
        for k, v in cm.items():
            if k.endswith("_epoch"):
                continue
            if k.endswith("_step"):
                if _is_train(k[: -len("_step")]):
                    metrics[k[: -len("_step")]] = v
            elif _is_train(k) and f"{k}_epoch" not in cm and k not in self._epoch_keys:
                metrics[k] = v  # logged with on_step only
        if not any("loss" in k for k in metrics):
            loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
            if loss is not None and hasattr(loss, "item"):
                metrics["train/loss_step"] = float(loss.detach().item())  # the epoch mean owns train/loss
        metrics.update(self._lrs(trainer))
        self.run.log_metrics(metrics, step=step, epoch=trainer.current_epoch)

    @staticmethod
    def _lrs(trainer) -> dict[str, float]:
        out = {}
        opts = trainer.optimizers
        for j, opt in enumerate(opts):
            prefix = "lr" if len(opts) == 1 else f"lr/opt{j}"
            for i, g in enumerate(opt.param_groups):
                label = str(g["name"]).replace("/", "_") if g.get("name") else f"group{i}"
                out[f"{prefix}/{label}"] = float(g["lr"])
        return out

    # -- epochs
    def on_validation_end(self, trainer, pl_module):
        if trainer.sanity_checking:
            return
        cm = _scalars(dict(trainer.callback_metrics))
        metrics = {}
        for k, v in cm.items():
            base = k[: -len("_epoch")] if k.endswith("_epoch") else k
            if k.endswith("_step") or _is_train(base):
                continue
            metrics[base] = v
        if metrics:
            self.run.log_metrics(metrics, step=trainer.global_step, epoch=trainer.current_epoch)
        self._record_checkpoints(trainer)

    def on_train_epoch_end(self, trainer, pl_module):
        cm = _scalars(dict(trainer.callback_metrics))
        metrics = {}
        for k, v in cm.items():
            if k.endswith("_epoch") and _is_train(k[: -len("_epoch")]):
                metrics[k] = v  # Lightning's name for the epoch mean of a per-step metric
            elif _is_train(k) and not k.endswith("_step") and f"{k}_step" not in cm:
                metrics[k] = v  # logged with on_epoch only
                self._epoch_keys.add(k)
        metrics["epoch"] = trainer.current_epoch
        self.run.log_metrics(metrics, step=trainer.global_step, epoch=trainer.current_epoch)
        self._record_checkpoints(trainer)

    def on_fit_end(self, trainer, pl_module):
        self._record_checkpoints(trainer)
        self.run.flush()

    # -- checkpoints and failures
    def _record_checkpoints(self, trainer) -> None:
        ckpts: list[dict[str, Any]] = []
        seen: set[str] = set()
        for cb in trainer.checkpoint_callbacks:
            best = getattr(cb, "best_model_path", "") or ""
            # a callback that monitors nothing keeps the latest epoch: its "best" file is the last one
            top = "best" if getattr(cb, "monitor", None) is not None else "last"
            for path, score in sorted(getattr(cb, "best_k_models", {}).items(), key=lambda kv: str(kv[0])):
                if path and path not in seen and Path(path).exists():
                    seen.add(path)
                    ckpts.append(
                        {
                            "path": self.run._rel(Path(path)),
                            "kind": top if path == best else "top_k",
                            "score": float(score) if score is not None else None,
                            "monitor": getattr(cb, "monitor", None),
                        }
                    )
            if best and best not in seen and Path(best).exists():
                seen.add(best)
                score = getattr(cb, "best_model_score", None)
                ckpts.append(
                    {
                        "path": self.run._rel(Path(best)),
                        "kind": top,
                        "score": float(score) if score is not None else None,
                        "monitor": getattr(cb, "monitor", None),
                    }
                )
            last = getattr(cb, "last_model_path", "") or ""
            if last and last not in seen and Path(last).exists():
                seen.add(last)
                ckpts.append({"path": self.run._rel(Path(last)), "kind": "last", "score": None, "monitor": None})
        if ckpts != self.run.record["checkpoints"]:
            self.run.set_checkpoints(ckpts)

    def on_exception(self, trainer, pl_module, exception):
        self._record_checkpoints(trainer)
        if isinstance(exception, KeyboardInterrupt):
            self.run.finish("interrupted", reason=self.run._interrupt_reason or "KeyboardInterrupt")
        else:
            self.run.finish("failed", error=exception)
