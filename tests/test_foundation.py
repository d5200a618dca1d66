"""Foundation modules: configs, atomic writes, audio I/O errors, log-mel framing, CLI, and the
shared training loop (loss falls, resume replays the uninterrupted run exactly)."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from models.logmel import LogMel
from pipeline.cli import COMMANDS, main
from pipeline.core.audio import read_wav, write_wav
from pipeline.core.checkpoint import load_checkpoint
from pipeline.core.config import PRESETS, load_config
from pipeline.core.errors import UserError
from pipeline.core.io import atomic_dir, atomic_path
from pipeline.core.training import TrainLoop
from tests.fixtures_config import SPEC


# ---------------------------------------------------------------- configs
@pytest.mark.parametrize("preset", PRESETS)
def test_presets_load_with_every_section(preset):
    cfg = load_config(preset)
    for section in ("runtime", "features", "corpus", "vqvae", "melgan", "submission", "evaluate"):
        assert hasattr(cfg, section), section
    # The feature spec is shared by every preset so features and tests are interchangeable.
    assert cfg.features == load_config("tiny").features


def test_overrides_are_typed_and_unknown_keys_refused():
    cfg = load_config("tiny", ["seed=7", "runtime.device=cpu", "features.f_max=7600"])
    assert cfg.seed == 7 and cfg.runtime.device == "cpu" and cfg.features.f_max == 7600
    with pytest.raises(UserError, match="unknown key 'runtime.typo'"):
        cfg.replace(["runtime.typo=1"])
    with pytest.raises(UserError, match="key=value"):
        cfg.replace(["seed"])


def test_malformed_yaml_is_one_line_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\nb: }")
    with pytest.raises(UserError, match="malformed YAML") as err:
        load_config(bad)
    assert "\n" not in str(err.value.message)


# ---------------------------------------------------------------- atomic writes
def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_atomic_dir_replaces_whole_folder(tmp_path):
    target = tmp_path / "sub"
    with atomic_dir(target) as tmp:
        (tmp / "a").write_text("1")
    with atomic_dir(target) as tmp:
        (tmp / "b").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub"]


# ---------------------------------------------------------------- audio
def test_wav_round_trip_is_16bit_mono(tmp_path):
    audio = (0.5 * np.sin(np.arange(1600) / 5.0)).astype(np.float32)
    write_wav(tmp_path / "x.wav", audio, 16000)
    info = sf.info(str(tmp_path / "x.wav"))
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    np.testing.assert_allclose(read_wav(tmp_path / "x.wav", 16000), audio, atol=1 / 32768 + 1e-6)


@pytest.mark.parametrize("case, message", [
    ("missing", "no such audio file"),
    ("rate", "sample rate is 8000 Hz"),
    ("stereo", "2 channels"),
    ("empty", "audio is empty"),
    ("corrupt", "not a readable audio file"),
])
def test_bad_audio_gives_one_line_error(tmp_path, case, message):
    path = tmp_path / f"{case}.wav"
    if case == "rate":
        sf.write(str(path), np.zeros(800, np.float32), 8000, subtype="PCM_16")
    elif case == "stereo":
        sf.write(str(path), np.zeros((800, 2), np.float32), 16000, subtype="PCM_16")
    elif case == "empty":
        sf.write(str(path), np.zeros(0, np.float32), 16000, subtype="PCM_16")
    elif case == "corrupt":
        path.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunk")
    with pytest.raises(UserError, match=message) as err:
        read_wav(path, 16000)
    assert str(path) in err.value.message and "\n" not in err.value.message


# ---------------------------------------------------------------- log-mel
@pytest.mark.parametrize("num_samples", [1, 159, 160, 161, 431, 433, 1600, 16001])
def test_logmel_frame_count_is_ceil_of_hop(num_samples):
    spec = SPEC
    mel = LogMel(spec)(torch.randn(2, num_samples) * 0.1)
    assert mel.shape == (2, spec.n_mels, spec.num_frames(num_samples))
    assert torch.isfinite(mel).all()


def test_logmel_puts_a_tone_in_the_right_band_and_is_differentiable():
    spec = SPEC
    t = torch.arange(16000) / 16000
    wav = (0.5 * torch.sin(2 * np.pi * 1000 * t)).requires_grad_()
    mel = LogMel(spec)(wav)[0]
    import librosa
    centres = librosa.mel_frequencies(n_mels=spec.n_mels + 2, fmin=spec.f_min, fmax=spec.f_max)[1:-1]
    peak_band = int(mel[:, 10:-10].mean(1).argmax())
    assert abs(centres[peak_band] - 1000) < 80
    mel.mean().backward()
    assert wav.grad is not None and torch.isfinite(wav.grad).all()


# ---------------------------------------------------------------- CLI
def test_cli_lists_every_stage():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.output


# ---------------------------------------------------------------- training loop
def _regression_loop(run_dir, total_steps, seed=3):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    true_w = torch.tensor([[1.0, -2.0, 0.5, 3.0]])

    def batch_fn(step, gen):
        x = torch.randn(16, 4, generator=gen)
        return x, x @ true_w.T + 0.01 * torch.randn(16, 1, generator=gen)

    def step_fn(batch, step):
        x, y = batch
        loss = torch.nn.functional.mse_loss(model(torch.nn.functional.dropout(x, 0.1)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return {"loss": loss.item()}

    loop = TrainLoop(run_dir=run_dir, kind="toy", config={"k": 1}, fingerprint="f", models={"m": model},
                     optimizers={"m": opt}, meta={}, seed=seed, total_steps=total_steps, checkpoint_every=5,
                     log_every=5, plot_groups=[["loss"]])
    return loop, batch_fn, step_fn, model


def test_training_loop_loss_falls_and_resume_replays_exactly(tmp_path):
    loop, batch_fn, step_fn, full = _regression_loop(tmp_path / "a", 60)
    history = loop.fit(batch_fn, step_fn, progress=False)
    assert history[-1]["loss"] < 0.1 * history[0]["loss"]
    assert (tmp_path / "a" / "curves.png").stat().st_size > 0

    # Interrupted run: 15 steps, then a fresh process-like restart that resumes to 60.
    loop, batch_fn, step_fn, _ = _regression_loop(tmp_path / "b", 15)
    loop.fit(batch_fn, step_fn, progress=False)
    loop, batch_fn, step_fn, resumed = _regression_loop(tmp_path / "b", 60)
    assert loop.try_resume() and loop.step == 15
    loop.fit(batch_fn, step_fn, progress=False)
    for a, b in zip(full.parameters(), resumed.parameters()):
        assert torch.equal(a, b)
    ckpt = load_checkpoint(tmp_path / "b" / "checkpoint.pt", kind="toy")
    assert ckpt["step"] == 60 and len(ckpt["history"]) == 12


def test_resume_refuses_a_checkpoint_of_another_config(tmp_path):
    loop, batch_fn, step_fn, _ = _regression_loop(tmp_path, 5)
    loop.fit(batch_fn, step_fn, progress=False)
    other, *_ = _regression_loop(tmp_path, 5)
    other.fingerprint = "different"
    assert not other.try_resume(log=lambda msg: None)


def test_atomic_outputs_get_normal_permissions(tmp_path):
    with atomic_path(tmp_path / "f.txt") as tmp:
        tmp.write_text("x")
    with atomic_dir(tmp_path / "d") as tmp:
        (tmp / "a").write_text("1")
    import os
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o666 & ~mask
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o777 & ~mask
