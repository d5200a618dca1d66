"""Studies as data: what a study file says, what a row is, and the results page made from rows.

A study is one YAML file under ``benchmarks/studies/``::

    title: Decoder choices of the VQ-VAE-2
    question: Which decoder keeps the words when the units are re-spoken in another voice?
    measure: conversion          # a name in benchmarks/study_measures.py: units, conversion
    preset: demo
    seeds: [1234, 7]
    base: {}                     # key: value overlay every variant starts from (after the preset)
    variants:                    # name (what it changes) -> overlay on base
      default: {}
      vqvae.model.decoder_blocks=0: {vqvae.model.decoder_blocks: 0}

Its results live beside it, in ``<study>.json``: one row per (variant, seed) with the overlay,
the resolved config's fingerprint, the code commit that measured it and the measures. A row
recorded before the runner existed is one summary for all its seeds (``"seeds": [1234, 7]``,
each measure as published, e.g. ``"0.371 (0.351-0.391)"``) with the commit that measured it. A row is
re-measured only when its resolved config or the commit differ from the ones asked for; rows
measured by code that no longer exists (a retired switch) keep their commit and stay on the
page. ``docs/results/<study>.md`` is rendered from the JSON alone: no table is typed by hand.

A record (``measure: recorded``) keeps a table measured by another command (a diagnosis
benchmark, a fresh-clone ``make evaluate``) as data: the study file names that ``command`` and its
``columns`` (key, label, digits), each row of its JSON is one line of the table with the commit that
published it, and the runner renders it but cannot re-measure it (re-run the command instead).
"""
from __future__ import annotations

import json
import math
import statistics
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline.core.config import load_config
from pipeline.core.stamp import fingerprint

REPO = Path(__file__).resolve().parents[1]
STUDY_DIR = REPO / "benchmarks" / "studies"
RESULTS_DIR = REPO / "docs" / "results"
RECORDED = "recorded"    # the measure of a record: rows measured by another command, kept as data


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    digits: int


@dataclass
class Study:
    name: str
    title: str
    question: str
    measure: str
    preset: str
    seeds: list[int]
    base: dict[str, Any]
    variants: dict[str, dict[str, Any]]
    path: Path
    notes: str = ""
    command: str = ""                                   # a record's: what measured its rows
    columns: list[Column] = field(default_factory=list)  # a record's: its table's columns

    @classmethod
    def load(cls, path: str | Path) -> "Study":
        path = Path(path)
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or not isinstance(data.get("variants"), dict):
            raise SystemExit(f"{path}: a study needs a mapping with title, measure, preset, seeds and variants")
        return cls(name=path.stem, title=str(data["title"]), question=str(data.get("question", "")),
                   measure=str(data["measure"]), preset=str(data.get("preset", "demo")),
                   seeds=[int(s) for s in data.get("seeds", [1234])], base=dict(data.get("base") or {}),
                   variants={str(k): dict(v or {}) for k, v in data["variants"].items()}, path=path,
                   notes=str(data.get("notes", "")), command=str(data.get("command", "")),
                   columns=[Column(str(c["key"]), str(c["label"]), int(c.get("digits", 2)))
                            for c in data.get("columns") or []])

    @property
    def is_record(self) -> bool:
        return self.measure == RECORDED

    @property
    def results_path(self) -> Path:
        return self.path.with_suffix(".json")

    def overlay(self, variant: str) -> dict[str, Any]:
        return {**self.base, **self.variants[variant]}

    def overrides(self, variant: str, seed: int) -> list[str]:
        """The overlay as the ``key=value`` overrides every zs2020 stage takes."""
        return [f"{k}={json.dumps(v)}" for k, v in self.overlay(variant).items()] + [f"seed={seed}"]

    def config_identity(self, variant: str, seed: int) -> str:
        """The resolved config a row was measured with (whatever spelled it)."""
        return fingerprint(load_config(self.preset, self.overrides(variant, seed)).to_dict())


def code_commit() -> str:
    """The commit of the code that measures (``+dirty`` when tracked files differ from it)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


@dataclass
class Results:
    """The rows of one study's JSON file."""
    path: Path
    rows: list[dict] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> "Results":
        if not path.is_file():
            return cls(path)
        return cls(path, list(json.loads(path.read_text(encoding="utf-8")).get("rows", [])))

    def find(self, variant: str, seed: int) -> dict | None:
        return next((r for r in self.rows if r["variant"] == variant and r.get("seed") == seed), None)

    def put(self, row: dict) -> None:
        """A measured row replaces the row of its (variant, seed) and any recorded summary of the variant."""
        self.rows = [r for r in self.rows if r["variant"] != row["variant"]
                     or ("seeds" not in r and r.get("seed") != row["seed"])] + [row]

    def save(self) -> None:
        """One row a line: small files whose diffs show which rows changed."""
        rows = ",\n ".join(json.dumps(r, sort_keys=True) for r in self.rows)
        self.path.write_text('{"rows": [\n ' + rows + "\n]}\n", encoding="utf-8")


def is_current(row: dict | None, identity: str, commit: str) -> bool:
    return row is not None and row.get("config") == identity and row.get("commit") == commit


# ============================================================================ the page
def mean_range(values: list, digits: int) -> str:
    """A cell: the value, or the mean with the range over seeds; "–" when nothing was measured."""
    values = [v for v in values if isinstance(v, (int, float)) and not math.isnan(v)]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def _overlay_text(overlay: dict) -> str:
    return ", ".join(f"`{k}={json.dumps(v)}`" for k, v in overlay.items()) or "(base)"


_UNSET = object()


def table_rows(study: Study, results: Results, columns: list[Column]) -> list[list[str]]:
    """One row per variant (the study's order, then recorded variants it no longer lists)."""
    names = list(study.variants) + sorted({r["variant"] for r in results.rows} - set(study.variants))
    table = []
    for name in names:
        rows = sorted((r for r in results.rows if r["variant"] == name), key=lambda r: r.get("seed", 0))
        if not rows:
            continue
        if name in study.variants:
            overlay = study.variants[name]
        else:                           # a row the study no longer lists: what its overlay changes in the base
            overlay = {k: v for k, v in rows[0].get("overlay", {}).items() if study.base.get(k, _UNSET) != v}
        commits = sorted({r.get("commit", "unknown") for r in rows})
        if "seeds" in rows[0]:         # a recorded summary: one row for all its seeds
            row = rows[0]
            cells = [_recorded_cell(row["measures"].get(c.key), c.digits) for c in columns]
            seeds = ",".join(str(s) for s in row["seeds"])
        else:
            cells = [mean_range([r["measures"].get(c.key) for r in rows], c.digits) for c in columns]
            seeds = ",".join(str(r["seed"]) for r in rows)
        table.append([name, _overlay_text(overlay), seeds, " ".join(commits)] + cells)
    return table


def _recorded_cell(value, digits: int) -> str:
    """A recorded summary keeps the text it was published with ("0.371 (0.351-0.391)")."""
    if value is None:
        return "–"
    return value if isinstance(value, str) else mean_range([value], digits)


def render_page(study: Study, results: Results, columns: list[Column]) -> str:
    """The page: title, question, where its rows come from, the table, the notes. A study's rows
    are its variants (mean and range over seeds); a record's are its JSON rows as published."""
    if study.is_record:
        header = ["row", "seeds", "commit"] + [c.label for c in study.columns]
        source = [f"A record (`benchmarks/studies/{study.name}.yaml`): rows measured by the command below, at "
                  f"the commit in each row, kept as data in `benchmarks/studies/{study.name}.json`; this page "
                  f"is generated from it by `.venv/bin/python benchmarks/study.py render`: do not edit it.", ""]
        if study.command:
            source += ["```sh", study.command.strip(), "```", ""]
        rows = [[row["variant"], ",".join(str(s) for s in row.get("seeds", [row.get("seed", "")])),
                 row.get("commit", "unknown")] + [_recorded_cell(row["measures"].get(c.key), c.digits)
                                                  for c in study.columns] for row in results.rows]
    else:
        header = ["variant", "changes", "seeds", "commit"] + [c.label for c in columns]
        source = [f"Study file `benchmarks/studies/{study.name}.yaml` (preset `{study.preset}`, measure "
                  f"`{study.measure}`); each cell is the mean over seeds with the range in brackets. "
                  f"Measured with `.venv/bin/python benchmarks/study.py run benchmarks/studies/{study.name}.yaml`; "
                  f"this page is generated from `benchmarks/studies/{study.name}.json` by "
                  f"`.venv/bin/python benchmarks/study.py render`: do not edit it.", ""]
        if study.base:
            source += [f"Every variant starts from: {_overlay_text(study.base)}.", ""]
        rows = table_rows(study, results, columns)
    lines = [f"# {study.title}", ""] + ([study.question, ""] if study.question else []) + source
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    if study.notes:
        lines += ["", study.notes.strip()]
    return "\n".join(lines) + "\n"


def parse_table(page: str) -> list[list[str]]:
    """The body rows of the first markdown table of a page (for checking a page against its JSON)."""
    rows = [line for line in page.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows[1:]]
