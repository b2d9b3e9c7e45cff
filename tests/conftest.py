"""Shared fixtures: a tiny, non-trivial float64 ETGNN that predicts every default tensor."""

from __future__ import annotations

import pytest
import torch

from etgnn_core.model.etgnn import ETGNN, ModelConfig
from etgnn_core.tensors.specs import DEFAULT_SPECS

CUTOFF = 5.0
PERTURB = 0.1


def make_tiny_model(seed: int = 0, max_neighbors: int | None = 16) -> ETGNN:
    """Tiny float64 ETGNN (hidden 16, 2 blocks, small bases) with every DEFAULT_SPECS head and O(1) random outputs.

    Random species biases and output scales, and every weight perturbed, so that no head is
    zero or purely isotropic (an equivariance test on such a head could not fail).
    """
    torch.manual_seed(seed)
    config = ModelConfig(
        targets=list(DEFAULT_SPECS.values()),
        cutoff=CUTOFF,
        max_neighbors=max_neighbors,
        hidden=16,
        int_emb=8,
        basis_emb=4,
        out_emb=16,
        triplet_hidden=8,
        num_blocks=2,
        num_radial=4,
        num_spherical=4,  # the sympy set-up of the spherical basis costs ~11 s CPU at the default 7
        avg_degree=8.0,
    )
    model = ETGNN(config).double().eval()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(PERTURB * torch.randn(p.shape, generator=gen, dtype=p.dtype))
        model.species_bias.weight.copy_(
            torch.randn(model.species_bias.weight.shape, generator=gen, dtype=torch.float64)
        )
        model.scales.copy_(0.5 + 1.5 * torch.rand(model.scales.shape, generator=gen, dtype=torch.float64))
    return model


@pytest.fixture(scope="session")
def tiny_model() -> ETGNN:
    return make_tiny_model()
