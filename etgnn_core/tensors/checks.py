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
# Above this eps_inf, PBE values belong to metals and near-metals: the Materials Project dielectric set
# flags them as outliers ("metallic or small gap"), and Moss's rule below puts the gap near 0.2 eV.
EPS_NEAR_METAL = 20.0
# Moss's rule n^4 E_g ~ 95 eV (n^2 = eps_inf): a rough gap for the warning's wording, not a prediction.
MOSS_EV = 95.0


def dielectric_warning(eps: np.ndarray) -> list[str]:
    values = principal_values(eps)
    low, high = float(values[0]), float(values[-1])
    if not (np.isfinite(low) and np.isfinite(high)):
        return []
    if low < EPS_MIN:
        return [f"the predicted dielectric tensor has a principal value of {low:.2f}, below 1 (vacuum): no real "
                "material screens less than vacuum, so this crystal is outside what the model learned"]
    if high > EPS_NEAR_METAL:
        return [f"the predicted dielectric tensor has a principal value of {high:.1f}: by Moss's rule "
                f"(n^4 x band gap ~ 95 eV) that belongs to a band gap near {MOSS_EV / high**2:.2g} eV, a metal or "
                "near-metal; if this crystal is an insulator with a wider gap, the value is far too high"]
    return []


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
