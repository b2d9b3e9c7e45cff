"""Ionic piezoelectric tensors of the Materials Project piezo set: Born charges x internal strain.

    python benchmarks/piezo_ionic.py [--shard K/N] [--out runs/piezo_ionic] [--limit N]
    python benchmarks/piezo_ionic.py --merge benchmarks/data/mp_piezo_ionic.npz [--out runs/piezo_ionic]
    python benchmarks/piezo_ionic.py --report [--out runs/piezo_ionic] [--part calib]

For every crystal of ``mp/piezo`` (configs/universal_piezo.yaml) whose elements the Born-charge
committee ``universal_dielectric_bec`` knows: Born charges (committee mean, e) of the crystal as
given, Γ force constants and internal-strain forces from SevenNet 7net-l3i5, and
e_ion = (e/V) Z · Φ⁺ Λ (etgnn_core.spectra.piezo), C/m^2, full e_ijk.  Written per shard to
``OUT/shard_K_of_N.npz`` (ids, e_ion [n, 3, 3, 3], seconds); shards run in
parallel processes, one torch thread each.  ``--merge`` writes every shard into one offset table
(``ids``, ``values``, ``meta``; etgnn_core.data.offsets) for configs/universal_piezo.yaml.
``--report`` compares e_ion with the DFT total tensor
on one split part of the shipped split (components on sign-certain frames vs the zero tensor,
||e|| on all frames vs the median training norm): e_ion lacks the clamped-ion (electronic) term.
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


def meta() -> str:
    """What made the tensors (the offset table's ``meta``, copied into the model's known_parts.json)."""
    from etgnn_core.registry import weights_fingerprint
    from etgnn_core.spectra.phonons import DEFAULT_POTENTIAL

    return json.dumps({"kind": "ionic_piezo", "bec_model": BEC_MODEL, "potential": DEFAULT_POTENTIAL,
                       "bec_model_sha256": weights_fingerprint(BEC_MODEL)})


def load_piezo():
    from etgnn_core.train import TrainConfig
    from etgnn_core.train.trainer import load_samples

    cfg = TrainConfig.from_file(ROOT / "configs" / "universal_piezo.yaml")
    samples, _ = load_samples(replace(cfg, data=replace(cfg.data, offsets={})))  # the labels, not the offsets
    return samples


def compute(args) -> int:
    import torch

    from etgnn_core.spectra.phonons import DEFAULT_POTENTIAL
    from etgnn_core.spectra.piezo import IonicPiezoTerm
    from etgnn_core.structure import StructureError

    torch.set_num_threads(1)
    k, n = (int(x) for x in args.shard.split("/"))
    samples = load_piezo()[k::n][: args.limit]
    term = IonicPiezoTerm(BEC_MODEL, DEFAULT_POTENTIAL, device="cpu")  # what universal_piezo adds when predicting
    ids, tensors, seconds = [], [], []
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for i, s in enumerate(samples):
        t0 = time.perf_counter()
        try:
            e = term(s.atoms)
        except StructureError:  # an element the Born-charge committee does not know: no ionic term
            continue
        ids.append(str(s.id)), tensors.append(e), seconds.append(time.perf_counter() - t0)
        if i % 10 == 0 or i == len(samples) - 1:  # a checkpoint: a killed run keeps what it did
            np.savez(out / f"shard_{k}_of_{n}.npz", ids=np.array(ids), e_ion=np.array(tensors),
                     seconds=np.array(seconds), meta=meta())
            print(f"shard {k}/{n}: {len(ids)} of {len(samples)} done, {np.mean(seconds):.1f} s each", flush=True)
    return 0


def merge(args) -> int:
    from etgnn_core.data.offsets import read_offsets

    cache = read_offsets(args.out)
    ids = sorted(cache)
    Path(args.merge).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.merge, ids=np.array(ids), values=np.stack([cache[i] for i in ids]), meta=meta())
    print(f"{args.merge}: {len(ids)} crystals")
    return 0


def report(args) -> int:
    from etgnn_core.data.offsets import read_offsets
    from etgnn_core.metrics import sign_certain

    cache = read_offsets(args.out)
    split = json.loads((ROOT / "runs" / "universal_piezo" / "committee" / "split.json").read_text()) \
        if args.split is None else json.loads(Path(args.split).read_text())
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
    print(f"| {args.part} | {len(part)} ({sum(cert)} sign-certain) | {comp:.4f} | {zero:.4f} | {comp / zero:.2f} "
          f"| {norm:.3f} | {norm0:.3f} | {norm / norm0:.2f} |")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shard", default="0/1", help="K/N: every N-th crystal starting at K")
    p.add_argument("--out", default=str(ROOT / "runs" / "piezo_ionic"))
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--report", action="store_true")
    p.add_argument("--merge", metavar="NPZ", help="write the shards into one offset table")
    p.add_argument("--part", default="calib")
    p.add_argument("--split", default=None, help="split.json (default: runs/universal_piezo/committee)")
    args = p.parse_args(argv)
    return report(args) if args.report else merge(args) if args.merge else compute(args)


if __name__ == "__main__":
    raise SystemExit(main())
