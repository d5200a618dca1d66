"""Atomic writes: every stage writes to a temporary sibling and renames, so an interrupted
run never leaves a half-written output that a later stage would mistake for a finished one.

Temporary names carry the writer's process id (``.<name>.<pid>.<random>.tmp``): a run that
was killed before it could clean up leaves them behind, and the next atomic write of the same
output removes those whose process is gone."""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from pipeline.core.errors import UserError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary file path next to ``path``; rename it onto ``path`` on success.

    On an exception the temporary file is removed and ``path`` is left untouched.
    ``suffix`` defaults to the target's suffix, so libraries that sniff extensions still work.
    """
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is an existing folder, expected a file path")
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=(path.suffix if suffix is None else suffix) + ".tmp",
                               dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600 files; give outputs the usual permissions (0666 minus umask).
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory next to ``path``; on success it replaces ``path`` whole."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{path}: exists and is not a folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp creates 0700 folders
        if path.exists():
            old = path.with_name(_temp_prefix(path) + "old.tmp")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def check_output_path(path: str | os.PathLike, kind: str = "folder", option: str = "--out") -> None:
    """Refuse, before any work, an output that could not be written at the end: a folder where a
    file is wanted, a file where a folder is wanted, or a path inside a file."""
    path = Path(path)
    if kind == "file" and path.is_dir():
        raise UserError(f"{option} {path}: is an existing folder; give a file path")
    if kind == "folder" and path.exists() and not path.is_dir():
        raise UserError(f"{option} {path}: exists and is not a folder")
    for parent in path.parents:
        if os.path.lexists(parent):
            if not parent.is_dir():
                raise UserError(f"{option} {path}: {parent} is not a folder")
            return


def _temp_prefix(path: Path) -> str:
    return f".{path.name}.{os.getpid()}."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(path: str | os.PathLike) -> int:
    """Remove temporaries of ``path`` left by writers that no longer run; returns how many."""
    path = Path(path)
    removed = 0
    if not path.parent.is_dir():
        return 0
    prefix = f".{path.name}."
    for entry in path.parent.iterdir():
        name = entry.name
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        pid = name[len(prefix):].split(".", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed += 1
    return removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes (hex): the identity of checkpoints and other inputs."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


@contextlib.contextmanager
def output_lock(path: str | os.PathLike, what: str = "run") -> Iterator[None]:
    """Hold an exclusive lock on an output (file or folder) for the duration of a stage: a
    second run writing the same output fails at once instead of racing the first one.
    The lock is a ``.<name>.lock`` file beside the output; the kernel releases it when the
    process ends, however it ends."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = path.with_name(f".{path.name}.lock")
    handle = open(lock_path, "a+")
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise UserError(f"{path}: another {what} is writing this output now ({holder}); "
                            f"wait for it to finish or choose another output") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        yield
    finally:
        handle.close()


def read_text_lines(path: str | os.PathLike, what: str) -> list[str]:
    """The lines of a text file a user gives (a synthesis list, an ABX item file, a phone
    alignment), split at newlines only so that ``n`` in a ``{path}:{n}:`` message is the line an
    editor shows (a CRLF file reads as LF). Such files are UTF-8: a Latin-1 byte, or a file that
    cannot be read, is one UserError naming the file (and the line), not a UnicodeDecodeError."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UserError(f"{path}: cannot read this {what} ({exc.strerror or exc.__class__.__name__})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise UserError(f"{path}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the {what} as UTF-8") \
            from None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]
