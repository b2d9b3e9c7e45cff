"""Extended-XYZ reading: user uploads (:func:`load_labelled_extxyz`) and helpers for the xyz data sets.

Recognised label keys (aliases map to the canonical :mod:`etgnn_core.keys` names):

=================  ==========================================  ==========  ======================
canonical          extxyz key(s)                               where       numbers
=================  ==========================================  ==========  ======================
born_charges       ``born_charges``, ``becs``, ``born_charge``  per atom    9, row-major 3x3
forces             ``forces``                                  per atom    3
shielding          ``shielding``                               per atom    9, row-major 3x3
dielectric         ``dielectric``, ``eps``, ``epsilon``        per frame   9, row-major 3x3
dipole             ``dipole``, ``mu``                          per frame   3
polarizability     ``polarizability``, ``alpha``               per frame   9, row-major 3x3
piezoelectric      ``piezoelectric``                           per frame   27, e[i,j,k]=v[9i+3j+k]
energy             ``energy``, ``total_energy``                per frame   1
=================  ==========================================  ==========  ======================

Units are whatever the file uses; the project's defaults are e, eV/A, ppm, C/m^2, e*A, A^3, eV.
ASE moves ``forces``, ``energy``, ``dipole``, ``stress`` and ``polarization`` into a
SinglePointCalculator; they are read from there as well.  A frame with an all-zero cell (or
``pbc="F F F"``) is a molecule: ``pbc`` all False and a zero cell.
"""

from __future__ import annotations

import io

import ase
import ase.io
import numpy as np

from .. import keys
from .poscar import read_bytes
from .sample import DataError, Sample, where
from .tensors import as_target

PER_ATOM_ALIASES: dict[str, tuple[str, ...]] = {
    keys.BORN_CHARGES: ("born_charges", "becs", "born_charge"),
    keys.FORCES: ("forces",),
    keys.SHIELDING: ("shielding",),
}
PER_FRAME_ALIASES: dict[str, tuple[str, ...]] = {
    keys.DIELECTRIC: ("dielectric", "eps", "epsilon"),
    keys.DIPOLE: ("dipole", "mu"),
    keys.POLARIZABILITY: ("polarizability", "alpha"),
    keys.PIEZOELECTRIC: ("piezoelectric",),
    keys.ENERGY: ("energy", "total_energy"),
}
_CALC_PER_ATOM = {"forces", "charges", "magmoms", "energies", "stresses", "dipoles"}


def read_frames(data: bytes | str, source: str, index: str = ":") -> list[ase.Atoms]:
    """Extended-XYZ text -> list of frames (ase), DataError naming ``source`` on a parse failure."""
    if isinstance(data, (bytes, bytearray)):
        head = bytes(data[:65536])
        controls = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13))
        if b"\x00" in head or controls > 0.01 * max(len(head), 1):
            raise DataError(f"{source}: binary content, not an extended XYZ text file")
        text = data.decode("utf-8", errors="replace")
    else:
        text = data
    try:
        frames = ase.io.read(io.StringIO(text), index=index, format="extxyz")
    except Exception as exc:  # noqa: BLE001 - ase raises many types on malformed input
        raise DataError(f"{source}: cannot parse as extended XYZ ({type(exc).__name__}: {_printable(exc)})") from None
    return frames if isinstance(frames, list) else [frames]


def _printable(exc: BaseException, limit: int = 200) -> str:
    """The exception's message on one line, without control characters, cut to ``limit`` characters."""
    text = " ".join("".join(c if c.isprintable() else " " for c in str(exc)).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_frames_file(path, index: str = ":") -> list[ase.Atoms]:
    """Like :func:`read_frames` for a file path (ase reads the file lazily: ``index=':10'`` is cheap)."""
    try:
        frames = ase.io.read(str(path), index=index, format="extxyz")
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"{path}: cannot parse as extended XYZ ({type(exc).__name__}: {exc})") from None
    return frames if isinstance(frames, list) else [frames]


def frame_fields(atoms: ase.Atoms) -> tuple[dict[str, np.ndarray], dict[str, object]]:
    """(per-atom arrays, per-frame values) of a frame, including what ASE moved into ``atoms.calc``."""
    per_atom = {k: v for k, v in atoms.arrays.items() if k not in ("numbers", "positions")}
    per_frame = dict(atoms.info)
    calc = getattr(atoms, "calc", None)
    results = getattr(calc, "results", None) or {}
    for k, v in results.items():
        (per_atom if k in _CALC_PER_ATOM else per_frame).setdefault(k, v)
    return per_atom, per_frame


def molecule_or_crystal(atoms: ase.Atoms) -> ase.Atoms:
    """Set ``pbc`` False along zero lattice vectors; a frame with no periodic direction gets a zero cell."""
    lengths = np.linalg.norm(np.asarray(atoms.cell), axis=1)
    pbc = np.asarray(atoms.pbc, dtype=bool) & (lengths > 0)
    atoms.pbc = pbc
    if not pbc.any():
        atoms.cell = np.zeros((3, 3))
    return atoms


def plain_atoms(atoms: ase.Atoms) -> ase.Atoms:
    """Numbers, positions, cell and pbc only (drops calculator, info and extra arrays)."""
    return ase.Atoms(
        numbers=atoms.numbers.copy(),
        positions=atoms.positions.copy(),
        cell=np.asarray(atoms.cell).copy(),
        pbc=atoms.pbc.copy(),
    )


def frame_targets(atoms: ase.Atoms, mapping: dict[str, str], source: str, loc: str) -> dict[str, np.ndarray]:
    """Read ``{canonical name: file key}`` from one frame into canonical float64 arrays.

    DataError naming source, frame and key when a key is missing or has the wrong number of values.
    """
    per_atom, per_frame = frame_fields(atoms)
    out = {}
    for name, key in mapping.items():
        if key in per_atom:
            raw = per_atom[key]
        elif key in per_frame:
            raw = per_frame[key]
        else:
            raise DataError(f"{where(source, loc, key)}: missing (needed for {name})")
        out[name] = as_target(name, raw, len(atoms), source, loc, key)
    return out


def _resolve_aliases(per_atom, per_frame, source: str, loc: str) -> dict[str, str]:
    """canonical name -> the key this frame uses for it; DataError on conflicting or misplaced aliases."""
    mapping: dict[str, str] = {}
    for table, here, other, kind in (
        (PER_ATOM_ALIASES, per_atom, per_frame, "per-atom array"),
        (PER_FRAME_ALIASES, per_frame, per_atom, "per-frame info value"),
    ):
        for name, aliases in table.items():
            misplaced = [a for a in aliases if a in other and a not in here]
            if misplaced:
                raise DataError(f"{where(source, loc, misplaced[0])}: expected a {kind} (for {name})")
            present = [a for a in aliases if a in here]
            if not present:
                continue
            first = np.asarray(here[present[0]], dtype=np.float64).ravel()
            for a in present[1:]:
                other_v = np.asarray(here[a], dtype=np.float64).ravel()
                if other_v.shape != first.shape or not np.allclose(other_v, first, equal_nan=True):
                    raise DataError(
                        f"{where(source, loc, a)}: conflicts with key {present[0]!r} (both give {name})"
                    )
            mapping[name] = present[0]
    return mapping


def load_labelled_extxyz(path_or_bytes, name: str = "upload.xyz") -> list[Sample]:
    """Labelled structures from an extended-XYZ file (path, bytes or file object).

    Keys and aliases: see the module docstring; 9-number tensors are read row-major
    (``T[i, j] = v[3 * i + j]``; for BEC row = field, column = displacement).  Every frame must carry
    the same labels; errors name the file, the 0-based frame index and the key.  ``shielding`` rows
    that are all NaN mark unlabelled atoms (``masks['shielding']`` False, values set to 0); other
    NaN/inf labels are errors.  Sample ``id`` is the frame index.
    """
    data, label = read_bytes(path_or_bytes, name)
    frames = read_frames(data, label)
    if not frames:
        raise DataError(f"{label}: no frames")
    mappings = []
    for f, atoms in enumerate(frames):
        per_atom, per_frame = frame_fields(atoms)
        mappings.append(_resolve_aliases(per_atom, per_frame, label, f"frame {f}"))
    present = {}
    for f, m in enumerate(mappings):
        for canon, key in m.items():
            present.setdefault(canon, (f, key))
    if not present:
        known = sorted({a for t in (PER_ATOM_ALIASES, PER_FRAME_ALIASES) for v in t.values() for a in v})
        raise DataError(f"{label}, frame 0: no label found; recognised keys: {', '.join(known)}")
    samples = []
    for f, (atoms, m) in enumerate(zip(frames, mappings)):
        loc = f"frame {f}"
        for canon, (f0, key) in present.items():
            if canon not in m:
                raise DataError(f"{where(label, loc, key)}: missing (frame {f0} has it, as {canon})")
        targets = frame_targets(atoms, m, label, loc)
        masks = {}
        if keys.SHIELDING in targets:
            sh = targets[keys.SHIELDING]
            unlabelled = np.isnan(sh).all(axis=(1, 2))
            if unlabelled.any():
                masks[keys.SHIELDING] = ~unlabelled
                sh[unlabelled] = 0.0
        for canon, v in targets.items():
            if not np.all(np.isfinite(v)):
                idx = tuple(int(i) for i in np.argwhere(~np.isfinite(v))[0])
                raise DataError(f"{where(label, loc, m[canon])}: non-finite value (NaN/inf) at index {idx}")
        samples.append(
            Sample(
                atoms=molecule_or_crystal(plain_atoms(atoms)),
                targets=targets,
                masks=masks,
                source=label,
                id=str(f),
            )
        )
    return samples
