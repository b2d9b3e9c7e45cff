"""One loader per reference data set in ``shared/data``, each stating units and index conventions.

Every loader returns ``(samples, info)``; :func:`load_dataset` dispatches on the set name and
:func:`list_datasets` describes all sets without reading any file.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path

import ase
import numpy as np

from .. import keys
from ..tensors.algebra import principal_values, softest_voigt_eigenvalue, voigt_rank3_to_full, voigt_rank4_to_full
from .extxyz import frame_targets, molecule_or_crystal, plain_atoms, read_frames_file
from .poscar import load_poscar_zip
from .sample import DataError, DatasetInfo, Sample

ENV_VAR = "ETGNN_DATA"

# --------------------------------------------------------------------------- data root


def data_root(root=None) -> Path | None:
    """Folder holding the reference data, or None if there is none (the app then runs without it).

    Order: the ``root`` argument, then ``$ETGNN_DATA``, then the first existing ``shared/data``
    found walking up from the current directory and from this package's folder (so
    ``/work/main/../shared/data`` is found from ``/work/main``).  An explicit ``root`` or
    ``$ETGNN_DATA`` that is not a directory is a DataError rather than a silent fallback.
    """
    if root is not None:
        p = Path(root).expanduser()
        if not p.is_dir():
            raise DataError(f"data root {p} is not a directory")
        return p.resolve()
    env = os.environ.get(ENV_VAR)
    if env:
        p = Path(env).expanduser()
        if not p.is_dir():
            raise DataError(f"${ENV_VAR}={env} is not a directory")
        return p.resolve()
    for start in (Path.cwd(), Path(__file__).resolve().parent):
        for d in (start, *start.parents):
            cand = d / "shared" / "data"
            if cand.is_dir():
                return cand.resolve()
    return None


def _root(root) -> Path:
    r = data_root(root)
    if r is None:
        raise DataError(f"no data root: pass root=, set ${ENV_VAR}, or place the data in ../shared/data")
    return r


def _file(root: Path, rel: str) -> Path:
    p = root / rel
    if not p.exists():
        raise DataError(f"{p}: not found (data root {root})")
    return p


def _limit(limit) -> int | None:
    if limit is None:
        return None
    limit = int(limit)
    if limit < 0:
        raise DataError(f"limit must be >= 0, got {limit}")
    return limit


def _frames(root, rel: str, limit) -> tuple[Path, list]:
    """(path, its first ``limit`` frames; all when None) of a frames file under the data root."""
    path = _file(_root(root), rel)
    lim = _limit(limit)
    return path, (read_frames_file(path, ":" if lim is None else f":{lim}") if lim != 0 else [])


# --------------------------------------------------------------------------- shared text

BEC_CONVENTION = (
    "born_charges[a, i, j] (e): row i = electric-field / polarization direction, column j = "
    "displacement direction of atom a (VASP OUTCAR / phonopy BORN convention); 9 numbers per atom "
    "are read row-major, Z[a, i, j] = v[9a + 3i + j], atoms in file order."
)
PIEZO_CONVENTION = (
    "piezoelectric[i, j, k] = e_ijk (C/m^2): i = polarization direction, (j, k) = strain pair "
    "(symmetric); 27 numbers are read as e[i, j, k] = v[9i + 3j + k]."
)
ELASTIC_CONVENTION = (
    "elastic[i, j, k, l] = C_ijkl (GPa), full rank-4 with Voigt symmetries; from Voigt C_IJ with "
    "C_ijkl = C_IJ, I = Voigt(i, j), Voigt order 11, 22, 33, 23, 13, 12."
)
POS = {"positions": "Angstrom", "cell": "Angstrom (rows = lattice vectors)"}

# --------------------------------------------------------------------------- ETGNN perturbed sets

PERTURBED = {
    "Al2O3": (keys.BORN_CHARGES, keys.DIELECTRIC),
    "SiO2": (keys.BORN_CHARGES, keys.DIELECTRIC),
    "HfO2": (keys.BORN_CHARGES, keys.DIELECTRIC),
    "AlN": (keys.PIEZOELECTRIC,),
    "CdS": (keys.PIEZOELECTRIC,),
    "ZnO": (keys.PIEZOELECTRIC,),
}


def _perturbed_info(material: str) -> DatasetInfo:
    targets = PERTURBED[material]
    units = dict(POS)
    conv = []
    if keys.BORN_CHARGES in targets:
        units[keys.BORN_CHARGES] = "e"
        units[keys.DIELECTRIC] = "dimensionless (electronic, clamped-ion eps_inf)"
        conv += [BEC_CONVENTION, "dielectric[i, j]: 3x3 row-major, electronic (high-frequency)."]
    else:
        units[keys.PIEZOELECTRIC] = "C/m^2 (clamped-ion / electronic part, as in the ETGNN paper)"
        conv.append(PIEZO_CONVENTION)
    conv.append(
        "Randomly perturbed primitive cells, DFPT labels; zip of <id>.vasp POSCARs + headerless "
        "id_prop_*.csv (the CSV is the index; unlabelled POSCARs are skipped). Sample order = CSV "
        "order. The acoustic sum rule holds in the BEC labels to ~1e-7."
    )
    return DatasetInfo(
        name=f"perturbed/{material}",
        description=f"ETGNN paper: perturbed {material} cells with DFPT {', '.join(targets)} labels.",
        units=units,
        conventions=" ".join(conv),
        path=f"etgnn_perturbed/{material}",
        targets=targets,
    )


def load_perturbed(material: str, root=None, limit=None) -> tuple[list[Sample], DatasetInfo]:
    """ETGNN perturbed set ``material`` (Al2O3, SiO2, HfO2: born_charges [n,3,3] e + dielectric [3,3];
    AlN, CdS, ZnO: piezoelectric [3,3,3] C/m^2, clamped-ion).  Conventions: see DatasetInfo."""
    if material not in PERTURBED:
        raise DataError(f"unknown perturbed material {material!r}; known: {', '.join(PERTURBED)}")
    info = _perturbed_info(material)
    folder = _file(_root(root), info.path)
    zips = sorted(folder.glob("*.zip"))
    csvs = sorted(folder.glob("id_prop_*.csv"))
    if len(zips) != 1 or not csvs:
        raise DataError(f"{folder}: expected one .zip and id_prop_*.csv files, found {zips + csvs}")
    samples = load_poscar_zip(zips[0], {c.name: c for c in csvs}, name=str(zips[0]), limit=_limit(limit))
    return samples, info


# --------------------------------------------------------------------------- phonon BEC + eps

EPS_MIN, EPS_MAX = 1.0, 50.0
PHONON_RULE = (
    f"Filter: a crystal is dropped when an eigenvalue of the symmetric part (eps + eps^T)/2 of its "
    f"electronic dielectric tensor lies outside [{EPS_MIN:g}, {EPS_MAX:g}], or when eps is not "
    f"symmetric to 1e-3. eps_inf < 1 is unphysical; > 50 signals a (semi)metal or near-zero-gap DFT "
    f"artefact (the largest measured eps_inf of real semiconductors is ~33, PbTe)."
)


def phonon_eps_ok(eps: np.ndarray, eps_min: float = EPS_MIN, eps_max: float = EPS_MAX) -> bool:
    """The phonon_becs filter rule (see ``PHONON_RULE``) for one 3x3 electronic dielectric tensor."""
    eps = np.asarray(eps, dtype=np.float64)
    if not np.all(np.isfinite(eps)) or np.abs(eps - eps.T).max() > 1e-3:
        return False
    ev = principal_values(eps)
    return bool(ev[0] >= eps_min and ev[-1] <= eps_max)


def _phonon_info() -> DatasetInfo:
    return DatasetInfo(
        name="phonon_becs",
        description=(
            "e3nn-models phonon set: 1,368 relaxed crystals, 64 elements, DFPT BEC and electronic "
            "dielectric tensor (closest offline stand-in for the paper's JARVIS experiment)."
        ),
        units={**POS, keys.BORN_CHARGES: "e", keys.DIELECTRIC: "dimensionless (electronic eps_inf)"},
        conventions=(
            f"{BEC_CONVENTION} (per-atom array 'becs'; the source does not state the row/column "
            f"meaning, read like the rest of the project). dielectric[i, j] from info 'eps', 9 numbers "
            f"row-major. Sample id = 0-based frame index in the file. {PHONON_RULE}"
        ),
        path="phonon_becs_epsilon.xyz",
        targets=(keys.BORN_CHARGES, keys.DIELECTRIC),
    )


def load_phonon_becs(root=None, limit=None, eps_min=EPS_MIN, eps_max=EPS_MAX):
    """phonon_becs_epsilon.xyz: born_charges [n,3,3] (e, from 'becs'), dielectric [3,3] (electronic,
    from 'eps'), crystals with unphysical eps dropped (rule in ``PHONON_RULE``; count in
    ``info.extra['n_dropped']``, their frame indices in ``info.extra['dropped']``)."""
    info = _phonon_info()
    path = _file(_root(root), info.path)
    frames = read_frames_file(path)
    mapping = {keys.BORN_CHARGES: "becs", keys.DIELECTRIC: "eps"}
    samples, dropped = [], []
    for f, atoms in enumerate(frames):
        t = frame_targets(atoms, mapping, str(path), f"frame {f}")
        if not phonon_eps_ok(t[keys.DIELECTRIC], eps_min, eps_max):
            dropped.append({"id": str(f), "formula": atoms.get_chemical_formula(),
                            "eps_eigenvalues": np.linalg.eigvalsh(
                                0.5 * (t[keys.DIELECTRIC] + t[keys.DIELECTRIC].T)).round(2).tolist()})
            continue
        samples.append(Sample(atoms=plain_atoms(atoms), targets=t, source=str(path), id=str(f)))
    info.extra.update(n_total=len(frames), n_dropped=len(dropped), dropped=dropped)
    info.description += f" {len(dropped)} of {len(frames)} crystals dropped by the eps filter."
    lim = _limit(limit)
    return (samples if lim is None else samples[:lim]), info


# --------------------------------------------------------------------------- water (TENSOAP)

WATER_FILES = {
    "water_monomer": "water_clusters/water_monomer.xyz",
    "water_dimer": "water_clusters/water_dimer.xyz",
    "water_zundel": "water_clusters/water_zundel.xyz",
    "water_bulk": "water_clusters/water_bulk.xyz",
}


def _water_info(name: str) -> DatasetInfo:
    bulk = name == "water_bulk"
    units = {
        **POS,
        keys.DIPOLE: "e*bohr (atomic units)",
        keys.POLARIZABILITY: "bohr^3 (atomic units)",
    }
    if bulk:
        units[keys.DIELECTRIC] = "dimensionless"
        units[keys.DIPOLE] = "e*bohr (atomic units; cell dipole of a periodic box, defined up to a quantum)"
        units[keys.POLARIZABILITY] = (
            "atomic units; equals (V/32) (eps - 1)(eps + 2)^-1 with V the cell volume in bohr^3 "
            "(a Clausius-Mossotti transform of 'epsilon', not a cell polarizability)"
        )
        targets = (keys.DIPOLE, keys.POLARIZABILITY, keys.DIELECTRIC)
        conv = (
            "Periodic 32-molecule boxes (pbc True). dipole[i] from info 'mu'; polarizability[i, j] "
            "from 'alpha' and dielectric[i, j] from 'epsilon', 9 numbers row-major (both are very "
            "nearly but not exactly symmetric as published). No energy in this file."
        )
        desc = "TENSOAP bulk water: 1,000 periodic 32-molecule boxes with dipole, polarizability, epsilon."
    else:
        units[keys.ENERGY] = "Hartree (atomic units; total energy, not eV)"
        targets = (keys.DIPOLE, keys.POLARIZABILITY, keys.ENERGY)
        conv = (
            "Isolated molecules: the file has an all-zero Lattice (ase reads pbc True), the loader "
            "sets pbc all False and a zero cell. dipole[i] from info 'mu'; polarizability[i, j] from "
            "'alpha', 9 numbers row-major (symmetric); energy from 'potential'. The hyperpolarizability "
            "'beta' is not loaded."
        )
        desc = f"TENSOAP {name.split('_')[1]}: 1,000 configurations with dipole, polarizability, energy."
    return DatasetInfo(name=name, description=desc, units=units, conventions=conv,
                       path=WATER_FILES[name], targets=targets)


def load_water(name: str, root=None, limit=None) -> tuple[list[Sample], DatasetInfo]:
    """TENSOAP water sets in atomic units: dipole [3] e*bohr ('mu'), polarizability [3,3] ('alpha'),
    energy () Hartree ('potential', clusters only), dielectric [3,3] ('epsilon', bulk only).
    Clusters are molecules (pbc False, zero cell); bulk boxes are periodic."""
    if name not in WATER_FILES:
        raise DataError(f"unknown water set {name!r}; known: {', '.join(WATER_FILES)}")
    info = _water_info(name)
    path, frames = _frames(root, info.path, limit)
    mapping = {keys.DIPOLE: "mu", keys.POLARIZABILITY: "alpha"}
    if name == "water_bulk":
        mapping[keys.DIELECTRIC] = "epsilon"
    else:
        mapping[keys.ENERGY] = "potential"
    samples = []
    for f, atoms in enumerate(frames):
        t = frame_targets(atoms, mapping, str(path), f"frame {f}")
        samples.append(Sample(atoms=molecule_or_crystal(plain_atoms(atoms)), targets=t,
                              source=str(path), id=str(f)))
    return samples, info


# --------------------------------------------------------------------------- ferroelectrics (Allegro-pol)

FERRO_FILES = {
    "ferroelectrics/BaTiO3": "ferroelectrics/BaTiO3.xyz",
    "ferroelectrics/SiO2_quartz": "ferroelectrics/SiO2_quartz_md.xyz",
}


def _ferro_info(name: str) -> DatasetInfo:
    what = "BaTiO3, 59 frames of 135 atoms" if name.endswith("BaTiO3") else (
        "alpha-quartz SiO2 MD at 300 K and 600 K, 201 frames of 72 atoms")
    return DatasetInfo(
        name=name,
        description=f"Allegro-pol study: {what}; forces, energy and BEC in cells larger than training cells.",
        units={**POS, keys.FORCES: "eV/Angstrom", keys.ENERGY: "eV (total energy)", keys.BORN_CHARGES: "e"},
        conventions=(
            f"{BEC_CONVENTION} (per-atom array 'born_charge'). forces[a, j] from 'forces'; energy from "
            "info 'total_energy'. The row-major reading is checked on the data: finite differences of "
            "the per-frame 'polarization' (e*A) between MD frames follow dP_i = sum_a Z[a, i, j] du_{a, j} "
            "several times better than with the transpose. 'polarization', 'polarizability' and "
            "'stress' are in the file but not loaded (no matching target / unit not stated)."
        ),
        path=FERRO_FILES[name],
        targets=(keys.FORCES, keys.ENERGY, keys.BORN_CHARGES),
    )


def load_ferroelectric(name: str, root=None, limit=None) -> tuple[list[Sample], DatasetInfo]:
    """Allegro-pol frames: forces [n,3] eV/A, energy () eV ('total_energy'), born_charges [n,3,3] e
    ('born_charge', 9 per atom row-major)."""
    if name not in FERRO_FILES:
        raise DataError(f"unknown ferroelectric set {name!r}; known: {', '.join(FERRO_FILES)}")
    info = _ferro_info(name)
    path, frames = _frames(root, info.path, limit)
    mapping = {keys.FORCES: "forces", keys.ENERGY: "total_energy", keys.BORN_CHARGES: "born_charge"}
    samples = [
        Sample(atoms=plain_atoms(a), targets=frame_targets(a, mapping, str(path), f"frame {f}"),
               source=str(path), id=str(f))
        for f, a in enumerate(frames)
    ]
    return samples, info


def ferroelectric_polarization(name: str, root=None, limit=None) -> np.ndarray:
    """Per-frame 'polarization' [n_frames, 3] of a ferroelectrics set (e*Angstrom per cell, folded into
    one branch of the polarization lattice; use differences between nearby frames)."""
    path, frames = _frames(root, _ferro_info(name).path, limit)
    out = []
    for f, a in enumerate(frames):
        res = getattr(a.calc, "results", {}) if a.calc is not None else {}
        p = res.get("polarization", a.info.get("polarization"))
        if p is None:
            raise DataError(f"{path}, frame {f}, key 'polarization': missing")
        out.append(np.asarray(p, dtype=np.float64).reshape(3))
    return np.array(out).reshape(-1, 3)


# --------------------------------------------------------------------------- ABO3 piezo (ase.db)

ABO3_KEYS = {
    "born": "Born Effective Charge Tensor",
    "eps_electronic": "Static Dielectric Tensor",
    "piezo_electronic": "Static Piezoelectric Tensor",
    "piezo_total": "Piezoelectric Stress Tensor eij",
    "elastic_total": "Elastic Stiffness Tensor Cij",
    "energy": "Total Energy",
}


def _abo3_info(piezo: str = "electronic") -> DatasetInfo:
    pz = ABO3_KEYS["piezo_electronic"] if piezo == "electronic" else ABO3_KEYS["piezo_total"]
    return DatasetInfo(
        name="abo3_piezo",
        description="176 DFPT-relaxed tetragonal (P4mm) ABO3 perovskites (152 with 5 atoms, 24 with 10).",
        units={
            **POS,
            keys.BORN_CHARGES: "e",
            keys.DIELECTRIC: "dimensionless (electronic eps_inf)",
            keys.PIEZOELECTRIC: f"C/m^2 ({piezo} part)",
            keys.ELASTIC: "GPa (relaxed-ion, total)",
            keys.ENERGY: "eV (VASP total energy of the cell)",
        },
        conventions=(
            f"{BEC_CONVENTION} From row.data['{ABO3_KEYS['born']}'] [n,3,3] as stored (pymatgen/VASP). "
            f"dielectric = row.data['{ABO3_KEYS['eps_electronic']}'] (VASP's ion-clamped 'static' = "
            f"electronic eps_inf; 'Dielectric Tensor' = electronic + ionic total is not loaded). "
            f"piezoelectric = voigt_rank3_to_full(row.data['{pz}']) with e_ijk = e_iJ, J = Voigt(j, k), no "
            f"factor 2 (stress coefficients). {PIEZO_CONVENTION} Default is the electronic (clamped-ion) "
            f"part, the same quantity as the ETGNN perturbed piezo sets; load_abo3_piezo(piezo='total') "
            f"gives the relaxed-ion total '{ABO3_KEYS['piezo_total']}' (up to ~120 C/m^2 near lattice "
            f"instabilities). elastic = voigt_rank4_to_full(row.data['{ABO3_KEYS['elastic_total']}']), "
            f"relaxed-ion; {ELASTIC_CONVENTION} Voigt order checked on the data (P4mm: C44 = C55, "
            f"e15 in column 13 of row x). Units checked: d = e S reproduces the stored d_ij in pC/N "
            f"with e in C/m^2 and S in 1/GPa. energy = row.data['Total Energy']. Sample id = "
            f"ABO3_formula. Several elastic tensors are not positive definite (mechanically unstable "
            f"P4mm phases; count in info.extra) and a few electronic eps reach ~290 (small-gap "
            f"compounds); they are kept."
        ),
        path="abo3_piezo/ABO3_P4mm_piezo.db",
        targets=(keys.BORN_CHARGES, keys.DIELECTRIC, keys.PIEZOELECTRIC, keys.ELASTIC, keys.ENERGY),
    )


def load_abo3_piezo(root=None, limit=None, piezo: str = "electronic") -> tuple[list[Sample], DatasetInfo]:
    """ABO3 P4mm perovskites: born_charges [n,3,3] e, dielectric [3,3] (electronic), piezoelectric
    [3,3,3] C/m^2 (``piezo='electronic'`` clamped-ion, default, or ``'total'``), elastic [3,3,3,3] GPa
    (relaxed-ion), energy () eV."""
    import ase.db

    if piezo not in ("electronic", "total"):
        raise DataError(f"piezo must be 'electronic' or 'total', got {piezo!r}")
    info = _abo3_info(piezo)
    path = _file(_root(root), info.path)
    lim = _limit(limit)
    samples, not_pd = [], []
    db = ase.db.connect(str(path), type="db")
    for row in db.select(limit=lim if lim else None) if lim != 0 else []:
        sid = str(row.get("ABO3_formula", row.id))
        src = f"{path}::row {row.id}"
        data = row.data
        missing = [v for v in ABO3_KEYS.values() if v not in data]
        if missing:
            raise DataError(f"{src} (id {sid!r}), key {missing[0]!r}: missing in row.data")
        atoms = row.toatoms()
        n = len(atoms)
        try:
            t = {
                keys.BORN_CHARGES: np.asarray(data[ABO3_KEYS["born"]], dtype=np.float64).reshape(n, 3, 3),
                keys.DIELECTRIC: np.asarray(data[ABO3_KEYS["eps_electronic"]], dtype=np.float64).reshape(3, 3),
                keys.PIEZOELECTRIC: voigt_rank3_to_full(data[ABO3_KEYS[f"piezo_{piezo}"]]),
                keys.ELASTIC: voigt_rank4_to_full(data[ABO3_KEYS["elastic_total"]]),
                keys.ENERGY: np.asarray(float(data[ABO3_KEYS["energy"]]), dtype=np.float64),
            }
        except ValueError as exc:
            raise DataError(f"{src} (id {sid!r}): unexpected tensor shape ({exc})") from None
        if softest_voigt_eigenvalue(data[ABO3_KEYS["elastic_total"]]) <= 0:
            not_pd.append(sid)
        samples.append(Sample(atoms=plain_atoms(atoms), targets=t, source=src, id=sid))
    info.extra.update(elastic_not_positive_definite=not_pd)
    return samples, info


# --------------------------------------------------------------------------- matten (elasticity, NMR)


def _structure_to_atoms(d: dict, src: str) -> ase.Atoms:
    from pymatgen.core import Structure
    from pymatgen.io.ase import AseAtomsAdaptor

    try:
        a = AseAtomsAdaptor.get_atoms(Structure.from_dict(d))
    except Exception as exc:  # noqa: BLE001 - pymatgen raises many types
        raise DataError(f"{src}: cannot build a structure ({type(exc).__name__}: {exc})") from None
    return plain_atoms(a)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot read JSON ({exc})") from None


def _matten_elasticity_info() -> DatasetInfo:
    return DatasetInfo(
        name="matten/elasticity",
        description="MatTen sample: 100 crystals (all cubic) with the full elastic tensor.",
        units={**POS, keys.ELASTIC: "GPa"},
        conventions=(
            f"{ELASTIC_CONVENTION} Taken from 'elastic_tensor_full' (3x3x3x3) and checked on load "
            "against 'elastic_tensor_voigt' through voigt_rank4_to_full. Structures are pymatgen Structure "
            "dicts converted with AseAtomsAdaptor. Sample id = the JSON key. The published split is in "
            "info.extra['split'] (id -> part) and matten_elasticity_split(); in this file every "
            "structure is marked 'train'."
        ),
        path="matten/elasticity_n100.json",
        targets=(keys.ELASTIC,),
    )


def _matten_json(root, info: DatasetInfo, required: tuple[str, ...], limit) -> tuple[Path, dict, list[str]]:
    """A MatTen JSON file (columns keyed by sample id): its path, contents and the first ``limit`` ids."""
    path = _file(_root(root), info.path)
    d = _read_json(path)
    for k in required:
        if k not in d:
            raise DataError(f"{path}, key {k!r}: missing")
    ids = list(d["structure"])
    lim = _limit(limit)
    return path, d, ids if lim is None else ids[:lim]


def load_matten_elasticity(root=None, limit=None) -> tuple[list[Sample], DatasetInfo]:
    """MatTen elasticity: elastic [3,3,3,3] GPa; published split in ``info.extra['split']``."""
    info = _matten_elasticity_info()
    path, d, ids = _matten_json(root, info, ("structure", "elastic_tensor_full", "elastic_tensor_voigt", "split"),
                                limit)
    samples = []
    for sid in ids:
        src = f"{path}, id {sid!r}"
        try:
            c = np.asarray(d["elastic_tensor_full"][sid], dtype=np.float64)
            cv = voigt_rank4_to_full(d["elastic_tensor_voigt"][sid])
        except (KeyError, ValueError) as exc:
            raise DataError(f"{src}, key 'elastic_tensor_full': {exc}") from None
        if c.shape != (3, 3, 3, 3) or np.abs(c - cv).max() > 1e-4 * max(1.0, np.abs(c).max()):
            raise DataError(f"{src}, key 'elastic_tensor_full': does not match elastic_tensor_voigt")
        samples.append(Sample(atoms=_structure_to_atoms(d["structure"][sid], src),
                              targets={keys.ELASTIC: c}, source=str(path), id=sid))
    info.extra.update(
        split={sid: d["split"][sid] for sid in ids},
        crystal_system={sid: d.get("crystal_system", {}).get(sid) for sid in ids},
        formula={sid: d.get("formula_pretty", {}).get(sid) for sid in ids},
    )
    return samples, info


def matten_elasticity_split(root=None) -> dict[str, np.ndarray]:
    """The published MatTen split as sample indices (order of :func:`load_matten_elasticity`):
    ``{'train': ..., 'val': ..., 'test': ...}`` (empty arrays for parts the file does not use)."""
    path = _file(_root(root), "matten/elasticity_n100.json")
    d = _read_json(path)
    parts: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for i, sid in enumerate(d["structure"]):
        part = str(d["split"][sid]).lower()
        part = {"validation": "val", "valid": "val"}.get(part, part)
        parts.setdefault(part, []).append(i)
    return {k: np.asarray(v, dtype=np.int64) for k, v in parts.items()}


def _matten_nmr_info() -> DatasetInfo:
    return DatasetInfo(
        name="matten/si_nmr",
        description="MatTen: 421 silicates with 29Si NMR chemical shielding tensors on selected Si atoms.",
        units={**POS, keys.SHIELDING: "ppm"},
        conventions=(
            "shielding[a, i, j] (ppm) as stored in 'nmr_tensor' (3x3, not symmetric; no transpose "
            "applied), one tensor per atom with atom_selector True, in atom order. masks['shielding'] "
            "= atom_selector; unlabelled atoms hold zeros. trace/3 equals the stored sigma_iso. "
            "Structures are pymatgen Structure dicts converted with AseAtomsAdaptor. Sample id = JSON key."
        ),
        path="matten/si_nmr.json",
        targets=(keys.SHIELDING,),
    )


def load_matten_si_nmr(root=None, limit=None) -> tuple[list[Sample], DatasetInfo]:
    """MatTen 29Si NMR: shielding [n,3,3] ppm on the ``atom_selector`` atoms (``masks['shielding']``)."""
    info = _matten_nmr_info()
    path, d, ids = _matten_json(root, info, ("structure", "nmr_tensor", "atom_selector"), limit)
    samples = []
    for sid in ids:
        src = f"{path}, id {sid!r}"
        atoms = _structure_to_atoms(d["structure"][sid], src)
        n = len(atoms)
        sel = np.asarray(d["atom_selector"].get(sid, []), dtype=bool)
        if sel.shape != (n,):
            raise DataError(f"{src}, key 'atom_selector': {sel.size} entries for {n} atoms")
        tens = np.asarray(d["nmr_tensor"].get(sid, []), dtype=np.float64)
        if tens.shape != (int(sel.sum()), 3, 3):
            raise DataError(
                f"{src}, key 'nmr_tensor': shape {list(tens.shape)}, expected [{int(sel.sum())}, 3, 3] "
                "(one 3x3 per selected atom)"
            )
        sh = np.zeros((n, 3, 3))
        sh[sel] = tens
        samples.append(Sample(atoms=atoms, targets={keys.SHIELDING: sh}, masks={keys.SHIELDING: sel},
                              source=str(path), id=sid))
    return samples, info


# --------------------------------------------------------------------------- Materials Project tensor sets

MP_FILES = {
    "mp/dielectric": "mp/mp_dielectric_petousis2017.xyz",
    "mp/piezo": "mp/mp_piezo_dejong2015.xyz",
    "mp/elastic": "mp/mp_elastic_1211.xyz",
}
MP_FRAME_NOTE = (
    "Every label is in the Cartesian frame of its cell (rows = lattice vectors, A), read row-major from "
    "atoms.info. rotation_ambiguous (Sample.info) marks labels rotated back from the IEEE frame whose "
    "orientation is fixed only up to a proper rotation of the lattice (e.g. the sign of e14 for -43m, the "
    "polar-axis sign for 3m/mm2/4mm): train on them with a loss the ambiguity cannot change "
    "(etgnn_core.tensors.frames) and compare components only on the others. Sample.info['group'] = reduced "
    "formula + space group (spglib, symprec 0.1 A where the file gives none). See shared/data/mp/README_mp.md."
)


def _mp_info(name: str) -> DatasetInfo:
    if name == "mp/dielectric":
        desc = ("Materials Project DFPT-PBE dielectric set (Petousis 2017): electronic eps_inf of 876 crystals "
                "(<= 20 atoms, 63 elements); the 45 frames flagged 'outlier' (largest eigenvalue > 20, "
                "metallic or small gap) are dropped.")
        units, targets = {keys.DIELECTRIC: "dimensionless (electronic eps_inf)"}, (keys.DIELECTRIC,)
        conv = "dielectric[i, j] = eps_inf, 9 numbers row-major, as given (not symmetrised, <= 1.2 % asymmetry)."
    elif name == "mp/piezo":
        desc = ("Materials Project DFPT-PBE piezoelectric set (de Jong 2015): total (ionic + electronic) stress "
                "tensor e of 536 crystals (<= 13 atoms, 76 elements); 292 frames are rotation_ambiguous.")
        units, targets = {keys.PIEZOELECTRIC: "C/m^2 (total: ionic + electronic)"}, (keys.PIEZOELECTRIC,)
        conv = PIEZO_CONVENTION
    else:
        desc = ("Materials Project elastic set (de Jong 2015): stiffness C_ijkl of 945 crystals (<= 80 atoms, "
                "84 elements), integer GPa in the source; 66 frames are rotation_ambiguous.")
        units, targets = {keys.ELASTIC: "GPa"}, (keys.ELASTIC,)
        conv = ELASTIC_CONVENTION
    return DatasetInfo(name=name, description=desc, units={**POS, **units}, conventions=f"{conv} {MP_FRAME_NOTE}",
                       path=MP_FILES[name], targets=targets)


def structure_group(atoms: ase.Atoms, space_group: int | None = None) -> str:
    """``reduced formula|space group``: the unit a grouped split keeps in one part (spglib, symprec 0.1 A)."""
    from math import gcd

    from ase.data import chemical_symbols

    z, counts = np.unique(atoms.numbers, return_counts=True)
    g = 0
    for c in counts:
        g = gcd(g, int(c))
    formula = "".join(f"{chemical_symbols[a]}{c // g if c // g > 1 else ''}" for a, c in
                      sorted(zip(z.tolist(), counts.tolist()), key=lambda t: chemical_symbols[t[0]]))
    if space_group is None and atoms.pbc.all():
        import spglib

        data = spglib.get_symmetry_dataset((np.asarray(atoms.cell), atoms.get_scaled_positions(), atoms.numbers),
                                           symprec=0.1)
        space_group = int(data.number) if data is not None else 0
    return f"{formula}|{space_group or 0}"


def piezo_turn_unresolved(atoms: ase.Atoms, label: np.ndarray) -> bool:
    """True for a Materials Project piezo label that README_mp calls sign-certain but whose frame is open to a
    180° turn about z: stored in the frame of a hexagonal cell with c along z ('symmetric_in_poscar_frame')
    and changed by the turn (no twofold axis along z).  DFT of such cells found labels both turned and not
    (etgnn_core.tensors.frames): Sample.info["c2z_unresolved"] says so, and ``data.c2z_ambiguous`` in a training
    config treats them like README_mp's rotation-ambiguous frames."""
    from ..tensors.frames import c2z_changes, hexagonal_c_along_z

    return (str(atoms.info.get("frame_status", "")) == "symmetric_in_poscar_frame"
            and hexagonal_c_along_z(np.asarray(atoms.cell)) and c2z_changes(np.asarray(label).reshape(3, 3, 3)))


def load_mp(name: str, root=None, limit=None) -> tuple[list[Sample], DatasetInfo]:
    """Materials Project sets: ``mp/dielectric`` (dielectric [3,3] eps_inf), ``mp/piezo`` (piezoelectric
    [3,3,3] C/m^2, total), ``mp/elastic`` (elastic [3,3,3,3] GPa).  Sample id = material_id; Sample.info has
    ``group`` and ``rotation_ambiguous``.  Dielectric 'outlier' frames are dropped (ids in info.extra)."""
    if name not in MP_FILES:
        raise DataError(f"unknown Materials Project set {name!r}; known: {', '.join(MP_FILES)}")
    info = _mp_info(name)
    path = _file(_root(root), info.path)
    key = {"mp/dielectric": "dielectric", "mp/piezo": "piezoelectric", "mp/elastic": "elastic"}[name]
    target = info.targets[0]
    samples, dropped = [], []
    for f, atoms in enumerate(read_frames_file(path)):
        meta = atoms.info
        sid = str(meta.get("material_id", f))
        if bool(meta.get("outlier", False)):
            dropped.append(sid)
            continue
        t = frame_targets(atoms, {target: key}, str(path), f"frame {f} ({sid})")
        readme_flag = bool(meta.get("rotation_ambiguous", False))
        turn_open = name == "mp/piezo" and not readme_flag and piezo_turn_unresolved(atoms, t[target])
        sg = meta.get("space_group")
        samples.append(Sample(atoms=plain_atoms(atoms), targets=t, source=str(path), id=sid, info={
            "group": structure_group(atoms, int(sg) if sg is not None else None),
            "rotation_ambiguous": readme_flag,
            # README_mp calls it sign-certain, but its frame is open to a 180° turn about z (data.c2z_ambiguous
            # trains it as ambiguous; metrics.set_sign_rule("dft") leaves it out of component scores)
            "c2z_unresolved": turn_open,
        }))
    info.extra.update(n_dropped=len(dropped), dropped=dropped)
    lim = _limit(limit)
    return (samples if lim is None else samples[:lim]), info


# --------------------------------------------------------------------------- registry

Loader = Callable[..., tuple[list[Sample], DatasetInfo]]


def _registry() -> dict[str, tuple[Callable[[], DatasetInfo], Loader]]:
    reg: dict[str, tuple[Callable[[], DatasetInfo], Loader]] = {}
    for m in PERTURBED:
        reg[f"perturbed/{m}"] = (
            (lambda m=m: _perturbed_info(m)),
            (lambda root=None, limit=None, m=m: load_perturbed(m, root, limit)),
        )
    reg["phonon_becs"] = (_phonon_info, load_phonon_becs)
    for w in WATER_FILES:
        reg[w] = ((lambda w=w: _water_info(w)), (lambda root=None, limit=None, w=w: load_water(w, root, limit)))
    for f in FERRO_FILES:
        reg[f] = ((lambda f=f: _ferro_info(f)),
                  (lambda root=None, limit=None, f=f: load_ferroelectric(f, root, limit)))
    reg["abo3_piezo"] = (_abo3_info, load_abo3_piezo)
    reg["matten/elasticity"] = (_matten_elasticity_info, load_matten_elasticity)
    reg["matten/si_nmr"] = (_matten_nmr_info, load_matten_si_nmr)
    for m in MP_FILES:
        reg[m] = ((lambda m=m: _mp_info(m)), (lambda root=None, limit=None, m=m: load_mp(m, root, limit)))
    return reg


REGISTRY = _registry()
DATASET_NAMES = tuple(REGISTRY)


def list_datasets() -> list[DatasetInfo]:
    """Descriptions of every reference set (reads no file; ``path`` relative to the data root)."""
    return [make() for make, _ in REGISTRY.values()]


def load_dataset(name: str, root=None, limit=None) -> tuple[list[Sample], DatasetInfo]:
    """Load reference set ``name`` (see :data:`DATASET_NAMES`); ``limit`` keeps the first samples.

    Returns the samples and the set's DatasetInfo with ``path`` made absolute.
    """
    if name not in REGISTRY:
        raise DataError(f"unknown data set {name!r}; known: {', '.join(DATASET_NAMES)}")
    r = _root(root)
    samples, info = REGISTRY[name][1](root=r, limit=limit)
    return samples, dataclasses.replace(info, path=str(r / info.path))
