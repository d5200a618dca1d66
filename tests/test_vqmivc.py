"""VQMIVC, the second unit system: shape contracts and the CLUB estimators on random tensors, pitch
on real audio, then training on the tiny corpus (loss falls, resume replays the uninterrupted run
exactly), one-shot conversion into an unseen voice, its one-line errors, a valid submission, the
universal vocoder and the one-shot evaluation measure."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from models.augment import warp_frequency
from models.mi import CLUB
from models.vqmivc import VQMIVC, VQMIVCConfig
from pipeline.contract.dataset import Dataset
from pipeline.core.checkpoint import load_checkpoint
from pipeline.core.errors import UserError
from pipeline.features import logmel
from tests.fixtures_config import SPEC
from tests.fixtures_training import train_until_first_checkpoint

torch.set_num_threads(1)

SMALL = VQMIVCConfig(channels=16, blocks=1, code_dim=8, codes=16, cpc_steps=2, cpc_negatives=3, cpc_context=8,
                     speaker_channels=8, speaker_blocks=2, speaker_dim=4, decoder_channels=16, decoder_blocks=2,
                     postnet_layers=2, restart_every=0)
VQMIVC_OVERRIDES = ["system=vqmivc"]


# ---------------------------------------------------------------- model shapes
@pytest.mark.parametrize("frames", [1, 2, 3, 4, 5, 7, 8, 13, 64, 101])
def test_every_length_gives_exact_code_and_frame_counts(frames):
    torch.manual_seed(0)
    model = VQMIVC(SMALL).eval()
    mel, pitch = torch.randn(2, 80, frames), torch.randn(2, 2, frames)
    enc = model.encode(mel)
    assert enc.quant.ids.shape == (2, (frames + 1) // 2)
    assert enc.quant.quantized.shape == enc.prequant.shape == (2, 8, (frames + 1) // 2)
    speaker = model.speaker_embedding(mel)
    assert speaker.shape == (2, 4)
    out = model.decode_ids(enc.quant.ids, speaker, pitch)
    assert out.shape == (2, 80, frames) and torch.isfinite(out).all()
    assert model.context(enc.quant.quantized).shape == (2, (frames + 1) // 2, 8)
    model.train()
    result = model(mel, pitch)
    assert result.mel.shape == (2, 80, frames)
    (result.recon_loss + result.commit_loss).backward()
    assert model.content.conv.weight.grad is not None and model.speaker.inp.weight.grad is not None


def test_decode_refuses_wrong_code_counts_and_the_voice_changes_the_mel():
    torch.manual_seed(0)
    model = VQMIVC(SMALL).eval()
    with pytest.raises(ValueError, match="need"):
        model.decode_ids(torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 4), torch.zeros(1, 2, 9))
    ids = model.encode(torch.randn(1, 80, 20)).quant.ids
    pitch = torch.zeros(1, 2, 20)
    a = model.decode_ids(ids, torch.randn(1, 4), pitch)
    b = model.decode_ids(ids, torch.randn(1, 4), pitch)
    assert not torch.allclose(a, b)


# ---------------------------------------------------------------- CLUB estimators
def _fit(estimator: CLUB, x, y, steps=300):
    opt = torch.optim.Adam(estimator.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        (-estimator.log_likelihood(x, y)).backward()
        opt.step()


def test_club_bound_is_larger_for_dependent_than_for_independent_pairs():
    torch.manual_seed(0)
    mixing = torch.randn(4, 3)

    def draw(dependent: bool, n: int = 512):
        x = torch.randn(n, 4)
        return x, (x @ mixing + 0.1 * torch.randn(n, 3)) if dependent else torch.randn(n, 3)

    estimates = {}
    for name, dependent in (("dependent", True), ("independent", False)):
        estimator = CLUB(4, 3, 32)
        _fit(estimator, *draw(dependent))
        with torch.no_grad():    # scored on fresh pairs of the same distribution
            estimates[name] = float(np.mean([estimator.upper_bound(*draw(dependent)).item() for _ in range(10)]))
    assert estimates["dependent"] > 1.0
    assert abs(estimates["independent"]) < 0.2
    assert estimates["dependent"] > estimates["independent"] + 1.0


def test_club_pairs_utterance_vectors_with_frames_and_frames_with_frames():
    torch.manual_seed(0)
    estimator = CLUB(4, 3, 8)
    speaker, frames = torch.randn(5, 4), torch.randn(5, 7, 3)
    assert estimator.log_likelihood(speaker, frames).shape == ()
    assert estimator.upper_bound(speaker, frames).shape == ()
    assert estimator.upper_bound(torch.randn(5, 7, 4), frames).shape == ()
    with pytest.raises(ValueError, match="frame-level pairs"):
        estimator.upper_bound(torch.randn(5, 6, 4), frames)


def test_club_terms_train_the_encoders_and_estimator_updates_do_not():
    from pipeline.core.config import load_config
    from pipeline.train.vqmivc import build_estimators, mi_pairs
    torch.manual_seed(0)
    config = load_config("tiny", VQMIVC_OVERRIDES)
    model = VQMIVC(SMALL).train()
    estimators = build_estimators(model.cfg, config)
    assert set(estimators) == {"content_speaker", "content_pitch", "pitch_speaker"}
    pitch = torch.randn(3, 2, 16)
    out = model(torch.randn(3, 80, 16), pitch)
    pairs = mi_pairs(out, pitch)
    encoders = [model.content.conv.weight, model.speaker.inp.weight]
    # the estimators' own update sees detached inputs: no gradient reaches the model
    (-sum(estimators[n].log_likelihood(x.detach(), y.detach()) for n, (x, y) in pairs.items())).backward()
    assert all(p.grad is None for p in model.parameters())
    assert all(p.grad is not None for p in estimators.parameters())
    # the main loss's bounds do: content (content-speaker, content-pitch) and speaker encoders
    for name, param in (("content_speaker", encoders[0]), ("content_pitch", encoders[0]),
                        ("content_speaker", encoders[1]), ("pitch_speaker", encoders[1])):
        model.zero_grad(set_to_none=True)
        x, y = mi_pairs(model(torch.randn(3, 80, 16), pitch), pitch)[name]
        estimators[name].upper_bound(x, y).backward()
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_switched_off_mi_terms_have_no_estimator():
    from pipeline.core.config import load_config
    from pipeline.train.vqmivc import build_estimators
    config = load_config("tiny", VQMIVC_OVERRIDES + ["vqmivc.loss.mi_content_pitch=0", "vqmivc.loss.mi_pitch_speaker=0"])
    assert set(build_estimators(SMALL, config)) == {"content_speaker"}


# ---------------------------------------------------------------- pitch
def test_pitch_has_one_frame_per_logmel_frame_and_is_normalised(tiny_corpus):
    from pipeline.pitch import pitch_features
    audio = Dataset(tiny_corpus).utterances("train/voice")[0].read()
    for n in (1, 159, 160, 161, 1601, len(audio)):
        pitch = pitch_features(audio[:n], SPEC, 60.0, 500.0)
        assert pitch.shape == (2, logmel(audio[:n], SPEC).shape[1])
    pitch = pitch_features(audio, SPEC, 60.0, 500.0)
    voiced = pitch[1] > 0
    assert set(np.unique(pitch[1])) == {0.0, 1.0} and 0.2 < voiced.mean() < 0.95
    assert abs(pitch[0, voiced].mean()) < 1e-3 and abs(pitch[0, voiced].std() - 1) < 1e-3
    assert not pitch[0, ~voiced].any()
    assert not pitch_features(np.zeros(8000, np.float32), SPEC, 60.0, 500.0).any()


def test_a_perturbed_content_input_changes_the_codes_only():
    torch.manual_seed(0)
    model = VQMIVC(SMALL).eval()
    mel, pitch = torch.randn(2, 80, 40), torch.randn(2, 2, 40)
    plain = model(mel, pitch)
    warped = warp_frequency(mel, torch.tensor([1.2, 0.85]), 0.0, 8000.0)
    perturbed = model(mel, pitch, content_mel=warped)
    assert torch.equal(perturbed.speaker, plain.speaker)
    assert torch.equal(perturbed.encoded.prequant, model.encode(warped).prequant)
    assert not torch.allclose(perturbed.encoded.prequant, plain.encoded.prequant)
    with pytest.raises(ValueError, match="content_mel has shape"):
        model(mel, pitch, content_mel=warped[..., :20])


def test_the_content_input_is_the_crop_stretched_by_a_seeded_factor(tiny_config):
    from types import SimpleNamespace

    from pipeline.features import feature_spec
    from pipeline.train.vqmivc import crop_sampler
    rng = np.random.default_rng(0)
    lengths = [30, 41, 52, 33]
    data = SimpleNamespace(mels=[rng.normal(size=(80, n)).astype(np.float32) for n in lengths], train_idx=np.arange(4))
    pitch = [np.zeros((2, n), np.float32) for n in lengths]
    spec = feature_spec(tiny_config)
    plain = crop_sampler(data, pitch, 16, 8, tiny_config.replace(["vqmivc.perturb.warp=0.0"]), spec)
    warped = crop_sampler(data, pitch, 16, 8, tiny_config.replace(["vqmivc.perturb.warp=0.15"]), spec)
    a, b = plain(0, torch.Generator().manual_seed(1)), warped(0, torch.Generator().manual_seed(1))
    assert set(a) == {"mel", "pitch"} and set(b) == {"mel", "pitch", "content_mel"}
    assert torch.equal(a["mel"], b["mel"]) and torch.equal(a["pitch"], b["pitch"])   # the same crops
    assert b["content_mel"].shape == b["mel"].shape and not torch.allclose(b["content_mel"], b["mel"])
    again = warped(0, torch.Generator().manual_seed(1))
    assert torch.equal(again["content_mel"], b["content_mel"])


# ---------------------------------------------------------------- training on the tiny corpus
@pytest.fixture(scope="module")
def vqmivc_run(tiny_features, tiny_melgan, tiny_config, tmp_path_factory):
    """A run folder: the tiny VQMIVC in vqvae/, the tiny target-voice MelGAN in melgan/."""
    from pipeline.train.vqmivc import train
    run = tmp_path_factory.mktemp("vqmivc_run")
    train(tiny_features, run / "vqvae", tiny_config.replace(VQMIVC_OVERRIDES), progress=False)
    (run / "melgan").mkdir()
    shutil.copy(tiny_melgan, run / "melgan" / "checkpoint.pt")
    return run


@pytest.fixture(scope="module")
def system(vqmivc_run):
    from pipeline.systems.unit_systems import load_unit_system
    return load_unit_system(vqmivc_run / "vqvae" / "checkpoint.pt")


def test_training_loss_falls_and_the_codebook_stays_alive(vqmivc_run, tiny_config):
    hist = [json.loads(line) for line in (vqmivc_run / "vqvae" / "history.jsonl").read_text().splitlines()]
    assert hist[-1]["step"] == tiny_config.vqvae.train.steps
    assert hist[-1]["recon"] < 0.75 * hist[0]["recon"] and hist[-1]["cpc"] < hist[0]["cpc"]
    val = [r for r in hist if "val_recon" in r]
    assert len(val) >= 2 and val[-1]["val_recon"] < val[0]["val_recon"] + 0.05
    assert hist[-1]["ppl"] > 4 and val[-1]["val_used"] > tiny_config.vqmivc.model.codes / 4
    assert all(f"mi_{t}" in hist[-1] for t in ("cs", "cp", "ps"))
    assert (vqmivc_run / "vqvae" / "curves.png").stat().st_size > 1000


def test_checkpoint_holds_every_training_speakers_embedding(vqmivc_run, tiny_corpus, system):
    ckpt = load_checkpoint(vqmivc_run / "vqvae" / "checkpoint.pt", kind="vqmivc")
    assert ckpt["meta"]["speakers"] == Dataset(tiny_corpus).speaker_ids()
    assert set(system.speakers) == set(ckpt["meta"]["speakers"]) >= {"V001", "V002"}
    assert all(v.shape == (system.model.cfg.speaker_dim,) and np.isfinite(v).all() for v in system.speakers.values())
    assert set(ckpt["optimizers"]) == {"adam", "mi"} and ckpt["models"]["mi"]


def test_resume_after_a_kill_replays_the_uninterrupted_run(tiny_features, tiny_config, tmp_path, monkeypatch):
    from pipeline.train.vqmivc import train
    # restart_every 7 puts a dead-code restart on each side of the interruption at step 10; the
    # content input's stretch draws from the step's generator too, so it is on here
    config = tiny_config.replace(VQMIVC_OVERRIDES + ["vqvae.train.steps=20", "vqvae.train.checkpoint_every=10",
                                                     "vqvae.quantizer.restart_every=7", "vqmivc.mi.updates=2",
                                                     "vqmivc.perturb.warp=0.15"])
    straight = train(tiny_features, tmp_path / "straight", config, progress=False)
    train_until_first_checkpoint(train, monkeypatch, tiny_features, tmp_path / "resumed", config, progress=False)
    assert load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")["step"] == 10
    resumed = train(tiny_features, tmp_path / "resumed", config, progress=False)
    a, b = load_checkpoint(straight), load_checkpoint(resumed)
    assert a["step"] == b["step"] == 20
    for model in ("vqmivc", "mi"):
        for name, tensor in a["models"][model].items():
            assert torch.equal(tensor, b["models"][model][name]), f"{model}.{name}"
    assert a["history"] == b["history"]
    assert a["meta"]["speaker_embeddings"] == b["meta"]["speaker_embeddings"]


def test_batched_encoding_equals_one_at_a_time(system, tiny_corpus):
    audio = Dataset(tiny_corpus).utterances("test")[0].read()
    mels = [logmel(audio[:n], SPEC) for n in (160, 800, 1440, 4000, len(audio), 1440)]
    together = system.encode_mels(mels)
    for mel, units in zip(mels, together):
        alone = system.encode_mel(mel)
        assert units.bottom_ids.shape == ((mel.shape[1] + 1) // 2,) and units.num_frames == mel.shape[1]
        assert np.array_equal(units.bottom_ids, alone.bottom_ids)
        assert np.allclose(units.prequant, alone.prequant, atol=1e-5)
        assert all(a.shape[0] == units.bottom_ids.shape[0] for a in units.submission_arrays())
    assert system.encode_audio(audio).pitch.shape == (2, logmel(audio, SPEC).shape[1])


def test_switching_a_run_folder_to_the_other_system_retrains(tiny_features, tiny_config, tmp_path):
    from pipeline.train import vqmivc, vqvae
    config = tiny_config.replace(["vqvae.train.steps=2", "vqvae.train.val_max_utterances=0"])
    vqvae.train(tiny_features, tmp_path / "run", config, progress=False)
    logs = []
    path = vqmivc.train(tiny_features, tmp_path / "run", config.replace(VQMIVC_OVERRIDES), progress=False,
                        log=logs.append)
    assert load_checkpoint(path)["kind"] == "vqmivc"
    assert any("holds a vqvae model; training a vqmivc from scratch" in line for line in logs)


# ---------------------------------------------------------------- one-shot conversion
def _test_pair(tiny_corpus):
    """A source and a reference utterance from two different test speakers (unseen in training)."""
    tests = [u for u in Dataset(tiny_corpus).utterances("test") if u.duration() >= 1.0]
    source = tests[0]
    reference = next(u for u in tests if u.speaker != source.speaker)
    return source, reference


def test_one_shot_conversion_of_an_unseen_voice_keeps_the_source_length(vqmivc_run, tiny_corpus, system, tmp_path):
    from pipeline.cli import main
    source, reference = _test_pair(tiny_corpus)
    assert reference.speaker not in system.speakers and source.speaker not in system.speakers
    runner = CliRunner()
    outs = {}
    for name, voice in (("target", ["--target", "V001"]), ("reference", ["--reference", str(reference.path)])):
        outs[name] = tmp_path / f"{name}.wav"
        result = runner.invoke(main, ["convert", "--run", str(vqmivc_run), "--source", str(source.path), *voice,
                                      "--out", str(outs[name])])
        assert result.exit_code == 0, result.output
        assert sf.info(str(outs[name])).frames == sf.info(str(source.path)).frames
    if not (vqmivc_run / "melgan_universal").exists():   # the target-voice MelGAN renders it, with a note
        assert "note: no universal vocoder" in result.stderr
    a, b = (sf.read(str(outs[k]))[0] for k in ("reference", "target"))
    assert np.isfinite(a).all() and np.sqrt(np.mean(a ** 2)) > 1e-3 and not np.allclose(a, b)


def test_reference_errors_are_one_line(vqmivc_run, tiny_vqvae, tiny_corpus, tmp_path):
    from pipeline.cli import main
    source, reference = _test_pair(tiny_corpus)
    bad = {"silent.wav": (np.zeros(16000), 16000), "short.wav": (0.3 * np.ones(1600), 16000),
           "rate.wav": (0.3 * np.ones(22050), 22050), "empty.wav": (np.zeros(0), 16000)}
    for name, (audio, rate) in bad.items():
        sf.write(str(tmp_path / name), audio.astype(np.float32), rate, subtype="PCM_16")
    expected = {"silent.wav": "silent", "short.wav": "at least 0.5 s", "rate.wav": "sample rate is 22050 Hz",
                "empty.wav": "audio is empty", "missing.wav": "no such audio file"}
    runner = CliRunner()
    out = tmp_path / "out.wav"
    for name, message in expected.items():
        result = runner.invoke(main, ["convert", "--run", str(vqmivc_run), "--source", str(source.path),
                                      "--reference", str(tmp_path / name), "--out", str(out)])
        assert result.exit_code == 1 and result.output.startswith("Error: ") and message in result.output, result.output
        assert result.output.count("\n") == 1 and not out.exists()
    both = runner.invoke(main, ["convert", "--run", str(vqmivc_run), "--source", str(source.path), "--target", "V001",
                                "--reference", str(reference.path), "--out", str(out)])
    assert both.exit_code == 1 and "exactly one of --target" in both.output and both.output.count("\n") == 1
    # the VQ-VAE-2 has no speaker encoder
    result = runner.invoke(main, ["convert", "--vqvae", str(tiny_vqvae), "--vocoder", "griffinlim", "--source",
                                  str(source.path), "--reference", str(reference.path), "--out", str(out)])
    assert result.exit_code == 1 and "needs the vqmivc unit system" in result.output
    assert result.output.count("\n") == 1 and not out.exists()


def test_listen_decodes_bare_content_units(vqmivc_run, tmp_path):
    from pipeline.cli import main
    out = tmp_path / "listen.wav"
    result = CliRunner().invoke(main, ["units", "listen", "3", "5x4", "7", "--run", str(vqmivc_run), "--speaker", "V002",
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert sf.info(str(out)).frames == 6 * 2 * SPEC.hop_length and "top" not in result.output


def test_a_tiny_vqmivc_submission_validates(vqmivc_run, tiny_corpus, tiny_config, system):
    import yaml

    from pipeline.contract.unitfile import read_units
    from pipeline.stages.submit import make_submission
    from submission.validator import validate_submission
    out = vqmivc_run / "submission"
    make_submission(tiny_corpus, vqmivc_run, out, tiny_config.replace(VQMIVC_OVERRIDES), progress=False)
    report = validate_submission(out.with_name("submission.zip"), dataset=tiny_corpus)
    assert report.valid, report.render()
    meta = yaml.safe_load((out / "2019" / "metadata.yaml").read_text())
    assert meta["system description"].startswith("VQMIVC") and "vqmivc" in meta["hyperparameters"]
    utt = Dataset(tiny_corpus).utterances("test")[0]
    units = system.encode_mel(logmel(utt.read(), SPEC))
    rows = read_units(out / "2019" / "english" / "test" / f"{utt.utt_id}.txt")
    assert np.allclose(rows, units.bottom_vectors, atol=1e-5)       # test/ = the content code vectors
    aux2 = read_units(out / "2019" / "english" / "auxiliary_embedding2" / f"{utt.utt_id}.txt")
    assert aux2.shape == (len(units.bottom_ids), system.model.cfg.cpc_context)


def test_universal_vocoder_trains_on_every_speaker_and_serves_references(vqmivc_run, tiny_features, tiny_corpus,
                                                                          tiny_config, tmp_path):
    from pipeline.cli import main
    from pipeline.train.melgan import train
    config = tiny_config.replace(VQMIVC_OVERRIDES + ["melgan.train.speakers=all", "melgan.train.steps=4",
                                                     "melgan.train.warmup_steps=2", "melgan.train.input_mels=vqvae",
                                                     "melgan.train.checkpoint_every=4", "melgan.train.num_samples=0",
                                                     "melgan.train.validate_every=0"])
    path = train(tiny_features, tiny_corpus, vqmivc_run / "melgan_universal", config, progress=False,
                 vqvae_checkpoint=vqmivc_run / "vqvae" / "checkpoint.pt")
    assert set(load_checkpoint(path)["meta"]["speakers"]) == set(Dataset(tiny_corpus).speaker_ids())
    source, reference = _test_pair(tiny_corpus)
    out = tmp_path / "universal.wav"
    result = CliRunner().invoke(main, ["convert", "--run", str(vqmivc_run), "--source", str(source.path),
                                                       "--reference", str(reference.path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "no universal vocoder" not in result.stderr and sf.info(str(out)).frames == sf.info(str(source.path)).frames


def test_one_shot_measure_is_seeded_and_scores_the_reference_voice(vqmivc_run, tiny_corpus, tiny_vqvae, tmp_path):
    from pipeline.evaluation.oneshot import OneShotPlan, choose_trials, one_shot_measures, plan_one_shot
    from pipeline.evaluation.report import _one_shot_table
    dataset = Dataset(tiny_corpus)
    pairs = choose_trials(dataset, 2, seed=7)
    assert pairs == choose_trials(dataset, 2, seed=7) and len(pairs) == 2
    assert all(s.speaker != r.speaker and s.key != r.key for s, r in pairs)
    assert plan_one_shot(tiny_vqvae.parent.parent) is None                      # a VQ-VAE-2 run: not applicable
    plan = plan_one_shot(vqmivc_run)
    assert plan is not None and plan.unit_system == vqmivc_run / "vqvae" / "checkpoint.pt"
    scores, wavs = one_shot_measures(plan, dataset, 2, 7, 2, ("similarity",), jobs=1, progress=False)
    assert scores["trials"] == 2 and len(wavs) == 2
    assert {"sim_reference_converted", "sim_source_converted", "share_closer_to_reference"} <= set(scores["summary"])
    assert all(r["reference_utterance"].startswith("test/") for r in scores["per_trial"])
    assert any("similarity to reference speaker" in line for line in _one_shot_table(scores, "english"))
    # without a vocoder the same trials are rendered by Griffin-Lim (benchmarks/diagnose_one_shot.py)
    griffin, griffin_wavs = one_shot_measures(OneShotPlan(plan.unit_system, None, universal=False), dataset, 2, 7,
                                              2, ("similarity",), jobs=1, progress=False)
    assert griffin["vocoder_kind"] == "griffinlim" and scores["vocoder_kind"] == plan.vocoder_kind != "griffinlim"
    assert sorted(griffin_wavs) == sorted(wavs) and griffin_wavs != wavs


def test_config_refuses_a_segment_too_short_for_the_cpc_steps():
    from pipeline.core.config import load_config
    with pytest.raises(UserError, match="vqvae.train.segment_frames"):
        load_config("tiny", VQMIVC_OVERRIDES + ["vqvae.train.segment_frames=8", "vqmivc.model.cpc_steps=4"])
    with pytest.raises(UserError, match="system"):
        load_config("tiny", ["system=vqvae3"])
