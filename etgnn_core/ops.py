"""Index operations on the first axis, shared by the model blocks and the tensor assembly."""

from __future__ import annotations

import torch

# Triplets per block in CPU inference (triplet_message, model.blocks.triplet_stream): a block's [block, C]
# intermediates stay in cache; training and GPUs take all triplets as one block.
TRIPLET_BLOCK = 4096


def gather(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x[index] along the first axis (index_select: faster than advanced indexing on the CPU)."""
    return x.index_select(0, index)


def scatter_sum(src: torch.Tensor, index: torch.Tensor, size: int) -> torch.Tensor:
    """out[i] = sum of src[n] over n with index[n] == i; ``size`` rows (rows without a source stay 0)."""
    out = torch.zeros(size, *src.shape[1:], dtype=src.dtype, device=src.device)
    return out.index_add_(0, index, src)


@torch.jit.script
def triplet_message(x_edge: torch.Tensor, basis: torch.Tensor, weight: torch.Tensor, kj: torch.Tensor,
                    ji: torch.Tensor, block: int = TRIPLET_BLOCK) -> torch.Tensor:
    """out[e] = sum over triplets t with ji[t] == e of x_edge[kj[t]] * (basis[t] @ weight).

    x_edge [E, I], basis [T, K], weight [K, I], kj/ji [T] -> [E, I].  CPU inference takes the triplets
    in blocks of ``block``: the three [block, I] intermediates stay in cache (and no large buffer is
    allocated), which about halves the time of this, the largest step of an interaction block.
    Training and GPUs run one block.  Scripted, so a trace of the trunk keeps the loop instead of
    unrolling it for one triplet count; sizes are read from tensors here (a size passed as an int
    would be frozen into the trace; ``block`` is meant to be a constant).  The sums run in the order
    of one unblocked index_add_.
    """
    n = basis.shape[0]
    chunk = max(n, 1) if x_edge.is_cuda or torch.is_grad_enabled() else block
    out = torch.zeros(x_edge.shape[0], weight.shape[1], dtype=x_edge.dtype, device=x_edge.device)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        y = x_edge.index_select(0, kj[start:stop]) * torch.mm(basis[start:stop], weight)
        out.index_add_(0, ji[start:stop], y)
    return out
