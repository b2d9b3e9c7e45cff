"""3D plotly figures of a structure: atoms, cell, per-atom tensor ellipsoids, dipole, bond contributions."""

from __future__ import annotations

import functools

import numpy as np
import plotly.graph_objects as go
from ase.data import chemical_symbols
from ase.geometry import get_distances

from etgnn_core.tensors.algebra import ellipsoid_mesh, isotropic_value, principal_axes
from etgnn_core.viz import _common as c


def _distances(p1, p2, atoms) -> np.ndarray:
    """Distance matrix ``[len(p1), len(p2)]``, minimum image when ``atoms`` is periodic."""
    if c.is_periodic(atoms):
        return get_distances(p1, p2, cell=atoms.cell, pbc=atoms.pbc)[1]
    return get_distances(p1, p2)[1]


def _min_distance(atoms) -> float:
    """Shortest interatomic distance (minimum image when periodic), 2 Angstrom if undefined."""
    cands = []
    if c.is_periodic(atoms):
        lengths = atoms.cell.lengths()
        cands += list(lengths[atoms.pbc & (lengths > 0)])
    if len(atoms) > 1:
        cands.append(_closest_pair_distance(atoms, min([x for x in cands if x > 1e-6], default=np.inf)))
    cands = [x for x in cands if x > 1e-6]
    return float(min(cands)) if cands else 2.0


def _closest_pair_distance(atoms, bound: float) -> float:
    """Shortest distance between two different atoms (minimum image when periodic), or ``bound``
    when none is closer.  A neighbour list (vesin) within 3 Angstrom, then within ``bound``; the
    full distance matrix if that fails or ``bound`` is infinite."""
    try:
        import vesin

        from etgnn_core.structure import neighbor_search_problem

        for cutoff in (min(3.0, bound), bound):
            if not np.isfinite(cutoff):
                break
            box = atoms.cell[:] if c.is_periodic(atoms) else np.zeros((3, 3))
            if neighbor_search_problem(atoms.positions, box, atoms.pbc, float(cutoff)):
                break  # vesin would die (SIGFPE) on this box: the distance matrix below
            nl = vesin.NeighborList(cutoff=float(cutoff), full_list=False, n_threads=1)
            i, j, d = nl.compute(
                np.ascontiguousarray(atoms.positions, dtype=np.float64),
                np.ascontiguousarray(atoms.cell[:], dtype=np.float64),
                [bool(p) for p in atoms.pbc],
                "ijd",
            )
            d = np.asarray(d, dtype=float)[np.asarray(i) != np.asarray(j)]
            if len(d):
                return float(d.min())
            if cutoff >= bound:
                return float(bound)
    except Exception:  # pragma: no cover - a cell vesin rejects: the full distance matrix below
        pass
    d = _distances(atoms.positions, atoms.positions, atoms)
    return float(d[~np.eye(len(atoms), dtype=bool)].min())


def _max_abs_eig(tensors) -> float:
    w = np.linalg.eigvalsh(0.5 * (tensors + np.swapaxes(tensors, -1, -2)))
    return float(np.max(np.abs(w), initial=0.0))


def tensor_summary(T, label: str = "T") -> str:
    """Hover text for a rank-2 tensor: isotropic value, principal values, PD flag, matrix."""
    w, _ = principal_axes(T)
    pd = "positive definite" if np.all(w > 0) else "<b>not positive definite</b>"
    return f"{label}: iso {isotropic_value(T):.3f}<br>principal values {c.fmt_vec(w)}<br>{pd}<br>{c.fmt_matrix(T)}"


def _atom_traces(atoms, hover: list[str]) -> list[go.Scatter3d]:
    traces = []
    for z in sorted(set(atoms.numbers.tolist())):
        idx = np.flatnonzero(atoms.numbers == z)
        p = atoms.positions[idx]
        traces.append(
            go.Scatter3d(
                x=p[:, 0],
                y=p[:, 1],
                z=p[:, 2],
                mode="markers",
                name=chemical_symbols[z],
                marker=dict(
                    size=c.marker_size(np.full(len(idx), z)),
                    color=c.element_color(z),
                    opacity=1.0,
                    line=dict(color="#333333", width=1),
                ),
                text=[hover[i] for i in idx],
                hoverinfo="text",
                customdata=idx,
            )
        )
    return traces


def _cell_trace(atoms) -> go.Scatter3d:
    x, y, z = c.polyline(c.cell_edges(atoms.cell))
    return go.Scatter3d(
        x=x, y=y, z=z, mode="lines", name="unit cell", hoverinfo="skip", line=dict(color=c.CELL_COLOR, width=3)
    )


ELLIPSOID_RINGS = 10  # UV-sphere rings of a per-atom ellipsoid (20 segments around; the 3Dmol viewer has 12)


@functools.lru_cache(maxsize=8)
def _unit_sphere(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(vertices [V, 3], triangles [F, 3]) of the UV sphere of :func:`ellipsoid_mesh` with ``n`` rings."""
    m = ellipsoid_mesh(np.eye(3), np.zeros(3), 1.0, n=n)
    m.vertices.flags.writeable = m.triangles.flags.writeable = False
    return m.vertices, m.triangles


def _ellipsoid_axes(tensors, scale: float, min_radius: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """Batched :func:`ellipsoid_mesh` geometry of ``tensors [m, 3, 3]``: (eigenvalues [m, 3] ascending,
    semi-axis vectors [m, 3, 3], row k = eigenvector k x max(|eigenvalue k| x scale, min_radius),
    right-handed); the ellipsoid's vertices are ``center + unit_sphere @ axes``."""
    w, v = principal_axes(np.asarray(tensors, dtype=float).reshape(-1, 3, 3))
    radii = np.maximum(np.abs(w) * float(scale), min_radius)
    return w, np.swapaxes(v * radii[:, None, :], 1, 2)


def _mesh_trace(vertices, triangles, name, color, opacity, legendgroup=None, showlegend=True, **hover) -> go.Mesh3d:
    """A (merged) mesh as one Mesh3d: float32 vertices, the smallest unsigned index type.
    ``hover``: ``hovertext`` (one string for the whole trace) or ``customdata`` (per vertex) +
    ``hovertemplate``; never a string per vertex."""
    v = np.asarray(vertices, dtype=np.float32).reshape(-1, 3)
    f = np.asarray(triangles).reshape(-1, 3).astype(np.uint16 if len(v) <= 1 << 16 else np.uint32)
    if "hovertext" in hover:
        hover.setdefault("hoverinfo", "text")
    return go.Mesh3d(
        x=v[:, 0],
        y=v[:, 1],
        z=v[:, 2],
        i=f[:, 0],
        j=f[:, 1],
        k=f[:, 2],
        color=color,
        opacity=opacity,
        name=name,
        showlegend=showlegend,
        legendgroup=legendgroup or name,
        flatshading=False,
        **hover,
    )


def _ellipsoid_hovertemplate(symbol: str, label: str, pd: bool) -> str:
    """As the atom's hover text without position and matrix, from ``customdata`` = (index, iso, eigenvalues)."""
    label = label.replace("%{", "%\u200b{")  # a literal "%{" in the label is not a template field
    values = ", ".join(f"%{{customdata[{k}]:.3f}}" for k in (2, 3, 4))
    flag = "positive definite" if pd else "<b>not positive definite</b>"
    return (
        f"#%{{customdata[0]}} {symbol}<br>{label}: iso %{{customdata[1]:.3f}}<br>principal values ({values})"
        f"<br>{flag}<extra></extra>"
    )


def _ellipsoid_traces(atoms, tensors, label, scale) -> list[go.Mesh3d]:
    """Positive-definite ellipsoids (grey), then not positive definite ones (orange), one Mesh3d per
    element in each group (one legend entry per group).  Hover: ``#index symbol``, iso value,
    principal values, positive-definite flag, from ``customdata [V, 5]`` (float32: index, iso,
    eigenvalues) and a per-trace ``hovertemplate``: no text repeated per vertex."""
    idx = np.flatnonzero(np.all(np.isfinite(tensors), axis=(1, 2)))  # unlabelled atoms: nothing to draw
    w, axes = _ellipsoid_axes(tensors[idx], scale)
    unit, tris = _unit_sphere(ELLIPSOID_RINGS)
    bad = ~np.all(w > 0, axis=1)
    rows = np.column_stack([idx, isotropic_value(tensors[idx]), w]).astype(np.float32)
    traces = []
    for nonpd in (False, True):
        name = f"{label}: not positive definite" if nonpd else f"{label} ellipsoids"
        color, opacity = (c.NON_PD_COLOR, 0.8) if nonpd else (c.ELLIPSOID_COLOR, 0.45)
        for first, z in enumerate(sorted(set(atoms.numbers[idx[bad == nonpd]].tolist()))):
            sel = np.flatnonzero((bad == nonpd) & (atoms.numbers[idx] == z))
            verts = atoms.positions[idx[sel], None, :] + unit @ axes[sel]  # [m, V, 3]
            faces = tris + len(unit) * np.arange(len(sel))[:, None, None]
            traces.append(
                _mesh_trace(
                    verts,
                    faces,
                    name,
                    color,
                    opacity,
                    showlegend=first == 0,
                    customdata=np.repeat(rows[sel], len(unit), axis=0),
                    hovertemplate=_ellipsoid_hovertemplate(chemical_symbols[z], label, not nonpd),
                )
            )
    return traces


def _arrow_traces(origin, vector, length, name, hover) -> list:
    u = np.asarray(vector, float) / np.linalg.norm(vector)
    tip = origin + length * u
    head = 0.25 * length
    line_end = tip - head * u
    line = go.Scatter3d(
        x=[origin[0], line_end[0]],
        y=[origin[1], line_end[1]],
        z=[origin[2], line_end[2]],
        mode="lines",
        name=name,
        legendgroup=name,
        line=dict(color="black", width=8),
        text=[hover, hover],
        hoverinfo="text",
    )
    cone = go.Cone(
        x=[line_end[0]],
        y=[line_end[1]],
        z=[line_end[2]],
        u=[u[0]],
        v=[u[1]],
        w=[u[2]],
        sizemode="raw",
        sizeref=head,
        anchor="tail",
        colorscale=[[0, "black"], [1, "black"]],
        showscale=False,
        name=name,
        legendgroup=name,
        showlegend=False,
        hovertext=hover,
        hoverinfo="text",
    )
    return [line, cone]


def _layout(fig: go.Figure, title: str) -> go.Figure:
    axis = dict(title=dict(text=""), showbackground=False, showgrid=False, zeroline=False, showticklabels=False)
    fig.update_layout(
        title=dict(text=title, font=dict(size=13)),
        scene=dict(aspectmode="data", xaxis=axis, yaxis=axis, zaxis=axis),
        uirevision=c.UIREVISION,
        margin=dict(l=0, r=0, t=40, b=0),
        legend=dict(itemsizing="constant"),
    )
    return fig


def structure_figure(
    atoms,
    *,
    atom_tensors=None,
    tensor_label: str = "",
    crystal_tensor=None,
    dipole=None,
    highlight=None,
    scale: float | None = None,
    show_cell: bool = True,
) -> go.Figure:
    """Atoms (spheres coloured by element), the cell, per-atom tensor ellipsoids, crystal tensor, dipole.

    Traces, in order: one Scatter3d per element; "unit cell" lines (periodic and
    ``show_cell`` only); "selected" markers (``highlight``: an index or indices); per-atom
    ellipsoids merged into one Mesh3d per element, positive definite ones (grey, legend "<label>
    ellipsoids") first, then not positive definite ones (orange, "<label>: not positive
    definite": drawn with ``|eigenvalues|``, never hidden), hover once per ellipsoid (per-vertex
    ``customdata`` + a template); the crystal tensor as one Mesh3d at the cell centre; the
    dipole as a line + cone at the centre.

    ``atom_tensors [n, 3, 3]``: rows of NaN are skipped (atoms without a label).  Ellipsoid
    semi-axes are ``|eigenvalue| * scale`` Angstrom; ``scale=None`` makes the largest semi-axis
    0.4 x the shortest interatomic distance.  The crystal tensor and the dipole arrow are scaled
    to the structure size (their magnitudes are in the hover text).
    """
    label = tensor_label or "tensor"
    n = len(atoms)
    tensors = None if atom_tensors is None else np.asarray(atom_tensors, dtype=float).reshape(n, 3, 3)
    hover = [c.atom_label(atoms, a) for a in range(n)]
    if tensors is not None:
        hover = [
            h + ("<br>" + tensor_summary(T, label) if np.all(np.isfinite(T)) else "") for h, T in zip(hover, tensors)
        ]
    fig = go.Figure(_atom_traces(atoms, hover))
    if show_cell and c.is_periodic(atoms):
        fig.add_trace(_cell_trace(atoms))
    if highlight is not None:
        idx = np.atleast_1d(np.asarray(highlight, dtype=int))
        p = atoms.positions[idx]
        fig.add_trace(
            go.Scatter3d(
                x=p[:, 0],
                y=p[:, 1],
                z=p[:, 2],
                mode="markers",
                name="selected",
                marker=dict(size=c.marker_size(atoms.numbers[idx]) + 10, color="gold", opacity=0.35),
                text=[hover[i] for i in idx],
                hoverinfo="text",
                customdata=idx,
            )
        )
    title = ""
    if tensors is not None:
        finite = tensors[np.all(np.isfinite(tensors), axis=(1, 2))]
        if len(finite) == 0:
            title = f"no {label} values to draw"
        else:
            if scale is None:
                scale = 0.4 * _min_distance(atoms) / max(_max_abs_eig(finite), 1e-12)
            fig.add_traces(_ellipsoid_traces(atoms, tensors, label, scale))
            title = f"ellipsoid axes: |eigenvalues| of the symmetric part of {label} (1 unit = {scale:.3g} Å)"
    center, extent = c.structure_center(atoms), c.structure_extent(atoms)
    if crystal_tensor is not None:
        T = np.asarray(crystal_tensor, dtype=float).reshape(3, 3)
        s = 0.2 * extent / max(_max_abs_eig(T), 1e-12)
        m = ellipsoid_mesh(T, center, s)
        name = f"crystal {label}" + ("" if m.positive_definite else ": not positive definite")
        color = c.CRYSTAL_COLOR if m.positive_definite else c.NON_PD_COLOR
        fig.add_trace(
            _mesh_trace(m.vertices, m.triangles, name, color, 0.2, hovertext=tensor_summary(T, f"crystal {label}"))
        )
    if dipole is not None:
        d = np.asarray(dipole, dtype=float).reshape(3)
        norm = float(np.linalg.norm(d))
        if norm > 0:
            text = f"dipole {c.fmt_vec(d)}<br>|p| = {norm:.3f}"
            fig.add_traces(_arrow_traces(center, d, 0.4 * extent, f"dipole (|p| = {norm:.3g})", text))
    return _layout(fig, title)


def _match_atoms(atoms, positions) -> np.ndarray:
    """Index of the atom (or its periodic image) at each position; -1 when none within 0.1 Angstrom."""
    d = _distances(positions, atoms.positions, atoms)
    idx = d.argmin(axis=1)
    return np.where(d[np.arange(len(idx)), idx] < 0.1, idx, -1)


def contribution_sign(contrib, bond_dir) -> int:
    """The sign a bond is coloured by: rank 2 the trace, rank 1 the projection on the bond direction
    e_kj, otherwise the largest component (which also breaks a zero trace or projection)."""
    a = np.asarray(contrib, dtype=float)
    largest = int(np.sign(a.ravel()[np.abs(a).argmax()])) if a.size else 0
    if a.shape == (3, 3):
        tr = np.trace(a)
        return int(np.sign(tr)) if abs(tr) > 1e-6 * max(np.abs(a).max(), 1e-300) else largest
    if a.shape == (3,):
        proj = float(a @ bond_dir)
        return int(np.sign(proj)) if abs(proj) > 1e-12 else largest
    return largest


def contributions_figure(
    atoms, center: int, neighbor_positions, contributions, label: str = "", *, neighbor_indices=None
) -> go.Figure:
    """Bond contributions to the tensor of atom ``center`` from neighbours (possibly periodic images).

    Bonds go from the centre to each ``neighbor_positions [m, 3]`` (Angstrom, images may lie
    outside the cell).  Colour: red positive, blue negative -- rank 2: sign of the trace; rank
    1: sign of the projection on ``e_kj`` (unit vector from the neighbour to the centre,
    :mod:`etgnn_core.keys`); otherwise the largest-|component| sign.  Width grows with the
    Frobenius norm.  Hover shows the contribution.  Neighbour elements come from
    ``neighbor_indices`` or are found by matching positions to atoms (minimum image).

    Traces: the centre atom, the neighbours, then one line per bond.
    """
    pos = np.asarray(neighbor_positions, dtype=float).reshape(-1, 3)
    contrib = np.asarray(contributions, dtype=float).reshape(len(pos), *np.shape(contributions)[1:])
    if neighbor_indices is None:
        neighbor_indices = _match_atoms(atoms, pos) if len(pos) else np.zeros(0, int)
    nidx = np.asarray(neighbor_indices, dtype=int)
    c0 = atoms.positions[center]
    zc = int(atoms.numbers[center])
    label = label or "contribution"
    fig = go.Figure(
        go.Scatter3d(
            x=[c0[0]],
            y=[c0[1]],
            z=[c0[2]],
            mode="markers",
            name=f"centre #{center} {chemical_symbols[zc]}",
            marker=dict(size=c.marker_size([zc]) + 4, color=c.element_color(zc), line=dict(color="black", width=2)),
            text=[c.atom_label(atoms, center)],
            hoverinfo="text",
        )
    )
    colors = [c.element_color(atoms.numbers[i]) if i >= 0 else "lightgrey" for i in nidx]
    names = [f"#{i} {chemical_symbols[atoms.numbers[i]]}" if i >= 0 else "?" for i in nidx]
    fig.add_trace(
        go.Scatter3d(
            x=pos[:, 0],
            y=pos[:, 1],
            z=pos[:, 2],
            mode="markers",
            name="neighbours",
            marker=dict(
                size=c.marker_size(np.where(nidx >= 0, atoms.numbers[np.maximum(nidx, 0)], 0)),
                color=colors,
                line=dict(color="#333333", width=1),
            ),
            text=[f"neighbour {n}<br>pos {c.fmt_vec(p)} Å" for n, p in zip(names, pos)],
            hoverinfo="text",
        )
    )
    norms = np.sqrt((contrib.reshape(len(pos), -1) ** 2).sum(axis=1))
    nmax = max(float(norms.max(initial=0.0)), 1e-300)
    shown = set()
    for b, (p, a) in enumerate(zip(pos, contrib)):
        r = c0 - p
        sign = contribution_sign(a, r / max(np.linalg.norm(r), 1e-12))
        kind = "positive" if sign >= 0 else "negative"
        mid = 0.5 * (c0 + p)
        text = f"{names[b]} → #{center}<br>|{label}| = {norms[b]:.3g} ({kind})<br>{c.fmt_matrix(a)}"
        fig.add_trace(
            go.Scatter3d(
                x=[c0[0], mid[0], p[0]],
                y=[c0[1], mid[1], p[1]],
                z=[c0[2], mid[2], p[2]],
                mode="lines",
                line=dict(color=c.POSITIVE_COLOR if sign >= 0 else c.NEGATIVE_COLOR, width=2 + 12 * norms[b] / nmax),
                name=f"{kind} {label}",
                legendgroup=kind,
                showlegend=kind not in shown,
                text=[text] * 3,
                hoverinfo="text",
            )
        )
        shown.add(kind)
    return _layout(fig, f"bond contributions to {label} of atom #{center} (width ∝ Frobenius norm)")
