"""`ecs-reconciler plan`: show what apply would change. Read-only by construction.

The AWS clients are built read-only: any mutating operation is refused before it is sent.
Exit codes: 0 no changes, 2 changes present, 1 error (spec errors, AWS problems).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..aws.clients import AwsClients, AwsConfigurationError
from ..aws.observe import Observer
from ..reconcile import plan_cycle
from .common import (
    EXIT_ERROR,
    add_aws_options,
    exit_code,
    render,
    runner_state_source,
    spec_paths,
    write_output,
)


def register(verbs: Any) -> None:
    """Add the `plan` sub-command."""
    parser: argparse.ArgumentParser = verbs.add_parser(
        "plan",
        help="show the changes apply would make (read-only)",
        description="Compare the specs with ECS and print the plan. Never changes anything. "
        "Exit 0: no changes, 2: changes present, 1: error.",
    )
    add_aws_options(parser)
    parser.add_argument("--format", choices=("text", "markdown", "json"), default="text")
    parser.add_argument("--out", metavar="FILE", help="write the rendered plan to FILE")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Plan and print."""
    try:
        clients = AwsClients(region=args.region, profile=args.profile, read_only=True)
    except AwsConfigurationError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    cycle = plan_cycle(
        spec_paths(args), Observer(clients), runner_state_source(args, clients), args.now
    )
    write_output(render(cycle.plan, args.format), args.out)
    return exit_code(cycle.plan)
