"""What a study measures for one (variant, seed): each measure trains what it needs through the
``zs2020`` stages (which skip themselves when up to date) and returns plain numbers.

- ``units``: the unit system alone. ABX across speakers (cosine, the official 2019 computation)
  of the submitted bottom code vectors, the pre-quantization vectors and the auxiliary level, as
  a multiple of the MFCC baseline on the same items; the bitrate; codes in use and perplexity;
  speaker leakage (held-out speaker identification from code histograms) of the bottom and the top
  level (a VQMIVC has one level: no top leakage).
- ``conversion``: the unit system and the target-voice vocoder. Every synthesis line converted,
  then similarity to the target and to the source, the share of lines closer to the target,
  pocketsphinx CER/WER (and the sources' own CER), MCD and DNSMOS (``pipeline.evaluation.speech``).
- ``one_shot``: ``conversion``, then for a VQMIVC one-shot conversion into unseen voices: a
  universal vocoder (the variant's vocoder settings on every training speaker) renders seeded test
  utterances, each in the voice of one utterance of another test speaker
  (``pipeline.evaluation.oneshot``), scored for similarity to the reference and to the source, the
  share of trials closer to the reference, CER and DNSMOS. A VQ-VAE-2 knows its speakers by table,
  so its rows have the conversion columns only.
- ``by_kind``: ``units`` and ``conversion`` on a demo corpus with recorded speech, each scored
  apart on the real and the synthetic test speakers (ABX over each kind's own triplets and its
  MFCC baseline, the share of lines closer to the target, the CER over the sources' CER, DNSMOS).
- ``units_by_kind``: the units part of ``by_kind`` alone (no vocoder, no conversion), with the
  pre-quantization vectors beside the codes: a screening measure, about half a ``by_kind`` row.
"""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from benchmarks.studylib import Column, Study
from pipeline.contract.dataset import Dataset
from pipeline.core.config import load_config
from pipeline.core.stamp import file_identity, fingerprint
from pipeline.evaluation import abx as abxlib
from pipeline.evaluation.baselines import compute_baselines
from pipeline.evaluation.bitrate import bitrate
from pipeline.evaluation.evaluate import LanguageTask
from pipeline.evaluation.oneshot import OneShotPlan, one_shot_measures
from pipeline.evaluation.speech import speech_measures
from pipeline.features import feature_spec
from pipeline.systems.encoding import encode_wavs
from pipeline.units.reports import leakage_report
from pipeline.units.source import encode_splits

ZS = str(Path(sys.executable).with_name("zs2020"))


@dataclass
class Data:
    """What every row of a study is measured on."""
    dataset: Path
    features: Path
    work: Path                  # trained models and converted wavs, per study
    lines: int = 20             # synthesis lines scored by the conversion measure
    jobs: int = 2
    trials: int = 40            # one-shot trials scored by the one_shot measure


def run_stage(command: list[str]) -> float:
    """Run one zs2020 stage; minutes it took."""
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(Path(c).name for c in command[:2])} failed: {done.stderr.strip()[-600:]}")
    return (time.perf_counter() - start) / 60


def variant_data(study: Study, variant: str, seed: int, data: Data) -> Data:
    """The data a row is measured on: ``data``, or for a variant that changes ``corpus.scale``
    (the share of real speech, ``demo:real12``) its own corpus and features, built once under
    ``<work>/../corpora/<scale>`` (the stages skip what is up to date), and its own work folder."""
    scale = str(load_config(study.preset, study.overrides(variant, seed)).corpus.scale)
    if scale == str(load_config(study.preset).corpus.scale):
        return data
    root = data.work.parent / "corpora" / scale.replace(":", "-")
    run_stage([ZS, "corpus", "--out", str(root / "corpus"), "--scale", scale, "--jobs", str(data.jobs)])
    run_stage([ZS, "features", "--dataset", str(root / "corpus"), "--out", str(root / "features"), "--config",
               study.preset, "--jobs", str(data.jobs)])
    return dataclasses.replace(data, dataset=root / "corpus", features=root / "features",
                               work=data.work / f"corpus-{scale.replace(':', '-')}")


def unit_run(study: Study, variant: str, seed: int, data: Data) -> Path:
    """Where the variant's unit system trains, shared by every variant whose unit settings resolve the same."""
    config = load_config(study.preset, study.overrides(variant, seed))
    return data.work / "units" / fingerprint(config.system, config.vqvae, config.vqmivc, config.features, seed) / "vqvae"


def train_units(study: Study, variant: str, seed: int, data: Data) -> tuple[Path, float]:
    """The variant's unit system (trained, or found trained) and the minutes that took."""
    run = unit_run(study, variant, seed, data)
    minutes = run_stage([ZS, "train-vqvae", "--features", str(data.features), "--out", str(run),
                         "--config", study.preset, "--quiet", *study.overrides(variant, seed)])
    return run / "checkpoint.pt", minutes


# ============================================================================ units
def _unit_arrays(stem: str, units) -> tuple[str, dict[str, np.ndarray]]:
    """Encoding sink; the auxiliary column is the top level (VQ-VAE-2) or the CPC context (VQMIVC)."""
    aux = units.top_vectors if hasattr(units, "top_vectors") else units.context
    return stem, {"codes": units.bottom_vectors, "prequant": units.prequant, "aux": aux, "ids": units.bottom_ids}


def encode_test_units(checkpoint: Path, task: LanguageTask, data: Data) -> dict[str, dict[str, np.ndarray]]:
    """stem -> {codes, prequant, aux, ids} of the test wavs the ABX items and the bitrate need."""
    stems = sorted(set(task.item_stems) | set(task.bitrate_stems))
    return dict(encode_wavs(checkpoint, [(s, task.test_utterance(s).path) for s in stems], _unit_arrays,
                            jobs=data.jobs, progress=False))


def units_bitrate(units: dict[str, dict[str, np.ndarray]], task: LanguageTask) -> float:
    """The bitrate of the submitted bottom codes over the task's bitrate list."""
    return bitrate({s: u["codes"] for s, u in units.items()}, task.bitrate_rows).bitrate


def mfcc_abx(study: Study, task: LanguageTask, data: Data) -> float:
    """The MFCC + deltas baseline on the study's items (cached beside the trained models)."""
    return mfcc_abx_by_kind(study, task, data)[0]


def mfcc_abx_by_kind(study: Study, task: LanguageTask, data: Data) -> tuple[float, dict[str, float | None]]:
    """The MFCC baseline over all items and over each kind of test speaker (``task.speaker_groups``),
    cached beside the trained models for the items it was computed on: another item file (a
    rebuilt or other corpus, other speaker kinds) computes it again."""
    path = data.work / "mfcc_abx.json"
    spec = feature_spec(load_config(study.preset))
    items = fingerprint(str(task.item_path), file_identity(task.item_path), spec.to_dict(),
                        {kind: sorted(group) for kind, group in (task.speaker_groups or {}).items()})
    if path.is_file():
        cached = json.loads(path.read_text())
        if cached.get("items") == items:
            return cached["abx"], cached["by_kind"]
    feats = compute_baselines({s: task.test_utterance(s) for s in task.item_stems}, spec, progress=False)["mfcc"]
    result = abxlib.abx(task.task, task.item_arrays(feats), "cosine", task.speaker_groups)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"items": items, "abx": result.error, "by_kind": result.by_group}))
    return result.error, result.by_group


def measure_units(study: Study, variant: str, seed: int, data: Data) -> dict:
    checkpoint, minutes = train_units(study, variant, seed, data)
    task = LanguageTask(Dataset(data.dataset), "excerpt", None)
    units = encode_test_units(checkpoint, task, data)
    mfcc = mfcc_abx(study, task, data)
    out = {"train_minutes": minutes, "abx_mfcc": mfcc}
    for kind in ("codes", "prequant", "aux"):
        feats = {stem: u[kind] for stem, u in units.items()}
        out[f"abx_{kind}"] = abxlib.abx(task.task, task.item_arrays(feats), "cosine").error
    out["abx_codes_x_mfcc"] = out["abx_codes"] / mfcc
    out["bitrate"] = units_bitrate(units, task)
    counts = np.bincount(np.concatenate([u["ids"] for u in units.values()]))
    p = counts[counts > 0] / counts.sum()
    out["codes_used"] = int((counts > 0).sum())
    out["perplexity"] = float(np.exp(-(p * np.log(p)).sum()))
    unit_set = encode_splits(checkpoint.parent.parent, Dataset(data.dataset), ["test", "train/unit", "train/voice"],
                             "cpu", progress=False)
    leak = leakage_report(unit_set, tuple(unit_set.codebook_sizes), min_seconds=1.0, test_fraction=0.3, seed=0)
    out["leakage_bottom"] = leak["levels"]["bottom"]["accuracy_logreg"]
    out["leakage_top"] = leak["levels"]["top"]["accuracy_logreg"] if "top" in leak["levels"] else None
    return out


UNITS_COLUMNS = [Column("abx_codes", "ABX units %", 2), Column("abx_codes_x_mfcc", "x MFCC", 2),
                 Column("abx_prequant", "ABX pre-quant. %", 2), Column("abx_aux", "ABX aux. %", 2),
                 Column("bitrate", "bits/s", 0), Column("codes_used", "codes used", 0),
                 Column("perplexity", "perplexity", 0), Column("leakage_bottom", "speaker leakage", 3),
                 Column("leakage_top", "speaker leakage top", 3), Column("train_minutes", "train min", 1)]


# ============================================================================ conversion
def convert_lines(study: Study, variant: str, seed: int, data: Data,
                  groups: dict[str, set[str]] | None = None) -> tuple[dict, Path, Path]:
    """The conversion measures (with ``by_speaker_kind``, the same per group of source speakers,
    when ``groups`` are given), the unit system's checkpoint and the (variant, seed) folder."""
    checkpoint, unit_minutes = train_units(study, variant, seed, data)
    overrides = study.overrides(variant, seed)
    config = load_config(study.preset, overrides)
    if config.melgan.train.method == "joint":
        unit_minutes = 0.0      # method 3: the vocoder trains its own unit system; the separate one only encodes
    folder = data.work / variant / f"seed{seed}"
    vocoder_minutes = run_stage([ZS, "train-melgan", "--features", str(data.features), "--dataset", str(data.dataset),
                                 "--out", str(folder / "melgan"), "--vqvae", str(checkpoint), "--config",
                                 study.preset, "--quiet", *overrides])
    converted = folder / "converted"
    # the conversion settings are the variant's, not those stored with the (shared) unit system
    run_stage([ZS, "convert", "--vqvae", str(checkpoint), "--melgan", str(folder / "melgan" / "checkpoint.pt"),
               "--dataset", str(data.dataset), "--out", str(converted), "--force", "--quiet",
               f"conversion.tract_search={config.conversion.tract_search}"])
    wavs = {p.name: p.read_bytes() for p in converted.glob("*.wav")}
    spec = feature_spec(load_config(study.preset))
    speech = speech_measures(Dataset(data.dataset), wavs, spec, jobs=data.jobs, max_lines=data.lines,
                             progress=False, speaker_groups=groups)
    return ({"train_minutes": unit_minutes + vocoder_minutes, **speech["summary"],
             **({"by_speaker_kind": speech["by_speaker_kind"]} if groups else {})}, checkpoint, folder)


def measure_conversion(study: Study, variant: str, seed: int, data: Data) -> dict:
    return convert_lines(study, variant, seed, data)[0]


# ============================================================================ per kind of speaker
def _require_speaker_groups(task: LanguageTask, data: Data) -> None:
    """Refuse a corpus without recorded speakers: the per-kind measures have nothing to split."""
    if not task.speaker_groups:
        raise SystemExit(f"{data.dataset}: its manifest lists no recorded speakers (build it with --speech mixed)")


def _abx_by_kind(task: LanguageTask, units: dict, feature: str, mfcc: dict[str, float], prefix: str) -> dict:
    """ABX (cosine) of one unit ``feature`` over each kind's own triplets, its bootstrap standard
    error over phone pairs, and as a multiple of the MFCC baseline's on the same triplets:
    ``{prefix}_{kind}``, ``{prefix}_{kind}_se`` and ``{prefix}_{kind}_x_mfcc``."""
    result = abxlib.abx(task.task, task.item_arrays({s: u[feature] for s, u in units.items()}), "cosine",
                        task.speaker_groups)
    out = {}
    for kind in task.speaker_groups:
        error, base = result.by_group.get(kind), mfcc.get(kind)
        out[f"{prefix}_{kind}"] = error
        out[f"{prefix}_{kind}_se"] = result.se_by_group.get(kind)
        out[f"{prefix}_{kind}_x_mfcc"] = error / base if error is not None and base else None
    return out


def _per_kind_columns(specs: tuple[tuple[str, str, int], ...]) -> list[Column]:
    """(key with {kind}, label, digits) for each kind of speaker, then the bitrate and the training time."""
    return [Column(key.format(kind=kind), f"{label}, {kind}", digits) for kind in ("real", "synthetic")
            for key, label, digits in specs] + [Column("bitrate", "bits/s", 0), Column("train_minutes", "train min", 1)]


def measure_units_by_kind(study: Study, variant: str, seed: int, data: Data) -> dict:
    """ABX of the bottom codes and of the pre-quantization vectors over each kind of test speaker."""
    task = LanguageTask(Dataset(data.dataset), "excerpt", None)
    _require_speaker_groups(task, data)
    checkpoint, minutes = train_units(study, variant, seed, data)
    units = encode_test_units(checkpoint, task, data)
    _, mfcc = mfcc_abx_by_kind(study, task, data)
    return {"train_minutes": minutes, "bitrate": units_bitrate(units, task), **_items_by_kind(task),
            **_abx_by_kind(task, units, "codes", mfcc, "abx"), **_abx_by_kind(task, units, "prequant", mfcc, "abx_prequant")}


def _items_by_kind(task: LanguageTask) -> dict[str, int]:
    """ABX items of each kind of test speaker, ``items_{kind}``: which test set a row was scored on
    (the demo corpus's real test speakers had 1500 excerpts before commit 8df69f5, 4500 since)."""
    names = task.task.speaker_names[task.task.speaker]
    return {f"items_{kind}": int(np.isin(names, sorted(group)).sum()) for kind, group in task.speaker_groups.items()}


def compare_units(study: Study, first: str, second: str, seed: int, data: Data) -> list[dict]:
    """Paired comparison of two variants' bottom codes in one seed, from the unit systems their
    rows trained (it trains nothing): per kind of test speaker, how many ABX points lower the
    second's error is, with its 95 % bootstrap interval over the phone pairs both score
    (``abx.paired_difference``)."""
    task = LanguageTask(Dataset(data.dataset), "excerpt", None)
    _require_speaker_groups(task, data)
    scores = []
    for variant in (first, second):
        if variant_data(study, variant, seed, data) is not data:
            raise SystemExit(f"{variant} is measured on a corpus of its own: its items are not {data.dataset}'s")
        checkpoint = unit_run(study, variant, seed, data) / "checkpoint.pt"
        if not checkpoint.is_file():
            raise SystemExit(f"{variant}, seed {seed}: no trained unit system ({checkpoint}); measure the row first: "
                             f"benchmarks/study.py run {study.path} --variants {variant} --seeds {seed}")
        units = encode_test_units(checkpoint, task, data)
        _, cells = abxlib.scored_cells(task.task, task.item_arrays({s: u["codes"] for s, u in units.items()}), "cosine")
        scores.append({kind: abxlib.group_pair_scores(task.task, cells, speakers)
                       for kind, speakers in task.speaker_groups.items()})
    rows = []
    for kind in task.speaker_groups:
        if not set(scores[0][kind]) & set(scores[1][kind]):
            continue        # a kind with fewer than two test speakers has no triplet of its own
        difference, low, high, pairs = abxlib.paired_difference(scores[0][kind], scores[1][kind])
        rows.append({"kind": kind, "seed": seed, "pairs": pairs, "difference": difference, "low": low, "high": high})
    return rows


UNITS_BY_KIND_COLUMNS = _per_kind_columns((("abx_{kind}", "ABX units %", 2), ("abx_{kind}_se", "SE", 2),
                                           ("abx_{kind}_x_mfcc", "x MFCC", 2),
                                           ("abx_prequant_{kind}", "ABX pre-quant. %", 2),
                                           ("abx_prequant_{kind}_x_mfcc", "pre-quant. x MFCC", 2))) + [
    Column("items_real", "real items", 0)]


def measure_by_kind(study: Study, variant: str, seed: int, data: Data) -> dict:
    """Units and conversion measured apart on the real and the synthetic test speakers of a demo
    corpus with recorded speech: what issue 28's goals are stated in."""
    task = LanguageTask(Dataset(data.dataset), "excerpt", None)
    _require_speaker_groups(task, data)
    # every synthesis line: the recorded speakers' lines come last in the demo corpus
    speech, checkpoint, _ = convert_lines(study, variant, seed, dataclasses.replace(data, lines=0),
                                          task.speaker_groups)
    units = encode_test_units(checkpoint, task, data)
    _, mfcc = mfcc_abx_by_kind(study, task, data)
    out = {"train_minutes": speech["train_minutes"], "bitrate": units_bitrate(units, task),
           **_abx_by_kind(task, units, "codes", mfcc, "abx")}
    for kind in task.speaker_groups:
        summary = speech.get("by_speaker_kind", {}).get(kind, {}).get("summary", {})
        out.update({f"closer_{kind}": summary.get("share_closer_to_target"), f"cer_ratio_{kind}": summary.get("cer_ratio"),
                    f"dnsmos_{kind}": summary.get("dnsmos_converted"), f"dnsmos_source_{kind}": summary.get("dnsmos_source")})
    return out


BY_KIND_COLUMNS = _per_kind_columns((("abx_{kind}", "ABX units %", 2), ("abx_{kind}_x_mfcc", "x MFCC", 2),
                                     ("closer_{kind}", "closer", 2), ("cer_ratio_{kind}", "CER x sources'", 2),
                                     ("dnsmos_{kind}", "DNSMOS", 2), ("dnsmos_source_{kind}", "DNSMOS of sources", 2)))


CONVERSION_COLUMNS = [Column("share_closer_to_target", "closer to target", 2),
                      Column("sim_target_converted", "sim. target", 3), Column("sim_source_converted", "sim. source", 3),
                      Column("cer_converted", "CER", 3), Column("cer_source", "CER of sources", 3),
                      Column("wer_converted", "WER", 3), Column("mcd_converted", "MCD dB", 2),
                      Column("dnsmos_converted", "DNSMOS", 2), Column("train_minutes", "train min", 1)]


# ============================================================================ one-shot
def measure_one_shot(study: Study, variant: str, seed: int, data: Data) -> dict:
    out, checkpoint, folder = convert_lines(study, variant, seed, data)
    if load_config(study.preset, study.overrides(variant, seed)).system != "vqmivc":
        return out
    universal = folder / "melgan_universal"
    run_stage([ZS, "train-melgan", "--features", str(data.features), "--dataset", str(data.dataset),
               "--out", str(universal), "--vqvae", str(checkpoint), "--config", study.preset, "--quiet",
               *study.overrides(variant, seed), "melgan.train.speakers=all"])
    plan = OneShotPlan(checkpoint, universal / "checkpoint.pt", universal=True)
    one_shot, _ = one_shot_measures(plan, Dataset(data.dataset), trials=data.trials, seed=0, voice_utts=10,
                                    measures=("similarity", "asr", "dnsmos"), jobs=data.jobs, progress=False)
    return {**out, **{f"one_shot_{k}": v for k, v in one_shot.get("summary", {}).items()}}


ONE_SHOT_COLUMNS = CONVERSION_COLUMNS[:-1] + [
    Column("one_shot_share_closer_to_reference", "one-shot closer to reference", 2),
    Column("one_shot_sim_reference_converted", "one-shot sim. reference", 3),
    Column("one_shot_sim_source_converted", "one-shot sim. source", 3),
    Column("one_shot_cer_converted", "one-shot CER", 3), Column("one_shot_dnsmos_converted", "one-shot DNSMOS", 2),
    CONVERSION_COLUMNS[-1]]

MEASURES: dict[str, tuple[Callable[[Study, str, int, Data], dict], list[Column]]] = {
    "units": (measure_units, UNITS_COLUMNS),
    "conversion": (measure_conversion, CONVERSION_COLUMNS),
    "one_shot": (measure_one_shot, ONE_SHOT_COLUMNS),
    "by_kind": (measure_by_kind, BY_KIND_COLUMNS),
    "units_by_kind": (measure_units_by_kind, UNITS_BY_KIND_COLUMNS),
}
