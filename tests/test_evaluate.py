"""``zs2020 evaluate`` end to end on the tiny corpus, broken submissions, speech measures."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from fixtures_evaluate import context_free_copy, write_feature_submission

from pipeline.contract.dataset import Dataset
from pipeline.core.errors import UserError
from pipeline.evaluation.evaluate import evaluate_submission
from pipeline.stages.evaluate import evaluate_command
from tests.fixtures_config import SPEC


def converted_wavs(submission) -> dict:
    return {p.name: p.read_bytes() for p in (submission / "2019" / "english" / "test").glob("*.wav")}


@pytest.fixture(scope="module")
def abx_corpus(tiny_corpus, tmp_path_factory):
    return context_free_copy(tiny_corpus, tmp_path_factory.mktemp("abx") / "corpus")


@pytest.fixture(scope="module")
def logmel_submission(abx_corpus, tmp_path_factory):
    """Log-mel features written as unit files, plus perfect "converted" wavs (the references)."""
    return write_feature_submission(abx_corpus, tmp_path_factory.mktemp("sub") / "submission",
                                    converted="reference")


@pytest.fixture(scope="module")
def logmel_scores(logmel_submission, abx_corpus, tiny_config):
    out = logmel_submission.parent / "evaluation"
    return evaluate_submission(logmel_submission, abx_corpus, out, tiny_config, jobs=2, speech=False), out


def test_scores_json_has_the_official_shape(logmel_scores):
    scores, out = logmel_scores
    english = scores["2019"]["english"]
    assert set(english) == {"scores", "details_bitrate", "details_abx"}
    assert set(english["details_abx"]["test"]) == {"cosine", "KL", "levenshtein"}
    assert english["scores"]["abx"] == english["details_abx"]["test"]["cosine"]   # declared dtw_cosine
    assert english["scores"]["bitrate"] == english["details_bitrate"]["test"]
    assert json.loads((out / "scores.json").read_text()) == scores
    assert (out / "report.md").read_text().count("| test |") == 1
    assert (out / "abx_english.png").is_file()


def test_units_equal_to_the_log_mel_baseline_score_the_same(logmel_scores):
    scores, _ = logmel_scores
    abx = scores["zs2020_extras"]["english"]["abx"]
    for distance in ("cosine", "KL", "levenshtein"):
        assert abx["test"][distance]["error"] == pytest.approx(abx["baseline_logmel"][distance]["error"], abs=1e-6)
        assert abx["test"][distance]["triplets"] > 0
    # log-mel rows with a negative value make KL undefined (a tie): almost every triplet is a tie
    assert abx["test"]["KL"]["error"] == pytest.approx(50.0, abs=1.0)


def test_bitrate_matches_an_independent_count(logmel_scores, logmel_submission, abx_corpus):
    from collections import Counter
    scores, _ = logmel_scores
    rows = [line.split() for line in Dataset(abx_corpus).filelist("bitrate").read_text().splitlines()]
    test = logmel_submission / "2019" / "english" / "test"
    tokens = [tuple(float(v) for v in line.split(" "))
              for name, _ in rows for line in (test / name).read_text().splitlines() if line]
    counts = np.array(list(Counter(tokens).values()), dtype=float)
    p = counts / counts.sum()
    expected = len(tokens) * float(-(p * np.log2(p)).sum()) / sum(float(d) for _, d in rows)
    assert scores["2019"]["english"]["scores"]["bitrate"] == pytest.approx(expected, rel=1e-12)
    # log-mel frames are nearly all distinct: close to log2(N) * N / D
    details = scores["zs2020_extras"]["english"]["bitrate"]["test"]
    assert details["symbols"] > 0.9 * len(tokens)


def test_up_to_date_run_is_skipped_and_force_redoes(logmel_submission, logmel_scores, abx_corpus, tiny_config):
    _, out = logmel_scores
    before = (out / "scores.json").stat().st_mtime_ns
    evaluate_submission(logmel_submission, abx_corpus, out, tiny_config, jobs=2, speech=False)
    assert (out / "scores.json").stat().st_mtime_ns == before
    runner = CliRunner()
    result = runner.invoke(evaluate_command, [str(logmel_submission), "--dataset", str(abx_corpus), "--out",
                                              str(out), "--config", "tiny", "--no-speech", "--no-baselines",
                                              "--distances", "cosine", "--force"])
    assert result.exit_code == 0, result.output
    fresh = json.loads((out / "scores.json").read_text())
    assert set(fresh["2019"]["english"]["details_abx"]["test"]) == {"cosine"}
    assert "baseline_logmel" not in fresh["zs2020_extras"]["english"]["abx"]


def broken_copy(submission, tmp_path):
    dst = tmp_path / "broken"
    shutil.copytree(submission, dst)
    return dst, sorted((dst / "2019" / "english" / "test").glob("*.txt"))


@pytest.mark.parametrize("damage, message", [
    ("missing", r"2 problem\(s\): missing file 2019/english/test/{a}.txt; missing file 2019/english/test/{b}.txt"),
    ("ragged", r"2019/english/test/{a}.txt: line 2: 3 columns where earlier lines have 80"),
    ("nan", r"2019/english/test/{a}.txt: line 1: non-finite value 'nan'"),
    ("empty", r"2019/english/test/{a}.txt: file is empty"),
])
def test_broken_submissions_name_the_files(logmel_submission, abx_corpus, tiny_config, tmp_path, damage, message):
    sub, files = broken_copy(logmel_submission, tmp_path)
    a, b = files[5], files[9]     # item files (the long utterances come first)
    if damage == "missing":
        a.unlink()
        b.unlink()
    elif damage == "ragged":
        a.write_text(a.read_text().split("\n")[0] + "\n1 2 3\n")
    elif damage == "nan":
        first, rest = a.read_text().split("\n", 1)
        a.write_text(" ".join(["nan"] + first.split(" ")[1:]) + "\n" + rest)
    else:
        a.write_text("\n\n")
    out = tmp_path / "evaluation"
    with pytest.raises(UserError, match=message.format(a=a.stem, b=b.stem)):
        evaluate_submission(sub, abx_corpus, out, tiny_config, jobs=1, speech=False, baselines=False)
    assert not out.exists()   # nothing half-written


def test_cli_bad_input_is_one_line(tiny_corpus, tmp_path):
    result = CliRunner().invoke(evaluate_command, [str(tmp_path / "nothing"), "--dataset", str(tiny_corpus),
                                                   "--no-speech"])
    assert result.exit_code == 1
    assert result.output.strip().startswith("Error:") and result.output.strip().count("\n") == 0
    result = CliRunner().invoke(evaluate_command, [str(tmp_path), "--dataset", str(tiny_corpus),
                                                   "--distances", "euclid"])
    assert result.exit_code == 2 and "cosine,KL,levenshtein" in result.output


# ----------------------------------------------------------------------------- speech measures
def test_cer_wer_hand_computed():
    from pipeline.evaluation.speech import cer_wer
    cer, wer = cer_wer("The cat sat.", "the bat sat")
    assert wer == pytest.approx(1 / 3)
    assert cer == pytest.approx(1 / len("the cat sat"))
    assert cer_wer("a b", "") == (1.0, 1.0)


def test_mcd_and_similarity_of_a_wav_to_itself(tiny_corpus):
    from pipeline.evaluation import speech as sm
    ds = Dataset(tiny_corpus)
    line = ds.synthesis()[0]
    ref, src = ds.reference(line).read(SPEC.sample_rate), line.source.read(SPEC.sample_rate)
    assert sm.mel_cepstral_distortion(ref, ref, SPEC) == 0.0
    mcd = sm.mel_cepstral_distortion(src, ref, SPEC)
    assert 2.0 < mcd < 30.0      # a different speaker: a few dB, on the usual MCD scale
    emb = sm.speaker_embedding(ref)
    assert sm.cosine(emb, emb) == pytest.approx(1.0, abs=1e-6)
    assert sm.cosine(sm.speaker_embedding(src), emb) < 0.9


@pytest.mark.parametrize("converted, closer", [("reference", 1.0), ("source", 0.0)])
def test_speaker_similarity_follows_the_converted_voice(tiny_corpus, tmp_path, converted, closer):
    from pipeline.evaluation.speech import speech_measures
    sub = write_feature_submission(tiny_corpus, tmp_path / "sub", features=lambda a: np.ones((2, 2)),
                                   converted=converted)
    res = speech_measures(Dataset(tiny_corpus), converted_wavs(sub), SPEC, jobs=1, voice_utts=3,
                          measures=("similarity", "mcd"), progress=False)
    s = res["summary"]
    assert res["lines"] == len(Dataset(tiny_corpus).synthesis())
    assert s["share_closer_to_target"] == closer
    if converted == "reference":
        assert s["mcd_converted"] == 0.0
        assert s["sim_target_converted"] == pytest.approx(s["sim_target_reference"])
    else:
        assert s["mcd_converted"] == pytest.approx(s["mcd_source"])
        assert s["sim_target_converted"] < s["sim_target_reference"]


def test_speech_measures_skip_cleanly_without_wavs(tiny_corpus, tmp_path):
    from pipeline.evaluation.speech import speech_measures
    res = speech_measures(Dataset(tiny_corpus), {}, SPEC, progress=False)
    assert "skipped" in res and "no converted wavs" in res["skipped"]


@pytest.mark.slow
def test_asr_and_dnsmos_on_one_line(tiny_corpus, tmp_path):
    from pipeline.evaluation.speech import speech_measures
    sub = write_feature_submission(tiny_corpus, tmp_path / "sub", features=lambda a: np.ones((2, 2)),
                                   converted="reference")
    res = speech_measures(Dataset(tiny_corpus), converted_wavs(sub), SPEC, jobs=1, max_lines=1,
                          measures=("asr", "dnsmos"), progress=False)
    row, s = res["per_line"][0], res["summary"]
    # the same audio decodes the same whatever was decoded before it
    assert row["asr_converted"] == row["asr_reference"] and row["asr_converted"]
    assert 0.0 <= s["cer_converted"] < 0.5        # the target voice's own TTS is intelligible
    assert 1.0 <= s["dnsmos_converted"] <= 5.0


def test_zip_submission_and_long_items(logmel_submission, logmel_scores, abx_corpus, tiny_config, tmp_path):
    scores, _ = logmel_scores
    archive = shutil.make_archive(str(tmp_path / "submission"), "zip", logmel_submission)
    from_zip = evaluate_submission(archive, abx_corpus, tmp_path / "eval_zip", tiny_config, jobs=1,
                                   distances=("cosine",), speech=False, baselines=False)
    assert from_zip["2019"]["english"]["details_abx"]["test"]["cosine"] == \
        scores["2019"]["english"]["details_abx"]["test"]["cosine"]
    # the same phones as spans in seconds inside the long utterances (10 ms log-mel frames)
    long = evaluate_submission(logmel_submission, abx_corpus, tmp_path / "eval_long", tiny_config, jobs=1,
                               distances=("cosine",), item_kind="long", speech=False)
    abx = long["zs2020_extras"]["english"]["abx"]
    assert abx["test"]["cosine"]["items"] == scores["zs2020_extras"]["english"]["abx"]["test"]["cosine"]["items"]
    assert abx["test"]["cosine"]["error"] == pytest.approx(abx["baseline_logmel"]["cosine"]["error"], abs=1e-6)
    assert 0.0 <= abx["test"]["cosine"]["error"] < 50.0
