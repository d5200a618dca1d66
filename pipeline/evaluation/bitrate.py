"""Bitrate exactly as the official ZeroSpeech 2019 evaluation (zerospeech2020 ``bitrate.py``).

Every non-blank line of a unit file is one symbol token; two tokens are the same symbol when
their float tuples are equal (``1 0`` == ``1.0 0.0``). Counts are pooled over all files of the
bitrate file list: N = number of tokens, H = -sum p log2 p of the pooled histogram, D = sum of
the durations *written in the list* for the files that were read. Bitrate = N * H / D.
Files of the list that are missing are skipped (as officially), and reported.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.core.errors import UserError


@dataclass
class BitrateResult:
    bitrate: float          # bits per second
    entropy: float          # bits per symbol token
    tokens: int             # N
    symbols: int            # distinct symbols
    duration: float         # D, seconds
    files: int              # files read
    missing: list[str]      # listed files that were not found

    def to_json(self) -> dict:
        return {"bitrate": round(self.bitrate, 4), "entropy_bits": round(self.entropy, 4),
                "tokens": self.tokens, "symbols": self.symbols, "duration_s": round(self.duration, 4),
                "files": self.files, "missing_files": len(self.missing)}


def entropy_bits(counts: np.ndarray) -> float:
    counts = np.asarray(counts, dtype=np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def bitrate(units: dict[str, np.ndarray], listed: list[tuple[str, float | None]]) -> BitrateResult:
    """``units``: file name -> (lines, dim) array; ``listed``: the bitrate list rows (name, duration)."""
    arrays, duration, missing = [], 0.0, []
    for name, dur in listed:
        if name not in units:
            missing.append(name)
            continue
        if dur is None:
            raise UserError(f"bitrate file list has no duration for {name}")
        arrays.append(np.asarray(units[name], dtype=np.float64))
        duration += dur
    if not arrays:
        raise UserError("none of the files of the bitrate list was found")
    dims = {a.shape[1] for a in arrays}
    if len(dims) > 1:
        raise UserError(f"bitrate files have different numbers of columns: {sorted(dims)}")
    tokens = np.concatenate(arrays) + 0.0    # -0.0 and 0.0 are the same float
    _, counts = np.unique(tokens, axis=0, return_counts=True)
    h = entropy_bits(counts)
    return BitrateResult(len(tokens) * h / duration, h, len(tokens), len(counts), duration, len(arrays), missing)
