"""IR spectra: closed forms (rock-salt LO-TO, two-atom ε_ionic, Lyddane-Sachs-Teller) against our formulas
and phonopy's non-analytical correction; Γ exactness of the unit-cell displacements; the CLI end to end.

No universal potential is needed except in the slow end-to-end test: force constants are built by hand
and fed to phonopy, or come from ASE's EMT.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms, units
from ase.calculators.calculator import Calculator
from ase.calculators.emt import EMT

from etgnn_core import cli
from etgnn_core.spectra import ir
from etgnn_core.spectra.phonons import (
    GammaPhonons,
    PhononConfig,
    finite_displacement_phonopy,
    gamma_modes,
    to_phonopy_atoms,
)

ROOT = Path(__file__).resolve().parents[1]
CM1 = 1.0 / (2 * np.pi * units._c * 100.0)  # rad/s -> cm^-1
A0 = 5.64  # Å, conventional rock-salt cube
K = 2.0  # eV/Å^2, on-site spring of the hand-made force constants
Z_STAR = 1.1  # e
EPS_INF = 2.4


def rocksalt() -> Atoms:
    cell = 0.5 * A0 * np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]])
    return Atoms("NaCl", cell=cell, scaled_positions=[[0, 0, 0], [0.5, 0.5, 0.5]], pbc=True)


def rocksalt_phonopy(n: int, atoms: Atoms | None = None):
    """phonopy of the 2-atom rock salt in an n x n x n supercell, force constants by hand: K on site,
    -K spread evenly over the other species' atoms (so the Γ dynamical matrix is K/sqrt(M M') [[1,-1],[-1,1]])."""
    from phonopy import Phonopy

    ph = Phonopy(to_phonopy_atoms(atoms or rocksalt()), supercell_matrix=np.eye(3, dtype=int) * n, primitive_matrix="P")
    sym = list(ph.supercell.symbols)
    fc = np.zeros((len(sym), len(sym), 3, 3))
    for i in range(len(sym)):
        fc[i, i] = K * np.eye(3)
        others = [j for j in range(len(sym)) if sym[j] != sym[i]]
        for j in others:
            fc[i, j] = -K * np.eye(3) / len(others)
    ph.force_constants = fc
    return ph


def closed_form() -> tuple[float, float, float]:
    """(ω_TO, ω_LO in cm^-1, ε_ionic) of the rigid-ion rock salt: ω_TO² = K/μ,
    ω_LO² = ω_TO² + Z² e² / (ε0 V μ ε∞) (SI), ε_ionic = Z² e² / (ε0 V μ ω_TO²)."""
    a = rocksalt()
    m = a.get_masses()
    mu = m[0] * m[1] / (m[0] + m[1]) * units._amu  # kg
    w_to2 = K * units._e / 1e-20 / mu  # (rad/s)^2
    plasma = Z_STAR**2 * units._e**2 / (units._eps0 * a.get_volume() * 1e-30 * mu)
    return np.sqrt(w_to2) * CM1, np.sqrt(w_to2 + plasma / EPS_INF) * CM1, plasma / w_to2


def analysed(ph, atoms, directions=((1, 0, 0), (0, 0, 1), (1, 1, 1))):
    from etgnn_core.spectra import analyse

    freqs, vecs = gamma_modes(ph)
    gamma = GammaPhonons(atoms, freqs, vecs, atoms.get_masses(), ph, "hand-made force constants")
    Z = np.array([Z_STAR * np.eye(3), -Z_STAR * np.eye(3)])
    return gamma, analyse(gamma, Z + 0.05, EPS_INF * np.eye(3), directions)  # +0.05: the ASR must remove it


@pytest.mark.parametrize("n", [1, 2])
def test_rocksalt_lo_to_matches_closed_form_and_phonopy_nac(n):
    to, lo, eps_ion = closed_form()
    gamma, r = analysed(rocksalt_phonopy(n), rocksalt())
    # TO: three degenerate optical modes; acoustic at zero
    np.testing.assert_allclose(np.sort(gamma.frequencies_cm1)[3:], [to] * 3, rtol=1e-6)
    assert np.abs(gamma.frequencies_cm1[r["selection"].acoustic]).max() < 1e-3
    # LO: along every direction one mode moves to the closed-form LO, two stay TO
    for f in r["lo_frequencies_cm1"]:
        np.testing.assert_allclose(np.sort(f)[3:], [to, to, lo], rtol=1e-6)
    # our ε_ionic equals the closed form and, through Lyddane-Sachs-Teller ε0/ε∞ = ω_LO²/ω_TO², phonopy's NAC
    np.testing.assert_allclose(r["eps_ionic"], eps_ion * np.eye(3), rtol=1e-6, atol=1e-9)
    lo_phonopy = np.sort(r["lo_frequencies_cm1"][0])[-1]
    np.testing.assert_allclose(EPS_INF + r["eps_ionic"][0, 0], EPS_INF * lo_phonopy**2 / to**2, rtol=1e-5)
    np.testing.assert_allclose(r["born_charges"].sum(0), 0.0, atol=1e-12)  # ASR imposed


def test_lo_mode_matches_phonopy_run_directly():
    """Our LO modes are phonopy's own NAC result (q direction converted from Cartesian to reduced), and the
    closed form for anisotropic Z and ε∞ (a tetragonal CsCl-type cell: phonopy symmetrises Z and ε∞ with the
    crystal's point group, so they must respect it)."""
    from phonopy.physical_units import get_physical_units

    from etgnn_core.spectra.phonons import lo_modes

    a = Atoms("NaCl", cell=np.diag([3.2, 3.2, 3.9]), scaled_positions=[[0, 0, 0], [0.5, 0.5, 0.5]], pbc=True)
    ph = rocksalt_phonopy(1, a)
    zd, eps = np.diag([1.0, 1.0, 1.4]), np.diag([2.0, 2.0, 3.0])
    Z = np.array([zd, -zd])
    d = np.array([0.3, -0.5, 0.8])
    ours = lo_modes(ph, Z, eps, d[None])[0]
    u = get_physical_units()
    ph.nac_params = {"born": Z, "dielectric": eps, "factor": u.Hartree * u.Bohr}
    ph.run_qpoints([[0, 0, 0]], nac_q_direction=np.asarray(ph.primitive.cell) @ d)
    np.testing.assert_allclose(ours, ph.get_qpoints_dict()["frequencies"][0] * ir.THZ_TO_CM1, rtol=1e-10)
    # closed form along d: the LO mode has ω² = ω_TO² + |Z d̂|² e² / (ε0 V μ d̂·ε∞·d̂)
    m = a.get_masses()
    mu = m[0] * m[1] / (m[0] + m[1]) * units._amu
    w_to2 = K * units._e / 1e-20 / mu
    dh = d / np.linalg.norm(d)
    zq = zd @ dh
    plasma = (zq @ zq) * units._e**2 / (units._eps0 * a.get_volume() * 1e-30 * mu) / (dh @ eps @ dh)
    np.testing.assert_allclose(np.sort(ours)[3:], np.sqrt([w_to2, w_to2, w_to2 + plasma]) * CM1, rtol=1e-6)


def test_two_atom_eps_ionic_intensity_and_shares_by_hand():
    """A diatomic cell with one optical mode along x: every quantity written out by hand."""
    m1, m2, V, w_cm1 = 12.0, 30.0, 50.0, 400.0
    zx = 2.0
    Z = np.zeros((2, 3, 3))
    Z[0] = np.diag([zx, 0.5, 0.5])
    Z[1] = -Z[0]
    # optical mode along x: e = (sqrt(m2), -sqrt(m1)) / sqrt(m1 + m2) on x
    e = np.zeros((1, 2, 3))
    e[0, 0, 0], e[0, 1, 0] = np.sqrt(m2 / (m1 + m2)), -np.sqrt(m1 / (m1 + m2))
    q = ir.mode_charges(Z, e, np.array([m1, m2]))  # [1, 2, 3]
    p_x = zx * e[0, 0, 0] / np.sqrt(m1) + (-zx) * e[0, 1, 0] / np.sqrt(m2)  # e/sqrt(amu); Z_2 = -Z_1
    np.testing.assert_allclose(ir.ir_intensities(q), [p_x**2])
    assert np.isclose(p_x**2, zx**2 / (m1 * m2 / (m1 + m2)))  # = Z²/μ
    shares = ir.atom_shares(q)
    np.testing.assert_allclose(shares.sum(1), 1.0)
    np.testing.assert_allclose(shares[0], [e[0, 0, 0] / np.sqrt(m1), -e[0, 1, 0] / np.sqrt(m2)]
                               / (e[0, 0, 0] / np.sqrt(m1) - e[0, 1, 0] / np.sqrt(m2)))
    eps = ir.eps_ionic(q, np.array([w_cm1]), V, np.array([True]))
    omega = w_cm1 / CM1
    by_hand = p_x**2 * units._e**2 / units._amu / (units._eps0 * V * 1e-30 * omega**2)
    np.testing.assert_allclose(eps, np.diag([by_hand, 0, 0]), rtol=1e-12, atol=1e-15)
    # the Gaussian form 4π Z² e² / (V μ ω²) with e² = 14.3996 eV·Å: same number
    mu = m1 * m2 / (m1 + m2)
    gauss = 4 * np.pi * zx**2 * 14.399645 / (V * mu * (omega * 1e-10 / np.sqrt(units._e / units._amu)) ** 2)
    np.testing.assert_allclose(eps[0, 0], gauss, rtol=1e-5)


def test_imaginary_and_acoustic_modes_are_left_out_with_a_warning():
    from etgnn_core.spectra import mode_warnings

    f = np.array([-0.2, 0.1, 0.3, -55.0, 12.0, 300.0])
    acoustic = np.array([True, True, True, False, False, False])
    sel = ir.select_modes(f, acoustic)
    assert sel.included.tolist() == [False, False, False, False, True, True]
    assert sel.imaginary.tolist() == [False, False, False, True, False, False]
    assert sel.soft.tolist() == [False, False, False, True, True, False]
    text = " ".join(mode_warnings(f, sel))
    assert "55.0i" in text and "left out of eps_ionic" in text and "soft" in text and "12.0" in text


def test_lorentzian_peak_height_is_the_intensity():
    grid = np.linspace(0, 1000, 20001)
    s = ir.lorentzian_spectrum([300.0, 700.0, -50.0], [2.0, 0.5, 9.0], grid, 8.0)
    assert np.isclose(s[np.argmin(abs(grid - 300))], 2.0, rtol=1e-3)
    assert np.isclose(s[np.argmin(abs(grid - 704))], 0.5 / 2, rtol=1e-2)  # half maximum at ω_m + FWHM/2
    assert s[np.argmin(abs(grid - 50))] < 0.01  # the imaginary mode is not drawn
    with pytest.raises(ValueError, match="positive"):
        ir.lorentzian_spectrum([1.0], [1.0], grid, 0.0)


def test_gamma_modes_of_the_unit_cell_equal_a_supercell():
    """Γ is exact with displacements in the cell itself (default supercell 1x1x1): same as 2x2x2 (EMT)."""
    a = Atoms("CuAu", cell=np.eye(3) * 3.0, scaled_positions=[[0, 0, 0], [0.5, 0.5, 0.5]], pbc=True)
    a.rattle(0.02, seed=1)  # low symmetry: several displacements
    out = []
    for n in (1, 2):
        ph, n_disp = finite_displacement_phonopy(a, EMT(), PhononConfig(supercell=(n, n, n), relax="none"))
        out.append(gamma_modes(ph)[0])
    np.testing.assert_allclose(out[0], out[1], atol=0.05)  # cm^-1
    assert np.abs(out[0]).max() > 50


def test_acoustic_modes_are_found_by_overlap_with_translations():
    m = np.array([10.0, 40.0])
    e = np.zeros((6, 2, 3))
    for i in range(3):  # translations
        e[i, :, i] = np.sqrt(m) / np.linalg.norm(np.sqrt(m))
        e[3 + i, 0, i], e[3 + i, 1, i] = np.sqrt(m[1] / m.sum()), -np.sqrt(m[0] / m.sum())
    order = [4, 0, 3, 1, 5, 2]  # shuffled
    assert ir.acoustic_modes(e[order], m).tolist() == [False, True, False, True, False, True]


# ------------------------------------------------------------------------------------------- CLI
@functools.cache
def _cached_load(name_or_path, device=None):
    import etgnn_core.api
    from etgnn_core.registry import load_model_folder

    return etgnn_core.api.Model(*load_model_folder(name_or_path), device)


@pytest.fixture(autouse=True)
def load_models_once(monkeypatch):
    """The shipped multi_element_bec is built once for this file (building it costs ~10 s)."""
    import etgnn_core.api

    monkeypatch.setattr(etgnn_core.api, "load_model", _cached_load)


@pytest.fixture(scope="module")
def phonopy_file(tmp_path_factory):
    """phonopy_params.yaml of the hand-made rock salt (force constants inside)."""
    path = tmp_path_factory.mktemp("phonopy") / "phonopy_params.yaml"
    rocksalt_phonopy(1).save(str(path), settings={"force_constants": True})
    return path


def test_cli_spectra_from_a_phonopy_file_json_and_csv(phonopy_file, tmp_path, capsys):
    out = tmp_path / "spectrum.csv"
    assert cli.main(["spectra", str(phonopy_file), "--phonons", str(phonopy_file), "--format", "json",
                     "-o", str(out), "--fwhm", "5", "-q"]) == 0
    (rec,) = json.loads(capsys.readouterr().out)
    keys = {"source", "formula", "model", "phonons", "frequencies_cm1", "ir_intensities", "intensity_unit", "eps_inf",
            "eps_ionic", "eps_static", "lo_frequencies_cm1", "warnings"}
    assert keys <= set(rec)
    assert rec["model"] == "multi_element_bec" and rec["phonons"].startswith("phonopy file")
    assert rec["intensity_unit"] == "e^2/amu" and rec["formula"] == "ClNa"
    to, _, _ = closed_form()
    np.testing.assert_allclose(np.sort(rec["frequencies_cm1"])[3:], [to] * 3, rtol=1e-6)
    eps_inf, eps_ion, eps0 = (np.array(rec[k]) for k in ("eps_inf", "eps_ionic", "eps_static"))
    np.testing.assert_allclose(eps0, eps_inf + eps_ion)
    assert np.all(np.diag(eps_ion) > 0) and np.shape(eps0) == (3, 3)
    # LST with the model's own Born charges and ε∞ (cubic: isotropic), through phonopy's NAC
    lo = max(rec["lo_frequencies_cm1"][0]["frequencies_cm1"])
    np.testing.assert_allclose(eps0[0, 0] / eps_inf[0, 0], lo**2 / to**2, rtol=2e-3)
    lines = out.read_text().splitlines()
    assert lines[0].startswith("frequency_cm1,intensity_e2_per_amu") and len(lines) == 2001
    peak = max(lines[1:], key=lambda ln: float(ln.split(",")[1]))
    assert abs(float(peak.split(",")[0]) - to) < 1.0


def test_cli_spectra_table_with_the_same_crystal_as_file(phonopy_file, tmp_path, capsys):
    import ase.io

    poscar = tmp_path / "POSCAR"
    ase.io.write(poscar, rocksalt(), format="vasp")
    assert cli.main(["spectra", str(poscar), "--phonons", str(phonopy_file), "-q"]) == 0
    text = capsys.readouterr().out
    assert "eps_static" in text and "IR intensity [e^2/amu]" in text and "phonopy file" in text


@pytest.mark.parametrize("argv, message", [
    (["spectra", "{demo}/AlN_wurtzite.json", "--model", "piezo_aln"], "does not predict born_charges and dielectric"),
    (["spectra", "{demo}/H2O_molecule.xyz"], "3D-periodic crystal"),
    (["spectra", "{demo}/AlN_wurtzite.json", "--phonons", "nonexistent.yaml"], "neither a force model"),
    (["spectra", "{demo}/AlN_wurtzite.json", "--fwhm", "0"], "--fwhm must be positive"),
    (["spectra", "{demo}/AlN_wurtzite.json", "--phonons", "{file}"], "not the crystal of phonopy file"),
])
def test_cli_spectra_bad_input_is_one_line(argv, message, phonopy_file, capsys):
    argv = [a.format(demo=ROOT / "assets" / "demo", file=phonopy_file) for a in argv]
    assert cli.main(argv + ["-q"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("etgnn: error:") and message in err[0], err


@pytest.mark.slow
def test_cli_spectra_end_to_end_with_sevenn(tmp_path):
    """The real console path: SevenNet 7net-l3i5 phonons of a 2-atom rock salt, multi_element_bec charges."""
    import ase.io

    a = rocksalt()
    a.positions[1] += 0.03  # off the minimum: the relaxation must bring it back
    path = tmp_path / "NaCl.cif"
    ase.io.write(path, a)
    proc = subprocess.run([sys.executable, "-m", "etgnn_core.cli", "spectra", str(path), "--format", "json", "-q"],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "accelerator" not in proc.stderr, proc.stderr  # sevenn's note about an optional CUDA extension
    (rec,) = json.loads(proc.stdout)
    assert rec["phonons"] == "sevenn 7net-l3i5" and rec["model"] == "multi_element_bec"
    f = np.sort(rec["frequencies_cm1"])
    assert np.abs(f[:3]).max() < 5 and 100 < f[3] < 250 and np.allclose(f[3:], f[3], rtol=1e-3)  # NaCl TO ~164
    lo = max(rec["lo_frequencies_cm1"][0]["frequencies_cm1"])
    assert lo > f[-1] + 50  # LO-TO splitting of a strongly polar crystal
    assert 3 < np.trace(rec["eps_static"]) / 3 < 12 and rec["warnings"] == []


# ------------------------------------------------------------------------------------------- app
class Springs(Calculator):  # a cheap, stable stand-in for the universal potential
    """Central springs (k = 5 eV/Å²) between all pairs closer than 3.6 Å, at rest in the first structure seen."""

    implemented_properties = ["energy", "forces"]

    def __init__(self):
        super().__init__()
        self.pairs = None

    def calculate(self, atoms=None, properties=("energy",), system_changes=()):
        from ase.neighborlist import neighbor_list

        super().calculate(atoms, properties, system_changes)
        a = self.atoms
        if self.pairs is None:
            i, j, d, S = neighbor_list("ijdS", a, 3.6)
            self.pairs = (i, j, S, d)
        i, j, S, r0 = self.pairs
        vec = a.positions[j] + S @ a.cell[:] - a.positions[i]  # [n_pairs, 3]
        r = np.linalg.norm(vec, axis=1)
        f_pair = (5.0 * (r - r0) / r)[:, None] * vec  # force on i from the spring to j
        forces = np.zeros((len(a), 3))
        np.add.at(forces, i, f_pair)
        self.results = {"energy": float(0.25 * 5.0 * ((r - r0) ** 2).sum()), "forces": forces}


def test_app_spectra_page_computes_and_shows_the_tables(tmp_path, monkeypatch, phonopy_file):
    """The Spectra page through AppTest: compute (springs instead of SevenNet), spectrum, mode view, tables."""
    import torch
    from streamlit.testing.v1 import AppTest

    from etgnn_core.model.etgnn import ETGNN, ModelConfig
    from etgnn_core.registry import save_model
    from etgnn_core.spectra import phonons
    from etgnn_core.tensors.specs import spec_for

    torch.manual_seed(0)
    net = ETGNN(ModelConfig(targets=[spec_for("born_charges"), spec_for("dielectric")], hidden=16, int_emb=8,
                            out_emb=16, triplet_hidden=8, num_blocks=1, max_neighbors=12))
    folder = save_model(net, tmp_path / "tiny_bec", name="tiny_bec", description="test model").resolve()
    monkeypatch.setenv("ETGNN_PRETRAINED", str(tmp_path))
    monkeypatch.setenv("ETGNN_DEFAULT_MODEL", "tiny_bec")  # the page opens on it, not on a shipped model
    monkeypatch.setitem(phonons._CALCULATORS, ("sevenn", "cpu"), Springs())
    at = AppTest.from_file(str(ROOT / "app" / "streamlit_app.py"), default_timeout=180)
    at.session_state["etgnn_model"] = str(folder)
    at.session_state["etgnn_demo"] = "AlN_wurtzite.json"
    at.run()
    at.switch_page("views/spectra.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Spectra"
    at.button(key="spectra_go").click().run()
    assert not at.exception and not at.error, [e.value for e in at.exception] + [e.value for e in at.error]
    frames = [d.value for d in at.dataframe]
    eps = [f for f in frames if f.shape == (3, 3)]
    assert len(eps) == 3  # ε∞, ε_ionic, ε0
    np.testing.assert_allclose(eps[2].to_numpy(), eps[0].to_numpy() + eps[1].to_numpy(), atol=2e-3)
    shares = next(f for f in frames if "share of intensity" in f.columns)
    assert len(shares) == 4 and abs(shares["share of intensity"].sum() - 1) < 1e-3  # the brightest mode is shown
    assert any("optical modes, q → 0 (cm⁻¹)" in f.columns for f in frames)  # LO-TO table
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert "click a mode" in [t.get("name") for t in spec["data"]]
    assert "addArrow" in at.get("iframe")[0].proto.srcdoc
    captions = " ".join(c.value for c in at.caption)
    assert "phonons: **sevenn 7net-l3i5**" in captions and "tiny_bec" in captions
    # another mode from the widget: the view follows
    pick = at.selectbox(key="spectra_mode_pick")
    assert len(pick.options) == 9  # 4 atoms: 12 modes, 3 acoustic
    first = pick.value
    pick.set_value(11).run()
    assert not at.exception and at.selectbox(key="spectra_mode_pick").value == 11 != first
    assert "**Mode 11**" in " ".join(m.value for m in at.markdown)
    assert [b.label for b in at.get("download_button")] == ["Download spectrum CSV", "Download JSON"]
    # phonons from an uploaded phonopy file (the hand-made rock salt): its TO mode comes back
    at.selectbox(key="spectra_source").set_value("phonopy file (upload)").run()
    assert not at.exception and not at.error
    at.file_uploader(key="spectra_phonopy").set_value(("phonopy_params.yaml", phonopy_file.read_bytes(),
                                                       "application/octet-stream")).run()
    at.button(key="spectra_go").click().run()
    assert not at.exception and not at.error, [e.value for e in at.exception] + [e.value for e in at.error]
    assert "phonons: **phonopy file phonopy_params.yaml**" in " ".join(c.value for c in at.caption)
    to, _, _ = closed_form()
    assert f"{to:.1f}" in " ".join(m.value for m in at.markdown)
