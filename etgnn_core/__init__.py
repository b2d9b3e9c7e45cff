"""ETGNN Studio core library: edge-based tensor GNN (ETGNN) for tensors of molecules and crystals.

    import etgnn_core
    model = etgnn_core.load_model("perturbed_sio2")      # CUDA when available, else CPU
    pred = model.predict(atoms)                           # {"born_charges": [n, 3, 3], ...}
"""

__version__ = "0.1.0"

from etgnn_core.api import EdgeContributions, Model, Prediction, list_models, load_model  # noqa: E402
from etgnn_core.calculator import ETGNNCalculator  # noqa: E402

__all__ = ["ETGNNCalculator", "EdgeContributions", "Model", "Prediction", "list_models", "load_model"]
