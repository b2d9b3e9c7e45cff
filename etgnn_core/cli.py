"""`etgnn models | datasets | predict | train`: the shell user's way in.

Errors print one line `etgnn: error: <file>: <problem>` and exit with status 1; `--debug` shows
the traceback instead.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

DEFAULT_MODEL_ORDER = ("multi_element_bec", "perturbed_sio2")


class CLIError(Exception):
    """An expected failure with a one-line message."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="etgnn", description="ETGNN Studio: tensor predictions for molecules and crystals")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("models", help="list the pretrained models with their tensors and units")
    sub.add_parser("datasets", help="list the reference data sets found in ../shared/data (or $ETGNN_DATA)")
    pr = sub.add_parser("predict", help="predict tensors of structure files (any format ASE reads)")
    pr.add_argument("paths", nargs="+", metavar="PATH")
    pr.add_argument("--model", help="model name (see `etgnn models`) or model folder")
    pr.add_argument("--format", choices=("json", "table", "extxyz"), default="table")
    pr.add_argument("--output", "-o", help="write to this file instead of standard output")
    pr.add_argument("--born", metavar="FILE", help="also write a phonopy BORN file (needs dielectric + born_charges)")
    pr.add_argument("--max-atoms", type=int, default=20_000, help="refuse larger structures (default 20000)")
    pr.add_argument("--device", default="auto", help="auto (CUDA if available), cpu or cuda")
    pr.add_argument("--batch-size", type=int, default=32)
    tr = sub.add_parser("train", help="train or fine-tune a model from a YAML config (see README)")
    tr.add_argument("config")
    tr.add_argument("--no-resume", action="store_true", help="ignore an existing last checkpoint")
    tr.add_argument("--install", action="store_true", help="copy the trained model folder into pretrained/")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return {"models": cmd_models, "datasets": cmd_datasets, "predict": cmd_predict, "train": cmd_train}[
            args.command
        ](args)
    except KeyboardInterrupt:
        print("etgnn: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # one line for the user; the traceback with --debug
        if args.debug:
            raise
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        print(f"etgnn: error: {msg}", file=sys.stderr)
        return 1


def cmd_models(args) -> int:
    from etgnn_core.registry import list_models

    models = list_models()
    if not models:
        print("no pretrained models found (looked in $ETGNN_PRETRAINED and the repository's pretrained/)")
        return 0
    for m in models:
        tensors = ", ".join(f"{t} [{u}]" for t, u in m.targets.items())
        print(f"{m.name}\n  tensors: {tensors}\n  elements: {_symbols(m.elements)}\n  {m.description}")
        for t, met in m.card.get("metrics", {}).items():
            print(f"  test MAE {t}: {met['mae']:.4g} {met.get('unit', '')} (baseline {met['baseline_mae']:.4g})")
    return 0


def cmd_datasets(args) -> int:
    from etgnn_core.data import data_root, list_datasets

    root = data_root()
    if root is None:
        print("no data root found: set ETGNN_DATA or place shared/data beside the repository")
        return 0
    print(f"data root: {root}")
    for d in list_datasets():
        print(f"{d.name}: {d.description}\n  units: {d.units}")
    return 0


def default_model() -> str:
    from etgnn_core.registry import list_models

    names = [m.name for m in list_models()]
    for n in DEFAULT_MODEL_ORDER:
        if n in names:
            return n
    if not names:
        raise CLIError("no pretrained model found; pass --model FOLDER or train one with `etgnn train CONFIG`")
    return names[0]


def cmd_predict(args) -> int:
    from etgnn_core.api import load_model
    from etgnn_core.structure import read_structures

    model = load_model(args.model or default_model(), device=args.device)
    structures = []  # (path, frame index, atoms)
    for path in args.paths:
        frames = read_structures(path, name=path, max_atoms=args.max_atoms)
        structures += [(path, i, a) for i, a in enumerate(frames)]
    preds = []
    for path, i, atoms in structures:
        try:
            preds.append(model.predict(atoms, max_atoms=args.max_atoms))
        except ValueError as exc:
            where = path if len([s for s in structures if s[0] == path]) == 1 else f"{path}, frame {i}"
            raise CLIError(f"{where}: {exc}") from exc
    text = _render(args.format, structures, preds, model.name)
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    if args.born:
        _write_born(args.born, structures, preds)
    return 0


def _render(fmt: str, structures, preds, model_name: str) -> str:
    from etgnn_core.io import prediction_record, to_json, write_extxyz

    if fmt == "json":
        recs = [prediction_record(p.atoms, p.tensors, p.units, p.per_atom, model_name, source=path, index=i)
                for (path, i, _), p in zip(structures, preds)]
        return to_json(recs, indent=1) + "\n"
    if fmt == "extxyz":
        import io

        buf = io.StringIO()
        write_extxyz(buf, [(p.atoms, p.tensors, p.per_atom, p.units) for p in preds])
        return buf.getvalue()
    return "".join(_table(path, i, p) for (path, i, _), p in zip(structures, preds))


def _table(path: str, index: int, pred) -> str:
    lines = [f"# {path} [frame {index}] {pred.atoms.get_chemical_formula()}  model {pred.model}"]
    symbols = pred.atoms.get_chemical_symbols()
    for name, value in pred.tensors.items():
        unit = pred.units.get(name, "")
        if pred.per_atom[name]:
            lines.append(f"{name} [{unit}] (per atom)")
            for j, v in enumerate(value):
                lines.append(f"  {j:4d} {symbols[j]:>2s}  " + _fmt(v))
        else:
            lines.append(f"{name} [{unit}]")
            lines.append("  " + _fmt(value))
    return "\n".join(lines) + "\n\n"


def _fmt(v) -> str:
    v = np.asarray(v)
    if v.ndim <= 1:
        return " ".join(f"{x: .5f}" for x in np.atleast_1d(v))
    return " | ".join(_fmt(r) for r in v)


def _write_born(target: str, structures, preds) -> None:
    from etgnn_core.io import write_phonopy_born

    for n, ((path, i, _), p) in enumerate(zip(structures, preds)):
        if "born_charges" not in p or "dielectric" not in p:
            raise CLIError(f"--born: model {p.model} does not predict both born_charges and dielectric")
        out = target if len(preds) == 1 else f"{target}.{n}"
        write_phonopy_born(out, p.atoms, p["dielectric"], p["born_charges"])
        print(f"wrote phonopy BORN for {path} [frame {i}] to {out}", file=sys.stderr)


def cmd_train(args) -> int:
    import shutil

    from etgnn_core.train import TrainConfig, train

    cfg = TrainConfig.from_file(args.config)
    res = train(cfg, resume=not args.no_resume)
    print(f"model folder: {res.model_dir}")
    for t, m in res.metrics.items():
        print(f"{m['split']} MAE {t}: {m['mae']:.4g} {m['unit']} (baseline {m['baseline_mae']:.4g})")
    if args.install:
        dest = Path(__file__).resolve().parents[1] / "pretrained" / cfg.name
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(res.model_dir, dest)
        print(f"installed into {dest}")
    return 0


def _symbols(numbers) -> str:
    from ase.data import chemical_symbols

    return " ".join(chemical_symbols[z] for z in numbers) if numbers else "any"


if __name__ == "__main__":
    sys.exit(main())
