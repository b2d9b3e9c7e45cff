"""Minimal stand-in for pymatgen's Structure.from_dict (GPU box has no pymatgen); checked against pymatgen."""
import numpy as np


class Structure:
    def __init__(self, cell, symbols, cart, props):
        self.cell, self.symbols, self.cart, self.props = cell, symbols, cart, props

    @classmethod
    def from_dict(cls, d):
        cell = np.array(d["lattice"]["matrix"], dtype=float)
        symbols, cart = [], []
        for s in d["sites"]:
            sp = s["species"]
            assert len(sp) == 1 and abs(sp[0].get("occu", 1) - 1) < 1e-8, "disordered"
            symbols.append(sp[0]["element"])
            cart.append(np.array(s["abc"], dtype=float) @ cell)
        return cls(cell, symbols, np.array(cart), d.get("properties", {}))
