"""`ecs-reconciler simulate TRACE`: replay a trace under scaling policies and compare them.

Exit 0 when the simulation ran, 1 on bad input (unreadable or malformed trace, invalid
specs, unknown policy, --plot without matplotlib, pools in several time zones without
--plot-timezone).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ..simulate.parameters import INSTANCE_PRICES_USD, SimulationParameters
from ..simulate.policies import POLICY_NAMES
from ..simulate.report import pools_time_zone, render_plot, render_text, run_policy
from ..simulate.trace import TraceError, read_trace
from ..spec.diagnostics import render_text as render_diagnostics
from ..spec.loader import load_specs
from .common import EXIT_ERROR, EXIT_OK, write_output


def register(verbs: Any) -> None:
    """Add the `simulate` sub-command."""
    parser: argparse.ArgumentParser = verbs.add_parser(
        "simulate",
        help="compare scaling policies on a workflow_job trace (queue wait vs idle cost)",
        description="Replay a trace of workflow_job webhook payloads through a discrete-event "
        "model of ECS and GitHub under each policy; ours drives the real planner. Reports "
        "queue-wait percentiles (overall, per pool, per repository), busy / idle runner hours, "
        "instance hours and the share of jobs within the SLO. See docs/simulator.md.",
    )
    parser.add_argument("trace", metavar="TRACE", help="JSON lines of workflow_job payloads")
    parser.add_argument(
        "--policy",
        action="append",
        choices=POLICY_NAMES,
        metavar="NAME",
        help=f"policy to run, repeatable (default all: {', '.join(POLICY_NAMES)})",
    )
    parser.add_argument(
        "--specs", action="append", metavar="PATH", help="spec file or directory (default specs/)"
    )
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.add_argument("--out", metavar="FILE", help="write the report to FILE (default stdout)")
    parser.add_argument(
        "--plot",
        metavar="FILE.png",
        help="draw queued jobs, runners and instances over time, the queue-wait distribution "
        "per policy (CDF) and cost against p90 per policy",
    )
    parser.add_argument(
        "--plot-timezone",
        metavar="ZONE",
        help="the plot's clock (default: the time zone of the pools' schedules and windows)",
    )
    parser.add_argument(
        "--slo", type=float, default=SimulationParameters.slo_wait_s, help="SLO wait (s)"
    )
    parser.add_argument(
        "--history",
        action="append",
        metavar="TRACE",
        help="earlier weeks' trace, repeatable: what pools with scaling.slo learned before",
    )
    parser.add_argument(
        "--price",
        action="append",
        metavar="TYPE=USD",
        help="on-demand USD per hour of an instance type, repeatable (default: Tokyo list "
        "prices of the simulated types, see docs/simulator.md)",
    )
    parser.add_argument(
        "--spot-share", type=float, default=0.0, help="share of instance-hours on spot (0..1)"
    )
    parser.add_argument(
        "--spot-discount",
        type=float,
        default=SimulationParameters.spot_discount,
        help="spot discount off on-demand (0..1, default %(default)s)",
    )
    parser.add_argument(
        "--spot-interruptions",
        type=float,
        default=0.0,
        metavar="PER_HOUR",
        help="interruption notices per spot instance-hour (spot instances: --spot-share of "
        "them); each is reclaimed 2 minutes after its notice (default 0: none)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Load specs and trace, run every policy, print the report."""
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        print(
            "error: --plot needs matplotlib: pip install 'ecs-runner-reconciler[plot]'",
            file=sys.stderr,
        )
        return EXIT_ERROR
    spec_set = load_specs(args.specs or ["specs"])
    if not spec_set.ok or not spec_set.pools:
        sys.stderr.write(render_diagnostics(spec_set.errors))
        print("error: the specs must load without errors and define a pool", file=sys.stderr)
        return EXIT_ERROR
    try:
        timezone = pools_time_zone(spec_set, args.plot_timezone) if args.plot else "UTC"
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    try:
        jobs = read_trace(args.trace)
        history = [job for path in args.history or () for job in read_trace(path)]
    except TraceError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as error:
        print(f"error: cannot read {error.filename}: {error.strerror}", file=sys.stderr)
        return EXIT_ERROR
    if not jobs:
        print(f"error: {args.trace} holds no completed job to replay", file=sys.stderr)
        return EXIT_ERROR
    try:
        parameters = SimulationParameters(
            slo_wait_s=args.slo,
            instance_prices_usd={**INSTANCE_PRICES_USD, **_prices(args.price or ())},
            spot_share=args.spot_share,
            spot_interruptions_per_hour=args.spot_interruptions,
            spot_discount=args.spot_discount,
        )
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    reports = [
        run_policy(name, jobs, spec_set, parameters, _progress(name, jobs[0].arrival), history)
        for name in args.policy or POLICY_NAMES
    ]
    if args.format == "json":
        document = {
            "trace": args.trace,
            "jobs": len(jobs),
            "policies": [report.to_json() for report in reports],
        }
        write_output(json.dumps(document, indent=2) + "\n", args.out)
    else:
        write_output(render_text(reports), args.out)
    if args.plot:
        render_plot(reports, args.plot, timezone)
    return EXIT_OK


def _prices(items: Sequence[str]) -> dict[str, float]:
    """`TYPE=USD` pairs; ValueError naming the bad one."""
    prices = {}
    for item in items:
        name, _, usd = item.partition("=")
        try:
            prices[name.strip()] = float(usd)
        except ValueError:
            raise ValueError(
                f"--price {item!r}: expected TYPE=USD per hour, for example m6i.2xlarge=0.496"
            ) from None
        if not name.strip():
            raise ValueError(f"--price {item!r}: the instance type is missing")
    return prices


def _progress(policy: str, start: float) -> Callable[[float], None]:
    """Print one line per simulated day on stderr."""
    shown = {-1}

    def show(moment: float) -> None:
        day = int((moment - start) // 86400)
        if day not in shown:
            shown.add(day)
            date = datetime.datetime.fromtimestamp(moment, datetime.UTC).date()
            print(f"simulate: {policy}: day {day + 1} ({date})", file=sys.stderr)

    return show
