"""``zs2020 units``: look inside the discovered units from the command line.

Sub-commands: ``stats`` (usage, perplexity, run length, bitrate, speaker divergence), ``phones``
(purity and NMI against phone alignments, heat map), ``leakage`` (speaker identity predicted
from code histograms), ``plot`` (PCA of the codebooks coloured by majority phone), ``show``
(one utterance's units against its alignment) and ``listen`` (synthesise a unit sequence in a
target voice). Units come from ``--run RUN`` (encoded and cached, ``pipeline.units.source``) or
``--encoded DIR``; numbers come from ``pipeline.units.reports``, pictures from
``pipeline.units.plots``; this module formats tables and JSON.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import click
import numpy as np

from pipeline.contract.dataset import Dataset, Segment, Utterance
from pipeline.contract.names import ALL_SPLITS, LANGUAGES
from pipeline.core.audio import write_wav
from pipeline.core.errors import UserError
from pipeline.core.layout import RunLayout
from pipeline.core.outputs import Input, claim_folder, is_own_folder, write_marker
from pipeline.core.runtime import set_threads
from pipeline.features import logmel
from pipeline.systems.converter import Converter
from pipeline.units import analysis as ua
from pipeline.units import plots
from pipeline.units.reports import (leakage_report, listen_units, parse_unit_tokens, phone_table, phones_report,
                                    runs_text, show_report, stats_report)
from pipeline.units.source import (LEVELS, EncodedUtterance, UnitSet, codebook_sizes, codebook_vectors, encode_splits,
                                   load_system, read_encoded_folder, read_npz_units)

# Units from an npz folder carry no feature spec: their frames are taken as the standard 10 ms.
NPZ_HOP_SECONDS = 0.01


# ------------------------------------------------------------------------------- formatting
def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1000 else f"{value:.1f}"
    return "-" if value is None else str(value)


def table_text(rows: list[list], headers: list[str]) -> str:
    cells = [[str(h) for h in headers]] + [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def level_table(report: dict, rows: list[tuple[str, str]]) -> str:
    """One row per measure, one column per level."""
    levels = list(report["levels"])
    return table_text([[label] + [report["levels"][lv].get(key) for lv in levels] for key, label in rows],
                      ["measure"] + levels)


def emit(report: dict, as_json: bool, text: Callable[[dict], str]) -> None:
    click.echo(json.dumps(report, indent=2, default=_json_default) if as_json else text(report))


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)




# ------------------------------------------------------------------------------- options
def _levels(level: str, units: UnitSet) -> tuple[str, ...]:
    """The --level choice among the levels the units have (a VQMIVC has bottom only)."""
    present = tuple(lv for lv in LEVELS if lv in units.codebook_sizes)
    if level == "both":
        return present
    if level not in present:
        raise UserError(f"--level {level}: these units have only the {' and '.join(present)} level")
    return (level,)


def _splits(text: str) -> list[str]:
    splits = [s.strip() for s in text.split(",") if s.strip()]
    for s in splits:
        if s not in ALL_SPLITS:
            raise UserError(f"unknown split {s!r} in --splits: use some of {', '.join(ALL_SPLITS)}")
    if not splits:
        raise UserError("--splits is empty")
    return splits


def _open_dataset(root: str, language: str, required: bool) -> Dataset | None:
    if not required and not Path(root).is_dir():
        return None
    return Dataset(root, language)


def load_unit_set(opts: dict, default_splits: str) -> UnitSet:
    """Resolve the common options into a UnitSet."""
    if bool(opts["run"]) == bool(opts["encoded"]):
        raise UserError("give exactly one of --run RUN or --encoded DIR")
    if opts["run"]:
        dataset = _open_dataset(opts["dataset"], opts["language"], required=True)
        splits = _splits(opts["splits"] or default_splits)
        present = [s for s in splits if dataset.has_split(s)]
        if not present:
            raise UserError(f"{dataset.lang_dir}: none of the splits {', '.join(splits)} has wavs")
        return encode_splits(Path(opts["run"]), dataset, present, opts["device"], opts["force"])
    dataset = _open_dataset(opts["dataset"], opts["language"], required=False)
    return read_encoded_folder(Path(opts["encoded"]), NPZ_HOP_SECONDS, dataset)


def _out_dir(opts: dict) -> Path:
    """The PNG folder, claimed and marked as this tool's (called once the pictures are ready)."""
    if opts.get("out"):
        out = Path(opts["out"])
    elif opts["run"]:
        out = RunLayout.of(opts["run"]).units_report_dir
    else:
        out = Path("units_report")
    inputs = [Input("--run", opts["run"], holds_outputs=True), Input("--encoded", opts.get("encoded")),
              Input("--dataset", opts.get("dataset"))]
    claim_folder(out, "units", inputs)
    out.mkdir(parents=True, exist_ok=True)
    if not is_own_folder(out, "units"):
        write_marker(out, "units")
    return out


def source_options(default_splits: str, with_out: bool = True):
    """The options every analysis sub-command shares."""
    def decorate(fn):
        options = [
            click.option("--run", type=click.Path(file_okay=False), help="Run folder: encode the dataset with "
                         "RUN/vqvae/checkpoint.pt (cached under RUN/units_cache/)."),
            click.option("--encoded", type=click.Path(file_okay=False), help="Folder of .npz files written by "
                         "`zs2020 encode --format npz` (instead of --run; codebook size = largest id + 1)."),
            click.option("--dataset", default="data/corpus", show_default=True, type=click.Path(),
                         help="Dataset root (ZeroSpeech 2019 layout); gives utterances for --run and "
                              "phone alignments (demo corpus only)."),
            click.option("--language", default="english", show_default=True, type=click.Choice(LANGUAGES),
                         help="Dataset language."),
            click.option("--splits", default=None, help=f"Comma-separated dataset splits to encode with --run "
                         f"[default: {default_splits}]; e.g. test,train/unit,train/voice."),
            click.option("--level", default="both", show_default=True, type=click.Choice(["bottom", "top", "both"]),
                         help="Codebook level: bottom (20 ms), top (40 ms) or both."),
            click.option("--json", "json_", is_flag=True, help="Print machine-readable JSON instead of tables."),
            click.option("--device", default="auto", show_default=True,
                         help="Torch device for encoding: auto, cpu, cuda."),
            click.option("--force", is_flag=True, help="Re-encode even if RUN/units_cache is up to date."),
        ]
        if with_out:
            options.append(click.option("--out", type=click.Path(), help="Folder for PNGs [default: RUN/units, "
                                        "or ./units_report with --encoded]."))
        for option in reversed(options):
            fn = option(fn)
        return fn
    return decorate


def _opts(kwargs: dict) -> dict:
    opts = dict(kwargs)
    opts["json"] = opts.pop("json_", False)
    return opts


@click.group("units", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def units_group():
    """Inspect discovered units: usage, phones, speaker leakage, codebook, one utterance, listening.

    Units come from a run folder (--run RUN: splits of --dataset are encoded with the run's
    VQ-VAE and cached in RUN/units_cache/) or from a `zs2020 encode --format npz` folder
    (--encoded DIR). PNGs go to --out (default RUN/units/).
    """


STATS_ROWS = [("codebook_size", "codebook size"), ("codes_in_use", "codes in use"), ("perplexity", "perplexity"),
              ("entropy_bits", "entropy (bits)"), ("frame_ms", "frame (ms)"), ("mean_run_frames", "mean run (frames)"),
              ("mean_unit_ms", "mean unit duration (ms)"), ("bitrate", "bitrate N*H/D (bits/s)"),
              ("bitrate_collapsed", "bitrate, repeats collapsed"),
              ("bitrate_list", "bitrate, bitrate-list files"), ("bitrate_list_collapsed", "  same, repeats collapsed"),
              ("speaker_js_mean", "speaker JS div. mean (bits)"),
              ("speaker_js_max", "speaker JS div. max (bits)"), ("speaker_js_max_speaker", "  most divergent speaker")]


@units_group.command("stats")
@source_options("test")
def stats_command(**kwargs):
    """Codes in use, perplexity, entropy, unit duration, bitrate and per-speaker divergence.

    Bitrate is the official ZeroSpeech 2019 N*H/D (N symbols, H the entropy of their pooled
    histogram, D the total duration) of the unit ids, once on the frame sequence and once with
    consecutive repeats collapsed: over all encoded files, and over the files of the dataset's
    bitrate file list with its durations (what the evaluator scores, when the list exists).
    Speaker divergence is the Jensen-Shannon divergence (bits, 0..1) of each speaker's code
    histogram from the pooled one. Also writes usage.png to --out.
    """
    opts = _opts(kwargs)
    units = load_unit_set(opts, "test")
    levels = _levels(opts["level"], units)
    report = stats_report(units, levels)
    report["usage_png"] = str(plots.draw_usage(units, levels, _out_dir(opts) / "usage.png"))
    emit(report, opts["json"], lambda r: (
        f"{r['source']}: {r['utterances']} utterances, {r['speakers']} speakers, {r['seconds']:.1f} s\n"
        + level_table(r, STATS_ROWS) + f"\nusage plot: {r['usage_png']}"))


PHONE_ROWS = [("frames", "labelled frames"), ("phones", "phones"), ("units_used", "units used"),
              ("phone_purity", "phone purity"), ("unit_purity", "unit purity"),
              ("mutual_information_bits", "I(phone; unit) (bits)"), ("phone_entropy_bits", "H(phone) (bits)"),
              ("nmi", "NMI"), ("pnmi", "PNMI = I / H(phone)"), ("heatmap", "heat map")]


@units_group.command("phones")
@source_options("test")
def phones_command(**kwargs):
    """How units line up with phones (needs alignments: the demo corpus has them).

    Each unit frame gets the phone at its centre. Phone purity: frame accuracy when every unit
    is read as its most frequent phone. Unit purity: frame accuracy when every phone is read as
    its most frequent unit. NMI = 2I/(H(phone)+H(unit)); PNMI = I/H(phone). Writes a
    phone-by-unit heat map phones_<level>.png to --out.
    """
    opts = _opts(kwargs)
    units = load_unit_set(opts, "test")
    out = _out_dir(opts)
    report = phones_report(units, _levels(opts["level"], units),
                           lambda table, level, scores: plots.draw_phone_heatmap(table, level, scores,
                                                                                 out / f"phones_{level}.png"))
    emit(report, opts["json"], lambda r: f"{r['source']}\n" + level_table(r, PHONE_ROWS))


LEAKAGE_SPLITS = "test,train/unit,train/voice"


@units_group.command("leakage")
@source_options(LEAKAGE_SPLITS, with_out=False)
@click.option("--min-seconds", default=1.0, show_default=True, type=float,
              help="Ignore utterances shorter than this (ABX excerpts are too short to say much).")
@click.option("--test-fraction", default=0.3, show_default=True, type=click.FloatRange(0.05, 0.95),
              help="Share of each speaker's utterances held out for testing.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the held-out split.")
def leakage_command(min_seconds, test_fraction, seed, **kwargs):
    """How well the speaker can be predicted from the units: the number speaker-adversarial
    training should reduce.

    Features: each utterance's relative code histogram. Classifiers: multinomial logistic
    regression and nearest centroid (cosine), trained on a seeded per-speaker split and scored on
    held-out utterances. Chance = always answering the most frequent training speaker.
    """
    opts = _opts(kwargs)
    units = load_unit_set(opts, LEAKAGE_SPLITS)
    report = leakage_report(units, _levels(opts["level"], units), min_seconds, test_fraction, seed)
    rows = [("speakers", "speakers"), ("train", "train utterances"), ("test", "held-out utterances"),
            ("accuracy_logreg", "accuracy, logistic regression"), ("accuracy_centroid", "accuracy, nearest centroid"),
            ("chance", "chance (majority speaker)"), ("uniform_chance", "1 / speakers")]
    emit(report, opts["json"], lambda r: f"{r['source']}, utterances >= {min_seconds:g} s\n" + level_table(r, rows))


@units_group.command("plot")
@source_options("test")
def plot_command(**kwargs):
    """2-D PCA of the codebook vectors, coloured by each code's majority phone (when the dataset
    has alignments), marker size = use, grey crosses = unused codes. Writes codebook_<level>.png.

    With --encoded the vectors are read from the npz files (only used codes are then known).
    """
    opts = _opts(kwargs)
    units = load_unit_set(opts, "test")
    books = codebook_vectors(units, opts["device"])
    out = _out_dir(opts)
    alignments = units.alignments()     # all None without a dataset or alignments: plain colours
    report = {"source": units.source, "levels": {}}
    for level in _levels(opts["level"], units):
        vectors, known = books[level]
        counts = ua.pooled_histogram(units.ids(level), units.codebook_sizes[level])[:len(vectors)]
        labels: list = [None] * len(vectors)
        if any(alignments):
            pt = phone_table(units, level, alignments)
            majority = ua.majority_rows(pt.table)
            labels = [pt.phones[m] if m >= 0 else None for m in majority[:len(vectors)]]
        points, ratio = ua.pca_2d(vectors[known])
        full = np.zeros((len(vectors), 2))
        full[known] = points
        sel = np.flatnonzero(known)
        png = plots.draw_codebook(points, ratio, counts[sel], [labels[i] for i in sel], level,
                                  out / f"codebook_{level}.png")
        report["levels"][level] = {"codes": int(len(vectors)), "codes_plotted": int(known.sum()),
                                   "explained_variance": [float(r) for r in ratio], "png": str(png)}
    emit(report, opts["json"], lambda r: "\n".join(
        f"{lv}: {e['codes_plotted']}/{e['codes']} codes, PC1+PC2 explain "
        f"{100 * sum(e['explained_variance']):.0f}% of the variance -> {e['png']}" for lv, e in r["levels"].items()))


# ------------------------------------------------------------------------------- show
def show_text(r: dict) -> str:
    two = bool(r["top"])     # a single-level system (VQMIVC) has no top units
    head = (f"{r['key']}  speaker {r['speaker']}  {r['seconds']:.2f} s  {len(r['bottom'])} bottom units "
            f"({r['bottom_frame_ms']:.0f} ms)" + (f", {len(r['top'])} top units ({r['top_frame_ms']:.0f} ms)" if two else "")
            + ("" if r["aligned"] else "  [no alignment: one row per bottom-unit run]"))
    rows = [[f"{s['onset']:.3f}", f"{s['offset']:.3f}", s["phone"] or "", runs_text(s["bottom"])]
            + ([runs_text(s["top"])] if two else []) for s in r["segments"]]
    return head + "\n" + table_text(rows, ["onset", "offset", "phone", "bottom units"] + (["top units"] if two else []))


def _find_npz(folder: Path, key: str) -> Path:
    direct = folder / f"{key}.npz"
    if direct.is_file():
        return direct
    matches = sorted(folder.rglob(f"{Path(key).name}.npz"))
    if not matches:
        raise UserError(f"{folder}: no encoded file for {key!r}")
    return matches[0]


def resolve_show_target(file: str, opts: dict) -> tuple[EncodedUtterance, list[Segment] | None, float]:
    """FILE = an npz, a wav (encoded with --run) or a dataset key like test/S021_0003."""
    dataset = _open_dataset(opts["dataset"], opts["language"], required=False)
    lookup = UnitSet([], {}, NPZ_HOP_SECONDS, dataset=dataset)
    path = Path(file)
    hop = NPZ_HOP_SECONDS
    if path.suffix == ".npz":
        if not path.is_file():
            raise UserError(f"{path}: no such file")
        utt = read_npz_units(path, hop)
        ds_utt = lookup.dataset_utterance(path.stem)
    else:
        if path.suffix == ".wav":
            if not path.is_file():
                raise UserError(f"{path}: no such file")
            ds_utt = lookup.dataset_utterance(path.stem)
            if ds_utt is not None and ds_utt.path.resolve() != path.resolve():
                ds_utt = None
            wav_utt = ds_utt or Utterance("", path.stem, path)
        else:
            if dataset is None:
                raise UserError(f"{opts['dataset']}: dataset folder does not exist (needed to look up {file!r})")
            ds_utt = wav_utt = dataset.find(file)
        if opts["encoded"]:
            utt = read_npz_units(_find_npz(Path(opts["encoded"]), file if path.suffix != ".wav" else path.stem), hop)
        elif opts["run"]:
            system = load_system(RunLayout.of(opts["run"]).vqvae_checkpoint, opts["device"])
            set_threads()
            hop = system.spec.frame_period
            audio = wav_utt.read(system.spec.sample_rate)
            units = system.encode_mel(logmel(audio, system.spec))
            utt = EncodedUtterance(wav_utt.key, wav_utt.speaker, units.bottom_ids, units.top_ids, units.num_frames,
                                   len(audio) / system.spec.sample_rate)
        else:
            raise UserError("show needs --run RUN (to encode) or --encoded DIR (to look the units up)")
    segments = dataset.alignment(ds_utt) if (dataset is not None and ds_utt is not None) else None
    return utt, segments, hop


@units_group.command("show")
@click.argument("file")
@click.option("--run", type=click.Path(file_okay=False), help="Run folder whose VQ-VAE encodes FILE.")
@click.option("--encoded", type=click.Path(file_okay=False), help="Look FILE's units up in this npz folder instead.")
@click.option("--dataset", default="data/corpus", show_default=True, type=click.Path(),
              help="Dataset root: resolves keys and gives phone alignments (demo corpus).")
@click.option("--language", default="english", show_default=True, type=click.Choice(LANGUAGES),
              help="Dataset language.")
@click.option("--device", default="auto", show_default=True, help="Torch device for encoding.")
@click.option("--json", "json_", is_flag=True, help="Print JSON instead of a table.")
def show_command(file, **kwargs):
    """Print one utterance's unit sequence against its phone alignment.

    FILE is a dataset key (test/S021_0003), a wav path or an encoded .npz. Each row is one phone
    segment with the bottom (20 ms) and top (40 ms) units whose frame centres fall inside it;
    runs are written CODExCOUNT. Without an alignment, one row per run of a bottom unit.
    """
    opts = _opts(kwargs)
    utt, segments, hop = resolve_show_target(file, opts)
    emit(show_report(utt, segments, hop), opts["json"], show_text)


# ------------------------------------------------------------------------------- listen
@units_group.command("listen")
@click.argument("units", nargs=-1, required=True)
@click.option("--run", required=True, type=click.Path(file_okay=False),
              help="Run folder with vqvae/checkpoint.pt (and melgan/checkpoint.pt for --vocoder melgan).")
@click.option("--speaker", required=True, help="Target voice for the decoder, e.g. V001.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output wav (16 kHz, 16-bit).")
@click.option("--hold-ms", type=click.FloatRange(min=1), help="Hold each given unit this long (rounded to "
              "20 ms frames), e.g. one unit for 300 ms.")
@click.option("--top", "top_ids", help="Top codes to decode with (comma/space separated, CODExCOUNT allowed; "
              "one id = held throughout). Default: chosen from co-occurrence in the encoded test split.")
@click.option("--vocoder", default="melgan", show_default=True, type=click.Choice(["melgan", "griffinlim"]),
              help="Waveform generator.")
@click.option("--dataset", default="data/corpus", show_default=True, type=click.Path(),
              help="Dataset whose test split gives the bottom/top co-occurrence counts.")
@click.option("--language", default="english", show_default=True, type=click.Choice(LANGUAGES),
              help="Dataset language.")
@click.option("--device", default="auto", show_default=True, help="Torch device.")
def listen_command(units, run, speaker, out, hold_ms, top_ids, vocoder, dataset, language, device):
    """Synthesise a sequence of bottom units (20 ms each) in a target voice.

    UNITS are bottom code ids, e.g. `12 12 40x5 7` (CODExCOUNT repeats a code). The decoder also
    needs top codes (one per 40 ms): unless --top is given, each top frame gets the top code that
    co-occurred most often with its two bottom codes when the run's VQ-VAE encoded the dataset's
    test split (cached in RUN/units_cache/); bottom codes never seen fall back to the most used
    top code.
    """
    run = Path(run)
    layout = RunLayout.of(run)
    vq_ckpt, mg_ckpt = layout.vqvae_checkpoint, layout.melgan_checkpoint
    if not vq_ckpt.is_file():
        raise UserError(f"{vq_ckpt}: no VQ-VAE checkpoint (train it with `zs2020 train-vqvae`)")
    if vocoder == "melgan" and not mg_ckpt.is_file():
        raise UserError(f"{mg_ckpt}: no MelGAN checkpoint (train it, or use --vocoder griffinlim)")
    bottom_ids = parse_unit_tokens(units, "unit")
    top = parse_unit_tokens([top_ids], "top code") if top_ids else None
    converter = Converter(vq_ckpt, mg_ckpt if vocoder == "melgan" else None, vocoder=vocoder, device=device)
    set_threads()
    converter.check_voice(speaker)
    sizes = codebook_sizes(converter.vqvae)
    unit_ms = 1000 * converter.vqvae.unit_frames["bottom"] * converter.spec.frame_period

    def cooc():
        unit_set = encode_splits(run, Dataset(dataset, language), ["test"], device)
        return ua.cooccurrence(unit_set.ids("bottom"), unit_set.ids("top"), sizes["bottom"], sizes["top"])

    if Path(out).is_dir():
        raise UserError(f"--out {out}: is an existing folder; give a .wav file path")
    bottom, top_arr = listen_units(bottom_ids, hold_ms, top, sizes, cooc, unit_ms)
    frames = converter.vqvae.unit_frames["bottom"] * len(bottom)
    if "top" in sizes:
        audio = converter.synthesize(top_arr, bottom, speaker, frames)
    else:   # a single-level system (VQMIVC): the content units alone, flat pitch
        audio = converter.render_units(converter.vqvae.units_from_ids(bottom, frames), speaker)
    write_wav(out, np.asarray(audio, dtype=np.float32), converter.spec.sample_rate)
    click.echo(f"wrote {out}: {len(bottom)} bottom units ({len(bottom) * unit_ms / 1000:.2f} s) in voice "
               f"{speaker} via {vocoder}; bottom {runs_text(bottom)}"
               + (f"; top {runs_text(top_arr)}" if len(top_arr) else ""))
    page = layout.evaluation_dir / "index.html"
    if page.is_file():   # `zs2020 evaluate`'s listening page: the units of test utterances, and their sound
        click.echo(f"the run's listening page shows test utterances' units beside their audio: "
                   f"{page.resolve().as_uri()}#units-{language}")
