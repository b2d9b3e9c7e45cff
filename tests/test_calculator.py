"""ETGNNCalculator: forces for ASE MD, tensors as extra results, clear errors for what a model lacks."""

from __future__ import annotations

import numpy as np
import pytest
from ase import units
from ase.calculators.calculator import PropertyNotImplementedError
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from ase.md.verlet import VelocityVerlet
from test_api import make_model_folder, sio_cell

import etgnn_core
from etgnn_core import ETGNNCalculator


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrained")
    make_model_folder(root, "tiny_forces_bec", ["forces", "born_charges", "dipole"], dipole={"unit": "e*bohr"})
    make_model_folder(root, "tiny_bec", ["born_charges", "dielectric"], elements=[8, 14])
    return {name: etgnn_core.load_model(str(root / name), device="cpu") for name in ("tiny_forces_bec", "tiny_bec")}


def cell():
    atoms = sio_cell().repeat((2, 1, 1))
    atoms.rattle(0.05, seed=3)
    return atoms


def test_velocity_verlet_runs_and_tensors_follow_the_trajectory(models):
    model = models["tiny_forces_bec"]
    atoms = cell()
    atoms.calc = ETGNNCalculator(model)
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))
    start = atoms.positions.copy()
    VelocityVerlet(atoms, timestep=0.5 * units.fs).run(5)
    assert np.abs(atoms.positions - start).max() > 1e-4

    forces = atoms.get_forces()
    assert forces.shape == (len(atoms), 3) and np.isfinite(forces).all()
    res = atoms.calc.results
    assert res["born_charges"].shape == (len(atoms), 3, 3)
    np.testing.assert_array_equal(res["born_effective_charges"], res["born_charges"])  # ASE's own name
    np.testing.assert_array_equal(atoms.calc.get_property("born_charges", atoms), res["born_charges"])
    # the results are those of the current positions
    now = model.predict(atoms)
    np.testing.assert_allclose(res["born_charges"], now["born_charges"], atol=1e-6)
    np.testing.assert_allclose(forces, now["forces"], atol=1e-6)
    # ASE's dipole is in e*Angstrom; the model's e*bohr is converted, the units say so
    np.testing.assert_allclose(atoms.get_dipole_moment(), now["dipole"] * units.Bohr, atol=1e-6)
    assert atoms.calc.units["dipole"] == "e*Angstrom" and atoms.calc.units["born_charges"] == "e"
    assert atoms.calc.prediction.model == "tiny_forces_bec"
    # no energy in this model: a clear error, not a silent zero
    with pytest.raises(PropertyNotImplementedError, match="'energy' is not predicted by model 'tiny_forces_bec'"):
        atoms.get_potential_energy()


def test_model_without_forces_says_so(models):
    atoms = sio_cell()
    atoms.calc = ETGNNCalculator(models["tiny_bec"])
    with pytest.raises(PropertyNotImplementedError) as err:
        atoms.get_forces()
    msg = str(err.value)
    assert "'forces' is not predicted by model 'tiny_bec'" in msg
    assert "born_charges" in msg and "dielectric" in msg and "use a model with forces" in msg
    with pytest.raises(PropertyNotImplementedError, match="'stress' is not predicted"):
        atoms.get_stress()
    eps = atoms.calc.get_property("dielectric_tensor", atoms)
    assert eps.shape == (3, 3)
    np.testing.assert_array_equal(eps, atoms.calc.results["dielectric"])
    assert atoms.calc.results["born_charges"].shape == (2, 3, 3)


def test_calculator_by_name_and_unknown_elements(models, monkeypatch):
    monkeypatch.setenv("ETGNN_PRETRAINED", str(models["tiny_bec"].info.path.parent))
    calc = ETGNNCalculator("tiny_bec", device="cpu")
    assert calc.model.name == "tiny_bec" and "born_effective_charges" in calc.implemented_properties
    from ase.build import bulk

    from etgnn_core.structure import StructureError

    zno = bulk("ZnO", "wurtzite", a=3.25, c=5.2)
    zno.calc = calc
    with pytest.raises(StructureError, match="element not supported by the model: Zn"):
        zno.calc.get_property("born_charges", zno)
