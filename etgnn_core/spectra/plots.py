"""Plotly figure of an IR spectrum and the displacement arrows of one mode (no Streamlit import)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from ase.data import chemical_symbols

STICK_COLOR, LINE_COLOR, PICK_COLOR = "#2166ac", "#444444", "#c0392b"


def spectrum_figure(res, fwhm_cm1: float, selected: int | None = None) -> go.Figure:
    """Broadened spectrum (line) and one stick per optical mode (a clickable marker at its top; the
    marker's customdata is the mode index).  Intensities in e^2/amu, frequencies in cm^-1."""
    grid, curve = res.spectrum(fwhm_cm1)
    optical = np.nonzero(~res.selection.acoustic & (res.frequencies_cm1 > 0))[0]
    f, inten = res.frequencies_cm1[optical], res.ir_intensities[optical]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=grid, y=curve, mode="lines", line=dict(color=LINE_COLOR, width=1.5),
                             name=f"Lorentzian, FWHM {fwhm_cm1:g} cm<sup>-1</sup>", hoverinfo="skip"))
    xs, ys = [], []
    for x, y in zip(f, inten):
        xs += [x, x, None]
        ys += [0.0, y, None]
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line=dict(color=STICK_COLOR, width=2), name="modes",
                             hoverinfo="skip"))
    colors = [PICK_COLOR if m == selected else STICK_COLOR for m in optical]
    fig.add_trace(go.Scatter(
        x=f, y=inten, mode="markers", marker=dict(size=[13 if m == selected else 8 for m in optical], color=colors),
        customdata=optical, name="click a mode", showlegend=False, unselected=dict(marker=dict(opacity=1.0)),
        hovertemplate="mode %{customdata}<br>%{x:.1f} cm<sup>-1</sup><br>I = %{y:.4f} e<sup>2</sup>/amu<extra></extra>",
    ))
    fig.update_layout(xaxis_title="frequency (cm<sup>-1</sup>)", yaxis_title="IR intensity (e<sup>2</sup>/amu)",
                      height=380, margin=dict(l=60, r=20, t=30, b=50), clickmode="event+select", dragmode="zoom",
                      legend=dict(orientation="h", y=1.08))
    return fig


#: a mode weaker than this fraction of the strongest is IR-silent: its atoms' dipole changes cancel, and
#: shares (q_a·p/|p|², with |p| ~ 0) would be large numbers of opposite sign that mean nothing
SILENT = 1e-3


def is_silent(res, m: int) -> bool:
    return bool(res.ir_intensities[m] <= SILENT * max(float(res.ir_intensities.max()), 1e-300))


def mode_shares_table(res, m: int) -> pd.DataFrame:
    """Per atom of mode ``m``: element, displacement |e/sqrt(M)| (arbitrary norm), share of the intensity
    (NaN for an IR-silent mode, see :data:`SILENT`)."""
    u = res.eigenvectors[m].real / np.sqrt(res.masses)[:, None]  # [n, 3]
    shares = np.full(len(res.atoms), np.nan) if is_silent(res, m) else res.atom_shares[m]
    return pd.DataFrame({
        "atom": np.arange(len(res.atoms)),
        "element": [chemical_symbols[z] for z in res.atoms.numbers],
        "displacement (rel.)": np.linalg.norm(u, axis=1) / max(float(np.linalg.norm(u, axis=1).max()), 1e-300),
        "share of intensity": shares,
        "Z* (tr/3, e)": np.trace(res.born_charges, axis1=1, axis2=2) / 3.0,
    })


def mode_arrows(res, m: int, length: float = 1.2, color: str = "#c0392b") -> list[dict]:
    """Arrows (for etgnn_core.viz.with_overlay) along mode ``m``'s displacements e/sqrt(M); the largest is
    ``length`` Å; each label gives the atom, its displacement and its share of the intensity."""
    u = res.eigenvectors[m].real / np.sqrt(res.masses)[:, None]  # [n, 3]
    norms = np.linalg.norm(u, axis=1)
    scale = length / max(float(norms.max()), 1e-300)
    arrows = []
    for a, (p, d) in enumerate(zip(res.atoms.positions, u)):
        if norms[a] * scale < 0.05:  # an atom that does not move in this mode
            continue
        sym = chemical_symbols[res.atoms.numbers[a]]
        share = "IR-silent mode" if is_silent(res, m) else f"share {100 * res.atom_shares[m, a]:.0f} %"
        arrows.append(dict(start=p, end=p + scale * d, radius=0.06, color=color, label=f"{sym}{a}: {share}"))
    return arrows
