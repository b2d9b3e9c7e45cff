"""Containers shared by every loader: one labelled structure, one data set description, one error.

Units and index conventions of the tensors in ``Sample.targets`` are those of
:mod:`etgnn_core.keys`; each loader's :class:`DatasetInfo` repeats the units of what it returns
(the water sets, for example, are in atomic units, not eV).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import ase
import numpy as np

from etgnn_core import keys


@dataclass
class Sample:
    """One structure and its labels.

    ``atoms``: positions and cell in Angstrom.  Molecules have ``pbc`` all False and a zero cell.
    ``targets``: name (from :mod:`etgnn_core.keys`) -> float64 array.  Shapes:
    ``born_charges`` [n, 3, 3], ``dielectric`` [3, 3], ``piezoelectric`` [3, 3, 3], ``dipole`` [3],
    ``polarizability`` [3, 3], ``forces`` [n, 3], ``energy`` shape (), ``shielding`` [n, 3, 3],
    ``elastic`` [3, 3, 3, 3].
    ``masks``: target name -> bool [n] for per-atom targets labelled on some atoms only
    (``shielding``: the ``atom_selector`` atoms).  Unlabelled rows of the target hold zeros.
    ``source``: file path; ``zip::member`` for a POSCAR inside a zip, ``db::row N`` for an ase.db row.
    ``id``: structure id, or the 0-based frame index (as a string) for multi-frame xyz files.
    ``info``: set-specific facts used by splits and metrics: ``group`` (reduced formula + space group;
    structures of one group never straddle two split parts) and ``rotation_ambiguous`` (True when the
    label's frame is fixed only up to a symmetry operation of the lattice; see the MP loaders).
    ``offsets``: target name -> a known part of that structure tensor, in the target's unit and shape
    (e.g. the ionic piezo term from Born charges and a force model, etgnn_core.data.offsets): a model
    trained with offsets learns the rest, and its prediction plus the offset is compared with the label.
    ``offset_scales``: target name -> the multiple of the known part its table holds (the table's
    ``meta`` ``scale``, 1 when absent; with per-point-group multiples a tuple, etgnn_core.data.offsets.multiple_key):
    a model whose known part has another multiple gets it computed anew.
    ``eps_ionic``: (kernel [3n, 3n], ε0 - ε∞ label [3, 3]) where the ionic dielectric response labels the
    Born charges indirectly (etgnn_core.data.ionic), else None.
    """

    atoms: ase.Atoms
    targets: dict[str, np.ndarray]
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    source: str = ""
    id: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    offsets: dict[str, np.ndarray] = field(default_factory=dict)
    offset_scales: dict[str, Any] = field(default_factory=dict)
    eps_ionic: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def n_atoms(self) -> int:
        return len(self.atoms)


@dataclass
class DatasetInfo:
    """What a data set holds and in which units.

    ``units``: target name -> unit string.  ``conventions``: index conventions and any filtering.
    ``path``: relative to the data root in :func:`list_datasets`, absolute in what
    :func:`load_dataset` returns.  ``targets``: the target names a sample of the set carries.
    ``extra``: set-specific facts (e.g. how many structures a filter dropped, a published split).
    """

    name: str
    description: str
    units: dict[str, str]
    conventions: str
    path: str
    targets: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)


class DataError(ValueError):
    """A data file or a sample is unusable.  The message names the file, frame/id/line, key and problem."""


def where(source: str, loc: str = "", key: str = "") -> str:
    """Uniform prefix for :class:`DataError` messages: ``source, loc, key 'k'``."""
    parts = [p for p in (source, loc) if p]
    if key:
        parts.append(f"key {key!r}")
    return ", ".join(parts)


def is_train_only(sample) -> bool:
    """A structure of a ``data.train_only`` set: trained on, never validated, calibrated or tested on."""
    return bool((getattr(sample, "info", None) or {}).get(keys.TRAIN_ONLY))
