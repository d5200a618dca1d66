"""Offline speech engines for the demo corpus (flite, festival, espeak-ng) and the sox
post-processing that turns each engine's output into a 16 kHz pseudo-speaker recording.

A pseudo-speaker is a ``Voice``: an engine voice plus perturbations. F0 and tempo are set
inside the engine (so the engine's own phone timings follow them); the vocal-tract factor is
sox ``speed`` (resampling: formants, F0 and tempo all scale by the factor), so times are divided
by it exactly. Every render returns phone timings in samples of the final 16 kHz wav.

Reproducibility: sox runs with ``-R`` (repeatable dither); espeak-ng output depends on what the
process synthesized before, so callers run every chunk in a fresh process. espeak-ng also draws
the breath noise of some variants (f2, f3, f5) and the Klatt voices' noise from the C library's
``rand()``, whose state belongs to the whole process: the engine re-seeds it when it starts.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf

from pipeline.contract.names import SAMPLE_RATE
from pipeline.core.errors import UserError
from pipeline.corpus.phones import SNAP, Phone, canonical_espeak, canonical_flite, finalize

INSTALL_HINT = "scripts/install_system_deps.sh"
FESTIVAL_VOICES = {  # festival voice -> (scheme selector, Debian package)
    "kal": ("voice_kal_diphone", "festvox-kallpc16k"),
    "ked": ("voice_ked_diphone", "festvox-kdlpc16k"),
    "slt_hts": ("voice_cmu_us_slt_arctic_hts", "festvox-us-slt-hts"),
}
FESTIVAL_VOICE_DIRS = {"kal": "english/kal_diphone", "ked": "english/ked_diphone",
                       "slt_hts": "us/cmu_us_slt_arctic_hts"}
FLITE_VOICES = ("kal16", "awb", "rms", "slt")
ESPEAK_PAD = 0.15       # espeak-ng output has no leading/trailing silence: pad it (seconds)
ESPEAK_DATA_DIRS = ("/usr/lib/x86_64-linux-gnu/espeak-ng-data", "/usr/lib/aarch64-linux-gnu/espeak-ng-data",
                    "/usr/share/espeak-ng-data")


@dataclass(frozen=True)
class Voice:
    """One pseudo-speaker. ``f0`` and ``tempo`` are factors (1 = the engine's default);
    ``speed`` is the sox vocal-tract factor; espeak uses ``variant`` (accent+variant name),
    ``pitch`` (0-100) and ``rate`` (words per minute) instead of ``f0``/``tempo``."""
    engine: str                 # flite | festival | espeak
    name: str                   # flite voice, festival voice key, or espeak "en-us+m3"
    f0: float = 1.0
    tempo: float = 1.0          # duration stretch (>1 = slower)
    speed: float = 1.0
    pitch: int = 50
    rate: int = 165

    def describe(self) -> str:
        if self.engine == "espeak":
            return f"espeak:{self.name} pitch={self.pitch} rate={self.rate} speed={self.speed:g}"
        return f"{self.engine}:{self.name} f0={self.f0:g} tempo={self.tempo:g} speed={self.speed:g}"


@dataclass(frozen=True)
class Rendered:
    samples: np.ndarray          # int16, 16 kHz
    phones: list[Phone]


# ---------------------------------------------------------------------------------- availability
def check_engines(voices) -> None:
    """One-line UserError naming the Debian package when an engine or voice is missing."""
    needed = {("sox", "sox")}
    for v in voices:
        if v.engine == "flite":
            needed.add(("flite", "flite"))
        elif v.engine == "festival":
            needed.add(("festival", "festival"))
            base = Path("/usr/share/festival/voices") / FESTIVAL_VOICE_DIRS[v.name]
            if not base.is_dir():
                raise UserError(f"festival voice {v.name} is missing: install the Debian package "
                                f"{FESTIVAL_VOICES[v.name][1]} ({INSTALL_HINT})")
        elif v.engine == "espeak":
            _espeak_library()
    for program, package in sorted(needed):
        if shutil.which(program) is None:
            raise UserError(f"{program} is not installed: install the Debian package {package} ({INSTALL_HINT})")


# ---------------------------------------------------------------------------------- sox
def _sox_to_16k(src: Path, dst: Path, speed: float, pad: float) -> np.ndarray:
    """Gain down first (slt_hts is near full scale at 32 kHz), resample, pad, normalise."""
    cmd = ["sox", "-R", "-V1", str(src), "-b", "16", "-c", "1", str(dst), "gain", "-6"]
    if speed != 1.0:
        cmd += ["speed", f"{speed:.6g}"]
    cmd += ["rate", "-v", str(SAMPLE_RATE)]
    if pad > 0:
        cmd += ["pad", f"{pad:g}", f"{pad:g}"]
    cmd += ["norm", "-3"]
    subprocess.run(cmd, check=True, capture_output=True)
    samples, rate = sf.read(str(dst), dtype="int16")
    assert rate == SAMPLE_RATE
    return samples[: len(samples) // SNAP * SNAP]      # whole milliseconds: exact time stamps


def _intervals_from_ends(ends: list[tuple[str, float]]) -> list[tuple[str, float, float]]:
    """flite and festival report each phone's end time; the first phone starts at 0."""
    starts = [0.0] + [end for _, end in ends[:-1]]
    return [(sym, t0, end) for (sym, end), t0 in zip(ends, starts)]


def _finish(raw_wav: Path, work: Path, intervals: list[tuple[str, float, float]], phone_map, voice: Voice,
            pad: float = 0.0) -> Rendered:
    """Post-process one engine output: ``intervals`` = (raw symbol, start s, end s) in the
    engine's time; the result is in samples of the padded, speed-changed 16 kHz wav."""
    samples = _sox_to_16k(raw_wav, work / "out.wav", voice.speed, pad)
    scale = SAMPLE_RATE / voice.speed
    offset = pad * SAMPLE_RATE
    phones = [Phone(0, round(offset), "SIL", "_")] if pad > 0 else []
    for sym, t0, t1 in intervals:
        phones.append(Phone(round(offset + t0 * scale), round(offset + t1 * scale), phone_map(sym), sym))
    return Rendered(samples, finalize(phones, len(samples)))


# ---------------------------------------------------------------------------------- flite
def _render_flite(voice: Voice, texts: list[str], work: Path) -> list[Rendered]:
    out = []
    for text in texts:
        raw = work / "flite.wav"
        cmd = ["flite", "-voice", voice.name, "--setf", f"duration_stretch={voice.tempo:.6g}"]
        if voice.f0 != 1.0:
            cmd += ["--setf", f"f0_shift={voice.f0:.6g}"]
        cmd += ["-t", text, "-o", str(raw), "-psdur"]
        result = subprocess.run(cmd, check=True, capture_output=True, text=True)
        ends = []
        for token in result.stdout.split():
            sym, _, end = token.rpartition(":")
            ends.append((sym, float(end)))
        if not ends:
            raise RuntimeError(f"flite printed no phone timings for {text!r}")
        out.append(_finish(raw, work, _intervals_from_ends(ends), canonical_flite, voice))
    return out


# ---------------------------------------------------------------------------------- festival
def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _render_festival(voice: Voice, texts: list[str], work: Path) -> list[Rendered]:
    """One festival process for the whole chunk (its start-up costs about a second)."""
    selector = FESTIVAL_VOICES[voice.name][0]
    lines = [
        "(define (synth_one outbase text)",
        "  (let ((utt (utt.synth (eval (list 'Utterance 'Text text)))))",   # Utterance is a special form
        '    (utt.save.segs utt (string-append outbase ".segs"))',
        "    (utt.save.wave utt (string-append outbase \".wav\") 'riff)))",
        f"({selector})",
    ]
    if voice.tempo != 1.0:   # diphone voices already set Duration_Stretch 1.1: multiply it
        lines.append(f"(Parameter.set 'Duration_Stretch (* {voice.tempo:.6g} (Parameter.get 'Duration_Stretch)))")
    if voice.f0 != 1.0:
        if voice.name == "slt_hts":
            raise ValueError("festival slt_hts ignores F0 settings")
        lines.append(f"(set! int_lr_params (list '(target_f0_mean {105 * voice.f0:.1f}) '(target_f0_std "
                     f"{15 * voice.f0:.1f}) '(model_f0_mean 170) '(model_f0_std 34)))")
    for i, text in enumerate(texts):
        lines.append(f'(synth_one "{work}/u{i}" {_scheme_string(text)})')
    script = work / "gen.scm"
    script.write_text("\n".join(lines) + "\n", encoding="utf-8")
    subprocess.run(["festival", "-b", str(script)], check=True, capture_output=True)
    out = []
    for i in range(len(texts)):
        ends = []
        for line in (work / f"u{i}.segs").read_text().splitlines():
            parts = line.split()
            if len(parts) == 3:
                ends.append((parts[2], float(parts[0])))
        out.append(_finish(work / f"u{i}.wav", work, _intervals_from_ends(ends), canonical_flite, voice))
    return out


# ---------------------------------------------------------------------------------- espeak-ng
class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", _EventId)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))
_EVENT_PHONEME = 7
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 1
_PARAM_RATE, _PARAM_PITCH = 1, 3
_CHARS_UTF8 = 1
_RAND_SEED = 1          # glibc's rand() state at process start


@lru_cache(maxsize=1)
def _espeak_library():
    name = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
    try:
        return ctypes.CDLL(name)
    except OSError:
        raise UserError(f"libespeak-ng is not installed: install the Debian packages espeak-ng libespeak-ng1 "
                        f"({INSTALL_HINT})") from None


def espeak_variant_exists(variant: str) -> bool:
    """espeak-ng silently falls back to the default voice for unknown (case-sensitive) variants."""
    return any((Path(d) / "voices" / "!v" / variant).is_file() for d in ESPEAK_DATA_DIRS)


class _Espeak:
    """libespeak-ng through ctypes, with phoneme events (the CLI prints no timings)."""

    def __init__(self):
        self.lib = _espeak_library()
        self.chunks: list[np.ndarray] = []
        self.events: list[tuple[int, str]] = []
        self._callback = _CALLBACK(self._on_audio)       # keep a reference: C holds the pointer
        self.rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, None, _INITIALIZE_PHONEME_EVENTS)
        if self.rate <= 0:
            raise RuntimeError("espeak_Initialize failed")
        self.lib.espeak_SetSynthCallback(self._callback)
        # Whatever called rand() before must not change the noise. It happens: libespeak-ng probes
        # PulseAudio in espeak_Initialize, and libpulse names a new runtime folder
        # (/tmp/pulse-XXXXXXXXXXXX) with rand() on a machine that has none yet, so the first espeak
        # chunk of the first build on a machine sounded different. Seed 1 is the state every clean
        # process starts from: the output is that of an undisturbed process.
        ctypes.CDLL(None).srand(_RAND_SEED)

    def _on_audio(self, wav, n, events):
        if wav and n > 0:
            self.chunks.append(np.ctypeslib.as_array(wav, (n,)).copy())
        i = 0
        while events[i].type != 0:
            if events[i].type == _EVENT_PHONEME:
                self.events.append((events[i].sample, events[i].id.string.decode("ascii", "replace")))
            i += 1
        return 0

    def set_voice(self, voice: Voice) -> None:
        accent, _, variant = voice.name.partition("+")
        if variant and not espeak_variant_exists(variant):
            raise ValueError(f"espeak-ng variant {variant!r} does not exist")
        if self.lib.espeak_SetVoiceByName(voice.name.encode()) != 0:
            raise ValueError(f"espeak-ng voice {voice.name!r} does not exist")
        self.lib.espeak_SetParameter(_PARAM_RATE, voice.rate, 0)
        self.lib.espeak_SetParameter(_PARAM_PITCH, voice.pitch, 0)

    def synth(self, text: str) -> tuple[np.ndarray, list[tuple[int, str]]]:
        self.chunks, self.events = [], []
        data = text.encode("utf-8")
        self.lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, _CHARS_UTF8, None, None)
        return np.concatenate(self.chunks), list(self.events)


def _espeak_segments(events: list[tuple[int, str]], n: int, rate: int) -> list[tuple[str, float, float]]:
    """Phoneme start events (sample, symbol) of an ``n``-sample wave -> (symbol, start s, end s).

    Quirks handled: the ``;`` pseudo-phoneme (a linking glide) is absorbed into the previous
    phone; a zero-length post-vocalic /l/ (merged into the vowel by espeak) takes the last 35 %
    of the preceding phone. Other zero-length events vanish in ``finalize``.
    """
    starts = sorted(([s, sym] for s, sym in events if sym != ";"), key=lambda e: e[0])
    if not starts or starts[0][0] > 0:
        starts.insert(0, [0, "_"])
    starts.append([n, "_"])
    for i in range(1, len(starts) - 1):
        zero_length = starts[i][0] >= starts[i + 1][0]
        if zero_length and canonical_espeak(starts[i][1]) == "L":
            prev_start = starts[i - 1][0]
            starts[i][0] = prev_start + int(round(0.65 * (starts[i][0] - prev_start)))
    return [(sym, s0 / rate, s1 / rate) for (s0, sym), (s1, _) in zip(starts, starts[1:])]


def _render_espeak(voice: Voice, texts: list[str], work: Path) -> list[Rendered]:
    engine = _Espeak()
    engine.set_voice(voice)
    out = []
    for text in texts:
        audio, events = engine.synth(text)
        raw = work / "espeak.wav"
        sf.write(str(raw), audio, engine.rate, subtype="PCM_16")
        marks = _espeak_segments(events, len(audio), engine.rate)
        out.append(_finish(raw, work, marks, canonical_espeak, voice, pad=ESPEAK_PAD))
    return out


# ---------------------------------------------------------------------------------- entry point
_RENDERERS = {"flite": _render_flite, "festival": _render_festival, "espeak": _render_espeak}


def render(voice: Voice, texts: list[str]) -> list[Rendered]:
    """Render sentences in one voice (one engine process for festival; call once per process for
    espeak-ng to keep results independent of earlier calls)."""
    with tempfile.TemporaryDirectory(prefix="zs2020-tts-") as tmp:
        return _RENDERERS[voice.engine](voice, texts, Path(tmp))
