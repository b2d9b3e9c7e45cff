"""Write tests/reference/<model>.json: every shipped model's predictions on the demo structures it covers.

Run it only when a shipped model's weights change on purpose:

    PYTHONPATH=. python tests/reference/make_reference.py

tests/test_reference.py then checks that the code still gives these numbers (to 1e-5 of each tensor's
largest entry), so that a change in the model code, in PyG or in torch cannot silently change what a
shipped model predicts.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "assets" / "demo"
HERE = Path(__file__).resolve().parent


def demo_files() -> list[Path]:
    """The demo structures in the order of assets/demo/index.json."""
    return [DEMO / entry["file"] for entry in json.loads((DEMO / "index.json").read_text())]


def covered(model, atoms) -> bool:
    """Whether the model knows every element of the structure (the API refuses the others)."""
    return not model.elements or set(atoms.numbers.tolist()) <= set(model.elements)


def shipped_models() -> list[str]:
    """Names of the model and committee folders in the repository's pretrained/ (not $ETGNN_PRETRAINED)."""
    return sorted(p.name for p in (ROOT / "pretrained").iterdir()
                  if (p / "weights.pt").exists() or (p / "committee.json").exists())


def predictions(name: str) -> dict:
    """{demo file name: {tensor: nested list}} for one shipped model (CPU, float64 output).

    The network's prediction only: a computed known part (universal_piezo's ionic term, SevenNet
    phonons, seconds per structure) is left out here and tested in tests/test_offsets.py.
    """
    from etgnn_core import load_model
    from etgnn_core.structure import read_structures

    model = load_model(str(ROOT / "pretrained" / name), device="cpu")
    model.known_parts = {}
    out = {}
    for path in demo_files():
        atoms = read_structures(path)[0]
        if covered(model, atoms):
            pred = model.predict(atoms)
            out[path.name] = {k: v.tolist() for k, v in pred.items()}
    return out


def main(names: list[str] | None = None) -> None:
    """Write the references of ``names`` (default: every shipped model); `python make_reference.py NAME ...`."""
    torch.set_num_threads(1)
    for name in names or shipped_models():
        record = {"model": name, "tolerance": 1e-5, "structures": predictions(name)}
        (HERE / f"{name}.json").write_text(json.dumps(record, indent=1) + "\n")
        print(f"{name}: {len(record['structures'])} structures")


if __name__ == "__main__":
    main(sys.argv[1:])
