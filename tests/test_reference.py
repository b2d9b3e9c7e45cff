"""Every shipped model still predicts the demo structures as stored in tests/reference/ (to 1e-5).

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
            np.testing.assert_allclose(np.array(now[file][key]), np.array(value), rtol=0,
                                       atol=stored["tolerance"], err_msg=f"{name} on {file}: {key}")
