"""Which folders a stage may write into or replace: only its own.

Every stage that writes a folder claims it first (``claim_folder``), before any work:

- an ``--out`` that is one of the command's inputs, holds one, or lies inside one (a dataset,
  a submission, a checkpoint, a features folder) is refused; a run folder is the one input
  whose inside is for outputs (``Input(..., holds_outputs=True)``), but it is never an output;
- an ``--out`` that exists and is not empty is refused unless it is the stage's own: it holds
  what the stage always writes there (``EVIDENCE``: a checkpoint, a stamp book, a manifest) or
  the stage's marker ``.zs2020-output.json``, which names the stage and the entries it wrote.
  The submission folder's official layout admits no extra entry, so its marker lies beside it
  (``.<name>.zs2020-output.json``);
- a stage that replaces its folder whole (corpus, submit, evaluate) writes the marker with the
  new folder, and refuses, ``--force`` or not, a folder holding entries it did not write: a
  file the user put there survives.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from pipeline.core.errors import UserError
from pipeline.core.io import check_output_path, write_text_atomic

MARKER_NAME = ".zs2020-output.json"
# Stages whose output folder is replaced whole, with the marker beside it (official layout).
MARKED_BESIDE = {"submit"}
# What each stage always writes in its folder (an interrupted training or encoding has it before
# any marker could be written); "../" names a file beside the folder.
EVIDENCE: dict[str, tuple[str, ...]] = {
    "corpus": ("manifest.json",),
    "features": (".english.h5.stamp.json", ".surprise.h5.stamp.json"),
    "train-vqvae": ("checkpoint.pt",),
    "train-melgan": ("checkpoint.pt",),
    "encode": (".stamps.json",),
    "convert": (".stamps.json",),
    "submit": ("../.{name}.stamp.json",),
    "evaluate": ("scores.json",),
}


@dataclass(frozen=True)
class Input:
    """One input of a command: ``label`` names it in messages (``--dataset``)."""
    label: str
    path: Path | str | None
    holds_outputs: bool = False     # a run folder: stage outputs live inside it


def marker_path(folder: str | os.PathLike, stage: str) -> Path:
    folder = Path(folder)
    if stage in MARKED_BESIDE:
        return folder.with_name(f".{folder.name}{MARKER_NAME}")
    return folder / MARKER_NAME


def read_marker(folder: str | os.PathLike, stage: str) -> dict:
    try:
        data = json.loads(marker_path(folder, stage).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_marker(folder: str | os.PathLike, stage: str, marker_for: str | os.PathLike | None = None) -> None:
    """Mark ``folder`` as ``stage``'s output, recording its entries. ``marker_for``: the final
    path when ``folder`` is a temporary that will be renamed onto it (a marker beside the
    folder goes beside the final path)."""
    folder = Path(folder)
    entries = sorted(p.name for p in folder.iterdir() if p.name != MARKER_NAME) if folder.is_dir() else []
    target = marker_path(marker_for if marker_for is not None else folder, stage)
    write_text_atomic(target, json.dumps({"stage": stage, "entries": entries}, indent=1) + "\n")


def is_own_folder(folder: Path, stage: str) -> bool:
    if read_marker(folder, stage).get("stage") == stage:
        return True
    for evidence in EVIDENCE.get(stage, ()):
        if evidence.startswith("../"):
            if (folder.parent / evidence[3:].format(name=folder.name)).is_file():
                return True
        elif (folder / evidence).exists():
            return True
    return False


def _resolved(path: str | os.PathLike) -> Path:
    return Path(os.path.abspath(os.path.realpath(path)))


def _is_housekeeping(name: str) -> bool:
    """A lock or a temporary of zs2020's own atomic writes (pipeline.core.io): what a killed run
    leaves in a folder it had only begun to write, which the next run of the stage cleans up."""
    return name == MARKER_NAME or (name.startswith(".") and name.endswith((".lock", ".tmp")))


def refuse_overlap(out: str | os.PathLike, inputs: Iterable[Input], option: str = "--out") -> None:
    """``out`` must not be an input, hold one, or (unless the input holds outputs) lie in one."""
    target = _resolved(out)
    for item in inputs:
        if item.path is None or str(item.path) == "":
            continue
        source = _resolved(item.path)
        if target == source:
            raise UserError(f"{option} {out}: is {item.label} {item.path}, which this command reads; "
                            f"choose another {option}")
        if target in source.parents:
            raise UserError(f"{option} {out}: holds {item.label} {item.path}, which this command reads; "
                            f"choose another {option}")
        if source in target.parents and not item.holds_outputs:
            raise UserError(f"{option} {out}: lies inside {item.label} {item.path}; choose a path outside it")


def claim_folder(out: str | os.PathLike, stage: str, inputs: Iterable[Input] = (), *, replaces: bool = False,
                 option: str = "--out") -> None:
    """Refuse, before any work and touching nothing, an output folder ``stage`` may not write
    (see the module's docstring). ``replaces``: the stage swaps the folder whole."""
    out = Path(out)
    check_output_path(out, option=option)
    refuse_overlap(out, inputs, option)
    if not out.is_dir():
        return
    try:
        entries = {p.name for p in out.iterdir()}
    except OSError as exc:
        raise UserError(f"{option} {out}: cannot be read ({exc.strerror})") from None
    if not {name for name in entries if not _is_housekeeping(name)}:
        return
    if not is_own_folder(out, stage):
        raise UserError(f"{option} {out}: is a non-empty folder that `zs2020 {stage}` did not write; "
                        f"its files are left alone: remove them or choose another {option}")
    if replaces:
        marker = read_marker(out, stage)
        recorded = marker.get("entries")
        if isinstance(recorded, list):
            foreign = sorted(entries - set(recorded) - {MARKER_NAME})
            if foreign:
                raise UserError(f"{option} {out}: holds {', '.join(foreign[:3])}{' ...' if len(foreign) > 3 else ''}, "
                                f"which `zs2020 {stage}` did not write and would replace; move it out or "
                                f"choose another {option}")


def claim_file(path: str | os.PathLike, what: str, inputs: Iterable[Input] = (), *, owned: bool,
               option: str) -> None:
    """A single-file output (a zip): not an input nor inside one, and an existing file only if
    ``owned`` (the stage's stamp says it wrote it)."""
    path = Path(path)
    check_output_path(path, "file", option)
    refuse_overlap(path, inputs, option)
    if os.path.lexists(path) and not owned:
        raise UserError(f"{option} {path}: exists and was not written by zs2020 as {what}; it is left alone: "
                        f"remove it or choose another {option}")
