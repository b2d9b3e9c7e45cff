"""Offline 3Dmol.js viewer: one self-contained HTML page for ``st.iframe(html, height=...)``.

The 3Dmol.js library (v2.5.5, BSD-3-Clause, same version as py3Dmol 2.5.5) is read from
``assets/js/3Dmol/3Dmol-min.js`` and inlined; ``$3Dmolpromise`` is pre-defined as a resolved
promise so py3Dmol-style snippets never inject their CDN tag.  The page is written directly
against the 3Dmol API (py3Dmol's own HTML would put ``time.time()`` in the view id and a CDN
URL in the page).  No URL is fetched: no ``query=``, no download, no CDN.

Per-atom rank-2 tensors are drawn as true ellipsoids (``viewer.addCustom`` triangle meshes
from :func:`etgnn_core.tensors.algebra.ellipsoid_mesh`), semi-axes ``|eigenvalue| * scale``
of the symmetric part; tensors with an eigenvalue ``<= 0`` are orange, the others grey.

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

from etgnn_core.tensors.algebra import ellipsoid_mesh
from etgnn_core.viz import _common as c
from etgnn_core.viz.structure import _max_abs_eig, _min_distance

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


def _ellipsoids(atoms, tensors, scale) -> list[dict]:
    out = []
    for a, T in enumerate(tensors):
        if not np.all(np.isfinite(T)):
            continue
        m = ellipsoid_mesh(T, atoms.positions[a], scale, n=12)
        out.append(
            dict(
                v=np.round(m.vertices, 4).ravel().tolist(),
                n=np.round(m.normals, 4).ravel().tolist(),
                f=m.triangles.ravel().tolist(),
                pd=m.positive_definite,
                color=c.ELLIPSOID_COLOR if m.positive_definite else c.NON_PD_COLOR,
                opacity=0.55 if m.positive_definite else 0.85,
            )
        )
    return out


_SCRIPT = """
(function () {
  var d = %(data)s;
  var el = document.getElementById(d.id);
  var viewer = $3Dmol.createViewer(el, {backgroundColor: "white", minimumZoomToDistance: 1});
  var model = viewer.addModel(d.xyz, "xyz");
  model.setStyle({}, d.style);
  // invisible points (cell corners, ellipsoid tips) that the camera must frame
  var frame = viewer.addModel(d.frame, "xyz", {assignBonds: false});
  frame.setStyle({}, {});
  if (d.cell) {
    viewer.addUnitCell(model, {box: {color: "#444444"}, alabel: "a", blabel: "b", clabel: "c"});
  }
  function pts(flat) {
    var out = [];
    for (var i = 0; i < flat.length; i += 3) out.push({x: flat[i], y: flat[i + 1], z: flat[i + 2]});
    return out;
  }
  d.ellipsoids.forEach(function (e) {
    viewer.addCustom({vertexArr: pts(e.v), normalArr: pts(e.n), faceArr: e.f,
                      color: e.color, opacity: e.opacity});
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
    """Points that must stay in view, mirrored through the centre so 3Dmol centres on it."""
    pts = [atoms.positions]
    if c.is_periodic(atoms):
        pts.append(c.cell_edges(atoms.cell).reshape(-1, 3))
    pts += [np.reshape(e["v"], (-1, 3)) for e in ellipsoids]
    pts += [np.array(h[:3]) + h[3] * np.vstack([np.eye(3), -np.eye(3)]) for h in halo]
    pts = np.concatenate(pts)
    center = c.structure_center(atoms) if c.is_periodic(atoms) else 0.5 * (pts.min(0) + pts.max(0))
    pts = center + 1.02 * (pts - center)  # small margin
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
        highlight=halo,
    )
    w = f"{width}px" if isinstance(width, (int, float)) else str(width)
    # "</" cannot appear in JSON numbers/element symbols, but escape it anyway for the <script> block
    script = _SCRIPT % {"data": json.dumps(data, separators=(",", ":")).replace("</", "<\\/")}
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
