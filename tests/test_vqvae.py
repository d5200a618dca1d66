"""VQ-VAE-2: quantizer mechanics and shape contracts on random tensors, then training on the
tiny corpus (loss falls, codebooks stay alive, resume replays the uninterrupted run exactly)."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from models.quantizer import VectorQuantizer
from models.augment import warp_frequency
from models.vqvae2 import TRACT_STEP, VQVAE2, VQVAE2Config, tract_factors
from pipeline.core.checkpoint import load_checkpoint
from pipeline.core.errors import UserError

torch.set_num_threads(1)

SMALL = VQVAE2Config(channels=16, res_blocks=1, res_channels=8, bottom_dim=8, top_dim=8, bottom_codes=16,
                     top_codes=8, num_speakers=3, speaker_dim=4, restart_every=0)


# ---------------------------------------------------------------- quantizer
def test_straight_through_gradient_is_identity():
    q = VectorQuantizer(8, 4, commitment=0.0).eval()
    z = torch.randn(2, 4, 5, requires_grad=True)
    w = torch.randn(2, 4, 5)
    (q(z).quantized * w).sum().backward()
    assert torch.allclose(z.grad, w)


def test_quantized_vectors_are_codebook_rows_of_the_nearest_code():
    q = VectorQuantizer(8, 4).eval()
    z = torch.randn(3, 4, 6)
    out = q(z)
    assert torch.equal(out.quantized, q.lookup(out.ids).permute(0, 2, 1))
    dists = ((z.permute(0, 2, 1)[..., None, :] - q.embed) ** 2).sum(-1)
    assert torch.equal(out.ids, dists.argmin(-1))
    assert out.loss.item() == pytest.approx(0.25 * ((z - out.quantized) ** 2).mean().item(), rel=1e-5)


def test_commitment_loss_pulls_encoder_output_toward_its_code():
    q = VectorQuantizer(8, 4, commitment=1.0).eval()
    z = torch.randn(1, 4, 10, requires_grad=True)
    out = q(z)
    out.loss.backward()
    before = ((z - out.quantized) ** 2).sum()
    with torch.no_grad():
        after = ((z - 0.1 * z.grad - out.quantized) ** 2).sum()
    assert after < before


def test_ema_update_moves_codes_toward_their_inputs():
    torch.manual_seed(0)
    q = VectorQuantizer(4, 2, decay=0.5, init_from_data=False)
    with torch.no_grad():
        q.embed.copy_(torch.tensor([[0.0, 0.0], [5.0, 5.0], [-5.0, 5.0], [5.0, -5.0]]))
        q.embed_avg.copy_(q.embed)
    target = torch.tensor([1.0, 1.0])
    z = (target[None, :, None] + 0.01 * torch.randn(1, 2, 50))   # every input is nearest code 0
    before = (q.embed[0] - target).norm()
    q.train()(z)
    after = (q.embed[0] - target).norm()
    assert after < 0.8 * before
    unused = torch.tensor([[5.0, 5.0], [-5.0, 5.0], [5.0, -5.0]])
    assert torch.allclose(q.embed[1:], unused, atol=1e-3)  # unused codes stay (up to Laplace smoothing)


def test_eval_mode_leaves_the_codebook_alone():
    q = VectorQuantizer(8, 4).eval()
    before = {k: v.clone() for k, v in q.state_dict().items()}
    q(torch.randn(2, 4, 7))
    assert all(torch.equal(before[k], v) for k, v in q.state_dict().items())


def test_first_training_batch_initialises_every_code_from_the_data():
    torch.manual_seed(0)
    q = VectorQuantizer(16, 3).train()
    z = 10.0 + torch.randn(2, 3, 40)          # far from the default near-zero codebook
    out = q(z)
    assert out.codes_in_use.item() > 8
    assert (q.embed.mean() - 10.0).abs() < 1.0


def test_dead_codes_restart_on_batch_vectors():
    torch.manual_seed(0)
    q = VectorQuantizer(8, 2, decay=0.9, restart_every=3, init_from_data=False).train()
    with torch.no_grad():
        q.embed.copy_(torch.randn(8, 2) * 0.01)
        q.embed[7] = torch.tensor([100.0, 100.0])      # never nearest: dead
        q.embed_avg.copy_(q.embed)
    for _ in range(2):
        q(torch.randn(1, 2, 64))
    assert q.embed[7, 0].item() > 50.0               # still dead until the restart period ends
    z = torch.randn(1, 2, 64)
    q(z)
    flat = z[0].t()
    assert (q.embed[7, 0] < 50.0) and (flat - q.embed[7]).norm(dim=1).min() < 0.1
    assert q.hits.sum() == 0                          # counters reset after each check


def test_restart_count_reports_dead_codes():
    q = VectorQuantizer(4, 2, init_from_data=False)
    q.hits.copy_(torch.tensor([3.0, 0.0, 1.0, 0.0]))
    assert q.restart_dead_codes(torch.randn(10, 2)) == 2


# ---------------------------------------------------------------- VQ-VAE-2 shapes
@pytest.mark.parametrize("frames", [1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 31, 64, 101])
def test_every_length_gives_exact_code_and_frame_counts(frames):
    torch.manual_seed(0)
    model = VQVAE2(SMALL)
    mel = torch.randn(2, 80, frames)
    model.eval()
    enc = model.encode(mel)
    assert enc.bottom.ids.shape == (2, (frames + 1) // 2)
    assert enc.top.ids.shape == (2, (frames + 3) // 4)
    assert enc.bottom.quantized.shape == enc.prequant.shape == (2, 8, (frames + 1) // 2)
    mel_out = model.decode_codes(enc.top.ids, enc.bottom.ids, torch.tensor([0, 2]), frames)
    assert mel_out.shape == (2, 80, frames) and torch.isfinite(mel_out).all()
    model.train()
    out = model(mel, torch.tensor([1, 2]))
    assert out.mel.shape == (2, 80, frames)
    (out.recon_loss + out.commit_loss).backward()
    assert model.enc_bottom[0].weight.grad is not None and model.speaker.weight.grad is not None


def test_decode_refuses_wrong_code_counts():
    model = VQVAE2(SMALL).eval()
    with pytest.raises(ValueError, match="need"):
        model.decode_codes(torch.zeros(1, 2, dtype=torch.long), torch.zeros(1, 3, dtype=torch.long),
                           torch.tensor([0]), 9)


def test_speaker_embedding_changes_the_decoded_mel_but_not_the_codes():
    torch.manual_seed(0)
    model = VQVAE2(SMALL).eval()
    mel = torch.randn(1, 80, 20)
    enc = model.encode(mel)
    a = model.decode_codes(enc.top.ids, enc.bottom.ids, torch.tensor([0]), 20)
    b = model.decode_codes(enc.top.ids, enc.bottom.ids, torch.tensor([1]), 20)
    assert not torch.allclose(a, b)


def _decoder_reach(cfg: VQVAE2Config) -> int:
    """How many output frames change when one bottom code vector in the middle changes."""
    torch.manual_seed(0)
    model = VQVAE2(cfg).eval()
    top, bottom, spk = torch.randn(1, cfg.top_dim, 20), torch.randn(1, cfg.bottom_dim, 40), torch.tensor([1])
    changed = bottom.clone()
    changed[..., 20] += 1.0
    with torch.no_grad():
        diff = (model.decode(top, changed, spk, 80) - model.decode(top, bottom, spk, 80)).abs().amax(1)[0]
    return int((diff > 0).sum())


def test_dilated_decoder_blocks_widen_the_context_of_each_code():
    plain = _decoder_reach(dataclasses.replace(SMALL, res_blocks=2))
    dilated = _decoder_reach(dataclasses.replace(SMALL, res_blocks=2, decoder_blocks=4))
    # conv3 + 2 undilated blocks: 7 codes (14 frames and the upsampling's overlap) against
    # conv3 + blocks dilated 1, 2, 4, 8: 33 codes
    assert plain <= 2 * 7 + 4 and dilated >= 2 * 33
    assert VQVAE2Config().decoder_blocks == 0   # checkpoints from before the key: as first built


def test_the_run_fingerprint_is_the_unit_settings_less_logging(tiny_config):
    from pipeline.train.vqvae import run_fingerprint
    base = run_fingerprint(tiny_config, ["data"])
    for change in ("vqvae.model.decoder_blocks=3", "vqvae.quantizer.decay=0.9", "vqvae.loss.cpc=2.0",
                   "vqvae.train.lr=1e-3", "features.n_mels=40", "seed=3"):
        assert run_fingerprint(tiny_config.replace([change]), ["data"]) != base, change
    assert run_fingerprint(tiny_config, ["other data"]) != base
    # logging, and what only conversion reads, never make a run train again
    for change in ("vqvae.train.checkpoint_every=7", "vqvae.train.log_every=3", "conversion.tract_search=0.2",
                   "melgan.train.steps=5"):
        assert run_fingerprint(tiny_config.replace([change]), ["data"]) == base, change


def test_tract_factors_are_a_symmetric_log_grid_through_one():
    assert torch.equal(tract_factors(0.0), torch.ones(1, dtype=torch.float64))
    grid = tract_factors(0.3)
    assert len(grid) % 2 == 1 and grid[len(grid) // 2] == 1.0
    assert torch.allclose(grid[0], torch.tensor(1 / 1.3, dtype=torch.float64))
    assert torch.allclose(grid[-1], torch.tensor(1.3, dtype=torch.float64))
    assert torch.allclose(grid * grid.flip(0), torch.ones_like(grid))
    steps = grid.log().diff()
    assert steps.max() <= TRACT_STEP and torch.allclose(steps, steps[0].expand_as(steps))


def test_tract_fit_is_the_relative_quantisation_error_of_each_stretch():
    torch.manual_seed(0)
    model = VQVAE2(SMALL).eval()
    mel = torch.randn(1, 80, 37)
    factors = torch.tensor([0.8, 1.0, 1.25], dtype=torch.float64)
    errors = model.tract_fit(mel, factors, 0.0, 8000.0)
    for factor, error in zip(factors, errors):
        enc = model.encode(warp_frequency(mel, factor[None], 0.0, 8000.0))
        z, q = enc.prequant, enc.bottom.quantized
        assert torch.allclose(error, ((z - q) ** 2).sum() / (z ** 2).sum(), rtol=1e-4)
    assert errors[0] != errors[2]
    with pytest.raises(ValueError, match="one utterance"):
        model.tract_fit(mel.expand(2, -1, -1), factors, 0.0, 8000.0)


def test_normalisation_statistics_travel_in_the_state_dict():
    model = VQVAE2(SMALL)
    model.set_normalization(torch.full((80,), -2.0), torch.full((80,), 0.5))
    other = VQVAE2(SMALL)
    other.load_state_dict(model.state_dict())
    x = torch.randn(1, 80, 5)
    assert torch.allclose(other.normalize(x), (x + 2.0) / 0.5)
    assert torch.allclose(other.denormalize(other.normalize(x)), x, atol=1e-6)


def _own_stats(mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return mel.mean(-1), mel.std(-1, unbiased=False)


def test_speaker_norm_makes_the_codes_blind_to_a_recording_channel():
    """A channel (a gain and an offset per mel band) changes every frame of a speaker alike; with
    speaker_norm each speaker is standardised by its own statistics, so the codes stay the same."""
    mel = torch.randn(1, 80, 40)
    channel = mel * torch.linspace(0.5, 2.0, 80)[None, :, None] + torch.linspace(-3.0, 1.0, 80)[None, :, None]
    torch.manual_seed(0)
    model = VQVAE2(dataclasses.replace(SMALL, speaker_norm=True)).eval()
    a, b = model.encode(mel, _own_stats(mel)), model.encode(channel, _own_stats(channel))
    assert torch.equal(a.bottom.ids, b.bottom.ids) and torch.equal(a.top.ids, b.top.ids)
    assert torch.allclose(a.prequant, b.prequant, atol=1e-4)
    # without statistics each item is standardised by its own, here the same thing
    assert torch.equal(model.encode(channel).bottom.ids, b.bottom.ids)
    torch.manual_seed(0)
    plain = VQVAE2(SMALL).eval()
    assert not torch.allclose(plain.encode(mel).prequant, plain.encode(channel).prequant, atol=1e-2)


def test_training_speakers_are_encoded_with_their_own_statistics():
    torch.manual_seed(0)
    model = VQVAE2(dataclasses.replace(SMALL, speaker_norm=True)).eval()
    mean, std = torch.randn(3, 80), torch.rand(3, 80) + 0.5
    model.set_speaker_normalization(mean, std)
    other = VQVAE2(dataclasses.replace(SMALL, speaker_norm=True))
    other.load_state_dict(model.state_dict())
    mel, spk = torch.randn(2, 80, 16), torch.tensor([2, 0])
    with torch.no_grad():
        out = model(mel, spk)
        expected = model.encode(mel, (mean[spk], std[spk]))
    assert torch.equal(out.encoded.bottom.ids, expected.bottom.ids)
    assert torch.allclose(other.speaker_norm_of(spk)[1], std[spk])
    assert VQVAE2(SMALL).speaker_norm_of(spk) is None


# ---------------------------------------------------------------- training on the tiny corpus
def _history(ckpt_path):
    return [json.loads(line) for line in (ckpt_path.parent / "history.jsonl").read_text().splitlines()]


def test_training_loss_falls_and_codebooks_stay_alive(tiny_vqvae, tiny_config):
    hist = _history(tiny_vqvae)
    assert hist[-1]["step"] == tiny_config.vqvae.train.steps
    assert hist[-1]["recon"] < 0.75 * hist[0]["recon"]
    val = [r for r in hist if "val_recon" in r]
    assert len(val) >= 2 and val[-1]["val_recon"] < val[0]["val_recon"]
    k_b = tiny_config.vqvae.model.bottom_codes
    assert hist[-1]["ppl_b"] > 4 and val[-1]["val_used_b"] > k_b / 4
    assert (tiny_vqvae.parent / "curves.png").stat().st_size > 1000


def test_checkpoint_meta_has_what_inference_needs(tiny_vqvae, tiny_corpus):
    from pipeline.contract.dataset import Dataset
    ckpt = load_checkpoint(tiny_vqvae, kind="vqvae")
    meta = ckpt["meta"]
    assert meta["speakers"] == Dataset(tiny_corpus).speaker_ids()
    assert {"V001", "V002"} <= set(meta["speakers"])
    assert meta["feature_spec"]["hop_length"] == 160
    assert len(meta["normalization"]["mean"]) == 80 and min(meta["normalization"]["std"]) > 0
    assert meta["model"]["num_speakers"] == len(meta["speakers"])
    assert meta["val_keys"] and all(k.startswith("english:train/") for k in meta["val_keys"])


def test_finished_training_is_skipped(tiny_vqvae, tiny_features, tiny_config):
    from pipeline.train.vqvae import train
    stamp = tiny_vqvae.stat().st_mtime_ns
    assert train(tiny_features, tiny_vqvae.parent, tiny_config, progress=False) == tiny_vqvae
    assert tiny_vqvae.stat().st_mtime_ns == stamp


def test_missing_features_is_one_clear_error(tmp_path, tiny_config):
    from pipeline.train.vqvae import train
    with pytest.raises(UserError, match="no features file"):
        train(tmp_path / "nothing", tmp_path / "out", tiny_config, progress=False)
    assert not (tmp_path / "out" / "checkpoint.pt").exists()


@pytest.mark.slow
def test_resume_after_a_kill_replays_the_uninterrupted_run(tiny_features, tiny_config, tmp_path, monkeypatch):
    from pipeline.core import training
    from pipeline.train.vqvae import train
    # restart_every 7 puts a dead-code restart on each side of the interruption at step 10.
    config = tiny_config.replace(["vqvae.train.steps=20", "vqvae.train.checkpoint_every=10",
                                  "vqvae.quantizer.restart_every=7"])
    straight = train(tiny_features, tmp_path / "straight", config, progress=False)

    real_save = training.TrainLoop.save

    def save_then_die(self):
        real_save(self)
        raise KeyboardInterrupt  # a kill right after the step-10 checkpoint

    monkeypatch.setattr(training.TrainLoop, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_features, tmp_path / "resumed", config, progress=False)
    monkeypatch.setattr(training.TrainLoop, "save", real_save)
    assert load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")["step"] == 10
    resumed = train(tiny_features, tmp_path / "resumed", config, progress=False)

    a, b = load_checkpoint(straight), load_checkpoint(resumed)
    assert a["step"] == b["step"] == 20
    for name, tensor in a["models"]["vqvae"].items():
        assert torch.equal(tensor, b["models"]["vqvae"][name]), name
    assert [r["recon"] for r in a["history"]] == [r["recon"] for r in b["history"]]
