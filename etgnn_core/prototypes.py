"""Small reference crystals built in code, for tests, benchmarks and examples (no file needed)."""

from __future__ import annotations

import warnings

from ase import Atoms


def alpha_quartz(rattle: float = 0.0, seed: int = 0) -> Atoms:
    """alpha-quartz SiO2 (P3_2 21, 9 atoms; a = 4.916 A, c = 5.405 A), optionally rattled (stdev in A)."""
    from ase.spacegroup import crystal

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ase warns about the spacegroup setting
        atoms = crystal(
            ["Si", "O"],
            basis=[(0.4697, 0.0, 2 / 3), (0.4135, 0.2669, 0.1191 + 2 / 3)],
            spacegroup=154,
            cellpar=[4.916, 4.916, 5.405, 90, 90, 120],
        )
    if rattle:
        atoms.rattle(rattle, seed=seed)
    return atoms
