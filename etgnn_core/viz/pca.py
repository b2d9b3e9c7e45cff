"""2D scatter of a low-dimensional embedding (PCA of atomic features)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from etgnn_core.viz import _common as c


def pca_figure(coords, color_values, color_label: str, hover_text, categorical: bool = False) -> go.Figure:
    """2D ``go.Scatter`` of ``coords [n, 2]`` (Streamlit's ``on_select`` works on it).

    ``categorical=True``: one trace per category (e.g. element symbol), coloured by element
    when the category is a chemical symbol.  Otherwise one trace with a continuous colour
    scale.  Every point's ``customdata`` is its row index in ``coords``: use it (not the
    per-trace point index) to map a selection back to atoms.
    """
    xy = np.asarray(coords, dtype=float).reshape(-1, 2)
    vals = np.asarray(color_values)
    hover = np.asarray(hover_text, dtype=object)
    idx = np.arange(len(xy))
    fig = go.Figure()
    if categorical:
        for cat in sorted(set(vals.tolist()), key=str):
            m = vals == cat
            fig.add_trace(
                go.Scatter(
                    x=xy[m, 0],
                    y=xy[m, 1],
                    mode="markers",
                    name=str(cat),
                    customdata=idx[m],
                    marker=dict(size=8, color=_category_color(cat), line=dict(color="#333333", width=0.5)),
                    text=hover[m],
                    hovertemplate="%{text}<extra></extra>",
                )
            )
    else:
        fig.add_trace(
            go.Scatter(
                x=xy[:, 0],
                y=xy[:, 1],
                mode="markers",
                name=color_label,
                customdata=idx,
                showlegend=False,
                marker=dict(
                    size=8,
                    color=vals.astype(float),
                    colorscale="Viridis",
                    showscale=True,
                    colorbar=dict(title=dict(text=color_label)),
                ),
                text=hover,
                hovertemplate="%{text}<extra></extra>",
            )
        )
    fig.update_layout(
        xaxis=dict(title=dict(text="PC 1")),
        yaxis=dict(title=dict(text="PC 2")),
        legend=dict(title=dict(text=color_label)),
        uirevision=c.UIREVISION,
        clickmode="event+select",
        margin=dict(l=10, r=10, t=30, b=10),
    )
    return fig


def _category_color(cat):
    from ase.data import atomic_numbers

    if isinstance(cat, str) and cat in atomic_numbers:
        z = atomic_numbers[cat]
        return "rgb(90,90,90)" if z == 1 else c.element_color(z)  # white H is invisible on white
    return None
