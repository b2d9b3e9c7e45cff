"""Data loading: one loader per reference data set, upload loaders, validation and splits.

Every returned tensor follows :mod:`etgnn_core.keys` (names, shapes, index conventions); each
:class:`DatasetInfo` states the unit of every target, since the sets differ (the water sets are in
atomic units, the others in e, C/m^2, GPa, eV, eV/A, ppm).

>>> from etgnn_core.data import load_dataset, split_indices, validate_samples
>>> samples, info = load_dataset("perturbed/SiO2", limit=100)     # doctest: +SKIP
>>> validate_samples(samples, ["born_charges", "dielectric"])      # doctest: +SKIP
>>> split = split_indices(len(samples), seed=0)                    # doctest: +SKIP
"""

from .datasets import (
    DATASET_NAMES,
    data_root,
    ferroelectric_polarization,
    list_datasets,
    load_abo3_piezo,
    load_dataset,
    load_ferroelectric,
    load_matten_elasticity,
    load_matten_si_nmr,
    load_perturbed,
    load_phonon_becs,
    load_water,
    matten_elasticity_split,
    phonon_eps_ok,
)
from .extxyz import load_labelled_extxyz
from .poscar import load_poscar_zip, parse_poscar
from .sample import DataError, DatasetInfo, Sample
from .split import load_split, save_split, split_indices
from .validate import MAX_ABS, expected_shape, validate_samples

__all__ = [
    "DATASET_NAMES",
    "MAX_ABS",
    "DataError",
    "DatasetInfo",
    "Sample",
    "data_root",
    "expected_shape",
    "ferroelectric_polarization",
    "list_datasets",
    "load_abo3_piezo",
    "load_dataset",
    "load_ferroelectric",
    "load_labelled_extxyz",
    "load_matten_elasticity",
    "load_matten_si_nmr",
    "load_perturbed",
    "load_phonon_becs",
    "load_poscar_zip",
    "load_split",
    "load_water",
    "matten_elasticity_split",
    "parse_poscar",
    "phonon_eps_ok",
    "save_split",
    "split_indices",
    "validate_samples",
]
