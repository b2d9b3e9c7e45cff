"""Γ force constants of the Materials Project dielectric set: a second Born-charge signal from ε0.

    python benchmarks/eps_ionic_table.py [--shard K/N] [--out runs/eps_ionic] [--limit N]
    python benchmarks/eps_ionic_table.py --merge benchmarks/data/mp_dielectric_phonons.npz [--out runs/eps_ionic]

The MP set labels the static ε0 (``dielectric_total``) beside ε∞; their difference is the ionic
part, which the Born charges set through the Γ phonons (Gaussian units, e² = 14.39964 eV·Å):

    ε_ion[i, k] = (4π e² / V) Σ_{a,j,b,l} Z[a, i, j] Φ⁺[a j, b l] Z[b, k, l]

with Φ⁺ the pseudo-inverse of the Γ force constants (translations and unstable modes left out;
etgnn_core.spectra.piezo.force_constant_pinv).  This script stores Φ⁺ (Å²/eV) from SevenNet 7net-l3i5
(phonopy ±0.01 Å in the cell as given, no relaxation; one torch thread) for every crystal the
loader keeps (outliers dropped), with the DFT ε_ion label and the number of unstable modes.
Shards (``OUT/shard_K_of_N.npz``, checkpointed every 10 crystals) run in parallel; ``--merge`` writes
one table: ``ids``, ``pinv_flat`` (the [3n, 3n] blocks, flattened and concatenated), ``n_atoms``,
``eps_ionic_dft`` [m, 3, 3], ``unstable`` [m], ``meta``, which ``data.eps_ionic`` of a training config
names (etgnn_core.data.ionic).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def dft_eps_ionic() -> dict[str, np.ndarray]:
    """material_id -> ε0 - ε∞ of the MP dielectric file (the loader keeps only ε∞)."""
    from ase.io import iread

    from etgnn_core.data.datasets import _root

    out = {}
    for a in iread(_root(None) / "mp" / "mp_dielectric_petousis2017.xyz", index=":"):
        total = np.asarray(a.info["dielectric_total"], dtype=float).reshape(3, 3)
        inf = np.asarray(a.info["dielectric"], dtype=float).reshape(3, 3)
        out[str(a.info["material_id"])] = total - inf
    return out


def compute(args) -> int:
    import torch

    from etgnn_core.data import load_dataset
    from etgnn_core.data.ionic import write_ionic_table
    from etgnn_core.spectra.phonons import (
        DEFAULT_POTENTIAL,
        PhononConfig,
        finite_displacement_phonopy,
        force_calculator,
    )
    from etgnn_core.spectra.piezo import force_constant_pinv

    torch.set_num_threads(1)
    k, n = (int(x) for x in args.shard.split("/"))
    samples = load_dataset("mp/dielectric")[0][k::n][: args.limit]
    labels = dft_eps_ionic()
    calc = force_calculator(DEFAULT_POTENTIAL, "cpu")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ids, pinvs, eps, unstable = [], [], [], []
    for i, s in enumerate(samples):
        ph, _ = finite_displacement_phonopy(s.atoms, calc, PhononConfig(supercell=(1, 1, 1), displacement=0.01))
        pinv, bad = force_constant_pinv(ph.force_constants)
        ids.append(str(s.id)), pinvs.append(pinv), eps.append(labels[str(s.id)]), unstable.append(bad)
        if i % 10 == 0 or i == len(samples) - 1:  # a checkpoint: a killed run keeps what it did
            write_ionic_table(out / f"shard_{k}_of_{n}.npz", ids, pinvs, eps, unstable)
            print(f"shard {k}/{n}: {i + 1}/{len(samples)}", flush=True)
    return 0


def merge(args) -> int:
    from etgnn_core.data.ionic import read_ionic_table, write_ionic_table
    from etgnn_core.spectra.phonons import DEFAULT_POTENTIAL

    table = read_ionic_table(args.out)
    ids = sorted(table)
    pinvs, eps, unstable = zip(*(table[i] for i in ids))
    write_ionic_table(args.merge, ids, pinvs, eps, unstable, compress=True,
                      meta=json.dumps({"kind": "gamma_pinv", "potential": DEFAULT_POTENTIAL, "displacement": 0.01}))
    print(f"{args.merge}: {len(ids)} crystals")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shard", default="0/1", help="K/N: every N-th crystal starting at K")
    p.add_argument("--out", default=str(ROOT / "runs" / "eps_ionic"))
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--merge", metavar="NPZ", help="write the shards into one table")
    args = p.parse_args(argv)
    return merge(args) if args.merge else compute(args)


if __name__ == "__main__":
    raise SystemExit(main())
