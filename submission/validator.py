"""Strict validator of a ZeroSpeech 2020 submission (2019 track), folder or zip.

It enforces every rule of the official ``zerospeech2020-validate`` (layout, both metadata
files, code folder, auxiliary folders, file presence from the official file lists) and adds
checks the official tool lacks, each reported with the tag ``[stricter than official]``: the
unit-file format (which the official tool only prints about), the wavs (its wav check is dead
code), symlinks, and hostile zips. It collects every problem instead of stopping at the first.
Submissions are read through ``pipeline.contract.reader`` (zips in place, never extracted);
metadata rules live in ``submission.metadata``, per-file checks in ``submission.files``.

Entry point: ``validate_submission(path, dataset=..., filelists=..., jobs=...) -> ValidationReport``.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass

from pipeline.contract.dataset import Dataset
from pipeline.contract.filelists import FileLists, find_filelists
from pipeline.contract.names import ABX_DISTANCES, AUX_FOLDERS, LANGUAGES, TOP_METADATA, TRACK_METADATA
from pipeline.contract.reader import SubmissionTree, UnsafeZip, ZipLimits, open_submission
from pipeline.core.errors import UserError
from submission.files import run_file_checks
from submission.metadata import check_entries, load_yaml_mapping
from submission.report import ValidationReport


# ============================================================================ the validator
@dataclass
class _FolderCheck:
    language: str
    folder: str                  # "test", "auxiliary_embedding1", ...
    unit_files: list[str]        # basenames present that must be format-checked
    wav_files: list[str]


class SubmissionValidator:
    def __init__(self, tree: SubmissionTree, report: ValidationReport, lists: dict[str, FileLists | None],
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
                    if self.tree.names(f"2019/{lang}"):
                        self.report.unchecked.append(f"2019/{lang} was not checked (no file list)")
            return with_lists
        self.report.notes.append("no file lists (give --dataset or --filelists): file presence could not "
                                 "be checked, only the structure and the format of the files present")
        self.report.unchecked.append("file presence was not checked (no file lists)")
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
                    tasks.append((kind, f"{rel}/{name}"))
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
