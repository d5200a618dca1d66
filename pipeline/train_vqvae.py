"""Train the speaker-conditioned VQ-VAE-2 on the log-mel features of every training speaker.

Data: every utterance of train/unit, train/voice and train/parallel (when present) of the
configured languages, read from ``<features>/<language>.h5``; a seeded share of utterances is
held out for validation. Batches are random fixed-length crops drawn from the step's own
generator (so a resumed run replays the uninterrupted one exactly). The checkpoint's meta holds
the speaker map, the feature spec, the model settings and the mel normalisation, which is all
``pipeline.encode.load_vqvae`` needs.
"""
from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import click
import numpy as np
import torch

from models.quantizer import code_perplexity
from models.vqvae2 import STRIDE, VQVAE2, VQVAE2Config
from pipeline.config import fingerprint, get, load_config
from pipeline.dataset import TRAIN_SPLITS
from pipeline.errors import UserError
from pipeline.features import feature_spec, open_feature_dir
from pipeline.runtime import autocast, distributed, pick_device, seed_everything, set_threads, step_seed, wrap_ddp
from pipeline.training import TrainLoop

KIND = "vqvae"
# Settings that change only logging, never the trained weights: not part of the resume fingerprint.
_NOT_FINGERPRINTED = ("checkpoint_every", "log_every", "validate_every")


def speaker_key(language: str, speaker: str) -> str:
    """Speaker names are per language; English ones are used bare, others as ``<language>/<SPK>``."""
    return speaker if language == "english" else f"{language}/{speaker}"


@dataclasses.dataclass
class TrainingData:
    keys: list[str]             # "<language>:<split>/<utt>" of every training utterance
    mels: list[np.ndarray]      # (n_mels, frames) float32
    speakers: np.ndarray        # speaker id per utterance
    speaker_map: dict[str, int]
    val_idx: np.ndarray         # held-out utterance indices
    train_idx: np.ndarray       # utterances batches are drawn from (long enough for a segment)


def load_training_data(features_dir, config: dict) -> tuple[TrainingData, list[str]]:
    """Read every training utterance of the configured languages into memory."""
    spec = feature_spec(config)
    languages = get(config, "vqvae.languages") or ["english"]
    stores = open_feature_dir(features_dir, spec, languages)
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

    tcfg = config["vqvae"]["train"]
    order = np.random.default_rng(int(config.get("seed", 0))).permutation(len(keys))
    n_val = min(int(math.ceil(len(keys) * float(tcfg["val_fraction"]))), len(keys) - 1)
    val_idx = np.sort(order[:n_val])
    segment = int(tcfg["segment_frames"])
    train_idx = np.array(sorted(i for i in order[n_val:] if mels[i].shape[1] >= segment), dtype=np.int64)
    if len(train_idx) == 0:
        raise UserError(f"{features_dir}: no training utterance is at least vqvae.train.segment_frames="
                        f"{segment} frames long; lower it")
    return TrainingData(keys, mels, speakers, speaker_map, val_idx, train_idx), fingerprints


def mel_statistics(mels: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-bin mean and standard deviation over all frames (float64 accumulation)."""
    total = sum(m.shape[1] for m in mels)
    mean = sum(m.astype(np.float64).sum(1) for m in mels) / total
    var = sum(((m.astype(np.float64) - mean[:, None]) ** 2).sum(1) for m in mels) / total
    return mean.astype(np.float32), np.sqrt(var).astype(np.float32)


def model_config(config: dict, num_speakers: int, n_mels: int) -> VQVAE2Config:
    v = config["vqvae"]
    try:
        return VQVAE2Config.from_dict(v.get("model"), v.get("quantizer"), num_speakers=num_speakers, n_mels=n_mels)
    except (TypeError, ValueError) as exc:
        raise UserError(f"bad vqvae.model / vqvae.quantizer settings: {exc}") from None


def learning_rate(tcfg: dict, step: int) -> float:
    """Constant, multiplied by lr_gamma at each milestone (given as fractions of the total steps)."""
    passed = sum(step >= float(m) * int(tcfg["steps"]) for m in tcfg.get("lr_milestones") or [])
    return float(tcfg["lr"]) * float(tcfg.get("lr_gamma", 0.5)) ** passed


def run_fingerprint(config: dict, data_fingerprints: list[str]) -> str:
    vq = {**config["vqvae"], "train": {k: v for k, v in config["vqvae"]["train"].items()
                                       if k not in _NOT_FINGERPRINTED}}
    return fingerprint(KIND, vq, config["features"], config.get("seed"), data_fingerprints)


def train(features_dir: str | os.PathLike, out_dir: str | os.PathLike, config: dict, force: bool = False,
          progress: bool = True) -> Path:
    """Train (or resume, or skip when finished) and return ``out_dir/checkpoint.pt``."""
    out_dir = Path(out_dir)
    tcfg = config["vqvae"]["train"]
    set_threads(int(get(config, "runtime.threads", 0)))
    device = pick_device(str(get(config, "runtime.device", "auto")))
    amp = bool(get(config, "runtime.amp", False))
    seed = int(config.get("seed", 0))
    rank, world = distributed()
    seed_everything(seed)

    data, data_fps = load_training_data(features_dir, config)
    spec = feature_spec(config)
    cfg = model_config(config, len(data.speaker_map), spec.n_mels)
    model = VQVAE2(cfg)
    mean, std = mel_statistics([data.mels[i] for i in data.train_idx])
    model.set_normalization(torch.from_numpy(mean), torch.from_numpy(std))
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=float(tcfg["lr"]))
    meta = {"speakers": data.speaker_map, "feature_spec": spec.to_dict(), "model": dataclasses.asdict(cfg),
            "normalization": {"mean": mean.tolist(), "std": std.tolist()},
            "languages": list(get(config, "vqvae.languages") or ["english"]),
            "train_utterances": int(len(data.train_idx)), "val_keys": [data.keys[i] for i in data.val_idx]}
    loop = TrainLoop(run_dir=out_dir, kind=KIND, config=config, fingerprint=run_fingerprint(config, data_fps),
                     models={"vqvae": model}, optimizers={"adam": optimizer}, meta=meta, seed=seed,
                     total_steps=int(tcfg["steps"]), checkpoint_every=int(tcfg["checkpoint_every"]),
                     log_every=int(tcfg.get("log_every", 10)), validate_every=int(tcfg.get("validate_every", 0)),
                     plot_groups=[["loss", "recon"], ["ppl_b", "ppl_t"], ["used_b", "used_t"]])
    if not force and loop.try_resume(log=click.echo):
        if loop.is_done():
            if progress:
                click.echo(f"{loop.checkpoint_path}: up to date ({loop.step} steps)")
            return loop.checkpoint_path
        if progress:
            click.echo(f"{loop.checkpoint_path}: resuming at step {loop.step}")
    net = wrap_ddp(model, device)
    segment = int(tcfg["segment_frames"])
    segment -= segment % STRIDE  # whole top-level frames: no padding inside training batches
    weights = torch.tensor([data.mels[i].shape[1] - segment + 1 for i in data.train_idx], dtype=torch.float64)
    batch_size = int(tcfg["batch_size"])

    def batch_fn(step: int, gen: torch.Generator):
        if world > 1:  # each rank draws its own crops
            gen.manual_seed(step_seed(seed, step) + rank)
        # Utterances weighted by their number of crop positions: every crop is equally likely.
        picks = torch.multinomial(weights, batch_size, replacement=True, generator=gen)
        starts = (torch.rand(batch_size, generator=gen, dtype=torch.float64) * weights[picks]).long()
        idx = data.train_idx[picks.numpy()]
        mel = np.stack([data.mels[i][:, s:s + segment] for i, s in zip(idx, starts.tolist())])
        return torch.from_numpy(mel), torch.from_numpy(data.speakers[idx])

    def step_fn(batch, step: int) -> dict:
        return train_step(net, optimizer, batch, tcfg, step, device, amp)

    val_idx = data.val_idx[: int(tcfg.get("val_max_utterances") or len(data.val_idx))]

    def validate_fn() -> dict:
        return evaluate(model, [data.mels[i] for i in val_idx], data.speakers[val_idx], device)

    loop.fit(batch_fn, step_fn, validate_fn if len(val_idx) else None, progress=progress and rank == 0)
    return loop.checkpoint_path


def train_step(net: torch.nn.Module, optimizer: torch.optim.Optimizer, batch, tcfg: dict, step: int,
               device: torch.device, amp: bool) -> dict:
    """One optimisation step on a (mel, speaker) batch; returns the step's metrics."""
    mel, spk = (t.to(device) for t in batch)
    for group in optimizer.param_groups:
        group["lr"] = learning_rate(tcfg, step)
    with autocast(device, amp):
        out = net(mel, spk)
    loss = out.recon_loss.float() + out.commit_loss
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if tcfg.get("grad_clip"):
        torch.nn.utils.clip_grad_norm_(net.parameters(), float(tcfg["grad_clip"]))
    optimizer.step()
    enc = out.encoded
    return {"loss": loss.item(), "recon": out.recon_loss.item(), "commit": out.commit_loss.item(),
            "ppl_b": enc.bottom.perplexity.item(), "ppl_t": enc.top.perplexity.item(),
            "used_b": enc.bottom.codes_in_use.item(), "used_t": enc.top.codes_in_use.item()}


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


@click.command("train-vqvae", context_settings={"show_default": True})
@click.option("--features", "features_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder with <language>.h5 from `zs2020 features`.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Run folder: checkpoint.pt, history.jsonl and curves.png are written there.")
@click.option("--config", "preset", default="demo", help="Preset name (tiny, demo, full) or a YAML file.")
@click.option("--force", is_flag=True, help="Train from scratch even if a finished or resumable checkpoint exists.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.argument("overrides", nargs=-1)
def train_vqvae_command(features_dir, out_dir, preset, force, quiet, overrides):
    """Train the speaker-conditioned VQ-VAE-2 (20 ms bottom codes, 40 ms top codes).

    OVERRIDES are key=value config overrides, e.g. vqvae.train.steps=500 runtime.threads=1.
    An interrupted run resumes from its checkpoint when the config and data are unchanged;
    a finished one is skipped. Launch with torchrun for multi-GPU data parallelism.
    """
    config = load_config(preset, overrides)
    path = train(features_dir, out_dir, config, force=force, progress=not quiet)
    if distributed()[0] == 0:
        from pipeline.checkpoint import load_checkpoint
        ckpt = load_checkpoint(path, kind=KIND)
        last = next((r for r in reversed(ckpt["history"]) if "val_recon" in r), ckpt["history"][-1] if ckpt["history"] else {})
        summary = ", ".join(f"{k} {v:.3g}" for k, v in last.items() if k != "step")
        click.echo(f"{path}: step {ckpt['step']}; {summary}")
