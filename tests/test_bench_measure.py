"""visiontune.bench.measure: FLOPs, memory and timing on tiny models with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from visiontune.bench import BenchOptions, count_flops, count_params, measure
from visiontune.bench._resolve import published_top1
from visiontune.bench.measure import ActivationMemory, peak_memory, percentile
from visiontune.errors import ConfigError


def _tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5)
    ).eval()


def test_flops_match_the_analytic_count():
    gflops, note = count_flops(_tiny(), torch.randn(2, 3, 16, 16))
    conv = 2 * 8 * 3 * 3 * 3 * 16 * 16  # 2 * Cout * Cin * k * k * H * W
    linear = 2 * 8 * 5
    assert note is None
    assert gflops * 1e9 == pytest.approx(conv + linear)  # per image, batch of 2 divided out


def test_params_counted():
    assert count_params(_tiny()) == (8 * 3 * 9 + 8) + (8 * 5 + 5)


def test_activation_memory_tracks_the_largest_live_set():
    # conv output (1x8x16x16 fp32 = 8 KiB) and relu output (another 8 KiB) are alive together;
    # the pooled / linear outputs are tiny and come after the conv output was freed.
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1)).eval()
    mib, method = peak_memory(model, torch.randn(1, 3, 16, 16), torch.device("cpu"))
    assert "cpu activations" in method
    assert mib * 2**20 == 2 * 8 * 16 * 16 * 4


def test_activation_memory_counts_views_once_and_releases():
    tracker = ActivationMemory()
    with torch.inference_mode(), tracker:
        a = torch.ones(1024)  # 4 KiB
        b = a.view(32, 32)  # a view: same storage
        del a, b
        c = torch.ones(2048)  # 8 KiB after the first was freed
    assert tracker.peak == 8192
    assert tracker.current == 8192 and c.numel() == 2048


def test_percentile_matches_numpy():
    vals = [5.0, 1.0, 3.0, 2.0, 4.0, 10.0]
    for q in (0, 50, 95, 100):
        assert percentile(vals, q) == pytest.approx(np.percentile(vals, q))


def test_measure_reports_consistent_numbers():
    m = measure(_tiny(), (3, 16, 16), BenchOptions(runs=5, warmup=1, batch_size=4, throughput_runs=2, threads=1))
    assert m.params == count_params(_tiny())
    assert m.latency_runs == 5 and m.batch_size == 4
    assert 0 < m.latency_median_ms <= m.latency_p95_ms
    assert m.throughput_ips > 0
    assert m.peak_memory_mib > 0


def test_measure_channels_last_and_bfloat16():
    m = measure(
        _tiny(),
        (3, 16, 16),
        BenchOptions(runs=2, warmup=0, batch_size=2, throughput_runs=1, channels_last=True, dtype="bfloat16"),
    )
    assert m.gflops == pytest.approx(count_flops(_tiny(), torch.randn(1, 3, 16, 16))[0])
    assert m.peak_memory_mib > 0


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"dtype": "int4"}, "dtype"),
        ({"device": "tpu"}, "device"),
        ({"runs": 0}, "runs"),
        ({"threads": 0}, "threads"),
        ({"dtype": "float16"}, "float16"),
    ],
)
def test_bad_options_are_config_errors(kwargs, key):
    with pytest.raises(ConfigError, match=key):
        BenchOptions(**kwargs)


def test_cuda_without_gpu_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        BenchOptions(device="cuda")


class _Card:
    def __init__(self, metrics, extra=None):
        self.metrics, self.extra = metrics, extra or {}


def test_published_top1_reads_torchvision_and_fraction_forms():
    assert published_top1(_Card({"ImageNet-1K/acc@1": 80.858, "ImageNet-1K/acc@5": 95.4})) == (
        80.858,
        "ImageNet-1K/acc@1",
    )
    assert published_top1(_Card({"top1": 0.7712})) == (pytest.approx(77.12), "top1")
    assert published_top1(_Card({"val/acc": 0.9})) == (None, None)
    assert published_top1(_Card({}, {"published_metrics": {"top1": 71.0}})) == (71.0, "top1")
