"""How stages find their inputs: later stages read the run's own config (``--config``
replaces it), the Makefile hands CONFIG to every stage, and vocoder training reads its wavs
from the dataset named on the command line (so a moved corpus still works)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from pipeline.core.config import load_config
from pipeline.stages.options import run_config

ROOT = Path(__file__).resolve().parents[1]


def test_later_stages_use_the_run_config_unless_told_otherwise(tiny_run, tmp_path):
    assert run_config(tiny_run, None).name == "tiny"
    assert run_config(tiny_run, None, ["evaluate.jobs=3"]).evaluate.jobs == 3
    full = run_config(tiny_run, "full")
    assert full.name == "full" and full.evaluate == load_config("full").evaluate
    assert run_config(tmp_path, None).name == "demo"          # no run there: the demo preset


@pytest.mark.parametrize("target", ["evaluate", "submission"])
def test_make_hands_the_config_to_later_stages(target):
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    printed = subprocess.run(["make", "-n", "-W", "pyproject.toml", target, "CONFIG=full"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout
    stage = "evaluate" if target == "evaluate" else "submit"
    line = next(row for row in printed.splitlines() if f"zs2020 {stage} " in row)
    assert "--config full" in line and "data/runs/full" in line


def test_vocoder_training_works_after_the_corpus_moves(tiny_corpus, tiny_config, tmp_path):
    from pipeline.features import dump_features
    from pipeline.train.melgan import train
    from tests.fixtures_melgan import short_config
    first = tmp_path / "first" / "corpus"
    shutil.copytree(tiny_corpus, first)
    dump_features(first, tmp_path / "features", tiny_config, jobs=1, progress=False)
    moved = tmp_path / "elsewhere" / "corpus"
    moved.parent.mkdir()
    first.rename(moved)                       # the features still name the first location
    path = train(tmp_path / "features", moved, tmp_path / "melgan", short_config(tiny_config, 2), progress=False)
    assert path.is_file() and not first.exists()
