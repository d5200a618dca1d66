"""Helpers for the evaluation tests: submissions whose "units" are known features."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from pipeline.contract.dataset import Dataset
from pipeline.contract.unitfile import write_units
from tests.fixtures_config import SPEC

METADATA_2019 = """abx distance: {distance}
system description: test features written as units
hyperparameters: none
using parallel train: false
using external data: false
"""


def write_feature_submission(corpus: Path, out: Path, features=None, distance: str = "dtw_cosine",
                             converted: str | None = None) -> Path:
    """A submission folder with ``features(audio) -> (frames, dim)`` as the unit file of every
    test wav (default: our log-mel, i.e. the log-mel baseline). ``converted="reference"``
    copies the target voice's own rendering as the converted wav (a perfect conversion),
    ``"source"`` copies the source utterance (no conversion at all)."""
    from pipeline.evaluation.baselines import baseline_features
    features = features or (lambda audio: baseline_features(audio, SPEC)["logmel"])
    ds = Dataset(corpus, "english")
    test = out / "2019" / "english" / "test"
    test.mkdir(parents=True, exist_ok=True)
    (out / "2019" / "surprise").mkdir(exist_ok=True)       # the official layout has both languages
    (out / "metadata.yaml").write_text("author: tests\naffiliation: none\nopen source: false\n")
    (out / "2019" / "metadata.yaml").write_text(METADATA_2019.format(distance=distance))
    for utt in ds.utterances("test"):
        write_units(test / f"{utt.utt_id}.txt", np.asarray(features(utt.read(SPEC.sample_rate)), dtype=np.float32))
    if converted:
        for line in ds.synthesis():
            src = ds.reference(line).path if converted == "reference" else line.source.path
            shutil.copyfile(src, test / line.output_name)
    return out


def context_free_copy(corpus: Path, out: Path) -> Path:
    """A copy of a corpus whose item files have one context for every item.

    The tiny corpus's two test speakers read different sentences and share no triphone
    context, so its by-context task has no triplet; dropping the context keeps the real
    files and phones while giving the end-to-end tests triplets to score."""
    shutil.copytree(corpus, out)
    for item in (out / "2019" / "english" / "abx").glob("*.item"):
        lines = item.read_text().splitlines()
        rows = [line.split() for line in lines[1:] if line.strip()]
        item.write_text("\n".join([lines[0]] + [" ".join(r[:4] + ["ANY", "ANY", r[6]]) for r in rows]) + "\n")
    return out
