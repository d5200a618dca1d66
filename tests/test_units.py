"""`zs2020 units`: the analysis functions on hand-checkable arrays, then every sub-command on the
tiny corpus and tiny trained run (conftest fixtures)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.units import analysis as ua


# ---------------------------------------------------------------------------- usage
def test_histogram_entropy_perplexity_by_hand():
    counts = ua.histogram([0, 1, 2, 3, 3, 3, 3, 3], 6)
    assert counts.tolist() == [1, 1, 1, 5, 0, 0]
    assert ua.entropy_bits([1, 1, 1, 1]) == pytest.approx(2.0)
    assert ua.perplexity([1, 1, 1, 1, 0, 0]) == pytest.approx(4.0)
    # p = (1/2, 1/4, 1/4): H = 1.5 bits, perplexity 2**1.5
    assert ua.entropy_bits([2, 1, 1]) == pytest.approx(1.5)
    assert ua.perplexity([2, 1, 1]) == pytest.approx(2 ** 1.5)
    assert ua.entropy_bits([7]) == 0.0 and ua.entropy_bits([]) == 0.0
    with pytest.raises(ValueError):
        ua.histogram([0, 6], 6)


def test_run_lengths_and_collapse():
    seq = np.array([3, 3, 5, 5, 5, 3])
    assert ua.run_lengths(seq).tolist() == [2, 3, 1]
    assert ua.collapse_repeats(seq).tolist() == [3, 5, 3]
    assert ua.run_lengths([]).tolist() == []
    # runs do not continue across files: [1,1] + [1] = runs of 2 and 1
    assert ua.mean_run_length([np.array([1, 1]), np.array([1])]) == pytest.approx(1.5)


def test_bitrate_official_definition():
    # N = 4 symbols, H = 1 bit, D = 2 s -> 2 bits/s
    assert ua.bitrate([np.array([0, 1, 0, 1])], [2.0]) == pytest.approx(2.0)
    # histogram is pooled over files: [0,0] + [1,1] -> N = 4, H = 1, D = 0.5 + 0.5 -> 4 bits/s
    assert ua.bitrate([np.array([0, 0]), np.array([1, 1])], [0.5, 0.5]) == pytest.approx(4.0)
    # collapsed: [0] + [1] -> N = 2, H = 1 -> 2 bits/s
    assert ua.bitrate([np.array([0, 0]), np.array([1, 1])], [0.5, 0.5], collapse=True) == pytest.approx(2.0)
    # one symbol only carries no information
    assert ua.bitrate([np.array([5, 5, 5])], [1.0]) == 0.0
    with pytest.raises(ValueError):
        ua.bitrate([np.array([1])], [0.0])


# ---------------------------------------------------------------------------- speakers
def test_js_divergence_bounds_and_value():
    assert ua.js_divergence([1, 2, 3], [2, 4, 6]) == pytest.approx(0.0, abs=1e-12)
    assert ua.js_divergence([1, 0], [0, 1]) == pytest.approx(1.0)
    # JS = H(m) - (H(p) + H(q)) / 2 with p = (1, 0), q = (1/2, 1/2), m = (3/4, 1/4)
    expected = -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25)) - 0.5
    assert ua.js_divergence([1, 0], [1, 1]) == pytest.approx(expected)


def test_speaker_divergence_identical_vs_disjoint():
    same = ua.speaker_divergence([np.array([0, 1, 2]), np.array([2, 1, 0])], ["a", "b"], 3)
    assert same["mean"] == pytest.approx(0.0, abs=1e-12) and same["max"] == pytest.approx(0.0, abs=1e-12)
    disjoint = ua.speaker_divergence([np.array([0, 0]), np.array([1]), np.array([1])], ["a", "b", "b"], 2)
    assert set(disjoint["per_speaker"]) == {"a", "b"}
    # each speaker owns one code, the pooled histogram is (1/2, 1/2): same value as above
    expected = -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25)) - 0.5
    assert disjoint["mean"] == pytest.approx(expected) and disjoint["max"] == pytest.approx(expected)


# ---------------------------------------------------------------------------- phones
def test_frame_labels_use_frame_centres():
    segments = [(0.0, 0.05, "A"), (0.05, 0.1, "B")]
    # 20 ms frames: centres 10, 30, 50, 70, 90, 110 ms
    assert ua.frame_labels(segments, 6, 0.02) == ["A", "A", "B", "B", "B", None]
    assert ua.frame_labels([], 2, 0.02) == [None, None]


def test_bijection_has_nmi_one_and_full_purity():
    rng = np.random.default_rng(0)
    phones = rng.integers(0, 5, size=400)
    units = np.array([3, 0, 4, 1, 2])[phones]          # a relabelling: a bijection
    table = ua.contingency(phones, units, 5, 8)
    assert table.sum() == 400
    assert ua.normalized_mutual_information(table) == pytest.approx(1.0)
    assert ua.phone_normalized_mutual_information(table) == pytest.approx(1.0)
    assert ua.phone_purity(table) == pytest.approx(1.0)
    assert ua.unit_purity(table) == pytest.approx(1.0)
    assert ua.majority_rows(table).tolist() == [1, 3, 4, 0, 2, -1, -1, -1]


def test_purity_and_mi_by_hand():
    # rows = phones (A, B), columns = units (0, 1, 2)
    table = np.array([[4, 2, 0],
                      [0, 2, 4]])
    # each unit read as its majority phone: 4 + 2 + 4 correct out of 12
    assert ua.phone_purity(table) == pytest.approx(10 / 12)
    # each phone read as its majority unit: 4 + 4 out of 12
    assert ua.unit_purity(table) == pytest.approx(8 / 12)
    # I = H(phone) - H(phone | unit) = 1 - (4/12) * 1 = 2/3 bit
    assert ua.mutual_information(table) == pytest.approx(2 / 3)
    assert ua.phone_normalized_mutual_information(table) == pytest.approx(2 / 3)
    h_unit = ua.entropy_bits([4, 4, 4])
    assert ua.normalized_mutual_information(table) == pytest.approx(2 * (2 / 3) / (1 + h_unit))


def test_independent_units_carry_no_phone_information():
    table = np.outer([1, 2, 3], [2, 2, 4]) * 10          # P(phone, unit) = P(phone) P(unit)
    assert ua.mutual_information(table) == pytest.approx(0.0, abs=1e-12)
    assert ua.normalized_mutual_information(table) == pytest.approx(0.0, abs=1e-12)


# ---------------------------------------------------------------------------- leakage
def _utterances(rng, speakers, per_speaker, codes_of):
    seqs, labels = [], []
    for s in range(speakers):
        for _ in range(per_speaker):
            seqs.append(rng.choice(codes_of(s), size=60))
            labels.append(f"S{s:02d}")
    return seqs, labels


def test_stratified_split_is_seeded_and_per_class():
    labels = ["a"] * 10 + ["b"] * 4 + ["c"]
    train, test = ua.stratified_split(labels, 0.3, seed=3)
    again = ua.stratified_split(labels, 0.3, seed=3)
    assert train.tolist() == again[0].tolist() and test.tolist() == again[1].tolist()
    assert not set(train) & set(test)
    held = [labels[i] for i in test]
    assert held.count("a") == 3 and held.count("b") == 1 and "c" not in held
    assert 14 not in train  # the singleton class is left out


def test_leakage_detects_speaker_specific_codes():
    rng = np.random.default_rng(1)
    seqs, labels = _utterances(rng, 4, 10, lambda s: np.arange(8 * s, 8 * s + 10))  # mostly own codes
    result = ua.speaker_leakage(seqs, labels, 48, seed=0)
    assert result["speakers"] == 4 and result["test"] == 12
    assert result["accuracy_logreg"] == 1.0 and result["accuracy_centroid"] == 1.0
    assert result["chance"] <= 0.5


def test_leakage_near_chance_when_usage_is_shared():
    rng = np.random.default_rng(2)
    seqs, labels = _utterances(rng, 4, 15, lambda s: np.arange(32))  # one shared distribution
    result = ua.speaker_leakage(seqs, labels, 32, seed=0)
    assert result["accuracy_centroid"] < 0.6 and result["accuracy_logreg"] < 0.6


def test_leakage_needs_two_speakers():
    result = ua.speaker_leakage([np.array([1, 2])] * 3, ["a"] * 3, 4)
    assert result["accuracy_logreg"] is None and "note" in result


# ---------------------------------------------------------------------------- codebooks
def test_pca_of_points_on_a_line():
    t = np.linspace(-1, 1, 9)[:, None]
    points, ratio = ua.pca_2d(t * np.array([[3.0, 4.0, 0.0]]) + 7)
    assert ratio[0] == pytest.approx(1.0) and ratio[1] == pytest.approx(0.0, abs=1e-12)
    assert np.allclose(np.abs(points[:, 0]), 5 * np.abs(t[:, 0]))
    assert np.allclose(points[:, 1], 0, atol=1e-9)


def test_top_code_choice_follows_cooccurrence():
    bottom = [np.array([0, 0, 1, 1, 2])]
    top = [np.array([5, 6, 6])]
    table = ua.cooccurrence(bottom, top, 4, 8)
    assert table[0, 5] == 2 and table[1, 6] == 2 and table[2, 6] == 1 and table.sum() == 5
    # frames (1,1) -> 6, (0,3) -> 5 (code 3 never seen adds nothing), (3) -> fallback = most used top 6
    assert ua.choose_top_codes(np.array([1, 1, 0, 3, 3]), table).tolist() == [6, 5, 6]


# ---------------------------------------------------------------------------- CLI on a hand-made encoded folder
PHONES = ["AA", "B", "K", "SIL"]
BOTTOM_BOOK = np.random.default_rng(5).normal(size=(20, 3)).astype(np.float32)
TOP_BOOK = np.random.default_rng(6).normal(size=(4, 2)).astype(np.float32)


@pytest.fixture(scope="module")
def fake_encoded(tmp_path_factory):
    """A dataset with 4 test speakers x 6 utterances of 1.2 s, 100 ms phone segments, and an
    encoded folder whose bottom unit = 4 * phone + speaker (so phone purity = 1 and the speaker
    is fully readable) and whose top unit = phone."""
    import soundfile as sf
    root = tmp_path_factory.mktemp("fake") / "corpus"
    lang = root / "2019" / "english"
    (lang / "test").mkdir(parents=True)
    (lang / "alignments" / "test").mkdir(parents=True)
    encoded = tmp_path_factory.mktemp("encoded") / "test"
    encoded.mkdir()
    rng = np.random.default_rng(0)
    for s in range(4):
        for k in range(6):
            utt = f"S0{s + 1}_{k:04d}"
            sf.write(lang / "test" / f"{utt}.wav", (0.01 * rng.standard_normal(19200)).astype(np.float32), 16000,
                     subtype="PCM_16")
            phones = rng.integers(0, 4, size=12)
            (lang / "alignments" / "test" / f"{utt}.phn").write_text(
                "".join(f"{0.1 * i:.3f} {0.1 * (i + 1):.3f} {PHONES[p]}\n" for i, p in enumerate(phones)))
            bottom_phone = phones[np.arange(60) // 5]           # 5 bottom frames of 20 ms per phone
            bottom = 4 * bottom_phone + s
            top = phones[(np.arange(30) * 4 + 2) // 10]         # phone at each 40 ms frame centre
            np.savez(encoded / f"{utt}.npz", bottom_ids=bottom, top_ids=top, num_frames=120,
                     bottom_vectors=BOTTOM_BOOK[bottom], top_vectors=TOP_BOOK[np.repeat(top, 2)],
                     prequant=BOTTOM_BOOK[bottom])
    return root, encoded


def _invoke(args):
    import json

    from click.testing import CliRunner

    from pipeline.stages.units import units_group
    result = CliRunner().invoke(units_group, args, catch_exceptions=False)
    return result, (json.loads(result.stdout) if "--json" in args and result.exit_code == 0 else None)


def test_stats_on_encoded_folder(fake_encoded, tmp_path):
    root, encoded = fake_encoded
    result, report = _invoke(["stats", "--encoded", str(encoded), "--dataset", str(root), "--json",
                              "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert report["utterances"] == 24 and report["speakers"] == 4
    bottom, top = report["levels"]["bottom"], report["levels"]["top"]
    assert bottom["frame_ms"] == pytest.approx(20) and top["frame_ms"] == pytest.approx(40)
    assert bottom["codes_in_use"] == 16 and top["codes_in_use"] == 4
    assert 1 < bottom["perplexity"] <= 16
    # every phone lasts 100 ms = 5 bottom frames, runs merge only when a phone repeats
    assert bottom["mean_unit_ms"] >= 100
    assert bottom["bitrate_collapsed"] < bottom["bitrate"]
    assert bottom["bitrate_list"] is None          # this dataset has no bitrate file list
    # each speaker owns its own 4 bottom codes: large divergence; top codes are shared: small
    assert bottom["speaker_js_mean"] > 0.5 > top["speaker_js_mean"]
    assert (tmp_path / "usage.png").stat().st_size > 1000
    text, _ = _invoke(["stats", "--encoded", str(encoded), "--level", "top", "--out", str(tmp_path)])
    assert "perplexity" in text.output and "bottom" not in text.output.split("\n")[1]


def test_phones_on_encoded_folder(fake_encoded, tmp_path):
    root, encoded = fake_encoded
    result, report = _invoke(["phones", "--encoded", str(encoded), "--dataset", str(root), "--json",
                              "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    bottom, top = report["levels"]["bottom"], report["levels"]["top"]
    assert bottom["phone_purity"] == pytest.approx(1.0) and bottom["pnmi"] == pytest.approx(1.0)
    assert bottom["unit_purity"] < 0.5            # every phone is split over 4 speaker codes
    assert top["nmi"] == pytest.approx(1.0) and top["phone_purity"] == pytest.approx(1.0)
    assert bottom["frames"] == 24 * 60 and bottom["phones"] == 4
    assert (tmp_path / "phones_bottom.png").is_file() and (tmp_path / "phones_top.png").is_file()
    # without alignments: one clear error line
    bare, _ = _invoke(["phones", "--encoded", str(encoded), "--dataset", str(tmp_path / "nowhere")])
    assert bare.exit_code == 1 and "no phone alignments" in bare.output


def test_leakage_on_encoded_folder(fake_encoded):
    root, encoded = fake_encoded
    result, report = _invoke(["leakage", "--encoded", str(encoded), "--json", "--seed", "3"])
    assert result.exit_code == 0, result.output
    bottom, top = report["levels"]["bottom"], report["levels"]["top"]
    assert bottom["speakers"] == 4 and bottom["test"] == 8
    assert bottom["accuracy_logreg"] == 1.0 and bottom["chance"] <= 0.5
    assert top["accuracy_centroid"] < bottom["accuracy_centroid"]


def test_plot_and_show_on_encoded_folder(fake_encoded, tmp_path):
    root, encoded = fake_encoded
    result, report = _invoke(["plot", "--encoded", str(encoded), "--dataset", str(root), "--json",
                              "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert report["levels"]["bottom"]["codes_plotted"] == 16
    assert (tmp_path / "codebook_bottom.png").stat().st_size > 1000
    shown, data = _invoke(["show", "test/S02_0001", "--encoded", str(encoded), "--dataset", str(root), "--json"])
    assert shown.exit_code == 0, shown.output
    assert data["aligned"] and len(data["segments"]) == 12
    first = data["segments"][0]
    assert len(first["bottom"]) == 5 and set(first["bottom"]) == {4 * PHONES.index(first["phone"]) + 1}
    text, _ = _invoke(["show", str(encoded / "S02_0001.npz"), "--dataset", str(root)])
    assert text.exit_code == 0 and "phone" in text.output and "x5" in text.output
    missing, _ = _invoke(["show", "test/S09_0001", "--encoded", str(encoded), "--dataset", str(root)])
    assert missing.exit_code == 1 and "no utterance" in missing.output


def test_listen_unit_parsing_and_top_choice():
    from pipeline.core.errors import UserError
    from pipeline.units.reports import listen_units, parse_unit_tokens
    assert parse_unit_tokens(["12", "40x3,7"], "unit") == [12, 40, 40, 40, 7]
    for bad in (["x"], ["3x0"], ["-1"], [""]):
        with pytest.raises(UserError):
            parse_unit_tokens(bad, "unit")
    sizes = {"bottom": 50, "top": 8}
    table = ua.cooccurrence([np.array([12, 12, 40, 40])], [np.array([3, 5])], 50, 8)
    # one unit held 100 ms = 5 bottom frames -> 3 top frames chosen from co-occurrence
    bottom, top = listen_units([12], 100, None, sizes, lambda: table, 20)
    assert bottom.tolist() == [12] * 5 and top.tolist() == [3, 3, 3]
    bottom, top = listen_units([12, 40, 40], None, [7], sizes, lambda: pytest.fail("not needed"), 20)
    assert top.tolist() == [7, 7]
    with pytest.raises(UserError, match="need 2 top ids"):
        listen_units([12, 40, 40], None, [1, 2, 3], sizes, lambda: table, 20)
    with pytest.raises(UserError, match="out of range"):
        listen_units([60], None, None, sizes, lambda: table, 20)
    with pytest.raises(UserError, match="out of range"):
        listen_units([1, 2], None, [9], sizes, lambda: table, 20)


# ---------------------------------------------------------------------------- CLI on the tiny trained run
@pytest.fixture(scope="module")
def unit_run(tiny_run, tmp_path_factory):
    """A private copy of the tiny run's checkpoints, so the units cache lands in our own folder."""
    import shutil
    run = tmp_path_factory.mktemp("unit_run")
    for stage in ("vqvae", "melgan"):
        (run / stage).mkdir()
        shutil.copy2(tiny_run / stage / "checkpoint.pt", run / stage / "checkpoint.pt")
    return run


@pytest.mark.slow
def test_run_stats_phones_and_cache(unit_run, tiny_corpus, tmp_path, monkeypatch):
    import pipeline.units.source as units_mod
    common = ["--run", str(unit_run), "--dataset", str(tiny_corpus), "--json", "--out", str(tmp_path)]
    result, stats = _invoke(["stats", *common])
    assert result.exit_code == 0, result.output
    cache = unit_run / "units_cache" / "english" / "test.npz"
    assert cache.is_file()
    n_test = len(list((tiny_corpus / "2019" / "english" / "test").glob("*.wav")))
    assert stats["utterances"] == n_test
    for level, frame_ms in (("bottom", 20), ("top", 40)):
        s = stats["levels"][level]
        assert s["frame_ms"] == pytest.approx(frame_ms)
        assert 1 <= s["codes_in_use"] <= s["codebook_size"]
        assert 1 <= s["perplexity"] <= s["codes_in_use"]
        assert s["perplexity"] == pytest.approx(2 ** s["entropy_bits"])
        assert 0 < s["bitrate_collapsed"] <= s["bitrate"]
        # N * H / D: one symbol per unit frame, over the total duration of the split
        assert s["bitrate"] == pytest.approx(s["frames"] * s["entropy_bits"] / stats["seconds"], rel=1e-3)
        assert 0 <= s["speaker_js_mean"] <= s["speaker_js_max"] <= 1
        # the corpus has a bitrate file list (long test utterances only)
        assert 0 < s["bitrate_list_collapsed"] <= s["bitrate_list"]
    assert (tmp_path / "usage.png").is_file()

    # up to date: the second command must not load the model at all
    monkeypatch.setattr(units_mod, "load_system", lambda *a: pytest.fail("cache should have been used"))
    result, phones = _invoke(["phones", *common])
    assert result.exit_code == 0, result.output
    for level in ("bottom", "top"):
        p = phones["levels"][level]
        assert 0 < p["phone_purity"] <= 1 and 0 < p["unit_purity"] <= 1
        assert 0 <= p["nmi"] <= 1 and 0 <= p["pnmi"] <= 1
        assert p["frames"] > 0.9 * stats["levels"][level]["frames"]
        assert (tmp_path / f"phones_{level}.png").stat().st_size > 1000
    monkeypatch.undo()

    # --force re-encodes and rewrites the cache
    before = cache.stat().st_mtime_ns
    result, _ = _invoke(["stats", *common, "--level", "bottom", "--force"])
    assert result.exit_code == 0 and cache.stat().st_mtime_ns > before


@pytest.mark.slow
def test_run_leakage_plot_show(unit_run, tiny_corpus, tmp_path):
    common = ["--run", str(unit_run), "--dataset", str(tiny_corpus), "--json"]
    result, leak = _invoke(["leakage", *common, "--splits", "test,train/unit", "--min-seconds", "0.5"])
    assert result.exit_code == 0, result.output
    for level in ("bottom", "top"):
        entry = leak["levels"][level]
        assert entry["speakers"] >= 2 and entry["test"] >= entry["speakers"]
        assert 0 <= entry["accuracy_logreg"] <= 1 and 0 <= entry["accuracy_centroid"] <= 1
        assert 0 < entry["chance"] < 1
    result, plot = _invoke(["plot", *common, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert plot["levels"]["bottom"]["codes_plotted"] == plot["levels"]["bottom"]["codes"]
    assert (tmp_path / "codebook_bottom.png").stat().st_size > 1000 and (tmp_path / "codebook_top.png").is_file()

    # show: the same utterance by key, via `zs2020 encode` npz, and as a wav path agree
    from click.testing import CliRunner

    from pipeline.contract.dataset import Dataset
    from pipeline.stages.encode import encode_command
    utt = Dataset(tiny_corpus).synthesis()[0].source
    encoded = tmp_path / "encoded"
    enc = CliRunner().invoke(encode_command, ["--checkpoint", str(unit_run / "vqvae" / "checkpoint.pt"),
                                              "--wav", str(utt.path), "--out", str(encoded)])
    assert enc.exit_code == 0, enc.output
    by_key = _invoke(["show", utt.key, *common])[1]
    by_npz = _invoke(["show", str(encoded / f"{utt.utt_id}.npz"), "--dataset", str(tiny_corpus), "--json"])[1]
    by_wav = _invoke(["show", str(utt.path), *common])[1]
    assert by_key["bottom"] == by_npz["bottom"] == by_wav["bottom"]
    assert by_key["aligned"] and by_npz["aligned"]
    assert sum(len(s["bottom"]) for s in by_key["segments"]) >= len(by_key["bottom"]) - 1


@pytest.mark.slow
def test_run_listen(unit_run, tiny_corpus, tmp_path):
    import soundfile as sf
    common = ["--run", str(unit_run), "--dataset", str(tiny_corpus)]
    out = tmp_path / "held.wav"
    result, _ = _invoke(["listen", "3", "5", "--hold-ms", "100", "--speaker", "V001", "--out", str(out), *common])
    assert result.exit_code == 0, result.output
    info = sf.info(str(out))
    assert info.samplerate == 16000 and info.channels == 1 and info.subtype == "PCM_16"
    assert info.frames == 10 * 320                   # 2 units x 5 frames x 20 ms
    assert np.abs(sf.read(str(out))[0]).max() > 0
    gl = tmp_path / "gl.wav"
    result, _ = _invoke(["listen", "1x3", "--top", "0", "--vocoder", "griffinlim", "--speaker", "V002",
                         "--out", str(gl), *common])
    assert result.exit_code == 0 and sf.info(str(gl)).frames == 3 * 320
    bad = tmp_path / "bad.wav"
    for args, message in ((["7", "--speaker", "NOBODY"], "unknown target voice"),
                          (["9999", "--speaker", "V001"], "out of range")):
        result, _ = _invoke(["listen", *args, "--out", str(bad), *common])
        assert result.exit_code == 1 and message in result.output
        assert not bad.exists()


def test_source_option_errors(tmp_path):
    result, _ = _invoke(["stats", "--run", str(tmp_path), "--encoded", str(tmp_path)])
    assert result.exit_code == 1 and "exactly one of" in result.output
    (tmp_path / "2019" / "english" / "test").mkdir(parents=True)
    import soundfile as sf
    sf.write(tmp_path / "2019" / "english" / "test" / "S01_0001.wav", np.zeros(1600, np.float32), 16000)
    result, _ = _invoke(["stats", "--run", str(tmp_path / "norun"), "--dataset", str(tmp_path)])
    assert result.exit_code == 1 and "no vqvae/checkpoint.pt" in result.output
    result, _ = _invoke(["stats", "--run", str(tmp_path), "--dataset", str(tmp_path), "--splits", "tset"])
    assert result.exit_code == 1 and "unknown split" in result.output
    result, _ = _invoke(["stats", "--encoded", str(tmp_path / "empty")])
    assert result.exit_code == 1 and "does not exist" in result.output


@pytest.mark.slow
def test_cache_follows_the_wavs(unit_run, tiny_corpus, tmp_path, monkeypatch):
    """The cache is reused while the split's wavs are unchanged and rebuilt when one changes."""
    import shutil

    import soundfile as sf

    import pipeline.units.source as units_mod
    from pipeline.contract.dataset import Dataset
    test_dir = tmp_path / "corpus" / "2019" / "english" / "test"
    test_dir.mkdir(parents=True)
    for wav in sorted((tiny_corpus / "2019" / "english" / "test").glob("*.wav"))[:3]:
        shutil.copy2(wav, test_dir / wav.name)
    run = tmp_path / "run"
    (run / "vqvae").mkdir(parents=True)
    shutil.copy2(unit_run / "vqvae" / "checkpoint.pt", run / "vqvae" / "checkpoint.pt")
    dataset = Dataset(tmp_path / "corpus")
    first = units_mod.encode_splits(run, dataset, ["test"], "cpu", progress=False)
    assert len(first.utterances) == 3

    real_load = units_mod.load_system
    monkeypatch.setattr(units_mod, "load_system", lambda *a: pytest.fail("cache should have been used"))
    again = units_mod.encode_splits(run, Dataset(tmp_path / "corpus"), ["test"], "cpu", progress=False)
    assert [u.bottom.tolist() for u in again.utterances] == [u.bottom.tolist() for u in first.utterances]

    loads = []
    monkeypatch.setattr(units_mod, "load_system", lambda *a: loads.append(1) or real_load(*a))
    victim = sorted(test_dir.glob("*.wav"))[0]
    audio, sr = sf.read(victim, dtype="float32")
    sf.write(victim, audio[: len(audio) // 2], sr, subtype="PCM_16")      # shorter: new units
    changed = units_mod.encode_splits(run, Dataset(tmp_path / "corpus"), ["test"], "cpu", progress=False)
    assert loads == [1]
    assert len(changed.utterances[0].bottom) < len(first.utterances[0].bottom)
