"""Encoding API and command: exact unit counts for every input length, unseen speakers,
decode to any known speaker, one-line errors for unknown speakers and bad audio."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from models.augment import warp_frequency
from models.vqvae2 import tract_factors
from pipeline.contract.dataset import Dataset
from pipeline.contract.unitfile import read_units
from pipeline.core.errors import UserError
from pipeline.features import FeatureStore, logmel, wav_to_logmel
from pipeline.stages.encode import encode_command
from pipeline.systems.vqvae import load_vqvae


@pytest.fixture(scope="module")
def vq(tiny_vqvae):
    return load_vqvae(tiny_vqvae)


@pytest.mark.parametrize("samples", [1, 100, 159, 160, 161, 320, 480, 641, 1408, 16000])
def test_units_have_exact_lengths_for_every_input_length(vq, samples):
    audio = np.random.default_rng(samples).normal(0, 0.1, samples).astype(np.float32)
    units = vq.encode_audio(audio)
    frames = math.ceil(samples / 160)
    tb, tt = math.ceil(frames / 2), math.ceil(frames / 4)
    d, dt = vq.model.cfg.bottom_dim, vq.model.cfg.top_dim
    assert units.num_frames == frames
    assert units.bottom_ids.shape == (tb,) and units.top_ids.shape == (tt,)
    assert units.bottom_vectors.shape == units.prequant.shape == (tb, d)
    assert units.top_vectors.shape == (tb, dt)
    mel = vq.decode(units.top_ids, units.bottom_ids, "V001", units.num_frames)
    assert mel.shape == (80, frames) and np.isfinite(mel).all()


def test_vectors_are_the_codebook_rows_of_the_ids(vq, tiny_corpus):
    utt = Dataset(tiny_corpus).utterances("test")[0]
    units = vq.encode_wav(utt.path)
    bottom, top = vq.codebooks["bottom"], vq.codebooks["top"]
    np.testing.assert_array_equal(units.bottom_vectors, bottom[units.bottom_ids])
    np.testing.assert_array_equal(units.top_vectors, top[np.repeat(units.top_ids, 2)[: len(units.bottom_ids)]])
    # Equal codes give byte-identical rows, so the unit file's distinct lines are the codes used.
    assert len({r.tobytes() for r in units.bottom_vectors}) == len(set(units.bottom_ids.tolist()))


def test_encoding_audio_equals_encoding_its_stored_features(vq, tiny_features, tiny_corpus):
    with FeatureStore(tiny_features / "english.h5") as store:
        key = store.keys("test")[1]
        from_mel = vq.encode_mel(store.get(key))
    from_wav = vq.encode_wav(Dataset(tiny_corpus).find(key).path)
    np.testing.assert_array_equal(from_mel.bottom_ids, from_wav.bottom_ids)
    np.testing.assert_array_equal(from_mel.prequant, from_wav.prequant)


def test_unseen_speakers_encode_and_decode_to_every_known_voice(vq, tiny_corpus):
    ds = Dataset(tiny_corpus)
    line = ds.synthesis()[0]
    assert line.source.speaker not in vq.speakers           # test speakers are unseen
    units = vq.encode_wav(line.source.path)
    mels = {v: vq.decode(units.top_ids, units.bottom_ids, v, units.num_frames) for v in ("V001", "V002")}
    assert not np.allclose(mels["V001"], mels["V002"])
    # The decoded mel follows the source in time: closer to it than to the time-reversed source.
    target = wav_to_logmel(line.source.path, vq.spec)
    err = np.abs(mels[line.voice] - target).mean()
    reversed_err = np.abs(mels[line.voice] - target[:, ::-1]).mean()
    assert err < reversed_err and units.num_frames == target.shape[1]


def test_unknown_speaker_and_bad_inputs_are_clear_errors(vq):
    units = vq.encode_audio(np.zeros(800, dtype=np.float32))
    with pytest.raises(UserError, match="unknown speaker 'S999'.*V001, V002"):
        vq.decode(units.top_ids, units.bottom_ids, "S999", units.num_frames)
    with pytest.raises(UserError, match="need"):
        vq.decode(units.top_ids, units.bottom_ids, "V001", units.num_frames + 4)
    with pytest.raises(UserError, match="code ids"):
        vq.decode(units.top_ids, units.bottom_ids + 10_000, "V001", units.num_frames)
    with pytest.raises(UserError, match="empty"):
        vq.encode_audio(np.zeros(0, dtype=np.float32))
    with pytest.raises(UserError, match="NaN"):
        vq.encode_audio(np.full(400, np.nan, dtype=np.float32))


def test_load_refuses_a_non_vqvae_checkpoint(tmp_path):
    bogus = tmp_path / "checkpoint.pt"
    bogus.write_bytes(b"garbage")
    with pytest.raises(UserError, match="not a readable checkpoint"):
        load_vqvae(bogus)


def test_encode_command_writes_one_unpadded_file_per_test_utterance(tiny_vqvae, tiny_corpus, tmp_path, vq):
    runner = CliRunner()
    test_utts = Dataset(tiny_corpus).utterances("test")
    out = tmp_path / "npz"
    result = runner.invoke(encode_command, ["--checkpoint", str(tiny_vqvae), "--dataset", str(tiny_corpus),
                                            "--split", "test", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.stem for p in out.glob("*.npz")) == sorted(u.utt_id for u in test_utts)
    utt = test_utts[0]
    data = np.load(out / f"{utt.utt_id}.npz")
    frames = math.ceil(utt.read().shape[0] / 160)
    assert int(data["num_frames"]) == frames and data["bottom_vectors"].shape[0] == math.ceil(frames / 2)
    assert {"bottom_ids", "top_ids", "bottom_vectors", "top_vectors", "prequant"} <= set(data.files)
    # Second run: everything is up to date.
    result = runner.invoke(encode_command, ["--checkpoint", str(tiny_vqvae), "--dataset", str(tiny_corpus),
                                            "--out", str(out)])
    assert f"0 encoded, {len(test_utts)} up to date" in result.output

    txt = tmp_path / "txt"
    result = runner.invoke(encode_command, ["--checkpoint", str(tiny_vqvae), "--wav", str(utt.path),
                                            "--out", str(txt), "--format", "txt"])
    assert result.exit_code == 0, result.output
    rows = read_units(txt / f"{utt.utt_id}.txt")
    np.testing.assert_allclose(rows, vq.encode_wav(utt.path).bottom_vectors, rtol=1e-6, atol=1e-7)


def test_encode_command_errors_are_one_line_and_leave_nothing(tiny_vqvae, tmp_path):
    runner = CliRunner()
    bad = tmp_path / "in" / "S001_0001.wav"
    bad.parent.mkdir()
    bad.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt junk")
    out = tmp_path / "out"
    result = runner.invoke(encode_command, ["--checkpoint", str(tiny_vqvae), "--folder", str(bad.parent),
                                            "--out", str(out)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].startswith("Error:") and "S001_0001.wav" in result.output
    assert not out.exists() or not any(out.iterdir())
    result = runner.invoke(encode_command, ["--checkpoint", str(tiny_vqvae), "--out", str(out)])
    assert result.exit_code == 1 and "exactly one of" in result.output
    result = runner.invoke(encode_command, ["--checkpoint", str(tmp_path / "none.pt"), "--wav", str(bad),
                                            "--out", str(out)])
    assert result.exit_code == 1 and "no such checkpoint" in result.output


def test_tract_search_encodes_the_stretch_that_fits_the_codebook_best(vq, tiny_features):
    assert vq.normalize_tract(np.zeros((80, 3), np.float32), 0.0)[1] == 1.0     # 0: no search
    spec = vq.spec
    with FeatureStore(tiny_features / "english.h5") as store:
        mel = store.get(store.keys("test")[1])
    errors = vq.model.tract_fit(torch.from_numpy(mel)[None], tract_factors(0.3), spec.f_min, spec.f_max)
    warped, factor = vq.normalize_tract(mel, 0.3)
    assert factor == pytest.approx(float(tract_factors(0.3)[errors.argmin()]))
    expected = warp_frequency(torch.from_numpy(mel)[None], torch.tensor([factor], dtype=torch.float64),
                              spec.f_min, spec.f_max)[0].numpy()
    np.testing.assert_allclose(warped, expected, atol=1e-6)
    # asked for, the units are those of the chosen stretch, the frame count the source's
    units, reference = vq.encode_mels([mel], tract_search=0.3)[0], vq.encode_mel(warped)
    np.testing.assert_array_equal(units.bottom_ids, reference.bottom_ids)
    assert units.num_frames == mel.shape[1]
    # a conversion source is: the converter's units come from encode_source with the run's setting
    audio = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)
    np.testing.assert_array_equal(vq.encode_source(audio, 0.3).bottom_ids,
                                  vq.encode_mels([logmel(audio, spec)], tract_search=0.3)[0].bottom_ids)
    np.testing.assert_array_equal(vq.encode_source(audio).bottom_ids, vq.encode_audio(audio).bottom_ids)


def _prequant(key, units):
    return key, units.prequant


def test_a_speakers_files_are_encoded_with_that_speakers_statistics(vq, tiny_vqvae, tiny_corpus):
    from pipeline.features import speaker_statistics
    from pipeline.systems.encoding import encode_wavs
    assert vq.speaker_norm      # the tiny preset, like the demo, standardises each speaker
    utts = Dataset(tiny_corpus).utterances("test")
    speakers = sorted({u.speaker for u in utts})[:2]
    utts = [u for u in utts if u.speaker in speakers]
    assert len(utts) > len(speakers)
    got = dict(encode_wavs(tiny_vqvae, [(u.key, u.path) for u in utts], _prequant, jobs=2, progress=False))
    mels = [wav_to_logmel(u.path, vq.spec) for u in utts]
    stats = speaker_statistics(mels, [u.speaker for u in utts])
    for utt, units in zip(utts, vq.encode_mels(mels, stats=[stats[u.speaker] for u in utts])):
        np.testing.assert_allclose(got[utt.key], units.prequant, atol=1e-4)
    # a file encoded on its own is standardised by its own statistics, not its speaker's
    alone = encode_wavs(tiny_vqvae, [(utts[0].key, utts[0].path)], _prequant, progress=False)[0][1]
    assert np.abs(alone - got[utts[0].key]).max() > 1e-2
    # statistics the caller already has are used as given (zs2020 submit computes them once)
    given = dict(encode_wavs(tiny_vqvae, [(u.key, u.path) for u in utts], _prequant, progress=False,
                             stats=[stats[u.speaker] for u in utts]))
    for utt in utts:
        np.testing.assert_allclose(given[utt.key], got[utt.key], atol=1e-4)
    other = dict(encode_wavs(tiny_vqvae, [(u.key, u.path) for u in utts], _prequant, progress=False,
                             stats=[stats[speakers[0]]] * len(utts)))
    moved = [u for u in utts if u.speaker != speakers[0]]
    assert moved and all(np.abs(other[u.key] - got[u.key]).max() > 1e-2 for u in moved)
    with pytest.raises(ValueError, match="2 speaker statistics for"):
        encode_wavs(tiny_vqvae, [(u.key, u.path) for u in utts], _prequant, progress=False,
                    stats=[stats[speakers[0]]] * 2)
