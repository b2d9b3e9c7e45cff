"""Learn: how ETGNN builds an equivariant tensor from edges, what the parts of a rank-2 tensor mean, and a
live check that prediction(rotated structure) = rotation(prediction)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import streamlit as st
from ase.data import chemical_symbols
from scipy.spatial.transform import Rotation

from app.errors import page_guard
from app.meaning import GENERIC, MEANING
from app.prediction import memo, prediction_key, selected_prediction
from app.widgets import keep_widget, kept
from etgnn_core import keys
from etgnn_core.tensors.algebra import (
    VOIGT_LABELS,
    decompose_rank2,
    full_rank3_to_voigt,
    full_rank4_to_voigt,
    principal_axes,
    random_orthogonal,
    rotate_tensor,
)
from etgnn_core.viz import structure_figure

XYZ = "xyz"

# ------------------------------------------------------------------------------------------ helpers
def tex_matrix(M, digits: int = 3, sci: bool = False) -> str:
    """A 3x3 matrix as a LaTeX pmatrix (``sci``: residual-style 1.2e-07 entries)."""
    M = np.asarray(M, dtype=float).reshape(3, 3)

    def f(x: float) -> str:
        if sci:
            return r"\mathtt{" + f"{x:.1e}".replace("-", "{-}") + "}"
        v = f"{x:.{digits}f}"
        return "0" if float(v) == 0 else v

    rows = [" & ".join(f(x) for x in row) for row in M]
    return r"\begin{pmatrix}" + r" \\ ".join(rows) + r"\end{pmatrix}"


def tex_unit(u: str) -> str:
    """A unit after a number in LaTeX ("Angstrom^3" -> Angstrom with a superscript 3)."""
    if not u or u == "dimensionless":
        return ""
    body = re.sub(r"\^(-?\d+)", r"}^{\1}\\text{", u.replace("_", " ").replace("*", " "))
    return r"\;\text{" + body + "}"


def edge_coefficients(model, atoms) -> np.ndarray:
    """t_kj of every edge and target, in output units (scale / <deg> included): [n_edges, n_targets].

    From ModelOutput.edge_coefficients, in the edge order of ``model.predict``.
    For a committee: the mean over its members (each with its own scale and <deg>), which is what
    the mean edge contributions are made of.
    """

    _, graph = model.prepare(atoms, max_atoms=None)
    return np.mean([_edge_coefficients(net, graph) for net in getattr(model, "nets", [model.net])], axis=0)


def _edge_coefficients(net, graph) -> np.ndarray:
    import torch

    with torch.no_grad():
        out = net(graph)
    t = out.edge_coefficients.cpu().numpy().astype(np.float64)
    scales = net.scales.detach().cpu().numpy().astype(np.float64)
    return t * scales[None, :] / float(net.config.avg_degree)


def euler_matrix(alpha: float, beta: float, gamma: float, mirror: bool) -> np.ndarray:
    R = Rotation.from_euler("ZYZ", [alpha, beta, gamma], degrees=True).as_matrix()
    return np.diag([1.0, 1.0, -1.0]) @ R if mirror else R


def transformed(atoms, R):
    """The structure with positions and lattice vectors (rows) mapped by R."""
    out = atoms.copy()
    out.positions = atoms.positions @ R.T
    if np.any(np.abs(np.asarray(atoms.cell)) > 0):
        out.cell = np.asarray(atoms.cell) @ R.T
    return out


def equivariance_table(model, pred, pred_rot, R) -> pd.DataFrame:
    rows = []
    for spec in model.config.targets:
        T = np.asarray(pred[spec.name])
        expected = rotate_tensor(T, R, rank=spec.rank)
        got = np.asarray(pred_rot[spec.name])
        res = float(np.abs(got - expected).max()) if T.size else 0.0
        scale = float(np.abs(T).max()) if T.size else 0.0
        rows.append({"tensor": spec.name, "rank": spec.rank, "per atom": spec.per_atom,
                     "max |T(Rx) − R·T(x)|": res, "relative": res / scale if scale else 0.0,
                     "unit": pred.units.get(spec.name, "")})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------- sections
def section_edges(model, entry, pred, name: str, j: int) -> None:
    st.header("1 · A tensor built from edges")
    st.markdown(
        "ETGNN is an *invariant* network: it only sees distances, angles and elements, and outputs **scalar "
        "coefficients** — one per edge $k\\to j$ ($t_{kj}$) and one per triplet $k\\to j\\to i$ ($t_{kji}$). "
        "The directions enter only through tensor products of unit bond vectors "
        "$\\vec e_{kj} = (\\vec r_j - \\vec r_k)/|\\vec r_j - \\vec r_k|$, so the atomic tensor of atom $j$ is")
    st.latex(r"T_j \;=\; \sum_{k} t_{kj}\; \vec e_{kj}\otimes\vec e_{kj} \;+\; "
             r"\sum_{k,i} t_{kji}\; \vec e_{kj}\otimes\vec e_{ji} \;+\; a_j\,\mathrm{I}")
    st.markdown(
        "The first sum is symmetric; the triplet sum brings the antisymmetric part. Rotate the structure by $R$: "
        "the coefficients do not change (they depend on distances and angles only) while every "
        "$\\vec e \\to R\\vec e$, hence "
        "$\\vec e\\otimes\\vec e \\to R\\,(\\vec e\\otimes\\vec e)\\,R^{\\mathsf T}$ and "
        "$T_j \\to R\\,T_j\\,R^{\\mathsf T}$ — equivariance by construction. A crystal tensor is the mean of "
        "the atomic ones, $T = \\frac1N\\sum_j T_j$. (In the code the sums are divided by the mean number of "
        "neighbours and multiplied by a per-tensor scale; the numbers below include both.)")
    c = pred.contributions[name]
    info = c.for_atom(j)
    edges = info["edges"]
    if not len(edges):
        st.info(f"Atom #{j} has no neighbour within the {model.config.cutoff} Å cutoff: only the on-site term.")
        return
    atoms = pred.atoms
    t_all = memo("learn_t", (*prediction_key(model, entry),), lambda: edge_coefficients(model, atoms))
    col = [t.name for t in model.config.targets].index(name)
    if t_all.shape[0] != len(c.edge_src):
        st.warning("The edge coefficients could not be matched to the edges of this prediction.")
        return

    def edge_label(r: int) -> str:
        e = int(edges[r])
        k = int(c.edge_src[e])
        sh = tuple(int(x) for x in c.edge_shift[e])
        img = f", image {sh}" if any(sh) else ""
        return (f"k = #{k} {chemical_symbols[int(atoms.numbers[k])]}, d = {info['distances'][r]:.3f} Å{img}, "
                f"|C| = {info['norms'][r]:.3g}")

    r = st.selectbox(f"Edge into atom #{j} (largest contribution first)", list(range(len(edges))),
                     format_func=edge_label, key="learn_edge")
    e = int(edges[r])
    vec = c.positions[j] - c.neighbor_positions[e]
    unit = vec / np.linalg.norm(vec)
    ee = np.outer(unit, unit)
    t = float(t_all[e, col])
    two_body = t * ee
    C = np.asarray(c.edge[e], dtype=float)
    triplet = C - two_body
    u = pred.units.get(name, "")
    ut = tex_unit(u)
    st.latex(r"\vec e_{kj} = " + f"({unit[0]:.3f},\\ {unit[1]:.3f},\\ {unit[2]:.3f})" + r",\qquad t_{kj} = "
             + f"{t:.4g}" + ut)
    st.latex(r"\vec e_{kj}\otimes\vec e_{kj} = " + tex_matrix(ee) + r",\qquad t_{kj}\,\vec e_{kj}\otimes\vec e_{kj} = "
             + tex_matrix(two_body) + ut)
    st.latex(r"C_{kj} \;=\; \underbrace{t_{kj}\,\vec e_{kj}\otimes\vec e_{kj}}_{\text{edge}} \;+\; "
             r"\underbrace{\textstyle\sum_i t_{kji}\,\vec e_{kj}\otimes\vec e_{ji}}_{\text{triplets}}")
    st.latex(r"C_{kj} = " + tex_matrix(two_body) + " + " + tex_matrix(triplet) + " = " + tex_matrix(C) + ut)
    total = info["contributions"].sum(0) + info["onsite"] + info["asr"]
    st.caption(f"Adding all {len(edges)} edge contributions, the on-site term a_j I "
               f"(|·| = {np.linalg.norm(info['onsite']):.3g}) and the acoustic-sum-rule correction "
               f"(|·| = {np.linalg.norm(info['asr']):.3g}) gives the atom tensor: max |Σ − T_j| = "
               f"{float(np.abs(total - info['tensor']).max()):.1e} {u}. e ⊗ e is symmetric with eigenvalues 1, 0, 0: "
               "a single edge only 'pulls' along its own bond.")


def section_decomposition(pred, name: str, j: int, per_atom: bool) -> None:
    st.header("2 · Isotropic, antisymmetric and symmetric-traceless parts")
    st.latex(r"T \;=\; \underbrace{\tfrac{\operatorname{tr}T}{3}\,\mathrm{I}}_{\text{isotropic, }l=0,\;1}"
             r"\;+\;\underbrace{\tfrac{1}{2}\left(T-T^{\mathsf T}\right)}_{\text{antisymmetric, }l=1,\;3}"
             r"\;+\;\underbrace{\tfrac{1}{2}\left(T+T^{\mathsf T}\right)-\tfrac{\operatorname{tr}T}{3}\,\mathrm{I}}"
             r"_{\text{symmetric traceless, }l=2,\;5}")
    st.markdown("9 = 1 + 3 + 5 numbers. Each part is mapped onto itself by every rotation, so the three "
                "**norms** are rotation invariants (check them in section 3).")
    T = np.asarray(pred[name][j] if per_atom else pred[name], dtype=float)
    u = pred.units.get(name, "")
    what = f"{name} of atom #{j}" if per_atom else f"crystal {name}"
    parts = decompose_rank2(T)
    meaning = MEANING.get(name, GENERIC)
    st.markdown(f"**{what}** ({u or 'dimensionless'}):")
    st.latex("T = " + tex_matrix(T) + tex_unit(u))
    st.latex(" = " + tex_matrix(parts.isotropic) + " + " + tex_matrix(parts.antisymmetric)
             + " + " + tex_matrix(parts.symmetric_traceless))
    cols = st.columns(3)
    for colm, (title, M, text) in zip(cols, [
        ("isotropic", parts.isotropic, meaning[0]),
        ("antisymmetric", parts.antisymmetric, meaning[1]),
        ("symmetric traceless", parts.symmetric_traceless, meaning[2]),
    ]):
        with colm:
            st.markdown(f"**{title}** — norm {np.linalg.norm(M):.4g}")
            st.caption(text)
    A = parts.antisymmetric
    w = 0.5 * np.array([A[1, 2] - A[2, 1], A[2, 0] - A[0, 2], A[0, 1] - A[1, 0]])
    evals, _ = principal_axes(T)
    st.caption(f"tr T / 3 = {np.trace(T) / 3:.4g} {u}; axial vector w = ({w[0]:.3g}, {w[1]:.3g}, {w[2]:.3g}); "
               f"eigenvalues of the symmetric part: {', '.join(f'{x:.4g}' for x in evals)}. "
               f"The parts add up to T (max |difference| {float(np.abs(parts.total - T).max()):.1e}).")


def rotation_matrix_widget() -> np.ndarray:
    modes = ["Euler angles", "Random element of O(3)"]
    mode = st.radio("Transformation", modes, horizontal=True, **kept("learn_mode", modes[0], modes))
    if mode == "Euler angles":
        c1, c2, c3, c4 = st.columns(4)
        a = c1.slider("α (about z)", -180, 180, **kept("learn_alpha", 30))
        b = c2.slider("β (about y′)", 0, 180, **kept("learn_beta", 45))
        g = c3.slider("γ (about z″)", -180, 180, **kept("learn_gamma", 60))
        mirror = c4.checkbox("then reflect (z → −z)", **kept("learn_mirror", False),
                             help="An improper rotation (det R = −1): polar tensors such as Born charges, ε and "
                                  "the piezoelectric tensor transform with R alone.")
        return euler_matrix(a, b, g, mirror)
    if st.button("Draw a random O(3) element", key="learn_random", icon=":material/casino:") or \
            "learn_random_R" not in st.session_state:
        st.session_state["learn_random_R"] = random_orthogonal(np.random.default_rng())
    return np.asarray(st.session_state["learn_random_R"])


def section_rotation(model, entry, pred, name: str, j: int) -> None:
    st.header("3 · Rotate or reflect the structure")
    st.markdown("Equivariance means predicting on the transformed structure gives the transformed prediction:")
    st.latex(r"T_j(R\,\mathbf{x}) = R\,T_j(\mathbf{x})\,R^{\mathsf T},\qquad "
             r"e_{abc}(R\,\mathbf{x}) = R_{ai}R_{bj}R_{ck}\,e_{ijk}(\mathbf{x}),\qquad R\in O(3)")
    R = rotation_matrix_widget()
    st.latex("R = " + tex_matrix(R) + r",\qquad \det R = " + f"{np.linalg.det(R):+.0f}")
    rotated = transformed(pred.atoms, R)
    key = (*prediction_key(model, entry), tuple(np.round(R, 10).ravel()))
    pred_rot = memo("learn_rot", key, lambda: model.predict(rotated))
    table = equivariance_table(model, pred, pred_rot, R)
    worst = float(table["relative"].max())
    ok = worst < 1e-4
    (st.success if ok else st.warning)(
        f"Largest relative residual over all tensors: {worst:.1e} "
        + ("— equal up to float32 rounding." if ok else "— larger than float32 rounding."),
        icon=":material/check_circle:" if ok else ":material/warning:")
    st.dataframe(table.style.format({"max |T(Rx) − R·T(x)|": "{:.2e}", "relative": "{:.2e}"}), hide_index=True)
    spec = model.config.spec(name)
    T = np.asarray(pred[name][j] if spec.per_atom else pred[name], dtype=float)
    got = np.asarray(pred_rot[name][j] if spec.per_atom else pred_rot[name], dtype=float)
    if spec.rank == 2:
        expected = R @ T @ R.T
        what = f"{name} of atom #{j}" if spec.per_atom else f"crystal {name}"
        st.markdown(f"**{what}**: rotation of the prediction, prediction on the transformed structure, and "
                    "their difference")
        st.latex(r"R\,T\,R^{\mathsf T} = " + tex_matrix(expected) + r",\qquad T(R\mathbf{x}) = " + tex_matrix(got))
        st.latex(r"T(R\mathbf{x}) - R\,T\,R^{\mathsf T} = " + tex_matrix(got - expected, sci=True)
                 + tex_unit(pred.units.get(name, "")))
        p0, p1 = decompose_rank2(T), decompose_rank2(got)
        inv = pd.DataFrame({"part": ["isotropic", "antisymmetric", "symmetric traceless"],
                            "norm before": [np.linalg.norm(p0.isotropic), np.linalg.norm(p0.antisymmetric),
                                            np.linalg.norm(p0.symmetric_traceless)],
                            "norm after": [np.linalg.norm(p1.isotropic), np.linalg.norm(p1.antisymmetric),
                                           np.linalg.norm(p1.symmetric_traceless)]})
        st.dataframe(inv.round(6), hide_index=True)
        st.caption("The norms of the three parts are invariants: unchanged by the transformation.")
    elif spec.rank in (1, 3, 4):
        show_other_rank(spec, T, got, R, j)
    if spec.per_atom and spec.rank == 2:
        with page_guard("3D views"):
            c1, c2 = st.columns(2)
            for colm, (title, at, P) in zip((c1, c2), [("original", pred.atoms, pred[name]),
                                                     ("transformed", rotated, pred_rot[name])]):
                fig = structure_figure(at, atom_tensors=P, tensor_label=name, highlight=j)
                fig.update_layout(height=380, title=dict(text=f"{title}: ellipsoids of predicted {name}"))
                colm.plotly_chart(fig, key=f"learn_fig_{title}", config={"displaylogo": False})
            st.caption("The ellipsoids (principal axes of the symmetric part) turn with the structure.")


def show_other_rank(spec, T, got, R, j: int) -> None:
    """Vectors as columns, rank 3 / 4 in Voigt form (no factor 2): R·T next to T(Rx)."""
    expected = rotate_tensor(T, R, rank=spec.rank)
    if spec.rank == 1:
        rows = list(XYZ)
        to2d = lambda v: np.asarray(v).reshape(3, 1)  # noqa: E731
        cols_ = ["value"]
    elif spec.rank == 3:
        rows, cols_ = list(XYZ), list(VOIGT_LABELS)
        to2d = full_rank3_to_voigt
    else:
        rows, cols_ = list(VOIGT_LABELS), list(VOIGT_LABELS)
        to2d = full_rank4_to_voigt
    what = f"{spec.name} of atom #{j}" if spec.per_atom else spec.name
    cols = st.columns(3)
    for colm, (title, M) in zip(cols, [(f"R·T ({what})", to2d(expected)), ("prediction on the transformed structure",
                                                                          to2d(got)),
                                       ("residual", to2d(got - expected))]):
        with colm:
            st.markdown(f"*{title}*" + (" — Voigt form" if spec.rank > 2 else ""))
            df = pd.DataFrame(np.asarray(M, dtype=float), index=rows, columns=cols_)
            st.dataframe(df.map(lambda x: f"{x:.1e}") if title == "residual" else df.round(4))


# -------------------------------------------------------------------------------------------- page
def page() -> None:
    st.title("Learn: equivariant tensors from edges")
    st.caption("For a structure and a model of your choice: how the tensor is assembled from bond directions, "
               "what its parts mean, and a live check of rotation equivariance.")
    selected = selected_prediction("; the edge coefficients t_kj below are the members' mean too")
    if selected is None:
        return
    model, entry, pred = selected
    names = list(pred)
    rank2 = [t for t in names if model.config.spec(t).rank == 2]
    preferred = [t for t in (keys.BORN_CHARGES, *rank2, *names) if t in names]
    atoms = pred.atoms
    c1, c2 = st.columns(2)
    name = c1.selectbox("Tensor", names, **kept("learn_tensor", preferred[0], names),
                        format_func=lambda t: f"{t} (rank {model.config.spec(t).rank}, {pred.units.get(t) or '–'})")
    mask = pred.masks.get(name)  # a tensor given for some species only: those atoms are offered
    atom_opts = list(range(len(atoms))) if mask is None else [int(i) for i in np.flatnonzero(mask)] or [0]
    j = int(c2.selectbox("Atom j", atom_opts, **keep_widget("learn_atom", "etgnn_atom", atom_opts, atom_opts[0]),
                         format_func=lambda i: f"#{i} {chemical_symbols[int(atoms.numbers[i])]}"))
    spec = model.config.spec(name)
    if spec.rank == 2:
        with page_guard("edges"):
            section_edges(model, entry, pred, name, j)
        with page_guard("decomposition"):
            section_decomposition(pred, name, j, spec.per_atom)
    else:
        st.info(f"{name} has rank {spec.rank}: sections 1 and 2 explain rank-2 tensors (Born charges, dielectric, "
                "polarizability, shielding); the rotation check below works for every rank.")
    with page_guard("rotation"):
        section_rotation(model, entry, pred, name, j)


with page_guard():
    page()
