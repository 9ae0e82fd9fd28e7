"""Transfer learning for any backbone: strategies (linear / partial / full / gradual),
discriminative learning rates over automatically derived layer groups, cached-feature linear
probes, LR range test, strategy recommendation, distillation, multi-label training and audit,
imbalance handling, EMA / mixup / cutmix / TTA, hyperparameter search (Optuna) and the one-pass
probe sweep, on PyTorch Lightning."""

from visiontune.adapt.config import TrainConfig
from visiontune.adapt.distill import kd_loss
from visiontune.adapt.groups import LayerGroups, layer_groups, param_groups
from visiontune.adapt.lr_find import LRFindResult, lr_find
from visiontune.adapt.multilabel_audit import MultiLabelAudit, audit_multilabel
from visiontune.adapt.probe_sweep import SweepResult, probe_sweep
from visiontune.adapt.recommend import Recommendation, recommend
from visiontune.adapt.strategies import default_milestones, n_trainable_backbone, param_counts, set_trainable
from visiontune.adapt.training import TrainResult, train
from visiontune.adapt.tune import TuneRecord, tune

__all__ = [
    "TrainConfig",
    "TrainResult",
    "train",
    "LayerGroups",
    "layer_groups",
    "param_groups",
    "kd_loss",
    "lr_find",
    "LRFindResult",
    "recommend",
    "probe_sweep",
    "SweepResult",
    "tune",
    "TuneRecord",
    "audit_multilabel",
    "MultiLabelAudit",
    "Recommendation",
    "param_counts",
    "default_milestones",
    "n_trainable_backbone",
    "set_trainable",
]
