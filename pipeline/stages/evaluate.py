"""``zs2020 evaluate``: ABX, bitrate and converted-speech measures of a submission."""
from __future__ import annotations

from pathlib import Path

import click

from pipeline.contract.names import EVALUATOR_DISTANCES, LANGUAGES, METADATA_DISTANCE
from pipeline.evaluation.evaluate import evaluate_submission
from pipeline.stages.options import config_option, overrides_argument, run_config


def _distances(value: str) -> tuple[str, ...]:
    names = tuple(v.strip() for v in value.split(",") if v.strip())
    lookup = {d.lower(): d for d in EVALUATOR_DISTANCES} | dict(METADATA_DISTANCE)
    bad = [n for n in names if n.lower() not in lookup]
    if bad or not names:
        raise click.BadParameter(f"use a comma-separated subset of {','.join(EVALUATOR_DISTANCES)}")
    return tuple(dict.fromkeys(lookup[n.lower()] for n in names))


def _items(values: tuple[str, ...]) -> dict[str, Path]:
    """``--items [LANGUAGE=]PATH`` (repeatable; a bare PATH is English's) -> {language: path}."""
    out = {}
    for value in values:
        language, sep, path = value.partition("=")
        if not sep or language not in LANGUAGES:
            language, path = "english", value
        if language in out:
            raise click.BadParameter(f"two item files for {language}", param_hint="--items")
        out[language] = Path(path)
    return out


def summary_line(language: str, entry: dict, extras: dict) -> str:
    """``english: ABX 14.20 % (0.81 x MFCC), bitrate 420.00 bits/s`` (n/a when not a measurement)."""
    s = entry["scores"]
    declared = extras.get("abx", {}).get("test", {}).get(extras.get("declared_distance"), {})
    if s["abx"] is None:
        abx_text = "n/a"
    elif declared.get("n/a"):
        abx_text = f"n/a ({declared['n/a']})"
    else:
        ratio = extras.get("abx_units_over_mfcc")
        abx_text = f"{s['abx']:.2f} %" + (f" ({ratio:.2f} x the MFCC baseline)" if ratio is not None else "")
    rate_text = f"{s['bitrate']:.2f} bits/s" if s["bitrate"] is not None else "n/a"
    line = f"{language}: ABX {abx_text}, bitrate {rate_text}"
    kinds = [f"{kind} speakers {k['abx']['test']:.2f} %"
             + (f" +- {k['abx_units_se']:.2f}" if k.get("abx_units_se") is not None else "")
             + (f" ({k['abx_units_over_mfcc']:.2f} x MFCC)" if k["abx_units_over_mfcc"] is not None else "")
             for kind, k in extras.get("by_speaker_kind", {}).items() if k["abx"].get("test") is not None]
    return line + (f"; {', '.join(kinds)}" if kinds else "")


def speech_line(language: str, extras: dict) -> str | None:
    """``english converted speech: 95 % closer to the target, CER 0.34 (1.00 x the sources'), ...``,
    with the same per kind of source speaker when the dataset has both."""
    speech = extras.get("speech") or {}
    if "summary" not in speech:
        return None
    parts = [("all", speech["summary"])] + [(kind, k["summary"]) for kind, k in
                                            speech.get("by_speaker_kind", {}).items() if k["lines"]]

    def text(summary: dict) -> str:
        items = []
        if "share_closer_to_target" in summary:
            items.append(f"{100 * summary['share_closer_to_target']:.0f} % closer to the target")
        if "cer_converted" in summary:
            ratio = summary.get("cer_ratio")
            interval = (f", 95 % {summary['cer_ratio_low']:.2f}-{summary['cer_ratio_high']:.2f}"
                        if "cer_ratio_low" in summary else "")
            items.append(f"CER {summary['cer_converted']:.3f}" + (f" ({ratio:.2f} x the sources'{interval})" if ratio else ""))
        if "dnsmos_converted" in summary:
            items.append(f"DNSMOS {summary['dnsmos_converted']:.2f}"
                         + (f" (sources {summary['dnsmos_source']:.2f})" if "dnsmos_source" in summary else ""))
        return ", ".join(items)
    return f"{language} converted speech: " + "; ".join(f"{name}: {text(s)}" for name, s in parts)


@click.command("evaluate", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("submission", type=click.Path(path_type=Path))
@click.option("--dataset", "dataset_root", required=True, type=click.Path(path_type=Path),
              help="Dataset root holding 2019/<language>/ (the demo corpus or the real ZeroSpeech 2020 data).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Output folder for scores.json, report.md and plots [default: evaluation/ beside SUBMISSION].")
@click.option("--run", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run folder the submission came from: its stored config sets the evaluate: defaults, and "
                   "a vqmivc run gets the one-shot conversion measure [default: the folder holding SUBMISSION].")
@config_option(None)
@click.option("--jobs", type=click.IntRange(min=0), default=None,
              help="Parallel threads/processes [default: evaluate.jobs of the config; 0 = one per CPU].")
@click.option("--filelists", type=click.Path(path_type=Path), default=None,
              help="Folder with the official *_filelist.txt (share/2019/<language>); default: the dataset's lists/.")
@click.option("--distances", default=None,
              help="Comma-separated ABX distances among cosine,KL,levenshtein [default: evaluate.distances].")
@click.option("--no-speech", is_flag=True, help="Skip the converted-speech measures (similarity, ASR, MCD, DNSMOS).")
@click.option("--no-baselines", is_flag=True, help="Skip the MFCC and log-mel baseline ABX.")
@click.option("--item-kind", type=click.Choice(["excerpt", "long"]), default=None,
              help="excerpt: each excerpt file is one whole-file item (official); long: spans in seconds inside "
                   "the long test utterances [default: evaluate.item_kind].")
@click.option("--items", "items", multiple=True, metavar="[LANGUAGE=]PATH",
              help="ABX items: an ABXpy task file (.abx) or a 7-column item file (.item); a bare PATH is "
                   "English's [default: the dataset's 2019/ABXTasks/byCtxt_acSpkr.abx (surprise_byCtxt_acSpkr.abx), "
                   "else 2019/<language>/abx/test.item].")
@click.option("--html/--no-html", default=True, show_default=True,
              help="Also write the listening page OUT/index.html: every converted line beside its source and "
                   "target, measures, spectrograms, units; its wavs under OUT/listen/ (an up-to-date evaluation "
                   "without a page gets one, nothing re-scored).")
@click.option("--force", is_flag=True, help="Re-evaluate even when OUT/scores.json is up to date.")
@overrides_argument
def evaluate_command(submission, dataset_root, out, run, preset, jobs, filelists, distances, no_speech, no_baselines,
                     item_kind, items, html, force, overrides):
    """Score SUBMISSION (folder or zip): ABX (cosine, KL, levenshtein) and bitrate exactly as the
    official 2019 evaluation for test/ and auxiliary_embedding1/2, MFCC and log-mel baselines on
    the same items, and automatic measures of the converted wavs.

    The submission is validated first and refused when the validator refuses it. The units' ABX
    is also printed as a ratio to the MFCC baseline of the same run. OVERRIDES are key=value
    config settings, e.g. evaluate.speech.max_lines=10.
    """
    config = run_config(run or Path(submission).parent, preset, overrides)
    out = out or Path(submission).parent / "evaluation"
    scores = evaluate_submission(submission, dataset_root, out, config, force=force,
                                 log=lambda text: click.echo(text, err=True), run=run or Path(submission).parent,
                                 distances=_distances(distances) if distances else None, item_kind=item_kind,
                                 jobs=jobs, lists_dir=filelists, speech=False if no_speech else None,
                                 baselines=False if no_baselines else None, items=_items(items), html=html)
    for language, entry in scores["2019"].items():
        click.echo(summary_line(language, entry, scores["zs2020_extras"].get(language, {})))
        line = speech_line(language, scores["zs2020_extras"].get(language, {}))
        if line:
            click.echo(line)
    page = Path(out) / "index.html"
    click.echo(f"wrote {Path(out) / 'scores.json'} and {Path(out) / 'report.md'}"
               + (f"; listen: {page} (open it in a browser)" if html and page.is_file() else ""))
