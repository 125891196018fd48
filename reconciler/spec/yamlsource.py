"""Reading YAML spec files safely, keeping the line and column of every value.

This module turns the bytes of one file into plain Python documents plus a map from each
field path to its position. It enforces the limits that keep hostile input harmless (size,
depth, alias expansion, encoding, duplicate keys, custom tags) and reports every problem as a
`Diagnostic`, never as a traceback. It knows nothing about the spec kinds.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from .diagnostics import Diagnostic, Location, printable

MAX_FILE_BYTES = 1024 * 1024
MAX_DEPTH = 32
MAX_INDENT_COLUMNS = 4 * MAX_DEPTH
MAX_NODES_PER_DOCUMENT = 50_000
MAX_DOCUMENTS_PER_FILE = 500

FieldPath = tuple[str | int, ...]


class YamlLimitError(Exception):
    """A document broke one of the safety limits (depth, size, alias expansion, tags)."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(message)
        self.line = line
        self.column = column


@dataclass
class SourceDocument:
    """One YAML document: its plain data and where each field path sits in the file."""

    file: str
    index: int
    data: Any
    positions: dict[FieldPath, tuple[int, int]] = field(default_factory=dict)

    def locate(self, path: FieldPath) -> Location:
        """The location of `path`, or of its nearest ancestor that exists in the file."""
        for cut in range(len(path), -1, -1):
            position = self.positions.get(tuple(path[:cut]))
            if position:
                return Location(self.file, *position)
        return Location(self.file, 1, 1)


@dataclass
class SourceFile:
    """The result of reading one file: its documents, or why it could not be read."""

    path: str
    documents: list[SourceDocument] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)


def read_yaml_file(path: Path, display_path: str | None = None) -> SourceFile:
    """Read and parse one YAML file into documents; never raises for bad content."""
    name = display_path or str(path)
    result = SourceFile(name)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            result.diagnostics.append(_too_large(name, size))
            return result
        raw = path.read_bytes()
    except OSError as error:
        result.diagnostics.append(Diagnostic(Location(name), f"cannot read file: {error.strerror}"))
        return result
    return parse_yaml_bytes(raw, name)


def parse_yaml_bytes(raw: bytes, name: str) -> SourceFile:
    """Parse the bytes of a spec file (UTF-8, multi-document) into a `SourceFile`."""
    result = SourceFile(name)
    if len(raw) > MAX_FILE_BYTES:
        result.diagnostics.append(_too_large(name, len(raw)))
        return result
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        column = error.start - (raw.rfind(b"\n", 0, error.start) + 1) + 1
        result.diagnostics.append(
            Diagnostic(
                Location(name, line, column),
                f"file is not valid UTF-8 (byte 0x{raw[error.start]:02x}); save it as UTF-8",
            )
        )
        return result
    too_deep = _nesting_too_deep(text)
    if too_deep:
        line, column = too_deep
        result.diagnostics.append(
            Diagnostic(
                Location(name, line, column),
                f"document is nested too deeply (limit {MAX_DEPTH} levels)",
            )
        )
        return result
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    try:
        for index, node in enumerate(yaml.load_all(StringIO(text))):
            if index >= MAX_DOCUMENTS_PER_FILE:
                raise YamlLimitError(
                    f"more than {MAX_DOCUMENTS_PER_FILE} documents in one file", 1, 1
                )
            if node is None:
                continue
            document = SourceDocument(name, index, None)
            start = _one_based((node.lc.line, node.lc.col)) if hasattr(node, "lc") else (1, 1)
            document.data = _to_plain(node, (), document.positions, _Budget(), 0, start)
            result.documents.append(document)
    except MarkedYAMLError as error:
        result.documents.clear()
        result.diagnostics.append(_marked_error(error, name))
    except YamlLimitError as error:
        result.documents.clear()
        result.diagnostics.append(Diagnostic(Location(name, error.line, error.column), str(error)))
    except RecursionError:
        result.documents.clear()
        result.diagnostics.append(
            Diagnostic(Location(name), f"document is nested too deeply (limit {MAX_DEPTH} levels)")
        )
    except YAMLError as error:
        result.documents.clear()
        result.diagnostics.append(_reader_error(error, name, text))
    return result


def _nesting_too_deep(text: str) -> tuple[int, int] | None:
    """Find absurd nesting before the (recursive) YAML composer sees it; None when fine.

    Counts flow brackets outside quotes and comments, and block indentation, line by line.
    It may over-count brackets inside multi-line quoted strings, which specs do not have.
    """
    flow_depth = 0
    for number, line in enumerate(text.splitlines(), start=1):
        indent = len(line) - len(line.lstrip(" "))
        if indent > MAX_INDENT_COLUMNS:
            return number, indent + 1
        quote = ""
        for column, char in enumerate(line, start=1):
            if quote:
                quote = "" if char == quote else quote
            elif char in "'\"":
                quote = char
            elif char == "#" and (column == 1 or line[column - 2] in " \t"):
                break
            elif char in "[{":
                flow_depth += 1
                if flow_depth > MAX_DEPTH:
                    return number, column
            elif char in "]}":
                flow_depth = max(0, flow_depth - 1)
    return None


def _too_large(name: str, size: int) -> Diagnostic:
    return Diagnostic(
        Location(name),
        f"file is {size} bytes; spec files are limited to {MAX_FILE_BYTES} bytes "
        "(split it into several files)",
    )


class _Budget:
    """Counts nodes while expanding aliases, so a billion-laughs document stops early."""

    def __init__(self) -> None:
        self.nodes = 0

    def spend(self, line: int, column: int) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES_PER_DOCUMENT:
            raise YamlLimitError(
                f"document expands to more than {MAX_NODES_PER_DOCUMENT} values "
                "(too many aliases?)",
                line,
                column,
            )


def _to_plain(
    node: Any,
    path: FieldPath,
    positions: dict[FieldPath, tuple[int, int]],
    budget: _Budget,
    depth: int,
    position: tuple[int, int],
) -> Any:
    """Convert ruamel's round-trip nodes to dict/list/scalars, recording positions."""
    budget.spend(*position)
    positions.setdefault(path, position)
    if depth > MAX_DEPTH:
        raise YamlLimitError(f"document is nested too deeply (limit {MAX_DEPTH} levels)", *position)
    if isinstance(node, TaggedScalar) or _has_custom_tag(node):
        raise YamlLimitError("YAML tags such as !tag are not supported in specs", *position)
    if isinstance(node, CommentedMap):
        plain: dict[str, Any] = {}
        for key in node:
            key_position = _one_based(node.lc.key(key)) if key in node.lc.data else position
            if not isinstance(key, str):
                raise YamlLimitError(
                    f"mapping key {key!r} is not a string; quote it", *key_position
                )
            value_position = _one_based(node.lc.value(key)) if key in node.lc.data else position
            positions.setdefault((*path, key), key_position)
            plain[key] = _to_plain(
                node[key], (*path, key), positions, budget, depth + 1, value_position
            )
        return plain
    if isinstance(node, CommentedSeq):
        items = []
        for index, item in enumerate(node):
            item_position = _one_based(node.lc.item(index)) if index in node.lc.data else position
            items.append(
                _to_plain(item, (*path, index), positions, budget, depth + 1, item_position)
            )
        return items
    return _plain_scalar(node)


_CORE_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("map", "seq", "str", "int", "float", "bool", "null")
)


def _has_custom_tag(node: Any) -> bool:
    value = getattr(getattr(node, "tag", None), "value", None)
    return bool(value) and value not in _CORE_TAGS


def _plain_scalar(value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, datetime.date):
        return value.isoformat()
    return str(value)


def _one_based(position: list[int] | tuple[int, int]) -> tuple[int, int]:
    return position[0] + 1, position[1] + 1


def _marked_error(error: MarkedYAMLError, name: str) -> Diagnostic:
    mark = error.problem_mark or error.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    problem = (error.problem or "").strip().splitlines()
    message = problem[0] if problem else "invalid YAML"
    if "duplicate key" in message and error.context_mark is not None:
        message = f"{message} (first defined on line {error.context_mark.line + 1})"
    elif error.context and error.context_mark is not None:
        message = f"{message} ({error.context} on line {error.context_mark.line + 1})"
    return Diagnostic(Location(name, line, column), f"invalid YAML: {message}")


def _reader_error(error: YAMLError, name: str, text: str) -> Diagnostic:
    offset = getattr(error, "position", None)
    if isinstance(offset, int) and 0 <= offset <= len(text):
        line = text.count("\n", 0, offset) + 1
        column = offset - (text.rfind("\n", 0, offset) + 1) + 1
        location = Location(name, line, column)
    else:
        location = Location(name)
    character = getattr(error, "character", None)
    if isinstance(character, int):
        character = chr(character)
    detail = f" '{printable(character)}'" if isinstance(character, str) else ""
    return Diagnostic(location, f"invalid YAML: unacceptable character{detail} in the file")
