"""Writing predictions: JSON records, extended XYZ with tensors, and phonopy ``BORN`` files.

A prediction for one structure is ``atoms`` (:class:`ase.Atoms`), ``tensors`` (name from
:mod:`etgnn_core.keys` -> array; per-atom tensors have a leading ``n_atoms`` axis), ``units``
(name -> unit string), ``per_atom`` (name -> bool) and the model name.  Index conventions are
those of :mod:`etgnn_core.keys` (e.g. ``born_charges[a, i, j]``: ``i`` field / polarization
direction, ``j`` displacement direction).

Flattening
    Wherever a tensor is stored as a flat list of numbers (extended XYZ columns and ``info``
    values, phonopy ``BORN`` lines) it is flattened **row-major** (C order) in the index order of
    :mod:`etgnn_core.keys`: ``born_charges[a]`` -> ``Z_xx Z_xy Z_xz Z_yx ... Z_zz`` with
    ``Z[i, j] = values[3 * i + j]``; ``piezoelectric[i, j, k] = values[9 * i + 3 * j + k]``;
    ``elastic[i, j, k, l] = values[27 * i + 9 * j + 3 * k + l]``.
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from ase import Atoms

from etgnn_core import keys
from etgnn_core.structure import StructureError, is_periodic, structure_label

__all__ = [
    "prediction_record",
    "to_json",
    "write_extxyz",
    "read_extxyz_tensors",
    "write_phonopy_born",
    "read_phonopy_born",
    "phonopy_born_text",
    "independent_atoms",
]

#: Tensors that are per-atom when ``per_atom`` does not say.
_PER_ATOM_DEFAULT = {keys.FORCES, keys.BORN_CHARGES, keys.SHIELDING}

SHAPE_SUFFIX = "_shape"
UNIT_SUFFIX = "_unit"


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def _is_per_atom(name: str, per_atom: Mapping[str, bool] | None) -> bool:
    if per_atom is not None and name in per_atom:
        return bool(per_atom[name])
    return name in _PER_ATOM_DEFAULT or name.endswith(keys.MASK_SUFFIX)


def _as_array(name: str, value) -> np.ndarray:
    if hasattr(value, "detach"):  # torch tensors
        value = value.detach().cpu().numpy()
    arr = np.asarray(value)
    if arr.dtype == object:
        raise ValueError(f"tensor {name!r}: not a numeric array")
    return arr


def _check_per_atom(name: str, arr: np.ndarray, n_atoms: int) -> None:
    if arr.ndim == 0 or arr.shape[0] != n_atoms:
        raise ValueError(
            f"tensor {name!r}: per-atom tensor of shape {tuple(arr.shape)} does not start with n_atoms = {n_atoms}"
        )


def _plain(arr: np.ndarray):
    """Nested lists of plain Python numbers; NaN/inf become None (valid JSON)."""
    if arr.dtype == bool:
        return arr.tolist()
    if np.issubdtype(arr.dtype, np.integer):
        return arr.astype(np.int64).tolist()
    values = arr.astype(np.float64).tolist()
    return _finite_or_none(values)


def _finite_or_none(obj):
    if isinstance(obj, list):
        return [_finite_or_none(o) for o in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _write_text(path_or_buffer, text: str) -> None:
    if hasattr(path_or_buffer, "write"):
        try:
            path_or_buffer.write(text)
        except TypeError:  # a binary buffer (io.BytesIO, file opened "wb")
            path_or_buffer.write(text.encode("utf-8"))
        return
    with open(os.fspath(path_or_buffer), "w", encoding="utf-8") as fh:
        fh.write(text)


def _read_text(path_or_buffer) -> str:
    if hasattr(path_or_buffer, "read"):
        data = path_or_buffer.read()
        return data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
    if isinstance(path_or_buffer, bytes | bytearray):
        return bytes(path_or_buffer).decode("utf-8")
    with open(os.fspath(path_or_buffer), encoding="utf-8") as fh:
        return fh.read()


# ----------------------------------------------------------------------------------------------
# JSON
# ----------------------------------------------------------------------------------------------
def prediction_record(
    atoms: Atoms,
    tensors: Mapping[str, object],
    units: Mapping[str, str],
    per_atom: Mapping[str, bool],
    model: str,
    source: str = "",
    index: int = 0,
    std: Mapping[str, object] | None = None,
    warnings: Sequence[str] | None = None,
) -> dict:
    """JSON-ready record of one prediction.

    Schema::

        {"source": str, "index": int, "formula": atoms.get_chemical_formula(), "model": str,
         "tensors": {NAME: {"values": nested lists, "std": nested lists (committees only),
                            "unit": str, "per_atom": bool}},
         "warnings": [str, ...]}

    ``std`` (committees): the calibrated standard deviation of each tensor, same shape and unit as
    ``values``; a single model gives no ``std`` key (it claims no uncertainty).  ``warnings``: one
    plain-language line per out-of-domain finding, always present (empty list when none).

    ``values`` keep the tensor's shape as nested lists of plain floats (per-atom tensors:
    ``values[atom]...``); NaN/inf become ``null``.  ``source`` defaults to
    ``atoms.info["source"]``.  A unit missing from ``units`` is ``""``; a name missing from
    ``per_atom`` is per-atom for forces, born_charges, shielding and ``*_mask``.  Raises
    ``ValueError`` when a per-atom tensor's first axis is not ``len(atoms)``.
    """
    out_tensors: dict[str, dict] = {}
    for name, value in tensors.items():
        arr = _as_array(name, value)
        pa = _is_per_atom(name, per_atom)
        if pa:
            _check_per_atom(name, arr, len(atoms))
        out_tensors[name] = {"values": _plain(arr)}
        if std and name in std:
            s = _as_array(name, std[name])
            if s.shape != arr.shape:
                raise ValueError(f"std of {name!r} has shape {list(s.shape)}, the values {list(arr.shape)}")
            out_tensors[name]["std"] = _plain(s)
        out_tensors[name].update({"unit": str(units.get(name, "")), "per_atom": pa})
    return {
        "source": str(source or atoms.info.get("source", "")),
        "index": int(index),
        "formula": atoms.get_chemical_formula(),
        "model": str(model),
        "tensors": out_tensors,
        "warnings": [str(w) for w in (warnings or [])],
    }


def to_json(records: Iterable[dict] | dict, *, indent: int | None = None) -> str:
    """One JSON list of records (a single record dict is wrapped in a list).

    Numbers are plain floats; NaN/inf (if a record was built by hand) become ``null``.
    """
    if isinstance(records, dict):
        records = [records]

    def clean(obj):
        if isinstance(obj, dict):
            return {str(k): clean(v) for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            return [clean(v) for v in obj]
        if isinstance(obj, np.ndarray):
            return clean(_plain(obj))
        if isinstance(obj, np.bool_):
            return bool(obj)
        if isinstance(obj, np.integer):
            return int(obj)
        if isinstance(obj, float | np.floating):
            f = float(obj)
            return f if math.isfinite(f) else None
        return obj

    return json.dumps(clean(list(records)), indent=indent, allow_nan=False)


# ----------------------------------------------------------------------------------------------
# extended XYZ
# ----------------------------------------------------------------------------------------------
def _shape_tag(shape: Sequence[int], per_atom: bool) -> str:
    dims = [str(int(d)) for d in shape]
    if per_atom:
        return "x".join(["n", *dims])
    return "x".join(dims) if dims else "scalar"


def _parse_shape_tag(tag) -> tuple[bool, tuple[int, ...]]:
    text = str(tag).strip()
    parts = text.split("x")
    if parts[0] == "n":
        return True, tuple(int(p) for p in parts[1:])
    if text == "scalar":
        return False, ()
    return False, tuple(int(p) for p in parts)


def _simple_info_value(value) -> bool:
    if isinstance(value, str | bool | int | float | np.bool_ | np.number):
        return True
    if isinstance(value, np.ndarray):
        return value.dtype != object and value.ndim <= 2
    if isinstance(value, list | tuple):
        try:
            arr = np.asarray(value)
        except Exception:
            return False
        return arr.dtype != object and arr.ndim == 1
    return False


def write_extxyz(path_or_buffer, items: Iterable[tuple], *, units: Mapping[str, str] | None = None) -> None:
    """Write predictions as extended XYZ, one frame per item, readable by ``ase.io.read``.

    ``items``: ``(atoms, tensors, per_atom)`` or ``(atoms, tensors, per_atom, units)`` tuples.
    For every tensor NAME:

    * per-atom tensors are per-atom columns named NAME, flattened row-major per atom
      (``born_charges`` -> 9 columns ``Z_xx Z_xy ... Z_zz``; ``forces`` -> 3 columns);
    * per-structure tensors are ``info[NAME]``, flattened row-major (a scalar stays a number);
    * ``info[NAME_shape]`` records the shape: ``"nx3x3"`` (per atom: ``n`` then the per-atom
      shape), ``"3x3"``, ``"3x3x3"``, ``"scalar"``;
    * ``info[NAME_unit]`` the unit, when known.

    ``ase.io.read`` moves ``energy``, ``forces`` and ``dipole`` into a SinglePointCalculator
    (``atoms.get_forces()`` works); :func:`read_extxyz_tensors` restores every tensor with its
    shape.  Per-atom columns are written by ASE with 8 decimals; ``info`` values with full
    precision.  Atoms' ``info`` entries ASE cannot write (dicts, objects such as a CIF's
    ``spacegroup``) are dropped; ``info["source"]``/``info["frame"]`` are kept.
    """
    import ase.io

    frames: list[Atoms] = []
    for item in items:
        if len(item) == 3:
            atoms, tensors, per_atom = item
            item_units = units or {}
        elif len(item) == 4:
            atoms, tensors, per_atom, item_units = item
            item_units = {**(units or {}), **(item_units or {})}
        else:
            raise ValueError("write_extxyz: items are (atoms, tensors, per_atom[, units]) tuples")
        frame = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
        for key, value in atoms.arrays.items():
            if key not in ("numbers", "positions") and key not in tensors and value.dtype != object:
                frame.arrays[key] = value.copy()
        for key, value in atoms.info.items():
            if _simple_info_value(value) and not key.endswith(SHAPE_SUFFIX):
                frame.info[key] = value
        n = len(atoms)
        for name, value in tensors.items():
            arr = _as_array(name, value)
            pa = _is_per_atom(name, per_atom)
            if pa:
                _check_per_atom(name, arr, n)
                flat = arr.reshape(n, -1) if arr.ndim > 1 else arr.reshape(n)
                if flat.ndim == 2 and flat.shape[1] == 1:
                    flat = flat[:, 0]
                if flat.dtype != bool:
                    flat = flat.astype(np.float64)
                frame.info.pop(name, None)
                frame.arrays[name] = np.ascontiguousarray(flat)
                frame.info[name + SHAPE_SUFFIX] = _shape_tag(arr.shape[1:], True)
            else:
                frame.arrays.pop(name, None)
                if arr.ndim == 0:
                    frame.info[name] = bool(arr) if arr.dtype == bool else float(arr)
                else:
                    flat = arr.reshape(-1)
                    frame.info[name] = flat if flat.dtype == bool else flat.astype(np.float64)
                frame.info[name + SHAPE_SUFFIX] = _shape_tag(arr.shape, False)
            unit = item_units.get(name)
            if unit:
                frame.info[name + UNIT_SUFFIX] = str(unit)
        frames.append(frame)

    buf = io.StringIO()
    ase.io.write(buf, frames, format="extxyz")
    _write_text(path_or_buffer, buf.getvalue())


def read_extxyz_tensors(path_or_buffer) -> list[tuple[Atoms, dict[str, np.ndarray]]]:
    """Read a file written by :func:`write_extxyz`: a list of ``(atoms, tensors)``.

    Every NAME with an ``info[NAME_shape]`` entry is restored with its shape (per-atom tensors
    ``[n_atoms, ...]``), from the per-atom columns, ``info``, or the calculator ASE builds for
    ``energy``/``forces``/``dipole``.  The returned atoms carry no tensor columns, no
    ``NAME_shape`` entries and no calculator; ``info[NAME_unit]`` and other ``info`` stay.
    ``path_or_buffer``: a path, a text/binary buffer, or the bytes of the file.
    """
    import ase.io

    text = _read_text(path_or_buffer)
    images = ase.io.read(io.StringIO(text), index=":", format="extxyz")
    out: list[tuple[Atoms, dict[str, np.ndarray]]] = []
    for frame_index, atoms in enumerate(images):
        results = dict(atoms.calc.results) if atoms.calc is not None else {}
        n = len(atoms)
        tensors: dict[str, np.ndarray] = {}
        names = [k[: -len(SHAPE_SUFFIX)] for k in list(atoms.info) if k.endswith(SHAPE_SUFFIX)]
        for name in names:
            tag = atoms.info.pop(name + SHAPE_SUFFIX)
            try:
                pa, shape = _parse_shape_tag(tag)
            except ValueError as exc:
                raise ValueError(f"frame {frame_index}: bad {name}{SHAPE_SUFFIX} {tag!r}") from exc
            if name in atoms.arrays:
                value = atoms.arrays.pop(name)
            elif name in atoms.info:
                value = atoms.info.pop(name)
            elif name in results:
                value = results[name]
            else:
                raise ValueError(f"frame {frame_index}: {name}{SHAPE_SUFFIX} given but no {name} values")
            arr = np.asarray(value)
            if arr.ndim == 2 and not pa and arr.shape != shape:
                # Older ASE versions turned 9-number info values into Fortran-ordered 3x3 arrays.
                arr = arr.ravel(order="F")
            full = (n, *shape) if pa else shape
            if arr.size != int(np.prod(full)):
                raise ValueError(f"frame {frame_index}: {name} has {arr.size} values, expected shape {full}")
            arr = arr.reshape(full)
            tensors[name] = arr if arr.dtype == bool else arr.astype(np.float64)
        atoms.calc = None
        out.append((atoms, tensors))
    return out


# ----------------------------------------------------------------------------------------------
# phonopy BORN
# ----------------------------------------------------------------------------------------------
def _spglib_dataset(atoms: Atoms, symprec: float, what: str):
    label = structure_label(atoms)
    if not is_periodic(atoms) or not np.all(atoms.pbc):
        raise StructureError(
            f"{label}: {what} needs a periodic crystal (pbc in all three directions and a "
            "lattice); this structure is a molecule or a slab/wire",
            source=atoms.info.get("source"),
            frame=atoms.info.get("frame"),
            key="cell",
        )
    import spglib

    cell = (
        np.asarray(atoms.cell[:], dtype=float),
        np.asarray(atoms.get_scaled_positions(wrap=False), dtype=float),
        np.asarray(atoms.numbers, dtype=int),
    )
    try:
        dataset = spglib.get_symmetry_dataset(cell, symprec=symprec)
    except Exception as exc:  # spglib >= 2.5 may raise instead of returning None
        dataset = None
        err = str(exc)
    else:
        err = ""
    if dataset is None:
        try:
            err = err or str(spglib.get_error_message())
        except Exception:
            pass
        raise StructureError(
            f"{label}: spglib could not find the symmetry needed for {what} "
            f"(symprec={symprec:g}){': ' + err if err else ''}; {what} needs a periodic crystal",
            source=atoms.info.get("source"),
            frame=atoms.info.get("frame"),
        )
    return dataset


def _ds(dataset, name: str):
    return getattr(dataset, name) if hasattr(dataset, name) else dataset[name]


def independent_atoms(atoms: Atoms, symprec: float = 1e-5) -> np.ndarray:
    """Indices of the symmetry-independent atoms, as phonopy orders them in ``BORN``.

    These are the distinct values of spglib's ``equivalent_atoms`` (the first atom of each orbit)
    in increasing order.  Raises :class:`StructureError` for a molecule or when spglib fails.
    """
    dataset = _spglib_dataset(atoms, symprec, "phonopy BORN")
    return np.unique(np.asarray(_ds(dataset, "equivalent_atoms"), dtype=int))


def phonopy_born_text(atoms: Atoms, dielectric, born_charges, symprec: float = 1e-5) -> str:
    """Text of a phonopy ``BORN`` file; see :func:`write_phonopy_born`."""
    eps = np.asarray(_as_array(keys.DIELECTRIC, dielectric), dtype=float)
    z = np.asarray(_as_array(keys.BORN_CHARGES, born_charges), dtype=float)
    if eps.shape != (3, 3):
        raise ValueError(f"dielectric must have shape (3, 3), got {tuple(eps.shape)}")
    if z.shape != (len(atoms), 3, 3):
        raise ValueError(f"born_charges must have shape ({len(atoms)}, 3, 3), got {tuple(z.shape)}")
    if not (np.isfinite(eps).all() and np.isfinite(z).all()):
        raise ValueError("dielectric and born_charges must be finite")
    indep = independent_atoms(atoms, symprec)
    lines = ["# epsilon and Z* of atoms " + " ".join(str(i + 1) for i in indep)]
    lines.append(" ".join(f"{x:13.8f}" for x in eps.reshape(-1)))
    for i in indep:
        lines.append(" ".join(f"{x:13.8f}" for x in z[i].reshape(-1)))
    return "\n".join(lines) + "\n"


def write_phonopy_born(path_or_buffer, atoms: Atoms, dielectric, born_charges, symprec: float = 1e-5) -> None:
    """Write a phonopy ``BORN`` file (non-analytical term correction parameters).

    Format (as read by phonopy's ``parse_BORN``)::

        # epsilon and Z* of atoms 1 3          <- line 1
        e_xx e_xy e_xz e_yx e_yy e_yz e_zx e_zy e_zz     <- dielectric, row-major
        Z_xx Z_xy Z_xz Z_yx ... Z_zz          <- one line per symmetry-independent atom

    Line 1 is where phonopy reads the NAC unit conversion factor: phonopy parses its first
    token as a float and, when that fails (here ``#``), uses the default factor of the
    calculator interface -- the same header phonopy's own ``write_BORN`` produces (the numbers
    are the 1-based indices of the independent atoms).  A blank line 1 is rejected by phonopy.

    The independent atoms are found with spglib (``equivalent_atoms``; see
    :func:`independent_atoms`); the Born charges of the first atom of each orbit are written, in
    increasing atom order, exactly as predicted (no symmetrization); phonopy rebuilds the others
    by symmetry.  Each 3x3 tensor is written row-major with the row the electric-field /
    polarization index and the column the displacement index, ``Z[i, j] = (Omega/e) dP_i/du_j``
    -- the convention of :mod:`etgnn_core.keys`, of VASP's OUTCAR and of phonopy.

    ``atoms`` must be the unit cell phonopy is given (ideally the primitive cell: phonopy finds
    the independent atoms of its primitive cell, whose atom order follows the unit cell's).
    Raises :class:`StructureError` for a molecule / non-3D-periodic structure or when spglib
    fails, ``ValueError`` for wrong shapes.  ``path_or_buffer``: a path or a text/binary buffer.
    """
    _write_text(path_or_buffer, phonopy_born_text(atoms, dielectric, born_charges, symprec))


def read_phonopy_born(path_or_buffer, atoms: Atoms, symprec: float = 1e-5) -> tuple[np.ndarray, np.ndarray]:
    """Read a phonopy ``BORN`` file for ``atoms``: ``(dielectric [3, 3], born_charges [n, 3, 3])``.

    The charges of the listed independent atoms are expanded to all atoms by the crystal's
    symmetry operations, as phonopy does: for an operation ``S`` (Cartesian) taking atom ``a``
    to its representative ``r``, ``Z_a = S^T Z_r S``.  Line 1 (conversion factor / comment) is
    ignored; blank lines and ``#`` comments after it are skipped.
    """
    text = _read_text(path_or_buffer)
    lines = text.splitlines()
    if not lines:
        raise ValueError("BORN file is empty")
    rows: list[list[float]] = []
    for lineno, line in enumerate(lines[1:], start=2):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            values = [float(v) for v in stripped.split()]
        except ValueError as exc:
            raise ValueError(f"BORN line {lineno}: not numbers: {stripped[:60]!r}") from exc
        if len(values) != 9:
            raise ValueError(f"BORN line {lineno}: expected 9 numbers, got {len(values)}")
        rows.append(values)
    if not rows:
        raise ValueError("BORN file has no dielectric tensor line")
    dielectric = np.asarray(rows[0], dtype=float).reshape(3, 3)

    dataset = _spglib_dataset(atoms, symprec, "phonopy BORN")
    equivalent = np.asarray(_ds(dataset, "equivalent_atoms"), dtype=int)
    indep = np.unique(equivalent)
    if len(rows) - 1 != len(indep):
        raise ValueError(
            f"BORN file has {len(rows) - 1} Born charge line(s) but the structure has "
            f"{len(indep)} symmetry-independent atom(s) (symprec={symprec:g})"
        )
    z_indep = {int(a): np.asarray(r, dtype=float).reshape(3, 3) for a, r in zip(indep, rows[1:])}

    rotations = np.asarray(_ds(dataset, "rotations"), dtype=float)
    translations = np.asarray(_ds(dataset, "translations"), dtype=float)
    lattice = np.asarray(atoms.cell[:], dtype=float)  # rows = lattice vectors
    frac = atoms.get_scaled_positions(wrap=False)
    a_mat = lattice.T  # columns = lattice vectors: r = A x
    a_inv = np.linalg.inv(a_mat)
    born = np.zeros((len(atoms), 3, 3))
    for a in range(len(atoms)):
        r = int(equivalent[a])
        if r == a:
            born[a] = z_indep[r]
            continue
        diff = frac[a] @ rotations.transpose(0, 2, 1) + translations - frac[r]  # [n_ops, 3]
        diff -= np.rint(diff)
        dist = np.linalg.norm(diff @ lattice, axis=1)
        k = int(np.argmin(dist))
        s = a_mat @ rotations[k] @ a_inv  # Cartesian rotation taking atom a to atom r
        born[a] = s.T @ z_indep[r] @ s
    return dielectric, born
