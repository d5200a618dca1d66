"""Configs are data: YAML presets (tiny, demo, full) plus ``key=value`` overrides.

A config is a plain nested dict so that it can be stored verbatim inside checkpoints
(``checkpoint["config"]``) and in the submission metadata. Overrides use dotted keys
(``vqvae.train.steps=200``); values are parsed as YAML (``true``, ``1e-3``, ``[5,4,4,2]``).
Unknown keys are refused, so a typo never silently does nothing.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable

import yaml

from pipeline.errors import UserError

PRESET_DIR = Path(__file__).resolve().parent / "configs"
PRESETS = ("tiny", "demo", "full")


def preset_path(preset: str | os.PathLike) -> Path:
    """A preset name (tiny/demo/full) or a path to a YAML file."""
    text = str(preset)
    if text in PRESETS:
        return PRESET_DIR / f"{text}.yaml"
    path = Path(text)
    if not path.is_file():
        raise UserError(f"unknown config {text!r}: use one of {', '.join(PRESETS)} or a path to a YAML file")
    return path


def load_config(preset: str | os.PathLike = "demo", overrides: Iterable[str] = ()) -> dict:
    path = preset_path(preset)
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: malformed YAML ({' '.join(str(exc).split())[:200]})") from None
    if not isinstance(config, dict):
        raise UserError(f"{path}: a config must be a YAML mapping")
    return apply_overrides(config, overrides)


def apply_overrides(config: dict, overrides: Iterable[str]) -> dict:
    config = copy.deepcopy(config)
    for item in overrides:
        if "=" not in item:
            raise UserError(f"override {item!r} is not of the form key=value")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        node = config
        for i, part in enumerate(parts[:-1]):
            if not isinstance(node, dict) or part not in node:
                raise UserError(f"override {item!r}: unknown key {'.'.join(parts[:i + 1])!r}")
            node = node[part]
        if not isinstance(node, dict) or parts[-1] not in node:
            raise UserError(f"override {item!r}: unknown key {key.strip()!r}")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node[parts[-1]] = value
    return config


def get(config: dict, dotted: str, default: Any = None) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def fingerprint(*parts: Any) -> str:
    """A short stable hash of JSON-able data, used for up-to-date checks."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def dump(config: dict) -> str:
    return yaml.safe_dump(config, sort_keys=False)
