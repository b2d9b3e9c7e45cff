"""The ETGNN model: bases, blocks (one class per block of the paper) and the full network."""

from etgnn_core.model.config import ModelConfig

__all__ = ["ETGNN", "ModelConfig", "ModelOutput"]


def __getattr__(name):  # the network imports torch: only when asked for
    if name in ("ETGNN", "ModelOutput"):
        from etgnn_core.model import etgnn

        return getattr(etgnn, name)
    raise AttributeError(name)
