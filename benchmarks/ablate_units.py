"""Unit-discovery ablation: train each variant of the unit system on the same features with the
same schedule, and print one table of what the challenge and this project measure.

For each (variant, seed): ``zs2020 train-vqvae`` with the variant's overrides on top of the
preset, then on the demo corpus: ABX across speakers (cosine, the official 2019 computation,
`pipeline.evaluation.abx`) of the bottom code vectors (the submitted units), the
pre-quantization vectors and the top codes; the bitrate of the bottom codes over the bitrate
file list; codes in use and perplexity of the bottom level; speaker leakage (held-out speaker
identification from code histograms, `zs2020 units leakage`); training minutes (wall, on this
machine, at the time). The MFCC baseline of the same items is computed once; ratios are to it.

    .venv/bin/python benchmarks/ablate_units.py --features data/runs/demo/features --dataset data/corpus \\
        --out data/ablation --variants baseline,cpc --seeds 1234,7

Results are cached per (variant, seed) in OUT/<variant>/seed<seed>/result.json (a variant whose
overrides changed is retrained); `--list` prints the variants.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.contract.dataset import Dataset  # noqa: E402
from pipeline.core.config import load_config  # noqa: E402
from pipeline.core.stamp import fingerprint  # noqa: E402
from pipeline.evaluation import abx as abxlib  # noqa: E402
from pipeline.evaluation.baselines import compute_baselines  # noqa: E402
from pipeline.evaluation.bitrate import bitrate  # noqa: E402
from pipeline.evaluation.evaluate import LanguageTask  # noqa: E402
from pipeline.features import FeatureStore, feature_spec  # noqa: E402
from pipeline.systems.encoding import encode_wavs  # noqa: E402
from pipeline.units.reports import leakage_report  # noqa: E402
from pipeline.units.source import encode_splits  # noqa: E402
from common import VQMIVC_AS_FIRST_BUILT, mean_range, timed_stage, unit_settings  # noqa: E402

ZS = str(Path(sys.executable).with_name("zs2020"))
# Every variant states the settings it is about, so a row means the same whatever the preset's
# current defaults are. ORIGINAL is the first VQ-VAE-2 (no contrastive coding, 256 bottom codes,
# convolutional bottom encoder whose codes also see the top level).
ORIGINAL = ["vqvae.model.cpc_steps=0", "vqvae.loss.cpc=0.0", "vqvae.model.bottom_codes=256",
            "vqvae.model.bottom_sees_top=true", "vqvae.model.bottom_encoder=conv", "vqvae.model.jitter=0.0",
            "vqvae.model.adversary_hidden=0", "vqvae.loss.adversary=0.0", "vqvae.model.input_norm=global",
            "vqvae.loss.recon=1.0", "vqvae.loss.cycle_codes=0.0", "vqvae.loss.cycle_recon=0.0",
            "vqvae.loss.cycle_speaker=0.0", "vqvae.model.decoder_blocks=0", "vqvae.model.decoder_rnn=0",
            "vqvae.model.speaker_every_block=false", "vqvae.model.tract_search=0.0", "vqvae.train.steps=3000",
            "system=vqvae2"]
CPC = ["vqvae.model.cpc_steps=6", "vqvae.loss.cpc=1.0"]
ADVERSARY = ["vqvae.model.adversary_hidden=128", "vqvae.loss.adversary=0.5"]
LOCAL = ["vqvae.model.bottom_sees_top=false"]
FRAMES = LOCAL + ["vqvae.model.bottom_encoder=frames"]
VQMIVC = VQMIVC_AS_FIRST_BUILT          # the presets' vqmivc settings came from the rows below
# name -> overrides on top of the preset
VARIANTS: dict[str, list[str]] = {name: ORIGINAL + changes for name, changes in {
    "baseline": [],
    "adversary": ADVERSARY,
    "cpc": CPC,
    "cpc_local": CPC + LOCAL,
    "cpc_local_512": CPC + LOCAL + ["vqvae.model.bottom_codes=512"],
    "cpc_local_adversary": CPC + LOCAL + ADVERSARY,
    "cpc_local_jitter": CPC + LOCAL + ["vqvae.model.jitter=0.5"],
    "cpc_local_utterance_norm": CPC + LOCAL + ["vqvae.model.input_norm=utterance"],
    "cpc_local_weight2": ["vqvae.model.cpc_steps=6", "vqvae.loss.cpc=2.0"] + LOCAL,
    "cpc_local_only": CPC + LOCAL + ["vqvae.loss.recon=0.0"],
    "cpc_local_512_jitter": CPC + LOCAL + ["vqvae.model.bottom_codes=512", "vqvae.model.jitter=0.5"],
    "cpc_frames": CPC + FRAMES,
    "cpc_frames_512": CPC + FRAMES + ["vqvae.model.bottom_codes=512"],
    "cpc_frames_512_jitter": CPC + FRAMES + ["vqvae.model.bottom_codes=512", "vqvae.model.jitter=0.5"],
    "cpc_frames_512_adversary": CPC + FRAMES + ["vqvae.model.bottom_codes=512"] + ADVERSARY,
    # the encoder sees a frequency-stretched copy of each crop (the decoder rebuilds the crop)
    "cpc_frames_512_warp": CPC + FRAMES + ["vqvae.model.bottom_codes=512", "vqvae.perturb.warp=0.15"],
    # the decoder's residual blocks dilated (4: 1, 2, 4, 8; 6: up to 32)
    "cpc_frames_512_dec4": CPC + FRAMES + ["vqvae.model.bottom_codes=512", "vqvae.model.decoder_blocks=4"],
    "cpc_frames_512_dec6": CPC + FRAMES + ["vqvae.model.bottom_codes=512", "vqvae.model.decoder_blocks=6"],
    "cpc_frames_512_dec4_5000": CPC + FRAMES + ["vqvae.model.bottom_codes=512", "vqvae.model.decoder_blocks=4",
                                                "vqvae.train.steps=5000"],
    # the same with a bidirectional GRU after the dilated blocks, or the speaker in every block
    "cpc_frames_512_dec4_rnn_5000": CPC + FRAMES + ["vqvae.model.bottom_codes=512", "vqvae.model.decoder_blocks=4",
                                                    "vqvae.model.decoder_rnn=64", "vqvae.train.steps=5000"],
    "cpc_frames_512_dec4_spk_5000": CPC + FRAMES + ["vqvae.model.bottom_codes=512", "vqvae.model.decoder_blocks=4",
                                                    "vqvae.model.speaker_every_block=true", "vqvae.train.steps=5000"],
    "vqmivc": VQMIVC,
    "vqmivc_no_mi": VQMIVC + ["vqmivc.loss.mi_content_speaker=0", "vqmivc.loss.mi_content_pitch=0",
                     "vqmivc.loss.mi_pitch_speaker=0"],
    # the CLUB terms 100x (content-speaker) and 10x stronger, with estimators that fit faster
    "vqmivc_mi_strong": VQMIVC + ["vqmivc.loss.mi_content_speaker=1.0", "vqmivc.loss.mi_content_pitch=0.1",
                         "vqmivc.loss.mi_pitch_speaker=0.1", "vqmivc.mi.updates=3", "vqmivc.mi.lr=1.0e-3"],
    # speaker perturbation of the content encoder's input (models/augment.py) instead of the MI terms
    "vqmivc_warp": VQMIVC + ["vqmivc.perturb.warp=0.15"],
    "vqmivc_warp_tilt": VQMIVC + ["vqmivc.perturb.warp=0.15", "vqmivc.perturb.tilt=0.15"],
    "vqmivc_warp30": VQMIVC + ["vqmivc.perturb.warp=0.3"],
    "vqmivc_warp45": VQMIVC + ["vqmivc.perturb.warp=0.45"],
    "vqmivc_codes128": VQMIVC + ["vqmivc.model.codes=128"],
    "vqmivc_warp_codes256": VQMIVC + ["vqmivc.perturb.warp=0.15", "vqmivc.model.codes=256"],
    "vqmivc_warp_codes128": VQMIVC + ["vqmivc.perturb.warp=0.15", "vqmivc.model.codes=128"],
    # the speaker encoder sees another utterance of the speaker, so its vector cannot carry content
    "vqmivc_warp_other": VQMIVC + ["vqmivc.perturb.warp=0.15", "vqmivc.speaker_input=other_utterance"],
    # the whole crop stretched too: the speaker encoder learns from made-up vocal tracts
    "vqmivc_warp_codes128_aug": VQMIVC + ["vqmivc.perturb.warp=0.15", "vqmivc.model.codes=128",
                                          "vqmivc.speaker_augment=0.15"],
}.items()}


def unit_arrays(stem: str, units) -> tuple[str, dict[str, np.ndarray]]:
    """Encoding sink: what the table needs of one utterance (the "top" column holds a VQMIVC's
    CPC context vectors: its auxiliary embedding beside the pre-quantization vectors)."""
    aux = units.top_vectors if hasattr(units, "top_vectors") else units.context
    return stem, {"codes": units.bottom_vectors, "prequant": units.prequant, "top": aux, "ids": units.bottom_ids}


def item_units(checkpoint: Path, task: LanguageTask, stems: list[str]) -> dict[str, dict[str, np.ndarray]]:
    """stem -> {codes, prequant, top, ids} of the test wavs the ABX items and the bitrate need."""
    items = [(stem, task.test_utterance(stem).path) for stem in stems]
    return dict(encode_wavs(checkpoint, items, unit_arrays, jobs=2, progress=False))


def evaluate_variant(run: Path, dataset: Path, task: LanguageTask) -> dict:
    checkpoint = run / "vqvae" / "checkpoint.pt"
    stems = sorted(set(task.item_stems) | set(task.bitrate_stems))
    units = item_units(checkpoint, task, stems)
    out = {}
    for kind in ("codes", "prequant", "top"):
        feats = {stem: u[kind] for stem, u in units.items()}
        out[f"abx_{kind}"] = abxlib.abx(task.task, task.item_arrays(feats), "cosine").error
    out["bitrate"] = bitrate({s: u["codes"] for s, u in units.items()}, task.bitrate_rows).bitrate
    counts = np.bincount(np.concatenate([u["ids"] for u in units.values()]))
    p = counts[counts > 0] / counts.sum()
    out["codes_used"] = int((counts > 0).sum())
    out["perplexity"] = float(np.exp(-(p * np.log(p)).sum()))
    unit_set = encode_splits(run, Dataset(dataset), ["test", "train/unit", "train/voice"], "cpu", progress=False)
    levels = tuple(unit_set.codebook_sizes)
    leak = leakage_report(unit_set, levels, min_seconds=1.0, test_fraction=0.3, seed=0)
    out["leakage_bottom"] = leak["levels"]["bottom"]["accuracy_logreg"]
    out["leakage_top"] = leak["levels"]["top"]["accuracy_logreg"] if "top" in levels else float("nan")
    return out


def train(features: Path, run: Path, preset: str, overrides: list[str], seed: int) -> float:
    """Train (or find trained) one variant; returns the minutes its training took."""
    command = [ZS, "train-vqvae", "--features", str(features), "--out", str(run / "vqvae"), "--config", preset,
               "--quiet", f"seed={seed}", *overrides]
    return timed_stage(command, run / "vqvae" / "checkpoint.pt", run / "train_minutes.json")


def variant_identity(preset: str, overrides: list[str], seed: int) -> str:
    """What a result depends on: the resolved unit-system settings (whatever spelled them) and the seed."""
    config = load_config(preset, overrides)
    return fingerprint(*unit_settings(config), config.features, seed)


def features_identity(features: Path) -> list[str]:
    """The data a result was measured on (the features files' own fingerprints)."""
    return [FeatureStore(path).fingerprint for path in sorted(features.glob("*.h5"))]


def run_variant(args, name: str, seed: int, task: LanguageTask) -> dict:
    overrides = VARIANTS[name] + args.extra
    identity = variant_identity(args.preset, overrides, seed)
    folder = args.out / name / f"seed{seed}"
    cached = folder / "result.json"
    data = features_identity(args.features)
    if cached.is_file():
        result = json.loads(cached.read_text())
        if result.get("identity") == identity and result.get("features", data) == data:
            return result
    minutes = train(args.features, folder, args.preset, overrides, seed)
    history = [json.loads(line) for line in (folder / "vqvae" / "history.jsonl").read_text().splitlines()]
    result = {"variant": name, "seed": seed, "identity": identity, "features": data, "overrides": overrides,
              "steps": history[-1]["step"], "minutes": minutes, **evaluate_variant(folder, args.dataset, task)}
    cached.write_text(json.dumps(result, indent=1))
    return result


def baseline(args, task: LanguageTask) -> float:
    path = args.out / "mfcc.json"
    if path.is_file():
        return json.loads(path.read_text())["abx"]
    spec = feature_spec(load_config(args.preset))
    feats = compute_baselines({s: task.test_utterance(s) for s in task.item_stems}, spec, progress=False)["mfcc"]
    value = abxlib.abx(task.task, task.item_arrays(feats), "cosine").error
    path.write_text(json.dumps({"abx": value}))
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--features", type=Path, default=Path("data/runs/demo/features"))
    parser.add_argument("--dataset", type=Path, default=Path("data/corpus"))
    parser.add_argument("--out", type=Path, default=Path("data/ablation"))
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--variants", default="baseline,cpc", help="comma-separated names (--list shows them)")
    parser.add_argument("--seeds", default="1234", help="comma-separated seeds")
    parser.add_argument("--extra", nargs="*", default=[], help="overrides added to every variant (e.g. steps)")
    parser.add_argument("--list", action="store_true", help="print the variants and exit")
    args = parser.parse_args()
    if args.list:
        for name, overrides in VARIANTS.items():
            print(f"{name:<20} {' '.join(overrides) or '(the preset)'}")
        return
    args.out.mkdir(parents=True, exist_ok=True)
    task = LanguageTask(Dataset(args.dataset), "excerpt", None)
    mfcc = baseline(args, task)
    names = args.variants.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    for name in names:
        results = []
        for seed in seeds:
            result = run_variant(args, name, seed, task)
            print(f"  {name} seed {seed}: ABX codes {result['abx_codes']:.2f} %, prequant {result['abx_prequant']:.2f} %, "
                  f"bitrate {result['bitrate']:.0f}, leakage {result['leakage_bottom']:.3f}, "
                  f"{result['minutes']:.1f} min", flush=True)
            results.append(result)
        rows.append((name, results))
    print(f"\npreset {args.preset}, extra overrides {' '.join(args.extra) or '(none)'}; MFCC+deltas baseline "
          f"ABX {mfcc:.2f} % on the same {len(task.items)} items (cosine, across speakers)")
    header = ["variant", "seeds", "steps", "train min", "ABX codes %", "x MFCC", "ABX prequant %", "ABX top %",
              "bitrate b/s", "codes used", "perplexity", "leakage bottom", "leakage top"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name, results in rows:
        col = lambda key: [r[key] for r in results]  # noqa: E731
        print("| " + " | ".join([
            name, ",".join(str(r["seed"]) for r in results), str(results[0]["steps"]), mean_range(col("minutes"), 1),
            mean_range(col("abx_codes"), 2), mean_range([v / mfcc for v in col("abx_codes")], 2),
            mean_range(col("abx_prequant"), 2), mean_range(col("abx_top"), 2), mean_range(col("bitrate"), 0),
            mean_range(col("codes_used"), 0), mean_range(col("perplexity"), 0), mean_range(col("leakage_bottom"), 3),
            mean_range(col("leakage_top"), 3)]) + " |")


if __name__ == "__main__":
    main()
