"""Train the speaker-conditioned VQ-VAE-2 on the log-mel features of every training speaker.

Data: every utterance of train/unit, train/voice and train/parallel (when present) of the
configured languages, read from ``<features>/<language>.h5``; a seeded share of utterances is
held out for validation. Batches are random fixed-length crops drawn from the step's own
generator (so a resumed run replays the uninterrupted one exactly); under torchrun each rank
trains on its share of that batch (``pipeline.core.training``). The checkpoint's meta holds
the speaker map, the feature spec, the model settings and the mel normalisation, which is all
``pipeline.systems.vqvae.load_vqvae`` needs. The ``train-vqvae`` stage calls ``train``.
"""
from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import numpy as np
import torch

from models.quantizer import code_perplexity
from models.vqvae2 import STRIDE, VQVAE2, VQVAE2Config
from pipeline.contract.dataset import speaker_key
from pipeline.contract.names import TRAIN_SPLITS
from pipeline.core.config import VQVAE, Config, TrainSchedule
from models.distributed import global_rows, local_rows
from pipeline.core.errors import UserError
from pipeline.core.outputs import Input
from pipeline.core.runtime import (ThreadGovernor, autocast, on_rank_zero, pick_device, seed_everything, step_macs,
                                   together, unwrap, wrap_ddp)
from pipeline.core.stamp import fingerprint
from pipeline.core.training import TrainLoop, claimed_run
from pipeline.features import feature_spec, mel_statistics, open_feature_dir, speaker_statistics
from pipeline.systems.vqvae import KIND

# Settings that change only logging, never the trained weights: not part of the resume fingerprint.
_NOT_FINGERPRINTED = ("checkpoint_every", "log_every")
# The learning-rate schedule and gradient clipping of both unit systems (the same in every preset).
LR_MILESTONES = (0.6, 0.8)      # fractions of the steps where the rate is multiplied by LR_GAMMA
LR_GAMMA = 0.5
GRAD_CLIP = 5.0                 # maximum global gradient norm


@dataclasses.dataclass
class TrainingData:
    keys: list[str]             # "<language>:<split>/<utt>" of every training utterance
    mels: list[np.ndarray]      # (n_mels, frames) float32
    speakers: np.ndarray        # speaker id per utterance
    speaker_map: dict[str, int]
    val_idx: np.ndarray         # held-out utterance indices
    train_idx: np.ndarray       # utterances batches are drawn from (long enough for a segment)


def load_training_data(features_dir, config: Config) -> tuple[TrainingData, list[str]]:
    """Read every training utterance of the configured languages into memory."""
    spec = feature_spec(config)
    stores = open_feature_dir(features_dir, spec, config.vqvae.languages)
    keys, mels, spk_names, fingerprints = [], [], [], []
    for store in stores:
        with store:
            fingerprints.append(store.fingerprint)
            for split in TRAIN_SPLITS:
                for key in store.keys(split):
                    keys.append(f"{store.language}:{key}")
                    mels.append(store.get(key))
                    spk_names.append(speaker_key(store.language, str(store.attrs(key)["speaker"])))
    if not keys:
        raise UserError(f"{features_dir}: the features hold no training utterances (train/unit, train/voice)")
    speaker_map = {name: i for i, name in enumerate(sorted(set(spk_names)))}
    speakers = np.array([speaker_map[n] for n in spk_names], dtype=np.int64)

    tcfg = config.vqvae.train
    order = np.random.default_rng(config.seed).permutation(len(keys))
    n_val = min(int(math.ceil(len(keys) * tcfg.val_fraction)), len(keys) - 1)
    val_idx = np.sort(order[:n_val])
    segment = tcfg.segment_frames
    train_idx = np.array(sorted(i for i in order[n_val:] if mels[i].shape[1] >= segment), dtype=np.int64)
    if len(train_idx) == 0:
        raise UserError(f"{features_dir}: no training utterance is at least vqvae.train.segment_frames="
                        f"{segment} frames long; lower it")
    return TrainingData(keys, mels, speakers, speaker_map, val_idx, train_idx), fingerprints


def set_speaker_normalization(model: VQVAE2, mels: list[np.ndarray], speakers) -> None:
    """Each training speaker's per-bin statistics over ``mels`` (``speakers``: their speaker ids)
    into the model (``VQVAE2Config.speaker_norm``); a speaker without utterances there keeps 0 / 1."""
    stats = speaker_statistics(mels, [int(s) for s in speakers])
    mean, std = model.speaker_mean.clone(), model.speaker_std.clone()
    for speaker, (m, s) in stats.items():
        mean[speaker], std[speaker] = torch.from_numpy(m), torch.from_numpy(s)
    model.set_speaker_normalization(mean, std)


def model_config(config: Config, num_speakers: int, n_mels: int) -> VQVAE2Config:
    """The model's settings: ``vqvae.model`` (its ``code_dim`` for both levels) and ``vqvae.quantizer``."""
    model = config.vqvae.model.to_dict()
    dim = model.pop("code_dim")
    return VQVAE2Config(n_mels=n_mels, num_speakers=num_speakers, bottom_dim=dim, top_dim=dim, **model,
                        **config.vqvae.quantizer.to_dict())


def learning_rate(tcfg: TrainSchedule, step: int) -> float:
    """Constant, multiplied by LR_GAMMA at each of the LR_MILESTONES (fractions of the total steps)."""
    passed = sum(step >= m * tcfg.steps for m in LR_MILESTONES)
    return tcfg.lr * LR_GAMMA ** passed


def fingerprinted_schedule(config: Config) -> dict:
    """The ``vqvae.train`` schedule as the trained weights depend on it (both unit systems train on it)."""
    return {k: v for k, v in config.vqvae.train.to_dict().items() if k not in _NOT_FINGERPRINTED}


def run_fingerprint(config: Config, data_fingerprints: list[str]) -> str:
    vq = {**config.vqvae.to_dict(), "train": fingerprinted_schedule(config)}
    return fingerprint(KIND, vq, feature_spec(config), config.seed, data_fingerprints)


def train(features_dir: str | os.PathLike, out_dir: str | os.PathLike, config: Config, force: bool = False,
          progress: bool = True, log=print) -> Path:
    """Train (or resume, or skip when finished) and return ``out_dir/checkpoint.pt``. A second
    run on the same ``out_dir`` fails at once while this one holds it."""
    out_dir = Path(out_dir)
    progress, log = on_rank_zero(progress, log)
    with claimed_run(out_dir, "train-vqvae", [Input("--features", features_dir)]):
        return _train(features_dir, out_dir, config, force, progress, log)


def _train(features_dir, out_dir: Path, config: Config, force: bool, progress: bool, log) -> Path:
    tcfg = config.vqvae.train
    amp = config.runtime.amp
    seed = config.seed
    with together():    # an error on any torchrun rank while setting up stops every rank
        device = pick_device(config.runtime.device)
        seed_everything(seed)
        data, data_fps = load_training_data(features_dir, config)
        spec = feature_spec(config)
        cfg = model_config(config, len(data.speaker_map), spec.n_mels)
        model = VQVAE2(cfg)
        governor = ThreadGovernor(config.runtime.threads,
                                  3 * step_macs(model, tcfg.batch_size * tcfg.segment_frames), log=log)
        mean, std = mel_statistics([data.mels[i] for i in data.train_idx])
        model.set_normalization(torch.from_numpy(mean), torch.from_numpy(std))
        if cfg.speaker_norm:
            set_speaker_normalization(model, [data.mels[i] for i in data.train_idx], data.speakers[data.train_idx])
        model.to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=tcfg.lr)
        meta = {"speakers": data.speaker_map, "feature_spec": spec.to_dict(), "model": dataclasses.asdict(cfg),
                "normalization": {"mean": mean.tolist(), "std": std.tolist()},
                "languages": list(config.vqvae.languages),
                "train_utterances": int(len(data.train_idx)), "val_keys": [data.keys[i] for i in data.val_idx]}
        loop = TrainLoop(run_dir=out_dir, kind=KIND, config=config.to_dict(),
                         fingerprint=run_fingerprint(config, data_fps), models={"vqvae": model},
                         optimizers={"adam": optimizer}, meta=meta, seed=seed,
                         total_steps=tcfg.steps, checkpoint_every=tcfg.checkpoint_every,
                         log_every=tcfg.log_every, validate_every=tcfg.checkpoint_every,
                         plot_groups=[["loss", "recon"], ["cpc"], ["cpc_acc"],
                                      ["cycle_codes", "cycle_recon", "cycle_speaker", "classifier"],
                                      ["ppl_b", "ppl_t"], ["used_b", "used_t"]], governor=governor,
                         batch_size=tcfg.batch_size, batch_key="vqvae.train.batch_size")
    if loop.begin(force, progress, log):
        return loop.checkpoint_path
    net = wrap_ddp(model, device, model.unused_parameters(cycle=config.vqvae.loss.cycle))
    segment = tcfg.segment_frames
    segment -= segment % STRIDE  # whole top-level frames: no padding inside training batches
    weights = torch.tensor([data.mels[i].shape[1] - segment + 1 for i in data.train_idx], dtype=torch.float64)
    batch_size = tcfg.batch_size

    def batch_fn(step: int, gen: torch.Generator):
        # Utterances weighted by their number of crop positions: every crop is equally likely.
        picks = torch.multinomial(weights, batch_size, replacement=True, generator=gen)
        starts = (torch.rand(batch_size, generator=gen, dtype=torch.float64) * weights[picks]).long()
        idx = data.train_idx[picks.numpy()]
        mel = torch.from_numpy(np.stack([data.mels[i][:, s:s + segment] for i, s in zip(idx, starts.tolist())]))
        return mel, torch.from_numpy(data.speakers[idx])

    def step_fn(batch, step: int) -> dict:
        return train_step(net, optimizer, batch, config.vqvae, step, device, amp)

    val_idx = data.val_idx[: tcfg.val_max_utterances]

    def validate_fn() -> dict:
        return evaluate(model, [data.mels[i] for i in val_idx], data.speakers[val_idx], device)

    loop.fit(batch_fn, step_fn, validate_fn if len(val_idx) else None, progress=progress)
    return loop.checkpoint_path


def train_step(net: torch.nn.Module, optimizer: torch.optim.Optimizer, batch, config: VQVAE, step: int,
               device: torch.device, amp: bool) -> dict:
    """One optimisation step on a (mel, speaker) batch; returns the step's metrics."""
    mel, spk = (t.to(device) for t in batch)
    tcfg, weights = config.train, config.loss
    for group in optimizer.param_groups:
        group["lr"] = learning_rate(tcfg, step)
    with autocast(device, amp):
        out = net(mel, spk)
    loss, metrics = unit_objective(out, weights)
    if weights.cycle:
        model = unwrap(net)
        cycle = model.cycle(mel, out.encoded, spk, other_speakers(spk, model.cfg.num_speakers))
        loss = loss + weights.cycle_codes * cycle.code_loss + weights.cycle_recon * cycle.recon_loss
        metrics.update(cycle_codes=cycle.code_loss.item(), cycle_recon=cycle.recon_loss.item())
        if cycle.speaker_loss is not None:
            loss = loss + weights.cycle_speaker * cycle.speaker_loss + cycle.classifier_loss
            metrics.update(cycle_speaker=cycle.speaker_loss.item(), classifier=cycle.classifier_loss.item())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), GRAD_CLIP)
    optimizer.step()
    enc = out.encoded
    return {"loss": loss.item(), **metrics,
            "ppl_b": enc.bottom.perplexity.item(), "ppl_t": enc.top.perplexity.item(),
            "used_b": enc.bottom.codes_in_use.item(), "used_t": enc.top.codes_in_use.item()}


def unit_objective(out, weights) -> tuple[torch.Tensor, dict]:
    """The VQ-VAE-2's own loss from one forward pass (``VQVAE2Output``): reconstruction (weight 1),
    commitment and weighted contrastive coding, with their metrics. Used by its
    own training and by the vocoder's methods 2 and 3, which train it beside the vocoder."""
    loss = out.recon_loss.float() + out.commit_loss
    metrics = {"recon": out.recon_loss.item(), "commit": out.commit_loss.item()}
    if out.cpc is not None:
        loss = loss + weights.cpc * out.cpc.loss.float()
        metrics.update(cpc=out.cpc.loss.item(), cpc_acc=out.cpc.accuracy.item())
    return loss, metrics


def other_speakers(speaker: torch.Tensor, num_speakers: int) -> torch.Tensor:
    """A random target speaker for every item, never the item's own (one speaker: itself); drawn
    for the global batch of a data-parallel run (``models.distributed``)."""
    if num_speakers < 2:
        return speaker
    shift = local_rows(torch.randint(1, num_speakers, (global_rows(len(speaker)),), device=speaker.device))
    return (speaker + shift) % num_speakers


@torch.no_grad()
def evaluate(model: VQVAE2, mels: list[np.ndarray], speakers: np.ndarray, device) -> dict:
    """Reconstruction L1 (normalised, frame-weighted) and code statistics over whole utterances."""
    model.eval()
    total, frames = 0.0, 0
    counts_b = torch.zeros(model.cfg.bottom_codes)
    counts_t = torch.zeros(model.cfg.top_codes)
    for mel, spk in zip(mels, speakers):
        x = torch.from_numpy(mel)[None].to(device)
        out = model(x, torch.tensor([int(spk)], device=device))
        total += out.recon_loss.item() * mel.shape[1]
        frames += mel.shape[1]
        counts_b += torch.bincount(out.encoded.bottom.ids.flatten().cpu(), minlength=model.cfg.bottom_codes)
        counts_t += torch.bincount(out.encoded.top.ids.flatten().cpu(), minlength=model.cfg.top_codes)
    return {"recon": total / max(frames, 1), "ppl_b": float(code_perplexity(counts_b)), "ppl_t": float(code_perplexity(counts_t)),
            "used_b": float((counts_b > 0).sum()), "used_t": float((counts_t > 0).sum())}
