"""TensorSpec: one small declaration per property; one generic mechanism builds every rank.

A new property is a new spec, never a new head class.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from etgnn_core import keys

SYMMETRIES = ("none", "symmetric", "sym_last2", "voigt")


@dataclass(frozen=True)
class TensorSpec:
    """How a tensor is built and what it means.

    name:      one of :data:`etgnn_core.keys.TENSOR_NAMES`
    rank:      0..4
    per_atom:  per-atom tensor (BEC, forces) or per-structure reduction of atomic tensors
    symmetry:  "none" | "symmetric" (rank 2) | "sym_last2" (rank 3, e_ijk = e_ikj)
               | "voigt" (rank 4, C_ijkl = C_jikl = C_ijlk = C_klij)
    unit:      unit of the returned values
    reduce:    per-structure reduction of atomic tensors: "mean" (eq 1, intensive) or "sum" (extensive)
    triplets:  add the triplet term t_kji e_kj (x) e_ji ... (rank >= 2)
    asr:       acoustic sum rule (per-atom rank 2): atomic tensors of a periodic cell sum to zero
    charges:   rank-1 per-structure only: add sum_j q_j (r_j - centroid) for molecules, with
               neutral learned charges q_j (dipole of isolated molecules)
    species:   per-atom only: atomic numbers of the atoms that carry this tensor (e.g. (14,) for
               29Si NMR shielding); the others get zeros and a False mask.  Empty: every atom.
    """

    name: str
    rank: int
    per_atom: bool
    symmetry: str = "none"
    unit: str = ""
    reduce: str = "mean"
    triplets: bool = True
    asr: bool = False
    charges: bool = False
    species: tuple[int, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "species", tuple(sorted({int(z) for z in self.species})))
        if self.species and not self.per_atom:
            raise ValueError(f"tensor {self.name!r}: species applies to per-atom tensors only")
        if self.species and self.asr:
            raise ValueError(f"tensor {self.name!r}: the acoustic sum rule needs every atom; drop species or asr")
        if not 0 <= self.rank <= 4:
            raise ValueError(f"tensor {self.name!r}: rank {self.rank} is not in 0..4")
        if self.symmetry not in SYMMETRIES:
            raise ValueError(f"tensor {self.name!r}: unknown symmetry {self.symmetry!r}; use one of {SYMMETRIES}")
        if self.reduce not in ("mean", "sum"):
            raise ValueError(f"tensor {self.name!r}: reduce must be 'mean' or 'sum', not {self.reduce!r}")

    @property
    def shape(self) -> tuple[int, ...]:
        return (3,) * self.rank

    @property
    def uses_triplets(self) -> bool:
        return self.triplets and self.rank >= 2

    @property
    def n_self(self) -> int:
        """Number of isotropic on-site coefficients (isotropic invariant tensors of this rank)."""
        return {0: 1, 1: 0, 2: 1, 3: 0, 4: 2}[self.rank] + (1 if self.charges else 0)

    def carries(self, atomic_numbers):
        """Boolean mask [n_atoms] of the atoms that carry this tensor (numpy or torch input; all True
        when ``species`` is empty)."""
        if isinstance(atomic_numbers, np.ndarray):
            return np.isin(atomic_numbers, self.species) if self.species else np.ones(len(atomic_numbers), bool)
        import torch

        if not self.species:
            return torch.ones_like(atomic_numbers, dtype=torch.bool)
        return torch.isin(atomic_numbers, torch.tensor(self.species, device=atomic_numbers.device))

    def to_dict(self) -> dict:
        return {**asdict(self), "species": list(self.species)}

    @classmethod
    def from_dict(cls, d: dict) -> TensorSpec:
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"tensor spec has unknown keys {sorted(unknown)}")
        return cls(**d)


# Default declarations of every supported property; a model config copies (and may re-unit) these.
DEFAULT_SPECS: dict[str, TensorSpec] = {
    s.name: s
    for s in (
        TensorSpec(keys.ENERGY, 0, False, unit="eV", reduce="sum", triplets=False),
        TensorSpec(keys.FORCES, 1, True, unit="eV/Angstrom"),
        TensorSpec(keys.DIPOLE, 1, False, unit="e*Angstrom", reduce="sum", charges=True),
        TensorSpec(keys.POLARIZABILITY, 2, False, symmetry="symmetric", unit="Angstrom^3", reduce="sum"),
        TensorSpec(keys.DIELECTRIC, 2, False, symmetry="symmetric", unit="dimensionless"),
        TensorSpec(keys.BORN_CHARGES, 2, True, unit="e", asr=True),
        TensorSpec(keys.SHIELDING, 2, True, unit="ppm"),
        TensorSpec(keys.PIEZOELECTRIC, 3, False, symmetry="sym_last2", unit="C/m^2"),
        TensorSpec(keys.ELASTIC, 4, False, symmetry="voigt", unit="GPa"),
    )
}


def spec_for(name: str, **overrides) -> TensorSpec:
    """The default spec of ``name`` with some fields replaced (e.g. ``unit="e*bohr"``)."""
    if name not in DEFAULT_SPECS:
        raise ValueError(f"unknown tensor {name!r}; known: {', '.join(DEFAULT_SPECS)}")
    return TensorSpec(**{**DEFAULT_SPECS[name].to_dict(), **overrides})
