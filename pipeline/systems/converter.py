"""Voice conversion: source wav -> log-mel -> units -> the unit system's decoder given the target
speaker -> target-voice mel -> vocoder -> 16 kHz wav, cropped to the source length and
loudness-normalised. The target is a voice the unit system was trained on (by name), or, with a
VQMIVC unit system, the voice of any reference utterance (one-shot conversion)."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from models.featurespec import FeatureSpec
from pipeline.contract.dataset import Dataset, SynthesisLine, Utterance, speaker_key
from pipeline.core.audio import broken_audio, loudness_normalize, read_wav, write_wav
from pipeline.core.errors import UserError
from pipeline.core.pool import parallel_map
from pipeline.core.runtime import pick_device, set_threads
from pipeline.core.stamp import StampBook, file_identity, fingerprint
from pipeline.features import check_spec
from pipeline.systems.encoding import speaker_stats_of_files
from pipeline.systems.vocoders import VOCODERS, GriffinLimVocoder, MelGANVocoder
from pipeline.systems.unit_systems import load_unit_system, supports_reference

LOUDNESS_DBFS = -23.0


class Converter:
    """Re-speak audio in a target voice with a trained unit system (VQ-VAE-2 or VQMIVC) and a vocoder."""

    def __init__(self, vqvae_checkpoint: str | os.PathLike, melgan_checkpoint: str | os.PathLike | None = None,
                 vocoder: str = "melgan", device: str = "cpu", loudness_dbfs: float = LOUDNESS_DBFS,
                 tract_search: float = 0.0):
        if vocoder not in VOCODERS:
            raise UserError(f"unknown vocoder {vocoder!r}: use one of {', '.join(VOCODERS)}")
        self.device = pick_device(str(device))
        # what a worker process needs to build the same converter
        self.recipe = (str(vqvae_checkpoint), None if melgan_checkpoint is None else str(melgan_checkpoint), vocoder,
                       str(self.device), loudness_dbfs, tract_search)
        self.vqvae = load_unit_system(vqvae_checkpoint, self.device)   # the unit system, whichever kind
        self.spec: FeatureSpec = self.vqvae.spec
        self.loudness_dbfs = loudness_dbfs
        self.tract_search = float(tract_search)     # conversion.tract_search: how far a source may be stretched
        self.checkpoints = [Path(vqvae_checkpoint)]
        if vocoder == "melgan":
            if melgan_checkpoint is None:
                raise UserError("the melgan vocoder needs a MelGAN checkpoint (--melgan or --run), "
                                "or use --vocoder griffinlim")
            self.vocoder = MelGANVocoder(melgan_checkpoint, self.device)
            check_spec(self.vocoder.spec, self.spec, melgan_checkpoint)
            self.checkpoints.append(Path(melgan_checkpoint))
            if self.vocoder.unit_system is not None:     # trained with the vocoder (methods 2 and 3)
                self.vqvae = self.vocoder.unit_system
        else:
            self.vocoder = GriffinLimVocoder(self.spec)

    @property
    def voices(self) -> list[str]:
        """Target voices this converter can speak in."""
        return sorted(self.vqvae.speakers)

    def check_voice(self, target: str) -> None:
        if target not in self.vqvae.speakers:
            # Name the vocoder's own voices first: they are the intended targets.
            trained = getattr(self.vocoder, "voices", {})
            known = [v for v in self.voices if v in trained] or self.voices
            more = f" and {len(known) - 8} more" if len(known) > 8 else ""
            raise UserError(f"unknown target voice {target!r}: the {'VQMIVC' if self.one_shot else 'VQ-VAE'} was "
                            f"not trained on it (known target voices: {', '.join(known[:8])}{more})")

    @property
    def speaker_norm(self) -> bool:
        """Whether the unit system encodes a source with its speaker's statistics (``convert``'s ``stats``)."""
        return self.vqvae.speaker_norm

    @property
    def one_shot(self) -> bool:
        """Whether this converter can speak in the voice of a reference utterance."""
        return supports_reference(self.vqvae)

    def reference_voice(self, audio: np.ndarray, name: str = "reference") -> np.ndarray:
        """The speaker embedding of a reference utterance (one clear error when impossible)."""
        if not self.one_shot:
            raise UserError(f"a reference voice needs the vqmivc unit system (it has a speaker encoder); this "
                            f"run's unit system is {type(self.vqvae).__name__} (train one with system=vqmivc)")
        return self.vqvae.reference_embedding(audio, name)

    def convert(self, audio: np.ndarray, target: str | None = None, reference: np.ndarray | None = None,
                name: str = "the audio", stats: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """16 kHz float audio -> the same content in the target voice (a name) or in the voice of
        ``reference`` (an embedding from ``reference_voice``), same number of samples. ``name``
        (the utterance) is what an error names; ``stats``, the source speaker's log-mel statistics
        for a unit system with ``speaker_norm`` (None: the audio's own)."""
        if (target is None) == (reference is None):
            raise UserError("give exactly one of a target voice or a reference voice")
        if target is not None:
            self.check_voice(target)
        audio = np.asarray(audio, dtype=np.float32)
        if audio.size == 0:
            raise UserError("cannot convert empty audio")
        units = self.vqvae.encode_source(audio, self.tract_search, stats)
        mel = torch.as_tensor(self.vqvae.decode_units(units, target if target is not None else reference))
        return self._render(mel, len(audio), name)

    def _render(self, mel: torch.Tensor, num_samples: int, name: str = "the units") -> np.ndarray:
        """Target-voice mel -> loudness-normalised audio of ``num_samples`` samples. A garbage
        vocoder output is refused here, before normalisation would amplify a dead vocoder's
        floor noise into a plausible-looking wav."""
        wav = self.vocoder(mel)[:num_samples]
        reason = broken_audio(wav)
        if reason is not None:
            raise UserError(f"{name}: the output of the vocoder {self.vocoder.path or self.vocoder.description} is "
                            f"{reason}: a broken or diverged vocoder (retrain it)")
        return loudness_normalize(wav, self.loudness_dbfs)

    def render_units(self, units, target: str) -> np.ndarray:
        """Any unit system's units -> audio in a known target voice (frames x hop samples)."""
        self.check_voice(target)
        mel = torch.as_tensor(self.vqvae.decode_units(units, target))
        return self._render(mel, units.num_frames * self.spec.hop_length)

    def synthesize(self, top_ids, bottom_ids, target: str, num_frames: int, num_samples: int | None = None) -> np.ndarray:
        """Units -> audio in the target voice (``num_frames`` mel frames, i.e. frames * hop samples,
        or ``num_samples`` when given)."""
        self.check_voice(target)
        mel = torch.as_tensor(self.vqvae.decode(top_ids, bottom_ids, target, num_frames))
        return self._render(mel, num_samples if num_samples is not None else num_frames * self.spec.hop_length)

    @property
    def identity(self) -> str:
        """Fingerprint of the models and settings a conversion depends on."""
        return fingerprint([file_identity(p) for p in self.checkpoints], type(self.vocoder).__name__,
                           self.loudness_dbfs, self.tract_search)


_WORKER: dict = {}


def _load_converter(recipe: tuple) -> None:
    """Per worker process: its own converter (inference threads by the thread policy)."""
    set_threads()
    _WORKER["converter"] = Converter(*recipe)


def _convert_line(task: tuple[str, str, int, str, tuple | None]) -> str:
    source, target, sample_rate, out, stats = task
    converter: Converter = _WORKER["converter"]
    write_wav(out, converter.convert(read_wav(source, sample_rate), target, name=source, stats=stats), sample_rate)
    return out


def test_speaker_stats(dataset: Dataset, spec: FeatureSpec, speakers: set[str] | None = None,
                       extra: Sequence[Utterance] = (), progress: bool = True,
                       jobs: int = 1) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Test speaker -> log-mel statistics over all of that speaker's test/ wavs and ``extra``
    utterances (``speakers``: only these): what a unit system with ``speaker_norm`` encodes a
    test speaker's unit files and conversion sources with, so both read the same statistics."""
    utts = {u.path: u for u in dataset.utterances("test", required=False)
            if speakers is None or u.speaker in speakers}
    utts.update({u.path: u for u in extra})
    paths = sorted(utts)
    stats = speaker_stats_of_files(paths, spec, jobs, progress)
    return {utts[p].speaker: s for p, s in zip(paths, stats)}


def source_speaker_stats(dataset: Dataset, lines: list[SynthesisLine], spec: FeatureSpec, progress: bool = True,
                         jobs: int = 1) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Source speaker -> log-mel statistics over that speaker's test/ wavs and synthesis sources."""
    return test_speaker_stats(dataset, spec, {line.source.speaker for line in lines},
                              [line.source for line in lines], progress, jobs)


def convert_synthesis(dataset: Dataset, out_dir: str | os.PathLike, converter: Converter, progress: bool = True,
                      skip_up_to_date: bool = False, keep_stamps: bool = True, jobs: int = 1,
                      speaker_stats: dict[str, tuple[np.ndarray, np.ndarray]] | None = None) -> list[Path]:
    """Convert every ``synthesis.txt`` line of a dataset language: one ``<VOICE>_<id>.wav`` each
    (written atomically), in ``jobs`` worker processes (one thread each). Unknown target voices
    are reported before anything is written. With ``skip_up_to_date``, a wav whose stamp
    records the same source and models is kept; ``keep_stamps`` records the stamps (off where
    the folder must hold only the wavs). ``speaker_stats``: the source speakers' statistics when
    the caller has them (``test_speaker_stats``); None: computed here if the system needs them."""
    lines: list[SynthesisLine] = dataset.synthesis()
    targets = {line.voice: speaker_key(dataset.language, line.voice) for line in lines}
    for target in sorted(set(targets.values())):
        converter.check_voice(target)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamps = StampBook(out_dir)
    if keep_stamps:
        stamps.save()   # marks the folder as the convert stage's before the first wav (pipeline.core.outputs)
    stats = speaker_stats if speaker_stats is not None else (
        source_speaker_stats(dataset, lines, converter.spec, progress, jobs) if converter.speaker_norm else {})
    tasks, fps = [], {}
    for line in lines:
        out = out_dir / line.output_name
        fps[out.name] = fingerprint(converter.identity, file_identity(line.source.path), targets[line.voice])
        if not (skip_up_to_date and stamps.is_up_to_date(out.name, fps[out.name])):
            tasks.append((str(line.source.path), targets[line.voice], converter.spec.sample_rate, str(out),
                          stats.get(line.source.speaker)))
    if jobs <= 1 or len(tasks) <= 1:
        _WORKER["converter"] = converter
        done = list(parallel_map(_convert_line, tasks, 1, desc=f"convert {dataset.language}", unit="utt",
                                 progress=progress))
    else:
        done = list(parallel_map(_convert_line, tasks, jobs, desc=f"convert {dataset.language}", unit="utt",
                                 progress=progress, initializer=_load_converter, initargs=(converter.recipe,),
                                 start="spawn"))
    for out in done:
        stamps.record(Path(out).name, fps[Path(out).name])
    if keep_stamps:
        stamps.save()
    return [out_dir / line.output_name for line in lines]
