"""The `ecs-reconciler` command: parses arguments and dispatches to one module per verb.

Exit codes follow `terraform plan -detailed-exitcode`: 0 success / no changes, 1 error,
2 changes present (plan and apply's dry runs).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from .. import __version__
from . import apply, plan, run, sandbox, schema, simulate, status, trace, validate, verify

VERBS = (validate, verify, plan, apply, run, status, schema, sandbox, trace, simulate)
EXIT_ERROR = 1


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors exit 1: exit 2 means "changes present" for plan."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one sub-command per verb module."""
    parser = _Parser(
        prog="ecs-reconciler",
        description="Reconcile GitHub Actions runner pools (YAML specs) into Amazon ECS.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)"
    )
    verbs = parser.add_subparsers(
        dest="verb", metavar="COMMAND", required=True, parser_class=_Parser
    )
    for verb in VERBS:
        verb.register(verbs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)],
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,  # the command owns its process's logging (and a caller's `main()` too)
    )
    # botocore's DEBUG log prints request parameters and response bodies, JIT runner
    # configurations included (ssm:PutParameter): never below INFO
    logging.getLogger("botocore").setLevel(logging.INFO)
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
