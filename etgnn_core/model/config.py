"""ModelConfig: the typed, serialisable description of an ETGNN (no torch import, so listing models is fast)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields

from etgnn_core.tensors.specs import TensorSpec

# Bounds of every numeric field: a config.json (or a training config's model section) outside them is
# refused with the key named, instead of hanging (num_blocks: 1e6) or failing deep in torch (hidden: -3).
INT_BOUNDS = {
    "hidden": (1, 4096), "int_emb": (1, 4096), "basis_emb": (1, 4096), "out_emb": (1, 4096),
    "triplet_hidden": (1, 4096), "num_blocks": (1, 32), "num_radial": (1, 16), "num_spherical": (1, 10),
    "envelope_exponent": (1, 20),
}
FLOAT_BOUNDS = {"cutoff": (0.5, 20.0), "avg_degree": (1e-3, 1e4)}  # cutoff in Angstrom
MAX_NEIGHBORS_BOUNDS = (1, 1000)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_fields(c) -> None:
    """Raise ValueError naming the first field of ModelConfig ``c`` with a wrong type or out of bounds."""
    for key, (lo, hi) in INT_BOUNDS.items():
        v = getattr(c, key)
        if not _is_int(v) or not lo <= v <= hi:
            raise ValueError(f"key {key!r} must be an integer from {lo} to {hi}, got {v!r}")
    for key, (lo, hi) in FLOAT_BOUNDS.items():
        v = getattr(c, key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= float(v) <= hi:
            raise ValueError(f"key {key!r} must be a number from {lo:g} to {hi:g}, got {v!r}")
    lo, hi = MAX_NEIGHBORS_BOUNDS
    if c.max_neighbors is not None and (not _is_int(c.max_neighbors) or not lo <= c.max_neighbors <= hi):
        raise ValueError(f"key 'max_neighbors' must be null or an integer from {lo} to {hi}, got {c.max_neighbors!r}")
    if not isinstance(c.elements, list) or not all(_is_int(z) and 1 <= z <= 118 for z in c.elements):
        raise ValueError(f"key 'elements' must be a list of atomic numbers 1..118, got {c.elements!r}")


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
    # structure targets whose known part (a model folder's known_parts.json; Sample.offsets in training) the
    # network scales per structure: prediction = network + (1 + g) x known part, g an invariant read out of
    # the atom embeddings (0 at the start).  E.g. the ionic piezo term, whose best multiple varies by crystal
    gated: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.targets = [t if isinstance(t, TensorSpec) else TensorSpec.from_dict(t) for t in self.targets]
        if not self.targets:
            raise ValueError("a model needs at least one target tensor")
        names = [t.name for t in self.targets]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate target names in {names}")
        check_fields(self)
        for name in self.gated:
            if name not in names or self.spec(name).per_atom:
                raise ValueError(f"key 'gated': {name!r} is not a structure target of this model ({names})")

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
        if not isinstance(d, dict):
            raise ValueError(f"model config must be a mapping of keys, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"model config has unknown keys {sorted(unknown)}; known: {sorted(known)}")
        if "targets" not in d:
            raise ValueError("model config has no 'targets'")
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)
