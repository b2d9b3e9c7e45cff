"""Predicted static dielectric constant ε0 = ε∞ (ETGNN) + ε_ionic (potential phonons + ETGNN Born charges)
against DFPT-PBE ε0 (`dielectric_total`) of the Materials Project dielectric set (Petousis et al. 2017).

    nice .venv/bin/python benchmarks/spectra.py [--n 30] [--max-atoms 10] [--relax positions,cell]
                                                [--phonons sevenn] [--model multi_element_bec] [--threads 1]

Crystals: the frames of mp_dielectric_petousis2017.xyz (in file order, i.e. sorted by material_id) that
are not `outlier`, have at most --max-atoms atoms and only elements the ETGNN model knows; the first --n.
The table gives all of them and, separately, those with `overlaps_phonon_becs` False: for the others
the same material is in phonon_becs_epsilon.xyz, the set multi_element_bec was trained on (a different
DFT code, ABINIT), so their ε∞ and Born charges may not be held-out predictions.  Scalar compared: the
mean of the eigenvalues of each 3x3 tensor (= trace / 3).  Relative error
|pred - DFT| / DFT.  "Soft-mode" crystals have an optical mode below 20 cm^-1 (imaginary ones
included) with the potential's phonons; the median is given with and without them.  Also reported:
the errors of ε∞ alone and of ε_ionic = ε0 - ε∞ alone, and the wall and CPU time per crystal
(model loading excluded: both models are loaded once before the loop).

Writes benchmarks/results/spectra_<phonons>_<relax>.csv (one row per crystal, appended as it goes, so a
stopped run keeps its rows) and benchmarks/results/spectra_parity.png (matplotlib, every relax mode run).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MP_FILE = Path("mp") / "mp_dielectric_petousis2017.xyz"  # under the data root ($ETGNN_DATA or shared/data)
OUT = ROOT / "benchmarks" / "results"
FIELDS = ["material_id", "formula", "n_atoms", "overlaps_phonon_becs", "eps0_dft", "eps0_pred", "epsinf_dft",
          "epsinf_pred", "epsion_dft", "epsion_pred", "rel_err_eps0", "soft", "min_optical_cm1", "n_imaginary",
          "relax_steps", "volume_change", "wall_s", "cpu_s", "error"]


def iso(t) -> float:
    """Mean of the eigenvalues of the symmetric part (= trace / 3)."""
    return float(np.trace(np.asarray(t, dtype=float).reshape(3, 3)) / 3.0)


def pick(frames, model, n: int, max_atoms: int):
    allowed = set(model.elements)
    out = [a for a in frames if not bool(a.info.get("outlier")) and len(a) <= max_atoms
           and set(a.numbers.tolist()) <= allowed]
    return out[:n]


def run_one(atoms, model, config) -> dict:
    from etgnn_core.spectra import compute_spectrum

    row = {"material_id": atoms.info["material_id"], "formula": atoms.get_chemical_formula(), "n_atoms": len(atoms),
           "overlaps_phonon_becs": bool(atoms.info.get("overlaps_phonon_becs")),
           "eps0_dft": iso(atoms.info["dielectric_total"]), "epsinf_dft": iso(atoms.info["dielectric"])}
    row["epsion_dft"] = row["eps0_dft"] - row["epsinf_dft"]
    a = atoms.copy()
    a.info = {}
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        res = compute_spectrum(a, model, config)
    except Exception as exc:  # record and go on: one bad crystal must not stop the benchmark
        row["error"] = " ".join(str(exc).split())[:200]
        return row
    row["wall_s"], row["cpu_s"] = time.perf_counter() - t0, time.process_time() - c0
    sel = res.selection
    optical = res.frequencies_cm1[~sel.acoustic]
    row.update(eps0_pred=iso(res.eps_static), epsinf_pred=iso(res.eps_inf), epsion_pred=iso(res.eps_ionic),
               soft=bool(sel.soft.any()), min_optical_cm1=float(optical.min()) if optical.size else float("nan"),
               n_imaginary=int(sel.imaginary.sum()), relax_steps=res.info.get("steps"),
               volume_change=res.info.get("volume_change"), error="")
    row["rel_err_eps0"] = abs(row["eps0_pred"] - row["eps0_dft"]) / row["eps0_dft"]
    return row


def summary(rows: list[dict], label: str) -> str:
    ok = [r for r in rows if not r.get("error")]
    hard = [r for r in ok if not r["soft"]]

    def med(rs, key="rel_err_eps0"):
        return f"{np.median([r[key] for r in rs]):.3f}" if rs else "–"

    def rel(rs, p, d):
        vals = [abs(r[p] - r[d]) / abs(r[d]) for r in rs if abs(r[d]) > 1e-6]
        return f"{np.median(vals):.3f}" if vals else "–"

    wall = [r["wall_s"] for r in ok]
    cpu = [r["cpu_s"] for r in ok]
    small = [r["wall_s"] for r in ok if r["n_atoms"] >= 8]
    lines = [
        f"| {label} | {len(rows)} | {len(rows) - len(ok)} | {len(ok) - len(hard)} | {med(ok)} | {med(hard)} | "
        f"{rel(hard, 'epsinf_pred', 'epsinf_dft')} | {rel(hard, 'epsion_pred', 'epsion_dft')} | "
        f"{np.median(wall) if wall else float('nan'):.1f} | {np.median(cpu) if cpu else float('nan'):.1f} | "
        f"{(f'{np.median(small):.1f}' if small else '–')} |"
    ]
    return "\n".join(lines)


HEADER = ("| phonons / relax | crystals | failed | soft-mode | median rel. err. ε0 (all) | ε0 (no soft modes) | "
          "ε∞ (no soft) | ε_ionic (no soft) | wall s / crystal (median) | CPU s / crystal | wall s, 8-10 atoms |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|")


def parity(all_rows: dict[str, list[dict]], path: Path) -> None:
    """A small PNG (matplotlib, Agg): predicted vs DFT ε0, log axes; crosses = crystals with soft modes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 5.0), dpi=110)
    top, bottom = 1.0, 1e9
    for k, (label, rows) in enumerate(all_rows.items()):
        ok = [r for r in rows if not r.get("error")]
        for soft in (False, True):
            rs = [r for r in ok if r["soft"] == soft]
            if not rs:
                continue
            x, y = [r["eps0_dft"] for r in rs], [r["eps0_pred"] for r in rs]
            top, bottom = max(top, *x, *y), min(bottom, *x, *y)
            ax.scatter(x, y, marker="x" if soft else "o", s=28, color=f"C{k}", alpha=0.8,
                       label=f"{label}{' (soft modes)' if soft else ''}")
    lim = (0.8 * bottom, 1.25 * top)
    ax.plot(lim, lim, "--", color="grey", lw=1)
    ax.set(xscale="log", yscale="log", xlim=lim, ylim=lim, xlabel="DFT ε0 (DFPT-PBE, MP)",
           ylabel="predicted ε0 (ETGNN ε∞ + ionic)", title="ε0, mean eigenvalue")
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    for axis in (ax.xaxis, ax.yaxis):  # plain numbers at the decades, no crowded minor labels
        axis.set_major_formatter(ScalarFormatter())
        axis.set_minor_formatter(NullFormatter())
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=30)
    p.add_argument("--max-atoms", type=int, default=10)
    p.add_argument("--relax", default="positions", help="comma-separated relax modes to run: positions,cell,none")
    p.add_argument("--phonons", default="sevenn")
    p.add_argument("--model", default="multi_element_bec")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1, as etgnn spectra)")
    p.add_argument("--skip", type=int, default=0, help="skip the first SKIP picked crystals (resume)")
    p.add_argument("--report", action="store_true",
                   help="compute nothing: summarise the CSVs of --relax modes already written and redraw the plot")
    args = p.parse_args(argv)
    if args.report:
        return report(args)

    import ase.io
    import torch

    from etgnn_core.api import load_model
    from etgnn_core.spectra import SpectraConfig
    from etgnn_core.spectra.phonons import PhononConfig, force_calculator

    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.model)
    force_calculator(args.phonons)  # loaded once, outside the timings
    from etgnn_core.data import data_root

    root = data_root()
    if root is None or not (root / MP_FILE).exists():
        raise SystemExit(f"benchmarks/spectra.py: no {MP_FILE} under the data root (set $ETGNN_DATA)")
    crystals = pick(ase.io.read(root / MP_FILE, index=":"), model, args.n, args.max_atoms)
    print(f"{len(crystals)} crystals; torch threads {torch.get_num_threads()}; {os.cpu_count()} CPUs", flush=True)
    all_rows = {}
    for relax in args.relax.split(","):
        label = f"{args.phonons} / {relax}"
        csv_path = OUT / f"spectra_{args.phonons}_{relax}.csv"
        rows = []
        new = args.skip == 0 or not csv_path.exists()
        with open(csv_path, "w" if new else "a", newline="") as fh:
            w = csv.DictWriter(fh, FIELDS)
            if new:
                w.writeheader()
            config = SpectraConfig(PhononConfig(source=args.phonons, relax=relax, threads=args.threads))
            for k, atoms in enumerate(crystals[args.skip:], start=args.skip):
                row = run_one(atoms, model, config)
                rows.append(row)
                w.writerow(row)
                fh.flush()
                print(f"[{relax} {k + 1}/{len(crystals)}] {row['material_id']} {row['formula']}: ε0 DFT "
                      f"{row['eps0_dft']:.2f} pred {row.get('eps0_pred', float('nan')):.2f} "
                      f"({row.get('wall_s', 0):.0f} s){' ' + row['error'] if row.get('error') else ''}", flush=True)
        all_rows[label] = _read_csv(csv_path)
    return report(args)


def report(args) -> int:
    all_rows = {}
    for relax in args.relax.split(","):
        path = OUT / f"spectra_{args.phonons}_{relax}.csv"
        if path.exists():
            all_rows[f"{args.phonons} / {relax}"] = _read_csv(path)
    if not all_rows:
        raise SystemExit(f"benchmarks/spectra.py: no results for --relax {args.relax} in {OUT}")
    print(HEADER)
    for label, rows in all_rows.items():
        print(summary(rows, label))
        print(summary([r for r in rows if not r["overlaps_phonon_becs"]], f"{label}, not in phonon_becs"))
    common = set.intersection(*({r["material_id"] for r in rows if not r.get("error")} for rows in all_rows.values()))
    if len(all_rows) > 1 and common:
        print(f"\nOn the {len(common)} crystals every mode ran:")
        print(HEADER)
        for label, rows in all_rows.items():
            print(summary([r for r in rows if r["material_id"] in common], label))
    parity(all_rows, OUT / "spectra_parity.png")
    return 0


def _read_csv(path: Path) -> list[dict]:
    out = []
    with open(path, newline="") as fh:
        for r in csv.DictReader(fh):
            row = dict(r)
            for k in FIELDS:
                if k in ("material_id", "formula", "error"):
                    continue
                if k in ("soft", "overlaps_phonon_becs"):
                    row[k] = row.get(k) == "True"
                elif row.get(k) not in (None, ""):
                    row[k] = float(row[k])
            row["n_atoms"] = int(row["n_atoms"])
            out.append(row)
    return out


if __name__ == "__main__":
    sys.exit(main())
