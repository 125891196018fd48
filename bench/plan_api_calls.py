"""How many AWS API calls one `plan` makes, and how that grows with running runner tasks.

Runs against the sandbox (moto's HTTP server, the same boto3 code path as real AWS): for each
size N it converges a one-pool spec set to N idle runners, then counts the calls of one
read-only plan cycle by operation, and times the pure planner on the observed state.

    .venv/bin/python bench/plan_api_calls.py [--tasks 10,100,1000] [--format text|json]

Note: moto's ListTasks has no pagination, so it answers in one page; real AWS returns 100
task ARNs a page, so add ceil(N/100) - 1 ListTasks calls to the figures for real AWS.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from reconciler.aws.executor import Executor
from reconciler.aws.observe import Observer
from reconciler.plan.planner import plan as make_plan
from reconciler.reconcile import plan_cycle
from reconciler.sandbox.runners import TaskTagRunnerStates
from reconciler.sandbox.scenario import Sandbox

DIGEST = "sha256:" + "b" * 64
PROVIDER = """\
apiVersion: ecs-reconciler/v1alpha1
kind: CapacityProvider
metadata: {name: bench}
spec: {cluster: bench, autoScalingGroup: bench-group}
"""
POOL = """\
apiVersion: ecs-reconciler/v1alpha1
kind: RunnerPool
metadata: {name: bench}
spec:
  cluster: bench
  scope: {organization: acme}
  labels: [self-hosted, linux]
  runner: {version: 2.328.0, image: "ghcr.io/acme/runner:2.328.0@DIGEST"}
  resources: {cpu: 256, memory: 512}
  network: {subnets: [bench-a], securityGroups: [bench-sg]}
  capacityProvider: bench
  scaling: {min: COUNT, max: 5000, idle: COUNT}
""".replace("DIGEST", DIGEST)
TASKS_PER_INSTANCE = 14  # moto offers 7,482 MiB per instance; 512 MiB per runner


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def measure(count: int) -> dict[str, Any]:
    """Converge to `count` runners, then count the calls of one plan."""
    with tempfile.TemporaryDirectory() as directory:
        specs = Path(directory)
        (specs / "provider.yaml").write_text(PROVIDER)
        (specs / "pool.yaml").write_text(POOL.replace("COUNT", str(count)))
        progress(f"[{count}] seeding the sandbox")
        with Sandbox([specs], mode="process") as sandbox:
            instances = -(-count // TASKS_PER_INSTANCE) + 1
            sandbox.clients().autoscaling.update_auto_scaling_group(
                AutoScalingGroupName="bench-group", MaxSize=instances, DesiredCapacity=instances
            )
            sandbox.tick()
            progress(f"[{count}] {instances} instances registered; starting {count} runners")
            clients = sandbox.clients()
            cycle = plan_cycle([specs], Observer(clients), TaskTagRunnerStates(clients))
            result = Executor(clients, cycle.observed, TaskTagRunnerStates(clients)).apply(
                cycle.plan, {}
            )
            if not result.ok:
                raise SystemExit(f"apply failed: {result.failed + result.skipped}")
            sandbox.tick()
            progress(f"[{count}] planning")
            reader = sandbox.clients(read_only=True)
            planned = plan_cycle([specs], Observer(reader), TaskTagRunnerStates(reader))
            if planned.plan.has_changes:
                raise SystemExit("not converged: " + planned.plan.summary_line())
            timings = []
            for _ in range(20):
                start = time.perf_counter()
                make_plan(planned.desired, planned.observed, planned.runner_states)
                timings.append((time.perf_counter() - start) * 1000)
            return {
                "tasks": len(planned.observed.tasks),
                "calls": reader.total_calls(),
                "by_operation": dict(sorted(reader.calls.items())),
                "planner_ms_median": round(statistics.median(timings), 2),
            }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="10,100,1000", help="comma-separated task counts")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    args = parser.parse_args()
    rows = [measure(int(n)) for n in args.tasks.split(",")]
    if args.format == "json":
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'tasks':>6} {'calls':>6} {'planner ms':>10}  calls by operation")
    for row in rows:
        operations = ", ".join(f"{op.split(':')[1]} {n}" for op, n in row["by_operation"].items())
        print(f"{row['tasks']:>6} {row['calls']:>6} {row['planner_ms_median']:>10}  {operations}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
