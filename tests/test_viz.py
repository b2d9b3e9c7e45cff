"""Figures (plotly) and the offline 3Dmol viewer."""

import json
import re
import shutil
import subprocess

import numpy as np
import plotly.graph_objects as go
import pytest
from ase import Atoms
from ase.build import bulk, molecule

from etgnn_core.tensors.algebra import ellipsoid_mesh
from etgnn_core.viz import (
    NEGATIVE_COLOR,
    POSITIVE_COLOR,
    assets_dir,
    contributions_figure,
    diverging_rgb,
    mesh_normals,
    pca_figure,
    piezo_surface_figure,
    structure_figure,
    structure_frame,
    tensor_table,
    viewer_html,
    with_overlay,
)


@pytest.fixture
def nacl():
    return bulk("NaCl", "rocksalt", a=5.64)


@pytest.fixture
def water():
    return molecule("H2O")


def _names(fig):
    return [t.name for t in fig.data]


def _no_mathjax(fig):
    text = json.dumps(fig.to_plotly_json(), default=str)
    assert "$" not in text, "MathJax is not bundled offline: use <sub>/<sup>"


def test_structure_figure_crystal(nacl):
    fig = structure_figure(nacl)
    assert isinstance(fig, go.Figure)
    assert _names(fig) == ["Na", "Cl", "unit cell"]
    cell = fig.data[2]
    assert cell.mode == "lines" and sum(x is None for x in cell.x) == 12  # 12 edges
    assert fig.layout.uirevision is not None
    assert _names(structure_figure(nacl, show_cell=False)) == ["Na", "Cl"]
    _no_mathjax(fig)


def test_structure_figure_molecule_has_no_cell(water):
    fig = structure_figure(water)
    assert _names(fig) == ["H", "O"]
    assert all(t.type == "scatter3d" and t.mode == "markers" for t in fig.data)
    assert len(fig.data[0].x) == 2 and len(fig.data[1].x) == 1
    assert "#1 H" in fig.data[0].text[0]


def test_structure_figure_tensors_dipole_highlight(nacl):
    Z = np.array([np.diag([1.1, 1.1, 1.1]), np.diag([1.0, 2.0, -3.0])])
    fig = structure_figure(
        nacl,
        atom_tensors=Z,
        tensor_label="Z*",
        crystal_tensor=np.diag([2.0, 2.0, 3.0]),
        dipole=[0.0, 0.0, 0.5],
        highlight=1,
    )
    assert [t.type for t in fig.data] == ["scatter3d"] * 4 + ["mesh3d"] * 3 + ["scatter3d", "cone"]
    assert _names(fig)[2:7] == ["unit cell", "selected", "Z* ellipsoids", "Z*: not positive definite", "crystal Z*"]
    assert "ellipsoid axes: |eigenvalues| of the symmetric part of Z*" in fig.layout.title.text
    bad = fig.data[5]
    assert bad.color != fig.data[4].color
    # hover once per ellipsoid: a template over per-vertex (index, iso, eigenvalues), no text per vertex
    assert "not positive definite" in bad.hovertemplate and "#%{customdata[0]} Cl" in bad.hovertemplate
    assert "not positive definite" not in fig.data[4].hovertemplate
    cd = np.asarray(bad.customdata)
    assert cd.shape == (len(bad.x), 5) and cd.dtype == np.float32
    np.testing.assert_allclose(cd[0], [1, 0.0, -3.0, 1.0, 2.0], atol=1e-6)
    assert (cd == cd[0]).all()
    assert isinstance(fig.data[6].hovertext, str) and "crystal Z*" in fig.data[6].hovertext
    assert "not positive definite" in fig.data[1].text[0]  # Cl hover
    assert "not positive definite" not in fig.data[0].text[0]  # Na hover
    # the non-positive-definite ellipsoid is drawn at the Cl site with |eigenvalues|
    verts = np.stack([bad.x, bad.y, bad.z], axis=1) - nacl.positions[1]
    extent = np.abs(verts).max(axis=0)
    np.testing.assert_allclose(extent / extent[2], [1 / 3, 2 / 3, 1], rtol=1e-5)
    _no_mathjax(fig)


def test_structure_figure_skips_unlabelled_atoms(water):
    Z = np.full((3, 3, 3), np.nan)
    Z[0] = np.eye(3)
    fig = structure_figure(water, atom_tensors=Z, tensor_label="σ")
    meshes = [t for t in fig.data if t.type == "mesh3d"]
    assert len(meshes) == 1
    assert meshes[0].hovertemplate.startswith("#%{customdata[0]} O<br>σ: iso")
    assert set(np.asarray(meshes[0].customdata)[:, 0]) == {0}
    assert "σ" in fig.data[1].text[0] and "σ" not in fig.data[0].text[0]  # O labelled, H not
    empty = structure_figure(water, atom_tensors=np.full((3, 3, 3), np.nan), tensor_label="σ")
    assert "no σ values" in empty.layout.title.text and _names(empty) == ["H", "O"]


def _zno_200():
    atoms = bulk("ZnO", "wurtzite", a=3.25, c=5.21).repeat((5, 5, 2))
    atoms.rattle(0.05, seed=0)
    T = np.random.default_rng(0).standard_normal((len(atoms), 3, 3)) + 2 * np.eye(3)
    return atoms, T


def test_structure_figure_ellipsoids_are_small():
    """200 atoms with ellipsoids: one Mesh3d per element and kind, no hover string per vertex
    (the per-vertex hover text made this figure ~33 MB; now ~2.5 MB)."""
    atoms, T = _zno_200()
    fig = structure_figure(atoms, atom_tensors=T, tensor_label="Z*")
    meshes = [t for t in fig.data if t.type == "mesh3d"]
    assert _names(fig)[3:] == ["Z* ellipsoids"] * 2 + ["Z*: not positive definite"] * 2
    assert [t.showlegend for t in meshes] == [True, False, True, False]
    assert all(t.hovertext is None for t in meshes)
    drawn = np.concatenate([np.asarray(t.customdata)[:, 0] for t in meshes])
    assert set(drawn.astype(int)) == set(range(len(atoms)))
    assert len(fig.to_json()) < 3_300_000


def test_contributions_figure(nacl):
    # Na at the origin, Cl neighbours including images outside the cell
    shifts = np.array([[0.5, 0, 0], [-0.5, 0, 0], [0, 0.5, 0]]) * 5.64
    pos = shifts  # Cl sites at +-a/2 along x (one is an image) and +a/2 along y
    contrib = np.stack([np.eye(3), -2 * np.eye(3), 0.1 * np.eye(3)])
    fig = contributions_figure(nacl, 0, pos, contrib, label="Z*")
    assert len(fig.data) == 2 + 3
    bonds = fig.data[2:]
    assert bonds[0].line.color != bonds[1].line.color  # sign of the trace
    assert bonds[0].line.color == bonds[2].line.color
    assert bonds[1].line.width > bonds[0].line.width > bonds[2].line.width
    assert "Cl" in fig.data[1].text[0] and "Cl" in fig.data[1].text[1]  # images matched to Cl
    assert "-2.000" in bonds[1].text[1]
    # vector contributions: sign of the projection on the neighbour -> centre direction
    vec = np.array([[-1.0, 0, 0], [-1.0, 0, 0], [0, 0, 1.0]])
    figv = contributions_figure(nacl, 0, pos, vec)
    assert figv.data[2].line.color != figv.data[3].line.color
    _no_mathjax(fig)


def test_piezo_surface_figure():
    rng = np.random.default_rng(0)
    e = rng.standard_normal((3, 6))
    fig = piezo_surface_figure(e)
    assert len(fig.data) == 1 and fig.data[0].type == "surface"
    s = np.asarray(fig.data[0].surfacecolor)
    assert s.min() < 0 < s.max() and fig.data[0].cmid == 0
    assert [fig.layout.scene[a].title.text for a in ("xaxis", "yaxis", "zaxis")] == ["x", "y", "z"]
    zero = piezo_surface_figure(np.zeros((3, 3, 3)))
    assert "centrosymmetric" in zero.layout.annotations[0].text
    _no_mathjax(fig)


def test_pca_figure():
    rng = np.random.default_rng(0)
    xy = rng.standard_normal((6, 2))
    els = ["Na", "Cl", "Na", "H", "O", "Cl"]
    fig = pca_figure(xy, els, "element", [f"atom {i}" for i in range(6)], categorical=True)
    assert [t.type for t in fig.data] == ["scatter"] * 4
    assert sorted(_names(fig)) == ["Cl", "H", "Na", "O"]
    by_name = {t.name: t for t in fig.data}
    assert list(by_name["Na"].customdata) == [0, 2]
    cont = pca_figure(xy, np.arange(6.0), "iso Z*", ["a"] * 6)
    assert len(cont.data) == 1 and cont.data[0].type == "scatter"
    assert cont.data[0].marker.showscale and list(cont.data[0].customdata) == list(range(6))


def test_tensor_table():
    rng = np.random.default_rng(0)
    assert tensor_table(rng.standard_normal(3), "e·Å").shape == (1, 3)
    T2 = tensor_table(rng.standard_normal((3, 3)), "e")
    assert T2.shape == (3, 3) and T2.attrs["unit"] == "e"
    e = np.zeros((3, 3, 3))
    e[2, 0, 0], e[0, 1, 2], e[0, 2, 1] = 1.5, 0.7, 0.7
    T3 = tensor_table(e, "C/m²")
    assert T3.shape == (3, 6) and T3.iloc[2, 0] == 1.5 and T3.iloc[0, 3] == 0.7 and "Voigt" in T3.attrs["note"]
    T4 = tensor_table(np.eye(6), "GPa")
    assert T4.shape == (6, 6) and T4.attrs["rank"] == 4
    with pytest.raises(ValueError):
        tensor_table(np.zeros((2, 2)), "")


def test_viewer_html_is_offline(nacl, water):
    js = (assets_dir() / "js" / "3Dmol" / "3Dmol-min.js").read_text()
    assert (assets_dir() / "js" / "3Dmol" / "LICENSE").is_file()
    Z = np.array([np.eye(3), np.diag([1.0, 2.0, -3.0])])
    html = viewer_html(nacl, atom_tensors=Z, highlight=[0], tensor_label="Z*")
    assert js in html  # the library is inlined
    assert "$3Dmolpromise = Promise.resolve()" in html
    assert not re.search(r"<script[^>]*\bsrc\s*=", html, flags=re.I)  # no external script at all
    assert not re.search(r"src\s*=\s*[\"']https?://", html, flags=re.I)
    page = html.replace(js, "")
    assert "http://" not in page and "https://" not in page
    assert "query=" not in page and "download" not in page
    assert "addUnitCell" in page and 'Lattice=\\"' in page
    assert page.count('"pd":false') == 1 and page.count('"pd":true') == 1
    # only centre + semi-axis vectors + flag per ellipsoid: the page's JavaScript builds the meshes
    records = json.loads(re.search(r'"ellipsoids":(\[.*?\]),"rings"', page).group(1))
    assert [sorted(r) for r in records] == [["a", "c", "pd"]] * 2
    radii = np.linalg.norm(np.reshape(records[1]["a"], (3, 3)), axis=1)  # |eigenvalues| -3, 1, 2 x scale
    np.testing.assert_allclose(radii / radii[0], [1, 1 / 3, 2 / 3], rtol=1e-4)
    assert "etgnnEllipsoid(e, sphere)" in page and "window.etgnnViewer = viewer" in page
    assert page.rstrip().endswith("</body></html>") and page.count("</body>") == 1
    assert "not positive definite" in page
    assert 'id="etgnn-view"' in page
    # stable: same input, same page (Streamlit keeps the iframe and the camera)
    assert viewer_html(nacl, atom_tensors=Z, highlight=[0], tensor_label="Z*") == html
    fingerprint = re.search(r'"fingerprint":"(\w+)"', page).group(1)
    other = viewer_html(nacl, atom_tensors=2 * Z, view_id="x").replace(js, "")
    assert f'"fingerprint":"{fingerprint}"' in other  # same structure: camera restored
    assert fingerprint not in viewer_html(nacl.repeat((2, 1, 1)))
    mol = viewer_html(water, view_id="water 1").replace(js, "")
    assert 'id="water-1"' in mol and '"cell":false' in mol and "Lattice" not in mol


def test_viewer_assets_env_var(tmp_path, monkeypatch, water):
    lib = tmp_path / "js" / "3Dmol"
    lib.mkdir(parents=True)
    (lib / "3Dmol-min.js").write_text("/* fake 3Dmol */")
    monkeypatch.setenv("ETGNN_ASSETS", str(tmp_path))
    assert assets_dir() == tmp_path
    assert "/* fake 3Dmol */" in viewer_html(water)


def _frame_points(page: str) -> np.ndarray:
    frame = json.loads(re.search(r'"frame":("(?:[^"\\]|\\.)*")', page).group(1))
    return np.array([[float(x) for x in line.split()[1:]] for line in frame.splitlines()[2:]])


def test_viewer_frame_is_small_and_frames_everything(water):
    """The camera frame keeps only the extreme points: same centre, box and farthest distance."""
    from etgnn_core.viz import _common as c
    from etgnn_core.viz.viewer3d import _ellipsoid_vertices, _ellipsoids, threedmol_js

    atoms, T = _zno_200()
    page = viewer_html(atoms, atom_tensors=T, highlight=[3], scale=0.3).replace(threedmol_js(), "")
    assert len(page) < 60_000  # was ~6 MB with the meshes and the full frame in the page
    pts = _frame_points(page)
    assert len(pts) <= 14

    center = c.structure_center(atoms)
    np.testing.assert_allclose(pts.mean(0), center, atol=1e-3)
    halo = atoms.positions[3] + 0.9 * np.vstack([np.eye(3), -np.eye(3)])
    cell = c.cell_edges(atoms.cell).reshape(-1, 3)
    everything = np.concatenate([atoms.positions, cell, _ellipsoid_vertices(_ellipsoids(atoms, T, 0.3)), halo])
    everything = center + 1.02 * (everything - center)
    everything = np.concatenate([everything, 2 * center - everything])
    np.testing.assert_allclose(pts.min(0), everything.min(0), atol=1e-3)
    np.testing.assert_allclose(pts.max(0), everything.max(0), atol=1e-3)
    dist = lambda p: np.sqrt(((p - center) ** 2).sum(1)).max()  # noqa: E731
    np.testing.assert_allclose(dist(pts), dist(everything), atol=1e-3)
    mol = _frame_points(viewer_html(water, atom_tensors=np.eye(3)[None].repeat(3, 0)))
    assert len(mol) <= 14 and np.ptp(mol, axis=0).min() > 0


@pytest.mark.skipif(shutil.which("node") is None, reason="node not installed")
def test_viewer_mesh_js_matches_ellipsoid_mesh():
    """The page's JavaScript builds the same meshes as etgnn_core.tensors.algebra.ellipsoid_mesh."""
    from etgnn_core.viz.viewer3d import MESH_JS, MESH_RINGS, _ellipsoids

    atoms = bulk("NaCl", "rocksalt", a=5.64).repeat((2, 1, 1))
    rng = np.random.default_rng(3)
    T = rng.standard_normal((4, 3, 3))
    T[0] = np.diag([1.0, 0.0, 2.0])  # a zero eigenvalue: 1e-3 A semi-axis
    T[2] = np.diag([1.0, 2.0, -3.0])
    scale = 0.4
    records = _ellipsoids(atoms, T, scale)
    js = MESH_JS + (
        f"var s = etgnnUnitSphere({MESH_RINGS}), es = {json.dumps(records)};"
        "console.log(JSON.stringify(es.map(function (e) { var m = etgnnEllipsoid(e, s);"
        " return {v: m.vertexArr, n: m.normalArr, f: m.faceArr}; })));"
    )
    out = json.loads(subprocess.run(["node", "-e", js], capture_output=True, text=True, check=True).stdout)
    assert len(records) == len(out) == 4
    for a, (rec, m_js) in enumerate(zip(records, out)):
        m = ellipsoid_mesh(T[a], atoms.positions[a], scale, n=MESH_RINGS)
        assert rec["pd"] == m.positive_definite
        xyz = lambda arr: np.array([[p["x"], p["y"], p["z"]] for p in arr])  # noqa: E731
        np.testing.assert_array_equal(np.reshape(m_js["f"], (-1, 3)), m.triangles)
        np.testing.assert_allclose(xyz(m_js["v"]), m.vertices, atol=1e-4)
        np.testing.assert_allclose(xyz(m_js["n"]), m.normals, atol=2e-3)


# ------------------------------------------------------------------------------------- 3Dmol overlays
def _overlay_data(page: str) -> dict:
    return json.loads(re.search(r"var d = (\{.*?\});\n", page).group(1))


def test_with_overlay_adds_one_script_before_body():
    page = "<html><body><div>atoms</div></body></html>"
    tri = dict(v=[[0, 0, 0], [1, 0, 0], [0, 1, 0]], n=[[0, 0, 1]] * 3, f=[[0, 1, 2]], c=[[1, 0, 0]] * 3)
    out = with_overlay(page, meshes=[tri],
                       arrows=[dict(start=np.zeros(3), end=[1.23456789, 0, 0], radius=np.float32(0.5), color="red",
                                    label="dipole </script>")],
                       spheres=[dict(center=[0.1, 0.2, 0.3], radius=0.25, color="#fff", opacity=0.6)])
    assert out.startswith("<html><body><div>atoms</div><script>") and out.endswith("</script>\n</body></html>")
    assert out.count("</script>") == 1  # a label cannot end the script early
    d = _overlay_data(out)
    assert d["arrows"][0]["end"] == [1.2346, 0.0, 0.0] and d["arrows"][0]["radius"] == 0.5
    assert d["arrows"][0]["label"] == "dipole </script>" and d["cylinders"] == []
    assert d["spheres"] == [{"center": [0.1, 0.2, 0.3], "radius": 0.25, "color": "#fff", "opacity": 0.6, "label": ""}]
    (m,) = d["meshes"]
    assert m["v"] == [0, 0, 0, 1, 0, 0, 0, 1, 0] and m["f"] == [0, 1, 2] and m["c"] == [1, 0, 0] * 3
    assert m["color"] == "#888888" and m["opacity"] == 1.0
    assert "c" not in _overlay_data(with_overlay(page, meshes=[{**tri, "c": None}]))["meshes"][0]


def test_with_overlay_on_a_viewer_page(water):
    html = viewer_html(water)
    out = with_overlay(html, cylinders=[dict(start=[0, 0, 0], end=[0, 0, 1], radius=0.1, color="#c0392b")])
    assert out.count("</body>") == 1 and out.index("window.etgnnViewer = viewer") < out.index("v.addCylinder")
    assert with_overlay(html) != html and "d.meshes.forEach" in with_overlay(html)


def test_structure_frame_crystal_and_molecule():
    crystal = Atoms("H", positions=[[1.0, 1.0, 1.0]], cell=[4.0, 5.0, 6.0], pbc=True)
    center, size = structure_frame(crystal)
    np.testing.assert_allclose(center, [2.0, 2.5, 3.0])
    assert size == 6.0
    skew = Atoms("H", positions=[[9.0, 0.0, 0.0]], cell=[[2, 0, 0], [1, 2, 0], [0, 0, 2]], pbc=True)
    assert structure_frame(skew)[1] == 9.0  # an atom outside the cell widens the frame
    mol = Atoms("H2", positions=[[0.0, 0.0, 0.0], [3.0, 0.0, 0.0]])
    center, size = structure_frame(mol)
    np.testing.assert_allclose(center, [1.5, 0.0, 0.0])
    assert size == 3.0
    assert structure_frame(Atoms("H", positions=[[1.0, 2.0, 3.0]]))[1] == 1.0  # at least 1 Angstrom


def test_mesh_normals():
    tri = np.array([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 3.0, 0.0]])
    np.testing.assert_allclose(mesh_normals(tri, [[0, 1, 2]]), [[0, 0, 1]] * 3)
    np.testing.assert_allclose(mesh_normals(tri, [[0, 2, 1]]), [[0, 0, -1]] * 3)  # the winding decides
    # a closed sphere: the averaged normals are close to the exact ones and point outwards
    m = ellipsoid_mesh(np.eye(3), np.array([1.0, -2.0, 0.5]), 2.0, n=16)
    n = mesh_normals(m.vertices, m.triangles)
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1.0)
    assert np.einsum("ij,ij->i", n, m.normals).min() > 0.97
    # a vertex in no triangle: the direction from the centroid
    lone = np.vstack([tri, [[0.0, 0.0, 5.0]]])
    assert mesh_normals(lone, [[0, 1, 2]])[3] @ [0, 0, 1] > 0.9


def _hex_rgb(color: str) -> np.ndarray:
    return np.array([int(color[i:i + 2], 16) for i in (1, 3, 5)]) / 255


def test_diverging_rgb():
    rgb = diverging_rgb(np.array([-2.0, -1.0, -0.5, 0.0, 0.5, 2.0, 7.0]), vmax=2.0)
    assert rgb.shape == (7, 3)
    blue, red = _hex_rgb(NEGATIVE_COLOR), _hex_rgb(POSITIVE_COLOR)
    np.testing.assert_allclose(rgb[0], blue, atol=1e-3)
    np.testing.assert_allclose(rgb[3], [1, 1, 1])
    np.testing.assert_allclose(rgb[5], red, atol=1e-3)
    np.testing.assert_allclose(rgb[6], rgb[5])  # clipped at vmax
    np.testing.assert_allclose(rgb[1], (1 + blue) / 2, atol=1e-3)  # half way to blue
    np.testing.assert_allclose(rgb[4], 0.75 + red / 4, atol=1e-3)
    np.testing.assert_allclose(diverging_rgb(np.zeros((2, 3)), 0.0), np.ones((2, 3, 3)))  # vmax 0: white


def test_value_pm_std_is_written_to_the_precision_of_the_std():
    """Both numbers end at the std's second significant digit; a symmetry zero (float noise far below the
    tensor's scale) reads 0.0000 ± 0.0000, never -1.5e-08 ± 4.8e-07; a NaN stays visible."""
    from etgnn_core.viz import format_pm, pm_table

    assert format_pm([3.01, -1.531e-08, 0.2943], [0.035, 4.8e-7, 0.016]) == \
        ["3.010 ± 0.035", "0.000 ± 0.000", "0.294 ± 0.016"]
    assert format_pm([3.6894], [0.0075]) == ["3.689 ± 0.008"]  # at most 1 % of the tensor's scale apart
    assert format_pm([120.3], [3.2]) == ["120.3 ± 3.2"]
    assert format_pm([-1e-9], [1e-9], scale=5.0) == ["0.000 ± 0.000"]  # no "-0.000"
    # a spread far above the values sets the scale too: the zeros follow the std's precision
    assert format_pm([0.0021, -1e-7], [0.63, 1e-8]) == ["0.00 ± 0.63", "0.0000 ± 0.0000"]
    assert format_pm([float("nan")], [1.0])[0].startswith("nan")
    df = pm_table(np.diag([5.1, 5.1, 5.3]), np.full((3, 3), 0.12), "")
    assert df.loc["z", "z"] == "5.30 ± 0.12" and df.loc["x", "y"] == "0.00 ± 0.12"
