"""Per-species normalisation and baselines, computed on the training split only.

* ``scales[t]``: standard deviation of the target components after removing the species
  (per-atom) or composition (per-structure) isotropic mean, so the network outputs O(1).
* species bias: the isotropic on-site coefficient of each element (e.g. the species-mean
  Born charge trace / 3), fitted by least squares for per-structure targets.
* baselines: species-mean tensor (per-atom targets) or mean tensor (per-structure targets).
"""

from __future__ import annotations

import numpy as np
import torch

from etgnn_core.model.blocks import N_ELEMENTS
from etgnn_core.tensors.specs import TensorSpec
from etgnn_core.train.batching import LabelledGraph


def isotropic_part(values: np.ndarray, rank: int) -> np.ndarray:
    """Trace / 3 for rank 2, the value itself for rank 0; zeros otherwise.  values: [n, 3^rank]."""
    if rank == 0:
        return values.reshape(-1)
    if rank == 2:
        return np.trace(values.reshape(-1, 3, 3), axis1=1, axis2=2) / 3.0
    return np.zeros(len(values))


def _per_atom_arrays(items: list[LabelledGraph], spec: TensorSpec):
    z = np.concatenate([it.graph.atomic_numbers.numpy() for it in items])
    y = np.concatenate([it.targets[spec.name].numpy() for it in items]).astype(np.float64)
    m = np.concatenate([it.masks[spec.name].numpy() for it in items])
    return z[m], y[m].reshape(int(m.sum()), *spec.shape)


def _composition(items: list[LabelledGraph], spec: TensorSpec) -> tuple[np.ndarray, np.ndarray]:
    """Composition matrix [n_structures, N_ELEMENTS] (fractions for 'mean', counts for 'sum') and labels."""
    rows, ys = [], []
    for it in items:
        if not bool(it.masks[spec.name].all()):
            continue
        counts = np.bincount(it.graph.atomic_numbers.numpy(), minlength=N_ELEMENTS).astype(np.float64)
        rows.append(counts / counts.sum() if spec.reduce == "mean" else counts)
        ys.append(it.targets[spec.name].numpy()[0].astype(np.float64))
    return np.array(rows), np.array(ys)


def fit_normalization(items: list[LabelledGraph], spec: TensorSpec) -> tuple[float, np.ndarray]:
    """(scale, species isotropic bias [N_ELEMENTS]) for one target from the training items."""
    bias = np.zeros(N_ELEMENTS)
    if spec.per_atom:
        z, y = _per_atom_arrays(items, spec)
        iso = isotropic_part(y.reshape(len(y), -1), spec.rank)
        if spec.rank in (0, 2):
            for el in np.unique(z):
                bias[el] = iso[z == el].mean()
        resid = y.reshape(len(y), -1) - _iso_tensor(bias[z], spec.rank)
    else:
        comp, y = _composition(items, spec)
        flat = y.reshape(len(y), -1)
        if spec.rank in (0, 2) and len(y):
            iso = isotropic_part(flat, spec.rank)
            bias, *_ = np.linalg.lstsq(comp, iso, rcond=None)
        resid = flat - _iso_tensor(comp @ bias, spec.rank) if len(y) else flat
    scale = float(np.sqrt(np.mean(resid**2))) if resid.size else 1.0
    return (scale if scale > 1e-12 else 1.0), bias


def _iso_tensor(iso: np.ndarray, rank: int) -> np.ndarray:
    if rank == 0:
        return iso.reshape(-1, 1)
    if rank == 2:
        return (iso[:, None, None] * np.eye(3)).reshape(len(iso), 9)
    return np.zeros((len(iso), 3**rank))


def apply_normalization(model, items: list[LabelledGraph]) -> dict[str, float]:
    """Set ``model.scales`` and the isotropic species bias of every target; returns the scales."""
    fits = [fit_normalization(items, spec) for spec in model.config.targets]  # (scale, bias) per target
    with torch.no_grad():
        for i, (scale, _) in enumerate(fits):
            model.scales[i] = scale
    _set_bias(model, fits, slice(None))
    return {spec.name: scale for spec, (scale, _) in zip(model.config.targets, fits)}


def refit_species_bias(model, items: list[LabelledGraph], numbers: list[int]) -> None:
    """Re-fit the isotropic species bias of the elements ``numbers`` only, in the model's own scales."""
    fits = {i: (float(model.scales[i]), fit_normalization(items, spec)[1]) for i, spec, _ in _bias_columns(model)}
    _set_bias(model, fits, numbers)


def _bias_columns(model):
    """(target index, spec, species_bias column) of every target with an isotropic on-site bias."""
    col = 0
    for i, spec in enumerate(model.config.targets):
        if spec.n_self and spec.rank in (0, 2):
            yield i, spec, col
        col += spec.n_self


def _set_bias(model, fits, rows) -> None:
    """species_bias[rows] = bias / scale for every target with an on-site bias; ``fits[i]`` = (scale, bias)."""
    with torch.no_grad():
        for i, _, col in _bias_columns(model):
            scale, bias = fits[i]
            model.species_bias.weight[rows, col] = torch.as_tensor(bias[rows] / scale,
                                                                   dtype=model.species_bias.weight.dtype)


def average_degree(items: list[LabelledGraph]) -> float:
    edges = sum(it.graph.n_edges for it in items)
    atoms = sum(it.graph.n_atoms for it in items)
    return max(edges / max(atoms, 1), 1.0)


class Baseline:
    """Species-mean tensor (per-atom) or mean tensor (per-structure), fitted on training items."""

    def __init__(self, items: list[LabelledGraph], spec: TensorSpec):
        self.spec = spec
        if spec.per_atom:
            z, y = _per_atom_arrays(items, spec)
            self.by_species = {int(el): y[z == el].mean(axis=0) for el in np.unique(z)}
            self.fallback = y.mean(axis=0) if len(y) else np.zeros(spec.shape)
        else:
            _, y = _composition(items, spec)
            self.mean = y.mean(axis=0) if len(y) else np.zeros(spec.shape)

    def predict(self, item: LabelledGraph) -> np.ndarray:
        if self.spec.per_atom:
            z = item.graph.atomic_numbers.numpy()
            return np.stack([self.by_species.get(int(el), self.fallback) for el in z])
        return self.mean[None]
