"""Reading and writing 16 kHz mono 16-bit PCM wavs, with one-line errors for bad files."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf

from pipeline.errors import UserError
from pipeline.io import atomic_path

SAMPLE_RATE = 16000


def read_wav(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE, allow_empty: bool = False) -> np.ndarray:
    """Read a mono wav as float32 in [-1, 1].

    Raises UserError (one line naming the file) for a missing, unreadable, non-mono,
    wrong-rate or empty file. No silent resampling: a wrong rate means a wrong dataset.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such audio file")
    try:
        info = sf.info(str(path))
    except Exception as exc:  # soundfile raises RuntimeError/LibsndfileError for corrupt files
        raise UserError(f"{path}: not a readable audio file ({_short(exc)})") from None
    if info.samplerate != sample_rate:
        raise UserError(f"{path}: sample rate is {info.samplerate} Hz, expected {sample_rate} Hz")
    if info.channels != 1:
        raise UserError(f"{path}: has {info.channels} channels, expected mono")
    try:
        audio, _ = sf.read(str(path), dtype="float32", always_2d=False)
    except Exception as exc:
        raise UserError(f"{path}: corrupt audio data ({_short(exc)})") from None
    if audio.size == 0 and not allow_empty:
        raise UserError(f"{path}: audio is empty")
    if not np.all(np.isfinite(audio)):
        raise UserError(f"{path}: audio contains NaN or infinite samples")
    return audio


def write_wav(path: str | os.PathLike, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write float audio as 16-bit PCM mono, atomically. Values are clipped to [-1, 1]."""
    audio = np.clip(np.asarray(audio, dtype=np.float32).reshape(-1), -1.0, 1.0)
    with atomic_path(path) as tmp:
        sf.write(str(tmp), audio, sample_rate, subtype="PCM_16", format="WAV")


def peak_normalize(audio: np.ndarray, peak: float) -> np.ndarray:
    """Scale so that max |x| == peak (silence is returned unchanged)."""
    top = float(np.max(np.abs(audio))) if audio.size else 0.0
    return audio if top <= 0.0 else (audio * (peak / top)).astype(np.float32)


def loudness_normalize(audio: np.ndarray, target_dbfs: float = -23.0, peak_limit: float = 0.99) -> np.ndarray:
    """RMS loudness normalisation to ``target_dbfs`` with a peak limit (no clipping)."""
    rms = float(np.sqrt(np.mean(np.square(audio)))) if audio.size else 0.0
    if rms <= 1e-9:
        return audio.astype(np.float32)
    out = audio * (10.0 ** (target_dbfs / 20.0) / rms)
    top = float(np.max(np.abs(out)))
    if top > peak_limit:
        out = out * (peak_limit / top)
    return out.astype(np.float32)


def _short(exc: Exception) -> str:
    return " ".join(str(exc).split())[:160]
