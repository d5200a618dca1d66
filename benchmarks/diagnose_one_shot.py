"""Where one-shot conversion loses the reference's voice: the evaluator's one-shot trials (seeded
test utterances, each converted into the voice of one utterance of another, unseen test speaker;
`pipeline.evaluation.oneshot`) rendered two ways, beside the unconverted source:

    (a) the source utterance itself (how close the two speakers already are)
    (b) the universal vocoder on the converted mel (what `make evaluate` measures)
    (c) Griffin-Lim on the same converted mel (the conversion without the trained vocoder)

Each rendering gets resemblyzer similarity to the reference speaker and to the source speaker
(mean embeddings over their long test utterances), the share of trials closer to the reference,
pocketsphinx CER and DNSMOS. With several trained pairs (training seeds), each cell is the mean
with the range.

    .venv/bin/python benchmarks/diagnose_one_shot.py --pairs UNITS.pt:UNIVERSAL_VOCODER.pt ... \\
        [--dataset data/corpus] [--trials 40] [--no-griffinlim]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.contract.dataset import Dataset  # noqa: E402
from pipeline.evaluation.oneshot import OneShotPlan, one_shot_measures  # noqa: E402
from benchmarks.studylib import mean_range  # noqa: E402

COLUMNS = [("share_closer_to_reference", "closer to reference", 2), ("sim_reference", "sim. reference", 3),
           ("sim_source", "sim. source", 3), ("cer", "CER", 3), ("dnsmos", "DNSMOS", 2)]
ROWS = {"a": "(a) the unconverted source", "b": "(b) universal vocoder on the converted mel",
        "c": "(c) Griffin-Lim on the converted mel"}


def row_values(summary: dict, rendering: str) -> dict:
    """One rendering's cells from a one-shot summary (its keys end in _converted or _source)."""
    if rendering == "source":
        sims = summary["sim_reference_source"], summary["sim_source_source"]
        return {"share_closer_to_reference": None,          # its own speaker, by construction
                "sim_reference": sims[0], "sim_source": sims[1], "cer": summary.get("cer_source"),
                "dnsmos": summary.get("dnsmos_source")}
    return {"share_closer_to_reference": summary["share_closer_to_reference"],
            "sim_reference": summary["sim_reference_converted"], "sim_source": summary["sim_source_converted"],
            "cer": summary.get("cer_converted"), "dnsmos": summary.get("dnsmos_converted")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", nargs="+", required=True, help="UNIT_CHECKPOINT:UNIVERSAL_VOCODER_CHECKPOINT pairs")
    parser.add_argument("--dataset", type=Path, default=Path("data/corpus"), help="corpus whose test speakers are used")
    parser.add_argument("--trials", type=int, default=40, help="one-shot trials per pair")
    parser.add_argument("--seed", type=int, default=0, help="which trials are drawn")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes for the measures")
    parser.add_argument("--no-griffinlim", action="store_true", help="skip rendering (c)")
    args = parser.parse_args()
    dataset = Dataset(args.dataset)
    cells: dict[str, list[dict]] = {row: [] for row in ROWS}
    for pair in args.pairs:
        units, _, vocoder = pair.partition(":")
        plans = [("b", OneShotPlan(Path(units), Path(vocoder), universal=True))]
        if not args.no_griffinlim:
            plans.append(("c", OneShotPlan(Path(units), None, universal=False)))
        for row, plan in plans:
            result, _ = one_shot_measures(plan, dataset, trials=args.trials, seed=args.seed, voice_utts=10,
                                          measures=("similarity", "asr", "dnsmos"), jobs=args.jobs, progress=False)
            cells[row].append(row_values(result["summary"], "converted"))
            if row == "b":
                cells["a"].append(row_values(result["summary"], "source"))
            print(f"  {pair}: {row} done", flush=True)
    print(f"\n{args.trials} one-shot trials (seed {args.seed}); {len(args.pairs)} trained pair(s), mean (range)")
    print("| rendering | " + " | ".join(label for _, label, _ in COLUMNS) + " |")
    print("|---|" + "---|" * len(COLUMNS))
    for row, label in ROWS.items():
        if not cells[row]:
            continue
        values = [mean_range([c[key] for c in cells[row]], digits) for key, _, digits in COLUMNS]
        print(f"| {label} | " + " | ".join(values) + " |")


if __name__ == "__main__":
    main()
