"""What the three parts of each rank-2 tensor mean physically (Learn page and Atom inspector)."""

from __future__ import annotations

from etgnn_core import keys

MEANING = {  # tensor -> (isotropic, antisymmetric, symmetric traceless)
    keys.BORN_CHARGES: (
        "the mean dynamical charge of the atom: what a rigid point charge moving with the atom would carry. "
        "Compare it with the nominal ionic charge (e.g. +4 for Si, −2 for O): anomalous values signal covalency.",
        "a rotational response: displacing the atom along x creates polarization along y and not the "
        "reverse. It is an axial vector w (w_i = ½ ε_ijk T_jk) and vanishes on sites whose symmetry forbids it.",
        "the anisotropy: the charge is larger for displacements along some directions (its principal axes) "
        "than along others, e.g. along a bond versus across it.",
    ),
    keys.DIELECTRIC: (
        "the orientation-averaged electronic dielectric constant ε∞ (≈ n², the squared refractive index).",
        "zero: ε is symmetric (energy conservation), the model enforces it.",
        "the optical anisotropy: non-zero in non-cubic crystals, it is the source of birefringence.",
    ),
    keys.POLARIZABILITY: (
        "the mean polarizability (what Raman calls the isotropic invariant a).",
        "zero: the polarizability is symmetric.",
        "the anisotropy γ of the polarizability: it drives depolarized Raman scattering.",
    ),
    keys.SHIELDING: (
        "the isotropic shielding σ_iso, i.e. the chemical shift measured in solution / MAS NMR.",
        "the antisymmetric shielding: it does not shift lines to first order, hence rarely measured.",
        "the shielding anisotropy (span, skew): it shapes static powder NMR line shapes.",
    ),
}
GENERIC = ("the orientation average of the tensor (one number, l = 0, unchanged by any rotation).",
           "a pseudo-vector (three numbers, l = 1); it rotates like a vector.",
           "the anisotropy (five numbers, l = 2): how the response differs between directions.")
