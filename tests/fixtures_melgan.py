"""Helpers for the vocoder tests: the config of a very short extra MelGAN run on the session's
tiny features (the conftest ``tiny_melgan`` is the normal tiny preset run)."""
from __future__ import annotations

# A few steps, no samples or validation: enough to test resume and metadata, in seconds.
SHORT = ("melgan.train.warmup_steps=2", "melgan.train.checkpoint_every=2", "melgan.train.log_every=1",
         "melgan.train.validate_every=0", "melgan.train.num_samples=0")


def short_config(base: dict, steps: int, *extra: str) -> dict:
    return base.replace((*SHORT, f"melgan.train.steps={steps}", *extra))
