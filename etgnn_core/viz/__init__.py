"""Plotly figures and an offline 3Dmol.js viewer shared by the app and notebooks (no Streamlit import)."""

from etgnn_core.viz._common import CRYSTAL_COLOR, NEGATIVE_COLOR, NON_PD_COLOR, POSITIVE_COLOR
from etgnn_core.viz.overlay import diverging_rgb, mesh_normals, structure_frame, with_overlay
from etgnn_core.viz.pca import pca_figure
from etgnn_core.viz.structure import contribution_sign, contributions_figure, structure_figure, tensor_summary
from etgnn_core.viz.surface import piezo_surface_figure
from etgnn_core.viz.tables import tensor_table
from etgnn_core.viz.uncertainty import error_bar_figure, format_pm, outer_tensor, pm_scale, pm_table
from etgnn_core.viz.viewer3d import assets_dir, viewer_html

__all__ = [
    "CRYSTAL_COLOR",
    "NEGATIVE_COLOR",
    "NON_PD_COLOR",
    "POSITIVE_COLOR",
    "assets_dir",
    "contribution_sign",
    "contributions_figure",
    "diverging_rgb",
    "error_bar_figure",
    "format_pm",
    "mesh_normals",
    "outer_tensor",
    "pca_figure",
    "piezo_surface_figure",
    "pm_scale",
    "pm_table",
    "structure_figure",
    "structure_frame",
    "tensor_summary",
    "tensor_table",
    "viewer_html",
    "with_overlay",
]
