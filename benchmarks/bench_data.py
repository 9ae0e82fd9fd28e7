"""Cost of data versions and robust decoding, on the shared real assets.

    python benchmarks/bench_data.py [--assets ../shared/assets]

1. ``Splits.version`` (sha256 of every file + manifest) on hymenoptera (397 JPEGs, 47 MB) and
   tiny-imagenet val (10,100 JPEGs, via a CSV): cold (empty hash cache), warm (cache hit), against
   a baseline measured in the same run: a plain single-threaded ``hashlib.sha256`` loop over the
   same files. The OS file cache is warmed first so every variant reads from memory.
2. ``read_image`` against the usual ``Image.open(p).convert("RGB")`` on the same files.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import time
from pathlib import Path

from PIL import Image


def _plain_sha256(paths: list[str]) -> None:
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


def bench_version(name: str, source: Path, paths_of) -> None:
    from visiontune.data import load_classification

    with tempfile.TemporaryDirectory() as cache:
        os.environ["VISIONTUNE_CACHE_DIR"] = cache
        t = time.perf_counter()
        splits = load_classification(source, val_fraction=0.2)
        t_scan = time.perf_counter() - t
        paths = paths_of(splits)
        _plain_sha256(paths)  # warm the OS cache
        t_base = _best(lambda: _plain_sha256(paths), repeat=2)
        t = time.perf_counter()
        v_cold = splits.version
        t_cold = time.perf_counter() - t

        def warm() -> str:
            return load_classification(source, val_fraction=0.2).version

        t_warm = _best(warm, repeat=3)
        assert warm() == v_cold
        mb = sum(os.path.getsize(p) for p in paths) / 1e6
        print(f"{name}: {len(paths)} files, {mb:.1f} MB, version {v_cold}")
        print(f"  scan (list + labels, no hashing)      {t_scan:7.3f} s")
        print(f"  baseline plain sha256 loop            {t_base:7.3f} s  (1.00x)")
        print(f"  version, cold hash cache              {t_cold:7.3f} s  ({t_cold / t_base:.2f}x baseline)")
        print(f"  load + version, warm hash cache       {t_warm:7.3f} s  ({t_warm / t_base:.2f}x baseline)")


def bench_decode(paths: list[str]) -> None:
    from visiontune.data import read_image

    def plain() -> None:
        for p in paths:
            with Image.open(p) as im:
                im.convert("RGB")

    def ours() -> None:
        for p in paths:
            read_image(p)

    plain()
    t_plain, t_ours = _best(plain), _best(ours)
    print(
        f"decode {len(paths)} hymenoptera JPEGs: Image.open().convert('RGB') {t_plain:.3f} s (1.00x), "
        f"read_image {t_ours:.3f} s ({t_ours / t_plain:.2f}x)"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--assets", default=str(Path(__file__).resolve().parents[2] / "shared" / "assets"))
    args = ap.parse_args()
    assets = Path(args.assets)

    def all_paths(s):
        return [p for _, ds in s.items() for p in ds.paths]

    bench_version("hymenoptera", assets / "hymenoptera", all_paths)

    tiny = assets / "tiny-imagenet-200-val"
    rows = [line.split("\t")[:2] for line in (tiny / "val_annotations.txt").read_text().splitlines()]
    with tempfile.TemporaryDirectory() as tmp:
        csv_path = Path(tmp) / "tiny.csv"
        csv_path.write_text("path,label\n" + "".join(f"{tiny / 'images' / f},{w}\n" for f, w in rows))
        bench_version("tiny-imagenet val (CSV)", csv_path, all_paths)

    hym = sorted(str(p) for p in (assets / "hymenoptera" / "val").rglob("*.jpg"))[:100]
    bench_decode(hym)


if __name__ == "__main__":
    main()
