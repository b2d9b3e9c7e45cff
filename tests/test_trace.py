"""The traced trunk (etgnn_core.model.trace) predicts what the eager network predicts, on graphs of
any size, is rebuilt when weights change, and is dropped when it cannot be trusted."""

from __future__ import annotations

import copy

import ase
import numpy as np
import pytest
import torch
from conftest import CUTOFF, make_tiny_model, rattled_ethanol, rattled_wurtzite

from etgnn_core.graph import build_graph, collate
from etgnn_core.model.trace import build_trace, traced_inference
from etgnn_core.ops import TRIPLET_BLOCK


@pytest.fixture
def in_worker(monkeypatch):
    """Every forward pass here may trace, as in a prediction worker thread."""
    monkeypatch.setenv("ETGNN_TRACE", "1")
    with traced_inference():
        yield


def graphs():
    """Molecule, crystal, a batch of both, and a lone atom (no edges, no triplets)."""
    mol = build_graph(rattled_ethanol(0.05), CUTOFF, 16)
    xtal = build_graph(rattled_wurtzite(0.05), CUTOFF, 16)
    lone = build_graph(ase.Atoms("Ne", positions=[[0, 0, 0]]), CUTOFF, 16)
    return {"molecule": mol, "crystal": xtal, "batch": collate([mol, xtal, mol]), "lone atom": lone}


def outputs(net, graph, trace: bool, monkeypatch) -> dict[str, torch.Tensor]:
    monkeypatch.setenv("ETGNN_TRACE", "1" if trace else "0")
    with torch.no_grad():
        out = net(graph)
    return {name: t.structure for name, t in out.tensors.items()} | {
        f"{name} atoms": t.atom for name, t in out.tensors.items()}


def tiny(seed: int = 0):
    """The tiny test model in float32, the only dtype that is traced."""
    return make_tiny_model(seed=seed).float()


def assert_same(a: dict, b: dict, where: str = ""):
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-6, atol=1e-6, msg=f"{where} {key}")


@pytest.mark.usefixtures("in_worker")
def test_traced_trunk_matches_eager_on_every_graph_size(monkeypatch):
    net = tiny()
    for name, graph in graphs().items():
        traced = outputs(net, graph, True, monkeypatch)
        eager = outputs(net, graph, False, monkeypatch)
        assert_same(traced, eager, name)
    assert net._traces.built, "inference did not use a trace"
    assert net._traces.trace is not None, "the trace was dropped"


@pytest.mark.usefixtures("in_worker")
def test_no_trace_with_gradients_in_training_mode_or_float64(monkeypatch):
    net = tiny()
    graph = graphs()["crystal"]
    net(graph)  # autograd on: eager
    with torch.no_grad():
        double = make_tiny_model()
        double(graph)  # float64: eager
        net.train()
        net(graph)
    assert not net._traces.built and not double._traces.built


@pytest.mark.usefixtures("in_worker")
def test_trace_follows_new_weights(monkeypatch):
    """A trace built before load_state_dict must not predict with the old weights."""
    net, other = tiny(0), tiny(3)
    graph = graphs()["batch"]
    before = outputs(net, graph, True, monkeypatch)
    net.load_state_dict(other.state_dict())
    after = outputs(net, graph, True, monkeypatch)
    assert_same(after, outputs(other, graph, False, monkeypatch))
    assert not torch.allclose(before["born_charges"], after["born_charges"])


@pytest.mark.usefixtures("in_worker")
def test_deepcopy_gets_its_own_trace(monkeypatch):
    net = tiny()
    graph = graphs()["crystal"]
    outputs(net, graph, True, monkeypatch)
    twin = copy.deepcopy(net)
    assert not twin._traces.built
    assert_same(outputs(twin, graph, True, monkeypatch), outputs(net, graph, False, monkeypatch))


def test_a_trace_that_bakes_in_a_size_is_dropped():
    """A trunk whose Python code branches on a size traces to a graph that is wrong on other sizes."""
    net = tiny()

    class SizeDependent(type(net)):
        def trunk(self, z, *rest):
            t_edge, t_trip, h, t_self = super().trunk(z, *rest)
            if int(z.shape[0]) > 5:  # baked into the trace as the example's branch
                t_self = t_self + 1.0
            return t_edge, t_trip, h, t_self

    net.__class__ = SizeDependent
    with pytest.warns(RuntimeWarning, match="without its traced trunk"):
        assert build_trace(net) is None


def test_only_prediction_workers_trace(tmp_path, monkeypatch):
    """One structure (the app) runs eagerly; many structures over two threads run the trace."""
    from conftest import save_tiny_model

    from etgnn_core.api import load_model

    model = load_model(save_tiny_model(tmp_path, "m", ["born_charges"]), device="cpu")
    crystals = [rattled_wurtzite(0.05, seed=s) for s in range(6)]
    monkeypatch.setenv("ETGNN_TRACE", "1")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = model.predict(crystals, batch_size=2)
        assert not model.net._traces.built
        torch.set_num_threads(2)
        two = model.predict(crystals, batch_size=2)
        assert model.net._traces.built and model.net._traces.trace is not None
    finally:
        torch.set_num_threads(before)
    for a, b in zip(one, two):
        np.testing.assert_allclose(a["born_charges"], b["born_charges"], rtol=1e-5, atol=1e-6)


def blockwise_triplet_coefficients(net, edge_messages, z, rbf, sbf, src, dst, kj, ji, fc):
    """The triplet stream written with the paper's blocks, one [T, C] message for all triplets."""
    m_trip = net.triplet_embedding(z, rbf, sbf, src, dst, kj, ji)
    sbf_emb = net.sbf_projection(sbf)
    for update, m_edge in zip(net.triplet_updates, edge_messages, strict=True):
        m_trip = update(m_trip, m_edge, rbf, sbf_emb, kj, ji)
    return net.triplet_head(m_trip, fc.index_select(0, kj) * fc.index_select(0, ji))


@pytest.mark.usefixtures("in_worker")
def test_inference_in_blocks_of_triplets_matches_one_block(monkeypatch):
    """CPU inference runs the triplets in blocks of TRIPLET_BLOCK (etgnn_core.ops.triplet_message,
    blocks.triplet_stream); training runs one block.  A batch of > 3 blocks of triplets gives the
    same coefficients both ways, traced or not, and the same as the blocks' own forward chain."""
    net = tiny()
    graph = collate([build_graph(rattled_wurtzite(0.05, seed=s), CUTOFF, 16) for s in range(14)])
    assert graph.triplet_kj.shape[0] > 3 * TRIPLET_BLOCK
    traced = outputs(net, graph, True, monkeypatch)
    eager = outputs(net, graph, False, monkeypatch)
    one_block = {name: t.structure for name, t in net(graph).tensors.items()} | {  # autograd on: one block
        f"{name} atoms": t.atom for name, t in net(graph).tensors.items()}
    assert_same(traced, eager, "traced vs eager")
    assert_same(eager, {k: v.detach() for k, v in one_block.items()}, "blocks vs one block")

    calls, edge_messages = [], []
    for block in net.edge_updates:  # the edge message after each block, for the blockwise reference
        block.register_forward_hook(lambda module, args, out: edge_messages.append(out))
    real = type(net).triplet_coefficients

    def reference(self, z, rbf, sbf, src, dst, kj, ji, factors, fc):
        calls.append(1)
        want = blockwise_triplet_coefficients(self, edge_messages, z, rbf, sbf, src, dst, kj, ji, fc)
        got = real(self, z, rbf, sbf, src, dst, kj, ji, factors, fc)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
        return got

    monkeypatch.setattr(type(net), "triplet_coefficients", reference)
    monkeypatch.setenv("ETGNN_TRACE", "0")
    with torch.no_grad():
        net(graph)
    assert calls, "the triplet stream was not used"
