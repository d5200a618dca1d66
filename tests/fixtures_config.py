"""The tiny preset and its feature spec, for tests that need them outside fixtures."""
from __future__ import annotations

from pipeline.core.config import load_config
from pipeline.features import feature_spec

TINY = load_config("tiny")
SPEC = feature_spec(TINY)
