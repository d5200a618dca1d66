"""The one process-pool helper: features, corpus synthesis, encoding, validation and the speech
measures all fan work out through ``parallel_map``.

* ``jobs <= 1`` (or a single task) runs in this process: no pool, same results (unless
  ``fresh_workers`` asks for a new process per task).
* Workers die with their parent: each asks the kernel for SIGTERM when the parent exits
  (Linux ``PR_SET_PDEATHSIG``) and lets SIGTERM end it, so a killed stage leaves no worker
  running.
* Workers are started with ``fork`` by default (no re-import of torch, seconds each on a busy
  machine), or ``spawn``/``forkserver`` when the parent may hold torch threads or state a child
  must not inherit; ``fresh_workers`` gives every task a new process.
"""
from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Callable, Iterator, Sequence

from tqdm import tqdm

from pipeline.core.threads import worker_threads

_PR_SET_PDEATHSIG = 1
# Signals the CLI's SIGTERM handler has received (pipeline.cli). Its SystemExit can be lost: raised
# while the main thread runs a finaliser (a __del__, a weakref callback), it is printed and
# dropped. parallel_map looks here after every task, so a stage still stops at the next one.
TERMINATION_SIGNALS: list[int] = []


def stop_if_terminated() -> None:
    """Raise the SystemExit of a SIGTERM received earlier whose own exception was lost."""
    if TERMINATION_SIGNALS:
        raise SystemExit(128 + TERMINATION_SIGNALS[0])


def die_with_parent(parent: int | None = None) -> None:
    """Ask the kernel to send SIGTERM to this process when its parent exits (Linux only), and
    let SIGTERM end it: a forked worker inherits the CLI's handler, which turns SIGTERM into
    SystemExit, and the pool takes that for the failure of one task; the orphaned worker then
    waited for work forever. ``parent``: the pid that started this process, when known (an
    orphan's parent is a subreaper, not always pid 1)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1 or parent is not None and os.getppid() != parent:   # died before prctl took effect
        os._exit(1)


def _start_worker(parent: int | None, initializer: Callable | None, initargs: tuple, threads: int) -> None:
    die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C is the parent's to handle
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch = sys.modules.get("torch")       # set only if the parent already imported it (fork)
    if torch is not None:
        torch.set_num_threads(threads)
    if initializer is not None:
        initializer(*initargs)


def parallel_map(fn: Callable, tasks: Sequence, jobs: int, *, desc: str = "", unit: str = "item",
                 progress: bool = True, initializer: Callable | None = None, initargs: tuple = (),
                 start: str = "fork", ordered: bool = True, fresh_workers: bool = False,
                 weight: Callable = lambda task, result: 1, total: int | None = None) -> Iterator:
    """Yield ``fn(task)`` for every task (in task order when ``ordered``, else as finished).

    ``weight(task, result)`` is how far the progress bar moves per finished task (``total``
    its length, default the number of tasks). An exception in a worker cancels the remaining
    tasks and is raised here."""
    tasks = list(tasks)
    bar = tqdm(total=total if total is not None else len(tasks), desc=desc, unit=unit,
               disable=not progress, dynamic_ncols=True, leave=False)
    try:
        if (jobs <= 1 or len(tasks) <= 1) and not fresh_workers:
            if initializer is not None:
                initializer(*initargs)
            for task in tasks:
                result = fn(task)
                stop_if_terminated()
                bar.update(weight(task, result))
                yield result
            return
        jobs = max(1, min(jobs, len(tasks)))
        if start == "fork" and "fork" not in multiprocessing.get_all_start_methods():
            start = "spawn"
        context = multiprocessing.get_context(start)
        parent = None if start == "forkserver" else os.getpid()     # a forkserver's workers are its children
        options = {"max_tasks_per_child": 1} if fresh_workers else {}
        with ProcessPoolExecutor(jobs, mp_context=context, initializer=_start_worker,
                                 initargs=(parent, initializer, initargs, worker_threads(jobs)), **options) as pool:
            try:
                if ordered:
                    futures = [pool.submit(fn, task) for task in tasks]
                    for task, future in zip(tasks, futures):
                        result = future.result()
                        stop_if_terminated()
                        bar.update(weight(task, result))
                        yield result
                else:
                    pending = {pool.submit(fn, task): task for task in tasks}
                    while pending:
                        done, _ = wait(pending, return_when=FIRST_COMPLETED)
                        for future in done:
                            task = pending.pop(future)
                            result = future.result()
                            stop_if_terminated()
                            bar.update(weight(task, result))
                            yield result
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    finally:
        bar.close()


def run_batches(fn: Callable[[list], list], items: Sequence, jobs: int, *, batch_size: int, **options) -> list:
    """``fn`` maps a batch (a list of items) to a list of results; returns every result in item
    order, running the batches through ``parallel_map``."""
    batches = [list(items[i:i + batch_size]) for i in range(0, len(items), max(1, batch_size))]
    results: list = []
    for out in parallel_map(fn, batches, jobs, weight=lambda batch, _: len(batch), total=len(items), **options):
        results.extend(out)
    return results
