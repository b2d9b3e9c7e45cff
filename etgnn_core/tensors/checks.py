"""Physical-validity checks on predicted tensors: a warning when a prediction is impossible.

A model far outside its training data can predict what no material has: an electronic
dielectric tensor with a principal value below 1 (a medium that screens less than vacuum), a
polarizability with a negative principal value, or a stiffness tensor that is not positive
definite (a crystal that lowers its energy under some strain).  Such a prediction is never
altered here -- it is reported as the model gave it -- but ``Prediction.warnings`` says in words
that it cannot be right.  Units: dielectric dimensionless, polarizability as the model's unit,
elastic C_ijkl in GPa (Voigt order 11, 22, 33, 23, 13, 12 for the 6x6 matrix).
"""

from __future__ import annotations

import numpy as np

from etgnn_core import keys
from etgnn_core.tensors.algebra import full_rank4_to_voigt, principal_values

# Slack below the physical bound: a value at the bound within rounding is not a warning.
EPS_MIN = 1.0 - 1e-3


def dielectric_warning(eps: np.ndarray) -> list[str]:
    low = float(principal_values(eps)[0])
    if not np.isfinite(low) or low >= EPS_MIN:
        return []
    return [f"the predicted dielectric tensor has a principal value of {low:.2f}, below 1 (vacuum): no real "
            "material screens less than vacuum, so this crystal is outside what the model learned"]


def polarizability_warning(alpha: np.ndarray, unit: str) -> list[str]:
    low = float(principal_values(alpha)[0])
    if not np.isfinite(low) or low >= 0:
        return []
    return [f"the predicted polarizability has a negative principal value ({low:.3g} {unit}): impossible for a "
            "stable structure, so it is outside what the model learned"]


def elastic_warning(c: np.ndarray) -> list[str]:
    voigt = full_rank4_to_voigt(c)
    ev = np.linalg.eigvalsh(0.5 * (voigt + voigt.T))  # [6] GPa
    if not np.all(np.isfinite(ev)) or ev[0] > 0:
        return []
    return [f"the predicted stiffness tensor is not positive definite (softest Voigt eigenvalue {ev[0]:.3g} GPa): "
            "it describes a mechanically unstable crystal, which for a relaxed structure means the prediction "
            "is wrong"]


def physics_warnings(tensors: dict, units: dict | None = None) -> list[str]:
    """One-line warnings for every predicted crystal/structure tensor that breaks a physical bound."""
    def one(name: str, shape: tuple):  # the tensor in that shape when it is one structure-level tensor of its size
        t = tensors.get(name)
        return None if t is None or np.size(t) != np.prod(shape) else np.asarray(t, dtype=np.float64).reshape(shape)

    out: list[str] = []
    if (eps := one(keys.DIELECTRIC, (3, 3))) is not None:
        out += dielectric_warning(eps)
    if (alpha := one(keys.POLARIZABILITY, (3, 3))) is not None:
        out += polarizability_warning(alpha, (units or {}).get(keys.POLARIZABILITY, ""))
    if (c := one(keys.ELASTIC, (3, 3, 3, 3))) is not None:
        out += elastic_warning(c)
    return out
