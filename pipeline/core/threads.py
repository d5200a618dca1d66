"""The thread policy's arithmetic (no torch, so the light stages can use it): how many CPUs
this process may use, how busy the machine is, what the user asked for, and how pools share
the CPUs.

* an explicit setting wins: ``runtime.threads`` > 0 in the config, a command's ``--threads``,
  or ``ZS2020_THREADS`` in the environment;
* otherwise the policy picks from the CPUs this process may use (``os.sched_getaffinity``),
  minus the CPUs other processes keep busy right now (``others_busy``), and the size of the
  work (``choose_threads``): a second intra-op thread pays off only for large steps on an idle
  CPU; on a CPU shared with other work the threads spin and wait for each other (measured in
  ``benchmarks/bench_contention.py``: a demo VQ-VAE step took 56 ms with 2 threads and 80 ms
  with 1 on an idle 2-core machine, but 314 ms with 2 and 138 ms with 1 beside two busy
  processes);
* process pools never multiply past the cores: a pool of N workers gives each worker
  ``max(1, cpus // N)`` threads (``worker_threads``).
"""
from __future__ import annotations

import os
import time

from pipeline.core.errors import UserError

THREADS_ENV = "ZS2020_THREADS"
# The most threads or worker processes a request may ask for: far more than any machine has
# cores, far fewer than the kernel and OpenMP can start (runtime.threads=100000 killed the
# process with a segmentation fault).
MAX_THREADS = 1024
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
        return bounded(int(requested), "threads")
    env = os.environ.get(THREADS_ENV, "").strip()
    if env:
        if not env.isdigit() or int(env) < 1:
            raise UserError(f"{THREADS_ENV}={env!r}: expected a positive integer")
        return bounded(int(env), f"threads ({THREADS_ENV})")
    return None


def bounded(count: int, what: str) -> int:
    """A requested number of threads or processes, refused past ``MAX_THREADS``."""
    if count > MAX_THREADS:
        raise UserError(f"{count} {what} requested; at most {MAX_THREADS} "
                        f"(this machine has {cpus_available()} CPUs)")
    return count


class CpuMeter:
    """How many CPUs other processes kept busy since the last reading: the machine's busy time
    (``/proc/stat``) minus this process's own (threads and waited-for children included)."""

    def __init__(self):
        self._last = self._read()

    @staticmethod
    def _read() -> tuple[float, float, float] | None:
        try:
            with open("/proc/stat", encoding="ascii") as handle:
                fields = [float(v) for v in handle.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        ticks = os.sysconf("SC_CLK_TCK")
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)      # idle + iowait
        busy = (sum(fields[:8]) - idle) / ticks
        own = sum(os.times()[:4])
        return time.monotonic(), busy, own

    def others_busy(self) -> float | None:
        """CPUs' worth of work by other processes since the previous call (None off Linux)."""
        now = self._read()
        last, self._last = self._last, now
        if now is None or last is None or now[0] - last[0] <= 0:
            return None
        return max(0.0, (now[1] - last[1]) - (now[2] - last[2])) / (now[0] - last[0])


def others_busy(window: float = 0.25) -> float:
    """CPUs other processes keep busy, sampled over ``window`` seconds (0 when unknown)."""
    meter = CpuMeter()
    time.sleep(window)
    return meter.others_busy() or 0.0


def threads_for(work_macs: float, free_cpus: float) -> int:
    """The policy: one thread per ``_MIN_MACS_PER_THREAD`` of work, at most the free CPUs."""
    by_size = int(work_macs // _MIN_MACS_PER_THREAD)
    return max(1, min(cpus_available(), by_size, int(free_cpus + 0.5)))


def choose_threads(requested: int | None = None, work_macs: float = 0.0) -> int:
    """Intra-op threads for work whose heaviest step costs about ``work_macs`` multiply-adds.

    Small work (inference on short files, tiny models) runs on one thread, and so does any work
    while other processes keep the CPUs busy; large steps on an idle machine get one thread per
    ``_MIN_MACS_PER_THREAD``, never more than the CPUs this process may use."""
    explicit = explicit_threads(requested)
    if explicit is not None:
        return explicit
    if work_macs < 2 * _MIN_MACS_PER_THREAD or cpus_available() == 1:
        return 1
    return threads_for(work_macs, cpus_available() - others_busy())


def worker_threads(workers: int) -> int:
    """Threads per worker process so that a pool never runs more threads than CPUs."""
    return max(1, cpus_available() // max(1, workers))


def pool_size(requested: int | None, tasks: int) -> int:
    """Worker processes for ``tasks`` independent tasks: the request, else one per CPU."""
    size = bounded(int(requested), "worker processes or threads") if requested else cpus_available()
    return max(1, min(size, tasks))
