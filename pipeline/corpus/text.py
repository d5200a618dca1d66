"""Sentences for the demo corpus: Ambrose Bierce, *The Devil's Dictionary* (1911, public domain),
as shipped by the Debian package ``dict-devil``.

Only plain prose sentences are kept (no verse, digits, acronyms, initials or quotes; 4-25 words),
and each sentence is assigned to one pool by a stable md5 bucket, so that training, parallel and
test sentences are disjoint by construction and the assignment never depends on the scale.
"""
from __future__ import annotations

import gzip
import hashlib
import re
from functools import lru_cache
from pathlib import Path

from pipeline.core.errors import UserError

DICT_PATH = Path("/usr/share/dictd/devil.dict.dz")
FIRST_ENTRY = "ABASEMENT, n."          # everything before it is the preface
MIN_WORDS, MAX_WORDS = 4, 25

# md5 bucket (0-99) -> pool. 0-19 are held back unused (so a future need has unseen text).
POOLS = {"reserved": range(0, 20), "test": range(20, 38), "parallel": range(38, 46), "train": range(46, 100)}

_HEADWORD = re.compile(r"^[A-Z][A-Z'\- ]*[A-Z](?:, [a-z.]+(?: and [a-z.]+)?)?\.?\s+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_PLAIN = re.compile(r"[A-Z][A-Za-z ,;'-]*[.!?]")


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def _is_plain(sentence: str) -> bool:
    if "--" in sentence or not _PLAIN.fullmatch(sentence):
        return False
    words = sentence.split()
    if not MIN_WORDS <= len(words) <= MAX_WORDS:
        return False
    for word in words:
        core = word.strip(",;.!?'")
        if len(core) > 1 and core.isupper():                 # acronym
            return False
        if re.fullmatch(r"[A-Z]\.?", core) and core != "A":  # initial
            return False
    # apostrophes only as possessive 's or n't (anything else is a quotation mark)
    return "'" not in sentence.replace("'s ", " ").replace("'s,", ",").replace("n't", "nt")


@lru_cache(maxsize=1)
def all_sentences() -> tuple[str, ...]:
    """Every usable sentence, unique, in dictionary order."""
    if not DICT_PATH.is_file():
        raise UserError(f"{DICT_PATH} is missing: install the Debian package dict-devil "
                        "(scripts/install_system_deps.sh)")
    with gzip.open(DICT_PATH, "rt", encoding="utf-8", errors="replace") as fh:
        text = fh.read()
    text = text[text.find(FIRST_ENTRY):]
    seen, out = set(), []
    for para in re.split(r"\n\s*\n", text):
        if not para or para[0].isspace():       # indented paragraphs are verse or quotations
            continue
        match = _HEADWORD.match(para)
        body = " ".join(para[match.end():].split() if match else para.split())
        for sentence in _SENTENCE_END.split(body):
            sentence = sentence.strip()
            if _is_plain(sentence) and sentence not in seen:
                seen.add(sentence)
                out.append(sentence)
    return tuple(out)


@lru_cache(maxsize=None)
def pool(name: str) -> tuple[str, ...]:
    """The sentences of one pool (train, parallel, test), in a stable pseudo-random order."""
    buckets = POOLS[name]
    chosen = [s for s in all_sentences() if int(_md5(s), 16) % 100 in buckets]
    return tuple(sorted(chosen, key=_md5))


class SentenceCursor:
    """Hands out sentences of one pool in order, wrapping around when the pool is exhausted.
    ``max_words`` restricts to short sentences (the tiny scale, so that tests stay fast)."""

    def __init__(self, name: str, max_words: int | None = None):
        sentences = pool(name)
        if max_words is not None:
            sentences = tuple(s for s in sentences if len(s.split()) <= max_words)
        self.sentences = sentences
        self.position = 0

    def take(self, n: int) -> list[str]:
        out = [self.sentences[(self.position + i) % len(self.sentences)] for i in range(n)]
        self.position += n
        return out
