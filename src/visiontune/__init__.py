"""visiontune: download, adapt, audit and track pretrained vision models."""

__version__ = "0.1.0"

from visiontune.hub import Card, Prediction, Preprocess, Pretrained, list_models, load  # noqa: E402

__all__ = ["Card", "Prediction", "Preprocess", "Pretrained", "__version__", "list_models", "load"]
