"""The ETGNN model: bases, blocks (one class per block of the paper) and the full network."""

from etgnn_core.model.etgnn import ETGNN, ModelConfig, ModelOutput

__all__ = ["ETGNN", "ModelConfig", "ModelOutput"]
