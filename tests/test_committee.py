"""Committees: mean / std shapes and units, calibration, domain warnings, loading, CLI output, app.

Members are tiny random float32 ETGNNs (different seeds) saved as ordinary model folders with a
split.json holding train / val / calib / test ids, as `etgnn train CONFIG --member K` writes them;
the data are synthetic rattled ZnO cells (a few with one Zn replaced by Cd: a rare element).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from ase import Atoms
from ase.build import bulk
from conftest import load_script

from etgnn_core import metrics
from etgnn_core.data import Sample
from etgnn_core.registry import ModelLoadError, list_models, save_model
from etgnn_core.train import TrainConfig
from etgnn_core.train.recipe import sha256_file

ROOT = Path(__file__).resolve().parents[1]
N_SAMPLES, N_RARE = 40, 2
TINY = dict(hidden=16, int_emb=8, out_emb=16, triplet_hidden=8, basis_emb=4, num_blocks=1, num_spherical=3,
            num_radial=3, max_neighbors=8, cutoff=4.0)


def samples(n=N_SAMPLES, rare=N_RARE, seed=0) -> list[Sample]:
    """Rattled wurtzite ZnO with a synthetic BEC and dielectric; the last ``rare`` have a Cd on site 0."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        a = bulk("ZnO", "wurtzite", a=3.25, c=5.2)
        if i >= n - rare:
            a.numbers[0] = 48
        a.rattle(0.05, seed=seed * 1000 + i)
        charge = np.where(a.numbers == 8, -2.1, 2.1)
        z = charge[:, None, None] * np.eye(3) + 0.05 * rng.normal(size=(4, 3, 3))
        z -= z.mean(0)
        eps = 5.0 * np.eye(3) + 0.1 * np.diag(rng.normal(size=3))
        out.append(Sample(atoms=a, targets={"born_charges": z, "dielectric": eps}, id=f"s{i}"))
    return out


def member_net(seed: int, **over):
    from etgnn_core.model.etgnn import ETGNN, ModelConfig
    from etgnn_core.tensors.specs import spec_for

    torch.manual_seed(seed)
    cfg = ModelConfig(targets=[spec_for("born_charges"), spec_for("dielectric")], elements=[8, 30, 48],
                      **{**TINY, **over})
    net = ETGNN(cfg)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(seed)))
        net.species_bias.weight[30, 0] = 2.0  # near the labels, so errors are O(0.1-1), not O(10)
        net.species_bias.weight[8, 0] = -2.0
        net.species_bias.weight[48, 0] = 2.0
        net.species_bias.weight[:, 1] = 5.0  # the dielectric's on-site term: eps near the labels' 5
    return net.eval()


def write_members(run: Path, seeds=(0, 1, 2, 3), n=N_SAMPLES, **over) -> None:
    """member<K>/model folders with a shared calib / test split and per-member train / val draws."""
    ids = [f"s{i}" for i in range(n)]
    calib, test = ids[:12] , ids[12:24]
    rest = ids[24:]
    for k, seed in enumerate(seeds):
        rng = np.random.default_rng(k)
        perm = [rest[i] for i in rng.permutation(len(rest))]
        split = {"train": perm[3:], "val": perm[:3], "calib": calib, "test": test}
        save_model(member_net(seed, **over), run / f"member{k}" / "model", name=f"tiny_m{k}",
                   card={"training": {"seed": seed}}, split=split)


def config(run: Path, name="universal_tiny") -> TrainConfig:
    return TrainConfig.from_dict({"name": name, "targets": ["born_charges", "dielectric"],
                                  "data": {"dataset": "unused"}, "output": str(run),
                                  "description": "tiny test committee"})


@pytest.fixture(scope="module")
def committee_dir(tmp_path_factory) -> Path:
    from etgnn_core.committee import assemble_committee

    run = tmp_path_factory.mktemp("run")
    write_members(run)
    return assemble_committee(config(run), samples=samples(), data_description="synthetic ZnO")


@pytest.fixture(scope="module")
def committee(committee_dir):
    from etgnn_core.api import load_model

    return load_model(str(committee_dir))


# ------------------------------------------------------------------------------------------ core
def test_folder_is_self_describing_and_listed(committee_dir, monkeypatch):
    meta = json.loads((committee_dir / "committee.json").read_text())
    assert meta["kind"] == "committee" and meta["members"] == ["member0", "member1", "member2", "member3"]
    assert set(meta["std_scale"]) == {"born_charges", "dielectric"}
    assert meta["domain"]["element_counts"] == {"Cd": N_RARE, "O": 16, "Zn": 16}  # 16 non-calib/test samples
    card = json.loads((committee_dir / "card.json").read_text())
    for t in ("born_charges", "dielectric"):
        m = card["metrics"][t]
        assert {"mae", "baseline_mae", "coverage", "spearman", "member_mae"} <= set(m)
        assert len(m["member_mae"]) == 4
    assert "committee of 4" in (committee_dir / "card.md").read_text()
    split = json.loads((committee_dir / "split.json").read_text())
    assert len(split["calib"]) == 12 and len(split["test"]) == 12 and len(split["train"]) == 16
    recipe = yaml.safe_load((committee_dir / "train.yaml").read_text())  # what rebuilds it
    assert recipe["kind"] == "committee" and recipe["member_config"]["name"] == "universal_tiny"
    assert recipe["commands"][-1].startswith("etgnn committee configs/universal_tiny.yaml --members 0,1,2,3")
    assert recipe["members"]["member2"]["weights_sha256"] == sha256_file(committee_dir / "member2" / "weights.pt")
    monkeypatch.setenv("ETGNN_PRETRAINED", str(committee_dir.parent))
    infos = {m.name: m for m in list_models()}
    assert infos["universal_tiny"].is_committee and infos["universal_tiny"].elements == [8, 30, 48]


def test_mean_and_std_shapes_units_and_members(committee):
    atoms = bulk("ZnO", "wurtzite", a=3.25, c=5.2)
    atoms.rattle(0.03, seed=5)
    pred = committee.predict(atoms, members=True)
    assert pred.std["born_charges"].shape == pred["born_charges"].shape == (4, 3, 3)
    assert pred.std["dielectric"].shape == (3, 3) and pred.units["born_charges"] == "e"
    assert np.all(pred.std["born_charges"] >= 0) and pred.std["born_charges"].max() > 0
    stack = pred.member_tensors["born_charges"]  # [4 members, 4 atoms, 3, 3]
    np.testing.assert_allclose(pred["born_charges"], stack.mean(0), atol=1e-6)
    scale = committee.std_scale["born_charges"]
    np.testing.assert_allclose(pred.std["born_charges"], scale * stack.std(0, ddof=1), rtol=1e-4, atol=1e-7)
    # the same as running each member alone on its own graph
    from etgnn_core.api import Model

    alone = Model(committee.nets[2], committee.info).predict(atoms)
    np.testing.assert_allclose(stack[2], alone["born_charges"], atol=1e-5)
    # batched prediction = one at a time
    many = committee.predict([atoms, atoms.copy()], batch_size=2)
    np.testing.assert_allclose(many[1].std["dielectric"], pred.std["dielectric"], atol=1e-6)


def test_contributions_are_member_means_and_sum_to_the_tensor(committee):
    atoms = bulk("ZnO", "wurtzite", a=3.25, c=5.2)
    pred = committee.predict(atoms, contributions=True, embeddings=True)
    part = pred.contributions["born_charges"].for_atom(1)
    assert part["residual"] < 1e-4
    np.testing.assert_allclose(part["tensor"], pred["born_charges"][1], atol=1e-5)
    assert pred.embeddings.shape == (4, 16)  # member 0's


def test_identical_members_give_zero_std(tmp_path):
    from etgnn_core.api import load_model
    from etgnn_core.committee import assemble_committee

    write_members(tmp_path, seeds=(3, 3, 3))
    folder = assemble_committee(config(tmp_path, "same"), samples=samples())
    pred = load_model(str(folder)).predict(bulk("ZnO", "wurtzite", a=3.25, c=5.2))
    assert np.abs(pred.std["born_charges"]).max() < 1e-6 and np.abs(pred.std["dielectric"]).max() < 1e-6


def test_calibration_scale_moves_coverage_in_the_right_direction(committee, committee_dir):
    from etgnn_core.committee import calibrate

    calib = [samples()[i] for i in range(12)]
    fitted = dict(committee.std_scale)
    try:
        scale, spreads, _ = calibrate(committee, calib)
        assert scale == pytest.approx(fitted, rel=1e-4)  # what the assembly stored
        for name in ("born_charges", "dielectric"):
            preds = committee.predict([s.atoms for s in calib])  # std_scale is 1 after calibrate
            err = metrics.structure_errors([p[name] for p in preds], [s.targets[name] for s in calib])
            raw = metrics.structure_spreads([p.std[name] for p in preds])
            assert metrics.coverage(err, raw * scale[name]) >= 0.9  # conformal: at least the target on calib
            assert metrics.coverage(err, raw * scale[name] * 3) >= metrics.coverage(err, raw * scale[name])
            assert metrics.coverage(err, raw * scale[name] / 3) < metrics.coverage(err, raw * scale[name])
    finally:
        committee.std_scale = fitted


# -------------------------------------------------------------------------------------- warnings
def test_no_warnings_for_a_training_like_crystal(committee):
    atoms = samples()[30].atoms  # a training sample
    assert committee.predict(atoms).warnings == []


def test_rare_element_warning(committee):
    atoms = bulk("ZnO", "wurtzite", a=3.25, c=5.2)
    atoms.numbers[[0, 1]] = 48
    w = committee.predict(atoms).warnings
    assert any(x.startswith(f"Cd appears in only {N_RARE} training crystals") for x in w), w


def test_molecule_warning(committee):
    mol = Atoms("ZnO", positions=[[0, 0, 0], [0, 0, 1.8]])
    w = committee.predict(mol).warnings
    assert any("molecule" in x and "trained on crystals" in x for x in w), w


def test_far_embedding_and_spread_warnings(committee):
    atoms = bulk("ZnO", "wurtzite", a=3.25, c=5.2)
    atoms.positions[1] = atoms.positions[0] + [0.9, 0.0, 0.0]  # squeezed far below any training distance
    w = committee.predict(atoms).warnings
    assert any("look unlike any training atom" in x for x in w), w
    old = dict(committee.domain["spread_p99"])
    try:
        committee.domain["spread_p99"] = {k: v * 1e-3 for k, v in old.items()}
        w = committee.predict(bulk("ZnO", "wurtzite", a=3.25, c=5.2)).warnings
        assert any("disagree on born_charges far more" in x for x in w), w
    finally:
        committee.domain["spread_p99"] = old


# --------------------------------------------------------------------------------- loading rules
def test_members_must_share_cutoff(tmp_path):
    from etgnn_core.committee import assemble_committee

    write_members(tmp_path, seeds=(0, 1))
    save_model(member_net(5, cutoff=3.5), tmp_path / "member2" / "model", name="odd",
               split=json.loads((tmp_path / "member0" / "model" / "split.json").read_text()))
    with pytest.raises(ModelLoadError, match="member2: cutoff 3.5 differs"):
        assemble_committee(config(tmp_path), samples=samples())


def test_members_must_share_calib_and_test(tmp_path):
    from etgnn_core.committee import assemble_committee

    write_members(tmp_path, seeds=(0, 1))
    f = tmp_path / "member1" / "model" / "split.json"
    split = json.loads(f.read_text())
    split["test"] = split["test"][1:]
    f.write_text(json.dumps(split))
    with pytest.raises(ModelLoadError, match="calib/test ids differ"):
        assemble_committee(config(tmp_path), samples=samples())


def test_loading_is_strict(committee_dir, tmp_path):
    from etgnn_core.api import load_model
    from etgnn_core.registry import load_model_folder

    bad = tmp_path / "bad"
    shutil.copytree(committee_dir, bad)
    torch.save({"x": torch.zeros(1)}, bad / "member1" / "weights.pt")
    with pytest.raises(ModelLoadError, match="member1.*weights do not match"):
        load_model(str(bad))
    shutil.copytree(committee_dir / "member0", bad / "member1", dirs_exist_ok=True)
    np.save(bad / "domain.npz", np.array([object()], dtype=object), allow_pickle=True)
    os.replace(bad / "domain.npz.npy", bad / "domain.npz")
    with pytest.raises(ModelLoadError, match="domain.npz: cannot be read as plain arrays"):
        load_model(str(bad))
    with pytest.raises(ModelLoadError, match="is a committee"):
        load_model_folder(str(committee_dir))


def test_train_only_set_counts_in_the_domain_not_in_the_baselines(tmp_path):
    """Structures of a data.train_only set: in the domain's element counts (the members learned them),
    not in the training data the test baselines are fitted on, and in a split part of their own."""
    from etgnn_core import keys
    from etgnn_core.committee import assemble_committee

    run = tmp_path / "run"
    write_members(run, seeds=(0, 1))
    extra = samples(6, rare=6, seed=5)  # Cd on site 0, labels far from the main set's
    for i, s in enumerate(extra):
        s.id, s.info[keys.TRAIN_ONLY] = f"x{i}", True
        s.targets["dielectric"] = 9.0 * np.eye(3)
    cards = {}
    for label, data in (("plain", samples()), ("extra", samples() + extra)):
        folder = assemble_committee(config(run), samples=data, output=tmp_path / label, data_description="synthetic")
        cards[label] = [json.loads((folder / f).read_text()) for f in ("card.json", "committee.json")]
    (plain, plain_meta), (more, more_meta) = cards["plain"], cards["extra"]
    assert more["split"]["train_only"] == 6 and more["split"]["train"] == plain["split"]["train"]
    assert "train_only" not in plain["split"]
    assert more_meta["domain"]["element_counts"]["Cd"] == plain_meta["domain"]["element_counts"]["Cd"] + 6
    base = lambda card: card["metrics"]["dielectric"]["baseline_mae"]  # noqa: E731
    assert base(more) == pytest.approx(base(plain))
    split = json.loads((tmp_path / "extra" / "split.json").read_text())
    assert split["train_only"] == [f"x{i}" for i in range(6)]


def test_single_model_prediction_has_no_std(committee):
    from etgnn_core.api import Model

    pred = Model(committee.nets[0], committee.info).predict(bulk("ZnO", "wurtzite", a=3.25, c=5.2))
    assert pred.std == {} and pred.warnings == []
    rec = pred.record()
    assert "std" not in rec["tensors"]["born_charges"] and rec["warnings"] == []


# ---------------------------------------------------------------------------------------- outputs
def test_cli_json_and_table_with_std_and_warnings(committee_dir, tmp_path, capsys):
    from etgnn_core.cli import main

    atoms = bulk("ZnO", "wurtzite", a=3.25, c=5.2)
    atoms.numbers[0] = 48
    path = tmp_path / "cdzno.cif"
    atoms.write(path)
    assert main(["predict", str(path), "--model", str(committee_dir), "--format", "json", "-q"]) == 0
    rec = json.loads(capsys.readouterr().out)[0]
    t = rec["tensors"]["born_charges"]
    assert np.shape(t["std"]) == np.shape(t["values"]) == (4, 3, 3)
    assert any("Cd appears" in w for w in rec["warnings"])
    assert main(["predict", str(path), "--model", str(committee_dir), "-q"]) == 0
    out = capsys.readouterr().out
    assert "±" in out and "warning: Cd appears" in out
    lines = out.splitlines()
    row = lines[lines.index(next(x for x in lines if x.startswith("born_charges"))) + 1]  # atom 0, Cd
    assert row.split()[:2] == ["0", "Cd"] and row.count("|") == 2
    cells = [c.split("±") for c in re.findall(r"-?\d+\.\d+ ± \d+\.\d+", row)]
    assert len(cells) == 9  # Z_xx ... Z_zz of the atom, each value ± std to the std's precision
    for (x, d), want, sd in zip(cells, np.ravel(t["values"][0]), np.ravel(t["std"][0])):
        half = 0.5 * 10.0 ** -len(x.strip().split(".")[1]) + 1e-9  # rounded to the printed decimal
        assert abs(float(x) - want) <= half and abs(float(d) - sd) <= half


def test_cli_committee_command_assembles(tmp_path, monkeypatch, capsys):
    import etgnn_core.train.trainer as trainer
    from etgnn_core.cli import main

    write_members(tmp_path / "run", seeds=(0, 1))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps(config(tmp_path / "run", "universal_cli").to_dict()))
    monkeypatch.setattr(trainer, "load_samples", lambda c: (samples(), "synthetic"))
    pretrained = tmp_path / "pretrained"
    pretrained.mkdir()
    assert main(["committee", str(cfg), "--members", "0,1", "--install", "--install-dir", str(pretrained)]) == 0
    out = capsys.readouterr().out
    assert "coverage" in out and "born_charges" in out
    assert (pretrained / "universal_cli" / "committee.json").exists()
    assert (tmp_path / "run" / "committee" / "member1" / "weights.pt").exists()
    # installing again keeps the previous committee aside (beside the assembled folder), never deletes it
    assert main(["committee", str(cfg), "--members", "0,1", "--install", "--install-dir", str(pretrained)]) == 0
    kept = list((tmp_path / "run").glob("replaced-universal_cli-*"))
    assert len(kept) == 1 and (kept[0] / "committee.json").exists()
    assert (pretrained / "universal_cli" / "committee.json").exists()
    assert not [p for p in pretrained.iterdir() if p.name.startswith(".")]  # no staging folder left
    capsys.readouterr()
    monkeypatch.setenv("ETGNN_PRETRAINED", str(pretrained))
    assert main(["models"]) == 0
    assert "committee of 2 members" in capsys.readouterr().out
    assert main(["committee", str(cfg), "--members", "0,x"]) == 1
    assert "--members must be comma-separated integers" in capsys.readouterr().err


# -------------------------------------------------------------------------------------------- app
def test_app_predict_runs_universal_committees_with_std_and_warnings(committee_dir, monkeypatch):
    from streamlit.testing.v1 import AppTest

    if str(ROOT) not in sys.path:  # `from app.models import ...` as the pages do
        sys.path.insert(0, str(ROOT))
    monkeypatch.setenv("ETGNN_PRETRAINED", str(committee_dir.parent))
    monkeypatch.delenv("ETGNN_DEFAULT_MODEL", raising=False)
    at = AppTest.from_file(str(ROOT / "app" / "streamlit_app.py"), default_timeout=180)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    # every universal_* committee runs by default: the test's, and the shipped one when the repository has it
    chosen = [Path(p).name for p in at.multiselect(key="predict_models").value]
    shipped = {p.name for p in (ROOT / "pretrained").glob("universal_*")}
    assert committee_dir.name in chosen and set(chosen) - {committee_dir.name} <= shipped
    if at.selectbox(key="structure_demo").value != "POSCAR_ZnO_wurtzite":  # the test committee knows Zn, O, Cd
        at.selectbox(key="structure_demo").set_value("POSCAR_ZnO_wurtzite").run()
    assert not at.error, [e.value for e in at.error]
    cells = " ".join(str(v) for d in at.dataframe for v in d.value.to_numpy().ravel())
    assert "±" in cells
    assert any("error bars ± std" in json.loads(p.proto.spec)["layout"]["title"]["text"]
               for p in at.get("plotly_chart"))
    assert "committee of 4 models" in " ".join(c.value for c in at.caption)
    # a structure with the rare element: the warning is at the top, in words
    atoms = bulk("ZnO", "wurtzite", a=3.25, c=5.2)
    atoms.numbers[0] = 48
    import io

    buf = io.StringIO()
    atoms.write(buf, format="extxyz")
    at.radio(key="structure_source").set_value("Upload a file").run()
    at.file_uploader(key="structure_upload").set_value(("cd.xyz", buf.getvalue().encode(), "text/plain")).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Cd appears in only 2 training crystals" in w.value for w in at.warning), [w.value for w in at.warning]
    at.switch_page("views/inspector.py").run()
    assert not at.exception and not at.error
    assert any("committee of 4 models" in i.value for i in at.info)
    at.switch_page("views/learn.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert any("edge coefficients t_kj below are the members' mean" in i.value for i in at.info)


# ---------------------------------------------------------------------------------------- metrics
def test_voigt_moduli_of_an_isotropic_tensor():
    lam, mu = 50.0, 30.0
    d = np.eye(3)
    c = lam * np.einsum("ij,kl->ijkl", d, d) + mu * (np.einsum("ik,jl->ijkl", d, d) + np.einsum("il,jk->ijkl", d, d))
    k, g = metrics.voigt_moduli(c)
    assert k == pytest.approx(lam + 2 * mu / 3) and g == pytest.approx(mu)


def test_piezo_metrics_use_sign_certain_frames_for_components_and_all_for_norms():
    rng = np.random.default_rng(0)
    labels = [rng.normal(size=(3, 3, 3)) for _ in range(4)]
    preds = [y.copy() for y in labels]
    preds[0] = -labels[0]  # a sign flip on the ambiguous frame: components differ, the norm does not
    infos = [{"rotation_ambiguous": True}, {}, {"rotation_ambiguous": False}, {}]
    base = metrics.Baselines("piezoelectric", False, labels)
    m = metrics.tensor_metrics("piezoelectric", False, preds, labels, [np.zeros(2)] * 4, base, infos=infos)
    assert m["mae"] == 0.0 and m["n"] == 3 and m["n_all"] == 4 and m["norm_mae"] == pytest.approx(0.0)
    assert m["baseline_mae"] == pytest.approx(np.mean(np.abs(np.stack(labels[1:]))))
    m_all = metrics.tensor_metrics("piezoelectric", False, preds, labels, [np.zeros(2)] * 4, base)
    assert m_all["mae"] > 0


def test_species_mean_baseline_and_spearman():
    z = [np.array([8, 30]), np.array([8, 8])]
    y = [np.array([[-2.0], [2.0]]), np.array([[-1.0], [-3.0]])]
    base = metrics.Baselines("born_charges", True, y, z)
    np.testing.assert_allclose(base.predict(np.array([30, 8]), (2, 1)), [[2.0], [-2.0]])
    assert metrics.spearman(np.arange(5.0), np.arange(5.0) ** 2) == pytest.approx(1.0)
    assert metrics.spearman(np.arange(5.0), -np.arange(5.0)) == pytest.approx(-1.0)
    assert metrics.fit_scale(np.array([1.0, 2.0]), np.array([0.0, 0.0])) == 1.0  # identical members


def test_fit_scale_is_the_conformal_quantile():
    # ratios MAE / (2 std) = 1..n: the ceil((n + 1) 0.9)-th smallest, the largest when n is small
    spreads = np.full(19, 0.5)
    assert metrics.fit_scale(np.arange(1.0, 20.0), spreads, 0.9) == 18.0  # ceil(20 x 0.9) = 18
    assert metrics.fit_scale(np.arange(1.0, 6.0), np.full(5, 0.5), 0.9) == 5.0  # ceil(6 x 0.9) = 6 > 5
    rng = np.random.default_rng(0)  # on fresh draws from the same law it covers >= 90 % on average
    cover = []
    for _ in range(400):
        err, std = rng.exponential(size=12), rng.uniform(0.5, 1.5, size=12)
        c = metrics.fit_scale(err, std, 0.9)
        new_err, new_std = rng.exponential(size=200), rng.uniform(0.5, 1.5, size=200)
        cover.append(metrics.coverage(new_err, c * new_std))
    assert np.mean(cover) >= 0.9


def test_accuracy_benchmark_skips_models_without_data(tmp_path, monkeypatch, capsys):
    accuracy = load_script("benchmarks/accuracy.py")
    monkeypatch.setenv("ETGNN_DATA", str(tmp_path))  # an empty data root: nothing to evaluate on
    assert accuracy.main(["--models", "piezo_zno", "--markdown"]) == 0
    out = capsys.readouterr().out
    assert "piezo_zno: skipped, data not available" in out
    assert accuracy.main(["--models", "no_such_model"]) == 1
    assert accuracy.main(["--models", "piezo_zno", "--cards"]) == 0
    assert "piezo_zno  piezoelectric" in capsys.readouterr().out


def _compare_members():
    return load_script("benchmarks/compare_members.py")


def test_compare_members_scores_candidates_on_calib_only(tmp_path):
    """benchmarks/compare_members.py: the members' mean on the 12 calibration crystals (never test), the
    transition-metal part apart; a malformed or missing member set is named."""
    cm = _compare_members()
    write_members(tmp_path)
    folders = [tmp_path / f"member{k}" / "model" for k in range(4)]
    data = samples()
    for s in data[12:24]:  # the test crystals (write_members): labels no model is near
        s.targets = {k: v + 100.0 for k, v in s.targets.items()}
    parts = cm.calib_metrics(folders, data, "tiny", by_tm=True)
    assert set(parts) == {"all", "with a transition metal"}  # every crystal holds Zn: no "without" part
    n, res = parts["all"]
    assert n == 12 and parts["with a transition metal"][0] == 12
    for r in res.values():  # |mean of members - label| <= mean of |member - label|, equal only by chance
        assert r["mae"] < np.mean(r["member_mae"]) and 0 < r["baseline_mae"] < 10 and r["mae"] < 10
    # --split-from: another folder's calib part (here its calib = these members' test: labels shifted by 100)
    other = tmp_path / "other"
    other.mkdir()
    split = json.loads((folders[0] / "split.json").read_text())
    split["calib"], split["test"] = split["test"], split["calib"]
    (other / "split.json").write_text(json.dumps(split))
    n, res = cm.calib_metrics(folders, data, "tiny", split_from=other)["all"]
    assert n == 12 and all(r["mae"] > 50 for r in res.values())
    assert cm.has_transition_metal(Sample(atoms=bulk("Fe"), targets={}))
    assert not cm.has_transition_metal(Sample(atoms=bulk("Si"), targets={}))
    with pytest.raises(SystemExit, match="LABEL=FOLDER"):
        cm.parse_sets(["no-equals-sign"])
    with pytest.raises(SystemExit, match="nowhere"):
        cm.parse_sets([f"x={folders[0]},{tmp_path / 'nowhere'}"])
    assert cm.parse_sets([f"x={folders[0]},{folders[1]}"]) == {"x": folders[:2]}


def test_compare_members_bootstrap_pairs_the_sets_on_the_same_draws(tmp_path, capsys):
    """--bootstrap: intervals of each set's ratio and of its difference to the first, on shared draws."""
    cm = _compare_members()
    write_members(tmp_path)
    folders = [tmp_path / f"member{k}" / "model" for k in range(4)]
    data = samples()
    pair, four = (cm.calib_predictions(f, data, "x") for f in (folders[:2], folders))
    ratios = cm.bootstrap_ratios({"pair": pair, "same": pair, "four": four}, reps=40, seed=1)
    for key, r in ratios["pair"].items():
        assert r.shape == (40,) and np.ptp(r) > 0  # the draws differ
        np.testing.assert_array_equal(r, ratios["same"][key])  # one set scored twice: the same draws, equal
        assert not np.array_equal(r, ratios["four"][key])
    cm.print_bootstrap(ratios)
    out = capsys.readouterr().out
    assert "| same | born_charges ratio |" in out and "+0.000 - +0.000 | 0% |" in out
    other = (pair[0], pair[1][:5], pair[2], pair[3][:5])  # as if scored on another calibration split
    with pytest.raises(SystemExit, match="split-from"):  # such sets cannot be paired
        cm.bootstrap_ratios({"pair": pair, "other": other}, reps=2)


def test_compare_members_folds_pools_each_fold_model_on_its_own_fold(tmp_path):
    """--folds: fold model k is scored on its own calib part (fold k); the folds are pooled, an overlap is named."""
    import shutil

    cm = _compare_members()
    write_members(tmp_path)
    data = samples()
    ids = [str(s.id) for s in data]
    rest = ids[:12] + ids[24:]  # all but test
    folds = []
    for k in range(3):
        folder = tmp_path / f"fold{k}" / "model"
        shutil.copytree(tmp_path / f"member{k}" / "model", folder)
        split = json.loads((folder / "split.json").read_text())
        split["calib"] = rest[k::3]
        split["train"] = [i for i in rest if i not in split["calib"]]
        split["val"] = []
        (folder / "split.json").write_text(json.dumps(split))
        folds.append(folder)
    committee, calib, train, preds = cm.pooled_fold_predictions(folds, data, "cv")
    assert sorted(str(s.id) for s in calib) == sorted(rest) and len(preds) == len(rest)
    alone = cm.calib_predictions([folds[1]], data, "one")  # the pooled predictions are each fold model's own
    k = [str(s.id) for s in calib].index(rest[1])
    np.testing.assert_allclose(preds[k]["dielectric"], alone[3][0]["dielectric"])
    res = cm.calib_metrics(folds, data, "cv", run=(committee, calib, train, preds))["all"]
    assert res[0] == len(rest)
    with pytest.raises(SystemExit, match="overlap"):
        cm.pooled_fold_predictions([folds[0], folds[0]], data, "twice")
