"""HDF5 feature dump: contents match the one log-mel implementation, every wav is there with
its attributes, up-to-date runs are skipped, specs never mix, bad audio gives one clear error
and leaves no file behind."""
from __future__ import annotations

import dataclasses
import math
import shutil

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from pipeline.contract.dataset import Dataset
from pipeline.contract.names import ALL_SPLITS
from pipeline.core.errors import UserError
from pipeline.features import (FeatureStore, MelMoments, dump_features, feature_spec, mel_statistics, open_feature_dir,
                               speaker_statistics, wav_to_logmel)
from pipeline.stages.features import features_command
from tests.fixtures_config import SPEC


@pytest.fixture()
def small_dataset(tiny_corpus, tmp_path):
    """A copy of a few tiny-corpus wavs (two unit speakers, one voice, two test files)."""
    ds = Dataset(tiny_corpus)
    picks = ds.utterances("train/unit")[:3] + ds.utterances("train/voice")[:1] + ds.utterances("test")[:2]
    root = tmp_path / "ds"
    for utt in picks:
        dest = root / "2019" / "english" / utt.split / utt.path.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(utt.path, dest)
    return root


def test_every_wav_is_dumped_with_its_attributes(tiny_features, tiny_corpus, tiny_config):
    ds = Dataset(tiny_corpus)
    expected = {u.key: u for s in ALL_SPLITS for u in ds.utterances(s, required=False)}
    with FeatureStore(tiny_features / "english.h5") as store:
        assert set(store.keys()) == set(expected)
        assert store.language == "english" and store.dataset_root == tiny_corpus.resolve()
        assert store.spec == feature_spec(tiny_config)
        assert set(store.keys("train/voice")) == {u.key for u in ds.utterances("train/voice")}
        for key in (store.keys("test")[0], store.keys("train/unit")[-1], store.keys("train/voice")[0]):
            utt = expected[key]
            attrs = store.attrs(key)
            n = utt.read().shape[0]
            assert attrs["num_samples"] == n and attrs["duration"] == pytest.approx(n / 16000)
            assert attrs["speaker"] == utt.speaker and attrs["split"] == utt.split
            assert (store.dataset_root / attrs["path"]).resolve() == utt.path.resolve()
            mel = store.get(key)
            assert mel.dtype == np.float32 and mel.shape == (80, math.ceil(n / 160))
            np.testing.assert_array_equal(mel, wav_to_logmel(utt.path, store.spec))


def test_parallel_dump_equals_serial_dump(small_dataset, tiny_config, tmp_path):
    serial = dump_features(small_dataset, tmp_path / "a", tiny_config, jobs=1, progress=False)[0]
    parallel = dump_features(small_dataset, tmp_path / "b", tiny_config, jobs=2, progress=False)[0]
    with FeatureStore(serial) as a, FeatureStore(parallel) as b:
        assert a.keys() == b.keys() and len(a) == 6
        for key in a.keys():
            np.testing.assert_array_equal(a.get(key), b.get(key))


def test_up_to_date_dump_is_skipped_and_changes_are_noticed(small_dataset, tiny_config, tmp_path):
    out = dump_features(small_dataset, tmp_path / "f", tiny_config, jobs=1, progress=False)[0]
    stamp = out.stat().st_mtime_ns
    dump_features(small_dataset, tmp_path / "f", tiny_config, jobs=1, progress=False)
    assert out.stat().st_mtime_ns == stamp
    dump_features(small_dataset, tmp_path / "f", tiny_config, jobs=1, force=True, progress=False)
    assert out.stat().st_mtime_ns != stamp
    stamp = out.stat().st_mtime_ns
    new = small_dataset / "2019" / "english" / "test" / "S999_0001.wav"
    shutil.copy(next((small_dataset / "2019" / "english" / "test").glob("*.wav")), new)
    dump_features(small_dataset, tmp_path / "f", tiny_config, jobs=1, progress=False)
    assert out.stat().st_mtime_ns != stamp
    with FeatureStore(out) as store:
        assert "test/S999_0001" in store


def test_mixed_feature_specs_are_refused(small_dataset, tiny_config, tmp_path):
    out = dump_features(small_dataset, tmp_path / "f", tiny_config, jobs=1, progress=False)[0]
    other_spec = dataclasses.replace(SPEC, n_mels=40)
    with pytest.raises(UserError, match="different feature spec.*n_mels 80 vs 40"):
        FeatureStore(out, spec=other_spec)
    # A second language dumped with another spec cannot join the same features folder.
    other = tiny_config.replace(["features.hop_length=200", "features.n_fft=1000"])
    dump_features(small_dataset, tmp_path / "g", other, jobs=1, progress=False)
    shutil.copy(tmp_path / "g" / "english.h5", tmp_path / "f" / "surprise.h5")
    with pytest.raises(UserError, match="surprise.h5.*different feature spec"):
        open_feature_dir(tmp_path / "f")
    with pytest.raises(UserError, match="different feature spec"):
        open_feature_dir(tmp_path / "g", spec=SPEC)


def test_corrupt_audio_is_one_clear_error_and_nothing_is_left(small_dataset, tiny_config, tmp_path):
    out_dir = tmp_path / "f"
    good = dump_features(small_dataset, out_dir, tiny_config, jobs=1, progress=False)[0]
    stamp = good.stat().st_mtime_ns
    bad = small_dataset / "2019" / "english" / "test" / "S998_0001.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    for jobs in (1, 2):
        with pytest.raises(UserError, match="S998_0001.wav"):
            dump_features(small_dataset, out_dir, tiny_config, jobs=jobs, progress=False)
        # The previous complete file is untouched and no temporary file is left beside it.
        assert [p.name for p in out_dir.iterdir() if not p.name.endswith((".lock", ".stamp.json"))] == ["english.h5"]
        assert good.stat().st_mtime_ns == stamp
        with FeatureStore(good) as store:
            assert "test/S998_0001" not in store and len(store) == 6


def test_unreadable_features_file_is_refused(tmp_path):
    path = tmp_path / "english.h5"
    path.write_bytes(b"not hdf5")
    with pytest.raises(UserError, match="unreadable features file"):
        FeatureStore(path)
    with h5py.File(tmp_path / "other.h5", "w") as h5:
        h5.attrs["format"] = "something else"
    with pytest.raises(UserError, match="unreadable features file"):
        FeatureStore(tmp_path / "other.h5")


def test_command_writes_and_reports(small_dataset, tmp_path):
    runner = CliRunner()
    result = runner.invoke(features_command, ["--dataset", str(small_dataset), "--out", str(tmp_path / "f"),
                                              "--config", "tiny", "--jobs", "1"])
    assert result.exit_code == 0, result.output
    assert "english.h5: 6 utterances" in result.output
    result = runner.invoke(features_command, ["--dataset", str(tmp_path / "missing"), "--out", str(tmp_path / "g")])
    assert result.exit_code == 1 and result.output.strip().startswith("Error:")
    assert len(result.output.strip().splitlines()) == 1
    result = runner.invoke(features_command, ["--help"])
    for option in ("--dataset", "--out", "--config", "--language", "--jobs", "--force"):
        assert option in result.output


def test_speaker_statistics_pool_each_speakers_frames():
    rng = np.random.default_rng(0)
    mels = [(rng.normal(size=(80, n)) * scale + offset).astype(np.float32)
            for n, scale, offset in ((30, 1.0, -4.0), (17, 2.0, 1.0), (45, 0.5, -1.0))]
    stats = speaker_statistics(mels, ["A", "B", "A"])
    pooled = np.concatenate([mels[0], mels[2]], 1).astype(np.float64)
    assert set(stats) == {"A", "B"}
    assert np.allclose(stats["A"][0], pooled.mean(1), atol=1e-5)
    assert np.allclose(stats["A"][1], pooled.std(1), atol=1e-5)
    # the one-pass moments agree with the two-pass training statistics, in any order of adding
    assert np.allclose(stats["B"][1], mel_statistics([mels[1]])[1], atol=1e-5)
    a, b = MelMoments.of(mels[0]) + MelMoments.of(mels[2]), MelMoments.of(mels[2]) + MelMoments.of(mels[0])
    assert np.allclose(a.mean_std()[0], b.mean_std()[0]) and a.frames == 75
    with pytest.raises(ValueError):
        MelMoments().mean_std()
