"""Runner version staleness: the rule as a table, the releases over real sockets (ETag: a 304
per cycle), the warning in `plan`, and the RunnerVersionStale condition and gauge of the
controller, against the sandbox and its simulated GitHub."""

from __future__ import annotations

import datetime
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.cli.status import render as render_status
from reconciler.controller.loop import Controller, ControllerSettings
from reconciler.github import GitHubClient, TokenAuth
from reconciler.github.registry import GitHubRunnerStates
from reconciler.github.releases import RUNNER_REPOSITORY, RunnerVersionWatch
from reconciler.plan.actions import Note
from reconciler.plan.versions import (
    PublishedVersion,
    check_runner_versions,
    parse_version,
    running_versions,
    stale_version_notes,
)
from reconciler.sandbox.github_server import FakeGitHub
from reconciler.sandbox.scenario import SANDBOX_GITHUB_TOKEN, Sandbox
from reconciler.sandbox.server import MotoServer

from .conftest import REPO, commit, git, run_cli

UTC = datetime.UTC
NOW = datetime.datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
RELEASES = "GET /repos/{owner}/{repo}/releases"
POOL = "platform-linux-dind"  # the example specs' pools all run 2.328.0


def days_ago(days: float, now: datetime.datetime = NOW) -> datetime.datetime:
    return now - datetime.timedelta(days=days)


def published(version: str, days: float) -> PublishedVersion:
    return PublishedVersion(version, days_ago(days))


# ------------------------------------------------------------------ the rule (pure)


@pytest.mark.parametrize(
    ("older", "newer"),
    [("2.328.0", "2.329.0"), ("2.99.0", "2.100.0"), ("2.328.9", "2.328.10"), ("1.999.0", "v2.0.0")],
)
def test_versions_compare_numerically(older: str, newer: str) -> None:
    assert parse_version(older) < parse_version(newer)


@pytest.mark.parametrize("text", ["2.328", "2.328.0.1", "latest", "2.x.0", ""])
def test_versions_must_be_three_numbers(text: str) -> None:
    with pytest.raises(ValueError, match="not a runner version"):
        parse_version(text)


@pytest.mark.parametrize(
    ("releases", "reason", "first_newer"),
    [
        # two releases behind, the first newer one published 20 days ago: stale
        ([("2.329.0", 20), ("2.330.0", 3)], "Superseded", "2.329.0"),
        # the clock starts at the first newer release, not at the latest
        ([("2.330.0", 3), ("2.329.0", 20)], "Superseded", "2.329.0"),
        # two releases behind, but the first newer one is only 10 days old
        ([("2.329.0", 10), ("2.330.0", 3)], "WithinMaxAge", "2.329.0"),
        # 30 days after the first newer release GitHub refuses jobs
        ([("2.329.0", 31), ("2.330.0", 3)], "Deprecated", "2.329.0"),
        # the spec is the newest (older releases and the same version do not count)
        ([("2.327.0", 60), ("2.328.0", 40)], "Current", None),
        ([], "NoReleasesKnown", None),
    ],
)
def test_staleness_rule(
    releases: list[tuple[str, float]], reason: str, first_newer: str | None
) -> None:
    known = [published(version, days) for version, days in releases]
    [check] = check_runner_versions({"linux": "2.328.0"}, known, NOW)
    assert (check.pool, check.version, check.reason) == ("linux", "2.328.0", reason)
    assert check.stale == (reason in ("Superseded", "Deprecated"))
    assert (check.first_newer.version if check.first_newer else None) == first_newer


def test_a_stale_message_names_the_versions_and_dates() -> None:
    known = [published("2.329.0", 20), published("2.330.0", 3)]
    [check] = check_runner_versions({"linux": "2.328.0"}, known, NOW)
    assert check.message == (
        "runner 2.328.0 is behind 2.330.0; 2.329.0 was published 2026-02-09 (20 days ago, "
        "over the 14-day limit): GitHub stops giving it jobs on 2026-03-11; bump "
        "spec.runner.version"
    )
    assert check.newest == known[1]


def test_max_age_is_configurable_and_each_pool_is_checked() -> None:
    known = [published("2.329.0", 10)]
    checks = check_runner_versions(
        {"b": "2.329.0", "a": "2.328.0"}, known, NOW, max_age=datetime.timedelta(days=7)
    )
    assert [(c.pool, c.reason) for c in checks] == [("a", "Superseded"), ("b", "Current")]
    assert stale_version_notes(checks) == (Note("warning", checks[0].message, "a"),)


@pytest.mark.parametrize(
    ("reported", "checked", "warned"),
    [
        ({}, "2.328.0", False),  # nothing reported (runner states not from GitHub)
        ({"p": ["2.328.0", "2.329.0"]}, "2.328.0", False),  # as the spec, or newer (updated)
        ({"p": ["2.328.0", "2.326.0", "2.327.1"]}, "2.326.0", True),  # the oldest counts
        ({"p": ["", "dev"]}, "2.328.0", False),  # what is not a version is ignored
        ({"other": ["2.1.0"]}, "2.328.0", False),
    ],
)
def test_runners_reporting_an_older_version_are_checked_at_it(
    reported: dict[str, list[str]], checked: str, warned: bool
) -> None:
    versions, notes = running_versions({"p": "2.328.0"}, reported)
    assert versions == {"p": checked}
    assert bool(notes) == warned
    if warned:
        assert notes[0].pool == "p" and "report version 2.326.0" in notes[0].message


def test_configured_versions_parse() -> None:
    assert PublishedVersion.parse("2.330.0@2026-01-05") == PublishedVersion(
        "2.330.0", datetime.datetime(2026, 1, 5, tzinfo=UTC)
    )
    assert PublishedVersion.parse("v2.330.0@2026-01-05T10:00:00+09:00").published_at == (
        datetime.datetime(2026, 1, 5, 1, tzinfo=UTC)
    )
    for bad in ("2.330.0", "2.330@2026-01-05", "2.330.0@yesterday"):
        with pytest.raises(ValueError):
            PublishedVersion.parse(bad)


# ------------------------------------------------------------------ releases from GitHub


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub(tokens=["t"]) as server:
        yield server


def test_releases_skip_drafts_and_prereleases_and_cost_a_304_when_unchanged(
    github: FakeGitHub,
) -> None:
    github.add_release(RUNNER_REPOSITORY, "v2.329.0", days_ago(20))
    github.add_release(RUNNER_REPOSITORY, "v2.331.0", days_ago(1), prerelease=True)
    github.add_release(RUNNER_REPOSITORY, "v2.332.0", days_ago(0), draft=True)
    github.add_release(RUNNER_REPOSITORY, "v2.330.0", days_ago(3))
    configured = PublishedVersion.parse("2.328.5@2026-01-01")
    with GitHubClient(github.url, TokenAuth("t")) as client:
        watch = RunnerVersionWatch([configured], client)
        first = watch.published()
        assert first == [configured, published("2.330.0", 3), published("2.329.0", 20)]
        assert watch.published() == first
        assert client.calls[RELEASES] == 2
        assert client.not_modified[RELEASES] == 1
        github.add_release(RUNNER_REPOSITORY, "v2.331.0", days_ago(0))
        assert watch.published()[1] == published("2.331.0", 0)
        assert client.not_modified[RELEASES] == 1
    assert github.request_log[-1] == ("GET", "/repos/actions/runner/releases")


# ------------------------------------------------------------------ plan and controller


@pytest.fixture
def sandbox(specs: Path, moto_server: MotoServer) -> Iterator[Sandbox]:
    with Sandbox([specs], server=moto_server, github=True) as running:
        yield running


def plan(sandbox: Sandbox, specs: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(
        "plan", "--specs", str(specs), *args, env={**os.environ, **sandbox.environment()}
    )


def test_plan_warns_about_a_stale_runner_version(sandbox: Sandbox, specs: Path) -> None:
    assert sandbox.github is not None
    now = datetime.datetime.now(UTC)
    sandbox.github.add_release(RUNNER_REPOSITORY, "v2.329.0", days_ago(20, now))
    sandbox.github.add_release(RUNNER_REPOSITORY, "v2.330.0", days_ago(3, now))
    shown = plan(sandbox, specs)
    assert shown.returncode == 2, shown.stdout + shown.stderr  # a warning is not an error
    assert f"! pool {POOL}: runner 2.328.0 is behind 2.330.0; 2.329.0 was published" in (
        shown.stdout
    )
    assert "over the 14-day limit" in shown.stdout

    # a longer max age: no warning; without GitHub, a configured release works the same
    assert "runner 2.328.0" not in plan(sandbox, specs, "--runner-version-max-age", "21").stdout
    date = days_ago(40, now).date().isoformat()
    offline = plan(sandbox, specs, "--runner-states", "none", "--runner-latest", f"2.329.0@{date}")
    assert offline.returncode == 2, offline.stdout + offline.stderr
    assert f"! pool {POOL}: runner 2.328.0 is behind 2.329.0" in offline.stdout
    assert "GitHub has refused jobs to it since" in offline.stdout


def test_controller_sets_runner_version_stale_and_revalidates_releases(
    sandbox: Sandbox, specs: Path
) -> None:
    assert sandbox.github is not None
    now = datetime.datetime.now(UTC)
    sandbox.github.add_release(RUNNER_REPOSITORY, "v2.329.0", days_ago(20, now))
    with GitHubClient(sandbox.github.url, TokenAuth(SANDBOX_GITHUB_TOKEN)) as client:
        controller = Controller(
            ControllerSettings(spec_paths=[specs]),
            sandbox.clients(read_only=True),
            GitHubRunnerStates(client),
            is_leader=lambda: False,
            github=client,
            versions=RunnerVersionWatch(client=client),
        )
        controller.reconcile("test")
        controller.reconcile("test")
        assert client.calls[RELEASES] == 2
        assert client.not_modified[RELEASES] == 1
    pools = controller.status.to_json()["pools"]
    assert pools
    for name, pool in pools.items():
        [condition] = [c for c in pool["conditions"] if c["type"] == "RunnerVersionStale"]
        assert condition["status"] is True, name
        assert condition["reason"] == "Superseded"
        assert "runner 2.328.0 is behind 2.329.0" in condition["message"]
    assert "  RunnerVersionStale: runner 2.328.0 is behind 2.329.0" in render_status(
        controller.status.to_json()
    )
    exposition = controller.metrics.render()[0].decode()
    assert f'ecs_reconciler_runner_version_stale{{pool="{POOL}"}} 1.0' in exposition
    assert 'ecs_reconciler_github_api_calls_total{endpoint="GET /repos/{owner}/{repo}/rel' in (
        exposition
    )


def test_plan_base_checks_configured_versions_without_credentials(tmp_path: Path) -> None:
    shutil.copytree(REPO / "specs", tmp_path / "specs")
    git(tmp_path, "init", "-q", "-b", "main")
    commit(tmp_path, "base")
    date = days_ago(15, datetime.datetime.now(UTC)).date().isoformat()
    command = ["plan", "--base", "main", "--runner-latest", f"2.329.0@{date}"]
    shown = run_cli(
        *command,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "GITHUB_"))},
    )
    assert shown.returncode == 0, shown.stdout + shown.stderr  # no changes; warnings only
    assert f"! pool {POOL}: runner 2.328.0 is behind 2.329.0" in shown.stdout
    assert "No changes." in shown.stdout
