"""eps0 - eps_inf as an indirect Born-charge label (etgnn_core.data.ionic, DataConfig.eps_ionic)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_train import tiny_config, zno_samples

from etgnn_core.data import DataError
from etgnn_core.data.ionic import FOUR_PI_E2, attach_eps_ionic, eps_ionic, read_ionic_table, write_ionic_table
from etgnn_core.spectra.piezo import force_constant_pinv
from etgnn_core.train.config import ConfigError


def rock_salt_force_constants(k: float) -> np.ndarray:
    """[2, 2, 3, 3] eV/Å²: one spring k between the two atoms along every axis (Γ sum over images)."""
    fc = np.zeros((2, 2, 3, 3))
    for a in range(2):
        for b in range(2):
            fc[a, b] = (k if a == b else -k) * np.eye(3)
    return fc


def test_rock_salt_ionic_response_has_its_closed_form():
    """Charges +-z, spring k: eps_ion = 4π e² z² / (V k) on the diagonal (the translation left out of Φ⁺)."""
    z, k, volume = 1.1, 3.0, 45.0
    pinv, unstable = force_constant_pinv(rock_salt_force_constants(k))
    assert unstable == 0
    charges = np.stack([z * np.eye(3), -z * np.eye(3)])
    np.testing.assert_allclose(eps_ionic(charges, FOUR_PI_E2 / volume * pinv),
                               FOUR_PI_E2 * z**2 / (volume * k) * np.eye(3), rtol=1e-10)
    # a rigid shift of every charge (an acoustic-sum-rule violation) changes nothing
    np.testing.assert_allclose(eps_ionic(charges + 0.3, FOUR_PI_E2 / volume * pinv),
                               eps_ionic(charges, FOUR_PI_E2 / volume * pinv), atol=1e-12)


def test_table_attaches_kernels_and_leaves_out_unstable_and_soft_crystals(tmp_path):
    samples = zno_samples(4)  # 4-atom wurtzite cells: [12, 12] blocks
    rng = np.random.default_rng(0)
    a = rng.normal(size=(12, 12))
    pinv = a @ a.T
    labels = [np.eye(3), np.eye(3), 40 * np.eye(3), np.eye(3)]
    write_ionic_table(tmp_path / "t.npz", [s.id for s in samples], [pinv] * 4, labels, [0, 2, 0, 0])
    assert set(read_ionic_table(tmp_path / "t.npz")) == {s.id for s in samples}
    assert attach_eps_ionic(samples, tmp_path / "t.npz") == 2  # unstable modes (1), label above 30 (2) left out
    assert samples[1].eps_ionic is None and samples[2].eps_ionic is None
    kernel, label = samples[0].eps_ionic
    np.testing.assert_allclose(kernel, FOUR_PI_E2 / samples[0].atoms.get_volume() * pinv)
    half = zno_samples(1)
    attach_eps_ionic(half, tmp_path / "t.npz", scale=0.5)  # a potential's softness corrected by a factor
    np.testing.assert_allclose(half[0].eps_ionic[0], 0.5 * kernel)
    write_ionic_table(tmp_path / "bad.npz", [samples[0].id], [np.eye(6)], [np.eye(3)], [0])
    with pytest.raises(DataError, match="2 atoms there, 4 in the data"):
        attach_eps_ionic(zno_samples(1), tmp_path / "bad.npz")
    with pytest.raises(DataError, match="no ionic-dielectric table"):
        read_ionic_table(tmp_path / "missing.npz")


def test_loss_term_equals_the_numpy_response_and_moves_the_born_charges(tmp_path):
    from etgnn_core.train.batching import collate_labelled, label_graph
    from etgnn_core.train.module import eps_ionic_error
    from etgnn_core.train.trainer import build_model

    samples = zno_samples(3)
    rng = np.random.default_rng(1)
    a = rng.normal(size=(12, 12))
    write_ionic_table(tmp_path / "t.npz", [samples[0].id, samples[2].id], [a @ a.T] * 2, [np.diag([1.0, 2.0, 3.0])] * 2,
                [0, 0])
    attach_eps_ionic(samples, tmp_path / "t.npz")
    cfg = tiny_config(tmp_path)
    model, _ = build_model(cfg)
    batch = collate_labelled([label_graph(s, model.config.targets, 5.0, 8) for s in samples])
    z = torch.randn(12, 3, 3, dtype=torch.float64, requires_grad=True)  # 3 structures x 4 atoms
    batch.eps_ionic = [None if e is None else tuple(t.double() for t in e) for e in batch.eps_ionic]
    total, n = eps_ionic_error(z, batch)
    assert int(n) == 6  # two labelled structures x three principal values
    expect = sum(np.abs(np.linalg.eigvalsh(eps_ionic(z[4 * i: 4 * i + 4].detach().numpy(), samples[i].eps_ionic[0]))
                        - [1.0, 2.0, 3.0]).sum() / 3.0 for i in (0, 2))  # relative to mean label 2 + 1
    assert float(total.detach()) == pytest.approx(expect, rel=1e-6)
    total.backward()
    assert z.grad[:4].abs().sum() > 0 and z.grad[4:8].abs().sum() == 0  # the unlabelled structure gets none


def test_training_with_the_ionic_label_logs_it_and_needs_born_charges(tmp_path):
    from etgnn_core.train import train

    samples = zno_samples(24)
    rng = np.random.default_rng(2)
    a = rng.normal(size=(12, 12))
    write_ionic_table(tmp_path / "t.npz", [s.id for s in samples], [0.01 * a @ a.T] * 24, [np.eye(3)] * 24, [0] * 24)
    cfg = tiny_config(tmp_path, data={"dataset": "unused", "eps_ionic": str(tmp_path / "t.npz"),
                                      "eps_ionic_weight": 0.5})
    attach_eps_ionic(samples, tmp_path / "t.npz")
    res = train(cfg, samples=samples, progress_bar=False)
    metrics = (res.model_dir.parent / "logs").rglob("metrics.csv")
    header = next(open(next(metrics))).strip().split(",")
    assert "train_rel_eps_ionic" in header and "val_rel_eps_ionic" in header
    assert "eps0 - eps_inf loss 0.5 (Φ⁺ x 1)" in (res.model_dir / "card.md").read_text()  # the card says so
    with pytest.raises(ConfigError, match="eps_ionic .* needs the born_charges target"):
        tiny_config(tmp_path, targets=["dielectric"], data={"dataset": "unused", "eps_ionic": "t.npz"})


def test_kernel_form_equals_the_mode_sum_of_the_spectra_code():
    """(4π e²/V) Z Φ⁺ Z (masses cancel) equals etgnn_core.spectra.ir.eps_ionic's Σ_m S_m / ω_m² over the
    optical modes of the mass-weighted dynamical matrix: one more check of the units (e² = 14.39964 eV·Å)."""
    from ase import units

    from etgnn_core.spectra import ir

    rng = np.random.default_rng(3)
    n, volume = 3, 60.0
    a = rng.normal(size=(3 * n, 3 * n))
    phi = a @ a.T
    t = np.kron(np.ones((n, 1)), np.eye(3)) / np.sqrt(n)  # [3n, 3] rigid translations
    p_opt = np.eye(3 * n) - t @ t.T
    phi = p_opt @ phi @ p_opt  # translation-invariant force constants, eV/Å², row a*3+j
    masses = np.array([16.0, 27.0, 65.4])
    z = rng.normal(size=(n, 3, 3))
    z -= z.mean(axis=0)
    m_inv = np.repeat(1 / np.sqrt(masses), 3)
    w2, vec = np.linalg.eigh(m_inv[:, None] * phi * m_inv[None, :])  # eV/(Å² amu)
    omega = np.sqrt(np.clip(w2, 0, None) * units._e / (1e-20 * units._amu))  # rad/s
    freq_cm1 = omega / (2 * np.pi * units._c * 100.0)
    q = ir.mode_charges(z, vec.T.reshape(3 * n, n, 3), masses)
    include = w2 > 1e-8 * w2.max()
    modes = ir.eps_ionic(q, freq_cm1, volume, include)
    fc = phi.reshape(n, 3, n, 3).transpose(0, 2, 1, 3)  # phonopy layout [n, n, 3, 3]
    pinv, _ = force_constant_pinv(fc)
    np.testing.assert_allclose(eps_ionic(z, FOUR_PI_E2 / volume * pinv), modes, rtol=1e-4)


def test_shards_merge_into_one_table_that_reads_back_the_same(tmp_path):
    from argparse import Namespace

    from conftest import load_script

    script = load_script("benchmarks/eps_ionic_table.py")
    rng = np.random.default_rng(4)
    blocks = {"a": rng.normal(size=(6, 6)), "b": rng.normal(size=(12, 12)), "c": rng.normal(size=(3, 3))}
    labels = {k: rng.normal(size=(3, 3)) for k in blocks}
    write_ionic_table(tmp_path / "shard_0_of_2.npz", ["a", "b"], [blocks["a"], blocks["b"]], [labels["a"], labels["b"]],
                [0, 1])
    write_ionic_table(tmp_path / "shard_1_of_2.npz", ["c"], [blocks["c"]], [labels["c"]], [0])
    script.merge(Namespace(out=str(tmp_path), merge=str(tmp_path / "merged.npz")))
    back = read_ionic_table(tmp_path / "merged.npz")
    assert sorted(back) == ["a", "b", "c"] and back["b"][2] == 1
    for k in blocks:
        np.testing.assert_array_equal(back[k][0], blocks[k])
        np.testing.assert_array_equal(back[k][1], labels[k])
