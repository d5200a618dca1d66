"""Configs are data: YAML presets (tiny, demo, full) plus ``key=value`` overrides, checked
against one typed schema.

The sections below are the only description of the config: every key, its type and its allowed
range (the machinery that checks them is ``pipeline.core.schema``). They hold no defaults: each
preset states every key (a missing one is an error), so a value lives in exactly one place, the
preset, and every stage reads it as a typed attribute (``config.vqvae.train.steps``). Overrides
use dotted keys (``vqvae.train.steps=200``) parsed as YAML (``true``, ``1e-3``, ``[5,4,4,2]``;
``pipeline.core.overrides``) and are applied before the check, so a typo, a value of the wrong
type or out of range is one line naming the key, the value and what is allowed.

What is the same in every preset and no experiment varies is not a key but a named constant
beside the code that uses it (the feature front end's sample rate, floor and peak, the vocoder's
loss weights, the VQ-VAE's learning-rate schedule, ...).

Checkpoints store ``config.to_dict()`` (plain YAML types); ``config_from_checkpoint`` checks it
again when a later stage reads a run's own config. A key added to the schema after a checkpoint
was written takes the value its ``key(added=..., was=...)`` states, which reproduces the
behaviour before it existed; a stored key the schema no longer knows (a retired switch) is
dropped, and the checkpoint's weights then say whether the model still fits.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Literal

import yaml

from pipeline.core.errors import UserError
from pipeline.core.overrides import apply_overrides, read_yaml_file
from pipeline.core.schema import (LANGUAGE, MAX_BATCH, MAX_CODES, MAX_COUNT, MAX_DEPTH, MAX_FRAMES, MAX_GEOMETRIC,
                                  MAX_SAMPLES, MAX_SCALE, MAX_SEED, MAX_STEPS, MAX_WIDTH, Section, _bad, key)
from pipeline.core.threads import MAX_THREADS

PRESET_DIR = Path(__file__).resolve().parents[1] / "configs"
PRESETS = ("tiny", "demo", "full")
NYQUIST_HZ = 8000               # half the challenge's 16 kHz (pipeline.contract.names.SAMPLE_RATE)


@dataclass(frozen=True)
class Runtime(Section):
    threads: int = key(ge=0, le=MAX_THREADS)      # torch intra-op threads; 0 = the thread policy chooses
    device: str = key()                           # auto | cpu | cuda | cuda:N
    amp: bool = key()                             # bfloat16 autocast on CUDA

    def check(self, where):
        if not (self.device in ("auto", "cpu", "cuda") or (self.device.startswith("cuda:")
                                                            and self.device[5:].isdigit())):
            raise _bad(f"{where}.device", self.device, "auto, cpu, cuda or cuda:N")


@dataclass(frozen=True)
class Features(Section):
    """The log-mel front end (16 kHz, from 0 Hz, floor and peak: ``pipeline.features``)."""
    n_fft: int = key(ge=16, le=MAX_SAMPLES)
    win_length: int = key(ge=16, le=MAX_SAMPLES)
    hop_length: int = key(ge=1, le=MAX_SAMPLES)
    n_mels: int = key(ge=1, le=MAX_WIDTH)
    f_max: float = key(gt=0, le=NYQUIST_HZ)

    def check(self, where):
        if self.win_length > self.n_fft:
            raise _bad(f"{where}.win_length", self.win_length, f"at most n_fft ({self.n_fft})")
        if (self.n_fft - self.hop_length) % 2:
            raise _bad(f"{where}.hop_length", self.hop_length, "n_fft - hop_length even (symmetric padding)")


_SCALE_BASE = re.compile(r"tiny|demo|[1-9][0-9]*")
MAX_REAL_MINUTES = 600.0


def split_scale(value) -> tuple[str, float | None, bool]:
    """A corpus scale's text as (base, minutes of each real unit actor or None, real only):
    "demo:real12" -> ("demo", 12.0, False), "demo:realonly30" -> ("demo", 30.0, True) (no
    synthetic speaker in train/unit), "3" -> ("3", None, False). The one reader of the suffix (the
    config checks it here, ``pipeline.corpus.plan.scale_from`` builds the scale from it); a
    ``UserError`` for a suffix after tiny or minutes outside (0, MAX_REAL_MINUTES]."""
    base, sep, real = str(value).partition(":real")
    if not sep:
        return base, None, False
    only = real.startswith("only")
    try:
        minutes = float(real[4:] if only else real)
    except ValueError:
        minutes = math.nan
    if base == "tiny" or not 0 < minutes <= MAX_REAL_MINUTES:     # NaN fails the comparison too
        raise UserError(f"corpus scale {value!r}: ':realM' or ':realonlyM' needs demo or N before it and "
                        f"minutes in (0, {MAX_REAL_MINUTES:g}]")
    return base, minutes, only


@dataclass(frozen=True)
class Corpus(Section):
    # demo corpus size: tiny, demo or N x demo; "demo:real12" (or "N:realM"): M minutes of each
    # real unit actor instead of 4; "demo:realonly30": the same without synthetic unit speakers
    # (pipeline.corpus.plan.scale_from reads it)
    scale: str | int = key(ge=1, le=MAX_SCALE)

    def check(self, where):
        if isinstance(self.scale, str):
            try:
                base = split_scale(self.scale)[0]
            except UserError:
                base = ""
            if not _SCALE_BASE.fullmatch(base):
                raise _bad(f"{where}.scale", self.scale, "tiny, demo, a positive integer N, or demo/N followed by :realM or :realonlyM")


@dataclass(frozen=True)
class VQVAEModel(Section):
    channels: int = key(ge=1, le=MAX_WIDTH)
    res_blocks: int = key(ge=0, le=MAX_DEPTH)
    res_channels: int = key(ge=1, le=MAX_WIDTH)
    code_dim: int = key(ge=1, le=MAX_WIDTH, was="vqvae.model.bottom_dim")   # code vector size of both levels
    bottom_codes: int = key(ge=2, le=MAX_CODES)
    top_codes: int = key(ge=2, le=MAX_CODES)
    speaker_dim: int = key(ge=1, le=MAX_WIDTH)
    cpc_steps: int = key(ge=0, le=MAX_FRAMES)     # contrastive coding of the bottom codes (0 = no CPC module)
    cpc_negatives: int = key(ge=1, le=MAX_WIDTH)
    cpc_context: int = key(ge=1, le=MAX_WIDTH)
    classifier_hidden: int = key(ge=0, le=MAX_WIDTH)  # log-mel speaker classifier for the self-cycle (0 = none)
    decoder_blocks: int = key(ge=0, le=MAX_GEOMETRIC)  # dilated residual blocks of the decoder (0 = res_blocks plain ones)
    speaker_norm: bool = key()                    # encoders read each speaker's own standardised log-mel


@dataclass(frozen=True)
class VQVAELoss(Section):
    """Weights of the unit systems' objectives beside the L1 reconstruction (weight 1)."""
    cpc: float = key(ge=0)                        # InfoNCE on the bottom (VQMIVC: content) codes
    cycle_codes: float = key(ge=0)                # self-cycle: converted mel re-encodes to the source's codes
    cycle_recon: float = key(ge=0)                # self-cycle: converting back gives the source mel
    cycle_speaker: float = key(ge=0)              # self-cycle: the converted mel sounds like the target voice

    @property
    def cycle(self) -> bool:
        return self.cycle_codes > 0 or self.cycle_recon > 0 or self.cycle_speaker > 0


@dataclass(frozen=True)
class Quantizer(Section):
    """The EMA codebooks of both unit systems."""
    decay: float = key(ge=0, lt=1)
    commitment: float = key(ge=0)
    restart_every: int = key(ge=0, le=MAX_STEPS)


@dataclass(frozen=True)
class TrainSchedule(Section):
    steps: int = key(ge=1, le=MAX_STEPS)
    batch_size: int = key(ge=1, le=MAX_BATCH)
    segment_frames: int = key(ge=8, le=MAX_FRAMES)
    lr: float = key(gt=0)
    val_fraction: float = key(ge=0, lt=1)
    val_max_utterances: int = key(ge=0, le=MAX_COUNT)
    checkpoint_every: int = key(ge=1, le=MAX_STEPS)   # a checkpoint, and validation, every this many steps
    log_every: int = key(ge=1, le=MAX_STEPS)


@dataclass(frozen=True)
class VQVAE(Section):
    languages: list[LANGUAGE] = key(min_items=1)
    model: VQVAEModel = key()
    quantizer: Quantizer = key()
    loss: VQVAELoss = key()
    train: TrainSchedule = key()

    def check(self, where):
        if self.loss.cpc > 0 and self.model.cpc_steps == 0:
            raise _bad(f"{where}.model.cpc_steps", 0, "at least 1 when vqvae.loss.cpc > 0")
        if self.loss.cycle_speaker > 0 and self.model.classifier_hidden == 0:
            raise _bad(f"{where}.model.classifier_hidden", 0, "at least 1 when vqvae.loss.cycle_speaker > 0")
        if self.model.cpc_steps and self.train.segment_frames // 2 <= self.model.cpc_steps:
            raise _bad(f"{where}.train.segment_frames", self.train.segment_frames,
                       f"more than 2 x vqvae.model.cpc_steps ({self.model.cpc_steps}) frames")


@dataclass(frozen=True)
class VQMIVCModel(Section):
    channels: int = key(ge=1, le=MAX_WIDTH)       # content encoder width (conv + LayerNorm/ReLU/Linear blocks)
    blocks: int = key(ge=0, le=MAX_DEPTH)         # LayerNorm/ReLU/Linear blocks of the content encoder
    code_dim: int = key(ge=1, le=MAX_WIDTH)       # content code vector size (20 ms)
    codes: int = key(ge=2, le=MAX_CODES)          # content codebook size
    cpc_steps: int = key(ge=0, le=MAX_FRAMES)     # contrastive coding of the content codes (0 = no CPC module)
    cpc_negatives: int = key(ge=1, le=MAX_WIDTH)
    cpc_context: int = key(ge=1, le=MAX_WIDTH)
    speaker_channels: int = key(ge=1, le=MAX_WIDTH)  # speaker encoder width
    speaker_blocks: int = key(ge=0, le=MAX_GEOMETRIC)  # residual conv blocks of the speaker encoder (each halves time)
    speaker_dim: int = key(ge=1, le=MAX_WIDTH)    # utterance-level speaker embedding size
    decoder_channels: int = key(ge=1, le=MAX_WIDTH)
    decoder_blocks: int = key(ge=0, le=MAX_DEPTH)  # dilated residual conv blocks of the decoder
    postnet_layers: int = key(ge=0, le=MAX_DEPTH)  # residual conv post-net layers (0 = none)


@dataclass(frozen=True)
class VQMIVCLoss(Section):
    mi_content_speaker: float = key(ge=0)         # CLUB upper bounds of mutual information (0 switches one off)
    mi_content_pitch: float = key(ge=0)
    mi_pitch_speaker: float = key(ge=0)


@dataclass(frozen=True)
class VQMIVCEstimators(Section):
    hidden: int = key(ge=1, le=MAX_WIDTH)         # hidden units of each CLUB estimator's networks
    lr: float = key(gt=0)                         # Adam rate of the estimators
    updates: int = key(ge=1, le=MAX_DEPTH)        # estimator updates per training step (before the main update)


@dataclass(frozen=True)
class ContentPerturbation(Section):
    warp: float = key(ge=0, lt=1)                 # frequency stretch of the content encoder's input: alpha in [1/(1+w), 1+w]


@dataclass(frozen=True)
class VQMIVC(Section):
    model: VQMIVCModel = key()
    loss: VQMIVCLoss = key()
    mi: VQMIVCEstimators = key()
    perturb: ContentPerturbation = key()


@dataclass(frozen=True)
class Generator(Section):
    head: Literal["waveform", "istft"] = key()    # waveform: tanh samples; istft: a predicted spectrum, inverted
    ngf: int = key(ge=1, le=MAX_WIDTH)
    n_residual: int = key(ge=0, le=MAX_GEOMETRIC)
    frame_blocks: int = key(ge=0, le=MAX_DEPTH)   # residual blocks at the frame rate, before any upsampling
    ratios: list[int] = key(ge=1, le=MAX_SAMPLES)  # upsampling; they multiply to the hop (istft: hop / its hop)
    mel_anchor: bool = key()                      # istft head: log-magnitude = the input mel's pseudo-inverse + a residual

    def check(self, where):
        if self.head == "waveform" and not self.ratios:
            raise _bad(f"{where}.ratios", self.ratios, "at least one upsampling ratio with head waveform")
        if self.mel_anchor and self.head != "istft":
            raise _bad(f"{where}.mel_anchor", self.mel_anchor, "false unless head is istft")
        if self.ngf << len(self.ratios) > MAX_WIDTH:      # each upsampling halves the channels
            raise _bad(f"{where}.ngf", self.ngf, f"ngf x 2 ** len(ratios) = {self.ngf << len(self.ratios)} "
                                                 f"channels at most {MAX_WIDTH}")


@dataclass(frozen=True)
class Discriminator(Section):
    scales: int = key(ge=1, le=MAX_GEOMETRIC)
    ndf: int = key(ge=1, le=MAX_WIDTH)
    layers: int = key(ge=1, le=MAX_DEPTH)
    max_channels: int = key(ge=1, le=MAX_WIDTH)


@dataclass(frozen=True)
class GANLoss(Section):
    """Weights of the generator's losses beside the fixed mel, adversarial and feature-matching ones."""
    stft: float = key(ge=0)                       # multi-resolution STFT loss
    vqvae: float = key(ge=0)                      # the unit system's own losses, when it trains with the vocoder


@dataclass(frozen=True)
class GANTrain(Section):
    method: Literal["separate", "finetune", "joint"] = key()   # how the unit system and the vocoder are trained
    vqvae_lr: float = key(gt=0)                   # the unit system's learning rate when it trains with the vocoder
    input_mels: Literal["vqvae", "ground_truth"] = key()
    speakers: Literal["targets", "all"] = key()   # targets: the target voices; all: every training speaker
    steps: int = key(ge=1, le=MAX_STEPS)
    warmup_steps: int = key(ge=0, le=MAX_STEPS)
    batch_size: int = key(ge=1, le=MAX_BATCH)
    segment_frames: int = key(ge=1, le=MAX_FRAMES)
    lr_warmup: float = key(gt=0)                  # the generator's rate during the warm-up
    lr: float = key(gt=0, was="melgan.train.lr_generator")   # generator and discriminator rate once adversarial
    ema: float = key(ge=0, lt=1)                  # decay of the generator's weight average used for inference (0 = none)
    checkpoint_every: int = key(ge=1, le=MAX_STEPS)
    log_every: int = key(ge=1, le=MAX_STEPS)
    validate_every: int = key(ge=0, le=MAX_STEPS)
    val_utterances: int = key(ge=0, le=MAX_COUNT)
    num_samples: int = key(ge=0, le=MAX_COUNT)
    sample_frames: int = key(ge=1, le=MAX_FRAMES)


@dataclass(frozen=True)
class MelGAN(Section):
    generator: Generator = key()
    discriminator: Discriminator = key()
    loss: GANLoss = key()
    train: GANTrain = key()

    def check(self, where):
        if self.train.method != "separate" and self.train.input_mels != "ground_truth":
            raise _bad(f"{where}.train.input_mels", self.train.input_mels,
                       f"ground_truth with method {self.train.method} (the unit system reconstructs the mels "
                       f"while it trains with the vocoder)")


@dataclass(frozen=True)
class Conversion(Section):
    """Inference-only settings of voice conversion (convert, submit, evaluate): read from the run's
    config and overridable there, never part of a checkpoint's training."""
    # Each conversion source (not unit files, not training) is stretched along frequency by the
    # factor in [1/(1+x), 1+x] whose encoding fits the VQ-VAE-2's bottom codebook best (0 = off).
    # A checkpoint written before this section stored the setting as vqvae.model.tract_search.
    tract_search: float = key(ge=0, le=1, added=0.0, was="vqvae.model.tract_search")


@dataclass(frozen=True)
class Submission(Section):
    author: str = key()
    affiliation: str = key()
    open_source: bool = key()
    abx_distance: Literal["dtw_cosine", "dtw_kl", "levenshtein"] = key()
    system_description: str = key()
    auxiliary: bool = key()
    vocoder: Literal["melgan", "griffinlim"] = key()
    jobs: int = key(ge=0, le=MAX_THREADS)         # encoder processes; 0 = as many as the CPUs allow
    zip_level: int = key(ge=0, le=9)

    def check(self, where):
        for name in ("author", "affiliation"):
            if not getattr(self, name).strip():
                raise _bad(f"{where}.{name}", getattr(self, name), "a non-empty string")


@dataclass(frozen=True)
class Speech(Section):
    enabled: bool = key()
    max_lines: int = key(ge=0, le=MAX_COUNT)
    voice_utts: int = key(ge=1, le=MAX_COUNT)
    measures: list[Literal["similarity", "asr", "mcd", "dnsmos"]] = key(min_items=1)
    one_shot_trials: int = key(ge=0, le=MAX_COUNT)  # one-shot conversions scored (vqmivc runs; 0 = none)


@dataclass(frozen=True)
class Evaluate(Section):
    jobs: int = key(ge=0, le=MAX_THREADS)         # ABX threads / speech processes; 0 = as many as the CPUs allow
    item_kind: Literal["excerpt", "long"] = key()
    distances: list[Literal["cosine", "KL", "levenshtein"]] = key(min_items=1)
    baselines: bool = key()
    speech: Speech = key()


@dataclass(frozen=True)
class Config(Section):
    name: str = key()
    seed: int = key(ge=0, le=MAX_SEED)
    system: Literal["vqvae2", "vqmivc"] = key()   # the unit system train-vqvae trains
    runtime: Runtime = key()
    features: Features = key()
    corpus: Corpus = key()
    vqvae: VQVAE = key()
    vqmivc: VQMIVC = key()
    melgan: MelGAN = key()
    conversion: Conversion = key()
    submission: Submission = key()
    evaluate: Evaluate = key()

    def check(self, where):
        if self.system != "vqmivc":
            return
        steps = self.vqmivc.model.cpc_steps
        if self.vqvae.loss.cpc > 0 and steps == 0:
            raise _bad("vqmivc.model.cpc_steps", 0, "at least 1 when vqvae.loss.cpc > 0 (system vqmivc)")
        segment = self.vqvae.train.segment_frames
        if steps and segment // 2 <= steps:
            raise _bad("vqvae.train.segment_frames", segment,
                       f"more than 2 x vqmivc.model.cpc_steps ({steps}) frames (the vqmivc system trains on them)")

    def replace(self, overrides: Iterable[str]) -> "Config":
        """A copy with ``key=value`` overrides applied (and checked)."""
        return Config.from_dict(apply_overrides(self.to_dict(), overrides))


# ============================================================================ loading
def preset_path(preset: str | os.PathLike) -> Path:
    """A preset name (tiny/demo/full) or a path to a YAML file."""
    text = str(preset)
    if text in PRESETS:
        return PRESET_DIR / f"{text}.yaml"
    path = Path(text)
    if not path.is_file():
        raise UserError(f"unknown config {text!r}: use one of {', '.join(PRESETS)} or a path to a YAML file")
    return path


def load_config(preset: str | os.PathLike = "demo", overrides: Iterable[str] = ()) -> Config:
    path = preset_path(preset)
    data = read_yaml_file(path)
    if not isinstance(data, dict):
        raise UserError(f"{path}: a config must be a YAML mapping")
    return Config.from_dict(apply_overrides(data, overrides))


def config_from_checkpoint(data: Any, where: str | os.PathLike) -> Config:
    """The config a checkpoint was trained with, checked against today's schema: keys added since
    take their ``added`` (or ``was``) value, keys retired since are dropped."""
    try:
        return Config.from_dict(data, stored=data if isinstance(data, dict) else {})
    except UserError as exc:
        raise UserError(f"{where}: its stored config does not fit this version ({exc.message}); "
                        f"retrain or pass --config") from None


def dump(config: Config | dict) -> str:
    return yaml.safe_dump(config.to_dict() if isinstance(config, Section) else config, sort_keys=False)
