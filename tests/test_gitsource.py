"""The git spec source: only commits whose whole spec set validates are checked out, and
the applied / attempted revisions are reported (like Flux)."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.controller.gitsource import GitSource
from reconciler.controller.loop import Controller, ControllerSettings
from reconciler.sandbox.runners import TaskTagRunnerStates
from reconciler.sandbox.scenario import Sandbox

REPO = Path(__file__).resolve().parent.parent
POOL_FILE = "specs/org-platform-dind.yaml"


def git(repo: Path, *args: str) -> str:
    completed = subprocess.run(
        ["git", "-c", "user.email=ci@example.com", "-c", "user.name=ci", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    )
    return completed.stdout.strip()


def commit(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    root = tmp_path / "origin"
    root.mkdir()
    shutil.copytree(REPO / "specs", root / "specs")
    git(root, "init", "-q", "-b", "main")
    commit(root, "initial specs")
    return root


def test_only_valid_commits_are_checked_out(origin: Path, tmp_path: Path) -> None:
    source = GitSource(str(origin), "main", tmp_path / "work")
    first = git(origin, "rev-parse", "HEAD")
    assert source.sync() is True
    assert source.state.applied == first
    assert (source.spec_dir / "org-platform-dind.yaml").exists()
    assert source.sync() is False, "nothing new"

    (origin / POOL_FILE).write_text("apiVersion: [\n")
    broken = commit(origin, "broken spec")
    assert source.sync() is True, "a new commit was seen"
    assert source.state.attempted == broken
    assert source.state.applied == first
    assert any("org-platform-dind.yaml" in error for error in source.state.errors)
    assert "kind: RunnerPool" in (source.spec_dir / "org-platform-dind.yaml").read_text()

    shutil.copy(REPO / POOL_FILE, origin / POOL_FILE)
    text = (origin / POOL_FILE).read_text().replace("max: 40", "max: 41")
    (origin / POOL_FILE).write_text(text)
    fixed = commit(origin, "fix")
    assert source.sync() is True
    assert source.state.applied == source.state.attempted == fixed
    assert source.state.errors == []
    assert "max: 41" in (source.spec_dir / "org-platform-dind.yaml").read_text()


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox([REPO / "specs"], mode="process") as running:
        yield running


def test_controller_reports_applied_and_attempted_revisions(
    origin: Path, tmp_path: Path, sandbox: Sandbox
) -> None:
    source = GitSource(str(origin), "main", tmp_path / "work")
    source.sync()
    clients = sandbox.clients()
    settings = ControllerSettings(
        spec_paths=[source.spec_dir], resync_interval=300, git_poll_interval=0.2
    )
    controller = Controller(settings, clients, TaskTagRunnerStates(clients), git=source)
    thread = threading.Thread(target=controller.run, daemon=True)
    thread.start()
    try:
        first = git(origin, "rev-parse", "HEAD")
        _wait(lambda: controller.status.to_json()["controller"]["lastAppliedRevision"] == first)
        (origin / POOL_FILE).write_text("apiVersion: [\n")
        broken = commit(origin, "broken")
        _wait(lambda: controller.status.to_json()["controller"]["lastAttemptedRevision"] == broken)
        status = controller.status.to_json()["controller"]
        assert status["lastAppliedRevision"] == first
        assert status["specErrors"]
    finally:
        controller.stop()
        thread.join(10)


def _wait(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")
