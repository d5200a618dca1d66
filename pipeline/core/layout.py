"""Where every stage's outputs live inside a run folder (``data/runs/<config>`` by default).

    RUN/features/<language>.h5         log-mel features (zs2020 features)
    RUN/vqvae/checkpoint.pt            the unit system (zs2020 train-vqvae), history, curves
    RUN/melgan/checkpoint.pt           the target-voice vocoder (zs2020 train-melgan), samples
    RUN/melgan_universal/checkpoint.pt a vocoder for every training voice (train-melgan with
                                       melgan.train.speakers=all), for one-shot conversion
    RUN/submission/, RUN/submission.zip
    RUN/evaluation/                    scores.json, report.md, plots
    RUN/units_cache/<language>/        encoded dataset splits (zs2020 units)
    RUN/units/                         unit reports and plots

Every stage asks this module for its paths; nothing else spells them out.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CHECKPOINT_NAME = "checkpoint.pt"


@dataclass(frozen=True)
class RunLayout:
    root: Path

    @classmethod
    def of(cls, root: str | os.PathLike) -> "RunLayout":
        return cls(Path(root))

    @property
    def features_dir(self) -> Path:
        return self.root / "features"

    def features_file(self, language: str) -> Path:
        return self.features_dir / f"{language}.h5"

    def model_dir(self, kind: str) -> Path:
        """``vqvae`` (the unit system) or ``melgan`` (the vocoder)."""
        return self.root / kind

    def checkpoint(self, kind: str) -> Path:
        return self.model_dir(kind) / CHECKPOINT_NAME

    @property
    def vqvae_checkpoint(self) -> Path:
        return self.checkpoint("vqvae")

    @property
    def melgan_checkpoint(self) -> Path:
        return self.checkpoint("melgan")

    @property
    def universal_melgan_checkpoint(self) -> Path:
        return self.checkpoint("melgan_universal")

    @property
    def checkpoints(self) -> list[Path]:
        """Every trained model of the run (the ones that exist or not)."""
        return [self.vqvae_checkpoint, self.melgan_checkpoint, self.universal_melgan_checkpoint]

    @property
    def submission_dir(self) -> Path:
        return self.root / "submission"

    @property
    def submission_zip(self) -> Path:
        return self.root / "submission.zip"

    @property
    def evaluation_dir(self) -> Path:
        return self.root / "evaluation"

    def units_cache(self, language: str, split: str) -> Path:
        return self.root / "units_cache" / language / (split.replace("/", "_") + ".npz")

    @property
    def units_report_dir(self) -> Path:
        return self.root / "units"


def checkpoint_in(folder: str | os.PathLike) -> Path:
    """The checkpoint file of a training output folder."""
    return Path(folder) / CHECKPOINT_NAME
