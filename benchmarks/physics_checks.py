"""How often the physics checks of etgnn_core/tensors/checks.py fire on DFT labels (false alarms).

    python benchmarks/physics_checks.py [--sets NAME ...] [--limit N] [--markdown]

Every labelled structure of the reference sets (``etgnn datasets``) goes through
``physics_warnings(labels, units, atoms)``, exactly as a prediction would; a warning on a DFT label
is a false alarm (or a genuinely unusual crystal).  Printed per set: structures, how many got each
kind of warning, and up to three formulas per kind.  The loaders' own filters apply (phonon_becs
keeps eps_inf in [1, 50]; mp/dielectric drops its 45 frames with eps_inf > 20), so those sets
cannot show the filtered extremes.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))  # accuracy.print_table

SETS = ["phonon_becs", "mp/dielectric", "perturbed/Al2O3", "perturbed/SiO2", "perturbed/HfO2",
        "ferroelectrics/BaTiO3", "ferroelectrics/SiO2_quartz", "abo3_piezo", "mp/elastic", "matten/elasticity",
        "water_bulk"]
KINDS = {"below 1 (vacuum)": "eps_inf < 1", "Moss's rule": "eps_inf > 20", "not positive definite": "C unstable",
         "negative principal value": "alpha < 0", "Born charge": "BEC sign"}


def kind(warning: str) -> str:
    return next((v for k, v in KINDS.items() if k in warning), "other")


def main(argv=None) -> int:
    from etgnn_core.data import DataError
    from etgnn_core.data.datasets import DATASET_NAMES, load_dataset
    from etgnn_core.tensors.checks import physics_warnings

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sets", nargs="+", default=SETS, help=f"data sets (default: {' '.join(SETS)})")
    p.add_argument("--limit", type=int, help="first N structures of each set")
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args(argv)
    rows = []
    for name in args.sets:
        if name not in DATASET_NAMES:
            print(f"physics_checks.py: unknown set {name}; known: {', '.join(DATASET_NAMES)}", file=sys.stderr)
            return 1
        try:
            samples, info = load_dataset(name, limit=args.limit)
        except (DataError, OSError) as exc:
            rows.append([name, "-", "skipped: " + " ".join(str(exc).split())[:80], ""])
            continue
        counts, examples = Counter(), defaultdict(list)
        for s in samples:
            labels = {k: v for k, v in s.targets.items() if s.masks.get(k) is None}  # fully labelled tensors only
            for w in sorted({kind(w) for w in physics_warnings(labels, info.units, s.atoms)}):
                counts[w] += 1
                if len(examples[w]) < 3:
                    examples[w].append(s.atoms.get_chemical_formula())
        checked = sorted({k for s in samples for k in s.targets})
        found = "; ".join(f"{k}: {n} ({', '.join(examples[k])})" for k, n in counts.items()) or "none"
        rows.append([name, str(len(samples)), ", ".join(checked), found])
    from accuracy import print_table

    print_table(rows, args.markdown, ["data set", "structures", "labels", "labels warned (examples)"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
