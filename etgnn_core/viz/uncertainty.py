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


# a std below this fraction of the tensor's scale (its largest |component| or std) is float noise of a
# symmetry zero, or a digit nobody reads next to the others: it sets the last decimal shown instead
REL_FLOOR = 1e-2


def pm_scale(values, stds) -> float:
    """The largest finite |value| or std: what a tensor's precision floor is relative to."""
    a = np.abs(np.concatenate([np.asarray(values, dtype=float).ravel(), np.asarray(stds, dtype=float).ravel()]))
    a = a[np.isfinite(a)]
    return float(a.max()) if a.size else 0.0


def format_pm(values, stds, scale: float | None = None) -> list[str]:
    """"value ± std" strings, both to the decimal of the std's second significant digit (3.010 ± 0.035).

    ``scale`` (default: :func:`pm_scale` of these numbers) floors that precision at ``REL_FLOOR * scale``,
    so a component that is zero by symmetry reads 0.000 ± 0.000, not -1.5e-08 ± 4.8e-07.
    """
    v = np.asarray(values, dtype=float).ravel()
    e = np.asarray(stds, dtype=float).ravel()
    scale = pm_scale(v, e) if scale is None else float(scale)
    out = []
    for x, d in zip(v, e):
        if not (np.isfinite(x) and np.isfinite(d)):
            out.append(f"{x:.4g} ± {d:.2g}")
            continue
        step = max(d, REL_FLOOR * scale)
        dec = 4 if step <= 0 else min(max(0, 1 - int(np.floor(np.log10(step)))), 10)
        x, d = round(x, dec) + 0.0, round(d, dec)  # + 0.0: no "-0.000"
        out.append(f"{x:.{dec}f} ± {d:.{dec}f}")
    return out


def pm_table(T, std, unit: str) -> pd.DataFrame:
    """:func:`tensor_table` of T with every cell written "value ± std" (strings; Voigt for rank 3 and 4;
    :func:`format_pm`'s precision)."""
    a, b = tensor_table(T, unit), tensor_table(std, unit)
    cells = format_pm(a.to_numpy(), b.to_numpy())
    out = pd.DataFrame(np.asarray(cells, dtype=object).reshape(a.shape), index=a.index, columns=a.columns)
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
