"""VQMIVC (Wang et al., Interspeech 2021): content, speaker and pitch kept apart, for one-shot
voice conversion. Pure tensors; the mutual-information estimators are in ``models.mi``.

* Content encoder (bshall's VQ-CPC): a stride-2 convolution (10 ms mel frames -> 20 ms), blocks
  of LayerNorm/ReLU/Linear, a linear map to ``code_dim``, an EMA vector quantizer; contrastive
  predictive coding of the codes with negatives from the same utterance.
* Speaker encoder: a stride-2 convolution over the log-mel, residual convolutions (each block
  halves the time axis), a mean over time and two linear layers: any utterance, of any length,
  gives one vector.
* Decoder: content codes, the speaker vector and the pitch (per 10 ms frame: log-F0 normalised
  per utterance, 0 where unvoiced, and a voiced flag) -> dilated residual convolutions at the
  20 ms content rate (the speaker vector added again in every block) -> one x2 transposed
  convolution -> log-mel at 10 ms (with the 10 ms pitch), optionally refined by a residual
  post-net.

Any length works: a T-frame input is padded inside to an even length and every output is cropped
back, so it gives ceil(T/2) content codes and decodes to exactly T frames, for every T >= 1.
Log-mels are normalised inside with per-bin statistics kept as buffers (set from the training
data), so checkpoints carry their own normalisation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from models.cpc import ContrastivePredictor, InfoNCEOutput
from models.quantizer import QuantizerOutput, VectorQuantizer
from models.vqvae2 import VQVAE2

STRIDE = 2            # mel frames per content code (20 ms)
PITCH_CHANNELS = 2    # normalised log-F0 (0 where unvoiced), voiced flag


@dataclass(frozen=True)
class VQMIVCConfig:
    n_mels: int = 80
    channels: int = 256
    blocks: int = 4
    code_dim: int = 64
    codes: int = 512
    decay: float = 0.99
    restart_every: int = 100
    cpc_steps: int = 6
    cpc_negatives: int = 10
    cpc_context: int = 256
    speaker_channels: int = 128
    speaker_blocks: int = 3
    speaker_dim: int = 64
    decoder_channels: int = 256
    decoder_blocks: int = 4
    postnet_layers: int = 0


class ContentEncoder(nn.Module):
    """(B, n_mels, T) normalised mel, T even -> (B, code_dim, T/2) continuous content vectors."""

    def __init__(self, n_mels: int, channels: int, blocks: int, code_dim: int):
        super().__init__()
        self.conv = nn.Conv1d(n_mels, channels, 4, stride=2, padding=1)
        layers: list[nn.Module] = []
        for _ in range(blocks):
            layers += [nn.LayerNorm(channels), nn.ReLU(), nn.Linear(channels, channels)]
        layers += [nn.LayerNorm(channels), nn.ReLU(), nn.Linear(channels, code_dim)]
        self.frames = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.frames(self.conv(x).transpose(1, 2)).transpose(1, 2)


class ConvBlock(nn.Module):
    """x + conv1x1(act(conv3(act(x)))), with an optional dilation."""

    def __init__(self, channels: int, dilation: int = 1):
        super().__init__()
        self.conv1 = nn.Conv1d(channels, channels, 3, padding=dilation, dilation=dilation)
        self.conv2 = nn.Conv1d(channels, channels, 1)

    def forward(self, x):
        return x + self.conv2(F.leaky_relu(self.conv1(F.leaky_relu(x, 0.2)), 0.2))


class SpeakerEncoder(nn.Module):
    """(B, n_mels, T) normalised mel, any T >= 1 -> (B, speaker_dim)."""

    def __init__(self, n_mels: int, channels: int, blocks: int, speaker_dim: int):
        super().__init__()
        self.inp = nn.Conv1d(n_mels, channels, 4, stride=2, padding=1)     # 20 ms
        self.blocks = nn.ModuleList(ConvBlock(channels) for _ in range(blocks))
        self.out = nn.Sequential(nn.Linear(channels, channels), nn.LeakyReLU(0.2), nn.Linear(channels, speaker_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(F.pad(x, (0, x.shape[-1] % 2)))
        for block in self.blocks:
            h = F.avg_pool1d(block(h), 2, ceil_mode=True)    # halves time; a 1-frame input stays 1 frame
        return self.out(F.leaky_relu(h, 0.2).mean(-1))


class Decoder(nn.Module):
    """Works at the content rate (20 ms) and upsamples once: content (B, code_dim, Tc), speaker
    (B, S), pitch (B, 2, 2 Tc) -> (B, n_mels, 2 Tc) normalised mel, before and after the
    post-net. The pitch of the two 10 ms frames under each content frame enters with it, and the
    10 ms pitch again at the output layer; the speaker vector is added in every block."""

    def __init__(self, cfg: VQMIVCConfig):
        super().__init__()
        c = cfg.decoder_channels
        self.inp = nn.Conv1d(cfg.code_dim + cfg.speaker_dim + STRIDE * PITCH_CHANNELS, c, 3, padding=1)
        self.blocks = nn.ModuleList(ConvBlock(c, 2 ** (i % 4)) for i in range(cfg.decoder_blocks))
        self.speaker = nn.ModuleList(nn.Linear(cfg.speaker_dim, c) for _ in range(cfg.decoder_blocks))
        self.up = nn.ConvTranspose1d(c, c, 2 * STRIDE, stride=STRIDE, padding=STRIDE // 2)   # Tc -> 2 Tc
        self.out = nn.Conv1d(c + PITCH_CHANNELS, cfg.n_mels, 3, padding=1)
        postnet: list[nn.Module] = []
        for i in range(cfg.postnet_layers):
            last = i == cfg.postnet_layers - 1
            postnet.append(nn.Conv1d(cfg.n_mels if i == 0 else c, cfg.n_mels if last else c, 5, padding=2))
            if not last:
                postnet.append(nn.Tanh())
        self.postnet = nn.Sequential(*postnet) if postnet else None

    def forward(self, content, speaker, pitch) -> tuple[torch.Tensor, torch.Tensor]:
        b, channels, t = pitch.shape
        stacked = pitch.reshape(b, channels, t // STRIDE, STRIDE).transpose(2, 3).reshape(b, channels * STRIDE, -1)
        h = self.inp(torch.cat([content, speaker[:, :, None].expand(-1, -1, content.shape[-1]), stacked], 1))
        for block, proj in zip(self.blocks, self.speaker):
            h = block(h + proj(speaker)[:, :, None])
        h = F.leaky_relu(self.up(F.leaky_relu(h, 0.2)), 0.2)
        pre = self.out(torch.cat([h, pitch], 1))
        post = pre + self.postnet(pre) if self.postnet is not None else pre
        return pre, post


class ContentEncoded(NamedTuple):
    quant: QuantizerOutput     # quantized (B, code_dim, Tc), ids (B, Tc), commitment loss, perplexity...
    prequant: torch.Tensor     # (B, code_dim, Tc) encoder output before quantization


class VQMIVCOutput(NamedTuple):
    mel: torch.Tensor          # (B, n_mels, T) reconstruction (after the post-net), log-mel units
    recon_loss: torch.Tensor   # L1 of the final output against the input (normalised units)
    recon_pre: torch.Tensor    # L1 before the post-net (equal to recon_loss without one)
    commit_loss: torch.Tensor  # unweighted commitment loss
    encoded: ContentEncoded
    speaker: torch.Tensor      # (B, speaker_dim)
    cpc: InfoNCEOutput | None


class VQMIVC(nn.Module):
    def __init__(self, cfg: VQMIVCConfig):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("mel_mean", torch.zeros(cfg.n_mels))
        self.register_buffer("mel_std", torch.ones(cfg.n_mels))
        self.content = ContentEncoder(cfg.n_mels, cfg.channels, cfg.blocks, cfg.code_dim)
        # commitment 1: the trainer weights it
        self.quantizer = VectorQuantizer(cfg.codes, cfg.code_dim, decay=cfg.decay, commitment=1.0,
                                         restart_every=cfg.restart_every)
        self.cpc = (ContrastivePredictor(cfg.code_dim, cfg.cpc_context, cfg.cpc_steps, cfg.cpc_negatives)
                    if cfg.cpc_steps > 0 else None)
        self.speaker = SpeakerEncoder(cfg.n_mels, cfg.speaker_channels, cfg.speaker_blocks, cfg.speaker_dim)
        self.decoder = Decoder(cfg)

    # ------------------------------------------------------------------ normalisation
    # The VQ-VAE-2's per-bin log-mel normalisation, on the same two buffers (mel_mean, mel_std).
    set_normalization = VQVAE2.set_normalization
    normalize = VQVAE2.normalize
    denormalize = VQVAE2.denormalize

    @staticmethod
    def code_length(num_frames: int) -> int:
        """Content codes of a ``num_frames``-frame input: ceil(T/2)."""
        return math.ceil(num_frames / STRIDE)

    # ------------------------------------------------------------------ content
    def encode(self, mel: torch.Tensor) -> ContentEncoded:
        """(B, n_mels, T) log-mel -> content codes cropped to ceil(T/2) frames."""
        t = mel.shape[-1]
        if t < 1:
            raise ValueError("cannot encode an empty mel")
        enc = self.encode_normalized(F.pad(self.normalize(mel), (0, -t % STRIDE)))
        n = self.code_length(t)
        q = enc.quant
        return ContentEncoded(q._replace(quantized=q.quantized[..., :n], ids=q.ids[..., :n]), enc.prequant[..., :n])

    def encode_normalized(self, x: torch.Tensor) -> ContentEncoded:
        """Normalised mel (B, n_mels, T), T even (padded with zeros) -> codes of every frame, uncropped."""
        prequant = self.content(x)
        return ContentEncoded(self.quantizer(prequant), prequant)

    def context(self, codes: torch.Tensor) -> torch.Tensor | None:
        """(B, code_dim, Tc) code vectors -> (B, Tc, cpc_context) CPC context vectors (None without CPC)."""
        return self.cpc.context(codes) if self.cpc is not None else None

    # ------------------------------------------------------------------ speaker
    def speaker_embedding(self, mel: torch.Tensor) -> torch.Tensor:
        """(B, n_mels, T) log-mel, any T >= 1 -> (B, speaker_dim)."""
        if mel.shape[-1] < 1:
            raise ValueError("cannot embed an empty mel")
        return self.speaker(self.normalize(mel))

    # ------------------------------------------------------------------ decoder
    def _decode(self, codes: torch.Tensor, speaker: torch.Tensor, pitch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised (pre, post) mels of exactly pitch.shape[-1] frames."""
        t = pitch.shape[-1]
        if codes.shape[-1] != self.code_length(t):
            raise ValueError(f"{t} frames need {self.code_length(t)} content codes, got {codes.shape[-1]}")
        if pitch.shape[1] != PITCH_CHANNELS:
            raise ValueError(f"pitch must have {PITCH_CHANNELS} channels (log-F0, voiced), got {pitch.shape[1]}")
        pre, post = self.decoder(codes, speaker, F.pad(pitch, (0, -t % STRIDE)))
        return pre[..., :t], post[..., :t]

    def decode(self, codes: torch.Tensor, speaker: torch.Tensor, pitch: torch.Tensor) -> torch.Tensor:
        """Code vectors (B, code_dim, ceil(T/2)), speaker vectors (B, S), pitch (B, 2, T) ->
        (B, n_mels, T) log-mel in that speaker's voice."""
        return self.denormalize(self._decode(codes, speaker, pitch)[1])

    def decode_ids(self, ids: torch.Tensor, speaker: torch.Tensor, pitch: torch.Tensor) -> torch.Tensor:
        """Code ids (B, ceil(T/2)) -> (B, n_mels, T) log-mel."""
        return self.decode(self.quantizer.lookup(ids).transpose(1, 2), speaker, pitch)

    # ------------------------------------------------------------------ training forward
    def forward(self, mel: torch.Tensor, pitch: torch.Tensor, content_mel: torch.Tensor | None = None) -> VQMIVCOutput:
        """Reconstruct (B, n_mels, T) from its own content, speaker vector and pitch (B, 2, T).
        ``content_mel`` (same shape), when given, is what the content encoder sees instead: a
        speaker-perturbed copy (``models.augment``), so the codes gain nothing from the speaker."""
        if pitch.shape[-1] != mel.shape[-1]:
            raise ValueError(f"pitch has {pitch.shape[-1]} frames, the mel {mel.shape[-1]}")
        if content_mel is not None and content_mel.shape != mel.shape:
            raise ValueError(f"content_mel has shape {tuple(content_mel.shape)}, the mel {tuple(mel.shape)}")
        enc = self.encode(mel if content_mel is None else content_mel)
        speaker = self.speaker_embedding(mel)
        pre, post = self._decode(enc.quant.quantized, speaker, pitch)
        target = self.normalize(mel)
        recon, recon_pre = F.l1_loss(post, target), F.l1_loss(pre, target)
        # (an input too short for the prediction steps, e.g. a held-out utterance, has no InfoNCE)
        cpc = (self.cpc(enc.quant.quantized) if self.cpc is not None and enc.quant.ids.shape[-1] > self.cfg.cpc_steps
               else None)
        return VQMIVCOutput(self.denormalize(post), recon, recon_pre, enc.quant.loss, enc, speaker, cpc)
