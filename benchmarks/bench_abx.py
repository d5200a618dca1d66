#!/usr/bin/env python
"""ABX engine speed: the three distances on the demo item set and on an English-size task.

* demo: the demo corpus's excerpt items (data/corpus) with 80-dim log-mel at 100 Hz (the
  heaviest features we score), or, without a demo corpus, a synthetic task of the same size;
* english: ~13k items like the official English task (24 speakers, 39 phones, triphone
  contexts), synthetic 64-dim code vectors at 50 Hz, 5-20 frames per item.
Goal: all three distances on the demo items in < 60 s on 2 cores.

Start-up: a fresh process with an empty numba cache folder compiles the kernels (cold), a second
fresh process loads them from that folder (warm); both are timed from the process start to its
first ABX score (goal: warm < 2 s). With ``--evaluate SUBMISSION --dataset ROOT`` the same is
measured on two runs of ``zs2020 evaluate`` (time until its first "ABX" line).

Usage: python benchmarks/bench_abx.py [--jobs 2] [--repeats 3] [--english-items 13276] [--skip-english]
                                      [--startup-only] [--evaluate SUBMISSION --dataset ROOT]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.contract.items import ItemTable, read_items  # noqa: E402
from pipeline.evaluation import abx  # noqa: E402

PHONES = [f"P{i:02d}" for i in range(39)]


def synthetic_task(n_items: int, n_speakers: int, rng: np.random.Generator) -> ItemTable:
    """Items drawn like triphones of running speech: Zipf-distributed phones, random contexts."""
    weights = 1.0 / np.arange(1, len(PHONES) + 1) ** 0.9
    weights /= weights.sum()
    draw = lambda: rng.choice(PHONES, n_items, p=weights)   # noqa: E731
    speakers = np.array([f"S{i:03d}" for i in rng.integers(0, n_speakers, n_items)])
    return ItemTable(np.array([f"f{i}" for i in range(n_items)]), np.zeros(n_items), np.ones(n_items),
                         draw(), draw(), draw(), speakers)


def demo_items(root: Path):
    """(ItemTable, per-item log-mel arrays) of the demo corpus, or None without one."""
    try:
        from pipeline.contract.dataset import Dataset
        from pipeline.core.config import load_config
        from pipeline.evaluation.baselines import baseline_features
        from pipeline.features import feature_spec
        ds = Dataset(root, "english")
        items = read_items(ds.item_file("excerpt"))
    except Exception as exc:   # no demo corpus built yet
        print(f"(no demo corpus at {root}: {exc})")
        return None
    utts = {u.utt_id: u for u in ds.utterances("test")}
    spec = feature_spec(load_config("demo"))
    feats = {stem: baseline_features(utts[stem].read(spec.sample_rate), spec)["logmel"]
             for stem in sorted(set(items.files.tolist()))}
    return items, abx.item_features(items, feats, True)


def timed(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def bench(name: str, task: abx.Task, arrays: list[np.ndarray], repeats: int) -> list[float]:
    pairs = sum(int(abx._needed_pairs(task.phone[b], task.speaker[b]).sum()) for b in task.blocks)
    dim = arrays[0].shape[1]
    frames = np.mean([len(a) for a in arrays])
    print(f"\n{name}: {task.n_items_used} items in {len(task.blocks)} contexts, {pairs:,} distances per "
          f"metric, {dim}-dim, {frames:.1f} frames/item")
    print(f"{'distance':<12} {'median s':>9} {'ABX %':>8} {'triplets':>12} {'us/distance':>12}")
    totals = []
    for distance in abx.DISTANCES:
        seconds, result = timed(lambda: abx.abx(task, arrays, distance), repeats)
        totals.append(seconds)
        print(f"{distance:<12} {seconds:>9.2f} {result.error:>8.2f} {result.n_triplets:>12,} "
              f"{1e6 * seconds / max(1, pairs):>12.2f}")
    print(f"{'all three':<12} {sum(totals):>9.2f}")
    return totals


# A fresh process: imports, then one ABX score per distance on a tiny task (times in seconds
# from the interpreter's start, as seen by the process itself).
STARTUP = """
import json, time
start = time.perf_counter()
import numpy as np
from pipeline.contract.items import ItemTable
from pipeline.evaluation import abx
imported = time.perf_counter()
n = 24
items = ItemTable(np.array([f"w{i}" for i in range(n)]), np.zeros(n), np.ones(n), np.array(["a", "b"] * (n // 2)),
                  np.array(["x"] * n), np.array(["y"] * n), np.array(["s1", "s1", "s2", "s2"] * (n // 4)))
arrays = [np.random.default_rng(i).random((5, 4)) for i in range(n)]
firsts = []
for distance in abx.DISTANCES:
    abx.abx(abx.build_task(items), arrays, distance)
    firsts.append(time.perf_counter())
print(json.dumps({"import": imported - start, "first_score": firsts[0] - start, "all_three": firsts[-1] - start}))
"""


def startup(repo: Path) -> None:
    """Cold (empty cache folder) and warm (the same folder, a new process) start of the engine."""
    with tempfile.TemporaryDirectory(prefix="numba-cache-") as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, PYTHONPATH=str(repo))
        runs = []
        for label in ("cold (compiles)", "warm (cache)"):
            wall = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", STARTUP], env=env, capture_output=True, text=True, check=True)
            times = json.loads(done.stdout.strip().splitlines()[-1])
            runs.append((label, times, time.perf_counter() - wall))
    print(f"{'start-up':<16} {'imports s':>9} {'1st ABX s':>9} {'3 ABX s':>8} {'process s':>9}")
    for label, t, wall in runs:
        print(f"{label:<16} {t['import']:>9.2f} {t['first_score']:>9.2f} {t['all_three']:>8.2f} {wall:>9.2f}")
    warm = runs[1][1]["first_score"]
    print(f"warm start goal < 2 s before the first ABX score: {'met' if warm < 2 else 'NOT met'} ({warm:.2f} s)")


def evaluate_startup(submission: str, dataset: str, jobs: int) -> None:
    """Two ``zs2020 evaluate`` runs in fresh processes, the first with an empty numba cache:
    seconds from the process start to its first "ABX" line (stderr)."""
    zs = Path(sys.executable).with_name("zs2020")
    with tempfile.TemporaryDirectory(prefix="numba-cache-") as cache, tempfile.TemporaryDirectory() as out:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for label in ("cold (compiles)", "warm (cache)"):
            start = time.perf_counter()
            proc = subprocess.Popen([str(zs), "evaluate", submission, "--dataset", dataset, "--out", out, "--force",
                                     "--no-speech", "--no-baselines", "--jobs", str(jobs)], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            first = None
            for line in proc.stderr:
                if first is None and any(f" ABX {d} " in line for d in abx.DISTANCES):   # a score line
                    first = time.perf_counter() - start
            proc.wait()
            total = time.perf_counter() - start
            print(f"zs2020 evaluate, {label}: first ABX score after {first:.2f} s, done in {total:.2f} s "
                  f"(exit {proc.returncode})" if first is not None else f"zs2020 evaluate, {label}: no ABX line "
                  f"(exit {proc.returncode})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=2, help="numba threads")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement (median)")
    parser.add_argument("--demo", default="data/corpus", help="demo corpus root")
    parser.add_argument("--english-items", type=int, default=13276)
    parser.add_argument("--skip-english", action="store_true")
    parser.add_argument("--startup-only", action="store_true", help="only the cold/warm start-up times")
    parser.add_argument("--evaluate", metavar="SUBMISSION", help="also time two `zs2020 evaluate` runs of it")
    parser.add_argument("--dataset", help="the dataset of --evaluate")
    args = parser.parse_args()
    startup(Path(__file__).resolve().parents[1])
    if args.evaluate:
        evaluate_startup(args.evaluate, args.dataset, args.jobs)
    if args.startup_only:
        return
    abx.set_jobs(args.jobs)
    rng = np.random.default_rng(0)

    start = time.perf_counter()   # compile, or load numba's on-disk cache
    n = 24
    warm = ItemTable(np.array([f"w{i}" for i in range(n)]), np.zeros(n), np.ones(n),
                         np.array(["a", "b"] * (n // 2)), np.array(["x"] * n), np.array(["y"] * n),
                         np.array(["s1", "s1", "s2", "s2"] * (n // 4)))
    for distance in abx.DISTANCES:
        abx.abx(abx.build_task(warm), [rng.random((5, 4)) for _ in range(n)], distance)
    print(f"kernel warm-up (JIT compile or cache load): {time.perf_counter() - start:.1f} s; jobs={args.jobs}")

    demo = demo_items(Path(args.demo))
    if demo is not None:
        items, arrays = demo
        name = f"demo corpus ({args.demo}), log-mel 80-dim 100 Hz"
    else:
        items = synthetic_task(6700, 10, rng)
        arrays = [rng.normal(size=(int(rng.integers(9, 40)), 80)) for _ in range(len(items))]
        name = "synthetic demo-size task (6700 items, 10 speakers), 80-dim 100 Hz"
    totals = bench(name, abx.build_task(items), arrays, args.repeats)
    print(f"demo goal < 60 s for all three: {'met' if sum(totals) < 60 else 'NOT met'} ({sum(totals):.1f} s)")

    if not args.skip_english:
        items = synthetic_task(args.english_items, 24, rng)
        codes = rng.normal(size=(512, 64))        # a 512-entry codebook of 64-dim vectors
        arrays = [codes[rng.integers(0, 512, int(rng.integers(5, 21)))] for _ in range(len(items))]
        bench(f"English-size task ({args.english_items} items, 24 speakers), 64-dim code vectors 50 Hz",
              abx.build_task(items), arrays, 1)


if __name__ == "__main__":
    main()
