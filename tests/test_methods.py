"""The original project's training methods and its self-cycle consistency: the vocoder alone
(method 1), the vocoder fine-tuning the VQ-VAE-2 (method 2), both trained together (method 3),
and the cycle objectives of the VQ-VAE-2, on tiny data."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from models.vqvae2 import VQVAE2, VQVAE2Config
from pipeline.contract.dataset import Dataset
from pipeline.core.checkpoint import load_checkpoint
from pipeline.core.errors import UserError
from tests.fixtures_melgan import short_config
from tests.fixtures_training import train_until_first_checkpoint

CYCLE = VQVAE2Config(channels=16, res_blocks=1, res_channels=8, bottom_dim=8, top_dim=8, bottom_codes=16,
                     top_codes=8, num_speakers=4, speaker_dim=4, restart_every=0, classifier_hidden=8)


def history(run) -> list[dict]:
    return [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("method", ["separate", "finetune", "joint"])
def test_each_method_lowers_its_losses_and_converts(method, tiny_features, tiny_corpus, tiny_vqvae, tiny_config,
                                                    tmp_path):
    from pipeline.systems.converter import Converter
    from pipeline.train.melgan import train
    config = short_config(tiny_config, 24, "melgan.train.log_every=4", "melgan.train.warmup_steps=24",
                          f"melgan.train.method={method}", "melgan.train.input_mels=ground_truth",
                          "melgan.loss.vqvae=45")       # the unit system's own losses as strong as the mel loss
    path = train(tiny_features, tiny_corpus, tmp_path / "melgan", config, progress=False,
                 vqvae_checkpoint=tiny_vqvae if method == "finetune" else None)
    rows = history(tmp_path / "melgan")
    assert rows[-1]["mel_l1"] < rows[0]["mel_l1"]
    ckpt = load_checkpoint(path)
    assert ckpt["meta"]["method"] == method and ("vqvae" in ckpt["models"]) == (method != "separate")
    if method != "separate":
        assert all(np.isfinite(r["vq_recon"]) for r in rows)
    if method == "joint":                       # a fresh VQ-VAE-2 learns from every speaker
        assert rows[-1]["vq_recon"] < rows[0]["vq_recon"]
        assert len(ckpt["meta"]["unit_system"]["speakers"]) > 2
    if method == "finetune":                    # the codebooks (the units) stay where they were
        before = load_checkpoint(tiny_vqvae)["models"]["vqvae"]
        after = ckpt["models"]["vqvae"]
        assert torch.equal(before["quant_bottom.embed"], after["quant_bottom.embed"])
        assert not torch.equal(before["decoder.0.weight"], after["decoder.0.weight"])
    converter = Converter(tiny_vqvae, path)
    assert (converter.vqvae is converter.vocoder.unit_system) == (method != "separate")
    audio = Dataset(tiny_corpus).synthesis()[0].source.read(16000)
    assert converter.convert(audio, "V002").shape == audio.shape


def test_finetune_needs_its_vqvae_and_ground_truth_inputs(tiny_features, tiny_corpus, tiny_config, tmp_path):
    from pipeline.train.melgan import train
    with pytest.raises(UserError, match="--vqvae"):
        train(tiny_features, tiny_corpus, tmp_path / "x", short_config(
            tiny_config, 2, "melgan.train.method=finetune", "melgan.train.input_mels=ground_truth"), progress=False)
    with pytest.raises(UserError, match="input_mels.*ground_truth with method joint"):
        short_config(tiny_config, 2, "melgan.train.method=joint", "melgan.train.input_mels=vqvae")


def test_finetuned_training_resumes_exactly(tiny_features, tiny_corpus, tiny_vqvae, tiny_config, tmp_path,
                                            monkeypatch):
    from pipeline.train.melgan import train
    config = short_config(tiny_config, 4, "melgan.train.method=finetune", "melgan.train.input_mels=ground_truth")
    kwargs = dict(progress=False, vqvae_checkpoint=tiny_vqvae)
    straight = train(tiny_features, tiny_corpus, tmp_path / "a", config, **kwargs)
    train_until_first_checkpoint(train, monkeypatch, tiny_features, tiny_corpus, tmp_path / "b", config, **kwargs)
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["step"] == 2
    resumed = train(tiny_features, tiny_corpus, tmp_path / "b", config, **kwargs)
    a, b = load_checkpoint(straight), load_checkpoint(resumed)
    for part in ("generator", "vqvae"):
        for name, tensor in a["models"][part].items():
            assert torch.equal(tensor, b["models"][part][name]), (part, name)


# ---------------------------------------------------------------------------- self-cycle
def test_cycle_losses_reach_encoder_and_decoder_but_train_the_classifier_on_real_mels_only():
    torch.manual_seed(0)
    model = VQVAE2(CYCLE).train()
    mel = torch.randn(3, 80, 12) - 2
    speaker, target = torch.tensor([0, 1, 2]), torch.tensor([3, 2, 1])
    enc = model.encode(mel)
    codebook = model.quant_bottom.embed.clone()
    cycle = model.cycle(mel, enc, speaker, target)
    assert cycle.converted.shape == mel.shape
    assert torch.equal(model.quant_bottom.embed, codebook)      # converted mels never move the codebooks
    assert all(p.requires_grad for p in model.parameters())       # the frozen re-encoding restores its weights
    again = model.encode(cycle.converted.detach())
    assert again.prequant.requires_grad                           # ... so a real encoding trains the encoder again
    (cycle.code_loss + cycle.recon_loss).backward(retain_graph=True)
    assert model.enc_bottom[0].weight.grad.abs().sum() > 0 and model.decoder[0].weight.grad.abs().sum() > 0
    model.zero_grad()
    cycle.speaker_loss.backward(retain_graph=True)
    assert model.decoder[0].weight.grad.abs().sum() > 0          # pushes the converted mel to the target voice
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.classifier.parameters())
    cycle.classifier_loss.backward()
    assert all(p.grad.abs().sum() > 0 for p in model.classifier.parameters())


def test_cycle_code_loss_trains_the_decoder_not_the_re_encoding():
    torch.manual_seed(0)
    model = VQVAE2(CYCLE).train()
    mel = torch.randn(2, 80, 12) - 2
    with torch.no_grad():
        enc = model.encode(mel)                                     # source codes as constants
    model.cycle(mel, enc, torch.tensor([0, 1]), torch.tensor([1, 0])).code_loss.backward()
    assert model.decoder[0].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.enc_bottom.parameters())


def test_cycle_training_logs_its_terms_and_switches_off(tiny_features, tiny_config, tmp_path):
    from pipeline.train.vqvae import train
    on = tiny_config.replace(["vqvae.train.steps=30", "vqvae.train.log_every=10", "vqvae.loss.cycle_codes=1.0",
                              "vqvae.loss.cycle_recon=1.0", "vqvae.model.classifier_hidden=16",
                              "vqvae.loss.cycle_speaker=0.1"])
    train(tiny_features, tmp_path / "on", on, progress=False)
    rows = history(tmp_path / "on")
    assert all(k in rows[-1] for k in ("cycle_codes", "cycle_recon", "cycle_speaker", "classifier"))
    assert rows[-1]["classifier"] < rows[0]["classifier"]        # it learns who speaks
    off = tiny_config.replace(["vqvae.train.steps=10", "vqvae.train.log_every=10"])
    train(tiny_features, tmp_path / "off", off, progress=False)
    assert "cycle_codes" not in history(tmp_path / "off")[-1]
    with pytest.raises(UserError, match="classifier_hidden"):
        tiny_config.replace(["vqvae.loss.cycle_speaker=0.1"])
