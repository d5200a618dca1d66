#!/usr/bin/env python
"""Cross-check our DTW-cosine ABX (pipeline/evaluation/abx.py) against zerospeech-libriabx2 (``zrc_abx2``).

Both score the same excerpt items of a dataset (by default the demo corpus) with the same
baseline features (our log-mel and MFCC, from pipeline/evaluation/baselines.py), across speakers, within
context. To reproduce the official whole-file convention with libriabx2, every excerpt is
given to it as one item spanning the whole file (onset 0, offset past the last frame).
Expected agreement: about a point, not exact — libriabx2 subsamples (at most
``max_size_group`` items per group and ``max_x_across`` X speakers; "none" below lifts both
limits) and averages in another order (over contexts and X speakers jointly per
(A speaker, phone pair), then A speakers, then phone pairs).

Install (optional extra, no torchaudio; a stub is put in sys.modules below):
    .venv/bin/pip install --no-deps zerospeech-libriabx2==0.9.8 && .venv/bin/pip install pandas

Usage: python scripts/crosscheck_libriabx2.py [--dataset data/corpus] [--features logmel,mfcc]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
import types
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.contract.dataset import Dataset  # noqa: E402
from pipeline.contract.items import ItemTable, read_items  # noqa: E402
from pipeline.evaluation import abx  # noqa: E402
from pipeline.core.config import load_config  # noqa: E402
from pipeline.evaluation.baselines import baseline_features  # noqa: E402
from pipeline.features import feature_spec  # noqa: E402

FRAME = 0.01   # our log-mel hop, seconds


def libriabx2(features: dict[str, np.ndarray], items: ItemTable, sampling: str, seed: int) -> float:
    """Across-speaker, within-context DTW-cosine ABX error (%) computed by zrc_abx2."""
    sys.modules.setdefault("torchaudio", types.ModuleType("torchaudio"))   # imported, never used
    from zrc_abx2 import EvalABX, EvalArgs
    big = 10 ** 9
    with tempfile.TemporaryDirectory(prefix="crosscheck-") as tmp:
        tmp = Path(tmp)
        for stem, arr in features.items():
            np.save(tmp / f"{stem}.npy", arr.astype(np.float32))
        lines = ["#file onset offset #phone prev-phone next-phone speaker"]
        for i, stem in enumerate(items.files):
            # whole file: index_end = floor(100 * offset - 0.5) must reach the frame count
            offset = (len(features[stem]) + 1) * FRAME
            lines.append(f"{stem} 0 {offset:.4f} {items.phones[i]} {items.prev[i]} {items.next[i]} "
                         f"{items.speakers[i]}")
        (tmp / "items.item").write_text("\n".join(lines) + "\n")
        args = EvalArgs(path_data=str(tmp), path_item_file=str(tmp / "items.item"), file_extension=".npy",
                        feature_size=FRAME, speaker_mode="across", context_mode="within",
                        distance_mode="cosine", seed=seed,
                        max_size_group=10 if sampling == "default" else big,
                        max_x_across=5 if sampling == "default" else big)
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")   # its deprecated torch.sparse calls, dataset-name guess
            results = EvalABX().eval_abx(args)
    return 100.0 * float(results[0]["score"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="data/corpus", help="dataset root (ROOT/2019/english)")
    parser.add_argument("--features", default="logmel,mfcc", help="baselines to compare")
    parser.add_argument("--sampling", default="none,default",
                        help="libriabx2 subsampling: none (all items, all X speakers) and/or default (10/5)")
    parser.add_argument("--seed", type=int, default=3459)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--json", default=None, help="also write the table as JSON here")
    args = parser.parse_args()

    ds = Dataset(args.dataset, "english")
    items = read_items(ds.item_file("excerpt"))
    task = abx.build_task(items)
    abx.set_jobs(args.jobs)
    utts = {u.utt_id: u for u in ds.utterances("test")}
    spec = feature_spec(load_config("demo"))
    feats: dict[str, dict[str, np.ndarray]] = {}
    for stem in sorted(set(items.files.tolist())):
        for kind, arr in baseline_features(utts[stem].read(spec.sample_rate), spec).items():
            feats.setdefault(kind, {})[stem] = arr
    rows = []
    print(f"{len(items)} items, {len(task.blocks)} contexts with triplets ({args.dataset})")
    print(f"{'features':<8} {'ours (official order)':>22} {'ours (libri-light order)':>22} {'sampling':>9} "
          f"{'libriabx2':>10} {'diff':>7}")
    for kind in args.features.split(","):
        start = time.perf_counter()
        cells = abx.score_cells(task, abx.pack_features(abx.item_features(items, feats[kind], True), "cosine"))
        ours = 100 * (1 - abx.average_cells(cells)[0])
        t_ours = time.perf_counter() - start
        # the same cells averaged in libri-light's order: isolates the averaging-order gap
        ours_ll = 100 * (1 - abx.average_cells(cells, order="libri-light")[0])
        for sampling in args.sampling.split(","):
            start = time.perf_counter()
            theirs = libriabx2(feats[kind], items, sampling, args.seed)
            t_theirs = time.perf_counter() - start
            rows.append({"features": kind, "ours": ours, "ours_libri_light_order": ours_ll, "libriabx2": theirs,
                         "sampling": sampling, "seconds_ours": round(t_ours, 1),
                         "seconds_libriabx2": round(t_theirs, 1)})
            print(f"{kind:<8} {ours:>21.2f}% {ours_ll:>21.2f}% {sampling:>9} {theirs:>9.2f}% {theirs - ours:>+7.2f}"
                  f"   ({t_ours:.0f} s vs {t_theirs:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
