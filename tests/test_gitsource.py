"""The git spec source: only commits whose whole spec set validates are checked out, and
the applied / attempted revisions are reported (like Flux)."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from reconciler.controller.gitsource import GitSource
from reconciler.controller.loop import Controller, ControllerSettings
from reconciler.sandbox.runners import TaskTagRunnerStates
from reconciler.sandbox.scenario import Sandbox

from .conftest import commit, git, wait_for

pytestmark = pytest.mark.e2e  # starts servers or processes

REPO = Path(__file__).resolve().parent.parent
POOL_FILE = "specs/org-platform-dind.yaml"


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
        wait_for(lambda: controller.status.to_json()["controller"]["lastAppliedRevision"] == first)
        (origin / POOL_FILE).write_text("apiVersion: [\n")
        broken = commit(origin, "broken")
        wait_for(
            lambda: controller.status.to_json()["controller"]["lastAttemptedRevision"] == broken
        )
        status = controller.status.to_json()["controller"]
        assert status["lastAppliedRevision"] == first
        assert status["specErrors"]
    finally:
        controller.stop()
        thread.join(10)
