"""Drawing a committee's spread: outer ellipsoids, error bars, and "value ± std" tables.

``std`` arrays are :attr:`etgnn_core.api.Prediction.std`: per-component standard deviations in the
tensor's unit, same shape as the tensor.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from etgnn_core.tensors.algebra import principal_axes
from etgnn_core.viz.tables import tensor_table


def principal_std(T, std) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(eigenvalues [3], eigenvectors [3, 3] as columns, std of each eigenvalue [3]) of a rank-2 tensor.

    First-order propagation with independent components: var(w_n) = sum_jk (v_jn v_kn std_jk)^2.
    """
    w, v = principal_axes(np.asarray(T, dtype=float))
    s = np.asarray(std, dtype=float)
    sw = np.sqrt(np.einsum("jn,kn,jk->n", v**2, v**2, s**2))
    return w, v, sw


def outer_tensor(T, std) -> np.ndarray:
    """[3, 3] tensor whose ellipsoid has semi-axes |w| + std(w) along T's principal axes (the outer shell)."""
    w, v, sw = principal_std(T, std)
    return (v * (np.abs(w) + sw)) @ v.T


def pm_table(T, std, unit: str, digits: int = 4) -> pd.DataFrame:
    """:func:`tensor_table` of T with every cell written "value ± std" (strings; Voigt for rank 3 and 4)."""
    a, b = tensor_table(T, unit), tensor_table(std, unit)
    out = a.copy().astype(object)
    for r in range(a.shape[0]):
        for c in range(a.shape[1]):
            out.iat[r, c] = f"{a.iat[r, c]:.{digits}g} ± {b.iat[r, c]:.2g}"
    out.attrs.update(a.attrs)
    return out


def error_bar_figure(T, std, unit: str, title: str = ""):
    """Plotly bar chart of every independent component (Voigt for rank 3 and 4) with ± std error bars."""
    import plotly.graph_objects as go

    a, b = tensor_table(T, unit), tensor_table(std, unit)
    labels = [f"{r}{c}" if a.attrs["rank"] == 2 else f"{r},{c}" for r in a.index for c in a.columns]
    fig = go.Figure(go.Bar(x=labels, y=a.to_numpy().ravel(),
                           error_y=dict(type="data", array=b.to_numpy().ravel(), visible=True)))
    fig.update_layout(title=title, yaxis_title=unit or "value", height=320, margin=dict(l=40, r=10, t=40, b=40))
    return fig


def atom_error_bar_figure(symbols, iso, iso_std, unit: str, title: str = ""):
    """Per-atom isotropic values (tr/3) with ± std error bars."""
    import plotly.graph_objects as go

    x = [f"{i} {s}" for i, s in enumerate(symbols)]
    fig = go.Figure(go.Bar(x=x, y=iso, error_y=dict(type="data", array=iso_std, visible=True)))
    fig.update_layout(title=title, yaxis_title=unit or "value", height=300, margin=dict(l=40, r=10, t=40, b=40))
    return fig


def iso_std(std) -> np.ndarray:
    """Std of tr(T)/3 from per-component stds [..., 3, 3], components taken as independent."""
    s = np.asarray(std, dtype=float)
    return np.sqrt((np.diagonal(s, axis1=-2, axis2=-1) ** 2).sum(-1)) / 3.0
