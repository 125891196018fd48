"""Runner group access drift: the spec's `runnerGroupAccess` against the group in GitHub.

GitHub hands a group's runners only to jobs of repositories (organizations, for an enterprise's
group) the group admits (GitHub docs, "Managing access to self-hosted runners using groups";
REST: `GET /orgs/{org}/actions/runner-groups` gives each group's `visibility`: all, selected or
private; `GET .../runner-groups/{runner_group_id}/repositories` the selected repositories,
`/enterprises/{enterprise}/...organizations` an enterprise group's organizations). The demand a
pool counts follows the spec, so a spec that differs from GitHub scales a pool for jobs GitHub
will not hand it, or misses jobs it will.

`RunnerGroupAccessWatch` reads each group at most once per `ttl` (two GETs: the group list of
the scope and, for a `selected` group, its members; conditional requests with ETags) and says
what differs, as sentences. It reads and never changes a group: the group is the platform
team's configuration, like the Auto Scaling group.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .client import GitHubClient, GitHubError, RunnerGroupNotFound, Scope

log = logging.getLogger(__name__)

DEFAULT_TTL_S = 600.0


@dataclass(frozen=True)
class GroupAccess:
    """A runner group's access in GitHub: its visibility and, when `selected`, its members."""

    visibility: str
    members: frozenset[str] = frozenset()  # lower-case repositories or organizations


@dataclass(frozen=True)
class SpecGroup:
    """A runner group as the specs name it, and the access they state (None: all)."""

    scope: Scope
    name: str
    members: frozenset[str] | None  # lower-case
    pools: tuple[str, ...]


def access_drift(spec: SpecGroup, github: GroupAccess) -> str | None:
    """What differs between the spec's access and the group's in GitHub; None when alike."""
    noun = "repositories" if spec.scope.kind == "organization" else "organizations"
    where = f"runner group {spec.name!r} of {spec.scope.name} (pools {', '.join(spec.pools)})"
    if github.visibility == "private":
        return (
            f"{where}: GitHub admits private repositories only (visibility private), which "
            "runnerGroupAccess cannot state; demand counts public repositories' jobs too"
        )
    if spec.members is None:
        if github.visibility == "all":
            return None
        return (
            f"{where}: GitHub admits {len(github.members)} selected {noun} only, the specs all "
            f"of the scope: demand counts jobs GitHub will not hand these runners; set "
            f"runnerGroupAccess.{noun} to {', '.join(sorted(github.members)) or 'the selected'}"
        )
    if github.visibility == "all":
        return (
            f"{where}: GitHub admits every one of the scope's {noun}, the specs "
            f"{len(spec.members)}: jobs of the others take these runners without being counted; "
            "select the group's members in GitHub, or remove runnerGroupAccess"
        )
    missing, extra = spec.members - github.members, github.members - spec.members
    if not missing and not extra:
        return None
    parts = []
    if missing:
        parts.append(f"not admitted in GitHub: {', '.join(sorted(missing))}")
    if extra:
        parts.append(f"admitted in GitHub, not in the specs: {', '.join(sorted(extra))}")
    return f"{where}: {'; '.join(parts)}"


class RunnerGroupAccessWatch:
    """Each spec runner group's access in GitHub, read at most once per `ttl` seconds."""

    def __init__(
        self,
        github: GitHubClient,
        ttl: float = DEFAULT_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.github = github
        self.ttl = ttl
        self.clock = clock
        self._known: dict[tuple[Scope, str], tuple[float, GroupAccess | str]] = {}
        self._lock = threading.Lock()

    def drift(self, groups: Iterable[SpecGroup]) -> list[str]:
        """A sentence per group whose access differs from the spec's, or cannot be read."""
        found = []
        for group in groups:
            access = self._access(group.scope, group.name)
            if isinstance(access, str):
                found.append(f"runner group {group.name!r} of {group.scope.name}: {access}")
            elif (difference := access_drift(group, access)) is not None:
                found.append(difference)
        return found

    def _access(self, scope: Scope, name: str) -> GroupAccess | str:
        now = self.clock()
        with self._lock:
            known = self._known.get((scope, name))
        if known is not None and now - known[0] < self.ttl:
            return known[1]
        result: GroupAccess | str
        try:
            group = self.github.runner_group(scope, name)
            members = (
                frozenset(m.lower() for m in self.github.runner_group_members(scope, group.id))
                if group.visibility == "selected"
                else frozenset()
            )
            result = GroupAccess(group.visibility, members)
        except RunnerGroupNotFound as error:
            result = f"not found in GitHub ({error})"
        except GitHubError as error:
            log.warning("runner group %s of %s unreadable: %s", name, scope.name, error)
            result = f"access not read ({error})"
        with self._lock:
            self._known[(scope, name)] = (now, result)
        return result
