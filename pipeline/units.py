"""``zs2020 units``: look inside the discovered units from the command line.

Sub-commands: ``stats`` (usage, perplexity, run length, bitrate, speaker divergence), ``phones``
(purity and NMI against phone alignments, heat map), ``leakage`` (speaker identity predicted
from code histograms), ``plot`` (PCA of the codebooks coloured by majority phone), ``show``
(one utterance's units against its alignment) and ``listen`` (synthesise a unit sequence in a
target voice).

Where units come from (common options):

* ``--run RUN`` encodes dataset splits with ``RUN/vqvae/checkpoint.pt`` and caches the ids in
  ``RUN/units_cache/<language>/<split>.npz`` (atomic; re-encoded only when the checkpoint or
  the split's wavs change, or with ``--force``);
* ``--encoded DIR`` reads a folder written by ``zs2020 encode --format npz`` (recursively).

Every number is computed by :mod:`pipeline.unit_analysis`; this module only loads units,
formats tables/JSON and draws pictures.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import click
import numpy as np

from pipeline import unit_analysis as ua
from pipeline.config import fingerprint, get
from pipeline.dataset import ALL_SPLITS, LANGUAGES, Dataset, Segment, Utterance, read_filelist, speaker_of
from pipeline.errors import UserError
from pipeline.io import atomic_path

LEVELS = ("bottom", "top")
CACHE_VERSION = 1
DEFAULT_HOP_SECONDS = 0.01   # the one FeatureSpec: 160 samples at 16 kHz
LISTEN_FRAME_MS = 20         # one bottom unit = 2 mel frames of 10 ms


# =============================================================================== unit sets
@dataclass
class EncodedUtterance:
    key: str                  # "<split>/<utt_id>" (or a path relative to an encoded folder)
    speaker: str
    bottom: np.ndarray        # (Tb,) int
    top: np.ndarray           # (Tt,) int
    num_frames: int           # mel frames (10 ms)
    seconds: float            # audio duration


@dataclass
class UnitSet:
    """Encoded utterances plus what is needed to interpret them."""
    utterances: list[EncodedUtterance]
    codebook_sizes: dict[str, int]
    hop_seconds: float = DEFAULT_HOP_SECONDS
    dataset: Dataset | None = None
    checkpoint: Path | None = None      # the VQ-VAE the units came from (--run)
    encoded_dir: Path | None = None     # the npz folder they came from (--encoded)
    source: str = ""
    _utt_index: dict = field(default_factory=dict, repr=False)

    def ids(self, level: str) -> list[np.ndarray]:
        return [getattr(u, level) for u in self.utterances]

    def speakers(self) -> list[str]:
        return [u.speaker for u in self.utterances]

    def stride(self, level: str) -> int:
        """Mel frames per unit, read off the data (2 for bottom, 4 for top with our VQ-VAE-2)."""
        longest = max(self.utterances, key=lambda u: u.num_frames)
        n = len(getattr(longest, level))
        return max(1, int(round(longest.num_frames / n))) if n else 1

    def frame_seconds(self, level: str) -> float:
        return self.stride(level) * self.hop_seconds

    def dataset_utterance(self, key: str) -> Utterance | None:
        """The dataset utterance behind a key (``test/S021_0003`` or a bare ``S021_0003``)."""
        if self.dataset is None:
            return None
        if not self._utt_index:
            for split in ALL_SPLITS:
                for utt in self.dataset.utterances(split, required=False):
                    self._utt_index[utt.key] = utt
                    self._utt_index.setdefault(utt.utt_id, utt)
        return self._utt_index.get(key) or self._utt_index.get(Path(key).name)

    def alignments(self) -> list[list[Segment] | None]:
        out = []
        for u in self.utterances:
            utt = self.dataset_utterance(u.key)
            out.append(self.dataset.alignment(utt) if utt is not None else None)
        return out


def _load_vqvae(checkpoint: Path, device: str):
    from pipeline.encode import load_vqvae
    from pipeline.runtime import pick_device, set_threads
    if not checkpoint.is_file():
        raise UserError(f"{checkpoint}: no VQ-VAE checkpoint (train it with `zs2020 train-vqvae`)")
    vq = load_vqvae(checkpoint, str(pick_device(device)))
    set_threads(int(get(vq.config or {}, "runtime.threads", 1)))
    return vq


def _codebook_sizes(vq) -> dict[str, int]:
    return {level: int(len(book)) for level, book in codebooks(vq).items()}


def codebooks(vq) -> dict[str, np.ndarray]:
    """The model's code vectors per level, (num_codes, dim) float32."""
    bottom, top = vq.codebooks
    return {"bottom": np.asarray(bottom, dtype=np.float32), "top": np.asarray(top, dtype=np.float32)}


def _encode(vq, utt: Utterance) -> EncodedUtterance:
    audio = utt.read(vq.spec.sample_rate)
    units = vq.encode_audio(audio)
    return EncodedUtterance(utt.key, utt.speaker, np.asarray(units.bottom_ids, dtype=np.int64),
                            np.asarray(units.top_ids, dtype=np.int64), int(units.num_frames),
                            len(audio) / vq.spec.sample_rate)


def _split_identity(checkpoint: Path, dataset: Dataset, utts: Sequence[Utterance]) -> str:
    """What the cached encoding of one split depends on: checkpoint bytes and the wav files."""
    ck = checkpoint.stat()
    files = [(u.key, (s := u.path.stat()).st_size, s.st_mtime_ns) for u in utts]
    return fingerprint(CACHE_VERSION, str(checkpoint.resolve()), ck.st_size, ck.st_mtime_ns,
                       str(dataset.root.resolve()), dataset.language, files)


def _cache_path(run: Path, dataset: Dataset, split: str) -> Path:
    return run / "units_cache" / dataset.language / (split.replace("/", "_") + ".npz")


def _save_cache(path: Path, identity: str, encoded: list[EncodedUtterance], sizes: dict, hop: float) -> None:
    meta = {"identity": identity, "codebook_sizes": sizes, "hop_seconds": hop,
            "keys": [u.key for u in encoded], "speakers": [u.speaker for u in encoded]}
    arrays = {"meta": np.array(json.dumps(meta)),
              "num_frames": np.array([u.num_frames for u in encoded], dtype=np.int64),
              "seconds": np.array([u.seconds for u in encoded], dtype=np.float64)}
    for level in LEVELS:
        seqs = [getattr(u, level) for u in encoded]
        arrays[f"{level}_ids"] = np.concatenate(seqs).astype(np.int32) if seqs else np.zeros(0, np.int32)
        arrays[f"{level}_lengths"] = np.array([len(s) for s in seqs], dtype=np.int64)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def _load_cache(path: Path, identity: str) -> tuple[list[EncodedUtterance], dict, float] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path) as data:
            meta = json.loads(str(data["meta"]))
            if meta.get("identity") != identity:
                return None
            split = {level: np.split(data[f"{level}_ids"].astype(np.int64),
                                     np.cumsum(data[f"{level}_lengths"])[:-1]) for level in LEVELS}
            encoded = [EncodedUtterance(key, spk, split["bottom"][i], split["top"][i], int(data["num_frames"][i]),
                                        float(data["seconds"][i]))
                       for i, (key, spk) in enumerate(zip(meta["keys"], meta["speakers"]))]
            return encoded, meta["codebook_sizes"], float(meta["hop_seconds"])
    except (OSError, ValueError, KeyError):
        return None   # unreadable or old cache: re-encode


def encode_splits(run: Path, dataset: Dataset, splits: Sequence[str], device: str = "auto",
                  force: bool = False, progress: bool = True) -> UnitSet:
    """Units of every utterance of ``splits``, from the cache when it is up to date."""
    from tqdm import tqdm
    checkpoint = run / "vqvae" / "checkpoint.pt"
    if not checkpoint.is_file():
        raise UserError(f"{run}: no vqvae/checkpoint.pt in this run folder (train it with `zs2020 train-vqvae`)")
    encoded: list[EncodedUtterance] = []
    sizes: dict = {}
    hop = DEFAULT_HOP_SECONDS
    vq = None
    for split in splits:
        utts = dataset.utterances(split)
        identity = _split_identity(checkpoint, dataset, utts)
        path = _cache_path(run, dataset, split)
        cached = None if force else _load_cache(path, identity)
        if cached is None:
            if vq is None:
                vq = _load_vqvae(checkpoint, device)
            bar = tqdm(utts, desc=f"encoding {split}", unit="utt", disable=not progress, leave=False)
            split_units = [_encode(vq, u) for u in bar]
            sizes, hop = _codebook_sizes(vq), vq.spec.hop_length / vq.spec.sample_rate
            _save_cache(path, identity, split_units, sizes, hop)
        else:
            split_units, sizes, hop = cached
        encoded.extend(split_units)
    return UnitSet(encoded, dict(sizes), hop, dataset, checkpoint, source=f"{run} ({', '.join(splits)})")


def read_npz_units(path: Path, key: str | None = None) -> EncodedUtterance:
    """One file written by ``zs2020 encode --format npz``."""
    try:
        with np.load(path) as data:
            bottom = np.asarray(data["bottom_ids"], dtype=np.int64).ravel()
            top = np.asarray(data["top_ids"], dtype=np.int64).ravel()
            num_frames = int(data["num_frames"]) if "num_frames" in data else 2 * len(bottom)
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"{path}: not an encoded-units npz with bottom_ids/top_ids ({exc})") from None
    key = key or path.stem
    # The npz holds no duration: D is taken as the mel frames x 10 ms (at most 10 ms over per file).
    return EncodedUtterance(key, speaker_of(Path(key).name), bottom, top, num_frames, num_frames * DEFAULT_HOP_SECONDS)


def read_encoded_folder(folder: Path, dataset: Dataset | None = None, progress: bool = True) -> UnitSet:
    from tqdm import tqdm
    if not folder.is_dir():
        raise UserError(f"{folder}: encoded folder does not exist")
    # Hidden entries are half-written temporaries (pipeline.io.atomic_path names them ".x.npz.*").
    files = sorted(p for p in folder.rglob("*.npz")
                   if not any(part.startswith(".") for part in p.relative_to(folder).parts))
    if not files:
        raise UserError(f"{folder}: no .npz files (write some with `zs2020 encode --format npz`)")
    encoded = [read_npz_units(p, str(p.relative_to(folder).with_suffix("")))
               for p in tqdm(files, desc="reading units", unit="file", disable=not progress, leave=False)]
    sizes = {level: int(max((int(getattr(u, level).max(initial=-1)) for u in encoded), default=-1) + 1)
             for level in LEVELS}
    return UnitSet(encoded, sizes, DEFAULT_HOP_SECONDS, dataset, encoded_dir=folder, source=str(folder))


# =============================================================================== analyses
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


def phones_report(units: UnitSet, levels: Sequence[str], out: Path | None = None) -> dict:
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
        if out is not None:
            entry["heatmap"] = str(draw_phone_heatmap(pt, level, entry, out / f"phones_{level}.png"))
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


# =============================================================================== pictures
def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save_figure(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def draw_phone_heatmap(pt: PhoneTable, level: str, scores: dict, path: Path) -> Path:
    """P(phone | unit) for the used units, sorted by majority phone then by use."""
    plt = _pyplot()
    used = np.flatnonzero(pt.table.sum(axis=0) > 0)
    sub = pt.table[:, used].astype(np.float64)
    order = np.lexsort((-sub.sum(axis=0), sub.argmax(axis=0)))
    cond = sub[:, order] / sub[:, order].sum(axis=0, keepdims=True)
    fig, ax = plt.subplots(figsize=(min(18, 4 + 0.03 * len(used) + 4), 0.22 * len(pt.phones) + 2))
    im = ax.imshow(cond, aspect="auto", cmap="magma", interpolation="nearest", vmin=0, vmax=1)
    ax.set_yticks(range(len(pt.phones)), pt.phones, fontsize=7)
    ax.set_xlabel(f"{level} units in use ({len(used)}), sorted by majority phone")
    ax.set_title(f"P(phone | {level} unit): phone purity {scores['phone_purity']:.2f}, "
                 f"unit purity {scores['unit_purity']:.2f}, NMI {scores['nmi']:.2f}, PNMI {scores['pnmi']:.2f}")
    fig.colorbar(im, ax=ax, fraction=0.03)
    return _save_figure(fig, path)


def draw_usage(units: UnitSet, levels: Sequence[str], path: Path) -> Path:
    """Code usage by rank (log scale): a flat curve means an evenly used codebook."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for level in levels:
        counts = np.sort(ua.pooled_histogram(units.ids(level), units.codebook_sizes[level]))[::-1]
        ax.plot(np.arange(1, counts.size + 1), counts / max(1, counts.sum()), label=f"{level} ({counts.size} codes)")
    ax.set_yscale("log")
    ax.set_xlabel("code rank")
    ax.set_ylabel("share of frames")
    ax.legend()
    ax.set_title("code usage by rank")
    return _save_figure(fig, path)


def draw_codebook(points: np.ndarray, ratio: np.ndarray, counts: np.ndarray, labels: list[str | None],
                  level: str, path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 7))
    used = counts > 0
    if (~used).any():
        ax.scatter(points[~used, 0], points[~used, 1], s=8, c="lightgrey", label="unused", marker="x")
    names = sorted({lab for lab in labels if lab is not None})
    many = len(names) > 20
    cmap = plt.get_cmap("gist_ncar" if many else "tab20")
    sizes = 10 + 40 * np.log1p(counts) / max(1.0, float(np.log1p(counts.max())))
    for i, name in enumerate(names):
        sel = np.array([lab == name for lab in labels]) & used
        colour = cmap(i / len(names)) if many else cmap(i)
        ax.scatter(points[sel, 0], points[sel, 1], s=sizes[sel], color=colour, label=name, alpha=0.85)
        for j in np.flatnonzero(sel)[:3]:
            ax.annotate(name, points[j], fontsize=6, alpha=0.7)
    plain = used & np.array([lab is None for lab in labels])
    if plain.any():
        ax.scatter(points[plain, 0], points[plain, 1], s=sizes[plain], c="tab:blue", label="used", alpha=0.6)
    ax.set_xlabel(f"PC1 ({100 * ratio[0]:.0f}% var)")
    ax.set_ylabel(f"PC2 ({100 * ratio[1]:.0f}% var)")
    ax.set_title(f"{level} codebook, PCA; colour = majority phone, size = use")
    ax.legend(fontsize=6, ncol=2, loc="best", markerscale=0.7)
    return _save_figure(fig, path)


# =============================================================================== formatting
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


# =============================================================================== CLI
def _levels(level: str) -> tuple[str, ...]:
    return LEVELS if level == "both" else (level,)


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
    return read_encoded_folder(Path(opts["encoded"]), dataset)


def _out_dir(opts: dict) -> Path:
    if opts.get("out"):
        return Path(opts["out"])
    if opts["run"]:
        return Path(opts["run"]) / "units"
    return Path("units_report")


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
    levels = _levels(opts["level"])
    report = stats_report(units, levels)
    report["usage_png"] = str(draw_usage(units, levels, _out_dir(opts) / "usage.png"))
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
    report = phones_report(units, _levels(opts["level"]), _out_dir(opts))
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
    report = leakage_report(units, _levels(opts["level"]), min_seconds, test_fraction, seed)
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
    for level in _levels(opts["level"]):
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
        png = draw_codebook(points, ratio, counts[sel], [labels[i] for i in sel], level, out / f"codebook_{level}.png")
        report["levels"][level] = {"codes": int(len(vectors)), "codes_plotted": int(known.sum()),
                                   "explained_variance": [float(r) for r in ratio], "png": str(png)}
    emit(report, opts["json"], lambda r: "\n".join(
        f"{lv}: {e['codes_plotted']}/{e['codes']} codes, PC1+PC2 explain "
        f"{100 * sum(e['explained_variance']):.0f}% of the variance -> {e['png']}" for lv, e in r["levels"].items()))


def codebook_vectors(units: UnitSet, device: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per level: (vectors (K, D), known mask (K,)). From the checkpoint when there is one,
    else gathered from the npz files' quantized vectors (only codes that occur)."""
    if units.checkpoint is not None:
        books = codebooks(_load_vqvae(units.checkpoint, device))
        return {lv: (b, np.ones(len(b), dtype=bool)) for lv, b in books.items()}
    return _vectors_from_npz(units)


def _vectors_from_npz(units: UnitSet) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    folder = units.encoded_dir
    found: dict[str, dict[int, np.ndarray]] = {lv: {} for lv in LEVELS}
    for utt in units.utterances:
        path = folder / f"{utt.key}.npz"
        with np.load(path) as data:
            if "bottom_vectors" not in data or "top_vectors" not in data:
                raise UserError(f"{path}: no bottom_vectors/top_vectors; plot needs them (or use --run)")
            for level, ids, vectors in (("bottom", utt.bottom, data["bottom_vectors"]),
                                        ("top", np.repeat(utt.top, units.stride("top") // units.stride("bottom"))
                                         [:len(data["top_vectors"])], data["top_vectors"])):
                for i, code in enumerate(ids):
                    found[level].setdefault(int(code), np.asarray(vectors[i], dtype=np.float32))
    out = {}
    for level in LEVELS:
        size = units.codebook_sizes[level]
        dim = len(next(iter(found[level].values())))
        vectors = np.zeros((size, dim), dtype=np.float32)
        known = np.zeros(size, dtype=bool)
        for code, vec in found[level].items():
            vectors[code], known[code] = vec, True
        out[level] = (vectors, known)
    return out


# ------------------------------------------------------------------------------- show
def _runs_text(ids: Sequence[int]) -> str:
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


def show_text(r: dict) -> str:
    head = (f"{r['key']}  speaker {r['speaker']}  {r['seconds']:.2f} s  {len(r['bottom'])} bottom units "
            f"({r['bottom_frame_ms']:.0f} ms), {len(r['top'])} top units ({r['top_frame_ms']:.0f} ms)"
            + ("" if r["aligned"] else "  [no alignment: one row per bottom-unit run]"))
    rows = [[f"{s['onset']:.3f}", f"{s['offset']:.3f}", s["phone"] or "", _runs_text(s["bottom"]), _runs_text(s["top"])]
            for s in r["segments"]]
    return head + "\n" + table_text(rows, ["onset", "offset", "phone", "bottom units", "top units"])


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
    lookup = UnitSet([], {}, dataset=dataset)
    path = Path(file)
    if path.suffix == ".npz":
        if not path.is_file():
            raise UserError(f"{path}: no such file")
        utt = read_npz_units(path)
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
            utt = read_npz_units(_find_npz(Path(opts["encoded"]), file if path.suffix != ".wav" else path.stem))
        elif opts["run"]:
            utt = _encode(_load_vqvae(Path(opts["run"]) / "vqvae" / "checkpoint.pt", opts["device"]), wav_utt)
        else:
            raise UserError("show needs --run RUN (to encode) or --encoded DIR (to look the units up)")
    segments = dataset.alignment(ds_utt) if (dataset is not None and ds_utt is not None) else None
    return utt, segments, DEFAULT_HOP_SECONDS


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
def parse_unit_tokens(tokens: Sequence[str], what: str) -> list[int]:
    """``12 40x3 7`` -> [12, 40, 40, 40, 7] (also accepts commas)."""
    ids: list[int] = []
    for token in (t for raw in tokens for t in raw.replace(",", " ").split()):
        code, _, times = token.partition("x")
        try:
            code_i, times_i = int(code), int(times) if times else 1
        except ValueError:
            raise UserError(f"bad {what} {token!r}: expected an integer code, optionally CODExCOUNT") from None
        if code_i < 0 or times_i < 1:
            raise UserError(f"bad {what} {token!r}: codes are >= 0 and counts >= 1")
        ids.extend([code_i] * times_i)
    if not ids:
        raise UserError(f"no {what} given")
    return ids


def listen_units(bottom: list[int], hold_ms: float | None, top: list[int] | None, sizes: dict,
                 cooc: Callable[[], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The (bottom, top) id arrays to decode: each bottom unit held ``hold_ms`` when given; top
    ids given (one id = held throughout) or chosen from co-occurrence counts (``cooc()``)."""
    if hold_ms is not None:
        frames = max(1, int(round(hold_ms / LISTEN_FRAME_MS)))
        bottom = [code for code in bottom for _ in range(frames)]
    b = np.asarray(bottom, dtype=np.int64)
    if b.max() >= sizes["bottom"]:
        raise UserError(f"bottom code {int(b.max())} is out of range: the codebook has {sizes['bottom']} codes")
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
    from pipeline.audio import write_wav
    from pipeline.convert import Converter
    from pipeline.runtime import set_threads
    run = Path(run)
    vq_ckpt, mg_ckpt = run / "vqvae" / "checkpoint.pt", run / "melgan" / "checkpoint.pt"
    if not vq_ckpt.is_file():
        raise UserError(f"{vq_ckpt}: no VQ-VAE checkpoint (train it with `zs2020 train-vqvae`)")
    if vocoder == "melgan" and not mg_ckpt.is_file():
        raise UserError(f"{mg_ckpt}: no MelGAN checkpoint (train it, or use --vocoder griffinlim)")
    bottom_ids = parse_unit_tokens(units, "unit")
    top = parse_unit_tokens([top_ids], "top code") if top_ids else None
    converter = Converter(vq_ckpt, mg_ckpt if vocoder == "melgan" else None, vocoder=vocoder, device=device)
    set_threads(int(get(converter.vqvae.config or {}, "runtime.threads", 1)))
    converter.check_voice(speaker)
    sizes = _codebook_sizes(converter.vqvae)

    def cooc():
        unit_set = encode_splits(run, Dataset(dataset, language), ["test"], device)
        return ua.cooccurrence(unit_set.ids("bottom"), unit_set.ids("top"), sizes["bottom"], sizes["top"])

    bottom, top_arr = listen_units(bottom_ids, hold_ms, top, sizes, cooc)
    audio = converter.synthesize(top_arr, bottom, speaker, 2 * len(bottom))
    write_wav(out, np.asarray(audio, dtype=np.float32))
    click.echo(f"wrote {out}: {len(bottom)} bottom units ({len(bottom) * LISTEN_FRAME_MS / 1000:.2f} s) in voice "
               f"{speaker} via {vocoder}; bottom {_runs_text(bottom)}; top {_runs_text(top_arr)}")
