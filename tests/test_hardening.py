"""Hostile input (issue 12): each case fails with one clear line, never a native crash, nothing lost.

Thin / anisotropic cells that crash vesin, isolated atoms, decompression bombs, path-like model
names on --install, resuming after a signal, finished runs, model-config bounds, unsafe weights,
binary label files, output paths checked first.  The app cases are in tests/test_app_hardening.py.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import ase.io
import numpy as np
import pytest
import torch
from ase import Atoms
from test_api import make_model_folder, sio_cell
from test_train import TINY, tiny_config, zno_samples

from etgnn_core import cli
from etgnn_core.data import DataError, load_labelled_extxyz
from etgnn_core.graph import neighbor_list
from etgnn_core.registry import ModelLoadError, load_model_folder
from etgnn_core.structure import (
    StructureError,
    StructureWarning,
    neighbor_search_problem,
    read_structures,
    validate_atoms,
)
from etgnn_core.train import ConfigError, TrainConfig
from etgnn_core.train.trainer import RunStateError, prepare_run

ROOT = Path(__file__).resolve().parents[1]
THIN_XYZ = ('2\nLattice="1000 0 0 0 0.001 0 0 0 1000" Properties=species:S:1:pos:R:3 pbc="T T T"\n'
            "Si 0 0 0\nO 1.6 0 0\n")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    make_model_folder(root, "tiny_sio2", ["born_charges", "dielectric"], elements=[8, 14])
    make_model_folder(root, "tiny_dipole", ["dipole"], elements=[1, 8])
    return root


def run_cli(*args, env=None, **kw):
    return subprocess.run([sys.executable, "-m", "etgnn_core.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, **kw)


# ------------------------------------------------------------------------------------ 1. thin cells
def test_thin_cell_is_refused_naming_the_file_and_direction():
    (atoms,) = read_structures(THIN_XYZ, name="thin.xyz")
    with pytest.raises(StructureError, match=r"^thin.xyz, frame 0: the cell is only 0.001 A thick along b"):
        validate_atoms(atoms)


def test_thin_cell_predict_exits_1_with_one_line_instead_of_sigfpe(models, tmp_path):
    path = tmp_path / "thin.xyz"
    path.write_text(THIN_XYZ)
    r = run_cli("predict", str(path), "--model", str(models / "tiny_sio2"), timeout=300)
    assert r.returncode == 1, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"etgnn: error: {path}, frame 0: the cell is only")


@pytest.mark.parametrize("cell, pbc, cutoff", [
    (np.diag([3.0, 2000.0, 2000.0]), True, 5.0),  # a thin slab: vesin's capped grid has 0 cells along a
    (np.diag([30.0, 10000.0, 10000.0]), True, 5.0),
    (np.zeros((3, 3)), False, 5.0),  # a flat molecule 2 km wide (positions below)
])
def test_neighbor_search_is_refused_where_vesin_would_die(cell, pbc, cutoff):
    positions = [[0.0, 0.0, 0.0], [2000.0, 0.0, 0.0], [0.0, 0.0, 2000.0]] if not pbc else [[0.0, 0.0, 0.0]]
    assert "too anisotropic" in neighbor_search_problem(positions, cell, [pbc] * 3, cutoff)
    atoms = Atoms("Si" * len(positions), positions=positions, cell=cell, pbc=pbc)
    atoms.info["source"] = "odd.xyz"
    with pytest.raises(StructureError, match="^odd.xyz: .*too anisotropic"):
        neighbor_list(atoms, cutoff)  # refused in Python; calling vesin would kill this process


def test_neighbor_search_mirror_agrees_with_vesin():
    """The refusal rule predicts exactly where vesin dies (each case in its own process)."""
    cases = [  # (positions, cell, pbc, cutoff)
        ([[0, 0, 0], [1.6, 0, 0]], np.diag([3.0, 2000.0, 2000.0]).tolist(), [True] * 3, 5.0),
        ([[0, 0, 0], [1.6, 0, 0]], np.diag([3.0, 1500.0, 1500.0]).tolist(), [True] * 3, 5.0),
        ([[0, 0, 0], [1.6, 0, 0]], np.diag([10000.0] * 3).tolist(), [True] * 3, 5.0),
        ([[0, 0, 0], [2000, 0, 0], [0, 0, 2000]], [[0] * 3] * 3, [False] * 3, 5.0),
        ([[0, 0, 0], [1500, 0, 0], [0, 0, 1500]], [[0] * 3] * 3, [False] * 3, 5.0),
        ([[0, 0, 0], [0, 0, 1.5]], np.diag([3.0, 3000.0, 0.0]).tolist(), [True, True, False], 4.0),
    ]
    for pos, cell, pbc, cutoff in cases:
        code = (f"import numpy as np, vesin; vesin.NeighborList(cutoff={cutoff!r}, full_list=False).compute("
                f"points=np.array({pos!r}, float), box=np.array({cell!r}, float), periodic={pbc!r}, quantities='ij')")
        rc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120).returncode
        predicted = neighbor_search_problem(np.array(pos, float), np.array(cell, float), pbc, cutoff)
        assert (rc == -signal.SIGFPE) == ("anisotropic" in predicted), (pos, cell, pbc, rc, predicted)
        assert rc in (0, -signal.SIGFPE)


@pytest.mark.parametrize("cell, what", [
    (np.diag([2e5, 3.0, 3.0]), "lattice vector a is 2e\\+05 A long"),
    ([[3.0, 0, 0], [0, 3.0, 0], [0, 0, 0.4]], "only 0.4 A thick along c"),
    ([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 2e4]], "too distorted"),
])
def test_insane_cells_are_refused(cell, what):
    atoms = Atoms("Si", positions=[[0.1, 0.2, 0.3]], cell=cell, pbc=True)
    with pytest.raises(StructureError, match=what):
        validate_atoms(atoms, min_distance=0, name="x.cif")


def test_real_cells_pass_the_cell_checks():
    from ase.build import bulk, graphene_nanoribbon, mx2

    slab = mx2("MoS2", vacuum=15.0)
    slab.pbc = True
    ribbon = graphene_nanoribbon(2, 3, vacuum=10.0)
    for atoms in (bulk("Si"), bulk("Cu", "fcc", a=3.6), slab, ribbon, sio_cell()):
        validate_atoms(atoms)


# -------------------------------------------------------------------- 6. lone atoms, molecules
def test_isolated_atom_is_refused_for_a_crystal_model(models):
    from etgnn_core.api import load_model

    model = load_model(str(models / "tiny_sio2"))
    lone = Atoms("Si", positions=[[0, 0, 0]], cell=np.eye(3) * 10000.0, pbc=True)
    lone.info["source"] = "lone.xyz"
    with pytest.raises(StructureError, match="atom 0 \\(Si\\) has no neighbour within the model's 5 A cutoff"):
        model.predict(lone)
    molecule = Atoms("SiO2", positions=[[0, 0, 0], [1.6, 0, 0], [-0.5, 1.5, 0]])
    with pytest.warns(StructureWarning, match="a molecule \\(no cell\\) given to model tiny_sio2"):
        model.predict(molecule)
    with warnings.catch_warnings():  # a molecule model: no warning, no refusal of a far atom
        warnings.simplefilter("error", StructureWarning)
        water = Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
        load_model(str(models / "tiny_dipole")).predict(water)


def test_cli_prints_one_warning_line_for_a_molecule(models, tmp_path, capsys):
    path = tmp_path / "m.xyz"
    path.write_text("3\nmolecule\nSi 0 0 0\nO 1.6 0 0\nO -0.5 1.5 0\n")
    assert cli.main(["predict", str(path), "--model", str(models / "tiny_sio2"), "-q"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"etgnn: warning: {path}, frame 0: a molecule (no cell) given to model tiny_sio2, which was "
                   "trained on crystals: its prediction is an extrapolation"]


def test_output_folder_is_checked_before_predicting(models, tmp_path, capsys, monkeypatch):
    path = tmp_path / "c.vasp"
    ase.io.write(path, sio_cell(), format="vasp")
    import etgnn_core.api

    monkeypatch.setattr(etgnn_core.api, "load_model", lambda *a, **k: pytest.fail("predicted before the check"))
    for flag in ("-o", "--born"):
        out = tmp_path / "missing" / "out.json"
        assert cli.main(["predict", str(path), "--model", str(models / "tiny_sio2"), flag, str(out)]) == 1
        assert capsys.readouterr().err == f"etgnn: error: {out}: folder {out.parent} does not exist\n"


# ------------------------------------------------------------------------------------ 5. gzip bomb
def test_decompression_stops_at_the_cap(tmp_path, monkeypatch):
    monkeypatch.setenv("ETGNN_MAX_DECOMPRESSED", "4096")
    good = gzip.compress(b"2\nsmall\nSi 0 0 0\nO 1.6 0 0\n")
    assert len(read_structures(good, name="ok.xyz.gz")[0]) == 2
    bomb = gzip.compress(b"2\nbomb\nSi 0 0 0\nO 1.6 0 0\n" + b" " * 10**6)  # 1 MB of blanks in ~1 kB
    assert len(bomb) < 5000
    with pytest.raises(StructureError, match=r"^bomb.xyz.gz: expands to more than 0 MiB when decompressed"):
        read_structures(bomb, name="bomb.xyz.gz")
    path = tmp_path / "bomb.xyz.gz"
    path.write_bytes(bomb)
    r = run_cli("predict", str(path), env={"ETGNN_MAX_DECOMPRESSED": "4096"}, timeout=300)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "expands to more than" in r.stderr


# -------------------------------------------------------------------------------- 2. --install guard
@pytest.mark.parametrize("name", [".", "..", "../../x", "a/b", "", "-x", "x y", "x.y"])
def test_model_names_are_plain_slugs(name):
    with pytest.raises(ConfigError, match="must be a plain name"):
        TrainConfig.from_dict({"name": name, "targets": ["born_charges"], "data": {"dataset": "d"}}, "cfg.yaml")


def test_install_replaces_only_the_model_folder_it_writes(models, tmp_path):
    root = tmp_path / "pretrained"
    root.mkdir()
    (root / "keep").write_text("not a model")
    (root / "plain").mkdir()
    (root / "plain" / "data.txt").write_text("someone's folder")
    src = models / "tiny_sio2"
    for bad in (".", "..", "../x", "a/b"):
        with pytest.raises(cli.CLIError):
            cli.install_model(src, bad, replace=True, root=root)
    with pytest.raises(cli.CLIError, match="is not a model folder: not replaced"):
        cli.install_model(src, "plain", replace=True, root=root)
    with pytest.raises(cli.CLIError, match="keep exists; --replace"):
        cli.install_model(src, "keep", root=root)
    dest = cli.install_model(src, "mine", root=root)
    assert (dest / "weights.pt").read_bytes() == (src / "weights.pt").read_bytes()
    with pytest.raises(cli.CLIError, match="mine exists; --replace installs"):
        cli.install_model(models / "tiny_dipole", "mine", root=root)
    cli.install_model(models / "tiny_dipole", "mine", replace=True, root=root)
    assert "dipole" in (dest / "config.json").read_text()
    assert sorted(p.name for p in root.iterdir()) == ["keep", "mine", "plain"]  # no staging left
    assert (root / "plain" / "data.txt").exists() and (root / "keep").read_text() == "not a model"


# ------------------------------------------------------------------------------ 6. config bounds
@pytest.mark.parametrize("key, value", [("num_blocks", 1e6), ("hidden", -3), ("hidden", "64"), ("cutoff", 0.0),
                                        ("max_neighbors", True)])
def test_model_config_fields_are_bounds_checked_naming_file_and_key(models, tmp_path, key, value):
    import shutil

    folder = tmp_path / "m"
    shutil.copytree(models / "tiny_sio2", folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["model"][key] = value
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match=f"^{folder / 'config.json'}: key '{key}' must be"):
        load_model_folder(folder)
    with pytest.raises(ConfigError, match=f"^cfg.yaml: model key '{key}' must be"):
        TrainConfig.from_dict({"name": "n", "targets": ["born_charges"], "data": {"dataset": "d"},
                               "model": {key: value}}, "cfg.yaml")


def test_unknown_model_key_names_the_file():
    with pytest.raises(ConfigError, match=r"^cfg.yaml: unknown model key\(s\) \['colour'\]"):
        TrainConfig.from_dict({"name": "n", "targets": ["born_charges"], "data": {"dataset": "d"},
                               "model": {"colour": 1}}, "cfg.yaml")


def test_unsafe_weights_are_refused_in_one_short_line(models, tmp_path):
    import shutil

    folder = tmp_path / "m"
    shutil.copytree(models / "tiny_sio2", folder)
    torch.save({"evil": object()}, folder / "weights.pt")
    with pytest.raises(ModelLoadError) as err:
        load_model_folder(folder)
    msg = str(err.value)
    assert msg == f"{folder / 'weights.pt'}: not plain weights (it holds objects other than tensors, which could " \
                  "run code): refused"
    assert "weights_only=False" not in msg and "\n" not in msg


def test_binary_label_file_is_refused_without_raw_bytes():
    junk = bytes(range(256)) * 20
    with pytest.raises(DataError) as err:
        load_labelled_extxyz(junk, name="photo.xyz")
    assert str(err.value) == "photo.xyz: binary content, not an extended XYZ text file"


# ------------------------------------------------------------------------------- 4. resume, finish
def test_resume_is_refused_when_data_split_or_model_differ(tmp_path):
    cfg = tiny_config(tmp_path)
    assert prepare_run(cfg, tmp_path / "run", resume=True) is None  # fresh: writes run.json
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"x")
    assert prepare_run(cfg, tmp_path / "run", resume=True) == last
    other = tiny_config(tmp_path, model={**TINY, "hidden": 32}, split={"seed": 2, "train": 0.6, "val": 0.2,
                                                                       "test": 0.2})
    with pytest.raises(RunStateError, match=r"config's split, model differ from the checkpoint's run .*--no-resume"):
        prepare_run(other, tmp_path / "run", resume=True)
    assert prepare_run(other, tmp_path / "run", resume=False) is None and not last.exists()


def _write_training_files(tmp_path: Path, max_epochs: int) -> Path:
    frames = []
    for s in zno_samples(16):
        a = s.atoms.copy()
        a.arrays["born_charges"] = s.targets["born_charges"].reshape(len(a), 9)
        a.info["dielectric"] = s.targets["dielectric"].reshape(9)
        frames.append(a)
    ase.io.write(tmp_path / "zno.xyz", frames, format="extxyz")
    cfg = {"name": "sig", "targets": ["born_charges", "dielectric"], "data": {"extxyz": str(tmp_path / "zno.xyz")},
           "model": TINY, "optim": {"max_epochs": max_epochs, "batch_size": 4, "patience": 0},
           "split": {"seed": 0, "train": 0.75, "val": 0.25, "test": 0.0}, "output": str(tmp_path / "run"),
           "threads": 1}
    path = tmp_path / "cfg.yaml"
    path.write_text(json.dumps(cfg))
    return path


def _epoch(ckpt: Path) -> int:
    return int(torch.load(ckpt, map_location="cpu", weights_only=True)["epoch"])


def test_sigint_checkpoints_exits_130_and_a_rerun_resumes_then_reports_finished(tmp_path, capsys, monkeypatch):
    cfg = _write_training_files(tmp_path, max_epochs=10_000)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    proc = subprocess.Popen([sys.executable, "-m", "etgnn_core.cli", "train", str(cfg)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.monotonic() + 240
    while (not last.exists() or _epoch(last) < 2) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    lines = [ln for ln in err.splitlines() if ln.startswith("etgnn:")]
    assert len(lines) == 1 and lines[0].startswith("etgnn: interrupted: SIGINT during epoch") and str(last) in lines[0]
    stopped = _epoch(last)
    assert stopped >= 2  # the epochs done before the signal are kept, not only the best one
    assert not (tmp_path / "run" / "model").exists()

    spec = json.loads(cfg.read_text())
    spec["optim"]["max_epochs"] = stopped + 2
    cfg.write_text(json.dumps(spec))
    assert cli.main(["train", str(cfg)]) == 0  # in this process: resumes, then writes the model
    card = json.loads((tmp_path / "run" / "model" / "card.json").read_text())
    assert card["training"]["epochs"] == stopped + 2
    assert _epoch(last) == stopped + 1  # written at the end of every epoch, the last one included
    logs = sorted((tmp_path / "run" / "logs").glob("version_*/metrics.csv"))
    header, *rows = logs[-1].read_text().splitlines()
    col = header.split(",").index("epoch")
    assert min(int(float(r.split(",")[col])) for r in rows if r.split(",")[col]) >= stopped  # not from epoch 0

    weights = (tmp_path / "run" / "model" / "weights.pt").read_bytes()
    capsys.readouterr()
    assert cli.main(["train", str(cfg)]) == 0
    assert "this run is finished" in capsys.readouterr().out
    assert (tmp_path / "run" / "model" / "weights.pt").read_bytes() == weights

    # installing the finished run over an existing model: refused without --replace, never retrained
    import etgnn_core.registry as registry

    root = tmp_path / "pretrained"
    (root / "sig").mkdir(parents=True)
    (root / "sig" / "config.json").write_text("{}")
    monkeypatch.setattr(registry, "pretrained_root", lambda: root)
    monkeypatch.setattr(cli, "pretrained_root", lambda: root)
    capsys.readouterr()
    assert cli.main(["train", str(cfg), "--install"]) == 1
    assert "sig exists; --replace installs over it" in capsys.readouterr().err
    assert cli.main(["train", str(cfg), "--install", "--replace"]) == 0
    assert (root / "sig" / "weights.pt").read_bytes() == weights
    assert (tmp_path / "run" / "model" / "weights.pt").read_bytes() == weights


def test_free_text_becomes_an_accepted_model_name():
    from etgnn_core.train.config import slugify

    assert [slugify(t) for t in ("../../x", ".", "a.b c", "ZnO born")] == ["x", "model", "a_b_c", "ZnO_born"]
    for t in ("../../x", ".", "a.b c", "-" * 300, "é"):
        TrainConfig.from_dict({"name": slugify(t), "targets": ["born_charges"], "data": {"dataset": "d"}}, "cfg")


def test_poscar_zip_members_are_read_with_the_same_cap(monkeypatch):
    import io
    import zipfile

    from etgnn_core.data import load_poscar_zip

    poscar = "MgO\n1.0\n0 2.1 2.1\n2.1 0 2.1\n2.1 2.1 0\nMg O\n1 1\nDirect\n0 0 0\n0.5 0.5 0.5\n"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("s0.vasp", poscar + " " * 10**6)  # 1 MB of blanks in a few kB
    csv = {"id_prop_dielectric.csv": b"s0," + b",".join([b"1"] * 9) + b"\n"}
    assert len(load_poscar_zip(buf.getvalue(), csv, name="set.zip")) == 1
    monkeypatch.setenv("ETGNN_MAX_DECOMPRESSED", "4096")
    with pytest.raises(DataError, match=r"^set.zip: expands to more than 0 MiB when decompressed"):
        load_poscar_zip(buf.getvalue(), csv, name="set.zip")
