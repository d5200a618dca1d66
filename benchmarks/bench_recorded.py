"""Cost and yield of the real recorded speech in the demo corpus (The Ur-Quan Masters' voice pack).

    .venv/bin/python benchmarks/bench_recorded.py [--jobs 2] [--cache DIR] [--skip-download]

1. Download: the two .debs through the private apt configuration into a fresh temporary cache
   (size and wall time, package lists included); ``--skip-download`` leaves this out.
2. Alignment: every usable clip, ``--jobs`` processes, into ``--cache`` (default: the project's
   cache, ``$ZS2020_CACHE`` or data/cache; clips already aligned there are not timed again, so
   point it at an empty folder to time a first alignment).
3. Yield per actor: usable clips, their minutes, the utterances and minutes that survive the
   filters (out-of-vocabulary words, implausible phone durations, silence over speech, 1-8 s),
   the role in the demo corpus and the minutes it puts there, and the minutes lost per reason.

The machine may be shared: the 1-minute load average before and after is printed.
"""
from __future__ import annotations

import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.corpus import debian, recorded  # noqa: E402
from pipeline.corpus.plan import scale_from  # noqa: E402


def _download(packages) -> tuple[float, int]:
    folder = tempfile.mkdtemp(prefix="bench-recorded-")
    old = os.environ.get(debian.CACHE_ENV)
    os.environ[debian.CACHE_ENV] = folder
    try:
        stats: dict = {}
        debian.fetch_debs(packages, stats)
        return stats["seconds"], stats["bytes"]
    finally:
        if old is None:
            del os.environ[debian.CACHE_ENV]
        else:
            os.environ[debian.CACHE_ENV] = old
        shutil.rmtree(folder, ignore_errors=True)


def _cpu() -> float:
    """CPU seconds of this process and its finished workers."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@click.command()
@click.option("--jobs", default=2, show_default=True, help="Alignment processes.")
@click.option("--cache", type=click.Path(file_okay=False), default=None,
              help="Cache folder for the .debs and alignments (default: the project's).")
@click.option("--skip-download", is_flag=True, help="Do not time a fresh download.")
def main(jobs, cache, skip_download):
    if cache:
        os.environ[debian.CACHE_ENV] = str(Path(cache).resolve())
    print(f"jobs={jobs}, cpus={os.cpu_count()}, load1 before={os.getloadavg()[0]:.1f}")
    if not skip_download:
        seconds, size = _download(recorded.PACKAGES)
        print(f"download (fresh, private apt, lists included): {size / 1e6:.1f} MB of .debs in {seconds:.1f} s")
    start = time.perf_counter()
    pack_stats: dict = {}
    found = recorded.aligned(jobs, pack_stats, shipped=False)   # time the aligner itself
    prepare = time.perf_counter() - start
    print(f"cache {debian.cache_root()}: .debs {'downloaded' if pack_stats['downloaded'] else 'cached'}, "
          f"ready (unpacked) in {prepare:.1f} s")
    start = time.perf_counter()
    cpu_before = _cpu()
    found.ensure(found.clips)
    wall = time.perf_counter() - start
    cpu = _cpu() - cpu_before
    audio = sum(found.record(c)["seconds"] for c in found.clips)
    if found.align_seconds:
        print(f"alignment: {len(found.clips)} usable clips, {audio / 60:.1f} min of audio, {wall:.1f} s wall "
              f"with {jobs} jobs, {cpu:.0f} CPU s (clips found in the cache are not timed); "
              f"load1 after={os.getloadavg()[0]:.1f}")
    else:
        print(f"alignment: {len(found.clips)} usable clips, {audio / 60:.1f} min of audio, all in the cache "
              "already (point --cache at an empty folder to time it)")
    print("excluded races: " + ", ".join(f"{race} ({why})" for race, why in sorted(found.excluded.items())))
    print()
    scale = scale_from("demo")
    header = ("speaker", "actor", "role", "races", "clips", "clip min", "not aligned", "utts", "utt min", "kept %",
              "mean utt s", "demo min")
    print(" | ".join(header))
    lost_total: dict[str, float] = {}
    totals = [0, 0.0, 0, 0, 0.0]
    for actor in found.actors():
        clips = found.clips_of(actor)
        records = [found.record(c) for c in clips]
        utts = [u for c in clips for u in found.utterances(c)]
        clip_s = sum(r["seconds"] for r in records)
        utt_s = sum(u.seconds for u in utts)
        failed = sum(r["status"] != "aligned" for r in records)
        for r in records:
            for reason, seconds in r["lost"].items():
                lost_total[reason] = lost_total.get(reason, 0.0) + seconds
        role = recorded.role_of(actor)
        used = (found.take(actor, seconds=scale.real_unit_seconds) if role == "train/unit" else
                found.take(actor, count=scale.real_test_utts) if role == "test" else [])
        print(f"{recorded.speaker_id(actor) or '-'} | {actor} | {role} | {' '.join(sorted({c.race for c in clips}))} | "
              f"{len(clips)} | {clip_s / 60:.1f} | {failed} | {len(utts)} | {utt_s / 60:.1f} | "
              f"{100 * utt_s / clip_s:.0f} | {utt_s / max(1, len(utts)):.2f} | "
              f"{sum(u.seconds for u in used) / 60:.1f}")
        for i, v in enumerate((len(clips), clip_s, failed, len(utts), utt_s)):
            totals[i] += v
    print(f"all | | | | {totals[0]} | {totals[1] / 60:.1f} | {totals[2]} | {totals[3]} | {totals[4] / 60:.1f} | "
          f"{100 * totals[4] / totals[1]:.0f} | {totals[4] / max(1, totals[3]):.2f}")
    print()
    print("minutes lost per reason: " + ", ".join(f"{reason} {seconds / 60:.1f}"
                                                  for reason, seconds in sorted(lost_total.items(), key=lambda x: -x[1])))


if __name__ == "__main__":
    main()
