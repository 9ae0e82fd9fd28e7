"""Cost of ``DetectionDataset.version`` on real data, against a baseline measured in the same run.

    python benchmarks/bench_detect_version.py [--assets ../shared/assets]

tiny-imagenet val (10,100 64x64 JPEGs, one box each, `val_annotations.txt`) is written as a COCO
JSON and loaded with ``load_coco``; then the version is computed with an empty hash cache (cold)
and again with a fresh load (warm), against a plain single-threaded ``hashlib.sha256`` loop over
the same files. The OS file cache is warmed first, so every variant reads from memory. A subset
of 1,010 images shows how the cost grows with the number of images.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path


def _plain_sha256(paths: list[Path]) -> None:
    for p in paths:
        with open(p, "rb") as f:
            hashlib.sha256(f.read()).hexdigest()


def _best(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _coco(root: Path, out: Path, limit: int | None) -> Path:
    rows = [line.split("\t") for line in (root / "val_annotations.txt").read_text().splitlines()][:limit]
    wnids = sorted({r[1] for r in rows})
    images, anns = [], []
    for i, (fname, wnid, *box) in enumerate(rows, 1):
        x0, y0, x1, y1 = map(float, box[:4])
        images.append({"id": i, "file_name": f"images/{fname}", "width": 64, "height": 64})
        anns.append({"id": i, "image_id": i, "category_id": wnids.index(wnid) + 1, "bbox": [x0, y0, x1 - x0, y1 - y0]})
    cats = [{"id": k + 1, "name": w} for k, w in enumerate(wnids)]
    out.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return out


def bench(root: Path, limit: int | None) -> None:
    from visiontune.detect import load_coco

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["VISIONTUNE_CACHE_DIR"] = str(Path(tmp) / "cache")
        ann = _coco(root, Path(tmp) / "ann.json", limit)
        t = time.perf_counter()
        ds = load_coco(ann, image_root=root, strict=False)
        t_load = time.perf_counter() - t
        paths = [r.path for r in ds.images]
        _plain_sha256(paths)  # warm the OS cache
        t_base = _best(lambda: _plain_sha256(paths), repeat=2)
        t = time.perf_counter()
        v_cold = ds.version
        t_cold = time.perf_counter() - t

        def warm() -> str:
            return load_coco(ann, image_root=root, strict=False).version

        t_warm = _best(warm)
        assert warm() == v_cold
        t_warm_version = _best(lambda: ds.version)
        mb = sum(os.path.getsize(p) for p in paths) / 1e6
        print(f"{len(ds)} images, {ds.num_boxes} boxes, {mb:.1f} MB, version {v_cold}")
        print(f"  load_coco (no hashing)                {t_load:7.3f} s")
        print(f"  baseline plain sha256 loop            {t_base:7.3f} s  (1.00x)")
        print(f"  version, cold hash cache              {t_cold:7.3f} s  ({t_cold / t_base:.2f}x baseline)")
        print(f"  version, warm hash cache              {t_warm_version:7.3f} s  ({t_warm_version / t_base:.2f}x)")
        print(f"  load + version, warm hash cache       {t_warm:7.3f} s  ({t_warm / t_base:.2f}x baseline)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--assets", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "assets")
    args = ap.parse_args()
    root = args.assets / "tiny-imagenet-200-val"
    print(f"load average {os.getloadavg()[0]:.2f}")
    for limit in (1010, None):
        bench(root, limit)


if __name__ == "__main__":
    main()
