#!/usr/bin/env python
"""Cross-check the ABX engine on an ABXpy task file against ABXpy itself (the official pipeline).

ABXpy (github bootphon/ABXpy, the engine of the official zerospeech2020 evaluator) builds a task
file from the dataset's item file (ON phone, BY previous and next phone, ACROSS speaker, every
triplet, each excerpt one whole-file item: onset 0, offset 1 on the official loader's time
stamps i / L), then scores the same unit files with its own steps, exactly as the official
``zerospeech2020/evaluation/abx.py`` calls them: ``any2h5features.convert`` with the official
2019 loader, ``distances.compute_distances`` with ``default_distance`` (cosine, normalised),
``dtw_kl_distance`` or ``edit_distance``, ``score``, ``analyze`` and the official ``_average``.
Our engine then reads that same ``.abx`` file the way ``zs2020 evaluate`` does
(``LanguageTask`` -> ``pipeline.contract.abxtask`` -> ``abx.task_from_file``) and must give the
same score in every (context, phone pair, speaker pair) cell of ABXpy's analyze table.

ABXpy is not a dependency of zs2020: it runs in its own virtual environment (``--env``, made on
the first run) with the Python and the 2020-era packages it supports: Python 3.8, numpy 1.19,
pandas 1.1, h5features 1.3 (PyPI), h5py 2.10 and PyTables 3.6 (compiled against Debian's
libhdf5-dev), and ABXpy's source from a checkout of its repository (``--abxpy-src``; its DTW
extension is compiled in place).

Known limit: where identical frames make DTW costs tie (one-hot codes under KL, repeated float
code vectors under cosine), the normalised DTW's path length is decided by the last bits of the
arithmetic (ABXpy's BLAS products against our loops) and a few cells differ. ABXpy disagrees
with itself there: run it twice with another OpenBLAS kernel (``OPENBLAS_CORETYPE=Prescott`` in
the environment reaches the ABXpy side) and those cells change too; see docs/usage.md. The
feature sets of a real submission match in every cell.

Features: a submission's unit files (``--submission``, the folder ``2019/english/<--folder>``), or
by default three sets computed from the dataset's wavs: ``logmel`` (continuous: cosine is
meaningful, KL undefined), ``codes`` (a one-hot of each frame's loudest mel band: all three
distances meaningful) and ``vectors`` (each frame replaced by the nearest of 64 random float
code vectors, like a VQ system's bottom code vectors).

``--fixture DIR`` instead makes the small test fixture (tests/data/abxpy_task): a synthetic task
of a few dozen items, its ``.abx`` written by ABXpy (repacked compressed), the unit files and
ABXpy's per-cell scores as JSON (read by tests/test_abx_task.py, which needs no ABXpy).

Usage:
  .venv/bin/python scripts/crosscheck_abxpy.py [--dataset data/corpus] [--submission DIR --folder test]
      [--distances cosine,KL,levenshtein] [--env data/abxpy-env] [--abxpy-src data/abxpy-src]
      [--python python3.8] [--work data/crosscheck-abxpy] [--json FILE]
  .venv/bin/python scripts/crosscheck_abxpy.py --fixture tests/data/abxpy_task
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DISTANCES = ("cosine", "KL", "levenshtein")
ITEM_HEADER = "#file onset offset #phone prev-phone next-phone speaker"
# What ABXpy (8d9f4f8, December 2020) was run with: its environment.yml of the time, from PyPI.
ABXPY_PINS = ("numpy==1.19.5", "pandas==1.1.5", "scipy==1.5.4", "cython==0.29.21", "editdistance==0.6.0",
              "six==1.15.0", "h5features==1.3.2", "numexpr==2.8.6", "wheel<0.44", "pkgconfig")
# ABXpy opens its task file with h5py and PyTables at the same time: both must use one HDF5
# library (their PyPI wheels each bundle their own, and the two then refuse each other's file),
# so they are built from source against Debian's libhdf5-dev (about 8 minutes, once).
ABXPY_HDF5_PINS = ("h5py==2.10.0", "tables==3.6.1")
HDF5_DIR = "/usr/lib/x86_64-linux-gnu/hdf5/serial"
TOLERANCE = 1e-6


# =========================================================================== ABXpy side
# Runs in the ABXpy environment (Python 3.8): standard library, numpy, pandas and ABXpy only.

def _load_features_2019(file_path):
    """zerospeech2020/evaluation/abx.py, verbatim: frame i of a file of L lines has time i / L."""
    import numpy as np
    time_ = []
    features = []
    with open(file_path, 'r') as fin:
        data = fin.readlines()
        for i, line in enumerate(data):
            unit_data = line.strip('\n').split(' ')
            if len(unit_data) == 1:
                continue
            time_.append(i / (len(data)))
            features.append([float(x) for x in unit_data])
    return {'time': np.array(time_), 'features': np.array(features)}


def _official_average(filename):
    """zerospeech2020/evaluation/abx.py ``_average``, task type 'across'."""
    import pandas
    df = pandas.read_csv(filename, sep='\t')
    groups = df.groupby(['speaker_1', 'speaker_2', 'phone_1', 'phone_2'], as_index=False)
    df = groups['score'].mean()
    groups = df.groupby(['phone_1', 'phone_2'], as_index=False)
    df = groups['score'].mean()
    average = df.mean()['score']
    return (1.0 - average) * 100


def abxpy_side(work: Path) -> None:
    """Build the task (if absent) and score every feature set with ABXpy; writes abxpy.json."""
    import warnings

    import numpy as np
    import pandas
    import ABXpy.distances.distances
    import ABXpy.task
    from ABXpy.analyze import analyze
    from ABXpy.distance import default_distance, dtw_kl_distance, edit_distance
    from ABXpy.misc.any2h5features import convert
    from ABXpy.score import score

    warnings.simplefilter("ignore")   # PyTables' and ABXpy's own warnings (the official code hides them too)
    job = json.loads((work / "job.json").read_text())
    task = job.get("task") or str(work / "task.abx")
    start = time.time()
    if not os.path.exists(task):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ABXpy.task.Task(str(work / "items.item"), "phone", across="speaker",
                            by=["prev-phone", "next-phone"]).generate_triplets(task)
    out = {"task_seconds": round(time.time() - start, 1), "abxpy_commit": job.get("abxpy_commit"), "sets": {}}
    dist2fun = {'cosine': default_distance, 'KL': dtw_kl_distance, 'levenshtein': edit_distance}
    for name, folder in job["features"].items():
        h5 = str(work / f"features_{name}.h5")
        if os.path.exists(h5):
            os.remove(h5)
        convert(folder, h5_filename=h5, load=_load_features_2019)
        out["sets"][name] = {}
        for distance in job["distances"]:
            start = time.time()
            files = {k: str(work / f"{name}_{distance}.{k}") for k in ("distance", "score", "csv")}
            for path in files.values():
                if os.path.exists(path):
                    os.remove(path)
            saved, sys.stdout = sys.stdout, open(os.devnull, "w")   # as the official code: silence its prints
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    ABXpy.distances.distances.compute_distances(
                        h5, 'features', task, files["distance"], dist2fun[distance],
                        True if distance == "cosine" else None, n_cpu=job["jobs"])
            finally:
                sys.stdout.close()
                sys.stdout = saved
            score(task, files["distance"], files["score"])
            analyze(task, files["score"], files["csv"])
            table = pandas.read_csv(files["csv"], sep="\t", keep_default_na=False)
            cells = [[str(r.phone_1), str(r.speaker_1), str(r.speaker_2), str(r.phone_2), str(r.by), float(r.score),
                      int(r.n)] for r in table.itertuples()]
            out["sets"][name][distance] = {"abx": _official_average(files["csv"]), "cells": cells,
                                           "triplets": int(np.sum([c[6] for c in cells])),
                                           "seconds": round(time.time() - start, 1)}
    (work / "abxpy.json").write_text(json.dumps(out, indent=1) + "\n")


def compact_copy(src: str, dst: str) -> None:
    """A small copy of a task file for the test fixture: every group, dataset and attribute but
    PyTables' index of each item table's row number (``_i_table``, rebuilt on demand, never read
    by ABXpy), contiguous and in the newer compact HDF5 layout. Runs in the ABXpy environment."""
    import h5py

    def copy_attrs(source, target):
        for key in source.attrs:
            target.attrs.create(key, source.attrs[key], dtype=source.attrs.get_id(key).dtype)

    with h5py.File(src, "r") as fin, h5py.File(dst, "w", libver="latest") as fout:
        copy_attrs(fin, fout)

        def visit(name, obj):
            if "_i_table" in name.split("/"):
                return
            if isinstance(obj, h5py.Group):
                copy_attrs(obj, fout.require_group(name))
            else:
                copy_attrs(obj, fout.create_dataset(name, data=obj[...], dtype=obj.dtype))
        fin.visititems(visit)


# =========================================================================== environment

def find_python38(given: str | None) -> str:
    candidates = [given] if given else (["python3.8"] + sorted(glob.glob(os.path.expanduser(
        "~/.pyenv/versions/3.8*/bin/python3.8")), reverse=True))
    for candidate in candidates:
        path = shutil.which(candidate) or (candidate if os.path.isfile(candidate) else None)
        if path:
            return path
    sys.exit("error: no Python 3.8 found (ABXpy's stack of the time needs it); give one with --python")


def ensure_env(env: Path, src: Path, python: str | None) -> Path:
    """The ABXpy environment's interpreter, creating the environment and building ABXpy if needed."""
    if not (src / "ABXpy" / "task.py").is_file():
        sys.exit(f"error: {src} is not an ABXpy source tree: check out github bootphon/ABXpy (commit 8d9f4f8) "
                 f"there, or give --abxpy-src")
    py = env / "bin" / "python"
    if not py.is_file():
        hdf5 = os.environ.get("HDF5_DIR", HDF5_DIR)
        if not os.path.isdir(hdf5):
            sys.exit(f"error: no HDF5 library at {hdf5}: apt-get install libhdf5-dev (or set HDF5_DIR)")
        print(f"creating {env} (Python 3.8 and ABXpy's 2020 dependencies from PyPI; h5py and PyTables "
              f"compiled against {hdf5}: several minutes)")
        subprocess.run([find_python38(python), "-m", "venv", str(env)], check=True)
        pip = [str(py), "-m", "pip", "install", "-q"]
        subprocess.run(pip + ["pip<24.1"], check=True)
        subprocess.run(pip + ["--only-binary=:all:", *ABXPY_PINS], check=True)
        subprocess.run(pip + ["--no-build-isolation", "--no-deps", "--no-binary", "h5py,tables", *ABXPY_HDF5_PINS],
                       check=True, env=dict(os.environ, HDF5_DIR=hdf5))
    if not glob.glob(str(src / "ABXpy" / "distances" / "metrics" / "dtw*.so")):
        print(f"compiling ABXpy's DTW extension in {src}")
        build = ("import numpy, setuptools; from Cython.Build import cythonize; setuptools.setup(name='abxdtw', "
                 "script_args=['build_ext', '--inplace', '-q'], ext_modules=cythonize([setuptools.Extension("
                 "'ABXpy.distances.metrics.dtw', ['ABXpy/distances/metrics/dtw/dtw.pyx'], "
                 "include_dirs=[numpy.get_include()], extra_compile_args=['-O3'])], quiet=True))")
        subprocess.run([str(py), "-c", build], cwd=src, check=True, stdout=subprocess.DEVNULL)
    return py


def run_abxpy(py: Path, src: Path, work: Path, *args: str) -> dict | None:
    """Run this script's ABXpy side in the ABXpy environment (``args``: another hidden mode)."""
    env = dict(os.environ, PYTHONPATH=str(src), OMP_NUM_THREADS="1")
    mode = list(args) or ["--abxpy-side", str(work)]
    subprocess.run([str(py), str(Path(__file__).resolve()), *mode], env=env, check=True)
    return None if args else json.loads((work / "abxpy.json").read_text())


def abxpy_commit(src: Path) -> str | None:
    """The ABXpy commit of the source tree: its git HEAD, or a COMMIT file beside an exported copy."""
    marker = src / "COMMIT"
    if marker.is_file():
        return marker.read_text().strip()
    done = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else None


# =========================================================================== our side

def write_items(items, path: Path) -> None:
    """The ABXpy item file: the dataset's items, each spanning its whole file (0 to 1)."""
    lines = [ITEM_HEADER] + [f"{f} 0 1 {p} {a} {b} {s}" for f, p, a, b, s in
                             zip(items.files, items.phones, items.prev, items.next, items.speakers)]
    path.write_text("\n".join(lines) + "\n")


def default_features(dataset: str, stems: list[str], folder: Path) -> dict[str, Path]:
    """logmel and one-hot "codes" unit files of the dataset's test wavs."""
    import numpy as np

    from pipeline.contract.dataset import Dataset
    from pipeline.contract.unitfile import write_units
    from pipeline.core.config import load_config
    from pipeline.evaluation.baselines import baseline_features
    from pipeline.features import feature_spec
    spec = feature_spec(load_config("demo"))
    utts = {u.utt_id: u for u in Dataset(dataset, "english").utterances("test")}
    out = {"logmel": folder / "logmel", "codes": folder / "codes", "vectors": folder / "vectors"}
    for path in out.values():
        path.mkdir(parents=True, exist_ok=True)
    codebook = np.random.default_rng(0).normal(size=(64, spec.n_mels)).astype(np.float32)
    for stem in stems:
        logmel = baseline_features(utts[stem].read(spec.sample_rate), spec)["logmel"]
        write_units(out["logmel"] / f"{stem}.txt", logmel.astype(np.float32))
        write_units(out["codes"] / f"{stem}.txt", np.eye(logmel.shape[1], dtype=np.int64)[logmel.argmax(axis=1)])
        centred = logmel - logmel.mean(axis=1, keepdims=True)
        write_units(out["vectors"] / f"{stem}.txt", codebook[np.argmax(centred @ codebook.T, axis=1)])
    return out


def submission_features(submission: Path, folder_name: str, stems: list[str], folder: Path) -> dict[str, Path]:
    """A copy of the submission's unit files of the item stems (ABXpy converts a whole folder)."""
    source = submission / "2019" / "english" / folder_name
    dest = folder / folder_name
    dest.mkdir(parents=True, exist_ok=True)
    for stem in stems:
        shutil.copyfile(source / f"{stem}.txt", dest / f"{stem}.txt")
    return {folder_name: dest}


def our_cells(task, arrays, distance: str) -> tuple[dict, float]:
    """{(by, phone_1, phone_2, speaker_1, speaker_2): (score, n)} and the ABX error (%)."""
    from pipeline.evaluation import abx
    cells = abx.score_cells(task, abx.pack_features(arrays, distance, allow_empty=True))
    table = {}
    for ctx, pa, pb, sa, sx, value, n in zip(cells.context, cells.phone_a, cells.phone_b, cells.speaker_a,
                                             cells.speaker_x, cells.score, cells.n):
        key = (str(task.context_names[ctx]), str(task.phone_names[pa]), str(task.phone_names[pb]),
               str(task.speaker_names[sa]), str(task.speaker_names[sx]))
        table[key] = (float(value), int(n))
    return table, 100.0 * (1.0 - abx.average_cells(cells)[0])


def compare(theirs: dict, ours: dict) -> dict:
    """Cell by cell: ABXpy's analyze rows against our cells."""
    mine = {(c[4], c[0], c[3], c[1], c[2]): (c[5], c[6]) for c in theirs["cells"]}
    keys = set(mine) | set(ours)
    missing = [k for k in keys if k not in mine or k not in ours]
    diffs = [abs(mine[k][0] - ours[k][0]) for k in keys if k in mine and k in ours]
    return {"cells": len(mine), "unmatched_cells": len(missing),
            "n_differ": sum(mine[k][1] != ours[k][1] for k in keys if k in mine and k in ours),
            "max_cell_diff": max(diffs) if diffs else float("nan")}


def score_with_engine(dataset: str, task_path: Path, features: dict[str, Path], distances, jobs: int):
    """Read the task file and the unit files as ``zs2020 evaluate`` does; per set and distance,
    our cells and ABX."""
    from pipeline.contract.dataset import Dataset
    from pipeline.contract.unitfile import read_units
    from pipeline.evaluation import abx
    from pipeline.evaluation.evaluate import LanguageTask
    abx.set_jobs(jobs)
    lang = LanguageTask(Dataset(dataset, "english"), "excerpt", None, items=task_path)
    out = {}
    for name, folder in features.items():
        arrays = lang.item_arrays({stem: read_units(folder / f"{stem}.txt") for stem in lang.item_stems})
        out[name] = {d: our_cells(lang.task, arrays, d) for d in distances}
    return lang, out


def report(results: dict, abxpy: dict, ours: dict) -> float:
    print(f"{'features':<10} {'distance':<12} {'cells':>6} {'triplets':>9} {'ABXpy ABX %':>12} {'ours ABX %':>11} "
          f"{'unmatched':>9} {'n differ':>8} {'max |cell diff|':>16}")
    worst = 0.0
    for name, per_distance in ours.items():
        for distance, (cells, error) in per_distance.items():
            theirs = abxpy["sets"][name][distance]
            row = compare(theirs, cells)
            row.update(features=name, distance=distance, abxpy_abx=theirs["abx"], ours_abx=error,
                       triplets=theirs["triplets"])
            results.setdefault("rows", []).append(row)
            worst = max(worst, row["max_cell_diff"], abs(error - theirs["abx"]) / 100.0,
                        float("inf") if row["unmatched_cells"] or row["n_differ"] else 0.0)
            print(f"{name:<10} {distance:<12} {row['cells']:>6} {row['triplets']:>9} {theirs['abx']:>12.6f} "
                  f"{error:>11.6f} {row['unmatched_cells']:>9} {row['n_differ']:>8} {row['max_cell_diff']:>16.3e}")
    print(f"max difference over every cell (score in [0, 1]) and every ABX (as a fraction): {worst:.3e} "
          f"({'within' if worst <= TOLERANCE else 'NOT within'} {TOLERANCE:g})")
    results["max_difference"] = worst
    return worst


# =========================================================================== fixture

def fixture_items_and_features(folder: Path) -> None:
    """A small irregular task (2 contexts, 3 phones, 3 speakers, some cells with 2 tokens, one
    missing) and two feature sets written as unit files."""
    import numpy as np

    from pipeline.contract.unitfile import write_units
    rng = np.random.default_rng(2019)
    rows = []
    for prev, nxt in (("AA", "IY"), ("IY", "AA")):
        for phone in ("P", "T", "K"):
            for speaker in ("S002", "S011", "S020"):
                if (prev, phone, speaker) == ("IY", "K", "S011"):
                    continue
                for _ in range(2 if (phone, speaker) in {("P", "S002"), ("T", "S020")} else 1):
                    # official-style names: <speaker>_<10 digits>
                    rows.append((f"{speaker}_{379088085 + 7919 * len(rows):010d}", phone, prev, nxt, speaker))
    lines = [ITEM_HEADER]
    for i, (stem, phone, prev, nxt, speaker) in enumerate(rows):
        # most items span the whole file; one its second half; one selects no frame (ABXpy: an
        # empty item, at distance inf from any other)
        onset, offset = {3: ("0.5", "1"), 7: ("1", "1")}.get(i, ("0", "1"))
        lines.append(f"{stem} {onset} {offset} {phone} {prev} {nxt} {speaker}")
        length = int(rng.integers(3, 8))
        code = {"P": 0, "T": 1, "K": 2}[phone]
        symbols = np.where(rng.random(length) < 0.6, code, rng.integers(0, 4, length))
        write_units(folder / "features" / "codes" / f"{stem}.txt", np.eye(4, dtype=np.int64)[symbols])
        continuous = rng.normal(size=(length, 3)) + np.eye(3)[code] * 1.5
        continuous[0] *= float(i % 5 != 0)    # a few zero vectors (cosine distance 1 to the others)
        write_units(folder / "features" / "continuous" / f"{stem}.txt", np.round(continuous, 4))
    (folder / "items.item").write_text("\n".join(lines) + "\n")


def _cells_only(result: dict) -> dict:
    return {name: {d: (v["cells"], v["abx"]) for d, v in sets.items()} for name, sets in result["sets"].items()}


def make_fixture(args, py: Path, src: Path) -> None:
    out = Path(args.fixture)
    work = Path(args.work) / "fixture"
    shutil.rmtree(work, ignore_errors=True)
    (work / "features").mkdir(parents=True)
    fixture_items_and_features(work)
    features = {name: work / "features" / name for name in ("codes", "continuous")}
    (work / "job.json").write_text(json.dumps({"features": {k: str(v) for k, v in features.items()},
                                               "distances": list(DISTANCES), "jobs": 1,
                                               "abxpy_commit": abxpy_commit(src)}))
    abxpy = run_abxpy(py, src, work)
    # PyTables writes a 250 KB index of row numbers: the fixture keeps a compact copy, which
    # ABXpy must score exactly as the original
    if out.exists():
        shutil.rmtree(out)
    (out / "features").mkdir(parents=True)
    run_abxpy(py, src, work, "--compact", str(work / "task.abx"), str(out / "task.abx"))
    (work / "job.json").write_text(json.dumps(dict(json.loads((work / "job.json").read_text()),
                                                   task=str((out / "task.abx").resolve()))))
    again = run_abxpy(py, src, work)
    if _cells_only(again) != _cells_only(abxpy):
        sys.exit("error: ABXpy scores the compact task file differently from the original")
    for name, folder in features.items():
        shutil.copytree(folder, out / "features" / name)
    shutil.copyfile(work / "items.item", out / "items.item")
    abxpy["note"] = ("made by scripts/crosscheck_abxpy.py --fixture: task.abx written by ABXpy from items.item "
                     "(ON phone, BY prev-phone next-phone, ACROSS speaker), scored by ABXpy on features/<set>")
    (out / "abxpy_cells.json").write_text(json.dumps(abxpy, separators=(",", ":")) + "\n")
    lang_dir = Path(args.work) / "fixture-dataset"
    (lang_dir / "2019" / "english").mkdir(parents=True, exist_ok=True)
    _, ours = score_with_engine(str(lang_dir), out / "task.abx", {k: out / "features" / k for k in features},
                                DISTANCES, 1)
    worst = report({}, abxpy, ours)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"wrote {out} ({size / 1024:.0f} KB, task.abx {(out / 'task.abx').stat().st_size / 1024:.0f} KB)")
    if worst > TOLERANCE:
        sys.exit(1)


# =========================================================================== main

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--abxpy-side", metavar="WORK", help=argparse.SUPPRESS)
    parser.add_argument("--compact", nargs=2, metavar=("SRC", "DST"), help=argparse.SUPPRESS)
    parser.add_argument("--dataset", default="data/corpus", help="dataset root with 2019/english/abx/test.item")
    parser.add_argument("--submission", default=None, help="a submission folder (default: features of the wavs)")
    parser.add_argument("--folder", default="test", help="the submission's folder to score (test, auxiliary_...)")
    parser.add_argument("--distances", default=",".join(DISTANCES))
    parser.add_argument("--env", default="data/abxpy-env", help="ABXpy's virtual environment (made if absent)")
    parser.add_argument("--abxpy-src", default="data/abxpy-src", help="a checkout of ABXpy's source")
    parser.add_argument("--python", default=None, help="Python 3.8 for a new environment")
    parser.add_argument("--work", default="data/crosscheck-abxpy", help="working folder (task, features, results)")
    parser.add_argument("--jobs", type=int, default=2, help="ABXpy processes and our threads")
    parser.add_argument("--json", default=None, help="also write the comparison here")
    parser.add_argument("--fixture", default=None, metavar="DIR", help="make the test fixture in DIR instead")
    args = parser.parse_args()
    if args.abxpy_side:
        abxpy_side(Path(args.abxpy_side))
        return
    if args.compact:
        compact_copy(*args.compact)
        return
    sys.path.insert(0, str(ROOT))
    py = ensure_env(Path(args.env), Path(args.abxpy_src), args.python)
    src = Path(args.abxpy_src).resolve()
    if args.fixture:
        make_fixture(args, py, src)
        return

    from pipeline.contract.dataset import Dataset
    from pipeline.contract.items import read_items
    distances = tuple(d for d in args.distances.split(",") if d)
    work = Path(args.work).resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    item_path = Dataset(args.dataset, "english").item_file("excerpt")
    if item_path is None:
        sys.exit(f"error: {args.dataset} has no 2019/english/abx/test.item")
    items = read_items(item_path)
    write_items(items, work / "items.item")
    stems = sorted(set(items.files.tolist()))
    features = (submission_features(Path(args.submission), args.folder, stems, work / "features") if args.submission
                else default_features(args.dataset, stems, work / "features"))
    (work / "job.json").write_text(json.dumps({"features": {k: str(v) for k, v in features.items()},
                                               "distances": list(distances), "jobs": args.jobs,
                                               "abxpy_commit": abxpy_commit(src)}))
    start = time.perf_counter()
    abxpy = run_abxpy(py, src, work)
    print(f"ABXpy: task of {len(items)} items built in {abxpy['task_seconds']} s; scoring "
          f"{sum(v['seconds'] for s in abxpy['sets'].values() for v in s.values()):.1f} s "
          f"({time.perf_counter() - start:.0f} s in all)")
    start = time.perf_counter()
    lang, ours = score_with_engine(args.dataset, work / "task.abx", features, distances, args.jobs)
    print(f"zs2020: read {work / 'task.abx'}: {len(lang.task_file.bys)} contexts, {lang.task_file.n_triplets} "
          f"triplets, {lang.n_items} items; scored in {time.perf_counter() - start:.1f} s")
    results = {"dataset": args.dataset, "submission": args.submission, "task": str(work / "task.abx")}
    worst = report(results, abxpy, ours)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    if worst > TOLERANCE:
        sys.exit(1)


if __name__ == "__main__":
    main()
