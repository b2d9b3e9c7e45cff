"""Tests of etgnn_core.data: loaders of the reference sets (real files, small limits), upload loaders,
validation messages, splits, and the unit/index conventions stated in etgnn_core.keys."""

from __future__ import annotations

import io
import zipfile

import ase
import ase.io
import numpy as np
import pytest

from etgnn_core import keys
from etgnn_core.data import (
    DATASET_NAMES,
    DataError,
    Sample,
    data_root,
    ferroelectric_polarization,
    list_datasets,
    load_dataset,
    load_labelled_extxyz,
    load_matten_elasticity,
    load_phonon_becs,
    load_poscar_zip,
    load_split,
    matten_elasticity_split,
    parse_poscar,
    phonon_eps_ok,
    save_split,
    split_indices,
    validate_samples,
)
from etgnn_core.tensors.algebra import (
    full_rank3_to_voigt,
    full_rank4_to_voigt,
    voigt_rank3_to_full,
    voigt_rank4_to_full,
)

EXPECTED = {
    "perturbed/Al2O3": {keys.BORN_CHARGES, keys.DIELECTRIC},
    "perturbed/SiO2": {keys.BORN_CHARGES, keys.DIELECTRIC},
    "perturbed/HfO2": {keys.BORN_CHARGES, keys.DIELECTRIC},
    "perturbed/AlN": {keys.PIEZOELECTRIC},
    "perturbed/CdS": {keys.PIEZOELECTRIC},
    "perturbed/ZnO": {keys.PIEZOELECTRIC},
    "phonon_becs": {keys.BORN_CHARGES, keys.DIELECTRIC},
    "water_monomer": {keys.DIPOLE, keys.POLARIZABILITY, keys.ENERGY},
    "water_dimer": {keys.DIPOLE, keys.POLARIZABILITY, keys.ENERGY},
    "water_zundel": {keys.DIPOLE, keys.POLARIZABILITY, keys.ENERGY},
    "water_bulk": {keys.DIPOLE, keys.POLARIZABILITY, keys.DIELECTRIC},
    "ferroelectrics/BaTiO3": {keys.FORCES, keys.ENERGY, keys.BORN_CHARGES},
    "ferroelectrics/SiO2_quartz": {keys.FORCES, keys.ENERGY, keys.BORN_CHARGES},
    "abo3_piezo": {keys.BORN_CHARGES, keys.DIELECTRIC, keys.PIEZOELECTRIC, keys.ELASTIC, keys.ENERGY},
    "matten/elasticity": {keys.ELASTIC},
    "matten/si_nmr": {keys.SHIELDING},
    "mp/dielectric": {keys.DIELECTRIC},
    "mp/piezo": {keys.PIEZOELECTRIC},
    "mp/elastic": {keys.ELASTIC},
}
SHAPES = {
    keys.BORN_CHARGES: lambda n: (n, 3, 3),
    keys.FORCES: lambda n: (n, 3),
    keys.SHIELDING: lambda n: (n, 3, 3),
    keys.DIELECTRIC: lambda n: (3, 3),
    keys.POLARIZABILITY: lambda n: (3, 3),
    keys.DIPOLE: lambda n: (3,),
    keys.ENERGY: lambda n: (),
    keys.PIEZOELECTRIC: lambda n: (3, 3, 3),
    keys.ELASTIC: lambda n: (3, 3, 3, 3),
}


# ----------------------------------------------------------------------------- synthetic ETGNN layout

POSCAR_2 = """NaCl test
1.0
 4.0 0.0 0.0
 0.0 4.0 0.0
 0.0 0.0 4.0
Na Cl
1 1
Direct
0.0 0.0 0.0
0.5 0.5 0.5
"""


def _zip(members: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in members.items():
            zf.writestr(name, text)
    return buf.getvalue()


def _csv(rows: list[tuple[str, list[float]]]) -> bytes:
    return "\n".join(",".join([sid] + [repr(float(v)) for v in vals]) for sid, vals in rows).encode()


# ----------------------------------------------------------------------------- registry / infos


def test_list_datasets_names_units_and_conventions():
    infos = {i.name: i for i in list_datasets()}
    assert set(infos) == set(EXPECTED) == set(DATASET_NAMES)
    for name, info in infos.items():
        assert set(info.targets) == EXPECTED[name], name
        for t in info.targets:
            assert info.units.get(t), f"{name}: no unit for {t}"
        assert info.units.get("positions") == "Angstrom"
        assert len(info.conventions) > 50 and info.description and info.path
    assert "e*bohr" in infos["water_monomer"].units[keys.DIPOLE]
    assert "Hartree" in infos["water_dimer"].units[keys.ENERGY]
    assert infos["perturbed/AlN"].units[keys.PIEZOELECTRIC].startswith("C/m^2")
    assert infos["matten/elasticity"].units[keys.ELASTIC] == "GPa"
    assert infos["matten/si_nmr"].units[keys.SHIELDING] == "ppm"
    assert "[1, 50]" in infos["phonon_becs"].conventions


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_dataset_shapes_dtypes_units(root, name):
    samples, info = load_dataset(name, root=root, limit=4)
    assert len(samples) == 4
    assert info.path.startswith(str(root))
    for s in samples:
        assert isinstance(s, Sample) and isinstance(s.atoms, ase.Atoms)
        assert set(s.targets) == EXPECTED[name]
        n = len(s.atoms)
        for t, v in s.targets.items():
            assert isinstance(v, np.ndarray) and v.dtype == np.float64, (name, t)
            assert v.shape == SHAPES[t](n), (name, t, v.shape)
            assert t in info.units
        assert s.source and s.id != ""
    validate_samples(samples, info.targets)


def test_unknown_dataset_and_bad_root(root, tmp_path, monkeypatch):
    with pytest.raises(DataError, match="unknown data set 'nope'"):
        load_dataset("nope", root=root)
    with pytest.raises(DataError, match="not a directory"):
        data_root(tmp_path / "missing")
    monkeypatch.setenv("ETGNN_DATA", str(root))
    assert data_root() == root.resolve()
    monkeypatch.setenv("ETGNN_DATA", str(tmp_path / "missing"))
    with pytest.raises(DataError, match="ETGNN_DATA"):
        data_root()


# ----------------------------------------------------------------------------- perturbed sets


def test_full_hfo2_loads_complete(root):
    samples, _ = load_dataset("perturbed/HfO2", root=root)
    assert len(samples) == 8964  # the CSV is the index: 41 unlabelled POSCARs in the zip are skipped
    assert {len(s.atoms) for s in samples} == {3, 6}


@pytest.mark.parametrize("name", ["perturbed/Al2O3", "perturbed/SiO2", "perturbed/HfO2"])
def test_acoustic_sum_rule_in_perturbed_bec_labels(root, name):
    samples, _ = load_dataset(name, root=root, limit=300)
    asr = np.array([np.abs(s.targets[keys.BORN_CHARGES].sum(axis=0)).max() for s in samples])
    assert asr.max() < 1e-6, asr.max()
    # and the sum is not trivially zero per atom: charges are large
    assert min(np.abs(s.targets[keys.BORN_CHARGES]).max() for s in samples) > 1.0


def test_perturbed_piezo_reading_is_symmetric_in_strain_pair(root):
    # e[i, j, k] = v[9i + 3j + k] must be symmetric in (j, k); the other readings are not.
    for name in ("perturbed/AlN", "perturbed/ZnO"):
        samples, _ = load_dataset(name, root=root, limit=50)
        e = np.array([s.targets[keys.PIEZOELECTRIC] for s in samples])
        jk = np.abs(e - e.transpose(0, 1, 3, 2)).max()
        assert jk < 1e-3
        assert np.abs(e - e.transpose(0, 2, 1, 3)).max() > 20 * max(jk, 1e-4)  # (i, j) is not symmetric
        assert np.abs(e).max() < 2.0  # clamped-ion magnitudes, C/m^2


def test_poscar_parser_matches_ase(root):
    for folder in ("Al2O3", "HfO2", "AlN", "SiO2"):
        zpath = next((root / "etgnn_perturbed" / folder).glob("*.zip"))
        with zipfile.ZipFile(zpath) as zf:
            members = [m for m in zf.namelist() if m.endswith(".vasp")]
            for m in members[:3] + members[-3:]:
                text = zf.read(m).decode()
                ours = parse_poscar(text, m)
                ref = ase.io.read(io.StringIO(text), format="vasp")
                assert ours.get_chemical_symbols() == ref.get_chemical_symbols(), m
                np.testing.assert_allclose(ours.cell[:], ref.cell[:], atol=1e-10)
                np.testing.assert_allclose(ours.positions, ref.positions, atol=1e-8)
                assert ours.pbc.all()


def test_parse_poscar_cartesian_selective_and_negative_scale():
    text = """x
-64.0
 1 0 0
 0 1 0
 0 0 1
Si
2
Selective dynamics
Cartesian
0 0 0 T T T
0.25 0.25 0.25 F F F
"""
    a = parse_poscar(text)
    ref = ase.io.read(io.StringIO(text), format="vasp")
    np.testing.assert_allclose(a.cell[:], np.eye(3) * 4.0)
    np.testing.assert_allclose(a.positions, ref.positions, atol=1e-10)
    with pytest.raises(DataError, match="bad.vasp: malformed POSCAR"):
        parse_poscar(POSCAR_2.replace("1 1\n", "1 x\n"), "bad.vasp")


# ----------------------------------------------------------------------------- BEC convention


def test_bec_row_major_reading_documented():
    """9 numbers per atom are read row-major: values[9a + 3i + j] -> Z[a, i, j] (row i = field)."""
    vals = list(range(18))
    samples = load_poscar_zip(
        _zip({"set/s1.vasp": POSCAR_2, "set/unlabelled.vasp": POSCAR_2}),
        {"id_prop_Born.csv": _csv([("s1", vals)]), "id_prop_dielectric.csv": _csv([("s1", range(9))])},
        name="t.zip",
    )
    assert [s.id for s in samples] == ["s1"]  # the CSV is the index
    z = samples[0].targets[keys.BORN_CHARGES]
    for a in range(2):
        for i in range(3):
            for j in range(3):
                assert z[a, i, j] == vals[9 * a + 3 * i + j]
    assert z[0, 0, 1] == 1 and z[0, 1, 0] == 3  # not the transpose
    np.testing.assert_array_equal(samples[0].targets[keys.DIELECTRIC], np.arange(9.0).reshape(3, 3))
    assert samples[0].source == "t.zip::set/s1.vasp"


def test_bec_convention_row_is_polarization_on_quartz_md(root):
    """Physical check on real labels: between nearby MD frames, dP_i ~ sum_a Z[a, i, j] du_{a, j}
    (polarization in e*A). The row-major reading fits several times better than its transpose."""
    samples, _ = load_dataset("ferroelectrics/SiO2_quartz", root=root, limit=60)
    pol = ferroelectric_polarization("ferroelectrics/SiO2_quartz", root=root, limit=60)
    err_row, err_col = [], []
    for k in range(len(samples) - 1):
        a, b = samples[k].atoms, samples[k + 1].atoms
        frac = np.linalg.solve(a.cell[:].T, (b.positions - a.positions).T).T
        du = (frac - np.round(frac)) @ a.cell[:]
        z = 0.5 * (samples[k].targets[keys.BORN_CHARGES] + samples[k + 1].targets[keys.BORN_CHARGES])
        dp = pol[k + 1] - pol[k]
        err_row.append(np.abs(dp - np.einsum("aij,aj->i", z, du)))
        err_col.append(np.abs(dp - np.einsum("aji,aj->i", z, du)))
    assert np.median(err_row) * 3 < np.median(err_col), (np.median(err_row), np.median(err_col))


# ----------------------------------------------------------------------------- other sets


def test_phonon_becs_filter(root):
    samples, info = load_phonon_becs(root=root)
    assert info.extra["n_dropped"] > 0
    assert info.extra["n_dropped"] + len(samples) == info.extra["n_total"] == 1368
    assert f"{info.extra['n_dropped']} of 1368" in info.description
    for s in samples:
        eps = s.targets[keys.DIELECTRIC]
        ev = np.linalg.eigvalsh(0.5 * (eps + eps.T))
        assert 1.0 <= ev[0] and ev[-1] <= 50.0, s.id
    dropped_ids = {d["id"] for d in info.extra["dropped"]}
    assert dropped_ids.isdisjoint(s.id for s in samples)
    assert not phonon_eps_ok(np.diag([2.0, 2.0, 110.0])) and not phonon_eps_ok(np.diag([0.5, 2, 2]))
    assert phonon_eps_ok(np.diag([2.0, 3.0, 4.0]))


def test_water_molecules_non_periodic_bulk_periodic(root):
    for name in ("water_monomer", "water_dimer", "water_zundel"):
        samples, _ = load_dataset(name, root=root, limit=3)
        for s in samples:
            assert not s.atoms.pbc.any() and not s.atoms.cell.any(), name
    bulk, _ = load_dataset("water_bulk", root=root, limit=2)
    assert bulk[0].atoms.pbc.all() and len(bulk[0].atoms) == 96 and bulk[0].atoms.get_volume() > 800


def test_water_bulk_alpha_is_clausius_mossotti_of_epsilon(root):
    """Documents the surprising content of water_bulk 'alpha' stated in its DatasetInfo."""
    samples, _ = load_dataset("water_bulk", root=root, limit=5)
    bohr = 0.529177210903
    for s in samples:
        eps = s.targets[keys.DIELECTRIC]
        v = s.atoms.get_volume() / bohr**3
        cm = v / 32 * (eps - np.eye(3)) @ np.linalg.inv(eps + 2 * np.eye(3))
        np.testing.assert_allclose(np.diag(cm), np.diag(s.targets[keys.POLARIZABILITY]), rtol=1e-6)


def test_abo3_voigt_conversion_on_data(root):
    import ase.db

    samples, info = load_dataset("abo3_piezo", root=root, limit=3)
    row = next(ase.db.connect(str(root / "abo3_piezo/ABO3_P4mm_piezo.db")).select(limit=1))
    ev = np.asarray(row.data["Static Piezoelectric Tensor"])
    e = samples[0].targets[keys.PIEZOELECTRIC]
    assert e[0, 0, 2] == e[0, 2, 0] == ev[0, 4]  # e15: x polarization, xz strain, no factor
    assert e[1, 1, 2] == ev[1, 3] and e[2, 0, 0] == ev[2, 0] and e[2, 2, 2] == ev[2, 2]
    c = samples[0].targets[keys.ELASTIC]
    cv = np.asarray(row.data["Elastic Stiffness Tensor Cij"])
    assert c[1, 2, 1, 2] == c[2, 1, 1, 2] == cv[3, 3] and c[0, 1, 0, 1] == cv[5, 5]
    assert 50 < c[0, 0, 0, 0] < 1000  # GPa
    np.testing.assert_allclose(
        samples[0].targets[keys.DIELECTRIC], np.asarray(row.data["Static Dielectric Tensor"])
    )
    assert "elastic_not_positive_definite" in info.extra


def test_voigt_roundtrip_and_matten_full_tensor(root):
    rng = np.random.default_rng(1)
    ev = rng.normal(size=(3, 6))
    np.testing.assert_array_equal(full_rank3_to_voigt(voigt_rank3_to_full(ev)), ev)
    cv = rng.normal(size=(6, 6))
    cv = cv + cv.T
    c = voigt_rank4_to_full(cv)
    np.testing.assert_array_equal(full_rank4_to_voigt(c), cv)
    for perm in ((1, 0, 2, 3), (0, 1, 3, 2), (2, 3, 0, 1)):
        np.testing.assert_array_equal(c, c.transpose(perm))
    samples, info = load_matten_elasticity(root=root, limit=10)
    import json

    raw = json.loads((root / "matten/elasticity_n100.json").read_text())
    for s in samples:
        np.testing.assert_allclose(voigt_rank4_to_full(raw["elastic_tensor_voigt"][s.id]), s.targets[keys.ELASTIC])
    split = matten_elasticity_split(root=root)
    allidx = np.concatenate(list(split.values()))
    assert sorted(allidx.tolist()) == list(range(100))
    assert set(info.extra["split"]) == {s.id for s in samples}


def test_matten_nmr_masks(root):
    samples, _ = load_dataset("matten/si_nmr", root=root, limit=20)
    for s in samples:
        m = s.masks[keys.SHIELDING]
        sh = s.targets[keys.SHIELDING]
        assert m.dtype == bool and m.shape == (len(s.atoms),) and 0 < m.sum() < len(s.atoms)
        assert set(s.atoms.numbers[m]) == {14}  # 29Si only
        assert np.all(sh[~m] == 0) and np.all(np.abs(np.trace(sh[m], axis1=1, axis2=2)) > 100)
    asym = max(np.abs(sh - sh.transpose(0, 2, 1)).max() for sh in (s.targets[keys.SHIELDING] for s in samples))
    assert asym > 0.1  # not symmetric, stored as is


# ----------------------------------------------------------------------------- splits


def test_split_disjoint_covering_reproducible_seeded(tmp_path):
    s = split_indices(101, seed=3)
    assert set(s) == {"train", "val", "test"}
    parts = [set(v.tolist()) for v in s.values()]
    assert sum(len(p) for p in parts) == 101 and set().union(*parts) == set(range(101))
    assert len(s["val"]) == 10 and len(s["test"]) == 10
    again = split_indices(101, seed=3)
    assert all(np.array_equal(s[k], again[k]) for k in s)
    other = split_indices(101, seed=4)
    assert not np.array_equal(s["test"], other["test"])
    save_split(tmp_path / "split.json", s)
    back = load_split(tmp_path / "split.json")
    assert all(np.array_equal(s[k], back[k]) and back[k].dtype == np.int64 for k in s)
    (tmp_path / "bad.json").write_text('{"train": [0, 1, 2], "test": [2, 3]}')
    with pytest.raises(DataError, match="index 2 is in both 'train' and 'test'"):
        load_split(tmp_path / "bad.json")
    with pytest.raises(DataError, match="fractions"):
        split_indices(10, fractions=(0.5, 0.1, 0.1))


# ----------------------------------------------------------------------------- error messages


def test_csv_wrong_count_names_file_line_and_id():
    good = list(range(18))
    with pytest.raises(DataError) as exc:
        load_poscar_zip(
            _zip({"p/a.vasp": POSCAR_2, "p/b.vasp": POSCAR_2}),
            {"id_prop_born.csv": _csv([("a", good), ("b", good[:17])])},
            name="up.zip",
        )
    msg = str(exc.value)
    assert "id_prop_born.csv" in msg and "line 2" in msg and "'b'" in msg and "expected 18" in msg
    with pytest.raises(DataError, match=r"id_prop_piezoelectric.csv, line 1 \(id 'zz'\): no POSCAR zz.vasp"):
        load_poscar_zip(_zip({"p/a.vasp": POSCAR_2}), {"id_prop_piezoelectric.csv": _csv([("zz", range(27))])})
    with pytest.raises(DataError, match="cannot tell the target"):
        load_poscar_zip(_zip({"p/a.vasp": POSCAR_2}), {"labels.csv": _csv([("a", range(9))])})


def _becs_frames(n_frames=3):
    frames = []
    rng = np.random.default_rng(0)
    for f in range(n_frames):
        a = ase.Atoms("NaCl", positions=[[0, 0, 0], [2.0 + 0.1 * f, 2, 2]], cell=np.eye(3) * 4, pbc=True)
        z = rng.normal(size=(2, 3, 3))
        z[1] = -z[0]
        a.arrays["becs"] = z.reshape(2, 9)
        a.info["eps"] = (np.eye(3) * 3 + 0.1 * rng.normal(size=(3, 3))).reshape(9)
        frames.append(a)
    return frames


def test_load_labelled_extxyz_roundtrip(tmp_path):
    frames = _becs_frames()
    path = tmp_path / "up.xyz"
    ase.io.write(path, frames, format="extxyz")
    samples = load_labelled_extxyz(path)
    assert len(samples) == 3 and [s.id for s in samples] == ["0", "1", "2"]
    for s, a in zip(samples, frames):
        assert set(s.targets) == {keys.BORN_CHARGES, keys.DIELECTRIC}
        np.testing.assert_allclose(s.targets[keys.BORN_CHARGES], a.arrays["becs"].reshape(2, 3, 3), atol=1e-9)
        assert s.targets[keys.BORN_CHARGES][0, 0, 1] == pytest.approx(a.arrays["becs"][0, 1])
        np.testing.assert_allclose(s.targets[keys.DIELECTRIC], a.info["eps"].reshape(3, 3), atol=1e-9)
        np.testing.assert_allclose(s.atoms.positions, a.positions)
        assert s.atoms.pbc.all()
    # bytes input, forces/energy (ase moves them into a calculator), molecule without a cell
    from ase.calculators.singlepoint import SinglePointCalculator

    m = ase.Atoms("H2O", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    m.calc = SinglePointCalculator(m, energy=-14.2, forces=np.ones((3, 3)))
    m.info["mu"] = [0.1, 0.2, 0.3]
    buf = io.StringIO()
    ase.io.write(buf, m, format="extxyz")
    (s,) = load_labelled_extxyz(buf.getvalue().encode(), name="mol.xyz")
    assert set(s.targets) == {keys.ENERGY, keys.FORCES, keys.DIPOLE}
    assert s.targets[keys.ENERGY].shape == () and float(s.targets[keys.ENERGY]) == -14.2
    assert not s.atoms.pbc.any() and not s.atoms.cell.any() and s.source == "mol.xyz"


def test_extxyz_missing_key_names_frame(tmp_path):
    frames = _becs_frames(4)
    del frames[2].info["eps"]
    path = tmp_path / "up.xyz"
    ase.io.write(path, frames, format="extxyz")
    with pytest.raises(DataError) as exc:
        load_labelled_extxyz(path)
    msg = str(exc.value)
    assert "up.xyz" in msg and "frame 2" in msg and "'eps'" in msg and "missing" in msg
    frames = _becs_frames(2)
    frames[1].arrays["becs"] = frames[1].arrays["becs"][:, :6].copy()
    buf = io.StringIO()
    ase.io.write(buf, frames, format="extxyz")
    with pytest.raises(DataError, match=r"frame 1, key 'becs': expected 18 numbers"):
        load_labelled_extxyz(buf.getvalue().encode(), name="u.xyz")
    with pytest.raises(DataError, match="no label found"):
        buf = io.StringIO()
        ase.io.write(buf, ase.Atoms("H2", positions=[[0, 0, 0], [0.7, 0, 0]]), format="extxyz")
        load_labelled_extxyz(buf.getvalue().encode())


def test_nan_label_is_an_error(tmp_path):
    frames = _becs_frames(3)
    frames[1].arrays["becs"][1, 4] = np.nan
    path = tmp_path / "nan.xyz"
    ase.io.write(path, frames, format="extxyz")
    with pytest.raises(DataError, match=r"nan.xyz, frame 1, key 'becs': non-finite value .* index \(1, 1, 1\)"):
        load_labelled_extxyz(path)
    s = Sample(atoms=ase.Atoms("H"), targets={keys.DIPOLE: np.array([0.0, np.nan, 0.0])}, source="f.xyz", id="7")
    with pytest.raises(DataError, match=r"f.xyz, sample id '7', key 'dipole': non-finite"):
        validate_samples([s], [keys.DIPOLE])


def test_validate_empty_missing_shape_and_absurd_magnitude(root):
    with pytest.raises(DataError, match="empty data set"):
        validate_samples([], [keys.BORN_CHARGES])
    samples, _ = load_dataset("perturbed/SiO2", root=root, limit=3)
    validate_samples(samples, [keys.BORN_CHARGES, keys.DIELECTRIC])
    with pytest.raises(DataError, match=r"sample id 'SiO2_1', key 'piezoelectric': missing label"):
        validate_samples(samples, [keys.PIEZOELECTRIC])
    bad = Sample(atoms=samples[1].atoms, targets=dict(samples[1].targets), source="x.zip::b.vasp", id="b")
    bad.targets[keys.BORN_CHARGES] = bad.targets[keys.BORN_CHARGES] * 100.0  # e.g. mixed units
    with pytest.raises(DataError) as exc:
        validate_samples([samples[0], bad], [keys.BORN_CHARGES])
    msg = str(exc.value)
    assert "x.zip::b.vasp" in msg and "'b'" in msg and "born_charges" in msg and "50" in msg
    bad.targets[keys.BORN_CHARGES] = np.zeros((5, 3, 3))
    with pytest.raises(DataError, match=r"wrong shape \[5, 3, 3\], expected \[6, 3, 3\]"):
        validate_samples([bad], [keys.BORN_CHARGES])
    d = Sample(atoms=samples[0].atoms, targets={keys.DIELECTRIC: np.eye(3) * 5e3}, id="d")
    with pytest.raises(DataError, match="'dielectric'.*exceeds 1000"):
        validate_samples([d], keys.DIELECTRIC)
    p = Sample(atoms=samples[0].atoms, targets={keys.PIEZOELECTRIC: np.full((3, 3, 3), 2e3)}, id="p")
    with pytest.raises(DataError, match="'piezoelectric'.*exceeds 1000"):
        validate_samples([p], [keys.PIEZOELECTRIC])
