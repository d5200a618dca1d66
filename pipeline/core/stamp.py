"""The one "up to date" rule of every stage.

An output is up to date when a stamp next to it records the fingerprint of every input it was
made from (files by name, size and modification time; checkpoints and settings by content).
``--force`` ignores stamps. Outputs that are one file or folder get a stamp of their own
(``.<name>.stamp.json`` beside it); folders of many per-input files (encoded units, converted
wavs) keep one stamp book (``.stamps.json``) with a fingerprint per file.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable

from pipeline.core.io import write_text_atomic


def fingerprint(*parts: Any) -> str:
    """A short stable hash of JSON-able data (config sections are turned into dicts)."""
    plain = [p.to_dict() if hasattr(p, "to_dict") else p for p in parts]
    blob = json.dumps(plain, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def file_identity(path: str | os.PathLike, name: str | None = None) -> tuple[str, int, int]:
    """(name, size, mtime in ns): what changes when a file is rewritten."""
    st = os.stat(path)
    return (name if name is not None else Path(path).name, st.st_size, st.st_mtime_ns)


def files_identity(named_paths: Iterable[tuple[str, str | os.PathLike]]) -> list[tuple[str, int, int]]:
    return [file_identity(path, name) for name, path in named_paths]


def stamp_path(output: str | os.PathLike) -> Path:
    output = Path(output)
    return output.with_name(f".{output.name}.stamp.json")


def read_stamp(output: str | os.PathLike) -> dict:
    try:
        data = json.loads(stamp_path(output).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def is_up_to_date(output: str | os.PathLike, fp: str) -> bool:
    """The output exists and its stamp records ``fp``."""
    return Path(output).exists() and read_stamp(output).get("fingerprint") == fp


def write_stamp(output: str | os.PathLike, fp: str, **extra: Any) -> None:
    """Record ``fp`` for an output just written (call after the output is in place)."""
    write_text_atomic(stamp_path(output), json.dumps({"fingerprint": fp, **extra}, indent=1, default=str))


def clear_stamp(output: str | os.PathLike) -> None:
    stamp_path(output).unlink(missing_ok=True)


class StampBook:
    """Fingerprints of the files of one output folder, kept in ``<folder>/.stamps.json``."""

    NAME = ".stamps.json"

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        try:
            data = json.loads((self.folder / self.NAME).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        self.entries: dict[str, str] = data if isinstance(data, dict) else {}

    def is_up_to_date(self, name: str, fp: str) -> bool:
        return (self.folder / name).is_file() and self.entries.get(name) == fp

    def record(self, name: str, fp: str) -> None:
        self.entries[name] = fp

    def save(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.folder / self.NAME, json.dumps(self.entries, indent=0, sort_keys=True))
