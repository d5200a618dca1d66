"""Seeds, threads, device, mixed precision and (optional) torchrun/DDP set-up."""
from __future__ import annotations

import contextlib
import os
import random

import numpy as np
import torch


def set_threads(threads: int) -> None:
    """Torch intra-op threads. 0 means "all cores". Under contention 1 thread can beat 2."""
    if threads and threads > 0:
        torch.set_num_threads(int(threads))


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
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        from pipeline.errors import UserError
        raise UserError("runtime.device=cuda was requested but no CUDA device is available")
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
