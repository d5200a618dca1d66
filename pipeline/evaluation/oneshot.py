"""One-shot conversion measure, for runs whose unit system is a VQMIVC: the submission's
synthesis only ever targets V001/V002, so this asks whether the system speaks in a voice it has
never heard.

A fixed, seeded set of long test utterances (test speakers are unseen in training) is each
converted into the voice of one utterance of another, randomly chosen test speaker. Each
converted wav is scored like a synthesis line (``pipeline.evaluation.speech``): resemblyzer
cosine to the reference speaker's and to the source speaker's mean embeddings (over their long
test utterances), pocketsphinx CER/WER against the source transcript, and DNSMOS; the
unconverted source is scored beside it. The vocoder is the run's universal MelGAN
(``RUN/melgan_universal``) when it exists, else its target-voice MelGAN; a plan without a
vocoder renders with Griffin-Lim (``benchmarks/diagnose_one_shot.py``).
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from pipeline.contract.dataset import Dataset, Utterance
from pipeline.core.layout import RunLayout
from pipeline.core.stamp import file_identity
from pipeline.evaluation.speech import LineJob, mean_embedding, measure_lines, summarize

# imported inside the functions that convert: the systems import torch, which the ABX scores of
# ``zs2020 evaluate`` (that import this module) do not need
DEFERRED_IMPORTS = ("pipeline.systems.converter", "pipeline.systems.unit_systems", "pipeline.systems.vqmivc")
MIN_SECONDS = 1.0          # test utterances long enough to be a source or a reference (not ABX excerpts)
MEASURES = ("similarity", "asr", "dnsmos")


@dataclass(frozen=True)
class OneShotPlan:
    unit_system: Path
    vocoder: Path | None       # a MelGAN checkpoint; None renders with Griffin-Lim (a diagnosis)
    universal: bool            # the vocoder was trained on every training voice

    def identity(self) -> list:
        vocoder = None if self.vocoder is None else file_identity(self.vocoder)
        return [file_identity(self.unit_system), vocoder, self.universal]

    @property
    def vocoder_kind(self) -> str:
        return "griffinlim" if self.vocoder is None else "universal" if self.universal else "target-voice"


def plan_one_shot(run: str | Path | None) -> OneShotPlan | None:
    """What the measure would use, or None when the run has no VQMIVC or no MelGAN."""
    if run is None:
        return None
    from pipeline.systems.unit_systems import unit_system_kind
    from pipeline.systems.vqmivc import KIND as VQMIVC_KIND
    layout = RunLayout.of(run)
    if not layout.vqvae_checkpoint.is_file() or unit_system_kind(layout.vqvae_checkpoint) != VQMIVC_KIND:
        return None
    for vocoder, universal in ((layout.universal_melgan_checkpoint, True), (layout.melgan_checkpoint, False)):
        if vocoder.is_file():
            return OneShotPlan(layout.vqvae_checkpoint, vocoder, universal)
    return None


def choose_trials(dataset: Dataset, trials: int, seed: int) -> list[tuple[Utterance, Utterance]]:
    """(source, reference) pairs: distinct long test utterances, each with a reference utterance of
    another test speaker; the same for the same dataset and seed."""
    long_utts = [u for u in dataset.utterances("test", required=False) if u.duration() >= MIN_SECONDS]
    if len({u.speaker for u in long_utts}) < 2:
        return []
    rng = np.random.default_rng(seed)
    sources = sorted(rng.choice(len(long_utts), size=min(trials, len(long_utts)), replace=False).tolist())
    pairs = []
    for i in sources:
        others = [u for u in long_utts if u.speaker != long_utts[i].speaker]
        pairs.append((long_utts[i], others[int(rng.integers(len(others)))]))
    return pairs


def _wav_bytes(audio: np.ndarray, sample_rate: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, np.clip(audio, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


def one_shot_measures(plan: OneShotPlan, dataset: Dataset, trials: int, seed: int,
                      voice_utts: int, measures: tuple[str, ...], jobs: int = 1, progress: bool = True,
                      tract_search: float = 0.0) -> tuple[dict, dict[str, bytes]]:
    """(the scores, {wav name: converted wav bytes}); {"skipped": reason} when impossible.
    ``tract_search`` is the run's ``conversion.tract_search`` (a VQMIVC source has none)."""
    pairs = choose_trials(dataset, trials, seed)
    if not pairs:
        return {"skipped": f"{dataset.lang_dir}/test has no two speakers with utterances of "
                           f"{MIN_SECONDS:g} s or more"}, {}
    from pipeline.systems.converter import Converter
    converter = Converter(plan.unit_system, plan.vocoder, vocoder="melgan" if plan.vocoder else "griffinlim",
                          device="cpu", tract_search=tract_search)
    spec = converter.spec        # the unit system's features: what the measures analyse too
    rate = spec.sample_rate
    long_utts = [u for u in dataset.utterances("test", required=False) if u.duration() >= MIN_SECONDS]
    wanted = tuple(m for m in MEASURES if m in measures)
    embeddings = {}
    if "similarity" in wanted:
        for speaker in sorted({u.speaker for pair in pairs for u in pair}):
            mine = [u for u in long_utts if u.speaker == speaker][:voice_utts]
            embeddings[speaker] = mean_embedding([u.read(rate) for u in mine])
    jobs_list, wavs, names = [], {}, []
    for source, reference in pairs:
        voice = converter.reference_voice(reference.read(rate), str(reference.path))
        name = f"{source.utt_id}_as_{reference.speaker}.wav"
        wavs[name] = _wav_bytes(converter.convert(source.read(rate), reference=voice), rate)
        names.append((source.key, reference.key))
        jobs_list.append(LineJob(name, wavs[name], None, str(source.path), dataset.transcript(source),
                                 embeddings.get(reference.speaker), embeddings.get(source.speaker), wanted, spec))
    rows = measure_lines(jobs_list, jobs, progress)
    for row, (source_key, reference_key) in zip(rows, names):
        row["source_utterance"], row["reference_utterance"] = source_key, reference_key
    summary = {_reference_key(k): v for k, v in summarize(rows).items()}
    rows = [{_reference_key(k): v for k, v in row.items()} for row in rows]
    return {"trials": len(rows), "seed": seed, "unit_system": str(plan.unit_system), "vocoder": str(plan.vocoder),
            "vocoder_kind": plan.vocoder_kind, "summary": summary,
            "per_trial": rows}, wavs


def _reference_key(key: str) -> str:
    """speech.py names the voice spoken in "target"; here it is the reference speaker."""
    return key.replace("sim_target_", "sim_reference_").replace("closer_to_target", "closer_to_reference")
