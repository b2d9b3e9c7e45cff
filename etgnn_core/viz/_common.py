"""Small helpers shared by the figure modules (colours, sizes, formatting)."""

from __future__ import annotations

import numpy as np
from ase.data import chemical_symbols, covalent_radii
from ase.data.colors import jmol_colors

from etgnn_core.structure import is_periodic

POSITIVE_COLOR = "#c0392b"  # red: positive contribution / value
NEGATIVE_COLOR = "#2166ac"  # blue: negative
ELLIPSOID_COLOR = "#7f8c8d"  # grey: positive-definite tensor
NON_PD_COLOR = "#e67e22"  # orange: not positive definite
CRYSTAL_COLOR = "#8e44ad"  # purple: crystal (per-structure) tensor
CELL_COLOR = "#444444"
DIVERGING = "RdBu_r"  # blue (negative) - white - red (positive)

UIREVISION = "etgnn"  # stable: plotly keeps the user's camera/zoom across Streamlit reruns


def element_color(z: int) -> str:
    r, g, b = (int(round(255 * c)) for c in jmol_colors[int(z)])
    return f"rgb({r},{g},{b})"


def marker_size(z) -> np.ndarray:
    """Scatter3d marker size (pixels) growing with the covalent radius."""
    return 8.0 + 14.0 * covalent_radii[np.asarray(z, dtype=int)]


def fmt_vec(v, digits: int = 3) -> str:
    return "(" + ", ".join(f"{x:.{digits}f}" for x in np.asarray(v, dtype=float).ravel()) + ")"


def fmt_matrix(m, digits: int = 3) -> str:
    """Rows of a small array as hover text lines (``<br>`` separated)."""
    m = np.asarray(m, dtype=float)
    if m.ndim <= 1:
        return fmt_vec(m, digits)
    return "<br>".join(fmt_vec(row, digits) for row in m.reshape(m.shape[0], -1))


def atom_label(atoms, index: int) -> str:
    z = int(atoms.numbers[index])
    return f"#{index} {chemical_symbols[z]}<br>pos {fmt_vec(atoms.positions[index])} Å"


def cell_edges(cell) -> np.ndarray:
    """The 12 edges of the parallelepiped spanned by the rows of ``cell`` as ``[12, 2, 3]``."""
    cell = np.asarray(cell, dtype=float)
    corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=float)
    edges = []
    for a in range(8):
        for b in range(a + 1, 8):
            if np.abs(corners[a] - corners[b]).sum() == 1:
                edges.append((corners[a] @ cell, corners[b] @ cell))
    return np.array(edges)


def polyline(segments) -> tuple[list, list, list]:
    """x, y, z lists joining ``[k, 2, 3]`` segments with None gaps (one plotly line trace)."""
    xs: list = []
    ys: list = []
    zs: list = []
    for p, q in segments:
        xs += [p[0], q[0], None]
        ys += [p[1], q[1], None]
        zs += [p[2], q[2], None]
    return xs, ys, zs


def structure_center(atoms) -> np.ndarray:
    """Centre of the cell when periodic, else the centre of the atom positions."""
    if is_periodic(atoms):
        return 0.5 * np.asarray(atoms.cell).sum(axis=0)
    return atoms.positions.mean(axis=0)


def structure_extent(atoms) -> float:
    pts = atoms.positions
    if is_periodic(atoms):
        pts = np.concatenate([pts, cell_edges(atoms.cell).reshape(-1, 3)])
    return max(float(np.ptp(pts, axis=0).max()), 1.0)
