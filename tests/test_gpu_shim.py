"""benchmarks/gpu/pymatgen_shim (for a GPU box without pymatgen) builds the atoms pymatgen builds."""

from __future__ import annotations

import numpy as np
from conftest import load_script

SHIM = "benchmarks/gpu/pymatgen_shim/pymatgen"


def test_shim_matches_pymatgen_on_a_skewed_cell_with_coordinates_outside_it():
    from pymatgen.core import Lattice, Structure
    from pymatgen.io.ase import AseAtomsAdaptor

    lattice = Lattice.from_parameters(4.1, 5.3, 6.2, 81.0, 97.0, 112.0)
    real = Structure(lattice, ["Ba", "Ti", "O", "O", "O"],
                     [[0, 0, 0], [0.5, 0.52, 0.48], [0.5, 0.5, 1.03], [-0.02, 0.5, 0.5], [0.5, 0.0, 0.5]])
    d = real.as_dict()
    core = load_script(f"{SHIM}/core.py", "shim_core")  # not "pymatgen.core": the real one stays importable
    adaptor = load_script(f"{SHIM}/io/ase.py", "shim_io_ase").AseAtomsAdaptor
    want, got = AseAtomsAdaptor.get_atoms(real), adaptor.get_atoms(core.Structure.from_dict(d))
    assert got.get_chemical_symbols() == want.get_chemical_symbols()
    np.testing.assert_allclose(got.positions, want.positions, atol=1e-12)
    np.testing.assert_allclose(got.cell.array, want.cell.array, atol=1e-12)
    assert got.pbc.all() and want.pbc.all()
