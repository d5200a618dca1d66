"""Data-parallel training as torchrun runs it, on CPU: 2 processes with gloo on the tiny preset.

One spawn of 2 ranks trains every system (VQ-VAE-2, VQMIVC, MelGAN with its discriminators)
for a few steps, straight through and interrupted-then-resumed, MelGAN with a VQ-VAE-2 in the loop
(method 3, joint) straight through, and provokes an error on one rank;
the test process trains the same runs in one process. Checked: both ranks hold the same weights
at every checkpoint; the 2-rank weights and metrics equal the 1-process ones on the same global
batch to float tolerance; an interrupted 2-rank run resumes into the uninterrupted one exactly;
rank 1 writes no file; an error on rank 1 alone stops both ranks with the same one line.

The tolerance: after one step the 2-rank weights are within 3e-7 of one process's (the ranks'
gradients are summed in another order). Training amplifies such rounding: the VQ-VAE-2 and VQMIVC
stay within 1e-6 after 4 steps, MelGAN's generator drifts to 4e-4 (its log-magnitude losses are
steep near silence) - less than one process on 2 threads instead of 1 drifts from itself over the
same 4 steps (5e-3). With the VQ-VAE-2 in the vocoder's loop (joint) that drift reaches its
encoder, nearest-code choices within rounding of a tie flip (a few top-level frames), and
the EMA codebooks move apart (1e-2): they are left out there, the parameters agree to 1.5e-3. The
metrics of every step agree to 5e-5 (relative; joint 2e-3 after the flip, its encoder reading
speaker-standardised mels) all the same, but for the
CPC accuracy, whose ties between equal codes are broken by rounding too.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import sys
import time

import pytest
import torch
import torch.multiprocessing as mp

from pipeline.core.checkpoint import load_checkpoint
from pipeline.core.config import load_config
from pipeline.core.errors import UserError
from tests.fixtures_melgan import short_config
from tests.fixtures_training import train_until_first_checkpoint

WORLD = 2
STEPS = 4           # checkpoints at 2 (where the interrupted runs stop) and 4
SPAWN_TIMEOUT = 240
# Weights of a 2-rank run against 1 process: one step agrees to ~1e-7; Adam turns gradient sums in
# another order into differences that grow with the steps (most in MelGAN's generator).
ATOL = {"vqvae2": 1e-5, "vqmivc": 1e-5, "melgan": 2e-3, "joint": 5e-3}
METRIC_RTOL = {"vqvae2": 1e-4, "vqmivc": 1e-4, "melgan": 1e-4, "joint": 5e-3}
TIE_BROKEN = {"cpc_acc", "val_cpc_acc", "vq_cpc_acc"}     # metrics left out (see the docstring)
_UNIT = ("vqvae.train.checkpoint_every=2", "vqvae.train.log_every=1", "vqvae.train.val_max_utterances=2",
         "vqvae.quantizer.restart_every=3", f"vqvae.train.steps={STEPS}")   # a restart after the interruption
OVERRIDES = {"vqvae2": _UNIT, "vqmivc": (*_UNIT, "system=vqmivc")}
RESUMED = ("vqvae2", "vqmivc", "melgan")    # trained straight and interrupted-then-resumed
SYSTEMS = (*RESUMED, "joint")               # trained straight


def config_of(system: str):
    tiny = load_config("tiny", ["runtime.threads=1"])
    if system == "melgan":  # samples and validation on: rank 0 alone must write them
        return short_config(tiny, STEPS, "melgan.train.num_samples=1", "melgan.train.validate_every=2")
    if system == "joint":
        return short_config(tiny, STEPS, "melgan.train.method=joint")
    return tiny.replace(OVERRIDES[system])


def train_system(system: str, features, corpus, out, **kwargs):
    if system in ("melgan", "joint"):
        from pipeline.train.melgan import train
        return train(features, corpus, out, config_of(system), progress=False, **kwargs)
    from pipeline.train import vqmivc, vqvae
    trainer = vqmivc if system == "vqmivc" else vqvae
    return trainer.train(features, out, config_of(system), progress=False, **kwargs)


# ---------------------------------------------------------------------------------------- the ranks
def _record_writes(root: str, writes: list) -> None:
    """Note every file this process creates, writes, renames or removes under ``root``."""
    flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def hook(event, args):
        if event == "open":
            path, mode, flag = args
            writing = any(c in (mode or "") for c in "wax+") or (mode is None and bool((flag or 0) & flags))
        elif event in ("os.rename", "os.remove", "os.mkdir", "os.rmdir", "shutil.rmtree"):
            path, writing = (args[1] if event == "os.rename" else args[0]), True
        else:
            return
        if writing and isinstance(path, (str, bytes, os.PathLike)) and os.fsdecode(path).startswith(root):
            writes.append(os.fsdecode(path))

    sys.addaudithook(hook)


def _record_weights(digests: list) -> None:
    """Note, on every rank, a digest of the models at each checkpoint (rank 0 writes it)."""
    from pipeline.core.training import TrainLoop
    real_save = TrainLoop.save

    def save(self):
        state = hashlib.sha256()
        for name, model in sorted(self.models.items()):
            for key, value in model.state_dict().items():
                state.update(f"{name}.{key}".encode() + value.detach().cpu().contiguous().numpy().tobytes())
        digests.append([str(self.run_dir), self.step, state.hexdigest()])
        real_save(self)

    TrainLoop.save = save


def _provoke(rank: int, monkeypatch, failure: str) -> None:
    """Make rank 1 alone fail: in set-up (``setup``) or with a NaN loss at its second step (``step``)."""
    from pipeline.train import vqvae
    if rank != 1:
        return
    if failure == "setup":
        def refuse(*args, **kwargs):
            raise UserError("rank one cannot read its features")
        monkeypatch.setattr(vqvae, "load_training_data", refuse)
    else:
        real_step = vqvae.train_step

        def nan_at_second_step(net, optimizer, batch, config, step, device, amp):
            metrics = real_step(net, optimizer, batch, config, step, device, amp)
            return {**metrics, "loss": math.nan} if step == 1 else metrics
        monkeypatch.setattr(vqvae, "train_step", nan_at_second_step)


def _rank(rank: int, port: int, features: str, corpus: str, root: str) -> None:
    """One torchrun rank: every system straight and interrupted-then-resumed, then two failures."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(WORLD), RANK=str(rank),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(WORLD), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    writes, errors, digests = [], {}, []
    _record_writes(os.path.join(root, "runs"), writes)
    _record_weights(digests)
    for system in SYSTEMS:
        runs = os.path.join(root, "runs", system)
        train_system(system, features, corpus, os.path.join(runs, "two"))
        if system not in RESUMED:
            continue
        monkeypatch = pytest.MonkeyPatch()
        train_until_first_checkpoint(train_system, monkeypatch, system, features, corpus, os.path.join(runs, "resumed"))
        train_system(system, features, corpus, os.path.join(runs, "resumed"))
    for failure in ("setup", "step"):
        with pytest.MonkeyPatch.context() as monkeypatch:
            _provoke(rank, monkeypatch, failure)
            try:
                train_system("vqvae2", features, corpus, os.path.join(root, "runs", f"fails_{failure}"))
            except UserError as exc:
                errors[failure] = {"type": type(exc).__name__, "message": exc.message}
    torch.distributed.destroy_process_group()
    with open(os.path.join(root, f"rank{rank}.json"), "w", encoding="utf-8") as handle:
        json.dump({"writes": writes, "errors": errors, "weights": digests}, handle)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tiny_features, tiny_corpus, tmp_path_factory):
    """The folder of the 2-rank runs (``runs/<system>/{two,resumed}``), each rank's record
    (``rank<r>.json``) and the 1-process runs (``one/<system>``)."""
    root = tmp_path_factory.mktemp("ddp")
    context = mp.start_processes(_rank, args=(_free_port(), str(tiny_features), str(tiny_corpus), str(root)),
                                 nprocs=WORLD, join=False, start_method="spawn")
    for system in SYSTEMS:  # meanwhile, in this process
        train_system(system, tiny_features, tiny_corpus, root / "one" / system)
    deadline = time.monotonic() + SPAWN_TIMEOUT
    while not context.join(timeout=5):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"the {WORLD} ranks did not finish in {SPAWN_TIMEOUT} s")
    return root


def ranks(root) -> list[dict]:
    return [json.loads((root / f"rank{r}.json").read_text()) for r in range(WORLD)]


# ---------------------------------------------------------------------------------------- checks
def test_every_rank_holds_the_same_weights_at_every_checkpoint(runs):
    zero, one = ranks(runs)
    assert len(zero["weights"]) == 4 * len(RESUMED) + 2    # checkpoints at 2 and 4 of each run
    assert zero["weights"] == one["weights"]


@pytest.mark.parametrize("system", SYSTEMS)
def test_two_ranks_train_as_one_process_on_the_same_global_batch(runs, system):
    one = load_checkpoint(runs / "one" / system / "checkpoint.pt")
    two = load_checkpoint(runs / "runs" / system / "two" / "checkpoint.pt")
    assert one["step"] == two["step"] == STEPS
    assert one["models"].keys() == two["models"].keys()
    for name, weights in one["models"].items():
        for key, value in weights.items():
            other = two["models"][name][key]
            assert value.shape == other.shape, (name, key)
            if system == "joint" and key.startswith("quant_"):
                continue    # EMA codebooks (see the docstring)
            if value.is_floating_point():
                assert torch.allclose(value, other, rtol=0, atol=ATOL[system]), (
                    name, key, float((value - other).abs().max()))
            else:
                assert torch.equal(value, other), (name, key)
    assert [r["step"] for r in one["history"]] == [r["step"] for r in two["history"]]
    for a, b in zip(one["history"], two["history"]):
        assert a.keys() == b.keys()
        for key in a.keys() - {"step"} - TIE_BROKEN:
            assert math.isclose(a[key], b[key], rel_tol=METRIC_RTOL[system], abs_tol=1e-6), (
                a["step"], key, a[key], b[key])


@pytest.mark.parametrize("system", RESUMED)
def test_an_interrupted_two_rank_run_resumes_into_the_uninterrupted_one(runs, system):
    straight = load_checkpoint(runs / "runs" / system / "two" / "checkpoint.pt")
    resumed = load_checkpoint(runs / "runs" / system / "resumed" / "checkpoint.pt")
    assert straight["step"] == resumed["step"] == STEPS
    for name, weights in straight["models"].items():
        for key, value in weights.items():
            assert torch.equal(value, resumed["models"][name][key]), (name, key)
    assert straight["history"] == resumed["history"]


def test_rank_zero_alone_writes_checkpoints_curves_and_samples(runs):
    zero, one = ranks(runs)
    assert one["writes"] == []
    written = {os.path.relpath(p, runs / "runs") for p in zero["writes"]}
    for system in RESUMED:
        for run in ("two", "resumed"):
            for name in ("checkpoint.pt", "history.jsonl", "curves.png", ".checkpoint.pt.stamp.json"):
                assert os.path.join(system, run, name) in written, (system, run, name)
    assert any(p.startswith(os.path.join("melgan", "two", "samples")) and p.endswith(".wav") for p in written)


@pytest.mark.parametrize("failure", ["setup", "step"])
def test_an_error_on_one_rank_stops_every_rank_with_one_line(runs, failure):
    messages = [rank["errors"][failure] for rank in ranks(runs)]
    assert messages[0] == messages[1]
    assert messages[0]["type"] == "RankFailed"
    text = messages[0]["message"]
    assert "\n" not in text and text.startswith("rank 1: ")
    expected = ("rank one cannot read its features" if failure == "setup"
                else "training diverged at step 2: loss is nan")
    assert expected in text
    assert not (runs / "runs" / f"fails_{failure}" / "checkpoint.pt").exists()
