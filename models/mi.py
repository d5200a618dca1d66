"""CLUB: a contrastive log-ratio upper bound of mutual information (Cheng et al., ICML 2020),
as VQMIVC uses it to push content, speaker and pitch apart. Pure tensors.

A variational network q(y|x) = N(mu(x), diag(exp(logvar(x)))) is fitted by maximum likelihood
on pairs drawn together (``log_likelihood``, the estimator's own objective, on detached inputs).
The bound is then E[log q(y|x)] over those positive pairs minus the same over shuffled pairs
(``upper_bound``), which the main model minimises: when x says nothing about y both terms are
equal and the bound is about 0.

Pairs come in three shapes:
  * x (B, Dx) and y (B, Dy): one pair per utterance; shuffled across the batch;
  * x (B, Dx) and y (B, T, Dy): an utterance-level x against every frame of its utterance
    (speaker vs content frames); shuffling pairs x with the frames of another utterance;
  * x (B, T, Dx) and y (B, T, Dy): frame-level pairs (content vs pitch); shuffled across all
    frames of the batch.
"""
from __future__ import annotations

import torch
from torch import nn

from models.distributed import gather_rows, local_rows


class CLUB(nn.Module):
    def __init__(self, x_dim: int, y_dim: int, hidden: int):
        super().__init__()
        self.mean = nn.Sequential(nn.Linear(x_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                  nn.Linear(hidden, y_dim))
        # tanh keeps the log-variance in [-1, 1]: the bound cannot blow up through a tiny variance
        self.logvar = nn.Sequential(nn.Linear(x_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                    nn.Linear(hidden, y_dim), nn.Tanh())

    @staticmethod
    def _pairs(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Bring x and y to shapes whose leading axis is what shuffling permutes."""
        if x.dim() == 3 and y.dim() == 3:
            if x.shape[:2] != y.shape[:2]:
                raise ValueError(f"frame-level pairs need equal (batch, time), got {tuple(x.shape)} and {tuple(y.shape)}")
            return x.reshape(-1, x.shape[-1]), y.reshape(-1, y.shape[-1])
        if x.dim() == 2 and y.dim() == 3:
            return x[:, None, :], y
        if x.dim() == 2 and y.dim() == 2:
            return x, y
        raise ValueError(f"unsupported pair shapes {tuple(x.shape)} and {tuple(y.shape)}")

    def _log_density(self, mean: torch.Tensor, logvar: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """log q(y|x) up to a constant, summed over dimensions (broadcast over frames)."""
        return (-0.5 * ((y - mean) ** 2 / logvar.exp() + logvar)).sum(-1)

    def log_likelihood(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean log q(y|x) over the positive pairs (the estimator maximises it)."""
        x, y = self._pairs(x, y)
        return self._log_density(self.mean(x), self.logvar(x), y).mean()

    def upper_bound(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """CLUB estimate of I(x; y): positive pairs minus shuffled pairs (the variance term cancels).
        In data-parallel training the shuffle is over the global batch: a rank's x meets the y of
        any rank (``models.distributed``)."""
        x, y = self._pairs(x, y)
        mean, logvar = self.mean(x), self.logvar(x)
        everyone = gather_rows(y)
        perm = local_rows(torch.randperm(everyone.shape[0], generator=generator)).to(y.device)
        var = logvar.exp()
        positive = -0.5 * ((y - mean) ** 2 / var).sum(-1)
        negative = -0.5 * ((everyone[perm] - mean) ** 2 / var).sum(-1)
        return (positive - negative).mean()
