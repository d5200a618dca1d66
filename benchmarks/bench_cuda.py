"""Training speed and memory of the `full` preset's models on a CUDA GPU, in float32 and in
bfloat16 autocast: the real training steps (`pipeline.train.*`) on random batches of the preset's
shapes. Prints milliseconds per step (median after warm-up), peak GPU memory and the projected
time of the preset's whole run.

    python benchmarks/bench_cuda.py [--preset full] [--steps 30]

Needs a CUDA device; CPU timings are in bench_vqvae.py and bench_convert.py.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.logmel import LogMel  # noqa: E402
from models.vqmivc import VQMIVC  # noqa: E402
from models.vqvae2 import STRIDE, VQVAE2  # noqa: E402
from pipeline.core.config import load_config  # noqa: E402
from pipeline.features import feature_spec  # noqa: E402
from pipeline.train import vqmivc as vqmivc_training  # noqa: E402
from pipeline.train import vqvae as vqvae_training  # noqa: E402
from pipeline.train.melgan import MelGANTrainer  # noqa: E402

SPEAKERS = 102          # the real English training set's speakers


def timed(step, steps: int, device) -> tuple[float, float]:
    """(median seconds per step after 3 warm-up steps, peak memory GiB)."""
    for i in range(3):
        step(i)
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    times = []
    for i in range(steps):
        start = time.perf_counter()
        step(3 + i)
        torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), torch.cuda.max_memory_allocated(device) / 2 ** 30


def vqvae_step(config, device):
    tcfg = config.vqvae.train
    model = VQVAE2(vqvae_training.model_config(config, SPEAKERS, 80)).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=tcfg.lr)
    segment = tcfg.segment_frames - tcfg.segment_frames % STRIDE
    batch = (torch.randn(tcfg.batch_size, 80, segment) - 2, torch.randint(0, SPEAKERS, (tcfg.batch_size,)))
    return (lambda step: vqvae_training.train_step(model, optimizer, batch, config.vqvae, step, device,
                                                   config.runtime.amp)), model, tcfg.steps


def vqmivc_step(config, device):
    tcfg = config.vqvae.train
    cfg = vqmivc_training.model_config(config, 80)
    model = VQMIVC(cfg).to(device).train()
    estimators = vqmivc_training.build_estimators(cfg, config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=tcfg.lr)
    mi_optimizer = torch.optim.Adam(estimators.parameters(), lr=config.vqmivc.mi.lr) if len(estimators) else None
    segment = tcfg.segment_frames - tcfg.segment_frames % STRIDE
    pitch = torch.zeros(tcfg.batch_size, 2, segment)
    batch = (torch.randn(tcfg.batch_size, 80, segment) - 2, pitch)
    return (lambda step: vqmivc_training.train_step(model, estimators, optimizer, mi_optimizer, batch, config, step,
                                                    device)), model, tcfg.steps


def melgan_steps(config, device):
    spec = feature_spec(config)
    train = config.melgan.train
    trainer = MelGANTrainer(config, spec, {"V001": 0, "V002": 1}, device)
    samples = train.segment_frames * spec.hop_length
    audio = 0.3 * torch.randn(train.batch_size, samples)
    mel = LogMel(spec)(audio)
    batch = (mel, audio, torch.zeros(train.batch_size, dtype=torch.long))
    warm = lambda step: trainer.step(batch, 0)                  # noqa: E731  generator only
    adv = lambda step: trainer.step(batch, trainer.warmup)      # noqa: E731  adversarial
    return warm, adv, trainer.generator, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="full")
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("skipped: no CUDA device (the GPU table in the README was measured on an H200)")
        return
    device = torch.device("cuda")
    print(f"{torch.cuda.get_device_name(device)}; torch {torch.__version__}; preset {args.preset}")
    print("| model | precision | params | ms/step | peak memory GiB | preset steps | projected |")
    print("|---|---|---|---|---|---|---|")
    for amp in (False, True):
        precision = "bf16 autocast" if amp else "float32"
        config = load_config(args.preset, [f"runtime.amp={str(amp).lower()}", "runtime.device=cuda"])
        for name, build in (("VQ-VAE-2", vqvae_step), ("VQMIVC", vqmivc_step)):
            torch.manual_seed(0)
            step, model, total = build(config, device)
            seconds, memory = timed(step, args.steps, device)
            params = sum(p.numel() for p in model.parameters()) / 1e6
            print(f"| {name} | {precision} | {params:.1f} M | {1e3 * seconds:.1f} | {memory:.1f} | {total} | "
                  f"{seconds * total / 3600:.1f} h |", flush=True)
            del model, step
            torch.cuda.empty_cache()
        torch.manual_seed(0)
        warm, adv, generator, train = melgan_steps(config, device)
        warm_s, warm_mem = timed(warm, args.steps, device)
        adv_s, adv_mem = timed(adv, args.steps, device)
        params = sum(p.numel() for p in generator.parameters()) / 1e6
        total = train.warmup_steps * warm_s + (train.steps - train.warmup_steps) * adv_s
        print(f"| MelGAN generator-only step | {precision} | G {params:.1f} M | {1e3 * warm_s:.1f} | {warm_mem:.1f} | "
              f"{train.warmup_steps} | |")
        print(f"| MelGAN adversarial step | {precision} | G {params:.1f} M | {1e3 * adv_s:.1f} | {adv_mem:.1f} | "
              f"{train.steps - train.warmup_steps} | {total / 3600:.1f} h (whole run) |", flush=True)
        del warm, adv, generator
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
