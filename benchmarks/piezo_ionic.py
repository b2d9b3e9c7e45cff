"""Ionic piezoelectric tensors of the Materials Project piezo set: Born charges x internal strain.

    python benchmarks/piezo_ionic.py [--shard K/N] [--out runs/piezo_ionic] [--limit N]
    python benchmarks/piezo_ionic.py --merge benchmarks/data/mp_piezo_ionic.npz [--out runs/piezo_ionic]
    python benchmarks/piezo_ionic.py --from-relaxation --merge benchmarks/data/mp_piezo_ionic.npz \
        [--bec-model DIR] [--scale S] [--point-group-scales [--only-point-groups G,..]] [--odd-part-groups G,..]
        [--split SPLIT.json]
    python benchmarks/piezo_ionic.py --report [--out runs/piezo_ionic | TABLE.npz] [--part calib]

For every crystal of ``mp/piezo`` (configs/universal_piezo.yaml) whose elements the Born-charge
committee ``universal_dielectric_bec`` knows: Born charges (committee mean, e) of the crystal as
given, Γ force constants and internal-strain forces from SevenNet 7net-l3i5, the internal
relaxation u = Φ⁺ Λ (Å per unit strain) and e_ion = (e/V) Z · u (etgnn_core.spectra.piezo), C/m^2,
full e_ijk.  Written per shard to ``OUT/shard_K_of_N.npz`` (ids, e_ion [n, 3, 3, 3], u of every
crystal, seconds); shards run in parallel processes, one torch thread each (2-20 s a crystal).
``--merge`` writes every shard into one offset table (``ids``, ``values``, ``meta``;
etgnn_core.data.offsets) for configs/universal_piezo.yaml, and the relaxations into
``benchmarks/data/mp_piezo_relaxation.npz`` (``ids``, ``u_flat`` [sum of atoms, 3, 3, 3],
``n_atoms``).  ``--from-relaxation`` writes the offset table anew from that file and the Born-charge
model installed now, in seconds: what to run after replacing universal_dielectric_bec (then
retrain universal_piezo's members; docs/piezo.md); ``--scale S`` writes S x e_ion and records S, so a
network trained beside that table is predicted with the same multiple; ``--point-group-scales`` also
multiplies each crystal's e_ion by the least-squares multiple of its point group, fitted on the sign-certain
training frames of ``--split`` (groups with fewer than 5 take the multiple of all of them) and recorded in
``meta``.  ``--odd-part-groups`` multiplies, in those point groups, only the in-plane (odd) part of e_ion about
the principal axis by its own least-squares multiple (``odd_part_scales`` in ``meta``; docs/piezo.md, axial and
in-plane parts).  ``--report`` compares e_ion with the DFT total
tensor on one split part of the shipped split (components on sign-certain frames vs the zero
tensor, ‖e‖ on all frames vs the median training norm) and prints the least-squares multiple of
e_ion on its sign-certain frames (``--part train`` chose ``--scale``): e_ion lacks the clamped-ion term.
``--by-point-group`` adds, per point group, how often e_ion points against the label (docs/piezo.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BEC_MODEL = "universal_dielectric_bec"
# u = Φ⁺Λ of every crystal (SevenNet, independent of the Born charges): a new Born-charge model needs no phonons
RELAX_TABLE = ROOT / "benchmarks" / "data" / "mp_piezo_relaxation.npz"


def meta(bec_folder: str = BEC_MODEL, scale: float = 1.0, point_group_scales: dict | None = None,
         odd_part_scales: dict | None = None) -> str:
    """What made the tensors (the offset table's ``meta``, copied into the model's known_parts.json).

    ``bec_folder``: where the Born charges came from; a candidate committee folder fingerprints as it
    will once installed under the name BEC_MODEL (the fingerprint reads paths relative to the folder).
    ``scale``: the table holds scale x e_ion (recorded, so predictions add the same multiple).
    """
    from etgnn_core.registry import weights_fingerprint
    from etgnn_core.spectra.phonons import DEFAULT_POTENTIAL

    spec = {"kind": "ionic_piezo", "bec_model": BEC_MODEL, "potential": DEFAULT_POTENTIAL,
            "bec_model_sha256": weights_fingerprint(bec_folder)}
    if scale != 1.0:
        spec["scale"] = scale
    if point_group_scales:
        spec["point_group_scales"] = point_group_scales
    if odd_part_scales:
        spec["odd_part_scales"] = odd_part_scales
    return json.dumps(spec)


MIN_POINT_GROUP_FRAMES = 5  # fewer sign-certain training frames: the point group takes the global multiple


def fit_point_group_scales(samples: list, e_ion: list) -> dict[str, float]:
    """Point group -> least-squares multiple s of e_ion closest to the labels (sum over the group's
    sign-certain frames of <e_ion, e> / |e_ion|^2), and "default": the same over all of them."""
    from etgnn_core.metrics import sign_certain
    from etgnn_core.spectra.piezo import point_group

    num, den, count = {}, {}, {}
    for smp, e in zip(samples, e_ion):
        if not sign_certain(getattr(smp, "info", None)):
            continue
        y = np.asarray(smp.targets["piezoelectric"]).reshape(3, 3, 3)
        g = point_group(smp.atoms)
        num[g], den[g] = num.get(g, 0.0) + float((e * y).sum()), den.get(g, 0.0) + float((e * e).sum())
        count[g] = count.get(g, 0) + 1
    scales = {g: round(num[g] / den[g], 4) for g in num if count[g] >= MIN_POINT_GROUP_FRAMES and den[g] > 0}
    scales["default"] = round(sum(num.values()) / sum(den.values()), 4)
    return scales


def fit_odd_part_scales(samples: list, e_ion: list, groups: list[str]) -> dict[str, float]:
    """Point group -> least-squares multiple of the odd (in-plane) part of e_ion about the principal axis over
    the group's sign-certain frames.  The odd and even parts are orthogonal, so whatever multiple the even part
    gets, the best one of the odd part is sum <odd, label> / sum |odd|^2 (docs/piezo.md, axial and in-plane
    parts).  A group with fewer than MIN_POINT_GROUP_FRAMES frames with an odd part is an error."""
    from etgnn_core.metrics import sign_certain
    from etgnn_core.spectra.piezo import axis_parts, principal_axis, symmetry_dataset

    num, den, count = dict.fromkeys(groups, 0.0), dict.fromkeys(groups, 0.0), dict.fromkeys(groups, 0)
    for smp, e in zip(samples, e_ion):
        dataset = symmetry_dataset(smp.atoms)
        group = dataset.pointgroup if dataset is not None else "1"
        if group not in num or not sign_certain(getattr(smp, "info", None)):
            continue
        _, odd = axis_parts(e, principal_axis(dataset, smp.atoms.cell.array))
        if np.abs(odd).max() < 1e-9:
            continue
        y = np.asarray(smp.targets["piezoelectric"]).reshape(3, 3, 3)
        num[group] += float((odd * y).sum())
        den[group] += float((odd * odd).sum())
        count[group] += 1
    few = [g for g in groups if count[g] < MIN_POINT_GROUP_FRAMES]
    if few:
        raise SystemExit(f"--odd-part-groups: fewer than {MIN_POINT_GROUP_FRAMES} sign-certain training frames with an "
                         f"in-plane part in {few} ({ {g: count[g] for g in groups} })")
    return {g: round(num[g] / den[g], 4) for g in groups}


def only_point_groups(scales: dict[str, float], groups: list[str]) -> dict[str, float]:
    """The fitted multiples of ``groups`` alone; every other crystal keeps 1 x e_ion ("default": 1).
    A group without a fitted multiple (too few sign-certain training frames) is an error, not a silent 1."""
    unknown = [g for g in groups if g not in scales or g == "default"]
    if unknown:
        raise SystemExit(f"--only-point-groups: no multiple fitted for {unknown} (fewer than "
                         f"{MIN_POINT_GROUP_FRAMES} sign-certain training frames); fitted: "
                         f"{sorted(g for g in scales if g != 'default')}")
    return {**{g: scales[g] for g in groups}, "default": 1.0}


def load_piezo():
    from etgnn_core.train import TrainConfig
    from etgnn_core.train.trainer import load_samples

    cfg = TrainConfig.from_file(ROOT / "configs" / "universal_piezo.yaml")
    samples, _ = load_samples(replace(cfg, data=replace(cfg.data, offsets={})))  # the labels, not the offsets
    return samples


def compute(args) -> int:
    import torch

    from etgnn_core.spectra.phonons import DEFAULT_POTENTIAL
    from etgnn_core.spectra.piezo import IonicPiezoTerm, ionic_piezo
    from etgnn_core.structure import StructureError

    torch.set_num_threads(1)
    k, n = (int(x) for x in args.shard.split("/"))
    samples = load_piezo()[k::n][: args.limit]
    term = IonicPiezoTerm(BEC_MODEL, DEFAULT_POTENTIAL, device="cpu")  # what universal_piezo adds when predicting
    ids, tensors, relax, seconds = [], [], [], []
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for i, s in enumerate(samples):
        t0 = time.perf_counter()
        try:
            z, u = term.parts(s.atoms)
        except StructureError:  # an element the Born-charge committee does not know: no ionic term
            continue
        ids.append(str(s.id)), relax.append(u), seconds.append(time.perf_counter() - t0)
        tensors.append(ionic_piezo(z, u, s.atoms.get_volume()))
        if i % 10 == 0 or i == len(samples) - 1:  # a checkpoint: a killed run keeps what it did
            np.savez(out / f"shard_{k}_of_{n}.npz", ids=np.array(ids), e_ion=np.array(tensors),
                     seconds=np.array(seconds), meta=meta(), **ragged(relax))
            print(f"shard {k}/{n}: {len(ids)} of {len(samples)} done, {np.mean(seconds):.1f} s each", flush=True)
    return 0


def ragged(relax: list) -> dict:
    """u of several crystals [n_a, 3, 3, 3] each as one array and the atom counts (npz has no ragged arrays)."""
    return {"u_flat": np.concatenate(relax) if relax else np.zeros((0, 3, 3, 3)),
            "n_atoms": np.array([len(u) for u in relax], dtype=np.int64)}


def read_relaxations(path: Path) -> dict[str, np.ndarray]:
    """id -> u [n, 3, 3, 3] (Å per unit strain) from a relaxation table or a folder of shards."""
    files = sorted(path.glob("shard_*.npz")) if path.is_dir() else [path]
    out = {}
    for f in files:
        with np.load(f, allow_pickle=False) as d:
            if "u_flat" not in d:
                continue  # a shard written before the relaxation was stored
            parts = np.split(d["u_flat"], np.cumsum(d["n_atoms"])[:-1])
            out.update(zip(map(str, d["ids"]), parts))
    return out


def merge(args) -> int:
    from etgnn_core.data.offsets import read_offsets
    from etgnn_core.spectra.phonons import DEFAULT_POTENTIAL

    cache = read_offsets(args.out)
    ids = sorted(cache)
    Path(args.merge).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.merge, ids=np.array(ids), values=np.stack([cache[i] for i in ids]), meta=meta())
    print(f"{args.merge}: {len(ids)} crystals")
    relax = read_relaxations(Path(args.out))
    if set(relax) == set(ids):
        np.savez_compressed(RELAX_TABLE, ids=np.array(ids), meta=json.dumps({"potential": DEFAULT_POTENTIAL}),
                            **ragged([relax[i] for i in ids]))
        print(f"{RELAX_TABLE}: the internal relaxation u of the same crystals")
    return 0


def from_relaxation(args) -> int:
    """The offset table anew from RELAX_TABLE and the installed Born-charge model (seconds, no phonons)."""
    import torch

    from etgnn_core.api import load_model
    from etgnn_core.spectra.piezo import ionic_piezo

    torch.set_num_threads(1)
    relax = read_relaxations(RELAX_TABLE)
    by_id = {str(s.id): s for s in load_piezo()}
    ids = sorted(i for i in relax if i in by_id)
    bec = load_model(args.bec_model, device="cpu")
    preds = bec.predict([by_id[i].atoms for i in ids])
    values = args.scale * np.stack([ionic_piezo(p["born_charges"], relax[i], by_id[i].atoms.get_volume())
                                    for i, p in zip(ids, preds)])
    scales = odd = None
    if args.point_group_scales or args.odd_part_groups:
        from etgnn_core.spectra.piezo import IonicPiezoTerm

        train = set(map(str, json.loads(Path(args.split).read_text())["train"]))
        fit = [k for k, i in enumerate(ids) if i in train]
        fit_samples, fit_values = [by_id[ids[k]] for k in fit], [values[k] for k in fit]
        if args.point_group_scales:
            scales = fit_point_group_scales(fit_samples, fit_values)
            if args.only_point_groups:
                scales = only_point_groups(scales, args.only_point_groups.split(","))
        if args.odd_part_groups:
            odd = fit_odd_part_scales(fit_samples, fit_values, args.odd_part_groups.split(","))
        term = IonicPiezoTerm(BEC_MODEL, "", point_group_scales=scales, odd_part_scales=odd)
        values = np.stack([term.apply(by_id[i].atoms, v) for i, v in zip(ids, values)])
        print(f"multiples per point group (from {len(fit)} training crystals of {args.split}): {scales}; "
              f"of the in-plane part: {odd}")
    np.savez_compressed(args.merge, ids=np.array(ids), values=values,
                        meta=meta(args.bec_model, args.scale, scales, odd))
    print(f"{args.merge}: {len(ids)} crystals, {args.scale:g} x the ionic term with Born charges of {args.bec_model}"
          + (" x a multiple per point group" if scales else ""))
    return 0


def report(args) -> int:
    from etgnn_core.data.offsets import read_offsets
    from etgnn_core.metrics import sign_certain

    cache = read_offsets(args.out)
    split = json.loads(Path(args.split).read_text())
    by_id = {str(s.id): s for s in load_piezo()}
    part = [by_id[i] for i in map(str, split[args.part]) if i in by_id and i in cache]
    train_norms = [np.linalg.norm(by_id[i].targets["piezoelectric"]) for i in map(str, split["train"]) if i in by_id]
    med = float(np.median(train_norms))
    y = [np.asarray(s.targets["piezoelectric"]).reshape(3, 3, 3) for s in part]
    e = [cache[str(s.id)] for s in part]
    cert = [sign_certain(getattr(s, "info", None)) for s in part]
    comp = np.mean([np.abs(a - b).mean() for a, b, c in zip(e, y, cert) if c])
    zero = np.mean([np.abs(b).mean() for b, c in zip(y, cert) if c])
    norm = np.mean([abs(np.linalg.norm(a) - np.linalg.norm(b)) for a, b in zip(e, y)])
    norm0 = np.mean([abs(med - np.linalg.norm(b)) for b in y])
    # the multiple s of e_ion closest to the labels (least squares over sign-certain frames): --scale
    ec, yc = (np.stack([t for t, c in zip(v, cert) if c]) for v in (e, y))
    scale = float((ec * yc).sum() / (ec * ec).sum())
    print("| part | crystals | components | zero tensor | ratio | ‖e‖ | median norm | ratio | L2 scale |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| {args.part} | {len(part)} ({sum(cert)} sign-certain) | {comp:.4f} | {zero:.4f} | {comp / zero:.2f} "
          f"| {norm:.3f} | {norm0:.3f} | {norm / norm0:.2f} | {scale:.2f} |")
    if args.by_point_group:
        print_point_groups([s for s, c in zip(part, cert) if c], ec, yc)
    return 0


def print_point_groups(samples: list, e_ion: np.ndarray, labels: np.ndarray) -> None:
    """Per point group (spglib, symprec 0.1 Å as in README_mp): how often e_ion points against the label.

    cos = <e_ion, e> / (|e_ion| |e|) over the 27 components.  Where the clamped-ion term outweighs and
    opposes the ionic one the total points against e_ion (cos near -1); so does a label whose frame
    differs from the cell's by a rotation that maps the point group onto itself, which the invariance
    check of README_mp cannot see.
    """
    from etgnn_core.spectra.piezo import point_group

    rows: dict[str, list[float]] = {}
    for s, e, y in zip(samples, e_ion, labels):
        cos = float((e * y).sum() / (np.linalg.norm(e) * np.linalg.norm(y) + 1e-12))
        rows.setdefault(point_group(s.atoms), []).append(cos)
    print("\n| point group | sign-certain crystals | cos(e_ion, label) < 0 | median cos |")
    print("|---|---|---|---|")
    for name, cos in sorted(rows.items(), key=lambda kv: -len(kv[1])):
        print(f"| {name} | {len(cos)} | {sum(c < 0 for c in cos)} | {np.median(cos):+.2f} |")


def main(argv=None) -> int:
    from etgnn_core import metrics

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shard", default="0/1", help="K/N: every N-th crystal starting at K")
    p.add_argument("--out", default=str(ROOT / "runs" / "piezo_ionic"))
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--report", action="store_true")
    p.add_argument("--merge", metavar="NPZ", help="write the shards into one offset table (and RELAX_TABLE)")
    p.add_argument("--from-relaxation", action="store_true",
                   help=f"write the --merge table from {RELAX_TABLE.name} and the Born charges of --bec-model")
    p.add_argument("--bec-model", default=BEC_MODEL, metavar="NAME_OR_FOLDER",
                   help=f"with --from-relaxation: the Born-charge committee (default: the installed {BEC_MODEL}; "
                        "a candidate's committee folder tries it before installing)")
    p.add_argument("--scale", type=float, default=1.0,
                   help="with --from-relaxation: write this multiple of e_ion (the network learns the rest)")
    p.add_argument("--point-group-scales", action="store_true",
                   help="with --from-relaxation: also a multiple of e_ion per point group, fitted on the "
                        "training part of --split")
    p.add_argument("--only-point-groups", metavar="G,G,...",
                   help="with --point-group-scales: fit a multiple for these point groups only (e.g. 32,2,-6m2, "
                        "where the labels mostly point against e_ion); every other crystal keeps 1 x e_ion")
    p.add_argument("--odd-part-groups", metavar="G,G,...",
                   help="with --from-relaxation: in these point groups (e.g. 32,3m,-6m2) multiply the in-plane "
                        "(odd) part of e_ion about the principal axis by its own multiple, fitted on the training "
                        "part of --split; the axial part keeps the group's multiple (docs/piezo.md)")
    p.add_argument("--dft-frames", action="store_true",
                   help="with --point-group-scales / --odd-part-groups, fitting the multiples on the frames a model "
                        "trained with data.c2z_ambiguous sees as certain: " + metrics.DFT_FRAMES_HELP)
    p.add_argument("--part", default="calib")
    p.add_argument("--by-point-group", action="store_true",
                   help="with --report: also how often e_ion points against the label, per point group")
    p.add_argument("--split", default=str(ROOT / "pretrained" / "universal_piezo" / "split.json"),
                   help="split.json with the part (default: the shipped universal_piezo's)")
    args = p.parse_args(argv)
    if args.odd_part_groups and not args.from_relaxation:
        p.error("--odd-part-groups needs --from-relaxation (it writes the table)")
    if args.only_point_groups and not (args.point_group_scales and args.from_relaxation):
        p.error("--only-point-groups needs --from-relaxation --point-group-scales (it narrows those multiples)")
    metrics.set_sign_rule("dft" if args.dft_frames else "readme")
    if args.from_relaxation:
        if not args.merge:
            p.error("--from-relaxation needs --merge NPZ (the offset table to write)")
        return from_relaxation(args)
    return report(args) if args.report else merge(args) if args.merge else compute(args)


if __name__ == "__main__":
    raise SystemExit(main())
