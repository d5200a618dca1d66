"""What ``zs2020 units`` computes, as plain data (tables and PNGs are drawn elsewhere): usage
and bitrate, phone alignment scores, speaker leakage, one utterance against its alignment, and
the unit sequences ``listen`` decodes. Every number comes from ``pipeline.units.analysis``."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from pipeline.contract.dataset import Segment, read_filelist
from pipeline.core.schema import MAX_CODES
from pipeline.core.errors import UserError
from pipeline.units import analysis as ua
from pipeline.units.source import EncodedUtterance, UnitSet

LISTEN_MAX_UNITS = 30_000     # 10 minutes of 20 ms units: bounds the decoder's memory


def stats_report(units: UnitSet, levels: Sequence[str]) -> dict:
    """Usage, perplexity, run length, bitrate and speaker divergence per level."""
    durations = [u.seconds for u in units.utterances]
    seconds = float(sum(durations))
    listed = bitrate_list_units(units)

    def _listed(level):
        return [getattr(u, level) for u, _ in listed], [d for _, d in listed]

    report = {"source": units.source, "utterances": len(units.utterances), "speakers": len(set(units.speakers())),
              "seconds": round(seconds, 3), "levels": {}}
    for level in levels:
        seqs = units.ids(level)
        size = units.codebook_sizes[level]
        counts = ua.pooled_histogram(seqs, size)
        frame_ms = 1000 * units.frame_seconds(level)
        run = ua.mean_run_length(seqs)
        divergence = ua.speaker_divergence(seqs, units.speakers(), size)
        report["levels"][level] = {
            "codebook_size": size,
            "codes_in_use": int((counts > 0).sum()),
            "perplexity": ua.perplexity(counts),
            "entropy_bits": ua.entropy_bits(counts),
            "frames": int(counts.sum()),
            "frame_ms": frame_ms,
            "mean_run_frames": run,
            "mean_unit_ms": run * frame_ms,
            "bitrate": ua.bitrate(seqs, durations),
            "bitrate_collapsed": ua.bitrate(seqs, durations, collapse=True),
            "bitrate_list": ua.bitrate(*_listed(level)) if listed else None,
            "bitrate_list_collapsed": ua.bitrate(*_listed(level), collapse=True) if listed else None,
            "speaker_js_mean": divergence["mean"],
            "speaker_js_max": divergence["max"],
            "speaker_js_max_speaker": divergence["argmax"],
        }
    return report


def bitrate_list_units(units: UnitSet) -> list[tuple[EncodedUtterance, float]]:
    """(utterance, listed duration) for the files of the dataset's bitrate file list that are in
    the set: the files and durations the official evaluator's bitrate uses. Empty without a list."""
    path = units.dataset.filelist("bitrate") if units.dataset is not None else None
    if path is None:
        return []
    durations = {Path(name).stem: dur for name, dur in read_filelist(path) if dur is not None}
    return [(u, durations[Path(u.key).name]) for u in units.utterances if Path(u.key).name in durations]


@dataclass
class PhoneTable:
    phones: list[str]
    table: np.ndarray        # (phones, units) counts
    unlabelled: int          # frames with no phone (past the alignment)


def phone_table(units: UnitSet, level: str, alignments: list | None = None) -> PhoneTable:
    alignments = units.alignments() if alignments is None else alignments
    frame_s = units.frame_seconds(level)
    labels, codes = [], []
    unlabelled = 0
    for utt, segs in zip(units.utterances, alignments):
        if not segs:
            continue
        ids = getattr(utt, level)
        for label, code in zip(ua.frame_labels([(s.onset, s.offset, s.phone) for s in segs], len(ids), frame_s), ids):
            if label is None:
                unlabelled += 1
            else:
                labels.append(label)
                codes.append(code)
    if not labels:
        raise UserError(f"{units.source}: no phone alignments for these utterances (only the demo corpus "
                        f"has alignments/; pass --dataset with the corpus the units came from)")
    phones = sorted(set(labels), key=lambda p: (p == "SIL", p))
    index = {p: i for i, p in enumerate(phones)}
    table = ua.contingency(np.array([index[p] for p in labels]), np.array(codes), len(phones),
                           units.codebook_sizes[level])
    return PhoneTable(phones, table, unlabelled)


def phones_report(units: UnitSet, levels: Sequence[str], draw: Callable | None = None) -> dict:
    """Purity, mutual information and NMI of units against phones, per level; ``draw(table,
    level, scores)`` may draw a heat map and return its path."""
    report = {"source": units.source, "levels": {}}
    alignments = units.alignments()
    for level in levels:
        pt = phone_table(units, level, alignments)
        t = pt.table
        entry = {
            "frames": int(t.sum()),
            "unlabelled_frames": pt.unlabelled,
            "phones": len(pt.phones),
            "units_used": int((t.sum(axis=0) > 0).sum()),
            "phone_purity": ua.phone_purity(t),
            "unit_purity": ua.unit_purity(t),
            "mutual_information_bits": ua.mutual_information(t),
            "phone_entropy_bits": ua.entropy_bits(t.sum(axis=1)),
            "nmi": ua.normalized_mutual_information(t),
            "pnmi": ua.phone_normalized_mutual_information(t),
        }
        if draw is not None:
            entry["heatmap"] = str(draw(pt, level, entry))
        report["levels"][level] = entry
    return report


def leakage_report(units: UnitSet, levels: Sequence[str], min_seconds: float, test_fraction: float,
                   seed: int) -> dict:
    kept = [u for u in units.utterances if u.seconds >= min_seconds]
    report = {"source": units.source, "min_seconds": min_seconds, "levels": {}}
    for level in levels:
        report["levels"][level] = ua.speaker_leakage([getattr(u, level) for u in kept], [u.speaker for u in kept],
                                                     units.codebook_sizes[level], test_fraction, seed)
    return report




def runs_text(ids: Sequence[int]) -> str:
    """``[12,12,12,40,7,7]`` -> ``12x3 40 7x2``."""
    ids = np.asarray(ids)
    out, start = [], 0
    for length in ua.run_lengths(ids):
        code = int(ids[start])
        out.append(f"{code}x{length}" if length > 1 else str(code))
        start += length
    return " ".join(out)


def show_report(utt: EncodedUtterance, segments: list[Segment] | None, hop_seconds: float) -> dict:
    """The utterance's units grouped by phone segment (or by bottom-unit run without alignment)."""
    b_stride = max(1, round(utt.num_frames / max(1, len(utt.bottom))))
    t_stride = max(1, round(utt.num_frames / max(1, len(utt.top))))
    b_sec, t_sec = b_stride * hop_seconds, t_stride * hop_seconds
    if segments:
        spans = [(s.onset, s.offset, s.phone) for s in segments]
    else:
        spans, start = [], 0
        for length in ua.run_lengths(utt.bottom):
            spans.append((start * b_sec, (start + length) * b_sec, None))
            start += length
    b_centres = (np.arange(len(utt.bottom)) + 0.5) * b_sec
    t_centres = (np.arange(len(utt.top)) + 0.5) * t_sec
    rows = []
    for onset, offset, phone in spans:
        rows.append({"onset": round(onset, 4), "offset": round(offset, 4), "phone": phone,
                     "bottom": utt.bottom[(b_centres >= onset) & (b_centres < offset)].tolist(),
                     "top": utt.top[(t_centres >= onset) & (t_centres < offset)].tolist()})
    return {"key": utt.key, "speaker": utt.speaker, "seconds": round(utt.seconds, 4),
            "bottom_frame_ms": 1000 * b_sec, "top_frame_ms": 1000 * t_sec, "aligned": bool(segments),
            "bottom": utt.bottom.tolist(), "top": utt.top.tolist(), "segments": rows}


def parse_unit_tokens(tokens: Sequence[str], what: str) -> list[int]:
    """``12 40x3 7`` -> [12, 40, 40, 40, 7] (also accepts commas)."""
    ids: list[int] = []
    for token in (t for raw in tokens for t in raw.replace(",", " ").split()):
        code, _, times = token.partition("x")
        try:
            code_i, times_i = int(code), int(times) if times else 1
        except ValueError:
            raise UserError(f"bad {what} {token!r}: expected an integer code, optionally CODExCOUNT") from None
        if not 0 <= code_i < MAX_CODES or times_i < 1:
            raise UserError(f"bad {what} {token!r}: codes are 0 to {MAX_CODES - 1} and counts >= 1")
        check_listen_length(len(ids) + times_i, f"{what}s")       # before the list is built: 3x1000000000
        ids.extend([code_i] * times_i)
    if not ids:
        raise UserError(f"no {what} given")
    return ids


def check_listen_length(count: int, what: str) -> None:
    """Refuse, before anything is allocated, more units than the decoder may take at a time."""
    if count > LISTEN_MAX_UNITS:
        raise UserError(f"{count} {what} to decode; at most {LISTEN_MAX_UNITS} (10 minutes of 20 ms units) "
                        f"at a time")


def listen_units(bottom: list[int], hold_ms: float | None, top: list[int] | None, sizes: dict,
                 cooc: Callable[[], np.ndarray], unit_ms: float) -> tuple[np.ndarray, np.ndarray]:
    """The (bottom, top) id arrays to decode: each bottom unit held ``hold_ms`` when given; top
    ids given (one id = held throughout) or chosen from co-occurrence counts (``cooc()``)."""
    frames = max(1, int(round(hold_ms / unit_ms))) if hold_ms is not None else 1
    check_listen_length(len(bottom) * frames, f"units (held {hold_ms:g} ms each)" if hold_ms else "units")
    bottom = [code for code in bottom for _ in range(frames)]
    b = np.asarray(bottom, dtype=np.int64)
    if b.max() >= sizes["bottom"]:
        raise UserError(f"bottom code {int(b.max())} is out of range: the codebook has {sizes['bottom']} codes")
    if "top" not in sizes:      # a single-level system decodes its bottom units alone
        if top:
            raise UserError("--top: this unit system has one level, no top codes")
        return b, np.zeros(0, dtype=np.int64)
    n_top = -(-len(b) // 2)
    if top:
        t = np.asarray(top * n_top if len(top) == 1 else top, dtype=np.int64)
        if len(t) != n_top:
            raise UserError(f"--top has {len(t)} ids; {len(b)} bottom units need {n_top} top ids (or give one)")
        if t.max() >= sizes["top"]:
            raise UserError(f"top code {int(t.max())} is out of range: the codebook has {sizes['top']} codes")
    else:
        t = ua.choose_top_codes(b, cooc())
    return b, t


