"""Known target parts (Sample.offsets): read from a table, batched, added before the loss and the score."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TINY
from test_train import zno_samples

from etgnn_core.data import DataError
from etgnn_core.data.offsets import attach_offsets, read_offsets
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
