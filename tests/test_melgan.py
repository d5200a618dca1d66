"""MelGAN: shape contracts of the modules, the losses on hand-checkable inputs, then training
on the tiny corpus (loss falls, samples written, exact resume, up-to-date skip, CLI errors)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from models.gan_losses import (MelL1Loss, MultiResolutionSTFTLoss, discriminator_hinge_loss, feature_matching_loss,
                               generator_hinge_loss)
from models.melgan import Generator, ISTFTHead, MultiScaleDiscriminator, count_parameters, remove_weight_norm
from pipeline.core.checkpoint import load_checkpoint
from pipeline.core.errors import UserError
from tests.fixtures_config import SPEC
from tests.fixtures_melgan import short_config


# ---------------------------------------------------------------------------- modules
@pytest.mark.parametrize("ratios", [(5, 4, 4, 2), (8, 5, 2, 2)])
def test_generator_output_is_exactly_frames_times_hop(ratios):
    torch.manual_seed(0)
    gen = Generator(n_mels=80, ngf=4, ratios=ratios, n_residual=2)
    assert gen.hop == 160
    for frames in (1, 2, 3, 4, 7, 16, 33):
        with torch.no_grad():
            wav = gen(torch.randn(2, 80, frames))
        assert wav.shape == (2, frames * 160)
        assert torch.all(wav.abs() <= 1) and torch.isfinite(wav).all()


@pytest.mark.parametrize("ratios,istft_fft,istft_hop", [((), 640, 160), ((5, 4), 32, 8)])
def test_istft_generator_output_is_exactly_frames_times_hop(ratios, istft_fft, istft_hop):
    torch.manual_seed(0)
    gen = Generator(n_mels=80, ngf=8, ratios=ratios, n_residual=1, head="istft", istft_fft=istft_fft,
                    istft_hop=istft_hop, frame_blocks=2).eval()
    assert gen.hop == 160
    for frames in (1, 2, 7, 33):
        with torch.no_grad():
            wav = gen(torch.randn(2, 80, frames))
        assert wav.shape == (2, frames * 160)
        assert torch.all(wav.abs() <= 1) and torch.isfinite(wav).all()
    mel = torch.randn(1, 80, 9)
    with torch.no_grad():
        before = gen(mel)
        after = remove_weight_norm(gen)(mel)
    assert torch.allclose(before, after, atol=1e-5)


def spectrum_head(n_fft: int, hop: int) -> ISTFTHead:
    """An istft head whose input is the spectrum itself (log-magnitudes, then phases)."""
    head = ISTFTHead(n_fft + 2, n_fft, hop).eval()
    head.proj = torch.nn.Identity()
    return head


def test_istft_head_centres_each_step_on_its_logmel_frame():
    # LogMel frame k is centred on sample k * hop + hop / 2: one step with energy must put its
    # samples' centre of mass there.
    n_fft, hop, steps, lit = 640, 160, 12, 6
    head = spectrum_head(n_fft, hop)
    spectrum = torch.zeros(1, n_fft + 2, steps)
    spectrum[:, :n_fft // 2 + 1] = -30.0                 # log-magnitude: silence ...
    spectrum[:, 20:40, lit] = 0.0                        # ... but for a band in one step
    with torch.no_grad():
        wav = head(spectrum)[0]
    energy = wav.double() ** 2
    centre = (energy * torch.arange(len(wav))).sum() / energy.sum()
    assert abs(centre.item() - (lit * hop + hop / 2)) < 2


@pytest.mark.parametrize("log_magnitude", [-95.0, -500.0])
def test_istft_head_gradients_stay_finite_where_the_magnitude_underflows(log_magnitude):
    # exp(-95) is subnormal in float32 and exp(-500) is 0; a universal vocoder's first 130 steps
    # reached such bins, and torch.polar's backward turned the subnormal ones into inf and NaN.
    n_fft, hop, steps = 64, 16, 5
    head = spectrum_head(n_fft, hop)
    spectrum = torch.randn(1, n_fft + 2, steps)
    spectrum[:, : n_fft // 2 + 1, 2] = log_magnitude
    spectrum.requires_grad_(True)
    head(spectrum).pow(2).sum().backward()
    assert torch.isfinite(spectrum.grad).all() and spectrum.grad.abs().sum() > 0


def harmonic_speech_like(seconds: float = 0.6) -> torch.Tensor:
    """A vowel-like test signal: 40 harmonics of a gliding 120-180 Hz pitch under a formant-like
    envelope, with a little noise."""
    t = torch.arange(int(SPEC.sample_rate * seconds)) / SPEC.sample_rate
    phase = 2 * math.pi * torch.cumsum(120 + 60 * t / seconds, 0) / SPEC.sample_rate
    wav = sum(torch.sin(k * phase) * math.exp(-((k * 150 - 700) / 900) ** 2) for k in range(1, 41))
    wav = wav + 0.01 * torch.randn(len(t), generator=torch.Generator().manual_seed(0))
    return 0.3 * wav / wav.abs().max()


def test_mel_anchored_head_starts_on_the_input_envelope():
    # With a zero residual (its initial state) and the signal's own phase, the anchored head must
    # give back the mel it was fed: the envelope comes from the input, not from training.
    from models.logmel import LogMel
    n_fft, hop = 640, SPEC.hop_length
    logmel = LogMel(SPEC)
    wav = harmonic_speech_like()
    mel = logmel(wav)
    frames = mel.shape[-1]
    head = ISTFTHead(n_fft + 2, n_fft, hop, SPEC).eval()
    bins = n_fft // 2 + 1
    weight = head.proj.weight
    assert torch.all(weight[:bins] == 0) and torch.any(weight[bins:] != 0)
    initial_offset = head.proj.bias[:bins].detach().clone()
    head.proj = torch.nn.Identity()                 # its input is now (residual, phase) per step
    padded = torch.nn.functional.pad(wav[None], ((n_fft - hop) // 2, (n_fft - hop) // 2 + frames * hop - len(wav)),
                                     mode="reflect")[0]
    phase = torch.angle(torch.stft(padded, n_fft, hop, n_fft, head.window, center=False, return_complex=True))
    inputs = torch.cat([initial_offset[:, None].expand(-1, frames), phase[:, :frames]])[None]
    with torch.no_grad():
        rebuilt = logmel(head(inputs, mel))
        silent = logmel(head(inputs, torch.full_like(mel, math.log10(SPEC.log_floor))))
    assert (rebuilt - mel).abs().mean() < 0.15          # log10 units; 0.07 measured on demo speech
    assert (silent - mel).abs().mean() > 2.0
    with pytest.raises(ValueError, match="needs the input mel"):
        head(inputs)


def test_mel_anchored_generator_learns_its_residual_and_folds_weight_norm():
    torch.manual_seed(0)
    gen = Generator(n_mels=SPEC.n_mels, ngf=8, ratios=(), n_residual=1, head="istft", istft_fft=640,
                    istft_hop=160, frame_blocks=2, anchor_spec=SPEC.to_dict())
    mel = torch.randn(2, SPEC.n_mels, 7) - 2
    wav = gen(mel)
    assert wav.shape == (2, 7 * 160) and torch.isfinite(wav).all()
    wav.pow(2).sum().backward()
    magnitude_gains = gen.net[-1].proj.parametrizations.weight.original0.grad[:321]
    assert torch.isfinite(magnitude_gains).all() and magnitude_gains.abs().sum() > 0
    gen.eval()
    with torch.no_grad():
        before = gen(mel[:1])
        after = remove_weight_norm(gen)(mel[:1])
    assert torch.allclose(before, after, atol=1e-5)
    with pytest.raises(ValueError, match="istft head"):
        Generator(n_mels=SPEC.n_mels, anchor_spec=SPEC.to_dict())


def test_mel_anchor_needs_the_istft_head():
    from pipeline.core.config import load_config
    with pytest.raises(UserError, match="melgan.generator.mel_anchor"):
        load_config("tiny", ["melgan.generator.mel_anchor=true", "melgan.generator.head=waveform"])


@pytest.mark.parametrize("anchored", [False, True])
def test_istft_training_lowers_the_spectral_loss(anchored, tiny_features, tiny_corpus, tiny_config, tmp_path):
    from pipeline.train.melgan import train
    from pipeline.systems.vocoders import MelGANVocoder
    config = short_config(tiny_config, 24, "melgan.generator.head=istft", "melgan.generator.ratios=[]",
                          "melgan.generator.ngf=32", "melgan.generator.frame_blocks=2",
                          "melgan.train.warmup_steps=24", "melgan.train.validate_every=8",
                          f"melgan.generator.mel_anchor={str(anchored).lower()}")
    path = train(tiny_features, tiny_corpus, tmp_path, config, progress=False)
    history = load_checkpoint(path, kind="melgan")["history"]
    assert np.mean([r["mel_l1"] for r in history[-6:]]) < np.mean([r["mel_l1"] for r in history[:6]])
    validated = [r["val_mel_l1"] for r in history if "val_mel_l1" in r]
    assert len(validated) == 3 and validated[-1] < validated[0]
    vocoder = MelGANVocoder(path, torch.device("cpu"))
    assert vocoder(torch.full((80, 5), -2.0)).shape == (5 * 160,)


def test_removing_weight_norm_keeps_outputs():
    torch.manual_seed(0)
    gen = Generator(ngf=4, n_residual=1).eval()
    mel = torch.randn(1, 80, 9)
    with torch.no_grad():
        before = gen(mel)
        after = remove_weight_norm(gen)(mel)
    assert torch.allclose(before, after, atol=1e-5)
    assert not any("parametrizations" in k for k in gen.state_dict())


def test_discriminator_scales_layers_and_channel_cap():
    disc = MultiScaleDiscriminator(scales=3, ndf=8, n_layers=3, max_channels=64)
    outs = disc(torch.randn(2, 4000))
    assert len(outs) == 3
    for scale, feats in enumerate(outs):
        assert len(feats) == 3 + 3   # input conv, 3 strided, kernel-5 conv, score map
        assert max(f.shape[1] for f in feats) <= 64
        assert feats[-1].shape[1] == 1
        assert feats[0].shape[-1] == math.ceil(4000 / 2 ** scale)
    capped = MultiScaleDiscriminator(scales=3, ndf=8, n_layers=3, max_channels=1024)
    assert count_parameters(disc) < count_parameters(capped) / 4


# ---------------------------------------------------------------------------- losses
def score(value: float, shape=(2, 1, 5)) -> list[torch.Tensor]:
    return [torch.full(shape, 0.0), torch.full(shape, value)]   # [hidden layer, score map]


def test_hinge_losses_by_hand():
    # D(real) = 1 and D(fake) = -1 is a perfect discriminator: zero hinge loss at each scale.
    assert discriminator_hinge_loss([score(1.0)] * 2, [score(-1.0)] * 2).item() == 0.0
    # D(real) = 0, D(fake) = 0.5: (1 - 0) + (1 + 0.5) = 2.5 per scale, 2 scales.
    assert discriminator_hinge_loss([score(0.0)] * 2, [score(0.5)] * 2).item() == pytest.approx(5.0)
    assert generator_hinge_loss([score(0.5), score(-1.5)]).item() == pytest.approx(1.0)


def test_feature_matching_ignores_score_maps():
    real = [[torch.zeros(1, 2, 3), torch.ones(1, 1, 3)]]
    fake = [[torch.full((1, 2, 3), 0.5), torch.full((1, 1, 3), 9.0)]]
    assert feature_matching_loss(real, fake).item() == pytest.approx(0.5)


def test_spectral_losses_zero_for_identical_audio_and_grow_with_noise():
    torch.manual_seed(0)
    t = torch.arange(4000) / 16000
    clean = (0.5 * torch.sin(2 * math.pi * 220 * t)).unsqueeze(0)
    mel, stft = MelL1Loss(SPEC), MultiResolutionSTFTLoss()
    assert mel(clean, clean).item() == 0.0 and stft(clean, clean).item() < 1e-6
    small, large = clean + 0.01 * torch.randn_like(clean), clean + 0.3 * torch.randn_like(clean)
    assert 0 < mel(small, clean) < mel(large, clean)
    assert 0 < stft(small, clean) < stft(large, clean)


# ---------------------------------------------------------------------------- training
def test_tiny_training_lowers_the_spectral_loss_and_writes_samples(tiny_melgan, tiny_config):
    ckpt = load_checkpoint(tiny_melgan, kind="melgan")
    train_cfg = tiny_config.melgan.train
    assert ckpt["step"] == train_cfg.steps
    history = ckpt["history"]
    assert history[-1]["mel_l1"] < history[0]["mel_l1"]
    validated = [r["val_mel_l1"] for r in history if "val_mel_l1" in r]
    assert len(validated) >= 2 and validated[-1] < validated[0]
    # the discriminator only joins after the generator-only warm-up
    assert all("d_loss" not in r for r in history if r["step"] <= train_cfg.warmup_steps)
    assert any("d_loss" in r and "feature_matching" in r for r in history if r["step"] > train_cfg.warmup_steps)
    assert ckpt["meta"]["speakers"] == {"V001": 0, "V002": 1}
    wavs = sorted((tiny_melgan.parent / "samples").glob("*.wav"))
    pngs = sorted((tiny_melgan.parent / "samples").glob("*.png"))
    assert len(wavs) == len(pngs) == train_cfg.num_samples
    info = sf.info(str(wavs[0]))
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    assert (tiny_melgan.parent / "curves.png").is_file()
    rows = [json.loads(line) for line in (tiny_melgan.parent / "history.jsonl").read_text().splitlines()]
    assert rows == history


@pytest.mark.parametrize("ema", [0.0, 0.5], ids=["last_weights", "weight_average"])
def test_resumed_training_equals_uninterrupted(ema, tiny_features, tiny_corpus, tiny_config, tmp_path):
    from pipeline.train.melgan import train
    extra = f"melgan.train.ema={ema}"
    straight = train(tiny_features, tiny_corpus, tmp_path / "a", short_config(tiny_config, 4, extra), progress=False)
    train(tiny_features, tiny_corpus, tmp_path / "b", short_config(tiny_config, 2, extra), progress=False)
    logs = []
    resumed = train(tiny_features, tiny_corpus, tmp_path / "b", short_config(tiny_config, 4, extra), progress=False,
                    log=logs.append)
    assert any("resuming at step 2" in line for line in logs)
    a, b = load_checkpoint(straight), load_checkpoint(resumed)
    assert b["step"] == 4 and [r["step"] for r in b["history"]] == [1, 2, 3, 4]
    names = ("generator", "discriminator") + (("generator_ema",) if ema else ())
    assert ("generator_ema" in b["models"]) == bool(ema)
    for name in names:
        for key, value in a["models"][name].items():
            assert torch.equal(value, b["models"][name][key]), (name, key)


def test_generator_rate_is_the_warmup_rate_then_the_adversarial_rate(tiny_features, tiny_corpus, tiny_config,
                                                                     tmp_path):
    from pipeline.train.melgan import MelGANTrainer, train
    config = short_config(tiny_config, 11, "melgan.train.warmup_steps=6", "melgan.train.lr_warmup=1.0e-3",
                          "melgan.train.lr=2.0e-4")
    trainer = MelGANTrainer(config, SPEC, {"V001": 0}, torch.device("cpu"))
    assert [trainer.generator_lr(s) for s in (0, 5, 6, 10)] == pytest.approx([1e-3, 1e-3, 2e-4, 2e-4])
    assert trainer.opt_d.param_groups[0]["lr"] == pytest.approx(2e-4)
    # a trained run's generator optimizer ends at the adversarial rate
    run = train(tiny_features, tiny_corpus, tmp_path / "rate", short_config(tiny_config, 3), progress=False)
    lr = load_checkpoint(run)["optimizers"]["generator"]["param_groups"][0]["lr"]
    assert lr == pytest.approx(tiny_config.melgan.train.lr)   # step 2 is past the warm-up


def test_weight_average_follows_the_generator_and_is_what_inference_loads(tiny_features, tiny_corpus, tiny_config,
                                                                          tmp_path):
    from pipeline.systems.vocoders import MelGANVocoder
    from pipeline.train.melgan import MelGANTrainer, train
    trainer = MelGANTrainer(short_config(tiny_config, 3, "melgan.train.ema=0.9"), SPEC, {"V001": 0}, torch.device("cpu"))
    assert trainer.inference_generator is trainer.generator_ema
    before = [p.clone() for p in trainer.generator_ema.parameters()]
    with torch.no_grad():
        for p in trainer.generator.parameters():
            p.add_(1.0)
    trainer.update_average(step=100)        # past the early steps: the decay is ema itself
    for old, average, weight in zip(before, trainer.generator_ema.parameters(), trainer.generator.parameters()):
        assert torch.allclose(average, 0.9 * old + 0.1 * weight, atol=1e-6)
        assert not average.requires_grad
    trainer.update_average(step=0)          # the first step: the average moves 90 % of the way
    first = next(trainer.generator_ema.parameters())
    assert torch.allclose(first, 0.1 * 0.9 * before[0] + (1 - 0.1 * 0.9) * next(trainer.generator.parameters()),
                          atol=1e-5)
    assert MelGANTrainer(short_config(tiny_config, 3), SPEC, {"V001": 0}, torch.device("cpu")).generator_ema is None
    # a trained run's checkpoint holds the average beside the last weights, and the vocoder loads the average
    run = train(tiny_features, tiny_corpus, tmp_path / "ema", short_config(tiny_config, 3, "melgan.train.ema=0.9"),
                progress=False)
    models = load_checkpoint(run)["models"]
    assert any(not torch.equal(models["generator"][k], models["generator_ema"][k]) for k in models["generator"])
    vocoder = MelGANVocoder(run, torch.device("cpu"))
    meta = load_checkpoint(run)["meta"]
    mel = torch.randn(1, 80, 12) - 4
    for name, same in (("generator_ema", True), ("generator", False)):
        generator = Generator(**meta["generator"])
        generator.load_state_dict(models[name])
        with torch.no_grad():
            expected = remove_weight_norm(generator).eval()(mel)[0].numpy()
        assert np.allclose(vocoder(mel[0]), expected, atol=1e-5) is same


def test_finished_run_is_skipped_and_force_retrains(tiny_features, tiny_corpus, tiny_config, tmp_path):
    from pipeline.train.melgan import train
    config = short_config(tiny_config, 1)
    path = train(tiny_features, tiny_corpus, tmp_path, config, progress=False)
    stamp = path.stat().st_mtime_ns
    logs = []
    train(tiny_features, tiny_corpus, tmp_path, config, progress=False, log=logs.append)
    assert path.stat().st_mtime_ns == stamp and "up to date" in logs[0]
    # another config is another run: trains from scratch instead of resuming
    other = short_config(tiny_config, 1, "melgan.loss.stft=1.0")
    train(tiny_features, tiny_corpus, tmp_path, other, progress=False, log=logs.append)
    assert path.stat().st_mtime_ns != stamp and "from scratch" in logs[-1]
    stamp = path.stat().st_mtime_ns
    train(tiny_features, tiny_corpus, tmp_path, other, force=True, progress=False)
    assert path.stat().st_mtime_ns != stamp and load_checkpoint(path)["step"] == 1


def test_ratios_must_match_the_hop(tiny_features, tiny_corpus, tiny_config, tmp_path):
    from pipeline.train.melgan import train
    with pytest.raises(UserError, match="multiply to 128"):
        train(tiny_features, tiny_corpus, tmp_path / "x", short_config(tiny_config, 1, "melgan.generator.ratios=[4,4,4,2]"),
              progress=False)
    assert not (tmp_path / "x").exists()


def test_cli_help_and_one_line_errors(tmp_path):
    from pipeline.cli import main
    runner = CliRunner()
    result = runner.invoke(main, ["train-melgan", "--help"])
    assert result.exit_code == 0
    for option in ("--features", "--dataset", "--out", "--config", "--force", "--quiet", "OVERRIDES"):
        assert option in result.output
    out = tmp_path / "out"
    result = runner.invoke(main, ["train-melgan", "--features", str(tmp_path / "missing"), "--dataset", str(tmp_path),
                                  "--out", str(out), "--config", "tiny"])
    assert result.exit_code == 1 and result.output.startswith("Error:") and result.output.count("\n") == 1
    assert not out.exists()
    result = runner.invoke(main, ["train-melgan", "--features", str(tmp_path), "--dataset", str(tmp_path),
                                  "--out", str(out), "--config", "tiny", "melgan.train.nonsense=1"])
    assert result.exit_code == 1 and "unknown key" in result.output


def test_random_crops_are_aligned_with_the_mel():
    from pipeline.train.melgan import VoiceUtterance, random_crops
    hop = 160
    frames = 30
    audio = np.arange(frames * hop, dtype=np.float32)
    mel = np.repeat(np.arange(frames, dtype=np.float32)[None], 80, axis=0)   # frame index as value
    items = [VoiceUtterance("u", "V001", mel, audio), VoiceUtterance("short", "V002", mel[:, :4], audio[:4 * hop])]
    gen = torch.Generator().manual_seed(3)
    mels, wavs, ids = random_crops(items, {"V001": 0, "V002": 1}, 16, 10, hop, gen, 1e-5)
    assert mels.shape == (16, 80, 10) and wavs.shape == (16, 1600)
    for m, w, i in zip(mels, wavs, ids):
        if i == 0:   # frame k's samples are [k*hop, (k+1)*hop)
            assert w[0].item() == m[0, 0].item() * hop and w[-1].item() == (m[0, -1].item() + 1) * hop - 1
        else:        # a 4-frame utterance padded with the log floor and silence
            assert torch.all(m[:, 4:] == -5.0) and torch.all(w[4 * hop:] == 0)


def test_vocoder_can_train_on_vqvae_reconstructions(tiny_features, tiny_corpus, tiny_vqvae, tiny_config, tmp_path):
    """input_mels=vqvae: inputs are the VQ-VAE's same-voice reconstructions (aligned, same
    shape as the stored mels, but not equal to them); the run's identity includes the VQ-VAE."""
    from pipeline.systems.vqvae import load_vqvae
    from pipeline.train.melgan import load_voice_data, train
    _, stored, _ = load_voice_data(tiny_features, tiny_corpus)
    _, rebuilt, _ = load_voice_data(tiny_features, tiny_corpus, vqvae=load_vqvae(tiny_vqvae))
    assert [u.key for u in stored] == [u.key for u in rebuilt]
    for a, b in zip(stored, rebuilt):
        assert a.mel.shape == b.mel.shape and np.array_equal(a.audio, b.audio)
        assert not np.allclose(a.mel, b.mel)

    config = short_config(tiny_config, 2, "melgan.train.input_mels=vqvae")
    with pytest.raises(UserError, match="--vqvae"):
        train(tiny_features, tiny_corpus, tmp_path / "x", config, progress=False)
    path = train(tiny_features, tiny_corpus, tmp_path / "gta", config, progress=False, vqvae_checkpoint=tiny_vqvae)
    plain = train(tiny_features, tiny_corpus, tmp_path / "plain", short_config(tiny_config, 2), progress=False)
    assert load_checkpoint(path)["fingerprint"] != load_checkpoint(plain)["fingerprint"]
    assert math.isfinite(load_checkpoint(path)["history"][-1]["mel_l1"])
