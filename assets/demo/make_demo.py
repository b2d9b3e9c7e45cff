"""Regenerate the demo structures in this folder (run from the repository root).

    .venv/bin/python assets/demo/make_demo.py

Experimental lattice parameters and Wyckoff positions (room temperature unless noted):
alpha-quartz SiO2 P3_121 (Levien et al. 1980), wurtzite ZnO (Kisi & Elcombe 1989), wurtzite AlN
(Schulz & Thiemann 1977), corundum Al2O3 R-3c (Lewis et al. 1982, primitive rhombohedral cell),
monoclinic HfO2 P2_1/c (Hann et al. 1985), tetragonal BaTiO3 P4mm (Kwei et al. 1993),
wurtzite CdS (Xu & Ching 1993), and a gas-phase water molecule.
"""

from __future__ import annotations

import json
from pathlib import Path

import ase.io
import numpy as np
import spglib
from ase import Atoms
from ase.build import bulk
from ase.spacegroup import crystal

HERE = Path(__file__).resolve().parent


def primitive(atoms: Atoms) -> Atoms:
    cell = (atoms.cell[:], atoms.get_scaled_positions(), atoms.numbers)
    lat, pos, num = spglib.standardize_cell(cell, to_primitive=True, no_idealize=False, symprec=1e-4)
    return Atoms(numbers=num, scaled_positions=pos, cell=lat, pbc=True)


def main() -> None:
    entries = []

    quartz = crystal(["Si", "O"], basis=[(0.4697, 0.0, 1 / 3), (0.4135, 0.2669, 0.2142)], spacegroup=152,
                     cellpar=[4.9134, 4.9134, 5.4052, 90, 90, 120])
    ase.io.write(HERE / "SiO2_alpha_quartz.cif", quartz, format="cif")
    entries.append(dict(file="SiO2_alpha_quartz.cif", name="α-quartz SiO₂ (CIF, 9 atoms)",
                        description="alpha-quartz, P3_121, a = 4.913 Å, c = 5.405 Å; piezoelectric, non-centrosymmetric"))

    zno = bulk("ZnO", "wurtzite", a=3.2496, c=5.2042, u=0.3819)
    ase.io.write(HERE / "POSCAR_ZnO_wurtzite", zno, format="vasp", direct=True)
    entries.append(dict(file="POSCAR_ZnO_wurtzite", name="wurtzite ZnO (POSCAR, 4 atoms)",
                        description="wurtzite ZnO, P6_3mc, a = 3.250 Å, c = 5.204 Å"))

    aln = bulk("AlN", "wurtzite", a=3.112, c=4.982, u=0.382)
    from pymatgen.io.ase import AseAtomsAdaptor

    (HERE / "AlN_wurtzite.json").write_text(json.dumps(AseAtomsAdaptor.get_structure(aln).as_dict(), indent=1))
    entries.append(dict(file="AlN_wurtzite.json", name="wurtzite AlN (pymatgen JSON, 4 atoms)",
                        description="wurtzite AlN, P6_3mc, a = 3.112 Å, c = 4.982 Å; piezoelectric"))

    cds = bulk("CdS", "wurtzite", a=4.136, c=6.714, u=0.377)
    ase.io.write(HERE / "CdS_wurtzite.vasp", cds, format="vasp", direct=True)
    entries.append(dict(file="CdS_wurtzite.vasp", name="wurtzite CdS (VASP, 4 atoms)",
                        description="wurtzite CdS, P6_3mc, a = 4.136 Å, c = 6.714 Å"))

    corundum = crystal(["Al", "O"], basis=[(0.0, 0.0, 0.35216), (0.30624, 0.0, 0.25)], spacegroup=167,
                       cellpar=[4.7589, 4.7589, 12.991, 90, 90, 120])
    corundum = primitive(corundum)
    ase.io.write(HERE / "Al2O3_corundum.cif", corundum, format="cif")
    entries.append(dict(file="Al2O3_corundum.cif", name="corundum Al₂O₃ (CIF, 10 atoms)",
                        description="corundum, R-3c, primitive rhombohedral cell of a = 4.759 Å, c = 12.991 Å"))

    hfo2 = crystal(["Hf", "O", "O"], basis=[(0.2759, 0.0404, 0.2089), (0.0703, 0.3317, 0.3447),
                                            (0.4423, 0.7569, 0.4789)], spacegroup=14,
                   cellpar=[5.1156, 5.1722, 5.2948, 90, 99.18, 90])
    ase.io.write(HERE / "HfO2_monoclinic.cif", hfo2, format="cif")
    entries.append(dict(file="HfO2_monoclinic.cif", name="monoclinic HfO₂ (CIF, 12 atoms)",
                        description="baddeleyite HfO2, P2_1/c, a = 5.116, b = 5.172, c = 5.295 Å, β = 99.18°"))

    a, c = 3.9925, 4.0365
    bto = Atoms("BaTiO3", scaled_positions=[(0, 0, 0), (0.5, 0.5, 0.482), (0.5, 0.5, 0.016),
                                            (0.5, 0.0, 0.515), (0.0, 0.5, 0.515)],
                cell=[a, a, c], pbc=True)
    ase.io.write(HERE / "BaTiO3_tetragonal.extxyz", bto, format="extxyz")
    entries.append(dict(file="BaTiO3_tetragonal.extxyz", name="tetragonal BaTiO₃ (extended XYZ, 5 atoms)",
                        description="ferroelectric BaTiO3, P4mm, a = 3.993 Å, c = 4.037 Å, Ti displaced along c"))

    theta = np.deg2rad(104.52 / 2)
    r = 0.9572
    water = Atoms("OH2", positions=[(0, 0, 0), (r * np.sin(theta), 0, r * np.cos(theta)),
                                    (-r * np.sin(theta), 0, r * np.cos(theta))])
    ase.io.write(HERE / "H2O_molecule.xyz", water, format="xyz", comment="water molecule (gas-phase geometry)")
    entries.append(dict(file="H2O_molecule.xyz", name="water molecule H₂O (XYZ, 3 atoms)",
                        description="gas-phase water, r(OH) = 0.957 Å, HOH = 104.5°; a molecule (no cell)"))

    (HERE / "index.json").write_text(json.dumps(entries, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
