"""download: one loader over every hub and task; a model and its preprocessing are one object."""

from visiontune.hub.card import Card
from visiontune.hub.checkpoint import LoadReport, load_into, load_state_dict_file, sha256_file
from visiontune.hub.classification import MULTILABEL_TASK, MultiLabelPrediction, classify_multilabel
from visiontune.hub.ids import ModelId, parse_model_id
from visiontune.hub.loader import describe, list_models, load
from visiontune.hub.preprocess import Preprocess
from visiontune.hub.pretrained import Pretrained, register_task
from visiontune.hub.registry import Source, build_architecture, register_architecture, register_source
from visiontune.results import Detections, Prediction

register_task(MULTILABEL_TASK, classify_multilabel)

__all__ = [
    "Card",
    "Detections",
    "LoadReport",
    "MULTILABEL_TASK",
    "ModelId",
    "MultiLabelPrediction",
    "Prediction",
    "Preprocess",
    "Pretrained",
    "Source",
    "build_architecture",
    "describe",
    "list_models",
    "load",
    "load_into",
    "load_state_dict_file",
    "parse_model_id",
    "register_architecture",
    "register_source",
    "register_task",
    "sha256_file",
]
