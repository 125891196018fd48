"""The result tree of a verification: checks grouped under the resource they belong to.

Plain data and its two renderings (ecspresso-like text, JSON). No I/O here. A check is `ok`,
`failed` (something the resource needs does not exist or is wrong) or `skipped` (could not be
checked, for example an unreachable registry: a warning, never a failure).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["ok", "failed", "skipped"]
MARKS: dict[Status, str] = {"ok": "[OK]", "failed": "[NG]", "skipped": "[SKIP]"}


@dataclass(frozen=True)
class Outcome:
    """The answer of one check, shareable between the resources that need the same thing."""

    status: Status
    detail: str = ""


@dataclass(frozen=True)
class Check:
    """One thing a resource needs, for example `Image[runner]`, and its outcome."""

    kind: str
    subject: str
    outcome: Outcome

    @property
    def label(self) -> str:
        """`LogGroup[/ecs-reconciler/runners]`"""
        return f"{self.kind}[{self.subject}]"

    def to_json(self) -> dict[str, Any]:
        """The check in `verify --format json`."""
        return {
            "kind": self.kind,
            "subject": self.subject,
            "status": self.outcome.status,
            "detail": self.outcome.detail,
        }


@dataclass(frozen=True)
class ResourceChecks:
    """The checks of one spec document (`RunnerPool/linux-large`)."""

    kind: str
    name: str
    source: str = ""
    checks: tuple[Check, ...] = field(default_factory=tuple)

    @property
    def status(self) -> Status:
        """failed if any check failed, otherwise ok (skipped checks are warnings)."""
        return "failed" if any(c.outcome.status == "failed" for c in self.checks) else "ok"

    def to_json(self) -> dict[str, Any]:
        """The resource in `verify --format json`."""
        return {
            "kind": self.kind,
            "name": self.name,
            "source": self.source,
            "status": self.status,
            "checks": [c.to_json() for c in self.checks],
        }


@dataclass(frozen=True)
class Report:
    """Everything one `verify` found, plus the API calls it cost."""

    resources: tuple[ResourceChecks, ...] = ()
    spec_errors: tuple[str, ...] = ()
    calls: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the specs loaded and no check failed."""
        return not self.spec_errors and all(r.status == "ok" for r in self.resources)

    def with_status(self, status: Status) -> list[tuple[ResourceChecks, Check]]:
        """Every (resource, check) pair whose outcome has `status`."""
        return [(r, c) for r in self.resources for c in r.checks if c.outcome.status == status]

    def to_json(self) -> dict[str, Any]:
        """`verify --format json`."""
        return {
            "ok": self.ok,
            "summary": self._counts(),
            "spec_errors": list(self.spec_errors),
            "resources": [r.to_json() for r in self.resources],
            "calls": dict(sorted(self.calls.items())),
        }

    def _counts(self) -> dict[str, int]:
        counts: dict[str, int] = {status: len(self.with_status(status)) for status in MARKS}
        return {"checks": sum(counts.values()), **counts}

    def render_text(self) -> str:
        """The tree, ecspresso style, then one verdict line naming every failure."""
        out: list[str] = []
        if self.spec_errors:
            out.append("Spec errors:")
            out += [f"  {error}" for error in self.spec_errors]
        for resource in self.resources:
            source = f" ({resource.source})" if resource.source else ""
            out.append(f"{resource.kind}/{resource.name}{source}")
            for check in resource.checks:
                detail = f" {check.outcome.detail}" if check.outcome.detail else ""
                out.append(f"  {check.label} --> {MARKS[check.outcome.status]}{detail}")
            out.append(f"--> {MARKS[resource.status]}")
        counts = self._counts()
        tally = (
            f"{counts['checks']} checks: {counts['ok']} ok, {counts['failed']} failed, "
            f"{counts['skipped']} skipped"
        )
        if self.ok:
            out.append(f"Verify OK ({tally}).")
        else:
            out.append(f"Verify FAILED ({tally}):")
            out += [f"  x {error}" for error in self.spec_errors]
            out += [
                f"  x {r.kind}/{r.name}: {c.label}: {c.outcome.detail}"
                for r, c in self.with_status("failed")
            ]
        return "\n".join(out) + "\n"
