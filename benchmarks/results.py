"""Write docs/results.md: accuracy of the shipped models and the speed and memory benchmarks.

    python benchmarks/results.py [--quick] [--only accuracy throughput ...] [-o docs/results.md]

Runs each script of benchmarks/ in its own process (as a user would) and collects the markdown
it prints under one header that says when, on what hardware and at which git commit the numbers
were measured.  ``--quick`` passes each script its quick option (fewer structures, no
100,000-atom graph): the numbers are then rougher, and the header says so.  A script that fails
is reported in its section; the others still run.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# section title, script, full arguments, quick arguments, what it measures
SECTIONS = {
    # the whole test splits even when quick: about a minute, and per-cell-size rows need every structure
    "accuracy": ("Accuracy on the test splits", "accuracy.py", ["--markdown"], ["--markdown"],
                 "Test MAE of every shipped model on its own held-out split, next to a species-mean baseline "
                 "and the ETGNN paper where it reports one."),
    "physics": ("Physics checks on DFT labels", "physics_checks.py", ["--markdown"], ["--markdown"],
                "How often each physics warning (etgnn_core/tensors/checks.py) fires on the reference sets' DFT "
                "labels: false alarms, or crystals that are unusual indeed."),
    # the 100,000-atom graph even when quick (about a minute more): the per-atom target spans 100 to 100,000 atoms
    "throughput": ("Inference and graph construction", "throughput.py", [], [],
                   "ETGNN against PyG's DimeNet++ on the same graphs; neighbour list and triplets per atom."),
    "memory": ("Memory of a 10,000-atom crystal", "memory.py", [], ["--quick"],
               "Peak resident memory of one forward pass on the CPU."),
    "predict": ("Batched prediction of small crystals", "predict_throughput.py",
                ["--model", "perturbed_sio2", "--threads", "2"],
                ["--model", "perturbed_sio2", "--threads", "2", "--batch-sizes", "32", "64", "--n", "3000"],
                "Structures per second through Model.predict (graph + model) of the shipped SiO2 model, 2 threads."),
    "committee": ("Batched prediction with a committee", "predict_throughput.py",
                  ["--model", "universal_dielectric_bec", "--threads", "2", "--batch-sizes", "8", "32"],
                  ["--model", "universal_dielectric_bec", "--threads", "2", "--batch-sizes", "32", "--n", "400"],
                  "Crystals per second through the 4-member universal_dielectric_bec committee (graph built once)."),
    "committee4": ("Batched prediction with a 4-member committee of default-size members", "predict_throughput.py",
                   ["--committee", "4", "--threads", "2", "--batch-sizes", "8", "32"],
                   ["--committee", "4", "--threads", "2", "--batch-sizes", "32", "--n", "1000"],
                   "Crystals per second through 4 random members of the shipped default size (hidden 128, "
                   "4 blocks, cap 12), graph built once: the issue's committee target."),
    "app": ("App latency", "app_latency.py", ["--no-page"], ["--no-page", "--repeats", "1"],
            "A 200-atom crystal predicted and drawn by the library stages the Predict page runs."),
    "embedding": ("Embedding map", "embedding_map.py", [], ["--atoms", "2000"],
                  "Atom embeddings and PCA for the Embedding map page."),
}


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return out.stdout.strip() + (" (with uncommitted changes)" if dirty else "")
    except OSError:
        return "unknown"


def hardware() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    return (f"CPU {cpu}, {os.cpu_count()} logical cores, torch {torch.get_num_threads()} threads{load}; "
            f"GPU {gpu}; torch {torch.__version__}, Python {platform.python_version()}")


def settle(limit: float = 1.0, most: float = 90.0) -> None:
    """Wait (at most ``most`` s) for the 1-minute load average to fall below ``limit``, so that a timing
    does not start while the previous section's load (e.g. the 5 GiB memory run) still lingers."""
    end = time.monotonic() + most
    while hasattr(os, "getloadavg") and os.getloadavg()[0] >= limit and time.monotonic() < end:
        time.sleep(5)


def run_section(key: str, quick: bool, timeout: float) -> str:
    title, script, full, fast, what = SECTIONS[key]
    if key != "accuracy":
        settle()
    args = fast if quick else full
    cmd = [sys.executable, str(ROOT / "benchmarks" / script), *args]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    start = time.monotonic()
    print(f"results: {script} {' '.join(args)}", file=sys.stderr, flush=True)
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        body = proc.stdout.strip() or "(no output)"
        if proc.returncode:
            tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
            body += f"\n\n**Failed** (exit status {proc.returncode}):\n\n```\n{tail}\n```"
    except subprocess.TimeoutExpired:
        body = f"**Not finished** within {timeout:.0f} s."
    minutes = (time.monotonic() - start) / 60
    command = f"python benchmarks/{script} {' '.join(args)}".strip()
    return f"## {title}\n\n{what}\n\n`{command}` ({minutes:.1f} min)\n\n{body}\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="each script's quick option (rougher numbers)")
    p.add_argument("--only", nargs="+", choices=list(SECTIONS), help="only these sections")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per script (default 3600)")
    p.add_argument("-o", "--output", default=str(ROOT / "docs" / "results.md"))
    args = p.parse_args(argv)
    keys = args.only or list(SECTIONS)
    header = [
        "# Results",
        "",
        "Generated by `python benchmarks/results.py" + (" --quick" if args.quick else "") + "`; do not edit by hand.",
        "",
        f"- **Date**: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- **Hardware**: {hardware()}",
        f"- **Commit**: {git_commit()}",
        "- **Mode**: " + ("quick (fewer structures, smaller cases: rough numbers)" if args.quick else "full"),
        "",
        "Timings on a shared machine vary from run to run; compare numbers from one file, not across files.",
        "",
    ]
    sections = [run_section(k, args.quick, args.timeout) for k in keys]
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(header) + "\n" + "\n".join(sections))
    print(f"results: wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
