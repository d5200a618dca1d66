"""Train the MelGAN vocoder on the target voices (``zs2020 train-melgan``).

Data: every target-voice utterance (``train/voice`` and, when present,
``train/parallel/voice``; with ``melgan.train.speakers: all``, every training utterance of every
speaker: a universal vocoder for unseen voices) of the languages in ``--features``: its stored
log-mel from ``<language>.h5`` and its waveform read from the dataset given explicitly (``--dataset``;
peak-normalised by ``prepare_audio`` exactly as the features were). The wavs must be those the
features were computed from: their sample counts are checked against the stored ones. A batch is random aligned
crops: mel frames [k, k + F) with samples [k * hop, (k + F) * hop).

Input mels: ``melgan.train.input_mels: ground_truth`` feeds the stored log-mels;
``vqvae`` feeds each utterance's VQ-VAE-2 reconstruction (encode, then decode with the
utterance's own voice) while the losses still compare against the real audio. At conversion the
vocoder only ever sees decoder mels, which are smoother than real ones; training on them
("ground-truth-aligned" input, as in Tacotron 2 vocoders) removes that mismatch.

Training methods (``melgan.train.method``, the original project's plan): ``separate`` (method 1)
trains the vocoder alone on a frozen unit system's output; ``finetune`` (method 2) puts the
VQ-VAE-2 of ``--vqvae`` in the loop: its reconstruction of each crop is the vocoder's input and
the waveform losses flow back into its encoder and decoder (codebooks frozen), beside its own
losses; ``joint`` (method 3) trains a fresh VQ-VAE-2 (the ``vqvae:`` settings) and the vocoder
together on every training speaker. With methods 2 and 3 the trained VQ-VAE-2 is stored in the
vocoder's checkpoint, and conversion uses it.

Schedule: ``warmup_steps`` generator-only steps on the spectral losses, then adversarial
training (hinge + feature matching + spectral). A few utterances per voice are held out for
validation (mel L1 of the vocoded whole utterance) and for the audio samples and spectrogram
PNGs written under ``OUT/samples/`` at every checkpoint. Training resumes from
``OUT/checkpoint.pt`` when config and data match, and is skipped when already finished. Under
torchrun each rank trains on its share of every batch, the generator, the discriminators and the
VQ-VAE-2 of methods 2 and 3 through DistributedDataParallel (``MelGANTrainer.distribute``).

Divergence: besides the losses (``pipeline.core.training``), a generator whose output is garbage
(``pipeline.core.audio.broken_audio``; a too-high rate drives it to full scale while
every loss stays finite) stops the run, checked on each step's batch and, before each
checkpoint, on the weights inference would use.
"""
from __future__ import annotations

import copy
import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models.gan_losses import (STFT_RESOLUTIONS, MelL1Loss, MultiResolutionSTFTLoss, discriminator_hinge_loss,
                               feature_matching_loss, generator_hinge_loss)
from models.featurespec import FeatureSpec
from models.melgan import ISTFT_FFT, ISTFT_HOP, Generator, MultiScaleDiscriminator, count_parameters
from models.vqvae2 import VQVAE2
from pipeline.contract.dataset import Dataset, speaker_key
from pipeline.contract.names import TRAIN_SPLITS, VOICE_SPLITS
from pipeline.core.audio import broken_audio, write_wav
from pipeline.core.config import VQVAE as VQVAESettings
from pipeline.core.config import Config, MelGAN
from pipeline.core.errors import UserError
from pipeline.core.io import atomic_path, file_digest
from pipeline.core.outputs import Input
from pipeline.core.runtime import (ThreadGovernor, autocast, on_rank_zero, pick_device, seed_everything, step_macs,
                                   together, wrap_ddp)
from pipeline.core.stamp import fingerprint
from pipeline.core.training import Diverged, TrainLoop, claimed_run
from pipeline.features import mel_statistics, open_feature_dir, prepare_audio
from pipeline.systems.vocoders import KIND
from pipeline.systems.unit_systems import load_unit_system
from pipeline.systems.vqvae import VQVAE
from pipeline.train.vqvae import model_config, set_speaker_normalization, unit_objective

# Keys that may change without invalidating a run (more steps extends it; logging is cosmetic).
_RESUMABLE_KEYS = ("steps", "checkpoint_every", "log_every", "validate_every", "num_samples", "sample_frames")
# The generator's loss weights (MelGAN's feature matching and hinge, HiFi-GAN's mel L1; the STFT
# loss's is ``melgan.loss.stft``) and Adam's betas for both networks.
MEL_WEIGHT = 45.0
ADVERSARIAL_WEIGHT = 1.0
FEATURE_MATCHING_WEIGHT = 10.0
BETAS = (0.5, 0.9)


@dataclass
class VoiceUtterance:
    key: str            # "<language>/<split>/<utt_id>"
    speaker: str        # as the VQ-VAE names it (``contract.dataset.speaker_key``)
    mel: np.ndarray     # (n_mels, frames) log10 mel, as stored by the features stage
    audio: np.ndarray   # (frames * hop,) prepared waveform, zero-padded like LogMel pads it

    @property
    def frames(self) -> int:
        return self.mel.shape[1]


# ---------------------------------------------------------------------------------------- data
def load_voice_data(features_dir: str | Path, dataset_root: str | Path, languages: list[str] | None = None,
                    vqvae=None, splits=VOICE_SPLITS) -> tuple[FeatureSpec, list[VoiceUtterance], list[str]]:
    """The input mels and prepared waveforms of every utterance of ``splits`` (the target
    voices' by default), plus the feature files' fingerprints (the data identity of a run).
    Waveforms come from ``dataset_root``. With ``vqvae`` (a loaded unit system,
    ``pipeline.systems.unit_systems``) the input mel is the model's reconstruction in the same voice."""
    stores = open_feature_dir(features_dir, languages=languages)
    spec, items = stores[0].spec, []
    try:
        for store in stores:
            dataset = Dataset(dataset_root, store.language)
            for split in splits:
                for utt in dataset.utterances(split, required=split == "train/voice"):
                    if utt.key not in store:
                        raise UserError(f"{store.path}: has no features for {utt.key} of --dataset {dataset_root}: "
                                        f"the features were made from another dataset (re-run `zs2020 features`)")
                    mel = store.get(utt.key)
                    audio = prepare_audio(utt.read(spec.sample_rate), spec)
                    frames = mel.shape[1]
                    if spec.num_frames(len(audio)) != frames:
                        raise UserError(f"{store.path}: {utt.key} has {frames} frames but its audio has "
                                        f"{len(audio)} samples: re-run `zs2020 features --force`")
                    audio = np.pad(audio, (0, frames * spec.hop_length - len(audio)))
                    speaker = speaker_key(store.language, utt.speaker)
                    if vqvae is not None:
                        mel = vqvae.reconstruct(mel, audio, speaker).astype(np.float32)
                    items.append(VoiceUtterance(f"{store.language}/{utt.key}", speaker, mel, audio))
        return spec, items, [store.fingerprint for store in stores]
    finally:
        for store in stores:
            store.close()


def split_heldout(items: list[VoiceUtterance], per_voice: int) -> tuple[list[VoiceUtterance], list[VoiceUtterance]]:
    """Hold out the last ``per_voice`` utterances of each voice (never a voice's only one)."""
    train, held = [], []
    for speaker in sorted({u.speaker for u in items}):
        mine = [u for u in items if u.speaker == speaker]
        k = min(per_voice, len(mine) - 1)
        train += mine[:len(mine) - k] if k > 0 else mine
        held += mine[len(mine) - k:] if k > 0 else []
    return train, held


def random_crops(items: list[VoiceUtterance], speakers: dict[str, int], batch_size: int, segment_frames: int,
                 hop: int, gen: torch.Generator, log_floor: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mel (B, n_mels, F), audio (B, F * hop), speaker ids (B,)); utterances drawn in
    proportion to their length, crops aligned at frame boundaries."""
    weights = torch.tensor([u.frames for u in items], dtype=torch.float64)
    picks = torch.multinomial(weights, batch_size, replacement=True, generator=gen).tolist()
    mels, wavs = [], []
    for i in picks:
        utt = items[i]
        mel, audio = utt.mel, utt.audio
        if utt.frames < segment_frames:  # pad short utterances with silence
            short = segment_frames - utt.frames
            mel = np.pad(mel, ((0, 0), (0, short)), constant_values=np.log10(log_floor))
            audio = np.pad(audio, (0, short * hop))
        start = int(torch.randint(0, mel.shape[1] - segment_frames + 1, (1,), generator=gen))
        mels.append(mel[:, start:start + segment_frames])
        wavs.append(audio[start * hop:(start + segment_frames) * hop])
    ids = torch.tensor([speakers[items[i].speaker] for i in picks])
    return torch.from_numpy(np.stack(mels)), torch.from_numpy(np.stack(wavs)), ids


# ---------------------------------------------------------------------------------------- training
@dataclass
class UnitModel:
    """A VQ-VAE-2 that trains with the vocoder (methods 2 and 3): it turns each crop's real mel
    into the vocoder's input, and the waveform losses reach it."""
    model: VQVAE2
    meta: dict                    # what inference needs to rebuild it (speakers, model, feature spec, ...)
    ids: torch.Tensor             # vocoder speaker id -> the VQ-VAE's speaker id
    optimizer: torch.optim.Optimizer
    config: VQVAESettings         # the unit system's loss weights
    frozen_codebooks: bool        # fine-tuning keeps the codebooks (and so the units) in place
    net: torch.nn.Module | None = None   # the model's training wrapper under torchrun (DDP)

    def reconstruct(self, mel: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """(input mel for the vocoder, the unit system's own loss, metrics)."""
        for quantizer in (self.model.quant_top, self.model.quant_bottom):
            quantizer.train(not self.frozen_codebooks and self.model.training)
        out = (self.net or self.model)(mel, self.ids[ids])
        loss, metrics = unit_objective(out, self.config.loss)
        return out.mel.float(), loss, {f"vq_{name}": value for name, value in metrics.items()}


class MelGANTrainer:
    """Models, optimizers, losses and the per-step update (generator-only during warm-up)."""

    def __init__(self, config: Config, spec: FeatureSpec, speakers: dict[str, int], device: torch.device,
                 unit: UnitModel | None = None):
        cfg = config.melgan
        self.unit = unit
        self.cfg, self.spec, self.speakers, self.device = cfg, spec, speakers, device
        self.amp = config.runtime.amp
        self.generator_args = generator_args(cfg, spec)
        self.generator = Generator(**self.generator_args).to(device)
        if self.generator.hop != spec.hop_length:
            extra = " times istft_hop" if cfg.generator.head == "istft" else ""
            raise UserError(f"config key melgan.generator.ratios: they{extra} multiply to {self.generator.hop}, but the "
                            f"feature hop is {spec.hop_length}")
        d = cfg.discriminator
        self.discriminator = MultiScaleDiscriminator(scales=d.scales, ndf=d.ndf, n_layers=d.layers,
                                                     max_channels=d.max_channels).to(device)
        train = cfg.train
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=train.lr, betas=BETAS)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=train.lr, betas=BETAS)
        self.weights = {"mel": MEL_WEIGHT, "stft": cfg.loss.stft, "adversarial": ADVERSARIAL_WEIGHT,
                        "feature_matching": FEATURE_MATCHING_WEIGHT}
        self.mel_loss = MelL1Loss(spec).to(device)
        self.stft_loss = MultiResolutionSTFTLoss(STFT_RESOLUTIONS).to(device)
        self.warmup = train.warmup_steps
        # The generator-only warm-up tolerates (and profits from) a higher rate than GAN training.
        self.lr_schedule = (train.lr_warmup, train.lr)
        # An exponential moving average of the generator's weights (train.ema > 0), which validation,
        # samples and inference use: the average of the last steps rather than one point of their
        # oscillation. It is a model of the run (checkpointed, resumed) that no optimizer updates.
        self.ema = train.ema
        self.generator_ema = copy.deepcopy(self.generator).requires_grad_(False) if self.ema > 0 else None
        self.generator_net, self.discriminator_net = self.generator, self.discriminator

    def distribute(self) -> None:
        """Train through DistributedDataParallel under torchrun (a no-op in one process); call it
        after resuming. Inference, validation and samples use the models themselves."""
        self.generator_net = wrap_ddp(self.generator, self.device)
        self.discriminator_net = wrap_ddp(self.discriminator, self.device)
        if self.unit is not None:
            self.unit.net = wrap_ddp(self.unit.model, self.device, self.unit.model.unused_parameters())

    @property
    def inference_generator(self) -> Generator:
        """The generator whose weights inference uses: the weight average when there is one."""
        return self.generator_ema if self.generator_ema is not None else self.generator

    @torch.no_grad()
    def update_average(self, step: int) -> None:
        """Move the weight average toward the generator's new weights. The decay grows from 0.1 at
        the first step to ``ema`` (by about 10 / (1 - ema) steps), so the average never holds much
        of the random initial weights."""
        decay = min(self.ema, (1 + step) / (10 + step))
        for average, weight in zip(self.generator_ema.parameters(), self.generator.parameters()):
            average.lerp_(weight, 1 - decay)
        for average, buffer in zip(self.generator_ema.buffers(), self.generator.buffers()):
            average.copy_(buffer)

    def generator_lr(self, step: int) -> float:
        """The generator's rate at ``step``: the warm-up's, then the adversarial phase's."""
        return self.lr_schedule[step >= self.warmup]

    def step(self, batch, step: int) -> dict:
        mel, real, ids = (t.to(self.device) for t in batch)
        w = self.weights
        metrics = {}
        unit_loss = None
        if self.unit is not None:
            with autocast(self.device, self.amp):
                mel, unit_loss, unit_metrics = self.unit.reconstruct(mel, ids)
            metrics.update(unit_metrics)
        with autocast(self.device, self.amp):
            fake = self.generator_net(mel).float()
        adversarial = step >= self.warmup
        for group in self.opt_g.param_groups:
            group["lr"] = self.generator_lr(step)
        if adversarial:
            with autocast(self.device, self.amp):
                real_out = self.discriminator_net(real)
                fake_out = self.discriminator_net(fake.detach())
            d_loss = discriminator_hinge_loss(real_out, fake_out).float()
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            self.opt_d.step()
            metrics["d_loss"] = d_loss.item()
        mel_l1 = self.mel_loss(fake, real)
        g_loss = w["mel"] * mel_l1
        metrics["mel_l1"] = mel_l1.item()
        if w["stft"] > 0:
            stft = self.stft_loss(fake, real)
            g_loss = g_loss + w["stft"] * stft
            metrics["stft"] = stft.item()
        if adversarial:
            # the discriminator only passes the gradient on to the generator here (no update, no reduction)
            self.discriminator.requires_grad_(False)
            with autocast(self.device, self.amp):
                fake_out = self.discriminator(fake)
            self.discriminator.requires_grad_(True)
            adv = generator_hinge_loss(fake_out).float()
            fm = feature_matching_loss(real_out, fake_out).float()
            g_loss = g_loss + w["adversarial"] * adv + w["feature_matching"] * fm
            metrics.update(g_adv=adv.item(), feature_matching=fm.item())
        metrics["g_loss"] = g_loss.item()
        if unit_loss is not None:
            g_loss = g_loss + self.cfg.loss.vqvae * unit_loss
            self.unit.optimizer.zero_grad(set_to_none=True)
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_g.step()
        if self.generator_ema is not None:
            self.update_average(step)
        if unit_loss is not None:
            self.unit.optimizer.step()
        # after the updates: a torchrun rank must not stop inside a step while the others reduce
        check_output(fake.detach(), "generator")
        return metrics

    @torch.no_grad()
    def input_mel(self, utt: VoiceUtterance, max_frames: int | None = None) -> torch.Tensor:
        """(1, n_mels, F): the vocoder's input for a whole utterance (the unit system's
        reconstruction when it trains with the vocoder)."""
        mel = torch.from_numpy(utt.mel[:, :max_frames]).unsqueeze(0).to(self.device)
        if self.unit is None:
            return mel
        was_training = self.unit.model.training
        self.unit.model.eval()
        ids = torch.tensor([self.speakers[utt.speaker]], device=self.device)
        out = self.unit.model(mel, self.unit.ids[ids]).mel.float()
        self.unit.model.train(was_training)
        return out

    @torch.no_grad()
    def vocode(self, utt: VoiceUtterance, max_frames: int | None = None) -> np.ndarray:
        return self.inference_generator(self.input_mel(utt, max_frames))[0].float().cpu().numpy()

    def check_inference(self, utt: VoiceUtterance, max_frames: int) -> None:
        """Raise ``Diverged`` when the weights inference uses (the average, if any) vocode ``utt``
        into garbage: the last update may have broken them after the step's own check."""
        check_output(self.vocode(utt, max_frames), "inference generator")

    @torch.no_grad()
    def validation_mel_l1(self, items: list[VoiceUtterance], max_frames: int) -> float:
        """Mean L1 between the log-mels of each held-out utterance's real audio and of its vocoded audio."""
        losses = []
        for utt in items:
            wav = torch.from_numpy(self.vocode(utt, max_frames)).to(self.device)
            frames = min(utt.frames, max_frames) if max_frames else utt.frames
            real = torch.from_numpy(utt.audio[:frames * self.spec.hop_length]).to(self.device)
            target = self.mel_loss.logmel(real)[0]
            losses.append(torch.nn.functional.l1_loss(self.mel_loss.logmel(wav)[0], target).item())
        return float(np.mean(losses))


def check_output(wav: torch.Tensor | np.ndarray, which: str) -> None:
    """Raise ``Diverged`` when a generator's waveform is garbage."""
    reason = broken_audio(wav.cpu().numpy() if isinstance(wav, torch.Tensor) else wav)
    if reason is not None:
        raise Diverged(f"{which} output is {reason}")


def write_samples(trainer: MelGANTrainer, items: list[VoiceUtterance], out_dir: Path, step: int, max_frames: int) -> None:
    """Vocoded wavs plus a PNG comparing real and regenerated log-mels, one pair per utterance."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    generator = trainer.inference_generator
    was_training = generator.training
    generator.eval()
    for utt in items:
        name = f"step{step:06d}_{utt.key.replace('/', '_')}"
        wav = trainer.vocode(utt, max_frames)
        write_wav(out_dir / f"{name}.wav", wav, trainer.spec.sample_rate)
        with torch.no_grad():
            regenerated = trainer.mel_loss.logmel(torch.from_numpy(wav).to(trainer.device))[0].cpu().numpy()
        fig, axes = plt.subplots(2, 1, figsize=(8, 4.5), sharex=True)
        for ax, mel, title in zip(axes, (utt.mel[:, :max_frames], regenerated), ("input mel", f"vocoded, step {step}")):
            ax.imshow(mel, origin="lower", aspect="auto", vmin=-5, vmax=max(1.0, float(mel.max())), cmap="magma")
            ax.set_title(f"{utt.key}: {title}", fontsize=8)
        axes[-1].set_xlabel("frame (10 ms)")
        fig.tight_layout()
        with atomic_path(out_dir / f"{name}.png") as tmp:
            fig.savefig(tmp, dpi=80, format="png")
        plt.close(fig)
    generator.train(was_training)


def fine_tuned_unit_model(system: VQVAE, speakers: dict[str, int], config: Config, device) -> UnitModel:
    """Method 2: the trained VQ-VAE-2 of --vqvae, fine-tuned with the vocoder (codebooks frozen)."""
    if not isinstance(system, VQVAE):
        raise UserError("melgan.train.method=finetune fine-tunes a VQ-VAE-2; this unit system is "
                        f"{type(system).__name__}")
    missing = [s for s in speakers if s not in system.speakers]
    if missing:
        raise UserError(f"the VQ-VAE-2 does not know the vocoder's speaker {missing[0]!r}")
    model = system.model.to(device).train()
    meta = {"speakers": system.speakers, "feature_spec": system.spec.to_dict(),
            "model": dataclasses.asdict(model.cfg), "languages": system.languages}
    ids = torch.tensor([system.speakers[s] for s in sorted(speakers, key=speakers.get)], device=device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.melgan.train.vqvae_lr)
    return UnitModel(model, meta, ids, optimizer, config.vqvae, frozen_codebooks=True)


def joint_unit_model(items: list[VoiceUtterance], speakers: dict[str, int], spec: FeatureSpec, config: Config,
                     device) -> UnitModel:
    """Method 3: a fresh VQ-VAE-2 (the vqvae: settings) that trains with the vocoder on every speaker."""
    model = VQVAE2(model_config(config, len(speakers), spec.n_mels))
    mean, std = mel_statistics([u.mel for u in items])
    model.set_normalization(torch.from_numpy(mean), torch.from_numpy(std))
    if model.cfg.speaker_norm:
        set_speaker_normalization(model, [u.mel for u in items], [speakers[u.speaker] for u in items])
    model.to(device).train()
    meta = {"speakers": dict(speakers), "feature_spec": spec.to_dict(), "model": dataclasses.asdict(model.cfg),
            "languages": list(config.vqvae.languages)}
    ids = torch.arange(len(speakers), device=device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.melgan.train.vqvae_lr)
    return UnitModel(model, meta, ids, optimizer, config.vqvae, frozen_codebooks=False)


def generator_args(cfg: MelGAN, spec: FeatureSpec) -> dict:
    """The generator's constructor arguments (stored in the checkpoint's meta, so inference
    rebuilds it without any config)."""
    g = cfg.generator
    anchor = {"anchor_spec": spec.to_dict()} if g.mel_anchor else {}
    return {"n_mels": spec.n_mels, "ngf": g.ngf, "ratios": list(g.ratios), "n_residual": g.n_residual,
            "head": g.head, "istft_fft": ISTFT_FFT, "istft_hop": ISTFT_HOP, "frame_blocks": g.frame_blocks, **anchor}


def run_fingerprint(config: Config, spec: FeatureSpec, data_ids: list[str]) -> str:
    cfg = config.melgan.to_dict()
    cfg["train"] = {k: v for k, v in cfg["train"].items() if k not in _RESUMABLE_KEYS}
    return fingerprint(KIND, cfg, spec.to_dict(), config.seed, data_ids)


def train(features_dir: str | Path, dataset_root: str | Path, out_dir: str | Path, config: Config,
          force: bool = False, progress: bool = True, log=print, vqvae_checkpoint: str | Path | None = None) -> Path:
    """Train (or resume, or skip when finished) the vocoder; returns ``OUT/checkpoint.pt``.
    ``vqvae_checkpoint`` is required when ``melgan.train.input_mels`` is ``vqvae``."""
    out_dir = Path(out_dir)
    progress, log = on_rank_zero(progress, log)
    inputs = [Input("--features", features_dir), Input("--dataset", dataset_root), Input("--vqvae", vqvae_checkpoint)]
    with claimed_run(out_dir, "train-melgan", inputs):
        return _train(features_dir, dataset_root, out_dir, config, force, progress, log, vqvae_checkpoint)


def _train(features_dir, dataset_root, out_dir: Path, config: Config, force: bool, progress: bool, log,
           vqvae_checkpoint) -> Path:
    with together():    # an error on any torchrun rank while setting up stops every rank
        trainer, loop, train_items, held = _setup(features_dir, dataset_root, out_dir, config, log, vqvae_checkpoint)
    if loop.begin(force, True, log, finished="; use --force to retrain"):
        return loop.checkpoint_path
    samples_dir = out_dir / "samples"
    if loop.saved_step is None and loop.rank == 0 and samples_dir.exists():
        shutil.rmtree(samples_dir)  # samples of a previous, different run
    trainer.distribute()
    train_cfg, spec = config.melgan.train, trainer.spec

    def batch_fn(step: int, gen: torch.Generator):
        return random_crops(train_items, trainer.speakers, train_cfg.batch_size, train_cfg.segment_frames,
                            spec.hop_length, gen, spec.log_floor)

    validate = (lambda: {"mel_l1": trainer.validation_mel_l1(held, train_cfg.sample_frames)}) if held else None
    loop.fit(batch_fn, trainer.step, validate, progress=progress)
    return loop.checkpoint_path


def _setup(features_dir, dataset_root, out_dir: Path, config: Config, log, vqvae_checkpoint):
    """(trainer, loop, training utterances, held-out utterances) of a run."""
    cfg = config.melgan
    train_cfg = cfg.train
    device = pick_device(config.runtime.device)
    vqvae, vqvae_id = None, None
    if train_cfg.input_mels == "vqvae" or train_cfg.method == "finetune":
        if vqvae_checkpoint is None:
            raise UserError(f"melgan.train.{'method=finetune' if train_cfg.method == 'finetune' else 'input_mels=vqvae'} "
                            f"needs the VQ-VAE checkpoint (--vqvae PATH)")
        vqvae = load_unit_system(vqvae_checkpoint, device="cpu")
        vqvae_id = file_digest(vqvae_checkpoint)
    splits = VOICE_SPLITS if train_cfg.speakers == "targets" and train_cfg.method != "joint" else TRAIN_SPLITS
    reconstructing = vqvae if train_cfg.input_mels == "vqvae" else None
    spec, items, data_ids = load_voice_data(features_dir, dataset_root, vqvae=reconstructing, splits=splits)
    if vqvae_id:
        data_ids = data_ids + [vqvae_id]
    speakers = {spk: i for i, spk in enumerate(sorted({u.speaker for u in items}))}
    train_items, held = split_heldout(items, train_cfg.val_utterances)
    seed = config.seed
    seed_everything(seed)
    unit = None
    if train_cfg.method == "finetune":
        unit = fine_tuned_unit_model(vqvae, speakers, config, device)
    elif train_cfg.method == "joint":
        unit = joint_unit_model(train_items, speakers, spec, config, device)
    trainer = MelGANTrainer(config, spec, speakers, device, unit)
    governor = ThreadGovernor(config.runtime.threads, 3 * step_macs(trainer.generator, train_cfg.batch_size
                                                                    * train_cfg.segment_frames * spec.hop_length),
                              log=log)
    sample_items = (held or train_items)[:train_cfg.num_samples]
    sample_frames = train_cfg.sample_frames
    samples_dir = out_dir / "samples"
    loop = TrainLoop(
        run_dir=out_dir, kind=KIND, config=config.to_dict(), fingerprint=run_fingerprint(config, spec, data_ids),
        models={"generator": trainer.generator, "discriminator": trainer.discriminator,
                **({"generator_ema": trainer.generator_ema} if trainer.generator_ema is not None else {}),
                **({"vqvae": unit.model} if unit is not None else {})},
        optimizers={"generator": trainer.opt_g, "discriminator": trainer.opt_d,
                    **({"vqvae": unit.optimizer} if unit is not None else {})},
        meta={"speakers": speakers,
              "generator": trainer.generator_args, "method": train_cfg.method,
              **({"unit_system": unit.meta} if unit is not None else {}),
              "feature_spec": spec.to_dict(), "train_utterances": len(train_items),
              "heldout": [u.key for u in held],
              "parameters": {"generator": count_parameters(trainer.generator),
                             "discriminator": count_parameters(trainer.discriminator)}},
        seed=seed, total_steps=train_cfg.steps, checkpoint_every=train_cfg.checkpoint_every,
        log_every=train_cfg.log_every, validate_every=train_cfg.validate_every,
        before_save=lambda step: trainer.check_inference((held or train_items)[0], sample_frames),
        on_checkpoint=lambda step: write_samples(trainer, sample_items, samples_dir, step, sample_frames),
        plot_groups=[["mel_l1"], ["stft"], ["g_adv", "d_loss"], ["feature_matching"], ["vq_recon", "vq_cpc"]],
        governor=governor, batch_size=train_cfg.batch_size, batch_key="melgan.train.batch_size")
    return trainer, loop, train_items, held
