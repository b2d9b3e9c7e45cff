"""Peak memory and time of one prediction of a ~10,000-atom crystal with the default-size ETGNN on CPU.

    .venv/bin/python benchmarks/memory.py [--threads N] [--quick]

Each case runs in a fresh subprocess so that its peak RSS (getrusage ru_maxrss) is its own.
Default-size model = ModelConfig defaults (hidden 128, 4 blocks, triplet width 64, 7 x 6 bases);
cutoff 5 A, cap 16, float32, torch.no_grad.  Target: peak RSS < 8 GiB.  Prints markdown tables,
including an estimate of where the memory goes (per-triplet tensors dominate).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import psutil

GIB = 1024**3
MIB = 1024**2
TARGET_GIB = 8.0
CUTOFF = 5.0
CAP = 16

CASES = {
    "quartz-bec": ("alpha-quartz SiO2 10x10x11 (rattled)", "quartz", ["born_charges", "dielectric"]),
    "quartz-all": ("alpha-quartz SiO2 10x10x11 (rattled)", "quartz", None),
    "rocksalt-bec": ("rocksalt NaCl 10x20x25 primitive (rattled)", "rocksalt", ["born_charges", "dielectric"]),
}


def rss() -> int:
    return psutil.Process().memory_info().rss


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


def make_crystal(kind: str):
    import ase.build

    from etgnn_core.prototypes import alpha_quartz

    if kind == "quartz":
        atoms = alpha_quartz().repeat((10, 10, 11))
    else:
        atoms = ase.build.bulk("NaCl", "rocksalt", a=5.64).repeat((10, 20, 25))  # 2 atoms per cell
    atoms.rattle(0.05, seed=0)
    return atoms


def run_case(name: str, threads: int) -> dict:
    """Measure one case in this process (called in a subprocess)."""
    import torch

    from etgnn_core.graph import build_graph
    from etgnn_core.model.etgnn import ETGNN, ModelConfig
    from etgnn_core.tensors.specs import DEFAULT_SPECS

    if threads:
        torch.set_num_threads(threads)
    _, kind, targets = CASES[name]
    specs = [DEFAULT_SPECS[t] for t in targets] if targets else list(DEFAULT_SPECS.values())
    out = {"case": name, "threads": torch.get_num_threads(), "rss_start": rss()}
    torch.manual_seed(0)
    model = ETGNN(ModelConfig(targets=specs, cutoff=CUTOFF, max_neighbors=CAP)).eval()
    out["params"] = sum(p.numel() for p in model.parameters())
    c = model.config
    out["config"] = dict(
        hidden=c.hidden,
        int_emb=c.int_emb,
        basis_emb=c.basis_emb,
        triplet_hidden=c.triplet_hidden,
        num_blocks=c.num_blocks,
        sbf=c.num_spherical * c.num_radial,
        n_targets=len(specs),
        n_triplet_targets=len(model.trip_specs),
        max_triplet_rank=max((s.rank for s in model.trip_specs), default=0),
    )
    atoms = make_crystal(kind)
    t = time.perf_counter()
    graph = build_graph(atoms, CUTOFF, CAP)
    out["graph_s"] = time.perf_counter() - t
    out.update(atoms=graph.n_atoms, edges=graph.n_edges, triplets=graph.n_triplets)
    out["rss_before_predict"] = rss()
    out["peak_before_predict"] = peak_rss()
    t = time.perf_counter()
    with torch.no_grad():
        result = model(graph)
    out["predict_s"] = time.perf_counter() - t
    out["finite"] = bool(all(torch.isfinite(v.atom).all() for v in result.tensors.values()))
    out["rss_after_predict"] = rss()
    out["peak"] = peak_rss()
    return out


def triplet_budget(r: dict) -> list[tuple[str, str, float]]:
    """Estimated float32 / int64 per-triplet tensors of one forward: (tensor, width, MiB)."""
    c, t = r["config"], r["triplets"]
    rows = [
        ("triplet_kj, triplet_ji (int64, graph)", "2 x 8 B", 16),
        ("e_kj, e_ji, angle", "3 + 3 + 1", 4 * 7),
        ("sbf (spherical basis, lives all forward)", f"{c['sbf']}", 4 * c["sbf"]),
        ("sbf temporaries (rbf[kj] x cbf)", f"2 x {c['sbf']}", 8 * c["sbf"]),
        ("sbf_emb (lives all forward)", f"{c['basis_emb']}", 4 * c["basis_emb"]),
        ("m_trip (triplet messages, lives all forward)", f"{c['triplet_hidden']}", 4 * c["triplet_hidden"]),
        (
            "triplet update temporaries (a[kj], b[ji], lin_sbf, products)",
            f"~4 x {c['triplet_hidden']}",
            16 * c["triplet_hidden"],
        ),
        ("edge update (DimeNet++): sbf -> int_emb, x_kj[kj], product", f"~3 x {c['int_emb']}", 12 * c["int_emb"]),
        ("assembly: e_ji, t e_ji^(x)(m-a)", "3 + 9", 4 * 12),
    ]
    return [(name, width, per * t / MIB) for name, width, per in rows]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--quick", action="store_true", help="only the quartz case with born_charges + dielectric")
    parser.add_argument("--case", choices=list(CASES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:  # child process
        print(json.dumps(run_case(args.case, args.threads)))
        return

    names = ["quartz-bec"] if args.quick else list(CASES)
    results = []
    for name in names:
        cmd = [sys.executable, __file__, "--case", name, "--threads", str(args.threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            print(f"case {name} failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
            continue
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))

    if not results:
        sys.exit(1)
    print("# Memory of one prediction, ~10,000-atom crystal, default-size ETGNN, CPU, float32, torch.no_grad\n")
    print(
        f"Machine: {os.cpu_count()} CPU cores, {psutil.virtual_memory().total / GIB:.1f} GiB RAM, "
        f"{results[0]['threads']} torch threads, load average {os.getloadavg()[0]:.1f} (shared with other jobs). "
        f"Cutoff {CUTOFF} A, cap {CAP}.\n"
    )
    print(
        "| crystal | targets | params | atoms | edges | triplets | graph s | predict s | RSS before predict GiB "
        "| peak RSS GiB | peak - before, bytes/triplet | target < 8 GiB |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in results:
        label, _, targets = CASES[r["case"]]
        extra = r["peak"] - r["rss_before_predict"]
        print(
            f"| {label} | {'+'.join(targets) if targets else 'all 9 heads'} | {r['params']:,} | {r['atoms']:,} | "
            f"{r['edges']:,} | {r['triplets']:,} | {r['graph_s']:.1f} | {r['predict_s']:.1f} | "
            f"{r['rss_before_predict'] / GIB:.2f} | {r['peak'] / GIB:.2f} | {extra / r['triplets']:,.0f} | "
            f"{'PASS' if r['peak'] / GIB < TARGET_GIB else 'FAIL'} |"
        )
    r = max(results, key=lambda x: x["peak"])
    size = f"{r['triplets']:,} triplets, {r['edges']:,} edges"
    print(f"\n## Where the memory goes (estimate for the largest case: {size})\n")
    print("| per-triplet tensor | floats per triplet | MiB |")
    print("|---|---|---:|")
    total = 0.0
    for name, width, mib in triplet_budget(r):
        total += mib
        print(f"| {name} | {width} | {mib:,.0f} |")
    print(f"| sum if all alive at once (upper bound) | | {total:,.0f} |")
    e = r["edges"]
    h = r["config"]["hidden"]
    print(
        f"\nPer-edge tensors are small in comparison: {e:,} edges x hidden {h} x 4 B = {e * h * 4 / MIB:,.0f} MiB "
        f"per message tensor. Triplets per atom: {r['triplets'] / r['atoms']:.0f}, edges per atom: "
        f"{r['edges'] / r['atoms']:.1f}."
    )
    ok = all(x["peak"] / GIB < TARGET_GIB for x in results)
    print(f"\nTarget peak RSS < {TARGET_GIB:.0f} GiB: {'PASS' if ok else 'FAIL'}")


if __name__ == "__main__":
    main()
