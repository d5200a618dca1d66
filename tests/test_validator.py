"""The strict validator: a hand-made valid submission passes (folder and zip), and every broken
variant in the catalogue below is rejected with the expected message."""
from __future__ import annotations

import os
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner
from fixtures_submission import copy_submission, handmade_submission  # noqa: F401  (fixture)

from pipeline.cli import main
from pipeline.contract.filelists import find_filelists
from pipeline.contract.reader import ZipLimits
from pipeline.contract.unitfile import UnitFileError, check_units_text, write_units
from pipeline.core.errors import UserError
from submission.report import STRICT
from submission.validator import validate_submission


@pytest.fixture
def sub(handmade_submission, tmp_path):
    """A private, writable copy of the valid hand-made submission."""
    return copy_submission(handmade_submission, tmp_path / "submission")


@pytest.fixture(scope="module")
def english(tiny_corpus):
    return find_filelists("english", None, tiny_corpus)


def problems(path, dataset, **kwargs) -> list[str]:
    report = validate_submission(path, dataset=dataset, **kwargs)
    return [str(p) for p in report.problems]


def only_problem(path, dataset, expected: str, **kwargs) -> str:
    found = problems(path, dataset, **kwargs)
    assert len(found) == 1, found
    assert expected in found[0], found
    return found[0]


def zip_folder(folder: Path, zip_path: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            name = prefix + path.relative_to(folder).as_posix()
            if path.is_dir():
                archive.writestr(name + "/", b"")
            else:
                archive.write(path, name)
    return zip_path


# ================================================================= valid submissions
def test_handmade_submission_is_valid(sub, tiny_corpus, english):
    report = validate_submission(sub, dataset=tiny_corpus)
    assert report.valid, report.render()
    counts = report.checked["english"]
    assert counts["test"] == f"{len(english.unit_files)} unit files + {len(english.wav_files)} wavs"
    assert set(counts) == {"test", "auxiliary_embedding1", "auxiliary_embedding2"}
    assert any("surprise: no file list" in note for note in report.notes)


def test_valid_zip_is_valid_and_nothing_is_extracted(sub, tiny_corpus, tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    report = validate_submission(zip_folder(sub, tmp_path / "s.zip"), dataset=tiny_corpus, jobs=2)
    assert report.valid, report.render()
    assert "(zip)" in report.source
    assert list(scratch.iterdir()) == []


def test_zip_with_a_top_folder_is_rejected_with_a_hint(sub, tiny_corpus, tmp_path):
    found = problems(zip_folder(sub, tmp_path / "s.zip", prefix="submission/"), tiny_corpus)
    assert any("entries must be at the top level / zip root" in p for p in found), found


def test_structural_mode_without_lists(sub):
    report = validate_submission(sub)
    assert report.valid, report.render()
    assert any("file presence could not be checked" in n for n in report.notes)
    (sub / "2019/english/test" / sorted(os.listdir(sub / "2019/english/test"))[0]).write_text("1  2\n")
    assert any("double space" in p for p in problems(sub, None))


# ================================================================= layout
def test_missing_unit_file(sub, tiny_corpus, english):
    name = english.unit_files[0]
    (sub / "2019/english/test" / name).unlink()
    only_problem(sub, tiny_corpus, f"missing file 2019/english/test/{name}")


def test_missing_wav(sub, tiny_corpus, english):
    name = english.wav_files[0]
    (sub / "2019/english/test" / name).unlink()
    only_problem(sub, tiny_corpus, f"missing file 2019/english/test/{name}")


def test_missing_aux_file(sub, tiny_corpus, english):
    name = english.unit_files[-1]
    (sub / "2019/english/auxiliary_embedding2" / name).unlink()
    only_problem(sub, tiny_corpus, f"missing file 2019/english/auxiliary_embedding2/{name}")


def test_extra_top_level_entry(sub, tiny_corpus):
    (sub / "notes.txt").write_text("hello")
    only_problem(sub, tiny_corpus, "top level contains extra files or folders: notes.txt")


def test_extra_entry_in_2019(sub, tiny_corpus):
    (sub / "2019" / "french").mkdir()
    only_problem(sub, tiny_corpus, "2019/ contains extra files or folders: french")


def test_missing_2019_folder(sub, tiny_corpus):
    shutil.rmtree(sub / "2019")
    only_problem(sub, tiny_corpus, "no 2019/ folder")


def test_code_folder_while_closed_source(sub, tiny_corpus):
    text = (sub / "metadata.yaml").read_text().replace("open source: true", "open source: false")
    (sub / "metadata.yaml").write_text(text)
    only_problem(sub, tiny_corpus, "2019/code exists but metadata.yaml declares 'open source: false'")
    shutil.rmtree(sub / "2019" / "code")
    assert problems(sub, tiny_corpus) == []


def test_open_source_needs_non_empty_code(sub, tiny_corpus):
    (sub / "2019/code/README.txt").unlink()
    only_problem(sub, tiny_corpus, "2019/code is empty")
    (sub / "2019/code").rmdir()
    only_problem(sub, tiny_corpus, "2019/ is missing: code")


def test_symlink_in_folder_is_rejected_and_not_followed(sub, tiny_corpus, english, tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("1 2\n")
    target = sub / "2019/english/test" / english.unit_files[0]
    target.unlink()
    target.symlink_to(outside)
    found = problems(sub, tiny_corpus)
    assert any("symbolic links are not allowed" in p and STRICT in p for p in found), found
    assert any(f"missing file 2019/english/test/{english.unit_files[0]}" in p for p in found), found


# ================================================================= metadata
def test_wrong_metadata_type(sub, tiny_corpus):
    text = (sub / "metadata.yaml").read_text().replace("open source: true", 'open source: "true"')
    (sub / "metadata.yaml").write_text(text)
    found = problems(sub, tiny_corpus)
    assert any("entry 'open source' must be of type bool, got str" in p for p in found), found


def test_unknown_metadata_key(sub, tiny_corpus):
    with open(sub / "metadata.yaml", "a") as handle:
        handle.write("version: 2\n")
    only_problem(sub, tiny_corpus, "metadata.yaml: forbidden entries: 'version'")


def test_null_metadata_value(sub, tiny_corpus):
    text = (sub / "metadata.yaml").read_text().replace("author: Test Author", "author:")
    (sub / "metadata.yaml").write_text(text)
    only_problem(sub, tiny_corpus, "metadata.yaml: entry 'author' is empty (null)")


def test_missing_track_metadata_key(sub, tiny_corpus):
    path = sub / "2019/metadata.yaml"
    path.write_text("\n".join(l for l in path.read_text().splitlines() if not l.startswith("using external")))
    only_problem(sub, tiny_corpus, "2019/metadata.yaml: missing entries: using external data")


def test_aux_description_needed_when_aux_present(sub, tiny_corpus):
    path = sub / "2019/metadata.yaml"
    path.write_text("\n".join(l for l in path.read_text().splitlines() if not l.startswith("auxiliary1")))
    only_problem(sub, tiny_corpus, "missing entries: auxiliary1 description")


def test_unknown_abx_distance(sub, tiny_corpus):
    path = sub / "2019/metadata.yaml"
    path.write_text(path.read_text().replace("abx distance: dtw_cosine", "abx distance: euclidean"))
    only_problem(sub, tiny_corpus, "'abx distance' must be one of dtw_cosine, dtw_kl, levenshtein")


def test_malformed_yaml(sub, tiny_corpus):
    (sub / "2019/metadata.yaml").write_text("abx distance: [dtw_cosine\nsystem description: x\n")
    only_problem(sub, tiny_corpus, "2019/metadata.yaml: malformed YAML at line")


def test_yaml_that_is_not_a_mapping(sub, tiny_corpus):
    (sub / "metadata.yaml").write_text("- author\n- affiliation\n")
    only_problem(sub, tiny_corpus, "metadata.yaml: must be a YAML mapping")


def test_yaml_alias_bomb_is_reported_quickly(sub, tiny_corpus):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    (sub / "metadata.yaml").write_text("\n".join(lines) + "\nauthor: *a8\naffiliation: x\nopen source: true\n")
    # resolved, author would be 10**9 items long: aliases are refused before anything expands
    only_problem(sub, tiny_corpus, "metadata.yaml: malformed YAML at line 2 (YAML aliases are not allowed)")


def test_deeply_nested_code_folder_is_fine(sub, tiny_corpus):
    chain = [sub / "2019/code"]
    for _ in range(1200):                   # deeper than Python's recursion limit
        chain.append(chain[-1] / "d")
        chain[-1].mkdir()
    assert problems(sub, tiny_corpus) == []
    for folder in reversed(chain[1:]):      # shutil.rmtree would recurse too deep
        folder.rmdir()


# ================================================================= auxiliary folders
def test_aux2_without_aux1(sub, tiny_corpus):
    shutil.rmtree(sub / "2019/english/auxiliary_embedding1")
    only_problem(sub, tiny_corpus, "2019/english has auxiliary_embedding2 but not auxiliary_embedding1")


def two_language_lists(tiny_corpus, sub, tmp_path) -> Path:
    """Official-style share/2019 folder: the corpus's English lists plus a 2-file surprise list,
    whose unit files are added to the submission (test and both aux folders)."""
    lists = tmp_path / "share2019"
    shutil.copytree(tiny_corpus / "2019/english/lists", lists / "english")
    (lists / "surprise").mkdir()
    names = ["S901_0001.txt", "S902_0002.txt"]
    (lists / "surprise/required_filelist.txt").write_text("".join(f"surprise/test/{n}\n" for n in names))
    (lists / "surprise/embedding_filelist.txt").write_text("".join(f"{n} 0.2\n" for n in names))
    for folder in ("test", "auxiliary_embedding1", "auxiliary_embedding2"):
        for name in names:
            write_units(sub / "2019/surprise" / folder / name, np.eye(8, dtype=np.int64)[:10] if folder != "auxiliary_embedding2"
                        else np.ones((10, 4)))
    return lists


def test_surprise_checked_when_lists_have_it(sub, tiny_corpus, tmp_path):
    lists = two_language_lists(tiny_corpus, sub, tmp_path)
    report = validate_submission(sub, filelists=lists)
    assert report.valid, report.render()
    assert set(report.checked) == {"english", "surprise"}
    (sub / "2019/surprise/test/S902_0002.txt").unlink()
    only_problem(sub, None, "missing file 2019/surprise/test/S902_0002.txt", filelists=lists)


def test_aux_folder_in_one_language_only(sub, tiny_corpus, tmp_path):
    lists = two_language_lists(tiny_corpus, sub, tmp_path)
    shutil.rmtree(sub / "2019/surprise/auxiliary_embedding2")
    only_problem(sub, None, "auxiliary_embedding2 is present for english but not for surprise", filelists=lists)


# ================================================================= unit files
def first_unit(sub, english) -> Path:
    return sub / "2019/english/test" / english.unit_files[0]


@pytest.mark.parametrize("text, expected", [
    ("0 1 0\n1 0 0\n0 1\n", "line 3: 2 columns where earlier lines have 3"),        # ragged
    ("0  1\n1 0\n", "line 1: double space between values"),
    ("0 1\nnan 0\n", "line 2: non-finite value 'nan'"),
    ("0 1\n1e999 0\n", "non-finite value '1e999'"),
    ("0\t1\n", "tab character"),
    ("0 1 \n", "leading or trailing space"),
    ("0 1\r\n", "carriage return"),
    ("0 x\n", "not a plain decimal number: 'x'"),
    ("", "file is empty"),
    ("\n\n", "file is empty"),
])
def test_bad_unit_file(sub, tiny_corpus, english, text, expected):
    first_unit(sub, english).write_text(text)
    message = only_problem(sub, tiny_corpus, expected)
    assert message.startswith(f"2019/english/test/{english.unit_files[0]}") and STRICT in message


def test_one_column_unit_file(sub, tiny_corpus, english):
    first_unit(sub, english).write_text("3\n4\n5\n")
    only_problem(sub, tiny_corpus, "only 1 column; the official ABX loader skips 1-column lines")


def test_dimension_differs_from_other_files(sub, tiny_corpus, english):
    first_unit(sub, english).write_text("0 1 0\n1 0 0\n")
    only_problem(sub, tiny_corpus, "3 columns where the other files of test/ have 8")


def test_non_ascii_unit_file(sub, tiny_corpus, english):
    first_unit(sub, english).write_bytes("0 1\n\u00e9 0\n".encode("utf-8"))
    only_problem(sub, tiny_corpus, "not ASCII text")


def test_check_units_text_counts_frames_and_columns():
    assert check_units_text("1 2 3\n\n4 5 6\n", "a.txt") == (2, 3)
    assert check_units_text("-1.5e-3 +2 .5 5.", "a.txt") == (1, 4)
    with pytest.raises(UnitFileError, match="a.txt:2: 1 columns where earlier lines have 2"):
        check_units_text("1 2\n3\n", "a.txt")


# ================================================================= wavs
def first_wav(sub, english) -> Path:
    return sub / "2019/english/test" / english.wav_files[0]


@pytest.mark.parametrize("samplerate, channels, subtype, expected", [
    (16000, 2, "PCM_16", "2 channels, expected mono"),
    (8000, 1, "PCM_16", "8000 Hz, expected 16000 Hz"),
    (16000, 1, "PCM_U8", "sample format PCM_U8, expected 16-bit PCM"),
    (16000, 1, "FLOAT", "sample format FLOAT, expected 16-bit PCM"),
])
def test_bad_wav_format(sub, tiny_corpus, english, samplerate, channels, subtype, expected):
    audio = np.zeros((800, channels), dtype=np.float32) + 0.1
    sf.write(first_wav(sub, english), audio, samplerate, subtype=subtype, format="WAV")
    message = only_problem(sub, tiny_corpus, expected)
    assert STRICT in message


def test_empty_and_garbage_wavs(sub, tiny_corpus, english):
    sf.write(first_wav(sub, english), np.zeros(0, dtype=np.float32), 16000, subtype="PCM_16")
    only_problem(sub, tiny_corpus, "no audio samples")
    first_wav(sub, english).write_bytes(b"RIFF....WAVEfmt garbage")
    only_problem(sub, tiny_corpus, "not a readable wav")


# ================================================================= hostile zips
def hostile_zip(path: Path, name: str, data: bytes = b"x", mode: int | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.yaml", "author: a\n")
        info = zipfile.ZipInfo(name)
        if mode is not None:
            info.external_attr = mode << 16
        archive.writestr(info, data)
    return path


def test_zip_slip_is_refused_and_nothing_written(tmp_path):
    work = tmp_path / "deep" / "er"
    work.mkdir(parents=True)
    path = hostile_zip(work / "evil.zip", "../../evil.txt")
    message = only_problem(path, None, "would land outside the submission when extracted (zip slip)")
    assert "nothing was checked" in message
    assert not (tmp_path / "evil.txt").exists()


def test_absolute_zip_path_is_refused(tmp_path):
    only_problem(hostile_zip(tmp_path / "a.zip", "/tmp/zs2020-evil.txt"), None, "has an absolute path")
    assert not Path("/tmp/zs2020-evil.txt").exists()


def test_symlink_zip_entry_is_refused(tmp_path):
    path = hostile_zip(tmp_path / "l.zip", "2019/link", b"/etc/passwd", mode=stat.S_IFLNK | 0o777)
    only_problem(path, None, "is a symbolic link")


def test_zip_bombs_are_refused(tmp_path):
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for i in range(12):
            archive.writestr(f"f{i}.txt", b"0" * (3 << 20))
    only_problem(path, None, "entries (limit 10)", limits=ZipLimits(max_entries=10))
    only_problem(path, None, "bytes uncompressed",
                 limits=ZipLimits(max_total_bytes=10 << 20, max_entry_ratio=1e9, max_total_ratio=1e9))
    only_problem(path, None, "f0.txt' expands", limits=ZipLimits(max_entry_ratio=100))
    # deflate tops out near 1030x: the default limits catch such an archive however it is split
    only_problem(path, None, "looks like a zip bomb")


def test_damaged_zip_entry_is_reported(sub, tiny_corpus, english, tmp_path):
    path = zip_folder(sub, tmp_path / "s.zip")
    name = f"2019/english/auxiliary_embedding2/{english.unit_files[0]}"
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(name)
    data = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    for offset in range(start + 2, start + info.compress_size - 2):
        data[offset] ^= 0x55
    path.write_bytes(bytes(data))
    found = only_problem(path, tiny_corpus, f"{name}: corrupt zip data")
    assert STRICT in found


def test_corrupt_zip_and_bad_path(tmp_path):
    path = zip_folder(tmp_path, tmp_path.parent / f"{tmp_path.name}.zip")
    data = bytearray(path.read_bytes())
    path.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(UserError, match="neither a folder nor a zip"):
        validate_submission(path)
    with pytest.raises(UserError, match="no such submission folder or zip"):
        validate_submission(tmp_path / "missing")
    with pytest.raises(UserError, match="no 2019/english or 2019/surprise folder"):
        validate_submission(tmp_path, dataset=tmp_path / "no_dataset")
    with pytest.raises(UserError, match="--filelists .*: no such folder"):
        validate_submission(tmp_path, filelists=tmp_path / "no_lists")


# ================================================================= command line
def test_cli_exit_status_and_problem_limit(sub, tiny_corpus, english):
    runner = CliRunner()
    ok = runner.invoke(main, ["validate", str(sub), "--dataset", str(tiny_corpus), "-q"])
    assert ok.exit_code == 0, ok.output
    assert "VALID" in ok.output
    removed = english.unit_files[:25]
    for name in removed:
        (sub / "2019/english/test" / name).unlink()
    bad = runner.invoke(main, ["validate", str(sub), "--dataset", str(tiny_corpus), "-q"])
    assert bad.exit_code == 1
    listed = [line for line in bad.output.splitlines() if line.startswith("  - missing file")]
    assert len(listed) == 20
    assert "... and 5 more" in bad.output
    assert f"INVALID: 25 problems (english 25)" in bad.output
    missing = runner.invoke(main, ["validate", str(sub / "nope")])
    assert missing.exit_code == 1 and "Error: " in missing.output and "no such submission" in missing.output
