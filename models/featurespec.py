"""The log-mel front end's settings (``FeatureSpec``), apart from the tensor code of
``models.logmel`` so that readers of features, unit files and scores (``zs2020 evaluate``) can
name a spec without importing torch."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class FeatureSpec:
    """The front end's settings (the config's ``features`` section and the constants beside
    ``pipeline.features.feature_spec``; stored in every features file and checkpoint)."""
    sample_rate: int
    n_fft: int
    win_length: int
    hop_length: int
    n_mels: int
    f_min: float
    f_max: float
    log_floor: float
    peak_norm: float

    @classmethod
    def from_dict(cls, data: dict) -> "FeatureSpec":
        fields = {f.name: f.type for f in dataclasses.fields(cls)}
        if set(data) != set(fields):
            raise ValueError(f"feature spec keys differ: missing {sorted(set(fields) - set(data))}, "
                             f"unknown {sorted(set(data) - set(fields))}")
        return cls(**{name: (int if kind in ("int", int) else float)(data[name]) for name, kind in fields.items()})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def num_frames(self, num_samples: int) -> int:
        return math.ceil(num_samples / self.hop_length)

    @property
    def frame_period(self) -> float:
        return self.hop_length / self.sample_rate
