"""Γ-point phonons: a universal interatomic potential (or a phonopy file) + phonopy finite displacements.

Force models (weights inside their pip wheels, no network):

* ``sevenn`` (default): SevenNet ``7net-l3i5``; closest to DFT phonons of the potentials measured here
  (see docs/spectra.md);
* ``sevenn-0``: SevenNet ``7net-0`` (faster, softer);
* ``chgnet``: CHGNet 0.3.0 (softer still: its ε_ionic is too large).

or a phonopy file (``phonopy.yaml`` / ``phonopy_params.yaml`` with force constants or displacements and
forces, or a folder holding ``phonopy.yaml`` + ``FORCE_SETS`` / ``FORCE_CONSTANTS``) for DFT-quality phonons.

Why the default supercell is the cell itself: the Γ dynamical matrix is the sum of the force constants
over all periodic images, which is exactly what a displacement of an atom together with all its images
(a finite displacement in the unit cell) measures.  Γ frequencies are therefore exact in any supercell,
the 1x1x1 one included (docs/spectra.md shows the check against 2x2x2); larger supercells only cost time.

Units: positions Å, forces eV/Å, masses amu, phonopy frequencies THz (converted to cm^-1 in
:mod:`etgnn_core.spectra.ir`).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase import Atoms

#: --phonons choices backed by a universal potential: name -> (package, model name in that package)
POTENTIALS = {
    "sevenn": ("sevenn", "7net-l3i5"),
    "sevenn-0": ("sevenn", "7net-0"),
    "chgnet": ("chgnet", "0.3.0"),
}
DEFAULT_POTENTIAL = "sevenn"
RELAX_MODES = ("positions", "cell", "none")

Progress = Callable[[str, int, int], None]  # (stage, done, total)


class PhononError(ValueError):
    """Phonons cannot be computed (unknown force model, unreadable phonopy file, mismatched structure)."""


@dataclass
class PhononConfig:
    """How the Γ phonons are obtained.

    ``source``: a key of :data:`POTENTIALS` or the path of a phonopy file / folder.
    ``supercell``: diagonal supercell for the displacements (Γ is exact in any, see the module doc).
    ``relax``: "positions" (fixed cell, symmetry kept), "cell" (cell and positions) or "none" before the
    phonons; only for potentials (a phonopy file fixes the structure).  ``fmax`` in eV/Å,
    ``displacement`` in Å, ``symprec`` in Å (phonopy / spglib).  ``threads``: torch CPU threads while
    the potential runs (restored afterwards; None = leave torch's setting).  One thread by default: the
    potentials' many tiny tensor ops on a small cell spend more time synchronising threads than computing
    (SevenNet-l3i5 on a 10-atom cell, 2-core CPU shared with other jobs: 0.22 s CPU per force call with
    one thread, 8.4 s with two).
    """

    source: str = DEFAULT_POTENTIAL
    supercell: tuple[int, int, int] = (1, 1, 1)
    relax: str = "positions"
    fmax: float = 0.01
    max_steps: int = 200
    displacement: float = 0.01
    symprec: float = 1e-5
    device: str = "auto"
    threads: int | None = 1

    def __post_init__(self):
        if self.relax not in RELAX_MODES:
            raise PhononError(f"relax must be one of {', '.join(RELAX_MODES)}, got {self.relax!r}")
        sc = tuple(int(n) for n in self.supercell)
        if len(sc) != 3 or min(sc) < 1:
            raise PhononError(f"supercell must be three positive integers, got {self.supercell!r}")
        self.supercell = sc
        if self.displacement <= 0 or self.fmax <= 0:
            raise PhononError("displacement and fmax must be positive")

    @property
    def is_potential(self) -> bool:
        return self.source in POTENTIALS

    def describe(self) -> str:
        """What gave the phonons, for the output (``"sevenn 7net-l3i5"`` or the file path)."""
        if self.is_potential:
            pkg, name = POTENTIALS[self.source]
            return f"{pkg} {name}"
        return f"phonopy file {self.source}"


@dataclass
class GammaPhonons:
    """Γ modes of one cell: frequencies (cm^-1, imaginary < 0), eigenvectors [3n, n, 3], masses (amu)."""

    atoms: Atoms  # the cell the modes belong to (relaxed when relaxing)
    frequencies_cm1: np.ndarray  # [3n]
    eigenvectors: np.ndarray  # [3n, n, 3] mode, atom, xyz (normalised dynamical-matrix eigenvectors)
    masses: np.ndarray  # [n] amu
    phonopy: object  # phonopy.Phonopy with force constants (used again for LO modes)
    source: str  # what gave the phonons
    info: dict = field(default_factory=dict)  # relaxation steps, residual force, displacements, seconds


_CALCULATORS: dict = {}


def force_calculator(source: str, device: str = "auto"):
    """The ASE calculator of a universal potential (loaded once per process and device)."""
    if source not in POTENTIALS:
        raise PhononError(f"unknown force model {source!r}; use one of {', '.join(POTENTIALS)} or a phonopy file")
    from etgnn_core.device import resolve_device

    dev = resolve_device(device).type
    key = (source, dev)
    if key not in _CALCULATORS:
        pkg, name = POTENTIALS[source]
        try:  # their loading notes go to stderr: stdout carries `etgnn spectra --format json`
            with contextlib.redirect_stdout(sys.stderr):
                _CALCULATORS[key] = _make_calculator(pkg, name, dev)
        except ImportError as exc:
            raise PhononError(f"force model {source} needs the {pkg} package: pip install {pkg}") from exc
    return _CALCULATORS[key]


def _make_calculator(pkg: str, name: str, dev: str):
    if pkg == "sevenn":
        from sevenn.calculator import SevenNetCalculator

        # its "no tensor product accelerator" warning names an optional CUDA extension the user cannot act on
        # here (the potential is exact without it, only slower): not a message for the app or the CLI
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="No tensor product accelerator")
            return SevenNetCalculator(name, device=dev)
    from chgnet.model import CHGNet
    from chgnet.model.dynamics import CHGNetCalculator

    return CHGNetCalculator(CHGNet.load(model_name=name, verbose=False), use_device=dev)


def relax(atoms: Atoms, calc, mode: str = "positions", fmax: float = 0.01, max_steps: int = 200) -> tuple[Atoms, dict]:
    """Relax with ``calc`` keeping the space group (ase FixSymmetry); returns (relaxed copy, info).

    info: ``steps``, ``max_force`` (eV/Å, after), ``converged``, ``volume_change`` (relative).
    """
    from ase.constraints import FixSymmetry
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS

    a = atoms.copy()
    a.calc = calc
    v0 = a.get_volume()
    if mode == "none":
        return a, {"steps": 0, "max_force": float(np.abs(a.get_forces()).max()), "converged": None,
                   "volume_change": 0.0}
    a.set_constraint(FixSymmetry(a))
    target = FrechetCellFilter(a) if mode == "cell" else a
    opt = BFGS(target, logfile=None)
    converged = bool(opt.run(fmax=fmax, steps=max_steps))
    forces = a.get_forces()
    a.set_constraint()
    out = a.copy()
    out.calc = None
    return out, {"steps": int(opt.nsteps), "max_force": float(np.linalg.norm(forces, axis=1).max()),
                 "converged": converged, "volume_change": float(out.get_volume() / v0 - 1.0)}


def to_phonopy_atoms(atoms: Atoms):
    from phonopy.structure.atoms import PhonopyAtoms

    return PhonopyAtoms(symbols=atoms.get_chemical_symbols(), cell=np.asarray(atoms.cell[:]),
                        scaled_positions=atoms.get_scaled_positions(wrap=False), masses=atoms.get_masses())


def from_phonopy_atoms(cell) -> Atoms:
    return Atoms(symbols=list(cell.symbols), cell=np.asarray(cell.cell), scaled_positions=cell.scaled_positions,
                 masses=np.asarray(cell.masses), pbc=True)


def finite_displacement_phonopy(atoms: Atoms, calc, config: PhononConfig, progress: Progress | None = None):
    """phonopy with symmetry-reduced ± displacements of ``atoms`` in ``config.supercell``, forces from
    ``calc``, symmetrised force constants.  Returns (Phonopy, number of displaced supercells)."""
    from phonopy import Phonopy

    # "P": the modes of this very cell.  phonopy 4 resolves primitive_matrix=None to "auto", which may
    # reorder or reduce the atoms, and the Born charges are predicted for this cell's atom order.
    ph = Phonopy(to_phonopy_atoms(atoms), supercell_matrix=np.diag(config.supercell), primitive_matrix="P",
                 symprec=config.symprec)
    ph.generate_displacements(distance=config.displacement, is_plusminus="auto")
    cells = ph.supercells_with_displacements
    forces = []
    for k, sc in enumerate(cells):
        if progress:
            progress("displacements", k, len(cells))
        a = from_phonopy_atoms(sc)
        a.calc = calc
        f = a.get_forces()
        forces.append(f - f.mean(axis=0))  # drift removal: a net force breaks the translational sum rule
    if progress:
        progress("displacements", len(cells), len(cells))
    ph.forces = np.array(forces)
    ph.produce_force_constants()
    ph.symmetrize_force_constants()
    return ph, len(cells)


def load_phonopy_file(path: str | os.PathLike, symprec: float = 1e-5):
    """A Phonopy object with force constants from a phonopy.yaml-like file or a folder holding one.

    Its own BORN / NAC data are ignored (is_nac=False): the Born charges come from the ETGNN model.
    The modes are those of phonopy's primitive cell.
    """
    import phonopy

    p = Path(path)
    if p.is_dir():
        found = [p / n for n in ("phonopy_params.yaml", "phonopy.yaml", "phonopy_disp.yaml") if (p / n).exists()]
        if not found:
            raise PhononError(f"{path}: no phonopy_params.yaml / phonopy.yaml / phonopy_disp.yaml in this folder")
        p = found[0]
    if not p.exists():
        raise PhononError(f"{path}: no such phonopy file")
    here = os.getcwd()
    try:
        os.chdir(p.parent)  # phonopy looks for FORCE_SETS / FORCE_CONSTANTS beside the yaml
        ph = phonopy.load(p.name, is_nac=False, produce_fc=True, symprec=symprec, log_level=0)
    except Exception as exc:
        raise PhononError(f"{path}: not a phonopy file phonopy can load: {' '.join(str(exc).split())}") from exc
    finally:
        os.chdir(here)
    if ph.force_constants is None:
        raise PhononError(f"{path}: holds neither force constants nor displacements with forces "
                          "(give phonopy_params.yaml, or phonopy.yaml beside FORCE_SETS or FORCE_CONSTANTS)")
    return ph


def gamma_modes(ph) -> tuple[np.ndarray, np.ndarray]:
    """Γ frequencies (cm^-1, imaginary < 0) and eigenvectors [3n, n, 3] of a Phonopy with force constants."""
    from etgnn_core.spectra.ir import THZ_TO_CM1

    ph.run_qpoints([[0.0, 0.0, 0.0]], with_eigenvectors=True)
    d = ph.get_qpoints_dict()
    freqs = np.asarray(d["frequencies"][0]) * THZ_TO_CM1  # [3n]
    vecs = np.asarray(d["eigenvectors"][0])  # [3n, 3n], columns = modes
    n = vecs.shape[0] // 3
    return freqs, vecs.T.reshape(3 * n, n, 3)


def lo_modes(ph, born_charges: np.ndarray, eps_inf: np.ndarray, directions_cart: np.ndarray) -> np.ndarray:
    """Γ frequencies (cm^-1) with phonopy's non-analytical correction for q → 0 along each Cartesian
    direction.  ``born_charges`` [n, 3, 3] (e) of phonopy's primitive cell, ``eps_inf`` [3, 3].
    Returns [n_directions, 3n].  The NAC unit factor is that of the phonopy object's calculator (eV, Å
    for the potentials)."""
    from phonopy.physical_units import get_calculator_physical_units

    factor = get_calculator_physical_units(getattr(ph, "calculator", None)).nac_factor  # phonopy's unit system
    ph.nac_params = {"born": np.asarray(born_charges, dtype=float), "dielectric": np.asarray(eps_inf, dtype=float),
                     "factor": factor}
    cell = np.asarray(ph.primitive.cell)  # rows = lattice vectors; q_reduced = cell @ q_cart
    out = []
    try:
        for d in np.atleast_2d(directions_cart):
            q_red = cell @ np.asarray(d, dtype=float)
            out.append(_gamma_freqs(ph, q_red))
    finally:
        ph.nac_params = None
    return np.array(out)


def _gamma_freqs(ph, q_direction) -> np.ndarray:
    from etgnn_core.spectra.ir import THZ_TO_CM1

    ph.run_qpoints([[0.0, 0.0, 0.0]], nac_q_direction=q_direction)
    return np.asarray(ph.get_qpoints_dict()["frequencies"][0]) * THZ_TO_CM1


@contextlib.contextmanager
def torch_threads(n: int | None):
    """torch's CPU thread count set to ``n`` inside the block (process-wide), restored after it."""
    import torch

    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def compute_gamma(atoms: Atoms | None, config: PhononConfig, progress: Progress | None = None) -> GammaPhonons:
    """Γ phonons of ``atoms`` with a potential (relaxed first per ``config.relax``), or of the primitive
    cell of the phonopy file ``config.source`` (``atoms`` may then be None)."""
    t0 = time.perf_counter()
    if config.is_potential:
        if atoms is None:
            raise PhononError("a structure is needed to compute phonons with a potential")
        if progress:
            progress("loading the force model", 0, 1)
        calc = force_calculator(config.source, config.device)
        if progress:
            progress("relaxing", 0, 1)
        with torch_threads(config.threads):
            relaxed, info = relax(atoms, calc, config.relax, config.fmax, config.max_steps)
            ph, n_disp = finite_displacement_phonopy(relaxed, calc, config, progress)
        info["displacements"] = n_disp
        cell_atoms = relaxed
    else:
        ph = load_phonopy_file(config.source, config.symprec)
        cell_atoms = from_phonopy_atoms(ph.primitive)
        info = {"displacements": len(ph.dataset.get("first_atoms", [])) if ph.dataset else None}
    freqs, vecs = gamma_modes(ph)
    info["seconds"] = time.perf_counter() - t0
    return GammaPhonons(cell_atoms, freqs, vecs, np.asarray(ph.primitive.masses, dtype=float), ph,
                        config.describe(), info)
