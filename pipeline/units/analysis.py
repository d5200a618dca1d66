"""Measures of discrete unit sequences (numpy only: no model, no files).

``zs2020 units`` computes everything through these functions, so each number it prints has
one definition, tested here on hand-checkable arrays:

* usage: codes in use, entropy (bits), perplexity = 2**entropy, run lengths;
* bitrate: the official ZeroSpeech 2019 definition N * H / D (N symbols over all files,
  H the entropy of their pooled histogram, D the total duration; the evaluator's own
  implementation in :mod:`pipeline.evaluation.bitrate`), on the raw unit sequence and with
  consecutive repeats collapsed;
* speaker usage divergence: Jensen-Shannon divergence of each speaker's code histogram
  from the pooled histogram;
* phones: frame labels from alignments, phone purity, unit purity, mutual information,
  NMI and phone-normalised MI (PNMI);
* speaker leakage: held-out speaker classification from per-utterance code histograms
  (nearest centroid and multinomial logistic regression);
* PCA of codebook vectors and the top-code choice used to synthesise a bare bottom sequence.

Conventions: entropies in bits; a "contingency" matrix has phones as rows, units as columns.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from pipeline.evaluation.bitrate import bitrate as official_bitrate
from pipeline.evaluation.bitrate import entropy_bits as official_entropy_bits


# ---------------------------------------------------------------------------- usage
def histogram(ids: np.ndarray, num_codes: int) -> np.ndarray:
    """Counts of each code 0..num_codes-1 (int64). Ids outside the range are an error."""
    ids = np.asarray(ids, dtype=np.int64).ravel()
    if ids.size and (ids.min() < 0 or ids.max() >= num_codes):
        raise ValueError(f"unit ids must lie in [0, {num_codes}), got [{ids.min()}, {ids.max()}]")
    return np.bincount(ids, minlength=num_codes).astype(np.int64)


def pooled_histogram(sequences: Iterable[np.ndarray], num_codes: int) -> np.ndarray:
    total = np.zeros(num_codes, dtype=np.int64)
    for seq in sequences:
        total += histogram(seq, num_codes)
    return total


def entropy_bits(counts: np.ndarray) -> float:
    """Shannon entropy (bits) of a histogram (the evaluator's definition); 0 when empty."""
    counts = np.asarray(counts, dtype=np.float64).ravel()
    return official_entropy_bits(counts) if counts.sum() > 0 else 0.0


def perplexity(counts: np.ndarray) -> float:
    """2**entropy: the number of equally used codes that would give the same entropy."""
    return float(2.0 ** entropy_bits(counts))


def collapse_repeats(ids: np.ndarray) -> np.ndarray:
    """``[3,3,5,5,5,3]`` -> ``[3,5,3]``: one symbol per run of identical consecutive units."""
    ids = np.asarray(ids).ravel()
    if ids.size == 0:
        return ids
    keep = np.ones(ids.size, dtype=bool)
    keep[1:] = ids[1:] != ids[:-1]
    return ids[keep]


def run_lengths(ids: np.ndarray) -> np.ndarray:
    """Lengths of the runs of identical consecutive units: ``[3,3,5,5,5,3]`` -> ``[2,3,1]``."""
    ids = np.asarray(ids).ravel()
    if ids.size == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    return np.diff(np.r_[starts, ids.size]).astype(np.int64)


def mean_run_length(sequences: Iterable[np.ndarray]) -> float:
    """Mean run length in frames over all runs of all sequences (runs never cross files)."""
    runs = [run_lengths(s) for s in sequences]
    runs = np.concatenate(runs) if runs else np.zeros(0)
    return float(runs.mean()) if runs.size else 0.0


def bitrate(sequences: Sequence[np.ndarray], seconds: Sequence[float], collapse: bool = False) -> float:
    """Official bitrate N * H / D in bits/s (computed by :func:`pipeline.evaluation.bitrate.bitrate`, the
    evaluator's implementation): N symbols over all sequences, H the entropy of their pooled
    histogram, D the sum of the files' durations ``seconds``. ``collapse=True`` first merges
    consecutive repeats within each file."""
    if len(sequences) != len(seconds):
        raise ValueError("one duration per sequence")
    if sum(seconds) <= 0:
        raise ValueError("total duration must be positive")
    units = {str(i): (collapse_repeats(s) if collapse else np.asarray(s).ravel()).reshape(-1, 1)
             for i, s in enumerate(sequences)}
    listed = [(str(i), float(d)) for i, d in enumerate(seconds) if units[str(i)].size]
    return official_bitrate(units, listed).bitrate if listed else 0.0


# ---------------------------------------------------------------------------- speakers
def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence in bits (0 = identical, 1 = disjoint supports) of two
    histograms or distributions (normalised here)."""
    p = np.asarray(p, dtype=np.float64).ravel()
    q = np.asarray(q, dtype=np.float64).ravel()
    if p.sum() <= 0 or q.sum() <= 0:
        raise ValueError("JS divergence of an empty histogram")
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)

    def kl(a):
        nz = a > 0
        return float((a[nz] * np.log2(a[nz] / m[nz])).sum())

    return max(0.0, 0.5 * kl(p) + 0.5 * kl(q))


def speaker_divergence(sequences: Sequence[np.ndarray], speakers: Sequence[str], num_codes: int) -> dict:
    """JS divergence of each speaker's code histogram from the pooled one.

    Returns ``{"per_speaker": {spk: js}, "mean": .., "max": .., "argmax": spk}``. A code book
    used identically by every speaker gives 0; speaker-specific codes push it towards 1.
    """
    if len(sequences) != len(speakers):
        raise ValueError("one speaker per sequence")
    by_speaker: dict[str, np.ndarray] = {}
    for seq, spk in zip(sequences, speakers):
        by_speaker.setdefault(spk, np.zeros(num_codes, dtype=np.int64))
        by_speaker[spk] += histogram(seq, num_codes)
    pooled = sum(by_speaker.values()) if by_speaker else np.zeros(num_codes, dtype=np.int64)
    per = {spk: js_divergence(h, pooled) for spk, h in sorted(by_speaker.items()) if h.sum() > 0}
    if not per:
        return {"per_speaker": {}, "mean": 0.0, "max": 0.0, "argmax": None}
    worst = max(per, key=per.get)
    return {"per_speaker": per, "mean": float(np.mean(list(per.values()))), "max": per[worst], "argmax": worst}


# ---------------------------------------------------------------------------- phones
def frame_labels(segments: Sequence[tuple[float, float, str]], num_frames: int, frame_seconds: float) -> list:
    """Phone label of each unit frame: the segment containing the frame's centre.

    ``segments`` are (onset, offset, phone) in seconds. Frames whose centre lies outside every
    segment (e.g. the padding frame past the last sample) get None.
    """
    labels: list = [None] * num_frames
    if not segments or num_frames <= 0:
        return labels
    onsets = np.array([s[0] for s in segments], dtype=np.float64)
    offsets = np.array([s[1] for s in segments], dtype=np.float64)
    order = np.argsort(onsets, kind="stable")
    onsets, offsets = onsets[order], offsets[order]
    phones = [segments[i][2] for i in order]
    centres = (np.arange(num_frames) + 0.5) * frame_seconds
    idx = np.searchsorted(onsets, centres, side="right") - 1
    for k, i in enumerate(idx):
        if i >= 0 and centres[k] < offsets[i]:
            labels[k] = phones[i]
    return labels


def contingency(phone_ids: np.ndarray, unit_ids: np.ndarray, num_phones: int, num_units: int) -> np.ndarray:
    """Co-occurrence counts: rows = phones, columns = units."""
    phone_ids = np.asarray(phone_ids, dtype=np.int64).ravel()
    unit_ids = np.asarray(unit_ids, dtype=np.int64).ravel()
    if phone_ids.shape != unit_ids.shape:
        raise ValueError("one phone label per unit frame")
    flat = np.bincount(phone_ids * num_units + unit_ids, minlength=num_phones * num_units)
    return flat.reshape(num_phones, num_units).astype(np.int64)


def phone_purity(table: np.ndarray) -> float:
    """Frame accuracy when every unit is read as its most frequent phone (E_unit max_phone p)."""
    n = table.sum()
    return float(table.max(axis=0).sum() / n) if n else 0.0


def unit_purity(table: np.ndarray) -> float:
    """Frame accuracy when every phone is read as its most frequent unit (E_phone max_unit p);
    low when one phone is spread over many units."""
    n = table.sum()
    return float(table.max(axis=1).sum() / n) if n else 0.0


def mutual_information(table: np.ndarray) -> float:
    """I(phone; unit) in bits from a contingency table."""
    table = np.asarray(table, dtype=np.float64)
    n = table.sum()
    if n <= 0:
        return 0.0
    pxy = table / n
    px = pxy.sum(axis=1, keepdims=True)
    py = pxy.sum(axis=0, keepdims=True)
    nz = pxy > 0
    return float(max(0.0, (pxy[nz] * np.log2(pxy[nz] / (px @ py)[nz])).sum()))


def normalized_mutual_information(table: np.ndarray) -> float:
    """NMI = 2 I / (H(phone) + H(unit)) (arithmetic normalisation): 1 for a bijection, 0 for
    independence."""
    h_phone = entropy_bits(np.asarray(table).sum(axis=1))
    h_unit = entropy_bits(np.asarray(table).sum(axis=0))
    if h_phone + h_unit == 0:
        return 1.0
    return float(2 * mutual_information(table) / (h_phone + h_unit))


def phone_normalized_mutual_information(table: np.ndarray) -> float:
    """PNMI = I / H(phone): the fraction of phone uncertainty the units remove (HuBERT's
    measure); 1 when units determine phones, even with many units per phone."""
    h_phone = entropy_bits(np.asarray(table).sum(axis=1))
    return float(mutual_information(table) / h_phone) if h_phone else 1.0


def majority_rows(table: np.ndarray) -> np.ndarray:
    """For each column (unit), the row (phone) it co-occurs with most; -1 for unused units."""
    table = np.asarray(table)
    best = table.argmax(axis=0)
    best[table.sum(axis=0) == 0] = -1
    return best


# ---------------------------------------------------------------------------- leakage
def usage_features(sequences: Sequence[np.ndarray], num_codes: int) -> np.ndarray:
    """(utterances, num_codes) relative code frequencies of each utterance."""
    feats = np.zeros((len(sequences), num_codes), dtype=np.float64)
    for i, seq in enumerate(sequences):
        h = histogram(seq, num_codes)
        if h.sum():
            feats[i] = h / h.sum()
    return feats


def stratified_split(labels: Sequence, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split holding out ``test_fraction`` of each class (at least one item per side);
    classes with fewer than two items are left out of both sides."""
    if not 0 < test_fraction < 1:
        raise ValueError("test_fraction must be in (0, 1)")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train, test = [], []
    for cls in sorted(set(labels.tolist())):
        idx = np.flatnonzero(labels == cls)
        if idx.size < 2:
            continue
        idx = rng.permutation(idx)
        n_test = min(idx.size - 1, max(1, int(round(test_fraction * idx.size))))
        test.extend(idx[:n_test].tolist())
        train.extend(idx[n_test:].tolist())
    return np.array(sorted(train), dtype=np.int64), np.array(sorted(test), dtype=np.int64)


def nearest_centroid_predict(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray) -> np.ndarray:
    """Label of the closest class mean (cosine similarity)."""
    classes = np.unique(y_train)
    centroids = np.stack([x_train[y_train == c].mean(axis=0) for c in classes])

    def unit(a):
        return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)

    return classes[np.argmax(unit(x_test) @ unit(centroids).T, axis=1)]


def logistic_regression_predict(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                                l2: float = 1e-3, steps: int = 500, lr: float = 0.5) -> np.ndarray:
    """Multinomial logistic regression, full-batch gradient descent on z-scored features
    (deterministic: zero initialisation, no sampling)."""
    classes, y = np.unique(y_train, return_inverse=True)
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std[std == 0] = 1.0
    xt = (x_train - mean) / std
    xs = (x_test - mean) / std
    n, d = xt.shape
    w = np.zeros((d, classes.size))
    b = np.zeros(classes.size)
    onehot = np.eye(classes.size)[y]
    for _ in range(steps):
        logits = xt @ w + b
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        grad = p - onehot
        w -= lr * (xt.T @ grad / n + l2 * w)
        b -= lr * grad.mean(axis=0)
    return classes[np.argmax(xs @ w + b, axis=1)]


def speaker_leakage(sequences: Sequence[np.ndarray], speakers: Sequence[str], num_codes: int,
                    test_fraction: float = 0.3, seed: int = 0) -> dict:
    """How well speaker identity is predicted from per-utterance code histograms of held-out
    utterances. ``chance`` = accuracy of always guessing the most frequent training speaker."""
    labels = np.asarray(list(speakers))
    train, test = stratified_split(labels, test_fraction, seed)
    n_speakers = len(set(labels[train].tolist())) if train.size else 0
    result = {"utterances": int(len(labels)), "speakers": n_speakers, "train": int(train.size),
              "test": int(test.size), "test_fraction": test_fraction, "seed": seed}
    if n_speakers < 2 or test.size == 0:
        result.update(accuracy_logreg=None, accuracy_centroid=None, chance=None,
                      note="needs at least two speakers with two or more utterances each")
        return result
    x = usage_features(sequences, num_codes)
    y_test = labels[test]
    values, counts = np.unique(labels[train], return_counts=True)
    majority = values[np.argmax(counts)]
    result.update(
        accuracy_logreg=float(np.mean(logistic_regression_predict(x[train], labels[train], x[test]) == y_test)),
        accuracy_centroid=float(np.mean(nearest_centroid_predict(x[train], labels[train], x[test]) == y_test)),
        chance=float(np.mean(y_test == majority)),
        uniform_chance=1.0 / n_speakers,
    )
    return result


# ---------------------------------------------------------------------------- codebooks
def pca_2d(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project rows onto their first two principal components.

    Returns (points (n, 2), explained variance ratio (2,)). Signs are fixed so that the largest
    coordinate of each component is positive (deterministic pictures)."""
    x = np.asarray(vectors, dtype=np.float64)
    x = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    comps = vt[:2]
    if comps.shape[0] < 2:
        comps = np.vstack([comps, np.zeros((2 - comps.shape[0], x.shape[1]))])
    flip = np.sign(comps[np.arange(2), np.abs(comps).argmax(axis=1)])
    comps = comps * np.where(flip == 0, 1, flip)[:, None]
    var = s ** 2
    ratio = np.zeros(2)
    if var.sum() > 0:
        ratio[:min(2, var.size)] = var[:2] / var.sum()
    return x @ comps.T, ratio


def cooccurrence(bottom_sequences: Sequence[np.ndarray], top_sequences: Sequence[np.ndarray],
                 num_bottom: int, num_top: int, ratio: int = 2) -> np.ndarray:
    """(num_bottom, num_top) counts of bottom frame i lying under top frame i // ratio."""
    table = np.zeros((num_bottom, num_top), dtype=np.int64)
    for bottom, top in zip(bottom_sequences, top_sequences):
        bottom = np.asarray(bottom, dtype=np.int64)
        top = np.asarray(top, dtype=np.int64)
        if top.size == 0 or bottom.size == 0:
            continue
        under = np.minimum(np.arange(bottom.size) // ratio, top.size - 1)
        np.add.at(table, (bottom, top[under]), 1)
    return table


def choose_top_codes(bottom_ids: np.ndarray, table: np.ndarray, ratio: int = 2) -> np.ndarray:
    """Top codes for a bare bottom sequence: for each top frame, the top code that co-occurred
    most often with the bottom codes under it (summed counts); bottom codes never seen fall back
    to the most frequent top code overall."""
    bottom_ids = np.asarray(bottom_ids, dtype=np.int64)
    fallback = int(np.asarray(table).sum(axis=0).argmax())
    n_top = -(-bottom_ids.size // ratio)
    out = np.empty(n_top, dtype=np.int64)
    for j in range(n_top):
        votes = table[bottom_ids[j * ratio:(j + 1) * ratio]].sum(axis=0)
        out[j] = int(votes.argmax()) if votes.sum() > 0 else fallback
    return out
