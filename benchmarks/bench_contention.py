"""How the demo's main steps slow down when other work shares the machine.

Each step runs as a whole `zs2020` command, first on the idle machine, then beside N busy
processes (pure CPU loops this script starts and stops itself). The slowdown of a step is its
loaded wall time over its idle wall time; the fair share is what a step that used every CPU
idle would get with N more CPU-bound processes beside it: (N + cpus) / cpus, i.e. (N + 2) / 2
on a 2-core machine. A step whose slowdown stays below the fair share (ratio <= 1) loses no
more than its share of the CPUs; the goal is a ratio of at most 1.5 for every step.

    .venv/bin/python benchmarks/bench_contention.py --run data/runs/demo --dataset data/corpus [--busy 2] [--repeats 1]

Needs a finished demo run (`make all`): its features, checkpoints and submission.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ZS = str(Path(sys.executable).with_name("zs2020"))


def steps(run: Path, dataset: Path, tmp: Path) -> dict[str, list[str]]:
    """name -> command. Training steps are short runs of the demo preset (data loading included)."""
    return {
        "VQ-VAE-2 training, 150 steps": [
            ZS, "train-vqvae", "--features", str(run / "features"), "--out", str(tmp / "vqvae"), "--config", "demo",
            "--force", "--quiet", "vqvae.train.steps=150", "vqvae.train.checkpoint_every=150",
            "vqvae.train.val_max_utterances=0"],
        "MelGAN training, 40 steps (30 adversarial)": [
            ZS, "train-melgan", "--features", str(run / "features"), "--dataset", str(dataset), "--out",
            str(tmp / "melgan"), "--config", "demo", "--force", "--quiet", "melgan.train.steps=40",
            "melgan.train.warmup_steps=10", "melgan.train.input_mels=ground_truth", "melgan.train.validate_every=0",
            "melgan.train.num_samples=0", "melgan.train.checkpoint_every=40"],
        "encoding the test split": [
            ZS, "encode", "--checkpoint", str(run / "vqvae" / "checkpoint.pt"), "--dataset", str(dataset),
            "--split", "test", "--out", str(tmp / "encoded"), "--force", "--quiet"],
        "conversion of the synthesis lines": [
            ZS, "convert", "--run", str(run), "--dataset", str(dataset), "--out", str(tmp / "converted"), "--force",
            "--quiet"],
        "evaluation: validation + ABX + baselines": [
            ZS, "evaluate", str(run / "submission"), "--dataset", str(dataset), "--run", str(run), "--out",
            str(tmp / "abx"), "--no-speech", "--force"],
        "evaluation: speech measures, 6 lines": [
            ZS, "evaluate", str(run / "submission"), "--dataset", str(dataset), "--run", str(run), "--out",
            str(tmp / "speech"), "--no-baselines", "--distances", "cosine", "--force", "evaluate.speech.max_lines=6"],
    }


def timed(command: list[str], repeats: int) -> float:
    walls = []
    for _ in range(repeats):
        start = time.perf_counter()
        done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        walls.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command[:2])} failed: {done.stderr.strip()[-400:]}")
    return statistics.median(walls)


class Busy:
    """N CPU-bound processes for the duration of a `with` block."""

    def __init__(self, n: int):
        self.n, self.procs = n, []

    def __enter__(self):
        self.procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(self.n)]
        time.sleep(1.0)
        return self

    def __exit__(self, *exc):
        for proc in self.procs:
            proc.kill()
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=Path("data/runs/demo"))
    parser.add_argument("--dataset", type=Path, default=Path("data/corpus"))
    parser.add_argument("--busy", type=int, default=2, help="background CPU-bound processes in the loaded runs")
    parser.add_argument("--repeats", type=int, default=1, help="runs per measurement (median)")
    parser.add_argument("--only", default="", help="comma-separated substrings: run only matching steps")
    args = parser.parse_args()
    cpus = len(os.sched_getaffinity(0))
    fair = (args.busy + cpus) / cpus
    print(f"{cpus} CPUs; {args.busy} busy processes in the loaded runs; fair-share slowdown {fair:.2f}; "
          f"load average at start {os.getloadavg()[0]:.2f}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-contention-") as tmp:
        for name, command in steps(args.run, args.dataset, Path(tmp)).items():
            if args.only and not any(part in name for part in args.only.split(",")):
                continue
            idle = timed(command, args.repeats)
            with Busy(args.busy):
                loaded = timed(command, args.repeats)
            rows.append((name, idle, loaded, loaded / idle, fair, loaded / idle / fair))
            print(f"  {name}: idle {idle:.1f} s, loaded {loaded:.1f} s", flush=True)
    width = max(len(r[0]) for r in rows)
    print(f"\n{'step':<{width}}  {'idle s':>7}  {'loaded s':>8}  {'slowdown':>8}  {'fair share':>10}  "
          f"{'slowdown / fair':>15}")
    for name, idle, loaded, slowdown, fair_share, ratio in rows:
        print(f"{name:<{width}}  {idle:>7.1f}  {loaded:>8.1f}  {slowdown:>8.2f}  {fair_share:>10.2f}  {ratio:>15.2f}")


if __name__ == "__main__":
    main()
