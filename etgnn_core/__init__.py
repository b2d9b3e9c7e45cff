"""ETGNN Studio core library: edge-based tensor GNN (ETGNN) for tensors of molecules and crystals."""

__version__ = "0.1.0"
