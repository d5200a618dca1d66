"""Benchmark: conversion speed (multiple of real time) and MelGAN training steps/s per preset.

Conversion runs the real ``Converter`` (log-mel -> VQ-VAE-2 encode -> decode with the target
speaker -> vocoder -> loudness normalisation) on checkpoints with the preset's model sizes.
By default the weights are untrained (speed does not depend on them); ``--run RUN`` uses a
trained run instead. Training steps use random audio batches of the preset's shape.

    .venv/bin/python benchmarks/bench_convert.py                  # demo preset, 1 and 2 threads
    .venv/bin/python benchmarks/bench_convert.py --presets tiny demo full --repeats 5

Prints medians of wall time and of this process's CPU time; ratios are within one run. On a
shared machine wall time is inflated by other processes (the load average at the start and end
is printed), while CPU time divided by the thread count approximates the uncontended wall time
(exactly so for one thread; optimistic for several, which also pay synchronisation).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from models.logmel import LogMel  # noqa: E402
from models.melgan import Generator, count_parameters  # noqa: E402
from models.vqvae2 import VQVAE2  # noqa: E402
from pipeline.core.checkpoint import save_checkpoint  # noqa: E402
from pipeline.core.config import load_config  # noqa: E402
from pipeline.core.layout import RunLayout  # noqa: E402
from pipeline.features import feature_spec  # noqa: E402
from pipeline.systems.converter import Converter  # noqa: E402
from pipeline.train.melgan import MelGANTrainer, generator_args  # noqa: E402
from pipeline.train.vqvae import model_config  # noqa: E402

VOICES = {"S001": 0, "S002": 1, "V001": 2, "V002": 3}


def untrained_run(config, out: Path) -> tuple[Path, Path]:
    """VQ-VAE and MelGAN checkpoints with the preset's sizes and random weights."""
    spec = feature_spec(config)
    torch.manual_seed(0)
    cfg = model_config(config, len(VOICES), spec.n_mels)
    meta = {"speakers": VOICES, "feature_spec": spec.to_dict(), "model": dataclasses.asdict(cfg)}
    vq, mg = out / "vqvae.pt", out / "melgan.pt"
    save_checkpoint(vq, kind="vqvae", config=config.to_dict(), fingerprint="bench", step=0,
                    models={"vqvae": VQVAE2(cfg)}, meta=meta)
    args = generator_args(config.melgan, spec)
    save_checkpoint(mg, kind="melgan", config=config.to_dict(), fingerprint="bench", step=0,
                    models={"generator": Generator(**args)},
                    meta={"speakers": {"V001": 0, "V002": 1}, "feature_spec": spec.to_dict(), "generator": args})
    return vq, mg


def speechlike(seconds: float, sr: int = 16000) -> np.ndarray:
    """A deterministic harmonic signal with a moving pitch and syllable-rate envelope."""
    t = np.arange(int(seconds * sr)) / sr
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    wav = sum(np.sin(k * phase) / k for k in range(1, 20)) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)) ** 2
    return (0.3 * wav / np.abs(wav).max()).astype(np.float32)


def median_time(fn, repeats: int) -> tuple[float, float]:
    """Median (wall seconds, CPU seconds of this process). Under contention wall time grows but
    CPU time does not: with one thread, CPU time approximates the uncontended wall time."""
    fn()  # warm-up (lazy imports, allocator)
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def bench_conversion(config, run: Path | None, seconds: float, threads_list, repeats: int) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if run is not None:
            vq, mg = RunLayout.of(run).vqvae_checkpoint, RunLayout.of(run).melgan_checkpoint
        else:
            vq, mg = untrained_run(config, Path(tmp))
        audio = speechlike(seconds)
        for vocoder in ("melgan", "griffinlim"):
            converter = Converter(vq, mg, vocoder=vocoder, device="cpu", tract_search=config.conversion.tract_search)
            for threads in threads_list:
                torch.set_num_threads(threads)
                wall, cpu = median_time(lambda: converter.convert(audio, "V001"), repeats if vocoder == "melgan" else 1)
                rows.append({"vocoder": vocoder, "threads": threads, "wall s": wall, "xRT (wall)": seconds / wall,
                             "CPU s": cpu, "xRT (CPU time / threads)": seconds * threads / cpu})
    return rows


def bench_training(preset: str, threads: int, repeats: int) -> dict:
    config = load_config(preset)
    torch.set_num_threads(threads)
    spec = feature_spec(config)
    train = config.melgan.train
    torch.manual_seed(0)
    trainer = MelGANTrainer(config, spec, {"V001": 0, "V002": 1}, torch.device("cpu"))
    samples = train.segment_frames * spec.hop_length
    audio = torch.from_numpy(np.stack([speechlike(samples / spec.sample_rate)] * train.batch_size))
    audio = audio * torch.linspace(0.5, 1.0, audio.shape[0])[:, None]
    with torch.no_grad():
        batch = (LogMel(spec)(audio), audio, torch.zeros(audio.shape[0], dtype=torch.long))
    warm, warm_cpu = median_time(lambda: trainer.step(batch, 0), repeats)
    adv, adv_cpu = median_time(lambda: trainer.step(batch, trainer.warmup), repeats)
    steps, warmup = train.steps, train.warmup_steps
    return {"preset": preset, "threads": threads, "G params": count_parameters(trainer.generator),
            "D params": count_parameters(trainer.discriminator),
            "batch": f"{train.batch_size}x{samples}", "warmup s/step": warm, "adv s/step": adv,
            "adv steps/s": 1 / adv, "warmup CPU s": warm_cpu, "adv CPU s": adv_cpu, "steps": steps,
            "est. min (wall)": (warmup * warm + (steps - warmup) * adv) / 60,
            "est. min (CPU/threads)": (warmup * warm_cpu + (steps - warmup) * adv_cpu) / threads / 60}


def table(rows: list[dict], fmt: dict | None = None) -> str:
    fmt = fmt or {}
    keys = list(rows[0])
    cells = [[fmt.get(k, "{}").format(r[k]) if not isinstance(r[k], float) else f"{r[k]:.3g}" for k in keys]
             for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    line = lambda vals: "  ".join(v.rjust(w) for v, w in zip(vals, widths))  # noqa: E731
    return "\n".join([line(keys), line(["-" * w for w in widths])] + [line(c) for c in cells])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="demo", help="preset whose model sizes the conversion uses")
    parser.add_argument("--run", type=Path, help="a trained run folder (vqvae/ and melgan/) instead of random weights")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the converted clip")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch thread counts to compare")
    parser.add_argument("--presets", nargs="+", default=["tiny", "demo"], help="presets for the training benchmark")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per measurement (median)")
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.2f} (cores: {os.cpu_count()})")
    config = load_config(args.preset)
    print(f"\nConversion of a {args.seconds:g} s clip, {args.preset} sizes"
          f" ({'trained run ' + str(args.run) if args.run else 'untrained weights'}); xRT = audio s / wall s")
    print(table(bench_conversion(config, args.run, args.seconds, args.threads, args.repeats)))
    print("\nMelGAN training step (random audio batches of the preset's shape)")
    rows = [bench_training(p, t, max(2, args.repeats // 2)) for p in args.presets for t in args.threads]
    print(table(rows))
    print(f"\nload average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
