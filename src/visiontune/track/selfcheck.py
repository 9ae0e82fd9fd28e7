"""A small, real, deterministic training run (an MLP on seeded synthetic Gaussian clusters)
that exercises every part of a run record: per-step and per-epoch metrics, two param groups
with their own learning-rate schedules, a checkpoint, an image, a summary. ``visiontune runs selfcheck``
uses it to check a tracking setup (backends, URIs, folder permissions) in seconds, and it is
the runner of kind ``selfcheck`` for ``runs reproduce``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "samples": 512,
    "features": 16,
    "classes": 4,
    "hidden": 32,
    "val_fraction": 0.25,
    "epochs": 3,
    "batch_size": 32,
    "lr": 0.05,
    "head_lr": 0.1,
    "momentum": 0.9,
    "weight_decay": 1e-4,
    "cluster_std": 3.0,
    "strategy": "full",
    "trackers": ["tensorboard"],
}


def _data(cfg, torch):
    g = torch.Generator().manual_seed(int(cfg["seed"]))
    n, f, c = int(cfg["samples"]), int(cfg["features"]), int(cfg["classes"])
    centers = torch.randn(c, f, generator=g) * 2.0
    y = torch.randint(0, c, (n,), generator=g)
    x = centers[y] + float(cfg["cluster_std"]) * torch.randn(n, f, generator=g)
    n_val = int(round(n * float(cfg["val_fraction"])))
    return (x[n_val:], y[n_val:]), (x[:n_val], y[:n_val])


def run_selfcheck(
    config: dict[str, Any] | None = None,
    *,
    root: str | os.PathLike = "runs",
    name: str | None = None,
    trackers: Sequence[str] | None = None,
):
    """Train, log everything through a Run, and return the finished Run."""
    import torch
    from safetensors.torch import save as st_save
    from torch import nn

    from visiontune._atomic import write_bytes
    from visiontune.track.run import Run

    cfg = {**DEFAULTS, **(config or {})}
    if trackers is not None:
        cfg["trackers"] = list(trackers)
    was_det = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        torch.manual_seed(int(cfg["seed"]))
        (xt, yt), (xv, yv) = _data(cfg, torch)
        body = nn.Sequential(nn.Linear(xt.shape[1], int(cfg["hidden"])), nn.ReLU())
        head = nn.Linear(int(cfg["hidden"]), int(cfg["classes"]))
        model = nn.Sequential(body, head)
        opt = torch.optim.SGD(
            [
                {"params": body.parameters(), "lr": float(cfg["lr"]), "name": "body"},
                {"params": head.parameters(), "lr": float(cfg["head_lr"]), "name": "head"},
            ],
            momentum=float(cfg["momentum"]),
            weight_decay=float(cfg["weight_decay"]),
        )
        bs = int(cfg["batch_size"])
        steps_per_epoch = (len(xt) + bs - 1) // bs
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=[float(cfg["lr"]), float(cfg["head_lr"])], total_steps=steps_per_epoch * int(cfg["epochs"])
        )
        loss_fn = nn.CrossEntropyLoss()
        g = torch.Generator().manual_seed(int(cfg["seed"]) + 1)
        with Run.start(
            root=root,
            name=name,
            config=cfg,
            model_id="selfcheck:mlp",
            data_version=f"synthetic-gaussian-seed{cfg['seed']}-n{cfg['samples']}",
            seed=int(cfg["seed"]),
            trackers=cfg["trackers"],
            kind="selfcheck",
            deterministic=True,
            monitor="val/acc",
            mode="max",
        ) as run:
            step = 0
            best = -1.0
            for epoch in range(int(cfg["epochs"])):
                model.train()
                perm = torch.randperm(len(xt), generator=g)
                for i in range(0, len(xt), bs):
                    idx = perm[i : i + bs]
                    loss = loss_fn(model(xt[idx]), yt[idx])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    step += 1
                    run.log_metrics({"train/loss": loss}, step=step, epoch=epoch)
                    run.log_lrs(opt, step, epoch=epoch)  # the LRs this step used
                    sched.step()
                model.eval()
                with torch.no_grad():
                    logits = model(xv)
                    val_loss = loss_fn(logits, yv)
                    acc = (logits.argmax(1) == yv).float().mean()
                run.log_metrics({"val/loss": val_loss, "val/acc": acc, "epoch": epoch}, step=step, epoch=epoch)
                if float(acc) > best:
                    best = float(acc)
                    ck = Path(run.dir) / "checkpoints" / "best.safetensors"
                    write_bytes(
                        ck,
                        st_save(
                            {k: v.contiguous() for k, v in model.state_dict().items()},
                            metadata={"epoch": str(epoch), "val_acc": repr(best)},
                        ),
                    )
                    if not any(c["kind"] == "best" for c in run.record["checkpoints"]):
                        run.log_checkpoint(ck, kind="best", score=best, step=step)
            # confusion matrix as an image: rows = true class, columns = predicted
            c = int(cfg["classes"])
            cm = torch.zeros(c, c)
            for t, p in zip(yv.tolist(), logits.argmax(1).tolist()):
                cm[t, p] += 1
            img = (cm / cm.sum(1, keepdim=True).clamp_min(1)).repeat_interleave(16, 0).repeat_interleave(16, 1)
            run.log_image("val/confusion_matrix", img.unsqueeze(0), step)
            run.finish(
                "completed",
                summary={"val/acc": float(acc), "val/loss": float(val_loss), "best/val_acc": best, "steps": step},
            )
        return run
    finally:
        torch.use_deterministic_algorithms(was_det)
