"""Longitudinal piezoelectric surface."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from etgnn_core.tensors.algebra import longitudinal_surface
from etgnn_core.viz import _common as c


def piezo_surface_figure(e, *, unit: str = "C/m<sup>2</sup>", n_theta: int = 40, n_phi: int = 80) -> go.Figure:
    """Surface ``r(n) = |e_ijk n_i n_j n_k| n`` of ``e [3, 3, 3]`` (or Voigt ``[3, 6]``).

    Coloured by the signed value (red positive, blue negative, white zero).  An all-zero tensor
    (e.g. a centrosymmetric crystal) gives a point and an explanatory annotation.
    """
    x, y, z, value = longitudinal_surface(e, n_theta=n_theta, n_phi=n_phi)
    vmax = float(np.abs(value).max())
    fig = go.Figure(
        go.Surface(
            x=x,
            y=y,
            z=z,
            surfacecolor=value,
            colorscale=c.DIVERGING,
            cmin=-vmax,
            cmax=vmax,
            cmid=0.0,
            colorbar=dict(title=dict(text=f"e<sub>ijk</sub>n<sub>i</sub>n<sub>j</sub>n<sub>k</sub><br>({unit})")),
            hovertemplate="n·e·n·n = %{surfacecolor:.4g}<extra></extra>",
            name="longitudinal surface",
        )
    )
    r = max(vmax, 1e-12) * 1.05
    axis = dict(range=[-r, r], zeroline=True)
    fig.update_layout(
        title=dict(
            text="longitudinal piezoelectric response e<sub>ijk</sub>n<sub>i</sub>n<sub>j</sub>n<sub>k</sub>"
            " (radius = |value|, colour = sign)",
            font=dict(size=13),
        ),
        scene=dict(
            xaxis=dict(title=dict(text="x"), **axis),
            yaxis=dict(title=dict(text="y"), **axis),
            zaxis=dict(title=dict(text="z"), **axis),
            aspectmode="cube",
        ),
        uirevision=c.UIREVISION,
        margin=dict(l=0, r=0, t=40, b=0),
    )
    if vmax == 0:
        fig.add_annotation(
            text="all components are zero (e.g. a centrosymmetric crystal)",
            showarrow=False,
            xref="paper",
            yref="paper",
            x=0.5,
            y=0.5,
        )
    return fig
