"""ABX item files (7 columns: ``#file onset offset #phone prev-phone next-phone speaker``,
seconds): the demo corpus writes them, the evaluator reads them, both through this module."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.contract.dataset import parse_span
from pipeline.contract.names import SAMPLE_RATE
from pipeline.core.errors import UserError
from pipeline.core.io import read_text_lines

ITEM_HEADER = ("#file", "onset", "offset", "#phone", "prev-phone", "next-phone", "speaker")


@dataclass(frozen=True)
class ItemTable:
    """The lines of a 7-column ``.item`` file, as parallel arrays."""
    files: np.ndarray       # file stems (str)
    onsets: np.ndarray      # float seconds
    offsets: np.ndarray
    phones: np.ndarray      # central phone (str)
    prev: np.ndarray
    next: np.ndarray
    speakers: np.ndarray

    def __len__(self) -> int:
        return len(self.files)

    @property
    def contexts(self) -> np.ndarray:
        return np.char.add(np.char.add(self.prev.astype(str), "_"), self.next.astype(str))

    def subset(self, mask: np.ndarray) -> "ItemTable":
        return ItemTable(*(getattr(self, f)[mask] for f in
                           ("files", "onsets", "offsets", "phones", "prev", "next", "speakers")))


def read_items(path: str | os.PathLike) -> ItemTable:
    """Read an item file (header line first); one-line errors naming the line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: ABX item file does not exist")
    rows = []
    lines = read_text_lines(path, "ABX item file")
    header = lines[0].split() if lines else []
    if not header or header[0] != "#file" or len(header) != 7:
        raise UserError(f"{path}:1: expected the header '{' '.join(ITEM_HEADER)}'")
    for n, line in enumerate(lines[1:], 2):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 7:
            raise UserError(f"{path}:{n}: expected 7 columns, got {len(parts)}")
        parse_span(parts[1], parts[2], f"{path}:{n}")
        rows.append(parts)
    if not rows:
        raise UserError(f"{path}: ABX item file has no items")
    cols = list(zip(*rows))
    return ItemTable(np.array(cols[0]), np.array(cols[1], dtype=float), np.array(cols[2], dtype=float),
                     np.array(cols[3]), np.array(cols[4]), np.array(cols[5]), np.array(cols[6]))


def seconds_text(samples: int) -> str:
    """A sample count at 16 kHz as the seconds the item files and file lists write."""
    return f"{samples / SAMPLE_RATE:.6f}"


def item_line(file: str, onset: int, offset: int, phone: str, prev: str, next_: str, speaker: str) -> str:
    """One item line; onset and offset in samples."""
    return f"{file} {seconds_text(onset)} {seconds_text(offset)} {phone} {prev} {next_} {speaker}\n"


def item_file_text(lines: list[str]) -> str:
    return " ".join(ITEM_HEADER) + "\n" + "".join(lines)
