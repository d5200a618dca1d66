"""No silent garbage: a diverged training run stops with one line and keeps its last good
checkpoint, submit refuses a vocoder whose output is garbage, and the validator reports wavs
that are silent, saturated, truncated or have an impossible header.

Everything runs on the tiny corpus and tiny preset, through the real command line where the
user would meet it (``CliRunner`` on ``pipeline.cli.main``).
"""
from __future__ import annotations

import io
import math
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner
from fixtures_submission import copy_submission, handmade_submission  # noqa: F401  (fixture)

from pipeline.cli import main
from pipeline.contract.filelists import find_filelists
from pipeline.core.audio import broken_audio, read_wav
from pipeline.core.checkpoint import load_checkpoint
from pipeline.core.errors import UserError
from pipeline.core.training import TrainLoop
from pipeline.systems.vocoders import MelGANVocoder

# A few MelGAN steps, checkpoints every 2, no validation or samples: seconds on one core.
SHORT_MELGAN = ("runtime.threads=1", "melgan.train.checkpoint_every=2", "melgan.train.log_every=1",
                "melgan.train.validate_every=0", "melgan.train.num_samples=0")


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def error_line(result) -> str:
    """Exit status 1 through a handled error: exactly one ``Error:`` line, the last one."""
    assert isinstance(result.exception, SystemExit), f"unhandled {result.exception!r}\n{result.output}"
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.output
    assert "Traceback" not in result.output
    return errors[0]


def no_temporaries(folder: Path) -> None:
    assert [p.name for p in folder.iterdir() if ".tmp" in p.name] == []


def finite_weights(checkpoint: Path) -> bool:
    models = load_checkpoint(checkpoint)["models"]
    return all(bool(torch.isfinite(t).all()) for state in models.values() for t in state.values()
               if torch.is_tensor(t) and t.is_floating_point())


# ============================================================================ training
def train_melgan(tiny_features, tiny_corpus, out: Path, *overrides: str):
    return invoke("train-melgan", "--features", tiny_features, "--dataset", tiny_corpus, "--out", out,
                  "--config", "tiny", "--quiet", *SHORT_MELGAN, *overrides)


def assert_good_vocoder(checkpoint: Path, step: int, tiny_features) -> None:
    """The checkpoint loads, holds ``step`` and finite weights, and vocodes real speech."""
    from pipeline.features import open_feature_dir
    assert finite_weights(checkpoint)
    vocoder = MelGANVocoder(checkpoint, torch.device("cpu"))
    assert vocoder.step == step
    store = open_feature_dir(tiny_features)[0]
    try:
        mel = torch.from_numpy(store.get(store.keys("train/voice")[0]))
    finally:
        store.close()
    assert broken_audio(vocoder(mel)) is None


def test_melgan_lr_1_stops_with_one_line_and_keeps_the_good_checkpoint(tiny_features, tiny_corpus, tmp_path):
    # Measured: the first adversarial update at lr=1 pins the tanh output at full scale; the losses stay finite.
    out = tmp_path / "melgan"
    result = train_melgan(tiny_features, tiny_corpus, out, "melgan.train.warmup_steps=2", "melgan.train.steps=6",
                          "melgan.train.lr=1")
    line = error_line(result)
    assert line.startswith("Error: training diverged at step 4: generator output is saturated"), line
    assert f"last good checkpoint: {out / 'checkpoint.pt'} at step 2" in line
    assert_good_vocoder(out / "checkpoint.pt", 2, tiny_features)
    no_temporaries(out)


def test_melgan_weights_broken_by_the_last_update_are_never_saved(tiny_features, tiny_corpus, tmp_path):
    # Step 4 is the first at lr=1 and a checkpoint step: its own batch still looked fine,
    # so only the check before saving sees what that update did.
    out = tmp_path / "melgan"
    result = train_melgan(tiny_features, tiny_corpus, out, "melgan.train.warmup_steps=3", "melgan.train.steps=4",
                          "melgan.train.lr=1")
    line = error_line(result)
    assert "training diverged at step 4: inference generator output is saturated" in line, line
    assert "at step 2;" in line
    assert_good_vocoder(out / "checkpoint.pt", 2, tiny_features)


@pytest.mark.parametrize("system", ["vqvae2", "vqmivc"])
def test_unit_system_nan_loss_stops_and_leaves_the_checkpoint_alone(system, tiny_features, tmp_path):
    out = tmp_path / system
    common = ("--features", tiny_features, "--out", out, "--config", "tiny", "--quiet", "runtime.threads=1",
              f"system={system}", "vqvae.train.steps=2", "vqvae.train.checkpoint_every=2",
              "vqvae.train.val_max_utterances=0")
    assert invoke("train-vqvae", *common).exit_code == 0
    good = (out / "checkpoint.pt").read_bytes()
    # another config: trains from scratch, so the old checkpoint is not this run's
    line = error_line(invoke("train-vqvae", *common, "vqvae.train.lr=1e6"))
    assert "training diverged at step 2: loss is nan (no checkpoint of this run was saved" in line, line
    assert (out / "checkpoint.pt").read_bytes() == good
    no_temporaries(out)


def toy_loop(run_dir: Path, losses: dict[int, float], break_weights_at: int | None = None):
    """A one-weight regression for 6 steps, checkpoints every 2; ``losses`` forces the loss a
    step reports, ``break_weights_at`` fills the weight with NaN in that step."""
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def step_fn(batch, step):
        loss = (model(batch) - 2 * batch).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step == break_weights_at:
            with torch.no_grad():
                model.weight.fill_(math.nan)
        return {"loss": losses.get(step, loss.item())}

    loop = TrainLoop(run_dir=run_dir, kind="toy", config={}, fingerprint="f", models={"m": model},
                     optimizers={"m": opt}, meta={}, seed=0, total_steps=6, checkpoint_every=2, log_every=1)
    return loop, (lambda step, gen: torch.randn(8, 1, generator=gen)), step_fn


@pytest.mark.parametrize("losses, weights_at, expected", [
    ({2: math.nan}, None, "training diverged at step 3: loss is nan"),
    ({2: math.inf}, None, "training diverged at step 3: loss is inf"),
    ({2: 3e9}, None, "training diverged at step 3: loss is 3e+09, beyond 1e+06"),
    ({}, 3, "training diverged at step 4: the m weights are not finite"),
])
def test_loop_stops_on_a_bad_loss_or_weights_and_names_the_last_checkpoint(tmp_path, losses, weights_at, expected):
    loop, batch_fn, step_fn = toy_loop(tmp_path, losses, weights_at)
    with pytest.raises(UserError) as info:
        loop.fit(batch_fn, step_fn, progress=False)
    message = info.value.message
    assert message.startswith(expected), message
    assert f"(last good checkpoint: {tmp_path / 'checkpoint.pt'} at step 2;" in message
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 2
    assert finite_weights(tmp_path / "checkpoint.pt")


# ============================================================================ submit
def silence(checkpoint: Path) -> None:
    """Zero the generator's output convolution (gain and bias; the weight-norm direction stays,
    so the weights stay finite): the vocoder then writes exact silence."""
    payload = torch.load(checkpoint, weights_only=True)
    state = payload["models"]["generator"]
    last = max(int(k.split(".")[1]) for k in state if k.startswith("net."))
    for key in (f"net.{last}.bias", f"net.{last}.parametrizations.weight.original0"):
        state[key].zero_()
    torch.save(payload, checkpoint)


def test_submit_refuses_a_silent_vocoder_and_writes_nothing(tiny_vqvae, tiny_features, tiny_corpus, tmp_path):
    run = tmp_path / "run"
    (run / "vqvae").mkdir(parents=True)
    shutil.copy(tiny_vqvae, run / "vqvae" / "checkpoint.pt")
    melgan = run / "melgan"
    assert train_melgan(tiny_features, tiny_corpus, melgan, "melgan.train.warmup_steps=2",
                        "melgan.train.steps=2").exit_code == 0
    silence(melgan / "checkpoint.pt")
    assert finite_weights(melgan / "checkpoint.pt")
    out = tmp_path / "submission"
    line = error_line(invoke("submit", "--dataset", tiny_corpus, "--run", run, "--out", out, "--no-zip", "--quiet",
                             "--jobs", "1"))
    source = str(tiny_corpus / "2019" / "english")
    assert line.startswith(f"Error: {source}"), line
    assert f"the output of the vocoder {melgan / 'checkpoint.pt'} is silent (every sample is 0)" in line, line
    assert not out.exists()
    no_temporaries(tmp_path)


# ============================================================================ validator
def wav_bytes(audio: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, audio, 16000, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


def patched(raw: bytes, chunk: bytes, offset: int, fmt: str, value: int) -> bytes:
    """``raw`` with one header field set: at ``offset`` from the start of ``chunk``'s id
    (b"RIFF" for the file's own size)."""
    at = raw.index(chunk) + offset
    return raw[:at] + struct.pack(fmt, value) + raw[at + struct.calcsize(fmt):]


NOISE = wav_bytes(np.random.default_rng(0).uniform(-0.3, 0.3, 4000))
BROKEN_WAVS = {
    "all zero": (wav_bytes(np.zeros(4000)), "silent (every sample is 0)"),
    "constant": (wav_bytes(np.full(4000, 0.25)), "silent (every sample is 0.25)"),
    "square wave at full scale": (wav_bytes(np.sign(np.sin(np.arange(4000) / 5.0))), "saturated"),
    "cut short": (NOISE[:len(NOISE) // 2], "truncated: the header declares 8000 bytes of samples"),
    "data size 4 GB": (patched(NOISE, b"data", 4, "<I", 0xFFFFFFFF), "the header declares 4294967295 bytes"),
    "data size past the end": (patched(NOISE, b"data", 4, "<I", 9000), "truncated: the header declares 9000"),
    "RIFF size absurd": (patched(NOISE, b"RIFF", 4, "<I", 10 ** 9), "impossible header: it declares a 1000000008"),
    "zero sample rate": (patched(NOISE, b"fmt ", 12, "<I", 0), "1 channel(s), 0 Hz"),
    "zero channels": (patched(NOISE, b"fmt ", 10, "<H", 0), "impossible header: 0 channel(s)"),
    "block align contradicts": (patched(NOISE, b"fmt ", 20, "<H", 7), "impossible header: block align 7"),
}


@pytest.mark.parametrize("kind", list(BROKEN_WAVS))
def test_validate_reports_a_broken_wav(kind, handmade_submission, tiny_corpus, tmp_path):
    raw, reason = BROKEN_WAVS[kind]
    sub = copy_submission(handmade_submission, tmp_path / "submission")
    name = find_filelists("english", None, tiny_corpus).wav_files[0]
    (sub / "2019" / "english" / "test" / name).write_bytes(raw)
    result = invoke("validate", sub, "--dataset", tiny_corpus)
    assert result.exit_code == 1, result.output
    assert "INVALID" in result.output and "Traceback" not in result.output, result.output
    problem = next((line for line in result.output.splitlines() if name in line), "")
    assert reason in problem, result.output


def test_the_valid_wavs_and_real_speech_pass(handmade_submission, tiny_corpus):
    assert invoke("validate", handmade_submission, "--dataset", tiny_corpus).exit_code == 0
    speech = read_wav(next((tiny_corpus / "2019" / "english" / "test").glob("*.wav")), 16000)
    assert broken_audio(speech) is None and broken_audio(0.01 * speech) is None
