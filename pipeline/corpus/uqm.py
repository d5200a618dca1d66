"""The Ur-Quan Masters' 3DO voice pack: which clips exist, what they say, and who says them.

Debian ships it as ``uqm-voice`` (the clips: ``uqm-0.8.0-voice.uqm``, a zip of Ogg Vorbis files,
mono 11025 Hz) and ``uqm-content`` (the game text: ``uqm-0.8.0-content.uqm``, a zip), both in
the component non-free. Licence: CC BY-NC-SA 2.5 (Toys for Bob).

* ``3dovoice/3dovoice.rmp`` names each race's dialogue file (in either zip) and clip folder.
* A dialogue file is a list of ``#(KEY) clip.ogg`` entries, each followed by the subtitle lines
  of that clip (entries without a clip are text the game prints between clips).
* The content's ``base/cutscene/credits/credits.txt`` lists the voice actors and their races.

Speakers are voice actors, not races. Only clean, credited, single-actor races are used: the
actors reserved for the project's blind test (``RESERVED_ACTORS``, races ``RESERVED_RACES``) are
excluded by actor and by race, as are heavily processed voices (``PROCESSED_RACES``), the
synthetic probe and uncredited races (whose actor could be a reserved one).
"""
from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from pipeline.core.errors import UserError

LICENCE = "CC BY-NC-SA 2.5"
SOURCE = "The Ur-Quan Masters 3DO voice pack (Toys for Bob; Debian uqm-voice, uqm-content, non-free)"
VOICE_ZIP = "usr/share/games/uqm/content/addons/uqm-0.8.0-voice.uqm"
CONTENT_ZIP = "usr/share/games/uqm/content/packages/uqm-0.8.0-content.uqm"
RMP = "3dovoice/3dovoice.rmp"
CREDITS = "base/cutscene/credits/credits.txt"

# Reserved for the project's blind test: never used for training, testing or tuning.
RESERVED_ACTORS = frozenset({"Madeleine Wild", "Lauren Forcella", "Bruce Leyland"})
RESERVED_RACES = frozenset({"syreen", "vux", "zoqfotpik", "supox", "yehat", "yehatrebels"})
# Pitched, robotic or reverberant voices (measured: pitch level and range, spectral flatness,
# formants against the actor's sex, aligner fit), and the probe, which is a TTS voice.
PROCESSED_RACES = frozenset({"arilou", "chmmr", "ilwrath", "kohrah", "mycon", "orz", "talkingpet", "umgah",
                             "urquan", "vux"})
SYNTHETIC_RACES = frozenset({"probe"})

# credits spelling (letters only, lower case) -> clip folder
CREDIT_RACES = {"ariloulaleelay": "arilou", "slylandrospeaker": "slylandro", "slylandroprobe": "probe"}
# races the credits do not name, voiced by the actor of another race
SAME_ACTOR_AS = {"yehatrebels": "yehat"}


def _norm_race(name: str) -> str:
    key = re.sub(r"[^a-z]", "", name.lower())
    return CREDIT_RACES.get(key, key)


def parse_credits(text: str) -> dict[str, tuple[str, ...]]:
    """race -> its credited voice actors, from the ``#(Voice actors, ...)`` sections, where each
    line is ``Actor<TAB>Race`` or ``<TAB>Race`` (the actor of the line above)."""
    races: dict[str, list[str]] = {}
    in_section, actor = False, None
    for line in text.splitlines():
        if line.startswith("#("):
            in_section, actor = line.lower().startswith("#(voice actors"), None
            continue
        if not in_section or "\t" not in line:
            continue
        who, _, race = line.partition("\t")
        if who.strip():
            actor = " ".join(who.split())
        if actor and race.strip():
            races.setdefault(_norm_race(race), []).append(actor)
    for race, other in SAME_ACTOR_AS.items():
        if race not in races and other in races:
            races[race] = list(races[other])
    return {race: tuple(actors) for race, actors in races.items()}


def parse_rmp(text: str) -> dict[str, str]:
    """race (clip folder) -> path of its dialogue file, from ``comm.<race>.dialogue =
    CONVERSATION:<dialogue>:<clip folder>:<timestamps>`` lines."""
    out = {}
    for line in text.splitlines():
        match = re.match(r"\s*comm\.\S+\.dialogue\s*=\s*CONVERSATION:([^:]+):([^:]+):", line)
        if match:
            folder = match.group(2).rstrip("/").rsplit("/", 1)[-1]
            out[folder] = match.group(1).strip()
    return out


def parse_dialogue(text: str) -> dict[str, str]:
    """clip file name -> its subtitle text (lines joined by single spaces)."""
    out: dict[str, str] = {}
    clip, lines = None, []
    for line in text.splitlines() + ["#()"]:
        match = re.match(r"#\((.*?)\)\s*(\S*)", line)
        if not match:
            lines.append(line)
            continue
        if clip:
            out[clip] = " ".join(" ".join(lines).split())
        clip, lines = match.group(2) or None, []
    return out


def is_reserved(race: str, actor: str | tuple[str, ...], clip: str = "") -> bool:
    """Whether anything of a reserved actor or race is involved (the clip name's race prefix is
    checked too, e.g. ``syreen-000.ogg``)."""
    actors = (actor,) if isinstance(actor, str) else tuple(actor)
    return (race in RESERVED_RACES or bool(set(actors) & RESERVED_ACTORS)
            or clip.split("-", 1)[0] in RESERVED_RACES)


def exclusion(race: str, actors: tuple[str, ...]) -> str | None:
    """Why a race's clips are not used, or None when they are."""
    if is_reserved(race, actors):
        return "reserved for the blind test"
    if race in SYNTHETIC_RACES:
        return "synthetic voice"
    if race in PROCESSED_RACES:
        return "heavily processed voice"
    if not actors:
        return "uncredited (the actor could be a reserved one)"
    if len(actors) > 1:
        return "several actors"
    return None


@dataclass(frozen=True)
class Clip:
    name: str            # e.g. starbase-007.ogg
    member: str          # path inside the voice zip
    race: str
    actor: str
    text: str


class VoicePack:
    """The two zips of an unpacked pair of .debs (``root`` holds ``usr/share/games/uqm``)."""

    def __init__(self, root: str | Path):
        self.root = root = Path(root)
        try:
            self.voice = zipfile.ZipFile(root / VOICE_ZIP)
            self.content = zipfile.ZipFile(root / CONTENT_ZIP)
        except (OSError, zipfile.BadZipFile) as exc:
            raise UserError(f"{root}: not an unpacked uqm-voice/uqm-content pair ({exc})") from None

    def read_text(self, path: str) -> str:
        """A text file by its game path (``addons/...`` lives in the voice pack)."""
        archive, member = (self.voice, path[len("addons/"):]) if path.startswith("addons/") else (self.content, path)
        return archive.read(member).decode("utf-8", errors="replace")

    def clips(self) -> tuple[list[Clip], dict[str, str]]:
        """Every usable clip with its text and actor (sorted by name), and the excluded races
        with the reason (races, not clips: nothing of an excluded race is read)."""
        credits = parse_credits(self.read_text(CREDITS))
        dialogues = parse_rmp(self.voice.read(RMP).decode("utf-8", errors="replace"))
        members: dict[str, list[str]] = {}
        for member in self.voice.namelist():
            if member.endswith(".ogg"):
                members.setdefault(member.split("/")[-2], []).append(member)
        out, excluded = [], {}
        for race in sorted(members):
            actors = credits.get(race, ())
            reason = exclusion(race, actors) if race in dialogues else "no dialogue file"
            if reason:
                excluded[race] = reason
                continue
            texts = parse_dialogue(self.read_text(dialogues[race]))
            for member in sorted(members[race]):
                name = member.rsplit("/", 1)[-1]
                if texts.get(name) and not is_reserved(race, actors, name):
                    out.append(Clip(name, member, race, actors[0], texts[name]))
        return out, excluded

    def read_clip(self, clip: Clip):
        """(float samples, rate) of one clip."""
        import io

        import soundfile as sf
        samples, rate = sf.read(io.BytesIO(self.voice.read(clip.member)), dtype="float64", always_2d=True)
        return samples.mean(axis=1), rate
