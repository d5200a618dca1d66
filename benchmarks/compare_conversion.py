"""Conversion comparison: training methods 1/2/3, self-cycle consistency and vocoder variants,
each trained on the same corpus from the same preset, scored with the evaluator's converted-speech
measures on the synthesis lines.

A variant is (unit-system overrides, vocoder overrides). Unit systems are trained once per
(overrides, seed) and shared by the vocoder variants that use them; a variant whose vocoder
trains the unit system itself (method 3, ``joint``) trains no separate one. For every variant
and seed: `zs2020 train-vqvae`, `zs2020 train-melgan`, `zs2020 convert` of every synthesis line,
then similarity to the target voice and to the source speaker (and the share of lines closer
to the target), pocketsphinx CER/WER, MCD against the target's own rendering and DNSMOS
(`pipeline.evaluation.speech`), plus the training minutes of both stages.

    .venv/bin/python benchmarks/compare_conversion.py --variants m1,m2 --seeds 1234,7 [--out data/compare]

Results are cached per (variant, seed) in OUT/<variant>/seed<seed>/result.json.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.contract.dataset import Dataset  # noqa: E402
from pipeline.core.config import load_config  # noqa: E402
from pipeline.core.stamp import fingerprint, without_off_values  # noqa: E402
from pipeline.train.melgan import ADDED_TRAIN_KEYS  # noqa: E402
from pipeline.evaluation.oneshot import OneShotPlan, one_shot_measures  # noqa: E402
from pipeline.evaluation.speech import speech_measures  # noqa: E402
from pipeline.features import FeatureStore, feature_spec  # noqa: E402
from common import VQMIVC_AS_FIRST_BUILT, mean_range, timed_stage, unit_settings  # noqa: E402

ZS = str(Path(sys.executable).with_name("zs2020"))
# Every variant states the settings it compares, so a row means the same whatever the preset's
# defaults become. UNITS: the demo's unit system (VQ-VAE-2 with contrastive coding, see
# benchmarks/ablate_units.py); VOCODER: method 1 as first built (700 steps on the frozen unit
# system's reconstructions of the target voices, no STFT loss, the waveform head).
UNITS = ["system=vqvae2", "vqvae.model.cpc_steps=6", "vqvae.loss.cpc=1.0", "vqvae.model.bottom_codes=512",
         "vqvae.model.bottom_sees_top=false", "vqvae.model.bottom_encoder=frames", "vqvae.loss.cycle_codes=0.0",
         "vqvae.loss.cycle_recon=0.0", "vqvae.loss.cycle_speaker=0.0", "vqvae.model.classifier_hidden=0",
         "vqvae.model.decoder_blocks=0", "vqvae.model.decoder_rnn=0", "vqvae.model.speaker_every_block=false",
         "vqvae.model.tract_search=0.0",
         "vqvae.train.steps=3000"]
VOCODER = ["melgan.train.method=separate", "melgan.train.input_mels=vqvae", "melgan.loss.stft=0.0",
           "melgan.train.speakers=targets", "melgan.train.steps=700", "melgan.train.warmup_steps=500",
           "melgan.generator.head=waveform", "melgan.generator.ngf=16", "melgan.generator.frame_blocks=0",
           "melgan.generator.ratios=[5,4,4,2]", "melgan.generator.mel_anchor=false", "melgan.train.lr_warmup=1.0e-3",
           "melgan.train.lr_end=1.0", "melgan.train.ema=0.0"]
CYCLE = ["vqvae.loss.cycle_codes=1.0", "vqvae.loss.cycle_recon=1.0"]
CYCLE_SPEAKER = CYCLE + ["vqvae.model.classifier_hidden=64", "vqvae.loss.cycle_speaker=0.1"]
GROUND_TRUTH = ["melgan.train.input_mels=ground_truth"]
# The istft head (models.melgan): every layer at the frame rate, a predicted spectrum inverted by an
# inverse STFT. Its generator-only steps are cheaper: in about m1_stft's train minutes it gets
# 1200 of them (and the same 200 adversarial steps) where m1 gets 500.
ISTFT = ["melgan.generator.head=istft", "melgan.generator.ratios=[]", "melgan.generator.ngf=256",
         "melgan.generator.frame_blocks=8", "melgan.generator.istft_fft=640", "melgan.generator.istft_hop=160",
         "melgan.loss.stft=2.0", "melgan.train.steps=1400", "melgan.train.warmup_steps=1200"]
# The istft head's log-magnitude as a residual on the input mel's pseudo-inverse (models.melgan);
# ANCHOR_SLOW warms up at the adversarial rate (at 1e-3 every anchored run diverged for a while).
ANCHOR = ["melgan.generator.mel_anchor=true"]
ANCHOR_SLOW = ANCHOR + ["melgan.train.lr_warmup=2.0e-4"]
# The slow warm-up's 1200 generator-only steps and no adversarial ones (the demo vocoder now).
ANCHOR_SLOW_ADV0 = ANCHOR_SLOW + ["melgan.train.steps=1200"]
# The VQ-VAE-2's decoder with four residual blocks dilated 1, 2, 4, 8 (with its first convolution a
# context of 33 bottom codes instead of 7), trained 5000 steps (the demo unit system now).
DEC4_5000 = ["vqvae.model.decoder_blocks=4", "vqvae.train.steps=5000"]
# The vocoder's rate falling linearly to a tenth by its last step (measured no better; not a preset's).
DECAY = ["melgan.train.lr_end=0.1"]
# Conversion encodes each source in the frequency stretch that fits the bottom codebook best (models.vqvae2.tract_fit).
TRACT = ["vqvae.model.tract_search=0.3"]
# Layer-normalised ConvNeXt blocks at the frame rate, to keep the 1e-3 warm-up from diverging.
CONVNEXT = ["melgan.generator.frame_block=convnext"]
VQMIVC = VQMIVC_AS_FIRST_BUILT
# VQMIVC with the frequency stretch and 128 codes (the configuration that meets the leakage goal)
VQMIVC_WARP128 = VQMIVC + ["vqmivc.perturb.warp=0.15", "vqmivc.model.codes=128"]
NO_MI = ["vqmivc.loss.mi_content_speaker=0", "vqmivc.loss.mi_content_pitch=0", "vqmivc.loss.mi_pitch_speaker=0"]
# name -> (unit-system overrides, vocoder overrides), each on top of UNITS and VOCODER
VARIANTS: dict[str, tuple[list[str], list[str]]] = {name: (UNITS + units, VOCODER + vocoder) for name, (units, vocoder) in {
    "m1": ([], []),
    "m1_real_mels": ([], GROUND_TRUTH),
    "m1_stft": ([], ["melgan.loss.stft=2.0"]),
    "m1_all_speakers": ([], ["melgan.train.speakers=all"]),
    "m1_long": ([], ["melgan.train.steps=1400", "melgan.train.warmup_steps=1000"]),
    "m1_istft": ([], ISTFT),
    "m1_istft_long": ([], ISTFT + ["melgan.train.steps=3000", "melgan.train.warmup_steps=2600"]),
    "m1_istft_anchor": ([], ISTFT + ANCHOR),
    "m1_istft_anchor_slow": ([], ISTFT + ANCHOR_SLOW),
    "m1_istft_anchor_convnext": ([], ISTFT + ANCHOR + CONVNEXT),
    # three times the adversarial steps (600 instead of 200) after the same warm-up
    "m1_istft_anchor_slow_adv600": ([], ISTFT + ANCHOR_SLOW + ["melgan.train.steps=1800"]),
    # no adversarial steps at all (the 1200 warm-up steps only), and a warm-up rate between the two
    "m1_istft_anchor_slow_adv0": ([], ISTFT + ANCHOR_SLOW_ADV0),
    "m1_istft_anchor_5e-4": ([], ISTFT + ANCHOR + ["melgan.train.lr_warmup=5.0e-4"]),
    # the unit system trained 5000 steps instead of 3000, with the generator-only anchored vocoder
    "m1_units5000_istft_anchor_slow_adv0": (["vqvae.train.steps=5000"], ISTFT + ANCHOR_SLOW_ADV0),
    # the VQ-VAE-2's encoder sees a frequency-stretched copy of each crop (the decoder rebuilds the crop)
    "m1_warp_istft_anchor_slow_adv0": (["vqvae.perturb.warp=0.15"], ISTFT + ANCHOR_SLOW_ADV0),
    "m1_warp_tilt_istft_anchor_slow_adv0": (["vqvae.perturb.warp=0.15", "vqvae.perturb.tilt=0.1"],
                                            ISTFT + ANCHOR_SLOW_ADV0),
    # the VQ-VAE-2's decoder with 4 or 6 dilated residual blocks, then the 4 trained longer
    "m1_dec4_istft_anchor_slow_adv0": (["vqvae.model.decoder_blocks=4"], ISTFT + ANCHOR_SLOW_ADV0),
    "m1_dec6_istft_anchor_slow_adv0": (["vqvae.model.decoder_blocks=6"], ISTFT + ANCHOR_SLOW_ADV0),
    "m1_dec4_units5000_istft_anchor_slow_adv0": (DEC4_5000, ISTFT + ANCHOR_SLOW_ADV0),
    # DEC4_5000 with the vocoder's generator-only steps 2000 instead of 1200
    "m1_dec4_units5000_istft_anchor_v2000": (DEC4_5000, ISTFT + ANCHOR_SLOW + ["melgan.train.steps=2000",
                                                                           "melgan.train.warmup_steps=2000"]),
    # and 800 (DNSMOS falls as the generator-only steps grow past 1200)
    "m1_dec4_units5000_istft_anchor_v800": (DEC4_5000, ISTFT + ANCHOR_SLOW + ["melgan.train.steps=800",
                                                                         "melgan.train.warmup_steps=800"]),
    # DEC4_5000 with the vocoder's rate falling linearly to a tenth by its last step, over 1200 or 2000 steps
    "m1_dec4_units5000_istft_anchor_decay": (DEC4_5000, ISTFT + ANCHOR_SLOW_ADV0 + DECAY),
    "m1_dec4_units5000_istft_anchor_v2000_decay": (DEC4_5000, ISTFT + ANCHOR_SLOW + DECAY + [
        "melgan.train.steps=2000", "melgan.train.warmup_steps=2000"]),
    # the demo's units trained on crops twice as long (2.56 s) in half the batch: the same frames a
    # step, fewer of the dilated decoder's outputs at a crop's edge
    "m1_dec4_units5000_crop256_istft_anchor_decay": (DEC4_5000 + ["vqvae.train.segment_frames=256",
                                                                  "vqvae.train.batch_size=8"],
                                                     ISTFT + ANCHOR_SLOW_ADV0 + DECAY),
    # DEC4_5000 with the test-time tract search: each source is stretched along frequency to fit the codebook
    "m1_dec4_units5000_tract_istft_anchor_slow_adv0": (DEC4_5000 + TRACT, ISTFT + ANCHOR_SLOW_ADV0),
    # and the vocoder's weights averaged for inference (decay 0.995 or 0.99 a step)
    "m1_dec4_units5000_tract_istft_anchor_ema995": (DEC4_5000 + TRACT, ISTFT + ANCHOR_SLOW_ADV0
                                                    + ["melgan.train.ema=0.995"]),
    "m1_dec4_units5000_tract_istft_anchor_ema99": (DEC4_5000 + TRACT, ISTFT + ANCHOR_SLOW_ADV0
                                                   + ["melgan.train.ema=0.99"]),
    # and 800 or 1000 generator-only steps instead of 1200 (fewer steps: more DNSMOS, more CER without the average)
    "m1_dec4_units5000_tract_istft_anchor_v800_ema99": (DEC4_5000 + TRACT, ISTFT + ANCHOR_SLOW + [
        "melgan.train.steps=800", "melgan.train.warmup_steps=800", "melgan.train.ema=0.99"]),
    "m1_dec4_units5000_tract_istft_anchor_v1000_ema99": (DEC4_5000 + TRACT, ISTFT + ANCHOR_SLOW + [
        "melgan.train.steps=1000", "melgan.train.warmup_steps=1000", "melgan.train.ema=0.99"]),
    # DEC4_5000 with the encoder shown frequency-stretched crops (the decoder rebuilds the crop)
    "m1_dec4_units5000_warp_istft_anchor_slow_adv0": (DEC4_5000 + ["vqvae.perturb.warp=0.15"],
                                                      ISTFT + ANCHOR_SLOW_ADV0),
    # the dilated decoder trained 7000 steps
    "m1_dec4_units7000_istft_anchor_slow_adv0": (["vqvae.model.decoder_blocks=4", "vqvae.train.steps=7000"],
                                                 ISTFT + ANCHOR_SLOW_ADV0),
    # DEC4_5000 with a bidirectional GRU (64 units a direction) after the dilated blocks: the
    # decoder's context becomes the whole input
    "m1_dec4_rnn_units5000_istft_anchor_slow_adv0": (DEC4_5000 + ["vqvae.model.decoder_rnn=64"],
                                                     ISTFT + ANCHOR_SLOW_ADV0),
    # DEC4_5000 with the speaker embedding added before every dilated block, not only at the input
    "m1_dec4_spk_units5000_istft_anchor_slow_adv0": (DEC4_5000 + ["vqvae.model.speaker_every_block=true"],
                                                     ISTFT + ANCHOR_SLOW_ADV0),
    # the dilated decoder (3000 steps) with time-jitter on the bottom codes (bshall's 0.5): the
    # decoder cannot rely on exact code timing
    "m1_dec4_jitter_istft_anchor_slow_adv0": (["vqvae.model.decoder_blocks=4", "vqvae.model.jitter=0.5"],
                                              ISTFT + ANCHOR_SLOW_ADV0),
    # self-cycle consistency (weights 1, re-encoding with the encoder frozen) under the default vocoder
    "m1_cycle_istft_anchor_slow_adv0": (CYCLE, ISTFT + ANCHOR_SLOW_ADV0),
    # iSTFTNet's layout: two upsamplings (to 2 kHz) and a 32-point inverse STFT with a hop of 8
    "m1_istftnet": ([], ISTFT + ["melgan.generator.ratios=[5,4]", "melgan.generator.ngf=64",
                                 "melgan.generator.frame_blocks=2", "melgan.generator.istft_fft=32",
                                 "melgan.generator.istft_hop=8"]),
    "m2": ([], ["melgan.train.method=finetune"] + GROUND_TRUTH),
    "m2_stft": ([], ["melgan.train.method=finetune", "melgan.loss.stft=2.0"] + GROUND_TRUTH),
    "m3": ([], ["melgan.train.method=joint", "melgan.loss.vqvae=45", "melgan.train.steps=900",
                "melgan.train.warmup_steps=650"] + GROUND_TRUTH),     # about the CPU time of m1 with its unit system
    "m1_cycle": (CYCLE, []),
    "m1_cycle_speaker": (CYCLE_SPEAKER, []),
    "vqmivc": (VQMIVC, []),
    "vqmivc_no_mi": (VQMIVC + NO_MI, []),
    "vqmivc_istft": (VQMIVC, ISTFT),
    "vqmivc_warp_istft": (VQMIVC + ["vqmivc.perturb.warp=0.15"], ISTFT),
    "vqmivc_warp_other_istft": (VQMIVC + ["vqmivc.perturb.warp=0.15", "vqmivc.speaker_input=other_utterance"], ISTFT),
    "vqmivc_warp_codes128_istft": (VQMIVC_WARP128, ISTFT),
    "vqmivc_warp_codes128_aug_istft": (VQMIVC_WARP128 + ["vqmivc.speaker_augment=0.15"], ISTFT),
    "vqmivc_warp_codes128_anchor": (VQMIVC_WARP128, ISTFT + ANCHOR),
    "vqmivc_warp_codes128_anchor_slow": (VQMIVC_WARP128, ISTFT + ANCHOR_SLOW),
    "vqmivc_warp_codes128_anchor_slow_adv0": (VQMIVC_WARP128, ISTFT + ANCHOR_SLOW_ADV0),
}.items()}
COLUMNS = [("share_closer_to_target", "closer to target", 2), ("sim_target_converted", "sim. target", 3),
           ("sim_source_converted", "sim. source", 3), ("cer_converted", "CER", 3), ("wer_converted", "WER", 3),
           ("mcd_converted", "MCD dB", 2), ("dnsmos_converted", "DNSMOS", 2),
           ("one_shot_share_closer_to_reference", "one-shot closer to reference", 2),
           ("one_shot_sim_reference_converted", "one-shot sim. reference", 3),
           ("one_shot_sim_source_converted", "one-shot sim. source", 3), ("one_shot_cer_converted", "one-shot CER", 3),
           ("one_shot_dnsmos_converted", "one-shot DNSMOS", 2)]


# Generator keys that came with the istft head. A waveform-head run without frame-rate blocks
# ignores them, so they stay out of its identity: rows measured before they existed stay valid.
ISTFT_KEYS = ("head", "frame_blocks", "istft_fft", "istft_hop")
# Keys added later whose off value is what every earlier row ran with (the same reason).
OFF_BY_DEFAULT = {"mel_anchor": False, "frame_block": "residual"}


def vocoder_identity(config) -> dict:
    settings = config.melgan.to_dict()
    generator = without_off_values(settings["generator"], OFF_BY_DEFAULT)
    if generator["head"] == "waveform" and generator["frame_blocks"] == 0:
        generator = {k: v for k, v in generator.items() if k not in ISTFT_KEYS}
    settings["generator"] = generator
    settings["train"] = without_off_values(settings["train"], ADDED_TRAIN_KEYS)   # as the run's fingerprint
    return settings


def run(command: list[str]) -> float:
    """Run a stage; minutes it took (0 when it found its output up to date)."""
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[1:3])} failed: {done.stderr.strip()[-600:]}")
    return 0.0 if "up to date" in done.stdout else (time.perf_counter() - start) / 60


def train_units(args, overrides: list[str], seed: int) -> tuple[Path, float]:
    config = load_config(args.preset, overrides)
    folder = args.out / "units" / fingerprint(*unit_settings(config), seed)
    checkpoint = folder / "vqvae" / "checkpoint.pt"
    minutes = timed_stage([ZS, "train-vqvae", "--features", str(args.features), "--out", str(folder / "vqvae"),
                           "--config", args.preset, "--quiet", f"seed={seed}", *overrides],
                          checkpoint, folder / "train_minutes.json", overrides=overrides, seed=seed)
    return checkpoint, minutes


def run_variant(args, name: str, seed: int) -> dict:
    units, vocoder = VARIANTS[name]
    features = [FeatureStore(p).fingerprint for p in sorted(args.features.glob("*.h5"))]
    config = load_config(args.preset, units + vocoder)
    identity = fingerprint(*unit_settings(config), vocoder_identity(config), config.features, seed, features,
                           args.lines, args.trials)
    folder = args.out / name / f"seed{seed}"
    cached = folder / "result.json"
    if cached.is_file() and json.loads(cached.read_text()).get("identity") == identity:
        return json.loads(cached.read_text())
    checkpoint, unit_minutes = train_units(args, units, seed)
    if "melgan.train.method=joint" in vocoder:
        unit_minutes = 0.0          # the vocoder trains its own unit system; the separate one only encodes
    start = time.perf_counter()
    run([ZS, "train-melgan", "--features", str(args.features), "--dataset", str(args.dataset), "--out",
         str(folder / "melgan"), "--vqvae", str(checkpoint), "--config", args.preset, "--quiet", f"seed={seed}",
         *units, *vocoder])
    vocoder_minutes = (time.perf_counter() - start) / 60
    converted = folder / "converted"
    run([ZS, "convert", "--vqvae", str(checkpoint), "--melgan", str(folder / "melgan" / "checkpoint.pt"),
         "--dataset", str(args.dataset), "--out", str(converted), "--force", "--quiet"])
    dataset = Dataset(args.dataset)
    wavs = {p.name: p.read_bytes() for p in converted.glob("*.wav")}
    spec = feature_spec(load_config(args.preset))
    summary = speech_measures(dataset, wavs, spec, jobs=2, max_lines=args.lines, progress=False)["summary"]
    if "system=vqmivc" in units:      # one-shot: a universal vocoder, unseen test speakers as references
        run([ZS, "train-melgan", "--features", str(args.features), "--dataset", str(args.dataset), "--out",
             str(folder / "melgan_universal"), "--vqvae", str(checkpoint), "--config", args.preset, "--quiet",
             f"seed={seed}", *units, *vocoder, "melgan.train.speakers=all"])
        plan = OneShotPlan(checkpoint, folder / "melgan_universal" / "checkpoint.pt", universal=True)
        one_shot, _ = one_shot_measures(plan, dataset, trials=args.trials, seed=0, voice_utts=10,
                                        measures=("similarity", "asr", "dnsmos"), jobs=2, progress=False)
        summary.update({f"one_shot_{k}": v for k, v in one_shot["summary"].items()})
    result = {"variant": name, "seed": seed, "identity": identity, "units": units, "vocoder": vocoder,
              "unit_minutes": unit_minutes, "vocoder_minutes": vocoder_minutes, **summary}
    cached.write_text(json.dumps(result, indent=1))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--features", type=Path, default=Path("data/runs/demo/features"))
    parser.add_argument("--dataset", type=Path, default=Path("data/corpus"))
    parser.add_argument("--out", type=Path, default=Path("data/compare"))
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--variants", default="m1,m2")
    parser.add_argument("--seeds", default="1234")
    parser.add_argument("--lines", type=int, default=20, help="synthesis lines scored")
    parser.add_argument("--trials", type=int, default=10, help="one-shot trials (VQMIVC variants)")
    parser.add_argument("--list", action="store_true", help="print the variants and exit")
    args = parser.parse_args()
    if args.list:
        for name, (units, vocoder) in VARIANTS.items():
            print(f"{name:<18} units: {' '.join(units) or '(preset)'}; vocoder: {' '.join(vocoder) or '(preset)'}")
        return
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.variants.split(","):
        results = []
        for seed in [int(s) for s in args.seeds.split(",")]:
            r = run_variant(args, name, seed)
            print(f"  {name} seed {seed}: closer {r.get('share_closer_to_target', 0):.2f}, CER {r.get('cer_converted', 1):.3f}, "
                  f"DNSMOS {r.get('dnsmos_converted', 0):.2f}", flush=True)
            results.append(r)
        rows.append((name, results))
    print(f"\npreset {args.preset}; {args.lines} synthesis lines; mean over seeds (range)")
    print("| variant | seeds | train min | " + " | ".join(label for _, label, _ in COLUMNS) + " |")
    print("|---|---|---|" + "---|" * len(COLUMNS))
    for name, results in rows:
        minutes = [r["unit_minutes"] + r["vocoder_minutes"] for r in results]
        print(f"| {name} | {','.join(str(r['seed']) for r in results)} | {mean_range(minutes, 1)} | "
              + " | ".join(mean_range([r[k] for r in results if k in r], d) for k, _, d in COLUMNS) + " |")


if __name__ == "__main__":
    main()
