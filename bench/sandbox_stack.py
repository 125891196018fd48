"""What deploying the CloudFormation stack costs the sandbox: seconds to start a sandbox for the
example specs, and the share of it spent in the stack (inputs, CreateStack, hand seeding).

    .venv/bin/python bench/sandbox_stack.py [--repeats 3] [--format text|json]

Every test using the `sandbox` fixture pays the start once; the figures say whether deploying
the stack instead of seeding everything by hand made that noticeably slower.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from reconciler.sandbox import scenario
from reconciler.sandbox.infrastructure import seed_account
from reconciler.sandbox.scenario import Sandbox
from reconciler.sandbox.server import MotoServer
from reconciler.spec.loader import load_specs

SPECS = Path(__file__).resolve().parent.parent / "specs"


def measure() -> dict[str, float]:
    """Seconds: a whole sandbox start; then, on a fresh moto server, each step of the seeding
    as `Sandbox.seed` runs it (inputs by hand, CreateStack, the rest by hand)."""
    phases: dict[str, float] = {}
    start = time.monotonic()
    with Sandbox([SPECS], mode="process"):
        phases["sandbox_start_s"] = time.monotonic() - start
    plan = scenario.infrastructure_for(load_specs([SPECS]))
    stack = scenario.stack_plan_for(plan)
    inputs, rest = scenario.split_plan(plan, stack)
    with MotoServer(mode="process") as server:
        url, region = server.endpoint_url, scenario.DEFAULT_REGION
        start = time.monotonic()
        seeded = seed_account(url, region, inputs)
        secret = scenario.ensure_controller_secret(url, region)
        phases["inputs_s"] = time.monotonic() - start
        start = time.monotonic()
        parameters = stack.parameters(plan, seeded.vpc_id, list(seeded.subnet_ids.values()), secret)
        scenario.deploy_stack(url, region, parameters)
        phases["create_stack_s"] = time.monotonic() - start
        start = time.monotonic()
        seed_account(url, region, rest)
        phases["hand_seeded_rest_s"] = time.monotonic() - start
    return phases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--format", choices=("text", "json"), default="text")
    args = parser.parse_args(argv)
    runs = [measure() for _ in range(args.repeats)]
    median = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    if args.format == "json":
        print(json.dumps({"runs": runs, "median": median}, indent=2))
        return 0
    print(f"sandbox start for specs/ (median of {args.repeats}):")
    for key, value in median.items():
        print(f"  {key:20} {value:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
