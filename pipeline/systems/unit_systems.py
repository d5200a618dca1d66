"""The run's unit system, whichever kind it is: ``load_unit_system`` reads the checkpoint's kind
and rebuilds the VQ-VAE-2 (``vqvae``) or the VQMIVC (``vqmivc``). Both offer the same inference
interface (spec, speakers, codebooks, unit_frames, speaker_norm, encode_mels / encode_audio / encode_wav,
encode_source (a conversion source's units; both take a speaker's statistics, which only a
VQ-VAE-2 with speaker_norm reads),
decode_units, reconstruct, description, hyperparameters, AUX_DESCRIPTIONS, languages); only the
VQMIVC embeds reference utterances (``reference_embedding``) for one-shot conversion."""
from __future__ import annotations

import os

import torch

from pipeline.core.checkpoint import load_checkpoint
from pipeline.core.errors import UserError
from pipeline.systems import vqmivc, vqvae

LOADERS = {vqvae.KIND: vqvae.load_vqvae, vqmivc.KIND: vqmivc.load_vqmivc}
# the config's ``system`` value -> the checkpoint kind it trains
SYSTEM_KINDS = {"vqvae2": vqvae.KIND, "vqmivc": vqmivc.KIND}


def unit_system_kind(checkpoint: str | os.PathLike) -> str:
    """The kind of a unit-system checkpoint (one clear error for anything else)."""
    kind = load_checkpoint(checkpoint)["kind"]
    if kind not in LOADERS:
        raise UserError(f"{checkpoint}: is a {kind} checkpoint, not a unit system (expected one of "
                        f"{', '.join(LOADERS)})")
    return kind


def load_unit_system(checkpoint: str | os.PathLike, device: str | torch.device = "cpu"):
    """The trained unit system of a checkpoint, ready for inference."""
    return LOADERS[unit_system_kind(checkpoint)](checkpoint, device)


def supports_reference(system) -> bool:
    """Whether the system can speak in the voice of a reference utterance (one-shot)."""
    return hasattr(system, "reference_embedding")
