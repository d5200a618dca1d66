"""The project's one log-mel front end, as a differentiable tensor module.

The same module computes training features, encoding features, conversion features and the
MelGAN's spectral loss, so the vocoder is always trained on exactly what the VQ-VAE decoder
predicts. Framing: the signal is right-padded with zeros to a multiple of the hop, then
reflect-padded by (n_fft - hop) / 2 on both sides with no centring. That yields exactly
ceil(T / hop) frames, and frame k is centred on samples [k*hop, (k+1)*hop), so a vocoder that
upsamples by ``hop`` reproduces the input length once cropped.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.featurespec import FeatureSpec


def mel_filterbank(spec: FeatureSpec) -> torch.Tensor:
    import librosa  # imported here: librosa is slow to import and only the filter bank is needed

    fb = librosa.filters.mel(sr=spec.sample_rate, n_fft=spec.n_fft, n_mels=spec.n_mels,
                             fmin=spec.f_min, fmax=spec.f_max)
    return torch.from_numpy(fb).float()


def mel_to_linear(mel: torch.Tensor, inverse_basis: torch.Tensor) -> torch.Tensor:
    """(..., n_mels, frames) log10 mel -> (..., bins, frames) linear magnitude through
    ``inverse_basis``, a pseudo-inverse of a mel filter bank (its bins may differ from the
    features' own). Not clamped: a pseudo-inverse can give small negative values."""
    return inverse_basis @ torch.pow(10.0, mel.float())


class LogMel(nn.Module):
    """(batch, samples) waveform -> (batch, n_mels, ceil(samples / hop)) log10 magnitude mel."""

    def __init__(self, spec: FeatureSpec):
        super().__init__()
        if (spec.n_fft - spec.hop_length) % 2:
            raise ValueError("n_fft - hop_length must be even for symmetric padding")
        self.spec = spec
        self.register_buffer("mel_basis", mel_filterbank(spec), persistent=False)
        self.register_buffer("window", torch.hann_window(spec.win_length), persistent=False)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        if wav.dim() == 1:
            wav = wav.unsqueeze(0)
        spec = self.spec
        frames = math.ceil(wav.shape[-1] / spec.hop_length)
        wav = F.pad(wav, (0, frames * spec.hop_length - wav.shape[-1]))
        pad = (spec.n_fft - spec.hop_length) // 2
        mode = "reflect" if wav.shape[-1] > pad else "constant"
        wav = F.pad(wav.unsqueeze(1), (pad, pad), mode=mode).squeeze(1)
        stft = torch.stft(wav.float(), n_fft=spec.n_fft, hop_length=spec.hop_length,
                          win_length=spec.win_length, window=self.window, center=False,
                          return_complex=True)
        mel = torch.matmul(self.mel_basis, stft.abs())
        return torch.log10(torch.clamp(mel, min=spec.log_floor))[..., :frames]
