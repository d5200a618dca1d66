"""Speed of writing, zipping and validating an English-size submission (no model needed).

Builds a synthetic test set shaped like the official English one: 13,276 short ABX excerpts
(log-normal durations, mean ~0.25 s, min 0.088 s) and 252 long utterances (2.2-16.9 s, about
1709 s in all), 193 converted wavs; unit files of 64-dim code vectors (256-entry codebook,
runs of repeated codes), auxiliary_embedding1 (128-entry top codes, each repeated twice) and
auxiliary_embedding2 (continuous vectors). Then times, with medians over --repeat runs:

    write units     format + write the three unit folders (the writer's own code path)
    zip             submission.zip at deflate levels 1 and 6
    validate        the strict validator on the folder (1 and N processes) and on the zip

Usage: python benchmarks/bench_submission.py [--scale 1.0] [--repeat 3] [--jobs 2] [--keep DIR]
"""
from __future__ import annotations

import argparse
import math
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from pipeline.core.audio import write_wav
from submission.validator import validate_submission
from submission.writer import write_unit_arrays, write_zip

N_SHORT, N_LONG, N_WAVS = 13_276, 252, 193
LONG_TOTAL_S = 1708.69
FOLDERS = ("test", "auxiliary_embedding1", "auxiliary_embedding2")


def durations(scale: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    n_short, n_long = max(1, round(N_SHORT * scale)), max(1, round(N_LONG * scale))
    short = np.clip(rng.lognormal(math.log(0.23), 0.35, n_short), 0.088, 1.2)
    long = rng.uniform(2.2, 16.9, n_long)
    long *= LONG_TOTAL_S * scale / long.sum()
    return short, np.clip(long, 2.2, 16.9)


def code_runs(frames: int, codes: int, rng: np.random.Generator) -> np.ndarray:
    """Code ids with runs of 1-4 repeats, like real 20 ms units."""
    ids = np.repeat(rng.integers(0, codes, frames), rng.integers(1, 5, frames))
    return ids[:frames]


def make_dataset_lists(root: Path, names: list[str], lengths: list[float], wavs: list[str]) -> Path:
    lists = root / "lists" / "english"
    lists.mkdir(parents=True)
    (lists / "embedding_filelist.txt").write_text("".join(f"{n} {d:.6f}\n" for n, d in zip(names, lengths)))
    (lists / "required_filelist.txt").write_text("".join(f"english/test/{n}\n" for n in names + wavs))
    return lists


def build(root: Path, scale: float, seed: int = 0) -> tuple[Path, list[str], list[float], list[str]]:
    """Write the synthetic submission folder (not timed here) and return what it holds."""
    rng = np.random.default_rng(seed)
    short, long = durations(scale, rng)
    lengths = list(short) + list(long)
    names = [f"S{100 + i % 24:03d}_{i:010d}.txt" for i in range(len(lengths))]
    sub = root / "submission"
    (sub / "2019/code").mkdir(parents=True)
    (sub / "2019/code/README").write_text("code\n")
    (sub / "2019/surprise").mkdir()
    (sub / "metadata.yaml").write_text("author: bench\naffiliation: bench\nopen source: true\n")
    (sub / "2019/metadata.yaml").write_text(
        "abx distance: dtw_cosine\nsystem description: synthetic\nhyperparameters: {}\n"
        "using parallel train: false\nusing external data: false\n"
        "auxiliary1 description: top codes\nauxiliary2 description: continuous\n")
    wavs = [f"V00{1 + i % 2}_{i:010d}.wav" for i in range(max(1, round(N_WAVS * scale)))]
    for name in wavs:
        write_wav(sub / "2019/english/test" / name, rng.uniform(-0.3, 0.3, 16000 * 5).astype(np.float32), 16000)
    return sub, names, lengths, wavs


def write_units(sub: Path, names: list[str], lengths: list[float], seed: int = 1) -> float:
    rng = np.random.default_rng(seed)
    bottom, top = rng.standard_normal((256, 64)).astype(np.float32), rng.standard_normal((128, 64)).astype(np.float32)
    folders = [str(sub / "2019/english" / f) for f in FOLDERS]
    for folder in folders:
        os.makedirs(folder, exist_ok=True)
    start = time.perf_counter()
    for name, seconds in zip(names, lengths):
        frames = math.ceil(seconds / 0.02)
        top_ids = np.repeat(code_runs(math.ceil(frames / 2), 128, rng), 2)[:frames]
        arrays = [bottom[code_runs(frames, 256, rng)], top[top_ids],
                  rng.standard_normal((frames, 64)).astype(np.float32)]
        write_unit_arrays(name, folders, arrays)
    return time.perf_counter() - start


def timed(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the English test set (1.0 = full)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per timing (median reported)")
    parser.add_argument("--jobs", type=int, default=2, help="validator processes for the parallel run")
    parser.add_argument("--keep", type=Path, default=None, help="build here and keep it (default: a temp folder)")
    args = parser.parse_args()

    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-submission-"))
    try:
        sub, names, lengths, wavs = build(root, args.scale)
        lists = make_dataset_lists(root, names, lengths, wavs)
        write_s = statistics.median(
            [write_units(sub, names, lengths, seed) for seed in range(1, 1 + max(1, min(args.repeat, 2)))])
        size_mb = sum(p.stat().st_size for p in (sub / "2019/english").rglob("*.txt")) / 1e6
        frames = sum(math.ceil(s / 0.02) for s in lengths)
        rows = [("write units (3 folders)", write_s, f"{len(names)} files x 3, {frames} frames, {size_mb:.0f} MB")]
        for level in (1, 6):
            zip_path = root / f"submission-{level}.zip"
            t = timed(lambda: write_zip(sub, zip_path, level, "bench", progress=False), args.repeat)
            rows.append((f"zip (deflate level {level})", t, f"{zip_path.stat().st_size / 1e6:.0f} MB"))

        def check(path, jobs):
            report = validate_submission(path, filelists=lists, jobs=jobs)
            assert report.valid, report.render()

        t1 = timed(lambda: check(sub, 1), args.repeat)
        rows.append(("validate folder, 1 process", t1, f"{3 * len(names) + len(wavs)} files checked"))
        tn = timed(lambda: check(sub, args.jobs), args.repeat)
        rows.append((f"validate folder, {args.jobs} processes", tn, f"speed-up x{t1 / tn:.2f}"))
        tz = timed(lambda: check(root / "submission-6.zip", args.jobs), args.repeat)
        rows.append((f"validate zip, {args.jobs} processes", tz, "entries read in place (no extraction)"))

        load = os.getloadavg()[0]
        print(f"English-size submission benchmark: scale {args.scale}, {len(names)} unit files, "
              f"{len(wavs)} wavs; {os.cpu_count()} CPUs, load average {load:.1f} at the end")
        print(f"{'step':34s} {'median s':>9s}  notes")
        for step, seconds, note in rows:
            print(f"{step:34s} {seconds:9.2f}  {note}")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
