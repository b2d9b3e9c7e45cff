import ase


class AseAtomsAdaptor:
    @staticmethod
    def get_atoms(s, **kw):
        return ase.Atoms(symbols=s.symbols, positions=s.cart, cell=s.cell, pbc=True)
