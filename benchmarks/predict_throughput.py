"""Batched prediction throughput on CPU: structures per second for 1,000 small crystals.

    python benchmarks/predict_throughput.py [--n 1000] [--batch-sizes 1 8 32 128] [--threads N]
                                            [--model NAME_OR_FOLDER] [--committee M] [--profile]

Model: by default a randomly initialised ETGNN of the shipped default size (configs/perturbed_hfo2.yaml:
hidden 128, 4 blocks, cutoff 5 A, cap 12 neighbours, triplet_hidden 32, out_emb 64; targets
born_charges + dielectric) -- speed does not depend on the weights; ``--model`` times a shipped one.
Structures: rattled cells of 2-9 atoms (Si, NaCl, ZnO wurtzite, MgO, alpha-quartz SiO2) built with
ase, so the script needs no data files.

For every batch size it reports
* ``graph``: ``Model.prepare`` (validation + vesin neighbour list + cap + triplets), per structure;
* ``model``: collate + forward + splitting into per-structure numpy ``Prediction`` objects;
* ``total``: ``Model.predict(structures, batch_size=b)`` end to end (what users call), as wall-clock
  structures/s and as structures per CPU-second of this process (equal to wall-clock on an idle
  machine with one thread; the 2-core development machine is shared with trainings).
Prints a markdown table.  Targets, wall clock on an idle 2-core machine with ``--threads 2`` (cells
of <= 10 atoms): >= 500 structures/s for one model, >= 150/s for a 4-member committee; with one
thread the per-CPU-second rate is judged against 200/s.  Several threads run whole batches in
worker threads (etgnn_core.api.map_batches) that run a traced trunk without the GIL, so the wall-clock rate
is the one to read.

``--committee M`` times a committee of M default-size members with random weights (each its own
seed) and a 2,000-atom random embedding reference, so the domain check is timed too: the graph is
built once per structure and every member runs on the same batch (etgnn_core.committee.Committee).
Target for 4 members: >= 150 crystals/s.  ``--model`` may also name a shipped committee.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch
from _models import shipped_size_model
from ase import Atoms
from ase.build import bulk

from etgnn_core.prototypes import alpha_quartz

TARGET = {1: 200.0, 2: 500.0}  # structures / s by torch threads: per CPU-second (1), wall (2+)
COMMITTEE_TARGET = 150.0  # crystals / s for a 4-member committee


def small_crystals(n: int, seed: int = 0) -> list[Atoms]:
    """``n`` rattled crystals of 2-9 atoms (positions perturbed by 0.05 A, cells strained by up to 2%)."""
    rng = np.random.default_rng(seed)
    protos = [
        bulk("Si", "diamond", a=5.43),  # 2 atoms
        bulk("NaCl", "rocksalt", a=5.64),  # 2 atoms
        bulk("MgO", "rocksalt", a=4.21),  # 2 atoms
        bulk("ZnO", "wurtzite", a=3.25, c=5.20),  # 4 atoms
        alpha_quartz(),  # 9 atoms
    ]
    out = []
    for i in range(n):
        a = protos[i % len(protos)].copy()
        strain = np.eye(3) + 0.02 * rng.uniform(-1, 1, (3, 3))
        a.set_cell(a.cell.array @ strain, scale_atoms=True)
        a.positions += rng.normal(0.0, 0.05, a.positions.shape)
        out.append(a)
    return out


def default_model(device: str = "cpu", config: str | None = None):
    """A shipped-size model with random weights, or one with the model section and targets of ``config``."""
    if not config:
        return shipped_size_model(device=device)
    from etgnn_core.api import Model
    from etgnn_core.model.etgnn import ETGNN, ModelConfig
    from etgnn_core.registry import ModelInfo
    from etgnn_core.tensors.specs import spec_for
    from etgnn_core.train import TrainConfig

    c = TrainConfig.from_file(config)
    cfg = ModelConfig(targets=[spec_for(t) for t in c.targets], **dict(c.model))
    info = ModelInfo(f"{c.name} size (random weights)", None, "", {t.name: t.unit for t in cfg.targets}, [])
    return Model(ETGNN(cfg), info, device)


def default_committee(members: int, device: str = "cpu", config: str | None = None):
    """A committee of ``members`` default-size random models with a random embedding reference."""
    from etgnn_core.committee import Committee

    nets = []
    for k in range(members):
        torch.manual_seed(k)
        nets.append(default_model(device, config).net)
    info = default_model(device, config).info
    info.members = [f"member{k}" for k in range(members)]
    rng = np.random.default_rng(0)
    reference = {"embeddings": rng.normal(size=(2000, nets[0].config.out_emb)).astype(np.float32),
                 "numbers": rng.integers(1, 80, 2000)}
    domain = {"periodic": "crystals", "element_counts": {}, "rare_count": 0,
              "spread_p99": {t.name: 1.0 for t in nets[0].config.targets},
              "embedding": {"threshold": 1e9, "calib_p99": 1.0}}
    return Committee(nets, info, None, domain, reference, device)


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def time_split(model, structures, batch_size: int) -> dict[str, tuple[float, float]]:
    """(wall, CPU) seconds building graphs, in the model (collate + forward + split), and end to end."""
    from etgnn_core.graph import collate

    c0 = _clock()
    prepared = [model.prepare(a) for a in structures]
    c1 = _clock()
    committee = hasattr(model, "nets")
    with torch.no_grad():
        for start in range(0, len(prepared), batch_size):
            chunk = prepared[start : start + batch_size]
            graph = collate([g for _, g in chunk])
            if committee:  # every member on the one batch, then mean / std, as Committee.predict
                outs = [net(graph, embeddings=k == 0) for k, net in enumerate(model.nets)]
                mean, spread, _ = model._combine(outs, False)
                model._attach(model._split(mean, [a for a, _ in chunk], True, False), spread, None, mean.graph)
            else:
                out = model.net(graph)
                model._split(out, [a for a, _ in chunk], False, False)
    c2 = _clock()
    model.predict(structures, batch_size=batch_size)
    c3 = _clock()
    return {k: (b[0] - a[0], b[1] - a[1]) for k, a, b in (("graph", c0, c1), ("model", c1, c2), ("total", c2, c3))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1000, help="number of structures (default 1000)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32, 128])
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: small-crystal graphs are too small for intra-op "
        "parallelism; 0 keeps torch's default)",
    )
    p.add_argument("--model", help="time this shipped model (name or folder) instead of a random default-size one")
    p.add_argument("--config", help="random model(s) with the model section and targets of this training config")
    p.add_argument("--committee", type=int, default=0, metavar="M",
                   help="time a committee of M default-size random members (target >= 150/s for M = 4)")
    p.add_argument("--profile", action="store_true", help="print a cProfile summary of predict at batch 32")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    t = time.perf_counter()
    if args.model:
        from etgnn_core.api import load_model

        model = load_model(args.model, device="cpu")
    elif args.committee:
        model = default_committee(args.committee, "cpu", args.config)
    else:
        model = default_model("cpu", args.config)
    build_s = time.perf_counter() - t
    structures = small_crystals(args.n)
    if model.elements:
        allowed = set(model.elements)
        structures = [a for a in structures if set(a.numbers) <= allowed] or structures
    n = len(structures)
    members = len(getattr(model, "nets", [model.net]))
    target = COMMITTEE_TARGET if members > 1 else TARGET[min(torch.get_num_threads(), 2)]
    n_atoms = np.mean([len(a) for a in structures])
    # warm-up: allocator, lazy init, and (2+ threads) the one-off trace of each network (~1 s, once per
    # process and model, like loading it: etgnn_core.model.trace)
    model.predict(structures[:64], batch_size=16)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"model: {model.name}; {members} member(s) of {sum(p.numel() for p in model.net.parameters()):,} parameters; "
        f"built/loaded in {build_s:.1f} s"
    )
    print(
        f"{n} structures, {n_atoms:.1f} atoms on average; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
        f"load average {load:.1f} at start"
    )
    print()
    print(
        "| batch size | graph building (CPU ms/structure) | model (CPU ms/structure) | predict, wall (structures/s) "
        f"| predict, per CPU-second (structures/s) | >= {target:.0f}/s |"
    )
    print("|---:|---:|---:|---:|---:|:---:|")
    for b in args.batch_sizes:
        s = time_split(model, structures, b)
        wall, cpu = n / s["total"][0], n / max(s["total"][1], 1e-9)
        rate = cpu if torch.get_num_threads() == 1 else wall  # one thread: CPU rate = rate on an idle core
        print(
            f"| {b} | {1e3 * s['graph'][1] / n:.2f} | {1e3 * s['model'][1] / n:.2f} | {wall:.0f} | {cpu:.0f} "
            f"| {'yes' if rate >= target else 'no'} |",
            flush=True,
        )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"\nload average {load:.1f} at the end.  'per CPU-second' divides by this process's CPU time: with "
        "1 thread it is the wall-clock rate on an idle core (the machine here may be shared)."
    )

    if args.profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.enable()
        model.predict(structures, batch_size=32)
        prof.disable()
        print()
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    return 0


if __name__ == "__main__":
    from etgnn_core.device import tune_cpu_allocator

    tune_cpu_allocator()  # as the CLI and the app do
    raise SystemExit(main())
