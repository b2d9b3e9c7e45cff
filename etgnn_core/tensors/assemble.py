"""Turn scalar coefficients and unit edge vectors into tensors of any rank (paper eqs 1-8).

For centre atom j and rank M, the contribution of edge k -> j is

    C_kj = t_kj e_kj^(x)M / <deg>  +  B_M(e_kj, S_kj) / <deg>^2,   S_kj = sum_i t_kji e_ji^(x)(M-a)

with B_2 = e_kj (x) S (S a vector), B_3 = e_kj (x) S (S = sum t e_ji (x) e_ji, the paper's eq 8) and
B_4 = e_kj (x) e_kj (x) S.  The triplets of a centre are summed onto their incoming edge k -> j,
so the per-edge contributions add up exactly to the atom tensor:

    T_j = scale * (sum_k C_kj + self_j) + asr_j

where self_j holds the isotropic on-site terms (a_j I for rank 2, and q_j (r_j - centroid) for
molecular dipoles) and asr_j the acoustic-sum-rule correction.  Everything is built from products
of edge vectors with invariant coefficients, so it is exactly O(3)-equivariant.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from etgnn_core.ops import gather, scatter_sum
from etgnn_core.tensors.specs import TensorSpec


def outer_power(e: torch.Tensor, m: int) -> torch.Tensor:
    """e^(x)m for a batch of vectors: [n, 3] -> [n] + [3] * m (m = 0 gives ones)."""
    out = torch.ones(e.shape[0], dtype=e.dtype, device=e.device)
    for _ in range(m):
        out = out.unsqueeze(-1) * e.reshape(e.shape[0], *([1] * (out.dim() - 1)), 3)
    return out


def outer(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Batched tensor product of [n, ...a] and [n, ...b] -> [n, ...a, ...b]."""
    ra, rb = a.dim() - 1, b.dim() - 1
    return a.reshape(*a.shape, *([1] * rb)) * b.reshape(b.shape[0], *([1] * ra), *b.shape[1:])


def symmetrize(t: torch.Tensor, kind: str) -> torch.Tensor:
    """Project the trailing tensor indices onto a symmetry class (idempotent, commutes with O(3))."""
    if kind == "none":
        return t
    if kind in ("symmetric", "sym_last2"):
        return 0.5 * (t + t.transpose(-1, -2))
    if kind == "voigt":
        minor = 0.25 * (t + t.transpose(-3, -4) + t.transpose(-1, -2) + t.transpose(-3, -4).transpose(-1, -2))
        return 0.5 * (minor + minor.permute(*range(t.dim() - 4), -2, -1, -4, -3))
    raise ValueError(f"unknown symmetry {kind!r}")


def isotropic_basis(rank: int, n: int, dtype, device) -> torch.Tensor:
    """Isotropic invariant tensors of a rank: [n_basis, 3, ...] (rank 0: 1; rank 2: I; rank 4: two)."""
    eye = torch.eye(3, dtype=dtype, device=device)
    if rank == 0:
        return torch.ones(1, dtype=dtype, device=device)
    if rank == 2:
        return eye.unsqueeze(0)
    if rank == 4:
        dd = torch.einsum("ij,kl->ijkl", eye, eye)
        sym = torch.einsum("ik,jl->ijkl", eye, eye) + torch.einsum("il,jk->ijkl", eye, eye)
        return torch.stack([dd, sym])
    return torch.zeros(0, *([3] * rank), dtype=dtype, device=device)


@dataclass
class Geometry:
    """Unit edge vectors and the index structure they live on."""

    unit: torch.Tensor  # [n_edges, 3] e_kj
    edge_dst: torch.Tensor  # [n_edges]
    triplet_kj: torch.Tensor  # [n_triplets]
    triplet_ji: torch.Tensor  # [n_triplets]
    batch: torch.Tensor  # [n_atoms]
    positions: torch.Tensor  # [n_atoms, 3]
    periodic: torch.Tensor  # [n_structures] bool
    n_atoms: int
    n_structures: int
    atomic_numbers: torch.Tensor | None = None  # [n_atoms]; needed by specs with species


@dataclass
class AssembledTensor:
    """One property for a batch; every field already scaled to the output unit."""

    atom: torch.Tensor  # [n_atoms, 3, ...] atomic tensors T_j (ASR included)
    structure: torch.Tensor  # [n_structures, 3, ...] reduction of atomic tensors (eq 1)
    edge: torch.Tensor  # [n_edges, 3, ...] contribution of each edge k -> j to T_j (triplets included)
    onsite: torch.Tensor  # [n_atoms, 3, ...] isotropic on-site term (and molecular charge term)
    asr: torch.Tensor  # [n_atoms, 3, ...] acoustic-sum-rule correction (zeros when off)


def assemble(
    spec: TensorSpec,
    geo: Geometry,
    t_edge: torch.Tensor,  # [n_edges]
    t_triplet: torch.Tensor | None,  # [n_triplets]
    t_self: torch.Tensor,  # [n_atoms, spec.n_self]
    scale: float | torch.Tensor,
    avg_degree: float,
) -> AssembledTensor:
    """Build one property from its coefficients (see the module docstring)."""
    m = spec.rank
    e = geo.unit
    contrib = t_edge.reshape(-1, *([1] * m)) * outer_power(e, m) / avg_degree  # [n_edges, 3^m]
    if spec.uses_triplets and t_triplet is not None and t_triplet.numel():
        e_ji = gather(e, geo.triplet_ji)  # [n_triplets, 3]
        a = 2 if m == 4 else 1  # factors of e_kj in the triplet basis
        s = t_triplet.reshape(-1, *([1] * (m - a))) * outer_power(e_ji, m - a)
        s = scatter_sum(s, geo.triplet_kj, e.shape[0])  # [n_edges, 3^(m-a)]
        contrib = contrib + outer(outer_power(e, a), s) / avg_degree**2
    contrib = symmetrize(contrib, spec.symmetry)

    onsite = _onsite(spec, geo, t_self)
    if spec.species:  # only the chosen species carry the tensor: zero the rest, edges into them too
        carries = spec.carries(geo.atomic_numbers).to(e.dtype).reshape(-1, *([1] * m))  # [n_atoms, 1...]
        contrib, onsite = contrib * gather(carries, geo.edge_dst), onsite * carries
    atom = scale * (scatter_sum(contrib, geo.edge_dst, geo.n_atoms) + onsite)
    asr = torch.zeros_like(atom)
    if spec.asr and spec.per_atom:
        mean = scatter_sum(atom, geo.batch, geo.n_structures) / _atoms_per_structure(geo, atom)
        periodic = geo.periodic[geo.batch].reshape(-1, *([1] * m)).to(atom.dtype)
        asr = -mean[geo.batch] * periodic
        atom = atom + asr
    structure = scatter_sum(atom, geo.batch, geo.n_structures)
    if spec.reduce == "mean":
        structure = structure / _atoms_per_structure(geo, atom)
    return AssembledTensor(atom=atom, structure=structure, edge=scale * contrib, onsite=scale * onsite, asr=asr)


def _atoms_per_structure(geo: Geometry, like: torch.Tensor) -> torch.Tensor:
    counts = torch.bincount(geo.batch, minlength=geo.n_structures).clamp(min=1).to(like.dtype)
    return counts.reshape(-1, *([1] * (like.dim() - 1)))


def _onsite(spec: TensorSpec, geo: Geometry, t_self: torch.Tensor) -> torch.Tensor:
    """Isotropic on-site tensors sum_b a_jb I_b, plus q_j (r_j - centroid) for molecular dipoles."""
    dtype, device = geo.unit.dtype, geo.unit.device
    basis = isotropic_basis(spec.rank, geo.n_atoms, dtype, device)  # [n_basis, 3^m]
    n_iso = basis.shape[0] if spec.rank != 0 else 1
    out = torch.zeros(geo.n_atoms, *spec.shape, dtype=dtype, device=device)
    if n_iso and spec.rank in (0, 2, 4):
        iso = t_self[:, :n_iso]
        out = out + (torch.einsum("nb,b...->n...", iso, basis) if spec.rank else iso[:, 0])
    if spec.charges:
        # neutral charges over the atoms that have neighbours: an isolated atom keeps q = 0
        w = (torch.bincount(geo.edge_dst, minlength=geo.n_atoms) > 0).to(dtype)
        q = t_self[:, -1] * w
        per = scatter_sum(w, geo.batch, geo.n_structures).clamp(min=1)
        q = q - w * (scatter_sum(q, geo.batch, geo.n_structures) / per)[geo.batch]
        counts = _atoms_per_structure(geo, q.unsqueeze(-1)).squeeze(-1)
        centroid = scatter_sum(geo.positions, geo.batch, geo.n_structures) / counts.unsqueeze(-1)
        molecule = (~geo.periodic[geo.batch]).to(dtype).unsqueeze(-1)
        out = out + molecule * q.unsqueeze(-1) * (geo.positions - centroid[geo.batch])
    return out
