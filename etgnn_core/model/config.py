"""ModelConfig: the typed, serialisable description of an ETGNN (no torch import, so listing models is fast)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields

from etgnn_core.tensors.specs import TensorSpec


@dataclass
class ModelConfig:
    """Everything needed to rebuild an ETGNN (serialised as config.json next to the weights)."""

    targets: list[TensorSpec]
    cutoff: float = 5.0  # Angstrom
    max_neighbors: int | None = 16  # cap per atom (ties with the last kept neighbour are kept)
    hidden: int = 128  # edge message width H
    int_emb: int = 64  # DimeNet++ interaction down-projection
    basis_emb: int = 8  # basis projection width
    out_emb: int = 128  # atom embedding width (the PCA map shows these)
    triplet_hidden: int = 64  # triplet message width C (eq 11, n_tri)
    num_blocks: int = 4  # edge + triplet update blocks
    num_radial: int = 6
    num_spherical: int = 7
    envelope_exponent: int = 5
    avg_degree: float = 16.0  # normaliser of edge sums (set from training data)
    elements: list[int] = field(default_factory=list)  # atomic numbers seen in training ([] = any)

    def __post_init__(self):
        self.targets = [t if isinstance(t, TensorSpec) else TensorSpec.from_dict(t) for t in self.targets]
        if not self.targets:
            raise ValueError("a model needs at least one target tensor")
        names = [t.name for t in self.targets]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate target names in {names}")
        if self.cutoff <= 0:
            raise ValueError(f"cutoff must be positive, got {self.cutoff}")

    @property
    def uses_triplet_messages(self) -> bool:
        return any(t.uses_triplets for t in self.targets)

    def spec(self, name: str) -> TensorSpec:
        for t in self.targets:
            if t.name == name:
                return t
        raise KeyError(f"this model does not predict {name!r}; it predicts {[t.name for t in self.targets]}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["targets"] = [t.to_dict() for t in self.targets]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"model config has unknown keys {sorted(unknown)}; known: {sorted(known)}")
        if "targets" not in d:
            raise ValueError("model config has no 'targets'")
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)
