"""Run a study (benchmarks/studies/<name>.yaml) and render its results page.

    .venv/bin/python benchmarks/study.py run benchmarks/studies/decoder.yaml [--variants a,b] [--seeds 1234]
    .venv/bin/python benchmarks/study.py render            # every docs/results/<study>.md from its JSON
    .venv/bin/python benchmarks/study.py list benchmarks/studies/decoder.yaml
    .venv/bin/python benchmarks/study.py compare benchmarks/studies/real_units.yaml --variants a,b [--seeds 1234]

`run` measures every (variant, seed) whose row in <study>.json was not measured with the same
resolved config by the same commit, saves the row as soon as it is measured, then renders the
page. Training happens through the `zs2020` stages, one at a time (never two trainings at once
on a small machine: the rows' training minutes would be wrong). `compare` pairs two variants'
trained unit systems on the same phone pairs (real and synthetic test speakers apart) and prints
the second's ABX minus the first's with its 95 % bootstrap interval: an interval holding 0 says
the test items do not tell them apart.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.study_measures import MEASURES, Data, compare_units, variant_data  # noqa: E402
from benchmarks.studylib import RESULTS_DIR, STUDY_DIR, Results, Study, code_commit, is_current, render_page  # noqa: E402


def run_study(study: Study, data: Data, variants: list[str] | None = None, seeds: list[int] | None = None,
              log=print) -> Results:
    """Measure what is not current; returns the study's rows (saved after each one)."""
    if study.is_record:
        raise SystemExit(f"{study.path}: a record of rows measured by another command; re-run it: "
                         f"{study.command.strip() or '(no command given)'}")
    measure, _ = MEASURES[study.measure]
    results = Results.load(study.results_path)
    commit = code_commit()
    for variant in variants or list(study.variants):
        if variant not in study.variants:
            raise SystemExit(f"{study.path}: no variant {variant!r} (has: {', '.join(study.variants)})")
        for seed in seeds or study.seeds:
            identity = study.config_identity(variant, seed)
            if is_current(results.find(variant, seed), identity, commit):
                log(f"  {variant} seed {seed}: current ({commit})")
                continue
            start = time.perf_counter()
            measures = measure(study, variant, seed, variant_data(study, variant, seed, data))
            results.put({"variant": variant, "seed": seed, "overlay": study.overlay(variant), "config": identity,
                         "commit": commit, "measures": measures})
            results.save()
            log(f"  {variant} seed {seed}: measured in {(time.perf_counter() - start) / 60:.1f} min")
    return results


def render(study: Study, out_dir: Path = RESULTS_DIR) -> Path:
    columns = study.columns if study.is_record else MEASURES[study.measure][1]
    out_dir.mkdir(parents=True, exist_ok=True)
    page = out_dir / f"{study.name}.md"
    page.write_text(render_page(study, Results.load(study.results_path), columns), encoding="utf-8")
    return page


def render_all(study_dir: Path = STUDY_DIR, out_dir: Path = RESULTS_DIR) -> list[Path]:
    pages = [render(Study.load(path), out_dir) for path in sorted(study_dir.glob("*.yaml"))]
    index = ["# Results", "", "One page per study, each generated from its JSON by "
             "`.venv/bin/python benchmarks/study.py render`.", ""]
    index += [f"- [{Study.load(study_dir / (p.stem + '.yaml')).title}]({p.name})" for p in pages]
    (out_dir / "README.md").write_text("\n".join(index) + "\n", encoding="utf-8")
    return pages


def _two_variants(study: Study, names: str) -> tuple[str, str]:
    pair = names.split(",")
    if len(pair) != 2:
        raise SystemExit(f"--variants takes two names, FIRST,SECOND; got {names!r}")
    unknown = [n for n in pair if n not in study.variants]
    if unknown:
        raise SystemExit(f"{study.name} has no variant {', '.join(unknown)} (see: benchmarks/study.py list {study.path})")
    return pair[0], pair[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="measure the rows that are not current, then render the page")
    run.add_argument("study", type=Path, help="a study file, benchmarks/studies/<name>.yaml")
    run.add_argument("--variants", default=None, help="comma-separated variant names (default: all)")
    run.add_argument("--seeds", default=None, help="comma-separated seeds (default: the study's)")
    run.add_argument("--dataset", type=Path, default=Path("data/corpus"), help="dataset root the rows are measured on")
    run.add_argument("--features", type=Path, default=Path("data/runs/demo/features"),
                     help="features of that dataset (`zs2020 features`), made with the study's preset")
    run.add_argument("--work", type=Path, default=Path("data/studies"),
                     help="where trained models and converted wavs go (one folder per study)")
    run.add_argument("--lines", type=int, default=20, help="synthesis lines scored by the conversion measure")
    run.add_argument("--trials", type=int, default=40, help="one-shot trials scored by the one_shot measure")
    run.add_argument("--jobs", type=int, default=2, help="processes for encoding and scoring")
    compare = sub.add_parser("compare", help="paired ABX difference of two variants' units per kind of test speaker, "
                             "with its 95 %% bootstrap interval (from the rows' trained unit systems; trains nothing)")
    compare.add_argument("study", type=Path)
    compare.add_argument("--variants", required=True, help="two variant names, FIRST,SECOND: SECOND minus FIRST")
    compare.add_argument("--seeds", default=None, help="comma-separated seeds (default: the study's)")
    compare.add_argument("--dataset", type=Path, default=Path("data/corpus"), help="dataset root the rows were measured on")
    compare.add_argument("--work", type=Path, default=Path("data/studies"), help="where the rows' trained models are")
    compare.add_argument("--jobs", type=int, default=2, help="processes for encoding")
    listing = sub.add_parser("list", help="print a study's variants and their overlays")
    listing.add_argument("study", type=Path)
    sub.add_parser("render", help="render every docs/results/<study>.md from benchmarks/studies/<study>.json")
    args = parser.parse_args()
    if args.command == "render":
        for page in render_all():
            print(f"wrote {page}")
        return
    study = Study.load(args.study)
    if args.command == "list":
        for name in study.variants:
            print(f"{name:<40} {' '.join(study.overrides(name, study.seeds[0])[:-1]) or '(base)'}")
        return
    if args.command == "compare":
        first, second = _two_variants(study, args.variants)
        data = Data(args.dataset, Path("unused"), args.work / study.name, jobs=args.jobs)
        for seed in [int(s) for s in args.seeds.split(",")] if args.seeds else study.seeds:
            for row in compare_units(study, first, second, seed, data):
                print(f"{row['kind']:<10} seed {seed:<5} {second} - {first}: {row['difference']:+.2f} ABX points, "
                      f"95 % interval [{row['low']:+.2f}, {row['high']:+.2f}] over {row['pairs']} phone pairs")
        return
    data = Data(args.dataset, args.features, args.work / study.name, args.lines, args.jobs, args.trials)
    run_study(study, data, args.variants.split(",") if args.variants else None,
              [int(s) for s in args.seeds.split(",")] if args.seeds else None)
    print(f"wrote {render(study)}")


if __name__ == "__main__":
    main()
