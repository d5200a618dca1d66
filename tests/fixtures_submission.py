"""A hand-made valid submission for the validator tests (no trained model needed).

Unit files are one-hot rows of random codes, at 50 frames per second of the listed wav
duration; wavs are short 16 kHz mono 16-bit noise; both metadata files are written literally
here (not by the writer under test), so the validator is tested independently of the writer.
"""
from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline.contract.filelists import find_filelists
from pipeline.contract.names import LANGUAGES, SAMPLE_RATE
from pipeline.contract.unitfile import write_units
from pipeline.core.audio import write_wav

TOP_METADATA = "author: Test Author\naffiliation: Test Lab\nopen source: true\n"
TRACK_METADATA = """abx distance: dtw_cosine
system description: hand-made one-hot units for validator tests
hyperparameters:
  codes: 8
using parallel train: false
using external data: false
auxiliary1 description: the same one-hot units
auxiliary2 description: random continuous vectors
"""


def build_handmade_submission(out: Path, dataset_root: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True)
    (out / "metadata.yaml").write_text(TOP_METADATA)
    track = out / "2019"
    (track / "code").mkdir(parents=True)
    (track / "code" / "README.txt").write_text("source code would go here\n")
    (track / "metadata.yaml").write_text(TRACK_METADATA)
    for language in LANGUAGES:
        lists = find_filelists(language, None, dataset_root)
        lang_dir = track / language
        lang_dir.mkdir()
        if lists is None:
            continue
        for name, duration in lists.embedding:
            frames = max(1, math.ceil((duration or 0.3) / 0.02))
            one_hot = np.eye(8, dtype=np.int64)[rng.integers(0, 8, frames)]
            write_units(lang_dir / "test" / name, one_hot)
            write_units(lang_dir / "auxiliary_embedding1" / name, one_hot)
            write_units(lang_dir / "auxiliary_embedding2" / name, rng.standard_normal((frames, 4)))
        for name in lists.wav_files:
            write_wav(lang_dir / "test" / name, rng.uniform(-0.3, 0.3, 4000), SAMPLE_RATE)
    return out


@pytest.fixture(scope="module")
def handmade_submission(tiny_corpus, tmp_path_factory):
    """A valid submission folder for the tiny corpus (never modified: tests copy it)."""
    return build_handmade_submission(tmp_path_factory.mktemp("handmade") / "submission", tiny_corpus)


def copy_submission(source: Path, dest: Path) -> Path:
    shutil.copytree(source, dest)
    return dest
