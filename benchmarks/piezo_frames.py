"""Where the Materials Project piezo labels point against the ionic term: axial versus in-plane parts.

    python benchmarks/piezo_frames.py [--table benchmarks/data/mp_piezo_ionic.npz] [--list -6m2]

For crystals with one principal axis n (a 3-, 4- or 6-fold rotation axis), every rank-3 tensor splits into
the part that a 180° turn about n keeps (``even``: e33, e31, e15, e14 ... in a frame with z ∥ n) and the
part it reverses (``odd``: e11, e22 ..., every index in the plane).  Where that turn is a symmetry of the
crystal (6mm, 4mm, -42m ...), the odd part is zero; in 3, 32, 3m, -6 and -6m2 it is not.  A label stored in a
frame turned by 180° about n relative to the cell (the symmetry check of README_mp cannot see such a turn:
it maps the point group onto itself) would agree with e_ion in its even part and oppose it in its odd part.
The script prints, on the sign-certain frames of the training split (never test):

1. per point group, how often each part of the label points against that part of e_ion;
2. how many of those cells spglib's standardisation turns at all (a calculation in the standardised cell,
   stored unturned, would be one mechanism);
3. the ionic-term table alone, no network, each crystal left out of its own fit (train) and on calib: the
   shipped multiples per point group (one scalar in 32, 2, -6m2) against a multiple of the odd part only
   (even part kept whole) in the uniaxial groups.

e_ion is read from the offset table (``--table``) and divided by the table's own point-group multiple, so the
shipped table serves.  Reported in docs/piezo.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

UNIAXIAL = ("3", "32", "3m", "-6", "-6m2")  # a principal axis, but the 180° turn about it is no symmetry
MIN_FRAMES = 5  # sign-certain training frames a point group needs for its own multiple (as piezo_ionic.py)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float((a * b).sum() / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def load_rows(table: Path, split: dict) -> list[dict]:
    """One dict per train/calib crystal with an ionic term: point group, e_ion parts, label, flags."""
    from piezo_ionic import load_piezo

    from etgnn_core.data.offsets import read_offsets, table_meta
    from etgnn_core.metrics import sign_certain
    from etgnn_core.spectra.piezo import axis_parts, group_multiple, principal_axis, symmetry_dataset

    scales = table_meta(table).get("point_group_scales") or {}
    ion = read_offsets(table)
    by_id = {str(s.id): s for s in load_piezo()}
    rows = []
    for part in ("train", "calib"):
        for i in map(str, split[part]):
            s = by_id.get(i)
            if s is None or i not in ion:
                continue
            a = s.atoms
            ds = symmetry_dataset(a)  # spglib at 0.1 Å, README_mp's tolerance
            group = ds.pointgroup
            m = group_multiple(group, scales)
            if m == 0:
                continue  # the table holds no e_ion to recover
            axis = principal_axis(ds, a.cell.array) if group in UNIAXIAL else None
            e = ion[i] / m
            y = np.asarray(s.targets["piezoelectric"], dtype=np.float64).reshape(3, 3, 3)
            rows.append(dict(id=i, part=part, group=group, formula=a.get_chemical_formula(), e=e, y=y,
                             e_parts=axis_parts(e, axis), y_parts=axis_parts(y, axis),
                             certain=sign_certain(getattr(s, "info", None)),
                             turned=not np.allclose(ds.std_rotation_matrix, np.eye(3), atol=1e-3)))
    return rows


def print_parts(rows: list[dict]) -> None:
    print("| point group | sign-certain training crystals | even part against e_ion | odd part against e_ion "
          "| cells spglib's standardisation turns |")
    print("|---|---|---|---|---|")
    for group in UNIAXIAL:
        rs = [r for r in rows if r["part"] == "train" and r["certain"] and r["group"] == group]
        if not rs:
            continue
        print(f"| {group} | {len(rs)} | {against(rs, 0)} | {against(rs, 1)} | {sum(r['turned'] for r in rs)} |")


def against(rows: list[dict], part: int) -> str:
    """"K of N": crystals whose label part (0 even, 1 odd) points against that of e_ion, of those with both."""
    live = [r for r in rows if min(np.linalg.norm(r["e_parts"][part]), np.linalg.norm(r["y_parts"][part])) > 1e-3]
    return f"{sum(cosine(r['e_parts'][part], r['y_parts'][part]) < 0 for r in live)} of {len(live)}"


def print_list(rows: list[dict], group: str) -> None:
    print(f"\n| {group} crystal | id | cells: cos(e_ion, label) | |e_ion| | |label| |")
    print("|---|---|---|---|---|")
    for r in rows:
        if r["group"] == group and r["certain"]:
            print(f"| {r['formula']} | {r['id']} ({r['part']}) | {cosine(r['e'], r['y']):+.2f} | "
                  f"{np.linalg.norm(r['e']):.3f} | {np.linalg.norm(r['y']):.3f} |")


def fit_multiple(rows: list[dict], odd_only: bool) -> tuple[float, float]:
    """(even, odd) multiples of e_ion closest to the labels in least squares over ``rows`` (sign-certain), as
    piezo_ionic.py fits them: one multiple sum <e, y> / sum |e|^2, or with ``odd_only`` the even part kept whole
    and the odd one sum <odd, y> / sum |odd|^2 (the parts are orthogonal)."""
    parts = [(r["e_parts"][1] if odd_only else r["e"], r["y"]) for r in rows]
    den = sum(float((e * e).sum()) for e, _ in parts)
    m = sum(float((e * y).sum()) for e, y in parts) / den if den > 0 else 1.0
    return (1.0, m) if odd_only else (m, m)


def leave_one_out(rows: list[dict], scalar_groups: set, odd_groups: set) -> dict[str, tuple[float, float]]:
    """{part: (components / zero tensor, ‖e‖ error / median-norm baseline)} of the table alone; a train crystal
    is left out of the fit of its own multiple."""
    med = float(np.median([np.linalg.norm(r["y"]) for r in rows if r["part"] == "train"]))
    acc = {p: [[], [], [], []] for p in ("train", "calib")}
    for k, r in enumerate(rows):
        fit_on = [q for j, q in enumerate(rows)
                  if j != k and q["part"] == "train" and q["certain"] and q["group"] == r["group"]]
        me = mo = 1.0
        if r["group"] in scalar_groups | odd_groups and len(fit_on) >= MIN_FRAMES:
            me, mo = fit_multiple(fit_on, odd_only=r["group"] in odd_groups)
        pred = me * r["e_parts"][0] + mo * r["e_parts"][1]
        a = acc[r["part"]]
        if r["certain"]:
            a[0].append(np.abs(pred - r["y"]).mean())
            a[1].append(np.abs(r["y"]).mean())
        a[2].append(abs(np.linalg.norm(pred) - np.linalg.norm(r["y"])))
        a[3].append(abs(med - np.linalg.norm(r["y"])))
    return {p: (np.mean(a[0]) / np.mean(a[1]), np.mean(a[2]) / np.mean(a[3])) for p, a in acc.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--table", type=Path, default=ROOT / "benchmarks" / "data" / "mp_piezo_ionic.npz")
    p.add_argument("--split", type=Path, default=ROOT / "pretrained" / "universal_piezo" / "split.json")
    p.add_argument("--list", metavar="GROUP", action="append", default=[],
                   help="also list the sign-certain crystals of this point group (train and calib)")
    args = p.parse_args(argv)
    rows = load_rows(args.table, json.loads(args.split.read_text()))
    print_parts(rows)
    for group in args.list:
        print_list(rows, group)
    print("\n| ionic-term table alone (no network) | train, left out of its own fit: components | ‖e‖ "
          "| calib: components | ‖e‖ |")
    print("|---|---|---|---|---|")
    recipes = {"1 x e_ion": (set(), set()),
               "shipped: one multiple in 32, 2, -6m2": ({"32", "2", "-6m2"}, set()),
               "odd part x multiple in 3, 32, 3m, -6m2; 2: one multiple": ({"2"}, {"3", "32", "3m", "-6m2"})}
    for name, (scalar, odd) in recipes.items():
        res = leave_one_out(rows, scalar, odd)
        print(f"| {name} | {res['train'][0]:.3f}x | {res['train'][1]:.3f}x | {res['calib'][0]:.3f}x | "
              f"{res['calib'][1]:.3f}x |", flush=True)
    train = [r for r in rows if r["part"] == "train" and r["certain"]]
    fitted = {g: round(fit_multiple([r for r in train if r["group"] == g], odd_only=True)[1], 2) for g in UNIAXIAL
              if sum(r["group"] == g for r in train) >= MIN_FRAMES}
    print(f"\nodd-part multiples fitted on every sign-certain training frame: {fitted}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
