"""Training: typed config, Lightning module, normalisation, fine-tuning, model folders."""

from etgnn_core.train.config import ConfigError, TrainConfig
from etgnn_core.train.trainer import TrainResult, evaluate, train

__all__ = ["ConfigError", "TrainConfig", "TrainResult", "evaluate", "train"]
