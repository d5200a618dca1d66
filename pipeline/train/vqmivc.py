"""Train VQMIVC (``zs2020 train-vqvae`` with ``system: vqmivc``) on the log-mels and pitch of
every training speaker.

Data: the same utterances, held-out share and crop weighting as the VQ-VAE-2
(``pipeline.train.vqvae.load_training_data``: every train split of ``vqvae.languages``), plus
each utterance's pitch (``pipeline.pitch``), computed once at start from the wav the features
were made from (its path is stored in the features file) and kept in memory. Batches are random
crops of mel and pitch at the same frames, drawn from the step's own generator; the schedule is
``vqvae.train`` (steps, batch, rate, segment, checkpoints), the codebook ``vqvae.quantizer``, the
model ``vqmivc.model``. With ``vqmivc.perturb.warp`` the content encoder sees a copy of each crop
stretched along frequency, its factor drawn from the same generator, so resuming replays it.

One step: one forward of the model; then ``vqmivc.mi.updates`` updates of the CLUB estimators
(their own Adam) on the detached content codes, speaker vectors and pitch; then the main update:
L1 reconstruction + commitment + InfoNCE (``vqvae.loss.cpc``) + the weighted CLUB upper bounds of I(content;
speaker), I(content; log-F0) and I(log-F0; speaker), which send gradients into the encoders.
Both optimizers and the estimators are in the checkpoint, so a resumed run replays the
uninterrupted one exactly. Under torchrun each rank trains on its share of every batch: the model
through DistributedDataParallel, the estimators with their gradients averaged over the ranks, the
CLUB's shuffled pairs drawn over the global batch (``models.distributed``). Before every
checkpoint each training speaker's embedding, averaged over its utterances, is stored in the
meta: decoding by speaker name (``--target V001``) uses it.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.augment import stretch_factors, warp_frequency
from models.mi import CLUB
from models.quantizer import code_perplexity
from models.vqmivc import STRIDE, VQMIVC, VQMIVCConfig, VQMIVCOutput
from pipeline.core.audio import read_wav
from pipeline.core.config import Config
from pipeline.core.errors import UserError
from pipeline.core.outputs import Input
from pipeline.core.pool import parallel_map
from pipeline.core.runtime import (ThreadGovernor, autocast, average_gradients, on_rank_zero, pick_device,
                                   seed_everything, step_macs, together, unwrap, wrap_ddp)
from pipeline.core.stamp import fingerprint
from pipeline.core.threads import pool_size
from pipeline.core.training import TrainLoop, claimed_run
from pipeline.features import feature_spec, mel_statistics, open_feature_dir
from pipeline.pitch import PITCH_CEILING_HZ, PITCH_FLOOR_HZ, pitch_features
from pipeline.systems.vqmivc import KIND
from pipeline.train.vqvae import GRAD_CLIP, TrainingData, fingerprinted_schedule, learning_rate, load_training_data

# estimator name -> (loss weight key, metric suffix)
MI_TERMS = {"content_speaker": ("mi_content_speaker", "cs"), "content_pitch": ("mi_content_pitch", "cp"),
            "pitch_speaker": ("mi_pitch_speaker", "ps")}
EMBEDDING_UTTERANCES = 10       # utterances averaged per training speaker's stored embedding
PITCH_TASKS_PER_WORKER = 200    # below this many utterances per CPU, a worker process is not worth starting


# ---------------------------------------------------------------------------------------- data
def _utterance_pitch(task: tuple) -> np.ndarray:
    path, frames, spec, floor, ceiling, where = task
    audio = read_wav(path, spec.sample_rate)
    if spec.num_frames(len(audio)) != frames:
        raise UserError(f"{where}: its wav {path} gives {spec.num_frames(len(audio))} frames, the features "
                        f"{frames}: re-run `zs2020 features --force`")
    return pitch_features(audio, spec, floor, ceiling)


def load_pitch(features_dir, config: Config, data: TrainingData, progress: bool = True) -> list[np.ndarray]:
    """(2, frames) pitch of every training utterance, from the wavs the features were made from."""
    spec = feature_spec(config)
    stores = {s.language: s for s in open_feature_dir(features_dir, spec, config.vqvae.languages)}
    try:
        tasks = []
        for key, mel in zip(data.keys, data.mels):
            language, name = key.split(":", 1)
            store = stores[language]
            path = store.dataset_root / str(store.attrs(name)["path"])
            if not path.is_file():
                raise UserError(f"{store.path}: the wav of {name} ({path}) is gone; the pitch needs the dataset "
                                f"the features were made from (re-run `zs2020 features`)")
            tasks.append((path, mel.shape[1], spec, PITCH_FLOOR_HZ, PITCH_CEILING_HZ, f"{store.path} {name}"))
    finally:
        for store in stores.values():
            store.close()
    # spawn: this process already runs torch, whose OpenMP threads a fork can deadlock
    jobs = pool_size(None, len(tasks) // PITCH_TASKS_PER_WORKER + 1)
    return list(parallel_map(_utterance_pitch, tasks, jobs, desc="pitch", unit="utt", progress=progress,
                             start="spawn"))


def crop_sampler(data: TrainingData, pitch: list[np.ndarray], segment: int, batch_size: int, config: Config,
                 spec) -> Callable[[int, torch.Generator], dict[str, torch.Tensor]]:
    """The training loop's batch function: ``batch_size`` random crops of ``segment`` frames from
    the training utterances, as the model's inputs (mel, pitch[, content_mel]), every draw from
    the step's generator so that a resumed run replays them."""
    # Utterances weighted by their number of crop positions: every crop is equally likely.
    weights = torch.tensor([data.mels[i].shape[1] - segment + 1 for i in data.train_idx], dtype=torch.float64)
    warp = config.vqmivc.perturb.warp

    def stack(arrays: list[np.ndarray], crops) -> torch.Tensor:
        return torch.from_numpy(np.stack([arrays[i][:, s:s + segment] for i, s in crops]))

    def batch_fn(step: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        picks = torch.multinomial(weights, batch_size, replacement=True, generator=gen)
        starts = (torch.rand(batch_size, generator=gen, dtype=torch.float64) * weights[picks]).long()
        crops = list(zip(data.train_idx[picks.numpy()], starts.tolist()))
        batch = {"pitch": stack(pitch, crops), "mel": stack(data.mels, crops)}
        if warp:    # what the content encoder sees: the crop stretched by a factor of its own
            batch["content_mel"] = warp_frequency(batch["mel"], stretch_factors(batch_size, gen, warp), spec.f_min,
                                                  spec.f_max)
        return batch

    return batch_fn


def model_config(config: Config, n_mels: int) -> VQMIVCConfig:
    """The model's settings: ``vqmivc.model`` and the codebook's of ``vqvae.quantizer``."""
    q = config.vqvae.quantizer
    return VQMIVCConfig(n_mels=n_mels, **config.vqmivc.model.to_dict(), decay=q.decay, restart_every=q.restart_every)


def build_estimators(cfg: VQMIVCConfig, config: Config) -> nn.ModuleDict:
    """One CLUB estimator per mutual-information term with a positive weight."""
    hidden = config.vqmivc.mi.hidden
    shapes = {"content_speaker": (cfg.speaker_dim, cfg.code_dim), "content_pitch": (STRIDE, cfg.code_dim),
              "pitch_speaker": (cfg.speaker_dim, 1)}
    return nn.ModuleDict({name: CLUB(*shapes[name], hidden) for name, (weight, _) in MI_TERMS.items()
                          if getattr(config.vqmivc.loss, weight) > 0})


def mi_pairs(out: VQMIVCOutput, pitch: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """(x, y) of each term: the estimators model q(y | x).
    content_speaker: utterance speaker vector vs each content frame; content_pitch: the log-F0
    of the two 10 ms frames under a content frame vs that frame; pitch_speaker: speaker vector
    vs each frame's log-F0. ``pitch`` is (B, 2, T) with T a multiple of STRIDE. Only the log-F0
    channel counts as pitch here: the voiced flag follows the phones, which the content codes
    must keep."""
    content = out.encoded.quant.quantized.transpose(1, 2).float()          # (B, T/2, D)
    b, _, t = pitch.shape
    lf0 = pitch[:, :1].transpose(1, 2)                                     # (B, T, 1)
    under = lf0.reshape(b, t // STRIDE, STRIDE)                            # (B, T/2, 2)
    speaker = out.speaker.float()
    return {"content_speaker": (speaker, content), "content_pitch": (under, content),
            "pitch_speaker": (speaker, lf0)}


def run_fingerprint(config: Config, data_fingerprints: list[str]) -> str:
    return fingerprint(KIND, config.vqmivc, fingerprinted_schedule(config), config.vqvae.quantizer,
                       config.vqvae.loss.cpc, list(config.vqvae.languages), feature_spec(config), config.seed, data_fingerprints)


@torch.no_grad()
def speaker_embeddings(model: VQMIVC, data: TrainingData, device) -> dict[str, list[float]]:
    """Each training speaker's embedding averaged over (up to ``EMBEDDING_UTTERANCES`` of) its utterances."""
    was_training = model.training
    model.eval()
    table = {}
    for name, sid in sorted(data.speaker_map.items()):
        mine = np.flatnonzero(data.speakers == sid)[:EMBEDDING_UTTERANCES]
        vectors = [model.speaker_embedding(torch.from_numpy(data.mels[i])[None].to(device))[0] for i in mine]
        table[name] = torch.stack(vectors).mean(0).float().cpu().tolist()
    model.train(was_training)
    return table


# ---------------------------------------------------------------------------------------- training
def train(features_dir: str | os.PathLike, out_dir: str | os.PathLike, config: Config, force: bool = False,
          progress: bool = True, log=print) -> Path:
    """Train (or resume, or skip when finished) and return ``out_dir/checkpoint.pt``."""
    out_dir = Path(out_dir)
    progress, log = on_rank_zero(progress, log)
    with claimed_run(out_dir, "train-vqvae", [Input("--features", features_dir)]):
        return _train(features_dir, out_dir, config, force, progress, log)


def _train(features_dir, out_dir: Path, config: Config, force: bool, progress: bool, log) -> Path:
    tcfg = config.vqvae.train
    seed = config.seed
    with together():    # an error on any torchrun rank while setting up stops every rank
        device = pick_device(config.runtime.device)
        seed_everything(seed)
        data, data_fps = load_training_data(features_dir, config)
        spec = feature_spec(config)
        cfg = model_config(config, spec.n_mels)
        model = VQMIVC(cfg)
        estimators = build_estimators(cfg, config)
        segment = tcfg.segment_frames - tcfg.segment_frames % STRIDE
        governor = ThreadGovernor(config.runtime.threads, 3 * step_macs(model, tcfg.batch_size * segment), log=log)
        mean, std = mel_statistics([data.mels[i] for i in data.train_idx])
        model.set_normalization(torch.from_numpy(mean), torch.from_numpy(std))
        model.to(device)
        estimators.to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=tcfg.lr)
        optimizers = {"adam": optimizer}
        mi_optimizer = None
        if len(estimators):
            mi_optimizer = optimizers["mi"] = torch.optim.Adam(estimators.parameters(), lr=config.vqmivc.mi.lr)
        meta = {"speakers": data.speaker_map, "feature_spec": spec.to_dict(), "model": dataclasses.asdict(cfg),
                "normalization": {"mean": mean.tolist(), "std": std.tolist()},
                "pitch": {"floor_hz": PITCH_FLOOR_HZ, "ceiling_hz": PITCH_CEILING_HZ},
                "languages": list(config.vqvae.languages),
                "train_utterances": int(len(data.train_idx)), "val_keys": [data.keys[i] for i in data.val_idx],
                "speaker_embeddings": {}}

        def refresh_embeddings(step: int) -> None:
            meta["speaker_embeddings"] = speaker_embeddings(model, data, device)

        loop = TrainLoop(run_dir=out_dir, kind=KIND, config=config.to_dict(),
                         fingerprint=run_fingerprint(config, data_fps), models={"vqmivc": model, "mi": estimators},
                         optimizers=optimizers, meta=meta, seed=seed, total_steps=tcfg.steps,
                         checkpoint_every=tcfg.checkpoint_every, log_every=tcfg.log_every,
                         validate_every=tcfg.checkpoint_every, before_save=refresh_embeddings, governor=governor,
                         plot_groups=[["loss", "recon"], ["cpc", "commit"], ["cpc_acc"], ["mi_cs", "mi_cp", "mi_ps"],
                                      ["ppl"], ["used"]],
                         batch_size=tcfg.batch_size, batch_key="vqvae.train.batch_size")
    if loop.begin(force, progress, log):
        return loop.checkpoint_path
    with together():
        pitch = load_pitch(features_dir, config, data, progress=progress)
    batch_fn = crop_sampler(data, pitch, segment, tcfg.batch_size, config, spec)
    net = wrap_ddp(model, device)

    def step_fn(batch, step: int) -> dict:
        return train_step(net, estimators, optimizer, mi_optimizer, batch, config, step, device)

    val_idx = data.val_idx[: tcfg.val_max_utterances]

    def validate_fn() -> dict:
        return evaluate(model, [data.mels[i] for i in val_idx], [pitch[i] for i in val_idx], device)

    loop.fit(batch_fn, step_fn, validate_fn if len(val_idx) else None, progress=progress)
    return loop.checkpoint_path


def train_step(net: nn.Module, estimators: nn.ModuleDict, optimizer: torch.optim.Optimizer,
               mi_optimizer: torch.optim.Optimizer | None, batch, config: Config, step: int, device) -> dict:
    """Estimator updates on detached inputs, then one main update; returns the step's metrics.
    ``net``: the VQMIVC model, or its DistributedDataParallel wrapper under torchrun."""
    batch = {name: t.to(device) for name, t in batch.items()}    # mel, pitch [, content_mel]
    pitch = batch["pitch"]
    tcfg, weights = config.vqvae.train, config.vqmivc.loss
    for group in optimizer.param_groups:
        group["lr"] = learning_rate(tcfg, step)
    model = unwrap(net)
    with autocast(device, config.runtime.amp):
        out = net(**batch)
    pairs = {name: xy for name, xy in mi_pairs(out, pitch).items() if name in estimators}
    metrics = {}
    if mi_optimizer is not None:
        for _ in range(config.vqmivc.mi.updates):
            mi_optimizer.zero_grad(set_to_none=True)
            likelihoods = {name: estimators[name].log_likelihood(x.detach(), y.detach()) for name, (x, y) in pairs.items()}
            (-sum(likelihoods.values())).backward()
            average_gradients(estimators)
            mi_optimizer.step()
        metrics.update({f"lld_{MI_TERMS[n][1]}": v.item() for n, v in likelihoods.items()})
    recon = out.recon_loss.float() + (out.recon_pre.float() if model.decoder.postnet is not None else 0.0)
    loss = recon + config.vqvae.quantizer.commitment * out.commit_loss
    metrics.update(recon=out.recon_loss.item(), commit=out.commit_loss.item())
    if out.cpc is not None:
        loss = loss + config.vqvae.loss.cpc * out.cpc.loss.float()
        metrics.update(cpc=out.cpc.loss.item(), cpc_acc=out.cpc.accuracy.item())
    for name, (x, y) in pairs.items():
        weight, short = MI_TERMS[name]
        bound = estimators[name].upper_bound(x, y)
        loss = loss + getattr(weights, weight) * bound
        metrics[f"mi_{short}"] = bound.item()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
    optimizer.step()
    quant = out.encoded.quant
    return {"loss": loss.item(), **metrics, "ppl": quant.perplexity.item(), "used": quant.codes_in_use.item()}


@torch.no_grad()
def evaluate(model: VQMIVC, mels: list[np.ndarray], pitches: list[np.ndarray], device) -> dict:
    """Reconstruction L1 (normalised, frame-weighted) and code statistics over whole utterances."""
    model.eval()
    total, frames = 0.0, 0
    counts = torch.zeros(model.cfg.codes)
    for mel, pitch in zip(mels, pitches):
        out = model(torch.from_numpy(mel)[None].to(device), torch.from_numpy(pitch)[None].to(device))
        total += out.recon_loss.item() * mel.shape[1]
        frames += mel.shape[1]
        counts += torch.bincount(out.encoded.quant.ids.flatten().cpu(), minlength=model.cfg.codes)
    return {"recon": total / max(frames, 1), "ppl": float(code_perplexity(counts)), "used": float((counts > 0).sum())}
