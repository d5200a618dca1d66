"""Fixtures for the vocoder and conversion tests: very short extra MelGAN runs on the session's
tiny features (the conftest ``tiny_melgan`` is the normal tiny preset run)."""
from __future__ import annotations

import pytest

# A few steps, no samples or validation: enough to test resume and metadata, in seconds.
SHORT = ("melgan.train.warmup_steps=2", "melgan.train.checkpoint_every=2", "melgan.train.log_every=1",
         "melgan.train.validate_every=0", "melgan.train.num_samples=0")


def short_config(base: dict, steps: int, *extra: str) -> dict:
    return base.replace((*SHORT, f"melgan.train.steps={steps}", *extra))


@pytest.fixture(scope="module")
def conditioned_melgan(tiny_features, tiny_corpus, tiny_config, tmp_path_factory):
    """A speaker-conditioned vocoder (knows V001 and V002 only), trained 2 steps."""
    from pipeline.train.melgan import train
    config = short_config(tiny_config, 2, "melgan.speaker_conditioned=true")
    return train(tiny_features, tiny_corpus, tmp_path_factory.mktemp("melgan_cond"), config, progress=False)
