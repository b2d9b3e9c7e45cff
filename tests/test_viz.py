"""Figures (plotly) and the offline 3Dmol viewer."""

import json
import re

import numpy as np
import plotly.graph_objects as go
import pytest
from ase.build import bulk, molecule

from etgnn_core.viz import (
    assets_dir,
    contributions_figure,
    pca_figure,
    piezo_surface_figure,
    structure_figure,
    tensor_table,
    viewer_html,
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
    assert all("not positive definite" in h for h in bad.hovertext)
    assert "not positive definite" in fig.data[1].text[0]  # Cl hover
    assert "not positive definite" not in fig.data[0].text[0]  # Na hover
    # the non-positive-definite ellipsoid is drawn at the Cl site with |eigenvalues|
    verts = np.stack([bad.x, bad.y, bad.z], axis=1) - nacl.positions[1]
    extent = np.abs(verts).max(axis=0)
    np.testing.assert_allclose(extent / extent[2], [1 / 3, 2 / 3, 1], rtol=1e-6)
    _no_mathjax(fig)


def test_structure_figure_skips_unlabelled_atoms(water):
    Z = np.full((3, 3, 3), np.nan)
    Z[0] = np.eye(3)
    fig = structure_figure(water, atom_tensors=Z, tensor_label="σ")
    meshes = [t for t in fig.data if t.type == "mesh3d"]
    assert len(meshes) == 1
    assert {h.split("<br>")[0] for h in meshes[0].hovertext} == {"#0 O"}
    assert "σ" in fig.data[1].text[0] and "σ" not in fig.data[0].text[0]  # O labelled, H not
    empty = structure_figure(water, atom_tensors=np.full((3, 3, 3), np.nan), tensor_label="σ")
    assert "no σ values" in empty.layout.title.text and _names(empty) == ["H", "O"]


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
