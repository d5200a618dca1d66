"""Build time of the demo corpus generator: tiny and demo scales, fresh builds into a temporary
folder, plus the no-op (up-to-date) check. Prints a table of medians.

    .venv/bin/python benchmarks/bench_corpus.py [--repeat-tiny 3] [--repeat-demo 1] [--jobs 2] [--skip-demo]

The machine may be shared: the 1-minute load average before and after each build is printed so
that a slow number can be told apart from a contended machine.
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.corpus.build import build_corpus  # noqa: E402


def _size_mb(root: Path) -> float:
    return sum(p.stat().st_size for p in root.rglob("*.wav")) / 1e6


def _one_build(scale: str, jobs: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-corpus-") as tmp:
        out = Path(tmp) / "corpus"
        load_before = os.getloadavg()[0]
        stats: dict = {}
        build_corpus(out, scale=scale, jobs=jobs, force=True, stats=stats)
        start = time.perf_counter()
        build_corpus(out, scale=scale, jobs=jobs)          # up to date: must be a no-op
        noop = time.perf_counter() - start
        manifest = json.loads((out / "manifest.json").read_text())
        return {"seconds": stats["wall_seconds"], "cpu": stats["cpu_seconds"], "noop": noop, "audio_min": sum(manifest["seconds"].values()) / 60,
                "wavs": sum(manifest["counts"].values()), "items": manifest["items"], "mb": _size_mb(out),
                "load": (load_before, os.getloadavg()[0])}


@click.command()
@click.option("--repeat-tiny", default=3, show_default=True, help="Fresh tiny builds (median reported).")
@click.option("--repeat-demo", default=1, show_default=True, help="Fresh demo builds (median reported).")
@click.option("--jobs", default=2, show_default=True, help="Synthesis processes.")
@click.option("--skip-demo", is_flag=True, help="Only the tiny scale (seconds instead of minutes).")
def main(repeat_tiny, repeat_demo, jobs, skip_demo):
    runs = {"tiny": repeat_tiny} if skip_demo else {"tiny": repeat_tiny, "demo": repeat_demo}
    rows = []
    for scale, repeat in runs.items():
        results = [_one_build(scale, jobs) for _ in range(repeat)]
        first = results[0]
        wall = statistics.median(r["seconds"] for r in results)
        cpu = statistics.median(r["cpu"] for r in results)
        rows.append((scale, repeat, wall, min(r["seconds"] for r in results), cpu, cpu / jobs,
                     statistics.median(r["noop"] for r in results), first["audio_min"], first["wavs"],
                     first["items"], first["mb"], first["audio_min"] * 60 / cpu,
                     max(max(r["load"]) for r in results)))
    # "CPU s / jobs" is the wall time the build would take with `jobs` idle cores.
    header = ("scale", "n", "median wall s", "min wall s", "CPU s", "CPU s / jobs", "no-op s", "audio min",
              "wavs", "items", "wav MB", "audio s per CPU s", "max load1")
    print(f"jobs={jobs}, cpus={os.cpu_count()}")
    print(" | ".join(header))
    for r in rows:
        print(f"{r[0]} | {r[1]} | {r[2]:.1f} | {r[3]:.1f} | {r[4]:.1f} | {r[5]:.1f} | {r[6]:.3f} | {r[7]:.1f} | "
              f"{r[8]} | {r[9]} | {r[10]:.1f} | {r[11]:.0f} | {r[12]:.1f}")


if __name__ == "__main__":
    main()
