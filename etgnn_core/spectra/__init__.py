"""From predicted Born charges to what a spectroscopist measures: IR spectra, ε0 and LO-TO splitting.

    from etgnn_core.spectra import SpectraConfig, compute_spectrum
    res = compute_spectrum(atoms, "multi_element_bec")            # SevenNet 7net-l3i5 phonons
    res.frequencies_cm1, res.ir_intensities, res.eps_static, res.lo_frequencies_cm1
    res.record()                                                   # the JSON object of `etgnn spectra`

Pipeline: relax the positions with the force model (space group kept) -> Γ phonons with phonopy
finite displacements (or a user's phonopy file) -> Born charges and ε∞ of the relaxed cell from an
ETGNN model (acoustic sum rule imposed) -> mode charges, IR intensities, per-atom shares, ε_ionic,
ε0 = ε∞ + ε_ionic -> LO modes with phonopy's non-analytical correction -> a Lorentzian spectrum.
Units are given in :mod:`etgnn_core.spectra.ir` and docs/spectra.md.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from ase import Atoms

from etgnn_core.spectra import ir
from etgnn_core.spectra.phonons import (
    DEFAULT_POTENTIAL,
    POTENTIALS,
    GammaPhonons,
    PhononConfig,
    PhononError,
    compute_gamma,
    lo_modes,
)

DEFAULT_MODEL = "multi_element_bec"
DEFAULT_FWHM = 10.0  # cm^-1
REQUIRED_TARGETS = ("born_charges", "dielectric")
INTENSITY_UNIT = "e^2/amu"
#: default q directions (Cartesian) of the LO modes
DEFAULT_DIRECTIONS = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))


@dataclass
class SpectraConfig:
    """Everything `etgnn spectra` can change: phonons (:class:`PhononConfig`), line width, LO directions."""

    phonons: PhononConfig = field(default_factory=PhononConfig)
    fwhm_cm1: float = DEFAULT_FWHM
    lo_directions: tuple = DEFAULT_DIRECTIONS  # Cartesian q directions for the LO modes

    def __post_init__(self):
        if not self.fwhm_cm1 > 0:
            raise ValueError(f"--fwhm must be positive, got {self.fwhm_cm1} cm^-1")
        dirs = np.asarray(self.lo_directions, dtype=float).reshape(-1, 3)
        if not np.all(np.linalg.norm(dirs, axis=1) > 0):
            raise ValueError("an LO q direction must not be the zero vector")


@dataclass
class SpectrumResult:
    """Γ modes, IR intensities and dielectric tensors of one crystal.  Arrays are indexed by mode m
    (3n modes, ascending frequency) and atom a of :attr:`atoms` (the relaxed cell)."""

    atoms: Atoms
    model: str  # the ETGNN model that gave Born charges and ε∞
    phonons: str  # the potential or phonopy file that gave the phonons
    frequencies_cm1: np.ndarray  # [3n] cm^-1, imaginary < 0
    eigenvectors: np.ndarray  # [3n, n, 3] normalised dynamical-matrix eigenvectors
    masses: np.ndarray  # [n] amu
    born_charges: np.ndarray  # [n, 3, 3] e, ASR imposed
    mode_charges: np.ndarray  # [3n, 3] e/sqrt(amu)
    ir_intensities: np.ndarray  # [3n] e^2/amu
    atom_shares: np.ndarray  # [3n, n] share of each atom in each mode's intensity (rows sum to 1)
    selection: ir.ModeSelection
    eps_inf: np.ndarray  # [3, 3]
    eps_ionic: np.ndarray  # [3, 3]
    lo_directions: np.ndarray  # [d, 3] unit Cartesian q directions
    lo_frequencies_cm1: np.ndarray  # [d, 3n]
    warnings: list[str] = field(default_factory=list)
    info: dict = field(default_factory=dict)  # relaxation / timing details
    source: str = ""

    @property
    def eps_static(self) -> np.ndarray:
        """ε0 = ε∞ + ε_ionic [3, 3]."""
        return self.eps_inf + self.eps_ionic

    @property
    def formula(self) -> str:
        return self.atoms.get_chemical_formula()

    def spectrum(self, fwhm_cm1: float = DEFAULT_FWHM, grid_cm1=None) -> tuple[np.ndarray, np.ndarray]:
        """(grid in cm^-1, broadened intensity in e^2/amu): peak-normalised Lorentzians
        (:func:`etgnn_core.spectra.ir.lorentzian_spectrum`)."""
        grid = ir.default_grid(self.frequencies_cm1, fwhm_cm1) if grid_cm1 is None else np.asarray(grid_cm1)
        return grid, ir.lorentzian_spectrum(self.frequencies_cm1, self.ir_intensities, grid, fwhm_cm1)

    def modes_table(self) -> list[dict]:
        """One row per mode: index, frequency, intensity, kind (acoustic / optical / imaginary / soft)."""
        s = self.selection
        rows = []
        for m, (f, inten) in enumerate(zip(self.frequencies_cm1, self.ir_intensities)):
            kind = "acoustic" if s.acoustic[m] else "imaginary" if s.imaginary[m] else "soft" if s.soft[m] \
                else "optical"
            rows.append({"mode": m, "frequency_cm1": float(f), "ir_intensity": float(inten), "kind": kind})
        return rows

    def record(self) -> dict:
        """The JSON object of ``etgnn spectra --format json`` (3x3 tensors as nested lists)."""
        lst = lambda x: np.asarray(x, dtype=float).tolist()  # noqa: E731
        return {
            "source": self.source,
            "formula": self.formula,
            "model": self.model,
            "phonons": self.phonons,
            "n_atoms": len(self.atoms),
            "frequencies_cm1": lst(self.frequencies_cm1),
            "ir_intensities": lst(self.ir_intensities),
            "intensity_unit": INTENSITY_UNIT,
            "mode_kind": [r["kind"] for r in self.modes_table()],
            "atom_shares": lst(self.atom_shares),
            "eps_inf": lst(self.eps_inf),
            "eps_ionic": lst(self.eps_ionic),
            "eps_static": lst(self.eps_static),
            "lo_frequencies_cm1": [{"q_direction": lst(d), "frequencies_cm1": lst(f)}
                                   for d, f in zip(self.lo_directions, self.lo_frequencies_cm1)],
            "born_charges": lst(self.born_charges),
            "cell": lst(self.atoms.cell[:]),
            "positions": lst(self.atoms.positions),
            "symbols": self.atoms.get_chemical_symbols(),
            "warnings": list(self.warnings),
            "info": {k: v for k, v in self.info.items() if isinstance(v, (int, float, str, bool, type(None)))},
        }


def check_model(model) -> None:
    """Refuse (one line) a model whose targets lack born_charges or dielectric."""
    missing = [t for t in REQUIRED_TARGETS if t not in model.units]
    if missing:
        raise ValueError(f"model {model.name} cannot give IR spectra: it does not predict {' and '.join(missing)} "
                         f"(it predicts {', '.join(model.units) or 'nothing'})")


def analyse(gamma: GammaPhonons, born_charges: np.ndarray, eps_inf: np.ndarray,
            lo_directions=DEFAULT_DIRECTIONS) -> dict:
    """Mode charges, intensities, shares, ε_ionic and LO modes of Γ phonons with given Born charges
    ([n, 3, 3], e, ASR imposed here) and ε∞ ([3, 3]).  Returns the fields of :class:`SpectrumResult`."""
    Z = ir.impose_asr(born_charges)
    q = ir.mode_charges(Z, gamma.eigenvectors, gamma.masses)  # [3n, n, 3]
    acoustic = ir.acoustic_modes(gamma.eigenvectors, gamma.masses)
    sel = ir.select_modes(gamma.frequencies_cm1, acoustic)
    volume = float(gamma.atoms.get_volume())
    eps_ion = ir.eps_ionic(q, gamma.frequencies_cm1, volume, sel.included)
    dirs = np.asarray(lo_directions, dtype=float).reshape(-1, 3)
    dirs = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
    lo = lo_modes(gamma.phonopy, Z, eps_inf, dirs)
    return dict(born_charges=Z, mode_charges=q.sum(1), ir_intensities=ir.ir_intensities(q),
                atom_shares=ir.atom_shares(q), selection=sel, eps_inf=np.asarray(eps_inf, dtype=float),
                eps_ionic=eps_ion, lo_directions=dirs, lo_frequencies_cm1=lo,
                warnings=mode_warnings(gamma.frequencies_cm1, sel))


def mode_warnings(freqs: np.ndarray, sel: ir.ModeSelection) -> list[str]:
    out = []
    if sel.imaginary.any():
        f = ", ".join(f"{abs(x):.1f}i" for x in freqs[sel.imaginary])
        out.append(f"{int(sel.imaginary.sum())} imaginary optical mode(s) ({f} cm^-1): left out of eps_ionic; "
                   "the structure is not a minimum of the force model (eps_static is then unreliable)")
    soft = sel.soft & ~sel.imaginary
    if soft.any():
        f = ", ".join(f"{x:.1f}" for x in freqs[soft])
        out.append(f"soft optical mode(s) below {ir.SOFT_MODE_CM1:g} cm^-1 ({f} cm^-1): eps_ionic goes as 1/ω², "
                   "so it is very uncertain")
    ac = np.abs(freqs[sel.acoustic])
    if ac.max(initial=0.0) > 10.0:
        out.append(f"acoustic modes at up to {ac.max():.1f} cm^-1 (should be 0): the force constants break "
                   "translational invariance")
    return out


def compute_spectrum(atoms: Atoms | None, model="multi_element_bec", config: SpectraConfig | None = None,
                     progress=None, source: str = "") -> SpectrumResult:
    """IR spectrum of one crystal.  ``model``: an :class:`etgnn_core.api.Model` or a model name / folder
    predicting born_charges and dielectric.  ``atoms``: a 3D-periodic cell (None when the phonons come
    from a phonopy file, whose primitive cell is then used).  ``progress(stage, done, total)``."""
    from etgnn_core.api import Model, load_model
    from etgnn_core.structure import is_periodic

    config = config or SpectraConfig()
    if not isinstance(model, Model):
        model = load_model(str(model), device=config.phonons.device)
    check_model(model)
    if atoms is not None and not (is_periodic(atoms) and np.all(atoms.pbc)):
        raise ValueError("IR spectra need a 3D-periodic crystal (a cell and pbc on all three axes)")
    if atoms is not None:  # the model's element / distance checks before the slow phonons
        model.prepare(atoms)
    t0 = time.perf_counter()
    gamma = compute_gamma(atoms, config.phonons, progress)
    if progress:
        progress("Born charges", 0, 1)
    pred = model.predict(gamma.atoms)
    fields = analyse(gamma, pred["born_charges"], pred["dielectric"], config.lo_directions)
    info = {**gamma.info, "seconds_total": time.perf_counter() - t0}
    warnings = list(fields.pop("warnings"))
    if gamma.info.get("converged") is False:
        warnings.insert(0, f"relaxation did not converge in {gamma.info['steps']} steps (max force "
                        f"{gamma.info['max_force']:.3g} eV/Å)")
    return SpectrumResult(atoms=gamma.atoms, model=model.name, phonons=gamma.source,
                          frequencies_cm1=gamma.frequencies_cm1, eigenvectors=gamma.eigenvectors,
                          masses=gamma.masses, warnings=warnings, info=info, source=source, **fields)


__all__ = [
    "DEFAULT_FWHM",
    "DEFAULT_MODEL",
    "DEFAULT_POTENTIAL",
    "INTENSITY_UNIT",
    "POTENTIALS",
    "PhononConfig",
    "PhononError",
    "SpectraConfig",
    "SpectrumResult",
    "analyse",
    "check_model",
    "compute_spectrum",
]
