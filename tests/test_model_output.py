"""ModelOutput exposes the scalar coefficients the tensors are built from (the Learn page reads them)."""

from __future__ import annotations

import torch
from ase.build import bulk

from etgnn_core.graph import build_graph, collate
from etgnn_core.tensors.assemble import Geometry, assemble


def test_edge_and_triplet_coefficients_rebuild_every_edge_contribution(tiny_model):
    atoms = bulk("ZnO", "wurtzite", a=3.25, c=5.2) * (2, 1, 1)
    atoms.rattle(0.05, seed=3)
    c = tiny_model.config
    with torch.no_grad():
        out = tiny_model(collate([build_graph(atoms, c.cutoff, c.max_neighbors)]))
    g = out.graph
    assert out.edge_coefficients.shape == (len(g.edge_src), len(c.targets))
    n_trip = sum(t.uses_triplets for t in c.targets)
    assert n_trip and out.triplet_coefficients.shape == (len(g.triplet_kj), n_trip)
    unit = out.edge_vectors / out.edge_vectors.norm(dim=-1, keepdim=True)
    geo = Geometry(unit, g.edge_dst, g.triplet_kj, g.triplet_ji, g.batch, g.positions, g.periodic, g.n_atoms,
                   g.n_structures, g.atomic_numbers)
    col = 0
    for i, spec in enumerate(c.targets):
        t_trip = out.triplet_coefficients[:, col] if spec.uses_triplets else None
        col += spec.uses_triplets
        t_self = torch.zeros(g.n_atoms, spec.n_self, dtype=unit.dtype)
        rebuilt = assemble(spec, geo, out.edge_coefficients[:, i], t_trip, t_self, tiny_model.scales[i], c.avg_degree)
        assert float(out.tensors[spec.name].edge.abs().max()) > 1e-3, spec.name
        torch.testing.assert_close(rebuilt.edge, out.tensors[spec.name].edge, msg=spec.name)
