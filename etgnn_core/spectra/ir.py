"""Infrared intensities, the ionic dielectric tensor and a broadened spectrum from Γ phonons and Born charges.

Units and conventions (the same in the CLI, the app and docs/spectra.md):

* frequencies in cm^-1 (phonopy's THz x :data:`THZ_TO_CM1`); an imaginary mode has a negative frequency;
* Born charges ``Z[a, i, j]`` in e, row i = field / polarization, column j = displacement (as everywhere);
* phonon eigenvectors ``e[m, a, j]`` are the normalised eigenvectors of the dynamical matrix (phonopy's
  columns, reshaped), so the displacement pattern of mode m is ``e[m, a] / sqrt(M_a)``;
* the mode effective charge ``p[m, i] = Σ_{a,j} Z[a, i, j] e[m, a, j] / sqrt(M_a)`` in e/sqrt(amu);
* the IR intensity ``I_m = |p_m|^2`` in e^2/amu;
* the oscillator strength ``S[m, i, k] = p[m, i] p[m, k]`` in e^2/amu;
* ``eps_ionic[i, k] = (4π/V) Σ_m S[m, i, k] / ω_m^2`` (Gaussian form), evaluated in SI as
  ``e^2 / (ε0 amu V ω^2) x S`` with V in Å^3 (converted) and ω in rad/s; dimensionless.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import units as ase_units

#: phonopy THz -> cm^-1 (1 THz = 10^12 / c cm^-1 with c in cm/s)
THZ_TO_CM1 = 1e12 / (ase_units._c * 100.0)
#: e^2 / (ε0 amu Å^3 (rad/s)^2): eps_ionic = this x S[e^2/amu] / (V[Å^3] ω[rad/s]^2)
_EPS_IONIC_SI = ase_units._e**2 / (ase_units._eps0 * ase_units._amu * 1e-30)
#: optical modes below this |frequency| (cm^-1) are left out of eps_ionic: 1/ω^2 is meaningless there
MIN_OPTICAL_CM1 = 1.0
#: optical modes below this frequency (cm^-1, imaginary ones included) are called soft
SOFT_MODE_CM1 = 20.0


def impose_asr(born_charges: np.ndarray) -> np.ndarray:
    """Born charges with the acoustic sum rule Σ_a Z_a = 0: the mean over atoms subtracted.  [n, 3, 3] in e."""
    Z = np.asarray(born_charges, dtype=float)
    return Z - Z.mean(axis=0, keepdims=True)


def acoustic_modes(eigenvectors: np.ndarray, masses: np.ndarray) -> np.ndarray:
    """Boolean mask [3n] of the three modes closest to rigid translations (largest overlap with them).

    ``eigenvectors`` [3n, n, 3] (mode, atom, xyz), ``masses`` [n] in amu.  A rigid translation along x
    has dynamical-matrix eigenvector ∝ sqrt(M_a) x̂ on every atom.
    """
    n_modes = eigenvectors.shape[0]
    w = np.sqrt(np.asarray(masses, dtype=float))
    t = np.zeros((3, len(w), 3))
    for i in range(3):
        t[i, :, i] = w
    t /= np.linalg.norm(w)
    overlap = np.einsum("mak,iak->mi", eigenvectors.real, t) ** 2 + np.einsum("mak,iak->mi", eigenvectors.imag, t) ** 2
    mask = np.zeros(n_modes, dtype=bool)
    mask[np.argsort(-overlap.sum(1), kind="stable")[:3]] = True
    return mask


def mode_charges(born_charges: np.ndarray, eigenvectors: np.ndarray, masses: np.ndarray) -> np.ndarray:
    """Per-atom pieces of the mode effective charges: ``q[m, a, i] = Σ_j Z[a, i, j] e[m, a, j] / sqrt(M_a)``.

    [3n, n, 3] in e/sqrt(amu); ``q.sum(1)`` is the mode charge p[m, i].  Γ eigenvectors of a real
    dynamical matrix can be chosen real; the real part is taken.
    """
    e = np.asarray(eigenvectors).real / np.sqrt(np.asarray(masses, dtype=float))[None, :, None]  # [3n, n, 3]
    return np.einsum("aij,maj->mai", np.asarray(born_charges, dtype=float), e)


def ir_intensities(q: np.ndarray) -> np.ndarray:
    """I_m = |Σ_a q[m, a]|^2 in e^2/amu.  [3n]"""
    p = q.sum(axis=1)  # [3n, 3]
    return (p**2).sum(axis=1)


def atom_shares(q: np.ndarray) -> np.ndarray:
    """Each atom's share of each mode's intensity: ``share[m, a] = q[m, a] · p_m / |p_m|^2``.  [3n, n]

    The shares of a mode sum to 1 (I_m = Σ_a q_ma · p_m); a negative share is an atom whose dipole
    change opposes the mode's total.  A mode with zero intensity gets zero shares.
    """
    p = q.sum(axis=1)  # [3n, 3]
    inten = (p**2).sum(axis=1)  # [3n]
    proj = np.einsum("mai,mi->ma", q, p)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(inten[:, None] > 1e-14, proj / np.where(inten > 1e-14, inten, 1.0)[:, None], 0.0)


def eps_ionic(q: np.ndarray, frequencies_cm1: np.ndarray, volume: float, include: np.ndarray) -> np.ndarray:
    """ε_ionic[i, k] = (4π/V) Σ_m S[m, i, k] / ω_m^2 over the modes in ``include`` (dimensionless, [3, 3]).

    ``frequencies_cm1`` [3n] in cm^-1, ``volume`` in Å^3, ``include`` [3n] bool (optical, real, not ~0).
    """
    p = q.sum(axis=1)[include]  # [m, 3]
    omega = 2 * np.pi * ase_units._c * 100.0 * np.asarray(frequencies_cm1, dtype=float)[include]  # rad/s
    S = np.einsum("mi,mk->mik", p, p)  # [m, 3, 3] e^2/amu
    return _EPS_IONIC_SI * (S / omega[:, None, None] ** 2).sum(axis=0) / float(volume)


@dataclass(frozen=True)
class ModeSelection:
    """Which modes enter ε_ionic, and why the others do not."""

    acoustic: np.ndarray  # [3n] bool
    imaginary: np.ndarray  # [3n] bool: optical with a negative (imaginary) frequency below -MIN_OPTICAL_CM1
    soft: np.ndarray  # [3n] bool: optical with frequency < SOFT_MODE_CM1 (imaginary included)
    included: np.ndarray  # [3n] bool: optical, frequency >= MIN_OPTICAL_CM1


def select_modes(frequencies_cm1: np.ndarray, acoustic: np.ndarray) -> ModeSelection:
    f = np.asarray(frequencies_cm1, dtype=float)
    optical = ~np.asarray(acoustic, dtype=bool)
    return ModeSelection(
        acoustic=~optical,
        imaginary=optical & (f < -MIN_OPTICAL_CM1),
        soft=optical & (f < SOFT_MODE_CM1),
        included=optical & (f >= MIN_OPTICAL_CM1),
    )


def lorentzian_spectrum(frequencies_cm1, intensities, grid_cm1, fwhm_cm1: float) -> np.ndarray:
    """Σ_m I_m (γ/2)^2 / ((ω - ω_m)^2 + (γ/2)^2) on ``grid_cm1``: peak-normalised Lorentzians of full
    width ``fwhm_cm1``, so an isolated mode's peak height is its intensity (e^2/amu).  Modes with a
    negative (imaginary) frequency are left out.  [len(grid)]
    """
    if fwhm_cm1 <= 0:
        raise ValueError(f"the line width (FWHM) must be positive, got {fwhm_cm1} cm^-1")
    f = np.asarray(frequencies_cm1, dtype=float)
    inten = np.where(f > 0, np.asarray(intensities, dtype=float), 0.0)
    g = np.asarray(grid_cm1, dtype=float)[:, None]
    half = 0.5 * fwhm_cm1
    return (inten[None, :] * half**2 / ((g - f[None, :]) ** 2 + half**2)).sum(axis=1)


def default_grid(frequencies_cm1, fwhm_cm1: float, points: int = 2000) -> np.ndarray:
    """0 .. (highest mode + 5 widths, at least 100 cm^-1) in ``points`` steps (cm^-1)."""
    top = max(float(np.max(frequencies_cm1, initial=0.0)) + 5 * fwhm_cm1, 100.0)
    return np.linspace(0.0, top, points)
