"""Voice conversion (``zs2020 convert``): source wav -> log-mel -> VQ-VAE-2 units -> the
VQ-VAE decoder given the target speaker -> target-voice mel -> vocoder -> 16 kHz wav, cropped
to the source length and loudness-normalised.

Vocoders: the trained MelGAN (default) or Griffin-Lim (``--vocoder griffinlim``: needs no
vocoder checkpoint; for debugging and as a fallback; clearly lower quality).
"""
from __future__ import annotations

import os
from pathlib import Path

import click
import numpy as np
import torch
from tqdm import tqdm

from models.logmel import FeatureSpec, mel_filterbank
from models.melgan import build_generator, remove_weight_norm
from pipeline.audio import loudness_normalize, read_wav, write_wav
from pipeline.checkpoint import load_checkpoint
from pipeline.config import get
from pipeline.dataset import Dataset, SynthesisLine
from pipeline.errors import UserError
from pipeline.features import check_spec
from pipeline.runtime import pick_device, set_threads
from pipeline.train_vqvae import speaker_key

VOCODERS = ("melgan", "griffinlim")
LOUDNESS_DBFS = -23.0


class MelGANVocoder:
    """A trained generator loaded from a ``melgan`` checkpoint (weight norm folded away)."""

    def __init__(self, checkpoint: str | os.PathLike, device: torch.device):
        ckpt = load_checkpoint(checkpoint, kind="melgan")
        meta = ckpt["meta"]
        self.path = Path(checkpoint)
        self.spec = FeatureSpec.from_dict(meta["feature_spec"])
        self.voices = dict(meta["speakers"])
        self.conditioned = bool(meta["speaker_conditioned"])
        self.device = device
        generator = build_generator(ckpt["config"]["melgan"]["generator"], self.spec.n_mels,
                                    len(self.voices) if self.conditioned else 0)
        generator.load_state_dict(ckpt["models"]["generator"])
        self.generator = remove_weight_norm(generator).eval().to(device)

    def knows(self, voice: str) -> bool:
        return not self.conditioned or voice in self.voices

    @torch.no_grad()
    def __call__(self, mel: torch.Tensor, voice: str) -> np.ndarray:
        speaker = torch.tensor([self.voices[voice]], device=self.device) if self.conditioned else None
        return self.generator(mel.to(self.device, torch.float32).unsqueeze(0), speaker)[0].cpu().numpy()


class GriffinLimVocoder:
    """Log10 mel -> linear magnitude (filter-bank pseudo-inverse) -> fast Griffin-Lim phase
    recovery (Perraudin et al. 2013), with the framing of ``models.logmel``."""

    path = None

    def __init__(self, spec: FeatureSpec, n_iter: int = 32, momentum: float = 0.99, seed: int = 0):
        self.spec, self.n_iter, self.momentum, self.seed = spec, n_iter, momentum, seed
        self.inverse_basis = torch.linalg.pinv(mel_filterbank(spec))
        self.window = torch.hann_window(spec.win_length)

    def knows(self, voice: str) -> bool:
        return True

    def _stft(self, wav: torch.Tensor) -> torch.Tensor:
        s = self.spec
        return torch.stft(wav, s.n_fft, s.hop_length, s.win_length, self.window, center=True,
                          pad_mode="constant", return_complex=True)

    def _istft(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        s = self.spec
        return torch.istft(spec, s.n_fft, s.hop_length, s.win_length, self.window, center=True, length=length)

    @torch.no_grad()
    def __call__(self, mel: torch.Tensor, voice: str) -> np.ndarray:
        hop, frames = self.spec.hop_length, mel.shape[-1]
        magnitude = (self.inverse_basis @ torch.pow(10.0, mel.float().cpu())).clamp_min(0.0)
        # centre=True frame j sits at sample j * hop, LogMel frame k at k * hop + hop / 2: put a
        # copy of frame 0 in front, so LogMel frame k becomes frame k + 1, then drop half a hop.
        magnitude = torch.cat([magnitude[:, :1], magnitude], dim=1)
        length = frames * hop + hop // 2
        gen = torch.Generator().manual_seed(self.seed)
        phase = torch.exp(2j * torch.pi * torch.rand(magnitude.shape, generator=gen))
        previous = torch.zeros_like(phase)
        for _ in range(self.n_iter):
            rebuilt = self._stft(self._istft(magnitude * phase, length))
            accelerated = rebuilt - (self.momentum / (1 + self.momentum)) * previous
            phase = accelerated / accelerated.abs().clamp_min(1e-8)
            previous = rebuilt
        wav = self._istft(magnitude * phase, length)
        return wav[hop // 2: hop // 2 + frames * hop].numpy()


class Converter:
    """Re-speak audio in a target voice with a trained VQ-VAE-2 and a vocoder."""

    def __init__(self, vqvae_checkpoint: str | os.PathLike, melgan_checkpoint: str | os.PathLike | None = None,
                 vocoder: str = "melgan", device: str = "cpu", loudness_dbfs: float = LOUDNESS_DBFS):
        from pipeline.encode import load_vqvae  # the VQ-VAE stage owns checkpoint -> model

        if vocoder not in VOCODERS:
            raise UserError(f"unknown vocoder {vocoder!r}: use one of {', '.join(VOCODERS)}")
        self.device = pick_device(str(device))
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

    def is_up_to_date(self, output: Path, source: Path) -> bool:
        """True when ``output`` is newer than its source and every checkpoint used."""
        if not output.is_file():
            return False
        newest = max(p.stat().st_mtime for p in [source, *self.checkpoints])
        return output.stat().st_mtime >= newest


def convert_synthesis(dataset: Dataset, out_dir: str | os.PathLike, converter: Converter, progress: bool = True,
                      skip_up_to_date: bool = False) -> list[Path]:
    """Convert every ``synthesis.txt`` line of a dataset language: one ``<VOICE>_<id>.wav`` each
    (written atomically). Unknown target voices are reported before anything is written."""
    lines: list[SynthesisLine] = dataset.synthesis()
    targets = {line.voice: speaker_key(dataset.language, line.voice) for line in lines}
    for target in sorted(set(targets.values())):
        converter.check_voice(target)
    out_dir = Path(out_dir)
    written = []
    for line in tqdm(lines, desc=f"convert {dataset.language}", unit="utt", disable=not progress, dynamic_ncols=True):
        out = out_dir / line.output_name
        if not (skip_up_to_date and converter.is_up_to_date(out, line.source.path)):
            wav = converter.convert(line.source.read(converter.spec.sample_rate), targets[line.voice])
            write_wav(out, wav, converter.spec.sample_rate)
        written.append(out)
    return written


# ---------------------------------------------------------------------------------------- CLI
def resolve_checkpoints(run: Path | None, vqvae: Path | None, melgan: Path | None, vocoder: str
                        ) -> tuple[Path, Path | None]:
    if run is not None:
        vqvae = vqvae or run / "vqvae" / "checkpoint.pt"
        melgan = melgan or run / "melgan" / "checkpoint.pt"
    if vqvae is None:
        raise UserError("give --run RUN or --vqvae CHECKPOINT")
    return vqvae, (melgan if vocoder == "melgan" else None)


@click.command("convert", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--run", type=click.Path(path_type=Path),
              help="Run folder holding vqvae/checkpoint.pt and melgan/checkpoint.pt.")
@click.option("--vqvae", type=click.Path(path_type=Path), help="VQ-VAE checkpoint (overrides RUN's).")
@click.option("--melgan", type=click.Path(path_type=Path), help="MelGAN checkpoint (overrides RUN's).")
@click.option("--vocoder", type=click.Choice(VOCODERS), default="melgan", show_default=True,
              help="melgan: the trained vocoder; griffinlim: no vocoder checkpoint needed (debugging).")
@click.option("--source", type=click.Path(path_type=Path), help="One 16 kHz mono wav to convert (needs --target).")
@click.option("--target", help="Target voice for --source, e.g. V001.")
@click.option("--dataset", type=click.Path(path_type=Path),
              help="Dataset root: convert every line of ROOT/2019/LANGUAGE/synthesis.txt.")
@click.option("--language", default="english", show_default=True, help="Dataset language for --dataset.")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Output wav (with --source) or output folder of <VOICE>_<id>.wav files (with --dataset).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("--threads", type=int, default=None,
              help="Torch threads (default: runtime.threads of the VQ-VAE's config; 0 = all cores).")
@click.option("--force", is_flag=True, help="With --dataset: reconvert files that are already up to date.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def convert_command(run, vqvae, melgan, vocoder, source, target, dataset, language, out, device, threads, force, quiet):
    """Re-speak one wav, or every synthesis.txt line of a dataset, in a target voice.

    \b
    zs2020 convert --run data/runs/demo --source in.wav --target V001 --out out.wav
    zs2020 convert --run data/runs/demo --dataset data/corpus --out converted/
    """
    if (source is None) == (dataset is None):
        raise UserError("give exactly one of --source (with --target) or --dataset")
    if source is not None and not target:
        raise UserError("--source needs --target VOICE")
    vqvae, melgan = resolve_checkpoints(run, vqvae, melgan, vocoder)
    if threads is not None:
        set_threads(threads)
    if source is not None:
        audio = read_wav(source)
    else:
        data = Dataset(dataset, language)
    converter = Converter(vqvae, melgan, vocoder=vocoder, device=device)
    if threads is None:
        set_threads(int(get(converter.vqvae.config, "runtime.threads", 0) or 0))
    if source is not None:
        write_wav(out, converter.convert(audio, target), converter.spec.sample_rate)
        click.echo(f"wrote {out} ({target}, {len(audio) / converter.spec.sample_rate:.2f} s)")
    else:
        paths = convert_synthesis(data, out, converter, progress=not quiet, skip_up_to_date=not force)
        click.echo(f"wrote {len(paths)} wavs to {out}")
