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
    """(rank, world_size); initialises the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world


def wrap_ddp(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return model
    from torch.nn.parallel import DistributedDataParallel
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model
