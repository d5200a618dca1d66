"""Strict validator of a ZeroSpeech 2020 submission (2019 track), folder or zip.

It enforces every rule of the official ``zerospeech2020-validate`` (layout, both metadata
files, code folder, auxiliary folders, file presence from the official file lists) and adds
checks the official tool lacks, each reported with the tag ``[stricter than official]``: the
unit-file format (which the official tool only prints about), the wavs (its wav check is dead
code), symlinks, and hostile zips. It collects every problem instead of stopping at the first.
A zip is checked entry by entry and then read in place, never extracted; files are checked in
``jobs`` processes, each with its own reader.

Entry point: ``validate_submission(path, dataset=..., filelists=..., jobs=...) -> ValidationReport``.
"""
from __future__ import annotations

import contextlib
import io
import os
import reprlib
import stat
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterator

import soundfile as sf
import yaml

from pipeline.dataset import LANGUAGES, Dataset
from pipeline.errors import UserError
from submission.filelists import FileLists, find_filelists
from submission.parallel import run_batches
from submission.unitfile import UnitFileError, check_units_text

STRICT = "[stricter than official]"
SHOWN_PER_SECTION = 20
AUX_FOLDERS = ("auxiliary_embedding1", "auxiliary_embedding2")
ABX_DISTANCES = ("dtw_cosine", "dtw_kl", "levenshtein")
TOP_METADATA = {"author": str, "affiliation": str, "open source": bool}
TRACK_METADATA = {"abx distance": str, "system description": str, "hyperparameters": None,
                  "using parallel train": bool, "using external data": bool}
MAX_METADATA_BYTES = 1 << 20
MAX_UNIT_FILE_BYTES = 64 << 20
MAX_WAV_BYTES = 256 << 20
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxstring, _REPR.maxother = 2, 4, 4, 40, 40


@dataclass(frozen=True)
class ZipLimits:
    """What a submission zip may hold before it is refused unopened (zip-bomb guard).

    The real English + surprise submission with both auxiliary folders is ~72k entries and
    ~1-2 GB uncompressed, well inside these limits."""
    max_entries: int = 300_000
    max_total_bytes: int = 16 << 30
    max_entry_bytes: int = 2 << 30
    max_ratio: float = 2000.0          # uncompressed / compressed, for entries above 1 MB


@dataclass(frozen=True)
class Problem:
    section: str                       # "submission" or a language
    message: str
    stricter: bool = False

    def __str__(self) -> str:
        return f"{self.message} {STRICT}" if self.stricter else self.message


@dataclass
class ValidationReport:
    source: str
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checked: dict[str, dict[str, str]] = field(default_factory=dict)   # language -> folder -> what was checked

    @property
    def valid(self) -> bool:
        return not self.problems

    def add(self, section: str, message: str, stricter: bool = False) -> None:
        self.problems.append(Problem(section, message, stricter))

    def sections(self) -> dict[str, list[Problem]]:
        out: dict[str, list[Problem]] = {}
        for problem in self.problems:
            out.setdefault(problem.section, []).append(problem)
        return out

    def render(self, shown: int = SHOWN_PER_SECTION) -> str:
        lines = [f"validated {self.source}"]
        for language, folders in self.checked.items():
            counts = ", ".join(f"{folder}/ {n}" for folder, n in folders.items())
            lines.append(f"  checked 2019/{language}: {counts}")
        lines += [f"  note: {note}" for note in self.notes]
        for section, problems in self.sections().items():
            lines.append(f"{section}: {len(problems)} problem{'s' * (len(problems) != 1)}")
            lines += [f"  - {p}" for p in problems[:shown]]
            if len(problems) > shown:
                lines.append(f"  ... and {len(problems) - shown} more")
        if self.valid:
            lines.append("VALID: the submission passes every official and strict check")
        else:
            per = ", ".join(f"{s} {len(p)}" for s, p in self.sections().items())
            lines.append(f"INVALID: {len(self.problems)} problem{'s' * (len(self.problems) != 1)} ({per})")
        return "\n".join(lines)


# ============================================================================ opening safely
class UnsafeZip(Exception):
    """The zip is refused before any entry is read."""


def entry_key(name: str) -> str:
    """A zip entry's normalised relative path ("a//b/" and "a/b" are the same entry)."""
    return "/".join(PurePosixPath(name).parts)


def check_zip_entries(archive: zipfile.ZipFile, limits: ZipLimits) -> None:
    """Refuse zip slip (absolute paths, ``..``, drive letters, backslashes), symlinks,
    duplicate names and zip bombs (too many entries, too large, too compressed)."""
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
        key = entry_key(name)
        if key in seen:
            raise UnsafeZip(f"entry {name!r} appears twice")
        seen.add(key)
        if info.file_size > limits.max_entry_bytes:
            raise UnsafeZip(f"entry {name!r} is {info.file_size} bytes uncompressed "
                            f"(limit {limits.max_entry_bytes})")
        if info.file_size > (1 << 20) and info.file_size > limits.max_ratio * max(info.compress_size, 1):
            raise UnsafeZip(f"entry {name!r} expands {info.file_size / max(info.compress_size, 1):.0f}x "
                            f"(limit {limits.max_ratio:.0f}x): looks like a zip bomb")
        total += info.file_size
        if total > limits.max_total_bytes:
            raise UnsafeZip(f"more than {limits.max_total_bytes} bytes uncompressed")


@contextlib.contextmanager
def open_submission(path: str | os.PathLike, limits: ZipLimits = ZipLimits()) -> Iterator["Tree"]:
    """Yield a read-only view of a submission folder or zip. A zip is checked entry by entry
    (raises UnsafeZip) and then read in place: nothing is ever extracted to disk."""
    path = Path(path)
    if path.is_dir():
        yield FolderTree(path)
        return
    if not path.is_file():
        raise UserError(f"{path}: no such submission folder or zip")
    if not zipfile.is_zipfile(path):
        raise UserError(f"{path}: neither a folder nor a zip file")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, NotImplementedError) as exc:
        raise UnsafeZip(f"corrupt zip ({' '.join(str(exc).split())[:160]})") from None
    with archive:
        check_zip_entries(archive, limits)
        yield ZipTree(path, archive)


# ============================================================================ trees
class Tree:
    """The submission's entries, listed once; every check asks this instead of the file system,
    so a symlink or a zip entry name can never make the validator read outside the submission.
    Paths are relative POSIX strings ("" = the top level)."""

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

    def read_bytes(self, rel: str) -> bytes:
        return open_reader((self.kind, str(self.source)))(rel)


class FolderTree(Tree):
    kind = "folder"

    def __init__(self, root: Path):
        super().__init__(root)
        pending = [""]           # iterative: a hostile tree may nest deeper than Python's recursion limit
        while pending:
            rel = pending.pop()
            names = self.entries.setdefault(rel, set())
            with os.scandir(root / rel if rel else root) as it:
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


class ZipTree(Tree):
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

    def read_bytes(self, rel: str) -> bytes:
        return self._archive.read(self._names[rel])


def open_reader(source: tuple[str, str]):
    """rel -> bytes for a ("folder", root) or ("zip", path) source; used in worker processes,
    which open their own zip handle (a handle shared across fork would share its file offset)."""
    kind, where = source
    if kind == "folder":
        root = Path(where)
        return lambda rel: (root / rel).read_bytes()
    archive = zipfile.ZipFile(where)
    names = {entry_key(i.filename): i.filename for i in archive.infolist()}
    return lambda rel: archive.read(names[rel])


# ============================================================================ metadata
def load_yaml_mapping(tree: Tree, rel: str, report: ValidationReport, section: str = "submission") -> dict | None:
    """Parse a metadata file like the official tool (yaml.safe_load); problems go to the report."""
    if not tree.is_file(rel):
        report.add(section, f"{rel}: file not found")
        return None
    if tree.size(rel) > MAX_METADATA_BYTES:
        report.add(section, f"{rel}: larger than {MAX_METADATA_BYTES} bytes", stricter=True)
        return None
    try:
        data = yaml.safe_load(tree.read_bytes(rel).decode("utf-8"))
    except UnicodeDecodeError:
        report.add(section, f"{rel}: not UTF-8 text")
        return None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        report.add(section, f"{rel}: malformed YAML{where} ({getattr(exc, 'problem', None) or 'parse error'})")
        return None
    except (RecursionError, ValueError, TypeError) as exc:
        report.add(section, f"{rel}: malformed YAML ({exc.__class__.__name__})")
        return None
    if not data:
        report.add(section, f"{rel}: file is empty")
        return None
    if not isinstance(data, dict):
        report.add(section, f"{rel}: must be a YAML mapping of 'key: value' entries, got a {type(data).__name__}")
        return None
    return data


def _short(value) -> str:
    """A bounded repr: YAML aliases can make a small file expand into a huge structure."""
    return _REPR.repr(value)


def check_entries(data: dict, rel: str, mandatory: dict, optional: dict, report: ValidationReport,
                  section: str = "submission") -> None:
    """Exactly the official rules: mandatory keys present, no other key, no null, isinstance types."""
    missing = [k for k in mandatory if k not in data]
    if missing:
        report.add(section, f"{rel}: missing entries: {', '.join(missing)}")
    allowed = {**mandatory, **optional}
    forbidden = [_short(k) for k in data if k not in allowed]
    if forbidden:
        report.add(section, f"{rel}: forbidden entries: {', '.join(forbidden)} "
                            f"(allowed: {', '.join(allowed)})")
    for key, value in data.items():
        if key not in allowed:
            continue
        if value is None:
            report.add(section, f"{rel}: entry {key!r} is empty (null)")
        elif allowed[key] is not None and not isinstance(value, allowed[key]):
            report.add(section, f"{rel}: entry {key!r} must be of type {allowed[key].__name__}, "
                                f"got {type(value).__name__} {_short(value)}")
        elif isinstance(value, str) and not value.strip():
            report.add(section, f"{rel}: entry {key!r} is a blank string", stricter=True)


# ============================================================================ per-file checks
def check_unit_bytes(raw: bytes, name: str, cache: dict | None = None) -> tuple[int | None, str | None]:
    """(columns, None) for a valid unit file, else (None, reason)."""
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return None, "not ASCII text"
    try:
        _, columns = check_units_text(text, name, cache)
    except UnitFileError as exc:
        return None, f"line {exc.line}: {exc.reason}" if exc.line else exc.reason
    return columns, None


def check_wav_bytes(raw: bytes) -> str | None:
    """None for a readable 16 kHz mono 16-bit PCM wav with at least one sample, else the reason."""
    try:
        info = sf.info(io.BytesIO(raw))
    except Exception as exc:  # libsndfile raises several types for garbage
        return f"not a readable wav ({' '.join(str(exc).split())[:80]})"
    wrong = []
    if info.format != "WAV":
        wrong.append(f"container {info.format}, expected WAV")
    if info.samplerate != 16000:
        wrong.append(f"{info.samplerate} Hz, expected 16000 Hz")
    if info.channels != 1:
        wrong.append(f"{info.channels} channels, expected mono")
    if info.subtype != "PCM_16":
        wrong.append(f"sample format {info.subtype}, expected 16-bit PCM")
    if wrong:
        return "; ".join(wrong)
    if info.frames <= 0:
        return "no audio samples (duration 0)"
    try:
        sf.read(io.BytesIO(raw), frames=info.frames, dtype="int16")
    except Exception as exc:
        return f"audio data unreadable ({' '.join(str(exc).split())[:80]})"
    return None


_WORKER: dict = {"read": None, "lines": {}}


def _open_worker(source: tuple[str, str]) -> None:
    """Per process: its own reader of the submission and an empty cache of checked lines."""
    _WORKER["read"] = open_reader(source)
    _WORKER["lines"] = {}


def _check_batch(batch: list[tuple[str, str, int]]) -> list[tuple[int | None, str | None]]:
    """Worker: check (kind, relative path, size) items; unit-file lines are cached per process."""
    out = []
    for kind, rel, size in batch:
        limit = MAX_UNIT_FILE_BYTES if kind == "txt" else MAX_WAV_BYTES
        if size > limit:
            out.append((None, f"larger than {limit >> 20} MB"))
            continue
        try:
            raw = _WORKER["read"](rel)
        except (OSError, zipfile.BadZipFile, EOFError, zlib.error) as exc:
            out.append((None, f"unreadable ({' '.join(str(exc).split())[:80]})"))
            continue
        if kind == "txt":
            out.append(check_unit_bytes(raw, rel.rsplit("/", 1)[-1], _WORKER["lines"]))
        else:
            out.append((None, check_wav_bytes(raw)))
    return out


def run_file_checks(tree: Tree, tasks: list[tuple[str, str, int]], jobs: int,
                    progress: bool) -> list[tuple[int | None, str | None]]:
    """Check many files of ``tree``, in ``jobs`` processes; results in task order."""
    size = max(50, min(1000, len(tasks) // (max(jobs, 1) * 8) + 1))
    return run_batches(_check_batch, tasks, jobs, desc="checking files", unit="file", progress=progress,
                       batch_size=size, initializer=_open_worker, initargs=((tree.kind, str(tree.source)),))


# ============================================================================ the validator
@dataclass
class _FolderCheck:
    language: str
    folder: str                  # "test", "auxiliary_embedding1", ...
    unit_files: list[str]        # basenames present that must be format-checked
    wav_files: list[str]


class SubmissionValidator:
    def __init__(self, tree: Tree, report: ValidationReport, lists: dict[str, FileLists | None],
                 jobs: int, progress: bool):
        self.tree = tree
        self.report = report
        self.lists = lists
        self.jobs = jobs
        self.progress = progress

    def add(self, section: str, message: str, stricter: bool = False) -> None:
        self.report.add(section, message, stricter)

    def run(self) -> None:
        for link in self.tree.links:
            self.add("submission", f"{link}: symbolic links are not allowed (they can point outside "
                                   f"the submission; write real files)", stricter=True)
        open_source = self.check_top_level()
        if not self.tree.is_dir("2019"):
            return
        self.check_track_folder(open_source)
        languages = self.languages_to_check()
        aux = self.check_aux_presence(languages)
        self.check_track_metadata(aux)
        checks = [c for lang in languages for c in self.language_checks(lang, aux)]
        self.check_files(checks)

    # ------------------------------------------------------------------ layout and metadata
    def check_top_level(self) -> bool | None:
        names = self.tree.names("")
        extra = sorted(names - {"metadata.yaml", "2017", "2019"})
        if extra:
            hint = ""
            if len(names) == 1 and self.tree.is_file(f"{extra[0]}/metadata.yaml"):
                hint = f" (everything is inside {extra[0]}/: entries must be at the top level / zip root)"
            self.add("submission", f"top level contains extra files or folders: {', '.join(extra)}{hint}")
        if "metadata.yaml" not in names:
            self.add("submission", "top level has no metadata.yaml")
            data = None
        else:
            data = load_yaml_mapping(self.tree, "metadata.yaml", self.report)
        if not self.tree.is_dir("2019"):
            self.add("submission", "no 2019/ folder: nothing to validate for the 2019 track")
        if self.tree.is_dir("2017"):
            self.report.notes.append("2017/ is present and was not checked (other track)")
        if data is None:
            return None
        check_entries(data, "metadata.yaml", TOP_METADATA, {}, self.report)
        value = data.get("open source")
        return value if isinstance(value, bool) else None

    def check_track_folder(self, open_source: bool | None) -> None:
        names = self.tree.names("2019")
        required = {"metadata.yaml", "english", "surprise"} | ({"code"} if open_source else set())
        allowed = required | ({"code"} if open_source is None else set())
        extra = sorted(names - allowed)
        if extra == ["code"] and open_source is False:
            self.add("submission", "2019/code exists but metadata.yaml declares 'open source: false' "
                                   "(remove the folder or declare the submission open source)")
        elif extra:
            self.add("submission", f"2019/ contains extra files or folders: {', '.join(extra)}")
        missing = sorted(required - names)
        if missing:
            self.add("submission", f"2019/ is missing: {', '.join(missing)}")
        for language in LANGUAGES:
            if language in names and not self.tree.is_dir(f"2019/{language}"):
                self.add("submission", f"2019/{language} must be a folder")
        if open_source and "code" in names:
            if not self.tree.is_dir("2019/code"):
                self.add("submission", "2019/code must be a folder")
            elif not self.tree.names("2019/code"):
                self.add("submission", "2019/code is empty but metadata.yaml declares 'open source: true'")

    def languages_to_check(self) -> list[str]:
        """Languages with file lists; without any lists, every non-empty language folder."""
        with_lists = [lang for lang in LANGUAGES if self.lists.get(lang) is not None]
        if with_lists:
            for lang in LANGUAGES:
                if lang not in with_lists:
                    self.report.notes.append(f"{lang}: no file list (not in --filelists or the dataset); "
                                             f"2019/{lang} was not checked")
            return with_lists
        self.report.notes.append("no file lists (give --dataset or --filelists): file presence could not "
                                 "be checked, only the structure and the format of the files present")
        present = [lang for lang in LANGUAGES if self.tree.names(f"2019/{lang}")]
        for lang in LANGUAGES:
            if lang not in present and self.tree.is_dir(f"2019/{lang}"):
                self.report.notes.append(f"2019/{lang} is empty: nothing to check")
        return present

    def check_aux_presence(self, languages: list[str]) -> dict[str, bool]:
        """Official rule: each auxiliary folder exists for every language or for none; aux2 needs aux1.
        Applied across the languages being checked (an unlisted language is not evaluated)."""
        aux = {}
        for folder in AUX_FOLDERS:
            have = [lang for lang in languages if self.tree.is_dir(f"2019/{lang}/{folder}")]
            if have and len(have) != len(languages):
                lacking = [lang for lang in languages if lang not in have]
                self.add("submission", f"{folder} is present for {', '.join(have)} but not for "
                                       f"{', '.join(lacking)} (present for one language but not for the other)")
            aux[folder] = bool(have)
        for lang in languages:
            if self.tree.is_dir(f"2019/{lang}/auxiliary_embedding2") and not self.tree.is_dir(
                    f"2019/{lang}/auxiliary_embedding1"):
                self.add("submission", f"2019/{lang} has auxiliary_embedding2 but not auxiliary_embedding1")
        return aux

    def check_track_metadata(self, aux: dict[str, bool]) -> None:
        if "metadata.yaml" not in self.tree.names("2019"):
            return   # already reported as missing
        data = load_yaml_mapping(self.tree, "2019/metadata.yaml", self.report)
        if data is None:
            return
        mandatory, optional = dict(TRACK_METADATA), {}
        for n, folder in enumerate(AUX_FOLDERS, 1):
            (mandatory if aux.get(folder) else optional)[f"auxiliary{n} description"] = str
        check_entries(data, "2019/metadata.yaml", mandatory, optional, self.report)
        distance = data.get("abx distance")
        if isinstance(distance, str) and distance not in ABX_DISTANCES:
            self.add("submission", f"2019/metadata.yaml: 'abx distance' must be one of "
                                   f"{', '.join(ABX_DISTANCES)}, got {distance[:40]!r}")

    # ------------------------------------------------------------------ one language
    def language_checks(self, language: str, aux: dict[str, bool]) -> list[_FolderCheck]:
        base = f"2019/{language}"
        lists = self.lists.get(language)
        test = f"{base}/test"
        if not self.tree.is_dir(test):
            self.add(language, f"{test}/ does not exist")
            return []
        present = self.tree.names(test)
        if lists is None:    # structural mode: check what is there
            units = sorted(n for n in present if n.endswith(".txt") and self.tree.is_file(f"{test}/{n}"))
            wavs = sorted(n for n in present if n.endswith(".wav") and self.tree.is_file(f"{test}/{n}"))
            if not units:
                self.add(language, f"{test}/ has no unit files (.txt)")
        else:
            for name in lists.required:
                if not self.tree.is_file(f"{test}/{name}"):
                    self.add(language, f"missing file {test}/{name}")
            units = [n for n in lists.unit_files if self.tree.is_file(f"{test}/{n}")]
            wavs = [n for n in lists.wav_files if self.tree.is_file(f"{test}/{n}")]
            extra = len(present - set(lists.required))
            if extra:
                self.report.notes.append(f"{test}/ holds {extra} files not in the file list (allowed, ignored)")
        checks = [_FolderCheck(language, "test", units, wavs)]
        expected = lists.unit_files if lists is not None else units
        for folder in AUX_FOLDERS:
            rel = f"{base}/{folder}"
            if not aux.get(folder) or not self.tree.is_dir(rel):
                continue
            missing = [n for n in expected if not self.tree.is_file(f"{rel}/{n}")]
            for name in missing:
                self.add(language, f"missing file {rel}/{name}", stricter=lists is None)
            checks.append(_FolderCheck(language, folder, [n for n in expected if n not in set(missing)], []))
        return checks

    def check_files(self, checks: list[_FolderCheck]) -> None:
        tasks, owners = [], []
        for check in checks:
            rel = f"2019/{check.language}/{check.folder}"
            for kind, names in (("txt", check.unit_files), ("wav", check.wav_files)):
                for name in names:
                    tasks.append((kind, f"{rel}/{name}", self.tree.size(f"{rel}/{name}")))
                    owners.append((check, name))
        results = run_file_checks(self.tree, tasks, self.jobs, self.progress)
        columns: dict[int, dict[str, int]] = {}
        for (check, name), (task, (width, reason)) in zip(owners, zip(tasks, results)):
            rel = f"2019/{check.language}/{check.folder}/{name}"
            if reason is not None:
                self.add(check.language, f"{rel}: {reason}", stricter=True)
            elif task[0] == "txt":
                columns.setdefault(id(check), {})[name] = width
        for check in checks:
            self.check_columns(check, columns.get(id(check), {}))
            wavs = f" + {len(check.wav_files)} wavs" if check.wav_files else ""
            self.report.checked.setdefault(check.language, {})[check.folder] = f"{len(check.unit_files)} unit files{wavs}"

    def check_columns(self, check: _FolderCheck, widths: dict[str, int]) -> None:
        """Every file of a folder must have the same dimension (official), of at least 2 (strict:
        the official ABX loader silently drops 1-column lines)."""
        rel = f"2019/{check.language}/{check.folder}"
        usual = Counter(w for w in widths.values() if w >= 2).most_common(1)
        for name, width in widths.items():
            if width < 2:
                self.add(check.language, f"{rel}/{name}: only 1 column; the official ABX loader skips "
                                         f"1-column lines, write >= 2 columns (e.g. one-hot or code vectors)",
                         stricter=True)
            elif usual and width != usual[0][0]:
                self.add(check.language, f"{rel}/{name}: {width} columns where the other files of "
                                         f"{check.folder}/ have {usual[0][0]} (vector dimension does not match)",
                         stricter=True)


def collect_filelists(dataset: str | os.PathLike | None, filelists: str | os.PathLike | None) -> dict[str, FileLists | None]:
    if dataset is not None and not Dataset.languages(dataset):
        raise UserError(f"--dataset {dataset}: no 2019/english or 2019/surprise folder (expected the "
                        f"ZeroSpeech 2019 layout ROOT/2019/<language>/test)")
    return {lang: find_filelists(lang, filelists, dataset) for lang in LANGUAGES}


def validate_submission(path: str | os.PathLike, dataset: str | os.PathLike | None = None,
                        filelists: str | os.PathLike | None = None, jobs: int = 1, progress: bool = False,
                        limits: ZipLimits = ZipLimits()) -> ValidationReport:
    """Validate a submission folder or zip; never raises for a bad submission (problems are in
    the report), raises UserError for bad arguments (missing path, unreadable file lists)."""
    lists = collect_filelists(dataset, filelists)
    report = ValidationReport(str(path))
    for lang, found in lists.items():
        if found is not None:
            report.notes.append(f"{lang} file lists: {found.source}")
    try:
        with open_submission(path, limits) as tree:
            report.source = f"{path} ({tree.kind})"
            SubmissionValidator(tree, report, lists, jobs, progress).run()
    except UnsafeZip as exc:
        report.add("submission", f"unsafe zip refused, nothing was checked: {exc}", stricter=True)
    return report
