"""`ecs-reconciler verify`: check that everything the specs name exists, like ecspresso verify.

Images (ECR by its API, other registries by HTTP when reachable), the cluster, IAM roles
assumable by ECS tasks, log groups, secrets, capacity providers, subnets and security groups.
Read-only (its AWS clients refuse any mutating call). Exit 0 when nothing failed (skipped
checks are warnings), 1 when anything failed or the specs do not load.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..aws.clients import AwsClients, AwsConfigurationError
from ..spec.loader import load_specs
from ..verify import Verifier
from .common import EXIT_ERROR, EXIT_OK, spec_paths


def register(verbs: Any) -> None:
    """Add the `verify` sub-command."""
    parser: argparse.ArgumentParser = verbs.add_parser(
        "verify",
        help="check that images, roles, log groups, secrets and networks exist (read-only)",
        description="Check everything the specs name in AWS and the image registries and "
        "print a tree of results. Unreachable registries are skipped with a warning. "
        "Exit 0: nothing failed, 1: a check failed or the specs have errors.",
    )
    parser.add_argument(
        "--specs", action="append", metavar="PATH", help="spec file or directory (default specs/)"
    )
    parser.add_argument("--region", help="AWS region (default: from the AWS configuration)")
    parser.add_argument("--profile", help="AWS profile (default: from the AWS configuration)")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Verify the specs and print the report."""
    try:
        clients = AwsClients(region=args.region, profile=args.profile, read_only=True)
    except AwsConfigurationError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    verifier = Verifier(clients)
    try:
        report = verifier.spec_set(load_specs(spec_paths(args)))
    finally:
        verifier.close()
    if args.format == "json":
        sys.stdout.write(json.dumps(report.to_json(), indent=2) + "\n")
    else:
        sys.stdout.write(report.render_text())
    return EXIT_OK if report.ok else EXIT_ERROR
