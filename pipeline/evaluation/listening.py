"""The listening page of ``zs2020 evaluate``: ``OUT/index.html``, every converted line beside its
source and its target, in the browser.

One self-contained page (inline CSS, a few lines of plain JavaScript, nothing fetched from the
network) holding ``report.md`` (headline scores, ABX table, plots), then per language:

* one row per synthesis line with a converted wav: source, converted and target-reference
  players, each with a small log-mel spectrogram (the one front end, ``pipeline.features``),
  the transcript and what the ASR heard in each (words heard but not said marked, words said
  but not heard struck), the measures of ``speech.py`` (``scores.json``'s ``per_line``);
  rows sort by any measure (click a column head, or open ``index.html#sort=cer``) and lines
  closer to the source than to the target, or with a CER above the source's, are flagged;
* for VQMIVC runs the one-shot trials the same way (source, reference speaker, converted);
* a units section: a few test utterances with their unit sequence drawn under the spectrogram,
  beside the phone alignment (what ``zs2020 units show`` prints), with players.

Everything the page plays or shows lies inside ``OUT``: wavs under ``OUT/listen/<language>/``
(hard links to the dataset's and the submission's files where the file system allows, copies
otherwise; a zipped submission's wavs are written out), so the folder can be zipped and sent.
Each ``<audio>`` writes its duration into ``data-duration`` once its metadata has loaded: the
headless check (``scripts/check_listening_page.py``) reads it back from Chromium's DOM.
"""
from __future__ import annotations

import difflib
import html
import json
import os
import re
import shutil
from pathlib import Path
from urllib.parse import quote

import numpy as np

from models.featurespec import FeatureSpec
from pipeline.contract.dataset import Dataset, Utterance
from pipeline.contract.reader import EntryError, SubmissionTree
from pipeline.contract.unitfile import UnitFileError, parse_units
from pipeline.core.audio import read_wav
from pipeline.core.errors import UserError
from pipeline.core.io import atomic_dir
from pipeline.core.layout import RunLayout
from pipeline.core.outputs import MARKER_NAME, write_marker
from pipeline.evaluation.speech import normalize_text
from pipeline.features import logmel
from pipeline.systems.unit_systems import load_unit_system
from submission.files import MAX_UNIT_FILE_BYTES, MAX_WAV_BYTES

PAGE = "index.html"
MEDIA = "listen"                # OUT/listen/<language>/{test,converted,reference,spec,units}/
SPEC_SIZE = (260, 64)           # px of the small log-mel pictures
UNIT_UTTERANCES = 3             # test utterances of the units section
UNIT_WINDOW = 3.0               # seconds of each shown with its units
SPEC_RANGE = 5.0                # log10 units shown below each picture's peak (50 dB)
# (column, data key, label, digits): the sortable measures of a line; data keys are HTML-safe
LINE_MEASURES = (("sim_target_converted", "simt", "sim. to target", 3),
                 ("sim_source_converted", "sims", "sim. to source", 3),
                 ("cer_converted", "cer", "CER", 3), ("cer_source", "cers", "CER of source", 3),
                 ("dnsmos_converted", "dnsmos", "DNSMOS", 2), ("dnsmos_source", "dnsmoss", "DNSMOS of source", 2),
                 ("mcd_converted", "mcd", "MCD dB", 2))
TRIAL_MEASURES = (("sim_reference_converted", "simt", "sim. to reference speaker", 3),
                  ("sim_source_converted", "sims", "sim. to source", 3),
                  ("cer_converted", "cer", "CER", 3), ("cer_source", "cers", "CER of source", 3),
                  ("dnsmos_converted", "dnsmos", "DNSMOS", 2), ("dnsmos_source", "dnsmoss", "DNSMOS of source", 2))

CSS = """body{font:14px/1.4 system-ui,sans-serif;margin:1.2em;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 6px;vertical-align:top}
th{background:#f3f3f3}th[data-sort]{cursor:pointer;background:#e8ecf8}th[data-sort]:after{content:" \\2195";color:#888}
th[data-dir=asc]:after{content:" \\2191"}th[data-dir=desc]:after{content:" \\2193"}
tbody.fail{background:#fde8e8}tbody{border-top:2px solid #999}.flag{color:#b00;font-weight:bold}.muted{color:#777}
audio{width:260px;height:32px;display:block}img.spec{width:260px;height:64px;display:block}
img.units{max-width:100%}ins{background:#ffe08a;text-decoration:none}del{color:#b00}
.text{max-width:260px;font-size:12px}.num{text-align:right;white-space:nowrap}
table.only-fail tbody:not(.fail){display:none}td:first-child{max-width:230px}nav a{margin-right:1em}"""

SCRIPT = """document.querySelectorAll('audio').forEach(function(a){
 function mark(){a.setAttribute('data-duration',a.duration);}
 if(a.readyState>=1)mark();a.addEventListener('loadedmetadata',mark);
 a.addEventListener('error',function(){a.setAttribute('data-error',a.error?a.error.code:'error');});});
function sortBy(th){var t=th.closest('table'),k=th.getAttribute('data-sort'),
 asc=th.getAttribute('data-dir')!=='asc',rows=Array.prototype.slice.call(t.tBodies);
 t.querySelectorAll('th[data-sort]').forEach(function(h){h.removeAttribute('data-dir');});
 th.setAttribute('data-dir',asc?'asc':'desc');
 rows.sort(function(a,b){var x=parseFloat(a.getAttribute('data-'+k)),y=parseFloat(b.getAttribute('data-'+k));
  if(isNaN(x))return isNaN(y)?0:1;if(isNaN(y))return -1;return asc?x-y:y-x;});
 rows.forEach(function(r){t.appendChild(r);});}
document.querySelectorAll('th[data-sort]').forEach(function(th){th.addEventListener('click',function(){sortBy(th);});});
document.querySelectorAll('input.only-fail').forEach(function(box){box.addEventListener('change',function(){
 document.getElementById(box.getAttribute('data-table')).classList.toggle('only-fail',box.checked);});});
var m=location.hash.match(/sort=(\\w+)/);
if(m)document.querySelectorAll('th[data-sort="'+m[1]+'"]').forEach(sortBy);"""


# --------------------------------------------------------------------------- entry points
def write_listening_page(out: str | os.PathLike, scores: dict, tree: SubmissionTree, dataset_root: str | os.PathLike,
                         spec: FeatureSpec, run: str | os.PathLike | None = None, log=print) -> Path:
    """Write OUT/index.html and OUT/listen/ from ``scores`` (OUT already holds report.md, its
    plots and one_shot/ wavs). Returns the page's path."""
    out = Path(out)
    builder = _Builder(out, tree, Path(dataset_root), spec, run, log)
    sections = [builder.language(language, scores["zs2020_extras"].get(language, {}))
                for language in scores["2019"]]
    report = out / "report.md"
    title = "zs2020 evaluation"
    body = markdown_html(report.read_text(encoding="utf-8")) if report.is_file() else f"<h1>{title}</h1>"
    nav = " ".join(f'<a href="#{kind}-{lang}">{label} ({lang})</a>' for lang in scores["2019"]
                   for kind, label in (("lines", "converted lines"), ("oneshot", "one-shot"), ("units", "units"))
                   if f'id="{kind}-{lang}"' in "".join(sections))
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            f"<style>{CSS}</style></head><body>\n<nav>{nav}</nav>\n{body}\n" + "\n".join(sections)
            + f"\n<script>{SCRIPT}</script>\n</body></html>\n")
    (out / PAGE).write_text(page, encoding="utf-8")
    log(f"listening page: {builder.players} players, {len(builder._pictures)} spectrograms")
    return out / PAGE


def add_listening_page(out: str | os.PathLike, scores: dict, tree: SubmissionTree, dataset_root: str | os.PathLike,
                       spec: FeatureSpec, run: str | os.PathLike | None = None, log=print) -> Path | None:
    """The page for an evaluation that is up to date but has none (made before pages existed, or
    with ``--no-html``): the folder is rebuilt beside itself with its entries hard-linked and the
    page added, then swapped in whole (``atomic_dir``); its marker lists the new entries."""
    out = Path(out)
    if (out / PAGE).is_file():
        return None
    with atomic_dir(out) as tmp:
        for entry in out.iterdir():
            if entry.name == MARKER_NAME or entry.name == MEDIA:
                continue
            if entry.is_dir():
                shutil.copytree(entry, tmp / entry.name, copy_function=_link_or_copy)
            else:
                _link_or_copy(entry, tmp / entry.name)
        page = write_listening_page(tmp, scores, tree, dataset_root, spec, run, log)
        write_marker(tmp, "evaluate")
    return out / page.name


def _link_or_copy(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """A hard link where the file system allows one, else a copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


# --------------------------------------------------------------------------- text
def _inline(text: str) -> str:
    text = html.escape(text, quote=False)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def markdown_html(text: str) -> str:
    """``report.md`` as HTML: the headings, paragraphs, lists, tables and images it writes."""
    out: list[str] = []
    table: list[list[str]] = []
    items: list[str] = []

    def flush() -> None:
        if table:
            head, *rows = table
            out.append("<table><thead><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in head) + "</tr></thead><tbody>"
                       + "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in rows)
                       + "</tbody></table>")
            table.clear()
        if items:
            out.append("<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>")
            items.clear()

    for line in text.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(set(c) <= set("-: ") for c in cells):
                table.append(cells)
            continue
        if line.startswith("- "):
            items.append(_inline(line[2:]))
            continue
        flush()
        heading = re.match(r"(#{1,4}) (.*)", line)
        image = re.fullmatch(r"!\[(.*?)\]\((.*?)\)", line.strip())
        if heading:
            level = len(heading.group(1))
            out.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
        elif image:
            out.append(f'<p><img src="{quote(image.group(2))}" alt="{html.escape(image.group(1))}"></p>')
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
    flush()
    return "\n".join(out)


def diff_html(said: str | None, heard: str | None) -> str:
    """What the ASR heard against what was said, word by word: ``<ins>`` heard but not said,
    ``<del>`` said but not heard (texts normalised as for the CER)."""
    if heard is None:
        return '<span class="muted">–</span>'
    hyp = normalize_text(heard).split()
    if not said:
        return html.escape(" ".join(hyp)) or '<span class="muted">(nothing)</span>'
    ref = normalize_text(said).split()
    parts = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, ref, hyp, autojunk=False).get_opcodes():
        if op == "equal":
            parts.append(html.escape(" ".join(hyp[j1:j2])))
            continue
        if i2 > i1:
            parts.append(f"<del>{html.escape(' '.join(ref[i1:i2]))}</del>")
        if j2 > j1:
            parts.append(f"<ins>{html.escape(' '.join(hyp[j1:j2]))}</ins>")
    return " ".join(parts) if hyp else '<span class="muted">(nothing heard)</span> ' + " ".join(parts)


def failures(row: dict, voice: str = "target") -> list[str]:
    """Why a conversion failed: closer to the source speaker than to the voice it should speak
    in, or a CER above the unconverted source's."""
    out = []
    sim_voice, sim_source = row.get(f"sim_{voice}_converted"), row.get("sim_source_converted")
    if sim_voice is not None and sim_source is not None and sim_source > sim_voice:
        out.append("closer to the source")
    if row.get("cer_converted") is not None and row.get("cer_source") is not None \
            and row["cer_converted"] > row["cer_source"]:
        out.append("CER above the source's")
    return out


def _num(value, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


# --------------------------------------------------------------------------- pictures
def spectrogram_png(audio: np.ndarray, spec: FeatureSpec, path: Path, size: tuple[int, int] = SPEC_SIZE) -> None:
    """A small log-mel picture (palette PNG, low frequencies at the bottom, 50 dB range)."""
    from matplotlib import colormaps
    from PIL import Image
    mel = logmel(audio, spec)
    width, height = size
    frames = mel.shape[1]
    # each pixel column averages its share of frames, at least one (audio shorter than the
    # picture is wide repeats frames)
    edges = np.linspace(0, frames, width + 1)
    starts = np.minimum(edges[:-1].astype(int), frames - 1)
    ends = np.maximum(edges[1:].astype(int), starts + 1)
    small = np.stack([mel[:, a:b].mean(axis=1) for a, b in zip(starts, ends)], axis=1)
    rows = np.linspace(0, small.shape[0] - 1, height).round().astype(int)
    small = small[rows][::-1]
    top = float(small.max())
    index = np.clip((small - (top - SPEC_RANGE)) / SPEC_RANGE * 63, 0, 63).astype(np.uint8)
    palette = (colormaps["magma"](np.linspace(0, 1, 64))[:, :3] * 255).astype(np.uint8)
    image = Image.fromarray(index, mode="P")
    image.putpalette(palette.flatten().tolist())
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG", optimize=True)


def _runs(ids: np.ndarray, seconds: float) -> list[tuple[float, float, str]]:
    spans, start = [], 0
    for k in range(1, len(ids) + 1):
        if k == len(ids) or ids[k] != ids[start]:
            spans.append((start * seconds, k * seconds, str(int(ids[start]))))
            start = k
    return spans


def units_picture(path: Path, mel: np.ndarray, hop: float, strips: list[tuple[str, object]], title: str,
                  window: float = UNIT_WINDOW) -> None:
    """The first ``window`` seconds of a log-mel with strips under it, one per row of ``strips``:
    (label, [(onset, offset, text), ...]) runs of a unit sequence or phones, or (label, (frames,
    dim) array over the whole utterance) drawn as an image (continuous unit vectors). A 20 ms
    unit is ~9 px wide: each run is a box, labelled with its id where the id fits."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    total = mel.shape[1] * hop
    seconds = min(window, total)
    frames = max(1, int(round(seconds / hop)))
    fig, axes = plt.subplots(1 + len(strips), 1, figsize=(15, 1.8 + 0.35 * len(strips)), sharex=True,
                             gridspec_kw={"height_ratios": [4] + [1] * len(strips), "hspace": 0.08})
    axes = np.atleast_1d(axes)
    axes[0].imshow(mel[:, :frames], origin="lower", aspect="auto", cmap="magma", extent=(0, seconds, 0, mel.shape[0]),
                   vmin=float(mel.max()) - SPEC_RANGE, vmax=float(mel.max()))
    axes[0].set_yticks([])
    axes[0].set_title(title + (f" (first {seconds:g} s of {total:.1f} s)" if seconds < total else ""), fontsize=9)
    px_per_second = 0.8 * 15 * 90 / max(seconds, 1e-3)
    for ax, (label, strip) in zip(axes[1:], strips):
        if isinstance(strip, np.ndarray):
            rows = max(1, int(round(len(strip) * seconds / total)))
            ax.imshow(strip[:rows].T, origin="lower", aspect="auto", cmap="coolwarm", extent=(0, seconds, 0, 1))
        else:
            for k, (onset, offset, text) in enumerate(strip):
                if onset >= seconds:
                    break
                offset = min(offset, seconds)
                ax.axvspan(onset, offset, color="#c9d3ee" if k % 2 else "#e9edf8", lw=0)
                width = (offset - onset) * px_per_second
                if width >= 5 * len(text) + 2:
                    ax.text((onset + offset) / 2, 0.5, text, ha="center", va="center", fontsize=7)
                elif width >= 7:
                    ax.text((onset + offset) / 2, 0.5, text, ha="center", va="center", fontsize=6, rotation=90)
        ax.set_yticks([])
        ax.set_ylim(0, 1)
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    axes[-1].set_xlim(0, seconds)
    axes[-1].set_xlabel("seconds", fontsize=8)
    axes[-1].tick_params(labelsize=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    from PIL import Image                       # a palette PNG: a third of the size
    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=96)
    small.save(path, format="PNG", optimize=True)


# --------------------------------------------------------------------------- the page
class _Builder:
    def __init__(self, out: Path, tree: SubmissionTree, dataset_root: Path, spec: FeatureSpec, run, log):
        self.out, self.tree, self.dataset_root, self.spec, self.log = out, tree, dataset_root, spec, log
        self.run = Path(run) if run is not None else None
        self.players = 0
        self._pictures: dict[Path, str | None] = {}

    def _rel(self, path: Path) -> str:
        return quote(path.relative_to(self.out).as_posix())

    def place(self, language: str, folder: str, source: Path | None, name: str, data: bytes | None = None) -> Path:
        """OUT/listen/<language>/<folder>/<name>: a hard link to (or a copy of) ``source``, or ``data``."""
        dst = self.out / MEDIA / language / folder / name
        if not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            if data is not None:
                dst.write_bytes(data)
            else:
                _link_or_copy(source, dst)
        return dst

    def converted(self, language: str, name: str) -> Path | None:
        rel = f"2019/{language}/test/{name}"
        if not self.tree.is_file(rel):
            return None
        src = Path(self.tree.source) / rel
        if self.tree.kind == "folder" and src.is_file() and not src.is_symlink():
            return self.place(language, "converted", src, name)
        try:
            return self.place(language, "converted", None, name, self.tree.read_bytes(rel, MAX_WAV_BYTES))
        except EntryError:
            return None

    def picture(self, wav: Path) -> str | None:
        """The small spectrogram of a wav inside OUT (relative URL), made once."""
        if wav not in self._pictures:
            rel = wav.relative_to(self.out)
            folder = rel.parts[0] if rel.parts[0] != MEDIA else rel.parts[-2]   # one_shot, test, converted...
            png = self.out / MEDIA / rel.parts[1] / "spec" / f"{folder}_{wav.stem}.png"
            try:
                spectrogram_png(read_wav(wav, self.spec.sample_rate), self.spec, png)
                self._pictures[wav] = self._rel(png)
            except UserError:
                self._pictures[wav] = None
        return self._pictures[wav]

    def player(self, wav: Path | None, label: str) -> str:
        if wav is None:
            return f'<td class="muted">no {html.escape(label)}</td>'
        self.players += 1
        pic = self.picture(wav)
        img = f'<img class="spec" src="{pic}" alt="log-mel of {html.escape(wav.name)}">' if pic else ""
        return (f'<td><audio controls preload="metadata" src="{self._rel(wav)}"></audio>{img}'
                f'<span class="muted">{html.escape(wav.name)}</span></td>')

    def language(self, language: str, extras: dict) -> str:
        dataset = Dataset(self.dataset_root, language)
        parts = [self._section(f"{language} converted lines", self.lines_section, language, dataset,
                               extras.get("speech") or {})]
        if "one_shot" in extras:
            parts.append(self._section(f"{language} one-shot trials", self.one_shot_section, language, dataset,
                                       extras["one_shot"]))
        parts.append(self._section(f"{language} units", self.units_section, language, dataset))
        return "\n".join(p for p in parts if p)

    def _section(self, what: str, build, *args) -> str:
        """One section, or a line saying why it is left out: the page is written after minutes of
        scoring, in the same folder swap as the scores, and must never cost them."""
        try:
            return build(*args)
        except Exception as exc:   # noqa: BLE001 (any failure of an add-on page, named on the page and the log)
            self.log(f"listening page: {what} left out ({type(exc).__name__}: {exc})")
            return f'<p class="flag">{html.escape(what)} left out: {html.escape(type(exc).__name__)}: ' \
                   f"{html.escape(str(exc))}</p>"

    def _table(self, table_id: str, heads: list[str], measures, rows: list[str], flagged: int) -> str:
        head = (f'<tr><th data-sort="n">{heads[0]}</th>' + "".join(f"<th>{h}</th>" for h in heads[1:])
                + "".join(f'<th data-sort="{key}">{html.escape(label)}</th>' for _, key, label, _ in measures)
                + '<th data-sort="fail">flags</th></tr>')
        return (f'<p>{flagged} of {len(rows)} flagged (closer to the source, or CER above the source\'s). '
                f'<label><input type="checkbox" class="only-fail" data-table="{table_id}"> flagged only</label>. '
                "Click a column head to sort. Under each player: what the ASR heard, <ins>heard but not said</ins>,"
                " <del>said but not heard</del>.</p>\n"
                f'<table class="lines" id="{table_id}"><thead>{head}</thead>\n' + "\n".join(rows) + "\n</table>")

    def _row(self, kind: str, n: int, title: str, said: str | None, players: list[tuple[Path | None, str, str]],
             row: dict, measures, fails: list[str], note: str = "") -> str:
        """One line as a ``<tbody>`` (what sorting moves): players and measures, then under each
        player what the ASR heard in it. ``players``: (wav, what, kind of its ``asr_<kind>``)."""
        attrs = " ".join(f'data-{key}="{"" if row.get(col) is None else repr(float(row[col]))}"'
                         for col, key, _, _ in measures)
        cells = "".join(f'<td class="num">{_num(row.get(col), digits)}</td>' for col, _, _, digits in measures)
        heard = "".join(f'<td class="text">{diff_html(said, row[f"asr_{asr}"]) if f"asr_{asr}" in row else ""}</td>'
                        for _, _, asr in players)
        return (f'<tbody class="{kind}{" fail" if fails else ""}" data-n="{n}" {attrs} data-fail="{len(fails)}">'
                f"<tr><td>{n}. <b>{html.escape(title)}</b></td>"
                + "".join(self.player(wav, what) for wav, what, _ in players)
                + f'{cells}<td class="flag" rowspan="2">{"<br>".join(fails)}</td></tr>'
                f'<tr><td class="text"><b>said:</b> {html.escape(said or "–")}{note}</td>{heard}'
                f'<td colspan="{len(measures)}"></td></tr></tbody>')

    def lines_section(self, language: str, dataset: Dataset, speech: dict) -> str:
        try:
            lines = dataset.synthesis()
        except UserError:
            return ""
        measured = {r["name"]: r for r in speech.get("per_line", [])}
        rows, flagged = [], 0
        for n, line in enumerate(lines, 1):
            converted = self.converted(language, line.output_name)
            if converted is None:
                continue
            row = measured.get(line.output_name, {})
            fails = failures(row)
            flagged += bool(fails)
            reference = dataset.reference(line)
            note = ("" if row else '<br><span class="muted">not scored (speech measures off, or beyond '
                    "evaluate.speech.max_lines)</span>")
            players = [(self.place(language, "test", line.source.path, line.source.path.name), "source", "source"),
                       (converted, "converted wav", "converted"),
                       (self.place(language, "reference", reference.path, reference.path.name) if reference
                        else None, "target-voice reference", "reference")]
            rows.append(self._row("line", n, f"{line.output_name}", dataset.transcript(line.source), players, row,
                                  LINE_MEASURES, fails, f"<br>{html.escape(line.source.key)} &rarr; "
                                  f"{html.escape(line.voice)}{note}"))
        if not rows:
            return ""
        table = self._table(f"lines-table-{language}", ["line", "source", "converted", "target voice (reference)"],
                            LINE_MEASURES, rows, flagged)
        return (f'<h2 id="lines-{language}">Converted lines ({language}): {len(rows)} of {len(lines)} synthesis '
                f"lines</h2>\n{table}")

    def one_shot_section(self, language: str, dataset: Dataset, one_shot: dict) -> str:
        trials = one_shot.get("per_trial") or []
        if not trials:
            return ""
        rows, flagged = [], 0
        for n, row in enumerate(trials, 1):
            source, reference = self._utterance(dataset, row.get("source_utterance")), \
                self._utterance(dataset, row.get("reference_utterance"))
            converted = self.out / "one_shot" / language / row["name"]
            fails = failures(row, "reference")
            flagged += bool(fails)
            players = [(self.place(language, "test", source.path, source.path.name) if source else None, "source",
                        "source"),
                       (self.place(language, "test", reference.path, reference.path.name) if reference else None,
                        "reference speaker", "reference"),
                       (converted if converted.is_file() else None, "converted wav", "converted")]
            rows.append(self._row("trial", n, row["name"], dataset.transcript(source) if source else None, players,
                                  row, TRIAL_MEASURES, fails))
        table = self._table(f"oneshot-table-{language}", ["trial", "source", "reference speaker", "converted"],
                            TRIAL_MEASURES, rows, flagged)
        return (f'<h2 id="oneshot-{language}">One-shot conversion ({language}): {len(rows)} trials, '
                f'{html.escape(str(one_shot.get("vocoder_kind", "")))} vocoder</h2>\n{table}')

    @staticmethod
    def _utterance(dataset: Dataset, key: str | None) -> Utterance | None:
        try:
            return dataset.find(key) if key else None
        except UserError:
            return None

    # ----------------------------------------------------------------------- units
    def units_section(self, language: str, dataset: Dataset) -> str:
        utts = self._unit_utterances(dataset)
        if not utts:
            return ""
        checkpoint = RunLayout.of(self.run).vqvae_checkpoint if self.run is not None else None
        system = None
        if checkpoint is not None and checkpoint.is_file():
            system = load_unit_system(checkpoint, "cpu")
        try:
            lines = dataset.synthesis()
        except UserError:
            lines = []
        blocks = []
        for utt in utts:
            picture, what = self._units_picture(language, dataset, utt, system)
            if picture is None:
                continue
            players = [self.player(self.place(language, "test", utt.path, utt.path.name), "source")]
            for line in lines:
                if line.source.key == utt.key:
                    players.append(self.player(self.converted(language, line.output_name), "converted wav"))
            blocks.append(f'<h3>{html.escape(utt.key)} ({html.escape(what)})</h3>\n'
                          f'<img class="units" src="{self._rel(picture)}" alt="units of {html.escape(utt.key)}">'
                          f'<table><tr>{"".join(players)}</tr></table>')
        if not blocks:
            return ""
        source = (f"encoded by the run's unit system {html.escape(str(checkpoint))}" if system is not None
                  else "read from the submission's test/ unit files")
        return (f'<h2 id="units-{language}">Units ({language})</h2>\n<p>A few test utterances with their unit '
                f"sequence under the log-mel ({source}); runs of one unit are one box, labelled with its id "
                f"when it fits; the phone row is the dataset's alignment. <code>zs2020 units show KEY --run RUN"
                f"</code> prints the same as a table; <code>zs2020 units listen 12 12 40x5 --run RUN --speaker "
                f"V001 --out x.wav</code> lets you hear a unit sequence.</p>\n" + "\n".join(blocks))

    def _unit_utterances(self, dataset: Dataset) -> list[Utterance]:
        """The first sources of the synthesis lines (they have converted wavs), else long test utterances."""
        try:
            sources = list(dict.fromkeys(line.source for line in dataset.synthesis()))
        except UserError:
            sources = []
        if not sources:
            sources = [u for u in dataset.utterances("test", required=False) if u.duration() >= 1.0]
        return sources[:UNIT_UTTERANCES]

    def _units_picture(self, language: str, dataset: Dataset, utt: Utterance, system) -> tuple[Path | None, str]:
        spec = system.spec if system is not None else self.spec
        try:
            audio = read_wav(utt.path, spec.sample_rate)
        except UserError:
            return None, ""
        mel = logmel(audio, spec)
        hop = spec.frame_period
        strips: list[tuple[str, object]] = []
        segments = dataset.alignment(utt)
        if segments:
            strips.append(("phones", [(s.onset, s.offset, s.phone) for s in segments]))
        if system is not None:
            units = system.encode_mel(mel)
            for level in ("bottom", "top"):
                ids = np.asarray(getattr(units, f"{level}_ids"))
                if len(ids):
                    strips.append((level, _runs(ids, mel.shape[1] * hop / len(ids))))
            what = f"{type(system).__name__} units"
        else:
            rel = f"2019/{language}/test/{utt.utt_id}.txt"
            try:
                arr = parse_units(self.tree.read_bytes(rel, MAX_UNIT_FILE_BYTES).decode("ascii"), rel)
            except (EntryError, UnitFileError, UnicodeDecodeError):
                return None, ""
            values, ids = np.unique(arr, axis=0, return_inverse=True)
            discrete = len(values) <= len(arr) // 2
            strips.append(("test/", _runs(ids.reshape(-1), mel.shape[1] * hop / len(arr)) if discrete else arr))
            what = "submission units, distinct vectors numbered" if discrete else "submission vectors (continuous)"
        path = self.out / MEDIA / language / "units" / f"{utt.utt_id}.png"
        units_picture(path, mel, hop, strips, f"{utt.key}: {what}")
        return path, what


def page_summary(out: str | os.PathLike) -> dict:
    """What the page plays and shows, for tests and the headless check: players' and pictures'
    relative paths, and the page's size with and without the wavs."""
    out = Path(out)
    text = (out / PAGE).read_text(encoding="utf-8")
    audio = re.findall(r'<audio[^>]* src="([^"]+)"', text)
    images = re.findall(r'<img[^>]* src="([^"]+)"', text)
    files = [p for p in out.rglob("*") if p.is_file()]
    return {"players": audio, "images": images,
            "bytes_without_wavs": sum(p.stat().st_size for p in files if p.suffix != ".wav"),
            "bytes": sum(p.stat().st_size for p in files)}


if __name__ == "__main__":   # python -m pipeline.evaluation.listening OUT: what a page holds
    import sys
    print(json.dumps(page_summary(sys.argv[1]), indent=1))
