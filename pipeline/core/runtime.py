"""Seeds, the thread policy, device, mixed precision and (optional) torchrun/DDP set-up.

Thread policy (one for every stage). Torch's intra-op threads pay off only for large tensors
on otherwise idle cores; on a shared machine they spin and wait for each other, and a second
thread made small inference and demo-size training several times slower than one. So:

* an explicit setting wins: ``runtime.threads`` > 0 in the config, a command's ``--threads``,
  or ``ZS2020_THREADS`` in the environment;
* otherwise the policy picks from the CPUs this process may use (``os.sched_getaffinity``),
  the kind of work and its size (``choose_threads``);
* process pools never multiply past the cores: a pool of N workers gives each worker
  ``max(1, cpus // N)`` threads (``worker_threads``).
"""
from __future__ import annotations

import contextlib
import os
import random

import numpy as np
import torch

from pipeline.core.errors import UserError

THREADS_ENV = "ZS2020_THREADS"
# Work kinds and the smallest per-step size (multiply-accumulates) at which a second intra-op
# thread started paying off in `benchmarks/bench_contention.py` (idle and loaded together).
_MIN_MACS_PER_THREAD = 2.0e9


def cpus_available() -> int:
    """CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def explicit_threads(requested: int | None = None) -> int | None:
    """The thread count the user asked for, if any (argument, then ZS2020_THREADS)."""
    if requested:
        return int(requested)
    env = os.environ.get(THREADS_ENV, "").strip()
    if env:
        if not env.isdigit() or int(env) < 1:
            raise UserError(f"{THREADS_ENV}={env!r}: expected a positive integer")
        return int(env)
    return None


def choose_threads(requested: int | None = None, work_macs: float = 0.0) -> int:
    """Intra-op threads for work whose heaviest step costs about ``work_macs`` multiply-adds.

    Small work (inference on short files, the demo and tiny models) runs on one thread; only
    GPU-size steps get more, one thread per ``_MIN_MACS_PER_THREAD`` and never more than the
    CPUs this process may use."""
    explicit = explicit_threads(requested)
    if explicit is not None:
        return explicit
    by_size = int(work_macs // _MIN_MACS_PER_THREAD)
    return max(1, min(cpus_available(), by_size))


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


def worker_threads(workers: int) -> int:
    """Threads per worker process so that a pool never runs more threads than CPUs."""
    return max(1, cpus_available() // max(1, workers))


def pool_size(requested: int | None, tasks: int) -> int:
    """Worker processes for ``tasks`` independent tasks: the request, else one per CPU."""
    size = int(requested) if requested else cpus_available()
    return max(1, min(size, tasks))


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
