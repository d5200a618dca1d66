"""Voice conversion: source wav -> log-mel -> units -> the unit system's decoder given the target
speaker -> target-voice mel -> vocoder -> 16 kHz wav, cropped to the source length and
loudness-normalised."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from models.logmel import FeatureSpec
from pipeline.contract.dataset import Dataset, SynthesisLine, speaker_key
from pipeline.core.audio import loudness_normalize, read_wav, write_wav
from pipeline.core.errors import UserError
from pipeline.core.pool import parallel_map
from pipeline.core.runtime import pick_device, set_threads
from pipeline.core.stamp import StampBook, file_identity, fingerprint
from pipeline.features import check_spec
from pipeline.systems.vocoders import VOCODERS, GriffinLimVocoder, MelGANVocoder
from pipeline.systems.vqvae import load_vqvae

LOUDNESS_DBFS = -23.0


class Converter:
    """Re-speak audio in a target voice with a trained VQ-VAE-2 and a vocoder."""

    def __init__(self, vqvae_checkpoint: str | os.PathLike, melgan_checkpoint: str | os.PathLike | None = None,
                 vocoder: str = "melgan", device: str = "cpu", loudness_dbfs: float = LOUDNESS_DBFS):
        if vocoder not in VOCODERS:
            raise UserError(f"unknown vocoder {vocoder!r}: use one of {', '.join(VOCODERS)}")
        self.device = pick_device(str(device))
        # what a worker process needs to build the same converter
        self.recipe = (str(vqvae_checkpoint), None if melgan_checkpoint is None else str(melgan_checkpoint), vocoder,
                       str(self.device), loudness_dbfs)
        self.vqvae = load_vqvae(vqvae_checkpoint, self.device)
        self.spec: FeatureSpec = self.vqvae.spec
        self.loudness_dbfs = loudness_dbfs
        self.checkpoints = [Path(vqvae_checkpoint)]
        if vocoder == "melgan":
            if melgan_checkpoint is None:
                raise UserError("the melgan vocoder needs a MelGAN checkpoint (--melgan or --run), "
                                "or use --vocoder griffinlim")
            self.vocoder = MelGANVocoder(melgan_checkpoint, self.device)
            check_spec(self.vocoder.spec, self.spec, melgan_checkpoint)
            self.checkpoints.append(Path(melgan_checkpoint))
        else:
            self.vocoder = GriffinLimVocoder(self.spec)

    @property
    def voices(self) -> list[str]:
        """Target voices this converter can speak in."""
        return sorted(v for v in self.vqvae.speakers if self.vocoder.knows(v))

    def check_voice(self, target: str) -> None:
        if target not in self.vqvae.speakers or not self.vocoder.knows(target):
            which = "VQ-VAE" if target not in self.vqvae.speakers else "MelGAN vocoder"
            # Name the vocoder's own voices first: they are the intended targets.
            trained = getattr(self.vocoder, "voices", {})
            known = [v for v in self.voices if v in trained] or self.voices
            more = f" and {len(known) - 8} more" if len(known) > 8 else ""
            raise UserError(f"unknown target voice {target!r}: the {which} was not trained on it "
                            f"(known target voices: {', '.join(known[:8])}{more})")

    def convert(self, audio: np.ndarray, target: str) -> np.ndarray:
        """16 kHz float audio -> the same content in the target voice, same number of samples."""
        self.check_voice(target)
        audio = np.asarray(audio, dtype=np.float32)
        if audio.size == 0:
            raise UserError("cannot convert empty audio")
        units = self.vqvae.encode_audio(audio)
        return self.synthesize(units.top_ids, units.bottom_ids, target, units.num_frames, num_samples=len(audio))

    def synthesize(self, top_ids, bottom_ids, target: str, num_frames: int, num_samples: int | None = None) -> np.ndarray:
        """Units -> audio in the target voice (``num_frames`` mel frames, i.e. frames * hop samples,
        or ``num_samples`` when given)."""
        self.check_voice(target)
        mel = torch.as_tensor(self.vqvae.decode(top_ids, bottom_ids, target, num_frames))
        wav = self.vocoder(mel, target)
        wav = wav[:num_samples if num_samples is not None else num_frames * self.spec.hop_length]
        return loudness_normalize(wav, self.loudness_dbfs)

    @property
    def identity(self) -> str:
        """Fingerprint of the models and settings a conversion depends on."""
        return fingerprint([file_identity(p) for p in self.checkpoints], type(self.vocoder).__name__,
                           self.loudness_dbfs)


_WORKER: dict = {}


def _load_converter(recipe: tuple) -> None:
    """Per worker process: its own converter (inference threads by the thread policy)."""
    set_threads()
    _WORKER["converter"] = Converter(*recipe)


def _convert_line(task: tuple[str, str, int, str]) -> str:
    source, target, sample_rate, out = task
    converter: Converter = _WORKER["converter"]
    write_wav(out, converter.convert(read_wav(source, sample_rate), target), sample_rate)
    return out


def convert_synthesis(dataset: Dataset, out_dir: str | os.PathLike, converter: Converter, progress: bool = True,
                      skip_up_to_date: bool = False, keep_stamps: bool = True, jobs: int = 1) -> list[Path]:
    """Convert every ``synthesis.txt`` line of a dataset language: one ``<VOICE>_<id>.wav`` each
    (written atomically), in ``jobs`` worker processes (one thread each). Unknown target voices
    are reported before anything is written. With ``skip_up_to_date``, a wav whose stamp
    records the same source and models is kept; ``keep_stamps`` records the stamps (off where
    the folder must hold only the wavs)."""
    lines: list[SynthesisLine] = dataset.synthesis()
    targets = {line.voice: speaker_key(dataset.language, line.voice) for line in lines}
    for target in sorted(set(targets.values())):
        converter.check_voice(target)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamps = StampBook(out_dir)
    tasks, fps = [], {}
    for line in lines:
        out = out_dir / line.output_name
        fps[out.name] = fingerprint(converter.identity, file_identity(line.source.path), targets[line.voice])
        if not (skip_up_to_date and stamps.is_up_to_date(out.name, fps[out.name])):
            tasks.append((str(line.source.path), targets[line.voice], converter.spec.sample_rate, str(out)))
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
