"""A trained VQ-VAE-2 ready for inference: log-mel -> units, units + speaker -> log-mel.

    vq = load_vqvae(layout.vqvae_checkpoint)
    units = vq.encode_mels([mel])[0]            # (n_mels, T) log-mel -> Units
    mel = vq.decode(units, "V001")              # the same content in voice V001

Units of a T-frame (10 ms) input: ``bottom_*`` have ceil(T/2) rows (20 ms), ``top_ids`` has
ceil(T/4) (40 ms); nothing is padded. The encoder needs no speaker, so unseen speakers work.
The model is rebuilt from the checkpoint's own meta, never from today's presets.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models.augment import warp_frequency
from models.featurespec import FeatureSpec
from models.vqvae2 import STRIDE, VQVAE2, VQVAE2Config, tract_factors
from pipeline.core.audio import read_wav
from pipeline.core.checkpoint import known_arguments, load_checkpoint
from pipeline.core.errors import UserError
from pipeline.features import logmel

KIND = "vqvae"
# Encoder forward passes take utterances of equal padded length together: convolutions over
# zero padding give exactly the single-utterance result, and short ABX excerpts come in few
# distinct lengths, so a few hundred files cost a handful of passes.
MAX_BATCH_FRAMES = 1 << 15


@dataclass
class Units:
    bottom_ids: np.ndarray       # (Tb,) int64, 20 ms codes
    top_ids: np.ndarray          # (Tt,) int64, 40 ms codes
    bottom_vectors: np.ndarray   # (Tb, D) float32 quantized bottom code vectors
    top_vectors: np.ndarray      # (Tb, Dt) float32 top code vectors repeated to the bottom rate
    prequant: np.ndarray         # (Tb, D) float32 bottom encoder output before quantization
    num_frames: int              # mel frames (10 ms) of the input

    def arrays(self) -> dict:
        return {"bottom_ids": self.bottom_ids, "top_ids": self.top_ids, "bottom_vectors": self.bottom_vectors,
                "top_vectors": self.top_vectors, "prequant": self.prequant,
                "num_frames": np.int64(self.num_frames)}

    def submission_arrays(self) -> list[np.ndarray]:
        """What the submission writes: test/ (bottom code vectors), auxiliary_embedding1 (top code
        vectors at the bottom rate), auxiliary_embedding2 (pre-quantization features)."""
        return [self.bottom_vectors, self.top_vectors, self.prequant]


class VQVAE:
    """A trained VQ-VAE-2 ready for inference (eval mode, no gradients)."""

    def __init__(self, model: VQVAE2, spec: FeatureSpec, speakers: dict[str, int], config: dict,
                 device: torch.device, checkpoint: Path | None = None, step: int = 0,
                 languages: list[str] | None = None):
        self.model = model.eval()
        self.meta_languages = list(languages or ["english"])
        self.spec = spec
        self.speakers = dict(speakers)
        self.config = config
        self.device = device
        self.checkpoint = checkpoint
        self.step = step

    @property
    def codebooks(self) -> dict[str, np.ndarray]:
        """Code vectors per level: bottom (K_b, D), top (K_t, Dt)."""
        return {"bottom": self.model.quant_bottom.embed.cpu().numpy().copy(),
                "top": self.model.quant_top.embed.cpu().numpy().copy()}

    @property
    def unit_frames(self) -> dict[str, int]:
        """Mel frames per unit of each level (bottom every 2, top every 4)."""
        return {"bottom": STRIDE // 2, "top": STRIDE}

    def speaker_id(self, speaker: str) -> int:
        if speaker not in self.speakers:
            known = ", ".join(sorted(self.speakers))
            raise UserError(f"unknown speaker {speaker!r}: the VQ-VAE knows {known}")
        return self.speakers[speaker]

    def _check_mel(self, mel: np.ndarray) -> np.ndarray:
        mel = np.asarray(mel, dtype=np.float32)
        if mel.ndim != 2 or mel.shape[0] != self.spec.n_mels or mel.shape[1] < 1:
            raise UserError(f"expected a log-mel of shape ({self.spec.n_mels}, frames >= 1), got {mel.shape}")
        return mel

    @property
    def speaker_norm(self) -> bool:
        """Whether the encoders read each speaker's own standardised log-mel: encode a speaker's
        files with that speaker's statistics (``encoding.speaker_stats_of_files``, ``encoding.encode_wavs``)."""
        return bool(self.model.cfg.speaker_norm)

    @torch.no_grad()
    def encode_mels(self, mels: list[np.ndarray], tract_search: float = 0.0,
                    stats: list[tuple[np.ndarray, np.ndarray] | None] | None = None) -> list[Units]:
        """(n_mels, T) log-mels -> Units, in order; equal padded lengths share a forward pass.
        ``tract_search`` > 0 encodes each mel in the stretch a tract search of that range picks
        (``normalize_tract``; conversion sources only, see ``encode_source``). With
        ``speaker_norm``, ``stats[i]`` is the (mean, std) of the speaker of ``mels[i]``
        (``pipeline.features.speaker_statistics``); a mel without them is standardised by its own."""
        mels = [self._check_mel(m) for m in mels]
        norms = [self._norm(s) for s in (stats if stats is not None else [None] * len(mels))]
        if len(norms) != len(mels):
            raise ValueError(f"{len(mels)} mels but {len(norms)} statistics")
        if tract_search > 0:
            mels = [self.normalize_tract(m, tract_search, n)[0] for m, n in zip(mels, norms)]
        out: list[Units | None] = [None] * len(mels)
        groups: dict[int, list[int]] = {}
        for i, mel in enumerate(mels):
            groups.setdefault(-(-mel.shape[1] // STRIDE) * STRIDE, []).append(i)
        for padded, members in groups.items():
            per_batch = max(1, MAX_BATCH_FRAMES // padded)
            for start in range(0, len(members), per_batch):
                chunk = members[start:start + per_batch]
                batch = np.zeros((len(chunk), self.spec.n_mels, padded), dtype=np.float32)
                for row, i in enumerate(chunk):
                    # pad the encoder input with zeros, exactly as the model pads inside
                    norm = self.model.encoder_input(torch.from_numpy(mels[i])[None], norms[i])[0].numpy()
                    batch[row, :, :mels[i].shape[1]] = norm
                enc = self.model.encode_normalized(torch.from_numpy(batch).to(self.device))
                for row, i in enumerate(chunk):
                    out[i] = self._units(enc, row, mels[i].shape[1])
        return out

    def _norm(self, stats: tuple[np.ndarray, np.ndarray] | None) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Speaker statistics as the model's ``norm`` (1, n_mels) tensors; None without ``speaker_norm``."""
        if not self.speaker_norm or stats is None:
            return None
        mean, std = (torch.as_tensor(np.asarray(a, dtype=np.float32)).reshape(1, -1) for a in stats)
        if mean.shape[1] != self.spec.n_mels or std.shape[1] != self.spec.n_mels:
            raise UserError(f"speaker statistics of {mean.shape[1]} bands for a {self.spec.n_mels}-band model")
        return mean, std

    @torch.no_grad()
    def normalize_tract(self, mel: np.ndarray, search: float,
                        norm: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[np.ndarray, float]:
        """(n_mels, T) log-mel -> (the mel the encoder sees, its stretch factor): with ``search`` > 0
        (``conversion.tract_search``) the stretch in [1/(1+search), 1+search] whose encoding fits
        the codebook best (``VQVAE2.tract_fit``), else the mel itself and 1."""
        factors = tract_factors(search)
        if len(factors) == 1:
            return mel, 1.0
        x = torch.from_numpy(mel)[None].to(self.device)
        per_pass = max(1, MAX_BATCH_FRAMES // mel.shape[1])
        errors = torch.cat([self.model.tract_fit(x, factors[i:i + per_pass], self.spec.f_min, self.spec.f_max, norm).cpu()
                            for i in range(0, len(factors), per_pass)])
        best = factors[int(errors.argmin())]
        if float(best) == 1.0:
            return mel, 1.0
        warped = warp_frequency(x, best[None], self.spec.f_min, self.spec.f_max)[0]
        return warped.float().cpu().numpy(), float(best)

    def _units(self, enc, row: int, num_frames: int) -> Units:
        tb, tt = VQVAE2.code_lengths(num_frames)
        top_vec = enc.top.quantized[row, :, :tt].repeat_interleave(2, dim=-1)[:, :tb]
        return Units(bottom_ids=enc.bottom.ids[row, :tb].cpu().numpy(), top_ids=enc.top.ids[row, :tt].cpu().numpy(),
                     bottom_vectors=_rows(enc.bottom.quantized[row, :, :tb]), top_vectors=_rows(top_vec),
                     prequant=_rows(enc.prequant[row, :, :tb]), num_frames=int(num_frames))

    def encode_mel(self, mel: np.ndarray) -> Units:
        return self.encode_mels([mel])[0]

    def encode_audio(self, audio: np.ndarray, tract_search: float = 0.0,
                     stats: tuple[np.ndarray, np.ndarray] | None = None) -> Units:
        """Float audio at ``spec.sample_rate`` (peak-normalised inside, like the features) -> Units
        (``stats``: its speaker's, see ``encode_mels``)."""
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 1 or audio.size == 0:
            raise UserError(f"expected non-empty mono audio, got shape {audio.shape}")
        if not np.all(np.isfinite(audio)):
            raise UserError("audio contains NaN or infinite samples")
        return self.encode_mels([logmel(audio, self.spec)], tract_search, [stats])[0]

    def encode_source(self, audio: np.ndarray, tract_search: float = 0.0,
                      stats: tuple[np.ndarray, np.ndarray] | None = None) -> Units:
        """The units a conversion decodes: the source encoded in the stretch that fits the codebook
        best within ``tract_search`` (``conversion.tract_search``; 0: the source as it is). Unit
        files, ``zs2020 encode`` and the ``units`` tools encode without it: on the demo's short ABX
        excerpts it cost 1.9 points of ABX (docs/results/tract_search.md)."""
        return self.encode_audio(audio, tract_search, stats)

    def encode_wav(self, path: str | os.PathLike) -> Units:
        return self.encode_audio(read_wav(path, self.spec.sample_rate))

    @torch.no_grad()
    def decode(self, top_ids, bottom_ids, speaker: str, num_frames: int) -> np.ndarray:
        """Codes + target speaker -> (n_mels, num_frames) log-mel in that speaker's voice."""
        spk = self.speaker_id(speaker)
        top = torch.as_tensor(np.asarray(top_ids), dtype=torch.long, device=self.device)[None]
        bottom = torch.as_tensor(np.asarray(bottom_ids), dtype=torch.long, device=self.device)[None]
        tb, tt = VQVAE2.code_lengths(int(num_frames))
        if top.shape[-1] != tt or bottom.shape[-1] != tb:
            raise UserError(f"{num_frames} frames need {tt} top and {tb} bottom codes, "
                            f"got {top.shape[-1]} and {bottom.shape[-1]}")
        for name, ids, k in (("top", top, self.model.cfg.top_codes), ("bottom", bottom, self.model.cfg.bottom_codes)):
            if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= k):
                raise UserError(f"{name} code ids must lie in [0, {k})")
        mel = self.model.decode_codes(top, bottom, torch.tensor([spk], device=self.device), int(num_frames))
        return mel[0].float().cpu().numpy()

    def decode_units(self, units: Units, speaker: str) -> np.ndarray:
        return self.decode(units.top_ids, units.bottom_ids, speaker, units.num_frames)

    def reconstruct(self, mel: np.ndarray, audio: np.ndarray, speaker: str) -> np.ndarray:
        """An utterance's log-mel as the decoder renders it in ``speaker``'s voice (the vocoder's
        training input; ``audio`` is unused here, the VQMIVC takes its pitch from it). The mel is
        a training speaker's, inside the range the codebook was learnt on, so it is encoded
        without the tract search (it stretched 11 and 12 of V002's 80 utterances in two demo runs)."""
        stats = None
        if self.speaker_norm:
            i = self.speaker_id(speaker)
            stats = (self.model.speaker_mean[i].cpu().numpy(), self.model.speaker_std[i].cpu().numpy())
        return self.decode_units(self.encode_mels([mel], stats=[stats])[0], speaker)

    # ------------------------------------------------------------------ self-description
    AUX_DESCRIPTIONS = [
        "Top-level VQ-VAE-2 code vectors (one every 40 ms), each repeated twice so that the file has "
        "one line per 20 ms like the test/ unit files.",
        "Bottom-level encoder outputs before vector quantization (continuous, one per 20 ms).",
    ]

    def description(self, vocoder: str) -> str:
        """One paragraph for the submission's metadata; ``vocoder`` says what renders the mels."""
        m, spec = self.model.cfg, self.spec
        hop_ms = 1000 * spec.hop_length / spec.sample_rate
        return (f"VQ-VAE-2 with two codebook levels on {spec.n_mels}-band log-mel features ({hop_ms:g} ms hop): "
                f"bottom codes every {2 * hop_ms:g} ms (K={m.bottom_codes}, {m.bottom_dim}-dim), top codes every "
                f"{4 * hop_ms:g} ms (K={m.top_codes}). The decoder is conditioned on a learned speaker embedding "
                f"({m.num_speakers} training speakers); for synthesis the units of the source are decoded with "
                f"the target voice's embedding into a mel spectrogram, rendered by {vocoder}. Unit files hold the "
                f"bottom-level code vectors, one line per {2 * hop_ms:g} ms. Trained {self.step} VQ-VAE steps "
                f"with the zs2020 pipeline, no external data."
                + (" The encoders read each speaker's log-mel standardised by that speaker's per-band mean and "
                   "standard deviation (test speakers: over their test files, speaker = file name prefix)."
                   if self.speaker_norm else ""))

    def hyperparameters(self) -> dict:
        config = self.config    # the plain config stored in the checkpoint
        return {"features": config["features"], "seed": config["seed"],
                "vqvae": {"preset": config["name"], "steps_trained": self.step,
                          "model": dataclasses.asdict(self.model.cfg), "settings": config["vqvae"]}}

    @property
    def languages(self) -> list[str]:
        return list(self.meta_languages)


def _rows(x: torch.Tensor) -> np.ndarray:
    """(D, T) tensor -> (T, D) float32 numpy."""
    return x.transpose(0, 1).float().cpu().numpy().astype(np.float32)


def vqvae_from_parts(meta: dict, state: dict, config: dict, step: int, where: str | os.PathLike,
                     device: str | torch.device = "cpu") -> VQVAE:
    """A VQ-VAE-2 system from a checkpoint's meta (model settings, feature spec, speakers,
    languages) and weights: its own checkpoint, or the one of a vocoder that fine-tuned it."""
    try:
        cfg = VQVAE2Config(**known_arguments(VQVAE2Config, meta["model"]))
        spec = FeatureSpec.from_dict(meta["feature_spec"])
        model = VQVAE2(cfg)
        model.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise UserError(f"{where}: incompatible VQ-VAE checkpoint ({' '.join(str(exc).split())[:120]})") from None
    device = torch.device(device)
    return VQVAE(model.to(device), spec, meta["speakers"], config, device, Path(where), step, meta.get("languages"))


def load_vqvae(checkpoint: str | os.PathLike, device: str | torch.device = "cpu") -> VQVAE:
    """Rebuild the model from the checkpoint's own meta (never from the current presets)."""
    ckpt = load_checkpoint(checkpoint, kind=KIND, models=("vqvae",))
    return vqvae_from_parts(ckpt["meta"], ckpt["models"]["vqvae"], ckpt["config"], ckpt["step"], checkpoint, device)
