"""Exports of predictions: JSON records, extended XYZ with tensors, phonopy BORN."""

from __future__ import annotations

import io
import json

import ase.io
import numpy as np
import pytest
import spglib
from ase import Atoms
from ase.build import bulk, molecule

from etgnn_core import keys
from etgnn_core.io import (
    independent_atoms,
    phonopy_born_text,
    prediction_record,
    read_extxyz_tensors,
    read_phonopy_born,
    to_json,
    write_extxyz,
    write_phonopy_born,
)
from etgnn_core.structure import StructureError

PER_ATOM = {
    keys.ENERGY: False,
    keys.FORCES: True,
    keys.DIPOLE: False,
    keys.POLARIZABILITY: False,
    keys.DIELECTRIC: False,
    keys.BORN_CHARGES: True,
    keys.SHIELDING: True,
    keys.PIEZOELECTRIC: False,
    keys.ELASTIC: False,
}
UNITS = {
    keys.ENERGY: "eV",
    keys.FORCES: "eV/A",
    keys.DIPOLE: "e*bohr",
    keys.POLARIZABILITY: "bohr^3",
    keys.BORN_CHARGES: "e",
    keys.SHIELDING: "ppm",
    keys.PIEZOELECTRIC: "C/m^2",
    keys.ELASTIC: "GPa",
}


def _prediction(atoms: Atoms, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = len(atoms)
    return {
        keys.ENERGY: np.float64(rng.normal()),
        keys.FORCES: rng.normal(size=(n, 3)),
        keys.DIPOLE: rng.normal(size=3),
        keys.POLARIZABILITY: rng.normal(size=(3, 3)),
        keys.DIELECTRIC: rng.normal(size=(3, 3)),
        keys.BORN_CHARGES: rng.normal(size=(n, 3, 3)),
        keys.SHIELDING: rng.normal(size=(n, 3, 3)),
        keys.PIEZOELECTRIC: rng.normal(size=(3, 3, 3)),
        keys.ELASTIC: rng.normal(size=(3, 3, 3, 3)),
    }


# ----------------------------------------------------------------------------------------------
# JSON
# ----------------------------------------------------------------------------------------------
def test_prediction_record_schema_and_json_round_trip():
    atoms = molecule("H2O")
    t = _prediction(atoms)
    rec = prediction_record(atoms, t, UNITS, PER_ATOM, "etgnn-water", source="w.xyz", index=4)
    assert set(rec) == {"source", "index", "formula", "model", "tensors", "warnings"}
    assert rec["warnings"] == [] and "std" not in rec["tensors"][keys.BORN_CHARGES]  # a single model claims none
    assert rec["source"] == "w.xyz" and rec["index"] == 4
    assert rec["formula"] == "H2O" and rec["model"] == "etgnn-water"
    assert set(rec["tensors"]) == set(t)
    born = rec["tensors"][keys.BORN_CHARGES]
    assert born["unit"] == "e" and born["per_atom"] is True
    assert np.array_equal(np.array(born["values"]), t[keys.BORN_CHARGES])
    assert type(born["values"][0][0][0]) is float
    assert rec["tensors"][keys.ENERGY]["values"] == float(t[keys.ENERGY])
    assert rec["tensors"][keys.DIELECTRIC]["unit"] == ""  # missing from units
    assert rec["tensors"][keys.ELASTIC]["per_atom"] is False

    text = to_json([rec, rec])
    back = json.loads(text)
    assert isinstance(back, list) and len(back) == 2
    assert np.array_equal(np.array(back[1]["tensors"][keys.ELASTIC]["values"]), t[keys.ELASTIC])
    assert json.loads(to_json(rec))[0]["model"] == "etgnn-water"  # a single record is wrapped


def test_prediction_record_nan_and_bad_shape():
    atoms = molecule("H2O")
    rec = prediction_record(atoms, {keys.DIPOLE: np.array([np.nan, 1.0, np.inf])}, {}, {}, "m")
    assert rec["tensors"][keys.DIPOLE]["values"] == [None, 1.0, None]
    assert json.loads(to_json([rec]))[0]["tensors"][keys.DIPOLE]["values"][0] is None
    with pytest.raises(ValueError, match="born_charges"):
        prediction_record(atoms, {keys.BORN_CHARGES: np.zeros((2, 3, 3))}, {}, PER_ATOM, "m")


# ----------------------------------------------------------------------------------------------
# extended XYZ
# ----------------------------------------------------------------------------------------------
def test_extxyz_round_trip_all_tensors(tmp_path):
    crystal = bulk("GaN", "wurtzite", a=3.19, c=5.19)
    crystal.info["source"] = "gan.cif"
    mol = molecule("CH3CH2OH")  # different size, no cell
    t1, t2 = _prediction(crystal, 1), _prediction(mol, 2)
    t2["shielding_mask"] = np.arange(len(mol)) % 2 == 0
    path = tmp_path / "pred.extxyz"
    write_extxyz(path, [(crystal, t1, PER_ATOM), (mol, t2, PER_ATOM)], units=UNITS)

    out = read_extxyz_tensors(path)
    assert len(out) == 2
    for (atoms, tensors), (ref_atoms, ref) in zip(out, [(crystal, t1), (mol, t2)]):
        assert atoms.get_chemical_symbols() == ref_atoms.get_chemical_symbols()
        assert np.allclose(atoms.positions, ref_atoms.positions)
        assert set(tensors) == set(ref)
        for name, value in ref.items():
            assert tensors[name].shape == np.shape(value), name
            if tensors[name].dtype == bool:
                assert np.array_equal(tensors[name], value)
            else:
                # per-atom columns are written with 8 decimals by ASE
                assert np.allclose(tensors[name], value, atol=1e-7, rtol=0), name
        assert atoms.info["born_charges_unit"] == "e"
        assert atoms.calc is None and "born_charges" not in atoms.arrays
    assert out[0][0].info["source"] == "gan.cif"
    assert out[0][0].pbc.all() and not out[1][0].pbc.any()


def test_extxyz_is_plain_ase_readable_and_row_major():
    atoms = bulk("NaCl", "rocksalt", a=5.64)
    t = _prediction(atoms, 3)
    buf = io.StringIO()
    write_extxyz(buf, [(atoms, t, PER_ATOM)])
    plain = ase.io.read(io.StringIO(buf.getvalue()), format="extxyz")
    z = plain.arrays["born_charges"]
    assert z.shape == (2, 9)
    # row-major: column 3*i + j is Z[i, j]; column 1 is Z_xy (field x, displacement y)
    assert np.allclose(z[1, 1], t[keys.BORN_CHARGES][1, 0, 1], atol=1e-7)
    assert np.allclose(z[1, 3], t[keys.BORN_CHARGES][1, 1, 0], atol=1e-7)
    assert np.allclose(z.reshape(2, 3, 3), t[keys.BORN_CHARGES], atol=1e-7)
    assert np.allclose(plain.info["piezoelectric"].reshape(3, 3, 3), t[keys.PIEZOELECTRIC])
    assert np.allclose(plain.get_forces(), t[keys.FORCES], atol=1e-7)  # ASE puts forces in a calculator
    assert plain.info["born_charges_shape"] == "nx3x3"
    assert plain.info["elastic_shape"] == "3x3x3x3"
    assert plain.info["energy_shape"] == "scalar"


def test_extxyz_binary_buffer_and_unserialisable_info(crystal_cif_atoms):
    t = {keys.DIELECTRIC: np.eye(3) * 5.0}
    buf = io.BytesIO()
    write_extxyz(buf, [(crystal_cif_atoms, t, {keys.DIELECTRIC: False})])
    ((atoms, tensors),) = read_extxyz_tensors(buf.getvalue())
    assert np.allclose(tensors[keys.DIELECTRIC], np.eye(3) * 5.0)
    assert "spacegroup" not in atoms.info  # a Spacegroup object cannot go into extxyz


@pytest.fixture
def crystal_cif_atoms() -> Atoms:
    from etgnn_core.structure import read_structures

    buf = io.BytesIO()
    ase.io.write(buf, bulk("MgO", "rocksalt", a=4.2), format="cif")
    (atoms,) = read_structures(buf.getvalue(), name="mgo.cif")
    assert "spacegroup" in atoms.info
    return atoms


# ----------------------------------------------------------------------------------------------
# phonopy BORN
# ----------------------------------------------------------------------------------------------
def _symmetrized_born(atoms: Atoms, z: np.ndarray) -> np.ndarray:
    """Average ``z`` over the space group: Z'[g(a)] = mean_g S_g Z[a] S_g^T."""
    ds = spglib.get_symmetry_dataset((atoms.cell[:], atoms.get_scaled_positions(), atoms.numbers), symprec=1e-5)
    a_mat = atoms.cell[:].T
    frac = atoms.get_scaled_positions()
    out = np.zeros_like(z)
    for rot, trans in zip(ds.rotations, ds.translations):
        s = a_mat @ rot @ np.linalg.inv(a_mat)
        for a in range(len(atoms)):
            x = rot @ frac[a] + trans
            d = x - frac
            d -= np.rint(d)
            b = int(np.argmin(np.linalg.norm(d @ atoms.cell[:], axis=1)))
            out[b] += s @ z[a] @ s.T
    return out / len(ds.rotations)


def _p3_crystal() -> Atoms:
    """Space group P3 (143): orbits related only by 3-fold rotations (no involutions)."""
    from ase.spacegroup import crystal

    return crystal(["Ga", "N"], [(0.1, 0.2, 0.3), (0.3, 0.1, 0.7)], spacegroup=143, cellpar=[4, 4, 5, 90, 90, 120])


def _rutile() -> Atoms:
    from ase.spacegroup import crystal

    return crystal(["Ti", "O"], [(0, 0, 0), (0.305, 0.305, 0)], spacegroup=136, cellpar=[4.59, 4.59, 2.96, 90, 90, 90])


def test_born_file_layout():
    atoms = bulk("NaCl", "rocksalt", a=5.64, cubic=True)  # 8 atoms, 2 independent
    eps = np.array([[2.5, 0.1, 0.2], [0.3, 2.6, 0.4], [0.5, 0.6, 2.7]])  # not symmetric: row-major check
    z = np.array([np.eye(3) * (1.1 if s == "Na" else -1.1) for s in atoms.get_chemical_symbols()])
    z[0, 0, 1] = 0.25  # Z_xy of atom 0: field x, displacement y
    buf = io.StringIO()
    write_phonopy_born(buf, atoms, eps, z)
    lines = buf.getvalue().splitlines()
    assert len(lines) == 2 + 2
    # line 1: phonopy tries float(first token) for the NAC factor; a non-number means "default"
    first = lines[0].split()[0]
    with pytest.raises(ValueError):
        float(first)
    assert lines[0].startswith("# epsilon and Z* of atoms 1 2")
    assert np.allclose([float(x) for x in lines[1].split()], eps.reshape(-1))
    row0 = [float(x) for x in lines[2].split()]
    assert len(row0) == 9 and row0[1] == 0.25 and row0[0] == 1.1
    assert np.allclose([float(x) for x in lines[3].split()], (-1.1 * np.eye(3)).reshape(-1))
    assert list(independent_atoms(atoms)) == [0, 1]


@pytest.mark.parametrize("make", [_p3_crystal, _rutile])
def test_born_round_trip_expands_by_symmetry(tmp_path, make):
    atoms = make()
    rng = np.random.default_rng(7)
    z = _symmetrized_born(atoms, rng.normal(size=(len(atoms), 3, 3)))
    eps = rng.normal(size=(3, 3))
    path = tmp_path / "BORN"
    write_phonopy_born(path, atoms, eps, z)
    n_indep = len(independent_atoms(atoms))
    assert n_indep < len(atoms)
    assert len(path.read_text().splitlines()) == 2 + n_indep
    eps2, z2 = read_phonopy_born(path, atoms)
    assert np.allclose(eps2, eps, atol=1e-7)
    assert np.allclose(z2, z, atol=1e-7)


def test_born_needs_a_crystal():
    with pytest.raises(StructureError, match="needs a periodic crystal"):
        phonopy_born_text(molecule("H2O"), np.eye(3), np.zeros((3, 3, 3)))
    slab = bulk("Si", "diamond", a=5.43)
    slab.pbc = [True, True, False]
    with pytest.raises(StructureError, match="needs a periodic crystal"):
        phonopy_born_text(slab, np.eye(3), np.zeros((2, 3, 3)))
    with pytest.raises(ValueError, match="born_charges must have shape"):
        phonopy_born_text(bulk("Si", "diamond", a=5.43), np.eye(3), np.zeros((3, 3, 3)))


def test_read_born_wrong_number_of_lines():
    atoms = bulk("NaCl", "rocksalt", a=5.64)
    text = "# comment\n" + " ".join(["1.0"] * 9) + "\n" + " ".join(["1.0"] * 9) + "\n"
    with pytest.raises(ValueError, match="1 Born charge line"):
        read_phonopy_born(io.StringIO(text), atoms)
