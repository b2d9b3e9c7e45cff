"""ETGNN Studio core library: edge-based tensor GNN (ETGNN) for tensors of molecules and crystals.

    import etgnn_core
    model = etgnn_core.load_model("perturbed_sio2")      # CUDA when available, else CPU
    pred = model.predict(atoms)                           # {"born_charges": [n, 3, 3], ...}
"""

__version__ = "0.1.0"

__all__ = ["ETGNNCalculator", "EdgeContributions", "Model", "Prediction", "list_models", "load_model"]


def __getattr__(name):  # lazy: `import etgnn_core` and `etgnn models` stay fast (no torch import)
    if name == "list_models":
        from etgnn_core.registry import list_models

        return list_models
    if name == "ETGNNCalculator":
        from etgnn_core.calculator import ETGNNCalculator

        return ETGNNCalculator
    if name in __all__:
        from etgnn_core import api

        return getattr(api, name)
    raise AttributeError(f"module 'etgnn_core' has no attribute {name!r}")
