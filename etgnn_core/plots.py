"""Notebook helpers: the app's plotly figures straight from a :class:`~etgnn_core.api.Prediction`.

    from etgnn_core.plots import plot_structure, plot_contributions, plot_piezo
    pred = model.predict(atoms, contributions=True)
    plot_structure(pred)                          # atoms + Born-charge ellipsoids
    plot_structure(pred, "dielectric")            # crystal tensor ellipsoid at the cell centre
    plot_contributions(pred, atom=0)              # bonds into atom 0 coloured by their contribution
    plot_piezo(pred)                              # longitudinal piezoelectric surface

Thin wrappers over :mod:`etgnn_core.viz` (the figures the Streamlit app draws): they only pick
the arrays and units out of the prediction; every figure is a ``plotly.graph_objects.Figure``.
"""

from __future__ import annotations

import re

import numpy as np
import plotly.graph_objects as go

from etgnn_core.viz import contributions_figure, piezo_surface_figure, structure_figure

__all__ = ["drawable_tensors", "plot_contributions", "plot_piezo", "plot_structure"]


def _unit_html(unit: str) -> str:
    """``C/m^2`` -> ``C/m<sup>2</sup>`` for plotly labels."""
    return re.sub(r"\^(-?\d+)", r"<sup>\1</sup>", unit or "")


def _shape(pred, name: str) -> tuple[int, ...]:
    arr = np.asarray(pred[name])
    return arr.shape[1:] if pred.per_atom.get(name, False) else arr.shape


def drawable_tensors(pred) -> list[str]:
    """Tensors :func:`plot_structure` can draw: rank-2 (per atom or per structure) and the dipole."""
    return [n for n in pred if _shape(pred, n) == (3, 3) or (n == "dipole" and _shape(pred, n) == (3,))]


def plot_structure(
    pred, tensor: str | None = "born_charges", *, scale: float | None = None, highlight=None, show_cell: bool = True
) -> go.Figure:
    """The structure of ``pred`` with ``tensor`` drawn as the app draws it.

    * per-atom rank-2 tensor (``born_charges``, ``shielding``): one ellipsoid per atom
      (semi-axes ``|eigenvalues|`` of the symmetric part; not positive definite in orange);
    * per-structure rank-2 tensor (``dielectric``, ``polarizability``): one ellipsoid at the centre;
    * ``dipole``: an arrow at the centre (also added to any other view when the model predicts it);
    * ``tensor=None``: the bare structure.

    ``scale`` (Angstrom per tensor unit of the per-atom ellipsoids; default: fit the shortest
    bond), ``highlight`` (atom index or indices) and ``show_cell`` are passed to
    :func:`etgnn_core.viz.structure_figure`.  Raises KeyError for a tensor the model does not
    predict and ValueError for one that is not drawn this way (use :func:`plot_piezo` for the
    piezoelectric tensor).
    """
    dipole = pred["dipole"] if "dipole" in pred and _shape(pred, "dipole") == (3,) else None
    kwargs = dict(dipole=dipole, highlight=highlight, scale=scale, show_cell=show_cell)
    if tensor is None:
        return structure_figure(pred.atoms, **kwargs)
    if tensor not in pred:
        raise KeyError(
            f"{tensor!r} is not predicted by model {pred.model!r}; it can draw "
            f"{drawable_tensors(pred) or 'none'} (tensor=None draws the bare structure)"
        )
    label = f"{tensor} ({pred.units.get(tensor, '')})" if pred.units.get(tensor) else tensor
    shape = _shape(pred, tensor)
    if tensor == "dipole" and shape == (3,):
        return structure_figure(pred.atoms, **kwargs)
    if shape != (3, 3):
        hint = " use plot_piezo(pred)" if tensor == "piezoelectric" else " show it with etgnn_core.viz.tensor_table"
        raise ValueError(
            f"{tensor!r} has shape {shape}: only rank-2 tensors and the dipole are drawn on the structure;{hint}"
        )
    if pred.per_atom.get(tensor, False):
        return structure_figure(pred.atoms, atom_tensors=pred[tensor], tensor_label=label, **kwargs)
    return structure_figure(pred.atoms, crystal_tensor=pred[tensor], tensor_label=label, **kwargs)


def plot_contributions(pred, atom: int, tensor: str | None = None) -> go.Figure:
    """Per-edge (bond) contributions to ``tensor`` of atom ``atom``: red positive, blue negative.

    ``pred`` must come from ``model.predict(..., contributions=True)``.  ``tensor`` defaults to
    ``born_charges`` when predicted, else the model's first tensor.  The contributions of all
    bonds into ``atom`` plus its on-site and acoustic-sum-rule terms add up to its atomic tensor
    (``pred.contributions[tensor].for_atom(atom)`` gives the numbers).
    """
    if not pred.contributions:
        raise ValueError("this prediction has no per-edge contributions: use model.predict(atoms, contributions=True)")
    if tensor is None:
        tensor = "born_charges" if "born_charges" in pred.contributions else next(iter(pred.contributions))
    if tensor not in pred.contributions:
        raise KeyError(f"no contributions for {tensor!r}; model {pred.model!r} gives {list(pred.contributions)}")
    n = len(pred.atoms)
    if not -n <= int(atom) < n:
        raise IndexError(f"atom {atom} is out of range: the structure has {n} atoms")
    atom = int(atom) % n
    c = pred.contributions[tensor].for_atom(atom)
    unit = pred.units.get(tensor, "")
    return contributions_figure(
        pred.atoms,
        atom,
        c["neighbor_positions"],
        c["contributions"],
        label=f"{tensor} ({unit})" if unit else tensor,
        neighbor_indices=c["neighbors"],
    )


def plot_piezo(pred, tensor: str = "piezoelectric", *, n_theta: int = 40, n_phi: int = 80) -> go.Figure:
    """Longitudinal piezoelectric surface ``|e_ijk n_i n_j n_k| n`` coloured by sign."""
    if tensor not in pred:
        raise KeyError(f"{tensor!r} is not predicted by model {pred.model!r}; it predicts {list(pred)}")
    return piezo_surface_figure(pred[tensor], unit=_unit_html(pred.units.get(tensor, "")), n_theta=n_theta, n_phi=n_phi)
