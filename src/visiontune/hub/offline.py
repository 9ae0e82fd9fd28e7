"""Offline-first helpers: where the caches are, and a fast answer to "can we download?"."""

from __future__ import annotations

import os
import socket
import threading
import time
from functools import lru_cache
from pathlib import Path

TRUTHY = {"1", "true", "yes", "on"}
PROBE_TIMEOUT_S = 1.5


def offline_forced() -> bool:
    """True when the user asked for offline mode (VISIONTUNE_OFFLINE, HF_HUB_OFFLINE)."""
    return any(
        os.environ.get(v, "").strip().lower() in TRUTHY
        for v in ("VISIONTUNE_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


@lru_cache(maxsize=32)
def _probe(host: str, port: int, bucket: int) -> bool:  # bucket: re-probe once a minute
    result: list[bool] = []

    def go() -> None:
        try:
            with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
                result.append(True)
        except OSError:
            result.append(False)

    t = threading.Thread(target=go, daemon=True)  # DNS lookups ignore socket timeouts: bound them
    t.start()
    t.join(PROBE_TIMEOUT_S)
    return bool(result and result[0])


def can_reach(host: str, port: int = 443) -> bool:
    """Whether a TCP connection to host:port opens within ~1.5 s (cached for a minute)."""
    if offline_forced():
        return False
    return _probe(host, port, int(time.time() // 60))


def torch_home() -> Path:
    """torch.hub's home folder (``TORCH_HOME``, else the parent of torch.hub's directory)."""
    import torch.hub

    return (
        Path(torch.hub.get_dir()).parent
        if os.environ.get("TORCH_HUB")
        else Path(os.environ.get("TORCH_HOME") or Path(torch.hub.get_dir()).parent)
    )


def torch_checkpoints_dir() -> Path:
    """Where torch.hub / torchvision keep downloaded checkpoints."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache (``HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "huggingface"
    )
    return Path(home) / "hub"
