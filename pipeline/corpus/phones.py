"""Phone labels and alignments of the demo corpus.

Every engine's raw phone symbols are folded into one 40-label set, CMU 39 + SIL (the
pocketsphinx/CMUdict set), and raw engine timings are turned into contiguous segments that start
at 0 and end exactly at the wav's duration, with boundaries snapped to whole milliseconds
(``SNAP`` samples) so that alignments, excerpt cuts and item spans are exact decimal numbers.
"""
from __future__ import annotations

from dataclasses import dataclass

from pipeline.contract.names import SAMPLE_RATE

SNAP = 16                       # samples per millisecond at 16 kHz

CMU39 = ("AA AE AH AO AW AY B CH D DH EH ER EY F G HH IH IY JH K L M N NG OW OY P R S SH T TH "
         "UH UW V W Y Z ZH").split()
PHONES = tuple(CMU39) + ("SIL",)

# flite (cmu set) and festival (radio set): upper-case the symbol, except these.
FLITE_FESTIVAL_MAP = {"pau": "SIL", "h#": "SIL", "brth": "SIL", "ax": "AH", "axr": "ER", "el": "L",
                      "em": "M", "en": "N", "nx": "N", "dx": "D", "hv": "HH"}

# espeak-ng English phoneme mnemonics (all 8 accents) -> CMU 39.
ESPEAK_MAP = {
    "@": "AH", "@2": "AH", "@5": "AH", "@L": "L", "@-": "AH", "3": "ER", "3:": "ER", "a": "AE",
    "a#": "AH", "aa": "AE", "A:": "AA", "A@": "AA", "A": "AA", "0": "AA", "V": "AH", "E": "EH",
    "e": "EY", "eI": "EY", "e@": "EH", "I": "IH", "I2": "IH", "I#": "IH", "i": "IY", "i:": "IY",
    "i@": "IY", "i@3": "IY", "O": "AO", "O:": "AO", "O@": "AO", "o@": "AO", "OI": "OY", "oU": "OW",
    "o": "OW", "O2": "AO", "u:": "UW", "u": "UW", "U": "UH", "U@": "UH", "aI": "AY", "aI@": "AY",
    "aI3": "AY", "aU": "AW", "aU@": "AW", "IR": "ER", "VR": "ER", "@r": "ER", "3r": "ER", "a2": "AE",
    "ai": "AY", "EI": "EY", "EU": "OW", "Ou": "OW", "oI": "OY", "p": "P", "b": "B", "t": "T",
    "d": "D", "k": "K", "g": "G", "f": "F", "v": "V", "T": "TH", "D": "DH", "s": "S", "z": "Z",
    "S": "SH", "Z": "ZH", "h": "HH", "m": "M", "n": "N", "N": "NG", "l": "L", "r": "R", "j": "Y",
    "w": "W", "tS": "CH", "dZ": "JH", "t#": "T", "d#": "D", "n-": "N", "l-": "L", "m-": "M",
    "r-": "R", "?": "T", "x": "HH", "l/": "L", "l#": "L", "t2": "T", "d2": "D", "z/2": "Z",
    "s2": "S", "z2": "Z", "hw": "W", "W": "W", "w#": "W", "t[": "T", "d[": "D", "aI2": "AY",
    "n[": "N", "l[": "L",
}
_ESPEAK_STRESS = "',%="


def canonical_flite(symbol: str) -> str:
    phone = FLITE_FESTIVAL_MAP.get(symbol, symbol.upper())
    if phone not in PHONES:
        raise ValueError(f"unknown flite/festival phone {symbol!r}")
    return phone


def canonical_espeak(symbol: str) -> str:
    if symbol.startswith("_") or symbol in ("|", "||", ""):
        return "SIL"
    bare = symbol.strip(_ESPEAK_STRESS)
    for candidate in (bare, bare.rstrip(":")):
        if candidate in ESPEAK_MAP:
            return ESPEAK_MAP[candidate]
    raise ValueError(f"unknown espeak-ng phoneme {symbol!r}")


def canonical_pocketsphinx(symbol: str) -> str:
    """pocketsphinx (en-us model) already labels phones in CMU 39 + SIL; fillers are refused."""
    if symbol not in PHONES:
        raise ValueError(f"unknown pocketsphinx phone {symbol!r}")
    return symbol


@dataclass(frozen=True)
class Phone:
    """One aligned phone in samples: [start, end)."""
    start: int
    end: int
    phone: str
    raw: str


def finalize(phones: list[Phone], n_samples: int) -> list[Phone]:
    """Contiguous, millisecond-snapped segments covering exactly [0, n_samples).

    Engines disagree with their own waves at the edges (flite diphone voices truncate the wave
    about 0.12 s before the last ``pau`` ends), so everything is clipped to the wave; segments
    that vanish after snapping are dropped, and adjacent SILs merged.
    """
    out: list[Phone] = []
    for ph in phones:
        start = min(n_samples, round(ph.start / SNAP) * SNAP)
        end = min(n_samples, round(ph.end / SNAP) * SNAP)
        if out:
            start = out[-1].end
        else:
            start = 0
        if end <= start:
            continue
        if out and out[-1].phone == "SIL" and ph.phone == "SIL":
            out[-1] = Phone(out[-1].start, end, "SIL", out[-1].raw)
        else:
            out.append(Phone(start, end, ph.phone, ph.raw))
    if not out:
        return [Phone(0, n_samples, "SIL", "pau")]
    last = out[-1]
    if last.end < n_samples:            # stretch the final segment (or add silence) to the end
        if last.phone == "SIL":
            out[-1] = Phone(last.start, n_samples, "SIL", last.raw)
        else:
            out.append(Phone(last.end, n_samples, "SIL", "pau"))
    return out


def format_alignment(phones: list[Phone]) -> str:
    """``onset offset PHONE raw`` lines in seconds (exact: every boundary is a whole millisecond,
    the wavs themselves are trimmed to whole milliseconds)."""
    return "".join(f"{p.start / SAMPLE_RATE:.6f} {p.end / SAMPLE_RATE:.6f} {p.phone} {p.raw}\n"
                   for p in phones)
