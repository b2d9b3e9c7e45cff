"""Seeded train/validation/test splits, saved as JSON so a training run can be reproduced."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .sample import DataError

SPLIT_NAMES = ("train", "val", "test")
GROUPED_SPLIT_NAMES = ("train", "val", "calib", "test")


def split_indices(n: int, seed: int = 0, fractions=(0.8, 0.1, 0.1)) -> dict[str, np.ndarray]:
    """Shuffle ``range(n)`` with ``seed`` and cut it into ``train``/``val``/``test`` (sorted int64 arrays).

    The parts are disjoint and cover ``range(n)``.  ``val`` and ``test`` get ``round(f * n)``
    indices each; ``train`` gets the rest.  The same ``(n, seed, fractions)`` gives the same split.
    """
    n = int(n)
    if n < 0:
        raise DataError(f"split_indices: n must be >= 0, got {n}")
    f = np.asarray(fractions, dtype=np.float64)
    if f.shape != (3,) or np.any(f < 0) or not np.isclose(f.sum(), 1.0, atol=1e-6):
        raise DataError(f"split_indices: fractions must be 3 non-negative numbers summing to 1, got {fractions}")
    perm = np.random.default_rng(seed).permutation(n)
    n_val = int(round(f[1] * n))
    n_test = int(round(f[2] * n))
    if n_val + n_test > n:
        n_test = n - n_val
    n_train = n - n_val - n_test
    parts = (perm[:n_train], perm[n_train : n_train + n_val], perm[n_train + n_val :])
    return {k: np.sort(p).astype(np.int64) for k, p in zip(SPLIT_NAMES, parts)}


def check_split(split: dict[str, np.ndarray], n: int | None = None, source: str = "split") -> None:
    """DataError unless the parts are disjoint non-negative integer indices (covering ``range(n)`` if given)."""
    seen: dict[int, str] = {}
    for k, idx in split.items():
        arr = np.asarray(idx)
        if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
            raise DataError(f"{source}: part {k!r} must be a 1-D integer array, got {arr.dtype} {list(arr.shape)}")
        for i in arr.tolist():
            if i < 0 or (n is not None and i >= n):
                raise DataError(f"{source}: part {k!r} index {i} out of range 0..{'?' if n is None else n - 1}")
            if i in seen:
                raise DataError(f"{source}: index {i} is in both {seen[i]!r} and {k!r}")
            seen[i] = k
    if n is not None and len(seen) != n:
        raise DataError(f"{source}: parts cover {len(seen)} of {n} indices")


def save_split(path, split: dict[str, np.ndarray]) -> None:
    """Write ``{part: [indices]}`` as JSON."""
    check_split(split, source=str(path))
    data = {k: [int(i) for i in np.asarray(v).tolist()] for k, v in split.items()}
    Path(path).write_text(json.dumps(data, indent=1))


def load_split(path) -> dict[str, np.ndarray]:
    """Read a split written by :func:`save_split` (int64 arrays); DataError if malformed or overlapping."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot read split ({exc})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object {{part: [indices]}}")
    split = {}
    for k, v in data.items():
        if not isinstance(v, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in v):
            raise DataError(f"{path}: part {k!r} must be a list of integers")
        split[str(k)] = np.asarray(v, dtype=np.int64).reshape(-1)
    check_split(split, source=str(path))
    return split


def grouped_split(groups: list[str], seed: int = 0, fractions=(0.8, 0.1, 0.0, 0.1),
                  member: int | None = None, seen: np.ndarray | None = None,
                  unseen_val: bool = False, fold: tuple[int, int] | None = None) -> dict[str, np.ndarray]:
    """Split structures so that no group (e.g. reduced formula + space group) straddles two parts.

    ``fractions`` = (train, val, calib, test) of the structures.  Groups are shuffled with ``seed``
    and dealt to test, then calib, until each holds its share of structures; the rest is shuffled
    again with ``(seed, member)`` and dealt to val, the remainder is train.  So test and calib are
    the same for every committee member, and train/val differ from member to member.
    ``seen`` ([n] bool): structures a parent model was trained or validated on; their groups never
    enter test or calib, so a fine-tuned committee is still measured on unseen crystals;
    ``unseen_val``: nor val (then early stopping measures transfer as well).
    ``fold`` = (k, K): K-fold cross-validation over what test leaves.  Those groups are dealt, in the
    seeded order, to K folds of about equal size (each to the smallest so far); fold k is ``calib`` (the
    crystals a recipe is scored on) and the calib fraction must be 0.  Test is the same as without folds,
    so cross-validation never reads it; over k = 0..K-1 every other crystal is scored once.
    Returns sorted int64 index arrays ``train``, ``val``, ``calib``, ``test``.
    """
    f = np.asarray(fractions, dtype=np.float64)
    if f.shape != (4,) or np.any(f < 0) or not np.isclose(f.sum(), 1.0, atol=1e-6):
        raise DataError(f"grouped_split: fractions must be 4 non-negative numbers summing to 1, got {fractions}")
    names, inverse = np.unique(np.asarray(groups, dtype=object).astype(str), return_inverse=True)
    sizes = np.bincount(inverse, minlength=len(names))
    n = len(groups)
    order = np.random.default_rng(seed).permutation(len(names))
    part = np.full(len(names), -1)  # 0 train, 1 val, 2 calib, 3 test
    unseen = np.ones(len(names), bool)
    if seen is not None:
        unseen[np.unique(inverse[np.asarray(seen, bool)])] = False

    def deal(order, label, share, allowed=None):
        want, have = int(round(share * n)), 0
        for g in order:
            if have >= want:
                break
            if part[g] == -1 and (allowed is None or allowed[g]):
                part[g], have = label, have + sizes[g]

    deal(order, 3, f[3], unseen)
    if fold is not None:
        deal_fold(order, part, sizes, fold, f[2])
    deal(order, 2, f[2], unseen)
    rest = np.nonzero(part == -1)[0]
    deal(rest[np.random.default_rng([seed, 0 if member is None else member + 1]).permutation(len(rest))], 1, f[1],
         unseen if unseen_val else None)
    part[part == -1] = 0
    atom_part = part[inverse]
    return {k: np.nonzero(atom_part == i)[0].astype(np.int64) for i, k in enumerate(GROUPED_SPLIT_NAMES)}


def near_duplicate_groups(atoms_list, tol: float) -> list[str]:
    """Label structures so that near-duplicates share a label (for :func:`grouped_split`).

    Two structures with the same species in the same order are near-duplicates when the RMS, over
    the three cell vectors and every atom, of the difference in Cartesian coordinates is <= ``tol``
    (Angstrom); labels are the connected components of that relation, so a chain of close
    structures is one group.  A randomly perturbed set holds exact duplicates and near-continua
    of tiny perturbations: without grouping, test structures have twins in train and the test MAE
    measures recall, not prediction.  Atoms stored wrapped into a different image count as apart.
    """
    from scipy.spatial import cKDTree

    labels = [""] * len(atoms_list)
    families: dict[tuple, list[int]] = {}
    for i, atoms in enumerate(atoms_list):
        families.setdefault(tuple(int(z) for z in atoms.numbers), []).append(i)
    for f, (species, idx) in enumerate(families.items()):
        rows = np.array([np.concatenate([np.asarray(atoms_list[i].cell).ravel(), atoms_list[i].positions.ravel()])
                         for i in idx])  # [n_family, 3 * (3 + n_atoms)]
        scale = np.sqrt(len(species) + 3)  # Euclidean norm of the row difference -> RMS per 3-vector
        pairs = cKDTree(rows).query_pairs(tol * scale, output_type="ndarray") if tol > 0 else np.zeros((0, 2), int)
        for i, c in zip(idx, _components(len(idx), pairs[:, 0], pairs[:, 1])):
            labels[i] = f"dup{f}.{c}"
    return labels


def merge_groups(*labelings: list[str]) -> list[str]:
    """One label per structure such that structures sharing a label in any labeling share it here.

    (Connected components over all the labelings: keeping both formula groups and near-duplicate
    families whole may join several of each.)
    """
    n = len(labelings[0])
    names: dict[tuple[int, str], int] = {}
    rows, cols = [], []
    for k, labels in enumerate(labelings):
        for i, lab in enumerate(labels):
            rows.append(i)
            cols.append(n + names.setdefault((k, lab), len(names)))
    return [f"g{c}" for c in _components(n + len(names), rows, cols)[:n]]


def _components(n: int, rows, cols) -> np.ndarray:
    """Connected-component label of each of ``n`` nodes joined by the edges ``rows[k] -- cols[k]``."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    adj = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    return connected_components(adj, directed=False)[1]


def deal_fold(order: np.ndarray, part: np.ndarray, sizes: np.ndarray, fold: tuple[int, int], calib: float) -> None:
    """Mark (part = 2, calib) the groups of fold ``fold[0]`` of ``fold[1]``, dealing the groups ``part`` leaves
    free in ``order`` to the fold with the fewest structures so far (grouped_split's ``fold``)."""
    k, n_folds = fold
    if not (isinstance(k, int) and isinstance(n_folds, int) and n_folds >= 2 and 0 <= k < n_folds):
        raise DataError(f"grouped_split: fold must be (k, K) with K >= 2 and 0 <= k < K, got {fold}")
    if calib:
        raise DataError(f"grouped_split: with a fold the calib fraction must be 0 (the fold is calib), got {calib}")
    filled = np.zeros(n_folds)
    for g in order:
        if part[g] == -1:
            j = int(np.argmin(filled))
            filled[j] += sizes[g]
            if j == k:
                part[g] = 2
