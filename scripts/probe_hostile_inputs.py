#!/usr/bin/env python
"""Every hostile input of issue 32 through the real ``zs2020`` script, as a table.

Each case makes its own damaged inputs (a checkpoint that lost a key, a dataset copy whose
synthesis.txt is Latin-1, a folder nested past PATH_MAX, ...) in a temporary folder, runs one
``zs2020`` command and prints ``case | rc | first line of output``, where the first line is
the Error: line when there is one (log lines and progress bars may come before it). A handled
refusal reads ``1 | Error: ...`` and names the file (and line) or the bad value; a crash reads
``Traceback ... <its last line>`` or a negative rc (killed by that signal).
tests/test_hostile_inputs.py runs this same catalogue in-process and checks every refusal.

Without --run and --dataset it first builds a tiny corpus and a tiny trained run in the
temporary folder (about a minute on two cores; the corpus needs the Debian speech engines of
scripts/install_system_deps.sh). A given run and dataset are only read, never changed.

Usage: .venv/bin/python scripts/probe_hostile_inputs.py [--run RUN --dataset ROOT] [--only TEXT] [--keep]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np

PATH_MAX = 4096


# ============================================================================ the catalogue
@dataclass(frozen=True)
class Case:
    args: list[str]                        # zs2020 arguments
    expect: tuple[str, ...]                # what the one Error: line must name
    env: dict[str, str] = field(default_factory=dict)
    alone: bool = True                     # False: log lines or progress bars come before the Error line


class Workspace:
    """The tiny dataset and run every case damages copies of, and a folder per case.

    ``zs2020(args)`` runs one command and raises on failure: a real process for the probe,
    click's test runner for the tests."""

    def __init__(self, dataset: Path, run: Path, root: Path, zs2020: Callable[[list[str]], None]):
        self.dataset, self.run, self.root, self.zs2020 = Path(dataset), Path(run), Path(root), zs2020

    def folder(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def dataset_copy(self, folder: Path) -> Path:
        return Path(shutil.copytree(self.dataset, folder / "dataset"))

    def run_copy(self, folder: Path) -> Path:
        """The run's checkpoints only (what submit and convert read)."""
        for kind in ("vqvae", "melgan"):
            (folder / "run" / kind).mkdir(parents=True)
            shutil.copyfile(self.run / kind / "checkpoint.pt", folder / "run" / kind / "checkpoint.pt")
        return folder / "run"

    @staticmethod
    def english(dataset: Path) -> Path:
        return dataset / "2019" / "english"

    def test_wav(self) -> Path:
        """The first long test utterance (a synthesis source: alignments and long items name it)."""
        source = (self.english(self.dataset) / "synthesis.txt").read_text().split()[0]
        return self.english(self.dataset) / f"{source}.wav"

    @cached_property
    def encoded(self) -> Path:
        """The test split encoded to npz, once."""
        out = self.folder("shared") / "encoded"
        self.zs2020(["encode", "--checkpoint", str(self.run / "vqvae" / "checkpoint.pt"), "--dataset",
                     str(self.dataset), "--out", str(out), "--quiet", "--jobs", "1"])
        return out

    @cached_property
    def submission(self) -> Path:
        """A valid submission of the run, once."""
        out = self.folder("shared") / "submission"
        self.zs2020(["submit", "--dataset", str(self.dataset), "--run", str(self.run), "--out", str(out),
                     "--no-zip", "--quiet", "--jobs", "1", "--vocoder", "griffinlim"])
        return out


CASES: dict[str, Callable[[Workspace, Path], Case]] = {}


def case(name: str):
    def register(build: Callable[[Workspace, Path], Case]):
        CASES[name] = build
        return build
    return register


# ---------------------------------------------------------------- checkpoints of the right format
# What a hand edit or another tool leaves: a key gone, or another type in its place.
DAMAGES: dict[str, Callable[[dict], None]] = {
    "no_kind": lambda p: p.pop("kind"),
    "no_meta": lambda p: p.pop("meta"),
    "no_models": lambda p: p.pop("models"),
    "no_step": lambda p: p.pop("step"),
    "no_config": lambda p: p.pop("config"),
    "models_list": lambda p: p.update(models=list(p["models"].values())),
    "models_empty": lambda p: p.update(models={}),
    "meta_list": lambda p: p.update(meta=list(p["meta"])),
    "config_text": lambda p: p.update(config="tiny"),
}


def damage_checkpoint(source: Path, dest: Path, damage: str) -> Path:
    import torch        # here: --help and --list need no torch
    payload = torch.load(source, weights_only=True)
    DAMAGES[damage](payload)
    dest.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, dest)
    return dest


def _encode_with(damage: str):
    def build(ws: Workspace, folder: Path) -> Case:
        bad = damage_checkpoint(ws.run / "vqvae" / "checkpoint.pt", folder / "checkpoint.pt", damage)
        return Case(["encode", "--checkpoint", bad, "--wav", ws.test_wav(), "--out", folder / "units", "--quiet"],
                    (str(bad), "damaged checkpoint"))
    return build


def _submit_with(damage: str):
    def build(ws: Workspace, folder: Path) -> Case:
        run = ws.run_copy(folder)
        bad = damage_checkpoint(run / "vqvae" / "checkpoint.pt", run / "vqvae" / "checkpoint.pt", damage)
        return Case(["submit", "--dataset", ws.dataset, "--run", run, "--out", folder / "submission", "--no-zip",
                     "--quiet"], (str(bad), "damaged checkpoint"))
    return build


def _convert_with(damage: str):
    def build(ws: Workspace, folder: Path) -> Case:
        bad = damage_checkpoint(ws.run / "melgan" / "checkpoint.pt", folder / "melgan.pt", damage)
        return Case(["convert", "--vqvae", ws.run / "vqvae" / "checkpoint.pt", "--melgan", bad, "--source",
                     ws.test_wav(), "--target", "V001", "--out", folder / "out.wav", "--quiet"],
                    (str(bad), "damaged checkpoint"))
    return build


for _damage in DAMAGES:
    case(f"checkpoint_{_damage}/encode")(_encode_with(_damage))
    case(f"checkpoint_{_damage}/submit")(_submit_with(_damage))
    case(f"checkpoint_{_damage}/convert")(_convert_with(_damage))


# ---------------------------------------------------------------- text files of the dataset
def rewrite_line(path: Path, number: int, line: bytes) -> None:
    """Replace line ``number`` (1-based) of a text file with raw bytes."""
    lines = path.read_bytes().split(b"\n")
    lines[number - 1] = line
    path.write_bytes(b"\n".join(lines))


def latin1_synthesis(ws: Workspace, folder: Path) -> tuple[Path, Path]:
    """A dataset copy whose synthesis.txt line 2 is Latin-1, and its file lists removed (so the
    validator derives them from synthesis.txt, as with the real dataset)."""
    dataset = ws.dataset_copy(folder)
    synthesis = ws.english(dataset) / "synthesis.txt"
    rewrite_line(synthesis, 2, "test/S035_00027 V002 # r\xe9sum\xe9".encode("latin-1"))
    shutil.rmtree(ws.english(dataset) / "lists")
    return dataset, synthesis


@case("synthesis_latin1/convert")
def _(ws, folder):
    dataset, synthesis = latin1_synthesis(ws, folder)
    return Case(["convert", "--run", ws.run, "--dataset", dataset, "--out", folder / "converted", "--quiet",
                 "--vocoder", "griffinlim"], (f"{synthesis}:2: not UTF-8",))


@case("synthesis_latin1/submit")
def _(ws, folder):
    dataset, synthesis = latin1_synthesis(ws, folder)
    return Case(["submit", "--dataset", dataset, "--run", ws.run, "--out", folder / "submission", "--no-zip",
                 "--quiet", "--vocoder", "griffinlim"], (f"{synthesis}:2: not UTF-8",))


@case("synthesis_latin1/validate")
def _(ws, folder):
    dataset, synthesis = latin1_synthesis(ws, folder)
    return Case(["validate", ws.submission, "--dataset", dataset, "--quiet"], (f"{synthesis}:2: not UTF-8",))


def evaluate_args(ws: Workspace, dataset: Path, folder: Path, *extra) -> list:
    return ["evaluate", ws.submission, "--dataset", dataset, "--out", folder / "evaluation", "--config", "tiny",
            "--no-speech", "--no-baselines", *extra]


@case("items_latin1/evaluate")
def _(ws, folder):
    dataset = ws.dataset_copy(folder)
    items = ws.english(dataset) / "abx" / "test.item"
    rewrite_line(items, 3, "S033_00023_0 0.0 0.1 \xe9 A B S033".encode("latin-1"))
    return Case(evaluate_args(ws, dataset, folder), (f"{items}:3: not UTF-8",))


def alignment_case(ws: Workspace, folder: Path, line: bytes, expect: str) -> Case:
    """``units phones`` on the encoded test split, with line 2 of one test alignment replaced."""
    dataset = ws.dataset_copy(folder)
    alignment = ws.english(dataset) / "alignments" / "test" / f"{ws.test_wav().stem}.phn"
    rewrite_line(alignment, 2, line)
    return Case(["units", "phones", "--encoded", ws.encoded, "--dataset", dataset, "--out", folder / "report"],
                (f"{alignment}:2: {expect}",), alone=False)


@case("alignment_latin1/units_phones")
def _(ws, folder):
    return alignment_case(ws, folder, "0.23 0.269 IH \xe9".encode("latin-1"), "not UTF-8")


@case("alignment_fields/units_phones")
def _(ws, folder):
    return alignment_case(ws, folder, b"0.23 0.269 IH ih extra fields", "expected 'onset offset phone [raw]'")


@case("alignment_times/units_phones")
def _(ws, folder):
    return alignment_case(ws, folder, b"0.23 later IH ih", "onset and offset must be numbers")


@case("long_items_corrupt_wav/evaluate")
def _(ws, folder):
    dataset = ws.dataset_copy(folder)
    wav = ws.english(dataset) / "test" / ws.test_wav().name
    wav.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk" + bytes(64))
    # one context for every item: the tiny corpus's long items then have triplets to score
    items = ws.english(dataset) / "abx" / "test_long.item"
    lines = items.read_text().splitlines()
    rows = [line.split() for line in lines[1:] if line.strip()]
    items.write_text("\n".join([lines[0]] + [" ".join(r[:4] + ["ANY", "ANY", r[6]]) for r in rows]) + "\n")
    return Case(evaluate_args(ws, dataset, folder, "--item-kind", "long"), (str(wav), "not a readable audio file"),
                alone=False)


# ---------------------------------------------------------------- unit ids
def encoded_with_ids(ws: Workspace, folder: Path, ids: np.ndarray) -> Path:
    """A copy of the encoded test split whose first file holds ``ids`` as bottom_ids."""
    encoded = Path(shutil.copytree(ws.encoded, folder / "encoded"))
    first = min(encoded.glob("*.npz"))
    with np.load(first) as data:
        arrays = dict(data)
    arrays["bottom_ids"] = ids
    np.savez(first, **arrays)
    return first


@case("units_negative_ids/units_stats")
def _(ws, folder):
    bad = encoded_with_ids(ws, folder, np.array([3, -1, 5]))
    return Case(["units", "stats", "--encoded", bad.parent, "--out", folder / "report"],
                (str(bad), "bottom_ids holds a negative id"), alone=False)


@case("units_float_ids/units_stats")
def _(ws, folder):
    bad = encoded_with_ids(ws, folder, np.array([3.0, 1.5, 5.0]))
    return Case(["units", "stats", "--encoded", bad.parent, "--out", folder / "report"],
                (str(bad), "bottom_ids holds float64 values"), alone=False)


# ---------------------------------------------------------------- configs and sizes
def train_vqvae(ws: Workspace, out: Path, *config: str) -> list:
    return ["train-vqvae", "--features", ws.run / "features", "--out", out, "--quiet", "--config", *config]


# Overrides past the bounds of a config: YAML too deep or a number too long (refused naming the
# key), and sizes no machine holds (refused naming the key and its bound).
OVERRIDES: dict[str, tuple[str, tuple[str, ...]]] = {
    "override_nested_20000": ("seed=" + "[" * 20_000 + "]" * 20_000, ("override seed", "nested too deeply")),
    "override_5000_digits": ("seed=" + "1" * 5000, ("override seed", "4300")),
    "bottom_codes_2e9": ("vqvae.model.bottom_codes=2000000000", ("config key vqvae.model.bottom_codes", "<= 65536")),
    "channels_1e9": ("vqvae.model.channels=1000000000", ("config key vqvae.model.channels", "<= 8192")),
    "steps_1e12": ("vqvae.train.steps=1000000000000", ("config key vqvae.train.steps", "<= 1000000000")),
    "runtime_threads_100000": ("runtime.threads=100000", ("config key runtime.threads", "<= 1024")),
}


def _train_with(override: str, expect: tuple[str, ...]):
    def build(ws: Workspace, folder: Path) -> Case:
        return Case(train_vqvae(ws, folder / "vqvae", "tiny", override), expect)
    return build


for _name, (_override, _expect) in OVERRIDES.items():
    case(f"{_name}/train-vqvae")(_train_with(_override, _expect))


@case("preset_2MB/train-vqvae")
def _(ws, folder):
    preset = folder / "huge.yaml"
    preset.write_text("name: huge\n" + "# padding\n" * 200_000)
    return Case(train_vqvae(ws, folder / "vqvae", str(preset)), (str(preset), "larger than 1 MB"))


@case("threads_option_100000/convert")
def _(ws, folder):
    return Case(["convert", "--run", ws.run, "--source", ws.test_wav(), "--target", "V001", "--out",
                 folder / "out.wav", "--threads", "100000", "--vocoder", "griffinlim"], ("100000 threads", "1024"))


@case("threads_env_100000/encode")
def _(ws, folder):
    return Case(["encode", "--checkpoint", ws.run / "vqvae" / "checkpoint.pt", "--wav", ws.test_wav(), "--out",
                 folder / "units", "--quiet"], ("ZS2020_THREADS", "1024"), env={"ZS2020_THREADS": "100000"})


@case("jobs_100000/evaluate")
def _(ws, folder):
    return Case(evaluate_args(ws, ws.dataset, folder, "--jobs", "100000"), ("100000 worker processes", "1024"))


# ---------------------------------------------------------------- requests and paths
def listen(ws: Workspace, folder: Path, *units: str) -> list:
    return ["units", "listen", *units, "--run", ws.run, "--speaker", "V001", "--out", folder / "out.wav",
            "--vocoder", "griffinlim"]


@case("listen_3x1000000000/units_listen")
def _(ws, folder):
    return Case(listen(ws, folder, "3x1000000000"), ("1000000000 units", "at most 30000"))


@case("listen_hold_1e12ms/units_listen")
def _(ws, folder):
    return Case(listen(ws, folder, "3", "--hold-ms", "1e12"), ("units (held", "at most 30000"))


@case("out_below_a_file/train-vqvae")
def _(ws, folder):
    a_file = folder / "below" / "a"
    a_file.parent.mkdir()
    a_file.write_text("a file\n")
    return Case(train_vqvae(ws, a_file / "file", "tiny"), (f"{a_file} is not a folder",))


def nest(folder: Path, levels: int, name: str = "d" * 200) -> None:
    """Folders ``levels`` deep below ``folder``, made through directory descriptors: their full
    path may exceed PATH_MAX, which no path-based call can reach."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        for _ in range(levels):
            os.mkdir(name, dir_fd=fd)
            child = os.open(name, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = child
    finally:
        os.close(fd)


@case("folder_beyond_PATH_MAX/validate")
def _(ws, folder):
    sub = Path(shutil.copytree(ws.submission, folder / "submission"))
    nest(sub / "2019" / "code", PATH_MAX // 200 + 1)
    return Case(["validate", sub, "--dataset", ws.dataset, "--quiet"], (str(sub), "File name too long"))


@case("path_beyond_PATH_MAX/validate")
def _(ws, folder):
    return Case(["validate", folder / ("d/" * (PATH_MAX // 2 + 1)), "--dataset", ws.dataset, "--quiet"],
                ("cannot be read", "File name too long"))


# ============================================================================ the probe
def zs2020_runner(script: str, timeout: float) -> Callable[..., subprocess.CompletedProcess]:
    def run(args: list, env: dict | None = None, check: bool = False) -> subprocess.CompletedProcess:
        done = subprocess.run([script, *map(str, args)], capture_output=True, text=True, errors="replace",
                              timeout=timeout, env={**os.environ, **(env or {})})
        if check and done.returncode != 0:
            raise SystemExit(f"zs2020 {' '.join(map(str, args[:2]))} failed:\n{done.stdout}{done.stderr}")
        return done
    return run


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)        # stdout holds the table only


def build_tiny(root: Path, dataset: Path | None, run) -> tuple[Path, Path]:
    """The tiny corpus and the tiny trained run (each only when not given)."""
    if dataset is None:
        log("building a tiny corpus ...")
        dataset = root / "corpus"
        run(["corpus", "--out", dataset, "--scale", "tiny", "--config", "tiny"], check=True)
    run_dir = root / "run"
    log("computing features and training a tiny VQ-VAE and MelGAN ...")
    run(["features", "--dataset", dataset, "--out", run_dir / "features", "--config", "tiny", "--quiet"], check=True)
    run(["train-vqvae", "--features", run_dir / "features", "--out", run_dir / "vqvae", "--config", "tiny",
         "--quiet"], check=True)
    run(["train-melgan", "--features", run_dir / "features", "--dataset", dataset, "--out", run_dir / "melgan",
         "--config", "tiny", "--quiet"], check=True)
    return dataset, run_dir


def visible_lines(output: str) -> list[str]:
    """The non-blank lines a terminal shows: of a line a progress bar rewrote with carriage
    returns, the last text written."""
    lines = []
    for line in output.split("\n"):
        shown = [part.strip() for part in line.split("\r") if part.strip()]
        if shown:
            lines.append(shown[-1])
    return lines


def first_line(done: subprocess.CompletedProcess) -> str:
    """What the user reads first: the Error: line, a traceback's last line (the exception), or
    else the first line of the output."""
    if done.returncode < 0:
        return f"killed by signal {-done.returncode}"
    lines = visible_lines(done.stdout + "\n" + done.stderr)
    errors = [line for line in lines if line.startswith("Error:")]
    if any(line.startswith("Traceback") for line in lines):
        text = f"Traceback ... {lines[-1]}"
    else:
        text = (errors or lines or [""])[0]
    return text if len(text) <= 160 else text[:157] + "..."


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="an existing tiny run (features/, vqvae/ and melgan/ checkpoints) "
                                                 "[default: train one in the temporary folder]")
    parser.add_argument("--dataset", type=Path, help="the tiny dataset ROOT the run was made from "
                                                     "[default: build one in the temporary folder]")
    parser.add_argument("--only", default="", help="run only the cases whose name contains this text")
    parser.add_argument("--list", action="store_true", help="list the case names and exit")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (its path is printed)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds each command may take [default: 600]")
    parser.add_argument("--zs2020", default=str(Path(sys.executable).with_name("zs2020")),
                        help="the zs2020 script to probe [default: the one beside this Python]")
    args = parser.parse_args(argv)
    names = [name for name in CASES if args.only in name]
    if not names:
        parser.error(f"no case name contains {args.only!r} (see --list)")
    if args.list:
        print("\n".join(names))
        return 0
    if args.run and not args.dataset:
        parser.error("--run needs the --dataset it was made from")
    root = Path(tempfile.mkdtemp(prefix="zs2020-hostile-"))
    run = zs2020_runner(args.zs2020, args.timeout)
    try:
        dataset, run_dir = (args.dataset, args.run) if args.run else build_tiny(root, args.dataset, run)
        ws = Workspace(dataset.resolve(), run_dir.resolve(), root / "cases",
                       lambda cmd: run(cmd, check=True) and None)
        width = max(map(len, names))
        print(f"{'case':<{width}} | rc | first line of output")
        for name in names:
            probe = CASES[name](ws, ws.folder(name.replace("/", "__")))
            try:
                done = run(probe.args, probe.env)
                line = f"{name:<{width}} | {done.returncode:>2} | {first_line(done)}"
            except subprocess.TimeoutExpired:
                line = f"{name:<{width}} |  - | timed out after {args.timeout:g} s"
            print(line, flush=True)
    finally:
        if args.keep:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
