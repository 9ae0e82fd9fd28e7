"""Environment capture for run records: fast (no subprocess pip freeze), never raises."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

# Distribution names whose versions decide whether a run reproduces.
KEY_PACKAGES = (
    "visiontune",
    "torch",
    "torchvision",
    "timm",
    "lightning",
    "torchmetrics",
    "numpy",
    "pillow",
    "transformers",
    "huggingface-hub",
    "safetensors",
    "ultralytics",
    "scikit-learn",
    "pandas",
    "tensorboard",
    "mlflow",
    "wandb",
)


def package_versions(names=KEY_PACKAGES) -> dict[str, str | None]:
    """Installed version per distribution name (None when not installed)."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_info(cwd: str | os.PathLike | None = None) -> dict[str, Any] | None:
    """Commit, branch and dirty flag of the git repository containing ``cwd`` (None outside one
    or when git is missing). Two quick `git` calls with a timeout."""
    cwd = Path(cwd or os.getcwd())
    try:
        top = subprocess.run(
            ["git", "rev-parse", "--show-toplevel", "HEAD", "--abbrev-ref", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = top.stdout.split()
    if top.returncode != 0 or len(lines) < 3:
        # a repository without commits yet still has a toplevel
        if lines and Path(lines[0]).is_dir():
            return {"root": lines[0], "commit": None, "branch": None, "dirty": None}
        return None
    root, commit, branch = lines[0], lines[1], lines[2]
    try:
        st = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
        )
        dirty = bool(st.stdout.strip()) if st.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        dirty = None
    return {"root": root, "commit": commit, "branch": None if branch == "HEAD" else branch, "dirty": dirty}


def device_info() -> dict[str, Any]:
    """Accelerator description; imports torch only if it is already imported or importable."""
    info: dict[str, Any] = {"device": "cpu", "cuda": None, "gpus": []}
    try:
        import torch
    except ImportError:
        return info
    info["torch_threads"] = torch.get_num_threads()
    info["cuda"] = torch.version.cuda
    try:
        if torch.cuda.is_available():
            info["device"] = "cuda"
            info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            info["cudnn"] = torch.backends.cudnn.version()
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            info["device"] = "mps"
    except Exception:  # noqa: BLE001 - a broken driver must not stop a run from being recorded
        pass
    return info


def deterministic_enabled() -> bool:
    """True when torch's deterministic algorithms are switched on."""
    try:
        import torch

        return bool(torch.are_deterministic_algorithms_enabled())
    except ImportError:
        return False


def capture_environment(cwd: str | os.PathLike | None = None) -> dict[str, Any]:
    """Everything about this process that could change a run's numbers."""
    return {
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "hostname": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "packages": package_versions(),
        **device_info(),
        "env_vars": {
            k: os.environ[k]
            for k in ("CUDA_VISIBLE_DEVICES", "CUBLAS_WORKSPACE_CONFIG", "OMP_NUM_THREADS", "PYTHONHASHSEED")
            if k in os.environ
        },
    }


# Keys compared by `reproduce`; hostname / executable / paths are expected to change.
COMPARED_ENV_KEYS = (
    "python",
    "platform",
    "machine",
    "cpu_count",
    "device",
    "cuda",
    "gpus",
    "torch_threads",
    "env_vars",
)


def environment_differences(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Human-readable lines, one per difference that may change the numbers."""
    diffs: list[str] = []
    for key in COMPARED_ENV_KEYS:
        a, b = recorded.get(key), current.get(key)
        if a != b and not (a is None and key not in recorded):
            diffs.append(f"{key}: recorded {a!r}, now {b!r}")
    rp, cp = recorded.get("packages") or {}, current.get("packages") or {}
    for name in sorted(set(rp) | set(cp)):
        if rp.get(name) != cp.get(name):
            diffs.append(f"package {name}: recorded {rp.get(name)!r}, now {cp.get(name)!r}")
    return diffs
