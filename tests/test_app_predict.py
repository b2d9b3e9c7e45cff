"""The Streamlit app through ``streamlit.testing`` AppTest (entry script + switch_page, as the notes say).

Three tiny model folders (born_charges + dielectric, piezoelectric, dipole + polarizability) are made
once per session and listed through ``$ETGNN_PRETRAINED``; ``$ETGNN_DEFAULT_MODEL`` makes the tiny BEC
model the app's default, so no test depends on (or loads) a trained model.
"""

from __future__ import annotations

import ast
import io
import json
import os
import re
import sys
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase.build import bulk
from conftest import save_tiny_model

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `from app.models import ...` as the pages do
    sys.path.insert(0, str(ROOT))
ENTRY = str(ROOT / "app" / "streamlit_app.py")
DEMO = ROOT / "assets" / "demo"
TIMEOUT = 120  # seconds per script run: the first one imports torch and builds a model on a busy CPU

ELEMENTS = [1, 7, 8, 13, 14, 16, 22, 30, 48, 56, 72]  # H N O Al Si S Ti Zn Cd Ba Hf


def make_tiny(folder: Path, name: str, targets: list[str], elements: list[int], seed: int = 0,
              **spec_overrides) -> Path:
    return save_tiny_model(folder, name, targets, elements, seed, max_neighbors=None, **spec_overrides)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pretrained")
    models = {
        "bec": make_tiny(folder, "aa_tiny_bec", ["born_charges", "dielectric"], ELEMENTS),
        "piezo": make_tiny(folder, "aa_tiny_piezo", ["piezoelectric"], ELEMENTS, seed=1),
        "dipole": make_tiny(folder, "aa_tiny_dipole", ["dipole", "polarizability"], [1, 8], seed=2),
    }
    env = {"ETGNN_PRETRAINED": str(folder), "ETGNN_DEFAULT_MODEL": "aa_tiny_bec"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield {k: str(v) for k, v in models.items()}
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def downloads(monkeypatch):
    """Every file a download button serves in this test: file name -> bytes."""
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    files: dict[str, bytes] = {}
    original = MemoryMediaFileStorage.load_and_get_id

    def spy(self, path_or_data, mimetype, kind, filename=None):
        if filename is not None and isinstance(path_or_data, (bytes, str)):
            files[filename] = path_or_data.encode() if isinstance(path_or_data, str) else path_or_data
        return original(self, path_or_data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", spy)
    return files


def new_app(models):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(ENTRY, default_timeout=TIMEOUT)
    at.run()
    ok(at)
    return at


def ok(at) -> None:
    """No traceback and no error message in the page."""
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def errors(at) -> list[str]:
    assert not at.exception, [e.value for e in at.exception]
    return [e.value for e in at.error]


def upload(at, name: str, data: bytes) -> None:
    if at.radio(key="structure_source").value != "Upload a file":
        at.radio(key="structure_source").set_value("Upload a file").run()
    at.file_uploader(key="structure_upload").set_value((name, data, "application/octet-stream")).run()


def tab_labels(at) -> list[str]:
    return [t.label for t in at.tabs]


def threedmol_pages(at) -> list[str]:
    return [f.proto.srcdoc for f in at.get("iframe")]


def plotly_specs(at) -> list[dict]:
    return [json.loads(p.proto.spec) for p in at.get("plotly_chart")]


# ---------------------------------------------------------------------------------------- predict
def test_default_demo_predicts_every_tensor(tiny_models):
    at = new_app(tiny_models)
    assert at.selectbox(key="model_select").value == tiny_models["bec"]
    assert at.radio(key="structure_source").value == "Demo structures"
    assert at.selectbox(key="structure_demo").value == "SiO2_alpha_quartz.cif"
    assert tab_labels(at) == ["born_charges (e)", "dielectric (dimensionless)"]
    # per-atom tensor: one row per atom, crystal tensor: a 3x3 table
    frames = [d.value for d in at.dataframe]
    per_atom = next(f for f in frames if "element" in f.columns)
    assert len(per_atom) == 9 and list(per_atom["element"]).count("Si") == 3
    assert {"xx", "xy", "zz", "iso (tr/3)", "pos. def."} <= set(per_atom.columns)
    assert any(f.shape == (3, 3) for f in frames)
    captions = " ".join(c.value for c in at.caption)
    assert "CPU" in captions or "GPU" in captions  # the device in use
    assert "semi-axes = |eigenvalues| of the symmetric part" in captions  # what the ellipsoid axes show
    assert "not positive definite" in captions or "positive definite (grey)" in captions
    # the 3D view: an offline 3Dmol page (library inlined) with ellipsoids and the unit cell
    (html,) = threedmol_pages(at)
    assert "addCustom" in html and '"cell":true' in html and "$3Dmolpromise" in html
    assert re.search(r"<(script|link|img|iframe)[^>]*\s(src|href)\s*=", html) is None  # nothing to fetch
    assert [b.label for b in at.get("download_button")] == ["Download JSON", "Download extended XYZ",
                                                             "Download phonopy BORN"]


def test_upload_formats_predict_and_download(tiny_models, downloads):
    at = new_app(tiny_models)
    quartz = (DEMO / "SiO2_alpha_quartz.cif").read_bytes()
    upload(at, "quartz.cif", quartz)
    ok(at)
    assert at.selectbox(key="structure_upload_pick").value == "quartz.cif"
    assert at.subheader[0].value == "quartz.cif"
    assert tab_labels(at) == ["born_charges (e)", "dielectric (dimensionless)"]

    # downloads: JSON, extended XYZ with the tensors, phonopy BORN
    record = json.loads(downloads["quartz_aa_tiny_bec.json"])[0]
    assert record["model"] == "aa_tiny_bec" and record["tensors"]["born_charges"]["unit"] == "e"
    assert np.shape(record["tensors"]["born_charges"]["values"]) == (9, 3, 3)
    frame = ase.io.read(io.StringIO(downloads["quartz_aa_tiny_bec.extxyz"].decode()), format="extxyz")
    assert len(frame) == 9 and frame.arrays["born_charges"].shape == (9, 9)
    born = downloads["BORN"].decode().splitlines()
    assert born[0].startswith("#") and len(born[1].split()) == 9 and len(born) == 2 + 2  # Si and O orbits
    np.testing.assert_allclose(frame.arrays["born_charges"][0], np.ravel(record["tensors"]["born_charges"]
                                                                         ["values"][0]), atol=1e-6)

    # format from content: POSCAR without extension, pymatgen JSON, extended XYZ, XYZ molecule
    for name, path, n in [("CONTCAR", DEMO / "POSCAR_ZnO_wurtzite", 4), ("aln.json", DEMO / "AlN_wurtzite.json", 4),
                          ("bto", DEMO / "BaTiO3_tetragonal.extxyz", 5), ("h2o.xyz", DEMO / "H2O_molecule.xyz", 3)]:
        upload(at, name, path.read_bytes())
        ok(at)
        assert at.selectbox(key="structure_upload_pick").value == name
        per_atom = next(d.value for d in at.dataframe if "element" in d.value.columns)
        assert len(per_atom) == n, name
    captions = " ".join(c.value for c in at.caption)
    assert "phonopy BORN needs a 3D-periodic crystal" in captions  # the water molecule: no BORN file
    # a file with several frames: pick one
    frames = [bulk("ZnO", "wurtzite", a=3.25, c=5.2), bulk("AlN", "wurtzite", a=3.11, c=4.98).repeat((2, 1, 1))]
    buf = io.StringIO()
    ase.io.write(buf, frames, format="extxyz")
    upload(at, "traj.extxyz", buf.getvalue().encode())
    ok(at)
    at.number_input(key="structure_upload_frame").set_value(1).run()
    ok(at)
    assert at.subheader[0].value == "traj.extxyz, frame 1"
    assert len(next(d.value for d in at.dataframe if "element" in d.value.columns)) == 8
    # every upload stays in the session
    assert at.selectbox(key="structure_upload_pick").options == ["quartz.cif", "CONTCAR", "aln.json", "bto", "h2o.xyz",
                                                                 "traj.extxyz"]


def test_pick_demo_and_change_model(tiny_models):
    at = new_app(tiny_models)
    # piezoelectric model: the longitudinal surface coloured by sign, a 3x6 Voigt table
    at.selectbox(key="model_select").set_value(tiny_models["piezo"]).run()
    ok(at)
    assert tab_labels(at) == ["piezoelectric (C/m^2)"]
    assert at.selectbox(key="predict_view").value.startswith("piezoelectric: longitudinal surface")
    assert any(d.value.shape == (3, 6) for d in at.dataframe)
    (html,) = threedmol_pages(at)  # 3Dmol.js by default: the surface as a mesh with per-vertex colours
    assert '"meshes":[{' in html and '"c":[' in html
    at.radio(key="predict_renderer").set_value("plotly (hover shows values)").run()
    ok(at)
    (spec,) = plotly_specs(at)
    surface = spec["data"][0]
    assert surface["type"] == "surface" and surface["cmid"] == 0
    at.radio(key="predict_renderer").set_value("3Dmol.js").run()
    # the dipole model on the water demo: the dipole arrow and the polarizability ellipsoid
    at.selectbox(key="model_select").set_value(tiny_models["dipole"]).run()
    (msg,) = errors(at)  # quartz is still picked: the model says what it lacks
    assert msg.startswith("aa_tiny_dipole cannot predict this structure: SiO2_alpha_quartz.cif")
    at.selectbox(key="structure_demo").set_value("H2O_molecule.xyz").run()
    ok(at)
    assert tab_labels(at) == ["dipole (e*Angstrom)", "polarizability (Angstrom^3)"]
    views = at.selectbox(key="predict_view").options
    assert "dipole: arrow" in views and "polarizability: crystal ellipsoid + dipole arrow" in views
    at.selectbox(key="predict_view").set_value("dipole: arrow").run()
    ok(at)
    (html,) = threedmol_pages(at)
    assert '"arrows":[{' in html and '"cell":false' in html
    at.selectbox(key="predict_view").set_value("polarizability: crystal ellipsoid + dipole arrow").run()
    (html,) = threedmol_pages(at)
    assert '"meshes":[{' in html and '"arrows":[{' in html
    at.radio(key="predict_renderer").set_value("plotly (hover shows values)").run()
    (spec,) = plotly_specs(at)
    assert {"mesh3d", "cone"} <= {t["type"] for t in spec["data"]}
    # back to the BEC model: the choice of view falls back to what this model offers
    at.selectbox(key="model_select").set_value(tiny_models["bec"]).run()
    at.selectbox(key="structure_demo").set_value("Al2O3_corundum.cif").run()
    ok(at)
    assert at.selectbox(key="predict_view").value == "born_charges: one ellipsoid per atom"
    at.radio(key="predict_renderer").set_value("plotly (hover shows values)").run()
    ok(at)
    (spec,) = plotly_specs(at)
    assert any(t["type"] == "mesh3d" for t in spec["data"]) and spec["layout"]["uirevision"]
    assert any(t.get("name") == "unit cell" for t in spec["data"])


def test_a_first_upload_that_fails_is_explained_in_the_page(tiny_models):
    """Nothing loaded yet: the page says why it is empty (the file's error, not 'pick a structure'),
    besides the message beside the uploader in the sidebar."""
    at = new_app(tiny_models)
    upload(at, "broken.xyz", b"2\nbroken\nO 1 1\nO 0 0 0\n")
    msgs = errors(at)
    assert len(msgs) == 2 and all("broken.xyz" in m and "line 3 (atom 0" in m for m in msgs), msgs
    assert msgs[0].startswith("The uploaded file was not loaded: broken.xyz")  # the page's, drawn first
    assert not any("Pick a demo structure" in i.value for i in at.info)
    at.radio(key="structure_source").set_value("Demo structures").run()
    ok(at)  # another source: the upload's error is not the page's business any more


def test_bad_input_gives_one_line_messages(tiny_models):
    at = new_app(tiny_models)
    upload(at, "quartz.cif", (DEMO / "SiO2_alpha_quartz.cif").read_bytes())
    ok(at)
    cases = [
        ("garbage.cif", b"this is not\na structure file\n", "not a structure file ASE can read"),
        ("empty.xyz", b"", "empty file"),
        ("blob.bin", bytes(range(256)) * 8, "binary content"),
    ]
    for name, data, expected in cases:
        upload(at, name, data)
        msgs = errors(at)
        assert len(msgs) == 1 and expected in msgs[0] and "\n" not in msgs[0], (name, msgs)
        assert "Traceback" not in msgs[0]
        # the previous upload is still there and still predicted
        assert at.selectbox(key="structure_upload_pick").value == "quartz.cif"
        assert tab_labels(at) == ["born_charges (e)", "dielectric (dimensionless)"]

    # too many atoms: the message says the limit
    from app.settings import APP_MAX_ATOMS

    big = bulk("Si", "diamond", a=5.43).repeat((8, 8, 8))
    assert len(big) > APP_MAX_ATOMS
    buf = io.StringIO()
    ase.io.write(buf, big, format="extxyz")
    upload(at, "big.xyz", buf.getvalue().encode())
    (msg,) = errors(at)
    assert f"limit of {APP_MAX_ATOMS} atoms" in msg

    # overlapping atoms: read, but the model refuses them with the atom indices
    buf = io.StringIO()
    overl = bulk("ZnO", "wurtzite", a=3.25, c=5.2)
    overl.positions[1] = overl.positions[0] + [0.01, 0, 0]
    ase.io.write(buf, overl, format="vasp")
    upload(at, "POSCAR_overlap", buf.getvalue().encode())
    (msg,) = errors(at)
    assert "atoms 0 (Zn) and 1 (O)" in msg and "overlapping" in msg
    assert threedmol_pages(at)  # the structure is still drawn

    # an element outside the model's training set: named, with the elements the model knows
    at.selectbox(key="model_select").set_value(tiny_models["dipole"]).run()
    at.selectbox(key="structure_upload_pick").set_value("quartz.cif").run()
    (msg,) = errors(at)
    assert "not supported by the model: Si" in msg and "the model knows H, O" in msg
    # the rest of the app keeps working
    at.radio(key="structure_source").set_value("Demo structures").run()
    at.selectbox(key="structure_demo").set_value("H2O_molecule.xyz").run()
    ok(at)
    assert "dipole (e*Angstrom)" in tab_labels(at)
    # the demo list says which entries the model cannot handle
    demo = at.selectbox(key="structure_demo")
    assert "elements not in this model" in demo.format_func("SiO2_alpha_quartz.cif")


def test_no_model_says_how_to_get_one(tiny_models, monkeypatch):
    import app.models

    monkeypatch.setattr(app.models, "list_models", lambda: [])
    monkeypatch.setattr(app.models, "pretrained_dirs", lambda: [])
    at = new_app(tiny_models)
    ok(at)
    assert any("No model found" in i.value and "pretrained/" in i.value for i in at.info)
    assert threedmol_pages(at)  # the structure is drawn anyway


def test_user_trained_model_is_listed(tiny_models, tmp_path):
    at = new_app(tiny_models)
    mine = make_tiny(tmp_path, "my_model", ["born_charges"], ELEMENTS, seed=3)
    at.session_state["etgnn_user_models"] = {"my_model": str(mine)}
    at.run()
    box = at.selectbox(key="model_select")
    assert "my_model (yours) — born_charges" in box.options  # listed (formatted) with the shipped models
    box.set_value(str(mine)).run()
    ok(at)
    assert tab_labels(at) == ["born_charges (e)"]


def test_tensor_on_some_species_only_is_shown_and_drawn_for_those_atoms(tiny_models, tmp_path, downloads):
    at = new_app(tiny_models)
    nmr = make_tiny(tmp_path, "si_nmr", ["shielding"], ELEMENTS, seed=4, shielding={"species": [14]})
    at.session_state["etgnn_user_models"] = {"si_nmr": str(nmr)}
    at.run()
    at.selectbox(key="model_select").set_value(str(nmr)).run()
    at.selectbox(key="structure_demo").set_value("SiO2_alpha_quartz.cif").run()
    ok(at)
    table = at.dataframe[0].value
    assert table["element"].tolist() == ["Si"] * 3  # 3 Si of 9 atoms: the O rows are not shown as zeros
    assert any("gives shielding for Si atoms only" in c.value for c in at.caption)
    page = threedmol_pages(at)[0]
    assert page.count('"pd":') == 3  # one ellipsoid per Si atom, none for O
    rec = json.loads(downloads["SiO2_alpha_quartz_si_nmr.json"])[0]
    assert rec["tensors"]["shielding_mask"]["values"] == [True] * 3 + [False] * 6
    frame = ase.io.read(io.StringIO(downloads["SiO2_alpha_quartz_si_nmr.extxyz"].decode()), format="extxyz")
    assert frame.arrays["shielding_mask"].astype(bool).tolist() == [True] * 3 + [False] * 6
    at.switch_page("views/inspector.py").run()  # the inspector offers the Si atoms only
    ok(at)
    assert at.selectbox(key="inspector_tensor").value == "shielding"
    assert [o.split(",")[0] for o in at.selectbox(key="inspector_atom").options] == ["#0 Si", "#1 Si", "#2 Si"]
    at.switch_page("views/learn.py").run()  # and so does the Learn page
    ok(at)
    assert at.selectbox(key="learn_atom").options == ["#0 Si", "#1 Si", "#2 Si"]


def test_reference_data_shows_dft_labels(tiny_models):
    from etgnn_core.data import data_root

    if data_root() is None:
        pytest.skip("no ../shared/data: the reference-data picker is hidden")
    at = new_app(tiny_models)
    at.radio(key="structure_source").set_value("Reference data").run()
    at.selectbox(key="structure_dataset").set_value("perturbed/SiO2").run()
    ok(at)
    text = " ".join(m.value for m in at.markdown)
    assert "Predicted born_charges" in text and "DFT born_charges" in text
    assert any("Mean absolute difference" in c.value for c in at.caption)
    at.number_input(key="structure_dataset_index").set_value(3).run()
    ok(at)
    assert "perturbed/SiO2 #3" in at.subheader[0].value
    at.switch_page("views/inspector.py").run()  # the atom's DFT tensor beside its prediction
    ok(at)
    assert any(m.value.startswith("DFT label") for m in at.markdown)


# -------------------------------------------------------------------------------------- inspector
def test_atom_inspector(tiny_models):
    at = new_app(tiny_models)
    at.selectbox(key="structure_demo").set_value("Al2O3_corundum.cif").run()
    at.switch_page("views/inspector.py").run()
    ok(at)
    # the structure picked on the Predict page is kept
    assert at.selectbox(key="structure_demo").value == "Al2O3_corundum.cif"
    assert at.selectbox(key="inspector_tensor").value == "born_charges"
    at.selectbox(key="inspector_atom").set_value(5).run()
    ok(at)
    assert "born_charges of atom #5" in at.subheader[0].value
    metrics = {m.label: m.value for m in at.metric}
    assert float(metrics["residual max|Σ − T|"]) < 1e-5
    # tensor, its three parts, then the contributions sorted by magnitude
    frames = [d.value for d in at.dataframe]
    assert sum(f.shape == (3, 3) for f in frames) == 4
    table = frames[-1]
    assert int(metrics["edges"]) == len(table) > 0
    assert list(table["|contribution|"]) == sorted(table["|contribution|"], reverse=True)
    assert set(table["sign"]) <= {"+", "−"} and table["neighbour"].str.match(r"#\d+ (Al|O)").all()
    # bonds drawn in 3D, coloured by sign, width by size
    (spec,) = plotly_specs(at)
    bonds = [t for t in spec["data"] if t.get("mode") == "lines"]
    assert len(bonds) == len(table)
    assert {b["line"]["color"] for b in bonds} <= {"#c0392b", "#2166ac"}
    assert len({round(b["line"]["width"], 6) for b in bonds}) > 1
    assert any(c.value.startswith("The three parts add up") for c in at.caption)
    # a crystal tensor: the atom's term of it
    at.selectbox(key="inspector_tensor").set_value("dielectric").run()
    ok(at)
    assert "term of the crystal dielectric" in at.subheader[0].value
    # back on the Predict page the choices are still there
    at.switch_page("views/predict.py").run()
    ok(at)
    assert at.selectbox(key="structure_demo").value == "Al2O3_corundum.cif"
    # another page (the embedding map) opens a structure and an atom in the inspector: open_entry
    from app.structures import OPENED, Entry

    zno = bulk("ZnO", "wurtzite", a=3.25, c=5.2)
    at.session_state["etgnn_opened_entry"] = Entry("emap:zno", "ZnO from the map", zno, "embedding map")
    at.session_state["etgnn_source"] = OPENED
    at.session_state["etgnn_atom"] = 2
    at.switch_page("views/inspector.py").run()
    ok(at)
    assert at.radio(key="structure_source").value == OPENED
    assert at.selectbox(key="inspector_atom").value == 2 and "atom #2" in at.subheader[0].value


def test_pages_are_registered_in_order():
    tree = ast.parse(Path(ENTRY).read_text())
    pages = next(ast.literal_eval(n.value) for n in tree.body
                 if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "PAGES")
    assert [p[1] for p in pages] == ["Predict", "Atom inspector", "Embedding map", "Spectra", "Train", "Learn"]
    assert [p[0] for p in pages[:2]] == ["predict.py", "inspector.py"]
