"""``zs2020 convert``: re-speak one wav, or every synthesis.txt line of a dataset, in a target voice,
or (vqmivc runs) one wav in the voice of a reference utterance. The ``conversion:`` settings come
from the config stored with the unit-system checkpoint, with trailing ``key=value`` overrides."""
from __future__ import annotations

from pathlib import Path

import click

from pipeline.contract.dataset import Dataset
from pipeline.core.audio import read_wav, write_wav
from pipeline.core.errors import UserError
from pipeline.core.io import check_output_path
from pipeline.core.outputs import Input, claim_folder, refuse_overlap
from pipeline.core.layout import RunLayout
from pipeline.core.runtime import set_threads
from pipeline.core.threads import pool_size
from pipeline.stages.options import checkpoint_config, overrides_argument
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


def one_shot_vocoder(run: Path | None, melgan: Path | None) -> tuple[Path | None, str | None]:
    """The vocoder for a reference voice: RUN's universal MelGAN when it has one, else ``melgan``
    (the target-voice one) with a note saying so."""
    if run is None:
        return melgan, None
    universal = RunLayout.of(run).universal_melgan_checkpoint
    if universal.is_file():
        return universal, None
    return melgan, (f"note: no universal vocoder ({universal}; `make melgan-universal` trains one): the "
                    f"target-voice MelGAN renders the unseen voice")


@click.command("convert", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--run", type=click.Path(path_type=Path),
              help="Run folder holding vqvae/checkpoint.pt and melgan/checkpoint.pt.")
@click.option("--vqvae", type=click.Path(path_type=Path), help="VQ-VAE checkpoint (overrides RUN's).")
@click.option("--melgan", type=click.Path(path_type=Path), help="MelGAN checkpoint (overrides RUN's).")
@click.option("--vocoder", type=click.Choice(VOCODERS), default="melgan", show_default=True,
              help="melgan: the trained vocoder; griffinlim: no vocoder checkpoint needed (debugging).")
@click.option("--source", type=click.Path(path_type=Path), help="One 16 kHz mono wav to convert (needs --target).")
@click.option("--target", help="Target voice for --source, e.g. V001.")
@click.option("--reference", type=click.Path(path_type=Path),
              help="With --source, instead of --target: a wav of any speaker whose voice to speak in "
                   "(one-shot; vqmivc runs). Uses RUN/melgan_universal when it exists.")
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
@overrides_argument
def convert_command(run, vqvae, melgan, vocoder, source, target, reference, dataset, language, out, device, threads,
                    jobs, force, quiet, overrides):
    """Re-speak one wav, or every synthesis.txt line of a dataset, in a target voice.

    OVERRIDES are key=value settings on top of the config stored with the unit-system checkpoint;
    the conversion: ones act here, e.g. conversion.tract_search=0 (no stretch of the source).

    \b
    zs2020 convert --run data/runs/demo --source in.wav --target V001 --out out.wav
    zs2020 convert --run data/runs/demo --source in.wav --reference them.wav --out out.wav
    zs2020 convert --run data/runs/demo --dataset data/corpus --out converted/ conversion.tract_search=0
    """
    if (source is None) == (dataset is None):
        raise UserError("give exactly one of --source (with --target) or --dataset")
    if source is not None and bool(target) == (reference is not None):
        raise UserError("--source needs exactly one of --target VOICE or --reference WAV")
    if reference is not None and dataset is not None:
        raise UserError("--reference works with --source (one wav), not with --dataset")
    given_melgan = melgan
    vqvae, melgan = resolve_checkpoints(run, vqvae, melgan, vocoder)
    inputs = [Input("--run", run, holds_outputs=True), Input("--vqvae", vqvae), Input("--melgan", melgan),
              Input("--source", source), Input("--reference", reference), Input("--dataset", dataset)]
    if source is not None:
        check_output_path(out, "file")
        refuse_overlap(out, inputs)
    settings = checkpoint_config(vqvae, overrides).conversion      # a bad override fails before any output
    if source is None:
        claim_folder(out, "convert", inputs)
    note = None
    if reference is not None and vocoder == "melgan" and given_melgan is None:
        melgan, note = one_shot_vocoder(run, melgan)
    set_threads(threads)
    converter = Converter(vqvae, melgan, vocoder=vocoder, device=device, tract_search=settings.tract_search)
    if source is not None:
        voice = None
        if reference is not None:
            voice = converter.reference_voice(read_wav(reference, converter.spec.sample_rate), str(reference))
        audio = read_wav(source, converter.spec.sample_rate)
        write_wav(out, converter.convert(audio, target, voice, name=str(source)), converter.spec.sample_rate)
        if note:
            click.echo(note, err=True)
        click.echo(f"wrote {out} ({target or f'the voice of {reference}'}, "
                   f"{len(audio) / converter.spec.sample_rate:.2f} s)")
    else:
        data = Dataset(dataset, language)
        paths = convert_synthesis(data, out, converter, progress=not quiet, skip_up_to_date=not force,
                                  jobs=1 if threads else pool_size(jobs or None, len(data.synthesis())))
        click.echo(f"wrote {len(paths)} wavs to {out}")
