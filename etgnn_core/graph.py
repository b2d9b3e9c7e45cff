"""Neighbour lists with integer cell shifts, triplets and batching: the graph the model reads.

The graph holds only indices, integer shifts and raw positions / cells; every geometric
quantity (vectors, distances, angles) is computed inside the model so that gradients and
rotations flow through it.  Conventions are those of :mod:`etgnn_core.keys`: edge ``k -> j``
has source ``k`` (the neighbour image ``pos[k] + shift @ cell``) and target ``j`` (the centre).

The helpers work in numpy and only the finished graph becomes torch tensors: a small crystal has
few edges, and torch's fixed cost per call would dominate predicting many small structures.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields, replace

import ase
import numpy as np
import torch
import vesin

from etgnn_core.structure import StructureError, is_periodic, neighbor_search_problem, structure_label

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


def neighbor_list(atoms: ase.Atoms, cutoff: float, with_reverse: bool = False) -> tuple[np.ndarray, ...]:
    """Full neighbour list within ``cutoff`` from vesin: (src, dst, shift, distance[, reverse]).

    Every periodic image is its own edge; an atom may see its own images.  Built from vesin's
    half list (each pair once) followed by its mirror image, so the reverse of edge ``e`` is
    ``e + H`` in the first half and ``e - H`` in the second (``reverse``, with ``with_reverse``):
    no search, and half of vesin's work.
    """
    positions = np.ascontiguousarray(atoms.positions, dtype=np.float64)
    if is_periodic(atoms):
        box, pbc = np.asarray(atoms.cell.array, dtype=np.float64), [bool(p) for p in atoms.pbc]
    else:
        box, pbc = np.zeros((3, 3)), False
    problem = neighbor_search_problem(positions, box, pbc, float(cutoff))
    if problem:  # vesin would die of SIGFPE (or search for minutes): refuse in Python instead
        raise StructureError(f"{structure_label(atoms)}: {problem}", source=atoms.info.get("source"), key="cell")
    calc = vesin.NeighborList(cutoff=float(cutoff), full_list=False)
    # vesin pair (i, j, S): neighbour j's image pos[j] + S @ box lies within cutoff of i.
    i, j, shift, dist = calc.compute(points=positions, box=box, periodic=pbc, quantities="ijSd")
    i, j, shift = _as_int64(i), _as_int64(j), shift.astype(np.int64)
    cat = np.concatenate
    out = (cat([j, i]), cat([i, j]), cat([shift, -shift]), cat([dist, dist]))  # half, then its mirror
    if not with_reverse:
        return out
    h = len(i)
    return (*out, np.concatenate([np.arange(h, 2 * h), np.arange(h)]))


def _as_int64(a: np.ndarray) -> np.ndarray:
    """vesin's uint64 indices reinterpreted (no copy; they are far below 2**63)."""
    return a.view(np.int64) if a.dtype == np.uint64 else a.astype(np.int64, copy=False)


def reverse_edges(src, dst, shift, n_atoms: int) -> np.ndarray:
    """Index of the reverse edge (dst -> src with -shift) of every edge; -1 where absent.

    A search by sorted keys, for any edge list (the tests check :func:`neighbor_list`'s own
    ``reverse`` with it).
    """
    src, dst, shift = np.asarray(src), np.asarray(dst), np.asarray(shift)
    if src.size == 0:
        return np.empty(0, dtype=np.int64)
    smax = int(np.abs(shift).max())
    base = 2 * smax + 1

    def key(a, b, s):
        s = s + smax
        return (((a * n_atoms + b) * base + s[:, 0]) * base + s[:, 1]) * base + s[:, 2]

    fwd = key(src, dst, shift)  # unique per edge
    rev = key(dst, src, -shift)  # key of the reverse edge
    order_fwd, order_rev = np.argsort(fwd), np.argsort(rev)
    out = np.empty(len(fwd), dtype=np.int64)
    if np.array_equal(fwd[order_fwd], rev[order_rev]):  # every edge has its reverse: match sorted keys
        out[order_rev] = order_fwd
        return out
    fwd_sorted = fwd[order_fwd]
    pos = np.minimum(np.searchsorted(fwd_sorted, rev), len(fwd) - 1)
    return np.where(fwd_sorted[pos] == rev, order_fwd[pos], -1)


def cap_neighbors(dst, dist, max_neighbors: int, n_atoms: int) -> np.ndarray:
    """Mask keeping, for each centre, its ``max_neighbors`` nearest edges and every edge tied with the last.

    Returns a boolean mask over edges (before symmetrisation).  Edges are ranked at their centre
    by one sort of the float64 key ``centre + distance / (2 max distance)`` rather than sorting by
    centre and then by distance: one sort instead of two, and float64 still resolves distances far
    below TIE_TOLERANCE for any atom count the model accepts.
    """
    dst, dist = np.asarray(dst), np.asarray(dist, dtype=np.float64)
    counts = np.bincount(dst, minlength=n_atoms)
    if not (counts > max_neighbors).any():
        return np.ones(len(dst), dtype=bool)
    order = np.argsort(dst + dist * (0.5 / max(float(dist.max()), 1e-12)))  # by (centre, distance)
    dst_sorted, dist_sorted = dst[order], dist[order]
    starts = np.cumsum(counts) - counts
    rank = np.arange(len(order)) - starts[dst_sorted]  # rank of each sorted edge at its centre
    last = starts + np.minimum(counts, max_neighbors) - 1  # position of the k-th nearest
    d_last = np.full(n_atoms, np.inf)
    has = counts > 0
    d_last[has] = dist_sorted[last[has]]
    keep = np.empty(len(order), dtype=bool)
    keep[order] = (rank < max_neighbors) | (dist_sorted <= d_last[dst_sorted] + TIE_TOLERANCE)
    return keep


def build_triplets(src, dst, reverse, n_atoms: int, chunk: int = 1 << 16) -> tuple[np.ndarray, np.ndarray]:
    """Triplets k -> j -> i as pairs (edge k->j, edge j->i), dropping only the true reverse edge.

    Two images of one atom are a valid pair (k == i as atoms, different edges).
    The count is sum over edges j->i of (in-degree(j) - 1) when every edge has its reverse.
    Built ``chunk`` candidate triplets at a time so that the temporaries stay in cache on large
    graphs instead of spanning every triplet at once.
    """
    src, dst, reverse = np.asarray(src), np.asarray(dst), np.asarray(reverse)
    order = np.argsort(dst, kind="stable")  # incoming edges grouped by centre
    indeg = np.bincount(dst, minlength=n_atoms)
    ptr = np.cumsum(indeg) - indeg
    n_per_edge = indeg[src]  # edge j->i pairs with each edge into j
    ends = np.cumsum(n_per_edge)  # triplets of edge j->i: [ends - n_per_edge, ends)
    to_order = ptr[src] - (ends - n_per_edge)  # triplet position -> position in `order` of edge k->j
    total = int(ends[-1]) if len(src) else 0
    out_kj, out_ji = np.empty(total, dtype=np.int64), np.empty(total, dtype=np.int64)  # room for all candidates
    e0 = n_out = 0
    while e0 < len(src):
        e1 = max(int(np.searchsorted(ends, ends[e0] - n_per_edge[e0] + chunk, side="right")), e0 + 1)
        counts = n_per_edge[e0:e1]
        pos = np.arange(ends[e0] - n_per_edge[e0], ends[e1 - 1])
        pos += np.repeat(to_order[e0:e1], counts)
        idx_kj = order[pos]
        keep = idx_kj != np.repeat(reverse[e0:e1], counts)
        kept = idx_kj[keep]
        out_kj[n_out : n_out + len(kept)] = kept
        out_ji[n_out : n_out + len(kept)] = np.repeat(np.arange(e0, e1), counts)[keep]
        n_out += len(kept)
        e0 = e1
    return out_kj[:n_out], out_ji[:n_out]


def build_graph(atoms: ase.Atoms, cutoff: float, max_neighbors: int | None = None, neighbors=None) -> Graph:
    """Graph of one structure: neighbour list (capped with ties kept, then symmetrised) and triplets.

    ``atoms`` should have passed :func:`etgnn_core.structure.validate_atoms`.  ``neighbors`` is
    :func:`neighbor_list` ``(atoms, cutoff, with_reverse=True)`` when the caller has it already.
    """
    n = len(atoms)
    if neighbors is None:
        neighbors = neighbor_list(atoms, cutoff, with_reverse=True)
    src, dst, shift, dist, reverse = neighbors
    if max_neighbors is not None and len(src):
        keep = cap_neighbors(dst, dist, max_neighbors, n)
        keep = keep | keep[reverse]  # keep a pair if either end keeps it: the graph stays symmetric
        new_index = np.cumsum(keep) - 1
        src, dst, shift, reverse = src[keep], dst[keep], shift[keep], new_index[reverse[keep]]
    kj, ji = build_triplets(src, dst, reverse, n)
    periodic = is_periodic(atoms)
    cell = atoms.cell.array if periodic else np.zeros((3, 3))
    as_long = functools.partial(torch.as_tensor, dtype=torch.long)
    return Graph(
        atomic_numbers=as_long(atoms.numbers),
        positions=torch.as_tensor(atoms.positions, dtype=torch.float64),
        cell=torch.as_tensor(np.asarray(cell), dtype=torch.float64).reshape(1, 3, 3),
        periodic=torch.tensor([periodic]),
        batch=torch.zeros(n, dtype=torch.long),
        edge_src=as_long(src),
        edge_dst=as_long(dst),
        edge_shift=torch.as_tensor(shift, dtype=torch.float64),
        edge_reverse=as_long(reverse),
        triplet_kj=as_long(kj),
        triplet_ji=as_long(ji),
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
