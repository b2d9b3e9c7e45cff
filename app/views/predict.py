"""Predict page: pick or upload a structure, predict every tensor of a model, see them in 3D, download them.

When universal committees (``universal_*``) are installed, the page runs every one of them on the
structure by default (other models can be added in the sidebar), shows each tensor as value ± the
committee's calibrated std, draws the spread (translucent outer ellipsoid, error bars) and puts the
committees' out-of-domain warnings at the top (docs/uncertainty.md).
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st
from ase.data import chemical_symbols

from app.errors import page_guard, show_error
from app.models import HOW_TO_GET_A_MODEL, committee_note, get_model, model_choices, select_model
from app.prediction import memo, predict, prediction_key
from app.structures import Entry, explain_no_structure, select_structure
from app.widgets import keep_widget
from etgnn_core import keys
from etgnn_core.io import phonopy_born_text, to_json, write_extxyz
from etgnn_core.structure import is_periodic
from etgnn_core.tensors.algebra import (
    ellipsoid_mesh,
    is_positive_definite,
    isotropic_value,
    longitudinal_surface,
    principal_axes,
)
from etgnn_core.viz import (
    CRYSTAL_COLOR,
    NON_PD_COLOR,
    diverging_rgb,
    error_bar_figure,
    format_pm,
    mesh_normals,
    outer_tensor,
    piezo_surface_figure,
    pm_scale,
    pm_table,
    structure_figure,
    structure_frame,
    tensor_table,
    viewer_html,
    with_overlay,
)
from etgnn_core.viz.uncertainty import atom_error_bar_figure, iso_std

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


def show_tensor(name: str, value: np.ndarray, unit: str, per_atom: bool, entry: Entry, atoms,
                pred_mask=None, carriers: str = "", std=None, key: str = "") -> None:
    ref = entry.reference.get(name)
    ref_unit = entry.reference_units.get(name, unit)
    mask = entry.masks.get(name)
    if ref is not None and np.shape(ref) != np.shape(value):
        st.warning(f"The DFT {name} has shape {np.shape(ref)}, the prediction {np.shape(value)}: not compared.")
        ref = None
    cols = st.columns(2) if ref is not None else [st.container()]
    with cols[0]:
        st.markdown(f"**Predicted {name}** ({unit or 'no unit'})" + (" — value ± committee std" if std is not None
                                                                     else ""))
        _tensor_view(name, value, unit, per_atom, atoms, pred_mask, std, key)
        if pred_mask is not None:
            st.caption(f"This model gives {name} for {carriers or 'no'} atoms only.")
    if ref is not None:
        with cols[1]:
            st.markdown(f"**DFT {name}** ({ref_unit})")
            _tensor_view(name, ref, ref_unit, per_atom, atoms, mask)
        st.caption(f"Mean absolute difference prediction vs DFT: **{mae(value, ref, mask):.4g}** {unit}"
                   + (f" (over the {int(np.sum(mask))} labelled atoms)" if mask is not None else ""))
    if name in NOTES:
        st.caption(NOTES[name])


def _tensor_view(name, value, unit, per_atom, atoms, mask, std=None, key: str = "") -> None:
    value = np.asarray(value, dtype=float)
    if std is not None:
        _uncertain_view(name, value, np.asarray(std, dtype=float), unit, per_atom, atoms, mask, key or name)
        return
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


def pm_atom_table(atoms, arr: np.ndarray, std: np.ndarray, mask=None) -> pd.DataFrame:
    """:func:`per_atom_table` with every component written "value ± std"."""
    df = per_atom_table(atoms, arr, mask)
    sd = per_atom_table(atoms, std, mask)
    comps = [c for c in df.columns if c not in ("atom", "element", "iso (tr/3)", "pos. def.", "norm")]
    scale = pm_scale(df[comps].to_numpy(dtype=float), sd[comps].to_numpy(dtype=float))
    for c in comps:  # one precision floor for the whole tensor: symmetry zeros read 0.000
        df[c] = format_pm(df[c], sd[c], scale)
    if "iso (tr/3)" in df and np.asarray(arr).ndim == 3:
        iso_s = iso_std(std)[df["atom"].to_numpy()]
        df["iso (tr/3)"] = format_pm(df["iso (tr/3)"], iso_s, scale)
    return df


def _uncertain_view(name, value, std, unit, per_atom, atoms, mask, key: str) -> None:
    """Values ± std and an error-bar chart (committees)."""
    if per_atom:
        df = pm_atom_table(atoms, value, std, mask)
        st.dataframe(df, hide_index=True, height=min(38 + 35 * len(df), 420))
        if value.ndim == 3:
            keep = np.ones(len(atoms), bool) if mask is None else np.asarray(mask, bool)
            fig = atom_error_bar_figure(np.array(atoms.get_chemical_symbols())[keep].tolist(),
                                        isotropic_value(value)[keep], iso_std(std)[keep], unit,
                                        f"isotropic {name} per atom, error bars ± std")
            st.plotly_chart(fig, config=PLOTLY_CONFIG, key=f"errbar_{key}")
    elif value.ndim == 0 or value.size == 1:
        st.metric(name, f"{float(value.reshape(-1)[0]):.6g} ± {float(std.reshape(-1)[0]):.2g} {unit}")
    else:
        df = pm_table(value, std, unit)
        st.dataframe(df)
        if df.attrs.get("note"):
            st.caption(df.attrs["note"])
        st.plotly_chart(error_bar_figure(value, std, unit, f"{name} components, error bars ± std"),
                        config=PLOTLY_CONFIG, key=f"errbar_{key}")
    st.caption("± is the committee's standard deviation, calibrated on held-out structures so that at least 90 % "
               "of new ones should have a mean error within 2 std (the model card gives the test coverage).")


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


def drawn_tensors(pred, name: str) -> np.ndarray:
    """Per-atom tensors to draw: NaN rows (no ellipsoid) for atoms the model gives none (pred.masks)."""
    T = np.asarray(pred[name], dtype=float)
    mask = pred.masks.get(name)
    return T if mask is None else np.where(np.asarray(mask, bool)[:, None, None], T, np.nan)


def non_pd_caption(name: str, T: np.ndarray) -> str:
    T = T[np.all(np.isfinite(T), axis=(1, 2))]
    bad = ~np.asarray(is_positive_definite(T), dtype=bool)
    if not bad.any():
        return "Every atom's tensor is positive definite (grey)."
    text = (f"{int(bad.sum())} of {len(T)} atom tensors are **not positive definite**: drawn in orange "
            "with the absolute eigenvalues as semi-axes, not hidden.")
    if name == keys.BORN_CHARGES:
        text += " Expected for anions, whose Born charges are negative."
    return text


def fmt_vec(v) -> str:
    return "(" + ", ".join(f"{x:.3f}" for x in np.ravel(v)) + ")"


def crystal_shapes(atoms, T=None, dipole=None, dipole_unit: str = "", std=None) -> tuple[dict, str]:
    """3Dmol overlay of a crystal rank-2 tensor (one ellipsoid at the centre) and / or the dipole arrow.

    With ``std`` (a committee), a translucent outer ellipsoid of semi-axes |eigenvalue| + its std.
    """
    center, size = structure_frame(atoms)
    shapes: dict = {"meshes": [], "arrows": []}
    notes = []
    if T is not None:
        w, _ = principal_axes(np.asarray(T, dtype=float))
        scale = 0.2 * size / max(float(np.abs(w).max()), 1e-12)
        m = ellipsoid_mesh(T, center, scale, n=20)
        shapes["meshes"].append(dict(v=m.vertices, n=m.normals, f=m.triangles, opacity=0.5,
                                     color=CRYSTAL_COLOR if m.positive_definite else NON_PD_COLOR))
        notes.append(f"principal values {fmt_vec(w)}; 1 unit = {scale:.3g} Å"
                     + ("" if m.positive_definite else "; **not positive definite** (orange)"))
        if std is not None:
            outer = ellipsoid_mesh(outer_tensor(T, std), center, scale, n=20)
            shapes["meshes"].append(dict(v=outer.vertices, n=outer.normals, f=outer.triangles, opacity=0.18,
                                         color="#888888"))
            notes.append("translucent grey shell: each principal value + its committee std")
    if dipole is not None and np.linalg.norm(dipole) > 0:
        d = np.asarray(dipole, dtype=float)
        norm = float(np.linalg.norm(d))
        shapes["arrows"].append(dict(start=center, end=center + 0.4 * size * d / norm, radius=0.02 * size,
                                     color="#111111", label=f"dipole {fmt_vec(d)} {dipole_unit}, |p| = {norm:.3g}"))
        notes.append(f"dipole {fmt_vec(d)} {dipole_unit}, |p| = {norm:.3g} (arrow length scaled to the structure)")
    return shapes, "; ".join(notes)


def piezo_shapes(atoms, e) -> tuple[dict, str]:
    """3Dmol overlay of the longitudinal surface |e·n·n·n| n at the structure's centre, coloured by sign."""
    x, y, z, value = longitudinal_surface(e, n_theta=41, n_phi=80)
    vmax = float(np.abs(value).max())
    if vmax == 0:
        return {"meshes": []}, "all components are zero (e.g. a centrosymmetric crystal): no surface"
    center, size = structure_frame(atoms)
    scale = 0.35 * size / vmax
    nt, nphi = value.shape
    verts = center + scale * np.stack([x, y, z], axis=-1).reshape(-1, 3)
    i, j = np.meshgrid(np.arange(nt - 1), np.arange(nphi - 1), indexing="ij")
    a = (i * nphi + j).ravel()
    b, c, d = a + nphi, a + nphi + 1, a + 1
    tris = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    mesh = dict(v=verts, n=mesh_normals(verts, tris), f=tris, c=diverging_rgb(value.ravel(), vmax), opacity=0.9)
    return {"meshes": [mesh]}, f"max |e·n·n·n| = {vmax:.3g}; radius 1 Å = {1 / scale:.3g}"


def draw_3d(pred, entry: Entry, pkey: tuple) -> None:
    atoms = pred.atoms
    opts = view_options(pred)
    labels = list(opts)
    c1, c2 = st.columns([3, 2])
    label = c1.selectbox("3D view", labels, **keep_widget("predict_view", "etgnn_predict_view", labels))
    kind, name = opts[label]
    r_opts = ["3Dmol.js", "plotly (hover shows values)"]
    renderer = c2.radio("Renderer", r_opts, horizontal=True,
                        **keep_widget("predict_renderer", "etgnn_predict_renderer", r_opts),
                        help="3Dmol.js keeps your camera when anything changes; plotly shows values on hover "
                        "but starts from its default camera when the figure changes.")
    unit = pred.units.get(name, "") if name else ""
    tlabel = f"{name} ({unit})" if unit else (name or "")
    dipole = pred[keys.DIPOLE] if keys.DIPOLE in pred and np.shape(pred[keys.DIPOLE]) == (3,) else None
    dunit = pred.units.get(keys.DIPOLE, "")
    note = ""
    if kind == "atoms":
        T = drawn_tensors(pred, name)
        st.caption(f"Ellipsoid semi-axes = |eigenvalues| of the symmetric part of each atom's **{name}** tensor "
                   f"({unit}), along its principal axes; the cell is drawn in grey. " + non_pd_caption(name, T))
    elif kind == "crystal":
        shapes, note = crystal_shapes(atoms, pred[name], dipole, dunit, pred.std.get(name))
        st.caption(f"One ellipsoid at the centre: semi-axes = |eigenvalues| of the crystal **{name}** tensor "
                   f"({unit}) along its principal axes; purple: positive definite, orange: not. {note}")
    elif kind == "dipole":
        shapes, note = crystal_shapes(atoms, None, dipole, dunit)
        st.caption(f"The arrow is the predicted dipole, drawn from the centre. {note}")
    elif kind == "piezo":
        shapes, note = piezo_shapes(atoms, pred[name])
        st.caption("Longitudinal piezoelectric response e·n·n·n for every direction n, drawn at the centre of "
                   f"the cell: radius = |value| ({unit}), red = positive, blue = negative. {note}")
    if renderer == "3Dmol.js":
        def make_html():
            if kind == "atoms":
                return viewer_html(atoms, view_id="predict-view", atom_tensors=T, tensor_label=tlabel,
                                   height=VIEW_HEIGHT)
            html = viewer_html(atoms, view_id="predict-view", height=VIEW_HEIGHT)
            return html if kind == "structure" else with_overlay(html, **shapes)

        st.iframe(memo("viewer", (*pkey, kind, name), make_html), height=VIEW_HEIGHT + 40)
        return

    def make():
        if kind == "piezo":
            return piezo_surface_figure(pred[name], unit=unit)
        if kind == "atoms":
            return structure_figure(atoms, atom_tensors=T, tensor_label=tlabel)
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
    tensors, per_atom = pred.with_masks()  # subset tensors carry a NAME_mask of the atoms that have them
    out = {"JSON": (to_json(pred.record(source=entry.label), indent=1), f"{stem}.json", "application/json", "")}
    buf = io.StringIO()
    write_extxyz(buf, [(atoms, tensors, per_atom, pred.units)])
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


UNIVERSAL_PREFIX = "universal_"


def _covers(model, atoms) -> bool:
    return not model.elements or set(atoms.numbers.tolist()) <= set(model.elements)


def select_models() -> tuple[list, bool]:
    """The models to run: (models, several).

    With universal committees installed (and no ``$ETGNN_DEFAULT_MODEL``), a multiselect that
    starts with every ``universal_*`` model; otherwise the usual single-model picker.
    """
    choices = model_choices()
    universal = [c.path for c in choices if c.name.startswith(UNIVERSAL_PREFIX)]
    env = os.environ.get("ETGNN_DEFAULT_MODEL", "")
    if not universal or (env and any(c.name == env for c in choices)):
        model = select_model()
        return ([model] if model is not None else []), False
    by_path = {c.path: c for c in choices}
    stored = [p for p in st.session_state.get("etgnn_predict_models", universal) if p in by_path]
    st.session_state["predict_models"] = stored
    paths = st.sidebar.multiselect(
        "Models", list(by_path), format_func=lambda p: by_path[p].label, key="predict_models",
        on_change=lambda: st.session_state.update(etgnn_predict_models=st.session_state["predict_models"]),
        help="Every universal model runs by default (each a committee: values ± calibrated std); add specialised "
        "models whose elements cover the structure.")
    if not paths:
        st.sidebar.info(HOW_TO_GET_A_MODEL if not choices else "Pick at least one model.")
    models = []
    for path in paths:
        try:
            models.append(get_model(path))
        except Exception as exc:
            with st.sidebar:
                show_error(exc, f"model {by_path[path].name}")
    return models, True


def run_models(models, entry: Entry, several: bool) -> list[tuple]:
    """(model, prediction) of every model that can predict the structure; the others are explained."""
    out, skipped = [], []
    for model in models:
        if several and not _covers(model, entry.atoms):
            unknown = sorted({chemical_symbols[z] for z in entry.atoms.numbers} - {chemical_symbols[z]
                                                                                   for z in model.elements})
            skipped.append(f"{model.name} (does not know {', '.join(unknown)})")
            continue
        try:
            slow = " (its ionic term needs phonons: 10-30 s)" if getattr(model, "known_parts", None) else ""
            with st.spinner(f"Predicting with {model.name}{slow}…"):
                out.append((model, predict(model, entry)))
        except Exception as exc:
            show_error(exc, f"{model.name} cannot predict this structure")
    if skipped:
        st.caption("Not run: " + "; ".join(skipped) + ".")
    return out


def show_warnings(results) -> None:
    """Every warning at the top of the page, in plain words, naming the model: the committee's
    out-of-domain warnings and the structure checks' (e.g. a molecule given to a crystal model)."""
    for model, pred in results:
        lines = [w[0].upper() + w[1:] + "." for w in [*pred.atoms.info.get("etgnn_warnings", []), *pred.warnings]]
        if len(lines) == 1:
            st.warning(f"**{model.name}**: {lines[0]}", icon=":material/warning:")
        elif lines:  # one box per model: three models with three findings each stay readable
            st.warning(f"**{model.name}** ({len(lines)} warnings):\n" + "\n".join(f"- {w}" for w in lines),
                       icon=":material/warning:")


def page() -> None:
    st.title("Predict")
    models, several = select_models()
    entry = select_structure(model=models[0] if len(models) == 1 else None)
    if entry is None:
        explain_no_structure("Pick a demo structure or upload a structure file in the sidebar.")
        return
    st.subheader(entry.label)
    st.caption(structure_caption(entry.atoms))
    results = run_models(models, entry, several) if models else []
    if not results:
        with page_guard("drawing the structure"):
            st.iframe(viewer_html(entry.atoms, view_id="predict-view", height=VIEW_HEIGHT), height=VIEW_HEIGHT + 40)
        return
    show_warnings(results)
    by_name = {m.name: (m, p) for m, p in results}
    for model, pred in results:
        seconds = pred.atoms.info.get("etgnn_predict_seconds")
        st.caption(f"Model **{model.name}** on **{model.device_description}**"
                   + (f" · predicted in {seconds:.2f} s" if seconds is not None else "")
                   + (f" · {note}" if (note := committee_note(model, pred.atoms)) else ""))
    shown = list(by_name)[0]
    if len(by_name) > 1:
        shown = st.selectbox("Model for the 3D view and the downloads", list(by_name),
                             **keep_widget("predict_shown", "etgnn_predict_shown", list(by_name)))
    model, pred = by_name[shown]
    if several:  # the other pages (Inspector, Learn) open on the model shown here
        st.session_state["etgnn_model"] = str(Path(model.info.path).resolve())
    pkey = prediction_key(model, entry)
    with page_guard("3D view"):
        draw_3d(pred, entry, pkey)

    st.subheader("Tensors")
    pairs = [(m, p, n) for m, p in results for n in p]
    label = (lambda m, p, n: f"{n} ({p.units.get(n) or '–'})") if len(results) == 1 else (
        lambda m, p, n: f"{n} · {m.name}")
    tabs = st.tabs([label(*t) for t in pairs])
    for tab, (m, p, name) in zip(tabs, pairs):
        with tab, page_guard(name):
            show_tensor(name, p[name], p.units.get(name, ""), p.per_atom[name], entry, p.atoms,
                        p.masks.get(name), p.carriers(name), p.std.get(name), key=f"{m.name}_{name}")
    if entry.reference:
        missing = sorted(set(entry.reference) - {n for _, p in results for n in p})
        if missing:
            st.caption(f"DFT labels of this structure that no model run here predicts: {', '.join(missing)}")

    st.subheader("Downloads" + (f" ({model.name})" if len(results) > 1 else ""))
    with page_guard("downloads"):
        downloads(pred, entry, pkey)
    card = Path(model.info.path) / "card.md"
    if card.exists():
        with st.expander(f"Model card ({model.name})"):
            st.markdown(card.read_text(encoding="utf-8"))


with page_guard():
    page()
