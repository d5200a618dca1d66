"""A two-level VQ-VAE (VQ-VAE-2, Razavi et al. 2019) over log-mel frames, 1-D.

Rates (10 ms mel frames in): the bottom codes are at 20 ms (stride 2), the top codes at 40 ms
(stride 2 more). The encoder needs no speaker; the decoder gets a learned speaker embedding,
so decoding the same codes with another speaker converts the voice.

Any length works: the input is padded inside to a multiple of 4 frames (with the normalised
mean, i.e. zeros) and every output is cropped back, so a T-frame input gives ceil(T/2) bottom
codes, ceil(T/4) top codes and exactly T reconstructed frames, for every T >= 1.

Log-mels are normalised inside the model with per-bin statistics kept as buffers (set once
from the training data), so checkpoints carry their own normalisation. With ``speaker_norm`` the
encoders instead read the mel standardised with its own speaker's per-bin statistics, which the
caller passes (``norm``); the decoder's output and the reconstruction loss keep the buffers'.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from models.augment import warp_frequency
from models.cpc import ContrastivePredictor, InfoNCEOutput
from models.quantizer import QuantizerOutput, VectorQuantizer

STRIDE = 4  # total time stride of the top level (2 for the bottom level, 2 more for the top)
# Spacing of the stretch factors the tract search tries, in natural-log units (about 4.5 % apart).
TRACT_STEP = 0.044


def tract_factors(search: float) -> torch.Tensor:
    """The stretch factors a tract search of ``search`` tries (float64): log-uniform from
    1/(1+search) to 1+search, about ``TRACT_STEP`` apart, 1 always among them."""
    if search <= 0:
        return torch.ones(1, dtype=torch.float64)
    span = math.log1p(search)
    half = math.ceil(span / TRACT_STEP)
    return torch.exp(torch.linspace(-span, span, 2 * half + 1, dtype=torch.float64))


@dataclass(frozen=True)
class VQVAE2Config:
    n_mels: int = 80
    channels: int = 128
    res_blocks: int = 2
    res_channels: int = 64
    bottom_dim: int = 64
    top_dim: int = 64
    bottom_codes: int = 256
    top_codes: int = 128
    num_speakers: int = 1
    speaker_dim: int = 32
    decay: float = 0.99
    commitment: float = 0.25
    restart_every: int = 200     # dead-code restart period in training steps (0 = never)
    cpc_steps: int = 0           # contrastive coding of the bottom codes: future steps predicted (0 = off)
    cpc_negatives: int = 17      # negatives per prediction, drawn from the same utterance
    cpc_context: int = 256       # LSTM context size
    classifier_hidden: int = 0   # speaker classifier on log-mels, for the self-cycle's speaker term (0 = none)
    decoder_blocks: int = 0      # > 0: the decoder's residual blocks are this many, dilated 1, 2, 4, ...
                                 # (0: res_blocks undilated ones, as first built)
    speaker_norm: bool = False   # the encoders read each speaker's own standardised log-mel (the caller passes
                                 # that speaker's per-band mean and std as ``norm``), not the training set's


class ResBlock(nn.Module):
    """x + conv1x1(act(conv3(act(x)))); never in place, so the skip input stays intact. The
    kernel-3 convolution may be dilated (it then spans 2 * dilation + 1 frames)."""

    def __init__(self, channels: int, res_channels: int, dilation: int = 1):
        super().__init__()
        self.conv1 = nn.Conv1d(channels, res_channels, 3, padding=dilation, dilation=dilation)
        self.conv2 = nn.Conv1d(res_channels, channels, 1)

    def forward(self, x):
        return x + self.conv2(F.leaky_relu(self.conv1(F.leaky_relu(x, 0.2)), 0.2))


class FrameBlock(nn.Module):
    """x + Linear(ReLU(LayerNorm(x))) on every frame of (B, C, T) on its own (no time context)."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.linear = nn.Linear(channels, channels)

    def forward(self, x):
        frames = x.transpose(1, 2)
        return x + self.linear(F.relu(self.norm(frames))).transpose(1, 2)


def res_stack(channels: int, res_channels: int, n: int, dilated: bool = False) -> nn.Sequential:
    """n residual blocks, then an activation; ``dilated``: dilations 1, 2, 4, ... (a context of
    2 ** (n + 1) - 1 frames instead of 2 n + 1)."""
    blocks = [ResBlock(channels, res_channels, 2 ** i if dilated else 1) for i in range(n)]
    return nn.Sequential(*blocks, nn.LeakyReLU(0.2))


def downsample(cin: int, cout: int) -> nn.Conv1d:
    return nn.Conv1d(cin, cout, 4, stride=2, padding=1)           # L -> L/2 for even L


def upsample(cin: int, cout: int) -> nn.ConvTranspose1d:
    return nn.ConvTranspose1d(cin, cout, 4, stride=2, padding=1)  # L -> 2L


class Encoded(NamedTuple):
    top: QuantizerOutput       # quantized (B, top_dim, T/4) etc.
    bottom: QuantizerOutput    # quantized (B, bottom_dim, T/2) etc.
    prequant: torch.Tensor     # (B, bottom_dim, T/2) bottom encoder output before quantization


class VQVAE2Output(NamedTuple):
    mel: torch.Tensor          # (B, n_mels, T) reconstruction, in log-mel units
    recon_loss: torch.Tensor   # L1 between normalised reconstruction and input
    commit_loss: torch.Tensor  # top + bottom commitment losses
    encoded: Encoded
    cpc: InfoNCEOutput | None  # contrastive coding of the bottom codes (when enabled)


class CycleOutput(NamedTuple):
    converted: torch.Tensor        # (B, n_mels, T) the source's codes decoded in the target voices
    code_loss: torch.Tensor        # re-encoding the converted mel lands on the source's bottom codes
    recon_loss: torch.Tensor       # converting back to the source voice gives the source mel (L1)
    speaker_loss: torch.Tensor | None   # the classifier names the target voice in the converted mel
    classifier_loss: torch.Tensor | None  # the classifier's own loss on the real mels


class MelSpeakerClassifier(nn.Module):
    """Who speaks in a (normalised) log-mel: convolutions, mean over time, a linear layer."""

    def __init__(self, n_mels: int, hidden: int, num_speakers: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv1d(n_mels, hidden, 5, padding=2), nn.LeakyReLU(0.2),
                                 nn.Conv1d(hidden, hidden, 5, stride=2, padding=2), nn.LeakyReLU(0.2))
        self.out = nn.Linear(hidden, num_speakers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.net(x).mean(-1))


class VQVAE2(nn.Module):
    def __init__(self, cfg: VQVAE2Config):
        super().__init__()
        self.cfg = cfg
        c, r, n = cfg.channels, cfg.res_channels, cfg.res_blocks
        self.register_buffer("mel_mean", torch.zeros(cfg.n_mels))
        self.register_buffer("mel_std", torch.ones(cfg.n_mels))
        if cfg.speaker_norm:    # each training speaker's per-bin statistics (``set_speaker_normalization``)
            self.register_buffer("speaker_mean", torch.zeros(cfg.num_speakers, cfg.n_mels))
            self.register_buffer("speaker_std", torch.ones(cfg.num_speakers, cfg.n_mels))
        # the bottom encoder: one strided convolution, then per-frame blocks (a 40 ms window, as in VQ-CPC)
        self.enc_bottom = nn.Sequential(downsample(cfg.n_mels, c), *[FrameBlock(c) for _ in range(max(1, 2 * n))])
        self.enc_top = nn.Sequential(downsample(c, c), nn.LeakyReLU(0.2), nn.Conv1d(c, c, 3, padding=1),
                                     res_stack(c, r, n), nn.Conv1d(c, cfg.top_dim, 1))
        # used by no forward (``unused_parameters``), kept so that checkpoints load and initial weights stay
        self.dec_top = nn.Sequential(nn.Conv1d(cfg.top_dim, c, 3, padding=1), res_stack(c, r, n), upsample(c, c))
        self.pre_bottom = nn.Conv1d(c, cfg.bottom_dim, 1)
        q = dict(decay=cfg.decay, commitment=cfg.commitment, restart_every=cfg.restart_every)
        self.quant_top = VectorQuantizer(cfg.top_codes, cfg.top_dim, **q)
        self.quant_bottom = VectorQuantizer(cfg.bottom_codes, cfg.bottom_dim, **q)
        self.up_top = upsample(cfg.top_dim, cfg.top_dim)
        self.speaker = nn.Embedding(cfg.num_speakers, cfg.speaker_dim)
        self.decoder = nn.Sequential(
            nn.Conv1d(cfg.bottom_dim + cfg.top_dim + cfg.speaker_dim, c, 3, padding=1),
            res_stack(c, r, cfg.decoder_blocks, dilated=True) if cfg.decoder_blocks else res_stack(c, r, n),
            upsample(c, c), nn.LeakyReLU(0.2), nn.Conv1d(c, cfg.n_mels, 3, padding=1))
        self.cpc = (ContrastivePredictor(cfg.bottom_dim, cfg.cpc_context, cfg.cpc_steps, cfg.cpc_negatives)
                    if cfg.cpc_steps > 0 else None)
        self.classifier = (MelSpeakerClassifier(cfg.n_mels, cfg.classifier_hidden, cfg.num_speakers)
                           if cfg.classifier_hidden > 0 else None)

    def unused_parameters(self, cycle: bool = False) -> list[nn.Parameter]:
        """Parameters that no training step uses (data-parallel training must not wait for their
        gradients): ``dec_top``, and the self-cycle's classifier unless the cycle trains (``cycle``)."""
        idle = list(self.dec_top.parameters())
        return idle if cycle or self.classifier is None else idle + list(self.classifier.parameters())

    # ------------------------------------------------------------------ normalisation
    @torch.no_grad()
    def set_normalization(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mel_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.mel_std.copy_(torch.as_tensor(std, dtype=torch.float32).clamp_min(1e-3))

    @torch.no_grad()
    def set_speaker_normalization(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """(num_speakers, n_mels) per-bin mean and std of each training speaker (``speaker_norm``)."""
        self.speaker_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.speaker_std.copy_(torch.as_tensor(std, dtype=torch.float32).clamp_min(1e-3))

    def speaker_norm_of(self, speaker: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The encoder-input statistics of training speakers (B,) ids, or None without ``speaker_norm``."""
        if not self.cfg.speaker_norm:
            return None
        return self.speaker_mean[speaker], self.speaker_std[speaker]

    def normalize(self, mel: torch.Tensor) -> torch.Tensor:
        return (mel - self.mel_mean[:, None]) / self.mel_std[:, None]

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mel_std[:, None] + self.mel_mean[:, None]

    def encoder_input(self, mel: torch.Tensor, norm: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """What the encoders read: without ``speaker_norm`` the training set's normalisation of
        ``mel`` (B, n_mels, T); with it ``mel`` standardised by ``norm`` = (mean, std), each
        (B, n_mels), its speaker's statistics, or by each item's own over time when ``norm`` is None."""
        if not self.cfg.speaker_norm:
            return self.normalize(mel)
        if norm is None:
            norm = mel.mean(-1), mel.std(-1, unbiased=False)
        mean, std = norm
        return (mel - mean[..., None]) / std.clamp_min(1e-3)[..., None]

    # ------------------------------------------------------------------ lengths
    @staticmethod
    def code_lengths(num_frames: int) -> tuple[int, int]:
        """(bottom, top) code counts of a ``num_frames``-frame input: ceil(T/2), ceil(T/4)."""
        return math.ceil(num_frames / 2), math.ceil(num_frames / 4)

    # ------------------------------------------------------------------ encode / decode
    def encode(self, mel: torch.Tensor, norm: tuple[torch.Tensor, torch.Tensor] | None = None) -> Encoded:
        """(B, n_mels, T) log-mel -> codes, cropped to ceil(T/2) bottom and ceil(T/4) top frames
        (``norm``: see ``encoder_input``)."""
        t = mel.shape[-1]
        if t < 1:
            raise ValueError("cannot encode an empty mel")
        enc = self.encode_normalized(F.pad(self.encoder_input(mel, norm), (0, -t % STRIDE)))
        tb, tt = self.code_lengths(t)
        return Encoded(_crop_output(enc.top, tt), _crop_output(enc.bottom, tb), enc.prequant[..., :tb])

    @torch.no_grad()
    def tract_fit(self, mel: torch.Tensor, factors: torch.Tensor, f_min: float, f_max: float,
                  norm: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """How well each frequency stretch of one utterance fits the bottom codebook: (1, n_mels, T)
        log-mel, (K,) factors -> (K,) relative quantisation errors, the sum over the utterance of
        ||z - q||^2 over that of ||z||^2 (z the bottom encoder's output, q its nearest code).

        A speaker whose vocal tract lies outside the training voices' range gives encodings that
        fall between the codes; the stretch that fits best moves its formants back into the range
        the codebook was learnt on (test-time vocal-tract-length normalisation)."""
        if mel.shape[0] != 1:
            raise ValueError(f"tract_fit takes one utterance, got a batch of {mel.shape[0]}")
        warped = warp_frequency(mel.expand(len(factors), -1, -1), factors, f_min, f_max)
        if norm is not None:
            norm = tuple(t.expand(len(factors), -1) for t in norm)
        enc = self.encode(warped, norm)
        z, q = enc.prequant.float(), enc.bottom.quantized.float()
        return ((z - q) ** 2).sum((1, 2)) / (z ** 2).sum((1, 2)).clamp_min(1e-12)

    def encode_normalized(self, x: torch.Tensor) -> Encoded:
        """Normalised mel (``normalize``, B x n_mels x T), T a multiple of STRIDE (padded with
        zeros) -> codes of every frame (T/2 bottom, T/4 top), uncropped. The bottom codes see only
        the bottom encoder's short window, not the top level."""
        h_bottom = self.enc_bottom(x)
        top = self.quant_top(self.enc_top(h_bottom))
        prequant = self.pre_bottom(h_bottom)
        return Encoded(top, self.quant_bottom(prequant), prequant)

    def decode(self, top: torch.Tensor, bottom: torch.Tensor, speaker: torch.Tensor, num_frames: int) -> torch.Tensor:
        """Quantized vectors top (B, top_dim, ceil(T/4)) and bottom (B, bottom_dim, ceil(T/2)),
        speaker ids (B,) -> (B, n_mels, T) log-mel in the target speaker's voice."""
        tb, tt = self.code_lengths(num_frames)
        if top.shape[-1] != tt or bottom.shape[-1] != tb:
            raise ValueError(f"{num_frames} frames need {tt} top and {tb} bottom codes, "
                             f"got {top.shape[-1]} and {bottom.shape[-1]}")
        padded = num_frames + (-num_frames % STRIDE)
        # Pad the code sequences by repeating their last code up to the padded length.
        top = F.pad(top, (0, padded // 4 - tt), mode="replicate") if padded // 4 > tt else top
        bottom = F.pad(bottom, (0, padded // 2 - tb), mode="replicate") if padded // 2 > tb else bottom
        spk = self.speaker(speaker)[:, :, None].expand(-1, -1, bottom.shape[-1])
        x = torch.cat([bottom, self.up_top(top), spk], 1)
        return self.denormalize(self.decoder(x)[..., :num_frames])

    def decode_codes(self, top_ids: torch.Tensor, bottom_ids: torch.Tensor, speaker: torch.Tensor,
                     num_frames: int) -> torch.Tensor:
        """Code ids (B, Tt), (B, Tb) -> (B, n_mels, num_frames) log-mel."""
        top = self.quant_top.lookup(top_ids).transpose(1, 2)
        bottom = self.quant_bottom.lookup(bottom_ids).transpose(1, 2)
        return self.decode(top, bottom, speaker, num_frames)

    # ------------------------------------------------------------------ training forward
    def forward(self, mel: torch.Tensor, speaker: torch.Tensor,
                norm: tuple[torch.Tensor, torch.Tensor] | None = None) -> VQVAE2Output:
        """Encode ``mel`` (``norm``: see ``encoder_input``; by default the training speaker's own
        statistics) and reconstruct it from its codes and the speaker."""
        enc = self.encode(mel, norm if norm is not None else self.speaker_norm_of(speaker))
        recon = self.decode(enc.top.quantized, enc.bottom.quantized, speaker, mel.shape[-1])
        recon_loss = F.l1_loss(self.normalize(recon), self.normalize(mel))
        cpc = self.cpc(enc.bottom.quantized) if self.cpc is not None else None
        return VQVAE2Output(recon, recon_loss, enc.top.loss + enc.bottom.loss, enc, cpc)


    # ------------------------------------------------------------------ self-cycle consistency
    def cycle(self, mel: torch.Tensor, enc: Encoded, speaker: torch.Tensor, target: torch.Tensor) -> CycleOutput:
        """Convert the batch to the ``target`` speakers, encode the result again and convert it
        back: the re-encoded bottom codes must match the source's (the units carry no voice) and
        the round trip must give the source mel back. The codebooks are not updated by converted
        mels (the quantizers run in eval mode; the straight-through gradient still flows).

        The re-encoding judges the converted mel with the encoder as it is: its weights get no
        gradient from it, only the decoder (and, through the first decoding, the source's codes)
        does. With the encoder trained through the re-encoding as well, the demo run diverged (its
        losses reached 1e25 by step 3000)."""
        t = mel.shape[-1]
        converted = self.decode(enc.top.quantized, enc.bottom.quantized, target, t)
        quantizers = (self.quant_top, self.quant_bottom)
        modes = [q.training for q in quantizers]
        params = [p for p in self.parameters() if p.requires_grad]
        for q in quantizers:
            q.eval()
        for p in params:
            p.requires_grad_(False)
        try:
            again = self.encode(converted, self.speaker_norm_of(target))
        finally:
            for p in params:
                p.requires_grad_(True)
            for q, mode in zip(quantizers, modes):
                q.train(mode)
        code_loss = F.mse_loss(again.prequant, enc.bottom.quantized.detach())
        back = self.decode(again.top.quantized, again.bottom.quantized, speaker, t)
        recon_loss = F.l1_loss(self.normalize(back), self.normalize(mel))
        speaker_loss = classifier_loss = None
        if self.classifier is not None:
            classifier_loss = F.cross_entropy(self.classifier(self.normalize(mel)), speaker)
            # the converted mel is judged by the classifier as it is, without training it on fakes
            frozen = {name: p.detach() for name, p in self.classifier.named_parameters()}
            logits = torch.func.functional_call(self.classifier, frozen, (self.normalize(converted),))
            speaker_loss = F.cross_entropy(logits, target)
        return CycleOutput(converted, code_loss, recon_loss, speaker_loss, classifier_loss)


def _crop_output(out: QuantizerOutput, length: int) -> QuantizerOutput:
    return out._replace(quantized=out.quantized[..., :length], ids=out.ids[..., :length])

