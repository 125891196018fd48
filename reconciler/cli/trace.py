"""`ecs-reconciler trace generate`: write a synthetic `workflow_job` trace (JSON lines).

Deterministic: the same --days, --seed and --start give the same file, byte for byte.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from typing import Any

from ..simulate.trace import DEFAULT_START, SHAPES, generate_trace, write_trace
from .common import EXIT_ERROR, EXIT_OK


def register(verbs: Any) -> None:
    """Add the `trace` sub-command and its `generate` action."""
    parser: argparse.ArgumentParser = verbs.add_parser(
        "trace",
        help="generate workflow_job traces for `simulate`",
        description="Work with traces: JSON lines of GitHub workflow_job webhook payloads.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    generate = actions.add_parser(
        "generate",
        help="write a deterministic synthetic trace",
        description="Write a synthetic trace: weekday and business-hour seasonality (Tokyo), "
        "a noisy repository firing large matrix bursts, lognormal job durations, the label "
        "sets of the example pools in specs/.",
    )
    generate.add_argument("--days", type=_positive, default=7, help="days to cover (default 7)")
    generate.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    generate.add_argument(
        "--start",
        type=datetime.datetime.fromisoformat,
        default=DEFAULT_START,
        help=f"first instant, ISO 8601 with offset (default {DEFAULT_START.isoformat()}, a Monday)",
    )
    generate.add_argument(
        "--shape",
        choices=sorted(SHAPES),
        default="generated",
        help="week shape: generated (default) or surge-storm (Monday surge, 03:00 cron storm, "
        "400-job matrices into the shared organization pool)",
    )
    generate.add_argument("--out", metavar="FILE", help="output file (default stdout)")
    generate.set_defaults(run=run)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def run(args: argparse.Namespace) -> int:
    """Generate the trace into --out or stdout."""
    start = args.start if args.start.tzinfo else args.start.replace(tzinfo=datetime.UTC)
    payloads = generate_trace(args.days, args.seed, start, SHAPES[args.shape])
    try:
        if args.out:
            with open(args.out, "w", encoding="utf-8") as out:
                count = write_trace(payloads, out)
        else:
            count = write_trace(payloads, sys.stdout)
    except OSError as error:
        print(f"error: cannot write {args.out}: {error.strerror}", file=sys.stderr)
        return EXIT_ERROR
    print(
        f"wrote {count} workflow_job events ({args.days} days, seed {args.seed})", file=sys.stderr
    )
    return EXIT_OK
