"""Reshaping of flat label vectors into the canonical target shapes used by the loaders.

Voigt <-> full conversions are in :mod:`etgnn_core.tensors.algebra` (one implementation).
"""

from __future__ import annotations

import numpy as np

from .sample import DataError, where
from .validate import expected_shape


def row_major_3x3(values, n: int | None = None) -> np.ndarray:
    """9 numbers (or 9 per atom) -> [3, 3] (or [n, 3, 3]) with ``Z[..., i, j] = values[3 * i + j]``."""
    v = np.asarray(values, dtype=np.float64)
    if n is None:
        return v.reshape(3, 3)
    return v.reshape(n, 3, 3)


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
