"""How far a model's tensor is to be trusted for a crystal's symmetry, measured by cross-validation.

A committee's std says how much its members disagree; it cannot say when they agree on a wrong answer.
For universal_piezo that happens by symmetry class: in some point groups the Materials Project labels point
against everything the structure tells the network (docs/piezo.md), and cross-validation measures it.  A model
folder may hold ``reliability.json`` (written by ``benchmarks/piezo_cv.py reliability``)::

    {"piezoelectric": {
        "by": "point_group",                  # spglib at 0.1 Å (etgnn_core.spectra.piezo.point_group)
        "measured": "how: recipe, folds, crystals, CPU or GPU",
        "min_crystals": 8,                    # fewer sign-certain crystals: the group is called unmeasured
        "vanishes": ["-1", "2/m", ...],       # groups where the tensor is zero by symmetry: no warning
        "groups": {"3m": {"crystals": 15,     # sign-certain crystals scored (components)
                          "all_crystals": 27, # every crystal scored (‖e‖)
                          "components": 1.68, # MAE over the 27 components / the zero tensor's MAE
                          "norm": 0.91}},     # MAE of ‖e‖ / the median-norm baseline's MAE
        "turn_open_groups": ["-6m2", ...],    # groups whose training labels were open to a 180° turn about z
        "sign_flipped_groups": {"2": ["As2GaLiO7 (mp-545346)", "B3BiO6 (mp-23349)"]},  # labels DFT found sign-flipped
        "recipe": {...},                      # recipe_of the training config it was measured for
        "known_part_groups": {...}}}          # known_part_groups of the known part (e.g. universal_piezo's multiples)

Each prediction of such a model gets one plain-language warning per tensor when its crystal's point group
scored no better than the zero tensor in components, or had too few crystals to tell (docs/uncertainty.md),
and one more when the group's training labels mixed two orientations (``turn_open_groups``: hexagonal-cell
labels that a 180° turn about z changes, which DFT found both turned and as stored; docs/piezo.md), or held
a label that README_mp calls sign-certain and DFT of its own cell found with the opposite sign
(``sign_flipped_groups``, from benchmarks/data/dft_piezo_check.json).
"""

from __future__ import annotations

import json
from pathlib import Path

RELIABILITY_FILE = "reliability.json"
TABLE_KEYS = ("by", "min_crystals", "groups")
GROUP_KEYS = ("crystals", "components", "norm")
RECIPE_KEYS = ("targets", "moduli_weights", "model", "optim", "losses", "weights", "tensor_options")


def recipe_of(config: dict) -> dict:
    """The part of a training config (TrainConfig.to_dict(), or a committee train.yaml's member_config) that a
    table was measured for: data set, split seed and network recipe, not the folds or the offset tables."""
    return {"dataset": config["data"]["dataset"], "split_seed": config["split"]["seed"],
            **{k: config[k] for k in RECIPE_KEYS}}


def known_part_groups(spec: dict) -> dict[str, list[str]]:
    """The point groups that get their own multiple of a known part (a known_parts.json entry, or an offset
    table's meta): the shape of the recipe's ionic term, not its fitted values (those differ per fold)."""
    return {k: sorted(spec.get(k) or {}) for k in ("point_group_scales", "odd_part_scales")}


class ReliabilityError(ValueError):
    """A malformed reliability.json; the message names the file and the key."""


def load_reliability(folder) -> dict:
    """tensor name -> its table from ``folder``/reliability.json ({} when the folder has none)."""
    path = Path(folder) / RELIABILITY_FILE
    if not path.exists():
        return {}
    try:
        tables = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ReliabilityError(f"{path}: not JSON ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(tables, dict):
        raise ReliabilityError(f"{path}: expected an object of tensor name -> table")
    for name, table in tables.items():
        missing = [k for k in TABLE_KEYS if not isinstance(table, dict) or k not in table]
        if missing:
            raise ReliabilityError(f"{path}: {name}: missing key(s) {', '.join(missing)}")
        if table["by"] != "point_group":
            raise ReliabilityError(f"{path}: {name}.by = {table['by']!r}: only 'point_group' is known")
        for group, row in table["groups"].items():
            bad = [k for k in GROUP_KEYS if not isinstance(row, dict) or not isinstance(row.get(k), (int, float))]
            if bad:
                raise ReliabilityError(f"{path}: {name}.groups[{group!r}]: missing or non-numeric {', '.join(bad)}")
    return tables


def reliability_warning(name: str, group: str, table: dict) -> str:
    """The warning for a crystal of point ``group`` (or "" when the table has nothing to say)."""
    if group in table.get("vanishes", ()):
        return ""
    row = table["groups"].get(group)
    n = int(row["crystals"]) if row else 0
    if n < int(table["min_crystals"]):
        seen = f"only {n} crystal{'s' if n != 1 else ''}" if n else "no crystal"
        return (f"{name}: {seen} of point group {group} had a label to check this model against in "
                "cross-validation: how far to trust it for this symmetry is unmeasured")
    if row["components"] < 1.0:
        return ""
    found = f"{name}: for point group {group}, cross-validation ({n} crystals) found"
    if row["norm"] < 1.0:
        return (f"{found} this model's components no closer to DFT than all zeros ({row['components']:.2f}x their "
                f"error) but its size ‖e‖ closer than a typical size ({row['norm']:.2f}x): trust the size, not the "
                "signs of components")
    return (f"{found} neither this model's components nor its size ‖e‖ closer to DFT than all zeros and a typical "
            f"size ({row['components']:.2f}x, {row['norm']:.2f}x their errors): treat this tensor as a guess")


def turn_warning(name: str, group: str, table: dict) -> str:
    """The warning for a point group whose training labels were open to a 180° turn (or "")."""
    if group not in table.get("turn_open_groups", ()):
        return ""
    return (f"{name}: for point group {group}, the training labels cannot be oriented: a 180° turn about the "
            "principal axis leaves this symmetry unchanged, and DFT found such turned labels in the Materials "
            "Project set (docs/piezo.md), so the signs of components in the plane normal to that axis are uncertain")


def sign_warning(name: str, group: str, table: dict) -> str:
    """The warning for a point group with a training label that DFT found sign-flipped (or "")."""
    ids = table.get("sign_flipped_groups", {}).get(group)
    if not ids:
        return ""
    which = (f"the label of training crystal {ids[0]} with the opposite sign" if len(ids) == 1 else
             f"the labels of training crystals {', '.join(ids)} with the opposite sign")
    return (f"{name}: for point group {group}, DFT of the stored cell gave {which}, and this model learned from "
            "such labels: the signs of its components may be reversed; trust the size ‖e‖, not the signs "
            "(docs/piezo.md)")


def add_reliability_warnings(model, preds: list) -> None:
    """Append each tensor's reliability warning (model.reliability, from load_reliability) to the predictions."""
    tables = getattr(model, "reliability", None) or {}
    if not tables:
        return
    from etgnn_core.spectra.piezo import point_group
    from etgnn_core.structure import is_periodic

    for p in preds:
        names = [n for n in tables if n in p.tensors]
        if not names or not is_periodic(p.atoms):
            continue  # a molecule has no point group here; the periodic warning already speaks
        group = point_group(p.atoms)
        for name in names:
            for warn in (reliability_warning, turn_warning, sign_warning):
                line = warn(name, group, tables[name])
                if line and line not in p.warnings:
                    p.warnings.append(line)
