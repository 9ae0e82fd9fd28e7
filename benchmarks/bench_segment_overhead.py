"""What does visiontune's segmentation training cost over a bare PyTorch loop, and does evaluation
memory stay flat as the split grows? (visiontune.segment, CPU, a few minutes)

Throughput: the same composed segmenter (torchvision MobileNetV2 + smp FPN), data (CamVid train,
joint transforms), loss (CE + 0.5 Dice, ignore 11), optimiser groups and schedule, trained for
``--steps`` steps by a bare loop and by ``train_segmenter`` (Lightning, run record, per-step
logging, checkpoints excluded from the timed span), alternated ``--reps`` times in one process;
the ratio of medians is printed. Time is measured from the first batch's step to the last step's
end in both (the data loading between steps included).

Memory: ``evaluate_segmenter`` in fresh subprocesses over N and 8N CamVid val images (the list
repeated), peak RSS of each; a streaming evaluation keeps one confusion matrix, so the peak does
not grow with N.

    nice -n 10 python benchmarks/bench_segment_overhead.py [--steps 10] [--reps 4] [--size 120 160]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
REPO = Path(__file__).resolve().parents[1]
ASSETS = Path(os.environ.get("VISIONTUNE_ASSETS", REPO.parent / "shared" / "assets"))
sys.path.insert(0, str(REPO / "src"))

SEGMENTER = {
    "encoder": {"source": "torchvision", "name": "mobilenet_v2"},
    "decoder": {"type": "fpn", "kwargs": {"decoder_pyramid_channels": 128, "decoder_segmentation_channels": 64}},
    "num_classes": 11,
}


def bare_loop(cfg, train, steps: int, batch: int) -> tuple[float, float]:
    """The same work as train_segmenter, written out; (wall, CPU) seconds from the first step to
    the last."""
    import torch

    from visiontune.adapt.groups import param_groups
    from visiontune.engine import warmup_cosine
    from visiontune.segment.compose import composed_segmenter
    from visiontune.segment.module import dice_loss, segmenter_groups
    from visiontune.segment.transforms import SegTorchDataset, joint_transform

    torch.manual_seed(0)
    p = composed_segmenter(cfg)
    pre = p.preprocess
    tf = joint_transform(pre.resize, pre.mean, pre.std, train=True, augment="flip", ignore_index=11)
    loader = torch.utils.data.DataLoader(SegTorchDataset(train, tf), batch_size=batch, shuffle=True)
    groups = param_groups(p.model, segmenter_groups(p.model), 3e-4, 1.0, head_lr=1e-3, weight_decay=1e-4)
    opt = torch.optim.AdamW(groups, lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(steps, 20))
    p.model.train()
    t0 = None
    for k, (x, y) in enumerate(loader):
        if k == steps:
            break
        if t0 is None:
            t0, c0 = time.perf_counter(), time.thread_time()
        logits = p.model(x)
        loss = torch.nn.functional.cross_entropy(logits, y, ignore_index=11) + 0.5 * dice_loss(logits, y, 11)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        loss.item()  # visiontune logs the loss every step
    return time.perf_counter() - t0, time.thread_time() - c0


def visiontune_run(cfg, data: Path, steps: int, batch: int, root: str) -> tuple[float, float]:
    from lightning.pytorch.callbacks import Callback

    from visiontune.segment.train import train_segmenter

    class Span(Callback):
        t0: float | None = None
        t1 = c0 = c1 = 0.0

        def on_train_batch_start(self, trainer, module, b, i):
            if self.t0 is None:
                self.t0, self.c0 = time.perf_counter(), time.thread_time()

        def on_train_batch_end(self, trainer, module, out, b, i):
            self.t1, self.c1 = time.perf_counter(), time.thread_time()

    span = Span()
    train_segmenter(
        {
            "segmenter": cfg,
            "data": str(data),
            "ignore_index": 11,
            "val_split": None,
            "val_fraction": 0,
            "epochs": 1,
            "batch_size": batch,
            "max_train_batches": steps,
            "trackers": [],
            "warmup_steps": 20,
            "class_weights": "none",  # the bare loop's loss is unweighted: the same work
        },
        run_root=root,
        progress=False,
        callbacks=(span,),
    )
    return span.t1 - span.t0, span.c1 - span.c0


def eval_peak(n: int, size: tuple[int, int]) -> dict:
    """Peak RSS (MiB) of a fresh process evaluating n val images (the 101 repeated)."""
    code = f"""
import resource, sys, json, time
sys.path.insert(0, {str(REPO / "src")!r})
import torch; torch.set_num_threads(1)
from visiontune.segment.compose import composed_segmenter
from visiontune.segment.evaluate import evaluate_segmenter
from visiontune.segment.formats import load_mask_folder
ds = load_mask_folder({str(ASSETS / "camvid")!r}, "val", ignore_index=11)
ds = ds.subset([i % len(ds) for i in range({n})])
p = composed_segmenter({json.dumps({**SEGMENTER, "image": {"size": list(size)}})})
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.time()
r = evaluate_segmenter(p, ds, progress=False)
print(json.dumps({{"images": {n}, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "before_mib": base / 1024, "seconds": time.time() - t, "mIoU": r.metrics["mIoU"]}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--reps", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--size", type=int, nargs=2, default=[120, 160])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--eval-images", type=int, default=50)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument(
        "--no-gc-freeze", action="store_true", help="ablation: train without the engine's frozen pre-training heap"
    )
    args = ap.parse_args()
    import torch

    if args.no_gc_freeze:
        import contextlib

        import visiontune.engine.trainer as engine_trainer

        engine_trainer.frozen_heap = contextlib.nullcontext  # type: ignore[assignment]

    torch.set_num_threads(args.threads)
    from visiontune.segment.formats import load_mask_folder

    data = ASSETS / "camvid"
    train = load_mask_folder(data, "train", ignore_index=11)
    cfg = {**SEGMENTER, "image": {"size": args.size}}
    load0 = os.getloadavg()[0]
    bare, vt = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.reps):
            if r % 2:  # alternate the order: neither arm always runs first (warm caches)
                vt.append(visiontune_run(cfg, data, args.steps, args.batch_size, tmp))
                bare.append(bare_loop(cfg, train, args.steps, args.batch_size))
            else:
                bare.append(bare_loop(cfg, train, args.steps, args.batch_size))
                vt.append(visiontune_run(cfg, data, args.steps, args.batch_size, tmp))
            print(f"rep {r + 1}: bare {bare[-1][0]:.1f} s wall / {bare[-1][1]:.1f} s CPU, visiontune "
                  f"{vt[-1][0]:.1f} s wall / {vt[-1][1]:.1f} s CPU ({args.steps} steps)", flush=True)  # fmt: skip
    ratio = statistics.median(b[1] for b in bare) / statistics.median(v[1] for v in vt)
    wall = statistics.median(b[0] for b in bare) / statistics.median(v[0] for v in vt)
    # each rep's two arms ran back to back, under the same machine conditions: the median of the
    # per-rep ratios cancels the drift that moves both arms (a shared VM's identical work varies
    # by +-6 % from rep to rep), which the ratio of the two medians does not
    paired = statistics.median(b[1] / v[1] for b, v in zip(bare, vt))
    print(f"\ntraining throughput, visiontune / bare loop: {ratio:.3f} by CPU time of the training thread, "
          f"{wall:.3f} by wall time (medians of {args.reps}; {args.steps} steps of batch {args.batch_size} at "
          f"{args.size[0]}x{args.size[1]}, 1 thread; on a loaded machine the CPU-time ratio is the stable one)")  # fmt: skip
    print(f"median of the {args.reps} per-rep CPU-time ratios (each rep's arms back to back): {paired:.3f}; "
          f"per rep: {', '.join(f'{b[1] / v[1]:.3f}' for b, v in zip(bare, vt))}")  # fmt: skip
    small = eval_peak(args.eval_images, tuple(args.size))
    large = eval_peak(8 * args.eval_images, tuple(args.size))
    for row in (small, large):
        print(f"evaluate {row['images']:4d} images: peak RSS {row['peak_mib']:.0f} MiB "
              f"(after setup {row['before_mib']:.0f} MiB), {row['seconds']:.0f} s")  # fmt: skip
    growth = large["peak_mib"] - small["peak_mib"]
    print(f"peak RSS growth for 8x the images: {growth:+.0f} MiB; load average {load0:.1f} -> {os.getloadavg()[0]:.1f}")
    if args.out:
        doc = {
            "bare_s": bare,
            "visiontune_s": vt,
            "ratio_cpu": ratio,
            "ratio_wall": wall,
            "ratio_paired": paired,
            "eval": [small, large],
        }
        args.out.write_text(json.dumps(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
