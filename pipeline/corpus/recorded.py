"""Real recorded English for the demo corpus: The Ur-Quan Masters' 3DO voice pack.

``voice_pack()`` downloads the two Debian packages once per machine (``pipeline.corpus.debian``)
and unpacks the two game archives next to them. ``aligned()`` forced-aligns clips
(``pipeline.corpus.align``) and caches each clip's usable utterances under
``<cache>/uqm/aligned-<key>/``, where the key covers the .deb versions, ``ALIGN_VERSION`` and the
aligner's version: a corpus rebuild reads the cache and never re-aligns. The repository ships the
records of every clip the demo scales use (``SHIPPED``, written by ``scripts/ship_alignments.py``
from this aligner's output) under the same key, so that a first build on a new machine aligns
nothing that pocketsphinx would align the same way; under another key (an upgraded package, a
new ``ALIGN_VERSION``) the table is ignored and every clip is aligned here. Clips are aligned on
demand, actor by actor in a fixed order (md5 of the clip name) until the requested minutes are
reached, so a corpus that needs a few minutes per actor aligns only those clips, and which
utterances it gets never depends on what else the cache holds. ``extract()`` writes the chosen
utterances as 16 kHz wavs (peak-normalised to -3 dBFS, as the synthetic speakers) with their
phone alignments.

Licence of the audio: CC BY-NC-SA 2.5 (``uqm.LICENCE``): non-commercial, share-alike.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from pipeline.contract.names import SAMPLE_RATE
from pipeline.core.errors import UserError
from pipeline.core.pool import parallel_map
from pipeline.core.stamp import fingerprint
from pipeline.corpus import align as aligner
from pipeline.corpus import uqm
from pipeline.corpus.debian import cache_root, deb_version, fetch_debs, unpack
from pipeline.corpus.phones import Phone, canonical_pocketsphinx, finalize

PACKAGES = ("uqm-voice", "uqm-content")
ALIGN_VERSION = 1            # bump whenever the alignment or the cutting rules change
PEAK = 10 ** (-3 / 20)       # -3 dBFS, as ``sox norm -3`` does for the synthetic speakers
BATCH = 16                   # clips aligned per round while filling an actor's minutes
SHIPPED = Path(__file__).with_name("uqm_alignments.json.xz")   # {"key": cache_key, "records": {clip: record}}


@dataclass(frozen=True)
class Utterance:
    """One usable cut of a clip: samples [start, end) of the 16 kHz clip."""
    clip: str
    race: str
    actor: str
    start: int
    end: int
    phones: tuple[tuple[int, int, str], ...]     # (start, end, label), samples from ``start``
    words: tuple[str, ...]

    @property
    def seconds(self) -> float:
        return (self.end - self.start) / SAMPLE_RATE

    @property
    def text(self) -> str:
        return " ".join(self.words)


# Roles in the demo corpus (speaker = voice actor). Speaker ids continue the synthetic
# S001-S042 and are fixed per actor, whatever the scale.
UNIT_ACTORS = ("Greg Johnson", "Larry Zee", "Richard Antaki", "David Bryce")
TEST_ACTORS = ("Alex Bennett", "Rich Betz", "Brad Van Tighem")
SPEAKER_IDS = {actor: f"S{i:03d}" for i, actor in enumerate(UNIT_ACTORS + TEST_ACTORS, 43)}


def speaker_id(actor: str) -> str | None:
    return SPEAKER_IDS.get(actor)


def role_of(actor: str) -> str:
    return "train/unit" if actor in UNIT_ACTORS else "test" if actor in TEST_ACTORS else "unused"


def _order(name: str) -> str:
    return hashlib.md5(name.encode()).hexdigest()


# ---------------------------------------------------------------------------------- the source
def voice_pack(stats: dict | None = None) -> tuple[uqm.VoicePack, str]:
    """The unpacked voice pack (downloaded on first use) and its version key."""
    debs = fetch_debs(PACKAGES, stats)
    versions = "_".join(f"{p}={deb_version(debs[p])}" for p in PACKAGES)
    root = cache_root() / "uqm" / versions.replace("=", "-").replace("+", "-")
    for package, member in ((PACKAGES[0], uqm.VOICE_ZIP), (PACKAGES[1], uqm.CONTENT_ZIP)):
        if not (root / member).is_file():
            unpack(debs[package], root, (member,))
    return _open_pack(str(root)), versions


def _open_pack(root: str) -> uqm.VoicePack:
    """One open pack per process: a forked worker must not share the parent's zip file handle
    (its file position), so the process id is part of the cache key."""
    return _open_pack_in(root, os.getpid())


@lru_cache(maxsize=4)
def _open_pack_in(root: str, pid: int) -> uqm.VoicePack:
    return uqm.VoicePack(root)


def cache_key(versions: str) -> str:
    import pocketsphinx
    return fingerprint("uqm-aligned", versions, ALIGN_VERSION, getattr(pocketsphinx, "__version__", "5"))


@lru_cache(maxsize=2)
def shipped_records(key: str, path: Path = SHIPPED) -> dict[str, dict]:
    """The shipped alignment records when they were made under ``key``, else none."""
    import lzma
    try:
        table = json.loads(lzma.decompress(path.read_bytes()))
    except (OSError, ValueError, lzma.LZMAError):
        return {}
    return table["records"] if table.get("key") == key else {}


# ---------------------------------------------------------------------------------- alignment
def align_clip(task: tuple[str, uqm.Clip]) -> dict:
    """Worker: align one clip and cut it; a JSON-able record (``cuts`` empty when unusable)."""
    root, clip = task
    samples, rate = _open_pack(root).read_clip(clip)
    if rate != aligner.SOURCE_RATE:
        raise UserError(f"{clip.member}: {rate} Hz, expected {aligner.SOURCE_RATE} Hz")
    audio = aligner.resample(samples)
    words = aligner.words_of(clip.text, aligner.in_dictionary)
    segments = aligner.align(aligner.to_pcm16(audio), words)
    lost: dict[str, float] = {} if segments is not None else {"no alignment": len(audio) / SAMPLE_RATE}
    record = {"clip": clip.name, "seconds": round(len(audio) / SAMPLE_RATE, 3), "words": words,
              "status": "no alignment" if segments is None else "aligned", "cuts": []}
    cuts = aligner.cut(segments or [], audio, lost)
    record["lost"] = {reason: round(seconds, 2) for reason, seconds in sorted(lost.items())}
    for cut in cuts:
        record["cuts"].append({"start": cut.start, "end": cut.end, "phones": [list(p) for p in cut.phones],
                               "words": list(cut.words)})
    return record


class Aligned:
    """Per-clip alignment cache of one voice pack version."""

    def __init__(self, pack: uqm.VoicePack, versions: str, jobs: int = 2, shipped: bool = True):
        self.pack, self.jobs, self.versions = pack, jobs, versions
        self.root = str(pack.root)
        self.folder = cache_root() / "uqm" / f"aligned-{cache_key(versions)}"
        self.shipped = shipped_records(cache_key(versions)) if shipped else {}
        self.clips, self.excluded = pack.clips()
        self._records: dict[str, dict] = {}
        self.align_seconds = 0.0

    def actors(self) -> list[str]:
        return sorted({c.actor for c in self.clips})

    def clips_of(self, actor: str) -> list[uqm.Clip]:
        return sorted((c for c in self.clips if c.actor == actor), key=lambda c: (_order(c.name), c.name))

    def _path(self, clip: uqm.Clip) -> Path:
        return self.folder / f"{clip.name}.json"

    def ensure(self, clips: list[uqm.Clip]) -> None:
        """Align the clips that neither the shipped table nor the cache holds (in parallel, ``jobs`` processes)."""
        import time
        todo = []
        for clip in clips:
            if clip.name in self._records:
                continue
            if clip.name in self.shipped:
                self._records[clip.name] = self.shipped[clip.name]
                continue
            try:
                self._records[clip.name] = json.loads(self._path(clip).read_text())
            except (OSError, ValueError):
                todo.append(clip)
        if not todo:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        tasks = [(self.root, clip) for clip in todo]
        for clip, record in zip(todo, parallel_map(align_clip, tasks, self.jobs, desc="corpus: aligning recorded speech",
                                                   unit="clip", progress=len(todo) > BATCH)):
            path = self._path(clip)
            path.with_suffix(".part").write_text(json.dumps(record, sort_keys=True))
            os.replace(path.with_suffix(".part"), path)
            self._records[clip.name] = record
        self.align_seconds += time.perf_counter() - start

    def utterances(self, clip: uqm.Clip) -> list[Utterance]:
        self.ensure([clip])
        return [Utterance(clip.name, clip.race, clip.actor, c["start"], c["end"],
                          tuple(tuple(p) for p in c["phones"]), tuple(c["words"]))
                for c in self._records[clip.name]["cuts"]]

    def record(self, clip: uqm.Clip) -> dict:
        self.ensure([clip])
        return self._records[clip.name]

    def records_so_far(self) -> dict[str, dict]:
        """clip name -> record of every clip read or aligned so far (what a build used)."""
        return dict(self._records)

    def take(self, actor: str, seconds: float = 0.0, count: int = 0) -> list[Utterance]:
        """The actor's first utterances in the fixed clip order, until ``seconds`` of audio or
        ``count`` utterances are reached (whichever is asked); aligns only what it needs."""
        clips = self.clips_of(actor)
        out: list[Utterance] = []
        total = 0.0
        for i, clip in enumerate(clips):
            if i % BATCH == 0:
                self.ensure(clips[i:i + BATCH])
            for utt in self.utterances(clip):
                if (seconds and total >= seconds) or (count and len(out) >= count):
                    return out
                out.append(utt)
                total += utt.seconds
        return out


def aligned(jobs: int = 2, stats: dict | None = None, shipped: bool = True) -> Aligned:
    """The voice pack's alignments; ``shipped=False`` ignores the shipped table (aligns or reads the cache)."""
    pack, versions = voice_pack(stats)
    return Aligned(pack, versions, jobs, shipped)


# ---------------------------------------------------------------------------------- extraction
def _extract_clip(task: tuple[str, uqm.Clip, list[tuple[str, Utterance]]]) -> list[tuple[str, np.ndarray, list[Phone]]]:
    """Worker: decode and resample one clip, cut its utterances; (key, int16 samples, phones)."""
    root, clip, wanted = task
    samples, _ = _open_pack(root).read_clip(clip)
    audio = aligner.resample(samples)
    out = []
    for key, utt in wanted:
        piece = audio[utt.start:utt.end]
        peak = float(np.max(np.abs(piece))) or 1.0
        pcm = np.round(piece * (PEAK * 32767 / peak)).astype(np.int16)
        phones = finalize([Phone(a, b, canonical_pocketsphinx(label), label) for a, b, label in utt.phones], len(pcm))
        out.append((key, pcm, phones))
    return out


def extract(aligned_set: Aligned, chosen: dict[str, Utterance], jobs: int):
    """Yield (key, int16 samples, phones) for every chosen utterance (``key`` -> utterance),
    clip by clip (each clip decoded once), in a fixed order."""
    by_clip: dict[str, list[tuple[str, Utterance]]] = {}
    for key, utt in sorted(chosen.items()):
        by_clip.setdefault(utt.clip, []).append((key, utt))
    clips = {c.name: c for c in aligned_set.clips}
    tasks = [(aligned_set.root, clips[name], items) for name, items in sorted(by_clip.items())]
    for rows in parallel_map(_extract_clip, tasks, jobs, desc="corpus: recorded speech", unit="clip"):
        yield from rows


# ---------------------------------------------------------------------------------- the corpus
def choose(found: Aligned, unit_seconds: float, test_utts: int) -> tuple[dict, dict, dict]:
    """The recorded part of a corpus: (unit speaker -> utterances, test speaker -> utterances,
    speaker -> manifest information). Unit actors give ``unit_seconds`` each, test actors
    ``test_utts`` utterances each; reserved actors and races can never be chosen."""
    unit = {speaker_id(a): found.take(a, seconds=unit_seconds) for a in UNIT_ACTORS if unit_seconds > 0}
    test = {speaker_id(a): found.take(a, count=test_utts) for a in TEST_ACTORS if test_utts > 0}
    unit = {spk: utts for spk, utts in unit.items() if utts}
    test = {spk: utts for spk, utts in test.items() if utts}
    for utts in (*unit.values(), *test.values()):
        if any(uqm.is_reserved(u.race, u.actor, u.clip) for u in utts):
            raise RuntimeError("a reserved actor's clip was chosen")        # unreachable: excluded upstream
    info = {}
    for spk, utts in {**unit, **test}.items():
        info[spk] = {"actor": utts[0].actor, "races": sorted({u.race for u in utts}), "licence": uqm.LICENCE,
                     "source": uqm.SOURCE}
    return unit, test, info


def manifest_entry(found: Aligned, speakers: dict[str, dict]) -> dict:
    """What the corpus manifest records about its recorded speech."""
    return {"source": uqm.SOURCE, "licence": uqm.LICENCE, "packages": found.versions,
            "align_version": ALIGN_VERSION, "speakers": speakers,
            "excluded_races": dict(sorted(found.excluded.items())),
            "reserved_actors": sorted(uqm.RESERVED_ACTORS)}
