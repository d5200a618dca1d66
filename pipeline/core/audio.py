"""Reading and writing 16 kHz mono 16-bit PCM wavs, with one-line errors for bad files.

Every read checks the rate, the channel count, finite samples, and completeness: a wav whose
data chunk promises more bytes than the file holds (a cut-off download or copy) is refused,
not silently read short. Inputs longer than ``MAX_AUDIO_SECONDS`` are refused, which bounds
the memory of every stage (the longest ZeroSpeech 2019 test utterance is well under a minute).
``header_problem`` is the validator's stricter reading of a header, ``broken_audio`` the one rule
for a waveform no working vocoder makes (training, conversion and the validator apply it).
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


# What no working vocoder writes (``broken_audio``), for waveforms in [-1, 1]:
# * saturated: most samples pinned at full scale (a tanh output in its rails, DC or square wave),
#   or a standard deviation above 0.5, i.e. a crest factor under 2 (6 dB), which speech never
#   has (peak-normalised to 0.95 as training sees it, the tiny corpus stays below 0.31 RMS over
#   any 250 ms);
# * silent: a standard deviation below 1e-4 (-80 dB, about 3 steps of 16-bit PCM; a constant is
#   silence too): loudness normalisation would only amplify a dead vocoder's floor noise.
# Measured on each training batch of the tiny preset: healthy runs (waveform and istft heads,
# rates up to 10x the preset's) keep the deviation within 0.002-0.15 and pin no sample;
# a generator rate of 1 (melgan.train.lr=1) gives 0.57 after its first update at that rate, then
# pins 100 % of the samples; 0.1 pins 99-100 %.
FULL_SCALE = 0.999
MAX_PINNED = 0.5
LOUD_STD = 0.5
DEAD_STD = 1e-4


def broken_audio(audio: np.ndarray) -> str | None:
    """Why a waveform (floats in [-1, 1]) is garbage: "non-finite ...", "saturated ..." or
    "silent ...", or None."""
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    if audio.size == 0:
        return None
    if not np.all(np.isfinite(audio)):
        return "non-finite (NaN or infinite samples)"
    pinned = float(np.mean(np.abs(audio) >= FULL_SCALE))
    if pinned > MAX_PINNED:
        return f"saturated ({pinned:.0%} of the samples at full scale)"
    std = float(np.std(audio, dtype=np.float64))
    if std > LOUD_STD:
        return f"saturated (standard deviation {std:.2f} of full scale: louder than speech)"
    if audio.min() == audio.max():
        return f"silent (every sample is {audio[0]:.4g})"
    if std < DEAD_STD:
        return f"silent (standard deviation {std:.1e}, below -80 dB)"
    return None


def _is_riff_wave(head: bytes) -> bool:
    return len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WAVE"


def _chunks(head: bytes):
    """(id, offset of its payload, declared size) of each RIFF chunk whose header lies in ``head``."""
    pos = 12
    while pos + 8 <= len(head):
        chunk, size = head[pos:pos + 4], struct.unpack("<I", head[pos + 4:pos + 8])[0]
        yield chunk, pos + 8, size
        pos += 8 + size + (size & 1)


def declared_data_bytes(head: bytes) -> tuple[int, int] | None:
    """(offset of the data chunk's samples, bytes it declares) from a RIFF/WAVE header, or None
    when the header cannot be parsed (then libsndfile's own checks apply)."""
    if not _is_riff_wave(head):
        return None
    return next(((offset, size) for chunk, offset, size in _chunks(head) if chunk == b"data"), None)


def truncation(head: bytes, file_size: int, streaming_ok: bool = True) -> str | None:
    """Why a wav is incomplete (its data chunk runs past the end of the file), or None.
    ``streaming_ok``: the sizes 0 and 2**32 - 1 that streaming writers leave are no claim."""
    declared = declared_data_bytes(head)
    if declared is None or (streaming_ok and declared[1] in (0, 0xFFFFFFFF)):
        return None
    offset, size = declared
    if offset + size > file_size:
        return f"truncated: the header declares {size} bytes of samples, the file holds {max(0, file_size - offset)}"
    return None


def header_problem(raw: bytes) -> str | None:
    """Why a whole wav file's RIFF header is impossible, or None: what a finished writer never
    leaves (sizes beyond the file, no channels, no rate, fields that contradict each other).
    Not RIFF/WAVE at all: None (libsndfile names the format)."""
    if not _is_riff_wave(raw):
        return None
    cut = truncation(raw, len(raw), streaming_ok=False)
    if cut:
        return cut
    riff = struct.unpack("<I", raw[4:8])[0] + 8
    if riff > len(raw):
        return f"impossible header: it declares a {riff}-byte file, the file holds {len(raw)} bytes"
    fmt = next((raw[offset:offset + size] for chunk, offset, size in _chunks(raw) if chunk == b"fmt "), b"")
    if len(fmt) < 16:
        return "impossible header: no complete fmt chunk"
    tag, channels, rate, byte_rate, align, bits = struct.unpack("<HHIIHH", fmt[:16])
    if not (channels and rate and bits):
        return f"impossible header: {channels} channel(s), {rate} Hz, {bits} bits per sample"
    # PCM, float and extensible: one frame is channels x whole bytes (compressed codecs differ)
    if tag in (1, 3, 0xFFFE) and (align != channels * -(-bits // 8) or byte_rate != rate * align):
        return (f"impossible header: block align {align} and byte rate {byte_rate} contradict {channels} "
                f"channel(s) of {bits} bits at {rate} Hz")
    return None


def _check_length(name, frames: int, sample_rate: int) -> None:
    if frames > MAX_AUDIO_SECONDS * sample_rate:
        raise UserError(f"{name}: {frames / sample_rate:.0f} s of audio; inputs are limited to "
                        f"{MAX_AUDIO_SECONDS} s (split longer recordings)")


def wav_info(path: str | os.PathLike):
    """soundfile's header of an audio file (rate, channels, frames); a missing or corrupt file
    is one UserError naming it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such audio file")
    try:
        return sf.info(str(path))
    except Exception as exc:  # soundfile raises RuntimeError/LibsndfileError for corrupt files
        raise UserError(f"{path}: not a readable audio file ({_short(exc)})") from None


def read_wav(path: str | os.PathLike, sample_rate: int, allow_empty: bool = False) -> np.ndarray:
    """Read a mono wav as float32 in [-1, 1].

    Raises UserError (one line naming the file) for a missing, unreadable, non-mono,
    wrong-rate or empty file. No silent resampling: a wrong rate means a wrong dataset.
    """
    path = Path(path)
    info = wav_info(path)
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
