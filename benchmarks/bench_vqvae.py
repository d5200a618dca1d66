"""VQ-VAE-2 training speed per preset: optimisation steps per second of the real training step
(`pipeline.train.vqvae.train_step`) on random log-mel batches of each preset's batch size and
segment length, for 1 and 2 torch threads.

    .venv/bin/python benchmarks/bench_vqvae.py [--presets tiny,demo,full] [--steps 20] [--threads 1,2]

The full preset is GPU-sized: on a CPU it runs only --full-steps steps. The table shows median
step times after one warm-up step, the projected wall time of the preset's whole training run,
and the 1-minute load average (the machine may be shared with other jobs).
"""
from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import click
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.vqvae2 import STRIDE, VQVAE2  # noqa: E402
from pipeline.core.config import load_config  # noqa: E402
from pipeline.core.runtime import pick_device  # noqa: E402
from pipeline.train.vqvae import model_config, train_step  # noqa: E402

NUM_SPEAKERS = 40


def time_steps(preset: str, steps: int, threads: int, device: torch.device) -> dict:
    config = load_config(preset)
    tcfg = config.vqvae.train
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = VQVAE2(model_config(config, NUM_SPEAKERS, 80)).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=tcfg.lr)
    segment = tcfg.segment_frames - tcfg.segment_frames % STRIDE
    batch = (torch.randn(tcfg.batch_size, 80, segment) - 2.0, torch.randint(0, NUM_SPEAKERS, (tcfg.batch_size,)))
    amp = config.runtime.amp
    times = []
    for step in range(steps + 1):
        start = time.perf_counter()
        train_step(model, optimizer, batch, config.vqvae, step, device, amp)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step:  # the first step pays one-time allocation costs
            times.append(time.perf_counter() - start)
    med = statistics.median(times)
    return {"params": sum(p.numel() for p in model.parameters()), "batch": f"{tcfg.batch_size}x{segment}",
            "median": med, "steps_total": tcfg.steps, "projected_min": med * tcfg.steps / 60}


@click.command()
@click.option("--presets", default="tiny,demo,full", show_default=True)
@click.option("--steps", default=20, show_default=True, help="Timed steps for tiny and demo.")
@click.option("--full-steps", default=2, show_default=True, help="Timed steps for full on a CPU.")
@click.option("--threads", "threads_list", default="1,2", show_default=True, help="Comma-separated thread counts.")
@click.option("--device", default="auto", show_default=True)
def main(presets, steps, full_steps, threads_list, device):
    device = pick_device(device)
    print(f"device {device}; cores {os.cpu_count()}; load average {os.getloadavg()[0]:.2f}")
    print(f"{'preset':>6} {'threads':>7} {'params':>9} {'batch':>8} {'ms/step':>8} {'steps/s':>8} "
          f"{'run steps':>9} {'projected':>10} {'load':>5}")
    for preset in presets.split(","):
        n = full_steps if preset == "full" and device.type == "cpu" else steps
        for threads in [int(t) for t in threads_list.split(",")]:
            r = time_steps(preset, n, threads, device)
            print(f"{preset:>6} {threads:>7} {r['params'] / 1e6:>8.2f}M {r['batch']:>8} {r['median'] * 1e3:>8.1f} "
                  f"{1 / r['median']:>8.2f} {r['steps_total']:>9} {r['projected_min']:>8.1f}min "
                  f"{os.getloadavg()[0]:>5.2f}")


if __name__ == "__main__":
    main()
