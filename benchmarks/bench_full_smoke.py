"""The `full` preset's trainers at their real sizes, on CPU, on tiny data: each builds its models and
runs 2 steps through its real `train()` (checkpoint, validation and samples included), in a fresh
process of its own, which prints the models' parameter counts, the first batch's shapes, the
process's peak memory and its wall time. A smoke test of the sizes, not a speed measure (the
GPU speeds are in bench_cuda.py).

    .venv/bin/python benchmarks/bench_full_smoke.py [--features F --dataset D] [--work DIR]

Without --features / --dataset it builds the tiny corpus and its features under --work first.
Trainers: the VQ-VAE-2 and VQMIVC (train-vqvae), MelGAN on the VQ-VAE-2's reconstructions
(method 1, the preset's default: its second step is adversarial, so the discriminators run), and
MelGAN with the VQ-VAE-2 in the loop (method 2, finetune; method 3, joint: both on the stored mels).
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# name -> (trainer, extra overrides); every run: 2 steps, a checkpoint and validation at step 2, CPU
UNIT = ("vqvae.train.steps=2", "vqvae.train.checkpoint_every=2", "vqvae.train.val_max_utterances=4")
VOCODER = ("melgan.train.steps=2", "melgan.train.warmup_steps=1", "melgan.train.checkpoint_every=2",
           "melgan.train.log_every=1", "melgan.train.validate_every=2", "melgan.train.num_samples=1")
RUNS = {
    "VQ-VAE-2": ("vqvae", UNIT),
    "VQMIVC": ("vqvae", (*UNIT, "system=vqmivc")),
    "MelGAN separate": ("melgan", VOCODER),
    "MelGAN finetune": ("melgan", (*VOCODER, "melgan.train.method=finetune", "melgan.train.input_mels=ground_truth")),
    "MelGAN joint": ("melgan", (*VOCODER, "melgan.train.method=joint", "melgan.train.input_mels=ground_truth")),
}


def run_one(name: str, features: str, dataset: str, work: Path) -> dict:
    """Train one run of RUNS in this process; the record the parent prints."""
    import torch

    from models.melgan import count_parameters
    from pipeline.core.config import load_config
    from pipeline.core.training import TrainLoop

    kind, overrides = RUNS[name]
    config = load_config("full", [*overrides, "runtime.device=cpu"])
    seen = {}
    real_fit = TrainLoop.fit

    def fit(self, batch_fn, step_fn, *args, **kwargs):
        def first_batch(step, gen):
            batch = batch_fn(step, gen)
            items = batch.items() if isinstance(batch, dict) else (("", t) for t in batch)
            seen.setdefault("batch", [f"{k} {'x'.join(map(str, t.shape))}".strip() for k, t in items])
            return batch
        seen["parameters"] = {k: count_parameters(m) for k, m in self.models.items()}
        return real_fit(self, first_batch, step_fn, *args, **kwargs)

    TrainLoop.fit = fit
    start = time.perf_counter()
    if kind == "vqvae":
        from pipeline.train import vqmivc, vqvae
        (vqmivc if config.system == "vqmivc" else vqvae).train(features, work / name, config, progress=False)
    else:
        from pipeline.train.melgan import train
        needs_unit = config.melgan.train.input_mels == "vqvae" or config.melgan.train.method == "finetune"
        train(features, dataset, work / name, config, progress=False,
              vqvae_checkpoint=work / "VQ-VAE-2" / "checkpoint.pt" if needs_unit else None)
    return {"name": name, "seconds": time.perf_counter() - start, "threads": torch.get_num_threads(),
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, **seen}


def tiny_data(work: Path) -> tuple[str, str]:
    from pipeline.core.config import load_config
    from pipeline.corpus.build import build_corpus
    from pipeline.features import dump_features
    corpus = build_corpus(work / "corpus", scale="tiny", jobs=2)
    dump_features(corpus, work / "features", load_config("tiny"), jobs=2, progress=False)
    return str(work / "features"), str(corpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--features")
    parser.add_argument("--dataset")
    parser.add_argument("--work", help="folder for the runs (default: a temporary one)")
    parser.add_argument("--one", help=argparse.SUPPRESS)     # the child process: one run, a JSON line
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.features, args.dataset, Path(args.work))), flush=True)
        return
    with tempfile.TemporaryDirectory(prefix="full_smoke_") as scratch:
        work = Path(args.work or scratch)
        features, dataset = (args.features, args.dataset) if args.features else tiny_data(work)
        print("preset full, 2 steps per trainer on CPU on tiny data (each in a fresh process)")
        print("| trainer | parameters | first batch | peak memory GiB | wall s |")
        print("|---|---|---|---|---|")
        for name in RUNS:
            out = subprocess.run([sys.executable, __file__, "--one", name, "--features", features,
                                  "--dataset", dataset, "--work", str(work)], capture_output=True, text=True)
            if out.returncode:
                print(f"| {name} | failed: {(out.stderr.strip().splitlines() or ['?'])[-1]} | | | |", flush=True)
                continue
            row = json.loads(out.stdout.strip().splitlines()[-1])
            params = ", ".join(f"{k} {v / 1e6:.2f} M" for k, v in row["parameters"].items())
            shapes = ", ".join(row["batch"])
            print(f"| {name} | {params} | {shapes} | {row['peak_rss_gib']:.2f} | {row['seconds']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
