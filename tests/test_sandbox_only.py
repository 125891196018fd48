"""`--runner-states task-tags` believes a tag anyone allowed ecs:TagResource can set: the
verbs that talk to AWS refuse it unless AWS is the sandbox (a loopback endpoint)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import REPO, run_cli

pytestmark = pytest.mark.e2e  # starts servers or processes

AWS = {
    "AWS_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "not-a-secret",
    "AWS_ENDPOINT_URL": "https://ecs.us-east-1.amazonaws.com",
    "PATH": "/usr/bin:/bin",
}


@pytest.mark.parametrize(
    "verb",
    [
        ("apply", "--auto-approve"),
        ("plan",),
        ("run", "--listen", "127.0.0.1:0"),
    ],
    ids=lambda verb: verb[0],
)
def test_task_tag_runner_states_are_refused_outside_the_sandbox(
    tmp_path: Path, verb: tuple[str, ...]
) -> None:
    result = run_cli(
        *verb,
        "--specs",
        str(REPO / "specs"),
        "--runner-states",
        "task-tags",
        env=AWS,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "--runner-states task-tags is for the sandbox only" in result.stderr
    assert "https://ecs.us-east-1.amazonaws.com" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_environment_variable_is_refused_the_same_way(tmp_path: Path) -> None:
    env = {**AWS, "ECS_RECONCILER_RUNNER_STATES": "task-tags"}
    result = run_cli("apply", "--specs", str(REPO / "specs"), env=env, cwd=tmp_path, timeout=60)
    assert result.returncode == 1
    assert "is for the sandbox only" in result.stderr
