"""``zs2020 validate``: check a submission folder or zip against the official rules and stricter ones."""
from __future__ import annotations

import click

from pipeline.core.threads import cpus_available
from submission.validator import validate_submission


@click.command("validate")
@click.argument("submission", type=click.Path(path_type=str))
@click.option("--dataset", type=click.Path(file_okay=False, path_type=str), default=None,
              help="Dataset root (ROOT/2019/<language>/...). Its lists/ folder, or else its test/ wavs and "
                   "synthesis.txt, say which files each language must contain.")
@click.option("--filelists", type=click.Path(file_okay=False, path_type=str), default=None,
              help="Official file lists: the zerospeech2020 package's share/2019 folder (with english/ and "
                   "surprise/) or one language's folder. Takes precedence over the dataset's lists.")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None,
              help="Processes checking unit files and wavs in parallel [default: one per CPU].")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar; print only the problems and the verdict.")
def validate_command(submission, dataset, filelists, jobs, quiet):
    """Validate SUBMISSION, a submission folder or .zip in the official ZeroSpeech 2020 layout.

    Enforces every rule of the official zerospeech2020-validate (layout, metadata, code folder,
    auxiliary folders, required files) plus checks it lacks, tagged "[stricter than official]":
    unit-file format (single spaces, plain finite numbers, constant column count >= 2 within a
    file and across files), wavs (readable, complete, a possible header, 16 kHz, mono, 16-bit
    PCM, non-empty, neither silent nor saturated), symlinks and unsafe zips (absolute or ../ paths, links, encryption, unknown compression,
    bombs). A zip is read in place, never extracted. Without file lists (no --dataset or
    --filelists) file presence cannot be checked and the verdict says so. Up to 20 problems are
    listed per section. Exit status 0 when valid, 1 otherwise.
    """
    report = validate_submission(submission, dataset=dataset, filelists=filelists, jobs=jobs or cpus_available(),
                                 progress=not quiet)
    text = report.render()
    if quiet:
        text = "\n".join(line for line in text.splitlines() if not line.startswith(("  checked", "  note")))
    click.echo(text)
    if not report.valid:
        raise click.exceptions.Exit(1)
