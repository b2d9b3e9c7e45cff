"""The random-weight model of the shipped size that the speed benchmarks time (one definition)."""

from __future__ import annotations

# the size of the shipped hidden-128 BEC + dielectric models (pretrained/perturbed_hfo2/config.json,
# perturbed_al2o3); perturbed_sio2 is narrower (hidden 64, int_emb 48) since 2026-12-03
SHIPPED_SIZE = {"cutoff": 5.0, "max_neighbors": 12, "hidden": 128, "num_blocks": 4, "triplet_hidden": 32,
                "out_emb": 64}


def shipped_size_net(seed: int = 0):
    """An ETGNN predicting born_charges + dielectric with random weights, at the shipped size."""
    import torch

    from etgnn_core.model.etgnn import ETGNN, ModelConfig
    from etgnn_core.tensors.specs import spec_for

    torch.manual_seed(seed)
    return ETGNN(ModelConfig(targets=[spec_for("born_charges"), spec_for("dielectric")], **SHIPPED_SIZE))


def shipped_size_model(name: str = "default-size (random weights)", device: str = "cpu"):
    """:func:`shipped_size_net` wrapped in etgnn_core.api.Model."""
    from etgnn_core.api import Model
    from etgnn_core.registry import ModelInfo

    net = shipped_size_net()
    return Model(net, ModelInfo(name, None, "", {t.name: t.unit for t in net.config.targets}, []), device)
