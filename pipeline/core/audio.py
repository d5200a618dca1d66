"""Reading and writing 16 kHz mono 16-bit PCM wavs, with one-line errors for bad files.

Every read checks the rate, the channel count, finite samples, and completeness: a wav whose
data chunk promises more bytes than the file holds (a cut-off download or copy) is refused,
not silently read short. Inputs longer than ``MAX_AUDIO_SECONDS`` are refused, which bounds
the memory of every stage (the longest ZeroSpeech 2019 test utterance is well under a minute).
"""
from __future__ import annotations

import io
import os
import struct
from pathlib import Path

import numpy as np
import soundfile as sf

from pipeline.core.errors import UserError
from pipeline.core.io import atomic_path

MAX_AUDIO_SECONDS = 300


def declared_data_bytes(head: bytes) -> tuple[int, int] | None:
    """(offset of the data chunk's samples, bytes it declares) from a RIFF/WAVE header, or None
    when the header cannot be parsed (then libsndfile's own checks apply)."""
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos = 12
    while pos + 8 <= len(head):
        chunk, size = head[pos:pos + 4], struct.unpack("<I", head[pos + 4:pos + 8])[0]
        if chunk == b"data":
            return pos + 8, size
        pos += 8 + size + (size & 1)
    return None


def truncation(head: bytes, file_size: int) -> str | None:
    """Why a wav is incomplete (its data chunk runs past the end of the file), or None."""
    declared = declared_data_bytes(head)
    if declared is None or declared[1] in (0, 0xFFFFFFFF):     # streaming writers leave 0 / -1
        return None
    offset, size = declared
    if offset + size > file_size:
        return f"truncated: the header declares {size} bytes of samples, the file holds {max(0, file_size - offset)}"
    return None


def _check_length(name, frames: int, sample_rate: int) -> None:
    if frames > MAX_AUDIO_SECONDS * sample_rate:
        raise UserError(f"{name}: {frames / sample_rate:.0f} s of audio; inputs are limited to "
                        f"{MAX_AUDIO_SECONDS} s (split longer recordings)")


def read_wav(path: str | os.PathLike, sample_rate: int, allow_empty: bool = False) -> np.ndarray:
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
    _check_length(path, info.frames, sample_rate)
    with open(path, "rb") as handle:
        cut = truncation(handle.read(1 << 16), path.stat().st_size)
    if cut:
        raise UserError(f"{path}: {cut}")
    try:
        audio, _ = sf.read(str(path), dtype="float32", always_2d=False)
    except Exception as exc:
        raise UserError(f"{path}: corrupt audio data ({_short(exc)})") from None
    if audio.size == 0 and not allow_empty:
        raise UserError(f"{path}: audio is empty")
    if not np.all(np.isfinite(audio)):
        raise UserError(f"{path}: audio contains NaN or infinite samples")
    return audio


def decode_wav(raw: bytes, sample_rate: int, name: str) -> np.ndarray:
    """A wav file's bytes -> mono float32 in [-1, 1] (the same checks as ``read_wav``)."""
    cut = truncation(raw[:1 << 16], len(raw))
    if cut:
        raise UserError(f"{name}: {cut}")
    try:
        info = sf.info(io.BytesIO(raw))
        audio, rate = sf.read(io.BytesIO(raw), dtype="float32", always_2d=False)
    except Exception as exc:
        raise UserError(f"{name}: not a readable audio file ({_short(exc)})") from None
    if rate != sample_rate:
        raise UserError(f"{name}: sample rate is {rate} Hz, expected {sample_rate} Hz")
    if audio.ndim != 1:
        raise UserError(f"{name}: has {audio.shape[1]} channels, expected mono")
    if audio.size == 0:
        raise UserError(f"{name}: audio is empty")
    _check_length(name, info.frames, sample_rate)
    if not np.all(np.isfinite(audio)):
        raise UserError(f"{name}: audio contains NaN or infinite samples")
    return audio


def write_wav(path: str | os.PathLike, audio: np.ndarray, sample_rate: int) -> None:
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
