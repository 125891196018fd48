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
import sys
import tempfile
from pathlib import Path
from typing import Any

from _sandbox_bench import add_instances, converge, measure_plan, progress, write_specs

from reconciler.sandbox.scenario import Sandbox


def measure(count: int) -> dict[str, Any]:
    """Converge to `count` runners, then count the calls of one plan."""
    with tempfile.TemporaryDirectory() as directory:
        specs = Path(directory)
        write_specs(specs, [count])
        progress(f"[{count}] seeding the sandbox")
        with Sandbox([specs], mode="process", agent_interval=None) as sandbox:
            instances = add_instances(sandbox, count)
            progress(f"[{count}] {instances} instances registered; starting {count} runners")
            converge(sandbox, specs)
            progress(f"[{count}] planning")
            return measure_plan(sandbox, specs)


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
