"""The one device switch: CUDA when available, else CPU."""

from __future__ import annotations

import torch


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None`` or ``"auto"`` -> ``cuda`` if available else ``cpu``; otherwise the named device."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but no CUDA GPU is available; use 'cpu' or 'auto'")
    return dev


def describe(device: torch.device) -> str:
    """Human-readable device name for the app and the CLI."""
    if device.type == "cuda":
        return f"GPU: {torch.cuda.get_device_name(device)}"
    return f"CPU ({torch.get_num_threads()} threads)"


_ALLOCATOR_TUNED: bool | None = None


def tune_cpu_allocator() -> bool:
    """Keep freed memory in the process instead of handing it back to the OS after every op (glibc).

    A forward pass over small crystals allocates tensors of a few MB per triplet-level op; glibc
    returns them to the OS when freed, so the next op page-faults on fresh pages (2 million faults
    for 1,000 crystals, 10-40 % of the CPU time, measured with benchmarks/predict_throughput.py).
    Raising the trim and mmap thresholds reuses the memory.  Process-wide, done once; free memory
    up to the trim threshold stays with the process.  Set ``ETGNN_MALLOC_TUNING=0`` to skip it.
    Returns whether the allocator is tuned (False off glibc).
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED is not None:
        return _ALLOCATOR_TUNED
    import ctypes
    import os

    _ALLOCATOR_TUNED = False
    if os.environ.get("ETGNN_MALLOC_TUNING", "1") == "0":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3  # <malloc.h>
        ok = libc.mallopt(m_mmap_threshold, 32 << 20)  # glibc's maximum: 32 MiB
        ok &= libc.mallopt(m_trim_threshold, 512 << 20)
        ok &= libc.mallopt(m_top_pad, 64 << 20)
        _ALLOCATOR_TUNED = bool(ok)
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl): nothing to do
        pass
    return _ALLOCATOR_TUNED
