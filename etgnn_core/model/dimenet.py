"""The DimeNet++ pieces ETGNN's edge blocks are made of, owned here rather than imported.

Adapted from PyTorch Geometric, ``torch_geometric/nn/models/dimenet.py`` and
``torch_geometric/nn/inits.py`` (version 2.8.1; MIT licence, Copyright (c) 2023 PyG Team and
Matthias Fey), which implement DimeNet++ (Gasteiger, Giri, Margraf & Günnemann, 2020).  Kept
identical in maths and in attribute names, so the parameter names -- the keys of every shipped
``weights.pt`` -- stay those of PyG's classes (``freq``, ``lin_rbf1``, ``layers_before_skip``, ...).
tests/test_reference.py checks that the shipped models predict what they did with PyG's classes.

Owned because ETGNN used PyG internals (a private static method, a constructor that skipped
the parent's ``__init__``, attribute names as weight keys) that a PyG release may change.  Only
the symbolic derivation of basis sizes that are not stored in ``sbf_forms.json`` still calls
PyG's public ``dimenet_utils``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from etgnn_core.ops import triplet_message


def glorot_orthogonal(weight: torch.Tensor, scale: float) -> None:
    """Orthogonal initialisation rescaled to variance ``scale / (fan_in + fan_out)`` (DimeNet)."""
    nn.init.orthogonal_(weight.data)
    weight.data *= (scale / ((weight.size(-2) + weight.size(-1)) * weight.var())).sqrt()


class Envelope(nn.Module):
    """Smooth polynomial cutoff u(x) of DimeNet (x = d / cutoff): 1/x near 0, 0 with two zero derivatives at 1."""

    def __init__(self, exponent: int):
        super().__init__()
        self.p = exponent + 1
        self.a = -(self.p + 1) * (self.p + 2) / 2
        self.b = self.p * (self.p + 2)
        self.c = -self.p * (self.p + 1) / 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p, a, b, c = self.p, self.a, self.b, self.c
        x_p0 = x.pow(p - 1)
        x_p1 = x_p0 * x
        x_p2 = x_p1 * x
        return (1.0 / x + a * x_p0 + b * x_p1 + c * x_p2) * (x < 1.0).to(x.dtype)


class BesselBasis(nn.Module):
    """Radial Bessel basis e_RBF(d) = u(d / c) sin(n pi d / c), n = 1..R, with learnable frequencies."""

    def __init__(self, num_radial: int, cutoff: float = 5.0, envelope_exponent: int = 5):
        super().__init__()
        self.cutoff = cutoff
        self.envelope = Envelope(envelope_exponent)
        self.freq = nn.Parameter(torch.arange(1, num_radial + 1, dtype=torch.float32) * math.pi)

    def forward(self, dist: torch.Tensor) -> torch.Tensor:  # [E] -> [E, R]
        dist = dist.unsqueeze(-1) / self.cutoff
        return self.envelope(dist) * (self.freq * dist).sin()


class ResidualLayer(nn.Module):
    """x + act(W2 act(W1 x))."""

    def __init__(self, hidden: int, act: Callable):
        super().__init__()
        self.act = act
        self.lin1 = nn.Linear(hidden, hidden)
        self.lin2 = nn.Linear(hidden, hidden)
        for lin in (self.lin1, self.lin2):
            glorot_orthogonal(lin.weight, scale=2.0)
            lin.bias.data.fill_(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.act(self.lin2(self.act(self.lin1(x))))


class InteractionPP(nn.Module):
    """DimeNet++ interaction block: m_ji <- f(m_ji, sum_k m_kj * rbf_kj * sbf_kji)."""

    def __init__(self, hidden: int, int_emb: int, basis_emb: int, num_spherical: int, num_radial: int,
                 num_before_skip: int, num_after_skip: int, act: Callable):
        super().__init__()
        self.act = act
        self.lin_rbf1 = nn.Linear(num_radial, basis_emb, bias=False)
        self.lin_rbf2 = nn.Linear(basis_emb, hidden, bias=False)
        self.lin_sbf1 = nn.Linear(num_spherical * num_radial, basis_emb, bias=False)
        self.lin_sbf2 = nn.Linear(basis_emb, int_emb, bias=False)
        self.lin_kj = nn.Linear(hidden, hidden)
        self.lin_ji = nn.Linear(hidden, hidden)
        self.lin_down = nn.Linear(hidden, int_emb, bias=False)
        self.lin_up = nn.Linear(int_emb, hidden, bias=False)
        self.layers_before_skip = nn.ModuleList(ResidualLayer(hidden, act) for _ in range(num_before_skip))
        self.lin = nn.Linear(hidden, hidden)
        self.layers_after_skip = nn.ModuleList(ResidualLayer(hidden, act) for _ in range(num_after_skip))
        for lin in (self.lin_rbf1, self.lin_rbf2, self.lin_sbf1, self.lin_sbf2, self.lin_kj, self.lin_ji,
                    self.lin_down, self.lin_up, self.lin):
            glorot_orthogonal(lin.weight, scale=2.0)
            if lin.bias is not None:
                lin.bias.data.fill_(0)

    def forward(self, x, rbf, sbf, idx_kj, idx_ji):  # x [E, H], rbf [E, R], sbf [T, S*R] -> [E, H]
        x_ji = self.act(self.lin_ji(x))
        x_kj = self.act(self.lin_kj(x)) * self.lin_rbf2(self.lin_rbf1(rbf))
        x_kj = self.act(self.lin_down(x_kj))  # [E, I]
        # lin_sbf2(lin_sbf1(sbf)) as one map: a product of width 8 is slow per triplet. The weight is built
        # as [S*R, I] row-major for a plain matmul: MKL's transposed-B path (F.linear) is ~4x slower for K = 42
        sbf_weight = self.lin_sbf1.weight.t() @ self.lin_sbf2.weight.t()  # [S*R, I]
        x_kj = triplet_message(x_kj, sbf, sbf_weight, idx_kj, idx_ji)  # [E, I]
        h = x_ji + self.act(self.lin_up(x_kj))
        for layer in self.layers_before_skip:
            h = layer(h)
        h = self.act(self.lin(h)) + x
        for layer in self.layers_after_skip:
            h = layer(h)
        return h
