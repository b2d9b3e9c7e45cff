"""ETGNN: DimeNet++ edge messages + triplet messages -> coefficients -> tensors of every rank."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from etgnn_core.graph import Graph
from etgnn_core.model.blocks import (
    N_ELEMENTS,
    AtomOutputBlock,
    EdgeEmbeddingBlock,
    EdgeHead,
    EdgeUpdateBlock,
    RadialBasis,
    SphericalBasis,
    TripletEmbeddingBlock,
    TripletHead,
    TripletUpdateBlock,
    cosine_cutoff,
    triplet_stream,
)
from etgnn_core.model.config import ModelConfig
from etgnn_core.model.trace import TraceCache, use_trace
from etgnn_core.ops import gather, scatter_sum
from etgnn_core.tensors.assemble import AssembledTensor, Geometry, assemble


@dataclass
class ModelOutput:
    tensors: dict[str, AssembledTensor]
    embeddings: torch.Tensor | None  # [n_atoms, out_emb]
    graph: Graph
    edge_vectors: torch.Tensor  # [n_edges, 3] r_kj in the model's dtype
    # the scalar coefficients the tensors are built from (before the target scale and 1/<deg>):
    edge_coefficients: torch.Tensor | None = None  # [n_edges, n_targets] t_kj, column i = config.targets[i]
    # [n_triplets, n_triplet_targets] t_kji, one column per target with uses_triplets, in target order
    triplet_coefficients: torch.Tensor | None = None
    # config.gated target -> [n_structures] g: the known part is added (1 + g) times (ModelConfig.gated)
    gates: dict[str, torch.Tensor] = field(default_factory=dict)


class ETGNN(nn.Module):
    """Edge-based tensor GNN.  forward(graph) -> ModelOutput with one AssembledTensor per target."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        c = self.config = config
        self.rbf = RadialBasis(c.num_radial, c.cutoff, c.envelope_exponent)
        self.sbf = SphericalBasis(c.num_spherical, c.num_radial, c.cutoff, c.envelope_exponent)
        self.edge_embedding = EdgeEmbeddingBlock(c.num_radial, c.hidden)
        self.edge_updates = nn.ModuleList(
            EdgeUpdateBlock(c.hidden, c.int_emb, c.basis_emb, c.num_spherical, c.num_radial)
            for _ in range(c.num_blocks)
        )
        self.trip_specs = [t for t in c.targets if t.uses_triplets]
        if c.uses_triplet_messages:
            self.sbf_projection = nn.Linear(c.num_spherical * c.num_radial, c.basis_emb, bias=False)
            self.triplet_embedding = TripletEmbeddingBlock(c.num_radial, c.num_spherical, c.hidden, c.triplet_hidden)
            self.triplet_updates = nn.ModuleList(
                TripletUpdateBlock(c.hidden, c.triplet_hidden, c.num_radial, c.basis_emb) for _ in range(c.num_blocks)
            )
            self.triplet_head = TripletHead(c.triplet_hidden, len(self.trip_specs))
        self.edge_head = EdgeHead(c.hidden, len(c.targets))
        self.n_self = [t.n_self for t in c.targets]
        self.atom_output = AtomOutputBlock(c.num_radial, c.hidden, c.out_emb, sum(self.n_self))
        # Per-species on-site bias (e.g. the species-mean isotropic Born charge), set before training.
        self.species_bias = nn.Embedding(N_ELEMENTS, max(sum(self.n_self), 1))
        nn.init.zeros_(self.species_bias.weight)
        if c.gated:  # per-structure multiples of known parts; zero weights: the plain sum at the start
            self.gate = nn.Linear(c.out_emb, len(c.gated))
            nn.init.zeros_(self.gate.weight)
            nn.init.zeros_(self.gate.bias)
        # Output scale of each target (target standard deviation), set before training.
        self.register_buffer("scales", torch.ones(len(c.targets)))
        self._traces = TraceCache()  # CPU inference runs a traced trunk (etgnn_core.model.trace)

    def forward(self, graph: Graph, embeddings: bool = False) -> ModelOutput:
        p = next(self.parameters())
        g = graph.to(device=p.device, dtype=p.dtype)
        vec = g.edge_vectors()  # [E, 3]
        dist = vec.norm(dim=-1)  # [E]
        unit = vec / dist.unsqueeze(-1)  # [E, 3] e_kj
        kj, ji = g.triplet_kj, g.triplet_ji
        e_kj, e_ji = gather(unit, kj), gather(unit, ji)  # [T, 3]
        angle = torch.atan2(torch.cross(e_kj, e_ji, dim=-1).norm(dim=-1), (e_kj * e_ji).sum(-1))  # [T]

        z = g.atomic_numbers
        inputs = (z, dist, angle, g.edge_src, g.edge_dst, kj, ji)
        traced = self._traces.get(self) if use_trace(self, dist) else None
        t_edge, t_trip, h, t_self = traced(*inputs) if traced is not None else self.trunk(*inputs)
        t_trip = t_trip if self.config.uses_triplet_messages else None
        has_neighbors = (torch.bincount(g.edge_dst, minlength=g.n_atoms) > 0).to(p.dtype).unsqueeze(-1)
        t_self = t_self * has_neighbors  # [N, n_self]: an atom without neighbours gets no tensor

        geo = Geometry(unit, g.edge_dst, kj, ji, g.batch, g.positions, g.periodic, g.n_atoms, g.n_structures,
                       g.atomic_numbers)
        out, self_col, trip_col = {}, 0, 0
        for i, spec in enumerate(self.config.targets):
            tt = None
            if spec.uses_triplets:
                tt, trip_col = t_trip[:, trip_col], trip_col + 1
            ts = t_self[:, self_col : self_col + spec.n_self]
            self_col += spec.n_self
            out[spec.name] = assemble(spec, geo, t_edge[:, i], tt, ts, self.scales[i], self.config.avg_degree)
        return ModelOutput(out, h if embeddings else None, g, vec, t_edge, t_trip, self.gates(h, g))

    def gates(self, h: torch.Tensor, g: Graph) -> dict[str, torch.Tensor]:
        """config.gated target -> [n_structures] g, the mean over a structure's atoms of a linear read-out of
        their embeddings h [N, out_emb]: invariant, so (1 + g) x an equivariant part stays equivariant."""
        if not self.config.gated:
            return {}
        per_atom = self.gate(h)  # [N, n_gated]
        count = torch.bincount(g.batch, minlength=g.n_structures).clamp(min=1).to(per_atom.dtype)  # [S]
        mean = scatter_sum(per_atom, g.batch, g.n_structures) / count.unsqueeze(-1)  # [S, n_gated]
        return {name: mean[:, i] for i, name in enumerate(self.config.gated)}

    def trunk(self, z, dist, angle, src, dst, kj, ji):
        """Bases -> edge and triplet messages -> coefficients t_kj, t_kji, atom embeddings, on-site terms.

        Tensors in, tensors out, no data-dependent Python control flow: CPU inference runs a
        TorchScript trace of it (see etgnn_core.model.trace).  z [N], dist [E], angle [T],
        src/dst [E], kj/ji [T] -> t_edge [E, n_targets], t_trip [T, n_trip] (empty [T, 0] without
        triplet messages), h [N, out_emb], t_self [N, n_self] (before masking atoms without neighbours).
        """
        rbf = self.rbf(dist)  # [E, R]
        sbf = self.sbf(dist, angle, kj)  # [T, S*R]
        m = self.edge_embedding(z, rbf, src, dst)  # [E, H]
        factors = []  # per block: the edge factors a, b [E, C] of the triplet update (eq 12)
        for i, update in enumerate(self.edge_updates):
            m = update(m, rbf, sbf, kj, ji)  # DimeNet++ updates the message of edge j->i from k->j
            if self.config.uses_triplet_messages:
                factors.append(self.triplet_updates[i].edge_terms(m, rbf))

        fc = cosine_cutoff(dist, self.config.cutoff)  # [E]
        t_edge = self.edge_head(m, fc)  # [E, n_targets]
        if self.config.uses_triplet_messages:
            t_trip = self.triplet_coefficients(z, rbf, sbf, src, dst, kj, ji, factors, fc)  # [T, n_triplet_targets]
        else:
            t_trip = angle.new_zeros(angle.shape[0], 0)
        h = self.atom_output.embed(m, rbf, dst, z.shape[0], 1.0 / self.config.avg_degree)  # [N, out_emb]
        t_self = self.atom_output(h) + self.species_bias(z)  # [N, n_self]
        return t_edge, t_trip, h, t_self

    def triplet_coefficients(self, z, rbf, sbf, src, dst, kj, ji, factors, fc):  # -> t_kji [T, n_out]
        """Triplet embedding -> updates -> head (eqs 11, 12), streamed by blocks of triplets (triplet_stream)."""
        on_kj, on_ji = self.triplet_embedding.edge_terms(z, rbf, src, dst)  # [E, C]
        # [in, out] row-major weights for plain matmuls (MKL's transposed-B path is slow for K = S*R)
        w_upd = [u.lin_sbf.weight.t().contiguous() for u in self.triplet_updates]  # [B, C]
        head = self.triplet_head.lin
        return triplet_stream(on_kj, on_ji, sbf, self.triplet_embedding.lin_sbf.weight.t().contiguous(),
                              self.sbf_projection.weight.t().contiguous(), [f[0] for f in factors],
                              [f[1] for f in factors], w_upd, head.weight, head.bias, fc, kj, ji)

    def train(self, mode: bool = True):
        self._traces.clear()  # weights may change from here on; a trace is rebuilt when needed
        return super().train(mode)

    def _apply(self, fn, *args, **kwargs):
        self._traces.clear()  # .to() / .double() give new parameter tensors
        return super()._apply(fn, *args, **kwargs)

    def load_state_dict(self, *args, **kwargs):
        self._traces.clear()
        return super().load_state_dict(*args, **kwargs)
