"""``zs2020 corpus``: synthesize the offline demo corpus in the ZeroSpeech 2019 layout.

Offline text-to-speech (flite, festival, espeak-ng) reads public-domain sentences as many
pseudo-speakers; the result follows the layout documented in ``pipeline/contract/dataset.py``, extras
included (phone alignments, transcripts, target-voice references, ABX excerpts and item files,
official-format file lists). Modules: ``corpus_text`` (sentences), ``corpus_engines`` (TTS + sox),
``corpus_phones`` (labels, alignments), ``corpus_plan`` (speakers, who says what),
``corpus_abx`` (excerpts, items, lists), ``corpus_recorded`` (real recorded speech: the Ur-Quan
Masters voice pack, downloaded and forced-aligned once per machine, then cached).

``speech``: ``mixed`` (the default) adds real recorded speakers next to the synthetic ones (real
actors in ``train/unit``, other real actors only in ``test/``); ``synthetic`` builds the
TTS-only corpus (identical bytes to the corpus before recorded speech existed). The ``tiny``
scale has no recorded speech, so both give the same tiny corpus.

The build is deterministic (identical bytes for any ``--jobs``), runs in a temporary folder that
replaces ``OUT`` only when complete, and is skipped when its stamp records the same generator
version and scale. ``OUT/manifest.json`` describes what was built.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import time
from pathlib import Path

import soundfile as sf
from tqdm import tqdm

from pipeline.contract.filelists import format_filelists
from pipeline.contract.names import SAMPLE_RATE
from pipeline.core.errors import UserError
from pipeline.core.io import atomic_dir
from pipeline.core.outputs import claim_folder, write_marker
from pipeline.core.pool import parallel_map
from pipeline.core.stamp import fingerprint
from pipeline.corpus import excerpts as corpus_abx
from pipeline.corpus import recorded as corpus_recorded
from pipeline.corpus.engines import Voice, check_engines, render
from pipeline.corpus.phones import Phone, format_alignment
from pipeline.corpus.plan import Job, add_recorded, make_plan, output_stem, scale_from

GENERATOR_VERSION = 3          # bump whenever the output of a given scale changes
MIXED_VERSION = 1              # bump whenever only the recorded part of a mixed corpus changes
MANIFEST = "manifest.json"
SPEECH = ("mixed", "synthetic")
LANGUAGE = "english"


def _cpu_seconds() -> float:
    """CPU time of this process and of the engine processes it has waited for."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _render_chunk(task: tuple[Voice, list[Job], str]) -> tuple[list[tuple[str, int, list[Phone]]], float]:
    """Worker: render one chunk and write its wavs and alignments (runs in a fresh process).
    Returns the rows and the CPU seconds the chunk cost (the process ends after one chunk)."""
    voice, jobs, lang_dir = task
    try:
        rendered = render(voice, [job.text for job in jobs])
    except subprocess.CalledProcessError as exc:
        stderr = " ".join((exc.stderr or b"").decode("utf-8", "replace").split())[:200]
        raise RuntimeError(f"{voice.describe()}: {exc.cmd[0]} failed: {stderr}") from None
    out = []
    for job, result in zip(jobs, rendered):
        _write_utterance(Path(lang_dir), job.split, job.utt_id, result.samples, result.phones)
        out.append((job.key, len(result.samples), result.phones))
    return out, _cpu_seconds()


def _write_utterance(lang_dir: Path, split: str, utt_id: str, samples, phones: list[Phone]) -> None:
    wav = lang_dir / split / f"{utt_id}.wav"
    wav.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(wav), samples, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    phn = lang_dir / "alignments" / split / f"{utt_id}.phn"
    phn.parent.mkdir(parents=True, exist_ok=True)
    phn.write_text(format_alignment(phones), encoding="utf-8")


def _read_manifest(out_dir: Path) -> dict | None:
    try:
        return json.loads((out_dir / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def effective_speech(scale, speech: str = "mixed") -> str:
    """``mixed`` only where the scale has recorded speech (``tiny`` has none)."""
    if speech not in SPEECH:
        raise UserError(f"corpus speech {speech!r} is not one of {', '.join(SPEECH)}")
    return "mixed" if speech == "mixed" and scale_from(scale).has_real else "synthetic"


def _recorded_version() -> str:
    """The version of a mixed corpus's recorded part: its selection, and its alignment rules."""
    return f"{MIXED_VERSION}.{corpus_recorded.ALIGN_VERSION}"


def _fingerprint_of(version, scale_name, speech, recorded_version) -> str:
    if speech == "synthetic":            # as before recorded speech existed
        return fingerprint("corpus", version, scale_name)
    return fingerprint("corpus", version, scale_name, speech, recorded_version)


def build_fingerprint(scale, speech: str = "mixed") -> str:
    """What a built corpus depends on: the generator version, the scale and, with recorded
    speech, the version of its alignment and selection rules."""
    return _fingerprint_of(GENERATOR_VERSION, scale_from(scale).name, effective_speech(scale, speech),
                           _recorded_version())


def is_up_to_date(out_dir: str | os.PathLike, scale="demo", speech: str = "mixed") -> bool:
    """The stage's skip rule, with the manifest as the stamp: it records the generator version,
    scale and speech the corpus was built from (it travels with the corpus when it is copied)."""
    manifest = _read_manifest(Path(out_dir))
    if not isinstance(manifest, dict) or not (Path(out_dir) / "2019" / LANGUAGE / "test").is_dir():
        return False
    recorded = manifest.get("recorded") if isinstance(manifest.get("recorded"), dict) else {}
    return _fingerprint_of(manifest.get("version"), manifest.get("scale"), manifest.get("speech", "synthetic"),
                           recorded.get("version")) == build_fingerprint(scale, speech)


def _synthesize(plan, lang_dir: Path, jobs: int) -> tuple[dict[str, tuple[int, list[Phone]]], float]:
    """Render every job; returns {key: (n samples, phones)} and the workers' CPU seconds."""
    chunks = plan.chunks()
    # longest work first keeps both cores busy until the end; the order never affects the output
    chunks.sort(key=lambda c: -sum(len(j.text) for j in c[1]) * (3 if c[0].name == "slt_hts" else 1))
    tasks = [(voice, chunk_jobs, str(lang_dir)) for voice, chunk_jobs in chunks]
    results: dict[str, tuple[int, list[Phone]]] = {}
    cpu = 0.0
    # A fresh process per chunk (also with --jobs 1): espeak-ng output depends on what the
    # process synthesized before, so each chunk must start from the same state.
    try:
        for rows, chunk_cpu in parallel_map(_render_chunk, tasks, jobs,
                                            start="forkserver", fresh_workers=True, ordered=False,
                                            desc="corpus: synthesizing", unit="utt",
                                            weight=lambda task, _: len(task[1]), total=len(plan.jobs)):
            for key, n, phones in rows:
                results[key] = (n, phones)
            cpu += chunk_cpu
    except RuntimeError as exc:
        raise UserError(str(exc)) from None
    return results, cpu


def _extract_recorded(plan, found, lang_dir: Path, jobs: int) -> dict[str, tuple[int, list[Phone]]]:
    """Write the recorded utterances of the plan; returns {key: (n samples, phones)}."""
    results = {}
    for key, samples, phones in corpus_recorded.extract(found, plan.recorded, jobs):
        split, utt_id = key.rsplit("/", 1)
        _write_utterance(lang_dir, split, utt_id, samples, phones)
        results[key] = (len(samples), phones)
    return results


def _make_excerpts(plan, lang_dir: Path, results) -> tuple[list[tuple[str, corpus_abx.Excerpt]], dict[str, int]]:
    """Cut the ABX excerpts out of the long test utterances; returns (named excerpts, their lengths).
    Synthetic and recorded test speakers are capped apart (``max_excerpts``, ``real_max_excerpts``)."""
    long_jobs = [j for j in plan.jobs if j.split == "test"]
    candidates, real_candidates = [], []
    for job in long_jobs:
        n, phones = results[job.key]
        found = corpus_abx.scored_phones(job.utt_id, phones, n, job.text)
        (real_candidates if job.key in plan.recorded else candidates).extend(found)
    chosen = corpus_abx.select(candidates, plan.scale.max_excerpts)
    if real_candidates:
        chosen += corpus_abx.select(real_candidates, plan.scale.real_max_excerpts)
    named, lengths, audio_cache = [], {}, {}
    for excerpt in tqdm(chosen, desc="corpus: ABX excerpts", unit="file"):
        if excerpt.source not in audio_cache:
            audio_cache.clear()
            audio_cache[excerpt.source], _ = sf.read(str(lang_dir / "test" / f"{excerpt.source}.wav"), dtype="int16")
        name = f"{excerpt.speaker}_{plan.new_id()}"
        phones = corpus_abx.excerpt_alignment(excerpt, results[f"test/{excerpt.source}"][1])
        _write_utterance(lang_dir, "test", name, audio_cache[excerpt.source][excerpt.start:excerpt.end], phones)
        named.append((name, excerpt))
        lengths[name] = excerpt.end - excerpt.start
    return named, lengths


def build_corpus(out_dir: str | os.PathLike, scale="demo", jobs: int = 2, force: bool = False,
                 stats: dict | None = None, speech: str = "mixed") -> Path:
    """Build the demo corpus at ``out_dir`` (the dataset ROOT, holding ``2019/english``).

    ``scale``: ``tiny`` (tests, seconds), ``demo`` (the default: 44 synthetic speakers, about 63
    min of sentences plus 3000 ABX excerpts, and with ``speech="mixed"`` 7 recorded speakers) or
    an integer N (N times the demo's utterances). ``speech``: ``mixed`` or ``synthetic`` (see
    the module doc). ``stats``, if given, receives ``built`` (False when skipped),
    ``wall_seconds`` and ``cpu_seconds`` (all processes, engines included; the first
    alignment of recorded speech is in the wall time only). Returns ``out_dir``.
    """
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    if stats is not None:
        stats.update(built=False, wall_seconds=0.0, cpu_seconds=0.0)
    out_dir = Path(out_dir)
    plan = make_plan(scale)
    speech = effective_speech(scale, speech)
    if not force and is_up_to_date(out_dir, scale, speech):
        return out_dir
    claim_folder(out_dir, "corpus", replaces=True)
    check_engines(plan.voices.values())
    found = None
    if speech == "mixed":        # downloads and aligns on first use, then reads the cache
        found = corpus_recorded.aligned(jobs)
        add_recorded(plan, *corpus_recorded.choose(found, plan.scale.real_unit_seconds, plan.scale.real_test_utts))
    with atomic_dir(out_dir) as tmp:
        lang_dir = tmp / "2019" / LANGUAGE
        results, worker_cpu = _synthesize(plan, lang_dir, jobs)
        if found is not None:
            children = resource.getrusage(resource.RUSAGE_CHILDREN)
            results.update(_extract_recorded(plan, found, lang_dir, jobs))
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            worker_cpu += after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
        named, excerpt_lengths = _make_excerpts(plan, lang_dir, results)

        abx_dir = lang_dir / "abx"
        abx_dir.mkdir(parents=True)
        short_items, long_items = corpus_abx.item_files(named)
        (abx_dir / "test.item").write_text(short_items, encoding="utf-8")
        (abx_dir / "test_long.item").write_text(long_items, encoding="utf-8")

        (lang_dir / "synthesis.txt").write_text("".join(f"test/{j.utt_id} {v}\n" for j, v in plan.synthesis),
                                                encoding="utf-8")
        long_lengths = {j.utt_id: results[j.key][0] for j in plan.jobs if j.split == "test"}
        outputs = [f"{output_stem(j.utt_id, v)}.wav" for j, v in plan.synthesis]
        lists = format_filelists({**long_lengths, **excerpt_lengths}, set(long_lengths), outputs, LANGUAGE)
        (lang_dir / "lists").mkdir()
        for kind, text in lists.items():
            (lang_dir / "lists" / f"{kind}_filelist.txt").write_text(text, encoding="utf-8")
        (lang_dir / "transcripts.tsv").write_text("".join(f"{j.key}\t{j.text}\n" for j in plan.jobs),
                                                  encoding="utf-8")
        manifest = _manifest(plan, results, excerpt_lengths, len(named))
        if found is not None:
            manifest.update(speech="mixed", recorded={"version": _recorded_version(),
                                                      **corpus_recorded.manifest_entry(found, plan.real_speakers)})
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        write_marker(tmp, "corpus")
    if stats is not None:
        stats.update(built=True, wall_seconds=time.perf_counter() - start_wall,
                     cpu_seconds=worker_cpu + time.process_time() - start_cpu)
    return out_dir


def _manifest(plan, results, excerpt_lengths, n_items) -> dict:
    counts, seconds = {}, {}
    for job in plan.jobs:
        counts[job.split] = counts.get(job.split, 0) + 1
        seconds[job.split] = seconds.get(job.split, 0.0) + results[job.key][0] / SAMPLE_RATE
    counts["test (excerpts)"] = len(excerpt_lengths)
    seconds["test (excerpts)"] = sum(excerpt_lengths.values()) / SAMPLE_RATE
    used = {j.utt_id.split("_")[0] for j in plan.jobs}
    speakers = {spk: plan.voices[spk].describe() if spk in plan.voices else
                f"recorded: {plan.real_speakers[spk]['actor']} ({', '.join(plan.real_speakers[spk]['races'])})"
                for spk in sorted(used)}
    return {
        "generator": "zs2020 corpus", "version": GENERATOR_VERSION, "scale": plan.scale.name,
        "language": LANGUAGE, "counts": counts, "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "items": n_items, "synthesis_lines": len(plan.synthesis),
        "speakers": speakers,
    }


def summary(out_dir: Path) -> str:
    manifest = _read_manifest(out_dir) or {}
    counts, seconds = manifest.get("counts", {}), manifest.get("seconds", {})
    total = sum(seconds.values()) / 60
    parts = ", ".join(f"{k} {counts[k]}" for k in counts)
    real = len((manifest.get("recorded") or {}).get("speakers", {}))
    return (f"{out_dir}: scale {manifest.get('scale')}, {len(manifest.get('speakers', {}))} speakers"
            f"{f' ({real} recorded)' if real else ''}, "
            f"{total:.1f} min; {parts}; {manifest.get('items')} ABX items")
