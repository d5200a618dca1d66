"""``zs2020 features``: dump log-mel features of a dataset to HDF5."""
from __future__ import annotations

import click

from pipeline.contract.names import LANGUAGES
from pipeline.features import FeatureStore, dump_features
from pipeline.stages.options import (config_option, dataset_option, force_option, out_dir_option, overrides_argument,
                                     quiet_option, training_config)


@click.command("features", context_settings={"show_default": True})
@dataset_option("Dataset root holding 2019/<language>/ (the demo corpus or the real ZeroSpeech 2020 data).")
@out_dir_option("Output folder; one <language>.h5 per language is written there.")
@config_option("demo")
@click.option("--language", type=click.Choice(["all", *LANGUAGES]), default="all",
              help="Which language to dump (all = every language present in the dataset).")
@click.option("--jobs", type=click.IntRange(min=1), default=2, help="Parallel worker processes.")
@force_option
@quiet_option
@overrides_argument
def features_command(dataset_root, out_dir, preset, language, jobs, force, quiet, overrides):
    """Dump log-mel features (80 mels, 10 ms hop) of every wav of a dataset to HDF5.

    OVERRIDES are key=value config overrides (e.g. features.n_mels=80). A language whose file
    is up to date (same spec, same wavs) is skipped.
    """
    config = training_config(preset, overrides)
    languages = None if language == "all" else [language]
    for path in dump_features(dataset_root, out_dir, config, jobs=jobs, force=force, languages=languages,
                              progress=not quiet, log=click.echo):
        with FeatureStore(path) as store:
            click.echo(f"{path}: {len(store)} utterances")
