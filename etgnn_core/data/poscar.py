"""ETGNN layout: a zip of ``<id>.vasp`` POSCAR files plus headerless CSVs ``id,v1,v2,...``.

The CSV file name says what it labels (case-insensitive):

* ``born``  -> ``born_charges`` [n, 3, 3], e.  9 numbers per atom in POSCAR atom order, each block
  read row-major: ``Z[a, i, j] = v[9 * a + 3 * i + j]``, row ``i`` = field/polarization direction,
  column ``j`` = displacement direction (:mod:`etgnn_core.keys`).
* ``dielectric`` -> ``dielectric`` [3, 3], electronic (clamped-ion), dimensionless, row-major.
* ``piezo`` -> ``piezoelectric`` [3, 3, 3], C/m^2, ``e[i, j, k] = v[9 * i + 3 * j + k]``,
  ``i`` = polarization direction, ``(j, k)`` = strain pair.

The CSV is the index: every CSV row becomes a sample (rows of several CSVs are joined on the id),
POSCARs without a CSV row are skipped.  POSCARs are parsed from the zip in memory (no extraction)
with a small parser: it skips ase.io.read's format detection and per-file set-up, which dominate
for thousands of small POSCARs (the tests check it against ase.io.read).  Unusual files (VASP 4
without a species line) fall back to ``ase.io.read(io.StringIO(text), format="vasp")``.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path, PurePosixPath

import ase
import ase.io
import numpy as np
from ase.data import atomic_numbers

from .. import keys
from ..structure import max_decompressed
from .sample import DataError, Sample

POSCAR_SUFFIXES = (".vasp", ".poscar")


def read_bytes(obj, name: str = "upload") -> tuple[bytes, str]:
    """Path / str path / bytes / file-like (``.read()`` or ``.getvalue()``) -> (bytes, display name)."""
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj), name
    if isinstance(obj, (str, os.PathLike)):
        p = Path(obj)
        try:
            return p.read_bytes(), str(p)
        except OSError as exc:
            raise DataError(f"{p}: cannot read ({exc})") from None
    if hasattr(obj, "getvalue"):
        return bytes(obj.getvalue()), getattr(obj, "name", name) or name
    if hasattr(obj, "read"):
        data = obj.read()
        return (data.encode() if isinstance(data, str) else bytes(data)), getattr(obj, "name", name) or name
    raise DataError(f"{name}: expected a path, bytes or a file object, got {type(obj).__name__}")


def parse_poscar(text: str, source: str = "POSCAR") -> ase.Atoms:
    """POSCAR/CONTCAR text (VASP 5, Direct or Cartesian, optional Selective dynamics) -> ase.Atoms.

    Positions and cell in Angstrom (the scale factor is applied; a negative scale is a volume),
    ``pbc`` all True.  Files without a species line are handed to ``ase.io.read``.
    """
    lines = text.splitlines()
    try:
        scale = float(lines[1].split()[0])
        cell = np.array([lines[i].split()[:3] for i in (2, 3, 4)], dtype=np.float64)
        species = lines[5].split()
        if not species or not species[0][0].isalpha():
            return _ase_poscar(text, source)  # VASP 4: counts without a species line
        counts = [int(c) for c in lines[6].split()]
        if len(counts) != len(species):
            raise ValueError(f"{len(species)} species but {len(counts)} counts")
        k = 7
        if lines[k].strip()[:1] in "sS":
            k += 1
        mode = lines[k].strip()[:1]
        n = sum(counts)
        block = lines[k + 1 : k + 1 + n]
        if len(block) != n:
            raise ValueError(f"{n} atoms announced, {len(block)} position lines found")
        pos = np.array([ln.split()[:3] for ln in block], dtype=np.float64)
        numbers = np.repeat([atomic_numbers[s.split("/")[0].split("_")[0]] for s in species], counts)
    except (IndexError, ValueError, KeyError) as exc:
        raise DataError(f"{source}: malformed POSCAR ({type(exc).__name__}: {exc})") from None
    if scale < 0:
        scale = (-scale / abs(np.linalg.det(cell))) ** (1.0 / 3.0)
    cell = cell * scale
    if mode in "cCkK":
        return ase.Atoms(numbers=numbers, positions=pos * scale, cell=cell, pbc=True)
    return ase.Atoms(numbers=numbers, scaled_positions=pos, cell=cell, pbc=True)


def _ase_poscar(text: str, source: str) -> ase.Atoms:
    try:
        return ase.io.read(io.StringIO(text), format="vasp")
    except Exception as exc:  # noqa: BLE001 - ase raises many types on malformed input
        raise DataError(f"{source}: malformed POSCAR ({type(exc).__name__}: {exc})") from None


def target_from_csv_name(csv_name: str) -> str:
    """CSV file name -> target name (``born``/``Born`` -> born_charges, ``dielectric``, ``piezo...``)."""
    low = PurePosixPath(str(csv_name).replace("\\", "/")).name.lower()
    found = []
    if "born" in low or "bec" in low:
        found.append(keys.BORN_CHARGES)
    if "dielectric" in low or "epsilon" in low:
        found.append(keys.DIELECTRIC)
    if "piezo" in low:
        found.append(keys.PIEZOELECTRIC)
    if len(found) != 1:
        raise DataError(
            f"{csv_name}: cannot tell the target from the file name "
            "(expected exactly one of 'born', 'dielectric', 'piezoelectric' in it)"
        )
    return found[0]


def read_id_csv(data: bytes, source: str) -> list[tuple[int, str, np.ndarray]]:
    """Headerless ``id,v1,v2,...`` CSV -> [(line number (1-based), id, float64 values)].

    A first line whose value fields are all non-numeric is taken as a header and skipped.
    Duplicate ids, empty ids and non-numeric values are DataErrors naming file and line.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{source}: not UTF-8 text ({exc})") from None
    rows: list[tuple[int, str, np.ndarray]] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        fields = [f.strip() for f in line.split(",")]
        while fields and fields[-1] == "":
            fields.pop()  # trailing comma
        sid, vals = fields[0], fields[1:]
        try:
            values = np.array(vals, dtype=np.float64)
        except ValueError:
            if not rows and lineno == 1 and all(not _is_number(v) for v in vals):
                continue  # header line
            bad = next(v for v in vals if not _is_number(v))
            raise DataError(f"{source}, line {lineno} (id {sid!r}): non-numeric value {bad!r}") from None
        if not sid:
            raise DataError(f"{source}, line {lineno}: empty id")
        if sid in seen:
            raise DataError(f"{source}, line {lineno} (id {sid!r}): duplicate id (first on line {seen[sid]})")
        seen[sid] = lineno
        rows.append((lineno, sid, values))
    return rows


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _open_zip(obj, name: str) -> tuple[zipfile.ZipFile, str]:
    data, label = read_bytes(obj, name) if not isinstance(obj, (str, os.PathLike)) else (None, str(obj))
    try:
        zf = zipfile.ZipFile(io.BytesIO(data) if data is not None else str(obj))
    except (OSError, zipfile.BadZipFile) as exc:
        raise DataError(f"{label}: not a readable zip file ({exc})") from None
    return zf, label


def poscar_members(zf: zipfile.ZipFile, label: str) -> dict[str, str]:
    """id -> member name for every ``*.vasp`` / ``*.poscar`` file in the zip (any folder)."""
    out: dict[str, str] = {}
    for member in zf.namelist():
        p = PurePosixPath(member)
        if member.endswith("/") or "__MACOSX" in p.parts or p.name.startswith("."):
            continue
        if p.suffix.lower() not in POSCAR_SUFFIXES:
            continue
        sid = p.stem
        if sid in out:
            raise DataError(f"{label}: id {sid!r} appears twice ({out[sid]} and {member})")
        out[sid] = member
    return out


def load_poscar_zip(
    zip_path_or_bytes,
    csv_files: dict,
    name: str = "upload.zip",
    limit: int | None = None,
) -> list[Sample]:
    """Samples from a zip of ``<id>.vasp`` POSCARs labelled by headerless CSVs (see module docstring).

    ``csv_files``: CSV file name -> path, bytes or file object.  The file name decides the target.
    Samples come in CSV row order (first CSV, then ids that only later CSVs have); with several
    CSVs a sample carries the labels whose CSV has its id.  ``limit`` keeps the first ``limit``.
    Units: born_charges e, dielectric dimensionless, piezoelectric C/m^2; positions Angstrom.
    DataError (naming csv file, line number and id) when a row's id has no POSCAR or its number
    of values is not 9 * n_atoms (born), 9 (dielectric) or 27 (piezoelectric).
    """
    if not csv_files:
        raise DataError(f"{name}: no CSV label file given")
    zf, label = _open_zip(zip_path_or_bytes, name)
    with zf:
        members = poscar_members(zf, label)
        tables = []
        for csv_name, obj in csv_files.items():
            data, _ = read_bytes(obj, str(csv_name))
            csv_label = str(obj) if isinstance(obj, (str, os.PathLike)) else str(csv_name)
            tables.append((target_from_csv_name(csv_name), csv_label, read_id_csv(data, csv_label)))
        if len({t[0] for t in tables}) != len(tables):
            raise DataError(f"{name}: two CSV files label the same target: {[t[1] for t in tables]}")
        order: list[str] = []
        labels: dict[str, dict[str, tuple[str, int, np.ndarray]]] = {}
        for target, csv_label, rows in tables:
            for lineno, sid, values in rows:
                if sid not in labels:
                    if sid not in members:
                        raise DataError(
                            f"{csv_label}, line {lineno} (id {sid!r}): no POSCAR {sid}.vasp in {label}"
                        )
                    labels[sid] = {}
                    order.append(sid)
                labels[sid][target] = (csv_label, lineno, values)
        if limit is not None:
            order = order[: max(int(limit), 0)]
        samples = []
        budget = max_decompressed()  # all members together: a zip bomb stops here, not in the memory
        for sid in order:
            member = members[sid]
            src = f"{label}::{member}"
            try:
                with zf.open(member) as fh:
                    raw = fh.read(budget + 1)  # streamed
            except (OSError, zipfile.BadZipFile) as exc:
                raise DataError(f"{src}: cannot read ({exc})") from None
            budget -= len(raw)
            if budget < 0:
                raise DataError(f"{label}: expands to more than {max_decompressed() / 2**20:.0f} MiB when "
                                "decompressed (the limit for a compressed upload)")
            text = raw.decode("utf-8", errors="replace")
            atoms = parse_poscar(text, src)
            n = len(atoms)
            targets = {}
            for target, (csv_label, lineno, values) in labels[sid].items():
                want = {keys.BORN_CHARGES: 9 * n, keys.DIELECTRIC: 9, keys.PIEZOELECTRIC: 27}[target]
                if values.size != want:
                    detail = f"9 x {n} atoms of {member}" if target == keys.BORN_CHARGES else target
                    raise DataError(
                        f"{csv_label}, line {lineno} (id {sid!r}): {values.size} numbers, "
                        f"expected {want} ({detail})"
                    )
                if target == keys.BORN_CHARGES:
                    targets[target] = values.reshape(n, 3, 3)
                elif target == keys.DIELECTRIC:
                    targets[target] = values.reshape(3, 3)
                else:
                    targets[target] = values.reshape(3, 3, 3)
            samples.append(Sample(atoms=atoms, targets=targets, source=src, id=sid))
    return samples


__all__ = [
    "load_poscar_zip",
    "parse_poscar",
    "read_id_csv",
    "target_from_csv_name",
    "poscar_members",
    "read_bytes",
]
