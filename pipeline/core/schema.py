"""The schema machinery of the config (``pipeline.core.config`` holds the sections): a field is
``key(...)`` with its bounds, a section is a frozen dataclass checked by ``Section.from_dict``,
and every value is converted and checked against its type here, so a bad value is one line
naming the key, the value and what is allowed.

A key added to the schema after checkpoints were written states, in its ``key(added=...)``, the
value that reproduces the behaviour before it existed (``was=`` names the key its value was
stored under before, when it moved). That is applied only to a config read back from a
checkpoint (``Section.from_dict(..., stored=...)``), never to a preset or a user's YAML, which
state every key; a stored key the schema no longer knows (a retired switch) is dropped there.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Literal

from pipeline.core.errors import UserError

LANGUAGE = Literal["english", "surprise"]

# Upper bounds of sizes: what one machine can hold. A value past them is a typo or a unit mistake,
# refused here in one line instead of by the allocator or the kernel later (bottom_codes=2000000000
# asked for 256 GB and died with a traceback; runtime.threads=100000 crashed the process).
MAX_WIDTH = 1 << 13             # channels, vector sizes, hidden units: one 4-tap layer this wide is 1 GB
MAX_CODES = 1 << 16             # codebook entries (16 bits a unit; the presets use 32 to 512)
MAX_DEPTH = 1 << 10             # blocks and layers of a plain stack
MAX_GEOMETRIC = 12              # stacks that grow geometrically: dilations 2**i or 3**i (12 span seconds)
MAX_STEPS = 10 ** 9             # training steps, and periods counted in steps
MAX_BATCH = 1 << 16             # items of one batch
MAX_FRAMES = 1 << 16            # frames of one crop or sample (inputs are at most 300 s: 30,000 frames)
MAX_SAMPLES = 1 << 16           # FFT sizes, hops, windows and upsampling ratios, in samples
MAX_COUNT = 1 << 20             # utterances, lines and trials taken from the data
MAX_SCALE = 100                 # demo corpus multiples (100 x demo is about 100 hours of audio)
MAX_SEED = 2 ** 63 - 1          # torch seeds are 64-bit
_NEVER = object()               # a key that every stored config holds (no ``added`` value)


def key(*, ge: float | None = None, gt: float | None = None, le: float | None = None, lt: float | None = None,
        min_items: int = 0, length: int | None = None, added: Any = _NEVER, was: str | None = None) -> Any:
    """A schema field: numeric bounds (for numbers and for every number inside a list), the
    minimum number of items of a list, or its exact length. A key added after checkpoints were
    written gives ``added``, the value that reproduces the behaviour before it existed, and
    ``was``, the dotted key its value was stored under before, when it moved (read first)."""
    return dataclasses.field(metadata={"ge": ge, "gt": gt, "le": le, "lt": lt, "min_items": min_items,
                                       "length": length, "added": added, "was": was})


class _Invalid(Exception):
    def __init__(self, expected: str):
        super().__init__(expected)
        self.expected = expected


def _describe(kind) -> str:
    origin = typing.get_origin(kind)
    if kind is bool:
        return "true or false"
    if kind is int:
        return "an integer"
    if kind is float:
        return "a number"
    if kind is str:
        return "a string"
    if origin is Literal:
        return "one of " + ", ".join(str(v) for v in typing.get_args(kind))
    if origin is list:
        item = typing.get_args(kind)[0]
        if typing.get_origin(item) is Literal:
            return f"a list of items among {', '.join(str(v) for v in typing.get_args(item))}"
        return f"a list of {_PLURAL.get(item, 'lists of numbers')}"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(k) for k in typing.get_args(kind))
    if isinstance(kind, type) and issubclass(kind, Section):
        return "a section (a mapping of keys)"
    return str(kind)


_PLURAL = {int: "integers", float: "numbers", str: "strings", bool: "booleans"}


def _bounds_text(meta: dict) -> str:
    parts = [f"{op} {_number_text(meta[name])}" for name, op in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))
             if meta.get(name) is not None]
    return " and ".join(parts)


def _number_text(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"     # bounds like 65536 print whole


def _check_number(value: float, meta: dict) -> None:
    if meta.get("ge") is not None and not value >= meta["ge"] or meta.get("gt") is not None and not value > meta["gt"] \
            or meta.get("le") is not None and not value <= meta["le"] \
            or meta.get("lt") is not None and not value < meta["lt"]:
        raise _Invalid(_bounds_text(meta))


def _convert(value: Any, kind, meta: dict, where: str, stored: dict | None = None) -> Any:
    """The checked value of one field (raises _Invalid or UserError for nested sections)."""
    origin = typing.get_origin(kind)
    if isinstance(kind, type) and issubclass(kind, Section):
        return kind.from_dict(value, where, stored)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(kind):
            try:
                return _convert(value, option, meta, where)
            except _Invalid:
                continue
        raise _Invalid(_describe(kind))
    if origin is Literal:
        if value in typing.get_args(kind) and type(value) is type(next(iter(typing.get_args(kind)))):
            return value
        raise _Invalid(_describe(kind))
    if kind in (bool, str):
        if isinstance(value, kind):
            return value
        raise _Invalid(_describe(kind))
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            _check_number(value, meta)
            return value
        raise _Invalid(_describe(kind))
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise _Invalid("a finite number")
            _check_number(float(value), meta)
            return float(value)
        raise _Invalid(_describe(kind))
    if origin is list:
        if not isinstance(value, list):
            raise _Invalid(_describe(kind))
        if meta.get("length") is not None and len(value) != meta["length"]:
            raise _Invalid(f"{_describe(kind)} of exactly {meta['length']} items")
        if len(value) < meta.get("min_items", 0):
            raise _Invalid(f"{_describe(kind)} with at least {meta['min_items']} item(s)")
        (item,) = typing.get_args(kind)
        # Bounds apply to the numbers inside; an inner list is checked against its own length.
        inner = {**meta, "length": None, "min_items": 0}
        if typing.get_origin(item) is list:
            inner = {"ge": meta.get("ge"), "gt": meta.get("gt"), "le": meta.get("le"), "lt": meta.get("lt"),
                     "min_items": 1, "length": None}
        return [_convert(v, item, inner, where) for v in value]
    raise TypeError(f"unsupported schema type {kind!r}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class Section:
    """Base of every schema section: a frozen dataclass checked by ``from_dict``."""

    @classmethod
    def from_dict(cls, data: Any, where: str = "", stored: dict | None = None):
        """The checked section. ``stored`` is the whole config read back from a checkpoint
        (``pipeline.core.config.config_from_checkpoint``): there, keys the schema no longer knows
        are dropped and a missing key takes its ``added`` value (or its ``was`` key's)."""
        label = where or "the config"
        if not isinstance(data, dict):
            raise UserError(f"config key {label}: got {_short(data)}; expected a section (a mapping of keys)")
        hints = typing.get_type_hints(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in data if k not in names]
        if unknown and stored is None:
            raise UserError(f"config key {_join(where, str(unknown[0]))}: unknown key (known in {label}: "
                            f"{', '.join(names)})")
        values = {}
        for f in dataclasses.fields(cls):
            path = _join(where, f.name)
            value = data[f.name] if f.name in data else _missing(f, hints[f.name], path, stored)
            try:
                values[f.name] = _convert(value, hints[f.name], dict(f.metadata), path, stored)
            except _Invalid as exc:
                raise UserError(f"config key {path}: got {_short(value)}; expected "
                                f"{_expected(hints[f.name], dict(f.metadata), exc.expected)}") from None
        section = cls(**values)
        section.check(where)
        return section

    def check(self, where: str) -> None:
        """Rules across keys of one section (override in subclasses); raise UserError."""

    def to_dict(self) -> dict:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}


def _missing(field: dataclasses.Field, kind, path: str, stored: dict | None) -> Any:
    """The value of a key a config lacks: in a stored config, an added key's ``was`` value or its
    ``added`` value, and an empty section (its keys are looked up in turn); else an error."""
    if stored is not None:
        was = field.metadata.get("was")
        if was is not None and _lookup(stored, was) is not _NEVER:
            return _lookup(stored, was)
        if field.metadata.get("added", _NEVER) is not _NEVER:
            return field.metadata["added"]
        if isinstance(kind, type) and issubclass(kind, Section):
            return {}
        raise UserError(f"config key {path} is missing (it has no value for configs written before it existed)")
    raise UserError(f"config key {path} is missing (every preset states every key)")


def _lookup(data: dict, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(data, dict) or part not in data:
            return _NEVER
        data = data[part]
    return data


def _plain(value: Any) -> Any:
    if isinstance(value, Section):
        return value.to_dict()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _expected(kind, meta: dict, reason: str) -> str:
    base = _describe(kind)
    bounds = _bounds_text(meta)
    if reason == base and bounds:
        return f"{base} {bounds}"
    if reason != base and reason.startswith(("<", ">")):
        return f"{base} {reason}"
    return reason


def _bad(path: str, value: Any, expected: str) -> UserError:
    return UserError(f"config key {path}: got {_short(value)}; expected {expected}")


