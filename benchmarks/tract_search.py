"""Which stretch the VQ-VAE-2's test-time tract search (``conversion.tract_search``) picks, per
speaker of the demo corpus, beside the voice each speaker was synthesised with (the corpus
manifest: sox ``speed`` scales formants and F0 by that factor), and for a target-voice utterance
stretched by known factors (the search should stretch it back: 1 / factor).

    .venv/bin/python benchmarks/tract_search.py --vqvae data/runs/demo/vqvae/checkpoint.pt

The search range is ``--search`` (default: the checkpoint's stored ``conversion.tract_search``, or
0.3 when that is 0). Prints one markdown table: speaker, split, voice, utterances, the factors picked (median
and range) and the milliseconds a search takes per utterance (with its features, one process).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.augment import warp_frequency  # noqa: E402
from pipeline.contract.dataset import Dataset  # noqa: E402
from pipeline.core.audio import read_wav  # noqa: E402
from pipeline.core.config import config_from_checkpoint  # noqa: E402
from pipeline.core.runtime import set_threads  # noqa: E402
from pipeline.features import logmel  # noqa: E402
from pipeline.systems.vqvae import load_vqvae  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vqvae", type=Path, default=Path("data/runs/demo/vqvae/checkpoint.pt"))
    parser.add_argument("--dataset", type=Path, default=Path("data/corpus"))
    parser.add_argument("--search", type=float, default=None,
                        help="search range [default: the checkpoint's conversion.tract_search, or 0.3 when 0]")
    parser.add_argument("--utterances", type=int, default=8, help="utterances per speaker")
    args = parser.parse_args()
    set_threads(1)
    system = load_vqvae(args.vqvae)
    search = args.search or config_from_checkpoint(system.config, args.vqvae).conversion.tract_search or 0.3
    dataset = Dataset(args.dataset)
    voices = json.loads((args.dataset / "manifest.json").read_text()).get("speakers", {})
    spec = system.spec
    print(f"tract search {search} ({args.vqvae}); {args.utterances} utterances a speaker")
    print("| speaker | split | voice | utterances | factor picked: median (range) | ms / utterance |")
    print("|---|---|---|---|---|---|")
    for split in ("train/voice", "train/unit", "test"):
        by_speaker: dict[str, list] = {}
        for utt in dataset.utterances(split):
            by_speaker.setdefault(utt.speaker, []).append(utt)
        speakers = sorted(by_speaker) if split != "train/unit" else sorted(by_speaker)[::4]
        for speaker in speakers:
            utts = by_speaker[speaker][:args.utterances]
            start = time.perf_counter()
            factors = [system.normalize_tract(logmel(read_wav(u.path, spec.sample_rate), spec), search)[1]
                       for u in utts]
            ms = (time.perf_counter() - start) / len(utts) * 1000
            print(f"| {speaker} | {split} | {voices.get(speaker, '?')} | {len(utts)} | {np.median(factors):.3f} "
                  f"({min(factors):.3f}-{max(factors):.3f}) | {ms:.0f} |")
    utt = dataset.utterances("train/voice")[0]
    mel = logmel(read_wav(utt.path, spec.sample_rate), spec)
    print(f"\n| {utt.utt_id} stretched by | factor picked | 1 / stretch |")
    print("|---|---|---|")
    for stretch in (0.8, 0.9, 1.0, 1.1, 1.25):
        warped = warp_frequency(torch.from_numpy(mel)[None], torch.tensor([stretch], dtype=torch.float64),
                                spec.f_min, spec.f_max)[0].numpy()
        print(f"| {stretch} | {system.normalize_tract(warped, search)[1]:.3f} | {1 / stretch:.3f} |")


if __name__ == "__main__":
    main()
