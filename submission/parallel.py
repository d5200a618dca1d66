"""Batched, optionally multi-process map with a progress bar (writer and validator share it)."""
from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Sequence

from tqdm import tqdm


def run_batches(fn: Callable[[list], list], items: Sequence, jobs: int, *, desc: str, unit: str,
                progress: bool, batch_size: int, initializer: Callable | None = None, initargs: tuple = (),
                spawn: bool = False) -> list:
    """``fn`` maps a batch (list of items) to a list of results; returns all results in item order.

    ``jobs <= 1`` runs in this process (``initializer`` is called here first); otherwise a process
    pool of ``jobs`` workers. ``spawn`` starts workers fresh instead of forking: needed when this
    process may hold torch threads, which a fork can deadlock.
    """
    batches = [list(items[i:i + batch_size]) for i in range(0, len(items), max(1, batch_size))]
    bar = tqdm(total=len(items), desc=desc, unit=unit, disable=not progress, dynamic_ncols=True, leave=False)
    results: list = []
    try:
        if jobs <= 1 or len(batches) <= 1:
            if initializer is not None:
                initializer(*initargs)
            for batch in batches:
                results.extend(fn(batch))
                bar.update(len(batch))
        else:
            context = multiprocessing.get_context("spawn" if spawn else None)
            with ProcessPoolExecutor(jobs, mp_context=context, initializer=initializer, initargs=initargs) as pool:
                for batch, out in zip(batches, pool.map(fn, batches)):
                    results.extend(out)
                    bar.update(len(batch))
    finally:
        bar.close()
    return results
