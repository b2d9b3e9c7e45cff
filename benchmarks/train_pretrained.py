"""Train the shipped models one after another and install each into pretrained/ if it beats its baseline.

    python benchmarks/train_pretrained.py configs/perturbed_sio2.yaml my_next_round.yaml ...

Each file is a one-stage training config or a multi-stage train.yaml (its stages run in order).

Resumable: a config whose run folder has a last checkpoint continues from it.  Each finished model
is copied to pretrained/<name>/ only when every target's test MAE is below the baseline's and its
MAE is below that of the model already shipped under that name (second rounds fine-tune it; the
two are compared on the validation split when both cards record it, else on the test split).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from etgnn_core.registry import install_model
from etgnn_core.train.recipe import load_any, run_recipe

ROOT = Path(__file__).resolve().parents[1]


def main(paths: list[str]) -> None:
    for path in paths:
        stages = load_any(path)
        cfg = stages.stages[-1].config
        t0 = time.time()
        print(f"=== {cfg.name}: training ({path}, {len(stages.stages)} stage(s))", flush=True)
        try:
            res = run_recipe(stages, progress_bar=False)
        except Exception as exc:  # keep going with the next model
            print(f"=== {cfg.name}: FAILED {exc.__class__.__name__}: {exc}", flush=True)
            continue
        beats = all(m["mae"] < m["baseline_mae"] for m in res.metrics.values())
        print(f"=== {cfg.name}: {res.epochs} epochs, {(time.time() - t0) / 60:.1f} min, metrics {res.metrics}",
              flush=True)
        if cfg.name.startswith("ablation_"):  # ablations are results, not shipped models
            card = {"name": cfg.name, **res.card}
            out = ROOT / "benchmarks" / "results" / f"{cfg.name}.json"
            out.write_text(json.dumps(card, indent=2))
            print(f"=== {cfg.name}: card written to {out}", flush=True)
        elif beats and _improves(cfg.name, res.card):
            print(f"=== {cfg.name}: installed into {install_model(res.model_dir, cfg.name, replace=True)}", flush=True)
        else:
            print(f"=== {cfg.name}: NOT installed (does not beat the baseline or the shipped model)", flush=True)


def _improves(name: str, card: dict) -> bool:
    """True when no shipped model of this name exists, or every target's MAE is lower.

    Compared on the validation split when both cards have it (so the test split is not used to
    choose between rounds); cards written before validation metrics were kept fall back to test.
    """
    path = ROOT / "pretrained" / name / "card.json"
    if not path.exists():
        return True
    old = json.loads(path.read_text())
    key = "val_metrics" if "val_metrics" in old and "val_metrics" in card else "metrics"
    print(f"=== {name}: comparing with the shipped model on {'validation' if key == 'val_metrics' else 'test'}",
          flush=True)
    return all(m["mae"] < old[key].get(t, {}).get("mae", float("inf")) for t, m in card[key].items())


if __name__ == "__main__":
    main(sys.argv[1:])
