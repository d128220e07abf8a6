"""Collectives that gradients flow through, on every backend (gloo included).

:func:`all_gather_with_grad` lets a loss see the whole global batch: every rank gathers every
rank's embeddings, computes the *same* loss, and the backward pass routes each rank's share of
the gradient back to it (summed over ranks). Together with DistributedDataParallel's gradient
average this gives exactly the gradient of one process computing the loss on the global batch
(each rank contributes ``size x`` its share; DDP divides by ``size``).

:func:`all_reduce_sum_with_grad` does the same for sums (synchronised batch statistics).
Both are the identity when torch.distributed is not initialised.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = ["all_gather_with_grad", "all_reduce_sum_with_grad", "world_size", "is_distributed"]


def is_distributed() -> bool:
    """True when a default process group with more than one rank exists."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Ranks in the default process group (1 when there is none)."""
    return dist.get_world_size() if is_distributed() else 1


class _AllGather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous()
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x)
        ctx.n = x.shape[0]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        r = dist.get_rank()
        return grad[r * ctx.n : (r + 1) * ctx.n]


class _AllReduceSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous().clone()
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


def all_gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's ``x`` (same shape on all ranks) along dim 0, rank order.

    Args:
        x: ``[n, ...]`` this rank's part.

    Returns:
        ``[size * n, ...]``; rows ``rank*n:(rank+1)*n`` are this rank's ``x``.
    """
    return _AllGather.apply(x) if is_distributed() else x


def all_reduce_sum_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Sum of ``x`` over ranks, differentiable (identity for one process)."""
    return _AllReduceSum.apply(x) if is_distributed() else x
