"""Real recorded speech in the demo corpus (The Ur-Quan Masters' voice pack): the source's text,
credits and exclusions on hand-made inputs, the resampler, the word list, the cutting rules,
the private apt download's error, and, where the project's cache holds the voice pack, the
aligner on a real clip and a small mixed corpus."""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pipeline.core.errors import UserError
from pipeline.corpus import align as aligner
from pipeline.corpus import debian, recorded, uqm
from pipeline.corpus.phones import PHONES

RESERVED = {"Madeleine Wild", "Lauren Forcella", "Bruce Leyland"}
RESERVED_RACES = {"syreen", "vux", "zoqfotpik", "supox", "yehat", "yehatrebels"}

CREDITS = """#(Voice actors caption)
13 C
STARRING THE VOICES OF:

#(Voice actors, batch 1)
13 R/146,L/165
Richard Antaki\tThraddash
Alex Bennett\t Starbase
\tCommander
Rich Betz\tAriloulaleelay
\tDruuge
Roy Blumenfeld\tZoq-Fot-Pik
Lauren Forcella\tSupox

#(Voice actors, batch 2)
13 R/146,L/165
Bruce Leyland\tYehat
Madeleine Wild\tZoq-Fot-Pik
\tSyreen
\tVUX
\tPkunk
840-AV\tSlylandro Probe
Arianna
& Devin Reiche

#(V.Edit caption)
13 C
Richard Antaki\tNot A Race
"""

DIALOGUE = """#(HELLO_A0) starbase-000.ogg
Welcome back, Captain
#(HELLO_A1)
.

#(LONG) starbase-001.ogg
 Before we go on, I have something
important to tell you.
#(NO_CLIP)
Only text.
"""


def _ogg(seconds: float = 0.5) -> bytes:
    t = np.arange(int(seconds * 11025)) / 11025
    buf = io.BytesIO()
    sf.write(buf, 0.3 * np.sin(2 * np.pi * 220 * t), 11025, format="OGG", subtype="VORBIS")
    return buf.getvalue()


def _fake_pack(root: Path, races: dict[str, str]) -> Path:
    """A voice pack in the Debian layout: ``races`` = clip folder -> dialogue text."""
    (root / uqm.VOICE_ZIP).parent.mkdir(parents=True)
    (root / uqm.CONTENT_ZIP).parent.mkdir(parents=True)
    with zipfile.ZipFile(root / uqm.VOICE_ZIP, "w") as voice, zipfile.ZipFile(root / uqm.CONTENT_ZIP, "w") as content:
        rmp = []
        for race, text in races.items():
            rmp.append(f"comm.{race}.dialogue = CONVERSATION:base/comm/{race}/{race}.txt:"
                       f"addons/3dovoice/{race}/:addons/3dovoice/{race}/{race}.ts")
            content.writestr(f"base/comm/{race}/{race}.txt", text)
            for clip in uqm.parse_dialogue(text):
                voice.writestr(f"3dovoice/{race}/{clip}", _ogg())
        voice.writestr(uqm.RMP, "\n".join(rmp) + "\n")
        content.writestr(uqm.CREDITS, CREDITS)
    return root


# ---------------------------------------------------------------------------------- the source
def test_dialogue_parser_maps_clips_to_their_own_lines():
    texts = uqm.parse_dialogue(DIALOGUE)
    assert texts == {"starbase-000.ogg": "Welcome back, Captain",
                     "starbase-001.ogg": "Before we go on, I have something important to tell you."}


def test_rmp_parser_names_dialogue_files_by_clip_folder():
    rmp = ("comm.starbase.dialogue = CONVERSATION:addons/3dovoice/starbase/starbase.txt:addons/3dovoice/starbase/:"
           "addons/3dovoice/starbase/starbase.ts\n"
           "comm.yehat.rebel.dialogue = CONVERSATION:base/comm/yehatrebels/yehatrebels.txt:"
           "addons/3dovoice/yehatrebels/:addons/3dovoice/yehatrebels/yehatrebels.ts\n")
    assert uqm.parse_rmp(rmp) == {"starbase": "addons/3dovoice/starbase/starbase.txt",
                                  "yehatrebels": "base/comm/yehatrebels/yehatrebels.txt"}


def test_credits_parser_labels_races_by_actor():
    races = uqm.parse_credits(CREDITS)
    assert races["thraddash"] == ("Richard Antaki",)
    assert races["starbase"] == races["commander"] == ("Alex Bennett",)
    assert races["arilou"] == races["druuge"] == ("Rich Betz",)            # credits spell it Ariloulaleelay
    assert races["zoqfotpik"] == ("Roy Blumenfeld", "Madeleine Wild")      # two actors, one race
    assert races["yehatrebels"] == races["yehat"] == ("Bruce Leyland",)     # not credited apart
    assert races["probe"] == ("840-AV",)
    assert "notarace" not in races                                          # only the voice sections


def test_reserved_actors_and_races_never_enter_the_catalogue(tmp_path):
    line = "#(A) {race}-000.ogg\nHello there.\n#(B) {race}-001.ogg\nGood bye.\n"
    races = ["starbase", "commander", "druuge", "thraddash", "pkunk", "syreen", "vux", "zoqfotpik", "supox",
             "yehat", "yehatrebels", "probe", "arilou", "safeones"]
    pack = uqm.VoicePack(_fake_pack(tmp_path, {r: line.format(race=r) for r in races}))
    clips, excluded = pack.clips()
    used = {c.race for c in clips}
    # pkunk is credited here to Madeleine Wild: excluded by actor although its race is allowed
    assert used == {"starbase", "commander", "druuge", "thraddash"}
    assert not {c.actor for c in clips} & RESERVED
    assert not any(c.name.split("-")[0] in RESERVED_RACES for c in clips)
    for race in RESERVED_RACES | {"pkunk"}:
        assert excluded[race] == "reserved for the blind test", race
    assert excluded["probe"] == "synthetic voice" and excluded["arilou"] == "heavily processed voice"
    assert excluded["safeones"].startswith("uncredited")
    assert uqm.RESERVED_ACTORS == RESERVED and uqm.RESERVED_RACES == RESERVED_RACES
    for actor in recorded.UNIT_ACTORS + recorded.TEST_ACTORS:
        assert actor not in RESERVED
    assert uqm.is_reserved("starbase", "Alex Bennett", "syreen-000.ogg")      # by clip name too


def test_real_catalogue_holds_no_reserved_clip():
    pack = _cached_pack()
    clips, excluded = pack.clips()
    assert clips and not any(uqm.is_reserved(c.race, c.actor, c.name) for c in clips)
    assert RESERVED_RACES <= set(excluded)
    assert {c.actor for c in clips} == set(recorded.UNIT_ACTORS + recorded.TEST_ACTORS)


# ---------------------------------------------------------------------------------- signal and text
def test_resampler_is_exact_640_over_441_and_keeps_the_band():
    n = 11025
    t = np.arange(n) / 11025
    out = aligner.resample(np.sin(2 * np.pi * 1000 * t) + 0.5 * np.sin(2 * np.pi * 4000 * t))
    assert len(out) == 16000
    spectrum = np.abs(np.fft.rfft(out[1000:-1000] * np.hanning(14000)))
    freqs = np.fft.rfftfreq(14000, 1 / 16000)
    near = lambda f: spectrum[np.abs(freqs - f) < 20].max()              # noqa: E731
    assert near(4000) == pytest.approx(0.5 * near(1000), rel=0.05)
    assert spectrum[freqs > 5600].max() < 1e-3 * near(1000)             # nothing above the source band
    t16 = np.arange(16000) / 16000                     # the same tones, sampled at 16 kHz
    exact = np.sin(2 * np.pi * 1000 * t16) + 0.5 * np.sin(2 * np.pi * 4000 * t16)
    assert np.max(np.abs(out - exact)[1000:-1000]) < 0.01
    assert aligner.to_pcm16(np.array([2.0, -2.0, 0.5])).tolist() == [32767, -32767, 16384]


def test_words_of_turns_what_the_dictionary_lacks_into_one_filler():
    known = {"we", "are", "hand", "in", "the", "captain", "don't", "go"}.__contains__
    assert aligner.words_of("We are (sob!) the Ur-Quan, Captain!", known) == ["we", "are", "[SPEECH]", "the",
                                                                             "[SPEECH]", "captain"]
    assert aligner.words_of("Hand-in-hand, 200% *sigh* go", known) == ["hand", "in", "hand", "[SPEECH]", "go"]
    assert aligner.words_of("`Don't' go...", known) == ["don't", "go"]


# ---------------------------------------------------------------------------------- cutting
def _phrase(start: int, words: list[tuple[str, list[tuple[str, int]]]], index: int):
    """Segments of words spoken from frame ``start``: [(word, [(phone, frames)])]."""
    segs, t = [], start
    for i, (word, phones) in enumerate(words):
        for phone, frames in phones:
            segs.append(aligner.Segment(t, t + frames, phone, word, index + i))
            t += frames
    return segs, t


def _clip(layout):
    """Audio (loud noise in speech, quiet noise in pauses) and segments for a list of
    ("speech", frames, problem) / ("pause", frames) items."""
    rng = np.random.default_rng(0)
    segs, t, index = [], 0, 0
    loud, dips = [], []
    for item in layout:
        if item[0] == "pause":
            segs.append(aligner.Segment(t, t + item[1], "SIL", "<sil>", index))
            dips.append(t + item[1] // 2 - 1)               # its quietest 30 ms are in the middle
            t += item[1]
        else:
            frames, problem = item[1], item[2]
            words = [(f"w{index + w}", [("K", 10), ("AE", 10)]) for w in range(frames // 20)]
            if problem == "filler":
                words[0] = ("[SPEECH]", [("+SPN+", 20)])
            if problem == "long vowel":
                words[:3] = [("w", [("K", 10), ("AE", 50)])]
            new, end = _phrase(t, words, index)
            assert end == t + frames
            segs += new
            loud.append((t, end))
            t = end
        index += 100
    audio = rng.normal(0, 0.001, t * aligner.FRAME)
    for a, b in loud:
        audio[a * aligner.FRAME:b * aligner.FRAME] = rng.normal(0, 0.2, (b - a) * aligner.FRAME)
    for d in dips:
        audio[d * aligner.FRAME:(d + 3) * aligner.FRAME] *= 0.1
    return segs, audio


def test_cut_makes_1_to_8_s_utterances_at_pauses_and_drops_implausible_phrases():
    segs, audio = _clip([("speech", 300, None), ("pause", 40), ("speech", 500, None), ("pause", 40),
                         ("speech", 240, "filler"), ("pause", 40), ("speech", 200, None), ("pause", 40),
                         ("speech", 100, "long vowel"), ("pause", 40), ("speech", 60, None)])
    lost: dict = {}
    cuts = aligner.cut(segs, audio, lost)
    # 0-3.2 s and 3.2-8.6 s would be 8.6 s together: two utterances; the filler's phrase and the
    # long vowel's are dropped, and the last phrase (0.8 s with its half pause) is too short
    assert [(c.start // 160, c.end // 160) for c in cuts] == [(0, 320), (320, 860), (1140, 1380)]
    for c in cuts:
        assert 1.0 <= (c.end - c.start) / 16000 <= 8.0
        assert c.phones[0][0] == 0 and c.phones[-1][1] == c.end - c.start
        assert all(a[1] == b[0] for a, b in zip(c.phones, c.phones[1:]))
        assert {p[2] for p in c.phones} <= set(PHONES)
    assert set(lost) == {"filler", "long vowel", "under 1 s"}
    again = aligner.cut(segs, audio.copy())
    assert again == cuts                                          # deterministic


def test_cut_never_cuts_where_the_signal_is_as_loud_as_speech():
    segs, audio = _clip([("speech", 300, None), ("pause", 40), ("speech", 300, None)])
    pause = next(s for s in segs if s.phone == "SIL")
    audio[pause.start * 160:pause.end * 160] = np.random.default_rng(1).normal(0, 0.2, (pause.end - pause.start) * 160)
    lost: dict = {}
    assert aligner.cut(segs, audio, lost) == [] and set(lost) == {"silence over speech"}


# ---------------------------------------------------------------------------------- download
def test_download_failure_is_one_user_error_line(tmp_path, monkeypatch):
    monkeypatch.setenv(debian.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(debian.MIRROR_ENV, f"file://{tmp_path}/no-mirror")
    with pytest.raises(UserError) as info:
        debian.fetch_debs(("uqm-voice",))
    message = info.value.format_message()
    assert "cannot download" in message and "uqm-voice" in message and "\n" not in message
    assert not list((tmp_path / "cache").glob("debs/*.deb"))


def test_unpack_reads_the_data_archive_of_a_deb(tmp_path):
    payload = tarfile.TarInfo("./usr/share/x/file.txt")
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:xz") as tar:
        payload.size = 5
        tar.addfile(payload, io.BytesIO(b"hello"))
    members = [("debian-binary", b"2.0\n"), ("control.tar.xz", b"x" * 3), ("data.tar.xz", data.getvalue())]
    deb = tmp_path / "p_1.0-1_all.deb"
    with open(deb, "wb") as fh:
        fh.write(b"!<arch>\n")
        for name, blob in members:
            fh.write(f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(blob):<10}`\n".encode())
            fh.write(blob + (b"\n" if len(blob) % 2 else b""))
    debian.unpack(deb, tmp_path / "out", ("usr/share/x/file.txt",))
    assert (tmp_path / "out/usr/share/x/file.txt").read_text() == "hello"
    assert debian.deb_version(deb) == "1.0-1"


# ---------------------------------------------------------------------------------- real data
def _cached_pack() -> uqm.VoicePack:
    """The real voice pack, downloaded from the Debian archive into the project's cache on first
    use as ``zs2020 corpus`` does (a fresh CI clone fetches it: the tiny real subset of the suite)."""
    return recorded.voice_pack()[0]


def test_aligner_on_a_real_clip_is_plausible_and_order_independent():
    pack = _cached_pack()
    clips = {c.name: c for c in pack.clips()[0]}
    first = recorded.align_clip((str(pack.root), clips["starbase-007.ogg"]))
    recorded.align_clip((str(pack.root), clips["commander-010.ogg"]))       # another clip in between
    assert recorded.align_clip((str(pack.root), clips["starbase-007.ogg"])) == first
    assert first["status"] == "aligned" and first["words"] == ["welcome", "back", "captain"]
    [cut] = first["cuts"]
    assert cut["words"] == ["welcome", "back", "captain"]
    labels = [p[2] for p in cut["phones"] if p[2] != "SIL"]
    assert labels == "W EH L K AH M B AE K K AE P T AH N".split()
    assert 1.0 <= (cut["end"] - cut["start"]) / 16000 <= first["seconds"]


def test_small_mixed_corpus_has_real_speakers_only_where_planned(tmp_path):
    _cached_pack()
    from pipeline.contract.dataset import Dataset
    from pipeline.corpus.build import build_corpus, is_up_to_date
    from pipeline.corpus.plan import scale_from
    scale = dataclasses.replace(scale_from("tiny"), real_unit_seconds=8.0, real_test_utts=3,
                                real_synthesis_per_speaker=1, real_max_excerpts=40)
    trees = []
    for jobs in (1, 2):
        out = build_corpus(tmp_path / f"c{jobs}", scale=scale, jobs=jobs, force=True, speech="mixed")
        trees.append({str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
                      for p in sorted(out.rglob("*")) if p.is_file() and not p.name.startswith(".")})
    assert trees[0] == trees[1]                                    # identical bytes for any --jobs
    assert is_up_to_date(out, scale, "mixed") and not is_up_to_date(out, scale, "synthetic")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["speech"] == "mixed" and manifest["recorded"]["licence"] == "CC BY-NC-SA 2.5"
    real = manifest["recorded"]["speakers"]
    unit = {spk for spk, info in real.items() if info["split"] == "train/unit"}
    test = {spk for spk, info in real.items() if info["split"] == "test"}
    assert len(unit) == len(recorded.UNIT_ACTORS) and len(test) == len(recorded.TEST_ACTORS) >= 3
    assert not {info["actor"] for info in real.values()} & RESERVED
    assert not {r for info in real.values() for r in info["races"]} & RESERVED_RACES
    ds = Dataset(out, "english")
    assert unit <= set(ds.speakers(("train/unit",))) and not test & set(ds.speakers())
    assert test <= set(ds.speakers(("test",)))
    items = (ds.item_file("excerpt")).read_text().splitlines()[1:]
    assert {line.split()[-1] for line in items} & test                   # ABX excerpts of real speakers
    assert {line.source.speaker for line in ds.synthesis()} & test        # synthesis lines from them
    for utt in ds.utterances("test") + ds.utterances("train/unit"):
        if utt.speaker in real:
            segs = ds.alignment(utt)
            assert segs[0].onset == 0 and segs[-1].offset == pytest.approx(utt.duration(), abs=1e-6)
            assert {s.phone for s in segs} <= set(PHONES)


def _shipped() -> tuple[uqm.VoicePack, dict[str, dict]]:
    pack, versions = recorded.voice_pack()
    return pack, recorded.shipped_records(recorded.cache_key(versions))


def test_shipped_alignments_are_what_the_aligner_gives_on_this_machine():
    pack, shipped = _shipped()
    # made under the key of the pinned pocketsphinx and the archive's .debs: a first build aligns nothing
    assert len(shipped) >= 600
    clips = {c.name: c for c in pack.clips()[0]}
    short = [n for n in sorted(shipped) if shipped[n]["seconds"] < 3.0]     # cheap to align again
    names = short[::len(short) // 3][:3]
    assert len(names) == 3
    for name in names:
        assert recorded.align_clip((str(pack.root), clips[name])) == shipped[name], name


def test_shipped_alignments_hold_no_reserved_clip_and_spare_the_aligner(monkeypatch):
    pack, shipped = _shipped()
    clips = {c.name: c for c in pack.clips()[0]}
    assert set(shipped) <= set(clips)                 # the catalogue already leaves reserved actors out
    assert not any(uqm.is_reserved(clips[n].race, clips[n].actor, n) for n in shipped)
    found = recorded.aligned(jobs=1)

    def no_aligning(*args, **kwargs):
        raise AssertionError("a shipped clip was aligned again")

    monkeypatch.setattr(recorded, "parallel_map", no_aligning)
    wanted = [clips[n] for n in sorted(shipped)[:40]]
    found.ensure(wanted)
    assert all(found.record(c) == shipped[c.name] for c in wanted)
    assert recorded.shipped_records("another key") == {}           # another package or aligner: align
