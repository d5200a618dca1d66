"""The training loop shared by every trainer (VQ-VAE-2, MelGAN, ...).

A trainer supplies models, optimizers and two callables:

* ``batch_fn(step, generator) -> batch``: the (global) batch for one step, drawn only from
  ``generator`` (a ``torch.Generator`` seeded from (seed, step)), so a resumed run sees the same
  batches; a tensor or a tuple, list or dict of tensors whose first axis is the batch;
* ``step_fn(batch, step) -> {metric: float}``: forward, backward and optimizer steps.

The loop handles resume (from ``<run_dir>/checkpoint.pt`` when the fingerprint matches),
per-step seeding, periodic checkpoints, held-out validation, a progress bar, ``history.jsonl``
and loss-curve PNGs.

Under torchrun (``pipeline.core.runtime``) every rank draws the same global batch and trains on its
own rows (``shard``); the logged metrics are the ranks' means; rank 0 alone validates and writes
(checkpoints, history, curves, samples, the stamp); every rank resumes from the same checkpoint
(``begin`` checks it); an error on any rank, in set-up (``together``) or in a step, stops every
rank with one line (``agree``).

Divergence stops a run with one ``UserError`` naming the step, the reason and the last good
checkpoint, which stays untouched: a metric that is not finite or above ``MAX_LOSS``
(``check_metrics``), weights about to be saved that are not finite, or a trainer's own
``Diverged`` (e.g. a vocoder whose output is saturated or silent).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from tqdm import tqdm

from pipeline.core.checkpoint import FORMAT as CHECKPOINT_FORMAT
from pipeline.core.checkpoint import OldCheckpoint, load_checkpoint, save_checkpoint
from pipeline.core.errors import UserError
from pipeline.core.io import atomic_path, output_lock, write_text_atomic
from pipeline.core.layout import checkpoint_in
from pipeline.core.outputs import Input, claim_folder
from pipeline.core.runtime import (ThreadGovernor, agree, check_divisible, distributed, mean_over_ranks,
                                   same_on_every_rank, shard, step_seed, together)
from pipeline.core.stamp import fingerprint, is_up_to_date, write_stamp

# No metric of a healthy step comes near this: the objectives are L1 distances of log10-mels,
# InfoNCE and hinge terms (MelGAN's weighted generator loss starts near 60, the VQ-VAE-2's near 3),
# the rest perplexities and code counts. A loss beyond it means exploding weights, a few steps
# before they overflow to NaN.
MAX_LOSS = 1e6


class Diverged(Exception):
    """A step (or the models about to be saved) went bad; ``TrainLoop.fit`` turns the reason into
    one ``UserError`` naming the step and the last good checkpoint."""


def check_metrics(metrics: dict) -> None:
    """Raise ``Diverged`` for a step metric that is not finite or beyond ``MAX_LOSS``."""
    for name, value in metrics.items():
        value = float(value)
        if not math.isfinite(value):
            raise Diverged(f"{name} is {value}")
        if abs(value) > MAX_LOSS:
            raise Diverged(f"{name} is {value:.3g}, beyond {MAX_LOSS:g}")


@dataclass
class TrainLoop:
    run_dir: Path
    kind: str
    config: dict
    fingerprint: str
    models: dict
    optimizers: dict
    meta: dict
    seed: int
    total_steps: int
    checkpoint_every: int
    log_every: int = 10
    validate_every: int = 0
    step: int = 0
    history: list = field(default_factory=list)
    rank: int = 0
    # Called after each checkpoint save, with the step (e.g. to write audio samples and PNGs).
    on_checkpoint: Callable[[int], None] | None = None
    # Called before each checkpoint save, with the step (e.g. to refresh ``meta`` from the model, or
    # to raise ``Diverged`` when the model about to be saved makes garbage).
    before_save: Callable[[int], None] | None = None
    # Curves to plot: groups of metric names, one panel each.
    plot_groups: list[list[str]] = field(default_factory=list)
    # Keeps torch's thread count right for the machine's load (None: leave it alone).
    governor: ThreadGovernor | None = None
    # The step of the checkpoint this run last saved or resumed from (None: none yet).
    saved_step: int | None = None
    # The global batch and its config key: under torchrun it must split evenly over the ranks.
    batch_size: int = 0
    batch_key: str = ""

    def __post_init__(self):
        self.run_dir = Path(self.run_dir)
        self.rank, _ = distributed()
        if self.batch_size:
            check_divisible(self.batch_size, self.batch_key)

    @property
    def checkpoint_path(self) -> Path:
        return checkpoint_in(self.run_dir)

    @property
    def done_fingerprint(self) -> str:
        """What a finished run's stamp records: the run's identity and its length."""
        return fingerprint(CHECKPOINT_FORMAT, self.kind, self.fingerprint, self.total_steps)

    def is_up_to_date(self) -> bool:
        """The stage's skip rule: a finished run of this config and data (its stamp says so)."""
        return is_up_to_date(self.checkpoint_path, self.done_fingerprint)

    # ---------------------------------------------------------------- resume
    def try_resume(self, log=print) -> bool:
        """Load the run's checkpoint if it was made with the same fingerprint. Returns True if resumed."""
        if not self.checkpoint_path.is_file():
            return False
        try:
            ckpt = load_checkpoint(self.checkpoint_path)
        except OldCheckpoint as exc:
            log(f"{exc.message.split(';')[0]}; training from scratch")
            return False
        if ckpt["kind"] != self.kind:   # e.g. the run folder's unit system was switched
            log(f"{self.checkpoint_path}: holds a {ckpt['kind']} model; training a {self.kind} from scratch")
            return False
        if ckpt["fingerprint"] != self.fingerprint:
            log(f"{self.checkpoint_path}: made with another config or data; training from scratch")
            return False
        for name, model in self.models.items():
            getattr(model, "module", model).load_state_dict(ckpt["models"][name])
        for name, opt in self.optimizers.items():
            if name in ckpt["optimizers"]:
                opt.load_state_dict(ckpt["optimizers"][name])
        self.step = self.saved_step = ckpt["step"]
        self.history = list(ckpt["history"])
        return True

    def begin(self, force: bool = False, progress: bool = True, log=print,
              finished: str = "") -> bool:
        """A trainer's start, after its set-up: True when the run is already finished (skip it);
        otherwise resume from the checkpoint when it fits (``force`` always starts from scratch)
        and return False. Under torchrun every rank reads the checkpoint, and they must agree."""
        failure, done, resumed = None, False, False
        try:
            done = not force and self.is_up_to_date()
            resumed = not force and not done and self.try_resume(log=log)
        except UserError as exc:    # e.g. a damaged checkpoint
            failure = exc
        agree(failure)
        if not same_on_every_rank(done, self.step):
            raise UserError(f"{self.run_dir}: the torchrun processes found different checkpoints there; "
                            f"every process must see the same run folder")
        if progress and done:
            log(f"{self.checkpoint_path}: up to date ({self.total_steps} steps){finished}")
        elif progress and resumed:
            log(f"{self.checkpoint_path}: resuming at step {self.step}")
        return done

    def is_done(self) -> bool:
        return self.step >= self.total_steps

    # ---------------------------------------------------------------- loop
    def fit(self, batch_fn: Callable, step_fn: Callable, validate_fn: Callable | None = None,
            progress: bool = True) -> list:
        for m in self.models.values():
            m.train()
        running: dict[str, float] = {}
        bar = tqdm(total=self.total_steps, initial=self.step, desc=f"train {self.kind}", unit="step",
                   disable=not progress or self.rank != 0, dynamic_ncols=True)
        try:
            while self.step < self.total_steps:
                if self.governor is not None:
                    self.governor.tick()
                self._step(batch_fn, step_fn, validate_fn, running, bar)
        finally:
            bar.close()
        if self.rank == 0:
            write_stamp(self.checkpoint_path, self.done_fingerprint, steps=self.step)
        return self.history

    def _step(self, batch_fn: Callable, step_fn: Callable, validate_fn: Callable | None, running: dict,
              bar: tqdm) -> None:
        """One step on this rank's share of the step's batch: update, log, validate and checkpoint
        when due. A failure on any rank stops every rank at the step's agreement points."""
        seed = step_seed(self.seed, self.step)
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        metrics, failure = {}, None
        try:
            metrics = step_fn(shard(batch_fn(self.step, gen)), self.step)
            check_metrics(metrics)
        except Diverged as exc:
            failure = self.diverged(str(exc), self.step + 1)
        except UserError as exc:
            failure = exc
        agree(failure)
        self.step += 1
        for k, v in metrics.items():
            running[k] = running.get(k, 0.0) + float(v)
        logging = self.step % self.log_every == 0 or self.step == self.total_steps
        saving = self.step % self.checkpoint_every == 0 or self.step == self.total_steps
        if logging:
            count = self.step % self.log_every or self.log_every
            row = {"step": self.step, **mean_over_ranks({k: v / count for k, v in running.items()})}
            running.clear()
        failure = None
        try:
            if logging:
                self._log(row, validate_fn, bar)
            bar.update(1)
            if saving:
                self.save()
        except Diverged as exc:
            failure = self.diverged(str(exc), self.step)
        if logging or saving:
            agree(failure)      # rank 0's validation and checkpoint

    def _log(self, row: dict, validate_fn: Callable | None, bar: tqdm) -> None:
        """Add a history row (with validation scores, on rank 0, when due)."""
        if validate_fn is not None and self.rank == 0 and self.validate_every and (
                self.step % self.validate_every == 0 or self.step == self.total_steps):
            scores = {f"val_{k}": v for k, v in self._validate(validate_fn).items()}
            check_metrics(scores)
            row.update(scores)
        self.history.append(row)
        bar.set_postfix({k: f"{v:.3g}" for k, v in row.items() if k != "step"}, refresh=False)

    def diverged(self, reason: str, step: int) -> UserError:
        """The one line a run that diverged at ``step`` ends with."""
        kept = (f"last good checkpoint: {self.checkpoint_path} at step {self.saved_step}"
                if self.saved_step is not None else "no checkpoint of this run was saved")
        return UserError(f"training diverged at step {step}: {reason} ({kept}; lower the learning rate)")

    def _validate(self, validate_fn: Callable) -> dict:
        for m in self.models.values():
            m.eval()
        with torch.no_grad():
            out = validate_fn()
        for m in self.models.values():
            m.train()
        return out

    # ---------------------------------------------------------------- outputs
    def save(self) -> None:
        """Write the checkpoint, history and curves; raises ``Diverged`` (nothing written) when
        the weights are not finite or ``before_save`` finds the models broken. Rank 0 alone writes."""
        if self.rank != 0:
            self.saved_step = self.step
            return
        if self.before_save is not None:
            self.before_save(self.step)
        for name, model in self.models.items():
            if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
                raise Diverged(f"the {name} weights are not finite")
        save_checkpoint(self.checkpoint_path, kind=self.kind, config=self.config, fingerprint=self.fingerprint,
                        step=self.step, models=self.models, optimizers=self.optimizers, meta=self.meta,
                        history=self.history)
        self.saved_step = self.step
        write_text_atomic(self.run_dir / "history.jsonl", "".join(json.dumps(r) + "\n" for r in self.history))
        if self.plot_groups:
            plot_curves(self.history, self.plot_groups, self.run_dir / "curves.png", title=self.kind)
        if self.on_checkpoint is not None:
            self.on_checkpoint(self.step)


@contextlib.contextmanager
def claimed_run(out_dir: Path, stage: str, inputs: list[Input]):
    """A training run's output folder, checked (``claim_folder``) and locked for the run: by rank 0
    alone under torchrun (its one writer); a refusal on any rank stops every rank."""
    with contextlib.ExitStack() as stack:
        with together():
            claim_folder(out_dir, stage, inputs)
            if distributed()[0] == 0:
                stack.enter_context(output_lock(out_dir, "training run"))
        yield


def plot_curves(history: list, groups: list[list[str]], path: str | os.PathLike, title: str = "") -> None:
    """One panel per metric group, training and ``val_`` curves together, x = step."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [g for g in groups if any(k in r or f"val_{k}" in r for r in history for k in g)]
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.2), squeeze=False)
    for ax, group in zip(axes[0], panels):
        for key in group:
            for name in (key, f"val_{key}"):
                pts = [(r["step"], r[name]) for r in history if name in r and math.isfinite(r[name])]
                if pts:
                    ax.plot(*zip(*pts), label=name, marker="." if name.startswith("val_") else None)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
