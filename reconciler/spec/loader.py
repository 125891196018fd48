"""Loading a spec set: files and directories in, typed resources and diagnostics out.

The loader reads every `*.yaml` / `*.yml` file it is given (directories recursively, in a
stable order), validates each document against its kind's model, runs the cross-document
checks, and returns a `SpecSet`. It reports every problem it finds (not only the first), each
pointing at `file:line:col` and the dotted field, and it never raises for bad input.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from . import models
from .crossref import check_references
from .diagnostics import Diagnostic, Location
from .models import (
    API_VERSION,
    KINDS,
    CapacityProvider,
    FieldProblem,
    Resource,
    RunnerPool,
    SpecModel,
)
from .yamlsource import (
    FieldPath,
    SourceDocument,
    SourceFile,
    parse_yaml_bytes,
    read_yaml_file,
)

SPEC_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class LoadedResource:
    """A validated document and where it came from, for messages that point at the source."""

    resource: Resource
    source: SourceDocument

    @property
    def name(self) -> str:
        """metadata.name"""
        return self.resource.metadata.name

    def locate(self, *path: str | int) -> Location:
        """Location of a field path (YAML keys) within this document."""
        return self.source.locate(path)


@dataclass
class SpecSet:
    """Everything loaded from the spec paths: resources, files read, problems found."""

    resources: list[LoadedResource] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    # Files that had errors: the pools they describe are unknown, so nothing may be deleted
    # on their account.
    files_with_errors: set[str] = field(default_factory=set)

    @property
    def errors(self) -> list[Diagnostic]:
        """Diagnostics of severity error."""
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def ok(self) -> bool:
        """True when no error was found."""
        return not self.errors

    @property
    def pools(self) -> list[RunnerPool]:
        """RunnerPool resources, in load order."""
        return [r.resource for r in self.resources if isinstance(r.resource, RunnerPool)]

    @property
    def capacity_providers(self) -> list[CapacityProvider]:
        """CapacityProvider resources, in load order."""
        return [r.resource for r in self.resources if isinstance(r.resource, CapacityProvider)]

    def loaded(self, kind: str, name: str) -> LoadedResource | None:
        """The loaded resource of that kind and name, if any."""
        return next((r for r in self.resources if r.resource.kind == kind and r.name == name), None)


def load_specs(paths: Sequence[str | Path], base: Path | None = None) -> SpecSet:
    """Load and validate every spec file under `paths`; problems become diagnostics."""
    spec_set = SpecSet()
    sources = [
        read_yaml_file(path, display) for path, display in _spec_files(paths, base, spec_set)
    ]
    return _load_sources(spec_set, sources)


def load_spec_bytes(files: Mapping[str, bytes]) -> SpecSet:
    """Load and validate spec files given as {display path: content} (for example from git)."""
    sources = [parse_yaml_bytes(content, name) for name, content in sorted(files.items())]
    return _load_sources(SpecSet(), sources)


def _load_sources(spec_set: SpecSet, sources: Sequence[SourceFile]) -> SpecSet:
    for source_file in sources:
        spec_set.files.append(source_file.path)
        spec_set.diagnostics.extend(source_file.diagnostics)
        for document in source_file.documents:
            resource, problems = validate_document(document)
            spec_set.diagnostics.extend(problems)
            if isinstance(resource, RunnerPool | CapacityProvider):
                spec_set.resources.append(LoadedResource(resource, document))
    spec_set.diagnostics.extend(check_references(spec_set.resources))
    spec_set.diagnostics.sort(key=lambda d: d.location)
    spec_set.files_with_errors = {d.location.file for d in spec_set.errors}
    return spec_set


def _spec_files(
    paths: Sequence[str | Path], base: Path | None, spec_set: SpecSet
) -> Iterable[tuple[Path, str]]:
    seen: set[Path] = set()
    for given in paths:
        path = Path(given)
        if path.is_dir():
            candidates = sorted(
                p
                for p in path.rglob("*")
                if p.suffix in SPEC_SUFFIXES
                and p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        elif path.is_file():
            candidates = [path]
        else:
            spec_set.diagnostics.append(
                Diagnostic(Location(str(given)), "no such file or directory")
            )
            continue
        for candidate in candidates:
            resolved = candidate.resolve()
            if resolved not in seen:
                seen.add(resolved)
                yield candidate, _display_path(candidate, base)


def _display_path(path: Path, base: Path | None) -> str:
    """Paths below the working directory (or `base`) are shown relative, others absolute."""
    absolute = path.absolute()
    try:
        return str(absolute.relative_to((base or Path.cwd()).absolute()))
    except ValueError:
        return str(absolute)


def validate_document(
    document: SourceDocument, kinds: Mapping[str, type[SpecModel]] = KINDS
) -> tuple[SpecModel | None, list[Diagnostic]]:
    """Validate one document against the model of its kind; diagnostics point at its lines."""
    data = document.data
    here = document.locate(())
    if not isinstance(data, dict):
        return None, [Diagnostic(here, "a spec document must be a mapping with apiVersion, kind")]
    api_version, kind = data.get("apiVersion"), data.get("kind")
    if api_version != API_VERSION:
        message = (
            "apiVersion is missing"
            if api_version is None
            else f"unsupported apiVersion {api_version!r}"
        )
        return None, [
            Diagnostic(
                document.locate(("apiVersion",)),
                f"{message}; expected {API_VERSION}",
                "apiVersion",
            )
        ]
    model = kinds.get(kind) if isinstance(kind, str) else None
    if model is None:
        message = "kind is missing" if kind is None else f"unknown kind {kind!r}"
        return None, [
            Diagnostic(
                document.locate(("kind",)),
                f"{message}; expected one of {', '.join(kinds)}",
                "kind",
            )
        ]
    try:
        resource = model.model_validate(data)
    except ValidationError as error:
        return None, _diagnostics_from(error, document)
    return resource, []


def _diagnostics_from(error: ValidationError, document: SourceDocument) -> list[Diagnostic]:
    diagnostics: list[Diagnostic] = []
    seen: set[tuple[FieldPath, str]] = set()
    for detail in error.errors():
        path, message = _path_and_message(detail, document.data)
        key = (path, message)
        if key in seen:
            continue
        seen.add(key)
        diagnostics.append(Diagnostic(document.locate(path), message, _dotted(path)))
    return diagnostics


def _path_and_message(detail: ErrorDetails, data: Any) -> tuple[FieldPath, str]:
    """Translate one pydantic error to (YAML field path, plain-English message)."""
    path = _document_path(detail["loc"], data)
    kind, value = detail["type"], detail.get("input")
    context = detail.get("ctx") or {}
    cause = context.get("error")
    if isinstance(cause, FieldProblem):
        return (*path, *cause.path), str(cause)
    if kind == "missing":
        return path, "required field is missing"
    if kind == "extra_forbidden":
        unknown = str(path[-1]) if path else "?"
        return path, f"unknown field {unknown!r}{_did_you_mean(unknown)}"
    if kind == "value_error":
        return path, str(cause) if cause else detail["msg"]
    if kind == "string_pattern_mismatch":
        return path, f"{value!r} is not {_PATTERN_MEANING.get(context.get('pattern', ''), 'valid')}"
    if kind.endswith("_type") or kind in ("dict_type", "list_type", "model_type"):
        got = type(value).__name__ if value is not None else "null"
        hint = " (quote it to make it a string)" if kind == "string_type" else ""
        return path, f"{detail['msg'].replace('Input should be', 'expected')}, got {got}{hint}"
    return path, detail["msg"].replace("Input should be", "must be")


def _document_path(loc: tuple[int | str, ...], data: Any) -> FieldPath:
    """Keep the parts of a pydantic location that exist in the document (drop union tags)."""
    path: list[str | int] = []
    current = data
    for part in loc:
        in_mapping = isinstance(current, dict) and isinstance(part, str) and part in current
        in_list = isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current)
        if in_mapping or in_list:
            current = current[part]
            path.append(part)
        elif isinstance(current, dict) and isinstance(part, str) and not part.startswith("["):
            # a missing or unknown field directly below this mapping
            if part[:1].isalpha() and not part.startswith(("function-", "constrained-")):
                path.append(part)
            current = None
    return tuple(path)


def _dotted(path: FieldPath) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


_PATTERN_MEANING = {
    models.DNS_LABEL: "a DNS label (lowercase letters, digits and '-', at most 63 characters, "
    "starting and ending with a letter or digit)",
    models.IAM_ROLE_ARN: "an IAM role ARN (arn:aws:iam::123456789012:role/NAME)",
    models.SECRET_ARN: "a Secrets Manager or SSM parameter ARN",
    models.ENV_NAME: "an environment variable name (letters, digits, '_')",
    models.RUNNER_VERSION: "an actions/runner version like 2.328.0",
    models.SUBNET_REF: "a subnet ID (subnet-...) or a subnet Name tag",
    models.SECURITY_GROUP_REF: "a security group ID (sg-...) or a Name tag",
}


def _known_field_names() -> list[str]:
    names: set[str] = set()
    for model in _all_models():
        names.update(info.alias or name for name, info in model.model_fields.items())
    return sorted(names)


def _all_models() -> list[type[models.SpecModel]]:
    return [
        value
        for value in vars(models).values()
        if isinstance(value, type)
        and issubclass(value, models.SpecModel)
        and value is not models.SpecModel
    ]


_FIELD_NAMES = _known_field_names()


def _did_you_mean(name: str) -> str:
    close = difflib.get_close_matches(name, _FIELD_NAMES, n=1, cutoff=0.75)
    return f"; did you mean {close[0]!r}?" if close else ""
