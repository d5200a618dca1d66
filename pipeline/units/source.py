"""Where units come from: a run's unit system encoding dataset splits (cached), or a folder of
npz files written by ``zs2020 encode --format npz``.

* ``encode_splits(layout, dataset, splits)`` encodes every utterance of the splits with the
  run's VQ-VAE and caches the ids in ``RUN/units_cache/<language>/<split>.npz``; the cache is
  up to date when its stamp records the same checkpoint and wavs (``--force`` re-encodes);
* ``read_encoded_folder(DIR)`` reads npz files recursively.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from pipeline.contract.dataset import Dataset, Segment, Utterance, speaker_of
from pipeline.contract.names import ALL_SPLITS
from pipeline.core.errors import UserError
from pipeline.core.io import atomic_path
from pipeline.core.layout import RunLayout
from pipeline.core.runtime import pick_device
from pipeline.core.stamp import file_identity, files_identity, fingerprint, is_up_to_date, write_stamp
from pipeline.core.threads import pool_size
from pipeline.systems.encoding import encode_wavs, read_units_npz
from pipeline.systems.unit_systems import load_unit_system
from pipeline.systems.vqvae import Units

LEVELS = ("bottom", "top")   # a single-level system (VQMIVC) has bottom only: its top arrays are empty
CACHE_VERSION = 2


@dataclass
class EncodedUtterance:
    key: str                  # "<split>/<utt_id>" (or a path relative to an encoded folder)
    speaker: str
    bottom: np.ndarray        # (Tb,) int
    top: np.ndarray           # (Tt,) int
    num_frames: int           # mel frames (10 ms)
    seconds: float            # audio duration


@dataclass
class UnitSet:
    """Encoded utterances plus what is needed to interpret them."""
    utterances: list[EncodedUtterance]
    codebook_sizes: dict[str, int]
    hop_seconds: float
    dataset: Dataset | None = None
    checkpoint: Path | None = None      # the VQ-VAE the units came from (--run)
    encoded_dir: Path | None = None     # the npz folder they came from (--encoded)
    source: str = ""
    _utt_index: dict = field(default_factory=dict, repr=False)

    def ids(self, level: str) -> list[np.ndarray]:
        return [getattr(u, level) for u in self.utterances]

    def speakers(self) -> list[str]:
        return [u.speaker for u in self.utterances]

    def stride(self, level: str) -> int:
        """Mel frames per unit, read off the data (2 for bottom, 4 for top with our VQ-VAE-2)."""
        longest = max(self.utterances, key=lambda u: u.num_frames)
        n = len(getattr(longest, level))
        return max(1, int(round(longest.num_frames / n))) if n else 1

    def frame_seconds(self, level: str) -> float:
        return self.stride(level) * self.hop_seconds

    def dataset_utterance(self, key: str) -> Utterance | None:
        """The dataset utterance behind a key (``test/S021_0003`` or a bare ``S021_0003``)."""
        if self.dataset is None:
            return None
        if not self._utt_index:
            for split in ALL_SPLITS:
                for utt in self.dataset.utterances(split, required=False):
                    self._utt_index[utt.key] = utt
                    self._utt_index.setdefault(utt.utt_id, utt)
        return self._utt_index.get(key) or self._utt_index.get(Path(key).name)

    def alignments(self) -> list[list[Segment] | None]:
        out = []
        for u in self.utterances:
            utt = self.dataset_utterance(u.key)
            out.append(self.dataset.alignment(utt) if utt is not None else None)
        return out


def load_system(checkpoint: Path, device: str):
    """The run's unit system (for its codebooks, decoder and speakers)."""
    if not checkpoint.is_file():
        raise UserError(f"{checkpoint}: no unit-system checkpoint (train it with `zs2020 train-vqvae`)")
    return load_unit_system(checkpoint, str(pick_device(device)))


def codebook_sizes(system) -> dict[str, int]:
    return {level: int(len(book)) for level, book in system.codebooks.items()}


def _ids(key: tuple[str, str], units: Units) -> tuple[str, np.ndarray, np.ndarray, int]:
    """Encoding sink: the ids of one utterance (small enough to send back from a worker)."""
    return key[0], np.asarray(units.bottom_ids, dtype=np.int64), np.asarray(units.top_ids, dtype=np.int64), \
        int(units.num_frames)


def _save_cache(path: Path, encoded: list[EncodedUtterance], sizes: dict, hop: float) -> None:
    meta = {"codebook_sizes": sizes, "hop_seconds": hop,
            "keys": [u.key for u in encoded], "speakers": [u.speaker for u in encoded]}
    arrays = {"meta": np.array(json.dumps(meta)),
              "num_frames": np.array([u.num_frames for u in encoded], dtype=np.int64),
              "seconds": np.array([u.seconds for u in encoded], dtype=np.float64)}
    for level in LEVELS:
        seqs = [getattr(u, level) for u in encoded]
        arrays[f"{level}_ids"] = np.concatenate(seqs).astype(np.int32) if seqs else np.zeros(0, np.int32)
        arrays[f"{level}_lengths"] = np.array([len(s) for s in seqs], dtype=np.int64)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def _load_cache(path: Path) -> tuple[list[EncodedUtterance], dict, float] | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            split = {level: np.split(data[f"{level}_ids"].astype(np.int64),
                                     np.cumsum(data[f"{level}_lengths"])[:-1]) for level in LEVELS}
            encoded = [EncodedUtterance(key, spk, split["bottom"][i], split["top"][i], int(data["num_frames"][i]),
                                        float(data["seconds"][i]))
                       for i, (key, spk) in enumerate(zip(meta["keys"], meta["speakers"]))]
            return encoded, meta["codebook_sizes"], float(meta["hop_seconds"])
    except (OSError, ValueError, KeyError):
        return None   # unreadable or old cache: re-encode


def encode_splits(run: str | Path, dataset: Dataset, splits: Sequence[str], device: str = "auto",
                  force: bool = False, progress: bool = True, jobs: int | None = None) -> UnitSet:
    """Units of every utterance of ``splits``, from the cache when it is up to date."""
    layout = RunLayout.of(run)
    checkpoint = layout.vqvae_checkpoint
    if not checkpoint.is_file():
        raise UserError(f"{run}: no vqvae/checkpoint.pt in this run folder (train it with `zs2020 train-vqvae`)")
    encoded: list[EncodedUtterance] = []
    system = None
    sizes: dict = {}
    hop = 0.0
    for split in splits:
        utts = dataset.utterances(split)
        path = layout.units_cache(dataset.language, split)
        identity = fingerprint(CACHE_VERSION, file_identity(checkpoint), str(dataset.root.resolve()),
                               dataset.language, files_identity((u.key, u.path) for u in utts))
        cached = None if force or not is_up_to_date(path, identity) else _load_cache(path)
        if cached is None:
            system = system or load_system(checkpoint, device)
            sizes, hop = codebook_sizes(system), system.spec.frame_period
            rows = encode_wavs(checkpoint, [((u.key, u.speaker), u.path) for u in utts], _ids,
                               jobs=pool_size(jobs, len(utts) // 200 + 1), device=str(pick_device(device)),
                               progress=progress, desc=f"encoding {split}")
            by_key = {u.key: u for u in utts}
            split_units = [EncodedUtterance(key, by_key[key].speaker, bottom, top, frames, by_key[key].duration())
                           for key, bottom, top, frames in rows]
            _save_cache(path, split_units, sizes, hop)
            write_stamp(path, identity)
        else:
            split_units, sizes, hop = cached
        encoded.extend(split_units)
    return UnitSet(encoded, dict(sizes), hop, dataset, checkpoint, source=f"{run} ({', '.join(splits)})")


def read_npz_units(path: Path, hop_seconds: float, key: str | None = None) -> EncodedUtterance:
    """One file written by ``zs2020 encode --format npz``."""
    arrays = read_units_npz(path)
    bottom = np.asarray(arrays["bottom_ids"], dtype=np.int64).ravel()
    top = np.asarray(arrays.get("top_ids", []), dtype=np.int64).ravel()
    num_frames = int(arrays["num_frames"]) if "num_frames" in arrays else 2 * len(bottom)
    key = key or path.stem
    # The npz holds no duration: D is taken as the mel frames x the hop (at most one hop over per file).
    return EncodedUtterance(key, speaker_of(Path(key).name), bottom, top, num_frames, num_frames * hop_seconds)


def read_encoded_folder(folder: Path, hop_seconds: float, dataset: Dataset | None = None,
                        progress: bool = True) -> UnitSet:
    if not folder.is_dir():
        raise UserError(f"{folder}: encoded folder does not exist")
    # Hidden entries are half-written temporaries (pipeline.core.io.atomic_path names them ".x.npz.*").
    files = sorted(p for p in folder.rglob("*.npz")
                   if not any(part.startswith(".") for part in p.relative_to(folder).parts))
    if not files:
        raise UserError(f"{folder}: no .npz files (write some with `zs2020 encode --format npz`)")
    # ``with``: a refused file clears the bar, so its Error line starts a line of its own
    with tqdm(files, desc="reading units", unit="file", disable=not progress, leave=False) as bar:
        encoded = [read_npz_units(p, hop_seconds, str(p.relative_to(folder).with_suffix(""))) for p in bar]
    sizes = {level: int(max((int(getattr(u, level).max(initial=-1)) for u in encoded), default=-1) + 1)
             for level in LEVELS}
    sizes = {level: size for level, size in sizes.items() if size > 0 or level == "bottom"}   # single-level files
    return UnitSet(encoded, sizes, hop_seconds, dataset, encoded_dir=folder, source=str(folder))


def codebook_vectors(units: UnitSet, device: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per level: (vectors (K, D), known mask (K,)). From the checkpoint when there is one,
    else gathered from the npz files' quantized vectors (only codes that occur)."""
    if units.checkpoint is not None:
        books = load_system(units.checkpoint, device).codebooks
        return {lv: (b, np.ones(len(b), dtype=bool)) for lv, b in books.items()}
    return _vectors_from_npz(units)


def _vectors_from_npz(units: UnitSet) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    folder = units.encoded_dir
    levels = [lv for lv in LEVELS if lv in units.codebook_sizes]
    found: dict[str, dict[int, np.ndarray]] = {lv: {} for lv in levels}
    for utt in units.utterances:
        path = folder / f"{utt.key}.npz"
        data = read_units_npz(path)
        missing = [f"{lv}_vectors" for lv in levels if f"{lv}_vectors" not in data]
        if missing:
            raise UserError(f"{path}: no {'/'.join(missing)}; plot needs them (or use --run)")
        pairs = [("bottom", utt.bottom, data["bottom_vectors"])]
        if "top" in found:
            pairs.append(("top", np.repeat(utt.top, units.stride("top") // units.stride("bottom"))
                          [:len(data["top_vectors"])], data["top_vectors"]))
        for level, ids, vectors in pairs:
            for i, code in enumerate(ids):
                found[level].setdefault(int(code), np.asarray(vectors[i], dtype=np.float32))
    out = {}
    for level in levels:
        size = units.codebook_sizes[level]
        dim = len(next(iter(found[level].values())))
        vectors = np.zeros((size, dim), dtype=np.float32)
        known = np.zeros(size, dtype=bool)
        for code, vec in found[level].items():
            vectors[code], known[code] = vec, True
        out[level] = (vectors, known)
    return out
