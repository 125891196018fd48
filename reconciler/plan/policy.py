"""Plan policies: data that says which changes a plan may contain (the automerge gate).

A policy is a YAML document of kind `PlanPolicy`: a list of `allow` rules, each naming
resource types, actions and (for updates) the patch paths that may change, plus a limit on
runner version jumps. Every action of a plan must be allowed by some rule; each change that
is not becomes a `Violation` naming the field and the spec file. Built-in policies live in
`reconciler/policies/` and are found by name.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field

from ..spec.diagnostics import Diagnostic, Location
from ..spec.loader import validate_document
from ..spec.models import Metadata, SpecModel
from ..spec.yamlsource import read_yaml_file
from .actions import Action, Plan

BUILT_IN = Path(__file__).resolve().parent.parent / "policies"
VERSION_PARTS = {"patch": 3, "minor": 2, "major": 1}


class PolicyRule(SpecModel):
    """Allows `actions` on `resources`; for updates, only changes under `paths` (globs)."""

    resources: list[str] = Field(min_length=1)
    actions: list[Literal["create", "update", "replace", "delete", "run", "stop"]] = Field(
        min_length=1
    )
    paths: list[str] = Field(default_factory=lambda: ["*"], min_length=1)

    def allows(self, action: Action, path: str | None) -> bool:
        """True when this rule allows `action` (and the patch `path`, for updates)."""
        if action.resource_type not in self.resources or action.action not in self.actions:
            return False
        return path is None or any(fnmatch.fnmatchcase(path, p) for p in self.paths)


class PlanPolicySpec(SpecModel):
    """The rules of a policy."""

    description: str = ""
    allow: list[PolicyRule] = Field(default_factory=list)
    max_runner_version_bump: Literal["patch", "minor", "major"] = "major"


class PlanPolicy(SpecModel):
    """A named set of rules a plan must satisfy."""

    api_version: Literal["ecs-reconciler/v1alpha1"]
    kind: Literal["PlanPolicy"]
    metadata: Metadata
    spec: PlanPolicySpec


@dataclass(frozen=True)
class Violation:
    """One change the policy does not allow."""

    address: str
    location: str
    message: str

    def __str__(self) -> str:
        return (
            f"{self.location}: {self.address}: {self.message}"
            if self.location
            else (f"{self.address}: {self.message}")
        )


class PolicyError(Exception):
    """The policy could not be loaded; carries the diagnostics."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        super().__init__("; ".join(str(d) for d in diagnostics))
        self.diagnostics = diagnostics


def load_policy(reference: str) -> PlanPolicy:
    """A built-in policy by name (e.g. `renovate-safe`), or a policy file by path."""
    path = Path(reference)
    if not path.exists() and (BUILT_IN / f"{reference}.yaml").exists():
        path = BUILT_IN / f"{reference}.yaml"
    if not path.exists():
        names = ", ".join(sorted(p.stem for p in BUILT_IN.glob("*.yaml")))
        raise PolicyError(
            [Diagnostic(Location(reference), f"no such policy file or built-in ({names})")]
        )
    source = read_yaml_file(path)
    problems = list(source.diagnostics)
    policies = []
    for document in source.documents:
        model, found = validate_document(document, {"PlanPolicy": PlanPolicy})
        problems += found
        if isinstance(model, PlanPolicy):
            policies.append(model)
    if problems or len(policies) != 1:
        raise PolicyError(problems or [Diagnostic(Location(str(path)), "expected one PlanPolicy")])
    return policies[0]


def evaluate(plan: Plan, policy: PlanPolicy) -> list[Violation]:
    """Every change of `plan` that `policy` does not allow."""
    violations: list[Violation] = []
    rules = policy.spec.allow
    for action in plan.actions:
        where = action.locations.get("", "")
        paths = [op["path"] for op in action.patch] if action.action == "update" else [None]
        for path in paths:
            if not any(rule.allows(action, path) for rule in rules):
                what = (
                    f"{path} changed ({_describe(action, path)})"
                    if path
                    else f"{action.action} ({action.reason})"
                )
                violations.append(
                    Violation(
                        action.address,
                        action.locations.get(path or "", where),
                        f"{what}: not allowed by policy {policy.metadata.name}",
                    )
                )
        if action.resource_type == "runner_pool" and action.action == "update":
            violations += _version_jump(action, policy)
    return violations


def _describe(action: Action, path: str) -> str:
    operation = next(op for op in action.patch if op["path"] == path)
    old = _pointer(action.before, path)
    new = operation.get("value")
    if operation["op"] == "remove":
        return f"was {old!r}, removed"
    if operation["op"] == "add":
        return f"set to {new!r}"
    return f"{old!r} -> {new!r}"


def _pointer(document: object, path: str) -> object:
    for part in path.split("/")[1:]:
        if isinstance(document, dict):
            document = document.get(part)
        elif isinstance(document, list) and part.isdigit() and int(part) < len(document):
            document = document[int(part)]
        else:
            return None
    return document


def _version_jump(action: Action, policy: PlanPolicy) -> list[Violation]:
    old = _pointer(action.before, "/spec/runner/version")
    new = _pointer(action.after, "/spec/runner/version")
    if not isinstance(old, str) or not isinstance(new, str) or old == new:
        return []
    limit = policy.spec.max_runner_version_bump
    same = VERSION_PARTS[limit] - 1  # leading parts that must stay equal
    if old.split(".")[:same] == new.split(".")[:same]:
        return []
    return [
        Violation(
            action.address,
            action.locations.get("/spec/runner/version", action.locations.get("", "")),
            f"runner version {old} -> {new} is more than a {limit} bump; not allowed by "
            f"policy {policy.metadata.name}",
        )
    ]
