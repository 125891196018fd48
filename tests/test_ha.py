"""Two controller processes against one sandbox (DynamoDB + ECS over moto's HTTP server):
exactly one applies, the other takes over within the lease duration plus one retry period
when the leader dies, and no action is applied twice."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from reconciler.sandbox.scenario import Sandbox, run_command

from .conftest import wait_for

pytestmark = pytest.mark.e2e  # starts servers or processes

LEASE, RENEW, RETRY = 8.0, 6.0, 0.5  # RENEW >= a fenced call's 5 s + 2 RETRY
DESIRED_TOTAL = 4  # the example specs: 2 + 1 + 1 runners


def start(sandbox: Sandbox, specs: Path, identity: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        run_command(
            specs, 1, identity=identity, lease_timing=f"{LEASE},{RENEW},{RETRY}", verbose=True
        ),
        env={**os.environ, **sandbox.environment()},
        stdout=subprocess.PIPE,
        stderr=(specs.parent / f"{identity}.log").open("w"),  # shown when a check fails
        text=True,
    )
    assert process.stdout is not None
    banner = process.stdout.readline()
    return process, banner.split("serving ", 1)[1].strip()


def replica_logs(specs: Path) -> str:
    """The last lines of each replica's log (INFO: cycles, starts, leadership)."""
    return "\n".join(
        f"--- {log.name}\n" + "\n".join(log.read_text().splitlines()[-25:])
        for log in sorted(specs.parent.glob("*.log"))
    )


def status(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def leader(url: str) -> bool:
    try:
        return bool(status(url)["controller"]["leader"])
    except OSError:
        return False


def runner_tasks(sandbox: Sandbox) -> int:
    ecs = sandbox.clients(read_only=True).ecs
    arns = ecs.list_tasks(cluster="ci-runners", desiredStatus="RUNNING")["taskArns"]
    if not arns:
        return 0
    tasks = ecs.describe_tasks(cluster="ci-runners", tasks=arns)["tasks"]
    return sum(1 for t in tasks if t["desiredStatus"] == "RUNNING")


def test_one_leader_applies_and_a_standby_takes_over(sandbox: Sandbox, specs: Path) -> None:
    first, first_url = start(sandbox, specs, "first")
    second = None
    try:
        wait_for(lambda: leader(first_url), 20)
        second, second_url = start(sandbox, specs, "second")
        wait_for(lambda: status(second_url)["controller"]["cycles"] >= 2, 20)
        assert not leader(second_url), "the standby does not lead"
        wait_for(lambda: runner_tasks(sandbox) == DESIRED_TOTAL, 20)
        for _ in range(10):  # both keep reconciling; nothing is started twice
            assert runner_tasks(sandbox) == DESIRED_TOTAL, replica_logs(specs)
            time.sleep(0.3)

        first.kill()
        first.wait()
        killed = time.monotonic()
        wait_for(lambda: leader(second_url), LEASE + RETRY + 5)
        assert time.monotonic() - killed <= LEASE + RETRY + 1.5  # + status refresh of one cycle
        pool_file = specs / "org-platform-dind.yaml"
        pool_file.write_text(pool_file.read_text().replace("    idle: 2\n", "    idle: 3\n"))
        wait_for(lambda: runner_tasks(sandbox) == DESIRED_TOTAL + 1, 20)
        time.sleep(2)
        assert runner_tasks(sandbox) == DESIRED_TOTAL + 1, replica_logs(specs)
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
