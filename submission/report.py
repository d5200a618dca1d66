"""What the validator found: problems per section, notes, and what was checked."""
from __future__ import annotations

from dataclasses import dataclass, field

STRICT = "[stricter than official]"
SHOWN_PER_SECTION = 20


@dataclass(frozen=True)
class Problem:
    section: str                       # "submission" or a language
    message: str
    stricter: bool = False

    def __str__(self) -> str:
        return f"{self.message} {STRICT}" if self.stricter else self.message


@dataclass
class ValidationReport:
    source: str
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checked: dict[str, dict[str, str]] = field(default_factory=dict)   # language -> folder -> what was checked
    unchecked: list[str] = field(default_factory=list)                # what could not be checked, and why

    @property
    def valid(self) -> bool:
        return not self.problems

    def add(self, section: str, message: str, stricter: bool = False) -> None:
        self.problems.append(Problem(section, message, stricter))

    def sections(self) -> dict[str, list[Problem]]:
        out: dict[str, list[Problem]] = {}
        for problem in self.problems:
            out.setdefault(problem.section, []).append(problem)
        return out

    def render(self, shown: int = SHOWN_PER_SECTION) -> str:
        lines = [f"validated {self.source}"]
        for language, folders in self.checked.items():
            counts = ", ".join(f"{folder}/ {n}" for folder, n in folders.items())
            lines.append(f"  checked 2019/{language}: {counts}")
        lines += [f"  note: {note}" for note in self.notes]
        for section, problems in self.sections().items():
            lines.append(f"{section}: {len(problems)} problem{'s' * (len(problems) != 1)}")
            lines += [f"  - {p}" for p in problems[:shown]]
            if len(problems) > shown:
                lines.append(f"  ... and {len(problems) - shown} more")
        lines.append(self.verdict())
        return "\n".join(lines)

    def verdict(self) -> str:
        if not self.valid:
            per = ", ".join(f"{s} {len(p)}" for s, p in self.sections().items())
            return f"INVALID: {len(self.problems)} problem{'s' * (len(self.problems) != 1)} ({per})"
        if self.unchecked:
            return ("VALID AS FAR AS CHECKED: no problem found, but " + "; ".join(self.unchecked)
                    + " (give --dataset or --filelists)")
        return "VALID: the submission passes every official and strict check"
