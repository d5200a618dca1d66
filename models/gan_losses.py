"""MelGAN training losses: hinge adversarial losses, feature matching and spectral
reconstruction (log-mel L1 through the project's one ``LogMel``, plus an optional
multi-resolution STFT loss). Discriminator outputs are lists (one per scale) of layer
activation lists whose last entry is the score map, as ``models.melgan`` returns them."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from models.distributed import global_sum, rank_and_world
from models.featurespec import FeatureSpec
from models.logmel import LogMel


def discriminator_hinge_loss(real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """Sum over scales of mean(relu(1 - D(x))) + mean(relu(1 + D(G(z))))."""
    return sum(F.relu(1 - r[-1]).mean() + F.relu(1 + f[-1]).mean() for r, f in zip(real, fake))


def generator_hinge_loss(fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """Sum over scales of -mean(D(G(z)))."""
    return sum(-f[-1].mean() for f in fake)


def feature_matching_loss(real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """Mean L1 distance between real and generated activations of every hidden layer of every
    scale (score maps excluded). Real activations are treated as constants."""
    terms = [F.l1_loss(f, r.detach()) for rs, fs in zip(real, fake) for r, f in zip(rs[:-1], fs[:-1])]
    return torch.stack(terms).mean()


class MelL1Loss(nn.Module):
    """L1 distance between the log-mels of generated and real audio (the features the
    VQ-VAE decoder predicts, so the vocoder is trained to invert exactly those)."""

    def __init__(self, spec: FeatureSpec):
        super().__init__()
        self.logmel = LogMel(spec)

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(self.logmel(fake), self.logmel(real))


# [n_fft, hop, window] of each resolution of the multi-resolution STFT loss
STFT_RESOLUTIONS = ((512, 128, 512), (1024, 256, 1024), (256, 64, 256))


class MultiResolutionSTFTLoss(nn.Module):
    """Spectral convergence + log-magnitude L1, averaged over STFT resolutions
    (n_fft, hop, win) (Yamamoto et al. 2020); makes the phase-sensitive fine structure
    converge faster than the mel loss alone. Spectral convergence is a ratio of norms over the
    whole batch (every data-parallel rank's share: ``models.distributed``)."""

    def __init__(self, resolutions: Sequence[Sequence[int]] = STFT_RESOLUTIONS):
        super().__init__()
        self.resolutions = [tuple(int(v) for v in r) for r in resolutions]
        for i, (_, _, win) in enumerate(self.resolutions):
            self.register_buffer(f"window{i}", torch.hann_window(win), persistent=False)

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        total = fake.new_zeros(())
        for i, (n_fft, hop, win) in enumerate(self.resolutions):
            window = getattr(self, f"window{i}")
            mags = [torch.stft(x.float(), n_fft, hop, win, window, return_complex=True).abs().clamp_min(1e-7)
                    for x in (fake, real)]
            convergence = _batch_norm(mags[1] - mags[0]) / _batch_norm(mags[1]).clamp_min(1e-7)
            total = total + convergence + F.l1_loss(mags[0].log(), mags[1].log())
        return total / len(self.resolutions)


def _batch_norm(x: torch.Tensor) -> torch.Tensor:
    """The Frobenius norm of ``x`` over every data-parallel rank's share of the batch."""
    if rank_and_world()[1] == 1:
        return torch.linalg.norm(x)
    return global_sum(x.pow(2).sum()).clamp_min(1e-14).sqrt()
