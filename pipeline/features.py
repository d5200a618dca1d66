"""Log-mel features: extraction from audio (the one implementation, via models.logmel)."""
from __future__ import annotations

import functools
import os

import numpy as np
import torch

from models.logmel import FeatureSpec, LogMel
from pipeline.audio import peak_normalize, read_wav


@functools.lru_cache(maxsize=4)
def _extractor(spec: FeatureSpec) -> LogMel:
    return LogMel(spec).eval()


def prepare_audio(audio: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """The waveform normalisation every stage applies before features (peak to spec.peak_norm)."""
    return peak_normalize(np.asarray(audio, dtype=np.float32), spec.peak_norm)


def logmel(audio: np.ndarray, spec: FeatureSpec = FeatureSpec()) -> np.ndarray:
    """float audio at spec.sample_rate -> (n_mels, ceil(len / hop)) float32 log10 mel."""
    with torch.no_grad():
        wav = torch.from_numpy(prepare_audio(audio, spec))
        return _extractor(spec)(wav)[0].numpy().astype(np.float32)


def wav_to_logmel(path: str | os.PathLike, spec: FeatureSpec = FeatureSpec()) -> np.ndarray:
    return logmel(read_wav(path, spec.sample_rate), spec)
