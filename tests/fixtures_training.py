"""Helpers for training tests: an interrupted run, as a kill right after a checkpoint leaves it."""
from __future__ import annotations

import pytest

from pipeline.core import training


def train_until_first_checkpoint(train, monkeypatch, *args, **kwargs) -> None:
    """Run ``train(*args, **kwargs)`` and kill it (KeyboardInterrupt) right after its first
    checkpoint is written; the next ``train`` call on the same folder resumes from there."""
    real_save = training.TrainLoop.save

    def save_then_die(self):
        real_save(self)
        raise KeyboardInterrupt

    monkeypatch.setattr(training.TrainLoop, "save", save_then_die)
    try:
        with pytest.raises(KeyboardInterrupt):
            train(*args, **kwargs)
    finally:
        monkeypatch.setattr(training.TrainLoop, "save", real_save)
