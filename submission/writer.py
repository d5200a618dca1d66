"""Write a complete 2019-track submission from a trained run, in the official layout::

    metadata.yaml                       author, affiliation, open source (config ``submission:``)
    2019/metadata.yaml                  abx distance, description, real hyperparameters, flags
    2019/code/                          snapshot of this repository's sources (open source only)
    2019/<language>/test/<utt>.txt      bottom-level code vectors, one line per 20 ms frame
    2019/<language>/test/<V>_<id>.wav   one converted wav per synthesis.txt line
    2019/<language>/auxiliary_embedding1/<utt>.txt   top code vectors repeated to the bottom rate
    2019/<language>/auxiliary_embedding2/<utt>.txt   encoder outputs before quantization

Which files each language needs comes from ``submission.filelists`` (official lists, the
dataset's lists, or derived from the dataset). A language the dataset lacks (the demo corpus
has no surprise language) is written as an empty folder, because the official validator
requires ``2019/surprise/`` to exist.

The folder is built in a temporary sibling and renamed into place; it is skipped when a stamp
next to it (``.<name>.stamp.json``) records the same inputs (checkpoints, file lists, test wavs,
synthesis lines, the ``submission:`` config). The zip is written after it, atomically, with
every entry at its root and the input fingerprint in its comment.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from tqdm import tqdm

from pipeline.config import fingerprint
from pipeline.dataset import LANGUAGES, TRAIN_SPLITS, Dataset
from pipeline.errors import UserError
from pipeline.io import atomic_dir, atomic_path, file_digest, write_text_atomic
from submission.filelists import FileLists, find_filelists
from submission.parallel import run_batches
from submission.unitfile import format_units
from submission.validator import ABX_DISTANCES, AUX_FOLDERS

WRITER_VERSION = 1
VOCODERS = ("melgan", "griffinlim")
AUX_DESCRIPTIONS = (
    "Top-level VQ-VAE-2 code vectors (one every 40 ms), each repeated twice so that the file has "
    "one line per 20 ms like the test/ unit files.",
    "Bottom-level encoder outputs before vector quantization (continuous, one per 20 ms).",
)
# Source files copied into 2019/code when the repository is not a git checkout.
PACKAGE_DIRS = ("pipeline", "models", "submission", "tests", "benchmarks", "scripts")
PACKAGE_FILES = ("Makefile", "pyproject.toml", "README.md", "environment.yml", ".gitignore")
MAX_CODE_FILE_BYTES = 5 << 20
ZIP_DATE = (1980, 1, 1, 0, 0, 0)       # fixed entry dates: the same folder gives the same zip


@dataclass
class SubmissionResult:
    folder: Path
    zip: Path | None
    fingerprint: str
    rebuilt: bool                       # False when the folder was already up to date
    zipped: bool                        # False when the zip was already up to date (or not asked)
    counts: dict                        # language -> {"units": n, "wavs": n}


# ============================================================================ metadata
def top_metadata(section: dict) -> dict:
    meta = {"author": section.get("author"), "affiliation": section.get("affiliation"),
            "open source": section.get("open_source")}
    for key, kind in (("author", str), ("affiliation", str), ("open source", bool)):
        if not isinstance(meta[key], kind) or (kind is str and not meta[key].strip()):
            setting = "open_source" if key == "open source" else key
            raise UserError(f"submission.{setting} must be a non-empty {kind.__name__} "
                            f"(got {meta[key]!r}); set it with submission.{setting}=...")
    return meta


def uses_parallel_data(dataset_root: Path, languages: list[str]) -> bool:
    """The VQ-VAE trains on every training split of its languages (checkpoint meta), train/parallel
    included (as unpaired audio): parallel data is used as soon as the dataset has it there."""
    for language in languages:
        if language in Dataset.languages(dataset_root):
            dataset = Dataset(dataset_root, language)
            if any(dataset.has_split(split) for split in TRAIN_SPLITS if "parallel" in split):
                return True
    return False


def describe_system(vqvae: dict, melgan: dict | None, vocoder: str, extra: str) -> str:
    model = vqvae["meta"].get("model", {})
    spec = vqvae["meta"].get("feature_spec", {})
    hop_ms = 1000 * spec.get("hop_length", 160) / spec.get("sample_rate", 16000)
    text = (
        f"VQ-VAE-2 with two codebook levels on {spec.get('n_mels', 80)}-band log-mel features "
        f"({hop_ms:g} ms hop): bottom codes every {2 * hop_ms:g} ms (K={model.get('bottom_codes', '?')}, "
        f"{model.get('bottom_dim', '?')}-dim), top codes every {4 * hop_ms:g} ms "
        f"(K={model.get('top_codes', '?')}). The decoder is conditioned on a learned speaker embedding "
        f"({model.get('num_speakers', '?')} training speakers); for synthesis the units of the source are "
        f"decoded with the target voice's embedding into a mel spectrogram, rendered by "
        + ("a MelGAN vocoder trained on the target voices" if vocoder == "melgan" else "Griffin-Lim")
        + f". Unit files hold the bottom-level code vectors, one line per {2 * hop_ms:g} ms. "
        f"Trained {vqvae['step']} VQ-VAE steps"
        + (f" and {melgan['step']} MelGAN steps" if melgan is not None else "")
        + " with the zs2020 pipeline, no external data."
    )
    return f"{extra.strip()} {text}" if extra and extra.strip() else text


def track_metadata(section: dict, vqvae: dict, melgan: dict | None, vocoder: str, parallel: bool,
                   auxiliary: bool) -> dict:
    distance = section.get("abx_distance", "dtw_cosine")
    vq_config = vqvae["config"]
    hyper = {"features": vq_config.get("features"), "seed": vq_config.get("seed"),
             "vqvae": {"preset": vq_config.get("name"), "steps_trained": vqvae["step"],
                       "model": vqvae["meta"].get("model"), "settings": vq_config.get("vqvae")},
             "vocoder": {"name": vocoder}}
    if melgan is not None:
        hyper["vocoder"].update({"preset": melgan["config"].get("name"), "steps_trained": melgan["step"],
                                 "settings": melgan["config"].get("melgan")})
    meta = {"abx distance": distance,
            "system description": describe_system(vqvae, melgan, vocoder, section.get("system_description") or ""),
            "hyperparameters": hyper,
            "using parallel train": parallel,
            # Every model is trained from the dataset alone (no pretrained weights, no other corpus).
            "using external data": False}
    if auxiliary:
        meta["auxiliary1 description"], meta["auxiliary2 description"] = AUX_DESCRIPTIONS
    return meta


def dump_yaml(path: Path, data: dict) -> None:
    # Round-trip through JSON: tuples and numpy scalars become plain YAML types.
    plain = json.loads(json.dumps(data, default=lambda v: v.item() if hasattr(v, "item") else str(v)))
    path.write_text(yaml.safe_dump(plain, sort_keys=False, allow_unicode=True, width=100), encoding="utf-8")


# ============================================================================ code snapshot
def repository_root() -> Path:
    return Path(__file__).resolve().parents[1]


def source_files(repo: Path) -> list[str]:
    """Files of the repository: ``git ls-files`` (tracked plus untracked-not-ignored, so work not
    yet committed is included) in a git checkout, else the package folders and top-level files."""
    try:
        out = subprocess.run(["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             capture_output=True, check=True, timeout=60).stdout
        names = sorted({n for n in out.decode("utf-8", "surrogateescape").split("\0") if n})
    except (OSError, subprocess.SubprocessError):
        names = [str(p.relative_to(repo)) for d in PACKAGE_DIRS if (repo / d).is_dir()
                 for p in sorted((repo / d).rglob("*")) if "__pycache__" not in p.parts]
        names += [n for n in PACKAGE_FILES if (repo / n).exists()]
    keep = []
    for name in names:
        path = repo / name
        if path.is_symlink() or not path.is_file() or path.stat().st_size > MAX_CODE_FILE_BYTES:
            continue
        if name.split("/", 1)[0] == "data" and not name.endswith(".md"):
            continue   # generated corpora and runs never belong in the code folder
        keep.append(name)
    return keep


def snapshot_code(dest: Path, repo: Path | None = None) -> int:
    repo = repo or repository_root()
    names = source_files(repo)
    if not names:
        raise UserError(f"{repo}: found no source files to put in 2019/code (set submission.open_source=false "
                        f"to submit without code)")
    for name in names:
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(repo / name, target)
    return len(names)


# ============================================================================ encoding
_ENCODER = None


def _init_encoder(checkpoint: str, threads: int) -> None:
    """Per process: load the VQ-VAE once (1 torch thread per worker process)."""
    global _ENCODER
    import torch

    from pipeline.encode import load_vqvae
    if threads > 0:
        torch.set_num_threads(threads)
    _ENCODER = load_vqvae(checkpoint, "cpu")


def _encode_batch(batch: list[tuple[str, str, list[str]]]) -> list[tuple[str, int]]:
    """Encode (wav path, unit file name, [folders]) items; write one file per folder."""
    done = []
    for wav, name, folders in batch:
        units = _ENCODER.encode_wav(wav)
        arrays = [units.bottom_vectors, units.top_vectors, units.prequant]
        frames = arrays[0].shape[0]
        if any(a.ndim != 2 or a.shape[0] != frames for a in arrays) or frames == 0:
            raise RuntimeError(f"{wav}: encoder returned inconsistent unit arrays "
                               f"{[a.shape for a in arrays]}")
        write_unit_arrays(name, folders, arrays)
        done.append((name, frames))
    return done


def write_unit_arrays(name: str, folders: list[str], arrays: list[np.ndarray]) -> None:
    """One unit file ``name`` per folder (test/, then the auxiliary folders), from the matching
    array. Plain writes: the whole submission folder is already a temporary one."""
    for folder, array in zip(folders, arrays):
        Path(folder, name).write_text(format_units(array), encoding="ascii")


def encode_units(items: list[tuple[str, str, list[str]]], checkpoint: Path, jobs: int, progress: bool,
                 label: str) -> dict[str, int]:
    """Write the unit files of ``items`` with ``jobs`` encoder processes (1 torch thread each;
    in this process with its own threads when ``jobs`` is 1); returns name -> frames."""
    size = max(1, min(200, len(items) // (jobs * 8) + 1))
    done = run_batches(_encode_batch, items, jobs, desc=f"units {label}", unit="utt", progress=progress,
                       batch_size=size, initializer=_init_encoder,
                       initargs=(str(checkpoint), 1 if jobs > 1 else 0), spawn=True)
    return dict(done)


# ============================================================================ zip
def write_zip(folder: Path, zip_path: Path, level: int, comment: str, progress: bool) -> None:
    """Deterministic zip of ``folder``'s content with entries at the root (directories included,
    so an empty 2019/surprise/ survives)."""
    entries = sorted(p for p in folder.rglob("*"))
    with atomic_path(zip_path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=level) as archive:
            for path in tqdm(entries, desc="zip", unit="file", disable=not progress, dynamic_ncols=True):
                name = path.relative_to(folder).as_posix()
                if path.is_dir():
                    info = zipfile.ZipInfo(name + "/", ZIP_DATE)
                    info.external_attr = (0o40755 << 16) | 0x10
                    archive.writestr(info, b"")
                else:
                    info = zipfile.ZipInfo(name, ZIP_DATE)
                    info.external_attr = 0o100644 << 16
                    # writestr, not open(info, "w"): only writestr honours the compression level.
                    archive.writestr(info, path.read_bytes(), compress_type=zipfile.ZIP_DEFLATED,
                                     compresslevel=level)
            archive.comment = comment.encode("ascii")


def zip_fingerprint(zip_path: Path) -> str | None:
    try:
        with zipfile.ZipFile(zip_path) as archive:
            return archive.comment.decode("ascii", "replace")
    except (OSError, zipfile.BadZipFile):
        return None


# ============================================================================ the writer
def stamp_path(out_dir: Path) -> Path:
    return out_dir.parent / f".{out_dir.name}.stamp.json"


@dataclass
class LanguagePlan:
    dataset: Dataset
    lists: FileLists
    items: list[tuple[str, str]]         # (wav path, unit file name)
    synthesis: list                      # SynthesisLine


def plan_language(dataset_root: Path, language: str, filelists) -> LanguagePlan:
    """Match the file lists with the dataset; refuse before writing anything if they disagree."""
    dataset = Dataset(dataset_root, language)
    lists = find_filelists(language, filelists, dataset_root)
    tests = {u.utt_id: u for u in dataset.utterances("test")}
    items = []
    for name in lists.unit_files:
        utt = tests.get(name[:-4] if name.endswith(".txt") else name)
        if utt is None or not name.endswith(".txt"):
            raise UserError(f"{lists.source}: lists {name!r} but {dataset.lang_dir / 'test'} has no matching .wav")
        items.append((str(utt.path), name))
    synthesis = dataset.synthesis()
    produced = {line.output_name for line in synthesis}
    unknown = [n for n in lists.wav_files if n not in produced]
    if unknown:
        raise UserError(f"{lists.source}: requires {unknown[0]} ({len(unknown)} wavs in all) that no line of "
                        f"{dataset.lang_dir / 'synthesis.txt'} produces")
    return LanguagePlan(dataset, lists, items, synthesis)


def inputs_fingerprint(plans: dict[str, LanguagePlan], checkpoints: list[Path], section: dict, vocoder: str) -> str:
    """Everything the folder's content depends on (not jobs or the zip level)."""
    data = []
    for language, plan in plans.items():
        wavs = [(Path(p).name, os.stat(p).st_size, os.stat(p).st_mtime_ns) for p, _ in plan.items]
        data.append((language, plan.lists.required, plan.lists.embedding, wavs,
                     [(line.source.key, line.voice) for line in plan.synthesis]))
    content = {k: v for k, v in section.items() if k not in ("jobs", "zip_level")}
    return fingerprint(WRITER_VERSION, [file_digest(p) for p in checkpoints], content, vocoder, data)


def refuse_foreign_folder(out_dir: Path, stamp: Path) -> None:
    """The folder is replaced whole: never do that to one this writer did not make."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir}: exists and is not a folder")
    if out_dir.is_dir() and not stamp.is_file() and any(out_dir.iterdir()) and not (out_dir / "2019").is_dir():
        raise UserError(f"--out {out_dir}: refusing to replace a non-empty folder that is not a submission "
                        f"(remove it or choose another --out)")


def write_submission(dataset_root: str | os.PathLike, run_dir: str | os.PathLike, out_dir: str | os.PathLike,
                     config: dict, zip_path: str | os.PathLike | None = None, make_zip: bool = True,
                     filelists: str | os.PathLike | None = None, vocoder: str | None = None,
                     force: bool = False, jobs: int | None = None, progress: bool = True) -> SubmissionResult:
    """Build ``out_dir`` (and ``<out_dir>.zip`` unless ``make_zip`` is False); see the module docstring."""
    dataset_root, run_dir, out_dir = Path(dataset_root), Path(run_dir), Path(out_dir)
    section = dict(config.get("submission") or {})
    vocoder = vocoder or section.get("vocoder", "melgan")
    if vocoder not in VOCODERS:
        raise UserError(f"unknown vocoder {vocoder!r}: use one of {', '.join(VOCODERS)}")
    jobs = max(1, int(jobs or section.get("jobs", 1)))
    zip_path = (Path(zip_path) if zip_path else out_dir.with_name(out_dir.name + ".zip")) if make_zip else None
    vq_path = run_dir / "vqvae" / "checkpoint.pt"
    mg_path = run_dir / "melgan" / "checkpoint.pt" if vocoder == "melgan" else None
    for path in filter(None, (vq_path, mg_path)):
        if not path.is_file():
            raise UserError(f"{path}: no such checkpoint (train it first: make vqvae melgan, "
                            f"or use --vocoder griffinlim without a MelGAN)")
    languages = Dataset.languages(dataset_root)
    if "english" not in languages:
        raise UserError(f"{dataset_root}: no 2019/english folder (expected ROOT/2019/english/test, synthesis.txt)")
    plans = {lang: plan_language(dataset_root, lang, filelists) for lang in languages}
    auxiliary = bool(section.get("auxiliary", True))
    top_metadata(section)          # refuse bad settings before any work
    if section.get("abx_distance", "dtw_cosine") not in ABX_DISTANCES:
        raise UserError(f"submission.abx_distance must be one of {', '.join(ABX_DISTANCES)}, "
                        f"got {section.get('abx_distance')!r}")
    fp = inputs_fingerprint(plans, [p for p in (vq_path, mg_path) if p], section, vocoder)
    zip_fp = fingerprint(fp, section.get("zip_level", 6))

    stamp = stamp_path(out_dir)
    refuse_foreign_folder(out_dir, stamp)
    stamped = json.loads(stamp.read_text()) if stamp.is_file() else {}
    rebuild = force or not out_dir.is_dir() or stamped.get("fingerprint") != fp
    counts = stamped.get("counts", {})
    if rebuild:
        threads = int((config.get("runtime") or {}).get("threads", 0) or 0)
        counts = build_folder(out_dir, plans, section, vq_path, mg_path, vocoder, auxiliary, jobs, threads, progress)
        write_text_atomic(stamp, json.dumps({"fingerprint": fp, "counts": counts}, indent=1))
    zipped = False
    if zip_path is not None and (rebuild or zip_fingerprint(zip_path) != zip_fp):
        write_zip(out_dir, zip_path, int(section.get("zip_level", 6)), zip_fp, progress)
        zipped = True
    return SubmissionResult(out_dir, zip_path, fp, rebuild, zipped, counts)


def build_folder(out_dir: Path, plans: dict[str, LanguagePlan], section: dict, vq_path: Path, mg_path: Path | None,
                 vocoder: str, auxiliary: bool, jobs: int, threads: int, progress: bool) -> dict:
    from pipeline.checkpoint import load_checkpoint
    from pipeline.runtime import set_threads

    set_threads(threads)
    top = top_metadata(section)
    vqvae = load_checkpoint(vq_path, kind="vqvae")
    melgan = load_checkpoint(mg_path, kind="melgan") if mg_path is not None else None
    parallel = uses_parallel_data(plans["english"].dataset.root, vqvae["meta"].get("languages") or ["english"])
    track = track_metadata(section, vqvae, melgan, vocoder, parallel, auxiliary)
    del vqvae, melgan   # only their configs were needed; the encoder and converter load their own
    counts = {}
    with atomic_dir(out_dir) as tmp:
        dump_yaml(tmp / "metadata.yaml", top)
        (tmp / "2019").mkdir()
        dump_yaml(tmp / "2019" / "metadata.yaml", track)
        if top["open source"]:
            snapshot_code(tmp / "2019" / "code")
        for language in LANGUAGES:
            (tmp / "2019" / language).mkdir()
        for language, plan in plans.items():
            base = tmp / "2019" / language
            folders = [base / "test"] + ([base / f for f in AUX_FOLDERS] if auxiliary else [])
            for folder in folders:
                folder.mkdir()
            items = [(wav, name, [str(f) for f in folders]) for wav, name in plan.items]
            frames = encode_units(items, vq_path, jobs, progress, language)
            counts[language] = {"units": len(frames), "frames": int(sum(frames.values()))}
        set_threads(threads)   # an in-process encoder run may have lowered them
        converter = None
        for language, plan in plans.items():
            from pipeline.convert import Converter, convert_synthesis
            converter = converter or Converter(vq_path, mg_path, vocoder=vocoder, device="cpu")
            wavs = convert_synthesis(plan.dataset, tmp / "2019" / language / "test", converter, progress=progress)
            counts[language]["wavs"] = len(wavs)
            missing = [n for n in plan.lists.required if not (tmp / "2019" / language / "test" / n).is_file()]
            if missing:
                raise UserError(f"2019/{language}/test: {len(missing)} required files were not produced "
                                f"(first: {missing[0]})")
    return counts
