"""Training: a tiny model for a few steps; config, label and loading errors; resume; fine-tuning."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ase.build import bulk
from conftest import TINY as SIZES

from etgnn_core.data import DataError, Sample
from etgnn_core.registry import ModelLoadError, load_model_folder
from etgnn_core.train import ConfigError, TrainConfig, train
from etgnn_core.train.batching import collate_labelled, label_graph
from etgnn_core.train.normalize import Baseline, apply_normalization

TINY = {**SIZES, "max_neighbors": 8}


def zno_samples(n=24, seed=0):
    """Rattled wurtzite cells with a synthetic, learnable BEC (species charge + ASR) and dielectric."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        a = bulk("ZnO", "wurtzite", a=3.25, c=5.2)
        a.rattle(0.05, seed=seed * 1000 + i)
        charge = np.where(a.numbers == 30, 2.1, -2.1)
        z = charge[:, None, None] * np.eye(3) + 0.05 * rng.normal(size=(4, 3, 3))
        z -= z.mean(0)
        eps = 5.0 * np.eye(3) + 0.1 * np.diag(rng.normal(size=3))
        out.append(Sample(atoms=a, targets={"born_charges": z, "dielectric": eps}, id=f"zno{i}"))
    return out


def tiny_config(tmp_path, **over):
    d = {"name": "tiny", "targets": ["born_charges", "dielectric"], "data": {"dataset": "unused"},
         "model": dict(TINY), "optim": {"max_epochs": 2, "batch_size": 8, "patience": 0},
         "split": {"seed": 1, "train": 0.6, "val": 0.2, "test": 0.2}, "output": str(tmp_path / "run")}
    d.update(over)
    return TrainConfig.from_dict(d)


def test_tiny_training_writes_a_loadable_model_folder(tmp_path):
    res = train(tiny_config(tmp_path), samples=zno_samples(), progress_bar=False)
    for f in ("config.json", "weights.pt", "card.json", "card.md", "split.json"):
        assert (res.model_dir / f).exists(), f
    card = json.loads((res.model_dir / "card.json").read_text())
    assert card["split"]["train"] + card["split"]["val"] + card["split"]["test"] == 24
    assert card["metrics"]["born_charges"]["unit"] == "e"
    # validation MAE kept beside the test MAE, so later rounds are chosen without the test split
    assert set(card["val_metrics"]) == {"born_charges", "dielectric"}
    split = json.loads((res.model_dir / "split.json").read_text())
    assert not set(split["train"]) & set(split["test"])
    model, info = load_model_folder(res.model_dir)
    assert info.targets == {"born_charges": "e", "dielectric": "dimensionless"}
    assert model.config.elements == [8, 30]
    # the normalisation starts from the species mean, so even two epochs stay near the species-mean
    # baseline (the label noise, ~0.04 e) instead of the charges themselves (~2 e)
    m = res.metrics["born_charges"]
    assert 0 < m["mae"] < 2 * m["baseline_mae"] and m["baseline_mae"] < 0.1, m
    # the card's validation MAE is that of the saved model on the validation ids of split.json
    from etgnn_core.train import evaluate

    samples = {s.id: s for s in zno_samples()}
    val = [label_graph(samples[i], model.config.targets, model.config.cutoff, model.config.max_neighbors)
           for i in split["val"]]
    assert evaluate(model, val)["born_charges"] == pytest.approx(card["val_metrics"]["born_charges"]["mae"],
                                                                rel=1e-4)
    assert (tmp_path / "run" / "logs").exists()  # CSV metrics


def test_normalization_sets_species_bias_from_training_labels():
    from etgnn_core.model import ETGNN, ModelConfig
    from etgnn_core.tensors.specs import spec_for

    model = ETGNN(ModelConfig(targets=[spec_for("born_charges")], **TINY))
    items = [label_graph(s, model.config.targets, 5.0, 8) for s in zno_samples(8)]
    apply_normalization(model, items)
    scale = float(model.scales[0])
    assert 0.01 < scale < 0.2  # the noise left after the species mean, not the charges themselves
    assert float(model.species_bias.weight[30, 0]) * scale == pytest.approx(2.1, abs=0.05)
    assert float(model.species_bias.weight[8, 0]) * scale == pytest.approx(-2.1, abs=0.05)
    base = Baseline(items, model.config.targets[0]).predict(items[0])
    assert base.shape == (4, 3, 3) and base[0, 0, 0] != 0


@pytest.mark.slow
def test_resume_continues_from_last_checkpoint(tmp_path):
    cfg = tiny_config(tmp_path)
    from etgnn_core.train.module import ELAPSED_KEY

    first = train(cfg, samples=zno_samples(), progress_bar=False)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert last.exists()
    assert torch.load(last, map_location="cpu", weights_only=True)[ELAPSED_KEY] > 0
    cfg.optim.max_epochs = 3
    res = train(cfg, samples=zno_samples(), progress_bar=False, force=True)  # the run had finished
    assert res.epochs == 3  # resumed at epoch 2, ran one more
    assert res.minutes > first.minutes  # the card counts both runs' training time


@pytest.mark.slow
def test_ema_weights_are_validated_checkpointed_and_saved(tmp_path):
    """With optim.ema_decay the saved model is the moving average, not the last raw weights."""
    cfg = tiny_config(tmp_path, optim={"max_epochs": 3, "batch_size": 4, "patience": 0, "ema_decay": 0.5})
    res = train(cfg, samples=zno_samples(), progress_bar=False)
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    raw, avg = ckpt["current_model_state"], ckpt["state_dict"]
    name = next(k for k in avg if k.endswith("weight") and avg[k].dtype.is_floating_point)
    assert not torch.equal(raw[name], avg[name])  # the average lags the raw weights
    saved = torch.load(res.model_dir / "weights.pt", map_location="cpu", weights_only=True)
    best = torch.load(tmp_path / "run" / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    assert torch.equal(saved[name.removeprefix("model.")], best["state_dict"][name])
    assert json.loads((res.model_dir / "card.json").read_text())["training"]["ema_decay"] == 0.5
    cfg.optim.max_epochs = 4  # resuming restores both the raw and the averaged weights
    assert train(cfg, samples=zno_samples(), progress_bar=False, force=True).epochs == 4


def test_moving_average_warms_up_and_then_decays_as_asked():
    from etgnn_core.train.trainer import warm_ema_avg_fn

    ema = warm_ema_avg_fn(0.999)
    avg = torch.zeros(3)
    for n in range(1, 301):  # the weights jumped from 0 to 1: a plain 0.999 average would hold 0.26
        avg = ema(avg, torch.ones(3), torch.tensor(n))
    assert float(avg[0]) > 0.9
    late = ema(torch.zeros(1), torch.ones(1), torch.tensor(10**6))  # long runs: the configured decay
    assert float(late) == pytest.approx(0.001, rel=1e-3)


def test_bad_labels_are_refused_before_training(tmp_path):
    samples = zno_samples(6)
    samples[3].targets["born_charges"] = samples[3].targets["born_charges"].copy()
    samples[3].targets["born_charges"][1, 0, 0] = np.nan
    with pytest.raises(DataError, match="zno3"):
        train(tiny_config(tmp_path), samples=samples, progress_bar=False)
    assert not (tmp_path / "run").exists()  # nothing started
    with pytest.raises(DataError):
        train(tiny_config(tmp_path), samples=[], progress_bar=False)
    wrong = zno_samples(4)
    wrong[2].targets["dielectric"] = np.ones(6)
    with pytest.raises(DataError, match="dielectric"):
        train(tiny_config(tmp_path), samples=wrong, progress_bar=False)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"targets": ["born_charge"]}, "unknown target"),
        ({"learning_rate": 1}, "unknown key"),
        ({"split": {"seed": 0, "train": 0.5, "val": 0.1, "test": 0.1}}, "sum to 1"),
        ({"optim": {"lr": -1}}, "optim.lr"),
        ({"optim": {"ema_decay": 1.0}}, "optim.ema_decay"),
        ({"data": {}}, "dataset"),
        ({"data": {"datset": "x"}}, "unknown key"),
        ({"losses": {"dielectric": "l3"}}, "losses.dielectric"),
        ({"losses": {"dielectic": "l2"}}, "unknown target"),
        ({"finetune_reset_elements": ["Cr"]}, "needs finetune_from"),
        ({"finetune_from": "parent", "finetune_reset_elements": ["Cr", "Qq"]}, r"not element symbols: \['Qq'\]"),
        ({"finetune_from": "parent", "finetune_reset_elements": ["Cr"], "finetune_reset_parts": ["bias", "heads"]},
         "finetune_reset_parts"),
        ({"optim": {"clip": "ten"}}, "optim: clip must be a number, got 'ten'"),
        ({"optim": {"warmup": True}}, "optim: warmup must be a number"),
        ({"split": {"seed": "a", "train": 0.6, "val": 0.2, "test": 0.2}}, "split: seed must be a number"),
        ({"finetune_from": []}, "non-empty list"),
        ({"finetune_from": ["a", 3]}, "non-empty list"),
        ({"finetune_from": ["a", "stage1.yaml"]}, r"not committee configs: \['stage1.yaml'\]"),
    ],
)
def test_config_errors_name_the_key(tmp_path, change, message):
    with pytest.raises(ConfigError, match=message):
        tiny_config(tmp_path, **change)


def test_members_fine_tune_a_list_of_parents_in_turn(tmp_path):
    """finetune_from: [a, b]: member K starts from entry K mod 2 (and keeps its own seed and draw); the model
    alone, without --member, has no one parent to start from; the committee's train.yaml names each member's."""
    from etgnn_core.committee import _member_parent

    cfg = tiny_config(tmp_path, finetune_from=["pa", "pb"])
    got = [(m.finetune_from, m.seed, m.split.member) for m in map(cfg.for_member, range(4))]
    assert got == [("pa", cfg.seed, 0), ("pb", cfg.seed + 1, 1), ("pa", cfg.seed + 2, 2), ("pb", cfg.seed + 3, 3)]
    with pytest.raises(ConfigError, match="lists 2 parents; train with --member K"):
        cfg.check_trainable()
    cfg.for_member(3).check_trainable()
    assert _member_parent(cfg, 3) == {"parent": "pb"} and _member_parent(cfg.for_member(3), 3) == {}


def test_config_yaml_exponents_without_a_dot_are_numbers(tmp_path):
    """YAML 1.1 reads 1e-3 (no dot) as the string '1e-3'; a float setting takes it as the number."""
    p = tmp_path / "c.yaml"
    p.write_text("name: x\ntargets: [elastic]\ndata: {dataset: mp/elastic}\noptim: {lr: 1e-3, weight_decay: 1e-4}\n")
    o = TrainConfig.from_file(p).optim
    assert (o.lr, o.weight_decay) == (1e-3, 1e-4) and isinstance(o.weight_decay, float)


def test_config_file_yaml(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("name: x\ntargets: [piezoelectric]\ndata: {dataset: perturbed/AlN}\noptim: {max_minutes: 2}\n")
    cfg = TrainConfig.from_file(p)
    assert cfg.optim.max_minutes == 2 and cfg.optim.batch_size == 32
    p.write_text("name: x\ntargets: [piezoelectric\n")
    with pytest.raises(ConfigError, match="YAML"):
        TrainConfig.from_file(p)


@pytest.mark.slow
def test_finetune_copies_backbone_and_keeps_heads(tmp_path):
    res = train(tiny_config(tmp_path), samples=zno_samples(), progress_bar=False)
    base, _ = load_model_folder(res.model_dir)
    # same targets: continue from the pretrained weights (normalisation kept)
    cfg = tiny_config(tmp_path, output=str(tmp_path / "ft"), finetune_from=str(res.model_dir),
                      optim={"max_epochs": 1, "batch_size": 8, "lr": 1e-12, "patience": 0})
    ft = train(cfg, samples=zno_samples(seed=5), progress_bar=False)
    ft_model, _ = load_model_folder(ft.model_dir)
    w0 = base.state_dict()["edge_embedding.emb.weight"]
    assert torch.allclose(ft_model.state_dict()["edge_embedding.emb.weight"], w0, atol=1e-6)
    assert torch.equal(ft_model.scales, base.scales)
    # a new target: backbone copied, new heads
    cfg2 = tiny_config(tmp_path, output=str(tmp_path / "ft2"), finetune_from=str(res.model_dir),
                       targets=["born_charges"], optim={"max_epochs": 1, "batch_size": 8, "lr": 1e-12})
    ft2 = train(cfg2, samples=zno_samples(seed=6), progress_bar=False)
    m2, _ = load_model_folder(ft2.model_dir)
    assert torch.allclose(m2.state_dict()["edge_updates.0.lin_kj.weight"],
                          base.state_dict()["edge_updates.0.lin_kj.weight"], atol=1e-6)


def test_finetune_may_change_the_neighbour_cap_but_not_the_architecture(tmp_path):
    """model.max_neighbors in a fine-tune caps the new graphs (saved with the model, weights continued);
    any other model key that differs from the parent's is refused, naming it (it was silently ignored)."""
    from etgnn_core.train.config import ConfigError

    res = train(tiny_config(tmp_path), samples=zno_samples(), progress_bar=False)
    base, _ = load_model_folder(res.model_dir)
    assert base.config.max_neighbors == 8
    cfg = tiny_config(tmp_path, output=str(tmp_path / "cap"), finetune_from=str(res.model_dir),
                      model={**TINY, "max_neighbors": 4}, optim={"max_epochs": 1, "batch_size": 8, "lr": 1e-12})
    ft, _ = load_model_folder(train(cfg, samples=zno_samples(seed=5), progress_bar=False).model_dir)
    assert ft.config.max_neighbors == 4
    w = "edge_embedding.emb.weight"
    assert torch.allclose(ft.state_dict()[w], base.state_dict()[w], atol=1e-6)
    wider = tiny_config(tmp_path, output=str(tmp_path / "wide"), finetune_from=str(res.model_dir),
                        model={**TINY, "hidden": 32})
    with pytest.raises(ConfigError, match=r"model.hidden is 32 .* has 16; a fine-tune keeps"):
        train(wider, samples=zno_samples(seed=5), progress_bar=False)


@pytest.mark.slow
def test_finetune_reset_elements_starts_their_parameters_afresh(tmp_path):
    """finetune_reset_elements: Zn's embeddings are re-drawn and its on-site bias re-fitted to the new
    labels (Zn charge 3.0 instead of the parent's 2.1); O's parameters stay the parent's."""
    res = train(tiny_config(tmp_path), samples=zno_samples(), progress_bar=False)
    base, _ = load_model_folder(res.model_dir)
    relabelled = zno_samples(seed=7)
    for s in relabelled:  # charges +-3.0: the ASR keeps the cell neutral
        s.targets["born_charges"] = s.targets["born_charges"] * (3.0 / 2.1)
    cfg = tiny_config(tmp_path, output=str(tmp_path / "ft"), finetune_from=str(res.model_dir),
                      finetune_reset_elements=["Zn"], optim={"max_epochs": 1, "batch_size": 8, "lr": 1e-12})
    ft, _ = load_model_folder(train(cfg, samples=relabelled, progress_bar=False).model_dir)
    old, new = base.state_dict(), ft.state_dict()
    for key in ("edge_embedding.emb.weight", "triplet_embedding.emb.weight"):
        assert not torch.allclose(new[key][30], old[key][30], atol=1e-3), key
        assert torch.allclose(new[key][8], old[key][8], atol=1e-6), key
    scale = float(ft.scales[0])
    assert float(new["species_bias.weight"][30, 0]) * scale == pytest.approx(3.0, abs=0.1)
    assert float(old["species_bias.weight"][30, 0]) * scale == pytest.approx(2.1, abs=0.1)
    assert torch.allclose(new["species_bias.weight"][8], old["species_bias.weight"][8], atol=1e-6)
    # the bias alone: Zn's embeddings stay the parent's
    cfg = tiny_config(tmp_path, output=str(tmp_path / "ft_bias"), finetune_from=str(res.model_dir),
                      finetune_reset_elements=["Zn"], finetune_reset_parts=["bias"],
                      optim={"max_epochs": 1, "batch_size": 8, "lr": 1e-12})
    bias_only = load_model_folder(train(cfg, samples=relabelled, progress_bar=False).model_dir)[0].state_dict()
    assert torch.allclose(bias_only["edge_embedding.emb.weight"][30], old["edge_embedding.emb.weight"][30], atol=1e-6)
    assert float(bias_only["species_bias.weight"][30, 0]) * scale == pytest.approx(3.0, abs=0.1)


def test_loading_refuses_mismatched_weights_or_config(tmp_path):
    res = train(tiny_config(tmp_path), samples=zno_samples(), progress_bar=False)
    folder = res.model_dir
    cfg = json.loads((folder / "config.json").read_text())
    cfg["model"]["hidden"] = 24
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match="shape mismatch"):
        load_model_folder(folder)
    cfg["model"]["hidden"] = 16
    cfg["model"]["colour"] = "red"
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match="colour"):
        load_model_folder(folder)
    del cfg["model"]["colour"]
    (folder / "config.json").write_text(json.dumps(cfg))
    state = torch.load(folder / "weights.pt", weights_only=True)
    state.pop("scales")
    torch.save(state, folder / "weights.pt")
    with pytest.raises(ModelLoadError, match="missing 1"):
        load_model_folder(folder)
    torch.save({"evil": object()}, folder / "weights.pt")  # a pickle with code: refused, never executed
    with pytest.raises(ModelLoadError, match="plain weights"):
        load_model_folder(folder)


def test_batched_labels_and_masks_line_up():
    from etgnn_core.tensors.specs import spec_for

    specs = [spec_for("born_charges"), spec_for("dielectric")]
    s = zno_samples(3)
    del s[1].targets["dielectric"]
    batch = collate_labelled([label_graph(x, specs, 5.0, 8) for x in s])
    assert batch.targets["born_charges"].shape == (12, 3, 3)
    assert batch.masks["dielectric"].tolist() == [True, False, True]


@pytest.mark.slow
def test_shielding_labelled_on_one_species_trains_a_model_for_that_species(tmp_path):
    """29Si-NMR-like labels (Si atoms only): the model learns to predict shielding on Si only."""
    import etgnn_core

    samples = []
    for i in range(12):
        a = bulk("Si", "diamond", a=5.0)
        a.numbers[1] = 8
        a.rattle(0.05, seed=i)
        si = a.numbers == 14
        sh = np.zeros((2, 3, 3))
        sh[si] = 400.0 * np.eye(3) + np.random.default_rng(i).normal(size=(3, 3))
        samples.append(Sample(atoms=a, targets={"shielding": sh}, masks={"shielding": si}, id=f"s{i}"))
    cfg = tiny_config(tmp_path, targets=["shielding"], optim={"max_epochs": 1, "batch_size": 4, "patience": 0})
    res = train(cfg, samples=samples, progress_bar=False)
    assert res.model.config.targets[0].species == (14,)
    assert "(Si atoms only)" in (res.model_dir / "card.md").read_text()
    pred = etgnn_core.load_model(res.model_dir, device="cpu").predict(samples[0].atoms)
    assert pred.masks["shielding"].tolist() == [True, False]
    assert pred["shielding"][1].tolist() == np.zeros((3, 3)).tolist()
    assert abs(np.trace(pred["shielding"][0]) / 3 - 400.0) < 50.0  # species mean from the labels
    # a label on every atom keeps the tensor on every atom
    full = train(tiny_config(tmp_path / "all"), samples=zno_samples(), progress_bar=False)
    assert full.model.config.targets[0].species == ()


def test_learning_rate_warms_up_then_decays():
    from etgnn_core.model import ETGNN, ModelConfig
    from etgnn_core.tensors.specs import spec_for
    from etgnn_core.train.module import ETGNNModule

    net = ETGNN(ModelConfig(targets=[spec_for("born_charges")], **TINY))
    fresh, tuned = ETGNNModule(net, {}, 1e-3, 10), ETGNNModule(net, {}, 1e-3, 10, warmup=0.05)
    assert fresh.lr_factor(0.0) == pytest.approx(1.0) and fresh.lr_factor(1.0) == pytest.approx(0.01)
    assert tuned.lr_factor(0.0) < 0.05 < tuned.lr_factor(0.025) < 0.6 < tuned.lr_factor(0.05)
    assert tuned.lr_factor(0.5) == pytest.approx(fresh.lr_factor(0.5)) and tuned.lr_factor(1.0) == pytest.approx(0.01)
    steps = [tuned.lr_factor(p / 100) for p in range(101)]
    peak = int(np.argmax(steps))
    assert 4 <= peak <= 6 and all(a >= b for a, b in zip(steps[peak:], steps[peak + 1:]))


def test_decoupled_weight_decay_shrinks_weights_that_get_no_gradient(tmp_path):
    """AdamW (optim.decoupled_weight_decay) shrinks every weight by lr x decay per step; Adam's L2 term,
    rescaled by the adaptive step, moves a weight with no loss gradient by the full step instead."""
    from etgnn_core.model import ETGNN, ModelConfig
    from etgnn_core.tensors.specs import spec_for
    from etgnn_core.train.module import ETGNNModule

    assert tiny_config(tmp_path, optim={"weight_decay": 0.1, "decoupled_weight_decay": True}) \
        .optim.decoupled_weight_decay
    moved = {}
    for decoupled in (False, True):
        net = ETGNN(ModelConfig(targets=[spec_for("born_charges")], **TINY))
        module = ETGNNModule(net, {}, 1e-2, 10, weight_decay=0.1, decoupled_weight_decay=decoupled)
        opt = module.configure_optimizers()["optimizer"]
        assert isinstance(opt, torch.optim.AdamW) == decoupled
        w = net.species_bias.weight
        with torch.no_grad():
            w.fill_(1.0)
        w.grad = torch.zeros_like(w)  # only the decay acts
        opt.step()
        moved[decoupled] = 1.0 - float(w[0, 0])
    assert moved[True] == pytest.approx(1e-2 * 0.1, rel=1e-3) and moved[False] == pytest.approx(1e-2, rel=1e-2)


def test_l2_loss_on_one_target_squares_its_errors_and_leaves_the_others_l1(tmp_path):
    from etgnn_core.model import ETGNN, ModelConfig
    from etgnn_core.tensors.specs import spec_for
    from etgnn_core.train.batching import collate_labelled, label_graph
    from etgnn_core.train.module import ETGNNModule

    torch.manual_seed(0)
    specs = [spec_for("born_charges"), spec_for("dielectric")]
    net = ETGNN(ModelConfig(targets=specs, **TINY)).eval()
    batch = collate_labelled([label_graph(x, specs, net.config.cutoff, TINY["max_neighbors"])
                              for x in zno_samples(3)])
    with torch.no_grad():
        out = net(batch.graph).tensors
        d_eps = out["dielectric"].structure - batch.targets["dielectric"]  # [3, 3, 3]
        d_bec = out["born_charges"].atom - batch.targets["born_charges"]
        l1 = ETGNNModule(net, {}, 1e-3, 1)
        l2 = ETGNNModule(net, {}, 1e-3, 1, squared=tiny_config(tmp_path, losses={"dielectric": "l2"}).l2_targets)
        l1.log = l2.log = lambda *a, **k: None
        got1, got2 = l1._loss(batch, "train"), l2._loss(batch, "train")
    s_bec, s_eps = net.scales[0], net.scales[1]
    want1 = d_bec.abs().mean() / s_bec + d_eps.abs().mean() / s_eps
    want2 = d_bec.abs().mean() / s_bec + d_eps.square().mean() / s_eps**2
    assert torch.allclose(got1, want1, rtol=1e-5) and torch.allclose(got2, want2, rtol=1e-5)
    assert not torch.allclose(got1, got2)


def test_moduli_loss_adds_the_voigt_bulk_and_shear_errors(tmp_path):
    from etgnn_core.metrics import voigt_moduli
    from etgnn_core.model import ETGNN, ModelConfig
    from etgnn_core.tensors.algebra import voigt_rank4_to_full
    from etgnn_core.tensors.specs import spec_for
    from etgnn_core.train.batching import collate_labelled, label_graph
    from etgnn_core.train.module import ETGNNModule

    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    samples = []
    for i, s in enumerate(zno_samples(3)):
        c6 = rng.normal(size=(6, 6)) * 20
        samples.append(Sample(atoms=s.atoms, targets={"elastic": voigt_rank4_to_full(c6 + c6.T + 300 * np.eye(6))},
                              id=f"c{i}"))
    specs = [spec_for("elastic")]
    net = ETGNN(ModelConfig(targets=specs, **TINY)).eval()
    batch = collate_labelled([label_graph(x, specs, net.config.cutoff, TINY["max_neighbors"]) for x in samples])
    cfg = tiny_config(tmp_path, targets=["elastic"], moduli_weights={"elastic": 2.0})
    with torch.no_grad():
        pred = net(batch.graph).tensors["elastic"].structure  # [3, 3, 3, 3, 3]
        plain, with_moduli = ETGNNModule(net, {}, 1e-3, 1), ETGNNModule(net, {}, 1e-3, 1,
                                                                        moduli_weights=cfg.moduli_weights)
        plain.log = with_moduli.log = lambda *a, **k: None
        extra = with_moduli._loss(batch, "train") - plain._loss(batch, "train")
    k_p, g_p = voigt_moduli(pred.double().numpy())
    k_t, g_t = voigt_moduli(batch.targets["elastic"].double().numpy())
    want = 2.0 * np.mean(np.abs(np.r_[k_p - k_t, g_p - g_t])) / float(net.scales[0])
    assert float(extra) == pytest.approx(want, rel=1e-4) and want > 0
    with pytest.raises(ConfigError, match="moduli_weights.dielectric"):
        tiny_config(tmp_path, moduli_weights={"dielectric": 1.0})
    tiny_config(tmp_path, targets=["piezoelectric"], moduli_weights={"piezoelectric": 0.2})  # rank 3: its norm


def test_the_rank3_invariant_loss_is_the_norm_error_and_ignores_a_rotation():
    from scipy.spatial.transform import Rotation

    from etgnn_core.train.module import invariant_errors

    rng = np.random.default_rng(4)
    e = torch.tensor(rng.normal(size=(2, 3, 3, 3)))
    r = torch.tensor(Rotation.random(random_state=1).as_matrix())
    turned = torch.einsum("ai,bj,ck,nijk->nabc", r, r, r, e)
    total, n = invariant_errors(turned, e)  # an ambiguous frame: no error
    assert int(n) == 2 and float(total) == pytest.approx(0.0, abs=1e-9)
    total, _ = invariant_errors(2 * e, e)
    assert float(total) == pytest.approx(float(e.flatten(1).norm(dim=1).sum()), rel=1e-9)


@pytest.mark.slow
def test_committee_stage_continues_the_same_member(tmp_path):
    """finetune_from naming a committee config: member K starts from member K of it; its train.yaml
    holds both stages and the committee's commands rebuild the first stage before the second."""
    import yaml

    from etgnn_core.committee import committee_recipe
    from etgnn_core.train.recipe import RECIPE_FILE, read_recipe, sha256_file

    first = {"name": "tiny_s1", "targets": ["born_charges", "dielectric"], "data": {"dataset": "unused"},
             "model": dict(TINY), "optim": {"max_epochs": 1, "batch_size": 8, "patience": 0},
             "split": {"seed": 1, "train": 0.6, "val": 0.1, "calib": 0.1, "test": 0.2, "group": False},
             "output": str(tmp_path / "s1")}
    (tmp_path / "s1.yaml").write_text(yaml.safe_dump(first))
    second = TrainConfig.from_dict({**first, "name": "tiny", "output": str(tmp_path / "s2"),
                                    "finetune_from": str(tmp_path / "s1.yaml"),
                                    "optim": {"max_epochs": 1, "batch_size": 8, "lr": 1e-12, "patience": 0}})
    with pytest.raises(ConfigError, match="--member"):
        train(second, samples=zno_samples(), progress_bar=False)
    for k in (0, 1):
        train(TrainConfig.from_dict(first).for_member(k), samples=zno_samples(), progress_bar=False)
    other = TrainConfig.from_dict({**second.to_dict(), "split": {**first["split"], "seed": 2}})
    with pytest.raises(ConfigError, match="differs from that of"):
        other.for_member(1)
    m1 = second.for_member(1)
    assert m1.finetune_from == str(tmp_path / "s1" / "member1" / "model")
    res = train(m1, samples=zno_samples(), progress_bar=False)
    assert {m["split"] for m in res.metrics.values()} == {"val"}  # a member never reports the test split
    assert read_recipe(res.model_dir / RECIPE_FILE).stages[1].result["test_mae"] == {}
    parent = tmp_path / "s1" / "member1" / "model"
    stages = read_recipe(res.model_dir / RECIPE_FILE).stages
    assert len(stages) == 2 and stages[1].parent["sha256"] == sha256_file(parent / "weights.pt")
    assert stages[0].config.split.member == 1 and stages[0].parent is None
    base, _ = load_model_folder(parent)  # lr 1e-12: the second stage starts from member 1's weights
    got, _ = load_model_folder(res.model_dir)
    assert torch.allclose(got.state_dict()["edge_embedding.emb.weight"], base.state_dict()["edge_embedding.emb.weight"],
                          atol=1e-6)
    commands = committee_recipe(second, [res.model_dir], ["member1"])["commands"]
    assert commands == [f"etgnn train {tmp_path / 's1.yaml'} --member 1", "etgnn train configs/tiny.yaml --member 1",
                        "etgnn committee configs/tiny.yaml --members 1 --install"]


def test_a_resumed_run_continues_the_wall_clock_schedule():
    """A run resumed in a later session must not restart its cosine learning rate at the peak."""
    from etgnn_core.model import ETGNN, ModelConfig
    from etgnn_core.tensors.specs import spec_for
    from etgnn_core.train.module import ELAPSED_KEY, ETGNNModule

    tiny_model = lambda: ETGNN(ModelConfig(targets=[spec_for("born_charges")], **TINY))  # noqa: E731
    module = ETGNNModule(tiny_model(), {}, lr=1e-3, max_epochs=10**6, max_minutes=20)
    module.on_load_checkpoint({ELAPSED_KEY: 15 * 60.0})  # 15 of 20 minutes were trained before
    module.on_train_start()
    assert 0.75 <= module.progress() < 0.8
    assert module.lr_factor(module.progress()) < 0.2  # late in the cosine, not back at 1
    saved = {}
    module.on_save_checkpoint(saved)
    assert saved[ELAPSED_KEY] >= 15 * 60.0
    fresh = ETGNNModule(tiny_model(), {}, lr=1e-3, max_epochs=10**6, max_minutes=20)
    fresh.on_train_start()
    assert fresh.progress() < 0.01
