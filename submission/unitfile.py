"""The ZeroSpeech 2019 embedding ``.txt`` format: one frame per line, floats separated by
exactly one ASCII space, no time column (official reader: zerospeech2020/read_2019_features.py).

Writer, validator and evaluator all read and write unit files through this module.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pipeline.io import atomic_path


class UnitFileError(ValueError):
    def __init__(self, name: str, message: str, line: int | None = None):
        where = f"{name}:{line}" if line is not None else name
        super().__init__(f"{where}: {message}")
        self.name, self.line, self.reason = name, line, message


def format_units(array: np.ndarray) -> str:
    """(frames, dim) -> text. ``%.8g`` keeps float32 exactly enough; equal rows give equal lines."""
    array = np.asarray(array)
    if array.ndim != 2 or array.shape[0] == 0:
        raise ValueError(f"unit array must be (frames >= 1, dim), got {array.shape}")
    if np.issubdtype(array.dtype, np.integer):
        rows = (" ".join(str(int(v)) for v in row) for row in array)
    else:
        rows = (" ".join(f"{float(v):.8g}" for v in row) for row in array)
    return "\n".join(rows) + "\n"


def write_units(path: str | os.PathLike, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(format_units(array), encoding="ascii")


def parse_units(text: str, name: str = "<units>") -> np.ndarray:
    """Parse with the official semantics: blank lines skipped, tokens split on a single space,
    every token through float(), constant column count. Raises UnitFileError."""
    rows = []
    width = None
    for n, line in enumerate(text.split("\n"), 1):
        if line.strip() == "":
            continue
        tokens = line.rstrip("\r").split(" ")
        try:
            values = [float(t) for t in tokens]
        except ValueError:
            raise UnitFileError(name, "values must be numbers separated by single spaces", n) from None
        if width is None:
            width = len(values)
        elif len(values) != width:
            raise UnitFileError(name, f"{len(values)} columns where earlier lines have {width}", n)
        rows.append(values)
    if not rows:
        raise UnitFileError(name, "file is empty")
    return np.asarray(rows, dtype=np.float64)


def read_units(path: str | os.PathLike) -> np.ndarray:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UnitFileError(path.name, f"unreadable ({exc.__class__.__name__})") from None
    return parse_units(text, path.name)
