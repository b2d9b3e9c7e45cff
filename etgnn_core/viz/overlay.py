"""Shapes drawn over a :func:`etgnn_core.viz.viewer_html` page (meshes, arrows, bonds, spheres), and the
helpers that build them: where a structure is and how large (:func:`structure_frame`), vertex normals of
a triangle mesh (:func:`mesh_normals`) and a blue-white-red colour per vertex (:func:`diverging_rgb`)."""

from __future__ import annotations

import json

import numpy as np
from ase import Atoms

from etgnn_core.viz import _common as c

_OVERLAY_SCRIPT = """<script>
(function () {
  var v = window.etgnnViewer;
  if (!v) return;
  var d = %(data)s;
  function pts(flat) {
    var out = [];
    for (var i = 0; i < flat.length; i += 3) out.push({x: flat[i], y: flat[i + 1], z: flat[i + 2]});
    return out;
  }
  function cols(flat) {
    var out = [];
    for (var i = 0; i < flat.length; i += 3) out.push(new $3Dmol.Color(flat[i], flat[i + 1], flat[i + 2]));
    return out;
  }
  function P(a) { return {x: a[0], y: a[1], z: a[2]}; }
  function hover(text, at) {
    return {
      hoverable: true,
      hover_callback: function (s, viewer) {
        if (!s.etgnnLabel) s.etgnnLabel = viewer.addLabel(text, {position: P(at), backgroundColor: "black",
          fontColor: "white", fontSize: 11});
      },
      unhover_callback: function (s, viewer) {
        if (s.etgnnLabel) { viewer.removeLabel(s.etgnnLabel); delete s.etgnnLabel; }
      }
    };
  }
  d.meshes.forEach(function (m) {
    var spec = {vertexArr: pts(m.v), normalArr: pts(m.n), faceArr: m.f, opacity: m.opacity};
    if (m.c) spec.colorArr = cols(m.c); else spec.color = m.color;
    var shape = v.addCustom(spec);
    if (m.c) delete shape.color;  // 3Dmol paints a shape's single colour over its per-vertex colours
  });
  d.arrows.forEach(function (a) {
    v.addArrow(Object.assign({start: P(a.start), end: P(a.end), radius: a.radius, radiusRatio: 2.2, mid: 0.78,
                              color: a.color}, hover(a.label, a.end)));
  });
  d.cylinders.forEach(function (c) {
    v.addCylinder(Object.assign({start: P(c.start), end: P(c.end), radius: c.radius, color: c.color,
                                 fromCap: 1, toCap: 1}, hover(c.label, c.end)));
  });
  d.spheres.forEach(function (s) {
    v.addSphere(Object.assign({center: P(s.center), radius: s.radius, color: s.color, opacity: s.opacity},
                              hover(s.label, s.center)));
  });
  v.render();
})();
</script>
"""


def _flat(a, digits: int = 4) -> list:
    return np.round(np.asarray(a, dtype=float), digits).ravel().tolist()


def with_overlay(html: str, *, meshes=(), arrows=(), cylinders=(), spheres=()) -> str:
    """Add shapes to a page of :func:`etgnn_core.viz.viewer_html` (drawn after its atoms; its camera
    handling is unchanged).  ``meshes``: dicts ``v`` [V, 3], ``n`` [V, 3] normals, ``f`` [F, 3]
    triangles, ``color`` and ``opacity``, optional ``c`` [V, 3] RGB in 0..1 per vertex; ``arrows`` /
    ``cylinders``: ``start``, ``end``, ``radius``, ``color``, ``label`` (shown on hover);
    ``spheres``: ``center``, ``radius``, ``color``, ``opacity``, ``label``.
    """
    data = {
        "meshes": [{"v": _flat(m["v"]), "n": _flat(m["n"], 3), "f": np.asarray(m["f"], dtype=int).ravel().tolist(),
                    "color": m.get("color", "#888888"), "opacity": float(m.get("opacity", 1.0)),
                    **({"c": _flat(m["c"], 3)} if m.get("c") is not None else {})} for m in meshes],
        "arrows": [_shape(a) for a in arrows],
        "cylinders": [_shape(c) for c in cylinders],
        "spheres": [{**s, "center": _flat(s["center"]), "label": str(s.get("label", ""))} for s in spheres],
    }
    script = _OVERLAY_SCRIPT % {"data": json.dumps(data, separators=(",", ":")).replace("</", "<\\/")}
    return html.replace("</body>", script + "</body>", 1)


def _shape(s: dict) -> dict:
    return {**s, "start": _flat(s["start"]), "end": _flat(s["end"]), "radius": float(s["radius"]),
            "label": str(s.get("label", ""))}


def structure_frame(atoms: Atoms) -> tuple[np.ndarray, float]:
    """(centre, size) of a structure: the cell centre and largest extent of atoms + cell for a
    crystal, the centroid and extent of the atoms for a molecule (Angstrom; size >= 1)."""
    return c.structure_center(atoms), c.structure_extent(atoms)


def mesh_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Unit vertex normals averaged from the triangles around each vertex (zero-area ones ignored)."""
    v = np.asarray(vertices, dtype=float)
    t = np.asarray(triangles, dtype=int)
    fn = np.cross(v[t[:, 1]] - v[t[:, 0]], v[t[:, 2]] - v[t[:, 0]])
    n = np.zeros_like(v)
    for k in range(3):
        np.add.at(n, t[:, k], fn)
    norm = np.linalg.norm(n, axis=1, keepdims=True)
    fallback = v - v.mean(axis=0)
    n = np.where(norm > 1e-12, n / np.maximum(norm, 1e-300), fallback)
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)


def diverging_rgb(values: np.ndarray, vmax: float) -> np.ndarray:
    """RGB in 0..1: blue (negative) - white (zero) - red (positive), |value| / vmax clipped to 1.

    The red and blue are POSITIVE_COLOR and NEGATIVE_COLOR (to 3 digits)."""
    x = np.clip(np.asarray(values, dtype=float) / max(vmax, 1e-300), -1.0, 1.0)[..., None]
    red, blue, white = np.array([0.753, 0.224, 0.169]), np.array([0.129, 0.4, 0.675]), np.ones(3)
    return np.where(x >= 0, white + x * (red - white), white - x * (blue - white))
