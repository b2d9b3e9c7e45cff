"""Every shipped model still predicts the demo structures as stored in tests/reference/ (to 1e-5 of each
tensor's largest entry, or 1e-5 absolute below 1: float32 rounding alone moves an elastic constant of
178 GPa or a shielding of 396 ppm by more than 1e-5 when the order of a sum changes).

The references were written by tests/reference/make_reference.py from the shipped weights; a
change in the model code, in the PyG-derived bases or in torch that moves a prediction fails here.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

REF = Path(__file__).resolve().parent / "reference"
sys.path.insert(0, str(REF))
import make_reference  # noqa: E402

MODELS = make_reference.shipped_models()


def test_every_shipped_model_has_a_reference():
    assert MODELS, "no shipped model found"
    assert sorted(p.stem for p in REF.glob("*.json")) == MODELS


@pytest.mark.parametrize("name", MODELS)
def test_shipped_model_matches_reference(name):
    stored = json.loads((REF / f"{name}.json").read_text())
    assert stored["model"] == name and stored["structures"]
    now = make_reference.predictions(name)
    assert sorted(now) == sorted(stored["structures"])
    for file, tensors in stored["structures"].items():
        assert sorted(now[file]) == sorted(tensors), file
        for key, value in tensors.items():
            want = np.array(value)
            scale = max(1.0, float(np.abs(want).max())) if want.size else 1.0
            np.testing.assert_allclose(np.array(now[file][key]), want, rtol=0,
                                       atol=stored["tolerance"] * scale, err_msg=f"{name} on {file}: {key}")


#: issue 13: "pretrained/ stays <= 80 MB in all" (decimal megabytes, the stricter reading)
PRETRAINED_BUDGET_BYTES = 80_000_000


def test_shipped_models_fit_the_size_budget():
    root = REF.parents[1] / "pretrained"
    sizes = {}
    for f in root.rglob("*"):
        if f.is_file():
            top = f.relative_to(root).parts[0]
            sizes[top] = sizes.get(top, 0) + f.stat().st_size
    total = sum(sizes.values())
    largest = ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in sorted(sizes.items(), key=lambda kv: -kv[1])[:3])
    assert total <= PRETRAINED_BUDGET_BYTES, f"pretrained/ is {total / 1e6:.1f} MB (largest: {largest})"
