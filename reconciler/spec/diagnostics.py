"""Diagnostics: an error or warning tied to a place in a spec file, and its renderings.

Every problem the loader or the cross-document checks find becomes a `Diagnostic`; the CLI
renders them as text (`file:line:col: field: message`), JSON, or GitHub workflow annotations.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True, order=True)
class Location:
    """A place in a file; line and column are 1-based (0 when unknown)."""

    file: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if not self.line:
            return self.file
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Diagnostic:
    """One problem found in the specs, where it is, and what to do about it."""

    location: Location
    message: str
    field: str = ""
    severity: Severity = "error"

    def __str__(self) -> str:
        field = f"{self.field}: " if self.field else ""
        prefix = "" if self.severity == "error" else "warning: "
        return f"{self.location}: {prefix}{field}{printable(self.message)}"


def printable(text: str, limit: int = 500) -> str:
    """Make user-supplied text safe for one terminal line: escape control characters, cap length."""
    escaped = "".join(
        ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode("ascii")
        for ch in text
    )
    return escaped if len(escaped) <= limit else escaped[: limit - 3] + "..."


def render_text(diagnostics: Iterable[Diagnostic]) -> str:
    """One `file:line:col: field: message` line per diagnostic."""
    return "".join(f"{d}\n" for d in diagnostics)


def render_json(diagnostics: Iterable[Diagnostic]) -> str:
    """A JSON document `{"valid": bool, "diagnostics": [...]}`."""
    items = [
        {**asdict(d.location), "field": d.field, "severity": d.severity, "message": d.message}
        for d in diagnostics
    ]
    valid = not any(item["severity"] == "error" for item in items)
    return json.dumps({"valid": valid, "diagnostics": items}, indent=2) + "\n"


def render_github(diagnostics: Iterable[Diagnostic]) -> str:
    """GitHub Actions workflow commands: `::error file=F,line=L,col=C::message`."""
    lines = []
    for d in diagnostics:
        props = [f"file={_escape_property(d.location.file)}"]
        if d.location.line:
            props += [f"line={d.location.line}", f"col={d.location.column}"]
        if d.field:
            props.append(f"title={_escape_property(d.field)}")
        lines.append(f"::{d.severity} {','.join(props)}::{_escape_data(d.message)}\n")
    return "".join(lines)


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")
