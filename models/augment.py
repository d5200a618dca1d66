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

import torch

_F_SP = 200.0 / 3          # Slaney mel: Hz per mel below 1 kHz
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOG_STEP = math.log(6.4) / 27.0


def hz_to_mel(hz: torch.Tensor) -> torch.Tensor:
    linear = hz / _F_SP
    log = _MIN_LOG_MEL + torch.log(torch.clamp(hz, min=_MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOG_STEP
    return torch.where(hz < _MIN_LOG_HZ, linear, log)


def mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    linear = mel * _F_SP
    log = _MIN_LOG_HZ * torch.exp(_LOG_STEP * (torch.clamp(mel, min=_MIN_LOG_MEL) - _MIN_LOG_MEL))
    return torch.where(mel < _MIN_LOG_MEL, linear, log)


def warp_frequency(mel: torch.Tensor, factors: torch.Tensor, f_min: float, f_max: float) -> torch.Tensor:
    """(B, n_mels, T) log-mel, (B,) stretch factors -> the warped log-mel, same shape. Output bin
    k takes the value the input had at frequency centre_k / alpha (linear interpolation between
    bins; beyond the edges the edge bin). alpha = 1 returns the input."""
    b, n_mels, _ = mel.shape
    if factors.shape != (b,):
        raise ValueError(f"need one factor per utterance ({b}), got shape {tuple(factors.shape)}")
    lo, hi = hz_to_mel(torch.tensor(f_min, dtype=torch.float64)), hz_to_mel(torch.tensor(f_max, dtype=torch.float64))
    step = (hi - lo) / (n_mels + 1)
    centres = mel_to_hz(lo + step * torch.arange(1, n_mels + 1, dtype=torch.float64))        # (n_mels,)
    source = centres[None] / factors.to(torch.float64)[:, None]                               # (B, n_mels) Hz
    position = ((hz_to_mel(source) - lo) / step - 1).clamp(0, n_mels - 1).to(mel.device)      # fractional bin
    below = position.floor().long().clamp(max=n_mels - 2) if n_mels > 1 else position.floor().long()
    frac = (position - below).to(mel.dtype)[..., None]
    index = below[..., None].expand(-1, -1, mel.shape[-1])
    lower = torch.gather(mel, 1, index)
    upper = torch.gather(mel, 1, (index + 1).clamp(max=n_mels - 1))
    return lower + frac * (upper - lower)


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
        span = math.log1p(warp)
        factors = torch.exp((torch.rand(b, generator=gen, dtype=torch.float64) * 2 - 1) * span)
        mel = warp_frequency(mel, factors, f_min, f_max)
    if tilt > 0:
        mel = tilt_spectrum(mel, torch.randn(b, tilt_order, generator=gen) * tilt)
    return mel
