"""Where runner releases come from: GitHub's releases of actions/runner, plus configured ones.

`RunnerVersionWatch.published()` is what `plan_cycle` compares the pools' `runner.version` with
(`plan.versions`). The GitHub list is read once per call, conditionally (unchanged: a 304);
drafts, pre-releases and tags that are not ``vX.Y.Z`` are ignored. The runner API does not
report a registered runner's version, so releases are the only source besides configuration.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass

from ..plan.versions import DEFAULT_MAX_AGE, PublishedVersion, parse_version
from .client import GitHubClient, Release

RUNNER_REPOSITORY = "actions/runner"


@dataclass(frozen=True)
class RunnerVersionWatch:
    """What pool runner versions are compared with, and how long they may stay behind.

    `configured`: versions given as ``VERSION@DATE``; `client`: read actions/runner's releases.
    """

    configured: Sequence[PublishedVersion] = ()
    client: GitHubClient | None = None
    max_age: datetime.timedelta = DEFAULT_MAX_AGE

    def published(self) -> list[PublishedVersion]:
        """Every dated version known; raises `GitHubError` when GitHub cannot be read."""
        found = list(self.configured)
        if self.client is not None:
            found.extend(
                version
                for release in self.client.list_releases(RUNNER_REPOSITORY)
                if (version := _published(release)) is not None
            )
        return found


def _published(release: Release) -> PublishedVersion | None:
    if release.draft or release.prerelease or release.published_at is None:
        return None
    try:
        parse_version(release.tag_name)
    except ValueError:
        return None
    return PublishedVersion(release.tag_name.removeprefix("v"), release.published_at)
