"""``zs2020 evaluate``: score a submission like the official 2019 evaluator, plus extras.

For each language of ``SUBMISSION/2019`` that the dataset has, and for ``test/`` and each
``auxiliary_embedding1/2/`` folder: ABX with the three distances (pipeline/abx.py) and the
bitrate (pipeline/bitrate.py). In the same run and on the same items, the MFCC (+ deltas) and
log-mel baselines computed from the dataset's test wavs, so units are always shown beside
them, and the converted-speech measures (pipeline/speech_measures.py).

Output ``OUT/scores.json`` has the official shape
``{"2019": {"<language>": {"scores": {"abx", "bitrate"}, "details_bitrate": {...},
"details_abx": {...}}}}`` and everything else under ``"zs2020_extras"``;
``OUT/report.md`` holds tables and links PNG plots. The folder is written atomically.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
import zipfile
from pathlib import Path

import click
import numpy as np
import yaml
from scipy.fft import dct
from tqdm import tqdm

from models.logmel import FeatureSpec
from pipeline import abx as abxlib
from pipeline.bitrate import bitrate
from pipeline.config import fingerprint, get, load_config
from pipeline.dataset import Dataset, read_filelist
from pipeline.errors import UserError
from pipeline.io import atomic_dir
from submission.unitfile import UnitFileError, read_units
from submission.validator import AUX_FOLDERS, UnsafeZip, ZipLimits, check_zip_entries

FOLDERS = ("test", *AUX_FOLDERS)
BASELINES = ("mfcc", "logmel")
MAX_LISTED_ERRORS = 8


# --------------------------------------------------------------------------- inputs
@contextlib.contextmanager
def open_submission(path: str | os.PathLike):
    """A submission folder (the one holding ``2019/``) or a zip with entries at its root."""
    path = Path(path)
    if path.is_dir():
        if not (path / "2019").is_dir():
            raise UserError(f"{path}: no 2019/ folder (give the top-level submission folder)")
        yield path
        return
    if not path.is_file():
        raise UserError(f"{path}: submission does not exist")
    if not zipfile.is_zipfile(path):
        raise UserError(f"{path}: neither a folder nor a zip file")
    with tempfile.TemporaryDirectory(prefix="zs2020-eval-") as tmp:
        with zipfile.ZipFile(path) as archive:
            # The validator's guard: no zip slip, links, duplicate entries or zip bombs on disk.
            try:
                check_zip_entries(archive, ZipLimits())
            except UnsafeZip as exc:
                raise UserError(f"{path}: unsafe zip refused ({exc})") from None
            archive.extractall(tmp)
        if not (Path(tmp) / "2019").is_dir():
            raise UserError(f"{path}: the zip has no 2019/ folder at its root")
        yield Path(tmp)


def declared_distance(root: Path) -> tuple[str, str | None]:
    """(evaluator distance name, warning) from ``2019/metadata.yaml`` ``abx distance``."""
    meta = root / "2019" / "metadata.yaml"
    try:
        data = yaml.safe_load(meta.read_text(encoding="utf-8").replace("\t", " ")) if meta.is_file() else None
    except yaml.YAMLError:
        data = None
    value = data.get("abx distance") if isinstance(data, dict) else None
    if value in abxlib.METADATA_DISTANCE:
        return abxlib.METADATA_DISTANCE[value], None
    return "cosine", f"{meta}: no valid 'abx distance' (got {value!r}); scores.abx uses cosine"


def load_unit_files(folder: Path, stems: list[str]) -> dict[str, np.ndarray]:
    """Read ``<stem>.txt`` for every stem; one UserError naming every unusable file."""
    units, problems = {}, []
    for stem in tqdm(stems, desc=f"reading {folder.name}", unit="file", leave=False):
        path = folder / f"{stem}.txt"
        if not path.is_file():
            problems.append(f"{stem}.txt (missing)")
            continue
        try:
            arr = read_units(path)
        except UnitFileError as exc:
            problems.append(str(exc))
            continue
        if not np.all(np.isfinite(arr)):
            problems.append(f"{stem}.txt (NaN or infinite values)")
            continue
        units[stem] = arr
    if problems:
        listed = "; ".join(problems[:MAX_LISTED_ERRORS])
        more = f" and {len(problems) - MAX_LISTED_ERRORS} more" if len(problems) > MAX_LISTED_ERRORS else ""
        raise UserError(f"{folder}: {len(problems)} unusable unit file(s): {listed}{more}")
    dims = {}
    for stem, arr in units.items():
        dims.setdefault(arr.shape[1], stem)
    if len(dims) > 1:
        listed = ", ".join(f"{s}.txt has {d}" for d, s in list(dims.items())[:4])
        raise UserError(f"{folder}: unit files have different numbers of columns ({listed})")
    return units


class LanguageTask:
    """Everything about one language that does not depend on the submission."""

    def __init__(self, dataset: Dataset, item_kind: str, lists_dir: str | None):
        self.dataset = dataset
        self.item_kind = item_kind
        self.whole_file = item_kind == "excerpt"
        item_path = dataset.item_file(item_kind)
        self.items = abxlib.read_items(item_path) if item_path else None
        self.item_path = item_path
        self.task = abxlib.build_task(self.items) if self.items is not None else None
        self.skip_reason = None if self.task else f"no ABX item file ({item_kind})"
        if self.task is not None and not self.task.blocks:
            # e.g. test speakers that share no triphone context: nothing to score
            self.task, self.skip_reason = None, f"{item_path} has no ABX triplet"
        bitrate_list = dataset.filelist("bitrate", lists_dir)
        # (stem, listed duration): unit files are keyed by stem
        self.bitrate_rows = ([(Path(name).stem, dur) for name, dur in read_filelist(bitrate_list)]
                             if bitrate_list else None)
        self._durations: dict[str, float] = {}
        self._test_utts = {u.utt_id: u for u in dataset.utterances("test", required=False)}

    def test_utterance(self, stem: str):
        if stem not in self._test_utts:
            raise UserError(f"{self.dataset.lang_dir}/test: no wav {stem}.wav for an ABX item")
        return self._test_utts[stem]

    @property
    def item_stems(self) -> list[str]:
        return sorted(set(self.items.files.tolist())) if self.items is not None else []

    @property
    def bitrate_stems(self) -> list[str]:
        return [stem for stem, _ in self.bitrate_rows] if self.bitrate_rows else []

    def durations(self) -> dict[str, float] | None:
        """Wav durations of the item files (only needed for items given in seconds)."""
        if self.whole_file:
            return None
        for stem in self.item_stems:
            if stem not in self._durations:
                self._durations[stem] = self.test_utterance(stem).duration()
        return self._durations

    def item_arrays(self, features: dict[str, np.ndarray]) -> list[np.ndarray]:
        return abxlib.item_features(self.items, features, self.whole_file, self.durations())


# --------------------------------------------------------------------------- baselines
def deltas(features: np.ndarray, width: int = 2) -> np.ndarray:
    """Regression deltas over +-width frames (edges repeated), for (frames, dim) arrays."""
    padded = np.pad(features, ((width, width), (0, 0)), mode="edge")
    n = len(features)
    num = sum(k * (padded[width + k:width + k + n] - padded[width - k:width - k + n]) for k in range(1, width + 1))
    return num / (2 * sum(k * k for k in range(1, width + 1)))


def baseline_features(audio: np.ndarray, spec: FeatureSpec) -> dict[str, np.ndarray]:
    """(frames, dim) per baseline: ``logmel`` = our log-mel (the one front end); ``mfcc`` = its
    first 13 DCT-II coefficients + deltas + delta-deltas (39 dims, no normalisation)."""
    from pipeline.features import logmel
    mel = logmel(audio, spec).T.astype(np.float64)
    cep = dct(mel, type=2, norm="ortho", axis=1)[:, :13]
    d1 = deltas(cep)
    return {"logmel": mel, "mfcc": np.concatenate([cep, d1, deltas(d1)], axis=1)}


def compute_baselines(lang: LanguageTask, spec: FeatureSpec) -> dict[str, dict[str, np.ndarray]]:
    out: dict[str, dict[str, np.ndarray]] = {kind: {} for kind in BASELINES}
    for stem in tqdm(lang.item_stems, desc="baseline features", unit="wav", leave=False):
        for kind, feats in baseline_features(lang.test_utterance(stem).read(), spec).items():
            out[kind][stem] = feats
    return out


# --------------------------------------------------------------------------- scoring
def score_features(lang: LanguageTask, features: dict[str, np.ndarray], distances: tuple[str, ...],
                   label: str) -> dict[str, abxlib.AbxResult]:
    arrays = lang.item_arrays(features)
    results = {}
    for distance in distances:
        start = time.perf_counter()
        results[distance] = abxlib.abx(lang.task, arrays, distance)
        click.echo(f"  {label:<22} ABX {distance:<11} {results[distance].error:6.2f} %"
                   f"  ({time.perf_counter() - start:.1f} s)", err=True)
    return results


def evaluate_language(root: Path, lang: LanguageTask, distances: tuple[str, ...], baselines: bool,
                      spec: FeatureSpec) -> dict:
    """ABX and bitrate of every folder, and the baselines. Returns a dict of result objects."""
    lang_dir = root / "2019" / lang.dataset.language
    out: dict = {"abx": {}, "bitrate": {}, "warnings": []}
    for folder_name in FOLDERS:
        folder = lang_dir / folder_name
        if not folder.is_dir():
            continue
        stems = sorted(set(lang.item_stems) | set(lang.bitrate_stems))
        units = load_unit_files(folder, stems)
        if lang.task is not None:
            if min(a.shape[1] for a in units.values()) == 1:
                out["warnings"].append(f"{folder_name}: one-column unit files; the official ABX loader "
                                       "skips one-column lines (empty features), we score them as 1-d vectors")
            out["abx"][folder_name] = score_features(lang, units, distances, folder_name)
        if lang.bitrate_rows:
            out["bitrate"][folder_name] = bitrate(units, lang.bitrate_rows)
    if "test" not in out["abx"] and "test" not in out["bitrate"]:
        raise UserError(f"{lang_dir}: found no data to evaluate (no test/ folder)")
    if baselines and lang.task is not None:
        for kind, feats in compute_baselines(lang, spec).items():
            out["abx"][f"baseline_{kind}"] = score_features(lang, feats, distances, f"baseline {kind}")
    if lang.task is None:
        out["warnings"].append(f"{lang.dataset.lang_dir}: {lang.skip_reason}; ABX skipped")
    if not lang.bitrate_rows:
        out["warnings"].append(f"{lang.dataset.lang_dir}: no bitrate file list; bitrate skipped")
    return out


def official_json(results: dict, declared: str) -> dict:
    """The official evaluator's per-language JSON (only submission folders, no baselines)."""
    details_abx = {f: {d: r.error for d, r in res.items()} for f, res in results["abx"].items()
                   if f in FOLDERS}
    details_bitrate = {f: r.bitrate for f, r in results["bitrate"].items()}
    test_abx = details_abx.get("test", {})
    abx_value = test_abx.get(declared, next(iter(test_abx.values()), None))
    return {"scores": {"abx": abx_value, "bitrate": details_bitrate.get("test")},
            "details_bitrate": details_bitrate, "details_abx": details_abx}


def extras_json(results: dict, lang: LanguageTask, declared: str) -> dict:
    return {
        "declared_distance": declared,
        "item_kind": lang.item_kind,
        "item_file": str(lang.item_path) if lang.item_path else None,
        "abx": {f: {d: r.to_json() for d, r in res.items()} for f, res in results["abx"].items()},
        "abx_by_phone_pair": {f: res[d].by_phone_pair for f, res in results["abx"].items()
                              for d in (declared if declared in res else next(iter(res)),)},
        "bitrate": {f: r.to_json() for f, r in results["bitrate"].items()},
        "warnings": results["warnings"],
    }


def submission_fingerprint(submission: Path, root: Path, settings: dict) -> str:
    """Changes when any submission file (or the zip), the settings or the inputs change."""
    if Path(submission).is_file():       # a zip: its extracted copy has fresh mtimes
        stat = Path(submission).stat()
        return fingerprint([str(submission), stat.st_size, int(stat.st_mtime)], settings)
    listing = sorted((str(p.relative_to(root)), p.stat().st_size, int(p.stat().st_mtime))
                     for p in (root / "2019").rglob("*") if p.is_file())
    return fingerprint(listing, settings)


def evaluate_submission(submission: str | os.PathLike, dataset_root: str | os.PathLike, out: str | os.PathLike,
                        config: dict, distances: tuple[str, ...] = abxlib.DISTANCES, item_kind: str = "excerpt",
                        jobs: int = 1, lists_dir: str | None = None, speech: bool = True,
                        baselines: bool = True, force: bool = False) -> dict:
    """Score a submission; writes OUT/scores.json, OUT/report.md and plots. Returns scores.json."""
    out = Path(out)
    abxlib.set_jobs(jobs)
    spec = FeatureSpec.from_dict(config.get("features", {}))
    languages = Dataset.languages(dataset_root)
    if not languages:
        raise UserError(f"{dataset_root}: no 2019/<language> folder")
    settings = {"distances": list(distances), "item_kind": item_kind, "lists": lists_dir, "speech": speech,
                "baselines": baselines, "evaluate": config.get("evaluate"), "features": config.get("features"),
                "dataset": str(Path(dataset_root).resolve())}
    with open_submission(submission) as root:
        fp = submission_fingerprint(submission, root, settings)
        previous = out / "scores.json"
        if not force and previous.is_file():
            with contextlib.suppress(ValueError, OSError):
                if json.loads(previous.read_text())["zs2020_extras"]["fingerprint"] == fp:
                    click.echo(f"{previous} is up to date (use --force to redo)", err=True)
                    return json.loads(previous.read_text())
        declared, warning = declared_distance(root)
        scores: dict = {"2019": {}}
        extras: dict = {"fingerprint": fp, "settings": settings, "warnings": [warning] if warning else []}
        for language in languages:
            if not (root / "2019" / language).is_dir():
                continue
            start = time.perf_counter()
            lang = LanguageTask(Dataset(dataset_root, language), item_kind, lists_dir)
            click.echo(f"{language}: {len(lang.items) if lang.items is not None else 0} ABX items, "
                       f"{len(lang.task.blocks) if lang.task else 0} contexts with triplets", err=True)
            results = evaluate_language(root, lang, distances, baselines, spec)
            scores["2019"][language] = official_json(results, declared)
            extras[language] = extras_json(results, lang, declared)
            test_dir = root / "2019" / language / "test"
            if speech:
                ev = config.get("evaluate", {}) or {}
                extras[language]["speech"] = _speech(lang.dataset, test_dir, spec, jobs, ev)
            extras[language]["seconds"] = round(time.perf_counter() - start, 1)
        if not scores["2019"]:
            raise UserError(f"{submission}: no language of the dataset ({', '.join(languages)}) in 2019/")
        scores["zs2020_extras"] = extras
        from pipeline.evaluate_report import write_report
        text = json.dumps(scores, indent=2) + "\n"
        with atomic_dir(out) as tmp:
            (tmp / "scores.json").write_text(text, encoding="utf-8")
            write_report(tmp, scores)
    return json.loads(text)


def _speech(dataset: Dataset, test_dir: Path, spec: FeatureSpec, jobs: int, ev: dict) -> dict:
    from pipeline.speech_measures import MEASURES, speech_measures
    cfg = ev.get("speech", {}) or {}
    return speech_measures(dataset, test_dir, spec, jobs=jobs, max_lines=cfg.get("max_lines"),
                           voice_utts=int(cfg.get("voice_utts", 10)),
                           measures=tuple(cfg.get("measures", MEASURES)))


# --------------------------------------------------------------------------- CLI
def _distances(value: str) -> tuple[str, ...]:
    names = tuple(v.strip() for v in value.split(",") if v.strip())
    lookup = {d.lower(): d for d in abxlib.DISTANCES} | {k: v for k, v in abxlib.METADATA_DISTANCE.items()}
    bad = [n for n in names if n.lower() not in lookup]
    if bad or not names:
        raise click.BadParameter(f"use a comma-separated subset of {','.join(abxlib.DISTANCES)}")
    return tuple(dict.fromkeys(lookup[n.lower()] for n in names))


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("submission", type=click.Path(path_type=Path))
@click.option("--dataset", "dataset_root", required=True, type=click.Path(path_type=Path),
              help="Dataset root holding 2019/<language>/ (the demo corpus or the real ZeroSpeech 2020 data).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Output folder for scores.json, report.md and plots [default: evaluation/ beside SUBMISSION].")
@click.option("--jobs", type=int, default=None, help="Parallel threads/processes [default: evaluate.jobs of the config].")
@click.option("--filelists", type=click.Path(path_type=Path), default=None,
              help="Folder with the official *_filelist.txt (share/2019/<language>); default: the dataset's lists/.")
@click.option("--distances", default=None,
              help="Comma-separated ABX distances among cosine,KL,levenshtein [default: all three, as officially].")
@click.option("--no-speech", is_flag=True, help="Skip the converted-speech measures (similarity, ASR, MCD, DNSMOS).")
@click.option("--no-baselines", is_flag=True, help="Skip the MFCC and log-mel baseline ABX.")
@click.option("--item-kind", type=click.Choice(["excerpt", "long"]), default=None,
              help="excerpt: each excerpt file is one whole-file item (official); long: spans in seconds inside "
                   "the long test utterances [default: evaluate.item_kind].")
@click.option("--config", "config_name", default="demo", show_default=True,
              help="Preset (tiny, demo, full) or YAML file; its evaluate: section sets the defaults.")
@click.option("--force", is_flag=True, help="Re-evaluate even when OUT/scores.json is up to date.")
@click.argument("overrides", nargs=-1)
def evaluate_command(submission, dataset_root, out, jobs, filelists, distances, no_speech, no_baselines,
                     item_kind, config_name, force, overrides):
    """Score SUBMISSION (folder or zip): ABX (cosine, KL, levenshtein) and bitrate exactly as the
    official 2019 evaluation for test/ and auxiliary_embedding1/2, MFCC and log-mel baselines on
    the same items, and automatic measures of the converted wavs.

    OVERRIDES are key=value config settings, e.g. evaluate.speech.max_lines=10.
    """
    config = load_config(config_name, overrides)
    ev = config.get("evaluate", {}) or {}
    out = out or Path(submission).parent / "evaluation"
    scores = evaluate_submission(
        submission, dataset_root, out, config,
        distances=_distances(distances) if distances else tuple(ev.get("distances", abxlib.DISTANCES)),
        item_kind=item_kind or ev.get("item_kind", "excerpt"),
        jobs=jobs if jobs is not None else int(get(config, "evaluate.jobs", 2)),
        lists_dir=str(filelists) if filelists else None,
        speech=not no_speech and bool(ev.get("speech", {}).get("enabled", True)),
        baselines=not no_baselines and bool(ev.get("baselines", True)),
        force=force)
    for language, entry in scores["2019"].items():
        s = entry["scores"]
        abx_text = f"{s['abx']:.2f} %" if s["abx"] is not None else "n/a"
        rate_text = f"{s['bitrate']:.2f} bits/s" if s["bitrate"] is not None else "n/a"
        click.echo(f"{language}: ABX {abx_text}, bitrate {rate_text}")
    click.echo(f"wrote {Path(out) / 'scores.json'} and {Path(out) / 'report.md'}")
