"""`ecs-reconciler apply`: plan, show, ask, then execute exactly that plan.

Like terraform: on a terminal it asks for "yes"; without one it refuses unless
`--auto-approve`. Refuses a spec set with errors, and guards the blast radius: stopping more
than `--max-stop-share` of a pool's runners, or removing a pool or capacity provider, needs
explicit consent. Verifies the images of every revision it would register first: when one
is missing, nothing at all is applied. Exit 0 when everything applied (or nothing to do),
1 otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from ..aws.clients import AwsClients, AwsConfigurationError
from ..aws.executor import ApplyResult, Executor
from ..plan.guard import DEFAULT_MAX_STOP_SHARE, GuardPolicy, refused_actions
from ..plan.render_text import render_text
from ..reconcile import Cycle
from ..verify import verify_new_images
from .common import (
    EXIT_ERROR,
    EXIT_OK,
    SandboxOnly,
    add_aws_options,
    live_cycle,
    runner_provisioner,
    runner_state_source,
)


def register(verbs: Any) -> None:
    """Add the `apply` sub-command."""
    parser: argparse.ArgumentParser = verbs.add_parser(
        "apply",
        help="make ECS match the specs",
        description="Plan, show the plan, ask for confirmation, and execute it.",
    )
    add_aws_options(parser)
    parser.add_argument(
        "--auto-approve", action="store_true", help="do not ask (required without a terminal)"
    )
    add_guard_options(parser)
    parser.set_defaults(run=run)


def add_guard_options(parser: argparse.ArgumentParser) -> None:
    """--max-stop-share and --allow-delete (the blast-radius guard)."""
    parser.add_argument(
        "--max-stop-share",
        type=_share,
        default=DEFAULT_MAX_STOP_SHARE,
        help="largest share of a pool's runners one apply may stop (0-1, default "
        f"{DEFAULT_MAX_STOP_SHARE})",
    )
    parser.add_argument(
        "--allow-delete",
        action="store_true",
        help="allow removing pools and capacity providers that left the specs",
    )


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, not {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    """Plan, confirm, apply, summarise."""
    try:
        clients = AwsClients(region=args.region, profile=args.profile)
        source = runner_state_source(args, clients)
    except (AwsConfigurationError, SandboxOnly) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    cycle = live_cycle(args, clients, source)
    image_notes = verify_new_images(cycle.plan, clients)
    plan = dataclasses.replace(cycle.plan, notes=(*cycle.plan.notes, *image_notes))
    cycle = dataclasses.replace(cycle, plan=plan)
    print(render_text(cycle.plan), end="")
    if cycle.plan.spec_errors:
        print("\nerror: the specs have errors; nothing is applied. Fix them and run again.")
        return EXIT_ERROR
    if any(note.severity == "error" for note in image_notes):
        print("\nerror: an image of a new revision is missing (see Notes); nothing is applied.")
        return EXIT_ERROR
    if not cycle.plan.has_changes:
        return EXIT_OK
    policy = GuardPolicy(max_stop_share=args.max_stop_share, allow_delete=args.allow_delete)
    if not _confirmed(args):
        return EXIT_ERROR
    return apply_cycle(cycle, clients, source, policy, args.jit_kms_key)


def apply_cycle(
    cycle: Cycle,
    clients: AwsClients,
    source: Any,
    policy: GuardPolicy,
    jit_kms_key: str | None = None,
) -> int:
    """Execute the cycle's plan under the guard, print progress and a summary."""
    refused = refused_actions(cycle.plan, policy)
    executor = Executor(
        clients,
        cycle.observed,
        source,
        progress=lambda line: print(f"  {line}"),
        provisioner=runner_provisioner(source, clients, jit_kms_key),
    )
    print("\nApplying:")
    result = executor.apply(cycle.plan, refused)
    print(summary(result))
    return EXIT_OK if result.ok else EXIT_ERROR


def summary(result: ApplyResult) -> str:
    """`Apply complete: 5 done, 0 failed, 0 skipped.`"""
    verdict = "Apply complete" if result.ok else "Apply incomplete"
    return (
        f"\n{verdict}: {len(result.done)} done, {len(result.failed)} failed, "
        f"{len(result.skipped)} skipped."
    )


def _confirmed(args: argparse.Namespace) -> bool:
    if args.auto_approve:
        return True
    if not sys.stdin.isatty():
        print("\nerror: no terminal to ask for confirmation; pass --auto-approve to apply.")
        return False
    answer = input("\nDo you want to perform these actions? Only 'yes' will be accepted: ")
    if answer.strip() != "yes":
        print("Apply cancelled.")
        return False
    return True
