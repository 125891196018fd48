"""Helpers shared by the sandbox benchmarks: a spec set of N pools, a sandbox with enough
container instances, fast runner seeding, and one measured read-only plan cycle.

Everything runs against moto's HTTP server through the same boto3 code as real AWS.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reconciler.aws.clients import AwsClients
from reconciler.aws.executor import Executor, placement, revision_arns
from reconciler.aws.observe import Observer
from reconciler.clock import utc_now
from reconciler.plan.planner import plan as make_plan
from reconciler.plan.state import STARTED_BY
from reconciler.reconcile import Cycle, plan_cycle
from reconciler.sandbox.runners import RUNNER_TAG, TaskTagRunnerStates
from reconciler.sandbox.scenario import Sandbox

CLUSTER = "bench"
GROUP = "bench-group"
DIGEST = "sha256:" + "b" * 64
PROVIDER = f"""\
apiVersion: ecs-reconciler/v1alpha1
kind: CapacityProvider
metadata: {{name: bench}}
spec: {{cluster: {CLUSTER}, autoScalingGroup: {GROUP}}}
"""
POOL = """\
apiVersion: ecs-reconciler/v1alpha1
kind: RunnerPool
metadata: {name: NAME}
spec:
  cluster: CLUSTER
  scope: {organization: acme}
  labels: [self-hosted, linux, NAME]
  runner: {version: 2.328.0, image: "ghcr.io/acme/runner:2.328.0@DIGEST"}
  resources: {cpu: 256, memory: 512}
  network: {subnets: [bench-a], securityGroups: [bench-sg]}
  capacityProvider: bench
  scaling: {min: COUNT, max: 5000, idle: COUNT}
""".replace("DIGEST", DIGEST).replace("CLUSTER", CLUSTER)
TASKS_PER_INSTANCE = 14  # moto offers 7,482 MiB per instance; 512 MiB per runner (the minimum)
RUN_TASK_MAX_COUNT = 10  # AWS's limit for RunTask's count
PAGE = 100  # ListTasks and ListTaskDefinitionFamilies pages, DescribeTasks batches


def progress(message: str) -> None:
    """A progress line on stderr (stdout holds the results)."""
    print(message, file=sys.stderr, flush=True)


def spread(tasks: int, pools: int) -> list[int]:
    """`tasks` runners shared as evenly as possible by `pools` pools."""
    return [tasks // pools + (1 if index < tasks % pools else 0) for index in range(pools)]


def write_specs(directory: Path, runners: Sequence[int]) -> None:
    """One capacity provider, and pool `bench-<i>` kept at `runners[i]` idle runners."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "provider.yaml").write_text(PROVIDER)
    pools = [
        POOL.replace("NAME", f"bench-{index}").replace("COUNT", str(count))
        for index, count in enumerate(runners)
    ]
    (directory / "pools.yaml").write_text("---\n".join(pools))


def add_instances(sandbox: Sandbox, tasks: int) -> int:
    """Scale the group to hold `tasks` runners and register its instances; returns how many.

    moto puts a group's instances in its first subnet and the sandbox's subnets are /24s
    (about 250 addresses), so the group moves to a /20 of its own first.
    """
    clients = sandbox.clients()
    seeded = clients.ec2.describe_subnets(Filters=[{"Name": "tag:Name", "Values": ["bench-a"]}])
    vpc, zone = seeded["Subnets"][0]["VpcId"], seeded["Subnets"][0]["AvailabilityZone"]
    subnet = clients.ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.16.0/20", AvailabilityZone=zone)
    subnet_id = subnet["Subnet"]["SubnetId"]
    instances = math.ceil(tasks / TASKS_PER_INSTANCE) + 1
    clients.autoscaling.update_auto_scaling_group(
        AutoScalingGroupName=GROUP,
        VPCZoneIdentifier=subnet_id,
        MaxSize=instances,
        DesiredCapacity=instances,
    )
    sandbox.tick()
    return instances


def converge(sandbox: Sandbox, specs: Path) -> int:
    """Apply the specs: everything but runner starts through the reconciler's executor, then
    the runners through `start_runners`. Returns the runners started."""
    clients = sandbox.clients()
    cycle = plan_cycle([specs], Observer(clients), TaskTagRunnerStates(clients), utc_now())
    others = tuple(a for a in cycle.plan.actions if a.action != "run")
    if others:
        plan = dataclasses.replace(cycle.plan, actions=others)
        result = Executor(clients, cycle.observed, TaskTagRunnerStates(clients)).apply(plan)
        if not result.ok:
            raise SystemExit(f"apply failed: {result.failed + result.skipped}")
        cycle = plan_cycle([specs], Observer(clients), TaskTagRunnerStates(clients), utc_now())
    return start_runners(clients, cycle)


def start_runners(clients: AwsClients, cycle: Cycle) -> int:
    """Start the runners `cycle` plans, 10 a RunTask, already registered as idle runners.

    The executor sends one RunTask per runner (each gets its own name); that takes minutes for
    10,000 tasks in moto. These tasks carry the same tags, task definition, capacity provider
    and network as the executor's, so the next plan sees a converged pool.
    """
    revisions = revision_arns(cycle.observed)
    started = 0
    for action in cycle.plan.actions:
        launch = action.after
        tags = {**launch["tags"], RUNNER_TAG: "idle"}
        for batch in range(0, action.count, RUN_TASK_MAX_COUNT):
            count = min(RUN_TASK_MAX_COUNT, action.count - batch)
            response = clients.ecs.run_task(
                cluster=action.cluster,
                taskDefinition=revisions[action.spec_hash],
                count=count,
                **placement(launch),
                startedBy=STARTED_BY,
                tags=[{"key": k, "value": v} for k, v in sorted(tags.items())],
            )
            if len(response["tasks"]) != count:
                raise SystemExit(f"{action.pool}: moto placed {len(response['tasks'])} of {count}")
            started += count
    return started


def real_aws_calls(calls: int, tasks: int, families: int) -> int:
    """`calls` counted on moto plus the pages moto does not paginate: real ListTasks pages hold
    100 task ARNs, real ListTaskDefinitionFamilies pages 100 families (one cluster)."""
    return calls + max(0, math.ceil(tasks / PAGE) - 1) + max(0, math.ceil(families / PAGE) - 1)


def measure_plan(sandbox: Sandbox, specs: Path, repeats: int = 20) -> dict[str, Any]:
    """Calls of a first plan cycle (a fresh observer, as `plan` runs) and of the next one with
    the same observer (as the controller runs), by operation; median planner time."""
    reader = sandbox.clients(read_only=True)
    observer = Observer(reader)
    cycle = plan_cycle([specs], observer, TaskTagRunnerStates(reader), utc_now())
    if cycle.plan.has_changes:
        raise SystemExit("not converged: " + cycle.plan.summary_line())
    first = dict(sorted(reader.calls.items()))
    reader.calls.clear()
    plan_cycle([specs], observer, TaskTagRunnerStates(reader), utc_now())
    steady = dict(sorted(reader.calls.items()))
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        make_plan(cycle.desired, cycle.observed, cycle.runner_states, now=utc_now())
        timings.append((time.perf_counter() - start) * 1000)
    tasks, families = len(cycle.observed.tasks), len(cycle.observed.task_definitions)
    return {
        "pools": len(cycle.desired.pools),
        "tasks": tasks,
        "calls": sum(first.values()),
        "calls_real_aws": real_aws_calls(sum(first.values()), tasks, families),
        "by_operation": first,
        "steady_calls": sum(steady.values()),
        "steady_calls_real_aws": real_aws_calls(sum(steady.values()), tasks, families),
        "steady_by_operation": steady,
        "planner_ms_median": round(statistics.median(timings), 2),
    }
