"""Accuracy table: every shipped model re-evaluated on its own test split, next to its baseline.

    python benchmarks/accuracy.py [--markdown] [--models NAME [NAME ...]] [--limit N] [--threads N]
    python benchmarks/accuracy.py --cards      # the metrics stored at training time (no data needed)

For each model in pretrained/ (single models and committees) the data named by configs/<name>.yaml
are loaded (``etgnn_core.train.trainer.load_samples``), the test ids of the model's split.json are
predicted, and the metrics of :mod:`etgnn_core.metrics` are computed: MAE and baseline MAE (species
mean for per-atom tensors, the mean training tensor for crystal tensors, the zero tensor on
sign-certain frames for piezo, plus ‖e‖ vs the median norm and Voigt K / G for elastic), the
ratio, and for committees the coverage (fraction of test structures with MAE <= 2 x mean std) and
the Spearman rank correlation of the std with the error.  Baselines are fitted on the split's
``train`` part.  A model whose data are absent (no ../shared/data, no $ETGNN_DATA) or that has no
config or split is listed as skipped with the reason.  ``--limit`` evaluates the first N test
structures only (quick checks; the table then says so).  A test split of 2-4 cell sizes (e.g.
perturbed HfO2: 3- and 6-atom cells) is also reported per size, since one size can be far easier;
``--write-card`` stores those per-size metrics in the model's card (``metrics_by_group``).  Where
some structures get a warning (``Prediction.warnings``: rare elements, spread, embeddings, physics
checks) and some do not, both groups are reported too: a warning should mark the larger errors.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# MAE on held-out structures reported in the ETGNN paper (JPCL 2023, Figure 4 and text).
PAPER = {
    ("perturbed_al2o3", "born_charges"): 1.18e-2,
    ("perturbed_sio2", "born_charges"): 4.28e-3,
    ("perturbed_hfo2", "born_charges"): 1.94e-3,
    ("perturbed_al2o3", "dielectric"): 5.54e-3,
    ("perturbed_sio2", "dielectric"): 1.98e-3,
    ("perturbed_hfo2", "dielectric"): 2.86e-3,
    ("piezo_aln", "piezoelectric"): 3.29e-4,
    ("piezo_cds", "piezoelectric"): 4.69e-4,
    ("piezo_zno", "piezoelectric"): 5.59e-4,
}
# Targets of the issues that are not paper numbers: (model prefix, tensor, metric) -> (limit, how it reads)
GOALS = {
    ("multi_element_bec", "born_charges", "mae"): (0.08, "<= 0.08 e"),
    ("universal", "born_charges", "mae"): (0.07, "<= 0.07 e"),
    ("universal", "dielectric", "ratio"): (0.35, "<= 0.35x baseline"),
    ("universal", "piezoelectric", "ratio"): (0.6, "<= 0.6x zero baseline (sign-certain)"),
    ("universal", "piezoelectric", "norm_ratio"): (0.6, "‖e‖ <= 0.6x median-norm baseline"),
    ("universal", "elastic", "bulk_ratio"): (0.3, "K_V <= 0.3x mean baseline"),
    ("universal", "elastic", "shear_ratio"): (0.4, "G_V <= 0.4x mean baseline"),
}


def goal(name: str, tensor: str, metric: str):
    for (prefix, t, m), g in GOALS.items():
        if name.startswith(prefix) and t == tensor and m == metric:
            return g
    return None


def evaluate(info, limit: int | None = None, batch_size: int = 32, part: str = "test") -> tuple[dict, str, dict]:
    """(metrics per tensor, note, {cell size: (count, metrics)} when the split part has 2-4 sizes).

    Raises LookupError with the reason when the model cannot be evaluated.
    """
    from etgnn_core.api import load_model
    from etgnn_core.committee import evaluate_model, predict_for_metrics
    from etgnn_core.data import DataError
    from etgnn_core.train import TrainConfig
    from etgnn_core.train.trainer import load_samples

    cfg_path = ROOT / "configs" / f"{info.name}.yaml"
    split_path = Path(info.path) / "split.json"
    if not cfg_path.exists():
        raise LookupError(f"no configs/{info.name}.yaml naming its data")
    if not split_path.exists():
        raise LookupError("no split.json")
    split = json.loads(split_path.read_text())
    if part not in split or not split[part]:
        raise LookupError(f"split.json has no {part} part")
    from etgnn_core.train import recipe

    # a shipped model's recipe (train.yaml stages): the last stage names the data it was tested on
    cfg = recipe.read_recipe(cfg_path).stages[-1].config if recipe.is_recipe_file(cfg_path) \
        else TrainConfig.from_file(cfg_path)
    try:
        samples, _ = load_samples(cfg)
    except (DataError, FileNotFoundError, OSError) as exc:
        raise LookupError(f"data not available ({' '.join(str(exc).split())[:120]})") from exc
    by_id: dict[str, list] = {}
    for i, s in enumerate(samples):
        by_id.setdefault(str(getattr(s, "id", i)), []).append(s)
    test = [s for i in split[part] for s in by_id.get(str(i), [])]
    held = set(map(str, split.get("test", []))) | set(map(str, split.get("calib", []))) | set(map(str, split[part]))
    train = [s for k, v in by_id.items() if k not in held for s in v] if "train" not in split else \
        [s for i in split["train"] for s in by_id.get(str(i), [])]
    if not test:
        raise LookupError(f"none of the split's {part} ids is in the data (data set changed?)")
    note = ""
    if limit and len(test) > limit:
        test, note = test[:limit], f"first {limit} of {len(test)} {part} structures"
    model = load_model(str(info.path), device="cpu")
    if model.elements:  # the API refuses unknown elements: report what it predicts, with the count
        known = set(model.elements)
        kept = [s for s in test if set(s.atoms.numbers.tolist()) <= known]
        if len(kept) < len(test):
            note = (note + "; " if note else "") + f"{len(test) - len(kept)} {part} structures with elements " \
                "the model does not know left out"
        test = kept
        if not test:
            raise LookupError(f"the model knows none of the {part} structures' elements")
    preds = predict_for_metrics(model, test, batch_size)  # once: the size groups are scored from these
    sizes = sorted({len(s.atoms) for s in test})
    groups = {}
    if 2 <= len(sizes) <= 4:
        for n in sizes:
            keep = [i for i, s in enumerate(test) if len(s.atoms) == n]
            groups[f"{n}-atom cells"] = (len(keep), evaluate_model(model, [test[i] for i in keep], train,
                                                                   preds=[preds[i] for i in keep]))
    # do the warnings mean something? the same metrics on the structures with and without one
    warned = [i for i, p in enumerate(preds) if p.warnings]
    if 0 < len(warned) < len(test):
        calm = sorted(set(range(len(test))) - set(warned))
        for g, keep in (("with a warning", warned), ("without a warning", calm)):
            groups[g] = (len(keep), evaluate_model(model, [test[i] for i in keep], train,
                                                   preds=[preds[i] for i in keep]))
    return evaluate_model(model, test, train, preds=preds), f"{len(test)} {part} structures" + (
        f" ({note})" if note else ""), groups


def write_groups(info, groups: dict) -> None:
    """Store the per-size test MAE in the model's card.json / card.md (metrics_by_group)."""
    from etgnn_core.registry import write_card

    card = dict(info.card)
    card["metrics_by_group"] = {g: {"count": count, "mae": {t: r["mae"] for t, r in m.items()}}
                                for g, (count, m) in groups.items() if g.endswith("cells")}
    write_card(Path(info.path), card)


def _f(x, fmt=".3g") -> str:
    return "-" if x is None or x != x else format(x, fmt)


def _met(value, limit: float) -> str:
    return "n/a" if value is None or value != value else ("met" if value <= limit else "not met")


def table_rows(name: str, results: dict, label: str = "") -> list[list[str]]:
    rows = []
    for tensor, m in results.items():
        paper = PAPER.get((name, tensor))
        g = goal(name, tensor, "mae") or goal(name, tensor, "ratio")
        target = f"paper {paper:.3g} ({m['mae'] / paper:.2f}x)" if paper and m.get("mae") is not None else ""
        if g:
            value = m["mae"] if goal(name, tensor, "mae") else m["ratio"]
            target = f"{g[1]}: {_met(value, g[0])}"
        rows.append([name + label, tensor, _f(m["mae"]), _f(m["baseline_mae"]), _f(m["ratio"]), m.get("unit", ""),
                     _f(m.get("coverage"), ".2f"), _f(m.get("spearman"), ".2f"), target])
        for extra, unit in (("norm", m.get("unit", "")), ("bulk", "GPa"), ("shear", "GPa")):
            if f"{extra}_mae" in m:
                g = goal(name, tensor, f"{extra}_ratio")
                target = f"{g[1]}: {_met(m[f'{extra}_ratio'], g[0])}" if g else ""
                what = {"norm": "‖e‖", "bulk": "K_V", "shear": "G_V"}[extra]
                rows.append([name + label, f"{tensor} {what}", _f(m[f"{extra}_mae"]), _f(m[f"{extra}_baseline_mae"]),
                             _f(m[f"{extra}_ratio"]), unit, "", "", target])
    return rows


HEAD = ["model", "tensor", "test MAE", "baseline MAE", "ratio", "unit", "coverage (MAE<=2std)",
        "Spearman(std, err)", "target"]


def print_table(rows: list[list[str]], markdown: bool, head: list[str] | None = None) -> None:
    """Rows under ``head`` (default: the accuracy columns), as aligned text or a markdown table."""
    head = HEAD if head is None else head
    if markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for r in rows:
            print("| " + " | ".join(r) + " |")
        return
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    print("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))


def card_rows(infos) -> list[list[str]]:
    """The metrics stored in the cards at training / assembly time (no data, no prediction)."""
    rows = []
    for info in infos:
        rows += table_rows(info.name, {t: {"baseline_mae": m.get("baseline_mae"), "ratio": _ratio(m), **m}
                                       for t, m in info.card.get("metrics", {}).items() if "mae" in m})
    return rows


def _ratio(m: dict):
    return m["mae"] / m["baseline_mae"] if m.get("baseline_mae") else None


def main(argv=None) -> int:
    from etgnn_core import metrics

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--markdown", action="store_true", help="print a markdown table")
    p.add_argument("--models", nargs="+", metavar="NAME", help="only these models (default: every shipped one)")
    p.add_argument("--limit", type=int, help="evaluate at most N test structures per model (quick check)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--cards", action="store_true", help="print the metrics stored in the cards instead")
    p.add_argument("--part", default="test", choices=["test", "val", "calib"],
                   help="the split part to evaluate (val: to choose between single models without looking at "
                        "test; calib: between committees, whose members each have their own val draw)")
    p.add_argument("--write-card", action="store_true",
                   help="store the per-cell-size test metrics in each evaluated model's card")
    p.add_argument("--dft-frames", action="store_true", help=metrics.DFT_FRAMES_HELP)
    args = p.parse_args(argv)
    from etgnn_core.registry import list_models
    metrics.set_sign_rule("dft" if args.dft_frames else "readme")

    infos = [i for i in list_models() if not args.models or i.name in args.models]
    missing = sorted(set(args.models or []) - {i.name for i in infos})
    if missing:
        print(f"accuracy.py: no shipped model named {', '.join(missing)}", file=sys.stderr)
        return 1
    if args.cards:
        print_table(card_rows(infos), args.markdown)
        return 0
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    HEAD[2] = f"{args.part} MAE"
    rows, notes = [], []
    for info in infos:
        t0 = time.perf_counter()
        try:
            results, note, groups = evaluate(info, args.limit, part=args.part)
        except LookupError as exc:
            notes.append(f"{info.name}: skipped, {exc}")
            continue
        rows += table_rows(info.name, results)
        for g, (count, m) in groups.items():
            rows += table_rows(info.name, m, f" ({g}: {count})")
        if args.write_card and any(g.endswith("cells") for g in groups) and not args.limit and args.part == "test":
            write_groups(info, groups)
        notes.append(f"{info.name}: {note}, {time.perf_counter() - t0:.0f} s")
    print_table(rows, args.markdown)
    print()
    for n in notes:
        print(("- " if args.markdown else "") + n)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
