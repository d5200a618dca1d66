"""Which kind of target voice keeps the words of real sources: the real test speakers' synthesis
lines converted into their assigned target voice (V001/V002, synthetic in the demo corpus), into
every real training actor, and into synthetic training speakers that are not target voices.

Every rendering goes through Griffin-Lim, so each voice has the same vocoder and only the unit
system's decoder speaks differently (the submission's MelGAN only knows V001/V002). Each cell is
pocketsphinx's CER against the transcript (`pipeline.evaluation.speech`), and its ratio to the
recordings' own CER on the same lines. With several runs (training seeds): the mean with the range.
The question it answers (issue 28): would V001/V002 as real voices keep more of the words?

    .venv/bin/python benchmarks/diagnose_target_voice.py --runs data/runs/demo data/runs/demo_seed7 \\
        --dataset data/corpus [--synthetic 3] [--jobs 2] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.contract.dataset import Dataset, SynthesisLine, speaker_key  # noqa: E402
from pipeline.core.audio import read_wav  # noqa: E402
from pipeline.core.layout import RunLayout  # noqa: E402
from pipeline.core.pool import parallel_map  # noqa: E402
from pipeline.evaluation.speech import cer_wer, transcribe  # noqa: E402
from pipeline.systems.converter import Converter, source_speaker_stats  # noqa: E402
from benchmarks.studylib import mean_range  # noqa: E402

SOURCE = "recordings"
ASSIGNED = "assigned target voice (V001/V002)"
_WORKER: dict = {}


def _load(checkpoint: str) -> None:
    _WORKER["converter"] = Converter(checkpoint, vocoder="griffinlim")


def _line_cers(task: tuple) -> dict[str, float]:
    """One line: voice -> CER of the source converted into it (and the recording's own CER)."""
    source, text, assigned, voices, stats = task
    converter: Converter = _WORKER["converter"]
    audio = read_wav(source, converter.spec.sample_rate)
    cers = {SOURCE: cer_wer(text, transcribe(audio))[0]}
    for voice in [assigned, *voices]:
        cers[voice] = cer_wer(text, transcribe(converter.convert(audio, voice, stats=stats)))[0]
    return cers


def voices_by_kind(dataset: Dataset, converter: Converter, synthetic: int) -> tuple[list[str], list[str]]:
    """(real training actors, the first ``synthetic`` synthetic training speakers that are not target voices)."""
    recorded = dataset.recorded_speakers() or set()
    targets = {speaker_key(dataset.language, v) for v in dataset.target_voices()}
    real = [v for v in converter.voices if v in recorded]
    fake = [v for v in converter.voices if v not in recorded and v not in targets][:synthetic]
    return real, fake


def measure_run(run: Path, dataset: Dataset, lines: list[SynthesisLine], synthetic: int, jobs: int) -> dict:
    """voice -> mean CER over the lines, for one trained run (tract search off: a conversion choice)."""
    checkpoint = RunLayout.of(run).vqvae_checkpoint
    converter = Converter(checkpoint, vocoder="griffinlim")
    real, fake = voices_by_kind(dataset, converter, synthetic)
    stats = {}
    if converter.speaker_norm:
        stats = source_speaker_stats(dataset, lines, converter.spec, progress=False, jobs=jobs)
    tasks = [(str(line.source.path), dataset.transcript(line.source), speaker_key(dataset.language, line.voice),
              real + fake, stats.get(line.source.speaker)) for line in lines]
    rows = list(parallel_map(_line_cers, tasks, jobs, desc=f"{run}: lines", unit="line",
                             initializer=_load, initargs=(str(checkpoint),), start="spawn"))
    # every voice over all the lines; the assigned voices (V001 on some lines, V002 on the others) as one row
    per_voice = {voice: float(np.mean([r[voice] for r in rows])) for voice in [SOURCE, *real, *fake]}
    per_voice[ASSIGNED] = float(np.mean([r[t[2]] for r, t in zip(rows, tasks)]))
    per_voice["real training actors"] = float(np.mean([per_voice[v] for v in real]))
    per_voice["synthetic training speakers"] = float(np.mean([per_voice[v] for v in fake]))
    return {"cer": per_voice, "real": real, "synthetic": fake}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, nargs="+", required=True, help="run folders (RUN/vqvae)")
    parser.add_argument("--dataset", type=Path, default=Path("data/corpus"))
    parser.add_argument("--synthetic", type=int, default=3, help="synthetic non-target training speakers tried")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes")
    parser.add_argument("--json", type=Path, default=None, help="also write every run's CERs here")
    args = parser.parse_args()
    dataset = Dataset(args.dataset)
    kinds = dataset.speaker_kinds()
    if not kinds or not kinds["real"]:
        raise SystemExit(f"{args.dataset}: no real test speakers (build the demo corpus with recorded speech)")
    lines = [line for line in dataset.synthesis() if line.source.speaker in kinds["real"]]
    runs = [measure_run(run, dataset, lines, args.synthetic, args.jobs) for run in args.runs]
    order = [ASSIGNED, "real training actors", "synthetic training speakers"]
    order += [v for v in runs[0]["cer"] if v not in order and v != SOURCE]
    print(f"\n{len(lines)} synthesis lines of the real test speakers; {len(runs)} run(s) (mean, range in brackets)")
    print("| converted into (Griffin-Lim) | CER | CER / recordings' |")
    print("|---|---|---|")
    print(f"| {SOURCE} (not converted) | {mean_range([r['cer'][SOURCE] for r in runs], 3)} | 1.00 |")
    for voice in order:
        cers = [r["cer"][voice] for r in runs if voice in r["cer"]]
        ratios = [r["cer"][voice] / r["cer"][SOURCE] for r in runs if voice in r["cer"]]
        print(f"| {voice} | {mean_range(cers, 3)} | {mean_range(ratios, 2)} |")
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))


if __name__ == "__main__":
    main()
