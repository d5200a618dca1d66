"""Vector quantizer with an exponential-moving-average codebook (van den Oord et al. 2017,
Razavi et al. 2019), plus the two things small corpora need: codebook initialisation from the
first batch of encoder outputs and restarts of dead codes from random encoder outputs.

Pure tensors: no I/O, no devices. Inputs are channels-first ``(batch, dim, time)`` like the
convolutions around it. The codebook receives no gradient (EMA updates it in training mode);
the encoder gets the commitment loss and the straight-through gradient.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from models.distributed import all_reduce_, broadcast_, gather_rows

RESTART_MIN_HITS = 1    # a code hit fewer times than this since the last restart check is dead


class QuantizerOutput(NamedTuple):
    quantized: torch.Tensor      # (B, D, T) code vectors with a straight-through gradient to the input
    ids: torch.Tensor            # (B, T) int64 code indices
    loss: torch.Tensor           # scalar commitment loss, already weighted by ``commitment``
    perplexity: torch.Tensor     # scalar exp(entropy) of the batch's code histogram
    codes_in_use: torch.Tensor   # scalar number of distinct codes in the batch


class VectorQuantizer(nn.Module):
    """EMA vector quantizer.

    ``restart_every``: every that many training forwards, codes chosen fewer than
    ``restart_min_hits`` times since the last check are moved onto random encoder outputs of the
    current batch (0 disables restarts). All state (codebook, EMA statistics, hit counters,
    forward counter) lives in buffers, so a resumed run continues exactly. Data-parallel training
    (``models.distributed``) sums the EMA statistics over the ranks and initialises and restarts
    codes from every rank's encoder outputs, so each rank's codebook is the one-process codebook.
    """

    def __init__(self, num_codes: int, dim: int, decay: float = 0.99, commitment: float = 0.25,
                 eps: float = 1e-5, restart_every: int = 0, restart_min_hits: int = RESTART_MIN_HITS,
                 init_from_data: bool = True):
        super().__init__()
        self.num_codes, self.dim = int(num_codes), int(dim)
        self.decay, self.commitment, self.eps = float(decay), float(commitment), float(eps)
        self.restart_every, self.restart_min_hits = int(restart_every), int(restart_min_hits)
        self.init_from_data = bool(init_from_data)
        embed = torch.empty(self.num_codes, self.dim).uniform_(-1.0 / self.num_codes, 1.0 / self.num_codes)
        self.register_buffer("embed", embed)
        # cluster_size starts at 1 with embed_avg = embed, so an unused code keeps its vector
        # (starting the EMA counts at 0 would divide by ~eps and blow unused codes up).
        self.register_buffer("cluster_size", torch.ones(self.num_codes))
        self.register_buffer("embed_avg", embed.clone())
        self.register_buffer("hits", torch.zeros(self.num_codes))
        self.register_buffer("forwards", torch.zeros((), dtype=torch.long))

    # ------------------------------------------------------------------ lookup
    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        """(N, D) -> (N,) index of the nearest code (squared Euclidean distance)."""
        dist = (flat.pow(2).sum(1, keepdim=True) - 2.0 * flat @ self.embed.t()
                + self.embed.pow(2).sum(1)[None, :])
        return dist.argmin(1)

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        """Code ids (...,) -> code vectors (..., D)."""
        return F.embedding(ids, self.embed)

    # ------------------------------------------------------------------ forward
    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        # Distances and EMA statistics in float32 even inside a bf16 autocast region.
        with torch.autocast(device_type=z.device.type, enabled=False):
            return self._quantize(z.float())

    def _quantize(self, z: torch.Tensor) -> QuantizerOutput:
        b, d, t = z.shape
        if d != self.dim:
            raise ValueError(f"quantizer expects {self.dim} channels, got {d}")
        flat = z.permute(0, 2, 1).reshape(-1, d)
        if self.training:
            self._maybe_initialise(flat.detach())
        ids = self.nearest(flat.detach())
        onehot = F.one_hot(ids, self.num_codes).type(flat.dtype)
        counts = onehot.sum(0)
        if self.training:
            counts = self._ema_update(flat.detach(), counts, onehot)   # every rank's batch
        quant = self.lookup(ids)
        loss = self.commitment * F.mse_loss(flat, quant.detach())
        if flat.requires_grad:
            quant = flat + (quant - flat).detach()      # straight-through estimator
        # (without a gradient the rows stay exact codebook rows: equal codes, equal vectors)
        return QuantizerOutput(quant.view(b, t, d).permute(0, 2, 1), ids.view(b, t), loss,
                               code_perplexity(counts), (counts > 0).sum())

    # ------------------------------------------------------------------ training updates
    @torch.no_grad()
    def _maybe_initialise(self, flat: torch.Tensor) -> None:
        if self.init_from_data and int(self.forwards) == 0:
            self._reset_codes(torch.arange(self.num_codes, device=flat.device), flat)

    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, counts: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        """Move the codes toward the batch's vectors; returns the code counts of the global batch."""
        counts = all_reduce_(counts.clone())
        sums = all_reduce_(onehot.t() @ flat)
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_avg.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        # Laplace smoothing keeps rarely used codes finite.
        n = self.cluster_size.sum()
        size = (self.cluster_size + self.eps) / (n + self.num_codes * self.eps) * n
        self.embed.copy_(self.embed_avg / size[:, None])
        self.hits.add_(counts)
        self.forwards.add_(1)
        if self.restart_every and int(self.forwards) % self.restart_every == 0:
            self.restart_dead_codes(flat)
        return counts

    @torch.no_grad()
    def restart_dead_codes(self, flat: torch.Tensor) -> int:
        """Move codes hit fewer than ``restart_min_hits`` times since the last check onto random
        rows of ``flat`` (N, D); reset the hit counters. Returns the number restarted."""
        dead = torch.nonzero(self.hits < self.restart_min_hits).flatten()
        self.hits.zero_()
        if dead.numel():
            self._reset_codes(dead, flat)
        return int(dead.numel())

    @torch.no_grad()
    def _reset_codes(self, which: torch.Tensor, flat: torch.Tensor) -> None:
        # Sample with replacement only when the batch has fewer vectors than codes to fill;
        # a tiny jitter keeps duplicated samples from being identical codes.
        flat = gather_rows(flat)
        n = flat.shape[0]
        if n >= which.numel():
            rows = torch.randperm(n, device=flat.device)[: which.numel()]
        else:
            rows = torch.randint(0, n, (which.numel(),), device=flat.device)
        new = flat[rows] + 1e-3 * flat.std() * torch.randn_like(flat[rows])
        new = broadcast_(new.contiguous())  # every rank adopts rank 0's choice
        self.embed[which] = new
        self.embed_avg[which] = new
        self.cluster_size[which] = 1.0


def code_perplexity(counts: torch.Tensor) -> torch.Tensor:
    """exp(entropy) of a code histogram: how many equally used codes would give its entropy."""
    probs = counts / counts.sum().clamp_min(1)
    return torch.exp(-(probs * torch.log(probs + 1e-10)).sum())
