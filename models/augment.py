"""Speaker perturbation of log-mel spectrograms (pure tensors), for training content encoders
that should not see who is speaking, and for the VQ-VAE-2's test-time tract search.

``warp_frequency`` is vocal-tract-length perturbation done on the mel spectrum: each utterance's
spectrum is stretched along frequency by its own factor (alpha > 1 moves formants and harmonics
up), on the Slaney mel scale that ``models.logmel`` uses (librosa's default: linear to 1 kHz,
logarithmic above). Random factors come from the caller's generator (``stretch_factors``), so a
seeded, resumed run draws the same.
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
