"""AWS API calls and planner time of one observe + plan cycle, by pools and running tasks.

For each pool count P (one sandbox each), grows the runners shared by the P pools through the
task counts given (10 to 10,000 by default), and at each step counts the calls of a first
plan cycle (a fresh observer, as `plan` runs) and of the next one (the same observer, as the
controller runs), by operation, and times the pure planner (median of 20).

    .venv/bin/python bench/scale_api_calls.py [--pools 10,100,500]
        [--tasks 10,100,1000,10000] [--format text|json]

moto paginates neither ListTasks nor ListTaskDefinitionFamilies; the "real AWS" columns add
the pages real AWS would return (100 items a page).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _sandbox_bench import (
    add_instances,
    converge,
    measure_plan,
    progress,
    spread,
    write_specs,
)

from reconciler.sandbox.scenario import Sandbox


def measure_pools(pools: int, task_counts: list[int]) -> list[dict[str, Any]]:
    """One sandbox with `pools` pools, measured at each task count (ascending)."""
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        specs = Path(directory)
        write_specs(specs, spread(0, pools))
        with Sandbox([specs], mode="process", agent_interval=None) as sandbox:
            instances = add_instances(sandbox, max(task_counts))
            progress(f"[{pools} pools] {instances} container instances registered")
            for tasks in sorted(task_counts):
                write_specs(specs, spread(tasks, pools))
                start = time.perf_counter()
                started = converge(sandbox, specs)
                seeded = time.perf_counter() - start
                progress(f"[{pools} pools] {tasks} tasks ({started} started in {seeded:.0f} s)")
                start = time.perf_counter()
                rows.append(measure_plan(sandbox, specs))
                progress(f"[{pools} pools] measured in {time.perf_counter() - start:.0f} s")
    return rows


def operation(row: dict[str, Any], name: str, key: str = "by_operation") -> int:
    """Calls of one ECS operation in a row."""
    return int(row[key].get(f"ecs:{name}", 0))


def print_table(rows: list[dict[str, Any]]) -> None:
    """The figures as a text table."""
    print(
        f"{'pools':>5} {'tasks':>6} | {'first cycle':>11} {'real AWS':>8} | "
        f"{'steady':>6} {'real AWS':>8} | {'ListTasks*':>10} {'DescrTasks':>10} "
        f"{'ListTaskDefs':>12} {'DescrTaskDef':>12} | {'planner ms':>10}"
    )
    for row in rows:
        print(
            f"{row['pools']:>5} {row['tasks']:>6} | {row['calls']:>11} "
            f"{row['calls_real_aws']:>8} | {row['steady_calls']:>6} "
            f"{row['steady_calls_real_aws']:>8} | {operation(row, 'ListTasks'):>10} "
            f"{operation(row, 'DescribeTasks'):>10} {operation(row, 'ListTaskDefinitions'):>12} "
            f"{operation(row, 'DescribeTaskDefinition'):>12} | {row['planner_ms_median']:>10}"
        )
    print("* as moto answers (one page); DescribeTaskDefinition: first cycle only (then cached)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pools", default="10,100,500", help="comma-separated pool counts")
    parser.add_argument("--tasks", default="10,100,1000,10000", help="comma-separated tasks")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    args = parser.parse_args()
    task_counts = [int(n) for n in args.tasks.split(",")]
    rows = [row for p in args.pools.split(",") for row in measure_pools(int(p), task_counts)]
    if args.format == "json":
        print(json.dumps(rows, indent=2))
    else:
        print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
