"""Bitrate: pooled histogram over the bitrate list, listed durations, official symbol equality."""
from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.contract.unitfile import parse_units
from pipeline.core.errors import UserError
from pipeline.evaluation.bitrate import bitrate, entropy_bits


def test_hand_computed_bitrate_pools_counts_over_files():
    units = {"f1": parse_units("1 0\n1 0\n0 1\n"), "f2": parse_units("1.0 0.0\n0 1\n")}
    result = bitrate(units, [("f1", 1.0), ("f2", 1.5)])
    # "1 0" and "1.0 0.0" are one symbol: counts 3 and 2 over N = 5
    h = -(0.6 * math.log2(0.6) + 0.4 * math.log2(0.4))
    assert result.tokens == 5 and result.symbols == 2
    assert result.entropy == pytest.approx(h)
    assert result.bitrate == pytest.approx(5 * h / 2.5)


def test_per_file_histograms_would_differ():
    # f1 only symbol A, f2 only symbol B: per-file entropy 0, pooled entropy 1 bit
    units = {"f1": np.array([[1.0, 0.0]] * 4), "f2": np.array([[0.0, 1.0]] * 4)}
    result = bitrate(units, [("f1", 1.0), ("f2", 1.0)])
    assert result.entropy == pytest.approx(1.0)
    assert result.bitrate == pytest.approx(8 * 1.0 / 2.0)


def test_missing_files_are_skipped_with_their_durations():
    units = {"f1": np.array([[1.0], [2.0]])}
    result = bitrate(units, [("f1", 2.0), ("gone", 100.0)])
    assert result.duration == 2.0 and result.missing == ["gone"]
    assert result.bitrate == pytest.approx(2 * 1.0 / 2.0)
    with pytest.raises(UserError, match="none of the files"):
        bitrate(units, [("gone", 1.0)])


def test_all_distinct_frames_at_50_hz():
    n = 500
    units = {"f": np.arange(2 * n, dtype=float).reshape(n, 2)}
    result = bitrate(units, [("f", n / 50.0)])
    assert result.bitrate == pytest.approx(math.log2(n) * 50.0)


def test_negative_zero_is_zero_and_entropy_of_uniform():
    units = {"f": np.array([[0.0, 1.0], [-0.0, 1.0]])}
    assert bitrate(units, [("f", 1.0)]).symbols == 1
    assert entropy_bits(np.array([5, 5, 5, 5])) == pytest.approx(2.0)


def test_mismatched_dimensions_are_an_error():
    units = {"a": np.ones((2, 2)), "b": np.ones((2, 3))}
    with pytest.raises(UserError, match="different numbers of columns"):
        bitrate(units, [("a", 1.0), ("b", 1.0)])
