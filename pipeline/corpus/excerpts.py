"""ABX material of the demo corpus, in the style of the official ZeroSpeech 2019 test set.

Scored phones: every non-SIL phone of a long test utterance whose two neighbours are non-SIL.
Each scored phone gets a short excerpt file in ``test/`` spanning its triphone (previous phone's
onset to next phone's offset, like the official ~0.25 s stimuli), widened symmetrically to
``MIN_EXCERPT`` seconds when shorter. No further context is added, to match the official
stimuli: a model sees exactly what it would see on the real test set. The excerpt's samples are
an exact copy of that slice of the long utterance (no re-rendering), so the phone boundaries
carry over unchanged.

``abx/test.item``: one line per excerpt (span of the central phone inside the excerpt file);
``abx/test_long.item``: the same phones as spans inside the long utterances.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from pipeline.contract.items import item_file_text, item_line
from pipeline.contract.names import SAMPLE_RATE
from pipeline.corpus.phones import SNAP, Phone

MIN_EXCERPT = 0.088                          # seconds, the shortest official stimulus


@dataclass(frozen=True)
class Excerpt:
    source: str          # long utterance id
    speaker: str
    start: int           # slice of the long utterance, samples
    end: int
    phone: Phone         # central phone, samples inside the long utterance
    prev: str
    next: str
    token: str           # sentence + triphone + occurrence: the same for every reader of a sentence


def scored_phones(utt_id: str, phones: list[Phone], n_samples: int, text: str = "") -> list[Excerpt]:
    """Every scorable phone of one long utterance, with its excerpt span. ``text`` (the sentence)
    names each phone token so that two readers of one sentence get the same token names."""
    speaker = utt_id.split("_", 1)[0]
    min_len = int(round(MIN_EXCERPT * SAMPLE_RATE / SNAP)) * SNAP
    out = []
    seen: dict[tuple[str, str, str], int] = {}
    for prev, mid, nxt in zip(phones, phones[1:], phones[2:]):
        if "SIL" in (prev.phone, mid.phone, nxt.phone):
            continue
        triphone = (prev.phone, mid.phone, nxt.phone)
        seen[triphone] = seen.get(triphone, 0) + 1
        token = f"{text}|{' '.join(triphone)}|{seen[triphone]}"
        start, end = prev.start, nxt.end
        missing = min_len - (end - start)
        if missing > 0:           # widen symmetrically in whole ms, shifted to stay inside the utterance
            left = missing // SNAP // 2 * SNAP
            start, end = start - left, end + missing - left
            if start < 0:
                start, end = 0, end - start
            if end > n_samples:
                start, end = max(0, start - (end - n_samples)), n_samples
        out.append(Excerpt(utt_id, speaker, start, end, mid, prev.phone, nxt.phone, token))
    return out


def select(excerpts: list[Excerpt], limit: int) -> list[Excerpt]:
    """At most ``limit`` excerpts: a stable pseudo-random subset, returned in utterance order.
    Tokens are kept or dropped together across the readers of a sentence, so capping does not
    break up the across-speaker pairs."""
    if len(excerpts) <= limit:
        return list(excerpts)

    def rank(i: int) -> tuple[str, int]:
        return hashlib.md5(excerpts[i].token.encode()).hexdigest(), i
    chosen = set(sorted(range(len(excerpts)), key=rank)[:limit])
    return [e for i, e in enumerate(excerpts) if i in chosen]


def excerpt_alignment(excerpt: Excerpt, phones: list[Phone]) -> list[Phone]:
    """The long utterance's phones clipped to the excerpt and shifted to start at 0."""
    out = []
    for p in phones:
        start, end = max(p.start, excerpt.start), min(p.end, excerpt.end)
        if end > start:
            out.append(Phone(start - excerpt.start, end - excerpt.start, p.phone, p.raw))
    return out


def _line(file: str, onset: int, offset: int, excerpt: Excerpt) -> str:
    return item_line(file, onset, offset, excerpt.phone.phone, excerpt.prev, excerpt.next, excerpt.speaker)


def item_files(named: list[tuple[str, Excerpt]]) -> tuple[str, str]:
    """(test.item, test_long.item) texts for excerpts named ``<SPK>_<id>``."""
    short = [_line(name, e.phone.start - e.start, e.phone.end - e.start, e) for name, e in named]
    long = [_line(e.source, e.phone.start, e.phone.end, e) for _, e in named]
    return item_file_text(short), item_file_text(long)
