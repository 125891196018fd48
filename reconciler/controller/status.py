"""Status of the controller and of each pool: conditions Ready / Progressing / Degraded,
and RunnerVersionStale when the cycle checked runner versions (`plan.versions`).

Built from what one cycle saw (its plan) and what its apply did, in the manner of Flux and
Kubernetes conditions: each has a status, a reason, a message and the spec revision it
describes. Pure data plus a JSON rendering; the HTTP server and `ecs-reconciler status`
only read it.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

from ..aws.executor import ApplyResult
from ..clock import UtcClock, utc_now
from ..plan.actions import Plan
from ..plan.versions import VersionCheck
from ..spec.loader import SpecSet


@dataclass(frozen=True)
class Condition:
    """One condition of a pool (Kubernetes style)."""

    type: str
    status: bool
    reason: str
    message: str
    revision: str
    last_transition: str


@dataclass
class PoolStatus:
    """Observed runner counts and conditions of one pool."""

    name: str
    desired: int = 0
    running: int = 0
    busy: int = 0
    idle: int = 0
    outdated: int = 0
    conditions: dict[str, Condition] = field(default_factory=dict)


def spec_revision(spec_set: SpecSet) -> str:
    """A short content hash of the loaded spec files (the revision a directory source has)."""
    digest = hashlib.sha256()
    for loaded in sorted(spec_set.resources, key=lambda r: (r.resource.kind, r.name)):
        digest.update(loaded.resource.model_dump_json(by_alias=True).encode())
    for diagnostic in spec_set.errors:
        digest.update(str(diagnostic).encode())
    return digest.hexdigest()[:12]


class StatusBoard:
    """Thread-safe status, updated by the loop and read by the HTTP server."""

    def __init__(self, clock: UtcClock = utc_now) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self.pools: dict[str, PoolStatus] = {}
        self.controller: dict[str, Any] = {
            "leader": False,
            "lastAppliedRevision": None,
            "lastAttemptedRevision": None,
            "lastCycleAt": None,
            "lastCycleReason": None,
            "specErrors": [],
            "cycles": 0,
        }

    def record_cycle(
        self,
        plan: Plan,
        revision: str,
        reason: str,
        result: ApplyResult | None,
        leader: bool,
        backing_off: dict[str, float] | None = None,
        attempted: str | None = None,
        source_errors: list[str] | None = None,
        version_checks: tuple[VersionCheck, ...] = (),
    ) -> None:
        """Fold one cycle (its plan and, when applied, its result) into the status.

        `revision` is what the cycle worked from; `attempted` (default: the same) is the
        newest revision the source tried, which differs when it was refused for errors.
        """
        checks = {check.pool: check for check in version_checks}
        now = self.clock().isoformat(timespec="seconds")
        failed = {a.pool: message for a, message in (result.failed if result else []) if a.pool}
        errors = [*plan.spec_errors, *(source_errors or [])]
        with self._lock:
            self.controller.update(
                leader=leader,
                lastAttemptedRevision=attempted or revision,
                lastCycleAt=now,
                lastCycleReason=reason,
                specErrors=errors,
                cycles=int(self.controller["cycles"]) + 1,
            )
            if leader and not plan.spec_errors and (result is None or result.ok):
                self.controller["lastAppliedRevision"] = revision
            for summary in plan.pools:
                pool = self.pools.setdefault(summary.name, PoolStatus(summary.name))
                pool.desired, pool.running = summary.desired, summary.running
                pool.busy, pool.idle, pool.outdated = summary.busy, summary.idle, summary.outdated
                actions = plan.for_pool(summary.name)
                errors = [
                    n.message
                    for n in plan.notes
                    if n.pool == summary.name and n.severity == "error"
                ]
                degraded_reason, degraded_message = "", ""
                if summary.name in failed:
                    degraded_reason, degraded_message = "ApplyFailed", failed[summary.name]
                elif errors:
                    degraded_reason, degraded_message = "Blocked", "; ".join(errors)
                elif summary.rollout_halted:
                    degraded_reason, degraded_message = "RolloutHalted", summary.rollout_halted
                elif plan.spec_errors:
                    degraded_reason, degraded_message = "SpecInvalid", plan.spec_errors[0]
                if backing_off and summary.name in backing_off:
                    degraded_message += f" (retrying in {backing_off[summary.name]:.0f}s)"
                progressing = bool(actions) and not degraded_reason
                self._set(
                    pool,
                    "Degraded",
                    bool(degraded_reason),
                    degraded_reason or "AsExpected",
                    degraded_message,
                    revision,
                    now,
                )
                self._set(
                    pool,
                    "Progressing",
                    progressing,
                    "Reconciling" if progressing else "Converged",
                    "; ".join(a.reason for a in actions)[:500],
                    revision,
                    now,
                )
                ready = not actions and not degraded_reason
                self._set(
                    pool,
                    "Ready",
                    ready,
                    "Converged" if ready else "NotConverged",
                    f"{summary.running} of {summary.desired} runners",
                    revision,
                    now,
                )
                if check := checks.get(summary.name):
                    self._set(
                        pool,
                        "RunnerVersionStale",
                        check.stale,
                        check.reason,
                        check.message,
                        revision,
                        now,
                    )
            for name in set(self.pools) - {s.name for s in plan.pools}:
                del self.pools[name]

    @staticmethod
    def _set(
        pool: PoolStatus,
        kind: str,
        status: bool,
        reason: str,
        message: str,
        revision: str,
        now: str,
    ) -> None:
        previous = pool.conditions.get(kind)
        changed = previous is None or previous.status != status
        pool.conditions[kind] = Condition(
            kind,
            status,
            reason,
            message,
            revision,
            now if changed or previous is None else previous.last_transition,
        )

    def set_leader(self, leader: bool) -> None:
        """Record whether this replica leads (only the leader applies)."""
        with self._lock:
            self.controller["leader"] = leader

    def to_json(self) -> dict[str, Any]:
        """The status document served at /status."""
        with self._lock:
            return {
                "controller": dict(self.controller),
                "pools": {
                    name: {
                        **{k: v for k, v in asdict(pool).items() if k != "conditions"},
                        "conditions": [asdict(c) for c in pool.conditions.values()],
                    }
                    for name, pool in sorted(self.pools.items())
                },
            }

    @property
    def ready(self) -> bool:
        """True once a cycle has completed."""
        with self._lock:
            return int(self.controller["cycles"]) > 0
