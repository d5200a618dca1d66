"""The one loop that encodes many wavs with a trained unit system (the encode stage, the
submission's unit files and the units cache all go through ``encode_wavs``), and the npz file
of one encoded utterance.

Work is split into batches; each batch is read, turned into log-mels and encoded in few
forward passes (``VQVAE.encode_mels`` groups equal lengths). With ``jobs`` > 1 the batches run
in worker processes that each load the system once and share the CPUs between them.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from models.featurespec import FeatureSpec
from pipeline.contract.dataset import speaker_of
from pipeline.core.audio import read_wav
from pipeline.core.checkpoint import load_checkpoint
from pipeline.core.schema import MAX_CODES
from pipeline.core.errors import UserError
from pipeline.core.io import atomic_path
from pipeline.core.pool import run_batches
from pipeline.core.runtime import set_threads
from pipeline.features import MelMoments, grouped_statistics, logmel
from pipeline.systems.unit_systems import load_unit_system
from pipeline.systems.vqvae import Units

BATCH_FILES = 64
_WORKER: dict = {}


def _load(checkpoint: str, device: str) -> None:
    """Per process: the system, loaded once; inference threads by the thread policy."""
    set_threads()
    _WORKER["system"] = load_unit_system(checkpoint, device)


def _encode_batch(batch: list[tuple[Any, str, Callable, Any]]) -> list[Any]:
    system = _WORKER["system"]
    mels = [logmel(read_wav(path, system.spec.sample_rate), system.spec) for _, path, _, _ in batch]
    units = system.encode_mels(mels, stats=[stats for *_, stats in batch])
    return [sink(key, u) for (key, _, sink, _), u in zip(batch, units)]


def _file_moments(batch: list[tuple[str, FeatureSpec]]) -> list[MelMoments]:
    return [MelMoments.of(logmel(read_wav(path, spec.sample_rate), spec)) for path, spec in batch]


def speaker_stats_of_files(paths: Sequence[str | os.PathLike], spec: FeatureSpec, jobs: int = 1,
                           progress: bool = True) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each wav, the log-mel statistics (per-bin mean, std) of its speaker over all of that
    speaker's wavs among ``paths``. The speaker is the file name's prefix before the first ``_``
    (the ZeroSpeech naming, ``S002_0379088085.wav``); a name without one is a speaker of its own."""
    moments = run_batches(_file_moments, [(str(p), spec) for p in paths], jobs, batch_size=BATCH_FILES,
                          desc="speaker statistics", unit="utt", progress=progress, start="spawn")
    speakers = [speaker_of(Path(p).stem) for p in paths]
    stats = grouped_statistics(moments, speakers)
    return [stats[speaker] for speaker in speakers]


def speaker_norm_spec(checkpoint: str | os.PathLike) -> FeatureSpec | None:
    """The feature spec of a unit system whose encoders read speaker-standardised log-mels, else None."""
    meta = load_checkpoint(checkpoint)["meta"]
    return FeatureSpec.from_dict(meta["feature_spec"]) if meta.get("model", {}).get("speaker_norm") else None


def encode_wavs(checkpoint: str | os.PathLike, items: Sequence[tuple[Any, str | os.PathLike]],
                sink: Callable[[Any, Units], Any], jobs: int = 1, device: str = "cpu", progress: bool = True,
                desc: str = "encoding", speaker_files: Sequence[str | os.PathLike] | None = None,
                stats: Sequence[tuple[np.ndarray, np.ndarray]] | None = None) -> list[Any]:
    """``sink(key, units)`` for every ``(key, wav path)``; returns the sinks' results in order.
    ``sink`` runs where the encoding ran (a worker process when ``jobs`` > 1): it writes files or
    returns something small. Bad audio is one UserError naming the file. A system with
    ``speaker_norm`` encodes every wav with its speaker's statistics (``speaker_stats_of_files``)
    over ``speaker_files`` and the wavs of ``items``: give all of a speaker's wavs. A caller that
    already has them gives ``stats``, one (mean, std) per item, and nothing is computed here."""
    if not items:
        return []
    if stats is not None and len(stats) != len(items):
        raise ValueError(f"{len(stats)} speaker statistics for {len(items)} wavs")
    spec = speaker_norm_spec(checkpoint) if stats is None else None
    if spec is not None:
        paths = [str(path) for _, path in items]
        pool = sorted(set(paths) | {str(p) for p in speaker_files or ()})
        by_path = dict(zip(pool, speaker_stats_of_files(pool, spec, jobs, progress)))
        stats = [by_path[p] for p in paths]
    elif stats is None:
        stats = [None] * len(items)
    tasks = [(key, str(path), sink, s) for (key, path), s in zip(items, stats)]
    # spawn: this process may already run torch with OpenMP threads, which a fork can deadlock
    return run_batches(_encode_batch, tasks, jobs, batch_size=BATCH_FILES, desc=desc, unit="utt",
                       progress=progress, initializer=_load, initargs=(str(checkpoint), device), start="spawn")


# ============================================================================ npz files
def write_units_npz(path: str | os.PathLike, units: Units) -> None:
    """Every array of ``units`` in one npz (atomically)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **units.arrays())


def read_units_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The arrays of an npz written by ``write_units_npz`` (bottom_ids at least; top_ids from a
    two-level system)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError, KeyError, EOFError) as exc:
        raise UserError(f"{path}: not an encoded-units npz ({' '.join(str(exc).split())[:100]})") from None
    if "bottom_ids" not in arrays:
        raise UserError(f"{path}: not an encoded-units npz with bottom_ids")
    for name in (n for n in arrays if n.endswith("_ids")):
        problem = _bad_ids(arrays[name])
        if problem:
            raise UserError(f"{path}: {name} {problem}; unit ids are integers from 0 to {MAX_CODES - 1}")
    return arrays


def _bad_ids(ids: np.ndarray) -> str | None:
    """Why an array cannot be unit ids (they index codebooks and histograms), or None."""
    if ids.dtype.kind not in "iu":
        return f"holds {ids.dtype} values"
    if ids.size and ids.min() < 0:
        return f"holds a negative id ({ids.min()})"
    if ids.size and ids.max() >= MAX_CODES:
        return f"holds the id {ids.max()}"
    return None
