"""Checks run on a list of samples before training: labels present, shapes right, finite, sane magnitudes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from .. import keys
from .sample import DataError, Sample, where

PER_ATOM = {keys.BORN_CHARGES: (3, 3), keys.FORCES: (3,), keys.SHIELDING: (3, 3)}
PER_STRUCTURE = {
    keys.ENERGY: (),
    keys.DIPOLE: (3,),
    keys.POLARIZABILITY: (3, 3),
    keys.DIELECTRIC: (3, 3),
    keys.PIEZOELECTRIC: (3, 3, 3),
    keys.ELASTIC: (3, 3, 3, 3),
}

# Largest |component| accepted per target.  Larger values almost always mean mixed units (e.g. a
# piezo tensor in pC/N, forces in eV/bohr * 1e3, an elastic tensor in kBar/bar) or a broken label.
# Energy has no bound: total energies of large cells reach 1e5 eV.
MAX_ABS = {
    keys.BORN_CHARGES: 50.0,  # e
    keys.DIELECTRIC: 1e3,  # dimensionless
    keys.PIEZOELECTRIC: 1e3,  # C/m^2
    keys.ELASTIC: 1e4,  # GPa (diamond C11 ~ 1.1e3)
    keys.FORCES: 1e3,  # eV/A (or Hartree/bohr)
    keys.DIPOLE: 1e4,  # e*A or e*bohr
    keys.POLARIZABILITY: 1e5,  # A^3 or bohr^3
    keys.SHIELDING: 1e4,  # ppm
}


def expected_shape(name: str, n_atoms: int) -> tuple[int, ...]:
    """Canonical shape of target ``name`` for a structure with ``n_atoms`` atoms."""
    if name in PER_ATOM:
        return (n_atoms, *PER_ATOM[name])
    if name in PER_STRUCTURE:
        return PER_STRUCTURE[name]
    raise DataError(f"unknown target {name!r}; known: {', '.join(keys.TENSOR_NAMES)}")


def validate_samples(samples: Sequence[Sample], targets: Iterable[str] | str, allow_missing: bool = False) -> None:
    """Raise :class:`DataError` on the first unusable sample; return None if all are fine.

    Checks: non-empty set; every sample has every requested target; float dtype and the canonical
    shape (per-atom targets: first axis = number of atoms); all values finite; |component| below
    ``MAX_ABS[target]`` (a larger value suggests mixed units); masks, where given, are bool [n]
    with at least one labelled atom (only masked rows are checked for finiteness and magnitude).
    The message names the sample id, its source, the key and what was expected.
    ``allow_missing`` (several data sets trained together, e.g. Born charges from one and eps_inf from
    both): a sample may lack some targets (their loss is masked) but must carry at least one, and every
    target must be labelled somewhere.
    """
    if isinstance(targets, str):
        targets = [targets]
    targets = list(targets)
    for name in targets:
        expected_shape(name, 1)  # unknown target names fail here
    if len(samples) == 0:
        raise DataError(f"empty data set: no samples to train on (targets {targets})")
    if not targets:
        raise DataError("no targets requested")
    for s in samples:
        loc = f"sample id {s.id!r}" if s.id != "" else "sample"
        n = len(s.atoms)
        if n == 0:
            raise DataError(f"{where(s.source, loc)}: structure has no atoms")
        if not np.all(np.isfinite(s.atoms.positions)):
            raise DataError(f"{where(s.source, loc, 'positions')}: non-finite atom positions")
        if allow_missing and not any(name in s.targets for name in targets):
            raise DataError(f"{where(s.source, loc)}: carries none of the targets {targets}")
        for name in targets:
            if name not in s.targets:
                if allow_missing:
                    continue
                have = ", ".join(sorted(s.targets)) or "none"
                raise DataError(f"{where(s.source, loc, name)}: missing label (sample has: {have})")
            v = np.asarray(s.targets[name])
            shape = expected_shape(name, n)
            if v.shape != shape:
                raise DataError(
                    f"{where(s.source, loc, name)}: wrong shape {list(v.shape)}, expected {list(shape)}"
                    + (f" ({n} atoms)" if name in PER_ATOM else "")
                )
            if v.dtype.kind != "f":
                raise DataError(f"{where(s.source, loc, name)}: dtype {v.dtype}, expected float64")
            if name in s.masks:
                m = np.asarray(s.masks[name])
                if m.shape != (n,) or m.dtype != bool:
                    raise DataError(
                        f"{where(s.source, loc, name)}: mask has shape {list(m.shape)} dtype {m.dtype}, "
                        f"expected bool [{n}]"
                    )
                if not m.any():
                    raise DataError(f"{where(s.source, loc, name)}: mask selects no atom")
                v = v[m]
            bad = ~np.isfinite(v)
            if bad.any():
                idx = tuple(int(i) for i in np.argwhere(bad)[0])
                raise DataError(f"{where(s.source, loc, name)}: non-finite value (NaN/inf) at index {idx}")
            limit = MAX_ABS.get(name)
            if limit is not None and v.size and np.abs(v).max() > limit:
                idx = tuple(int(i) for i in np.unravel_index(np.abs(v).argmax(), v.shape))
                raise DataError(
                    f"{where(s.source, loc, name)}: |value| {np.abs(v).max():.4g} at index {idx} exceeds "
                    f"{limit:g}; expected {name} within +-{limit:g} — mixed units or a broken label?"
                )
    if allow_missing:
        for name in targets:
            if not any(name in s.targets for s in samples):
                raise DataError(f"no sample carries the target {name!r}")
