"""Typed errors. Every message says what went wrong *and* what to do next."""

from __future__ import annotations


class VisiontuneError(Exception):
    """Base class of every error visiontune raises on purpose."""


class ModelIdError(VisiontuneError, ValueError):
    """A model id does not parse or names an unknown source / architecture / weights tag."""


class WeightsNotCachedError(VisiontuneError, FileNotFoundError):
    """Pretrained weights are needed, are not in any local cache, and cannot be downloaded."""

    def __init__(self, message: str, *, filename: str | None = None, directory: str | None = None):
        super().__init__(message)
        # (not `filename`: OSError would then format the message as "[Errno None] ...")
        self.weights_file = filename
        self.cache_dir = directory


class OfflineError(VisiontuneError, ConnectionError):
    """The network was needed and is unreachable (or offline mode is on)."""


class UnsafeCheckpointError(VisiontuneError):
    """A checkpoint needs pickle to load and the user did not say they trust it."""


class CheckpointMismatchError(VisiontuneError):
    """A state dict does not fit the model (strict load), even after remapping."""

    def __init__(self, message: str, report=None):
        super().__init__(message)
        self.report = report


class MissingDependencyError(VisiontuneError, ImportError):
    """An optional integration is used but its package is not installed."""


class ImageDecodeError(VisiontuneError, OSError):
    """An image file cannot be read or decoded."""


class DatasetError(VisiontuneError, ValueError):
    """A dataset, labels file or annotation file is malformed; the message names the file and line."""


class ConfigError(VisiontuneError, ValueError):
    """A config file or option is invalid; the message names the key and the allowed values."""


class ExportError(VisiontuneError):
    """A model cannot be exported to the asked format; the message names the operator."""


def require(module: str, extra: str, purpose: str):
    """Import an optional dependency or raise MissingDependencyError naming the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:  # pragma: no cover - depends on environment
        raise MissingDependencyError(
            f"{purpose} needs the optional package '{module}' ({e}). Install it with: pip install 'visiontune[{extra}]'"
        ) from e
