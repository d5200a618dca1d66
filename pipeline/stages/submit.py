"""``zs2020 submit``: the submission of a trained run, in the official layout, and its zip.

The stage encodes every listed test wav and converts every synthesis line through
``pipeline.systems`` and hands the finished unit arrays and wavs to ``submission.writer``. It is
skipped when its stamp records the same inputs (checkpoints, file lists, test wavs, synthesis
lines, the ``submission:`` and ``conversion:`` settings); a second run on the same output fails
at once.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import click

from pipeline.contract.dataset import speaker_of
from pipeline.contract.names import LANGUAGES
from pipeline.core.config import Config
from pipeline.core.errors import UserError
from pipeline.core.io import file_digest, output_lock
from pipeline.core.outputs import Input, claim_file, claim_folder, write_marker
from pipeline.core.layout import RunLayout
from pipeline.core.stamp import fingerprint, is_up_to_date, read_stamp, write_stamp
from pipeline.core.threads import pool_size
from pipeline.stages.options import config_option, overrides_argument, run_config
from pipeline.systems.converter import Converter, convert_synthesis, test_speaker_stats
from pipeline.systems.encoding import encode_wavs
from pipeline.systems.vocoders import VOCODERS
from pipeline.systems.unit_systems import load_unit_system
from pipeline.systems.vqvae import Units
from submission.writer import (LanguagePlan, draft_submission, plan_languages, top_metadata, track_metadata,
                               uses_parallel_data, write_unit_arrays, write_zip)

WRITER_VERSION = 2


@dataclass
class SubmissionResult:
    folder: Path
    zip: Path | None
    fingerprint: str
    rebuilt: bool                       # False when the folder was already up to date
    zipped: bool                        # False when the zip was already up to date (or not asked)
    counts: dict                        # language -> {"units": n, "frames": n, "wavs": n}


def inputs_fingerprint(plans: dict[str, LanguagePlan], checkpoints: list[Path], config: Config, vocoder: str) -> str:
    """Everything the folder's content depends on (not jobs or the zip level; the conversion
    settings, since the converted wavs depend on them)."""
    data = []
    for language, plan in plans.items():
        wavs = [(Path(p).name, os.stat(p).st_size, os.stat(p).st_mtime_ns) for p, _ in plan.items]
        data.append((language, plan.lists.required, plan.lists.embedding, wavs,
                     [(line.source.key, line.voice) for line in plan.synthesis]))
    content = {k: v for k, v in config.submission.to_dict().items() if k not in ("jobs", "zip_level")}
    return fingerprint(WRITER_VERSION, [file_digest(p) for p in checkpoints], content, config.conversion, vocoder,
                       data)


def _write_units(folders: list[str], name: str, units: Units) -> int:
    """Encoding sink (runs where the encoding ran): the unit files of one utterance."""
    return write_unit_arrays(name, folders, units.submission_arrays())


def make_submission(dataset_root: str | os.PathLike, run_dir: str | os.PathLike, out_dir: str | os.PathLike,
                    config: Config, zip_path: str | os.PathLike | None = None, make_zip: bool = True,
                    filelists: str | os.PathLike | None = None, vocoder: str | None = None, force: bool = False,
                    jobs: int | None = None, progress: bool = True) -> SubmissionResult:
    """Build ``out_dir`` (and ``<out_dir>.zip`` unless ``make_zip`` is False) from a trained run."""
    dataset_root, out_dir = Path(dataset_root), Path(out_dir)
    layout = RunLayout.of(run_dir)
    section = config.submission
    vocoder = vocoder or section.vocoder
    if vocoder not in VOCODERS:
        raise UserError(f"unknown vocoder {vocoder!r}: use one of {', '.join(VOCODERS)}")
    zip_path = (Path(zip_path) if zip_path else out_dir.with_name(out_dir.name + ".zip")) if make_zip else None
    checkpoints = [layout.vqvae_checkpoint] + ([layout.melgan_checkpoint] if vocoder == "melgan" else [])
    inputs = [Input("--dataset", dataset_root), Input("--run", run_dir, holds_outputs=True),
              Input("--filelists", filelists), *(Input("checkpoint", path) for path in checkpoints)]
    for path in checkpoints:
        if not path.is_file():
            raise UserError(f"{path}: no such checkpoint (train it first: make vqvae melgan, "
                            f"or use --vocoder griffinlim without a MelGAN)")
    plans = plan_languages(dataset_root, filelists)
    claim_folder(out_dir, "submit", inputs, replaces=True)
    if zip_path is not None:
        claim_file(zip_path, "a submission zip", [*inputs, Input("--out", out_dir)], option="--zip",
                   owned=bool(read_stamp(zip_path)))
    fp = inputs_fingerprint(plans, checkpoints, config, vocoder)
    with output_lock(out_dir, "submit run"):
        rebuild = force or not is_up_to_date(out_dir, fp)
        if rebuild:
            counts = _build(out_dir, plans, layout, config, vocoder, jobs, progress)
            write_marker(out_dir, "submit")
            write_stamp(out_dir, fp, counts=counts)
        counts = read_stamp(out_dir).get("counts", {})
        zipped = False
        if zip_path is not None:
            zip_fp = fingerprint(fp, section.zip_level)
            if rebuild or not is_up_to_date(zip_path, zip_fp):
                write_zip(out_dir, zip_path, section.zip_level, zip_fp, progress)
                write_stamp(zip_path, zip_fp)
                zipped = True
    return SubmissionResult(out_dir, zip_path, fp, rebuild, zipped, counts)


def _build(out_dir: Path, plans: dict[str, LanguagePlan], layout: RunLayout, config: Config, vocoder: str,
           jobs: int | None, progress: bool) -> dict:
    section = config.submission
    system = load_unit_system(layout.vqvae_checkpoint, "cpu")
    converter = Converter(layout.vqvae_checkpoint, layout.melgan_checkpoint if vocoder == "melgan" else None,
                          vocoder=vocoder, device="cpu", tract_search=config.conversion.tract_search)
    parallel = uses_parallel_data(plans["english"].dataset.root, system.languages)
    hyper = {**system.hyperparameters(), "vocoder": converter.vocoder.hyperparameters()}
    track = track_metadata(section, system.description(converter.vocoder.description), hyper, parallel,
                           system.AUX_DESCRIPTIONS if section.auxiliary else None)
    counts, speaker_stats = {}, {}
    with draft_submission(out_dir, plans, top_metadata(section), track, section.auxiliary) as draft:
        for language, plan in plans.items():
            items = [(name, wav) for wav, name in plan.items]
            workers = pool_size(jobs or section.jobs or None, len(items))
            stats = None
            if system.speaker_norm:
                # one pass: the unit files and the conversion sources of a test speaker read the same statistics
                speaker_stats[language] = test_speaker_stats(plan.dataset, system.spec, progress=progress,
                                                             jobs=workers)
                stats = [speaker_stats[language][speaker_of(Path(wav).stem)] for _, wav in items]
            sink = functools.partial(_write_units, draft.unit_folders(language))
            frames = encode_wavs(layout.vqvae_checkpoint, items, sink, jobs=workers, progress=progress,
                                 desc=f"units {language}", stats=stats)
            counts[language] = {"units": len(frames), "frames": int(sum(frames))}
        for language, plan in plans.items():
            workers = pool_size(jobs or section.jobs or None, len(plan.synthesis))
            wavs = convert_synthesis(plan.dataset, draft.test_dir(language), converter, progress=progress,
                                     keep_stamps=False, jobs=workers, speaker_stats=speaker_stats.get(language))
            counts[language]["wavs"] = len(wavs)
    return counts


@click.command("submit", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--dataset", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Dataset root (ROOT/2019/<language>/test, synthesis.txt): the demo corpus or the real "
                   "ZeroSpeech 2020 dataset. Every language it has is written.")
@click.option("--run", "run_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Run folder holding vqvae/checkpoint.pt and (for --vocoder melgan) melgan/checkpoint.pt.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True,
              help="Submission folder to write, e.g. RUN/submission (replaced atomically).")
@click.option("--zip", "zip_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Zip to write next to the folder [default: <OUT>.zip, e.g. RUN/submission.zip].")
@click.option("--no-zip", is_flag=True, help="Write only the folder.")
@config_option(None)
@click.option("--filelists", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Official file lists: the zerospeech2020 package's share/2019 folder (english/ and "
                   "surprise/) or one language's folder. Default: the dataset's lists/, else derived "
                   "from its test/ wavs and synthesis.txt.")
@click.option("--vocoder", type=click.Choice(VOCODERS), default=None,
              help="Vocoder for the converted wavs [default: submission.vocoder of the config].")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None,
              help="Encoder processes [default: submission.jobs of the config; 0 there = one per CPU].")
@click.option("--force", is_flag=True, help="Rewrite even when the folder and zip are up to date.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@overrides_argument
def submit_command(dataset, run_dir, out_dir, zip_path, no_zip, preset, filelists, vocoder, jobs, force, quiet,
                   overrides):
    """Encode every test wav into unit files and convert every synthesis.txt line, writing a
    submission in the official ZeroSpeech 2020 layout (2019 track) and its zip.

    OVERRIDES are key=value config settings, e.g. submission.author="Jane Doe"
    submission.auxiliary=false conversion.tract_search=0. The step is skipped when its inputs
    (checkpoints, file lists, test wavs, synthesis lines, submission and conversion settings) have
    not changed since the last run.

    \b
    zs2020 submit --dataset data/corpus --run data/runs/demo --out data/runs/demo/submission
    zs2020 submit --dataset /data/zerospeech2020 --run data/runs/full --out data/runs/full/submission \\
        --filelists zerospeech2020/share/2019
    """
    config = run_config(run_dir, preset, overrides)
    result = make_submission(dataset, run_dir, out_dir, config, zip_path=zip_path, make_zip=not no_zip,
                             filelists=filelists, vocoder=vocoder, force=force, jobs=jobs, progress=not quiet)
    summary = ", ".join(f"{lang}: {c.get('units', 0)} unit files, {c.get('wavs', 0)} wavs"
                        for lang, c in result.counts.items() if lang in LANGUAGES)
    state = "wrote" if result.rebuilt else "up to date:"
    click.echo(f"{state} {result.folder} ({summary})")
    if result.zip is not None:
        click.echo(f"{'wrote' if result.zipped else 'up to date:'} {result.zip}")
