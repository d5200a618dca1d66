"""Configs are data: YAML presets (tiny, demo, full) plus ``key=value`` overrides, checked
against one typed schema.

The schema below is the only description of the config: every key, its type and its allowed
range. It holds no defaults: each preset states every key (a missing one is an error), so a
value lives in exactly one place, the preset, and every stage reads it as a typed attribute
(``config.vqvae.train.steps``). Overrides use dotted keys (``vqvae.train.steps=200``) parsed as
YAML (``true``, ``1e-3``, ``[5,4,4,2]``) and are applied before the check, so a typo, a value of
the wrong type or out of range is one line naming the key, the value and what is allowed.

Checkpoints store ``config.to_dict()`` (plain YAML types); ``Config.from_dict`` checks it again
when a later stage reads a run's own config (``load_run_config``).
"""
from __future__ import annotations

import copy
import dataclasses
import math
import os
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Literal

import yaml

from pipeline.core.errors import UserError
from pipeline.core.threads import MAX_THREADS

PRESET_DIR = Path(__file__).resolve().parents[1] / "configs"
PRESETS = ("tiny", "demo", "full")
LANGUAGE = Literal["english", "surprise"]
MAX_CONFIG_BYTES = 1 << 20
MAX_YAML_DEPTH = 32             # a config nests 4 levels; a YAML document 20,000 deep overflowed the stack

# Upper bounds of sizes: what one machine can hold. A value past them is a typo or a unit mistake,
# refused here in one line instead of by the allocator or the kernel later (bottom_codes=2000000000
# asked for 256 GB and died with a traceback; runtime.threads=100000 crashed the process).
MAX_WIDTH = 1 << 13             # channels, vector sizes, hidden units: one 4-tap layer this wide is 1 GB
MAX_CODES = 1 << 16             # codebook entries (16 bits a unit; the presets use 32 to 512)
MAX_DEPTH = 1 << 10             # blocks and layers of a plain stack
MAX_GEOMETRIC = 12              # stacks that grow geometrically: dilations 2**i or 3**i (12 span seconds)
MAX_STEPS = 10 ** 9             # training steps, and periods counted in steps
MAX_BATCH = 1 << 16             # items of one batch
MAX_FRAMES = 1 << 16            # frames of one crop or sample (inputs are at most 300 s: 30,000 frames)
MAX_SAMPLES = 1 << 16           # FFT sizes, hops, windows and upsampling ratios, in samples
MAX_COUNT = 1 << 20             # utterances, lines and trials taken from the data
MAX_SCALE = 100                 # demo corpus multiples (100 x demo is about 100 hours of audio)
MAX_SEED = 2 ** 63 - 1          # torch seeds are 64-bit


# ============================================================================ schema machinery
def key(*, ge: float | None = None, gt: float | None = None, le: float | None = None, lt: float | None = None,
        min_items: int = 0, length: int | None = None) -> Any:
    """A schema field: numeric bounds (for numbers and for every number inside a list), the
    minimum number of items of a list, or its exact length."""
    return dataclasses.field(metadata={"ge": ge, "gt": gt, "le": le, "lt": lt, "min_items": min_items,
                                       "length": length})


class _Invalid(Exception):
    def __init__(self, expected: str):
        super().__init__(expected)
        self.expected = expected


def _describe(kind) -> str:
    origin = typing.get_origin(kind)
    if kind is bool:
        return "true or false"
    if kind is int:
        return "an integer"
    if kind is float:
        return "a number"
    if kind is str:
        return "a string"
    if origin is Literal:
        return "one of " + ", ".join(str(v) for v in typing.get_args(kind))
    if origin is list:
        item = typing.get_args(kind)[0]
        if typing.get_origin(item) is Literal:
            return f"a list of items among {', '.join(str(v) for v in typing.get_args(item))}"
        return f"a list of {_PLURAL.get(item, 'lists of numbers')}"
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " or ".join(_describe(k) for k in typing.get_args(kind))
    if isinstance(kind, type) and issubclass(kind, Section):
        return "a section (a mapping of keys)"
    return str(kind)


_PLURAL = {int: "integers", float: "numbers", str: "strings", bool: "booleans"}


def _bounds_text(meta: dict) -> str:
    parts = [f"{op} {_number_text(meta[name])}" for name, op in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))
             if meta.get(name) is not None]
    return " and ".join(parts)


def _number_text(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"     # bounds like 65536 print whole


def _check_number(value: float, meta: dict) -> None:
    if meta.get("ge") is not None and not value >= meta["ge"] or meta.get("gt") is not None and not value > meta["gt"] \
            or meta.get("le") is not None and not value <= meta["le"] \
            or meta.get("lt") is not None and not value < meta["lt"]:
        raise _Invalid(_bounds_text(meta))


def _convert(value: Any, kind, meta: dict, where: str) -> Any:
    """The checked value of one field (raises _Invalid or UserError for nested sections)."""
    origin = typing.get_origin(kind)
    if isinstance(kind, type) and issubclass(kind, Section):
        return kind.from_dict(value, where)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        for option in typing.get_args(kind):
            try:
                return _convert(value, option, meta, where)
            except _Invalid:
                continue
        raise _Invalid(_describe(kind))
    if origin is Literal:
        if value in typing.get_args(kind) and type(value) is type(next(iter(typing.get_args(kind)))):
            return value
        raise _Invalid(_describe(kind))
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise _Invalid(_describe(kind))
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            _check_number(value, meta)
            return value
        raise _Invalid(_describe(kind))
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise _Invalid("a finite number")
            _check_number(float(value), meta)
            return float(value)
        raise _Invalid(_describe(kind))
    if kind is str:
        if isinstance(value, str):
            return value
        raise _Invalid(_describe(kind))
    if origin is list:
        if not isinstance(value, list):
            raise _Invalid(_describe(kind))
        if meta.get("length") is not None and len(value) != meta["length"]:
            raise _Invalid(f"{_describe(kind)} of exactly {meta['length']} items")
        if len(value) < meta.get("min_items", 0):
            raise _Invalid(f"{_describe(kind)} with at least {meta['min_items']} item(s)")
        (item,) = typing.get_args(kind)
        # Bounds apply to the numbers inside; an inner list is checked against its own length.
        inner = {**meta, "length": None, "min_items": 0}
        if typing.get_origin(item) is list:
            inner = {"ge": meta.get("ge"), "gt": meta.get("gt"), "le": meta.get("le"), "lt": meta.get("lt"),
                     "min_items": 1, "length": None}
        return [_convert(v, item, inner, where) for v in value]
    raise TypeError(f"unsupported schema type {kind!r}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class Section:
    """Base of every schema section: a frozen dataclass checked by ``from_dict``."""

    @classmethod
    def from_dict(cls, data: Any, where: str = ""):
        label = where or "the config"
        if not isinstance(data, dict):
            raise UserError(f"config key {label}: got {_short(data)}; expected a section (a mapping of keys)")
        hints = typing.get_type_hints(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in data if k not in names]
        if unknown:
            raise UserError(f"config key {_join(where, str(unknown[0]))}: unknown key (known in {label}: "
                            f"{', '.join(names)})")
        values = {}
        for f in dataclasses.fields(cls):
            path = _join(where, f.name)
            if f.name not in data:
                raise UserError(f"config key {path} is missing (every preset states every key)")
            try:
                values[f.name] = _convert(data[f.name], hints[f.name], dict(f.metadata), path)
            except _Invalid as exc:
                raise UserError(f"config key {path}: got {_short(data[f.name])}; expected "
                                f"{_expected(hints[f.name], dict(f.metadata), exc.expected)}") from None
        section = cls(**values)
        section.check(where)
        return section

    def check(self, where: str) -> None:
        """Rules across keys of one section (override in subclasses); raise UserError."""

    def to_dict(self) -> dict:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}


def _plain(value: Any) -> Any:
    if isinstance(value, Section):
        return value.to_dict()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _expected(kind, meta: dict, reason: str) -> str:
    base = _describe(kind)
    bounds = _bounds_text(meta)
    if reason == base and bounds:
        return f"{base} {bounds}"
    if reason != base and reason.startswith(("<", ">")):
        return f"{base} {reason}"
    return reason


def _bad(path: str, value: Any, expected: str) -> UserError:
    return UserError(f"config key {path}: got {_short(value)}; expected {expected}")


# ============================================================================ the schema
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
    sample_rate: Literal[16000] = key()           # the challenge's audio is 16 kHz
    n_fft: int = key(ge=16, le=MAX_SAMPLES)
    win_length: int = key(ge=16, le=MAX_SAMPLES)
    hop_length: int = key(ge=1, le=MAX_SAMPLES)
    n_mels: int = key(ge=1, le=MAX_WIDTH)
    f_min: float = key(ge=0)
    f_max: float = key(gt=0)
    log_floor: float = key(gt=0)
    peak_norm: float = key(gt=0, le=1)

    def check(self, where):
        if self.win_length > self.n_fft:
            raise _bad(f"{where}.win_length", self.win_length, f"at most n_fft ({self.n_fft})")
        if (self.n_fft - self.hop_length) % 2:
            raise _bad(f"{where}.hop_length", self.hop_length, "n_fft - hop_length even (symmetric padding)")
        if not self.f_min < self.f_max <= self.sample_rate / 2:
            raise _bad(f"{where}.f_max", self.f_max, f"f_min < f_max <= {self.sample_rate // 2}")


@dataclass(frozen=True)
class Corpus(Section):
    scale: Literal["tiny", "demo"] | int = key(ge=1, le=MAX_SCALE)  # demo corpus size: tiny, demo or N x demo


@dataclass(frozen=True)
class VQVAEModel(Section):
    channels: int = key(ge=1, le=MAX_WIDTH)
    res_blocks: int = key(ge=0, le=MAX_DEPTH)
    res_channels: int = key(ge=1, le=MAX_WIDTH)
    bottom_dim: int = key(ge=1, le=MAX_WIDTH)
    top_dim: int = key(ge=1, le=MAX_WIDTH)
    bottom_codes: int = key(ge=2, le=MAX_CODES)
    top_codes: int = key(ge=2, le=MAX_CODES)
    speaker_dim: int = key(ge=1, le=MAX_WIDTH)
    jitter: float = key(ge=0, le=1)
    input_norm: Literal["global", "utterance"] = key()
    cpc_steps: int = key(ge=0, le=MAX_FRAMES)     # contrastive coding of the bottom codes (0 = no CPC module)
    cpc_negatives: int = key(ge=1, le=MAX_WIDTH)
    cpc_context: int = key(ge=1, le=MAX_WIDTH)
    adversary_hidden: int = key(ge=0, le=MAX_WIDTH)  # gradient-reversal speaker classifier (0 = none)
    bottom_sees_top: bool = key()                 # the bottom quantizer's input includes the decoded top codes
    classifier_hidden: int = key(ge=0, le=MAX_WIDTH)  # log-mel speaker classifier for the self-cycle (0 = none)
    bottom_encoder: Literal["conv", "frames"] = key()
    decoder_blocks: int = key(ge=0, le=MAX_GEOMETRIC)  # dilated residual blocks of the decoder (0 = res_blocks plain ones)
    decoder_rnn: int = key(ge=0, le=MAX_WIDTH)    # bidirectional GRU units a direction after them (0 = none)
    speaker_every_block: bool = key()             # the speaker embedding enters every decoder block (false: the first conv)
    tract_search: float = key(ge=0, le=1)         # conversion: stretch each source to fit the codebook (0 = off)


@dataclass(frozen=True)
class VQVAELoss(Section):
    recon: float = key(ge=0)                      # weight of the decoder's L1 reconstruction
    cpc: float = key(ge=0)                        # weight of InfoNCE on the bottom codes
    adversary: float = key(ge=0)                  # weight of the reversed speaker-classifier loss
    cycle_codes: float = key(ge=0)                # self-cycle: converted mel re-encodes to the source's codes
    cycle_recon: float = key(ge=0)                # self-cycle: converting back gives the source mel
    cycle_speaker: float = key(ge=0)              # self-cycle: the converted mel sounds like the target voice

    @property
    def cycle(self) -> bool:
        return self.cycle_codes > 0 or self.cycle_recon > 0 or self.cycle_speaker > 0

    def check(self, where):
        if self.recon == 0 and self.cpc == 0:
            raise _bad(f"{where}.recon", self.recon, "a positive recon or cpc weight (nothing to learn from)")


@dataclass(frozen=True)
class Quantizer(Section):
    decay: float = key(ge=0, lt=1)
    commitment: float = key(ge=0)
    restart_every: int = key(ge=0, le=MAX_STEPS)
    restart_min_hits: int = key(ge=1, le=MAX_STEPS)


@dataclass(frozen=True)
class TrainSchedule(Section):
    steps: int = key(ge=1, le=MAX_STEPS)
    batch_size: int = key(ge=1, le=MAX_BATCH)
    segment_frames: int = key(ge=8, le=MAX_FRAMES)
    lr: float = key(gt=0)
    lr_milestones: list[float] = key(gt=0, lt=1)
    lr_gamma: float = key(gt=0, le=1)
    grad_clip: float = key(ge=0)
    val_fraction: float = key(ge=0, lt=1)
    val_max_utterances: int = key(ge=0, le=MAX_COUNT)
    validate_every: int = key(ge=0, le=MAX_STEPS)
    checkpoint_every: int = key(ge=1, le=MAX_STEPS)
    log_every: int = key(ge=1, le=MAX_STEPS)


@dataclass(frozen=True)
class ContentPerturbation(Section):
    warp: float = key(ge=0, lt=1)                 # frequency stretch of the content encoder's input: alpha in [1/(1+w), 1+w]
    tilt: float = key(ge=0)                       # random smooth equaliser on it: std of 4 cosine terms (log10 units)

    @property
    def active(self) -> bool:
        """Whether either perturbation is on (off: the encoder sees the crop itself)."""
        return bool(self.warp or self.tilt)


@dataclass(frozen=True)
class VQVAE(Section):
    languages: list[LANGUAGE] = key(min_items=1)
    model: VQVAEModel = key()
    quantizer: Quantizer = key()
    loss: VQVAELoss = key()
    perturb: ContentPerturbation = key()          # training only: what the encoder sees (the decoder's target is the crop)
    train: TrainSchedule = key()

    def check(self, where):
        if self.loss.cpc > 0 and self.model.cpc_steps == 0:
            raise _bad(f"{where}.model.cpc_steps", 0, "at least 1 when vqvae.loss.cpc > 0")
        if self.loss.adversary > 0 and self.model.adversary_hidden == 0:
            raise _bad(f"{where}.model.adversary_hidden", 0, "at least 1 when vqvae.loss.adversary > 0")
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
    decay: float = key(ge=0, lt=1)                # EMA decay of the codebook
    restart_every: int = key(ge=0, le=MAX_STEPS)  # dead-code restart period in steps (0 = never)
    restart_min_hits: int = key(ge=1, le=MAX_STEPS)
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
    recon: float = key(ge=0)                      # L1 reconstruction of the log-mel (pre- and post-net)
    cpc: float = key(ge=0)                        # InfoNCE of the content codes
    commitment: float = key(ge=0)                 # VQ commitment
    mi_content_speaker: float = key(ge=0)         # CLUB upper bounds of mutual information (0 switches one off)
    mi_content_pitch: float = key(ge=0)
    mi_pitch_speaker: float = key(ge=0)

    check = VQVAELoss.check                       # the same rule: a positive recon or cpc weight


@dataclass(frozen=True)
class VQMIVCEstimators(Section):
    hidden: int = key(ge=1, le=MAX_WIDTH)         # hidden units of each CLUB estimator's networks
    lr: float = key(gt=0)                         # Adam rate of the estimators
    updates: int = key(ge=1, le=MAX_DEPTH)        # estimator updates per training step (before the main update)


@dataclass(frozen=True)
class Pitch(Section):
    floor_hz: float = key(gt=0)                   # Praat autocorrelation pitch range
    ceiling_hz: float = key(gt=0)

    def check(self, where):
        if not self.floor_hz < self.ceiling_hz <= 8000:
            raise _bad(f"{where}.ceiling_hz", self.ceiling_hz, f"floor_hz ({self.floor_hz:g}) < ceiling_hz <= 8000")


@dataclass(frozen=True)
class VQMIVC(Section):
    model: VQMIVCModel = key()
    loss: VQMIVCLoss = key()
    mi: VQMIVCEstimators = key()
    pitch: Pitch = key()
    perturb: ContentPerturbation = key()
    speaker_input: Literal["same_crop", "other_utterance"] = key()   # what the speaker encoder sees in training
    speaker_augment: float = key(ge=0, lt=1)      # frequency stretch of the whole crop: new vocal tracts in training

    def check(self, where):
        if self.loss.cpc > 0 and self.model.cpc_steps == 0:
            raise _bad(f"{where}.model.cpc_steps", 0, "at least 1 when vqmivc.loss.cpc > 0")


@dataclass(frozen=True)
class Generator(Section):
    head: Literal["waveform", "istft"] = key()    # waveform: tanh samples; istft: a predicted spectrum, inverted
    ngf: int = key(ge=1, le=MAX_WIDTH)
    n_residual: int = key(ge=0, le=MAX_GEOMETRIC)
    frame_blocks: int = key(ge=0, le=MAX_DEPTH)   # residual blocks at the frame rate, before any upsampling
    frame_block: Literal["residual", "convnext"] = key()  # MelGAN's residual block or a normalised ConvNeXt block
    ratios: list[int] = key(ge=1, le=MAX_SAMPLES)  # upsampling; they multiply to the hop (istft: hop / istft_hop)
    istft_fft: int = key(ge=2, le=MAX_SAMPLES)    # the istft head's FFT size (unused by the waveform head)
    istft_hop: int = key(ge=1, le=MAX_SAMPLES)    # the istft head's hop in samples (unused by the waveform head)
    mel_anchor: bool = key()                      # istft head: log-magnitude = the input mel's pseudo-inverse + a residual
    speaker_dim: int = key(ge=1, le=MAX_WIDTH)

    def check(self, where):
        if self.head == "waveform" and not self.ratios:
            raise _bad(f"{where}.ratios", self.ratios, "at least one upsampling ratio with head waveform")
        if self.head == "istft" and (self.istft_fft % 2 or self.istft_fft < self.istft_hop):
            raise _bad(f"{where}.istft_fft", self.istft_fft, f"an even size of at least istft_hop ({self.istft_hop})")
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
    downsample: int = key(ge=2, le=64)
    max_channels: int = key(ge=1, le=MAX_WIDTH)


@dataclass(frozen=True)
class GANLoss(Section):
    mel: float = key(ge=0)
    stft: float = key(ge=0)
    stft_resolutions: list[list[int]] = key(ge=1, min_items=1, le=MAX_SAMPLES)
    adversarial: float = key(ge=0)
    feature_matching: float = key(ge=0)
    vqvae: float = key(ge=0)                      # the unit system's own losses, when it trains with the vocoder

    def check(self, where):
        for res in self.stft_resolutions:
            if len(res) != 3 or res[2] > res[0]:
                raise _bad(f"{where}.stft_resolutions", res, "[n_fft, hop, window] triples with window <= n_fft")


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
    lr_warmup: float = key(gt=0)
    lr_generator: float = key(gt=0)
    lr_discriminator: float = key(gt=0)
    lr_end: float = key(gt=0, le=1)               # the generator's rate at the last step, as a fraction of its phase's rate
    ema: float = key(ge=0, lt=1)                  # decay of the generator's weight average used for inference (0 = none)
    betas: list[float] = key(ge=0, lt=1, length=2)
    checkpoint_every: int = key(ge=1, le=MAX_STEPS)
    log_every: int = key(ge=1, le=MAX_STEPS)
    validate_every: int = key(ge=0, le=MAX_STEPS)
    val_utterances: int = key(ge=0, le=MAX_COUNT)
    num_samples: int = key(ge=0, le=MAX_COUNT)
    sample_frames: int = key(ge=1, le=MAX_FRAMES)


@dataclass(frozen=True)
class MelGAN(Section):
    languages: list[LANGUAGE] = key()
    speaker_conditioned: bool = key()
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
    submission: Submission = key()
    evaluate: Evaluate = key()

    def check(self, where):
        steps = self.vqmivc.model.cpc_steps
        segment = self.vqvae.train.segment_frames
        if self.system == "vqmivc" and steps and segment // 2 <= steps:
            raise _bad("vqvae.train.segment_frames", segment,
                       f"more than 2 x vqmivc.model.cpc_steps ({steps}) frames (the vqmivc system trains on them)")

    def replace(self, overrides: Iterable[str]) -> "Config":
        """A copy with ``key=value`` overrides applied (and checked)."""
        return Config.from_dict(apply_overrides(self.to_dict(), overrides))


# ============================================================================ loading
class _Refused(yaml.YAMLError):
    """YAML that parses but that no config may hold: aliases, too deep, a number too long."""


class _NoAliasLoader(yaml.SafeLoader):
    """Safe YAML without anchors and aliases, nested at most ``MAX_YAML_DEPTH`` levels: a config
    is small, aliases are how a tiny file expands into a huge structure, and the composer
    recurses once a level (20,000 levels ended in a RecursionError)."""

    depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise _Refused(f"YAML aliases are not allowed in configs (line {event.start_mark.line + 1})")
        if self.depth >= MAX_YAML_DEPTH:
            raise _Refused(f"nested too deeply: more than {MAX_YAML_DEPTH} levels "
                           f"(line {self.peek_event().start_mark.line + 1})")
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


# YAML 1.1 reads 1e-3, 1e6 and 1.0e6 as strings (its floats need a dot and a signed exponent), so
# ``vqvae.train.lr=1e-3`` was refused as "not a number": numbers in exponent form are numbers.
_NoAliasLoader.add_implicit_resolver("tag:yaml.org,2002:float",
                                     re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
                                     list("-+0123456789"))


def preset_path(preset: str | os.PathLike) -> Path:
    """A preset name (tiny/demo/full) or a path to a YAML file."""
    text = str(preset)
    if text in PRESETS:
        return PRESET_DIR / f"{text}.yaml"
    path = Path(text)
    if not path.is_file():
        raise UserError(f"unknown config {text!r}: use one of {', '.join(PRESETS)} or a path to a YAML file")
    return path


def parse_yaml(text: str) -> Any:
    """Plain data from config YAML (safe, no aliases, bounded depth); yaml.YAMLError when it is
    not, ``_Refused`` for what no config may hold (an integer of more than 4300 digits: Python
    refuses to convert it)."""
    try:
        return yaml.load(text, Loader=_NoAliasLoader)
    except ValueError as exc:
        raise _Refused(" ".join(str(exc).split(";")[0].split())) from None


def read_yaml_file(path: Path) -> Any:
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise UserError(f"{path}: larger than {MAX_CONFIG_BYTES >> 20} MB; not a config")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    try:
        return parse_yaml(text)
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: malformed YAML ({' '.join(str(exc).split())[:200]})") from None


def load_config(preset: str | os.PathLike = "demo", overrides: Iterable[str] = ()) -> Config:
    path = preset_path(preset)
    data = read_yaml_file(path)
    if not isinstance(data, dict):
        raise UserError(f"{path}: a config must be a YAML mapping")
    return Config.from_dict(apply_overrides(data, overrides))


def apply_overrides(config: dict, overrides: Iterable[str]) -> dict:
    """Apply ``key=value`` overrides to a plain config dict (unknown keys refused)."""
    config = copy.deepcopy(config)
    for item in overrides:
        if "=" not in item:
            raise UserError(f"override {item!r} is not of the form key=value")
        dotted, raw = item.split("=", 1)
        parts = dotted.strip().split(".")
        node = config
        for i, part in enumerate(parts[:-1]):
            if not isinstance(node, dict) or part not in node or not isinstance(node[part], dict):
                raise UserError(f"override {item!r}: unknown key {'.'.join(parts[:i + 1])!r}")
            node = node[part]
        if not isinstance(node, dict) or parts[-1] not in node:
            raise UserError(f"override {item!r}: unknown key {dotted.strip()!r}")
        if len(raw) > MAX_CONFIG_BYTES:
            raise UserError(f"override {dotted.strip()}: a value of {len(raw)} characters; a config holds at "
                            f"most {MAX_CONFIG_BYTES >> 20} MB")
        value = _override_value(dotted.strip(), raw)
        if isinstance(node[parts[-1]], dict) and not isinstance(value, dict):
            raise UserError(f"override {item!r}: {dotted.strip()!r} is a section; set one of its keys "
                            f"({', '.join(node[parts[-1]])})")
        node[parts[-1]] = value
    return config


def _override_value(key: str, raw: str) -> Any:
    """An override's value parsed as YAML; text that is not YAML stays text (``author=[Ada``),
    but YAML no config may hold (aliases, too deep, a number too long) is refused, naming only
    the key: the value itself may be megabytes."""
    if not raw.strip():
        return ""
    try:
        return parse_yaml(raw)
    except _Refused as exc:
        raise UserError(f"override {key}: {' '.join(str(exc).split())[:200]}") from None
    except yaml.YAMLError:
        return raw


def config_from_checkpoint(data: Any, where: str | os.PathLike) -> Config:
    """The config a checkpoint was trained with, checked against today's schema."""
    try:
        return Config.from_dict(data)
    except UserError as exc:
        raise UserError(f"{where}: its stored config does not fit this version ({exc.message}); "
                        f"retrain or pass --config") from None


def dump(config: Config | dict) -> str:
    return yaml.safe_dump(config.to_dict() if isinstance(config, Section) else config, sort_keys=False)
