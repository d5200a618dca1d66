"""Forced alignment of recorded speech and cutting it into corpus utterances.

* ``resample``: 11025 Hz -> 16 kHz with scipy's polyphase filter (640/441, exact).
* ``words_of``: subtitle text -> pocketsphinx dictionary words; anything the dictionary lacks
  (names, numbers, ``(sob!)``, ``*sigh*``) becomes the ``[SPEECH]`` filler, so that the
  alignment still accounts for the sound and the utterances touching it can be dropped.
* ``align``: pip ``pocketsphinx`` (5.x, its US English model and CMU dictionary), a fresh decoder
  per clip (its noise-removal state carries over between utterances, which would make results
  depend on processing order) and ``bestpath=False`` (with the default, band-limited audio often
  fails to align). Phones come out in the CMU 39 + SIL set, on a 10 ms frame grid.
* ``cut``: utterances of 1-8 s, cut inside pauses, keeping only stretches whose alignment looks
  plausible: no filler, no vowel over 0.40 s or consonant over 0.25 s, no silence laid over
  speech-level energy, no cut where the signal is as loud as speech.

Everything here is a pure function of its inputs (no state between clips).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.signal import resample_poly

from pipeline.contract.names import SAMPLE_RATE
from pipeline.corpus.phones import CMU39

SOURCE_RATE = 11025
UP, DOWN = 640, 441                       # 11025 * 640 / 441 = 16000
FRAME = SAMPLE_RATE // 100                # pocketsphinx frames: 10 ms
FILLER = "[SPEECH]"
VOWELS = frozenset("AA AE AH AO AW AY EH ER EY IH IY OW OY UH UW".split())
MAX_VOWEL, MAX_CONSONANT = 0.40, 0.25     # seconds
MIN_UTT, MAX_UTT = 1.0, 8.0               # seconds
MIN_PAUSE = 0.15                          # seconds of aligned silence that may hold a cut
EDGE_SILENCE = 0.20                       # at most this much of a pause on each side of a cut
SILENCE_DB = 15.0                         # a pause must be this far below the clip's speech level
QUIET_FRAMES = 3                          # ... over its quietest 30 ms (where the cut goes)


def resample(samples: np.ndarray) -> np.ndarray:
    """11025 Hz float samples -> 16 kHz float samples."""
    return resample_poly(np.asarray(samples, dtype=np.float64), UP, DOWN)


def to_pcm16(samples: np.ndarray) -> np.ndarray:
    return np.round(np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16)


_TOKEN = re.compile(r"\([^)]*\)|\*[^*]*\*|<[^>]*>|[A-Za-z0-9'\-]+")


def words_of(text: str, in_dictionary) -> list[str]:
    """Dictionary words of a subtitle, lower case; out-of-vocabulary tokens -> ``[SPEECH]``
    (consecutive fillers merged). Hyphenated words are split when all their parts are words."""
    out: list[str] = []
    for token in _TOKEN.findall(text):
        word = token.lower().strip("'-")
        if token[0] in "(*<" or not word or any(c.isdigit() for c in word):
            parts = [FILLER] if (token[0] in "(*<" or word) else []
        elif in_dictionary(word):
            parts = [word]
        elif "-" in word and all(in_dictionary(p) for p in word.split("-") if p):
            parts = [p for p in word.split("-") if p]
        else:
            parts = [FILLER]
        for part in parts:
            if not (part == FILLER and out and out[-1] == FILLER):
                out.append(part)
    return out


@dataclass(frozen=True)
class Segment:
    """One aligned phone, in 10 ms frames: [start, end)."""
    start: int
    end: int
    phone: str          # CMU 39, "SIL", or a filler phone such as "+SPN+"
    word: str           # dictionary word without its variant number, "<sil>" for silence
    index: int          # position of the word in the alignment


def _decoder():
    from pocketsphinx import Decoder
    # the bundled US English acoustic model and dictionary; no language model (alignment only)
    return Decoder(samprate=SAMPLE_RATE, bestpath=False, loglevel="FATAL", lm=None)


@lru_cache(maxsize=1)
def _dictionary() -> frozenset[str]:
    from pocketsphinx import get_model_path
    words = set()
    with open(f"{get_model_path()}/en-us/cmudict-en-us.dict", encoding="utf-8") as fh:
        for line in fh:
            words.add(re.sub(r"\(\d+\)$", "", line.split(" ", 1)[0]))
    return frozenset(words)


def in_dictionary(word: str) -> bool:
    return word in _dictionary()


def align(pcm: np.ndarray, words: list[str]) -> list[Segment] | None:
    """Phone segments of 16 kHz int16 ``pcm`` reading ``words``, or None when it does not align."""
    if not any(w != FILLER for w in words):
        return None
    raw = np.ascontiguousarray(pcm, dtype=np.int16).tobytes()
    decoder = _decoder()                                  # fresh per clip: no state carried over
    try:
        decoder.set_align_text(" ".join(words))
        decoder.start_utt()
        decoder.process_raw(raw, full_utt=True)
        decoder.end_utt()
        if decoder.hyp() is None:
            return None
        decoder.set_alignment()
        decoder.start_utt()
        decoder.process_raw(raw, full_utt=True)
        decoder.end_utt()
        alignment = decoder.get_alignment()
    except (RuntimeError, ValueError):
        return None
    out = []
    for index, word in enumerate(alignment or ()):
        name = re.sub(r"\(\d+\)$", "", word.name)
        for phone in word:
            label = "SIL" if phone.name == "SIL" or name.startswith("<") else phone.name
            out.append(Segment(phone.start, phone.start + phone.duration, label, name, index))
    return out or None


def frame_energy_db(samples: np.ndarray) -> np.ndarray:
    """Mean power of every 10 ms frame in dB (full scale = 0 dB); a partial last frame counts."""
    x = np.asarray(samples, dtype=np.float64)
    n = -(-len(x) // FRAME)
    padded = np.zeros(n * FRAME)
    padded[: len(x)] = x
    power = (padded.reshape(n, FRAME) ** 2).mean(axis=1)
    return 10 * np.log10(power + 1e-12)


@dataclass(frozen=True)
class Cut:
    """One utterance cut out of a clip: samples [start, end) of the 16 kHz clip, its phones
    (start, end, label) in samples relative to ``start``, and its words."""
    start: int
    end: int
    phones: tuple[tuple[int, int, str], ...]
    words: tuple[str, ...]


def _problem(seg: Segment) -> str | None:
    """Why one aligned phone makes its phrase unusable, or None."""
    if seg.phone == "SIL":
        return None
    if seg.phone not in CMU39:                    # fillers: [SPEECH], [NOISE]
        return "filler"
    seconds = (seg.end - seg.start) / 100
    if seg.phone in VOWELS:
        return "long vowel" if seconds > MAX_VOWEL else None
    return "long consonant" if seconds > MAX_CONSONANT else None


def cut(segments: list[Segment], samples: np.ndarray, lost: dict | None = None) -> list[Cut]:
    """Utterances of ``MIN_UTT``-``MAX_UTT`` seconds out of one aligned clip (16 kHz samples).

    The clip is split at pauses (aligned silences of ``MIN_PAUSE`` or more whose quietest 30 ms
    lie ``SILENCE_DB`` below the clip's speech level; the cut goes at that quietest point) into
    phrases. A phrase is unusable when it holds a filler, an implausibly long phone, or a
    silence as loud as speech (the aligner laid silence over speech: its boundaries are off).
    Consecutive usable phrases are grouped greedily into utterances of at most ``MAX_UTT``;
    groups shorter than ``MIN_UTT`` are dropped. At most ``EDGE_SILENCE`` of a pause is kept on
    either side of a cut. ``lost``, if given, receives the seconds dropped per reason.
    """
    n_samples = len(samples)
    n_frames = -(-n_samples // FRAME)
    energy = frame_energy_db(samples)
    speech = [e for s in segments if s.phone != "SIL" for e in energy[s.start:s.end]]
    if not speech:
        return []
    level = float(np.median(speech))
    min_pause, edge = round(MIN_PAUSE * 100), round(EDGE_SILENCE * 100)

    # pauses -> (left end, right start) frame pairs; problem[k]: why phrase k is unusable
    bounds: list[tuple[int, int]] = [(0, 0)]
    problem: list[str | None] = [None]
    for seg in segments:
        if seg.phone != "SIL":
            problem[-1] = problem[-1] or _problem(seg)
            continue
        if seg.end - seg.start < QUIET_FRAMES:
            continue
        means = np.convolve(energy[seg.start:seg.end], np.ones(QUIET_FRAMES) / QUIET_FRAMES, mode="valid")
        quiet = int(np.argmin(means))
        if means[quiet] > level - SILENCE_DB:
            problem[-1] = problem[-1] or "silence over speech"
            continue
        if seg.end - seg.start < min_pause or seg.start == 0 or seg.end >= n_frames:
            continue
        at = seg.start + quiet + QUIET_FRAMES // 2
        bounds.append((min(at, seg.start + edge), max(at, seg.end - edge)))
        problem.append(None)
    bounds.append((n_frames, n_frames))

    # phrase k spans frames [bounds[k][1], bounds[k + 1][0]); group usable neighbours
    utts: list[tuple[int, int]] = []
    k, n_phrases = 0, len(bounds) - 1

    def drop(first: int, last: int, reason: str) -> None:
        if lost is not None:
            lost[reason] = lost.get(reason, 0.0) + (bounds[last + 1][0] - bounds[first][1]) / 100

    while k < n_phrases:
        if problem[k]:
            drop(k, k, problem[k])
            k += 1
            continue
        start, j = bounds[k][1], k
        while j + 1 < n_phrases and not problem[j + 1] and bounds[j + 2][0] - start <= MAX_UTT * 100:
            j += 1
        length = bounds[j + 1][0] - start
        if length > MAX_UTT * 100:
            drop(k, j, "phrase over 8 s")
        elif length < MIN_UTT * 100:
            drop(k, j, "under 1 s")
        else:
            utts.append((start, bounds[j + 1][0]))
        k = j + 1

    out = []
    for start, end in utts:
        s0 = start * FRAME
        s1 = min(end * FRAME, n_samples) // 16 * 16           # whole milliseconds
        phones, words, seen = [], [], set()
        for seg in segments:
            a, b = max(seg.start * FRAME, s0), min(seg.end * FRAME, s1)
            if b <= a:
                continue
            phones.append((a - s0, b - s0, seg.phone))
            if seg.phone != "SIL" and seg.index not in seen:
                seen.add(seg.index)
                words.append(seg.word)
        out.append(Cut(s0, s1, tuple(phones), tuple(words)))
    return out
