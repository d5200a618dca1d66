"""Seeds, the thread policy, device, mixed precision and (optional) torchrun/DDP set-up.

Thread policy (one for every stage, ``set_threads``; the arithmetic is in
``pipeline.core.threads``). Torch's intra-op threads pay off only for large tensors on
otherwise idle cores; on a shared machine they spin and wait for each other, and a second
thread made small inference and demo-size training several times slower than one.
"""
from __future__ import annotations

import contextlib
import os
import random
import time

import numpy as np
import torch

from models.distributed import all_reduce_, local_rows
from pipeline.core.errors import UserError
from pipeline.core.threads import CpuMeter, choose_threads, cpus_available, explicit_threads, threads_for


def step_macs(model: torch.nn.Module, frames: int) -> float:
    """A rough size of one forward pass over ``frames`` input frames: every weight used once per
    frame (convolutions at lower rates cost less; the rule only has to order work by size)."""
    return float(sum(p.numel() for p in model.parameters())) * frames


def set_threads(requested: int | None = None, work_macs: float = 0.0) -> int:
    """Apply the thread policy to torch (and to the libraries sharing its OpenMP pool)."""
    threads = choose_threads(requested, work_macs)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


class ThreadGovernor:
    """The thread policy for a long run (training): chosen at the start, then re-checked every
    ``interval`` seconds, because other work may start or stop beside a run of many minutes.
    It drops to fewer threads as soon as other processes keep the CPUs busy (spinning threads
    collapse under contention) and goes back up only after two quiet readings. An explicit
    setting is applied once and never changed. On an idle machine the choice never changes, so
    two runs of the same config are identical."""

    def __init__(self, requested: int | None, work_macs: float, interval: float = 5.0, log=None):
        self.explicit = explicit_threads(requested) is not None
        self.work_macs, self.interval, self.log = work_macs, interval, log
        self.threads = set_threads(requested, work_macs)
        self._meter = CpuMeter()
        self._next = time.monotonic() + interval
        self._quiet = 0

    def tick(self) -> int:
        """Call once per step; cheap except every ``interval`` seconds."""
        if self.explicit or time.monotonic() < self._next:
            return self.threads
        self._next = time.monotonic() + self.interval
        others = self._meter.others_busy()
        if others is None:
            return self.threads
        wanted = threads_for(self.work_macs, cpus_available() - others)
        self._quiet = self._quiet + 1 if wanted > self.threads else 0
        if wanted < self.threads or (wanted > self.threads and self._quiet >= 2):
            if self.log is not None:
                self.log(f"other processes use {others:.1f} CPUs: {wanted} torch thread(s) instead of {self.threads}")
            self.threads = wanted
            torch.set_num_threads(wanted)
            self._quiet = 0
        return self.threads


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def step_seed(seed: int, step: int) -> int:
    """The seed of one training step: lets a resumed run replay exactly the uninterrupted one."""
    return (int(seed) * 1_000_003 + int(step) * 7919) % (2**63 - 1)


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if "LOCAL_RANK" in os.environ and torch.cuda.is_available():
            return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"unsupported device {name!r}: use auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} was requested but no CUDA device is available")
    return device


def autocast(device: torch.device, enabled: bool):
    """bfloat16 autocast on CUDA (no grad scaler needed); a no-op on CPU."""
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def distributed() -> tuple[int, int]:
    """(rank, world_size); initialises the process group when launched by torchrun: NCCL for CUDA
    tensors (each rank on the GPU of its LOCAL_RANK), gloo for CPU tensors."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist
    if not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world


def wrap_ddp(model: torch.nn.Module, device: torch.device, unused=()) -> torch.nn.Module:
    """``model`` for a training forward: DistributedDataParallel (gradients averaged over the
    ranks) under torchrun, the model itself otherwise. Wrap after resuming: DDP starts every rank
    from rank 0's weights. Rank-0-only work (validation, samples) calls the model itself.
    ``unused``: parameters that no training step uses, whose gradient DDP must not wait for."""
    if distributed()[1] <= 1:
        return model
    from torch.nn.parallel import DistributedDataParallel
    ids = [device.index] if device.type == "cuda" else None
    # DDP reduces the parameters that require a gradient when it is built: leave the unused out
    idle = [p for p in unused if p.requires_grad]
    for p in idle:
        p.requires_grad_(False)
    try:
        return DistributedDataParallel(model, device_ids=ids)
    finally:
        for p in idle:
            p.requires_grad_(True)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


# ---------------------------------------------------------------------------------------- data parallelism
# Every rank draws the same global batch from the step's generator and trains on its own rows
# (``shard``); models.distributed keeps batch-wide terms equal to one process's. What no forward of
# a DDP model updates (the CLUB estimators) averages its gradients itself (``average_gradients``).

def check_divisible(batch_size: int, key: str) -> None:
    """Refuse a global batch that does not split into equal shares over the ranks."""
    world = distributed()[1]
    if batch_size % world:
        raise UserError(f"config key {key}={batch_size} does not split over {world} processes: "
                        f"use a multiple of {world} (the batch size is the global batch)")


def shard(batch):
    """This rank's rows of a global batch (a tensor, or a tuple, list or dict of them)."""
    if isinstance(batch, dict):
        return {k: shard(v) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(shard(v) for v in batch)
    return local_rows(batch)


def average_gradients(module: torch.nn.Module) -> None:
    """Average the gradients of ``module`` over the ranks (for parameters trained outside a DDP forward)."""
    world = distributed()[1]
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if world > 1 and grads:
        flat = all_reduce_(torch.cat([g.reshape(-1) for g in grads]))
        for g, part in zip(grads, flat.split([g.numel() for g in grads])):
            g.copy_(part.view_as(g) / world)


def mean_over_ranks(values: dict[str, float]) -> dict[str, float]:
    """The mean of every rank's values (the same keys, in the same order, on every rank)."""
    world = distributed()[1]
    if world <= 1 or not values:
        return values
    keys = list(values)
    total = all_reduce_(torch.tensor([float(values[k]) for k in keys], dtype=torch.float64))
    return {k: float(v) / world for k, v in zip(keys, total.tolist())}


def same_on_every_rank(*values: float) -> bool:
    """Whether every rank holds the same ``values``."""
    if distributed()[1] <= 1:
        return True
    import torch.distributed as dist
    mine = torch.tensor(values, dtype=torch.float64)
    low, high = mine.clone(), mine.clone()
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    return bool(torch.equal(low, high))


# ---------------------------------------------------------------------------------------- errors under torchrun
# A rank that stops alone leaves the others waiting in their next collective. So errors are raised
# together: at an agreement point (``agree``: the end of a ``together`` block, every training step)
# every rank says whether it failed, and when one did, every rank raises ``RankFailed`` with the first
# failing rank's one line, which rank 0 alone prints. An unexpected exception (a bug) ends its own
# process with a traceback, and torchrun stops the others.

class RankFailed(UserError):
    """The error of one rank of a torchrun launch, raised by every rank and printed once (by rank 0)."""

    def show(self, file=None) -> None:
        if distributed()[0] == 0:
            super().show(file)


def agree(error: UserError | None = None) -> None:
    """An agreement point that every rank reaches: raises ``error`` (one process) or, when any
    rank brings one, ``RankFailed`` with the first failing rank's message (torchrun)."""
    rank, world = distributed()
    if world <= 1 or isinstance(error, RankFailed):
        if error is not None:
            raise error
        return
    import torch.distributed as dist
    flags = torch.zeros(world)
    flags[rank] = float(error is not None)
    dist.all_reduce(flags)
    if not bool(flags.any()):
        return
    first = int(flags.nonzero()[0])
    box = [error.message if rank == first else None]
    dist.broadcast_object_list(box, src=first)
    raise RankFailed(box[0] if first == 0 else f"rank {first}: {box[0]}") from error


@contextlib.contextmanager
def together():
    """A block every rank runs (set-up), ended by an agreement point: a ``UserError`` on any rank
    stops every rank with one line. The block must hold no other collective."""
    try:
        yield
    except UserError as exc:
        agree(exc)
        raise
    agree()


def finish_distributed() -> None:
    """The end of a torchrun job: every rank waits until rank 0 has written and reported, then all
    close the process group together (a rank that exits while its peer still holds the
    connections can make gloo abort that peer after its work is done). A no-op without torchrun."""
    if distributed()[1] > 1:
        import torch.distributed as dist
        dist.barrier()
        dist.destroy_process_group()


def on_rank_zero(progress: bool, log):
    """(progress, log) for this rank: rank 0 reports, the others are silent."""
    if distributed()[0] == 0:
        return progress, log
    return False, lambda *args, **kwargs: None
