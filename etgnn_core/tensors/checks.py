"""Physical-validity checks on predicted tensors: a warning when a prediction is impossible.

A model far outside its training data can predict what no material has: an electronic
dielectric tensor with a principal value below 1 (a medium that screens less than vacuum), a
polarizability with a negative principal value, or a stiffness tensor that is not positive
definite (a crystal that lowers its energy under some strain).  Two more checks name what is
possible but almost never right: an eps_inf above 20 (a metal or near-metal), and a Born charge
whose sign contradicts the atom's place among its neighbours (a cation whose nearest neighbours
are all clearly more electronegative with a negative Born charge, or the reverse for an anion);
``benchmarks/physics_checks.py`` counts how often each check fires on DFT labels.  A prediction
is never altered here -- it is reported as the model gave it -- but ``Prediction.warnings`` says
in words why it cannot (or can hardly) be right.  Units: dielectric dimensionless, polarizability
as the model's unit, Born charges in e, elastic C_ijkl in GPa (Voigt order 11, 22, 33, 23, 13, 12 for the 6x6 matrix).
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

import numpy as np

from etgnn_core import keys
from etgnn_core.tensors.algebra import full_rank4_to_voigt, principal_values, softest_voigt_eigenvalue

if TYPE_CHECKING:
    import ase

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


# Born-charge sign check: an atom is a cation (anion) when every neighbour of its first shell (within
# SHELL x its nearest distance, at most NEIGHBOUR_CUTOFF) is at least IONIC_GAP more (less)
# electronegative on Pauling's scale; its charge has the wrong sign beyond SIGN_MARGIN (e, trace / 3).
IONIC_GAP = 0.8
SIGN_MARGIN = 0.3
SHELL = 1.15
NEIGHBOUR_CUTOFF = 4.5  # Å


@cache
def electronegativity(z: int) -> float | None:
    """Pauling electronegativity of element ``z`` (pymatgen's table); None where it has none (noble gases)."""
    from ase.data import chemical_symbols
    from pymatgen.core.periodic_table import Element

    x = Element(chemical_symbols[z]).X
    return float(x) if np.isfinite(x) else None


def electronegativities(atoms: ase.Atoms) -> np.ndarray:
    """[n_atoms] Pauling electronegativities; NaN where an element has none."""
    return np.array([electronegativity(int(z)) or np.nan for z in atoms.numbers])


def ionic_roles(atoms: ase.Atoms, x: np.ndarray | None = None) -> dict[int, tuple[str, list[int]]]:
    """{atom index: ("cation" | "anion", its first-shell neighbours' atomic numbers)} where the role is clear;
    ``x``: :func:`electronegativities` of ``atoms`` when the caller has them."""
    from etgnn_core.graph import neighbor_list

    n = len(atoms)
    nbr, centre, _, dist = neighbor_list(atoms, NEIGHBOUR_CUTOFF)  # [n_pairs] each, both directions
    x = electronegativities(atoms) if x is None else x  # [n_atoms]; NaN: no value
    nearest = np.full(n, np.inf)
    np.minimum.at(nearest, centre, dist)
    shell = dist <= SHELL * nearest[centre]  # [n_pairs] first-shell pairs
    lo, hi = np.full(n, np.inf), np.full(n, -np.inf)
    np.minimum.at(lo, centre[shell], x[nbr[shell]])  # NaN propagates: such an atom gets no role
    np.maximum.at(hi, centre[shell], x[nbr[shell]])
    roles = {}
    with np.errstate(invalid="ignore"):
        for a in np.flatnonzero(lo >= x + IONIC_GAP):
            roles[int(a)] = "cation"
        for a in np.flatnonzero(hi <= x - IONIC_GAP):
            roles[int(a)] = "anion"
    return {a: (r, sorted(set(atoms.numbers[nbr[shell & (centre == a)]].tolist()))) for a, r in roles.items()}


def born_charge_sign_warnings(atoms: ase.Atoms, bec: np.ndarray) -> list[str]:
    """One line per role (cation / anion) whose predicted Born charges [n_atoms, 3, 3] have the wrong sign."""
    q = np.trace(np.asarray(bec, dtype=np.float64), axis1=1, axis2=2) / 3  # [n_atoms] e
    # the neighbour search only where an atom could be a cation below zero or an anion above it
    x = electronegativities(atoms)  # [n_atoms]
    if np.isnan(x).all():
        return []
    with np.errstate(invalid="ignore"):  # NaN (no value) compares False
        suspect = (((q < -SIGN_MARGIN) & (x + IONIC_GAP <= np.nanmax(x)))
                   | ((q > SIGN_MARGIN) & (x - IONIC_GAP >= np.nanmin(x))))
    if not suspect.any():
        return []
    wrong: dict[str, list[int]] = {"cation": [], "anion": []}
    nbrs: dict[str, set] = {"cation": set(), "anion": set()}
    for a, (role, shell) in ionic_roles(atoms, x).items():
        if (role == "cation" and q[a] < -SIGN_MARGIN) or (role == "anion" and q[a] > SIGN_MARGIN):
            wrong[role].append(a)
            nbrs[role].update(shell)
    return [_sign_message(atoms, role, idx, q, nbrs[role]) for role, idx in wrong.items() if idx]


def _sign_message(atoms: ase.Atoms, role: str, idx: list[int], q: np.ndarray, around: set) -> str:
    """The warning for the ``role`` atoms ``idx`` (0-based, as the tables) with trace/3 ``q`` of the wrong sign."""
    from ase.data import chemical_symbols

    worst = float(min(q[idx]) if role == "cation" else max(q[idx]))
    names = sorted({chemical_symbols[atoms.numbers[a]] for a in idx})
    listed = ", ".join(map(str, idx[:8])) + (", ..." if len(idx) > 8 else "")
    more, sign, bound = ("more", "negative", "down") if role == "cation" else ("less", "positive", "up")
    if len(idx) == 1:
        who = f"atom {listed} ({names[0]}) sits"
        article = "an" if role == "anion" else "a"
        like = f"as {article} {role} does, yet gets a {sign} Born charge (trace/3 = {worst:+.2f} e)"
    else:
        who = f"atoms {listed} ({', '.join(names)}) sit"
        like = f"as {role}s do, yet get {sign} Born charges (trace/3 {bound} to {worst:+.2f} e)"
    neighbours = ", ".join(chemical_symbols[z] for z in sorted(around))
    return (f"{who} among clearly {more} electronegative neighbours ({neighbours}), {like}: a DFT Born charge "
            "almost never has that sign, so the model has likely taken this crystal for a metal; its Born charges "
            "and dielectric tensor are unreliable")


def polarizability_warning(alpha: np.ndarray, unit: str) -> list[str]:
    low = float(principal_values(alpha)[0])
    if not np.isfinite(low) or low >= 0:
        return []
    return [f"the predicted polarizability has a negative principal value ({low:.3g} {unit}): impossible for a "
            "stable structure, so it is outside what the model learned"]


def elastic_warning(c: np.ndarray) -> list[str]:
    ev = softest_voigt_eigenvalue(full_rank4_to_voigt(c))  # GPa
    if not np.isfinite(ev) or ev > 0:
        return []
    return [f"the predicted stiffness tensor is not positive definite (softest Voigt eigenvalue {ev:.3g} GPa): "
            "it describes a mechanically unstable crystal, which for a relaxed structure means the prediction "
            "is wrong"]


def physics_warnings(tensors: dict, units: dict | None = None, atoms: ase.Atoms | None = None) -> list[str]:
    """One-line warnings for every predicted crystal/structure tensor that breaks a physical bound
    (and, given ``atoms``, for Born charges of the wrong sign)."""
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
    bec = tensors.get(keys.BORN_CHARGES)
    if atoms is not None and bec is not None and np.shape(bec) == (len(atoms), 3, 3):
        out += born_charge_sign_warnings(atoms, bec)
    return out
