"""Atom inspector: one atom's tensor, its isotropic / antisymmetric / symmetric-traceless parts, and
every edge's contribution to it, drawn on the bonds in 3D and listed by size."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st
from ase.data import chemical_symbols
from ase.data.colors import jmol_colors

from app.errors import page_guard
from app.meaning import GENERIC, MEANING
from app.prediction import memo, prediction_key, selected_prediction
from app.viewer import clickable_viewer
from app.widgets import keep_widget
from etgnn_core import keys
from etgnn_core.tensors.algebra import decompose_rank2
from etgnn_core.viz import (
    NEGATIVE_COLOR,
    POSITIVE_COLOR,
    contribution_sign,
    contributions_figure,
    tensor_table,
    viewer_html,
    with_overlay,
)

VIEW_HEIGHT = 440
XYZ = "xyz"


# ------------------------------------------------------------------------------------------ helpers
def contributions_table(atoms, j: int, c: dict) -> pd.DataFrame:
    """One row per edge k -> j, sorted by decreasing Frobenius norm."""
    contrib = np.asarray(c["contributions"], dtype=float)
    rows = []
    for r, (k, shift, pos, d, a, norm) in enumerate(zip(c["neighbors"], c["shifts"], c["neighbor_positions"],
                                                        c["distances"], contrib, c["norms"]), start=1):
        e_kj = atoms.positions[j] - pos
        e_kj = e_kj / max(np.linalg.norm(e_kj), 1e-12)
        row = {
            "rank": r,
            "neighbour": f"#{int(k)} {chemical_symbols[int(atoms.numbers[int(k)])]}",
            "image shift": "(" + ", ".join(str(int(s)) for s in shift) + ")",
            "distance (Å)": float(d),
            "|contribution|": float(norm),
            "sign": "+" if contribution_sign(a, e_kj) >= 0 else "−",
        }
        if a.shape == (3, 3):
            row["tr/3"] = float(np.trace(a) / 3)
            row.update({XYZ[p] + XYZ[q]: float(a[p, q]) for p in range(3) for q in range(3)})
        elif a.shape == (3,):
            row.update({XYZ[p]: float(a[p]) for p in range(3)})
        rows.append(row)
    return pd.DataFrame(rows)


def bond_shapes(atoms, j: int, c: dict, name: str, unit: str) -> dict:
    """Edge contributions as cylinders from atom j to each neighbour (image): colour = sign, radius = size;
    neighbours that are periodic images outside the cell get a small sphere."""
    contrib = np.asarray(c["contributions"], dtype=float)
    norms = np.asarray(c["norms"], dtype=float)
    nmax = max(float(norms.max(initial=0.0)), 1e-300)
    p0 = atoms.positions[j]
    cylinders, spheres = [], []
    for k, shift, pos, a, norm in zip(c["neighbors"], c["shifts"], c["neighbor_positions"], contrib, norms):
        e_kj = (p0 - pos) / max(np.linalg.norm(p0 - pos), 1e-12)
        sign = contribution_sign(a, e_kj)
        el = chemical_symbols[int(atoms.numbers[int(k)])]
        cylinders.append(dict(start=p0, end=pos, radius=0.03 + 0.17 * norm / nmax,
                              color=POSITIVE_COLOR if sign >= 0 else NEGATIVE_COLOR,
                              label=f"#{int(k)} {el} → #{j}: |{name}| {norm:.3g} {unit} ({'+' if sign >= 0 else '−'})"))
        if np.any(np.asarray(shift) != 0):
            rgb = (np.clip(jmol_colors[int(atoms.numbers[int(k)])], 0, 1) * 255).astype(int)
            spheres.append(dict(center=pos, radius=0.25, color="#" + "".join(f"{x:02x}" for x in rgb), opacity=0.6,
                                label=f"#{int(k)} {el}, image {tuple(int(x) for x in shift)}"))
    return {"cylinders": cylinders, "spheres": spheres}


def matrix_frame(T: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(np.asarray(T, dtype=float).round(4), index=list(XYZ), columns=list(XYZ))


def show_decomposition(T: np.ndarray, unit: str, name: str = keys.BORN_CHARGES) -> None:
    parts = decompose_rank2(T)
    st.markdown("**Decomposition** T = isotropic + antisymmetric + symmetric traceless")
    cols = st.columns(3)
    meaning = MEANING.get(name, GENERIC)
    items = [
        ("isotropic (tr T / 3) I", parts.isotropic, meaning[0]),
        ("antisymmetric (T − Tᵀ) / 2", parts.antisymmetric, meaning[1]),
        ("symmetric traceless", parts.symmetric_traceless, meaning[2]),
    ]
    for col, (title, M, text) in zip(cols, items):
        with col:
            st.markdown(f"*{title}*")
            st.dataframe(matrix_frame(M))
            st.caption(f"norm {np.linalg.norm(M):.4g} {unit} — {text}")
    err = float(np.abs(parts.total - T).max())
    st.caption(f"The three parts add up to the tensor (max |difference| {err:.1e}).")


# ---------------------------------------------------------------------------------------- sections
def atom_label(pred, name: str, j: int) -> str:
    """An atom in the picker: index, element and, for a rank-2 tensor, its tr/3."""
    T = pred.contributions[name].atom[j]
    unit = pred.units.get(name, "")
    extra = f", tr/3 = {np.trace(T) / 3:.3f} {unit}" if T.shape == (3, 3) else ""
    return f"#{j} {chemical_symbols[int(pred.atoms.numbers[j])]}{extra}"


def pick_tensor(pred, names: list[str], box) -> str:
    """The tensor picker: Born charges first, else a per-atom tensor."""
    preferred = [keys.BORN_CHARGES] + [t for t in names if pred.per_atom[t]] + names
    default = next(t for t in preferred if t in names)
    return box.selectbox("Tensor", names, format_func=lambda t: f"{t} ({pred.units.get(t) or '–'})",
                         **keep_widget("inspector_tensor", "etgnn_inspector_tensor", names, default=default))


def pick_atom(pred, name: str, box) -> tuple[int, list[int]] | None:
    """The atom picker: (atom, the atoms offered), or None (with a message) when the tensor has none."""
    mask = pred.masks.get(name)  # a tensor given for some species only: those atoms are offered
    atom_opts = list(range(len(pred.atoms))) if mask is None else [int(i) for i in np.flatnonzero(mask)]
    if not atom_opts:
        st.info(f"This model gives {name} for none of the atoms of this structure.")
        return None
    j = box.selectbox("Atom (or click one in the 3D view)", atom_opts, format_func=lambda i: atom_label(pred, name, i),
                      **keep_widget("inspector_atom", "etgnn_atom", atom_opts, default=atom_opts[0]))
    if mask is not None:
        box.caption(f"This model gives {name} for {pred.carriers(name)} atoms only.")
    return j, atom_opts


def section_viewer(pred, name: str, j: int, c: dict, pkey: tuple, atom_opts: list[int]) -> None:
    """3Dmol view with the edge contributions on the bonds; clicking an atom picks it."""
    atoms, unit = pred.atoms, pred.units.get(name, "")
    st.markdown("**Structure** — click an atom to inspect it; its edge contributions are drawn on the bonds "
                "(red positive, blue negative, thickness ∝ size; hover a bond for its value)")
    html = memo("inspector_viewer", (*pkey, name, j), lambda: with_overlay(
        viewer_html(atoms, view_id="inspector-view", highlight=j, height=VIEW_HEIGHT, style="stick"),
        **bond_shapes(atoms, j, c, name, unit)))

    def picked(index: int) -> None:
        if index in atom_opts:
            st.session_state["inspector_atom"] = index
            st.session_state["etgnn_atom"] = index

    clickable_viewer(html, view_id="inspector-view", height=VIEW_HEIGHT + 40, key="inspector_picker",
                     on_pick=picked)


def section_bonds(pred, name: str, j: int, c: dict, pkey: tuple) -> None:
    """Plotly view centred on the atom, hover shows each edge's tensor."""
    st.markdown(f"**Edge contributions to {name} of atom #{j}** (hover for the tensors; this view is centred "
                "on the atom)")
    fig = memo("inspector_bonds", (*pkey, name, j),
               lambda: contributions_figure(pred.atoms, j, c["neighbor_positions"], c["contributions"],
                                            label=name, neighbor_indices=c["neighbors"]))
    fig.update_layout(height=VIEW_HEIGHT + 40)
    st.plotly_chart(fig, key="inspector_plotly", config={"displaylogo": False, "scrollZoom": True})


def section_tensor(model, entry, pred, name: str, j: int, c: dict) -> None:
    """The atom's tensor (or its term of a crystal tensor), the DFT label when known, and its parts."""
    T = np.asarray(c["tensor"], dtype=float)
    unit = pred.units.get(name, "")
    per_atom = pred.per_atom[name]
    what = f"{name} of atom #{j} ({unit})" if per_atom else (
        f"atom #{j}'s term of the crystal {name} ({unit}; the crystal tensor is the "
        f"{_reduce(model, name)} of these atom terms)")
    st.subheader(f"Tensor: {what}")
    with page_guard("tensor"):
        if T.shape != (3, 3):
            df = tensor_table(T, unit)
            st.dataframe(df.round(4))
            st.caption((df.attrs.get("note") or "") + " The isotropic / antisymmetric / symmetric-traceless "
                       "decomposition applies to rank-2 tensors.")
            return
        cols = st.columns([1, 3])
        with cols[0]:
            show_matrix_and_label(pred, entry, T, name, j)
        with cols[1]:
            show_decomposition(T, unit, name)


def show_matrix_and_label(pred, entry, T: np.ndarray, name: str, j: int) -> None:
    """The rank-2 tensor, and beside it the DFT label of a reference-data structure."""
    unit = pred.units.get(name, "")
    st.dataframe(matrix_frame(T))
    if name == keys.BORN_CHARGES:
        st.caption("row = field direction, column = displacement")
    ref = entry.reference.get(name) if pred.per_atom[name] else None
    mask = entry.masks.get(name)
    if ref is not None and np.shape(ref) == (len(pred.atoms), 3, 3) and (mask is None or bool(mask[j])):
        st.markdown(f"DFT label ({entry.reference_units.get(name, unit)})")
        st.dataframe(matrix_frame(ref[j]))
        st.caption(f"max |prediction − DFT| = {np.abs(T - ref[j]).max():.3g}")


def section_contributions(pred, name: str, j: int, c: dict) -> None:
    """Every edge's contribution, largest first, and the terms that add up to the tensor."""
    unit = pred.units.get(name, "")
    T = np.asarray(c["tensor"], dtype=float)
    table = contributions_table(pred.atoms, j, c)
    st.dataframe(table.round(4), hide_index=True, height=min(38 + 35 * len(table), 460))
    onsite, asr = np.asarray(c["onsite"]), np.asarray(c["asr"])
    total = np.asarray(c["contributions"]).sum(0) + onsite + asr if len(table) else onsite + asr
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("edges", f"{len(table)}")
    m2.metric("|on-site| (isotropic)", f"{np.linalg.norm(onsite):.4g}")
    m3.metric("|sum-rule correction|", f"{np.linalg.norm(asr):.4g}")
    m4.metric("residual max|Σ − T|", f"{c['residual']:.2e}",
              help="Largest component of (sum of edges + on-site + correction − the atom's tensor), "
                   f"in {unit or 'the tensor unit'}: the contributions add up to the tensor.")
    st.caption(f"|sum of all terms| = {np.linalg.norm(total):.4g}, |T| = {np.linalg.norm(T):.4g} {unit}. "
               "Sign: of the trace (rank 2), of the projection on the bond direction e_kj (rank 1), "
               "else of the largest component. Neighbours are periodic images when the shift is non-zero.")


# -------------------------------------------------------------------------------------------- page
def page() -> None:
    st.title("Atom inspector")
    st.caption("How each neighbour (edge k → j, its triplets included) contributes to the tensor of atom j: "
               "T_j = Σ_k edge_kj + on-site_j + acoustic-sum-rule correction_j.")
    selected = selected_prediction()
    if selected is None:
        return
    model, entry, pred = selected
    names = [t for t in pred if t in pred.contributions]
    if not names:
        st.warning("This model's predictions carry no per-edge contributions.")
        return
    c1, c2 = st.columns(2)
    name = pick_tensor(pred, names, c1)
    picked = pick_atom(pred, name, c2)
    if picked is None:
        return
    j, atom_opts = picked
    pkey = prediction_key(model, entry)
    c = memo("for_atom", (*pkey, name, j), lambda: pred.contributions[name].for_atom(j))
    left, right = st.columns(2)
    with left, page_guard("3D structure"):
        section_viewer(pred, name, j, c, pkey, atom_opts)
    with right, page_guard("bond contributions"):
        section_bonds(pred, name, j, c, pkey)
    section_tensor(model, entry, pred, name, j, c)
    st.subheader("Contributions, largest first")
    with page_guard("contributions table"):
        section_contributions(pred, name, j, c)


def _reduce(model, name: str) -> str:
    try:
        return model.config.spec(name).reduce
    except Exception:
        return "mean"


with page_guard():
    page()
