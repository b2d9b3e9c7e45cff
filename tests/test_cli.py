"""`etgnn models | predict`: formats, exports, default model, and one-line errors for bad input.

Runs ``etgnn_core.cli.main`` in-process (tiny model folders, loaded once) and the real console
script in a subprocess for the error path.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase.build import bulk
from test_api import make_model_folder, quartz, sio_cell

import etgnn_core.api
import etgnn_core.registry
from etgnn_core import cli
from etgnn_core.io import read_extxyz_tensors, read_phonopy_born
from etgnn_core.structure import StructureError

RECORD_KEYS = {"source", "index", "formula", "model", "tensors", "warnings"}


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrained")
    make_model_folder(root, "tiny_sio2", ["born_charges", "dielectric"], elements=[8, 14])
    make_model_folder(root, "wide_piezo", ["piezoelectric"])
    return root


@pytest.fixture(autouse=True)
def only_tiny_models(pretrained, monkeypatch):
    """Only the tiny folders are installed (not the repository's pretrained/); each is built once."""
    monkeypatch.setenv("ETGNN_PRETRAINED", str(pretrained))
    monkeypatch.setattr(etgnn_core.registry, "pretrained_dirs", lambda: [pretrained])
    monkeypatch.setattr(etgnn_core.api, "load_model", _cached_load)


@functools.cache
def _cached_load(name_or_path, device=None):
    return etgnn_core.api.Model(*etgnn_core.registry.load_model_folder(name_or_path), device)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("structures")
    q = quartz()
    ase.io.write(d / "quartz.cif", q)
    ase.io.write(d / "CONTCAR", sio_cell(), format="vasp")
    ase.io.write(d / "cell_without_extension", q, format="vasp")  # detected by content
    frames = [sio_cell(), q, sio_cell()]
    frames[2].positions[0] += 0.1
    ase.io.write(d / "frames.xyz", frames, format="extxyz")
    zno = bulk("ZnO", "wurtzite", a=3.25, c=5.2)
    ase.io.write(d / "POSCAR_ZnO", zno, format="vasp")
    ase.io.write(d / "mixed.xyz", [sio_cell(), zno], format="extxyz")
    overlap = sio_cell()
    overlap.positions[1] = overlap.positions[0] + 0.05
    ase.io.write(d / "overlap.xyz", overlap, format="extxyz")
    (d / "notes.txt").write_text("these are my notes\nnot a crystal\n")
    (d / "empty.cif").write_text("")
    return {"dir": d, "quartz": q, "frames": frames, **{p.name: str(p) for p in d.iterdir()}}


def run(capsys, *argv) -> tuple[int, str, str]:
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_models_lists_tensors_units_and_elements(capsys):
    rc, out, _ = run(capsys, "models")
    assert rc == 0
    assert "tiny_sio2" in out and "wide_piezo" in out
    assert "born_charges    [e]  per atom, 3x3" in out
    assert "dielectric      [dimensionless]  per structure, 3x3" in out
    assert "piezoelectric   [C/m^2]  per structure, 3x3x3" in out
    assert "elements: O Si" in out and "elements: any" in out
    rc, out, _ = run(capsys, "models", "--json")
    models = {m["name"]: m for m in json.loads(out)}
    assert models["tiny_sio2"]["tensors"][0] == {"name": "born_charges", "unit": "e", "per_atom": True, "shape": [3, 3]}
    assert models["tiny_sio2"]["elements"] == ["O", "Si"]


def test_predict_table_cif_and_poscar_with_and_without_extension(capsys, files):
    rc, out, err = run(
        capsys,
        "predict",
        files["quartz.cif"],
        files["CONTCAR"],
        files["cell_without_extension"],
        "--model",
        "tiny_sio2",
    )
    assert rc == 0, err
    headers = [line for line in out.splitlines() if line.startswith("# ") and not line.startswith("# warning:")]
    assert headers == [
        f"# {files['quartz.cif']} [frame 0] O6Si3  model tiny_sio2",
        f"# {files['CONTCAR']} [frame 0] OSi  model tiny_sio2",
        f"# {files['cell_without_extension']} [frame 0] O6Si3  model tiny_sio2",
    ]
    assert out.count("born_charges [e] (per atom)") == 3 and out.count("dielectric [dimensionless]") == 3
    assert len([line for line in out.splitlines() if line.startswith("     0 ")]) == 3  # atom rows
    # a crystal tensor prints as a 3 x 3 table (columns x y z, one row each), not one flat line
    lines = out.splitlines()
    first = lines.index("dielectric [dimensionless]")
    assert lines[first + 1].split() == ["x", "y", "z"]
    assert [line.split()[0] for line in lines[first + 2:first + 5]] == ["x", "y", "z"]
    assert all(len(line.split()) == 4 and "-0.00000" not in line for line in lines[first + 2:first + 5])


def test_predict_json_schema_one_record_per_frame(capsys, files):
    rc, out, err = run(
        capsys, "predict", files["frames.xyz"], files["quartz.cif"], "--model", "tiny_sio2", "--format", "json"
    )
    assert rc == 0, err
    records = json.loads(out)
    assert isinstance(records, list) and len(records) == 4
    assert [(r["source"], r["index"]) for r in records] == [
        (files["frames.xyz"], 0),
        (files["frames.xyz"], 1),
        (files["frames.xyz"], 2),
        (files["quartz.cif"], 0),
    ]
    assert [r["formula"] for r in records] == ["OSi", "O6Si3", "OSi", "O6Si3"]
    for r, atoms in zip(records, [*files["frames"], files["quartz"]]):
        assert set(r) == RECORD_KEYS and r["model"] == "tiny_sio2"
        assert set(r["tensors"]) == {"born_charges", "dielectric"}
        for t in r["tensors"].values():
            assert set(t) == {"values", "unit", "per_atom"}
        bec, eps = r["tensors"]["born_charges"], r["tensors"]["dielectric"]
        assert (bec["unit"], bec["per_atom"], np.shape(bec["values"])) == ("e", True, (len(atoms), 3, 3))
        assert (eps["unit"], eps["per_atom"], np.shape(eps["values"])) == ("dimensionless", False, (3, 3))
    # the same numbers as the Python API
    api = etgnn_core.api.load_model("tiny_sio2").predict(files["frames"][1])
    np.testing.assert_allclose(records[1]["tensors"]["born_charges"]["values"], api["born_charges"], atol=1e-6)


def test_predict_extxyz_export_reads_back(capsys, files, tmp_path):
    out_file = tmp_path / "pred.xyz"
    rc, out, err = run(
        capsys, "predict", files["frames.xyz"], "--model", "tiny_sio2", "--format", "extxyz", "-o", out_file
    )
    assert rc == 0 and out == "", err
    back = read_extxyz_tensors(out_file)
    assert len(back) == 3
    api = etgnn_core.api.load_model("tiny_sio2").predict(files["frames"])
    for (atoms, tensors), p, ref in zip(back, api, files["frames"]):
        np.testing.assert_allclose(atoms.positions, ref.positions, atol=1e-6)
        assert tensors["born_charges"].shape == (len(ref), 3, 3) and tensors["dielectric"].shape == (3, 3)
        np.testing.assert_allclose(tensors["born_charges"], p["born_charges"], atol=1e-6)
        np.testing.assert_allclose(tensors["dielectric"], p["dielectric"], atol=1e-6)
        assert atoms.info["born_charges_unit"] == "e" and atoms.info["model"] == "tiny_sio2"
    # to standard output too
    rc, out, _ = run(capsys, "predict", files["CONTCAR"], "--model", "tiny_sio2", "--format", "extxyz")
    assert rc == 0 and len(read_extxyz_tensors(out.encode())) == 1


def test_predict_born_file_for_phonopy(capsys, files, tmp_path):
    born = tmp_path / "BORN"
    rc, out, err = run(
        capsys, "predict", files["quartz.cif"], "--model", "tiny_sio2", "--format", "json", "--born", born
    )
    assert rc == 0, err
    rec = json.loads(out)[0]["tensors"]
    atoms = ase.io.read(files["quartz.cif"])
    eps, bec = read_phonopy_born(born, atoms)
    np.testing.assert_allclose(eps, rec["dielectric"]["values"], atol=1e-7)
    np.testing.assert_allclose(bec, rec["born_charges"]["values"], atol=1e-6)
    # several structures: BORN.0, BORN.1
    rc, _, err = run(
        capsys, "predict", files["quartz.cif"], files["CONTCAR"], "--model", "tiny_sio2", "--born", tmp_path / "B"
    )
    assert rc == 0 and (tmp_path / "B.0").exists() and (tmp_path / "B.1").exists()
    # a model without dielectric / Born charges cannot write one
    rc, out, err = run(capsys, "predict", files["quartz.cif"], "--model", "wide_piezo", "--born", born)
    assert rc == 1 and out == ""
    assert (
        err == "etgnn: error: --born needs a model predicting born_charges and dielectric; wide_piezo predicts "
        "piezoelectric\n"
    )


def test_default_model_is_the_first_installed_one_knowing_the_elements(
    capsys, files, pretrained, tmp_path, monkeypatch
):
    rc, out, err = run(capsys, "predict", files["CONTCAR"], "--format", "json")
    assert rc == 0 and json.loads(out)[0]["model"] == "tiny_sio2"  # none in DEFAULT_MODEL_ORDER: by name
    assert "used model tiny_sio2" in err
    rc, out, _ = run(capsys, "predict", files["POSCAR_ZnO"], "--format", "json", "--quiet")
    assert rc == 0 and json.loads(out)[0]["model"] == "wide_piezo"  # tiny_sio2 does not know Zn

    # DEFAULT_MODEL_ORDER comes first
    other = tmp_path / "other"
    make_model_folder(other, cli.DEFAULT_MODEL_ORDER[-1], ["dielectric"])
    monkeypatch.setattr(etgnn_core.registry, "pretrained_dirs", lambda: [pretrained, other])
    rc, out, _ = run(capsys, "predict", files["CONTCAR"], "--format", "json", "-q")
    assert rc == 0 and json.loads(out)[0]["model"] == cli.DEFAULT_MODEL_ORDER[-1]

    monkeypatch.setattr(etgnn_core.registry, "pretrained_dirs", lambda: [])
    rc, out, err = run(capsys, "predict", files["CONTCAR"])
    assert rc == 1 and err.startswith("etgnn: error: no pretrained model found") and err.count("\n") == 1


@pytest.mark.parametrize(
    "args, expected",
    [
        (["notes.txt"], "notes.txt: not a structure file ASE can read"),
        (["empty.cif"], "empty.cif: empty file"),
        (["POSCAR_ZnO", "--model", "tiny_sio2"], "POSCAR_ZnO, frame 0: element not supported by the model: Zn"),
        (["mixed.xyz", "--model", "tiny_sio2"], "mixed.xyz, frame 1: element not supported by the model: Zn"),
        (["quartz.cif", "--max-atoms", "5"], "quartz.cif, frame 0: 9 atoms, more than the limit of 5 atoms"),
        (["missing.cif"], "missing.cif: file not found"),
        (["overlap.xyz", "--model", "tiny_sio2"], "overlap.xyz, frame 0: atoms 0 (Si) and 1 (O) are 0.0866 A apart"),
        (["CONTCAR", "--model", "no_such_model"], "no model named or at 'no_such_model'"),
    ],
)
def test_bad_input_exits_1_with_one_line(capsys, files, args, expected):
    argv = [os.path.join(files["dir"], a) if i == 0 else a for i, a in enumerate(args)]
    rc, out, err = run(capsys, "predict", *argv)
    assert rc == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("etgnn: error: ") and "Traceback" not in err
    assert expected in err


def test_debug_flag_raises_before_or_after_the_command(capsys, files):
    with pytest.raises(StructureError, match="empty file"):
        cli.main(["--debug", "predict", files["empty.cif"]])
    with pytest.raises(StructureError, match="empty file"):
        cli.main(["predict", files["empty.cif"], "--debug"])


def test_console_script_error_is_one_line(files, pretrained):
    """A real process: exit status 1 and one stderr line (the --debug traceback is checked in-process above)."""
    script = Path(sys.executable).with_name("etgnn")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "etgnn_core.cli"]
    env = {**os.environ, "ETGNN_PRETRAINED": str(pretrained)}
    proc = subprocess.run(
        [*cmd, "predict", files["notes.txt"], "--model", str(pretrained / "tiny_sio2")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.splitlines() == [proc.stderr.strip()] and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"etgnn: error: {files['notes.txt']}: not a structure file")


def test_cli_and_api_share_the_atom_limit():
    assert cli.DEFAULT_MAX_ATOMS == etgnn_core.api.DEFAULT_MAX_ATOMS


def test_threads_option_sets_torch_threads(capsys, files, monkeypatch):
    import torch

    calls = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)  # record, leave the session's setting alone
    rc, out, _ = run(capsys, "predict", files["CONTCAR"], "--model", "tiny_sio2", "--threads", "1", "-f", "json")
    assert rc == 0 and calls == [1] and len(json.loads(out)) == 1
