"""Known parts of targets ("offsets") read from a table: the model learns the rest (Sample.offsets).

A table is an ``.npz`` file with ``ids`` [n] (sample ids, as in ``Sample.id``) and ``values``
[n, ...] (the target's unit and shape), or a folder of such files (``shard_*.npz``, written by
benchmarks/piezo_ionic.py, whose tensors are under ``e_ion``).  Example: the ionic piezoelectric
term e_ion (C/m^2, full e_ijk) of the Materials Project piezo set, from Born charges and SevenNet
(etgnn_core.spectra.piezo).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from etgnn_core.data.sample import DataError


def _table_files(path: Path) -> list[Path]:
    return sorted(path.glob("*.npz")) if path.is_dir() else [path]


def read_offsets(path: str | Path) -> dict[str, np.ndarray]:
    """id -> offset array from an npz table or a folder of them."""
    path = Path(path)
    files = _table_files(path)
    if not files or not all(f.exists() for f in files):
        raise DataError(f"{path}: no offset table (.npz with 'ids' and 'values') found")
    table: dict[str, np.ndarray] = {}
    for f in files:
        with np.load(f) as d:
            key = "values" if "values" in d else "e_ion" if "e_ion" in d else None
            if "ids" not in d or key is None:
                raise DataError(f"{f}: an offset table needs arrays 'ids' and 'values'")
            ids, values = d["ids"].tolist(), np.asarray(d[key], dtype=np.float64)
        if len(ids) != len(values):
            raise DataError(f"{f}: {len(ids)} ids but {len(values)} values")
        table.update(zip(map(str, ids), values))
    return table


def table_meta(path: str | Path) -> dict:
    """The table's ``meta`` (JSON: what made its values, e.g. kind, bec_model, potential, scale); {} if none."""
    import json

    with np.load(_table_files(Path(path))[0]) as d:
        return json.loads(str(d["meta"])) if "meta" in d else {}


def multiple_key(scale: float = 1.0, point_group_scales: dict[str, float] | None = None,
                 odd_part_scales: dict[str, float] | None = None):
    """A comparable description of the multiple of the known part a table holds (its ``meta``) or a
    model adds: ``scale``, or with per-point-group multiples (etgnn_core.spectra.piezo) a tuple; multiples of
    the odd part about the principal axis add a third entry."""
    if not point_group_scales and not odd_part_scales:
        return float(scale)
    key = (float(scale), tuple(sorted((k, float(v)) for k, v in (point_group_scales or {}).items())))
    if odd_part_scales:
        key += (("odd", tuple(sorted((k, float(v)) for k, v in odd_part_scales.items()))),)
    return key


def attach_offsets(samples: list, target: str, table: dict[str, np.ndarray],
                   scale=1.0) -> tuple[list, int]:
    """Samples with ``offsets[target]`` set from ``table``; samples the table lacks are left out.
    ``scale``: the multiple of the known part the table holds (:func:`multiple_key` of its ``meta``), kept in
    ``offset_scales``.

    Returns (kept samples, number left out): a model trained on offsets always predicts with one,
    so a structure without it cannot be scored either.
    """
    kept = []
    for s in samples:
        value = table.get(str(s.id))
        if value is None or target not in s.targets:
            continue
        if np.shape(value) != np.shape(s.targets[target]) and np.size(value) != np.size(s.targets[target]):
            raise DataError(f"offset of {s.id} for {target}: shape {np.shape(value)}, "
                            f"the label has {np.shape(s.targets[target])}")
        s.offsets[target] = np.asarray(value, dtype=np.float64).reshape(np.shape(s.targets[target]))
        s.offset_scales[target] = scale
        kept.append(s)
    return kept, len(samples) - len(kept)


def known_parts_spec(offsets: dict[str, str]) -> dict[str, dict]:
    """known_parts.json for a model trained with ``offsets`` (target -> table): how to compute each part anew.

    The table's ``meta`` (JSON) says what made it, e.g. {"kind": "ionic_piezo", "bec_model": ...,
    "potential": ...}; a model folder carries it so predictions add the same part
    (etgnn_core.spectra.piezo.load_known_parts).
    """
    out = {}
    for target, path in offsets.items():
        meta = table_meta(path)
        if not meta.get("kind"):
            raise DataError(f"{_table_files(Path(path))[0]}: the offset table does not say how its values were "
                            "made ('meta')")
        out[target] = meta
    return out


def write_known_parts(folder, offsets: dict[str, str]) -> None:
    """known_parts.json in a model folder trained with ``offsets`` (nothing when there are none)."""
    import json

    from etgnn_core.spectra.piezo import KNOWN_PARTS_FILE

    if offsets:
        (Path(folder) / KNOWN_PARTS_FILE).write_text(json.dumps(known_parts_spec(offsets), indent=1))
