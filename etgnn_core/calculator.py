"""ASE calculator: energy / forces where the model has them, every other tensor as an extra result.

    from ase.md.verlet import VelocityVerlet
    atoms.calc = ETGNNCalculator("ferroelectric_forces_bec")
    VelocityVerlet(atoms, timestep=1 * ase.units.fs).run(100)
    atoms.calc.results["born_charges"]          # [n_atoms, 3, 3], e, of the last step
    atoms.calc.get_property("born_charges", atoms)

Results are named as :mod:`etgnn_core.keys` (``born_charges``, ``dielectric``, ``dipole``,
``polarizability``, ``piezoelectric``, ``elastic``, ``shielding``, ``energy``, ``forces``) and,
for ASE's own property names, also ``born_effective_charges`` and ``dielectric_tensor``.  Units
are the model card's (``calc.units``), except the ASE properties ``energy``/``free_energy``,
``forces`` and ``dipole``, which are given in ASE units (eV, eV/Angstrom, e*Angstrom) when the
model uses Hartree / bohr units.

A property the model does not predict (``forces`` from a Born-charge-only model, ``stress``
from any model) raises :class:`ase.calculators.calculator.PropertyNotImplementedError` naming the
model and what it does predict -- as every ASE calculator does for an unsupported property.

Forces are the paper's direct edge form F_j = sum_k t_kj e_kj (not -dE/dr), so they are not
conservative: fine for relaxations and short MD, but energy is not conserved exactly.  A model
with forces and no energy gives no ``energy``: ``atoms.get_potential_energy()`` (and an
``MDLogger``) then raise PropertyNotImplementedError; run MD without a logger that needs it.
"""

from __future__ import annotations

import numpy as np
from ase import units as ase_units
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes

from etgnn_core.api import DEFAULT_MAX_ATOMS, Model, load_model

# ASE's names for two of our tensors (ase.calculators.calculator.all_properties).
ASE_ALIASES = {"born_charges": "born_effective_charges", "dielectric": "dielectric_tensor"}
# Units converted to ASE's for ASE's standard properties: unit -> (ASE unit, factor).
_TO_ASE = {
    "energy": {"Hartree": ("eV", ase_units.Hartree), "Ha": ("eV", ase_units.Hartree)},
    "forces": {
        "Hartree/bohr": ("eV/Angstrom", ase_units.Hartree / ase_units.Bohr),
        "Ha/bohr": ("eV/Angstrom", ase_units.Hartree / ase_units.Bohr),
    },
    "dipole": {"e*bohr": ("e*Angstrom", ase_units.Bohr)},
}


class ETGNNCalculator(Calculator):
    """ASE calculator around an ETGNN model (a name, a model folder, or a loaded :class:`Model`).

    ``device``: None / "auto" (CUDA when available), "cpu" or "cuda".  ``max_atoms``: larger
    structures are refused with a StructureError.  ``calc.units`` maps every result to its unit;
    ``calc.prediction`` is the last :class:`etgnn_core.api.Prediction`.
    """

    name = "etgnn"

    def __init__(
        self,
        model: str | Model = "ferroelectric_forces_bec",
        device=None,
        max_atoms: int | None = DEFAULT_MAX_ATOMS,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.model = model if isinstance(model, Model) else load_model(str(model), device=device)
        self.max_atoms = max_atoms
        self.prediction = None
        self.units: dict[str, str] = {}
        for name, unit in self.model.units.items():
            self.units[name] = _TO_ASE.get(name, {}).get(unit, (unit, 1.0))[0]
            if name in ASE_ALIASES:
                self.units[ASE_ALIASES[name]] = unit
        if "energy" in self.units:
            self.units["free_energy"] = self.units["energy"]
        self.implemented_properties = list(self.units)

    def __repr__(self) -> str:
        return f"ETGNNCalculator({self.model.name!r}, results={list(self.units)})"

    def get_property(self, name, atoms=None, allow_calculation=True):
        if name not in self.implemented_properties:
            hint = ""
            if name in ("forces", "energy", "free_energy", "stress"):
                hint = " (for MD or relaxations use a model with forces, e.g. ferroelectric_forces_bec)"
            raise PropertyNotImplementedError(
                f"{name!r} is not predicted by model {self.model.name!r}; it gives "
                f"{', '.join(self.implemented_properties)}{hint}"
            )
        return super().get_property(name, atoms, allow_calculation)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        pred = self.model.predict(self.atoms, max_atoms=self.max_atoms)
        self.prediction = pred
        results = {}
        for name, value in pred.items():
            factor = _TO_ASE.get(name, {}).get(pred.units.get(name, ""), (None, 1.0))[1]
            value = np.asarray(value, dtype=np.float64) * factor
            results[name] = float(value) if value.ndim == 0 else value
            if name in ASE_ALIASES:
                results[ASE_ALIASES[name]] = value.copy()
        if "energy" in results:
            results["free_energy"] = results["energy"]
        self.results = results
