"""The dataset reader on a hand-made fake of the real ZeroSpeech 2020 layout (english and
surprise, none of the demo extras), including one-line errors for broken datasets."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pipeline.contract.dataset import Dataset, read_filelist
from pipeline.core.errors import UserError

RATE = 16000


def _wav(path: Path, seconds: float = 0.3, rate: int = RATE, freq: float = 220.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), rate, subtype="PCM_16")
    return path


@pytest.fixture
def real_layout(tmp_path):
    """english: 3 unit speakers, 2 voices, parallel data, test, synthesis.txt.
    surprise: no parallel data, a single target voice."""
    root = tmp_path / "zerospeech2020"
    en = root / "2019" / "english"
    for name in ("S015_0000001", "S015_0000002", "S024_0000003", "S002_0000004"):
        _wav(en / "train" / "unit" / f"{name}.wav")
    for name in ("V001_0000005", "V002_0000006"):
        _wav(en / "train" / "voice" / f"{name}.wav")
    _wav(en / "train" / "parallel" / "source" / "S015_0000007.wav")
    _wav(en / "train" / "parallel" / "voice" / "V001_0000007.wav")
    for name in ("S002_0379088085", "S011_1220140001", "S011_0000099"):
        _wav(en / "test" / f"{name}.wav", seconds=1.0)
    (en / "synthesis.txt").write_text("test/S002_0379088085 V002\ntest/S011_1220140001 V001\n\n")
    sp = root / "2019" / "surprise"
    for name in ("S100_0001", "S101_0002"):
        _wav(sp / "train" / "unit" / f"{name}.wav")
    _wav(sp / "train" / "voice" / "V001_0003.wav")
    _wav(sp / "test" / "S102_0004.wav")
    (sp / "synthesis.txt").write_text("test/S102_0004 V001\n")
    return root


def test_reads_english_and_surprise_without_extras(real_layout):
    assert Dataset.languages(real_layout) == ["english", "surprise"]
    en = Dataset(real_layout, "english")
    assert [u.utt_id for u in en.utterances("train/unit")] == ["S002_0000004", "S015_0000001",
                                                             "S015_0000002", "S024_0000003"]
    assert en.speaker_ids() == {"S002": 0, "S015": 1, "S024": 2, "V001": 3, "V002": 4}
    assert en.target_voices() == ["V001", "V002"]
    assert len(en.train_utterances()) == 8
    lines = en.synthesis()
    assert [(line.source.key, line.voice, line.output_name) for line in lines] == [
        ("test/S002_0379088085", "V002", "V002_0379088085.wav"),
        ("test/S011_1220140001", "V001", "V001_1220140001.wav")]
    utt = lines[0].source
    assert utt.speaker == "S002" and utt.duration() == pytest.approx(1.0)
    assert utt.read().dtype == np.float32 and utt.read().shape == (RATE,)
    # no demo extras: every accessor says "absent"
    assert en.alignment(utt) is None and not en.has_alignments()
    assert en.transcript(utt) is None and en.transcripts == {}
    assert en.reference(lines[0]) is None
    assert en.item_file("excerpt") is None and en.item_file("long") is None
    assert all(en.filelist(kind) is None for kind in ("required", "embedding", "bitrate"))

    sp = Dataset(real_layout, "surprise")
    assert sp.target_voices() == ["V001"]
    assert not sp.has_split("train/parallel/source")
    assert sp.utterances("train/parallel/source", required=False) == []
    assert [line.output_name for line in sp.synthesis()] == ["V001_0004.wav"]


def test_official_task_file_and_lists_are_found(real_layout, tmp_path):
    tasks = real_layout / "2019" / "ABXTasks"
    tasks.mkdir()
    (tasks / "english.item").write_text("#file onset offset #phone prev-phone next-phone speaker\n")
    assert Dataset(real_layout, "english").item_file() == tasks / "english.item"
    assert Dataset(real_layout, "english").item_file("long") is None
    lists = tmp_path / "share" / "2019" / "english"
    lists.mkdir(parents=True)
    (lists / "bitrate_filelist.txt").write_text("S011_4019527684.txt 4.883875\n")
    (lists / "required_filelist.txt").write_text("english/test/S002_0006942614.txt\nenglish/test/V002_1.wav\n")
    en = Dataset(real_layout, "english")
    assert read_filelist(en.filelist("bitrate", lists)) == [("S011_4019527684.txt", 4.883875)]
    assert read_filelist(en.filelist("required", lists)) == [("S002_0006942614.txt", None), ("V002_1.wav", None)]
    # The official package's share/2019 folder (one sub-folder per language) works as well.
    assert read_filelist(en.filelist("bitrate", lists.parent)) == [("S011_4019527684.txt", 4.883875)]
    with pytest.raises(UserError, match="embedding_filelist"):
        en.filelist("embedding", lists)


def _one_line(exc: UserError) -> str:
    message = exc.format_message()
    assert "\n" not in message
    return message


def test_missing_dataset_or_language_folder(tmp_path, real_layout):
    with pytest.raises(UserError) as err:
        Dataset(tmp_path / "nowhere")
    assert "does not exist" in _one_line(err.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError) as err:
        Dataset(empty, "english")
    assert "2019/english" in _one_line(err.value)
    with pytest.raises(UserError, match="unknown language"):
        Dataset(real_layout, "klingon")


def test_missing_or_empty_split(real_layout):
    en = Dataset(real_layout, "english")
    for wav in (real_layout / "2019" / "english" / "train" / "unit").glob("*.wav"):
        wav.unlink()
    with pytest.raises(UserError) as err:
        en.utterances("train/unit")
    assert "has no .wav files" in _one_line(err.value)
    sp = Dataset(real_layout, "surprise")
    with pytest.raises(UserError) as err:
        sp.utterances("train/parallel/voice")
    assert "does not exist" in _one_line(err.value)
    with pytest.raises(UserError, match="unknown split"):
        en.utterances("dev")


def test_unreadable_wrong_rate_and_empty_wavs(real_layout):
    test_dir = real_layout / "2019" / "english" / "test"
    (test_dir / "S011_0000099.wav").write_bytes(b"RIFF\x00\x00garbage, not a wave file")
    _wav(test_dir / "S011_0000098.wav", rate=22050)
    sf.write(str(test_dir / "S011_0000097.wav"), np.zeros(0, np.float32), RATE, subtype="PCM_16")
    en = Dataset(real_layout, "english")
    with pytest.raises(UserError) as err:
        en.find("test/S011_0000099").read()
    assert "S011_0000099.wav" in _one_line(err.value) and "not a readable audio file" in err.value.message
    with pytest.raises(UserError) as err:
        en.find("test/S011_0000098").read()
    assert "sample rate is 22050 Hz" in _one_line(err.value)
    with pytest.raises(UserError) as err:
        en.find("test/S011_0000097").read()
    assert "empty" in _one_line(err.value)


def test_bad_synthesis_file(real_layout):
    en_dir = real_layout / "2019" / "english"
    (en_dir / "synthesis.txt").write_text("test/S002_0379088085\n")
    with pytest.raises(UserError) as err:
        Dataset(real_layout, "english").synthesis()
    assert "synthesis.txt:1" in _one_line(err.value)
    (en_dir / "synthesis.txt").write_text("test/S999_0000001 V001\n")
    with pytest.raises(UserError, match="no utterance 'test/S999_0000001'"):
        Dataset(real_layout, "english").synthesis()
    (en_dir / "synthesis.txt").unlink()
    with pytest.raises(UserError, match="synthesis.txt is missing"):
        Dataset(real_layout, "english").synthesis()
