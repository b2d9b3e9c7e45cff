"""Embedding map: PCA of the model's atom embeddings over a data set, coloured by element or by a per-atom
quantity (mean BEC diagonal, as in the paper's Figure 5b); selecting a point opens that structure."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from ase.data import chemical_symbols

from app.errors import page_guard, show_error
from app.models import select_model
from app.structures import Entry, dataset_samples, demo_entries, has_data, load_demo, open_entry, uploads
from app.widgets import kept
from etgnn_core.data import list_datasets
from etgnn_core.embedding import EmbeddingTable, compute_embeddings, pca
from etgnn_core.registry import WEIGHTS_FILE
from etgnn_core.viz import pca_figure, viewer_html

VIEW_HEIGHT = 420
GL_ABOVE = 4000  # points: switch the scatter to WebGL above this (SVG is slow with many points)
MAX_MAPS = 6  # maps kept in memory per server process
PICK = "etgnn_emap_pick"  # {"map": key, "row": int}
TRAIN_UPLOADS = "etgnn_train_uploads"  # labelled uploads of the Train page


# ------------------------------------------------------------------------------------------- cache
@st.cache_resource
def _store() -> dict:
    """Process-wide store of computed maps (embeddings are computed once per model and data set)."""
    return {"lock": threading.Lock(), "maps": OrderedDict()}


def get_map(key: tuple, model, structures, labels, bar=None):
    """(EmbeddingTable, PCAResult, seconds) for ``key``, computed once (progress shown in ``bar``)."""
    store = _store()
    with store["lock"]:
        hit = store["maps"].get(key)
        if hit is not None:
            store["maps"].move_to_end(key)
            return hit

    def progress(done, total):
        if bar is not None:
            bar.progress(done / max(total, 1), text=f"Embedding {done} / {total} structures…")

    t0 = time.perf_counter()
    table = compute_embeddings(model, structures, batch_size=128, progress=progress, labels=labels)
    proj = pca(table, 2)
    result = (table, proj, time.perf_counter() - t0)
    with store["lock"]:
        store["maps"][key] = result
        while len(store["maps"]) > MAX_MAPS:
            store["maps"].popitem(last=False)
    if bar is not None:
        bar.empty()
    return result


def model_key(model) -> tuple:
    p = Path(model.info.path).resolve()
    w = p / WEIGHTS_FILE
    return (str(p), w.stat().st_mtime if w.exists() else 0.0)


# ------------------------------------------------------------------------------------------ sources
def _supported(atoms, model) -> bool:
    return not model.elements or set(atoms.numbers.tolist()) <= set(model.elements)


def choose_data(model):
    """(source key, structures (Atoms or Samples), labels or None, description) or None."""
    options = []
    if has_data():
        options.append("Reference data set")
    options += ["Demo structures", "My uploads"]
    source = st.radio("Data", options, horizontal=True, **kept("emap_source", options[0], options))
    if source == "Reference data set":
        infos = list_datasets()
        targets = set(model.units)
        trained_on = str((model.info.card or {}).get("data", {}).get("source", ""))

        def rank(n: str) -> int:  # the model's own training set first, then sets with its targets
            return 0 if n in trained_on else (1 if targets & set(_targets(infos, n)) else 2)

        names = sorted((i.name for i in infos), key=rank)
        c1, c2 = st.columns([3, 1])
        name = c1.selectbox("Reference data set", names, **kept("emap_dataset", names[0], names),
                            format_func=lambda n: f"{n} ({', '.join(_targets(infos, n))})")
        limit = int(c2.number_input("Structures (first N)", 1, 20_000, step=100, **kept("emap_limit", 300),
                                    help="20,000 atoms map in well under a minute on a CPU; the map is computed "
                                         "once and kept."))
        samples, info = dataset_samples(name, limit)
        return (f"data:{name}:{limit}", list(samples), None, f"{info.name}, first {len(samples)} structures")
    if source == "Demo structures":
        demos = demo_entries()
        structs = [load_demo(d["file"]) for d in demos]
        return ("demo", structs, [d["name"] for d in demos], "the demo structures")
    # uploads: structure files of the Predict page and labelled sets of the Train page
    ups = {f"{n} (structures)": ("s", frames) for n, frames in uploads().items()}
    ups.update({f"{n} (labelled)": ("l", u["samples"]) for n, u in st.session_state.get(TRAIN_UPLOADS, {}).items()})
    if not ups:
        st.info("No upload yet: upload structures on the Predict page (sidebar) or a labelled set on the Train page.",
                icon=":material/upload_file:")
        return None
    name = st.selectbox("Upload", list(ups), **kept("emap_upload", list(ups)[-1], list(ups)))
    kind, items = ups[name]
    labels = [f"{name.rsplit(' (', 1)[0]}, frame {i}" for i in range(len(items))] if kind == "s" else None
    return (f"upload:{name}:{len(items)}:{id(items)}", list(items), labels, name)


def _targets(infos, name):
    return next((tuple(i.targets) for i in infos if i.name == name), ())


# ------------------------------------------------------------------------------------------ figure
def to_webgl(fig: go.Figure) -> go.Figure:
    """The same scatter drawn with WebGL (fast with tens of thousands of points; selection still works)."""
    out = go.Figure(layout=fig.layout)
    for tr in fig.data:
        d = tr.to_plotly_json()
        d.pop("type", None)
        out.add_trace(go.Scattergl(**d))
    return out


def map_figure(table: EmbeddingTable, coords: np.ndarray, color: str) -> go.Figure:
    if color == "element":
        fig = pca_figure(coords, table.element, "element", table.hover_text(), categorical=True)
    else:
        unit = table.units.get(color, "")
        label = f"{color} ({unit})" if unit else color
        fig = pca_figure(coords, table.quantities[color], label, table.hover_text(color))
        fig.update_traces(marker_colorbar_title_side="right")  # a long title must not cover the points
    size = 8 if len(table) < 2000 else (5 if len(table) < 10_000 else 3)
    fig.update_traces(marker_size=size)
    fig.update_layout(height=560, dragmode="zoom")
    return to_webgl(fig) if len(table) > GL_ABOVE else fig


def selected_row(event, fig: go.Figure) -> tuple[int | None, int]:
    """Row of the first selected point (from its customdata, else its trace and point index), and the count."""
    sel = getattr(event, "selection", None) or (event.get("selection") if isinstance(event, dict) else None)
    points = list((sel or {}).get("points", []) or [])
    if not points:
        return None, 0
    p = points[0]
    cd = p.get("customdata")
    if isinstance(cd, (list, tuple)):
        cd = cd[0] if cd else None
    if cd is not None:
        return int(cd), len(points)
    cn, pi = p.get("curve_number"), p.get("point_index", p.get("point_number"))
    if cn is None or pi is None or cn >= len(fig.data):
        return None, len(points)
    return int(fig.data[cn].customdata[pi]), len(points)


# ------------------------------------------------------------------------------------ opened atom
def show_atom(model, table: EmbeddingTable, structures, row: int) -> None:
    s, a = int(table.structure[row]), int(table.atom[row])
    item = structures[s]
    atoms = getattr(item, "atoms", item)
    el = chemical_symbols[int(table.numbers[row])]
    st.markdown(f"#### {table.structure_label[row]} — atom #{a} ({el})")
    pred = model.predict(atoms)
    rank2 = [t for t in pred if pred.per_atom[t] and np.ndim(pred[t]) == 3]
    T = pred[rank2[0]] if rank2 else None
    html = viewer_html(atoms, view_id="emap-view", highlight=a, atom_tensors=T,
                       tensor_label=rank2[0] if rank2 else "", height=VIEW_HEIGHT)
    st.iframe(html, height=VIEW_HEIGHT + 40)
    st.caption(f"Gold halo: the selected atom. {len(atoms)} atoms, {atoms.get_chemical_formula()}"
               + (f"; ellipsoids: predicted {rank2[0]}." if rank2 else "."))
    vals = {k: float(v[row]) for k, v in table.quantities.items()}
    if vals:
        st.dataframe([{"quantity": k, "value": round(v, 4), "unit": table.units.get(k, "")} for k, v in vals.items()],
                     hide_index=True)
    for t in rank2[:1]:
        st.markdown(f"Predicted {t} of atom #{a} ({pred.units.get(t, '')}):")
        st.dataframe(np.round(pred[t][a], 4), hide_index=False)
    if st.button("Open in the Atom inspector", key="emap_open_inspector", icon=":material/hub:"):
        entry = Entry(f"emap:{table.structure_label[row]}", str(table.structure_label[row]), atoms.copy(),
                      "embedding map")
        open_entry(entry, atom=a)
        st.switch_page("views/inspector.py")


def pick_by_index(table: EmbeddingTable, key: tuple) -> None:
    """Keyboard way to open an atom (and the way the tests open one)."""
    with st.expander("Open an atom by index"):
        c1, c2, c3 = st.columns([2, 2, 1])
        s = int(c1.number_input(f"Structure (0–{table.n_structures - 1})", 0, max(table.n_structures - 1, 0), 0,
                                key="emap_pick_structure"))
        n_atoms = int((table.structure == s).sum())
        a = int(c2.number_input(f"Atom (0–{n_atoms - 1})", 0, max(n_atoms - 1, 0), 0, key="emap_pick_atom"))
        if c3.button("Open", key="emap_pick_open"):
            st.session_state[PICK] = {"map": key, "row": table.row_of(s, min(a, n_atoms - 1))}


# -------------------------------------------------------------------------------------------- page
def page() -> None:
    st.title("Embedding map")
    st.caption("Each point is one atom: its embedding (the node features the model builds from its "
               "neighbourhood, the input of the on-site output block) projected on the first two principal "
               "components. Atoms the model sees alike sit together. Click a point to open its structure.")
    model = select_model()
    if model is None:
        return
    picked = choose_data(model)
    if picked is None:
        return
    src_key, structures, labels, description = picked
    keep = [i for i, s in enumerate(structures) if _supported(getattr(s, "atoms", s), model)]
    if len(keep) < len(structures):
        st.caption(f"{len(structures) - len(keep)} of {len(structures)} structures skipped: elements this model "
                   "was not trained on.")
        structures = [structures[i] for i in keep]
        labels = [labels[i] for i in keep] if labels is not None else None
    if not structures:
        st.warning(f"No structure of {description} can be given to {model.name}: its elements are "
                   f"{', '.join(chemical_symbols[z] for z in model.elements)}.")
        return
    key = (*model_key(model), src_key, len(structures))
    bar = st.empty()
    try:
        table, proj, seconds = get_map(key, model, structures, labels, bar)
    except Exception as exc:
        bar.empty()
        show_error(exc, "embedding map")
        return
    colors = ["element", *table.quantities]
    default = next((c for c in colors if c.startswith("mean diagonal born_charges") and "label" not in c), "element")
    c1, c2 = st.columns([2, 3])
    color = c1.selectbox("Colour by", colors, **kept("emap_color", default, colors),
                         help="Per-atom quantities: mean of the diagonal (tr/3) of per-atom rank-2 tensors, "
                              "norm of vectors; '(label)' uses the data set's values.")
    ev = proj.explained
    c2.caption(f"{len(table):,} atoms from {table.n_structures:,} structures ({description}); embeddings "
               f"{table.embeddings.shape[1]}-dimensional, computed once in {seconds:.1f} s. PC 1 explains "
               f"{100 * ev[0]:.1f}% and PC 2 {100 * ev[1]:.1f}% of the variance.")
    fig = map_figure(table, proj.coords, color)
    left, right = st.columns([3, 2])
    with left:
        event = st.plotly_chart(fig, key="emap_chart", on_select="rerun", selection_mode=("points", "box", "lasso"),
                                config={"displaylogo": False, "scrollZoom": True})
        pick_by_index(table, key)
    row, count = selected_row(event, fig)
    if row is not None:
        prev = st.session_state.get("etgnn_emap_last_sel")
        if prev != (key, row, count):  # a new selection on the chart wins over an older index pick
            st.session_state["etgnn_emap_last_sel"] = (key, row, count)
            st.session_state[PICK] = {"map": key, "row": row}
    pick = st.session_state.get(PICK)
    with right:
        if not pick or pick.get("map") != key or not 0 <= pick.get("row", -1) < len(table):
            st.info("Click a point (or box-select) to open that structure with the atom highlighted.",
                    icon=":material/ads_click:")
            return
        if count > 1:
            st.caption(f"{count} atoms selected; showing the first.")
        with page_guard("structure view"):
            show_atom(model, table, structures, int(pick["row"]))


with page_guard():
    page()
