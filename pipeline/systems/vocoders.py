"""Vocoders ready for inference: the trained MelGAN (log-mel -> 16 kHz wav) and Griffin-Lim
(no checkpoint; for debugging and as a fallback, clearly lower quality)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from models.featurespec import FeatureSpec
from models.logmel import mel_filterbank, mel_to_linear
from models.melgan import Generator, remove_weight_norm
from pipeline.core.checkpoint import known_arguments, load_checkpoint
from pipeline.core.errors import UserError
from pipeline.systems.vqvae import vqvae_from_parts

KIND = "melgan"
VOCODERS = ("melgan", "griffinlim")


class MelGANVocoder:
    """A trained generator loaded from a ``melgan`` checkpoint (weight norm folded away)."""

    def __init__(self, checkpoint: str | os.PathLike, device: torch.device):
        ckpt = load_checkpoint(checkpoint, kind=KIND, models=("generator",))
        meta = ckpt["meta"]
        self.path = Path(checkpoint)
        try:
            self.spec = FeatureSpec.from_dict(meta["feature_spec"])
            self.voices = dict(meta["speakers"])      # the voices it was trained on (it renders any)
            generator = Generator(**known_arguments(Generator, meta["generator"]))
            # the weight average when the run kept one (melgan.train.ema), else the last weights
            generator.load_state_dict(ckpt["models"].get("generator_ema", ckpt["models"]["generator"]))
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise UserError(f"{checkpoint}: incompatible MelGAN checkpoint ({' '.join(str(exc).split())[:120]})") \
                from None
        self.device = device
        self.generator = remove_weight_norm(generator).eval().to(device)
        self.step = int(ckpt["step"])
        self.config = ckpt["config"]
        # Methods 2 and 3 train a VQ-VAE-2 with the vocoder: conversions then go through it.
        self.unit_system = (vqvae_from_parts(meta["unit_system"], ckpt["models"]["vqvae"], ckpt["config"],
                                             self.step, checkpoint, device)
                            if "vqvae" in ckpt["models"] else None)

    description = "a MelGAN vocoder trained on the target voices"

    def hyperparameters(self) -> dict:
        return {"name": "melgan", "preset": self.config["name"], "steps_trained": self.step,
                "settings": self.config["melgan"]}

    @torch.no_grad()
    def __call__(self, mel: torch.Tensor) -> np.ndarray:
        return self.generator(mel.to(self.device, torch.float32).unsqueeze(0))[0].cpu().numpy()


class GriffinLimVocoder:
    """Log10 mel -> linear magnitude (filter-bank pseudo-inverse) -> fast Griffin-Lim phase
    recovery (Perraudin et al. 2013), with the framing of ``models.logmel``."""

    path = None
    description = "Griffin-Lim"

    def hyperparameters(self) -> dict:
        return {"name": "griffinlim", "iterations": self.n_iter, "momentum": self.momentum}

    def __init__(self, spec: FeatureSpec, n_iter: int = 32, momentum: float = 0.99, seed: int = 0):
        self.spec, self.n_iter, self.momentum, self.seed = spec, n_iter, momentum, seed
        self.inverse_basis = torch.linalg.pinv(mel_filterbank(spec))
        self.window = torch.hann_window(spec.win_length)

    def _stft(self, wav: torch.Tensor) -> torch.Tensor:
        s = self.spec
        return torch.stft(wav, s.n_fft, s.hop_length, s.win_length, self.window, center=True,
                          pad_mode="constant", return_complex=True)

    def _istft(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        s = self.spec
        return torch.istft(spec, s.n_fft, s.hop_length, s.win_length, self.window, center=True, length=length)

    @torch.no_grad()
    def __call__(self, mel: torch.Tensor) -> np.ndarray:
        hop, frames = self.spec.hop_length, mel.shape[-1]
        magnitude = mel_to_linear(mel.cpu(), self.inverse_basis).clamp_min(0.0)
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


