"""Measured model cards: parameters, FLOPs, latency, throughput and memory on this machine,
beside each model's published accuracy.

```python
from visiontune.bench import bench, BenchOptions
result = bench(["timm:resnet18", "torchvision:resnet50"], BenchOptions(threads=2), out_dir="bench")
result.files   # bench.csv, bench.md, bench.json, bench.png
```
"""

from visiontune.bench.measure import BenchOptions, Measurement, count_flops, measure
from visiontune.bench.run import BenchResult, BenchRow, bench, bench_one
from visiontune.hub.pretrained import count_params

__all__ = [
    "BenchOptions",
    "BenchResult",
    "BenchRow",
    "Measurement",
    "bench",
    "bench_one",
    "count_flops",
    "count_params",
    "measure",
]

from visiontune._verbs import make_verb  # noqa: E402 - `vt.bench(...)` calls the verb

make_verb(__name__)
