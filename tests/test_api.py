"""Python API: list_models / load_model / Model.predict on tiny model folders (never the real pretrained/).

``make_model_folder`` is also used by test_cli.py and test_calculator.py.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from conftest import save_tiny_model

import etgnn_core
from etgnn_core import keys
from etgnn_core.api import EdgeContributions, Prediction
from etgnn_core.prototypes import alpha_quartz
from etgnn_core.registry import ModelLoadError
from etgnn_core.structure import StructureError, StructureWarning
from etgnn_core.tensors.specs import spec_for

SHAPES = {
    keys.ENERGY: (),
    keys.FORCES: ("n", 3),
    keys.DIPOLE: (3,),
    keys.POLARIZABILITY: (3, 3),
    keys.DIELECTRIC: (3, 3),
    keys.BORN_CHARGES: ("n", 3, 3),
    keys.SHIELDING: ("n", 3, 3),
    keys.PIEZOELECTRIC: (3, 3, 3),
    keys.ELASTIC: (3, 3, 3, 3),
}


def make_model_folder(root, name: str, targets, elements=(), seed: int = 0, **spec_overrides):
    """Save a tiny random ETGNN predicting ``targets`` into ``root/name``; ``spec_overrides``: {target: {unit: ..}}."""
    card = {"metrics": {t: {"mae": 0.1, "baseline_mae": 1.0, "unit": spec_for(t, **spec_overrides.get(t, {})).unit}
                        for t in targets}}
    return save_tiny_model(root, name, targets, elements, seed, card=card, **spec_overrides)


def sio_cell() -> Atoms:
    """A rattled 2-atom Si-O cell (the tiny SiO2 model's elements)."""
    a = bulk("Si", "diamond", a=4.6)
    a.numbers[1] = 8
    a.rattle(0.05, seed=1)
    return a


def quartz() -> Atoms:
    return alpha_quartz(rattle=0.02, seed=2)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrained")
    make_model_folder(root, "tiny_all", list(keys.TENSOR_NAMES), dipole={"unit": "e*bohr"})
    make_model_folder(root, "tiny_sio2", ["born_charges", "dielectric"], elements=[8, 14])
    return root


@pytest.fixture(scope="module")
def env(pretrained):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ETGNN_PRETRAINED", str(pretrained))
        yield pretrained


@pytest.fixture(scope="module")
def model_all(env):
    return etgnn_core.load_model("tiny_all")


@pytest.fixture(scope="module")
def model_sio2(env):
    return etgnn_core.load_model("tiny_sio2")


def test_list_models_and_load_by_name(env, model_all):
    names = [m.name for m in etgnn_core.list_models()]
    assert {"tiny_all", "tiny_sio2"} <= set(names)
    info = {m.name: m for m in etgnn_core.list_models()}["tiny_sio2"]
    assert info.targets == {"born_charges": "e", "dielectric": "dimensionless"}
    assert info.elements == [8, 14]
    assert model_all.name == "tiny_all"
    # a folder path works as well as a name
    assert etgnn_core.load_model(str(env / "tiny_sio2"), device="cpu").units == info.targets


def test_device_defaults_to_cuda_when_available(model_all):
    assert model_all.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert next(model_all.net.parameters()).device.type == model_all.device.type


def test_predict_single_structure_returns_mapping_with_exact_names_shapes_units(model_all):
    atoms = sio_cell()
    pred = model_all.predict(atoms)
    assert isinstance(pred, Prediction)
    assert set(pred) == set(keys.TENSOR_NAMES)
    for name, shape in SHAPES.items():
        want = tuple(len(atoms) if d == "n" else d for d in shape)
        assert isinstance(pred[name], np.ndarray) and pred[name].shape == want, name
        assert np.isfinite(pred[name]).all()
        assert pred.per_atom[name] == (shape[:1] == ("n",))
    # units are the model card's (config.json), including a target given another unit
    card = json.loads((model_all.info.path / "config.json").read_text())["model"]["targets"]
    assert pred.units == {t["name"]: t["unit"] for t in card}
    assert pred.units["dipole"] == "e*bohr" and pred.units["born_charges"] == "e"
    assert pred.embeddings is None and pred.contributions == {}
    assert pred.atoms.get_chemical_formula() == atoms.get_chemical_formula()


def test_missing_tensor_names_what_the_model_has(model_sio2):
    pred = model_sio2.predict(sio_cell())
    assert list(pred) == ["born_charges", "dielectric"]
    with pytest.raises(KeyError, match=r"'forces' is not predicted by model 'tiny_sio2'.*born_charges"):
        pred["forces"]
    from etgnn_core.plots import plot_piezo, plot_structure

    with pytest.raises(KeyError, match=r"'forces' is not predicted by model 'tiny_sio2'; it can draw"):
        plot_structure(pred, "forces")
    with pytest.raises(KeyError, match="'piezoelectric' is not predicted"):
        plot_piezo(pred)


def test_predict_list_returns_list_and_matches_single_predictions(model_all):
    structures = [sio_cell(), quartz(), molecule("H2O"), sio_cell()]
    preds = model_all.predict(structures, batch_size=3, progress=True)
    assert isinstance(preds, list) and len(preds) == len(structures)
    for atoms, p in zip(structures, preds):
        one = model_all.predict(atoms)
        assert p["born_charges"].shape == (len(atoms), 3, 3)
        for name in keys.TENSOR_NAMES:
            np.testing.assert_allclose(p[name], one[name], atol=1e-5, rtol=1e-4, err_msg=name)
    assert model_all.predict((sio_cell(),))[0]["forces"].shape == (2, 3)  # a tuple is a list too


def test_batches_in_worker_threads_match_one_thread_and_keep_order_and_warnings(model_all):
    structures = [sio_cell(), quartz(), molecule("H2O"), quartz(), sio_cell()] * 3
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        serial = model_all.predict(structures, batch_size=2)
        torch.set_num_threads(2)  # batches now run in two worker threads (etgnn_core.api.map_batches)
        threaded = model_all.predict(structures, batch_size=2)
        assert torch.get_num_threads() == 2  # restored after the workers' one-thread setting
    finally:
        torch.set_num_threads(before)
    for a, b, atoms in zip(serial, threaded, structures):
        assert len(b.atoms) == len(atoms)
        assert b.warnings == a.warnings
        for name in keys.TENSOR_NAMES:
            np.testing.assert_allclose(b[name], a[name], atol=1e-6, err_msg=name)


def test_a_batch_keeps_each_structures_own_warnings(model_sio2):
    """prepare_all records warnings once per batch: each must still land on its own structure, and be emitted."""
    molecule_sio2 = Atoms("OSiO", positions=[[0, 0, 0], [1.6, 0, 0], [3.2, 0, 0]])
    batch = [sio_cell(), molecule_sio2, sio_cell()]
    with pytest.warns(StructureWarning, match="a molecule"):
        preds = model_sio2.predict(batch, batch_size=3)
    flagged = [any("a molecule" in w for w in p.warnings) for p in preds]
    assert flagged == [False, True, False]


def test_embeddings_and_contributions(model_all):
    atoms = quartz()
    pred = model_all.predict(atoms, embeddings=True, contributions=True)
    assert pred.embeddings.shape == (len(atoms), model_all.config.out_emb)
    assert set(pred.contributions) == set(keys.TENSOR_NAMES)
    for name, contrib in pred.contributions.items():
        assert isinstance(contrib, EdgeContributions)
        if pred.per_atom[name]:
            np.testing.assert_allclose(contrib.atom, pred[name], atol=1e-6)
        for j in range(len(atoms)):
            c = contrib.for_atom(j)
            assert c["residual"] < 1e-5, (name, j)  # edges + on-site + ASR add up to the atom tensor (float32)
            assert len(c["edges"]) == len(c["neighbors"]) == len(c["contributions"]) > 0
            assert np.all(np.diff(c["norms"]) <= 1e-12)  # sorted by decreasing size
    bec = pred.contributions["born_charges"]
    # neighbour image positions are consistent with the cell shifts
    img = atoms.positions[bec.edge_src] + bec.edge_shift @ atoms.cell.array
    np.testing.assert_allclose(bec.neighbor_positions, img, atol=1e-4)


def test_pymatgen_structure_is_accepted(model_all):
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms = quartz()
    structure = AseAtomsAdaptor.get_structure(atoms)
    p1, p2 = model_all.predict(structure), model_all.predict(atoms)
    np.testing.assert_allclose(p1["born_charges"], p2["born_charges"], atol=1e-5)
    np.testing.assert_allclose(p1["piezoelectric"], p2["piezoelectric"], atol=1e-5)


def test_unknown_element_and_atom_limit_are_clear_errors(model_sio2):
    model = model_sio2
    with pytest.raises(StructureError, match=r"element not supported by the model: Zn .*knows O, Si"):
        model.predict(bulk("ZnO", "wurtzite", a=3.25, c=5.2))
    with pytest.raises(StructureError, match="more than the limit of 5 atoms"):
        model.predict(quartz(), max_atoms=5)
    assert model.predict(sio_cell())["born_charges"].shape == (2, 3, 3)


def test_close_atoms_are_refused_from_the_model_neighbour_list(model_sio2):
    """prepare reads close pairs off its own neighbour list: overlapping atoms and a cell too small
    for an atom's own image still get the full check's message; 0.2 A apart passes."""
    cell = sio_cell()
    close = cell.copy()
    close.positions[1] = close.positions[0] + [0.05, 0.0, 0.0]
    with pytest.raises(StructureError, match=r"atoms 0 \(Si\) and 1 \(O\) are 0.05 A apart.*overlapping"):
        model_sio2.predict(close)
    tiny = Atoms("Si", positions=[[0, 0, 0]], cell=np.diag([0.08, 5.0, 5.0]), pbc=True)
    with pytest.raises(StructureError, match="the cell is only 0.08 A thick along a"):
        model_sio2.predict(tiny)
    close.positions[1] = close.positions[0] + [0.2, 0.0, 0.0]
    assert model_sio2.predict(close)["born_charges"].shape == (2, 3, 3)


def test_cpu_allocator_tuning_is_on_by_default_and_can_be_switched_off():
    import subprocess
    import sys

    code = "from etgnn_core.device import tune_cpu_allocator as t; print(t(), t())"
    env = {k: v for k, v in os.environ.items() if k != "ETGNN_MALLOC_TUNING"}
    on = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    off = subprocess.run([sys.executable, "-c", code], env={**env, "ETGNN_MALLOC_TUNING": "0"},
                         capture_output=True, text=True, check=True).stdout
    assert off.split() == ["False", "False"]
    if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        assert on.split() == ["True", "True"]


def test_loading_a_model_leaves_the_process_allocator_alone():
    import subprocess
    import sys

    code = ("import etgnn_core, etgnn_core.device as d; m = etgnn_core.load_model('piezo_zno', device='cpu'); "
            "m.predict(etgnn_core.structure.read_structures('assets/demo/POSCAR_ZnO_wurtzite')[0]); "
            "print(d._ALLOCATOR_TUNED)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout
    assert out.split() == ["None"]


def _copy_model(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_tampered_config_is_refused_naming_what_differs(env, tmp_path):
    folder = _copy_model(env / "tiny_sio2", tmp_path / "tampered_config")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["model"]["hidden"] = 24
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(
        ModelLoadError, match=r"weights do not match the config: .*shape mismatch .*\(16.*vs config.*24"
    ):
        etgnn_core.load_model(str(folder))


def test_tampered_weights_are_refused_naming_what_differs(env, tmp_path):
    folder = _copy_model(env / "tiny_sio2", tmp_path / "tampered_weights")
    state = torch.load(folder / "weights.pt", weights_only=True)
    removed = sorted(state)[0]
    del state[removed]
    state["extra.weight"] = torch.zeros(2)
    torch.save(state, folder / "weights.pt")
    with pytest.raises(ModelLoadError) as err:
        etgnn_core.load_model(str(folder))
    assert "missing 1" in str(err.value) and removed in str(err.value) and "extra.weight" in str(err.value)

    (folder / "weights.pt").write_bytes(b"not a torch file")
    with pytest.raises(ModelLoadError, match="not a readable weights file"):
        etgnn_core.load_model(str(folder))


def test_unknown_model_name_lists_shipped_models(env):
    with pytest.raises(ModelLoadError, match=r"no model named or at 'nope'.*tiny_all"):
        etgnn_core.load_model("nope")


def test_plot_helpers_return_the_app_figures(model_all):
    import plotly.graph_objects as go

    from etgnn_core.plots import drawable_tensors, plot_contributions, plot_piezo, plot_structure

    atoms = quartz()
    pred = model_all.predict(atoms, contributions=True)
    fig = plot_structure(pred)  # Born-charge ellipsoids (+ the dipole arrow this model has)
    assert isinstance(fig, go.Figure)
    assert any(isinstance(t, go.Mesh3d) for t in fig.data) and "born_charges" in fig.layout.title.text
    crystal = plot_structure(pred, "dielectric")
    assert any(t.name and t.name.startswith("crystal dielectric") for t in crystal.data)
    assert set(drawable_tensors(pred)) == {"dipole", "polarizability", "dielectric", "born_charges", "shielding"}
    assert isinstance(plot_structure(pred, None), go.Figure)

    bonds = plot_contributions(pred, atom=1, tensor="born_charges")
    n_edges = len(pred.contributions["born_charges"].for_atom(1)["edges"])
    assert len(bonds.data) == 2 + n_edges  # centre, neighbours, one line per bond
    assert "atom #1" in bonds.layout.title.text
    assert isinstance(plot_contributions(pred, atom=-1, tensor="dielectric"), go.Figure)

    surface = plot_piezo(pred)
    assert isinstance(surface.data[0], go.Surface) and "C/m<sup>2</sup>" in surface.data[0].colorbar.title.text

    with pytest.raises(ValueError, match="plot_piezo"):
        plot_structure(pred, "piezoelectric")
    with pytest.raises(ValueError, match="contributions=True"):
        plot_contributions(model_all.predict(atoms), atom=0)
    with pytest.raises(IndexError, match="9 atoms"):
        plot_contributions(pred, atom=9)


# --- tensors defined on some species only (29Si NMR shielding) -----------------------------------
def test_species_spec_is_checked():
    assert spec_for("shielding", species=[14, 14]).species == (14,)
    with pytest.raises(ValueError, match="per-atom tensors only"):
        spec_for("dielectric", species=[14])
    with pytest.raises(ValueError, match="acoustic sum rule"):
        spec_for("born_charges", species=[14])


def test_shielding_on_si_only_is_masked_equivariant_and_exported(tmp_path):
    from scipy.spatial.transform import Rotation

    from etgnn_core.io import read_extxyz_tensors, write_extxyz

    folder = make_model_folder(tmp_path, "nmr", ["shielding", "born_charges"], elements=(8, 14),
                               shielding={"species": [14]})
    model = etgnn_core.load_model(folder, device="cpu")
    assert model.config.targets[0].species == (14,)  # survives config.json
    atoms = quartz()
    pred = model.predict(atoms, contributions=True)
    si = atoms.numbers == 14
    assert pred.masks["shielding"].tolist() == si.tolist() and "born_charges" not in pred.masks
    sh = pred["shielding"]
    assert np.all(sh[~si] == 0) and np.all(np.abs(sh[si]).sum((1, 2)) > 1e-3)
    c = pred.contributions["shielding"]
    for j in (0, int(np.nonzero(~si)[0][0])):
        assert c.for_atom(j)["residual"] < 1e-5
    # rotation with reflection: sigma' = R sigma R^T on the Si atoms, still zero elsewhere
    r = Rotation.random(random_state=4).as_matrix() * -1.0
    rot = atoms.copy()
    rot.set_cell(atoms.cell.array @ r.T, scale_atoms=True)
    sh_rot = model.predict(rot)["shielding"]
    assert np.allclose(sh_rot, np.einsum("ij,njk,lk->nil", r, sh, r), atol=1e-4)
    # files keep which atoms carry the tensor
    rec = pred.record(source="q.cif")
    assert rec["tensors"]["shielding_mask"]["values"] == si.tolist()
    path = tmp_path / "out.extxyz"
    write_extxyz(path, [(atoms, *pred.with_masks(), pred.units)])
    (_, back), = read_extxyz_tensors(path)
    assert back["shielding_mask"].astype(bool).tolist() == si.tolist()
    assert np.allclose(back["shielding"], sh, atol=1e-6)
