"""ABX discrimination, re-implemented exactly as the official ZeroSpeech 2019 evaluation
(zerospeech2020 ``evaluation/abx.py`` on top of ABXpy, task "by context, across speaker").

Task: ON phone, BY context (previous and next phone), ACROSS speaker. A triplet (A, B, X) has
A and X with the same phone, B with another phone, A and B from one speaker, X from another,
all three in the same context. Every triplet is used (no sampling).

Distances (ABXpy semantics, distance of the pair (A or B, X) with A/B on the rows):
  * ``cosine``: frame cost arccos(cos)/pi (zero vector: 1 against a non-zero vector, 0 against
    another zero vector), DTW with the three moves, total cost divided by the length of the
    back-tracked path (ties in back-tracking prefer diagonal, then left (j-1), then up).
  * ``KL``: symmetrised KL of rows normalised to sum 1, smoothed by machine epsilon and
    renormalised; same normalised DTW. Negative or zero-sum rows give NaN: every such
    comparison is a tie (continuous features therefore score exactly 50 %, as on the
    official leaderboard).
  * ``levenshtein``: plain edit distance between the sequences of whole frame vectors (each
    distinct row is a symbol), not normalised.

Score: a triplet counts 1 if d(A,X) < d(B,X), 0 if greater, 1/2 if equal or NaN. Cell =
(phone A, phone B, speaker A/B, speaker X, context) -> mean; then the mean over contexts, then
over speaker pairs, then over phone pairs (all unweighted); ABX error = 100 * (1 - mean).

Item frames: for whole-file items (the official excerpt files) every frame of the file is
used (the official loader gives frame i of L the time i/L and the item spans [0, 1]). For
items given in seconds inside long files the frame period is the file duration divided by
its number of lines and a frame is selected when its centre lies in [onset, offset]; an item
shorter than one frame gets the frame nearest to its midpoint (so no item is ever empty).

Items of an official ABXpy task file (``pipeline.contract.abxtask``) follow ABXpy itself: frame
i of a file of L lines has the time i / L (the official 2019 loader), an item keeps the frames
with onset <= time <= offset, and exactly the file's triplets are scored (``task_from_file``);
an item left without frames is at distance 0 from another empty item and inf from any other, as
in ``ABXpy.distance``.

The distance and scoring kernels are compiled with numba and run in parallel threads. The
compiled code is cached on disk (``numba_cache_dir``): only the first run of this code on a
machine compiles (about 10 to 20 s); later processes load it in well under a second.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numba
import numpy as np

from pipeline.contract.abxtask import AbxTaskFile
from pipeline.contract.items import ItemTable
from pipeline.contract.names import EVALUATOR_DISTANCES
from pipeline.core.errors import UserError

# numba's default OpenMP layer leaves its threads spinning after each parallel kernel and
# shares libgomp's thread count with torch: the log-mel baselines that follow ran 9x slower.
# The workqueue layer does neither (an explicit NUMBA_THREADING_LAYER still wins).
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"


def numba_cache_dir() -> Path:
    """Where the compiled kernels are cached: ``$NUMBA_CACHE_DIR``, else ``$ZS2020_CACHE/numba``,
    else ``$XDG_CACHE_HOME/zs2020/numba`` (``~/.cache/zs2020/numba``). numba's own default, a
    ``__pycache__`` beside this file, is not writable for an installed package or a read-only
    checkout. Entries are keyed by the source file's folder and content: moving or deleting the
    folder costs one compilation, and so does an edit of this file. Where the folder cannot be
    written, numba falls back to its own default."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return Path(os.environ["NUMBA_CACHE_DIR"])
    if os.environ.get("ZS2020_CACHE"):
        return Path(os.environ["ZS2020_CACHE"]) / "numba"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "zs2020" / "numba"


# numba reads NUMBA_CACHE_DIR once, when it is first imported (librosa may have imported it
# already): set its config before the kernels below are defined, so their caches go there.
numba.config.CACHE_DIR = str(numba_cache_dir())

DISTANCES = EVALUATOR_DISTANCES


# --------------------------------------------------------------------------- item frames
def select_frames(features: np.ndarray, onset: float, offset: float, duration: float) -> np.ndarray:
    """Frames of a long file whose centres lie in [onset, offset] (seconds).

    Frame period = duration / number of lines, so any frame rate works (10 ms, 20 ms, ...)."""
    n = len(features)
    period = duration / n
    centres = (np.arange(n) + 0.5) * period
    keep = np.flatnonzero((centres >= onset - 1e-9) & (centres <= offset + 1e-9))
    if keep.size == 0:
        nearest = int(np.clip(np.floor(0.5 * (onset + offset) / period), 0, n - 1))
        keep = np.array([nearest])
    return features[keep[0]:keep[-1] + 1]


def item_features(items: ItemTable, features: dict[str, np.ndarray], whole_file: bool,
                  durations: dict[str, float] | None = None) -> list[np.ndarray]:
    """One (frames, dim) array per item: whole files, or spans selected by time."""
    out = []
    for i, name in enumerate(items.files):
        feats = features[name]
        if whole_file:
            out.append(feats)
        else:
            if durations is None or name not in durations:
                raise UserError(f"no duration known for {name}: needed to place items given in seconds")
            out.append(select_frames(feats, items.onsets[i], items.offsets[i], durations[name]))
    return out


# --------------------------------------------------------------------------- the task
@dataclass
class Task:
    """Items coded as integers and grouped into context blocks that hold at least one triplet."""
    phone_names: np.ndarray
    speaker_names: np.ndarray
    context_names: np.ndarray
    phone: np.ndarray        # per item, int codes
    speaker: np.ndarray
    context: np.ndarray
    blocks: list[np.ndarray] = field(default_factory=list)   # item indices per context
    # a task file's own triplets: per block, (n, 3) rows A, B, X as positions in the block;
    # None: every triplet the labels allow (item files)
    listed: list[np.ndarray] | None = None

    @property
    def n_items_used(self) -> int:
        if self.listed is not None:
            return int(sum(np.unique(t).size for t in self.listed))
        return int(sum(len(b) for b in self.blocks))


def build_task(items: ItemTable) -> Task:
    phone_names, phone = np.unique(items.phones, return_inverse=True)
    speaker_names, speaker = np.unique(items.speakers, return_inverse=True)
    context_names, context = np.unique(items.contexts, return_inverse=True)
    task = Task(phone_names, speaker_names, context_names, phone, speaker, context)
    order = np.argsort(context, kind="stable")
    bounds = np.flatnonzero(np.diff(context[order])) + 1
    for block in np.split(order, bounds):
        if _block_has_triplet(phone[block], speaker[block]):
            task.blocks.append(block)
    return task


def task_from_file(task_file: AbxTaskFile) -> Task:
    """The task of an ABXpy task file: its blocks (BY values) and exactly its triplets."""
    phone_names, phone = np.unique(task_file.phones, return_inverse=True)
    speaker_names, speaker = np.unique(task_file.speakers, return_inverse=True)
    starts = task_file.block_starts
    context = np.repeat(np.arange(len(task_file.bys)), np.diff(starts))
    task = Task(phone_names, speaker_names, np.array(task_file.bys), phone.reshape(-1), speaker.reshape(-1),
                context, listed=[])
    for k in range(len(task_file.bys)):
        task.blocks.append(np.arange(starts[k], starts[k + 1]))
        rows = task_file.triplets[task_file.triplet_starts[k]:task_file.triplet_starts[k + 1]]
        task.listed.append(rows - starts[k])
    return task


def timed_item_features(task_file: AbxTaskFile, features: dict[str, np.ndarray]) -> list[np.ndarray]:
    """One (frames, dim) array per item of a task file, selected as ABXpy does on the official
    2019 loader's time stamps: frame i of L has the time i / L, an item keeps the frames with
    onset <= time <= offset (possibly none)."""
    out = []
    for name, onset, offset in zip(task_file.files, task_file.onsets, task_file.offsets):
        if name not in features:
            raise UserError(f"no unit file {name}.txt for an item of the ABX task {task_file.path}")
        feats = features[name]
        times = np.arange(len(feats)) / len(feats)
        out.append(feats[(times >= onset) & (times <= offset)])
    return out


def _block_has_triplet(phone: np.ndarray, speaker: np.ndarray) -> bool:
    """A speaker with two phones (A, B) and another speaker with A's phone (X)."""
    pairs = set(zip(phone.tolist(), speaker.tolist()))
    for p, s in pairs:
        if any(q != p for q, t in pairs if t == s) and any(t != s for q, t in pairs if q == p):
            return True
    return False


def _needed_pairs(phone: np.ndarray, speaker: np.ndarray) -> np.ndarray:
    """Boolean (n, n): pairs (i, j) that some triplet reads as d(A or B = i, X = j).

    i and j have different speakers, speaker(i) has an item with phone(j) (the A) and at
    least one other phone (the B)."""
    up, ip = np.unique(phone, return_inverse=True)
    us, is_ = np.unique(speaker, return_inverse=True)
    has = np.zeros((len(up), len(us)), dtype=bool)
    has[ip, is_] = True
    two_phones = has.sum(axis=0) >= 2
    return (is_[:, None] != is_[None, :]) & has[ip[None, :], is_[:, None]] & two_phones[is_][:, None]


# --------------------------------------------------------------------------- kernels
@numba.njit(cache=True, nogil=True)
def _dtw_normalized(cost: np.ndarray) -> float:
    """ABXpy's DTW: accumulated cost from (0,0), divided by the back-tracked path length."""
    n, m = cost.shape
    acc = np.empty((n, m))
    acc[0, 0] = cost[0, 0]
    for i in range(1, n):
        acc[i, 0] = cost[i, 0] + acc[i - 1, 0]
    for j in range(1, m):
        acc[0, j] = cost[0, j] + acc[0, j - 1]
    for i in range(1, n):
        for j in range(1, m):
            acc[i, j] = cost[i, j] + min(acc[i - 1, j], acc[i - 1, j - 1], acc[i, j - 1])
    path_len = 1
    i, j = n - 1, m - 1
    while i > 0 and j > 0:
        up, left, diag = acc[i - 1, j], acc[i, j - 1], acc[i - 1, j - 1]
        if diag <= left and diag <= up:
            i -= 1
            j -= 1
        elif left <= up:
            j -= 1
        else:
            i -= 1
        path_len += 1
    if i == 0:
        path_len += j
    if j == 0:
        path_len += i
    return acc[n - 1, m - 1] / path_len


@numba.njit(cache=True, nogil=True)
def _cosine_cost(x: np.ndarray, y: np.ndarray, zx: np.ndarray, zy: np.ndarray) -> np.ndarray:
    """x, y: unit-norm rows; zx, zy: rows that were zero vectors."""
    n, m, d = x.shape[0], y.shape[0], x.shape[1]
    cost = np.empty((n, m))
    for i in range(n):
        for j in range(m):
            if zx[i] or zy[j]:
                cost[i, j] = 0.0 if (zx[i] and zy[j]) else 1.0
                continue
            dot = 0.0
            for k in range(d):
                dot += x[i, k] * y[j, k]
            # scipy's arccos of 1+eps is complex; ABXpy keeps its real part, i.e. clips.
            dot = min(1.0, max(-1.0, dot))
            cost[i, j] = math.acos(dot) / math.pi
    return cost


@numba.njit(cache=True, nogil=True)
def _kl_cost(p: np.ndarray, q: np.ndarray, logp: np.ndarray, logq: np.ndarray,
             hp: np.ndarray, hq: np.ndarray) -> np.ndarray:
    """Symmetrised KL: 0.5 (sum p log p - p.log q) + 0.5 (sum q log q - q.log p)."""
    n, m, d = p.shape[0], q.shape[0], p.shape[1]
    cost = np.empty((n, m))
    for i in range(n):
        for j in range(m):
            pq = 0.0
            qp = 0.0
            for k in range(d):
                pq += p[i, k] * logq[j, k]
                qp += q[j, k] * logp[i, k]
            cost[i, j] = 0.5 * (hp[i] - pq) + 0.5 * (hq[j] - qp)
    return cost


@numba.njit(cache=True, nogil=True)
def _has_nan(cost: np.ndarray) -> bool:
    for v in cost.ravel():
        if v != v:
            return True
    return False


@numba.njit(cache=True, nogil=True)
def _edit_distance(a: np.ndarray, b: np.ndarray) -> float:
    n, m = a.shape[0], b.shape[0]
    prev = np.arange(m + 1).astype(np.float64)
    cur = np.empty(m + 1)
    for i in range(1, n + 1):
        cur[0] = i
        for j in range(1, m + 1):
            sub = prev[j - 1] + (0.0 if a[i - 1] == b[j - 1] else 1.0)
            cur[j] = min(sub, prev[j] + 1.0, cur[j - 1] + 1.0)
        prev, cur = cur, prev
    return prev[m]


@numba.njit(parallel=True, cache=True)
def _pair_distances(kind: int, f1: np.ndarray, f2: np.ndarray, f3: np.ndarray, flags: np.ndarray,
                    symbols: np.ndarray, starts: np.ndarray, lengths: np.ndarray,
                    left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """kind 0 cosine (f1 = unit rows, flags = zero rows), 1 KL (f1 = p, f2 = log p, f3[:, 0] =
    sum p log p), 2 levenshtein (symbols = one int per frame)."""
    out = np.empty(left.shape[0])
    for k in numba.prange(left.shape[0]):
        a, b = left[k], right[k]
        sa, sb = starts[a], starts[b]
        ea, eb = sa + lengths[a], sb + lengths[b]
        if kind == 2:
            out[k] = _edit_distance(symbols[sa:ea], symbols[sb:eb])
            continue
        if kind == 0:
            cost = _cosine_cost(f1[sa:ea], f1[sb:eb], flags[sa:ea], flags[sb:eb])
        else:
            cost = _kl_cost(f1[sa:ea], f1[sb:eb], f2[sa:ea], f2[sb:eb], f3[sa:ea, 0], f3[sb:eb, 0])
        out[k] = np.nan if _has_nan(cost) else _dtw_normalized(cost)
    return out


@numba.njit(cache=True)
def _score_block(dist: np.ndarray, phone: np.ndarray, speaker: np.ndarray,
                 sums: np.ndarray, counts: np.ndarray, ties: np.ndarray) -> None:
    """Accumulate every triplet of one context block into (phone A, phone B, spk A, spk X) cells."""
    n = phone.shape[0]
    for a in range(n):
        for x in range(n):
            if phone[x] != phone[a] or speaker[x] == speaker[a]:
                continue
            dax = dist[a, x]
            for b in range(n):
                if speaker[b] != speaker[a] or phone[b] == phone[a]:
                    continue
                dbx = dist[b, x]
                if dax < dbx:
                    s = 1.0
                elif dax > dbx:
                    s = 0.0
                else:               # equal, or NaN on either side: a tie
                    s = 0.5
                    ties[0] += 1
                sums[phone[a], phone[b], speaker[a], speaker[x]] += s
                counts[phone[a], phone[b], speaker[a], speaker[x]] += 1


# --------------------------------------------------------------------------- features prep
@dataclass
class PackedFeatures:
    """All item frames in one array (what the compiled kernels read)."""
    kind: int
    f1: np.ndarray
    f2: np.ndarray
    f3: np.ndarray
    flags: np.ndarray
    symbols: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray


def pack_features(arrays: list[np.ndarray], distance: str, allow_empty: bool = False) -> PackedFeatures:
    """``allow_empty``: items without frames are kept (the task-file path gives them ABXpy's
    distances: 0 to another empty item, inf to any other); otherwise they are an error."""
    if distance not in DISTANCES:
        raise UserError(f"unknown ABX distance {distance!r}: use one of {', '.join(DISTANCES)}")
    lengths = np.array([len(a) for a in arrays], dtype=np.int64)
    if np.any(lengths == 0) and not allow_empty:
        raise ValueError("an ABX item has no frames")
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    frames = np.concatenate([np.asarray(a, dtype=np.float64) for a in arrays]) + 0.0  # -0.0 -> 0.0
    empty2 = np.zeros((1, 1))
    no_flags = np.zeros(1, dtype=np.bool_)
    no_symbols = np.zeros(1, dtype=np.int64)
    if distance == "cosine":
        norms = np.sqrt(np.sum(frames ** 2, axis=1))
        zero = norms == 0.0
        unit = frames / np.where(zero, 1.0, norms)[:, None]
        return PackedFeatures(0, np.ascontiguousarray(unit), empty2, empty2, zero, no_symbols, starts, lengths)
    if distance == "KL":
        with np.errstate(all="ignore"):
            p = frames / frames.sum(axis=1, keepdims=True)
            p = p + np.finfo(np.float64).eps
            p = p / p.sum(axis=1, keepdims=True)
            logp = np.log(p)
            h = np.sum(p * logp, axis=1, keepdims=True)
        return PackedFeatures(1, np.ascontiguousarray(p), np.ascontiguousarray(logp), h, no_flags,
                              no_symbols, starts, lengths)
    _, symbols = np.unique(frames, axis=0, return_inverse=True)
    return PackedFeatures(2, empty2, empty2, empty2, no_flags, symbols.reshape(-1).astype(np.int64),
                          starts, lengths)


def pair_distances(packed: PackedFeatures, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """d(item left[k], item right[k]) for every k (items on the rows = left)."""
    p = packed
    return _pair_distances(p.kind, p.f1, p.f2, p.f3, p.flags, p.symbols, p.starts, p.lengths,
                           np.asarray(left, dtype=np.int64), np.asarray(right, dtype=np.int64))


def set_jobs(jobs: int) -> None:
    """Threads of the compiled kernels (0 = all cores)."""
    limit = numba.config.NUMBA_NUM_THREADS
    numba.set_num_threads(limit if jobs <= 0 else max(1, min(int(jobs), limit)))


# --------------------------------------------------------------------------- scoring
@dataclass
class Cells:
    """One row per (phone A, phone B, speaker A/B, speaker X, context) cell."""
    phone_a: np.ndarray
    phone_b: np.ndarray
    speaker_a: np.ndarray
    speaker_x: np.ndarray
    context: np.ndarray
    score: np.ndarray        # fraction correct in [0, 1], ties = 1/2
    n: np.ndarray            # triplets in the cell
    pairs: int = 0           # distinct (A or B, X) distances computed
    undefined_pairs: int = 0  # of those, undefined (NaN: e.g. KL on rows that are not distributions)
    tied_triplets: int = 0   # triplets with d(A,X) == d(B,X) or an undefined distance


def score_cells(task: Task, packed: PackedFeatures) -> Cells:
    if task.listed is not None:
        return _score_listed(task, packed)
    lefts, rights, offsets, shapes = [], [], [], []
    total = 0
    for block in task.blocks:
        n = len(block)
        li, lj = np.nonzero(_needed_pairs(task.phone[block], task.speaker[block]))
        lefts.append(block[li])
        rights.append(block[lj])
        offsets.append(total + li * n + lj)
        shapes.append(total)
        total += n * n
    if not task.blocks:
        return Cells(*(np.zeros(0, dtype=int) for _ in range(5)), np.zeros(0), np.zeros(0, dtype=int))
    dist = np.full(total, np.nan)
    computed = pair_distances(packed, np.concatenate(lefts), np.concatenate(rights))
    dist[np.concatenate(offsets)] = computed
    ties = np.zeros(1, dtype=np.int64)
    rows = {k: [] for k in ("pa", "pb", "sa", "sx", "ctx", "score", "n")}
    for block, base in zip(task.blocks, shapes):
        n = len(block)
        up, ph = np.unique(task.phone[block], return_inverse=True)
        us, sp = np.unique(task.speaker[block], return_inverse=True)
        sums = np.zeros((len(up), len(up), len(us), len(us)))
        counts = np.zeros_like(sums, dtype=np.int64)
        _score_block(dist[base:base + n * n].reshape(n, n), ph.astype(np.int64), sp.astype(np.int64),
                     sums, counts, ties)
        pa, pb, sa, sx = np.nonzero(counts)
        rows["pa"].append(up[pa])
        rows["pb"].append(up[pb])
        rows["sa"].append(us[sa])
        rows["sx"].append(us[sx])
        rows["ctx"].append(np.full(len(pa), task.context[block[0]]))
        rows["score"].append(sums[pa, pb, sa, sx] / counts[pa, pb, sa, sx])
        rows["n"].append(counts[pa, pb, sa, sx])
    cat = {k: np.concatenate(v) for k, v in rows.items()}
    return Cells(cat["pa"], cat["pb"], cat["sa"], cat["sx"], cat["ctx"], cat["score"], cat["n"],
                 int(computed.size), int(np.isnan(computed).sum()), int(ties[0]))


def _score_listed(task: Task, packed: PackedFeatures) -> Cells:
    """Score exactly the task file's triplets (ABXpy's ``score`` then ``analyze``): one
    distance per distinct (A or B, X) pair, cells keyed by (block, phone A, phone B, speaker A,
    speaker X), i.e. analyze's (by, <on>_1, <on>_2, <across>_1, <across>_2)."""
    triplets = np.concatenate([block[rows] for block, rows in zip(task.blocks, task.listed)]).reshape(-1, 3)
    a, b, x = triplets[:, 0], triplets[:, 1], triplets[:, 2]
    n_items = len(task.phone)
    pairs, inverse = np.unique(np.concatenate([a * n_items + x, b * n_items + x]), return_inverse=True)
    left, right = pairs // n_items, pairs % n_items
    empty_left, empty_right = packed.lengths[left] == 0, packed.lengths[right] == 0
    # ABXpy.distance: an item without frames is at 0 from another one, at inf from any other
    dist = np.where(empty_left & empty_right, 0.0, np.inf)
    full = ~(empty_left | empty_right)
    dist[full] = pair_distances(packed, left[full], right[full])
    d = dist[inverse.reshape(-1)]
    dax, dbx = d[:len(a)], d[len(a):]
    tie = ~(dax < dbx) & ~(dax > dbx)          # equal, or NaN on either side
    score = np.where(dax < dbx, 1.0, np.where(tie, 0.5, 0.0))
    keys = np.stack([task.context[a], task.phone[a], task.phone[b], task.speaker[a], task.speaker[x]], axis=1)
    cells, which = np.unique(keys, axis=0, return_inverse=True)
    which = which.reshape(-1)
    counts = np.bincount(which)
    return Cells(cells[:, 1], cells[:, 2], cells[:, 3], cells[:, 4], cells[:, 0],
                 np.bincount(which, weights=score) / counts, counts,
                 int(len(pairs)), int(np.isnan(dist).sum()), int(tie.sum()))


def _group_mean(keys: list[np.ndarray], values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unweighted mean of ``values`` per distinct key tuple -> (unique key rows, means)."""
    stacked = np.stack(keys, axis=1)
    uniq, inverse = np.unique(stacked, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    means = np.bincount(inverse, weights=values) / np.bincount(inverse)
    return uniq, means


def average_cells(cells: Cells, order: str = "official") -> tuple[float, dict[tuple[int, int], float]]:
    """``official``: mean over contexts, then speaker pairs, then phone pairs (zerospeech2020).
    ``libri-light`` (libriabx/libriabx2, for cross-checks): mean over (context, X speaker)
    jointly per (A speaker, phone pair), then over A speakers, then phone pairs.

    Returns (mean fraction correct, {(phone A, phone B): mean fraction correct})."""
    if len(cells.score) == 0:
        raise UserError("the ABX task has no triplet (need two speakers saying one phone in one context)")
    if order == "official":
        first, m1 = _group_mean([cells.speaker_a, cells.speaker_x, cells.phone_a, cells.phone_b], cells.score)
        by_phone, m2 = _group_mean([first[:, 2], first[:, 3]], m1)
    elif order == "libri-light":
        first, m1 = _group_mean([cells.speaker_a, cells.phone_a, cells.phone_b], cells.score)
        by_phone, m2 = _group_mean([first[:, 1], first[:, 2]], m1)
    else:
        raise ValueError(f"unknown averaging order {order!r}")
    return float(np.mean(m2)), {(int(a), int(b)): float(v) for (a, b), v in zip(by_phone, m2)}


# Levenshtein on frame vectors treats every distinct row as a symbol; when nearly every frame is
# its own symbol (continuous features) the edit distance only compares lengths.
LEVENSHTEIN_MAX_SYMBOL_SHARE = 0.5


@dataclass
class AbxResult:
    distance: str
    error: float                      # ABX error in percent (the official value, always kept)
    n_items: int
    n_triplets: int
    n_cells: int
    by_phone_pair: dict[str, float]   # "AA-B" -> error in percent
    pairs: int = 0
    undefined_pairs: int = 0
    tied_triplets: int = 0
    symbols: int = 0                  # distinct frame vectors (levenshtein)
    frames: int = 0
    na_reason: str | None = None      # why the number is not a measurement (None: it is one)
    # error (%) over the cells whose A and X speakers are both of one group (e.g. real and
    # synthetic speakers); None for a group with no such cell
    by_group: dict[str, float | None] = field(default_factory=dict)
    # the standard error (%) of each group's error from its sample of phone pairs (``bootstrap_se``)
    se_by_group: dict[str, float | None] = field(default_factory=dict)

    @property
    def meaningful(self) -> bool:
        return self.na_reason is None

    def to_json(self) -> dict:
        return {"distance": self.distance, "error": round(self.error, 4), "items": self.n_items,
                "triplets": self.n_triplets, "cells": self.n_cells, "pairs": self.pairs,
                "undefined_pairs": self.undefined_pairs, "tied_triplets": self.tied_triplets,
                "n/a": self.na_reason,
                **({"by_group": {k: None if v is None else round(v, 4) for k, v in self.by_group.items()},
                    "se_by_group": {k: None if v is None else round(v, 4) for k, v in self.se_by_group.items()}}
                   if self.by_group else {})}


def not_applicable(distance: str, packed: PackedFeatures, cells: Cells) -> str | None:
    """The reason an ABX number says nothing about the features, or None."""
    if cells.undefined_pairs:
        share = cells.undefined_pairs / max(cells.pairs, 1)
        what = ("rows that are not probability distributions (negative or all-zero values)"
                if distance == "KL" else "frames where the distance is undefined")
        return f"{100 * share:.0f}% of the item distances are undefined ({what}); every such triplet is a tie"
    if distance == "levenshtein":
        frames = int(packed.lengths.sum())
        symbols = int(np.unique(packed.symbols).size) if frames else 0
        if frames and symbols > LEVENSHTEIN_MAX_SYMBOL_SHARE * frames:
            return (f"{symbols} distinct symbols in {frames} frames: continuous features make almost every frame a "
                    f"symbol of its own, so the edit distance compares durations only")
    return None


def group_pair_scores(task: Task, cells: Cells, speakers: set[str]) -> dict[tuple[int, int], float]:
    """{(phone A, phone B): fraction correct} over the cells whose A and X speakers are all of
    ``speakers`` (the official averaging; empty when the group has no such cell)."""
    member = np.isin(task.speaker_names, sorted(speakers))
    keep = member[cells.speaker_a] & member[cells.speaker_x]
    if not keep.any():
        return {}
    subset = Cells(*(getattr(cells, f)[keep] for f in ("phone_a", "phone_b", "speaker_a", "speaker_x",
                                                       "context", "score", "n")))
    return average_cells(subset)[1]


def group_errors(task: Task, cells: Cells, groups: dict[str, set[str]]
                 ) -> tuple[dict[str, float | None], dict[str, float | None]]:
    """ABX error (%) of each speaker group: the official average over its own cells (A, B and X
    said by its speakers), and its bootstrap standard error (None for a group without cells)."""
    errors: dict[str, float | None] = {}
    errors_se: dict[str, float | None] = {}
    for name, speakers in groups.items():
        per_pair = group_pair_scores(task, cells, speakers)
        if not per_pair:
            errors[name] = errors_se[name] = None
            continue
        errors[name] = 100.0 * (1.0 - float(np.mean(list(per_pair.values()))))
        errors_se[name] = bootstrap_se(list(per_pair.values()))
    return errors, errors_se


BOOTSTRAP_DRAWS = 2000


def bootstrap_se(pair_scores: list[float], draws: int = BOOTSTRAP_DRAWS, seed: int = 0) -> float:
    """The standard error (in ABX percentage points) of an ABX error that is the mean over phone
    pairs (``average_cells``): the spread of that mean over ``draws`` resamplings of the phone
    pairs with replacement (seeded, so a result is repeatable). It says how far another sample of
    phone pairs and contexts might move the number: two systems whose errors on a few hundred
    phone pairs differ by less than about twice it are not told apart by that test set."""
    scores = np.asarray(pair_scores, dtype=np.float64)
    if scores.size < 2:
        return 0.0
    return float(100.0 * _resampled_means(scores, draws, seed).std())


def resample_picks(size: int, draws: int = BOOTSTRAP_DRAWS, seed: int = 0) -> np.ndarray:
    """(draws, size) indices drawn with replacement: a seeded bootstrap, so a result is repeatable."""
    return np.random.default_rng(seed).integers(0, size, (draws, size))


def _resampled_means(values: np.ndarray, draws: int, seed: int) -> np.ndarray:
    """(draws,) means of ``values`` resampled with replacement (a seeded bootstrap)."""
    return values[resample_picks(values.size, draws, seed)].mean(1)


def paired_difference(first: dict, second: dict, draws: int = BOOTSTRAP_DRAWS, seed: int = 0
                      ) -> tuple[float, float, float, int]:
    """How much lower the second system's ABX error is than the first's on the same items:
    (difference in ABX points, second minus first, and its 95 % bootstrap interval, phone pairs),
    over the phone pairs both score ({pair: fraction correct}, as ``group_pair_scores`` gives),
    resampled together so that what the two share (hard pairs, easy pairs) cancels. An interval
    that holds 0 says the items do not tell the two apart."""
    pairs = sorted(set(first) & set(second))
    if not pairs:
        raise ValueError("the two systems share no phone pair")
    delta = 100.0 * (np.array([first[p] for p in pairs]) - np.array([second[p] for p in pairs]))
    means = _resampled_means(delta, draws, seed)
    return float(delta.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5)), len(pairs)


def scored_cells(task: Task, item_arrays: list[np.ndarray], distance: str) -> tuple[PackedFeatures, Cells]:
    """The features packed for ``distance`` and every cell of the task scored on them."""
    packed = pack_features(item_arrays, distance, allow_empty=task.listed is not None)
    return packed, score_cells(task, packed)


def abx(task: Task, item_arrays: list[np.ndarray], distance: str,
        groups: dict[str, set[str]] | None = None) -> AbxResult:
    """ABX error (%) of one feature set (one (frames, dim) array per item of the task), and of
    each speaker group of ``groups`` (name -> speaker names) on its own."""
    packed, cells = scored_cells(task, item_arrays, distance)
    mean, per_pair = average_cells(cells)
    names = task.phone_names
    frames = int(packed.lengths.sum())
    symbols = int(np.unique(packed.symbols).size) if distance == "levenshtein" else 0
    return AbxResult(distance, 100.0 * (1.0 - mean), task.n_items_used, int(cells.n.sum()), len(cells.score),
                     {f"{names[a]}-{names[b]}": 100.0 * (1.0 - v) for (a, b), v in per_pair.items()},
                     cells.pairs, cells.undefined_pairs, cells.tied_triplets, symbols, frames,
                     not_applicable(distance, packed, cells), *group_errors(task, cells, groups or {}))


def dtw_normalized(cost: np.ndarray) -> float:
    """Path-length normalised DTW of a (n, m) frame-cost matrix (ABXpy semantics)."""
    cost = np.ascontiguousarray(cost, dtype=np.float64)
    if cost.ndim != 2 or 0 in cost.shape:
        raise ValueError("DTW needs a non-empty (n, m) cost matrix")
    return float(_dtw_normalized(cost))


def edit_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Levenshtein distance between two sequences of integer symbols."""
    return float(_edit_distance(np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)))
