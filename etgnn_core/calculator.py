"""ASE calculator: energy / forces where the model has them, every other tensor as an extra result.

    atoms.calc = ETGNNCalculator("ferroelectric_forces_bec")
    atoms.get_forces(); atoms.calc.results["born_charges"]   # [n_atoms, 3, 3], e

Forces are the paper's direct edge form F_j = sum_k t_kj e_kj (not -dE/dr), so they are not
conservative: fine for relaxations and short MD, but energy drift is not guaranteed to vanish.
"""

from __future__ import annotations

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

from etgnn_core.api import Model, load_model


class ETGNNCalculator(Calculator):
    """ASE calculator around an ETGNN model (a name, a model folder, or a loaded :class:`Model`)."""

    def __init__(self, model: str | Model = "ferroelectric_forces_bec", device=None, **kwargs):
        super().__init__(**kwargs)
        self.model = load_model(model, device=device) if isinstance(model, str) else model
        self.implemented_properties = list(self.model.units)
        if "energy" in self.implemented_properties:
            self.implemented_properties.append("free_energy")

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        pred = self.model.predict(self.atoms)
        self.results = {}
        for name, value in pred.items():
            self.results[name] = float(value) if np.ndim(value) == 0 else np.array(value)
        if "energy" in self.results:
            self.results["free_energy"] = self.results["energy"]
