"""Reading structures (format detection from name and content) and validation errors."""

from __future__ import annotations

import gzip
import io
import os

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule

from etgnn_core.structure import (
    StructureError,
    is_periodic,
    normalize,
    read_structures,
    to_atoms,
    validate_atoms,
)


# ----------------------------------------------------------------------------------------------
# fixtures
# ----------------------------------------------------------------------------------------------
@pytest.fixture
def crystal() -> Atoms:
    """A small, non-cubic crystal with distinct atoms (rutile-like TiO2 cell)."""
    atoms = Atoms(
        "Ti2O4",
        scaled_positions=[
            [0, 0, 0],
            [0.5, 0.5, 0.5],
            [0.305, 0.305, 0],
            [0.695, 0.695, 0],
            [0.805, 0.195, 0.5],
            [0.195, 0.805, 0.5],
        ],
        cell=[4.59, 4.59, 2.96],
        pbc=True,
    )
    return atoms


def _text(atoms, fmt: str) -> str:
    if fmt == "cif":  # ASE's CIF writer needs a binary buffer, the others a text one
        buf = io.BytesIO()
        ase.io.write(buf, atoms, format=fmt)
        return buf.getvalue().decode()
    sbuf = io.StringIO()
    ase.io.write(sbuf, atoms, format=fmt)
    return sbuf.getvalue()


def _frames() -> list[Atoms]:
    frames = []
    for k in range(3):
        w = molecule("H2O")
        w.positions += 0.1 * k
        w.info["step"] = k
        frames.append(w)
    return frames


def _sorted_frac(atoms: Atoms) -> np.ndarray:
    frac = np.round(atoms.get_scaled_positions(wrap=True), 6) % 1.0
    order = np.lexsort((frac[:, 2], frac[:, 1], frac[:, 0], atoms.numbers))
    return np.column_stack([atoms.numbers[order], frac[order]])


# ----------------------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------------------
def test_read_cif(tmp_path, crystal):
    path = tmp_path / "rutile.cif"
    path.write_text(_text(crystal, "cif"))
    (atoms,) = read_structures(path)
    assert atoms.get_chemical_formula() == crystal.get_chemical_formula()
    assert np.allclose(atoms.cell.cellpar(), crystal.cell.cellpar(), atol=1e-6)
    assert np.allclose(_sorted_frac(atoms), _sorted_frac(crystal), atol=1e-5)
    assert atoms.pbc.all()
    assert atoms.info["source"] == str(path)
    assert atoms.info["frame"] == 0


@pytest.mark.parametrize("filename", ["POSCAR", "mystructure", "CONTCAR", "POSCAR_relaxed", "x.vasp"])
def test_read_poscar_names(tmp_path, crystal, filename):
    path = tmp_path / filename
    path.write_text(_text(crystal, "vasp"))
    (atoms,) = read_structures(str(path))
    assert atoms.get_chemical_symbols() == crystal.get_chemical_symbols()
    assert np.allclose(atoms.cell[:], crystal.cell[:])
    assert np.allclose(atoms.positions, crystal.positions)
    assert atoms.info["source"] == str(path)


def test_read_poscar_misnamed_as_cif(crystal):
    # The name says CIF, the content is a POSCAR: content sniffing finds it.
    (atoms,) = read_structures(_text(crystal, "vasp"), name="upload.cif")
    assert np.allclose(atoms.positions, crystal.positions)
    assert atoms.info["source"] == "upload.cif"


def test_read_extxyz_three_frames(tmp_path):
    frames = _frames()
    path = tmp_path / "traj.xyz"
    ase.io.write(path, frames, format="extxyz")
    out = read_structures(path)
    assert len(out) == 3
    for k, (got, ref) in enumerate(zip(out, frames)):
        assert got.info["frame"] == k
        assert got.info["source"] == str(path)
        assert got.info["step"] == k
        assert got.get_chemical_symbols() == ref.get_chemical_symbols()
        assert np.allclose(got.positions, ref.positions)
    last = read_structures(path, index="-1")
    assert len(last) == 1 and last[0].info["frame"] == 2
    assert [a.info["frame"] for a in read_structures(path, index="0:3:2")] == [0, 2]
    assert [a.info["frame"] for a in read_structures(path, index=1)] == [1]


def test_read_extxyz_without_extension_and_name(tmp_path):
    buf = io.StringIO()
    ase.io.write(buf, _frames(), format="extxyz")
    out = read_structures(buf.getvalue().encode())  # bytes, no name
    assert len(out) == 3
    assert out[0].info["source"] == "<input>"


def test_read_plain_xyz():
    text = "3\nwater molecule from a paper\nO 0 0 0.119\nH 0 0.763 -0.477\nH 0 -0.763 -0.477\n"
    (atoms,) = read_structures(text, name="water.xyz")
    assert atoms.get_chemical_symbols() == ["O", "H", "H"]
    assert np.allclose(atoms.positions[1], [0, 0.763, -0.477])
    assert not is_periodic(atoms)
    # The comment line is not parsed into nonsense key=value pairs.
    assert "water" not in atoms.info


def test_read_pymatgen_structure_json(tmp_path):
    from pymatgen.core import Lattice, Molecule, Structure

    s = Structure(Lattice.hexagonal(3.2, 5.2), ["Zn", "O"], [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.38]])
    path = tmp_path / "mp-2133.json"
    path.write_text(s.to(fmt="json"))
    (atoms,) = read_structures(path)
    assert atoms.get_chemical_symbols() == ["Zn", "O"]
    assert np.allclose(atoms.cell[:], s.lattice.matrix)
    assert np.allclose(atoms.positions, s.cart_coords)
    assert atoms.pbc.all()

    # The as_dict JSON as a string with no name, and a Molecule
    (atoms2,) = read_structures(s.to(fmt="json"))
    assert np.allclose(atoms2.positions, s.cart_coords)
    m = Molecule(["O", "H", "H"], [[0, 0, 0], [0, 0.76, 0.59], [0, -0.76, 0.59]])
    (mol,) = read_structures(m.to(fmt="json").encode())
    assert mol.get_chemical_symbols() == ["O", "H", "H"] and not is_periodic(mol)


def test_read_bytes_without_name(crystal):
    (a,) = read_structures(_text(crystal, "vasp").encode())
    assert np.allclose(a.positions, crystal.positions)
    (b,) = read_structures(_text(crystal, "cif").encode())
    assert b.get_chemical_formula() == crystal.get_chemical_formula()
    assert a.info["source"] == b.info["source"] == "<input>"


def test_read_file_object_gzip_ase_json_traj(tmp_path, crystal):
    data = gzip.compress(_text(crystal, "vasp").encode())
    (a,) = read_structures(io.BytesIO(data), name="POSCAR.gz")
    assert np.allclose(a.positions, crystal.positions)
    (b,) = read_structures(_text(crystal, "json"), name="ase.json")
    assert np.allclose(b.positions, crystal.positions)
    path = tmp_path / "run.traj"
    ase.io.write(path, [crystal, crystal], format="traj")
    assert len(read_structures(path.read_bytes())) == 2
    assert len(read_structures(path)) == 2


def test_read_atoms_and_pymatgen_objects(crystal):
    from pymatgen.core import Lattice, Structure

    (a,) = read_structures(crystal, name="in-memory")
    assert a is not crystal and a.info["source"] == "in-memory"
    s = Structure(Lattice.cubic(4.2), ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    atoms = to_atoms(s)
    assert atoms.get_chemical_symbols() == ["Mg", "O"] and np.allclose(atoms.cell[:], np.eye(3) * 4.2)
    with pytest.raises(TypeError):
        to_atoms(42)


# ----------------------------------------------------------------------------------------------
# read errors
# ----------------------------------------------------------------------------------------------
def _message(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg
    return msg


def test_empty_file(tmp_path):
    path = tmp_path / "empty.cif"
    path.write_text("")
    with pytest.raises(StructureError) as e:
        read_structures(path)
    assert _message(e).startswith(f"{path}: ") and "empty" in _message(e)
    with pytest.raises(StructureError, match="empty"):
        read_structures(b"  \n\n", name="blank.xyz")


@pytest.mark.parametrize("text, where", [
    ("3\nwater\nO 0 0 0\nH 0.96 0\nH 0 0.96 0\n",
     "line 4 (atom 1 of frame 0): expected 'symbol x y z', got 'H 0.96 0'"),
    ("3\nwater\nO 0 0 0\nH 0.96 0 0\n", "frame 0 promises 3 atoms but the file ends after 2 of them (line 4)"),
    ("1\na\nO 0 0 0\n2\nb\nO 0 0 0\nH x 0 0\n", "line 7 (atom 1 of frame 1)"),
    ("3\nbad\nSi 0 0 0\nO 1.6 0 0\nXx 0 1 0\n", "line 5 (atom 2 of frame 0): 'Xx' is not an element symbol"),
    ("2\nASE takes 'si'\nsi 0 0 0\nQ 1.6 0 0\n", "line 4 (atom 1 of frame 0): 'Q' is not an element symbol"),
])
def test_broken_xyz_names_the_line(text, where):
    with pytest.raises(StructureError) as e:
        read_structures(text, name="upload.xyz")
    assert _message(e).startswith("upload.xyz: ") and where in _message(e)


def test_binary_garbage():
    with pytest.raises(StructureError) as e:
        read_structures(os.urandom(4096), name="upload.cif")
    msg = _message(e)
    assert msg.startswith("upload.cif: not a structure file ASE can read")
    assert "binary" in msg


def test_text_that_is_not_a_structure(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("Dear colleague,\nplease find the structure attached.\n")
    with pytest.raises(StructureError) as e:
        read_structures(path, name="notes.txt")
    msg = _message(e)
    assert msg.startswith("notes.txt: not a structure file ASE can read (tried ")
    for fmt in ("cif", "vasp", "extxyz"):
        assert fmt in msg
    assert "Dear colleague" in msg


def test_broken_cif_names_the_file():
    with pytest.raises(StructureError, match=r"^broken\.cif: not a structure file .*cif"):
        read_structures("data_x\n_cell_length_a 3.0\n", name="broken.cif")


def test_missing_file_and_bad_index(tmp_path):
    with pytest.raises(StructureError, match="file not found"):
        read_structures(tmp_path / "nope.cif")
    buf = io.StringIO()
    ase.io.write(buf, _frames(), format="extxyz")
    with pytest.raises(StructureError, match="out of range"):
        read_structures(buf.getvalue(), index=7)


def test_read_max_atoms():
    buf = io.StringIO()
    ase.io.write(buf, _frames(), format="extxyz")
    with pytest.raises(StructureError, match=r"frame 0: 3 atoms, more than the limit of 2"):
        read_structures(buf.getvalue(), name="w.xyz", max_atoms=2)
    assert len(read_structures(buf.getvalue(), max_atoms=3)) == 3


def test_pymatgen_json_of_wrong_class():
    with pytest.raises(StructureError, match="Lattice"):
        read_structures('{"@module": "pymatgen.core.lattice", "@class": "Lattice"}', name="l.json")


# ----------------------------------------------------------------------------------------------
# periodicity
# ----------------------------------------------------------------------------------------------
def test_extxyz_zero_cell_with_pbc_is_a_molecule():
    text = (
        '3\nLattice="0 0 0 0 0 0 0 0 0" Properties=species:S:1:pos:R:3 pbc="T T T"\n'
        "O 0 0 0.119\nH 0 0.763 -0.477\nH 0 -0.763 -0.477\n"
    )
    (atoms,) = read_structures(text, name="mol.xyz")
    assert atoms.pbc.all()  # as in the file
    assert not is_periodic(atoms)
    norm = normalize(atoms)
    assert not norm.pbc.any() and np.allclose(norm.cell[:], 0)
    assert atoms.pbc.all()  # normalize works on a copy
    validate_atoms(atoms)  # a molecule: no zero-volume error


def test_periodicity_and_partial_pbc(crystal):
    assert is_periodic(crystal)
    slab = crystal.copy()
    slab.pbc = [True, True, False]
    norm = normalize(slab)
    assert list(norm.pbc) == [True, True, False] and np.allclose(norm.cell[:], slab.cell[:])
    assert not is_periodic(molecule("H2O"))
    mol = molecule("H2O")
    mol.cell = [10, 10, 10]
    assert not is_periodic(mol)  # a cell but no pbc


# ----------------------------------------------------------------------------------------------
# validation
# ----------------------------------------------------------------------------------------------
def test_valid_structures_pass_at_the_limits(crystal):
    """Exactly at each limit passes; one step beyond fails (so the passing calls check something)."""
    closest = float(np.sort(crystal.get_all_distances(mic=True), axis=None)[len(crystal)])
    assert validate_atoms(crystal, allowed_numbers={8, 22}, max_atoms=6, min_distance=closest - 1e-6) is None
    assert validate_atoms(molecule("CH3CH2OH"), allowed_numbers={1, 6, 8}) is None
    for limits in ({"allowed_numbers": {8}}, {"max_atoms": 5}, {"min_distance": closest + 1e-3}):
        with pytest.raises(StructureError):
            validate_atoms(crystal, **limits)


def test_nan_position_names_atom():
    atoms = molecule("H2O")
    atoms.positions[2, 1] = np.nan
    with pytest.raises(StructureError) as e:
        validate_atoms(atoms, name="water.xyz")
    msg = _message(e)
    assert msg.startswith("water.xyz: atom 2 (H)") and "non-finite" in msg
    assert e.value.atom_indices == (2,)


def test_zero_volume_cell_with_pbc():
    atoms = Atoms("Si2", positions=[[0, 0, 0], [1.3, 1.3, 1.3]], cell=[[5, 0, 0], [0, 5, 0], [5, 5, 0]], pbc=True)
    with pytest.raises(StructureError, match="zero-volume or singular cell"):
        validate_atoms(atoms)
    atoms.pbc = False  # the same cell without pbc: a molecule, fine
    validate_atoms(atoms)


def test_unknown_element_for_model():
    atoms = molecule("CH3CH2OH")
    atoms.numbers[3] = 92  # U
    with pytest.raises(StructureError) as e:
        validate_atoms(atoms, allowed_numbers={1, 6, 7, 8}, name="ethanol.xyz")
    msg = _message(e)
    assert "U (atom 3)" in msg
    assert "H, C, N, O" in msg
    assert e.value.atom_indices == (3,)


def test_atomic_number_zero():
    atoms = Atoms(numbers=[8, 0], positions=[[0, 0, 0], [1, 0, 0]])
    with pytest.raises(StructureError, match=r"unknown element \(atomic number 0\) at atom\(s\) 1"):
        validate_atoms(atoms)


def test_overlapping_atoms_both_indices():
    atoms = molecule("CH4")
    atoms.positions[4] = atoms.positions[1] + [0.03, 0, 0]
    with pytest.raises(StructureError) as e:
        validate_atoms(atoms)
    msg = _message(e)
    assert "atoms 1 (H) and 4 (H) are 0.03 A apart" in msg
    assert e.value.atom_indices == (1, 4)
    validate_atoms(atoms, min_distance=0.0)  # check switched off


def test_overlap_across_periodic_boundary():
    atoms = Atoms("Si2", positions=[[0.01, 1, 1], [3.96, 1, 1]], cell=[4, 4, 4], pbc=True)
    with pytest.raises(StructureError, match=r"atoms 0 \(Si\) and 1 \(Si\) are 0.05 A apart across"):
        validate_atoms(atoms)
    atoms.pbc = False  # 3.95 A apart without periodicity
    validate_atoms(atoms)


def test_own_periodic_image_too_close():
    # an image closer than MIN_DISTANCE needs a lattice vector that short: the cell-height check names it first
    atoms = Atoms("H", positions=[[0, 0, 0]], cell=[0.05, 5, 5], pbc=True)
    with pytest.raises(StructureError) as e:
        validate_atoms(atoms, name="tiny")
    msg = _message(e)
    assert msg.startswith("tiny: the cell is only 0.05 A thick along a")
    assert e.value.key == "cell"


def test_max_atoms_and_empty():
    with pytest.raises(StructureError, match="3 atoms, more than the limit of 2 atoms"):
        validate_atoms(molecule("H2O"), max_atoms=2)
    with pytest.raises(StructureError, match="empty structure"):
        validate_atoms(Atoms())


def test_label_from_info(tmp_path):
    buf = io.StringIO()
    ase.io.write(buf, _frames(), format="extxyz")
    frames = read_structures(buf.getvalue(), name="md.xyz")
    frames[1].positions[0] = np.inf
    with pytest.raises(StructureError, match=r"^md\.xyz, frame 1: atom 0 \(O\)") as e:
        validate_atoms(frames[1])
    assert e.value.frame == 1 and e.value.source == "md.xyz"


def test_distance_check_finds_one_close_pair_among_10k_atoms():
    atoms = bulk("Si", "diamond", a=5.43, cubic=True) * (11, 11, 11)  # 10648 atoms
    assert validate_atoms(atoms) is None
    atoms.positions[5000] = atoms.positions[17] + [0.02, 0.0, 0.0]
    with pytest.raises(StructureError, match="atoms 17 .* and 5000"):
        validate_atoms(atoms)


def test_disordered_pymatgen_structure():
    from pymatgen.core import Lattice, Structure

    s = Structure(Lattice.cubic(4.2), [{"Mg": 0.5, "Ca": 0.5}, "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    with pytest.raises(StructureError, match=r"^dis\.json: disordered structure \(partial occupancy at site\(s\) 0\)"):
        read_structures(s.to(fmt="json"), name="dis.json")
