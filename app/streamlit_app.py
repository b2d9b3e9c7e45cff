"""ETGNN Studio: ``streamlit run app`` from the repository root opens this entry script.

Pages are registered with ``st.navigation`` in this order -- Predict, Atom inspector, Embedding
map, Spectra, Train, Learn -- each only when its file exists in app/views/.  Shared helpers live
in app/, one module per concern: errors.py (show_error, page_guard), widgets.py (keep_widget, kept),
models.py (model picker), structures.py (structure picker), prediction.py (predict, memo),
viewer.py (clickable 3D viewer), trainings.py and settings.py (paths and limits).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run app` puts app/ (not the repository root) on sys.path
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from etgnn_core.device import tune_cpu_allocator  # noqa: E402

tune_cpu_allocator()  # the app owns its process: freed memory is kept for the next prediction

PAGES = (  # file in app/views (not "pages": Streamlit would also auto-register that folder), title, icon, url path
    ("predict.py", "Predict", ":material/science:", "predict"),
    ("inspector.py", "Atom inspector", ":material/hub:", "inspector"),
    ("embedding_map.py", "Embedding map", ":material/scatter_plot:", "embedding_map"),
    ("spectra.py", "Spectra", ":material/ssid_chart:", "spectra"),
    ("train.py", "Train", ":material/model_training:", "train"),
    ("learn.py", "Learn", ":material/school:", "learn"),
)



def _icon():
    """A small drawn favicon (a material-icon favicon would be fetched from fonts.gstatic.com)."""
    import numpy as np
    from PIL import Image

    y, x = np.mgrid[-1:1:32j, -1:1:32j]
    inside = (x / 0.95) ** 2 + (y / 0.6) ** 2 <= 1.0
    img = np.zeros((32, 32, 4), dtype=np.uint8)
    img[inside] = (142, 68, 173, 255)  # the crystal-ellipsoid purple
    return Image.fromarray(img, "RGBA")


st.set_page_config(page_title="ETGNN Studio", page_icon=_icon(), layout="wide")

here = Path(__file__).resolve().parent
pages = [
    st.Page(f"views/{file}", title=title, icon=icon, url_path=url, default=(i == 0))
    for i, (file, title, icon, url) in enumerate(p for p in PAGES if (here / "views" / p[0]).exists())
]
if not pages:
    st.error("No page found in app/views.")
else:
    nav = st.navigation(pages)
    st.sidebar.caption("ETGNN Studio — edge-based tensor GNN predictions of Born charges, dielectric, "
                       "piezoelectric and other tensors.")
    try:
        nav.run()
    except Exception as exc:  # a page's own guard missed it: still a one-line message, never a traceback
        from app.errors import show_error

        show_error(exc, "this page")
