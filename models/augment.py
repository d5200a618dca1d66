"""Speaker perturbation of log-mel spectrograms (pure tensors), for training content encoders
that should not see who is speaking.

* ``warp_frequency``: vocal-tract-length perturbation done on the mel spectrum. Each
  utterance's spectrum is stretched along frequency by its own factor (alpha > 1 moves formants
  and harmonics up), on the Slaney mel scale that ``models.logmel`` uses (librosa's default:
  linear to 1 kHz, logarithmic above).
* ``tilt_spectrum``: a random smooth equaliser, a low-order cosine series across the mel bins
  added to the log-mel, which changes the timbre and the channel but not the phones.

Factors and curves come from the caller's generator, so a seeded, resumed run draws the same.
"""
from __future__ import annotations

import math

import librosa
import numpy as np
import torch


def _mel_bin_positions(frequencies_hz: np.ndarray, n_mels: int, f_min: float, f_max: float) -> np.ndarray:
    """Fractional filterbank index of each frequency: bin k's centre maps to k (Slaney mel scale,
    the one ``models.logmel.mel_filterbank`` builds its filters on)."""
    lo, hi = librosa.hz_to_mel([f_min, f_max])
    step = (hi - lo) / (n_mels + 1)
    return (librosa.hz_to_mel(frequencies_hz) - lo) / step - 1


def warp_frequency(mel: torch.Tensor, factors: torch.Tensor, f_min: float, f_max: float) -> torch.Tensor:
    """(B, n_mels, T) log-mel, (B,) stretch factors -> the warped log-mel, same shape. Output bin
    k takes the value the input had at frequency centre_k / alpha (linear interpolation between
    bins; beyond the edges the edge bin). alpha = 1 returns the input."""
    b, n_mels, _ = mel.shape
    if factors.shape != (b,):
        raise ValueError(f"need one factor per utterance ({b}), got shape {tuple(factors.shape)}")
    centres = librosa.mel_frequencies(n_mels + 2, fmin=f_min, fmax=f_max)[1:-1]                 # (n_mels,) Hz
    source = centres[None] / factors.detach().cpu().double().numpy()[:, None]                  # (B, n_mels) Hz
    position = torch.from_numpy(_mel_bin_positions(source, n_mels, f_min, f_max)).clamp(0, n_mels - 1).to(mel.device)
    below = position.floor().long().clamp(max=n_mels - 2) if n_mels > 1 else position.floor().long()
    frac = (position - below).to(mel.dtype)[..., None]
    index = below[..., None].expand(-1, -1, mel.shape[-1])
    lower = torch.gather(mel, 1, index)
    upper = torch.gather(mel, 1, (index + 1).clamp(max=n_mels - 1))
    return lower + frac * (upper - lower)


def stretch_factors(n: int, gen: torch.Generator, warp: float) -> torch.Tensor:
    """n stretch factors, log-uniform in [1/(1+warp), 1+warp] (float64), drawn from ``gen``."""
    span = math.log1p(warp)
    return torch.exp((torch.rand(n, generator=gen, dtype=torch.float64) * 2 - 1) * span)


def tilt_spectrum(mel: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
    """(B, n_mels, T) log-mel, (B, K) coefficients -> log-mel plus sum_k c_k cos(pi k (i + 0.5) / n_mels)
    over bins i, k = 1..K (no constant term: loudness is left alone)."""
    n_mels = mel.shape[1]
    k = torch.arange(1, coefficients.shape[1] + 1, dtype=mel.dtype, device=mel.device)
    bins = torch.arange(n_mels, dtype=mel.dtype, device=mel.device) + 0.5
    curves = coefficients.to(mel) @ torch.cos(math.pi * k[:, None] * bins[None] / n_mels)       # (B, n_mels)
    return mel + curves[..., None]


def speaker_perturbation(mel: torch.Tensor, gen: torch.Generator, warp: float, tilt: float, f_min: float,
                         f_max: float, tilt_order: int = 4) -> torch.Tensor:
    """Both perturbations with factors drawn from ``gen``: alpha log-uniform in [1/(1+warp), 1+warp],
    cosine coefficients normal with standard deviation ``tilt`` (log10 units). 0 turns one off."""
    b = mel.shape[0]
    if warp > 0:
        mel = warp_frequency(mel, stretch_factors(b, gen, warp), f_min, f_max)
    if tilt > 0:
        mel = tilt_spectrum(mel, torch.randn(b, tilt_order, generator=gen) * tilt)
    return mel
