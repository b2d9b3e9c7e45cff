"""Ionic piezoelectric tensor (etgnn_core.spectra.piezo) on a harmonic crystal whose answer is known."""

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from etgnn_core.spectra.piezo import (
    E_PER_A2_IN_C_PER_M2,
    internal_strain_forces,
    ionic_piezo,
    relaxation_per_strain,
)


class HarmonicStrainCrystal(Calculator):
    """E = 1/2 x K x with x = r - r0(ε): equilibrium positions carried by the cell plus D ε (internal strain)."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, ref: Atoms, k: np.ndarray, d: np.ndarray):
        super().__init__()
        self.cell0, self.frac0, self.k, self.d = ref.cell.array.copy(), ref.get_scaled_positions(), k, d

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        f = np.linalg.solve(self.cell0, self.atoms.cell.array)  # cell = cell0 @ (1 + eps)
        eps = 0.5 * (f + f.T) - np.eye(3)
        r0 = self.frac0 @ self.atoms.cell.array + np.einsum("aljk,jk->al", self.d, eps)
        x = (self.atoms.positions - r0).reshape(-1)
        self.results = {"energy": 0.5 * x @ self.k @ x, "forces": -(self.k @ x).reshape(-1, 3)}


def crystal(seed=0, n=3):  # a random triclinic cell of three atoms
    rng = np.random.default_rng(seed)
    atoms = Atoms(["Al", "N", "O"][:n], cell=np.diag([3.1, 3.3, 5.0]) + 0.2 * rng.random((3, 3)),
                  scaled_positions=rng.random((n, 3)), pbc=True)
    t = np.kron(np.ones((n, 1)), np.eye(3)) / np.sqrt(n)  # [3n, 3] rigid translations
    p = np.eye(3 * n) - t @ t.T
    a = rng.normal(size=(3 * n, 3 * n))
    k = p @ (a @ a.T + 3 * np.eye(3 * n)) @ p  # eV/Å^2: positive except the translations
    d = rng.normal(size=(n, 3, 3, 3)) * 0.3
    d = 0.5 * (d + d.transpose(0, 1, 3, 2))  # symmetric in the strain indices
    d -= d.mean(axis=0)  # no net shift
    z = rng.normal(size=(n, 3, 3)) + 2.0 * np.eye(3) * np.array([1, -1, 0.5])[:n, None, None]
    return atoms, k, d, z - z.mean(axis=0)


def test_relaxation_and_ionic_piezo_recover_a_known_internal_strain():
    atoms, k, d, z = crystal()
    calc = HarmonicStrainCrystal(atoms, k, d)
    lam = internal_strain_forces(atoms, calc, delta=1e-3)
    fc = k.reshape(3, 3, 3, 3).transpose(0, 2, 1, 3)  # [n, n, 3, 3] as phonopy stores it
    u, unstable = relaxation_per_strain(fc, lam)
    assert unstable == 0
    np.testing.assert_allclose(u, d, atol=1e-6)
    e = ionic_piezo(z, u, atoms.get_volume())
    expected = E_PER_A2_IN_C_PER_M2 / atoms.get_volume() * np.einsum("ail,aljk->ijk", z, d)
    np.testing.assert_allclose(e, expected, atol=1e-6)
    assert np.abs(e).max() > 0.05  # a real test: the tensor is not zero
    np.testing.assert_allclose(e, e.transpose(0, 2, 1), atol=1e-9)  # symmetric in j, k


def test_a_rigid_shift_of_the_charges_changes_nothing_and_an_unstable_mode_is_left_out():
    atoms, k, d, z = crystal(seed=1)
    lam = internal_strain_forces(atoms, HarmonicStrainCrystal(atoms, k, d), delta=1e-3)
    fc = k.reshape(3, 3, 3, 3).transpose(0, 2, 1, 3)
    u, _ = relaxation_per_strain(fc, lam)
    e = ionic_piezo(z, u, atoms.get_volume())
    np.testing.assert_allclose(ionic_piezo(z + 0.7 * np.eye(3), u, atoms.get_volume()), e, atol=1e-9)
    w, v = np.linalg.eigh(k)
    soft = v[:, -1]  # turn the stiffest mode unstable: its inverse must not enter u
    k_bad = k - (w[-1] + 1.0) * np.outer(soft, soft)
    u_bad, unstable = relaxation_per_strain(k_bad.reshape(3, 3, 3, 3).transpose(0, 2, 1, 3), lam)
    assert unstable == 1 and np.isfinite(u_bad).all()


def test_with_phonopy_force_constants():
    pytest.importorskip("phonopy")
    from etgnn_core.spectra.phonons import PhononConfig, finite_displacement_phonopy

    atoms, k, d, z = crystal(seed=2)
    calc = HarmonicStrainCrystal(atoms, k, d)
    ph, _ = finite_displacement_phonopy(atoms, calc, PhononConfig(supercell=(1, 1, 1), symprec=1e-5))
    u, _ = relaxation_per_strain(ph.force_constants, internal_strain_forces(atoms, calc, delta=1e-3))
    np.testing.assert_allclose(u, d, atol=1e-4)


def test_axis_parts_split_a_trigonal_tensor_into_axial_and_in_plane_parts():
    """etgnn_core.spectra.piezo.axis_parts (piezo_frames.py, odd_part_scales): the 180° turn about the 3-fold
    axis keeps e14 and reverses e11 (class 32),
    whichever way the crystal is turned, and finds that axis from spglib's rotations."""
    import spglib
    from ase.build import bulk
    from scipy.spatial.transform import Rotation

    from etgnn_core.spectra.piezo import axis_parts as split_parts
    from etgnn_core.spectra.piezo import principal_axis

    e = np.zeros((3, 3, 3))
    e[0, 0, 0], e[0, 1, 1], e[1, 0, 1], e[1, 1, 0] = 0.17, -0.17, -0.17, -0.17  # e11, e12, e26 (z: 3-fold axis)
    e[0, 1, 2] = e[0, 2, 1] = -0.04  # e14
    e[1, 0, 2] = e[1, 2, 0] = 0.04  # e25 = -e14
    e11_only = np.zeros_like(e)
    e11_only[0, 0, 0], e11_only[0, 1, 1], e11_only[1, 0, 1], e11_only[1, 1, 0] = 0.17, -0.17, -0.17, -0.17
    r = Rotation.from_euler("xyz", [0.3, -0.7, 1.1]).as_matrix()
    rotate3 = lambda q, t: np.einsum("ia,jb,kc,abc->ijk", q, q, q, t)  # noqa: E731
    even, odd = split_parts(rotate3(r, e), r @ np.array([0.0, 0.0, 1.0]))
    assert np.allclose(rotate3(r.T, odd), e11_only, atol=1e-12)
    assert np.allclose(rotate3(r.T, even), e - e11_only, atol=1e-12)
    assert np.allclose(split_parts(e, None)[1], 0)

    hexagonal = bulk("Se", "hcp", a=4.4, c=5.0).cell  # trigonal selenium (P3_121): the 3-fold axis is along c
    atoms = Atoms("Se3", cell=hexagonal, scaled_positions=[[0.22, 0, 1 / 3], [0, 0.22, 2 / 3], [-0.22, -0.22, 0]],
                  pbc=True)
    cell = atoms.cell.array
    ds = spglib.get_symmetry_dataset((cell, atoms.get_scaled_positions(), atoms.numbers), symprec=0.1)
    axis = principal_axis(ds, cell)
    assert axis is not None and abs(abs(axis @ cell[2] / np.linalg.norm(cell[2])) - 1) < 1e-9
