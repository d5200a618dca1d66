"""The official ABX task file (ABXpy's HDF5 ``.abx``): the reader, the engine on exactly its
triplets against ABXpy's own per-cell scores, and where ``zs2020 evaluate`` looks for it.

tests/data/abxpy_task was made by ``scripts/crosscheck_abxpy.py --fixture``: ABXpy (in its own
environment) built task.abx from items.item and scored features/<set> with its distance, score
and analyze steps; abxpy_cells.json holds its analyze rows and its official average. No ABXpy
is needed here."""
from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from pipeline.contract.abxtask import TASK_FILES, _unpickle_names, is_task_file, read_task_file, task_file_path
from pipeline.contract.dataset import Dataset
from pipeline.contract.unitfile import read_units
from pipeline.core.errors import UserError
from pipeline.evaluation import abx
from pipeline.evaluation.evaluate import LanguageTask, abx_source
from pipeline.stages.evaluate import _items

FIXTURE = Path(__file__).parent / "data" / "abxpy_task"
ABXPY = json.loads((FIXTURE / "abxpy_cells.json").read_text())
CASES = [(name, distance) for name, sets in ABXPY["sets"].items() for distance in sets]


@pytest.fixture(scope="module")
def task_file():
    return read_task_file(FIXTURE / "task.abx")


def test_reader_recovers_items_labels_and_triplets(task_file):
    items = [line.split() for line in (FIXTURE / "items.item").read_text().splitlines()[1:]]
    assert task_file.on == "phone" and task_file.across == "speaker"
    assert task_file.bys == ("('AA', 'IY')", "('IY', 'AA')")
    assert task_file.n_triplets == next(iter(ABXPY["sets"].values()))["cosine"]["triplets"] == 108
    # every item of the item file, block after block, with its times and labels
    expected = sorted((f, float(on), float(off), ph, spk) for f, on, off, ph, _, _, spk in items)
    got = sorted(zip(task_file.files, task_file.onsets, task_file.offsets, task_file.phones, task_file.speakers))
    assert [(str(f), float(a), float(b), str(p), str(s)) for f, a, b, p, s in got] == expected
    # the triplets obey the task: A, X share the phone, A, B the speaker, X another speaker
    a, b, x = task_file.triplets.T
    assert np.all(task_file.phones[a] == task_file.phones[x]) and np.all(task_file.phones[a] != task_file.phones[b])
    assert np.all(task_file.speakers[a] == task_file.speakers[b])
    assert np.all(task_file.speakers[a] != task_file.speakers[x])
    block = np.searchsorted(task_file.block_starts, task_file.triplets, side="right") - 1
    assert np.all(block == block[:, :1])      # a triplet never crosses blocks


@pytest.mark.parametrize("name,distance", CASES)
def test_engine_gives_abxpy_score_in_every_cell(task_file, name, distance):
    features = {stem: read_units(FIXTURE / "features" / name / f"{stem}.txt") for stem in set(task_file.files)}
    task = abx.task_from_file(task_file)
    arrays = abx.timed_item_features(task_file, features)
    cells = abx.score_cells(task, abx.pack_features(arrays, distance, allow_empty=True))
    ours = {(str(task.context_names[c]), str(task.phone_names[pa]), str(task.speaker_names[sa]),
             str(task.speaker_names[sx]), str(task.phone_names[pb])): (s, n)
            for c, pa, pb, sa, sx, s, n in zip(cells.context, cells.phone_a, cells.phone_b, cells.speaker_a,
                                               cells.speaker_x, cells.score, cells.n)}
    theirs = {(by, p1, s1, s2, p2): (s, n) for p1, s1, s2, p2, by, s, n in ABXPY["sets"][name][distance]["cells"]}
    assert set(ours) == set(theirs)
    for key, (score, n) in theirs.items():
        assert ours[key][0] == pytest.approx(score, abs=1e-9), key
        assert ours[key][1] == n, key
    result = abx.abx(task, arrays, distance)
    assert result.error == pytest.approx(ABXPY["sets"][name][distance]["abx"], abs=1e-9)
    assert result.n_triplets == 108


def test_item_times_follow_the_official_loader(task_file):
    """Frame i of L has the time i / L: [0.5, 1] keeps the second half, [1, 1] nothing."""
    features = {stem: np.arange(8.0)[:, None] * np.ones((1, 2)) for stem in set(task_file.files)}
    arrays = abx.timed_item_features(task_file, features)
    spans = {(on, off): len(a) for on, off, a in zip(task_file.onsets, task_file.offsets, arrays)}
    assert spans == {(0.0, 1.0): 8, (0.5, 1.0): 4, (1.0, 1.0): 0}


def test_bad_task_files_are_one_line_errors(tmp_path):
    text = tmp_path / "items.abx"
    text.write_text("#file onset offset #phone prev-phone next-phone speaker\n")
    with pytest.raises(UserError, match="not an ABXpy task file"):
        read_task_file(text)
    other = tmp_path / "other.abx"
    with h5py.File(other, "w") as handle:
        handle["something"] = np.zeros(3)
    with pytest.raises(UserError, match="no 'bys'"):
        read_task_file(other)
    with pytest.raises(UserError, match="does not exist"):
        read_task_file(tmp_path / "missing.abx")
    truncated = tmp_path / "truncated.abx"
    truncated.write_bytes((FIXTURE / "task.abx").read_bytes()[:4000])
    with pytest.raises(UserError, match=str(truncated)):
        read_task_file(truncated)
    assert is_task_file(FIXTURE / "task.abx") and not is_task_file(text)


def test_pickled_column_names_never_load_a_class():
    assert _unpickle_names(pickle.dumps(["onset", "offset"], 0)) == ["onset", "offset"]
    assert _unpickle_names(pickle.dumps(Path("x"))) is None      # a class reference: refused
    assert _unpickle_names(b"not a pickle") is None


@pytest.fixture()
def layout(tmp_path):
    """A dataset with english (the official task and a demo item file) and surprise (nothing)."""
    root = tmp_path / "dataset"
    for language in ("english", "surprise"):
        (root / "2019" / language / "test").mkdir(parents=True)
    (root / "2019" / "english" / "abx").mkdir()
    shutil.copyfile(FIXTURE / "items.item", root / "2019" / "english" / "abx" / "test.item")
    task_file_path(root, "english").parent.mkdir(parents=True)
    shutil.copyfile(FIXTURE / "task.abx", task_file_path(root, "english"))
    return root


def test_official_task_first_then_item_file_and_items_option_wins(layout):
    english = Dataset(layout, "english")
    assert english.abx_task_file() == layout / "2019" / "ABXTasks" / "byCtxt_acSpkr.abx"
    assert Dataset(layout, "surprise").abx_task_file().name == TASK_FILES["surprise"] == "surprise_byCtxt_acSpkr.abx"
    assert abx_source(english, "excerpt", None)[0] == english.abx_task_file()
    assert abx_source(english, "long", None)[0] is None          # the official task has no long items
    item_file = layout / "2019" / "english" / "abx" / "test.item"
    assert abx_source(english, "excerpt", item_file)[0] == item_file
    task = LanguageTask(english, "excerpt", None)
    assert task.task_file is not None and task.task.listed is not None and task.n_items == 21
    assert task.item_stems == sorted(set(task.task_file.files.tolist()))
    # the same items from the text item file: same ABX (every triplet of a by-context task)
    from_items = LanguageTask(english, "excerpt", None, items=item_file)
    assert from_items.items is not None and from_items.task.listed is None and from_items.n_items == 21
    codes = {s: read_units(FIXTURE / "features" / "codes" / f"{s}.txt") for s in task.item_stems}
    with pytest.raises(UserError, match="--items .*no such file"):
        abx_source(english, "excerpt", layout / "nope.abx")
    assert abx.abx(task.task, task.item_arrays(codes), "cosine").n_triplets == 108


def test_missing_task_says_what_and_where(layout):
    surprise = LanguageTask(Dataset(layout, "surprise"), "excerpt", None)
    assert surprise.task is None
    reason = surprise.skip_reason
    assert "\n" not in reason and reason.startswith("no ABX task: looked for ")
    assert str(layout / "2019" / "ABXTasks" / "surprise_byCtxt_acSpkr.abx") in reason
    assert str(layout / "2019" / "surprise" / "abx" / "test.item") in reason
    assert "never released" in reason
    assert surprise.bitrate_skip_reason.startswith("no bitrate file list: looked for bitrate_filelist.txt in ")


def test_items_option_takes_a_language():
    assert _items(("a.abx",)) == {"english": Path("a.abx")}
    assert _items(("surprise=s.abx", "e.item")) == {"surprise": Path("s.abx"), "english": Path("e.item")}


def test_numba_cache_folder_can_be_moved(monkeypatch, tmp_path):
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.delenv("ZS2020_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert abx.numba_cache_dir() == tmp_path / "xdg" / "zs2020" / "numba"
    monkeypatch.setenv("ZS2020_CACHE", str(tmp_path / "cache"))
    assert abx.numba_cache_dir() == tmp_path / "cache" / "numba"
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "numba"))
    assert abx.numba_cache_dir() == tmp_path / "numba"
