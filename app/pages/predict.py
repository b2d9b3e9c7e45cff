"""Predict page: pick or upload a structure, predict every tensor of a model, see them in 3D, download them."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st
from ase.data import chemical_symbols

from app.state import (
    Entry,
    keep_widget,
    memo,
    page_guard,
    predict,
    prediction_key,
    select_model,
    select_structure,
    show_error,
)
from etgnn_core import keys
from etgnn_core.io import phonopy_born_text, prediction_record, to_json, write_extxyz
from etgnn_core.structure import is_periodic
from etgnn_core.tensors.algebra import is_positive_definite, isotropic_value
from etgnn_core.viz import piezo_surface_figure, structure_figure, tensor_table, viewer_html

VIEW_HEIGHT = 520
XYZ = "xyz"
PLOTLY_CONFIG = {"displaylogo": False, "scrollZoom": True}


# ------------------------------------------------------------------------------------------ tables
def per_atom_table(atoms, arr: np.ndarray, mask=None) -> pd.DataFrame:
    """One row per atom: index, element, components (row-major), isotropic value / norm."""
    arr = np.asarray(arr, dtype=float)
    df = pd.DataFrame({"atom": np.arange(len(atoms)), "element": [chemical_symbols[z] for z in atoms.numbers]})
    if arr.ndim == 3:
        for i in range(3):
            for j in range(3):
                df[XYZ[i] + XYZ[j]] = arr[:, i, j]
        df["iso (tr/3)"] = isotropic_value(arr)
        df["pos. def."] = is_positive_definite(arr)
    elif arr.ndim == 2:
        for i in range(arr.shape[1]):
            df[XYZ[i] if arr.shape[1] == 3 else str(i)] = arr[:, i]
        df["norm"] = np.linalg.norm(arr, axis=1)
    else:
        df["value"] = arr.reshape(len(atoms), -1)[:, 0]
    if mask is not None:
        df = df[np.asarray(mask, dtype=bool)]
    return df


def mae(pred, ref, mask=None) -> float:
    p, r = np.asarray(pred, dtype=float), np.asarray(ref, dtype=float)
    if mask is not None and p.ndim and len(p) == len(mask):
        p, r = p[np.asarray(mask, dtype=bool)], r[np.asarray(mask, dtype=bool)]
    return float(np.mean(np.abs(p - r))) if p.size else float("nan")


NOTES = {
    keys.BORN_CHARGES: "Z*[i, j]: row i = electric field / polarization direction, column j = displacement "
    "direction (VASP / phonopy convention).",
    keys.SHIELDING: "σ[i, j] in ppm (isotropic shielding = tr/3).",
}


def show_tensor(name: str, value: np.ndarray, unit: str, per_atom: bool, entry: Entry, atoms) -> None:
    ref = entry.reference.get(name)
    ref_unit = entry.reference_units.get(name, unit)
    mask = entry.masks.get(name)
    if ref is not None and np.shape(ref) != np.shape(value):
        st.warning(f"The DFT {name} has shape {np.shape(ref)}, the prediction {np.shape(value)}: not compared.")
        ref = None
    cols = st.columns(2) if ref is not None else [st.container()]
    with cols[0]:
        st.markdown(f"**Predicted {name}** ({unit or 'no unit'})")
        _tensor_view(name, value, unit, per_atom, atoms, None)
    if ref is not None:
        with cols[1]:
            st.markdown(f"**DFT {name}** ({ref_unit})")
            _tensor_view(name, ref, ref_unit, per_atom, atoms, mask)
        st.caption(f"Mean absolute difference prediction vs DFT: **{mae(value, ref, mask):.4g}** {unit}"
                   + (f" (over the {int(np.sum(mask))} labelled atoms)" if mask is not None else ""))
    if name in NOTES:
        st.caption(NOTES[name])


def _tensor_view(name, value, unit, per_atom, atoms, mask) -> None:
    value = np.asarray(value, dtype=float)
    if per_atom:
        df = per_atom_table(atoms, value, mask).round(4)
        st.dataframe(df, hide_index=True, height=min(38 + 35 * len(df), 420))
    elif value.ndim == 0 or value.size == 1:
        st.metric(name, f"{float(value.reshape(-1)[0]):.6g} {unit}")
    else:
        df = tensor_table(value, unit)
        st.dataframe(df.round(4))
        if df.attrs.get("note"):
            st.caption(df.attrs["note"])


# --------------------------------------------------------------------------------------- 3D views
def view_options(pred) -> dict[str, tuple]:
    """label -> (kind, tensor name) of every 3D view this prediction offers, best first."""
    opts: dict[str, tuple] = {}
    shapes = {n: np.shape(v) for n, v in pred.items()}
    for n, s in shapes.items():
        if pred.per_atom[n] and s[1:] == (3, 3):
            opts[f"{n}: one ellipsoid per atom"] = ("atoms", n)
    for n, s in shapes.items():
        if not pred.per_atom[n] and s == (3, 3):
            extra = " + dipole arrow" if shapes.get(keys.DIPOLE) == (3,) else ""
            opts[f"{n}: crystal ellipsoid{extra}"] = ("crystal", n)
    if shapes.get(keys.DIPOLE) == (3,):
        opts["dipole: arrow"] = ("dipole", keys.DIPOLE)
    for n, s in shapes.items():
        if s == (3, 3, 3):
            opts[f"{n}: longitudinal surface (colour = sign)"] = ("piezo", n)
    opts["structure only"] = ("structure", None)
    return opts


def non_pd_caption(name: str, T: np.ndarray) -> str:
    bad = ~np.asarray(is_positive_definite(T), dtype=bool)
    if not bad.any():
        return "Every atom's tensor is positive definite (grey)."
    text = (f"{int(bad.sum())} of {len(T)} atom tensors are **not positive definite**: drawn in orange "
            "with the absolute eigenvalues as semi-axes, not hidden.")
    if name == keys.BORN_CHARGES:
        text += " Expected for anions, whose Born charges are negative."
    return text


def draw_3d(pred, entry: Entry, pkey: tuple) -> None:
    atoms = pred.atoms
    opts = view_options(pred)
    labels = list(opts)
    c1, c2 = st.columns([3, 2])
    label = c1.selectbox("3D view", labels, **keep_widget("predict_view", "etgnn_predict_view", labels))
    kind, name = opts[label]
    renderer = "plotly"
    if kind in ("atoms", "structure"):
        r_opts = ["3Dmol.js", "plotly (hover shows values)"]
        renderer = c2.radio("Renderer", r_opts, horizontal=True,
                            **keep_widget("predict_renderer", "etgnn_predict_renderer", r_opts))
    unit = pred.units.get(name, "") if name else ""
    tlabel = f"{name} ({unit})" if unit else (name or "")
    if kind == "atoms":
        T = pred[name]
        st.caption(f"Ellipsoid semi-axes = |eigenvalues| of the symmetric part of each atom's **{name}** tensor "
                   f"({unit}), along its principal axes; the cell is drawn in grey. " + non_pd_caption(name, T))
    elif kind == "crystal":
        st.caption(f"One ellipsoid at the centre: semi-axes = |eigenvalues| of the crystal **{name}** tensor ({unit}) "
                   "along its principal axes (hover for values); purple: positive definite, orange: not.")
    elif kind == "dipole":
        st.caption(f"The arrow is the predicted dipole ({unit}), drawn from the centre; its length is scaled "
                   "to the structure (the value is in the legend).")
    elif kind == "piezo":
        st.caption("Longitudinal piezoelectric response e·n·n·n for every direction n: radius = |value|, "
                   "red = positive, blue = negative.")
    if renderer == "3Dmol.js":
        T = pred[name] if kind == "atoms" else None
        html = memo("viewer", (*pkey, kind, name),
                    lambda: viewer_html(atoms, view_id="predict-view", atom_tensors=T, tensor_label=tlabel,
                                        height=VIEW_HEIGHT))
        st.iframe(html, height=VIEW_HEIGHT + 40)
        return
    dipole = pred[keys.DIPOLE] if keys.DIPOLE in pred and np.shape(pred[keys.DIPOLE]) == (3,) else None

    def make():
        if kind == "piezo":
            return piezo_surface_figure(pred[name], unit=unit)
        if kind == "atoms":
            return structure_figure(atoms, atom_tensors=pred[name], tensor_label=tlabel)
        if kind == "crystal":
            return structure_figure(atoms, crystal_tensor=pred[name], tensor_label=tlabel, dipole=dipole)
        if kind == "dipole":
            return structure_figure(atoms, dipole=dipole)
        return structure_figure(atoms)

    fig = memo("figure", (*pkey, kind, name), make)
    fig.update_layout(height=VIEW_HEIGHT + 40)
    st.plotly_chart(fig, key="predict_plotly", config=PLOTLY_CONFIG)


# -------------------------------------------------------------------------------------- downloads
def file_stem(entry: Entry, model_name: str) -> str:
    """``<structure>_<model>``: the demo / uploaded file's stem, or ``<data set>_<index>``."""
    kind, _, rest = entry.key.partition(":")
    name, _, index = rest.rpartition("#") if "#" in rest else (rest, "", "")
    if kind == "data":
        stem = f"{name}_{index}"
    else:
        stem = Path(name).stem if Path(name).suffix.lower() in (".cif", ".xyz", ".extxyz", ".json", ".vasp") else name
        if kind == "upload" and len(entry.label.split(", frame ")) > 1:
            stem += f"_frame{index}"
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("_.") or "structure"
    return f"{stem}_{model_name}"


def exports(pred, entry: Entry) -> dict[str, tuple]:
    """file kind -> (data or None, file name, mime, reason when unavailable)."""
    stem = file_stem(entry, pred.model)
    atoms = pred.atoms
    rec = prediction_record(atoms, pred.tensors, pred.units, pred.per_atom, pred.model, source=entry.label)
    out = {"JSON": (to_json(rec, indent=1), f"{stem}.json", "application/json", "")}
    buf = io.StringIO()
    write_extxyz(buf, [(atoms, pred.tensors, pred.per_atom, pred.units)])
    out["extended XYZ"] = (buf.getvalue(), f"{stem}.extxyz", "text/plain", "")
    born = None, "BORN", "text/plain", ""
    if keys.BORN_CHARGES not in pred or keys.DIELECTRIC not in pred:
        born = (None, "BORN", "text/plain", "needs a model that predicts born_charges and dielectric")
    elif not (is_periodic(atoms) and np.all(atoms.pbc)):
        born = (None, "BORN", "text/plain", "phonopy BORN needs a 3D-periodic crystal")
    else:
        try:
            text = phonopy_born_text(atoms, pred[keys.DIELECTRIC], pred[keys.BORN_CHARGES])
            born = (text, "BORN", "text/plain", "")
        except Exception as exc:
            born = (None, "BORN", "text/plain", " ".join(str(exc).split()))
    out["phonopy BORN"] = born
    return out


def downloads(pred, entry: Entry, pkey: tuple) -> None:
    files = memo("exports", (*pkey, entry.key, entry.label), lambda: exports(pred, entry))
    cols = st.columns(len(files))
    for col, (kind, (data, fname, mime, reason)) in zip(cols, files.items()):
        with col:
            st.download_button(f"Download {kind}", data=data if data is not None else "", file_name=fname,
                               mime=mime, disabled=data is None, key=f"download_{kind}", on_click="ignore",
                               icon=":material/download:", help=reason or f"{fname}")
            if reason:
                st.caption(f"{kind}: {reason}")
    st.caption("JSON: every tensor with its unit and shape; extended XYZ: per-atom tensors as columns flattened "
               "row-major, crystal tensors in the frame info (ase.io.read reads it); phonopy BORN: dielectric "
               "tensor and the Born charges of the symmetry-independent atoms.")


# ------------------------------------------------------------------------------------------ page
def structure_caption(atoms) -> str:
    text = f"{atoms.get_chemical_formula()} · {len(atoms)} atoms · "
    if is_periodic(atoms):
        a, b, c, al, be, ga = atoms.cell.cellpar()
        text += f"cell a={a:.3f} b={b:.3f} c={c:.3f} Å, α={al:.1f}° β={be:.1f}° γ={ga:.1f}°"
    else:
        text += "molecule (no cell)"
    return text


def page() -> None:
    st.title("Predict")
    model = select_model()
    entry = select_structure(model=model)
    if entry is None:
        st.info("Pick a demo structure or upload a structure file in the sidebar.", icon=":material/arrow_back:")
        return
    st.subheader(entry.label)
    st.caption(structure_caption(entry.atoms))
    if model is None:
        st.iframe(viewer_html(entry.atoms, view_id="predict-view", height=VIEW_HEIGHT), height=VIEW_HEIGHT + 40)
        return
    try:
        with st.spinner(f"Predicting with {model.name}…"):
            pred = predict(model, entry)
    except Exception as exc:
        show_error(exc, f"{model.name} cannot predict this structure")
        with page_guard("drawing the structure"):
            st.iframe(viewer_html(entry.atoms, view_id="predict-view", height=VIEW_HEIGHT), height=VIEW_HEIGHT + 40)
        return
    pkey = prediction_key(model, entry)
    seconds = pred.atoms.info.get("etgnn_predict_seconds")
    st.caption(f"Model **{model.name}** on **{model.device_description}**"
               + (f" · predicted in {seconds:.2f} s" if seconds is not None else ""))
    with page_guard("3D view"):
        draw_3d(pred, entry, pkey)

    st.subheader("Tensors")
    names = list(pred)
    tabs = st.tabs([f"{n} ({pred.units.get(n) or '–'})" for n in names])
    for tab, name in zip(tabs, names):
        with tab, page_guard(name):
            show_tensor(name, pred[name], pred.units.get(name, ""), pred.per_atom[name], entry, pred.atoms)
    if entry.reference:
        missing = sorted(set(entry.reference) - set(pred))
        if missing:
            st.caption(f"DFT labels of this structure that the model does not predict: {', '.join(missing)}")

    st.subheader("Downloads")
    with page_guard("downloads"):
        downloads(pred, entry, pkey)
    card = Path(model.info.path) / "card.md"
    if card.exists():
        with st.expander("Model card"):
            st.markdown(card.read_text(encoding="utf-8"))


with page_guard():
    page()
