"""Where converted speech loses its words and its voice: one table, five renderings of every
synthesis line (demo corpus: each line has the target voice's own rendering of the sentence).

    (a) the target voice's own wav (the reference rendering)
    (b) the vocoder on the reference's real log-mel (copy synthesis: the vocoder alone)
    (c) the vocoder on the unit system's reconstruction of the reference in its own voice
        (units + decoder + vocoder, no voice change)
    (d) the vocoder on the converted mel (what the submission holds)
    (e) Griffin-Lim on the converted mel (the conversion without the trained vocoder)

Each rendering gets the evaluator's measures (`pipeline.evaluation.speech`): pocketsphinx CER and
WER against the transcript, resemblyzer similarity to the target voice and to the source
speaker (and the share of lines closer to the target), mel-cepstral distortion against the
reference, DNSMOS. With several runs (training seeds), each cell is the mean with the range.

    .venv/bin/python benchmarks/diagnose_conversion.py --runs data/runs/demo data/runs/demo_seed7 \\
        --dataset data/corpus [--lines 20] [--json out.json]
    .venv/bin/python benchmarks/diagnose_conversion.py --pairs UNITS.pt:VOCODER.pt ...
"""
from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.contract.dataset import Dataset, speaker_key  # noqa: E402
from pipeline.core.audio import loudness_normalize  # noqa: E402
from pipeline.core.layout import RunLayout  # noqa: E402
from pipeline.evaluation.speech import speech_measures  # noqa: E402
from pipeline.features import logmel  # noqa: E402
from pipeline.systems.converter import LOUDNESS_DBFS, Converter  # noqa: E402
from benchmarks.studylib import mean_range  # noqa: E402

ROWS = {
    "a": "(a) target voice's own wav",
    "b": "(b) vocoder on the reference's real mel",
    "c": "(c) vocoder on the unit system's reconstruction of the reference",
    "d": "(d) vocoder on the converted mel (the submission)",
    "e": "(e) Griffin-Lim on the converted mel",
}
COLUMNS = [("cer_converted", "CER", 3), ("wer_converted", "WER", 3), ("sim_target_converted", "sim. target", 3),
           ("sim_source_converted", "sim. source", 3), ("share_closer_to_target", "closer to target", 2),
           ("mcd_converted", "MCD dB", 2), ("dnsmos_converted", "DNSMOS", 2)]


def wav_bytes(audio: np.ndarray, rate: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(audio, -1, 1), rate, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


def checkpoints(args) -> list[tuple[Path, Path]]:
    """(unit system, vocoder) checkpoint pairs: from --runs, then from --pairs."""
    pairs = [(RunLayout.of(r).vqvae_checkpoint, RunLayout.of(r).melgan_checkpoint) for r in args.runs or []]
    for pair in args.pairs or []:
        units, _, vocoder = pair.partition(":")
        pairs.append((Path(units), Path(vocoder)))
    if not pairs:
        raise SystemExit("give --runs or --pairs")
    return pairs


def renderings(units: Path, vocoder: Path, dataset: Dataset, lines) -> dict[str, dict[str, bytes]]:
    """Rows b..e of one trained pair: row -> {output name -> wav bytes}."""
    melgan = Converter(units, vocoder)
    griffin = Converter(units, None, vocoder="griffinlim")
    spec, rate = melgan.spec, melgan.spec.sample_rate
    out: dict[str, dict[str, bytes]] = {row: {} for row in "bcde"}
    for line in lines:
        target = speaker_key(dataset.language, line.voice)
        reference = dataset.reference(line).read(rate)
        source = line.source.read(rate)
        with torch.no_grad():
            copy = melgan.vocoder(torch.from_numpy(logmel(reference, spec)), target)[:len(reference)]
            units = melgan.vqvae.encode_audio(reference)
            rebuilt = melgan.vocoder(torch.from_numpy(melgan.vqvae.decode_units(units, target)), target)
        out["b"][line.output_name] = wav_bytes(loudness_normalize(copy, LOUDNESS_DBFS), rate)
        out["c"][line.output_name] = wav_bytes(loudness_normalize(rebuilt[:len(reference)], LOUDNESS_DBFS), rate)
        out["d"][line.output_name] = wav_bytes(melgan.convert(source, target), rate)
        out["e"][line.output_name] = wav_bytes(griffin.convert(source, target), rate)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, nargs="*", help="run folders (RUN/vqvae, RUN/melgan)")
    parser.add_argument("--pairs", nargs="*", help="UNIT_CHECKPOINT:VOCODER_CHECKPOINT pairs")
    parser.add_argument("--dataset", type=Path, default=Path("data/corpus"))
    parser.add_argument("--lines", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="also write every summary here")
    args = parser.parse_args()
    dataset = Dataset(args.dataset)
    lines = [line for line in dataset.synthesis() if dataset.reference(line) is not None][:args.lines]
    reference = {line.output_name: dataset.reference(line).path.read_bytes() for line in lines}
    summaries: dict[str, list[dict]] = {row: [] for row in ROWS}
    pairs = checkpoints(args)
    first = Converter(pairs[0][0], None, vocoder="griffinlim").spec
    measure = dict(spec=first, jobs=args.jobs, progress=False, also=())
    summaries["a"].append(speech_measures(dataset, reference, **measure)["summary"])
    for units, vocoder in pairs:
        for row, wavs in renderings(units, vocoder, dataset, lines).items():
            summaries[row].append(speech_measures(dataset, wavs, **measure)["summary"])
            print(f"  {vocoder}: {row} done", flush=True)
    print(f"\n{len(lines)} synthesis lines; {len(pairs)} trained pair(s) (mean over them, range in brackets)")
    print("| rendering | " + " | ".join(label for _, label, _ in COLUMNS) + " |")
    print("|---|" + "---|" * len(COLUMNS))
    for row, label in ROWS.items():
        cells = [mean_range([s[key] for s in summaries[row] if key in s], digits) for key, _, digits in COLUMNS]
        print(f"| {label} | " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps(summaries, indent=1))


if __name__ == "__main__":
    main()
