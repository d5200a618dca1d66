"""The one dataset reader: the demo corpus and the real ZeroSpeech 2020 dataset folder.

Layout (per language, ``ROOT/2019/<language>/``; languages: ``english``, ``surprise``)::

    train/unit/<SPK>_<id>.wav            many speakers
    train/voice/<V00x>_<id>.wav          the target voices
    train/parallel/source/*.wav          (optional) parallel sentences, source speakers
    train/parallel/voice/*.wav           (optional) the same sentences, target voices
    test/<SPK>_<id>.wav                  long test utterances and short ABX excerpts
    synthesis.txt                        lines ``test/<SPK>_<id> V00x``

Extras that only the demo corpus has (the real data lacks them; every accessor returns None):

    alignments/<split>/<utt>.phn         ``onset offset PHONE [raw]`` lines (seconds, CMU 39 + SIL;
                                         contiguous from 0 to the wav's duration), for every wav
                                         (excerpts and references included)
    transcripts.tsv                      ``<split>/<utt><TAB>text`` (every wav but the excerpts)
    reference/<V00x>_<id>.wav            the synthesis sentence rendered in the target voice
    abx/test.item                        ABX items, one per excerpt file: onset/offset = the
                                         central phone's span inside the excerpt (seconds)
    abx/test_long.item                   the same phones as spans inside the long test utterances
    lists/{required,embedding,bitrate}_filelist.txt   official-format file lists
    ../../manifest.json                  (ROOT/manifest.json) generator version, scale, counts

Demo test/ holds long utterances (the bitrate list, synthesis sources) and short excerpts, each an
exact sample slice of a long utterance spanning a triphone (``pipeline/corpus/excerpts.py``).

Speaker = file-name prefix before the first ``_``. Speaker ids are the sorted training speakers.
"""
from __future__ import annotations

import errno
import json
import math
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from pipeline.contract.abxtask import task_file_path
from pipeline.contract.names import ALL_SPLITS, FILELIST_KINDS, LANGUAGES, SAMPLE_RATE, TRAIN_SPLITS
from pipeline.core.audio import read_wav, wav_info
from pipeline.core.errors import UserError
from pipeline.core.io import read_text_lines


@dataclass(frozen=True, order=True)
class Utterance:
    split: str          # e.g. "train/unit", "test"
    utt_id: str         # file stem, e.g. "S015_0001"
    path: Path

    @property
    def speaker(self) -> str:
        return speaker_of(self.utt_id)

    @property
    def key(self) -> str:
        """Unique name inside a language: ``<split>/<utt_id>`` (also the HDF5 dataset name)."""
        return f"{self.split}/{self.utt_id}"

    def duration(self) -> float:
        info = wav_info(self.path)
        return info.frames / info.samplerate

    def read(self, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        return read_wav(self.path, sample_rate)


@dataclass(frozen=True)
class Segment:
    onset: float
    offset: float
    phone: str


@dataclass(frozen=True)
class SynthesisLine:
    source: Utterance
    voice: str

    @property
    def output_name(self) -> str:
        """Official output name: ``test/S002_0379088085 V002`` -> ``V002_0379088085.wav``."""
        return f"{self.voice}_{self.source.utt_id.split('_', 1)[1]}.wav"


def speaker_of(utt_id: str) -> str:
    return utt_id.split("_", 1)[0]


def speaker_key(language: str, speaker: str) -> str:
    """Speaker names are per language; English ones are used bare, others as ``<language>/<SPK>``
    (models trained on both languages name their speakers this way)."""
    return speaker if language == "english" else f"{language}/{speaker}"


class Dataset:
    """Read-only view of one language of a ZeroSpeech 2019-layout dataset."""

    def __init__(self, root: str | os.PathLike, language: str = "english"):
        root = Path(root)
        if not root.is_dir():
            raise UserError(f"dataset folder {root} does not exist")
        if language not in LANGUAGES:
            raise UserError(f"unknown language {language!r}: use one of {', '.join(LANGUAGES)}")
        self.root = root
        self.language = language
        self.lang_dir = root / "2019" / language
        if not self.lang_dir.is_dir():
            raise UserError(f"{root}: no 2019/{language} folder (expected the ZeroSpeech 2019 layout "
                            f"ROOT/2019/{language}/train/unit, .../test, ...)")

    def __repr__(self) -> str:
        return f"Dataset({str(self.root)!r}, {self.language!r})"

    @staticmethod
    def languages(root: str | os.PathLike) -> list[str]:
        """Languages present under ROOT/2019 (english first)."""
        return [lang for lang in LANGUAGES if (Path(root) / "2019" / lang).is_dir()]

    # ------------------------------------------------------------------ utterances
    def split_dir(self, split: str) -> Path:
        if split not in ALL_SPLITS:
            raise UserError(f"unknown split {split!r}: use one of {', '.join(ALL_SPLITS)}")
        return self.lang_dir / split

    def has_split(self, split: str) -> bool:
        return bool(self.utterances(split, required=False))

    def utterances(self, split: str, required: bool = True) -> list[Utterance]:
        """Utterances of one split sorted by id. Missing or empty split: UserError if required."""
        cache = self._utterance_cache
        if split not in cache:
            d = self.split_dir(split)
            cache[split] = sorted(Utterance(split, p.stem, p) for p in wav_files(d)) if d.is_dir() else []
        utts = cache[split]
        if required and not utts:
            what = "does not exist" if not self.split_dir(split).is_dir() else "has no .wav files"
            raise UserError(f"{self.split_dir(split)}: split {split!r} {what}")
        return list(utts)

    @cached_property
    def _utterance_cache(self) -> dict[str, list[Utterance]]:
        return {}

    def train_utterances(self) -> list[Utterance]:
        """Every training utterance (unit, voice and, when present, parallel)."""
        utts = [u for s in TRAIN_SPLITS for u in self.utterances(s, required=False)]
        if not utts:
            raise UserError(f"{self.lang_dir}: no training utterances under train/")
        return utts

    def find(self, key: str) -> Utterance:
        """Look up ``<split>/<utt_id>`` (e.g. ``test/S021_0003``)."""
        split, _, utt_id = key.rpartition("/")
        for utt in self.utterances(split, required=False):
            if utt.utt_id == utt_id:
                return utt
        raise UserError(f"{self.lang_dir}: no utterance {key!r}")

    # ------------------------------------------------------------------ speakers
    def speakers(self, splits=TRAIN_SPLITS) -> list[str]:
        return sorted({u.speaker for s in splits for u in self.utterances(s, required=False)})

    def speaker_ids(self, splits=TRAIN_SPLITS) -> dict[str, int]:
        """Deterministic speaker -> id map: sorted speaker names of the given splits."""
        return {spk: i for i, spk in enumerate(self.speakers(splits))}

    def target_voices(self) -> list[str]:
        return self.speakers(("train/voice",))

    # ------------------------------------------------------------------ synthesis
    def synthesis(self) -> list[SynthesisLine]:
        path = self.lang_dir / "synthesis.txt"
        if not path.is_file():
            raise UserError(f"{path}: synthesis.txt is missing")
        lines = []
        for n, raw in enumerate(read_text_lines(path, "synthesis list"), 1):
            if not raw.strip():
                continue
            parts = raw.split()
            if len(parts) != 2 or "/" not in parts[0]:
                raise UserError(f"{path}:{n}: expected 'test/<SPK>_<id> <VOICE>', got {raw!r}")
            lines.append(SynthesisLine(self.find(parts[0]), parts[1]))
        return lines

    # ------------------------------------------------------------------ extras (demo corpus)
    def alignment(self, utt: Utterance) -> list[Segment] | None:
        path = self.lang_dir / "alignments" / utt.split / f"{utt.utt_id}.phn"
        if not path.is_file():
            return None
        return read_alignment(path)

    def has_alignments(self) -> bool:
        return (self.lang_dir / "alignments").is_dir()

    @cached_property
    def transcripts(self) -> dict[str, str]:
        """``<split>/<utt_id>`` -> text (empty when the dataset has no transcripts)."""
        path = self.lang_dir / "transcripts.tsv"
        if not path.is_file():
            return {}
        out = {}
        for line in read_text_lines(path, "transcript table"):
            if "\t" in line:
                key, text = line.split("\t", 1)
                out[key] = text
        return out

    def transcript(self, utt: Utterance) -> str | None:
        return self.transcripts.get(utt.key)

    def reference(self, line: SynthesisLine) -> Utterance | None:
        """The target voice's own rendering of a synthesis sentence (demo corpus only)."""
        path = self.lang_dir / "reference" / line.output_name
        return Utterance("reference", path.stem, path) if path.is_file() else None

    def item_file(self, kind: str = "excerpt") -> Path | None:
        """``excerpt``: one whole-file item per excerpt; ``long``: spans inside long utterances.
        Falls back to the official task file location ROOT/2019/ABXTasks/*.item if present."""
        name = {"excerpt": "test.item", "long": "test_long.item"}[kind]
        path = self.lang_dir / "abx" / name
        if path.is_file():
            return path
        official = self.root / "2019" / "ABXTasks" / f"{self.language}.item"
        return official if kind == "excerpt" and official.is_file() else None

    def recorded_speakers(self) -> set[str] | None:
        """Every speaker of a demo corpus that holds recorded speech, training and test alike (its
        ROOT/manifest.json lists them under ``recorded.speakers``); None for any other dataset."""
        try:
            manifest = json.loads((self.root / "manifest.json").read_text(encoding="utf-8"))
            return set(manifest["recorded"]["speakers"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def speaker_kinds(self) -> dict[str, set[str]] | None:
        """Test speakers by kind, ``{"real": ..., "synthetic": ...}``, for a demo corpus that holds
        recorded speech (``recorded_speakers``); None for any other dataset (a real ZeroSpeech
        dataset is all real speech: nothing to split)."""
        recorded = self.recorded_speakers()
        if recorded is None:
            return None
        tests = {u.speaker for u in self.utterances("test", required=False)}
        return {"real": tests & recorded, "synthetic": tests - recorded}

    def abx_task_file(self) -> Path:
        """Where the official evaluator reads this language's ABXpy task (it may be absent):
        ROOT/2019/ABXTasks/byCtxt_acSpkr.abx, surprise_byCtxt_acSpkr.abx for the surprise language
        (``pipeline.contract.abxtask``)."""
        return task_file_path(self.root, self.language)

    def filelist(self, kind: str, lists_dir: str | os.PathLike | None = None) -> Path | None:
        """An official-format file list (required/embedding/bitrate), from ``lists_dir`` (the
        official package's ``share/2019`` holding one folder per language, or one language's
        folder), else the dataset's ``lists/``; None if absent."""
        if kind not in FILELIST_KINDS:
            raise ValueError(kind)
        folder = lists_folder(lists_dir, self.language) if lists_dir else None
        for d in ([folder] if folder else []) + [self.lang_dir / "lists"]:
            path = d / f"{kind}_filelist.txt"
            if path.is_file():
                return path
        if lists_dir:
            raise UserError(f"{lists_dir}: no {kind}_filelist.txt for {self.language}")
        return None


def wav_files(folder: str | os.PathLike) -> list[Path]:
    """The ``*.wav`` files of a folder, sorted. A symbolic link that leads nowhere (its target is
    missing, or it is part of a loop) is one UserError naming it, here: listed like a file it
    would fail later, in a worker, far from the cause."""
    paths = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if not entry.name.endswith(".wav"):
                continue
            path = Path(entry.path)
            if entry.is_symlink() and not path.exists():
                raise UserError(f"{path}: {_broken_link(path)}; remove it or make it point to a wav")
            if entry.is_file():
                paths.append(path)
    return sorted(paths)


def _broken_link(path: Path) -> str:
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop"
    return f"broken symbolic link (its target {os.readlink(path)} does not exist)"


def lists_folder(lists_dir: str | os.PathLike, language: str) -> Path | None:
    """The folder of ``language``'s file lists inside a ``--filelists`` argument, or None: either
    the official package's ``share/2019`` (one sub-folder per language) or one language's folder
    (named after it; a folder with another name is taken as the English lists)."""
    base = Path(lists_dir)
    if not base.is_dir():
        raise UserError(f"--filelists {base}: no such folder")
    required = "required_filelist.txt"
    if (base / language / required).is_file():
        return base / language
    if (base / required).is_file() and (base.name == language or (base.name not in LANGUAGES
                                                                   and language == "english")):
        return base
    return None


def read_alignment(path: str | os.PathLike) -> list[Segment]:
    """``onset offset PHONE [raw]`` lines (seconds); a malformed line is one error naming it."""
    segments = []
    for n, line in enumerate(read_text_lines(path, "phone alignment"), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) not in (3, 4):
            raise UserError(f"{path}:{n}: expected 'onset offset phone [raw]', got {len(parts)} field(s)")
        onset, offset = parse_span(parts[0], parts[1], f"{path}:{n}")
        segments.append(Segment(onset, offset, parts[2]))
    return segments


def parse_span(onset: str, offset: str, where: str) -> tuple[float, float]:
    """(onset, offset) in seconds from a text line (alignments, ABX items); ``where`` is
    ``path:line``."""
    try:
        span = float(onset), float(offset)
    except ValueError:
        raise UserError(f"{where}: onset and offset must be numbers, got {onset!r} {offset!r}") from None
    if not all(math.isfinite(t) for t in span):
        raise UserError(f"{where}: onset and offset must be finite numbers, got {onset!r} {offset!r}")
    if not span[1] >= span[0]:
        raise UserError(f"{where}: offset {span[1]} is before onset {span[0]}")
    return span


def read_filelist(path: str | os.PathLike) -> list[tuple[str, float | None]]:
    """Official list lines: ``english/test/X.txt`` or ``X.txt 0.095`` -> (basename, duration)."""
    rows = []
    for n, line in enumerate(read_text_lines(path, "file list"), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            rows.append((os.path.basename(parts[0]), float(parts[1]) if len(parts) > 1 else None))
        except ValueError:
            raise UserError(f"{path}:{n}: the duration must be a number, got {parts[1]!r}") from None
    return rows
