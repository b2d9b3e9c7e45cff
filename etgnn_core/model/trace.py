"""A TorchScript trace of ETGNN's trunk for CPU inference: the same maths, run without the GIL.

Why: a forward pass is thousands of small torch ops. Called from Python, every op is dispatched with
the GIL held, so two prediction threads mostly wait for each other. A traced module runs its whole
graph in C++ with the GIL released, and skips the per-op Python dispatch. Only the trunk (bases ->
messages -> coefficients and atom embeddings) is traced: it has no Python control flow that depends
on the data. Tensor assembly and everything with per-structure sizes stay eager.

Used only where it pays and is safe: inside :func:`traced_inference` (the prediction worker
threads of etgnn_core.api.map_batches, where many batches amortise the ~1 s it takes to build
and check a trace; one structure in the app would only wait for it), float32 on the CPU, no
autograd, ``eval()`` mode.  Each trace is checked against the eager trunk on random graphs of
other sizes before it is used; a trace that differs (or fails) is dropped with a warning and the
eager trunk runs.  ``ETGNN_TRACE=0`` turns it off.
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from collections.abc import Callable

import torch
from torch import nn

TrunkInputs = tuple[torch.Tensor, ...]  # z [N], dist [E], angle [T], src [E], dst [E], kj [T], ji [T]


_local = threading.local()

# warnings.catch_warnings swaps process-wide state and is not thread-safe: a trace built in a worker
# thread while the main thread records the warnings of the next batch's structures
# (etgnn_core.api.prepare_all) would lose that batch's warnings.  Both hold this lock.
WARNINGS_LOCK = threading.Lock()


def tracing_enabled() -> bool:
    return os.environ.get("ETGNN_TRACE", "1") != "0"


@contextlib.contextmanager
def traced_inference():
    """Forward passes in this block (this thread only) may run the traced trunk."""
    before = getattr(_local, "on", False)
    _local.on = True
    try:
        yield
    finally:
        _local.on = before


class _Trunk(nn.Module):
    """Module wrapper so torch.jit.trace sees the network's parameters as attributes, not constants."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, *inputs: torch.Tensor):
        return self.net.trunk(*inputs)


def random_inputs(net: nn.Module, n_atoms: int, n_edges: int, n_triplets: int, seed: int) -> TrunkInputs:
    """A random but well-formed graph (indices in range, distances inside the cutoff) for checks."""
    p = next(net.parameters())
    gen = torch.Generator().manual_seed(seed)
    cutoff = net.config.cutoff

    def ints(high: int, n: int) -> torch.Tensor:
        return torch.randint(0, max(high, 1), (n,), generator=gen).to(p.device)

    z = torch.randint(1, 60, (n_atoms,), generator=gen).to(p.device)
    dist = (0.8 + (cutoff - 0.9) * torch.rand(n_edges, generator=gen, dtype=p.dtype)).to(p.device)
    angle = (0.1 + 2.9 * torch.rand(n_triplets, generator=gen, dtype=p.dtype)).to(p.device)
    return z, dist, angle, ints(n_atoms, n_edges), ints(n_atoms, n_edges), ints(n_edges, n_triplets), ints(
        n_edges, n_triplets)


def _same(a: tuple, b: tuple) -> bool:
    return len(a) == len(b) and all(x.shape == y.shape and torch.allclose(x, y, rtol=1e-4, atol=1e-5)
                                    for x, y in zip(a, b))


def build_trace(net: nn.Module) -> Callable | None:
    """Trace ``net.trunk`` and check it on two graphs of other sizes; None when it cannot be trusted."""
    example = random_inputs(net, 7, 40, 300, seed=0)
    checks = [random_inputs(net, 3, 11, 53, seed=1), random_inputs(net, 12, 90, 0, seed=2)]
    try:
        with WARNINGS_LOCK, warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # TorchScript's deprecation notes and tracer hints
            traced = torch.jit.trace(_Trunk(net), example, check_trace=False)
            for inputs in checks:
                if not _same(tuple(traced(*inputs)), tuple(net.trunk(*inputs))):
                    raise RuntimeError("traced trunk differs from the eager one on a graph of another size")
        return traced
    except Exception as exc:  # noqa: BLE001 - any failure here only costs speed
        warnings.warn(f"ETGNN runs without its traced trunk ({exc}); predictions are unchanged, only slower",
                      RuntimeWarning, stacklevel=3)
        return None


class TraceCache:
    """The one trace of one network (use_trace allows only float32 on the CPU), built on first use.

    Dropped when the network's weights may have moved; not copied with the network (deepcopy and
    pickling give an empty cache): a trace belongs to the parameter tensors it was made from.
    ``built`` says whether a trace was attempted, ``trace`` is it (None when it was refused).
    """

    def __init__(self):
        self.built = False
        self.trace: Callable | None = None
        self._lock = threading.Lock()

    def get(self, net: nn.Module) -> Callable | None:
        with self._lock:  # worker threads may ask for the first trace at once
            if not self.built:
                self.trace, self.built = build_trace(net), True
            return self.trace

    def clear(self) -> None:
        with self._lock:
            self.trace, self.built = None, False

    def __deepcopy__(self, memo):
        return TraceCache()

    def __getstate__(self):
        return {}

    def __setstate__(self, state):
        self.__init__()


def use_trace(net: nn.Module, dist: torch.Tensor) -> bool:
    """Trace only inside :func:`traced_inference`, for plain float32 CPU inference: no gradients, eval mode.

    float32 only: the tracer records Python float constants (the basis functions' coefficients)
    as float32 numbers, which would cost a float64 model its extra digits.
    """
    return (getattr(_local, "on", False) and dist.device.type == "cpu" and dist.dtype == torch.float32
            and not net.training and not torch.is_grad_enabled() and tracing_enabled())
