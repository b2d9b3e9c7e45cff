"""Physical-validity warnings (etgnn_core.tensors.checks): impossible predictions are named, never altered."""

import numpy as np
import torch
from ase.build import bulk
from conftest import load_script

from etgnn_core.api import load_model
from etgnn_core.tensors.algebra import voigt_rank4_to_full
from etgnn_core.tensors.checks import physics_warnings
from tests.conftest import save_tiny_model


def cubic_stiffness(c11: float, c12: float, c44: float) -> np.ndarray:
    v = np.full((3, 3), c12) + np.eye(3) * (c11 - c12)
    return voigt_rank4_to_full(np.block([[v, np.zeros((3, 3))], [np.zeros((3, 3)), np.eye(3) * c44]]))


def test_dielectric_below_vacuum_is_named_and_a_valid_one_is_not():
    assert physics_warnings({"dielectric": np.diag([1.0, 2.0, 19.0])}) == []
    (w,) = physics_warnings({"dielectric": np.diag([0.4, 2.0, 3.0])})
    assert "0.40" in w and "below 1" in w
    # the symmetric part decides: a large antisymmetric part cannot hide a low principal value
    eps = np.diag([0.5, 4.0, 4.0]) + np.array([[0, 3.0, 0], [-3.0, 0, 0], [0, 0, 0]])
    assert physics_warnings({"dielectric": eps})


def test_dielectric_of_a_near_metal_is_named_with_the_gap_it_implies():
    (w,) = physics_warnings({"dielectric": np.diag([47.4, 47.9, 47.9])})  # AgCrO2 as an early model had it
    assert "47.9" in w and "0.041 eV" in w and "metal" in w  # 95 / 47.9^2
    (w,) = physics_warnings({"dielectric": np.diag([3.0, 3.0, 25.0])})  # the largest principal value decides
    assert "25.0" in w


def test_born_charge_of_the_wrong_sign_is_named_by_atom_and_role():
    nacl = bulk("NaCl", "rocksalt", a=5.64).repeat((2, 1, 1))  # atoms 0, 2 Na; 1, 3 Cl
    bec = np.array([np.eye(3) * q for q in (1.1, -1.1, 1.1, -1.1)])  # [4, 3, 3] e, as DFT has it
    assert physics_warnings({"born_charges": bec}, atoms=nacl) == []
    assert physics_warnings({"born_charges": -bec}) == []  # no atoms: no neighbours, no check
    bec[2] = -0.9 * np.eye(3)
    (w,) = physics_warnings({"born_charges": bec}, atoms=nacl)
    assert w.startswith("atom 2 (Na) sits among clearly more electronegative neighbours (Cl), as a cation")
    assert "-0.90 e" in w
    w = physics_warnings({"born_charges": -bec}, atoms=nacl)  # now both Cl positive and Na 0 negative
    assert len(w) == 2 and "atoms 1, 3 (Cl)" in w[1] and "as anions do" in w[1] and "up to +1.10 e" in w[1]
    # a weak charge of the wrong sign (|trace/3| <= 0.3 e) is within what DFT shows: no warning
    bec[2] = -0.2 * np.eye(3)
    assert physics_warnings({"born_charges": bec}, atoms=nacl) == []


def test_unstable_stiffness_and_negative_polarizability_are_named():
    assert physics_warnings({"elastic": cubic_stiffness(160, 60, 80)}) == []  # Si-like, stable
    (w,) = physics_warnings({"elastic": cubic_stiffness(100, 120, 40)})  # C12 > C11: unstable
    assert "not positive definite" in w and "GPa" in w
    (w,) = physics_warnings({"polarizability": np.diag([-1.0, 5, 5])}, {"polarizability": "bohr^3"})
    assert "negative" in w and "bohr^3" in w
    # per-atom tensors and other shapes are not checked as structure tensors
    assert physics_warnings({"dielectric": np.zeros((4, 3, 3)), "born_charges": np.zeros((2, 3, 3))}) == []


def test_a_model_predicting_an_impossible_tensor_warns_and_keeps_its_numbers(tmp_path):
    folder = save_tiny_model(tmp_path, "tiny_eps", ["dielectric"], elements=[14])
    model = load_model(str(folder), device="cpu")
    with torch.no_grad():
        model.net.species_bias.weight[:, 0] -= 10.0  # the on-site dielectric level far below vacuum's 1
    pred = model.predict(bulk("Si", "diamond", a=5.43))
    low = np.linalg.eigvalsh(0.5 * (pred["dielectric"] + pred["dielectric"].T))[0]
    assert low < 1
    assert any("below 1" in w for w in pred.warnings)
    assert f"{low:.2f}" in " ".join(pred.warnings)  # the number reported is the one predicted
    record = pred.record()
    assert any("below 1" in w for w in record["warnings"])


def test_checks_rarely_fire_on_dft_labels(root, capsys):
    """benchmarks/physics_checks.py: DFT Born charges almost never get the sign warning (false alarms);
    the unstable ABO3 cells do get the stiffness warning (a check that can fire on real data)."""
    import re

    physics_checks = load_script("benchmarks/physics_checks.py")
    assert physics_checks.main(["--sets", "phonon_becs", "abo3_piezo"]) == 0
    out = capsys.readouterr().out
    phonon = next(line for line in out.splitlines() if line.startswith("phonon_becs "))
    n = int(phonon.split()[1])
    flagged = re.search(r"BEC sign: (\d+)", phonon)
    assert n > 1000 and (flagged is None or int(flagged.group(1)) < 0.01 * n), phonon
    abo3 = next(line for line in out.splitlines() if line.startswith("abo3_piezo "))
    assert "C unstable:" in abo3 and "BEC sign" not in abo3, abo3
