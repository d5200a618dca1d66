"""ABX engine: hand-computed distances and scores, averaging order, chance and perfect cases."""
from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.contract.items import read_items
from pipeline.core.errors import UserError
from pipeline.evaluation import abx


def items(phones, speakers, contexts=None, files=None):
    n = len(phones)
    contexts = contexts or ["x_y"] * n
    prev, nxt = zip(*(c.split("_") for c in contexts))
    return abx.ItemTable(np.array(files or [f"f{i}" for i in range(n)]), np.zeros(n), np.ones(n),
                         np.array(phones), np.array(prev), np.array(nxt), np.array(speakers))


def single_pair(x, y, distance):
    packed = abx.pack_features([np.atleast_2d(x), np.atleast_2d(y)], distance)
    return float(abx.pair_distances(packed, np.array([0]), np.array([1]))[0])


# ----------------------------------------------------------------------------- DTW
def test_dtw_hand_computed():
    # acc = [[1, 3], [4, 2]]; back-track (1,1) -> diag (0,0): path length 2
    assert abx.dtw_normalized(np.array([[1.0, 2.0], [3.0, 1.0]])) == pytest.approx(1.0)
    # one row: the only path has length 3
    assert abx.dtw_normalized(np.array([[1.0, 2.0, 3.0]])) == pytest.approx(6.0 / 3)


def test_dtw_backtrack_prefers_diagonal_on_ties():
    # acc = [[1, 2], [1, 2]]: at (1,1) diag (1) ties with left (1). Diagonal first -> path 2,
    # total 2 -> 1.0; preferring left would give path 3 -> 2/3.
    assert abx.dtw_normalized(np.array([[1.0, 1.0], [0.0, 1.0]])) == pytest.approx(1.0)


def test_dtw_backtrack_prefers_left_over_up():
    cost = np.array([[2.0, 2.0, 0.0, 1.0], [2.0, 1.0, 2.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
    # acc = [[2,4,4,5],[4,3,5,4],[4,3,4,4]], total 4. From (2,3): up 4, left 4, diag 5 ->
    # left (2,2); then diag (1,1); then diag (0,0): path 4 -> 1.0. Preferring up would go
    # (1,3) -> (0,2) -> (0,1) -> (0,0): path 5 -> 0.8.
    assert abx.dtw_normalized(cost) == pytest.approx(1.0)


# ----------------------------------------------------------------------------- frame distances
def test_cosine_frame_distance_is_angle_over_pi():
    assert single_pair([1.0, 0.0], [0.0, 2.0], "cosine") == pytest.approx(0.5)
    assert single_pair([1.0, 0.0], [-3.0, 0.0], "cosine") == pytest.approx(1.0)
    assert single_pair([1.0, 1.0], [2.0, 2.0], "cosine") == pytest.approx(0.0, abs=1e-7)
    assert single_pair([1.0, 0.0], [math.cos(1.0), math.sin(1.0)], "cosine") == pytest.approx(1.0 / math.pi)


def test_cosine_zero_vectors():
    assert single_pair([0.0, 0.0], [1.0, 0.0], "cosine") == 1.0
    assert single_pair([0.0, 0.0], [0.0, 0.0], "cosine") == 0.0


def test_dtw_cosine_sequence_normalised_by_path_length():
    x = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    y = np.array([[1.0, 0.0], [0.0, 1.0]])
    # perfect alignment (0,0),(1,0),(2,1): total 0
    assert single_pair(x, y, "cosine") == pytest.approx(0.0, abs=1e-7)
    y2 = np.array([[0.0, 1.0]])
    # single column: path (0,0),(1,0),(2,0) = 0.5 + 0.5 + 0 over 3
    assert single_pair(x, y2, "cosine") == pytest.approx(1.0 / 3)


def test_kl_symmetrised_on_normalised_rows():
    p, q = np.array([0.5, 0.5]), np.array([0.9, 0.1])
    kl = lambda a, b: float(np.sum(a * np.log(a / b)))
    expected = 0.5 * kl(p, q) + 0.5 * kl(q, p)
    # rows are normalised to sum 1 first: scaled inputs give the same distance
    assert single_pair(2 * p, 10 * q, "KL") == pytest.approx(expected, rel=1e-9)


def test_kl_negative_values_give_nan():
    assert math.isnan(single_pair([-1.0, 2.0], [0.5, 0.5], "KL"))


def test_levenshtein_on_whole_frame_vectors_not_normalised():
    a = np.array([[1, 0], [1, 0], [0, 1]], dtype=float)
    b = np.array([[1, 0], [0, 1]], dtype=float)
    c = np.array([[0, 1], [0, 1], [0, 1], [0, 1]], dtype=float)
    assert single_pair(a, b, "levenshtein") == 1.0
    assert single_pair(a, c, "levenshtein") == 3.0   # 2 substitutions + 1 insertion
    assert abx.edit_distance(np.array([1, 2, 3]), np.array([1, 3])) == 1.0
    # a frame is a symbol only as a whole vector: [1, 0] differs from [1, 1]
    assert single_pair([[1.0, 0.0]], [[1.0, 1.0]], "levenshtein") == 1.0


# ----------------------------------------------------------------------------- scores
def angles(*degrees):
    return [np.array([[math.cos(math.radians(d)), math.sin(math.radians(d))]]) for d in degrees]


def test_hand_computed_abx_score():
    # speakers s1, s2; phones a, b; one context. Angles: a1 0, b1 90, a2 30, b2 40 degrees.
    # Triplets (A,B,X): (a1,b1,a2) 30<60 ok; (b1,a1,b2) 50>40 wrong; (a2,b2,a1) 30<40 ok;
    # (b2,a2,b1) 50<60 ok. Cells: (a,b): s1->s2 1, s2->s1 1 => 1; (b,a): 0 and 1 => 0.5.
    # Phone pairs mean 0.75 => ABX 25 %.
    table = items(["a", "b", "a", "b"], ["s1", "s1", "s2", "s2"])
    result = abx.abx(abx.build_task(table), angles(0, 90, 30, 40), "cosine")
    assert result.error == pytest.approx(25.0)
    assert result.n_triplets == 4
    assert result.by_phone_pair == {"a-b": pytest.approx(0.0), "b-a": pytest.approx(50.0)}


def test_ties_count_one_half():
    table = items(["a", "b", "a", "b"], ["s1", "s1", "s2", "s2"])
    same = [np.array([[1.0, 0.0]])] * 4
    assert abx.abx(abx.build_task(table), same, "cosine").error == pytest.approx(50.0)


def test_averaging_order_contexts_then_speakers_then_phones():
    cells = abx.Cells(phone_a=np.array([0, 0, 0]), phone_b=np.array([1, 1, 1]),
                      speaker_a=np.array([0, 0, 1]), speaker_x=np.array([1, 1, 0]),
                      context=np.array([0, 1, 0]), score=np.array([1.0, 0.0, 1.0]), n=np.array([1, 9, 1]))
    mean, per_pair = abx.average_cells(cells)
    # official: contexts (1+0)/2 = 0.5 for s1->s2, 1.0 for s2->s1; speakers -> 0.75
    assert mean == pytest.approx(0.75)
    assert per_pair == {(0, 1): pytest.approx(0.75)}
    # other orders give other numbers: flat mean of cells 2/3, pooled triplets 2/11,
    # speakers first then contexts ((1+1)/2 and 0) -> 0.5
    assert mean != pytest.approx(cells.score.mean())
    assert mean != pytest.approx(np.sum(cells.score * cells.n) / cells.n.sum())
    # libri-light's order (cross-check only): (context, X speaker) jointly per A speaker.
    # s1->s2 in contexts 0, 1 (1, 0) and s1->s3 in context 0 (1): official (0.5 + 1) / 2,
    # libri-light (1 + 0 + 1) / 3
    three = abx.Cells(phone_a=np.zeros(3, int), phone_b=np.ones(3, int), speaker_a=np.zeros(3, int),
                      speaker_x=np.array([1, 1, 2]), context=np.array([0, 1, 0]),
                      score=np.array([1.0, 0.0, 1.0]), n=np.ones(3, int))
    assert abx.average_cells(three)[0] == pytest.approx(0.75)
    assert abx.average_cells(three, order="libri-light")[0] == pytest.approx(2 / 3)


def test_identical_features_per_phone_give_zero_error():
    rng = np.random.default_rng(1)
    phones = rng.choice(list("abcd"), 120).tolist()
    speakers = rng.choice(["s1", "s2", "s3"], 120).tolist()
    contexts = rng.choice(["x_y", "u_v"], 120).tolist()
    proto = {p: rng.random((6, 8)) + 0.1 for p in "abcd"}   # positive rows: KL is defined
    task = abx.build_task(items(phones, speakers, contexts))
    feats = [proto[p] for p in phones]
    for distance in abx.DISTANCES:
        assert abx.abx(task, feats, distance).error == pytest.approx(0.0), distance


def test_random_equal_length_features_are_near_chance():
    rng = np.random.default_rng(2)
    n = 240
    phones = rng.choice(list("abcd"), n).tolist()
    speakers = rng.choice(["s1", "s2", "s3"], n).tolist()
    contexts = rng.choice(["x_y", "u_v"], n).tolist()
    task = abx.build_task(items(phones, speakers, contexts))
    continuous = [rng.random((8, 12)) for _ in range(n)]
    one_hot = [np.eye(3)[rng.integers(0, 3, 8)] for _ in range(n)]
    assert abs(abx.abx(task, continuous, "cosine").error - 50) < 4
    assert abs(abx.abx(task, continuous, "KL").error - 50) < 4
    assert abs(abx.abx(task, one_hot, "levenshtein").error - 50) < 4


def test_continuous_log_features_give_exactly_50_with_kl():
    rng = np.random.default_rng(3)
    table = items(["a", "b", "a", "b"], ["s1", "s1", "s2", "s2"])
    feats = [rng.normal(size=(5, 4)) for _ in range(4)]   # negative values -> NaN -> ties
    assert abx.abx(abx.build_task(table), feats, "KL").error == 50.0


def test_items_without_triplets_are_not_scored():
    table = items(["a", "b", "a", "c"], ["s1", "s1", "s2", "s3"], ["x_y", "x_y", "x_y", "q_r"])
    task = abx.build_task(table)
    assert task.n_items_used == 3
    with pytest.raises(UserError, match="no triplet"):
        abx.abx(abx.build_task(items(["a", "b"], ["s1", "s2"])), angles(0, 90), "cosine")


# ----------------------------------------------------------------------------- items and frames
def test_select_frames_in_seconds_with_any_frame_period():
    feats = np.arange(10, dtype=float)[:, None]          # 10 frames over 0.2 s: 20 ms frames
    # centres 0.01, 0.03, ...: [0.05, 0.11] holds centres 0.05, 0.07, 0.09, 0.11 = frames 2..5
    assert abx.select_frames(feats, 0.05, 0.11, 0.2)[:, 0].tolist() == [2, 3, 4, 5]
    feats100 = np.arange(20, dtype=float)[:, None]       # same duration at 10 ms
    assert abx.select_frames(feats100, 0.05, 0.11, 0.2)[:, 0].tolist() == [5, 6, 7, 8, 9, 10]
    # shorter than a frame: the frame nearest to the midpoint
    assert abx.select_frames(feats, 0.061, 0.062, 0.2)[:, 0].tolist() == [3]


def test_whole_file_and_long_file_items_agree_on_the_same_frames():
    rng = np.random.default_rng(4)
    long = rng.random((50, 3))
    table = abx.ItemTable(np.array(["L", "E"]), np.array([0.10, 0.0]), np.array([0.20, 1.0]),
                          *(np.array(["a", "a"]) for _ in range(4)))
    arrays = abx.item_features(table.subset(np.array([True, False])), {"L": long}, False, {"L": 0.5})
    assert np.array_equal(arrays[0], long[10:20])
    whole = abx.item_features(table.subset(np.array([False, True])), {"E": long}, True)
    assert whole[0] is long


def test_read_items(tmp_path):
    path = tmp_path / "test.item"
    path.write_text("#file onset offset #phone prev-phone next-phone speaker\n"
                    "S01_1 0.1 0.2 AA B C S01\n\nS02_1 0.0 0.3 AE B C S02\n")
    table = read_items(path)
    assert table.files.tolist() == ["S01_1", "S02_1"]
    assert table.contexts.tolist() == ["B_C", "B_C"]
    assert table.offsets.tolist() == [0.2, 0.3]
    path.write_text("#file onset offset #phone prev-phone next-phone speaker\nS01_1 0.1 0.2 AA B S01\n")
    with pytest.raises(UserError, match=r"test.item:2: expected 7 columns"):
        read_items(path)
    path.write_text("file onset offset\n")
    with pytest.raises(UserError, match="header"):
        read_items(path)
    with pytest.raises(UserError, match="does not exist"):
        read_items(tmp_path / "missing.item")
