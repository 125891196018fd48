"""`plan --base REF` and `--policy`: credential-free plans of a spec change, and the
automerge gate, on temporary git repositories through the real CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from reconciler.sandbox.scenario import without_schedules

from .conftest import commit, git, run_cli

pytestmark = pytest.mark.e2e  # starts servers or processes

REPO = Path(__file__).resolve().parent.parent
POOL_FILE = "specs/org-platform-dind.yaml"
OLD_IMAGE = "actions-runner:2.328.0@sha256:3f1a8c9e"
DIGEST_BUMP = "actions-runner:2.328.0@sha256:0f1a8c9e"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "spec-repo"
    root.mkdir()
    shutil.copytree(REPO / "specs", root / "specs")
    for path in (root / "specs").glob("*.yaml"):  # what they ask is the same at any hour
        path.write_text(without_schedules(path.read_text()))
    git(root, "init", "-q", "-b", "main")
    commit(root, "base")
    return root


def plan(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    # no AWS configuration at all: --base needs none
    return run_cli("plan", "--base", "main", *args, cwd=repo, env=env)


def edit(repo: Path, file: str, old: str, new: str) -> None:
    path = repo / file
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new))


def test_no_change_exits_zero(repo: Path) -> None:
    result = plan(repo)
    assert result.returncode == 0, result.stderr
    assert "No changes." in result.stdout


def test_renovate_digest_bump_passes_the_gate(repo: Path) -> None:
    edit(repo, POOL_FILE, OLD_IMAGE, DIGEST_BUMP)
    result = plan(repo, "--policy", "renovate-safe")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "~ runner_pool.platform-linux-dind will be updated in place" in result.stdout
    assert "~ task_definition.platform-linux-dind will be updated in place" in result.stdout
    assert "-/+ runner_tasks.platform-linux-dind: roll 2 runner(s)" in result.stdout
    assert "Policy renovate-safe: passed." in result.stdout


def test_runner_minor_version_bump_with_its_image_passes(repo: Path) -> None:
    edit(repo, POOL_FILE, "version: 2.328.0", "version: 2.329.0")
    edit(repo, POOL_FILE, OLD_IMAGE, "actions-runner:2.329.0@sha256:3f1a8c9e")
    result = plan(repo, "--policy", "renovate-safe", "--format", "json")
    assert result.returncode == 2, result.stdout + result.stderr
    document = json.loads(result.stdout)
    assert document["policy"] == {"name": "renovate-safe", "passed": True, "violations": []}
    paths = [op["path"] for a in document["actions"] for op in a["patch"]]
    assert "/spec/runner/version" in paths and "/spec/runner/image" in paths


FAILING_CHANGES = [
    pytest.param(
        lambda repo: (repo / POOL_FILE).unlink(),
        "specs/org-platform-dind.yaml:6:3: runner_pool.platform-linux-dind: delete (removed from the specs",
        id="pool deletion",
    ),
    pytest.param(
        lambda repo: edit(repo, POOL_FILE, "max: 40", "max: 80"),
        "specs/org-platform-dind.yaml:32:5: runner_pool.platform-linux-dind: /spec/scaling/max "
        "changed (40 -> 80)",
        id="max change",
    ),
    pytest.param(
        lambda repo: edit(repo, POOL_FILE, "x64, dind]", "x64, docker]"),
        "specs/org-platform-dind.yaml:12:37: runner_pool.platform-linux-dind: /spec/labels/3 "
        "changed ('dind' -> 'docker')",
        id="label change",
    ),
    pytest.param(
        lambda repo: (repo / "specs/new-pool.yaml").write_text(
            (repo / POOL_FILE).read_text().replace("name: platform-linux-dind", "name: new-pool")
        ),
        "specs/new-pool.yaml:6:3: runner_pool.new-pool: create (new in the specs): not allowed",
        id="new pool",
    ),
    pytest.param(
        lambda repo: edit(repo, POOL_FILE, "version: 2.328.0", "version: 3.0.0"),
        "runner version 2.328.0 -> 3.0.0 is more than a minor bump",
        id="major runner version",
    ),
    pytest.param(
        lambda repo: edit(
            repo, "specs/capacity-providers.yaml", "targetCapacity: 100", "targetCapacity: 90"
        ),
        "capacity_provider.linux-arm64: /spec/managedScaling/targetCapacity changed (100 -> 90)",
        id="capacity change",
    ),
]


@pytest.mark.parametrize(("change", "message"), FAILING_CHANGES)
def test_gate_fails_naming_the_field_and_file(repo: Path, change, message: str) -> None:
    change(repo)
    result = plan(repo, "--policy", "renovate-safe")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "Policy renovate-safe: FAILED" in result.stdout
    assert message in result.stdout


def test_pool_deletion_is_shown_as_a_deletion(repo: Path) -> None:
    (repo / POOL_FILE).unlink()
    result = plan(repo, "--format", "markdown")
    assert result.returncode == 2
    assert "> **1 deletion(s):**" in result.stdout
    assert "`runner_pool.platform-linux-dind`: removed from the specs: deletionPolicy Drain" in (
        result.stdout
    )


def test_invalid_head_spec_is_an_error_not_a_deletion(repo: Path) -> None:
    (repo / POOL_FILE).write_text("apiVersion: [\n")
    result = plan(repo, "--format", "json")
    assert result.returncode == 1
    document = json.loads(result.stdout)
    assert document["spec_errors"]
    assert [a for a in document["actions"] if a["action"] == "delete"] == []


def test_unknown_revision_is_a_clear_error(repo: Path) -> None:
    result = run_cli("plan", "--base", "nope", cwd=repo)
    assert result.returncode == 1
    assert result.stderr.startswith("error: git rev-parse")
    assert "Traceback" not in result.stderr


def test_policy_file_with_errors_is_reported(repo: Path, tmp_path: Path) -> None:
    bad = tmp_path / "policy.yaml"
    bad.write_text(
        "apiVersion: ecs-reconciler/v1alpha1\nkind: PlanPolicy\nmetadata: {name: p}\n"
        "spec:\n  allow:\n    - resources: [runner_pool]\n      actions: [upsert]\n"
    )
    result = plan(repo, "--policy", str(bad))
    assert result.returncode == 1
    assert "policy.yaml:7:" in result.stderr and "spec.allow[0].actions[0]" in result.stderr


def test_custom_policy_allows_scaling_changes(repo: Path, tmp_path: Path) -> None:
    policy = tmp_path / "scaling.yaml"
    policy.write_text(
        "apiVersion: ecs-reconciler/v1alpha1\nkind: PlanPolicy\nmetadata: {name: scaling}\n"
        "spec:\n  allow:\n    - resources: [runner_pool]\n      actions: [update]\n"
        "      paths: ['/spec/scaling/*']\n"
    )
    edit(repo, POOL_FILE, "max: 40", "max: 80")
    result = plan(repo, "--policy", str(policy))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Policy scaling: passed." in result.stdout
