"""The blocks of ETGNN (paper Figure 2), one small class each, named as in the paper.

Edge blocks are DimeNet++'s (etgnn_core.model.dimenet, adapted from PyG); the triplet blocks
implement eqs 11 and 12.
Shapes: E = edges, T = triplets, N = atoms, H = edge hidden size, C = triplet hidden size.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import torch
from torch import nn

from etgnn_core.model.dimenet import BesselBasis, Envelope, InteractionPP, ResidualLayer
from etgnn_core.ops import TRIPLET_BLOCK, gather, scatter_sum

N_ELEMENTS = 119  # embedding rows: index = atomic number (0 unused)


def act(x: torch.Tensor) -> torch.Tensor:
    return nn.functional.silu(x)


class RadialBasis(BesselBasis):
    """Radial Bessel basis e_RBF(d) with the smooth polynomial envelope (DimeNet)."""


_FORMS_FILE = Path(__file__).with_name("sbf_forms.json")


def _basis_forms(num_spherical: int, num_radial: int) -> tuple[list[list[str]], list[str]]:
    """Sympy forms of the radial and angular parts as strings (PyG's dimenet_utils).

    Deriving them (sympy.simplify) is slow, so the sizes in use are stored in sbf_forms.json
    (generated with the same PyG functions); other sizes are derived on demand.
    """
    stored = json.loads(_FORMS_FILE.read_text()) if _FORMS_FILE.exists() else {}
    key = f"{num_spherical}x{num_radial}"
    if key in stored:
        return stored[key]["bessel"], stored[key]["sph"]
    from torch_geometric.nn.models.dimenet_utils import bessel_basis, real_sph_harm

    bessel = [[str(e) for e in row] for row in bessel_basis(num_spherical, num_radial)]
    return bessel, [str(row[0]) for row in real_sph_harm(num_spherical)]


def _constant_like(value: float, x: torch.Tensor) -> torch.Tensor:
    """The l = 0 angular function: a constant with the shape of the angles."""
    return torch.zeros_like(x) + value


@functools.lru_cache(maxsize=8)
def _spherical_basis_functions(num_spherical: int, num_radial: int) -> tuple[tuple, tuple]:
    """Torch functions of the basis, built once per size."""
    import sympy as sym

    bessel_forms, sph_forms = _basis_forms(num_spherical, num_radial)
    x, theta = sym.symbols("x theta")
    modules = {"sin": torch.sin, "cos": torch.cos}
    sph, bessel = [], []
    for i in range(num_spherical):
        form = sym.sympify(sph_forms[i])
        if i == 0:
            const = sym.lambdify([theta], form, modules)(0)
            sph.append(functools.partial(_constant_like, const))
        else:
            sph.append(sym.lambdify([theta], form, modules))
        bessel += [sym.lambdify([x], sym.sympify(bessel_forms[i][j]), modules) for j in range(num_radial)]
    return tuple(sph), tuple(bessel)


class SphericalBasis(nn.Module):
    """Spherical Bessel x spherical harmonic basis a_SBE(d_kj, alpha_kji) (eq 10), as DimeNet's.

    The torch functions of the basis are built from sympy forms once per basis size.
    """

    def __init__(self, num_spherical: int, num_radial: int, cutoff: float = 5.0, envelope_exponent: int = 5):
        super().__init__()
        self.num_spherical, self.num_radial, self.cutoff = num_spherical, num_radial, cutoff
        self.envelope = Envelope(envelope_exponent)
        sph, bessel = _spherical_basis_functions(num_spherical, num_radial)
        self.sph_funcs, self.bessel_funcs = list(sph), list(bessel)

    def forward(self, dist, angle, idx_kj):  # [E], [T], [T] -> [T, S*R]
        dist = dist / self.cutoff
        rbf = torch.stack([f(dist) for f in self.bessel_funcs], dim=1)  # [E, S*R]
        rbf = self.envelope(dist).unsqueeze(-1) * rbf
        cbf = torch.stack([f(angle) for f in self.sph_funcs], dim=1)  # [T, S]
        n, k = self.num_spherical, self.num_radial
        return (gather(rbf, idx_kj).view(-1, n, k) * cbf.view(-1, n, 1)).view(-1, n * k)


class EdgeEmbeddingBlock(nn.Module):
    """m_kj^(0) = act(W [g(Z_k) + g(Z_j) + e_RBF(d_kj)]) (DimeNet++ embedding block)."""

    def __init__(self, num_radial: int, hidden: int):
        super().__init__()
        self.emb = nn.Embedding(N_ELEMENTS, hidden)
        self.lin_rbf = nn.Linear(num_radial, hidden)
        self.lin = nn.Linear(3 * hidden, hidden)
        nn.init.uniform_(self.emb.weight, -math.sqrt(3), math.sqrt(3))

    def forward(self, z, rbf, src, dst):  # z [N], rbf [E, R] -> [E, H]
        h = self.emb(z)
        return act(self.lin(torch.cat([gather(h, src), gather(h, dst), act(self.lin_rbf(rbf))], dim=-1)))


class EdgeUpdateBlock(InteractionPP):
    """DimeNet++ interaction block: m_ji <- f(m_ji, sum_k m_kj * rbf_kj * sbf_kji)."""

    def __init__(self, hidden, int_emb, basis_emb, num_spherical, num_radial):
        super().__init__(hidden, int_emb, basis_emb, num_spherical, num_radial, 1, 2, act)


class TripletEmbeddingBlock(nn.Module):
    """Eq 11: m_kji^(0) = act(W[g(Z_i) (+) g(Z_j) (+) g(Z_k)] + phi_SBE(a_SBE) + phi_RBF(e_RBF^ji) + b).

    The linear map of the concatenated element embeddings is split into three per-atom
    projections so nothing wider than C is computed per triplet.
    """

    def __init__(self, num_radial: int, num_spherical: int, hidden: int, triplet_hidden: int):
        super().__init__()
        self.emb = nn.Embedding(N_ELEMENTS, hidden)
        self.lin_k = nn.Linear(hidden, triplet_hidden, bias=False)
        self.lin_j = nn.Linear(hidden, triplet_hidden, bias=False)
        self.lin_i = nn.Linear(hidden, triplet_hidden)
        self.lin_sbf = nn.Linear(num_radial * num_spherical, triplet_hidden, bias=False)
        self.lin_rbf = nn.Linear(num_radial, triplet_hidden, bias=False)
        nn.init.uniform_(self.emb.weight, -math.sqrt(3), math.sqrt(3))

    def edge_terms(self, z, rbf, src, dst):  # -> on_kj, on_ji [E, C]
        h = self.emb(z)
        # per-edge sums first, then one gather per edge of the triplet (k->j and j->i)
        on_kj = gather(self.lin_k(h), src) + gather(self.lin_j(h), dst)  # [E, C]: Z_k, Z_j of edge k->j
        on_ji = gather(self.lin_i(h), dst) + self.lin_rbf(rbf)  # [E, C]: Z_i and e_RBF of edge j->i
        return on_kj, on_ji

    def forward(self, z, rbf, sbf, src, dst, kj, ji):  # -> [T, C]
        on_kj, on_ji = self.edge_terms(z, rbf, src, dst)
        return act(gather(on_kj, kj) + gather(on_ji, ji) + self.lin_sbf(sbf))


class TripletUpdateBlock(nn.Module):
    """Eq 12: m_kji <- m_kji + f_int(m_kj, m_ji, rbf_kj, rbf_ji, sbf_kji).

    f_int is a per-edge MLP of each edge message, combined per triplet by an element-wise
    product with a projection of the angular basis (cheap: no matrix product per triplet).
    """

    def __init__(self, hidden: int, triplet_hidden: int, num_radial: int, basis_emb: int):
        super().__init__()
        self.lin_kj = nn.Linear(hidden, triplet_hidden)
        self.lin_ji = nn.Linear(hidden, triplet_hidden)
        self.lin_rbf = nn.Linear(num_radial, hidden, bias=False)
        self.lin_sbf = nn.Linear(basis_emb, triplet_hidden, bias=False)

    def edge_terms(self, m_edge, rbf):  # -> a, b [E, C]: the factors of edge k->j and edge j->i
        x = m_edge * self.lin_rbf(rbf)  # [E, H], radial filter as in DimeNet++
        return act(self.lin_kj(x)), act(self.lin_ji(x))

    def forward(self, m_trip, m_edge, rbf, sbf_emb, kj, ji):  # -> [T, C]
        a, b = self.edge_terms(m_edge, rbf)
        return m_trip + gather(a, kj) * gather(b, ji) * self.lin_sbf(sbf_emb)


@torch.jit.script
def triplet_stream(on_kj: torch.Tensor, on_ji: torch.Tensor, sbf: torch.Tensor, w_sbf: torch.Tensor,
                   w_proj: torch.Tensor, a: list[torch.Tensor], b: list[torch.Tensor], w_upd: list[torch.Tensor],
                   w_head: torch.Tensor, b_head: torch.Tensor, fc: torch.Tensor, kj: torch.Tensor,
                   ji: torch.Tensor, block: int = TRIPLET_BLOCK) -> torch.Tensor:
    """Triplet embedding (eq 11), every update (eq 12) and the triplet head, a block of triplets at a time.

    The same maths as TripletEmbeddingBlock -> TripletUpdateBlock x n -> TripletHead: triplet messages
    only read edge messages, never feed them, so the edge-sized factors of every block (on_kj, on_ji,
    a[i], b[i] [E, C]) are computed first and each block of triplets runs through all of them while its
    [block, C] message stays in cache (CPU inference: blocks of ``block``; training and GPUs: one block).
    Weights come transposed ([in, out]): sbf [T, S*R], w_sbf [S*R, C], w_proj [S*R, B], w_upd[i] [B, C],
    w_head [n_out, C], fc [E] -> t_kji [T, n_out].
    """
    n = sbf.shape[0]
    chunk = max(n, 1) if on_kj.is_cuda or torch.is_grad_enabled() else block
    out: list[torch.Tensor] = []
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        k, j, basis = kj[start:stop], ji[start:stop], sbf[start:stop]
        m = torch.nn.functional.silu(on_kj.index_select(0, k) + on_ji.index_select(0, j) + torch.mm(basis, w_sbf))
        emb = torch.mm(basis, w_proj)  # [block, B]
        for i in range(len(a)):
            m = m + a[i].index_select(0, k) * b[i].index_select(0, j) * torch.mm(emb, w_upd[i])
        weight = fc.index_select(0, k) * fc.index_select(0, j)  # both edges' smooth cutoffs
        out.append(torch.nn.functional.linear(torch.nn.functional.silu(m), w_head, b_head) * weight.unsqueeze(-1))
    if len(out) == 0:
        return sbf.new_zeros(0, w_head.shape[0])
    return torch.cat(out)


class EdgeHead(nn.Module):
    """phi_edge: edge message -> one coefficient t_kj per property, times the smooth cutoff."""

    def __init__(self, hidden: int, n_out: int):
        super().__init__()
        self.res = ResidualLayer(hidden, act)
        self.lin = nn.Linear(hidden, n_out)

    def forward(self, m_edge, cutoff_weight):  # [E, H], [E] -> [E, n_out]
        return self.lin(self.res(m_edge)) * cutoff_weight.unsqueeze(-1)


class TripletHead(nn.Module):
    """phi_triplet: triplet message -> one coefficient t_kji per property, times both cutoffs."""

    def __init__(self, triplet_hidden: int, n_out: int):
        super().__init__()
        self.lin = nn.Linear(triplet_hidden, n_out)

    def forward(self, m_trip, cutoff_weight):  # [T, C], [T] -> [T, n_out]
        return self.lin(act(m_trip)) * cutoff_weight.unsqueeze(-1)


class AtomOutputBlock(nn.Module):
    """Node output block: sum of filtered incoming edge messages -> atom embedding h_j -> coefficients."""

    def __init__(self, num_radial: int, hidden: int, out_emb: int, n_out: int, n_layers: int = 2):
        super().__init__()
        self.lin_rbf = nn.Linear(num_radial, hidden, bias=False)
        self.lin_up = nn.Linear(hidden, out_emb, bias=False)
        self.lins = nn.ModuleList(nn.Linear(out_emb, out_emb) for _ in range(n_layers))
        self.lin = nn.Linear(out_emb, max(n_out, 1))

    def embed(self, m_edge, rbf, dst, n_atoms, inv_degree: float):  # -> [N, out_emb]
        x = scatter_sum(self.lin_rbf(rbf) * m_edge, dst, n_atoms) * inv_degree
        x = self.lin_up(x)
        for lin in self.lins:
            x = act(lin(x))
        return x

    def forward(self, h):  # [N, out_emb] -> [N, n_out]
        return self.lin(h)


def cosine_cutoff(d: torch.Tensor, cutoff: float) -> torch.Tensor:
    """f_c(d) = (cos(pi d / r_c) + 1) / 2 inside the cutoff, 0 outside: coefficients vanish smoothly."""
    return 0.5 * (torch.cos(math.pi * d / cutoff) + 1.0) * (d < cutoff).to(d.dtype)


__all__ = [
    "triplet_stream",
    "AtomOutputBlock",
    "EdgeEmbeddingBlock",
    "EdgeHead",
    "EdgeUpdateBlock",
    "Envelope",
    "RadialBasis",
    "SphericalBasis",
    "TripletEmbeddingBlock",
    "TripletHead",
    "TripletUpdateBlock",
    "cosine_cutoff",
]
