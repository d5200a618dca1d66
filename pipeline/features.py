"""Log-mel features: extraction from audio (the one implementation, via models.logmel), and the
HDF5 feature store every training stage reads."""
from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import h5py
import numpy as np

from models.featurespec import FeatureSpec
from pipeline.contract.dataset import Dataset
from pipeline.contract.names import ALL_SPLITS, LANGUAGES, SAMPLE_RATE
from pipeline.core.audio import peak_normalize, read_wav
from pipeline.core.config import Config
from pipeline.core.errors import UserError
from pipeline.core.io import atomic_path, output_lock
from pipeline.core.outputs import Input, claim_folder
from pipeline.core.pool import parallel_map
from pipeline.core.stamp import files_identity, fingerprint, is_up_to_date, write_stamp


# torch (and the tensor front end) is imported where features are computed, not at module level:
# readers of feature specs and unit files (``zs2020 evaluate`` before its ABX scores) start without it.
DEFERRED_IMPORTS = ("models.logmel",)


@functools.lru_cache(maxsize=4)
def _extractor(spec: FeatureSpec):
    from models.logmel import LogMel
    return LogMel(spec).eval()


def prepare_audio(audio: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """The waveform normalisation every stage applies before features (peak to spec.peak_norm)."""
    return peak_normalize(np.asarray(audio, dtype=np.float32), spec.peak_norm)


def logmel(audio: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """float audio at spec.sample_rate -> (n_mels, ceil(len / hop)) float32 log10 mel."""
    import torch
    with torch.no_grad():
        wav = torch.from_numpy(prepare_audio(audio, spec))
        return _extractor(spec)(wav)[0].numpy().astype(np.float32)


def wav_to_logmel(path: str | os.PathLike, spec: FeatureSpec) -> np.ndarray:
    return logmel(read_wav(path, spec.sample_rate), spec)


class MelMoments:
    """Per-bin frame count, sum and sum of squares of log-mels (float64), added up file by file
    (also across worker processes): the training set's statistics, or one speaker's for
    ``VQVAE2Config.speaker_norm``."""

    def __init__(self, frames: int = 0, total: np.ndarray | float = 0.0, squares: np.ndarray | float = 0.0):
        self.frames, self.total, self.squares = frames, total, squares

    @classmethod
    def of(cls, mel: np.ndarray) -> "MelMoments":
        x = np.asarray(mel, dtype=np.float64)
        return cls(x.shape[1], x.sum(1), (x * x).sum(1))

    def __add__(self, other: "MelMoments") -> "MelMoments":
        return MelMoments(self.frames + other.frames, self.total + other.total, self.squares + other.squares)

    def mean_std(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std), float32 (n_mels,) each."""
        if self.frames < 1:
            raise ValueError("no frames to take statistics of")
        mean = self.total / self.frames
        var = np.maximum(self.squares / self.frames - mean * mean, 0.0)
        return mean.astype(np.float32), np.sqrt(var).astype(np.float32)


def mel_statistics(mels) -> tuple[np.ndarray, np.ndarray]:
    """Per-bin mean and standard deviation over all frames of ``mels``: the training set's
    normalisation that unit systems and vocoders keep in their checkpoints."""
    return sum((MelMoments.of(m) for m in mels), MelMoments()).mean_std()


def grouped_statistics(moments, groups) -> dict:
    """group -> (mean, std) per bin of the ``moments`` (``MelMoments``) added up by ``groups[i]``."""
    totals: dict = {}
    for group, m in zip(groups, moments):
        totals[group] = totals.get(group, MelMoments()) + m
    return {group: m.mean_std() for group, m in totals.items()}


def speaker_statistics(mels, speakers) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """speaker -> (mean, std) per bin over all frames of that speaker's mels (``speakers[i]`` is
    the speaker of ``mels[i]``)."""
    return grouped_statistics((MelMoments.of(m) for m in mels), speakers)


# ============================================================================ HDF5 feature dump
#
# One file per language, ``<out>/<language>.h5``. Every wav of the dataset is one float32
# dataset (n_mels, frames) at its ``Utterance.key`` (``train/unit/S001_0001``), with attrs
# speaker, split, duration, num_samples and path (relative to the dataset root). File attrs:
# ``format``, ``feature_spec`` (JSON of the FeatureSpec), ``dataset_root`` (absolute),
# ``language`` and ``fingerprint`` (spec + every wav's name, size and mtime: the data identity
# training runs record; the same fingerprint in the file's stamp is the up-to-date check).

FORMAT = "zs2020-features/1"
# The front end's settings that are not config keys (the same in every preset, no experiment varies them).
F_MIN = 0.0                 # Hz: the lowest mel band starts at 0
LOG_FLOOR = 1e-5            # mel energies are clamped here before the log10 (silence: -5)
PEAK_NORM = 0.95            # every waveform is scaled to this peak before its features (``prepare_audio``)
CHUNK = 16  # max utterances per worker task: amortises inter-process overhead on short excerpts


def feature_spec(config: Config) -> FeatureSpec:
    """The FeatureSpec of a config: its ``features`` section (already checked) and the constants
    above, at the challenge's sample rate."""
    return FeatureSpec.from_dict({**config.features.to_dict(), "sample_rate": SAMPLE_RATE, "f_min": F_MIN,
                                  "log_floor": LOG_FLOOR, "peak_norm": PEAK_NORM})


class FeatureStore:
    """Read access to one ``<language>.h5`` file. ``spec`` (optional) must match the file's."""

    def __init__(self, path: str | os.PathLike, spec: FeatureSpec | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(f"{self.path}: no such features file (run `zs2020 features` first)")
        try:
            self._h5 = h5py.File(self.path, "r")
            attrs = self._h5.attrs
            if attrs.get("format") != FORMAT:
                raise ValueError("not a zs2020 features file")
            self.spec = FeatureSpec.from_dict(json.loads(attrs["feature_spec"]))
            self.dataset_root = Path(str(attrs["dataset_root"]))
            self.language = str(attrs["language"])
            self.fingerprint = str(attrs["fingerprint"])
        except (OSError, KeyError, ValueError) as exc:
            raise UserError(f"{self.path}: unreadable features file ({' '.join(str(exc).split())[:120]})") from None
        if spec is not None:
            check_spec(self.spec, spec, self.path)
        self._keys: list[str] | None = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self._h5.close()

    def __len__(self) -> int:
        return len(self.keys())

    def __contains__(self, key: str) -> bool:
        return key in self._h5 and hasattr(self._h5[key], "shape")

    def keys(self, split: str | None = None) -> list[str]:
        """Sorted utterance keys, optionally of one split (``train/unit``, ``test``, ...)."""
        if self._keys is None:
            found: list[str] = []
            self._h5.visititems(lambda name, obj: found.append(name) if hasattr(obj, "shape") else None)
            self._keys = sorted(found)
        if split is None:
            return list(self._keys)
        return [k for k in self._keys if k.rpartition("/")[0] == split]

    def get(self, key: str) -> np.ndarray:
        """(n_mels, frames) float32."""
        if key not in self:
            raise UserError(f"{self.path}: no utterance {key!r}")
        return self._h5[key][()]

    def attrs(self, key: str) -> dict:
        if key not in self:
            raise UserError(f"{self.path}: no utterance {key!r}")
        return {k: (v.item() if hasattr(v, "item") else v) for k, v in self._h5[key].attrs.items()}

    def num_frames(self, key: str) -> int:
        return int(self._h5[key].shape[-1])


def check_spec(found: FeatureSpec, expected: FeatureSpec, where) -> None:
    """Refuse features made with another spec (one line naming the first differing fields)."""
    if found != expected:
        diff = [f"{k} {v} vs {expected.to_dict()[k]}" for k, v in found.to_dict().items()
                if expected.to_dict()[k] != v]
        raise UserError(f"{where}: features were computed with a different feature spec "
                        f"({', '.join(diff[:3])}); re-run `zs2020 features --force`")


def open_feature_dir(features_dir: str | os.PathLike, spec: FeatureSpec | None = None,
                     languages=None) -> list[FeatureStore]:
    """Every ``<language>.h5`` in a features folder (english first). All must share one spec
    (and match ``spec`` when given); UserError otherwise or when there is none."""
    features_dir = Path(features_dir)
    wanted = list(languages) if languages else list(LANGUAGES)
    paths = [features_dir / f"{lang}.h5" for lang in wanted if (features_dir / f"{lang}.h5").is_file()]
    if not paths:
        raise UserError(f"{features_dir}: no features file for {', '.join(wanted)} "
                        f"(run `zs2020 features --dataset ROOT --out {features_dir}` first)")
    stores = [FeatureStore(p, spec) for p in paths]
    for store in stores[1:]:
        check_spec(store.spec, stores[0].spec, store.path)
    return stores


def _dump_fingerprint(spec: FeatureSpec, utts) -> str:
    return fingerprint(FORMAT, spec.to_dict(), files_identity((u.key, u.path) for u in utts))


def _compute_chunk(args) -> list[tuple[str, np.ndarray, int]]:
    """Worker task: [(key, wav path)] -> [(key, mel, num_samples)]."""
    items, spec = args
    out = []
    for key, path in items:
        audio = read_wav(path, spec.sample_rate)
        out.append((key, logmel(audio, spec), int(audio.shape[0])))
    return out


def _iter_features(utts, spec: FeatureSpec, jobs: int, progress: bool, desc: str):
    """Yield (key, mel, num_samples) in any order, over ``jobs`` processes (one torch thread
    each: these small STFTs gain nothing from intra-op threads)."""
    import torch
    items = [(u.key, str(u.path)) for u in utts]
    size = max(1, min(CHUNK, len(items) // (4 * jobs)))  # several chunks per worker: balanced load
    chunks = [(items[i:i + size], spec) for i in range(0, len(items), size)]
    _extractor(spec)  # build the filter bank once here; forked workers inherit it
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for result in parallel_map(_compute_chunk, chunks, jobs, ordered=False, desc=desc, unit="utt",
                                   progress=progress, weight=lambda chunk, _: len(chunk[0]), total=len(items)):
            yield from result
    finally:
        torch.set_num_threads(threads)


def dump_features(dataset_root: str | os.PathLike, out_dir: str | os.PathLike, config: Config, jobs: int = 2,
                  force: bool = False, languages=None, progress: bool = True, log=print) -> list:
    """Write ``out_dir/<language>.h5`` for every language of the dataset (or ``languages``).

    Skips a language whose file is up to date (its stamp records the same spec and wav
    names/sizes/mtimes) unless ``force``. Each file is written to a temporary name and renamed.
    Returns the paths.
    """
    root = Path(dataset_root).resolve()
    spec = feature_spec(config)
    langs = list(languages) if languages else Dataset.languages(root)
    if not langs:
        raise UserError(f"{root}: no 2019/english or 2019/surprise folder (expected the ZeroSpeech 2019 layout)")
    out_dir = Path(out_dir)
    claim_folder(out_dir, "features", [Input("--dataset", root)])
    written = []
    for lang in langs:
        ds = Dataset(root, lang)
        utts = [u for split in ALL_SPLITS for u in ds.utterances(split, required=False)]
        if not utts:
            raise UserError(f"{ds.lang_dir}: no .wav files in any split")
        out = out_dir / f"{lang}.h5"
        fp = _dump_fingerprint(spec, utts)
        with output_lock(out, "features run"):
            if not force and is_up_to_date(out, fp):
                if progress:
                    log(f"{out}: up to date ({len(utts)} utterances)")
                written.append(out)
                continue
            by_key = {u.key: u for u in utts}
            # libver="latest": compact attribute storage, about twice as fast for thousands of excerpts.
            with atomic_path(out) as tmp, h5py.File(tmp, "w", libver="latest") as h5:
                h5.attrs.update({"format": FORMAT, "feature_spec": json.dumps(spec.to_dict()),
                                 "dataset_root": str(root), "language": lang, "fingerprint": fp,
                                 "num_utterances": len(utts)})
                for key, mel, num_samples in _iter_features(utts, spec, jobs, progress, f"features {lang}"):
                    utt = by_key[key]
                    dset = h5.create_dataset(key, data=mel)
                    dset.attrs.update({"speaker": utt.speaker, "split": utt.split, "num_samples": num_samples,
                                       "duration": num_samples / spec.sample_rate,
                                       "path": str(utt.path.relative_to(root))})
            write_stamp(out, fp)
        written.append(out)
    return written
