"""A trained VQMIVC ready for inference: log-mel -> content units, content + a voice + pitch ->
log-mel. The voice is a training speaker's name (its embedding averaged over its training
utterances, stored in the checkpoint) or a vector from any reference utterance (one-shot).

    system = load_vqmivc(layout.vqvae_checkpoint)
    units = system.encode_audio(audio)                     # content codes + the source's pitch
    mel = system.decode_units(units, "V001")               # in a training voice
    mel = system.decode_units(units, system.reference_embedding(ref_audio))   # in an unseen voice

Units of a T-frame (10 ms) input have ceil(T/2) rows (20 ms); nothing is padded. Units made
from a log-mel alone (``encode_mels``, the submission's unit files) carry no pitch: decoding them
uses a flat contour (every frame voiced, at the voice's mean pitch). The model is rebuilt from
the checkpoint's own meta, never from today's presets.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models.featurespec import FeatureSpec
from models.vqmivc import PITCH_CHANNELS, STRIDE, VQMIVC, VQMIVCConfig
from pipeline.core.audio import read_wav
from pipeline.core.checkpoint import known_arguments, load_checkpoint
from pipeline.core.errors import UserError
from pipeline.features import logmel
from pipeline.pitch import pitch_features

KIND = "vqmivc"
MAX_BATCH_FRAMES = 1 << 15       # content-encoder input frames per forward pass
MIN_REFERENCE_SECONDS = 0.5      # shorter references give no usable voice
SILENT_PEAK = 1e-3               # a reference whose peak is below -60 dBFS is silence


@dataclass
class ContentUnits:
    bottom_ids: np.ndarray           # (Tc,) int64 content codes, one per 20 ms
    bottom_vectors: np.ndarray       # (Tc, D) float32 quantized content vectors
    prequant: np.ndarray             # (Tc, D) float32 content encoder output before quantization
    context: np.ndarray | None       # (Tc, C) float32 CPC context vectors (None without CPC)
    num_frames: int                  # mel frames (10 ms) of the input
    pitch: np.ndarray | None = None  # (2, num_frames) normalised log-F0, voiced flag (None: not computed)

    levels = ("bottom",)             # one codebook: the content codes

    @property
    def top_ids(self) -> np.ndarray:
        """No top level: an empty id sequence (what the two-level tools read as 'absent')."""
        return np.zeros(0, dtype=np.int64)

    def arrays(self) -> dict:
        out = {"bottom_ids": self.bottom_ids, "bottom_vectors": self.bottom_vectors, "prequant": self.prequant,
               "num_frames": np.int64(self.num_frames)}
        if self.context is not None:
            out["context"] = self.context
        if self.pitch is not None:
            out["pitch"] = self.pitch
        return out

    def submission_arrays(self) -> list[np.ndarray]:
        """test/ (content code vectors), auxiliary_embedding1 (pre-quantization vectors),
        auxiliary_embedding2 (CPC context vectors; the pre-quantization vectors without CPC)."""
        return [self.bottom_vectors, self.prequant, self.context if self.context is not None else self.prequant]


class VQMIVCSystem:
    """A trained VQMIVC ready for inference (eval mode, no gradients)."""

    def __init__(self, model: VQMIVC, spec: FeatureSpec, embeddings: dict[str, np.ndarray], pitch_range: dict,
                 config: dict, device: torch.device, checkpoint: Path | None = None, step: int = 0,
                 languages: list[str] | None = None):
        self.model = model.eval()
        self.spec = spec
        self.speakers = {name: np.asarray(vec, dtype=np.float32) for name, vec in embeddings.items()}
        self.pitch_range = dict(pitch_range)
        self.config = config
        self.device = device
        self.checkpoint = checkpoint
        self.step = step
        self.meta_languages = list(languages or ["english"])

    @property
    def codebooks(self) -> dict[str, np.ndarray]:
        return {"bottom": self.model.quantizer.embed.cpu().numpy().copy()}

    @property
    def unit_frames(self) -> dict[str, int]:
        return {"bottom": STRIDE}

    @property
    def languages(self) -> list[str]:
        return list(self.meta_languages)

    # ------------------------------------------------------------------ encoding
    def pitch(self, audio: np.ndarray) -> np.ndarray:
        """(2, frames) pitch features of float audio, on the log-mel's frames."""
        return pitch_features(audio, self.spec, self.pitch_range["floor_hz"], self.pitch_range["ceiling_hz"])

    # the content encoder reads the training set's normalisation: it takes no speaker statistics
    speaker_norm = False

    @torch.no_grad()
    def encode_mels(self, mels: list[np.ndarray], stats=None) -> list[ContentUnits]:
        """(n_mels, T) log-mels -> content units (without pitch), in order. Inputs of equal
        padded length share a forward pass (zero padding at the end changes no earlier frame).
        ``stats`` (speaker statistics, the VQ-VAE-2's interface) is ignored: no ``speaker_norm``."""
        checked = []
        for mel in mels:
            mel = np.asarray(mel, dtype=np.float32)
            if mel.ndim != 2 or mel.shape[0] != self.spec.n_mels or mel.shape[1] < 1:
                raise UserError(f"expected a log-mel of shape ({self.spec.n_mels}, frames >= 1), got {mel.shape}")
            checked.append(mel)
        by_length: dict[int, list[int]] = {}
        for i, mel in enumerate(checked):
            by_length.setdefault(mel.shape[1] + mel.shape[1] % STRIDE, []).append(i)
        units: list[ContentUnits | None] = [None] * len(checked)
        for padded, members in by_length.items():
            size = max(1, MAX_BATCH_FRAMES // padded)
            for chunk in (members[k:k + size] for k in range(0, len(members), size)):
                x = torch.zeros(len(chunk), self.spec.n_mels, padded, device=self.device)
                for row, i in enumerate(chunk):
                    x[row, :, :checked[i].shape[1]] = self.model.normalize(torch.from_numpy(checked[i]).to(self.device))
                enc = self.model.encode_normalized(x)
                context = self.model.context(enc.quant.quantized)
                for row, i in enumerate(chunk):
                    frames = checked[i].shape[1]
                    n = VQMIVC.code_length(frames)
                    units[i] = ContentUnits(
                        bottom_ids=enc.quant.ids[row, :n].cpu().numpy(),
                        bottom_vectors=_frames(enc.quant.quantized[row, :, :n].transpose(0, 1)),
                        prequant=_frames(enc.prequant[row, :, :n].transpose(0, 1)),
                        context=None if context is None else _frames(context[row, :n]),
                        num_frames=int(frames))
        return units

    def encode_mel(self, mel: np.ndarray) -> ContentUnits:
        return self.encode_mels([mel])[0]

    def encode_audio(self, audio: np.ndarray) -> ContentUnits:
        """Float audio at ``spec.sample_rate`` -> content units with the audio's pitch."""
        audio = _checked_audio(audio)
        units = self.encode_mel(logmel(audio, self.spec))
        units.pitch = self.pitch(audio)
        return units

    def encode_wav(self, path: str | os.PathLike) -> ContentUnits:
        return self.encode_audio(read_wav(path, self.spec.sample_rate))

    def encode_source(self, audio: np.ndarray, tract_search: float = 0.0, stats=None) -> ContentUnits:
        """The units a conversion decodes (the VQMIVC has no tract search and no speaker
        normalisation: its ``encode_audio``)."""
        return self.encode_audio(audio)

    # ------------------------------------------------------------------ voices
    def speaker_vector(self, speaker: str | np.ndarray) -> np.ndarray:
        """A training speaker's mean embedding (by name), or an embedding given as an array."""
        if isinstance(speaker, str):
            if speaker not in self.speakers:
                known = sorted(self.speakers)
                more = f" and {len(known) - 8} more" if len(known) > 8 else ""
                raise UserError(f"unknown speaker {speaker!r}: the VQMIVC knows {', '.join(known[:8])}{more} "
                                f"(or give a reference utterance)")
            return self.speakers[speaker]
        vector = np.asarray(speaker, dtype=np.float32)
        if vector.shape != (self.model.cfg.speaker_dim,) or not np.all(np.isfinite(vector)):
            raise UserError(f"a speaker embedding must be {self.model.cfg.speaker_dim} finite numbers, "
                            f"got shape {vector.shape}")
        return vector

    @torch.no_grad()
    def reference_embedding(self, audio: np.ndarray, name: str = "reference") -> np.ndarray:
        """The voice of a reference utterance (any speaker, seen in training or not)."""
        audio = _checked_audio(audio, name)
        seconds = len(audio) / self.spec.sample_rate
        if seconds < MIN_REFERENCE_SECONDS:
            raise UserError(f"{name}: {seconds:.2f} s of audio; a reference utterance needs at least "
                            f"{MIN_REFERENCE_SECONDS:g} s of speech")
        if float(np.max(np.abs(audio))) < SILENT_PEAK:
            raise UserError(f"{name}: the reference audio is silent (peak below -60 dBFS); it has no voice to copy")
        mel = torch.from_numpy(logmel(audio, self.spec))[None].to(self.device)
        return self.model.speaker_embedding(mel)[0].float().cpu().numpy()

    # ------------------------------------------------------------------ decoding
    @torch.no_grad()
    def decode_units(self, units: ContentUnits, speaker: str | np.ndarray) -> np.ndarray:
        """Content units + a voice (name or embedding) -> (n_mels, num_frames) log-mel. The
        units' own pitch is used; units without one get a flat contour."""
        frames = int(units.num_frames)
        ids = np.asarray(units.bottom_ids, dtype=np.int64)
        if ids.shape != (VQMIVC.code_length(frames),):
            raise UserError(f"{frames} frames need {VQMIVC.code_length(frames)} content codes, got {ids.shape[0]}")
        if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= self.model.cfg.codes):
            raise UserError(f"content code ids must lie in [0, {self.model.cfg.codes})")
        pitch = units.pitch if units.pitch is not None else flat_pitch(frames)
        if pitch.shape != (PITCH_CHANNELS, frames):
            raise UserError(f"the pitch of {frames} frames must have shape ({PITCH_CHANNELS}, {frames}), got {pitch.shape}")
        vector = torch.from_numpy(self.speaker_vector(speaker))[None].to(self.device)
        mel = self.model.decode_ids(torch.from_numpy(ids)[None].to(self.device), vector,
                                    torch.from_numpy(np.asarray(pitch, dtype=np.float32))[None].to(self.device))
        return mel[0].float().cpu().numpy()

    def units_from_ids(self, bottom_ids, num_frames: int) -> ContentUnits:
        """Bare content codes (e.g. typed by hand) as units to decode (flat pitch)."""
        ids = np.asarray(bottom_ids, dtype=np.int64)
        vectors = self.model.quantizer.embed.cpu().numpy()[np.clip(ids, 0, self.model.cfg.codes - 1)]
        return ContentUnits(ids, vectors, vectors, None, int(num_frames))

    def reconstruct(self, mel: np.ndarray, audio: np.ndarray, speaker: str | np.ndarray) -> np.ndarray:
        """An utterance (its log-mel and the prepared audio it came from) as the decoder renders it
        in ``speaker``'s voice, with its own content and pitch (the vocoder's training input)."""
        units = self.encode_mel(mel)
        pitch = self.pitch(audio)
        if pitch.shape[1] != units.num_frames:
            raise UserError(f"the audio gives {pitch.shape[1]} frames, its log-mel {units.num_frames}")
        units.pitch = pitch
        return self.decode_units(units, speaker)

    # ------------------------------------------------------------------ self-description
    @property
    def AUX_DESCRIPTIONS(self) -> list[str]:   # noqa: N802 (the unit systems' shared attribute name)
        second = ("Contrastive-predictive-coding context vectors (an LSTM over the content codes), one per 20 ms."
                  if self.model.cpc is not None else
                  "Content encoder outputs before vector quantization (no CPC context in this model).")
        return ["Content encoder outputs before vector quantization (continuous, one per 20 ms).", second]

    def description(self, vocoder: str) -> str:
        """One paragraph for the submission's metadata; ``vocoder`` says what renders the mels."""
        m = self.model.cfg
        unit_ms = 1000 * STRIDE * self.spec.frame_period
        parts = [
            f"VQMIVC (vector-quantized content, mutual-information-based disentanglement, Wang et al. 2021) on "
            f"{self.spec.n_mels}-band log-mel features: content codes every {unit_ms:g} ms (K={m.codes}, "
            f"{m.code_dim}-dim) from a VQ-CPC content encoder, a {m.speaker_dim}-dim speaker vector from a speaker "
            f"encoder, and per-utterance normalised log-F0 (Praat).",
            "Training minimises CLUB upper bounds of the mutual information between content, speaker and pitch.",
            f"For synthesis the source's content codes and pitch are decoded with the target voice's mean speaker "
            f"vector into a mel spectrogram, rendered by {vocoder}.",
            f"Unit files hold the content code vectors, one line per {unit_ms:g} ms. Trained {self.step} steps with "
            f"the zs2020 pipeline, no external data."]
        return " ".join(parts)

    def hyperparameters(self) -> dict:
        config = self.config
        return {"features": config["features"], "seed": config["seed"],
                "vqmivc": {"preset": config["name"], "steps_trained": self.step,
                           "model": dataclasses.asdict(self.model.cfg), "settings": config["vqmivc"],
                           "schedule": config["vqvae"]["train"]}}


def flat_pitch(frames: int) -> np.ndarray:
    """Every frame voiced at the utterance's mean log-F0."""
    pitch = np.zeros((PITCH_CHANNELS, frames), dtype=np.float32)
    pitch[1] = 1.0
    return pitch


def _checked_audio(audio: np.ndarray, name: str = "audio") -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1 or audio.size == 0:
        raise UserError(f"{name}: expected non-empty mono audio, got shape {audio.shape}")
    if not np.all(np.isfinite(audio)):
        raise UserError(f"{name}: audio contains NaN or infinite samples")
    return audio


def _frames(x: torch.Tensor) -> np.ndarray:
    return x.float().cpu().numpy().astype(np.float32)


def load_vqmivc(checkpoint: str | os.PathLike, device: str | torch.device = "cpu") -> VQMIVCSystem:
    """Rebuild the model from the checkpoint's own meta (never from the current presets)."""
    checkpoint = Path(checkpoint)
    ckpt = load_checkpoint(checkpoint, kind=KIND, models=("vqmivc",))
    meta = ckpt["meta"]
    try:
        model = VQMIVC(VQMIVCConfig(**known_arguments(VQMIVCConfig, meta["model"])))
        model.load_state_dict(ckpt["models"]["vqmivc"])
        spec = FeatureSpec.from_dict(meta["feature_spec"])
        embeddings, pitch_range = meta["speaker_embeddings"], meta["pitch"]
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise UserError(f"{checkpoint}: incompatible VQMIVC checkpoint ({' '.join(str(exc).split())[:120]})") from None
    device = torch.device(device)
    return VQMIVCSystem(model.to(device), spec, embeddings, pitch_range, ckpt["config"], device, checkpoint,
                        ckpt["step"], meta.get("languages"))
