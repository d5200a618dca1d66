"""The one checkpoint format, shared by every trained model.

A checkpoint is a single ``torch.save`` dict, written atomically::

    format       "zs2020-checkpoint/1"
    kind         "vqvae" | "melgan" | ...
    config       the whole resolved config (plain dict, ``Config.to_dict()``) the run was made with
    fingerprint  hash of what must match for a resume (config section + data identity)
    step         optimisation steps done
    models       {name: state_dict}
    optimizers   {name: state_dict}
    meta         {"speakers": {name: id}, "feature_spec": {...}, ...}
    history      [{"step": s, "metric": value, ...}, ...]   (curves survive a resume)
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from pipeline.core.errors import UserError
from pipeline.core.io import atomic_path
from pipeline.core.runtime import unwrap

FORMAT = "zs2020-checkpoint/2"      # 2: model constructor arguments in meta, typed config


class OldCheckpoint(UserError):
    """A checkpoint written by an earlier version of this format."""


def save_checkpoint(path: str | os.PathLike, *, kind: str, config: dict, fingerprint: str, step: int,
                    models: dict, optimizers: dict | None = None, meta: dict | None = None,
                    history: list | None = None) -> None:
    payload = {
        "format": FORMAT,
        "kind": kind,
        "config": config,
        "fingerprint": fingerprint,
        "step": int(step),
        "models": {name: unwrap(m).state_dict() if isinstance(m, torch.nn.Module) else m
                   for name, m in models.items()},
        "optimizers": {name: o.state_dict() if hasattr(o, "state_dict") else o
                       for name, o in (optimizers or {}).items()},
        "meta": meta or {},
        "history": history or [],
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | os.PathLike, kind: str | None = None, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint")
    try:
        # weights_only: a checkpoint holds tensors and plain types only, so loading one can never
        # run code (a pickled object would be refused here, with the reason).
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise UserError(f"{path}: not a readable checkpoint ({' '.join(str(exc).split())[:120]})") from None
    if not isinstance(payload, dict) or not str(payload.get("format", "")).startswith("zs2020-checkpoint/"):
        raise UserError(f"{path}: not a zs2020 checkpoint")
    if payload["format"] != FORMAT:
        raise OldCheckpoint(f"{path}: written by another version of zs2020 ({payload['format']}, this one reads "
                            f"{FORMAT}); retrain it (training stages do so on their own)")
    if kind is not None and payload["kind"] != kind:
        raise UserError(f"{path}: is a {payload['kind']} checkpoint, expected {kind}")
    return payload
