"""Labelled graphs and their batches: targets stacked per structure or concatenated per atom."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from etgnn_core import keys
from etgnn_core.graph import Graph, build_graph, collate
from etgnn_core.tensors.specs import TensorSpec


@dataclass
class LabelledGraph:
    graph: Graph
    targets: dict[str, torch.Tensor]  # per-atom [n_atoms, ...] or per-structure [1, ...]
    masks: dict[str, torch.Tensor]  # per-atom [n_atoms] bool or per-structure [1] bool
    id: str = ""
    # candidate frames of a rotation-ambiguous label (etgnn_core.tensors.frames): [n_cand, 3, 3], identity first
    frames: torch.Tensor | None = None
    offsets: dict[str, torch.Tensor] | None = None  # per-structure [1, ...]: known part of a target
    # (kernel [3n, 3n], eps0 - eps_inf label [3, 3]) of Sample.eps_ionic (etgnn_core.data.ionic), or None
    eps_ionic: tuple[torch.Tensor, torch.Tensor] | None = None


@dataclass
class Batch:
    graph: Graph
    targets: dict[str, torch.Tensor]
    masks: dict[str, torch.Tensor]
    frames: torch.Tensor | None = None  # [n_structures, n_cand, 3, 3] or None when no label is ambiguous
    # target -> [n_structures, ...] known part added to the prediction before the loss (Sample.offsets)
    offsets: dict[str, torch.Tensor] | None = None
    # per structure: LabelledGraph.eps_ionic (None where the structure has none); None when no structure has
    eps_ionic: list | None = None

    def to(self, device, dtype=None) -> Batch:
        return Batch(
            self.graph.to(device, dtype),
            {k: v.to(device=device, dtype=dtype or v.dtype) for k, v in self.targets.items()},
            {k: v.to(device) for k, v in self.masks.items()},
            None if self.frames is None else self.frames.to(device=device, dtype=dtype or self.frames.dtype),
            None if self.offsets is None else {k: v.to(device=device, dtype=dtype or v.dtype)
                                               for k, v in self.offsets.items()},
            None if self.eps_ionic is None else [
                None if e is None else tuple(t.to(device=device, dtype=dtype or t.dtype) for t in e)
                for e in self.eps_ionic],
        )


def label_graph(sample, specs: list[TensorSpec], cutoff: float, max_neighbors: int | None) -> LabelledGraph:
    """Graph of a data sample with its labels; absent labels are zeros with a False mask."""
    g = build_graph(sample.atoms, cutoff, max_neighbors)
    n = len(sample.atoms)
    targets, masks = {}, {}
    for spec in specs:
        lead = (n,) if spec.per_atom else (1,)
        if spec.name in sample.targets:
            value = np.asarray(sample.targets[spec.name], dtype=np.float64).reshape(lead + spec.shape)
            mask = np.asarray(sample.masks.get(spec.name, np.ones(lead, bool)), dtype=bool).reshape(lead)
        else:
            value, mask = np.zeros(lead + spec.shape), np.zeros(lead, bool)
        targets[spec.name] = torch.as_tensor(value, dtype=torch.float32)
        masks[spec.name] = torch.as_tensor(mask)
    frames = None
    info = getattr(sample, "info", {})
    if (info.get("rotation_ambiguous") or info.get(keys.LOSS_AMBIGUOUS)) and sample.atoms.pbc.all():
        from etgnn_core.tensors.frames import lattice_rotations

        frames = torch.as_tensor(lattice_rotations(np.asarray(sample.atoms.cell)), dtype=torch.float32)
    offsets = {spec.name: torch.as_tensor(np.asarray(off, dtype=np.float64).reshape((1,) + spec.shape),
                                          dtype=torch.float32)
               for spec in specs if not spec.per_atom
               and (off := getattr(sample, "offsets", {}).get(spec.name)) is not None} or None
    ionic = getattr(sample, "eps_ionic", None)
    ionic = None if ionic is None else tuple(torch.as_tensor(np.asarray(x), dtype=torch.float32) for x in ionic)
    return LabelledGraph(g, targets, masks, str(getattr(sample, "id", "")), frames, offsets, ionic)


def collate_labelled(items: list[LabelledGraph]) -> Batch:
    names = items[0].targets.keys()
    return Batch(
        collate([it.graph for it in items]),
        {k: torch.cat([it.targets[k] for it in items]) for k in names},
        {k: torch.cat([it.masks[k] for it in items]) for k in names},
        _stack_frames(items),
        _stack_offsets(items),
        [it.eps_ionic for it in items] if any(it.eps_ionic is not None for it in items) else None,
    )


def _stack_offsets(items: list[LabelledGraph]) -> dict[str, torch.Tensor] | None:
    """target -> [n_structures, ...]; a structure without an offset for a target gets zeros."""
    names = sorted({k for it in items if it.offsets for k in it.offsets})
    if not names:
        return None
    out = {}
    for k in names:
        like = next(it.offsets[k] for it in items if it.offsets and k in it.offsets)
        out[k] = torch.cat([it.offsets[k] if it.offsets and k in it.offsets else torch.zeros_like(like)
                            for it in items])
    return out


def _stack_frames(items: list[LabelledGraph]) -> torch.Tensor | None:
    """[n_structures, n_cand, 3, 3], padded with identities (a repeated candidate changes no minimum)."""
    if all(it.frames is None for it in items):
        return None
    n_cand = max(len(it.frames) if it.frames is not None else 1 for it in items)
    out = torch.eye(3).expand(len(items), n_cand, 3, 3).clone()
    for s, it in enumerate(items):
        if it.frames is not None:
            out[s, : len(it.frames)] = it.frames
    return out
