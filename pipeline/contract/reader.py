"""One safe, read-only view of a submission, folder or zip, for the validator and the evaluator.

Nothing is ever extracted: a zip is checked entry by entry when it is opened (``UnsafeZip`` for
zip slip, links, duplicates, encryption, unknown compression and bombs) and then read in place,
one entry at a time, each read bounded (``EntryError`` beyond the limit or for corrupt data).
In a folder, symbolic links are listed (so they can be reported) and never followed.
Paths are relative POSIX strings ("" = the top level).
"""
from __future__ import annotations

import contextlib
import errno
import os
import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterator

from pipeline.core.errors import UserError

# Compression methods Python's zipfile can read.
_READABLE_COMPRESSION = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
_COMPRESSION_NAMES = {0: "stored", 8: "deflate", 12: "bzip2", 14: "lzma", 9: "deflate64", 93: "zstandard",
                      99: "AES-encrypted"}


@dataclass(frozen=True)
class ZipLimits:
    """What a submission zip may hold before it is refused unopened (zip-bomb guard).

    The real English + surprise submission with both auxiliary folders is about 72k entries and
    1-2 GB uncompressed; its unit files compress about 5-10x and its wavs barely. Deflate cannot
    exceed about 1030x, so a bomb is caught by the per-entry and whole-archive ratios long
    before its sizes."""
    max_entries: int = 300_000
    max_total_bytes: int = 8 << 30
    max_entry_bytes: int = 1 << 30
    max_entry_ratio: float = 200.0        # uncompressed / compressed, for entries above 1 MB
    max_total_ratio: float = 100.0        # the whole archive, once it expands beyond 64 MB


class UnsafeZip(Exception):
    """The zip is refused before any entry is read."""


class EntryError(Exception):
    """One file of the submission cannot be read (corrupt, too large, a link)."""


def entry_key(name: str) -> str:
    """A zip entry's normalised relative path ("a//b/" and "a/b" are the same entry)."""
    return "/".join(PurePosixPath(name).parts)


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:120] or exc.__class__.__name__


def check_zip_entries(archive: zipfile.ZipFile, archive_bytes: int, limits: ZipLimits) -> None:
    """Refuse zip slip (absolute paths, ``..``, drive letters, backslashes), symlinks, duplicate
    names, encrypted entries, compression methods this reader cannot read and zip bombs
    (too many entries, too large, too compressed)."""
    infos = archive.infolist()
    if len(infos) > limits.max_entries:
        raise UnsafeZip(f"{len(infos)} entries (limit {limits.max_entries})")
    total = 0
    seen = set()
    for info in infos:
        name = info.filename
        parts = PurePosixPath(name).parts
        if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
            raise UnsafeZip(f"entry {name!r} has an absolute path")
        if "\\" in name or ".." in parts or "\x00" in name:
            raise UnsafeZip(f"entry {name!r} would land outside the submission when extracted (zip slip)")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise UnsafeZip(f"entry {name!r} is a symbolic link")
        if info.flag_bits & 0x1:
            raise UnsafeZip(f"entry {name!r} is encrypted (submissions must be plain zips)")
        if info.compress_type not in _READABLE_COMPRESSION:
            method = _COMPRESSION_NAMES.get(info.compress_type, f"method {info.compress_type}")
            raise UnsafeZip(f"entry {name!r} uses an unsupported compression ({method}); use deflate or none")
        key = entry_key(name)
        if key in seen:
            raise UnsafeZip(f"entry {name!r} appears twice")
        seen.add(key)
        if info.file_size > limits.max_entry_bytes:
            raise UnsafeZip(f"entry {name!r} is {info.file_size} bytes uncompressed "
                            f"(limit {limits.max_entry_bytes})")
        if info.file_size > (1 << 20) and info.file_size > limits.max_entry_ratio * max(info.compress_size, 1):
            raise UnsafeZip(f"entry {name!r} expands {info.file_size / max(info.compress_size, 1):.0f}x "
                            f"(limit {limits.max_entry_ratio:.0f}x): looks like a zip bomb")
        total += info.file_size
        if total > limits.max_total_bytes:
            raise UnsafeZip(f"more than {limits.max_total_bytes} bytes uncompressed")
    if total > (64 << 20) and total > limits.max_total_ratio * max(archive_bytes, 1):
        raise UnsafeZip(f"the archive expands {total / max(archive_bytes, 1):.0f}x "
                        f"(limit {limits.max_total_ratio:.0f}x): looks like a zip bomb")


class SubmissionTree:
    """The submission's entries, listed once; every check asks this instead of the file system,
    so neither a symlink nor a zip entry name can make a reader leave the submission."""

    kind = ""

    def __init__(self, source: Path):
        self.source = source
        self.entries: dict[str, set[str]] = {"": set()}   # folder -> entry names
        self.files: dict[str, int] = {}                  # file -> size in bytes
        self.folders: set[str] = {""}
        self.links: list[str] = []

    def names(self, rel: str) -> set[str]:
        return self.entries.get(rel, set())

    def is_dir(self, rel: str) -> bool:
        return rel in self.folders

    def is_file(self, rel: str) -> bool:
        return rel in self.files

    def size(self, rel: str) -> int:
        return self.files[rel]

    def read_bytes(self, rel: str, limit: int) -> bytes:
        """The bytes of one file, at most ``limit`` of them (EntryError beyond, or when corrupt)."""
        raise NotImplementedError

    @property
    def handle(self) -> tuple[str, str]:
        """What a worker process needs to open its own reader (``open_tree``)."""
        return self.kind, str(self.source)


class FolderTree(SubmissionTree):
    kind = "folder"

    def __init__(self, root: Path, scan: bool = True):
        super().__init__(root)
        self._scanned = scan
        pending = [""] if scan else []           # iterative: a hostile tree may nest deeper than Python's recursion limit
        while pending:
            rel = pending.pop()
            names = self.entries.setdefault(rel, set())
            with _listing(root, rel) as it:
                for entry in it:
                    names.add(entry.name)
                    child = f"{rel}/{entry.name}" if rel else entry.name
                    if entry.is_symlink():
                        self.links.append(child)
                    elif entry.is_dir(follow_symlinks=False):
                        self.folders.add(child)
                        pending.append(child)
                    elif entry.is_file(follow_symlinks=False):
                        self.files[child] = entry.stat(follow_symlinks=False).st_size

    def read_bytes(self, rel: str, limit: int) -> bytes:
        if self._scanned and rel not in self.files:
            raise EntryError("not a regular file of the submission")
        try:
            fd = os.open(self.source / rel, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError as exc:
            raise EntryError("is a symbolic link" if exc.errno == errno.ELOOP else f"unreadable ({_short(exc)})") \
                from None
        with os.fdopen(fd, "rb") as handle:
            data = handle.read(limit + 1)
        if len(data) > limit:
            raise EntryError(f"larger than {limit} bytes")
        return data


@contextlib.contextmanager
def _listing(root: Path, rel: str) -> Iterator[Iterator[os.DirEntry]]:
    """``os.scandir`` of one folder of the submission; a folder that cannot be listed (no
    permission, or nested past the system's path length limit) is one UserError."""
    try:
        it = os.scandir(root / rel if rel else root)
    except OSError as exc:
        raise UserError(f"{_clip(root)}: cannot list its folder {_clip(rel)} ({exc.strerror})") from None
    with it:
        yield it


def _clip(path: str | os.PathLike) -> str:
    """A path short enough for a one-line message (a hostile tree's may be kilobytes)."""
    text = str(path)
    return text if len(text) <= 100 else f"{text[:60]}...{text[-30:]} ({len(text)} characters)"


class ZipTree(SubmissionTree):
    """Entries of an already checked zip (no absolute or ``..`` names, no links, no duplicates)."""

    kind = "zip"

    def __init__(self, path: Path, archive: zipfile.ZipFile):
        super().__init__(path)
        self._archive = archive
        for info in archive.infolist():
            parts = PurePosixPath(info.filename).parts
            for depth in range(1, len(parts) + 1):      # every parent is a folder, listed or not
                parent, rel = "/".join(parts[:depth - 1]), "/".join(parts[:depth])
                self.entries.setdefault(parent, set()).add(parts[depth - 1])
                if depth < len(parts) or info.is_dir():
                    self.folders.add(rel)
                    self.entries.setdefault(rel, set())
            if parts and not info.is_dir():
                self.files["/".join(parts)] = info.file_size
        self._names = {entry_key(i.filename): i.filename for i in archive.infolist()}

    def read_bytes(self, rel: str, limit: int) -> bytes:
        if rel not in self.files:
            raise EntryError("not a file of the submission")
        if self.files[rel] > limit:
            raise EntryError(f"larger than {limit} bytes")
        try:
            with self._archive.open(self._names[rel]) as handle:
                data = handle.read(limit + 1)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, RuntimeError) as exc:
            raise EntryError(f"corrupt zip data ({_short(exc)})") from None
        if len(data) > limit:
            raise EntryError(f"larger than {limit} bytes")
        return data


@contextlib.contextmanager
def open_submission(path: str | os.PathLike, limits: ZipLimits = ZipLimits()) -> Iterator[SubmissionTree]:
    """Yield a read-only view of a submission folder or zip (raises UnsafeZip for a refused zip,
    UserError when the path is neither)."""
    path = Path(path)
    try:
        mode = os.lstat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise UserError(f"{path}: no such submission folder or zip") from None
    except OSError as exc:      # e.g. a path longer than the system's limit
        raise UserError(f"{_clip(path)}: cannot be read ({exc.strerror})") from None
    if stat.S_ISLNK(mode):
        raise UserError(f"{path}: is a symbolic link; give the submission folder or zip itself")
    if stat.S_ISDIR(mode):
        yield FolderTree(path)
        return
    if not stat.S_ISREG(mode):
        raise UserError(f"{path}: no such submission folder or zip")
    if not zipfile.is_zipfile(path):
        raise UserError(f"{path}: neither a folder nor a zip file")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, NotImplementedError, ValueError) as exc:
        raise UnsafeZip(f"corrupt zip ({_short(exc)})") from None
    with archive:
        check_zip_entries(archive, path.stat().st_size, limits)
        yield ZipTree(path, archive)


@contextlib.contextmanager
def open_tree(handle: tuple[str, str]) -> Iterator[SubmissionTree]:
    """Re-open a tree from its ``handle`` (in a worker process: a zip handle shared across fork
    would share its file offset). The tree was checked when first opened."""
    kind, where = handle
    if kind == "folder":
        yield FolderTree(Path(where), scan=False)
        return
    with zipfile.ZipFile(where) as archive:
        yield ZipTree(Path(where), archive)
