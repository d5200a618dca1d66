"""Feature-dump throughput (x real time) of `dump_features`, for 1 and 2 worker processes.

    .venv/bin/python benchmarks/bench_features.py [--dataset data/corpus] [--repeat 3] [--jobs 1,2]

Without --dataset (or when it does not exist) a tiny corpus is built in a temporary folder.
Every run is a forced dump into a fresh temporary folder; the table shows the median over
--repeat runs, the up-to-date (no-op) check time, and the 1-minute load average before and
after, so that a slow number can be told apart from a contended machine. Goal: >= 300x on 2 cores.
"""
from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.contract.dataset import Dataset  # noqa: E402
from pipeline.contract.names import ALL_SPLITS  # noqa: E402
from pipeline.core.config import load_config  # noqa: E402
from pipeline.features import _extractor, dump_features, feature_spec  # noqa: E402


def audio_seconds(root: Path) -> tuple[float, int]:
    total, count = 0.0, 0
    for lang in Dataset.languages(root):
        ds = Dataset(root, lang)
        for split in ALL_SPLITS:
            for utt in ds.utterances(split, required=False):
                total += utt.duration()
                count += 1
    return total, count


def one_dump(root: Path, config: dict, jobs: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="bench-features-") as tmp:
        start = time.perf_counter()
        dump_features(root, Path(tmp) / "f", config, jobs=jobs, force=True, progress=False)
        seconds = time.perf_counter() - start
        start = time.perf_counter()
        dump_features(root, Path(tmp) / "f", config, jobs=jobs, progress=False)
        return seconds, time.perf_counter() - start


@click.command()
@click.option("--dataset", type=click.Path(path_type=Path), default=Path("data/corpus"), show_default=True,
              help="Dataset root (a tiny corpus is built when it does not exist).")
@click.option("--repeat", default=3, show_default=True, help="Dumps per job count (median reported).")
@click.option("--jobs", "jobs_list", default="1,2", show_default=True, help="Comma-separated worker counts.")
def main(dataset, repeat, jobs_list):
    config = load_config("demo")
    tmp = None
    if not Dataset.languages(dataset):
        from pipeline.corpus.build import build_corpus
        tmp = tempfile.TemporaryDirectory(prefix="bench-features-corpus-")
        dataset = build_corpus(Path(tmp.name) / "corpus", scale="tiny", jobs=2)
    seconds_audio, files = audio_seconds(dataset)
    _extractor(feature_spec(config))  # one-time filter-bank set-up (librosa import) not timed
    print(f"dataset {dataset}: {files} wavs, {seconds_audio / 60:.1f} min of audio; cores {os.cpu_count()}")
    print(f"{'jobs':>4} {'runs':>4} {'median s':>9} {'min s':>7} {'x realtime':>11} {'files/s':>8} "
          f"{'no-op s':>8} {'load before/after':>18}")
    base = None
    for jobs in [int(j) for j in jobs_list.split(",")]:
        times, noops, loads = [], [], []
        for _ in range(repeat):
            before = os.getloadavg()[0]
            seconds, noop = one_dump(dataset, config, jobs)
            times.append(seconds)
            noops.append(noop)
            loads.append((before, os.getloadavg()[0]))
        med = statistics.median(times)
        base = base or med
        print(f"{jobs:>4} {repeat:>4} {med:>9.2f} {min(times):>7.2f} {seconds_audio / med:>10.0f}x "
              f"{files / med:>8.0f} {statistics.median(noops):>8.3f} "
              f"{loads[0][0]:>8.2f}/{loads[-1][1]:<8.2f}  (speed-up vs first row {base / med:.2f}x)")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
