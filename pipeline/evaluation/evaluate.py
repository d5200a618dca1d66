"""Score a submission like the official 2019 evaluator, plus extras (the ``evaluate`` stage).

The submission is first validated: the evaluator refuses whatever the validator refuses. It is
then read in place through ``pipeline.contract.reader`` (a zip is never extracted). For each
language of ``SUBMISSION/2019`` that the dataset has, and for ``test/`` and each
``auxiliary_embedding1/2/`` folder: ABX with the three distances (``abx``) and the bitrate
(``bitrate``). In the same run and on the same items, the MFCC (+ deltas) and log-mel baselines
computed from the dataset's test wavs (``baselines``), and the converted-speech measures
(``speech``).

Output ``OUT/scores.json`` has the official shape
``{"2019": {"<language>": {"scores": {"abx", "bitrate"}, "details_bitrate": {...},
"details_abx": {...}}}}`` and everything else under ``"zs2020_extras"``; ``OUT/report.md``
holds tables and links PNG plots. ABX numbers that measure nothing (KL on features that are
not distributions, Levenshtein where every frame is its own symbol) keep their official value
in ``details_abx`` and are marked n/a, with the reason, everywhere else.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from models.featurespec import FeatureSpec
from pipeline.contract.abxtask import is_task_file, read_task_file
from pipeline.contract.dataset import Dataset, read_filelist
from pipeline.contract.items import read_items
from pipeline.contract.names import LANGUAGES, METADATA_DISTANCE, UNIT_FOLDERS
from pipeline.contract.reader import EntryError, SubmissionTree, open_submission
from pipeline.contract.unitfile import UnitFileError, parse_units
from pipeline.core.config import Config
from pipeline.core.errors import UserError
from pipeline.core.io import atomic_dir, output_lock
from pipeline.core.layout import RunLayout
from pipeline.core.outputs import Input, claim_folder, write_marker
from pipeline.core.stamp import fingerprint, is_up_to_date, write_stamp
from pipeline.core.threads import pool_size
from pipeline.evaluation import abx as abxlib
from pipeline.evaluation.baselines import compute_baselines
from pipeline.evaluation.bitrate import bitrate
from pipeline.evaluation.oneshot import one_shot_measures, plan_one_shot
from pipeline.evaluation.report import write_report
from pipeline.evaluation.speech import speech_measures
from pipeline.features import feature_spec
from submission.files import MAX_UNIT_FILE_BYTES, MAX_WAV_BYTES
from submission.metadata import MAX_METADATA_BYTES
from submission.validator import validate_submission

MAX_LISTED_ERRORS = 8


@dataclass(frozen=True)
class EvaluationSettings:
    distances: tuple[str, ...]
    item_kind: str
    jobs: int
    lists_dir: str | None
    speech: bool
    baselines: bool
    items: tuple[tuple[str, str], ...] = ()    # (language, ABX task or item file) given by --items

    def to_dict(self) -> dict:
        return {"distances": list(self.distances), "item_kind": self.item_kind, "lists": self.lists_dir,
                "speech": self.speech, "baselines": self.baselines, "items": dict(self.items)}

    @classmethod
    def resolve(cls, config: Config, distances=None, item_kind=None, jobs=None, lists_dir=None, speech=None,
                baselines=None, items=None) -> "EvaluationSettings":
        """The config's ``evaluate:`` section, with any argument given here winning. ``items``:
        {language: ABX task file or item file}."""
        ev = config.evaluate
        return cls(distances=tuple(distances or ev.distances), item_kind=item_kind or ev.item_kind,
                   jobs=pool_size(ev.jobs if jobs is None else jobs, 1 << 30),
                   lists_dir=str(lists_dir) if lists_dir else None,
                   speech=ev.speech.enabled if speech is None else speech,
                   baselines=ev.baselines if baselines is None else baselines,
                   items=tuple(sorted((lang, str(path)) for lang, path in (items or {}).items())))


def declared_distance(tree: SubmissionTree) -> tuple[str, str | None]:
    """(evaluator distance name, warning) from ``2019/metadata.yaml`` ``abx distance``."""
    try:
        data = yaml.safe_load(tree.read_bytes("2019/metadata.yaml", MAX_METADATA_BYTES).decode("utf-8"))
    except (EntryError, UnicodeDecodeError, yaml.YAMLError, RecursionError):
        data = None
    value = data.get("abx distance") if isinstance(data, dict) else None
    if isinstance(value, str) and value in METADATA_DISTANCE:
        return METADATA_DISTANCE[value], None
    return "cosine", f"2019/metadata.yaml: no valid 'abx distance' (got {value!r}); scores.abx uses cosine"


def load_unit_files(tree: SubmissionTree, folder: str, stems: list[str]) -> dict[str, np.ndarray]:
    """Read ``<folder>/<stem>.txt`` for every stem; one UserError naming every unusable file."""
    units, problems = {}, []
    for stem in stems:
        rel = f"{folder}/{stem}.txt"
        try:
            arr = parse_units(tree.read_bytes(rel, MAX_UNIT_FILE_BYTES).decode("ascii"), f"{stem}.txt")
        except EntryError as exc:
            problems.append(f"{stem}.txt ({exc})")
            continue
        except (UnitFileError, UnicodeDecodeError) as exc:
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
    return units


class LanguageTask:
    """Everything about one language that does not depend on the submission.

    ABX items, first found first: ``items`` (``--items``: an ABXpy task file or a 7-column item
    file), the official task file ROOT/2019/ABXTasks/byCtxt_acSpkr.abx (surprise_...abx for the
    surprise language; excerpt items only), the dataset's abx/test.item (test_long.item for
    ``long``). Without any, ``skip_reason`` says what is missing and where it was looked for."""

    def __init__(self, dataset: Dataset, item_kind: str, lists_dir: str | None, items: str | Path | None = None):
        self.dataset = dataset
        self.item_kind = item_kind
        self.whole_file = item_kind == "excerpt"
        self.items = self.task_file = self.task = None
        self.item_path, looked = abx_source(dataset, item_kind, items)
        self.skip_reason = None if self.item_path else (
            f"no ABX task: looked for {' and '.join(map(str, looked))}"
            + ("; the organisers never released the surprise language's task" if dataset.language == "surprise" else ""))
        if self.item_path is not None and is_task_file(self.item_path):
            self.task_file = read_task_file(self.item_path)
            self.task = abxlib.task_from_file(self.task_file)
        elif self.item_path is not None:
            self.items = read_items(self.item_path)
            self.task = abxlib.build_task(self.items)
        if self.task is not None and not self.task.blocks:
            # e.g. test speakers that share no triphone context: nothing to score
            self.task, self.skip_reason = None, f"{self.item_path} has no ABX triplet (no context said by two speakers)"
        bitrate_list = dataset.filelist("bitrate", lists_dir)
        # (stem, listed duration): unit files are keyed by stem
        self.bitrate_rows = ([(Path(name).stem, dur) for name, dur in read_filelist(bitrate_list)]
                             if bitrate_list else None)
        self.bitrate_skip_reason = None if bitrate_list else (
            f"no bitrate file list: looked for bitrate_filelist.txt in "
            + (f"--filelists {lists_dir} and " if lists_dir else "") + f"{dataset.lang_dir / 'lists'}")
        self._test_utts = {u.utt_id: u for u in dataset.utterances("test", required=False)}
        # real and synthetic test speakers of a demo corpus with recorded speech, scored apart too
        self.speaker_groups = dataset.speaker_kinds()

    def test_utterance(self, stem: str):
        if stem not in self._test_utts:
            raise UserError(f"{self.dataset.lang_dir}/test: no wav {stem}.wav for an ABX item")
        return self._test_utts[stem]

    @property
    def n_items(self) -> int:
        source = self.task_file if self.task_file is not None else self.items
        return len(source) if source is not None else 0

    @property
    def item_stems(self) -> list[str]:
        source = self.task_file if self.task_file is not None else self.items
        return sorted(set(source.files.tolist())) if source is not None else []

    @property
    def bitrate_stems(self) -> list[str]:
        return [stem for stem, _ in self.bitrate_rows] if self.bitrate_rows else []

    def durations(self) -> dict[str, float] | None:
        """Wav durations of the item files (only needed for items given in seconds)."""
        if self.whole_file:
            return None
        return {stem: self.test_utterance(stem).duration() for stem in self.item_stems}

    def item_arrays(self, features: dict[str, np.ndarray]) -> list[np.ndarray]:
        if self.task_file is not None:
            return abxlib.timed_item_features(self.task_file, features)
        return abxlib.item_features(self.items, features, self.whole_file, self.durations())


def abx_source(dataset: Dataset, item_kind: str, items: str | Path | None) -> tuple[Path | None, list[Path]]:
    """(the ABX items to use or None, the places looked at): ``items`` if given, else the
    official task file (excerpt items only), else the dataset's own item file."""
    if items:
        if not Path(items).is_file():
            raise UserError(f"--items {items}: no such file (an ABXpy task file or a 7-column item file)")
        return Path(items), [Path(items)]
    looked = [dataset.abx_task_file()] if item_kind == "excerpt" else []
    if looked and looked[0].is_file():
        return looked[0], looked
    item_path = dataset.item_file(item_kind)
    return item_path, looked + [dataset.lang_dir / "abx" / ("test.item" if item_kind == "excerpt" else "test_long.item")]


@dataclass
class LanguageResults:
    abx: dict[str, dict[str, abxlib.AbxResult]] = field(default_factory=dict)   # folder -> distance -> result
    bitrate: dict = field(default_factory=dict)                                  # folder -> BitrateResult
    warnings: list[str] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)                       # score -> why it is null


def score_features(lang: LanguageTask, features: dict[str, np.ndarray], distances: tuple[str, ...], label: str,
                   log) -> dict[str, abxlib.AbxResult]:
    arrays = lang.item_arrays(features)
    results = {}
    for distance in distances:
        start = time.perf_counter()
        result = results[distance] = abxlib.abx(lang.task, arrays, distance, lang.speaker_groups)
        value = f"{result.error:6.2f} %" if result.meaningful else f"   n/a   (official value {result.error:.2f} %)"
        log(f"  {label:<22} ABX {distance:<11} {value}  ({time.perf_counter() - start:.1f} s)")
    return results


def evaluate_language(tree: SubmissionTree, lang: LanguageTask, settings: EvaluationSettings, spec: FeatureSpec,
                      log) -> LanguageResults:
    """ABX and bitrate of every folder, and the baselines."""
    base = f"2019/{lang.dataset.language}"
    out = LanguageResults()
    for folder_name in UNIT_FOLDERS:
        if not tree.is_dir(f"{base}/{folder_name}"):
            continue
        stems = sorted(set(lang.item_stems) | set(lang.bitrate_stems))
        units = load_unit_files(tree, f"{base}/{folder_name}", stems)
        if lang.task is not None:
            out.abx[folder_name] = score_features(lang, units, settings.distances, folder_name, log)
        if lang.bitrate_rows:
            out.bitrate[folder_name] = bitrate(units, lang.bitrate_rows)
    if not tree.is_dir(f"{base}/test"):
        raise UserError(f"{base}: found no data to evaluate (no test/ folder)")
    if settings.baselines and lang.task is not None:
        utts = {stem: lang.test_utterance(stem) for stem in lang.item_stems}
        for kind, feats in compute_baselines(utts, spec).items():
            out.abx[f"baseline_{kind}"] = score_features(lang, feats, settings.distances, f"baseline {kind}", log)
    if lang.task is None:
        out.missing["abx"] = lang.skip_reason
    if not lang.bitrate_rows:
        out.missing["bitrate"] = lang.bitrate_skip_reason
    out.warnings += [f"{lang.dataset.lang_dir}: {reason}; {name} skipped" for name, reason in out.missing.items()]
    return out


def official_json(results: LanguageResults, declared: str) -> dict:
    """The official evaluator's per-language JSON (only submission folders, official values); a
    score that could not be computed is null with ``<score>_missing``, the reason, beside it."""
    details_abx = {f: {d: r.error for d, r in res.items()} for f, res in results.abx.items() if f in UNIT_FOLDERS}
    details_bitrate = {f: r.bitrate for f, r in results.bitrate.items()}
    test_abx = details_abx.get("test", {})
    abx_value = test_abx.get(declared, next(iter(test_abx.values()), None))
    scores = {"abx": abx_value, "bitrate": details_bitrate.get("test")}
    for name, reason in results.missing.items():
        if scores.get(name) is None:
            scores[f"{name}_missing"] = reason
    return {"scores": scores, "details_bitrate": details_bitrate, "details_abx": details_abx}


def mfcc_ratio(results: LanguageResults, declared: str) -> float | None:
    """The units' ABX over the MFCC baseline's, same items, same run, same distance."""
    units = results.abx.get("test", {}).get(declared)
    mfcc = results.abx.get("baseline_mfcc", {}).get(declared)
    if units is None or mfcc is None or not units.meaningful or not mfcc.meaningful or mfcc.error <= 0:
        return None
    return units.error / mfcc.error


def by_speaker_kind(results: LanguageResults, lang: LanguageTask, declared: str) -> dict:
    """Per kind of test speaker (real, synthetic): speakers, ABX of every folder and baseline at the
    declared distance over that kind's triplets alone, the units' bootstrap standard error over
    phone pairs (``abx.bootstrap_se``), and the units over the MFCC baseline."""
    out = {}
    for kind, speakers in (lang.speaker_groups or {}).items():
        abx = {f: res[declared].by_group.get(kind) for f, res in results.abx.items() if declared in res}
        units, mfcc = abx.get("test"), abx.get("baseline_mfcc")
        units_result = results.abx.get("test", {}).get(declared)
        units_se = units_result.se_by_group.get(kind) if units_result is not None else None
        out[kind] = {"speakers": sorted(speakers), "distance": declared, "abx": abx,
                     "abx_units_se": None if units_se is None else round(units_se, 4),
                     "abx_units_over_mfcc": round(units / mfcc, 4) if units is not None and mfcc else None}
    return out


def extras_json(results: LanguageResults, lang: LanguageTask, declared: str) -> dict:
    ratio = mfcc_ratio(results, declared)
    return {
        "declared_distance": declared,
        "item_kind": lang.item_kind,
        "item_file": str(lang.item_path) if lang.item_path else None,
        "abx": {f: {d: r.to_json() for d, r in res.items()} for f, res in results.abx.items()},
        "abx_units_over_mfcc": None if ratio is None else round(ratio, 4),
        "abx_by_phone_pair": {f: res[d].by_phone_pair for f, res in results.abx.items()
                              for d in (declared if declared in res else next(iter(res)),)},
        "bitrate": {f: r.to_json() for f, r in results.bitrate.items()},
        "warnings": results.warnings,
        **({"by_speaker_kind": by_speaker_kind(results, lang, declared)} if lang.speaker_groups else {}),
    }


def submission_fingerprint(tree: SubmissionTree, submission: Path) -> list:
    """What the scores depend on, on the submission's side: every file's name and size, and the
    zip's or the folder files' modification times."""
    if tree.kind == "zip":
        st = submission.stat()
        return [str(submission.resolve()), st.st_size, st.st_mtime_ns]
    return sorted((rel, size, (submission / rel).stat().st_mtime_ns) for rel, size in tree.files.items()
                  if rel.startswith("2019/"))


def abx_inputs(dataset_root: str | Path, languages: list[str], settings: EvaluationSettings) -> list:
    """The ABX task or item file of each language, with its size and time: adding the official
    task file to a dataset (or replacing it) makes the next evaluation redo the scores."""
    out = []
    for language in languages:
        path, _ = abx_source(Dataset(dataset_root, language), settings.item_kind, dict(settings.items).get(language))
        st = path.stat() if path is not None else None
        out.append([language, str(path), st.st_size if st else None, st.st_mtime_ns if st else None])
    return out


def converted_wavs(tree: SubmissionTree, language: str) -> dict[str, bytes]:
    test = f"2019/{language}/test"
    return {name: tree.read_bytes(f"{test}/{name}", MAX_WAV_BYTES) for name in sorted(tree.names(test))
            if name.endswith(".wav") and tree.is_file(f"{test}/{name}")}


def evaluate_submission(submission: str | Path, dataset_root: str | Path, out: str | Path, config: Config,
                        force: bool = False, log=print, run: str | Path | None = None, html: bool = True,
                        **settings) -> dict:
    """Validate, then score a submission; writes OUT/scores.json, OUT/report.md and plots.
    ``settings`` (distances, item_kind, jobs, lists_dir, speech, baselines) override the
    config's ``evaluate:`` section. With the speech measures on and ``run`` (the run folder the
    submission came from) holding a VQMIVC and a MelGAN, one-shot conversions are scored too
    (``pipeline.evaluation.oneshot``; their wavs go to OUT/one_shot/<language>/). ``html``: also
    the listening page OUT/index.html (``pipeline.evaluation.listening``; added to an up-to-date
    evaluation that lacks it). Returns the scores (the content of scores.json)."""
    settings = EvaluationSettings.resolve(config, **settings)
    submission, out = Path(submission), Path(out)
    claim_folder(out, "evaluate", [Input("the submission", submission), Input("--dataset", dataset_root),
                                   Input("--run", run, holds_outputs=True), Input("--lists", settings.lists_dir),
                                   *(Input("--items", path) for _, path in settings.items),
                                   *(Input("checkpoint", path) for path in (RunLayout.of(run).checkpoints if run else []))], replaces=True)
    abxlib.set_jobs(settings.jobs)
    spec = feature_spec(config)
    languages = Dataset.languages(dataset_root)
    if not languages:
        raise UserError(f"{dataset_root}: no 2019/<language> folder")
    report = validate_submission(submission, dataset=dataset_root, filelists=settings.lists_dir,
                                 jobs=max(1, settings.jobs), progress=False)
    if not report.valid:
        listed = "; ".join(str(p) for p in report.problems[:MAX_LISTED_ERRORS])
        more = f"; and {len(report.problems) - MAX_LISTED_ERRORS} more" if len(report.problems) > MAX_LISTED_ERRORS else ""
        raise UserError(f"{submission}: refused, the validator finds {len(report.problems)} problem(s): "
                        f"{listed}{more} (`zs2020 validate` lists them)")
    # One evaluation writes OUT at a time (as the submit stage); the lock is taken once the
    # validator has accepted the submission, so a refused one leaves nothing behind.
    with output_lock(out, "evaluation"), open_submission(submission) as tree:
        one_shot = plan_one_shot(run) if settings.speech and config.evaluate.speech.one_shot_trials else None
        fp = fingerprint(submission_fingerprint(tree, submission), settings, config.evaluate, config.features,
                         str(Path(dataset_root).resolve()),
                         (one_shot.identity(), config.conversion.to_dict()) if one_shot else None,
                         abx_inputs(dataset_root, languages, settings))
        scores_path = out / "scores.json"
        if not force and is_up_to_date(out, fp) and scores_path.is_file():
            log(f"{scores_path} is up to date (use --force to redo)")
            if html:
                from pipeline.evaluation.listening import add_listening_page
                add_listening_page(out, json.loads(scores_path.read_text()), tree, dataset_root, spec, run, log)
            return json.loads(scores_path.read_text())
        declared, warning = declared_distance(tree)
        scores: dict = {"2019": {}}
        extras: dict = {"settings": settings.to_dict(), "unchecked": report.unchecked,
                        "warnings": [warning] if warning else []}
        one_shot_wavs: dict[str, dict[str, bytes]] = {}
        for language in languages:
            if not tree.is_dir(f"2019/{language}") or language not in LANGUAGES:
                continue
            start = time.perf_counter()
            lang = LanguageTask(Dataset(dataset_root, language), settings.item_kind, settings.lists_dir,
                                dict(settings.items).get(language))
            for reason in filter(None, (lang.skip_reason, lang.bitrate_skip_reason)):
                log(f"{language}: {reason}")
            if lang.task is not None:
                log(f"{language}: {lang.n_items} ABX items, {len(lang.task.blocks)} contexts with triplets "
                    f"({lang.item_path})")
            results = evaluate_language(tree, lang, settings, spec, log)
            scores["2019"][language] = official_json(results, declared)
            extras[language] = extras_json(results, lang, declared)
            if settings.speech:
                speech = config.evaluate.speech
                extras[language]["speech"] = speech_measures(
                    lang.dataset, converted_wavs(tree, language), spec, jobs=settings.jobs,
                    max_lines=speech.max_lines or None, voice_utts=speech.voice_utts, measures=tuple(speech.measures),
                    speaker_groups=lang.speaker_groups)
            if one_shot is not None:
                speech = config.evaluate.speech
                log(f"{language}: one-shot conversion of {speech.one_shot_trials} test utterances")
                extras[language]["one_shot"], one_shot_wavs[language] = one_shot_measures(
                    one_shot, lang.dataset, speech.one_shot_trials, config.seed, speech.voice_utts,
                    tuple(speech.measures), jobs=settings.jobs, tract_search=config.conversion.tract_search)
            extras[language]["seconds"] = round(time.perf_counter() - start, 1)
        if not scores["2019"]:
            raise UserError(f"{submission}: no language of the dataset ({', '.join(languages)}) in 2019/")
        scores["zs2020_extras"] = extras
        text = json.dumps(scores, indent=2) + "\n"
        with atomic_dir(out) as tmp:
            (tmp / "scores.json").write_text(text, encoding="utf-8")
            write_report(tmp, scores)
            for language, wavs in one_shot_wavs.items():
                (tmp / "one_shot" / language).mkdir(parents=True, exist_ok=True)
                for name, data in wavs.items():
                    (tmp / "one_shot" / language / name).write_bytes(data)
            if html:
                from pipeline.evaluation.listening import write_listening_page
                write_listening_page(tmp, scores, tree, dataset_root, spec, run, log)
            write_marker(tmp, "evaluate")
        write_stamp(out, fp)
    return json.loads(text)
