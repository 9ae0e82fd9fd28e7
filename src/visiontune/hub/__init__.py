"""download: one loader over every hub; a model and its preprocessing are one object."""

from visiontune.hub.card import Card
from visiontune.hub.checkpoint import LoadReport, load_into, load_state_dict_file, sha256_file
from visiontune.hub.ids import ModelId, parse_model_id
from visiontune.hub.loader import list_models, load
from visiontune.hub.preprocess import Preprocess
from visiontune.hub.pretrained import Prediction, Pretrained

__all__ = [
    "Card",
    "LoadReport",
    "ModelId",
    "Prediction",
    "Preprocess",
    "Pretrained",
    "list_models",
    "load",
    "load_into",
    "load_state_dict_file",
    "parse_model_id",
    "sha256_file",
]
