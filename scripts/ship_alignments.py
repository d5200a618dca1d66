#!/usr/bin/env python
"""Write the shipped alignment table ``pipeline/corpus/uqm_alignments.json.xz``: the forced
alignment records (``pipeline.corpus.recorded.align_clip``) of every voice-pack clip that the
given corpus scales choose, under the cache key of this machine's .deb and pocketsphinx versions.

A first corpus build reads a clip's record from this table instead of aligning it (pocketsphinx
at about 0.6 CPU-s a clip was most of a first build's time); a build under another key aligns.
Run it after anything that changes the key (``ALIGN_VERSION``, the packages, pocketsphinx):

    .venv/bin/python scripts/ship_alignments.py                 # the scales demo:real30 and demo
    .venv/bin/python scripts/ship_alignments.py --check 5       # re-align 5 shipped clips, compare

Records come from the alignment cache when it holds them under the same key (it is filled by
this aligner and nothing else); every other clip is aligned here. ``--check N`` re-aligns N
shipped clips spread over the actors and exits 1 if any record differs.
"""
from __future__ import annotations

import argparse
import json
import lzma
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.corpus import recorded  # noqa: E402
from pipeline.corpus.plan import make_plan  # noqa: E402


def table_bytes(key: str, records: dict[str, dict]) -> bytes:
    """The table as shipped: sorted, compact JSON, xz (deterministic for the same records)."""
    text = json.dumps({"key": key, "records": dict(sorted(records.items()))}, sort_keys=True, separators=(",", ":"))
    return lzma.compress(text.encode("utf-8"), preset=9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scales", default="demo:real30,demo", help="comma-separated corpus scales to cover")
    parser.add_argument("--jobs", type=int, default=2, help="alignment processes for clips not in the cache")
    parser.add_argument("--out", type=Path, default=recorded.SHIPPED, help="the table to write")
    parser.add_argument("--check", type=int, default=0, metavar="N",
                        help="instead: re-align N shipped clips and compare them with the table")
    args = parser.parse_args()
    found = recorded.aligned(args.jobs, shipped=False)
    key = recorded.cache_key(found.versions)
    if args.check:
        shipped = recorded.shipped_records(key, args.out)
        if not shipped:
            raise SystemExit(f"{args.out}: no table under this machine's key {key}")
        names = sorted(shipped)[:: max(1, len(shipped) // args.check)][: args.check]
        clips = {c.name: c for c in found.clips}
        bad = [n for n in names if recorded.align_clip((found.root, clips[n])) != shipped[n]]
        print(f"{len(names) - len(bad)} of {len(names)} re-aligned clips equal the table" +
              (f"; differ: {', '.join(bad)}" if bad else ""))
        raise SystemExit(1 if bad else 0)
    for scale in args.scales.split(","):
        plan = make_plan(scale)
        recorded.choose(found, plan.scale.real_unit_seconds, plan.scale.real_test_utts)
    records = found.records_so_far()
    data = table_bytes(key, records)
    args.out.write_bytes(data)
    print(f"wrote {args.out}: {len(records)} clips, key {key}, {len(data) / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
