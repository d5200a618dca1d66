"""``zs2020 convert``: re-speak one wav, or every synthesis.txt line of a dataset, in a target voice."""
from __future__ import annotations

from pathlib import Path

import click

from pipeline.contract.dataset import Dataset
from pipeline.core.audio import read_wav, write_wav
from pipeline.core.errors import UserError
from pipeline.core.layout import RunLayout
from pipeline.core.runtime import set_threads
from pipeline.core.threads import pool_size
from pipeline.systems.converter import Converter, convert_synthesis
from pipeline.systems.vocoders import VOCODERS


def resolve_checkpoints(run: Path | None, vqvae: Path | None, melgan: Path | None, vocoder: str
                        ) -> tuple[Path, Path | None]:
    if run is not None:
        layout = RunLayout.of(run)
        vqvae = vqvae or layout.vqvae_checkpoint
        melgan = melgan or layout.melgan_checkpoint
    if vqvae is None:
        raise UserError("give --run RUN or --vqvae CHECKPOINT")
    return vqvae, (melgan if vocoder == "melgan" else None)


def check_output_file(out: Path) -> None:
    """Refuse an output path that cannot be written, before any work."""
    if out.is_dir():
        raise UserError(f"--out {out}: is an existing folder; give a .wav file path")
    if out.parent.exists() and not out.parent.is_dir():
        raise UserError(f"--out {out}: {out.parent} is not a folder")


@click.command("convert", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--run", type=click.Path(path_type=Path),
              help="Run folder holding vqvae/checkpoint.pt and melgan/checkpoint.pt.")
@click.option("--vqvae", type=click.Path(path_type=Path), help="VQ-VAE checkpoint (overrides RUN's).")
@click.option("--melgan", type=click.Path(path_type=Path), help="MelGAN checkpoint (overrides RUN's).")
@click.option("--vocoder", type=click.Choice(VOCODERS), default="melgan", show_default=True,
              help="melgan: the trained vocoder; griffinlim: no vocoder checkpoint needed (debugging).")
@click.option("--source", type=click.Path(path_type=Path), help="One 16 kHz mono wav to convert (needs --target).")
@click.option("--target", help="Target voice for --source, e.g. V001.")
@click.option("--dataset", type=click.Path(path_type=Path),
              help="Dataset root: convert every line of ROOT/2019/LANGUAGE/synthesis.txt.")
@click.option("--language", default="english", show_default=True, help="Dataset language for --dataset.")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Output wav (with --source) or output folder of <VOICE>_<id>.wav files (with --dataset).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Torch threads, in this process only [default: the thread policy, one per worker].")
@click.option("--jobs", type=click.IntRange(min=1), default=None,
              help="With --dataset: conversion processes [default: one per CPU this process may use].")
@click.option("--force", is_flag=True, help="With --dataset: reconvert files that are already up to date.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def convert_command(run, vqvae, melgan, vocoder, source, target, dataset, language, out, device, threads, jobs, force,
                    quiet):
    """Re-speak one wav, or every synthesis.txt line of a dataset, in a target voice.

    \b
    zs2020 convert --run data/runs/demo --source in.wav --target V001 --out out.wav
    zs2020 convert --run data/runs/demo --dataset data/corpus --out converted/
    """
    if (source is None) == (dataset is None):
        raise UserError("give exactly one of --source (with --target) or --dataset")
    if source is not None and not target:
        raise UserError("--source needs --target VOICE")
    vqvae, melgan = resolve_checkpoints(run, vqvae, melgan, vocoder)
    set_threads(threads)
    if source is not None:
        check_output_file(out)
        converter = Converter(vqvae, melgan, vocoder=vocoder, device=device)
        audio = read_wav(source, converter.spec.sample_rate)
        write_wav(out, converter.convert(audio, target), converter.spec.sample_rate)
        click.echo(f"wrote {out} ({target}, {len(audio) / converter.spec.sample_rate:.2f} s)")
    else:
        if out.exists() and not out.is_dir():
            raise UserError(f"--out {out}: exists and is not a folder")
        data = Dataset(dataset, language)
        converter = Converter(vqvae, melgan, vocoder=vocoder, device=device)
        paths = convert_synthesis(data, out, converter, progress=not quiet, skip_up_to_date=not force,
                                  jobs=1 if threads else pool_size(jobs or None, len(data.synthesis())))
        click.echo(f"wrote {len(paths)} wavs to {out}")
