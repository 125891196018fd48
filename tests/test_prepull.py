"""The runner instances' boot-time image pre-pull (the template's UserData mapping, appended to
every launch template's user data), run for real with bash: the user data after its ecs.config
is taken from the evaluated template and run with a fake `aws` (ECS and ECR from canned task
definitions, `--query` evaluated with JMESPath as the CLI does), `docker` and `uname` first on
PATH. Nothing needs root, the network or the hour."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reconciler.plan.state import FAMILY_PREFIX

from .cfn import Deployment, template
from .test_cloudformation import REQUIRED

pytestmark = pytest.mark.e2e  # starts processes

REGION = "eu-west-1"
ECR = "111122223333.dkr.ecr.us-east-1.amazonaws.com"  # another region than the stack's
ARM_ECR = "444455556666.dkr.ecr.eu-west-1.amazonaws.com"
DIGEST = "sha256:" + "0123456789abcdef" * 4
RUNNER = f"{ECR}/runner:2.330.0"
DIND = f"ghcr.io/acme/dind:27@{DIGEST}"
PRIVATE = "ghcr.io/acme/agent-tools:1"  # needs credentials: its pull fails
# family -> (architecture, images), as DescribeTaskDefinition returns them
TASK_DEFINITIONS = {
    f"{FAMILY_PREFIX}small": ("X86_64", [RUNNER, DIND]),
    f"{FAMILY_PREFIX}large": ("X86_64", [RUNNER, PRIVATE, DIND]),
    f"{FAMILY_PREFIX}graviton": ("ARM64", [f"{ARM_ECR}/runner:2.330.0-arm64", DIND]),
}

# `aws ecs list-task-definition-families|describe-task-definition`, `aws ecr
# get-login-password`: canned answers, `--query` applied with jmespath and printed as
# `--output text` prints (a list of scalars on one line, tab-separated); every call logged
FAKE_AWS = """#!{python}
import json, os, sys
import jmespath

args = sys.argv[1:]
opts = dict(zip(args[2::2], args[3::2]))
with open(os.environ["FAKE_CALLS"], "a") as log:
    log.write(" ".join(["aws", *args]) + "\\n")
definitions = json.loads(os.environ["FAKE_TASK_DEFINITIONS"])
if args[:2] == ["ecs", "list-task-definition-families"]:
    assert opts["--status"] == "ACTIVE", opts
    answer = {{"families": [f for f in definitions if f.startswith(opts["--family-prefix"])]}}
elif args[:2] == ["ecs", "describe-task-definition"]:
    arch, images = definitions[opts["--task-definition"]]
    answer = {{"taskDefinition": {{
        "family": opts["--task-definition"],
        "runtimePlatform": {{"cpuArchitecture": arch, "operatingSystemFamily": "LINUX"}},
        "containerDefinitions": [{{"name": f"c{{i}}", "image": image}} for i, image in enumerate(images)],
    }}}}
elif args[:2] == ["ecr", "get-login-password"]:
    print("ecr-token-" + opts["--region"])
    sys.exit(0)
else:
    sys.exit(f"fake aws: unexpected {{args}}")
assert opts["--output"] == "text", opts
result = jmespath.search(opts["--query"], answer)
assert isinstance(result, list) and all(isinstance(r, str) for r in result), result
print("\\t".join(result))
"""

# `docker info|login|pull`: logged; a pull waits for $FAKE_GATE (bounded), and fails for
# $FAKE_UNPULLABLE as a pull without credentials would
FAKE_DOCKER = r"""#!/usr/bin/env bash
echo "docker $* password=$([[ $1 == login ]] && cat)" >>"$FAKE_CALLS"
case $1 in
  pull)
    for _ in $(seq 300); do [[ -e $FAKE_GATE ]] && break; sleep 0.1; done
    if [[ ${!#} == "$FAKE_UNPULLABLE" ]]; then echo "denied: $FAKE_UNPULLABLE" >&2; exit 1; fi ;;
esac
"""


def deployment() -> Deployment:
    return Deployment(template(), REQUIRED, pseudo={"AWS::Region": REGION})


def user_data() -> dict[str, str]:
    """Launch template -> its user data, resolved."""
    templates = deployment().of_type("AWS::EC2::LaunchTemplate")
    return {n: t["Properties"]["LaunchTemplateData"]["UserData"] for n, t in templates.items()}


def prepull(data: str) -> str:
    """The part of the user data after the ecs.config heredoc: the region and the pre-pull."""
    head, separator, tail = data.partition("\nEOF\n")
    assert separator and "/etc/ecs/ecs.config" in head
    return tail


def test_every_launch_template_carries_the_same_prepull() -> None:
    scripts = {name: prepull(data) for name, data in user_data().items()}
    assert len(scripts) == 3
    (script,) = set(scripts.values())
    assert script.startswith(f"export AWS_DEFAULT_REGION={REGION}\n")
    assert "list-task-definition-families --family-prefix ecs-reconciler-" in script
    assert (
        f"--family-prefix {FAMILY_PREFIX} " in script
    )  # the pools' families, not the controller's
    assert script.rstrip().endswith("&"), "runs in the background"
    subprocess.run(["bash", "-n", "-c", script], check=True, timeout=10)


def test_the_instance_role_may_read_task_definitions_and_nothing_more() -> None:
    role = deployment().resources()["ContainerInstanceRole"]["Properties"]
    (policy,) = role["Policies"]
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Allow"
    assert sorted(statement["Action"]) == [
        "ecs:DescribeTaskDefinition",
        "ecs:ListTaskDefinitionFamilies",
    ]
    assert statement["Resource"] == "*"  # neither action takes a resource-level scope
    assert "Condition" not in statement


def run_prepull(tmp_path: Path, machine: str) -> tuple[list[str], str]:
    """Run the Class1 pre-pull on a `machine` (uname -m); (the calls made, its log)."""
    fakes, calls, log, gate = (
        tmp_path / "bin",
        tmp_path / "calls",
        tmp_path / "log",
        tmp_path / "gate",
    )
    fakes.mkdir()
    for name, text in (
        ("aws", FAKE_AWS.format(python=sys.executable)),
        ("docker", FAKE_DOCKER),
        ("uname", f'#!/bin/sh\n[ "$1" = -m ] && echo {machine}\n'),
    ):
        (fakes / name).write_text(text)
        (fakes / name).chmod(0o755)
    script = tmp_path / "prepull.sh"
    script.write_text(prepull(user_data()["Class1LaunchTemplate"]))
    started = time.monotonic()
    result = subprocess.run(
        ["bash", str(script)],
        env={
            "PATH": f"{fakes}:/usr/bin:/bin",  # no real aws or docker behind the fakes
            "HOME": str(tmp_path),
            "PREPULL_LOG": str(log),
            "FAKE_CALLS": str(calls),
            "FAKE_GATE": str(gate),
            "FAKE_UNPULLABLE": PRIVATE,
            "FAKE_TASK_DEFINITIONS": json.dumps(TASK_DEFINITIONS),
        },
        capture_output=True,
        text=True,
        timeout=30,  # a foreground pre-pull (or a background one holding stdout) would block
    )
    assert result.returncode == 0, result.stderr
    assert (result.stdout, result.stderr) == ("", "")
    assert time.monotonic() - started < 10
    # the script has returned while the pulls wait for the gate: they run in the background
    assert "pre-pull done" not in (log.read_text() if log.exists() else "")
    gate.touch()
    deadline = time.monotonic() + 30
    while "pre-pull done" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline, log.read_text() if log.exists() else "no log"
        time.sleep(0.1)
    return calls.read_text().splitlines(), log.read_text()


def test_an_x86_instance_pulls_each_x86_image_once_after_one_ecr_login(tmp_path: Path) -> None:
    calls, log = run_prepull(tmp_path, "x86_64")
    pulls = [c.split()[-2] for c in calls if c.startswith("docker pull ")]
    assert sorted(pulls) == sorted({RUNNER, DIND, PRIVATE})  # each once; no ARM64 image
    assert [c for c in calls if c.startswith("docker login")] == [
        f"docker login --username AWS --password-stdin {ECR} password=ecr-token-us-east-1"
    ]
    assert [c for c in calls if c.startswith("aws ecr")] == [
        "aws ecr get-login-password --region us-east-1"  # the registry's region
    ]
    described = [c.split()[4] for c in calls if c.startswith("aws ecs describe-task-definition")]
    assert sorted(described) == sorted(TASK_DEFINITIONS)
    # the failing pull (sorted before the digest-pinned one) stops nothing
    assert pulls.index(PRIVATE) < pulls.index(DIND)
    assert f"pulled {RUNNER}" in log and f"pulled {DIND}" in log
    assert f"FAILED {PRIVATE}" in log and f"denied: {PRIVATE}" in log
    assert "pre-pull started (X86_64)" in log


def test_an_arm_instance_pulls_only_arm64_images(tmp_path: Path) -> None:
    calls, log = run_prepull(tmp_path, "aarch64")
    pulls = sorted(c.split()[-2] for c in calls if c.startswith("docker pull "))
    assert pulls == sorted({f"{ARM_ECR}/runner:2.330.0-arm64", DIND})
    assert [c.split()[-2] for c in calls if c.startswith("docker login")] == [ARM_ECR]
    assert "FAILED" not in log
