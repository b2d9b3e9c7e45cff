"""Reading structures from files or uploads, format detection, and validation with clear errors.

Everything a user can hand to ETGNN Studio (a CIF, a POSCAR/CONTCAR, an extended or plain XYZ
with one or many frames, a pymatgen ``Structure``/``Molecule`` JSON, an ASE JSON or trajectory,
or any other format ASE reads) goes through :func:`read_structures`, which returns one
:class:`ase.Atoms` per frame with ``atoms.info["source"]`` (the file name) and
``atoms.info["frame"]`` (the frame index in the file).  :func:`validate_atoms` then checks that a
structure can be given to a model.  Every problem is reported as a :class:`StructureError` whose
message is a single line naming the file (and frame, atom index or key) and the problem.

Conventions are those of :mod:`etgnn_core.keys`: positions and cells in Angstrom, cell rows are
the lattice vectors.  A structure is *periodic* when some ``pbc`` flag is set and the cell is not
all zeros; extended-XYZ molecules often carry ``pbc="T T T"`` with an all-zero lattice and are
treated as molecules (see :func:`is_periodic` and :func:`normalize`).
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import math
import os
import re
import tempfile
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols

__all__ = [
    "StructureError",
    "StructureWarning",
    "read_structures",
    "to_atoms",
    "is_periodic",
    "normalize",
    "validate_atoms",
    "structure_label",
]

#: Formats tried, in this order, when neither the name nor the content says what a file is.
FALLBACK_FORMATS = ("cif", "vasp", "extxyz")
#: Label of contents given without a name.
DEFAULT_NAME = "<input>"

_PYMATGEN_JSON = "pymatgen-json"
_MAX_REASON = 200
_VOLUME_EPS = 1e-6  # A^3 (A^2 / A for 2D / 1D periodicity)


class StructureWarning(UserWarning):
    """A structure a model can take but whose prediction is doubtful (one line naming the file)."""


class StructureError(ValueError):
    """A structure file cannot be read, or a structure cannot be given to a model.

    ``str(err)`` is one line: ``"<file>[, frame k]: <problem>"``.  The optional attributes help a
    user interface point at the culprit: ``source`` (file name), ``frame`` (frame index),
    ``atom_indices`` (0-based atom indices involved), ``key`` (a field / tensor name).
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        frame: int | None = None,
        atom_indices: Iterable[int] = (),
        key: str | None = None,
    ) -> None:
        super().__init__(_one_line(message))
        self.source = source
        self.frame = frame
        self.atom_indices = tuple(int(i) for i in atom_indices)
        self.key = key


def _one_line(text: str, limit: int | None = None) -> str:
    text = " ".join(str(text).split())
    if limit is not None and len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


# ----------------------------------------------------------------------------------------------
# conversion and periodicity
# ----------------------------------------------------------------------------------------------
def to_atoms(obj) -> Atoms:
    """Return an :class:`ase.Atoms` for ``obj``.

    ``obj`` may be an :class:`ase.Atoms` (a copy is returned, without calculator), a pymatgen
    ``Structure``/``IStructure``/``Molecule``/``IMolecule``, or the dict of one (``as_dict()``,
    with ``"@class"``).  Site species with oxidation states are reduced to their element; a
    disordered (partially occupied) site raises :class:`StructureError`.  Raises ``TypeError``
    for anything else.
    """
    return _to_atoms(obj, DEFAULT_NAME)


def _to_atoms(obj, name: str) -> Atoms:
    if isinstance(obj, Atoms):
        return obj.copy()
    if isinstance(obj, dict):
        return _pymatgen_dict_to_atoms(obj, name)
    try:
        from pymatgen.core import Molecule, Structure
        from pymatgen.core.structure import IMolecule, IStructure
    except ImportError:  # pragma: no cover - pymatgen is a dependency
        Molecule = Structure = IMolecule = IStructure = ()  # noqa: N806
    if isinstance(obj, (Structure, IStructure)):
        _check_ordered(obj, name)
        lattice = obj.lattice
        return Atoms(
            numbers=[site.specie.Z for site in obj],
            positions=np.asarray(obj.cart_coords, dtype=float).reshape(-1, 3),
            cell=np.asarray(lattice.matrix, dtype=float),
            pbc=tuple(bool(p) for p in getattr(lattice, "pbc", (True, True, True))),
        )
    if isinstance(obj, (Molecule, IMolecule)):
        _check_ordered(obj, name)
        return Atoms(
            numbers=[site.specie.Z for site in obj],
            positions=np.asarray(obj.cart_coords, dtype=float).reshape(-1, 3),
            pbc=False,
        )
    raise TypeError(
        f"cannot convert {type(obj).__name__} to ase.Atoms: give an ase.Atoms, a pymatgen "
        "Structure or Molecule, or a file path / contents to read_structures"
    )


def _check_ordered(obj, name: str) -> None:
    if getattr(obj, "is_ordered", True):
        return
    bad = [i for i, site in enumerate(obj) if not site.is_ordered]
    raise StructureError(
        f"{name}: disordered structure (partial occupancy at site(s) {_index_list(bad)}); give an ordered structure",
        source=name,
        atom_indices=bad[:10],
    )


def _pymatgen_dict_to_atoms(d: dict, name: str) -> Atoms:
    cls = str(d.get("@class", ""))
    try:
        if cls in ("Structure", "IStructure"):
            from pymatgen.core import Structure

            obj = Structure.from_dict(d)
        elif cls in ("Molecule", "IMolecule"):
            from pymatgen.core import Molecule

            obj = Molecule.from_dict(d)
        else:
            raise StructureError(
                f"{name}: pymatgen JSON of class {cls or '(none)'!r} is not a Structure or Molecule",
                source=name,
                key="@class",
            )
    except StructureError:
        raise
    except Exception as exc:
        raise StructureError(f"{name}: invalid pymatgen {cls} JSON: {_reason(exc)}", source=name, key="@class") from exc
    return _to_atoms(obj, name)


def is_periodic(atoms: Atoms) -> bool:
    """True when some ``pbc`` flag is set and the cell is not all zeros.

    An all-zero cell (how extended XYZ writes molecules, often with ``pbc="T T T"``) means a
    molecule.
    """
    pbc = np.asarray(atoms.pbc, dtype=bool)
    cell = np.asarray(atoms.cell[:], dtype=float)
    return bool(pbc.any() and np.any(cell != 0.0))


def normalize(atoms: Atoms, copy: bool = True) -> Atoms:
    """Return a copy in which a molecule has ``pbc`` all False and a zero cell.

    A periodic structure (see :func:`is_periodic`) keeps its cell and its (possibly partial)
    ``pbc``.  Positions, numbers, ``info`` and per-atom arrays are kept; no wrapping is done.
    ``copy=False`` changes ``atoms`` itself (for a copy the caller made already).
    """
    out = atoms.copy() if copy else atoms
    if not is_periodic(out):
        out.pbc = False
        out.cell = np.zeros((3, 3))
    return out


# ----------------------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------------------
def read_structures(
    source,
    *,
    name: str | None = None,
    index: int | str | slice = ":",
    max_atoms: int | None = None,
) -> list[Atoms]:
    """Read every structure (frame) of ``source`` as a list of :class:`ase.Atoms`.

    ``source`` is one of

    * a path (``str`` or :class:`os.PathLike`); a ``str`` is taken as *contents* instead when it
      contains a newline or starts with ``{``/``[`` (JSON),
    * ``bytes`` or ``str`` contents (e.g. an upload),
    * a binary or text file object (anything with ``read()``; its ``name`` attribute, as on a
      Streamlit ``UploadedFile``, is used as the name),
    * an :class:`ase.Atoms` or pymatgen ``Structure``/``Molecule`` (returned as one frame).

    ``name`` is the label used for format detection, for ``atoms.info["source"]`` and in error
    messages; it defaults to the path (or ``"<input>"`` for contents).  gzip/bz2/xz compressed
    contents are decompressed.

    The format is detected from the name (``.cif``; ``POSCAR``/``CONTCAR`` anywhere in the name,
    ``.vasp``, ``.poscar``; ``.xyz``/``.extxyz``; ``.json``; ``.traj``; any other extension ASE
    knows) and from the content (``data_``/``_cell_length_a`` -> cif; an atom count line followed
    by ``Lattice=``/``Properties=`` -> extxyz, or by a plain comment -> xyz; POSCAR layout -> vasp;
    JSON with ``@module``/``@class`` -> pymatgen; other JSON -> ASE JSON database; ASE's own content
    sniffing), then the formats in :data:`FALLBACK_FORMATS`; the first that yields atoms wins.

    ``index`` selects frames like ``ase.io.read`` (``":"``, ``"-1"``, ``"2:5"``, an ``int`` or a
    ``slice``); ``atoms.info["frame"]`` is always the index of the frame in the file.

    Raises :class:`StructureError` for a missing or empty file, binary garbage, content no
    format can read (``"upload.cif: not a structure file ASE can read (tried cif, vasp, extxyz):
    <reason>"``), an index selecting no frame, a frame with no atoms, or a frame with more than
    ``max_atoms`` atoms.
    """
    if isinstance(source, Atoms) or _is_pymatgen_object(source):
        label = name or DEFAULT_NAME
        atoms = _to_atoms(source, label)
        atoms.info["source"] = label
        atoms.info["frame"] = 0
        frames = [atoms]
        frame_ids = [0]
        selected = _select(frames, frame_ids, index, label)
        _check_frames(selected, label, max_atoms)
        return selected

    data, label, path = _load_source(source, name)
    data, label = _decompress(data, label)

    if not data.strip():
        raise StructureError(f"{label}: empty file", source=label)

    binary_fmt = None
    if any(data.startswith(m) for m in (b"- of UlmASE-Trajectory", b"AFFormatASE-Trajectory")):
        binary_fmt = "traj"
        text = None
    else:
        text = _decode_text(data, label)

    candidates, hinted = _candidate_formats(label, text, binary_fmt)
    frames, fmt_errors = _try_formats(candidates, data, text, path, label)
    if frames is None:
        tried = ", ".join(fmt for fmt, _ in fmt_errors)
        if hinted and fmt_errors:
            fmt, reason = fmt_errors[0]
            reason = f"{fmt}: {(_xyz_line_problem(text) if fmt in ('xyz', 'extxyz') else None) or reason}"
        else:
            first = next((ln.strip() for ln in (text or "").splitlines() if ln.strip()), "")
            reason = (
                "no CIF data block, POSCAR header, XYZ atom count or structure JSON found "
                f"(first line: {_one_line(first, 60)!r})"
            )
        raise StructureError(f"{label}: not a structure file ASE can read (tried {tried}): {reason}", source=label)

    frame_ids = list(range(len(frames)))
    for i, atoms in zip(frame_ids, frames):
        atoms.info["source"] = label
        atoms.info["frame"] = i
    selected = _select(frames, frame_ids, index, label)
    _check_frames(selected, label, max_atoms)
    return selected


def _xyz_line_problem(text: str | None) -> str | None:
    """The first line of an (ext)xyz text that breaks the layout "count / comment / count atom lines
    of 'symbol x y z ...'", in words with its 1-based line number; None when the layout holds
    (ASE's own message is kept then) or the columns are not the standard species + pos ones."""
    lines = (text or "").splitlines()
    i, frame = 0, 0
    while i < len(lines):
        if not lines[i].strip():  # trailing blank lines end the file
            if all(not ln.strip() for ln in lines[i:]):
                return None
            return f"line {i + 1}: blank line where frame {frame}'s atom count should be"
        try:
            n = int(lines[i].split()[0])
        except ValueError:
            return f"line {i + 1}: expected the number of atoms of frame {frame}, got {_one_line(lines[i], 40)!r}"
        comment = lines[i + 1] if i + 1 < len(lines) else ""
        if "Properties=" in comment and "Properties=species:S:1:pos:R:3" not in comment:
            return None
        for k in range(n):
            j = i + 2 + k
            if j >= len(lines):
                return f"frame {frame} promises {n} atoms but the file ends after {k} of them (line {j})"
            parts = lines[j].split()
            try:
                ok = len(parts) >= 4 and all(math.isfinite(float(v)) for v in parts[1:4])
            except ValueError:
                ok = False
            if not ok:
                return (f"line {j + 1} (atom {k} of frame {frame}): expected 'symbol x y z', "
                        f"got {_one_line(lines[j], 40)!r}")
            if parts[0].capitalize() not in chemical_symbols[1:] and not parts[0].isdigit():  # ASE takes 'si' and Z
                return (f"line {j + 1} (atom {k} of frame {frame}): {_one_line(parts[0], 12)!r} is not an "
                        "element symbol (written as in the periodic table: 'Si', 'O', 'Cl')")
        i, frame = i + 2 + n, frame + 1
    return None


def _is_pymatgen_object(obj) -> bool:
    module = type(obj).__module__ or ""
    return module.startswith("pymatgen") and hasattr(obj, "cart_coords")


def _load_source(source, name: str | None) -> tuple[bytes, str, str | None]:
    """Return (raw bytes, label, path or None)."""
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source), name or DEFAULT_NAME, None
    if hasattr(source, "read"):
        raw = source.read()
        if isinstance(raw, str):
            raw = raw.encode("utf-8")
        fname = getattr(source, "name", None)
        label = name or (os.fspath(fname) if isinstance(fname, str | os.PathLike) else DEFAULT_NAME)
        return bytes(raw), label, None
    if isinstance(source, str):
        stripped = source.lstrip()
        if "\n" in source or stripped.startswith(("{", "[")) or (not stripped and source):
            return source.encode("utf-8"), name or DEFAULT_NAME, None
        if source == "":
            raise StructureError(f"{name or DEFAULT_NAME}: empty file", source=name or DEFAULT_NAME)
    if isinstance(source, str | os.PathLike):
        path = os.fspath(source)
        label = name or path
        if os.path.isdir(path):
            raise StructureError(f"{label}: is a directory, not a structure file", source=label)
        try:
            with open(path, "rb") as fh:
                return fh.read(), label, path
        except FileNotFoundError as exc:
            raise StructureError(f"{label}: file not found", source=label) from exc
        except OSError as exc:
            raise StructureError(f"{label}: cannot open file: {_reason(exc)}", source=label) from exc
    raise TypeError(
        f"read_structures: unsupported source of type {type(source).__name__}; give a path, bytes, "
        "str contents, a file object, ase.Atoms or a pymatgen Structure/Molecule"
    )


_COMPRESSIONS = (
    (b"\x1f\x8b", lambda fh: gzip.GzipFile(fileobj=fh), (".gz",)),
    (b"BZh", bz2.BZ2File, (".bz2",)),
    (b"\xfd7zXZ\x00", lzma.LZMAFile, (".xz", ".lzma")),
)
#: Largest decompressed size (bytes) of a compressed structure file; $ETGNN_MAX_DECOMPRESSED overrides it.
#: A 1 MB gzip can expand to 1 GiB: decompression stops at the cap instead of filling the memory.
MAX_DECOMPRESSED = 128 * 2**20


def max_decompressed() -> int:
    """The decompression cap in bytes ($ETGNN_MAX_DECOMPRESSED, else :data:`MAX_DECOMPRESSED`)."""
    try:
        return int(os.environ.get("ETGNN_MAX_DECOMPRESSED", MAX_DECOMPRESSED))
    except ValueError:
        return MAX_DECOMPRESSED


def _decompress(data: bytes, label: str) -> tuple[bytes, str]:
    for magic, opener, exts in _COMPRESSIONS:
        if data.startswith(magic):
            cap = max_decompressed()
            try:
                with opener(io.BytesIO(data)) as fh:
                    data = fh.read(cap + 1)  # streamed: never more than cap + 1 bytes in memory
            except Exception as exc:
                raise StructureError(f"{label}: corrupt compressed file: {_reason(exc)}", source=label) from exc
            if len(data) > cap:
                raise StructureError(f"{label}: expands to more than {cap / 2**20:.0f} MiB when decompressed "
                                     "(the limit for a compressed structure file)", source=label)
            inner = label
            for ext in exts:
                if inner.lower().endswith(ext):
                    inner = inner[: -len(ext)]
            return data, inner if inner != label else label
    return data, label


def _decode_text(data: bytes, label: str) -> str:
    head = data[:65536]
    if b"\x00" in head:
        raise StructureError(f"{label}: not a structure file ASE can read: binary content (not text)", source=label)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    # Latin-1 accented names in CIF headers are fine; mostly unprintable bytes are not text.
    controls = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13))
    high = sum(1 for b in head if b >= 128)
    if controls > 0.01 * len(head) or high > 0.3 * len(head):
        raise StructureError(f"{label}: not a structure file ASE can read: binary content (not text)", source=label)
    return data.decode("latin-1")


_FLOAT = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eEdD][-+]?\d+)?"
_FLOATS_RE = {k: re.compile(r"^\s*" + r"\s+".join([_FLOAT] * k) + r"(\s|$)") for k in (1, 3)}


def _name_format(label: str) -> str | None:
    base = os.path.basename(label.replace("\\", "/"))
    upper = base.upper()
    ext = os.path.splitext(base)[1].lower()
    if "POSCAR" in upper or "CONTCAR" in upper or ext in (".vasp", ".poscar"):
        return "vasp"
    if ext in (".cif", ".mcif"):
        return "cif"
    if ext in (".xyz", ".extxyz"):
        return "extxyz"
    if ext == ".json":
        return "json"
    if not ext:
        return None
    try:
        from ase.io.formats import filetype, ioformats

        fmt = filetype(base, read=False)
    except Exception:
        return None
    if fmt in ioformats and ioformats[fmt].can_read:
        return fmt
    return None


def _sniff_format(text: str) -> list[str]:
    """Formats suggested by the content, most likely first."""
    out: list[str] = []
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        try:
            obj = json.loads(stripped)
        except ValueError:
            obj = None
        if _looks_pymatgen(obj):
            return [_PYMATGEN_JSON]
        return ["json", _PYMATGEN_JSON]
    if "_cell_length_a" in text or re.search(r"^\s*data_", text, re.MULTILINE):
        out.append("cif")
    lines = text.splitlines()
    nonblank = [ln for ln in lines if ln.strip()]
    if len(nonblank) >= 2 and re.fullmatch(r"\s*\d+\s*", nonblank[0]):
        # An atom count; the comment line must follow it directly (it may be blank).
        first = lines.index(nonblank[0])
        comment = lines[first + 1] if first + 1 < len(lines) else ""
        if "Lattice=" in comment or "Properties=" in comment or "=" in comment:
            out.append("extxyz")
        else:
            out += ["xyz", "extxyz"]
    if len(lines) >= 5 and _FLOATS_RE[1].match(lines[1]) and all(_FLOATS_RE[3].match(lines[k]) for k in (2, 3, 4)):
        out.append("vasp")
    try:
        from ase.io.formats import filetype, ioformats

        fmt = filetype(io.BytesIO(text.encode("utf-8", "replace")), guess=False)
        if fmt in ioformats and ioformats[fmt].can_read and fmt not in out:
            out.append(fmt)
    except Exception:
        pass
    return out


def _looks_pymatgen(obj) -> bool:
    if isinstance(obj, dict):
        return "@class" in obj or str(obj.get("@module", "")).startswith("pymatgen")
    if isinstance(obj, list) and obj:
        return all(_looks_pymatgen(o) for o in obj)
    return False


def _candidate_formats(label: str, text: str | None, binary_fmt: str | None) -> tuple[list[str], bool]:
    """Formats to try in order, and whether the name or the content suggested any."""
    if binary_fmt is not None:
        return [binary_fmt], True
    cands: list[str] = []
    by_name = _name_format(label)
    sniffed = _sniff_format(text or "")
    if by_name == "json":
        cands += [f for f in sniffed if f in ("json", _PYMATGEN_JSON)] or ["json", _PYMATGEN_JSON]
    elif by_name == "extxyz" and sniffed[:1] == ["xyz"]:
        cands += ["xyz", "extxyz"]  # a plain XYZ comment line is not parsed as key=value pairs
    elif by_name is not None:
        cands.append(by_name)
    cands += sniffed
    cands += FALLBACK_FORMATS
    seen: list[str] = []
    for fmt in cands:
        if fmt not in seen and fmt != "traj":
            seen.append(fmt)
    return seen, bool(by_name or sniffed)


def _try_formats(candidates, data, text, path, label):
    errors: list[tuple[str, str]] = []
    for fmt in candidates:
        try:
            frames = _read_with_format(fmt, data, text, path, label)
        except StructureError as exc:  # e.g. a pymatgen JSON that is not an ordered Structure
            if fmt == candidates[0] == _PYMATGEN_JSON:
                raise  # the content is pymatgen JSON: its own error is the clearest
            errors.append((fmt, str(exc).split(": ", 1)[-1]))
            continue
        except Exception as exc:  # every ASE reader raises its own kind of error
            errors.append((fmt, _reason(exc)))
            continue
        frames = [f for f in frames if f is not None]
        if not frames:
            errors.append((fmt, "no atoms found"))
            continue
        return frames, errors
    return None, errors


def _read_with_format(fmt: str, data: bytes, text: str | None, path: str | None, label: str):
    import ase.io

    if fmt == _PYMATGEN_JSON:
        obj = json.loads(text or "")
        items = obj if isinstance(obj, list) else [obj]
        if not items or not all(isinstance(o, dict) and "@class" in o for o in items):
            raise ValueError("not a pymatgen Structure/Molecule JSON (no '@class')")
        return [_pymatgen_dict_to_atoms(o, label) for o in items]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if fmt == "traj":
            if path is not None:
                return list(ase.io.read(path, index=":", format="traj"))
            with tempfile.TemporaryDirectory() as tmp:
                tmp_path = Path(tmp) / "upload.traj"
                tmp_path.write_bytes(data)
                return list(ase.io.read(tmp_path, index=":", format="traj"))
        result = ase.io.read(io.StringIO(text or ""), index=":", format=fmt)
    if isinstance(result, Atoms):
        return [result]
    return list(result)


def _reason(exc: BaseException) -> str:
    msg = _one_line(str(exc), _MAX_REASON)
    if not msg:  # e.g. a bare AssertionError from a reader
        return f"malformed file ({type(exc).__name__})"
    return msg


def _select(frames: list[Atoms], frame_ids: list[int], index, label: str) -> list[Atoms]:
    idx = _parse_index(index, label)
    try:
        if isinstance(idx, slice):
            chosen = frames[idx]
        else:
            chosen = [frames[idx]]
    except IndexError as exc:
        raise StructureError(
            f"{label}: frame index {index!r} out of range ({len(frames)} frame(s) in file)",
            source=label,
        ) from exc
    if not chosen:
        raise StructureError(
            f"{label}: index {index!r} selects no frame ({len(frames)} frame(s) in file)", source=label
        )
    return chosen


def _parse_index(index, label: str):
    if isinstance(index, slice | int) and not isinstance(index, bool):
        return index
    if isinstance(index, str):
        s = index.strip()
        try:
            if ":" in s:
                parts = [int(p) if p.strip() else None for p in s.split(":")]
                if len(parts) > 3:
                    raise ValueError(s)
                return slice(*parts)
            return int(s)
        except ValueError:
            pass
    raise StructureError(f"{label}: invalid frame index {index!r} (use e.g. ':', '-1', '0:10:2')", source=label)


def _check_frames(frames: list[Atoms], label: str, max_atoms: int | None) -> None:
    for atoms in frames:
        frame = atoms.info.get("frame")
        where = structure_label(atoms, label)
        if len(atoms) == 0:
            raise StructureError(f"{where}: empty structure (no atoms)", source=label, frame=frame)
        if max_atoms is not None and len(atoms) > max_atoms:
            raise StructureError(
                f"{where}: {len(atoms)} atoms, more than the limit of {max_atoms} atoms",
                source=label,
                frame=frame,
            )


# ----------------------------------------------------------------------------------------------
# validation
# ----------------------------------------------------------------------------------------------
MIN_DISTANCE = 0.1  # Angstrom: atoms closer than this are overlapping or duplicated
# Sane bounds of a periodic cell (Angstrom).  Any real crystal has a cell within them; beyond them the
# neighbour search needs millions of images (a direction thinner than MIN_CELL_HEIGHT), or the file
# is not in Angstrom.  A skewed, unreduced cell of a real crystal can fail MIN_CELL_HEIGHT or
# MAX_CELL_CONDITION: the message suggests reducing it (ase.build.niggli_reduce).
MIN_CELL_HEIGHT = 0.5  # distance between neighbouring lattice planes of each periodic direction
MAX_CELL_LENGTH = 1e5  # length of a periodic lattice vector
MAX_CELL_CONDITION = 1e4  # ratio of the largest to the smallest singular value of the periodic vectors
MAX_COORDINATE = 1e5  # |x|, |y|, |z| of any atom
_AXES = "abc"


def cell_heights(cell, pbc) -> dict[int, float]:
    """Perpendicular height (Angstrom) of each periodic direction: its distance between lattice planes.

    For 3D periodicity ``V / |a_j x a_k|``; with fewer periodic directions the height is taken
    within the span of the periodic vectors (the length itself for 1D).  Index -> height.
    """
    cell = np.asarray(cell, dtype=float)
    idx = [i for i in range(3) if pbc[i]]
    if len(idx) == 3:  # 1 / |reciprocal vector|: one 3x3 inverse instead of four Gram determinants
        with np.errstate(all="ignore"):
            try:
                recip = np.linalg.inv(cell)  # columns: reciprocal vectors / (2 pi)
            except np.linalg.LinAlgError:
                return {i: 0.0 for i in idx}
            norms = np.sqrt((recip**2).sum(axis=0))
        return {i: float(1.0 / norms[i]) if np.isfinite(norms[i]) and norms[i] > 0 else 0.0 for i in idx}
    vectors = cell[idx]  # [n_periodic, 3]
    gram_det = float(np.linalg.det(vectors @ vectors.T)) if idx else 0.0
    out = {}
    for k, i in enumerate(idx):
        others = np.delete(vectors, k, axis=0)
        rest = float(np.linalg.det(others @ others.T)) if len(others) else 1.0
        out[i] = float(np.sqrt(max(gram_det, 0.0) / rest)) if rest > 0 else 0.0
    return out


def cell_problem(cell, pbc) -> str:
    """Why a periodic cell is refused ("" when it is fine): too long, too thin, or ill-conditioned."""
    cell = np.asarray(cell, dtype=float)
    pbc = [bool(p) for p in pbc]
    idx = [i for i in range(3) if pbc[i]]
    lengths = np.linalg.norm(cell, axis=1)
    for i in idx:
        if lengths[i] > MAX_CELL_LENGTH:
            return (f"lattice vector {_AXES[i]} is {lengths[i]:.3g} A long, beyond the limit of {MAX_CELL_LENGTH:g} A "
                    "(is the cell in Angstrom?)")
    for i, h in cell_heights(cell, pbc).items():
        if h < MIN_CELL_HEIGHT:
            return (f"the cell is only {h:.3g} A thick along {_AXES[i]} (distance between lattice planes; at least "
                    f"{MIN_CELL_HEIGHT:g} A needed): give a valid or reduced cell (e.g. ase.build.niggli_reduce)")
    sv = np.linalg.svd(cell[idx], compute_uv=False)
    if len(sv) > 1 and sv[-1] > 0 and sv[0] / sv[-1] > MAX_CELL_CONDITION:
        return (f"the cell is too distorted (condition number {sv[0] / sv[-1]:.3g}, at most {MAX_CELL_CONDITION:g}): "
                "give a reduced cell (e.g. ase.build.niggli_reduce)")
    return ""


# vesin's cell list (vesin/src/cpu_cell_list.cpp) caps its grid at 1e5 cells; for a very anisotropic
# box the rescaled grid has 0 cells along one axis and the library dies of SIGFPE, taking the whole
# process (and the app server) with it.  ``neighbor_search_problem`` mirrors that arithmetic so the
# search is refused before it is run; tests/test_hardening.py checks the mirror against vesin.
_VESIN_MAX_CELLS = 1e5
_MAX_SEARCH_WORK = 5e7  # cells x searched neighbour cells: ~0.2 s of vesin's loop


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _vesin_box(cell: np.ndarray, pbc: list[bool]) -> np.ndarray:
    """The box vesin searches: non-periodic rows replaced by unit vectors orthogonal to the periodic ones."""
    m = np.array(cell, dtype=float)
    per = [i for i in range(3) if pbc[i]]
    if not per:
        return np.eye(3)
    if len(per) == 1:
        p = per[0]
        a, b = m[p], np.array([0.0, 1.0, 0.0])
        if abs(_unit(a) @ b) > 0.9:
            b = np.array([0.0, 0.0, 1.0])
        c = _unit(np.cross(a, b))
        m[(p + 1) % 3], m[(p + 2) % 3] = _unit(np.cross(c, a)), c
    elif len(per) == 2:
        m[3 - per[0] - per[1]] = _unit(np.cross(m[per[0]], m[per[1]]))
    return m


def neighbor_search_problem(positions, cell, pbc, cutoff: float) -> str:
    """Why vesin cannot search this structure safely ("" when it can): its cell grid would collapse or explode.

    ``cell`` / ``pbc`` as given to vesin (zeros / all False for a molecule); ``cutoff`` in Angstrom.
    Called before every neighbour search, so it stays cheap (a few numpy calls on 3x3 matrices).
    """
    import math

    pbc = [bool(p) for p in pbc] if np.ndim(pbc) else [bool(pbc)] * 3
    m = _vesin_box(cell, pbc)
    det = float(np.linalg.det(m))
    if not math.isfinite(det) or abs(det) < 1e-30:
        return "the cell matrix is singular"
    # distance between faces: 1 / |reciprocal vector| (columns of the inverse) along periodic axes,
    # the atoms' extent (x 1.01, at least 1 A) along the others, as vesin's BoundingBox computes them
    d = 1.0 / np.sqrt((np.linalg.inv(m) ** 2).sum(axis=0))  # [3]
    if not all(pbc):
        pos = np.asarray(positions, dtype=float).reshape(-1, 3)
        ext = pos.max(axis=0) - pos.min(axis=0) if len(pos) else np.zeros(3)
        ext = np.where(ext < 1e-6, 1.0, ext)
        d = np.where(pbc, d, 1.01 * ext)
    d = [float(x) for x in d]
    n = [max(1.0, float(math.trunc(x / cutoff))) for x in d]
    if n[0] * n[1] * n[2] > _VESIN_MAX_CELLS:
        rxy, ryz = n[0] / n[1], n[1] / n[2]
        n[2] = float(math.trunc((_VESIN_MAX_CELLS / (rxy * ryz * ryz)) ** (1 / 3)))
        n[1] = float(math.trunc(ryz * n[2]))
        n[0] = float(math.trunc(rxy * n[1]))
    what = "the cell" if any(pbc) else "the molecule's extent"
    sizes = ", ".join(f"{x:.3g}" for x in d)
    if min(n) < 1:
        return f"{what} is too anisotropic for the neighbour search (sizes {sizes} A with a {cutoff:g} A cutoff)"
    search = [2 * max(1, math.ceil(cutoff * k / x)) + 1 for k, x in zip(n, d)]
    if n[0] * n[1] * n[2] * search[0] * search[1] * search[2] > _MAX_SEARCH_WORK:
        return f"{what} is too thin or too large for the neighbour search (sizes {sizes} A)"
    return ""


def structure_label(atoms: Atoms, default: str = "structure") -> str:
    """``"<source>, frame <k>"`` from ``atoms.info`` (as set by :func:`read_structures`), else ``default``."""
    source = atoms.info.get("source")
    frame = atoms.info.get("frame")
    label = str(source) if source not in (None, "") else default
    if frame is not None:
        label += f", frame {frame}"
    return label


def _index_list(indices, limit: int = 5) -> str:
    indices = [int(i) for i in indices]
    shown = ", ".join(str(i) for i in indices[:limit])
    if len(indices) > limit:
        shown += f", ... ({len(indices)} in all)"
    return shown


def _symbol(z: int) -> str:
    return chemical_symbols[z] if 0 <= z < len(chemical_symbols) else f"Z={z}"


def validate_atoms(
    atoms: Atoms,
    *,
    allowed_numbers: set[int] | None = None,
    max_atoms: int | None = None,
    min_distance: float = MIN_DISTANCE,
    name: str | None = None,
) -> None:
    """Check that ``atoms`` can be given to a model; raise :class:`StructureError` if not.

    Checks, in order: at least one atom; at most ``max_atoms`` atoms; finite positions (names the
    first bad atom index); for a periodic structure (:func:`is_periodic`) a finite cell whose
    periodic lattice vectors span a non-zero volume (``|det| >= 1e-6 A^3``; area / length for
    2D / 1D periodicity); known elements (atomic number 1..118) and, when ``allowed_numbers`` is
    given, elements the model knows (names the symbols and atom indices and lists the model's
    elements); no two atoms closer than ``min_distance`` Angstrom, periodic images included (an
    atom too close to its own image means the cell is too small; names both indices, the
    distance and the image shift).  ``min_distance <= 0`` skips the distance check.

    ``name`` labels the structure in messages; by default it is taken from ``atoms.info``
    (``"<source>, frame <k>"``) or is ``"structure"``.
    """
    label = name if name is not None else structure_label(atoms)
    src = atoms.info.get("source")
    frame = atoms.info.get("frame")

    def fail(msg: str, indices=(), key=None):
        raise StructureError(f"{label}: {msg}", source=src, frame=frame, atom_indices=indices, key=key)

    n = len(atoms)
    if n == 0:
        fail("empty structure (no atoms)")
    if max_atoms is not None and n > max_atoms:
        fail(f"{n} atoms, more than the limit of {max_atoms} atoms")

    numbers = np.asarray(atoms.numbers, dtype=np.int64)
    positions = np.asarray(atoms.positions, dtype=float)
    bad = np.flatnonzero(~np.isfinite(positions).all(axis=1))
    if bad.size:
        i = int(bad[0])
        more = f" ({bad.size} atoms in all: {_index_list(bad)})" if bad.size > 1 else ""
        pos = ", ".join(f"{x:g}" for x in positions[i])
        fail(f"atom {i} ({_symbol(int(numbers[i]))}) has a non-finite position [{pos}]{more}", bad[:10], "positions")

    periodic = is_periodic(atoms)
    pbc = np.asarray(atoms.pbc, dtype=bool) if periodic else np.zeros(3, dtype=bool)
    cell = np.asarray(atoms.cell[:], dtype=float)
    if periodic:
        pbc_txt = "[" + ", ".join("T" if p else "F" for p in atoms.pbc) + "]"
        if not np.isfinite(cell).all():
            fail(f"cell contains NaN or infinite values with periodic boundary conditions pbc={pbc_txt}", key="cell")
        vectors = cell[pbc]
        if pbc.all():
            measure, what, unit = abs(float(np.linalg.det(cell))), "zero-volume or singular cell", "A^3"
        else:
            gram = vectors @ vectors.T
            measure = float(np.sqrt(max(np.linalg.det(gram), 0.0)))
            what = "degenerate lattice vectors along the periodic directions"
            unit = {2: "A^2", 1: "A"}[len(vectors)]
        if measure < _VOLUME_EPS:
            fail(
                f"{what} (|det| = {measure:.3g} {unit}) with periodic boundary conditions "
                f"pbc={pbc_txt}; give a valid lattice, or an all-zero cell / pbc=False for a molecule",
                key="cell",
            )
        problem = cell_problem(cell, pbc)
        if problem:
            fail(f"{problem} (pbc={pbc_txt})", key="cell")
    far = np.flatnonzero(np.abs(positions).max(axis=1) > MAX_COORDINATE)
    if far.size:
        i = int(far[0])
        fail(f"atom {i} ({_symbol(int(numbers[i]))}) lies {np.abs(positions[i]).max():.3g} A from the origin, "
             f"beyond the limit of {MAX_COORDINATE:g} A (coordinates in Angstrom?)", far[:10], "positions")

    unknown = np.flatnonzero((numbers <= 0) | (numbers > 118))
    if unknown.size:
        zs = sorted({int(numbers[i]) for i in unknown})
        fail(
            f"unknown element (atomic number {', '.join(str(z) for z in zs)}) at atom(s) {_index_list(unknown)}",
            unknown[:10],
            "numbers",
        )
    if allowed_numbers is not None:
        allowed = {int(z) for z in allowed_numbers}
        not_ok = np.flatnonzero(~np.isin(numbers, sorted(allowed)))
        if not_ok.size:
            parts = []
            for z in sorted({int(numbers[i]) for i in not_ok}):
                idx = np.flatnonzero(numbers == z)
                word = "atom" if idx.size == 1 else "atoms"
                parts.append(f"{_symbol(z)} ({word} {_index_list(idx, 3)})")
            known = ", ".join(_symbol(z) for z in sorted(allowed)) or "none"
            plural = "s" if len(parts) > 1 else ""
            fail(
                f"element{plural} not supported by the model: {'; '.join(parts)}; the model knows {known}",
                not_ok[:10],
                "numbers",
            )

    if min_distance > 0 and (n > 1 or periodic):
        box = cell if periodic else np.zeros((3, 3))
        problem = neighbor_search_problem(positions, box, pbc, max(float(min_distance), 1.0))
        if problem:
            fail(problem, key="cell" if periodic else "positions")
        pair = _closest_pair(positions, box, pbc, float(min_distance))
        if pair is not None:
            i, j, shift, dist, count = pair
            si, sj = _symbol(int(numbers[i])), _symbol(int(numbers[j]))
            many = f" ({count} such pairs)" if count > 1 else ""
            if i == j:
                fail(
                    f"atom {i} ({si}) is {dist:.3g} A from its own periodic image (shift {list(shift)}), "
                    f"closer than {min_distance:g} A: the cell is too small{many}",
                    (i,),
                    "cell",
                )
            across = f" across the periodic boundary (image shift {list(shift)})" if any(shift) else ""
            fail(
                f"atoms {i} ({si}) and {j} ({sj}) are {dist:.3g} A apart{across}, closer than "
                f"{min_distance:g} A (overlapping or duplicated atoms){many}",
                (i, j),
                "positions",
            )


def _closest_pair(positions, cell, pbc, cutoff):
    """(i, j, shift, distance, n_pairs) of the closest pair below ``cutoff``, or None."""
    problem = neighbor_search_problem(positions, cell, pbc, max(cutoff, 1.0))
    if problem:
        raise StructureError(problem)
    try:
        import vesin

        # vesin's cell lists get slow for a tiny cutoff: search 1 A and filter below
        nl = vesin.NeighborList(cutoff=max(cutoff, 1.0), full_list=False, n_threads=1)
        i, j, shifts, d = nl.compute(
            np.ascontiguousarray(positions, dtype=np.float64),
            np.ascontiguousarray(cell, dtype=np.float64),
            [bool(p) for p in pbc],
            "ijSd",
        )
    except Exception:  # pragma: no cover - fallback if vesin rejects a cell
        from ase.neighborlist import primitive_neighbor_list

        i, j, shifts, d = primitive_neighbor_list("ijSd", pbc, cell, positions, cutoff, self_interaction=False)
        keep = (i < j) | ((i == j) & _positive_shift(shifts))
        i, j, shifts, d = i[keep], j[keep], shifts[keep], d[keep]
    d = np.asarray(d, dtype=float)
    ok = d < cutoff
    if not ok.any():
        return None
    k = int(np.argmin(np.where(ok, d, np.inf)))
    a, b = int(i[k]), int(j[k])
    shift = [int(s) for s in np.asarray(shifts[k])]
    if a > b:
        a, b, shift = b, a, [-s for s in shift]
    return a, b, shift, float(d[k]), int(ok.sum())


def _positive_shift(shifts):
    shifts = np.asarray(shifts)
    first = np.argmax(shifts != 0, axis=1)
    return shifts[np.arange(len(shifts)), first] > 0
