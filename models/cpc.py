"""Contrastive predictive coding (van den Oord et al. 2018) on a sequence of frame vectors, as
used by bshall's VQ-CPC and by VQMIVC's content encoder. Pure tensors.

InfoNCE: an autoregressive context network (a one-layer LSTM) reads the frames z_1..z_t; for
each step k = 1..K a linear map of the context c_t predicts z_{t+k}; the prediction must pick
the true z_{t+k} out of itself plus ``negatives`` frames drawn at random from the same
utterance. Negatives from the same utterance share its speaker and channel, so the frames can
only be told apart by what is said: the loss pushes speaker information out of the codes.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from models.distributed import global_rows, local_rows


class InfoNCEOutput(NamedTuple):
    loss: torch.Tensor         # mean over steps of the cross-entropy of picking the true future frame
    accuracy: torch.Tensor     # share of predictions whose best candidate is the true frame


class ContrastivePredictor(nn.Module):
    """Context network + one linear predictor per future step, with the InfoNCE loss."""

    def __init__(self, dim: int, context: int, steps: int, negatives: int):
        super().__init__()
        if steps < 1 or negatives < 1:
            raise ValueError("CPC needs at least one prediction step and one negative")
        self.steps, self.negatives = int(steps), int(negatives)
        self.rnn = nn.LSTM(dim, context, batch_first=True)
        self.predictors = nn.ModuleList(nn.Linear(context, dim) for _ in range(self.steps))

    def context(self, z: torch.Tensor) -> torch.Tensor:
        """(B, D, T) frames -> (B, T, C) context vectors (c_t sees z_1..z_t only)."""
        return self.rnn(z.transpose(1, 2))[0]

    def forward(self, z: torch.Tensor, generator: torch.Generator | None = None) -> InfoNCEOutput:
        """InfoNCE of (B, D, T) frames; needs T > steps."""
        b, _, t = z.shape
        if t <= self.steps:
            raise ValueError(f"CPC with {self.steps} prediction steps needs more than {self.steps} frames, got {t}")
        c = self.context(z)
        losses, correct, total = [], 0.0, 0
        for k, predictor in enumerate(self.predictors, 1):
            n = t - k
            pred = predictor(c[:, :n])                               # (B, n, D) predictions of z_{t+k}
            # every frame of the utterance scored against every prediction in one product; the
            # candidates' scores are then picked out (cheaper than gathering (B, n, 1 + N, D) vectors)
            scores = torch.matmul(pred, z)                           # (B, n, T)
            positive = scores.diagonal(offset=k, dim1=1, dim2=2)     # (B, n): z_{i+k} for prediction i
            # negatives: random frames of the same utterance (any position), per prediction, drawn
            # for the global batch (a data-parallel rank keeps its rows: models.distributed)
            idx = local_rows(torch.randint(0, t, (global_rows(b), n, self.negatives), device=z.device,
                                           generator=generator))
            logits = torch.cat([positive[..., None], torch.gather(scores, 2, idx)], 2)   # (B, n, 1 + N)
            labels = torch.zeros(b * n, dtype=torch.long, device=z.device)
            losses.append(F.cross_entropy(logits.reshape(b * n, -1), labels))
            correct += float((logits.argmax(-1) == 0).sum())
            total += b * n
        return InfoNCEOutput(torch.stack(losses).mean(), torch.tensor(correct / max(total, 1)))
