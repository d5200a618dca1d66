"""A tiny dataset laid out and named like the real ZeroSpeech 2020 data, through features,
encode, submit, validate and evaluate.

Official naming: ``<SPK>_<10 digits>.wav`` (``S002_0379088085.wav``), target voices ``V001`` and
``V002``, ``synthesis.txt`` lines ``test/S002_0379088085 V002``, no demo extras (no alignments,
item files or lists in the dataset), the ABX task only as ``2019/ABXTasks/byCtxt_acSpkr.abx``
(tests/data/abxpy_task/task.abx, written by ABXpy; its 21 excerpts are test wavs here) and the
file lists in the official format in a separate folder (as the official package's share/2019).
The audio is the tiny corpus's, renamed; the models are the session's tiny run."""
from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.contract.dataset import Dataset, read_filelist
from pipeline.contract.filelists import format_filelists
from pipeline.contract.items import read_items
from pipeline.core.audio import wav_info
from pipeline.features import dump_features
from pipeline.stages.submit import make_submission
from submission.validator import validate_submission

pytestmark = pytest.mark.slow     # needs the trained tiny run (shared session fixture)

TASK = Path(__file__).parent / "data" / "abxpy_task"


def build_real_layout(corpus: Path, root: Path, lists: Path) -> dict[str, str]:
    """The real layout from the tiny corpus's wavs; returns {official test stem: tiny stem}."""
    tiny = Dataset(corpus, "english")
    en = root / "2019" / "english"
    ids = itertools.count(1220140001, 1009)
    renamed = {}
    for split in ("train/unit", "train/voice"):
        for utt in tiny.utterances(split):
            (en / split).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(utt.path, en / split / f"{utt.speaker}_{next(ids):010d}.wav")
    (en / "test").mkdir()
    excerpts = {row for row in read_items(tiny.item_file("excerpt")).files}
    long_ids = []
    for utt in tiny.utterances("test"):
        if utt.utt_id not in excerpts:
            stem = f"{utt.speaker}_{next(ids):010d}"
            shutil.copyfile(utt.path, en / "test" / f"{stem}.wav")
            renamed[stem] = utt.utt_id
            long_ids.append(stem)
    excerpt_wavs = itertools.cycle(sorted(excerpts))
    for stem in sorted(set(read_items(TASK / "items.item").files)):     # the task's excerpts
        source = next(excerpt_wavs)
        shutil.copyfile(tiny.find(f"test/{source}").path, en / "test" / f"{stem}.wav")
        renamed[stem] = source
    voices = ("V002", "V001")
    (en / "synthesis.txt").write_text("".join(f"test/{stem} {voice}\n" for stem, voice in zip(long_ids, voices)))
    (root / "2019" / "ABXTasks").mkdir()
    shutil.copyfile(TASK / "task.abx", root / "2019" / "ABXTasks" / "byCtxt_acSpkr.abx")
    durations = {p.stem: wav_info(p).frames for p in (en / "test").glob("*.wav")}
    outputs = [f"{voice}_{stem.split('_', 1)[1]}.wav" for stem, voice in zip(long_ids, voices)]
    (lists / "english").mkdir(parents=True)
    for kind, text in format_filelists(durations, set(long_ids), outputs, "english").items():
        (lists / "english" / f"{kind}_filelist.txt").write_text(text)
    return renamed


@pytest.fixture(scope="module")
def real(tiny_corpus, tmp_path_factory):
    base = tmp_path_factory.mktemp("real")
    root, lists = base / "zerospeech2020", base / "share" / "2019"
    build_real_layout(tiny_corpus, root, lists)
    return root, lists


@pytest.fixture(scope="module")
def submitted(real, tiny_run, tiny_config, tmp_path_factory):
    root, lists = real
    out = tmp_path_factory.mktemp("real_sub") / "submission"
    make_submission(root, tiny_run, out, tiny_config, filelists=lists, progress=False)
    return out


def test_layout_is_the_official_one(real):
    root, lists = real
    en = Dataset(root, "english")
    assert all(len(u.utt_id.split("_")[1]) == 10 for s in ("train/unit", "train/voice", "test")
               for u in en.utterances(s))
    assert [line.output_name for line in en.synthesis()][0].startswith("V002_")
    assert en.item_file() is None and en.filelist("required") is None and not en.has_alignments()
    assert en.abx_task_file().is_file()
    assert all(name.endswith(".txt") for name, _ in read_filelist(lists / "english" / "embedding_filelist.txt"))


def test_features_and_encode_take_official_names(real, tiny_vqvae, tiny_config, tmp_path):
    import h5py
    root, _ = real
    paths = dump_features(root, tmp_path / "features", tiny_config, jobs=1, progress=False, log=lambda *_: None)
    with h5py.File(paths[0], "r") as handle:
        names = []
        handle.visit(names.append)
    assert any(n.endswith("S002_0379088085") for n in names)
    result = CliRunner().invoke(main, ["encode", "--checkpoint", str(tiny_vqvae), "--dataset", str(root), "--split",
                                       "test", "--out", str(tmp_path / "units"), "--format", "txt", "--quiet"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "units" / "S002_0379088085.txt").is_file()
    assert len(list((tmp_path / "units").glob("*.txt"))) == len(Dataset(root).utterances("test"))


def test_submission_is_valid_with_official_names(real, submitted):
    root, lists = real
    for path in (submitted, submitted.with_name("submission.zip")):
        report = validate_submission(path, dataset=root, filelists=lists, progress=False)
        assert report.valid, report.problems
    test = submitted / "2019" / "english" / "test"
    assert (test / "S002_0379088085.txt").is_file()
    assert sorted(p.name for p in test.glob("*.wav"))[0].startswith("V001_")


def test_evaluate_finds_the_official_task_and_scores_every_folder(real, submitted, tmp_path):
    root, lists = real
    out = tmp_path / "evaluation"
    result = CliRunner().invoke(main, ["evaluate", str(submitted), "--dataset", str(root), "--filelists", str(lists),
                                       "--out", str(out), "--no-speech", "--jobs", "1", "--config", "tiny"])
    assert result.exit_code == 0, result.output
    assert "english: 21 ABX items, 2 contexts with triplets" in result.output
    assert "byCtxt_acSpkr.abx" in result.output and "no ABX task" not in result.output
    scores = json.loads((out / "scores.json").read_text())
    english = scores["2019"]["english"]
    assert english["scores"]["abx"] is not None and "abx_missing" not in english["scores"]
    folders = [p.name for p in (submitted / "2019" / "english").iterdir() if p.is_dir()]
    assert set(english["details_abx"]) == set(folders) and "test" in folders
    for per_distance in english["details_abx"].values():
        assert set(per_distance) == {"cosine", "KL", "levenshtein"}
    extras = scores["zs2020_extras"]["english"]
    assert extras["item_file"].endswith("2019/ABXTasks/byCtxt_acSpkr.abx")
    assert extras["abx"]["test"]["cosine"]["triplets"] == 108
    assert "warning" not in result.output.lower()


def test_evaluate_without_the_task_says_so_once(real, submitted, tmp_path):
    root, lists = real
    bare = tmp_path / "no_task"
    shutil.copytree(root, bare, ignore=shutil.ignore_patterns("ABXTasks"))
    out = tmp_path / "evaluation"
    result = CliRunner().invoke(main, ["evaluate", str(submitted), "--dataset", str(bare), "--filelists", str(lists),
                                       "--out", str(out), "--no-speech", "--jobs", "1", "--config", "tiny"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "no ABX task" in line]
    assert lines == [f"english: no ABX task: looked for {bare}/2019/ABXTasks/byCtxt_acSpkr.abx and "
                     f"{bare}/2019/english/abx/test.item"]
    english = json.loads((out / "scores.json").read_text())["2019"]["english"]
    assert english["scores"]["abx"] is None
    assert english["scores"]["abx_missing"] == lines[0].split(": ", 1)[1]
    assert english["scores"]["bitrate"] is not None
    assert "english: ABX n/a, bitrate" in result.output
