"""Neighbour lists with integer cell shifts, triplets and batching: the graph the model reads.

The graph holds only indices, integer shifts and raw positions / cells; every geometric
quantity (vectors, distances, angles) is computed inside the model so that gradients and
rotations flow through it.  Conventions are those of :mod:`etgnn_core.keys`: edge ``k -> j``
has source ``k`` (the neighbour image ``pos[k] + shift @ cell``) and target ``j`` (the centre).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import ase
import numpy as np
import torch
import vesin

# Distances equal to the cap's last kept one within this tolerance (Angstrom) are kept too:
# periodic images are exactly equidistant, and which of two tied neighbours survives must not
# depend on float noise after a rotation.
TIE_TOLERANCE = 1e-5


@dataclass
class Graph:
    """A batch of one or more structures as index tensors.  Shapes in the comments."""

    atomic_numbers: torch.Tensor  # [n_atoms] int64
    positions: torch.Tensor  # [n_atoms, 3] Angstrom
    cell: torch.Tensor  # [n_structures, 3, 3] Angstrom, rows = lattice vectors (zeros for molecules)
    periodic: torch.Tensor  # [n_structures] bool
    batch: torch.Tensor  # [n_atoms] structure index of each atom
    edge_src: torch.Tensor  # [n_edges] neighbour k
    edge_dst: torch.Tensor  # [n_edges] centre j
    edge_shift: torch.Tensor  # [n_edges, 3] integer-valued cell shift of the neighbour image
    edge_reverse: torch.Tensor  # [n_edges] index of the reverse edge j -> k (same pair, opposite shift)
    triplet_kj: torch.Tensor  # [n_triplets] edge k -> j
    triplet_ji: torch.Tensor  # [n_triplets] edge j -> i

    @property
    def n_atoms(self) -> int:
        return int(self.atomic_numbers.shape[0])

    @property
    def n_edges(self) -> int:
        return int(self.edge_src.shape[0])

    @property
    def n_triplets(self) -> int:
        return int(self.triplet_kj.shape[0])

    @property
    def n_structures(self) -> int:
        return int(self.cell.shape[0])

    def to(self, device=None, dtype=None) -> Graph:
        """Move to ``device``; floating tensors (positions, cell, shifts) also to ``dtype``."""
        out = {}
        for f in fields(self):
            t = getattr(self, f.name)
            if t.is_floating_point():
                out[f.name] = t.to(device=device, dtype=dtype or t.dtype)
            else:
                out[f.name] = t.to(device=device)
        return replace(self, **out)

    def edge_vectors(self) -> torch.Tensor:
        """r_kj = pos[j] - (pos[k] + shift @ cell), [n_edges, 3]."""
        cell = self.cell[self.batch[self.edge_dst]]  # [n_edges, 3, 3]
        offset = torch.einsum("ea,eab->eb", self.edge_shift, cell)  # [n_edges, 3]
        return self.positions[self.edge_dst] - self.positions[self.edge_src] - offset


def is_periodic(atoms: ase.Atoms) -> bool:
    """Periodic when some pbc flag is set and the cell is not all zero (extended-XYZ molecules)."""
    return bool(np.any(atoms.pbc)) and bool(np.any(np.abs(atoms.cell.array) > 0))


def neighbor_list(atoms: ase.Atoms, cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Full neighbour list within ``cutoff`` from vesin: (src, dst, shift, distance).

    Every periodic image is its own edge; an atom may see its own images.
    """
    positions = np.ascontiguousarray(atoms.positions, dtype=np.float64)
    if is_periodic(atoms):
        box, pbc = np.asarray(atoms.cell.array, dtype=np.float64), [bool(p) for p in atoms.pbc]
    else:
        box, pbc = np.zeros((3, 3)), False
    calc = vesin.NeighborList(cutoff=float(cutoff), full_list=True)
    # vesin pair (i, j, S): neighbour j's image pos[j] + S @ box lies within cutoff of i.
    i, j, shift, dist = calc.compute(points=positions, box=box, periodic=pbc, quantities="ijSd")
    return j.astype(np.int64), i.astype(np.int64), shift.astype(np.int64), dist


def reverse_edges(src: torch.Tensor, dst: torch.Tensor, shift: torch.Tensor, n_atoms: int) -> torch.Tensor:
    """Index of the reverse edge (dst -> src with -shift) of every edge; -1 where absent."""
    if src.numel() == 0:
        return torch.empty(0, dtype=torch.long)
    smax = int(shift.abs().max()) if shift.numel() else 0
    base = 2 * smax + 1

    def key(a, b, s):
        s = s + smax
        return (((a * n_atoms + b) * base + s[:, 0]) * base + s[:, 1]) * base + s[:, 2]

    fwd = key(src, dst, shift)
    order = torch.argsort(fwd)
    rev = key(dst, src, -shift)
    pos = torch.searchsorted(fwd[order], rev).clamp(max=len(fwd) - 1)
    found = fwd[order][pos] == rev
    return torch.where(found, order[pos], torch.full_like(pos, -1))


def cap_neighbors(dst: torch.Tensor, dist: torch.Tensor, max_neighbors: int, n_atoms: int) -> torch.Tensor:
    """Mask keeping, for each centre, its ``max_neighbors`` nearest edges and every edge tied with the last.

    Returns a boolean mask over edges (before symmetrisation).
    """
    order = torch.argsort(dist, stable=True)
    order = order[torch.argsort(dst[order], stable=True)]  # sorted by (centre, distance)
    counts = torch.bincount(dst, minlength=n_atoms)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(len(order)) - starts[dst[order]]  # rank of each sorted edge at its centre
    last = starts + torch.clamp(counts, max=max_neighbors) - 1  # position of the k-th nearest
    d_last = torch.full((n_atoms,), float("inf"), dtype=dist.dtype)
    has = counts > 0
    d_last[has] = dist[order][last[has]]
    keep_sorted = (rank < max_neighbors) | (dist[order] <= d_last[dst[order]] + TIE_TOLERANCE)
    keep = torch.zeros_like(keep_sorted)
    keep[order] = keep_sorted
    return keep


def build_triplets(
    src: torch.Tensor, dst: torch.Tensor, reverse: torch.Tensor, n_atoms: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Triplets k -> j -> i as pairs (edge k->j, edge j->i), dropping only the true reverse edge.

    Two images of one atom are a valid pair (k == i as atoms, different edges).
    The count is sum over edges j->i of (in-degree(j) - 1) when every edge has its reverse.
    """
    order = torch.argsort(dst, stable=True)  # incoming edges grouped by centre
    indeg = torch.bincount(dst, minlength=n_atoms)
    ptr = torch.cumsum(indeg, 0) - indeg
    n_per_edge = indeg[src]  # edge j->i pairs with each edge into j
    idx_ji = torch.repeat_interleave(torch.arange(len(src)), n_per_edge)
    first = torch.cumsum(n_per_edge, 0) - n_per_edge
    offset = torch.arange(int(n_per_edge.sum())) - torch.repeat_interleave(first, n_per_edge)
    idx_kj = order[torch.repeat_interleave(ptr[src], n_per_edge) + offset]
    keep = idx_kj != reverse[idx_ji]
    return idx_kj[keep], idx_ji[keep]


def build_graph(atoms: ase.Atoms, cutoff: float, max_neighbors: int | None = None) -> Graph:
    """Graph of one structure: neighbour list (capped with ties kept, then symmetrised) and triplets.

    ``atoms`` should have passed :func:`etgnn_core.structure.validate_atoms`.
    """
    n = len(atoms)
    src, dst, shift, dist = (torch.from_numpy(a) for a in neighbor_list(atoms, cutoff))
    reverse = reverse_edges(src, dst, shift, n)
    if bool((reverse < 0).any()):  # a full neighbour list always holds both directions
        raise RuntimeError("neighbour list is not symmetric: an edge has no reverse")
    if max_neighbors is not None and len(src):
        keep = cap_neighbors(dst, dist, max_neighbors, n)
        keep = keep | keep[reverse]  # keep a pair if either end keeps it: the graph stays symmetric
        new_index = torch.cumsum(keep.long(), 0) - 1
        src, dst, shift, reverse = src[keep], dst[keep], shift[keep], new_index[reverse[keep]]
    kj, ji = build_triplets(src, dst, reverse, n)
    periodic = is_periodic(atoms)
    cell = atoms.cell.array if periodic else np.zeros((3, 3))
    return Graph(
        atomic_numbers=torch.as_tensor(atoms.numbers, dtype=torch.long),
        positions=torch.as_tensor(atoms.positions, dtype=torch.float64),
        cell=torch.as_tensor(np.asarray(cell), dtype=torch.float64).reshape(1, 3, 3),
        periodic=torch.tensor([periodic]),
        batch=torch.zeros(n, dtype=torch.long),
        edge_src=src,
        edge_dst=dst,
        edge_shift=shift.to(torch.float64),
        edge_reverse=reverse,
        triplet_kj=kj,
        triplet_ji=ji,
    )


def collate(graphs: list[Graph]) -> Graph:
    """Concatenate graphs into one batch, offsetting atom, edge and structure indices."""
    if len(graphs) == 1:
        return graphs[0]
    atom_off = np.cumsum([0] + [g.n_atoms for g in graphs[:-1]])
    edge_off = np.cumsum([0] + [g.n_edges for g in graphs[:-1]])
    struct_off = np.cumsum([0] + [g.n_structures for g in graphs[:-1]])

    def cat(name, offsets=None):
        parts = [getattr(g, name) for g in graphs]
        if offsets is not None:
            parts = [p + int(o) for p, o in zip(parts, offsets)]
        return torch.cat(parts)

    return Graph(
        atomic_numbers=cat("atomic_numbers"),
        positions=cat("positions"),
        cell=cat("cell"),
        periodic=cat("periodic"),
        batch=cat("batch", struct_off),
        edge_src=cat("edge_src", atom_off),
        edge_dst=cat("edge_dst", atom_off),
        edge_shift=cat("edge_shift"),
        edge_reverse=cat("edge_reverse", edge_off),
        triplet_kj=cat("triplet_kj", edge_off),
        triplet_ji=cat("triplet_ji", edge_off),
    )
