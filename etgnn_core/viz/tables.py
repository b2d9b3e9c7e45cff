"""Tensors as pandas DataFrames for display."""

from __future__ import annotations

import numpy as np
import pandas as pd

from etgnn_core.tensors.algebra import VOIGT_LABELS, full_rank3_to_voigt, full_rank4_to_voigt

XYZ = ("x", "y", "z")
_VOIGT = [f"{n} ({lab})" for n, lab in zip(range(1, 7), VOIGT_LABELS)]


def tensor_table(T, unit: str) -> pd.DataFrame:
    """A DataFrame for one tensor of rank 1-4; ``df.attrs`` holds ``unit``, ``rank`` and ``note``.

    Rank 1: one row (x, y, z).  Rank 2 ``[3, 3]``: rows i, columns j.  Rank 3 ``[3, 3, 3]`` (or
    ``[3, 6]``): 3 x 6 Voigt ``e_iJ = e_ijk``.  Rank 4 ``[3, 3, 3, 3]`` (or ``[6, 6]``): 6 x 6 Voigt
    ``C_IJ = C_ijkl``.  Voigt order 1..6 = xx, yy, zz, yz, xz, xy, no factor 2.
    """
    T = np.asarray(T, dtype=float)
    note = ""
    if T.shape == (3,):
        df, rank = pd.DataFrame([T], columns=list(XYZ), index=[""]), 1
    elif T.shape == (3, 3):
        df, rank = pd.DataFrame(T, index=list(XYZ), columns=list(XYZ)), 2
    elif T.shape in ((3, 3, 3), (3, 6)):
        V = full_rank3_to_voigt(T) if T.ndim == 3 else T
        df, rank = pd.DataFrame(V, index=list(XYZ), columns=_VOIGT), 3
        note = "rank-3 tensor in Voigt notation: e_iJ = e_ijk, J = 1..6 ↔ jk = xx, yy, zz, yz, xz, xy"
    elif T.shape in ((3, 3, 3, 3), (6, 6)):
        V = full_rank4_to_voigt(T) if T.ndim == 4 else T
        df, rank = pd.DataFrame(V, index=_VOIGT, columns=_VOIGT), 4
        note = "rank-4 tensor in Voigt notation: C_IJ = C_ijkl, I, J = 1..6 ↔ xx, yy, zz, yz, xz, xy"
    else:
        raise ValueError(f"tensor_table expects a rank 1-4 Cartesian tensor, got shape {T.shape}")
    df.attrs.update(unit=unit, rank=rank, note=note)
    return df
