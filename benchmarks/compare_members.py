"""Candidate committees compared on the calibration split, before any is assembled or installed.

    python benchmarks/compare_members.py CONFIG LABEL=FOLDER[,FOLDER ...] [LABEL=... ...]

Each LABEL names a set of member model folders (``runs/x/member0/model,runs/x/member1/model`` or a
shipped committee's ``pretrained/NAME/member0,...``).  The members of one set are averaged as a
committee would (:class:`etgnn_core.committee.Committee`, std scale 1), and each set is scored on
the calibration split of its members' split.json with the data of CONFIG (the training config the
members share).  Per tensor: the committee-mean MAE, its ratio to the baseline fitted on the split's
train part (:mod:`etgnn_core.metrics`), and every member's MAE.  The test split is never read: choose
on this table, then assemble the chosen committee (``etgnn committee CONFIG``) and report its test
numbers once.

``--split-from FOLDER`` scores every set on the calibration split (and fits the baseline on the
train part) of that model folder's split.json instead: two candidates trained with different
calibration fractions are then compared on crystals neither trained on.  Rank-3/4 tensors add their
rotation-invariant rows (``norm``: ||e||; ``bulk`` / ``shear``: Voigt moduli from C_ijkl).

``--bootstrap N`` (with ``--split-from`` or ``--folds``) redraws the calibration crystals N times with replacement and
scores every set on the same draws: a 90 % interval of each ratio, and of each set's difference to the
first set.  A difference whose interval straddles 0 is one the calibration split cannot rank.

``--folds``: each set's folders are the K fold models of one recipe (``etgnn train CONFIG --fold k/K``), in
fold order.  Each is scored on its own fold, and the K folds are pooled: every crystal outside test is scored
once, by a model that did not train on it (baselines fitted on fold 0's train part).  With ``--bootstrap`` the
pooled crystals are redrawn.  Each fold model is scored with the data it was trained with (its train.yaml), so a
table of known parts refitted per fold (universal_piezo's multiples) is read from that fold's table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def parse_sets(args: list[str]) -> dict[str, list[Path]]:
    """``LABEL=a,b,c`` arguments -> {label: [folders]}; a malformed one names itself."""
    sets = {}
    for arg in args:
        label, sep, folders = arg.partition("=")
        paths = [Path(f) for f in folders.split(",") if f]
        if not sep or not label or not paths:
            raise SystemExit(f"compare_members: {arg!r} is not LABEL=FOLDER[,FOLDER ...]")
        missing = [str(p) for p in paths if not p.is_dir()]
        if missing:
            raise SystemExit(f"compare_members: {label}: no such model folder(s): {', '.join(missing)}")
        sets[label] = paths
    return sets


# Sc-Zn, Y-Cd, La and Hf-Hg: the d-block, whose magnetic insulators a model may take for metals
TRANSITION_METALS = frozenset([*range(21, 31), *range(39, 49), 57, *range(72, 81)])


def has_transition_metal(sample) -> bool:
    return bool(TRANSITION_METALS & set(sample.atoms.numbers.tolist()))


def calib_predictions(folders: list[Path], samples: list, label: str, split_from: Path | None = None) -> tuple:
    """(committee of the members' mean, calibration samples, train samples, its predictions of the calibration
    samples).  ``split_from``: a model folder whose calib/train split is used instead of the members' own."""
    from etgnn_core.committee import Committee, committee_split, predict_for_metrics
    from etgnn_core.registry import ModelInfo, load_model_folder
    from etgnn_core.spectra.piezo import load_known_parts

    nets, infos = zip(*(load_model_folder(f) for f in folders))
    split = committee_split([split_from] if split_from else folders, samples)
    calib, train = ([samples[i] for i in split[k]] for k in ("calib", "train"))
    info = ModelInfo(label, Path(label), "", dict(infos[0].targets), [], members=[f.parent.name for f in folders])
    committee = Committee(list(nets), info, device="cpu")
    committee.known_parts = load_known_parts(folders[0])  # e.g. universal_piezo's ionic term, as assembled
    return committee, calib, train, predict_for_metrics(committee, calib)


def pooled_fold_predictions(folders: list[Path], samples: list | None, label: str) -> tuple:
    """calib_predictions of each fold model on its own fold, pooled: (fold 0's committee, every fold's
    calibration samples, fold 0's train samples, their predictions).  ``samples`` None: each fold model's
    own data (its train.yaml), so a table refitted per fold is read, not computed anew."""
    runs = [calib_predictions([f], samples if samples is not None else own_samples(f), f"{label} fold {k}")
            for k, f in enumerate(folders)]
    ids = [str(s.id) for run in runs for s in run[1]]
    if len(set(ids)) != len(ids):
        raise SystemExit(f"compare_members: {label}: the folds overlap; give the K fold models of one recipe "
                         "(etgnn train CONFIG --fold k/K)")
    calib = [s for run in runs for s in run[1]]
    preds = [p for run in runs for p in run[3]]
    return runs[0][0], calib, runs[0][2], preds


def own_samples(folder: Path) -> list:
    """The samples a model folder was trained on: the data section of the last stage of its train.yaml."""
    from etgnn_core.train.recipe import read_recipe
    from etgnn_core.train.trainer import load_samples

    return load_samples(read_recipe(Path(folder) / "train.yaml").stages[-1].config)[0]


def calib_metrics(folders: list[Path], samples: list, label: str, by_tm: bool = False,
                  split_from: Path | None = None, run: tuple | None = None) -> dict[str, tuple]:
    """{part: (number of calibration structures, evaluate_model's metrics of the members' mean)};
    part "all", and with ``by_tm`` also "with a transition metal" and "without".  ``split_from``: a
    model folder whose calib/train split is used instead of the members' own; ``run``: calib_predictions'
    result when the caller has it."""
    from etgnn_core.committee import evaluate_model

    committee, calib, train, preds = run or calib_predictions(folders, samples, label, split_from)
    parts = {"all": list(range(len(calib)))}
    if by_tm:
        tm = [has_transition_metal(s) for s in calib]
        parts.update({"with a transition metal": [i for i, t in enumerate(tm) if t],
                      "without": [i for i, t in enumerate(tm) if not t]})
    return {part: (len(idx), evaluate_model(committee, [calib[i] for i in idx], train, preds=[preds[i] for i in idx]))
            for part, idx in parts.items() if idx}


RATIO_KEYS = ("ratio", "norm_ratio", "bulk_ratio", "shear_ratio")  # to the baseline: components, rank-3/4 invariants


def bootstrap_ratios(runs: dict[str, tuple], reps: int = 1000, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """{label: {"TENSOR RATIO_KEY": [reps] ratios}} over calibration sets drawn with replacement from the
    calibration crystals; every candidate is scored on the same draws (paired), so that a difference between
    two candidates gets its own interval.  ``runs``: {label: calib_predictions(...)}, one calibration split."""
    from etgnn_core.committee import evaluate_model

    ids = [[str(s.id) for s in run[1]] for run in runs.values()]
    if any(i != ids[0] for i in ids):
        raise SystemExit("compare_members: --bootstrap needs the same calibration crystals for every set "
                         "(give --split-from FOLDER)")
    rng = np.random.default_rng(seed)
    out: dict[str, dict[str, list]] = {label: {} for label in runs}
    for _ in range(reps):
        draw = rng.integers(0, len(ids[0]), len(ids[0]))
        for label, (committee, calib, train, preds) in runs.items():
            res = evaluate_model(committee, [calib[i] for i in draw], train, preds=[preds[i] for i in draw])
            for name, r in res.items():
                for key in RATIO_KEYS:
                    if key in r:
                        out[label].setdefault(f"{name} {key}", []).append(r[key])
    return {label: {k: np.asarray(v, dtype=float) for k, v in d.items()} for label, d in out.items()}


def print_bootstrap(ratios: dict[str, dict[str, np.ndarray]], level: float = 0.9) -> None:
    """Each candidate's ratio interval and, from the second candidate on, that of its difference to the first."""
    lo, hi = 50 * (1 - level), 50 * (1 + level)
    first = next(iter(ratios))
    print(f"\n| candidate | ratio | median of draws | {level:.0%} interval | minus {first}: {level:.0%} interval "
          f"| draws below {first} |")
    print("|---|---|---|---|---|---|")
    for label, by_key in ratios.items():
        for key, r in by_key.items():
            line = (f"| {label} | {key} | {np.nanmedian(r):.3f} | "
                    f"{np.nanpercentile(r, lo):.3f} - {np.nanpercentile(r, hi):.3f} |")
            if label != first and key in ratios[first]:
                d = r - ratios[first][key]
                line += f" {np.nanpercentile(d, lo):+.3f} - {np.nanpercentile(d, hi):+.3f} | {np.nanmean(d < 0):.0%} |"
            else:
                line += " | |"
            print(line, flush=True)


def main(argv=None) -> int:
    from etgnn_core import metrics

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("config", help="training config the members share (its data are loaded; with --folds each "
                                  "fold model's own)")
    p.add_argument("sets", nargs="+", metavar="LABEL=FOLDER,...", help="member folders of one candidate")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--transition-metals", action="store_true",
                   help="also score the crystals with and without a transition metal apart")
    p.add_argument("--split-from", type=Path, metavar="FOLDER",
                   help="score on the calib split of this model folder's split.json (default: each set's own)")
    p.add_argument("--folds", action="store_true",
                   help="each set lists the K fold models of one recipe (etgnn train CONFIG --fold k/K): "
                        "score each on its own fold and pool the folds")
    p.add_argument("--bootstrap", type=int, default=0, metavar="N",
                   help="also N paired bootstrap draws of the calibration crystals: a 90 %% interval of each "
                        "ratio and of its difference to the first set (needs --split-from or --folds)")
    p.add_argument("--dft-frames", action="store_true", help=metrics.DFT_FRAMES_HELP)
    args = p.parse_args(argv)
    import torch
    metrics.set_sign_rule("dft" if args.dft_frames else "readme")

    from etgnn_core.train.config import TrainConfig
    from etgnn_core.train.trainer import load_samples

    if args.threads:
        torch.set_num_threads(args.threads)
    sets = parse_sets(args.sets)
    # --folds reads each fold model's own data (pooled_fold_predictions)
    samples = None if args.folds else load_samples(TrainConfig.from_file(args.config))[0]
    if args.bootstrap and not (args.split_from or args.folds):
        p.error("--bootstrap needs --split-from or --folds (every set scored on the same calibration crystals)")
    if args.folds and (args.split_from or args.transition_metals):
        p.error("--folds scores each fold model on its own fold: not with --split-from or --transition-metals")
    print("| candidate | calib structures | tensor | mean MAE | baseline | ratio | members' MAE |")
    print("|---|---|---|---|---|---|---|")
    runs = {label: pooled_fold_predictions(folders, None, label) if args.folds
            else calib_predictions(folders, samples, label, args.split_from) for label, folders in sets.items()}
    for label, folders in sets.items():
        metrics = calib_metrics(folders, samples, label, args.transition_metals, args.split_from, runs[label])
        for part, (n, res) in metrics.items():
            where = label if part == "all" else f"{label} ({part})"
            for name, r in res.items():
                members = ", ".join(f"{m:.4g}" for m in r.get("member_mae", []))
                print(f"| {where} | {n} | {name} | {r['mae']:.4g} | {r['baseline_mae']:.4g} | "
                      f"{r['mae'] / r['baseline_mae']:.3f} | {members} |", flush=True)
                for extra in ("norm", "bulk", "shear"):  # rotation invariants of rank-3/4 tensors
                    if f"{extra}_mae" in r:
                        print(f"| {where} | {n} | {name} {extra} | {r[f'{extra}_mae']:.4g} | "
                              f"{r[f'{extra}_baseline_mae']:.4g} | {r[f'{extra}_ratio']:.3f} | |", flush=True)
    if args.bootstrap:
        print_bootstrap(bootstrap_ratios(runs, args.bootstrap))
    return 0


if __name__ == "__main__":
    sys.exit(main())
