"""Reshaping of flat label vectors and Voigt <-> full tensor conversions used by the loaders.

Voigt order (project-wide, :mod:`etgnn_core.keys`): 11, 22, 33, 23, 13, 12, i.e. index
``J`` in 0..5 stands for the pair ``VOIGT_PAIRS[J]``.
"""

from __future__ import annotations

import numpy as np

from .sample import DataError, where
from .validate import expected_shape

VOIGT_PAIRS = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))
# VOIGT_INDEX[j, k] = Voigt index of the (symmetric) pair (j, k)
VOIGT_INDEX = np.array([[0, 5, 4], [5, 1, 3], [4, 3, 2]])


def row_major_3x3(values, n: int | None = None) -> np.ndarray:
    """9 numbers (or 9 per atom) -> [3, 3] (or [n, 3, 3]) with ``Z[..., i, j] = values[3 * i + j]``."""
    v = np.asarray(values, dtype=np.float64)
    if n is None:
        return v.reshape(3, 3)
    return v.reshape(n, 3, 3)


def voigt_to_piezo(e_voigt) -> np.ndarray:
    """Piezoelectric stress tensor e_iJ [3, 6] -> e_ijk [3, 3, 3] with ``e_ijk = e_iJ``, J = Voigt(j, k).

    The stress coefficients e carry no factor 2 on the shear columns (unlike strain coefficients d).
    """
    e = np.asarray(e_voigt, dtype=np.float64)
    if e.shape != (3, 6):
        raise ValueError(f"expected a 3x6 Voigt piezoelectric tensor, got shape {e.shape}")
    return e[:, VOIGT_INDEX]


def piezo_to_voigt(e_full) -> np.ndarray:
    """Inverse of :func:`voigt_to_piezo` (uses the (j, k) entry listed in ``VOIGT_PAIRS``)."""
    e = np.asarray(e_full, dtype=np.float64)
    return np.stack([e[:, j, k] for j, k in VOIGT_PAIRS], axis=1)


def voigt_to_elastic(c_voigt) -> np.ndarray:
    """Elastic stiffness C_IJ [6, 6] -> C_ijkl [3, 3, 3, 3] with ``C_ijkl = C_IJ`` (no factors)."""
    c = np.asarray(c_voigt, dtype=np.float64)
    if c.shape != (6, 6):
        raise ValueError(f"expected a 6x6 Voigt elastic tensor, got shape {c.shape}")
    return c[VOIGT_INDEX[:, :, None, None], VOIGT_INDEX[None, None, :, :]]


def elastic_to_voigt(c_full) -> np.ndarray:
    """Inverse of :func:`voigt_to_elastic`."""
    c = np.asarray(c_full, dtype=np.float64)
    out = np.empty((6, 6))
    for a, (i, j) in enumerate(VOIGT_PAIRS):
        for b, (k, l) in enumerate(VOIGT_PAIRS):
            out[a, b] = c[i, j, k, l]
    return out


def as_target(name: str, values, n_atoms: int, source: str, loc: str = "", key: str = "") -> np.ndarray:
    """Flat or shaped numbers -> the canonical float64 shape of target ``name``; DataError on a bad count.

    Flat 9-vectors are read row-major (``T[i, j] = v[3 * i + j]``), flat 27-vectors as
    ``e[i, j, k] = v[9 * i + 3 * j + k]``.
    """
    shape = expected_shape(name, n_atoms)
    try:
        v = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{where(source, loc, key or name)}: not numeric ({exc})") from None
    if v.size != int(np.prod(shape)):
        raise DataError(
            f"{where(source, loc, key or name)}: expected {int(np.prod(shape))} numbers for {name} "
            f"{list(shape)}, got {v.size} (shape {list(v.shape)})"
        )
    return v.reshape(shape).copy()
