"""The ZeroSpeech 2019 embedding ``.txt`` format: one frame per line, floats separated by
exactly one ASCII space, no time column (official reader: zerospeech2020/read_2019_features.py).

Writer, validator and evaluator all read and write unit files through this module.
"""
from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np

from pipeline.core.io import atomic_path


class UnitFileError(ValueError):
    def __init__(self, name: str, message: str, line: int | None = None):
        where = f"{name}:{line}" if line is not None else name
        super().__init__(f"{where}: {message}")
        self.name, self.line, self.reason = name, line, message


def format_units(array: np.ndarray) -> str:
    """(frames, dim) -> text. ``%.8g`` keeps float32 exactly enough; equal rows give equal lines.

    Each distinct row is formatted once (code vectors repeat a lot), which halves the cost of
    writing the ~13.5k files of a submission; the text is identical to formatting every row.
    """
    array = np.asarray(array)
    if array.ndim != 2 or array.shape[0] == 0:
        raise ValueError(f"unit array must be (frames >= 1, dim), got {array.shape}")
    if array.shape[1] == 0:
        raise ValueError("unit array must have at least one column")
    integer = np.issubdtype(array.dtype, np.integer)
    row_format = " ".join(["%d" if integer else "%.8g"] * array.shape[1])
    contiguous = np.ascontiguousarray(array)
    # Rows compared by their bytes, so -0.0 and 0.0 stay distinct exactly as when formatted one by one.
    as_bytes = contiguous.view(np.dtype((np.void, contiguous.dtype.itemsize * array.shape[1]))).ravel()
    _, first, inverse = np.unique(as_bytes, return_index=True, return_inverse=True)
    texts = [row_format % tuple(row) for row in contiguous[first].tolist()]
    return "\n".join([texts[i] for i in inverse.ravel()]) + "\n"


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


# --------------------------------------------------------------------------- strict checking
# Characters a strictly formatted unit line may contain. Python's float() also accepts "nan",
# "inf", "1_000", tabs and surrounding whitespace; the official reader would take some of those
# and choke on others, so the strict check refuses all of them with a precise reason.
_FOREIGN_CHAR = re.compile(r"[^0-9eE+\-. ]")
# Distinct lines remembered by check_units_text (about 1 KB each for 64-dim float vectors).
_LINE_CACHE_LIMIT = 20_000


def check_units_text(text: str, name: str = "<units>", line_cache: dict | None = None) -> tuple[int, int]:
    """Strict format check of one unit file's text; returns (frames, columns).

    Stricter than the official reader: tokens separated by exactly one space, no leading or
    trailing space, no tabs or carriage returns, plain decimal numbers only, finite values,
    the same column count on every line, at least one frame. Blank lines are skipped, as the
    official reader does. ``line_cache`` (line -> columns) lets a caller that checks many files
    parse each distinct line once: files of code vectors repeat the same few hundred lines.
    Raises UnitFileError naming the first offending line.
    """
    cache = {} if line_cache is None else line_cache
    frames = 0
    width = None
    for number, line in enumerate(text.split("\n"), 1):
        if line == "":
            continue
        columns = cache.get(line)
        if columns is None:
            columns = _check_line(line, name, number)
            if len(cache) < _LINE_CACHE_LIMIT:
                cache[line] = columns
        if width is None:
            width = columns
        elif columns != width:
            raise UnitFileError(name, f"{columns} columns where earlier lines have {width}", number)
        frames += 1
    if frames == 0:
        raise UnitFileError(name, "file is empty")
    return frames, width


def _check_line(line: str, name: str, number: int) -> int:
    bad = _FOREIGN_CHAR.search(line)
    if bad:
        char = bad.group()
        if char == "\t":
            reason = "tab character (values must be separated by single spaces)"
        elif char == "\r":
            reason = "carriage return (Windows line ending)"
        elif line.strip(" ") == "":
            reason = "line of only whitespace"
        else:
            token = next(t for t in line.split(" ") if _FOREIGN_CHAR.search(t))
            try:
                value = float(token)
            except ValueError:
                value = None
            if value is not None and not math.isfinite(value):
                reason = f"non-finite value {token!r}"
            else:
                reason = f"not a plain decimal number: {token[:40]!r}"
        raise UnitFileError(name, reason, number)
    tokens = line.split(" ")
    if "" in tokens:
        if line.strip(" ") == "":
            reason = "line of only spaces"
        elif line.startswith(" ") or line.endswith(" "):
            reason = "leading or trailing space"
        else:
            reason = "double space between values"
        raise UnitFileError(name, reason, number)
    for token in tokens:
        try:
            value = float(token)
        except ValueError:
            raise UnitFileError(name, f"not a number: {token[:40]!r}", number) from None
        if not math.isfinite(value):
            raise UnitFileError(name, f"non-finite value {token[:40]!r} (overflows float64)", number)
    return len(tokens)
