"""`etgnn models | datasets | predict | train`: the shell user's way in.

    etgnn models                                   # pretrained models, their tensors and units
    etgnn predict quartz.cif POSCAR traj.xyz       # table of every tensor, one block per frame
    etgnn predict *.cif --model perturbed_sio2 --format json > out.json
    etgnn predict POSCAR --format extxyz -o out.xyz --born BORN
    etgnn committee configs/universal_x.yaml --install   # calibrate trained members into a committee

Any format ASE reads is accepted, detected by content where the file name says nothing (a
``POSCAR``/``CONTCAR`` without extension, an ``.xyz`` that is extended XYZ, ...); a file with
several frames gives one result per frame.  Without ``--model`` the first model of
:data:`DEFAULT_MODEL_ORDER` (then any other installed one, by name) that knows every element of the
inputs is used.

Bad input (a file that is not a structure, an empty file, an element the model does not know, a
structure over ``--max-atoms``, ...) prints one line ``etgnn: error: <file>[, frame k]: <problem>``
on standard error and exits with status 1; ``--debug`` (before or after the command) shows the
traceback instead.  Structures are read and checked against the model's card before the model is
built, so bad input fails fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

# Specialist BEC models first (each covers only its own elements), then the many-element BEC model,
# then the other tensors; a model not listed here comes after these, by name.
DEFAULT_MODEL_ORDER = (
    "perturbed_sio2",
    "perturbed_al2o3",
    "perturbed_hfo2",
    "universal_dielectric_bec",
    "multi_element_bec",
    "ferroelectric_forces_bec",
    "piezo_aln",
    "piezo_zno",
    "piezo_cds",
    "water_dipole_polarizability",
    "elastic_demo",
)
DEFAULT_MAX_ATOMS = 20_000  # etgnn_core.api.DEFAULT_MAX_ATOMS (test_cli checks), without importing torch here
FORMATS = ("table", "json", "extxyz")


class CLIError(Exception):
    """An expected failure with a one-line message."""


def _parser() -> argparse.ArgumentParser:
    # --debug is accepted before and after the command: `etgnn --debug predict x` or `etgnn predict x --debug`.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the traceback of an error instead of one line",
    )
    p = argparse.ArgumentParser(
        prog="etgnn", parents=[common], description="ETGNN Studio: tensor predictions for molecules and crystals"
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    mo = sub.add_parser("models", parents=[common], help="list the pretrained models with their tensors and units")
    mo.add_argument("--json", action="store_true", help="print one JSON list instead of text")
    sub.add_parser(
        "datasets", parents=[common], help="list the reference data sets found in ../shared/data (or $ETGNN_DATA)"
    )
    pr = sub.add_parser(
        "predict",
        parents=[common],
        help="predict tensors of structure files (any format ASE reads)",
        description="Predict every tensor a model supports for each structure (frame) of the given files.",
    )
    pr.add_argument(
        "paths", nargs="+", metavar="PATH", help="structure files: CIF, POSCAR/CONTCAR, (extended) XYZ, ..."
    )
    pr.add_argument(
        "--model",
        "-m",
        help="model name (see `etgnn models`) or model folder; "
        "default: the first of the shipped models that knows every element of the inputs",
    )
    pr.add_argument(
        "--format",
        "-f",
        choices=FORMATS,
        default="table",
        help="table (default), json (one list, one object per structure) or extxyz "
        "(per-atom tensors as arrays, per-structure tensors in the comment line)",
    )
    pr.add_argument("--output", "-o", metavar="FILE", help="write to FILE instead of standard output")
    pr.add_argument(
        "--born",
        metavar="FILE",
        help="also write a phonopy BORN file (dielectric + Born charges; "
        "FILE.0, FILE.1, ... when there are several structures)",
    )
    pr.add_argument(
        "--max-atoms",
        type=int,
        default=DEFAULT_MAX_ATOMS,
        help=f"refuse structures with more atoms (default {DEFAULT_MAX_ATOMS})",
    )
    pr.add_argument("--device", default="auto", help="auto (CUDA if available, default), cpu or cuda")
    pr.add_argument("--batch-size", type=int, default=32, help="structures per forward pass (default 32)")
    pr.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads (default: torch's choice); 1 is fastest for many small structures on a busy machine",
    )
    pr.add_argument("--quiet", "-q", action="store_true", help="no progress bar or notes on standard error")
    _spectra_parser(sub, common)
    tr = sub.add_parser("train", parents=[common], help="train or fine-tune a model from a YAML config (see README)")
    tr.add_argument("config")
    tr.add_argument("--no-resume", action="store_true", help="ignore an existing last checkpoint")
    tr.add_argument("--dry-run", action="store_true",
                    help="check the config (every stage of a train.yaml) and its data, print the plan, train nothing")
    tr.add_argument("--install", action="store_true", help="copy the trained model folder into pretrained/NAME")
    tr.add_argument("--force", action="store_true",
                    help="train a finished run again (replacing its model) and let --install replace pretrained/NAME")
    tr.add_argument("--replace", action="store_true",
                    help="with --install: replace an existing pretrained/NAME by this run's model (no retraining)")
    tr.add_argument("--member", type=int, metavar="K",
                    help="train committee member K (own train/validation draw and seed; output OUTPUT/memberK)")
    tr.add_argument("--fold", metavar="k/K",
                    help="train cross-validation fold k of K: that fold (of what test leaves) is the calib part it "
                         "is scored on, output OUTPUT/foldk; compare recipes with compare_members.py --folds")
    co = sub.add_parser(
        "committee",
        parents=[common],
        help="assemble trained members (etgnn train CONFIG --member K) into a calibrated committee",
        description="Load <output>/member<K>/model of the config, fit the std scale on the calibration split, "
        "evaluate the committee mean on the test split and write <output>/committee (docs/uncertainty.md).",
    )
    co.add_argument("config")
    co.add_argument("--members", help="comma-separated member numbers, e.g. 0,1,2,3 (default: every member found)")
    co.add_argument("--install", action="store_true", help="also copy the committee folder into pretrained/NAME")
    co.add_argument("--install-dir", metavar="DIR", help="install into DIR/NAME (default: pretrained/)")
    co.add_argument("--batch-size", type=int, default=32, help="structures per forward pass (default 32)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    debug = getattr(args, "debug", False)
    if args.command in ("predict", "train"):  # the CLI owns its process (see tune_cpu_allocator)
        from etgnn_core.device import tune_cpu_allocator

        tune_cpu_allocator()
    try:
        return {
            "models": cmd_models,
            "datasets": cmd_datasets,
            "predict": cmd_predict,
            "train": cmd_train,
            "committee": cmd_committee,
            "spectra": cmd_spectra,
        }[args.command](args)
    except KeyboardInterrupt as exc:  # TrainingInterrupted says where the last checkpoint is
        detail = _one_line(exc) if str(exc) else ""
        print(f"etgnn: interrupted{': ' + detail if detail else ''}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `etgnn predict ... | head`
        return 0
    except Exception as exc:  # one line for the user; the traceback with --debug
        if debug:
            raise
        print(f"etgnn: error: {_one_line(exc)}", file=sys.stderr)
        return 1


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if isinstance(exc, KeyError) and len(exc.args) == 1:
        text = str(exc.args[0])
    return text or exc.__class__.__name__


# ------------------------------------------------------------------------------------------- models
def cmd_models(args) -> int:
    from etgnn_core.registry import list_models

    models = list_models()
    if getattr(args, "json", False):
        import json

        out = [
            {
                "name": m.name,
                "description": m.description,
                "path": str(m.path),
                "tensors": [
                    {"name": t, "unit": u, "per_atom": pa, "shape": shape} for t, u, pa, shape in _tensor_rows(m)
                ],
                "elements": _symbols(m.elements).split() if m.elements else [],
                "metrics": m.card.get("metrics", {}),
                "members": len(m.members),  # 0: a single model; >0: a committee (mean ± calibrated std)
            }
            for m in models
        ]
        print(json.dumps(out, indent=1))
        return 0
    if not models:
        print("no pretrained models found (looked in $ETGNN_PRETRAINED and the repository's pretrained/)")
        return 0
    for m in models:
        print(m.name)
        if m.description:
            print(f"  {m.description}")
        if m.members:
            print(f"  committee of {len(m.members)} members: mean ± calibrated std, out-of-domain warnings")
        for t, u, pa, shape in _tensor_rows(m):
            where = "per atom" if pa else "per structure"
            dims = "x".join(str(d) for d in shape) or "scalar"
            print(f"  {t:15s} [{u}]  {where}, {dims}")
        print(f"  elements: {_symbols(m.elements)}")
        for t, met in m.card.get("metrics", {}).items():
            if "mae" in met:
                base = f" (baseline {met['baseline_mae']:.4g})" if met.get("baseline_mae") is not None else ""
                cov = f"; coverage {met['coverage']:.2f}" if met.get("coverage") is not None else ""
                print(f"  test MAE {t}: {met['mae']:.4g} {met.get('unit', '')}{base}{cov}")
    return 0


def _tensor_rows(info):
    """(name, unit, per_atom, per-item shape) of every target of a model card."""
    import json

    from etgnn_core.registry import CONFIG_FILE

    try:
        config = getattr(info, "config_path", Path(info.path) / CONFIG_FILE)  # member 0's for a committee
        specs = {t["name"]: t for t in json.loads(Path(config).read_text())["model"]["targets"]}
    except Exception:  # listed models have a readable config; stay robust anyway
        specs = {}
    rows = []
    for t, u in info.targets.items():
        s = specs.get(t, {})
        rows.append((t, u, bool(s.get("per_atom", False)), [3] * int(s.get("rank", 0))))
    return rows


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


# ------------------------------------------------------------------------------------------ predict
def _candidates():
    """Installed models in the default order: DEFAULT_MODEL_ORDER first, then the others by name."""
    from etgnn_core.registry import list_models

    models = {m.name: m for m in list_models()}
    return [models[n] for n in DEFAULT_MODEL_ORDER if n in models] + [
        m for n, m in sorted(models.items()) if n not in DEFAULT_MODEL_ORDER
    ]


def default_model(numbers: set[int] | None = None):
    """The model ``etgnn predict`` uses without ``--model``: the first candidate knowing all ``numbers``.

    When none knows them all, the first candidate (its check then names the unknown elements).
    """
    models = _candidates()
    if not models:
        raise CLIError("no pretrained model found; pass --model FOLDER or train one with `etgnn train CONFIG`")
    for m in models:
        if not m.elements or numbers is None or numbers <= set(m.elements):
            return m
    return models[0]


def _model_info(name_or_path: str):
    from etgnn_core.registry import find_model, read_info

    return read_info(find_model(name_or_path))


def cmd_predict(args) -> int:
    import warnings

    from etgnn_core.structure import StructureError, StructureWarning, read_structures, validate_atoms

    if args.max_atoms < 1:
        raise CLIError(f"--max-atoms must be at least 1, got {args.max_atoms}")
    if args.batch_size < 1:
        raise CLIError(f"--batch-size must be at least 1, got {args.batch_size}")
    for out in (args.output, args.born):  # a bad output path fails before the (slow) prediction
        _check_output(out)
    info = _model_info(args.model) if args.model else None  # a wrong --model fails before any reading

    structures = []  # (path, frame index, atoms)
    for path in args.paths:
        try:
            frames = read_structures(path, name=path, max_atoms=args.max_atoms)
        except StructureError:
            raise  # already "<file>: <problem>"
        except Exception as exc:
            raise CLIError(f"{path}: cannot read: {_one_line(exc)}") from exc
        structures += [(path, int(a.info.get("frame", i)), a) for i, a in enumerate(frames)]

    auto = info is None
    if auto:
        info = default_model({int(z) for _, _, a in structures for z in a.numbers})
    if args.born and not {"born_charges", "dielectric"} <= set(info.targets):
        raise CLIError(
            f"--born needs a model predicting born_charges and dielectric; "
            f"{info.name} predicts {', '.join(info.targets)}"
        )
    allowed = set(info.elements) or None
    for _path, _i, atoms in structures:  # the card's checks before the (slow) model build; predict checks distances
        try:
            validate_atoms(atoms, allowed_numbers=allowed, max_atoms=args.max_atoms, min_distance=0)
        except StructureError as exc:
            raise CLIError(f"{exc} (model {info.name}; see `etgnn models`)") from exc

    import torch

    from etgnn_core.api import load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(str(info.path), device=args.device)
    show_progress = not args.quiet and len(structures) > args.batch_size and sys.stderr.isatty()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", StructureWarning)
        preds = model.predict(
            [a for _, _, a in structures], batch_size=args.batch_size, progress=show_progress, max_atoms=args.max_atoms
        )
    for w in caught:  # one line each, never silent (a molecule given to a crystal model, ...)
        if issubclass(w.category, StructureWarning):
            print(f"etgnn: warning: {' '.join(str(w.message).split())}", file=sys.stderr)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    if args.output and args.format == "extxyz":
        _write_extxyz(args.output, preds)
    else:
        text = _render(args.format, structures, preds)
        if args.output:
            Path(args.output).write_text(text)
        else:
            sys.stdout.write(text)
            sys.stdout.flush()
    if args.born:
        _write_born(args.born, structures, preds, quiet=args.quiet)
    if auto and not args.quiet:
        print(f"etgnn: used model {model.name} (choose another with --model; see `etgnn models`)", file=sys.stderr)
    return 0


def _check_output(path: str | None) -> None:
    """Refuse an output path whose folder is missing or not writable, or that is a folder itself."""
    if not path:
        return
    import os

    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise CLIError(f"{path}: is a folder; give a file name")
    if not folder.is_dir():
        raise CLIError(f"{path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise CLIError(f"{path}: folder {folder} is not writable")


def _render(fmt: str, structures, preds) -> str:
    from etgnn_core.io import to_json

    if fmt == "json":
        recs = [p.record(source=path, index=i) for (path, i, _), p in zip(structures, preds)]
        return to_json(recs, indent=1) + "\n"
    if fmt == "extxyz":
        import io

        buf = io.StringIO()
        _write_extxyz(buf, preds)
        return buf.getvalue()
    return "".join(_table(path, i, p) for (path, i, _), p in zip(structures, preds))


def _write_extxyz(target, preds) -> None:
    from etgnn_core.io import write_extxyz

    items = []
    for p in preds:
        atoms = p.atoms.copy()
        atoms.info["model"] = p.model
        items.append((atoms, *p.with_masks(), p.units))
    write_extxyz(target, items)


def _table(path: str, index: int, pred) -> str:
    """One block per structure; committees show every component as value ± std (same unit)."""
    lines = [f"# {path} [frame {index}] {pred.atoms.get_chemical_formula()}  model {pred.model}"]
    lines += [f"# warning: {w}" for w in getattr(pred, "warnings", [])]
    symbols = pred.atoms.get_chemical_symbols()
    stds = getattr(pred, "std", {})
    for name, value in pred.tensors.items():
        unit = pred.units.get(name, "")
        std = stds.get(name)
        pm = " (value ± committee std)" if std is not None else ""
        if pred.per_atom[name]:
            mask = pred.masks.get(name)
            only = f"; only {pred.carriers(name) or 'no'} atoms" if mask is not None else ""
            lines.append(f"{name} [{unit}] (per atom{only}){pm}")
            rows = [_fmt(v) for v in value] if std is None else _pm_rows(value, std)
            for j, row in enumerate(rows):
                if mask is None or mask[j]:
                    lines.append(f"  {j:4d} {symbols[j]:>2s}  " + row)
        else:
            lines.append(f"{name} [{unit}]{pm}")
            lines += ["  " + line for line in _matrix_lines(value, std, unit)]
    return "\n".join(lines) + "\n\n"


def _matrix_lines(value, std, unit: str) -> list[str]:
    """A crystal tensor as rows: 3 x 3 Cartesian, 3 x 6 / 6 x 6 Voigt for rank 3 / 4 (as the app shows it)."""
    from etgnn_core.viz.tables import tensor_table
    from etgnn_core.viz.uncertainty import pm_table

    value = np.asarray(value)
    if value.ndim < 2:
        return [_fmt(value, std)]
    if std is None:
        df = tensor_table(value, unit)
        text = (df.round(5) + 0.0).to_string(float_format="{:.5f}".format)  # + 0.0: no "-0.00000"
    else:
        df = pm_table(value, std, unit)
        text = df.to_string()
    return text.splitlines() + ([f"({df.attrs['note']})"] if df.attrs.get("note") else [])


def _fmt(v, std=None) -> str:
    v = np.asarray(v)
    if std is not None:
        return _pm_rows(v[None], np.asarray(std)[None])[0]
    if v.ndim <= 1:
        return " ".join(f"{x: .5f}" for x in np.atleast_1d(v))
    return " | ".join(_fmt(r) for r in v)


def _pm_rows(value, std) -> list[str]:
    """One line per atom of "value ± std" cells (format_pm: to the std's precision, one floor for the whole
    tensor), 3 x 3 rows split by |, every column as wide as the widest cell so atoms line up."""
    from etgnn_core.viz.uncertainty import format_pm

    v, s = np.asarray(value, dtype=float), np.asarray(std, dtype=float)
    cells = np.array(format_pm(v, s), dtype=object).reshape(len(v), -1, v[0].shape[-1] if v.ndim > 1 else 1)
    width = max(len(c) for c in cells.ravel())
    return [" | ".join(" ".join(c.rjust(width) for c in row) for row in atom) for atom in cells]


def _write_born(target: str, structures, preds, quiet: bool = False) -> None:
    from etgnn_core.io import write_phonopy_born

    for n, ((path, i, _), p) in enumerate(zip(structures, preds)):
        out = target if len(preds) == 1 else f"{target}.{n}"
        try:
            write_phonopy_born(out, p.atoms, p["dielectric"], p["born_charges"])
        except Exception as exc:
            raise CLIError(f"{path}, frame {i}: cannot write phonopy BORN: {_one_line(exc)}") from exc
        if not quiet:
            print(f"etgnn: wrote phonopy BORN for {path} [frame {i}] to {out}", file=sys.stderr)


# ------------------------------------------------------------------------------------------ spectra
SPECTRA_FORMATS = ("table", "json")


def _spectra_parser(sub, common) -> None:
    sp = sub.add_parser(
        "spectra",
        parents=[common],
        help="IR spectrum, ε∞ / ε_ionic / ε0 and LO-TO splitting of crystals (Γ phonons + predicted Born charges)",
        description="Γ phonons from a universal potential (SevenNet by default; the structure is relaxed first) "
        "or a phonopy file, Born charges and ε∞ from an ETGNN model: frequencies (cm^-1), IR intensities "
        "(e^2/amu), ε_ionic, ε0 = ε∞ + ε_ionic, LO modes (phonopy's non-analytical correction). See docs/spectra.md.",
    )
    sp.add_argument("paths", nargs="+", metavar="PATH", help="crystal structure files (any format ASE reads)")
    sp.add_argument("--model", "-m", default="multi_element_bec",
                    help="ETGNN model predicting born_charges and dielectric (default multi_element_bec)")
    sp.add_argument("--phonons", default="sevenn", metavar="sevenn|sevenn-0|chgnet|FILE",
                    help="force model for the phonons (sevenn = SevenNet 7net-l3i5, default; sevenn-0 = 7net-0; "
                    "chgnet = CHGNet 0.3.0) or a phonopy.yaml / phonopy_params.yaml (or a folder with phonopy.yaml "
                    "+ FORCE_SETS / FORCE_CONSTANTS); with a file the PATH must be the same crystal (or that file)")
    sp.add_argument("--relax", choices=("positions", "cell", "none"), default="positions",
                    help="relax with the force model before the phonons: positions (fixed cell, default), "
                    "cell (cell and positions) or none; the space group is kept")
    sp.add_argument("--supercell", type=int, nargs=3, default=(1, 1, 1), metavar=("N1", "N2", "N3"),
                    help="supercell for the displacements (default 1 1 1: exact at Γ)")
    sp.add_argument("--fwhm", type=float, default=10.0, metavar="CM1",
                    help="Lorentzian line width (full width at half maximum) of the spectrum in cm^-1 (default 10)")
    sp.add_argument("--lo-direction", action="append", type=float, nargs=3, metavar=("QX", "QY", "QZ"),
                    help="Cartesian q direction of the LO modes (repeatable; default x, y and z)")
    sp.add_argument("--format", "-f", choices=SPECTRA_FORMATS, default="table", help="table (default) or json")
    sp.add_argument("--output", "-o", metavar="FILE",
                    help="write the broadened spectrum as CSV (frequency_cm1, intensity per structure) to FILE")
    sp.add_argument("--device", default="auto", help="auto (CUDA if available, default), cpu or cuda")
    sp.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads for the force model (default 1: fastest for small cells)")
    sp.add_argument("--quiet", "-q", action="store_true", help="no progress notes on standard error")


def _spectra_structures(args) -> list:
    """(label, atoms or None) per structure; None = the cell of the phonopy file (--phonons FILE)."""
    from etgnn_core.spectra.phonons import POTENTIALS
    from etgnn_core.structure import read_structures

    phonon_file = None if args.phonons in POTENTIALS else Path(args.phonons)
    if phonon_file is not None and not phonon_file.exists():
        raise CLIError(f"--phonons {args.phonons}: neither a force model ({', '.join(POTENTIALS)}) nor an existing "
                       "phonopy file")
    out = []
    for path in args.paths:
        if phonon_file is not None and Path(path).resolve() == phonon_file.resolve():
            out.append((path, None))
            continue
        try:
            frames = read_structures(path, name=path)
        except Exception as exc:
            raise CLIError(exc if str(exc).startswith(path) else f"{path}: cannot read: {_one_line(exc)}") from exc
        out += [(path if len(frames) == 1 else f"{path} [frame {i}]", a) for i, a in enumerate(frames)]
    if phonon_file is not None and len(out) != 1:
        raise CLIError(f"--phonons {args.phonons}: a phonopy file gives the phonons of one crystal; "
                       f"give exactly one PATH (got {len(out)} structures)")
    return out


def _same_crystal(atoms, cell_atoms) -> bool:
    """Same composition and volume per atom within 2 % (a phonopy file's primitive cell vs the user's file)."""
    from collections import Counter

    ca, cb = Counter(atoms.numbers.tolist()), Counter(cell_atoms.numbers.tolist())
    ratio = len(atoms) / len(cell_atoms)
    if any(abs(ca[z] - cb[z] * ratio) > 1e-9 for z in set(ca) | set(cb)):
        return False
    return abs(atoms.get_volume() / len(atoms) / (cell_atoms.get_volume() / len(cell_atoms)) - 1) < 0.02


def cmd_spectra(args) -> int:
    from etgnn_core.api import load_model
    from etgnn_core.spectra import check_model

    info, structures, config = _spectra_inputs(args)
    model = load_model(str(info.path), device=args.device)
    check_model(model)
    results = [_spectrum_of(label, atoms, model, config, args.quiet) for label, atoms in structures]
    if args.output:
        _write_spectrum_csv(args.output, results, args.fwhm)
    if args.format == "json":
        from etgnn_core.io import to_json

        sys.stdout.write(to_json([r.record() for r in results], indent=1) + "\n")
    else:
        sys.stdout.write("".join(_spectra_table(r) for r in results))
    sys.stdout.flush()
    return 0


def _spectra_inputs(args):
    """(model info, [(label, atoms or None)], SpectraConfig) after every check that needs no model."""
    from etgnn_core.spectra import SpectraConfig
    from etgnn_core.spectra.phonons import PhononConfig
    from etgnn_core.structure import is_periodic

    if not args.fwhm > 0:
        raise CLIError(f"--fwhm must be positive, got {args.fwhm}")
    info = _model_info(args.model)  # a wrong --model fails before any reading
    missing = [t for t in ("born_charges", "dielectric") if t not in info.targets]
    if missing:
        raise CLIError(f"model {info.name} cannot give IR spectra: it does not predict {' and '.join(missing)} "
                       f"(it predicts {', '.join(info.targets)})")
    structures = _spectra_structures(args)
    for label, atoms in structures:
        if atoms is not None and not (is_periodic(atoms) and all(atoms.pbc)):
            raise CLIError(f"{label}: IR spectra need a 3D-periodic crystal (a cell and pbc on all three axes)")
    config = SpectraConfig(
        PhononConfig(source=args.phonons, supercell=tuple(args.supercell), relax=args.relax, device=args.device,
                     threads=args.threads),
        fwhm_cm1=args.fwhm, lo_directions=tuple(map(tuple, args.lo_direction or ((1, 0, 0), (0, 1, 0), (0, 0, 1)))),
    )
    if not config.phonons.is_potential:  # a mismatched crystal fails before the model is loaded
        from etgnn_core.spectra.phonons import from_phonopy_atoms, load_phonopy_file

        cell = from_phonopy_atoms(load_phonopy_file(args.phonons, config.phonons.symprec).primitive)
        for label, atoms in structures:
            if atoms is not None and not _same_crystal(atoms, cell):
                raise CLIError(f"{label}: not the crystal of phonopy file {args.phonons} "
                               f"({atoms.get_chemical_formula()} vs {cell.get_chemical_formula()}, "
                               "or a different volume per atom)")
    return info, structures, config


def _spectrum_of(label: str, atoms, model, config, quiet: bool):
    """compute_spectrum with progress notes on stderr; any failure becomes one line naming ``label``."""
    import contextlib
    import time

    from etgnn_core.spectra import compute_spectrum

    t0 = time.perf_counter()

    def note(stage, done, total):
        if not quiet and (done == 0 or stage == "displacements"):
            print(f"\retgnn: {label}: {stage} {done}/{total} ({time.perf_counter() - t0:.0f} s)",
                  end="", file=sys.stderr, flush=True)

    try:  # a force model's own prints must not mix into the JSON on stdout
        with contextlib.redirect_stdout(sys.stderr):
            res = compute_spectrum(atoms, model, config, progress=note, source=label)
    except Exception as exc:
        raise CLIError(f"{label}: {_one_line(exc)}") from exc
    if not quiet:
        print(f"\retgnn: {label}: done in {time.perf_counter() - t0:.0f} s" + " " * 20, file=sys.stderr)
        if atoms is None:
            print(f"etgnn: {label}: the phonopy file's primitive cell ({res.formula}) was used", file=sys.stderr)
    return res


def _write_spectrum_csv(path: str, results, fwhm: float) -> None:
    """frequency_cm1 plus one intensity column (e^2/amu, peak-normalised Lorentzians) per structure."""
    top = max(float(np.max(r.frequencies_cm1, initial=0.0)) for r in results)
    grid = np.linspace(0.0, max(top + 5 * fwhm, 100.0), 2000)
    cols = [r.spectrum(fwhm, grid)[1] for r in results]
    names = [f"intensity_e2_per_amu[{r.source or k}]".replace(",", ";") for k, r in enumerate(results)]
    lines = ["frequency_cm1," + ",".join(names)]
    lines += [f"{g:.3f}," + ",".join(f"{c[i]:.6g}" for c in cols) for i, g in enumerate(grid)]
    Path(path).write_text("\n".join(lines) + "\n")


def _spectra_table(res) -> str:
    lines = [f"# {res.source} {res.formula}  model {res.model}  phonons {res.phonons}"]
    lines += [f"warning: {w}" for w in res.warnings]
    lines.append("mode  frequency [cm^-1]  IR intensity [e^2/amu]  kind")
    for r in res.modes_table():
        f = r["frequency_cm1"]
        freq = f"{abs(f):10.2f}{'i' if f < 0 else ' '}"
        lines.append(f"{r['mode']:4d}  {freq:>17s}  {r['ir_intensity']:22.5f}  {r['kind']}")
    for name, t in (("eps_inf", res.eps_inf), ("eps_ionic", res.eps_ionic), ("eps_static", res.eps_static)):
        lines.append(f"{name:10s} " + _fmt(t))
    for d, f in zip(res.lo_directions, res.lo_frequencies_cm1):
        optical = np.sort(f)[3:]  # the three lowest are the acoustic modes
        lines.append(f"optical modes with q -> 0 along ({d[0]:.3f}, {d[1]:.3f}, {d[2]:.3f}) (LO + TO) [cm^-1]: "
                     + " ".join(f"{x:.1f}" for x in optical))
    return "\n".join(lines) + "\n\n"


# -------------------------------------------------------------------------------------------- train
def cmd_train(args) -> int:
    from etgnn_core.train import TrainConfig, recipe, train
    from etgnn_core.train.trainer import run_finished

    if args.dry_run:
        return _dry_run(args.config, args.member)
    if recipe.is_recipe_file(args.config):  # a model folder's train.yaml: every stage in order
        if args.member is not None or args.fold:
            raise CLIError("--member and --fold apply to a training config, not to a model folder's train.yaml")
        stages = recipe.read_recipe(args.config)
        cfg = stages.stages[-1].config
        if args.install and (pretrained_root() / cfg.name).exists() and not (args.force or args.replace):
            raise CLIError(f"{pretrained_root() / cfg.name} exists; --replace installs over it")
        res = recipe.run_recipe(stages, resume=not args.no_resume)
    else:
        cfg = TrainConfig.from_file(args.config)  # the name is a plain slug: it names the install folder
        if args.member is not None:
            if args.install:
                raise CLIError("--install with --member: a member is installed as part of its committee")
            cfg = cfg.for_member(args.member)
        if args.fold:
            if args.install or args.member is not None:
                raise CLIError("--fold trains a model for cross-validation only: not with --install or --member")
            cfg = cfg.for_fold(args.fold)
        dest = pretrained_root() / cfg.name
        if args.install and dest.exists() and not (args.force or args.replace):  # before hours of training
            raise CLIError(f"{dest} exists; --replace installs over it (--force also trains the run again)")
        if run_finished(cfg.output) and not args.force:
            model_dir = Path(cfg.output) / "model"
            if args.install:  # the finished model, as it is
                print(f"{args.config}: this run is finished; installed {model_dir} into "
                      f"{install_model(model_dir, cfg.name, replace=args.replace)}")
                return 0
            print(f"{args.config}: this run is finished (model folder {model_dir}); nothing to do "
                  "(--force trains it again and replaces the model)")
            return 0
        res = train(cfg, resume=not args.no_resume, force=args.force)
    print(f"model folder: {res.model_dir}")
    for t, m in res.metrics.items():
        print(f"{m['split']} MAE {t}: {m['mae']:.4g} {m['unit']} (baseline {m['baseline_mae']:.4g})")
    if args.install:
        print(f"installed into {install_model(res.model_dir, cfg.name, replace=args.force or args.replace)}")
    return 0


# ---------------------------------------------------------------------------------------- committee
def cmd_committee(args) -> int:
    from etgnn_core.committee import assemble_committee, install_committee

    members = None
    if args.members:
        try:
            members = [int(k) for k in args.members.split(",") if k.strip()]
        except ValueError as exc:
            raise CLIError(f"--members must be comma-separated integers such as 0,1,2,3, got {args.members!r}") from exc
    folder = assemble_committee(args.config, members, batch_size=args.batch_size)
    card = __import__("json").loads((folder / "card.json").read_text())
    print(f"committee folder: {folder} ({card['size']['members']} members, {card['size']['megabytes']} MB)")
    for t, m in card["metrics"].items():
        print(f"test {t}: MAE {_num(m['mae'])} {m['unit']} (baseline {_num(m['baseline_mae'])}, "
              f"ratio {_num(m['ratio'])}); coverage {_num(m['coverage'])}, Spearman {_num(m['spearman'])}; "
              f"std scale {_num(card['std_scale'].get(t))}")
        for extra, unit in (("norm", m["unit"]), ("bulk", "GPa"), ("shear", "GPa")):
            if f"{extra}_mae" in m:
                print(f"  {extra}: MAE {_num(m[f'{extra}_mae'])} {unit} (baseline {_num(m[f'{extra}_baseline_mae'])})")
    if args.install:
        dest = install_committee(folder, args.install_dir)
        print(f"installed into {dest}")
    return 0


def _num(x) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def _dry_run(path, member: int | None = None) -> int:
    """Print the plan of a config or train.yaml and check its configs and data without training."""
    from etgnn_core.train.recipe import dry_run

    lines, problems = dry_run(path, member)
    print("\n".join(lines))
    for p in problems:
        print(f"etgnn: error: {path}: {p}", file=sys.stderr)
    print("dry run: " + (f"{len(problems)} problem(s)" if problems else "configs and data check out; nothing trained"))
    return 1 if problems else 0


def pretrained_root() -> Path:
    """The repository's pretrained/ folder (where --install puts models)."""
    from etgnn_core.registry import pretrained_root as root

    return root()


def install_model(model_dir, name: str, replace: bool = False, root: Path | None = None) -> Path:
    """:func:`etgnn_core.registry.install_model`, its refusals as one-line CLI errors."""
    from etgnn_core.registry import InstallError
    from etgnn_core.registry import install_model as install

    try:
        return install(model_dir, name, replace=replace, root=root)
    except InstallError as exc:
        raise CLIError(str(exc)) from None


def _symbols(numbers) -> str:
    from ase.data import chemical_symbols

    return " ".join(chemical_symbols[z] for z in numbers) if numbers else "any"


if __name__ == "__main__":
    sys.exit(main())
