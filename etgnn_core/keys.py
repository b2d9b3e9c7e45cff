"""Names of fields shared across modules, and the project's unit and index conventions.

Every tensor that crosses a public boundary is named by one of the constants below.

Conventions (decided once, used everywhere):

* Positions and cells in Angstrom; ``cell`` rows are the lattice vectors (ASE convention).
* An edge ``k -> j`` goes from neighbour ``k`` (the source, possibly a periodic image
  ``pos[k] + shift @ cell``) to the centre atom ``j`` (the target).  Its vector is
  ``r_kj = pos[j] - (pos[k] + shift @ cell)`` and ``e_kj = r_kj / |r_kj|`` (paper, eq 2).
* A triplet ``k -> j -> i`` pairs edge ``k -> j`` with edge ``j -> i``; ``j`` is its centre.
  The fields of :class:`etgnn_core.graph.Graph` (``edge_src`` = k, ``edge_dst`` = j,
  ``edge_shift``, ``triplet_kj``, ``triplet_ji``, ...) follow these conventions.
* Born effective charges ``born_charges[a, i, j] = (Omega / e) dP_i / du_{a,j}``:
  the **row** ``i`` is the polarization / electric-field direction, the **column** ``j``
  the displacement direction of atom ``a``.  Unit: e (elementary charge).  This is the
  VASP OUTCAR and phonopy BORN convention; data files given as 9 numbers per atom are read
  row-major (``Z[i, j] = values[3 * i + j]``).
* Piezoelectric stress tensor ``piezoelectric[i, j, k] = e_ijk``: ``i`` polarization direction,
  ``(j, k)`` strain pair, symmetric in ``j, k``.  Unit: C/m^2.
* Elastic tensor ``elastic[i, j, k, l] = C_ijkl`` with the Voigt symmetries
  ``C_ijkl = C_jikl = C_ijlk = C_klij``.  Unit: GPa.  Voigt order 11, 22, 33, 23, 13, 12.
* Dielectric: electronic (high-frequency) dielectric tensor, dimensionless, symmetric.
* Energies in eV, forces in eV/Angstrom, unless a model card says otherwise (the water
  models use atomic units: dipole in e*bohr, polarizability in bohr^3).
"""

from __future__ import annotations

# --- tensor (target) names: exactly those returned by Model.predict -----------------
ENERGY = "energy"
FORCES = "forces"
DIPOLE = "dipole"
POLARIZABILITY = "polarizability"
DIELECTRIC = "dielectric"
BORN_CHARGES = "born_charges"
SHIELDING = "shielding"
PIEZOELECTRIC = "piezoelectric"
ELASTIC = "elastic"

TENSOR_NAMES = (
    ENERGY,
    FORCES,
    DIPOLE,
    POLARIZABILITY,
    DIELECTRIC,
    BORN_CHARGES,
    SHIELDING,
    PIEZOELECTRIC,
    ELASTIC,
)

# --- per-atom label masks (e.g. NMR shielding only on selected atoms) ---------------
MASK_SUFFIX = "_mask"
# Sample.info flag and split part of a structure from a data.train_only set: trained on, never
# validated, calibrated or tested on
TRAIN_ONLY = "train_only"
# Sample.info flag set by a training option (data.c2z_ambiguous): the loss compares this label in the closest
# symmetry-equivalent frame, as it does README_mp's rotation_ambiguous ones.  Kept apart from that flag so
# that which frames a score counts as sign-certain (etgnn_core.metrics) never depends on how a model trained.
LOSS_AMBIGUOUS = "loss_ambiguous"


def mask_key(name: str) -> str:
    """Key of the boolean per-atom mask that says which atoms carry label ``name``."""
    return name + MASK_SUFFIX
