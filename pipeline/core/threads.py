"""The thread policy's arithmetic (no torch, so the light stages can use it): how many CPUs
this process may use, what the user asked for, and how pools share the CPUs.

* an explicit setting wins: ``runtime.threads`` > 0 in the config, a command's ``--threads``,
  or ``ZS2020_THREADS`` in the environment;
* otherwise the policy picks from the CPUs this process may use (``os.sched_getaffinity``)
  and the size of the work (``choose_threads``);
* process pools never multiply past the cores: a pool of N workers gives each worker
  ``max(1, cpus // N)`` threads (``worker_threads``).
"""
from __future__ import annotations

import os

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


def worker_threads(workers: int) -> int:
    """Threads per worker process so that a pool never runs more threads than CPUs."""
    return max(1, cpus_available() // max(1, workers))


def pool_size(requested: int | None, tasks: int) -> int:
    """Worker processes for ``tasks`` independent tasks: the request, else one per CPU."""
    size = int(requested) if requested else cpus_available()
    return max(1, min(size, tasks))
