"""Encoding audio to units with a trained VQ-VAE-2, and decoding units back to a log-mel.

The API the other stages call::

    vq = load_vqvae("data/runs/demo/vqvae/checkpoint.pt")
    units = vq.encode_audio(audio)            # float audio at 16 kHz -> Units
    mel = vq.decode(units.top_ids, units.bottom_ids, "V001", units.num_frames)

Units of a T-frame (10 ms) input: ``bottom_*`` have ceil(T/2) rows (20 ms), ``top_ids`` has
ceil(T/4) (40 ms); nothing is padded. The encoder needs no speaker, so unseen speakers work.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
import torch
from tqdm import tqdm

from models.logmel import FeatureSpec
from models.vqvae2 import VQVAE2, VQVAE2Config
from pipeline.audio import read_wav
from pipeline.checkpoint import load_checkpoint
from pipeline.dataset import ALL_SPLITS, LANGUAGES, Dataset
from pipeline.errors import UserError
from pipeline.features import logmel
from pipeline.io import atomic_path
from pipeline.train_vqvae import KIND, speaker_key  # noqa: F401  (speaker_key: re-exported for callers)
from submission.unitfile import write_units


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


class VQVAE:
    """A trained VQ-VAE-2 ready for inference (eval mode, no gradients)."""

    def __init__(self, model: VQVAE2, spec: FeatureSpec, speakers: dict[str, int], config: dict,
                 device: torch.device, checkpoint: Path | None = None, step: int = 0):
        self.model = model.eval()
        self.spec = spec
        self.speakers = dict(speakers)
        self.config = config
        self.device = device
        self.checkpoint = checkpoint
        self.step = step

    @property
    def codebooks(self) -> tuple[np.ndarray, np.ndarray]:
        """(bottom (K_b, D), top (K_t, Dt)) code vectors."""
        return (self.model.quant_bottom.embed.cpu().numpy().copy(), self.model.quant_top.embed.cpu().numpy().copy())

    def speaker_id(self, speaker: str) -> int:
        if speaker not in self.speakers:
            known = ", ".join(sorted(self.speakers))
            raise UserError(f"unknown speaker {speaker!r}: the VQ-VAE knows {known}")
        return self.speakers[speaker]

    @torch.no_grad()
    def encode_mel(self, mel: np.ndarray) -> Units:
        """(n_mels, T) log-mel -> Units."""
        mel = np.asarray(mel, dtype=np.float32)
        if mel.ndim != 2 or mel.shape[0] != self.spec.n_mels or mel.shape[1] < 1:
            raise UserError(f"expected a log-mel of shape ({self.spec.n_mels}, frames >= 1), got {mel.shape}")
        enc = self.model.encode(torch.from_numpy(mel)[None].to(self.device))
        tb = enc.bottom.ids.shape[-1]
        top_vec = enc.top.quantized[0].repeat_interleave(2, dim=-1)[:, :tb]
        return Units(bottom_ids=enc.bottom.ids[0].cpu().numpy(), top_ids=enc.top.ids[0].cpu().numpy(),
                     bottom_vectors=_rows(enc.bottom.quantized[0]), top_vectors=_rows(top_vec),
                     prequant=_rows(enc.prequant[0]), num_frames=int(mel.shape[1]))

    def encode_audio(self, audio: np.ndarray) -> Units:
        """Float audio at ``spec.sample_rate`` (peak-normalised inside, like the features) -> Units."""
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 1 or audio.size == 0:
            raise UserError(f"expected non-empty mono audio, got shape {audio.shape}")
        if not np.all(np.isfinite(audio)):
            raise UserError("audio contains NaN or infinite samples")
        return self.encode_mel(logmel(audio, self.spec))

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


def _rows(x: torch.Tensor) -> np.ndarray:
    """(D, T) tensor -> (T, D) float32 numpy."""
    return x.transpose(0, 1).float().cpu().numpy().astype(np.float32)


def load_vqvae(checkpoint: str | os.PathLike, device: str | torch.device = "cpu") -> VQVAE:
    """Rebuild the model from the checkpoint's own meta (never from the current presets)."""
    checkpoint = Path(checkpoint)
    ckpt = load_checkpoint(checkpoint, kind=KIND)
    meta = ckpt["meta"]
    try:
        cfg = VQVAE2Config(**meta["model"])
        spec = FeatureSpec.from_dict(meta["feature_spec"])
        model = VQVAE2(cfg)
        model.load_state_dict(ckpt["models"]["vqvae"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise UserError(f"{checkpoint}: incompatible VQ-VAE checkpoint ({' '.join(str(exc).split())[:120]})") from None
    device = torch.device(device)
    return VQVAE(model.to(device), spec, meta["speakers"], ckpt["config"], device, checkpoint, ckpt["step"])


# ============================================================================ command

def _sources(wavs, folder, dataset_root, split, language) -> list[tuple[str, Path]]:
    """(output stem, wav path) of every input, in a stable order."""
    chosen = sum(bool(x) for x in (wavs, folder, dataset_root))
    if chosen != 1:
        raise UserError("give exactly one of --wav, --folder or --dataset")
    if wavs:
        items = [(Path(w).stem, Path(w)) for w in wavs]
        missing = [str(w) for _, w in items if not w.is_file()]
        if missing:
            raise UserError(f"{missing[0]}: no such audio file")
    elif folder:
        folder = Path(folder)
        if not folder.is_dir():
            raise UserError(f"{folder}: no such folder")
        items = [(p.stem, p) for p in sorted(folder.glob("*.wav"))]
        if not items:
            raise UserError(f"{folder}: no .wav files")
    else:
        ds = Dataset(dataset_root, language)
        items = [(u.utt_id, u.path) for u in ds.utterances(split)]
    stems = [s for s, _ in items]
    if len(set(stems)) != len(stems):
        raise UserError("two inputs have the same file name; outputs would overwrite each other")
    return items


def _up_to_date(out: Path, wav: Path, checkpoint: Path) -> bool:
    if not out.is_file():
        return False
    mtime = out.stat().st_mtime_ns
    return mtime >= wav.stat().st_mtime_ns and mtime >= checkpoint.stat().st_mtime_ns


def write_encoding(path: Path, units: Units, fmt: str) -> None:
    """npz: every Units array; txt: the bottom code vectors in the ZeroSpeech unit format."""
    if fmt == "npz":
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **units.arrays())
    else:
        write_units(path, units.bottom_vectors)


@click.command("encode", context_settings={"show_default": True})
@click.option("--checkpoint", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="VQ-VAE checkpoint (RUN/vqvae/checkpoint.pt).")
@click.option("--wav", "wavs", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="A wav file to encode (repeatable).")
@click.option("--folder", type=click.Path(file_okay=False, path_type=Path), help="Encode every .wav of this folder.")
@click.option("--dataset", "dataset_root", type=click.Path(file_okay=False, path_type=Path),
              help="Encode one split of a dataset (with --split and --language).")
@click.option("--split", type=click.Choice(ALL_SPLITS), default="test", help="Dataset split for --dataset.")
@click.option("--language", type=click.Choice(LANGUAGES), default="english", help="Dataset language for --dataset.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder: one <name>.npz or <name>.txt per input wav.")
@click.option("--format", "fmt", type=click.Choice(["npz", "txt"]), default="npz",
              help="npz: ids, code vectors, top vectors, pre-quantization features; "
                   "txt: bottom code vectors, one 20 ms frame per line (ZeroSpeech format).")
@click.option("--device", default="cpu", help="Torch device for the model (cpu, cuda, cuda:1, ...).")
@click.option("--force", is_flag=True, help="Re-encode files whose output is newer than the wav and checkpoint.")
def encode_command(checkpoint, wavs, folder, dataset_root, split, language, out_dir, fmt, device, force):
    """Encode wavs to discrete units with a trained VQ-VAE-2.

    Every output has exactly ceil(frames/2) rows for the bottom level (20 ms) and
    ceil(frames/4) top ids (40 ms): no padding. Unseen speakers are fine.
    """
    items = _sources(wavs, folder, dataset_root, split, language)
    vq = load_vqvae(checkpoint, device)
    out_dir.mkdir(parents=True, exist_ok=True)
    done = skipped = 0
    for stem, wav in tqdm(items, desc="encode", unit="utt", dynamic_ncols=True):
        out = out_dir / f"{stem}.{fmt}"
        if not force and _up_to_date(out, wav, checkpoint):
            skipped += 1
            continue
        write_encoding(out, vq.encode_wav(wav), fmt)
        done += 1
    click.echo(f"{out_dir}: {done} encoded, {skipped} up to date")

