"""Training speed and memory of the `full` preset's models on a CUDA GPU, in float32 and in
bfloat16 autocast: the real training steps (`pipeline.train.*`) on random batches of the preset's
shapes. Prints milliseconds per step (median after warm-up), peak GPU memory and the projected
time of the preset's whole run.

    python benchmarks/bench_cuda.py [--preset full] [--steps 30]

Needs a CUDA device; CPU timings are in bench_vqvae.py and bench_convert.py.

With --processes N it measures the data-parallel path instead (what `torchrun --nproc_per_node N`
runs): the same steps through DistributedDataParallel, the preset's batch split over 1 and then N
processes (NCCL, one GPU each; with --device cpu, gloo on CPU processes sharing the cores), and
prints training crops per second and the speed-up:

    python benchmarks/bench_cuda.py --processes 8 [--preset full] [--steps 30]
    python benchmarks/bench_cuda.py --processes 2 --device cpu --preset tiny
"""
from __future__ import annotations

import argparse
import os
import resource
import socket
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.logmel import LogMel  # noqa: E402
from models.vqmivc import VQMIVC  # noqa: E402
from models.vqvae2 import STRIDE, VQVAE2  # noqa: E402
from pipeline.core.config import load_config  # noqa: E402
from pipeline.core.runtime import distributed, wrap_ddp  # noqa: E402
from pipeline.features import feature_spec  # noqa: E402
from pipeline.train import vqmivc as vqmivc_training  # noqa: E402
from pipeline.train import vqvae as vqvae_training  # noqa: E402
from pipeline.train.melgan import MelGANTrainer  # noqa: E402

SPEAKERS = 102          # the real English training set's speakers


def timed(step, steps: int, device) -> tuple[float, float]:
    """(median seconds per step after 3 warm-up steps, peak memory GiB: the GPU's, or on CPU the
    process's resident set)."""
    cuda = device.type == "cuda"
    for i in range(3):
        step(i)
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for i in range(steps):
        start = time.perf_counter()
        step(3 + i)
        if cuda:
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    peak = (torch.cuda.max_memory_allocated(device) if cuda
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return statistics.median(times), peak / 2 ** 30


# Each builder: the real training step of one system on a random batch of the preset's shapes, of
# ``shares`` times fewer crops (one rank's share of the global batch), through DDP under torchrun.
def vqvae_step(config, device, shares: int = 1):
    tcfg = config.vqvae.train
    model = VQVAE2(vqvae_training.model_config(config, SPEAKERS, 80)).to(device).train()
    net = wrap_ddp(model, device, model.unused_parameters(cycle=config.vqvae.loss.cycle))
    optimizer = torch.optim.Adam(model.parameters(), lr=tcfg.lr)
    segment = tcfg.segment_frames - tcfg.segment_frames % STRIDE
    size = tcfg.batch_size // shares
    batch = (torch.randn(size, 80, segment) - 2, torch.randint(0, SPEAKERS, (size,)))
    return (lambda step: vqvae_training.train_step(net, optimizer, batch, config.vqvae, step, device,
                                                   config.runtime.amp)), model, tcfg.steps


def vqmivc_step(config, device, shares: int = 1):
    tcfg = config.vqvae.train
    cfg = vqmivc_training.model_config(config, 80)
    model = VQMIVC(cfg).to(device).train()
    net = wrap_ddp(model, device)
    estimators = vqmivc_training.build_estimators(cfg, config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=tcfg.lr)
    mi_optimizer = torch.optim.Adam(estimators.parameters(), lr=config.vqmivc.mi.lr) if len(estimators) else None
    segment = tcfg.segment_frames - tcfg.segment_frames % STRIDE
    size = tcfg.batch_size // shares
    batch = {"mel": torch.randn(size, 80, segment) - 2, "pitch": torch.zeros(size, 2, segment)}
    return (lambda step: vqmivc_training.train_step(net, estimators, optimizer, mi_optimizer, batch, config, step,
                                                    device)), model, tcfg.steps


def melgan_steps(config, device, shares: int = 1):
    spec = feature_spec(config)
    train = config.melgan.train
    trainer = MelGANTrainer(config, spec, {"V001": 0, "V002": 1}, device)
    trainer.distribute()
    samples = train.segment_frames * spec.hop_length
    size = train.batch_size // shares
    audio = 0.3 * torch.randn(size, samples)
    mel = LogMel(spec)(audio)
    batch = (mel, audio, torch.zeros(size, dtype=torch.long))
    warm = lambda step: trainer.step(batch, 0)                  # noqa: E731  generator only
    adv = lambda step: trainer.step(batch, trainer.warmup)      # noqa: E731  adversarial
    return warm, adv, trainer.generator, train


# ---------------------------------------------------------------------------------------- data parallel
def parallel_rank(rank: int, world: int, port: int, preset: str, steps: int, kind: str, threads: int, out: str) -> None:
    """One process of a ``world``-process run (world 1: no process group, the one-process path):
    every system's step on its share of the global batch; rank 0 writes the rows to ``out``."""
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                          LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
    if kind == "cpu":   # the processes share the cores
        torch.set_num_threads(threads or max(1, len(os.sched_getaffinity(0)) // world))
    distributed()
    device = torch.device("cuda", rank) if kind == "cuda" else torch.device("cpu")
    config = load_config(preset, [f"runtime.device={kind}"])
    rows = []
    for name, build, batch in (("VQ-VAE-2", vqvae_step, config.vqvae.train.batch_size),
                               ("VQMIVC", vqmivc_step, config.vqvae.train.batch_size),
                               ("MelGAN adversarial", melgan_steps, config.melgan.train.batch_size)):
        torch.manual_seed(0)
        step = build(config, device, world)[1 if name.startswith("MelGAN") else 0]
        seconds, memory = timed(step, steps, device)
        rows.append({"model": name, "batch": batch, "seconds": seconds, "memory": memory})
    if rank == 0:
        Path(out).write_text(repr(rows))
    if world > 1:
        torch.distributed.destroy_process_group()


def data_parallel(preset: str, processes: int, steps: int, kind: str, threads: int) -> None:
    import ast
    import tempfile
    where = (f"{torch.cuda.get_device_name()}: NCCL, one GPU per process" if kind == "cuda" else
             f"{len(os.sched_getaffinity(0))} CPUs: gloo, {threads or 'CPUs / processes'} thread(s) per process, "
             f"load average {os.getloadavg()[0]:.1f}")
    print(f"{where}; torch {torch.__version__}; preset {preset}")
    print("| model | processes | global batch | ms/step | crops/s | speed-up | peak memory GiB (rank 0) |")
    print("|---|---|---|---|---|---|---|")
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        for world in sorted({1, processes}):
            out = Path(scratch) / f"{world}.txt"
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            mp.start_processes(parallel_rank, args=(world, port, preset, steps, kind, threads, str(out)), nprocs=world,
                               start_method="spawn")
            results[world] = ast.literal_eval(out.read_text())
    for i, base in enumerate(results[1]):
        for world, rows in results.items():
            row = rows[i]
            rate = row["batch"] / row["seconds"]
            print(f"| {row['model']} | {world} | {row['batch']} | {1e3 * row['seconds']:.1f} | {rate:.1f} | "
                  f"{base['seconds'] / row['seconds']:.2f} | {row['memory']:.2f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="full")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--processes", type=int, default=0, help="data-parallel: compare 1 and this many processes")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="with --processes")
    parser.add_argument("--threads", type=int, default=0, help="with --device cpu: torch threads per process "
                        "(default: the CPUs divided by the processes)")
    args = parser.parse_args()
    if args.processes and (args.device == "cpu" or torch.cuda.device_count() >= args.processes):
        data_parallel(args.preset, args.processes, args.steps, args.device, args.threads)
        return
    if args.processes:
        print(f"skipped: --processes {args.processes} needs as many CUDA devices ({torch.cuda.device_count()} here); "
              f"--device cpu measures the path on CPU processes")
        return
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
