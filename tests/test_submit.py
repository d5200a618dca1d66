"""The submission writer on a trained tiny run: its folder and zip pass the strict validator,
unit files have one line per 20 ms of each test wav, wavs match synthesis.txt, metadata holds
the checkpoints' real settings, and an up-to-date submission is skipped."""
from __future__ import annotations

import math
import os
import zipfile

import numpy as np
import pytest
import soundfile as sf
import yaml
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.contract.dataset import Dataset
from pipeline.contract.filelists import find_filelists
from pipeline.contract.unitfile import read_units
from pipeline.core.checkpoint import load_checkpoint
from pipeline.core.errors import UserError
from pipeline.core.stamp import stamp_path
from pipeline.stages.submit import make_submission as write_submission
from submission.validator import validate_submission

pytestmark = pytest.mark.slow     # needs the trained tiny run (shared session fixture)


@pytest.fixture(scope="module")
def written(tiny_run, tiny_corpus, tiny_config):
    out = tiny_run / "submission"
    result = write_submission(tiny_corpus, tiny_run, out, tiny_config, progress=False)
    return result


def test_folder_and_zip_pass_the_validator(written, tiny_corpus):
    assert written.rebuilt and written.zipped
    assert written.zip == written.folder.with_name("submission.zip")
    for path in (written.folder, written.zip):
        report = validate_submission(path, dataset=tiny_corpus)
        assert report.valid, report.render()
        assert set(report.checked["english"]) == {"test", "auxiliary_embedding1", "auxiliary_embedding2"}
    # the demo corpus has no surprise language: an empty folder keeps the official layout
    assert (written.folder / "2019/surprise").is_dir() and not os.listdir(written.folder / "2019/surprise")


def test_unit_files_have_one_line_per_20_ms(written, tiny_corpus, tiny_vqvae):
    dataset = Dataset(tiny_corpus)
    codebook = load_checkpoint(tiny_vqvae)["models"]["vqvae"]
    bottom_dim = next(v.shape[1] for k, v in codebook.items() if k.endswith("quant_bottom.embed"))
    tests = dataset.utterances("test")
    assert written.counts["english"]["units"] == len(tests)
    for utt in tests:
        expected = math.ceil(round(utt.duration() / 0.02, 6))
        units = read_units(written.folder / "2019/english/test" / f"{utt.utt_id}.txt")
        assert units.shape == (expected, bottom_dim), utt.utt_id
        for aux in ("auxiliary_embedding1", "auxiliary_embedding2"):
            assert read_units(written.folder / "2019/english" / aux / f"{utt.utt_id}.txt").shape[0] == expected


def test_unit_rows_are_bottom_code_vectors(written, tiny_vqvae):
    state = load_checkpoint(tiny_vqvae)["models"]["vqvae"]
    embed = next(v for k, v in state.items() if k.endswith("quant_bottom.embed")).numpy()
    units = read_units(next((written.folder / "2019/english/test").glob("*.txt")))
    # every row is (to the 8 printed digits) one of the codebook's vectors
    distance = np.abs(units[:, None, :] - embed[None, :, :].astype(np.float64)).max(-1).min(-1)
    assert distance.max() < 1e-6


def test_one_wav_per_synthesis_line(written, tiny_corpus):
    dataset = Dataset(tiny_corpus)
    lines = dataset.synthesis()
    wavs = sorted(p.name for p in (written.folder / "2019/english/test").glob("*.wav"))
    assert wavs == sorted(line.output_name for line in lines)
    for line in lines:
        info = sf.info(written.folder / "2019/english/test" / line.output_name)
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert info.frames == sf.info(line.source.path).frames


def test_metadata_holds_the_real_settings(written, tiny_vqvae, tiny_melgan, tiny_config, tiny_corpus):
    top = yaml.safe_load((written.folder / "metadata.yaml").read_text())
    assert top == {"author": tiny_config.submission.author,
                   "affiliation": tiny_config.submission.affiliation, "open source": True}
    track = yaml.safe_load((written.folder / "2019/metadata.yaml").read_text())
    vq, mg = load_checkpoint(tiny_vqvae), load_checkpoint(tiny_melgan)
    assert track["abx distance"] == "dtw_cosine"
    assert track["hyperparameters"]["vqvae"]["settings"] == vq["config"]["vqvae"]
    assert track["hyperparameters"]["vqvae"]["steps_trained"] == vq["step"]
    assert track["hyperparameters"]["vocoder"]["settings"] == mg["config"]["melgan"]
    assert track["using external data"] is False
    dataset = Dataset(tiny_corpus)
    has_parallel = dataset.has_split("train/parallel/source") or dataset.has_split("train/parallel/voice")
    assert track["using parallel train"] is has_parallel
    assert set(track) >= {"auxiliary1 description", "auxiliary2 description"}
    assert (written.folder / "2019/code/pipeline/cli.py").is_file()
    assert (written.folder / "2019/code/submission/writer.py").is_file()
    assert not any(p.suffix == ".pt" for p in (written.folder / "2019/code").rglob("*"))


def test_zip_entries_are_at_the_root(written):
    with zipfile.ZipFile(written.zip) as archive:
        names = archive.namelist()
        assert "metadata.yaml" in names and "2019/surprise/" in names
        assert all(not n.startswith(("/", "submission/")) for n in names)
        assert archive.comment


def test_up_to_date_submission_is_skipped(written, tiny_run, tiny_corpus, tiny_config):
    before = (written.folder.stat().st_mtime_ns, written.zip.stat().st_mtime_ns)
    again = write_submission(tiny_corpus, tiny_run, written.folder, tiny_config, progress=False)
    assert not again.rebuilt and not again.zipped
    assert (written.folder.stat().st_mtime_ns, written.zip.stat().st_mtime_ns) == before
    # a deleted zip is rewritten alone, the folder stays
    written.zip.unlink()
    rezip = write_submission(tiny_corpus, tiny_run, written.folder, tiny_config, progress=False)
    assert not rezip.rebuilt and rezip.zipped and written.zip.is_file()
    assert stamp_path(written.folder).is_file()


def test_config_change_rebuilds_and_closed_source_has_no_code(tiny_run, tiny_corpus, tiny_config, tmp_path):
    config = tiny_config.replace(["submission.open_source=false", "submission.auxiliary=false",
                                           "submission.author=Jane Doe"])
    out = tmp_path / "closed"
    result = write_submission(tiny_corpus, tiny_run, out, config, vocoder="griffinlim", make_zip=False,
                              progress=False)
    assert result.rebuilt and result.zip is None and not out.with_name("closed.zip").exists()
    assert sorted(os.listdir(out / "2019")) == ["english", "metadata.yaml", "surprise"]
    assert sorted(os.listdir(out / "2019/english")) == ["test"]
    assert yaml.safe_load((out / "metadata.yaml").read_text())["author"] == "Jane Doe"
    report = validate_submission(out, dataset=tiny_corpus)
    assert report.valid, report.render()


def test_parallel_encoding_gives_the_same_files(written, tiny_run, tiny_corpus, tiny_config, tmp_path):
    out = tmp_path / "parallel"
    write_submission(tiny_corpus, tiny_run, out, tiny_config, jobs=2, make_zip=False, progress=False)
    for folder in ("test", "auxiliary_embedding1", "auxiliary_embedding2"):
        names = sorted(p.name for p in (out / "2019/english" / folder).glob("*.txt"))
        assert names == sorted(p.name for p in (written.folder / "2019/english" / folder).glob("*.txt"))
        for name in names:
            assert (out / "2019/english" / folder / name).read_bytes() == \
                (written.folder / "2019/english" / folder / name).read_bytes(), (folder, name)


def test_bad_inputs_give_one_line_errors_and_write_nothing(tiny_run, tiny_corpus, tiny_config, tmp_path):
    out = tmp_path / "sub"
    with pytest.raises(UserError, match="no such checkpoint"):
        write_submission(tiny_corpus, tmp_path / "empty_run", out, tiny_config, progress=False)
    with pytest.raises(UserError, match="no 2019/english"):
        write_submission(tmp_path, tiny_run, out, tiny_config, progress=False)
    lists = tmp_path / "lists"
    lists.mkdir()
    english = find_filelists("english", None, tiny_corpus)
    (lists / "required_filelist.txt").write_text("english/test/S999_0001.txt\n")
    (lists / "embedding_filelist.txt").write_text("S999_0001.txt 0.5\n")
    with pytest.raises(UserError, match="S999_0001.txt.*has no matching .wav"):
        write_submission(tiny_corpus, tiny_run, out, tiny_config, filelists=lists, progress=False)
    with pytest.raises(UserError, match="submission.author: got ''; expected a non-empty string"):
        write_submission(tiny_corpus, tiny_run, out, tiny_config.replace(["submission.author="]),
                         progress=False, vocoder="griffinlim")
    assert english is not None and not out.exists() and not out.with_name("sub.zip").exists()
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    with pytest.raises(UserError, match="non-empty folder that `zs2020 submit` did not write"):
        write_submission(tiny_corpus, tiny_run, precious, tiny_config, progress=False)
    assert (precious / "thesis.tex").read_text() == "years of work"


def test_cli_writes_and_then_skips(tiny_run, tiny_corpus, tmp_path):
    out = tmp_path / "cli_sub"
    args = ["submit", "--dataset", str(tiny_corpus), "--run", str(tiny_run), "--out", str(out),
            "--config", "tiny", "--vocoder", "griffinlim", "-q", "submission.auxiliary=false"]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    assert f"wrote {out}" in first.output and f"wrote {out}.zip" in first.output
    second = CliRunner().invoke(main, args)
    assert second.exit_code == 0 and "up to date" in second.output
    bad = CliRunner().invoke(main, args + ["submission.nope=1"])
    assert bad.exit_code == 1 and "unknown key" in bad.output
