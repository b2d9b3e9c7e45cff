"""Tensor-specific test metrics and their baselines, shared by committees, cards and benchmarks/accuracy.py.

Every function takes plain numpy arrays in the label units of :mod:`etgnn_core.keys` (Born charges
in e, ε∞ dimensionless, piezo e_ijk in C/m², elastic C_ijkl in GPa) and returns plain floats.

Headline metric and baseline per tensor (what issue 13's targets are measured on):

* ``born_charges``: MAE over labelled components (e) vs the species-mean tensor of the training set;
* ``dielectric``: MAE over components vs the mean training tensor;
* ``piezoelectric``: component MAE vs the zero tensor, and MAE of the Frobenius norm ||e|| on all
  frames vs the median training norm (``norm_mae`` / ``norm_baseline_mae``);
* ``elastic``: component MAE vs the mean training tensor, plus Voigt bulk / shear moduli computed from
  the C_ijkl on all frames (``bulk_mae`` / ``shear_mae`` vs the mean training modulus, GPa);
* any other tensor: component MAE vs the mean training tensor (per-atom: species mean).

Component MAEs (every tensor) are taken over frames whose orientation is certain
(``Sample.info["rotation_ambiguous"]`` False, or absent): an ambiguous label is known only up to a
rotation of the lattice, so its components cannot be compared; norms and moduli do not depend on it.
``set_sign_rule("dft")`` also leaves out the Materials Project piezo labels that README_mp calls certain but
whose hexagonal-cell frame is open to a 180° turn about z (``Sample.info["c2z_unresolved"]``; DFT found such
labels both turned and not, ``etgnn_core.tensors.frames``); the default ``readme`` is the definition issue 13's
piezo target was written against.
``n`` says how many frames the component MAE covers, ``n_all`` how many there were.

Coverage and rank correlation of an uncertainty (:func:`coverage`, :func:`spearman`) work on one
number per structure (sign-certain frames): its MAE (:func:`structure_errors`) and its mean predicted std.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from etgnn_core import keys

COVERAGE_K = 2.0  # a structure is covered when its MAE <= COVERAGE_K x its mean std


def voigt_moduli(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Voigt bulk and shear moduli (GPa) of C_ijkl [..., 3, 3, 3, 3] (GPa); a torch tensor stays one
    (the training loss on the moduli differentiates through this).

    K_V = (C11 + C22 + C33 + 2 (C12 + C13 + C23)) / 9,
    G_V = (C11 + C22 + C33 - (C12 + C13 + C23) + 3 (C44 + C55 + C66)) / 15 (Voigt 4 = 23, 5 = 13, 6 = 12).
    """
    if not hasattr(c, "shape"):
        c = np.asarray(c, dtype=float)
    d = c[..., 0, 0, 0, 0] + c[..., 1, 1, 1, 1] + c[..., 2, 2, 2, 2]
    off = c[..., 0, 0, 1, 1] + c[..., 0, 0, 2, 2] + c[..., 1, 1, 2, 2]
    shear = c[..., 1, 2, 1, 2] + c[..., 0, 2, 0, 2] + c[..., 0, 1, 0, 1]
    return (d + 2 * off) / 9.0, (d - off + 3 * shear) / 15.0


SIGN_RULES = ("readme", "dft")
_sign_rule = "readme"
# the help of the benchmark scripts' --dft-frames flag, which calls set_sign_rule("dft")
DFT_FRAMES_HELP = ("leave out of the sign-certain piezo frames the hexagonal-cell labels open to a 180° turn about z "
                   "(DFT found them both ways, docs/piezo.md; default: README_mp's flag alone, issue 13's definition)")


def set_sign_rule(rule: str) -> None:
    """Which frames count as sign-certain from now on: ``readme`` (not ``rotation_ambiguous``) or ``dft`` (nor
    ``c2z_unresolved``).  For benchmark scripts that report both."""
    global _sign_rule
    if rule not in SIGN_RULES:
        raise ValueError(f"unknown sign rule {rule!r}; known: {', '.join(SIGN_RULES)}")
    _sign_rule = rule


def sign_certain(info: dict | None) -> bool:
    """True unless the sample says its piezo sign depends on an ambiguous rotation."""
    info = info or {}
    return not (info.get("rotation_ambiguous", False) or (_sign_rule == "dft" and info.get("c2z_unresolved", False)))


def _mae(diffs: Sequence[np.ndarray]) -> float:
    flat = [np.abs(np.asarray(d, dtype=float)).ravel() for d in diffs]
    n = sum(f.size for f in flat)
    return float(sum(f.sum() for f in flat) / n) if n else float("nan")


def _labelled(arr: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    return arr if mask is None else np.asarray(arr)[np.asarray(mask, dtype=bool)]


def species_mean(train_numbers: Sequence[np.ndarray], train_labels: Sequence[np.ndarray],
                 train_masks: Sequence[np.ndarray | None] | None = None) -> dict[int, np.ndarray]:
    """Atomic number -> mean per-atom tensor over the labelled training atoms."""
    sums: dict[int, np.ndarray] = {}
    counts: dict[int, int] = {}
    for i, (z, y) in enumerate(zip(train_numbers, train_labels)):
        m = np.ones(len(z), bool) if train_masks is None or train_masks[i] is None else np.asarray(train_masks[i])
        for zz, yy in zip(np.asarray(z)[m], np.asarray(y)[m]):
            sums[int(zz)] = sums.get(int(zz), 0.0) + yy
            counts[int(zz)] = counts.get(int(zz), 0) + 1
    return {z: sums[z] / counts[z] for z in sums}


class Baselines:
    """The baseline predictions of one tensor, fitted on training labels."""

    def __init__(self, name: str, per_atom: bool, train_labels: Sequence[np.ndarray],
                 train_numbers: Sequence[np.ndarray] | None = None, train_masks=None):
        self.name, self.per_atom = name, per_atom
        labels = [np.asarray(y, dtype=float) for y in train_labels]
        if per_atom:
            self.by_species = species_mean(train_numbers or [], labels, train_masks)
            self.overall = np.mean(np.concatenate(labels), axis=0) if labels else None
        else:
            self.mean = np.mean(labels, axis=0) if labels else None
            self.median_norm = float(np.median([np.linalg.norm(y) for y in labels])) if labels else float("nan")
            if name == keys.ELASTIC and labels:
                k, g = voigt_moduli(np.stack(labels))
                self.mean_bulk, self.mean_shear = float(k.mean()), float(g.mean())

    def predict(self, numbers: np.ndarray, shape: tuple) -> np.ndarray:
        """Baseline tensor for one structure (zeros for piezo, see module docstring)."""
        if self.name == keys.PIEZOELECTRIC:
            return np.zeros(shape)
        if self.per_atom:
            fallback = self.overall if self.overall is not None else np.zeros(shape[1:])
            if not len(numbers):
                return np.zeros(shape)
            return np.stack([self.by_species.get(int(z), fallback) for z in numbers])
        return self.mean if self.mean is not None else np.zeros(shape)


def tensor_metrics(name: str, per_atom: bool, preds: Sequence[np.ndarray], labels: Sequence[np.ndarray],
                   numbers: Sequence[np.ndarray], baselines: Baselines, masks=None, infos=None) -> dict[str, float]:
    """Headline MAE and baseline MAE of one tensor over a test set (see the module docstring)."""
    n = len(preds)
    masks = masks if masks is not None else [None] * n
    infos = infos if infos is not None else [{}] * n
    base = [baselines.predict(z, np.shape(y)) for z, y in zip(numbers, labels)]
    keep = [i for i in range(n) if sign_certain(infos[i])]
    diff = [_labelled(np.asarray(preds[i]) - labels[i], masks[i]) for i in keep]
    bdiff = [_labelled(np.asarray(base[i]) - labels[i], masks[i]) for i in keep]
    out = {"mae": _mae(diff), "baseline_mae": _mae(bdiff), "n": len(keep), "n_all": n}
    out["ratio"] = out["mae"] / out["baseline_mae"] if out["baseline_mae"] else float("nan")
    if name == keys.PIEZOELECTRIC:
        norm = lambda a: float(np.linalg.norm(a))  # noqa: E731
        out["norm_mae"] = _mae([norm(p) - norm(y) for p, y in zip(preds, labels)])
        out["norm_baseline_mae"] = _mae([baselines.median_norm - norm(y) for y in labels])
        out["norm_ratio"] = out["norm_mae"] / out["norm_baseline_mae"] if out["norm_baseline_mae"] else float("nan")
    if name == keys.ELASTIC and n:
        kp, gp = voigt_moduli(np.stack(preds))
        kt, gt = voigt_moduli(np.stack(labels))
        for label, p, t, mean in (("bulk", kp, kt, baselines.mean_bulk), ("shear", gp, gt, baselines.mean_shear)):
            out[f"{label}_mae"] = _mae([p - t])
            out[f"{label}_baseline_mae"] = _mae([mean - t])
            out[f"{label}_ratio"] = out[f"{label}_mae"] / out[f"{label}_baseline_mae"]
    return out


def structure_errors(preds: Sequence[np.ndarray], labels: Sequence[np.ndarray], masks=None) -> np.ndarray:
    """[n] MAE of each structure over its labelled components."""
    masks = masks if masks is not None else [None] * len(preds)
    return np.array([np.mean(np.abs(_labelled(np.asarray(p) - y, m))) if _labelled(y, m).size else np.nan
                     for p, y, m in zip(preds, labels, masks)])


def structure_spreads(stds: Sequence[np.ndarray], masks=None) -> np.ndarray:
    """[n] mean predicted std of each structure over its labelled components."""
    masks = masks if masks is not None else [None] * len(stds)
    return np.array([np.mean(_labelled(s, m)) if _labelled(s, m).size else np.nan for s, m in zip(stds, masks)])


def coverage(errors: np.ndarray, spreads: np.ndarray, k: float = COVERAGE_K) -> float:
    """Fraction of structures with MAE <= k x mean std (NaNs ignored)."""
    ok = np.isfinite(errors) & np.isfinite(spreads)
    return float(np.mean(errors[ok] <= k * spreads[ok])) if ok.any() else float("nan")


def fit_scale(errors: np.ndarray, spreads: np.ndarray, target: float = 0.9, k: float = COVERAGE_K) -> float:
    """The factor c for which at least ``target`` of new structures are expected to have MAE <= k c std.

    Split-conformal quantile of r = MAE / (k std) over the n calibration structures: the
    ceil((n + 1) target)-th smallest r (the largest when that exceeds n).  The plain ``target``
    quantile under-covers on a small calibration split (about target - 1/n in expectation); this one
    covers at least ``target`` for exchangeable structures.  Structures whose members agree exactly
    (std 0) are left out; 1.0 when nothing can be fitted (e.g. identical members).
    """
    ok = np.isfinite(errors) & np.isfinite(spreads) & (spreads > 0)
    if not ok.any():
        return 1.0
    ratios = np.sort(errors[ok] / (k * spreads[ok]))
    rank = min(len(ratios), math.ceil((len(ratios) + 1) * target - 1e-9))  # 1-based
    return float(ratios[rank - 1])


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (ties averaged); NaN for fewer than 3 finite pairs or a constant input."""
    from scipy.stats import rankdata

    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        return float("nan")
    ra, rb = rankdata(a[ok]), rankdata(b[ok])
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


BASELINE_NAMES = {
    keys.BORN_CHARGES: "species-mean tensor",
    keys.PIEZOELECTRIC: "zero tensor",
}


def baseline_name(name: str, per_atom: bool) -> str:
    return BASELINE_NAMES.get(name, "species-mean tensor" if per_atom else "mean training tensor")
