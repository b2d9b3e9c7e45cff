"""Offline 3Dmol.js viewer: one self-contained HTML page for ``st.iframe(html, height=...)``.

The 3Dmol.js library (v2.5.5, BSD-3-Clause, same version as py3Dmol 2.5.5) is read from
``assets/js/3Dmol/3Dmol-min.js`` and inlined; ``$3Dmolpromise`` is pre-defined as a resolved
promise so py3Dmol-style snippets never inject their CDN tag.  The page is written directly
against the 3Dmol API (py3Dmol's own HTML would put ``time.time()`` in the view id and a CDN
URL in the page).  No URL is fetched: no ``query=``, no download, no CDN.

Per-atom rank-2 tensors are drawn as true ellipsoids (``viewer.addCustom`` triangle meshes),
semi-axes ``|eigenvalue| * scale`` of the symmetric part; tensors with an eigenvalue ``<= 0``
are orange, the others grey.  The page carries only each ellipsoid's centre, its three
principal semi-axis vectors and a positive-definite flag; the meshes (the UV sphere of
:func:`etgnn_core.tensors.algebra.ellipsoid_mesh` with ``n=12``, same vertices, normals and
triangles) are built by the page's JavaScript (:data:`MESH_JS`), which keeps the page small
(most of it is then the 3Dmol.js library, not meshes).

The view id is stable, so identical inputs give identical HTML (Streamlit keeps the iframe);
the camera is also saved in ``sessionStorage`` under the view id and a fingerprint of the
structure, and restored when the page is rebuilt for the same structure (e.g. new tensors or a
new highlight), where the iframe sandbox allows storage.  The initial camera frames the atoms,
the cell and the ellipsoids (an invisible helper model; 3Dmol's own ``zoomTo()`` centres on
the atoms only and zooms out to at least 10 Angstrom).  Hovering an atom labels it
``#index element`` (ASE index).
"""

from __future__ import annotations

import functools
import hashlib
import html
import json
import os
import re
from pathlib import Path

import numpy as np
from ase.data import chemical_symbols

from etgnn_core.viz import _common as c
from etgnn_core.viz.structure import _ellipsoid_axes, _max_abs_eig, _min_distance, _unit_sphere

JS_RELATIVE_PATH = Path("js") / "3Dmol" / "3Dmol-min.js"


def assets_dir() -> Path:
    """The ``assets/`` folder: ``$ETGNN_ASSETS`` if set, else ``<repo>/assets`` next to the package."""
    env = os.environ.get("ETGNN_ASSETS")
    candidates = [Path(env)] if env else []
    candidates += [Path(__file__).resolve().parents[2] / "assets", Path.cwd() / "assets"]
    for d in candidates:
        if (d / JS_RELATIVE_PATH).is_file():
            return d
    raise FileNotFoundError(
        f"{JS_RELATIVE_PATH} not found in any of {[str(d) for d in candidates]}; "
        "set ETGNN_ASSETS to the repository's assets/ folder"
    )


@functools.lru_cache(maxsize=4)
def _read_js(path: str) -> str:
    return Path(path).read_text(encoding="utf-8")


def threedmol_js() -> str:
    """The 3Dmol-min.js source (cached)."""
    return _read_js(str(assets_dir() / JS_RELATIVE_PATH))


def _xyz(atoms) -> str:
    comment = "etgnn"
    if c.is_periodic(atoms):
        comment = 'Lattice="' + " ".join(f"{x:.6f}" for x in np.asarray(atoms.cell).ravel()) + '"'
    lines = [str(len(atoms)), comment]
    lines += [f"{chemical_symbols[z]} {p[0]:.6f} {p[1]:.6f} {p[2]:.6f}" for z, p in zip(atoms.numbers, atoms.positions)]
    return "\n".join(lines) + "\n"


MESH_RINGS = 12  # UV-sphere rings of a per-atom ellipsoid (ellipsoid_mesh(..., n=MESH_RINGS))


def _ellipsoids(atoms, tensors, scale) -> list[dict]:
    """One compact record per atom with a finite tensor: ``c`` centre, ``a`` the three semi-axis
    vectors (eigenvector x max(|eigenvalue| x scale, 1e-3 A), flattened row by row, in
    ascending eigenvalue order, right-handed: as ellipsoid_mesh), ``pd`` positive definite."""
    T = np.asarray(tensors, dtype=float)
    idx = np.flatnonzero(np.all(np.isfinite(T), axis=(1, 2)))
    if not len(idx):
        return []
    w, axes = _ellipsoid_axes(T[idx], scale)  # axes [m, axis, xyz]
    centres = np.round(atoms.positions[idx], 4).tolist()
    axes = np.round(axes.reshape(len(idx), 9), 6).tolist()
    return [dict(c=c_, a=a_, pd=bool(p)) for c_, a_, p in zip(centres, axes, np.all(w > 0, axis=1))]


def _ellipsoid_vertices(ellipsoids: list[dict]) -> np.ndarray:
    """``[m * V, 3]`` the vertices the page's JavaScript builds (for the camera frame)."""
    if not ellipsoids:
        return np.zeros((0, 3))
    unit = _unit_sphere(MESH_RINGS)[0]
    c_ = np.array([e["c"] for e in ellipsoids])
    a_ = np.array([e["a"] for e in ellipsoids]).reshape(-1, 3, 3)
    return (c_[:, None, :] + unit @ a_).reshape(-1, 3)


# The ellipsoid meshes, built in the page: etgnnEllipsoid(e, sphere) -> addCustom spec arrays.  The UV sphere
# is etgnn_core.tensors.algebra._unit_sphere(n) (poles + (n - 1) rings of 2n vertices, outward
# counter-clockwise triangles); vertex = c + sum_k u_k a_k, normal ~ sum_k u_k a_k / |a_k|^2 (the
# inverse-transpose map, as ellipsoid_mesh).  tests/test_viz.py runs this code in node against ellipsoid_mesh.
MESH_JS = """
function etgnnUnitSphere(n) {
  var m = 2 * n, u = [0, 0, 1], f = [], i, j;
  for (i = 1; i < n; i++) {
    var t = Math.PI * i / n, st = Math.sin(t), ct = Math.cos(t);
    for (j = 0; j < m; j++) {
      var p = 2 * Math.PI * j / m;
      u.push(st * Math.cos(p), st * Math.sin(p), ct);
    }
  }
  u.push(0, 0, -1);
  var south = u.length / 3 - 1, last = 1 + (n - 2) * m;
  for (j = 0; j < m; j++) f.push(0, 1 + j, 1 + (j + 1) % m);
  for (i = 0; i < n - 2; i++) {
    for (j = 0; j < m; j++) f.push(1 + i * m + j, 1 + (i + 1) * m + j, 1 + (i + 1) * m + (j + 1) % m);
    for (j = 0; j < m; j++) f.push(1 + i * m + j, 1 + (i + 1) * m + (j + 1) % m, 1 + i * m + (j + 1) % m);
  }
  for (j = 0; j < m; j++) f.push(south, last + (j + 1) % m, last + j);
  return {u: u, f: f};
}
function etgnnEllipsoid(e, sphere) {
  var a = e.a, c = e.c, u = sphere.u, verts = [], normals = [], k, q = [];
  for (k = 0; k < 3; k++) {
    var s = a[3 * k] * a[3 * k] + a[3 * k + 1] * a[3 * k + 1] + a[3 * k + 2] * a[3 * k + 2];
    q.push(1 / Math.max(s, 1e-30));
  }
  for (var i = 0; i < u.length; i += 3) {
    var x = u[i], y = u[i + 1], z = u[i + 2];
    verts.push({x: c[0] + x * a[0] + y * a[3] + z * a[6],
                y: c[1] + x * a[1] + y * a[4] + z * a[7],
                z: c[2] + x * a[2] + y * a[5] + z * a[8]});
    var nx = x * q[0] * a[0] + y * q[1] * a[3] + z * q[2] * a[6],
        ny = x * q[0] * a[1] + y * q[1] * a[4] + z * q[2] * a[7],
        nz = x * q[0] * a[2] + y * q[1] * a[5] + z * q[2] * a[8],
        r = Math.sqrt(nx * nx + ny * ny + nz * nz) || 1;
    normals.push({x: nx / r, y: ny / r, z: nz / r});
  }
  return {vertexArr: verts, normalArr: normals, faceArr: sphere.f};
}
"""


_SCRIPT = """
(function () {
%(mesh_js)s
  var d = %(data)s;
  var el = document.getElementById(d.id);
  var viewer = $3Dmol.createViewer(el, {backgroundColor: "white", minimumZoomToDistance: 1});
  var model = viewer.addModel(d.xyz, "xyz");
  model.setStyle({}, d.style);
  // invisible points (extremes of the atoms, cell and ellipsoids) that the camera must frame
  var frame = viewer.addModel(d.frame, "xyz", {assignBonds: false});
  frame.setStyle({}, {});
  if (d.cell) {
    viewer.addUnitCell(model, {box: {color: "#444444"}, alabel: "a", blabel: "b", clabel: "c"});
  }
  var sphere = etgnnUnitSphere(d.rings);
  d.ellipsoids.forEach(function (e) {
    var spec = etgnnEllipsoid(e, sphere);
    spec.color = e.pd ? d.colors[0] : d.colors[1];
    spec.opacity = e.pd ? d.opacities[0] : d.opacities[1];
    viewer.addCustom(spec);
  });
  d.highlight.forEach(function (h) {
    viewer.addSphere({center: {x: h[0], y: h[1], z: h[2]}, radius: h[3], color: "gold", opacity: 0.45});
  });
  model.setHoverable({}, true, function (atom, v) {
    if (!atom.label) {
      atom.label = v.addLabel("#" + atom.serial + " " + atom.elem,
        {position: atom, backgroundColor: "black", fontColor: "white", fontSize: 12});
    }
  }, function (atom, v) {
    if (atom.label) { v.removeLabel(atom.label); delete atom.label; }
  });
  viewer.zoomTo({model: frame});
  var key = "etgnn-3dmol-view:" + d.id + ":" + d.fingerprint;
  try {
    var saved = window.sessionStorage.getItem(key);
    if (saved) viewer.setView(JSON.parse(saved));
  } catch (err) {}
  viewer.setViewChangeCallback(function (view) {
    try { window.sessionStorage.setItem(key, JSON.stringify(view)); } catch (err) {}
  });
  viewer.render();
  window.etgnnViewer = viewer;
})();
"""

_STYLES = {  # with tensors, atoms are drawn smaller (see _TENSOR_STYLES) so the ellipsoids show
    "ballstick": {"stick": {"radius": 0.12, "colorscheme": "Jmol"}, "sphere": {"scale": 0.25, "colorscheme": "Jmol"}},
    "stick": {"stick": {"radius": 0.15, "colorscheme": "Jmol"}},
    "sphere": {"sphere": {"scale": 0.6, "colorscheme": "Jmol"}},
}
_TENSOR_STYLES = {
    "ballstick": {"stick": {"radius": 0.06, "colorscheme": "Jmol"}, "sphere": {"scale": 0.12, "colorscheme": "Jmol"}},
    "stick": {"stick": {"radius": 0.08, "colorscheme": "Jmol"}},
    "sphere": {"sphere": {"scale": 0.15, "colorscheme": "Jmol"}},
}


def _frame_xyz(atoms, ellipsoids: list[dict], halo: list) -> str:
    """Points that must stay in view, mirrored through the centre so 3Dmol centres on it.

    ``zoomTo`` uses their mean (the centre, by the mirroring), their bounding box and their
    largest distance from the centre; only the points that set these are kept (the per-axis
    extremes and the farthest point, with their mirror images): the same camera as with all
    the points, in a few hundred bytes.
    """
    pts = [atoms.positions]
    if c.is_periodic(atoms):
        pts.append(c.cell_edges(atoms.cell).reshape(-1, 3))
    pts.append(_ellipsoid_vertices(ellipsoids))
    pts += [np.array(h[:3]) + h[3] * np.vstack([np.eye(3), -np.eye(3)]) for h in halo]
    pts = np.concatenate(pts)
    center = c.structure_center(atoms) if c.is_periodic(atoms) else 0.5 * (pts.min(0) + pts.max(0))
    pts = center + 1.02 * (pts - center)  # small margin
    pts = np.concatenate([pts, 2 * center - pts])
    keep = np.unique(np.concatenate([pts.argmin(0), pts.argmax(0), [np.argmax(((pts - center) ** 2).sum(1))]]))
    pts = pts[keep]
    pts = np.concatenate([pts, 2 * center - pts])
    return f"{len(pts)}\nframe\n" + "".join(f"X {p[0]:.4f} {p[1]:.4f} {p[2]:.4f}\n" for p in pts)


def viewer_html(
    atoms,
    *,
    view_id: str = "etgnn-view",
    atom_tensors=None,
    highlight=None,
    width: int | str = "100%",
    height: int = 480,
    tensor_label: str = "",
    scale: float | None = None,
    style: str = "ballstick",
    show_cell: bool = True,
) -> str:
    """Self-contained offline HTML page showing ``atoms`` with 3Dmol.js (for ``st.iframe``).

    ``atom_tensors [n, 3, 3]``: ellipsoids of the symmetric parts (NaN rows skipped);
    ``scale=None`` makes the largest semi-axis 0.4 x the shortest interatomic distance.
    ``highlight``: atom index or indices drawn with a gold halo.  ``style``: "ballstick",
    "stick" or "sphere".  ``width``: pixels or a CSS length; ``height`` in pixels (give the
    iframe ``height + 40`` for the caption line).
    """
    if style not in _STYLES:
        raise ValueError(f"style must be one of {sorted(_STYLES)}")
    vid = re.sub(r"[^A-Za-z0-9_-]", "-", view_id) or "etgnn-view"
    ellipsoids, caption = [], ""
    T = None if atom_tensors is None else np.asarray(atom_tensors, dtype=float).reshape(len(atoms), 3, 3)
    finite = None if T is None else T[np.all(np.isfinite(T), axis=(1, 2))]
    if finite is not None and len(finite):
        if scale is None:
            scale = 0.4 * _min_distance(atoms) / max(_max_abs_eig(finite), 1e-12)
        ellipsoids = _ellipsoids(atoms, T, scale)
        label = html.escape(tensor_label or "tensor")
        caption = f"ellipsoid axes: |eigenvalues| of the symmetric part of {label} (1 unit = {scale:.3g} Å)"
        if any(not e["pd"] for e in ellipsoids):
            caption += f"; <span style='color:{c.NON_PD_COLOR}'>orange: not positive definite</span>"
    halo = []
    if highlight is not None:
        for i in np.atleast_1d(np.asarray(highlight, dtype=int)):
            p = atoms.positions[i]
            halo.append([float(p[0]), float(p[1]), float(p[2]), 0.9])
    xyz = _xyz(atoms)
    data = dict(
        id=vid,
        xyz=xyz,
        frame=_frame_xyz(atoms, ellipsoids, halo),
        fingerprint=hashlib.sha1(xyz.encode()).hexdigest()[:12],
        style=(_TENSOR_STYLES if ellipsoids else _STYLES)[style],
        cell=bool(show_cell and c.is_periodic(atoms)),
        ellipsoids=ellipsoids,
        rings=MESH_RINGS,
        colors=[c.ELLIPSOID_COLOR, c.NON_PD_COLOR],
        opacities=[0.55, 0.85],
        highlight=halo,
    )
    w = f"{width}px" if isinstance(width, (int, float)) else str(width)
    # "</" cannot appear in JSON numbers/element symbols, but escape it anyway for the <script> block
    script = _SCRIPT % {"mesh_js": MESH_JS, "data": json.dumps(data, separators=(",", ":")).replace("</", "<\\/")}
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">\n'
        f"<style>html,body{{margin:0;padding:0;}} #{vid}{{position:relative;width:{w};height:{int(height)}px;}}"
        " .etgnn-caption{font:12px sans-serif;color:#333;padding:4px;}</style>\n"
        "<script>/* 3Dmol.js 2.5.5, BSD-3-Clause: see assets/js/3Dmol/LICENSE */\n"
        f"{threedmol_js()}\n</script>\n"
        "<script>var $3Dmolpromise = Promise.resolve();</script>\n"
        f'</head><body>\n<div id="{vid}"></div>\n<div class="etgnn-caption">{caption}</div>\n'
        f"<script>{script}</script>\n</body></html>\n"
    )
