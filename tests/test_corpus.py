"""The demo corpus generator: layout, audio format, alignments, ABX excerpts and items, file
lists, no train/test leakage, determinism, skipping and one-line errors."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from pipeline.contract.dataset import Dataset, read_alignment, read_filelist
from pipeline.contract.names import ALL_SPLITS, TRAIN_SPLITS
from pipeline.corpus import engines as corpus_engines
from pipeline.corpus.build import build_corpus, is_up_to_date
from pipeline.corpus.engines import _espeak_segments
from pipeline.corpus.excerpts import MIN_EXCERPT, scored_phones, select
from pipeline.corpus.phones import PHONES, SNAP, Phone, canonical_espeak, canonical_flite, finalize
from pipeline.corpus.plan import make_plan, scale_from
from pipeline.stages.corpus import corpus_command


@pytest.fixture(scope="module")
def ds(tiny_corpus):
    return Dataset(tiny_corpus, "english")


def _all_utts(ds):
    return [u for s in ALL_SPLITS for u in ds.utterances(s, required=False)]


def _read_items(path):
    rows = []
    for line in Path(path).read_text().splitlines()[1:]:
        f, on, off, ph, prev, nxt, spk = line.split()
        rows.append((f, float(on), float(off), ph, prev, nxt, spk))
    return rows


def _tree_md5(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------ layout and audio
def test_layout_and_speakers(ds, tiny_corpus):
    manifest = json.loads((tiny_corpus / "manifest.json").read_text())
    for split in TRAIN_SPLITS + ("test", "reference"):
        assert ds.has_split(split), split
    assert ds.target_voices() == ["V001", "V002"]
    unit = set(ds.speakers(("train/unit",)))
    test = set(ds.speakers(("test",)))
    assert len(unit) >= 4 and not unit & {"V001", "V002"}
    assert not test & set(ds.speakers()), "test speakers must be unseen in training"
    assert set(ds.speakers(("train/parallel/voice",))) == {"V001", "V002"}
    assert set(ds.speakers(("train/parallel/source",))) <= unit
    # parallel pairs share their id: every source sentence is read by both voices
    src_ids = {u.utt_id.split("_")[1] for u in ds.utterances("train/parallel/source")}
    for voice in ("V001", "V002"):
        assert {u.utt_id.split("_")[1] for u in ds.utterances("train/parallel/voice") if u.speaker == voice} == src_ids
    n_test = len(ds.utterances("test"))
    assert n_test == manifest["counts"]["test"] + manifest["counts"]["test (excerpts)"]
    assert manifest["items"] == manifest["counts"]["test (excerpts)"] > 20


def test_every_wav_is_16k_mono_pcm16_and_not_silent(ds):
    for utt in _all_utts(ds):
        info = sf.info(str(utt.path))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16"), utt.path
        peak = np.abs(utt.read()).max()
        # whole sentences are normalised to -3 dBFS; an excerpt may be a quiet consonant cluster
        assert peak > (0.5 if ds.transcript(utt) else 0.003), utt.path


def test_alignments_contiguous_cover_the_wav_and_use_cmu39_sil(ds):
    seen = set()
    for utt in _all_utts(ds):
        segs = ds.alignment(utt)
        assert segs, f"no alignment for {utt.key}"
        assert segs[0].onset == 0.0
        for a, b in zip(segs, segs[1:]):
            assert a.offset == b.onset and a.offset > a.onset
        assert segs[-1].offset == pytest.approx(utt.duration(), abs=1e-6)
        seen |= {s.phone for s in segs}
    assert seen <= set(PHONES)
    assert len(seen) > 25          # a real phone inventory, not a handful of labels


def test_transcripts_and_references(ds):
    lines = ds.synthesis()
    assert 2 <= len(lines) <= 4
    assert [line.voice for line in lines] == ["V001", "V002"] * (len(lines) // 2) + ["V001"] * (len(lines) % 2)
    for line in lines:
        ref = ds.reference(line)
        assert ref is not None and ref.path.name == line.output_name and ref.speaker == line.voice
        assert ds.transcript(ref) == ds.transcript(line.source) and ds.transcript(ref)
        assert ds.alignment(ref)
    for split in TRAIN_SPLITS:
        for utt in ds.utterances(split):
            assert ds.transcript(utt), utt.key


# ------------------------------------------------------------------------------ ABX material
def test_excerpts_are_exact_slices_matching_their_items(ds):
    short = _read_items(ds.item_file("excerpt"))
    long = _read_items(ds.item_file("long"))
    assert len(short) == len(long) > 0
    assert len({row[0] for row in short}) == len(short), "one item per excerpt file"
    test_dir = ds.split_dir("test")
    long_audio = {}
    for (f, on, off, ph, prev, nxt, spk), (lf, lon, loff, lph, lprev, lnxt, lspk) in zip(short, long):
        assert (ph, prev, nxt, spk) == (lph, lprev, lnxt, lspk)
        assert f.split("_")[0] == lf.split("_")[0] == spk and ph != "SIL" and "SIL" not in (prev, nxt)
        excerpt = sf.read(str(test_dir / f"{f}.wav"), dtype="int16")[0]
        duration = len(excerpt) / 16000
        assert duration >= MIN_EXCERPT - 1e-9 and 0 <= on < off <= duration
        assert off - on == pytest.approx(loff - lon, abs=1e-9)
        # the excerpt is the slice of the long utterance that puts the phone at the same place
        start = round((lon - on) * 16000)
        if lf not in long_audio:
            long_audio[lf] = sf.read(str(test_dir / f"{lf}.wav"), dtype="int16")[0]
        assert np.array_equal(excerpt, long_audio[lf][start:start + len(excerpt)])
        # the excerpt's own alignment: prev, phone, next, the phone exactly at the item span
        segs = read_alignment(ds.lang_dir / "alignments" / "test" / f"{f}.phn")
        mid = [s for s in segs if s.onset == pytest.approx(on) and s.offset == pytest.approx(off)]
        assert len(mid) == 1 and mid[0].phone == ph
        i = segs.index(mid[0])
        assert segs[i - 1].phone == prev and segs[i + 1].phone == nxt
        # the long utterance's alignment agrees
        lsegs = ds.alignment(ds.find(f"test/{lf}"))
        assert any(s.onset == pytest.approx(lon) and s.offset == pytest.approx(loff) and s.phone == ph for s in lsegs)


def _abx_triplets(rows) -> tuple[int, int]:
    """(within-speaker, across-speaker) by-context ABX triplets: A and X share phone and context,
    B has another phone in that context and A's speaker; X is A's speaker (within) or not."""
    table: dict = {}
    for _, _, _, phone, prev, nxt, spk in rows:
        counts = table.setdefault((prev, nxt), {}).setdefault(spk, {})
        counts[phone] = counts.get(phone, 0) + 1
    within = across = 0
    for speakers in table.values():
        for spk, counts in speakers.items():
            for a, n_a in counts.items():
                n_b = sum(n for b, n in counts.items() if b != a)
                within += n_a * (n_a - 1) * n_b
                across += n_a * n_b * sum(c.get(a, 0) for s, c in speakers.items() if s != spk)
    return within, across


def test_test_sentences_are_shared_so_abx_has_triplets(ds):
    readers: dict[str, set] = {}
    for utt in ds.utterances("test"):
        if ds.transcript(utt):
            readers.setdefault(ds.transcript(utt), set()).add(utt.speaker)
    assert all(len(spks) == 2 for spks in readers.values())
    within, across = _abx_triplets(_read_items(ds.item_file("excerpt")))
    assert within > 0 and across > 20


def test_nothing_from_training_reaches_test_items_or_synthesis(ds):
    train_texts = {ds.transcript(u) for s in TRAIN_SPLITS for u in ds.utterances(s)}
    long_tests = [u for u in ds.utterances("test") if ds.transcript(u)]
    assert long_tests and not {ds.transcript(u) for u in long_tests} & train_texts
    test_ids = {u.utt_id for u in ds.utterances("test")}
    train_ids = {u.utt_id for s in TRAIN_SPLITS for u in ds.utterances(s)}
    for kind in ("excerpt", "long"):
        assert {row[0] for row in _read_items(ds.item_file(kind))} <= test_ids
    for line in ds.synthesis():
        assert line.source.split == "test" and line.source.utt_id not in train_ids
        assert ds.transcript(line.source) not in train_texts
    # output names of the synthesis lines are unique (ids unique across test/)
    assert len({line.output_name for line in ds.synthesis()}) == len(ds.synthesis())


def test_file_lists_match_test_folder(ds):
    test = {u.utt_id: u for u in ds.utterances("test")}
    required = [name for name, _ in read_filelist(ds.filelist("required"))]
    lines = ds.synthesis()
    assert sorted(required) == sorted([f"{s}.txt" for s in test] + [line.output_name for line in lines])
    assert all(r.startswith("english/test/") for r in ds.filelist("required").read_text().split())
    embedding = read_filelist(ds.filelist("embedding"))
    assert {n for n, _ in embedding} == {f"{s}.txt" for s in test}
    for name, dur in embedding:
        assert dur == pytest.approx(test[name[:-4]].duration(), abs=1e-6)
    bitrate = {n[:-4] for n, _ in read_filelist(ds.filelist("bitrate"))}
    long_ids = {row[0] for row in _read_items(ds.item_file("long"))}
    assert long_ids <= bitrate and {line.source.utt_id for line in lines} <= bitrate
    assert all(test[b].duration() > 1.0 for b in bitrate)


# ------------------------------------------------------------------------------ build behaviour
@pytest.mark.slow
def test_rebuild_is_byte_identical_with_one_job(tiny_corpus, tmp_path):
    stats: dict = {}
    again = build_corpus(tmp_path / "again", scale="tiny", jobs=1, stats=stats)
    assert _tree_md5(again) == _tree_md5(tiny_corpus)
    assert stats["built"] and stats["cpu_seconds"] > 0.5 and stats["wall_seconds"] > 0


# Renders two short sentences in every voice of the plan and prints a digest of each result
# (samples and phone timings). "disturbed" first uses the C library's rand(), as libpulse does
# inside espeak_Initialize on a machine that has no PulseAudio runtime folder yet.
_RENDER_EVERY_VOICE = """
import ctypes, hashlib, json, sys
from pipeline.corpus.engines import render
from pipeline.corpus.plan import make_plan
if sys.argv[1] == "disturbed":
    libc = ctypes.CDLL(None)
    libc.srand(7)
    for _ in range(12):
        libc.rand()
digests = {}
for speaker, voice in make_plan("demo").voices.items():
    for n, result in enumerate(render(voice, ["Yes.", "The cat sat on the mat."])):
        data = result.samples.tobytes() + repr(result.phones).encode()
        digests[f"{speaker} {voice.describe()} #{n}"] = hashlib.sha256(data).hexdigest()
print(json.dumps(digests))
"""


def test_every_voice_renders_identical_bytes_in_separate_processes():
    """Each voice configuration of the plan (unit, target and test speakers) twice, in two fresh
    processes, one of which used rand() first: a build must not depend on the machine's state."""
    root = Path(__file__).resolve().parents[1]
    runs = [subprocess.Popen([sys.executable, "-c", _RENDER_EVERY_VOICE, mode], cwd=root, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for mode in ("clean", "disturbed")]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert all(run.returncode == 0 for run in runs), [err[-2000:] for _, err in outputs]
    clean, disturbed = (json.loads(out) for out, _ in outputs)
    assert len(clean) == 2 * len(make_plan("demo").voices)
    assert [k for k in clean if clean[k] != disturbed[k]] == []


def test_up_to_date_corpus_is_skipped(tiny_corpus):
    manifest = tiny_corpus / "manifest.json"
    before = manifest.stat().st_mtime_ns
    stats: dict = {}
    assert build_corpus(tiny_corpus, scale="tiny", jobs=2, stats=stats) == tiny_corpus
    assert stats["built"] is False
    assert manifest.stat().st_mtime_ns == before
    result = CliRunner().invoke(corpus_command, ["--out", str(tiny_corpus), "--scale", "tiny"])
    assert result.exit_code == 0 and "up to date" in result.output


def test_manifest_decides_whether_a_corpus_is_up_to_date(tiny_corpus, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "2019" / "english" / "test").mkdir(parents=True)
    manifest = json.loads((tiny_corpus / "manifest.json").read_text())
    (copy / "manifest.json").write_text(json.dumps(manifest))
    assert is_up_to_date(copy, "tiny") and not is_up_to_date(copy, "demo")
    (copy / "manifest.json").write_text(json.dumps({**manifest, "version": manifest["version"] - 1}))
    assert not is_up_to_date(copy, "tiny")
    (copy / "manifest.json").write_text("{not json")
    assert not is_up_to_date(copy, "tiny")


def test_a_foreign_folder_is_never_replaced(tmp_path):
    mine = tmp_path / "my_files"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    result = CliRunner().invoke(corpus_command, ["--out", str(mine), "--scale", "tiny"])
    assert result.exit_code == 1 and "non-empty folder" in result.output
    assert (mine / "thesis.tex").read_text() == "precious" and len(list(tmp_path.iterdir())) == 1


def test_missing_engine_is_a_one_line_error_and_writes_nothing(tmp_path, monkeypatch):
    real_which = corpus_engines.shutil.which
    monkeypatch.setattr(corpus_engines.shutil, "which", lambda p: None if p == "festival" else real_which(p))
    out = tmp_path / "c"
    result = CliRunner().invoke(corpus_command, ["--out", str(out), "--scale", "tiny"])
    assert result.exit_code == 1
    assert result.output.strip().count("\n") == 0
    assert "festival" in result.output and "scripts/install_system_deps.sh" in result.output
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("scale", ["0", "-2", "huge", "1.5", "tiny:real4", "demo:real0", "demo:realx", "demo:real",
                                   "demo:realonly", "tiny:realonly4"])
def test_bad_scale_is_refused(scale, tmp_path):
    result = CliRunner().invoke(corpus_command, ["--out", str(tmp_path / "c"), "--scale", scale])
    assert result.exit_code == 1 and "scale" in result.output and not (tmp_path / "c").exists()


def test_real_minutes_in_the_scale_set_the_share_of_real_speech():
    """``demo:real12``: 12 minutes of each real unit actor instead of 4, everything else the
    demo's; the name round-trips (the manifest stores it) and the config accepts the same text."""
    from pipeline.core.config import load_config
    from pipeline.core.errors import UserError
    demo, more = scale_from("demo"), scale_from("demo:real12")
    assert (demo.real_unit_seconds, more.real_unit_seconds) == (240.0, 720.0)
    assert more.name == "demo:real12" and scale_from(more.name) == more
    assert dataclasses.replace(more, name="demo", real_unit_seconds=240.0) == demo
    assert scale_from("2:real2.5").real_unit_seconds == 150.0 and scale_from("2:real2.5").unit_utts == 2 * demo.unit_utts
    assert load_config("demo", ["corpus.scale=demo:real12"]).corpus.scale == "demo:real12"
    with pytest.raises(UserError, match="corpus.scale"):
        load_config("demo", ["corpus.scale=demo:more"])


def test_real_only_scale_drops_the_synthetic_unit_speakers_and_nothing_else():
    """``demo:realonly30``: train/unit without its synthetic speakers; every other split keeps the
    same utterance ids and sentences as ``demo:real30``."""
    mixed, only = scale_from("demo:real30"), scale_from("demo:realonly30")
    assert only.name == "demo:realonly30" and scale_from(only.name) == only
    assert only.real_unit_seconds == mixed.real_unit_seconds and not only.synthetic_units
    a, b = make_plan(mixed), make_plan(only)
    assert [j for j in a.jobs if j.split != "train/unit"] == [j for j in b.jobs if j.split != "train/unit"]
    assert any(j.split == "train/unit" for j in a.jobs) and not any(j.split == "train/unit" for j in b.jobs)
    assert a.synthesis == b.synthesis


def test_help_explains_every_option():
    text = CliRunner().invoke(corpus_command, ["--help"]).output
    for option in ("--out", "--scale", "--jobs", "--force"):
        assert option in text


def test_plan_scales_linearly_and_keeps_test_sentences_apart():
    one, two = make_plan("demo"), make_plan(2)
    count = lambda plan, split: sum(j.split == split for j in plan.jobs)  # noqa: E731
    assert count(two, "train/unit") == 2 * count(one, "train/unit") == 2 * 32 * 12
    assert count(one, "test") == 120 and len(one.synthesis) == 20
    for plan in (one, two, make_plan("tiny")):
        train = {j.text for j in plan.jobs if j.split.startswith("train")}
        assert not train & {j.text for j in plan.jobs if j.split in ("test", "reference")}
        assert len({j.key for j in plan.jobs}) == len(plan.jobs)


# ------------------------------------------------------------------------------ phones and timings
def test_phone_maps():
    assert canonical_flite("pau") == "SIL" and canonical_flite("ax") == "AH" and canonical_flite("ng") == "NG"
    assert canonical_espeak("_:") == "SIL" and canonical_espeak("||") == "SIL"
    assert canonical_espeak("'aI") == "AY" and canonical_espeak("O@") == "AO" and canonical_espeak("i:") == "IY"
    assert canonical_espeak("u:") == "UW" and canonical_espeak("n:") == "N"      # trailing ":" stripped
    with pytest.raises(ValueError):
        canonical_espeak("Q!")
    with pytest.raises(ValueError):
        canonical_flite("qq")


def test_finalize_clips_snaps_and_merges():
    raw = [Phone(0, 3000, "SIL", "pau"), Phone(3000, 3001, "SIL", "pau"), Phone(3001, 5007, "AA", "aa"),
           Phone(5007, 5010, "B", "b"), Phone(5010, 9000, "SIL", "pau")]
    out = finalize(raw, 8000)       # the wave is shorter than the engine's last segment (flite kal)
    assert [p.phone for p in out] == ["SIL", "AA", "SIL"]        # B vanished after snapping
    assert out[0].start == 0 and out[-1].end == 8000
    assert all(p.start % SNAP == 0 for p in out)
    assert all(a.end == b.start for a, b in zip(out, out[1:]))
    tail = finalize([Phone(0, 1600, "AA", "aa")], 3200)
    assert [(p.phone, p.start, p.end) for p in tail] == [("AA", 0, 1600), ("SIL", 1600, 3200)]


def test_espeak_zero_length_l_takes_the_end_of_the_vowel():
    events = [(500, "f"), (1000, "U"), (3000, "l"), (3000, "_:"), (3500, ";")]
    marks = _espeak_segments(events, 4000, 1000)
    assert [m[0] for m in marks] == ["_", "f", "U", "l", "_:"]       # leading silence added, ";" absorbed
    assert marks[0][1] == 0.0 and marks[-1][2] == 4.0
    assert all(a[2] == b[1] for a, b in zip(marks, marks[1:]))
    assert marks[2][1:] == (1.0, pytest.approx(2.3)) and marks[3][1:] == (pytest.approx(2.3), 3.0)  # 65 % of U
    assert marks[4][1:] == (3.0, 4.0)


def test_short_triphones_are_widened_inside_the_utterance_and_capping_keeps_pairs():
    ms = 16
    phones = [Phone(0, 20 * ms, "SIL", "pau"), Phone(20 * ms, 40 * ms, "B", "b"), Phone(40 * ms, 60 * ms, "AA", "aa"),
              Phone(60 * ms, 80 * ms, "T", "t"), Phone(80 * ms, 100 * ms, "S", "s")]
    first, second = scored_phones("S050_00001", phones, 100 * ms, "Bat s.")
    # B-AA-T spans 60 ms < 88 ms: widened by 14 ms each side; AA-T-S would cross the end: shifted back
    assert (first.start, first.end, first.phone.phone) == (6 * ms, 94 * ms, "AA")
    assert (second.start, second.end) == (12 * ms, 100 * ms) and second.end - second.start == 88 * ms
    other = scored_phones("S051_00002", phones, 100 * ms, "Bat s.")
    kept = select([first, second] + other, 2)
    assert {e.token for e in kept} in ({first.token}, {second.token})    # both readers of one token
