"""Known target parts (Sample.offsets): read from a table, batched, added before the loss and the score."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TINY, load_script
from test_train import zno_samples

from etgnn_core.data import DataError
from etgnn_core.data.offsets import attach_offsets, multiple_key, read_offsets, table_meta
from etgnn_core.model.etgnn import ETGNN, ModelConfig
from etgnn_core.tensors.specs import spec_for
from etgnn_core.train.batching import collate_labelled, label_graph
from etgnn_core.train.module import target_errors


def test_table_is_read_and_structures_without_an_offset_are_left_out(tmp_path):
    s = zno_samples(4)
    np.savez(tmp_path / "shard_0.npz", ids=np.array(["zno0", "zno2"]), e_ion=np.ones((2, 3, 3)))
    np.savez(tmp_path / "shard_1.npz", ids=np.array(["zno3"]), e_ion=2 * np.ones((1, 3, 3)))
    table = read_offsets(tmp_path)
    kept, left = attach_offsets(s, "dielectric", table)
    assert [x.id for x in kept] == ["zno0", "zno2", "zno3"] and left == 1
    assert kept[2].offsets["dielectric"][0, 0] == 2.0
    assert table_meta(tmp_path) == {} and kept[0].offset_scales == {"dielectric": 1.0}
    np.savez(tmp_path / "half.npz", ids=np.array(["zno0"]), values=np.ones((1, 3, 3)), meta='{"scale": 0.5}')
    assert table_meta(tmp_path / "half.npz") == {"scale": 0.5}
    assert attach_offsets(zno_samples(1), "dielectric", read_offsets(tmp_path / "half.npz"), 0.5)[0][0] \
        .offset_scales == {"dielectric": 0.5}
    np.savez(tmp_path / "bad.npz", ids=np.array(["zno1"]), values=np.ones((1, 2)))
    with pytest.raises(DataError, match="shape"):
        attach_offsets(zno_samples(4), "dielectric", read_offsets(tmp_path / "bad.npz"))
    with pytest.raises(DataError, match="no offset table"):
        read_offsets(tmp_path / "missing.npz")


def test_loss_compares_prediction_plus_offset_with_the_label():
    torch.manual_seed(0)
    specs = [spec_for("born_charges"), spec_for("dielectric")]
    model = ETGNN(ModelConfig(targets=specs, **{**TINY, "max_neighbors": 8})).eval()
    samples = zno_samples(3)
    plain = collate_labelled([label_graph(x, specs, model.config.cutoff, 8) for x in samples])
    off = np.diag([1.0, 2.0, 3.0])
    samples[1].offsets["dielectric"] = off
    batch = collate_labelled([label_graph(x, specs, model.config.cutoff, 8) for x in samples])
    assert batch.offsets["dielectric"].shape == (3, 3, 3)
    assert torch.equal(batch.offsets["dielectric"][0], torch.zeros(3, 3))  # no offset: zeros
    with torch.no_grad():
        pred = model(batch.graph).tensors["dielectric"].structure
        got, n = target_errors(model, batch)["dielectric"]
        want = (pred + batch.offsets["dielectric"] - batch.targets["dielectric"]).abs().sum()
        without, _ = target_errors(model, plain)["dielectric"]
    assert torch.allclose(got, want) and int(n) == 27
    assert not torch.allclose(got, without)  # the offset did enter


def test_training_with_offsets_writes_known_parts_and_predictions_add_them(tmp_path, monkeypatch):
    import json

    from test_train import tiny_config

    from etgnn_core.api import load_model
    from etgnn_core.spectra import piezo
    from etgnn_core.train import train

    samples = zno_samples(24)
    table = tmp_path / "eps_part.npz"
    np.savez(table, ids=np.array([s.id for s in samples]), values=np.stack([np.eye(3)] * 24),
             meta=json.dumps({"kind": "ionic_piezo", "bec_model": "some_bec", "potential": "sevenn"}))
    samples, _ = attach_offsets(samples, "dielectric", read_offsets(table))
    cfg = tiny_config(tmp_path, data={"dataset": "unused", "offsets": {"dielectric": str(table)}})
    res = train(cfg, samples=samples, progress_bar=False)
    parts = json.loads((res.model_dir / "known_parts.json").read_text())
    assert parts == {"dielectric": {"kind": "ionic_piezo", "bec_model": "some_bec", "potential": "sevenn"}}

    # loading attaches the part; every prediction adds it (here a stand-in for the SevenNet computation)
    monkeypatch.setattr(piezo.IonicPiezoTerm, "__call__", lambda self, atoms: 10.0 * np.eye(3))
    model = load_model(str(res.model_dir), device="cpu")
    assert set(model.known_parts) == {"dielectric"}
    with_part = model.predict(samples[0].atoms)["dielectric"]
    model.known_parts = {}
    np.testing.assert_allclose(with_part - model.predict(samples[0].atoms)["dielectric"], 10.0 * np.eye(3),
                               atol=1e-9)


@pytest.mark.slow
def test_ionic_piezo_term_of_wurtzite_aln_has_its_symmetry_and_a_plausible_size():
    pytest.importorskip("sevenn")
    from ase.build import bulk

    from etgnn_core.spectra.piezo import IonicPiezoTerm

    e = IonicPiezoTerm("universal_dielectric_bec", "sevenn", device="cpu")(bulk("AlN", "wurtzite", a=3.11, c=4.98))
    # e33 (C/m^2; its sign follows the cell's polarity): DFT ionic part ~1.9, total 1.46 with the clamped ion
    assert 0.5 < abs(e[2, 2, 2]) < 4.0
    assert e[2, 0, 0] * e[2, 2, 2] < 0 and abs(e[2, 0, 0] - e[2, 1, 1]) < 0.05  # e31 = e32, opposite to e33 (6mm)
    assert abs(e[0, 0, 0]) < 0.02 and abs(e[2, 0, 1]) < 0.02  # zero by symmetry


def test_scoring_takes_a_known_part_from_the_samples_and_ignores_offsets_a_model_did_not_train_with(tmp_path):
    from conftest import save_tiny_model

    from etgnn_core.api import load_model
    from etgnn_core.committee import predict_with_offsets

    model = load_model(str(save_tiny_model(tmp_path, "tiny", ["dielectric"], elements=[8, 30])), device="cpu")
    samples = zno_samples(3)
    for s in samples:
        s.offsets["dielectric"] = 3.0 * np.eye(3)
    plain = [p["dielectric"] for p in model.predict([s.atoms for s in samples])]
    got = [p["dielectric"] for p in predict_with_offsets(model, samples)]
    np.testing.assert_allclose(got, plain)  # trained on whole tensors: no offset is added

    def never(atoms):
        raise AssertionError("the stored offset should have been used")

    model.known_parts = {"dielectric": never}
    got = [p["dielectric"] for p in predict_with_offsets(model, samples)]
    np.testing.assert_allclose(np.array(got) - np.array(plain), np.stack([3.0 * np.eye(3)] * 3), atol=1e-9)
    assert model.known_parts == {"dielectric": never}  # restored afterwards

    class Half:  # a part trained beside a table of half the term: the stored full-size offsets do not fit it
        key = 0.5  # as IonicPiezoTerm.key: the multiple it adds

        def __call__(self, atoms):
            return 7.0 * np.eye(3)

    model.known_parts = {"dielectric": Half()}
    got = [p["dielectric"] for p in predict_with_offsets(model, samples)]
    np.testing.assert_allclose(np.array(got) - np.array(plain), np.stack([7.0 * np.eye(3)] * 3), atol=1e-9)
    for s in samples:
        s.offset_scales["dielectric"] = 0.5  # as attach_offsets records a table written with --scale 0.5
    got = [p["dielectric"] for p in predict_with_offsets(model, samples)]
    np.testing.assert_allclose(np.array(got) - np.array(plain), np.stack([3.0 * np.eye(3)] * 3), atol=1e-9)


def test_ionic_term_refuses_a_molecule_and_a_large_cell_before_any_force_call():
    from ase import Atoms
    from ase.build import bulk

    from etgnn_core.spectra.piezo import IonicPiezoTerm
    from etgnn_core.structure import StructureError

    term = IonicPiezoTerm("no_such_model", "sevenn")  # never loaded: the checks come first
    with pytest.raises(StructureError, match="periodic in all three directions"):
        term(Atoms("CO", positions=[[0, 0, 0], [0, 0, 1.1]]))
    with pytest.raises(StructureError, match="at most 48 atoms"):
        term(bulk("Si", "diamond", a=5.43).repeat((3, 3, 3)))


def test_a_known_part_warns_when_the_born_charge_model_changed_since_training(tmp_path):
    """universal_piezo's ionic term uses another model's Born charges: a changed model is named, not hidden."""
    from conftest import save_tiny_model

    from etgnn_core.api import load_model
    from etgnn_core.registry import weights_fingerprint
    from etgnn_core.spectra.piezo import IonicPiezoTerm

    bec = save_tiny_model(tmp_path, "bec", ["born_charges"], elements=[8, 30])
    trained_with = weights_fingerprint(bec)
    assert IonicPiezoTerm(str(bec), "sevenn", bec_sha256=trained_with).check_bec_model(bec) == ""
    assert IonicPiezoTerm(str(bec), "sevenn").check_bec_model(bec) == ""  # an old table: nothing to compare
    other = save_tiny_model(tmp_path / "retrained", "bec", ["born_charges"], elements=[8, 30], seed=1)
    assert weights_fingerprint(other) != trained_with
    term = IonicPiezoTerm(str(bec), "sevenn", bec_sha256=trained_with)
    assert "changed since this model was trained" in term.check_bec_model(other)

    # the warning reaches every prediction that adds the part (term stands in for the SevenNet computation)
    class Part:
        warning = term.warning

        def __call__(self, atoms):
            return np.zeros((3, 3))

    model = load_model(str(save_tiny_model(tmp_path, "tiny", ["dielectric"], elements=[8, 30])), device="cpu")
    model.known_parts = {"dielectric": Part()}
    pred = model.predict(zno_samples(1)[0].atoms)
    assert pred.warnings.count(term.warning) == 1


def test_relaxation_tables_round_trip_crystals_of_different_sizes(tmp_path):
    """benchmarks/piezo_ionic.py stores u [n_atoms, 3, 3, 3] of crystals of any size, so that e_ion can be
    recomputed for a new Born-charge model without phonons."""
    piezo_ionic = load_script("benchmarks/piezo_ionic.py")
    rng = np.random.default_rng(0)
    relax = {"a": rng.normal(size=(2, 3, 3, 3)), "b": rng.normal(size=(5, 3, 3, 3)), "c": rng.normal(size=(1, 3, 3, 3))}
    np.savez(tmp_path / "shard_0_of_2.npz", ids=np.array(["a", "b"]), **piezo_ionic.ragged([relax["a"], relax["b"]]))
    np.savez(tmp_path / "shard_1_of_2.npz", ids=np.array(["c"]), **piezo_ionic.ragged([relax["c"]]))
    np.savez(tmp_path / "shard_old.npz", ids=np.array(["d"]), e_ion=np.zeros((1, 3, 3, 3)))  # no u: skipped
    got = piezo_ionic.read_relaxations(tmp_path)
    assert sorted(got) == ["a", "b", "c"]
    for k, u in relax.items():
        np.testing.assert_array_equal(got[k], u)


def test_ionic_table_meta_fingerprints_a_candidate_as_it_will_be_installed(tmp_path):
    """--bec-model FOLDER: a committee folder copied elsewhere (a candidate) fingerprints like the
    installed one, so a piezo model trained on its table will not warn once the candidate is installed;
    changed weights change the fingerprint."""
    import json
    import shutil

    piezo_ionic = load_script("benchmarks/piezo_ionic.py")
    copy = tmp_path / "committee"
    shutil.copytree(piezo_ionic.ROOT / "pretrained" / piezo_ionic.BEC_MODEL, copy)
    installed = json.loads(piezo_ionic.meta())
    candidate = json.loads(piezo_ionic.meta(str(copy)))
    assert candidate == installed and candidate["bec_model"] == piezo_ionic.BEC_MODEL
    with open(copy / "member1" / "weights.pt", "ab") as fh:
        fh.write(b"changed")
    assert json.loads(piezo_ionic.meta(str(copy)))["bec_model_sha256"] != installed["bec_model_sha256"]


def test_a_scaled_ionic_table_is_recorded_and_predictions_add_the_same_multiple(tmp_path, monkeypatch):
    """--scale S writes S x e_ion and says so in meta; a model folder carrying that meta adds S x e_ion,
    and an old table (no scale) adds e_ion itself."""
    import json

    from ase.build import bulk

    from etgnn_core.spectra import piezo

    piezo_ionic = load_script("benchmarks/piezo_ionic.py")
    assert "scale" not in json.loads(piezo_ionic.meta())
    spec = json.loads(piezo_ionic.meta(scale=0.5))
    assert spec["scale"] == 0.5
    rng = np.random.default_rng(1)
    z, u = rng.normal(size=(4, 3, 3)), rng.normal(size=(4, 3, 3, 3))
    monkeypatch.setattr(piezo.IonicPiezoTerm, "parts", lambda self, atoms: (z, u))
    atoms = bulk("AlN", "wurtzite", a=3.11, c=4.98)
    full = piezo.ionic_piezo(z, u, atoms.get_volume())
    for meta, factor in ((spec, 0.5), ({k: v for k, v in spec.items() if k != "scale"}, 1.0)):
        (tmp_path / piezo.KNOWN_PARTS_FILE).write_text(json.dumps({"piezoelectric": meta}))
        term = piezo.load_known_parts(tmp_path)["piezoelectric"]
        np.testing.assert_allclose(term(atoms), factor * full)
        assert ("0.5 x" in term.describe()) == (factor == 0.5)


def test_a_multiple_per_point_group_follows_the_crystal_and_keeps_tables_apart(tmp_path, monkeypatch):
    """known_parts.json with point_group_scales: the crystal's point group picks the multiple (a rotated
    crystal the same one, another point group "default"), and its key differs from a plain table's."""
    import json

    from ase.build import bulk

    from etgnn_core.spectra import piezo

    rng = np.random.default_rng(2)
    monkeypatch.setattr(piezo.IonicPiezoTerm, "parts", lambda self, atoms: (z, u))
    spec = {"kind": "ionic_piezo", "bec_model": "b", "potential": "sevenn",
            "point_group_scales": {"6mm": -0.3, "default": 0.5}}
    (tmp_path / piezo.KNOWN_PARTS_FILE).write_text(json.dumps({"piezoelectric": spec}))
    term = piezo.load_known_parts(tmp_path)["piezoelectric"]
    wurtzite = bulk("AlN", "wurtzite", a=3.11, c=4.98)
    turned = wurtzite.copy()
    turned.rotate(37, "x", rotate_cell=True)
    rocksalt = bulk("NaCl", "rocksalt", a=5.6)
    assert piezo.point_group(wurtzite) == piezo.point_group(turned) == "6mm"
    assert piezo.point_group(rocksalt) == "m-3m"
    for atoms, factor in ((wurtzite, -0.3), (turned, -0.3), (rocksalt, 0.5)):
        z, u = rng.normal(size=(len(atoms), 3, 3)), rng.normal(size=(len(atoms), 3, 3, 3))
        np.testing.assert_allclose(term(atoms), factor * piezo.ionic_piezo(z, u, atoms.get_volume()))
    assert "per point group" in term.describe()
    assert "-0.30 x (point group 6mm" in term.describe(turned)  # what this crystal gets, and why
    assert "0.50 x (point group m-3m" in term.describe(rocksalt)
    assert term.key != 1.0 and term.key == multiple_key(1.0, {"default": 0.5, "6mm": -0.3})
    assert term.key != multiple_key(1.0, {"6mm": -0.3, "default": 0.6})
    assert piezo.IonicPiezoTerm("b", "sevenn", scale=0.5).key == 0.5  # plain tables keep their float


def test_point_group_multiples_are_fitted_on_sign_certain_training_frames():
    from ase.build import bulk

    from etgnn_core.data import Sample

    piezo_ionic = load_script("benchmarks/piezo_ionic.py")
    rng = np.random.default_rng(3)
    samples, e_ion = [], []

    def add(atoms, factor, n, ambiguous=False):
        for _ in range(n):
            e = rng.normal(size=(3, 3, 3))
            samples.append(Sample(atoms=atoms, targets={"piezoelectric": factor * e},
                                  info={"rotation_ambiguous": ambiguous}))
            e_ion.append(e)

    add(bulk("AlN", "wurtzite", a=3.11, c=4.98), -0.3, 6)
    add(bulk("GaAs", "zincblende", a=5.65), 0.8, 5)
    add(bulk("GaAs", "zincblende", a=5.65), 40.0, 3, ambiguous=True)  # a frame that may be flipped: not used
    add(bulk("NaCl", "rocksalt", a=5.6), 2.0, 2)  # too few frames for its own multiple
    scales = piezo_ionic.fit_point_group_scales(samples, e_ion)
    assert set(scales) == {"6mm", "-43m", "default"}
    assert scales["6mm"] == pytest.approx(-0.3, abs=1e-4) and scales["-43m"] == pytest.approx(0.8, abs=1e-4)
    assert -0.3 < scales["default"] < 2.0
    only = piezo_ionic.only_point_groups(scales, ["6mm"])  # the other groups keep the whole ionic term
    assert only == {"6mm": scales["6mm"], "default": 1.0}
    with pytest.raises(SystemExit, match="m-3m"):  # rocksalt: too few frames, so no multiple to keep
        piezo_ionic.only_point_groups(scales, ["6mm", "m-3m"])


# ------------------------------------------------------------------ learned multiples (ModelConfig.gated)
def gated_net(seed: int = 0):
    """Tiny model whose dielectric has a known part scaled per structure, gate weights random (not 0)."""
    torch.manual_seed(seed)
    specs = [spec_for("born_charges"), spec_for("dielectric")]
    net = ETGNN(ModelConfig(targets=specs, gated=["dielectric"], **{**TINY, "max_neighbors": 8}))
    with torch.no_grad():
        net.gate.weight.normal_(std=0.5)
        net.gate.bias.fill_(0.2)
    return net.eval()


def test_a_gate_starts_at_the_plain_sum_and_scales_the_known_part_per_structure():
    specs = [spec_for("born_charges"), spec_for("dielectric")]
    fresh = ETGNN(ModelConfig(targets=specs, gated=["dielectric"], **{**TINY, "max_neighbors": 8})).eval()
    samples = zno_samples(3)
    for s in samples:
        s.offsets["dielectric"] = np.diag([1.0, 2.0, 3.0])
    batch = collate_labelled([label_graph(x, specs, 4.0, 8) for x in samples])
    with torch.no_grad():
        assert torch.equal(fresh(batch.graph).gates["dielectric"], torch.zeros(3))  # the plain sum at the start
        net = gated_net()
        out = net(batch.graph)
        g = out.gates["dielectric"]  # [3]
        assert g.shape == (3,) and g.abs().min() > 1e-3 and (g[0] - g[1]).abs() > 1e-6  # per structure
        want = (out.tensors["dielectric"].structure + (1 + g)[:, None, None] * batch.offsets["dielectric"]
                - batch.targets["dielectric"]).abs().sum()
        got, _ = target_errors(net, batch)["dielectric"]
    assert torch.allclose(got, want)


def test_a_gate_is_invariant_so_the_gated_tensor_stays_equivariant():
    from ase.build import bulk
    from scipy.spatial.transform import Rotation

    from etgnn_core.graph import build_graph

    net = gated_net().double()
    atoms = bulk("ZnO", "wurtzite", a=3.25, c=5.2)
    atoms.rattle(0.05, seed=3)
    turned = atoms.copy()
    rot = Rotation.from_euler("xyz", [20, 50, -35], degrees=True).as_matrix()
    turned.set_cell(atoms.cell @ rot.T, scale_atoms=True)
    swapped = atoms[[2, 0, 3, 1]]
    with torch.no_grad():
        g = [float(net(build_graph(a, 4.0, 8)).gates["dielectric"][0]) for a in (atoms, turned, swapped)]
    assert abs(g[0]) > 1e-3 and g[1] == pytest.approx(g[0], abs=1e-9) and g[2] == pytest.approx(g[0], abs=1e-9)


def test_a_gated_committee_adds_each_members_multiple_and_spreads_the_whole_tensors():
    """Mean = mean over members of (network + (1 + g_m) K); std = their std x the calibration factor; the
    same when K is taken from a sample's stored offset (scoring) as when it is computed (predicting)."""
    from etgnn_core.api import Model
    from etgnn_core.committee import Committee, predict_with_offsets
    from etgnn_core.registry import ModelInfo

    nets = [gated_net(seed) for seed in (0, 1, 2)]
    info = ModelInfo("gated", None, "", {"born_charges": "e", "dielectric": "1"}, [8, 30], members=["a", "b", "c"])
    committee = Committee(nets, info, std_scale={"dielectric": 2.0}, device="cpu")
    sample = zno_samples(1)[0]
    known = np.diag([3.0, -1.0, 2.0])
    sample.offsets["dielectric"] = known
    rest = committee.predict(sample.atoms, members=True)
    factor = rest.gates["dielectric"]  # [3] 1 + g_m
    assert factor.shape == (3,) and np.ptp(factor) > 1e-3
    whole = rest.member_tensors["dielectric"] + factor[:, None, None] * known  # [3, 3, 3]
    committee.known_parts = {"dielectric": lambda atoms: known}
    for pred in (committee.predict(sample.atoms), predict_with_offsets(committee, [sample])[0]):
        np.testing.assert_allclose(pred["dielectric"], whole.mean(0), atol=1e-9)
        np.testing.assert_allclose(pred.std["dielectric"], 2.0 * whole.std(0, ddof=1), rtol=1e-6, atol=1e-9)
        assert not np.allclose(pred.std["dielectric"], rest.std["dielectric"])  # the multiples spread too
    alone = Model(committee.nets[0], info, "cpu")
    alone.known_parts = {"dielectric": lambda atoms: known}
    np.testing.assert_allclose(alone.predict(sample.atoms)["dielectric"], whole[0], atol=1e-9)


def test_training_a_gated_model_learns_the_multiple_and_needs_a_known_part(tmp_path):
    import json

    from test_train import tiny_config

    from etgnn_core.registry import load_model_folder
    from etgnn_core.train import train
    from etgnn_core.train.config import ConfigError

    samples = zno_samples(24)
    table = tmp_path / "part.npz"
    np.savez(table, ids=np.array([s.id for s in samples]), values=np.stack([np.eye(3)] * 24),
             meta=json.dumps({"kind": "ionic_piezo", "bec_model": "b", "potential": "sevenn"}))
    samples, _ = attach_offsets(samples, "dielectric", read_offsets(table))
    model = {**TINY, "gated": ["dielectric"]}
    cfg = tiny_config(tmp_path, data={"dataset": "unused", "offsets": {"dielectric": str(table)}}, model=model)
    net, _ = load_model_folder(train(cfg, samples=samples, progress_bar=False).model_dir)
    assert net.config.gated == ["dielectric"] and net.gate.weight.abs().max() > 0  # it trained from 0
    with pytest.raises(ConfigError, match="gated"):
        tiny_config(tmp_path, model=model)  # no known part to scale
    with pytest.raises(ValueError, match="gated"):
        ModelConfig(targets=[spec_for("born_charges")], gated=["born_charges"])  # a per-atom tensor


def _trigonal_selenium():
    from ase import Atoms
    from ase.build import bulk

    cell = bulk("Se", "hcp", a=4.4, c=5.0).cell  # P3_121: point group 32, the 3-fold axis along c
    return Atoms("Se3", cell=cell, scaled_positions=[[0.22, 0, 1 / 3], [0, 0.22, 2 / 3], [-0.22, -0.22, 0]], pbc=True)


def test_a_multiple_of_the_in_plane_part_is_equivariant_and_keyed_apart(tmp_path):
    """odd_part_scales: in a listed point group the odd part of e_ion about the principal axis gets its own
    multiple, the axial part the group's; a turned crystal gets the turned tensor; other groups are untouched."""
    import json

    from ase.build import bulk
    from scipy.spatial.transform import Rotation

    from etgnn_core.spectra import piezo

    spec = {"kind": "ionic_piezo", "bec_model": "b", "potential": "sevenn",
            "point_group_scales": {"2": -0.4, "default": 1.0}, "odd_part_scales": {"32": -0.6}}
    (tmp_path / piezo.KNOWN_PARTS_FILE).write_text(json.dumps({"piezoelectric": spec}))
    term = piezo.load_known_parts(tmp_path)["piezoelectric"]
    se = _trigonal_selenium()
    assert piezo.point_group(se) == "32"
    e = np.random.default_rng(4).normal(size=(3, 3, 3))
    even, odd = piezo.axis_parts(e, np.array([0.0, 0.0, 1.0]))
    assert np.abs(odd).max() > 0.1 and np.abs(even).max() > 0.1
    np.testing.assert_allclose(term.apply(se, e), even - 0.6 * odd, atol=1e-12)
    r = Rotation.from_euler("zyx", [0.4, 1.0, -0.3]).as_matrix()
    turned = se.copy()
    turned.set_cell(se.cell.array @ r.T, scale_atoms=True)
    rot = lambda t: np.einsum("ia,jb,kc,abc->ijk", r, r, r, t)  # noqa: E731
    np.testing.assert_allclose(term.apply(turned, rot(e)), rot(term.apply(se, e)), atol=1e-10)
    wurtzite = bulk("AlN", "wurtzite", a=3.11, c=4.98)  # 6mm: not listed, the default multiple
    np.testing.assert_allclose(term.apply(wurtzite, e), e)
    assert "-0.60 x the in-plane part (point group 32" in term.describe(se)
    assert term.key == multiple_key(1.0, {"2": -0.4, "default": 1.0}, {"32": -0.6})
    assert term.key != multiple_key(1.0, {"2": -0.4, "default": 1.0})  # a table without it is another part
    assert multiple_key(1.0, {"2": -0.4}) == (1.0, (("2", -0.4),))  # earlier keys unchanged


def test_odd_part_multiples_are_fitted_on_sign_certain_training_frames():
    from ase.build import bulk

    from etgnn_core.data import Sample
    from etgnn_core.spectra import piezo

    piezo_ionic = load_script("benchmarks/piezo_ionic.py")
    rng = np.random.default_rng(5)
    se, samples, e_ion = _trigonal_selenium(), [], []
    for k in range(7):
        e = rng.normal(size=(3, 3, 3))
        even, odd = piezo.axis_parts(e, np.array([0.0, 0.0, 1.0]))
        label = 0.8 * even - 0.5 * odd if k < 6 else 50.0 * e  # the last frame may be flipped: not used
        samples.append(Sample(atoms=se, targets={"piezoelectric": label}, info={"rotation_ambiguous": k == 6}))
        e_ion.append(e)
    assert piezo_ionic.fit_odd_part_scales(samples, e_ion, ["32"]) == {"32": -0.5}
    with pytest.raises(SystemExit, match="3m"):  # no frame of 3m: nothing to fit
        piezo_ionic.fit_odd_part_scales(samples, e_ion, ["32", "3m"])
    wurtzite = bulk("AlN", "wurtzite", a=3.11, c=4.98)
    assert piezo.principal_axis(piezo.symmetry_dataset(wurtzite), wurtzite.cell.array) is not None
    assert np.abs(piezo.axis_parts(e_ion[0], None)[1]).max() == 0
