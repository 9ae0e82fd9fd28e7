"""What an audit reads from a training run directory: its config.yaml (data, split, cache)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from visiontune.audit._inputs import ModelSource
from visiontune.errors import ConfigError


def run_config(src: ModelSource) -> dict:
    """The training section of the run's config.yaml ({} when there is none)."""
    import yaml

    path = src.run_dir / "config.yaml" if src.run_dir else None
    if path is None or not path.is_file():
        return {}
    try:
        cfg = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML ({e})") from e
    if isinstance(cfg, dict) and isinstance(cfg.get("train"), dict):
        cfg = cfg["train"]
    return cfg if isinstance(cfg, dict) else {}


def data_from_run(src: ModelSource) -> str:
    """The data source a run was trained on."""
    cfg = run_config(src)
    if not cfg.get("data"):
        raise ConfigError("no data given and no run config.yaml with a 'data' key: pass data=... (--data DIR)")
    return str(cfg["data"])


def run_split_options(src: ModelSource, data: Any) -> dict:
    """Audit the run's data exactly as it was split for training (val fraction, seed, root)."""
    cfg = run_config(src)
    if not cfg or not isinstance(data, (str, Path)) or str(data) != str(cfg.get("data")):
        return {}
    return {
        "val_fraction": float(cfg.get("val_fraction", 0.2)),
        "seed": int(cfg.get("split_seed", 0)),
        "root": cfg.get("data_root"),
    }


def run_cache_dir(src: ModelSource) -> str | None:
    """The feature-store root the run used (its ``cache_dir``), so its features are reused."""
    cfg = run_config(src)
    if cfg.get("feature_cache", "disk") == "disk" and cfg.get("cache_dir"):
        return str(cfg["cache_dir"])
    return None
