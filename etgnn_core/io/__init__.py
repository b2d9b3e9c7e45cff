"""Exports of predictions: JSON records, extended XYZ with tensors, phonopy BORN files."""

from etgnn_core.io.export import (
    independent_atoms,
    phonopy_born_text,
    prediction_record,
    read_extxyz_tensors,
    read_phonopy_born,
    to_json,
    write_extxyz,
    write_phonopy_born,
)

__all__ = [
    "independent_atoms",
    "phonopy_born_text",
    "prediction_record",
    "read_extxyz_tensors",
    "read_phonopy_born",
    "to_json",
    "write_extxyz",
    "write_phonopy_born",
]
