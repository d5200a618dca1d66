"""What every stage command shares: the config options and how a stage finds its config.

Training stages start from a preset (``--config``, default ``demo``). Later stages (convert,
submit, units, evaluate) use the config stored with the run's unit-system checkpoint, so
``make evaluate CONFIG=full`` and a run trained with ``full`` agree; ``--config`` replaces it
and trailing ``key=value`` overrides apply on top of either (``conversion.tract_search=0``
changes how a trained run converts, without retraining).
"""
from __future__ import annotations

from pathlib import Path

import click

from pipeline.core.checkpoint import load_checkpoint
from pipeline.core.config import Config, config_from_checkpoint, load_config
from pipeline.core.layout import RunLayout

CONFIG_HELP = "Preset name (tiny, demo, full) or a YAML file."


def training_config(preset: str, overrides) -> Config:
    return load_config(preset, overrides)


def run_config(run: str | Path | None, preset: str | None, overrides=()) -> Config:
    """``--config`` when given; else the config stored in RUN's unit-system checkpoint; else the
    demo preset (no run). Overrides apply on top."""
    if preset:
        return load_config(preset, overrides)
    checkpoint = RunLayout.of(run).vqvae_checkpoint if run else None
    if checkpoint is not None and checkpoint.is_file():
        return checkpoint_config(checkpoint, overrides)
    return load_config("demo", overrides)


def checkpoint_config(checkpoint: str | Path, overrides=()) -> Config:
    """The config stored in a checkpoint, with overrides applied on top."""
    return config_from_checkpoint(load_checkpoint(checkpoint)["config"], checkpoint).replace(overrides)


def config_option(default: str | None):
    text = CONFIG_HELP + (" Default: the config stored with --run's checkpoints (demo without one)."
                          if default is None else "")
    return click.option("--config", "preset", default=default, show_default=default is not None, help=text)


def out_dir_option(help_text: str):
    return click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
                        help=help_text)


def features_dir_option():
    return click.option("--features", "features_dir", required=True,
                        type=click.Path(file_okay=False, path_type=Path),
                        help="Features folder holding <language>.h5 (from `zs2020 features`).")


def dataset_option(help_text: str):
    return click.option("--dataset", "dataset_root", required=True, type=click.Path(file_okay=False, path_type=Path),
                        help=help_text)


overrides_argument = click.argument("overrides", nargs=-1)
quiet_option = click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
force_option = click.option("--force", is_flag=True, help="Redo the work even when the outputs are up to date.")
