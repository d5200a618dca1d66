"""Conversion: Griffin-Lim inversion on real corpus audio, then the trained tiny run end to end
(batch conversion of synthesis.txt, single files, synthesis from units, unknown voices, CLI)."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from pipeline.contract.dataset import Dataset
from pipeline.core.errors import UserError
from pipeline.features import logmel
from tests.fixtures_config import SPEC


@pytest.fixture(scope="module")
def converter(tiny_run):
    from pipeline.systems.converter import Converter
    return Converter(tiny_run / "vqvae" / "checkpoint.pt", tiny_run / "melgan" / "checkpoint.pt")


def test_griffinlim_inverts_a_real_mel_with_exact_length(tiny_corpus):
    from pipeline.systems.converter import GriffinLimVocoder
    audio = Dataset(tiny_corpus).utterances("train/voice")[0].read()
    mel = logmel(audio, SPEC)
    vocoder = GriffinLimVocoder(SPEC)
    wav = vocoder(torch.from_numpy(mel))
    assert wav.shape == (mel.shape[1] * SPEC.hop_length,)
    # frames line up with the source: shifting by half a hop makes the match clearly worse
    error = np.abs(logmel(wav, SPEC) - mel)[:, 2:-2].mean()
    shifted = np.abs(logmel(np.roll(wav, SPEC.hop_length // 2), SPEC) - mel)[:, 2:-2].mean()
    noise = np.abs(logmel(np.random.default_rng(0).standard_normal(len(wav)).astype(np.float32), SPEC) - mel).mean()
    assert error < 0.1 and error < shifted / 2 and error < noise / 10
    for frames in (1, 2, 5):
        assert vocoder(torch.from_numpy(mel[:, :frames])).shape == (frames * SPEC.hop_length,)


def test_convert_synthesis_writes_one_wav_per_line(converter, tiny_corpus, tmp_path):
    from pipeline.systems.converter import convert_synthesis
    dataset = Dataset(tiny_corpus)
    lines = dataset.synthesis()
    paths = convert_synthesis(dataset, tmp_path, converter, progress=False)
    assert sorted(p.name for p in tmp_path.glob("*.wav")) == sorted(line.output_name for line in lines)
    assert {line.voice for line in lines} == {"V001", "V002"}
    for line, path in zip(lines, paths):
        assert path.name == line.output_name
        info = sf.info(str(path))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert info.frames == sf.info(str(line.source.path)).frames
        audio, _ = sf.read(str(path))
        assert np.isfinite(audio).all() and np.sqrt(np.mean(audio ** 2)) > 1e-3
    # up-to-date outputs are skipped on request, rewritten otherwise
    stamps = [p.stat().st_mtime_ns for p in paths]
    convert_synthesis(dataset, tmp_path, converter, progress=False, skip_up_to_date=True)
    assert [p.stat().st_mtime_ns for p in paths] == stamps


def test_convert_keeps_length_and_normalises_loudness(converter, tiny_corpus):
    audio = Dataset(tiny_corpus).utterances("test")[0].read()
    for n in (len(audio), 161, 1601):
        out = converter.convert(audio[:n], "V002")
        assert out.shape == (n,) and out.dtype == np.float32
    out = converter.convert(audio, "V001")
    rms_db = 20 * np.log10(np.sqrt(np.mean(out ** 2)))
    assert rms_db == pytest.approx(-23.0, abs=0.5) or np.abs(out).max() == pytest.approx(0.99, abs=1e-3)


def test_synthesize_from_units(converter, tiny_corpus):
    audio = Dataset(tiny_corpus).utterances("test")[0].read()
    units = converter.vqvae.encode_audio(audio)
    wav = converter.synthesize(units.top_ids, units.bottom_ids, "V001", units.num_frames)
    assert wav.shape == (units.num_frames * SPEC.hop_length,)
    other = converter.synthesize(units.top_ids, units.bottom_ids, "V002", units.num_frames)
    assert not np.allclose(wav, other)


def test_unknown_target_voice_is_one_clear_error(converter, tiny_run):
    from pipeline.systems.converter import Converter
    # the vocoder's own voices are named first: they are the intended targets
    with pytest.raises(UserError, match="unknown target voice 'V999'.*VQ-VAE.*V001, V002"):
        converter.convert(np.ones(800, np.float32) * 0.1, "V999")
    assert "S001" in converter.voices       # one vocoder renders every voice the VQ-VAE knows
    with pytest.raises(UserError, match="needs a MelGAN checkpoint"):
        Converter(tiny_run / "vqvae" / "checkpoint.pt", None)


def test_cli_single_file_griffinlim_and_errors(tiny_run, tiny_corpus, tmp_path):
    from pipeline.cli import main
    runner = CliRunner()
    help_text = runner.invoke(main, ["convert", "--help"]).output
    for option in ("--run", "--vqvae", "--melgan", "--vocoder", "--source", "--target", "--dataset",
                   "--language", "--out", "--device", "--threads", "--force", "--quiet"):
        assert option in help_text
    source = Dataset(tiny_corpus).utterances("test")[0].path
    for vocoder in ("melgan", "griffinlim"):
        out = tmp_path / f"{vocoder}.wav"
        result = runner.invoke(main, ["convert", "--run", str(tiny_run), "--vocoder", vocoder, "--source", str(source),
                                      "--target", "V002", "--out", str(out)])
        assert result.exit_code == 0, result.output
        assert sf.info(str(out)).frames == sf.info(str(source)).frames
    bad = tmp_path / "bad.wav"
    result = runner.invoke(main, ["convert", "--run", str(tiny_run), "--source", str(source), "--target", "V999",
                                  "--out", str(bad)])
    assert result.exit_code == 1 and result.output.startswith("Error: unknown target voice")
    assert result.output.count("\n") == 1 and not bad.exists()
    result = runner.invoke(main, ["convert", "--run", str(tiny_run), "--source", str(source), "--dataset",
                                  str(tiny_corpus), "--out", str(bad)])
    assert result.exit_code == 1 and "exactly one of" in result.output
    result = runner.invoke(main, ["convert", "--run", str(tmp_path), "--source", str(source), "--target", "V001",
                                  "--out", str(bad)])
    assert result.exit_code == 1 and "no such checkpoint" in result.output and not bad.exists()


def test_cli_dataset_mode(tiny_run, tiny_corpus, tmp_path):
    from pipeline.cli import main
    out = tmp_path / "converted"
    result = CliRunner().invoke(main, ["convert", "--run", str(tiny_run), "--dataset", str(tiny_corpus),
                                       "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.glob("*.wav")) == sorted(l.output_name for l in Dataset(tiny_corpus).synthesis())


def _tree(folder):
    return {p: p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


def test_conversion_settings_are_overrides_of_the_run_without_retraining(tiny_run, tiny_corpus, tmp_path):
    from pipeline.cli import main
    from pipeline.stages.options import run_config
    runner = CliRunner()
    assert run_config(tiny_run, None).conversion.tract_search == 0.0        # what the tiny run stored
    run_files = _tree(tiny_run)
    source = Dataset(tiny_corpus).utterances("test")[0].path
    outputs = {}
    for name, extra in (("stored", []), ("off", ["conversion.tract_search=0"]),
                        ("search", ["conversion.tract_search=0.3"])):
        out = tmp_path / f"{name}.wav"
        result = runner.invoke(main, ["convert", "--run", str(tiny_run), "--source", str(source), "--target", "V001",
                                      "--out", str(out), *extra])
        assert result.exit_code == 0, result.output
        assert "train" not in result.output and "resuming" not in result.output
        outputs[name] = sf.read(str(out))[0]
    assert np.array_equal(outputs["stored"], outputs["off"])
    assert outputs["search"].shape == outputs["off"].shape and not np.array_equal(outputs["search"], outputs["off"])
    assert _tree(tiny_run) == run_files         # no training stage ran: the run folder is as it was
    # a converted folder is redone when the conversion settings change, and only then
    folder = tmp_path / "converted"
    for extra, redone in (([], True), ([], False), (["conversion.tract_search=0.3"], True)):
        before = _tree(folder) if folder.exists() else {}
        result = runner.invoke(main, ["convert", "--run", str(tiny_run), "--dataset", str(tiny_corpus),
                                      "--out", str(folder), "--quiet", *extra])
        assert result.exit_code == 0, result.output
        wavs = {p: t for p, t in _tree(folder).items() if p.suffix == ".wav"}
        assert all((before.get(p) != t) is redone for p, t in wavs.items())
    result = runner.invoke(main, ["convert", "--run", str(tiny_run), "--source", str(source), "--target", "V001",
                                  "--out", str(tmp_path / "x.wav"), "conversion.tract_search=2"])
    assert result.exit_code == 1 and "conversion.tract_search" in result.output and result.output.count("\n") == 1


def test_synthesis_sources_are_encoded_with_their_speakers_statistics(converter, tiny_corpus, tmp_path):
    from pipeline.features import speaker_statistics, wav_to_logmel
    from pipeline.systems.converter import convert_synthesis, source_speaker_stats
    dataset = Dataset(tiny_corpus)
    lines = dataset.synthesis()
    assert converter.speaker_norm
    stats = source_speaker_stats(dataset, lines, converter.spec, progress=False)
    assert set(stats) == {line.source.speaker for line in lines}
    line = lines[0]
    own = sorted({u.path for u in dataset.utterances("test") if u.speaker == line.source.speaker} | {line.source.path})
    expected = speaker_statistics([wav_to_logmel(p, converter.spec) for p in own], [line.source.speaker] * len(own))
    np.testing.assert_allclose(stats[line.source.speaker][0], expected[line.source.speaker][0], atol=1e-5)
    convert_synthesis(dataset, tmp_path, converter, progress=False, keep_stamps=False)
    written, _ = sf.read(str(tmp_path / line.output_name), dtype="float32")
    audio = line.source.read()
    with_stats = converter.convert(audio, f"{line.voice}", stats=stats[line.source.speaker])
    assert np.abs(written - with_stats).max() < 1e-4      # the 16-bit file of the same conversion
    assert np.abs(converter.convert(audio, f"{line.voice}") - with_stats).max() > 1e-3   # not its own statistics
    # statistics given by the caller (zs2020 submit, which has them from the unit files) are the ones used
    given = {speaker: (mean + 0.5, std) for speaker, (mean, std) in stats.items()}
    convert_synthesis(dataset, tmp_path / "given", converter, progress=False, keep_stamps=False, speaker_stats=given)
    written, _ = sf.read(str(tmp_path / "given" / line.output_name), dtype="float32")
    assert np.abs(written - converter.convert(audio, f"{line.voice}", stats=given[line.source.speaker])).max() < 1e-4
    assert np.abs(written - with_stats).max() > 1e-3
