"""Write a complete 2019-track submission in the official layout, from finished unit arrays and
converted wavs (the ``submit`` stage encodes and converts through ``pipeline.systems`` and hands
the results over)::

    metadata.yaml                       author, affiliation, open source (config ``submission:``)
    2019/metadata.yaml                  abx distance, description, real hyperparameters, flags
    2019/code/                          snapshot of this repository's sources (open source only)
    2019/<language>/test/<utt>.txt      the unit files, one line per 20 ms frame
    2019/<language>/test/<V>_<id>.wav   one converted wav per synthesis.txt line
    2019/<language>/auxiliary_embedding1/<utt>.txt, auxiliary_embedding2/<utt>.txt

Which files each language needs comes from ``pipeline.contract.filelists`` (official lists, the
dataset's lists, or derived from the dataset). A language the dataset lacks (the demo corpus
has no surprise language) is written as an empty folder, because the official validator
requires ``2019/surprise/`` to exist. The folder is built in a temporary sibling
(``SubmissionDraft``) and renamed into place only when every required file is there; the zip
is written after it, atomically, with every entry at its root.
"""
from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import yaml
from tqdm import tqdm

from pipeline.contract.dataset import Dataset
from pipeline.contract.filelists import FileLists, find_filelists
from pipeline.contract.names import AUX_FOLDERS, LANGUAGES, TRAIN_SPLITS
from pipeline.contract.unitfile import format_units
from pipeline.core.config import Submission
from pipeline.core.errors import UserError
from pipeline.core.io import atomic_dir, atomic_path

# Source files copied into 2019/code when the repository is not a git checkout.
PACKAGE_DIRS = ("pipeline", "models", "submission", "tests", "benchmarks", "scripts")
PACKAGE_FILES = ("Makefile", "pyproject.toml", "README.md", "environment.yml", ".gitignore")
MAX_CODE_FILE_BYTES = 5 << 20
ZIP_DATE = (1980, 1, 1, 0, 0, 0)       # fixed entry dates: the same folder gives the same zip


# ============================================================================ metadata
def top_metadata(section: Submission) -> dict:
    return {"author": section.author, "affiliation": section.affiliation, "open source": section.open_source}


def uses_parallel_data(dataset_root: Path, languages: list[str]) -> bool:
    """The unit system trains on every training split of its languages, train/parallel included
    (as unpaired audio): parallel data is used as soon as the dataset has it there."""
    for language in languages:
        if language in Dataset.languages(dataset_root):
            dataset = Dataset(dataset_root, language)
            if any(dataset.has_split(split) for split in TRAIN_SPLITS if "parallel" in split):
                return True
    return False


def track_metadata(section: Submission, description: str, hyperparameters: dict, parallel: bool,
                   aux_descriptions: list[str] | None) -> dict:
    """``2019/metadata.yaml``: the system describes itself (``description``, ``hyperparameters``,
    one description per auxiliary folder, or None without auxiliary folders)."""
    extra = section.system_description.strip()
    meta = {"abx distance": section.abx_distance,
            "system description": f"{extra} {description}" if extra else description,
            "hyperparameters": hyperparameters,
            "using parallel train": parallel,
            # Every model is trained from the dataset alone (no pretrained weights, no other corpus).
            "using external data": False}
    for n, text in enumerate(aux_descriptions or [], 1):
        meta[f"auxiliary{n} description"] = text
    return meta


def dump_yaml(path: Path, data: dict) -> None:
    # Round-trip through JSON: tuples and numpy scalars become plain YAML types.
    plain = json.loads(json.dumps(data, default=lambda v: v.item() if hasattr(v, "item") else str(v)))
    path.write_text(yaml.safe_dump(plain, sort_keys=False, allow_unicode=True, width=100), encoding="utf-8")


# ============================================================================ code snapshot
def repository_root() -> Path:
    return Path(__file__).resolve().parents[1]


def source_files(repo: Path) -> list[str]:
    """Files of the repository: ``git ls-files`` (tracked plus untracked-not-ignored, so work not
    yet committed is included) in a git checkout, else the package folders and top-level files."""
    try:
        out = subprocess.run(["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             capture_output=True, check=True, timeout=60).stdout
        names = sorted({n for n in out.decode("utf-8", "surrogateescape").split("\0") if n})
    except (OSError, subprocess.SubprocessError):
        names = [str(p.relative_to(repo)) for d in PACKAGE_DIRS if (repo / d).is_dir()
                 for p in sorted((repo / d).rglob("*")) if "__pycache__" not in p.parts]
        names += [n for n in PACKAGE_FILES if (repo / n).exists()]
    keep = []
    for name in names:
        path = repo / name
        if path.is_symlink() or not path.is_file() or path.stat().st_size > MAX_CODE_FILE_BYTES:
            continue
        if name.split("/", 1)[0] == "data" and not name.endswith(".md"):
            continue   # generated corpora and runs never belong in the code folder
        keep.append(name)
    return keep


def snapshot_code(dest: Path, repo: Path | None = None) -> int:
    repo = repo or repository_root()
    names = source_files(repo)
    if not names:
        raise UserError(f"{repo}: found no source files to put in 2019/code (set submission.open_source=false "
                        f"to submit without code)")
    for name in names:
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(repo / name, target)
    return len(names)


# ============================================================================ plans
@dataclass
class LanguagePlan:
    dataset: Dataset
    lists: FileLists
    items: list[tuple[str, str]]         # (wav path, unit file name)
    synthesis: list                      # SynthesisLine


def plan_language(dataset_root: Path, language: str, filelists) -> LanguagePlan:
    """Match the file lists with the dataset; refuse before writing anything if they disagree."""
    dataset = Dataset(dataset_root, language)
    lists = find_filelists(language, filelists, dataset_root)
    tests = {u.utt_id: u for u in dataset.utterances("test")}
    items = []
    for name in lists.unit_files:
        utt = tests.get(name[:-4] if name.endswith(".txt") else name)
        if utt is None or not name.endswith(".txt"):
            raise UserError(f"{lists.source}: lists {name!r} but {dataset.lang_dir / 'test'} has no matching .wav")
        items.append((str(utt.path), name))
    synthesis = dataset.synthesis()
    produced = {line.output_name for line in synthesis}
    unknown = [n for n in lists.wav_files if n not in produced]
    if unknown:
        raise UserError(f"{lists.source}: requires {unknown[0]} ({len(unknown)} wavs in all) that no line of "
                        f"{dataset.lang_dir / 'synthesis.txt'} produces")
    return LanguagePlan(dataset, lists, items, synthesis)


def plan_languages(dataset_root: Path, filelists) -> dict[str, LanguagePlan]:
    languages = Dataset.languages(dataset_root)
    if "english" not in languages:
        raise UserError(f"{dataset_root}: no 2019/english folder (expected ROOT/2019/english/test, synthesis.txt)")
    return {lang: plan_language(dataset_root, lang, filelists) for lang in languages}


# ============================================================================ the draft folder
def write_unit_arrays(name: str, folders: list[str], arrays: list[np.ndarray]) -> int:
    """One unit file ``name`` per folder (test/, then the auxiliary folders), from the matching
    array; returns the number of frames. Plain writes: the draft folder is a temporary one."""
    frames = arrays[0].shape[0]
    if frames == 0 or any(a.ndim != 2 or a.shape[0] != frames for a in arrays[:len(folders)]):
        raise UserError(f"{name}: the encoder returned inconsistent unit arrays {[a.shape for a in arrays]}")
    if not all(np.all(np.isfinite(a)) for a in arrays[:len(folders)]):
        raise UserError(f"{name}: the encoder returned NaN or infinite values (a diverged model); retrain it")
    for folder, array in zip(folders, arrays):
        Path(folder, name).write_text(format_units(array), encoding="ascii")
    return int(frames)


class SubmissionDraft:
    """The submission folder while it is being written (a temporary sibling of the output)."""

    def __init__(self, root: Path, plans: dict[str, LanguagePlan], auxiliary: bool):
        self.root, self.plans, self.auxiliary = root, plans, auxiliary

    def test_dir(self, language: str) -> Path:
        return self.root / "2019" / language / "test"

    def unit_folders(self, language: str) -> list[str]:
        """test/ then, with auxiliary embeddings, auxiliary_embedding1/ and 2/ (created)."""
        base = self.root / "2019" / language
        folders = [base / "test"] + ([base / f for f in AUX_FOLDERS] if self.auxiliary else [])
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
        return [str(f) for f in folders]

    def check_complete(self) -> None:
        for language, plan in self.plans.items():
            missing = [n for n in plan.lists.required if not (self.test_dir(language) / n).is_file()]
            if missing:
                raise UserError(f"2019/{language}/test: {len(missing)} required files were not produced "
                                f"(first: {missing[0]})")


@contextlib.contextmanager
def draft_submission(out_dir: Path, plans: dict[str, LanguagePlan], top: dict, track: dict,
                     auxiliary: bool) -> Iterator[SubmissionDraft]:
    """Yield a draft with both metadata files, the code snapshot (open source) and every
    language folder; on success (all required files written) it replaces ``out_dir`` whole."""
    with atomic_dir(out_dir) as tmp:
        dump_yaml(tmp / "metadata.yaml", top)
        (tmp / "2019").mkdir()
        dump_yaml(tmp / "2019" / "metadata.yaml", track)
        if top["open source"]:
            snapshot_code(tmp / "2019" / "code")
        for language in LANGUAGES:
            (tmp / "2019" / language).mkdir()
        draft = SubmissionDraft(tmp, plans, auxiliary)
        yield draft
        draft.check_complete()


# ============================================================================ zip
def write_zip(folder: Path, zip_path: Path, level: int, comment: str, progress: bool) -> None:
    """Deterministic zip of ``folder``'s content with entries at the root (directories included,
    so an empty 2019/surprise/ survives)."""
    entries = sorted(p for p in folder.rglob("*"))
    with atomic_path(zip_path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=level) as archive:
            for path in tqdm(entries, desc="zip", unit="file", disable=not progress, dynamic_ncols=True):
                name = path.relative_to(folder).as_posix()
                if path.is_dir():
                    info = zipfile.ZipInfo(name + "/", ZIP_DATE)
                    info.external_attr = (0o40755 << 16) | 0x10
                    archive.writestr(info, b"")
                else:
                    info = zipfile.ZipInfo(name, ZIP_DATE)
                    info.external_attr = 0o100644 << 16
                    # writestr, not open(info, "w"): only writestr honours the compression level.
                    archive.writestr(info, path.read_bytes(), compress_type=zipfile.ZIP_DEFLATED,
                                     compresslevel=level)
            archive.comment = comment.encode("ascii")


def zip_fingerprint(zip_path: Path) -> str | None:
    try:
        with zipfile.ZipFile(zip_path) as archive:
            return archive.comment.decode("ascii", "replace")
    except (OSError, zipfile.BadZipFile):
        return None
