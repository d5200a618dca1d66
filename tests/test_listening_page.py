"""The listening page of ``zs2020 evaluate`` (OUT/index.html), built from the tiny run as a person
would open it: every player's file exists inside OUT (and still does in a copy of OUT moved
elsewhere), every scored row carries its measures and the right flag, nothing is fetched from
the network. Playing it in a browser is ``scripts/check_listening_page.py`` (headless Chromium,
not needed here)."""
from __future__ import annotations

import json
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest
import soundfile as sf
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.contract.dataset import Dataset
from pipeline.contract.reader import open_submission
from pipeline.core.outputs import read_marker
from pipeline.evaluation.evaluate import evaluate_submission
from pipeline.evaluation.listening import PAGE, diff_html, failures, markdown_html, write_listening_page
from pipeline.stages.submit import make_submission
from tests.fixtures_config import SPEC

pytestmark = pytest.mark.slow     # needs the trained tiny run (shared session fixture)

MEASURES = {"simt": "sim_target_converted", "sims": "sim_source_converted", "cer": "cer_converted",
            "cers": "cer_source", "dnsmos": "dnsmos_converted", "mcd": "mcd_converted"}


class Page(HTMLParser):
    """What a reader of the page meets: players, pictures, links, and the line rows (tbodies)."""

    def __init__(self, text: str):
        super().__init__()
        self.audio, self.images, self.links, self.scripts, self.ids = [], [], [], [], set()
        self.rows: list[dict] = []        # one per <tbody>: its attributes and its players
        self.open: dict | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        for key in ("src", "href"):
            if key in attrs:
                self.links.append(attrs[key])
        if tag == "tbody":
            self.rows.append({"attrs": attrs, "audio": []})
            self.open = self.rows[-1]
        elif tag == "audio":
            self.audio.append(attrs["src"])
            if self.open is not None:
                self.open["audio"].append(attrs["src"])
        elif tag == "img":
            self.images.append(attrs["src"])
        elif tag in ("script", "link", "iframe"):
            self.scripts.append(attrs)

    def handle_endtag(self, tag):
        if tag in ("tbody", "table"):
            self.open = None

    def lines(self, kind: str = "line") -> list[dict]:
        return [r for r in self.rows if kind in r["attrs"].get("class", "").split()]


@pytest.fixture(scope="module")
def evaluated(tiny_run, tiny_corpus, tiny_config, tmp_path_factory):
    """The tiny run's submission, evaluated with the speech measures (tiny config: 4 lines)."""
    base = tmp_path_factory.mktemp("listen")
    submission = base / "submission"
    make_submission(tiny_corpus, tiny_run, submission, tiny_config, make_zip=False, progress=False)
    out = base / "evaluation"
    scores = evaluate_submission(submission, tiny_corpus, out, tiny_config, run=tiny_run, jobs=2, baselines=False,
                                 distances=("cosine",), log=lambda text: None)
    return scores, submission, out


def check_folder(out: Path) -> Page:
    """Every file the page plays or shows lies inside ``out`` (relative links only) and exists."""
    page = Page((out / PAGE).read_text(encoding="utf-8"))
    for link in page.links:
        assert not re.match(r"^[a-z]+:|^//", link) or link.startswith("#"), f"non-relative link {link}"
        if link.startswith("#"):
            assert link[1:] in page.ids, f"dangling anchor {link}"
            continue
        path = Path(unquote(link))
        assert not path.is_absolute() and ".." not in path.parts, link
        assert (out / path).is_file(), f"{link}: missing in {out}"
    for src in page.audio:
        info = sf.info(str(out / unquote(src)))
        assert info.frames > 0 and info.samplerate > 0, src
    assert all("src" not in attrs for attrs in page.scripts), "external script or stylesheet"
    return page


def test_every_line_has_its_players_and_measures(evaluated, tiny_corpus):
    scores, _, out = evaluated
    page = check_folder(out)
    text = (out / PAGE).read_text(encoding="utf-8")
    assert "<h1>zs2020 evaluation</h1>" in text and "Official scores" in text      # report.md's headline
    assert "left out" not in text                                                   # every section built
    lines = Dataset(tiny_corpus).synthesis()
    rows = page.lines()
    assert len(rows) == len(lines) > 0                                              # one row per synthesis line
    assert all(len(r["audio"]) == 3 for r in rows)                                  # source, converted, reference
    per_line = {r["name"]: r for r in scores["zs2020_extras"]["english"]["speech"]["per_line"]}
    assert len(per_line) == min(4, len(lines))                                      # tiny: evaluate.speech.max_lines
    scored = 0
    for row in rows:
        name = unquote(row["audio"][1]).rsplit("/", 1)[-1]
        measured = per_line.get(name)
        if measured is None:
            continue
        scored += 1
        for key, column in MEASURES.items():
            assert float(row["attrs"][f"data-{key}"]) == pytest.approx(measured[column]), (name, key)
        failing = (measured["sim_source_converted"] > measured["sim_target_converted"]
                   or measured["cer_converted"] > measured["cer_source"])
        assert ("fail" in row["attrs"]["class"].split()) == failing
        assert int(row["attrs"]["data-fail"]) == len(failures(measured))
    assert scored == len(per_line)
    assert "units-english" in page.ids and any("/units/" in src for src in page.images)
    assert all(th in text for th in ('data-sort="cer"', 'data-sort="simt"', 'data-sort="dnsmos"'))
    assert {"index.html", "listen"} <= set(read_marker(out, "evaluate")["entries"])  # the stage's own files


def test_wavs_are_hard_links_and_the_folder_plays_from_a_copy(evaluated, tiny_corpus, tmp_path):
    _, _, out = evaluated
    line = Dataset(tiny_corpus).synthesis()[0]
    linked = out / "listen" / "english" / "test" / line.source.path.name
    if os.stat(tiny_corpus).st_dev == os.stat(out).st_dev:
        assert os.path.samefile(linked, line.source.path)                         # a hard link, not a copy
    moved = Path(shutil.copytree(out, tmp_path / "elsewhere" / "evaluation"))
    page = check_folder(moved)
    assert len(page.audio) == len(Page((out / PAGE).read_text()).audio)


def test_no_html_then_the_page_is_added_without_rescoring(evaluated, tiny_run, tiny_corpus, tmp_path):
    _, submission, _ = evaluated
    out = tmp_path / "evaluation"
    args = ["evaluate", str(submission), "--dataset", str(tiny_corpus), "--out", str(out), "--run", str(tiny_run),
            "--config", "tiny", "--no-speech", "--no-baselines", "--distances", "cosine"]
    result = CliRunner().invoke(main, args + ["--no-html"])
    assert result.exit_code == 0, result.output
    assert not (out / PAGE).exists() and not (out / "listen").exists()
    scores_time = (out / "scores.json").stat().st_mtime_ns
    result = CliRunner().invoke(main, args)                         # up to date: only the page is added
    assert result.exit_code == 0, result.output
    assert "is up to date" in result.output and f"listen: {out / PAGE}" in result.output
    assert (out / "scores.json").stat().st_mtime_ns == scores_time
    page = check_folder(out)
    assert page.lines() and all(r["attrs"]["data-cer"] == "" for r in page.lines())   # speech measures off
    assert "not scored" in (out / PAGE).read_text()
    assert "index.html" in read_marker(out, "evaluate")["entries"]
    result = CliRunner().invoke(main, args + ["--force"])           # the folder is still evaluate's own
    assert result.exit_code == 0, result.output


def test_one_shot_rows_and_units_from_the_unit_files(evaluated, tiny_corpus, tmp_path):
    """A VQMIVC run's one-shot trials (hand-made here): source, reference speaker and converted
    players, flagged when closer to the source; without a run, units come from the submission."""
    scores, submission, out = evaluated
    folder = Path(shutil.copytree(out, tmp_path / "evaluation"))
    ds = Dataset(tiny_corpus)
    long_utts = [u for u in ds.utterances("test") if u.duration() >= 1.0]
    source = long_utts[0]
    reference = next(u for u in long_utts if u.speaker != source.speaker)
    (folder / "one_shot" / "english").mkdir(parents=True)
    trials = []
    for sim_reference in (0.4, 0.8):          # closer to the source (flagged), then closer to the reference
        name = f"{source.utt_id}_as_{reference.speaker}_{sim_reference}.wav"
        shutil.copyfile(reference.path, folder / "one_shot" / "english" / name)
        trials.append({"name": name, "source_utterance": source.key, "reference_utterance": reference.key,
                       "sim_reference_converted": sim_reference, "sim_source_converted": 0.6, "cer_converted": 0.2,
                       "cer_source": 0.3, "asr_converted": "a b", "asr_source": "a c"})
    scores = json.loads(json.dumps(scores))
    scores["zs2020_extras"]["english"]["one_shot"] = {"trials": 2, "vocoder_kind": "universal", "per_trial": trials}
    with open_submission(submission) as tree:
        write_listening_page(folder, scores, tree, tiny_corpus, SPEC, run=None, log=lambda text: None)
    page = check_folder(folder)
    rows = page.lines("trial")
    assert len(rows) == 2 and all(len(r["audio"]) == 3 for r in rows)           # source, reference, converted
    assert [("fail" in r["attrs"]["class"].split(), r["attrs"]["data-fail"]) for r in rows] == [(True, "1"),
                                                                                               (False, "0")]
    assert [float(r["attrs"]["data-simt"]) for r in rows] == [0.4, 0.8]
    assert "oneshot-english" in page.ids
    assert "read from the submission" in (folder / PAGE).read_text() and "left out" not in (folder / PAGE).read_text()


def test_units_listen_links_to_the_page(evaluated, tiny_run, tmp_path):
    _, _, out = evaluated
    run = tmp_path / "run"
    (run / "vqvae").mkdir(parents=True)
    os.link(tiny_run / "vqvae" / "checkpoint.pt", run / "vqvae" / "checkpoint.pt")
    shutil.copytree(out, run / "evaluation")
    result = CliRunner().invoke(main, ["units", "listen", "3", "3", "5", "--run", str(run), "--speaker", "V001",
                                       "--top", "0", "--vocoder", "griffinlim", "--device", "cpu",
                                       "--out", str(tmp_path / "units.wav")])
    assert result.exit_code == 0, result.output
    assert f"{(run / 'evaluation' / PAGE).resolve().as_uri()}#units-english" in result.output


def test_asr_differences_and_report_tables():
    marked = diff_html("The cat sat on the mat.", "the bat sat on mat")
    assert marked == "the <del>cat</del> <ins>bat</ins> sat on <del>the</del> mat"
    assert "nothing heard" in diff_html("a b", "")
    assert failures({"sim_target_converted": 0.5, "sim_source_converted": 0.6, "cer_converted": 0.1,
                     "cer_source": 0.2}) == ["closer to the source"]
    assert failures({"sim_reference_converted": 0.7, "sim_source_converted": 0.6, "cer_converted": 0.3,
                     "cer_source": 0.2}, "reference") == ["CER above the source's"]
    html = markdown_html("# t\n\n| a | b |\n|---|---|\n| **1** | <x> |\n\n- n/a: x\n\n![p.png](p.png)\n")
    assert "<th>a</th>" in html and "<td><strong>1</strong></td>" in html and "&lt;x&gt;" in html
    assert "<li>n/a: x</li>" in html and '<img src="p.png"' in html
