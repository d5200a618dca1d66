"""Config text: safe YAML (``parse_yaml``, ``read_yaml_file``) and ``key=value`` overrides
(``apply_overrides``), applied to plain dicts before ``pipeline.core.config`` checks them."""
from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any, Iterable

import yaml

from pipeline.core.errors import UserError

MAX_CONFIG_BYTES = 1 << 20
MAX_YAML_DEPTH = 32             # a config nests 4 levels; a YAML document 20,000 deep overflowed the stack


class _Refused(yaml.YAMLError):
    """YAML that parses but that no config may hold: aliases, too deep, a number too long."""


class _NoAliasLoader(yaml.SafeLoader):
    """Safe YAML without anchors and aliases, nested at most ``MAX_YAML_DEPTH`` levels: a config
    is small, aliases are how a tiny file expands into a huge structure, and the composer
    recurses once a level (20,000 levels ended in a RecursionError)."""

    depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise _Refused(f"YAML aliases are not allowed in configs (line {event.start_mark.line + 1})")
        if self.depth >= MAX_YAML_DEPTH:
            raise _Refused(f"nested too deeply: more than {MAX_YAML_DEPTH} levels "
                           f"(line {self.peek_event().start_mark.line + 1})")
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


# YAML 1.1 reads 1e-3, 1e6 and 1.0e6 as strings (its floats need a dot and a signed exponent), so
# ``vqvae.train.lr=1e-3`` was refused as "not a number": numbers in exponent form are numbers.
_NoAliasLoader.add_implicit_resolver("tag:yaml.org,2002:float",
                                     re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
                                     list("-+0123456789"))


def parse_yaml(text: str) -> Any:
    """Plain data from config YAML (safe, no aliases, bounded depth); yaml.YAMLError when it is
    not, ``_Refused`` for what no config may hold (an integer of more than 4300 digits: Python
    refuses to convert it)."""
    try:
        return yaml.load(text, Loader=_NoAliasLoader)
    except ValueError as exc:
        raise _Refused(" ".join(str(exc).split(";")[0].split())) from None


def read_yaml_file(path: Path) -> Any:
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise UserError(f"{path}: larger than {MAX_CONFIG_BYTES >> 20} MB; not a config")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    try:
        return parse_yaml(text)
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: malformed YAML ({' '.join(str(exc).split())[:200]})") from None


def apply_overrides(config: dict, overrides: Iterable[str]) -> dict:
    """Apply ``key=value`` overrides to a plain config dict (unknown keys refused)."""
    config = copy.deepcopy(config)
    for item in overrides:
        if "=" not in item:
            raise UserError(f"override {item!r} is not of the form key=value")
        dotted, raw = item.split("=", 1)
        parts = dotted.strip().split(".")
        node = config
        for i, part in enumerate(parts[:-1]):
            if not isinstance(node, dict) or part not in node or not isinstance(node[part], dict):
                raise UserError(f"override {item!r}: unknown key {'.'.join(parts[:i + 1])!r}")
            node = node[part]
        if not isinstance(node, dict) or parts[-1] not in node:
            raise UserError(f"override {item!r}: unknown key {dotted.strip()!r}")
        if len(raw) > MAX_CONFIG_BYTES:
            raise UserError(f"override {dotted.strip()}: a value of {len(raw)} characters; a config holds at "
                            f"most {MAX_CONFIG_BYTES >> 20} MB")
        value = _override_value(dotted.strip(), raw)
        if isinstance(node[parts[-1]], dict) and not isinstance(value, dict):
            raise UserError(f"override {item!r}: {dotted.strip()!r} is a section; set one of its keys "
                            f"({', '.join(node[parts[-1]])})")
        node[parts[-1]] = value
    return config


def _override_value(key: str, raw: str) -> Any:
    """An override's value parsed as YAML; text that is not YAML stays text (``author=[Ada``),
    but YAML no config may hold (aliases, too deep, a number too long) is refused, naming only
    the key: the value itself may be megabytes."""
    if not raw.strip():
        return ""
    try:
        return parse_yaml(raw)
    except _Refused as exc:
        raise UserError(f"override {key}: {' '.join(str(exc).split())[:200]}") from None
    except yaml.YAMLError:
        return raw
