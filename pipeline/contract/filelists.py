"""Which files a 2019-track submission must hold, per language.

The official package ships three lists per language under ``share/2019/<language>/``
(``required``: every ``.txt`` and ``.wav`` of ``test/``; ``embedding``: every unit file with its
wav duration; ``bitrate``: the long utterances). They are found, in this order:

1. ``--filelists DIR``: either the official ``share/2019`` folder (holding ``english/`` and
   ``surprise/``) or one language's folder (named ``english`` or ``surprise``; a folder with
   another name is taken as the English lists);
2. the dataset's own ``2019/<language>/lists/`` (the demo corpus has them);
3. derived from the dataset: one unit file per ``test/*.wav`` and one wav per
   ``synthesis.txt`` line (the real dataset has no lists; this mirrors how the official lists
   were made).

Writer and validator use the same lists, so what is written is what is checked; the demo
corpus writes its lists with ``format_filelists``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pipeline.contract.dataset import Dataset, lists_folder, read_filelist
from pipeline.contract.items import seconds_text
from pipeline.core.errors import UserError

LIST_NAME = "{kind}_filelist.txt"


@dataclass(frozen=True)
class FileLists:
    language: str
    source: str                              # human-readable origin, printed by the tools
    required: tuple[str, ...]                # basenames of every .txt and .wav of test/
    embedding: tuple[tuple[str, float | None], ...]   # (unit file basename, wav duration)
    bitrate: tuple[tuple[str, float | None], ...] | None

    @property
    def unit_files(self) -> list[str]:
        return [name for name, _ in self.embedding]

    @property
    def wav_files(self) -> list[str]:
        return [name for name in self.required if name.endswith(".wav")]


def _read_folder(folder: Path, language: str, source: str) -> FileLists:
    paths = {kind: folder / LIST_NAME.format(kind=kind) for kind in ("required", "embedding", "bitrate")}
    for kind in ("required", "embedding"):
        if not paths[kind].is_file():
            raise UserError(f"{folder}: has {paths['required'].name} but no {paths[kind].name}")
    try:
        required = tuple(name for name, _ in read_filelist(paths["required"]))
        embedding = tuple(read_filelist(paths["embedding"]))
        bitrate = tuple(read_filelist(paths["bitrate"])) if paths["bitrate"].is_file() else None
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"{folder}: malformed file list ({exc})") from None
    return FileLists(language, source, required, embedding, bitrate)


def derive_from_dataset(dataset: Dataset) -> FileLists:
    """Lists made from the dataset itself: every test wav needs a unit file, every synthesis
    line a converted wav; no bitrate list (no way to tell long utterances apart reliably)."""
    tests = dataset.utterances("test")
    embedding = tuple((f"{u.utt_id}.txt", None) for u in tests)
    wavs = tuple(line.output_name for line in dataset.synthesis())
    return FileLists(dataset.language, f"derived from {dataset.lang_dir} (test/ and synthesis.txt)",
                     tuple(name for name, _ in embedding) + wavs, embedding, None)


def find_filelists(language: str, filelists_dir: str | os.PathLike | None = None,
                   dataset_root: str | os.PathLike | None = None) -> FileLists | None:
    """The lists of one language (see the module docstring for the search order), or None when
    neither ``filelists_dir`` nor the dataset knows that language."""
    if filelists_dir:
        folder = lists_folder(filelists_dir, language)
        if folder is not None:
            return _read_folder(folder, language, f"{folder} (--filelists)")
    if dataset_root and language in Dataset.languages(dataset_root):
        dataset = Dataset(dataset_root, language)
        required = dataset.filelist("required")
        if required is not None:
            return _read_folder(required.parent, language, f"{required.parent} (dataset lists)")
        return derive_from_dataset(dataset)
    return None


def format_filelists(durations: dict[str, int], long_ids: set[str], outputs: list[str],
                     language: str = "english") -> dict[str, str]:
    """The three lists in the official format, from test stems -> length in samples.
    ``long_ids``: the long utterances (the bitrate list); ``outputs``: the synthesis output
    wav names (``V001_00042.wav``)."""
    stems = sorted(durations)
    required = [f"{language}/test/{s}.txt\n" for s in stems] + [f"{language}/test/{o}\n" for o in sorted(outputs)]
    embedding = [f"{s}.txt {seconds_text(durations[s])}\n" for s in stems]
    bitrate = [f"{s}.txt {seconds_text(durations[s])}\n" for s in stems if s in long_ids]
    return {"required": "".join(required), "embedding": "".join(embedding), "bitrate": "".join(bitrate)}
