"""MelGAN (Kumar et al. 2019) for log-mel -> 16 kHz waveform, as pure tensor modules.

Generator: kernel-7 input convolution, then one weight-normalised transposed convolution per
upsampling ratio, each followed by dilated residual blocks; tanh output. The ratios must
multiply to the feature hop, so F mel frames give exactly F * hop samples and sample
``k * hop`` lines up with the start of frame k (the framing contract of ``models.logmel``).

Discriminator: identical window discriminators on the waveform at successively average-pooled
scales; each returns all its layer activations (the last one is the score map), which the
feature-matching loss needs. ``max_channels`` caps the width so a small discriminator stays
small (with the paper's 1024 cap even ndf 8 gives 5.5M parameters).

Output heads: ``waveform`` (the paper's kernel-7 convolution and tanh; the ratios multiply to the
hop) or ``istft`` (as in iSTFTNet and Vocos: the last layer predicts a log-magnitude and a phase
spectrum per step and an inverse STFT makes the samples, so the ratios multiply to
``hop / istft_hop``; with no ratios at all every layer runs at the frame rate, which is far cheaper
on a CPU than convolutions at 16 kHz). ``frame_blocks`` residual blocks run at the frame rate
before any upsampling (the whole network when there is none).

Mel anchor (istft head, ``anchor_spec``): the predicted log-magnitude is a residual on top of the
input mel mapped back to linear frequency (the filter bank's pseudo-inverse, as Griffin-Lim does),
so at initialisation the spectral envelope, which carries the voice, is exactly the input's and the
network mainly has to learn phase and fine structure. A universal vocoder without it rendered
one-shot conversions at similarity 0.61 to both speakers where Griffin-Lim on the same mels kept the
reference voice (README, one-shot diagnosis).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm

from models.featurespec import FeatureSpec
from models.logmel import mel_filterbank, mel_to_linear


def _wn(module: nn.Module) -> nn.Module:
    return weight_norm(module)


class Pad(nn.Module):
    """Reflection padding that falls back to replicate padding for inputs too short to reflect
    (a 1-frame mel must still vocode to exactly one hop of audio)."""

    def __init__(self, left: int, right: int | None = None):
        super().__init__()
        self.left, self.right = left, left if right is None else right

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mode = "reflect" if x.shape[-1] > max(self.left, self.right) else "replicate"
        return F.pad(x, (self.left, self.right), mode=mode)


class ResidualBlock(nn.Module):
    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.block = nn.Sequential(
            nn.LeakyReLU(0.2),
            Pad(dilation),
            _wn(nn.Conv1d(channels, channels, kernel_size=3, dilation=dilation)),
            nn.LeakyReLU(0.2),
            _wn(nn.Conv1d(channels, channels, kernel_size=1)),
        )
        self.shortcut = _wn(nn.Conv1d(channels, channels, kernel_size=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.block(x)


def upsample_layer(channels_in: int, channels_out: int, ratio: int) -> nn.Module:
    """Transposed convolution whose output is exactly ``ratio`` times its input (odd ratios too)."""
    return _wn(nn.ConvTranspose1d(channels_in, channels_out, kernel_size=2 * ratio, stride=ratio,
                                  padding=ratio // 2 + ratio % 2, output_padding=ratio % 2))


class ISTFTHead(nn.Module):
    """(batch, channels, steps) -> (batch, steps * hop) samples through a predicted spectrum.

    Step j's spectrum is centred on sample ``j * hop + hop / 2``, the centre of a ``LogMel``
    frame: the first step is repeated in front (a centred inverse STFT puts step j at j * hop)
    and half a hop is cut from the start.

    With ``anchor_spec`` (the input features' ``FeatureSpec``) the log-magnitude is
    ``log(pinv(filter bank) @ 10 ** mel)`` plus the predicted residual, whose weights start at
    zero and whose bias starts at the analytic scale between the two analyses (measured within
    0.04 of the median log-ratio on demo speech)."""

    def __init__(self, channels: int, n_fft: int, hop: int, anchor_spec: FeatureSpec | None = None):
        super().__init__()
        if n_fft < hop or n_fft % 2:
            raise ValueError(f"istft n_fft {n_fft} must be even and at least the hop {hop}")
        self.n_fft, self.hop = n_fft, hop
        self.proj = _wn(nn.Conv1d(channels, n_fft + 2, kernel_size=1))
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.anchored = anchor_spec is not None
        if self.anchored:
            bins = n_fft // 2 + 1
            own = mel_filterbank(dataclasses.replace(anchor_spec, n_fft=n_fft, win_length=n_fft))
            self.register_buffer("inverse_mel", torch.linalg.pinv(own), persistent=False)
            self.floor = anchor_spec.log_floor      # the features' own floor, as a linear magnitude
            # Noise-like spectra: the mel of the features' analysis sums more bins per filter than
            # this head's, and the two windows differ in energy.
            feature_window = torch.hann_window(anchor_spec.win_length)
            scale = math.sqrt((self.window ** 2).sum() / (feature_window ** 2).sum()) \
                * float(own.sum(1).mean() / mel_filterbank(anchor_spec).sum(1).mean())
            with torch.no_grad():
                self.proj.parametrizations.weight.original0[:bins].zero_()
                self.proj.bias[:bins].fill_(math.log(scale))

    def anchor(self, mel: torch.Tensor, steps: int) -> torch.Tensor:
        """(batch, n_mels, frames) log10 mel -> (batch, bins, steps) natural-log magnitude."""
        log_magnitude = torch.log(mel_to_linear(mel, self.inverse_mel).clamp(min=self.floor))
        return log_magnitude.repeat_interleave(steps // mel.shape[-1], dim=-1)

    def forward(self, x: torch.Tensor, mel: torch.Tensor | None = None) -> torch.Tensor:
        steps = x.shape[-1]
        x = torch.cat([x[..., :1], x], dim=-1)
        log_magnitude, phase = self.proj(x).float().chunk(2, dim=1)
        if self.anchored:
            if mel is None:
                raise ValueError("a mel-anchored istft head needs the input mel")
            anchor = self.anchor(mel, steps)
            log_magnitude = log_magnitude + torch.cat([anchor[..., :1], anchor], dim=-1)
        # exp(7) ~ 1100 is well above a full-scale sine's peak bin, so the cap only stops overflow.
        magnitude = torch.exp(log_magnitude.clamp(max=7.0))
        # Not torch.polar: its backward is inf where exp(log-magnitude) is subnormal in float32
        # (log-magnitudes of about -88 to -103), which diverged a universal vocoder at step 130.
        spectrum = torch.complex(magnitude * torch.cos(phase), magnitude * torch.sin(phase))
        wav = torch.istft(spectrum, self.n_fft, self.hop, self.n_fft, self.window, center=True,
                          length=(steps + 1) * self.hop)
        start = self.hop // 2
        return wav[:, start:start + steps * self.hop].clamp(-1.0, 1.0)


ISTFT_FFT = 640     # the istft head's FFT size (40 ms) ...
ISTFT_HOP = 160     # ... and hop (10 ms: one step per mel frame when there are no upsampling ratios)


class Generator(nn.Module):
    """(batch, n_mels, frames) log-mel -> (batch, frames * hop) waveform."""

    def __init__(self, n_mels: int = 80, ngf: int = 32, ratios: Sequence[int] = (5, 4, 4, 2),
                 n_residual: int = 3, head: str = "waveform", istft_fft: int = ISTFT_FFT, istft_hop: int = ISTFT_HOP,
                 frame_blocks: int = 0, anchor_spec: dict | None = None):
        super().__init__()
        if head not in ("waveform", "istft"):
            raise ValueError(f"unknown generator head {head!r}")
        if anchor_spec is not None and head != "istft":
            raise ValueError("a mel anchor needs the istft head")
        if head == "waveform" and not ratios:
            raise ValueError("a waveform head needs upsampling ratios")
        self.ratios = tuple(int(r) for r in ratios)
        self.hop = math.prod(self.ratios) * (int(istft_hop) if head == "istft" else 1)
        channels = ngf * 2 ** len(self.ratios)
        layers: list[nn.Module] = [Pad(3), _wn(nn.Conv1d(n_mels, channels, kernel_size=7))]
        layers += [ResidualBlock(channels, 3 ** (j % 3)) for j in range(frame_blocks)]
        for ratio in self.ratios:
            layers += [nn.LeakyReLU(0.2), upsample_layer(channels, channels // 2, ratio)]
            channels //= 2
            layers += [ResidualBlock(channels, 3 ** j) for j in range(n_residual)]
        if head == "waveform":
            layers += [nn.LeakyReLU(0.2), Pad(3), _wn(nn.Conv1d(channels, 1, kernel_size=7)), nn.Tanh()]
        else:
            anchor = FeatureSpec.from_dict(anchor_spec) if anchor_spec is not None else None
            layers += [nn.LeakyReLU(0.2), ISTFTHead(channels, int(istft_fft), int(istft_hop), anchor)]
        self.net = nn.Sequential(*layers)
        self.anchored = anchor_spec is not None

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = mel
        if not self.anchored:
            return self.net(x).reshape(mel.shape[0], -1)
        for layer in self.net[:-1]:
            x = layer(x)
        return self.net[-1](x, mel).reshape(mel.shape[0], -1)


DOWNSAMPLE = 4      # stride of each of a window discriminator's grouped convolutions


class WindowDiscriminator(nn.Module):
    """One scale: strided grouped convolutions producing a map of real/fake scores."""

    def __init__(self, ndf: int = 16, n_layers: int = 4, downsample: int = DOWNSAMPLE, max_channels: int = 1024):
        super().__init__()
        layers = [nn.Sequential(Pad(7), _wn(nn.Conv1d(1, ndf, kernel_size=15)), nn.LeakyReLU(0.2))]
        channels = ndf
        for _ in range(n_layers):
            prev, channels = channels, min(channels * downsample, max_channels)
            groups = math.gcd(max(prev // 4, 1), channels)
            layers.append(nn.Sequential(
                _wn(nn.Conv1d(prev, channels, kernel_size=downsample * 10 + 1, stride=downsample,
                              padding=downsample * 5, groups=groups)),
                nn.LeakyReLU(0.2)))
        prev, channels = channels, min(channels * 2, max_channels)
        layers.append(nn.Sequential(_wn(nn.Conv1d(prev, channels, kernel_size=5, padding=2)), nn.LeakyReLU(0.2)))
        layers.append(_wn(nn.Conv1d(channels, 1, kernel_size=3, padding=1)))
        self.layers = nn.ModuleList(layers)

    def forward(self, wav: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        x = wav
        for layer in self.layers:
            x = layer(x)
            feats.append(x)
        return feats


class MultiScaleDiscriminator(nn.Module):
    """(batch, samples) -> one list of layer activations per scale (last entry = scores)."""

    def __init__(self, scales: int = 3, ndf: int = 16, n_layers: int = 4, downsample: int = DOWNSAMPLE,
                 max_channels: int = 1024):
        super().__init__()
        self.discriminators = nn.ModuleList(
            WindowDiscriminator(ndf, n_layers, downsample, max_channels) for _ in range(scales))
        self.pool = nn.AvgPool1d(4, stride=2, padding=1, count_include_pad=False)

    def forward(self, wav: torch.Tensor) -> list[list[torch.Tensor]]:
        x = wav.unsqueeze(1)
        outputs = []
        for i, disc in enumerate(self.discriminators):
            if i:
                x = self.pool(x)
            outputs.append(disc(x))
        return outputs


def remove_weight_norm(model: nn.Module) -> nn.Module:
    """Fold weight normalisation into plain weights (same outputs, faster inference)."""
    for module in model.modules():
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
