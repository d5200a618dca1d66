"""What the research benchmarks (ablate_units, compare_conversion, diagnose_conversion) share:
training minutes that survive re-runs, the identity of a unit system's settings, and one way to
print a cell measured over several seeds.

The benchmarks call stages that skip themselves when their output is up to date (silently under
--quiet), so the minutes of a training are recorded beside its checkpoint when the checkpoint is
written, and read back when it is found up to date."""
from __future__ import annotations

import json
import math
import statistics
import subprocess
import time
from pathlib import Path

from pipeline.train.vqvae import unit_system_settings

# VQMIVC as first built (512 codes, no perturbation, the speaker encoder on the crop itself): every
# VQMIVC variant of the benchmarks starts from these, so a row means the same whatever the presets'
# vqmivc section becomes
VQMIVC_AS_FIRST_BUILT = ["system=vqmivc", "vqmivc.model.codes=512", "vqmivc.perturb.warp=0.0",
                         "vqmivc.perturb.tilt=0.0", "vqmivc.speaker_input=same_crop", "vqmivc.speaker_augment=0.0"]


def timed_stage(command: list[str], product: Path, timing: Path, **note) -> float:
    """Run ``command`` (a `zs2020` stage that writes ``product``); the minutes it took to make
    ``product``, from ``timing`` when the stage left it untouched."""
    before = product.stat().st_mtime_ns if product.is_file() else None
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(Path(c).name for c in command[:2])} failed: {done.stderr.strip()[-600:]}")
    minutes = (time.perf_counter() - start) / 60
    if before is None or product.stat().st_mtime_ns != before or not timing.is_file():
        timing.write_text(json.dumps({"minutes": minutes, **note}))
    return json.loads(timing.read_text())["minutes"]


def unit_settings(config) -> list:
    """What trained units depend on in a config: the system and both systems' sections. VQMIVC's
    later training options (input perturbation, the speaker encoder's input, the whole-crop
    stretch) enter only where they act (a vqmivc system, set away from how it was first built),
    so rows measured before the keys existed keep their identity; the VQ-VAE-2's later keys
    likewise (``pipeline.train.vqvae.unit_system_settings``)."""
    vqmivc = config.vqmivc.to_dict()
    if config.system != "vqmivc" or not config.vqmivc.perturb.active:
        del vqmivc["perturb"]
    if config.system != "vqmivc" or vqmivc["speaker_input"] == "same_crop":
        del vqmivc["speaker_input"]
    if config.system != "vqmivc" or not vqmivc["speaker_augment"]:
        del vqmivc["speaker_augment"]
    return [config.system, unit_system_settings(config), vqmivc]


def mean_range(values: list[float], digits: int) -> str:
    """A table cell: the value, or the mean with the range over seeds; "–" when nothing was measured
    (no values, or only None/NaN ones: a VQMIVC has no top-level codes to leak)."""
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"
