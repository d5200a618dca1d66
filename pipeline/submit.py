"""``zs2020 submit``: write the submission folder and zip of a trained run in the official layout."""
from __future__ import annotations

from pathlib import Path

import click


@click.command("submit", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--dataset", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Dataset root (ROOT/2019/<language>/test, synthesis.txt): the demo corpus or the real "
                   "ZeroSpeech 2020 dataset. Every language it has is written.")
@click.option("--run", "run_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Run folder holding vqvae/checkpoint.pt and (for --vocoder melgan) melgan/checkpoint.pt.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Submission folder to write, e.g. RUN/submission (replaced atomically).")
@click.option("--zip", "zip_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Zip to write next to the folder [default: <OUT>.zip, e.g. RUN/submission.zip].")
@click.option("--no-zip", is_flag=True, help="Write only the folder.")
@click.option("--config", "preset", default="demo", show_default=True,
              help="Preset name (tiny, demo, full) or YAML file; its submission: section sets author, "
                   "affiliation, open source, ABX distance, auxiliary embeddings.")
@click.option("--filelists", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Official file lists: the zerospeech2020 package's share/2019 folder (english/ and "
                   "surprise/) or one language's folder. Default: the dataset's lists/, else derived "
                   "from its test/ wavs and synthesis.txt.")
@click.option("--vocoder", type=click.Choice(["melgan", "griffinlim"]), default=None,
              help="Vocoder for the converted wavs [default: submission.vocoder of the config].")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None,
              help="Encoder processes [default: submission.jobs of the config].")
@click.option("--force", is_flag=True, help="Rewrite even when the folder and zip are up to date.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@click.argument("overrides", nargs=-1)
def submit_command(dataset, run_dir, out_dir, zip_path, no_zip, preset, filelists, vocoder, jobs, force, quiet,
                   overrides):
    """Encode every test wav into unit files and convert every synthesis.txt line, writing a
    submission in the official ZeroSpeech 2020 layout (2019 track) and its zip.

    OVERRIDES are key=value config settings, e.g. submission.author="Jane Doe"
    submission.auxiliary=false. The step is skipped when its inputs (checkpoints, file lists,
    test wavs, synthesis lines, submission settings) have not changed since the last run.

    \b
    zs2020 submit --dataset data/corpus --run data/runs/demo --out data/runs/demo/submission
    zs2020 submit --dataset /data/zerospeech2020 --run data/runs/full --out data/runs/full/submission \\
        --config full --filelists zerospeech2020/share/2019
    """
    from pipeline.config import load_config
    from submission.writer import write_submission

    config = load_config(preset, overrides)
    result = write_submission(dataset, run_dir, out_dir, config, zip_path=zip_path, make_zip=not no_zip,
                              filelists=filelists, vocoder=vocoder, force=force, jobs=jobs, progress=not quiet)
    summary = ", ".join(f"{lang}: {c.get('units', 0)} unit files, {c.get('wavs', 0)} wavs"
                        for lang, c in result.counts.items())
    state = "wrote" if result.rebuilt else "up to date:"
    click.echo(f"{state} {result.folder} ({summary})")
    if result.zip is not None:
        click.echo(f"{'wrote' if result.zipped else 'up to date:'} {result.zip}")
