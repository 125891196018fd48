"""Runner version staleness: is a pool's `runner.version` falling behind actions/runner releases?

GitHub's rule: a runner version is deprecated, and its runners get no more jobs, 30 days after
a newer version is published. So the clock of a version starts when the *first* release newer
than it is published, not the latest one. Our rule, to warn well before that:

    stale  <=>  some known release newer than the spec's version was published more than
                `max_age` ago (default 14 days)

`since` is the publish time of the oldest such release; GitHub refuses jobs from `since` +
30 days. Only dated versions count (releases from GitHub, or a configured ``VERSION@DATE``):
without a date there is no clock. Versions compare numerically (2.99.0 < 2.100.0). Pure: no
I/O, the caller passes `now`.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from .actions import Note

DEFAULT_MAX_AGE = datetime.timedelta(days=14)
GITHUB_DEPRECATION = datetime.timedelta(days=30)

CheckReason = Literal["Superseded", "Deprecated", "WithinMaxAge", "Current", "NoReleasesKnown"]


def parse_version(text: str) -> tuple[int, ...]:
    """``"2.328.0"`` or ``"v2.328.0"`` -> ``(2, 328, 0)``; ValueError for anything else."""
    parts = text.strip().removeprefix("v").split(".")
    if len(parts) != 3 or not all(part.isdigit() for part in parts):
        raise ValueError(f"not a runner version x.y.z: {text!r}")
    return tuple(int(part) for part in parts)


@dataclass(frozen=True)
class PublishedVersion:
    """A runner version and when it was published (aware, UTC)."""

    version: str
    published_at: datetime.datetime

    @property
    def key(self) -> tuple[int, ...]:
        """The version as numbers, for comparisons."""
        return parse_version(self.version)

    @classmethod
    def parse(cls, text: str) -> PublishedVersion:
        """``"2.330.0@2026-01-05"`` (a date or an ISO 8601 time, UTC unless it says)."""
        version, separator, moment = text.partition("@")
        if not separator:
            raise ValueError(f"expected VERSION@DATE, e.g. 2.330.0@2026-01-05: {text!r}")
        parse_version(version)
        published = datetime.datetime.fromisoformat(moment)
        if published.tzinfo is None:
            published = published.replace(tzinfo=datetime.UTC)
        return cls(version.removeprefix("v"), published)


@dataclass(frozen=True)
class VersionCheck:
    """The verdict on one pool's runner version; `stale` is the `RunnerVersionStale` status."""

    pool: str
    version: str
    reason: CheckReason
    message: str
    first_newer: PublishedVersion | None = None  # the release that started the clock
    newest: PublishedVersion | None = None

    @property
    def stale(self) -> bool:
        """True when the pool should be bumped now."""
        return self.reason in ("Superseded", "Deprecated")


def check_runner_versions(
    spec_versions: Mapping[str, str],
    published: Iterable[PublishedVersion],
    now: datetime.datetime,
    max_age: datetime.timedelta = DEFAULT_MAX_AGE,
) -> list[VersionCheck]:
    """One `VersionCheck` per pool (by name), from its spec version and the known releases."""
    known = sorted(published, key=lambda p: (p.key, p.published_at))
    pools = sorted(spec_versions)
    return [_check(pool, spec_versions[pool], known, now, max_age) for pool in pools]


def _check(
    pool: str,
    version: str,
    known: list[PublishedVersion],
    now: datetime.datetime,
    max_age: datetime.timedelta,
) -> VersionCheck:
    if not known:
        return VersionCheck(
            pool, version, "NoReleasesKnown", "no runner release known to compare with"
        )
    newer = [p for p in known if p.key > parse_version(version)]
    if not newer:
        return VersionCheck(pool, version, "Current", f"runner {version} is the newest known")
    first = min(newer, key=lambda p: p.published_at)
    newest = newer[-1]
    age = now - first.published_at
    behind = (
        f"runner {version} is behind {newest.version}; {first.version} was published "
        f"{_day(first.published_at)} ({age.days} days ago"
    )
    deadline = first.published_at + GITHUB_DEPRECATION
    if age <= max_age:
        reason: CheckReason = "WithinMaxAge"
        message = f"{behind}, limit {max_age.days})"
    elif now >= deadline:
        reason = "Deprecated"
        message = f"{behind}): GitHub has refused jobs to it since {_day(deadline)}"
    else:
        reason = "Superseded"
        message = (
            f"{behind}, over the {max_age.days}-day limit): GitHub stops giving it jobs on "
            f"{_day(deadline)}; bump spec.runner.version"
        )
    return VersionCheck(pool, version, reason, message, first, newest)


def running_versions(
    spec_versions: Mapping[str, str], reported: Mapping[str, Iterable[str]]
) -> tuple[dict[str, str], tuple[Note, ...]]:
    """The version to check per pool: the oldest its runners report to GitHub when older than
    its `spec.runner.version` (an image that was not rebuilt), else the spec's; with a
    warning note per pool whose runners run older than the spec says."""
    effective, notes = dict(spec_versions), []
    for pool, spec_version in spec_versions.items():
        older = [v for v in reported.get(pool, ()) if _known(v) and _older(v, spec_version)]
        if older:
            oldest = min(older, key=parse_version)
            effective[pool] = oldest
            notes.append(
                Note(
                    "warning",
                    f"runners of pool {pool} report version {oldest} to GitHub, older than "
                    f"spec.runner.version {spec_version}: does the image carry the runner "
                    "the spec names?",
                    pool,
                )
            )
    return effective, tuple(notes)


def _known(version: str) -> bool:
    try:
        parse_version(version)
    except ValueError:
        return False
    return True


def _older(version: str, than: str) -> bool:
    try:
        return parse_version(version) < parse_version(than)
    except ValueError:
        return False


def stale_version_notes(checks: Iterable[VersionCheck]) -> tuple[Note, ...]:
    """A warning note per stale pool (warnings never change the plan's exit code)."""
    return tuple(Note("warning", check.message, check.pool) for check in checks if check.stale)


def _day(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).date().isoformat()
