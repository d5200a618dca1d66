"""Baseline features scored beside every submission, on the same items in the same run: MFCC
with deltas and log-mel, both from the dataset's wavs through the one feature extractor."""
from __future__ import annotations

import numpy as np
from tqdm import tqdm

from models.featurespec import FeatureSpec
from pipeline.contract.dataset import Utterance
from pipeline.features import logmel

BASELINES = ("mfcc", "logmel")


def deltas(features: np.ndarray, width: int = 2) -> np.ndarray:
    """Regression deltas over +-width frames (edges repeated), for (frames, dim) arrays."""
    padded = np.pad(features, ((width, width), (0, 0)), mode="edge")
    n = len(features)
    num = sum(k * (padded[width + k:width + k + n] - padded[width - k:width - k + n]) for k in range(1, width + 1))
    return num / (2 * sum(k * k for k in range(1, width + 1)))


def baseline_features(audio: np.ndarray, spec: FeatureSpec) -> dict[str, np.ndarray]:
    """(frames, dim) per baseline: ``logmel`` = our log-mel (the one front end); ``mfcc`` = its
    first 13 DCT-II coefficients + deltas + delta-deltas (39 dims, no normalisation)."""
    mel = logmel(audio, spec).T.astype(np.float64)
    from scipy.fft import dct    # here: scipy's import is a tenth of a second that scores without baselines skip
    cep = dct(mel, type=2, norm="ortho", axis=1)[:, :13]
    d1 = deltas(cep)
    return {"logmel": mel, "mfcc": np.concatenate([cep, d1, deltas(d1)], axis=1)}


def compute_baselines(utterances: dict[str, Utterance], spec: FeatureSpec,
                      progress: bool = True) -> dict[str, dict[str, np.ndarray]]:
    """Baseline features of every utterance (stem -> Utterance), per baseline."""
    out: dict[str, dict[str, np.ndarray]] = {kind: {} for kind in BASELINES}
    for stem, utt in tqdm(utterances.items(), desc="baseline features", unit="wav", leave=False, disable=not progress):
        for kind, feats in baseline_features(utt.read(spec.sample_rate), spec).items():
            out[kind][stem] = feats
    return out
