"""The ``zs2020`` console script: one sub-command per pipeline stage.

Sub-commands are imported lazily so that ``zs2020 --help`` and light commands start fast
(torch is only imported by the stages that need it).
"""
from __future__ import annotations

import importlib
import signal

import click

from pipeline.core.pool import TERMINATION_SIGNALS

# name -> ("module:attribute", one-line help shown in `zs2020 --help`)
COMMANDS: dict[str, tuple[str, str]] = {
    "corpus": ("pipeline.stages.corpus:corpus_command", "Synthesize the offline demo corpus in the ZeroSpeech 2019 layout."),
    "features": ("pipeline.stages.features:features_command", "Dump log-mel features of a dataset to HDF5."),
    "train-vqvae": ("pipeline.stages.train:train_vqvae_command", "Train the speaker-conditioned VQ-VAE-2."),
    "encode": ("pipeline.stages.encode:encode_command", "Encode wavs, a folder or a dataset split to discrete units."),
    "train-melgan": ("pipeline.stages.train:train_melgan_command", "Train the MelGAN vocoder on the target voices."),
    "convert": ("pipeline.stages.convert:convert_command", "Re-speak utterances in a target voice (one file or synthesis.txt)."),
    "submit": ("pipeline.stages.submit:submit_command", "Write a submission folder and zip in the official layout."),
    "validate": ("pipeline.stages.validate:validate_command", "Validate a submission folder or zip (stricter than official)."),
    "evaluate": ("pipeline.stages.evaluate:evaluate_command", "Score a submission: ABX, bitrate and converted-speech measures."),
    "units": ("pipeline.stages.units:units_group", "Inspect discovered units: stats, phones, leakage, plot, show, listen."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        target, _ = COMMANDS[name]
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                raise click.ClickException(f"command {name!r} is not available in this build") from None
            raise
        return getattr(module, attr)

    def format_commands(self, ctx, formatter):
        rows = [(name, help_text) for name, (_, help_text) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="zs2020")
def main():
    """zs2020: build and score a ZeroSpeech 2020 (2019 track, TTS without T) submission.

    Typical order: corpus -> features -> train-vqvae -> train-melgan -> submit -> validate
    -> evaluate. `make all` runs the chain on the embedded demo corpus.
    """
    # SIGTERM (kill, a scheduler's timeout) unwinds like Ctrl-C: temporary outputs are removed,
    # and worker processes follow their parent (pipeline.core.pool).
    signal.signal(signal.SIGTERM, _terminate)


def _terminate(signum, frame):
    TERMINATION_SIGNALS.append(signum)     # in case this exception is lost (see pipeline.core.pool)
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    main()
