"""Data parallelism inside the models: what keeps N processes (torchrun, one per device) training
exactly as one process does on the same global batch.

Rank r holds rows [r * b, (r + 1) * b) of every step's global batch of N * b rows
(``pipeline.core.runtime.shard``), and DistributedDataParallel averages the gradients. That is
the gradient of the global batch when every loss is a mean over the rows of the rank's share;
three kinds of terms need more, and find it here:

* a random draw per batch row (CPC negatives, a self-cycle's target speaker) is drawn for the
  whole global batch from the random generator that every rank holds in the same state (the
  training loop seeds it per step), and each rank keeps its own rows (``global_rows``,
  ``local_rows``): a row gets the same numbers whatever the number of processes;
* a term that pairs rows across the batch (the CLUB's shuffled pairs, codebook restarts from
  random encoder outputs) sees every rank's rows (``gather_rows``, gradients included);
* a term that is not a mean over rows (EMA code counts, the STFT loss's spectral convergence,
  a ratio of norms over the batch) sums its parts over the ranks (``global_sum``, ``all_reduce_``).

Pure torch; every function is the identity without an initialised process group.
"""
from __future__ import annotations

import torch
import torch.distributed as dist


def rank_and_world() -> tuple[int, int]:
    """(this process's rank, the number of processes): (0, 1) outside a process group."""
    if not (dist.is_available() and dist.is_initialized()):
        return 0, 1
    return dist.get_rank(), dist.get_world_size()


def all_reduce_(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over the ranks, in place."""
    if rank_and_world()[1] > 1:
        dist.all_reduce(tensor)
    return tensor


def broadcast_(tensor: torch.Tensor) -> torch.Tensor:
    """Every rank adopts rank 0's ``tensor``, in place."""
    if rank_and_world()[1] > 1:
        dist.broadcast(tensor, src=0)
    return tensor


def global_rows(rows: int) -> int:
    """The number of rows of the global batch whose share on this rank has ``rows`` rows."""
    return rows * rank_and_world()[1]


def local_rows(tensor: torch.Tensor) -> torch.Tensor:
    """This rank's rows of a tensor whose first axis is the global batch."""
    rank, world = rank_and_world()
    if world == 1:
        return tensor
    share = tensor.shape[0] // world
    return tensor[rank * share:(rank + 1) * share]


class _GatherRows(torch.autograd.Function):
    """Every rank's rows, in rank order; the gradient of a rank's rows is the sum of what every
    rank's loss sends them."""

    @staticmethod
    def forward(ctx, tensor):
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad):
        return local_rows(all_reduce_(grad.contiguous().clone()))


class _GlobalSum(torch.autograd.Function):
    """The sum over the ranks; every rank's loss sends its gradient to every rank's part."""

    @staticmethod
    def forward(ctx, tensor):
        return all_reduce_(tensor.clone())

    @staticmethod
    def backward(ctx, grad):
        return all_reduce_(grad.contiguous().clone())


def gather_rows(tensor: torch.Tensor) -> torch.Tensor:
    """The global batch's rows (every rank's share of equal size, concatenated in rank order)."""
    return _GatherRows.apply(tensor) if rank_and_world()[1] > 1 else tensor


def global_sum(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` (a per-rank partial sum) summed over the ranks, differentiably."""
    return _GlobalSum.apply(tensor) if rank_and_world()[1] > 1 else tensor
