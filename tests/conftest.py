"""Shared test helpers: the one tiny model size, tiny model folders, a tiny float64 ETGNN fixture, and the
rattled test structures several files use."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from etgnn_core.model.etgnn import ETGNN, ModelConfig
from etgnn_core.tensors.specs import DEFAULT_SPECS, spec_for

REPO = Path(__file__).resolve().parents[1]
CUTOFF = 5.0
PERTURB = 0.1


def load_script(relpath: str, name: str | None = None):
    """A file of the repository (e.g. ``benchmarks/accuracy.py``, not a package) as a fresh module, without
    touching sys.path; registered in sys.modules under ``name`` (its stem) while it runs, as dataclasses need."""
    import importlib.util
    import sys

    path = REPO / relpath
    name = name or path.stem
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def rattled_ethanol(rattle: float, seed: int = 1):
    """Ethanol with every atom displaced (Gaussian, std ``rattle`` A): no accidental symmetry."""
    import ase.build

    atoms = ase.build.molecule("CH3CH2OH")
    atoms.rattle(rattle, seed=seed)
    return atoms


def rattled_wurtzite(rattle: float, seed: int = 2):
    """Wurtzite ZnO (4 atoms, a = 3.25 A, c = 5.2 A), rattled."""
    import ase.build

    atoms = ase.build.bulk("ZnO", "wurtzite", a=3.25, c=5.2)
    atoms.rattle(rattle, seed=seed)
    return atoms
# The one tiny model size of the tests.  A 4x4 spherical basis is stored in sbf_forms.json, so no
# sympy derivation is needed to build it.
TINY = {"hidden": 16, "int_emb": 8, "basis_emb": 4, "out_emb": 16, "triplet_hidden": 8, "num_blocks": 1,
        "num_radial": 4, "num_spherical": 4}


def save_tiny_model(folder, name: str, targets, elements=(), seed: int = 0, card: dict | None = None,
                    max_neighbors: int | None = 12, **spec_overrides) -> Path:
    """A tiny random ETGNN predicting ``targets`` saved as model folder ``folder/name``.

    Every weight is perturbed, so that outputs are O(0.1) and not exact zeros; ``spec_overrides``
    maps a target to TensorSpec overrides (e.g. ``dipole={"unit": "e*bohr"}``).
    """
    from etgnn_core.registry import save_model

    torch.manual_seed(seed)
    specs = [spec_for(t, **spec_overrides.get(t, {})) for t in targets]
    net = ETGNN(ModelConfig(targets=specs, elements=sorted(elements), max_neighbors=max_neighbors, **TINY))
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(PERTURB * torch.randn(p.shape, generator=gen))
        net.species_bias.weight.normal_(generator=gen)
        for i, t in enumerate(targets):  # physical on-site levels, so predictions raise no physics warning
            if t in ("dielectric", "polarizability") and net.n_self[i]:
                net.species_bias.weight[:, sum(net.n_self[:i])] += 5.0
    return save_model(net, Path(folder) / name, name=name, description=f"tiny test model ({', '.join(targets)})",
                      card=card if card is not None else {"notes": "random weights, for tests"}).resolve()


def make_tiny_model(seed: int = 0, max_neighbors: int | None = 16) -> ETGNN:
    """Tiny float64 ETGNN (hidden 16, 2 blocks, small bases) with every DEFAULT_SPECS head and O(1) random outputs.

    Random species biases and output scales, and every weight perturbed, so that no head is
    zero or purely isotropic (an equivariance test on such a head could not fail).
    """
    torch.manual_seed(seed)
    config = ModelConfig(targets=list(DEFAULT_SPECS.values()), cutoff=CUTOFF, max_neighbors=max_neighbors,
                         avg_degree=8.0, **{**TINY, "num_blocks": 2})
    model = ETGNN(config).double().eval()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(PERTURB * torch.randn(p.shape, generator=gen, dtype=p.dtype))
        model.species_bias.weight.copy_(
            torch.randn(model.species_bias.weight.shape, generator=gen, dtype=torch.float64)
        )
        model.scales.copy_(0.5 + 1.5 * torch.rand(model.scales.shape, generator=gen, dtype=torch.float64))
    return model


@pytest.fixture(scope="session")
def tiny_model() -> ETGNN:
    return make_tiny_model()


@pytest.fixture(scope="module")
def root():
    """The reference data folder (shared/data); tests that need it skip where it is absent."""
    from etgnn_core.data import data_root

    r = data_root()
    if r is None:
        pytest.skip("reference data (shared/data) not available")
    return r
