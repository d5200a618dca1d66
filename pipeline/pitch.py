"""Pitch features on the log-mel's frames (for the VQMIVC decoder): Praat's autocorrelation
pitch (praat-parselmouth) read at the centre of every 10 ms frame of ``models.logmel`` (frame k
covers samples [k * hop, (k + 1) * hop)), so an utterance gives exactly as many pitch frames as
log-mel frames.

Two channels per frame: log-F0 normalised over the utterance's voiced frames (mean 0, std 1),
0 where unvoiced, and the voiced flag (1/0). Normalising per utterance keeps the intonation and
drops the speaker's pitch level: the decoder takes the level from the speaker vector. Frames
more than an octave from the utterance's median F0 are octave errors and count as unvoiced.
"""
from __future__ import annotations

import numpy as np

from models.featurespec import FeatureSpec
from models.vqmivc import PITCH_CHANNELS

MAX_NORMALISED = 5.0   # normalised log-F0 is clipped to +-5 (a nearly flat contour has a tiny std)
PITCH_FLOOR_HZ = 60.0  # the pitch range Praat searches when VQMIVC trains (checkpoints store theirs)
PITCH_CEILING_HZ = 500.0
OCTAVE = float(np.log(2.0))


def pitch_features(audio: np.ndarray, spec: FeatureSpec, floor_hz: float, ceiling_hz: float) -> np.ndarray:
    """Float audio at ``spec.sample_rate`` -> (2, ceil(len / hop)) float32: normalised log-F0,
    voiced flag. Audio too short for Praat's analysis window is all unvoiced."""
    import parselmouth   # imported here: only the VQMIVC system needs it

    audio = np.asarray(audio, dtype=np.float64).reshape(-1)
    frames = spec.num_frames(len(audio))
    out = np.zeros((PITCH_CHANNELS, frames), dtype=np.float32)
    if frames == 0 or not np.any(audio):
        return out
    period = spec.hop_length / spec.sample_rate
    try:
        sound = parselmouth.Sound(audio, sampling_frequency=spec.sample_rate)
        pitch = sound.to_pitch_ac(time_step=period, pitch_floor=floor_hz, pitch_ceiling=ceiling_hz)
    except parselmouth.PraatError:
        return out
    f0 = pitch.selected_array["frequency"]
    if len(f0) == 0:
        return out
    centres = (np.arange(frames) + 0.5) * period
    index = np.rint((centres - pitch.t1) / pitch.dt).astype(np.int64)
    inside = (index >= 0) & (index < len(f0))
    hz = np.zeros(frames)
    hz[inside] = f0[index[inside]]
    voiced = hz > 0
    if voiced.any():
        # frames more than an octave from the median are octave errors (Praat finds spurious
        # F0 near the ceiling in fricatives): counted as unvoiced
        voiced &= np.abs(np.log(np.where(voiced, hz, 1.0) / np.median(hz[voiced]))) <= OCTAVE
        lf0 = np.log(hz[voiced])
        std = lf0.std()
        norm = (lf0 - lf0.mean()) / std if std > 1e-6 else np.zeros_like(lf0)
        out[0, voiced] = np.clip(norm, -MAX_NORMALISED, MAX_NORMALISED)
        out[1, voiced] = 1.0
    return out
