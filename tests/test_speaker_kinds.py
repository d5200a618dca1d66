"""Scores per kind of test speaker: a demo corpus with recorded speech lists its real speakers in
its manifest, and `zs2020 evaluate` scores ABX and the converted speech of each kind apart."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline.contract.dataset import Dataset
from pipeline.evaluation import abx as abxlib
from pipeline.evaluation.evaluate import LanguageTask
from pipeline.evaluation.speech import summarize
from tests.fixtures_submission import handmade_submission  # noqa: F401 (a fixture)
from tests.test_bad_inputs import evaluate_args, invoke


def with_recorded(corpus: Path, dest: Path, real: list[str]) -> Path:
    """A copy of ``corpus`` whose manifest says ``real`` are recorded speakers."""
    copy = Path(shutil.copytree(corpus, dest))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["recorded"] = {"speakers": {s: {"actor": "someone"} for s in real}}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


@pytest.fixture(scope="module")
def task(tiny_corpus):
    return LanguageTask(Dataset(tiny_corpus), "excerpt", None)


def test_a_group_of_every_speaker_scores_the_whole_task(task):
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((4, 3)) for _ in range(task.n_items)]
    speakers = set(task.task.speaker_names.tolist())
    result = abxlib.abx(task.task, arrays, "cosine", {"all": speakers, "none": set()})
    assert result.by_group["all"] == pytest.approx(result.error)
    assert result.by_group["none"] is None


def test_a_group_scores_only_triplets_among_its_own_speakers(task):
    """Each group's cells are a subset: the whole task's error is a mean that lies between them
    when the groups split the cells (or equals the one group that has cells)."""
    rng = np.random.default_rng(1)
    arrays = [rng.standard_normal((4, 3)) for _ in range(task.n_items)]
    names = sorted(task.task.speaker_names.tolist())
    half = set(names[: len(names) // 2])
    result = abxlib.abx(task.task, arrays, "cosine", {"a": half, "b": set(names) - half})
    assert set(result.by_group) == {"a", "b"}
    for value in result.by_group.values():
        assert value is None or 0.0 <= value <= 100.0


def test_the_standard_error_is_the_spread_of_the_mean_over_resampled_phone_pairs():
    # phone pairs that all score alike leave nothing to resample; pairs that differ do
    assert abxlib.bootstrap_se([0.8] * 50) == pytest.approx(0.0)
    rng = np.random.default_rng(2)
    scores = rng.uniform(0.5, 1.0, 200)
    se = abxlib.bootstrap_se(scores.tolist())
    assert se == pytest.approx(100 * scores.std() / np.sqrt(len(scores)), rel=0.1)   # sigma / sqrt(n)
    assert abxlib.bootstrap_se(scores[:50].tolist()) > se                            # fewer pairs, less certain
    assert abxlib.bootstrap_se(scores.tolist()) == se                                # seeded: repeatable


def test_each_group_reports_its_standard_error(task):
    rng = np.random.default_rng(3)
    arrays = [rng.standard_normal((4, 3)) for _ in range(task.n_items)]
    speakers = set(task.task.speaker_names.tolist())
    result = abxlib.abx(task.task, arrays, "cosine", {"all": speakers, "none": set()})
    assert result.se_by_group["none"] is None
    assert 0.0 < result.se_by_group["all"] < 100.0
    assert result.to_json()["se_by_group"]["all"] == pytest.approx(result.se_by_group["all"], abs=1e-4)


def test_a_paired_difference_cancels_what_both_systems_share():
    rng = np.random.default_rng(4)
    first = {(i, i + 1): float(v) for i, v in enumerate(rng.uniform(0.5, 1.0, 150))}
    better = {pair: min(1.0, v + 0.02) for pair, v in first.items()}        # 2 points better on every pair
    diff, low, high, pairs = abxlib.paired_difference(first, better)
    assert pairs == 150 and diff == pytest.approx(-100 * np.mean([better[p] - first[p] for p in first]))
    assert low <= diff <= high < 0                                       # told apart: the pairs' spread cancels
    assert high - low < 2 * abxlib.bootstrap_se(list(first.values()))    # far narrower than unpaired
    noisy = {pair: float(np.clip(v + rng.normal(0, 0.1), 0, 1)) for pair, v in first.items()}
    _, low, high, _ = abxlib.paired_difference(first, noisy)
    assert low < 0 < high                                                # not told apart
    with pytest.raises(ValueError, match="no phone pair"):
        abxlib.paired_difference(first, {(999, 1000): 0.5})


def test_no_manifest_no_kinds(tiny_corpus, tmp_path):
    assert Dataset(tiny_corpus).speaker_kinds() is None
    tests = {u.speaker for u in Dataset(tiny_corpus).utterances("test")}
    one = sorted(tests)[0]
    kinds = Dataset(with_recorded(tiny_corpus, tmp_path / "c", [one])).speaker_kinds()
    assert kinds == {"real": {one}, "synthetic": tests - {one}}


def test_the_cer_ratio_is_how_much_content_conversion_loses():
    rows = [{"name": "a", "cer_converted": 0.4, "cer_source": 0.2}, {"name": "b", "cer_converted": 0.2, "cer_source": 0.2}]
    assert summarize(rows)["cer_ratio"] == pytest.approx(0.3 / 0.2)


def test_the_cer_ratio_interval_narrows_with_more_lines_and_holds_the_ratio():
    """The 95 % bootstrap interval of the CER ratio over lines: it holds the ratio, shrinks as lines
    are added, is repeatable, and is absent for a single line (nothing to resample)."""
    rng = np.random.default_rng(3)

    def lines(n):
        source = rng.uniform(0.1, 0.5, n)
        return [{"name": str(i), "cer_converted": float(2 * s + rng.normal(0, 0.1)), "cer_source": float(s)}
                for i, s in enumerate(source)]
    few, many = summarize(lines(12)), summarize(lines(120))
    for s in (few, many):
        assert s["cer_ratio_low"] < s["cer_ratio"] < s["cer_ratio_high"]
    assert many["cer_ratio_high"] - many["cer_ratio_low"] < 0.6 * (few["cer_ratio_high"] - few["cer_ratio_low"])
    assert many["cer_ratio_low"] < 2.0 < many["cer_ratio_high"]
    rows = lines(12)
    assert summarize(rows)["cer_ratio_low"] == summarize(rows)["cer_ratio_low"]
    assert "cer_ratio_low" not in summarize(rows[:1]) and "cer_ratio" in summarize(rows[:1])


def test_evaluate_reports_each_kind_on_the_console_and_in_scores(handmade_submission, tiny_corpus, tmp_path):
    tests = sorted({u.speaker for u in Dataset(tiny_corpus).utterances("test")})
    corpus = with_recorded(tiny_corpus, tmp_path / "corpus", tests[:1])
    sub = Path(shutil.copytree(handmade_submission, tmp_path / "submission"))
    result = invoke(*evaluate_args(sub, corpus, tmp_path / "evaluation")[:-1])   # with the MFCC baseline
    assert result.exit_code == 0, result.output
    kinds = json.loads((tmp_path / "evaluation" / "scores.json").read_text())["zs2020_extras"]["english"][
        "by_speaker_kind"]
    assert set(kinds) == {"real", "synthetic"} and kinds["real"]["speakers"] == tests[:1]
    assert set(kinds["synthetic"]["abx"]) >= {"test", "baseline_mfcc"}
    assert {"abx_units_se", "abx_units_over_mfcc"} <= set(kinds["real"])   # None here: one speaker a kind
    assert "### By kind of test speaker" in (tmp_path / "evaluation" / "report.md").read_text()
