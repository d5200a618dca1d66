"""``report.md`` and PNG plots of ``zs2020 evaluate`` (tables of ABX, bitrate, speech measures)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.evaluation.abx import DISTANCES


def _fmt(value, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def abx_text(entry: dict | None) -> str:
    """One ABX cell: the error, or n/a when the number measures nothing (reason in the notes)."""
    if not entry:
        return "–"
    return "n/a" if entry.get("n/a") else _fmt(entry.get("error"))


def write_report(out: Path, scores: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    extras = scores["zs2020_extras"]
    lines = ["# zs2020 evaluation", ""]
    lines += [f"- warning: {w}" for w in extras.get("warnings", [])]
    for language, official in scores["2019"].items():
        ext = extras[language]
        declared = ext["abx"].get("test", {}).get(ext["declared_distance"])
        ratio = ext.get("abx_units_over_mfcc")
        lines += [f"## {language}", "",
                  f"Official scores: **ABX {abx_text(declared) if declared else _fmt(official['scores']['abx'])} %** "
                  f"({ext['declared_distance']}, declared in 2019/metadata.yaml)"
                  + (f", **{ratio:.2f} x the MFCC baseline** of this run" if ratio is not None else "")
                  + f", **bitrate {_fmt(official['scores']['bitrate'])} bits/s**. "
                  f"Items: {ext['item_kind']} ({ext['item_file'] or 'none: no ABX'}).", ""]
        lines += _abx_table(ext)
        lines += _kind_table(ext)
        lines += _na_notes(ext)
        lines += [f"- warning: {w}" for w in ext.get("warnings", [])]
        images = _plots(out, language, ext)
        lines += [""] + [f"![{name}]({name})" for name in images] + [""]
        if "speech" in ext:
            lines += _speech_table(ext["speech"])
        if "one_shot" in ext:
            lines += _one_shot_table(ext["one_shot"], language)
    (out / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _abx_table(ext: dict) -> list[str]:
    header = "| features | " + " | ".join(f"ABX {d} %" for d in DISTANCES) + " | bitrate bits/s | triplets |"
    rows = [header, "|" + "---|" * (len(DISTANCES) + 3)]
    for folder, res in ext["abx"].items():
        rate = ext["bitrate"].get(folder, {}).get("bitrate")
        triplets = next(iter(res.values()))["triplets"] if res else None
        rows.append(f"| {folder} | " + " | ".join(abx_text(res.get(d)) for d in DISTANCES)
                    + f" | {_fmt(rate)} | {triplets} |")
    for folder, rate in ext["bitrate"].items():
        if folder not in ext["abx"]:
            rows.append(f"| {folder} | " + " | ".join("–" for _ in DISTANCES) + f" | {_fmt(rate['bitrate'])} | – |")
    return rows + [""]


def _kind_table(ext: dict) -> list[str]:
    """ABX and converted speech per kind of test speaker (real recordings, synthetic voices)."""
    kinds = ext.get("by_speaker_kind")
    if not kinds:
        return []
    speech = (ext.get("speech") or {}).get("by_speaker_kind", {})
    folders = sorted({f for k in kinds.values() for f in k["abx"]})
    rows = ["### By kind of test speaker", "",
            "| speakers | " + " | ".join(f"ABX {f} %" for f in folders)
            + " | units SE | units x MFCC | lines | closer | CER | CER x sources' | DNSMOS | DNSMOS of sources |",
            "|" + "---|" * (len(folders) + 9)]
    for kind, k in kinds.items():
        s = speech.get(kind, {}).get("summary", {})
        rows.append(f"| {kind} ({len(k['speakers'])}) | " + " | ".join(_fmt(k["abx"].get(f)) for f in folders)
                    + f" | {_fmt(k.get('abx_units_se'))} | {_fmt(k['abx_units_over_mfcc'])} | "
                    + f"{speech.get(kind, {}).get('lines', 0)} | "
                    + " | ".join([_fmt(s.get("share_closer_to_target"), 2), _fmt(s.get("cer_converted"), 3),
                                  cer_ratio_text(s)] + [_fmt(s.get(key), 2) for key in ("dnsmos_converted", "dnsmos_source")])
                    + " |")
    return rows + [f"ABX at the declared distance ({next(iter(kinds.values()))['distance']}) over the triplets "
                   f"whose speakers are all of that kind. Units SE: the bootstrap standard error of the units' "
                   f"ABX over that kind's phone pairs; two systems closer than about twice it are not told apart "
                   f"by these items. CER x sources': the ratio of the mean CERs, with its 95 % bootstrap interval "
                   f"over the lines in brackets.", ""]


def cer_ratio_text(summary: dict) -> str:
    """``2.05 [1.71, 2.47]``: the CER ratio and its interval over lines (``–`` when not measured)."""
    text = _fmt(summary.get("cer_ratio"), 2)
    if summary.get("cer_ratio_low") is not None:
        text += f" [{summary['cer_ratio_low']:.2f}, {summary['cer_ratio_high']:.2f}]"
    return text


def _na_notes(ext: dict) -> list[str]:
    """Why a cell is n/a (its official value stays in scores.json ``details_abx``)."""
    notes = [f"- n/a: {folder}, {distance}: {entry['n/a']} (official value {entry['error']:.2f} %, kept in "
             f"details_abx)" for folder, res in ext["abx"].items() for distance, entry in res.items()
             if entry.get("n/a")]
    return notes + [""] if notes else []


def _speech_table(speech: dict) -> list[str]:
    if "skipped" in speech:
        return [f"Converted speech: skipped ({speech['skipped']}).", ""]
    s = speech["summary"]
    rows = [f"### Converted speech ({speech['lines']} of {speech['synthesis_lines']} synthesis lines)", "",
            "| measure | converted | reference (target voice) | source |", "|---|---|---|---|"]
    for label, key, digits in (("similarity to target voice", "sim_target", 3),
                               ("similarity to source speaker", "sim_source", 3),
                               ("ASR CER (pocketsphinx)", "cer", 3), ("ASR WER (pocketsphinx)", "wer", 3),
                               ("DNSMOS overall", "dnsmos", 2)):
        vals = [s.get(f"{key}_{kind}") for kind in ("converted", "reference", "source")]
        if any(v is not None for v in vals):
            rows.append(f"| {label} | " + " | ".join(_fmt(v, digits) for v in vals) + " |")
    if "mcd_converted" in s:
        rows.append(f"| MCD to reference, dB | {_fmt(s['mcd_converted'])} | 0 | {_fmt(s.get('mcd_source'))} |")
    if "share_closer_to_target" in s:
        rows += ["", f"Share of converted utterances closer to the target voice than to the source speaker: "
                     f"**{100 * s['share_closer_to_target']:.0f} %**."]
    return rows + [""]


def _one_shot_table(one_shot: dict, language: str) -> list[str]:
    if "skipped" in one_shot:
        return [f"One-shot conversion: skipped ({one_shot['skipped']}).", ""]
    s = one_shot["summary"]
    rows = [f"### One-shot conversion ({one_shot['trials']} test utterances, each in the voice of another test "
            f"speaker's utterance; {one_shot['vocoder_kind']} vocoder; wavs in one_shot/{language}/)", "",
            "| measure | converted | source (unconverted) |", "|---|---|---|"]
    for label, key, digits in (("similarity to reference speaker", "sim_reference", 3),
                               ("similarity to source speaker", "sim_source", 3),
                               ("ASR CER (pocketsphinx)", "cer", 3), ("ASR WER (pocketsphinx)", "wer", 3),
                               ("DNSMOS overall", "dnsmos", 2)):
        vals = [s.get(f"{key}_{kind}") for kind in ("converted", "source")]
        if any(v is not None for v in vals):
            rows.append(f"| {label} | " + " | ".join(_fmt(v, digits) for v in vals) + " |")
    if "share_closer_to_reference" in s:
        rows += ["", f"Share of one-shot conversions closer to the reference speaker than to the source speaker: "
                     f"**{100 * s['share_closer_to_reference']:.0f} %**."]
    return rows + [""]


def _plots(out: Path, language: str, ext: dict) -> list[str]:
    import matplotlib.pyplot as plt
    names = []
    if ext["abx"]:
        fig, ax = plt.subplots(figsize=(7, 3.5))
        folders = list(ext["abx"])
        width = 0.8 / max(1, len(DISTANCES))
        for k, d in enumerate(DISTANCES):
            vals = [np.nan if ext["abx"][f].get(d, {}).get("n/a") else ext["abx"][f].get(d, {}).get("error", np.nan)
                    for f in folders]
            ax.bar(np.arange(len(folders)) + k * width, vals, width, label=d)
        ax.set_xticks(np.arange(len(folders)) + width, folders, rotation=15, fontsize=8)
        ax.set_ylabel("ABX error %")
        ax.axhline(50, color="grey", lw=0.5, ls="--")
        ax.legend(fontsize=8)
        ax.set_title(f"{language}: ABX by features and distance")
        fig.tight_layout()
        names.append(f"abx_{language}.png")
        fig.savefig(out / names[-1], dpi=100)
        plt.close(fig)
    pairs = ext.get("abx_by_phone_pair", {}).get("test")
    if pairs:
        phones = sorted({p for key in pairs for p in key.split("-")})
        index = {p: i for i, p in enumerate(phones)}
        grid = np.full((len(phones), len(phones)), np.nan)
        for key, err in pairs.items():
            a, b = key.split("-")
            grid[index[a], index[b]] = err
        fig, ax = plt.subplots(figsize=(7, 6))
        im = ax.imshow(grid, cmap="viridis", vmin=0, vmax=max(50.0, float(np.nanmax(grid))))
        ax.set_xticks(range(len(phones)), phones, rotation=90, fontsize=6)
        ax.set_yticks(range(len(phones)), phones, fontsize=6)
        ax.set_xlabel("phone B")
        ax.set_ylabel("phone A = X")
        ax.set_title(f"{language} test/: ABX error % per phone pair ({ext['declared_distance']})")
        fig.colorbar(im, ax=ax)
        fig.tight_layout()
        names.append(f"abx_phone_pairs_{language}.png")
        fig.savefig(out / names[-1], dpi=100)
        plt.close(fig)
    rows = ext.get("speech", {}).get("per_line") or []
    if rows and "sim_target_converted" in rows[0]:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for key, label in (("sim_target_converted", "converted vs target"),
                           ("sim_source_converted", "converted vs source"),
                           ("sim_target_reference", "reference vs target")):
            vals = [r[key] for r in rows if key in r]
            if vals:
                ax.hist(vals, bins=20, range=(0, 1), alpha=0.5, label=label)
        ax.set_xlabel("resemblyzer cosine similarity")
        ax.set_ylabel("utterances")
        ax.legend(fontsize=8)
        fig.tight_layout()
        names.append(f"speaker_similarity_{language}.png")
        fig.savefig(out / names[-1], dpi=100)
        plt.close(fig)
    return names
