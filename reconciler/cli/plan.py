"""`ecs-reconciler plan`: show what apply would change. Read-only by construction.

Live (default): the AWS clients are built read-only, so any mutating operation is refused
before it is sent. `--base REF`: compare the specs at a git revision with the working tree,
without AWS credentials at all (runner versions are then checked against `--runner-latest`
only). `--policy NAME|FILE`: check the plan against a policy (the automerge gate). The
images of every revision the plan would register are verified: a missing ECR image is an
error note. Exit codes: 0 no changes, 2 changes present, 1 error,
3 policy failed.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from ..aws.clients import AwsClients, AwsConfigurationError
from ..github.releases import RunnerVersionWatch
from ..plan.actions import Plan
from ..plan.policy import PlanPolicy, PolicyError, Violation, evaluate, load_policy
from ..plan.specdiff import diff_spec_sets
from ..reconcile import check_spec_versions
from ..spec.gitrev import GitRevisionError, load_specs_at
from ..spec.loader import load_specs
from ..verify import verify_new_images
from .common import (
    EXIT_ERROR,
    SandboxOnly,
    add_aws_options,
    exit_code,
    live_cycle,
    planning_time,
    render,
    runner_state_source,
    spec_paths,
    write_output,
)

EXIT_POLICY_FAILED = 3


def register(verbs: Any) -> None:
    """Add the `plan` sub-command."""
    parser: argparse.ArgumentParser = verbs.add_parser(
        "plan",
        help="show the changes apply would make (read-only)",
        description="Compare the specs with ECS (or, with --base, with the specs at a git "
        "revision) and print the plan. Never changes anything. Exit 0: no changes, "
        "2: changes present, 1: error, 3: --policy failed.",
    )
    add_aws_options(parser)
    parser.add_argument("--format", choices=("text", "markdown", "json"), default="text")
    parser.add_argument("--out", metavar="FILE", help="write the rendered plan to FILE")
    parser.add_argument(
        "--base",
        metavar="REF",
        help="compare with the specs at this git revision instead of AWS (no credentials)",
    )
    parser.add_argument(
        "--policy",
        metavar="NAME|FILE",
        help="fail (exit 3) unless the plan satisfies this policy, e.g. renovate-safe",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Plan, check the policy, print."""
    try:
        policy = load_policy(args.policy) if args.policy else None
        plan = _base_plan(args) if args.base else _live_plan(args)
    except (PolicyError, GitRevisionError, AwsConfigurationError, SandboxOnly) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    violations = evaluate(plan, policy) if policy else []
    write_output(render(plan, args.format, _verdict(policy, violations)), args.out)
    code = exit_code(plan)
    if code != EXIT_ERROR and violations:
        return EXIT_POLICY_FAILED
    return code


def _live_plan(args: argparse.Namespace) -> Plan:
    clients = AwsClients(region=args.region, profile=args.profile, read_only=True)
    source = runner_state_source(args, clients)
    plan = live_cycle(args, clients, source).plan
    return dataclasses.replace(plan, notes=(*plan.notes, *verify_new_images(plan, clients)))


def _base_plan(args: argparse.Namespace) -> Plan:
    """The spec diff, with the runner version check of the new specs (--runner-latest only)."""
    paths = spec_paths(args)
    base = load_specs_at(args.base, paths, Path.cwd())
    head = load_specs(paths)
    now = planning_time(args)
    plan = diff_spec_sets(base, head, now)
    if not args.runner_latest:
        return plan
    versions = RunnerVersionWatch(args.runner_latest, max_age=args.runner_version_max_age)
    _, notes = check_spec_versions(head, versions, now)
    return dataclasses.replace(plan, notes=(*plan.notes, *notes))


def _verdict(policy: PlanPolicy | None, violations: list[Violation]) -> dict[str, Any] | None:
    if policy is None:
        return None
    return {
        "name": policy.metadata.name,
        "passed": not violations,
        "violations": [str(v) for v in violations],
    }
