"""The two metadata files: parsed like the official tool (``yaml.safe_load``) but bounded, and
checked against the official entries and types (``pipeline.contract.names``)."""
from __future__ import annotations

import reprlib

import yaml

from pipeline.contract.reader import EntryError, SubmissionTree
from submission.report import ValidationReport

MAX_METADATA_BYTES = 1 << 20
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxstring, _REPR.maxother = 2, 4, 4, 40, 40


class AliasRefused(yaml.MarkedYAMLError):
    """Metadata with a YAML alias (the official tool would expand it)."""


class _BoundedLoader(yaml.SafeLoader):
    """Safe YAML with aliases refused: a few lines of aliases expand into a huge structure."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise AliasRefused(problem="YAML aliases are not allowed", problem_mark=event.start_mark)
        return super().compose_node(parent, index)


def short(value) -> str:
    """A bounded repr of any parsed value."""
    return _REPR.repr(value)


def load_yaml_mapping(tree: SubmissionTree, rel: str, report: ValidationReport, section: str = "submission") -> dict | None:
    """Parse a metadata file; problems go to the report and None is returned."""
    if not tree.is_file(rel):
        report.add(section, f"{rel}: file not found")
        return None
    try:
        raw = tree.read_bytes(rel, MAX_METADATA_BYTES)
    except EntryError as exc:
        report.add(section, f"{rel}: {exc}", stricter=True)
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        report.add(section, f"{rel}: not UTF-8 text (byte {exc.start})")
        return None
    try:
        data = yaml.load(text, Loader=_BoundedLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        report.add(section, f"{rel}: malformed YAML{where} ({getattr(exc, 'problem', None) or 'parse error'})",
                   stricter=isinstance(exc, AliasRefused))
        return None
    except (RecursionError, ValueError, TypeError) as exc:
        report.add(section, f"{rel}: malformed YAML ({exc.__class__.__name__}: nested too deeply or invalid)")
        return None
    if not data:
        report.add(section, f"{rel}: file is empty")
        return None
    if not isinstance(data, dict):
        report.add(section, f"{rel}: must be a YAML mapping of 'key: value' entries, got a {type(data).__name__}")
        return None
    return data


def check_entries(data: dict, rel: str, mandatory: dict, optional: dict, report: ValidationReport,
                  section: str = "submission") -> None:
    """Exactly the official rules: mandatory keys present, no other key, no null, isinstance types."""
    keys = [k for k in data if isinstance(k, str)]
    odd = [short(k) for k in data if not isinstance(k, str)]
    if odd:
        report.add(section, f"{rel}: entry names must be text, got {', '.join(odd[:4])}")
    missing = [k for k in mandatory if k not in keys]
    if missing:
        report.add(section, f"{rel}: missing entries: {', '.join(missing)}")
    allowed = {**mandatory, **optional}
    forbidden = [short(k) for k in keys if k not in allowed]
    if forbidden:
        report.add(section, f"{rel}: forbidden entries: {', '.join(forbidden)} "
                            f"(allowed: {', '.join(allowed)})")
    for key in keys:
        if key not in allowed:
            continue
        value = data[key]
        if value is None:
            report.add(section, f"{rel}: entry {key!r} is empty (null)")
        elif allowed[key] is not None and not isinstance(value, allowed[key]):
            report.add(section, f"{rel}: entry {key!r} must be of type {allowed[key].__name__}, "
                                f"got {type(value).__name__} {short(value)}")
        elif isinstance(value, str) and not value.strip():
            report.add(section, f"{rel}: entry {key!r} is a blank string", stricter=True)
