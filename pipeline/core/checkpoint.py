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

A model is rebuilt from the constructor arguments in its meta (``known_arguments``); a setting
stored there that this version no longer has (a retired switch) is dropped, and the weights then
say whether the model still fits: loading them is the check (one ``Error:`` line when they do not).
"""
from __future__ import annotations

import inspect
import os
from pathlib import Path

from pipeline.core.errors import UserError
from pipeline.core.io import atomic_path

FORMAT = "zs2020-checkpoint/2"      # 2: model constructor arguments in meta, typed config


# Every key of the format and its type, checked on load: a checkpoint that loads but lost a key
# or holds another type (edited by hand, written by another tool) is one line naming the file
# here, not a KeyError or TypeError deep in whichever stage reads it first.
SCHEMA: dict[str, type] = {"kind": str, "config": dict, "fingerprint": str, "step": int, "models": dict,
                           "optimizers": dict, "meta": dict, "history": list}


class OldCheckpoint(UserError):
    """A checkpoint written by an earlier version of this format."""


def save_checkpoint(path: str | os.PathLike, *, kind: str, config: dict, fingerprint: str, step: int,
                    models: dict, optimizers: dict | None = None, meta: dict | None = None,
                    history: list | None = None) -> None:
    import torch    # here and in load_checkpoint: importing this module (stage options) needs no torch

    from pipeline.core.runtime import unwrap
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


def load_checkpoint(path: str | os.PathLike, kind: str | None = None, map_location="cpu",
                    models: tuple[str, ...] = ()) -> dict:
    """The checkpoint at ``path``, checked: of this format, complete (``SCHEMA``), of ``kind``
    when given, and holding the state dicts named in ``models``."""
    import torch
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
    check_schema(path, payload)
    if kind is not None and payload["kind"] != kind:
        raise UserError(f"{path}: is a {payload['kind']} checkpoint, expected {kind}")
    for name in models:
        if name not in payload["models"]:
            _damaged(path, f"no {name!r} model")
    return payload


def check_schema(path: Path, payload: dict) -> None:
    """Refuse a checkpoint of this format that lacks a key of ``SCHEMA`` or holds another type
    there (``models`` a mapping of state dicts, ``step`` a count)."""
    for name, kind in SCHEMA.items():
        value = payload.get(name)
        if name not in payload:
            _damaged(path, f"no {name!r} entry")
        if not isinstance(value, kind) or isinstance(value, bool):
            _damaged(path, f"{name!r} is a {type(value).__name__}, expected a {kind.__name__}")
    if payload["step"] < 0:
        _damaged(path, f"step {payload['step']} is negative")
    for name, state in payload["models"].items():
        if not isinstance(state, dict):
            _damaged(path, f"model {name!r} is a {type(state).__name__}, expected a state dict")


def known_arguments(target, arguments: dict) -> dict:
    """The entries of ``arguments`` (a checkpoint's stored constructor arguments) that ``target``
    (a class or a dataclass) still takes; the others name settings this version retired."""
    if not isinstance(arguments, dict):
        raise TypeError(f"stored arguments are a {type(arguments).__name__}, not a mapping")
    names = inspect.signature(target).parameters
    return {name: value for name, value in arguments.items() if name in names}


def _damaged(path: Path, detail: str):
    # Training refuses it too (it would resume from it): the user removes it and trains again.
    raise UserError(f"{path}: damaged checkpoint ({detail}); delete it and train again")
