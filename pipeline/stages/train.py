"""``zs2020 train-vqvae`` and ``zs2020 train-melgan``: the two training stages."""
from __future__ import annotations

from pathlib import Path

import click

from pipeline.core.checkpoint import load_checkpoint
from pipeline.core.runtime import distributed, finish_distributed, together
from pipeline.stages.options import (config_option, dataset_option, features_dir_option, out_dir_option,
                                     overrides_argument, training_config)
from pipeline.train import melgan as melgan_training
from pipeline.train import vqvae as vqvae_training
from pipeline.train import vqmivc as vqmivc_training

_FORCE = click.option("--force", is_flag=True,
                      help="Train from scratch even if a finished or resumable checkpoint exists.")
_QUIET = click.option("--quiet", is_flag=True, help="No progress bar.")


@click.command("train-vqvae", context_settings={"show_default": True})
@features_dir_option()
@out_dir_option("Run folder: checkpoint.pt, history.jsonl and curves.png are written there.")
@config_option("demo")
@_FORCE
@_QUIET
@overrides_argument
def train_vqvae_command(features_dir, out_dir, preset, force, quiet, overrides):
    """Train the unit system: the speaker-conditioned VQ-VAE-2 (20 ms bottom codes, 40 ms top
    codes), or VQMIVC (20 ms content codes, speaker encoder, pitch) with system=vqmivc.

    OVERRIDES are key=value config overrides, e.g. vqvae.train.steps=500 runtime.threads=1.
    Both systems train on the vqvae.train schedule. An interrupted run resumes from its
    checkpoint when the config and data are unchanged; a finished one is skipped. Launch with
    torchrun (torchrun --nproc_per_node N $(which zs2020) train-vqvae ...) for data parallelism over
    N GPUs or CPU processes: vqvae.train.batch_size is the global batch, split over them.
    """
    with together():
        config = training_config(preset, overrides)
    trainer = vqmivc_training if config.system == "vqmivc" else vqvae_training
    path = trainer.train(features_dir, out_dir, config, force=force, progress=not quiet, log=click.echo)
    if distributed()[0] == 0:
        ckpt = load_checkpoint(path)
        last = next((r for r in reversed(ckpt["history"]) if "val_recon" in r),
                    ckpt["history"][-1] if ckpt["history"] else {})
        summary = ", ".join(f"{k} {v:.3g}" for k, v in last.items() if k != "step")
        click.echo(f"{path}: step {ckpt['step']}; {summary}")
    finish_distributed()


@click.command("train-melgan", context_settings={"help_option_names": ["-h", "--help"]})
@features_dir_option()
@dataset_option("Dataset root the features were made from: the target voices' wavs are read there.")
@out_dir_option("Output folder: checkpoint.pt, history.jsonl, curves.png and samples/.")
@config_option("demo")
@click.option("--vqvae", "vqvae_checkpoint", default=None, type=click.Path(path_type=Path),
              help="Unit-system checkpoint (VQ-VAE-2 or VQMIVC) whose reconstructions are the vocoder's "
                   "input mels when melgan.train.input_mels=vqvae (the demo and full presets).")
@_FORCE
@_QUIET
@overrides_argument
def train_melgan_command(features_dir, dataset_root, out_dir, preset, vqvae_checkpoint, force, quiet, overrides):
    """Train the MelGAN vocoder (log-mel -> 16 kHz wav) on the target voices.

    With melgan.train.speakers=all it trains on every training speaker instead: a universal
    vocoder for one-shot conversion into unseen voices (write it to RUN/melgan_universal, where
    `zs2020 convert --reference` looks for it).

    OVERRIDES are KEY=VALUE config edits, e.g. melgan.train.steps=2000 runtime.threads=1.
    Re-running resumes an interrupted run, or does nothing when it is finished. Launch with
    torchrun, as train-vqvae, for data parallelism (melgan.train.batch_size is the global batch).
    """
    with together():
        config = training_config(preset, overrides)
    path = melgan_training.train(features_dir, dataset_root, out_dir, config, force=force, progress=not quiet,
                                 log=click.echo, vqvae_checkpoint=vqvae_checkpoint)
    if distributed()[0] == 0:
        click.echo(f"MelGAN checkpoint: {path}")
    finish_distributed()
