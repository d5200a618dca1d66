"""``zs2020 corpus``: synthesize the offline demo corpus."""
from __future__ import annotations

from pathlib import Path

import click

from pipeline.corpus.build import SPEECH, build_corpus, effective_speech, is_up_to_date, summary
from pipeline.stages.options import config_option, training_config


@click.command("corpus")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="data/corpus", show_default=True,
              help="Corpus root to create (the dataset ROOT: audio goes to OUT/2019/english/).")
@click.option("--scale", default=None,
              help="tiny (a few seconds, for tests), demo (44 speakers, about 63 min of sentences plus 3000 "
                   "ABX excerpts) or an integer N (N times the demo's utterances per speaker). "
                   "Add :realM after demo or N for M minutes of each real unit actor (demo:real12; without "
                   "it 4), or :realonlyM for the same with no synthetic speaker in train/unit "
                   "(demo:realonly30). Default: corpus.scale of the config.")
@config_option("demo")
@click.option("--jobs", type=click.IntRange(1), default=2, show_default=True,
              help="Parallel synthesis processes (the output is identical for any value).")
@click.option("--speech", type=click.Choice(SPEECH), default="mixed", show_default=True,
              help="mixed: real recorded speakers (The Ur-Quan Masters voice pack, CC BY-NC-SA 2.5, downloaded "
                   "from Debian non-free and aligned once per machine) next to the synthetic ones; synthetic: "
                   "TTS speakers only. The tiny scale is synthetic either way.")
@click.option("--force", is_flag=True, help="Rebuild even if OUT already holds this scale and generator version.")
def corpus_command(out_dir, scale, preset, jobs, speech, force):
    """Synthesize the offline demo corpus in the ZeroSpeech 2019 layout.

    Needs the Debian speech engines (festival + voices, flite, espeak-ng, sox, dict-devil;
    scripts/install_system_deps.sh); with --speech mixed also apt-get and network access to the
    Debian archive once (the download and the alignment are cached under data/cache, or
    $ZS2020_CACHE). Deterministic: a rebuild gives identical bytes.
    """
    scale = scale or str(training_config(preset, ()).corpus.scale)
    out = Path(out_dir)
    if not force and is_up_to_date(out, scale, speech):
        click.echo(f"{out}: up to date (scale {scale}, speech {effective_speech(scale, speech)}); "
                   "use --force to rebuild")
        return
    stats: dict = {}
    build_corpus(out, scale=scale, jobs=jobs, force=True, stats=stats, speech=speech)
    click.echo(summary(out) + f"; built in {stats['wall_seconds']:.1f} s ({stats['cpu_seconds']:.0f} CPU s)")
