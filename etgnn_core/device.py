"""The one device switch (CUDA when available, else CPU), and the opt-in CPU allocator tuning.

torch is imported inside the functions: the CLI switches the allocator on before it reads any
structure, and a bad file should fail before torch is loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None`` or ``"auto"`` -> ``cuda`` if available else ``cpu``; otherwise the named device."""
    import torch

    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but no CUDA GPU is available; use 'cpu' or 'auto'")
    return dev


def describe(device: torch.device) -> str:
    """Human-readable device name for the app and the CLI."""
    import torch

    if device.type == "cuda":
        return f"GPU: {torch.cuda.get_device_name(device)}"
    return f"CPU ({torch.get_num_threads()} threads)"


_ALLOCATOR_TUNED: bool | None = None


def tune_cpu_allocator() -> bool:
    """Keep freed memory in the process instead of handing it back to the OS after every op (glibc).

    Opt-in and process-wide: the CLI (``etgnn predict`` / ``train``), the app and
    :func:`etgnn_core.train.train` call it; a library user calls it once, before predicting many
    small structures.  Why: a forward pass allocates and frees tensors of a few MB per triplet-level
    op, and glibc returns such blocks to the OS on free, so the next op page-faults on fresh pages.
    Raising the trim and mmap thresholds lets the allocator reuse them; the price is that free
    memory up to the trim threshold (512 MiB) stays with the process.  Done once; the environment
    variable ``ETGNN_MALLOC_TUNING=0`` turns every call into a no-op.  Returns whether the allocator
    is tuned (False off glibc).
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
