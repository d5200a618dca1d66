"""What the demo corpus contains: pseudo-speakers, who says which sentence, and the file ids.

The plan is pure data computed from the scale alone, so two builds of one scale are identical.

Speakers (demo scale):
* ``train/unit``: 32 pseudo-speakers S001-S032: flite kal16 x6, flite awb x6, festival ked x6
  (each a grid over F0 x vocal-tract speed 0.92-1.17 x tempo; speeds 5 % apart within a family so
  that no two are near-duplicates), espeak-ng x14 (accent x variant).
* ``train/voice``: V001 = flite rms (US male), V002 = festival slt_hts (US female), unperturbed;
  neither identity is used by any other speaker.
* ``train/parallel``: sources S001, S007, S013, S019 (one per family) and V001/V002 read the same
  sentences (a parallel pair shares its id: ``S001_00391`` <-> ``V001_00391``).
* ``test``: 10 unseen speakers S033-S042 (kal16/awb/ked at speeds outside the training grid,
  festival kal, and two espeak accent x variant combinations not used in training) reading test
  sentences only (disjoint from every training and parallel sentence); each test sentence is
  read by two test speakers, for across-speaker ABX contexts.
* ``--speech mixed`` (``add_recorded``, not at the tiny scale): real recorded actors S043-S046 in
  ``train/unit`` and S047-S049 only in ``test`` (``pipeline.corpus.recorded``), with ids after
  the synthetic jobs, their own synthesis lines and references.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from pipeline.core.config import split_scale
from pipeline.core.errors import UserError
from pipeline.corpus.engines import Voice
from pipeline.corpus.text import SentenceCursor

ID_WIDTH = 5
CHUNK_SIZE = 12          # utterances per worker task (one engine process each)

# (f0 factor, vocal-tract speed, tempo) grid shared by the three perturbed TTS families.
GRID = [(1.00, 0.92, 1.00), (1.25, 0.97, 0.95), (0.85, 1.02, 1.05),
        (1.15, 1.07, 1.00), (0.90, 1.12, 0.95), (1.30, 1.17, 1.05)]
ESPEAK_UNIT = [("en-us+m1", 45, 165), ("en+m2", 55, 155), ("en-gb-scotland+m3", 40, 170),
               ("en-gb-x-rp+m4", 50, 160), ("en-gb-x-gbclan+m5", 60, 165), ("en-gb-x-gbcwmd+m6", 45, 150),
               ("en-029+m7", 50, 175), ("en-us-nyc+m8", 55, 160), ("en-us+f1", 50, 165),
               ("en+f2", 60, 155), ("en-gb-scotland+f3", 45, 170), ("en-gb-x-rp+f4", 55, 160),
               ("en-029+f5", 50, 150), ("en-us-nyc+klatt2", 40, 165)]

TARGET_VOICES = {"V001": Voice("flite", "rms"), "V002": Voice("festival", "slt_hts")}
REAL_UNIT_SECONDS = 240.0       # per real unit actor at the demo scale
# ABX excerpts of the real test speakers at the demo scale: 72 utterances an actor give about
# 600 phone pairs, a standard error of about 1.1 ABX points (24 utterances gave 180 pairs, 2.6)
REAL_TEST_UTTS = 72
REAL_EXCERPTS = 4500
REAL_SYNTHESIS = 12             # synthesis lines per real test actor: the CER ratio needs more than 4


def _unit_speakers() -> dict[str, Voice]:
    voices = [Voice(engine, name, f0=f0, speed=speed, tempo=tempo)
              for engine, name in (("flite", "kal16"), ("flite", "awb"), ("festival", "ked"))
              for f0, speed, tempo in GRID]
    voices += [Voice("espeak", name, pitch=pitch, rate=rate) for name, pitch, rate in ESPEAK_UNIT]
    return {f"S{i:03d}": v for i, v in enumerate(voices, 1)}


def _test_speakers() -> dict[str, Voice]:
    voices = [Voice("flite", "kal16", f0=1.1, speed=0.87), Voice("flite", "kal16", f0=0.95, speed=1.22),
              Voice("flite", "awb", f0=0.9, speed=0.87, tempo=1.05), Voice("flite", "awb", f0=1.2, speed=1.22),
              Voice("festival", "ked", f0=1.1, speed=0.87), Voice("festival", "ked", f0=0.8, speed=1.22, tempo=1.05),
              Voice("festival", "kal", f0=1.0, speed=0.95), Voice("festival", "kal", f0=1.2, speed=1.10, tempo=0.95),
              Voice("espeak", "en-us+m4", pitch=50, rate=160), Voice("espeak", "en-029+f2", pitch=55, rate=165)]
    return {f"S{i:03d}": v for i, v in enumerate(voices, 33)}


@dataclass(frozen=True)
class Scale:
    name: str
    unit_speakers: tuple[str, ...]
    unit_utts: int
    voice_utts: int
    parallel_sources: tuple[str, ...]
    parallel_sentences: int
    test_speakers: tuple[str, ...]
    test_utts: int
    synthesis_per_speaker: int
    max_excerpts: int
    max_words: int | None = None        # tiny: short sentences only
    # recorded speech (``--speech mixed``): seconds per real unit actor, utterances and synthesis
    # lines per real test actor, and the cap on the real test speakers' ABX excerpts (counted
    # apart from the synthetic ones)
    real_unit_seconds: float = 0.0
    real_test_utts: int = 0
    real_synthesis_per_speaker: int = 0
    real_max_excerpts: int = 0
    # False (":realonlyM"): train/unit holds only the real actors; the synthetic unit speakers'
    # sentences are still drawn, so every other split gets the same sentences as with them
    synthetic_units: bool = True

    @property
    def has_real(self) -> bool:
        return self.real_unit_seconds > 0 or self.real_test_utts > 0


def scale_from(value) -> Scale:
    """``tiny``, ``demo`` (= 1) or a positive integer N (N times the demo's utterances), with
    ``:realM`` after ``demo`` or N for M minutes of each real unit actor instead of the scale's
    (the share of real speech in training: ``demo:real12``; an actor with fewer minutes gives all
    he has), or ``:realonlyM`` for the same with no synthetic speaker in train/unit. ``tiny`` has
    no recorded speech: the test suite's corpus needs no download."""
    if isinstance(value, Scale):
        return value
    text = str(value).strip().lower()
    base, minutes, only = split_scale(text)
    if minutes is not None:
        return dataclasses.replace(scale_from(base), name=f"{scale_from(base).name}:real{'only' if only else ''}{minutes:g}",
                                   real_unit_seconds=60.0 * minutes, synthetic_units=not only)
    units, tests = _unit_speakers(), _test_speakers()
    if text == "tiny":
        return Scale("tiny", ("S001", "S007", "S013", "S019"), 3, 4, ("S001",), 2,
                     ("S033", "S035"), 4, 1, 200, max_words=7)
    if text == "demo":
        text = "1"
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise UserError(f"corpus scale {value!r} is not tiny, demo or a positive integer")
    return Scale(str(n) if n > 1 else "demo", tuple(units), 12 * n, 80 * n, ("S001", "S007", "S013", "S019"),
                 15 * n, tuple(tests), 12 * n, 2 * n, 3000 * n,
                 real_unit_seconds=REAL_UNIT_SECONDS * n, real_test_utts=REAL_TEST_UTTS * n,
                 real_synthesis_per_speaker=REAL_SYNTHESIS * n,
                 real_max_excerpts=REAL_EXCERPTS * n)


@dataclass(frozen=True)
class Job:
    split: str
    utt_id: str
    text: str

    @property
    def key(self) -> str:
        return f"{self.split}/{self.utt_id}"


@dataclass
class Plan:
    scale: Scale
    voices: dict[str, Voice]                              # speaker -> voice
    jobs: list[Job] = field(default_factory=list)
    synthesis: list[tuple[Job, str]] = field(default_factory=list)   # (long test job, target voice)
    next_id: int = 1
    recorded: dict = field(default_factory=dict)          # job key -> recorded source (not synthesized)
    real_speakers: dict[str, dict] = field(default_factory=dict)   # speaker -> actor, races, licence

    def new_id(self) -> str:
        value = f"{self.next_id:0{ID_WIDTH}d}"
        self.next_id += 1
        return value

    def chunks(self) -> list[tuple[Voice, list[Job]]]:
        """Work units: jobs of one speaker (any split) in plan order, at most CHUNK_SIZE each
        (festival starts once per chunk)."""
        groups: dict[str, list[Job]] = {}
        for job in self.jobs:
            if job.key in self.recorded:
                continue
            groups.setdefault(job.utt_id.split("_")[0], []).append(job)
        out = []
        for speaker, jobs in groups.items():
            for i in range(0, len(jobs), CHUNK_SIZE):
                out.append((self.voices[speaker], jobs[i:i + CHUNK_SIZE]))
        return out


def output_stem(source_id: str, voice: str) -> str:
    """Official conversion output name: ``S033_00042`` + ``V002`` -> ``V002_00042``
    (as ``pipeline.contract.dataset.SynthesisLine.output_name``, without ``.wav``)."""
    return f"{voice}_{source_id.split('_', 1)[1]}"


def make_plan(scale_value) -> Plan:
    scale = scale_from(scale_value)
    voices = {**_unit_speakers(), **TARGET_VOICES, **_test_speakers()}
    plan = Plan(scale, voices)
    train = SentenceCursor("train", scale.max_words)
    for spk in scale.unit_speakers:
        for text in train.take(scale.unit_utts):
            utt_id = f"{spk}_{plan.new_id()}"
            if scale.synthetic_units:
                plan.jobs.append(Job("train/unit", utt_id, text))
    for voice in TARGET_VOICES:
        for text in train.take(scale.voice_utts):
            plan.jobs.append(Job("train/voice", f"{voice}_{plan.new_id()}", text))
    for text in SentenceCursor("parallel", scale.max_words).take(scale.parallel_sentences):
        pair_id = plan.new_id()
        for spk in scale.parallel_sources:
            plan.jobs.append(Job("train/parallel/source", f"{spk}_{pair_id}", text))
        for voice in TARGET_VOICES:
            plan.jobs.append(Job("train/parallel/voice", f"{voice}_{pair_id}", text))
    # Every test sentence is read by two test speakers (a ring: speaker k reads blocks k and k+1),
    # so that across-speaker ABX finds the same phone in the same context in other voices.
    test = SentenceCursor("test", scale.max_words)
    n_test = len(scale.test_speakers)
    half = (scale.test_utts + 1) // 2
    blocks = [test.take(half) for _ in range(n_test)]
    used_texts: set[str] = set()
    for k, spk in enumerate(scale.test_speakers):
        texts = blocks[k] + blocks[(k + 1) % n_test][: scale.test_utts - half]
        jobs = [Job("test", f"{spk}_{plan.new_id()}", text) for text in texts]
        plan.jobs.extend(jobs)
        # synthesis sources: the speaker's longest sentences not converted yet; voices alternate
        fresh = [j for j in jobs if j.text not in used_texts]
        for job in sorted(fresh, key=lambda j: (-len(j.text), j.utt_id))[: scale.synthesis_per_speaker]:
            voice = list(TARGET_VOICES)[len(plan.synthesis) % len(TARGET_VOICES)]
            plan.synthesis.append((job, voice))
            used_texts.add(job.text)
    for job, voice in plan.synthesis:   # the target voice's own rendering of each synthesis sentence
        plan.jobs.append(Job("reference", output_stem(job.utt_id, voice), job.text))
    return plan


def add_recorded(plan: Plan, unit: dict[str, list], test: dict[str, list], info: dict[str, dict]) -> None:
    """Add recorded speakers to a synthetic plan: ``unit``/``test`` map a speaker id to its
    recorded utterances (objects with ``text``), ``info`` a speaker to what the manifest says
    about it. Ids continue after the synthetic jobs; each real test speaker gets
    ``real_synthesis_per_speaker`` synthesis lines (its longest utterances, target voices continuing
    the alternation) and the target voice's rendering of each line as reference."""
    for split, speakers in (("train/unit", unit), ("test", test)):
        for spk, utterances in speakers.items():
            jobs = [Job(split, f"{spk}_{plan.new_id()}", utt.text) for utt in utterances]
            plan.jobs.extend(jobs)
            plan.recorded.update({job.key: utt for job, utt in zip(jobs, utterances)})
            plan.real_speakers[spk] = {**info[spk], "split": split}
            if split != "test":
                continue
            first = len(plan.synthesis)
            for job in sorted(jobs, key=lambda j: (-len(j.text), j.utt_id))[: plan.scale.real_synthesis_per_speaker]:
                voice = list(TARGET_VOICES)[len(plan.synthesis) % len(TARGET_VOICES)]
                plan.synthesis.append((job, voice))
            for job, voice in plan.synthesis[first:]:
                plan.jobs.append(Job("reference", output_stem(job.utt_id, voice), job.text))
